//! The benchmark suite: the bridge against a direct IMAP client doing the same IMAP work on the
//! same Dovecot, side by side in one run.
//!
//! Run with `scripts/bench` or `cargo bench --bench suite` (release build). `BENCH_ITERS` sets
//! the samples per side for the quick cases (warm pages, message, flags; default 100); the slow
//! ones (cold login, 25 MB download, delivery to event) take a fifth of that (default 20).
//!
//! One process and one Tokio multi-thread runtime hold everything: a private Dovecot (its own
//! processes, `maildir_very_dirty_syncs`) seeded straight into Maildir with INBOX of 1,000,
//! `Bulk10k` of 10,000 and `Bulk100k` of 100,000 bulk messages and `Large`, one message with a
//! 25 MiB base64 attachment; two bridges served in-process over TLS to it (the summary cache
//! off, as `IMAP_BRIDGE_CACHE_SIZE=0`, and on, the default); a reqwest client with HTTP
//! keep-alive; and direct async-imap sessions over TLS. Each case checks at warm-up that both
//! sides return the same data, then alternates one bridge request and one direct exchange.
//!
//! | case | bridge | direct |
//! | --- | --- | --- |
//! | cold login + first page | `POST /v1/auth/login`, `GET …/INBOX/messages?limit=50`; then (untimed) `POST /v1/auth/logout`, which logs out the user's pooled sessions, so every sample logs in to IMAP anew | TCP + TLS, `LOGIN`, `SELECT INBOX`, `FETCH <n-49>:* (summary items)`; then (untimed) `LOGOUT` |
//! | warm page, arrival | `GET …/messages?limit=50` | `NOOP`, `STATUS`, `FETCH <n-49>:* (…)` pipelined, as the bridge sends them |
//! | warm page, date | `GET …/messages?limit=50&sort=date` | `NOOP`, `STATUS`, `UID SORT (REVERSE DATE) UTF-8 ALL` pipelined, then `UID FETCH <50 UIDs> (…)`, as the bridge sends them |
//! | message | `GET …/INBOX/messages/{uid}` (the same message each time: after the warm-up the bridge knows its header and structure and reads its flags and text parts in one `UID FETCH`) | `UID FETCH uid (BODY.PEEK[])` and a full parse with mail-parser |
//! | flag change | `PATCH …/flags`, `\Flagged` added, then removed on the next sample | `UID STORE uid ±FLAGS (\Flagged)` |
//! | 25 MB attachment | `GET …/Large/messages/1/attachments/2`, streamed | `UID FETCH 1 (BODY.PEEK[2])`, base64-decoded |
//! | delivery → event | `message.new` on `GET /v1/events` | `EXISTS` in IDLE |
//!
//! Warm pages run per folder, with the cache off and on (a repeated page: summaries come from
//! the cache, only flags from IMAP). Pages carry previews (the default), so the direct side's
//! summary items are the bridge's with Dovecot's `PREVIEW`. The HTTP client reads bodies whole (the download as a
//! stream) and does not parse them beyond the warm-up check: that is front-end work. The bridge
//! adds everything else: HTTP, the token, the pool, summaries and JSON. Delivery to event starts
//! both clocks when the message file is written; both sides wait out Dovecot's fixed 500 ms
//! IDLE delay.
//!
//! Breakdown: for the cold login, the cached pages, the message, the flag change and the
//! download, a third client, the replica, sends the bridge's exact IMAP exchanges directly (no
//! HTTP, no JSON, no decoding beyond base64). Bridge minus replica is the bridge's own work;
//! replica minus direct is the cost of the way the bridge uses IMAP.
//!
//! Dovecot's directory is on tmpfs (`/dev/shm`) when there is one: deleting 111,000 message
//! files from a disk mounted with `discard` takes minutes, and disk noise is not what is
//! measured here (Dovecot reads mail from the page cache either way).
//!
//! Memory: the bridge shares this process, so its growth during a 25 MB download is the whole
//! process's VmRSS growth (sampled every 2 ms in a thread, maximum minus the value just before
//! the request), measured before the direct side has downloaded anything and while it is idle.
//! Peak RSS is VmHWM, reset after seeding.

#[path = "../tests/common/corpus.rs"]
mod corpus;
#[path = "common/direct.rs"]
mod direct;
#[path = "../tests/common/dovecot.rs"]
mod dovecot;
#[path = "common/procfs.rs"]
mod procfs;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, ensure};
use direct::{Direct, FLAGS_ITEMS, PageOrder, SUMMARY_ITEMS};
use dovecot::{Dovecot, DovecotOptions};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use imap_bridge::config::{Config, Security};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

const USER: &str = "bench";
const PASSWORD: &str = "bench-password";
const PAGE: u32 = 50;
/// The folders of the warm-page cases, with their sizes and corpus seeds.
const FOLDERS: [(&str, u32, u64); 3] = [
    ("INBOX", 1_000, 1),
    ("Bulk10k", 10_000, 2),
    ("Bulk100k", 100_000, 3),
];
const LARGE_FOLDER: &str = "Large";
const ATTACHMENT_SIZE: usize = 25 * 1024 * 1024;
/// Same as the `imap-bridge` binary: imap-proto parses BODYSTRUCTURE recursively.
const THREAD_STACK: usize = 32 * 1024 * 1024;
const FLAG: &str = "\\Flagged";

