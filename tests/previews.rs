//! Previews in summaries on real servers: Dovecot (which answers RFC 8970's `PREVIEW`), Cyrus
//! (which advertises `PREVIEW` and answers `NIL`, so the bridge reads the text) and profiles
//! without `PREVIEW` (the bridge reads the text), on purpose-built messages: a reply with its
//! quote and signature, HTML with a blockquote, quoted-printable and base64 text cut inside a
//! character by the 2 KiB read, a Latin-1 text, a multipart/alternative beside an attachment,
//! an Outlook reply, and a message that is only an attachment. The same previews in header
//! lists (cold, from the cache, after `preview=false`), filtered lists, thread lists and
//! details, and `message.new` events; `preview=false` leaves the key out and reads no text;
//! a cached repeat fetches no preview.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use common::servers::{Profile, ServerBridge};
use imap_bridge::imap::encode::Command;
use imap_bridge::imap::fetch_item::{NString, nstring_item};
use serde_json::Value;

/// The longest preview.
const MAX_CHARS: usize = 200;
/// What the bridge reads of a text part when the server gives no preview.
const READ_BYTES: usize = 2048;

/// One test message and what its preview must show.
struct Case {
    name: &'static str,
    raw: Vec<u8>,
    /// The preview the bridge makes of it.
    ours: String,
    /// What every preview of it starts with, the server's too: the message's own first words.
    starts: &'static str,
    /// Text no preview of it may hold: the quoted message.
    never: &'static [&'static str],
}

fn message(subject: &str, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "From: Alice Anders <alice@example.test>\r\nTo: Bob Berg <bob@example.test>\r\n\
         Subject: {subject}\r\nDate: Mon, 06 May 2024 12:00:00 +0000\r\n\
         Message-ID: <{}@example.test>\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\
         {extra}\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// White space collapsed, as every preview is.
fn collapsed(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Quoted-printable as mailers write it: 8-bit bytes escaped, soft line breaks before 76
/// characters, an escape never split.
fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    for line in text.split("\r\n") {
        let mut length = 0;
        for byte in line.bytes() {
            let piece = if byte.is_ascii_graphic() && byte != b'=' || byte == b' ' {
                (byte as char).to_string()
            } else {
                format!("={byte:02X}")
            };
            if length + piece.len() > 75 {
                out.push_str("=\r\n");
                length = 0;
            }
            length += piece.len();
            out.push_str(&piece);
        }
        out.push_str("\r\n");
    }
    out
}

/// Base64 in lines of 76 characters.
fn base64_lines(bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::new();
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push_str("\r\n");
    }
    out
}

/// The longest UTF-8 text at the start of `bytes`, and whether a character was cut after it.
fn whole_characters(bytes: &[u8]) -> (&str, bool) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text, false),
        Err(e) => (
            std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid up to there"),
            true,
        ),
    }
}

