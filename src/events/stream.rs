//! One client's events: a replay, then the watcher's broadcasts, each event tagged with the
//! position it leads to.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::broadcast;
use tracing::warn;

use super::format::{EventFormat, StreamEnd};
use super::ids::Position;
use super::watcher::{Published, Stamped, Watcher};
use crate::imap::event_batch::{Batch, Change};
use crate::imap::state::MailboxState;
use crate::telemetry::names;

/// Whether `a` has seen something `b` has not.
pub(super) fn is_ahead(a: &MailboxState, b: &MailboxState) -> bool {
    a.highest_modseq > b.highest_modseq || a.uid_next > b.uid_next
}

/// An event before its id is made from every mailbox's position. Cheap to clone: a batch's
/// events are built once and shared by all subscribers.
#[derive(Debug, Clone)]
pub(super) struct Tagged {
    pub(super) mailbox: Arc<str>,
    pub(super) kind: &'static str,
    pub(super) data: Arc<str>,
    /// The mailbox's position after the event; `None` leaves it where it was.
    pub(super) position: Option<Position>,
    /// For `message.new`, the message's UID.
    pub(super) arrival: Option<u32>,
    /// The stream ends after this event.
    pub(super) last: bool,
    /// On a last event, when reconnecting may help.
    pub(super) retry: Option<Duration>,
}

/// The last event of a stream whose watcher's access token was refused; it keeps the
/// mailbox's position (the previous event's), so that a resumed stream misses nothing.
pub(super) fn auth_expired_event(
    format: &dyn EventFormat,
    mailbox: &Arc<str>,
    detail: &str,
) -> Tagged {
    Tagged {
        mailbox: mailbox.clone(),
        kind: "auth.expired",
        data: Arc::from(format.auth_expired(detail)),
        position: None,
        arrival: None,
        last: true,
        retry: None,
    }
}

/// A `stream.end` event; like every last event it keeps the positions, so that a stream
/// resumed later misses nothing.
pub(super) fn end_event(
    format: &dyn EventFormat,
    mailbox: Option<&Arc<str>>,
    end: &StreamEnd<'_>,
    retry: Option<Duration>,
) -> Tagged {
    Tagged {
        mailbox: mailbox.cloned().unwrap_or_else(|| Arc::from("")),
        kind: "stream.end",
        data: Arc::from(format.stream_end(end)),
        position: None,
        arrival: None,
        last: true,
        retry,
    }
}

pub(super) fn reset_event(
    format: &dyn EventFormat,
    mailbox: &Arc<str>,
    state: MailboxState,
) -> Tagged {
    Tagged {
        mailbox: mailbox.clone(),
        kind: "mailbox.reset",
        data: Arc::from(format.mailbox_reset(mailbox, state.uid_validity)),
        position: Some(Position::At(state)),
        arrival: None,
        last: false,
        retry: None,
    }
}

/// The events of a batch, each carrying the position just after it.
pub(super) fn batch_events(
    format: &dyn EventFormat,
    mailbox: &Arc<str>,
    batch: &Batch,
) -> Vec<Tagged> {
    let last = batch.changes.len().saturating_sub(1);
    batch
        .changes
        .iter()
        .enumerate()
        .map(|(i, change)| {
            let position = if i == last {
                Position::At(batch.to)
            } else {
                let (phase, uid) = change.position();
                Position::Within {
                    from: batch.from,
                    to: batch.to,
                    phase,
                    uid,
                }
            };
            let (kind, data, arrival) = match change {
                Change::Arrived(summary) => (
                    "message.new",
                    Arc::from(format.message_new(mailbox, summary)),
                    Some(summary.uid),
                ),
                Change::Flags { uid, flags } => (
                    "message.flags",
                    Arc::from(format.message_flags(mailbox, *uid, flags)),
                    None,
                ),
                Change::Expunged { uid } => (
                    "message.expunged",
                    Arc::from(format.message_expunged(mailbox, *uid)),
                    None,
                ),
            };
            Tagged {
                mailbox: mailbox.clone(),
                kind,
                data,
                position: Some(position),
                arrival,
                last: false,
                retry: None,
            }
        })
        .collect()
}