/// The targets of issue 6, "As fast as IMAP allows".
const WARM_PAGE_RATIO: f64 = 1.2;
const CACHED_PAGE_RATIO: f64 = 0.5;
/// The targets of the issue "the bridge's own work is now its limit": a cached warm page of
/// the 10k folder, a message view, the 25 MB download.
const CACHED_PAGE_10K_RATIO: f64 = 0.35;
const MESSAGE_RATIO: f64 = 2.0;
const DOWNLOAD_RATIO: f64 = 1.1;
const PAGE_COST_RATIO: f64 = 1.3;
const EVENT_EXTRA: Duration = Duration::from_millis(10);
const DOWNLOAD_RSS_KIB: u64 = 4 * 1024;

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let load_before = load_average();
    let iterations: usize = match std::env::var("BENCH_ITERS") {
        Ok(n) => n.parse().context("BENCH_ITERS must be a number")?,
        Err(_) => 100,
    };
    ensure!(iterations > 0, "BENCH_ITERS must be at least 1");
    let shm = Path::new("/dev/shm");
    let place = tempfile::Builder::new()
        .prefix("imap-bridge-bench-")
        .tempdir_in(if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        })?;
    // Declared after `place`, so it stops before its directory is deleted.
    let dovecot = Dovecot::start_in(
        place.path().to_path_buf(),
        DovecotOptions {
            very_dirty_syncs: true,
            // Two bridges, an event watcher and the direct sessions, all one user from one
            // address, with logged-out sessions still closing: well beyond the default 10.
            max_userip_connections: 100,
            ..Default::default()
        },
    );
    dovecot.add_user(USER, PASSWORD);
    let seeding = Instant::now();
    let attachment_sha256 = seed(&dovecot);
    let seeding = seeding.elapsed();
    // The seeding is not the bridge's memory.
    std::fs::write("/proc/self/clear_refs", "5").context("resetting VmHWM")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK)
        .build()?;
    let mut report = runtime.block_on(run(&dovecot, iterations, attachment_sha256))?;
    report.seeding = seeding;
    report.elapsed = started.elapsed();
    report.load = (load_before, load_average());
    report.print(iterations, place.path());
    Ok(())
}

/// Writes the folders into the Maildir one message at a time (not `deliver_many`, which holds
/// them all in memory) and returns the SHA-256 of the large attachment's content.
fn seed(dovecot: &Dovecot) -> [u8; 32] {
    for (folder, count, corpus_seed) in FOLDERS {
        let first = SystemTime::now() - Duration::from_secs(u64::from(count));
        for (i, raw) in (0..count).zip(corpus::bulk(count as usize, corpus_seed)) {
            // Old mail is read; the newest few are not, as in a real mailbox. Seen messages go
            // straight to `cur/`, which also spares Dovecot moving them there at first SELECT.
            let flags = if i + 20 < count { "S" } else { "" };
            let arrived = first + Duration::from_secs(u64::from(i));
            dovecot.deliver(USER, folder, &raw, flags, Some(arrived));
        }
    }
    dovecot.deliver(
        USER,
        LARGE_FOLDER,
        &corpus::with_attachment(ATTACHMENT_SIZE),
        "S",
        None,
    );
    Sha256::digest(corpus::attachment_bytes(ATTACHMENT_SIZE)).into()
}

/// Everything the suite measured.
#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    page_costs: Vec<PageCost>,
    http_floor: Option<Stats>,
    token_floor: Option<(Stats, u16)>,
    priming: Vec<(&'static str, Duration)>,
    download_rss_first: u64,
    download_rss: Vec<u64>,
    peak_before_direct_download: u64,
    seeding: Duration,
    elapsed: Duration,
    load: (f64, f64),
}

/// The warm-page medians of one client at 1k and at 100k.
struct PageCost {
    label: &'static str,
    order: PageOrder,
    small: Duration,
    large: Duration,
    held_to_target: bool,
}

/// One line of the table.
struct Row {
    case: String,
    bridge: Stats,
    direct: Stats,
    /// The bridge's exact IMAP exchanges sent directly, where that differs from `direct`.
    replica: Option<Stats>,
    target: Target,
}

/// What a row is held to.
enum Target {
    None,
    /// The bridge's median at most this times the direct one.
    Ratio(f64),
    /// The bridge's median at most this much above the direct one.
    Plus(Duration),
}

/// Samples of the sides of one case, taken in turn.
#[derive(Default)]
struct Samples {
    bridge: Vec<Duration>,
    direct: Vec<Duration>,
    replica: Vec<Duration>,
}

impl Samples {
    fn row(self, case: impl Into<String>, target: Target) -> Row {
        Row {
            case: case.into(),
            bridge: Stats::of(self.bridge),
            direct: Stats::of(self.direct),
            replica: (!self.replica.is_empty()).then(|| Stats::of(self.replica)),
            target,
        }
    }
}

/// What every case needs.
struct Bench<'a> {
    dovecot: &'a Dovecot,
    tls: Arc<rustls::ClientConfig>,
    iterations: usize,
    /// Samples of the slow cases (cold login, 25 MB, events).
    slow_iterations: usize,
}

