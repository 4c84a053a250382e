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
//!   Dovecot, prints where to point a browser and the README's walk-through ("Try it with
//!   curl") with the address it listens on, and runs until Ctrl-C or SIGTERM, then stops the
//!   bridge and Dovecot.
//!
//! Every other `IMAP_BRIDGE_*` setting is honoured too, except the IMAP server, which is always
//! the demo's own. `IMAP_BRIDGE_JWT_SECRET` defaults to a fixed demo secret, so tokens survive a
//! restart of the demo, and `IMAP_BRIDGE_SHUTDOWN_DELAY` to 0, since no load balancer needs it.
//!
//! `--smoke` (or `DEMO_SMOKE=1`) proves the demo works without touching the demo data: it runs
//! everything against a throw-away Dovecot seeded the same way, on an ephemeral port, runs the
//! README's walk-through there exactly as written and checks every answer against what the
//! README says it shows (`tests/common/walkthrough.rs`), prints `demo smoke ok` and exits.

#[path = "../tests/common/corpus.rs"]
mod corpus;
#[path = "../tests/common/demo_mail.rs"]
mod demo_mail;
#[path = "../tests/common/dovecot.rs"]
mod dovecot;
#[path = "../tests/common/walkthrough.rs"]
mod walkthrough;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use dovecot::{Dovecot, DovecotOptions};
use imap_bridge::config::{Config, Security};
use tokio::net::TcpListener;

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

/// Creates the demo user and seeds the mailbox, unless that was done before.
fn prepare_mail(dovecot: &Dovecot) {
    let marker = dovecot.dir().join(SEEDED_MARKER);
    if marker.exists() {
        return;
    }
    println!("Seeding the demo mailbox ...");
    demo_mail::seed(dovecot);
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

    if smoke {
        let checked = tokio::task::spawn_blocking(move || smoke_walkthrough(&base)).await;
        let _ = stop.send(());
        server.await??;
        checked??;
        println!("demo smoke ok");
        return Ok(());
    }
    print_welcome(&base)?;
    // Keeps serving until Ctrl-C or SIGTERM; `stop` stays alive until then.
    let served = server.await?;
    drop(stop);
    served
}

/// Runs the README's walk-through against the bridge at `base` and checks what it shows.
fn smoke_walkthrough(base: &str) -> anyhow::Result<()> {
    let report = walkthrough::run(base).map_err(anyhow::Error::msg)?;
    let shown = walkthrough::check(&report).map_err(anyhow::Error::msg)?;
    println!(
        "README walk-through: {} requests, each answered as the README says; saved {}",
        report.exchanges.len(),
        shown.saved_file.0
    );
    Ok(())
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

fn print_welcome(base: &str) -> anyhow::Result<()> {
    let steps = walkthrough::script_for(base).map_err(anyhow::Error::msg)?;
    let rule = "=".repeat(80);
    println!(
        "\n{rule}\nimap-bridge demo is running: {base}\n\n\
         Open the interactive API docs in a browser: {base}/docs\n\n\
         Or try it with curl: paste these steps (README.md, \"Try it with curl\") into a shell\n\
         in the repository's root; docs/api.md explains the API.\n{rule}"
    );
    print!("{steps}");
    println!(
        "{rule}\nStop with Ctrl-C. Mail is kept between runs; delete the Dovecot directory above\n\
         to start over.\n{rule}"
    );
    Ok(())
}
