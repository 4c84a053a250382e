//! Access tokens: JWTs that carry the user's IMAP credentials sealed under the server's key.
//!
//! Any replica holding the same secret can verify a token and re-open the user's IMAP session,
//! and a restart loses no login. The password is sealed with XChaCha20-Poly1305 bound to the
//! token's `jti` and `sub`, so it is unreadable from the token and any tampering fails
//! verification. Signing and sealing use separate keys derived from the one secret.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::imap::Credentials;

/// Why a token was refused. Deliberately coarse: callers learn only that it is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Bad signature, bad shape, wrong algorithm, tampered or undecryptable credentials.
    #[error("invalid token")]
    Invalid,
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
    /// Signed out.
    #[error("token revoked")]
    Revoked,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: u64,
    jti: String,
    /// What the token is for: `access` (bearer) or `ticket` (one EventSource connection).
    typ: String,
    /// For a ticket, the access token it was issued under (revoking that revokes the ticket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    /// Sealed password: base64url(nonce ‖ ciphertext).
    cred: String,
}

const ACCESS: &str = "access";
const TICKET: &str = "ticket";

/// Lifetime of an EventSource ticket.
pub const TICKET_TTL: Duration = Duration::from_secs(60);

/// A verified token's content.
#[derive(Debug, Clone)]
pub struct TokenClaims {
    /// The IMAP user name.
    pub subject: String,
    /// Unique token id, for revocation.
    pub token_id: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
    /// The IMAP credentials, unsealed.
    pub credentials: Credentials,
}

/// A freshly issued token.
#[derive(Debug)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// Issues, verifies and revokes access tokens.
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    seal_key: Zeroizing<[u8; 32]>,
    ttl: Duration,
    revoked: Mutex<HashMap<String, u64>>,
}

/// Smallest accepted secret.
pub const MIN_SECRET_LEN: usize = 32;

