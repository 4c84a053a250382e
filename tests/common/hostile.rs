//! Hostile inputs, a reader of what Dovecot received that knows IMAP's framing (quoted
//! strings, literals), so an injection test can tell one well-formed command from a smuggled
//! one and check that a caller's value arrived as exactly one string, and a hostile IMAP
//! server (a proxy in front of Dovecot that answers chosen commands itself).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use regex::Regex;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::dovecot::strip_rawlog_timestamp;

/// One hostile value, in every form a field can carry it.
#[derive(Debug, Clone)]
pub struct Payload {
    /// A short printable name for reports.
    pub label: String,
    /// The value as text; `None` when it cannot be one (a lone surrogate, invalid UTF-8).
    pub text: Option<String>,
    /// Raw bytes for URL segments, query values, headers and message bodies.
    pub bytes: Vec<u8>,
    /// The value as a JSON string (its raw text, quotes included), for string fields.
    pub json: Vec<u8>,
    /// The value as a raw JSON number, for number fields (`uids`), when it looks like one.
    pub number: Option<String>,
}

impl Payload {
    fn text(label: &str, text: &str) -> Self {
        let number = looks_numeric(text).then(|| text.to_owned());
        Payload {
            label: label.to_owned(),
            text: Some(text.to_owned()),
            bytes: text.as_bytes().to_vec(),
            json: serde_json::to_vec(text).expect("a string serialises"),
            number,
        }
    }

    /// A value that only exists as JSON escapes (surrogates) or as raw bytes.
    fn raw(label: &str, json: &[u8], bytes: &[u8]) -> Self {
        Payload {
            label: label.to_owned(),
            text: String::from_utf8(bytes.to_vec()).ok(),
            bytes: bytes.to_vec(),
            json: json.to_vec(),
            number: None,
        }
    }

    /// The value as a JSON value's raw text for a number field: the number when it looks like
    /// one, else the string.
    pub fn json_for_number(&self) -> Vec<u8> {
        match &self.number {
            Some(n) => n.as_bytes().to_vec(),
            None => self.json.clone(),
        }
    }

