//! Threading on real servers: `UID THREAD REFERENCES` as Dovecot and Cyrus answer it, read
//! past the response parser, against the bridge's own RFC 5256 threading of the same
//! messages, on conversations built to be awkward (broken `References`, missing parents,
//! replies known only by subject).

mod common;

use common::bridge::{PASSWORD, USER};
use common::servers::{Profile, ServerBridge};
use imap_bridge::imap::error::ImapError;
use imap_bridge::imap::{Credentials, MailboxName, UserKey};
use imap_bridge::mail::threading::{self, Message};

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
            let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            Message {
                key: i as u32 + 1,
                message_id: some(id),
                references: some(references),
                in_reply_to: some(in_reply_to),
                subject: (*subject).to_owned(),
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
    let key = UserKey {
        upstream: bridge.state.upstream.clone(),
        username: USER.to_owned(),
    };
    let credentials = Credentials::password(USER, PASSWORD);
    let mut session = bridge
        .state
        .pools
        .session(&key, &credentials)
        .await
        .expect("a session");
    session
        .select(&MailboxName::new("INBOX").expect("name"))
        .await
        .expect("select");
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
