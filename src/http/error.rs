//! The HTTP layer's one error type, rendered as RFC 9457 `application/problem+json`.
//!
//! Every failure of a lower layer is mapped here once. Internals are logged, never returned:
//! callers get a stable `code` and a detail written for them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::{error, warn};
use utoipa::ToSchema;

use crate::auth::TokenError;
use crate::imap::ImapError;
use crate::imap::encode::InvalidArgument;
use crate::imap::state::MalformedToken;

/// A problem report (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:imap-bridge:problem:mailbox_not_found",
    "title": "Mailbox not found",
    "status": 404,
    "detail": "There is no mailbox with that name.",
    "code": "mailbox_not_found"
}))]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this case.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
}

/// An error answered to the caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    retry_after: Option<u64>,
}

/// Result of a handler.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            title,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid request",
            detail,
        )
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }

    /// 403 `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 409 `conflict`.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    /// 404 `not_found` for unknown routes.
    pub fn route_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Not found",
            "There is no such endpoint.",
        )
    }

    /// 405 `method_not_allowed`.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
            "This endpoint does not accept that method.",
        )
    }

    /// 404 `part_not_found`.
    pub fn part_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "part_not_found",
            "Part not found",
            "The message has no part with that id.",
        )
    }

    /// 413 `payload_too_large`.
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
            detail,
        )
    }

    /// 415 `unsupported_media_type`.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
            detail,
        )
    }

    /// 416 `range_not_satisfiable`.
    pub fn range_not_satisfiable() -> Self {
        Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            "Range not satisfiable",
            "The requested range lies outside the content.",
        )
    }

    /// 429 `rate_limited` with `Retry-After`.
    pub fn rate_limited(detail: impl Into<String>, retry_after: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests",
            detail,
        )
        .with_retry_after(retry_after)
    }

    /// 503 `upstream_unavailable`.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unavailable",
            "IMAP server unavailable",
            detail,
        )
    }

    /// 500 for the impossible: logged with its cause, nothing leaked.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal error",
            "The bridge failed unexpectedly; the failure was logged.",
        )
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: format!("urn:imap-bridge:problem:{}", self.code),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.to_owned(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<ImapError> for ApiError {
    fn from(e: ImapError) -> Self {
        use ImapError as E;
        match e {
            E::InvalidArgument(reason) => ApiError::from(reason),
            E::AuthenticationFailed => {
                ApiError::unauthorized("The IMAP server refused these credentials.")
            }
            E::TokenRefused(why) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "upstream_token_expired",
                "Access token refused",
                format!(
                    "The IMAP server refused the OAuth access token this bridge token carries ({why}); get a new one and call POST /v1/auth/refresh."
                ),
            ),
            E::MailboxNotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "mailbox_not_found",
                "Mailbox not found",
                "There is no mailbox with that name.",
            ),
            E::MessageNotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "message_not_found",
                "Message not found",
                "There is no message with that UID in this mailbox.",
            ),
            E::PartNotFound => ApiError::part_not_found(),
            E::ThreadNotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "thread_not_found",
                "Thread not found",
                "There is no thread with that id in this mailbox (with these filters); its id changes when its first message goes and the next names no earlier one: list the threads again.",
            ),
            E::AlreadyExists => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                "A mailbox with that name already exists.",
            ),
            E::UidValidityChanged { current } => ApiError::new(
                StatusCode::CONFLICT,
                "uid_validity_changed",
                "UIDVALIDITY changed",
                format!(
                    "The mailbox was reset (its UIDVALIDITY is now {current}); start over without state or cursor."
                ),
            ),
            E::NotAllowed(why) => ApiError::forbidden(why),
            E::Unsupported(what) => ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "upstream_capability_missing",
                "IMAP server lacks a capability",
                format!("The IMAP server does not support {what}."),
            ),
            E::OverQuota(text) => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                "Mailbox over quota",
                format!(
                    "The IMAP server has no room for this in the user's quota: {}",
                    sanitize(&text)
                ),
            ),
            E::HasChildren => ApiError::new(
                StatusCode::CONFLICT,
                "mailbox_has_children",
                "Mailbox has children",
                "The IMAP server does not delete a mailbox that has children; delete or move them first.",
            ),
            E::OtherMessagesDeleted => ApiError::new(
                StatusCode::CONFLICT,
                "other_messages_deleted",
                "Other messages are marked deleted",
                "The IMAP server has neither MOVE nor UIDPLUS, so removing these messages would also expunge other messages marked \\Deleted in this mailbox. Nothing was changed: expunge or undelete those first.",
            ),
            E::No { code, text } => {
                warn!(code = ?code, text = %text, "IMAP server answered NO");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_rejected",
                    "IMAP server refused",
                    format!("The IMAP server refused the operation: {}", sanitize(&text)),
                )
            }
            E::Bad(text) | E::Protocol(text) => {
                error!(error = %text, "IMAP protocol failure");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_rejected",
                    "IMAP server error",
                    "The IMAP server did not accept or answer the command as expected.",
                )
            }
            E::UnsafeResponse(violation) => {
                error!(error = %violation, "IMAP response refused by the upstream guard");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_rejected",
                    "IMAP server error",
                    format!(
                        "The IMAP server sent {violation}; the bridge does not read such responses."
                    ),
                )
            }
            E::Timeout => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "IMAP server timed out",
                "The IMAP server did not answer in time.",
            ),
            E::PoolExhausted => {
                ApiError::unavailable("All IMAP sessions for this user are busy; retry shortly.")
                    .with_retry_after(1)
            }
            E::BridgeFull => ApiError::unavailable(
                "The bridge holds as many IMAP sessions as it may and none became free in time; retry shortly.",
            )
            .with_retry_after(1),
            E::Unavailable(why) => {
                warn!(error = %why, "IMAP server unavailable");
                ApiError::unavailable("The IMAP server is unavailable.").with_retry_after(5)
            }
            E::StartTls(why) => {
                error!(error = %why, "STARTTLS refused");
                ApiError::unavailable(
                    "A secure connection to the IMAP server could not be established.",
                )
            }
            E::Tls(why) => {
                error!(error = %why, "TLS failure");
                ApiError::unavailable(
                    "A secure connection to the IMAP server could not be established.",
                )
            }
            E::Io(io) => {
                warn!(error = %io, "IMAP connection failed");
                ApiError::unavailable("The connection to the IMAP server failed.")
                    .with_retry_after(1)
            }
        }
    }
}

impl From<InvalidArgument> for ApiError {
    fn from(e: InvalidArgument) -> Self {
        ApiError::invalid(e.to_string())
    }
}

impl From<MalformedToken> for ApiError {
    fn from(e: MalformedToken) -> Self {
        ApiError::invalid(format!(
            "The {} is malformed; use the value the API returned.",
            e.0
        ))
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Expired => {
                ApiError::unauthorized("The access token has expired; log in again.")
            }
            TokenError::Revoked => {
                ApiError::unauthorized("The access token was revoked; log in again.")
            }
            TokenError::Invalid => ApiError::unauthorized("The access token is not valid."),
        }
    }
}

/// Server text passed on to callers: printable, bounded.
fn sanitize(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}
