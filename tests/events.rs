//! Real-time events: IMAP IDLE turned into server-sent events, shared, resumable and bounded.

mod common;

use std::time::Duration;

use common::bridge::{EventClient, Link, TestBridge, USER, json_of};
use common::dovecot::DovecotOptions;
use futures::StreamExt;
use reqwest::{Method, StatusCode};

const WAIT: Duration = Duration::from_secs(10);

fn mail(subject: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@example.test>\r\nTo: alice@example.test\r\nSubject: {subject}\r\nMessage-ID: <{}@example.test>\r\nDate: Mon, 06 May 2024 12:00:00 +0000\r\n\r\nHello.\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

/// Waits until the watcher for the stream is idling, so a delivery is seen as a change.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn new_mail_flags_and_expunges_arrive_as_events() {
    let bridge = TestBridge::start().await;
    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("already here"), "", None);
    let token = bridge.login().await;
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    settle().await;

    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("delivered to the maildir"), "", None);
    let e = events.next(WAIT).await.expect("event for a delivery");
    assert_eq!(e.event, "message.new");
    assert_eq!(e.data["mailbox"], "INBOX");
    assert_eq!(e.data["subject"], "delivered to the maildir");
    assert_eq!(e.data["from"][0]["address"], "sender@example.test");
    assert!(e.data["uid"].as_u64().is_some() && e.data["received_at"].is_string());
    assert!(e.id.starts_with("e2."));

    let mut imap = bridge.imap().await;
    imap.append("INBOX", &mail("appended by another client"))
        .await;
    let e = events.next(WAIT).await.expect("event for an APPEND");
    assert_eq!(
        (e.event.as_str(), e.data["subject"].as_str()),
        ("message.new", Some("appended by another client"))
    );
    let appended_uid = u32::try_from(e.data["uid"].as_u64().expect("uid")).expect("u32");

    imap.session.select("INBOX").await.expect("select");
    let _: Vec<_> = imap
        .session
        .uid_store(appended_uid.to_string(), "+FLAGS (\\Flagged)")
        .await
        .expect("store")
        .collect()
        .await;
    let e = events.next(WAIT).await.expect("event for a flag change");
    assert_eq!(e.event, "message.flags");
    assert_eq!(e.data["uid"], appended_uid);
    assert!(
        e.data["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .any(|f| f == "\\Flagged"),
        "{:?}",
        e.data
    );

    imap.expunge("INBOX", appended_uid).await;
    let e = events.next(WAIT).await.expect("event for an expunge");
    // Setting \Deleted first shows as a flag change; the expunge follows.
    let e = if e.event == "message.flags" {
        events.next(WAIT).await.expect("expunge event")
    } else {
        e
    };
    assert_eq!(
        (e.event.as_str(), e.data["uid"].as_u64()),
        ("message.expunged", Some(u64::from(appended_uid)))
    );
}

#[tokio::test]
async fn subscribers_of_one_user_share_one_idle_connection() {
    // Keep-alives every second, so a client that left is noticed quickly.
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.sse_keepalive = 1
    })
    .await;
    let token = bridge.login().await;
    let mut first = bridge.events(&token, &["INBOX"], None).await;
    let mut second = bridge.events(&token, &["INBOX"], None).await;
    settle().await;
    // One pooled session (from the login) and one IDLE watcher.
    assert_eq!(bridge.dovecot.connections(USER), 2);
    assert_eq!(bridge.state.events.watchers(), 1);
    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("for both tabs"), "", None);
    for client in [&mut first, &mut second] {
        let e = client.next(WAIT).await.expect("both subscribers see it");
        assert_eq!(e.data["subject"], "for both tabs");
    }
    // The watcher stops with its last subscriber.
    drop(first);
    drop(second);
    bridge.wait_for_connections(1, WAIT).await;
}

