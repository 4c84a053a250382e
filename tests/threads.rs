//! Threading on real servers: `UID THREAD REFERENCES` as Dovecot and Cyrus answer it, read
//! past the response parser, against the bridge's own RFC 5256 threading of the same
//! messages, on conversations built to be awkward (broken `References`, missing parents,
//! replies known only by subject); and the thread endpoints on Dovecot and Cyrus (the server
//! threads) and on a profile without THREAD (the bridge threads): the same threads, ids and
//! order everywhere, pages that neither skip nor repeat while mail arrives, unread counts that
//! follow flags, the user's replies from Sent joined in, and bad input refused.

mod common;

use std::collections::BTreeMap;

use common::bridge::{assert_problem, json_of};
use common::servers::{Profile, ServerBridge};
use imap_bridge::imap::error::ImapError;
use imap_bridge::imap::state::ThreadId;
use imap_bridge::mail::threading::{self, Message};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One seeded message: its Message-ID, References, In-Reply-To and Subject; dates follow
/// the order.
type Seed = (&'static str, &'static str, &'static str, &'static str);

const CONVERSATIONS: [Seed; 11] = [
    ("<a@t>", "", "", "Plan for May"),
    ("<b@t>", "<a@t>", "<a@t>", "Re: Plan for May"),
    // References lost by a mailer; In-Reply-To kept.
    ("<c@t>", "", "<b@t>", "Re: Plan for May"),
    ("<h@t>", "", "", "Lunch?"),
    // Two replies to a message this mailbox never had.
    ("<d@t>", "<zzz@t>", "<zzz@t>", "Re: Lost thread"),
    ("<e@t>", "<zzz@t> <d@t>", "<d@t>", "Re: Lost thread"),
    // A reply known only by its subject.
    ("<g@t>", "", "", "Budget 2027"),
    ("<f@t>", "", "", "Re: Budget 2027"),
    // References in the wrong order, naming a later message first.
    ("<i@t>", "<c@t> <a@t>", "<a@t>", "Re: Plan for May"),
    // A message without a Message-ID.
    ("", "", "", "No id"),
    ("<j@t>", "<h@t>", "<h@t>", "Re: Lunch?"),
];

fn raw(seed: &Seed, index: usize) -> Vec<u8> {
    let (id, references, in_reply_to, subject) = *seed;
    raw_message(id, references, in_reply_to, subject, index)
}

