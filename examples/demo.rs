//! A self-contained demo: a private Dovecot with a seeded mailbox, and the bridge in front of it.
//!
//! `scripts/demo` runs it (`cargo run --release --example demo`). It
//!
//! * starts Dovecot in `target/demo-mail` (or `/tmp/imap-bridge-demo-<uid>` when that path is
//!   too long for Dovecot's unix sockets), keeping its data between runs;
//! * on the first run only, creates the user `demo` / `demo-password` and seeds INBOX with the
//!   realistic test corpus plus 2,000 older bulk messages (a marker file remembers this, so your
//!   changes survive a restart; delete the directory to start over);
//! * serves the bridge on `IMAP_BRIDGE_LISTEN` (default `127.0.0.1:8080`) over TLS to that
//!   Dovecot, prints where to point a browser and a curl walk-through, and runs until Ctrl-C or
//!   SIGTERM, then stops the bridge and Dovecot.
//!
//! Every other `IMAP_BRIDGE_*` setting is honoured too, except the IMAP server, which is always
//! the demo's own. `IMAP_BRIDGE_JWT_SECRET` defaults to a fixed demo secret, so tokens survive a
//! restart of the demo, and `IMAP_BRIDGE_SHUTDOWN_DELAY` to 0, since no load balancer needs it.
//!
//! `--smoke` (or `DEMO_SMOKE=1`) proves the demo works without touching the demo data: it runs
//! everything against a throw-away Dovecot on an ephemeral port, walks through the same requests
//! the printed walk-through shows, prints `demo smoke ok` and exits.

#[path = "../tests/common/corpus.rs"]
mod corpus;
#[path = "../tests/common/dovecot.rs"]
mod dovecot;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail, ensure};
use dovecot::{Dovecot, DovecotOptions};
use imap_bridge::config::{Config, Security};
use serde_json::Value;
use tokio::net::TcpListener;

/// The demo user and password.
const USER: &str = "demo";
const PASSWORD: &str = "demo-password";
/// Bulk messages seeded below the realistic corpus.
const BULK_MESSAGES: u32 = 2_000;
/// Signing key used when `IMAP_BRIDGE_JWT_SECRET` is not set. Public, so only for the demo.
const DEMO_JWT_SECRET: &str = "imap-bridge-demo-secret-do-not-use-in-production";
/// Written once the mailbox has been seeded.
const SEEDED_MARKER: &str = "demo-seeded";
/// Longest directory Dovecot's unix socket paths allow below it.
const MAX_MAIL_DIR_LEN: usize = 74;
/// Same as the `imap-bridge` binary: imap-proto parses BODYSTRUCTURE recursively.
const THREAD_STACK: usize = 32 * 1024 * 1024;

fn main() -> anyhow::Result<()> {
    let smoke = match std::env::args().nth(1).as_deref() {
        None => std::env::var("DEMO_SMOKE").is_ok_and(|v| v == "1"),
        Some("--smoke") => true,
        Some(other) => bail!("unknown argument {other:?}; usage: demo [--smoke]"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK)
        .build()?;
    let dovecot = if smoke {
        Dovecot::start_with(DovecotOptions::default())
    } else {
        let dir = mail_dir()?;
        println!("Starting Dovecot in {} ...", dir.display());
        Dovecot::start_in(dir, DovecotOptions::default())
    };
    prepare_mail(&dovecot);
    let result = runtime.block_on(run(&dovecot, smoke));
    drop(runtime);
    if !smoke {
        println!("Stopping Dovecot ...");
    }
    // Graceful for the demo's own directory; the smoke test's throw-away one is just killed.
    drop(dovecot);
    result
}

/// `target/demo-mail` below the crate, or a short directory in `/tmp` when that is too long.
fn mail_dir() -> anyhow::Result<PathBuf> {
    let preferred = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/demo-mail");
    if preferred.as_os_str().len() <= MAX_MAIL_DIR_LEN {
        return Ok(preferred);
    }
    let uid = std::fs::metadata("/proc/self")
        .context("cannot find out the user id")?
        .uid();
    Ok(PathBuf::from(format!("/tmp/imap-bridge-demo-{uid}")))
}

/// Creates the demo user and seeds the mailbox, each only if not done before.
fn prepare_mail(dovecot: &Dovecot) {
    if !dovecot.dir().join("passwd").join(USER).exists() {
        dovecot.add_user(USER, PASSWORD);
    }
    let marker = dovecot.dir().join(SEEDED_MARKER);
    if marker.exists() {
        return;
    }
    println!("Seeding the demo mailbox ...");
    let realistic = corpus::realistic();
    let oldest_days = realistic.iter().map(|m| m.days_ago).max().unwrap_or(0);
    for msg in &realistic {
        dovecot.deliver(
            USER,
            msg.mailbox,
            &msg.raw,
            msg.flags,
            Some(msg.internal_date()),
        );
    }
    // Bulk mail arrived (and was read) before the realistic corpus, ten minutes apart, so UIDs
    // follow arrival and INBOX's first page shows the interesting messages.
    let bulk_end = SystemTime::now() - Duration::from_secs(u64::from(oldest_days + 1) * 86_400);
    for (age, raw) in (1..=BULK_MESSAGES)
        .rev()
        .zip(corpus::bulk(BULK_MESSAGES as usize, 1))
    {
        let arrived = bulk_end - Duration::from_secs(u64::from(age) * 600);
        dovecot.deliver(USER, "INBOX", &raw, "S", Some(arrived));
    }
    std::fs::write(
        &marker,
        "The demo mailbox has been seeded; delete this directory to start over.\n",
    )
    .unwrap_or_else(|e| panic!("cannot write {}: {e}", marker.display()));
}

async fn run(dovecot: &Dovecot, smoke: bool) -> anyhow::Result<()> {
    let mut config = Config::for_server("localhost", dovecot.imaps_addr().port(), Security::Tls);
    config.imap_ca_file = Some(dovecot.ca_cert_path());
    if config.jwt_secret.is_none() {
        config.jwt_secret = Some(DEMO_JWT_SECRET.to_owned());
    }
    if std::env::var_os("IMAP_BRIDGE_SHUTDOWN_DELAY").is_none() {
        config.shutdown_delay = 0;
    }
    if smoke {
        config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    }
    imap_bridge::telemetry::init(&config.log, config.log_format)?;
    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (set IMAP_BRIDGE_LISTEN to another address)",
            config.listen
        )
    })?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, "imap-bridge listening");
    let base = format!("http://{}", reachable(local));
    let state = imap_bridge::build_state(config)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(imap_bridge::serve_with_state(state, listener, async move {
        tokio::select! {
            () = imap_bridge::shutdown_signal() => {}
            _ = stopped => {}
        }
    }));

    let tour = tour(&base).await;
    if smoke {
        let _ = stop.send(());
        server.await??;
        let tour = tour?;
        ensure!(tour.inbox_messages > 0, "INBOX is empty");
        ensure!(
            tour.attachment.is_some(),
            "no message with an attachment on INBOX's first page"
        );
        println!("demo smoke ok");
        return Ok(());
    }
    print_welcome(&base, &tour?);
    // Keeps serving until Ctrl-C or SIGTERM; `stop` stays alive until then.
    let served = server.await?;
    drop(stop);
    served
}

