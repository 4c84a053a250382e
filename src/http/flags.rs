//! Flags: `PATCH …/messages/{uid}/flags` and bulk `POST /v1/mailboxes/{mailbox}/flags`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiPath, AuthUser};
use super::schema::{MailboxNameSchema, UidSchema, present, uid_numbers};
use crate::imap::encode::{Flag, MailboxName, UidSet};
use crate::imap::mutations::FlagChange;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(patch_flags))
        .routes(routes!(bulk_flags))
}

/// Most flags in one change.
const MAX_FLAGS: usize = 50;
/// Most UIDs in one bulk request.
pub const MAX_UIDS: usize = 1000;

/// A flag change: `add` and/or `remove`, or `set` (replace all). Flags are system flags
/// (`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`) or keywords (IMAP atoms).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagsPatch {
    /// Flags to add.
    #[serde(default, deserialize_with = "present")]
    pub add: Option<Vec<String>>,
    /// Flags to remove.
    #[serde(default, deserialize_with = "present")]
    pub remove: Option<Vec<String>>,
    /// The complete new set of flags (not with `add`/`remove`).
    #[serde(default, deserialize_with = "present")]
    pub set: Option<Vec<String>>,
}

impl FlagsPatch {
    fn change(&self) -> ApiResult<FlagChange> {
        let parse = |field: &str, list: &Option<Vec<String>>| -> ApiResult<Vec<Flag>> {
            let list = list.as_deref().unwrap_or_default();
            if list.len() > MAX_FLAGS {
                return Err(ApiError::invalid(format!(
                    "`{field}` holds at most {MAX_FLAGS} flags."
                )));
            }
            list.iter()
                .map(|f| Flag::parse(f).map_err(|e| ApiError::invalid(format!("`{field}`: {e}"))))
                .collect()
        };
        match (&self.set, &self.add, &self.remove) {
            (Some(_), None, None) => Ok(FlagChange::Set(parse("set", &self.set)?)),
            (Some(_), _, _) => Err(ApiError::invalid(
                "Use either `set` or `add`/`remove`, not both.",
            )),
            (None, None, None) => Err(ApiError::invalid("Give `add`, `remove` or `set`.")),
            (None, _, _) => Ok(FlagChange::AddRemove {
                add: parse("add", &self.add)?,
                remove: parse("remove", &self.remove)?,
            }),
        }
    }
}

/// A message's flags after a change, as the server holds them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"uid": 4211, "flags": ["\\Seen", "$Important"]}))]
pub struct MessageFlags {
    /// The message.
    pub uid: u32,
    /// Its flags now.
    pub flags: Vec<String>,
}

/// Changes one message's flags.
#[utoipa::path(
    patch,
    path = "/v1/mailboxes/{mailbox}/messages/{uid}/flags",
    tag = "flags",
    security(("bearer" = [])),
    params(
        ("mailbox" = MailboxNameSchema, Path, description = "Full mailbox name, percent-encoded as one path segment."),
        ("uid" = UidSchema, Path, description = "The message's UID."),
    ),
    request_body = FlagsPatch,
    responses(
        (status = 200, description = "The message's flags afterwards.", body = MessageFlags),
        (status = 400, description = "Bad name, UID, body or flag (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox or message (`mailbox_not_found`, `message_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large (`payload_too_large`).", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server refused (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn patch_flags(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((mailbox, uid)): ApiPath<(String, u32)>,
    ApiJson(body): ApiJson<FlagsPatch>,
) -> ApiResult<Json<MessageFlags>> {
    let name = MailboxName::new(&mailbox)?;
    let uids = UidSet::single(uid)?;
    let change = body.change()?;
    let mut session = user.session(&state).await?;
    let mut after = session.change_flags(&name, &uids, &change).await?;
    let flags = after
        .remove(&uid)
        .ok_or(crate::imap::ImapError::MessageNotFound)?;
    Ok(Json(MessageFlags { uid, flags }))
}

/// A flag change for many messages (its schema is in [`super::schema`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkFlags {
    /// The messages (1 to 1000 UIDs).
    #[serde(deserialize_with = "uid_numbers")]
    pub uids: Vec<u32>,
    /// Flags to add.
    #[serde(default, deserialize_with = "present")]
    pub add: Option<Vec<String>>,
    /// Flags to remove.
    #[serde(default, deserialize_with = "present")]
    pub remove: Option<Vec<String>>,
    /// The complete new set of flags (not with `add`/`remove`).
    #[serde(default, deserialize_with = "present")]
    pub set: Option<Vec<String>>,
}

/// Flags after a bulk change.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkFlagsResult {
    /// Every named message that exists, with its flags now; UIDs that do not exist are absent.
    pub updated: Vec<MessageFlags>,
}

/// Parses a caller's UID list: 1 to [`MAX_UIDS`] UIDs, none zero.
pub fn uid_list(uids: &[u32]) -> ApiResult<UidSet> {
    if uids.is_empty() || uids.len() > MAX_UIDS {
        return Err(ApiError::invalid(format!(
            "`uids` must hold 1 to {MAX_UIDS} UIDs."
        )));
    }
    Ok(UidSet::from_uids(uids.iter().copied())?)
}

/// Changes flags of many messages at once.
#[utoipa::path(
    post,
    path = "/v1/mailboxes/{mailbox}/flags",
    tag = "flags",
    security(("bearer" = [])),
    params(("mailbox" = MailboxNameSchema, Path, description = "Full mailbox name, percent-encoded as one path segment.")),
    request_body = BulkFlags,
    responses(
        (status = 200, description = "The messages' flags afterwards.", body = BulkFlagsResult),
        (status = 400, description = "Bad name, UIDs, body or flag (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox (`mailbox_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large (`payload_too_large`).", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server refused (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn bulk_flags(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(mailbox): ApiPath<String>,
    ApiJson(body): ApiJson<BulkFlags>,
) -> ApiResult<Json<BulkFlagsResult>> {
    let name = MailboxName::new(&mailbox)?;
    let uids = uid_list(&body.uids)?;
    let change = FlagsPatch {
        add: body.add,
        remove: body.remove,
        set: body.set,
    }
    .change()?;
    let mut session = user.session(&state).await?;
    let after = session.change_flags(&name, &uids, &change).await?;
    Ok(Json(BulkFlagsResult {
        updated: after
            .into_iter()
            .map(|(uid, flags)| MessageFlags { uid, flags })
            .collect(),
    }))
}