/// The messages, delivered in this order (UID `i + 1` is case `i` in a new mailbox).
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();

    cases.push(Case {
        name: "a reply with its quote and signature",
        raw: message(
            "Re: Thursday",
            "text/plain; charset=utf-8",
            "",
            b"Thanks Bob, Thursday at ten works for me.\r\nI will bring the figures.\r\n\r\n\
              On Mon, 6 May 2024 at 09:00, Bob Berg <bob@example.test> wrote:\r\n\
              > Can we meet on Thursday to go through the figures?\r\n> Bob\r\n\r\n\
              -- \r\nAlice Anders\r\nExample Ltd., Accounts\r\n",
        ),
        ours: "Thanks Bob, Thursday at ten works for me. I will bring the figures.".to_owned(),
        starts: "Thanks Bob, Thursday at ten works for me. I will bring the figures.",
        never: &["Can we meet", "> Can", "> Bob"],
    });

    cases.push(Case {
        name: "HTML only, the quote in a blockquote",
        raw: message(
            "Re: Lunch",
            "text/html; charset=utf-8",
            "",
            b"<html><head><style>p { color: red }</style></head><body>\r\n\
              <p>Sounds good &mdash; see you <b>there</b>.</p>\r\n\
              <div class=\"gmail_quote\">On Mon, Bob wrote:<blockquote>Lunch at noon?</blockquote>\
              </div></body></html>\r\n",
        ),
        ours: "Sounds good — see you there.".to_owned(),
        starts: "Sounds good — see you there",
        never: &["Lunch at noon", "color", "<"],
    });

    // Quoted-printable whose first 2 KiB end inside the escapes of a four-byte character.
    let greeting = "Photos from Saturday are up!";
    let text = format!("{greeting}\r\n{}", "😀".repeat(300));
    let body = quoted_printable(&text);
    // What the read holds of it: an escape or soft line break cut at its end is no text.
    let start = &body.as_bytes()[..READ_BYTES];
    let start = match start.iter().rposition(|&b| b == b'=') {
        Some(at) if start.len() - at < 3 => &start[..at],
        _ => start,
    };
    let start = String::from_utf8(start.to_vec())
        .expect("ASCII")
        .replace("=\r\n", "");
    let mut decoded = Vec::new();
    let mut rest = start.as_str();
    while let Some((text, escaped)) = rest.split_once('=') {
        decoded.extend_from_slice(text.as_bytes());
        decoded.push(u8::from_str_radix(&escaped[..2], 16).expect("an escape"));
        rest = &escaped[2..];
    }
    decoded.extend_from_slice(rest.as_bytes());
    let (whole, cut) = whole_characters(&decoded);
    assert!(cut, "the 2 KiB read must end inside a character");
    let ours = collapsed(whole);
    assert!(
        ours.chars().count() < MAX_CHARS,
        "the read, not the length, bounds it"
    );
    cases.push(Case {
        name: "quoted-printable cut inside a character",
        raw: message(
            "Photos",
            "text/plain; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable\r\n",
            body.as_bytes(),
        ),
        ours,
        starts: "Photos from Saturday are up! 😀😀😀",
        never: &["="],
    });

    // Base64 whose first 2 KiB end inside a three-byte character, after a run of blank lines.
    let text = format!(
        "{}\r\n{}",
        "\r\n".repeat(675),
        "日本語の文章です。".repeat(40)
    );
    let body = base64_lines(text.as_bytes());
    let encoded: String = body.as_bytes()[..READ_BYTES]
        .iter()
        .map(|&b| b as char)
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let groups = &encoded[..encoded.len() / 4 * 4];
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(groups)
        .expect("whole groups");
    let (whole, cut) = whole_characters(&decoded);
    assert!(cut, "the 2 KiB read must end inside a character");
    let ours = collapsed(whole);
    assert!(
        ours.chars().count() < MAX_CHARS,
        "the read, not the length, bounds it"
    );
    cases.push(Case {
        name: "base64 cut inside a character",
        raw: message(
            "Japanese",
            "text/plain; charset=utf-8",
            "Content-Transfer-Encoding: base64\r\n",
            body.as_bytes(),
        ),
        ours,
        starts: "日本語の文章です。日本語の文章です。",
        never: &[],
    });

    cases.push(Case {
        name: "Latin-1",
        raw: message(
            "Gruesse",
            "text/plain; charset=iso-8859-1",
            "Content-Transfer-Encoding: 8bit\r\n",
            b"Gr\xfc\xdfe aus K\xf6ln,\r\ndie Unterlagen liegen bei.\r\n",
        ),
        ours: "Grüße aus Köln, die Unterlagen liegen bei.".to_owned(),
        starts: "Grüße aus Köln, die Unterlagen liegen bei.",
        never: &[],
    });

    cases.push(Case {
        name: "multipart/alternative beside an attachment",
        raw: message(
            "Report",
            "multipart/mixed; boundary=m",
            "",
            b"--m\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n\
              --a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe plain words come first.\r\n\
              --a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>The HTML words.</p>\r\n--a--\r\n\
              --m\r\nContent-Type: application/pdf; name=report.pdf\r\n\
              Content-Disposition: attachment; filename=report.pdf\r\n\
              Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--m--\r\n",
        ),
        ours: "The plain words come first.".to_owned(),
        starts: "The plain words come first.",
        never: &["HTML words", "JVBER"],
    });

    cases.push(Case {
        name: "an Outlook reply",
        raw: message(
            "RE: Budget",
            "text/plain; charset=utf-8",
            "",
            b"Yes, approved.\r\n\r\n-----Original Message-----\r\nFrom: Bob Berg\r\n\
              Sent: Monday, May 6, 2024 9:00 AM\r\nSubject: Budget\r\n\r\nCan you approve it?\r\n",
        ),
        ours: "Yes, approved.".to_owned(),
        starts: "Yes, approved.",
        never: &[],
    });

    cases.push(Case {
        name: "only an attachment",
        raw: message(
            "Scan",
            "multipart/mixed; boundary=m",
            "",
            b"--m\r\nContent-Type: application/pdf; name=scan.pdf\r\n\
              Content-Disposition: attachment; filename=scan.pdf\r\n\
              Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--m--\r\n",
        ),
        ours: String::new(),
        starts: "",
        never: &["JVBER"],
    });
    cases
}

