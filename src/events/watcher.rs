//! One IDLE connection per (user, mailbox): it follows the mailbox and broadcasts each change
//! once, to every subscriber.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::EventSettings;
use super::format::{EventFormat, StreamEnd};
use super::stream::{Tagged, auth_expired_event, batch_events, end_event};
use crate::imap::encode::MailboxName;
use crate::imap::event_batch::Batch;
use crate::imap::state::MailboxState;
use crate::imap::tracker::MessageTracker;
use crate::imap::{Credentials, ImapError, SessionPool, UserKey};
use crate::telemetry::{GaugeGuard, names};

/// What a watcher broadcasts.
#[derive(Debug)]
pub(super) enum Published {
    /// Changes from one state to the next, with their events, serialised once for every
    /// subscriber.
    Batch {
        from: MailboxState,
        to: MailboxState,
        events: Vec<Tagged>,
    },
    /// The mailbox cannot be followed change by change (UIDVALIDITY changed, no CONDSTORE, or
    /// more changes at once than a replay may hold).
    Reset(MailboxState),
    /// The watcher stopped for good; every stream that follows it ends with this event.
    Ended(Tagged),
}

/// A broadcast with its number: numbers grow by one with every broadcast of a watcher.
#[derive(Debug)]
pub(super) struct Stamped {
    pub(super) seq: u64,
    pub(super) published: Published,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct WatchKey {
    pub(super) user: UserKey,
    pub(super) mailbox: MailboxName,
}

pub(super) struct WatcherShared {
    /// The state the last broadcast led to.
    pub(super) state: Option<MailboxState>,
    /// The number of the last broadcast.
    pub(super) seq: u64,
    /// Once the watcher stopped for good, the event that ended its streams.
    pub(super) ended: Option<Tagged>,
    pub(super) tx: broadcast::Sender<Arc<Stamped>>,
}

/// One IDLE connection on one user's mailbox; stops when the last subscriber lets go.
pub(super) struct Watcher {
    pub(super) shared: Arc<Mutex<WatcherShared>>,
    pub(super) ready: watch::Receiver<Option<Result<(), String>>>,
    pub(super) startup_error: Arc<Mutex<Option<ImapError>>>,
    pub(super) stop: CancellationToken,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The background side of a [`Watcher`].
pub(super) struct WatcherTask {
    pub(super) key: WatchKey,
    pub(super) name: Arc<str>,
    pub(super) credentials: Credentials,
    pub(super) pools: SessionPool,
    pub(super) settings: EventSettings,
    pub(super) format: Arc<dyn EventFormat>,
    pub(super) shared: Arc<Mutex<WatcherShared>>,
    pub(super) ready: watch::Sender<Option<Result<(), String>>>,
    pub(super) startup_error: Arc<Mutex<Option<ImapError>>>,
    pub(super) stop: CancellationToken,
}

impl WatcherTask {
    pub(super) async fn run(self) {
        let _running = GaugeGuard::hold(metrics::gauge!(names::IDLE_WATCHERS));
        let mut attempt: u32 = 0;
        let mut started = false;
        let mut failing_since: Option<tokio::time::Instant> = None;
        while !self.stop.is_cancelled() {
            let mut followed = false;
            let result = self.follow(&mut started, &mut followed).await;
            if self.stop.is_cancelled() {
                break;
            }
            if followed {
                attempt = 0;
                failing_since = None;
            }
            match result {
                Ok(()) => attempt = 0,
                Err(e) if !started => {
                    debug!(error = %e, mailbox = %self.key.mailbox, "watcher could not start");
                    *self.startup_error.lock().expect("watcher poisoned") = Some(e);
                    let _ = self.ready.send(Some(Err("start failed".into())));
                    return;
                }
                Err(e) => {
                    if let Some(last) = self.last_word(&e, failing_since) {
                        info!(error = %e, mailbox = %self.key.mailbox, "IDLE watcher stopped for good; ending its streams");
                        // Retired: the next subscriber starts a new watcher (with the newest
                        // credentials), which reports what is wrong as a status.
                        *self.startup_error.lock().expect("watcher poisoned") = Some(e);
                        let _ = self.ready.send(Some(Err("stopped".into())));
                        self.publish(Published::Ended(last));
                        break;
                    }
                    failing_since.get_or_insert_with(tokio::time::Instant::now);
                    attempt = attempt.saturating_add(1);
                    let delay = backoff(attempt, self.settings.max_backoff);
                    warn!(error = %e, mailbox = %self.key.mailbox, retry_in_ms = delay.as_millis() as u64, "IDLE watcher lost its connection");
                    metrics::counter!(names::IDLE_WATCHER_RECONNECTS).increment(1);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.stop.cancelled() => break,
                    }
                }
            }
        }
        debug!(mailbox = %self.key.mailbox, "watcher stopped");
    }

