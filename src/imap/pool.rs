//! Per-user pools of logged-in IMAP sessions, capped per user and in total.
//!
//! A user's pool is created on first use and keyed by (server, login name). Sessions are checked
//! with NOOP when they come back from a long rest, logged out when unused for the idle timeout,
//! and discarded whenever a command did not complete cleanly. A session keeps its selected
//! mailbox, so a warm request costs no extra SELECT.
//!
//! Waiting: a request waits up to the pool wait timeout for one of its user's sessions; while
//! sessions of the user are still logging in (a login held back by the server's auth penalty
//! takes up to 15 s on Dovecot), it waits for them up to the connect timeout longer, since one
//! of them is what it is waiting for. When the bridge's total is reached, a new session waits
//! too, and makes room by logging out the least recently used idle session of another user.
//!
//! Refused credentials: when the server refuses a user's password or access token, the refusal
//! is remembered (by a keyed fingerprint of the credentials, never the secret) for the login
//! window, and requests with the same credentials are answered from that memory without asking
//! the server again. A pool whose password was refused is closed. A pool logs in one session at
//! a time until one succeeds, so a burst of requests with refused credentials costs the server
//! one failed login.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult, Timeouts};
use hmac::{Hmac, Mac};
use moka::sync::Cache;
use secrecy::ExposeSecret;
use sha2::Sha256;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info};

use super::cache::{CacheScope, SummaryCache};
use super::connection::{Connection, Credentials, Secret, SessionLimits};
use super::error::{ImapError, Result};
use super::meter;
use super::transport::{Transport, Upstream};
use crate::telemetry::names;

/// Most refused credentials remembered at once. Past that the least used are forgotten, which
/// costs the server one more failed login for each when it is used again.
pub const MAX_REFUSED: u64 = 10_000;

/// Who a pool belongs to: one login on one server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserKey {
    /// The server.
    pub upstream: Upstream,
    /// The IMAP login name.
    pub username: String,
}

/// Pool sizing and timing.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Most pooled (command) sessions per user.
    pub max_per_user: usize,
    /// Most connections per user, pooled sessions and IDLE watchers together; keep it below
    /// the server's per-user limit. Watchers get what the pool cannot use.
    pub max_connections_per_user: usize,
    /// Most sessions in total.
    pub max_total: usize,
    /// Unused sessions are logged out after this long.
    pub idle_timeout: Duration,
    /// A request waits this long for a free session (longer while sessions it waits for are
    /// still logging in: up to the connect timeout more).
    pub wait_timeout: Duration,
    /// Credentials the server refused are answered from memory for this long (the login
    /// window).
    pub refusal_ttl: Duration,
    /// A session unused for longer than this is checked with NOOP before reuse.
    pub recheck_after: Duration,
    /// Connect and command time limits.
    pub limits: SessionLimits,
}

/// A pooled session, checked out for one request; returns to its pool when dropped.
pub struct Session {
    obj: Option<Object<SessionManager>>,
    shared: Arc<Shared>,
}

impl Deref for Session {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.obj.as_ref().expect("a live session").conn
    }
}

impl DerefMut for Session {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.obj.as_mut().expect("a live session").conn
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Back in its pool first, then tell requests waiting for room under the bridge's total
        // that there is an idle session they may log out.
        drop(self.obj.take());
        self.shared.returned.notify_waiters();
    }
}

/// A logged-in connection together with its shares of the global and per-user budgets.
pub struct PooledConnection {
    conn: Connection,
    permits: Permits,
}

/// Budget shares held for as long as a connection lives.
struct Permits {
    _global: OwnedSemaphorePermit,
    _user: OwnedSemaphorePermit,
    _watcher: Option<OwnedSemaphorePermit>,
}

/// A connection outside the command pool (an IDLE watcher's), counted in the same budgets.
pub struct DedicatedConnection {
    /// The logged-in session.
    pub conn: Connection,
    _permits: Permits,
}

/// A user's connection budget: every connection, and the part watchers may use.
struct UserBudget {
    all: Arc<Semaphore>,
    watchers: Arc<Semaphore>,
}

