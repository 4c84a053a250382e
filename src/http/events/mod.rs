//! Server-sent events: `GET /v1/events` and `POST /v1/events/ticket`.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::json;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod payload;

pub use payload::JsonFormat;
use payload::{
    AuthExpiredEvent, MailboxResetEvent, MessageExpungedEvent, MessageFlagsEvent, MessageNewEvent,
    StreamEndEvent,
};

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::AuthUser;
use super::schema::MailboxNameSchema;
use crate::auth::TokenClaims;
use crate::events::{Ending, SubscribeError};
use crate::imap::encode::MailboxName;
use crate::imap::{ImapError, UserKey};
use crate::telemetry::names;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(events))
        .routes(routes!(ticket))
}

/// Most mailboxes one stream may watch.
const MAX_MAILBOXES: usize = 16;

/// A ticket for one EventSource connection.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"ticket": "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJ0eXAiOiJ0aWNrZXQifQ.c2ln", "expires_in": 60}))]
pub struct Ticket {
    /// Pass as `?ticket=` to `GET /v1/events` within `expires_in` seconds. Once used, it is
    /// accepted again only with a `Last-Event-ID` the bridge issued to the same user (the
    /// EventSource reconnecting), while the access token it was issued under lives.
    pub ticket: String,
    /// Seconds within which the ticket must open its stream.
    pub expires_in: u64,
}

/// Issues a short-lived ticket for one EventSource, because a browser's EventSource cannot
/// send an `Authorization` header.
#[utoipa::path(
    post,
    path = "/v1/events/ticket",
    tag = "events",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A ticket for one EventSource: its first use within 60 seconds, then that EventSource's reconnections.", body = Ticket),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn ticket(State(state): State<AppState>, user: AuthUser) -> Json<Ticket> {
    let issued = state.tokens.issue_ticket(&user.claims);
    Json(Ticket {
        ticket: issued.token,
        expires_in: issued.expires_in,
    })
}

/// One event of the stream as the document describes it: OpenAPI 3.1 has no per-item schema
/// for `text/event-stream`, so, as tools such as Schemathesis read it, the response schema is
/// that of one parsed event (`event`, `id`, `data`), one branch per event type, with `data`
/// JSON whose shape is given by `contentSchema`.
struct StreamEvent;

impl PartialSchema for StreamEvent {
    fn schema() -> RefOr<Schema> {
        let kinds = [
            ("message.new", MessageNewEvent::name()),
            ("message.flags", MessageFlagsEvent::name()),
            ("message.expunged", MessageExpungedEvent::name()),
            ("mailbox.reset", MailboxResetEvent::name()),
            ("auth.expired", AuthExpiredEvent::name()),
            ("stream.end", StreamEndEvent::name()),
        ];
        let branches: Vec<_> = kinds
            .iter()
            .map(|(event, payload)| {
                json!({
                    "type": "object",
                    "title": event,
                    "required": ["event", "id", "data"],
                    "properties": {
                        "event": {"type": "string", "enum": [event]},
                        "id": {
                            "type": "string",
                            "description": "Send back as `Last-Event-ID` to resume after this event.",
                        },
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {"$ref": format!("#/components/schemas/{payload}")},
                        },
                    },
                })
            })
            .collect();
        serde_json::from_value(json!({
            "description": "One event: `event` names its type, `data` is JSON of the matching \
                payload schema, `id` resumes the stream.",
            "oneOf": branches,
        }))
        .expect("a valid schema")
    }
}

impl ToSchema for StreamEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("StreamEvent")
    }
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        for (name, schema) in [
            (MessageNewEvent::name(), MessageNewEvent::schema()),
            (MessageFlagsEvent::name(), MessageFlagsEvent::schema()),
            (MessageExpungedEvent::name(), MessageExpungedEvent::schema()),
            (MailboxResetEvent::name(), MailboxResetEvent::schema()),
            (AuthExpiredEvent::name(), AuthExpiredEvent::schema()),
            (StreamEndEvent::name(), StreamEndEvent::schema()),
        ] {
            schemas.push((name.into_owned(), schema));
        }
        MessageNewEvent::schemas(schemas);
    }
}