/// Disconnects, lets 20 messages arrive, reconnects with Last-Event-ID (optionally to a
/// restarted bridge) and expects exactly those 20, in order.
async fn resume_after_a_gap(restart: bool) {
    let mut bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let mut events = bridge.events(&token, &["INBOX", "Archive"], None).await;
    settle().await;
    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("before the gap"), "", None);
    let e = events.next(WAIT).await.expect("first event");
    assert_eq!(e.data["subject"], "before the gap");
    let last_id = events.last_id.clone().expect("an id");
    drop(events);

    if restart {
        bridge.restart().await;
    }
    let mut imap = bridge.imap().await;
    for i in 0..20 {
        if i % 2 == 0 {
            bridge
                .dovecot
                .deliver(USER, "INBOX", &mail(&format!("missed {i:02}")), "", None);
        } else {
            imap.append("INBOX", &mail(&format!("missed {i:02}"))).await;
        }
    }
    let mut events = bridge
        .events(&token, &["INBOX", "Archive"], Some(&last_id))
        .await;
    let got = events.take(20, WAIT).await;
    assert!(got.iter().all(|e| e.event == "message.new"));
    let mut subjects: Vec<String> = got
        .iter()
        .map(|e| e.data["subject"].as_str().unwrap_or("").to_owned())
        .collect();
    let uids: Vec<u64> = got
        .iter()
        .map(|e| e.data["uid"].as_u64().expect("uid"))
        .collect();
    assert!(
        uids.windows(2).all(|w| w[0] < w[1]),
        "in the order they entered the mailbox: {uids:?}"
    );
    subjects.sort();
    let expected: Vec<String> = (0..20).map(|i| format!("missed {i:02}")).collect();
    assert_eq!(subjects, expected, "exactly the missed messages");
    assert!(
        events.next(Duration::from_millis(1500)).await.is_none(),
        "nothing twice"
    );

    // The stream goes on live after the replay.
    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("after the replay"), "", None);
    let e = events.next(WAIT).await.expect("live event");
    assert_eq!(e.data["subject"], "after the replay");
}

#[tokio::test]
async fn reconnecting_with_last_event_id_replays_exactly_what_was_missed() {
    resume_after_a_gap(false).await;
}

#[tokio::test]
async fn a_restarted_bridge_resumes_the_same_way() {
    resume_after_a_gap(true).await;
}

#[tokio::test]
async fn resuming_from_inside_a_batch_skips_what_was_delivered() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    settle().await;
    // Five messages in one maildir sync arrive as one batch.
    for i in 0..5 {
        bridge
            .dovecot
            .deliver(USER, "INBOX", &mail(&format!("batch {i}")), "", None);
    }
    let first_two = events.take(2, WAIT).await;
    assert_eq!(first_two[1].data["subject"], "batch 1");
    drop(events);
    let mut events = bridge
        .events(&token, &["INBOX"], Some(&first_two[1].id))
        .await;
    let rest = events.take(3, WAIT).await;
    let subjects: Vec<&str> = rest
        .iter()
        .map(|e| e.data["subject"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(subjects, ["batch 2", "batch 3", "batch 4"]);
}

#[tokio::test]
async fn idle_is_reissued_and_a_kicked_watcher_comes_back() {
    let opts = DovecotOptions {
        rawlog: true,
        ..DovecotOptions::default()
    };
    let bridge = TestBridge::start_with(opts, Link::Tls, |c| c.idle_reissue = 1).await;
    let token = bridge.login().await;
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let idles = bridge
        .dovecot
        .rawlog_in(USER)
        .lines()
        .filter(|l| l.ends_with(" IDLE"))
        .count();
    assert!(
        idles >= 3,
        "IDLE re-issued by the bridge's own timer ({idles} times)"
    );

    bridge.dovecot.kick(USER);
    // Mail that arrives while the watcher is down is published once it is back.
    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("during the outage"), "", None);
    let e = events
        .next(Duration::from_secs(15))
        .await
        .expect("event after the kick");
    assert_eq!(e.data["subject"], "during the outage");
    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("after the outage"), "", None);
    let e = events.next(WAIT).await.expect("live again");
    assert_eq!(e.data["subject"], "after the outage");
}

