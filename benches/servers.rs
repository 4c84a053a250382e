//! Every server profile of the cross-server suite (`tests/common/servers.rs`: Dovecot as it
//! comes, Dovecot advertising what Gmail, Microsoft 365, a minimal `IMAP4rev1 IDLE` or a bare
//! `IMAP4rev1` server does, and Cyrus), each with the bridge in front of it and a direct IMAP
//! client beside it, measured in one run.
//!
//! Run with `cargo bench --bench servers` (release build; `scripts/bench` runs it too).
//! `BENCH_ITERS` sets the warm-page samples per side (default 100); delivery to event takes a
//! fifth of that (default 20).
//!
//! | case | bridge | direct |
//! | --- | --- | --- |
//! | warm page | `GET /v1/mailboxes/INBOX/messages?limit=50&preview=false` on a folder of 1,000 messages, the summary cache off (`IMAP_BRIDGE_CACHE_SIZE=0`) | `NOOP`, `STATUS`, `FETCH <n-49>:* (summary items)` pipelined over TLS |
//! | delivery → event | `message.new` on `GET /v1/events?mailbox=INBOX` | `EXISTS` in IDLE (on the bare profile, which has no IDLE: the NOOP of a client polling as often as the bridge, every second) |
//!
//! Both clocks of delivery to event start when the delivery returns: a Maildir file written for
//! Dovecot, an APPEND completed for Cyrus. Dovecot tells IDLE clients after a fixed 500 ms;
//! Cyrus's `idled` within milliseconds; the bare profile is polled every second (the bench sets
//! `IMAP_BRIDGE_POLL_INTERVAL=1`, the default is 15 s).
//!
//! Pages are asked for without previews, whose source differs by server (Dovecot's `PREVIEW`,
//! else a read of each text part): `benches/threads.rs` measures pages with previews on a server
//! with `PREVIEW` and on one without, each against a direct fetch of the same data.

mod common {
    #![allow(dead_code)]
    #[path = "../../tests/common/bridge.rs"]
    pub mod bridge;
    #[path = "../../tests/common/corpus.rs"]
    pub mod corpus;
    #[path = "../../tests/common/cyrus.rs"]
    pub mod cyrus;
    #[path = "../../tests/common/dovecot.rs"]
    pub mod dovecot;
    #[path = "../../tests/common/servers.rs"]
    pub mod servers;
}
#[path = "common/direct.rs"]
mod direct;

use std::time::{Duration, Instant};

use anyhow::Context;
use common::bridge::{PASSWORD, USER};
use common::servers::{Profile, ServerBridge};
use direct::{Direct, PageOrder, SUMMARY_ITEMS_NO_PREVIEW};
use futures::StreamExt;
use serde_json::Value;

const PAGE: u32 = 50;
const FOLDER: usize = 1_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let slow = (iterations / 5).max(3);
    println!(
        "servers: warm page of {PAGE} from {FOLDER} messages ({iterations} samples per side), \
         delivery to event ({slow} samples); medians in ms"
    );
    println!(
        "| profile | warm page, bridge | warm page, direct | ratio | delivery → event, bridge | delivery → notification, direct |"
    );
    println!("|---|---|---|---|---|---|");
    for profile in Profile::ALL {
        let row = measure(profile, iterations, slow)
            .await
            .with_context(|| format!("profile {}", profile.name()))?;
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} |",
            profile.name(),
            row.page_bridge,
            row.page_direct,
            row.page_bridge / row.page_direct,
            row.event_bridge,
            row.event_direct,
        );
    }
    Ok(())
}

struct Row {
    page_bridge: f64,
    page_direct: f64,
    event_bridge: f64,
    event_direct: f64,
}

