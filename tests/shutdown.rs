//! Stopping the real binary under load, as Kubernetes does: SIGTERM makes `/readyz` fail at
//! once while the listener still accepts, requests in flight finish, event streams end with a
//! reconnection hint, every IMAP session logs out, and the process exits 0 well inside the
//! grace period; a request that outlives the shutdown timeout is cut off rather than holding
//! the exit.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::dovecot::{Dovecot, DovecotOptions};
use common::process::{BridgeProcess, fresh_client};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;

const USERS: [&str; 2] = ["alice", "bob"];
const PASSWORD: &str = "shutdown-password";
/// Clients per user sending requests in a loop.
const WORKERS_PER_USER: usize = 3;
/// Event streams per user.
const STREAMS_PER_USER: usize = 2;
/// `IMAP_BRIDGE_SHUTDOWN_DELAY` of the test, in seconds.
const DELAY: u64 = 2;
/// The slow download: large enough that kernel socket buffers cannot hold it, read at a pace
/// that keeps it in flight for seconds.
const LARGE: usize = 32 * 1024 * 1024;
const READ_RATE: f64 = 6.0 * 1024.0 * 1024.0;

fn mail(subject: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@example.test>\r\nTo: user@example.test\r\nSubject: {subject}\r\nMessage-ID: <{}@example.test>\r\nDate: Mon, 06 May 2024 12:00:00 +0000\r\n\r\nHello.\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

/// A message of about `size` bytes whose every line is numbered, so a gap or a repeat shows.
fn large_mail(size: usize) -> Vec<u8> {
    let mut raw = mail("large").to_vec();
    let mut line = 0u64;
    while raw.len() < size {
        raw.extend_from_slice(
            format!("{line:010} the quick brown fox jumps over the lazy dog 0123456789 abcdef\r\n")
                .as_bytes(),
        );
        line += 1;
    }
    raw
}

async fn start_dovecot() -> Dovecot {
    tokio::task::spawn_blocking(|| {
        let dovecot = Dovecot::start_with(DovecotOptions {
            rawlog: true,
            ..DovecotOptions::default()
        });
        for user in USERS {
            dovecot.add_user(user, PASSWORD);
            dovecot.deliver_many(user, "INBOX", (0..30).map(|i| mail(&format!("seed {i}"))));
        }
        dovecot
    })
    .await
    .expect("dovecot start")
}

/// The UID of the INBOX message with `subject`.
async fn uid_of(bridge: &BridgeProcess, token: &str, subject: &str) -> u32 {
    let (status, page) = bridge
        .get_json(token, "/v1/mailboxes/INBOX/messages?limit=100")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let uid = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["subject"] == subject)
        .and_then(|m| m["uid"].as_u64())
        .unwrap_or_else(|| panic!("no message {subject:?} in {page}"));
    u32::try_from(uid).expect("a UID")
}

/// What one load client saw: the status of every answered request and when it came.
struct Load {
    answered: Vec<(Instant, StatusCode)>,
}

/// A client of one user that lists, reads and flags messages in a loop until `stop` or until
/// the bridge no longer accepts its connection.
fn spawn_worker(
    base: String,
    token: String,
    seed: u32,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Load> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let mut answered = Vec::new();
        let mut round = seed;
        while !stop.load(Ordering::SeqCst) {
            let uid = 1 + round % 30;
            let request = match round % 3 {
                0 => http.get(format!("{base}/v1/mailboxes/INBOX/messages?limit=20")),
                1 => http.get(format!("{base}/v1/mailboxes/INBOX/messages/{uid}")),
                _ => {
                    let change = if round.is_multiple_of(2) {
                        "add"
                    } else {
                        "remove"
                    };
                    let mut body = serde_json::Map::new();
                    body.insert(change.to_owned(), json!(["$Load"]));
                    http.patch(format!("{base}/v1/mailboxes/INBOX/messages/{uid}/flags"))
                        .json(&body)
                }
            };
            match request.bearer_auth(&token).send().await {
                Ok(res) => {
                    let status = res.status();
                    // The whole body, so a response cut short would show as an error.
                    if res.bytes().await.is_err() {
                        break;
                    }
                    answered.push((Instant::now(), status));
                }
                // The listener is closed: a load balancer would have sent this elsewhere.
                Err(_) => break,
            }
            round += 1;
        }
        Load { answered }
    })
}

