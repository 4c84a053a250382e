//! The command builder: the only way bytes reach an IMAP server.

use std::borrow::Cow;
use std::fmt;

use chrono::{Datelike, NaiveDate};

use super::search::PrefixOrder;
use super::{Flag, ImapString, MailboxName, PartId, SearchKey, UidSet};

/// One argument of a [`Command`], kept apart from its wire form so that the same command
/// can be rendered with or without LITERAL+ and redacted for logs.
#[derive(Clone)]
enum Part {
    /// Text chosen by code, or rendered here from numbers, dates and part ids: sent and
    /// logged as is.
    Plain(Cow<'static, str>),
    /// Caller data whose wire form is fixed and safe by validation (atoms, UID sets): sent
    /// as `wire`, logged as `shape`.
    Masked { wire: String, shape: String },
    /// A caller's string, sent as a quoted string or as a literal depending on its bytes,
    /// logged as `shape`.
    Text { value: String, shape: String },
    /// Octets always sent as a literal, logged by size only.
    Literal(Vec<u8>),
}

impl Part {
    /// Whether a space goes before this part. A code-chosen `)` closes a list that an earlier
    /// atom such as `(UID` opened, and RFC 3501 allows no space before `)`.
    fn needs_separator(&self) -> bool {
        !matches!(self, Self::Plain(text) if text.starts_with(')'))
    }
}

/// A command under construction.
///
/// The command name and keywords are `&'static str` so that only code, never caller data,
/// chooses them; every caller value goes in through a typed method. Arguments follow the
/// name in the order the methods are called, separated by single spaces, except that an
/// [`atom`](Command::atom) starting with `)` is attached to the argument before it, so that
/// `.atom("(UID").section(..).atom(")")` gives `(UID BODY.PEEK[1]<0.100>)`. `Debug` prints
/// [`Command::redacted`].
#[derive(Clone)]
#[must_use = "a Command does nothing until it is encoded with to_wire"]
pub struct Command {
    name: &'static str,
    parts: Vec<Part>,
}

impl Command {
    /// Starts a command, e.g. `"UID FETCH"`, `"SELECT"` or `"LIST"`.
    pub fn new(name: &'static str) -> Self {
        debug_assert!(is_static_text(name), "command name must be one line");
        Self {
            name,
            parts: Vec::new(),
        }
    }

    /// The command's verb, e.g. `"UID FETCH"`: chosen by code, never by a caller.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Appends code-chosen text verbatim: a keyword such as `RETURN`, or static
    /// parenthesised text such as `(UID FLAGS ENVELOPE)` or `(SPECIAL-USE)`.
    pub fn atom(self, keyword: &'static str) -> Self {
        debug_assert!(is_static_text(keyword), "keyword must be one line");
        self.push(Part::Plain(Cow::Borrowed(keyword)))
    }

    /// Appends a number.
    pub fn number(self, n: u64) -> Self {
        self.push(Part::Plain(Cow::Owned(n.to_string())))
    }

    /// Appends a string: quoted (escaping `"` and `\`) when it is printable ASCII,
    /// otherwise a literal.
    pub fn string(self, s: &ImapString) -> Self {
        let shape = format!("<string {} bytes>", s.as_str().len());
        self.push(Part::Text {
            value: s.as_str().to_owned(),
            shape,
        })
    }

    /// Appends a mailbox name: INBOX as the atom `INBOX`, any other name as the quoted
    /// string of its modified UTF-7 form (which is printable ASCII, so never a literal).
    pub fn mailbox(self, m: &MailboxName) -> Self {
        let shape = format!("<mailbox {} bytes>", m.as_str().len());
        if m.is_inbox() {
            self.push(Part::Masked {
                wire: m.as_str().to_owned(),
                shape,
            })
        } else {
            self.push(Part::Text {
                value: m.to_imap(),
                shape,
            })
        }
    }

    /// Appends a LIST pattern chosen by code, such as `*` or `%`.
    pub fn list_pattern(self, pattern: &'static str) -> Self {
        debug_assert!(
            !pattern.is_empty()
                && pattern.bytes().all(
                    |b| b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'"' | b'\\')
                ),
            "a list pattern must consist of list-chars (RFC 3501 section 9)"
        );
        self.push(Part::Plain(Cow::Borrowed(pattern)))
    }

