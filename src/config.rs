//! Every setting of the bridge, read from the command line or the environment.
//!
//! One clap struct, so `imap-bridge --help` lists every setting with its environment name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

pub use crate::imap::transport::Security;
pub use crate::telemetry::LogFormat;

/// The bridge's settings.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "imap-bridge",
    version,
    about = "IMAP over HTTP: REST/JSON and server-sent events for any IMAP server"
)]
pub struct Config {
    /// Address the HTTP API listens on.
    #[arg(long, env = "IMAP_BRIDGE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of a separate listener that serves only `GET /metrics` (Prometheus), e.g.
    /// `0.0.0.0:9090` on an internal network. When set, the API port no longer serves
    /// `/metrics`; when unset, the API port does, without authentication.
    #[arg(long, env = "IMAP_BRIDGE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Host name of the IMAP server every user logs in to.
    #[arg(long, env = "IMAP_BRIDGE_IMAP_HOST", default_value = "localhost")]
    pub imap_host: String,

    /// Port of the IMAP server (default: 993 for tls, 143 otherwise).
    #[arg(long, env = "IMAP_BRIDGE_IMAP_PORT")]
    pub imap_port: Option<u16>,

    /// Connection security towards the IMAP server.
    #[arg(
        long,
        env = "IMAP_BRIDGE_IMAP_SECURITY",
        value_enum,
        default_value = "tls"
    )]
    pub imap_security: Security,

    /// Extra CA certificate(s) to trust for the IMAP server, PEM (added to the webpki roots).
    #[arg(long, env = "IMAP_BRIDGE_IMAP_CA_FILE")]
    pub imap_ca_file: Option<PathBuf>,

    /// Allow `plain` security towards a host that is not a loopback address.
    #[arg(long, env = "IMAP_BRIDGE_ALLOW_PLAINTEXT", default_value_t = false)]
    pub allow_plaintext: bool,

    /// Secret for signing tokens and sealing credentials (at least 32 bytes). When absent a
    /// random key is generated: tokens then die with the process and replicas cannot share them.
    #[arg(long, env = "IMAP_BRIDGE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Lifetime of an access token, in seconds.
    #[arg(long, env = "IMAP_BRIDGE_TOKEN_TTL", default_value_t = 3600)]
    pub token_ttl: u64,

    /// Earlier signing secrets, comma separated: tokens they signed (told apart by the JWT
    /// `kid`) are still accepted until they expire, so the secret can be rotated without
    /// logging everybody out. New tokens are always signed with `IMAP_BRIDGE_JWT_SECRET`.
    #[arg(
        long,
        env = "IMAP_BRIDGE_JWT_PREVIOUS_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub jwt_previous_secrets: Vec<String>,

    /// IMAP servers a caller may choose at login (`"server"` in the body), as `host:port`,
    /// comma separated; empty (the default) refuses every caller-chosen server.
    #[arg(long, env = "IMAP_BRIDGE_ALLOWED_SERVERS", value_delimiter = ',')]
    pub allowed_servers: Vec<String>,

    /// Login attempts that did not succeed (refused, timed out, failed upstream; those still
    /// running count too) per user name in `IMAP_BRIDGE_LOGIN_WINDOW` before further attempts
    /// get 429 without reaching the IMAP server.
    #[arg(long, env = "IMAP_BRIDGE_LOGIN_FAILURES_PER_USER", default_value_t = 5)]
    pub login_failures_per_user: u32,

    /// The same per client IP address (IPv6: per /64) in `IMAP_BRIDGE_LOGIN_WINDOW` before
    /// further attempts get 429.
    #[arg(long, env = "IMAP_BRIDGE_LOGIN_FAILURES_PER_IP", default_value_t = 20)]
    pub login_failures_per_ip: u32,

    /// The window, in seconds, over which login attempts are counted; also how long
    /// credentials the IMAP server refused are answered 401 without asking it again.
    #[arg(long, env = "IMAP_BRIDGE_LOGIN_WINDOW", default_value_t = 300)]
    pub login_window: u64,

    /// Take the client's address from the last `X-Forwarded-For` entry (set this only behind
    /// a proxy that writes that header); otherwise the TCP peer address is used.
    #[arg(long, env = "IMAP_BRIDGE_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Origins allowed to call the API from a browser, comma separated (none by default).
    #[arg(long, env = "IMAP_BRIDGE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Most pooled IMAP sessions per user; keep it below the server's per-user connection limit
    /// (Dovecot's `mail_max_userip_connections` is 10).
    #[arg(long, env = "IMAP_BRIDGE_POOL_MAX_PER_USER", default_value_t = 4)]
    pub pool_max_per_user: usize,

    /// Most IMAP connections per user: pooled sessions plus IDLE watchers for events, which get
    /// what the pool cannot use. Keep it below the server's per-user limit (Dovecot: 10).
    #[arg(
        long,
        env = "IMAP_BRIDGE_MAX_CONNECTIONS_PER_USER",
        default_value_t = 8
    )]
    pub max_connections_per_user: usize,

    /// Most IMAP sessions the bridge keeps open in total, all users together; at the cap a new
    /// session waits and logs out the least recently used idle session of another user.
    #[arg(long, env = "IMAP_BRIDGE_POOL_MAX_TOTAL", default_value_t = 2000)]
    pub pool_max_total: usize,

    /// Seconds an unused pooled session stays logged in before it is logged out.
    #[arg(long, env = "IMAP_BRIDGE_POOL_IDLE_TIMEOUT", default_value_t = 300)]
    pub pool_idle_timeout: u64,

    /// Seconds a request waits for a free pooled session, or for room under the total, before
    /// giving up with 503; while the user's sessions are still logging in, up to the connect
    /// timeout longer.
    #[arg(long, env = "IMAP_BRIDGE_POOL_WAIT_TIMEOUT", default_value_t = 10)]
    pub pool_wait_timeout: u64,

    /// Seconds allowed to connect to the IMAP server, including TLS and login. The default
    /// outlasts Dovecot's auth penalty (at most 15 s before a login from an address that failed
    /// recently, plus 2 s before a failure is answered), which every user of the bridge shares.
    #[arg(long, env = "IMAP_BRIDGE_IMAP_CONNECT_TIMEOUT", default_value_t = 20)]
    pub imap_connect_timeout: u64,

    /// Seconds a download may wait for the client to take its next chunk; a client that reads
    /// nothing for longer gets its response cut off and the IMAP session goes back to the pool.
    #[arg(long, env = "IMAP_BRIDGE_DOWNLOAD_STALL_TIMEOUT", default_value_t = 30)]
    pub download_stall_timeout: u64,

    /// Seconds allowed for one IMAP command; a session that exceeds it is discarded.
    #[arg(long, env = "IMAP_BRIDGE_IMAP_COMMAND_TIMEOUT", default_value_t = 30)]
    pub imap_command_timeout: u64,

    /// Memory for cached message summaries, and the headers and MIME structure of messages
    /// viewed, in MiB (they never change for a UID; flags are always read fresh). 0 disables
    /// the cache.
    #[arg(long, env = "IMAP_BRIDGE_CACHE_SIZE", default_value_t = 64)]
    pub cache_size: u64,

    /// Memory for thread lists and the message headers they are built from, in MiB (a header
    /// never changes for a UID; a list is kept with the mailbox state it was built at). 0
    /// disables the cache.
    #[arg(long, env = "IMAP_BRIDGE_THREAD_CACHE_SIZE", default_value_t = 16)]
    pub thread_cache_size: u64,

    /// Largest message accepted by `POST …/messages` (IMAP APPEND), in bytes; 413 beyond it.
    #[arg(long, env = "IMAP_BRIDGE_MAX_APPEND_SIZE", default_value_t = 25 * 1024 * 1024)]
    pub max_append_size: usize,

    /// Largest literal the IMAP server may announce, in bytes; a response announcing more ends
    /// its request with 502. At least 4 MiB (the largest text part the bridge asks for):
    /// downloads come in 256 KiB pieces, but a message's header is read whole (and inside
    /// ENVELOPE), so keep it above the largest message the server accepts.
    #[arg(
        long,
        env = "IMAP_BRIDGE_MAX_UPSTREAM_LITERAL",
        default_value_t = crate::imap::guard::DEFAULT_MAX_LITERAL
    )]
    pub max_upstream_literal: u64,

    /// Longest IMAP response, in bytes, not counting literal data; a longer one ends its
    /// request with 502. At least 64 KiB. SEARCH and SORT answers take about 8 bytes per
    /// message of the mailbox.
    #[arg(
        long,
        env = "IMAP_BRIDGE_MAX_UPSTREAM_LINE",
        default_value_t = crate::imap::guard::DEFAULT_MAX_LINE
    )]
    pub max_upstream_line: usize,

    /// Largest JSON request body, in bytes.
    #[arg(long, env = "IMAP_BRIDGE_MAX_JSON_SIZE", default_value_t = 256 * 1024)]
    pub max_json_size: usize,

    /// Seconds between re-issues of IMAP IDLE by event watchers (RFC 2177: under 29 minutes).
    #[arg(long, env = "IMAP_BRIDGE_IDLE_REISSUE", default_value_t = 25 * 60)]
    pub idle_reissue: u64,

    /// Seconds between NOOPs by which event watchers look for changes on servers without IDLE.
    #[arg(long, env = "IMAP_BRIDGE_POLL_INTERVAL", default_value_t = 15)]
    pub poll_interval: u64,

    /// Seconds between keep-alive comments on event streams.
    #[arg(long, env = "IMAP_BRIDGE_SSE_KEEPALIVE", default_value_t = 15)]
    pub sse_keepalive: u64,

    /// Most open event streams per user (429 beyond).
    #[arg(long, env = "IMAP_BRIDGE_SSE_MAX_PER_USER", default_value_t = 20)]
    pub sse_max_per_user: usize,

    /// Most open event streams in total (429 beyond).
    #[arg(long, env = "IMAP_BRIDGE_SSE_MAX_TOTAL", default_value_t = 10_000)]
    pub sse_max_total: usize,

    /// Change batches an event stream may fall behind before it gets `mailbox.reset`.
    #[arg(long, env = "IMAP_BRIDGE_SSE_QUEUE", default_value_t = 64)]
    pub sse_queue: usize,

    /// Most changes an event stream replays after `Last-Event-ID` (or one change batch
    /// holds); a longer gap gets `mailbox.reset` without fetching it.
    #[arg(long, env = "IMAP_BRIDGE_SSE_MAX_REPLAY", default_value_t = 1000)]
    pub sse_max_replay: usize,

    /// Seconds an IDLE watcher waits before checking (DONE, then IDLE again) that the IMAP
    /// server still answers; with the command timeout, how soon a dead server is noticed.
    #[arg(long, env = "IMAP_BRIDGE_IDLE_LIVENESS", default_value_t = 60)]
    pub idle_liveness: u64,

    /// Seconds an IDLE watcher keeps reconnecting to an unreachable IMAP server before it ends
    /// its event streams with `stream.end` (`upstream_unavailable`, with `retry:`).
    #[arg(long, env = "IMAP_BRIDGE_WATCHER_GIVE_UP", default_value_t = 300)]
    pub watcher_give_up: u64,

    /// Seconds the bridge keeps serving after SIGTERM with `/readyz` failing, so load
    /// balancers stop sending it new requests before it stops accepting connections
    /// (Kubernetes takes a few seconds to take a terminating pod out of its endpoints).
    #[arg(long, env = "IMAP_BRIDGE_SHUTDOWN_DELAY", default_value_t = 5)]
    pub shutdown_delay: u64,

    /// Seconds from SIGTERM to exit, at most: requests still in flight 2 s before it are cut
    /// off so that pooled sessions and IDLE watchers can log out in time. Must exceed
    /// `IMAP_BRIDGE_SHUTDOWN_DELAY` by at least 3; keep it below Kubernetes'
    /// `terminationGracePeriodSeconds` (30 by default).
    #[arg(long, env = "IMAP_BRIDGE_SHUTDOWN_TIMEOUT", default_value_t = 20)]
    pub shutdown_timeout: u64,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `imap_bridge=debug`.
    #[arg(long, env = "IMAP_BRIDGE_LOG", default_value = "info")]
    pub log: String,

    /// Log format.
    #[arg(
        long,
        env = "IMAP_BRIDGE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Print the OpenAPI document (as committed in `openapi/openapi.json`) and exit.
    #[arg(long)]
    pub print_openapi: bool,

    /// Ask the bridge serving on `IMAP_BRIDGE_LISTEN` (on loopback when that address is
    /// unspecified) for `/healthz` and exit 0 if it answers 200, 1 otherwise: the container's
    /// HEALTHCHECK, for images without a shell or curl.
    #[arg(long)]
    pub healthcheck: bool,
}

