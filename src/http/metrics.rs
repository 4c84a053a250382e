//! `GET /metrics` (Prometheus text) on the API port, or on a separate internal listener when
//! `IMAP_BRIDGE_METRICS_LISTEN` is set; and the layer that counts and times every request.

use std::collections::BTreeSet;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::info;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use crate::telemetry::{self, names};

/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `/metrics` for the API port.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Metrics in the Prometheus text format.
///
/// HTTP requests by route template and status, latencies, IMAP commands and errors, session
/// pools, event streams, IDLE watchers and logins; labels never carry user or mailbox names.
/// Served here unless the operator moved it to an internal listener
/// (`IMAP_BRIDGE_METRICS_LISTEN`); it needs no token, so block it at the ingress.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4.", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
    )
)]
async fn metrics(State(state): State<AppState>) -> Response {
    exposition(&state)
}

fn exposition(state: &AppState) -> Response {
    // Pool sizes are read when asked for rather than tracked at every checkout.
    let stats = state.pools.stats();
    metrics::gauge!(names::POOL_USERS).set(stats.users as f64);
    metrics::gauge!(names::POOL_SESSIONS).set(stats.sessions as f64);
    metrics::gauge!(names::POOL_SESSIONS_IDLE).set(stats.idle as f64);
    metrics::gauge!(names::POOL_WAITING).set(stats.waiting as f64);
    let text = telemetry::metrics_handle().render();
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        text,
    )
        .into_response()
}

/// Counts and times a request: `route` is the matched route's template, never the path a
/// caller sent, so mailbox names and UIDs never become labels; the time is to the response
/// head, so event streams and downloads do not stretch it.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| intern(p.as_str()));
    let method = method_label(req.method());
    let response = next.run(req).await;
    let status = intern(response.status().as_str());
    metrics::counter!(names::HTTP_REQUESTS, "route" => route, "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(names::HTTP_DURATION, "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "PUT" => "PUT",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// A `'static` copy of a label value from a small fixed set (route templates of this router,
/// status codes), made once, so that recording a request allocates no label text.
fn intern(value: &str) -> &'static str {
    static VALUES: RwLock<BTreeSet<&'static str>> = RwLock::new(BTreeSet::new());
    if let Some(v) = VALUES.read().expect("labels poisoned").get(value) {
        return v;
    }
    let mut values = VALUES.write().expect("labels poisoned");
    match values.get(value) {
        Some(v) => v,
        None => {
            let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
            values.insert(leaked);
            leaked
        }
    }
}

/// The internal listener that serves only `/metrics`, when configured.
pub struct MetricsListener {
    running: Option<(DropGuard, JoinHandle<()>)>,
}

impl MetricsListener {
    /// Binds `IMAP_BRIDGE_METRICS_LISTEN` and serves `/metrics` there until stopped (or
    /// dropped); does nothing when it is unset.
    pub async fn start(state: &AppState) -> anyhow::Result<Self> {
        let Some(addr) = state.config.metrics_listen else {
            return Ok(MetricsListener { running: None });
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("IMAP_BRIDGE_METRICS_LISTEN: cannot listen on {addr}"))?;
        info!(listen = %listener.local_addr()?, "metrics listening");
        let app = Router::new()
            .route("/metrics", get(metrics))
            .fallback(|| async { ApiError::route_not_found() })
            .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
            .with_state(state.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
        Ok(MetricsListener {
            running: Some((stop.drop_guard(), task)),
        })
    }

    /// Stops serving and waits until the address is free again.
    pub async fn stop(self) {
        if let Some((stop, mut task)) = self.running {
            drop(stop);
            // A scraper holding its connection open must not hold up the shutdown.
            if tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }
}