/// Creates and checks sessions for one user.
pub struct SessionManager {
    shared: Arc<Shared>,
    key: UserKey,
    /// What new sessions log in with: for an access token, the newest one offered.
    credentials: std::sync::Mutex<Credentials>,
    names_epoch: Arc<AtomicU64>,
    budget: Arc<Semaphore>,
    cache: Option<CacheScope>,
    /// The address of the last client that asked for a session, passed on with IMAP ID.
    origin: std::sync::Mutex<Option<IpAddr>>,
    /// Sessions of this pool logging in right now (or waiting for room or their turn to).
    creating: AtomicUsize,
    /// Held by a login whose outcome nobody knows yet (see `create`).
    login_turn: tokio::sync::Mutex<()>,
    /// Counts this pool's successful logins.
    logins_succeeded: AtomicU64,
}

impl SessionManager {
    fn credentials(&self) -> Credentials {
        self.credentials
            .lock()
            .expect("credentials poisoned")
            .clone()
    }

    /// Takes `offered` for new sessions when it is an access token issued after the one in
    /// use: a refreshed token replaces an expiring one, an older bridge token (another tab,
    /// another device) does not bring back a token that has expired.
    fn offer(&self, offered: &Credentials) {
        let Secret::AccessToken {
            issued_at: offered_at,
            ..
        } = &offered.secret
        else {
            return;
        };
        let mut current = self.credentials.lock().expect("credentials poisoned");
        let newer = match &current.secret {
            Secret::AccessToken { issued_at, .. } => offered_at > issued_at,
            Secret::Password(_) => true,
        };
        if newer {
            *current = offered.clone();
        }
    }

    /// Takes `verified` for new sessions, as a login just proved it works.
    fn adopt(&self, verified: &Credentials) {
        *self.credentials.lock().expect("credentials poisoned") = verified.clone();
    }
}

impl managed::Manager for SessionManager {
    type Type = PooledConnection;
    type Error = ImapError;

    async fn create(&self) -> Result<PooledConnection> {
        let _creating = Busy::enter(&self.creating);
        working();
        self.shared.check_refused(&self.credentials())?;
        let user = self.shared.user_permits(&self.budget, None)?;
        let global = self
            .shared
            .global_permit(&self.key, request_deadline(&self.shared.settings))
            .await?;
        // One login at a time until one succeeds: if the server now refuses the credentials,
        // the logins queued behind the first learn it from the refusal it leaves instead of
        // each costing the server a failed login. A login that succeeded while one waited
        // proves the credentials, and the rest go ahead side by side.
        let succeeded = self.logins_succeeded.load(Ordering::SeqCst);
        let turn = tokio::time::timeout(
            self.shared.settings.limits.connect_timeout,
            self.login_turn.lock(),
        )
        .await
        .map_err(|_| ImapError::Timeout)?;
        let _turn = (self.logins_succeeded.load(Ordering::SeqCst) == succeeded).then_some(turn);
        let credentials = self.credentials();
        self.shared.check_refused(&credentials)?;
        let origin = *self.origin.lock().expect("origin poisoned");
        let mut conn = self
            .shared
            .connect(&self.key.upstream, &credentials, origin)
            .await?;
        conn.share_names_epoch(self.names_epoch.clone());
        if let Some(cache) = &self.cache {
            conn.attach_cache(cache.clone());
        }
        self.logins_succeeded.fetch_add(1, Ordering::SeqCst);
        metrics::counter!(names::IMAP_SESSIONS_OPENED, "purpose" => "pool").increment(1);
        Ok(PooledConnection {
            conn,
            permits: Permits {
                _global: global,
                _user: user.0,
                _watcher: user.1,
            },
        })
    }

    async fn recycle(
        &self,
        obj: &mut PooledConnection,
        metrics: &Metrics,
    ) -> RecycleResult<ImapError> {
        working();
        if !obj.conn.is_clean() {
            metrics::counter!(names::POOL_SESSIONS_CLOSED, "reason" => "unclean").increment(1);
            return Err(RecycleError::message("session left in an unknown state"));
        }
        if !obj.conn.is_quiet() {
            metrics::counter!(names::POOL_SESSIONS_CLOSED, "reason" => "ended").increment(1);
            return Err(RecycleError::message("the server ended the session"));
        }
        // A session whose mailbox another session deleted or renamed is ended by the server at
        // its next command; finding that out here lets the pool hand out a fresh one instead
        // of failing the caller's request.
        if obj.conn.selection_may_be_stale() {
            obj.conn
                .settle_stale_selection()
                .await
                .map_err(check_failed)?;
        } else if metrics.last_used() > self.shared.settings.recheck_after {
            obj.conn.noop().await.map_err(check_failed)?;
        }
        Ok(())
    }
}

