//! Upstream faults under load: a proxy between the bridge and Dovecot (tests/common/faulty_proxy.rs)
//! resets, closes, stalls, truncates and slows down the bridge's IMAP connections at chosen
//! places while 20 clients use the API and 10 event streams follow INBOX. Requests must end
//! cleanly, no session may be used again after a fault, and every delivered message must reach
//! every stream exactly once.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::bridge::{Link, Serving, config_for_server, seg};
use common::corpus;
use common::dovecot::{Dovecot, DovecotOptions};
use common::faulty_proxy::{Dir, Fault, FaultyProxy, Kind, Place, Stalled};
use common::hostile::RawlogCursor;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USERS: usize = 4;
const PASSWORD: &str = "fault-test-password";
/// Traffic clients; client `i` is user `i % USERS`.
const CLIENTS: usize = 20;
/// Clients per user; each owns the bulk messages whose number has its class (`i / USERS`), so
/// that no two clients flag or move the same message.
const CLASSES: usize = CLIENTS / USERS;
/// The user of each event stream.
const STREAM_USERS: [usize; 10] = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3];
const FAULTS: usize = 100;
const BULK: usize = 120;
/// Attachments of the messages in each user's `Large` mailbox: two to five partial fetches of
/// 256 KiB each, so large-body faults find their place often.
const LARGE: [usize; 3] = [300_000, 500_000, 800_000];
/// One message to one user's INBOX this often, users in turn.
const DELIVERY_EVERY: Duration = Duration::from_millis(250);

/// The bridge's IMAP time limits. Short, so that a stalled command fails within the test's
/// budget rather than after the default 30 s; still far above what a command or login takes
/// on loopback in a debug build under load (milliseconds), and above Dovecot's 0.5 s IDLE
/// notification delay. Every login uses the right password, so Dovecot's auth penalty never
/// delays one, and 5 s is enough to connect.
const COMMAND_TIMEOUT: u64 = 5;
const CONNECT_TIMEOUT: u64 = 5;
const POOL_WAIT: u64 = 5;
/// Past its time limit, the bridge has given up on a connection within this much (timer and
/// scheduling lag on a loaded machine).
const GRACE: Duration = Duration::from_millis(1500);
/// Stalls longer than the time limit (the bridge must give up) and shorter (it must not).
const LONG_STALL: Duration = Duration::from_secs(8);
const SHORT_STALL: Duration = Duration::from_secs(2);
/// The longest a request may take, body included: a wait for a busy user's session, a new
/// session's login and one command that hits a stall, each cut off at its limit, plus 5 s for
/// the rest of the request's work on a loaded 2-core machine. A fault that runs into a limit
/// makes the bridge drop that connection, so no request meets two limits on one connection.
const REQUEST_LIMIT: Duration =
    Duration::from_secs(POOL_WAIT + CONNECT_TIMEOUT + COMMAND_TIMEOUT + 5);
/// A request still unanswered after this long hangs.
const HANG: Duration = Duration::from_secs(40);
/// Faults armed at once, and the pace of arming: 100 faults over about 20 s.
const ARMED_AT_ONCE: usize = 4;
const ARM_EVERY: Duration = Duration::from_millis(150);
/// A fault that found no place in this long is put back at the end of the queue.
const REQUEUE_AFTER: Duration = Duration::from_secs(4);
/// The fault phase gives up after this long (the test then fails: a place was never found).
const FAULT_PHASE_LIMIT: Duration = Duration::from_secs(40);
/// How long streams may take to catch up after the faults: a watcher's backoff starts over
/// each time it follows its mailbox again (`an_event_watcher_reconnects_promptly_after_earlier_drops`),
/// so only faults that hit several reconnections of one watcher in a row make it wait longer
/// than a second or two; 4 s is its fourth step.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(20);

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts every panic in the process (the bridge runs in it), keeping the default report.
fn count_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default(info);
    }));
}

fn user_name(user: usize) -> String {
    format!("fault{user}")
}

fn probe(user: usize, n: usize) -> (String, Vec<u8>) {
    let subject = format!("Probe u{user} #{n}");
    let raw = format!(
        "From: Probe <probe@example.test>\r\nTo: {}@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <probe-{user}-{n}@example.test>\r\nDate: Mon, 06 May 2024 12:00:00 +0000\r\n\
         \r\nProbe {n}.\r\n",
        user_name(user)
    );
    (subject, raw.into_bytes())
}

/// The owner class of a bulk message from its subject (`Bulk message 17`).
fn bulk_class(subject: &str) -> Option<usize> {
    let n: usize = subject.strip_prefix("Bulk message ")?.parse().ok()?;
    Some(n % CLASSES)
}

/// 100 faults: every kind at every place, four variants each (stall: long or short, in the
/// direction it fires in or both; delay: 30 to 120 ms a chunk for 2 s; handshake and random
/// places: client or server bytes), in random order.
fn plan_faults(rng: &mut StdRng) -> Vec<Fault> {
    let kinds = |v: usize| {
        [
            Kind::Reset,
            Kind::Close,
            Kind::Truncate,
            Kind::Stall {
                which: if v.is_multiple_of(2) {
                    Stalled::Trigger
                } else {
                    Stalled::Both
                },
                duration: if v < 2 { LONG_STALL } else { SHORT_STALL },
            },
            Kind::Delay {
                per_chunk: Duration::from_millis(30 + 30 * v as u64),
                window: Duration::from_secs(2),
            },
        ]
    };
    let mut plan = Vec::new();
    for v in 0..4 {
        for kind in kinds(v) {
            // Truncation cuts a server write; the other kinds alternate between directions.
            let dir = if kind == Kind::Truncate || v % 2 == 1 {
                Dir::Down
            } else {
                Dir::Up
            };
            let places = [
                Place::Handshake {
                    dir,
                    offset: match dir {
                        Dir::Up => rng.random_range(0..200),
                        Dir::Down => rng.random_range(0..1500),
                    },
                },
                Place::LargeBody {
                    offset: rng.random_range(128 * 1024..240 * 1024),
                },
                Place::MidLiteral {
                    offset: rng.random_range(1024..12 * 1024),
                },
                Place::Idle,
                Place::Random {
                    dir,
                    after: match dir {
                        Dir::Up => rng.random_range(0..2048),
                        Dir::Down => rng.random_range(0..256 * 1024),
                    },
                },
            ];
            for place in places {
                plan.push(Fault { kind, place });
            }
        }
    }
    plan.shuffle(rng);
    plan
}

