//! `POST /v1/auth/login` and `POST /v1/auth/logout`.

use axum::extract::State;
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::allowlist::ServerChoice;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, AuthUser, ClientAddress};
use crate::imap::{Credentials, ImapError, UserKey};
use crate::telemetry::names;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
}

/// Credentials for the IMAP server.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "alice@example.com", "password": "correct horse battery staple"}))]
pub struct LoginRequest {
    /// IMAP login name: 1 to 255 characters, no NUL, CR or LF.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00\r\n]+$")]
    pub username: String,
    /// IMAP password: 1 to 1024 characters, no NUL, CR or LF.
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[^\x00\r\n]+$", format = Password)]
    pub password: String,
    /// Another IMAP server than the configured one; only servers on the operator's allow-list
    /// (`IMAP_BRIDGE_ALLOWED_SERVERS`, empty by default) are accepted, anything else is 403.
    #[serde(default)]
    pub server: Option<ServerChoice>,
}

/// A new access token.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSJ9.c2lnbmF0dXJl",
    "token_type": "Bearer",
    "expires_in": 3600,
    "user": "alice@example.com"
}))]
pub struct LoginResponse {
    /// The bearer token for every other call.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// The IMAP user name.
    pub user: String,
}

/// Log in: the bridge checks the credentials with a real IMAP LOGIN and returns a token that
/// carries them sealed.
#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in.", body = LoginResponse),
        (status = 400, description = "Malformed body (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong user name or password (`unauthorized`).", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`server` is not on the operator's allow-list (`forbidden`); no connection was made.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large (`payload_too_large`).", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`).", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins for this user name or from this address (`rate_limited`, with `Retry-After`); nothing reached the IMAP server.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server answered unexpectedly (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unreachable or refuses connections (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server did not answer in time (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<axum::Json<LoginResponse>> {
    // Characters, as the document's `maxLength` counts them; 255 is also Dovecot's limit.
    if body.username.is_empty() || body.username.chars().count() > 255 {
        return Err(ApiError::invalid("`username` must be 1 to 255 characters."));
    }
    if body.password.is_empty() || body.password.chars().count() > 1024 {
        return Err(ApiError::invalid(
            "`password` must be 1 to 1024 characters.",
        ));
    }
    // Validate both through the IMAP encoder before anything is sent.
    crate::imap::encode::ImapString::new(&body.username)?;
    crate::imap::encode::ImapString::new(&body.password)?;
    let credentials = Credentials {
        username: body.username,
        password: SecretString::from(body.password),
    };
    // A chosen server is checked before anything else can reach the network.
    let chosen = match &body.server {
        None => None,
        Some(choice) => Some(
            state
                .allowed_servers
                .admit(choice, state.config.allow_plaintext)
                .await?,
        ),
    };
    let key = UserKey {
        upstream: chosen.clone().unwrap_or_else(|| state.upstream.clone()),
        username: credentials.username.clone(),
    };
    if let Err(wait) = state.throttle.check(&credentials.username, address) {
        metrics::counter!(names::LOGINS, "outcome" => "throttled").increment(1);
        return Err(ApiError::rate_limited(
            "Too many failed logins; try again later.",
            wait.as_secs().max(1),
        ));
    }
    // Checking out a session logs in when the user has none; it stays pooled for the next call.
    match state.pools.session_from(&key, &credentials, address).await {
        Ok(session) => drop(session),
        Err(e) => {
            let outcome = if matches!(e, ImapError::AuthenticationFailed) {
                state.throttle.failed(&credentials.username, address);
                "failure"
            } else {
                "error"
            };
            metrics::counter!(names::LOGINS, "outcome" => outcome).increment(1);
            return Err(e.into());
        }
    }
    metrics::counter!(names::LOGINS, "outcome" => "success").increment(1);
    state.throttle.succeeded(&credentials.username);
    let issued = state.tokens.issue_for(&credentials, chosen.as_ref());
    Ok(axum::Json(LoginResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        user: credentials.username,
    }))
}

/// Log out: revokes the token and logs out the user's pooled IMAP sessions.
#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out."),
        (status = 401, description = "Missing, invalid, expired or revoked token (`unauthorized`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn logout(State(state): State<AppState>, user: AuthUser) -> StatusCode {
    state.tokens.revoke(&user.claims);
    state.pools.close_user(&user.key);
    StatusCode::NO_CONTENT
}
