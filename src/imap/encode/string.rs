//! String arguments: search text, login names, passwords.

use std::fmt;

use super::InvalidArgument;

/// Longest [`ImapString`] accepted, in characters.
const MAX_STRING_CHARS: usize = 8192;

/// How errors name the value they refuse.
const TEXT: &str = "text";

/// A string argument (search text, login name, password...): UTF-8 without NUL, CR or LF,
/// at most 8192 bytes; may be empty.
///
/// CR and LF are refused even though a literal could carry them: search text, login names
/// and passwords do not need line breaks in practice, and servers' handling of them in
/// search strings and credentials varies. `Debug` shows only the length,
/// because passwords are `ImapString`s.
#[derive(Clone, PartialEq, Eq)]
pub struct ImapString(String);

impl ImapString {
    /// Validates a string argument.
    pub fn new(s: &str) -> Result<Self, InvalidArgument> {
        if s.len() > MAX_STRING_CHARS && s.chars().count() > MAX_STRING_CHARS {
            return Err(InvalidArgument::TooLong {
                what: TEXT,
                max: MAX_STRING_CHARS,
            });
        }
        for byte in s.bytes() {
            match byte {
                0 => return Err(InvalidArgument::Nul { what: TEXT }),
                b'\r' | b'\n' => return Err(InvalidArgument::LineBreak { what: TEXT }),
                _ => {}
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// Whether the string is pure ASCII (a SEARCH needs `CHARSET UTF-8` otherwise).
    pub fn is_ascii(&self) -> bool {
        self.0.is_ascii()
    }

    /// The string itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ImapString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImapString({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::encode::testing::*;
    use crate::imap::encode::*;

    fn string_allowed(input: &str) -> bool {
        input.len() <= 8192 && !input.contains(['\0', '\r', '\n'])
    }

    /// Either `ImapString::new` refuses `input` as the rules say, or it reaches the wire,
    /// in LOGIN and in a nested SEARCH, as tokens whose octets are exactly the input.
    fn check_string(input: &str) {
        let result = ImapString::new(input);
        assert_eq!(
            result.is_ok(),
            string_allowed(input),
            "{input:?}: {result:?}"
        );
        let Ok(s) = result else { return };
        let quotable = input.bytes().all(|b| matches!(b, 0x20..=0x7e));

        let tokens = wire_tokens(&Command::new("LOGIN").string(&s).string(&s));
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens[0], Token::atom("LOGIN"));
        for token in &tokens[1..] {
            assert_eq!(token.string_value(), input.as_bytes());
            assert_eq!(matches!(token, Token::Quoted(_)), quotable);
        }

        let keys = [
            SearchKey::Subject(s.clone()),
            SearchKey::Not(Box::new(SearchKey::Or(
                Box::new(SearchKey::From(s.clone())),
                Box::new(SearchKey::Seen),
            ))),
        ];
        let tokens = wire_tokens(&Command::new("UID SEARCH").search(&keys));
        let mut expected_prefix = vec![Token::atom("UID"), Token::atom("SEARCH")];
        if !input.is_ascii() {
            expected_prefix.extend([Token::atom("CHARSET"), Token::atom("UTF-8")]);
        }
        let (prefix, rest) = tokens.split_at(expected_prefix.len());
        assert_eq!(prefix, expected_prefix.as_slice());
        assert_eq!(rest.len(), 7, "{rest:?}");
        assert_eq!(rest[0], Token::atom("SUBJECT"));
        assert_eq!(rest[1].string_value(), input.as_bytes());
        assert_eq!(&rest[2..4], &[Token::atom("NOT"), Token::atom("OR")]);
        assert_eq!(rest[4], Token::atom("FROM"));
        assert_eq!(rest[5].string_value(), input.as_bytes());
        assert_eq!(rest[6], Token::atom("SEEN"));
    }

    #[test]
    fn hostile_corpus_as_strings() {
        for input in hostile_corpus() {
            check_string(&input);
        }
    }

    #[test]
    fn random_strings_round_trip() {
        let mut rng = Rng(2);
        for round in 0..3000 {
            let input = if round % 2 == 0 {
                rng.string(30)
            } else {
                rng.string(30).replace(['\0', '\r', '\n'], "")
            };
            check_string(&input);
        }
    }

    #[test]
    fn string_errors_and_quoting() {
        assert_eq!(
            ImapString::new("a\0b"),
            Err(InvalidArgument::Nul { what: "text" })
        );
        assert_eq!(
            ImapString::new("a\rb"),
            Err(InvalidArgument::LineBreak { what: "text" })
        );
        assert_eq!(
            ImapString::new("a\nb"),
            Err(InvalidArgument::LineBreak { what: "text" })
        );
        assert_eq!(
            ImapString::new(&"s".repeat(8193)),
            Err(InvalidArgument::TooLong {
                what: "text",
                max: 8192
            })
        );
        assert!(ImapString::new(&"s".repeat(8192)).is_ok());
        assert!(text("").is_ascii());
        assert!(text("a\tb").is_ascii());
        assert!(!text("é").is_ascii());
        assert_eq!(text("pass word").as_str(), "pass word");

        let command = Command::new("LOGIN")
            .string(&text("user\"name"))
            .string(&text(""));
        assert_eq!(
            wire_text(&command, false),
            ["A1 LOGIN \"user\\\"name\" \"\"\r\n"]
        );
        // A tab is legal in a quoted string by RFC 3501, but is sent as a literal.
        let command = Command::new("LOGIN")
            .string(&text("a\tb"))
            .string(&text("p"));
        assert_eq!(
            wire_text(&command, false),
            ["A1 LOGIN {3}\r\n", "a\tb \"p\"\r\n"]
        );
    }

    #[test]
    fn imap_string_debug_hides_content() {
        let password = text("hunter2");
        assert_eq!(format!("{password:?}"), "ImapString(7 bytes)");
        let key = SearchKey::Text(text("hunter2"));
        assert!(!format!("{key:?}").contains("hunter2"));
    }
}