    /// Appends a UID set such as `1:3,5`.
    pub fn uid_set(self, s: &UidSet) -> Self {
        self.push(Part::Masked {
            wire: s.to_string(),
            shape: format!("<{} uids>", s.len()),
        })
    }

    /// Appends the sequence range `first:last`, or `first:*` without `last`, for windows
    /// chosen by code. `first` (and `last`, if given) must be at least 1.
    pub fn seq_range(self, first: u32, last: Option<u32>) -> Self {
        debug_assert!(first >= 1 && last != Some(0), "sequence numbers start at 1");
        let range = match last {
            Some(last) => format!("{first}:{last}"),
            None => format!("{first}:*"),
        };
        self.push(Part::Plain(Cow::Owned(range)))
    }

    /// Appends a parenthesised flag list such as `(\Seen $Label)`; an empty slice gives `()`.
    pub fn flags(self, flags: &[Flag]) -> Self {
        let wire = format!(
            "({})",
            flags.iter().map(Flag::as_str).collect::<Vec<_>>().join(" ")
        );
        let shape = format!(
            "({})",
            flags.iter().map(flag_shape).collect::<Vec<_>>().join(" ")
        );
        self.push(Part::Masked { wire, shape })
    }

    /// Appends a date such as `1-Feb-1994` (RFC 3501 `date`).
    ///
    /// IMAP years have exactly four digits, so dates before year 0 are sent as
    /// `1-Jan-0000` and dates after year 9999 as `31-Dec-9999`; no message is dated
    /// outside that range, so searches by such dates keep their meaning.
    pub fn date(self, d: NaiveDate) -> Self {
        self.push(Part::Plain(Cow::Owned(format_date(d))))
    }

    /// Appends the criteria of SEARCH (RFC 3501 §6.4.4): several keys must all match, and no
    /// keys means `ALL`. `CHARSET UTF-8` is emitted first when any string is non-ASCII (such
    /// strings are sent as literals); otherwise the charset is left at its US-ASCII default.
    ///
    /// For SORT and THREAD, whose criteria syntax differs, use [`Command::sort_criteria`].
    pub fn search(self, keys: &[SearchKey]) -> Self {
        debug_assert!(
            !self.takes_bare_charset(),
            "SORT and THREAD criteria are built with sort_criteria"
        );
        if PrefixOrder::new(keys).any(|key| key.text().is_some_and(|s| !s.is_ascii())) {
            self.atom("CHARSET").atom("UTF-8").search_keys(keys)
        } else {
            self.search_keys(keys)
        }
    }

    /// Appends the charset and criteria of SORT or THREAD (RFC 5256): `UTF-8`, then the keys
    /// as for [`Command::search`] (`ALL` when there are none).
    ///
    /// Not in the original interface of this module: RFC 5256 makes the charset mandatory
    /// and writes it without the `CHARSET` keyword, so [`Command::search`]'s output would be
    /// malformed there. UTF-8 is always named because every SORT server must support it and
    /// it covers ASCII.
    pub fn sort_criteria(self, keys: &[SearchKey]) -> Self {
        debug_assert!(
            self.takes_bare_charset(),
            "sort_criteria belongs to SORT and THREAD"
        );
        self.atom("UTF-8").search_keys(keys)
    }

    /// Appends one FETCH body section item such as `BODY.PEEK[1.2]<0.65536>`.
    ///
    /// `item` is chosen by code (`BODY`, `BODY.PEEK`, `BINARY.PEEK`...). `partial` is
    /// `(offset, length)`; servers refuse a length of 0 (RFC 3501 `partial` uses nz-number).
    ///
    /// Not in the original interface of this module: the message operations fetch body
    /// parts by [`PartId`], and composing `item[part]<o.l>` through [`Command::atom`] is not
    /// possible with a runtime part id.
    pub fn section(self, item: &'static str, part: &PartId, partial: Option<(u32, u32)>) -> Self {
        debug_assert!(is_static_text(item), "section item must be one line");
        let text = format!("{item}[{}]{}", part, format_partial(partial));
        self.push(Part::Plain(Cow::Owned(text)))
    }

