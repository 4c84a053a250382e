//! The HTTP API: state, router, middleware, and one module per resource.

pub mod allowlist;
pub mod auth;
pub mod changes;
pub mod docs;
pub mod downloads;
pub mod error;
pub mod events;
pub mod extract;
pub mod flags;
pub mod mailboxes;
pub mod messages;
pub mod metrics;
pub mod moves;
pub mod ops;
pub mod schema;
pub mod threads;
pub mod throttle;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{
    Extensions, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header,
};
use tower::ServiceBuilder;
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::TokenService;
use crate::config::Config;
use crate::imap::{SessionPool, Upstream};
use crate::mail::structure::WalkLimits;
use docs::SecuritySchemes;
use error::ApiError;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

/// What [`AppState`] holds.
pub struct AppInner {
    /// Settings.
    pub config: Config,
    /// Token issuing and checking.
    pub tokens: TokenService,
    /// IMAP sessions of every user.
    pub pools: SessionPool,
    /// The IMAP server users log in to.
    pub upstream: Upstream,
    /// MIME structure limits.
    pub walk_limits: WalkLimits,
    /// Readiness probe state.
    pub readiness: ops::Readiness,
    /// IDLE watchers and event subscriptions.
    pub events: crate::events::EventHub,
    /// Failed-login counters.
    pub throttle: throttle::LoginThrottle,
    /// Servers a caller may choose at login.
    pub allowed_servers: allowlist::AllowedServers,
    /// Thread lists and the headers they are built from; `None` when disabled.
    pub threads: Option<crate::imap::thread_cache::ThreadCache>,
}

impl AppState {
    /// Wraps the shared state.
    pub fn new(inner: AppInner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// Header carrying the request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The OpenAPI document's static part; paths are added by the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "imap-bridge",
        description = "IMAP over HTTP: mailboxes, header lists, messages, attachments, flags and \
                       real-time events of any IMAP server, as JSON.\n\nErrors are \
                       `application/problem+json` (RFC 9457) with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&SecuritySchemes),
    components(schemas(
        schema::BinarySchema,
        schema::MailboxNameSchema,
        schema::UidSchema,
        schema::FlagSchema,
        schema::FlagListSchema,
        schema::PartIdSchema,
        schema::SyncStateSchema,
        schema::CursorSchema,
        schema::ThreadIdSchema,
    )),
    tags(
        (name = "auth", description = "Log in and out."),
        (name = "mailboxes", description = "Folders, their roles and counts."),
        (name = "messages", description = "Header lists, messages, raw downloads and attachments; upload, delete, move and copy."),
        (name = "threads", description = "Conversations: a mailbox's messages threaded by their references, newest conversation first."),
        (name = "flags", description = "Read, flagged and other flags, one message or many."),
        (name = "sync", description = "What changed since a state, for clients that were offline."),
        (name = "events", description = "Real-time changes as server-sent events, fed by IMAP IDLE."),
        (name = "operations", description = "Health, readiness, metrics and documentation."),
    )
)]
pub struct ApiDoc;

/// All routes with their OpenAPI description.
pub fn api_router() -> OpenApiRouter<AppState> {
    routes(true)
}

/// The routes, with `/metrics` or without it (when an internal listener serves it).
fn routes(metrics_on_api_port: bool) -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(mailboxes::router())
        .merge(messages::router())
        .merge(threads::router())
        .merge(downloads::router())
        .merge(flags::router())
        .merge(moves::router())
        .merge(changes::router())
        .merge(events::router())
        .merge(ops::router());
    if metrics_on_api_port {
        router.merge(metrics::router())
    } else {
        router
    }
}

/// The generated OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = api_router().split_for_parts();
    api
}

/// The complete application: routes, docs, fallbacks and middleware.
pub fn app(state: AppState) -> Router {
    // Series are recorded from here on; the recorder is the process's, shared by every app.
    crate::telemetry::metrics_handle();
    let (router, api) = routes(state.config.metrics_listen.is_none()).split_for_parts();
    let cors = cors_layer(&state.config);
    let json_limit = state.config.max_json_size;
    router
        .merge(docs::router(api))
        .fallback(|| async { ApiError::route_not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(state)
        .layer(DefaultBodyLimit::max(json_limit))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }).on_response(DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(LatencyUnit::Micros)))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(|_| {
                    tracing::error!("handler panicked");
                    axum::response::IntoResponse::into_response(ApiError::internal())
                }))
                .layer(cors)
                .layer(CompressionLayer::new().compress_when(compressible())),
        )
        .layer(axum::middleware::from_fn(metrics::track))
}

/// Which responses are compressed: JSON and docs, as tower-http decides by default (not event
/// streams, images or tiny bodies), but never a download. A download keeps its
/// `Content-Length`, `Accept-Ranges` and byte ranges, which compression would drop, so that
/// browsers show progress and resume; attachments are mostly compressed formats anyway.
fn compressible() -> impl Predicate {
    DefaultPredicate::new().and(
        |_: StatusCode, _: Version, headers: &HeaderMap, _: &Extensions| {
            !headers.contains_key(header::CONTENT_DISPOSITION)
                && !headers.contains_key(header::ACCEPT_RANGES)
                && !headers.contains_key(header::CONTENT_RANGE)
        },
    )
}

fn cors_layer(config: &Config) -> CorsLayer {
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o.trim()).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            header::RANGE,
            REQUEST_ID,
        ])
        .expose_headers([
            REQUEST_ID,
            header::ETAG,
            header::CONTENT_RANGE,
            header::RETRY_AFTER,
            header::CONTENT_DISPOSITION,
        ])
        .max_age(Duration::from_secs(600))
}
