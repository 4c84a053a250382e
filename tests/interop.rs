//! The same user stories on every server the bridge is tested against: Dovecot as it comes,
//! Dovecot advertising only what Gmail, Microsoft 365, a minimal `IMAP4rev1 IDLE` server or a
//! bare `IMAP4rev1` server does, and Cyrus IMAP (`tests/common/servers.rs` has the profiles).
//! Every endpoint either works on every profile or answers the documented problem that names
//! the capability the server lacks.
//!
//! Each story is one function taking the profile; `stories!` makes a test per (profile,
//! story), so `cargo nextest run --test interop minimal::` runs one profile.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::bridge::{DirectImap, assert_problem, seg};
use common::servers::{Profile, ServerBridge};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// A message with 8-bit text in its body only: header fields carry non-ASCII text in RFC 2047
/// encoded words, as mail software writes them (Cyrus turns raw 8-bit header bytes into `X`).
fn mail(subject: &str, from: (&str, &str), date: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {} <{}>\r\nTo: Alice <alice@example.test>\r\nSubject: {}\r\n\
         Date: {date}\r\nMessage-ID: <{}@example.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n",
        encoded_word(from.0),
        from.1,
        encoded_word(subject),
        rand_id(),
    )
    .into_bytes()
}

fn encoded_word(text: &str) -> String {
    use base64::Engine as _;
    if text.is_ascii() {
        text.to_owned()
    } else {
        format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(text)
        )
    }
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn plain(subject: &str) -> Vec<u8> {
    mail(
        subject,
        ("Sender", "sender@example.test"),
        "Mon, 06 May 2024 12:00:00 +0000",
        "Hello.",
    )
}

fn uids_of(list: &Value) -> Vec<u64> {
    list["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["uid"].as_u64().expect("uid"))
        .collect()
}

fn subjects_of(list: &Value) -> Vec<String> {
    list["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn direct(bridge: &ServerBridge) -> DirectImap {
    bridge.server.direct().await
}

/// The mailbox list by name.
async fn mailboxes(bridge: &ServerBridge, token: &str) -> Vec<Value> {
    let (status, body) = bridge.get_json(token, "/v1/mailboxes").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["mailboxes"].as_array().expect("mailboxes").clone()
}

fn find<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|m| m["name"] == name)
}

