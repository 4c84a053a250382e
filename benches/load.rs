//! Throughput, CPU and memory under many users: issue 6, "as fast as IMAP allows".
//!
//! Run with `cargo bench --bench load` (release build). Settings, all optional:
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `BENCH_SECONDS` | 20 | length of each load run |
//! | `BENCH_USERS` | `50,200` | simulated users of each load run, comma separated |
//! | `BENCH_PAGE_USERS` | 50 | simulated users of the warm-page run (0: none) |
//! | `BENCH_VIEW_USERS` | 0 | simulated users of a message-view run (0: none) |
//! | `BENCH_MESSAGES` | 1000 | messages in each load user's INBOX |
//! | `BENCH_IDLE_USERS` | 1000 | logged-in idle users for the memory figures |
//! | `BENCH_SSE_USERS` | 200 | users holding event streams (`BENCH_STREAMS_PER_USER` each) |
//! | `BENCH_STREAMS_PER_USER` | 5 | event streams per such user |
//! | `BENCH_ACCEPT_ENCODING` | none | `Accept-Encoding` the load users send (e.g. `gzip`, as browsers do) |
//! | `BENCH_BRIDGE_LOG` | `warn` | the bridge's log filter (its log goes to stderr) |
//!
//! The bridge inherits the environment, so any other `IMAP_BRIDGE_*` setting given to the
//! bench (e.g. `IMAP_BRIDGE_CACHE_SIZE=0`) applies to every bridge it starts.
//!
//! A private Dovecot (its own processes; `maildir_very_dirty_syncs`, imap-login in
//! high-performance mode, process limits raised for thousands of sessions) and the real
//! `imap-bridge` binary as a child process, so CPU time and memory read from `/proc` are the
//! bridge's alone. The bridge runs with its default settings (4 pooled sessions and 8
//! connections per user, 2,000 in total) except where the memory run says otherwise; Dovecot
//! allows each user more connections than that budget. Seeding writes one load user's and one
//! idle user's messages and hard-links them into everyone else's Maildir (see [`seed`]).
//!
//! **Load.** Each simulated user logs in, reads its first page once (which SELECTs the INBOX
//! and gives the cursor of page 2), and then runs a closed loop for the run's length over its
//! own HTTP keep-alive connection, one request at a time with no think time: 60 % header pages
//! (`GET /v1/mailboxes/INBOX/messages?limit=50`, a quarter of them page 2 via the cursor), 30 %
//! message views of random UIDs (`GET …/messages/{uid}`), 10 % flag changes
//! (`PATCH …/messages/{uid}/flags`, adding or removing `\Flagged`). Any non-2xx answer or
//! transport failure is an error. Then one more run, with `BENCH_PAGE_USERS` users, sends only
//! warm first pages (the summaries come from the cache, flags from IMAP): its bridge CPU per
//! request is the bridge's CPU per warm page. With `BENCH_VIEW_USERS`, a last run sends only
//! message views of random UIDs, for the bridge's CPU per message view. CPU time is utime + stime from `/proc/<pid>/stat`, read just
//! before the users start and after the last one stops: for the bridge process, for Dovecot's
//! whole process tree (the master from `run/master.pid` and every process below it, with the
//! reaped ones' time that moves into their parent's cutime/cstime), for this benchmark's own
//! client, and for the whole machine (`/proc/stat`), so that CPU other processes took during a
//! run shows: throughput and latency only mean something on an otherwise idle machine.
//! Upstream connections at the end are counted twice: ESTABLISHED TCP connections from the
//! bridge's file descriptors to Dovecot's port (`/proc/<pid>/fd` against
//! `/proc/<pid>/net/tcp{,6}`), and `doveadm who -1`, which also gives the most per user.
//!
//! **Memory.** On a fresh bridge, after one warm-up user (a page and a short event stream):
//! VmRSS with `BENCH_IDLE_USERS` users logged in (one pooled session each), then after one
//! header page each (INBOX selected, 50 summaries each in the summary cache), then with
//! `BENCH_SSE_USERS` × `BENCH_STREAMS_PER_USER` event streams held open (one IDLE watcher, so
//! one more IMAP connection, per user). A second fresh bridge (its total connection cap raised
//! to fit) holds one stream for each of the idle users, so one watcher per stream; the two
//! shapes together separate what a stream costs from what a watcher costs. Before each
//! reading the bridge must hold the expected number of upstream connections and its VmRSS must
//! stay put for a second.