    /// The bytes percent-encoded as one URL path segment or query value.
    pub fn url(&self) -> String {
        percent_encoding::percent_encode(&self.bytes, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
    }
}

/// Whether `s` is a JSON number (so a `uids` field can carry it unquoted).
fn looks_numeric(s: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(s).is_ok_and(|v| v.is_number())
}

/// The corpus: line breaks, NUL, quoting and literal syntax, wildcards, modified UTF-7
/// lookalikes, embedded commands, Unicode separators and controls, bidi overrides, JSON
/// surrogate escapes, invalid UTF-8, over-long values and numbers of every odd shape.
pub fn corpus() -> Vec<Payload> {
    let t = Payload::text;
    let mut out = vec![
        // Line breaks and NUL, alone and inside text.
        t("lone CR", "\r"),
        t("lone LF", "\n"),
        t("CRLF", "\r\n"),
        t("CR inside", "a\rb"),
        t("LF inside", "a\nb"),
        t("CRLF inside", "a\r\nb"),
        t("NUL", "\0"),
        t("NUL inside", "a\0b"),
        t("CRLF + LOGOUT", "\r\nA1 LOGOUT"),
        t("CRLF + DELETE INBOX", "x\r\nA1 DELETE INBOX"),
        t("LF + bridge tag", "INBOX\nb1 DELETE INBOX"),
        t("quote + CRLF", "\"\r\n"),
        t("NUL + command", "x\0\r\nA1 LOGOUT\r\n"),
        // Commands that only become commands if quoting fails.
        t("embedded DELETE", "A1 DELETE INBOX"),
        t("embedded bridge tag", "b9 LOGOUT"),
        t("quote-escape DELETE", "x\" DELETE \"INBOX"),
        t("close-paren LOGOUT", "x) LOGOUT"),
        // Quoting.
        t("quote", "\""),
        t("quote inside", "a\"b"),
        t("quoted", "\"quoted\""),
        t("backslash", "\\"),
        t("backslash inside", "back\\slash"),
        t("backslash quote", "\\\""),
        t("trailing backslash", "trailing\\"),
        t("quotes and backslashes", "he said \"hi\\\" \\\\ there"),
        // Literal syntax.
        t("literal", "{5}"),
        t("literal plus", "{5+}"),
        t("empty literal + CRLF", "{0}\r\n"),
        t("literal at end", "x {5}"),
        t("huge literal", "{4294967296}"),
        // Wildcards and list syntax.
        t("star", "*"),
        t("percent", "%"),
        t("wildcards inside", "a*b%c"),
        t("paren close-open", ") ("),
        t("bracket close", "]"),
        t("bracket paren", "x] (y"),
        t("open paren", "("),
        t("partial syntax", "BODY[]<0.10>"),
        t("NIL", "NIL"),
        // Modified UTF-7 lookalikes.
        t("ampersand dash", "&-"),
        t("mUTF-7 abc", "&AGEAYgBj-"),
        t("lone ampersand", "&"),
        t("mUTF-7 japanese", "&ZeVnLIqe-"),
        t("ampersand words", "Tom & Jerry"),
        // Unicode separators, controls, bidi and friends.
        t("U+2028", "a\u{2028}b"),
        t("U+2029", "a\u{2029}b"),
        t("U+2028 + DELETE", "x\u{2028}A1 DELETE INBOX"),
        t("U+0085 NEL", "a\u{85}b"),
        t("NEL + LOGOUT", "x\u{85}A1 LOGOUT"),
        t("bidi override", "\u{202E}gnp.exe"),
        t("bidi isolates", "\u{2066}iso\u{2069}"),
        t("BOM", "\u{FEFF}bom"),
        t("zero width space", "z\u{200B}w"),
        t("tab", "a\tb"),
        t("DEL", "a\u{7f}b"),
        t("ESC sequence", "\u{1b}[31mred"),
        t("C1 CSI", "a\u{9b}b"),
        t("non-ASCII", "日本語"),
        t("non-ASCII + DELETE", "ü A1 DELETE INBOX"),
        t("emoji", "😀"),
        t("combining", "e\u{301}"),
        // Odd names.
        t("empty", ""),
        t("space", " "),
        t("padded", "  pad  "),
        t("tilde", "~root"),
        t("slash", "a/b"),
        t("double slash", "//"),
        t("dot", "."),
        t("dot dot", ".."),
        t("dotted", "a.b"),
        t("system flag", "\\Seen"),
        t("recent flag", "\\Recent"),
        t("keyword", "$Label1"),
        t("uid set", "1,2"),
        t("uid range", "1:*"),
        // Numbers.
        t("zero", "0"),
        t("minus one", "-1"),
        t("minus zero", "-0"),
        t("float", "1.5"),
        t("exponent", "1e3"),
        t("u32 max", "4294967295"),
        t("u32 max + 1", "4294967296"),
        t("u64 max + 1", "18446744073709551616"),
        t("plus one", "+1"),
        t("hex", "0x10"),
        t("NaN", "NaN"),
        t("Infinity", "Infinity"),
        t("part id", "2"),
        t("deep part id", "1.1.1"),
        // Dates.
        t("date", "2024-01-01"),
        t("impossible date", "2024-02-30"),
        t("year zero", "0000-01-01"),
        t("negative year", "-0001-12-31"),
        t("five-digit year", "+10000-01-01"),
        t("IMAP date", "1-Jan-2024"),
        t("date-time", "2024-01-01T00:00:00Z"),
    ];
    out.push(Payload {
        number: Some(format!("1{}", "0".repeat(400))),
        ..t("400-digit number", &format!("1{}", "0".repeat(400)))
    });
    out.push(Payload {
        number: Some("1.0".to_owned()),
        ..t("float one", "1.0")
    });
    // Lengths around and far beyond every limit.
    out.push(t("1000 chars", &"m".repeat(1000)));
    out.push(t("1001 chars", &"m".repeat(1001)));
    out.push(t("10k chars", &"a".repeat(10_000)));
    out.push(t("10k quotes", &"\"".repeat(10_000)));
    out.push(t("100k chars", &"a".repeat(100_000)));
    out.push(t("100k mixed", &"q\"b\\{1}) x".repeat(100_000 / 10)));
    // JSON escapes that are not text, and bytes that are not UTF-8.
    out.push(Payload::raw(
        "surrogate pair escape",
        br#""\ud83d\ude00""#,
        "😀".as_bytes(),
    ));
    out.push(Payload::raw(
        "lone high surrogate",
        br#""a\ud800b""#,
        b"a\xed\xa0\x80b",
    ));
    out.push(Payload::raw(
        "lone low surrogate",
        br#""\udc00""#,
        b"\xed\xb0\x80",
    ));
    out.push(Payload::raw(
        "reversed surrogates",
        br#""\ude00\ud83d""#,
        b"\xed\xb8\x80\xed\xa0\xbd",
    ));
    out.push(Payload::raw("invalid UTF-8", b"\"a\xffb\"", b"a\xffb"));
    out.push(Payload::raw("overlong slash", b"\"\xc0\xaf\"", b"\xc0\xaf"));
    out.push(Payload::raw(
        "escaped CRLF command",
        br#""x\u000d\u000aA1 DELETE INBOX""#,
        b"x\r\nA1 DELETE INBOX",
    ));
    out
}

// ---------------------------------------------------------------------------------------------
// What the rules of the API say about a value
// ---------------------------------------------------------------------------------------------

/// Whether the API must accept `text` as a mailbox name: 1 to 1000 characters, no control
/// character (C0, DEL, C1) and no wildcard.
pub fn valid_mailbox(text: Option<&str>) -> bool {
    text.is_some_and(|s| {
        !s.is_empty()
            && s.chars().count() <= 1000
            && !s.chars().any(|c| c.is_control() || c == '*' || c == '%')
    })
}

/// Whether the API must accept `text` as a search filter: 1 to 1000 characters, no NUL, CR or
/// LF.
pub fn valid_filter(text: Option<&str>) -> bool {
    text.is_some_and(|s| {
        !s.is_empty() && s.chars().count() <= 1000 && !s.contains(['\0', '\r', '\n'])
    })
}

/// Whether `text` is a flag callers may set: one of the five settable system flags in any
/// letter case, or an IMAP atom of 1 to 100 bytes.
pub fn valid_flag(text: Option<&str>) -> bool {
    let Some(s) = text else { return false };
    if let Some(name) = s.strip_prefix('\\') {
        return ["seen", "answered", "flagged", "deleted", "draft"]
            .contains(&name.to_ascii_lowercase().as_str());
    }
    !s.is_empty()
        && s.len() <= 100
        && s.bytes().all(|b| {
            (0x21..0x7f).contains(&b)
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        })
}

// ---------------------------------------------------------------------------------------------
// Reading the commands Dovecot received
// ---------------------------------------------------------------------------------------------

/// One token of a client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An atom, number, flag, sequence set or section (`BODY.PEEK[1]<0.10>`).
    Atom(Vec<u8>),
    /// A quoted string, unescaped.
    Quoted(Vec<u8>),
    /// A literal's content.
    Literal(Vec<u8>),
    /// `(`
    Open,
    /// `)`
    Close,
}

