//! The `imap-bridge` binary: read the configuration, set up logging, serve until a signal.

use clap::Parser;
use imap_bridge::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
