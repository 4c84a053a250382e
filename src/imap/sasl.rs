//! SASL client responses for AUTHENTICATE: PLAIN (RFC 4616) for passwords, OAUTHBEARER
//! (RFC 7628) and XOAUTH2 (Google's and Microsoft's) for OAuth 2.0 access tokens, and the
//! error a server reports for a refused token.
//!
//! Every response is built from values the HTTP layer validated (no NUL, CR or LF in names and
//! passwords; tokens of RFC 6750's `b64token` characters) and sent base64-encoded, so nothing a
//! caller sends can end the line or add a SASL field. Responses are secrets: they are kept in
//! [`SecretString`] and never logged.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use zeroize::Zeroizing;

/// What a client sends to end an exchange after the server's error challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// An empty response (XOAUTH2, PLAIN).
    Empty,
    /// A lone `%x01`, base64 `AQ==` (RFC 7628 §3.2.3).
    Kvsep,
}

impl Abort {
    /// The line to send, CRLF included.
    pub fn response(self) -> &'static str {
        match self {
            Abort::Empty => "\r\n",
            Abort::Kvsep => "AQ==\r\n",
        }
    }
}

fn encoded(message: &[u8]) -> SecretString {
    SecretString::from(STANDARD.encode(message))
}

/// PLAIN: no authorization identity, `NUL user NUL password`.
pub fn plain(username: &str, password: &str) -> SecretString {
    let mut message = Zeroizing::new(Vec::with_capacity(username.len() + password.len() + 2));
    message.push(0);
    message.extend_from_slice(username.as_bytes());
    message.push(0);
    message.extend_from_slice(password.as_bytes());
    encoded(&message)
}

/// XOAUTH2: `user=… ^A auth=Bearer … ^A ^A`.
pub fn xoauth2(username: &str, token: &str) -> SecretString {
    let message = Zeroizing::new(format!("user={username}\x01auth=Bearer {token}\x01\x01"));
    encoded(message.as_bytes())
}

/// OAUTHBEARER: the GS2 header naming the user (`,` and `=` escaped as RFC 5801 says), then
/// the server's host and port and the token as key-value pairs.
pub fn oauthbearer(username: &str, host: &str, port: u16, token: &str) -> SecretString {
    let user = username.replace('=', "=3D").replace(',', "=2C");
    let message = Zeroizing::new(format!(
        "n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
    ));
    encoded(message.as_bytes())
}

/// What a server's error challenge says about a refused token, for the caller (`status
/// invalid_token, scope mail`): RFC 7628 §3.2.2 (and Google's XOAUTH2) send a JSON object with
/// `status`, `scope` and `schemes`. `None` when it is not such an object.
pub fn describe_error(challenge: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(challenge).ok()?;
    let object = value.as_object()?;
    let field = |name: &str| {
        object.get(name).and_then(|v| match v {
            serde_json::Value::String(s) => Some(printable(s)),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let status = field("status")?;
    let mut text = format!("status {status}");
    if let Some(scope) = field("scope") {
        text.push_str(&format!(", scope {scope}"));
    }
    Some(text)
}

/// Server text fit to pass on: printable, bounded.
pub fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn decoded(response: &SecretString) -> Vec<u8> {
        STANDARD.decode(response.expose_secret()).expect("base64")
    }

    #[test]
    fn plain_is_nul_separated_without_an_authorization_identity() {
        assert_eq!(
            decoded(&plain("alice", "s3cret-Pässwort")),
            b"\0alice\0s3cret-P\xc3\xa4sswort"
        );
    }

    #[test]
    fn xoauth2_matches_googles_example_layout() {
        assert_eq!(
            decoded(&xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")),
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
    }

    #[test]
    fn oauthbearer_escapes_the_user_in_its_gs2_header() {
        assert_eq!(
            decoded(&oauthbearer("a,b=c@example.com", "imap.example.com", 993, "tok")),
            b"n,a=a=2Cb=3Dc@example.com,\x01host=imap.example.com\x01port=993\x01auth=Bearer tok\x01\x01"
        );
    }

    #[test]
    fn error_challenges_are_described_without_echoing_anything_else() {
        let google = br#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#;
        assert_eq!(
            describe_error(google).as_deref(),
            Some("status 401, scope https://mail.google.com/")
        );
        let dovecot = br#"{"status":"invalid_token","schemes":"bearer","scope":"mail"}"#;
        assert_eq!(
            describe_error(dovecot).as_deref(),
            Some("status invalid_token, scope mail")
        );
        let hostile = b"{\"status\":\"x\\r\\n\\u0000y\"}";
        assert_eq!(describe_error(hostile).as_deref(), Some("status xy"));
        assert_eq!(describe_error(b"not json"), None);
        assert_eq!(describe_error(b"[1,2]"), None);
    }

    #[test]
    fn the_abort_responses_are_what_the_mechanisms_require() {
        assert_eq!(Abort::Empty.response(), "\r\n");
        assert_eq!(STANDARD.decode("AQ==").expect("base64"), b"\x01");
        assert_eq!(Abort::Kvsep.response(), "AQ==\r\n");
    }
}