#[tokio::test]
async fn browsers_use_single_use_tickets() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let res = bridge
        .request(Method::POST, "/v1/events/ticket", Some(&token))
        .send()
        .await
        .expect("ticket");
    let (status, body) = json_of(res).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["expires_in"], 60);
    let ticket = body["ticket"].as_str().expect("ticket").to_owned();

    let res = bridge
        .request(Method::GET, &format!("/v1/events?ticket={ticket}"), None)
        .send()
        .await
        .expect("events");
    assert_eq!(res.status(), StatusCode::OK);
    let mut events = EventClient::from_response(res, None);
    settle().await;
    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("via a ticket"), "", None);
    assert_eq!(
        events.next(WAIT).await.expect("event").data["subject"],
        "via a ticket"
    );

    let res = bridge
        .request(Method::GET, &format!("/v1/events?ticket={ticket}"), None)
        .send()
        .await
        .expect("reuse");
    let (status, body) = json_of(res).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    // A ticket is not a bearer token.
    let res = bridge
        .request(Method::GET, "/v1/mailboxes", Some(&ticket))
        .send()
        .await
        .expect("misuse");
    assert_eq!(json_of(res).await.0, StatusCode::UNAUTHORIZED);
}

/// The `id:` of the first frame of a stream, read from the raw body: a frame without data,
/// which EventSource keeps as its Last-Event-ID without dispatching an event.
async fn first_frame_id(res: &mut reqwest::Response) -> String {
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(WAIT, res.chunk())
            .await
            .expect("first frame in time")
            .expect("body")
            .expect("not ended");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let frame = text.split("\n\n").next().expect("a frame");
    assert!(
        !frame.contains("data:"),
        "the first frame dispatches no event: {frame:?}"
    );
    frame
        .lines()
        .find_map(|line| line.strip_prefix("id: "))
        .expect("the first frame carries an id")
        .to_owned()
}