/// The server's own PREVIEW of each message of `mailbox`, by UID, read past the response
/// parser as the bridge reads it (`None` for `NIL`).
async fn server_previews(bridge: &ServerBridge, mailbox: &str) -> BTreeMap<u32, Option<String>> {
    let mut session = bridge.pooled_session(mailbox).await;
    let mut previews = BTreeMap::new();
    let cmd = Command::new("UID FETCH").atom("1:* (UID PREVIEW)");
    session
        .run_raw(&cmd, |r, raw| {
            if let async_imap::imap_proto::Response::Fetch(_, attrs) = r
                && let Some(uid) = attrs.iter().find_map(|a| match a {
                    async_imap::imap_proto::AttributeValue::Uid(u) => Some(*u),
                    _ => None,
                })
            {
                let preview = match nstring_item(raw, b"PREVIEW") {
                    Some(NString::Text(text)) => Some(collapsed(&String::from_utf8_lossy(&text))),
                    _ => None,
                };
                previews.insert(uid, preview);
            }
            Ok(())
        })
        .await
        .expect("UID FETCH PREVIEW")
        .into_result()
        .expect("PREVIEW answered");
    previews
}

/// Previews fetched so far: (from the server's PREVIEW, read from text parts).
async fn fetched(bridge: &ServerBridge) -> (f64, f64) {
    (
        bridge
            .counter("imap_bridge_previews_fetched_total{source=\"server\"")
            .await,
        bridge
            .counter("imap_bridge_previews_fetched_total{source=\"body\"")
            .await,
    )
}

/// The previews of a list's `messages`, by UID; none may be missing.
fn previews_of(messages: &Value) -> BTreeMap<u32, String> {
    messages
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            let uid = u32::try_from(m["uid"].as_u64().expect("uid")).expect("u32");
            let preview = m["preview"]
                .as_str()
                .unwrap_or_else(|| panic!("no preview: {m}"));
            (uid, preview.to_owned())
        })
        .collect()
}

fn assert_no_previews(messages: &Value, what: &str) {
    for m in messages.as_array().expect("messages") {
        assert!(
            m.get("preview").is_none(),
            "{what}: preview=false leaves the key out: {m}"
        );
    }
}

