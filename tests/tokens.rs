//! Rotating the token secret: a bridge restarted with a new secret keeps accepting the tokens
//! of the old one while it is listed as previous, signs new tokens under the new key's id, and a
//! bridge that no longer knows the old secret refuses its tokens.

mod common;

use clap::Parser as _;
use common::bridge::{Link, TestBridge, assert_problem, config_for, json_of};
use common::dovecot::{Dovecot, DovecotOptions};
use imap_bridge::auth::key_id;
use imap_bridge::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const OLD_SECRET: &str = "the-old-secret-that-is-at-least-32-bytes";
const NEW_SECRET: &str = "the-new-secret-that-is-at-least-32-bytes";

/// A bridge on the Dovecot of an existing [`TestBridge`], with secrets of its own: the same
/// bridge restarted with new settings, or another replica. (`TestBridge::restart` keeps the
/// settings, and `TestBridge::serve` wants a Dovecot of its own.)
struct Replica {
    base: String,
    http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Replica {
    async fn start(dovecot: &Dovecot, secret: &str, previous: &[&str]) -> Self {
        let mut config = config_for(dovecot, Link::Tls);
        config.jwt_secret = Some(secret.to_owned());
        config.jwt_previous_secrets = previous.iter().map(|s| (*s).to_owned()).collect();
        let state = imap_bridge::build_state(config).expect("valid config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(imap_bridge::serve_with_state(state, listener, async move {
            let _ = rx.await;
        }));
        Replica {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    async fn call(&self, method: Method, path: &str, token: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        json_of(res).await
    }

    async fn mailboxes(&self, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, "/v1/mailboxes", token).await
    }

    async fn login(&self) -> String {
        let res = self
            .http
            .post(format!("{}/v1/auth/login", self.base))
            .json(&serde_json::json!({
                "username": common::bridge::USER,
                "password": common::bridge::PASSWORD,
            }))
            .send()
            .await
            .expect("login");
        let (status, body) = json_of(res).await;
        assert_eq!(status, StatusCode::OK, "login: {body}");
        body["access_token"].as_str().expect("token").to_owned()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("bridge task").expect("bridge ran");
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("a JWT header")
        .kid
        .expect("a kid")
}

async fn bridge_with_old_secret() -> TestBridge {
    TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.jwt_secret = Some(OLD_SECRET.to_owned());
    })
    .await
}

#[tokio::test]
async fn a_bridge_restarted_with_a_new_secret_keeps_old_tokens_and_signs_with_the_new_one() {
    let mut bridge = bridge_with_old_secret().await;
    let old = bridge.login().await;
    assert_eq!(kid_of(&old), key_id(OLD_SECRET.as_bytes()));
    bridge.stop().await;

    let rotated = Replica::start(&bridge.dovecot, NEW_SECRET, &[OLD_SECRET]).await;
    let (status, body) = rotated.mailboxes(&old).await;
    assert_eq!(status, StatusCode::OK, "the old token still works: {body}");
    assert_eq!(body["mailboxes"][0]["name"], "INBOX");

    let new = rotated.login().await;
    assert_eq!(kid_of(&new), key_id(NEW_SECRET.as_bytes()));
    assert_ne!(kid_of(&new), kid_of(&old));
    assert_eq!(rotated.mailboxes(&new).await.0, StatusCode::OK);
    rotated.stop().await;
}

#[tokio::test]
async fn a_bridge_without_the_old_secret_answers_old_tokens_with_401() {
    let bridge = bridge_with_old_secret().await;
    let old = bridge.login().await;

    let fresh = Replica::start(&bridge.dovecot, NEW_SECRET, &[]).await;
    assert_problem(
        &fresh.mailboxes(&old).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a token of a secret the bridge no longer knows",
    );
    let new = fresh.login().await;
    assert_eq!(fresh.mailboxes(&new).await.0, StatusCode::OK);
    assert_problem(
        &bridge.get_json(&new, "/v1/mailboxes").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a bridge not yet given the new secret refuses its tokens",
    );
    assert_eq!(
        bridge.get_json(&old, "/v1/mailboxes").await.0,
        StatusCode::OK,
        "while its own tokens still work there"
    );
    fresh.stop().await;
}

#[tokio::test]
async fn logout_revokes_an_old_token_on_the_rotated_bridge() {
    let mut bridge = bridge_with_old_secret().await;
    let old = bridge.login().await;
    bridge.stop().await;

    let rotated = Replica::start(&bridge.dovecot, NEW_SECRET, &[OLD_SECRET]).await;
    let new = rotated.login().await;
    assert_eq!(rotated.mailboxes(&old).await.0, StatusCode::OK);

    let (status, _) = rotated.call(Method::POST, "/v1/auth/logout", &old).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let refused = rotated.mailboxes(&old).await;
    assert_problem(
        &refused,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the token after logout",
    );
    assert!(
        refused.1["detail"]
            .as_str()
            .is_some_and(|d| d.contains("revoked")),
        "{}",
        refused.1
    );
    assert_problem(
        &rotated.call(Method::POST, "/v1/auth/logout", &old).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a second logout with the same token",
    );
    assert_eq!(
        rotated.mailboxes(&new).await.0,
        StatusCode::OK,
        "only the token that logged out is revoked"
    );
    rotated.stop().await;
}

#[test]
fn a_short_previous_secret_is_refused_at_start_up() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = runtime.enter();
    let with_previous = |list: &str| {
        Config::parse_from([
            "imap-bridge",
            "--jwt-secret",
            NEW_SECRET,
            "--jwt-previous-secrets",
            list,
        ])
    };
    let err = imap_bridge::build_state(with_previous(&format!("{OLD_SECRET},tiny-secret")))
        .err()
        .expect("refused");
    let message = err.to_string();
    assert!(
        message.contains("IMAP_BRIDGE_JWT_PREVIOUS_SECRETS") && message.contains("number 2"),
        "{message}"
    );
    assert!(
        !message.contains("tiny-secret"),
        "the error names no secret"
    );
    assert!(
        imap_bridge::build_state(with_previous(&format!("{OLD_SECRET},"))).is_ok(),
        "a trailing comma adds no secret"
    );
}
