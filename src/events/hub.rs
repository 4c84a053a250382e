//! The hub: every watcher and subscription, and what a resumed client missed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::format::{EventFormat, StreamEnd};
use super::ids::{EventIdKeys, Position};
use super::stream::{Tagged, batch_events, end_event, is_ahead, mailbox_stream, reset_event};
use super::watcher::{WatchKey, Watcher, WatcherShared, WatcherTask};
use super::{Ending, EventSettings, OutgoingEvent, SubscribeError, Subscription};
use crate::imap::encode::MailboxName;
use crate::imap::event_batch::Batch;
use crate::imap::state::MailboxState;
use crate::imap::{Credentials, ImapError, SessionPool, UserKey};
use crate::telemetry::names;

/// All watchers and subscriptions.
pub struct EventHub {
    pools: SessionPool,
    settings: EventSettings,
    ids: EventIdKeys,
    format: Arc<dyn EventFormat>,
    watchers: Mutex<HashMap<WatchKey, Weak<Watcher>>>,
    per_user: Arc<Mutex<HashMap<UserKey, usize>>>,
    total: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    /// The watchers' tasks, so a shutdown can wait for their LOGOUTs.
    tasks: TaskTracker,
}

/// Counts a subscription while it lives.
struct SubscriberSlot {
    user: UserKey,
    per_user: Arc<Mutex<HashMap<UserKey, usize>>>,
    total: Arc<AtomicUsize>,
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        self.total.fetch_sub(1, Ordering::SeqCst);
        let mut per_user = self.per_user.lock().expect("subscriber counts poisoned");
        if let Some(n) = per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                per_user.remove(&self.user);
            }
        }
        metrics::gauge!(names::SSE_SUBSCRIBERS).decrement(1.0);
    }
}

