//! Per-user pools of logged-in IMAP sessions, capped per user and in total.
//!
//! A user's pool is created on first use and keyed by (server, login name). Sessions are checked
//! with NOOP when they come back from a long rest, logged out when unused for the idle timeout,
//! and discarded whenever a command did not complete cleanly. A session keeps its selected
//! mailbox, so a warm request costs no extra SELECT.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info};

use super::cache::{CacheScope, SummaryCache};
use super::connection::{Connection, Credentials, Secret, SessionLimits};
use super::error::{ImapError, Result};
use super::meter;
use super::transport::{Transport, Upstream};
use crate::telemetry::names;

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
    /// A request waits this long for a free session.
    pub wait_timeout: Duration,
    /// A session unused for longer than this is checked with NOOP before reuse.
    pub recheck_after: Duration,
    /// Connect and command time limits.
    pub limits: SessionLimits,
}

/// A pooled session, checked out for one request; returns to its pool when dropped.
pub struct Session(Object<SessionManager>);

impl Deref for Session {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0.conn
    }
}

impl DerefMut for Session {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0.conn
    }
}

/// A logged-in connection together with its shares of the global and per-user budgets.
pub struct PooledConnection {
    conn: Connection,
    _permits: Permits,
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
    upstream: Upstream,
    /// What new sessions log in with: for an access token, the newest one offered.
    credentials: std::sync::Mutex<Credentials>,
    names_epoch: Arc<AtomicU64>,
    budget: Arc<Semaphore>,
    cache: Option<CacheScope>,
    /// The address of the last client that asked for a session, passed on with IMAP ID.
    origin: std::sync::Mutex<Option<IpAddr>>,
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
        let permits = self.shared.permits(&self.budget, None)?;
        let origin = *self.origin.lock().expect("origin poisoned");
        let credentials = self.credentials();
        let mut conn = self
            .shared
            .connect(&self.upstream, &credentials, origin)
            .await?;
        conn.share_names_epoch(self.names_epoch.clone());
        if let Some(cache) = &self.cache {
            conn.attach_cache(cache.clone());
        }
        metrics::counter!(names::IMAP_SESSIONS_OPENED, "purpose" => "pool").increment(1);
        Ok(PooledConnection {
            conn,
            _permits: permits,
        })
    }

    async fn recycle(
        &self,
        obj: &mut PooledConnection,
        metrics: &Metrics,
    ) -> RecycleResult<ImapError> {
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

struct Shared {
    transport: Transport,
    cache: Option<SummaryCache>,
    settings: PoolSettings,
    global: Arc<Semaphore>,
    fingerprint_key: [u8; 32],
    started: Instant,
}

impl Shared {
    fn permits(&self, user: &Arc<Semaphore>, watcher: Option<&Arc<Semaphore>>) -> Result<Permits> {
        let global = self.global.clone().try_acquire_owned().map_err(|_| {
            ImapError::Unavailable("the bridge's connection limit is reached".into())
        })?;
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
        Ok(Permits {
            _global: global,
            _user: user,
            _watcher: watcher,
        })
    }

    async fn connect(
        &self,
        upstream: &Upstream,
        credentials: &Credentials,
        origin: Option<IpAddr>,
    ) -> Result<Connection> {
        let addr = resolve(upstream).await.inspect_err(meter::connect_failed)?;
        Connection::open(
            &self.transport,
            upstream,
            addr,
            credentials,
            origin,
            self.settings.limits,
        )
        .await
        .inspect_err(meter::connect_failed)
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
    users: Arc<Mutex<HashMap<UserKey, Arc<UserPool>>>>,
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
        let pool = SessionPool {
            shared: Arc::new(Shared {
                transport,
                cache,
                settings,
                global: Arc::new(Semaphore::new(settings.max_total)),
                fingerprint_key,
                started: Instant::now(),
            }),
            users: Arc::new(Mutex::new(HashMap::new())),
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
        let got = user_pool.pool.get().await;
        metrics::histogram!(names::POOL_WAIT).record(started.elapsed().as_secs_f64());
        match got {
            Ok(obj) => Ok(Session(obj)),
            Err(e) => {
                let err = match e {
                    PoolError::Backend(e) => e,
                    PoolError::Timeout(managed::TimeoutType::Wait) => {
                        metrics::counter!(names::POOL_WAIT_TIMEOUTS).increment(1);
                        ImapError::PoolExhausted
                    }
                    PoolError::Timeout(_) => ImapError::Timeout,
                    PoolError::Closed => {
                        ImapError::Unavailable("the session pool was closed".into())
                    }
                    PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                        ImapError::Protocol("session pool misconfigured".into())
                    }
                };
                if matches!(
                    err,
                    ImapError::AuthenticationFailed | ImapError::TokenRefused(_)
                ) {
                    self.remove_if_same(key, &user_pool);
                }
                Err(err)
            }
        }
    }

    /// Checks `credentials` with a fresh login, whatever sessions the user has: a warm pool
    /// proves nothing about the credentials a caller logs in with now. The session it opens
    /// becomes the user's first pooled one when the user has none; otherwise it logs out, and
    /// the credentials are taken for the user's new sessions (a changed password replaces the
    /// pool, a newer access token is used from now on).
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
            drop(self.session_from(key, credentials, origin).await?);
            return Ok(());
        };
        let probe = self
            .shared
            .connect(&key.upstream, credentials, origin)
            .await?;
        tokio::spawn(probe.logout());
        let fingerprint = self.shared.fingerprint(credentials);
        if existing.fingerprint == fingerprint {
            existing.pool.manager().adopt(credentials);
        } else {
            info!(user = %key.username, "credentials changed; rebuilding the user's pool");
            self.replace(key, credentials, fingerprint);
        }
        Ok(())
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
        let permits = self.shared.permits(&budget.all, Some(&budget.watchers))?;
        let credentials = self.newest_credentials(key, credentials);
        let conn = self
            .shared
            .connect(&key.upstream, &credentials, None)
            .await?;
        metrics::counter!(names::IMAP_SESSIONS_OPENED, "purpose" => "watcher").increment(1);
        Ok(DedicatedConnection {
            conn,
            _permits: permits,
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

    /// Opens a session outside any pool, for a one-off credential check.
    pub async fn verify(&self, upstream: &Upstream, credentials: &Credentials) -> Result<()> {
        let conn = self.shared.connect(upstream, credentials, None).await?;
        tokio::spawn(conn.logout());
        Ok(())
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
            upstream: key.upstream.clone(),
            credentials: std::sync::Mutex::new(credentials.clone()),
            names_epoch: Arc::new(AtomicU64::new(0)),
            budget: self.budget(key).all.clone(),
            cache: self.shared.cache.as_ref().map(|c| c.scope(key)),
            origin: std::sync::Mutex::new(None),
        };
        let pool = managed::Pool::builder(manager)
            .max_size(settings.max_per_user)
            .wait_timeout(Some(settings.wait_timeout))
            .create_timeout(Some(settings.limits.connect_timeout))
            .recycle_timeout(Some(settings.limits.command_timeout))
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
