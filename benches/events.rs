//! Delivery-to-event latency and memory per idle event subscriber.
//!
//! Run with `cargo bench --bench events` (release build). `BENCH_DELIVERIES` sets the number of
//! deliveries timed (default 40), `BENCH_SUBSCRIBERS` the number of idle streams for the memory
//! figure (default 200).
//!
//! A private Dovecot and the real `imap-bridge` binary (a child process, so its memory is its
//! own) run on loopback. For latency, one SSE stream through the bridge and one direct IMAP IDLE
//! client (TLS, INBOX selected) watch the same INBOX; each message is written into the Maildir
//! and both clocks start at that moment: the direct client stops at the `EXISTS` its IDLE
//! reports, the SSE client at the `message.new` event. Both see Dovecot's fixed 500 ms IDLE
//! notification delay, so the difference is what the bridge adds.
//!
//! For memory, the bridge's resident set (VmRSS) is read before and after opening the idle
//! streams, in two shapes: many streams of one user (sharing one IDLE watcher) and one stream
//! each for as many users (one watcher, i.e. one IMAP connection, each).

#[path = "common/bridge_process.rs"]
mod bridge_process;
#[path = "../tests/common/corpus.rs"]
mod corpus;
#[path = "../tests/common/dovecot.rs"]
mod dovecot;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bridge_process::{BridgeProcess, PASSWORD};
use dovecot::{Dovecot, DovecotOptions};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn main() -> anyhow::Result<()> {
    let deliveries: usize = env_number("BENCH_DELIVERIES", 40)?;
    let subscribers: usize = env_number("BENCH_SUBSCRIBERS", 200)?;
    let dovecot = Dovecot::start_with(DovecotOptions {
        very_dirty_syncs: true,
        max_userip_connections: 20,
        ..Default::default()
    });
    dovecot.add_user("bench", PASSWORD);
    for i in 0..subscribers {
        dovecot.add_user(&format!("user{i}"), PASSWORD);
    }
    dovecot.deliver_many("bench", "INBOX", corpus::bulk(1000, 3));
    let bridge = BridgeProcess::start(
        &dovecot,
        &[(
            "IMAP_BRIDGE_SSE_MAX_PER_USER",
            (subscribers + 10).to_string(),
        )],
    )?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let latency = latency(&dovecot, &bridge, deliveries).await?;
            let memory = memory(&bridge, subscribers).await?;
            report(&latency, &memory, deliveries, subscribers);
            Ok(())
        })
}

fn env_number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name} must be a number")),
        Err(_) => Ok(default),
    }
}

/// A direct IMAP client idling on INBOX over TLS.
struct DirectIdle {
    lines: BufReader<tokio_rustls::client::TlsStream<TcpStream>>,
    tag: u32,
}

impl DirectIdle {
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
        let mut client = DirectIdle {
            lines: BufReader::new(stream),
            tag: 0,
        };
        client.read_line().await?;
        client.command(&format!("LOGIN bench {PASSWORD}")).await?;
        client.command("SELECT INBOX").await?;
        Ok(client)
    }

    async fn read_line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        ensure!(
            self.lines.read_line(&mut line).await? > 0,
            "server closed the connection"
        );
        Ok(line)
    }

    async fn command(&mut self, command: &str) -> anyhow::Result<()> {
        self.tag += 1;
        let tag = format!("d{}", self.tag);
        self.lines
            .get_mut()
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        loop {
            let line = self.read_line().await?;
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                ensure!(rest.starts_with("OK"), "{command}: {line}");
                return Ok(());
            }
        }
    }

    async fn start_idle(&mut self) -> anyhow::Result<()> {
        self.tag += 1;
        self.lines
            .get_mut()
            .write_all(format!("d{} IDLE\r\n", self.tag).as_bytes())
            .await?;
        while !self.read_line().await?.starts_with('+') {}
        Ok(())
    }

    /// Waits for the EXISTS that announces new mail; ends IDLE.
    async fn wait_exists(&mut self) -> anyhow::Result<()> {
        while !self.read_line().await?.contains("EXISTS") {}
        self.lines.get_mut().write_all(b"DONE\r\n").await?;
        let tag = format!("d{} ", self.tag);
        while !self.read_line().await?.starts_with(&tag) {}
        Ok(())
    }
}

struct Samples {
    direct: Vec<Duration>,
    bridge: Vec<Duration>,
}