impl Token {
    /// The content of a string (quoted or literal) or an atom.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            Token::Atom(v) | Token::Quoted(v) | Token::Literal(v) => Some(v),
            Token::Open | Token::Close => None,
        }
    }

    /// Whether this is a string (quoted or literal).
    pub fn is_string(&self) -> bool {
        matches!(self, Token::Quoted(_) | Token::Literal(_))
    }
}

/// One command a client sent, with its framing undone.
#[derive(Debug, Clone)]
pub struct WireCommand {
    /// Which rawlog file (session) it came from.
    pub session: String,
    /// The tag (empty for `DONE`).
    pub tag: String,
    /// The command name in upper case, `UID` joined with its subcommand (`UID FETCH`).
    pub verb: String,
    /// Everything after the name.
    pub args: Vec<Token>,
    /// The command's bytes as sent, for reports.
    pub raw: Vec<u8>,
}

impl WireCommand {
    /// The command as text, shortened for reports.
    pub fn show(&self) -> String {
        let text = String::from_utf8_lossy(&self.raw);
        let text = text.trim_end();
        if text.chars().count() > 300 {
            format!("{}…", text.chars().take(300).collect::<String>())
        } else {
            text.to_owned()
        }
    }
}

/// Why a client stream could not be read as IMAP commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// What was wrong.
    pub reason: String,
    /// Where in the stream.
    pub offset: usize,
}