    /// Appends a FETCH item for the whole message, such as `BODY.PEEK[]<0.65536>`; see
    /// [`Command::section`] for `item` and `partial`.
    ///
    /// Not in the original interface of this module, for the same reason as
    /// [`Command::section`].
    pub fn whole_body_section(self, item: &'static str, partial: Option<(u32, u32)>) -> Self {
        debug_assert!(is_static_text(item), "section item must be one line");
        let text = format!("{item}[]{}", format_partial(partial));
        self.push(Part::Plain(Cow::Owned(text)))
    }

    /// Appends a FETCH item for a part's MIME header, such as `BODY.PEEK[1.2.MIME]`; see
    /// [`Command::section`] for `item`. The message view reads a file name from it where the
    /// BODYSTRUCTURE lost bytes.
    pub fn mime_header_section(self, item: &'static str, part: &PartId) -> Self {
        debug_assert!(is_static_text(item), "section item must be one line");
        let text = format!("{item}[{}.MIME]", part);
        self.push(Part::Plain(Cow::Owned(text)))
    }

    /// Appends a FETCH item for the message's body without its header, such as
    /// `BODY.PEEK[TEXT]<0.65536>`; see [`Command::section`] for `item` and `partial`.
    pub fn text_section(self, item: &'static str, partial: Option<(u32, u32)>) -> Self {
        debug_assert!(is_static_text(item), "section item must be one line");
        let text = format!("{item}[TEXT]{}", format_partial(partial));
        self.push(Part::Plain(Cow::Owned(text)))
    }

    /// Appends search keys in RFC 3501 syntax, or `ALL` when there are none.
    fn search_keys(mut self, keys: &[SearchKey]) -> Self {
        if keys.is_empty() {
            return self.atom("ALL");
        }
        for key in PrefixOrder::new(keys) {
            self = match key {
                SearchKey::All => self.atom("ALL"),
                SearchKey::Unseen => self.atom("UNSEEN"),
                SearchKey::Seen | SearchKey::Keyword(Flag::Seen) => self.atom("SEEN"),
                SearchKey::Flagged | SearchKey::Keyword(Flag::Flagged) => self.atom("FLAGGED"),
                SearchKey::Unflagged => self.atom("UNFLAGGED"),
                SearchKey::Answered | SearchKey::Keyword(Flag::Answered) => self.atom("ANSWERED"),
                SearchKey::Deleted | SearchKey::Keyword(Flag::Deleted) => self.atom("DELETED"),
                SearchKey::Undeleted => self.atom("UNDELETED"),
                SearchKey::Draft | SearchKey::Keyword(Flag::Draft) => self.atom("DRAFT"),
                SearchKey::From(s) => self.atom("FROM").string(s),
                SearchKey::To(s) => self.atom("TO").string(s),
                SearchKey::Cc(s) => self.atom("CC").string(s),
                SearchKey::Subject(s) => self.atom("SUBJECT").string(s),
                SearchKey::Text(s) => self.atom("TEXT").string(s),
                SearchKey::Body(s) => self.atom("BODY").string(s),
                SearchKey::Since(d) => self.atom("SINCE").date(*d),
                SearchKey::Before(d) => self.atom("BEFORE").date(*d),
                SearchKey::SentSince(d) => self.atom("SENTSINCE").date(*d),
                SearchKey::SentBefore(d) => self.atom("SENTBEFORE").date(*d),
                SearchKey::Uid(set) => self.atom("UID").uid_set(set),
                SearchKey::Keyword(Flag::Keyword(keyword)) => {
                    self.atom("KEYWORD").push(Part::Masked {
                        wire: keyword.clone(),
                        shape: keyword_shape(keyword),
                    })
                }
                // The operands follow in prefix order.
                SearchKey::Not(_) => self.atom("NOT"),
                SearchKey::Or(_, _) => self.atom("OR"),
            };
        }
        self
    }

    /// Appends raw octets as a literal, e.g. an APPEND message. Any bytes are carried
    /// exactly (servers may still reject NUL); the caller enforces size limits.
    pub fn literal(self, bytes: &[u8]) -> Self {
        self.push(Part::Literal(bytes.to_vec()))
    }

