//! What an event's data is on the wire: decided by the layer that serves the streams.
//!
//! The hub serialises each event once for all of its subscribers, through the
//! [`EventFormat`] it was built with; the HTTP layer's implementation writes the JSON payloads
//! its OpenAPI document describes.

use crate::mail::summary::Summary;

/// Why a stream ends for good (the data of `stream.end`).
#[derive(Debug, Clone)]
pub struct StreamEnd<'a> {
    /// The problem code a request would get now.
    pub code: &'a str,
    /// Why, for people.
    pub detail: &'a str,
    /// The mailbox concerned, when the end is one mailbox's.
    pub mailbox: Option<&'a str>,
}

/// Writes the data of each kind of event.
pub trait EventFormat: Send + Sync {
    /// `message.new`: a message arrived in `mailbox`.
    fn message_new(&self, mailbox: &str, summary: &Summary) -> String;
    /// `message.flags`: a message's flags are now `flags`.
    fn message_flags(&self, mailbox: &str, uid: u32, flags: &[String]) -> String;
    /// `message.expunged`: a message left the mailbox.
    fn message_expunged(&self, mailbox: &str, uid: u32) -> String;
    /// `mailbox.reset`: events cannot say what changed.
    fn mailbox_reset(&self, mailbox: &str, uid_validity: u32) -> String;
    /// `auth.expired`: the IMAP server refused the access token, saying `detail`.
    fn auth_expired(&self, detail: &str) -> String;
    /// `stream.end`.
    fn stream_end(&self, end: &StreamEnd<'_>) -> String;
}
