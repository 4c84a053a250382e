//! Real-world message fidelity against Dovecot: the corpus of `tests/corpus/realworld/`
//! (see its README) read through the bridge and compared with Python's `email` package, as
//! `common::fidelity` describes.
//!
//! Against another server: deliver the corpus (`fidelity::load()`, in that order) to a
//! mailbox by the server's own means, or upload it through the bridge with
//! `fidelity::upload`, then call `fidelity::check_corpus` with a `Target` naming the bridge,
//! a token and the mailbox, and `assert_all_match` on its report.

mod common;

use common::bridge::{Link, TestBridge, USER};
use common::dovecot::DovecotOptions;
use common::fidelity::{self, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_message_reads_as_mail_clients_read_it() {
    let started = std::time::Instant::now();
    let (corpus, python) = fidelity::load();
    println!(
        "{} messages decoded by Python {python} in {:.1} s",
        corpus.len(),
        started.elapsed().as_secs_f64()
    );
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Plain, |_| {}).await;
    bridge
        .dovecot
        .deliver_many(USER, "Corpus", corpus.iter().map(|m| m.raw.clone()));
    let token = bridge.login().await;
    let target = Target {
        http: &bridge.http,
        base: &bridge.base,
        token: &token,
        mailbox: "Corpus",
    };
    let report = fidelity::check_corpus(&target, &corpus).await;
    println!("total {:.1} s", started.elapsed().as_secs_f64());
    report.assert_all_match();
}

/// The same corpus uploaded through the bridge itself (APPEND), as `check_corpus` is run
/// against a server whose mail store a test cannot write: everything the bridge accepts for
/// upload reads the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_uploaded_through_the_api_reads_the_same() {
    let (corpus, _) = fidelity::load();
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Plain, |_| {}).await;
    let token = bridge.login().await;
    let target = Target {
        http: &bridge.http,
        base: &bridge.base,
        token: &token,
        mailbox: "INBOX",
    };
    let refused = fidelity::upload(&target, &corpus).await;
    // The bridge's own upload checks: IMAP cannot carry NUL, and an mbox From line is no
    // header field.
    let refused_files: Vec<&str> = refused.iter().map(|(file, _)| file.as_str()).collect();
    assert_eq!(
        refused_files,
        [
            "control-nul-in-body.eml",
            "control-nul-in-header.eml",
            "mbox-from-line-and-escaped-body.eml",
            "mbox-from-line-mailer-daemon.eml",
            "mbox-from-line.eml",
        ],
        "{refused:?}"
    );
    let uploaded: Vec<_> = corpus
        .iter()
        .filter(|m| !refused_files.contains(&m.file.as_str()))
        .cloned()
        .collect();
    fidelity::check_corpus(&target, &uploaded)
        .await
        .assert_all_match();
}

/// What a listing shows of the messages whose ENVELOPE Dovecot gets wrong, so that the event
/// carries the same repaired summary as the list and the view.
#[tokio::test]
async fn new_mail_events_carry_the_addresses_the_envelope_lost() {
    let (corpus, _) = fidelity::load();
    let cases: Vec<_> = corpus
        .iter()
        .filter(|m| {
            [
                "envelope-empty-list-element.eml",
                "envelope-name-without-angle-brackets.eml",
                "envelope-at-sign-in-display-name.eml",
                "8bit-latin1-from-name.eml",
            ]
            .contains(&m.file.as_str())
        })
        .collect();
    assert_eq!(cases.len(), 4);
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Plain, |_| {}).await;
    let token = bridge.login().await;
    let mut events = bridge.events(&token, &["INBOX"], None).await;
    // The watcher idles once it has read the mailbox; a delivery before that is no change.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let addresses = |list: &serde_json::Value| -> Vec<(String, String)> {
        list.as_array()
            .expect("addresses")
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap_or("").to_owned(),
                    a["address"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    // One at a time, so that each event is known to be of its message.
    for message in &cases {
        bridge
            .dovecot
            .deliver(USER, "INBOX", &message.raw, "", None);
        let event = loop {
            let event = events
                .next(std::time::Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("no message.new for {}", message.file));
            if event.event == "message.new" {
                break event.data;
            }
        };
        for list in ["from", "to", "cc"] {
            assert_eq!(
                addresses(&event[list]),
                addresses(&message.expected[list]),
                "{} {list}",
                message.file
            );
        }
    }
}