#[path = "common/bridge_process.rs"]
mod bridge_process;
#[path = "../tests/common/corpus.rs"]
mod corpus;
#[path = "../tests/common/dovecot.rs"]
mod dovecot;
#[path = "common/procfs.rs"]
mod procfs;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bridge_process::{BridgeProcess, PASSWORD};
use dovecot::{Dovecot, DovecotOptions};
use futures::{StreamExt, TryStreamExt};
use procfs::Resident;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// The issue's target for the bridge's CPU per warm page, in µs.
const PAGE_CPU_TARGET_US: u32 = 150;
/// Page size of the header lists.
const PAGE: usize = 50;
/// Messages in each idle user's INBOX: one page.
const IDLE_MESSAGES: usize = 50;
/// The bridge's default `IMAP_BRIDGE_MAX_CONNECTIONS_PER_USER`.
const BRIDGE_PER_USER_BUDGET: usize = 8;
/// Dovecot's `mail_max_userip_connections`: above the bridge's per-user budget, with room for
/// the one-off connection that checks a changed password.
const DOVECOT_PER_USER_LIMIT: u32 = 20;
/// Logins, pages and stream opens in flight while setting up.
const SETUP_CONCURRENCY: usize = 16;
/// Errors quoted in full.
const ERRORS_SHOWN: usize = 5;
/// Room for thousands of sessions: each IMAP connection is one `imap` process (whose service
/// has its own built-in `process_limit` of 1024, beyond which Dovecot drops new connections),
/// and imap-login proxies many TLS connections per process (high-performance mode) rather than
/// one process per connection. Later top-level settings and repeated `service` sections
/// override earlier ones in Dovecot's configuration.
const DOVECOT_LIMITS: &str = "\
default_process_limit = 5000
default_client_limit = 20000
service imap {
  process_limit = 5000
}
service imap-login {
  service_count = 0
  process_min_avail = 2
  client_limit = 5000
}
";

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let settings = Settings::from_env()?;
    let dovecot = Dovecot::start_with(DovecotOptions {
        very_dirty_syncs: true,
        max_userip_connections: DOVECOT_PER_USER_LIMIT,
        extra_config: DOVECOT_LIMITS.to_owned(),
        ..Default::default()
    });
    let seeding = seed(&dovecot, &settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        let runs = load_runs(&dovecot, &settings).await?;
        let memory = memory_runs(&dovecot, &settings).await?;
        anyhow::Ok((runs, memory))
    });
    let (runs, memory) = outcome.inspect_err(|_| {
        // Dovecot's limits (process_limit, client_limit, per-user connections) show up here.
        let log = dovecot.log();
        let complaints: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("Warning:") || l.contains("Error:") || l.contains("Fatal:"))
            .collect();
        eprintln!("Dovecot's last warnings and errors:");
        for line in &complaints[complaints.len().saturating_sub(20)..] {
            eprintln!("  {line}");
        }
    })?;
    report(&settings, &seeding, &runs, &memory, started.elapsed());
    let errors: usize = runs.iter().map(|r| r.errors).sum();
    ensure!(errors == 0, "{errors} requests failed under load");
    Ok(())
}

struct Settings {
    seconds: u64,
    load_users: Vec<usize>,
    page_users: usize,
    view_users: usize,
    messages: usize,
    idle_users: usize,
    sse_users: usize,
    streams_per_user: usize,
    accept_encoding: Option<String>,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let load_users = match std::env::var("BENCH_USERS") {
            Ok(list) => list
                .split(',')
                .map(|n| n.trim().parse())
                .collect::<Result<Vec<usize>, _>>()
                .context("BENCH_USERS must be numbers separated by commas")?,
            Err(_) => vec![50, 200],
        };
        let settings = Settings {
            seconds: env_number("BENCH_SECONDS", 20)? as u64,
            load_users,
            page_users: env_number("BENCH_PAGE_USERS", 50)?,
            view_users: env_number("BENCH_VIEW_USERS", 0)?,
            messages: env_number("BENCH_MESSAGES", 1000)?,
            idle_users: env_number("BENCH_IDLE_USERS", 1000)?,
            sse_users: env_number("BENCH_SSE_USERS", 200)?,
            streams_per_user: env_number("BENCH_STREAMS_PER_USER", 5)?,
            accept_encoding: std::env::var("BENCH_ACCEPT_ENCODING").ok(),
        };
        ensure!(
            settings.load_users.iter().all(|&n| n > 0),
            "BENCH_USERS must be positive"
        );
        ensure!(
            settings.messages >= 2 * PAGE,
            "BENCH_MESSAGES must be at least {}",
            2 * PAGE
        );
        ensure!(
            settings.idle_users > 0 && settings.sse_users <= settings.idle_users,
            "BENCH_IDLE_USERS must be positive and at least BENCH_SSE_USERS"
        );
        ensure!(
            (1..=20).contains(&settings.streams_per_user),
            "BENCH_STREAMS_PER_USER must be 1 to 20 (the bridge's per-user stream limit)"
        );
        Ok(settings)
    }

    fn most_load_users(&self) -> usize {
        self.load_users
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(self.page_users)
            .max(self.view_users)
    }

    /// Every run: the mixed ones, then the warm-page one and the message-view one.
    fn runs(&self) -> Vec<(usize, Mix)> {
        let mut runs: Vec<_> = self.load_users.iter().map(|&n| (n, Mix::Mixed)).collect();
        if self.page_users > 0 {
            runs.push((self.page_users, Mix::WarmPages));
        }
        if self.view_users > 0 {
            runs.push((self.view_users, Mix::Views));
        }
        runs
    }
}

