//! Logging in over every transport, refusing every unsafe one, and the token's life cycle.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::bridge::{Link, PASSWORD, TestBridge, USER, config_for, json_of};
use common::dovecot::{Dovecot, DovecotOptions};

use imap_bridge::config::{Config, Security};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

async fn login_status(
    bridge: &TestBridge,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let res = bridge
        .request(Method::POST, "/v1/auth/login", None)
        .json(&body)
        .send()
        .await
        .expect("login");
    json_of(res).await
}

#[tokio::test]
async fn users_log_in_over_tls_starttls_and_loopback_plain() {
    for link in [Link::Tls, Link::Starttls, Link::Plain] {
        let bridge = TestBridge::start_with(DovecotOptions::default(), link, |_| {}).await;
        let token = bridge.login().await;
        let (status, body) = bridge.get_json(&token, "/v1/mailboxes").await;
        assert_eq!(status, StatusCode::OK, "{link:?}: {body}");
        assert_eq!(body["mailboxes"][0]["name"], "INBOX");
    }
}

#[tokio::test]
async fn wrong_credentials_are_401_and_leave_working_sessions_alone() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    assert_eq!(bridge.dovecot.connections(USER), 1);

    // Side by side: one after another, each would wait out the auth penalty Dovecot charges the
    // bridge's address for the one before (4 s, then 8 s).
    let attempts = [
        (USER, "wrong"),
        ("nobody-here", PASSWORD),
        (USER, "s3cret-pässwort"),
    ];
    let answers = futures::future::join_all(attempts.iter().map(|(user, password)| {
        login_status(&bridge, json!({"username": user, "password": password}))
    }))
    .await;
    for ((user, password), (status, body)) in attempts.into_iter().zip(answers) {
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "{user}/{password}"
        );
        assert!(
            !body.to_string().contains(password),
            "the problem never echoes the password"
        );
    }
    let (status, _) = bridge.get_json(&token, "/v1/mailboxes").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the user's pool survived the failed attempts"
    );
    assert_eq!(
        bridge.dovecot.connections(USER),
        1,
        "no extra sessions were left open"
    );
}

#[tokio::test]
async fn malformed_login_requests_are_refused_before_imap() {
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.max_json_size = 4096
    })
    .await;
    let cases = [
        (json!({"username": USER}), StatusCode::BAD_REQUEST),
        (
            json!({"username": USER, "password": PASSWORD, "extra": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": "", "password": PASSWORD}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": "alice\r\nA1 DELETE INBOX", "password": PASSWORD}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": USER, "password": "pass\nword"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": "a\u{0}b", "password": PASSWORD}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": 5, "password": PASSWORD}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": USER, "password": "x".repeat(5000)}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (body, want) in cases {
        let (status, problem) = login_status(&bridge, body.clone()).await;
        assert_eq!(status, want, "{body}: {problem}");
    }
    let res = bridge
        .request(Method::POST, "/v1/auth/login", None)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("send");
    assert_eq!(json_of(res).await.0, StatusCode::BAD_REQUEST);
    let res = bridge
        .request(Method::POST, "/v1/auth/login", None)
        .body(r#"{"username":"a","password":"b"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(json_of(res).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        bridge.dovecot.connections(USER),
        0,
        "nothing reached the IMAP server"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.imap_ca_file = None
    })
    .await;
    let (status, body) =
        login_status(&bridge, json!({"username": USER, "password": PASSWORD})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("upstream_unavailable")
        ),
        "{body}"
    );
    assert_eq!(bridge.dovecot.connections(USER), 0, "no login happened");
}

/// A scripted server on loopback that records what it receives.
async fn fake_server(
    script: &'static [(&'static str, &'static str)],
    greeting: &'static str,
) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read);
                let _ = write.write_all(greeting.as_bytes()).await;
                let mut line = String::new();
                while lines.read_line(&mut line).await.unwrap_or(0) > 0 {
                    sink.lock()
                        .expect("sink")
                        .extend_from_slice(line.as_bytes());
                    for (prefix, answer) in script {
                        if line.starts_with(prefix) {
                            let _ = write.write_all(answer.as_bytes()).await;
                        }
                    }
                    line.clear();
                }
            });
        }
    });
    (port, received)
}

async fn bridge_to_fake(port: u16) -> TestBridge {
    let dovecot = tokio::task::spawn_blocking(Dovecot::start)
        .await
        .expect("dovecot");
    let mut config: Config = config_for(&dovecot, Link::Starttls);
    config.imap_host = "localhost".into();
    config.imap_port = Some(port);
    config.imap_security = Security::Starttls;
    TestBridge::serve(dovecot, config).await
}