#[tokio::test]
async fn an_eventsource_reconnects_with_its_spent_ticket_and_misses_nothing() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let ticket_for = |token: String| {
        let bridge = &bridge;
        async move {
            let res = bridge
                .request(Method::POST, "/v1/events/ticket", Some(&token))
                .send()
                .await
                .expect("ticket");
            json_of(res).await.1["ticket"]
                .as_str()
                .expect("ticket")
                .to_owned()
        }
    };
    let ticket = ticket_for(token.clone()).await;
    let url = format!("/v1/events?ticket={ticket}");
    let mut res = bridge
        .request(Method::GET, &url, None)
        .send()
        .await
        .expect("events");
    assert_eq!(res.status(), StatusCode::OK);
    // The connection drops before a single event came: all EventSource has is the first
    // frame's id.
    let id = first_frame_id(&mut res).await;
    drop(res);
    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("while disconnected"), "", None);

    let reconnect = |last_event_id: String| {
        bridge
            .request(Method::GET, &url, None)
            .header("Last-Event-ID", last_event_id)
            .send()
    };
    let res = reconnect(id.clone()).await.expect("reconnect");
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the spent ticket serves its reconnection"
    );
    let mut events = EventClient::from_response(res, Some(&id));
    assert_eq!(
        events.next(WAIT).await.expect("replayed").data["subject"],
        "while disconnected"
    );

    // An id the bridge did not issue, or none, does not make a spent ticket good again.
    for forged in [String::new(), "e2.e30.AAAAAAAAAAAAAAAAAAAAAA".to_owned()] {
        let res = reconnect(forged.clone()).await.expect("forged");
        let (status, body) = json_of(res).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "{forged:?}"
        );
    }
    // Another user's ticket cannot use this user's id.
    bridge.dovecot.add_user("bob", "bobs-password");
    let other = ticket_for(bridge.login_as("bob", "bobs-password").await).await;
    let res = bridge
        .request(Method::GET, &format!("/v1/events?ticket={other}"), None)
        .send()
        .await
        .expect("other");
    assert_eq!(res.status(), StatusCode::OK, "its first use");
    let res = bridge
        .request(Method::GET, &format!("/v1/events?ticket={other}"), None)
        .header("Last-Event-ID", id.clone())
        .send()
        .await
        .expect("other reconnect");
    assert_eq!(json_of(res).await.0, StatusCode::UNAUTHORIZED);

    // Logging out ends the ticket's reconnections too.
    let res = bridge
        .request(Method::POST, "/v1/auth/logout", Some(&token))
        .send()
        .await
        .expect("logout");
    assert!(res.status().is_success());
    let res = reconnect(id).await.expect("after logout");
    assert_eq!(json_of(res).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn streams_are_bounded_and_bad_requests_refused() {
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.sse_max_per_user = 2
    })
    .await;
    let token = bridge.login().await;
    let _a = bridge.events(&token, &["INBOX"], None).await;
    let _b = bridge.events(&token, &["INBOX"], None).await;
    let res = bridge
        .request(Method::GET, "/v1/events", Some(&token))
        .send()
        .await
        .expect("third");
    let retry_after = res.headers().get("retry-after").cloned();
    let (status, body) = json_of(res).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    assert!(retry_after.is_some());
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;

    for (query, want) in [
        ("mailbox=Nope", StatusCode::NOT_FOUND),
        ("mailbox=a%0D%0Ab", StatusCode::BAD_REQUEST),
        ("mailbox=%2A", StatusCode::BAD_REQUEST),
        ("bogus=1", StatusCode::BAD_REQUEST),
    ] {
        let res = bridge
            .request(Method::GET, &format!("/v1/events?{query}"), Some(&token))
            .send()
            .await
            .expect("send");
        assert_eq!(json_of(res).await.0, want, "{query}");
    }
    // An id the bridge did not issue cannot say what was missed: the stream opens (EventSource
    // would not retry an error status) and starts with `mailbox.reset`.
    let res = bridge
        .request(Method::GET, "/v1/events", Some(&token))
        .header("last-event-id", "e2.not-base64!.x")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let mut stream = EventClient::from_response(res, None);
    let first = stream
        .next(Duration::from_secs(10))
        .await
        .expect("an event");
    assert_eq!(first.event, "mailbox.reset", "{first:?}");
    assert_eq!(first.data["mailbox"], "INBOX", "{first:?}");
    drop(stream);
    let res = bridge
        .request(Method::GET, "/v1/events", None)
        .send()
        .await
        .expect("send");
    assert_eq!(json_of(res).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_gets_mailbox_reset() {
    let bridge =
        TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| c.sse_queue = 2).await;
    let token = bridge.login().await;
    let claims = bridge.state.tokens.verify(&token).expect("claims");
    let key = imap_bridge::imap::UserKey {
        upstream: bridge.state.upstream.clone(),
        username: USER.into(),
    };
    let inbox = imap_bridge::imap::MailboxName::new("INBOX").expect("name");
    let mut slow = bridge
        .state
        .events
        .subscribe(
            &key,
            &claims.credentials,
            vec![inbox],
            None,
            Box::pin(futures::future::pending()),
        )
        .await
        .expect("subscribe")
        .events;
    let mut fast = bridge.events(&token, &["INBOX"], None).await;
    settle().await;
    // Five separate batches while the slow subscriber reads nothing.
    for i in 0..5 {
        bridge
            .dovecot
            .deliver(USER, "INBOX", &mail(&format!("flood {i}")), "", None);
        assert_eq!(
            fast.next(WAIT).await.expect("fast subscriber").data["subject"],
            format!("flood {i}")
        );
    }
    let first = tokio::time::timeout(WAIT, slow.next())
        .await
        .expect("event")
        .expect("open");
    assert_eq!(
        first.kind, "mailbox.reset",
        "the slow subscriber is told to resync instead of buffering"
    );
    // After the reset the subscriber is at the mailbox's state now: what comes next is news
    // only, never one of the batches it skipped, and its position never goes back.
    for i in 0..2 {
        bridge
            .dovecot
            .deliver(USER, "INBOX", &mail(&format!("after {i}")), "", None);
        fast.next(WAIT).await.expect("fast subscriber");
    }
    let mut after = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(1500), slow.next()).await {
        after.push(e);
    }
    let seen: Vec<(&str, String)> = after
        .iter()
        .map(|e| {
            let data: serde_json::Value = serde_json::from_str(&e.data).expect("JSON");
            (e.kind, data["subject"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("message.new", "after 0".to_owned()),
            ("message.new", "after 1".to_owned())
        ],
        "every event after the reset"
    );
    // Resuming from the last id replays nothing: it stands at the newest state.
    let last = &after.last().expect("events").id;
    let mut resumed = bridge.events(&token, &["INBOX"], Some(last)).await;
    assert!(
        resumed.next(Duration::from_millis(1000)).await.is_none(),
        "nothing older follows the last id"
    );
}

fn summary_fetches(bridge: &TestBridge) -> usize {
    bridge
        .dovecot
        .rawlog_in(USER)
        .lines()
        .filter(|l| l.contains("UID FETCH") && l.contains("ENVELOPE"))
        .count()
}

/// A genuine id's shape with the INBOX position moved back to UIDNEXT 1 and mod-sequence 1:
/// what an attacker would send to make the bridge fetch the whole mailbox.
fn far_behind(genuine: &str) -> (String, String) {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (payload, tag) = genuine
        .strip_prefix("e2.")
        .and_then(|r| r.split_once('.'))
        .expect("e2.payload.mac");
    let json = URL_SAFE_NO_PAD.decode(payload).expect("base64url");
    let mut positions: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&json).expect("positions");
    let inbox = positions["INBOX"].as_str().expect("a state").to_owned();
    let uid_validity = inbox.split('.').nth(1).expect("s1.uv.modseq.next");
    positions.insert("INBOX".into(), format!("s1.{uid_validity}.1.1").into());
    let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&positions).expect("JSON"));
    (format!("e2.{forged}.{tag}"), format!("e1.{forged}"))
}