/// A uuencoded file inside a text body downloads like any attachment: whole, in ranges, and
/// with its own name and type.
#[tokio::test]
async fn uuencoded_files_in_text_download_like_attachments() {
    let (corpus, _) = fidelity::load();
    let message = corpus
        .iter()
        .find(|m| m.file == "uuencode-embedded-in-text.eml")
        .expect("in the corpus");
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Plain, |_| {}).await;
    bridge
        .dovecot
        .deliver(USER, "INBOX", &message.raw, "", None);
    let token = bridge.login().await;
    let (_, view) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages/1")
        .await;
    assert_eq!(view["attachments"][0]["part_id"], "1.1");
    let path = "/v1/mailboxes/INBOX/messages/1/attachments/1.1";
    let whole = bridge
        .request(reqwest::Method::GET, path, Some(&token))
        .send()
        .await
        .expect("download");
    assert_eq!(whole.status(), reqwest::StatusCode::OK);
    assert_eq!(whole.headers()["content-type"], "image/jpeg");
    let disposition = whole.headers()["content-disposition"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(disposition.contains("photo.jpg"), "{disposition}");
    let whole = whole.bytes().await.expect("body");
    assert_eq!(
        whole.len() as u64,
        message.expected["attachments"][0]["size"]
            .as_u64()
            .expect("size")
    );
    let ranged = bridge
        .request(reqwest::Method::GET, path, Some(&token))
        .header("range", "bytes=10-19")
        .send()
        .await
        .expect("download");
    assert_eq!(ranged.status(), reqwest::StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        ranged.headers()["content-range"],
        format!("bytes 10-19/{}", whole.len()).as_str()
    );
    assert_eq!(ranged.bytes().await.expect("body"), whole[10..20]);
    for (id, status) in [
        ("1.2", reqwest::StatusCode::NOT_FOUND),
        ("2.1", reqwest::StatusCode::NOT_FOUND),
        ("1.0", reqwest::StatusCode::BAD_REQUEST),
    ] {
        let (got, _) = bridge
            .get_json(
                &token,
                &format!("/v1/mailboxes/INBOX/messages/1/attachments/{id}"),
            )
            .await;
        assert_eq!(got, status, "{id}");
    }
}

/// The corpus on Cyrus, stored through the bridge's upload (Cyrus's spool cannot be written
/// from outside) with CRLF line ends, as an MTA delivers mail (Cyrus refuses bare newlines):
/// every message reads as on Dovecot, except those Cyrus stores changed, which are checked
/// to be stored that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_message_reads_the_same_on_cyrus() {
    use common::servers::{Profile, ServerBridge};
    let (corpus, _) = fidelity::load();
    let corpus: Vec<_> = corpus
        .into_iter()
        .map(|mut m| {
            m.raw = crlf(&m.raw);
            m
        })
        .collect();
    // Cyrus replaces raw 8-bit bytes in header fields with `X` when it stores a message
    // (`munge8bit`, its default): the bridge never sees them, so those messages cannot read
    // as their originals.
    let (munged, kept): (Vec<_>, Vec<_>) = corpus.into_iter().partition(|m| {
        let header_end = m
            .raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(m.raw.len());
        m.raw[..header_end].iter().any(|b| *b >= 0x80)
    });
    let bridge = ServerBridge::start(Profile::Cyrus).await;
    let token = bridge.login().await;
    for name in ["Corpus", "Munged"] {
        let created = bridge
            .send_json(
                reqwest::Method::POST,
                &token,
                "/v1/mailboxes",
                &serde_json::json!({ "name": name }),
            )
            .await;
        assert_eq!(created.0, reqwest::StatusCode::CREATED, "{}", created.1);
    }
    let target = |mailbox| Target {
        http: &bridge.http,
        base: &bridge.base,
        token: &token,
        mailbox,
    };
    let refused = fidelity::upload(&target("Corpus"), &kept).await;
    let refused_files: Vec<&str> = refused.iter().map(|(file, _)| file.as_str()).collect();
    // The bridge refuses NUL and mbox From lines itself (400); Cyrus refuses a field name
    // followed by white space before its colon ("Message contains invalid header", 502).
    assert_eq!(
        refused_files,
        [
            "control-nul-in-body.eml",
            "control-nul-in-header.eml",
            "mbox-from-line-and-escaped-body.eml",
            "mbox-from-line-mailer-daemon.eml",
            "mbox-from-line.eml",
            "obs-whitespace-before-colon.eml",
        ],
        "{refused:?}"
    );
    let mut stored: Vec<_> = kept
        .into_iter()
        .filter(|m| !refused_files.contains(&m.file.as_str()))
        .collect();
    // Cyrus describes a nested multipart without a boundary as an empty text part and serves
    // its section empty: its text never reaches the bridge. (At the top level the bridge
    // reads it from the whole message instead.)
    for message in &mut stored {
        if message.file == "boundary-nested-missing.eml" {
            message.expected["text"] = serde_json::json!("Outer text.");
        }
    }
    fidelity::check_corpus(&target("Corpus"), &stored)
        .await
        .assert_all_match();

    assert!(munged.len() >= 5, "the corpus has 8-bit header fields");
    let refused = fidelity::upload(&target("Munged"), &munged).await;
    assert!(
        refused.iter().all(|(file, _)| file.contains("nul")),
        "{refused:?}"
    );
    let (_, list) = bridge
        .get_json(&token, "/v1/mailboxes/Munged/messages?limit=200")
        .await;
    for summary in list["messages"].as_array().expect("messages") {
        let uid = summary["uid"].as_u64().expect("uid");
        let raw = bridge
            .request(
                reqwest::Method::GET,
                &format!("/v1/mailboxes/Munged/messages/{uid}/raw"),
                Some(&token),
            )
            .send()
            .await
            .expect("raw")
            .bytes()
            .await
            .expect("body");
        let header_end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(raw.len());
        assert!(
            raw[..header_end].is_ascii(),
            "Cyrus stored 8-bit header bytes after all: {}",
            String::from_utf8_lossy(&raw[..header_end])
        );
    }
}

/// `raw` with every line ending in CRLF.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}
