//! Access tokens: JWTs that carry the user's IMAP credentials sealed under the server's key.
//!
//! Any replica holding the same secret can verify a token and re-open the user's IMAP session,
//! and a restart loses no login. The password is sealed with XChaCha20-Poly1305 bound to the
//! token's `jti` and `sub`, so it is unreadable from the token and any tampering fails
//! verification. Signing and sealing use separate keys derived from the one secret.
//!
//! Secrets rotate without logging anybody out: every token names the secret it was made with in
//! its header's `kid` (a one-way fingerprint, never the secret), new tokens always use the
//! current secret, and tokens of the previous secrets keep working until they expire. The `kid`
//! only selects which keys to try; the algorithm stays pinned to HS256 whatever the header says.
//!
//! Logged-out tokens and used tickets are remembered until the token would have expired anyway,
//! each in a bounded cache that forgets expired entries by itself (see [`SpentIds`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use moka::notification::RemovalCause;
use moka::sync::Cache;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::imap::{Credentials, OAuthMechanism, Secret, Upstream};
use crate::keys::derive;

/// Why a token was refused. Deliberately coarse: callers learn only that it is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Bad signature, bad shape, wrong algorithm, unknown key, tampered or undecryptable
    /// credentials.
    #[error("invalid token")]
    Invalid,
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
    /// Signed out.
    #[error("token revoked")]
    Revoked,
}

/// Why the service cannot be keyed with the secrets it was given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The current secret is too short to be a key.
    #[error("the current secret is shorter than {MIN_SECRET_LEN} bytes")]
    CurrentTooShort,
    /// A previous secret (1-based position in the list) is too short to be a key.
    #[error("previous secret number {0} is shorter than {MIN_SECRET_LEN} bytes")]
    PreviousTooShort(usize),
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
    /// For a ticket, when that access token expires: a stream the ticket opens ends then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pexp: Option<u64>,
    /// Sealed secret: base64url(nonce ‖ ciphertext).
    cred: String,
    /// What the sealed secret is: absent for a password; `token` for an OAuth 2.0 access
    /// token whose mechanism the server's offer decides, or the mechanism the caller chose
    /// (`oauthbearer`, `xoauth2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    /// The IMAP server the caller chose at login from the operator's allow-list; absent for
    /// the configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    srv: Option<Upstream>,
}

/// The `auth` claim of an access token whose mechanism the server's offer decides.
const TOKEN_AUTH: &str = "token";

const ACCESS: &str = "access";
const TICKET: &str = "ticket";

const SIGNING_LABEL: &[u8] = b"imap-bridge/jwt-hs256/v1";
const SEALING_LABEL: &[u8] = b"imap-bridge/credential-seal/v1";
const KID_LABEL: &[u8] = b"imap-bridge/kid/v1";

/// Clock skew tolerated on `exp` and `iat`, in seconds.
const LEEWAY: u64 = 5;

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
    /// For a ticket, the id of the access token it was issued under.
    pub parent: Option<String>,
    /// When the access token behind this one expires (seconds since the epoch): its own
    /// expiry, or for a ticket that of its access token. An event stream ends then.
    pub session_expires_at: u64,
    /// The IMAP credentials, unsealed.
    pub credentials: Credentials,
    /// The allow-listed IMAP server chosen at login, if not the configured one.
    pub server: Option<Upstream>,
}

/// A freshly issued token.
#[derive(Debug)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// The keys derived from one secret. Only the derived keys are kept, never the secret.
struct KeySet {
    kid: String,
    decoding: DecodingKey,
    seal_key: Zeroizing<[u8; 32]>,
}

impl KeySet {
    fn new(secret: &[u8]) -> Self {
        let signing = derive(secret, SIGNING_LABEL);
        KeySet {
            kid: key_id(secret),
            decoding: DecodingKey::from_secret(signing.as_ref()),
            seal_key: derive(secret, SEALING_LABEL),
        }
    }
}

/// Issues, verifies and revokes access tokens.
pub struct TokenService {
    /// Signs new tokens; belongs to `keys[0]`.
    encoding: EncodingKey,
    /// The current secret's keys first, then those of the previous secrets.
    keys: Vec<KeySet>,
    validation: Validation,
    ttl: Duration,
    /// Logged-out access tokens.
    revoked: SpentIds,
    /// Tickets that opened their event stream.
    used_tickets: SpentIds,
    /// Counts revocations, so open event streams learn of them.
    revocations: watch::Sender<u64>,
}

/// Most logged-out tokens remembered at once, per replica: 28 logouts a second for an hour
/// (the default token lifetime), in about 34 MiB when full (`tests/bounded_state.rs`).
pub const MAX_REVOKED: u64 = 100_000;

