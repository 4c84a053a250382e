//! Delta sync against a real Dovecot: a client that was away asks what changed since the
//! `state` it last saw, while another client and the mail server's own delivery changed the
//! mailbox, and gets exactly that (with CONDSTORE/QRESYNC) or a correct superset (without).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::bridge::{DirectImap, FlagSet, Link, TestBridge, USER, assert_problem, seg};
use common::corpus;
use common::dovecot::DovecotOptions;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Capabilities of a Dovecot that has everything the bridge uses except CONDSTORE and QRESYNC.
const WITHOUT_CONDSTORE: &str = "protocol imap {\n  imap_capability = IMAP4rev1 SASL-IR \
     LOGIN-REFERRALS ID ENABLE IDLE SORT LITERAL+ UIDPLUS MOVE SPECIAL-USE LIST-EXTENDED \
     LIST-STATUS UNSELECT\n}\n";

/// What a sync reported.
#[derive(Debug, Default, PartialEq, Eq)]
struct Delta {
    state: String,
    created: Vec<u32>,
    updated: BTreeMap<u32, FlagSet>,
    destroyed: Vec<u32>,
}

fn uid_list(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("array: {v}"))
        .iter()
        .map(|u| u32::try_from(u.as_u64().expect("uid")).expect("u32"))
        .collect()
}