/// A stream of changes to the given mailboxes, fed by IMAP IDLE: `message.new` (with the
/// summary), `message.flags`, `message.expunged`, `mailbox.reset` (list again). Every event has
/// an `id`, signed by the bridge; reconnect with `Last-Event-ID` and the missed events are
/// replayed from the IMAP server, exactly once and in order, or `mailbox.reset` is sent when
/// that is impossible, when the id was not issued by the bridge (to this user), or when more
/// than `IMAP_BRIDGE_SSE_MAX_REPLAY` changes were missed. When the IMAP server refuses the
/// OAuth access token the bridge token carries, the stream ends with `auth.expired`: refresh
/// it (`POST /v1/auth/refresh`) and reconnect with the new token and `Last-Event-ID`. Other
/// ends are `stream.end` with a problem code: the mailbox was deleted or renamed
/// (`mailbox_not_found`), the IMAP server no longer accepts the credentials or the bridge
/// token was revoked (logout) or expired (`unauthorized`), or the IMAP server stayed
/// unreachable (`upstream_unavailable`, with a `retry:`). The last event keeps the previous
/// event's id. Comments keep the connection alive. Authenticate with `Authorization: Bearer`
/// or, from a browser's EventSource, `?ticket=` from `POST /v1/events/ticket`; the first frame
/// carries an id and no data, so an EventSource that loses the stream before its first event
/// still reconnects with `Last-Event-ID`, which its spent ticket then accepts. When the bridge
/// shuts down, the stream ends with a comment and a `retry:` field of one to five seconds:
/// EventSource then reconnects by itself, through the load balancer to another replica, and
/// resumes with `Last-Event-ID`; other clients should do the same.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    security(("bearer" = []), ()),
    params(
        ("mailbox" = Option<Vec<MailboxNameSchema>>, Query, description = "Mailbox to watch; repeat for several (at most 16). Default INBOX.", explode = true),
        ("ticket" = Option<String>, Query, description = "A ticket from `POST /v1/events/ticket`, instead of the Authorization header."),
        ("Last-Event-ID" = Option<String>, Header, description = "The last event id received, to resume after it. An id the bridge did not issue (to this user) starts the stream with `mailbox.reset` for every mailbox, without asking the IMAP server anything."),
    ),
    responses(
        (status = 200, description = "`text/event-stream`; the schema is that of one event (see `StreamEvent`).", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "Bad mailbox name or too many mailboxes (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token; a ticket used again without a `Last-Event-ID` the bridge issued to its user, or whose access token expired or was revoked (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox (`mailbox_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many event streams or watched mailboxes for this user or the bridge (`rate_limited`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn events(State(state): State<AppState>, parts: Parts) -> ApiResult<impl IntoResponse> {
    let mut mailboxes = Vec::new();
    let mut ticket = None;
    super::extract::check_query_utf8(parts.uri.query())?;
    for (key, value) in form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "mailbox" => {
                let name = MailboxName::new(&value)
                    .map_err(|e| ApiError::invalid(format!("`mailbox`: {e}")))?;
                if !mailboxes.contains(&name) {
                    mailboxes.push(name);
                }
            }
            "ticket" if ticket.is_none() => ticket = Some(value.into_owned()),
            other => {
                return Err(ApiError::invalid(format!(
                    "Unknown query parameter `{}`.",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    if mailboxes.len() > MAX_MAILBOXES {
        return Err(ApiError::invalid(format!(
            "At most {MAX_MAILBOXES} mailboxes per stream."
        )));
    }
    if mailboxes.is_empty() {
        mailboxes.push(MailboxName::new("INBOX")?);
    }
    let last_event_id = last_event_id(&parts.headers);
    let claims = match ticket {
        // A spent ticket still serves its EventSource's own reconnections, which carry the
        // Last-Event-ID of the stream it opened.
        Some(ticket) => state.tokens.redeem_ticket(&ticket, |claims| {
            let user = super::extract::upstream_of(claims, &state).map(|upstream| UserKey {
                upstream,
                username: claims.subject.clone(),
            });
            match (user, &last_event_id) {
                (Ok(user), Some(id)) => state.events.issued(&user, id),
                _ => false,
            }
        })?,
        None => AuthUser::from_headers(&parts.headers, &state)?.claims,
    };
    let user = UserKey {
        upstream: super::extract::upstream_of(&claims, &state)?,
        username: claims.subject.clone(),
    };
    let subscription = state
        .events
        .subscribe(
            &user,
            &claims.credentials,
            mailboxes,
            last_event_id.as_deref(),
            token_end(&state, &claims),
        )
        .await
        .map_err(|e| match e {
            SubscribeError::TooManySubscribers => ApiError::rate_limited(
                "Too many event streams are open; close one or retry later.",
                5,
            ),
            SubscribeError::Imap(ImapError::PoolExhausted) => {
                ApiError::rate_limited("Too many mailboxes are being watched for this user.", 30)
            }
            SubscribeError::Imap(e) => ApiError::from(e),
        })?;
    // The first frame sets the reconnection delay and, with no data (so no event is
    // dispatched), the id EventSource sends back as Last-Event-ID if the stream drops before
    // its first event.
    let first = Event::default()
        .retry(Duration::from_secs(2))
        .id(subscription.first_id);
    let first = futures::stream::once(async { Ok::<_, Infallible>(first) });
    let ended = Arc::new(AtomicBool::new(false));
    let events = subscription.events.map({
        let ended = ended.clone();
        move |e| {
            metrics::counter!(names::SSE_EVENTS_DELIVERED, "type" => e.kind).increment(1);
            if e.last {
                ended.store(true, Ordering::Relaxed);
            }
            let mut event = Event::default().event(e.kind).id(e.id).data(&*e.data);
            if let Some(retry) = e.retry {
                event = event.retry(retry);
            }
            Ok::<_, Infallible>(event)
        }
    });
    // Otherwise the event stream ends only when the bridge shuts down.
    let farewell = futures::stream::once(async move {
        (!ended.load(Ordering::Relaxed)).then(|| {
            Ok::<_, Infallible>(
                Event::default()
                    .comment(SHUTDOWN_COMMENT)
                    .retry(reconnect_after_shutdown()),
            )
        })
    })
    .filter_map(futures::future::ready);
    Ok(Sse::new(first.chain(events).chain(farewell))
        .keep_alive(KeepAlive::new().interval(state.config.sse_keepalive())))
}

/// Completes when the token the stream was opened with is revoked on this replica (logout;
/// for a ticket, its access token's) or expires (for a ticket, when its access token does).
fn token_end(state: &AppState, claims: &TokenClaims) -> BoxFuture<'static, Ending> {
    let state = state.clone();
    let claims = claims.clone();
    let mut revocations = state.tokens.revocations();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expired = tokio::time::sleep(Duration::from_secs(
        claims.session_expires_at.saturating_sub(now),
    ));
    Box::pin(async move {
        tokio::pin!(expired);
        loop {
            if state.tokens.is_revoked(&claims) {
                return Ending {
                    code: "unauthorized",
                    detail:
                        "The token this stream was opened with was revoked (logout); log in again."
                            .into(),
                };
            }
            tokio::select! {
                () = &mut expired => {
                    return Ending {
                        code: "unauthorized",
                        detail: "The token this stream was opened with expired; log in again (or refresh) and reconnect with Last-Event-ID.".into(),
                    };
                }
                changed = revocations.changed() => {
                    if changed.is_err() {
                        expired.as_mut().await;
                    }
                }
            }
        }
    })
}

/// The comment that ends every stream when the bridge shuts down, with a `retry:` field.
pub const SHUTDOWN_COMMENT: &str = "the bridge is shutting down; reconnect with Last-Event-ID";

/// The reconnection delay sent as a stream ends at shutdown: soon, since nothing is lost, but
/// spread over a few seconds so that the clients of a stopping replica do not all reconnect
/// to the others (each reconnect may start an IDLE watcher) at the same instant.
fn reconnect_after_shutdown() -> Duration {
    Duration::from_millis(rand::random_range(1000..5000))
}

/// The `Last-Event-ID` header; one that is not even text is kept as an id that matches no
/// position, so the stream starts with `mailbox.reset` like for any id the bridge did not issue.
fn last_event_id(headers: &HeaderMap) -> Option<String> {
    headers.get("last-event-id").map(|v| {
        v.to_str()
            .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned())
    })
}
