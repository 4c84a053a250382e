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

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use utoipa::ToSchema;

use crate::imap::encode::MailboxName;
use crate::imap::event_batch::{Batch, Change, Phase};
use crate::imap::state::{MAX_MODSEQ, MailboxState};
use crate::imap::tracker::MessageTracker;
use crate::imap::{Credentials, ImapError, SessionPool, UserKey};
use crate::mail::summary::Summary;
use crate::telemetry::{GaugeGuard, names};

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

/// One event, ready for the wire.
#[derive(Debug, Clone)]
pub struct OutgoingEvent {
    /// `message.new`, `message.flags`, `message.expunged` or `mailbox.reset`.
    pub kind: &'static str,
    /// JSON payload.
    pub data: String,
    /// `id:` field: every mailbox's position after this event.
    pub id: String,
}

/// How far a client got in one mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Everything up to this state.
    At(MailboxState),
    /// Inside the batch `from → to`, up to and including the change at `(phase, uid)`.
    Within {
        from: MailboxState,
        to: MailboxState,
        phase: Phase,
        uid: u32,
    },
}

impl Position {
    fn encode(&self) -> String {
        match self {
            Position::At(s) => s.to_string(),
            Position::Within {
                from,
                to,
                phase,
                uid,
            } => format!(
                "p1.{}.{}.{}.{}.{}.{}.{}",
                from.uid_validity,
                from.highest_modseq,
                from.uid_next,
                to.highest_modseq,
                to.uid_next,
                *phase as u8,
                uid
            ),
        }
    }

    fn decode(s: &str) -> Option<Position> {
        if let Ok(state) = s.parse::<MailboxState>() {
            return Some(Position::At(state));
        }
        let mut parts = s.strip_prefix("p1.")?.split('.');
        let mut next = || parts.next()?.parse::<u64>().ok();
        let uid_validity = u32::try_from(next()?).ok()?;
        let from_modseq = next()?;
        let from_next = u32::try_from(next()?).ok()?;
        let to_modseq = next()?;
        let to_next = u32::try_from(next()?).ok()?;
        let phase = match next()? {
            1 => Phase::Expunged,
            2 => Phase::Arrived,
            3 => Phase::Flags,
            _ => return None,
        };
        let uid = u32::try_from(next()?).ok()?;
        let from = MailboxState {
            uid_validity,
            highest_modseq: from_modseq,
            uid_next: from_next,
        };
        let to = MailboxState {
            uid_validity,
            highest_modseq: to_modseq,
            uid_next: to_next,
        };
        if uid_validity == 0
            || from_next == 0
            || to_next < from_next
            || to_modseq < from_modseq
            || to_modseq > MAX_MODSEQ
        {
            return None;
        }
        Some(Position::Within {
            from,
            to,
            phase,
            uid,
        })
    }

    fn uid_validity(&self) -> u32 {
        match self {
            Position::At(s) => s.uid_validity,
            Position::Within { from, .. } => from.uid_validity,
        }
    }

    /// The mod-sequence changes are replayed from; 0 when there was none to go by.
    fn highest_modseq(&self) -> u64 {
        match self {
            Position::At(s) => s.highest_modseq,
            Position::Within { from, .. } => from.highest_modseq,
        }
    }
}

/// Longest accepted `Last-Event-ID`.
const MAX_EVENT_ID: usize = 8192;

/// Reads a `Last-Event-ID` into positions per mailbox name.
fn decode_event_id(id: &str) -> Option<BTreeMap<String, Position>> {
    if id.len() > MAX_EVENT_ID {
        return None;
    }
    let json = id
        .strip_prefix("e1.")
        .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())?;
    let raw: BTreeMap<String, String> = serde_json::from_slice(&json).ok()?;
    raw.into_iter()
        .map(|(name, pos)| Position::decode(&pos).map(|p| (name, p)))
        .collect()
}