/// A message with these fields (the empty ones left out), sent at minute `index`.
fn raw_message(
    id: &str,
    references: &str,
    in_reply_to: &str,
    subject: &str,
    index: usize,
) -> Vec<u8> {
    let mut head = format!(
        "From: Sender <sender@example.test>\r\nTo: Alice <alice@example.test>\r\n\
         Subject: {subject}\r\nDate: Mon, 06 May 2024 12:{index:02}:00 +0000\r\n"
    );
    for (name, value) in [
        ("Message-ID", id),
        ("References", references),
        ("In-Reply-To", in_reply_to),
    ] {
        if !value.is_empty() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    format!("{head}MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello.\r\n").into_bytes()
}

/// The same messages as the bridge's threading takes them, keyed by UID (seeded in order
/// into an empty mailbox, message `i` has UID `i + 1`).
fn bridge_threads() -> Vec<Vec<(u32, usize)>> {
    let messages: Vec<Message<u32>> = CONVERSATIONS
        .iter()
        .enumerate()
        .map(|(i, (id, references, in_reply_to, subject))| {
            let some = |s: &'static str| (!s.is_empty()).then_some(s);
            Message {
                key: i as u32 + 1,
                message_id: some(id),
                references: some(references),
                in_reply_to: some(in_reply_to),
                subject,
                date: 1_715_000_000 + 60 * i as i64,
            }
        })
        .collect();
    threading::thread(&messages)
        .into_iter()
        .map(|t| t.messages)
        .collect()
}

async fn server_threads(bridge: &ServerBridge) -> Result<Vec<Vec<(u32, usize)>>, ImapError> {
    let mut session = bridge.pooled_session("INBOX").await;
    let threads = session.server_threads(&[]).await?;
    // The session is as good as before: the stream after the THREAD response still parses.
    session.noop().await.expect("the session goes on");
    Ok(threads.into_iter().map(|t| t.messages).collect())
}

async fn seeded(profile: Profile) -> ServerBridge {
    let bridge = ServerBridge::start(profile).await;
    let messages = CONVERSATIONS
        .iter()
        .enumerate()
        .map(|(i, seed)| raw(seed, i))
        .collect();
    bridge.server.deliver_many("INBOX", messages);
    bridge
}

#[tokio::test]
async fn dovecot_threads_the_awkward_conversations_as_the_bridge_does() {
    let bridge = seeded(Profile::Dovecot).await;
    let server = server_threads(&bridge).await.expect("THREAD=REFERENCES");
    assert_eq!(server, bridge_threads());
    // What that is, spelled out: the plan with its replies (the one without References under
    // the message its In-Reply-To names), lunch with its reply, the two replies to the
    // missing message side by side, the budget reply under its original by subject.
    assert_eq!(
        server,
        [
            vec![(1, 0), (2, 1), (3, 2), (9, 1)],
            vec![(4, 0), (11, 1)],
            vec![(5, 0), (6, 1)],
            vec![(7, 0), (8, 1)],
            vec![(10, 0)],
        ]
    );
}

#[tokio::test]
async fn cyrus_threads_the_awkward_conversations_as_the_bridge_does() {
    let bridge = seeded(Profile::Cyrus).await;
    let server = server_threads(&bridge).await.expect("THREAD=REFERENCES");
    assert_eq!(server, bridge_threads());
}

#[tokio::test]
async fn a_server_without_thread_names_what_it_lacks() {
    let bridge = seeded(Profile::Bare).await;
    match server_threads(&bridge).await {
        Err(ImapError::Unsupported(what)) => assert_eq!(what, "THREAD=REFERENCES"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

/// Each listed thread as its mailbox UIDs in reading order.
fn uid_lists(page: &Value) -> Vec<Vec<u64>> {
    page["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| numbers(&t["uids"]))
        .collect()
}

fn numbers(list: &Value) -> Vec<u64> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|n| n.as_u64().expect("a number"))
        .collect()
}

const THREAD_COMMANDS: &str = "imap_bridge_imap_commands_total{command=\"UID THREAD\"";
const LIST_CACHE_HITS: &str = "imap_bridge_thread_cache_lookups_total{hit=\"true\"";

/// The awkward conversations through the endpoints: the list in its order with the ids the
/// documentation promises, and two threads in reading order; the server's THREAD is used
/// where it is offered and only there; a repeat comes from the cache, and a reply that
/// arrives puts its thread on top.
async fn the_endpoints_thread_the_awkward_conversations(profile: Profile) {
    let bridge = seeded(profile).await;
    let token = bridge.login().await;
    let page = bridge.get_ok(&token, "/v1/mailboxes/INBOX/threads").await;
    // Newest first by the latest message: lunch (11), the message without an id (10), the
    // plan (9), the budget (8), the lost thread (6).
    assert_eq!(
        uid_lists(&page),
        [
            vec![4, 11],
            vec![10],
            vec![1, 2, 3, 9],
            vec![7, 8],
            vec![5, 6]
        ],
        "{page:#}"
    );
    assert_eq!(page["total"], 5);
    assert_eq!(page["next_cursor"], Value::Null);
    let uid_validity =
        u32::try_from(page["uid_validity"].as_u64().expect("uid_validity")).expect("u32");
    let threads = page["threads"].as_array().expect("threads");
    // Named by where each first message says the conversation started; the message without
    // any id by its mailbox, UIDVALIDITY and UID.
    let origin = |id: &str| ThreadId::derive(&[b"origin", id.as_bytes()]).to_string();
    let ids: Vec<&str> = threads
        .iter()
        .map(|t| t["thread_id"].as_str().expect("id"))
        .collect();
    let no_id = ThreadId::derive(&[
        b"message",
        b"INBOX",
        &uid_validity.to_be_bytes(),
        &10u32.to_be_bytes(),
    ])
    .to_string();
    assert_eq!(
        ids,
        [
            origin("h@t"),
            no_id,
            origin("a@t"),
            origin("g@t"),
            origin("zzz@t")
        ]
    );
    let plan = &threads[2];
    assert_eq!(plan["subject"], "Plan for May");
    assert_eq!(
        (plan["messages"].as_u64(), plan["unread"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(numbers(&plan["unread_uids"]), [1, 2, 3, 9]);
    assert_eq!(plan["latest"]["uid"], 9);
    assert_eq!(plan["latest"]["subject"], "Re: Plan for May");
    assert_eq!(
        plan["participants"],
        json!([{"name": "Sender", "address": "sender@example.test"}])
    );
    assert_eq!(plan["sent_uids"], json!([]));
    assert_eq!(page["sent_mailbox"], Value::Null);

    // The thread in reading order, as the threading tests above have it.
    let detail = |id: &str| format!("/v1/mailboxes/INBOX/threads/{id}");
    let (status, thread) = bridge.get_json(&token, &detail(&origin("a@t"))).await;
    assert_eq!(status, StatusCode::OK, "{thread}");
    let order: Vec<(u64, u64, &str)> = thread["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["uid"].as_u64().expect("uid"),
                m["depth"].as_u64().expect("depth"),
                m["mailbox"].as_str().expect("mailbox"),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            (1, 0, "INBOX"),
            (2, 1, "INBOX"),
            (3, 2, "INBOX"),
            (9, 1, "INBOX")
        ]
    );
    assert_eq!(thread["subject"], "Plan for May");
    assert_eq!(thread["unread"], 4);
    assert_eq!(thread["messages"][3]["message_id"], "<i@t>");
    // Two replies to a message the mailbox never had, side by side under it.
    let (_, lost) = bridge.get_json(&token, &detail(&origin("zzz@t"))).await;
    let depths: Vec<(u64, u64)> = lost["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["uid"].as_u64().expect("uid"),
                m["depth"].as_u64().expect("depth"),
            )
        })
        .collect();
    assert_eq!(depths, [(5, 0), (6, 1)]);

    let by_server = bridge.counter(THREAD_COMMANDS).await;
    assert_eq!(
        by_server > 0.0,
        bridge.has("THREAD=REFERENCES"),
        "UID THREAD sent {by_server} times on {}",
        profile.name()
    );
    // A repeat is served from the cache: no THREAD, a hit.
    let hits = bridge.counter(LIST_CACHE_HITS).await;
    let again = bridge.get_ok(&token, "/v1/mailboxes/INBOX/threads").await;
    assert_eq!(again["threads"], page["threads"]);
    assert_eq!(bridge.counter(THREAD_COMMANDS).await, by_server);
    assert!(bridge.counter(LIST_CACHE_HITS).await > hits);

    // A late reply to the budget puts its thread on top, under the same id.
    bridge.server.deliver(
        "INBOX",
        &raw(&("<k@t>", "<g@t>", "<g@t>", "Re: Budget 2027"), 30),
        "",
        None,
    );
    let moved = bridge
        .get_ok(&token, "/v1/mailboxes/INBOX/threads?limit=1")
        .await;
    assert_eq!(uid_lists(&moved), [vec![7, 8, 12]]);
    assert_eq!(moved["threads"][0]["thread_id"], origin("g@t").as_str());
    assert!(moved["next_cursor"].is_string());
}

#[tokio::test]
async fn the_thread_endpoints_on_dovecot_use_its_thread() {
    the_endpoints_thread_the_awkward_conversations(Profile::Dovecot).await;
}

#[tokio::test]
async fn the_thread_endpoints_on_cyrus_use_its_thread() {
    the_endpoints_thread_the_awkward_conversations(Profile::Cyrus).await;
}

#[tokio::test]
async fn the_thread_endpoints_on_a_server_without_thread_thread_in_the_bridge() {
    the_endpoints_thread_the_awkward_conversations(Profile::Bare).await;
}

/// A message of conversation `n`: its first (`reply` 0) or a reply naming the first.
fn conversation_message(n: usize, reply: usize) -> Vec<u8> {
    let id = format!("<c{n}-{reply}@t>");
    let minute = (n * 3 + reply) % 60;
    if reply == 0 {
        raw_message(&id, "", "", &format!("Topic {n}"), minute)
    } else {
        let parent = format!("<c{n}-0@t>");
        raw_message(&id, &parent, &parent, &format!("Re: Topic {n}"), minute)
    }
}

/// Pages through 30 conversations four at a time while replies and a new conversation
/// arrive and a listed thread loses its latest message: every conversation nothing happened to
/// is listed exactly once; the one that lost its latest message comes again further down, as
/// documented; a reply to one not reached yet takes it to the top of a fresh list instead.
async fn paging_neither_skips_nor_repeats_while_mail_arrives(profile: Profile) {
    let bridge = ServerBridge::start(profile).await;
    // Conversation n is UID n + 1; every third one has a reply at once (UIDs 31..=40).
    let mut messages: Vec<Vec<u8>> = (0..30).map(|n| conversation_message(n, 0)).collect();
    messages.extend((0..30).step_by(3).map(|n| conversation_message(n, 1)));
    bridge.server.deliver_many("INBOX", messages);
    let token = bridge.login().await;
    let mut direct = bridge.server.direct().await;
    let origin = |o: &str| ThreadId::derive(&[b"origin", o.as_bytes()]).to_string();

    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut repeats = Vec::new();
    let mut moved = None;
    let mut cursor: Option<String> = None;
    let mut round = 0;
    loop {
        let path = match &cursor {
            None => "/v1/mailboxes/INBOX/threads?limit=4".to_owned(),
            Some(c) => format!("/v1/mailboxes/INBOX/threads?limit=4&cursor={c}"),
        };
        let page = bridge.get_ok(&token, &path).await;
        for thread in page["threads"].as_array().expect("threads") {
            let id = thread["thread_id"].as_str().expect("id").to_owned();
            if seen.insert(id.clone(), numbers(&thread["uids"])).is_some() {
                repeats.push(id);
            }
        }
        let Some(next) = page["next_cursor"].as_str() else {
            break;
        };
        cursor = Some(next.to_owned());
        round += 1;
        match round {
            // A reply to a conversation on the first page (24), one to a conversation below (4).
            1 => {
                assert!(seen.contains_key(&origin("c24-0@t")), "{seen:?}");
                for message in [conversation_message(24, 2), conversation_message(4, 1)] {
                    bridge.server.deliver("INBOX", &message, "", None);
                }
            }
            // A new conversation, and the last thread listed loses its reply.
            2 => {
                bridge
                    .server
                    .deliver("INBOX", &conversation_message(30, 0), "", None);
                let last = page["threads"]
                    .as_array()
                    .and_then(|t| t.last())
                    .expect("a last thread");
                assert_eq!(numbers(&last["uids"]).len(), 2, "{last}");
                let latest = last["latest"]["uid"].as_u64().expect("uid");
                direct
                    .expunge("INBOX", u32::try_from(latest).expect("u32"))
                    .await;
                moved = Some(last["thread_id"].as_str().expect("id").to_owned());
            }
            _ => {}
        }
    }
    assert_eq!(
        repeats,
        Vec::from_iter(moved.clone()),
        "only the thread that moved down"
    );
    for n in (0..30).filter(|&n| n != 4) {
        let id = origin(&format!("c{n}-0@t"));
        assert!(
            seen.contains_key(&id),
            "conversation {n} was skipped: {seen:?}"
        );
    }
    assert!(!seen.contains_key(&origin("c4-0@t")), "{seen:?}");
    assert_eq!(seen.len(), 29);
    // Whatever got new mail is on top of a fresh list, newest first.
    let top = bridge
        .get_ok(&token, "/v1/mailboxes/INBOX/threads?limit=3")
        .await;
    let top_ids: Vec<&str> = top["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| t["thread_id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        top_ids,
        [origin("c30-0@t"), origin("c4-0@t"), origin("c24-0@t")]
    );
}

#[tokio::test]
async fn thread_pages_neither_skip_nor_repeat_on_dovecot() {
    paging_neither_skips_nor_repeats_while_mail_arrives(Profile::Dovecot).await;
}

#[tokio::test]
async fn thread_pages_neither_skip_nor_repeat_without_thread() {
    paging_neither_skips_nor_repeats_while_mail_arrives(Profile::Bare).await;
}

/// Unread counts follow flag changes made through the bridge and by another client, in the
/// full list and in a list of unread messages only (kept by HIGHESTMODSEQ where the server has
/// CONDSTORE, computed anew where it has not).
async fn unread_counts_follow_flags(profile: Profile) {
    let bridge = ServerBridge::start(profile).await;
    bridge.server.deliver_many(
        "INBOX",
        (0..3).map(|reply| conversation_message(1, reply)).collect(),
    );
    let token = bridge.login().await;
    let unread = |page: &Value| -> (u64, Vec<u64>) {
        let thread = &page["threads"][0];
        (
            thread["unread"].as_u64().expect("unread"),
            numbers(&thread["unread_uids"]),
        )
    };
    let all = "/v1/mailboxes/INBOX/threads";
    let unseen = "/v1/mailboxes/INBOX/threads?unseen=true";
    assert_eq!(
        unread(&bridge.get_ok(&token, all).await),
        (3, vec![1, 2, 3])
    );
    assert_eq!(
        uid_lists(&bridge.get_ok(&token, unseen).await),
        [vec![1, 2, 3]]
    );

    let (status, body) = bridge
        .send_json(
            Method::PATCH,
            &token,
            "/v1/mailboxes/INBOX/messages/2/flags",
            &json!({"add": ["\\Seen"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(unread(&bridge.get_ok(&token, all).await), (2, vec![1, 3]));
    assert_eq!(
        uid_lists(&bridge.get_ok(&token, unseen).await),
        [vec![1, 3]]
    );

    let mut direct = bridge.server.direct().await;
    direct.store("INBOX", "1,3", "+FLAGS (\\Seen)").await;
    direct.store("INBOX", "2", "-FLAGS (\\Seen)").await;
    let page = bridge.get_ok(&token, all).await;
    assert_eq!(unread(&page), (1, vec![2]));
    assert_eq!(page["threads"][0]["messages"], 3);
    assert_eq!(uid_lists(&bridge.get_ok(&token, unseen).await), [vec![2]]);
    let read = bridge
        .get_ok(&token, "/v1/mailboxes/INBOX/threads?unseen=false")
        .await;
    assert_eq!(uid_lists(&read), [vec![1, 3]]);
}

#[tokio::test]
async fn unread_counts_follow_flags_on_dovecot() {
    unread_counts_follow_flags(Profile::Dovecot).await;
}

#[tokio::test]
async fn unread_counts_follow_flags_without_condstore_or_thread() {
    unread_counts_follow_flags(Profile::Bare).await;
}

/// A message of the conversations spread across INBOX and Sent.
fn spread(id: &str, references: &str, from: &str, subject: &str, minute: usize) -> Vec<u8> {
    let mut head = format!(
        "From: {from}\r\nTo: Someone <someone@example.test>\r\nSubject: {subject}\r\n\
         Date: Tue, 07 May 2024 09:{minute:02}:00 +0000\r\nMessage-ID: {id}\r\n"
    );
    if !references.is_empty() {
        let parent = references.rsplit(' ').next().unwrap_or(references);
        head.push_str(&format!(
            "References: {references}\r\nIn-Reply-To: {parent}\r\n"
        ));
    }
    format!("{head}MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHi.\r\n").into_bytes()
}

/// `include_sent` joins the user's replies from Sent into the INBOX threads: a trip Bob
/// started, the user answered and Bob answered again; a question the user started from Sent
/// that Carol answered; and a message in Sent nobody answered, which lists nothing.
async fn sent_replies_join_their_threads(profile: Profile) {
    let bridge = ServerBridge::start(profile).await;
    let bob = "Bob <bob@example.test>";
    let me = "Alice <alice@example.test>";
    let carol = "Carol <carol@example.test>";
    bridge.server.deliver_many(
        "INBOX",
        vec![
            spread("<t1@bob>", "", bob, "Trip", 0),
            spread("<c1@carol>", "<s1@alice>", carol, "Re: Question", 20),
            spread("<t2@bob>", "<t1@bob> <r1@alice>", bob, "Re: Trip", 30),
        ],
    );
    bridge.server.deliver_many(
        "Sent",
        vec![
            spread("<s1@alice>", "", me, "Question", 5),
            spread("<r1@alice>", "<t1@bob>", me, "Re: Trip", 10),
            spread("<n1@alice>", "", me, "Unanswered", 15),
        ],
    );
    let token = bridge.login().await;
    let origin = |o: &str| ThreadId::derive(&[b"origin", o.as_bytes()]).to_string();

    let plain = bridge.get_ok(&token, "/v1/mailboxes/INBOX/threads").await;
    assert_eq!(uid_lists(&plain), [vec![1, 3], vec![2]], "{plain:#}");
    assert_eq!(plain["sent_mailbox"], Value::Null);
    let with_sent = bridge
        .get_ok(&token, "/v1/mailboxes/INBOX/threads?include_sent=true")
        .await;
    assert_eq!(with_sent["sent_mailbox"], "Sent", "{with_sent:#}");
    assert_eq!(
        uid_lists(&with_sent),
        [vec![1, 3], vec![2]],
        "the same order"
    );
    assert_eq!(with_sent["total"], 2, "a thread only in Sent is not listed");
    let trip = &with_sent["threads"][0];
    let question = &with_sent["threads"][1];
    // The ids are the same with and without Sent, even for the thread Sent started.
    assert_eq!(trip["thread_id"], origin("t1@bob").as_str());
    assert_eq!(question["thread_id"], origin("s1@alice").as_str());
    assert_eq!(
        plain["threads"][1]["thread_id"],
        origin("s1@alice").as_str()
    );
    assert_eq!(numbers(&trip["sent_uids"]), [2]);
    assert_eq!(trip["messages"], 3);
    assert_eq!(plain["threads"][0]["messages"], 2);
    assert_eq!(trip["unread"], 2, "the user's own mail is never unread");
    assert_eq!(question["subject"], "Question");
    assert_eq!(plain["threads"][1]["subject"], "Re: Question");
    let authors: Vec<&str> = trip["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|a| a["address"].as_str().expect("address"))
        .collect();
    assert_eq!(authors, ["bob@example.test", "alice@example.test"]);

    let path = format!(
        "/v1/mailboxes/INBOX/threads/{}?include_sent=true",
        origin("t1@bob")
    );
    let (status, thread) = bridge.get_json(&token, &path).await;
    assert_eq!(status, StatusCode::OK, "{thread}");
    let order: Vec<(&str, u64, u64)> = thread["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["mailbox"].as_str().expect("mailbox"),
                m["uid"].as_u64().expect("uid"),
                m["depth"].as_u64().expect("depth"),
            )
        })
        .collect();
    assert_eq!(order, [("INBOX", 1, 0), ("Sent", 2, 1), ("INBOX", 3, 2)]);
    assert_eq!(thread["sent_mailbox"], "Sent");
    assert_eq!(thread["messages"][1]["message_id"], "<r1@alice>");
    // Without Sent, Bob's second message sits where the user's reply would.
    let path = format!("/v1/mailboxes/INBOX/threads/{}", origin("t1@bob"));
    let (_, thread) = bridge.get_json(&token, &path).await;
    let depths: Vec<u64> = thread["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["depth"].as_u64().expect("depth"))
        .collect();
    assert_eq!(depths, [0, 1]);

    // A new reply in Sent joins its thread at once.
    bridge.server.deliver(
        "Sent",
        &spread(
            "<r2@alice>",
            "<t1@bob> <r1@alice> <t2@bob>",
            me,
            "Re: Trip",
            40,
        ),
        "S",
        None,
    );
    let again = bridge
        .get_ok(&token, "/v1/mailboxes/INBOX/threads?include_sent=true")
        .await;
    assert_eq!(numbers(&again["threads"][0]["sent_uids"]), [2, 4]);
}

#[tokio::test]
async fn sent_replies_join_their_threads_on_dovecot() {
    sent_replies_join_their_threads(Profile::Dovecot).await;
}

#[tokio::test]
async fn sent_replies_join_their_threads_on_cyrus() {
    sent_replies_join_their_threads(Profile::Cyrus).await;
}

#[tokio::test]
async fn sent_replies_join_their_threads_found_by_name() {
    sent_replies_join_their_threads(Profile::Bare).await;
}

/// Every bad input is a problem+json 4xx with a clear code that changed nothing on the
/// server; a server without THREAD is no reason for one.
async fn bad_input_is_refused(profile: Profile) {
    let bridge = seeded(profile).await;
    let token = bridge.login().await;
    let mut direct = bridge.server.direct().await;
    let before = direct.flag_map("INBOX").await;
    let page = bridge
        .get_ok(&token, "/v1/mailboxes/INBOX/threads?limit=2")
        .await;
    let cursor = page["next_cursor"].as_str().expect("a cursor").to_owned();
    let (_, messages) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?limit=2")
        .await;
    let message_cursor = messages["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    let uid_validity = page["uid_validity"].as_u64().expect("uid_validity");
    let stale = cursor.replacen(&format!("c1.{uid_validity}."), "c1.1.", 1);

    let bad = StatusCode::BAD_REQUEST;
    let threads = "/v1/mailboxes/INBOX/threads";
    for (path, status, code) in [
        (format!("{threads}?limit=0"), bad, "invalid_request"),
        (format!("{threads}?limit=201"), bad, "invalid_request"),
        (format!("{threads}?limit=x"), bad, "invalid_request"),
        (format!("{threads}?cursor=c1.1.2"), bad, "invalid_request"),
        (
            format!("{threads}?cursor={message_cursor}"),
            bad,
            "invalid_request",
        ),
        (
            format!("{threads}?unseen=true&cursor={cursor}"),
            bad,
            "invalid_request",
        ),
        (
            format!("{threads}?include_sent=true&cursor={cursor}"),
            bad,
            "invalid_request",
        ),
        (
            format!("/v1/mailboxes/INBOX/messages?cursor={cursor}"),
            bad,
            "invalid_request",
        ),
        (
            format!("{threads}?cursor={stale}"),
            StatusCode::CONFLICT,
            "uid_validity_changed",
        ),
        (
            format!("{threads}?subject=a%0D%0AX1%20DELETE%20INBOX"),
            bad,
            "invalid_request",
        ),
        (format!("{threads}?from="), bad, "invalid_request"),
        (
            format!("{threads}?since=2024-13-01"),
            bad,
            "invalid_request",
        ),
        (
            format!("{threads}?include_sent=maybe"),
            bad,
            "invalid_request",
        ),
        (format!("{threads}?sort=date"), bad, "invalid_request"),
        (format!("{threads}/t1.xyz"), bad, "invalid_request"),
        (
            format!("{threads}/t1.0123456789ABCDEF"),
            bad,
            "invalid_request",
        ),
        (
            format!("{threads}/t1.0123456789abcdef?limit=5"),
            bad,
            "invalid_request",
        ),
        (
            format!("{threads}/t1.0123456789abcdef"),
            StatusCode::NOT_FOUND,
            "thread_not_found",
        ),
        (
            "/v1/mailboxes/Nowhere/threads".to_owned(),
            StatusCode::NOT_FOUND,
            "mailbox_not_found",
        ),
        (
            "/v1/mailboxes/Nowhere/threads/t1.0123456789abcdef".to_owned(),
            StatusCode::NOT_FOUND,
            "mailbox_not_found",
        ),
        (
            "/v1/mailboxes/a%2A/threads".to_owned(),
            bad,
            "invalid_request",
        ),
    ] {
        let got = bridge.get_json(&token, &path).await;
        assert_problem(&got, status, code, &path);
    }
    let anonymous = bridge
        .request(Method::GET, threads, None)
        .send()
        .await
        .expect("request");
    assert_problem(
        &json_of(anonymous).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "no token",
    );
    assert_eq!(direct.flag_map("INBOX").await, before, "nothing changed");
    // The cursor still works after all that.
    let next = bridge
        .get_ok(&token, &format!("{threads}?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(uid_lists(&next), [vec![1, 2, 3, 9], vec![7, 8]]);
}

#[tokio::test]
async fn bad_thread_requests_are_refused_on_dovecot() {
    bad_input_is_refused(Profile::Dovecot).await;
}

#[tokio::test]
async fn bad_thread_requests_are_refused_without_thread() {
    bad_input_is_refused(Profile::Bare).await;
}
