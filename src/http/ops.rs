//! Operations endpoints: `GET /healthz` (the process answers) and `GET /readyz` (the IMAP
//! server is reachable).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use crate::imap::pool::resolve;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// Probe answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// Always `ok` when answered with 200.
    pub status: &'static str,
}

/// How long a readiness result is reused, so probes cannot hammer the IMAP server.
const READY_CACHE: Duration = Duration::from_secs(2);

/// Readiness probe state: the last upstream check and whether the bridge is shutting down.
#[derive(Default)]
pub struct Readiness {
    last: Mutex<Option<(Instant, bool)>>,
    draining: std::sync::atomic::AtomicBool,
}

impl Readiness {
    /// Makes `/readyz` fail from now on (graceful shutdown).
    pub fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive.", body = Health))
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The bridge can reach its IMAP server (TCP connect, cached for two seconds) and is not
/// shutting down.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready.", body = Health),
        (status = 503, description = "The IMAP server is unreachable or the bridge is shutting down (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    let readiness = &state.readiness;
    if readiness.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::unavailable("The bridge is shutting down."));
    }
    let cached = *readiness.last.lock().expect("readiness poisoned");
    let ok = match cached {
        Some((at, ok)) if at.elapsed() < READY_CACHE => ok,
        _ => {
            let timeout = state
                .config
                .imap_connect_timeout()
                .min(Duration::from_secs(3));
            let ok = tokio::time::timeout(timeout, async {
                let addr = resolve(&state.upstream).await.ok()?;
                tokio::net::TcpStream::connect(addr).await.ok()
            })
            .await
            .ok()
            .flatten()
            .is_some();
            *readiness.last.lock().expect("readiness poisoned") = Some((Instant::now(), ok));
            ok
        }
    };
    if ok {
        Ok(Json(Health { status: "ok" }))
    } else {
        Err(ApiError::unavailable("The IMAP server is unreachable."))
    }
}