/// Splits a client's byte stream into commands. Returns the commands, how many bytes they
/// took (a trailing incomplete command is left for the next call), or what was malformed.
///
/// After `AUTHENTICATE`, a line that is empty or one base64 word is the client's SASL response
/// to a continuation request (RFC 3501 §6.2.2): it comes out as a command of verb `SASL` with
/// no tag and that word, if any, as its one argument.
pub fn parse_commands(session: &str, input: &[u8]) -> Result<(Vec<WireCommand>, usize), Malformed> {
    let mut commands = Vec::new();
    let mut pos = 0;
    let mut in_sasl = false;
    while pos < input.len() {
        if in_sasl {
            let Some(end) = input[pos..].windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let line = &input[pos..pos + end];
            if line
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
            {
                commands.push(WireCommand {
                    session: session.to_owned(),
                    tag: String::new(),
                    verb: "SASL".to_owned(),
                    args: if line.is_empty() {
                        Vec::new()
                    } else {
                        vec![Token::Atom(line.to_vec())]
                    },
                    raw: input[pos..pos + end + 2].to_vec(),
                });
                pos += end + 2;
                continue;
            }
        }
        match parse_one(session, input, pos)? {
            Some((command, next)) => {
                in_sasl = command.verb == "AUTHENTICATE";
                commands.push(command);
                pos = next;
            }
            None => break,
        }
    }
    Ok((commands, pos))
}

