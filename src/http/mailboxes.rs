//! `GET /v1/mailboxes`: folders with their roles and counts.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiPath, AuthUser};
use super::schema::MailboxNameSchema;
use crate::imap::encode::MailboxName;
use crate::imap::mailboxes::{MailboxInfo, SpecialUse};

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_mailboxes, create_mailbox))
        .routes(routes!(rename_mailbox, delete_mailbox))
}

/// A mailbox's role.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The INBOX.
    Inbox,
    /// Sent mail.
    Sent,
    /// Drafts.
    Drafts,
    /// Deleted mail.
    Trash,
    /// Spam.
    Junk,
    /// Archive.
    Archive,
    /// All mail (virtual).
    All,
    /// Flagged mail (virtual).
    Flagged,
}

impl From<SpecialUse> for Role {
    fn from(s: SpecialUse) -> Self {
        match s {
            SpecialUse::Inbox => Role::Inbox,
            SpecialUse::Sent => Role::Sent,
            SpecialUse::Drafts => Role::Drafts,
            SpecialUse::Trash => Role::Trash,
            SpecialUse::Junk => Role::Junk,
            SpecialUse::Archive => Role::Archive,
            SpecialUse::All => Role::All,
            SpecialUse::Flagged => Role::Flagged,
        }
    }
}

/// One mailbox.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "name": "Archive/2024", "delimiter": "/", "attributes": ["\\HasNoChildren"],
    "special_use": null, "subscribed": true, "total": 1204, "unseen": 3,
    "uid_validity": 1700000000, "uid_next": 1311
}))]
pub struct Mailbox {
    /// Full name, UTF-8; use it percent-encoded as one path segment.
    pub name: String,
    /// Hierarchy delimiter.
    pub delimiter: Option<String>,
    /// LIST attributes as the server reports them.
    pub attributes: Vec<String>,
    /// Role from SPECIAL-USE (`inbox` for INBOX).
    pub special_use: Option<Role>,
    /// In the subscription list.
    pub subscribed: bool,
    /// Messages (0 for mailboxes that cannot hold any).
    pub total: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    /// UIDVALIDITY (0 for mailboxes that cannot hold messages).
    pub uid_validity: u32,
    /// UIDNEXT (0 for mailboxes that cannot hold messages).
    pub uid_next: u32,
}

impl From<MailboxInfo> for Mailbox {
    fn from(m: MailboxInfo) -> Self {
        let counts = m.counts.unwrap_or_default();
        Mailbox {
            name: m.name.as_str().to_owned(),
            delimiter: m.delimiter,
            attributes: m.attributes,
            special_use: m.special_use.map(Role::from),
            subscribed: m.subscribed,
            total: counts.total,
            unseen: counts.unseen,
            uid_validity: counts.uid_validity,
            uid_next: counts.uid_next,
        }
    }
}

/// The mailbox list.
#[derive(Debug, Serialize, ToSchema)]
pub struct MailboxList {
    /// INBOX first, then in the server's order.
    pub mailboxes: Vec<Mailbox>,
}

/// Every mailbox of the user, with role, subscription and message counts.
#[utoipa::path(
    get,
    path = "/v1/mailboxes",
    tag = "mailboxes",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The mailboxes.", body = MailboxList),
        (status = 401, description = "Missing, invalid or expired token, or the IMAP server refused the stored password (`unauthorized`) or OAuth access token (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server answered unexpectedly (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_mailboxes(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<MailboxList>> {
    let mut session = user.session(&state).await?;
    let mut listed = session.list_mailboxes().await?;
    listed.sort_by_key(|m| !m.name.is_inbox());
    Ok(Json(MailboxList {
        mailboxes: listed.into_iter().map(Mailbox::from).collect(),
    }))
}

/// A mailbox name in a request body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Projekte/Überblick"}))]
pub struct MailboxNameBody {
    /// Full name, UTF-8, any script; the server's delimiter (`/` on most servers) makes a hierarchy.
    #[schema(value_type = MailboxNameSchema)]
    pub name: String,
}

/// A mailbox that was created or renamed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"name": "Projekte/Überblick"}))]
pub struct MailboxRef {
    /// Its full name now.
    pub name: String,
}

/// Creates a mailbox (and subscribes to it).
#[utoipa::path(
    post,
    path = "/v1/mailboxes",
    tag = "mailboxes",
    security(("bearer" = [])),
    request_body = MailboxNameBody,
    responses(
        (status = 201, description = "Created.", body = MailboxRef),
        (status = 400, description = "Bad name: empty, control characters, `*` or `%`, or an empty hierarchy level (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The server cannot store a mailbox of that name: too long, or a character its storage forbids (`forbidden`).", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A mailbox with that name exists (`conflict`).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large (`payload_too_large`).", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server refused the name (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_mailbox(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<MailboxNameBody>,
) -> ApiResult<(StatusCode, Json<MailboxRef>)> {
    let name = MailboxName::new(&body.name)?;
    let mut session = user.session(&state).await?;
    session.create_mailbox(&name).await?;
    Ok((
        StatusCode::CREATED,
        Json(MailboxRef {
            name: name.as_str().to_owned(),
        }),
    ))
}

/// Renames a mailbox (with its children). INBOX cannot be renamed.
#[utoipa::path(
    patch,
    path = "/v1/mailboxes/{mailbox}",
    tag = "mailboxes",
    security(("bearer" = [])),
    params(("mailbox" = MailboxNameSchema, Path, description = "Current full name, percent-encoded as one path segment.")),
    request_body = MailboxNameBody,
    responses(
        (status = 200, description = "Renamed.", body = MailboxRef),
        (status = 400, description = "Bad name, as for creating (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "INBOX cannot be renamed, or the server cannot store the new name (`forbidden`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox (`mailbox_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The new name exists, or is the current one (`conflict`).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large (`payload_too_large`).", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server refused (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn rename_mailbox(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(mailbox): ApiPath<String>,
    ApiJson(body): ApiJson<MailboxNameBody>,
) -> ApiResult<Json<MailboxRef>> {
    let from = MailboxName::new(&mailbox)?;
    let to = MailboxName::new(&body.name)?;
    if from == to {
        return Err(ApiError::conflict("The mailbox already has that name."));
    }
    let mut session = user.session(&state).await?;
    session.rename_mailbox(&from, &to).await?;
    Ok(Json(MailboxRef {
        name: to.as_str().to_owned(),
    }))
}

/// Deletes a mailbox and its messages. INBOX cannot be deleted.
#[utoipa::path(
    delete,
    path = "/v1/mailboxes/{mailbox}",
    tag = "mailboxes",
    security(("bearer" = [])),
    params(("mailbox" = MailboxNameSchema, Path, description = "Full name, percent-encoded as one path segment.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "Bad name (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "INBOX cannot be deleted (`forbidden`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox (`mailbox_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The mailbox has children and the server does not delete such a mailbox (`mailbox_has_children`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server refused (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_mailbox(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(mailbox): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let name = MailboxName::new(&mailbox)?;
    let mut session = user.session(&state).await?;
    session.delete_mailbox(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