#[tokio::test]
async fn a_made_up_event_id_gets_mailbox_reset_without_a_fetch() {
    let opts = DovecotOptions {
        rawlog: true,
        ..DovecotOptions::default()
    };
    let bridge = TestBridge::start_with(opts, Link::Tls, |_| {}).await;
    bridge
        .dovecot
        .deliver_many(USER, "INBOX", (0..300).map(|i| mail(&format!("old {i}"))));
    let token = bridge.login().await;
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    settle().await;
    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("a genuine id"), "", None);
    events.next(WAIT).await.expect("event");
    let genuine = events.last_id.clone().expect("an id");
    drop(events);
    let (forged, unsigned) = far_behind(&genuine);
    let before = summary_fetches(&bridge);
    for id in [forged, unsigned] {
        let mut events = bridge.events(&token, &["INBOX"], Some(&id)).await;
        let first = events.next(WAIT).await.expect("an event");
        assert_eq!(
            (first.event.as_str(), first.data["mailbox"].as_str()),
            ("mailbox.reset", Some("INBOX")),
            "{first:?}"
        );
        assert!(
            events.next(Duration::from_millis(500)).await.is_none(),
            "nothing replayed for {id}"
        );
    }
    assert_eq!(
        summary_fetches(&bridge),
        before,
        "the IMAP server was not asked for one summary"
    );
    // The genuine id still resumes: nothing was missed.
    let mut events = bridge.events(&token, &["INBOX"], Some(&genuine)).await;
    assert!(events.next(Duration::from_millis(1000)).await.is_none());
}

