//! imap-bridge: an IMAP-over-HTTP bridge. Front ends speak JSON and server-sent events; the
//! bridge speaks IMAP to the mail server on each user's behalf.
//!
//! Data flows one way: [`http`] handlers call typed operations of [`imap`], which return typed
//! results that [`mail`] turns into the JSON shapes.

pub mod auth;
pub mod config;
pub mod events;
pub mod http;
pub mod imap;
pub mod keys;
pub mod mail;
pub mod shutdown;
pub mod telemetry;

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tracing::warn;

use crate::config::{Config, Security};
use crate::http::{AppInner, AppState};
use crate::imap::{PoolSettings, SessionLimits, SessionPool, Transport, Upstream};

/// Builds the application state from the configuration, checking it on the way.
pub fn build_state(config: Config) -> anyhow::Result<AppState> {
    let upstream = Upstream {
        host: config.imap_host.clone(),
        port: config.imap_port(),
        security: config.imap_security,
    };
    if upstream.security == Security::Plain
        && !config.allow_plaintext
        && !is_loopback(&upstream.host)
    {
        anyhow::bail!(
            "refusing plaintext IMAP to {}: credentials would cross the network in clear \
             (use tls or starttls, or set IMAP_BRIDGE_ALLOW_PLAINTEXT=true)",
            upstream.host
        );
    }
    let secret = match &config.jwt_secret {
        Some(secret) if secret.len() >= auth::MIN_SECRET_LEN => secret.as_bytes().to_vec(),
        Some(_) => anyhow::bail!(
            "IMAP_BRIDGE_JWT_SECRET must be at least {} bytes",
            auth::MIN_SECRET_LEN
        ),
        None => {
            warn!(
                "IMAP_BRIDGE_JWT_SECRET is not set: using a random key. Tokens will not survive a \
                 restart and other replicas will not accept them."
            );
            let mut key = vec![0u8; 32];
            rand::fill(&mut key[..]);
            key
        }
    };
    if config.pool_max_per_user == 0 || config.pool_max_total == 0 {
        anyhow::bail!("pool sizes must be at least 1");
    }
    if config.max_connections_per_user < config.pool_max_per_user {
        anyhow::bail!(
            "IMAP_BRIDGE_MAX_CONNECTIONS_PER_USER must be at least IMAP_BRIDGE_POOL_MAX_PER_USER"
        );
    }
    shutdown::ShutdownPlan::from_config(&config)?;
    let tls =
        imap::transport::tls_config(config.imap_ca_file.as_deref()).context("TLS configuration")?;
    let limits = SessionLimits {
        connect_timeout: config.imap_connect_timeout(),
        command_timeout: config.imap_command_timeout(),
        guard: imap::guard::GuardLimits::checked(
            config.max_upstream_literal,
            config.max_upstream_line,
        )?,
    };
    let pools = SessionPool::new(
        Transport::new(tls),
        PoolSettings {
            max_per_user: config.pool_max_per_user,
            max_connections_per_user: config.max_connections_per_user,
            max_total: config.pool_max_total,
            idle_timeout: config.pool_idle_timeout(),
            wait_timeout: config.pool_wait_timeout(),
            refusal_ttl: Duration::from_secs(config.login_window),
            recheck_after: Duration::from_secs(30).min(config.pool_idle_timeout()),
            limits,
        },
        (config.cache_size > 0)
            .then(|| imap::cache::SummaryCache::new(config.cache_size * 1024 * 1024)),
    );
    let tokens = auth::TokenService::new(
        &secret,
        &config.jwt_previous_secrets,
        Duration::from_secs(config.token_ttl),
    )
    .map_err(|e| match e {
        auth::KeyError::CurrentTooShort => anyhow::anyhow!("IMAP_BRIDGE_JWT_SECRET: {e}"),
        auth::KeyError::PreviousTooShort(_) => {
            anyhow::anyhow!("IMAP_BRIDGE_JWT_PREVIOUS_SECRETS: {e}")
        }
    })?;
    if config.idle_reissue == 0 || config.idle_reissue >= 29 * 60 {
        anyhow::bail!("IMAP_BRIDGE_IDLE_REISSUE must be between 1 and 1739 seconds (RFC 2177)");
    }
    if config.poll_interval == 0 || config.poll_interval > 3600 {
        anyhow::bail!("IMAP_BRIDGE_POLL_INTERVAL must be between 1 and 3600 seconds");
    }
    if config.download_stall_timeout == 0 {
        anyhow::bail!("IMAP_BRIDGE_DOWNLOAD_STALL_TIMEOUT must be at least 1 second");
    }
    if config.idle_liveness == 0 {
        anyhow::bail!("IMAP_BRIDGE_IDLE_LIVENESS must be at least 1 second");
    }
    let event_ids = events::EventIdKeys::new(
        &secret,
        config.jwt_previous_secrets.iter().map(|s| s.as_bytes()),
    );
    let events = events::EventHub::new(
        pools.clone(),
        events::EventSettings {
            reidle: Duration::from_secs(config.idle_reissue),
            poll: Duration::from_secs(config.poll_interval),
            max_subscribers_per_user: config.sse_max_per_user,
            max_subscribers_total: config.sse_max_total,
            queue: config.sse_queue,
            max_backoff: Duration::from_secs(30),
            start_timeout: config.imap_connect_timeout() + config.imap_command_timeout(),
            max_replay: config.sse_max_replay,
            liveness: Duration::from_secs(config.idle_liveness),
            give_up_after: Duration::from_secs(config.watcher_give_up),
        },
        event_ids,
    );
    Ok(AppState::new(AppInner {
        tokens,
        pools,
        upstream,
        walk_limits: mail::structure::WalkLimits::default(),
        readiness: http::ops::Readiness::default(),
        events,
        allowed_servers: http::allowlist::AllowedServers::parse(&config.allowed_servers)?,
        throttle: http::throttle::LoginThrottle::new(
            config.login_failures_per_user,
            config.login_failures_per_ip,
            Duration::from_secs(config.login_window),
        ),
        config,
    }))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Serves the API on `listener` until `shutdown` completes, then shuts down gracefully
/// ([`shutdown`]: readiness fails, requests in flight finish, sessions log out).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build_state(config)?;
    serve_with_state(state, listener, shutdown).await
}

/// Like [`serve`], with state built by the caller (tests keep a handle on it).
pub async fn serve_with_state(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    shutdown::serve(state, listener, shutdown).await
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