async fn mailboxes_are_listed_created_renamed_and_deleted(profile: Profile) {
    let bridge = ServerBridge::start(profile).await;
    let token = bridge.login().await;

    let list = mailboxes(&bridge, &token).await;
    assert_eq!(list[0]["name"], "INBOX", "INBOX first: {list:?}");
    // Roles come from SPECIAL-USE where the server has it, from well-known names otherwise.
    for (name, role) in [("Trash", "trash"), ("Sent", "sent"), ("Drafts", "drafts")] {
        let mailbox = find(&list, name).unwrap_or_else(|| panic!("{name} listed: {list:?}"));
        assert_eq!(mailbox["special_use"], role, "{mailbox}");
    }

    let create = |name: &str| json!({ "name": name });
    for name in ["Projekte/Überblick", "Projekte/Überblick/Unter", "abc]é"] {
        let got = bridge
            .send_json(Method::POST, &token, "/v1/mailboxes", &create(name))
            .await;
        assert_eq!(got.0, StatusCode::CREATED, "create {name}: {}", got.1);
    }
    let again = bridge
        .send_json(
            Method::POST,
            &token,
            "/v1/mailboxes",
            &create("Projekte/Überblick"),
        )
        .await;
    assert_problem(
        &again,
        StatusCode::CONFLICT,
        "conflict",
        "creating it twice",
    );

    // `]` then non-ASCII: a name like any other, and when unknown the server echoes it in
    // its NO, which must still be a 404.
    let odd = seg("abc]é");
    let mut events = bridge.events(&token, &["abc]é"], None).await;
    let res = bridge
        .request(
            Method::POST,
            &format!("/v1/mailboxes/{odd}/messages"),
            Some(&token),
        )
        .header("content-type", "message/rfc822")
        .body(plain("into abc]é"))
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status(), StatusCode::CREATED);
    let (status, body) = bridge
        .get_json(&token, &format!("/v1/mailboxes/{odd}/messages"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(subjects_of(&body), vec!["into abc]é".to_owned()]);
    let uid = uids_of(&body)[0];
    let new = events.next(WAIT).await.expect("an event in abc]é");
    assert_eq!(
        (new.event.as_str(), &new.data["mailbox"]),
        ("message.new", &json!("abc]é"))
    );
    drop(events);
    let moved = bridge
        .send_json(
            Method::POST,
            &token,
            &format!("/v1/mailboxes/{odd}/move"),
            &json!({"uids": [uid], "to": "INBOX"}),
        )
        .await;
    assert_eq!(moved.0, StatusCode::OK, "{}", moved.1);
    let missing = bridge
        .get_json(&token, &format!("/v1/mailboxes/{}/messages", seg("xyz]ü")))
        .await;
    assert_problem(
        &missing,
        StatusCode::NOT_FOUND,
        "mailbox_not_found",
        "unknown name with ] and ü",
    );

    // Renaming a parent moves its children and keeps them subscribed.
    let renamed = bridge
        .send_json(
            Method::PATCH,
            &token,
            &format!("/v1/mailboxes/{}", seg("Projekte")),
            &create("Arbeit"),
        )
        .await;
    assert_eq!(renamed.0, StatusCode::OK, "rename: {}", renamed.1);
    let list = mailboxes(&bridge, &token).await;
    for name in ["Arbeit/Überblick", "Arbeit/Überblick/Unter"] {
        let mailbox = find(&list, name).unwrap_or_else(|| panic!("{name} listed: {list:?}"));
        assert_eq!(mailbox["subscribed"], true, "{mailbox}");
    }
    assert!(find(&list, "Projekte/Überblick").is_none(), "{list:?}");

    // A parent with children is not deleted out from under them.
    let parent = bridge
        .send(
            Method::DELETE,
            &token,
            &format!("/v1/mailboxes/{}", seg("Arbeit/Überblick")),
        )
        .await;
    match parent.0 {
        StatusCode::CONFLICT => assert_eq!(parent.1["code"], "mailbox_has_children"),
        StatusCode::NO_CONTENT => {}
        other => panic!("deleting a parent: {other} {}", parent.1),
    }
    let list = mailboxes(&bridge, &token).await;
    assert!(
        find(&list, "Arbeit/Überblick/Unter").is_some(),
        "the child survives: {list:?}"
    );
    for name in ["Arbeit/Überblick/Unter", "abc]é"] {
        let gone = bridge
            .send(
                Method::DELETE,
                &token,
                &format!("/v1/mailboxes/{}", seg(name)),
            )
            .await;
        assert_eq!(gone.0, StatusCode::NO_CONTENT, "delete {name}: {}", gone.1);
    }
    let list = mailboxes(&bridge, &token).await;
    assert!(find(&list, "abc]é").is_none(), "{list:?}");
    let twice = bridge
        .send(
            Method::DELETE,
            &token,
            &format!("/v1/mailboxes/{}", seg("abc]é")),
        )
        .await;
    assert_problem(
        &twice,
        StatusCode::NOT_FOUND,
        "mailbox_not_found",
        "deleting a deleted mailbox",
    );
}

async fn header_lists_page_filter_and_sort(profile: Profile) {
    let bridge = ServerBridge::start(profile).await;
    let mut messages = Vec::new();
    for i in 0..30 {
        let (subject, from) = match i % 10 {
            3 => (
                format!("Grüße aus Köln {i}"),
                ("Jürgen Müller", "jm@example.test"),
            ),
            7 => (format!("Rechnung {i}"), ("Billing", "billing@example.test")),
            _ => (format!("Message {i}"), ("Sender", "sender@example.test")),
        };
        let date = format!("Mon, {:02} May 2024 12:00:00 +0000", 1 + (i * 7) % 28);
        messages.push(mail(&subject, from, &date, "Text."));
    }
    bridge.server.deliver_many("INBOX", messages);
    let token = bridge.login().await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/mailboxes/INBOX/messages?limit=12&cursor={c}"),
            None => "/v1/mailboxes/INBOX/messages?limit=12".to_owned(),
        };
        let (status, page) = bridge.get_json(&token, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(uids_of(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 30, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seen:?}"
    );

    // Non-ASCII search strings travel as literals, synchronising ones without LITERAL+.
    let (status, found) = bridge
        .get_json(
            &token,
            "/v1/mailboxes/INBOX/messages?subject=Gr%C3%BC%C3%9Fe",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let subjects = subjects_of(&found);
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    assert!(subjects.iter().all(|s| s.starts_with("Grüße aus Köln")));
    let (status, found) = bridge
        .get_json(
            &token,
            "/v1/mailboxes/INBOX/messages?from=M%C3%BCller&subject=K%C3%B6ln",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(subjects_of(&found).len(), 3, "{found}");

    let sorted = bridge
        .get_json(
            &token,
            "/v1/mailboxes/INBOX/messages?sort=subject&order=asc",
        )
        .await;
    if bridge.has("SORT") {
        assert_eq!(sorted.0, StatusCode::OK, "{}", sorted.1);
        let subjects = subjects_of(&sorted.1);
        let mut expected = subjects.clone();
        expected.sort();
        assert_eq!(subjects, expected);
    } else {
        assert_problem(
            &sorted,
            StatusCode::NOT_IMPLEMENTED,
            "upstream_capability_missing",
            "sorting without SORT",
        );
        assert!(
            sorted.1["detail"].as_str().unwrap_or("").contains("SORT"),
            "the problem names the capability: {}",
            sorted.1
        );
    }
}

async fn messages_open_with_their_parts(profile: Profile) {
    let bridge = ServerBridge::start(profile).await;
    let attachment: Vec<u8> = (0..10_239u32).map(|i| (i % 251) as u8).collect();
    let encoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&attachment)
    };
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("base64"))
        .collect();
    let raw = format!(
        "From: =?utf-8?q?J=C3=BCrgen?= <j@example.test>\r\nTo: alice@example.test\r\n\
         Subject: =?utf-8?b?QmVyaWNodCDDvGJlciBkYXMgSmFocg==?=\r\n\
         Date: Tue, 07 May 2024 09:30:00 +0200\r\nMessage-ID: <report@example.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Der Bericht hängt an.\r\n\
         --b1\r\nContent-Type: application/octet-stream; name=\"daten.bin\"\r\n\
         Content-Disposition: attachment; filename=\"daten.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        lines.join("\r\n")
    );
    bridge.server.deliver("INBOX", raw.as_bytes(), "", None);
    let token = bridge.login().await;
    let (_, list) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    let uid = uids_of(&list)[0];
    let (status, message) = bridge
        .get_json(&token, &format!("/v1/mailboxes/INBOX/messages/{uid}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["subject"], "Bericht über das Jahr");
    assert_eq!(message["from"][0]["name"], "Jürgen");
    assert!(
        message["text"]
            .as_str()
            .unwrap_or("")
            .contains("Der Bericht hängt an.")
    );
    let attachments = message["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1, "{message}");
    assert_eq!(attachments[0]["filename"], "daten.bin");
    assert_eq!(
        attachments[0]["size"], 10_239,
        "listed size is the decoded size"
    );
    let part = attachments[0]["part_id"].as_str().expect("part id");
    let res = bridge
        .request(
            Method::GET,
            &format!("/v1/mailboxes/INBOX/messages/{uid}/attachments/{part}"),
            Some(&token),
        )
        .send()
        .await
        .expect("download");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.expect("body").as_ref(), attachment);

    let res = bridge
        .request(
            Method::GET,
            &format!("/v1/mailboxes/INBOX/messages/{uid}/raw"),
            Some(&token),
        )
        .header("range", "bytes=0-9")
        .send()
        .await
        .expect("raw");
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        res.bytes().await.expect("body").as_ref(),
        &raw.as_bytes()[..10]
    );

    let missing = bridge
        .get_json(
            &token,
            &format!("/v1/mailboxes/INBOX/messages/{}", uid + 100),
        )
        .await;
    assert_problem(
        &missing,
        StatusCode::NOT_FOUND,
        "message_not_found",
        "unknown UID",
    );
}

async fn flags_change_and_read_back(profile: Profile) {
    let bridge = ServerBridge::start(profile).await;
    bridge
        .server
        .deliver_many("INBOX", (0..4).map(|i| plain(&format!("m{i}"))).collect());
    let token = bridge.login().await;
    let (_, list) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    let uids = uids_of(&list);

    let (status, one) = bridge
        .send_json(
            Method::PATCH,
            &token,
            &format!("/v1/mailboxes/INBOX/messages/{}/flags", uids[0]),
            &json!({"add": ["\\Seen", "$Work"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    let flags: BTreeSet<&str> = one["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(flags, BTreeSet::from(["\\Seen", "$Work"]));

    let (status, bulk) = bridge
        .send_json(
            Method::POST,
            &token,
            "/v1/mailboxes/INBOX/flags",
            &json!({"uids": &uids[1..], "add": ["\\Flagged"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{bulk}");
    assert_eq!(bulk["updated"].as_array().expect("updated").len(), 3);

    let mut imap = direct(&bridge).await;
    let on_server = imap.flag_map("INBOX").await;
    for uid in &uids[1..] {
        let uid = u32::try_from(*uid).expect("u32");
        assert!(on_server[&uid].contains("\\Flagged"), "{on_server:?}");
    }
}

/// The newest page of 10 as the bridge lists it: UID → flags.
async fn page_flags(bridge: &ServerBridge, token: &str) -> Vec<(u32, BTreeSet<String>)> {
    let (status, list) = bridge
        .get_json(token, "/v1/mailboxes/INBOX/messages?limit=10&preview=false")
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            let uid = u32::try_from(m["uid"].as_u64().expect("uid")).expect("u32");
            let flags = m["flags"]
                .as_array()
                .expect("flags")
                .iter()
                .map(|f| f.as_str().expect("flag").to_owned())
                .collect();
            (uid, flags)
        })
        .collect()
}

/// Asserts that the bridge's newest page of 10 is the server's 10 newest messages, each with
/// the flags the server holds; returns their UIDs, newest first.
async fn page_matches_server(
    bridge: &ServerBridge,
    token: &str,
    imap: &mut DirectImap,
    step: &str,
) -> Vec<u32> {
    let page = page_flags(bridge, token).await;
    let server = imap.flag_map("INBOX").await;
    let expected: Vec<(u32, BTreeSet<String>)> = server
        .iter()
        .rev()
        .take(10)
        .map(|(uid, flags)| (*uid, flags.clone()))
        .collect();
    assert_eq!(
        page, expected,
        "{step}: the bridge's page against the server's flags"
    );
    page.into_iter().map(|(uid, _)| uid).collect()
}

/// A first page asked for again and again (its summaries cached and its flags read anew each
/// time; with CONDSTORE only the flags changed since its last read) shows what the server
/// holds after every change: flags another client adds and removes, on one message and on
/// several, a change made through the bridge, an expunge inside the page, new mail.
async fn repeated_pages_show_every_change(profile: Profile) {
    let bridge = ServerBridge::start(profile).await;
    bridge
        .server
        .deliver_many("INBOX", (0..30).map(|i| plain(&format!("r{i}"))).collect());
    let token = bridge.login().await;
    let mut imap = direct(&bridge).await;
    page_matches_server(&bridge, &token, &mut imap, "first page").await;
    let uids = page_matches_server(&bridge, &token, &mut imap, "repeat").await;

    imap.store("INBOX", &uids[3].to_string(), "+FLAGS (\\Flagged)")
        .await;
    page_matches_server(&bridge, &token, &mut imap, "one message flagged").await;
    imap.store("INBOX", &uids[3].to_string(), "-FLAGS (\\Flagged)")
        .await;
    page_matches_server(&bridge, &token, &mut imap, "the flag removed").await;
    imap.store(
        "INBOX",
        &format!("{},{}", uids[0], uids[9]),
        "+FLAGS (\\Seen \\Answered)",
    )
    .await;
    page_matches_server(&bridge, &token, &mut imap, "two messages changed").await;
    page_matches_server(&bridge, &token, &mut imap, "nothing new").await;

    let (status, body) = bridge
        .send_json(
            Method::PATCH,
            &token,
            &format!("/v1/mailboxes/INBOX/messages/{}/flags", uids[5]),
            &json!({"add": ["\\Flagged"], "remove": []}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    page_matches_server(&bridge, &token, &mut imap, "changed through the bridge").await;

    imap.expunge_set("INBOX", &uids[4].to_string()).await;
    let after = page_matches_server(&bridge, &token, &mut imap, "one expunged").await;
    assert!(!after.contains(&uids[4]), "{after:?}");
    imap.store("INBOX", &uids[6].to_string(), "+FLAGS (\\Seen)")
        .await;
    page_matches_server(&bridge, &token, &mut imap, "a change after the expunge").await;

    bridge.server.deliver("INBOX", &plain("newest"), "", None);
    let with_new = page_matches_server(&bridge, &token, &mut imap, "new mail").await;
    assert!(with_new[0] > uids[0], "{with_new:?}");
    page_matches_server(&bridge, &token, &mut imap, "new mail, again").await;
    imap.store("INBOX", &with_new[0].to_string(), "+FLAGS (\\Seen)")
        .await;
    page_matches_server(&bridge, &token, &mut imap, "the new message read").await;
}

async fn moves_copies_and_deletes_touch_only_the_named_messages(profile: Profile) {
    let bridge = ServerBridge::start(profile).await;
    bridge
        .server
        .deliver_many("INBOX", (0..6).map(|i| plain(&format!("m{i}"))).collect());
    bridge.server.create_mailbox("Archive/2024");
    let token = bridge.login().await;
    let (_, list) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?order=asc")
        .await;
    let uids = uids_of(&list);
    let (keep, copy, moved, trashed, purged, bystander) =
        (uids[0], uids[1], uids[2], uids[3], uids[4], uids[5]);
    let uidplus = bridge.has("UIDPLUS");

    let (status, copied) = bridge
        .send_json(
            Method::POST,
            &token,
            "/v1/mailboxes/INBOX/copy",
            &json!({"uids": [copy], "to": "Archive/2024"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{copied}");
    assert_eq!(copied["results"][0]["uid"], copy);
    // Dovecot sends COPYUID even when told not to advertise UIDPLUS; a real server without
    // it sends none, and the bridge reports null then.
    if uidplus {
        assert!(copied["results"][0]["new_uid"].is_u64(), "{copied}");
    }

    // Another client marked a message deleted without expunging it: no operation of the
    // bridge may expunge it.
    let mut imap = direct(&bridge).await;
    imap.store("INBOX", &bystander.to_string(), "+FLAGS (\\Deleted)")
        .await;

    let move_request = json!({"uids": [moved], "to": "Archive/2024"});
    let got = bridge
        .send_json(
            Method::POST,
            &token,
            "/v1/mailboxes/INBOX/move",
            &move_request,
        )
        .await;
    if bridge.has("MOVE") || uidplus {
        assert_eq!(got.0, StatusCode::OK, "{}", got.1);
        if uidplus {
            assert!(got.1["results"][0]["new_uid"].is_u64(), "{}", got.1);
        }
    } else {
        // Without MOVE and UIDPLUS an EXPUNGE removes every \Deleted message: the bridge
        // refuses rather than expunge the other client's message, and says why.
        assert_problem(
            &got,
            StatusCode::CONFLICT,
            "other_messages_deleted",
            "move beside another \\Deleted message",
        );
        let on_server = imap.flag_map("INBOX").await;
        assert!(
            on_server.contains_key(&(moved as u32)) && on_server.contains_key(&(bystander as u32)),
            "nothing was expunged: {on_server:?}"
        );
        assert!(
            !on_server[&(moved as u32)].contains("\\Deleted"),
            "the refused move left no \\Deleted behind: {on_server:?}"
        );
        // Once the other message is expunged, the same move works the way mail clients do it.
        imap.expunge_set("INBOX", &bystander.to_string()).await;
        let got = bridge
            .send_json(
                Method::POST,
                &token,
                "/v1/mailboxes/INBOX/move",
                &move_request,
            )
            .await;
        assert_eq!(got.0, StatusCode::OK, "{}", got.1);
        assert_eq!(got.1["results"][0]["uid"], moved, "{}", got.1);
    }
    let in_archive = imap.uids("Archive/2024").await;
    assert_eq!(
        in_archive.len(),
        2,
        "the copy and the moved message: {in_archive:?}"
    );

    let gone = bridge
        .send(
            Method::DELETE,
            &token,
            &format!("/v1/mailboxes/INBOX/messages/{trashed}"),
        )
        .await;
    let purge = bridge
        .send(
            Method::DELETE,
            &token,
            &format!("/v1/mailboxes/INBOX/messages/{purged}?permanent=true"),
        )
        .await;
    assert_eq!(gone.0, StatusCode::NO_CONTENT, "to Trash: {}", gone.1);
    assert_eq!(purge.0, StatusCode::NO_CONTENT, "expunged: {}", purge.1);
    assert_eq!(imap.uids("Trash").await.len(), 1);

    let inbox: Vec<u64> = imap
        .uids("INBOX")
        .await
        .into_iter()
        .map(u64::from)
        .collect();
    let mut expected = vec![keep, copy];
    if bridge.has("MOVE") || uidplus {
        expected.push(bystander);
    }
    assert_eq!(inbox, expected, "only the named messages left INBOX");

    let missing = bridge
        .send(
            Method::DELETE,
            &token,
            &format!("/v1/mailboxes/INBOX/messages/{trashed}"),
        )
        .await;
    assert_problem(
        &missing,
        StatusCode::NOT_FOUND,
        "message_not_found",
        "deleting it twice",
    );
}

async fn uploads_are_stored(profile: Profile) {
    let bridge = ServerBridge::start(profile).await;
    let token = bridge.login().await;
    let draft = mail(
        "Entwurf für später",
        ("Alice", "alice@example.test"),
        "Wed, 08 May 2024 10:00:00 +0000",
        "Noch nicht fertig.",
    );
    let res = bridge
        .request(
            Method::POST,
            "/v1/mailboxes/Drafts/messages?flags=%5CDraft",
            Some(&token),
        )
        .header("content-type", "message/rfc822")
        .body(draft.clone())
        .send()
        .await
        .expect("upload");
    let (status, body) = common::bridge::json_of(res).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut imap = direct(&bridge).await;
    let stored = imap.uids("Drafts").await;
    assert_eq!(stored.len(), 1);
    if bridge.has("UIDPLUS") {
        assert_eq!(body["uid"], stored[0], "{body}");
    }
    assert_eq!(
        imap.raw_message("Drafts", stored[0]).await.as_deref(),
        Some(draft.as_slice())
    );
}

async fn changes_report_arrivals_flag_changes_and_expunges(profile: Profile) {
    let bridge = ServerBridge::start(profile).await;
    bridge
        .server
        .deliver_many("INBOX", (0..5).map(|i| plain(&format!("m{i}"))).collect());
    let token = bridge.login().await;
    let (_, list) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?order=asc")
        .await;
    let uids = uids_of(&list);
    let state = list["state"].as_str().expect("state").to_owned();

    let mut imap = direct(&bridge).await;
    imap.store("INBOX", &uids[1].to_string(), "+FLAGS (\\Flagged)")
        .await;
    // The highest UID goes, and nothing arrives after it: servers that read `*` as the
    // highest UID still there cannot report it from `1:*`.
    imap.expunge_set("INBOX", &uids[4].to_string()).await;

    let (status, changes) = bridge
        .get_json(
            &token,
            &format!("/v1/mailboxes/INBOX/changes?since={state}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changes}");
    assert_eq!(changes["created"], json!([]), "{changes}");
    let updated: Vec<u64> = changes["updated"]
        .as_array()
        .expect("updated")
        .iter()
        .map(|u| u["uid"].as_u64().expect("uid"))
        .collect();
    assert!(updated.contains(&uids[1]), "{changes}");
    if bridge.has("QRESYNC") {
        assert_eq!(updated, vec![uids[1]], "exact with QRESYNC: {changes}");
    }
    assert_eq!(changes["destroyed"], json!([uids[4]]), "{changes}");

    bridge.server.deliver("INBOX", &plain("new"), "", None);
    let next = changes["state"].as_str().expect("state");
    let (status, again) = bridge
        .get_json(&token, &format!("/v1/mailboxes/INBOX/changes?since={next}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        again["created"].as_array().map(Vec::len),
        Some(1),
        "{again}"
    );
    if bridge.has("QRESYNC") {
        assert_eq!(again["updated"], json!([]), "{again}");
        assert_eq!(again["destroyed"], json!([]), "{again}");
    } else {
        // Without mod-sequences an old expunge looks like a new one: reported again, never
        // anything that still exists.
        assert_eq!(again["destroyed"], json!([uids[4]]), "{again}");
    }
}

async fn events_deliver_new_flags_and_expunged(profile: Profile) {
    let bridge = ServerBridge::start(profile).await;
    bridge
        .server
        .deliver("INBOX", &plain("already here"), "", None);
    let token = bridge.login().await;
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    // Let the watcher reach IDLE, so the delivery is a change it hears of.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let delivered = Instant::now();
    bridge
        .server
        .deliver("INBOX", &plain("delivered"), "", None);
    let new = events.next(WAIT).await.expect("an event for the delivery");
    let latency = delivered.elapsed();
    assert_eq!(new.event, "message.new", "{new:?}");
    assert_eq!(new.data["subject"], "delivered");
    let uid = new.data["uid"].as_u64().expect("uid");
    println!(
        "{}: delivery to message.new in {} ms",
        profile.name(),
        latency.as_millis()
    );

    let mut imap = direct(&bridge).await;
    imap.store("INBOX", &uid.to_string(), "+FLAGS (\\Flagged)")
        .await;
    let flags = events.next(WAIT).await.expect("an event for the flag");
    assert_eq!(flags.event, "message.flags", "{flags:?}");
    assert_eq!(flags.data["uid"], uid);
    assert!(
        flags.data["flags"]
            .as_array()
            .expect("flags")
            .contains(&json!("\\Flagged")),
        "{flags:?}"
    );

    // The highest UID is expunged: it must still be announced, and only once. A server that
    // tells IDLE at once (Cyrus) announces the `\Deleted` set just before as a flag change.
    imap.expunge_set("INBOX", &uid.to_string()).await;
    let mut gone = events.next(WAIT).await.expect("an event for the expunge");
    if gone.event == "message.flags" {
        assert!(
            gone.data["flags"]
                .as_array()
                .is_some_and(|f| f.contains(&json!("\\Deleted"))),
            "{gone:?}"
        );
        gone = events.next(WAIT).await.expect("an event for the expunge");
    }
    assert_eq!(gone.event, "message.expunged", "{gone:?}");
    assert_eq!(gone.data["uid"], uid);

    // A second expunge is announced alone: servers whose VANISHED (EARLIER) reports more
    // than changed must not make the stream repeat the first.
    let first = imap.uids("INBOX").await[0];
    imap.expunge_set("INBOX", &first.to_string()).await;
    let mut gone = events
        .next(WAIT)
        .await
        .expect("an event for the second expunge");
    if gone.event == "message.flags" {
        gone = events
            .next(WAIT)
            .await
            .expect("an event for the second expunge");
    }
    assert_eq!(gone.event, "message.expunged", "{gone:?}");
    assert_eq!(gone.data["uid"], first);

    bridge.server.deliver("INBOX", &plain("one more"), "", None);
    let next = events
        .next(WAIT)
        .await
        .expect("an event for the next delivery");
    assert_eq!(
        next.event, "message.new",
        "nothing repeated before it: {next:?}"
    );
    let later = events.next(Duration::from_millis(1500)).await;
    assert!(later.is_none(), "nothing repeated after it: {later:?}");
}

async fn events_resume_or_reset(profile: Profile) {
    let bridge = ServerBridge::start(profile).await;
    let token = bridge.login().await;
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    bridge.server.deliver("INBOX", &plain("first"), "", None);
    let first = events.next(WAIT).await.expect("first event");
    assert_eq!(first.event, "message.new");
    let last_id = events.last_id.clone().expect("an id");
    drop(events);

    bridge.server.deliver("INBOX", &plain("missed"), "", None);
    let mut resumed = bridge.events(&token, &["INBOX"], Some(&last_id)).await;
    let replayed = resumed.next(WAIT).await.expect("a replay or a reset");
    if bridge.has("QRESYNC") {
        assert_eq!(replayed.event, "message.new", "{replayed:?}");
        assert_eq!(replayed.data["subject"], "missed");
    } else {
        assert_eq!(replayed.event, "mailbox.reset", "{replayed:?}");
        assert_eq!(replayed.data["mailbox"], "INBOX");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    bridge
        .server
        .deliver("INBOX", &plain("live again"), "", None);
    let live = resumed.next(WAIT).await.expect("live event after resuming");
    assert_eq!(live.event, "message.new", "{live:?}");
    assert_eq!(live.data["subject"], "live again");
}

/// One test per (profile, story).
macro_rules! stories {
    ($profile:expr) => {
        stories!(@each $profile;
            mailboxes_are_listed_created_renamed_and_deleted,
            header_lists_page_filter_and_sort,
            messages_open_with_their_parts,
            flags_change_and_read_back,
            repeated_pages_show_every_change,
            moves_copies_and_deletes_touch_only_the_named_messages,
            uploads_are_stored,
            changes_report_arrivals_flag_changes_and_expunges,
            events_deliver_new_flags_and_expunged,
            events_resume_or_reset,
        );
    };
    (@each $profile:expr; $($story:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $story() {
                super::$story($profile).await;
            }
        )*
    };
}

mod dovecot {
    stories!(super::Profile::Dovecot);
}

mod gmail {
    stories!(super::Profile::Gmail);
}

mod exchange {
    stories!(super::Profile::Exchange);
}

mod minimal {
    stories!(super::Profile::Minimal);
}

mod bare {
    stories!(super::Profile::Bare);
}

mod cyrus {
    stories!(super::Profile::Cyrus);
}
