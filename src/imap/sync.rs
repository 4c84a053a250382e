//! Delta sync: what changed in a mailbox since a [`MailboxState`].
//!
//! With CONDSTORE and QRESYNC the server answers exactly: `UID FETCH 1:* (FLAGS)
//! (CHANGEDSINCE m VANISHED)` returns the messages whose flags changed or that arrived, and
//! `VANISHED (EARLIER)` the ones expunged, since modseq `m`. Without them the bridge falls back
//! to comparing UID sets: every current message below the old UIDNEXT is reported as updated
//! (with its flags) and every UID below it that no longer exists as destroyed — more than
//! changed, never less, which is what a correct client needs.

use std::collections::BTreeSet;

use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response, StatusAttribute};

use super::connection::Connection;
use super::encode::{Command, MailboxName};
use super::error::{ImapError, Result};
use super::state::MailboxState;

/// Most destroyed UIDs the fallback reports before asking the client to start over.
pub const MAX_FALLBACK_DESTROYED: usize = 100_000;

/// Changes since a state.
#[derive(Debug, Default)]
pub struct Changes {
    /// The state to ask from next time.
    pub state: Option<MailboxState>,
    /// Messages that arrived (UID at or above the old UIDNEXT), ascending.
    pub created: Vec<u32>,
    /// Messages whose flags changed, with their flags now.
    pub updated: Vec<(u32, Vec<String>)>,
    /// Messages expunged, ascending.
    pub destroyed: Vec<u32>,
}

impl Connection {
    /// The mailbox's current delta-sync state, after hearing of pending changes (one round
    /// trip on a warm session).
    pub async fn current_state(&mut self, mailbox: &MailboxName) -> Result<MailboxState> {
        let selected = self.select(mailbox).await?;
        let condstore = self.capabilities().has("CONDSTORE");
        let cmds = [
            Command::new("NOOP"),
            Command::new("STATUS").mailbox(mailbox).atom(if condstore {
                "(UIDVALIDITY UIDNEXT HIGHESTMODSEQ)"
            } else {
                "(UIDVALIDITY UIDNEXT)"
            }),
        ];
        let mut state = MailboxState {
            uid_validity: selected.uid_validity,
            highest_modseq: 0,
            uid_next: selected.uid_next.max(1),
        };
        let done = self
            .run_pipelined(&cmds, |_, r| {
                if let Response::MailboxData(MailboxDatum::Status { status, .. }) = r {
                    for attr in status {
                        match attr {
                            StatusAttribute::UidValidity(v) => state.uid_validity = *v,
                            StatusAttribute::UidNext(n) => state.uid_next = (*n).max(1),
                            StatusAttribute::HighestModSeq(m) => state.highest_modseq = *m,
                            _ => {}
                        }
                    }
                }
                Ok(())
            })
            .await?;
        for completion in done {
            completion.into_result()?;
        }
        if state.uid_validity != selected.uid_validity {
            self.forget_selected();
        }
        Ok(state)
    }

    /// What changed in `mailbox` since `since`.
    pub async fn changes_since(
        &mut self,
        mailbox: &MailboxName,
        since: &MailboxState,
    ) -> Result<Changes> {
        let state = self.current_state(mailbox).await?;
        if state.uid_validity != since.uid_validity {
            return Err(ImapError::UidValidityChanged {
                current: state.uid_validity,
            });
        }
        let exact = self.capabilities().has("CONDSTORE")
            && self.capabilities().has("QRESYNC")
            && since.highest_modseq > 0;
        let mut changes = if exact {
            if since.highest_modseq == state.highest_modseq && since.uid_next == state.uid_next {
                Changes::default()
            } else {
                self.changed_since_modseq(since).await?
            }
        } else {
            self.changed_by_comparison(since).await?
        };
        changes.state = Some(state);
        Ok(changes)
    }

    async fn changed_since_modseq(&mut self, since: &MailboxState) -> Result<Changes> {
        let cmd = Command::new("UID FETCH")
            .seq_range(1, None)
            .atom("(UID FLAGS) (CHANGEDSINCE")
            .number(since.highest_modseq)
            .atom("VANISHED)");
        let mut changes = Changes::default();
        let mut destroyed = BTreeSet::new();
        self.run(&cmd, |r| {
            match r {
                Response::Fetch(_, attrs) => {
                    if let Some((uid, flags)) = uid_and_flags(attrs) {
                        if uid >= since.uid_next {
                            changes.created.push(uid);
                        } else {
                            changes.updated.push((uid, flags));
                        }
                    }
                }
                Response::Vanished {
                    earlier: true,
                    uids,
                } => {
                    for range in uids {
                        // Only UIDs the client can know of; the bound keeps this linear in
                        // what the client holds.
                        let hi = (*range.end()).min(since.uid_next.saturating_sub(1));
                        destroyed.extend(*range.start()..=hi);
                    }
                }
                _ => {}
            }
            Ok(())
        })
        .await?
        .into_result()?;
        changes.created.sort_unstable();
        changes.updated.sort_unstable_by_key(|(uid, _)| *uid);
        changes.destroyed = destroyed.into_iter().collect();
        Ok(changes)
    }

    async fn changed_by_comparison(&mut self, since: &MailboxState) -> Result<Changes> {
        let cmd = Command::new("UID FETCH")
            .seq_range(1, None)
            .atom("(UID FLAGS)");
        let mut changes = Changes::default();
        let mut present = BTreeSet::new();
        self.run(&cmd, |r| {
            if let Response::Fetch(_, attrs) = r
                && let Some((uid, flags)) = uid_and_flags(attrs)
            {
                present.insert(uid);
                if uid >= since.uid_next {
                    changes.created.push(uid);
                } else {
                    changes.updated.push((uid, flags));
                }
            }
            Ok(())
        })
        .await?
        .into_result()?;
        let mut destroyed = Vec::new();
        for uid in 1..since.uid_next {
            if !present.contains(&uid) {
                destroyed.push(uid);
                if destroyed.len() > MAX_FALLBACK_DESTROYED {
                    let current = self
                        .selected()
                        .map_or(since.uid_validity, |s| s.uid_validity);
                    return Err(ImapError::UidValidityChanged { current });
                }
            }
        }
        changes.created.sort_unstable();
        changes.updated.sort_unstable_by_key(|(uid, _)| *uid);
        changes.destroyed = destroyed;
        Ok(changes)
    }
}

fn uid_and_flags(attrs: &[AttributeValue<'_>]) -> Option<(u32, Vec<String>)> {
    let uid = attrs.iter().find_map(|a| match a {
        AttributeValue::Uid(u) => Some(*u),
        _ => None,
    })?;
    let flags = attrs.iter().find_map(|a| match a {
        AttributeValue::Flags(f) => Some(f),
        _ => None,
    })?;
    Some((
        uid,
        flags
            .iter()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .map(|f| f.to_string())
            .collect(),
    ))
}