/// Most used tickets remembered at once, per replica: 1,600 event streams opened a second for
/// a minute (a ticket's lifetime), in about 34 MiB when full.
pub const MAX_USED_TICKETS: u64 = 100_000;

/// Token ids that must not be accepted again — logged-out tokens, used tickets — each until its
/// token expires, when it is forgotten by itself.
///
/// At most `capacity` ids are held. The cache evicts the least recently used id when full, and
/// forgetting an id early would make its token valid again, so instead the set fails closed:
/// it keeps the latest expiry of the ids it evicted, and refuses every token that expires no
/// later (every token issued no later than the evicted one). Only a flood of `capacity` logouts
/// (or used tickets) within one token lifetime on one replica gets there, and then the tokens
/// issued before the flood must log in again; nothing unbounded and nothing silently valid.
pub struct SpentIds {
    ids: Cache<u128, u64>,
    evicted_until: Arc<AtomicU64>,
}

/// Keeps each id until its token's expiry (seconds since the epoch) plus the leeway.
struct UntilTokenExpiry;

impl moka::Expiry<u128, u64> for UntilTokenExpiry {
    fn expire_after_create(&self, _: &u128, expires_at: &u64, _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(
            (expires_at + LEEWAY + 1).saturating_sub(now()),
        ))
    }
}

impl SpentIds {
    /// An empty set holding at most `capacity` ids.
    pub fn new(capacity: u64) -> Self {
        let evicted_until = Arc::new(AtomicU64::new(0));
        let evicted = evicted_until.clone();
        SpentIds {
            ids: Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(UntilTokenExpiry)
                .eviction_listener(move |_, expires_at, cause| {
                    if cause == RemovalCause::Size {
                        evicted.fetch_max(expires_at, Ordering::SeqCst);
                    }
                })
                .build(),
            evicted_until,
        }
    }

    /// Adds the id `jti` of a token that expires at `expires_at`.
    pub fn insert(&self, jti: &str, expires_at: u64) {
        self.ids.insert(id_key(jti), expires_at);
    }

    /// Adds `jti` if it is not there yet: `false` when it was (a second use).
    pub fn spend(&self, jti: &str, expires_at: u64) -> bool {
        !self.holds(jti, expires_at) && self.ids.entry(id_key(jti)).or_insert(expires_at).is_fresh()
    }

    /// Whether the token `jti`, expiring at `expires_at`, must be refused: its id is held, or
    /// it expires no later than an id that was evicted to make room.
    pub fn holds(&self, jti: &str, expires_at: u64) -> bool {
        expires_at <= self.evicted_until.load(Ordering::SeqCst)
            || self.ids.contains_key(&id_key(jti))
    }

