//! What the tests of every encoder share: a strict reader of the commands they emit, a
//! corpus of hostile input and a small deterministic random generator.

use chrono::NaiveDate;

use super::{Command, ImapString};

/// One token read back from the wire by [`parse_command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Atom(String),
    Quoted(Vec<u8>),
    Literal(Vec<u8>),
    List(Vec<Token>),
}

impl Token {
    pub(crate) fn atom(text: &str) -> Self {
        Self::Atom(text.to_owned())
    }

    /// The octets a server sees as this string token's value.
    pub(crate) fn string_value(&self) -> &[u8] {
        match self {
            Self::Quoted(value) | Self::Literal(value) => value,
            other => panic!("expected a string, got {other:?}"),
        }
    }
}

/// A reader of one IMAP command, just strict enough to check what this module emits.
pub(crate) struct Reader<'a> {
    wire: &'a [u8],
    position: usize,
    literal_plus: bool,
    /// Offsets just after each synchronising literal header, where the sender must
    /// wait for a continuation request.
    sync_points: Vec<usize>,
}

impl Reader<'_> {
    pub(crate) fn peek(&self) -> Option<u8> {
        self.wire.get(self.position).copied()
    }

    pub(crate) fn next_byte(&mut self) -> u8 {
        let byte = self.peek().expect("command ends in the middle of a token");
        self.position += 1;
        byte
    }

    pub(crate) fn expect(&mut self, expected: &[u8]) {
        assert!(
            self.wire[self.position..].starts_with(expected),
            "expected {:?} at byte {}",
            String::from_utf8_lossy(expected),
            self.position
        );
        self.position += expected.len();
    }

    pub(crate) fn token(&mut self) -> Token {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            Some(b'(') => self.list(),
            _ => Token::Atom(self.bare_atom()),
        }
    }

    /// An atom-like token: atoms, flags, numbers, sequence sets, wildcards.
    pub(crate) fn bare_atom(&mut self) -> String {
        let start = self.position;
        while let Some(byte) = self.peek()
            && byte.is_ascii_graphic()
            && !matches!(byte, b'(' | b')' | b'{' | b'"')
        {
            self.position += 1;
        }
        assert!(self.position > start, "expected a token at byte {start}");
        String::from_utf8(self.wire[start..self.position].to_vec()).unwrap()
    }

    pub(crate) fn quoted(&mut self) -> Token {
        self.expect(b"\"");
        let mut value = Vec::new();
        loop {
            match self.next_byte() {
                b'"' => return Token::Quoted(value),
                b'\\' => {
                    let escaped = self.next_byte();
                    assert!(matches!(escaped, b'"' | b'\\'), "bad escape {escaped:#04x}");
                    value.push(escaped);
                }
                byte @ 0x20..=0x7e => value.push(byte),
                byte => panic!("raw byte {byte:#04x} inside a quoted string"),
            }
        }
    }

    pub(crate) fn literal(&mut self) -> Token {
        self.expect(b"{");
        let start = self.position;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.position += 1;
        }
        let digits = std::str::from_utf8(&self.wire[start..self.position]).unwrap();
        let length: usize = digits.parse().expect("literal length");
        let non_synchronising = self.peek() == Some(b'+');
        assert_eq!(
            non_synchronising, self.literal_plus,
            "literal kind must follow LITERAL+"
        );
        if non_synchronising {
            self.position += 1;
        }
        self.expect(b"}\r\n");
        if !non_synchronising {
            self.sync_points.push(self.position);
        }
        assert!(
            self.position + length <= self.wire.len(),
            "literal longer than the rest of the command"
        );
        let data = self.wire[self.position..self.position + length].to_vec();
        self.position += length;
        assert!(
            matches!(self.peek(), Some(b' ' | b'\r' | b')')),
            "literal count does not end at a token boundary"
        );
        Token::Literal(data)
    }

    pub(crate) fn list(&mut self) -> Token {
        self.expect(b"(");
        let mut items = Vec::new();
        if self.peek() == Some(b')') {
            self.position += 1;
            return Token::List(items);
        }
        loop {
            items.push(self.token());
            match self.next_byte() {
                b' ' => {}
                b')' => return Token::List(items),
                byte => panic!("unexpected {byte:#04x} in a list"),
            }
        }
    }
}

/// Reads `pieces` back as exactly one command and returns its tag and tokens (the
/// command name's words included). Panics unless the only CRLFs outside literal data
/// are literal headers and the final one, the pieces split exactly after synchronising
/// literal headers, and every literal's count matches its data.
pub(crate) fn parse_command(pieces: &[Vec<u8>], literal_plus: bool) -> (String, Vec<Token>) {
    assert!(!pieces.is_empty());
    let boundaries: Vec<usize> = pieces[..pieces.len() - 1]
        .iter()
        .scan(0, |offset, piece| {
            *offset += piece.len();
            Some(*offset)
        })
        .collect();
    let wire = pieces.concat();
    let mut reader = Reader {
        wire: &wire,
        position: 0,
        literal_plus,
        sync_points: Vec::new(),
    };
    let tag = reader.bare_atom();
    reader.expect(b" ");
    let mut tokens = vec![reader.token()];
    while reader.peek() == Some(b' ') {
        reader.position += 1;
        tokens.push(reader.token());
    }
    reader.expect(b"\r\n");
    assert_eq!(reader.position, wire.len(), "bytes after the final CRLF");
    assert_eq!(
        reader.sync_points, boundaries,
        "pieces must end exactly at synchronising literal headers"
    );
    (tag, tokens)
}