/// The address to print for a listener: loopback instead of "any".
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// What the walk-through refers to, found by walking through it over HTTP.
struct Tour {
    /// Messages in INBOX.
    inbox_messages: u64,
    /// The message to open, preferably one with an attachment.
    uid: Option<u64>,
    /// Part id and file name of that message's first attachment.
    attachment: Option<(String, String)>,
}

/// Logs in, lists mailboxes and INBOX, opens a message and downloads its attachment, exactly
/// as the printed walk-through does; fails on any answer but 200.
async fn tour(base: &str) -> anyhow::Result<Tour> {
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
        .context("no access_token in the login response")?;
    let get = |path: String| {
        let request = http.get(format!("{base}{path}")).bearer_auth(token);
        async move {
            let response = request.send().await?.error_for_status()?;
            anyhow::Ok(response)
        }
    };
    get("/v1/mailboxes".into()).await?;
    let inbox: Value = get("/v1/mailboxes/INBOX/messages?limit=50".into())
        .await?
        .json()
        .await?;
    let page = inbox["messages"].as_array().cloned().unwrap_or_default();
    let chosen = page
        .iter()
        .find(|m| m["has_attachments"] == true && m["subject"] == "Invoice 2024-001")
        .or_else(|| page.iter().find(|m| m["has_attachments"] == true))
        .or(page.first());
    let mut tour = Tour {
        inbox_messages: inbox["total"].as_u64().unwrap_or(0),
        uid: chosen.and_then(|m| m["uid"].as_u64()),
        attachment: None,
    };
    let Some(uid) = tour.uid else {
        return Ok(tour);
    };
    let message: Value = get(format!("/v1/mailboxes/INBOX/messages/{uid}"))
        .await?
        .json()
        .await?;
    if let Some(first) = message["attachments"].as_array().and_then(|a| a.first()) {
        let part = first["part_id"]
            .as_str()
            .context("attachment without part_id")?;
        let content = get(format!(
            "/v1/mailboxes/INBOX/messages/{uid}/attachments/{part}"
        ))
        .await?
        .bytes()
        .await?;
        ensure!(!content.is_empty(), "attachment {part} of {uid} is empty");
        let filename = first["filename"].as_str().unwrap_or("attachment.bin");
        tour.attachment = Some((part.to_owned(), filename.to_owned()));
    }
    Ok(tour)
}

fn print_welcome(base: &str, tour: &Tour) {
    let auth = r#"-H "Authorization: Bearer $TOKEN""#;
    let mut steps = format!(
        r#"
================================================================================
 imap-bridge demo is running: {base}

 Open the interactive API docs in a browser:   {base}/docs

 Or try it with curl (copy and paste into a shell; add `| jq` to pretty-print):

   # 1. Log in as {USER} / {PASSWORD}; keep the token in a shell variable
   TOKEN=$(curl -s -X POST {base}/v1/auth/login -H 'Content-Type: application/json' \
     -d '{{"username":"{USER}","password":"{PASSWORD}"}}' \
     | sed -E 's/.*"access_token":"([^"]+)".*/\1/')

   # 2. List mailboxes with their roles and counts
   curl -s {auth} {base}/v1/mailboxes

   # 3. List INBOX, newest first ({total} messages; follow next_cursor for more)
   curl -s {auth} '{base}/v1/mailboxes/INBOX/messages?limit=10'
"#,
        total = tour.inbox_messages,
    );
    if let Some(uid) = tour.uid {
        steps.push_str(&format!(
            r#"
   # 4. Open a message: headers, text, HTML and its attachment list
   curl -s {auth} {base}/v1/mailboxes/INBOX/messages/{uid}
"#
        ));
        if let Some((part, filename)) = &tour.attachment {
            let file = shell_quote(filename);
            steps.push_str(&format!(
                r#"
   # 5. Download its attachment
   curl -s {auth} -o {file} {base}/v1/mailboxes/INBOX/messages/{uid}/attachments/{part}
"#
            ));
        }
    }
    steps.push_str(
        "\n Stop with Ctrl-C. Mail is kept between runs; delete the Dovecot directory above to\n \
         start over.\n================================================================================\n",
    );
    println!("{steps}");
}

/// `s` as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