#[tokio::test]
async fn starttls_is_required_and_never_downgraded() {
    // The server does not offer STARTTLS: no credentials may leave in clear.
    let (port, received) = fake_server(
        &[(
            "S0 CAPABILITY",
            "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nS0 OK done\r\n",
        )],
        "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake\r\n",
    )
    .await;
    let bridge = bridge_to_fake(port).await;
    let (status, body) =
        login_status(&bridge, json!({"username": USER, "password": PASSWORD})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("upstream_unavailable")
        )
    );
    let seen = String::from_utf8_lossy(&received.lock().expect("sink")).into_owned();
    assert!(
        !seen.contains("LOGIN") && !seen.contains(PASSWORD) && !seen.contains(USER),
        "nothing sensitive in clear: {seen:?}"
    );

    // STARTTLS offered, but the server appends bytes after its OK (a command-injection attempt).
    let (port, received) = fake_server(
        &[
            (
                "S0 CAPABILITY",
                "* CAPABILITY IMAP4rev1 STARTTLS\r\nS0 OK done\r\n",
            ),
            ("S1 STARTTLS", "S1 OK begin TLS\r\n* OK injected\r\n"),
        ],
        "* OK fake\r\n",
    )
    .await;
    let bridge = bridge_to_fake(port).await;
    let (status, _) = login_status(&bridge, json!({"username": USER, "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!String::from_utf8_lossy(&received.lock().expect("sink")).contains("LOGIN"));

    // PREAUTH leaves no chance to secure the link.
    let (port, received) = fake_server(&[], "* PREAUTH welcome\r\n").await;
    let bridge = bridge_to_fake(port).await;
    let (status, _) = login_status(&bridge, json!({"username": USER, "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        received.lock().expect("sink").is_empty(),
        "nothing sent after PREAUTH"
    );
}

#[tokio::test]
async fn what_the_network_says_before_starttls_cannot_crash_the_parser() {
    // Before TLS anyone on the path can answer. A greeting nesting 8,000 lists fits the
    // 8,192 bytes a plaintext line may have, and parsed it would overflow the stack of any
    // thread; the upstream guard refuses it first, and the login fails cleanly.
    let greeting: &'static str = Box::leak(
        format!("* 1 FETCH (UID 1 BODYSTRUCTURE {}\r\n", "(".repeat(8000)).into_boxed_str(),
    );
    let (port, received) = fake_server(&[], greeting).await;
    let bridge = bridge_to_fake(port).await;
    let (status, body) =
        login_status(&bridge, json!({"username": USER, "password": PASSWORD})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("upstream_rejected")),
        "{body}"
    );
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("nested deeper than 128 levels")),
        "{body}"
    );
    assert!(
        received.lock().expect("sink").is_empty(),
        "nothing sent after such a greeting"
    );
    // The bridge is still there.
    let (status, _) = login_status(&bridge, json!({"username": USER, "password": "wrong"})).await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "the same fake answers the same way"
    );
}

#[test]
fn plaintext_to_a_remote_host_is_refused_at_start_up() {
    let mut config = Config::for_server("mail.example.com", 143, Security::Plain);
    config.jwt_secret = Some("x".repeat(32));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = runtime.enter();
    let err = imap_bridge::build_state(config.clone())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("plaintext"), "{err}");
    config.allow_plaintext = true;
    assert!(imap_bridge::build_state(config.clone()).is_ok());
    config.jwt_secret = Some("short".into());
    assert!(
        imap_bridge::build_state(config).is_err(),
        "short secrets are refused"
    );
}

#[tokio::test]
async fn the_server_connection_limit_is_503_not_401() {
    let opts = DovecotOptions {
        max_userip_connections: 2,
        ..DovecotOptions::default()
    };
    let bridge = TestBridge::start_with(opts, Link::Tls, |_| {}).await;
    let _first = bridge.imap().await;
    let _second = bridge.imap().await;
    let (status, body) =
        login_status(&bridge, json!({"username": USER, "password": PASSWORD})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("upstream_unavailable")
        ),
        "{body}"
    );
}