impl TokenService {
    /// A service keyed by `secret` (at least [`MIN_SECRET_LEN`] bytes) issuing tokens valid
    /// for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let signing = derive(secret, b"imap-bridge/jwt-hs256/v1");
        let seal_key = derive(secret, b"imap-bridge/credential-seal/v1");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iat", "jti", "sub"]);
        validation.validate_aud = false;
        TokenService {
            encoding: EncodingKey::from_secret(signing.as_ref()),
            decoding: DecodingKey::from_secret(signing.as_ref()),
            validation,
            seal_key,
            ttl,
            revoked: Mutex::new(HashMap::new()),
        }
    }

    /// Issues an access token for `credentials`.
    pub fn issue(&self, credentials: &Credentials) -> IssuedToken {
        IssuedToken {
            token: self.mint(ACCESS, credentials, self.ttl, None),
            expires_in: self.ttl.as_secs(),
        }
    }

    /// Verifies an access token and unseals its credentials.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        self.check(token, ACCESS)
    }

    /// Issues a single-use ticket for one EventSource connection, valid [`TICKET_TTL`], tied
    /// to the access token `claims` came from.
    pub fn issue_ticket(&self, claims: &TokenClaims) -> IssuedToken {
        let ttl = TICKET_TTL.min(Duration::from_secs(claims.expires_at.saturating_sub(now())));
        IssuedToken {
            token: self.mint(
                TICKET,
                &claims.credentials,
                ttl,
                Some(claims.token_id.clone()),
            ),
            expires_in: ttl.as_secs(),
        }
    }

    /// Verifies and consumes a ticket: a second use is refused.
    pub fn redeem_ticket(&self, ticket: &str) -> Result<TokenClaims, TokenError> {
        let claims = self.check(ticket, TICKET)?;
        if claims.expires_at < now() {
            return Err(TokenError::Expired);
        }
        // Used tickets join the revocation list until they expire anyway.
        let mut revoked = self.revoked.lock().expect("revocation list poisoned");
        if revoked
            .insert(claims.token_id.clone(), claims.expires_at)
            .is_some()
        {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    fn mint(
        &self,
        typ: &str,
        credentials: &Credentials,
        ttl: Duration,
        parent: Option<String>,
    ) -> String {
        let now = now();
        let jti = uuid::Uuid::new_v4().simple().to_string();
        let cred = self.seal(
            &jti,
            &credentials.username,
            credentials.password.expose_secret().as_bytes(),
        );
        let claims = Claims {
            sub: credentials.username.clone(),
            iat: now,
            exp: now + ttl.as_secs(),
            jti,
            typ: typ.to_owned(),
            parent,
            cred,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with a valid key cannot fail")
    }

    fn check(&self, token: &str, typ: &str) -> Result<TokenClaims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let claims = data.claims;
        if claims.typ != typ || claims.iat > now() + self.validation.leeway {
            return Err(TokenError::Invalid);
        }
        {
            let revoked = self.revoked.lock().expect("revocation list poisoned");
            if revoked.contains_key(&claims.jti)
                || claims
                    .parent
                    .as_ref()
                    .is_some_and(|p| revoked.contains_key(p))
            {
                return Err(TokenError::Revoked);
            }
        }
        let password = self.unseal(&claims.jti, &claims.sub, &claims.cred)?;
        let password = String::from_utf8(password.to_vec()).map_err(|_| TokenError::Invalid)?;
        Ok(TokenClaims {
            credentials: Credentials {
                username: claims.sub.clone(),
                password: SecretString::from(password),
            },
            subject: claims.sub,
            token_id: claims.jti,
            expires_at: claims.exp,
        })
    }

    /// Revokes a token until it would have expired anyway.
    pub fn revoke(&self, claims: &TokenClaims) {
        let mut revoked = self.revoked.lock().expect("revocation list poisoned");
        let now = now();
        revoked.retain(|_, exp| *exp + self.validation.leeway >= now);
        revoked.insert(claims.token_id.clone(), claims.expires_at);
    }

    fn seal(&self, jti: &str, sub: &str, secret: &[u8]) -> String {
        let cipher = XChaCha20Poly1305::new(self.seal_key.as_ref().into());
        let mut nonce = [0u8; 24];
        rand::fill(&mut nonce);
        let aad = associated_data(jti, sub);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .expect("sealing a short secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    fn unseal(&self, jti: &str, sub: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        let raw = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| TokenError::Invalid)?;
        if raw.len() < 24 + 16 {
            return Err(TokenError::Invalid);
        }
        let (nonce, ciphertext) = raw.split_at(24);
        let cipher = XChaCha20Poly1305::new(self.seal_key.as_ref().into());
        let aad = associated_data(jti, sub);
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| TokenError::Invalid)
    }
}

fn associated_data(jti: &str, sub: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(jti.len() + sub.len() + 1);
    aad.extend_from_slice(jti.as_bytes());
    aad.push(0);
    aad.extend_from_slice(sub.as_bytes());
    aad
}

fn derive(secret: &[u8], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(label);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> TokenService {
        TokenService::new(&[7u8; 32], Duration::from_secs(600))
    }

    fn creds() -> Credentials {
        Credentials {
            username: "alice@example.test".into(),
            password: SecretString::from("s3cret-päss".to_owned()),
        }
    }

    #[test]
    fn issued_token_verifies_and_unseals() {
        let svc = service();
        let issued = svc.issue(&creds());
        let claims = svc.verify(&issued.token).expect("valid token");
        assert_eq!(claims.subject, "alice@example.test");
        assert_eq!(claims.credentials.password.expose_secret(), "s3cret-päss");
    }

    #[test]
    fn password_is_not_readable_from_the_token() {
        let issued = service().issue(&creds());
        let payload = issued.token.split('.').nth(1).expect("payload");
        let json =
            String::from_utf8(URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("utf8");
        assert!(!json.contains("s3cret"));
        assert!(
            !issued
                .token
                .contains(&URL_SAFE_NO_PAD.encode("s3cret-päss"))
        );
    }

    #[test]
    fn any_flipped_bit_is_refused() {
        let svc = service();
        let token = svc.issue(&creds()).token;
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            if let Ok(t) = String::from_utf8(bytes)
                && t != token
            {
                assert!(svc.verify(&t).is_err(), "tampered at {i}");
            }
        }
    }

    #[test]
    fn other_key_and_revocation_are_refused() {
        let svc = service();
        let token = svc.issue(&creds()).token;
        let other = TokenService::new(&[8u8; 32], Duration::from_secs(600));
        assert_eq!(other.verify(&token).unwrap_err(), TokenError::Invalid);
        let claims = svc.verify(&token).expect("valid");
        svc.revoke(&claims);
        assert_eq!(svc.verify(&token).unwrap_err(), TokenError::Revoked);
    }

    #[test]
    fn expired_token_is_refused() {
        let svc = TokenService::new(&[7u8; 32], Duration::from_secs(0));
        let token = svc.issue(&creds()).token;
        // Past the 5 s leeway.
        let mut claims: Claims = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).expect("payload"))
                .expect("b64"),
        )
        .expect("json");
        claims.exp = now() - 10;
        let resigned = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &svc.encoding)
            .expect("sign");
        assert_eq!(svc.verify(&resigned).unwrap_err(), TokenError::Expired);
    }

    #[test]
    fn tickets_are_single_use_and_not_bearer_tokens() {
        let svc = service();
        let access = svc.issue(&creds()).token;
        let claims = svc.verify(&access).expect("valid");
        let ticket = svc.issue_ticket(&claims);
        assert!(ticket.expires_in <= 60);
        assert_eq!(
            svc.verify(&ticket.token).unwrap_err(),
            TokenError::Invalid,
            "a ticket is no bearer token"
        );
        assert_eq!(
            svc.redeem_ticket(&access).unwrap_err(),
            TokenError::Invalid,
            "a bearer token is no ticket"
        );
        let redeemed = svc.redeem_ticket(&ticket.token).expect("first use");
        assert_eq!(redeemed.credentials.password.expose_secret(), "s3cret-päss");
        assert_eq!(
            svc.redeem_ticket(&ticket.token).unwrap_err(),
            TokenError::Revoked,
            "second use"
        );
        let second = svc.issue_ticket(&claims);
        svc.revoke(&claims);
        assert_eq!(
            svc.redeem_ticket(&second.token).unwrap_err(),
            TokenError::Revoked,
            "logout kills tickets"
        );
    }

    #[test]
    fn unsigned_token_is_refused() {
        let svc = service();
        let token = svc.issue(&creds()).token;
        let mut parts = token.split('.');
        let _ = parts.next();
        let payload = parts.next().expect("payload");
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(svc.verify(&format!("{none_header}.{payload}.")).is_err());
    }
}
