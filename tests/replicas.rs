//! Scale-out: three bridge processes sharing one JWT secret in front of one Dovecot, the way
//! replicas behind a load balancer run. A token from one works on the others, an event stream
//! moved from a stopping replica to another resumes with `Last-Event-ID` and misses nothing,
//! and with per-replica budgets of server limit ÷ replicas the user's connections, summed over
//! the replicas, stay within Dovecot's per-user limit under load spread over all three. The
//! README's HAProxy configuration keeps each user on one replica and moves only the users of a
//! replica that gets SIGTERM, without a failed request.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::bridge::{DirectImap, json_of};
use common::dovecot::{Dovecot, DovecotOptions};
use common::process::{BridgeProcess, RawEvent};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const USER: &str = "alice";
const PASSWORD: &str = "replica-password";
const WAIT: Duration = Duration::from_secs(10);

fn mail(subject: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@example.test>\r\nTo: alice@example.test\r\nSubject: {subject}\r\nMessage-ID: <{}@example.test>\r\nDate: Mon, 06 May 2024 12:00:00 +0000\r\n\r\nHello.\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

async fn start_dovecot(opts: DovecotOptions) -> Dovecot {
    tokio::task::spawn_blocking(move || {
        let dovecot = Dovecot::start_with(opts);
        dovecot.add_user(USER, PASSWORD);
        dovecot.deliver_many(USER, "INBOX", (0..10).map(|i| mail(&format!("seed {i}"))));
        dovecot
    })
    .await
    .expect("dovecot start")
}

/// Three replicas of the binary, started side by side with the same settings.
async fn replicas(dovecot: &Dovecot, settings: &[(&str, &str)]) -> Vec<BridgeProcess> {
    let (a, b, c) = tokio::join!(
        BridgeProcess::start(dovecot, settings),
        BridgeProcess::start(dovecot, settings),
        BridgeProcess::start(dovecot, settings),
    );
    vec![a, b, c]
}

async fn send(
    bridge: &BridgeProcess,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = bridge.request(method, path, Some(token));
    if let Some(body) = body {
        req = req.json(&body);
    }
    json_of(req.send().await.expect("request")).await
}

#[tokio::test]
async fn a_token_from_one_replica_works_on_the_others() {
    let dovecot = start_dovecot(DovecotOptions::default()).await;
    let replicas = replicas(&dovecot, &[("IMAP_BRIDGE_SHUTDOWN_DELAY", "0")]).await;
    let [a, b, c] = &replicas[..] else {
        unreachable!()
    };
    let token = a.login(USER, PASSWORD).await;

    let (status, listing) = send(b, Method::GET, "/v1/mailboxes", &token, None).await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    assert!(
        listing["mailboxes"]
            .as_array()
            .expect("mailboxes")
            .iter()
            .any(|m| m["name"] == "INBOX" && m["total"] == 10),
        "{listing}"
    );
    let (status, page) = send(c, Method::GET, "/v1/mailboxes/INBOX/messages", &token, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let uid = page["messages"][0]["uid"].as_u64().expect("a uid");
    let path = format!("/v1/mailboxes/INBOX/messages/{uid}");
    let (status, message) = send(c, Method::GET, &path, &token, None).await;
    assert_eq!(
        (status, message["text"].as_str()),
        (StatusCode::OK, Some("Hello.\n"))
    );

    let (status, flags) = send(
        b,
        Method::PATCH,
        &format!("{path}/flags"),
        &token,
        Some(json!({"add": ["\\Flagged"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{flags}");
    // A third replica reads what the second one changed: the state is on the IMAP server.
    let (_, message) = send(a, Method::GET, &path, &token, None).await;
    assert!(
        message["flags"]
            .as_array()
            .expect("flags")
            .contains(&json!("\\Flagged")),
        "{message}"
    );

    // A ticket issued by one replica opens a stream on another, once there. Single use is
    // kept by each replica's memory, so another replica would take it again (SECURITY.md):
    // user-affinity routing sends it back to the replica that already used it.
    let (status, issued) = send(a, Method::POST, "/v1/events/ticket", &token, None).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let ticket = issued["ticket"].as_str().expect("ticket");
    let by_ticket = |bridge: &BridgeProcess| {
        bridge
            .request(Method::GET, &format!("/v1/events?ticket={ticket}"), None)
            .send()
    };
    let stream = by_ticket(b).await.expect("events");
    assert_eq!(stream.status(), StatusCode::OK);
    let again = by_ticket(b).await.expect("events");
    assert_eq!(
        again.status(),
        StatusCode::UNAUTHORIZED,
        "reused on the same replica"
    );
    let elsewhere = by_ticket(c).await.expect("events");
    assert_eq!(elsewhere.status(), StatusCode::OK, "what SECURITY.md says");
    drop((stream, elsewhere));

    // Logout revokes the token where it is handled; the others accept it until it expires,
    // as SECURITY.md says.
    let (status, _) = send(b, Method::POST, "/v1/auth/logout", &token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(b, Method::GET, "/v1/mailboxes", &token, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for other in [a, c] {
        let (status, _) = send(other, Method::GET, "/v1/mailboxes", &token, None).await;
        assert_eq!(status, StatusCode::OK);
    }
}

fn subjects(events: &[RawEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "message.new")
        .map(|e| e.data["subject"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn an_event_stream_moved_to_another_replica_misses_nothing() {
    let dovecot = start_dovecot(DovecotOptions::default()).await;
    // Streams stay open through the drain delay, so the mail arriving during the move is
    // split between A (until its stream ends) and B's replay.
    let mut replicas = replicas(&dovecot, &[("IMAP_BRIDGE_SHUTDOWN_DELAY", "1")]).await;
    let token = replicas[0].login(USER, PASSWORD).await;
    let on_a = replicas[0].events(&token, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut delivered = Vec::new();
    for i in 0..3 {
        let subject = format!("live on A {i}");
        dovecot.deliver(USER, "INBOX", &mail(&subject), "", None);
        delivered.push(subject);
    }
    on_a.wait_for_events(3, WAIT).await;

    // A is stopped while mail keeps arriving, by delivery and by APPEND from another client.
    replicas[0].terminate();
    let mut imap = DirectImap::login(dovecot.imap_addr(), USER, PASSWORD).await;
    for i in 0..6 {
        let subject = format!("during the move {i}");
        if i % 2 == 0 {
            dovecot.deliver(USER, "INBOX", &mail(&subject), "", None);
        } else {
            imap.append("INBOX", &mail(&subject)).await;
        }
        delivered.push(subject);
    }
    let text = on_a.finished(WAIT).await.expect("A's stream ends cleanly");
    let farewell = text.trim_end().rsplit("\n\n").next().unwrap_or_default();
    assert!(
        farewell.contains(imap_bridge::http::events::SHUTDOWN_COMMENT)
            && farewell.contains("\nretry: "),
        "A's stream ends with the hint to reconnect: {farewell:?}"
    );
    let status = replicas[0].wait_exit(WAIT).await;
    assert!(status.success());
    let from_a = common::process::parse_events(&text);
    let last_id = from_a.last().expect("events from A").id.clone();
    for i in 0..3 {
        let subject = format!("after A stopped {i}");
        imap.append("INBOX", &mail(&subject)).await;
        delivered.push(subject);
    }

    // The client reconnects, through the load balancer, to B.
    let on_b = replicas[1].events(&token, Some(&last_id)).await;
    let missed = delivered.len() - subjects(&from_a).len();
    let replayed = on_b.wait_for_events(missed, WAIT).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    dovecot.deliver(USER, "INBOX", &mail("live on B"), "", None);
    delivered.push("live on B".to_owned());
    on_b.wait_for_events(replayed.len() + 1, WAIT).await;

    let mut seen = subjects(&from_a);
    seen.extend(subjects(&on_b.events()));
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "nothing twice: {seen:?}");
    let expected: BTreeSet<_> = delivered.iter().collect();
    assert_eq!(unique, expected, "every message exactly once");
    let uids: Vec<u64> = on_b
        .events()
        .iter()
        .filter_map(|e| e.data["uid"].as_u64())
        .collect();
    assert!(uids.windows(2).all(|w| w[0] < w[1]), "in order: {uids:?}");
    println!(
        "stream moved from A to B: {} events on A, {} replayed and live on B, {} delivered, \
         none missed or repeated",
        from_a.len(),
        on_b.events().len(),
        delivered.len()
    );
}

// Several threads, so that the requests go on while `doveadm who` is counting connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_with_a_third_of_the_limit_each_stay_within_it() {
    // Dovecot's per-user limit, and each replica's budget: a third of it.
    const LIMIT: usize = 9;
    let dovecot = start_dovecot(DovecotOptions {
        max_userip_connections: u32::try_from(LIMIT).expect("small"),
        ..DovecotOptions::default()
    })
    .await;
    let budget = [
        ("IMAP_BRIDGE_SHUTDOWN_DELAY", "0"),
        ("IMAP_BRIDGE_POOL_MAX_PER_USER", "2"),
        ("IMAP_BRIDGE_MAX_CONNECTIONS_PER_USER", "3"),
    ];
    let replicas = Arc::new(replicas(&dovecot, &budget).await);
    let token = replicas[0].login(USER, PASSWORD).await;
    // A stream on every replica: one IDLE watcher each, inside its budget.
    let mut streams = Vec::new();
    for replica in replicas.iter() {
        streams.push(replica.events(&token, None).await);
    }

    // Requests spread round-robin over the replicas, as a load balancer without affinity does.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..12usize)
        .map(|worker| {
            let (replicas, token, stop) = (replicas.clone(), token.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut round = worker;
                while !stop.load(Ordering::SeqCst) {
                    let bridge = &replicas[round % 3];
                    let uid = 1 + round % 10;
                    let (status, body) = match round % 3 {
                        0 => send(bridge, Method::GET, "/v1/mailboxes", &token, None).await,
                        1 => {
                            let path = format!("/v1/mailboxes/INBOX/messages/{uid}");
                            send(bridge, Method::GET, &path, &token, None).await
                        }
                        _ => {
                            let path = format!("/v1/mailboxes/INBOX/messages/{uid}/flags");
                            let change = json!({"add": [format!("$Round{}", round % 5)]});
                            send(bridge, Method::PATCH, &path, &token, Some(change)).await
                        }
                    };
                    statuses.push((status, body["code"].clone()));
                    round += 1;
                }
                statuses
            })
        })
        .collect();

    let mut most = 0;
    let sampling = tokio::time::Instant::now();
    while sampling.elapsed() < Duration::from_secs(3) {
        most = most.max(tokio::task::block_in_place(|| dovecot.connections(USER)));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut requests = 0;
    for worker in workers {
        for (status, code) in worker.await.expect("worker") {
            assert_eq!(status, StatusCode::OK, "a request failed: {code}");
            requests += 1;
        }
    }
    let settled = dovecot.connections(USER);
    assert!(
        most <= LIMIT,
        "{most} connections at once, over the limit of {LIMIT}"
    );
    assert_eq!(
        settled, LIMIT,
        "each replica holds its whole budget: 2 pooled sessions and 1 IDLE watcher"
    );

    // The limit is real: a fourth replica, over budget, is refused by Dovecot.
    let fourth = BridgeProcess::start(&dovecot, &budget).await;
    let (status, problem) = send(&fourth, Method::GET, "/v1/mailboxes", &token, None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("upstream_unavailable")
        ),
        "{problem}"
    );
    println!(
        "three replicas, budget 3 each (pool 2 + 1 watcher), Dovecot limit {LIMIT}: {requests} \
         requests round-robin, all 200; at most {most} connections at once, {settled} after; \
         a fourth replica got 503"
    );
    drop(streams);
}

/// HAProxy with the configuration README.md documents, in front of `replicas`.
struct Proxy {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts `haproxy` with the README's configuration block, its `bind` and `server` lines
    /// pointed at loopback, plus one line for the test: an `x-served-by` response header naming
    /// the replica that answered.
    async fn start(haproxy: &std::path::Path, replicas: &[BridgeProcess]) -> Self {
        let readme = std::fs::read_to_string(common::tools::in_repo("README.md")).expect("README");
        let block = readme
            .split("```haproxy\n")
            .nth(1)
            .and_then(|rest| rest.split("\n```").next())
            .expect("an haproxy block in README.md");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut addrs = replicas.iter().map(BridgeProcess::addr);
        let mut config: String = block
            .lines()
            .map(|line| {
                let trimmed = line.trim_start();
                if trimmed.starts_with("bind ") {
                    format!("    bind 127.0.0.1:{port}\n")
                } else if let Some(rest) = trimmed.strip_prefix("server ") {
                    let name = rest.split_whitespace().next().expect("a server name");
                    let addr = addrs.next().expect("as many replicas as servers");
                    format!("    server {name} {addr}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        assert!(addrs.next().is_none(), "as many servers as replicas");
        config.push_str("    http-response set-header x-served-by %s\n");
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, &config).expect("haproxy.cfg");
        let check = std::process::Command::new(haproxy)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("haproxy -c");
        assert!(
            check.status.success(),
            "the README's HAProxy configuration is invalid:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = std::process::Command::new(haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("haproxy");
        let proxy = Proxy {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + WAIT;
        while reqwest::get(format!("{}/healthz", proxy.base))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "haproxy did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        proxy
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status, JSON body and the replica that answered, through the proxy.
async fn via(
    http: &reqwest::Client,
    proxy: &Proxy,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value, String) {
    let mut req = http.request(method, format!("{}{path}", proxy.base));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("request through haproxy");
    let served_by = served_by(&res);
    let (status, body) = json_of(res).await;
    (status, body, served_by)
}

fn served_by(res: &reqwest::Response) -> String {
    res.headers()
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_documented_haproxy_configuration_keeps_each_user_on_one_replica() {
    let haproxy = std::path::PathBuf::from("/usr/sbin/haproxy");
    let test = "the_documented_haproxy_configuration_keeps_each_user_on_one_replica";
    if common::tools::require(test, std::slice::from_ref(&haproxy)).is_none() {
        return;
    }
    let users: Vec<String> = (0..6).map(|i| format!("user{i}")).collect();
    let dovecot = {
        let users = users.clone();
        tokio::task::spawn_blocking(move || {
            let dovecot = Dovecot::start();
            for user in &users {
                dovecot.add_user(user, PASSWORD);
                dovecot.deliver(user, "INBOX", &mail("hello"), "", None);
            }
            dovecot
        })
        .await
        .expect("dovecot start")
    };
    // The replica keeps serving for 3 s after SIGTERM while HAProxy's checks take it out.
    let mut replicas = replicas(&dovecot, &[("IMAP_BRIDGE_SHUTDOWN_DELAY", "3")]).await;
    let proxy = Proxy::start(&haproxy, &replicas).await;
    let http = reqwest::Client::new();

    // Every request of a user reaches one replica: logins, calls, tickets and streams.
    let mut home = Vec::new();
    let mut tokens = Vec::new();
    let mut streams = Vec::new();
    for user in &users {
        let login = json!({"username": user, "password": PASSWORD});
        let mut seen = BTreeSet::new();
        let mut token = String::new();
        for _ in 0..2 {
            let (status, body, by) = via(
                &http,
                &proxy,
                Method::POST,
                "/v1/auth/login",
                None,
                Some(login.clone()),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            seen.insert(by);
            token = body["access_token"].as_str().expect("token").to_owned();
            let (status, _, by) = via(
                &http,
                &proxy,
                Method::GET,
                "/v1/mailboxes",
                Some(&token),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            seen.insert(by);
        }
        let (status, issued, by) = via(
            &http,
            &proxy,
            Method::POST,
            "/v1/events/ticket",
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        seen.insert(by);
        let ticket = issued["ticket"].as_str().expect("ticket");
        let res = http
            .get(format!("{}/v1/events?ticket={ticket}", proxy.base))
            .send()
            .await
            .expect("events through haproxy");
        assert_eq!(res.status(), StatusCode::OK);
        seen.insert(served_by(&res));
        streams.push(common::process::RawEventStream::record(res));
        assert_eq!(seen.len(), 1, "{user} was served by {seen:?}");
        home.push(seen.pop_first().expect("a replica"));
        tokens.push(token);
    }
    let homes: BTreeSet<_> = home.iter().collect();
    assert!(
        homes.len() > 1,
        "the users are spread over the replicas: {home:?}"
    );

    // The replica of the first user gets SIGTERM, as in a rolling update.
    let victim = home[0].clone();
    let index: usize = victim
        .strip_prefix("bridge")
        .and_then(|n| n.parse().ok())
        .expect("a server name from the README");
    replicas[index - 1].terminate();
    let mut answered = vec![Vec::new(); users.len()];
    loop {
        let exited = replicas[index - 1].exited();
        for (i, token) in tokens.iter().enumerate() {
            let (status, body, by) = via(
                &http,
                &proxy,
                Method::GET,
                "/v1/mailboxes",
                Some(token),
                None,
            )
            .await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{} during the shutdown: {body}",
                users[i]
            );
            answered[i].push(by);
        }
        if exited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, user) in users.iter().enumerate() {
        let last = answered[i].last().expect("answers");
        if home[i] == victim {
            assert_ne!(last, &victim, "{user} moved to another replica");
        } else {
            assert!(
                answered[i].iter().all(|by| *by == home[i]),
                "{user} stayed on {}: {:?}",
                home[i],
                answered[i]
            );
        }
    }
    // The moved users' event streams ended with the hint to reconnect.
    for (i, stream) in streams.into_iter().enumerate() {
        if home[i] == victim {
            let text = stream.finished(WAIT).await.expect("a clean end");
            assert!(text.contains(imap_bridge::http::events::SHUTDOWN_COMMENT));
        }
    }
    let on_victim = answered[0].iter().filter(|by| **by == victim).count();
    println!(
        "haproxy: users on {home:?}; {victim} got SIGTERM: {on_victim} of {} requests of each \
         of its users still went to it (draining), the rest to {}; every request 200",
        answered[0].len(),
        answered[0].last().expect("answers")
    );
}
