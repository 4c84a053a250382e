//! The `imap-bridge` binary: read the configuration, set up logging, serve until a signal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use imap_bridge::config::Config;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// Stack per runtime thread. imap-proto parses (and drops) nested lists recursively, and the
/// upstream guard (`imap::guard`) lets responses through up to 128 levels deep: about 0.7 MiB
/// of stack in a release build, 4.4 MiB in a debug one, more than the 2 MiB default there.
/// The rest is margin for nesting the guard cannot see (its one known gap, in SECURITY.md):
/// 32 MiB holds about 6,000 levels in a release build. The memory is only reserved, not
/// touched.
const THREAD_STACK: usize = 32 * 1024 * 1024;

/// How long `--healthcheck` waits for the answer; below the image's HEALTHCHECK timeout, so a
/// hung bridge is reported by this process rather than by Docker killing it.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long exit waits for tasks still running after the shutdown (connections cut off at its
/// deadline, a DNS look-up on a blocking thread); they are abandoned after it.
const EXIT_GRACE: Duration = Duration::from_millis(500);

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK)
        .build()?;
    let result = runtime.block_on(run());
    runtime.shutdown_timeout(EXIT_GRACE);
    result
}

async fn run() -> anyhow::Result<()> {
    let config = Config::parse();
    if config.print_openapi {
        print!(
            "{}",
            imap_bridge::http::docs::render(&imap_bridge::http::openapi())
        );
        return Ok(());
    }
    if config.healthcheck {
        return healthcheck(config.listen).await;
    }
    imap_bridge::telemetry::init(&config.log, config.log_format)?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "imap-bridge listening");
    imap_bridge::serve(config, listener, imap_bridge::shutdown_signal()).await
}

/// `GET /healthz` from the bridge listening on `listen`; an error (exit status 1) unless it
/// answers 200. Written against the socket because the image has no HTTP client to spare.
async fn healthcheck(listen: SocketAddr) -> anyhow::Result<()> {
    let target = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    };
    let status_line = tokio::time::timeout(HEALTHCHECK_TIMEOUT, async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        let request =
            format!("GET /healthz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await?;
        Ok::<_, std::io::Error>(line)
    })
    .await
    .with_context(|| {
        format!("no answer from http://{target}/healthz within {HEALTHCHECK_TIMEOUT:?}")
    })?
    .with_context(|| format!("cannot ask http://{target}/healthz"))?;
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    anyhow::ensure!(
        status == "200",
        "http://{target}/healthz answered {:?}",
        status_line.trim_end()
    );
    Ok(())
}