async fn measure(profile: Profile, iterations: usize, slow: usize) -> anyhow::Result<Row> {
    let bridge = ServerBridge::start_with(profile, |c| c.cache_size = 0).await;
    let bulk: Vec<Vec<u8>> = common::corpus::bulk(FOLDER, 1).collect();
    let server = &bridge.server;
    tokio::task::block_in_place(|| server.deliver_many("INBOX", bulk));
    let token = bridge.login().await;
    let (addr, ca) = bridge.server.tls_endpoint();
    let tls = imap_bridge::imap::transport::tls_config(Some(&ca))?;
    let mut direct = Direct::connect(tls.clone(), addr, USER, PASSWORD).await?;
    direct.select("INBOX", profile.has("CONDSTORE")).await?;

    let page_path = format!("/v1/mailboxes/INBOX/messages?limit={PAGE}&preview=false");
    let mut bridge_ms = Vec::new();
    let mut direct_ms = Vec::new();
    for i in 0..iterations + 5 {
        let started = Instant::now();
        let res = bridge
            .http
            .get(bridge.url(&page_path))
            .bearer_auth(&token)
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "page: {}", res.status());
        let body = res.bytes().await?;
        let bridge_time = started.elapsed();
        let started = Instant::now();
        let uids = direct
            .page(PageOrder::Arrival, PAGE, &SUMMARY_ITEMS_NO_PREVIEW)
            .await?;
        let direct_time = started.elapsed();
        if i == 0 {
            let page: Value = serde_json::from_slice(&body)?;
            let listed = page["messages"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(
                listed == PAGE as usize && uids.len() == PAGE as usize,
                "both sides return a page: bridge {listed}, direct {}",
                uids.len()
            );
        }
        if i >= 5 {
            bridge_ms.push(ms(bridge_time));
            direct_ms.push(ms(direct_time));
        }
    }

    let (event_bridge, event_direct) = delivery_to_event(&bridge, &token, &mut direct, slow)
        .await
        .context("delivery to event")?;
    direct.logout().await?;
    Ok(Row {
        page_bridge: median(bridge_ms),
        page_direct: median(direct_ms),
        event_bridge,
        event_direct,
    })
}

async fn delivery_to_event(
    bridge: &ServerBridge,
    token: &str,
    direct: &mut Direct,
    samples: usize,
) -> anyhow::Result<(f64, f64)> {
    use eventsource_stream::Eventsource;
    let res = bridge
        .http
        .get(bridge.url("/v1/events?mailbox=INBOX"))
        .bearer_auth(token)
        // The client's 60 s bound covers reading the whole body: the stream lasts as long as
        // the samples do (each at most 10 s and a pause).
        .timeout(Duration::from_secs(30 + 11 * samples as u64))
        .send()
        .await?;
    anyhow::ensure!(res.status().is_success(), "events: {}", res.status());
    let mut events = res.bytes_stream().eventsource();
    let idle = bridge.has("IDLE");
    // The watcher connects after the stream opens.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut bridge_ms = Vec::new();
    let mut direct_ms = Vec::new();
    for i in 0..samples {
        // Both sides back in IDLE (or just polled), so a delivery is news to both.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if idle {
            direct.start_idle().await?;
        }
        let subject = format!("latency probe {i}");
        let raw = format!(
            "From: probe@example.test\r\nSubject: {subject}\r\n\
             Message-ID: <probe-{i}@example.test>\r\n\r\nprobe\r\n"
        );
        let server = &bridge.server;
        tokio::task::block_in_place(|| server.deliver("INBOX", raw.as_bytes(), "", None));
        let delivered = Instant::now();
        let direct_sees = async {
            if idle {
                direct.wait_exists().await?;
            } else {
                // A client without IDLE polls; as often as the bridge does here.
                let before = direct.exists();
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    direct.exchange(&["NOOP".into()], |_| {}).await?;
                    if direct.exists() > before {
                        break;
                    }
                }
            }
            anyhow::Ok(delivered.elapsed())
        };
        let bridge_sees = async {
            loop {
                let event = events.next().await.context("the event stream ended")??;
                if event.event == "message.new" {
                    let data: Value = serde_json::from_str(&event.data)?;
                    if data["subject"] == subject.as_str() {
                        return anyhow::Ok(delivered.elapsed());
                    }
                }
            }
        };
        let (d, b) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::try_join!(direct_sees, bridge_sees)
        })
        .await
        .context("no notification within 10 s")??;
        direct_ms.push(ms(d));
        bridge_ms.push(ms(b));
    }
    Ok((median(bridge_ms), median(direct_ms)))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
