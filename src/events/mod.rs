//! Real-time events: one IDLE watcher per (user, mailbox), shared by all of that user's
//! subscribers, turned into ordered, resumable events.
//!
//! A watcher holds its own IMAP connection (inside the user's connection budget), IDLEs, and on
//! every change computes the [`Batch`] from its last state to the new one and broadcasts it.
//! Subscribers receive batches through a bounded broadcast channel; a subscriber that falls too
//! far behind gets `mailbox.reset` instead of unbounded memory. Event ids encode, per mailbox,
//! the delta-sync position reached (a state, or a place inside a batch), so a reconnect with
//! `Last-Event-ID` — to this bridge, a restarted one, or another replica — recomputes what was
//! missed from the IMAP server itself: no event log is kept.
//!
//! The parts: [`hub`] opens streams and replays what a client missed, [`watcher`] follows one
//! mailbox over IDLE and broadcasts its changes, [`stream`] turns broadcasts into one client's
//! events, [`ids`] signs and opens event ids, and [`format`] is how the HTTP layer decides what
//! an event's data looks like on the wire (the JSON payloads and their OpenAPI schemas live in
//! `http::events::payload`).

mod format;
mod hub;
mod ids;
mod stream;
#[cfg(test)]
mod testing;
mod watcher;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;

pub use format::{EventFormat, StreamEnd};
pub use hub::EventHub;
pub use ids::EventIdKeys;

use crate::imap::ImapError;

/// Limits and timers of the event system.
#[derive(Debug, Clone, Copy)]
pub struct EventSettings {
    /// IDLE is re-issued after this long (RFC 2177: before 29 minutes).
    pub reidle: Duration,
    /// Time between NOOPs on servers without IDLE.
    pub poll: Duration,
    /// Most open event streams per user.
    pub max_subscribers_per_user: usize,
    /// Most open event streams in total.
    pub max_subscribers_total: usize,
    /// Batches a subscriber may fall behind before it gets `mailbox.reset`.
    pub queue: usize,
    /// Longest wait between reconnection attempts of a watcher.
    pub max_backoff: Duration,
    /// Time a new watcher may take to connect and learn its mailbox's state.
    pub start_timeout: Duration,
    /// Most changes one replay (or one batch) may hold; beyond, `mailbox.reset`.
    pub max_replay: usize,
    /// Longest IDLE before DONE proves the server still answers.
    pub liveness: Duration,
    /// How long a watcher keeps reconnecting before it ends its streams.
    pub give_up_after: Duration,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// Too many streams for this user or in total.
    #[error("too many event streams")]
    TooManySubscribers,
    /// The IMAP side refused (mailbox missing, credentials, budget...).
    #[error(transparent)]
    Imap(#[from] ImapError),
}
/// Why a stream must end, from outside the hub (the caller's token was revoked or expired).
#[derive(Debug, Clone)]
pub struct Ending {
    /// The problem code.
    pub code: &'static str,
    /// Why, for people.
    pub detail: String,
}

/// One event, ready for the wire.
#[derive(Debug, Clone)]
pub struct OutgoingEvent {
    /// `message.new`, `message.flags`, `message.expunged`, `mailbox.reset`, `auth.expired` or
    /// `stream.end`.
    pub kind: &'static str,
    /// JSON payload, serialised once for every subscriber.
    pub data: Arc<str>,
    /// `id:` field: every mailbox's position after this event.
    pub id: String,
    /// `retry:` field, on a last event after which reconnecting may help.
    pub retry: Option<Duration>,
    /// Whether the stream ends after this event.
    pub last: bool,
}

/// A stream of events for one client.
pub type EventStream = Pin<Box<dyn Stream<Item = OutgoingEvent> + Send>>;

/// An open event stream.
pub struct Subscription {
    /// The id of every mailbox's position as the stream starts: sent before any event, so that
    /// a client that loses the stream before its first event can still resume it.
    pub first_id: String,
    /// The events.
    pub events: EventStream,
}