/// Outcomes of requests, by label (`200`, `503 upstream_unavailable`, `200 body cut`).
#[derive(Default)]
struct Tally {
    outcomes: BTreeMap<String, usize>,
    by_op: BTreeMap<String, usize>,
    failures: Vec<String>,
    /// The first problem detail of each label, for the report.
    details: BTreeMap<String, String>,
    slowest: Duration,
    requests: usize,
}

/// What a request must deliver.
#[derive(Clone, Copy)]
enum Expect<'a> {
    Json,
    /// Exactly these bytes; a body cut short must be a prefix of them.
    Bytes(&'a [u8]),
}

/// The HTTP side shared by every client.
struct Api {
    base: String,
    http: reqwest::Client,
    tally: Mutex<Tally>,
}

/// Problem codes a request may end with while upstream connections fail: a stale UID after
/// moves, and the upstream errors.
const CLEAN_PROBLEMS: [(u16, &str); 4] = [
    (404, "message_not_found"),
    (502, "upstream_rejected"),
    (503, "upstream_unavailable"),
    (504, "upstream_timeout"),
];

/// Whether `body` is an RFC 9457 problem for `status`; its code if so.
fn problem_code(status: StatusCode, content_type: &str, body: &[u8]) -> Result<String, String> {
    if content_type != "application/problem+json" {
        return Err(format!("content type {content_type:?}"));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("problem body is not JSON: {e}"))?;
    if value["status"].as_u64() != Some(u64::from(status.as_u16()))
        || !value["title"].is_string()
        || !value["detail"].is_string()
        || !value["type"].is_string()
    {
        return Err(format!("not a problem for {status}: {value}"));
    }
    value["code"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("problem without code: {value}"))
}

impl Api {
    fn request(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    fn record(
        &self,
        op: &str,
        label: String,
        detail: Option<String>,
        elapsed: Duration,
        failure: Option<String>,
    ) {
        let mut tally = self.tally.lock().expect("tally");
        if let Some(detail) = detail {
            tally
                .details
                .entry(format!("{op} {label}"))
                .or_insert(detail);
        }
        tally.requests += 1;
        tally.slowest = tally.slowest.max(elapsed);
        *tally.outcomes.entry(label.clone()).or_insert(0) += 1;
        *tally.by_op.entry(format!("{op} {label}")).or_insert(0) += 1;
        if let Some(why) = failure {
            tally.failures.push(format!("{op}: {why} ({elapsed:?})"));
        }
    }

    /// Sends `req` and checks how it ended; returns the JSON body of a success.
    async fn call(&self, op: &str, req: RequestBuilder, expect: Expect<'_>) -> Call {
        let started = Instant::now();
        let (label, failure, body) = match self.exchange(req, expect).await {
            Ok((label, body)) => (label, None, body),
            Err((label, why)) => (label, Some(why), None),
        };
        let detail = body
            .as_ref()
            .and_then(|b| b["detail"].as_str())
            .map(str::to_owned);
        let body = body.filter(|_| label.len() == 3);
        let elapsed = started.elapsed();
        let failure = failure.or_else(|| {
            (elapsed > REQUEST_LIMIT).then(|| format!("took {elapsed:?}, over {REQUEST_LIMIT:?}"))
        });
        let success = failure.is_none() && label.len() == 3 && label.starts_with('2');
        self.record(op, label, detail, elapsed, failure);
        Call { success, body }
    }

    async fn exchange(
        &self,
        req: RequestBuilder,
        expect: Expect<'_>,
    ) -> Result<(String, Option<Value>), (String, String)> {
        let mut res = match req.send().await {
            Ok(res) => res,
            Err(e) if e.is_timeout() => return Err(("hang".into(), format!("no answer: {e}"))),
            Err(e) => return Err(("transport error".into(), format!("{e:?}"))),
        };
        let status = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !status.is_success() {
            let body = res.bytes().await.unwrap_or_default();
            let code = problem_code(status, &content_type, &body)
                .map_err(|why| (status.as_u16().to_string(), why))?;
            let label = format!("{} {code}", status.as_u16());
            if !CLEAN_PROBLEMS.contains(&(status.as_u16(), code.as_str())) {
                return Err((
                    label,
                    format!("unexpected problem {}", String::from_utf8_lossy(&body)),
                ));
            }
            // Kept for the report's details; not handed to the caller as a success.
            let problem = serde_json::from_slice(&body).ok();
            return Ok((label, problem));
        }
        match expect {
            Expect::Json => {
                let body = res.bytes().await.map_err(|e| {
                    (
                        format!("{} body cut", status.as_u16()),
                        format!("JSON body cut: {e}"),
                    )
                })?;
                let value: Value = serde_json::from_slice(&body).map_err(|e| {
                    (
                        status.as_u16().to_string(),
                        format!("body is not JSON: {e}"),
                    )
                })?;
                Ok((status.as_u16().to_string(), Some(value)))
            }
            Expect::Bytes(expected) => {
                let mut got = Vec::with_capacity(expected.len());
                loop {
                    match res.chunk().await {
                        Ok(Some(chunk)) => got.extend_from_slice(&chunk),
                        Ok(None) => break,
                        Err(e) => {
                            // Once the head is sent, a download that loses its IMAP connection
                            // can only be aborted; the client must see that it is incomplete.
                            let label = format!("{} body cut", status.as_u16());
                            if !expected.starts_with(&got) {
                                return Err((label, format!("cut body is not a prefix: {e}")));
                            }
                            if e.is_timeout() {
                                return Err(("hang".into(), format!("body stalled: {e}")));
                            }
                            return Ok((label, None));
                        }
                    }
                }
                if got != expected {
                    return Err((
                        status.as_u16().to_string(),
                        format!(
                            "wrong content: {} bytes, expected {}",
                            got.len(),
                            expected.len()
                        ),
                    ));
                }
                Ok((status.as_u16().to_string(), None))
            }
        }
    }
}

/// How one request ended.
struct Call {
    success: bool,
    body: Option<Value>,
}

/// A message of a user's `Large` mailbox and what downloading it must give.
struct LargeMessage {
    uid: u32,
    raw: Vec<u8>,
    attachment: Vec<u8>,
}

/// One of the 20 clients.
struct Client {
    user: usize,
    class: usize,
    token: String,
    api: Arc<Api>,
    large: Arc<Vec<LargeMessage>>,
    rng: StdRng,
    /// UID and subject of the last header page's messages.
    page: Vec<(u32, String)>,
    cursor: Option<String>,
}

impl Client {
    fn owned(&mut self) -> Option<u32> {
        let class = self.class;
        let mine: Vec<u32> = self
            .page
            .iter()
            .filter(|(_, s)| bulk_class(s) == Some(class))
            .map(|(uid, _)| *uid)
            .collect();
        mine.choose(&mut self.rng).copied()
    }