    /// Ids held now (runs the cache's pending upkeep first).
    pub fn len(&self) -> u64 {
        self.ids.run_pending_tasks();
        self.ids.entry_count()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A token id as kept: 128 bits of its SHA-256, the same size whatever the id.
fn id_key(jti: &str) -> u128 {
    let digest = Sha256::digest(jti.as_bytes());
    u128::from_le_bytes(digest[..16].try_into().expect("16 bytes"))
}

/// Smallest accepted secret.
pub const MIN_SECRET_LEN: usize = 32;

/// The `kid` that tokens made with `secret` carry: the first 8 bytes of
/// HMAC-SHA256(secret, "imap-bridge/kid/v1"), in hex. It tells secrets apart without revealing
/// anything a token's signature does not already.
pub fn key_id(secret: &[u8]) -> String {
    derive(secret, KID_LABEL)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl TokenService {
    /// A service issuing tokens valid for `ttl` under `current`, and still accepting the
    /// unexpired tokens of the `previous` secrets. Every secret must be at least
    /// [`MIN_SECRET_LEN`] bytes; empty entries of `previous` (a trailing comma in the setting)
    /// are skipped, as are repeats.
    pub fn new<S: AsRef<[u8]>>(
        current: &[u8],
        previous: &[S],
        ttl: Duration,
    ) -> Result<Self, KeyError> {
        if current.len() < MIN_SECRET_LEN {
            return Err(KeyError::CurrentTooShort);
        }
        let mut keys = vec![KeySet::new(current)];
        for (position, secret) in previous.iter().enumerate() {
            let secret = secret.as_ref();
            if secret.is_empty() {
                continue;
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(KeyError::PreviousTooShort(position + 1));
            }
            let set = KeySet::new(secret);
            // Equal kids mean the same secret (two secrets sharing a 64-bit fingerprint would
            // only make the shadowed one's tokens fail, never verify under the wrong key).
            if keys.iter().all(|k| k.kid != set.kid) {
                keys.push(set);
            }
        }
        tracing::info!(
            current_kid = %keys[0].kid,
            previous_kids = ?keys[1..].iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            "token keys ready"
        );
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY;
        // jsonwebtoken itself checks only `exp` and `sub` of these; `iat` and `jti` are
        // required by `Claims` having no default for them.
        validation.set_required_spec_claims(&["exp", "iat", "jti", "sub"]);
        validation.validate_aud = false;
        Ok(TokenService {
            encoding: EncodingKey::from_secret(derive(current, SIGNING_LABEL).as_ref()),
            keys,
            validation,
            ttl,
            revoked: SpentIds::new(MAX_REVOKED),
            used_tickets: SpentIds::new(MAX_USED_TICKETS),
            revocations: watch::Sender::new(0),
        })
    }

    /// Issues an access token for `credentials`.
    pub fn issue(&self, credentials: &Credentials) -> IssuedToken {
        self.issue_for(credentials, None)
    }

    /// Issues an access token for `credentials` on `server` (an allow-listed server the
    /// caller chose; `None` for the configured one).
    pub fn issue_for(&self, credentials: &Credentials, server: Option<&Upstream>) -> IssuedToken {
        IssuedToken {
            token: self.mint(ACCESS, credentials, server, self.ttl, None),
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
                claims.server.as_ref(),
                ttl,
                Some((claims.token_id.clone(), claims.session_expires_at)),
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
        if !self.used_tickets.spend(&claims.token_id, claims.expires_at) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    fn mint(
        &self,
        typ: &str,
        credentials: &Credentials,
        server: Option<&Upstream>,
        ttl: Duration,
        parent: Option<(String, u64)>,
    ) -> String {
        let current = &self.keys[0];
        let now = now();
        let jti = uuid::Uuid::new_v4().simple().to_string();
        let (secret, auth) = match &credentials.secret {
            Secret::Password(password) => (password, None),
            Secret::AccessToken {
                token, mechanism, ..
            } => (
                token,
                Some(match mechanism {
                    None => TOKEN_AUTH,
                    Some(OAuthMechanism::Oauthbearer) => "oauthbearer",
                    Some(OAuthMechanism::Xoauth2) => "xoauth2",
                }),
            ),
        };
        let cred = seal(
            &current.seal_key,
            &jti,
            &credentials.username,
            secret.expose_secret().as_bytes(),
        );
        let claims = Claims {
            sub: credentials.username.clone(),
            iat: now,
            exp: now + ttl.as_secs(),
            jti,
            typ: typ.to_owned(),
            pexp: parent.as_ref().map(|(_, exp)| *exp),
            parent: parent.map(|(jti, _)| jti),
            cred,
            auth: auth.map(str::to_owned),
            srv: server.cloned(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(current.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .expect("HS256 signing with a valid key cannot fail")
    }

    /// The key set a token names, if its header is one of ours: HS256, a known `kid`, no
    /// critical extensions (we understand none, so RFC 7515 says refuse).
    fn keys_for(&self, token: &str) -> Result<&KeySet, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::HS256 || header.crit.is_some() {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        self.keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::Invalid)
    }

    fn check(&self, token: &str, typ: &str) -> Result<TokenClaims, TokenError> {
        let keys = self.keys_for(token)?;
        // The validation still allows HS256 only: the header's `alg` picks nothing.
        let data = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let claims = data.claims;
        if claims.typ != typ || claims.iat > now() + LEEWAY {
            return Err(TokenError::Invalid);
        }
        let session_expires_at = match &claims.parent {
            Some(_) => claims.pexp.unwrap_or(claims.exp),
            None => claims.exp,
        };
        // A ticket dies with the access token it was issued under.
        if self.revoked.holds(&claims.jti, claims.exp)
            || claims
                .parent
                .as_ref()
                .is_some_and(|p| self.revoked.holds(p, session_expires_at))
        {
            return Err(TokenError::Revoked);
        }
        let secret = unseal(&keys.seal_key, &claims.jti, &claims.sub, &claims.cred)?;
        let secret = SecretString::from(
            String::from_utf8(secret.to_vec()).map_err(|_| TokenError::Invalid)?,
        );
        let secret = match claims.auth.as_deref() {
            None => Secret::Password(secret),
            Some(auth) => Secret::AccessToken {
                token: secret,
                mechanism: match auth {
                    TOKEN_AUTH => None,
                    "oauthbearer" => Some(OAuthMechanism::Oauthbearer),
                    "xoauth2" => Some(OAuthMechanism::Xoauth2),
                    _ => return Err(TokenError::Invalid),
                },
                issued_at: claims.iat,
            },
        };
        Ok(TokenClaims {
            credentials: Credentials {
                username: claims.sub.clone(),
                secret,
            },
            subject: claims.sub,
            token_id: claims.jti,
            expires_at: claims.exp,
            parent: claims.parent,
            session_expires_at,
            server: claims.srv,
        })
    }

    /// Revokes a token until it would have expired anyway, and tells whoever follows
    /// [`TokenService::revocations`].
    pub fn revoke(&self, claims: &TokenClaims) {
        self.revoked.insert(&claims.token_id, claims.expires_at);
        self.revocations.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes with every revocation on this replica; holders check
    /// [`TokenService::is_revoked`] for the token they care about.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Whether the token `claims` came from, or (for a ticket) its access token, has been
    /// revoked since it was verified.
    pub fn is_revoked(&self, claims: &TokenClaims) -> bool {
        self.revoked.holds(&claims.token_id, claims.expires_at)
            || claims
                .parent
                .as_ref()
                .is_some_and(|p| self.revoked.holds(p, claims.session_expires_at))
    }

    /// Logged-out tokens remembered now.
    pub fn revoked_count(&self) -> u64 {
        self.revoked.len()
    }
}

fn seal(key: &[u8; 32], jti: &str, sub: &str, secret: &[u8]) -> String {
    let cipher = XChaCha20Poly1305::new(key.into());
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

fn unseal(
    key: &[u8; 32],
    jti: &str,
    sub: &str,
    sealed: &str,
) -> Result<Zeroizing<Vec<u8>>, TokenError> {
    let raw = URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| TokenError::Invalid)?;
    if raw.len() < 24 + 16 {
        return Err(TokenError::Invalid);
    }
    let (nonce, ciphertext) = raw.split_at(24);
    let cipher = XChaCha20Poly1305::new(key.into());
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

fn associated_data(jti: &str, sub: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(jti.len() + sub.len() + 1);
    aad.extend_from_slice(jti.as_bytes());
    aad.push(0);
    aad.extend_from_slice(sub.as_bytes());
    aad
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    use hmac::{Hmac, Mac};
    use serde_json::{Value, json};

    const A: [u8; 32] = [7u8; 32];
    const B: [u8; 32] = [8u8; 32];
    const C: [u8; 32] = [9u8; 32];
    const NO_PREVIOUS: &[&[u8]] = &[];
    const PASSWORD: &str = "s3cret-päss";

    fn service() -> TokenService {
        keyed(&A, NO_PREVIOUS)
    }

    fn keyed(current: &[u8], previous: &[&[u8]]) -> TokenService {
        TokenService::new(current, previous, Duration::from_secs(600)).expect("valid secrets")
    }

    fn creds() -> Credentials {
        Credentials {
            username: "alice@example.test".into(),
            secret: Secret::Password(SecretString::from(PASSWORD.to_owned())),
        }
    }

    fn decode_part(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
    }

    /// A token's header and claims as JSON.
    fn secret_of(credentials: &Credentials) -> &str {
        match &credentials.secret {
            Secret::Password(p) => p.expose_secret(),
            Secret::AccessToken { token, .. } => token.expose_secret(),
        }
    }

    #[test]
    fn access_tokens_come_back_as_access_tokens_with_their_mechanism() {
        let service = service();
        for mechanism in [
            None,
            Some(OAuthMechanism::Oauthbearer),
            Some(OAuthMechanism::Xoauth2),
        ] {
            let credentials = Credentials {
                username: "alice@example.com".into(),
                secret: Secret::AccessToken {
                    token: SecretString::from("ya29.a0AfH6SMB".to_owned()),
                    mechanism,
                    issued_at: 0,
                },
            };
            let issued = service.issue(&credentials);
            assert!(!issued.token.contains("ya29"), "the token is sealed");
            let claims = service.verify(&issued.token).expect("valid");
            match claims.credentials.secret {
                Secret::AccessToken {
                    token,
                    mechanism: back,
                    issued_at,
                } => {
                    assert_eq!(token.expose_secret(), "ya29.a0AfH6SMB");
                    assert_eq!(back, mechanism);
                    assert!(issued_at > 0, "issued_at is the token's iat");
                }
                Secret::Password(_) => panic!("an access token came back as a password"),
            }
        }
        let password = service.issue(&creds());
        assert!(matches!(
            service
                .verify(&password.token)
                .expect("valid")
                .credentials
                .secret,
            Secret::Password(_)
        ));
    }

    fn open(token: &str) -> (Value, Value) {
        let mut parts = token.split('.');
        let header = decode_part(parts.next().expect("header"));
        let claims = decode_part(parts.next().expect("payload"));
        (header, claims)
    }

    /// The header our own tokens carry for `secret`.
    fn header_for(secret: &[u8]) -> Value {
        json!({"typ": "JWT", "alg": "HS256", "kid": key_id(secret)})
    }

    /// Any header and claims, with a genuine HS256 signature by `secret`'s signing key: what an
    /// attacker could only make with the key, so every refusal below is the check under test.
    fn forge(secret: &[u8], header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let key = derive(secret, SIGNING_LABEL);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()).expect("key");
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// Every run of base64 characters `data` produces wherever it sits in a longer encoded
    /// string: one per alignment, standard and URL-safe alphabets.
    fn base64_fragments(data: &[u8]) -> Vec<Vec<u8>> {
        let mut fragments = Vec::new();
        for engine in [&STANDARD, &URL_SAFE] {
            for offset in 0..3 {
                let mut shifted = vec![0u8; offset];
                shifted.extend_from_slice(data);
                let text = engine.encode(&shifted);
                let start = (offset * 4).div_ceil(3);
                let end = (offset + data.len()) * 8 / 6;
                fragments.push(text.as_bytes()[start..end].to_vec());
            }
        }
        fragments
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn issued_token_verifies_and_unseals() {
        let svc = service();
        let issued = svc.issue(&creds());
        let claims = svc.verify(&issued.token).expect("valid token");
        assert_eq!(claims.subject, "alice@example.test");
        assert_eq!(secret_of(&claims.credentials), PASSWORD);
    }

    #[test]
    fn password_is_not_readable_from_the_token() {
        let issued = service().issue(&creds());
        let payload = issued.token.split('.').nth(1).expect("payload");
        let json =
            String::from_utf8(URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("utf8");
        assert!(!json.contains("s3cret"));
        assert!(!issued.token.contains(&URL_SAFE_NO_PAD.encode(PASSWORD)));
    }

    #[test]
    fn the_password_appears_in_no_encoding_anywhere_in_the_token() {
        let password = PASSWORD.as_bytes();
        let utf16: Vec<u16> = PASSWORD.encode_utf16().collect();
        let mut needles = vec![
            password.to_vec(),
            utf16.iter().flat_map(|u| u.to_le_bytes()).collect(),
            utf16.iter().flat_map(|u| u.to_be_bytes()).collect(),
            password
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
            password
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
                .into_bytes(),
        ];
        needles.extend(base64_fragments(password));
        let svc = service();
        let mut seals = std::collections::HashSet::new();
        // Several tokens, so that no lucky nonce hides a leak.
        for _ in 0..20 {
            let token = svc.issue(&creds()).token;
            let (_, claims) = open(&token);
            let cred = claims["cred"].as_str().expect("cred").to_owned();
            let mut haystacks = vec![token.as_bytes().to_vec()];
            haystacks.extend(
                token
                    .split('.')
                    .map(|part| URL_SAFE_NO_PAD.decode(part).expect("base64url")),
            );
            haystacks.push(URL_SAFE_NO_PAD.decode(&cred).expect("sealed bytes"));
            for haystack in &haystacks {
                for needle in &needles {
                    assert!(
                        !contains(haystack, needle),
                        "found {:?} in the token",
                        String::from_utf8_lossy(needle)
                    );
                }
            }
            assert!(seals.insert(cred), "a fresh nonce for every token");
        }
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
    fn every_single_bit_flip_in_header_payload_or_signature_is_refused() {
        let svc = service();
        let token = svc.issue(&creds()).token;
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        for (p, part) in parts.iter().enumerate() {
            let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url");
            for i in 0..bytes.len() {
                for bit in 0..8 {
                    let mut flipped = bytes.clone();
                    flipped[i] ^= 1 << bit;
                    let mut tampered: Vec<String> = parts.iter().map(|s| (*s).to_owned()).collect();
                    tampered[p] = URL_SAFE_NO_PAD.encode(&flipped);
                    assert!(
                        svc.verify(&tampered.join(".")).is_err(),
                        "part {p}, byte {i}, bit {bit}"
                    );
                }
            }
        }
        // And in the text as sent: a flip in a last base64 character's unused bits included.
        for i in 0..token.len() {
            for bit in 0..7 {
                let mut bytes = token.clone().into_bytes();
                bytes[i] ^= 1 << bit;
                let tampered = String::from_utf8(bytes).expect("still ASCII");
                assert!(svc.verify(&tampered).is_err(), "character {i}, bit {bit}");
            }
        }
        assert!(svc.verify(&token).is_ok(), "the original still verifies");
    }

    #[test]
    fn sealed_credentials_fail_on_tampering_even_under_a_valid_signature() {
        let svc = service();
        let header = header_for(&A);
        let (_, claims) = open(&svc.issue(&creds()).token);
        assert!(
            svc.verify(&forge(&A, &header, &claims)).is_ok(),
            "the forger signs like the service"
        );
        let sealed = URL_SAFE_NO_PAD
            .decode(claims["cred"].as_str().expect("cred"))
            .expect("sealed bytes");
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut flipped = sealed.clone();
                flipped[i] ^= 1 << bit;
                let mut tampered = claims.clone();
                tampered["cred"] = json!(URL_SAFE_NO_PAD.encode(&flipped));
                assert_eq!(
                    svc.verify(&forge(&A, &header, &tampered)).unwrap_err(),
                    TokenError::Invalid,
                    "sealed byte {i}, bit {bit}"
                );
            }
        }
        // The seal is bound to its token and user: moved, re-addressed or cut, it fails.
        let (_, other) = open(&svc.issue(&creds()).token);
        let mut moved = other.clone();
        moved["cred"] = claims["cred"].clone();
        let mut readdressed = claims.clone();
        readdressed["sub"] = json!("mallory@example.test");
        let mut cut = claims.clone();
        cut["cred"] = json!(URL_SAFE_NO_PAD.encode(&sealed[..sealed.len() - 1]));
        let mut short = claims.clone();
        short["cred"] = json!(URL_SAFE_NO_PAD.encode(&sealed[..39]));
        for (what, tampered) in [
            ("moved", moved),
            ("readdressed", readdressed),
            ("cut", cut),
            ("short", short),
        ] {
            assert_eq!(
                svc.verify(&forge(&A, &header, &tampered)).unwrap_err(),
                TokenError::Invalid,
                "{what}"
            );
        }
    }

    #[test]
    fn other_key_and_revocation_are_refused() {
        let svc = service();
        let token = svc.issue(&creds()).token;
        let other = keyed(&B, NO_PREVIOUS);
        assert_eq!(other.verify(&token).unwrap_err(), TokenError::Invalid);
        let claims = svc.verify(&token).expect("valid");
        svc.revoke(&claims);
        assert_eq!(svc.verify(&token).unwrap_err(), TokenError::Revoked);
    }

    #[test]
    fn expired_token_is_refused() {
        let svc = TokenService::new(&A, NO_PREVIOUS, Duration::from_secs(0)).expect("keys");
        let token = svc.issue(&creds()).token;
        // Past the 5 s leeway.
        let mut claims: Claims = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).expect("payload"))
                .expect("b64"),
        )
        .expect("json");
        claims.exp = now() - 10;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key_id(&A));
        let resigned = jsonwebtoken::encode(&header, &claims, &svc.encoding).expect("sign");
        assert_eq!(svc.verify(&resigned).unwrap_err(), TokenError::Expired);
    }

    #[test]
    fn a_full_spent_set_refuses_what_it_had_to_forget_rather_than_accept_it_again() {
        let set = SpentIds::new(10);
        let soon = now() + 600;
        for i in 0..100u64 {
            set.insert(&format!("jti-{i}"), soon + i);
        }
        assert!(set.len() <= 10, "bounded: {}", set.len());
        for i in 0..100u64 {
            assert!(set.holds(&format!("jti-{i}"), soon + i), "jti-{i}");
        }
        assert!(
            set.holds("never-spent", soon),
            "a token issued before an evicted one is refused"
        );
        assert!(
            !set.holds("never-spent", soon + 1000),
            "a token issued after every evicted one is not"
        );
        assert!(set.spend("fresh", soon + 1000), "first use");
        assert!(!set.spend("fresh", soon + 1000), "second use");
    }

    #[test]
    fn spent_ids_are_forgotten_when_their_token_expires() {
        let set = SpentIds::new(10);
        // Past its leeway one to two seconds from now.
        let expiring = now() - LEEWAY;
        set.insert("expiring", expiring);
        set.insert("live", now() + 600);
        assert_eq!(set.len(), 2);
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(set.len(), 1, "the expired token's id is gone by itself");
        assert!(!set.holds("expiring", expiring));
        assert!(set.holds("live", now() + 600));
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
        assert_eq!(secret_of(&redeemed.credentials), PASSWORD);
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
    fn a_redeemed_ticket_knows_its_access_token_and_learns_of_its_revocation() {
        let svc = service();
        let claims = svc.verify(&svc.issue(&creds()).token).expect("valid");
        assert_eq!(claims.session_expires_at, claims.expires_at);
        let redeemed = svc
            .redeem_ticket(&svc.issue_ticket(&claims).token)
            .expect("ticket");
        assert_eq!(redeemed.parent.as_deref(), Some(claims.token_id.as_str()));
        assert_eq!(redeemed.session_expires_at, claims.expires_at);
        assert!(redeemed.expires_at <= claims.expires_at);
        let mut revocations = svc.revocations();
        assert!(!svc.is_revoked(&redeemed) && !svc.is_revoked(&claims));
        svc.revoke(&claims);
        assert!(revocations.has_changed().expect("open"));
        revocations.mark_unchanged();
        assert!(
            svc.is_revoked(&redeemed),
            "the stream's ticket dies with its token"
        );
        assert!(svc.is_revoked(&claims));
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

    #[test]
    fn the_header_names_the_key_by_a_fingerprint_of_the_current_secret() {
        let token = keyed(&B, &[&A]).issue(&creds()).token;
        let (header, _) = open(&token);
        assert_eq!(header, header_for(&B), "exactly typ, alg and kid");
        let kid = key_id(&B);
        assert_eq!(kid.len(), 16);
        assert!(kid.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(kid, key_id(&A));
        let secret_hex: String = B.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!secret_hex.contains(&kid), "the kid is not the secret");
    }

    #[test]
    fn tokens_of_a_previous_secret_still_verify_and_new_ones_use_the_current_secret() {
        let before = service();
        let old = before.issue(&creds()).token;
        let after = keyed(&B, &[&A]);
        let claims = after.verify(&old).expect("a token of the previous secret");
        assert_eq!(secret_of(&claims.credentials), PASSWORD);

        let new = after.issue(&creds()).token;
        assert_eq!(open(&new).0["kid"], json!(key_id(&B)));
        assert_eq!(
            before.verify(&new).unwrap_err(),
            TokenError::Invalid,
            "a replica not yet rotated refuses the new key"
        );
        // A ticket for an old token is made with the current keys.
        let ticket = after.issue_ticket(&claims).token;
        assert_eq!(open(&ticket).0["kid"], json!(key_id(&B)));
        assert!(after.redeem_ticket(&ticket).is_ok());
        // Revocation does not care which key made the token.
        after.revoke(&claims);
        assert_eq!(after.verify(&old).unwrap_err(), TokenError::Revoked);
    }

    #[test]
    fn tokens_of_a_removed_secret_are_refused() {
        let from_a = service().issue(&creds()).token;
        let from_b = keyed(&B, &[&A]).issue(&creds()).token;
        let latest = keyed(&C, &[&B]);
        assert!(latest.verify(&from_b).is_ok());
        assert_eq!(latest.verify(&from_a).unwrap_err(), TokenError::Invalid);
    }

    #[test]
    fn the_kid_picks_the_keys_and_a_mismatch_is_refused() {
        let svc = keyed(&B, &[&A]);
        let (_, sealed_by_b) = open(&svc.issue(&creds()).token);
        let (_, sealed_by_a) = open(&service().issue(&creds()).token);
        assert!(
            svc.verify(&forge(&B, &header_for(&B), &sealed_by_b))
                .is_ok()
        );
        assert!(
            svc.verify(&forge(&A, &header_for(&A), &sealed_by_a))
                .is_ok()
        );
        for (what, token) in [
            (
                "kid of A, signed by B",
                forge(&B, &header_for(&A), &sealed_by_b),
            ),
            (
                "kid of B, signed by A",
                forge(&A, &header_for(&B), &sealed_by_a),
            ),
            (
                "signed by B, sealed by A",
                forge(&B, &header_for(&B), &sealed_by_a),
            ),
            (
                "signed by A, sealed by B",
                forge(&A, &header_for(&A), &sealed_by_b),
            ),
        ] {
            assert_eq!(
                svc.verify(&token).unwrap_err(),
                TokenError::Invalid,
                "{what}"
            );
        }
    }

    #[test]
    fn a_missing_unknown_or_malformed_kid_is_refused() {
        let svc = service();
        let (_, claims) = open(&svc.issue(&creds()).token);
        for header in [
            json!({"typ": "JWT", "alg": "HS256"}),
            json!({"typ": "JWT", "alg": "HS256", "kid": key_id(&B)}),
            json!({"typ": "JWT", "alg": "HS256", "kid": ""}),
            json!({"typ": "JWT", "alg": "HS256", "kid": key_id(&A).to_uppercase()}),
            json!({"typ": "JWT", "alg": "HS256", "kid": null}),
            json!({"typ": "JWT", "alg": "HS256", "kid": 7}),
            json!({"typ": "JWT", "alg": "HS256", "kid": [key_id(&A)]}),
            json!({"typ": "JWT", "alg": "HS256", "kid": key_id(&A), "crit": ["exp"]}),
        ] {
            assert_eq!(
                svc.verify(&forge(&A, &header, &claims)).unwrap_err(),
                TokenError::Invalid,
                "{header}"
            );
        }
    }

    #[test]
    fn only_hs256_is_accepted_whatever_the_header_says() {
        let svc = service();
        let token = svc.issue(&creds()).token;
        let (_, claims) = open(&token);
        let payload = token.split('.').nth(1).expect("payload");
        let signature = token.split('.').nth(2).expect("signature");
        let kid = key_id(&A);
        for alg in ["none", "None", "NONE"] {
            let header =
                URL_SAFE_NO_PAD.encode(json!({"typ": "JWT", "alg": alg, "kid": kid}).to_string());
            for sig in ["", signature] {
                assert_eq!(
                    svc.verify(&format!("{header}.{payload}.{sig}"))
                        .unwrap_err(),
                    TokenError::Invalid,
                    "alg {alg}, signature {sig:?}"
                );
            }
        }
        // Other algorithms, the HMAC ones signed properly with our own signing key.
        let signing = EncodingKey::from_secret(derive(&A, SIGNING_LABEL).as_ref());
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = Some(kid.clone());
            let token = jsonwebtoken::encode(&header, &claims, &signing).expect("sign");
            assert_eq!(
                svc.verify(&token).unwrap_err(),
                TokenError::Invalid,
                "{alg:?}"
            );
        }
        // Every other name, with a signature that would pass as HS256.
        for alg in [
            "RS256", "RS512", "PS256", "ES256", "ES384", "EdDSA", "hs256", "HS256 ", "",
        ] {
            let header = json!({"typ": "JWT", "alg": alg, "kid": kid});
            assert_eq!(
                svc.verify(&forge(&A, &header, &claims)).unwrap_err(),
                TokenError::Invalid,
                "alg {alg:?}"
            );
        }
        let no_alg = json!({"typ": "JWT", "kid": kid});
        assert_eq!(
            svc.verify(&forge(&A, &no_alg, &claims)).unwrap_err(),
            TokenError::Invalid
        );
    }

    #[test]
    fn tokens_missing_a_claim_are_refused() {
        let svc = service();
        let (_, claims) = open(&svc.issue(&creds()).token);
        for claim in ["sub", "exp", "iat", "jti", "typ", "cred"] {
            let mut partial = claims.clone();
            partial
                .as_object_mut()
                .expect("object")
                .remove(claim)
                .expect("present");
            assert_eq!(
                svc.verify(&forge(&A, &header_for(&A), &partial))
                    .unwrap_err(),
                TokenError::Invalid,
                "without {claim}"
            );
        }
        for (claim, value) in [
            ("exp", json!(null)),
            ("exp", json!("9999999999")),
            ("iat", json!(-1)),
            ("iat", json!(null)),
            ("typ", json!("refresh")),
            ("sub", json!(null)),
        ] {
            let mut odd = claims.clone();
            odd[claim] = value.clone();
            assert_eq!(
                svc.verify(&forge(&A, &header_for(&A), &odd)).unwrap_err(),
                TokenError::Invalid,
                "{claim}: {value}"
            );
        }
    }

    #[test]
    fn issue_and_expiry_times_allow_only_a_small_leeway() {
        let svc = service();
        let (_, claims) = open(&svc.issue(&creds()).token);
        let now = now();
        let with = |claim: &str, value: u64| {
            let mut changed = claims.clone();
            changed[claim] = json!(value);
            svc.verify(&forge(&A, &header_for(&A), &changed))
        };
        assert!(with("iat", now + 2).is_ok(), "small clock skew is fine");
        assert_eq!(
            with("iat", now + 60).unwrap_err(),
            TokenError::Invalid,
            "issued in the future"
        );
        assert!(with("exp", now - 2).is_ok(), "within the leeway");
        assert_eq!(with("exp", now - 10).unwrap_err(), TokenError::Expired);
    }

    #[test]
    fn every_secret_must_be_long_enough_and_empty_entries_are_skipped() {
        let short = [1u8; MIN_SECRET_LEN - 1];
        let ttl = Duration::from_secs(600);
        assert_eq!(
            TokenService::new(&short, NO_PREVIOUS, ttl).err(),
            Some(KeyError::CurrentTooShort)
        );
        assert_eq!(
            TokenService::new(&A, &[&short[..]], ttl).err(),
            Some(KeyError::PreviousTooShort(1))
        );
        assert_eq!(
            TokenService::new(&A, &[&B[..], b"x"], ttl).err(),
            Some(KeyError::PreviousTooShort(2))
        );
        let message = KeyError::PreviousTooShort(2).to_string();
        assert!(
            message.contains("number 2") && message.contains("32"),
            "{message}"
        );
        let svc = keyed(&A, &[b"", &B, &A, &B]);
        assert_eq!(svc.keys.len(), 2, "repeats and empty entries add no key");
        assert!(
            svc.verify(&keyed(&B, NO_PREVIOUS).issue(&creds()).token)
                .is_ok()
        );
    }
}
