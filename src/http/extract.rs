//! Request extractors whose rejections come out as our problem+json errors, and the bearer
//! authentication extractor.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::auth::TokenClaims;
use crate::imap::{Session, UserKey};

/// JSON body, with problem+json rejections.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::unsupported_media_type(
                "Send the body as application/json.",
            )),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::payload_too_large(
                    "The request body is too large.",
                ))
            }
            Err(JsonRejection::JsonSyntaxError(_)) => {
                Err(ApiError::invalid("The body is not valid JSON."))
            }
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::invalid(format!(
                "The JSON body does not have the expected shape: {}",
                e.body_text().trim_start_matches(
                    "Failed to deserialize the JSON body into the target type: "
                )
            ))),
            Err(e) => Err(ApiError::invalid(format!(
                "The request body could not be read: {}",
                e.body_text()
            ))),
        }
    }
}

/// Query string, with problem+json rejections.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        check_query_utf8(parts.uri.query())?;
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::invalid(format!(
                    "Invalid query parameters: {}",
                    e.body_text()
                        .trim_start_matches("Failed to deserialize query string: ")
                )))
            }
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

/// Refuses a query string in which a name or value is not UTF-8 once percent-decoded.
///
/// Form decoding (axum's `Query`, `form_urlencoded`) would replace such bytes with U+FFFD and
/// go on, so that `?subject=%FF` searched for a character the caller never sent; the same
/// bytes in a path segment are refused, and so are they here.
pub fn check_query_utf8(query: Option<&str>) -> Result<(), ApiError> {
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .is_ok()
        };
        if !decoded(name) || !decoded(value) {
            let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            return Err(ApiError::invalid(format!(
                "The query parameter `{}` is not valid UTF-8 once percent-decoded.",
                name.chars()
                    .filter(|c| !c.is_control())
                    .take(40)
                    .collect::<String>()
            )));
        }
    }
    Ok(())
}

/// Path parameters, with problem+json rejections.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiError::invalid(format!(
                    "Invalid path parameter: {}",
                    e.body_text().trim_start_matches("Invalid URL: ")
                )))
            }
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

/// The caller, authenticated by `Authorization: Bearer <token>`.
pub struct AuthUser {
    /// The verified token.
    pub claims: TokenClaims,
    /// Whose pool the user's sessions come from.
    pub key: UserKey,
    /// The client's address, passed on when a session must be opened for this request.
    pub address: Option<std::net::IpAddr>,
}

impl AuthUser {
    /// A pooled IMAP session for this user.
    pub async fn session(&self, state: &AppState) -> Result<Session, ApiError> {
        Ok(state
            .pools
            .session_from(&self.key, &self.claims.credentials, self.address)
            .await?)
    }
}

impl AuthUser {
    /// Authenticates the bearer token in `headers`.
    pub fn from_headers(
        headers: &axum::http::HeaderMap,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let token = bearer_token(headers).ok_or_else(|| {
            ApiError::unauthorized("Send an access token as `Authorization: Bearer <token>`.")
        })?;
        let claims = state.tokens.verify(token)?;
        let key = UserKey {
            upstream: upstream_of(&claims, state)?,
            username: claims.subject.clone(),
        };
        Ok(AuthUser {
            claims,
            key,
            address: None,
        })
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut user = AuthUser::from_headers(&parts.headers, state)?;
        let Ok(ClientAddress(address)) = ClientAddress::from_request_parts(parts, state).await;
        user.address = address;
        Ok(user)
    }
}

/// The IMAP server a token is for: the configured one, or the one chosen at login while it is
/// still on the operator's allow-list.
pub fn upstream_of(
    claims: &TokenClaims,
    state: &AppState,
) -> Result<crate::imap::Upstream, ApiError> {
    match &claims.server {
        None => Ok(state.upstream.clone()),
        Some(server) if state.allowed_servers.permits(&server.host, server.port) => {
            Ok(server.clone())
        }
        Some(_) => Err(ApiError::unauthorized(
            "The IMAP server this token is for is no longer allowed; log in again.",
        )),
    }
}

fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// The client's address: the TCP peer's, or, with `IMAP_BRIDGE_TRUST_FORWARDED_FOR`, the last
/// entry of `X-Forwarded-For` (the one the trusted proxy wrote; earlier ones are the client's
/// own claims). `None` when neither is known (a server built without connect info).
pub struct ClientAddress(pub Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The last entry of the last header is the proxy's; if it does not parse, the peer
        // address is used rather than any earlier, client-written entry.
        if state.config.trust_forwarded_for
            && let Some(forwarded) = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|entry| entry.trim().parse().ok())
        {
            return Ok(ClientAddress(Some(forwarded)));
        }
        Ok(ClientAddress(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}