    /// The wire form, as pieces to send in order, with `tag` prepended to the first.
    ///
    /// Without `literal_plus`, every piece but the last ends with a synchronising literal
    /// header `{n}\r\n`, after which the sender must wait for the server's `+`
    /// continuation request before sending the next piece (and must abandon the command if
    /// the server answers with a tagged response instead). With `literal_plus`, literals
    /// are sent as `{n+}` and the whole command is one piece; pass `true` only when the
    /// server advertised LITERAL+. [`Command::to_wire_for`] also covers LITERAL-. The last
    /// piece ends with `\r\n`.
    ///
    /// # Panics
    ///
    /// If `tag` is not a valid IMAP tag (non-empty ASTRING-CHARs other than `+`); tags
    /// are generated by the connection, never taken from callers.
    pub fn to_wire(&self, tag: &str, literal_plus: bool) -> Vec<Vec<u8>> {
        let mode = if literal_plus {
            Literals::Plus
        } else {
            Literals::Synchronizing
        };
        self.to_wire_for(tag, mode)
    }

    /// The wire form for a server whose literal support is `mode`: like
    /// [`Command::to_wire`], with non-synchronising literals wherever `mode` allows them.
    ///
    /// # Panics
    ///
    /// As [`Command::to_wire`].
    pub fn to_wire_for(&self, tag: &str, mode: Literals) -> Vec<Vec<u8>> {
        assert!(is_tag(tag), "invalid IMAP tag");
        let mut wire = Wire {
            pieces: Vec::new(),
            current: Vec::new(),
            mode,
        };
        wire.current.extend_from_slice(tag.as_bytes());
        wire.current.push(b' ');
        wire.current.extend_from_slice(self.name.as_bytes());
        for part in &self.parts {
            if part.needs_separator() {
                wire.current.push(b' ');
            }
            match part {
                Part::Plain(text) => wire.current.extend_from_slice(text.as_bytes()),
                Part::Masked { wire: text, .. } => wire.current.extend_from_slice(text.as_bytes()),
                Part::Text { value, .. } => wire.string(value),
                Part::Literal(bytes) => wire.literal(bytes),
            }
        }
        wire.current.extend_from_slice(b"\r\n");
        wire.pieces.push(wire.current);
        wire.pieces
    }

    /// A one-line description for logs: the command name, code-chosen keywords, numbers and
    /// dates, and only the shape of caller values, e.g.
    /// `UID SEARCH CHARSET UTF-8 SUBJECT <string 12 bytes>`. Never contains a caller's
    /// string, so passwords cannot leak through it.
    pub fn redacted(&self) -> String {
        let mut out = self.name.to_owned();
        for part in &self.parts {
            if part.needs_separator() {
                out.push(' ');
            }
            match part {
                Part::Plain(text) => out.push_str(text),
                Part::Masked { shape, .. } | Part::Text { shape, .. } => out.push_str(shape),
                Part::Literal(bytes) => out.push_str(&format!("<literal {} bytes>", bytes.len())),
            }
        }
        out
    }

    fn push(mut self, part: Part) -> Self {
        self.parts.push(part);
        self
    }

    /// Whether this command's criteria are preceded by a bare charset (RFC 5256).
    fn takes_bare_charset(&self) -> bool {
        ["SORT", "UID SORT", "THREAD", "UID THREAD"]
            .iter()
            .any(|name| name.eq_ignore_ascii_case(self.name))
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Command").field(&self.redacted()).finish()
    }
}

/// Accumulates the pieces of [`Command::to_wire`].
struct Wire {
    pieces: Vec<Vec<u8>>,
    current: Vec<u8>,
    mode: Literals,
}

/// What a server accepts as literals (RFC 3501, RFC 7888).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Literals {
    /// Synchronising literals only: `{n}`, then wait for `+`.
    Synchronizing,
    /// LITERAL+: `{n+}` of any size, no wait.
    Plus,
    /// LITERAL-: `{n+}` up to [`LITERAL_MINUS_MAX`] bytes, synchronising beyond.
    Minus,
}