#[tokio::test]
async fn a_gap_longer_than_the_replay_bound_gets_mailbox_reset_without_a_fetch() {
    let opts = DovecotOptions {
        rawlog: true,
        ..DovecotOptions::default()
    };
    let bridge = TestBridge::start_with(opts, Link::Tls, |c| c.sse_max_replay = 5).await;
    let token = bridge.login().await;
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    settle().await;
    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("before the gap"), "", None);
    events.next(WAIT).await.expect("event");
    let id = events.last_id.clone().expect("an id");
    drop(events);

    // Five missed messages: within the bound, replayed.
    for i in 0..5 {
        bridge
            .dovecot
            .deliver(USER, "INBOX", &mail(&format!("missed {i}")), "", None);
    }
    let mut events = bridge.events(&token, &["INBOX"], Some(&id)).await;
    let got = events.take(5, WAIT).await;
    assert!(got.iter().all(|e| e.event == "message.new"), "{got:?}");
    let id = events.last_id.clone().expect("an id");
    drop(events);

    // Six: past the bound, a reset, and the six summaries are not fetched.
    for i in 0..6 {
        bridge
            .dovecot
            .deliver(USER, "INBOX", &mail(&format!("too many {i}")), "", None);
    }
    let before = summary_fetches(&bridge);
    let mut events = bridge.events(&token, &["INBOX"], Some(&id)).await;
    let first = events.next(WAIT).await.expect("an event");
    assert_eq!(first.event, "mailbox.reset", "{first:?}");
    assert!(events.next(Duration::from_millis(500)).await.is_none());
    assert_eq!(summary_fetches(&bridge), before);
    let id = events.last_id.clone().expect("an id");
    drop(events);

    // Flag changes on more messages than the bound: a reset too.
    let mut imap = bridge.imap().await;
    imap.session.select("INBOX").await.expect("select");
    let _: Vec<_> = imap
        .session
        .uid_store("1:*", "+FLAGS (\\Seen)")
        .await
        .expect("store")
        .collect()
        .await;
    let mut events = bridge.events(&token, &["INBOX"], Some(&id)).await;
    let first = events.next(WAIT).await.expect("an event");
    assert_eq!(first.event, "mailbox.reset", "{first:?}");
    assert!(events.next(Duration::from_millis(500)).await.is_none());
}

#[tokio::test]
async fn a_deleted_mailbox_ends_its_stream_with_a_problem_code() {
    let bridge = TestBridge::start().await;
    bridge.dovecot.create_mailbox(USER, "Projects");
    let token = bridge.login().await;
    let mut events = bridge.events(&token, &["INBOX", "Projects"], None).await;
    settle().await;
    bridge
        .dovecot
        .deliver(USER, "Projects", &mail("kept"), "", None);
    events.next(WAIT).await.expect("an event");
    let kept_id = events.last_id.clone().expect("an id");
    let res = bridge
        .request(Method::DELETE, "/v1/mailboxes/Projects", Some(&token))
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let end = events
        .next(Duration::from_secs(20))
        .await
        .expect("a last event");
    assert_eq!(end.event, "stream.end", "{end:?}");
    assert_eq!(end.data["code"], "mailbox_not_found");
    assert_eq!(end.data["mailbox"], "Projects");
    assert_eq!(end.retry, None, "reconnecting as it was cannot help");
    assert_eq!(end.id, kept_id, "the last event keeps the position");
    assert!(
        events.next(Duration::from_millis(500)).await.is_none(),
        "the stream ended"
    );
    // Reconnecting as it was is refused for what it is.
    let res = bridge
        .request(Method::GET, "/v1/events?mailbox=Projects", Some(&token))
        .send()
        .await
        .expect("reconnect");
    assert_eq!(json_of(res).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_password_changed_on_the_server_ends_the_stream() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    settle().await;
    bridge.dovecot.add_user(USER, "a-new-password");
    // The watcher's connection drops; logging in again is refused.
    bridge.dovecot.kick(USER);
    let end = events
        .next(Duration::from_secs(30))
        .await
        .expect("a last event");
    assert_eq!(end.event, "stream.end", "{end:?}");
    assert_eq!(end.data["code"], "unauthorized");
    assert!(events.next(Duration::from_millis(500)).await.is_none());
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let bridge =
        TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| c.token_ttl = 3).await;
    let token = bridge.login().await;
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    let end = events
        .next(Duration::from_secs(10))
        .await
        .expect("a last event");
    assert_eq!(end.event, "stream.end", "{end:?}");
    assert_eq!(end.data["code"], "unauthorized");
    assert!(
        end.data["detail"]
            .as_str()
            .unwrap_or("")
            .contains("expired")
    );
    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("too late"), "", None);
    assert!(
        events.next(Duration::from_millis(1000)).await.is_none(),
        "nothing after the end"
    );
}

