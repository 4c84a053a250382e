//! What a `Last-Event-ID` far behind costs on a large mailbox, against what replaying it would
//! cost.
//!
//! Run with `cargo bench --bench replay` (release build). `BENCH_MESSAGES` sets the size of the
//! gap (default 100,000 messages), `BENCH_ROUNDS` the samples per case (default 5).
//!
//! A private Dovecot and the real `imap-bridge` binary (a child process, so its memory is its
//! own) run on loopback. A stream on the mailbox `Big` receives one event, whose id is kept;
//! then `BENCH_MESSAGES` messages arrive while no stream is open. Reconnecting with that id —
//! genuine, but `BENCH_MESSAGES` behind — and with the same id edited to point at UIDNEXT 1
//! (its MAC no longer holds: what an attacker would send) must both get `mailbox.reset` at
//! once, without fetching: the bench times the first event and reads the bridge's resident
//! set (VmRSS, and VmHWM, its peak) around the requests. The comparison is what a replay
//! without a bound would have done first: fetch a summary of every missed message
//! (`UID FETCH` of the bridge's summary items, with Dovecot's `PREVIEW`, as each `message.new`
//! carries one), timed and counted in bytes by a direct IMAP
//! client on the same server in the same run.

#[path = "common/bridge_process.rs"]
mod bridge_process;
#[path = "../tests/common/corpus.rs"]
mod corpus;
#[path = "common/direct.rs"]
mod direct;
#[path = "../tests/common/dovecot.rs"]
mod dovecot;
#[path = "common/procfs.rs"]
mod procfs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bridge_process::{BridgeProcess, PASSWORD};
use dovecot::{Dovecot, DovecotOptions};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn main() -> anyhow::Result<()> {
    let messages = env_number("BENCH_MESSAGES", 100_000)?;
    let rounds = env_number("BENCH_ROUNDS", 5)?.max(1);
    let dovecot = Dovecot::start_with(DovecotOptions {
        very_dirty_syncs: true,
        ..Default::default()
    });
    dovecot.add_user("bench", PASSWORD);
    dovecot.create_mailbox("bench", "Big");
    let bridge = BridgeProcess::start(&dovecot, &[])?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(&dovecot, &bridge, messages, rounds))
}

async fn run(
    dovecot: &Dovecot,
    bridge: &BridgeProcess,
    messages: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let token = bridge.login(&http, "bench").await?;

    // A genuine id, taken before the gap.
    let mut stream = open(&http, bridge, &token, None).await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    dovecot.deliver_many("bench", "Big", corpus::bulk(1, 1));
    let first = stream
        .next()
        .await
        .context("stream ended")?
        .context("bad event")?;
    ensure!(first.event == "message.new", "{first:?}");
    let genuine = first.id;
    drop(stream);
    let forged = far_behind(&genuine)?;

    let seeded = Instant::now();
    dovecot.deliver_many("bench", "Big", corpus::bulk(messages, 7));
    let mut direct = RawImap::connect(dovecot).await?;
    // Dovecot indexes the new messages once, here, so neither side below pays for it.
    direct.command("SELECT Big (CONDSTORE)").await?;
    eprintln!(
        "seeded and indexed {messages} messages in {:.1?}",
        seeded.elapsed()
    );

    let mut report = Vec::new();
    for (label, id) in [
        ("genuine id, gap of the whole mailbox", &genuine),
        ("forged id (MAC fails), UIDNEXT 1", &forged),
    ] {
        let before = procfs::resident(bridge.pid())?;
        let mut times = Vec::new();
        for _ in 0..rounds {
            let started = Instant::now();
            let mut stream = open(&http, bridge, &token, Some(id)).await?;
            let event = stream
                .next()
                .await
                .context("stream ended")?
                .context("bad event")?;
            times.push(started.elapsed());
            ensure!(event.event == "mailbox.reset", "{label}: {event:?}");
        }
        let after = procfs::resident(bridge.pid())?;
        report.push((label, median(&mut times), before, after));
    }

    let mut direct_times = Vec::new();
    let mut fetched_bytes = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        fetched_bytes = direct
            .command(&format!("UID FETCH 2:* {}", *direct::SUMMARY_ITEMS))
            .await?;
        direct_times.push(started.elapsed());
    }
    let direct_time = median(&mut direct_times);

    println!(
        "\nLast-Event-ID {messages} messages behind (median of {rounds}; bound IMAP_BRIDGE_SSE_MAX_REPLAY = 1000)"
    );
    println!(
        "{:<40} {:>14} {:>10} {:>14} {:>14}",
        "case", "first event", "ratio", "RSS growth", "peak growth"
    );
    for (label, time, before, after) in &report {
        println!(
            "{label:<40} {:>11.2} ms {:>10.5} {:>10} KiB {:>10} KiB",
            time.as_secs_f64() * 1e3,
            time.as_secs_f64() / direct_time.as_secs_f64(),
            after.rss_kib as i64 - before.rss_kib as i64,
            after.hwm_kib as i64 - before.hwm_kib as i64,
        );
    }
    println!(
        "{:<40} {:>11.2} ms {:>10} {:>10} KiB   (bytes the server sends; an unbounded replay held their parse)",
        "direct: fetch every missed summary",
        direct_time.as_secs_f64() * 1e3,
        "1",
        fetched_bytes / 1024,
    );
    println!(
        "bridge peak RSS {} KiB",
        procfs::resident(bridge.pid())?.hwm_kib
    );
    Ok(())
}

