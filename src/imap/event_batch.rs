//! The changes between two delta-sync states, ordered and bounded so that they can be sent as
//! events and replayed exactly.
//!
//! A batch from state `from` to state `to` holds, in a fixed order (phase, then UID):
//! expunges of messages the client could know (UID below `from`'s UIDNEXT, vanished after
//! `from` but not after `to`), then arrivals (UIDs in `[from.uid_next, to.uid_next)`, still
//! present, with their summaries), then flag changes (UID below `from`'s UIDNEXT, MODSEQ in
//! `(from, to]`). Everything after `to` belongs to the next batch. Because each part is defined
//! by the two states alone, the same batch can be recomputed later — after a dropped
//! connection, a restart, or on another replica — and resumed after any of its events.

use std::collections::{BTreeMap, BTreeSet};

use async_imap::imap_proto::{AttributeValue, Response};

use super::connection::Connection;
use super::encode::{Command, MailboxName, UidSet};
use super::error::{ImapError, Result};
use super::messages::{FetchedSummary, collect_summaries};
use super::previews::PreviewMode;
use super::state::MailboxState;
use crate::mail::summary::Summary;

/// Where an event sits inside its batch; events are ordered by (phase, UID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Expunges.
    Expunged = 1,
    /// Arrivals.
    Arrived = 2,
    /// Flag changes.
    Flags = 3,
}

/// One change.
#[derive(Debug, Clone)]
pub enum Change {
    /// A message was expunged.
    Expunged {
        /// Its UID.
        uid: u32,
    },
    /// A message arrived.
    Arrived(Box<Summary>),
    /// A message's flags changed.
    Flags {
        /// Its UID.
        uid: u32,
        /// Its flags now.
        flags: Vec<String>,
    },
}

impl Change {
    /// The change's place in its batch.
    pub fn position(&self) -> (Phase, u32) {
        match self {
            Change::Expunged { uid } => (Phase::Expunged, *uid),
            Change::Arrived(summary) => (Phase::Arrived, summary.uid),
            Change::Flags { uid, .. } => (Phase::Flags, *uid),
        }
    }
}

/// The changes from one state to another, in batch order.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The state the batch starts from.
    pub from: MailboxState,
    /// The state the batch ends at.
    pub to: MailboxState,
    /// The changes, ordered by [`Change::position`].
    pub changes: Vec<Change>,
}

impl Connection {
    /// The batch of changes from `from` to `to` in the selected mailbox `mailbox`; `to` must
    /// be a state the server reported for it (its HIGHESTMODSEQ and UIDNEXT at some moment).
    /// Needs CONDSTORE and QRESYNC. One round trip.
    ///
    /// `None` when the batch would hold more than `limit` changes: more arrivals than that are
    /// known from the two states before anything is fetched, and expunges and flag changes stop
    /// being collected once past the limit, so a batch costs at most `limit` entries of memory
    /// whatever the two states say.
    pub async fn batch_between(
        &mut self,
        mailbox: &MailboxName,
        from: &MailboxState,
        to: &MailboxState,
        limit: usize,
    ) -> Result<Option<Batch>> {
        if to.uid_next.saturating_sub(from.uid_next) as usize > limit {
            return Ok(None);
        }
        self.select(mailbox).await?;
        if !(self.capabilities().has("CONDSTORE") && self.capabilities().has("QRESYNC")) {
            return Err(ImapError::Unsupported("CONDSTORE and QRESYNC"));
        }
        let mut overflow = false;
        // What vanished after `to` belongs to the next batch. Asked on its own: VANISHED
        // responses carry no tag, so pipelining two such queries would blur whose they are.
        let mut vanished_since_to = BTreeSet::new();
        let later = Command::new("UID FETCH")
            .uid_set(&UidSet::every())
            .atom("(UID) (CHANGEDSINCE")
            .number(to.highest_modseq)
            .atom("VANISHED)");
        self.run(&later, |r| {
            if let Response::Vanished {
                earlier: true,
                uids,
            } = r
            {
                overflow |= !collect_vanished(&mut vanished_since_to, uids, from.uid_next, limit);
            }
            Ok(())
        })
        .await?
        .into_result()?;

        let mut cmds = vec![
            Command::new("UID FETCH")
                .uid_set(&UidSet::every())
                .atom("(UID FLAGS MODSEQ) (CHANGEDSINCE")
                .number(from.highest_modseq)
                .atom("VANISHED)"),
        ];
        let arrivals = (to.uid_next > from.uid_next)
            .then(|| UidSet::range(from.uid_next, to.uid_next - 1))
            .transpose()?;
        let mode = PreviewMode::of(self, true);
        if let Some(range) = &arrivals {
            // Arrivals answer with ENVELOPE, which tells them apart in the shared stream.
            cmds.push(
                Command::new("UID FETCH")
                    .uid_set(range)
                    .atom(mode.summary_items()),
            );
        }
        let mut vanished_since_from = BTreeSet::new();
        let mut modified: BTreeMap<u32, (u64, Vec<String>)> = BTreeMap::new();
        let mut arrived: Vec<FetchedSummary> = Vec::new();
        let done = {
            let mut collect_arrivals = collect_summaries(&mut arrived, mode);
            self.run_pipelined_raw(&cmds, |_, r, raw| {
                match r {
                    Response::Vanished {
                        earlier: true,
                        uids,
                    } => {
                        overflow |=
                            !collect_vanished(&mut vanished_since_from, uids, from.uid_next, limit);
                    }
                    Response::Fetch(_, attrs)
                        if attrs
                            .iter()
                            .any(|a| matches!(a, AttributeValue::Envelope(_))) =>
                    {
                        collect_arrivals(r, raw)?;
                    }
                    Response::Fetch(_, attrs) => {
                        if let Some((uid, modseq, flags)) = modseq_and_flags(attrs) {
                            // Only changes inside the batch count against the limit.
                            let inside = uid < from.uid_next
                                && modseq > from.highest_modseq
                                && modseq <= to.highest_modseq;
                            if inside && (modified.len() < limit || modified.contains_key(&uid)) {
                                modified.insert(uid, (modseq, flags));
                            } else if inside {
                                overflow = true;
                            }
                        }
                    }
                    _ => {}
                }
                Ok(())
            })
            .await?
        };
        for completion in done {
            completion.into_result()?;
        }
        arrived.sort_unstable_by_key(|f| f.uid);
        arrived.dedup_by_key(|f| f.uid);
        arrived.retain(|f| f.uid >= from.uid_next && f.uid < to.uid_next);
        if overflow || arrived.len() > limit {
            return Ok(None);
        }
        self.fill_previews(&mut arrived).await?;

        let mut changes = Vec::new();
        for uid in vanished_since_from.difference(&vanished_since_to) {
            changes.push(Change::Expunged { uid: *uid });
        }
        for f in arrived {
            changes.push(Change::Arrived(Box::new(f.summary)));
        }
        for (uid, (modseq, flags)) in modified {
            if uid < from.uid_next && modseq > from.highest_modseq && modseq <= to.highest_modseq {
                changes.push(Change::Flags { uid, flags });
            }
        }
        if changes.len() > limit {
            return Ok(None);
        }
        Ok(Some(Batch {
            from: *from,
            to: *to,
            changes,
        }))
    }
}