/// A session whose check before reuse failed: discarded, and counted.
fn check_failed(e: ImapError) -> RecycleError<ImapError> {
    metrics::counter!(names::POOL_SESSIONS_CLOSED, "reason" => "check_failed").increment(1);
    RecycleError::Backend(e)
}

/// Counts itself in a counter for as long as it lives.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Busy(count)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a request waiting for a session has done so far, seen by the pool's manager while it
/// works for that request (deadpool calls `create` and `recycle` inside the request's `get`).
struct RequestWait {
    /// Until when the request waits for its user's sessions, and for room under the total.
    deadline: Instant,
    /// Set once the request has a slot in its user's pool and logs in or checks a session
    /// itself: from then on only those steps' own time limits apply.
    working: AtomicBool,
}

tokio::task_local! {
    static REQUEST_WAIT: Arc<RequestWait>;
}

/// Marks the request being served, if any, as working on its own session.
fn working() {
    let _ = REQUEST_WAIT.try_with(|wait| wait.working.store(true, Ordering::SeqCst));
}

/// Until when the request being served may wait for room, or the wait timeout from now for
/// connections opened outside a request.
fn request_deadline(settings: &PoolSettings) -> Instant {
    REQUEST_WAIT
        .try_with(|wait| wait.deadline)
        .unwrap_or_else(|_| Instant::now() + settings.wait_timeout)
}

/// Why the server refused credentials, as remembered.
#[derive(Debug, Clone)]
enum Refusal {
    Password,
    Token(Arc<str>),
}

impl Refusal {
    fn of(e: &ImapError) -> Option<Self> {
        match e {
            ImapError::AuthenticationFailed => Some(Refusal::Password),
            ImapError::TokenRefused(why) => Some(Refusal::Token(why.as_str().into())),
            _ => None,
        }
    }

    fn error(&self) -> ImapError {
        match self {
            Refusal::Password => ImapError::AuthenticationFailed,
            Refusal::Token(why) => ImapError::TokenRefused(why.to_string()),
        }
    }
}

type UserMap = Mutex<HashMap<UserKey, Arc<UserPool>>>;

struct Shared {
    transport: Transport,
    cache: Option<SummaryCache>,
    settings: PoolSettings,
    global: Arc<Semaphore>,
    fingerprint_key: [u8; 32],
    started: Instant,
    /// Every user's pool, for making room under the total (weak: the pools hold this).
    users: Weak<UserMap>,
    /// Notified whenever a session goes back to its pool.
    returned: Notify,
    /// Credentials the server refused, by [`Shared::secret_fingerprint`].
    refused: Cache<[u8; 32], Refusal>,
}