fn env_number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name} must be a number")),
        Err(_) => Ok(default),
    }
}

fn load_user(i: usize) -> String {
    format!("load{i}")
}

fn idle_user(i: usize) -> String {
    format!("idle{i}")
}

const WARM_USER: &str = "warm";

struct Seeding {
    messages: usize,
    /// Of those, hard links to another user's message files.
    linked: usize,
    took: Duration,
}

/// Creates every user and seeds their INBOX. One load user and one idle user get their mail
/// written by [`Dovecot::deliver_many`]; every other user's `new/` gets hard links to the same
/// files, which is as Dovecot itself copies with `maildir_copy_with_hardlinks`: it never
/// changes a message file, only renames its own link when flags change. A link is one system
/// call where writing a file is five, so 200,000 messages take seconds instead of a minute.
fn seed(dovecot: &Dovecot, settings: &Settings) -> anyhow::Result<Seeding> {
    let started = Instant::now();
    let load_users: Vec<String> = (0..settings.most_load_users()).map(load_user).collect();
    let idle_users: Vec<String> = (0..settings.idle_users).map(idle_user).collect();
    let mut linked = 0;
    for (users, count, corpus_seed) in [
        (&load_users, settings.messages, 3),
        (&idle_users, IDLE_MESSAGES, 5),
    ] {
        let Some((template, others)) = users.split_first() else {
            continue;
        };
        dovecot.add_user(template, PASSWORD);
        dovecot.deliver_many(template, "INBOX", corpus::bulk(count, corpus_seed));
        let new = |user: &str| dovecot.dir().join(format!("home/{user}/Maildir/new"));
        let files: Vec<_> = std::fs::read_dir(new(template))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        ensure!(files.len() == count, "{template}: {} messages", files.len());
        for user in others {
            dovecot.add_user(user, PASSWORD);
            for file in &files {
                std::fs::hard_link(new(template).join(file), new(user).join(file))?;
            }
            linked += files.len();
        }
    }
    dovecot.add_user(WARM_USER, PASSWORD);
    dovecot.deliver_many(WARM_USER, "INBOX", corpus::bulk(IDLE_MESSAGES, 5));
    let messages = load_users.len() * settings.messages + (idle_users.len() + 1) * IDLE_MESSAGES;
    Ok(Seeding {
        messages,
        linked,
        took: started.elapsed(),
    })
}

/// Dovecot's master process, the root of all its processes.
fn dovecot_master(dovecot: &Dovecot) -> anyhow::Result<u32> {
    let path = dovecot.dir().join("run").join("master.pid");
    std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .parse()
        .context("master.pid")
}

/// Logged-in IMAP connections per user, from `doveadm who -1`.
fn dovecot_connections(dovecot: &Dovecot) -> anyhow::Result<HashMap<String, usize>> {
    let out = dovecot.doveadm(&["who", "-1"]);
    ensure!(
        out.status.success(),
        "doveadm who: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut per_user = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let mut fields = line.split_whitespace();
        if let (Some(user), Some("imap")) = (fields.next(), fields.next()) {
            *per_user.entry(user.to_owned()).or_insert(0) += 1;
        }
    }
    Ok(per_user)
}

// ---------------------------------------------------------------------------------------------
// Load

/// The three kinds of request of the mix.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Page,
    Body,
    Flags,
}

const KINDS: [Kind; 3] = [Kind::Page, Kind::Body, Kind::Flags];

/// What the users of a run send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// Pages, message views and flag changes.
    Mixed,
    /// The first page only, over and over.
    WarmPages,
    /// Message views only.
    Views,
}

