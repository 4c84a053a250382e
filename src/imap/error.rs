//! The IMAP layer's one error type: what went wrong upstream, in terms a caller can act on.

use std::io;

use super::encode::InvalidArgument;
use super::guard::Violation;

/// Why an IMAP operation failed. The HTTP layer maps each kind to a status code once.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// A caller's value was refused before anything was sent.
    #[error("{0}")]
    InvalidArgument(#[from] InvalidArgument),
    /// LOGIN was refused: wrong user name or password.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The user's quota does not leave room for the operation (`NO [OVERQUOTA]`, RFC 5530).
    #[error("over quota: {0}")]
    OverQuota(String),
    /// The server refused an OAuth 2.0 access token: wrong, revoked or expired. The text says
    /// what the server's error challenge said, if anything.
    #[error("access token refused: {0}")]
    TokenRefused(String),
    /// The server cannot serve us now (`NO [UNAVAILABLE]`, too many connections, refused).
    #[error("IMAP server unavailable: {0}")]
    Unavailable(String),
    /// The mailbox does not exist (`NO [NONEXISTENT]`, `[TRYCREATE]`).
    #[error("mailbox not found")]
    MailboxNotFound,
    /// The mailbox already exists (`NO [ALREADYEXISTS]`).
    #[error("mailbox already exists")]
    AlreadyExists,
    /// The mailbox has children, and the server does not delete a mailbox with children.
    #[error("mailbox has children")]
    HasChildren,
    /// Without MOVE or UIDPLUS, removing the named messages would also expunge messages
    /// another client marked `\Deleted`; nothing was changed.
    #[error("other messages are marked \\Deleted")]
    OtherMessagesDeleted,
    /// No message with that UID in the mailbox.
    #[error("message not found")]
    MessageNotFound,
    /// No body part with that id in the message.
    #[error("part not found")]
    PartNotFound,
    /// The mailbox's UIDVALIDITY is not the one the caller's state was built on.
    #[error("UIDVALIDITY changed")]
    UidValidityChanged {
        /// The mailbox's current UIDVALIDITY.
        current: u32,
    },
    /// The operation is not allowed on this mailbox (e.g. deleting INBOX).
    #[error("{0}")]
    NotAllowed(String),
    /// The server answered NO for a reason with no better mapping.
    #[error("IMAP server refused: {text}")]
    No {
        /// The RFC 5530 response code, when the server sent one.
        code: Option<String>,
        /// The server's human-readable text.
        text: String,
    },
    /// The server answered BAD: it did not understand us.
    #[error("IMAP server rejected the command: {0}")]
    Bad(String),
    /// The server's response could not be understood, or broke the protocol.
    #[error("IMAP protocol error: {0}")]
    Protocol(String),
    /// The server sent something the upstream guard refuses to hand to the parser.
    #[error("IMAP server sent {0}")]
    UnsafeResponse(Violation),
    /// The server lacks an extension this operation needs.
    #[error("the IMAP server does not support {0}")]
    Unsupported(&'static str),
    /// STARTTLS was required but the server did not offer it, or it failed.
    #[error("STARTTLS refused: {0}")]
    StartTls(&'static str),
    /// TLS handshake or certificate failure.
    #[error("TLS failure: {0}")]
    Tls(String),
    /// A connect, login or command exceeded its time limit.
    #[error("IMAP server timed out")]
    Timeout,
    /// No session could be had within the wait limit.
    #[error("all IMAP sessions are busy")]
    PoolExhausted,
    /// The bridge holds as many IMAP connections as it may in total
    /// (`IMAP_BRIDGE_POOL_MAX_TOTAL`), and none became free within the wait limit.
    #[error("the bridge's connection limit is reached")]
    BridgeFull,
    /// The connection broke.
    #[error("IMAP connection failed: {0}")]
    Io(#[from] io::Error),
}

/// Result of the IMAP layer.
pub type Result<T, E = ImapError> = std::result::Result<T, E>;