impl Shared {
    /// A connection's shares of its user's budget (and of the watchers' part of it).
    fn user_permits(
        &self,
        user: &Arc<Semaphore>,
        watcher: Option<&Arc<Semaphore>>,
    ) -> Result<(OwnedSemaphorePermit, Option<OwnedSemaphorePermit>)> {
        let watcher = match watcher {
            Some(slots) => Some(
                slots
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| ImapError::PoolExhausted)?,
            ),
            None => None,
        };
        let user = user
            .clone()
            .try_acquire_owned()
            .map_err(|_| ImapError::PoolExhausted)?;
        Ok((user, watcher))
    }

    /// A share of the bridge's total for a new connection of `user`: at once if there is
    /// room; else by logging out the least recently used idle session of another user, or
    /// by waiting for one to be returned or closed, until `deadline`.
    async fn global_permit(
        &self,
        user: &UserKey,
        deadline: Instant,
    ) -> Result<OwnedSemaphorePermit> {
        loop {
            if let Ok(permit) = self.global.clone().try_acquire_owned() {
                return Ok(permit);
            }
            // Registered before looking, so a session returned meanwhile is not missed.
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            self.evict_idle_session(user);
            tokio::select! {
                permit = self.global.clone().acquire_owned() => {
                    return permit.map_err(|_| ImapError::BridgeFull);
                }
                () = returned => {}
                () = tokio::time::sleep_until(deadline.into()) => {
                    metrics::counter!(names::POOL_WAIT_TIMEOUTS).increment(1);
                    return Err(ImapError::BridgeFull);
                }
            }
        }
    }

    /// Logs out one idle session of the least recently used other user whose requests are
    /// not waiting for it; its share of the total comes back when its LOGOUT is done.
    fn evict_idle_session(&self, except: &UserKey) {
        let Some(users) = self.users.upgrade() else {
            return;
        };
        let victim = {
            let users = users.lock().expect("pool map poisoned");
            users
                .iter()
                .filter(|(key, pool)| {
                    let status = pool.pool.status();
                    *key != except && status.available > 0 && status.waiting == 0
                })
                .min_by_key(|(_, pool)| pool.last_used.load(Ordering::Relaxed))
                .map(|(key, pool)| (key.username.clone(), pool.clone()))
        };
        let Some((username, pool)) = victim else {
            return;
        };
        // Deadpool keeps idle sessions in the order they came back: the first is the one
        // unused longest.
        let mut first = true;
        let removed = pool.pool.retain(|_, _| !std::mem::take(&mut first));
        for obj in removed.removed {
            debug!(user = %username, "logging out an idle session to make room");
            metrics::counter!(names::POOL_SESSIONS_CLOSED, "reason" => "evicted").increment(1);
            let PooledConnection { conn, permits, .. } = obj;
            tokio::spawn(async move {
                conn.logout().await;
                drop(permits);
            });
        }
    }

    /// The remembered refusal of `credentials`, as the error the server gave.
    fn check_refused(&self, credentials: &Credentials) -> Result<()> {
        match self.refused.get(&self.secret_fingerprint(credentials)) {
            Some(refusal) => Err(refusal.error()),
            None => Ok(()),
        }
    }

    /// Connects and logs in with `credentials`; a refusal is remembered, a success forgets an
    /// earlier one.
    async fn connect(
        &self,
        upstream: &Upstream,
        credentials: &Credentials,
        origin: Option<IpAddr>,
    ) -> Result<Connection> {
        let addr = tokio::time::timeout(self.settings.limits.connect_timeout, resolve(upstream))
            .await
            .unwrap_or(Err(ImapError::Timeout))
            .inspect_err(meter::connect_failed)?;
        let opened = Connection::open(
            &self.transport,
            upstream,
            addr,
            credentials,
            origin,
            self.settings.limits,
        )
        .await
        .inspect_err(meter::connect_failed);
        let fingerprint = self.secret_fingerprint(credentials);
        match &opened {
            Ok(_) => self.refused.invalidate(&fingerprint),
            Err(e) => {
                if let Some(refusal) = Refusal::of(e) {
                    self.refused.insert(fingerprint, refusal);
                }
            }
        }
        opened
    }

    /// Tells one exact set of credentials from every other: user name and secret (password or
    /// access token), keyed with the pool's random key, so the secret cannot be recovered from
    /// it.
    fn secret_fingerprint(&self, credentials: &Credentials) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.fingerprint_key).expect("any key length");
        mac.update(b"secret\0");
        mac.update(credentials.username.as_bytes());
        mac.update(&[0]);
        match &credentials.secret {
            Secret::Password(password) => {
                mac.update(b"password\0");
                mac.update(password.expose_secret().as_bytes());
            }
            Secret::AccessToken { token, .. } => {
                mac.update(b"access token\0");
                mac.update(token.expose_secret().as_bytes());
            }
        }
        mac.finalize().into_bytes().into()
    }

    /// What tells one user's credentials from another set: the password itself, so that a
    /// changed password gets a new pool; for access tokens only that they are tokens, so that a
    /// refreshed token keeps the user's sessions (it is offered to the pool instead, see
    /// [`SessionManager::offer`]).
    fn fingerprint(&self, credentials: &Credentials) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.fingerprint_key).expect("any key length");
        mac.update(credentials.username.as_bytes());
        mac.update(&[0]);
        match &credentials.secret {
            Secret::Password(password) => {
                mac.update(b"password\0");
                mac.update(password.expose_secret().as_bytes());
            }
            Secret::AccessToken { .. } => mac.update(b"access token"),
        }
        mac.finalize().into_bytes().into()
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Resolves the server's address; the first address answers.
pub async fn resolve(upstream: &Upstream) -> Result<SocketAddr> {
    let mut addrs = tokio::net::lookup_host((upstream.host.as_str(), upstream.port))
        .await
        .map_err(|e| ImapError::Unavailable(format!("cannot resolve {}: {e}", upstream.host)))?;
    addrs
        .next()
        .ok_or_else(|| ImapError::Unavailable(format!("{} has no address", upstream.host)))
}