#[tokio::test]
async fn logout_revokes_the_token_and_closes_the_sessions() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    assert_eq!(
        bridge.get_json(&token, "/v1/mailboxes").await.0,
        StatusCode::OK
    );
    let res = bridge
        .request(Method::POST, "/v1/auth/logout", Some(&token))
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (status, body) = bridge.get_json(&token, "/v1/mailboxes").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    bridge.wait_for_connections(0, Duration::from_secs(5)).await;
    // A new login works.
    let again = bridge.login().await;
    assert_eq!(
        bridge.get_json(&again, "/v1/mailboxes").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let bridge =
        TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| c.token_ttl = 0).await;
    let token = bridge.login().await;
    // Five seconds of leeway for clock skew, then it is refused.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (status, body) = bridge.get_json(&token, "/v1/mailboxes").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    assert!(body["detail"].as_str().expect("detail").contains("expired"));
}

#[tokio::test]
async fn tokens_survive_a_restart_with_the_same_secret() {
    let mut bridge = TestBridge::start().await;
    let token = bridge.login().await;
    bridge.restart().await;
    let (status, body) = bridge.get_json(&token, "/v1/mailboxes").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn sessions_are_pooled_capped_and_replaced_when_the_server_drops_them() {
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.pool_max_per_user = 2
    })
    .await;
    bridge
        .dovecot
        .deliver_many(USER, "INBOX", common::corpus::bulk(200, 5));
    let token = bridge.login().await;
    let mut calls = Vec::new();
    for _ in 0..12 {
        let req = bridge
            .request(
                Method::GET,
                "/v1/mailboxes/INBOX/messages?limit=50",
                Some(&token),
            )
            .send();
        calls.push(tokio::spawn(req));
    }
    for call in calls {
        let res = call.await.expect("join").expect("request");
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert!(
        bridge.dovecot.connections(USER) <= 2,
        "the per-user cap holds"
    );

    // The server kicks the user: the next request gets a fresh session, not an error.
    bridge.dovecot.kick(USER);
    bridge.wait_for_connections(0, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?limit=5")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn at_the_bridges_session_cap_a_request_waits_and_takes_the_room_of_another_users_idle_session()
 {
    use imap_bridge::imap::{Credentials, UserKey};
    use std::time::Instant;

    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.pool_max_total = 2;
    })
    .await;
    let users = [
        (USER, PASSWORD),
        ("bob", "bobs-password"),
        ("carol", "carols-password"),
        ("dave", "daves-password"),
    ];
    for (user, password) in &users[1..] {
        bridge.dovecot.add_user(user, password);
    }
    let all_connections = || -> usize {
        users
            .iter()
            .map(|(user, _)| bridge.dovecot.connections(user))
            .sum()
    };

    // Four users, two sessions: each takes the room of the one unused longest, and every
    // request is served.
    let mut tokens = Vec::new();
    for (user, password) in &users {
        tokens.push(bridge.login_as(user, password).await);
        assert!(bridge.state.pools.stats().sessions <= 2);
    }
    for round in 0..3 {
        for ((user, _), token) in users.iter().zip(&tokens) {
            let (status, body) = bridge.get_json(token, "/v1/mailboxes").await;
            assert_eq!(status, StatusCode::OK, "{user}, round {round}: {body}");
            assert!(bridge.state.pools.stats().sessions <= 2);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        all_connections() <= 2,
        "Dovecot counts {}",
        all_connections()
    );

    // Both sessions busy: carol's request waits until bob's comes back, then takes its room.
    let session_of = |user: &str, password: &str| {
        let key = UserKey {
            upstream: bridge.state.upstream.clone(),
            username: user.to_owned(),
        };
        let pools = bridge.state.pools.clone();
        let credentials = Credentials::password(user, password);
        async move { pools.session(&key, &credentials).await.expect("a session") }
    };
    let alices = session_of(USER, PASSWORD).await;
    let bobs = session_of("bob", "bobs-password").await;
    let started = Instant::now();
    let carols = bridge.get_json(&tokens[2], "/v1/mailboxes");
    let release = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(bobs);
    };
    let ((status, body), ()) = tokio::join!(carols, release);
    let waited = started.elapsed();
    eprintln!("at the cap, carol's request waited {waited:.2?} for bob's session to come back");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(4),
        "{waited:?}"
    );

    // Nothing comes back: dave gets 503 once the pool wait (5 s in tests) is over.
    let carols = session_of("carol", "carols-password").await;
    let started = Instant::now();
    let res = bridge
        .request(Method::GET, "/v1/mailboxes", Some(&tokens[3]))
        .send()
        .await
        .expect("request");
    let waited = started.elapsed();
    assert_eq!(res.headers()["retry-after"], "1");
    let refused = json_of(res).await;
    common::bridge::assert_problem(
        &refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream_unavailable",
        "no room within the wait",
    );
    assert!(
        waited >= Duration::from_millis(4900) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    drop((alices, carols));
}