async fn changes(bridge: &TestBridge, token: &str, mailbox: &str, since: &str) -> Delta {
    let (status, body) = bridge
        .get_json(
            token,
            &format!(
                "/v1/mailboxes/{}/changes?since={}",
                seg(mailbox),
                seg(since)
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let delta = Delta {
        state: body["state"].as_str().expect("state").to_owned(),
        created: uid_list(&body["created"]),
        updated: body["updated"]
            .as_array()
            .expect("updated")
            .iter()
            .map(|u| {
                let uid = u32::try_from(u["uid"].as_u64().expect("uid")).expect("u32");
                let flags = u["flags"]
                    .as_array()
                    .expect("flags")
                    .iter()
                    .map(|f| f.as_str().expect("flag").to_owned())
                    .collect();
                (uid, flags)
            })
            .collect(),
        destroyed: uid_list(&body["destroyed"]),
    };
    let ascending = |l: &[u32]| l.windows(2).all(|w| w[0] < w[1]);
    assert!(
        ascending(&delta.created) && ascending(&delta.destroyed),
        "{body}"
    );
    delta
}

/// The `state` of a header list of `mailbox`.
async fn list_state(bridge: &TestBridge, token: &str, mailbox: &str) -> String {
    let (status, list) = bridge
        .get_json(
            token,
            &format!("/v1/mailboxes/{}/messages?limit=1", seg(mailbox)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["state"].as_str().expect("state").to_owned()
}

/// The `(uid_validity, highest_modseq, uid_next)` inside a state (`s1.V.M.N`).
fn state_parts(state: &str) -> (u32, u64, u32) {
    let parts: Vec<&str> = state.split('.').collect();
    assert_eq!((parts.len(), parts[0]), (4, "s1"), "{state}");
    (
        parts[1].parse().expect("validity"),
        parts[2].parse().expect("modseq"),
        parts[3].parse().expect("uidnext"),
    )
}

/// What another client and the mail server do to a 10-message INBOX while the API's client is
/// away, and what a sync must therefore report.
struct Changed {
    created: BTreeSet<u32>,
    updated: BTreeMap<u32, FlagSet>,
    destroyed: BTreeSet<u32>,
}

async fn another_client_changes_the_inbox(bridge: &TestBridge, other: &mut DirectImap) -> Changed {
    other.store("INBOX", "3", "+FLAGS (\\Seen $Work)").await;
    other.store("INBOX", "5", "+FLAGS (\\Flagged)").await;
    other.store("INBOX", "6", "+FLAGS (\\Answered)").await;
    other.store("INBOX", "8", "+FLAGS (\\Seen)").await;
    // Changed and then expunged: only destroyed.
    other.expunge_set("INBOX", "7:8").await;
    let appended = other
        .append_with_uid(
            "INBOX",
            "\\Seen",
            b"Message-ID: <appended@example.test>\r\nSubject: appended\r\n\r\nhi\r\n",
        )
        .await;
    bridge.dovecot.deliver(
        USER,
        "INBOX",
        b"Message-ID: <delivered@example.test>\r\nSubject: delivered\r\n\r\nhi\r\n",
        "",
        None,
    );
    // The server sees the delivered file once a session looks.
    let now = other.flag_map("INBOX").await;
    let created: BTreeSet<u32> = now.keys().copied().filter(|u| *u > 10).collect();
    assert_eq!(created.len(), 2, "appended and delivered: {now:?}");
    assert!(created.contains(&appended));
    let updated = [3, 5, 6]
        .into_iter()
        .map(|uid| (uid, now[&uid].clone()))
        .collect::<BTreeMap<_, _>>();
    assert_eq!(updated[&3], ["\\Seen", "$Work"].map(String::from).into());
    Changed {
        created,
        updated,
        destroyed: [7, 8].into(),
    }
}

async fn bridge_with_inbox(opts: DovecotOptions) -> TestBridge {
    let bridge = TestBridge::start_with(opts, Link::Tls, |_| {}).await;
    bridge
        .dovecot
        .deliver_many(USER, "INBOX", corpus::bulk(10, 1));
    bridge
}

#[tokio::test]
async fn a_client_back_online_learns_exactly_what_changed() {
    let bridge = bridge_with_inbox(DovecotOptions::default()).await;
    let token = bridge.login().await;
    let since = list_state(&bridge, &token, "INBOX").await;
    assert!(
        state_parts(&since).1 > 0,
        "CONDSTORE gives a modseq: {since}"
    );

    let mut other = bridge.imap().await;
    let changed = another_client_changes_the_inbox(&bridge, &mut other).await;
    let delta = changes(&bridge, &token, "INBOX", &since).await;
    assert_eq!(
        delta.created,
        changed.created.iter().copied().collect::<Vec<_>>()
    );
    assert_eq!(delta.updated, changed.updated, "exactly the flag changes");
    assert_eq!(
        delta.destroyed,
        changed.destroyed.iter().copied().collect::<Vec<_>>()
    );
    assert_ne!(delta.state, since);

    // Caught up: asking again with the new state yields nothing.
    let again = changes(&bridge, &token, "INBOX", &delta.state).await;
    assert_eq!(
        (again.created, again.updated, again.destroyed),
        (vec![], BTreeMap::new(), vec![])
    );

    // One more change is one more update; the old state still reports everything since then.
    other.store("INBOX", "1", "+FLAGS ($Later)").await;
    let later = changes(&bridge, &token, "INBOX", &again.state).await;
    assert_eq!(
        later.updated,
        BTreeMap::from([(1, ["$Later".to_owned()].into())])
    );
    assert!(later.created.is_empty() && later.destroyed.is_empty());
    let from_start = changes(&bridge, &token, "INBOX", &since).await;
    assert_eq!(from_start.updated.len(), 4, "{from_start:?}");
    assert_eq!(from_start.destroyed, vec![7, 8]);
}

#[tokio::test]
async fn a_mailbox_that_was_reset_asks_the_client_to_start_over() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let (status, body) = bridge
        .send_json(
            Method::POST,
            &token,
            "/v1/mailboxes",
            &serde_json::json!({"name": "Box"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut imap = bridge.imap().await;
    imap.append_with_uid("Box", "", b"Subject: one\r\n\r\n1\r\n")
        .await;
    let old = list_state(&bridge, &token, "Box").await;

    // Deleted and created again: same name, new UIDVALIDITY.
    let (status, body) = bridge
        .send(Method::DELETE, &token, "/v1/mailboxes/Box")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = bridge
        .send_json(
            Method::POST,
            &token,
            "/v1/mailboxes",
            &serde_json::json!({"name": "Box"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let new = list_state(&bridge, &token, "Box").await;
    assert_ne!(
        state_parts(&old).0,
        state_parts(&new).0,
        "a new UIDVALIDITY"
    );

    let got = bridge
        .get_json(&token, &format!("/v1/mailboxes/Box/changes?since={old}"))
        .await;
    assert_problem(
        &got,
        StatusCode::CONFLICT,
        "uid_validity_changed",
        "recreated",
    );

    // A state crafted for another UIDVALIDITY of INBOX.
    let (validity, _, _) = state_parts(&list_state(&bridge, &token, "INBOX").await);
    let crafted = format!("s1.{}.1.1", validity.wrapping_add(1).max(1));
    let got = bridge
        .get_json(
            &token,
            &format!("/v1/mailboxes/INBOX/changes?since={crafted}"),
        )
        .await;
    assert_problem(
        &got,
        StatusCode::CONFLICT,
        "uid_validity_changed",
        "crafted",
    );
}

#[tokio::test]
async fn malformed_states_are_refused_before_imap() {
    let bridge = TestBridge::start_with(
        DovecotOptions {
            rawlog: true,
            ..DovecotOptions::default()
        },
        Link::Tls,
        |_| {},
    )
    .await;
    let token = bridge.login().await;
    let state = list_state(&bridge, &token, "INBOX").await;
    bridge.settle_connections(1).await;
    let log_before = bridge.dovecot.rawlog_in(USER);

    let queries = [
        "since=abc".to_owned(),
        "since=s1.1.2".to_owned(),
        "since=s1.1.2.3.4".to_owned(),
        "since=s2.1.2.3".to_owned(),
        "since=s1.-1.2.3".to_owned(),
        "since=s1.1.2.99999999999999999999".to_owned(),
        "since=s1.1.2.3%0D%0AA1%20DELETE%20INBOX".to_owned(),
        "since=".to_owned(),
        String::new(),
        format!("since={state}&extra=1"),
    ];
    for query in &queries {
        let got = bridge
            .get_json(&token, &format!("/v1/mailboxes/INBOX/changes?{query}"))
            .await;
        assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_request", query);
    }
    for name in ["a\r\nb", "star*", "nul\0"] {
        let (status, body) = bridge
            .get_json(
                &token,
                &format!("/v1/mailboxes/{}/changes?since={state}", seg(name)),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {body}");
    }
    assert_eq!(
        bridge.dovecot.rawlog_in(USER),
        log_before,
        "a refused state sends nothing to the server"
    );

    let got = bridge
        .get_json(&token, &format!("/v1/mailboxes/Nope/changes?since={state}"))
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "mailbox_not_found", "Nope");

    // Well-formed states that no mailbox can have (a UIDVALIDITY or UIDNEXT of 0, or beyond
    // 32 bits) are answered like states from before a reset: start over.
    for since in [
        "s1.0.1.1",
        "s1.1.1.0",
        "s1.4294967296.1.1",
        "s1.1.1.99999999999",
    ] {
        let got = bridge
            .get_json(
                &token,
                &format!("/v1/mailboxes/INBOX/changes?since={since}"),
            )
            .await;
        assert_problem(&got, StatusCode::CONFLICT, "uid_validity_changed", since);
    }
}

#[tokio::test]
async fn without_condstore_a_sync_reports_a_correct_superset() {
    let bridge = bridge_with_inbox(DovecotOptions {
        extra_config: WITHOUT_CONDSTORE.to_owned(),
        ..DovecotOptions::default()
    })
    .await;
    let mut other = bridge.imap().await;
    let caps = other.session.capabilities().await.expect("capabilities");
    assert!(
        !caps.has_str("CONDSTORE") && !caps.has_str("QRESYNC") && caps.has_str("UIDPLUS"),
        "this Dovecot hides CONDSTORE and QRESYNC"
    );
    let token = bridge.login().await;
    let since = list_state(&bridge, &token, "INBOX").await;
    assert_eq!(
        state_parts(&since).1,
        0,
        "no modseq without CONDSTORE: {since}"
    );

    let changed = another_client_changes_the_inbox(&bridge, &mut other).await;
    let delta = changes(&bridge, &token, "INBOX", &since).await;
    let on_server = other.flag_map("INBOX").await;
    assert_eq!(
        delta.created,
        changed.created.iter().copied().collect::<Vec<_>>(),
        "every new message, as new"
    );
    assert!(
        changed
            .destroyed
            .iter()
            .all(|u| delta.destroyed.contains(u)),
        "every expunge: {delta:?}"
    );
    assert!(
        delta.destroyed.iter().all(|u| !on_server.contains_key(u)),
        "only what is gone is destroyed: {delta:?}"
    );
    for (uid, flags) in &changed.updated {
        assert_eq!(delta.updated.get(uid), Some(flags), "uid {uid}");
    }
    for (uid, flags) in &delta.updated {
        assert_eq!(
            on_server.get(uid),
            Some(flags),
            "updates carry current flags"
        );
    }

    // Caught up: nothing new. Without modseqs the bridge cannot tell an old expunge from a
    // new one, so earlier gaps may be reported again; everything reported is still true.
    let again = changes(&bridge, &token, "INBOX", &delta.state).await;
    assert!(again.created.is_empty(), "{again:?}");
    assert!(
        again.destroyed.iter().all(|u| !on_server.contains_key(u)),
        "{again:?}"
    );
    for (uid, flags) in &again.updated {
        assert_eq!(on_server.get(uid), Some(flags));
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Not a test: how much cheaper a `changes` call is than listing the folder again, in a
/// 10,000-message INBOX after 100 flag changes by another client. Run it in release:
/// `cargo nextest run --release --test sync --run-ignored only measure_changes_vs_relist --no-capture`.
#[tokio::test]
#[ignore = "a measurement; run it on demand in release mode"]
async fn measure_changes_vs_relist() {
    let bridge = TestBridge::start_with(
        DovecotOptions {
            very_dirty_syncs: true,
            ..DovecotOptions::default()
        },
        Link::Tls,
        |_| {},
    )
    .await;
    bridge
        .dovecot
        .deliver_many(USER, "INBOX", corpus::bulk(10_000, 1));
    let token = bridge.login().await;
    let mut other = bridge.imap().await;

    let relist = || async {
        let mut cursor: Option<String> = None;
        let mut listed = 0;
        loop {
            let mut path = "/v1/mailboxes/INBOX/messages?limit=200".to_owned();
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = bridge.get_json(&token, &path).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            listed += page["messages"].as_array().expect("messages").len();
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        listed
    };
    // Warm Dovecot's index and cache and the bridge's session, as a running system would be.
    assert_eq!(relist().await, 10_000);

    let mut changes_times = Vec::new();
    let mut relist_times = Vec::new();
    for run in 0..5u32 {
        let since = list_state(&bridge, &token, "INBOX").await;
        for i in 0..100u32 {
            let uid = 1 + (i * 99 + run * 7) % 10_000;
            other
                .store("INBOX", &uid.to_string(), &format!("+FLAGS ($Run{run})"))
                .await;
        }
        let started = Instant::now();
        let delta = changes(&bridge, &token, "INBOX", &since).await;
        changes_times.push(started.elapsed());
        assert_eq!(delta.updated.len(), 100, "exactly the changed messages");
        let again = changes(&bridge, &token, "INBOX", &delta.state).await;
        assert!(again.updated.is_empty(), "and then nothing: {again:?}");

        let started = Instant::now();
        assert_eq!(relist().await, 10_000);
        relist_times.push(started.elapsed());
    }
    let changes = median(changes_times.clone());
    let relist = median(relist_times.clone());
    println!("changes after 100 flag changes in 10,000 messages: {changes_times:?}");
    println!("re-listing 10,000 summaries (50 pages of 200):      {relist_times:?}");
    println!(
        "median changes {changes:?}, median relist {relist:?}, relist/changes = {:.0}x",
        relist.as_secs_f64() / changes.as_secs_f64()
    );
}
