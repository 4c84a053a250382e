//! A broken or hostile IMAP server cannot crash or exhaust the bridge: responses beyond the
//! upstream guard's limits (nesting that would overflow the parser's stack, `INTERNALDATE NIL`
//! that would panic it, literals and lines that would fill memory) fail that one request with
//! 502 and discard its session, and the bridge goes on serving; mod-sequences beyond RFC 7162's
//! 63 bits do not break delta sync. The server is Dovecot behind a proxy that answers chosen
//! commands itself (`common::hostile::HostileProxy`).

mod common;

use std::time::Duration;

use common::bridge::{Link, TestBridge, USER, assert_problem, config_for};
use common::dovecot::Dovecot;
use common::hostile::{HostileProxy, Takeover};
use regex::Regex;
use reqwest::StatusCode;
use serde_json::json;

/// A plain message with `subject`.
fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Ann <ann@example.test>\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\
         Date: Mon, 06 May 2024 12:00:00 +0000\r\nMessage-ID: <{subject}@example.test>\r\n\r\n\
         The body of {subject}.\r\n"
    )
    .into_bytes()
}

/// Dovecot with `subjects` in INBOX (UIDs 1, 2, …) and a bridge reaching it through a proxy;
/// `adjust` tunes the bridge's settings.
async fn bridge_behind(
    subjects: &[&str],
    takeovers: Vec<Takeover>,
    rewrites: Vec<(Regex, String)>,
    adjust: impl FnOnce(&mut imap_bridge::config::Config),
) -> (TestBridge, HostileProxy) {
    let messages: Vec<Vec<u8>> = subjects.iter().map(|s| message(s)).collect();
    let dovecot = tokio::task::spawn_blocking(move || {
        let dovecot = Dovecot::start();
        dovecot.add_user(USER, common::bridge::PASSWORD);
        dovecot.deliver_many(USER, "INBOX", messages);
        dovecot
    })
    .await
    .expect("dovecot");
    let proxy = HostileProxy::start(dovecot.imap_addr(), takeovers, rewrites).await;
    let mut config = config_for(&dovecot, Link::Plain);
    config.imap_port = Some(proxy.addr.port());
    adjust(&mut config);
    (TestBridge::serve(dovecot, config).await, proxy)
}

/// A FETCH response whose BODYSTRUCTURE nests `levels` multiparts.
fn deeply_nested(uid: u32, levels: usize) -> Vec<u8> {
    let mut out = format!("* {uid} FETCH (UID {uid} BODYSTRUCTURE ").into_bytes();
    out.extend(std::iter::repeat_n(b'(', levels));
    out.extend_from_slice(b"\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)");
    for _ in 1..levels {
        out.extend_from_slice(b" \"mixed\")");
    }
    out.extend_from_slice(b")\r\n");
    out
}

/// Waits until the proxy has seen `n` of the bridge's connections end.
async fn wait_closed(proxy: &HostileProxy, n: usize) {
    for _ in 0..250 {
        if proxy.closed() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the bridge closed {} connections, expected {n}",
        proxy.closed()
    );
}

#[tokio::test]
async fn hostile_responses_fail_one_request_with_502_and_the_bridge_keeps_serving() {
    const LINE_LIMIT: usize = 64 * 1024;
    let takeovers = vec![
        // The message view of UID 2 gets a BODYSTRUCTURE 10,000 levels deep: parsed, it would
        // overflow any thread's stack and abort the process.
        Takeover::new(r"^\S+ UID FETCH 2 \(UID FLAGS INTERNALDATE", |tag| {
            let mut out = deeply_nested(2, 10_000);
            out.extend_from_slice(format!("{tag} OK Fetch completed.\r\n").as_bytes());
            out
        }),
        // UID 3: INTERNALDATE NIL, on which imap-proto 0.17 panics.
        Takeover::new(r"^\S+ UID FETCH 3 \(UID FLAGS INTERNALDATE", |tag| {
            format!(
                "* 3 FETCH (UID 3 FLAGS () INTERNALDATE NIL RFC822.SIZE 10)\r\n\
                 {tag} OK Fetch completed.\r\n"
            )
            .into_bytes()
        }),
        // UID 4: a header announced one byte beyond the default literal limit (32 MiB), which
        // async-imap would allocate before the first byte of it arrives.
        Takeover::new(r"^\S+ UID FETCH 4 \(UID FLAGS INTERNALDATE", |_| {
            let mut out = b"* 4 FETCH (UID 4 BODY[HEADER] {33554433}\r\n".to_vec();
            out.extend(std::iter::repeat_n(b'x', 4096));
            out
        }),
        // UID 5: FLAGS holding a string, which imap-proto cannot parse as flags. Its catch-all
        // then skips the list to its first `)`, inside the string, and reads on from there:
        // INTERNALDATE NIL, which the guard took for string content. The parser panics; the
        // bridge contains it.
        Takeover::new(r"^\S+ UID FETCH 5 \(UID FLAGS INTERNALDATE", |tag| {
            format!(
                "* 5 FETCH (UID 5 FLAGS (\\Seen \"a) INTERNALDATE NIL\") RFC822.SIZE 10)\r\n\
                 {tag} OK Fetch completed.\r\n"
            )
            .into_bytes()
        }),
        // A search answered with one endless line of UIDs.
        Takeover::new(r"^\S+ UID (SEARCH|SORT) .*endless", |tag| {
            let mut out = b"* SEARCH".to_vec();
            while out.len() <= LINE_LIMIT {
                out.extend_from_slice(b" 1");
            }
            out.extend_from_slice(format!("\r\n{tag} OK Search completed.\r\n").as_bytes());
            out
        }),
    ];
    let subjects = [
        "first",
        "deep",
        "internaldate",
        "huge header",
        "catch-all",
        "last",
    ];
    let (bridge, proxy) = bridge_behind(&subjects, takeovers, Vec::new(), |config| {
        config.max_upstream_line = LINE_LIMIT;
    })
    .await;
    let token = bridge.login().await;

    let (status, first) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages/1")
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["subject"], "first");

    let hostile = [
        (
            "/v1/mailboxes/INBOX/messages/2",
            "nested deeper than 128 levels",
        ),
        ("/v1/mailboxes/INBOX/messages/3", "INTERNALDATE NIL"),
        (
            "/v1/mailboxes/INBOX/messages/4",
            "literal of more than 33554432 bytes",
        ),
        (
            "/v1/mailboxes/INBOX/messages/5",
            "did not accept or answer the command as expected",
        ),
        (
            "/v1/mailboxes/INBOX/messages?subject=endless",
            "line longer than 65536 bytes",
        ),
    ];
    for (round, (path, reason)) in hostile.into_iter().enumerate() {
        let refused = bridge.get_json(&token, path).await;
        assert_problem(&refused, StatusCode::BAD_GATEWAY, "upstream_rejected", path);
        let detail = refused.1["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(reason), "{path}: {detail}");
        assert_eq!(proxy.taken_over(), round + 1, "{path} reached the server");

        // The bridge goes on serving the same user, on a fresh session: the one that read
        // the hostile response is closed, never used again.
        let (status, body) = bridge.get_json(&token, "/v1/mailboxes").await;
        assert_eq!(status, StatusCode::OK, "after {path}: {body}");
        wait_closed(&proxy, round + 1).await;
        let (status, last) = bridge
            .get_json(&token, "/v1/mailboxes/INBOX/messages/6")
            .await;
        assert_eq!(status, StatusCode::OK, "after {path}: {last}");
        assert_eq!(last["subject"], "last");
    }
    // Nothing else failed on the way: the pages and the other messages read normally.
    let (status, page) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?limit=10")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(6));
}

