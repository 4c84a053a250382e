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
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use utoipa::ToSchema;
use zeroize::Zeroizing;

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
    pub code: &'static str,
    /// Why, for people.
    pub detail: String,
    /// The mailbox concerned, when the end is one mailbox's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
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

    /// The state the replay starts from.
    fn start(&self) -> MailboxState {
        match self {
            Position::At(s) => *s,
            Position::Within { from, .. } => *from,
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

/// Derives the event-id key from a secret (HMAC-SHA256 under this label).
const EVENT_ID_LABEL: &[u8] = b"imap-bridge/event-id/v1";

/// Bytes of HMAC-SHA256 an event id carries.
const MAC_LEN: usize = 16;

/// Signs event ids and checks `Last-Event-ID`s.
///
/// An id is `e2.` base64url(JSON of positions) `.` base64url(MAC), the MAC (HMAC-SHA256, first
/// 16 bytes) taken under a key derived from the bridge's secret over the IMAP server, the user
/// and the positions. A replay is computed from positions only after the MAC holds, so an id
/// the bridge did not issue — made up, edited, another user's, or from before this scheme —
/// costs one `mailbox.reset` and not a word to the IMAP server. Keys of previous secrets are
/// accepted too, so that rotating the secret loses no stream's place.
pub struct EventIdKeys {
    /// The current key first.
    keys: Vec<Zeroizing<[u8; 32]>>,
}

impl EventIdKeys {
    /// Keys from the current secret and the previous ones.
    pub fn new<'a>(current: &[u8], previous: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut keys = vec![crate::keys::derive(current, EVENT_ID_LABEL)];
        keys.extend(
            previous
                .into_iter()
                .map(|s| crate::keys::derive(s, EVENT_ID_LABEL)),
        );
        EventIdKeys { keys }
    }

    /// A MAC under `key` already fed with `user`, ready for one id's payload.
    fn keyed(key: &[u8; 32], user: &UserKey) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
        for part in [
            user.upstream.host.as_bytes(),
            &user.upstream.port.to_be_bytes(),
            user.username.as_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The signer of `user`'s ids.
    fn signer(&self, user: &UserKey) -> IdSigner {
        IdSigner {
            mac: Self::keyed(&self.keys[0], user),
        }
    }

    /// The positions of a `Last-Event-ID`, if this bridge (or one with the same secret) issued
    /// it to `user`.
    fn open(&self, user: &UserKey, id: &str) -> Option<BTreeMap<String, Position>> {
        if id.len() > MAX_EVENT_ID {
            return None;
        }
        let (payload, tag) = id.strip_prefix("e2.")?.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != MAC_LEN {
            return None;
        }
        let genuine = self.keys.iter().any(|key| {
            let mut mac = Self::keyed(key, user);
            mac.update(payload.as_bytes());
            mac.verify_truncated_left(&tag).is_ok()
        });
        if !genuine {
            return None;
        }
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let raw: BTreeMap<String, String> = serde_json::from_slice(&json).ok()?;
        raw.into_iter()
            .map(|(name, pos)| Position::decode(&pos).map(|p| (name, p)))
            .collect()
    }
}

/// Makes one subscriber's event ids.
struct IdSigner {
    mac: Hmac<Sha256>,
}

impl IdSigner {
    fn sign(&self, positions: &BTreeMap<Arc<str>, Position>) -> String {
        let raw: BTreeMap<&str, String> =
            positions.iter().map(|(k, v)| (&**k, v.encode())).collect();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&raw).unwrap_or_default());
        let mut mac = self.mac.clone();
        mac.update(payload.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("e2.{payload}.{}", URL_SAFE_NO_PAD.encode(&tag[..MAC_LEN]))
    }
}

/// What a watcher broadcasts.
#[derive(Debug)]
enum Published {
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
struct Stamped {
    seq: u64,
    published: Published,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct WatchKey {
    user: UserKey,
    mailbox: MailboxName,
}

struct WatcherShared {
    /// The state the last broadcast led to.
    state: Option<MailboxState>,
    /// The number of the last broadcast.
    seq: u64,
    /// Once the watcher stopped for good, the event that ended its streams.
    ended: Option<Tagged>,
    tx: broadcast::Sender<Arc<Stamped>>,
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
    ids: EventIdKeys,
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
    /// A hub drawing connections from `pools`, signing event ids with `ids`.
    pub fn new(pools: SessionPool, settings: EventSettings, ids: EventIdKeys) -> Self {
        EventHub {
            pools,
            settings,
            ids,
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
    ) -> Result<EventStream, SubscribeError> {
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
            streams.push(mailbox_stream(name, watcher, rx, replay, start));
        }
        let ending = futures::stream::once(until).map(|ending| {
            end_event(
                None,
                StreamEndEvent {
                    code: ending.code,
                    detail: ending.detail,
                    mailbox: None,
                },
                None,
            )
        });
        // The ending first: once the token is gone, not one more event goes out.
        let merged = futures::stream::select_with_strategy(
            ending,
            futures::stream::select_all(streams),
            |_: &mut ()| futures::stream::PollNext::Left,
        );
        let shutdown = self.shutdown.clone();
        let signer = self.ids.signer(user);
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
        let reset = || Ok(vec![reset_event(name, current)]);
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
                out.extend(batch_events(name, &rest));
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
            out.extend(batch_events(name, &batch));
        }
        Ok(out)
    }
}

/// Whether `a` has seen something `b` has not.
fn is_ahead(a: &MailboxState, b: &MailboxState) -> bool {
    a.highest_modseq > b.highest_modseq || a.uid_next > b.uid_next
}

/// An event before its id is made from every mailbox's position. Cheap to clone: a batch's
/// events are built once and shared by all subscribers.
#[derive(Debug, Clone)]
struct Tagged {
    mailbox: Arc<str>,
    kind: &'static str,
    data: Arc<str>,
    /// The mailbox's position after the event; `None` leaves it where it was.
    position: Option<Position>,
    /// For `message.new`, the message's UID.
    arrival: Option<u32>,
    /// The stream ends after this event.
    last: bool,
    /// On a last event, when reconnecting may help.
    retry: Option<Duration>,
}

fn json(value: &impl Serialize) -> Arc<str> {
    Arc::from(serde_json::to_string(value).unwrap_or_default())
}

/// The last event of a stream whose watcher's access token was refused; it keeps the
/// mailbox's position (the previous event's), so that a resumed stream misses nothing.
fn auth_expired_event(mailbox: &Arc<str>, detail: &str) -> Tagged {
    Tagged {
        mailbox: mailbox.clone(),
        kind: "auth.expired",
        data: json(&AuthExpiredEvent {
            code: "upstream_token_expired",
            detail: detail.to_owned(),
        }),
        position: None,
        arrival: None,
        last: true,
        retry: None,
    }
}

/// A `stream.end` event; like every last event it keeps the positions, so that a stream
/// resumed later misses nothing.
fn end_event(mailbox: Option<&Arc<str>>, event: StreamEndEvent, retry: Option<Duration>) -> Tagged {
    Tagged {
        mailbox: mailbox.cloned().unwrap_or_else(|| Arc::from("")),
        kind: "stream.end",
        data: json(&event),
        position: None,
        arrival: None,
        last: true,
        retry,
    }
}

fn reset_event(mailbox: &Arc<str>, state: MailboxState) -> Tagged {
    Tagged {
        mailbox: mailbox.clone(),
        kind: "mailbox.reset",
        data: json(&MailboxResetEvent {
            mailbox: mailbox.to_string(),
            uid_validity: state.uid_validity,
        }),
        position: Some(Position::At(state)),
        arrival: None,
        last: false,
        retry: None,
    }
}

/// The events of a batch, each carrying the position just after it.
fn batch_events(mailbox: &Arc<str>, batch: &Batch) -> Vec<Tagged> {
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
                    json(&MessageNewEvent {
                        mailbox: mailbox.to_string(),
                        summary: (**summary).clone(),
                    }),
                    Some(summary.uid),
                ),
                Change::Flags { uid, flags } => (
                    "message.flags",
                    json(&MessageFlagsEvent {
                        mailbox: mailbox.to_string(),
                        uid: *uid,
                        flags: flags.clone(),
                    }),
                    None,
                ),
                Change::Expunged { uid } => (
                    "message.expunged",
                    json(&MessageExpungedEvent {
                        mailbox: mailbox.to_string(),
                        uid: *uid,
                    }),
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
fn events_past(events: &[Tagged], to: MailboxState, floor: &MailboxState) -> Vec<Tagged> {
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
struct Live {
    rx: broadcast::Receiver<Arc<Stamped>>,
    watcher: Arc<Watcher>,
    /// The state the client is known to have reached.
    floor: MailboxState,
    /// Broadcasts up to this number are older than what the client was sent.
    seen: u64,
}

impl Live {
    /// The events of the next broadcast; `None` when the watcher is gone.
    async fn next(&mut self, mailbox: &Arc<str>) -> Option<Vec<Tagged>> {
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
                            return Some(vec![reset_event(mailbox, *state)]);
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
                        events.push(reset_event(mailbox, state));
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
fn mailbox_stream(
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

/// The background side of a [`Watcher`].
struct WatcherTask {
    key: WatchKey,
    name: Arc<str>,
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
    fn last_word(
        &self,
        error: &ImapError,
        failing_since: Option<tokio::time::Instant>,
    ) -> Option<Tagged> {
        let end = |code, detail: &str, retry| {
            Some(end_event(
                Some(&self.name),
                StreamEndEvent {
                    code,
                    detail: detail.to_owned(),
                    mailbox: Some(self.name.to_string()),
                },
                retry,
            ))
        };
        match error {
            ImapError::TokenRefused(why) => Some(auth_expired_event(&self.name, why)),
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
    async fn follow(&self, started: &mut bool, followed: &mut bool) -> Result<(), ImapError> {
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

    async fn publish_since(
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
    fn publish_batch(&self, batch: &Batch) {
        metrics::counter!(names::EVENTS_PUBLISHED).increment(batch.changes.len() as u64);
        self.publish(Published::Batch {
            from: batch.from,
            to: batch.to,
            events: batch_events(&self.name, batch),
        });
    }

    fn publish(&self, published: Published) {
        broadcast(&self.shared, published);
    }
}

/// Broadcasts `published` under the next number and records the state it leads to, both
/// under one lock, so a subscriber that reads them knows which broadcasts are older.
fn broadcast(shared: &Mutex<WatcherShared>, published: Published) {
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
const GIVE_UP_RETRY: Duration = Duration::from_secs(30);

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
    use crate::imap::transport::{Security, Upstream};

    fn state(m: u64, n: u32) -> MailboxState {
        MailboxState {
            uid_validity: 7,
            highest_modseq: m,
            uid_next: n,
        }
    }

    fn user(name: &str) -> UserKey {
        UserKey {
            upstream: Upstream {
                host: "imap.example.com".into(),
                port: 993,
                security: Security::Tls,
            },
            username: name.into(),
        }
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OLD_SECRET: &[u8] = b"fedcba9876543210fedcba9876543210";

    fn positions() -> BTreeMap<Arc<str>, Position> {
        let mut positions = BTreeMap::new();
        positions.insert(Arc::from("INBOX"), Position::At(state(10, 5)));
        positions.insert(
            Arc::from("Entwürfe \"x\""),
            Position::Within {
                from: state(10, 5),
                to: state(20, 9),
                phase: Phase::Arrived,
                uid: 7,
            },
        );
        positions
    }

    fn as_strings(positions: &BTreeMap<Arc<str>, Position>) -> BTreeMap<String, Position> {
        positions.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn event_ids_round_trip_every_position() {
        let keys = EventIdKeys::new(SECRET, []);
        let id = keys.signer(&user("alice")).sign(&positions());
        assert!(id.bytes().all(|b| b.is_ascii_graphic()), "{id}");
        assert_eq!(
            keys.open(&user("alice"), &id).expect("opens"),
            as_strings(&positions())
        );
    }

    #[test]
    fn event_ids_the_bridge_did_not_issue_are_refused() {
        let keys = EventIdKeys::new(SECRET, []);
        let genuine = keys.signer(&user("alice")).sign(&positions());
        let (payload, tag) = genuine
            .strip_prefix("e2.")
            .and_then(|r| r.split_once('.'))
            .expect("e2.payload.tag");
        // A position far behind, as an attacker would write it to make the bridge fetch a
        // whole mailbox: valid JSON, valid positions, no valid MAC.
        let far_behind = URL_SAFE_NO_PAD.encode(r#"{"INBOX":"7.1.1"}"#);
        let unsigned_v1 = format!("e1.{far_behind}");
        let forged = format!("e2.{far_behind}.{tag}");
        let short_tag = format!("e2.{payload}.{}", &tag[..10]);
        let other_user = keys.open(&user("bob"), &genuine);
        assert!(other_user.is_none(), "another user's id");
        let other_server = UserKey {
            upstream: Upstream {
                port: 143,
                ..user("alice").upstream
            },
            ..user("alice")
        };
        assert!(keys.open(&other_server, &genuine).is_none());
        let other_bridge = EventIdKeys::new(OLD_SECRET, []);
        assert!(other_bridge.open(&user("alice"), &genuine).is_none());
        for bad in [
            "",
            "e2.",
            "e2.!!!",
            "e2.e30",
            unsigned_v1.as_str(),
            forged.as_str(),
            short_tag.as_str(),
            &format!("e2.{}.{tag}", "A".repeat(9000)),
        ] {
            assert!(keys.open(&user("alice"), bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ids_signed_under_a_previous_secret_still_open() {
        let before = EventIdKeys::new(OLD_SECRET, []);
        let id = before.signer(&user("alice")).sign(&positions());
        let after = EventIdKeys::new(SECRET, [OLD_SECRET]);
        assert_eq!(
            after.open(&user("alice"), &id).expect("opens"),
            as_strings(&positions())
        );
        let new_id = after.signer(&user("alice")).sign(&positions());
        assert!(before.open(&user("alice"), &new_id).is_none());
    }

    #[test]
    fn a_signed_batch_that_runs_backwards_is_still_refused() {
        let keys = EventIdKeys::new(SECRET, []);
        let payload = URL_SAFE_NO_PAD.encode(r#"{"INBOX":"p1.7.20.9.10.5.2.1"}"#);
        let mut mac = EventIdKeys::keyed(&keys.keys[0], &user("alice"));
        mac.update(payload.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..MAC_LEN]);
        assert!(
            keys.open(&user("alice"), &format!("e2.{payload}.{tag}"))
                .is_none()
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
        let events = batch_events(&Arc::from("INBOX"), &batch);
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
        }))
    }

    fn watcher_with_queue(queue: usize) -> Arc<Watcher> {
        let (tx, _) = broadcast::channel(queue);
        let (_ready_tx, ready) = watch::channel(Some(Ok(())));
        Arc::new(Watcher {
            shared: Arc::new(Mutex::new(WatcherShared {
                state: Some(state(1, 1)),
                seq: 0,
                ended: None,
                tx,
            })),
            ready,
            startup_error: Arc::new(Mutex::new(None)),
            stop: CancellationToken::new(),
        })
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
                events: batch_events(&Arc::from("INBOX"), &batch),
            },
        );
    }

    #[tokio::test]
    async fn a_lagging_subscriber_goes_on_from_the_reset_and_never_back() {
        let watcher = watcher_with_queue(4);
        let rx = watcher.shared.lock().expect("lock").tx.subscribe();
        let mut stream = mailbox_stream(
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
            Some(&Arc::from("INBOX")),
            StreamEndEvent {
                code: "mailbox_not_found",
                detail: "gone".into(),
                mailbox: Some("INBOX".into()),
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
        let events = batch_events(&Arc::from("INBOX"), &batch);
        let kept = events_past(&events, batch.to, &state(11, 7));
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].arrival, Some(7));
        assert_eq!(kept[0].position, Some(Position::At(state(12, 8))));
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