impl Mix {
    fn label(self) -> &'static str {
        match self {
            Mix::Mixed => "mixed",
            Mix::WarmPages => "pages",
            Mix::Views => "views",
        }
    }
}

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Page => "header page",
            Kind::Body => "message view",
            Kind::Flags => "flag change",
        }
    }
}

/// One simulated user: its own HTTP client (so its own keep-alive connection) and token.
struct Simulated {
    http: reqwest::Client,
    token: String,
    /// `next_cursor` of the first page: page 2.
    cursor: String,
    /// UIDs are 1 to this.
    newest_uid: u32,
}

impl Simulated {
    async fn log_in(
        bridge: &BridgeProcess,
        user: &str,
        accept_encoding: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(encoding) = accept_encoding {
            headers.insert(reqwest::header::ACCEPT_ENCODING, encoding.parse()?);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()?;
        // The login and first page go without compression: their JSON is read here.
        let plain = reqwest::Client::new();
        let token = bridge.login(&plain, user).await?;
        let page: Value = plain
            .get(format!(
                "{}/v1/mailboxes/INBOX/messages?limit={PAGE}",
                bridge.base
            ))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let messages = page["messages"].as_array().context("no messages")?;
        ensure!(messages.len() == PAGE, "{user}: first page is not full");
        let newest_uid = messages[0]["uid"].as_u64().context("no uid")?;
        ensure!(
            page["total"].as_u64() == Some(newest_uid),
            "{user}: UIDs are not 1 to {newest_uid}"
        );
        Ok(Simulated {
            http,
            token,
            cursor: page["next_cursor"]
                .as_str()
                .context("no next_cursor")?
                .to_owned(),
            newest_uid: u32::try_from(newest_uid)?,
        })
    }

    /// Sends requests of the mix one after another until `until`.
    async fn run(self, base: Arc<str>, mix: Mix, until: Instant, seed: u64) -> Tally {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut tally = Tally::default();
        let messages = format!("{base}/v1/mailboxes/INBOX/messages");
        let first_page = format!("{messages}?limit={PAGE}");
        let cursor: String = form_urlencoded::byte_serialize(self.cursor.as_bytes()).collect();
        let second_page = format!("{first_page}&cursor={cursor}");
        while Instant::now() < until {
            let roll: f64 = match mix {
                Mix::Mixed => rng.random(),
                Mix::WarmPages => 0.0,
                Mix::Views => 0.75,
            };
            let uid = rng.random_range(1..=self.newest_uid);
            let (kind, request) = if roll < 0.6 {
                let url = if mix == Mix::Mixed && rng.random_bool(0.25) {
                    &second_page
                } else {
                    &first_page
                };
                (Kind::Page, self.http.get(url))
            } else if roll < 0.9 {
                (Kind::Body, self.http.get(format!("{messages}/{uid}")))
            } else {
                let change = if rng.random_bool(0.5) {
                    "add"
                } else {
                    "remove"
                };
                let body = serde_json::json!({ change: ["\\Flagged"] });
                (
                    Kind::Flags,
                    self.http
                        .patch(format!("{messages}/{uid}/flags"))
                        .json(&body),
                )
            };
            let sent = Instant::now();
            let outcome = async {
                let res = request.bearer_auth(&self.token).send().await?;
                let status = res.status();
                let body = res.bytes().await?;
                ensure!(
                    status.is_success(),
                    "{status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                );
                anyhow::Ok(())
            }
            .await;
            match outcome {
                Ok(()) => tally.latencies[kind.index()].push(sent.elapsed()),
                Err(e) => {
                    tally.errors += 1;
                    if tally.first_errors.len() < ERRORS_SHOWN {
                        tally.first_errors.push(format!(
                            "{} uid {uid} after {:.0} ms: {e:#}",
                            kind.label(),
                            sent.elapsed().as_secs_f64() * 1000.0
                        ));
                    }
                }
            }
        }
        tally
    }
}

#[derive(Default)]
struct Tally {
    latencies: [Vec<Duration>; 3],
    errors: usize,
    first_errors: Vec<String>,
}

struct LoadRun {
    users: usize,
    mix: Mix,
    setup: Duration,
    elapsed: Duration,
    /// Sorted, per [`Kind`].
    latencies: [Vec<Duration>; 3],
    errors: usize,
    first_errors: Vec<String>,
    bridge_cpu: Duration,
    dovecot_cpu: Duration,
    client_cpu: Duration,
    /// Everything the machine's cores did, these three and any other process.
    machine_cpu: Duration,
    upstream_tcp: usize,
    dovecot_sessions: usize,
    most_per_user: usize,
    bridge_memory: Resident,
}

impl LoadRun {
    fn requests(&self) -> usize {
        self.latencies.iter().map(Vec::len).sum::<usize>() + self.errors
    }

    fn all_latencies(&self) -> Vec<Duration> {
        let mut all: Vec<Duration> = self.latencies.concat();
        all.sort_unstable();
        all
    }
}

/// One bridge for all load runs, each with more users than the last.
async fn load_runs(dovecot: &Dovecot, settings: &Settings) -> anyhow::Result<Vec<LoadRun>> {
    let bridge = BridgeProcess::start(dovecot, &[])?;
    let master = dovecot_master(dovecot)?;
    let imap_port = dovecot.imaps_addr().port();
    let base: Arc<str> = bridge.base.clone().into();
    let mut runs = Vec::new();
    for (users, mix) in settings.runs() {
        let setup_started = Instant::now();
        let simulated: Vec<Simulated> = futures::stream::iter(0..users)
            .map(|i| {
                let bridge = &bridge;
                async move {
                    Simulated::log_in(bridge, &load_user(i), settings.accept_encoding.as_deref())
                        .await
                        .with_context(|| format!("setting up {}", load_user(i)))
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect()
            .await?;
        let setup = setup_started.elapsed();
        eprintln!(
            "load: {users} users logged in with their INBOX selected in {:.1} s; running {} s of \
             {}",
            setup.as_secs_f64(),
            settings.seconds,
            mix.label()
        );

        let self_pid = std::process::id();
        let (bridge_before, dovecot_before, client_before, machine_before) = (
            procfs::process_cpu(bridge.pid())?,
            procfs::tree_cpu(master)?,
            procfs::process_cpu(self_pid)?,
            procfs::machine_busy()?,
        );
        let started = Instant::now();
        let until = started + Duration::from_secs(settings.seconds);
        let tasks: Vec<_> = simulated
            .into_iter()
            .enumerate()
            .map(|(i, user)| tokio::spawn(user.run(base.clone(), mix, until, i as u64)))
            .collect();
        let mut tally = Tally::default();
        for task in tasks {
            let t = task.await?;
            for (all, mine) in tally.latencies.iter_mut().zip(t.latencies) {
                all.extend(mine);
            }
            tally.errors += t.errors;
            for e in t.first_errors {
                if tally.first_errors.len() < ERRORS_SHOWN {
                    tally.first_errors.push(e);
                }
            }
        }
        let elapsed = started.elapsed();
        let (bridge_after, dovecot_after, client_after, machine_after) = (
            procfs::process_cpu(bridge.pid())?,
            procfs::tree_cpu(master)?,
            procfs::process_cpu(self_pid)?,
            procfs::machine_busy()?,
        );
        for l in &mut tally.latencies {
            l.sort_unstable();
        }
        let sessions = dovecot_connections(dovecot)?;
        runs.push(LoadRun {
            users,
            mix,
            setup,
            elapsed,
            latencies: tally.latencies,
            errors: tally.errors,
            first_errors: tally.first_errors,
            bridge_cpu: bridge_after.saturating_sub(bridge_before),
            dovecot_cpu: dovecot_after.saturating_sub(dovecot_before),
            client_cpu: client_after.saturating_sub(client_before),
            machine_cpu: machine_after.saturating_sub(machine_before),
            upstream_tcp: procfs::established_to(bridge.pid(), imap_port)?,
            dovecot_sessions: sessions.values().sum(),
            most_per_user: sessions.values().copied().max().unwrap_or(0),
            bridge_memory: procfs::resident(bridge.pid())?,
        });
    }
    Ok(runs)
}

// ---------------------------------------------------------------------------------------------
// Memory

struct MemoryRow {
    label: String,
    memory: Resident,
    upstream: usize,
    expected_upstream: usize,
    /// RSS growth over the row it is compared with, and the count it is divided by.
    delta: Option<(i64, usize, &'static str)>,
}

struct Memory {
    rows: Vec<MemoryRow>,
    /// RSS growth for `sse_users` × `streams_per_user` streams (one watcher per user) and for
    /// `idle_users` streams (one watcher each).
    shared_watchers_kib: i64,
    own_watchers_kib: i64,
    took: Duration,
}

/// A bridge under observation for the memory figures.
struct Observed<'a> {
    bridge: BridgeProcess,
    http: reqwest::Client,
    imap_port: u16,
    dovecot: &'a Dovecot,
}

impl<'a> Observed<'a> {
    /// Waits until the bridge holds `expected` upstream connections and its VmRSS has not moved
    /// (within 16 KiB) for a second; gives up after 60 s and reports what it saw.
    async fn settle(&self, expected: usize) -> anyhow::Result<(Resident, usize)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last: Option<u64> = None;
        let mut steady = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let upstream = procfs::established_to(self.bridge.pid(), self.imap_port)?;
            let memory = procfs::resident(self.bridge.pid())?;
            if upstream == expected && last.is_some_and(|l| l.abs_diff(memory.rss_kib) <= 16) {
                steady += 1;
            } else {
                steady = 0;
            }
            last = Some(memory.rss_kib);
            if steady >= 4 {
                return Ok((memory, upstream));
            }
            if Instant::now() > deadline {
                eprintln!(
                    "memory: not settled after 60 s: {upstream} upstream connections (expected \
                     {expected}), VmRSS {} KiB",
                    memory.rss_kib
                );
                return Ok((memory, upstream));
            }
        }
    }

    async fn row(&self, label: String, expected: usize) -> anyhow::Result<MemoryRow> {
        let (memory, upstream) = self.settle(expected).await?;
        Ok(MemoryRow {
            label,
            memory,
            upstream,
            expected_upstream: expected,
            delta: None,
        })
    }

    /// A fresh bridge, warmed by one user's login, page and short-lived event stream so that
    /// one-time set-up is in the baseline.
    async fn start(dovecot: &'a Dovecot, settings: &[(&str, String)]) -> anyhow::Result<Self> {
        let bridge = BridgeProcess::start(dovecot, settings)?;
        // No idle keep-alive connections: each call has its own, and an event stream keeps it.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()?;
        let token = bridge.login(&http, WARM_USER).await?;
        page(&http, &bridge.base, &token).await?;
        drop(bridge.stream(&http, &token).await?);
        Ok(Observed {
            bridge,
            http,
            imap_port: dovecot.imaps_addr().port(),
            dovecot,
        })
    }

    async fn log_in_all(&self, users: usize) -> anyhow::Result<Vec<String>> {
        futures::stream::iter(0..users)
            .map(|i| async move { self.bridge.login(&self.http, &idle_user(i)).await })
            .buffered(SETUP_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Opens `per_user` streams for each of the first `users` tokens and keeps them open.
    async fn open_streams(
        &self,
        tokens: &[String],
        users: usize,
        per_user: usize,
    ) -> anyhow::Result<Vec<reqwest::Response>> {
        futures::stream::iter(tokens[..users].iter().flat_map(|t| vec![t; per_user]))
            .map(|token| self.bridge.stream(&self.http, token))
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Stops the bridge and waits until Dovecot has let go of all its sessions.
    async fn stop(self) -> anyhow::Result<()> {
        drop(self.bridge);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left: usize = dovecot_connections(self.dovecot)?.values().sum();
            if left == 0 {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "Dovecot still has {left} sessions 30 s after the bridge stopped"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn page(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<()> {
    http.get(format!("{base}/v1/mailboxes/INBOX/messages?limit={PAGE}"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    Ok(())
}

fn compared(row: &mut MemoryRow, with: &MemoryRow, count: usize, unit: &'static str) -> i64 {
    let delta = row.memory.rss_kib as i64 - with.memory.rss_kib as i64;
    row.delta = Some((delta, count, unit));
    delta
}

async fn memory_runs(dovecot: &Dovecot, settings: &Settings) -> anyhow::Result<Memory> {
    let started = Instant::now();
    let idle = settings.idle_users;
    let (sse_users, per_user) = (settings.sse_users, settings.streams_per_user);
    let streams = sse_users * per_user;
    let mut rows = Vec::new();

    // Idle users, then many streams per user, on the bridge's default settings.
    let observed = Observed::start(dovecot, &[]).await?;
    let baseline = observed
        .row("baseline (fresh bridge, one warm user)".into(), 1)
        .await?;
    let t = Instant::now();
    let tokens = observed.log_in_all(idle).await?;
    eprintln!(
        "memory: {idle} users logged in in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut logged_in = observed
        .row(format!("{idle} users logged in, idle"), 1 + idle)
        .await?;
    compared(&mut logged_in, &baseline, idle, "idle user");
    futures::stream::iter(&tokens)
        .map(|token| page(&observed.http, &observed.bridge.base, token))
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let mut paged = observed
        .row(
            format!("  + one header page each ({PAGE} messages)"),
            1 + idle,
        )
        .await?;
    compared(&mut paged, &baseline, idle, "idle user");
    let t = Instant::now();
    let open = observed.open_streams(&tokens, sse_users, per_user).await?;
    eprintln!(
        "memory: {streams} event streams open in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut shared = observed
        .row(
            format!("  + {streams} event streams, {sse_users} users × {per_user}"),
            1 + idle + sse_users,
        )
        .await?;
    let shared_watchers_kib = compared(&mut shared, &paged, streams, "stream");
    drop(open);
    observed.stop().await?;
    rows.extend([baseline, logged_in, paged, shared]);

    // One stream per user: as many IDLE watchers as streams. Pooled sessions and watchers
    // share the bridge's total connection cap, which is raised to hold both.
    let cap = 2 * idle + 10;
    let observed =
        Observed::start(dovecot, &[("IMAP_BRIDGE_POOL_MAX_TOTAL", cap.to_string())]).await?;
    let baseline = observed
        .row(
            format!("baseline (fresh bridge, IMAP_BRIDGE_POOL_MAX_TOTAL={cap})"),
            1,
        )
        .await?;
    let tokens = observed.log_in_all(idle).await?;
    let mut logged_in = observed
        .row(format!("{idle} users logged in, idle"), 1 + idle)
        .await?;
    compared(&mut logged_in, &baseline, idle, "idle user");
    let t = Instant::now();
    let open = observed.open_streams(&tokens, idle, 1).await?;
    eprintln!(
        "memory: {idle} event streams of {idle} users open in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut own = observed
        .row(
            format!("  + {idle} event streams, {idle} users × 1"),
            1 + 2 * idle,
        )
        .await?;
    let own_watchers_kib = compared(&mut own, &logged_in, idle, "stream");
    drop(open);
    observed.stop().await?;
    rows.extend([baseline, logged_in, own]);

    Ok(Memory {
        rows,
        shared_watchers_kib,
        own_watchers_kib,
        took: started.elapsed(),
    })
}

// ---------------------------------------------------------------------------------------------
// Report

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn per_request_us(cpu: Duration, requests: usize) -> f64 {
    cpu.as_secs_f64() * 1e6 / requests.max(1) as f64
}

fn report(
    settings: &Settings,
    seeding: &Seeding,
    runs: &[LoadRun],
    memory: &Memory,
    took: Duration,
) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "imap-bridge under load — {cores} cores; bridge, Dovecot 2.3 and this client share them"
    );
    println!(
        "seeded {} messages ({} per load user, {IDLE_MESSAGES} per idle user; {} of them hard \
         links) in {:.1} s",
        seeding.messages,
        settings.messages,
        seeding.linked,
        seeding.took.as_secs_f64()
    );
    println!(
        "mix: mixed = 60 % header pages of {PAGE} (¼ page 2), 30 % message views, 10 % flag \
         changes; pages = the first page only (warm: summaries cached, flags from IMAP); closed \
         loop per user, HTTP keep-alive, Accept-Encoding: {}; r/s/core = requests per second \
         of the bridge's CPU time",
        settings.accept_encoding.as_deref().unwrap_or("none")
    );
    println!(
        "per-user IMAP budget: bridge {BRIDGE_PER_USER_BUDGET} connections (4 pooled), Dovecot \
         mail_max_userip_connections {DOVECOT_PER_USER_LIMIT}"
    );
    println!();
    println!(
        "{:>5} {:>6} {:>5} {:>7} {:>7} {:>7} {:>7} {:>6} {:>11} {:>10} {:>11} {:>6} {:>11} {:>15} {:>9}",
        "users",
        "mix",
        "secs",
        "reqs",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "bridge µs/r",
        "r/s/core",
        "Dovecot µs/r",
        "ratio",
        "client µs/r",
        "upstream tcp/who",
        "max/user"
    );
    for run in runs {
        let requests = run.requests();
        let all = run.all_latencies();
        let bridge = per_request_us(run.bridge_cpu, requests);
        let dovecot = per_request_us(run.dovecot_cpu, requests);
        println!(
            "{:>5} {:>6} {:>5.1} {:>7} {:>7.0} {:>7.1} {:>7.1} {:>6} {:>11.0} {:>10.0} {:>11.0} {:>6.2} {:>11.0} {:>15} {:>9}",
            run.users,
            run.mix.label(),
            run.elapsed.as_secs_f64(),
            requests,
            requests as f64 / run.elapsed.as_secs_f64(),
            ms(percentile(&all, 0.5)),
            ms(percentile(&all, 0.99)),
            run.errors,
            bridge,
            1e6 / bridge.max(f64::MIN_POSITIVE),
            dovecot,
            bridge / dovecot.max(f64::MIN_POSITIVE),
            per_request_us(run.client_cpu, requests),
            format!("{}/{}", run.upstream_tcp, run.dovecot_sessions),
            run.most_per_user,
        );
    }
    println!();
    println!("latency by kind, ms: p50 / p99 (requests)");
    print!("{:>5} {:>6}", "users", "mix");
    for kind in KINDS {
        print!(" {:>26}", kind.label());
    }
    println!();
    for run in runs {
        print!("{:>5} {:>6}", run.users, run.mix.label());
        for kind in KINDS {
            let l = &run.latencies[kind.index()];
            print!(
                " {:>26}",
                format!(
                    "{:.1} / {:.1} ({})",
                    ms(percentile(l, 0.5)),
                    ms(percentile(l, 0.99)),
                    l.len()
                )
            );
        }
        println!();
    }
    println!();
    for run in runs {
        let ours = run.bridge_cpu + run.dovecot_cpu + run.client_cpu;
        println!(
            "{} users, {}: set-up (login + first page, {SETUP_CONCURRENCY} at a time) {:.1} s; \
             bridge VmRSS {} KiB, VmHWM {} KiB after the run",
            run.users,
            run.mix.label(),
            run.setup.as_secs_f64(),
            run.bridge_memory.rss_kib,
            run.bridge_memory.hwm_kib,
        );
        println!(
            "  CPU s: bridge {:.2}, Dovecot {:.2}, client {:.2}; other processes {:.2}; \
             machine busy {:.0} % of {cores} cores",
            run.bridge_cpu.as_secs_f64(),
            run.dovecot_cpu.as_secs_f64(),
            run.client_cpu.as_secs_f64(),
            run.machine_cpu.saturating_sub(ours).as_secs_f64(),
            100.0 * run.machine_cpu.as_secs_f64()
                / (cores.max(1) as f64 * run.elapsed.as_secs_f64()),
        );
        if run.mix == Mix::WarmPages {
            let per_page = per_request_us(run.bridge_cpu, run.requests());
            println!(
                "  bridge CPU per warm page {per_page:.0} µs; target ≤ {PAGE_CPU_TARGET_US} µs: {}",
                if per_page <= PAGE_CPU_TARGET_US as f64 {
                    "met"
                } else {
                    "MISSED"
                }
            );
        }
        for e in &run.first_errors {
            println!("  error: {e}");
        }
    }
    println!();
    println!(
        "bridge memory (VmRSS of the bridge process alone; per unit = Δ VmRSS / count); {:.0} s",
        memory.took.as_secs_f64()
    );
    println!(
        "{:<50} {:>9} {:>9} {:>9} {:>14} {:>13}",
        "", "RSS KiB", "HWM KiB", "Δ KiB", "per unit KiB", "upstream"
    );
    for row in &memory.rows {
        let (delta, per) = match row.delta {
            Some((delta, count, unit)) => (
                delta.to_string(),
                format!("{:.1} /{unit}", delta as f64 / count as f64),
            ),
            None => (String::new(), String::new()),
        };
        let upstream = if row.upstream == row.expected_upstream {
            row.upstream.to_string()
        } else {
            format!("{} (≠{})", row.upstream, row.expected_upstream)
        };
        println!(
            "{:<50} {:>9} {:>9} {:>9} {:>14} {:>13}",
            row.label, row.memory.rss_kib, row.memory.hwm_kib, delta, per, upstream
        );
    }
    // Δ(shared) = streams·s + sse_users·w and Δ(own) = idle·s + idle·w.
    let (n1, w1) = (
        (settings.sse_users * settings.streams_per_user) as f64,
        settings.sse_users as f64,
    );
    let n2 = settings.idle_users as f64;
    let (d1, d2) = (
        memory.shared_watchers_kib as f64,
        memory.own_watchers_kib as f64,
    );
    let det = n1 * n2 - w1 * n2;
    if det.abs() > f64::EPSILON {
        let stream = (d1 * n2 - w1 * d2) / det;
        let watcher = (n1 * d2 - d1 * n2) / det;
        println!(
            "solving both stream rows: {stream:.1} KiB per stream (HTTP connection + \
             subscription), {watcher:.1} KiB per IDLE watcher (its IMAP connection)"
        );
    }
    println!();
    println!("whole run {:.0} s", took.as_secs_f64());
}