/// The largest non-synchronising literal a LITERAL- server accepts (RFC 7888 §4).
pub const LITERAL_MINUS_MAX: usize = 4096;

impl Literals {
    /// Whether a literal of `len` bytes may be sent without waiting for `+`.
    fn non_synchronizing(self, len: usize) -> bool {
        match self {
            Literals::Synchronizing => false,
            Literals::Plus => true,
            Literals::Minus => len <= LITERAL_MINUS_MAX,
        }
    }
}

/// Whether `value` can travel as a quoted string (else it goes as a literal).
fn is_quotable(value: &str) -> bool {
    // RFC 3501 would also allow other 7-bit bytes except CR and LF in a quoted string,
    // but servers differ on control characters there; a literal is unambiguous.
    value.bytes().all(|b| matches!(b, 0x20..=0x7e))
}

impl Wire {
    /// Writes `value` as a quoted string if every byte may appear in one, else as a literal.
    fn string(&mut self, value: &str) {
        if is_quotable(value) {
            self.current.push(b'"');
            for byte in value.bytes() {
                if matches!(byte, b'"' | b'\\') {
                    self.current.push(b'\\');
                }
                self.current.push(byte);
            }
            self.current.push(b'"');
        } else {
            self.literal(value.as_bytes());
        }
    }

    /// Writes a literal header counting exactly `bytes`, then `bytes`, starting a new piece
    /// after a synchronising header.
    fn literal(&mut self, bytes: &[u8]) {
        let non_synchronizing = self.mode.non_synchronizing(bytes.len());
        let header = if non_synchronizing {
            format!("{{{}+}}\r\n", bytes.len())
        } else {
            format!("{{{}}}\r\n", bytes.len())
        };
        self.current.extend_from_slice(header.as_bytes());
        if !non_synchronizing {
            self.pieces.push(std::mem::take(&mut self.current));
        }
        self.current.extend_from_slice(bytes);
    }
}

/// How a flag appears in [`Command::redacted`]: system flags as themselves, keywords (which
/// callers choose) by length only.
fn flag_shape(flag: &Flag) -> String {
    match flag {
        Flag::Keyword(keyword) => keyword_shape(keyword),
        system => system.as_str().to_owned(),
    }
}

/// How a keyword appears in [`Command::redacted`]: by length only.
fn keyword_shape(keyword: &str) -> String {
    format!("<keyword {} bytes>", keyword.len())
}

/// Formats an RFC 3501 `date`: day without leading zero, English month abbreviation,
/// four-digit year, clamped to the years four digits can express.
fn format_date(d: NaiveDate) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (day, month0, year) = match d.year() {
        ..0 => (1, 0, 0),
        10_000.. => (31, 11, 9999),
        year => (d.day(), d.month0(), year),
    };
    format!("{day}-{}-{year:04}", MONTHS[month0 as usize])
}

/// Formats the `<offset.length>` suffix of a partial FETCH, or nothing.
fn format_partial(partial: Option<(u32, u32)>) -> String {
    match partial {
        Some((offset, length)) => format!("<{offset}.{length}>"),
        None => String::new(),
    }
}

/// Whether code-chosen text is fit to be a command name or keyword: non-empty and free of
/// control characters, so it cannot end the line.
fn is_static_text(text: &str) -> bool {
    !text.is_empty() && !text.bytes().any(|b| b.is_ascii_control())
}

