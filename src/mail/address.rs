//! Address lists read from raw header fields (RFC 5322 §3.4, obsolete forms included), the
//! way mail clients read them when the sender wrote them badly.
//!
//! The server's ENVELOPE is the first source of a message's addresses, but servers give up
//! on what they cannot parse: Dovecot puts `MISSING_MAILBOX` or `SYNTAX_ERROR` in its place
//! and sometimes drops the rest of the list (`Mikel@Lindsaar <r@x.com>` ends it). This
//! parser never gives up: it splits the list at commas outside quotes, comments and angle
//! brackets, and reads each element as a client would:
//! * `Name <addr>`: the address in the angle brackets (an obsolete source route dropped), the
//!   words before them as the name, whatever they contain (`@` included);
//! * `addr (Name)`: the comment names the person when no other name is given;
//! * `Name addr@host` without brackets: the last word with an `@` is the address;
//! * `Group: a, b;`: the members, without the group name;
//! * an unterminated quote is a stray character, an unterminated angle bracket ends at the
//!   end of the element; elements without any address (`<>`, empty elements, bare words)
//!   are dropped.
//!
//! Names are RFC 2047 decoded; undeclared 8-bit text reads as UTF-8, else windows-1252.

use super::content::utf8_or_windows_1252;
use super::summary::{Address, decode_header_text};

/// Most addresses read from one field, so that a hostile header costs bounded memory.
pub const MAX_ADDRESSES: usize = 1000;

/// Reads an address list from a raw header field value (the folded text after the colon).
pub fn parse_address_list(raw: &[u8]) -> Vec<Address> {
    let mut addresses = Vec::new();
    let mut element = Element::default();
    let mut rest = raw;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b',' => element.finish(&mut addresses),
            // A group's member list ends at `;`, and Outlook users separate addresses with
            // it: either way the element ends.
            b';' => element.finish(&mut addresses),
            b':' if element.angle.is_none() && !element.words.is_empty() => {
                // A group name: its members follow, the name itself is no address.
                element = Element::default();
            }
            b'"' => match closing_quote(rest) {
                Some(end) => {
                    element.push_quoted(unescape(&rest[..end]));
                    rest = &rest[end + 1..];
                }
                // No closing quote: the quote is a stray character.
                None => element.separate(),
            },
            b'(' => {
                let end = comment_end(rest);
                element.comment = Some(unescape(&rest[..end.min(rest.len())]));
                rest = rest.get(end + 1..).unwrap_or_default();
                element.separate();
            }
            b'<' => {
                // A source route may hold commas (`<@a,@b:joe@x>`); without a closing
                // bracket before the next opening one, the address ends at the next comma.
                let close = rest.iter().position(|&b| b == b'>' || b == b'<');
                let (end, skip) = match close {
                    Some(end) if rest[end] == b'>' => (end, 1),
                    _ => (
                        rest.iter().position(|&b| b == b',').unwrap_or(rest.len()),
                        0,
                    ),
                };
                element.angle = Some(angle_address(&rest[..end]));
                rest = &rest[end + skip..];
                element.separate();
            }
            b' ' | b'\t' | b'\r' | b'\n' => element.separate(),
            _ => element.push_byte(byte),
        }
        if addresses.len() >= MAX_ADDRESSES {
            return addresses;
        }
    }
    element.finish(&mut addresses);
    addresses.truncate(MAX_ADDRESSES);
    addresses
}

/// One element of the list under construction.
#[derive(Default)]
struct Element {
    /// Words: runs of atoms and quoted strings, each with whether it is one quoted string
    /// and nothing else (such a word is a name, never an address).
    words: Vec<(Vec<u8>, bool)>,
    /// Whether the next byte continues the last word (no whitespace or special since).
    joined: bool,
    /// The contents of the angle brackets, if any.
    angle: Option<Vec<u8>>,
    /// The last comment.
    comment: Option<Vec<u8>>,
}

