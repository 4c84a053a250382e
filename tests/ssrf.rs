//! A caller may choose the IMAP server at login only from the operator's allow-list: every
//! other spelling of a host or port gets one and the same 403 and no connection, and a token
//! for a chosen server works until the operator removes it from the list.

mod common;

use common::bridge::{Link, PASSWORD, TestBridge, USER, json_of};
use common::dovecot::DovecotOptions;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn login_to(bridge: &TestBridge, server: Value) -> (StatusCode, Value) {
    let res = bridge
        .request(Method::POST, "/v1/auth/login", None)
        .json(&json!({"username": USER, "password": PASSWORD, "server": server}))
        .send()
        .await
        .expect("login request");
    json_of(res).await
}

/// Connections Dovecot's login processes have seen so far.
fn login_connections(bridge: &TestBridge) -> usize {
    bridge
        .dovecot
        .log()
        .lines()
        .filter(|l| l.contains("imap-login:"))
        .count()
}

#[tokio::test]
async fn only_an_allow_listed_server_spelled_as_listed_is_reached() {
    let dovecot_port = std::sync::OnceLock::new();
    let bridge = TestBridge::start_with(
        DovecotOptions {
            extra_config: "login_log_format_elements = user=<%u> rip=%r\n".into(),
            ..DovecotOptions::default()
        },
        Link::Tls,
        |c| {
            // The bridge's own upstream is the same Dovecot; the allow-list names it as
            // `localhost` on its TLS port.
            let port = c.imap_port();
            dovecot_port.set(port).expect("once");
            c.allowed_servers = vec![format!("localhost:{port}")];
        },
    )
    .await;
    let port = *dovecot_port.get().expect("port");
    let other_port = bridge.dovecot.imap_addr().port();

    let refused = [
        json!({"host": "127.0.0.1", "port": port, "security": "tls"}),
        json!({"host": "::1", "port": port, "security": "tls"}),
        json!({"host": "[::1]", "port": port, "security": "tls"}),
        json!({"host": "2130706433", "port": port, "security": "tls"}),
        json!({"host": "0x7f000001", "port": port, "security": "tls"}),
        json!({"host": "0177.0.0.1", "port": port, "security": "tls"}),
        json!({"host": "127.1", "port": port, "security": "tls"}),
        json!({"host": "localhost", "port": other_port, "security": "starttls"}),
        json!({"host": "localhost", "port": 25, "security": "tls"}),
        json!({"host": "169.254.169.254", "port": 80, "security": "plain"}),
        json!({"host": "fe80::1", "port": port, "security": "tls"}),
        json!({"host": "localhost.evil.example", "port": port, "security": "tls"}),
        json!({"host": "metadata.google.internal", "port": 80, "security": "plain"}),
    ];
    let before = login_connections(&bridge);
    let mut bodies = Vec::new();
    for server in &refused {
        let (status, body) = login_to(&bridge, server.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{server}: {body}");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every refusal looks the same: {bodies:?}"
    );
    assert!(
        !bodies[0].to_string().contains("127") && !bodies[0].to_string().contains("169.254"),
        "nothing is echoed: {}",
        bodies[0]
    );
    // Malformed choices are 400 and also reach nothing.
    for server in [
        json!({"host": "localhost", "port": port}),
        json!({"host": "localhost", "port": 70000, "security": "tls"}),
        json!({"host": "localhost", "port": port, "security": "ssl"}),
        json!({"host": "localhost", "port": port, "security": "tls", "extra": 1}),
    ] {
        let (status, body) = login_to(&bridge, server.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{server}: {body}");
    }
    assert_eq!(
        login_connections(&bridge),
        before,
        "no refused choice made a connection:\n{}",
        bridge.dovecot.log()
    );

    // The listed spelling works (letter case and a trailing dot aside), and its token reads
    // mail from that server.
    for host in ["localhost", "LocalHost."] {
        let (status, body) = login_to(
            &bridge,
            json!({"host": host, "port": port, "security": "tls"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
        let token = body["access_token"].as_str().expect("token");
        let (status, list) = bridge.get_json(token, "/v1/mailboxes").await;
        assert_eq!(status, StatusCode::OK, "{list}");
    }
    assert!(
        login_connections(&bridge) > before,
        "the log records connections, so the count above means something"
    );
}

#[tokio::test]
async fn with_no_allow_list_even_the_configured_server_cannot_be_chosen() {
    let bridge = TestBridge::start().await;
    let port = bridge.dovecot.imaps_addr().port();
    let (status, body) = login_to(
        &bridge,
        json!({"host": "localhost", "port": port, "security": "tls"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "forbidden");
    // Without `server`, the configured one is used as always.
    bridge.login().await;
}