impl EventHub {
    /// A hub drawing connections from `pools`, signing event ids with `ids` and writing event
    /// data in `format`.
    pub fn new(
        pools: SessionPool,
        settings: EventSettings,
        ids: EventIdKeys,
        format: Arc<dyn EventFormat>,
    ) -> Self {
        EventHub {
            pools,
            settings,
            ids,
            format,
            watchers: Mutex::new(HashMap::new()),
            per_user: Arc::new(Mutex::new(HashMap::new())),
            total: Arc::new(AtomicUsize::new(0)),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Ends every stream (graceful shutdown) and stops the watchers, which log out.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }

    /// Completes when every watcher has stopped, after its LOGOUT (call after
    /// [`EventHub::shut_down`]).
    pub async fn stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Open event streams.
    pub fn subscribers(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// Running watchers.
    pub fn watchers(&self) -> usize {
        self.watchers
            .lock()
            .expect("watchers poisoned")
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// Opens an event stream for `mailboxes`, resuming after `last_event_id` when given. The
    /// stream ends with a `stream.end` event when `until` completes (the caller's token was
    /// revoked or expired).
    pub async fn subscribe(
        &self,
        user: &UserKey,
        credentials: &Credentials,
        mailboxes: Vec<MailboxName>,
        last_event_id: Option<&str>,
        until: BoxFuture<'static, Ending>,
    ) -> Result<Subscription, SubscribeError> {
        // An id this bridge did not issue (made up, edited, a proxy's, another user's) cannot
        // say what the client missed; EventSource would give up on an error status, so the
        // stream starts with `mailbox.reset` for every mailbox instead, telling the client to
        // resync. Nothing is asked of the IMAP server for it.
        let resume = match last_event_id {
            Some(id) if !id.is_empty() => self.ids.open(user, id).unwrap_or_else(|| {
                debug!("Last-Event-ID not issued by this bridge; starting with mailbox.reset");
                let unknown = Position::At(MailboxState {
                    uid_validity: 0,
                    highest_modseq: 0,
                    uid_next: 1,
                });
                mailboxes
                    .iter()
                    .map(|m| (m.as_str().to_owned(), unknown))
                    .collect()
            }),
            _ => BTreeMap::new(),
        };
        let slot = self.take_slot(user)?;
        let mut streams = Vec::new();
        let mut positions: BTreeMap<Arc<str>, Position> = BTreeMap::new();
        for mailbox in mailboxes {
            let watcher = self.watcher(user, &mailbox, credentials).await?;
            let (rx, current, ended) = {
                let shared = watcher.shared.lock().expect("watcher poisoned");
                (shared.tx.subscribe(), shared.state, shared.ended.clone())
            };
            let current = current
                .ok_or_else(|| ImapError::Unavailable("the watcher lost its mailbox".into()))?;
            let name: Arc<str> = Arc::from(mailbox.as_str());
            let resumed = resume.get(mailbox.as_str()).copied();
            let mut replay = match resumed {
                Some(position) => {
                    self.replay(user, credentials, &mailbox, &name, position, current)
                        .await?
                }
                None => Vec::new(),
            };
            // A watcher that stopped for good between the check and now: its last word.
            replay.extend(ended);
            let start = match resumed {
                // A position ahead of this watcher (seen through another replica) filters the
                // live batches until the watcher catches up.
                Some(Position::At(s))
                    if s.uid_validity == current.uid_validity && is_ahead(&s, &current) =>
                {
                    s
                }
                _ => current,
            };
            // Until its replay has been delivered, a resumed mailbox stays where the client was.
            positions.insert(name.clone(), resumed.unwrap_or(Position::At(current)));
            streams.push(mailbox_stream(
                self.format.clone(),
                name,
                watcher,
                rx,
                replay,
                start,
            ));
        }
        let format = self.format.clone();
        let ending = futures::stream::once(until).map(move |ending| {
            let end = StreamEnd {
                code: ending.code,
                detail: &ending.detail,
                mailbox: None,
            };
            end_event(&*format, None, &end, None)
        });
        // The ending first: once the token is gone, not one more event goes out.
        let merged = futures::stream::select_with_strategy(
            ending,
            futures::stream::select_all(streams),
            |_: &mut ()| futures::stream::PollNext::Left,
        );
        let shutdown = self.shutdown.clone();
        let signer = self.ids.signer(user);
        let first_id = signer.sign(&positions);
        let stream = merged
            .scan(
                (positions, slot, false),
                move |(positions, _slot, ended), item: Tagged| {
                    if *ended {
                        return futures::future::ready(None);
                    }
                    *ended = item.last;
                    if let Some(position) = item.position {
                        positions.insert(item.mailbox, position);
                    }
                    futures::future::ready(Some(OutgoingEvent {
                        kind: item.kind,
                        data: item.data,
                        id: signer.sign(positions),
                        retry: item.retry,
                        last: item.last,
                    }))
                },
            )
            .take_until(async move { shutdown.cancelled().await });
        Ok(Subscription {
            first_id,
            events: Box::pin(stream),
        })
    }

    /// Whether `id` is an event id this bridge (or one with the same secret) issued to `user`.
    pub fn issued(&self, user: &UserKey, id: &str) -> bool {
        self.ids.open(user, id).is_some()
    }

    fn take_slot(&self, user: &UserKey) -> Result<SubscriberSlot, SubscribeError> {
        let mut per_user = self.per_user.lock().expect("subscriber counts poisoned");
        let mine = per_user.entry(user.clone()).or_insert(0);
        if *mine >= self.settings.max_subscribers_per_user {
            return Err(SubscribeError::TooManySubscribers);
        }
        if self.total.fetch_add(1, Ordering::SeqCst) >= self.settings.max_subscribers_total {
            self.total.fetch_sub(1, Ordering::SeqCst);
            return Err(SubscribeError::TooManySubscribers);
        }
        *mine += 1;
        metrics::gauge!(names::SSE_SUBSCRIBERS).increment(1.0);
        Ok(SubscriberSlot {
            user: user.clone(),
            per_user: self.per_user.clone(),
            total: self.total.clone(),
        })
    }

    /// The running watcher of (user, mailbox), started if needed and ready.
    async fn watcher(
        &self,
        user: &UserKey,
        mailbox: &MailboxName,
        credentials: &Credentials,
    ) -> Result<Arc<Watcher>, ImapError> {
        let key = WatchKey {
            user: user.clone(),
            mailbox: mailbox.clone(),
        };
        let watcher = {
            let mut watchers = self.watchers.lock().expect("watchers poisoned");
            watchers.retain(|_, w| w.strong_count() > 0);
            let live = watchers
                .get(&key)
                .and_then(Weak::upgrade)
                .filter(|w| !matches!(*w.ready.borrow(), Some(Err(_))));
            match live {
                Some(w) => w,
                None => {
                    let w = self.start_watcher(key.clone(), credentials.clone());
                    watchers.insert(key, Arc::downgrade(&w));
                    w
                }
            }
        };
        let mut ready = watcher.ready.clone();
        let started =
            tokio::time::timeout(self.settings.start_timeout, ready.wait_for(Option::is_some))
                .await;
        let outcome = match started {
            Ok(Ok(value)) => value.clone(),
            _ => return Err(ImapError::Timeout),
        };
        match outcome {
            Some(Ok(())) => Ok(watcher),
            _ => Err(watcher
                .startup_error
                .lock()
                .expect("watcher poisoned")
                .take()
                .unwrap_or_else(|| {
                    ImapError::Unavailable("the mailbox watcher could not start".into())
                })),
        }
    }

    fn start_watcher(&self, key: WatchKey, credentials: Credentials) -> Arc<Watcher> {
        let (tx, _) = broadcast::channel(self.settings.queue.max(1));
        let shared = Arc::new(Mutex::new(WatcherShared {
            state: None,
            seq: 0,
            ended: None,
            tx,
        }));
        let (ready_tx, ready_rx) = watch::channel(None);
        let startup_error = Arc::new(Mutex::new(None));
        let stop = self.shutdown.child_token();
        let task = WatcherTask {
            name: Arc::from(key.mailbox.as_str()),
            key,
            credentials,
            pools: self.pools.clone(),
            settings: self.settings,
            format: self.format.clone(),
            shared: shared.clone(),
            ready: ready_tx,
            startup_error: startup_error.clone(),
            stop: stop.clone(),
        };
        self.tasks.spawn(task.run());
        metrics::counter!(names::IDLE_WATCHERS_STARTED).increment(1);
        Arc::new(Watcher {
            shared,
            ready: ready_rx,
            startup_error,
            stop,
        })
    }

    /// What a client at `position` missed up to `current`, recomputed from the server; or
    /// `mailbox.reset` when that cannot be told, or would take more than
    /// [`EventSettings::max_replay`] changes.
    async fn replay(
        &self,
        user: &UserKey,
        credentials: &Credentials,
        mailbox: &MailboxName,
        name: &Arc<str>,
        position: Position,
        current: MailboxState,
    ) -> Result<Vec<Tagged>, ImapError> {
        let reset = || Ok(vec![reset_event(&*self.format, name, current)]);
        // Without mod-sequences (a server's beyond RFC 7162's 63 bits count as none) there is
        // nothing to replay changes by.
        if position.uid_validity() != current.uid_validity
            || current.highest_modseq == 0
            || position.highest_modseq() == 0
        {
            return reset();
        }
        let start = position.start();
        let limit = self.settings.max_replay;
        // How many messages arrived is known from UIDNEXT alone, before anything is fetched.
        if current.uid_next.saturating_sub(start.uid_next) as usize > limit {
            metrics::counter!(names::SSE_RESETS).increment(1);
            debug!(mailbox = %mailbox, "replay longer than IMAP_BRIDGE_SSE_MAX_REPLAY; sending mailbox.reset");
            return reset();
        }
        if let Position::At(s) = position
            && !is_ahead(&current, &s)
        {
            return Ok(Vec::new());
        }
        let mut session = self.pools.session(user, credentials).await?;
        if !(session.capabilities().has("CONDSTORE") && session.capabilities().has("QRESYNC")) {
            return reset();
        }
        let mut out = Vec::new();
        let resume_from = match position {
            Position::At(s) => s,
            Position::Within {
                from,
                to,
                phase,
                uid,
            } => {
                let Some(batch) = session.batch_between(mailbox, &from, &to, limit).await? else {
                    metrics::counter!(names::SSE_RESETS).increment(1);
                    return reset();
                };
                let rest = Batch {
                    from,
                    to,
                    changes: batch
                        .changes
                        .into_iter()
                        .filter(|c| c.position() > (phase, uid))
                        .collect(),
                };
                out.extend(batch_events(&*self.format, name, &rest));
                to
            }
        };
        if is_ahead(&current, &resume_from) {
            let left = limit.saturating_sub(out.len());
            let Some(batch) = session
                .batch_between(mailbox, &resume_from, &current, left)
                .await?
            else {
                metrics::counter!(names::SSE_RESETS).increment(1);
                return reset();
            };
            out.extend(batch_events(&*self.format, name, &batch));
        }
        Ok(out)
    }
}
