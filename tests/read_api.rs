//! Reading mail over HTTP against a real Dovecot: mailboxes, header lists, paging, sorting,
//! filters, message views, raw and attachment downloads, and every error a reader can hit.

mod common;

use std::collections::HashSet;

use common::bridge::{Link, TestBridge, USER, json_of, seg};
use common::corpus::{self, SeedMessage};
use common::dovecot::DovecotOptions;
use reqwest::{Method, StatusCode};
use serde_json::Value;

fn seed_realistic(bridge: &TestBridge) {
    for SeedMessage {
        mailbox,
        raw,
        flags,
        ..
    } in corpus::realistic()
    {
        let msg = SeedMessage {
            mailbox,
            raw,
            flags,
            days_ago: 0,
        };
        bridge
            .dovecot
            .deliver(USER, msg.mailbox, &msg.raw, msg.flags, None);
    }
}

fn seeded_with_dates(bridge: &TestBridge) {
    for msg in corpus::realistic() {
        bridge.dovecot.deliver(
            USER,
            msg.mailbox,
            &msg.raw,
            msg.flags,
            Some(msg.internal_date()),
        );
    }
}

fn subjects(list: &Value) -> Vec<String> {
    list["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn uids(list: &Value) -> Vec<u32> {
    list["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| u32::try_from(m["uid"].as_u64().expect("uid")).expect("u32"))
        .collect()
}

#[tokio::test]
async fn a_user_logs_in_and_browses_folders_and_mail() {
    let bridge = TestBridge::start().await;
    seeded_with_dates(&bridge);
    let token = bridge.login().await;

    let (status, body) = bridge.get_json(&token, "/v1/mailboxes").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let boxes = body["mailboxes"].as_array().expect("mailboxes");
    assert_eq!(boxes[0]["name"], "INBOX", "INBOX comes first");
    assert_eq!(boxes[0]["special_use"], "inbox");
    assert_eq!(boxes[0]["total"], 20);
    assert_eq!(boxes[0]["unseen"], 6);
    assert!(boxes[0]["uid_validity"].as_u64().expect("uidvalidity") > 0);
    let by_name = |n: &str| {
        boxes
            .iter()
            .find(|b| b["name"] == n)
            .unwrap_or_else(|| panic!("{n} listed: {body}"))
    };
    assert_eq!(by_name("Sent")["special_use"], "sent");
    assert_eq!(by_name("Trash")["special_use"], "trash");
    assert_eq!(by_name("Drafts")["special_use"], "drafts");
    assert_eq!(by_name(corpus::MAILBOX_ENTWUERFE)["total"], 2);
    assert_eq!(by_name(corpus::MAILBOX_ARCHIVE)["total"], 3);
    assert_eq!(by_name(corpus::MAILBOX_ARCHIVE)["delimiter"], "/");
    assert!(by_name("Sent")["subscribed"].as_bool().expect("bool"));

    // Newest first: the INBOX header list starts with the last delivered message.
    let (status, list) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?limit=5")
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 20);
    assert_eq!(list["mailbox"], "INBOX");
    let page = uids(&list);
    assert_eq!(page.len(), 5);
    assert!(
        page.windows(2).all(|w| w[0] > w[1]),
        "newest first: {page:?}"
    );
    assert!(list["next_cursor"].is_string());
    assert!(list["state"].as_str().expect("state").starts_with("s1."));

    // Decoded subjects and names in every script the corpus carries.
    let (_, all) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?limit=200")
        .await;
    let subjects = subjects(&all);
    for expected in [
        corpus::SUBJECT_JAPANESE,
        corpus::SUBJECT_GREEK,
        corpus::SUBJECT_RUSSIAN,
        corpus::SUBJECT_CHINESE,
        corpus::SUBJECT_GERMAN,
        corpus::SUBJECT_EMOJI,
    ] {
        assert!(
            subjects.iter().any(|s| s == expected),
            "{expected} in {subjects:?}"
        );
    }
    let japanese = all["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["subject"] == corpus::SUBJECT_JAPANESE)
        .expect("japanese message");
    assert_eq!(japanese["from"][0]["name"], corpus::NAME_JAPANESE);
    assert!(
        !japanese["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .any(|f| f == "\\Seen")
    );
    assert!(
        japanese["received_at"]
            .as_str()
            .expect("received_at")
            .ends_with('Z')
    );

    // Opening it decodes the ISO-2022-JP body and does not mark it read.
    let uid = japanese["uid"].as_u64().expect("uid");
    let (status, msg) = bridge
        .get_json(&token, &format!("/v1/mailboxes/INBOX/messages/{uid}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{msg}");
    assert_eq!(msg["subject"], corpus::SUBJECT_JAPANESE);
    assert!(
        msg["text"]
            .as_str()
            .expect("text")
            .contains(corpus::BODY_JAPANESE),
        "{msg}"
    );
    assert!(
        msg["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .any(|h| h["name"] == "Subject" && h["value"] == corpus::SUBJECT_JAPANESE)
    );
    let mut imap = bridge.imap().await;
    assert!(
        !imap
            .flags("INBOX", u32::try_from(uid).expect("u32"))
            .await
            .iter()
            .any(|f| f.contains("Seen")),
        "reading never sets \\Seen"
    );

    // The non-ASCII folder by its UTF-8 name.
    let path = format!("/v1/mailboxes/{}/messages", seg(corpus::MAILBOX_ENTWUERFE));
    let (status, drafts) = bridge.get_json(&token, &path).await;
    assert_eq!(status, StatusCode::OK, "{drafts}");
    assert_eq!(drafts["mailbox"], corpus::MAILBOX_ENTWUERFE);
    assert_eq!(drafts["total"], 2);
    let (status, archive) = bridge
        .get_json(
            &token,
            &format!("/v1/mailboxes/{}/messages", seg(corpus::MAILBOX_ARCHIVE)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{archive}");
    assert_eq!(archive["total"], 3);
}

#[tokio::test]
async fn message_views_expose_bodies_and_attachments() {
    let bridge = TestBridge::start().await;
    seeded_with_dates(&bridge);
    let token = bridge.login().await;
    let (_, all) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?limit=200&order=asc")
        .await;
    let messages = all["messages"].as_array().expect("messages");
    let uid_of = |subject: &str| {
        messages
            .iter()
            .find(|m| m["subject"] == subject)
            .unwrap_or_else(|| panic!("{subject}"))["uid"]
            .as_u64()
            .expect("uid")
    };

    // multipart/alternative: both bodies.
    let (_, report) = bridge
        .get_json(
            &token,
            &format!(
                "/v1/mailboxes/INBOX/messages/{}",
                uid_of("Quarterly report Q1")
            ),
        )
        .await;
    assert!(
        report["text"].is_string() && report["html"].is_string(),
        "{report}"
    );
    assert!(report["html"].as_str().expect("html").contains('<'));
    assert_eq!(report["has_attachments"], false);

    // multipart/mixed: a PDF and a quoted-printable text attachment.
    let invoice_uid = uid_of("Invoice 2024-001");
    let (_, invoice) = bridge
        .get_json(
            &token,
            &format!("/v1/mailboxes/INBOX/messages/{invoice_uid}"),
        )
        .await;
    assert_eq!(invoice["has_attachments"], true);
    let attachments = invoice["attachments"].as_array().expect("attachments");
    let pdf = attachments
        .iter()
        .find(|a| a["content_type"] == "application/pdf")
        .expect("pdf attachment");
    let notes = attachments
        .iter()
        .find(|a| a["filename"] == "notes.txt")
        .expect("notes.txt");
    let res = bridge
        .request(
            Method::GET,
            &format!(
                "/v1/mailboxes/INBOX/messages/{invoice_uid}/attachments/{}",
                pdf["part_id"].as_str().expect("id")
            ),
            Some(&token),
        )
        .send()
        .await
        .expect("download");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/pdf");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .expect("ascii")
            .starts_with("attachment;")
    );
    let pdf_bytes = res.bytes().await.expect("pdf");
    assert!(pdf_bytes.starts_with(b"%PDF"), "decoded from base64");
    let res = bridge
        .request(
            Method::GET,
            &format!(
                "/v1/mailboxes/INBOX/messages/{invoice_uid}/attachments/{}",
                notes["part_id"].as_str().expect("id")
            ),
            Some(&token),
        )
        .send()
        .await
        .expect("download");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let notes_text = res.text().await.expect("notes");
    assert!(
        !notes_text.contains("=\r\n"),
        "quoted-printable decoded: {notes_text:?}"
    );

    // RFC 2231 file name, and multipart/related inline image.
    let (_, slides) = bridge
        .get_json(
            &token,
            &format!(
                "/v1/mailboxes/INBOX/messages/{}",
                uid_of("Slides for Friday")
            ),
        )
        .await;
    assert!(
        slides["attachments"]
            .as_array()
            .expect("a")
            .iter()
            .any(|a| a["filename"] == corpus::RFC2231_FILENAME),
        "{slides}"
    );
    let (_, newsletter) = bridge
        .get_json(
            &token,
            &format!(
                "/v1/mailboxes/INBOX/messages/{}",
                uid_of("Newsletter: spring edition")
            ),
        )
        .await;
    let inline = newsletter["attachments"]
        .as_array()
        .expect("a")
        .iter()
        .find(|a| a["content_id"] == corpus::INLINE_IMAGE_CID)
        .expect("inline image");
    assert_eq!(inline["inline"], true);
    assert!(
        newsletter["html"]
            .as_str()
            .expect("html")
            .contains(&format!(
                "/attachments/{}",
                inline["part_id"].as_str().expect("id")
            ))
    );

    // An attached message is one downloadable part.
    let (_, fwd) = bridge
        .get_json(
            &token,
            &format!(
                "/v1/mailboxes/INBOX/messages/{}",
                uid_of("Fwd: Office move announcement")
            ),
        )
        .await;
    assert!(
        fwd["attachments"]
            .as_array()
            .expect("a")
            .iter()
            .any(|a| a["content_type"] == "message/rfc822"),
        "{fwd}"
    );

    // mark_seen=true sets \Seen on the server.
    let unread_uid = uid_of(corpus::SUBJECT_RUSSIAN);
    let (status, russian) = bridge
        .get_json(
            &token,
            &format!("/v1/mailboxes/INBOX/messages/{unread_uid}?mark_seen=true"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        russian["text"]
            .as_str()
            .expect("text")
            .contains(corpus::BODY_RUSSIAN)
    );
    assert!(
        russian["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .any(|f| f == "\\Seen")
    );
    let mut imap = bridge.imap().await;
    assert!(
        imap.flags("INBOX", u32::try_from(unread_uid).expect("u32"))
            .await
            .iter()
            .any(|f| f.contains("Seen"))
    );
}

#[tokio::test]
async fn clients_that_stop_reading_downloads_do_not_hold_the_users_sessions() {
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.pool_max_per_user = 2;
        c.download_stall_timeout = 1;
    })
    .await;
    // Far more than socket buffers and the bridge hold between them.
    let raw = corpus::with_attachment(40 * 1024 * 1024);
    bridge.dovecot.deliver(USER, "INBOX", &raw, "S", None);
    let token = bridge.login().await;
    let (_, list) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    let uid = uids(&list)[0];
    let raw_path = format!("/v1/mailboxes/INBOX/messages/{uid}/raw");
    // As many clients as the user has sessions start a download and stop reading.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let res = bridge
            .request(Method::GET, &raw_path, Some(&token))
            .send()
            .await
            .expect("download");
        assert_eq!(res.status(), StatusCode::OK);
        stalled.push(res);
    }
    // The user's other requests still get a session (the pool wait is 5 s in tests).
    let (status, body) = bridge.get_json(&token, "/v1/mailboxes").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The stalled responses were cut off: reading them now ends short of their length.
    for res in stalled {
        let length = res.content_length().expect("Content-Length") as usize;
        let mut chunks = res.bytes_stream();
        let mut received = 0;
        let mut cut = false;
        while let Some(chunk) = futures::StreamExt::next(&mut chunks).await {
            match chunk {
                Ok(bytes) => received += bytes.len(),
                Err(_) => {
                    cut = true;
                    break;
                }
            }
        }
        assert!(cut && received < length, "{received} of {length} bytes");
    }
    // A client that reads gets everything.
    let res = bridge
        .request(Method::GET, &raw_path, Some(&token))
        .send()
        .await
        .expect("download");
    assert_eq!(res.bytes().await.expect("bytes").len(), raw.len());
}

#[tokio::test]
async fn downloads_are_exact_resumable_and_cacheable() {
    let bridge = TestBridge::start().await;
    let size = 3 * 1024 * 1024 + 17;
    let raw = corpus::with_attachment(size);
    bridge.dovecot.deliver(USER, "INBOX", &raw, "S", None);
    let token = bridge.login().await;
    let (_, list) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    let uid = uids(&list)[0];

    // Raw: the exact bytes the server holds.
    let raw_path = format!("/v1/mailboxes/INBOX/messages/{uid}/raw");
    let res = bridge
        .request(Method::GET, &raw_path, Some(&token))
        .send()
        .await
        .expect("raw");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "message/rfc822");
    let etag = res.headers()["etag"].to_str().expect("etag").to_owned();
    assert_eq!(res.bytes().await.expect("bytes").as_ref(), raw.as_slice());

    // Range and If-None-Match.
    let res = bridge
        .request(Method::GET, &raw_path, Some(&token))
        .header("range", "bytes=100-199")
        .send()
        .await
        .expect("range");
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes 100-199/{}", raw.len()).as_str()
    );
    assert_eq!(res.bytes().await.expect("bytes").as_ref(), &raw[100..200]);
    let res = bridge
        .request(Method::GET, &raw_path, Some(&token))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("304");
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    let res = bridge
        .request(Method::GET, &raw_path, Some(&token))
        .header("range", format!("bytes={}-", raw.len() + 5))
        .send()
        .await
        .expect("416");
    let (status, problem) = json_of(res).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(problem["code"], "range_not_satisfiable");

    // The attachment, decoded from base64 while streaming, and a range of it.
    let (_, msg) = bridge
        .get_json(&token, &format!("/v1/mailboxes/INBOX/messages/{uid}"))
        .await;
    let part = msg["attachments"][0]["part_id"]
        .as_str()
        .expect("part")
        .to_owned();
    let att_path = format!("/v1/mailboxes/INBOX/messages/{uid}/attachments/{part}");
    let expected = corpus::attachment_bytes(size);
    let res = bridge
        .request(Method::GET, &att_path, Some(&token))
        .send()
        .await
        .expect("attachment");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .expect("ascii")
            .contains(&format!("payload-{size}.bin"))
    );
    assert!(
        res.headers()["content-security-policy"]
            .to_str()
            .expect("ascii")
            .contains("sandbox")
    );
    let body = res.bytes().await.expect("bytes");
    assert_eq!(body.len(), expected.len());
    assert!(
        body.as_ref() == expected.as_slice(),
        "decoded attachment differs"
    );
    let res = bridge
        .request(Method::GET, &att_path, Some(&token))
        .header("range", "bytes=1000000-1000099")
        .send()
        .await
        .expect("range");
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes 1000000-1000099/{size}").as_str()
    );
    assert_eq!(
        res.bytes().await.expect("bytes").as_ref(),
        &expected[1_000_000..1_000_100]
    );

    let (status, problem) = bridge
        .get_json(
            &token,
            &format!("/v1/mailboxes/INBOX/messages/{uid}/attachments/9"),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("part_not_found"))
    );
    let (status, problem) = bridge
        .get_json(
            &token,
            &format!("/v1/mailboxes/INBOX/messages/{uid}/attachments/1.0"),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

/// Pages through a folder while mail arrives and other messages are expunged between pages:
/// every message that was there at the start and never expunged appears exactly once, no
/// expunged one appears, and newly arrived mail appears only at the end of an oldest-first walk.
async fn page_through(bridge: &TestBridge, token: &str, order: &str, limit: u32) -> Vec<u32> {
    let mut imap = bridge.imap().await;
    let before: Vec<u32> = imap.uids("INBOX").await;
    let newest_before = *before.last().expect("seeded");
    let mut seen = Vec::new();
    let mut expunged = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut round = 0u32;
    loop {
        let mut path = format!("/v1/mailboxes/INBOX/messages?limit={limit}&order={order}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = bridge.get_json(token, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(uids(&page));
        round += 1;
        // Between pages: new mail by Maildir delivery and by APPEND, and an expunge of a
        // message not yet listed.
        bridge.dovecot.deliver(
            USER,
            "INBOX",
            format!("Subject: arrived {round}\r\n\r\nbody\r\n").as_bytes(),
            "",
            None,
        );
        imap.append(
            "INBOX",
            format!("Subject: appended {round}\r\n\r\nbody\r\n").as_bytes(),
        )
        .await;
        let pending: Vec<u32> = before
            .iter()
            .copied()
            .filter(|u| !seen.contains(u) && !expunged.contains(u))
            .collect();
        if let Some(victim) = pending.get(pending.len() / 2) {
            imap.expunge("INBOX", *victim).await;
            expunged.insert(*victim);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<u32> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a message was listed twice");
    let missing: Vec<u32> = before
        .iter()
        .copied()
        .filter(|u| !expunged.contains(u) && !unique.contains(u))
        .collect();
    assert!(missing.is_empty(), "skipped: {missing:?}");
    let ghosts: Vec<&u32> = expunged.iter().filter(|u| unique.contains(u)).collect();
    assert!(ghosts.is_empty(), "listed after being expunged: {ghosts:?}");
    let arrivals: Vec<u32> = seen
        .iter()
        .copied()
        .filter(|u| *u > newest_before)
        .collect();
    if order == "desc" {
        assert!(
            arrivals.is_empty(),
            "later pages of a newest-first walk show older mail only: {arrivals:?}"
        );
    }
    assert!(round > 10, "the walk took several pages");
    seen
}

#[tokio::test]
async fn paging_a_large_folder_has_no_gap_or_repeat_while_mail_changes() {
    let bridge = TestBridge::start().await;
    bridge
        .dovecot
        .deliver_many(USER, "INBOX", corpus::bulk(3000, 7));
    let token = bridge.login().await;
    let newest_first = page_through(&bridge, &token, "desc", 200).await;
    assert!(newest_first.windows(2).all(|w| w[0] > w[1]));
    let oldest_first = page_through(&bridge, &token, "asc", 150).await;
    assert!(oldest_first.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn a_cursor_survives_many_expunges_below_its_anchor() {
    let bridge = TestBridge::start().await;
    bridge
        .dovecot
        .deliver_many(USER, "INBOX", corpus::bulk(600, 3));
    let token = bridge.login().await;
    let (_, first) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?limit=50")
        .await;
    let cursor = first["next_cursor"].as_str().expect("cursor").to_owned();
    let anchor = *uids(&first).last().expect("anchor");
    // Expunge 300 messages far below the anchor: its sequence number drops by 300.
    let mut imap = bridge.imap().await;
    let all = imap.uids("INBOX").await;
    for uid in all.iter().take(300) {
        imap.expunge("INBOX", *uid).await;
    }
    let (status, second) = bridge
        .get_json(
            &token,
            &format!("/v1/mailboxes/INBOX/messages?limit=50&cursor={cursor}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let expected: Vec<u32> = all
        .iter()
        .rev()
        .copied()
        .filter(|u| *u < anchor)
        .take(50)
        .collect();
    assert_eq!(uids(&second), expected);
}

#[tokio::test]
async fn lists_sort_and_filter_on_the_server() {
    let bridge = TestBridge::start().await;
    seeded_with_dates(&bridge);
    let token = bridge.login().await;

    let (status, unseen) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?unseen=true")
        .await;
    assert_eq!(status, StatusCode::OK, "{unseen}");
    assert_eq!(unseen["total"], 6);
    assert!(unseen["messages"].as_array().expect("m").iter().all(|m| {
        !m["flags"]
            .as_array()
            .expect("f")
            .iter()
            .any(|f| f == "\\Seen")
    }));
    let (_, flagged) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?flagged=true")
        .await;
    assert_eq!(flagged["total"], 3);

    // Non-ASCII search strings travel as literals with CHARSET UTF-8.
    let (status, german) = bridge
        .get_json(
            &token,
            &format!("/v1/mailboxes/INBOX/messages?from={}", seg("Müller")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{german}");
    assert_eq!(subjects(&german), vec![corpus::SUBJECT_GERMAN.to_owned()]);
    let (_, thread) = bridge
        .get_json(
            &token,
            &format!(
                "/v1/mailboxes/INBOX/messages?subject={}",
                seg(corpus::THREAD_SUBJECT)
            ),
        )
        .await;
    assert_eq!(thread["total"], 4);

    // Sorting by subject, both ways, paged with a cursor.
    let (status, by_subject) = bridge
        .get_json(
            &token,
            "/v1/mailboxes/INBOX/messages?sort=subject&order=asc&limit=7",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{by_subject}");
    let (_, rest) = bridge
        .get_json(
            &token,
            &format!(
                "/v1/mailboxes/INBOX/messages?sort=subject&order=asc&limit=50&cursor={}",
                by_subject["next_cursor"].as_str().expect("cursor")
            ),
        )
        .await;
    let mut all_subjects = subjects(&by_subject);
    all_subjects.extend(subjects(&rest));
    assert_eq!(all_subjects.len(), 20);
    let (_, by_date) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?sort=date&limit=200")
        .await;
    let dates: Vec<&str> = by_date["messages"]
        .as_array()
        .expect("m")
        .iter()
        .filter_map(|m| m["date"].as_str())
        .collect();
    assert!(
        dates.windows(2).all(|w| w[0] >= w[1]),
        "newest date first: {dates:?}"
    );

    // A cursor is tied to its query.
    let (status, problem) = bridge
        .get_json(
            &token,
            &format!(
                "/v1/mailboxes/INBOX/messages?sort=date&cursor={}",
                by_subject["next_cursor"].as_str().expect("cursor")
            ),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    // Date filters on internal dates.
    let today = chrono::Utc::now().date_naive();
    let (_, recent) = bridge
        .get_json(
            &token,
            &format!(
                "/v1/mailboxes/INBOX/messages?since={}",
                today - chrono::Days::new(5)
            ),
        )
        .await;
    assert!(recent["total"].as_u64().expect("total") < 20);
    let (status, problem) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?since=2024-13-01")
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    // An empty date range is a valid question with an empty answer, as in IMAP.
    for range in [
        format!("since={today}&before={today}"),
        format!("since={today}&before={}", today - chrono::Days::new(30)),
    ] {
        let (status, list) = bridge
            .get_json(&token, &format!("/v1/mailboxes/INBOX/messages?{range}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{range}: {list}");
        assert_eq!(list["total"], 0, "{range}: {list}");
        assert_eq!(list["messages"], serde_json::json!([]), "{range}");
    }
}

#[tokio::test]
async fn reader_errors_are_problems_that_change_nothing() {
    let bridge = TestBridge::start_with(
        DovecotOptions {
            rawlog: true,
            ..DovecotOptions::default()
        },
        Link::Tls,
        |_| {},
    )
    .await;
    seed_realistic(&bridge);
    let token = bridge.login().await;
    let (_, list) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    let some_uid = uids(&list)[0];

    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            "/v1/mailboxes/Nope/messages".into(),
            StatusCode::NOT_FOUND,
            "mailbox_not_found",
        ),
        (
            format!("/v1/mailboxes/INBOX/messages/{}", some_uid + 1000),
            StatusCode::NOT_FOUND,
            "message_not_found",
        ),
        (
            format!("/v1/mailboxes/INBOX/messages/{}/raw", some_uid + 1000),
            StatusCode::NOT_FOUND,
            "message_not_found",
        ),
        (
            "/v1/mailboxes/INBOX/messages/0".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/mailboxes/INBOX/messages/abc".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/mailboxes/INBOX/messages/4294967296".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/mailboxes/INBOX/messages?limit=0".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/mailboxes/INBOX/messages?limit=201".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/mailboxes/INBOX/messages?cursor=garbage".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/mailboxes/INBOX/messages?sort=random".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/mailboxes/INBOX/messages?bogus=1".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/nothing-here".into(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (path, want, code) in &cases {
        let (status, body) = bridge.get_json(&token, path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (*want, Some(*code)),
            "{path}: {body}"
        );
    }

    // Hostile mailbox names and filters are refused before any IMAP command is sent.
    let before = bridge.dovecot.rawlog_in(USER);
    let hostile_names = [
        "INBOX\r\nA1 DELETE INBOX",
        "a\nb",
        "a\rb",
        "nul\0x",
        "star*",
        "per%cent",
        "tab\tbad",
        "del\u{7f}x",
        "c1\u{85}x",
        "",
    ];
    for name in hostile_names {
        let (status, body) = bridge
            .get_json(&token, &format!("/v1/mailboxes/{}/messages", seg(name)))
            .await;
        assert!(
            status == StatusCode::BAD_REQUEST
                || (name.is_empty() && status == StatusCode::NOT_FOUND),
            "{name:?}: {status} {body}"
        );
    }
    for filter in [
        "subject=a%0D%0AA1%20DELETE%20INBOX",
        "from=%00",
        "text=x%0Ay",
    ] {
        let (status, body) = bridge
            .get_json(&token, &format!("/v1/mailboxes/INBOX/messages?{filter}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{filter}: {body}");
    }
    assert_eq!(
        bridge.dovecot.rawlog_in(USER),
        before,
        "refused input must not reach the server"
    );

    // Quotes, backslashes, braces and wildcards inside search text are exact round trips.
    for text in [
        "\"quoted\"",
        "back\\slash",
        "{5}",
        "{5+}",
        "a*b%c",
        "A1 DELETE INBOX",
    ] {
        let (status, body) = bridge
            .get_json(
                &token,
                &format!("/v1/mailboxes/INBOX/messages?subject={}", seg(text)),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{text}: {body}");
        assert_eq!(body["total"], 0, "{text}");
    }
    let log = bridge.dovecot.rawlog_in(USER);
    let commands: Vec<&str> = log.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    assert!(
        !log.lines().any(|l| l.starts_with("A1 ")),
        "no injected command:\n{log}"
    );
    assert!(!commands.contains(&"DELETE"), "no injected command:\n{log}");
    assert!(
        log.contains("SUBJECT \"A1 DELETE INBOX\""),
        "sent as one quoted string:\n{log}"
    );
    assert!(
        log.contains("SUBJECT \"\\\"quoted\\\"\""),
        "quotes escaped:\n{log}"
    );
    let mut imap = bridge.imap().await;
    assert_eq!(imap.uids("INBOX").await.len(), 20, "nothing changed");

    // Tokens: missing, tampered.
    let res = bridge
        .request(Method::GET, "/v1/mailboxes", None)
        .send()
        .await
        .expect("no token");
    let (status, body) = json_of(res).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let mut tampered = token.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let (status, body) = bridge.get_json(&tampered, "/v1/mailboxes").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
}

#[tokio::test]
async fn warm_requests_reuse_one_session_without_reselecting() {
    let bridge = TestBridge::start_with(
        DovecotOptions {
            rawlog: true,
            ..DovecotOptions::default()
        },
        Link::Tls,
        |_| {},
    )
    .await;
    bridge
        .dovecot
        .deliver_many(USER, "INBOX", corpus::bulk(300, 1));
    let token = bridge.login().await;
    for _ in 0..10 {
        let (status, _) = bridge
            .get_json(&token, "/v1/mailboxes/INBOX/messages?limit=20")
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let log = bridge.dovecot.rawlog_in(USER);
    let selects = log.lines().filter(|l| l.contains(" SELECT ")).count();
    let logins = bridge.dovecot.connections(USER);
    assert_eq!(selects, 1, "one SELECT for ten warm pages:\n{log}");
    assert_eq!(logins, 1, "sequential requests share one pooled session");
}

#[tokio::test]
async fn a_list_right_after_new_mail_shows_it() {
    let bridge = TestBridge::start().await;
    bridge
        .dovecot
        .deliver_many(USER, "INBOX", corpus::bulk(120, 4));
    let token = bridge.login().await;
    let (_, before) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?limit=10")
        .await;
    let mut imap = bridge.imap().await;
    for round in 0..3 {
        let subject = format!("just arrived {round}");
        imap.append(
            "INBOX",
            format!("Subject: {subject}\r\n\r\nhi\r\n").as_bytes(),
        )
        .await;
        bridge.dovecot.deliver(
            USER,
            "INBOX",
            format!("Subject: {subject} too\r\n\r\nhi\r\n").as_bytes(),
            "",
            None,
        );
        let (status, list) = bridge
            .get_json(&token, "/v1/mailboxes/INBOX/messages?limit=10")
            .await;
        assert_eq!(status, StatusCode::OK);
        let subjects = subjects(&list);
        assert!(
            subjects.contains(&subject),
            "the warm session sees new mail at once: {subjects:?}"
        );
        assert!(subjects.contains(&format!("{subject} too")), "{subjects:?}");
        assert_eq!(
            list["total"],
            before["total"].as_u64().expect("total") + 2 * (round + 1)
        );
        assert_eq!(uids(&list).len(), 10);
    }
}

/// Sorted and filtered lists reuse the server's SORT/SEARCH result while the mailbox's state
/// is unchanged, and never once it changed: a flag change, new mail or an expunge by another
/// client shows at once.
#[tokio::test]
async fn sorted_and_filtered_lists_reuse_a_result_only_while_nothing_changed() {
    let bridge = TestBridge::start_with(
        DovecotOptions {
            rawlog: true,
            ..DovecotOptions::default()
        },
        Link::Tls,
        |_| {},
    )
    .await;
    bridge
        .dovecot
        .deliver_many(USER, "INBOX", corpus::bulk(60, 9));
    let token = bridge.login().await;
    let list = |query: &'static str| {
        let bridge = &bridge;
        let token = &token;
        async move {
            let (status, body) = bridge
                .get_json(token, &format!("/v1/mailboxes/INBOX/messages?{query}"))
                .await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            body
        }
    };
    let sorts = |log: &str| log.lines().filter(|l| l.contains(" UID SORT ")).count();
    let searches = |log: &str| log.lines().filter(|l| l.contains(" UID SEARCH ")).count();

    let first = list("sort=date&limit=10").await;
    let unseen = list("unseen=true&limit=100").await;
    assert_eq!(unseen["total"], 60);
    let log = bridge.dovecot.rawlog_in(USER);
    let (sorts_before, searches_before) = (sorts(&log), searches(&log));
    assert!(
        sorts_before >= 1 && searches_before >= 1,
        "the rawlog shows the first SORT and SEARCH, so the counts below mean something:\n{log}"
    );
    for _ in 0..3 {
        assert_eq!(uids(&list("sort=date&limit=10").await), uids(&first));
        assert_eq!(list("unseen=true&limit=100").await["total"], 60);
    }
    let log = bridge.dovecot.rawlog_in(USER);
    assert_eq!(
        sorts(&log),
        sorts_before,
        "an unchanged mailbox is not sorted again"
    );
    assert_eq!(searches(&log), searches_before, "nor searched again");

    // Another client reads two messages, then new mail arrives, then one is expunged.
    let mut imap = bridge.imap().await;
    let all = uids(&unseen);
    imap.store(
        "INBOX",
        &format!("{},{}", all[0], all[1]),
        "+FLAGS (\\Seen)",
    )
    .await;
    let after = list("unseen=true&limit=100").await;
    assert_eq!(after["total"], 58, "flags");
    imap.append(
        "INBOX",
        b"Subject: late\r\nDate: Mon, 1 Jan 2099 00:00:00 +0000\r\n\r\nhi\r\n",
    )
    .await;
    let sorted = list("sort=date&limit=10").await;
    assert_eq!(subjects(&sorted)[0], "late", "new mail sorts first");
    assert_eq!(list("unseen=true&limit=100").await["total"], 59, "new mail");
    let newest = uids(&sorted)[0];
    imap.expunge("INBOX", newest).await;
    let sorted = list("sort=date&limit=10").await;
    assert!(
        !uids(&sorted).contains(&newest),
        "expunged: {:?}",
        uids(&sorted)
    );
    assert_eq!(sorted["total"], 60);
}

#[tokio::test]
async fn query_values_that_are_not_utf8_are_refused_on_every_route() {
    let bridge = TestBridge::start().await;
    seed_realistic(&bridge);
    let token = bridge.login().await;
    let (_, list) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    let uid = uids(&list)[0];
    let state = list["state"].as_str().expect("state").to_owned();
    let mut imap = bridge.imap().await;
    let before = imap.uids("INBOX").await;
    let flags_before = imap.flags("INBOX", uid).await;

    // A byte that is not UTF-8, a truncated sequence, an overlong encoding, a lone surrogate:
    // form decoding would turn each into U+FFFD and carry on.
    for bad in ["%FF", "a%C3", "%C0%AF", "%ED%A0%80"] {
        let message = format!("/v1/mailboxes/INBOX/messages/{uid}");
        let cases: Vec<(Method, String)> = vec![
            (
                Method::GET,
                format!("/v1/mailboxes/INBOX/messages?subject={bad}"),
            ),
            (
                Method::GET,
                format!("/v1/mailboxes/INBOX/messages?text=x{bad}"),
            ),
            (
                Method::GET,
                format!("/v1/mailboxes/INBOX/messages?since={bad}"),
            ),
            (
                Method::GET,
                format!("/v1/mailboxes/INBOX/messages?limit=5&{bad}=1"),
            ),
            (Method::GET, format!("{message}?mark_seen={bad}")),
            (Method::DELETE, format!("{message}?permanent={bad}")),
            (
                Method::POST,
                format!("/v1/mailboxes/INBOX/messages?flags={bad}"),
            ),
            (
                Method::GET,
                format!("/v1/mailboxes/INBOX/changes?since={state}&x={bad}"),
            ),
            (Method::GET, format!("/v1/events?mailbox={bad}")),
            (Method::GET, format!("/v1/events?ticket={bad}")),
        ];
        for (method, path) in cases {
            let mut request = bridge.request(method.clone(), &path, Some(&token));
            if method == Method::POST {
                request = request
                    .header("content-type", "message/rfc822")
                    .body("Subject: x\r\n\r\nx\r\n");
            }
            let response = json_of(request.send().await.expect("request")).await;
            assert_eq!(
                (response.0, response.1["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_request")),
                "{method} {path}: {}",
                response.1
            );
            assert!(
                response.1["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("not valid UTF-8")),
                "{method} {path}: {}",
                response.1
            );
        }
    }
    // Nothing was deleted, uploaded or marked on the way.
    assert_eq!(imap.uids("INBOX").await, before);
    assert_eq!(imap.flags("INBOX", uid).await, flags_before);
    // The same values, valid UTF-8, are accepted.
    let (status, _) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?subject=%C3%BC")
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// A message opened again reads only its flags and parts (its header and structure are
/// remembered from the first view) and says exactly what a first view says, with its flags
/// as they are now.
#[tokio::test]
async fn a_message_opened_again_is_the_same_in_one_round_trip_with_fresh_flags() {
    let bridge = TestBridge::start_with(
        DovecotOptions {
            rawlog: true,
            ..DovecotOptions::default()
        },
        Link::Tls,
        |_| {},
    )
    .await;
    seeded_with_dates(&bridge);
    let token = bridge.login().await;
    let mut direct = bridge.imap().await;
    let inbox = direct.uids("INBOX").await;
    for &uid in &inbox {
        let path = format!("/v1/mailboxes/INBOX/messages/{uid}");
        let (status, first) = bridge.get_json(&token, &path).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        let (_, again) = bridge.get_json(&token, &path).await;
        assert_eq!(again, first, "message {uid} opened again");
    }
    let structure_reads = |log: &str| log.lines().filter(|l| l.contains("BODYSTRUCTURE")).count();
    let before = structure_reads(&bridge.dovecot.rawlog_in(USER));

    let uid = inbox[0];
    let path = format!("/v1/mailboxes/INBOX/messages/{uid}");
    direct
        .store("INBOX", &uid.to_string(), "+FLAGS (\\Flagged)")
        .await;
    let (_, flagged) = bridge.get_json(&token, &path).await;
    assert!(
        flagged["flags"]
            .as_array()
            .expect("flags")
            .contains(&Value::from("\\Flagged")),
        "{flagged}"
    );
    direct
        .store("INBOX", &uid.to_string(), "-FLAGS (\\Seen)")
        .await;
    let (_, unread) = bridge.get_json(&token, &path).await;
    assert!(
        !unread["flags"]
            .as_array()
            .expect("flags")
            .contains(&Value::from("\\Seen")),
        "{unread}"
    );
    assert_eq!(
        structure_reads(&bridge.dovecot.rawlog_in(USER)),
        before,
        "views of known messages read no structure"
    );
    // Marking it read still works, and says so.
    let (_, read) = bridge
        .get_json(&token, &format!("{path}?mark_seen=true"))
        .await;
    assert!(
        read["flags"]
            .as_array()
            .expect("flags")
            .contains(&Value::from("\\Seen")),
        "{read}"
    );
    assert!(
        direct
            .flags("INBOX", uid)
            .await
            .iter()
            .any(|f| f.contains("Seen"))
    );

    // Once the bridge's session has heard of the expunge (a list syncs it), the message is
    // gone for it as for a first view.
    direct.expunge("INBOX", uid).await;
    let (status, _) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages")
        .await;
    assert_eq!(status, StatusCode::OK);
    let gone = bridge.get_json(&token, &path).await;
    common::bridge::assert_problem(
        &gone,
        StatusCode::NOT_FOUND,
        "message_not_found",
        "expunged",
    );
}
