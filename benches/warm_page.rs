//! Warm header-page latency: the bridge over HTTP against the same IMAP work done directly.
//!
//! Run with `cargo bench --bench warm_page` (release build); `BENCH_ITERS` sets the number of
//! samples per side and case (default 300).
//!
//! One process and one Tokio multi-thread runtime hold everything: a private Dovecot (its own
//! processes) with 10,000 bulk messages in INBOX and `maildir_very_dirty_syncs`, the bridge
//! serving in-process over TLS to it, a reqwest client with HTTP keep-alive, and a direct
//! async-imap connection over TLS to the same Dovecot, logged in and set up as the bridge sets
//! up its sessions (`ENABLE QRESYNC`, `SELECT INBOX (CONDSTORE)`). After one warm-up request per
//! side, each case alternates a bridge request and a direct exchange, so both see the same
//! conditions:
//!
//! | case | bridge | direct |
//! | --- | --- | --- |
//! | `arrival` | `GET /v1/mailboxes/INBOX/messages?limit=50` | `NOOP`, `STATUS INBOX (UIDVALIDITY UIDNEXT HIGHESTMODSEQ)` and `FETCH <n-49>:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)`, pipelined, as the bridge sends them |
//! | `date` | `GET …/messages?limit=50&sort=date` | `UID SORT (REVERSE DATE) UTF-8 ALL`, then `UID FETCH <those 50 UIDs> (…)` |
//!
//! The direct side writes each exchange at once and parses every response with async-imap
//! (imap-proto), as the bridge does. The HTTP client reads each body whole but does not parse
//! it (front-end work). What the bridge adds is everything else: HTTP, the token check, the
//! session pool, summaries and JSON, and (for `date`) a NOOP + STATUS round trip before the
//! SORT. The warm-up checks that both sides see the same 50 UIDs.
//!
//! The table gives median, p95 and p99 in microseconds, the ratio of the medians, the cores
//! available, and the process's peak resident memory (VmHWM), which the bridge shares with the
//! benchmark's clients and the seeding (Dovecot runs in separate processes).

#[path = "../tests/common/corpus.rs"]
mod corpus;
#[path = "../tests/common/dovecot.rs"]
mod dovecot;

use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail, ensure};
use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response, Status};
use dovecot::{Dovecot, DovecotOptions};
use imap_bridge::config::{Config, Security};
use imap_bridge::imap::encode::UidSet;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const USER: &str = "bench";
const PASSWORD: &str = "bench-password";
const MESSAGES: u32 = 10_000;
const PAGE: usize = 50;
const SUMMARY_ITEMS: &str = "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)";
/// Same as the `imap-bridge` binary: imap-proto parses BODYSTRUCTURE recursively.
const THREAD_STACK: usize = 32 * 1024 * 1024;

fn main() -> anyhow::Result<()> {
    let iterations: usize = match std::env::var("BENCH_ITERS") {
        Ok(n) => n.parse().context("BENCH_ITERS must be a number")?,
        Err(_) => 300,
    };
    ensure!(iterations > 0, "BENCH_ITERS must be at least 1");
    let dovecot = Dovecot::start_with(DovecotOptions {
        very_dirty_syncs: true,
        ..Default::default()
    });
    dovecot.add_user(USER, PASSWORD);
    // Streamed one by one (not `deliver_many`) so seeding does not inflate the peak RSS.
    let first = SystemTime::now() - Duration::from_secs(u64::from(MESSAGES));
    for (second, raw) in (0..).zip(corpus::bulk(MESSAGES as usize, 7)) {
        let arrived = first + Duration::from_secs(second);
        dovecot.deliver(USER, "INBOX", &raw, "", Some(arrived));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK)
        .build()?
        .block_on(bench(&dovecot, iterations))
}

