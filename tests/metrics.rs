//! Observability as an operator sees it: `/metrics` counts what a user did (logins, lists, a
//! flag change, an event stream, stray requests) with labels drawn from fixed sets only, never
//! a user name, mailbox name, UID or raw path; a separate internal listener takes `/metrics`
//! off the API port; pool waits that run out are counted; and every JSON log line written for
//! a request carries that request's id.
//!
//! The recorder is process-wide, so every check compares a scrape before with one after.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::bridge::{
    Link, PASSWORD, TestBridge, USER, assert_problem, free_local_addr, json_of, seg,
};
use common::capture::Capture;
use common::corpus;
use common::dovecot::DovecotOptions;
use imap_bridge::config::LogFormat;
use imap_bridge::imap::{Credentials, UserKey};
use imap_bridge::telemetry::names;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A mailbox whose name must never show up in the metrics.
const SECRET_MAILBOX: &str = "Projekt-Zeta-4711";
/// A user name that fails to log in, and must never show up either.
const STRANGER: &str = "mallory-7c1";

/// One series of an exposition.
#[derive(Debug)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One scrape of `/metrics`.
struct Scrape {
    text: String,
    series: Vec<Series>,
}

impl Scrape {
    fn parse(text: String) -> Self {
        let series = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_series(l).unwrap_or_else(|| panic!("unreadable series line: {l}")))
            .collect();
        Scrape { text, series }
    }

    /// The series called `name` whose labels include `labels`.
    fn matching<'s>(
        &'s self,
        name: &'s str,
        labels: &'s [(&str, &str)],
    ) -> impl Iterator<Item = &'s Series> + 's {
        self.series.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the series called `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// How many series called `name` include `labels`.
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        self.matching(name, labels).count()
    }
}

/// `name{k="v",...} value`, with the exposition format's escapes in label values.
fn parse_series(line: &str) -> Option<Series> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    let Some((name, rest)) = head.split_once('{') else {
        return Some(Series {
            name: head.to_owned(),
            labels: BTreeMap::new(),
            value,
        });
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next()? != '"' {
            return None;
        }
        let mut val = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => val.push('\n'),
                    c => val.push(c),
                },
                '"' => break,
                c => val.push(c),
            }
        }
        labels.insert(key, val);
        match chars.next()? {
            ',' if chars.peek() == Some(&'}') => {
                chars.next();
                break;
            }
            ',' => {}
            '}' => break,
            _ => return None,
        }
    }
    Some(Series {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Scrapes `url`, checking the exposition's content type.
async fn scrape(http: &reqwest::Client, url: &str) -> Scrape {
    let res = http.get(url).send().await.expect("scrape");
    assert_eq!(res.status(), StatusCode::OK, "GET {url}");
    let content_type = res.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "Prometheus text format: {content_type}"
    );
    Scrape::parse(res.text().await.expect("exposition"))
}

/// How much the series changed between two scrapes.
fn delta(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.sum(name, labels) - before.sum(name, labels)
}

fn bucket(name: &str, suffix: &str) -> String {
    format!("{name}_{suffix}")
}

/// Scrapes until `done` holds for the scrape (at most 10 s).
async fn scrape_until(bridge: &TestBridge, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = scrape(&bridge.http, &bridge.url("/metrics")).await;
        if done(&now) {
            return now;
        }
        assert!(tokio::time::Instant::now() < deadline, "never saw {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn metrics_follow_what_users_do_with_labels_from_fixed_sets_only() {
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.sse_keepalive = 1;
        c.login_failures_per_user = 1;
    })
    .await;
    bridge
        .dovecot
        .deliver_many(USER, "INBOX", corpus::bulk(3, 5));
    bridge
        .dovecot
        .deliver_many(USER, SECRET_MAILBOX, corpus::bulk(2, 6));
    let before = scrape(&bridge.http, &bridge.url("/metrics")).await;

    // The user logs in, lists two folders, opens a missing one, flags a message.
    let token = bridge.login().await;
    let (status, inbox) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    assert_eq!(status, StatusCode::OK, "{inbox}");
    let uid = inbox["messages"][0]["uid"].as_u64().expect("a uid");
    let (status, body) = bridge
        .get_json(
            &token,
            &format!("/v1/mailboxes/{}/messages", seg(SECRET_MAILBOX)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let missing = bridge
        .get_json(&token, "/v1/mailboxes/Nope-Missing-99/messages")
        .await;
    assert_problem(
        &missing,
        StatusCode::NOT_FOUND,
        "mailbox_not_found",
        "missing mailbox",
    );
    let (status, body) = bridge
        .send_json(
            Method::PATCH,
            &token,
            &format!("/v1/mailboxes/INBOX/messages/{uid}/flags"),
            &json!({"add": ["\\Flagged"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stray = json_of(
        bridge
            .request(Method::GET, "/no/such/route-7f3a", None)
            .send()
            .await
            .expect("stray"),
    )
    .await;
    assert_problem(&stray, StatusCode::NOT_FOUND, "not_found", "unknown route");

    // An event stream: counted while open, its request counted when its head went out.
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    let open = scrape(&bridge.http, &bridge.url("/metrics")).await;
    assert_eq!(delta(&before, &open, names::SSE_SUBSCRIBERS, &[]), 1.0);
    assert_eq!(delta(&before, &open, names::IDLE_WATCHERS, &[]), 1.0);
    assert_eq!(
        delta(
            &before,
            &open,
            names::HTTP_REQUESTS,
            &[
                ("route", "/v1/events"),
                ("method", "GET"),
                ("status", "200")
            ]
        ),
        1.0,
        "an open stream is counted once its head is sent"
    );
    bridge.dovecot.deliver(
        USER,
        "INBOX",
        b"From: a@example.test\r\nSubject: live\r\n\r\nNew.\r\n",
        "",
        None,
    );
    let got = events.take(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].event, "message.new");
    drop(events);
    // A stranger guesses twice: one failure reaches the server, the second is throttled. Last of
    // all logins: Dovecot's auth penalty would hold back every login after it.
    for expected in [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS] {
        let res = bridge
            .request(Method::POST, "/v1/auth/login", None)
            .json(&json!({"username": STRANGER, "password": "guess-Zq9"}))
            .send()
            .await
            .expect("login");
        assert_eq!(json_of(res).await.0, expected);
    }
    // The bridge notices the closed stream at its next keep-alive (1 s here).
    let after = scrape_until(&bridge, "the stream and its watcher end", |s| {
        delta(&before, s, names::SSE_SUBSCRIBERS, &[]) == 0.0
            && delta(&before, s, names::IDLE_WATCHERS, &[]) == 0.0
    })
    .await;

    let d = |name: &str, labels: &[(&str, &str)]| delta(&before, &after, name, labels);
    let list = "/v1/mailboxes/{mailbox}/messages";
    // HTTP requests by route template, method and status.
    for (route, method, status, n) in [
        ("/v1/auth/login", "POST", "401", 1.0),
        ("/v1/auth/login", "POST", "429", 1.0),
        ("/v1/auth/login", "POST", "200", 1.0),
        (list, "GET", "200", 2.0),
        (list, "GET", "404", 1.0),
        (
            "/v1/mailboxes/{mailbox}/messages/{uid}/flags",
            "PATCH",
            "200",
            1.0,
        ),
        ("unmatched", "GET", "404", 1.0),
        ("/v1/events", "GET", "200", 1.0),
    ] {
        assert_eq!(
            d(
                names::HTTP_REQUESTS,
                &[("route", route), ("method", method), ("status", status)]
            ),
            n,
            "{method} {route} {status}"
        );
    }
    assert_eq!(
        d(
            &bucket(names::HTTP_DURATION, "count"),
            &[("route", list), ("method", "GET")]
        ),
        3.0
    );
    assert!(d(&bucket(names::HTTP_DURATION, "sum"), &[("route", list)]) > 0.0);
    // Logins by outcome.
    for outcome in ["success", "failure", "throttled"] {
        assert_eq!(d(names::LOGINS, &[("outcome", outcome)]), 1.0, "{outcome}");
    }
    // IMAP commands by verb and outcome; refusals are errors of kind `no`.
    for (command, outcome, at_least) in [
        ("AUTHENTICATE", "ok", 1.0),
        ("AUTHENTICATE", "no", 1.0),
        ("SELECT", "ok", 2.0),
        ("SELECT", "no", 1.0),
        ("UID FETCH", "ok", 1.0),
        ("UID STORE", "ok", 1.0),
        ("IDLE", "ok", 1.0),
        ("LOGOUT", "ok", 1.0),
    ] {
        let n = d(
            names::IMAP_COMMANDS,
            &[("command", command), ("outcome", outcome)],
        );
        assert!(n >= at_least, "{command} {outcome}: {n}");
    }
    assert!(d(names::IMAP_ERRORS, &[("kind", "no")]) >= 2.0);
    assert_eq!(
        d(names::IMAP_ERRORS, &[("kind", "bye")]),
        0.0,
        "the watcher's LOGOUT ended with the BYE it asks for, not an error"
    );
    assert!(
        d(
            &bucket(names::IMAP_COMMAND_DURATION, "count"),
            &[("command", "SELECT")]
        ) >= 3.0
    );
    assert_eq!(
        d(
            &bucket(names::IMAP_COMMAND_DURATION, "count"),
            &[("command", "IDLE")]
        ),
        0.0,
        "IDLE waits by design and is not timed"
    );
    assert_eq!(
        d(names::IMAP_CONNECT_FAILURES, &[("kind", "auth")]),
        1.0,
        "the stranger's connection"
    );
    // Pools, watchers and events.
    assert!(d(names::IMAP_SESSIONS_OPENED, &[("purpose", "pool")]) >= 1.0);
    assert_eq!(
        d(names::IMAP_SESSIONS_OPENED, &[("purpose", "watcher")]),
        1.0
    );
    assert!(d(&bucket(names::POOL_WAIT, "count"), &[]) >= 5.0);
    assert!(after.sum(names::POOL_SESSIONS, &[]) >= 1.0);
    assert_eq!(after.sum(names::POOL_USERS, &[]), 1.0);
    assert_eq!(d(names::IDLE_WATCHERS_STARTED, &[]), 1.0);
    assert!(d(names::EVENTS_PUBLISHED, &[]) >= 1.0);
    assert_eq!(
        d(names::SSE_EVENTS_DELIVERED, &[("type", "message.new")]),
        1.0
    );

    // Many distinct paths make no new series: the route is a template.
    for i in 1..=10 {
        let (status, body) = bridge
            .get_json(&token, &format!("/v1/mailboxes/Gone-{i}/messages/{i}"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    let last = scrape(&bridge.http, &bridge.url("/metrics")).await;
    let one_message = "/v1/mailboxes/{mailbox}/messages/{uid}";
    assert_eq!(
        last.count(names::HTTP_REQUESTS, &[("route", one_message)]),
        1
    );
    assert_eq!(
        delta(
            &after,
            &last,
            names::HTTP_REQUESTS,
            &[("route", one_message), ("status", "404")]
        ),
        10.0
    );

    // No label carries a name, a path or a number a caller chose.
    let (_, document) = json_of(
        bridge
            .request(Method::GET, "/openapi.json", None)
            .send()
            .await
            .expect("document"),
    )
    .await;
    let routes: BTreeSet<&str> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    assert_bounded_labels(&last, &routes);
    for secret in [
        USER,
        PASSWORD,
        STRANGER,
        SECRET_MAILBOX,
        "Nope-Missing",
        "Gone-",
        "route-7f3a",
        "example.test",
    ] {
        assert!(
            !last.text.contains(secret),
            "{secret:?} appears in the metrics"
        );
    }
}

/// Every label of every series takes its value from a fixed set.
fn assert_bounded_labels(scrape: &Scrape, routes: &BTreeSet<&str>) {
    let one_of = |v: &str, set: &[&str]| set.contains(&v);
    for s in &scrape.series {
        for (key, value) in &s.labels {
            let ok = match key.as_str() {
                "route" => {
                    value == "unmatched"
                        || routes.contains(value.as_str())
                        || value == "/openapi.json"
                        || value.starts_with("/docs")
                }
                "method" => one_of(
                    value,
                    &[
                        "GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS", "other",
                    ],
                ),
                "status" => value.len() == 3 && value.bytes().all(|b| b.is_ascii_digit()),
                "command" => {
                    value.len() <= 16
                        && value.split(' ').count() <= 2
                        && value
                            .split(' ')
                            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase()))
                }
                "outcome" => one_of(
                    value,
                    &[
                        "ok",
                        "no",
                        "bad",
                        "bye",
                        "io",
                        "timeout",
                        "protocol",
                        "cancelled",
                        "other",
                        "success",
                        "failure",
                        "throttled",
                        "error",
                    ],
                ),
                "kind" => one_of(
                    value,
                    &[
                        "no",
                        "bad",
                        "bye",
                        "io",
                        "timeout",
                        "protocol",
                        "cancelled",
                        "other",
                        "auth",
                        "unavailable",
                        "tls",
                    ],
                ),
                "reason" => one_of(
                    value,
                    &["idle", "unclean", "ended", "check_failed", "evicted"],
                ),
                "purpose" => one_of(value, &["pool", "watcher"]),
                "type" => one_of(
                    value,
                    &[
                        "message.new",
                        "message.flags",
                        "message.expunged",
                        "mailbox.reset",
                    ],
                ),
                "hit" => one_of(value, &["true", "false"]),
                "source" => one_of(value, &["server", "body"]),
                "version" => value == env!("CARGO_PKG_VERSION"),
                "le" | "quantile" => value == "+Inf" || value.parse::<f64>().is_ok(),
                _ => false,
            };
            assert!(
                ok,
                "label {key}={value:?} of {} is not from a fixed set",
                s.name
            );
        }
    }
}

/// Waits until `addr` accepts connections: the bridge binds its metrics listener as it starts
/// serving, in its own task.
async fn wait_for_listener(addr: std::net::SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listens on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_separate_listener_serves_metrics_and_the_api_port_does_not() {
    let internal = free_local_addr();
    let mut bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.metrics_listen = Some(internal);
    })
    .await;
    let metrics_url = format!("http://{internal}/metrics");
    wait_for_listener(internal).await;

    let on_api_port = json_of(
        bridge
            .request(Method::GET, "/metrics", None)
            .send()
            .await
            .expect("api port"),
    )
    .await;
    assert_problem(
        &on_api_port,
        StatusCode::NOT_FOUND,
        "not_found",
        "/metrics on the API port",
    );
    let (_, document) = json_of(
        bridge
            .request(Method::GET, "/openapi.json", None)
            .send()
            .await
            .expect("document"),
    )
    .await;
    assert!(
        document["paths"].get("/metrics").is_none(),
        "the served document does not offer /metrics"
    );
    assert!(document["paths"].get("/healthz").is_some());

    let before = scrape(&bridge.http, &metrics_url).await;
    assert!(before.sum(names::BUILD_INFO, &[]) == 1.0, "{}", before.text);
    let res = bridge
        .request(Method::GET, "/healthz", None)
        .send()
        .await
        .expect("healthz");
    assert_eq!(res.status(), StatusCode::OK);
    let after = scrape(&bridge.http, &metrics_url).await;
    let healthz = [("route", "/healthz"), ("method", "GET"), ("status", "200")];
    assert_eq!(delta(&before, &after, names::HTTP_REQUESTS, &healthz), 1.0);
    assert_eq!(
        after.count(names::HTTP_REQUESTS, &[("route", "/metrics")]),
        0,
        "scrapes of the internal listener are not API traffic"
    );
    // The internal listener serves nothing else.
    for path in ["/healthz", "/v1/mailboxes", "/openapi.json"] {
        let res = bridge
            .http
            .get(format!("http://{internal}{path}"))
            .send()
            .await
            .expect("internal");
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }

    // A restart binds the same address again.
    bridge.restart().await;
    wait_for_listener(internal).await;
    let again = scrape(&bridge.http, &metrics_url).await;
    assert!(again.sum(names::HTTP_REQUESTS, &healthz) >= 1.0);
}

#[tokio::test]
async fn pool_waits_that_run_out_are_counted() {
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.pool_max_per_user = 1;
        c.pool_wait_timeout = 1;
    })
    .await;
    let token = bridge.login().await;
    // Hold the user's only pooled session, as a long request would.
    let key = UserKey {
        upstream: bridge.state.upstream.clone(),
        username: USER.to_owned(),
    };
    let credentials = Credentials::password(USER, PASSWORD);
    let held = bridge
        .state
        .pools
        .session(&key, &credentials)
        .await
        .expect("the user's session");
    let before = scrape(&bridge.http, &bridge.url("/metrics")).await;
    assert_eq!(before.sum(names::POOL_SESSIONS_IDLE, &[]), 0.0);

    let waiting = tokio::spawn(
        bridge
            .request(Method::GET, "/v1/mailboxes", Some(&token))
            .send(),
    );
    let during = scrape_until(&bridge, "a waiting request", |s| {
        s.sum(names::POOL_WAITING, &[]) == 1.0
    })
    .await;
    assert_eq!(during.sum(names::POOL_SESSIONS, &[]), 1.0);
    let refused = json_of(waiting.await.expect("task").expect("response")).await;
    assert_problem(
        &refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream_unavailable",
        "no session within the wait",
    );
    drop(held);

    let after = scrape(&bridge.http, &bridge.url("/metrics")).await;
    assert_eq!(delta(&before, &after, names::POOL_WAIT_TIMEOUTS, &[]), 1.0);
    assert_eq!(after.sum(names::POOL_WAITING, &[]), 0.0);
    let wait_count = bucket(names::POOL_WAIT, "count");
    let fast_waits = bucket(names::POOL_WAIT, "bucket");
    assert_eq!(delta(&before, &after, &wait_count, &[]), 1.0);
    assert_eq!(
        delta(&before, &after, &fast_waits, &[("le", "0.5")]),
        0.0,
        "the wait lasted the full second"
    );
    assert_eq!(
        delta(
            &before,
            &after,
            names::HTTP_REQUESTS,
            &[("route", "/v1/mailboxes"), ("status", "503")]
        ),
        1.0
    );
}

#[tokio::test]
async fn every_json_log_line_of_a_request_carries_its_request_id() {
    let capture = Capture::default();
    let mut log_config = imap_bridge::config::Config::for_server(
        "localhost",
        993,
        imap_bridge::config::Security::Tls,
    );
    log_config.log_format = LogFormat::Json;
    log_config.log = "info,imap_bridge=trace,tower_http=debug".to_owned();
    imap_bridge::telemetry::init_with_writer(
        &log_config.log,
        log_config.log_format,
        capture.clone(),
    )
    .expect("the only subscriber of this test process");
    let bridge = TestBridge::start().await;
    bridge
        .dovecot
        .deliver_many(USER, "INBOX", corpus::bulk(2, 3));

    let send = |method: Method, path: &str, id: Option<&str>, token: Option<&str>| {
        let mut req = bridge.request(method, path, token);
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        req
    };
    let res = send(Method::POST, "/v1/auth/login", Some("req-login-01"), None)
        .json(&json!({"username": USER, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.headers()["x-request-id"], "req-login-01");
    let token: Value = res.json().await.expect("token");
    let token = token["access_token"].as_str().expect("token").to_owned();
    let res = send(
        Method::GET,
        "/v1/mailboxes/INBOX/messages",
        Some("req-list-02"),
        Some(&token),
    )
    .send()
    .await
    .expect("list");
    assert_eq!(res.status(), StatusCode::OK);
    let res = send(
        Method::GET,
        "/v1/mailboxes/Nope/messages",
        Some("req-missing-03"),
        Some(&token),
    )
    .send()
    .await
    .expect("missing");
    assert_eq!(
        res.headers()["x-request-id"],
        "req-missing-03",
        "problem answers carry the id too"
    );
    assert_problem(
        &json_of(res).await,
        StatusCode::NOT_FOUND,
        "mailbox_not_found",
        "missing",
    );
    let res = send(Method::GET, "/v1/mailboxes", None, Some(&token))
        .send()
        .await
        .expect("unnamed");
    let generated = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(res.status(), StatusCode::OK);
    drop(res);
    // The last line of a request is written when its response is done.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let lines: Vec<Value> = capture
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let id_of = |line: &Value| -> Option<String> {
        line["spans"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "request")
            .map(|s| s["request_id"].as_str().unwrap_or("").to_owned())
    };
    // Every line written inside a request names it, and names it in its own span too.
    for line in &lines {
        if let Some(id) = id_of(line) {
            assert!(!id.is_empty(), "a request line without an id: {line}");
            assert_eq!(line["span"]["request_id"], id.as_str(), "{line}");
        }
    }
    let of = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| id_of(l).as_deref() == Some(id))
            .collect()
    };
    for (id, path, status, imap_commands) in [
        (
            "req-login-01",
            "/v1/auth/login",
            200,
            &["AUTHENTICATE PLAIN"][..],
        ),
        (
            "req-list-02",
            "/v1/mailboxes/INBOX/messages",
            200,
            &["SELECT", "UID FETCH"][..],
        ),
        (
            "req-missing-03",
            "/v1/mailboxes/Nope/messages",
            404,
            &["SELECT"][..],
        ),
        (generated.as_str(), "/v1/mailboxes", 200, &["LIST"][..]),
    ] {
        let mine = of(id);
        assert!(
            mine.iter().all(|l| l["span"]["path"] == path),
            "{id}: lines of another request"
        );
        assert!(
            mine.iter()
                .any(|l| l["message"] == "finished processing request"
                    && l["status"] == status
                    && l["level"] == "INFO"),
            "{id}: no access line with status {status}: {mine:?}"
        );
        for command in imap_commands {
            assert!(
                mine.iter().any(|l| l["message"] == "imap send"
                    && l["command"].as_str().is_some_and(|c| c.contains(command))),
                "{id}: the IMAP command {command} is not logged under the request: {mine:?}"
            );
        }
    }
}