#[tokio::test]
async fn sigterm_under_load_fails_readiness_first_then_drains_and_logs_out() {
    let dovecot = start_dovecot().await;
    let big = large_mail(LARGE);
    dovecot.deliver(USERS[0], "INBOX", &big, "", None);
    let mut bridge = BridgeProcess::start(
        &dovecot,
        &[
            ("IMAP_BRIDGE_SHUTDOWN_DELAY", &DELAY.to_string()),
            ("IMAP_BRIDGE_SHUTDOWN_TIMEOUT", "20"),
        ],
    )
    .await;
    let mut tokens = Vec::new();
    for user in USERS {
        tokens.push(bridge.login(user, PASSWORD).await);
    }

    // Live event streams, each shown to work by an event.
    let mut streams = Vec::new();
    for token in &tokens {
        for _ in 0..STREAMS_PER_USER {
            streams.push(bridge.events(token, None).await);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for user in USERS {
        dovecot.deliver(user, "INBOX", &mail("before the shutdown"), "", None);
    }
    for stream in &streams {
        let events = stream.wait_for_events(1, Duration::from_secs(10)).await;
        assert_eq!(events[0].data["subject"], "before the shutdown");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS_PER_USER * USERS.len())
        .map(|i| {
            spawn_worker(
                bridge.base.clone(),
                tokens[i % USERS.len()].clone(),
                u32::try_from(i).expect("small"),
                stop.clone(),
            )
        })
        .collect();

    // The slow download, started before the signal and read at a steady pace.
    let big_uid = uid_of(&bridge, &tokens[0], "large").await;
    let res = bridge
        .request(
            Method::GET,
            &format!("/v1/mailboxes/INBOX/messages/{big_uid}/raw"),
            Some(&tokens[0]),
        )
        .send()
        .await
        .expect("download");
    assert_eq!(res.status(), StatusCode::OK);
    let received = Arc::new(AtomicUsize::new(0));
    let progress = received.clone();
    let download = tokio::spawn(async move {
        let started = Instant::now();
        let mut body = res.bytes_stream();
        let mut got = Vec::with_capacity(LARGE + 4096);
        while let Some(chunk) = body.next().await {
            got.extend_from_slice(&chunk.map_err(|e| format!("{e:?}"))?);
            progress.store(got.len(), Ordering::SeqCst);
            let due = started + Duration::from_secs_f64(got.len() as f64 / READ_RATE);
            tokio::time::sleep_until(due.into()).await;
        }
        Ok::<_, String>((got, Instant::now()))
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = Instant::now();
    bridge.terminate();
    let probe = fresh_client();
    let not_ready = loop {
        let res = probe
            .get(bridge.url("/readyz"))
            .send()
            .await
            .expect("readyz");
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            let body: serde_json::Value = res.json().await.expect("problem");
            assert_eq!(body["code"], "upstream_unavailable");
            break signalled.elapsed();
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "/readyz still answers 200 a second after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // New connections are still served while load balancers catch up.
    let res = probe
        .get(bridge.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(res.status(), StatusCode::OK);
    let still_accepting = signalled.elapsed();
    assert!(
        still_accepting < Duration::from_secs(DELAY),
        "{still_accepting:?}"
    );

    let (closed, closed_wall) = loop {
        if probe.get(bridge.url("/healthz")).send().await.is_err() {
            break (signalled.elapsed(), SystemTime::now());
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(DELAY + 5),
            "listener never closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let received_at_close = received.load(Ordering::SeqCst);
    assert!(
        closed >= Duration::from_secs(DELAY),
        "the listener closed {closed:?} after SIGTERM, before IMAP_BRIDGE_SHUTDOWN_DELAY"
    );

    let status = bridge.wait_exit(Duration::from_secs(25)).await;
    let exited = signalled.elapsed();
    stop.store(true, Ordering::SeqCst);
    assert!(status.success(), "exit status {status}:\n{}", bridge.log());
    assert!(
        exited < Duration::from_secs(12),
        "shutting down took {exited:?}:\n{}",
        bridge.log()
    );

    // The download started before SIGTERM arrived whole, and the bridge was still fetching
    // it from the IMAP server after it had stopped accepting connections.
    let (got, done) = download
        .await
        .expect("download task")
        .expect("download complete");
    assert!(
        got == big,
        "the download is exactly the message ({} of {} bytes)",
        got.len(),
        big.len()
    );
    let last_fetch = dovecot
        .rawlog_timed_lines_in(USERS[0])
        .into_iter()
        .filter(|(_, line)| line.contains(&format!("UID FETCH {big_uid} (UID BODY.PEEK[]<")))
        .map(|(at, _)| at)
        .max()
        .expect("partial fetches of the download");
    assert!(
        last_fetch > closed_wall,
        "the download's last IMAP fetch came before the listener closed: not in flight"
    );

    // Every answered request succeeded, some of them after SIGTERM.
    let mut answered = 0;
    let mut after_signal = 0;
    for worker in workers {
        for (at, status) in worker.await.expect("worker").answered {
            assert!(status.is_success(), "a load request got {status}");
            answered += 1;
            after_signal += usize::from(at > signalled);
        }
    }
    assert!(
        after_signal > 0,
        "no request was served during the drain delay"
    );

    // Every stream ended cleanly with the hint to reconnect after a few seconds.
    for stream in streams {
        let text = stream
            .finished(Duration::from_secs(5))
            .await
            .expect("the stream ends cleanly, not with a broken connection");
        let tail = text.trim_end().rsplit("\n\n").next().unwrap_or_default();
        assert!(
            tail.contains(&format!(
                ": {}",
                imap_bridge::http::events::SHUTDOWN_COMMENT
            )),
            "{tail:?}"
        );
        let retry: u64 = tail
            .lines()
            .find_map(|l| l.strip_prefix("retry:"))
            .expect("a retry: field at the end")
            .trim()
            .parse()
            .expect("milliseconds");
        assert!((1000..5000).contains(&retry), "{retry}");
    }

    // Every IMAP session logged out.
    for user in USERS {
        dovecot.wait_for_connections(user, 0, Duration::from_secs(3));
        let sessions = dovecot.rawlog_sessions_in(user);
        assert!(!sessions.is_empty());
        for session in sessions {
            let last = session.trim_end().lines().last().unwrap_or_default();
            assert!(
                last.ends_with(" LOGOUT"),
                "a session of {user} ended without LOGOUT: ...{:?}",
                &session[session.len().saturating_sub(200)..]
            );
        }
    }
    println!(
        "shutdown under load ({} users, {} load clients, {} event streams, one {} MiB download): \
         /readyz 503 after {} ms, listener closed after {} ms ({} of {} MiB downloaded), \
         download done after {} ms, exit 0 after {} ms; {answered} requests answered, \
         {after_signal} after SIGTERM",
        USERS.len(),
        WORKERS_PER_USER * USERS.len(),
        STREAMS_PER_USER * USERS.len(),
        LARGE >> 20,
        not_ready.as_millis(),
        closed.as_millis(),
        received_at_close >> 20,
        LARGE >> 20,
        done.duration_since(signalled).as_millis(),
        exited.as_millis(),
    );
}

#[tokio::test]
async fn a_request_outliving_the_shutdown_timeout_is_cut_off_and_the_bridge_exits() {
    let dovecot = start_dovecot().await;
    dovecot.deliver(USERS[0], "INBOX", &large_mail(LARGE), "", None);
    let mut bridge = BridgeProcess::start(
        &dovecot,
        &[
            ("IMAP_BRIDGE_SHUTDOWN_DELAY", "0"),
            ("IMAP_BRIDGE_SHUTDOWN_TIMEOUT", "3"),
        ],
    )
    .await;
    let token = bridge.login(USERS[0], PASSWORD).await;
    // A client that stops reading after the first bytes: the download can never finish.
    let big_uid = uid_of(&bridge, &token, "large").await;
    let res = bridge
        .request(
            Method::GET,
            &format!("/v1/mailboxes/INBOX/messages/{big_uid}/raw"),
            Some(&token),
        )
        .send()
        .await
        .expect("download");
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.bytes_stream();
    let first = body.next().await.expect("a first chunk").expect("bytes");
    assert!(!first.is_empty());

    let signalled = Instant::now();
    bridge.terminate();
    let status = bridge.wait_exit(Duration::from_secs(10)).await;
    let exited = signalled.elapsed();
    assert!(status.success(), "exit status {status}:\n{}", bridge.log());
    // It waited for the request until the cut-off (timeout less 2 s for LOGOUTs), no longer.
    assert!(
        exited >= Duration::from_secs(1) && exited < Duration::from_secs(5),
        "exit after {exited:?}:\n{}",
        bridge.log()
    );
    let mut rest = 0;
    let mut cut = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => rest += bytes.len(),
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(
        cut || first.len() + rest < LARGE,
        "the stalled download cannot have completed"
    );
    dovecot.wait_for_connections(USERS[0], 0, Duration::from_secs(3));
    println!(
        "a stalled download with IMAP_BRIDGE_SHUTDOWN_TIMEOUT=3: exit 0 after {} ms",
        exited.as_millis()
    );
}
