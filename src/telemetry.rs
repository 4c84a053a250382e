//! Logging and metrics set-up: human-readable or JSON log lines filtered by `IMAP_BRIDGE_LOG`,
//! and the process's Prometheus recorder with the names of every series the bridge records.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global tracing subscriber with the `IMAP_BRIDGE_LOG` filter `filter`,
/// writing to standard output.
pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    init_with_writer(filter, format, std::io::stdout)
}

/// Installs the global tracing subscriber, writing lines to `writer`.
///
/// JSON lines carry the fields of the span they were written in (`span`) and of every
/// enclosing span (`spans`): each line written while a request is handled carries
/// `span.request_id`, the request's `X-Request-Id`.
pub fn init_with_writer<W>(filter: &str, format: LogFormat, writer: W) -> anyhow::Result<()>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_new(filter).map_err(|e| anyhow::anyhow!("invalid IMAP_BRIDGE_LOG: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(writer);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("logging already initialised: {e}"))
}

/// Names of the series the bridge records. Labels take values from fixed sets only (route
/// templates, methods, status codes, IMAP command names, outcome kinds): never a user name,
/// mailbox name, UID or raw path, so the number of series stays bounded.
pub mod names {
    /// Counter `{route, method, status}`: HTTP requests answered. `route` is the route's
    /// template (`/v1/mailboxes/{mailbox}/messages`), or `unmatched`.
    pub const HTTP_REQUESTS: &str = "imap_bridge_http_requests_total";
    /// Histogram `{route, method}`: seconds until the response head was ready (so an event
    /// stream or a download counts its start, not its length).
    pub const HTTP_DURATION: &str = "imap_bridge_http_request_duration_seconds";
    /// Counter `{command, outcome}`: IMAP commands by verb (`SELECT`, `UID FETCH`) and
    /// outcome (`ok`, `no`, `bad`, `bye`, `io`, `timeout`, `protocol`, `cancelled`, `other`).
    pub const IMAP_COMMANDS: &str = "imap_bridge_imap_commands_total";
    /// Histogram `{command}`: seconds from sending a command to its tagged completion
    /// (pipelined commands share their exchange's time; IDLE is not timed).
    pub const IMAP_COMMAND_DURATION: &str = "imap_bridge_imap_command_duration_seconds";
    /// Counter `{kind}`: IMAP commands that did not end with OK, by the outcome's kind.
    pub const IMAP_ERRORS: &str = "imap_bridge_imap_errors_total";
    /// Counter `{kind}`: connections to the IMAP server that failed before they were logged
    /// in (`auth`, `unavailable`, `tls`, `timeout`, `io`, `protocol`, `other`).
    pub const IMAP_CONNECT_FAILURES: &str = "imap_bridge_imap_connect_failures_total";
    /// Counter `{purpose}`: IMAP sessions logged in, for the `pool` or an IDLE `watcher`.
    pub const IMAP_SESSIONS_OPENED: &str = "imap_bridge_imap_sessions_opened_total";
    /// Gauge: users with a session pool.
    pub const POOL_USERS: &str = "imap_bridge_pool_users";
    /// Gauge: pooled IMAP sessions open.
    pub const POOL_SESSIONS: &str = "imap_bridge_pool_sessions";
    /// Gauge: pooled IMAP sessions idle in their pools.
    pub const POOL_SESSIONS_IDLE: &str = "imap_bridge_pool_sessions_idle";
    /// Gauge: requests waiting for a pooled session.
    pub const POOL_WAITING: &str = "imap_bridge_pool_waiting";
    /// Histogram: seconds a request waited for a pooled session (a new session's login
    /// included).
    pub const POOL_WAIT: &str = "imap_bridge_pool_wait_seconds";
    /// Counter: requests that gave up waiting for a pooled session, or for room under the
    /// bridge's total (503).
    pub const POOL_WAIT_TIMEOUTS: &str = "imap_bridge_pool_wait_timeouts_total";
    /// Counter `{reason}`: pooled sessions closed: `idle` (unused past the idle timeout),
    /// `evicted` (logged out to make room under the bridge's total for another user's), or
    /// discarded as `unclean` (a command did not complete), `ended` (the server ended the
    /// session) or `check_failed` (the check before reuse failed).
    pub const POOL_SESSIONS_CLOSED: &str = "imap_bridge_pool_sessions_closed_total";
    /// Gauge: open event streams.
    pub const SSE_SUBSCRIBERS: &str = "imap_bridge_sse_subscribers";
    /// Counter `{type}`: events written to event streams (`message.new`, `message.flags`,
    /// `message.expunged`, `mailbox.reset`).
    pub const SSE_EVENTS_DELIVERED: &str = "imap_bridge_sse_events_delivered_total";
    /// Counter: streams that fell behind and were sent `mailbox.reset`.
    pub const SSE_RESETS: &str = "imap_bridge_sse_resets_total";
    /// Downloads cut off because the client stopped reading.
    pub const DOWNLOADS_STALLED: &str = "imap_bridge_downloads_stalled_total";
    /// Gauge: IDLE watchers running (one per user and watched mailbox).
    pub const IDLE_WATCHERS: &str = "imap_bridge_idle_watchers";
    /// Counter: IDLE watchers started.
    pub const IDLE_WATCHERS_STARTED: &str = "imap_bridge_idle_watchers_started_total";
    /// Counter: IDLE watchers that lost their connection and reconnect.
    pub const IDLE_WATCHER_RECONNECTS: &str = "imap_bridge_idle_watcher_reconnects_total";
    /// Counter: mailbox changes the watchers published.
    pub const EVENTS_PUBLISHED: &str = "imap_bridge_events_published_total";
    /// Counter `{outcome}`: `POST /v1/auth/login` by outcome: `success`, `failure` (wrong
    /// credentials), `throttled` (429, nothing sent upstream), `error` (upstream trouble).
    pub const LOGINS: &str = "imap_bridge_logins_total";
    /// Counter `{hit}`: summary cache lookups.
    pub const SUMMARY_CACHE_LOOKUPS: &str = "imap_bridge_summary_cache_lookups_total";
    /// Counter `{hit}`: search result cache lookups.
    pub const SEARCH_CACHE_LOOKUPS: &str = "imap_bridge_search_cache_lookups_total";
    /// Counter `{hit}`: thread list cache lookups.
    pub const THREAD_CACHE_LOOKUPS: &str = "imap_bridge_thread_cache_lookups_total";
    /// Counter `{source}`: message previews fetched (not taken from the summary cache): from
    /// the server's PREVIEW (`server`), or read from the start of the text part (`body`).
    pub const PREVIEWS_FETCHED: &str = "imap_bridge_previews_fetched_total";
    /// Gauge `{version}`: always 1; the build's version as a label.
    pub const BUILD_INFO: &str = "imap_bridge_build_info";
}

/// Buckets for request and command latencies, in seconds: a warm request takes about a
/// millisecond, a cold one (login, SELECT of a large folder) tens to hundreds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for pool waits, in seconds: a free session is handed out in microseconds, a new one
/// costs a login, and a busy user's request waits up to `IMAP_BRIDGE_POOL_WAIT_TIMEOUT`.
const POOL_WAIT_BUCKETS: &[f64] = &[
    0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder, installed on first use.
///
/// A process has one global recorder, while a process may build many bridges (tests, or an
/// application embedding the bridge): the first call installs it, later calls return the same
/// handle. When another recorder was installed first, the series go there and this handle
/// renders an empty exposition.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(names::POOL_WAIT.into()), POOL_WAIT_BUCKETS)
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        match metrics::set_global_recorder(recorder) {
            Ok(()) => describe(),
            Err(e) => tracing::warn!(error = %e, "another metrics recorder is installed; /metrics stays empty"),
        }
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no metrics upkeep thread; histograms drain at each scrape only");
        }
        handle
    })
}

