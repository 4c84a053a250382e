//! The `imap-bridge` binary: read the configuration, set up logging, serve until a signal.

use clap::Parser;
use imap_bridge::config::Config;

/// Stack per runtime thread. imap-proto parses (and drops) nested lists recursively, and the
/// upstream guard (`imap::guard`) lets responses through up to 128 levels deep: about 0.7 MiB
/// of stack in a release build, 4.4 MiB in a debug one, more than the 2 MiB default there.
/// The rest is margin for nesting the guard cannot see (its one known gap, in SECURITY.md):
/// 32 MiB holds about 6,000 levels in a release build. The memory is only reserved, not
/// touched.
const THREAD_STACK: usize = 32 * 1024 * 1024;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK)
        .build()?
        .block_on(run())
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
