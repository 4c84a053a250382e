//! Graceful shutdown, in the order load balancers and clients need it.
//!
//! On the signal (SIGTERM) the bridge
//! 1. fails `/readyz` at once and keeps serving for `IMAP_BRIDGE_SHUTDOWN_DELAY`, new
//!    connections included, while load balancers take it out of rotation;
//! 2. ends every event stream with a `retry:` hint (clients reconnect, through the load
//!    balancer to another replica, with `Last-Event-ID`, and miss nothing), closes the listener
//!    and lets the requests in flight finish;
//! 3. cuts off whatever still runs [`LOGOUT_TIME`] before `IMAP_BRIDGE_SHUTDOWN_TIMEOUT`;
//! 4. logs out every pooled session and IDLE watcher, and returns by that deadline.

use std::future::{Future, IntoFuture as _};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::http::AppState;

/// Time kept at the end of a shutdown for LOGOUTs, which run side by side and are each capped
/// at two seconds.
pub const LOGOUT_TIME: Duration = Duration::from_secs(2);

/// The least time requests in flight get between closing the listener and being cut off.
const LEAST_DRAIN: Duration = Duration::from_secs(1);

/// When each step of a shutdown happens, counted from the signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownPlan {
    /// Serving on with `/readyz` failing, before the listener closes.
    pub delay: Duration,
    /// Requests still in flight at this point are cut off.
    pub cut_off: Duration,
    /// The shutdown is over, LOGOUTs included.
    pub deadline: Duration,
}

impl ShutdownPlan {
    /// The plan the settings describe; refuses a timeout that leaves requests in flight no time.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let delay = config.shutdown_delay();
        let deadline = config.shutdown_timeout();
        if deadline < delay + LOGOUT_TIME + LEAST_DRAIN {
            anyhow::bail!(
                "IMAP_BRIDGE_SHUTDOWN_TIMEOUT must exceed IMAP_BRIDGE_SHUTDOWN_DELAY by at least \
                 {} seconds: requests in flight get the difference less {} s for logging out",
                (LOGOUT_TIME + LEAST_DRAIN).as_secs(),
                LOGOUT_TIME.as_secs()
            );
        }
        Ok(ShutdownPlan {
            delay,
            cut_off: deadline - LOGOUT_TIME,
            deadline,
        })
    }
}

/// Serves `state` on `listener`; when `signal` completes, shuts down as the module describes.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    signal: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let plan = ShutdownPlan::from_config(&state.config)?;
    let app = crate::http::app(state.clone());
    // Scrapes go on while the bridge drains: its last figures are worth having.
    let metrics = crate::http::metrics::MetricsListener::start(&state).await?;
    let stop_accepting = CancellationToken::new();
    let mut server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop_accepting.clone().cancelled_owned())
    .into_future();

    tokio::select! {
        served = &mut server => {
            metrics.stop().await;
            return served.context("HTTP server");
        }
        () = signal => {}
    }
    let signalled = Instant::now();
    state.readiness.drain();
    info!(
        delay_s = plan.delay.as_secs(),
        timeout_s = plan.deadline.as_secs(),
        "shutting down: /readyz fails from now on; serving on while load balancers stop routing here"
    );
    let served = tokio::select! {
        served = &mut server => Some(served),
        () = tokio::time::sleep_until(signalled + plan.delay) => None,
    };

    // Event streams never end on their own; each gets its reconnection hint as it ends.
    state.events.shut_down();
    stop_accepting.cancel();
    info!("shutting down: listener closed and event streams ended; finishing requests in flight");
    let served = match served {
        Some(served) => Some(served),
        None => tokio::time::timeout_at(signalled + plan.cut_off, &mut server)
            .await
            .ok(),
    };
    match served {
        Some(served) => served.context("HTTP server")?,
        // The connections' tasks end with the runtime (the binary's `main` returns right after).
        None => warn!("shutting down: requests still in flight are cut off"),
    }

    let logged_out = tokio::time::timeout_at(signalled + plan.deadline, async {
        tokio::join!(state.events.stopped(), state.pools.close_all());
    })
    .await;
    if logged_out.is_err() {
        warn!("shutting down: some IMAP sessions did not log out in time");
    }
    metrics.stop().await;
    info!(
        elapsed_ms = u64::try_from(signalled.elapsed().as_millis()).unwrap_or(u64::MAX),
        "shut down"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn plan(delay: u64, timeout: u64) -> anyhow::Result<ShutdownPlan> {
        let mut config = Config::parse_from(["imap-bridge"]);
        config.shutdown_delay = delay;
        config.shutdown_timeout = timeout;
        ShutdownPlan::from_config(&config)
    }

    #[test]
    fn the_defaults_end_well_inside_kubernetes_grace_period() {
        let defaults = plan(5, 20).expect("defaults are valid");
        assert_eq!(
            defaults,
            ShutdownPlan {
                delay: Duration::from_secs(5),
                cut_off: Duration::from_secs(18),
                deadline: Duration::from_secs(20),
            }
        );
        let command = <Config as clap::CommandFactory>::command();
        let default_of = |id: &str| {
            command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_default_values().first())
                .and_then(|v| v.to_str())
                .map(str::to_owned)
        };
        assert_eq!(
            (default_of("shutdown_delay"), default_of("shutdown_timeout")),
            (Some("5".to_owned()), Some("20".to_owned())),
            "the documented defaults"
        );
    }

    #[test]
    fn a_timeout_that_leaves_requests_no_time_is_refused() {
        assert!(plan(0, 3).is_ok());
        assert!(plan(0, 2).is_err());
        assert!(plan(5, 7).is_err());
        assert!(plan(20, 20).is_err());
    }
}