fn encode_event_id(positions: &BTreeMap<String, Position>) -> String {
    let raw: BTreeMap<&str, String> = positions
        .iter()
        .map(|(k, v)| (k.as_str(), v.encode()))
        .collect();
    format!(
        "e1.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&raw).unwrap_or_default())
    )
}

/// What a watcher broadcasts.
#[derive(Debug)]
enum Published {
    /// Changes from one state to the next.
    Batch(Batch),
    /// The mailbox cannot be followed change by change (UIDVALIDITY changed, or no CONDSTORE).
    Reset(MailboxState),
    /// The server refused the access token the watcher reconnected with: the streams end.
    AuthExpired(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct WatchKey {
    user: UserKey,
    mailbox: MailboxName,
}

struct WatcherShared {
    state: Option<MailboxState>,
    tx: broadcast::Sender<Arc<Published>>,
}

/// One IDLE connection on one user's mailbox; stops when the last subscriber lets go.
struct Watcher {
    shared: Arc<Mutex<WatcherShared>>,
    ready: watch::Receiver<Option<Result<(), String>>>,
    startup_error: Arc<Mutex<Option<ImapError>>>,
    stop: CancellationToken,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// All watchers and subscriptions.
pub struct EventHub {
    pools: SessionPool,
    settings: EventSettings,
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

/// A stream of events for one client.
pub type EventStream = Pin<Box<dyn Stream<Item = OutgoingEvent> + Send>>;

impl EventHub {
    /// A hub drawing connections from `pools`.
    pub fn new(pools: SessionPool, settings: EventSettings) -> Self {
        EventHub {
            pools,
            settings,
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

    /// Opens an event stream for `mailboxes`, resuming after `last_event_id` when given.
    pub async fn subscribe(
        &self,
        user: &UserKey,
        credentials: &Credentials,
        mailboxes: Vec<MailboxName>,
        last_event_id: Option<&str>,
    ) -> Result<EventStream, SubscribeError> {
        // An id this bridge did not issue (a proxy's, a corrupted one) cannot say what the
        // client missed; EventSource would give up on an error status, so the stream starts
        // with `mailbox.reset` for every mailbox instead, telling the client to resync.
        let resume = match last_event_id {
            Some(id) if !id.is_empty() => decode_event_id(id).unwrap_or_else(|| {
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
        let mut positions = BTreeMap::new();
        for mailbox in mailboxes {
            let watcher = self.watcher(user, &mailbox, credentials).await?;
            let (rx, current) = {
                let shared = watcher.shared.lock().expect("watcher poisoned");
                (shared.tx.subscribe(), shared.state)
            };
            let current = current
                .ok_or_else(|| ImapError::Unavailable("the watcher lost its mailbox".into()))?;
            let name = mailbox.as_str().to_owned();
            let replay = match resume.get(&name) {
                Some(position) => {
                    self.replay(user, credentials, &mailbox, *position, current)
                        .await?
                }
                None => Vec::new(),
            };
            let start = match resume.get(&name) {
                // A position ahead of this watcher (seen through another replica) filters the
                // live batches until the watcher catches up.
                Some(Position::At(s))
                    if s.uid_validity == current.uid_validity && is_ahead(s, &current) =>
                {
                    *s
                }
                _ => current,
            };
            // Until its replay has been delivered, a resumed mailbox stays where the client was.
            positions.insert(
                name.clone(),
                resume.get(&name).copied().unwrap_or(Position::At(current)),
            );
            streams.push(mailbox_stream(name, watcher, rx, replay, start));
        }
        let merged = futures::stream::select_all(streams);
        let shutdown = self.shutdown.clone();
        let stream = merged
            .scan(
                (positions, slot, false),
                |(positions, _slot, ended), item: Tagged| {
                    if *ended {
                        return futures::future::ready(None);
                    }
                    // A refused access token ends the whole stream: the client must refresh it
                    // before any mailbox can be followed again.
                    *ended = item.kind == AUTH_EXPIRED;
                    if let Some(position) = item.position {
                        positions.insert(item.mailbox, position);
                    }
                    let id = encode_event_id(positions);
                    futures::future::ready(Some(OutgoingEvent {
                        kind: item.kind,
                        data: item.data,
                        id,
                    }))
                },
            )
            .take_until(async move { shutdown.cancelled().await });
        Ok(Box::pin(stream))
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
        let shared = Arc::new(Mutex::new(WatcherShared { state: None, tx }));
        let (ready_tx, ready_rx) = watch::channel(None);
        let startup_error = Arc::new(Mutex::new(None));
        let stop = self.shutdown.child_token();
        let task = WatcherTask {
            key,
            credentials,
            pools: self.pools.clone(),
            settings: self.settings,
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

    /// What a client at `position` missed up to `current`, recomputed from the server.
    async fn replay(
        &self,
        user: &UserKey,
        credentials: &Credentials,
        mailbox: &MailboxName,
        position: Position,
        current: MailboxState,
    ) -> Result<Vec<Tagged>, ImapError> {
        let name = mailbox.as_str().to_owned();
        if position.uid_validity() != current.uid_validity {
            return Ok(vec![reset_event(&name, current)]);
        }
        let mut session = self.pools.session(user, credentials).await?;
        // Without mod-sequences (a server's beyond RFC 7162's 63 bits count as none) there is
        // nothing to replay changes by.
        if !(session.capabilities().has("CONDSTORE") && session.capabilities().has("QRESYNC"))
            || current.highest_modseq == 0
            || position.highest_modseq() == 0
        {
            return Ok(vec![reset_event(&name, current)]);
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
                let batch = session.batch_between(mailbox, &from, &to).await?;
                let rest = Batch {
                    from,
                    to,
                    changes: batch
                        .changes
                        .into_iter()
                        .filter(|c| c.position() > (phase, uid))
                        .collect(),
                };
                out.extend(batch_events(&name, &rest));
                to
            }
        };
        if is_ahead(&current, &resume_from) {
            let batch = session
                .batch_between(mailbox, &resume_from, &current)
                .await?;
            out.extend(batch_events(&name, &batch));
        }
        Ok(out)
    }
}

/// Whether `a` has seen something `b` has not.
fn is_ahead(a: &MailboxState, b: &MailboxState) -> bool {
    a.highest_modseq > b.highest_modseq || a.uid_next > b.uid_next
}

/// An event before its id is made from every mailbox's position.
struct Tagged {
    mailbox: String,
    kind: &'static str,
    data: String,
    /// The mailbox's position after the event; `None` leaves it where it was.
    position: Option<Position>,
}

/// The last event of a stream whose watcher's access token was refused; it keeps the
/// mailbox's position (the previous event's), so that a resumed stream misses nothing.
fn auth_expired_event(mailbox: &str, detail: &str) -> Tagged {
    let data = serde_json::to_string(&AuthExpiredEvent {
        code: "upstream_token_expired",
        detail: detail.to_owned(),
    })
    .unwrap_or_default();
    Tagged {
        mailbox: mailbox.to_owned(),
        kind: AUTH_EXPIRED,
        data,
        position: None,
    }
}

/// The kind of [`auth_expired_event`].
const AUTH_EXPIRED: &str = "auth.expired";

fn reset_event(mailbox: &str, state: MailboxState) -> Tagged {
    let data = serde_json::to_string(&MailboxResetEvent {
        mailbox: mailbox.to_owned(),
        uid_validity: state.uid_validity,
    })
    .unwrap_or_default();
    Tagged {
        mailbox: mailbox.to_owned(),
        kind: "mailbox.reset",
        data,
        position: Some(Position::At(state)),
    }
}

/// The events of a batch, each carrying the position just after it.
fn batch_events(mailbox: &str, batch: &Batch) -> Vec<Tagged> {
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
            let (kind, data) = match change {
                Change::Arrived(summary) => (
                    "message.new",
                    serde_json::to_string(&MessageNewEvent {
                        mailbox: mailbox.to_owned(),
                        summary: (**summary).clone(),
                    }),
                ),
                Change::Flags { uid, flags } => (
                    "message.flags",
                    serde_json::to_string(&MessageFlagsEvent {
                        mailbox: mailbox.to_owned(),
                        uid: *uid,
                        flags: flags.clone(),
                    }),
                ),
                Change::Expunged { uid } => (
                    "message.expunged",
                    serde_json::to_string(&MessageExpungedEvent {
                        mailbox: mailbox.to_owned(),
                        uid: *uid,
                    }),
                ),
            };
            Tagged {
                mailbox: mailbox.to_owned(),
                kind,
                data: data.unwrap_or_default(),
                position: Some(position),
            }
        })
        .collect()
}

/// One mailbox's events: the replay, then live batches (filtered against `start` when the
/// client is ahead of the watcher). Holds the watcher alive.
fn mailbox_stream(
    mailbox: String,
    watcher: Arc<Watcher>,
    rx: broadcast::Receiver<Arc<Published>>,
    replay: Vec<Tagged>,
    start: MailboxState,
) -> Pin<Box<dyn Stream<Item = Tagged> + Send>> {
    let live = futures::stream::unfold(
        (rx, watcher, start, mailbox.clone()),
        |(mut rx, watcher, floor, mailbox)| async move {
            loop {
                let events = match rx.recv().await {
                    Ok(published) => match &*published {
                        Published::Batch(batch) => {
                            // A batch with mod-sequences that is not past the client's position
                            // was seen through another replica; one without (a server lacking
                            // CONDSTORE) is always news, as it was heard live.
                            let exact = batch.to.highest_modseq > 0;
                            if exact && !is_ahead(&batch.to, &floor) {
                                continue;
                            }
                            let mut batch = batch.clone();
                            if is_ahead(&floor, &batch.from) {
                                // Skip what the client already has from another replica.
                                batch.changes.retain(|c| match c {
                                    Change::Arrived(s) => s.uid >= floor.uid_next,
                                    _ => true,
                                });
                            }
                            batch_events(&mailbox, &batch)
                        }
                        Published::Reset(state) => vec![reset_event(&mailbox, *state)],
                        Published::AuthExpired(detail) => vec![auth_expired_event(&mailbox, detail)],
                    },
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        warn!(mailbox = %mailbox, skipped, "event subscriber fell behind; sending mailbox.reset");
                        metrics::counter!(names::SSE_RESETS).increment(1);
                        let state = watcher.shared.lock().expect("watcher poisoned").state;
                        match state {
                            Some(state) => vec![reset_event(&mailbox, state)],
                            None => continue,
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                return Some((futures::stream::iter(events), (rx, watcher, floor, mailbox)));
            }
        },
    )
    .flatten();
    Box::pin(futures::stream::iter(replay).chain(live))
}

/// The background side of a [`Watcher`].
struct WatcherTask {
    key: WatchKey,
    credentials: Credentials,
    pools: SessionPool,
    settings: EventSettings,
    shared: Arc<Mutex<WatcherShared>>,
    ready: watch::Sender<Option<Result<(), String>>>,
    startup_error: Arc<Mutex<Option<ImapError>>>,
    stop: CancellationToken,
}

impl WatcherTask {
    async fn run(self) {
        let _running = GaugeGuard::hold(metrics::gauge!(names::IDLE_WATCHERS));
        let mut attempt: u32 = 0;
        let mut started = false;
        while !self.stop.is_cancelled() {
            let result = self.follow(&mut started).await;
            if self.stop.is_cancelled() {
                break;
            }
            match result {
                Ok(()) => attempt = 0,
                Err(e) if !started => {
                    debug!(error = %e, mailbox = %self.key.mailbox, "watcher could not start");
                    *self.startup_error.lock().expect("watcher poisoned") = Some(e);
                    let _ = self.ready.send(Some(Err("start failed".into())));
                    return;
                }
                Err(ImapError::TokenRefused(why)) => {
                    info!(mailbox = %self.key.mailbox, "IDLE watcher's access token refused; ending its streams");
                    // Retired: the next subscriber starts a watcher with the newest token.
                    *self.startup_error.lock().expect("watcher poisoned") =
                        Some(ImapError::TokenRefused(why.clone()));
                    let _ = self.ready.send(Some(Err("access token refused".into())));
                    self.publish(Published::AuthExpired(why));
                    break;
                }
                Err(e) => {
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

    /// Connects and follows the mailbox until an error or stop.
    async fn follow(&self, started: &mut bool) -> Result<(), ImapError> {
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
        loop {
            let changed = if can_idle {
                conn.idle(self.settings.reidle, self.stop.cancelled())
                    .await?
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
                if !batch.changes.is_empty() {
                    self.publish(Published::Batch(batch));
                }
            }
        }
    }

    async fn publish_since(
        &self,
        conn: &mut crate::imap::Connection,
        before: MailboxState,
        now: MailboxState,
        exact: bool,
    ) -> Result<(), ImapError> {
        let published = if before.uid_validity != now.uid_validity
            || !exact
            || before.highest_modseq == 0
            || now.highest_modseq == 0
        {
            Published::Reset(now)
        } else {
            Published::Batch(conn.batch_between(&self.key.mailbox, &before, &now).await?)
        };
        self.publish(published);
        Ok(())
    }

    /// Broadcasts `published` and records the state it leads to.
    fn publish(&self, published: Published) {
        let now = match &published {
            Published::Batch(b) => {
                metrics::counter!(names::EVENTS_PUBLISHED).increment(b.changes.len() as u64);
                b.to
            }
            Published::Reset(state) => *state,
            Published::AuthExpired(_) => {
                let shared = self.shared.lock().expect("watcher poisoned");
                let _ = shared.tx.send(Arc::new(published));
                return;
            }
        };
        let mut shared = self.shared.lock().expect("watcher poisoned");
        shared.state = Some(now);
        let _ = shared.tx.send(Arc::new(published));
    }
}

/// Capped exponential backoff with ±50 % jitter.
fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(250)
        .saturating_mul(1u32 << attempt.min(16))
        .min(max);
    let jitter = rand::random_range(0.5..1.5);
    base.mul_f64(jitter).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(m: u64, n: u32) -> MailboxState {
        MailboxState {
            uid_validity: 7,
            highest_modseq: m,
            uid_next: n,
        }
    }

    #[test]
    fn event_ids_round_trip_every_position() {
        let mut positions = BTreeMap::new();
        positions.insert("INBOX".to_owned(), Position::At(state(10, 5)));
        positions.insert(
            "Entwürfe \"x\"".to_owned(),
            Position::Within {
                from: state(10, 5),
                to: state(20, 9),
                phase: Phase::Arrived,
                uid: 7,
            },
        );
        let id = encode_event_id(&positions);
        assert!(id.bytes().all(|b| b.is_ascii_graphic()), "{id}");
        assert_eq!(decode_event_id(&id).expect("decodes"), positions);
    }

    #[test]
    fn hostile_event_ids_are_refused() {
        for bad in [
            "",
            "e1.",
            "e1.!!!",
            "e2.e30",
            "e1.W10",
            &format!("e1.{}", "A".repeat(9000)),
        ] {
            assert!(decode_event_id(bad).is_none(), "{bad}");
        }
        let forged = format!(
            "e1.{}",
            URL_SAFE_NO_PAD.encode(r#"{"INBOX":"p1.7.20.9.10.5.2.1"}"#)
        );
        assert!(
            decode_event_id(&forged).is_none(),
            "a batch that runs backwards"
        );
    }

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
        let events = batch_events("INBOX", &batch);
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

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_secs(30);
        assert!(backoff(1, max) <= Duration::from_millis(750));
        for attempt in 0..40 {
            assert!(backoff(attempt, max) <= max);
        }
    }
}
