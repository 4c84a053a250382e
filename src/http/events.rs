//! Server-sent events: `GET /v1/events` and `POST /v1/events/ticket`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::AuthUser;
use crate::events::{
    MailboxResetEvent, MessageExpungedEvent, MessageFlagsEvent, MessageNewEvent, SubscribeError,
};
use crate::imap::encode::MailboxName;
use crate::imap::{ImapError, UserKey};

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
    /// Pass as `?ticket=` to `GET /v1/events`; valid once, for `expires_in` seconds.
    pub ticket: String,
    /// Seconds until the ticket expires.
    pub expires_in: u64,
}

/// Issues a single-use, short-lived ticket, because a browser's EventSource cannot send an
/// `Authorization` header.
#[utoipa::path(
    post,
    path = "/v1/events/ticket",
    tag = "events",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A ticket, valid once for 60 seconds.", body = Ticket),
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

/// The event types of the stream, for the OpenAPI document (`event:` name → `data:` shape).
#[derive(ToSchema)]
#[allow(dead_code)]
enum StreamEvent {
    /// `event: message.new`
    #[schema(rename = "message.new")]
    MessageNew(Box<MessageNewEvent>),
    /// `event: message.flags`
    #[schema(rename = "message.flags")]
    MessageFlags(MessageFlagsEvent),
    /// `event: message.expunged`
    #[schema(rename = "message.expunged")]
    MessageExpunged(MessageExpungedEvent),
    /// `event: mailbox.reset`
    #[schema(rename = "mailbox.reset")]
    MailboxReset(MailboxResetEvent),
}

/// A stream of changes to the given mailboxes, fed by IMAP IDLE: `message.new` (with the
/// summary), `message.flags`, `message.expunged`, `mailbox.reset` (list again). Every event has
/// an `id`; reconnect with `Last-Event-ID` and the missed events are replayed from the IMAP
/// server, exactly once and in order, or `mailbox.reset` is sent when that is impossible.
/// Comments keep the connection alive. Authenticate with `Authorization: Bearer` or, from a
/// browser's EventSource, `?ticket=` from `POST /v1/events/ticket`.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    security(("bearer" = []), ()),
    params(
        ("mailbox" = Option<Vec<String>>, Query, description = "Mailbox to watch; repeat for several (at most 16). Default INBOX.", explode = true),
        ("ticket" = Option<String>, Query, description = "A ticket from `POST /v1/events/ticket`, instead of the Authorization header."),
        ("Last-Event-ID" = Option<String>, Header, description = "The last event id received, to resume after it."),
    ),
    responses(
        (status = 200, description = "`text/event-stream`; each event's `data` is one of the `StreamEvent` shapes, named by `event:`.", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "Bad mailbox name, too many mailboxes, or malformed Last-Event-ID (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid, expired or reused token or ticket (`unauthorized`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox (`mailbox_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many event streams or watched mailboxes for this user or the bridge (`rate_limited`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn events(State(state): State<AppState>, parts: Parts) -> ApiResult<impl IntoResponse> {
    let mut mailboxes = Vec::new();
    let mut ticket = None;
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
    let claims = match ticket {
        Some(ticket) => state.tokens.redeem_ticket(&ticket)?,
        None => AuthUser::from_headers(&parts.headers, &state)?.claims,
    };
    let user = UserKey {
        upstream: state.upstream.clone(),
        username: claims.subject.clone(),
    };
    let last_event_id = last_event_id(&parts.headers)?;
    let stream = state
        .events
        .subscribe(
            &user,
            &claims.credentials,
            mailboxes,
            last_event_id.as_deref(),
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
            SubscribeError::MalformedEventId => {
                ApiError::invalid("The Last-Event-ID is not one this API issued.")
            }
        })?;
    let retry = futures::stream::once(async {
        Ok::<_, Infallible>(Event::default().retry(Duration::from_secs(2)))
    });
    let events =
        stream.map(|e| Ok::<_, Infallible>(Event::default().event(e.kind).id(e.id).data(e.data)));
    Ok(Sse::new(retry.chain(events))
        .keep_alive(KeepAlive::new().interval(state.config.sse_keepalive())))
}

fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<String>> {
    match headers.get("last-event-id") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|_| ApiError::invalid("The Last-Event-ID is not one this API issued.")),
    }
}