struct UserPool {
    pool: managed::Pool<SessionManager>,
    fingerprint: [u8; 32],
    last_used: AtomicU64,
}

impl UserPool {
    /// Closes the pool and hands back its idle sessions; sessions in use are dropped on return.
    fn close(&self) -> Vec<PooledConnection> {
        let idle = self.pool.retain(|_, _| false);
        self.pool.close();
        idle.removed
    }

    /// Closes the pool and logs out its idle sessions in the background.
    fn shut_down(&self) {
        for obj in self.close() {
            tokio::spawn(obj.conn.logout());
        }
    }
}

/// All users' pools.
#[derive(Clone)]
pub struct SessionPool {
    shared: Arc<Shared>,
    users: Arc<UserMap>,
    budgets: Arc<Mutex<HashMap<UserKey, Arc<UserBudget>>>>,
}

/// A snapshot of the pools for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStats {
    /// Users with a pool.
    pub users: usize,
    /// Open sessions.
    pub sessions: usize,
    /// Sessions idle in their pools.
    pub idle: usize,
    /// Requests waiting for a session.
    pub waiting: usize,
}

impl SessionPool {
    /// Creates the pools and starts the idle reaper (stopped when the last handle is dropped).
    pub fn new(transport: Transport, settings: PoolSettings, cache: Option<SummaryCache>) -> Self {
        let mut fingerprint_key = [0u8; 32];
        rand::fill(&mut fingerprint_key);
        let users = Arc::new(Mutex::new(HashMap::new()));
        let pool = SessionPool {
            shared: Arc::new(Shared {
                transport,
                cache,
                settings,
                global: Arc::new(Semaphore::new(settings.max_total)),
                fingerprint_key,
                started: Instant::now(),
                users: Arc::downgrade(&users),
                returned: Notify::new(),
                refused: Cache::builder()
                    .max_capacity(MAX_REFUSED)
                    .time_to_live(settings.refusal_ttl)
                    .build(),
            }),
            users,
            budgets: Arc::new(Mutex::new(HashMap::new())),
        };
        let weak_users = Arc::downgrade(&pool.users);
        let weak_budgets = Arc::downgrade(&pool.budgets);
        let weak_shared = Arc::downgrade(&pool.shared);
        let tick =
            (settings.idle_timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let (Some(users), Some(shared), Some(budgets)) = (
                    weak_users.upgrade(),
                    weak_shared.upgrade(),
                    weak_budgets.upgrade(),
                ) else {
                    return;
                };
                reap(&users, &shared);
                forget_unused_budgets(&budgets, &shared.settings);
            }
        });
        pool
    }

    /// Checks out a session for `key`, logging in with `credentials` if a new one is needed.
    ///
    /// Credentials that differ from those the user's pool was built with are verified by a
    /// fresh login first; only then do they replace the pool (a password change), so a wrong
    /// password can never disturb a user's working sessions.
    pub async fn session(&self, key: &UserKey, credentials: &Credentials) -> Result<Session> {
        self.session_from(key, credentials, None).await
    }

    /// Like [`SessionPool::session`] for a request from `origin`: a session opened for it
    /// tells the server the client's address with IMAP ID (`x-originating-ip`), so the
    /// server's logs and login penalties see the real client rather than the bridge.
    pub async fn session_from(
        &self,
        key: &UserKey,
        credentials: &Credentials,
        origin: Option<IpAddr>,
    ) -> Result<Session> {
        // A password the server refused within the login window is refused again without
        // asking it. (An access token is checked when a session is opened: the user's pool may
        // hold a newer one, which new sessions use.)
        if !credentials.is_access_token() {
            self.shared.check_refused(credentials)?;
        }
        let fingerprint = self.shared.fingerprint(credentials);
        let existing = self
            .users
            .lock()
            .expect("pool map poisoned")
            .get(key)
            .cloned();
        let user_pool = match existing {
            Some(pool) if pool.fingerprint == fingerprint => pool,
            Some(_) => {
                let probe = self
                    .shared
                    .connect(&key.upstream, credentials, origin)
                    .await?;
                tokio::spawn(probe.logout());
                info!(user = %key.username, "credentials changed; rebuilding the user's pool");
                self.replace(key, credentials, fingerprint)
            }
            None => self.insert_if_absent(key, credentials, fingerprint),
        };
        user_pool.pool.manager().offer(credentials);
        user_pool
            .last_used
            .store(self.shared.now(), Ordering::Relaxed);
        if origin.is_some() {
            *user_pool
                .pool
                .manager()
                .origin
                .lock()
                .expect("origin poisoned") = origin;
        }
        let started = Instant::now();
        let got = self.wait_for_session(&user_pool, started).await;
        metrics::histogram!(names::POOL_WAIT).record(started.elapsed().as_secs_f64());
        match got {
            Ok(obj) => Ok(Session {
                obj: Some(obj),
                shared: self.shared.clone(),
            }),
            Err(e) => {
                let err = match e {
                    PoolError::Backend(e) => e,
                    PoolError::Timeout(managed::TimeoutType::Wait) => {
                        metrics::counter!(names::POOL_WAIT_TIMEOUTS).increment(1);
                        ImapError::PoolExhausted
                    }
                    PoolError::Timeout(_) => ImapError::Timeout,
                    // Closed under a waiting request because the server refused the pool's
                    // password: the request gets that refusal.
                    PoolError::Closed => match self.shared.check_refused(credentials) {
                        Err(refused) => refused,
                        Ok(()) => ImapError::Unavailable("the session pool was closed".into()),
                    },
                    PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                        ImapError::Protocol("session pool misconfigured".into())
                    }
                };
                match err {
                    ImapError::AuthenticationFailed => self.close_refused(key, &user_pool),
                    ImapError::TokenRefused(_) => self.remove_if_same(key, &user_pool),
                    _ => {}
                }
                Err(err)
            }
        }
    }

    /// Waits for a session of `user_pool` for a request that started waiting at `started`:
    /// up to the wait timeout, and while sessions of the pool are still logging in up to the
    /// connect timeout longer. Once the request logs in or checks a session itself, only
    /// those steps' own time limits apply.
    async fn wait_for_session(
        &self,
        user_pool: &UserPool,
        started: Instant,
    ) -> std::result::Result<Object<SessionManager>, PoolError<ImapError>> {
        /// How often a request past its wait looks whether logins it waits for are still on.
        const LOOK_AGAIN: Duration = Duration::from_millis(100);
        let settings = &self.shared.settings;
        let wait = Arc::new(RequestWait {
            deadline: started + settings.wait_timeout,
            working: AtomicBool::new(false),
        });
        let timeouts = Timeouts {
            // Waiting is bounded below; logging in by `Connection::open`'s own connect timeout.
            wait: None,
            create: None,
            recycle: Some(settings.limits.command_timeout),
        };
        let get = REQUEST_WAIT.scope(wait.clone(), user_pool.pool.timeout_get(&timeouts));
        tokio::pin!(get);
        let longest = wait.deadline + settings.limits.connect_timeout;
        let mut look_at = wait.deadline;
        loop {
            tokio::select! {
                got = &mut get => return got,
                () = tokio::time::sleep_until(look_at.into()) => {
                    if wait.working.load(Ordering::SeqCst) {
                        return get.await;
                    }
                    let now = Instant::now();
                    let logging_in = user_pool.pool.manager().creating.load(Ordering::SeqCst) > 0;
                    if !logging_in || now >= longest {
                        return Err(PoolError::Timeout(managed::TimeoutType::Wait));
                    }
                    look_at = (now + LOOK_AGAIN).min(longest);
                }
            }
        }
    }

    /// Checks `credentials` with a fresh login, whatever sessions the user has: a warm pool
    /// proves nothing about the credentials a caller logs in with now, and neither does a
    /// refusal remembered from earlier. The session it opens becomes the user's first pooled
    /// one when the user has none; otherwise it logs out, and the credentials are taken for the
    /// user's new sessions (a changed password replaces the pool, a newer access token is used
    /// from now on). A refused password that the user's pool was built with closes the pool.
    pub async fn login(
        &self,
        key: &UserKey,
        credentials: &Credentials,
        origin: Option<IpAddr>,
    ) -> Result<()> {
        let existing = self
            .users
            .lock()
            .expect("pool map poisoned")
            .get(key)
            .cloned();
        let Some(existing) = existing else {
            self.shared
                .refused
                .invalidate(&self.shared.secret_fingerprint(credentials));
            drop(self.session_from(key, credentials, origin).await?);
            return Ok(());
        };
        let fingerprint = self.shared.fingerprint(credentials);
        let probe = match self
            .shared
            .connect(&key.upstream, credentials, origin)
            .await
        {
            Ok(probe) => probe,
            Err(e) => {
                if matches!(e, ImapError::AuthenticationFailed)
                    && existing.fingerprint == fingerprint
                {
                    self.close_refused(key, &existing);
                }
                return Err(e);
            }
        };
        tokio::spawn(probe.logout());
        if existing.fingerprint == fingerprint {
            existing.pool.manager().adopt(credentials);
        } else {
            info!(user = %key.username, "credentials changed; rebuilding the user's pool");
            self.replace(key, credentials, fingerprint);
        }
        Ok(())
    }

    /// Whether `upstream` accepts a TCP connection within `timeout`: tells an outage from a
    /// server that answers, however slowly.
    pub async fn reachable(&self, upstream: &Upstream, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            let addr = resolve(upstream).await.ok()?;
            tokio::net::TcpStream::connect(addr).await.ok()
        })
        .await
        .ok()
        .flatten()
        .is_some()
    }

    /// The credentials a new connection of `key` should log in with: `offered`, or a newer
    /// access token the user's pool has been given since.
    pub fn newest_credentials(&self, key: &UserKey, offered: &Credentials) -> Credentials {
        let pool = self
            .users
            .lock()
            .expect("pool map poisoned")
            .get(key)
            .cloned();
        match pool {
            Some(pool) => {
                pool.pool.manager().offer(offered);
                let current = pool.pool.manager().credentials();
                if current.is_access_token() == offered.is_access_token() {
                    current
                } else {
                    offered.clone()
                }
            }
            None => offered.clone(),
        }
    }

    /// Logs out and forgets every session of `key` (sign-out).
    pub fn close_user(&self, key: &UserKey) {
        let removed = self.users.lock().expect("pool map poisoned").remove(key);
        if let Some(pool) = removed {
            pool.shut_down();
        }
    }

    /// Closes every user's pool and logs out its sessions, returning when the LOGOUTs are done
    /// (each takes at most two seconds; they run side by side). For shutdown, once no request
    /// holds a session: one still checked out is dropped, without LOGOUT, when it comes back.
    pub async fn close_all(&self) {
        let pools: Vec<_> = self
            .users
            .lock()
            .expect("pool map poisoned")
            .drain()
            .map(|(_, p)| p)
            .collect();
        let idle = pools.iter().flat_map(|pool| pool.close());
        futures::future::join_all(idle.map(|obj| obj.conn.logout())).await;
    }

    /// Current pool sizes.
    pub fn stats(&self) -> PoolStats {
        let users = self.users.lock().expect("pool map poisoned");
        let mut stats = PoolStats {
            users: users.len(),
            ..PoolStats::default()
        };
        for pool in users.values() {
            let status = pool.pool.status();
            stats.sessions += status.size;
            stats.idle += status.available;
            stats.waiting += status.waiting;
        }
        stats
    }

    /// Opens a connection outside the command pool (for an IDLE watcher), within the user's
    /// connection budget: at most `max_connections_per_user - max_per_user` of them.
    pub async fn open_dedicated(
        &self,
        key: &UserKey,
        credentials: &Credentials,
    ) -> Result<DedicatedConnection> {
        let budget = self.budget(key);
        let credentials = self.newest_credentials(key, credentials);
        self.shared.check_refused(&credentials)?;
        let (user, watcher) = self
            .shared
            .user_permits(&budget.all, Some(&budget.watchers))?;
        let global = self
            .shared
            .global_permit(key, request_deadline(&self.shared.settings))
            .await?;
        let conn = self
            .shared
            .connect(&key.upstream, &credentials, None)
            .await?;
        metrics::counter!(names::IMAP_SESSIONS_OPENED, "purpose" => "watcher").increment(1);
        Ok(DedicatedConnection {
            conn,
            _permits: Permits {
                _global: global,
                _user: user,
                _watcher: watcher,
            },
        })
    }

    fn budget(&self, key: &UserKey) -> Arc<UserBudget> {
        let settings = self.shared.settings;
        self.budgets
            .lock()
            .expect("budget map poisoned")
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(UserBudget {
                    all: Arc::new(Semaphore::new(settings.max_connections_per_user)),
                    watchers: Arc::new(Semaphore::new(
                        settings
                            .max_connections_per_user
                            .saturating_sub(settings.max_per_user),
                    )),
                })
            })
            .clone()
    }

    fn build(
        &self,
        key: &UserKey,
        credentials: &Credentials,
        fingerprint: [u8; 32],
    ) -> Arc<UserPool> {
        let settings = self.shared.settings;
        let manager = SessionManager {
            shared: self.shared.clone(),
            key: key.clone(),
            credentials: std::sync::Mutex::new(credentials.clone()),
            names_epoch: Arc::new(AtomicU64::new(0)),
            budget: self.budget(key).all.clone(),
            cache: self.shared.cache.as_ref().map(|c| c.scope(key)),
            origin: std::sync::Mutex::new(None),
            creating: AtomicUsize::new(0),
            login_turn: tokio::sync::Mutex::new(()),
            logins_succeeded: AtomicU64::new(0),
        };
        // Requests wait with timeouts of their own (`wait_for_session`).
        let pool = managed::Pool::builder(manager)
            .max_size(settings.max_per_user)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("pool settings are valid");
        Arc::new(UserPool {
            pool,
            fingerprint,
            last_used: AtomicU64::new(self.shared.now()),
        })
    }

    fn insert_if_absent(
        &self,
        key: &UserKey,
        credentials: &Credentials,
        fingerprint: [u8; 32],
    ) -> Arc<UserPool> {
        let mut users = self.users.lock().expect("pool map poisoned");
        users
            .entry(key.clone())
            .or_insert_with(|| self.build(key, credentials, fingerprint))
            .clone()
    }

    fn replace(
        &self,
        key: &UserKey,
        credentials: &Credentials,
        fingerprint: [u8; 32],
    ) -> Arc<UserPool> {
        let fresh = self.build(key, credentials, fingerprint);
        let old = self
            .users
            .lock()
            .expect("pool map poisoned")
            .insert(key.clone(), fresh.clone());
        if let Some(old) = old {
            old.shut_down();
        }
        fresh
    }

    /// Closes `pool`, whose password the server refused, if it is still `key`'s: its sessions
    /// logged in with a password that no longer works, and the bridge stops using them.
    fn close_refused(&self, key: &UserKey, pool: &Arc<UserPool>) {
        let removed = {
            let mut users = self.users.lock().expect("pool map poisoned");
            if users.get(key).is_some_and(|p| Arc::ptr_eq(p, pool)) {
                users.remove(key)
            } else {
                None
            }
        };
        if let Some(pool) = removed {
            info!(user = %key.username, "the server refused the user's password; closing the pool");
            pool.shut_down();
        }
    }

    fn remove_if_same(&self, key: &UserKey, pool: &Arc<UserPool>) {
        let mut users = self.users.lock().expect("pool map poisoned");
        if users.get(key).is_some_and(|p| Arc::ptr_eq(p, pool)) && pool.pool.status().size == 0 {
            users.remove(key);
        }
    }
}

