//! Why a caller's value was refused.

/// Why a caller's value was refused.
///
/// The `Display` text is meant for HTTP callers: it names the kind of value and the rule it
/// broke, but never repeats the value itself, which may be a password or may be crafted to
/// mislead whoever reads the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidArgument {
    /// The value is empty where something is required.
    #[error("The {what} must not be empty.")]
    Empty {
        /// The kind of value, e.g. "mailbox name".
        what: &'static str,
    },
    /// The value is longer than allowed.
    #[error("The {what} is too long; at most {max} characters are allowed.")]
    TooLong {
        /// The kind of value, e.g. "mailbox name".
        what: &'static str,
        /// The largest accepted length in bytes.
        max: usize,
    },
    /// The value contains U+0000, which IMAP cannot transport.
    #[error("The {what} must not contain NUL characters.")]
    Nul {
        /// The kind of value, e.g. "text".
        what: &'static str,
    },
    /// The value contains CR or LF, which would end the IMAP command line.
    #[error("The {what} must not contain line breaks (CR or LF).")]
    LineBreak {
        /// The kind of value, e.g. "text".
        what: &'static str,
    },
    /// The value contains a control character other than NUL, CR or LF.
    #[error("The {what} must not contain control characters (U+0000 to U+001F, U+007F to U+009F).")]
    ControlCharacter {
        /// The kind of value, e.g. "mailbox name".
        what: &'static str,
    },
    /// The value contains `*` or `%`, which IMAP LIST reads as wildcards.
    #[error("The {what} must not contain the wildcard characters '*' or '%'.")]
    Wildcard {
        /// The kind of value, e.g. "mailbox name".
        what: &'static str,
    },
    /// A keyword flag is not an IMAP atom.
    #[error(
        "A keyword flag must consist of printable ASCII characters other than \
         space and ( ) {{ % * \" \\ ]."
    )]
    NotAnAtom,
    /// A flag starts with a backslash but is not one a caller may set.
    #[error(
        "Only the system flags \\Seen, \\Answered, \\Flagged, \\Deleted and \\Draft \
         can be set; other flags starting with a backslash are reserved."
    )]
    UnknownSystemFlag,
    /// A UID of 0; UIDs start at 1 (RFC 3501 §2.3.1.1).
    #[error("UIDs start at 1; 0 is not a valid UID.")]
    ZeroUid,
    /// A UID range whose last UID is smaller than its first.
    #[error("A UID range must not end before it starts.")]
    ReversedRange,
    /// A mailbox name from the server is not valid modified UTF-7.
    #[error(
        "The IMAP server sent a mailbox name that is not valid modified UTF-7 \
         (RFC 3501 section 5.1.3)."
    )]
    MalformedModifiedUtf7,
    /// A body part number that is not RFC 3501's `section-part`.
    #[error("A part id must be one or more positive numbers separated by dots, such as 1 or 1.2.")]
    InvalidPartId,
    /// A body part number deeper than any part the bridge lists.
    #[error("A part id has at most {max} numbers.")]
    PartIdTooDeep {
        /// The most numbers accepted.
        max: usize,
    },
    /// Not in the original interface of this module: a page cursor made for another sort or
    /// other filters, found once the cursor's UIDVALIDITY was checked.
    #[error("The cursor belongs to a list with another sort or other filters.")]
    ForeignCursor,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::encode::*;

    #[test]
    fn error_messages_do_not_echo_the_value() {
        let secret = "SECRET-MARKER";
        let errors = [
            MailboxName::new(&format!("{secret}\r\n")).unwrap_err(),
            MailboxName::new(&format!("{secret}*")).unwrap_err(),
            MailboxName::new(&format!("{secret}\u{85}")).unwrap_err(),
            MailboxName::new(&secret.repeat(100)).unwrap_err(),
            MailboxName::from_imap(&format!("{secret}&AGE")).unwrap_err(),
            ImapString::new(&format!("{secret}\0")).unwrap_err(),
            Flag::parse(&format!("{secret} x")).unwrap_err(),
            Flag::parse(&format!("\\{secret}")).unwrap_err(),
        ];
        for error in errors {
            let message = error.to_string();
            assert!(!message.contains(secret), "{message}");
            assert!(!message.is_empty());
        }
        assert_eq!(
            InvalidArgument::TooLong {
                what: "mailbox name",
                max: 1000
            }
            .to_string(),
            "The mailbox name is too long; at most 1000 characters are allowed."
        );
        assert_eq!(
            InvalidArgument::LineBreak { what: "text" }.to_string(),
            "The text must not contain line breaks (CR or LF)."
        );
        assert_eq!(
            InvalidArgument::NotAnAtom.to_string(),
            "A keyword flag must consist of printable ASCII characters other than space and \
             ( ) { % * \" \\ ]."
        );
    }
}
