//! The `imap-bridge` binary: read the configuration, set up logging, serve until a signal.

use std::time::Duration;

use clap::Parser;
use imap_bridge::config::Config;

/// Stack per runtime thread. imap-proto parses (and drops) BODYSTRUCTURE recursively, so a
/// deeply nested message from the server needs more than the 2 MiB default; the memory is only
/// reserved, not touched.
const THREAD_STACK: usize = 32 * 1024 * 1024;

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
    imap_bridge::telemetry::init(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "imap-bridge listening");
    imap_bridge::serve(config, listener, imap_bridge::shutdown_signal()).await
}
