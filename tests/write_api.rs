//! Changing mail over HTTP against a real Dovecot: flags, move and copy, delete, upload, and
//! folders. Every change is checked twice: in the API's answer and on the server itself, read
//! over a separate IMAP session; every refused request is checked to have sent nothing.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::bridge::{FlagSet, Link, TestBridge, USER, assert_problem, json_of, seg};
use common::corpus;
use common::dovecot::DovecotOptions;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `Проекты/Über` as IMAP LIST spells it (modified UTF-7).
const PROJECTS_UEBER_MUTF7: &str = "&BB8EQAQ+BDUEOgRCBEs-/&ANw-ber";

/// A bridge over TLS with `n` bulk messages in INBOX (UIDs 1..=n, no flags).
async fn bridge_with_inbox(n: usize, opts: DovecotOptions) -> TestBridge {
    let bridge = TestBridge::start_with(opts, Link::Tls, |_| {}).await;
    bridge
        .dovecot
        .deliver_many(USER, "INBOX", corpus::bulk(n, 1));
    bridge
}

fn rawlog() -> DovecotOptions {
    DovecotOptions {
        rawlog: true,
        ..DovecotOptions::default()
    }
}

/// Flags of a JSON `flags` array, as a set.
fn flag_set(flags: &Value) -> FlagSet {
    flags
        .as_array()
        .unwrap_or_else(|| panic!("flags array: {flags}"))
        .iter()
        .map(|f| f.as_str().expect("flag string").to_owned())
        .collect()
}

fn set_of(flags: &[&str]) -> FlagSet {
    flags.iter().map(|f| (*f).to_owned()).collect()
}

fn u32_of(v: &Value) -> u32 {
    u32::try_from(v.as_u64().unwrap_or_else(|| panic!("number: {v}"))).expect("u32")
}

/// `(uid, new_uid)` pairs of a move or copy answer.
fn transfers(body: &Value) -> Vec<(u32, Option<u32>)> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("results: {body}"))
        .iter()
        .map(|r| {
            (
                u32_of(&r["uid"]),
                (!r["new_uid"].is_null()).then(|| u32_of(&r["new_uid"])),
            )
        })
        .collect()
}

async fn patch_flags(
    bridge: &TestBridge,
    token: &str,
    mailbox: &str,
    uid: u32,
    body: Value,
) -> (StatusCode, Value) {
    bridge
        .send_json(
            Method::PATCH,
            token,
            &format!("/v1/mailboxes/{}/messages/{uid}/flags", seg(mailbox)),
            &body,
        )
        .await
}

async fn post(bridge: &TestBridge, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    bridge.send_json(Method::POST, token, path, &body).await
}

