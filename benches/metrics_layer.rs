//! What metrics cost per request: the same in-process router, with and without the bridge's
//! request metrics layer, called back to back with `oneshot` (no sockets, a trivial handler, so
//! the difference is the layer: route label lookup, one counter, one histogram, the boxed
//! middleware future); and the per-command cost of IMAP accounting (one labelled counter and one
//! labelled histogram, as `imap/meter.rs` records them).
//!
//! Run with `cargo bench --bench metrics_layer`; `BENCH_ITERS` sets requests per round
//! (default 200,000). Prints the median of 7 alternating rounds.

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::middleware::Next;
use axum::routing::get;
use imap_bridge::telemetry::{self, names};
use tower::ServiceExt;

fn main() {
    let iterations: u32 = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        telemetry::metrics_handle();
        let plain = Router::new().route("/v1/mailboxes/{mailbox}/messages", get(|| async { "" }));
        let passing = plain
            .clone()
            .layer(axum::middleware::from_fn(|req, next: Next| next.run(req)));
        let metered = plain
            .clone()
            .layer(axum::middleware::from_fn(imap_bridge::http::metrics::track));
        let (mut without, mut empty, mut with) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..7 {
            without.push(per_request(&plain, iterations).await);
            empty.push(per_request(&passing, iterations).await);
            with.push(per_request(&metered, iterations).await);
        }
        let (without, empty, with) = (median(without), median(empty), median(with));
        println!(
            "request: {without:.0} ns without the metrics layer, {with:.0} ns with it: {:.0} ns \
             per request, of which {:.0} ns is middleware plumbing (an empty from_fn layer)",
            with - without,
            empty - without
        );

        let mut command = Vec::new();
        for _ in 0..7 {
            let started = Instant::now();
            for _ in 0..iterations {
                metrics::counter!(names::IMAP_COMMANDS, "command" => "UID FETCH", "outcome" => "ok")
                    .increment(1);
                metrics::histogram!(names::IMAP_COMMAND_DURATION, "command" => "UID FETCH")
                    .record(started.elapsed().as_secs_f64());
            }
            command.push(started.elapsed().as_nanos() as f64 / f64::from(iterations));
        }
        println!(
            "IMAP command accounting: {:.0} ns per command",
            median(command)
        );
    });
}

/// Mean nanoseconds per request over `n` requests.
async fn per_request(router: &Router, n: u32) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        let uri = format!("/v1/mailboxes/Box-{}/messages", i % 64);
        let response = router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert!(response.status().is_success());
    }
    started.elapsed().as_nanos() as f64 / f64::from(n)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}
