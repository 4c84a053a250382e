//! Message flags a caller may set or clear.

use super::InvalidArgument;

/// Longest keyword flag accepted. RFC 3501 sets no limit; this keeps flag lists short
/// enough for every server's command-line limit while allowing any realistic keyword.
const MAX_KEYWORD_BYTES: usize = 100;

/// How errors name the values they refuse.
const FLAG: &str = "flag";
const KEYWORD: &str = "keyword flag";

/// A message flag a caller may set or clear: one of the five settable system flags of
/// RFC 3501 §2.3.2, or a keyword.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// `\Seen`
    Seen,
    /// `\Answered`
    Answered,
    /// `\Flagged`
    Flagged,
    /// `\Deleted`
    Deleted,
    /// `\Draft`
    Draft,
    /// A keyword such as `$Label1` or `$Junk`: an IMAP atom of 1 to 100 characters, kept in
    /// the letter case it was given.
    Keyword(String),
}

impl Flag {
    /// Parses a flag given by a caller.
    ///
    /// `\Seen`, `\Answered`, `\Flagged`, `\Deleted` and `\Draft` are accepted in any letter
    /// case. `\Recent` (which only the server sets) and every other word starting with a
    /// backslash are refused. Anything else must be an IMAP atom: 1 to 100 printable ASCII
    /// characters, none of them space or one of `( ) { % * " \ ]`.
    pub fn parse(s: &str) -> Result<Self, InvalidArgument> {
        if s.is_empty() {
            return Err(InvalidArgument::Empty { what: FLAG });
        }
        if let Some(name) = s.strip_prefix('\\') {
            return Self::system(name).ok_or(InvalidArgument::UnknownSystemFlag);
        }
        if s.len() > MAX_KEYWORD_BYTES {
            return Err(InvalidArgument::TooLong {
                what: KEYWORD,
                max: MAX_KEYWORD_BYTES,
            });
        }
        if !s.bytes().all(is_atom_char) {
            return Err(InvalidArgument::NotAnAtom);
        }
        Ok(Self::Keyword(s.to_owned()))
    }

    /// Interprets a flag from a server response (e.g. a FETCH FLAGS item).
    ///
    /// Returns `None` for flags a caller could not set: `\Recent`, `\*`, unknown backslash
    /// flags, and keywords that [`Flag::parse`] would refuse.
    pub fn from_server(s: &str) -> Option<Self> {
        Self::parse(s).ok()
    }

    /// The wire form: `\Seen` etc., or the keyword.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Seen => "\\Seen",
            Self::Answered => "\\Answered",
            Self::Flagged => "\\Flagged",
            Self::Deleted => "\\Deleted",
            Self::Draft => "\\Draft",
            Self::Keyword(keyword) => keyword,
        }
    }

    /// The settable system flag called `\name`, matched case-insensitively.
    fn system(name: &str) -> Option<Self> {
        [
            Self::Seen,
            Self::Answered,
            Self::Flagged,
            Self::Deleted,
            Self::Draft,
        ]
        .into_iter()
        .find(|flag| flag.as_str()[1..].eq_ignore_ascii_case(name))
    }
}