/// Checks each case's preview: what a user sees in every preview (the message's own first
/// words, no quote, at most 200 characters, nothing undecodable), and exactly the bridge's
/// own preview unless the server gave its own (`server`, by UID).
fn check(
    cases: &[Case],
    previews: &BTreeMap<u32, String>,
    server: &BTreeMap<u32, Option<String>>,
    what: &str,
) {
    assert_eq!(previews.len(), cases.len(), "{what}: {previews:#?}");
    for (i, case) in cases.iter().enumerate() {
        let uid = u32::try_from(i + 1).expect("u32");
        let preview = &previews[&uid];
        let name = case.name;
        assert!(
            preview.chars().count() <= MAX_CHARS,
            "{what}, {name}: {preview:?}"
        );
        assert!(!preview.contains('\u{fffd}'), "{what}, {name}: {preview:?}");
        assert!(
            preview.starts_with(case.starts),
            "{what}, {name}: {preview:?}"
        );
        for never in case.never {
            assert!(!preview.contains(never), "{what}, {name}: {preview:?}");
        }
        match server.get(&uid).cloned().flatten() {
            Some(own) => assert_eq!(preview, &own, "{what}, {name}: the server's own preview"),
            None => assert_eq!(preview, &case.ours, "{what}, {name}"),
        }
    }
}

const WAIT: Duration = Duration::from_secs(10);