/// One command starting at `start`; `None` when the input ends inside it.
fn parse_one(
    session: &str,
    input: &[u8],
    start: usize,
) -> Result<Option<(WireCommand, usize)>, Malformed> {
    let bad = |reason: &str, offset: usize| Malformed {
        reason: reason.to_owned(),
        offset,
    };
    let mut tokens = Vec::new();
    let mut pos = start;
    loop {
        let Some(&b) = input.get(pos) else {
            return Ok(None);
        };
        match b {
            b' ' => pos += 1,
            b'\r' => {
                match input.get(pos + 1) {
                    None => return Ok(None),
                    Some(b'\n') => {}
                    Some(_) => return Err(bad("CR not followed by LF", pos)),
                }
                pos += 2;
                break;
            }
            b'\n' => return Err(bad("bare LF", pos)),
            b'(' => {
                tokens.push(Token::Open);
                pos += 1;
            }
            b')' => {
                tokens.push(Token::Close);
                pos += 1;
            }
            b'"' => {
                let mut value = Vec::new();
                pos += 1;
                loop {
                    let Some(&c) = input.get(pos) else {
                        return Ok(None);
                    };
                    match c {
                        b'"' => {
                            pos += 1;
                            break;
                        }
                        b'\\' => match input.get(pos + 1) {
                            None => return Ok(None),
                            Some(&e @ (b'"' | b'\\')) => {
                                value.push(e);
                                pos += 2;
                            }
                            Some(_) => return Err(bad("bad escape in a quoted string", pos)),
                        },
                        b'\r' | b'\n' | 0 => {
                            return Err(bad("CR, LF or NUL in a quoted string", pos));
                        }
                        _ => {
                            value.push(c);
                            pos += 1;
                        }
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            b'{' => {
                let close = input[pos..]
                    .iter()
                    .position(|&c| c == b'}')
                    .map(|i| pos + i);
                let Some(close) = close else {
                    return if input[pos..].contains(&b'\n') {
                        Err(bad("unterminated literal header", pos))
                    } else {
                        Ok(None)
                    };
                };
                let spec = &input[pos + 1..close];
                let digits = spec.strip_suffix(b"+").unwrap_or(spec);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || digits.len() > 12
                {
                    return Err(bad("malformed literal header", pos));
                }
                match input.get(close + 1..close + 3) {
                    None => return Ok(None),
                    Some(b"\r\n") => {}
                    Some(_) => return Err(bad("literal header not at the end of a line", pos)),
                }
                let len: usize = std::str::from_utf8(digits)
                    .expect("digits")
                    .parse()
                    .expect("at most 12 digits");
                let body = close + 3;
                let Some(content) = input.get(body..body + len) else {
                    return Ok(None);
                };
                tokens.push(Token::Literal(content.to_vec()));
                pos = body + len;
            }
            _ => {
                let end = input[pos..]
                    .iter()
                    .position(|&c| matches!(c, b' ' | b'(' | b')' | b'\r' | b'\n'))
                    .map_or(input.len(), |i| pos + i);
                if end == input.len() {
                    return Ok(None);
                }
                let atom = &input[pos..end];
                if atom
                    .iter()
                    .any(|&c| matches!(c, b'"' | b'{' | 0) || c >= 0x80)
                {
                    return Err(bad("quote, brace, NUL or 8-bit byte in an atom", pos));
                }
                tokens.push(Token::Atom(atom.to_vec()));
                pos = end;
            }
        }
    }
    let raw = input[start..pos].to_vec();
    let mut rest = tokens.into_iter();
    let first = rest.next();
    let (tag, verb) = match first {
        Some(Token::Atom(a)) if a.eq_ignore_ascii_case(b"DONE") => {
            (String::new(), "DONE".to_owned())
        }
        Some(Token::Atom(tag)) => {
            let name = match rest.next() {
                Some(Token::Atom(name)) => String::from_utf8_lossy(&name).to_ascii_uppercase(),
                _ => return Err(bad("no command name after the tag", start)),
            };
            let verb = if name == "UID" {
                match rest.next() {
                    Some(Token::Atom(sub)) => {
                        format!("UID {}", String::from_utf8_lossy(&sub).to_ascii_uppercase())
                    }
                    _ => return Err(bad("UID without a command", start)),
                }
            } else {
                name
            };
            (String::from_utf8_lossy(&tag).into_owned(), verb)
        }
        _ => return Err(bad("a line that does not start with a tag", start)),
    };
    Ok(Some((
        WireCommand {
            session: session.to_owned(),
            tag,
            verb,
            args: rest.collect(),
            raw,
        },
        pos,
    )))
}

/// Follows the rawlog files of one user (one `.in` file per IMAP session) and hands out the
/// commands each session sent since the last call.
pub struct RawlogCursor {
    dir: PathBuf,
    /// Per file: bytes of the file consumed, and stripped bytes not yet parsed.
    files: BTreeMap<PathBuf, (usize, Vec<u8>)>,
}

impl RawlogCursor {
    /// A cursor over `dir` (e.g. `<dovecot>/rawlog/<user>`) that starts at the current end of
    /// every file, so only commands sent from now on are reported.
    pub fn new(dir: &Path) -> Self {
        let mut cursor = RawlogCursor {
            dir: dir.to_owned(),
            files: BTreeMap::new(),
        };
        let _ = cursor.take();
        cursor
    }

    /// A cursor over `dir` that reports every command already recorded, too.
    pub fn new_from_start(dir: &Path) -> Self {
        RawlogCursor {
            dir: dir.to_owned(),
            files: BTreeMap::new(),
        }
    }

    /// Every command sent since the last call, session by session, or what was malformed
    /// (with the session's recent bytes).
    pub fn take(&mut self) -> Result<Vec<WireCommand>, String> {
        let mut out = Vec::new();
        let mut paths: Vec<PathBuf> = match fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "in"))
                .collect(),
            Err(_) => Vec::new(),
        };
        paths.sort();
        for path in paths {
            let data = fs::read(&path).unwrap_or_default();
            let (consumed, pending) = self.files.entry(path.clone()).or_default();
            // Only whole lines: a line being written is read next time.
            let Some(last_newline) = data[*consumed..].iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            let fresh = &data[*consumed..*consumed + last_newline + 1];
            *consumed += last_newline + 1;
            for line in fresh.split_inclusive(|&b| b == b'\n') {
                pending.extend_from_slice(strip_rawlog_timestamp(line));
            }
            let session = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match parse_commands(&session, pending) {
                Ok((commands, used)) => {
                    pending.drain(..used);
                    out.extend(commands);
                }
                Err(m) => {
                    let from = m.offset.saturating_sub(200);
                    let context =
                        String::from_utf8_lossy(&pending[from..pending.len().min(m.offset + 200)])
                            .into_owned();
                    pending.clear();
                    return Err(format!(
                        "{session}: {} at byte {}: {context:?}",
                        m.reason, m.offset
                    ));
                }
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Modified UTF-7
// ---------------------------------------------------------------------------------------------

/// Decodes a mailbox name as IMAP sends it (RFC 3501 §5.1.3), strictly: `None` for anything
/// a conforming encoder would not produce.
pub fn mutf7_decode(encoded: &[u8]) -> Option<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    let mut out = String::new();
    let mut i = 0;
    while i < encoded.len() {
        let b = encoded[i];
        if b != b'&' {
            if !(0x20..0x7f).contains(&b) {
                return None;
            }
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let end = encoded[i + 1..].iter().position(|&c| c == b'-')? + i + 1;
        let run = &encoded[i + 1..end];
        i = end + 1;
        if run.is_empty() {
            out.push('&');
            continue;
        }
        let mut bits = 0u32;
        let mut nbits = 0;
        let mut units = Vec::new();
        for &c in run {
            let v = ALPHABET.iter().position(|&a| a == c)? as u32;
            bits = (bits << 6) | v;
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push(((bits >> nbits) & 0xffff) as u16);
            }
        }
        if nbits >= 6 || bits & ((1 << nbits) - 1) != 0 {
            return None;
        }
        let text = String::from_utf16(&units).ok()?;
        // A printable ASCII character inside a run is not canonical.
        if text.chars().any(|c| (' '..='~').contains(&c)) {
            return None;
        }
        out.push_str(&text);
    }
    Some(out)
}

/// `bytes` as escaped text for reports, shortened.
pub fn show_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in String::from_utf8_lossy(bytes).chars().take(120) {
        let _ = write!(out, "{}", chunk.escape_debug());
    }
    if bytes.len() > 120 {
        let _ = write!(out, "…({} bytes)", bytes.len());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A hostile IMAP server
// ---------------------------------------------------------------------------------------------

/// How the proxy answers a command it takes over: the command's tag in, the bytes to send out.
pub type Answer = Arc<dyn Fn(&str) -> Vec<u8> + Send + Sync>;

/// A command the proxy answers itself instead of passing it to Dovecot.
#[derive(Clone)]
pub struct Takeover {
    /// Matched against the command line (tag included, CRLF excluded).
    pub command: Regex,
    /// What the "server" sends back.
    pub answer: Answer,
}

impl Takeover {
    /// Answers commands matching `command` with `answer(tag)`.
    pub fn new(command: &str, answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> Self {
        Takeover {
            command: Regex::new(command).expect("takeover pattern"),
            answer: Arc::new(answer),
        }
    }
}

/// What the proxy saw.
#[derive(Debug, Default)]
pub struct ProxyCounts {
    /// Client connections accepted.
    pub accepted: AtomicUsize,
    /// Client connections that ended.
    pub closed: AtomicUsize,
    /// Commands answered by a [`Takeover`].
    pub taken_over: AtomicUsize,
}

/// A man in the middle between the bridge and Dovecot's plain port, playing a broken or hostile
/// IMAP server: it passes everything through, except that it answers the commands its
/// [`Takeover`]s match with whatever they script, and rewrites the lines Dovecot sends with its
/// `rewrites` (never literal data). Everything else — login, SELECT, the mail itself — is the
/// real server's.
pub struct HostileProxy {
    /// Where the bridge connects.
    pub addr: SocketAddr,
    /// What it saw.
    pub counts: Arc<ProxyCounts>,
    task: JoinHandle<()>,
}

impl HostileProxy {
    /// Listens on a loopback port, in front of `upstream`.
    pub async fn start(
        upstream: SocketAddr,
        takeovers: Vec<Takeover>,
        rewrites: Vec<(Regex, String)>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let counts = Arc::new(ProxyCounts::default());
        let shared = counts.clone();
        let takeovers = Arc::new(takeovers);
        let rewrites = Arc::new(rewrites);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let server = TcpStream::connect(upstream)
                    .await
                    .expect("connect to dovecot");
                tokio::spawn(relay(
                    client,
                    server,
                    takeovers.clone(),
                    rewrites.clone(),
                    shared.clone(),
                ));
            }
        });
        HostileProxy { addr, counts, task }
    }

    /// Client connections that ended so far.
    pub fn closed(&self) -> usize {
        self.counts.closed.load(Ordering::SeqCst)
    }

    /// Commands answered by a takeover so far.
    pub fn taken_over(&self) -> usize {
        self.counts.taken_over.load(Ordering::SeqCst)
    }
}

impl Drop for HostileProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The size a line announces with a trailing `{n}` or `{n+}`.
fn announced_literal(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}\r\n")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Copies exactly `n` bytes.
async fn copy_exact<R, W>(from: &mut R, to: &mut W, n: usize) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let copied = tokio::io::copy(&mut from.take(n as u64), to).await?;
    if copied == n as u64 {
        Ok(())
    } else {
        Err(std::io::ErrorKind::UnexpectedEof.into())
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    takeovers: Arc<Vec<Takeover>>,
    rewrites: Arc<Vec<(Regex, String)>>,
    counts: Arc<ProxyCounts>,
) {
    let (client_read, client_write) = client.into_split();
    let (server_read, mut server_write) = server.into_split();
    let client_write = Arc::new(tokio::sync::Mutex::new(client_write));

    // Dovecot → bridge, line by line, literal data untouched.
    let to_client = client_write.clone();
    let downstream = tokio::spawn(async move {
        let mut from = BufReader::new(server_read);
        let mut line = Vec::new();
        loop {
            line.clear();
            if from.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                break;
            }
            let literal = announced_literal(&line);
            let mut text = String::from_utf8_lossy(&line).into_owned();
            if !rewrites.is_empty() && std::str::from_utf8(&line).is_ok() {
                for (pattern, replacement) in rewrites.iter() {
                    text = pattern
                        .replace_all(&text, replacement.as_str())
                        .into_owned();
                }
                line = text.into_bytes();
            }
            let mut out = to_client.lock().await;
            if out.write_all(&line).await.is_err() {
                break;
            }
            if let Some(n) = literal
                && copy_exact(&mut from, &mut *out, n).await.is_err()
            {
                break;
            }
        }
    });

    // Bridge → Dovecot, unless a takeover answers.
    let mut from = BufReader::new(client_read);
    let mut line = Vec::new();
    loop {
        line.clear();
        if from.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
            break;
        }
        let literal = announced_literal(&line);
        let command = String::from_utf8_lossy(&line);
        let command = command.trim_end_matches(['\r', '\n']);
        if let Some(takeover) = takeovers.iter().find(|t| t.command.is_match(command)) {
            counts.taken_over.fetch_add(1, Ordering::SeqCst);
            let tag = command.split(' ').next().unwrap_or_default();
            let answer = (takeover.answer)(tag);
            let _ = client_write.lock().await.write_all(&answer).await;
            continue;
        }
        if server_write.write_all(&line).await.is_err() {
            break;
        }
        if let Some(n) = literal
            && copy_exact(&mut from, &mut server_write, n).await.is_err()
        {
            break;
        }
    }
    counts.closed.fetch_add(1, Ordering::SeqCst);
    let _ = server_write.shutdown().await;
    downstream.abort();
}