    /// The event that ends this watcher's streams when `error` is one that following the
    /// mailbox again cannot cure, or the server has been unreachable for too long.
    pub(super) fn last_word(
        &self,
        error: &ImapError,
        failing_since: Option<tokio::time::Instant>,
    ) -> Option<Tagged> {
        let end = |code, detail: &str, retry| {
            let end = StreamEnd {
                code,
                detail,
                mailbox: Some(&self.name),
            };
            Some(end_event(&*self.format, Some(&self.name), &end, retry))
        };
        match error {
            ImapError::TokenRefused(why) => {
                Some(auth_expired_event(&*self.format, &self.name, why))
            }
            ImapError::MailboxNotFound => end(
                "mailbox_not_found",
                "The mailbox was deleted or renamed.",
                None,
            ),
            ImapError::AuthenticationFailed => end(
                "unauthorized",
                "The IMAP server no longer accepts this user's credentials; log in again.",
                None,
            ),
            ImapError::Unsupported(what) => end(
                "upstream_capability_missing",
                &format!("The IMAP server does not support {what}."),
                None,
            ),
            _ if failing_since.is_some_and(|t| t.elapsed() >= self.settings.give_up_after) => end(
                "upstream_unavailable",
                "The bridge could not reach the IMAP server for minutes; reconnect with Last-Event-ID later.",
                Some(GIVE_UP_RETRY),
            ),
            _ => None,
        }
    }

    /// Connects and follows the mailbox until an error or stop; `followed` tells whether the
    /// mailbox could be followed at all (the connection was up and its state learnt).
    pub(super) async fn follow(
        &self,
        started: &mut bool,
        followed: &mut bool,
    ) -> Result<(), ImapError> {
        let mut dedicated = self
            .pools
            .open_dedicated(&self.key.user, &self.credentials)
            .await?;
        let conn = &mut dedicated.conn;
        let mailbox = &self.key.mailbox;
        let exact = conn.capabilities().has("CONDSTORE") && conn.capabilities().has("QRESYNC");
        let mut last = conn.current_state(mailbox).await?;
        if !exact {
            // Without mod-sequences the server cannot say what changed since a state, but it
            // announces every change to a session that has the mailbox selected: the watcher
            // follows the mailbox message by message, as IMAP4rev1 clients do.
            let uids = conn.search_uids(&[]).await?;
            conn.track(MessageTracker::new(uids));
            last.highest_modseq = 0;
        }
        *followed = true;
        let previous = self.shared.lock().expect("watcher poisoned").state;
        match previous {
            None => {
                self.shared.lock().expect("watcher poisoned").state = Some(last);
                *started = true;
                let _ = self.ready.send(Some(Ok(())));
                info!(mailbox = %mailbox, "IDLE watcher started");
            }
            // Reconnected: publish whatever happened while the connection was down.
            Some(before) => {
                self.publish_since(conn, before, last, exact).await?;
            }
        }
        let can_idle = conn.capabilities().has("IDLE");
        // IDLE ends (DONE, answered within the command timeout) at least this often, so a
        // server that stopped answering is noticed even where TCP keep-alive cannot tell.
        let idle_for = self.settings.reidle.min(self.settings.liveness);
        loop {
            let changed = if can_idle {
                conn.idle(idle_for, self.stop.cancelled()).await?
            } else {
                // Without IDLE the server speaks only when asked: the checks below ask.
                tokio::select! {
                    () = tokio::time::sleep(self.settings.poll) => {}
                    () = self.stop.cancelled() => {}
                }
                true
            };
            if self.stop.is_cancelled() {
                dedicated.conn.logout().await;
                return Ok(());
            }
            if exact {
                if changed {
                    let now = conn.current_state(mailbox).await?;
                    if now != last {
                        self.publish_since(conn, last, now, exact).await?;
                        last = now;
                    }
                }
            } else if changed || conn.tracker().is_some_and(|t| t.has_news()) {
                // Whatever else the server holds back until the next command.
                conn.noop().await?;
                let batch = conn.tracked_batch(&last).await?;
                last = batch.to;
                if batch.changes.len() > self.settings.max_replay {
                    self.publish(Published::Reset(batch.to));
                } else if !batch.changes.is_empty() {
                    self.publish_batch(&batch);
                }
            }
        }
    }