/// Everything about previews on `profile`'s server.
async fn previews_on(profile: Profile) {
    let bridge = ServerBridge::start(profile).await;
    let cases = cases();
    let raws: Vec<Vec<u8>> = cases.iter().map(|c| c.raw.clone()).collect();
    bridge.server.deliver_many("INBOX", raws.clone());
    bridge.server.deliver_many("Cold", raws);
    let n = cases.len() as f64;
    // What the server previews itself: nothing without PREVIEW, nothing on Cyrus (NIL).
    let server = if bridge.has("PREVIEW") {
        server_previews(&bridge, "INBOX").await
    } else {
        BTreeMap::new()
    };
    let from_server = server.values().filter(|p| p.is_some()).count();
    match profile {
        Profile::Dovecot => assert_eq!(from_server, cases.len(), "{server:#?}"),
        _ => assert_eq!(from_server, 0, "{server:#?}"),
    }
    // Messages the bridge reads text for: all with text, unless the server previews them.
    let read = if from_server > 0 { 0.0 } else { n - 1.0 };
    let by_server = from_server as f64;
    let token = bridge.login().await;
    let inbox = "/v1/mailboxes/INBOX/messages";

    // A list without previews reads no text, and caches the summaries without them.
    let plain = bridge
        .get_ok(&token, &format!("{inbox}?preview=false"))
        .await;
    assert_no_previews(&plain["messages"], "cold list");
    assert_eq!(fetched(&bridge).await, (0.0, 0.0));

    // The same summaries with previews: asked for the cached summaries.
    let listed = bridge.get_ok(&token, inbox).await;
    let previews = previews_of(&listed["messages"]);
    check(&cases, &previews, &server, "after preview=false");
    assert_eq!(fetched(&bridge).await, (by_server, read));

    // A repeat (and a list without previews) comes from the cache: no preview fetched.
    let again = bridge.get_ok(&token, inbox).await;
    assert_eq!(again["messages"], listed["messages"]);
    let plain_again = bridge
        .get_ok(&token, &format!("{inbox}?preview=false"))
        .await;
    assert_eq!(plain_again["messages"], plain["messages"]);
    let filtered = bridge.get_ok(&token, &format!("{inbox}?unseen=true")).await;
    assert_eq!(previews_of(&filtered["messages"]), previews);
    assert_eq!(fetched(&bridge).await, (by_server, read));

    // A cold list with previews: fetched with the summaries, the same.
    let cold = bridge.get_ok(&token, "/v1/mailboxes/Cold/messages").await;
    assert_eq!(previews_of(&cold["messages"]), previews);
    assert_eq!(fetched(&bridge).await, (2.0 * by_server, 2.0 * read));

    // Thread lists and threads carry the same previews, or none with preview=false.
    let threads = bridge.get_ok(&token, "/v1/mailboxes/INBOX/threads").await;
    let latest: Vec<Value> = threads["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| t["latest"].clone())
        .collect();
    assert_eq!(latest.len(), cases.len(), "every message is its own thread");
    assert_eq!(previews_of(&Value::Array(latest)), previews);
    let threads_plain = bridge
        .get_ok(&token, "/v1/mailboxes/INBOX/threads?preview=false")
        .await;
    let latest_plain: Vec<Value> = threads_plain["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| t["latest"].clone())
        .collect();
    assert_no_previews(&Value::Array(latest_plain), "thread list");
    let id = threads["threads"][0]["thread_id"].as_str().expect("id");
    let thread = bridge
        .get_ok(&token, &format!("/v1/mailboxes/INBOX/threads/{id}"))
        .await;
    let shown = previews_of(&thread["messages"]);
    assert!(!shown.is_empty());
    for (uid, preview) in &shown {
        assert_eq!(preview, &previews[uid]);
    }
    let thread_plain = bridge
        .get_ok(
            &token,
            &format!("/v1/mailboxes/INBOX/threads/{id}?preview=false"),
        )
        .await;
    assert_no_previews(&thread_plain["messages"], "thread");
    assert_eq!(fetched(&bridge).await, (2.0 * by_server, 2.0 * read));

    // A message that arrives comes with its preview.
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = String::from_utf8(cases[0].raw.clone())
        .expect("UTF-8")
        .replace("<Re:-Thursday@", "<again@");
    bridge.server.deliver("INBOX", reply.as_bytes(), "", None);
    let event = events.next(WAIT).await.expect("message.new");
    assert_eq!(event.event, "message.new");
    assert_eq!(event.data["uid"], cases.len() + 1);
    assert_eq!(event.data["preview"], previews[&1], "{}", event.data);
}

#[tokio::test]
async fn dovecot_previews_are_its_own_preview() {
    previews_on(Profile::Dovecot).await;
}

#[tokio::test]
async fn cyrus_answers_nil_and_the_bridge_reads_the_text() {
    previews_on(Profile::Cyrus).await;
}

#[tokio::test]
async fn without_preview_the_bridge_reads_the_text() {
    previews_on(Profile::Gmail).await;
}

#[tokio::test]
async fn a_bare_server_gets_previews_too() {
    previews_on(Profile::Bare).await;
}

/// Without the summary cache every page fetches its summaries, and their previews, again.
async fn previews_without_cache(profile: Profile) {
    let bridge = ServerBridge::start_with(profile, |c| c.cache_size = 0).await;
    let cases = cases();
    bridge
        .server
        .deliver_many("INBOX", cases.iter().map(|c| c.raw.clone()).collect());
    let server = if profile == Profile::Dovecot {
        server_previews(&bridge, "INBOX").await
    } else {
        BTreeMap::new()
    };
    let token = bridge.login().await;
    let plain = bridge
        .get_ok(&token, "/v1/mailboxes/INBOX/messages?preview=false")
        .await;
    assert_no_previews(&plain["messages"], "list");
    assert_eq!(fetched(&bridge).await, (0.0, 0.0));
    for _ in 0..2 {
        let listed = bridge
            .get_ok(&token, "/v1/mailboxes/INBOX/messages?limit=3")
            .await;
        assert_eq!(listed["messages"].as_array().map(Vec::len), Some(3));
        let listed = bridge.get_ok(&token, "/v1/mailboxes/INBOX/messages").await;
        check(
            &cases,
            &previews_of(&listed["messages"]),
            &server,
            "no cache",
        );
    }
    let n = cases.len() as f64;
    let expected = if profile == Profile::Dovecot {
        (2.0 * (n + 3.0), 0.0)
    } else {
        // Each page reads the text of its messages that have some: the three newest, then all.
        (0.0, 2.0 * (3.0 + n - 1.0) - 2.0)
    };
    assert_eq!(fetched(&bridge).await, expected);
}

#[tokio::test]
async fn dovecot_without_the_cache() {
    previews_without_cache(Profile::Dovecot).await;
}

#[tokio::test]
async fn exchange_without_the_cache() {
    previews_without_cache(Profile::Exchange).await;
}