/// Every HIGHESTMODSEQ and MODSEQ Dovecot sends becomes 2^64 - 1: a 20-digit number that no
/// RFC 7162 server may send (mod-sequences are below 2^63), and that a state token cannot
/// carry.
fn broken_mod_sequences() -> Vec<(Regex, String)> {
    vec![
        (
            Regex::new(r"HIGHESTMODSEQ \d+").expect("regex"),
            "HIGHESTMODSEQ 18446744073709551615".to_owned(),
        ),
        (
            Regex::new(r"MODSEQ \(\d+\)").expect("regex"),
            "MODSEQ (18446744073709551615)".to_owned(),
        ),
    ]
}

#[tokio::test]
async fn delta_sync_survives_a_server_whose_mod_sequences_break_rfc_7162() {
    // The bridge treats such a mailbox as one without mod-sequences.
    let (bridge, _proxy) = bridge_behind(
        &["one", "two", "three"],
        Vec::new(),
        broken_mod_sequences(),
        |_| {},
    )
    .await;
    let token = bridge.login().await;

    let (status, page) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let state = page["state"].as_str().expect("state").to_owned();

    // Another client flags message 2 and expunges message 3, straight on Dovecot.
    let mut imap = bridge.imap().await;
    imap.store("INBOX", "2", "+FLAGS (\\Flagged)").await;
    imap.expunge("INBOX", 3).await;

    let (status, changes) = bridge
        .get_json(
            &token,
            &format!("/v1/mailboxes/INBOX/changes?since={state}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the bridge's own state: {changes}");
    // Without usable mod-sequences every message the client knows is reported, with its
    // flags now: more than changed, never less.
    let updated = changes["updated"].as_array().expect("updated");
    let flagged = updated
        .iter()
        .find(|u| u["uid"] == 2)
        .unwrap_or_else(|| panic!("message 2 reported: {changes}"));
    assert!(
        flagged["flags"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("\\Flagged"))),
        "{changes}"
    );
    assert_eq!(changes["destroyed"], json!([3]), "{changes}");

    // The states carry no mod-sequence (Dovecot's own would be above 0), and the next one
    // works as well.
    for token_state in [
        state.as_str(),
        changes["state"].as_str().expect("next state"),
    ] {
        assert_eq!(token_state.split('.').nth(2), Some("0"), "{token_state}");
    }
    let next = changes["state"].as_str().expect("next state");
    let (status, again) = bridge
        .get_json(&token, &format!("/v1/mailboxes/INBOX/changes?since={next}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
}

#[tokio::test]
async fn events_from_a_server_whose_mod_sequences_break_rfc_7162_say_reset() {
    // Without usable mod-sequences the changes cannot be told one by one: an expunge would go
    // unreported. The stream says `mailbox.reset` instead, and the client lists again.
    let (bridge, _proxy) =
        bridge_behind(&["one", "two"], Vec::new(), broken_mod_sequences(), |_| {}).await;
    let token = bridge.login().await;
    let mut events = bridge.events(&token, &["INBOX"], None).await;

    let mut imap = bridge.imap().await;
    imap.expunge("INBOX", 1).await;
    bridge
        .dovecot
        .deliver(USER, "INBOX", &message("three"), "", None);

    let event = events
        .next(Duration::from_secs(10))
        .await
        .expect("an event about the new mail");
    assert_eq!(event.event, "mailbox.reset", "{event:?}");
    assert_eq!(event.data["mailbox"], "INBOX", "{event:?}");
}
