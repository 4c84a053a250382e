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
use crate::imap::{Credentials, ImapError, OAuthMechanism, Secret, UserKey};
use crate::telemetry::names;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}

/// Credentials for the IMAP server: a password, or an OAuth 2.0 access token. The body is one
/// of the two shapes of [`LoginForm`]; it is read as one struct so that a wrong mix of fields
/// gets a message that says what is wrong.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    mechanism: Option<Mechanism>,
    #[serde(default)]
    server: Option<ServerChoice>,
}

/// The two ways to log in.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documents the body; requests are read as `LoginRequest`
#[schema(as = LoginRequest)]
pub enum LoginForm {
    /// User name and password.
    Password(PasswordLogin),
    /// User name and OAuth 2.0 access token (Gmail, Microsoft 365).
    AccessToken(TokenLogin),
}

/// Log in with a password: the bridge uses AUTHENTICATE PLAIN where the server offers it, else
/// LOGIN.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
#[schema(example = json!({"username": "alice@example.com", "password": "correct horse battery staple"}))]
pub struct PasswordLogin {
    /// IMAP login name: 1 to 255 characters, no NUL, CR or LF.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00\r\n]+$")]
    username: String,
    /// IMAP password: 1 to 1024 characters, no NUL, CR or LF.
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[^\x00\r\n]+$", format = Password)]
    password: String,
    /// Another IMAP server than the configured one; only servers on the operator's allow-list
    /// (`IMAP_BRIDGE_ALLOWED_SERVERS`, empty by default) are accepted, anything else is 403.
    #[serde(default)]
    server: Option<ServerChoice>,
}

/// Log in with an OAuth 2.0 access token the front end obtained from the provider (scope
/// `https://mail.google.com/` for Gmail, `https://outlook.office.com/IMAP.AccessAsUser.All` for
/// Microsoft 365). The bridge authenticates with SASL OAUTHBEARER or XOAUTH2 and seals the token
/// in the bridge token; when it expires, call `POST /v1/auth/refresh`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
#[schema(example = json!({"username": "alice@gmail.com", "access_token": "ya29.a0AfH6SMBx3kKw"}))]
pub struct TokenLogin {
    /// IMAP login name (the mailbox's address): 1 to 255 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    username: String,
    /// The access token: RFC 6750 `b64token` characters, at most 16384.
    #[schema(min_length = 1, max_length = 16384, pattern = r"^[A-Za-z0-9._~+/-]+=*$", format = Password)]
    access_token: String,
    /// The SASL mechanism; by default OAUTHBEARER where the server offers it, else XOAUTH2.
    #[serde(default)]
    mechanism: Option<Mechanism>,
    /// As for a password login.
    #[serde(default)]
    server: Option<ServerChoice>,
}

/// A SASL mechanism for OAuth 2.0 access tokens.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    /// RFC 7628.
    Oauthbearer,
    /// Google's and Microsoft's mechanism.
    Xoauth2,
}

impl From<Mechanism> for OAuthMechanism {
    fn from(m: Mechanism) -> Self {
        match m {
            Mechanism::Oauthbearer => OAuthMechanism::Oauthbearer,
            Mechanism::Xoauth2 => OAuthMechanism::Xoauth2,
        }
    }
}

/// A new access token for the session a bridge token stands for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"access_token": "ya29.a0AfH6SMBnew"}))]
pub struct RefreshRequest {
    /// The new OAuth 2.0 access token, as for a login.
    #[schema(min_length = 1, max_length = 16384, pattern = r"^[A-Za-z0-9._~+/-]+=*$", format = Password)]
    access_token: String,
    /// The SASL mechanism; by default the one the bridge token was issued with.
    #[serde(default)]
    mechanism: Option<Mechanism>,
}

/// Longest access token accepted, in bytes (Microsoft's run to about 2.5 KB).
const MAX_ACCESS_TOKEN: usize = 16384;

/// Checks an access token's syntax (RFC 6750 `b64token`): nothing else can reach the SASL
/// exchange, whose fields are separated by control characters.
fn access_token(token: String) -> ApiResult<SecretString> {
    let body_end = token.trim_end_matches('=').len();
    let valid = !token.is_empty()
        && token.len() <= MAX_ACCESS_TOKEN
        && body_end > 0
        && token[..body_end]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if valid {
        Ok(SecretString::from(token))
    } else {
        Err(ApiError::invalid(
            "`access_token` must be 1 to 16384 characters of A-Z a-z 0-9 - . _ ~ + / followed by any `=` (RFC 6750).",
        ))
    }
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

/// Log in: the bridge checks the credentials with a fresh IMAP login (AUTHENTICATE PLAIN or
/// LOGIN for a password, OAUTHBEARER or XOAUTH2 for an access token) and returns a token that
/// carries them sealed.
#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "auth",
    request_body = LoginForm,
    responses(
        (status = 200, description = "Logged in.", body = LoginResponse),
        (status = 400, description = "Malformed body, or both or neither of `password` and `access_token` (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong user name or password, or an access token the server refuses (`unauthorized`; the detail gives the server's reason where it sends one).", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`server` is not on the operator's allow-list (`forbidden`); no connection was made.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large (`payload_too_large`).", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`).", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins for this user name or from this address (`rate_limited`, with `Retry-After`); nothing reached the IMAP server.", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "The server offers no way to log in with this kind of credential, e.g. neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2 for an access token (`upstream_capability_missing`).", body = Problem, content_type = "application/problem+json"),
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
    // Validate through the IMAP encoder before anything is sent.
    crate::imap::encode::ImapString::new(&body.username)?;
    let secret = match (body.password, body.access_token) {
        (Some(password), None) => {
            if body.mechanism.is_some() {
                return Err(ApiError::invalid(
                    "`mechanism` goes with `access_token`, not with `password`.",
                ));
            }
            if password.is_empty() || password.chars().count() > 1024 {
                return Err(ApiError::invalid(
                    "`password` must be 1 to 1024 characters.",
                ));
            }
            crate::imap::encode::ImapString::new(&password)?;
            Secret::Password(SecretString::from(password))
        }
        (None, Some(token)) => {
            if body.username.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "`username` must not hold control characters.",
                ));
            }
            Secret::AccessToken {
                token: access_token(token)?,
                mechanism: body.mechanism.map(OAuthMechanism::from),
                issued_at: now(),
            }
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "Send either `password` or `access_token`, not both.",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "Send `password` or `access_token` with the `username`.",
            ));
        }
    };
    let credentials = Credentials {
        username: body.username,
        secret,
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
    check_credentials(&state, &key, &credentials, address).await?;
    let issued = state.tokens.issue_for(&credentials, chosen.as_ref());
    Ok(axum::Json(LoginResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        user: credentials.username,
    }))
}