    async fn mailboxes(&mut self) -> bool {
        let req = self.api.request(Method::GET, "/v1/mailboxes", &self.token);
        self.api.call("mailboxes", req, Expect::Json).await.success
    }

    async fn page(&mut self, from_start: bool) -> bool {
        let path = match (&self.cursor, from_start) {
            (Some(cursor), false) => format!(
                "/v1/mailboxes/INBOX/messages?limit=20&cursor={}",
                seg(cursor)
            ),
            _ => "/v1/mailboxes/INBOX/messages?limit=20".to_owned(),
        };
        let req = self.api.request(Method::GET, &path, &self.token);
        let call = self.api.call("page", req, Expect::Json).await;
        if let Some(body) = &call.body {
            self.page = body["messages"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|m| {
                            Some((
                                u32::try_from(m["uid"].as_u64()?).ok()?,
                                m["subject"].as_str().unwrap_or("").to_owned(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            self.cursor = body["next_cursor"].as_str().map(str::to_owned);
        }
        call.success
    }

    async fn view(&mut self, uid: u32) -> bool {
        let req = self.api.request(
            Method::GET,
            &format!("/v1/mailboxes/INBOX/messages/{uid}"),
            &self.token,
        );
        self.api.call("view", req, Expect::Json).await.success
    }

    async fn attachment(&mut self) -> bool {
        let large = self.large.clone();
        let Some(m) = large.choose(&mut self.rng) else {
            return false;
        };
        let req = self.api.request(
            Method::GET,
            &format!("/v1/mailboxes/Large/messages/{}/attachments/2", m.uid),
            &self.token,
        );
        self.api
            .call("attachment", req, Expect::Bytes(&m.attachment))
            .await
            .success
    }

    async fn raw(&mut self) -> bool {
        let large = self.large.clone();
        let Some(m) = large.choose(&mut self.rng) else {
            return false;
        };
        let req = self.api.request(
            Method::GET,
            &format!("/v1/mailboxes/Large/messages/{}/raw", m.uid),
            &self.token,
        );
        self.api
            .call("raw", req, Expect::Bytes(&m.raw))
            .await
            .success
    }

    async fn flags(&mut self, uid: u32) -> bool {
        let change = if self.rng.random_bool(0.5) {
            json!({"add": ["$Fault"]})
        } else {
            json!({"remove": ["$Fault"]})
        };
        let req = self
            .api
            .request(
                Method::PATCH,
                &format!("/v1/mailboxes/INBOX/messages/{uid}/flags"),
                &self.token,
            )
            .json(&change);
        self.api.call("flags", req, Expect::Json).await.success
    }

    async fn move_uids(&mut self, from: &str, uids: &[u32], to: &str) -> Call {
        let req = self
            .api
            .request(
                Method::POST,
                &format!("/v1/mailboxes/{}/move", seg(from)),
                &self.token,
            )
            .json(&json!({"uids": uids, "to": to}));
        self.api.call("move", req, Expect::Json).await
    }

    /// Moves one of its messages to `Moved` and back.
    async fn move_and_back(&mut self, uid: u32) -> bool {
        let there = self.move_uids("INBOX", &[uid], "Moved").await;
        let new_uid = there.body.as_ref().and_then(|b| {
            b["results"][0]["new_uid"]
                .as_u64()
                .and_then(|u| u32::try_from(u).ok())
        });
        match new_uid {
            Some(new_uid) => {
                self.move_uids("Moved", &[new_uid], "INBOX").await.success && there.success
            }
            None => false,
        }
    }

    /// Moves back whatever of its messages a failed move left in `Moved`.
    async fn rescue(&mut self) -> bool {
        let req = self.api.request(
            Method::GET,
            "/v1/mailboxes/Moved/messages?limit=200",
            &self.token,
        );
        let call = self.api.call("rescue list", req, Expect::Json).await;
        let Some(body) = call.body else {
            return false;
        };
        let class = self.class;
        let mine: Vec<u32> = body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| bulk_class(m["subject"].as_str().unwrap_or("")) == Some(class))
            .filter_map(|m| u32::try_from(m["uid"].as_u64()?).ok())
            .collect();
        if mine.is_empty() {
            return call.success;
        }
        self.move_uids("Moved", &mine, "INBOX").await.success
    }

    /// Mixed traffic until `stop`.
    async fn run(mut self, stop: Arc<AtomicBool>) -> Self {
        while !stop.load(Ordering::SeqCst) {
            if self.page.is_empty() {
                self.page(true).await;
            }
            // Downloads are a sixth of the traffic: enough for large-body faults, and what
            // Dovecot records of them stays within a few hundred MB.
            match self.rng.random_range(0..24) {
                0 | 1 => {
                    self.mailboxes().await;
                }
                2..=7 => {
                    let from_start = self.rng.random_bool(0.5);
                    self.page(from_start).await;
                }
                8..=12 => {
                    if let Some(&(uid, _)) = self.page.choose(&mut self.rng) {
                        self.view(uid).await;
                    }
                }
                13 | 14 => {
                    self.attachment().await;
                }
                15 | 16 => {
                    self.raw().await;
                }
                17..=19 => {
                    if let Some(uid) = self.owned() {
                        self.flags(uid).await;
                    }
                }
                20..=22 => {
                    if let Some(uid) = self.owned() {
                        self.move_and_back(uid).await;
                    }
                }
                _ => {
                    self.rescue().await;
                }
            }
            let pause = self.rng.random_range(50..150);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        self
    }

    /// Once faults are over: every kind of request, each of which must succeed. Returns what
    /// did not.
    async fn check_quiet(&mut self) -> Vec<String> {
        let mut failed = Vec::new();
        if !self.mailboxes().await {
            failed.push("mailboxes");
        }
        if !self.rescue().await {
            failed.push("rescue");
        }
        if !self.page(true).await {
            failed.push("page");
        }
        // The newest messages are probes; the client's own are further down.
        while self.owned().is_none() && self.cursor.is_some() {
            if !self.page(false).await {
                failed.push("next page");
                break;
            }
        }
        match self.owned() {
            Some(uid) => {
                if !self.view(uid).await {
                    failed.push("view");
                }
                if !self.flags(uid).await {
                    failed.push("flags");
                }
                if !self.move_and_back(uid).await {
                    failed.push("move and back");
                }
            }
            None => failed.push("no message of its own on the first page"),
        }
        if !self.attachment().await {
            failed.push("attachment");
        }
        if !self.raw().await {
            failed.push("raw");
        }
        failed
            .into_iter()
            .map(|f| format!("user {} class {}: {f}", self.user, self.class))
            .collect()
    }
}

/// What one event stream received.
#[derive(Default)]
struct StreamLog {
    /// `message.new` events per probe subject.
    probes: HashMap<String, usize>,
    /// Probes found by listing INBOX after a `mailbox.reset`.
    listed: HashSet<String>,
    /// Probes of other users (must stay empty).
    foreign: Vec<String>,
    events: BTreeMap<String, usize>,
    /// Reconnections the client chose (with `Last-Event-ID`).
    reconnects: usize,
    /// Streams that ended or broke without the client choosing it.
    broken: usize,
    /// Failed attempts to open the stream, by outcome.
    refused: BTreeMap<String, usize>,
    resets: usize,
}

/// One event stream's client.
struct Follower {
    user: usize,
    token: String,
    api: Arc<Api>,
    /// Without a total timeout: streams stay open.
    sse: reqwest::Client,
    log: Arc<Mutex<StreamLog>>,
    /// Told each time the stream opens.
    opened: Arc<tokio::sync::Notify>,
    stop: Arc<AtomicBool>,
    seed: u64,
}

/// One event stream on INBOX, reconnecting with `Last-Event-ID` every few seconds as a client on
/// a flaky network would, until `stop`.
async fn follow_stream(follower: Follower) {
    let Follower {
        user,
        token,
        api,
        sse,
        log,
        opened,
        stop,
        seed,
    } = follower;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut last_id: Option<String> = None;
    let own = format!("Probe u{user} ");
    while !stop.load(Ordering::SeqCst) {
        let mut req = sse
            .get(format!("{}/v1/events?mailbox=INBOX", api.base))
            .bearer_auth(&token);
        if let Some(id) = &last_id {
            req = req.header("last-event-id", id);
        }
        let res = match tokio::time::timeout(HANG, req.send()).await {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => {
                panic!("event stream request failed at the transport level: {e:?}");
            }
            Err(_) => panic!("event stream request unanswered for {HANG:?}"),
        };
        let status = res.status();
        if status != StatusCode::OK {
            let content_type = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = res.bytes().await.unwrap_or_default();
            let code = problem_code(status, &content_type, &body)
                .unwrap_or_else(|why| panic!("event stream refused without a problem: {why}"));
            assert!(
                CLEAN_PROBLEMS.contains(&(status.as_u16(), code.as_str())),
                "event stream refused with {status} {code}"
            );
            *log.lock()
                .expect("log")
                .refused
                .entry(format!("{} {code}", status.as_u16()))
                .or_insert(0) += 1;
            // EventSource gives up on an error status; a client that wants every event
            // retries with the same Last-Event-ID.
            tokio::time::sleep(Duration::from_millis(rng.random_range(300..800))).await;
            continue;
        }
        opened.notify_one();
        let mut events = res.bytes_stream().eventsource();
        let drop_at =
            tokio::time::Instant::now() + Duration::from_millis(rng.random_range(3000..8000));
        loop {
            let planned = tokio::time::sleep_until(drop_at);
            let event = tokio::select! {
                () = planned, if last_id.is_some() => {
                    log.lock().expect("log").reconnects += 1;
                    break;
                }
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
                event = events.next() => event,
            };
            let event = match event {
                Some(Ok(event)) => event,
                Some(Err(_)) | None => {
                    log.lock().expect("log").broken += 1;
                    break;
                }
            };
            if event.event == "message" && event.data.is_empty() {
                continue;
            }
            if !event.id.is_empty() {
                last_id = Some(event.id.clone());
            }
            let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            let reset = {
                let mut entry = log.lock().expect("log");
                *entry.events.entry(event.event.clone()).or_insert(0) += 1;
                match event.event.as_str() {
                    "message.new" => {
                        let subject = data["subject"].as_str().unwrap_or("").to_owned();
                        if subject.starts_with(&own) {
                            *entry.probes.entry(subject).or_insert(0) += 1;
                        } else if subject.starts_with("Probe ") {
                            entry.foreign.push(subject);
                        }
                    }
                    "mailbox.reset" => entry.resets += 1,
                    _ => {}
                }
                event.event == "mailbox.reset"
            };
            if reset {
                let listed = list_probes(&api, &token, &own, &stop).await;
                log.lock().expect("log").listed.extend(listed);
            }
        }
    }
}

/// Every probe subject of the user in INBOX, listed page by page (retrying failed pages), as a
/// client does after `mailbox.reset`.
async fn list_probes(api: &Api, token: &str, own: &str, stop: &AtomicBool) -> Vec<String> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/mailboxes/INBOX/messages?limit=200&cursor={}", seg(c)),
            None => "/v1/mailboxes/INBOX/messages?limit=200".to_owned(),
        };
        let call = api
            .call(
                "relist",
                api.request(Method::GET, &path, token),
                Expect::Json,
            )
            .await;
        let Some(body) = call.body else {
            if stop.load(Ordering::SeqCst) {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        found.extend(
            body["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["subject"].as_str())
                .filter(|s| s.starts_with(own))
                .map(str::to_owned),
        );
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return found,
        }
    }
}

/// Whether every stream has every probe of its user, by event or by a listing after a reset.
fn streams_complete(logs: &[Arc<Mutex<StreamLog>>], delivered: &[Vec<String>]) -> bool {
    logs.iter().zip(STREAM_USERS).all(|(log, user)| {
        let log = log.lock().expect("log");
        delivered[user]
            .iter()
            .all(|p| log.probes.contains_key(p) || log.listed.contains(p))
    })
}

/// The lines of Dovecot's record of what it sent to the user's sessions that are answers with
/// `status` (`OK`, `BAD`), tagged or untagged. The record holds every download too (hundreds
/// of MB), so grep reads it rather than a debug build.
fn answers(dovecot: &Dovecot, user: &str, status: &str) -> Vec<String> {
    let dir = dovecot.dir().join("rawlog").join(user);
    let out = std::process::Command::new("grep")
        .args([
            "-rhaE",
            "--include=*.out",
            &format!(r"^([0-9]+\.[0-9]+ )?(\*|b[0-9]+) {status} "),
        ])
        .arg(&dir)
        .output()
        .expect("grep runs");
    // grep exits with 1 when nothing matches, 2 on trouble.
    assert!(
        out.status.code().is_some_and(|c| c < 2),
        "grep failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Sums the samples of a metric in a Prometheus scrape, by their labels.
fn metric(scrape: &str, name: &str) -> BTreeMap<String, f64> {
    scrape
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = series.strip_prefix(name).unwrap_or("").to_owned();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_and_event_streams_survive_a_hundred_upstream_faults() {
    let wall = Instant::now();
    count_panics();
    let seed: u64 = std::env::var("IMAP_BRIDGE_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (IMAP_BRIDGE_FAULTS_SEED repeats the choices; timing differs)");
    let mut rng = StdRng::seed_from_u64(seed);

    let dovecot = tokio::task::spawn_blocking(|| {
        let dovecot = Dovecot::start_with(DovecotOptions {
            rawlog: true,
            // Dovecot counts a connection until it hears that it closed: a connection the
            // bridge gave up on during a client-side stall stays open upstream until the
            // stall ends, beside the 8 the bridge may open per user.
            max_userip_connections: 20,
            ..DovecotOptions::default()
        });
        for user in 0..USERS {
            let name = user_name(user);
            dovecot.add_user(&name, PASSWORD);
            dovecot.deliver_many(&name, "INBOX", corpus::bulk(BULK, user as u64));
            dovecot.create_mailbox(&name, "Moved");
            for size in LARGE {
                dovecot.deliver(&name, "Large", &corpus::with_attachment(size), "", None);
            }
        }
        dovecot
    })
    .await
    .expect("dovecot");
    let dovecot = Arc::new(dovecot);

    let gives_up_after = Duration::from_secs(COMMAND_TIMEOUT.max(CONNECT_TIMEOUT)) + GRACE;
    let proxy = Arc::new(FaultyProxy::start(dovecot.imaps_addr(), gives_up_after).await);
    let mut config = config_for_server(
        dovecot.imap_addr(),
        proxy.addr(),
        dovecot.ca_cert_path(),
        Link::Tls,
    );
    config.imap_command_timeout = COMMAND_TIMEOUT;
    config.imap_connect_timeout = CONNECT_TIMEOUT;
    config.pool_wait_timeout = POOL_WAIT;
    let (mut serving, bridge, _state) = Serving::start(config).await;
    let api = Arc::new(Api {
        base: bridge.base.clone(),
        http: reqwest::Client::builder()
            .timeout(HANG)
            .build()
            .expect("client"),
        tally: Mutex::new(Tally::default()),
    });
    let sse = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("event client");

    // Before any fault: tokens, and the Large messages as the bridge lists and serves them.
    let mut tokens = Vec::new();
    let mut large = Vec::new();
    for user in 0..USERS {
        let token = bridge.login_as(&user_name(user), PASSWORD).await;
        let (status, list) = bridge
            .get_json(&token, "/v1/mailboxes/Large/messages?limit=10")
            .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let mut messages = Vec::new();
        for m in list["messages"].as_array().expect("messages") {
            let subject = m["subject"].as_str().expect("subject");
            let size: usize = subject
                .strip_prefix("Attachment of ")
                .and_then(|s| s.strip_suffix(" bytes"))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("unexpected subject {subject}"));
            let uid = u32::try_from(m["uid"].as_u64().expect("uid")).expect("u32");
            let (status, view) = bridge
                .get_json(&token, &format!("/v1/mailboxes/Large/messages/{uid}"))
                .await;
            assert_eq!(status, StatusCode::OK, "{view}");
            assert_eq!(view["attachments"][0]["part_id"], "2", "{view}");
            messages.push(LargeMessage {
                uid,
                raw: corpus::with_attachment(size),
                attachment: corpus::attachment_bytes(size),
            });
        }
        assert_eq!(messages.len(), LARGE.len());
        let messages = Arc::new(messages);
        // Without faults the bridge serves exactly these bytes, so a difference later is the
        // faults' doing.
        let mut check = Client {
            user,
            class: 0,
            token: token.clone(),
            api: api.clone(),
            large: messages.clone(),
            rng: StdRng::seed_from_u64(seed),
            page: Vec::new(),
            cursor: None,
        };
        assert!(check.attachment().await && check.raw().await);
        tokens.push(token);
        large.push(messages);
    }
    let checked = std::mem::take(&mut *api.tally.lock().expect("tally"));
    assert!(checked.failures.is_empty(), "{:?}", checked.failures);

    let setup = wall.elapsed();
    // Event streams, each open before the first delivery.
    let stop_streams = Arc::new(AtomicBool::new(false));
    let mut logs = Vec::new();
    let mut stream_tasks = Vec::new();
    for (i, user) in STREAM_USERS.into_iter().enumerate() {
        let log = Arc::new(Mutex::new(StreamLog::default()));
        let opened = Arc::new(tokio::sync::Notify::new());
        stream_tasks.push(tokio::spawn(follow_stream(Follower {
            user,
            token: tokens[user].clone(),
            api: api.clone(),
            sse: sse.clone(),
            log: log.clone(),
            opened: opened.clone(),
            stop: stop_streams.clone(),
            seed: seed.wrapping_add(i as u64),
        })));
        tokio::time::timeout(Duration::from_secs(20), opened.notified())
            .await
            .expect("event stream opens");
        logs.push(log);
    }
    // The watchers are idling once Dovecot has had the IDLE commands.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Deliveries at a known rate, to every user in turn.
    let stop_deliveries = Arc::new(AtomicBool::new(false));
    let delivered: Arc<Mutex<Vec<Vec<String>>>> = Arc::new(Mutex::new(vec![Vec::new(); USERS]));
    let deliveries = {
        let dovecot = dovecot.clone();
        let delivered = delivered.clone();
        let stop = stop_deliveries.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(DELIVERY_EVERY);
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let user = n % USERS;
                let (subject, raw) = probe(user, n);
                let dovecot = dovecot.clone();
                tokio::task::spawn_blocking(move || {
                    dovecot.deliver(&user_name(user), "INBOX", &raw, "", None);
                })
                .await
                .expect("delivery");
                delivered.lock().expect("delivered")[user].push(subject);
                n += 1;
            }
        })
    };

    // Traffic.
    let stop_traffic = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let user = i % USERS;
            let client = Client {
                user,
                class: i / USERS,
                token: tokens[user].clone(),
                api: api.clone(),
                large: large[user].clone(),
                rng: StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(i as u64)),
                page: Vec::new(),
                cursor: None,
            };
            tokio::spawn(client.run(stop_traffic.clone()))
        })
        .collect();