impl Element {
    fn push_byte(&mut self, byte: u8) {
        match self.words.last_mut() {
            Some((word, only_quoted)) if self.joined => {
                word.push(byte);
                *only_quoted = false;
            }
            _ => self.words.push((vec![byte], false)),
        }
        self.joined = true;
    }

    fn push_quoted(&mut self, text: Vec<u8>) {
        // A quoted string glued to an atom (`"john..doe"@example.com`) is one word with it.
        match self.words.last_mut() {
            Some((word, only_quoted)) if self.joined => {
                word.extend_from_slice(&text);
                *only_quoted = false;
            }
            _ => self.words.push((text, true)),
        }
        self.joined = true;
    }

    fn separate(&mut self) {
        self.joined = false;
    }

    /// Ends the element, adding its address (if it has one) to `out`.
    fn finish(&mut self, out: &mut Vec<Address>) {
        let element = std::mem::take(self);
        if let Some(address) = element.into_address() {
            out.push(address);
        }
    }

    fn into_address(self) -> Option<Address> {
        let Element {
            mut words,
            angle,
            comment,
            ..
        } = self;
        let address = match angle {
            Some(address) => address,
            None => {
                let at = words
                    .iter()
                    .rposition(|(word, only_quoted)| !only_quoted && word.contains(&b'@'))
                    .or_else(|| (words.len() == 1 && !words[0].1).then_some(0))?;
                words.remove(at).0
            }
        };
        let address = utf8_or_windows_1252(&address);
        let address = address.trim();
        if address.is_empty() {
            return None;
        }
        let phrase = words
            .iter()
            .map(|(word, _)| word.as_slice())
            .collect::<Vec<_>>()
            .join(&b' ');
        let name = if phrase.is_empty() {
            comment.map(|comment| decode_header_text(&comment))
        } else {
            Some(decode_header_text(&phrase))
        }
        .filter(|name| !name.is_empty());
        Some(Address {
            name,
            address: address.to_owned(),
        })
    }
}

/// Position of the quote that closes a quoted string whose opening quote was just read.
fn closing_quote(rest: &[u8]) -> Option<usize> {
    let mut escaped = false;
    for (position, &byte) in rest.iter().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(position),
            _ => {}
        }
    }
    None
}

/// Position of the parenthesis that closes a comment (comments nest), or the end.
fn comment_end(rest: &[u8]) -> usize {
    let mut depth = 1usize;
    let mut escaped = false;
    for (position, &byte) in rest.iter().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return position;
                }
            }
            _ => {}
        }
    }
    rest.len()
}

/// Removes the backslashes of quoted pairs.
fn unescape(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut escaped = false;
    for &byte in text {
        if byte == b'\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(byte);
    }
    out
}