async fn bench(dovecot: &Dovecot, iterations: usize) -> anyhow::Result<()> {
    let mut config = Config::for_server("localhost", dovecot.imaps_addr().port(), Security::Tls);
    config.imap_ca_file = Some(dovecot.ca_cert_path());
    config.jwt_secret = Some("benchmark-secret-that-is-at-least-32-bytes".to_owned());
    // Two bridges on the same Dovecot: one without the summary cache (every page is fetched
    // whole, as a direct client does), one with it (a repeated page costs only its flags).
    let mut uncached = config.clone();
    uncached.cache_size = 0;
    let mut servers = Vec::new();
    let mut bases = Vec::new();
    for config in [uncached, config] {
        let state = imap_bridge::build_state(config)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        bases.push(format!("http://{}", listener.local_addr()?));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(imap_bridge::serve_with_state(state, listener, async {
            let _ = stopped.await;
        }));
        servers.push((stop, server));
    }
    let no_cache = Bridge::login(&bases[0]).await?;
    let cached = Bridge::login(&bases[1]).await?;
    let mut direct = Direct::connect(dovecot).await?;
    let arrival = "/v1/mailboxes/INBOX/messages?limit=50";
    let date = "/v1/mailboxes/INBOX/messages?limit=50&sort=date";
    let cases = [
        ("arrival", &no_cache, arrival, Case::Arrival),
        ("date", &no_cache, date, Case::Date),
        ("arrival, cached", &cached, arrival, Case::Arrival),
        ("date, cached", &cached, date, Case::Date),
    ];
    let mut rows = Vec::new();
    for (name, bridge, path, case) in cases {
        let (mut bridge_uids, mut direct_uids) =
            (bridge.page(path).await?, direct.page(case).await?);
        bridge_uids.sort_unstable();
        direct_uids.sort_unstable();
        ensure!(
            bridge_uids.len() == PAGE && bridge_uids == direct_uids,
            "{name}: the bridge's page {bridge_uids:?} differs from the direct one {direct_uids:?}"
        );
        let (mut via_bridge, mut via_direct) = (Vec::new(), Vec::new());
        for _ in 0..iterations {
            via_bridge.push(timed(bridge.get(path)).await?);
            via_direct.push(timed(direct.page(case)).await?);
        }
        rows.push((name, Stats::of(via_bridge), Stats::of(via_direct)));
    }
    direct.logout().await?;
    for (stop, server) in servers {
        let _ = stop.send(());
        server.await??;
    }
    print_table(&rows, iterations)
}

/// How long `work` took; its result is only checked for errors.
async fn timed<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<Duration> {
    let start = Instant::now();
    work.await?;
    Ok(start.elapsed())
}