/// Encodes `command` with and without LITERAL+, checks both framings, and returns the
/// tokens, which must not depend on the literal kind.
pub(crate) fn wire_tokens(command: &Command) -> Vec<Token> {
    let (tag, tokens) = parse_command(&command.to_wire("A1", false), false);
    assert_eq!(tag, "A1");
    let plus = command.to_wire("A1", true);
    assert_eq!(plus.len(), 1, "with LITERAL+ a command is one piece");
    let (tag_plus, tokens_plus) = parse_command(&plus, true);
    assert_eq!(tag_plus, "A1");
    assert_eq!(tokens, tokens_plus);
    tokens
}

pub(crate) fn wire_text(command: &Command, literal_plus: bool) -> Vec<String> {
    command
        .to_wire("A1", literal_plus)
        .into_iter()
        .map(|piece| String::from_utf8(piece).unwrap())
        .collect()
}

pub(crate) fn date(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).unwrap()
}

pub(crate) fn text(s: &str) -> ImapString {
    ImapString::new(s).unwrap()
}

pub(crate) fn hostile_corpus() -> Vec<String> {
    let mut corpus: Vec<String> = [
        "\r",
        "\n",
        "\r\n",
        "a\rb",
        "a\nb",
        "x\r\nA2 LOGOUT",
        "\0",
        "a\0b",
        "\"",
        "\\",
        "\\\"",
        "\"\\",
        "{5}",
        "{5+}",
        "{5}\r\n",
        "{0}",
        "*",
        "%",
        "a*",
        "INBOX.%",
        "&",
        "&-",
        "&AGE-",
        "&AGE",
        "&&",
        "-&-",
        "A1 DELETE INBOX",
        "\") (",
        ") (",
        "]",
        "(",
        "+",
        "NIL",
        "é",
        "日本語",
        "~peter/mail/台北/日本語",
        "😀",
        "a😀",
        "😀b&",
        "שלום",
        "مرحبا",
        "\u{202e}evil",
        "",
        " ",
        "a b",
        " leading and trailing ",
        "\t",
        "\u{7f}",
        "\u{85}",
        "\u{9f}",
        "\u{a0}",
        "\u{2028}",
        "\u{feff}",
        "\u{fffd}",
        "e\u{301}",
        "\u{301}",
        "INBOX",
        "inbox",
        "InBoX",
        "INBOX/Sub",
        "\\Seen",
        "\\seen",
        "\\Recent",
        "\\*",
        "\\",
        "$Label1",
        "$Junk",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    corpus.push("x".repeat(10 * 1024));
    corpus.push("a".repeat(999));
    corpus.push("a".repeat(1000));
    corpus.push("a".repeat(1001));
    corpus.push("é".repeat(500));
    corpus.push(format!("a{}", "é".repeat(500)));
    corpus.push("😀".repeat(250));
    corpus.push(format!("{}a", "😀".repeat(250)));
    corpus.push("k".repeat(100));
    corpus.push("k".repeat(101));
    corpus.push("s".repeat(8192));
    corpus.push("s".repeat(8193));
    corpus
}

/// splitmix64: a small deterministic generator, so failures are reproducible.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub(crate) fn char_in(&mut self, low: u32, high: u32) -> char {
        let span = (high - low + 1) as usize;
        loop {
            if let Some(c) = char::from_u32(low + self.below(span) as u32) {
                return c;
            }
        }
    }

    /// A character from a mix that favours the troublesome ones.
    pub(crate) fn char(&mut self) -> char {
        const SPECIAL: &[char] = &[
            '&', '-', '*', '%', '"', '\\', '{', '}', '+', '\r', '\n', '\0', ' ', '(', ')', ']',
            '~', ',', '/', '\t', '\u{7f}', '\u{85}', '\u{2028}', '\u{301}', '\u{feff}',
        ];
        match self.below(7) {
            0 | 1 => self.char_in(0x20, 0x7e),
            2 => self.char_in(0, 0x7f),
            3 => *self.pick(SPECIAL),
            4 => self.char_in(0x80, 0x7ff),
            5 => self.char_in(0x800, 0xffff),
            _ => self.char_in(0x1_0000, 0x10_ffff),
        }
    }

    /// A string of characters and hostile fragments.
    pub(crate) fn string(&mut self, max_len: usize) -> String {
        const FRAGMENTS: &[&str] = &[
            "{5}\r\n",
            "{5+}",
            "A1 DELETE INBOX",
            "\") (",
            "&-",
            "&AGE-",
            "INBOX",
            "\r\n",
            "😀",
            "日本語",
        ];
        let len = self.below(max_len + 1);
        let mut out = String::new();
        while out.chars().count() < len {
            if self.below(8) == 0 {
                let fragment = *self.pick(FRAGMENTS);
                out.push_str(fragment);
            } else {
                out.push(self.char());
            }
        }
        out
    }

    /// Like `string`, but without the characters mailbox names refuse, so that most
    /// results are valid names.
    pub(crate) fn mailbox_like(&mut self, max_len: usize) -> String {
        self.string(max_len)
            .chars()
            .filter(|c| !c.is_control() && !matches!(c, '*' | '%'))
            .collect()
    }
}
