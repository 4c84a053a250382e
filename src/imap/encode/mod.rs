//! The one place a caller's value becomes IMAP command bytes.
//!
//! Every value that arrives from an HTTP caller (mailbox names, search text, flags, UIDs,
//! dates, APPEND bodies, login names and passwords) is turned into one of the validated types
//! below before it can reach an IMAP server, and [`Command`] accepts caller data only through
//! those types. Command names and keywords are `&'static str`, so only code chooses them.
//! Together this makes it impossible to build a command in which a caller's value ends the
//! line, opens a literal the server did not expect, smuggles in a second command or is read
//! as a wildcard:
//!
//! * [`MailboxName`] refuses control characters and the LIST wildcards `*` and `%`; it is
//!   sent as a quoted string of its modified UTF-7 form (RFC 3501 §5.1.3), which is always
//!   printable ASCII.
//! * [`ImapString`] refuses NUL, CR and LF. It is sent as a quoted string when it is
//!   printable ASCII and as a literal otherwise, and the literal's length is always counted
//!   here, from the exact bytes that follow it.
//! * [`Flag`] keywords must be IMAP atoms; [`UidSet`]s, [`PartId`]s, numbers and dates are
//!   rendered from integers, so they carry nothing but digits and punctuation chosen here.
//! * [`Command::to_wire`] splits a command after every synchronising literal so that the
//!   sender waits for the server's continuation request (RFC 3501 §7.5), or uses
//!   non-synchronising literals when the server advertised LITERAL+ (RFC 7888).
//!
//! Modified UTF-7 is implemented here (see [`utf7`]), not taken from a crate.
//!
//! Each kind of value has its own module, with the tests of its rules beside it;
//! [`command`] builds and frames commands from them.
//!
//! The module only produces bytes; it has no async or network dependencies.

mod command;
mod error;
mod flag;
mod mailbox;
mod part_id;
mod search;
mod string;
#[cfg(test)]
mod testing;
mod uid_set;
mod utf7;

pub use command::{Command, LITERAL_MINUS_MAX, Literals};
pub use error::InvalidArgument;
pub use flag::Flag;
pub use mailbox::MailboxName;
pub use part_id::PartId;
pub use search::SearchKey;
pub use string::ImapString;
pub use uid_set::UidSet;