/// Whether `byte` is an ATOM-CHAR of RFC 3501 §9: printable ASCII other than space and the
/// atom-specials `( ) { % * " \ ]`.
fn is_atom_char(byte: u8) -> bool {
    byte.is_ascii_graphic()
        && !matches!(byte, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::encode::testing::*;
    use crate::imap::encode::*;

    fn flag_allowed(input: &str) -> bool {
        match input.strip_prefix('\\') {
            Some(name) => ["Seen", "Answered", "Flagged", "Deleted", "Draft"]
                .iter()
                .any(|system| system.eq_ignore_ascii_case(name)),
            None => {
                (1..=100).contains(&input.len())
                    && input
                        .chars()
                        .all(|c| c.is_ascii_graphic() && !"(){%*\"\\]".contains(c))
            }
        }
    }

    /// Either `Flag::parse` refuses `input` as the rules say, or the flag reaches the wire
    /// in STORE and SEARCH as an atom that parses back to it.
    fn check_flag(input: &str) {
        let result = Flag::parse(input);
        assert_eq!(result.is_ok(), flag_allowed(input), "{input:?}: {result:?}");
        assert_eq!(Flag::from_server(input), result.clone().ok());
        let Ok(flag) = result else { return };
        if !input.starts_with('\\') {
            assert_eq!(flag, Flag::Keyword(input.to_owned()));
        }

        let command = Command::new("UID STORE")
            .uid_set(&UidSet::single(7).unwrap())
            .atom("+FLAGS.SILENT")
            .flags(&[flag.clone(), Flag::Seen]);
        let tokens = wire_tokens(&command);
        let expected_prefix = [
            Token::atom("UID"),
            Token::atom("STORE"),
            Token::atom("7"),
            Token::atom("+FLAGS.SILENT"),
        ];
        assert_eq!(&tokens[..4], &expected_prefix);
        assert_eq!(tokens.len(), 5);
        let Token::List(items) = &tokens[4] else {
            panic!("flags sent as {:?}", tokens[4]);
        };
        assert_eq!(items.len(), 2);
        let Token::Atom(sent) = &items[0] else {
            panic!("flag sent as {:?}", items[0]);
        };
        assert_eq!(Flag::parse(sent).as_ref(), Ok(&flag));
        assert_eq!(items[1], Token::atom("\\Seen"));

        let tokens =
            wire_tokens(&Command::new("SEARCH").search(&[SearchKey::Keyword(flag.clone())]));
        match &flag {
            Flag::Keyword(keyword) => assert_eq!(
                tokens,
                [
                    Token::atom("SEARCH"),
                    Token::atom("KEYWORD"),
                    Token::atom(keyword)
                ]
            ),
            system => assert_eq!(
                tokens,
                [
                    Token::atom("SEARCH"),
                    Token::Atom(system.as_str()[1..].to_ascii_uppercase())
                ]
            ),
        }
    }

    #[test]
    fn hostile_corpus_as_flags() {
        for input in hostile_corpus() {
            check_flag(&input);
        }
    }

    #[test]
    fn random_flags_round_trip() {
        let mut rng = Rng(3);
        for round in 0..3000 {
            let input: String = match round % 3 {
                0 => rng.string(12),
                1 => (0..=rng.below(12))
                    .map(|_| rng.char_in(0x20, 0x7e))
                    .collect(),
                _ => format!(
                    "\\{}",
                    rng.pick(&["seen", "DRAFT", "Recent", "Answered", "x"])
                ),
            };
            check_flag(&input);
        }
    }

    #[test]
    fn flags_parse() {
        assert_eq!(Flag::parse("\\Seen"), Ok(Flag::Seen));
        assert_eq!(Flag::parse("\\SEEN"), Ok(Flag::Seen));
        assert_eq!(Flag::parse("\\answered"), Ok(Flag::Answered));
        assert_eq!(Flag::parse("\\Flagged"), Ok(Flag::Flagged));
        assert_eq!(Flag::parse("\\deleted"), Ok(Flag::Deleted));
        assert_eq!(Flag::parse("\\DrAfT"), Ok(Flag::Draft));
        assert_eq!(
            Flag::parse("$Label1"),
            Ok(Flag::Keyword("$Label1".to_owned()))
        );
        assert_eq!(Flag::parse("Seen"), Ok(Flag::Keyword("Seen".to_owned())));
        assert_eq!(Flag::parse("[x"), Ok(Flag::Keyword("[x".to_owned())));
        assert_eq!(
            Flag::parse("\\Recent"),
            Err(InvalidArgument::UnknownSystemFlag)
        );
        assert_eq!(Flag::parse("\\*"), Err(InvalidArgument::UnknownSystemFlag));
        assert_eq!(
            Flag::parse("\\Junk"),
            Err(InvalidArgument::UnknownSystemFlag)
        );
        assert_eq!(Flag::parse("\\"), Err(InvalidArgument::UnknownSystemFlag));
        assert_eq!(
            Flag::parse(""),
            Err(InvalidArgument::Empty { what: "flag" })
        );
        assert_eq!(
            Flag::parse(&"k".repeat(101)),
            Err(InvalidArgument::TooLong {
                what: "keyword flag",
                max: 100
            })
        );
        assert!(Flag::parse(&"k".repeat(100)).is_ok());
        for bad in [
            "a b", "a]", "(", "a)", "{1}", "%", "a*", "\"", "é", "a\u{7f}", "a\r\n",
        ] {
            assert_eq!(Flag::parse(bad), Err(InvalidArgument::NotAnAtom), "{bad:?}");
        }
        for flag in [
            Flag::Seen,
            Flag::Answered,
            Flag::Flagged,
            Flag::Deleted,
            Flag::Draft,
        ] {
            assert_eq!(Flag::parse(flag.as_str()), Ok(flag.clone()));
        }
        assert_eq!(Flag::Keyword("$Junk".to_owned()).as_str(), "$Junk");
    }

    #[test]
    fn flags_from_server() {
        assert_eq!(Flag::from_server("\\Seen"), Some(Flag::Seen));
        assert_eq!(Flag::from_server("\\deleted"), Some(Flag::Deleted));
        assert_eq!(
            Flag::from_server("$Forwarded"),
            Some(Flag::Keyword("$Forwarded".to_owned()))
        );
        assert_eq!(Flag::from_server("\\Recent"), None);
        assert_eq!(Flag::from_server("\\*"), None);
        assert_eq!(Flag::from_server("\\Important"), None);
        assert_eq!(Flag::from_server(""), None);
    }

    #[test]
    fn flag_lists() {
        let flags = [Flag::Seen, Flag::Keyword("$Label".to_owned())];
        let command = Command::new("UID STORE")
            .uid_set(&UidSet::from_uids([1, 2, 3, 5]).unwrap())
            .atom("+FLAGS")
            .flags(&flags);
        assert_eq!(
            wire_text(&command, false),
            ["A1 UID STORE 1:3,5 +FLAGS (\\Seen $Label)\r\n"]
        );
        let command = Command::new("UID STORE")
            .uid_set(&UidSet::single(1).unwrap())
            .atom("FLAGS")
            .flags(&[]);
        assert_eq!(wire_text(&command, false), ["A1 UID STORE 1 FLAGS ()\r\n"]);
    }
}