impl Bench<'_> {
    async fn connect(&self) -> anyhow::Result<Direct> {
        Direct::connect(self.tls.clone(), self.dovecot.imaps_addr(), USER, PASSWORD).await
    }
}

async fn run(
    dovecot: &Dovecot,
    iterations: usize,
    attachment_sha256: [u8; 32],
) -> anyhow::Result<Report> {
    let mut config = Config::for_server("localhost", dovecot.imaps_addr().port(), Security::Tls);
    config.imap_ca_file = Some(dovecot.ca_cert_path());
    config.jwt_secret = Some("benchmark-secret-that-is-at-least-32-bytes".to_owned());
    // No load balancer to wait for when the benchmark stops its bridges.
    config.shutdown_delay = 0;
    let mut uncached_config = config.clone();
    uncached_config.cache_size = 0;
    let uncached_server = BridgeServer::start(uncached_config).await?;
    let cached_server = BridgeServer::start(config).await?;
    let bench = Bench {
        dovecot,
        tls: imap_bridge::imap::transport::tls_config(Some(&dovecot.ca_cert_path()))?,
        iterations,
        slow_iterations: (iterations / 5).max(1),
    };
    let mut report = Report::default();

    // Dovecot indexes a folder at its first SELECT and reads every Date header at its first
    // SORT; both happen once, here, so that no case times them.
    let mut direct = bench.connect().await?;
    direct.enable_qresync().await?;
    let mut replica = bench.connect().await?;
    replica.enable_qresync().await?;
    for (folder, _, _) in FOLDERS {
        let start = Instant::now();
        direct.select(folder, true).await?;
        direct
            .page(PageOrder::Arrival, PAGE, &SUMMARY_ITEMS)
            .await?;
        direct.page(PageOrder::Date, PAGE, &SUMMARY_ITEMS).await?;
        report.priming.push((folder, start.elapsed()));
    }

    let http = reqwest::Client::new();
    let mut no_cache = Bridge::new(&http, &uncached_server);
    let mut cached = Bridge::new(&http, &cached_server);
    report.http_floor = Some(http_floor(&no_cache, iterations).await?);

    let row = cold(&bench, &mut no_cache).await?;
    report
        .rows
        .push(row.row("cold login + first page, 1k", Target::None));
    let row = cold(&bench, &mut cached).await?;
    report
        .rows
        .push(row.row("cold, summaries cached, 1k", Target::None));
    no_cache.login().await?;
    cached.login().await?;
    report.token_floor = Some(token_floor(&no_cache, iterations).await?);

    let mut medians = Vec::new();
    for (folder, count, _) in FOLDERS {
        direct.select(folder, true).await?;
        replica.select(folder, true).await?;
        for (cached_label, bridge) in [("", &no_cache), (", cached", &cached)] {
            let with_cache = !cached_label.is_empty();
            // With its cache, the bridge asks IMAP for flags only.
            let mut replica = with_cache.then_some(&mut replica);
            for order in [PageOrder::Arrival, PageOrder::Date] {
                let row = warm_page(
                    &bench,
                    bridge,
                    &mut direct,
                    replica.as_deref_mut(),
                    folder,
                    order,
                )
                .await?;
                let order_label = order_label(order);
                let row = row.row(
                    format!("warm page, {order_label}, {}k{cached_label}", count / 1000),
                    Target::Ratio(if with_cache && count == 10_000 {
                        CACHED_PAGE_10K_RATIO
                    } else if with_cache {
                        CACHED_PAGE_RATIO
                    } else {
                        WARM_PAGE_RATIO
                    }),
                );
                medians.push((
                    count,
                    with_cache,
                    order,
                    row.bridge.median,
                    row.direct.median,
                ));
                report.rows.push(row);
            }
        }
    }
    report.page_costs = page_costs(&medians);

    direct.select("INBOX", true).await?;
    replica.select("INBOX", true).await?;
    let row = message(&bench, &cached, &mut direct, &mut replica).await?;
    report
        .rows
        .push(row.row("message (text + HTML), 1k", Target::Ratio(MESSAGE_RATIO)));
    let row = flag_change(&bench, &cached, &mut direct, &mut replica).await?;
    report.rows.push(row.row("flag change, 1k", Target::None));
    let row = download(
        &bench,
        &cached,
        &mut direct,
        &mut replica,
        attachment_sha256,
        &mut report,
    )
    .await?;
    report
        .rows
        .push(row.row("25 MB attachment", Target::Ratio(DOWNLOAD_RATIO)));
    direct.logout().await?;
    replica.logout().await?;
    let row = delivery_to_event(&bench, &cached).await?;
    report
        .rows
        .push(row.row("delivery → event (SSE / IDLE)", Target::Plus(EVENT_EXTRA)));

    uncached_server.stop().await?;
    cached_server.stop().await?;
    Ok(report)
}

fn order_label(order: PageOrder) -> &'static str {
    match order {
        PageOrder::Arrival => "arrival",
        PageOrder::Date => "date",
    }
}