/// Opens `GET /v1/events?mailbox=Big`, resuming after `last_id`.
async fn open(
    http: &reqwest::Client,
    bridge: &BridgeProcess,
    token: &str,
    last_id: Option<&str>,
) -> anyhow::Result<
    impl futures::Stream<
        Item = Result<
            eventsource_stream::Event,
            eventsource_stream::EventStreamError<reqwest::Error>,
        >,
    > + Unpin,
> {
    let mut req = http
        .get(format!("{}/v1/events?mailbox=Big", bridge.base))
        .bearer_auth(token);
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    let res = req.send().await?;
    if res.status() != 200 {
        bail!("events: {}: {}", res.status(), res.text().await?);
    }
    Ok(Box::pin(res.bytes_stream().eventsource().filter(|e| {
        futures::future::ready(!matches!(e, Ok(e) if e.event == "message" && e.data.is_empty()))
    })))
}

/// The id with its `Big` position moved back to UIDNEXT 1, its MAC left as it was.
fn far_behind(genuine: &str) -> anyhow::Result<String> {
    let (payload, mac) = genuine
        .strip_prefix("e2.")
        .and_then(|r| r.split_once('.'))
        .context("not an e2 id")?;
    let mut positions: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    let state = positions["Big"].as_str().context("no Big position")?;
    let uid_validity = state.split('.').nth(1).context("s1.uv.modseq.next")?;
    positions.insert("Big".into(), format!("s1.{uid_validity}.1.1").into());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&positions)?);
    Ok(format!("e2.{payload}.{mac}"))
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn env_number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name} must be a number")),
        Err(_) => Ok(default),
    }
}

/// A direct IMAP client over TLS that counts the bytes of each answer, literals included.
struct RawImap {
    stream: BufReader<tokio_rustls::client::TlsStream<TcpStream>>,
    tag: u32,
}

impl RawImap {
    async fn connect(dovecot: &Dovecot) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::pem::PemObject::pem_file_iter(dovecot.ca_cert_path())? {
            roots.add(cert?)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(dovecot.imaps_addr()).await?;
        tcp.set_nodelay(true)?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let mut client = RawImap {
            stream: BufReader::new(stream),
            tag: 0,
        };
        let mut greeting = Vec::new();
        client.stream.read_until(b'\n', &mut greeting).await?;
        client.command(&format!("LOGIN bench {PASSWORD}")).await?;
        Ok(client)
    }

    /// Sends `command` and reads its answer; returns the bytes read.
    async fn command(&mut self, command: &str) -> anyhow::Result<usize> {
        self.tag += 1;
        let tag = format!("r{} ", self.tag);
        self.stream
            .get_mut()
            .write_all(format!("{tag}{command}\r\n").as_bytes())
            .await?;
        let mut total = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = self.stream.read_until(b'\n', &mut line).await?;
            ensure!(n > 0, "the server closed the connection");
            total += n;
            if let Some(len) = literal_length(&line) {
                let mut literal = vec![0; len];
                self.stream.read_exact(&mut literal).await?;
                total += len;
                continue;
            }
            if line.starts_with(tag.as_bytes()) {
                ensure!(
                    line[tag.len()..].starts_with(b"OK"),
                    "{command}: {}",
                    String::from_utf8_lossy(&line)
                );
                return Ok(total);
            }
        }
    }
}

/// `n` when `line` ends with a literal announcement `{n}\r\n`.
fn literal_length(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n")?.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&line[open + 1..]).ok()?.parse().ok()
}