/// A fresh IMAP login with `credentials`, within the login throttle: a refusal is a 401
/// `unauthorized` (with the server's reason for a refused token).
///
/// Every attempt that does not succeed counts against the throttle — a refusal, a timeout,
/// an upstream error — because a guess the server held back past the connect timeout is still
/// a guess. Two kinds do not count, because the server never saw the credentials: the bridge
/// had no room for another connection, or the server cannot be reached at all (it does not
/// accept a TCP connection right after the failure). So an outage answers 503 for as long as
/// it lasts and locks nobody out after it; a server that accepts connections but answers
/// nothing still counts, as it cannot be told from one that is slow to refuse.
async fn check_credentials(
    state: &AppState,
    key: &UserKey,
    credentials: &Credentials,
    address: Option<std::net::IpAddr>,
) -> ApiResult<()> {
    let attempt = match state.throttle.begin(&credentials.username, address) {
        Ok(attempt) => attempt,
        Err(wait) => {
            metrics::counter!(names::LOGINS, "outcome" => "throttled").increment(1);
            return Err(ApiError::rate_limited(
                "Too many failed logins; try again later.",
                wait.as_secs().max(1),
            ));
        }
    };
    match state.pools.login(key, credentials, address).await {
        Ok(()) => {
            metrics::counter!(names::LOGINS, "outcome" => "success").increment(1);
            attempt.succeeded();
            Ok(())
        }
        Err(e) => {
            let refused = matches!(
                e,
                ImapError::AuthenticationFailed | ImapError::TokenRefused(_)
            );
            let outcome = if refused { "failure" } else { "error" };
            metrics::counter!(names::LOGINS, "outcome" => outcome).increment(1);
            let never_sent = match e {
                ImapError::PoolExhausted | ImapError::BridgeFull => true,
                ImapError::Unavailable(_)
                | ImapError::Io(_)
                | ImapError::Timeout
                | ImapError::Tls(_) => {
                    let probe = state.config.imap_connect_timeout().min(UNREACHABLE_AFTER);
                    !state.pools.reachable(&key.upstream, probe).await
                }
                _ => false,
            };
            if never_sent {
                attempt.not_counted();
            } else {
                drop(attempt);
            }
            Err(match e {
                ImapError::TokenRefused(why) => ApiError::unauthorized(format!(
                    "The IMAP server refused the access token ({why})."
                )),
                other => other.into(),
            })
        }
    }
}

/// How long a server has to accept a TCP connection before a failed login is put down to an
/// outage rather than counted.
const UNREACHABLE_AFTER: std::time::Duration = std::time::Duration::from_secs(3);

/// A new access token for the session this bridge token stands for: the bridge checks it with
/// a fresh login and returns a new bridge token for the same user and server. The user's pooled
/// sessions and event watchers use the new access token from then on; an event stream that
/// ended with `auth.expired` resumes with `Last-Event-ID` and misses nothing. The old bridge
/// token stays valid until it expires.
#[utoipa::path(
    post,
    path = "/v1/auth/refresh",
    tag = "auth",
    security(("bearer" = [])),
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new bridge token.", body = LoginResponse),
        (status = 400, description = "Malformed body, or the bridge token was issued for a password (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired bridge token, or an access token the server refuses (`unauthorized`).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large (`payload_too_large`).", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`).", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins for this user name or from this address (`rate_limited`, with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "The server offers the chosen mechanism no longer (`upstream_capability_missing`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server answered unexpectedly (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unreachable or refuses connections (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server did not answer in time (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn refresh(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    user: AuthUser,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<axum::Json<LoginResponse>> {
    let Secret::AccessToken {
        mechanism: previous,
        ..
    } = &user.claims.credentials.secret
    else {
        return Err(ApiError::invalid(
            "This bridge token was issued for a password; log in again instead.",
        ));
    };
    let credentials = Credentials {
        username: user.claims.credentials.username.clone(),
        secret: Secret::AccessToken {
            token: access_token(body.access_token)?,
            mechanism: body.mechanism.map(OAuthMechanism::from).or(*previous),
            issued_at: now(),
        },
    };
    check_credentials(&state, &user.key, &credentials, address).await?;
    let issued = state
        .tokens
        .issue_for(&credentials, user.claims.server.as_ref());
    Ok(axum::Json(LoginResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        user: credentials.username,
    }))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
