//! OAuth 2.0 logins to the IMAP server, as Gmail and Microsoft 365 need them, against a real
//! Dovecot whose `oauth2` passdb checks access tokens with a token introspection endpoint the
//! test runs (`tests/common/oauth.rs`, the identity provider's part). Dovecot offers
//! `AUTH=XOAUTH2` and `AUTH=OAUTHBEARER` beside passwords.

mod common;

use std::time::Duration;

use common::bridge::{Link, PASSWORD, TestBridge, USER, assert_problem, json_of};
use common::dovecot::DovecotOptions;
use common::oauth::Introspection;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A user who has no password, only access tokens.
const CAROL: &str = "carol@example.test";
const WAIT: Duration = Duration::from_secs(10);

fn mail(subject: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@example.test>\r\nTo: carol@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{}@example.test>\r\n\r\nHello.\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

/// Dovecot with OAuth 2.0 (and its default auth settings), the default password user and
/// `CAROL`, and a bridge over TLS.
async fn bridge_with_oauth() -> (TestBridge, Introspection) {
    let provider = Introspection::start();
    let opts = DovecotOptions {
        oauth2_introspection: Some(provider.url()),
        ..DovecotOptions::default()
    };
    let bridge = TestBridge::start_with(opts, Link::Tls, |_| {}).await;
    bridge.dovecot.add_token_user(CAROL);
    (bridge, provider)
}

async fn login(bridge: &TestBridge, body: Value) -> (StatusCode, Value) {
    json_of(
        bridge
            .request(Method::POST, "/v1/auth/login", None)
            .json(&body)
            .send()
            .await
            .expect("login request"),
    )
    .await
}

async fn token_login(bridge: &TestBridge, access_token: &str, mechanism: Option<&str>) -> String {
    let mut body = json!({"username": CAROL, "access_token": access_token});
    if let Some(m) = mechanism {
        body["mechanism"] = json!(m);
    }
    let (status, body) = login(bridge, body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn both_mechanisms_log_in_and_read_mail() {
    let (bridge, provider) = bridge_with_oauth().await;
    bridge
        .dovecot
        .deliver(CAROL, "INBOX", &mail("for carol"), "", None);
    for mechanism in [None, Some("oauthbearer"), Some("xoauth2")] {
        let access = provider.issue(CAROL);
        let asked = provider.asked();
        let token = token_login(&bridge, &access, mechanism).await;
        assert!(
            provider.asked() > asked,
            "{mechanism:?}: Dovecot checked the token with the provider"
        );
        let (status, list) = bridge
            .get_json(&token, "/v1/mailboxes/INBOX/messages")
            .await;
        assert_eq!(status, StatusCode::OK, "{mechanism:?}: {list}");
        assert_eq!(list["messages"][0]["subject"], "for carol");
        // The bridge token seals the access token: it cannot be read from it.
        assert!(!token.contains(&access[5..]), "the access token is sealed");
    }
}

#[tokio::test]
async fn wrong_and_revoked_tokens_are_401_with_the_servers_reason() {
    let (bridge, provider) = bridge_with_oauth().await;
    let revoked = provider.issue(CAROL);
    provider.revoke(&revoked);
    let bobs = provider.issue("bob@example.test");
    // Side by side: one after another, each would wait out Dovecot's growing auth penalty.
    let cases = [
        (
            json!({"username": CAROL, "access_token": "ya29.never-issued"}),
            "a token the provider never issued",
        ),
        (
            json!({"username": CAROL, "access_token": revoked, "mechanism": "xoauth2"}),
            "a revoked token",
        ),
        (
            json!({"username": CAROL, "access_token": bobs, "mechanism": "oauthbearer"}),
            "another user's token",
        ),
    ];
    let answers =
        futures::future::join_all(cases.iter().map(|(body, _)| login(&bridge, body.clone()))).await;
    for ((_, what), (status, body)) in cases.iter().zip(answers) {
        assert_problem(
            &(status, body.clone()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            what,
        );
        let detail = body["detail"].as_str().unwrap_or("");
        assert!(
            detail.contains("refused the access token (status "),
            "{what}: the server's SASL error is decoded into the detail: {body}"
        );
        assert!(
            !detail.contains("ya29"),
            "{what}: no token is echoed: {body}"
        );
    }
}

#[tokio::test]
async fn password_and_token_users_of_one_server_work_side_by_side() {
    let (bridge, provider) = bridge_with_oauth().await;
    let password_token = bridge.login().await;
    let access = provider.issue(CAROL);
    let token = token_login(&bridge, &access, None).await;
    for (who, token) in [(USER, &password_token), (CAROL, &token)] {
        let (status, body) = bridge.get_json(token, "/v1/mailboxes").await;
        assert_eq!(status, StatusCode::OK, "{who}: {body}");
    }
    // The password user's credentials are a password still: a wrong one is refused.
    let (status, body) = login(&bridge, json!({"username": USER, "password": "wrong"})).await;
    assert_problem(
        &(status, body),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a wrong password",
    );
    let (status, body) = login(&bridge, json!({"username": USER, "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_body_holds_a_password_or_an_access_token() {
    let (bridge, _provider) = bridge_with_oauth().await;
    for (body, what) in [
        (
            json!({"username": CAROL, "password": "x", "access_token": "ya29.a"}),
            "both",
        ),
        (json!({"username": CAROL}), "neither"),
        (
            json!({"username": CAROL, "password": "x", "mechanism": "xoauth2"}),
            "a mechanism with a password",
        ),
        (
            json!({"username": CAROL, "access_token": "ya29.a\u{1}auth=Bearer x"}),
            "a control character in the token",
        ),
        (
            json!({"username": CAROL, "access_token": "not a b64token"}),
            "a space in the token",
        ),
        (
            json!({"username": CAROL, "access_token": "a".repeat(16385)}),
            "a token over 16384 characters",
        ),
        (
            json!({"username": "carol\u{1}@example.test", "access_token": "ya29.a"}),
            "a control character in the user name",
        ),
        (
            json!({"username": CAROL, "access_token": "ya29.a", "mechanism": "plain"}),
            "an unknown mechanism",
        ),
    ] {
        let got = login(&bridge, body).await;
        assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_request", what);
    }
}

#[tokio::test]
async fn a_server_offering_neither_mechanism_says_so() {
    // Dovecot as configured for passwords only offers AUTH=PLAIN and AUTH=LOGIN.
    let plain = TestBridge::start().await;
    let (status, body) = login(
        &plain,
        json!({"username": CAROL, "access_token": "ya29.anything"}),
    )
    .await;
    assert_problem(
        &(status, body.clone()),
        StatusCode::NOT_IMPLEMENTED,
        "upstream_capability_missing",
        "a server without OAuth",
    );
    let detail = body["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("OAUTHBEARER") && detail.contains("XOAUTH2"),
        "{body}"
    );
    // A mechanism the server lacks, asked for by name, is named too.
    let (status, body) = login(
        &plain,
        json!({"username": CAROL, "access_token": "ya29.anything", "mechanism": "xoauth2"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("AUTH=XOAUTH2"),
        "{body}"
    );
}

#[tokio::test]
async fn an_expired_token_is_401_upstream_token_expired_until_refreshed_and_the_stream_resumes() {
    // Its five refused logins are the point; Dovecot's auth penalty would make each wait
    // longer than the last (54 s in all), which brute_force.rs tests on its own.
    let provider = Introspection::start();
    let opts = DovecotOptions {
        oauth2_introspection: Some(provider.url()),
        auth_penalty: false,
        ..DovecotOptions::default()
    };
    let bridge = TestBridge::start_with(opts, Link::Tls, |_| {}).await;
    bridge.dovecot.add_token_user(CAROL);
    let first = provider.issue(CAROL);
    let token = token_login(&bridge, &first, None).await;
    let (_, list) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    assert_eq!(list["total"], 0, "{list}");
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    bridge
        .dovecot
        .deliver(CAROL, "INBOX", &mail("before expiry"), "", None);
    let seen = events.next(WAIT).await.expect("an event before expiry");
    assert_eq!(seen.event, "message.new", "{seen:?}");

    // The token expires at the provider, and the server drops the sessions it opened: the
    // bridge must open new ones, which the server refuses.
    provider.revoke(&first);
    bridge.dovecot.kick(CAROL);
    bridge
        .dovecot
        .wait_for_connections(CAROL, 0, Duration::from_secs(5));
    let ended = events.next(WAIT).await.expect("an event saying so");
    assert_eq!(ended.event, "auth.expired", "{ended:?}");
    assert_eq!(ended.data["code"], "upstream_token_expired");
    assert!(
        events.next(Duration::from_secs(2)).await.is_none(),
        "the stream ends"
    );
    let last_id = events.last_id.clone().expect("an id to resume from");
    bridge
        .dovecot
        .deliver(CAROL, "INBOX", &mail("while expired"), "", None);

    let refused = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    assert_problem(
        &refused,
        StatusCode::UNAUTHORIZED,
        "upstream_token_expired",
        "a request after expiry",
    );
    let res = bridge
        .request(Method::GET, "/v1/events?mailbox=INBOX", Some(&token))
        .send()
        .await
        .expect("events");
    assert_problem(
        &json_of(res).await,
        StatusCode::UNAUTHORIZED,
        "upstream_token_expired",
        "a stream after expiry",
    );

    // Refresh: a wrong token is refused, a good one gives a new bridge token that works.
    let (status, body) = bridge
        .send_json(
            Method::POST,
            &token,
            "/v1/auth/refresh",
            &json!({"access_token": "ya29.not-issued"}),
        )
        .await;
    assert_problem(
        &(status, body),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "refresh with a bad token",
    );
    let second = provider.issue(CAROL);
    let (status, body) = bridge
        .send_json(
            Method::POST,
            &token,
            "/v1/auth/refresh",
            &json!({"access_token": second}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"], CAROL);
    let refreshed = body["access_token"].as_str().expect("token").to_owned();
    let (status, list) = bridge
        .get_json(&refreshed, "/v1/mailboxes/INBOX/messages")
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 2, "{list}");

    // The stream resumes where it ended: the message that came meanwhile, then live ones.
    let mut resumed = bridge.events(&refreshed, &["INBOX"], Some(&last_id)).await;
    let missed = resumed.next(WAIT).await.expect("the missed message");
    assert_eq!(
        (missed.event.as_str(), &missed.data["subject"]),
        ("message.new", &json!("while expired"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    bridge
        .dovecot
        .deliver(CAROL, "INBOX", &mail("after refresh"), "", None);
    let live = resumed.next(WAIT).await.expect("a live event");
    assert_eq!(live.data["subject"], "after refresh", "{live:?}");
}

#[tokio::test]
async fn refresh_needs_a_bridge_token_issued_for_an_access_token() {
    let (bridge, provider) = bridge_with_oauth().await;
    let password_token = bridge.login().await;
    let access = provider.issue(USER);
    let got = bridge
        .send_json(
            Method::POST,
            &password_token,
            "/v1/auth/refresh",
            &json!({"access_token": access}),
        )
        .await;
    assert_problem(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "refreshing a password login",
    );
    let res = bridge
        .request(Method::POST, "/v1/auth/refresh", None)
        .json(&json!({"access_token": access}))
        .send()
        .await
        .expect("refresh");
    assert_problem(
        &json_of(res).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "refreshing without a bridge token",
    );
}

#[tokio::test]
async fn a_token_longer_than_the_server_takes_is_401_not_an_outage() {
    // Dovecot drops the connection, without a word, on an initial response of about 8 KB.
    let (bridge, _provider) = bridge_with_oauth().await;
    let got = login(
        &bridge,
        json!({"username": CAROL, "access_token": "a".repeat(7000)}),
    )
    .await;
    assert_problem(
        &got,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a 7,000-character token",
    );
    assert!(
        got.1["detail"]
            .as_str()
            .unwrap_or("")
            .contains("may not take access tokens this long"),
        "{}",
        got.1
    );
}

#[tokio::test]
async fn a_token_refreshed_before_it_expires_carries_sessions_and_streams_on() {
    let (bridge, provider) = bridge_with_oauth().await;
    let first = provider.issue(CAROL);
    let token = token_login(&bridge, &first, None).await;
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = provider.issue(CAROL);
    let (status, body) = bridge
        .send_json(
            Method::POST,
            &token,
            "/v1/auth/refresh",
            &json!({"access_token": second}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refreshed = body["access_token"].as_str().expect("token").to_owned();

    // The first token expires and the server drops every session: the IDLE watcher and the
    // pool log in again, with the newer token.
    provider.revoke(&first);
    bridge.dovecot.kick(CAROL);
    bridge
        .dovecot
        .wait_for_connections(CAROL, 0, Duration::from_secs(5));
    bridge
        .dovecot
        .deliver(CAROL, "INBOX", &mail("after the switch"), "", None);
    let next = events.next(WAIT).await.expect("the stream goes on");
    assert_eq!(
        (next.event.as_str(), &next.data["subject"]),
        ("message.new", &json!("after the switch")),
        "no auth.expired: {next:?}"
    );
    for (which, token) in [("refreshed", &refreshed), ("earlier", &token)] {
        let (status, list) = bridge.get_json(token, "/v1/mailboxes/INBOX/messages").await;
        assert_eq!(status, StatusCode::OK, "{which} bridge token: {list}");
    }
}

#[tokio::test]
async fn another_replica_or_a_restart_takes_the_bridge_token_of_an_access_token() {
    let (mut bridge, provider) = bridge_with_oauth().await;
    let token = token_login(&bridge, &provider.issue(CAROL), Some("xoauth2")).await;
    bridge.restart().await;
    let (status, body) = bridge.get_json(&token, "/v1/mailboxes").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        bridge.dovecot.log().contains("method=XOAUTH2"),
        "the new bridge logged in with the mechanism sealed in the token"
    );
}