    pub(super) async fn publish_since(
        &self,
        conn: &mut crate::imap::Connection,
        before: MailboxState,
        now: MailboxState,
        exact: bool,
    ) -> Result<(), ImapError> {
        if before.uid_validity != now.uid_validity
            || !exact
            || before.highest_modseq == 0
            || now.highest_modseq == 0
        {
            self.publish(Published::Reset(now));
            return Ok(());
        }
        match conn
            .batch_between(&self.key.mailbox, &before, &now, self.settings.max_replay)
            .await?
        {
            Some(batch) => self.publish_batch(&batch),
            // More changes at once than a stream may replay: clients list the mailbox again.
            None => self.publish(Published::Reset(now)),
        }
        Ok(())
    }

    /// Broadcasts a batch, its events serialised here once for every subscriber.
    pub(super) fn publish_batch(&self, batch: &Batch) {
        metrics::counter!(names::EVENTS_PUBLISHED).increment(batch.changes.len() as u64);
        self.publish(Published::Batch {
            from: batch.from,
            to: batch.to,
            events: batch_events(&*self.format, &self.name, batch),
        });
    }

    pub(super) fn publish(&self, published: Published) {
        broadcast(&self.shared, published);
    }
}

/// Broadcasts `published` under the next number and records the state it leads to, both
/// under one lock, so a subscriber that reads them knows which broadcasts are older.
pub(super) fn broadcast(shared: &Mutex<WatcherShared>, published: Published) {
    let mut shared = shared.lock().expect("watcher poisoned");
    match &published {
        Published::Batch { to, .. } => shared.state = Some(*to),
        Published::Reset(state) => shared.state = Some(*state),
        Published::Ended(event) => shared.ended = Some(event.clone()),
    }
    shared.seq += 1;
    let stamped = Arc::new(Stamped {
        seq: shared.seq,
        published,
    });
    let _ = shared.tx.send(stamped);
}

/// The `retry:` of a stream ended because the IMAP server stayed unreachable.
pub(super) const GIVE_UP_RETRY: Duration = Duration::from_secs(30);

/// Capped exponential backoff with ±50 % jitter.
pub(super) fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(250)
        .saturating_mul(1u32 << attempt.min(16))
        .min(max);
    let jitter = rand::random_range(0.5..1.5);
    base.mul_f64(jitter).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_secs(30);
        assert!(backoff(1, max) <= Duration::from_millis(750));
        for attempt in 0..40 {
            assert!(backoff(attempt, max) <= max);
        }
    }
}
