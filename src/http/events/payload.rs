//! The JSON data of each event, with its OpenAPI schema, written once per event for every
//! subscriber by the hub through [`JsonFormat`].

use serde::Serialize;
use utoipa::ToSchema;

use crate::events::{EventFormat, StreamEnd};
use crate::mail::summary::Summary;

/// `message.new`: a message arrived.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageNewEvent {
    /// The mailbox.
    pub mailbox: String,
    /// The message's summary (its `uid` included), as in header lists.
    #[serde(flatten)]
    pub summary: Summary,
}

/// `message.flags`: a message's flags changed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"mailbox": "INBOX", "uid": 4827, "flags": ["\\Seen"]}))]
pub struct MessageFlagsEvent {
    /// The mailbox.
    pub mailbox: String,
    /// The message.
    pub uid: u32,
    /// Its flags now.
    pub flags: Vec<String>,
}

/// `message.expunged`: a message left the mailbox (deleted or moved away).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"mailbox": "INBOX", "uid": 4801}))]
pub struct MessageExpungedEvent {
    /// The mailbox.
    pub mailbox: String,
    /// The message.
    pub uid: u32,
}

/// `mailbox.reset`: events cannot say what changed; list the mailbox again.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"mailbox": "INBOX", "uid_validity": 1700000000}))]
pub struct MailboxResetEvent {
    /// The mailbox.
    pub mailbox: String,
    /// Its UIDVALIDITY now.
    pub uid_validity: u32,
}

/// `auth.expired`: the IMAP server refused the OAuth access token; the stream ends. Refresh the
/// token (`POST /v1/auth/refresh`) and reconnect with `Last-Event-ID`: nothing is missed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"code": "upstream_token_expired", "detail": "the IMAP server refused the access token (status invalid_token, scope mail)"}))]
pub struct AuthExpiredEvent {
    /// Always `upstream_token_expired`, as the problem a request would get.
    pub code: &'static str,
    /// What the server said.
    pub detail: String,
}

/// `stream.end`: the stream ends for good: reconnecting as it was cannot help, except where
/// the event comes with a `retry:` field. The event keeps the last event's id.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"code": "mailbox_not_found", "detail": "The mailbox was deleted or renamed.", "mailbox": "Projects"}))]
pub struct StreamEndEvent {
    /// The problem code a request would get now: `mailbox_not_found` (the mailbox was deleted
    /// or renamed), `unauthorized` (the bridge token was revoked or expired, or the IMAP
    /// server refuses the credentials: log in again), `upstream_capability_missing`, or
    /// `upstream_unavailable` (the bridge could not reach the IMAP server for minutes; the
    /// event carries `retry:` and a reconnection with `Last-Event-ID` misses nothing).
    pub code: String,
    /// Why, for people.
    pub detail: String,
    /// The mailbox concerned, when the end is one mailbox's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
}

/// Event data as the JSON objects above.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFormat;

fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

impl EventFormat for JsonFormat {
    fn message_new(&self, mailbox: &str, summary: &Summary) -> String {
        json(&MessageNewEvent {
            mailbox: mailbox.to_owned(),
            summary: summary.clone(),
        })
    }

    fn message_flags(&self, mailbox: &str, uid: u32, flags: &[String]) -> String {
        json(&MessageFlagsEvent {
            mailbox: mailbox.to_owned(),
            uid,
            flags: flags.to_vec(),
        })
    }

    fn message_expunged(&self, mailbox: &str, uid: u32) -> String {
        json(&MessageExpungedEvent {
            mailbox: mailbox.to_owned(),
            uid,
        })
    }

    fn mailbox_reset(&self, mailbox: &str, uid_validity: u32) -> String {
        json(&MailboxResetEvent {
            mailbox: mailbox.to_owned(),
            uid_validity,
        })
    }

    fn auth_expired(&self, detail: &str) -> String {
        json(&AuthExpiredEvent {
            code: "upstream_token_expired",
            detail: detail.to_owned(),
        })
    }

    fn stream_end(&self, end: &StreamEnd<'_>) -> String {
        json(&StreamEndEvent {
            code: end.code.to_owned(),
            detail: end.detail.to_owned(),
            mailbox: end.mailbox.map(str::to_owned),
        })
    }
}