/// Forgets budgets of users with no connection left.
fn forget_unused_budgets(
    budgets: &Mutex<HashMap<UserKey, Arc<UserBudget>>>,
    settings: &PoolSettings,
) {
    budgets.lock().expect("budget map poisoned").retain(|_, b| {
        Arc::strong_count(b) > 1 || b.all.available_permits() < settings.max_connections_per_user
    });
}

/// Logs out sessions idle past the timeout and forgets pools nobody used for that long.
fn reap(users: &Mutex<HashMap<UserKey, Arc<UserPool>>>, shared: &Shared) {
    let idle_timeout = shared.settings.idle_timeout;
    let idle_ms = u64::try_from(idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let now = shared.now();
    let mut to_logout = Vec::new();
    {
        let mut users = users.lock().expect("pool map poisoned");
        users.retain(|key, pool| {
            let expired = pool.pool.retain(|_, m| m.last_used() < idle_timeout);
            to_logout.extend(expired.removed);
            let status = pool.pool.status();
            let unused = now.saturating_sub(pool.last_used.load(Ordering::Relaxed)) >= idle_ms;
            let keep = status.size > 0 || status.waiting > 0 || !unused;
            if !keep {
                debug!(user = %key.username, "dropping idle user pool");
                pool.pool.close();
            }
            keep
        });
    }
    for obj in to_logout {
        metrics::counter!(names::POOL_SESSIONS_CLOSED, "reason" => "idle").increment(1);
        tokio::spawn(obj.conn.logout());
    }
}