/// The warm-page medians at 1k and at 100k, per client and order.
fn page_costs(medians: &[(u32, bool, PageOrder, Duration, Duration)]) -> Vec<PageCost> {
    let find = |count: u32, with_cache: bool, order: PageOrder| {
        medians
            .iter()
            .find(|m| m.0 == count && m.1 == with_cache && m.2 == order)
            .map(|m| (m.3, m.4))
            .unwrap_or_default()
    };
    let (small, large) = (FOLDERS[0].1, FOLDERS[2].1);
    let mut costs = Vec::new();
    for order in [PageOrder::Arrival, PageOrder::Date] {
        for (label, with_cache) in [("bridge", false), ("bridge, cached", true)] {
            costs.push(PageCost {
                label,
                order,
                small: find(small, with_cache, order).0,
                large: find(large, with_cache, order).0,
                held_to_target: true,
            });
        }
        costs.push(PageCost {
            label: "direct",
            order,
            small: find(small, false, order).1,
            large: find(large, false, order).1,
            held_to_target: false,
        });
    }
    costs
}

/// A bridge served in-process on a free port.
struct BridgeServer {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl BridgeServer {
    async fn start(config: Config) -> anyhow::Result<Self> {
        let state = imap_bridge::build_state(config)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(imap_bridge::serve_with_state(state, listener, async {
            let _ = stopped.await;
        }));
        Ok(BridgeServer { base, stop, task })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// An HTTP client of one bridge, logged in or not.
struct Bridge {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Bridge {
    fn new(http: &reqwest::Client, server: &BridgeServer) -> Self {
        Bridge {
            http: http.clone(),
            base: server.base.clone(),
            token: String::new(),
        }
    }

    async fn login(&mut self) -> anyhow::Result<()> {
        let login: Value = self
            .http
            .post(format!("{}/v1/auth/login", self.base))
            .json(&json!({"username": USER, "password": PASSWORD}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        login["access_token"]
            .as_str()
            .context("no access_token in the login response")?
            .clone_into(&mut self.token);
        Ok(())
    }

    async fn logout(&mut self) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/v1/auth/logout", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        ensure!(response.status() == 204, "logout: {}", response.status());
        Ok(())
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request.bearer_auth(&self.token).send().await?;
        ensure!(
            response.status() == 200,
            "{}: {}",
            response.url().path(),
            response.status()
        );
        Ok(response)
    }

    /// The body of `path`, read whole.
    async fn get(&self, path: &str) -> anyhow::Result<bytes::Bytes> {
        let request = self.http.get(format!("{}{path}", self.base));
        Ok(self.send(request).await?.bytes().await?)
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&self.get(path).await?)?)
    }

    /// The UIDs of the page at `path`.
    async fn page(&self, path: &str) -> anyhow::Result<Vec<u32>> {
        let list = self.get_json(path).await?;
        list["messages"]
            .as_array()
            .context("no messages in the list")?
            .iter()
            .map(|m| {
                m["uid"]
                    .as_u64()
                    .and_then(|uid| u32::try_from(uid).ok())
                    .context("message without uid")
            })
            .collect()
    }

    /// Adds or removes `FLAG` and returns the flags the bridge reports afterwards.
    async fn change_flag(&self, mailbox: &str, uid: u32, add: bool) -> anyhow::Result<Vec<String>> {
        let body = if add {
            json!({ "add": [FLAG] })
        } else {
            json!({ "remove": [FLAG] })
        };
        let request = self
            .http
            .patch(format!(
                "{}/v1/mailboxes/{mailbox}/messages/{uid}/flags",
                self.base
            ))
            .json(&body);
        let after: Value = self.send(request).await?.json().await?;
        Ok(serde_json::from_value(after["flags"].clone())?)
    }

    /// Streams the body of `path`, handing every chunk to `on_chunk`; returns its length.
    async fn download(&self, path: &str, mut on_chunk: impl FnMut(&[u8])) -> anyhow::Result<u64> {
        let request = self.http.get(format!("{}{path}", self.base));
        let mut body = self.send(request).await?.bytes_stream();
        let mut length = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            length += chunk.len() as u64;
            on_chunk(&chunk);
        }
        Ok(length)
    }
}

/// How long `work` took; its result is only checked for errors.
async fn timed<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<Duration> {
    let start = Instant::now();
    work.await?;
    Ok(start.elapsed())
}

/// The bridge's cost without IMAP: `GET /healthz`, which needs neither token nor session.
async fn http_floor(bridge: &Bridge, iterations: usize) -> anyhow::Result<Stats> {
    let mut samples = Vec::new();
    // One more than counted: the first request opens the HTTP connection.
    for _ in 0..=iterations {
        samples.push(
            timed(async {
                let response = bridge
                    .http
                    .get(format!("{}/healthz", bridge.base))
                    .send()
                    .await?;
                ensure!(response.status() == 200, "healthz: {}", response.status());
                Ok(response.bytes().await?)
            })
            .await?,
        );
    }
    samples.remove(0);
    Ok(Stats::of(samples))
}

/// The bridge's cost with a token but without IMAP: `GET …/messages/0`, which the handler
/// refuses (UIDs start at 1) after the token is checked and before any session is taken.
/// Returns the timing and the status seen.
async fn token_floor(bridge: &Bridge, iterations: usize) -> anyhow::Result<(Stats, u16)> {
    let mut samples = Vec::new();
    let mut status = 0;
    for _ in 0..iterations {
        let start = Instant::now();
        let response = bridge
            .http
            .get(format!("{}/v1/mailboxes/INBOX/messages/0", bridge.base))
            .bearer_auth(&bridge.token)
            .send()
            .await?;
        status = response.status().as_u16();
        response.bytes().await?;
        samples.push(start.elapsed());
    }
    Ok((Stats::of(samples), status))
}

/// Cold login and first page of INBOX: a user's first request. The replica logs in and pages
/// as the bridge does (`ENABLE QRESYNC`, `SELECT … (CONDSTORE)`, `NOOP` + `STATUS` + `FETCH`).
async fn cold(bench: &Bench<'_>, bridge: &mut Bridge) -> anyhow::Result<Samples> {
    let path = format!("/v1/mailboxes/INBOX/messages?limit={PAGE}");
    let mut samples = Samples::default();
    // One round more than counted, untimed, to check that both sides see the same page.
    for round in 0..=bench.slow_iterations {
        let start = Instant::now();
        bridge.login().await?;
        let mut bridge_uids = bridge.page(&path).await?;
        let bridge_time = start.elapsed();
        bridge.logout().await?;

        let start = Instant::now();
        let mut direct = bench.connect().await?;
        direct.select("INBOX", false).await?;
        let mut direct_uids = direct.last_page(PAGE).await?;
        let direct_time = start.elapsed();
        direct.logout().await?;

        let start = Instant::now();
        let mut replica = bench.connect().await?;
        replica.enable_qresync().await?;
        replica.select("INBOX", true).await?;
        replica
            .page(PageOrder::Arrival, PAGE, &SUMMARY_ITEMS)
            .await?;
        let replica_time = start.elapsed();
        replica.logout().await?;

        if round == 0 {
            same_uids("cold first page", &mut bridge_uids, &mut direct_uids)?;
        } else {
            samples.bridge.push(bridge_time);
            samples.direct.push(direct_time);
            samples.replica.push(replica_time);
        }
        // Let the logouts finish before the next login.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(samples)
}

fn same_uids(case: &str, bridge: &mut [u32], direct: &mut [u32]) -> anyhow::Result<()> {
    bridge.sort_unstable();
    direct.sort_unstable();
    ensure!(
        bridge.len() == PAGE as usize && bridge == direct,
        "{case}: the bridge's page {bridge:?} differs from the direct one {direct:?}"
    );
    Ok(())
}

/// The newest page of `folder`, which the direct sessions have selected already. `replica`,
/// for a bridge with its cache, fetches only flags, as that bridge does.
async fn warm_page(
    bench: &Bench<'_>,
    bridge: &Bridge,
    direct: &mut Direct,
    mut replica: Option<&mut Direct>,
    folder: &str,
    order: PageOrder,
) -> anyhow::Result<Samples> {
    let mut path = format!("/v1/mailboxes/{folder}/messages?limit={PAGE}");
    if order == PageOrder::Date {
        path.push_str("&sort=date");
    }
    // Twice: the first request selects the folder in the bridge's session and fills its cache.
    let mut sorted = Vec::new();
    for _ in 0..2 {
        let mut bridge_uids = bridge.page(&path).await?;
        sorted.clone_from(&bridge_uids);
        let mut direct_uids = direct.page(order, PAGE, &SUMMARY_ITEMS).await?;
        same_uids(&path, &mut bridge_uids, &mut direct_uids)?;
        if let Some(replica) = replica.as_deref_mut() {
            let mut replica_uids = match order {
                PageOrder::Arrival => replica.cached_arrival_page(PAGE).await?,
                PageOrder::Date => replica.page(order, PAGE, FLAGS_ITEMS).await?,
            };
            same_uids(&path, &mut bridge_uids, &mut replica_uids)?;
        }
    }
    let mut samples = Samples::default();
    for _ in 0..bench.iterations {
        samples.bridge.push(timed(bridge.page(&path)).await?);
        samples
            .direct
            .push(timed(direct.page(order, PAGE, &SUMMARY_ITEMS)).await?);
        if let Some(replica) = replica.as_deref_mut() {
            // A cached bridge reads only the flags changed since its last read of the same
            // arrival window (CHANGEDSINCE), and keeps the sorted order while the mailbox's
            // state stays the same: it asks for NOOP + STATUS, then the flags of the page.
            let work = async {
                match order {
                    PageOrder::Arrival => replica.cached_arrival_page(PAGE).await,
                    PageOrder::Date => replica.refresh_then_fetch(&sorted, FLAGS_ITEMS).await,
                }
            };
            samples.replica.push(timed(work).await?);
        }
    }
    Ok(samples)
}

/// The text and HTML of a message, CRLF made LF and trailing blanks trimmed, for comparing the
/// bridge's decoding with mail-parser's.
fn normalized(text: Option<&str>) -> Option<String> {
    text.map(|t| t.replace("\r\n", "\n").trim_end().to_owned())
}

/// Parses a raw message as a direct client would, returning its text and HTML bodies.
fn parse_message(raw: &[u8]) -> anyhow::Result<(Option<String>, Option<String>)> {
    let message = mail_parser::MessageParser::default()
        .parse(raw)
        .context("mail-parser could not parse the message")?;
    Ok((
        normalized(message.body_text(0).as_deref()),
        normalized(message.body_html(0).as_deref()),
    ))
}

/// One message of INBOX: the newest multipart/alternative one (text and HTML, parts 1 and 2).
async fn message(
    bench: &Bench<'_>,
    bridge: &Bridge,
    direct: &mut Direct,
    replica: &mut Direct,
) -> anyhow::Result<Samples> {
    let mut chosen = None;
    // A fresh Maildir: UIDs are sequence numbers.
    for uid in (1..=direct.exists()).rev().take(20) {
        let raw = direct.raw_message(uid).await?;
        if String::from_utf8_lossy(&raw).contains("multipart/alternative") {
            chosen = Some(uid);
            break;
        }
    }
    let uid = chosen.context("no multipart/alternative message among the newest 20")?;
    let path = format!("/v1/mailboxes/INBOX/messages/{uid}");
    let view = bridge.get_json(&path).await?;
    let bridge_bodies = (
        normalized(view["text"].as_str()),
        normalized(view["html"].as_str()),
    );
    let direct_bodies = parse_message(&direct.raw_message(uid).await?)?;
    let (Some(bridge_text), Some(bridge_html)) = bridge_bodies else {
        anyhow::bail!("message {uid}: the bridge returned no text or no HTML");
    };
    // The bridge sanitizes HTML (a fragment without `<html>` and `<body>`, and nothing this
    // plain corpus HTML would lose otherwise), so its HTML must be found within the raw one.
    ensure!(
        direct_bodies.0.as_deref() == Some(bridge_text.as_str())
            && direct_bodies
                .1
                .as_deref()
                .is_some_and(|html| html.contains(bridge_html.trim())),
        "message {uid}: the bridge's bodies {:?} differ from mail-parser's {direct_bodies:?}",
        (bridge_text, bridge_html)
    );
    let max_part = imap_bridge::imap::messages::MAX_TEXT_PART;
    let mut samples = Samples::default();
    for _ in 0..bench.iterations {
        samples.bridge.push(timed(bridge.get(&path)).await?);
        samples.direct.push(
            timed(async {
                let raw = direct.raw_message(uid).await?;
                parse_message(&raw)
            })
            .await?,
        );
        samples
            .replica
            .push(timed(replica.message_as_bridge(uid, &["1", "2"], max_part)).await?);
    }
    Ok(samples)
}

/// `\Flagged` added and removed in turn: the bridge on the newest message of INBOX, the direct
/// session on the one before and the replica on the one before that, so each makes a real
/// change every time.
async fn flag_change(
    bench: &Bench<'_>,
    bridge: &Bridge,
    direct: &mut Direct,
    replica: &mut Direct,
) -> anyhow::Result<Samples> {
    let bridge_uid = direct.exists();
    let (direct_uid, replica_uid) = (bridge_uid - 1, bridge_uid - 2);
    let without_recent = |mut flags: Vec<String>| {
        flags.retain(|f| f != "\\Recent");
        flags.sort();
        flags
    };
    for add in [true, false] {
        let via_bridge = without_recent(bridge.change_flag("INBOX", bridge_uid, add).await?);
        let via_direct = without_recent(direct.store_flag(direct_uid, FLAG, add).await?);
        ensure!(
            via_bridge == via_direct && via_bridge.iter().any(|f| f == FLAG) == add,
            "flags after {} {FLAG}: bridge {via_bridge:?}, direct {via_direct:?}",
            if add { "adding" } else { "removing" }
        );
    }
    let mut samples = Samples::default();
    for i in 0..bench.iterations {
        let add = i % 2 == 0;
        samples
            .bridge
            .push(timed(bridge.change_flag("INBOX", bridge_uid, add)).await?);
        samples
            .direct
            .push(timed(direct.store_flag(direct_uid, FLAG, add)).await?);
        samples
            .replica
            .push(timed(replica.store_flag_as_bridge(replica_uid, FLAG, add)).await?);
    }
    // Leave nothing flagged.
    if bench.iterations % 2 == 1 {
        bridge.change_flag("INBOX", bridge_uid, false).await?;
        direct.store_flag(direct_uid, FLAG, false).await?;
        replica
            .store_flag_as_bridge(replica_uid, FLAG, false)
            .await?;
    }
    Ok(samples)
}

/// The 25 MiB attachment: first the bridge alone, with the process's RSS watched; then the
/// three clients in turn for the times.
async fn download(
    bench: &Bench<'_>,
    bridge: &Bridge,
    direct: &mut Direct,
    replica: &mut Direct,
    expected_sha256: [u8; 32],
    report: &mut Report,
) -> anyhow::Result<Samples> {
    let path = format!("/v1/mailboxes/{LARGE_FOLDER}/messages/1/attachments/2");
    let mut hash = Sha256::new();
    let watch = RssWatch::start();
    let length = bridge.download(&path, |chunk| hash.update(chunk)).await?;
    report.download_rss_first = watch.growth_kib();
    ensure!(
        length == ATTACHMENT_SIZE as u64 && <[u8; 32]>::from(hash.finalize()) == expected_sha256,
        "the bridge's attachment ({length} bytes) is not the seeded one"
    );
    for _ in 0..bench.slow_iterations {
        let watch = RssWatch::start();
        bridge.download(&path, |_| {}).await?;
        report.download_rss.push(watch.growth_kib());
    }
    report.peak_before_direct_download = own_memory()?.hwm_kib;

    direct.select(LARGE_FOLDER, true).await?;
    replica.select(LARGE_FOLDER, true).await?;
    let decoded = direct.base64_part(1, "2").await?;
    ensure!(
        decoded.len() == ATTACHMENT_SIZE
            && <[u8; 32]>::from(Sha256::digest(&decoded)) == expected_sha256,
        "the direct attachment ({} bytes) is not the seeded one",
        decoded.len()
    );
    drop(decoded);
    let chunk = imap_bridge::http::downloads::CHUNK;
    let length = replica.base64_part_in_chunks(1, "2", chunk).await?;
    ensure!(
        length == ATTACHMENT_SIZE as u64,
        "the replica decoded {length} bytes"
    );
    let mut samples = Samples::default();
    for _ in 0..bench.slow_iterations {
        samples
            .bridge
            .push(timed(bridge.download(&path, |_| {})).await?);
        samples
            .direct
            .push(timed(direct.base64_part(1, "2")).await?);
        samples
            .replica
            .push(timed(replica.base64_part_in_chunks(1, "2", chunk)).await?);
    }
    Ok(samples)
}

/// Delivery into INBOX until the bridge's `message.new` event and the direct session's IDLE
/// `EXISTS`, both clocks starting when the message file is written.
async fn delivery_to_event(bench: &Bench<'_>, bridge: &Bridge) -> anyhow::Result<Samples> {
    let request = bridge.http.get(format!("{}/v1/events", bridge.base));
    let mut events = bridge.send(request).await?.bytes_stream().eventsource();
    let mut direct = bench.connect().await?;
    direct.select("INBOX", false).await?;
    // The bridge's IDLE watcher starts after the stream opens.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut samples = Samples::default();
    for i in 0..bench.slow_iterations {
        // Both watchers must be back in IDLE: a watcher that is still fetching the previous
        // message when the next one lands hears of it at once, without Dovecot's IDLE delay.
        tokio::time::sleep(Duration::from_millis(300)).await;
        direct.start_idle().await?;
        let subject = format!("latency probe {i}");
        let raw = format!(
            "From: probe@example.test\r\nSubject: {subject}\r\n\
             Message-ID: <probe-{i}@example.test>\r\n\r\nprobe\r\n"
        );
        let delivered = Instant::now();
        bench
            .dovecot
            .deliver(USER, "INBOX", raw.as_bytes(), "", None);
        let direct_sees = async {
            direct.wait_exists().await?;
            anyhow::Ok(delivered.elapsed())
        };
        let bridge_sees = async {
            loop {
                let event = events.next().await.context("the event stream ended")??;
                if event.event == "message.new" {
                    let data: Value = serde_json::from_str(&event.data)?;
                    if data["subject"] == subject.as_str() {
                        return anyhow::Ok(delivered.elapsed());
                    }
                }
            }
        };
        let (d, b) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::try_join!(direct_sees, bridge_sees)
        })
        .await
        .context("no notification within 10 s")??;
        samples.direct.push(d);
        samples.bridge.push(b);
    }
    direct.logout().await?;
    Ok(samples)
}

fn own_memory() -> anyhow::Result<procfs::Resident> {
    procfs::resident(std::process::id())
}

/// Watches this process's VmRSS from a thread, every 2 ms.
struct RssWatch {
    baseline: u64,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl RssWatch {
    fn start() -> Self {
        let rss = || own_memory().map_or(0, |m| m.rss_kib);
        let baseline = rss();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut max = 0;
            while !stopped.load(Ordering::Relaxed) {
                max = max.max(rss());
                std::thread::sleep(Duration::from_millis(2));
            }
            max.max(rss())
        });
        RssWatch {
            baseline,
            stop,
            thread: Some(thread),
        }
    }