async fn latency(
    dovecot: &Dovecot,
    bridge: &BridgeProcess,
    deliveries: usize,
) -> anyhow::Result<Samples> {
    let http = reqwest::Client::new();
    let token = bridge.login(&http, "bench").await?;
    let mut events = bridge
        .stream(&http, &token)
        .await?
        .bytes_stream()
        .eventsource();
    let mut direct = DirectIdle::connect(dovecot).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut samples = Samples {
        direct: Vec::new(),
        bridge: Vec::new(),
    };
    for i in 0..deliveries {
        direct.start_idle().await?;
        let subject = format!("latency probe {i}");
        let raw = format!(
            "From: probe@example.test\r\nSubject: {subject}\r\nMessage-ID: <probe-{i}@example.test>\r\n\r\nprobe\r\n"
        );
        let delivered = Instant::now();
        dovecot.deliver("bench", "INBOX", raw.as_bytes(), "", None);
        let via_direct = async {
            direct.wait_exists().await?;
            anyhow::Ok(delivered.elapsed())
        };
        let via_bridge = async {
            loop {
                let event = events.next().await.context("event stream ended")??;
                if event.event == "message.new" {
                    let data: Value = serde_json::from_str(&event.data)?;
                    if data["subject"] == subject.as_str() {
                        return anyhow::Ok(delivered.elapsed());
                    }
                }
            }
        };
        let (d, b) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::try_join!(via_direct, via_bridge)
        })
        .await
        .context("no notification within 10 s")??;
        samples.direct.push(d);
        samples.bridge.push(b);
    }
    Ok(samples)
}

struct Memory {
    baseline_kib: u64,
    one_user_kib: u64,
    many_users_kib: u64,
}

async fn memory(bridge: &BridgeProcess, subscribers: usize) -> anyhow::Result<Memory> {
    // One HTTP connection per stream, as browsers would have.
    let client = || reqwest::Client::builder().pool_max_idle_per_host(0).build();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline_kib = bridge.rss_kib()?;

    let http = client()?;
    let token = bridge.login(&http, "bench").await?;
    let mut open = Vec::new();
    for _ in 0..subscribers {
        open.push(bridge.stream(&client()?, &token).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let one_user_kib = bridge.rss_kib()?;
    drop(open);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let before_many = bridge.rss_kib()?;
    let mut open = Vec::new();
    for i in 0..subscribers {
        let http = client()?;
        let token = bridge.login(&http, &format!("user{i}")).await?;
        open.push(bridge.stream(&http, &token).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let many_users_kib = bridge.rss_kib()?.saturating_sub(before_many) + baseline_kib;
    if open.len() != subscribers {
        bail!("not every stream opened");
    }
    Ok(Memory {
        baseline_kib,
        one_user_kib,
        many_users_kib,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(samples: &Samples, memory: &Memory, deliveries: usize, subscribers: usize) {
    let mut direct = samples.direct.clone();
    let mut bridge = samples.bridge.clone();
    direct.sort();
    bridge.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("delivery → notification, {deliveries} deliveries, {cores} cores");
    println!(
        "{:<22} {:>10} {:>10} {:>10}",
        "", "median ms", "p95 ms", "p99 ms"
    );
    for (name, s) in [("direct IMAP IDLE", &direct), ("bridge SSE", &bridge)] {
        println!(
            "{name:<22} {:>10.1} {:>10.1} {:>10.1}",
            ms(percentile(s, 0.5)),
            ms(percentile(s, 0.95)),
            ms(percentile(s, 0.99))
        );
    }
    println!(
        "{:<22} {:>10.1} {:>10.1} {:>10.1}",
        "bridge − direct",
        ms(percentile(&bridge, 0.5)) - ms(percentile(&direct, 0.5)),
        ms(percentile(&bridge, 0.95)) - ms(percentile(&direct, 0.95)),
        ms(percentile(&bridge, 0.99)) - ms(percentile(&direct, 0.99)),
    );
    let per = |kib: u64| (kib.saturating_sub(memory.baseline_kib)) as f64 / subscribers as f64;
    println!();
    println!(
        "bridge RSS, idle event streams (baseline {} KiB)",
        memory.baseline_kib
    );
    println!(
        "{subscribers} streams, one user (one IDLE watcher): {} KiB, {:.1} KiB per stream",
        memory.one_user_kib,
        per(memory.one_user_kib)
    );
    println!(
        "{subscribers} streams, one per user ({subscribers} IDLE watchers + {subscribers} pooled sessions): {} KiB, {:.1} KiB per stream",
        memory.many_users_kib,
        per(memory.many_users_kib)
    );
}