/// The address inside angle brackets: whitespace and folding removed, an obsolete source
/// route (`@a,@b:`) dropped.
fn angle_address(inside: &[u8]) -> Vec<u8> {
    let inside: Vec<u8> = inside
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    match inside.strip_prefix(b"@") {
        Some(route) => match route.iter().position(|&b| b == b':') {
            Some(colon) => route[colon + 1..].to_vec(),
            None => inside,
        },
        None => inside,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Vec<(Option<String>, String)> {
        parse_address_list(raw.as_bytes())
            .into_iter()
            .map(|a| (a.name, a.address))
            .collect()
    }

    fn named(name: &str, address: &str) -> (Option<String>, String) {
        (Some(name.to_owned()), address.to_owned())
    }

    fn bare(address: &str) -> (Option<String>, String) {
        (None, address.to_owned())
    }

    #[test]
    fn well_formed_lists() {
        assert_eq!(
            parse("Zoë <zoe@example.com>, bob@example.org,\r\n \"Doe, John\" <john@example.com>"),
            vec![
                named("Zoë", "zoe@example.com"),
                bare("bob@example.org"),
                named("Doe, John", "john@example.com"),
            ]
        );
        assert_eq!(
            parse("=?UTF-8?Q?J=C3=B6rg?= <j@x.de>, \"=?UTF-8?Q?M=C3=BCller?=\" <m@x.de>"),
            vec![named("Jörg", "j@x.de"), named("Müller", "m@x.de")]
        );
        assert_eq!(
            parse(r#""Say \"Hi\"" <hi@x.com>, "Back\\slash" <b@x.com>"#),
            vec![
                named("Say \"Hi\"", "hi@x.com"),
                named("Back\\slash", "b@x.com")
            ]
        );
    }

    #[test]
    fn what_servers_give_up_on() {
        // Dovecot: MISSING_MAILBOX for the empty element.
        assert_eq!(parse(", a@aol.com"), vec![bare("a@aol.com")]);
        // Dovecot: ("Big Bug bb" MISSING_MAILBOX).
        assert_eq!(
            parse("Big Bug bb@bug.com"),
            vec![named("Big Bug", "bb@bug.com")]
        );
        // Dovecot: ends the list after "Mikel@Lindsaar".
        assert_eq!(
            parse("a@x.com, Mikel@Lindsaar <r@x.com>, t@x.com"),
            vec![
                bare("a@x.com"),
                named("Mikel@Lindsaar", "r@x.com"),
                bare("t@x.com")
            ]
        );
        // Dovecot: joe@SYNTAX_ERROR.
        assert_eq!(
            parse("Joe <joe@example.com"),
            vec![named("Joe", "joe@example.com")]
        );
        assert_eq!(
            parse("\"unterminated <ut@example.com>"),
            vec![named("unterminated", "ut@example.com")]
        );
        assert_eq!(
            parse("a@example.com; b@example.com,"),
            vec![bare("a@example.com"), bare("b@example.com")]
        );
    }

    #[test]
    fn obsolete_forms() {
        assert_eq!(
            parse("<@route.a,@route.b:joe@x.com>, Mary <@machine.tld:mary@example.net>"),
            vec![bare("joe@x.com"), named("Mary", "mary@example.net")]
        );
        assert_eq!(
            parse("(Sender) sender@example.com (The Sender), a@b.c (Comment (nested))"),
            vec![
                named("The Sender", "sender@example.com"),
                named("Comment (nested)", "a@b.c"),
            ]
        );
        assert_eq!(
            parse("John Q. Public <jqp@x.com>"),
            vec![named("John Q. Public", "jqp@x.com")]
        );
        assert_eq!(
            parse("\"john..doe\"@example.com"),
            vec![bare("john..doe@example.com")]
        );
        assert_eq!(parse("root"), vec![bare("root")]);
    }

    #[test]
    fn groups_and_empty_elements() {
        assert_eq!(
            parse("Team: a@x.com, Bee <b@x.com>;, c@x.com"),
            vec![bare("a@x.com"), named("Bee", "b@x.com"), bare("c@x.com")]
        );
        assert!(parse("undisclosed-recipients:;").is_empty());
        assert!(parse("").is_empty());
        assert!(parse(" , ,, ").is_empty());
        assert!(parse("<>").is_empty());
        assert!(parse("\"x\" <>").is_empty());
        assert!(parse("undisclosed recipients").is_empty());
    }

    #[test]
    fn undeclared_8bit_text() {
        assert_eq!(
            parse_address_list(b"J\xf6rg M\xfcller joerg@example.de")
                .into_iter()
                .map(|a| (a.name, a.address))
                .collect::<Vec<_>>(),
            vec![named("Jörg Müller", "joerg@example.de")]
        );
        assert_eq!(
            parse("Jörg <jörg@bücher.example>"),
            vec![named("Jörg", "jörg@bücher.example")]
        );
    }

    #[test]
    fn bounded_and_never_panics() {
        let many = "a@b.c,".repeat(MAX_ADDRESSES * 2);
        assert_eq!(parse_address_list(many.as_bytes()).len(), MAX_ADDRESSES);
        for input in crate::mail::summary::tests::arbitrary_inputs(5000) {
            parse_address_list(&input);
        }
        for input in [
            "\"", "(", "<", "\\", "\"\\", "((((", "a:b:c:;", "<@", "<@:>",
        ] {
            parse(input);
        }
    }
}