/// Whether `tag` is an RFC 3501 tag: one or more ASTRING-CHARs other than `+`.
fn is_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::encode::testing::*;
    use crate::imap::encode::*;

    #[test]
    fn literal_minus_sends_small_literals_without_waiting_and_large_ones_synchronised() {
        let small = "ü".repeat(LITERAL_MINUS_MAX / 2);
        let large = "ü".repeat(LITERAL_MINUS_MAX / 2 + 1);
        let command = Command::new("UID SEARCH").search(&[
            SearchKey::Subject(text(&small)),
            SearchKey::From(text(&large)),
        ]);
        let pieces: Vec<String> = command
            .to_wire_for("A1", Literals::Minus)
            .into_iter()
            .map(|p| String::from_utf8(p).unwrap())
            .collect();
        assert_eq!(pieces.len(), 2, "only the large literal waits: {pieces:?}");
        assert!(
            pieces[0].contains(&format!("SUBJECT {{{}+}}\r\n{small}", small.len())),
            "{pieces:?}"
        );
        assert!(
            pieces[0].ends_with(&format!("FROM {{{}}}\r\n", large.len())),
            "{pieces:?}"
        );
        assert_eq!(pieces[1], format!("{large}\r\n"));
    }

    /// Raw octets reach the wire as one literal with exactly those octets.
    fn check_literal(bytes: &[u8]) {
        let inbox = MailboxName::new("INBOX").unwrap();
        let command = Command::new("APPEND")
            .mailbox(&inbox)
            .flags(&[Flag::Seen])
            .literal(bytes);
        let tokens = wire_tokens(&command);
        assert_eq!(
            tokens,
            [
                Token::atom("APPEND"),
                Token::atom("INBOX"),
                Token::List(vec![Token::atom("\\Seen")]),
                Token::Literal(bytes.to_vec()),
            ]
        );
    }

    #[test]
    fn hostile_corpus_as_literals() {
        for input in hostile_corpus() {
            check_literal(input.as_bytes());
        }
        check_literal(&[0, 255, b'\r', b'\n', b'}', 0xc3]);
        check_literal(b"");
    }

    #[test]
    fn random_literals_round_trip() {
        let mut rng = Rng(4);
        for _ in 0..500 {
            let len = rng.below(64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            check_literal(&bytes);
        }
    }

    #[test]
    fn to_wire_splits_at_synchronising_literals() {
        let command = Command::new("APPEND")
            .mailbox(&MailboxName::new("Sent Items").unwrap())
            .flags(&[Flag::Seen])
            .literal(b"Subject: hi\r\n\r\nbody\r\n");
        assert_eq!(
            wire_text(&command, false),
            [
                "A1 APPEND \"Sent Items\" (\\Seen) {21}\r\n",
                "Subject: hi\r\n\r\nbody\r\n\r\n"
            ]
        );
        assert_eq!(
            wire_text(&command, true),
            ["A1 APPEND \"Sent Items\" (\\Seen) {21+}\r\nSubject: hi\r\n\r\nbody\r\n\r\n"]
        );
    }

    #[test]
    fn to_wire_with_several_literals() {
        let command = Command::new("LOGIN")
            .string(&text("jürgen"))
            .string(&text("pässword"));
        assert_eq!(
            wire_text(&command, false),
            ["A1 LOGIN {7}\r\n", "jürgen {9}\r\n", "pässword\r\n"]
        );
        assert_eq!(
            wire_text(&command, true),
            ["A1 LOGIN {7+}\r\njürgen {9+}\r\npässword\r\n"]
        );
        let pieces = command.to_wire("A1", false);
        let (_, tokens) = parse_command(&pieces, false);
        assert_eq!(tokens[1], Token::Literal("jürgen".as_bytes().to_vec()));
        assert_eq!(tokens[2], Token::Literal("pässword".as_bytes().to_vec()));
    }

    #[test]
    fn code_chosen_arguments() {
        let command = Command::new("LIST")
            .atom("(SPECIAL-USE)")
            .string(&text(""))
            .list_pattern("*")
            .atom("RETURN")
            .atom("(CHILDREN)");
        assert_eq!(
            wire_text(&command, false),
            ["A1 LIST (SPECIAL-USE) \"\" * RETURN (CHILDREN)\r\n"]
        );
        let command = Command::new("FETCH").seq_range(1, Some(50)).atom("(UID)");
        assert_eq!(wire_text(&command, false), ["A1 FETCH 1:50 (UID)\r\n"]);
        let command = Command::new("FETCH").seq_range(51, None).atom("(UID)");
        assert_eq!(wire_text(&command, false), ["A1 FETCH 51:* (UID)\r\n"]);
        let command = Command::new("UID FETCH")
            .uid_set(&UidSet::single(9).unwrap())
            .atom("(BODY.PEEK[]<0.")
            .number(u64::from(u32::MAX) + 1);
        assert_eq!(
            wire_text(&command, false),
            ["A1 UID FETCH 9 (BODY.PEEK[]<0. 4294967296\r\n"]
        );
        let command = Command::new("NOOP");
        assert_eq!(wire_text(&command, false), ["A1 NOOP\r\n"]);
    }

    #[test]
    #[should_panic(expected = "invalid IMAP tag")]
    fn to_wire_refuses_a_tag_that_could_end_the_line() {
        let _ = Command::new("NOOP").to_wire("A1\r\nA2", false);
    }

    #[test]
    fn redacted_shows_shapes_not_caller_values() {
        let secret = "SECRET-MARKER";
        let command = Command::new("LOGIN")
            .string(&text(&format!("user-{secret}")))
            .string(&text(&format!("pässwörd-{secret}")));
        assert_eq!(
            command.redacted(),
            "LOGIN <string 18 bytes> <string 24 bytes>"
        );
        assert_eq!(
            format!("{command:?}"),
            "Command(\"LOGIN <string 18 bytes> <string 24 bytes>\")"
        );

        let command = Command::new("UID SEARCH").search(&[
            SearchKey::Subject(text(&format!("日本 {secret}"))),
            SearchKey::Keyword(Flag::parse(&format!("${secret}")).unwrap()),
            SearchKey::Uid(UidSet::from_uids([1, 2, 3, 7]).unwrap()),
            SearchKey::Since(date(2024, 5, 6)),
        ]);
        assert_eq!(
            command.redacted(),
            "UID SEARCH CHARSET UTF-8 SUBJECT <string 20 bytes> KEYWORD <keyword 14 bytes> \
             UID <4 uids> SINCE 6-May-2024"
        );

        let command = Command::new("APPEND")
            .mailbox(&MailboxName::new(&format!("Folder {secret}")).unwrap())
            .flags(&[Flag::Draft, Flag::parse(&format!("${secret}")).unwrap()])
            .literal(secret.as_bytes());
        assert_eq!(
            command.redacted(),
            "APPEND <mailbox 20 bytes> (\\Draft <keyword 14 bytes>) <literal 13 bytes>"
        );
        assert_eq!(
            Command::new("SELECT")
                .mailbox(&MailboxName::new("inbox").unwrap())
                .redacted(),
            "SELECT <mailbox 5 bytes>"
        );
    }

    #[test]
    fn body_sections_and_closing_parenthesis() {
        let part = PartId::parse("1.2").unwrap();
        let command = Command::new("UID FETCH")
            .uid_set(&UidSet::single(5).unwrap())
            .atom("(UID")
            .section("BODY.PEEK", &part, Some((0, 65536)))
            .section("BODY.PEEK", &PartId::parse("3").unwrap(), None)
            .atom(")");
        assert_eq!(
            wire_text(&command, false),
            ["A1 UID FETCH 5 (UID BODY.PEEK[1.2]<0.65536> BODY.PEEK[3])\r\n"]
        );
        assert_eq!(
            command.redacted(),
            "UID FETCH <1 uids> (UID BODY.PEEK[1.2]<0.65536> BODY.PEEK[3])"
        );
        let command = Command::new("UID FETCH")
            .uid_set(&UidSet::single(5).unwrap())
            .atom("(UID")
            .whole_body_section("BODY.PEEK", Some((100, 50)))
            .atom(")");
        assert_eq!(
            wire_text(&command, false),
            ["A1 UID FETCH 5 (UID BODY.PEEK[]<100.50>)\r\n"]
        );
        let command = Command::new("FETCH")
            .seq_range(1, None)
            .whole_body_section("BODY", None);
        assert_eq!(wire_text(&command, false), ["A1 FETCH 1:* BODY[]\r\n"]);
        let command = Command::new("UID FETCH")
            .uid_set(&UidSet::single(5).unwrap())
            .atom("(UID")
            .mime_header_section("BODY.PEEK", &part)
            .text_section("BODY.PEEK", Some((0, 4096)))
            .text_section("BODY", None)
            .atom(")");
        assert_eq!(
            wire_text(&command, false),
            ["A1 UID FETCH 5 (UID BODY.PEEK[1.2.MIME] BODY.PEEK[TEXT]<0.4096> BODY[TEXT])\r\n"]
        );
    }
}