impl Config {
    /// Settings with every default, pointed at the given IMAP server; for tests and embedding.
    pub fn for_server(host: &str, port: u16, security: Security) -> Self {
        let mut config = Config::parse_from(["imap-bridge"]);
        config.imap_host = host.to_owned();
        config.imap_port = Some(port);
        config.imap_security = security;
        config
    }

    /// The IMAP port in effect.
    pub fn imap_port(&self) -> u16 {
        self.imap_port.unwrap_or(match self.imap_security {
            Security::Tls => 993,
            Security::Starttls | Security::Plain => 143,
        })
    }

    /// Idle time after which a pooled session is logged out.
    pub fn pool_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.pool_idle_timeout)
    }

    /// Time a request waits for a pooled session.
    pub fn pool_wait_timeout(&self) -> Duration {
        Duration::from_secs(self.pool_wait_timeout)
    }

    /// Time allowed for connect + TLS + login.
    pub fn imap_connect_timeout(&self) -> Duration {
        Duration::from_secs(self.imap_connect_timeout)
    }

    /// Interval between keep-alive comments on event streams.
    pub fn sse_keepalive(&self) -> Duration {
        Duration::from_secs(self.sse_keepalive.max(1))
    }

    /// Time between SIGTERM and closing the listener, with `/readyz` failing.
    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_secs(self.shutdown_delay)
    }

    /// Longest time between SIGTERM and exit.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout)
    }

    /// Time a download waits for its client to take the next chunk.
    pub fn download_stall_timeout(&self) -> Duration {
        Duration::from_secs(self.download_stall_timeout)
    }

    /// Time allowed for one command.
    pub fn imap_command_timeout(&self) -> Duration {
        Duration::from_secs(self.imap_command_timeout)
    }
}
