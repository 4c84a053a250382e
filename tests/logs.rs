//! The logs keep no secrets: a representative slice of traffic (logins good and bad, reading,
//! downloads, flags, move, upload, an event stream opened with a ticket, logout, bad and
//! revoked tokens) runs with every crate logging at trace level into memory, in both of the
//! bridge's formats, and the capture is searched for every password, token, ticket and sealed
//! credential in every encoding a log line could carry them. The same capture must show the
//! requests and IMAP commands, so the test cannot pass by logging nothing.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use common::bridge::{Link, TestBridge};
use common::capture::Capture;
use common::corpus;
use common::dovecot::DovecotOptions;
use common::oauth::Introspection;
use futures::StreamExt;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// A password with quotes, a backslash, literal syntax and non-ASCII: it travels as a literal.
const LITERAL_PASSWORD: &str = "Zq7!\"\\ {5}§Ünïcødé-🔑-Pw";
/// An ASCII password: it travels as a quoted string.
const QUOTED_PASSWORD: &str = "Hx9_rT4-vW2pL8-qQ";
/// A wrong password, tried once.
const WRONG_PASSWORD: &str = "Wr0ng-§-Guess-Pw!";
/// A user who logs in with OAuth 2.0 access tokens.
const OAUTH_USER: &str = "oauthcheck";
/// An access token the provider never issued.
const REFUSED_ACCESS_TOKEN: &str = "ya29.Refused-LeakCheck-Token_0123456789";

/// Installs (once per test binary) a global subscriber that records every event of every
/// crate at trace level, as text and as JSON with span fields, the two formats the bridge
/// offers. Events of the `log` crate are forwarded too.
fn capture() -> &'static (Capture, Capture) {
    static CAPTURE: OnceLock<(Capture, Capture)> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let (text, json) = (Capture::default(), Capture::default());
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("trace"))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_target(true)
                    .with_writer(text.clone()),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(json.clone()),
            )
            .try_init()
            .expect("the only subscriber of this test binary");
        (text, json)
    })
}

/// Every spelling of `secret` a log line might carry: as is, escaped as JSON and as Rust
/// `Debug` does, IMAP-quoted, percent-encoded, and in every base64 alphabet.
fn spellings(secret: &str) -> Vec<String> {
    let mut out = vec![
        secret.to_owned(),
        serde_json::to_string(secret).expect("json")[1..]
            .trim_end_matches('"')
            .to_owned(),
        format!("{secret:?}").trim_matches('"').to_owned(),
        secret.escape_default().to_string(),
        secret.replace('\\', "\\\\").replace('"', "\\\""),
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
    ];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(secret));
    }
    out.sort();
    out.dedup();
    out
}

/// AUTHENTICATE PLAIN's initial response for `user`/`password`, in every base64 alphabet.
/// OAUTHBEARER's and XOAUTH2's initial responses for `user`'s access `token`, in every base64
/// alphabet (the host and port OAUTHBEARER names are left out: any spelling with them holds
/// the token's own base64 somewhere else).
fn sasl_oauth(user: &str, token: &str) -> Vec<String> {
    let mut out = Vec::new();
    for message in [
        format!("user={user}\x01auth=Bearer {token}\x01\x01"),
        format!("auth=Bearer {token}\x01\x01"),
        format!("Bearer {token}"),
    ] {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            out.push(engine.encode(&message));
        }
    }
    out
}

fn sasl_plain(user: &str, password: &str) -> Vec<String> {
    let mut out = Vec::new();
    for message in [
        format!("\0{user}\0{password}"),
        format!("{user}\0{user}\0{password}"),
    ] {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            out.push(engine.encode(&message));
        }
    }
    out
}

/// A JWT, its three segments, and the sealed credential inside its payload.
fn jwt_parts(what: &str, token: &str) -> Vec<(String, String)> {
    let mut out = vec![(what.to_owned(), token.to_owned())];
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3, "{what} is a JWT");
    for (i, segment) in segments.iter().enumerate() {
        out.push((format!("{what} segment {}", i + 1), (*segment).to_owned()));
    }
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(segments[1])
            .expect("base64url payload"),
    )
    .expect("JSON claims");
    let sealed = payload["cred"].as_str().expect("a sealed credential");
    out.push((format!("{what} sealed credential"), sealed.to_owned()));
    // A log that cut the blob short still leaks it.
    out.push((
        format!("{what} sealed credential (first 24)"),
        sealed[..24].to_owned(),
    ));
    out
}

/// The bridge and the secrets of this run.
struct Run {
    bridge: TestBridge,
    next_id: usize,
    ids: Vec<String>,
}

impl Run {
    /// A request carrying a request id of our own, remembered so that the logs can be shown
    /// to contain it.
    fn request(&mut self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        self.next_id += 1;
        let id = format!("logcheck-{:03}", self.next_id);
        self.ids.push(id.clone());
        self.bridge
            .request(method, path, token)
            .header("x-request-id", id)
    }

