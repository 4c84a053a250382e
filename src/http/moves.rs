//! Filing mail: `POST /v1/mailboxes/{mailbox}/move` and `/copy`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiPath, AuthUser};
use super::flags::uid_list;
use super::schema::{MailboxNameSchema, UidSchema, uid_numbers};
use crate::imap::encode::MailboxName;
use crate::imap::mutations::Transferred;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(move_messages))
        .routes(routes!(copy_messages))
}

/// Messages to file elsewhere.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"uids": [4209, 4211], "to": "Archive/2024"}))]
pub struct TransferRequest {
    /// The messages (1 to 1000 UIDs).
    #[schema(value_type = Vec<UidSchema>, min_items = 1, max_items = 1000)]
    #[serde(deserialize_with = "uid_numbers")]
    pub uids: Vec<u32>,
    /// Destination mailbox, full UTF-8 name.
    #[schema(value_type = MailboxNameSchema)]
    pub to: String,
}

/// One message's new place.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransferResult {
    /// UID in the source mailbox.
    pub uid: u32,
    /// UID in the destination; null when the message did not exist or the server does not
    /// report new UIDs (no UIDPLUS).
    pub new_uid: Option<u32>,
}

/// Where each message went.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"results": [{"uid": 4209, "new_uid": 17}, {"uid": 4211, "new_uid": 18}]}))]
pub struct TransferResults {
    /// One entry per requested UID, ascending.
    pub results: Vec<TransferResult>,
}

fn results(list: Vec<Transferred>) -> Json<TransferResults> {
    Json(TransferResults {
        results: list
            .into_iter()
            .map(|t| TransferResult {
                uid: t.uid,
                new_uid: t.new_uid,
            })
            .collect(),
    })
}

/// Moves messages to another mailbox (IMAP MOVE, or COPY + expunge of exactly these UIDs).
#[utoipa::path(
    post,
    path = "/v1/mailboxes/{mailbox}/move",
    tag = "messages",
    security(("bearer" = [])),
    params(("mailbox" = MailboxNameSchema, Path, description = "Source mailbox, percent-encoded as one path segment.")),
    request_body = TransferRequest,
    responses(
        (status = 200, description = "The messages' new UIDs.", body = TransferResults),
        (status = 400, description = "Bad names or UIDs (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The server refuses the destination's name (`forbidden`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The source or destination mailbox does not exist (`mailbox_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The destination is the source mailbox (`conflict`), or the server has neither MOVE nor UIDPLUS and other messages of the source are marked `\\Deleted`, so the expunge could not be limited to these (`other_messages_deleted`); nothing was changed.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large (`payload_too_large`).", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server refused (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The user's mailbox quota leaves no room for it (`insufficient_storage`); retrying does not help until mail is deleted.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn move_messages(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(mailbox): ApiPath<String>,
    ApiJson(body): ApiJson<TransferRequest>,
) -> ApiResult<Json<TransferResults>> {
    let from = MailboxName::new(&mailbox)?;
    let to = MailboxName::new(&body.to).map_err(|e| ApiError::invalid(format!("`to`: {e}")))?;
    if from == to {
        return Err(ApiError::conflict(
            "The messages already are in that mailbox; move them to another one.",
        ));
    }
    let uids = uid_list(&body.uids)?;
    let mut session = user.session(&state).await?;
    Ok(results(session.move_messages(&from, &uids, &to).await?))
}

/// Copies messages to another mailbox (or the same one).
#[utoipa::path(
    post,
    path = "/v1/mailboxes/{mailbox}/copy",
    tag = "messages",
    security(("bearer" = [])),
    params(("mailbox" = MailboxNameSchema, Path, description = "Source mailbox, percent-encoded as one path segment.")),
    request_body = TransferRequest,
    responses(
        (status = 200, description = "The copies' UIDs.", body = TransferResults),
        (status = 400, description = "Bad names or UIDs (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The server refuses the destination's name (`forbidden`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The source or destination mailbox does not exist (`mailbox_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large (`payload_too_large`).", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server refused (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The user's mailbox quota leaves no room for it (`insufficient_storage`); retrying does not help until mail is deleted.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn copy_messages(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(mailbox): ApiPath<String>,
    ApiJson(body): ApiJson<TransferRequest>,
) -> ApiResult<Json<TransferResults>> {
    let from = MailboxName::new(&mailbox)?;
    let to = MailboxName::new(&body.to).map_err(|e| ApiError::invalid(format!("`to`: {e}")))?;
    let uids = uid_list(&body.uids)?;
    let mut session = user.session(&state).await?;
    Ok(results(session.copy_messages(&from, &uids, &to).await?))
}