    // Faults: a few armed at a time, each firing at its first opportunity.
    let fault_phase = Instant::now();
    let mut queue: VecDeque<Fault> = plan_faults(&mut rng).into();
    let mut armed: Vec<(u64, Fault, Instant)> = Vec::new();
    let mut fired = 0;
    let mut requeued = 0;
    let mut last_arm: Option<Instant> = None;
    while fired < FAULTS && fault_phase.elapsed() < FAULT_PHASE_LIMIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut still = Vec::new();
        for (id, fault, at) in armed.drain(..) {
            if proxy.fired(id) {
                fired += 1;
            } else if at.elapsed() > REQUEUE_AFTER && proxy.disarm(id) {
                queue.push_back(fault);
                requeued += 1;
            } else {
                still.push((id, fault, at));
            }
        }
        armed = still;
        if armed.len() < ARMED_AT_ONCE
            && last_arm.is_none_or(|t| t.elapsed() >= ARM_EVERY)
            && let Some(fault) = queue.pop_front()
        {
            armed.push((proxy.arm(fault), fault, Instant::now()));
            last_arm = Some(Instant::now());
        }
    }
    for (id, fault, _) in armed.drain(..) {
        if proxy.disarm(id) {
            queue.push_back(fault);
        } else {
            fired += 1;
        }
    }
    let fault_phase = fault_phase.elapsed();
    let winding_down = Instant::now();
    stop_deliveries.store(true, Ordering::SeqCst);
    deliveries.await.expect("deliveries");
    // Traffic goes on until every stall and delay is over.
    if let Some(end) = proxy.faults_end() {
        tokio::time::sleep_until((end + Duration::from_secs(1)).into()).await;
    }
    stop_traffic.store(true, Ordering::SeqCst);
    let mut clients_back = Vec::new();
    for client in clients {
        clients_back.push(client.await.expect("client"));
    }
    let wind_down = winding_down.elapsed();
    let during = {
        let mut tally = api.tally.lock().expect("tally");
        std::mem::take(&mut *tally)
    };

