//! Delta sync: `GET /v1/mailboxes/{mailbox}/changes?since=<state>`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiResult, Problem};
use super::extract::{ApiPath, ApiQuery, AuthUser};
use super::flags::MessageFlags;
use super::schema::{MailboxNameSchema, SyncStateSchema};
use crate::imap::encode::MailboxName;
use crate::imap::state::MailboxState;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(changes))
}

/// Where to sync from.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// A `state` from a header list or a previous `changes` answer.
    #[param(value_type = SyncStateSchema)]
    pub since: String,
}

/// What changed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "state": "s1.1700000000.48230.10305",
    "created": [10302, 10303, 10304],
    "updated": [{"uid": 10250, "flags": ["\\Seen", "\\Flagged"]}],
    "destroyed": [10001, 10007]
}))]
pub struct ChangeSet {
    /// The state to pass as `since` next time.
    pub state: String,
    /// Messages that arrived, ascending UIDs; fetch their summaries with a header list or by UID.
    pub created: Vec<u32>,
    /// Messages whose flags changed, with their flags now.
    pub updated: Vec<MessageFlags>,
    /// Messages that were expunged, ascending UIDs.
    pub destroyed: Vec<u32>,
}

/// What changed in a mailbox since a state: new messages, flag changes and expunges, from
/// CONDSTORE/QRESYNC where the server offers them (one round trip plus a sync), else by
/// comparing UID sets (a superset, still correct).
#[utoipa::path(
    get,
    path = "/v1/mailboxes/{mailbox}/changes",
    tag = "sync",
    security(("bearer" = [])),
    params(
        ("mailbox" = MailboxNameSchema, Path, description = "Full mailbox name, percent-encoded as one path segment."),
        ChangesQuery,
    ),
    responses(
        (status = 200, description = "The changes and the new state.", body = ChangeSet),
        (status = 400, description = "Bad name or malformed state (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox (`mailbox_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The mailbox was reset since the state (`uid_validity_changed`): list it again from scratch.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server refused (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn changes(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(mailbox): ApiPath<String>,
    ApiQuery(query): ApiQuery<ChangesQuery>,
) -> ApiResult<Json<ChangeSet>> {
    let name = MailboxName::new(&mailbox)?;
    let since: MailboxState = query.since.parse()?;
    let mut session = user.session(&state).await?;
    let changes = session.changes_since(&name, &since).await?;
    Ok(Json(ChangeSet {
        state: changes.state.unwrap_or(since).to_string(),
        created: changes.created,
        updated: changes
            .updated
            .into_iter()
            .map(|(uid, flags)| MessageFlags { uid, flags })
            .collect(),
        destroyed: changes.destroyed,
    }))
}