impl Connection {
    /// The batch of what the [`MessageTracker`](super::tracker::MessageTracker) of this
    /// session heard since `from`, for servers without CONDSTORE/QRESYNC: arrivals are
    /// fetched (one round trip, only when there are any), expunges and flag changes are what
    /// the server announced. The states carry no mod-sequence, so the batch can be sent but
    /// not recomputed later: a client resuming from it gets `mailbox.reset`.
    pub async fn tracked_batch(&mut self, from: &MailboxState) -> Result<Batch> {
        let tracker = self
            .tracker()
            .ok_or_else(|| ImapError::Protocol("the session follows no mailbox".into()))?;
        let mut arrived: Vec<FetchedSummary> = Vec::new();
        if tracker.pending_arrivals() > 0 {
            let next = tracker.next_uid();
            let mode = PreviewMode::of(self, true);
            let cmd = Command::new("UID FETCH")
                .uid_set(&UidSet::range(next, u32::MAX)?)
                .atom(mode.summary_items());
            {
                let mut collect = collect_summaries(&mut arrived, mode);
                self.run_raw(&cmd, |r, raw| collect(r, raw))
                    .await?
                    .into_result()?;
            }
            self.fill_previews(&mut arrived).await?;
        }
        let tracker = self
            .tracker()
            .ok_or_else(|| ImapError::Protocol("the session follows no mailbox".into()))?;
        let added = tracker.add_arrivals(arrived.iter().map(|f| f.uid));
        let heard = tracker.take();
        let to = MailboxState {
            uid_validity: from.uid_validity,
            highest_modseq: 0,
            uid_next: from.uid_next.max(tracker.next_uid()),
        };
        let mut expunged = heard.expunged;
        expunged.sort_unstable();
        expunged.dedup();
        let mut changes: Vec<Change> = expunged
            .into_iter()
            .map(|uid| Change::Expunged { uid })
            .collect();
        arrived.sort_unstable_by_key(|f| f.uid);
        arrived.dedup_by_key(|f| f.uid);
        changes.extend(
            arrived
                .into_iter()
                .filter(|f| added.binary_search(&f.uid).is_ok())
                .map(|f| Change::Arrived(Box::new(f.summary))),
        );
        changes.extend(
            heard
                .flags
                .into_iter()
                .map(|(uid, flags)| Change::Flags { uid, flags }),
        );
        Ok(Batch {
            from: MailboxState {
                highest_modseq: 0,
                ..*from
            },
            to,
            changes,
        })
    }
}

/// Adds vanished UIDs the client can know of (below `uid_next`); false, leaving the rest out,
/// once the set would hold more than `limit`.
fn collect_vanished(
    into: &mut BTreeSet<u32>,
    ranges: &[std::ops::RangeInclusive<u32>],
    uid_next: u32,
    limit: usize,
) -> bool {
    for range in ranges {
        let hi = (*range.end()).min(uid_next.saturating_sub(1));
        if *range.start() > hi {
            continue;
        }
        let len = (hi - *range.start()) as usize + 1;
        if into.len().saturating_add(len) > limit {
            return false;
        }
        into.extend(*range.start()..=hi);
    }
    true
}

fn modseq_and_flags(attrs: &[AttributeValue<'_>]) -> Option<(u32, u64, Vec<String>)> {
    let mut uid = None;
    let mut modseq = None;
    let mut flags = None;
    for a in attrs {
        match a {
            AttributeValue::Uid(u) => uid = Some(*u),
            AttributeValue::ModSeq(m) => modseq = Some(*m),
            AttributeValue::Flags(f) => {
                flags = Some(
                    f.iter()
                        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                        .map(|f| f.to_string())
                        .collect(),
                )
            }
            _ => {}
        }
    }
    Some((uid?, modseq?, flags?))
}
