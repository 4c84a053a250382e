//! Messages as the HTTP API shows them: MIME walking, header and body decoding, and the
//! JSON shapes of messages, built from IMAP FETCH data.
//!
//! Nothing here touches a socket or knows about HTTP: the IMAP layer hands in parsed FETCH
//! responses and raw part bytes, and the handlers serialise what comes out.
//!
//! * [`summary`]: the [`Summary`] of a message in a listing, and the decoding of header
//!   text (RFC 2047 words, addresses, dates).
//! * [`listing`]: header list entries as JSON, serialised once and written by concatenation.
//! * [`address`]: address lists read from raw header fields, where a server's ENVELOPE
//!   gave up.
//! * [`structure`]: sorting a BODYSTRUCTURE into text body, HTML body and attachments,
//!   with the IMAP section number of each.
//! * [`content`]: the header list and the decoded text of body parts.
//! * [`html`]: sanitising the HTML body for display (scripts, remote content, `cid:`).
//! * [`transfer`]: streaming base64, quoted-printable and uuencode decoding for downloads.
//! * [`uuencode`]: uuencoded files, as a transfer encoding and inside text bodies.

pub mod address;
pub mod content;
pub mod html;
pub mod listing;
pub mod part_id;
pub mod preview;
pub mod structure;
pub mod summary;
pub mod threading;
pub mod transfer;
pub mod uuencode;

pub use content::{Header, decode_text, parse_headers};
pub use html::{HtmlPolicy, sanitize_html};
pub use structure::{
    Attachment, BodyPart, MessageParts, StructureError, TransferEncoding, WalkLimits,
    has_attachments, walk,
};
pub use summary::{Address, Summary, decode_header_text, summary_from_fetch};
pub use transfer::TransferDecoder;