/// An HTTP client logged in to the bridge.
struct Bridge {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Bridge {
    async fn login(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::new();
        let login: Value = http
            .post(format!("{base}/v1/auth/login"))
            .json(&serde_json::json!({"username": USER, "password": PASSWORD}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = login["access_token"]
            .as_str()
            .context("no access_token in the login response")?
            .to_owned();
        Ok(Bridge {
            http,
            base: base.to_owned(),
            token,
        })
    }

    /// The body of `path`, read whole; fails unless the status is 200.
    async fn get(&self, path: &str) -> anyhow::Result<bytes::Bytes> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        ensure!(
            response.status() == 200,
            "GET {path}: {}",
            response.status()
        );
        Ok(response.bytes().await?)
    }

    /// The UIDs of the page at `path`.
    async fn page(&self, path: &str) -> anyhow::Result<Vec<u32>> {
        let list: Value = serde_json::from_slice(&self.get(path).await?)?;
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
}

/// What the direct client does.
#[derive(Debug, Clone, Copy)]
enum Case {
    /// The newest page in arrival order, as the bridge fetches it.
    Arrival,
    /// The newest page by Date header.
    Date,
}

/// A direct IMAP session over TLS with INBOX selected.
struct Direct {
    client: async_imap::Client<TlsStream<TcpStream>>,
    exists: u32,
}

impl Direct {
    async fn connect(dovecot: &Dovecot) -> anyhow::Result<Self> {
        let tls = imap_bridge::imap::transport::tls_config(Some(&dovecot.ca_cert_path()))?;
        let tcp = TcpStream::connect(dovecot.imaps_addr()).await?;
        tcp.set_nodelay(true)?;
        let stream = TlsConnector::from(tls)
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let mut direct = Direct {
            client: async_imap::Client::new(stream),
            exists: 0,
        };
        direct
            .client
            .read_response()
            .await?
            .context("no greeting")?;
        direct
            .exchange(&[format!("LOGIN {USER} {PASSWORD}")], |_| {})
            .await?;
        direct.exchange(&["ENABLE QRESYNC".into()], |_| {}).await?;
        let mut exists = None;
        direct
            .exchange(&["SELECT INBOX (CONDSTORE)".into()], |r| {
                if let Response::MailboxData(MailboxDatum::Exists(n)) = r {
                    exists = Some(*n);
                }
            })
            .await?;
        direct.exists = exists.context("SELECT without EXISTS")?;
        Ok(direct)
    }

    /// The UIDs of the newest page (in no particular order), fetched with full summaries.
    async fn page(&mut self, case: Case) -> anyhow::Result<Vec<u32>> {
        let commands = match case {
            Case::Arrival => vec![
                "NOOP".to_owned(),
                "STATUS INBOX (UIDVALIDITY UIDNEXT HIGHESTMODSEQ)".to_owned(),
                format!(
                    "FETCH {}:* {SUMMARY_ITEMS}",
                    self.exists.saturating_sub(PAGE as u32 - 1).max(1)
                ),
            ],
            Case::Date => {
                let mut sorted = Vec::new();
                self.exchange(&["UID SORT (REVERSE DATE) UTF-8 ALL".into()], |r| {
                    if let Response::MailboxData(MailboxDatum::Sort(uids)) = r {
                        sorted.extend_from_slice(uids);
                    }
                })
                .await?;
                sorted.truncate(PAGE);
                let set = UidSet::from_uids(sorted)?;
                vec![format!("UID FETCH {set} {SUMMARY_ITEMS}")]
            }
        };
        let mut uids = Vec::new();
        self.exchange(&commands, |r| {
            if let Response::Fetch(_, attrs) = r
                && attrs
                    .iter()
                    .any(|a| matches!(a, AttributeValue::Envelope(_)))
            {
                uids.extend(attrs.iter().find_map(|a| match a {
                    AttributeValue::Uid(uid) => Some(*uid),
                    _ => None,
                }));
            }
        })
        .await?;
        Ok(uids)
    }

    async fn logout(mut self) -> anyhow::Result<()> {
        self.exchange(&["LOGOUT".into()], |_| {}).await
    }

    /// Sends `commands` in one write, tagged `d0`, `d1`, …, and reads (and parses) every
    /// response up to the last tagged completion; untagged responses go to `on_data`. Fails
    /// unless every command completes with OK.
    async fn exchange(
        &mut self,
        commands: &[String],
        mut on_data: impl FnMut(&Response<'_>),
    ) -> anyhow::Result<()> {
        let mut wire = String::new();
        for (tag, command) in commands.iter().enumerate() {
            write!(wire, "d{tag} {command}\r\n")?;
        }
        let stream = self.client.get_mut();
        stream.write_all(wire.as_bytes()).await?;
        stream.flush().await?;
        let mut open = commands.len();
        while open > 0 {
            let response = self
                .client
                .read_response()
                .await?
                .context("the IMAP server closed the connection")?;
            match response.parsed() {
                Response::Done {
                    tag,
                    status,
                    outcome,
                } => {
                    if *status != Status::Ok {
                        bail!("{} failed: {status:?} {:?}", tag.0, outcome.information);
                    }
                    open -= 1;
                }
                other => on_data(other),
            }
        }
        Ok(())
    }
}

/// Latency percentiles of one side of one case.
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

fn print_table(rows: &[(&str, Stats, Stats)], iterations: usize) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let micros = |d: Duration| d.as_micros();
    println!(
        "warm_page: INBOX of {MESSAGES} messages, pages of {PAGE}, {iterations} samples per \
         side and case, {cores} cores"
    );
    println!(
        "{:<16} | {:>13} {:>8} {:>8} | {:>13} {:>8} {:>8} | {:>13}",
        "case", "bridge median", "p95", "p99", "direct median", "p95", "p99", "bridge/direct"
    );
    for (name, bridge, direct) in rows {
        let ratio = bridge.median.as_secs_f64() / direct.median.as_secs_f64();
        println!(
            "{name:<16} | {:>13} {:>8} {:>8} | {:>13} {:>8} {:>8} | {ratio:>12.2}x",
            micros(bridge.median),
            micros(bridge.p95),
            micros(bridge.p99),
            micros(direct.median),
            micros(direct.p95),
            micros(direct.p99),
        );
    }
    println!("(times in µs)");
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?
        .trim();
    println!(
        "peak RSS of the bridge process: {peak} (VmHWM; shared with the benchmark's HTTP and \
         IMAP clients and the seeding, Dovecot not included)"
    );
    Ok(())
}
