//! What the bridge remembers per key — logged-out tokens, used EventSource tickets, login
//! attempt counters — stays within a fixed amount of memory however many distinct keys a flood
//! brings, and forgets each entry by itself when it expires (`auth::tests`,
//! `http::throttle::tests`).
//!
//! One test on purpose: it measures the growth of the process's resident memory while each
//! table takes a million distinct keys, and tests running beside it in the same process would
//! blur that.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use imap_bridge::auth::{MAX_REVOKED, MAX_USED_TICKETS, SpentIds, TokenClaims, TokenService};
use imap_bridge::http::throttle::{LoginThrottle, MAX_KEYS};
use imap_bridge::imap::Credentials;

const KEYS: u64 = 1_000_000;

/// The process's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[test]
fn a_million_distinct_keys_stay_within_bounded_memory() {
    let started = Instant::now();
    let mut report = Vec::new();

    // Logouts: every token a different one, all still valid for an hour.
    let tokens = TokenService::new(&[7u8; 32], &[] as &[&[u8]], Duration::from_secs(3600))
        .expect("a valid secret");
    let victim = tokens.issue(&Credentials::password("victim", "password"));
    let victim_claims = tokens.verify(&victim.token).expect("valid");
    tokens.revoke(&victim_claims);
    let before = rss();
    // Issued a second ago, an hour's lifetime: as a flood of logins and logouts would leave.
    let expires_at = now() + 3600 - 1;
    for i in 0..KEYS {
        tokens.revoke(&TokenClaims {
            subject: "flood".into(),
            token_id: format!("{i:032x}"),
            expires_at,
            parent: None,
            session_expires_at: expires_at,
            credentials: Credentials::password("flood", "x"),
            server: None,
        });
    }
    let revoked = tokens.revoked_count();
    let grew = rss().saturating_sub(before);
    report.push(format!(
        "revoked tokens: {KEYS} distinct, {revoked} held (cap {MAX_REVOKED}), RSS +{:.1} MiB",
        mib(grew)
    ));
    assert!(revoked <= MAX_REVOKED);
    assert!(
        tokens.verify(&victim.token).is_err(),
        "a token logged out before the flood stays logged out"
    );
    let after_flood = tokens.issue(&Credentials::password("later", "password"));
    assert!(
        tokens.verify(&after_flood.token).is_ok(),
        "a token issued after the flood works"
    );
    assert!(grew < 64 << 20, "{}", report.join("\n"));

    // Used tickets: the table a flood of EventSource connections fills.
    let tickets = SpentIds::new(MAX_USED_TICKETS);
    let before = rss();
    for i in 0..KEYS {
        assert!(tickets.spend(&format!("{i:032x}"), now() + 60));
    }
    let held = tickets.len();
    let grew = rss().saturating_sub(before);
    report.push(format!(
        "used tickets: {KEYS} distinct, {held} held (cap {MAX_USED_TICKETS}), RSS +{:.1} MiB",
        mib(grew)
    ));
    assert!(held <= MAX_USED_TICKETS);
    assert!(grew < 64 << 20, "{}", report.join("\n"));

    // Login attempts: a million user names, each from its own address.
    let throttle = LoginThrottle::new(5, 20, Duration::from_secs(300));
    let before = rss();
    for i in 0..KEYS {
        let address = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + u32::try_from(i).expect("u32")));
        drop(
            throttle
                .begin(&format!("user-{i}@example.com"), Some(address))
                .expect("a first attempt"),
        );
    }
    let held = throttle.keys();
    let grew = rss().saturating_sub(before);
    report.push(format!(
        "login counters: {} distinct keys ({KEYS} user names, {KEYS} addresses), {held} held \
         (cap {MAX_KEYS}), RSS +{:.1} MiB",
        2 * KEYS,
        mib(grew)
    ));
    assert!(held <= MAX_KEYS);
    assert!(grew < 64 << 20, "{}", report.join("\n"));

    eprintln!("{}\n({:.1?})", report.join("\n"), started.elapsed());
}