    // After the faults: everything must work, on whatever sessions the pools hold.
    let quiet_failures: Vec<String> = futures::future::join_all(
        clients_back
            .iter_mut()
            .map(|client| async move { client.check_quiet().await }),
    )
    .await
    .into_iter()
    .flatten()
    .collect();
    let after = {
        let mut tally = api.tally.lock().expect("tally");
        std::mem::take(&mut *tally)
    };

    // Every delivered probe must reach every stream of its user.
    let delivered = delivered.lock().expect("delivered").clone();
    let converging = Instant::now();
    while !streams_complete(&logs, &delivered) && converging.elapsed() < CONVERGENCE_LIMIT {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let convergence = converging.elapsed();
    stop_streams.store(true, Ordering::SeqCst);
    for task in stream_tasks {
        task.await.expect("stream task");
    }
    let streams_stopped = wall.elapsed();

    let scrape = bridge
        .http
        .get(bridge.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let report = proxy.report();
    let mut wire_problems = Vec::new();
    let mut commands = 0;
    let mut bad = Vec::new();
    let mut oks = 0;
    for user in 0..USERS {
        let name = user_name(user);
        match RawlogCursor::new_from_start(&dovecot.dir().join("rawlog").join(&name)).take() {
            Ok(sent) => commands += sent.len(),
            Err(e) => wire_problems.push(e),
        }
        // The pattern fits the record: every command the bridge completed has its OK there.
        oks += answers(&dovecot, &name, "OK").len();
        bad.extend(answers(&dovecot, &name, "BAD"));
    }
    let checked_wire = wall.elapsed();
    serving.stop().await;

    // The counts.
    println!(
        "timeline: setup {setup:.1?}, faults {fault_phase:.1?}, until the last stall ended \
         {wind_down:.1?}; streams stopped at {streams_stopped:.1?}, wire checked at \
         {checked_wire:.1?}, bridge stopped at {:.1?}",
        wall.elapsed()
    );
    println!(
        "fault phase {fault_phase:.1?}: {fired} faults fired ({requeued} re-queued for want of a place), {} connections proxied, {} MB down, {} KB up",
        report.connections,
        report.bytes[1] / 1_000_000,
        report.bytes[0] / 1_000
    );
    println!("faults by kind: {:?}", report.by_kind());
    println!("faults by place: {:?}", report.by_place());
    println!("faults by kind and place: {:?}", report.by_kind_and_place());
    let watched = report.injections.iter().filter(|i| i.watched).count();
    println!(
        "connections watched for reuse after a long stall: {watched}; client bytes seen on them after the bridge's time limit: {}",
        report.reuses.len()
    );
    println!(
        "requests during faults: {} ({:?} slowest): {:?}",
        during.requests, during.slowest, during.outcomes
    );
    println!("  by operation: {:?}", during.by_op);
    println!("  problem details: {:?}", during.details);
    println!(
        "requests after faults: {} ({:?} slowest): {:?}",
        after.requests, after.slowest, after.outcomes
    );
    let mut events: BTreeMap<String, usize> = BTreeMap::new();
    let (mut reconnects, mut broken, mut resets) = (0, 0, 0);
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    let mut exactly_once_failures = Vec::new();
    let mut via_list = 0;
    for (i, (log, user)) in logs.iter().zip(STREAM_USERS).enumerate() {
        let log = log.lock().expect("log");
        for (k, v) in &log.events {
            *events.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &log.refused {
            *refused.entry(k.clone()).or_insert(0) += v;
        }
        reconnects += log.reconnects;
        broken += log.broken;
        resets += log.resets;
        for p in &delivered[user] {
            match (
                log.probes.get(p).copied().unwrap_or(0),
                log.listed.contains(p),
            ) {
                (1, _) => {}
                (0, true) => via_list += 1,
                (0, false) => {
                    exactly_once_failures.push(format!("stream {i} (user {user}) never got {p}"))
                }
                (n, _) => exactly_once_failures
                    .push(format!("stream {i} (user {user}) got {p} {n} times")),
            }
        }
        for p in log.probes.keys() {
            if !delivered[user].contains(p) {
                exactly_once_failures.push(format!("stream {i} got {p}, never delivered"));
            }
        }
        for p in &log.foreign {
            exactly_once_failures.push(format!("stream {i} (user {user}) got another user's {p}"));
        }
    }
    let probes: usize = delivered.iter().map(Vec::len).sum();
    println!(
        "events: {probes} probes delivered ({} per user at {DELIVERY_EVERY:?} intervals), streams complete after {convergence:.1?} more; received {events:?}; {reconnects} reconnects with Last-Event-ID, {broken} broken streams, {resets} mailbox.reset, {via_list} probes counted from a listing after a reset; refused reconnects {refused:?}",
        probes / USERS
    );
    for name in [
        "imap_bridge_pool_sessions_closed_total",
        "imap_bridge_imap_connect_failures_total",
        "imap_bridge_imap_errors_total",
        "imap_bridge_idle_watcher_reconnects_total",
        "imap_bridge_sse_resets_total",
    ] {
        println!("{name}: {:?}", metric(&scrape, name));
    }
    println!(
        "Dovecot received {commands} commands (post-login, all users) and answered {oks} with OK and {} with BAD; wall time {:.1?}",
        bad.len(),
        wall.elapsed()
    );

    // 1. Every request ended cleanly and in time, during and after the faults.
    assert!(
        during.failures.is_empty(),
        "{} requests did not end cleanly during faults:\n{}",
        during.failures.len(),
        during.failures.join("\n")
    );
    let server_errors: f64 = metric(&scrape, "imap_bridge_http_requests_total")
        .iter()
        .filter(|(labels, _)| labels.contains("status=\"500\""))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(server_errors, 0.0, "the bridge answered 500");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");
    // The faults happened, everywhere they were meant to.
    assert_eq!(
        fired, FAULTS,
        "only {fired} of {FAULTS} faults found their place in {FAULT_PHASE_LIMIT:?}; waiting: {queue:?}"
    );
    assert_eq!(report.injections.len(), FAULTS);
    assert!(watched > 0, "no long stall was watched for reuse");
    // 2. No session was used again after a fault: no client bytes on a connection after the
    // bridge's time limit ran out on it, every request after the faults succeeds, and what
    // reached Dovecot is well-formed and never answered BAD.
    assert!(
        report.reuses.is_empty(),
        "connections used after the bridge must have given up on them: {:?}",
        report.reuses
    );
    assert!(
        quiet_failures.is_empty() && after.failures.is_empty(),
        "after the faults: {quiet_failures:?} {:?}",
        after.failures
    );
    assert!(wire_problems.is_empty(), "{wire_problems:?}");
    // A session used out of step with the server would read answers to other commands
    // (`protocol`) or have its commands refused (`bad`).
    let errors = metric(&scrape, "imap_bridge_imap_errors_total");
    assert!(
        errors
            .keys()
            .all(|k| !k.contains("\"protocol\"") && !k.contains("\"bad\"")),
        "{errors:?}"
    );
    assert!(
        oks * 2 > commands,
        "{oks} OK answers to {commands} commands: is the record's format understood?"
    );
    assert!(bad.is_empty(), "Dovecot answered BAD: {bad:?}");
    // 3. Every probe reached every stream of its user exactly once (or, after a mailbox.reset,
    // was found by listing INBOX).
    assert!(
        exactly_once_failures.is_empty(),
        "{} event failures:\n{}",
        exactly_once_failures.len(),
        exactly_once_failures.join("\n")
    );
}

/// An upstream that echoes what it reads, for the proxy's own checks.
async fn echo_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// The reuse check can fail: a client that writes again on a connection after giving up on a
/// stalled answer is caught, one that drops the connection is not.
#[tokio::test]
async fn the_proxy_catches_a_connection_used_after_its_client_gave_up() {
    let upstream = echo_server().await;
    let proxy = FaultyProxy::start(upstream, Duration::from_millis(300)).await;
    let stall = Fault {
        kind: Kind::Stall {
            which: Stalled::Trigger,
            duration: Duration::from_secs(1),
        },
        place: Place::Random {
            dir: Dir::Up,
            after: 0,
        },
    };
    for reuse in [true, false] {
        proxy.arm(stall);
        let mut conn = tokio::net::TcpStream::connect(proxy.addr())
            .await
            .expect("connect");
        conn.write_all(b"a1 NOOP\r\n").await.expect("write");
        let mut buf = [0u8; 64];
        let answer = tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await;
        assert!(answer.is_err(), "the stall holds the command back");
        tokio::time::sleep(Duration::from_millis(300)).await;
        if reuse {
            conn.write_all(b"a2 NOOP\r\n").await.expect("write");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(conn);
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let report = proxy.report();
    assert_eq!(report.injections.len(), 2);
    assert!(report.injections.iter().all(|i| i.watched));
    assert_eq!(report.reuses.len(), 1, "{:?}", report.reuses);
    assert_eq!(report.reuses[0].conn, report.injections[0].conn);
    assert!(report.reuses[0].after >= Duration::from_millis(300));
}

/// Resets reach the client as RST, truncations as a clean end after part of the data.
#[tokio::test]
async fn the_proxy_resets_and_truncates_where_it_is_told() {
    let upstream = echo_server().await;
    let proxy = FaultyProxy::start(upstream, Duration::from_secs(5)).await;
    for (kind, expect_reset) in [(Kind::Reset, true), (Kind::Truncate, false)] {
        proxy.arm(Fault {
            kind,
            place: Place::Random {
                dir: Dir::Down,
                after: 3,
            },
        });
        let mut conn = tokio::net::TcpStream::connect(proxy.addr())
            .await
            .expect("connect");
        conn.write_all(b"0123456789").await.expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        let end = loop {
            match conn.read(&mut buf).await {
                Ok(0) => break None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Some(e.kind()),
            }
        };
        assert_eq!(got, b"012", "{kind:?}");
        assert_eq!(
            end,
            expect_reset.then_some(std::io::ErrorKind::ConnectionReset),
            "{kind:?}"
        );
    }
    let by_kind = proxy.report().by_kind();
    assert_eq!(by_kind.get("reset"), Some(&1));
    assert_eq!(by_kind.get("truncate"), Some(&1));
}

/// A watcher's reconnection backoff must start over once it is connected again: a watcher that
/// lost its IDLE connection a few times in its life (a server restart each week) must not
/// hold back every later event by up to 30 s. Each round resets the watcher's connection as
/// Dovecot tells it about a delivery; the event must still come within the first backoff step
/// (at most 0.75 s) plus Dovecot's 0.5 s and a reconnection.
#[tokio::test]
async fn an_event_watcher_reconnects_promptly_after_earlier_drops() {
    let dovecot = tokio::task::spawn_blocking(|| {
        let dovecot = Dovecot::start();
        dovecot.add_user(&user_name(0), PASSWORD);
        dovecot
    })
    .await
    .expect("dovecot");
    let proxy = FaultyProxy::start(dovecot.imaps_addr(), Duration::from_secs(60)).await;
    let config = config_for_server(
        dovecot.imap_addr(),
        proxy.addr(),
        dovecot.ca_cert_path(),
        Link::Tls,
    );
    let (_serving, bridge, _state) = Serving::start(config).await;
    let token = bridge.login_as(&user_name(0), PASSWORD).await;
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    for round in 1..=6 {
        // Back in IDLE, and silent long enough for the proxy to take the next notification
        // for one.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let reset = proxy.arm(Fault {
            kind: Kind::Reset,
            place: Place::Idle,
        });
        let (subject, raw) = probe(0, round);
        let delivered = Instant::now();
        dovecot.deliver(&user_name(0), "INBOX", &raw, "", None);
        let event = events
            .next(Duration::from_secs(60))
            .await
            .expect("an event for the delivery");
        let latency = delivered.elapsed();
        assert!(
            proxy.fired(reset),
            "round {round}: the reset hit no notification"
        );
        assert_eq!(
            (event.event.as_str(), event.data["subject"].as_str()),
            ("message.new", Some(subject.as_str()))
        );
        println!("connection loss {round}: event after {latency:.2?}");
        assert!(
            latency < Duration::from_secs(5),
            "after {round} connection losses the watcher took {latency:?} to report a delivery"
        );
    }
}

/// An IMAP server that goes silent in the middle of IDLE, without closing the connection
/// (a dead host, a NAT that forgot the connection), is noticed by the watcher's liveness check:
/// IDLE ends every `IMAP_BRIDGE_IDLE_LIVENESS` seconds, and a DONE left unanswered for the
/// command timeout drops the connection. What arrived meanwhile then reaches the stream.
#[tokio::test]
async fn a_server_gone_silent_mid_idle_is_noticed_and_nothing_is_lost() {
    let dovecot = tokio::task::spawn_blocking(|| {
        let dovecot = Dovecot::start();
        dovecot.add_user(&user_name(0), PASSWORD);
        dovecot
    })
    .await
    .expect("dovecot");
    let proxy = FaultyProxy::start(dovecot.imaps_addr(), Duration::from_secs(60)).await;
    let mut config = config_for_server(
        dovecot.imap_addr(),
        proxy.addr(),
        dovecot.ca_cert_path(),
        Link::Tls,
    );
    config.idle_liveness = 2;
    config.imap_command_timeout = 3;
    let (_serving, bridge, _state) = Serving::start(config).await;
    let token = bridge.login_as(&user_name(0), PASSWORD).await;
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // The watcher's connection goes silent both ways for far longer than the test, just as
    // Dovecot starts to tell it about the delivery.
    let silence = proxy.arm(Fault {
        kind: Kind::Stall {
            which: Stalled::Both,
            duration: Duration::from_secs(600),
        },
        place: Place::Idle,
    });
    let (subject, raw) = probe(0, 1);
    dovecot.deliver(&user_name(0), "INBOX", &raw, "", None);
    let event = events
        .next(Duration::from_secs(20))
        .await
        .expect("the delivery, once the silent connection was given up");
    assert!(proxy.fired(silence), "the stall hit no notification");
    assert_eq!(
        (event.event.as_str(), event.data["subject"].as_str()),
        ("message.new", Some(subject.as_str()))
    );
    // And the stream goes on live on the new connection.
    let (subject, raw) = probe(0, 2);
    dovecot.deliver(&user_name(0), "INBOX", &raw, "", None);
    let event = events.next(Duration::from_secs(10)).await.expect("live");
    assert_eq!(event.data["subject"].as_str(), Some(subject.as_str()));
}
