//! Delta sync: what changed in a mailbox since a [`MailboxState`].
//!
//! With CONDSTORE and QRESYNC the server answers exactly: `UID FETCH 1:* (UID FLAGS MODSEQ)
//! (CHANGEDSINCE m VANISHED)` returns the messages whose flags changed or that arrived, and
//! `VANISHED (EARLIER)` the ones expunged, since modseq `m`. Without them the bridge falls back
//! to comparing UID sets: every current message below the old UIDNEXT is reported as updated
//! (with its flags) and every UID below it that no longer exists as destroyed — more than
//! changed, never less, which is what a correct client needs.
//!
//! A NOOP first brings the session's view of the mailbox up to date, and it goes alone: Dovecot
//! answers commands pipelined behind a NOOP from the view as it was before the NOOP's sync
//! (which it holds back until the pipeline drains), so `NOOP` + `STATUS` in one round trip can
//! return a state that misses changes other sessions committed well before.

use std::collections::{BTreeMap, BTreeSet};

use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response, StatusAttribute};

use super::connection::{Connection, SelectedMailbox};
use super::encode::{Command, MailboxName, UidSet};
use super::error::{ImapError, Result};
use super::messages::uid_and_flags;
use super::state::{MailboxState, server_modseq};

/// Most destroyed UIDs reported before asking the client to start over (a list that long is
/// no cheaper for the client than listing the mailbox again).
pub const MAX_DESTROYED: usize = 100_000;

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

fn status_command(mailbox: &MailboxName, condstore: bool) -> Command {
    Command::new("STATUS").mailbox(mailbox).atom(if condstore {
        "(UIDVALIDITY UIDNEXT HIGHESTMODSEQ)"
    } else {
        "(UIDVALIDITY UIDNEXT)"
    })
}

/// Folds a STATUS response into `state`.
fn apply_status(state: &mut MailboxState, response: &Response<'_>) {
    if let Response::MailboxData(MailboxDatum::Status { status, .. }) = response {
        for attr in status {
            match attr {
                StatusAttribute::UidValidity(v) => state.uid_validity = *v,
                StatusAttribute::UidNext(n) => state.uid_next = (*n).max(1),
                StatusAttribute::HighestModSeq(m) => state.highest_modseq = server_modseq(*m),
                _ => {}
            }
        }
    }
}

fn initial_state(selected: &SelectedMailbox) -> MailboxState {
    MailboxState {
        uid_validity: selected.uid_validity,
        highest_modseq: 0,
        uid_next: selected.uid_next.max(1),
    }
}

impl Connection {
    /// The mailbox's current delta-sync state, after hearing of pending changes (two round
    /// trips on a warm session: NOOP, then STATUS; see the module documentation for why).
    pub async fn current_state(&mut self, mailbox: &MailboxName) -> Result<MailboxState> {
        let selected = self.select(mailbox).await?;
        self.noop().await?;
        let condstore = self.capabilities().has("CONDSTORE");
        let mut state = initial_state(&selected);
        self.run(&status_command(mailbox, condstore), |r| {
            apply_status(&mut state, r);
            Ok(())
        })
        .await?
        .into_result()?;
        if state.uid_validity != selected.uid_validity {
            self.forget_selected();
        }
        Ok(state)
    }

    /// What changed in `mailbox` since `since`: a NOOP, then STATUS and the UID FETCH
    /// pipelined, so two round trips on a warm session.
    ///
    /// The state handed back never runs ahead of what was reported: STATUS and the FETCH read
    /// the same synced view, and the highest MODSEQ and UID the FETCH returned only move it up
    /// to what was really reported.
    pub async fn changes_since(
        &mut self,
        mailbox: &MailboxName,
        since: &MailboxState,
    ) -> Result<Changes> {
        let selected = self.select(mailbox).await?;
        self.noop().await?;
        let condstore = self.capabilities().has("CONDSTORE");
        let exact = condstore && self.capabilities().has("QRESYNC") && since.highest_modseq > 0;
        let fetch = if exact {
            Command::new("UID FETCH")
                .uid_set(&UidSet::every())
                .atom("(UID FLAGS MODSEQ) (CHANGEDSINCE")
                .number(since.highest_modseq)
                .atom("VANISHED)")
        } else {
            Command::new("UID FETCH")
                .seq_range(1, None)
                .atom("(UID FLAGS)")
        };
        let cmds = [status_command(mailbox, condstore), fetch];
        const FETCH: usize = 1;
        let mut state = initial_state(&selected);
        // By UID: a later FETCH of the same message is the fresher one.
        let mut fetched: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        let mut vanished: Vec<std::ops::RangeInclusive<u32>> = Vec::new();
        let mut max_modseq = 0;
        let done = self
            .run_pipelined(&cmds, |index, r| {
                match r {
                    Response::MailboxData(MailboxDatum::Status { .. }) => {
                        apply_status(&mut state, r)
                    }
                    Response::Fetch(_, attrs) if index == FETCH => {
                        if let Some((uid, flags)) = uid_and_flags(attrs) {
                            fetched.insert(uid, flags);
                        }
                        for attr in attrs.iter() {
                            if let AttributeValue::ModSeq(m) = attr {
                                max_modseq = max_modseq.max(server_modseq(*m));
                            }
                        }
                    }
                    Response::Vanished {
                        earlier: true,
                        uids,
                    } if index == FETCH => vanished.extend(uids.iter().cloned()),
                    _ => {}
                }
                Ok(())
            })
            .await?;
        for completion in done {
            completion.into_result()?;
        }
        if state.uid_validity != selected.uid_validity {
            // The mailbox was recreated under this session; its view is worthless.
            self.forget_selected();
        }
        if state.uid_validity != since.uid_validity || state.uid_validity != selected.uid_validity {
            return Err(ImapError::UidValidityChanged {
                current: state.uid_validity,
            });
        }

        let mut changes = Changes::default();
        let mut present = BTreeSet::new();
        for (uid, flags) in fetched {
            present.insert(uid);
            state.uid_next = state.uid_next.max(uid.saturating_add(1));
            if uid >= since.uid_next {
                changes.created.push(uid);
            } else {
                changes.updated.push((uid, flags));
            }
        }
        // Only UIDs the client can know of, i.e. below its UIDNEXT; the bound also keeps the
        // work linear in what the client holds.
        let known = since.uid_next.saturating_sub(1);
        let too_many = || ImapError::UidValidityChanged {
            current: state.uid_validity,
        };
        if exact {
            state.highest_modseq = state.highest_modseq.max(max_modseq);
            let mut destroyed = BTreeSet::new();
            for range in vanished {
                for uid in *range.start()..=(*range.end()).min(known) {
                    destroyed.insert(uid);
                    if destroyed.len() > MAX_DESTROYED {
                        return Err(too_many());
                    }
                }
            }
            changes.destroyed = destroyed.into_iter().collect();
        } else {
            // Without modseqs an old expunge looks like a new one: every UID below the client's
            // UIDNEXT that is gone is reported, more than changed but never less.
            for uid in 1..=known {
                if !present.contains(&uid) {
                    changes.destroyed.push(uid);
                    if changes.destroyed.len() > MAX_DESTROYED {
                        return Err(too_many());
                    }
                }
            }
        }
        changes.state = Some(state);
        Ok(changes)
    }
}