#[tokio::test]
async fn logging_out_ends_the_streams_opened_with_the_token_and_its_tickets() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let mut bearer = bridge.events(&token, &["INBOX"], None).await;
    let res = bridge
        .request(Method::POST, "/v1/events/ticket", Some(&token))
        .send()
        .await
        .expect("ticket");
    let ticket = json_of(res).await.1["ticket"]
        .as_str()
        .expect("ticket")
        .to_owned();
    let res = bridge
        .request(Method::GET, &format!("/v1/events?ticket={ticket}"), None)
        .send()
        .await
        .expect("events");
    let mut browser = EventClient::from_response(res, None);
    // Another login of the same user keeps its stream.
    let other = bridge.login().await;
    let mut kept = bridge.events(&other, &["INBOX"], None).await;
    settle().await;
    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("before the logout"), "", None);
    for stream in [&mut bearer, &mut browser, &mut kept] {
        let e = stream.next(WAIT).await.expect("an event");
        assert_eq!(e.data["subject"], "before the logout");
    }
    let res = bridge
        .request(Method::POST, "/v1/auth/logout", Some(&token))
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for stream in [&mut bearer, &mut browser] {
        let end = stream.next(WAIT).await.expect("a last event");
        assert_eq!(end.event, "stream.end", "{end:?}");
        assert_eq!(end.data["code"], "unauthorized");
        assert!(
            end.data["detail"]
                .as_str()
                .unwrap_or("")
                .contains("revoked"),
            "{end:?}"
        );
    }
    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("after the logout"), "", None);
    let e = kept
        .next(WAIT)
        .await
        .expect("the other login's stream goes on");
    assert_eq!(e.data["subject"], "after the logout");
    for stream in [&mut bearer, &mut browser] {
        assert!(
            stream.next(Duration::from_millis(1000)).await.is_none(),
            "no mail reaches a stream after its logout"
        );
    }
}

#[tokio::test]
async fn a_ticket_stream_ends_when_its_access_token_expires() {
    let bridge =
        TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| c.token_ttl = 4).await;
    let token = bridge.login().await;
    let res = bridge
        .request(Method::POST, "/v1/events/ticket", Some(&token))
        .send()
        .await
        .expect("ticket");
    let ticket = json_of(res).await.1["ticket"]
        .as_str()
        .expect("ticket")
        .to_owned();
    let res = bridge
        .request(Method::GET, &format!("/v1/events?ticket={ticket}"), None)
        .send()
        .await
        .expect("events");
    let mut browser = EventClient::from_response(res, None);
    settle().await;
    bridge
        .dovecot
        .deliver(USER, "INBOX", &mail("while valid"), "", None);
    assert_eq!(
        browser.next(WAIT).await.expect("event").data["subject"],
        "while valid"
    );
    let end = browser.next(WAIT).await.expect("a last event");
    assert_eq!(end.event, "stream.end", "{end:?}");
    assert!(
        end.data["detail"]
            .as_str()
            .unwrap_or("")
            .contains("expired")
    );
}