    async fn status(&mut self, method: Method, path: &str, token: Option<&str>) -> u16 {
        let res = self
            .request(method, path, token)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        let _ = res.bytes().await;
        status
    }

    async fn json(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let res = self
            .request(method, path, token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn login(&mut self, user: &str, password: &str) -> (u16, Value) {
        self.json(
            Method::POST,
            "/v1/auth/login",
            None,
            json!({"username": user, "password": password}),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_record_requests_but_no_password_access_token_ticket_or_sealed_credential() {
    let (text_log, json_log) = capture();
    let provider = Introspection::start();
    let opts = DovecotOptions {
        oauth2_introspection: Some(provider.url()),
        ..DovecotOptions::default()
    };
    let bridge = TestBridge::start_with(opts, Link::Tls, |_| {}).await;
    let dovecot = &bridge.dovecot;
    dovecot.add_user("logcheck", LITERAL_PASSWORD);
    dovecot.add_user("asciicheck", QUOTED_PASSWORD);
    dovecot.add_token_user(OAUTH_USER);
    dovecot.deliver_many("logcheck", "INBOX", corpus::bulk(2, 7));
    dovecot.deliver(
        "logcheck",
        "INBOX",
        &corpus::with_attachment(3000),
        "",
        None,
    );
    let mut run = Run {
        bridge,
        next_id: 0,
        ids: Vec::new(),
    };

    // A token that is no token.
    let bogus = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.Qm9ndXMtU2lnbmF0dXJlLVF4";
    assert_eq!(
        run.status(Method::GET, "/v1/mailboxes", Some(bogus)).await,
        401
    );

    // Two users log in: one password goes out as a literal, the other as a quoted string.
    let (status, body) = run.login("logcheck", LITERAL_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token").to_owned();
    let (status, body) = run.login("asciicheck", QUOTED_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let ascii_token = body["access_token"].as_str().expect("token").to_owned();
    let t = Some(token.as_str());

    // Reading, downloading, flagging, filing, uploading.
    assert_eq!(run.status(Method::GET, "/v1/mailboxes", t).await, 200);
    let (status, list) = run
        .json(Method::GET, "/v1/mailboxes/INBOX/messages", t, Value::Null)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        run.status(Method::GET, "/v1/mailboxes/INBOX/messages/1", t)
            .await,
        200
    );
    assert_eq!(
        run.status(Method::GET, "/v1/mailboxes/INBOX/messages/1/raw", t)
            .await,
        200
    );
    assert_eq!(
        run.status(
            Method::GET,
            "/v1/mailboxes/INBOX/messages/3/attachments/2",
            t
        )
        .await,
        200
    );
    let (status, body) = run
        .json(
            Method::PATCH,
            "/v1/mailboxes/INBOX/messages/1/flags",
            t,
            json!({"add": ["\\Flagged"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = run
        .json(
            Method::POST,
            "/v1/mailboxes/INBOX/move",
            t,
            json!({"uids": [2], "to": "Archive"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let draft = b"From: Log Check <logcheck@example.test>\r\nSubject: draft\r\n\r\nHello.\r\n";
    let res = run
        .request(
            Method::POST,
            "/v1/mailboxes/Drafts/messages?flags=%5CSeen",
            t,
        )
        .header("content-type", "message/rfc822")
        .body(draft.to_vec())
        .send()
        .await
        .expect("append");
    assert_eq!(res.status().as_u16(), 201);

    // An event stream opened with a ticket, as a browser does, sees new mail.
    let (status, body) = run
        .json(Method::POST, "/v1/events/ticket", t, Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    let ticket = body["ticket"].as_str().expect("ticket").to_owned();
    let res = run
        .request(
            Method::GET,
            &format!("/v1/events?ticket={ticket}&mailbox=INBOX"),
            None,
        )
        .send()
        .await
        .expect("events");
    assert_eq!(res.status().as_u16(), 200);
    let mut stream = res.bytes_stream();
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.bridge.dovecot.deliver(
        "logcheck",
        "INBOX",
        b"From: a@example.test\r\nSubject: live\r\n\r\nNew.\r\n",
        "",
        None,
    );
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains("message.new") {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => seen.extend_from_slice(&chunk),
            _ => panic!("no message.new event: {}", String::from_utf8_lossy(&seen)),
        }
    }
    drop(stream);
    // A used ticket and a tampered token are refused.
    assert_eq!(
        run.status(Method::GET, &format!("/v1/events?ticket={ticket}"), None)
            .await,
        401
    );
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert_eq!(
        run.status(Method::GET, "/v1/mailboxes", Some(&tampered))
            .await,
        401
    );

    // Log out; the token is dead afterwards.
    assert_eq!(
        run.status(Method::GET, "/v1/mailboxes", Some(&ascii_token))
            .await,
        200
    );
    assert_eq!(
        run.status(Method::POST, "/v1/auth/logout", Some(&ascii_token))
            .await,
        204
    );
    assert_eq!(run.status(Method::POST, "/v1/auth/logout", t).await, 204);
    assert_eq!(run.status(Method::GET, "/v1/mailboxes", t).await, 401);

    // An OAuth 2.0 user logs in with an access token, reads, and refreshes it.
    let first_access = provider.issue(OAUTH_USER);
    let second_access = provider.issue(OAUTH_USER);
    let (status, body) = run
        .json(
            Method::POST,
            "/v1/auth/login",
            None,
            json!({"username": OAUTH_USER, "access_token": first_access}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let oauth_token = body["access_token"].as_str().expect("token").to_owned();
    assert_eq!(
        run.status(Method::GET, "/v1/mailboxes", Some(&oauth_token))
            .await,
        200
    );
    let (status, body) = run
        .json(
            Method::POST,
            "/v1/auth/refresh",
            Some(&oauth_token),
            json!({"access_token": second_access}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let refreshed = body["access_token"].as_str().expect("token").to_owned();
    assert_eq!(
        run.status(Method::GET, "/v1/mailboxes", Some(&refreshed))
            .await,
        200
    );

    // Failed logins, last: Dovecot's auth penalty would hold back every login after them.
    let (status, _) = run.login("logcheck", WRONG_PASSWORD).await;
    assert_eq!(status, 401, "wrong password");
    let (status, _) = run
        .json(
            Method::POST,
            "/v1/auth/login",
            None,
            json!({"username": OAUTH_USER, "access_token": REFUSED_ACCESS_TOKEN}),
        )
        .await;
    assert_eq!(status, 401, "refused access token");
    run.bridge.stop().await;

    let text = text_log.text();
    let json_lines = json_log.text();
    let logs = format!("{text}\n{json_lines}");

    // The logs did record the traffic: every request id, and the IMAP commands by name.
    let missing_ids: Vec<&String> = run.ids.iter().filter(|id| !logs.contains(*id)).collect();
    assert!(
        missing_ids.is_empty(),
        "request ids missing from the logs: {missing_ids:?} ({} bytes of logs)",
        logs.len()
    );
    for command in [
        "AUTHENTICATE PLAIN",
        "SELECT",
        "UID FETCH",
        "UID STORE",
        "UID MOVE",
        "APPEND",
        "IDLE",
    ] {
        assert!(
            logs.contains(command),
            "the logs never mention the IMAP command {command}"
        );
    }
    assert!(
        text.contains("imap send") && json_lines.contains("\"request_id\""),
        "IMAP traffic and request spans are logged"
    );

    // And none of the secrets, in any spelling.
    let mut secrets: Vec<(String, String)> = Vec::new();
    for (what, password) in [
        ("literal password", LITERAL_PASSWORD),
        ("quoted password", QUOTED_PASSWORD),
        ("wrong password", WRONG_PASSWORD),
    ] {
        for s in spellings(password) {
            secrets.push((what.to_owned(), s));
        }
    }
    for (user, password) in [
        ("logcheck", LITERAL_PASSWORD),
        ("asciicheck", QUOTED_PASSWORD),
        ("logcheck", WRONG_PASSWORD),
    ] {
        for s in sasl_plain(user, password) {
            secrets.push((format!("AUTHENTICATE PLAIN of {user}"), s));
        }
    }
    for (what, access) in [
        ("first OAuth access token", first_access.as_str()),
        ("second OAuth access token", second_access.as_str()),
        ("refused OAuth access token", REFUSED_ACCESS_TOKEN),
    ] {
        for s in spellings(access) {
            secrets.push((what.to_owned(), s));
        }
        for s in sasl_oauth(OAUTH_USER, access) {
            secrets.push((format!("SASL response with the {what}"), s));
        }
    }
    secrets.extend(jwt_parts("OAuth bridge token", &oauth_token));
    secrets.extend(jwt_parts("refreshed bridge token", &refreshed));
    secrets.extend(jwt_parts("access token", &token));
    secrets.extend(jwt_parts("second access token", &ascii_token));
    secrets.extend(jwt_parts("ticket", &ticket));
    secrets.push(("tampered token".to_owned(), tampered.clone()));
    secrets.push(("bogus token".to_owned(), bogus.to_owned()));
    let leaks: Vec<String> = secrets
        .iter()
        .filter(|(_, s)| s.len() >= 8)
        .filter_map(|(what, secret)| {
            let line = logs.lines().find(|l| l.contains(secret.as_str()))?;
            Some(format!("{what} [{secret}] in: {}", excerpt(line, secret)))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "{} secret(s) in the trace logs ({} bytes captured):\n  {}",
        leaks.len(),
        logs.len(),
        leaks.join("\n  ")
    );
    eprintln!(
        "logs: {} bytes at trace level, {} request ids, {} secret spellings checked",
        logs.len(),
        run.ids.len(),
        secrets.len()
    );
}

/// Up to 300 characters of `line` around `needle`.
fn excerpt(line: &str, needle: &str) -> String {
    let at = line.find(needle).unwrap_or(0);
    let mut start = at.saturating_sub(150);
    while !line.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + needle.len() + 150).min(line.len());
    while !line.is_char_boundary(end) {
        end += 1;
    }
    line[start..end].to_owned()
}
