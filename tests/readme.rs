//! The README's walk-through ("Try it with curl") runs exactly as written on the demo's mail and
//! shows what the README says it shows; and the check that says so fails where the README and
//! the demo disagree.
//!
//! The mail is the demo's own (`tests/common/demo_mail.rs`, which `scripts/demo` seeds too), on
//! a private Dovecot; the walk-through runs with bash and curl (`tests/common/walkthrough.rs`).

mod common;

use common::bridge::{DirectImap, Link, TestBridge, config_for};
use common::corpus;
use common::demo_mail;
use common::dovecot::{Dovecot, DovecotOptions};
use common::walkthrough;
use reqwest::StatusCode;
use serde_json::Value;

/// A bridge in front of a Dovecot holding the demo's mail.
async fn demo() -> TestBridge {
    let dovecot = tokio::task::spawn_blocking(|| {
        let dovecot = Dovecot::start_with(DovecotOptions::default());
        demo_mail::seed(&dovecot);
        dovecot
    })
    .await
    .expect("dovecot start");
    let config = config_for(&dovecot, Link::Tls);
    TestBridge::serve(dovecot, config).await
}

/// Runs `script` (the README's walk-through, or a changed copy) against `bridge`.
async fn walk(bridge: &TestBridge, script: String) -> Result<walkthrough::Report, String> {
    let base = bridge.base.clone();
    tokio::task::spawn_blocking(move || walkthrough::run_script(&base, &script))
        .await
        .expect("walk-through thread")
}

/// The README's walk-through with `from` replaced by `to` (which must be there).
fn changed(from: &str, to: &str) -> String {
    let script = walkthrough::script().expect("the README's walk-through");
    assert!(
        script.contains(from),
        "the walk-through no longer contains {from:?}"
    );
    script.replace(from, to)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_walkthrough_runs_as_written_on_the_demo_mail_and_shows_what_it_says() {
    let bridge = demo().await;
    let script = walkthrough::script().expect("the README's walk-through");
    let report = walk(&bridge, script)
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let shown = walkthrough::check(&report).unwrap_or_else(|why| panic!("{why}"));

    // The invoice is the corpus's message 3, and the file saved is its PDF, byte for byte.
    assert_eq!(shown.invoice["subject"], "Invoice 2024-001");
    assert_eq!(shown.saved_file.0, "invoice-2024-001.pdf");
    assert!(
        shown.saved_file.1 == corpus::fake_pdf(),
        "the saved invoice-2024-001.pdf is not the attachment the demo seeded"
    );

    // "delete the draft (it moves to Trash), delete the folder with its copy"
    let token = bridge.login_as(demo_mail::USER, demo_mail::PASSWORD).await;
    let (status, trash) = bridge
        .get_json(&token, "/v1/mailboxes/Trash/messages?subject=Donnerstag")
        .await;
    assert_eq!(status, StatusCode::OK, "{trash}");
    let subjects: Vec<&Value> = trash["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| &m["subject"])
        .collect();
    assert_eq!(subjects, ["Überblick für Donnerstag"], "{trash}");
    let (status, drafts) = bridge
        .get_json(&token, "/v1/mailboxes/Drafts/messages")
        .await;
    assert_eq!(
        (status, &drafts["total"]),
        (StatusCode::OK, &Value::from(0))
    );
    let (status, mailboxes) = bridge.get_json(&token, "/v1/mailboxes").await;
    assert_eq!(status, StatusCode::OK, "{mailboxes}");
    assert!(
        !mailboxes["mailboxes"]
            .as_array()
            .expect("mailboxes")
            .iter()
            .any(|m| m["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("Projekte"))),
        "the walk-through's folder is left over: {mailboxes}"
    );

    // The walk-through can run again on the same mail, as a reader of the README may do.
    let script = walkthrough::script().expect("the README's walk-through");
    let again = walk(&bridge, script)
        .await
        .unwrap_or_else(|why| panic!("second run: {why}"));
    walkthrough::check(&again).unwrap_or_else(|why| panic!("second run: {why}"));
}

/// The check is only worth something if it fails where the README is wrong: each of these is
/// a way the README went wrong before, or could.
#[tokio::test(flavor = "multi_thread")]
async fn the_walkthrough_check_fails_where_the_readme_and_the_demo_disagree() {
    let bridge = demo().await;

    // The old README's fixed UIDs: message 42 of the demo's INBOX is bulk mail without an
    // attachment, so the download is a 404 problem (which curl saved as a file named `2`).
    let script = changed(
        "messages/$INVOICE/attachments/2",
        "messages/42/attachments/2",
    );
    let why = walk(&bridge, script)
        .await
        .expect_err("a download answered 404 passed");
    assert!(why.contains("was answered 404"), "{why}");

    // An example file that is not shipped.
    let script = changed("@examples/draft.eml", "@draft.eml");
    let why = walk(&bridge, script)
        .await
        .expect_err("an upload of a missing file passed");
    assert!(why.contains("the walk-through failed"), "{why}");

    // A request without the token.
    let script = changed(
        r#"curl -s $B/v1/mailboxes -H "$H""#,
        "curl -s $B/v1/mailboxes",
    );
    let why = walk(&bridge, script)
        .await
        .expect_err("a request answered 401 passed");
    assert!(why.contains("was answered 401"), "{why}");

    // A step of the README changed, and the check not with it.
    let script = changed("unseen=true&sort=date", "unseen=false&sort=date");
    let report = walk(&bridge, script)
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let why = walkthrough::check(&report).expect_err("a changed step passed");
    assert!(
        why.contains("the walk-through no longer does this: list unread mail by date")
            && why.contains(
                "`GET /v1/mailboxes/INBOX/messages?unseen=false&sort=date` belongs to no step"
            ),
        "{why}"
    );

    // A conversation opened with another list's filters than the one its id came from: it
    // is there, but not with the messages the list showed.
    let script = changed("threads/$THREAD -H", "threads/$THREAD?since=2999-01-01 -H");
    let why = walk(&bridge, script)
        .await
        .expect_err("a thread missing from a filtered list passed");
    assert!(why.contains("was answered 404"), "{why}");

    // The demo's mail no longer what the README shows: every request succeeds, but with all
    // of INBOX read, the unread list the README promises is empty.
    let mut imap = DirectImap::login(
        bridge.dovecot.imap_addr(),
        demo_mail::USER,
        demo_mail::PASSWORD,
    )
    .await;
    imap.store("INBOX", "1:*", "+FLAGS.SILENT (\\Seen)").await;
    let script = walkthrough::script().expect("the README's walk-through");
    let report = walk(&bridge, script)
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let why = walkthrough::check(&report).expect_err("an empty unread list passed");
    assert!(why.contains("should answer unread messages only"), "{why}");
}