// ---------------------------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_user_marks_a_message_read_flagged_and_labelled() {
    let bridge = bridge_with_inbox(5, DovecotOptions::default()).await;
    let token = bridge.login().await;
    let mut imap = bridge.imap().await;

    // Add and remove in one request; the answer is the server's view afterwards.
    let (status, body) = patch_flags(
        &bridge,
        &token,
        "INBOX",
        2,
        json!({"add": ["\\Seen", "\\Flagged", "$Label1", "Work"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["uid"], 2);
    let want = set_of(&["\\Seen", "\\Flagged", "$Label1", "Work"]);
    assert_eq!(flag_set(&body["flags"]), want);
    let on_server = imap.flag_map("INBOX").await;
    assert_eq!(on_server[&2], want, "the server holds what the API said");
    for uid in [1, 3, 4, 5] {
        assert!(on_server[&uid].is_empty(), "uid {uid} untouched");
    }

    let (status, body) = patch_flags(
        &bridge,
        &token,
        "INBOX",
        2,
        json!({"add": ["\\Answered"], "remove": ["\\Flagged", "Work"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let want = set_of(&["\\Seen", "\\Answered", "$Label1"]);
    assert_eq!(flag_set(&body["flags"]), want);
    assert_eq!(imap.flag_map("INBOX").await[&2], want);

    // `set` replaces everything, system flags and keywords alike.
    let (status, body) = patch_flags(
        &bridge,
        &token,
        "INBOX",
        2,
        json!({"set": ["\\Draft", "Work"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(flag_set(&body["flags"]), set_of(&["\\Draft", "Work"]));
    assert_eq!(
        imap.flag_map("INBOX").await[&2],
        set_of(&["\\Draft", "Work"])
    );

    // The answer reflects the server, including what another client did meanwhile.
    imap.store("INBOX", "2", "+FLAGS ($FromElsewhere)").await;
    let (status, body) = patch_flags(&bridge, &token, "INBOX", 2, json!({"add": ["\\Seen"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        flag_set(&body["flags"]),
        set_of(&["\\Draft", "Work", "$FromElsewhere", "\\Seen"])
    );

    // An empty `set` clears every flag.
    let (status, body) = patch_flags(&bridge, &token, "INBOX", 2, json!({"set": []})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(flag_set(&body["flags"]).is_empty(), "{body}");
    assert!(imap.flag_map("INBOX").await[&2].is_empty());

    // Missing message, missing mailbox.
    let got = patch_flags(&bridge, &token, "INBOX", 99, json!({"add": ["\\Seen"]})).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "message_not_found", "uid 99");
    let got = patch_flags(&bridge, &token, "Nope", 1, json!({"add": ["\\Seen"]})).await;
    assert_problem(
        &got,
        StatusCode::NOT_FOUND,
        "mailbox_not_found",
        "mailbox Nope",
    );
    assert!(
        imap.flag_map("INBOX")
            .await
            .values()
            .all(BTreeSet::is_empty),
        "nothing else was flagged"
    );
}

#[tokio::test]
async fn many_messages_are_flagged_at_once_and_unknown_uids_are_skipped() {
    let bridge = bridge_with_inbox(10, DovecotOptions::default()).await;
    let token = bridge.login().await;
    let mut imap = bridge.imap().await;

    let (status, body) = post(
        &bridge,
        &token,
        "/v1/mailboxes/INBOX/flags",
        json!({"uids": [9, 1, 3, 5, 7, 1000, 4_000_000_000u32], "add": ["\\Seen", "$Label1"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let updated: BTreeMap<u32, FlagSet> = body["updated"]
        .as_array()
        .expect("updated")
        .iter()
        .map(|u| (u32_of(&u["uid"]), flag_set(&u["flags"])))
        .collect();
    let read_labelled = set_of(&["\\Seen", "$Label1"]);
    assert_eq!(
        updated.keys().copied().collect::<Vec<_>>(),
        vec![1, 3, 5, 7, 9],
        "UIDs that do not exist are absent"
    );
    assert!(updated.values().all(|f| *f == read_labelled), "{body}");
    let on_server = imap.flag_map("INBOX").await;
    for (uid, flags) in &on_server {
        let want = if uid % 2 == 1 {
            read_labelled.clone()
        } else {
            FlagSet::new()
        };
        assert_eq!(*flags, want, "uid {uid}");
    }

    let (status, body) = post(
        &bridge,
        &token,
        "/v1/mailboxes/INBOX/flags",
        json!({"uids": [1, 2, 3], "remove": ["\\Seen"], "add": ["\\Flagged"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["updated"].as_array().expect("updated").len(), 3);
    let on_server = imap.flag_map("INBOX").await;
    assert_eq!(on_server[&1], set_of(&["$Label1", "\\Flagged"]));
    assert_eq!(on_server[&2], set_of(&["\\Flagged"]));
    assert_eq!(on_server[&5], read_labelled, "not named, not changed");

    let (status, body) = post(
        &bridge,
        &token,
        "/v1/mailboxes/INBOX/flags",
        json!({"uids": [1, 5], "set": ["Done"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let on_server = imap.flag_map("INBOX").await;
    assert_eq!(on_server[&1], set_of(&["Done"]));
    assert_eq!(on_server[&5], set_of(&["Done"]));

    // Only unknown UIDs: nothing to report, nothing wrong.
    let (status, body) = post(
        &bridge,
        &token,
        "/v1/mailboxes/INBOX/flags",
        json!({"uids": [500, 501], "add": ["\\Seen"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["updated"], json!([]));
}

#[tokio::test]
async fn hostile_flags_and_uid_lists_are_refused_before_anything_reaches_the_server() {
    let bridge = bridge_with_inbox(3, rawlog()).await;
    let token = bridge.login().await;
    let mut imap = bridge.imap().await;
    imap.store("INBOX", "1", "+FLAGS (\\Seen Keep)").await;
    let before = imap.flag_map("INBOX").await;
    // Warm the bridge's session, then let the login check's session go.
    let (status, _) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    assert_eq!(status, StatusCode::OK);
    bridge.settle_connections(2).await;
    let log_before = bridge.dovecot.rawlog_in(USER);

    let too_long = "k".repeat(101);
    let hostile = [
        "\\Recent",
        "\\Bogus",
        "\\",
        "a b",
        "(x)",
        "x]",
        "\"q\"",
        "{5}",
        "{5+}",
        "a\r\nA1 DELETE INBOX",
        "a\nb",
        "nul\0",
        "star*",
        "per%cent",
        "",
        too_long.as_str(),
        "Über",
        "日本",
    ];
    for flag in hostile {
        for body in [
            json!({"add": [flag]}),
            json!({"remove": [flag]}),
            json!({"set": [flag]}),
            json!({"add": ["\\Seen", flag]}),
        ] {
            let got = patch_flags(&bridge, &token, "INBOX", 1, body.clone()).await;
            assert_problem(
                &got,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("{body}"),
            );
        }
        let got = post(
            &bridge,
            &token,
            "/v1/mailboxes/INBOX/flags",
            json!({"uids": [1, 2], "add": [flag]}),
        )
        .await;
        assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_request", flag);
    }

    let too_many: Vec<u32> = (1..=1001).collect();
    let many_flags: Vec<String> = (0..51).map(|i| format!("k{i}")).collect();
    let bad_bodies = [
        json!({"set": ["\\Seen"], "add": ["\\Flagged"]}),
        json!({"set": ["\\Seen"], "remove": ["\\Flagged"]}),
        json!({}),
        json!({"add": many_flags}),
        json!({"add": ["\\Seen"], "colour": "red"}),
        json!({"add": "\\Seen"}),
    ];
    for body in &bad_bodies {
        let got = patch_flags(&bridge, &token, "INBOX", 1, body.clone()).await;
        assert_problem(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &body.to_string(),
        );
    }
    let bad_bulk = [
        json!({"uids": too_many, "add": ["\\Seen"]}),
        json!({"uids": [], "add": ["\\Seen"]}),
        json!({"uids": [1, 0], "add": ["\\Seen"]}),
        json!({"uids": [-1], "add": ["\\Seen"]}),
        json!({"uids": [4_294_967_296u64], "add": ["\\Seen"]}),
        json!({"uids": [1], "set": ["\\Seen"], "add": ["\\Flagged"]}),
        json!({"uids": [1]}),
    ];
    for body in &bad_bulk {
        let got = post(&bridge, &token, "/v1/mailboxes/INBOX/flags", body.clone()).await;
        let what = body.to_string();
        assert_problem(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &what[..what.len().min(80)],
        );
    }
    let got = patch_flags(&bridge, &token, "INBOX", 0, json!({"add": ["\\Seen"]})).await;
    assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_request", "uid 0");
    let res = bridge
        .request(
            Method::PATCH,
            "/v1/mailboxes/INBOX/messages/1/flags",
            Some(&token),
        )
        .body("add=\\Seen")
        .send()
        .await
        .expect("request");
    let got = json_of(res).await;
    assert_problem(
        &got,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "form body",
    );

    assert_eq!(
        bridge.dovecot.rawlog_in(USER),
        log_before,
        "a refused request sends nothing to the server"
    );
    assert_eq!(imap.flag_map("INBOX").await, before, "no flag changed");
}

// ---------------------------------------------------------------------------------------------
// Move and copy
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn moving_and_copying_report_where_each_message_went() {
    let bridge = bridge_with_inbox(6, DovecotOptions::default()).await;
    bridge
        .dovecot
        .deliver_many(USER, "Archive", corpus::bulk(2, 2));
    let token = bridge.login().await;
    let mut imap = bridge.imap().await;
    let inbox_ids = imap.message_ids("INBOX").await;
    assert_eq!(inbox_ids.len(), 6);
    assert_eq!(imap.uids("Archive").await, vec![1, 2], "Archive's own mail");

    // Copy: the source keeps everything, the copies carry the same messages.
    let (status, body) = post(
        &bridge,
        &token,
        "/v1/mailboxes/INBOX/copy",
        json!({"uids": [4, 2, 99], "to": "Archive"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let copied = transfers(&body);
    assert_eq!(
        copied.iter().map(|(u, _)| *u).collect::<Vec<_>>(),
        vec![2, 4, 99],
        "one result per requested UID, ascending"
    );
    assert_eq!(copied[2], (99, None), "a missing UID has no new UID");
    let archive_ids = imap.message_ids("Archive").await;
    assert_eq!(archive_ids.len(), 4);
    for (uid, new_uid) in &copied[..2] {
        let new_uid = new_uid.expect("copied");
        assert!(new_uid > 2, "new UIDs come after Archive's own: {body}");
        assert_eq!(
            archive_ids[&new_uid], inbox_ids[uid],
            "uid {uid} → {new_uid}"
        );
    }
    assert_eq!(
        imap.message_ids("INBOX").await,
        inbox_ids,
        "copy keeps the source"
    );

    // Move: exactly the named UIDs leave the source.
    let (status, body) = post(
        &bridge,
        &token,
        "/v1/mailboxes/INBOX/move",
        json!({"uids": [1, 4, 100], "to": "Archive"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let moved = transfers(&body);
    assert_eq!(moved.len(), 3);
    assert_eq!(moved[2], (100, None));
    let archive_ids = imap.message_ids("Archive").await;
    assert_eq!(archive_ids.len(), 6);
    for (uid, new_uid) in &moved[..2] {
        let new_uid = new_uid.expect("moved");
        assert_eq!(
            archive_ids[&new_uid], inbox_ids[uid],
            "uid {uid} → {new_uid}"
        );
    }
    assert_eq!(imap.uids("INBOX").await, vec![2, 3, 5, 6]);

    // Copying within one mailbox makes a duplicate with a new UID.
    let (status, body) = post(
        &bridge,
        &token,
        "/v1/mailboxes/INBOX/copy",
        json!({"uids": [3], "to": "INBOX"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, new_uid) = transfers(&body)[0];
    let new_uid = new_uid.expect("copied");
    assert!(new_uid > 6);
    let now = imap.message_ids("INBOX").await;
    assert_eq!(now[&new_uid], inbox_ids[&3]);
    assert_eq!(now.len(), 5);

    // The header list of the destination shows the moved mail.
    let (status, list) = bridge
        .get_json(&token, "/v1/mailboxes/Archive/messages?limit=200")
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 6);
}

#[tokio::test]
async fn moves_to_a_missing_or_the_same_mailbox_change_nothing() {
    let bridge = bridge_with_inbox(4, DovecotOptions::default()).await;
    let token = bridge.login().await;
    let mut imap = bridge.imap().await;
    let before = imap.message_ids("INBOX").await;

    for op in ["move", "copy"] {
        let got = post(
            &bridge,
            &token,
            &format!("/v1/mailboxes/INBOX/{op}"),
            json!({"uids": [1, 2], "to": "Nowhere"}),
        )
        .await;
        assert_problem(&got, StatusCode::NOT_FOUND, "mailbox_not_found", op);
        let got = post(
            &bridge,
            &token,
            &format!("/v1/mailboxes/Nowhere/{op}"),
            json!({"uids": [1], "to": "INBOX"}),
        )
        .await;
        assert_problem(&got, StatusCode::NOT_FOUND, "mailbox_not_found", op);
    }
    for to in ["INBOX", "inbox", "InBox"] {
        let got = post(
            &bridge,
            &token,
            "/v1/mailboxes/INBOX/move",
            json!({"uids": [1], "to": to}),
        )
        .await;
        assert_problem(&got, StatusCode::CONFLICT, "conflict", to);
    }
    assert_eq!(imap.message_ids("INBOX").await, before, "nothing moved");
    assert!(imap.uids("Trash").await.is_empty());
}

#[tokio::test]
async fn without_the_move_extension_a_move_expunges_only_the_moved_messages() {
    // Everything the bridge uses but MOVE: it must COPY, then UID EXPUNGE exactly those UIDs.
    let bridge = bridge_with_inbox(
        5,
        DovecotOptions {
            extra_config: "protocol imap {\n  imap_capability = IMAP4rev1 SASL-IR ID ENABLE \
                           IDLE SORT LITERAL+ UIDPLUS SPECIAL-USE LIST-EXTENDED LIST-STATUS \
                           UNSELECT CONDSTORE QRESYNC\n}\n"
                .to_owned(),
            ..DovecotOptions::default()
        },
    )
    .await;
    let token = bridge.login().await;
    let mut imap = bridge.imap().await;
    let caps = imap.session.capabilities().await.expect("capabilities");
    assert!(
        !caps.has_str("MOVE") && caps.has_str("UIDPLUS"),
        "no MOVE here"
    );
    let ids = imap.message_ids("INBOX").await;
    // Another client marked 3 for deletion but has not expunged it.
    imap.store("INBOX", "3", "+FLAGS (\\Deleted)").await;

    let (status, body) = post(
        &bridge,
        &token,
        "/v1/mailboxes/INBOX/move",
        json!({"uids": [1, 2, 9], "to": "Archive"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let moved = transfers(&body);
    assert_eq!(moved[2], (9, None));
    let archive = imap.message_ids("Archive").await;
    for (uid, new_uid) in &moved[..2] {
        assert_eq!(archive[&new_uid.expect("moved")], ids[uid], "uid {uid}");
    }
    let inbox = imap.flag_map("INBOX").await;
    assert_eq!(inbox.keys().copied().collect::<Vec<_>>(), vec![3, 4, 5]);
    assert_eq!(
        inbox[&3],
        set_of(&["\\Deleted"]),
        "the other client's mark is left alone"
    );

    // Deleting to Trash takes the same path.
    let (status, body) = bridge
        .send(Method::DELETE, &token, "/v1/mailboxes/INBOX/messages/4")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(imap.uids("INBOX").await, vec![3, 5]);
    assert_eq!(
        imap.message_ids("Trash")
            .await
            .into_values()
            .collect::<Vec<_>>(),
        vec![ids[&4].clone()]
    );
    let got = bridge
        .send(Method::DELETE, &token, "/v1/mailboxes/INBOX/messages/4")
        .await;
    assert_problem(
        &got,
        StatusCode::NOT_FOUND,
        "message_not_found",
        "already gone",
    );
}

#[tokio::test]
async fn mail_is_filed_into_a_folder_named_in_another_script() {
    let bridge = bridge_with_inbox(3, DovecotOptions::default()).await;
    let token = bridge.login().await;
    let mut imap = bridge.imap().await;
    let ids = imap.message_ids("INBOX").await;

    let (status, body) = post(
        &bridge,
        &token,
        "/v1/mailboxes",
        json!({"name": "Проекты/Über"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "Проекты/Über");
    assert!(
        imap.mailbox_names()
            .await
            .contains(&PROJECTS_UEBER_MUTF7.to_owned()),
        "the server holds it in modified UTF-7"
    );

    let (status, body) = post(
        &bridge,
        &token,
        "/v1/mailboxes/INBOX/move",
        json!({"uids": [2], "to": "Проекты/Über"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, new_uid) = transfers(&body)[0];
    let new_uid = new_uid.expect("moved");
    assert_eq!(
        imap.message_ids(PROJECTS_UEBER_MUTF7).await,
        BTreeMap::from([(new_uid, ids[&2].clone())])
    );
    let (status, list) = bridge
        .get_json(
            &token,
            &format!("/v1/mailboxes/{}/messages", seg("Проекты/Über")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["mailbox"], "Проекты/Über");
    assert_eq!(list["messages"][0]["uid"], new_uid);
    assert_eq!(list["messages"][0]["message_id"], ids[&2].as_str());
}

// ---------------------------------------------------------------------------------------------
// Delete
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn deleting_moves_to_trash_and_permanent_deletion_expunges_only_that_message() {
    let bridge = bridge_with_inbox(5, DovecotOptions::default()).await;
    let token = bridge.login().await;
    let mut imap = bridge.imap().await;
    let ids = imap.message_ids("INBOX").await;

    // To Trash (found by its special-use role).
    let (status, body) = bridge
        .send(Method::DELETE, &token, "/v1/mailboxes/INBOX/messages/2")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(imap.uids("INBOX").await, vec![1, 3, 4, 5]);
    let trash = imap.message_ids("Trash").await;
    assert_eq!(trash.values().collect::<Vec<_>>(), vec![&ids[&2]]);
    let trash_uid = *trash.keys().next().expect("in Trash");

    // Permanently: another client's \Deleted mark on 3 must not make 3 disappear too.
    imap.store("INBOX", "3", "+FLAGS (\\Deleted)").await;
    let (status, body) = bridge
        .send(
            Method::DELETE,
            &token,
            "/v1/mailboxes/INBOX/messages/4?permanent=true",
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let inbox = imap.flag_map("INBOX").await;
    assert_eq!(inbox.keys().copied().collect::<Vec<_>>(), vec![1, 3, 5]);
    assert_eq!(
        inbox[&3],
        set_of(&["\\Deleted"]),
        "3 survives, still marked"
    );
    assert_eq!(
        imap.uids("Trash").await,
        vec![trash_uid],
        "not moved to Trash"
    );

    // Inside Trash a delete is final.
    let (status, body) = bridge
        .send(
            Method::DELETE,
            &token,
            &format!("/v1/mailboxes/Trash/messages/{trash_uid}"),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(imap.uids("Trash").await.is_empty());

    // What is not there cannot be deleted.
    for path in [
        "/v1/mailboxes/INBOX/messages/2",
        "/v1/mailboxes/INBOX/messages/2?permanent=true",
        "/v1/mailboxes/INBOX/messages/77",
    ] {
        let got = bridge.send(Method::DELETE, &token, path).await;
        assert_problem(&got, StatusCode::NOT_FOUND, "message_not_found", path);
    }
    let got = bridge
        .send(Method::DELETE, &token, "/v1/mailboxes/Nope/messages/1")
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "mailbox_not_found", "Nope");
    let got = bridge
        .send(Method::DELETE, &token, "/v1/mailboxes/INBOX/messages/0")
        .await;
    assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_request", "uid 0");
    let got = bridge
        .send(
            Method::DELETE,
            &token,
            "/v1/mailboxes/INBOX/messages/1?permanent=maybe",
        )
        .await;
    assert_problem(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "permanent=maybe",
    );
    assert_eq!(imap.uids("INBOX").await, vec![1, 3, 5], "nothing else went");
}

// ---------------------------------------------------------------------------------------------
// Append
// ---------------------------------------------------------------------------------------------

async fn append(
    bridge: &TestBridge,
    token: &str,
    mailbox: &str,
    query: &str,
    content_type: Option<&str>,
    body: reqwest::Body,
) -> (StatusCode, Value) {
    let mut req = bridge.request(
        Method::POST,
        &format!("/v1/mailboxes/{}/messages{query}", seg(mailbox)),
        Some(token),
    );
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    json_of(req.body(body).send().await.expect("append request")).await
}

const DRAFT: &[u8] = b"Message-ID: <draft-1@example.test>\r\n\
From: Robin Example <robin@example.test>\r\n\
To: Alice Anders <alice@example.test>\r\n\
Subject: A draft saved by a web client\r\n\
Date: Mon, 06 May 2024 12:00:00 +0000\r\n\
\r\n\
Body line one.\r\n\
Body line two.\r\n";

#[tokio::test]
async fn a_client_saves_a_message_and_the_server_holds_the_same_bytes_and_flags() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let mut imap = bridge.imap().await;

    let (status, body) = append(
        &bridge,
        &token,
        "Drafts",
        "?flags=%5CSeen,%24Label1",
        Some("message/rfc822"),
        DRAFT.to_vec().into(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let uid = u32_of(&body["uid"]);
    let validity = imap.status("Drafts", "(UIDVALIDITY)").await.uid_validity;
    assert_eq!(body["uid_validity"].as_u64(), validity.map(u64::from));
    assert_eq!(
        imap.raw_message("Drafts", uid).await.as_deref(),
        Some(DRAFT)
    );
    assert_eq!(
        imap.flag_map("Drafts").await[&uid],
        set_of(&["\\Seen", "$Label1"])
    );

    // 8-bit UTF-8 content goes through byte for byte, and reads back decoded.
    let utf8 = "Message-ID: <utf8-1@example.test>\r\n\
                From: Jürgen Müller <juergen@example.test>\r\n\
                Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\
                MIME-Version: 1.0\r\n\
                Content-Type: text/plain; charset=utf-8\r\n\
                Content-Transfer-Encoding: 8bit\r\n\
                \r\n\
                Привет, мир! Grüße aus München 🌍\r\n";
    let (status, body) = append(
        &bridge,
        &token,
        "INBOX",
        "",
        Some("message/rfc822; charset=utf-8"),
        utf8.as_bytes().to_vec().into(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let uid = u32_of(&body["uid"]);
    assert_eq!(
        imap.raw_message("INBOX", uid).await.as_deref(),
        Some(utf8.as_bytes())
    );
    assert!(
        imap.flag_map("INBOX").await[&uid].is_empty(),
        "no flags asked"
    );
    let (status, view) = bridge
        .get_json(&token, &format!("/v1/mailboxes/INBOX/messages/{uid}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["subject"], "Grüße");
    assert!(
        view["text"]
            .as_str()
            .expect("text")
            .contains("Привет, мир! Grüße aus München 🌍"),
        "{view}"
    );

    // A megabyte, well past the JSON body limit.
    let big = corpus::with_attachment(750_000);
    assert!(big.len() > 1_000_000);
    let (status, body) = append(
        &bridge,
        &token,
        "INBOX",
        "",
        Some("message/rfc822"),
        big.clone().into(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let uid = u32_of(&body["uid"]);
    assert!(
        imap.raw_message("INBOX", uid).await == Some(big),
        "the megabyte arrived intact"
    );

    let got = append(
        &bridge,
        &token,
        "Nowhere",
        "",
        Some("message/rfc822"),
        DRAFT.to_vec().into(),
    )
    .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "mailbox_not_found", "Nowhere");
}

#[tokio::test]
async fn uploads_the_server_cannot_take_are_refused_before_imap() {
    let bridge = TestBridge::start_with(rawlog(), Link::Tls, |c| c.max_append_size = 4096).await;
    let token = bridge.login().await;
    let (status, _) = bridge.get_json(&token, "/v1/mailboxes").await;
    assert_eq!(status, StatusCode::OK);
    bridge.settle_connections(1).await;
    let log_before = bridge.dovecot.rawlog_in(USER);

    for ct in [
        None,
        Some("application/json"),
        Some("text/plain"),
        Some("message/rfc822x"),
    ] {
        let got = append(&bridge, &token, "INBOX", "", ct, DRAFT.to_vec().into()).await;
        assert_problem(
            &got,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            &format!("{ct:?}"),
        );
    }

    let mut oversized = DRAFT.to_vec();
    oversized.resize(4097, b'x');
    let got = append(
        &bridge,
        &token,
        "INBOX",
        "",
        Some("message/rfc822"),
        oversized.clone().into(),
    )
    .await;
    assert_problem(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "with length",
    );
    // Chunked, so the size is only known while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        oversized.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let got = append(
        &bridge,
        &token,
        "INBOX",
        "",
        Some("message/rfc822"),
        reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
    )
    .await;
    assert_problem(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "chunked",
    );

    let bad_messages: [(&str, &[u8]); 5] = [
        ("empty", b""),
        ("NUL byte", b"Subject: nul\r\n\r\nbody \0 here\r\n"),
        ("no header", b"Hello there,\r\njust text.\r\n"),
        ("blank first line", b"\r\nSubject: late\r\n\r\nbody\r\n"),
        ("colon first", b": value\r\n\r\nbody\r\n"),
    ];
    for (what, raw) in bad_messages {
        let got = append(
            &bridge,
            &token,
            "INBOX",
            "",
            Some("message/rfc822"),
            raw.to_vec().into(),
        )
        .await;
        assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_request", what);
    }
    for flags in [
        "%5CRecent",
        "a%20b",
        "%5CSeen,",
        "x%5D",
        "%0D%0AA1%20DELETE%20INBOX",
    ] {
        let got = append(
            &bridge,
            &token,
            "INBOX",
            &format!("?flags={flags}"),
            Some("message/rfc822"),
            DRAFT.to_vec().into(),
        )
        .await;
        assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_request", flags);
    }
    for name in ["a\r\nb", "star*", "nul\0"] {
        let got = append(
            &bridge,
            &token,
            name,
            "",
            Some("message/rfc822"),
            DRAFT.to_vec().into(),
        )
        .await;
        assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_request", name);
    }
    assert_eq!(
        bridge.dovecot.rawlog_in(USER),
        log_before,
        "a refused upload sends nothing to the server"
    );

    // Exactly at the limit is fine.
    let mut at_limit = DRAFT.to_vec();
    at_limit.resize(4096, b'x');
    let (status, body) = append(
        &bridge,
        &token,
        "INBOX",
        "",
        Some("message/rfc822"),
        at_limit.into(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut imap = bridge.imap().await;
    assert_eq!(imap.uids("INBOX").await, vec![u32_of(&body["uid"])]);
}

// ---------------------------------------------------------------------------------------------
// Folders
// ---------------------------------------------------------------------------------------------

async fn create(bridge: &TestBridge, token: &str, name: &str) -> (StatusCode, Value) {
    post(bridge, token, "/v1/mailboxes", json!({ "name": name })).await
}

async fn rename(bridge: &TestBridge, token: &str, from: &str, to: &str) -> (StatusCode, Value) {
    bridge
        .send_json(
            Method::PATCH,
            token,
            &format!("/v1/mailboxes/{}", seg(from)),
            &json!({ "name": to }),
        )
        .await
}

async fn delete(bridge: &TestBridge, token: &str, name: &str) -> (StatusCode, Value) {
    bridge
        .send(
            Method::DELETE,
            token,
            &format!("/v1/mailboxes/{}", seg(name)),
        )
        .await
}

async fn listed_names(bridge: &TestBridge, token: &str) -> Vec<String> {
    let (status, body) = bridge.get_json(token, "/v1/mailboxes").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["mailboxes"]
        .as_array()
        .expect("mailboxes")
        .iter()
        .map(|m| m["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn folders_are_created_renamed_and_deleted() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let mut imap = bridge.imap().await;

    let quoted = r#"He said "hi" \o/ there"#;
    for (name, wire) in [
        ("Projects", "Projects"),
        ("Entwürfe 2025", "Entw&APw-rfe 2025"),
        ("日本語", "&ZeVnLIqe-"),
        ("A/B", "A/B"),
        ("Tom & Jerry", "Tom &- Jerry"),
        // The direct client shows a quoted string's content as sent, escapes included.
        (quoted, r#"He said \"hi\" \\o/ there"#),
    ] {
        let (status, body) = create(&bridge, &token, name).await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        assert_eq!(body["name"], name);
        assert!(
            listed_names(&bridge, &token)
                .await
                .contains(&name.to_owned()),
            "{name} listed by the API: {:?}",
            listed_names(&bridge, &token).await
        );
        let on_server = imap.mailbox_names().await;
        assert!(
            on_server.contains(&wire.to_owned()),
            "{wire} in {on_server:?}"
        );
        assert!(
            imap.subscribed_names().await.contains(&wire.to_owned()),
            "{name} subscribed"
        );
    }
    let (status, list) = bridge
        .get_json(&token, &format!("/v1/mailboxes/{}/messages", seg(quoted)))
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["mailbox"], quoted);

    // Names that are taken.
    for name in ["Projects", "A/B", "INBOX", "inbox", "Inbox", "Trash"] {
        let got = create(&bridge, &token, name).await;
        assert_problem(&got, StatusCode::CONFLICT, "conflict", name);
    }

    // Names the server would refuse or quietly change are the caller's to fix.
    let names_before = imap.mailbox_names().await;
    for name in ["Trailing/", "/Leading", "Dou//ble", "Über/"] {
        let got = create(&bridge, &token, name).await;
        assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_request", name);
        let got = rename(&bridge, &token, "A/B", name).await;
        assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_request", name);
    }
    // A well-formed name that this server's storage cannot hold (Dovecot's Maildir++ layout
    // keeps `.` for itself) is the server's refusal, not a malformed request.
    for name in ["Dot.ted", &"x".repeat(400)] {
        let got = create(&bridge, &token, name).await;
        assert_problem(&got, StatusCode::FORBIDDEN, "forbidden", name);
        let got = rename(&bridge, &token, "A/B", name).await;
        assert_problem(&got, StatusCode::FORBIDDEN, "forbidden", name);
    }
    assert_eq!(imap.mailbox_names().await, names_before, "nothing created");

    // Rename keeps the messages and moves the subscription.
    imap.append_with_uid("Projects", "\\Seen", DRAFT).await;
    imap.append_with_uid("Projects", "", DRAFT).await;
    let before = imap.flag_map("Projects").await;
    let (status, body) = rename(&bridge, &token, "Projects", "Projekte 2024").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "Projekte 2024");
    let on_server = imap.mailbox_names().await;
    assert!(!on_server.contains(&"Projects".to_owned()), "{on_server:?}");
    assert_eq!(
        imap.flag_map("Projekte 2024").await,
        before,
        "messages kept"
    );
    let subscribed = imap.subscribed_names().await;
    assert!(
        subscribed.contains(&"Projekte 2024".to_owned()),
        "{subscribed:?}"
    );
    assert!(
        !subscribed.contains(&"Projects".to_owned()),
        "{subscribed:?}"
    );
    let names = listed_names(&bridge, &token).await;
    assert!(names.contains(&"Projekte 2024".to_owned()) && !names.contains(&"Projects".to_owned()));

    // Renames that cannot happen change nothing, subscriptions included.
    imap.session
        .unsubscribe("Archive")
        .await
        .expect("unsubscribe");
    let subscribed_before = imap.subscribed_names().await;
    let got = rename(&bridge, &token, "Projekte 2024", "Archive").await;
    assert_problem(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        "to an existing name",
    );
    let got = rename(&bridge, &token, "Projekte 2024", "inbox").await;
    assert_problem(&got, StatusCode::CONFLICT, "conflict", "to INBOX");
    let got = rename(&bridge, &token, "Missing", "Found").await;
    assert_problem(&got, StatusCode::NOT_FOUND, "mailbox_not_found", "missing");
    for inbox in ["INBOX", "inbox"] {
        let got = rename(&bridge, &token, inbox, "Old mail").await;
        assert_problem(&got, StatusCode::FORBIDDEN, "forbidden", "rename INBOX");
        let got = delete(&bridge, &token, inbox).await;
        assert_problem(&got, StatusCode::FORBIDDEN, "forbidden", "delete INBOX");
    }
    assert_eq!(imap.subscribed_names().await, subscribed_before);
    assert_eq!(imap.flag_map("Projekte 2024").await, before);
    assert_eq!(imap.status("INBOX", "(MESSAGES)").await.exists, 0);
    assert!(!imap.mailbox_names().await.contains(&"Found".to_owned()));

    // Delete, even while the bridge's session has the mailbox selected.
    let (status, _) = bridge
        .get_json(
            &token,
            &format!("/v1/mailboxes/{}/messages", seg("Projekte 2024")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = delete(&bridge, &token, "Projekte 2024").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(
        !imap
            .mailbox_names()
            .await
            .contains(&"Projekte 2024".to_owned())
    );
    assert!(
        !listed_names(&bridge, &token)
            .await
            .contains(&"Projekte 2024".to_owned())
    );
    let got = delete(&bridge, &token, "Projekte 2024").await;
    assert_problem(
        &got,
        StatusCode::NOT_FOUND,
        "mailbox_not_found",
        "deleted twice",
    );
    let (status, body) = delete(&bridge, &token, "日本語").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(
        !imap
            .mailbox_names()
            .await
            .contains(&"&ZeVnLIqe-".to_owned())
    );
}

#[tokio::test]
async fn hostile_folder_names_are_refused_before_imap() {
    let bridge = TestBridge::start_with(rawlog(), Link::Tls, |_| {}).await;
    let token = bridge.login().await;
    let (status, _) = bridge.get_json(&token, "/v1/mailboxes").await;
    assert_eq!(status, StatusCode::OK);
    bridge.settle_connections(1).await;
    let log_before = bridge.dovecot.rawlog_in(USER);

    let hostile = [
        "a\rb",
        "a\nb",
        "INBOX\r\nA1 DELETE INBOX",
        "nul\0x",
        "star*",
        "per%cent",
        "tab\tx",
        "c1\u{85}x",
        "",
    ];
    for name in hostile {
        let got = create(&bridge, &token, name).await;
        assert_problem(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("create {name:?}"),
        );
        let got = rename(&bridge, &token, "Archive", name).await;
        assert_problem(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("rename to {name:?}"),
        );
        for op in ["move", "copy"] {
            let got = post(
                &bridge,
                &token,
                &format!("/v1/mailboxes/INBOX/{op}"),
                json!({"uids": [1], "to": name}),
            )
            .await;
            assert_problem(
                &got,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("{op} to {name:?}"),
            );
        }
        if !name.is_empty() {
            let got = rename(&bridge, &token, name, "Fine").await;
            assert_problem(
                &got,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("rename {name:?}"),
            );
            let got = delete(&bridge, &token, name).await;
            assert_problem(
                &got,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("delete {name:?}"),
            );
        }
    }
    let got = post(&bridge, &token, "/v1/mailboxes", json!({"name": 5})).await;
    assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_request", "number");
    let got = post(&bridge, &token, "/v1/mailboxes", json!({})).await;
    assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_request", "no name");
    let got = rename(&bridge, &token, "Archive", "Archive").await;
    assert_problem(&got, StatusCode::CONFLICT, "conflict", "same name");
    assert_eq!(
        bridge.dovecot.rawlog_in(USER),
        log_before,
        "a refused name sends nothing to the server"
    );
}

#[tokio::test]
async fn a_renamed_folder_is_gone_for_every_pooled_session() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    let (status, body) = create(&bridge, &token, "Team").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut imap = bridge.imap().await;
    for _ in 0..3 {
        imap.append_with_uid("Team", "", DRAFT).await;
    }
    let list = |name: &'static str| {
        let bridge = &bridge;
        let token = &token;
        async move {
            bridge
                .get_json(token, &format!("/v1/mailboxes/{name}/messages"))
                .await
        }
    };

    // Two pooled sessions, both with Team selected (every session ever opened listed it).
    for _ in 0..50 {
        let (a, b) = tokio::join!(list("Team"), list("Team"));
        assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
        if bridge.state.pools.stats().sessions == 2 {
            break;
        }
    }
    assert_eq!(
        bridge.state.pools.stats().sessions,
        2,
        "two pooled sessions"
    );

    let (status, body) = rename(&bridge, &token, "Team", "Crew").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Sessions are handed out in turn, so these reach both of them.
    for _ in 0..4 {
        let got = list("Team").await;
        assert_problem(&got, StatusCode::NOT_FOUND, "mailbox_not_found", "old name");
    }
    let (a, b) = tokio::join!(list("Team"), list("Team"));
    assert_problem(
        &a,
        StatusCode::NOT_FOUND,
        "mailbox_not_found",
        "old name, at once",
    );
    assert_problem(
        &b,
        StatusCode::NOT_FOUND,
        "mailbox_not_found",
        "old name, at once",
    );
    let (a, b) = tokio::join!(list("Crew"), list("Crew"));
    for got in [a, b] {
        assert_eq!(got.0, StatusCode::OK, "{}", got.1);
        assert_eq!(got.1["total"], 3, "{}", got.1);
    }
    assert_eq!(
        bridge.state.pools.stats().sessions,
        2,
        "no session was lost"
    );

    // Deleted while both sessions have it selected: gone for both, and both keep working.
    let (status, body) = delete(&bridge, &token, "Crew").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for _ in 0..4 {
        let got = list("Crew").await;
        assert_problem(&got, StatusCode::NOT_FOUND, "mailbox_not_found", "deleted");
    }
    let (a, b) = tokio::join!(list("INBOX"), list("INBOX"));
    assert_eq!(
        (a.0, b.0),
        (StatusCode::OK, StatusCode::OK),
        "{} {}",
        a.1,
        b.1
    );
}

/// Found by the contract test: a refused rename used to make the session forget which mailbox
/// it had selected, so deleting that mailbox next skipped UNSELECT and Dovecot ended the
/// session ("Selected mailbox was deleted") — a 503 for a valid request.
#[tokio::test]
async fn a_folder_selected_before_a_refused_rename_can_still_be_deleted() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    for name in ["Plans/2024", "Plans/2025"] {
        let (status, body) = create(&bridge, &token, name).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = bridge
        .get_json(&token, "/v1/mailboxes/Plans%2F2024/messages")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(bridge.state.pools.stats().sessions, 1, "one pooled session");
    let got = rename(&bridge, &token, "Plans/2025", "Plans/2024").await;
    assert_problem(&got, StatusCode::CONFLICT, "conflict", "the name is taken");

    let (status, body) = delete(&bridge, &token, "Plans/2024").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let names = listed_names(&bridge, &token).await;
    assert!(!names.contains(&"Plans/2024".to_owned()), "{names:?}");
    assert!(names.contains(&"Plans/2025".to_owned()), "{names:?}");
    let (status, body) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    assert_eq!(status, StatusCode::OK, "the session still works: {body}");
}

// ---------------------------------------------------------------------------------------------
// Races
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn changes_by_another_client_meanwhile_never_widen_a_move_or_flag_change() {
    let bridge = bridge_with_inbox(60, DovecotOptions::default()).await;
    let token = bridge.login().await;
    let mut imap = bridge.imap().await;
    let mut other = bridge.imap().await;
    let before = imap.flag_map("INBOX").await;
    let ids = imap.message_ids("INBOX").await;

    let to_move: Vec<u32> = (1..=40).filter(|u| u % 4 == 1).collect();
    let to_flag: Vec<u32> = (1..=40).filter(|u| u % 4 == 2).collect();
    let to_expunge: Vec<u32> = (41..=60).filter(|u| u % 2 == 1).collect();
    let expunge_set = to_expunge
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");

    let moving = post(
        &bridge,
        &token,
        "/v1/mailboxes/INBOX/move",
        json!({"uids": to_move, "to": "Archive"}),
    );
    let flagging = post(
        &bridge,
        &token,
        "/v1/mailboxes/INBOX/flags",
        json!({"uids": to_flag, "add": ["\\Flagged", "$Urgent"]}),
    );
    let meanwhile = async {
        let mut appended = Vec::new();
        for i in 0..5 {
            if i == 2 {
                other.expunge_set("INBOX", &expunge_set).await;
            }
            let raw = format!(
                "Message-ID: <meanwhile-{i}@example.test>\r\nSubject: meanwhile {i}\r\n\r\nhi\r\n"
            );
            appended.push(other.append_with_uid("INBOX", "", raw.as_bytes()).await);
        }
        appended
    };
    let (moved, flagged, appended) = tokio::join!(moving, flagging, meanwhile);
    assert_eq!(moved.0, StatusCode::OK, "{}", moved.1);
    assert_eq!(flagged.0, StatusCode::OK, "{}", flagged.1);

    let mut expected = before.clone();
    for uid in to_move.iter().chain(&to_expunge) {
        expected.remove(uid);
    }
    for uid in &to_flag {
        expected.insert(*uid, set_of(&["\\Flagged", "$Urgent"]));
    }
    for uid in &appended {
        expected.insert(*uid, FlagSet::new());
    }
    assert_eq!(
        imap.flag_map("INBOX").await,
        expected,
        "exactly the named messages moved or changed"
    );
    let reported: BTreeSet<u32> = flagged.1["updated"]
        .as_array()
        .expect("updated")
        .iter()
        .map(|u| u32_of(&u["uid"]))
        .collect();
    assert_eq!(reported, to_flag.iter().copied().collect());

    let archive = imap.message_ids("Archive").await;
    let moved = transfers(&moved.1);
    assert_eq!(moved.len(), to_move.len());
    for (uid, new_uid) in moved {
        assert_eq!(archive[&new_uid.expect("moved")], ids[&uid], "uid {uid}");
    }
    assert_eq!(archive.len(), to_move.len(), "nothing else reached Archive");
}

#[tokio::test]
async fn a_full_quota_is_507_and_changes_nothing() {
    // Dovecot's quota plugin with room for about 20 KB: the bulk messages fit, a 40 KB upload
    // or copy does not.
    let opts = DovecotOptions {
        extra_config: "mail_plugins = $mail_plugins quota\n\
                       plugin {\n  quota = maildir:User quota\n  quota_rule = *:storage=24K\n}\n"
            .to_owned(),
        ..DovecotOptions::default()
    };
    let bridge = bridge_with_inbox(2, opts).await;
    let token = bridge.login().await;
    let big = corpus::with_attachment(30_000);
    let res = bridge
        .request(Method::POST, "/v1/mailboxes/INBOX/messages", Some(&token))
        .header("content-type", "message/rfc822")
        .body(big)
        .send()
        .await
        .expect("upload");
    assert!(
        res.headers().get("retry-after").is_none(),
        "retrying cannot help a full mailbox"
    );
    let got = json_of(res).await;
    assert_problem(
        &got,
        StatusCode::INSUFFICIENT_STORAGE,
        "insufficient_storage",
        "an upload past the quota",
    );
    let mut imap = bridge.imap().await;
    assert_eq!(imap.uids("INBOX").await, vec![1, 2], "nothing was stored");

    // Copies fill the quota up to the refusal; what was refused is not there.
    let mut refused = None;
    for _ in 0..20 {
        let got = bridge
            .send_json(
                Method::POST,
                &token,
                "/v1/mailboxes/INBOX/copy",
                &json!({"uids": [1, 2], "to": "Archive"}),
            )
            .await;
        if got.0 != StatusCode::OK {
            refused = Some(got);
            break;
        }
    }
    let refused = refused.expect("the quota is reached");
    assert_problem(
        &refused,
        StatusCode::INSUFFICIENT_STORAGE,
        "insufficient_storage",
        "a copy past the quota",
    );
}
