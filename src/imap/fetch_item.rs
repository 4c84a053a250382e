//! Reading a FETCH item the response parser drops: imap-proto skips attributes it does not
//! know (such as RFC 8970's `PREVIEW`) without keeping their values, so the value is read
//! here from the response's raw bytes, which the connection hands out beside the parsed
//! response.

use std::borrow::Cow;

/// The value of a FETCH item that is an `nstring`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NString<'a> {
    /// `NIL`.
    Nil,
    /// A quoted string (unescaped) or a literal's bytes.
    Text(Cow<'a, [u8]>),
}

/// A strict reader of one FETCH response's attribute list.
struct Reader<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.raw.get(self.at).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    /// An atom-like token: an item name, a number, `NIL`.
    fn atom(&mut self) -> &'a [u8] {
        let start = self.at;
        while let Some(b) = self.peek()
            && !matches!(b, b' ' | b'(' | b')' | b'[' | b'"' | b'{' | b'\r' | b'\n')
        {
            self.at += 1;
        }
        &self.raw[start..self.at]
    }

    fn quoted(&mut self) -> Option<Cow<'a, [u8]>> {
        self.at += 1;
        let start = self.at;
        let mut escaped = false;
        let mut owned: Option<Vec<u8>> = None;
        loop {
            let b = self.peek()?;
            self.at += 1;
            match b {
                b'\\' if !escaped => {
                    owned.get_or_insert_with(|| self.raw[start..self.at - 1].to_vec());
                    escaped = true;
                    continue;
                }
                b'"' if !escaped => {
                    return Some(match owned {
                        Some(bytes) => Cow::Owned(bytes),
                        None => Cow::Borrowed(&self.raw[start..self.at - 1]),
                    });
                }
                b'\r' | b'\n' => return None,
                _ => {}
            }
            escaped = false;
            if let Some(bytes) = owned.as_mut() {
                bytes.push(b);
            }
        }
    }

    fn literal(&mut self) -> Option<&'a [u8]> {
        self.at += 1;
        let close = self.raw[self.at..].iter().position(|&b| b == b'}')?;
        let count = std::str::from_utf8(&self.raw[self.at..self.at + close])
            .ok()?
            .trim_end_matches('+')
            .parse::<usize>()
            .ok()?;
        self.at += close + 1;
        if self.raw.get(self.at..self.at + 2) != Some(b"\r\n") {
            return None;
        }
        self.at += 2;
        let data = self.raw.get(self.at..self.at.checked_add(count)?)?;
        self.at += count;
        Some(data)
    }

    /// Any value: what an nstring is, or past a list or atom (`None` for those).
    fn value(&mut self) -> Option<Option<NString<'a>>> {
        match self.peek()? {
            b'"' => Some(Some(NString::Text(self.quoted()?))),
            b'{' => Some(Some(NString::Text(Cow::Borrowed(self.literal()?)))),
            b'(' => {
                // A list: its last string, for a server that wraps the value with modifiers.
                self.at += 1;
                let mut last = None;
                loop {
                    self.skip_spaces();
                    match self.peek()? {
                        b')' => {
                            self.at += 1;
                            return Some(last);
                        }
                        _ => {
                            if let Some(v) = self.value()? {
                                last = Some(v);
                            }
                        }
                    }
                }
            }
            _ => {
                let atom = self.atom();
                if atom.is_empty() {
                    return None;
                }
                Some(atom.eq_ignore_ascii_case(b"NIL").then_some(NString::Nil))
            }
        }
    }

    /// Past a section spec `[…]` and a partial `<…>` after an item name.
    fn section(&mut self) -> Option<()> {
        if self.peek() == Some(b'[') {
            let mut depth = 0usize;
            loop {
                let b = self.peek()?;
                self.at += 1;
                match b {
                    b'[' | b'(' => depth += 1,
                    b']' | b')' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 && b == b']' {
                            break;
                        }
                    }
                    b'"' => {
                        self.at -= 1;
                        self.quoted()?;
                    }
                    b'\r' | b'\n' => return None,
                    _ => {}
                }
            }
        }
        if self.peek() == Some(b'<') {
            let close = self.raw[self.at..].iter().position(|&b| b == b'>')?;
            self.at += close + 1;
        }
        Some(())
    }
}

/// The value of item `name` in the raw bytes of one untagged FETCH response
/// (`* 12 FETCH (UID 5 PREVIEW "…")`), if the response has it and it is an nstring.
pub fn nstring_item<'a>(raw: &'a [u8], name: &[u8]) -> Option<NString<'a>> {
    let open = raw.iter().position(|&b| b == b'(')?;
    let head = &raw[..open];
    if !head.starts_with(b"* ")
        || !head
            .trim_ascii_end()
            .to_ascii_uppercase()
            .ends_with(b"FETCH")
    {
        return None;
    }
    let mut reader = Reader { raw, at: open + 1 };
    loop {
        reader.skip_spaces();
        if matches!(reader.peek()?, b')') {
            return None;
        }
        let item = reader.atom();
        if item.is_empty() {
            return None;
        }
        reader.section()?;
        reader.skip_spaces();
        let value = reader.value()?;
        if item.eq_ignore_ascii_case(name) {
            return value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> Option<NString<'static>> {
        Some(NString::Text(Cow::Owned(value.as_bytes().to_vec())))
    }

    #[test]
    fn finds_preview_after_any_other_item() {
        let raw = b"* 3 FETCH (UID 7 FLAGS (\\Seen $x) INTERNALDATE \"06-May-2024 12:00:00 +0000\" \
            ENVELOPE (\"date\" \"PREVIEW \\\"no\\\"\" NIL NIL NIL NIL NIL NIL NIL \"<a@b>\") \
            BODY[HEADER.FIELDS (FROM SUBJECT)] {18}\r\nSubject: PREVIEW\r\n \
            BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 5 1 NIL NIL NIL NIL) \
            PREVIEW \"Hello \\\"you\\\" there\")\r\n";
        assert_eq!(nstring_item(raw, b"PREVIEW"), text("Hello \"you\" there"));
    }

    #[test]
    fn reads_literals_nil_and_wrapped_values() {
        assert_eq!(
            nstring_item(b"* 1 FETCH (PREVIEW {5}\r\nHallo UID 1)\r\n", b"PREVIEW"),
            Some(NString::Text(Cow::Borrowed(b"Hallo")))
        );
        assert_eq!(
            nstring_item(b"* 1 FETCH (UID 1 PREVIEW NIL)\r\n", b"preview"),
            Some(NString::Nil)
        );
        assert_eq!(
            nstring_item(b"* 1 FETCH (UID 1 PREVIEW (FUZZY \"Hi\"))\r\n", b"PREVIEW"),
            text("Hi")
        );
        assert_eq!(
            nstring_item(
                b"* 1 FETCH (UID 1 BODY[1]<0> {3}\r\nabc PREVIEW \"x\")\r\n",
                b"PREVIEW"
            ),
            text("x")
        );
    }

    #[test]
    fn absent_or_malformed_items_are_none() {
        for raw in [
            &b"* 1 FETCH (UID 1 FLAGS ())\r\n"[..],
            b"* 1 FETCH (UID 1 PREVIEW \"unterminated)\r\n",
            b"* 1 FETCH (UID 1 PREVIEW {99}\r\nshort)\r\n",
            b"* 1 EXISTS\r\n",
            b"* OK (PREVIEW \"x\")\r\n",
            b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (FROM)] PREVIEW \"x\"",
        ] {
            assert_eq!(
                nstring_item(raw, b"PREVIEW"),
                None,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