/// HELP lines for every series, and the build info.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    use names::*;
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template, method and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time until the response head was ready, by route template and method."
    );
    describe_counter!(IMAP_COMMANDS, "IMAP commands by verb and outcome.");
    describe_histogram!(
        IMAP_COMMAND_DURATION,
        Unit::Seconds,
        "Time from sending an IMAP command to its tagged completion, by verb."
    );
    describe_counter!(
        IMAP_ERRORS,
        "IMAP commands that did not end with OK, by kind."
    );
    describe_counter!(
        IMAP_CONNECT_FAILURES,
        "Connections to the IMAP server that failed before login completed, by kind."
    );
    describe_counter!(
        IMAP_SESSIONS_OPENED,
        "IMAP sessions logged in, for the pool or an IDLE watcher."
    );
    describe_gauge!(POOL_USERS, "Users with a session pool.");
    describe_gauge!(POOL_SESSIONS, "Pooled IMAP sessions open.");
    describe_gauge!(
        POOL_SESSIONS_IDLE,
        "Pooled IMAP sessions idle in their pools."
    );
    describe_gauge!(POOL_WAITING, "Requests waiting for a pooled session.");
    describe_histogram!(
        POOL_WAIT,
        Unit::Seconds,
        "Time a request waited for a pooled session."
    );
    describe_counter!(
        POOL_WAIT_TIMEOUTS,
        "Requests that gave up waiting for a pooled session."
    );
    describe_counter!(
        POOL_SESSIONS_CLOSED,
        "Pooled IMAP sessions closed, by reason."
    );
    describe_gauge!(SSE_SUBSCRIBERS, "Open event streams.");
    describe_counter!(
        SSE_EVENTS_DELIVERED,
        "Events written to event streams, by type."
    );
    describe_counter!(
        SSE_RESETS,
        "Event streams sent mailbox.reset because they fell behind or missed more than a replay may hold."
    );
    describe_counter!(
        DOWNLOADS_STALLED,
        "Downloads cut off because the client stopped reading; their IMAP sessions were released."
    );
    describe_gauge!(IDLE_WATCHERS, "IDLE watchers running.");
    describe_counter!(IDLE_WATCHERS_STARTED, "IDLE watchers started.");
    describe_counter!(
        IDLE_WATCHER_RECONNECTS,
        "IDLE watchers that lost their connection."
    );
    describe_counter!(
        EVENTS_PUBLISHED,
        "Mailbox changes published by IDLE watchers."
    );
    describe_counter!(LOGINS, "Logins by outcome.");
    describe_counter!(SUMMARY_CACHE_LOOKUPS, "Message summary cache lookups.");
    describe_counter!(SEARCH_CACHE_LOOKUPS, "Search result cache lookups.");
    describe_counter!(THREAD_CACHE_LOOKUPS, "Thread list cache lookups.");
    describe_counter!(
        PREVIEWS_FETCHED,
        "Message previews fetched, by source (server PREVIEW or text part)."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version as a label.");
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Adds one to a gauge while alive: a running task or an open stream.
pub struct GaugeGuard(metrics::Gauge);

impl GaugeGuard {
    /// Increments `gauge` until the guard is dropped.
    pub fn hold(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