/// The events of a live batch for a client already at `floor`: the arrivals it has (seen
/// through another replica) left out, and the last event left carrying the batch's end state,
/// as if the batch had been made without them.
pub(super) fn events_past(
    events: &[Tagged],
    to: MailboxState,
    floor: &MailboxState,
) -> Vec<Tagged> {
    let mut kept: Vec<Tagged> = events
        .iter()
        .filter(|e| e.arrival.is_none_or(|uid| uid >= floor.uid_next))
        .cloned()
        .collect();
    if let Some(last) = kept.last_mut() {
        last.position = Some(Position::At(to));
    }
    kept
}

/// Where one subscriber's live events stand.
pub(super) struct Live {
    pub(super) rx: broadcast::Receiver<Arc<Stamped>>,
    pub(super) watcher: Arc<Watcher>,
    pub(super) format: Arc<dyn EventFormat>,
    /// The state the client is known to have reached.
    pub(super) floor: MailboxState,
    /// Broadcasts up to this number are older than what the client was sent.
    pub(super) seen: u64,
}

impl Live {
    /// The events of the next broadcast; `None` when the watcher is gone.
    pub(super) async fn next(&mut self, mailbox: &Arc<str>) -> Option<Vec<Tagged>> {
        loop {
            match self.rx.recv().await {
                Ok(stamped) => {
                    if stamped.seq <= self.seen {
                        continue;
                    }
                    self.seen = stamped.seq;
                    match &stamped.published {
                        Published::Batch { from, to, events } => {
                            // A batch with mod-sequences that is not past the client's position
                            // was seen through another replica; one without (a server lacking
                            // CONDSTORE) is always news, as it was heard live.
                            let exact = to.highest_modseq > 0;
                            if exact && !is_ahead(to, &self.floor) {
                                continue;
                            }
                            if is_ahead(&self.floor, from) {
                                return Some(events_past(events, *to, &self.floor));
                            }
                            return Some(events.clone());
                        }
                        Published::Reset(state) => {
                            self.floor = *state;
                            return Some(vec![reset_event(&*self.format, mailbox, *state)]);
                        }
                        Published::Ended(event) => return Some(vec![event.clone()]),
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    // The client goes on from the watcher's state now, with a receiver that
                    // holds only what is broadcast after it: what is still queued is older.
                    let (state, seq, ended) = {
                        let shared = self.watcher.shared.lock().expect("watcher poisoned");
                        self.rx = shared.tx.subscribe();
                        (shared.state, shared.seq, shared.ended.clone())
                    };
                    warn!(mailbox = %mailbox, skipped, "event subscriber fell behind; sending mailbox.reset");
                    metrics::counter!(names::SSE_RESETS).increment(1);
                    self.seen = seq;
                    let mut events = Vec::new();
                    if let Some(state) = state {
                        self.floor = state;
                        events.push(reset_event(&*self.format, mailbox, state));
                    }
                    events.extend(ended);
                    if !events.is_empty() {
                        return Some(events);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// One mailbox's events: the replay, then live batches (filtered against `start` when the
/// client is ahead of the watcher). Holds the watcher alive.
pub(super) fn mailbox_stream(
    format: Arc<dyn EventFormat>,
    mailbox: Arc<str>,
    watcher: Arc<Watcher>,
    rx: broadcast::Receiver<Arc<Stamped>>,
    replay: Vec<Tagged>,
    start: MailboxState,
) -> Pin<Box<dyn Stream<Item = Tagged> + Send>> {
    // `rx` holds only what was broadcast after it subscribed: nothing of it is old yet.
    let live = Live {
        rx,
        watcher,
        format,
        floor: start,
        seen: 0,
    };
    let live = futures::stream::unfold((live, mailbox), |(mut live, mailbox)| async move {
        let events = live.next(&mailbox).await?;
        Some((futures::stream::iter(events), (live, mailbox)))
    })
    .flatten();
    Box::pin(futures::stream::iter(replay).chain(live))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::testing::{TestFormat, state, watcher_with_queue};
    use crate::events::watcher::broadcast;
    use crate::imap::event_batch::Phase;
    use crate::mail::summary::Summary;

    #[test]
    fn batch_events_point_inside_the_batch_until_the_last() {
        let batch = Batch {
            from: state(10, 5),
            to: state(20, 7),
            changes: vec![
                Change::Expunged { uid: 2 },
                Change::Flags {
                    uid: 3,
                    flags: vec!["\\Seen".into()],
                },
            ],
        };
        let events = batch_events(&TestFormat, &Arc::from("INBOX"), &batch);
        assert_eq!(events[0].kind, "message.expunged");
        assert_eq!(
            events[0].position,
            Some(Position::Within {
                from: state(10, 5),
                to: state(20, 7),
                phase: Phase::Expunged,
                uid: 2
            })
        );
        assert_eq!(events[1].position, Some(Position::At(state(20, 7))));
        assert!(events[1].data.contains("\"flags\":[\"\\\\Seen\"]"));
    }

    fn arrival(uid: u32) -> Change {
        Change::Arrived(Box::new(Summary {
            uid,
            message_id: None,
            subject: Some("s".into()),
            from: Vec::new(),
            to: Vec::new(),
            cc: Vec::new(),
            reply_to: Vec::new(),
            date: None,
            received_at: None,
            flags: Vec::new(),
            size: 10,
            has_attachments: false,
            in_reply_to: None,
            preview: None,
        }))
    }

    fn publish_flags(watcher: &Watcher, n: u64) {
        let batch = Batch {
            from: state(n, 1),
            to: state(n + 1, 1),
            changes: vec![Change::Flags {
                uid: 1,
                flags: vec![format!("$k{n}")],
            }],
        };
        broadcast(
            &watcher.shared,
            Published::Batch {
                from: batch.from,
                to: batch.to,
                events: batch_events(&TestFormat, &Arc::from("INBOX"), &batch),
            },
        );
    }

    #[tokio::test]
    async fn a_lagging_subscriber_goes_on_from_the_reset_and_never_back() {
        let watcher = watcher_with_queue(4);
        let rx = watcher.shared.lock().expect("lock").tx.subscribe();
        let mut stream = mailbox_stream(
            Arc::new(TestFormat),
            Arc::from("INBOX"),
            watcher.clone(),
            rx,
            Vec::new(),
            state(1, 1),
        );
        for n in 1..=20 {
            publish_flags(&watcher, n);
        }
        let first = stream.next().await.expect("an event");
        assert_eq!(first.kind, "mailbox.reset");
        assert_eq!(first.position, Some(Position::At(state(21, 1))));
        publish_flags(&watcher, 21);
        let next = stream.next().await.expect("an event");
        assert_eq!(next.kind, "message.flags", "{next:?}");
        assert!(
            next.data.contains("$k21"),
            "only news after the reset: {next:?}"
        );
        assert_eq!(next.position, Some(Position::At(state(22, 1))));
    }

    #[tokio::test]
    async fn an_end_skipped_while_lagging_still_ends_the_stream() {
        let watcher = watcher_with_queue(2);
        let rx = watcher.shared.lock().expect("lock").tx.subscribe();
        let mut stream = mailbox_stream(
            Arc::new(TestFormat),
            Arc::from("INBOX"),
            watcher.clone(),
            rx,
            Vec::new(),
            state(1, 1),
        );
        for n in 1..=3 {
            publish_flags(&watcher, n);
        }
        let end = end_event(
            &TestFormat,
            Some(&Arc::from("INBOX")),
            &StreamEnd {
                code: "mailbox_not_found",
                detail: "gone",
                mailbox: Some("INBOX"),
            },
            None,
        );
        broadcast(&watcher.shared, Published::Ended(end));
        for n in 4..=6 {
            publish_flags(&watcher, n);
        }
        let kinds: Vec<&str> = [stream.next().await, stream.next().await]
            .into_iter()
            .map(|e| e.expect("an event").kind)
            .collect();
        assert_eq!(kinds, ["mailbox.reset", "stream.end"]);
    }

    #[test]
    fn a_client_ahead_gets_only_the_arrivals_it_lacks_and_the_batch_end() {
        let batch = Batch {
            from: state(10, 5),
            to: state(12, 8),
            changes: vec![arrival(5), arrival(6), arrival(7)],
        };
        let events = batch_events(&TestFormat, &Arc::from("INBOX"), &batch);
        let kept = events_past(&events, batch.to, &state(11, 7));
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].arrival, Some(7));
        assert_eq!(kept[0].position, Some(Position::At(state(12, 8))));
    }
}