    /// The highest VmRSS seen minus the one at the start, in KiB.
    fn growth_kib(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let max = self
            .thread
            .take()
            .map_or(0, |t| t.join().unwrap_or_default());
        max.saturating_sub(self.baseline)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The one-minute load average: whether something else ran on the machine meanwhile.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Latency percentiles of one side of one case.
#[derive(Clone, Copy)]
struct Stats {
    median: Duration,
    p95: Duration,
    p99: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        // Nearest rank.
        let at = |p: usize| samples[(samples.len() * p).div_ceil(100).max(1) - 1];
        Stats {
            median: at(50),
            p95: at(95),
            p99: at(99),
        }
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn micros(d: Duration) -> u128 {
    d.as_micros()
}

impl Report {
    fn print(&self, iterations: usize, dovecot_dir: &Path) {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let slow = (iterations / 5).max(1);
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(format!(
            "imap-bridge suite: the bridge (in-process, HTTP/1.1 on loopback) vs a direct IMAP \
             client, same Dovecot over TLS on loopback; {cores} cores"
        ));
        line(format!(
            "folders of 1,000 (INBOX), 10,000 and 100,000 messages; pages of {PAGE}; {iterations} \
             samples per side (cold, 25 MB, events: {slow}); times in µs"
        ));
        line(
            "message: direct = UID FETCH BODY.PEEK[] + mail-parser parse; 25 MB: direct = one \
             UID FETCH BODY.PEEK[2] + base64 decode"
                .to_owned(),
        );
        line(String::new());
        line(format!(
            "{:<32} | {:>9} {:>8} {:>8} | {:>9} {:>8} {:>8} | {:>6} | target",
            "case", "bridge", "p95", "p99", "direct", "p95", "p99", "b/d"
        ));
        line("-".repeat(112));
        for row in &self.rows {
            let r = ratio(row.bridge.median, row.direct.median);
            let target = match row.target {
                Target::None => "—".to_owned(),
                Target::Ratio(max) => format!("≤ {max}×: {}", verdict(r <= max)),
                Target::Plus(extra) => format!(
                    "≤ direct + {} ms: {} (+{:.1} ms)",
                    extra.as_millis(),
                    verdict(row.bridge.median <= row.direct.median + extra),
                    (row.bridge.median.as_secs_f64() - row.direct.median.as_secs_f64()) * 1e3
                ),
            };
            line(format!(
                "{:<32} | {:>9} {:>8} {:>8} | {:>9} {:>8} {:>8} | {r:>5.2}x | {target}",
                row.case,
                micros(row.bridge.median),
                micros(row.bridge.p95),
                micros(row.bridge.p99),
                micros(row.direct.median),
                micros(row.direct.p95),
                micros(row.direct.p99),
            ));
        }
        line(String::new());
        line(format!(
            "page cost, 100k folder vs 1k folder (medians; the bridge's target ≤ \
             {PAGE_COST_RATIO}×):"
        ));
        for cost in &self.page_costs {
            let r = ratio(cost.large, cost.small);
            let target = if cost.held_to_target {
                verdict(r <= PAGE_COST_RATIO)
            } else {
                "(reference)"
            };
            line(format!(
                "  {:<15} {:<8} {:>8} → {:>8}  {r:>6.2}x  {target}",
                cost.label,
                order_label(cost.order),
                micros(cost.small),
                micros(cost.large),
            ));
        }
        line(String::new());
        line(
            "breakdown (medians): replica = the bridge's exact IMAP exchanges sent directly; \
             bridge − replica = the bridge's own work (HTTP, token, pool, decoding, JSON); \
             replica − direct = how the bridge uses IMAP"
                .to_owned(),
        );
        line(format!(
            "  {:<32} {:>9} {:>9} {:>9} {:>16} {:>16}",
            "case", "bridge", "replica", "direct", "bridge−replica", "replica−direct"
        ));
        for row in &self.rows {
            let Some(replica) = row.replica else { continue };
            let signed = |a: Duration, b: Duration| {
                format!("{:+}", a.as_micros() as i128 - b.as_micros() as i128)
            };
            line(format!(
                "  {:<32} {:>9} {:>9} {:>9} {:>16} {:>16}",
                row.case,
                micros(row.bridge.median),
                micros(replica.median),
                micros(row.direct.median),
                signed(row.bridge.median, replica.median),
                signed(replica.median, row.direct.median),
            ));
        }
        if let Some(floor) = self.http_floor {
            line(format!(
                "  HTTP floor, GET /healthz (no token, no IMAP): median {}, p95 {}, p99 {}",
                micros(floor.median),
                micros(floor.p95),
                micros(floor.p99)
            ));
        }
        if let Some((floor, status)) = self.token_floor {
            line(format!(
                "  HTTP + token check, no IMAP (GET …/messages/0, answered {status}): median {}, \
                 p95 {}, p99 {}",
                micros(floor.median),
                micros(floor.p95),
                micros(floor.p99)
            ));
        }
        line(String::new());
        let mut growth = self.download_rss.clone();
        growth.sort_unstable();
        let max_growth = growth
            .last()
            .copied()
            .unwrap_or(0)
            .max(self.download_rss_first);
        line(format!(
            "25 MB download, RSS growth during a bridge download: VmRSS of the whole process \
             (the bridge is in-process), sampled every 2 ms, max − value before the request, \
             with the direct side idle and not yet used for the 25 MB: first download {} KiB, \
             then median {} KiB, max {} KiB over {}; target ≤ {} KiB: {}",
            self.download_rss_first,
            growth.get(growth.len() / 2).copied().unwrap_or(0),
            growth.last().copied().unwrap_or(0),
            growth.len(),
            DOWNLOAD_RSS_KIB,
            verdict(max_growth <= DOWNLOAD_RSS_KIB)
        ));
        let peak_end = own_memory().map_or(0, |m| m.hwm_kib);
        line(format!(
            "peak RSS (VmHWM since seeding; both bridges, the HTTP and IMAP clients; Dovecot \
             not included): {} KiB before the direct 25 MB downloads, {peak_end} KiB at the end \
             (a direct download holds the 34 MB response and the decoded 25 MB at once)",
            self.peak_before_direct_download
        ));
        let priming: Vec<String> = self
            .priming
            .iter()
            .map(|(folder, d)| format!("{folder} {} ms", d.as_millis()))
            .collect();
        line(format!(
            "priming, untimed (Dovecot's first SELECT, FETCH and SORT per folder): {}",
            priming.join(", ")
        ));
        line(format!(
            "cores {cores}; load average {:.2} at start, {:.2} at end (other work on the machine \
             skews every figure); Dovecot in {}; seeding {:.1} s; whole run {:.1} s",
            self.load.0,
            self.load.1,
            dovecot_dir.parent().unwrap_or(dovecot_dir).display(),
            self.seeding.as_secs_f64(),
            self.elapsed.as_secs_f64()
        ));
        print!("{out}");
    }
}
