//! Mailbox names: validated UTF-8 for callers, modified UTF-7 on the wire.

use std::fmt;

use super::InvalidArgument;
use super::utf7::{decode_modified_utf7, encode_modified_utf7};

/// Longest mailbox name accepted, in characters (what JSON Schema's `maxLength` counts).
const MAX_MAILBOX_NAME_CHARS: usize = 1000;

/// How errors name the value they refuse.
const MAILBOX_NAME: &str = "mailbox name";

/// A mailbox's full name as UTF-8 (what HTTP callers see), validated.
///
/// A `MailboxName` is never empty, at most 1000 characters long, and contains no control
/// characters and no `*` or `%`, so it can be placed in any command, including as a LIST
/// reference, without being read as a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxName(String);

impl MailboxName {
    /// Validates a mailbox name given by a caller.
    ///
    /// The name must be non-empty, at most 1000 characters, free of C0 controls
    /// (U+0000–U+001F), DEL and C1 controls (U+0080–U+009F), and free of `*` and `%`.
    /// Quotes, backslashes, `&`, `{`, spaces and non-ASCII characters are allowed.
    ///
    /// `INBOX` in any letter case becomes `INBOX`, because RFC 3501 §5.1 makes that one
    /// name case-insensitive. Nothing else is case-folded: whether `inbox/Sub` names a
    /// child of INBOX depends on the server's hierarchy delimiter, which is not known here.
    pub fn new(name: &str) -> Result<Self, InvalidArgument> {
        if name.is_empty() {
            return Err(InvalidArgument::Empty { what: MAILBOX_NAME });
        }
        if name.len() > MAX_MAILBOX_NAME_CHARS && name.chars().count() > MAX_MAILBOX_NAME_CHARS {
            return Err(InvalidArgument::TooLong {
                what: MAILBOX_NAME,
                max: MAX_MAILBOX_NAME_CHARS,
            });
        }
        for ch in name.chars() {
            match ch {
                '\0' => return Err(InvalidArgument::Nul { what: MAILBOX_NAME }),
                '\r' | '\n' => return Err(InvalidArgument::LineBreak { what: MAILBOX_NAME }),
                // `is_control` is exactly Unicode's Cc category: C0, DEL and C1.
                c if c.is_control() => {
                    return Err(InvalidArgument::ControlCharacter { what: MAILBOX_NAME });
                }
                '*' | '%' => return Err(InvalidArgument::Wildcard { what: MAILBOX_NAME }),
                _ => {}
            }
        }
        if name.eq_ignore_ascii_case("INBOX") {
            return Ok(Self("INBOX".to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    /// Decodes a name as the server sent it in LIST or STATUS (modified UTF-7).
    ///
    /// Fails if the name is not strictly valid modified UTF-7, or if the decoded name breaks
    /// one of the rules of [`MailboxName::new`] (a server mailbox whose name contains `*`,
    /// `%` or a control character therefore cannot be represented).
    pub fn from_imap(encoded: &str) -> Result<Self, InvalidArgument> {
        let decoded =
            decode_modified_utf7(encoded).ok_or(InvalidArgument::MalformedModifiedUtf7)?;
        Self::new(&decoded)
    }

    /// The name as UTF-8.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The modified UTF-7 form sent to the server; always printable ASCII.
    pub fn to_imap(&self) -> String {
        encode_modified_utf7(&self.0)
    }

    /// Whether this is the INBOX.
    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::encode::testing::*;
    use crate::imap::encode::*;

    /// The mailbox-name rules, restated independently of the code under test.
    fn mailbox_name_allowed(input: &str) -> bool {
        !input.is_empty()
            && input.chars().count() <= 1000
            && !input
                .chars()
                .any(|c| matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '*' | '%'))
    }

    /// Either `MailboxName::new` refuses `input` as the rules say, or the name reaches the
    /// wire as one token that decodes back to it.
    fn check_mailbox(input: &str) {
        let result = MailboxName::new(input);
        assert_eq!(
            result.is_ok(),
            mailbox_name_allowed(input),
            "{input:?}: {result:?}"
        );
        let Ok(name) = result else { return };
        let expected = if input.eq_ignore_ascii_case("INBOX") {
            "INBOX"
        } else {
            input
        };
        assert_eq!(name.as_str(), expected);
        let encoded = name.to_imap();
        assert!(encoded.bytes().all(|b| matches!(b, 0x20..=0x7e)));
        assert_eq!(MailboxName::from_imap(&encoded).as_ref(), Ok(&name));

        let tokens = wire_tokens(&Command::new("SELECT").mailbox(&name));
        assert_eq!(tokens.len(), 2, "{input:?}: {tokens:?}");
        assert_eq!(tokens[0], Token::atom("SELECT"));
        let decoded = match &tokens[1] {
            Token::Atom(atom) => {
                assert_eq!(atom, "INBOX");
                atom.clone()
            }
            Token::Quoted(bytes) => MailboxName::from_imap(std::str::from_utf8(bytes).unwrap())
                .unwrap()
                .as_str()
                .to_owned(),
            other => panic!("mailbox sent as {other:?}"),
        };
        assert_eq!(decoded, expected);
    }

    #[test]
    fn hostile_corpus_as_mailbox_names() {
        for input in hostile_corpus() {
            check_mailbox(&input);
        }
    }

    #[test]
    fn random_mailbox_names_round_trip() {
        let mut rng = Rng(1);
        for round in 0..3000 {
            let input = if round % 3 == 0 {
                rng.string(24)
            } else {
                rng.mailbox_like(40)
            };
            check_mailbox(&input);
        }
    }

    #[test]
    fn from_imap_applies_the_mailbox_rules() {
        assert_eq!(
            MailboxName::from_imap("&AAA-"),
            Err(InvalidArgument::Nul {
                what: "mailbox name"
            })
        );
        assert_eq!(
            MailboxName::from_imap("a&AAo-b"),
            Err(InvalidArgument::LineBreak {
                what: "mailbox name"
            })
        );
        assert_eq!(
            MailboxName::from_imap("&AIU-"),
            Err(InvalidArgument::ControlCharacter {
                what: "mailbox name"
            })
        );
        assert_eq!(
            MailboxName::from_imap("Lists/*"),
            Err(InvalidArgument::Wildcard {
                what: "mailbox name"
            })
        );
        assert_eq!(
            MailboxName::from_imap(""),
            Err(InvalidArgument::Empty {
                what: "mailbox name"
            })
        );
        assert_eq!(MailboxName::from_imap("inbox").unwrap().as_str(), "INBOX");
        assert_eq!(MailboxName::from_imap("&-").unwrap().as_str(), "&");
    }

    #[test]
    fn mailbox_name_errors() {
        let what = "mailbox name";
        let cases: [(&str, InvalidArgument); 8] = [
            ("", InvalidArgument::Empty { what }),
            ("a\0", InvalidArgument::Nul { what }),
            ("a\r\nb", InvalidArgument::LineBreak { what }),
            ("\t", InvalidArgument::ControlCharacter { what }),
            ("\u{7f}", InvalidArgument::ControlCharacter { what }),
            ("\u{85}", InvalidArgument::ControlCharacter { what }),
            ("Lists/%", InvalidArgument::Wildcard { what }),
            ("*", InvalidArgument::Wildcard { what }),
        ];
        for (input, error) in cases {
            assert_eq!(MailboxName::new(input), Err(error), "{input:?}");
        }
    }

    #[test]
    fn mailbox_name_length_boundary_is_1000_characters() {
        let too_long = InvalidArgument::TooLong {
            what: "mailbox name",
            max: 1000,
        };
        assert!(MailboxName::new(&"a".repeat(1000)).is_ok());
        assert_eq!(MailboxName::new(&"a".repeat(1001)), Err(too_long.clone()));
        assert!(MailboxName::new(&"é".repeat(1000)).is_ok());
        assert_eq!(
            MailboxName::new(&format!("a{}", "é".repeat(1000))),
            Err(too_long.clone())
        );
        assert!(MailboxName::new(&"😀".repeat(1000)).is_ok());
        assert_eq!(
            MailboxName::new(&format!("{}a", "😀".repeat(1000))),
            Err(too_long)
        );
    }

    #[test]
    fn inbox_is_canonicalised_and_sent_as_an_atom() {
        for spelling in ["INBOX", "inbox", "Inbox", "iNbOx"] {
            let name = MailboxName::new(spelling).unwrap();
            assert!(name.is_inbox());
            assert_eq!(name.as_str(), "INBOX");
            assert_eq!(name.to_string(), "INBOX");
            assert_eq!(
                wire_text(&Command::new("SELECT").mailbox(&name), false),
                ["A1 SELECT INBOX\r\n"]
            );
        }
        for other in ["inbox/Sub", "INBOX ", "INBOXX", "İNBOX"] {
            let name = MailboxName::new(other).unwrap();
            assert!(!name.is_inbox());
            assert_eq!(name.as_str(), other);
        }
    }

    #[test]
    fn mailbox_quoting_escapes_quotes_and_backslashes() {
        let name = MailboxName::new("a\"b\\c & {5}").unwrap();
        assert_eq!(
            wire_text(&Command::new("SELECT").mailbox(&name), false),
            ["A1 SELECT \"a\\\"b\\\\c &- {5}\"\r\n"]
        );
    }
}
