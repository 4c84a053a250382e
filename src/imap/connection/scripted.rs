//! The connection driven by a scripted server over loopback TCP: pipelining with and without
//! LITERAL+ or LITERAL-, refused literals, out-of-order completions, untagged data anywhere,
//! escapes in quoted strings, and protocol violations. The script checks the exact bytes the
//! connection sends, and that it sends nothing before the server asked for it.

use std::collections::HashSet;
use std::time::Duration;

use async_imap::imap_proto::{MailboxDatum, Response, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::imap::encode::{SearchKey, UidSet};
use crate::imap::guard::{GuardLimits, GuardedStream};
use crate::imap::transport::ImapStream;

/// One step of the server's side.
enum Step {
    /// The client must have sent exactly these bytes next.
    Expect(&'static str),
    /// The client must send nothing more for a while (it is waiting for us).
    Quiet,
    /// Send these bytes.
    Send(&'static str),
}

use Step::{Expect, Quiet, Send};

const WAIT: Duration = Duration::from_secs(3);
const QUIET: Duration = Duration::from_millis(150);

async fn serve(mut socket: TcpStream, script: Vec<Step>) -> std::result::Result<(), String> {
    let mut received: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    for (n, step) in script.into_iter().enumerate() {
        match step {
            Expect(want) => {
                let want = want.as_bytes();
                while received.len() < want.len() {
                    let read = tokio::time::timeout(WAIT, socket.read(&mut chunk))
                        .await
                        .map_err(|_| {
                            format!(
                                "step {n}: waited for {:?}, got only {:?}",
                                String::from_utf8_lossy(want),
                                String::from_utf8_lossy(&received)
                            )
                        })?
                        .map_err(|e| e.to_string())?;
                    if read == 0 {
                        return Err(format!("step {n}: the client closed the connection"));
                    }
                    received.extend_from_slice(&chunk[..read]);
                }
                if &received[..want.len()] != want {
                    return Err(format!(
                        "step {n}: expected {:?}, got {:?}",
                        String::from_utf8_lossy(want),
                        String::from_utf8_lossy(&received)
                    ));
                }
                received.drain(..want.len());
            }
            Quiet => {
                if let Ok(read) = tokio::time::timeout(QUIET, socket.read(&mut chunk)).await {
                    let read = read.map_err(|e| e.to_string())?;
                    received.extend_from_slice(&chunk[..read]);
                }
                if !received.is_empty() {
                    return Err(format!(
                        "step {n}: the client sent {:?} before it was asked to",
                        String::from_utf8_lossy(&received)
                    ));
                }
            }
            Send(bytes) => socket
                .write_all(bytes.as_bytes())
                .await
                .map_err(|e| e.to_string())?,
        }
    }
    if let Ok(Ok(read)) = tokio::time::timeout(QUIET, socket.read(&mut chunk)).await {
        received.extend_from_slice(&chunk[..read]);
    }
    if received.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the client sent more than the script expects: {:?}",
            String::from_utf8_lossy(&received)
        ))
    }
}

/// A connection to a server that plays `script`, advertising `capabilities`.
async fn scripted(
    capabilities: &[&str],
    script: Vec<Step>,
) -> (
    Connection,
    tokio::task::JoinHandle<std::result::Result<(), String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.map_err(|e| e.to_string())?;
        serve(socket, script).await
    });
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let limits = SessionLimits {
        connect_timeout: WAIT,
        command_timeout: WAIT,
        guard: GuardLimits::default(),
    };
    let conn = Connection {
        framed: async_imap::Client::new(GuardedStream::new(ImapStream::Plain(tcp), limits.guard)),
        next_tag: 0,
        capabilities: Capabilities(
            capabilities
                .iter()
                .map(|c| c.to_owned().to_owned())
                .collect::<HashSet<_>>(),
        ),
        selected: None,
        limits,
        clean: true,
        names_epoch: Arc::new(AtomicU64::new(0)),
        selected_epoch: 0,
        cache: None,
        tracker: None,
        view_epoch: 0,
        flag_window: None,
    };
    (conn, server)
}

async fn script_passed(server: tokio::task::JoinHandle<std::result::Result<(), String>>) {
    server.await.expect("script task").expect("script");
}

fn search(subject: &str) -> Command {
    Command::new("UID SEARCH").search(&[SearchKey::Subject(
        ImapString::new(subject).expect("valid string"),
    )])
}

/// What a pipeline reported: (command index, untagged response kind) and the completions'
/// statuses and texts.
type Seen = Vec<(usize, String)>;

fn describe(response: &Response<'_>) -> String {
    match response {
        Response::MailboxData(MailboxDatum::Exists(n)) => format!("EXISTS {n}"),
        Response::MailboxData(MailboxDatum::Search(uids)) => format!("SEARCH {uids:?}"),
        Response::Expunge(n) => format!("EXPUNGE {n}"),
        Response::Fetch(n, _) => format!("FETCH {n}"),
        other => format!("{other:?}"),
    }
}

async fn run(conn: &mut Connection, cmds: &[Command]) -> Result<(Vec<(Status, String)>, Seen)> {
    let mut seen = Vec::new();
    let done = conn
        .run_pipelined(cmds, |index, r| {
            seen.push((index, describe(r)));
            Ok(())
        })
        .await?;
    Ok((done.into_iter().map(|c| (c.status, c.text)).collect(), seen))
}

#[tokio::test]
async fn without_literal_plus_earlier_completions_are_read_while_waiting_for_the_continuation() {
    // The defect this guards against: the NOOP's completion arrived while the connection
    // waited for "+", was taken for untagged data, and the pipeline then waited for it until
    // the command timeout.
    let (mut conn, server) = scripted(
        &["IMAP4REV1"],
        vec![
            Expect("b1 NOOP\r\nb2 UID SEARCH CHARSET UTF-8 SUBJECT {7}\r\n"),
            Quiet,
            Send("* 3 EXISTS\r\nb1 OK NOOP done\r\n+ go ahead\r\n"),
            Expect("Grüße\r\n"),
            Send("* SEARCH 2 3\r\nb2 OK SEARCH done\r\n"),
        ],
    )
    .await;
    let (done, seen) = run(&mut conn, &[Command::new("NOOP"), search("Grüße")])
        .await
        .expect("pipeline completes");
    assert_eq!(
        done,
        vec![
            (Status::Ok, "NOOP done".to_owned()),
            (Status::Ok, "SEARCH done".to_owned())
        ]
    );
    assert_eq!(
        seen,
        vec![(0, "EXISTS 3".to_owned()), (1, "SEARCH [2, 3]".to_owned())]
    );
    assert!(conn.is_clean());
    script_passed(server).await;
}

#[tokio::test]
async fn with_literal_plus_the_pipeline_is_one_write_and_completions_may_come_out_of_order() {
    let (mut conn, server) = scripted(
        &["IMAP4REV1", "LITERAL+"],
        vec![
            Expect("b1 NOOP\r\nb2 UID SEARCH CHARSET UTF-8 SUBJECT {7+}\r\nGrüße\r\n"),
            Send("* SEARCH 7\r\nb2 OK searched\r\n* 4 EXPUNGE\r\nb1 OK noop\r\n"),
        ],
    )
    .await;
    let (done, seen) = run(&mut conn, &[Command::new("NOOP"), search("Grüße")])
        .await
        .expect("pipeline completes");
    assert_eq!(
        done,
        vec![
            (Status::Ok, "noop".to_owned()),
            (Status::Ok, "searched".to_owned())
        ]
    );
    // Untagged data goes to the oldest open command: the server's order is all there is.
    assert_eq!(
        seen,
        vec![(0, "SEARCH [7]".to_owned()), (0, "EXPUNGE 4".to_owned())]
    );
    assert!(conn.is_clean());
    script_passed(server).await;
}

#[tokio::test]
async fn literal_minus_waits_only_for_literals_beyond_4096_bytes() {
    let large = "ü".repeat(2049);
    let large: &'static str = Box::leak(large.into_boxed_str());
    let header: &'static str = Box::leak(
        format!(
            "b2 UID SEARCH CHARSET UTF-8 SUBJECT {{{}}}\r\n",
            large.len()
        )
        .into_boxed_str(),
    );
    let rest: &'static str = Box::leak(format!("{large}\r\n").into_boxed_str());
    let (mut conn, server) = scripted(
        &["IMAP4REV1", "LITERAL-"],
        vec![
            Expect("b1 UID SEARCH CHARSET UTF-8 SUBJECT {7+}\r\nGrüße\r\n"),
            Expect(header),
            Quiet,
            Send("b1 OK small\r\n+ \r\n"),
            Expect(rest),
            Send("b2 OK large\r\n"),
        ],
    )
    .await;
    let (done, _) = run(&mut conn, &[search("Grüße"), search(large)])
        .await
        .expect("pipeline completes");
    assert_eq!(
        done,
        vec![
            (Status::Ok, "small".to_owned()),
            (Status::Ok, "large".to_owned())
        ]
    );
    script_passed(server).await;
}

#[tokio::test]
async fn a_refused_literal_ends_its_command_and_the_rest_of_the_pipeline_still_runs() {
    let (mut conn, server) = scripted(
        &["IMAP4REV1"],
        vec![
            Expect("b1 NOOP\r\nb2 UID SEARCH CHARSET UTF-8 SUBJECT {7}\r\n"),
            Quiet,
            Send("b1 OK noop\r\nb2 NO [BADCHARSET (US-ASCII)] no UTF-8 here\r\n"),
            Expect("b3 NOOP\r\n"),
            Send("b3 OK noop again\r\n"),
        ],
    )
    .await;
    let (done, _) = run(
        &mut conn,
        &[Command::new("NOOP"), search("Grüße"), Command::new("NOOP")],
    )
    .await
    .expect("pipeline completes");
    assert_eq!(
        done,
        vec![
            (Status::Ok, "noop".to_owned()),
            (Status::No, "no UTF-8 here".to_owned()),
            (Status::Ok, "noop again".to_owned())
        ]
    );
    assert!(conn.is_clean(), "a refused literal leaves a known state");
    script_passed(server).await;
}

#[tokio::test]
async fn several_literals_in_one_command_each_wait_for_their_continuation() {
    let command = Command::new("UID SEARCH").search(&[
        SearchKey::From(ImapString::new("Müller").expect("string")),
        SearchKey::Subject(ImapString::new("Grüße").expect("string")),
    ]);
    let (mut conn, server) = scripted(
        &["IMAP4REV1"],
        vec![
            Expect("b1 UID SEARCH CHARSET UTF-8 FROM {7}\r\n"),
            Quiet,
            Send("* 9 EXISTS\r\n+ one\r\n"),
            Expect("Müller SUBJECT {7}\r\n"),
            Quiet,
            Send("* 2 FETCH (FLAGS (\\Seen))\r\n+ two\r\n"),
            Expect("Grüße\r\n"),
            Send("* SEARCH\r\nb1 OK done\r\n"),
        ],
    )
    .await;
    let (done, seen) = run(&mut conn, &[command]).await.expect("completes");
    assert_eq!(done, vec![(Status::Ok, "done".to_owned())]);
    assert_eq!(
        seen,
        vec![
            (0, "EXISTS 9".to_owned()),
            (0, "FETCH 2".to_owned()),
            (0, "SEARCH []".to_owned())
        ]
    );
    assert_eq!(conn.selected().map(|s| s.exists), None);
    script_passed(server).await;
}

#[tokio::test]
async fn an_append_literal_waits_for_the_continuation_behind_a_pipelined_store() {
    let uids = UidSet::single(5).expect("uid");
    let store = Command::new("UID STORE")
        .uid_set(&uids)
        .atom("+FLAGS.SILENT (\\Seen)");
    let append = Command::new("APPEND")
        .mailbox(&MailboxName::new("Sent").expect("name"))
        .flags(&[])
        .literal(b"Subject: x\r\n\r\nbody\r\n");
    let (mut conn, server) = scripted(
        &["IMAP4REV1"],
        vec![
            Expect("b1 UID STORE 5 +FLAGS.SILENT (\\Seen)\r\nb2 APPEND \"Sent\" () {20}\r\n"),
            Quiet,
            Send("b1 OK stored\r\n"),
            Quiet,
            Send("+ Ready for literal data\r\n"),
            Expect("Subject: x\r\n\r\nbody\r\n\r\n"),
            Send("b2 OK [APPENDUID 7 12] appended\r\n"),
        ],
    )
    .await;
    let done = conn
        .run_pipelined(&[store, append], |_, _| Ok(()))
        .await
        .expect("completes");
    assert_eq!(done[0].status, Status::Ok);
    assert_eq!(done[1].append_uid, Some((7, vec![12])));
    script_passed(server).await;
}

#[tokio::test]
async fn quoted_strings_keep_their_escapes_apart_from_their_text() {
    let (mut conn, server) = scripted(
        &["IMAP4REV1"],
        vec![
            Expect("b1 LIST \"\" \"*\"\r\n"),
            Send(concat!(
                "* LIST (\\HasNoChildren) \"/\" \"say \\\"hi\\\" \\\\ back\"\r\n",
                "* LIST (\\HasNoChildren) \"/\" {9}\r\nlit\"er\\al\r\n",
                "b1 OK listed\r\n"
            )),
        ],
    )
    .await;
    let mut names = Vec::new();
    let done = conn
        .run_raw(
            &Command::new("LIST")
                .string(&ImapString::new("").expect("empty"))
                .string(&ImapString::new("*").expect("star")),
            |r, raw| {
                if let Response::MailboxData(MailboxDatum::List(data)) = r {
                    names.push(wire_string(raw, &data.name).into_owned());
                }
                Ok(())
            },
        )
        .await
        .expect("completes");
    assert_eq!(done.status, Status::Ok);
    assert_eq!(names, vec!["say \"hi\" \\ back", "lit\"er\\al"]);
    script_passed(server).await;
}

#[tokio::test]
async fn a_tag_never_sent_breaks_the_protocol_and_the_session_is_discarded() {
    let (mut conn, server) = scripted(
        &["IMAP4REV1"],
        vec![Expect("b1 NOOP\r\n"), Send("b9 OK what\r\n")],
    )
    .await;
    let err = run(&mut conn, &[Command::new("NOOP")]).await.unwrap_err();
    assert!(matches!(err, ImapError::Protocol(_)), "{err:?}");
    assert!(!conn.is_clean());
    script_passed(server).await;
}

#[tokio::test]
async fn a_continuation_nobody_asked_for_breaks_the_protocol() {
    let (mut conn, server) = scripted(
        &["IMAP4REV1"],
        vec![Expect("b1 NOOP\r\n"), Send("+ surprise\r\n")],
    )
    .await;
    let err = run(&mut conn, &[Command::new("NOOP")]).await.unwrap_err();
    assert!(matches!(err, ImapError::Protocol(_)), "{err:?}");
    assert!(!conn.is_clean());
    script_passed(server).await;
}

#[tokio::test]
async fn bye_while_waiting_for_a_continuation_ends_the_session() {
    let (mut conn, server) = scripted(
        &["IMAP4REV1"],
        vec![
            Expect("b1 UID SEARCH CHARSET UTF-8 SUBJECT {7}\r\n"),
            Send("* BYE shutting down\r\n"),
        ],
    )
    .await;
    let err = run(&mut conn, &[search("Grüße")]).await.unwrap_err();
    assert!(matches!(err, ImapError::Unavailable(_)), "{err:?}");
    assert!(!conn.is_clean());
    script_passed(server).await;
}

#[tokio::test]
async fn a_server_that_never_continues_times_out_and_the_session_is_discarded() {
    let (mut conn, server) = scripted(
        &["IMAP4REV1"],
        vec![Expect("b1 UID SEARCH CHARSET UTF-8 SUBJECT {7}\r\n"), Quiet],
    )
    .await;
    conn.limits.command_timeout = Duration::from_millis(300);
    let err = run(&mut conn, &[search("Grüße")]).await.unwrap_err();
    assert!(matches!(err, ImapError::Timeout), "{err:?}");
    assert!(!conn.is_clean());
    script_passed(server).await;
}

async fn authenticate(conn: &mut Connection, username: &str, secret: &Secret) -> Result<()> {
    conn.authenticate(
        &ImapString::new(username).expect("user name"),
        secret,
        "imap.example.com",
        993,
    )
    .await
}

fn password(p: &str) -> Secret {
    Secret::Password(secrecy::SecretString::from(p.to_owned()))
}

fn access_token(token: &str, mechanism: Option<OAuthMechanism>) -> Secret {
    Secret::AccessToken {
        token: secrecy::SecretString::from(token.to_owned()),
        mechanism,
        issued_at: 1,
    }
}

#[tokio::test]
async fn passwords_go_with_authenticate_plain_and_an_initial_response_where_offered() {
    // base64("\0alice\0pw")
    let (mut conn, server) = scripted(
        &["IMAP4REV1", "SASL-IR", "AUTH=PLAIN", "LOGINDISABLED"],
        vec![
            Expect("b1 AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n"),
            Send("b1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n"),
        ],
    )
    .await;
    authenticate(&mut conn, "alice", &password("pw"))
        .await
        .expect("logged in");
    assert!(conn.capabilities().has("IDLE"), "capabilities after login");
    assert!(conn.is_clean());
    script_passed(server).await;
}

#[tokio::test]
async fn without_sasl_ir_the_response_waits_for_the_continuation() {
    let (mut conn, server) = scripted(
        &["IMAP4REV1", "AUTH=PLAIN"],
        vec![
            Expect("b1 AUTHENTICATE PLAIN\r\n"),
            Quiet,
            Send("+ \r\n"),
            Expect("AGFsaWNlAHB3\r\n"),
            Send("b1 OK [CAPABILITY IMAP4rev1] Logged in\r\n"),
        ],
    )
    .await;
    authenticate(&mut conn, "alice", &password("pw"))
        .await
        .expect("logged in");
    script_passed(server).await;
}

#[tokio::test]
async fn without_auth_plain_a_password_goes_with_login_unless_it_is_disabled() {
    let (mut conn, server) = scripted(
        &["IMAP4REV1"],
        vec![
            Expect("b1 LOGIN \"alice\" \"pw\"\r\n"),
            Send("b1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        ],
    )
    .await;
    let err = authenticate(&mut conn, "alice", &password("pw"))
        .await
        .unwrap_err();
    assert!(matches!(err, ImapError::AuthenticationFailed), "{err:?}");
    script_passed(server).await;

    let (mut conn, server) = scripted(&["IMAP4REV1", "LOGINDISABLED"], vec![]).await;
    let err = authenticate(&mut conn, "alice", &password("pw"))
        .await
        .unwrap_err();
    assert!(matches!(err, ImapError::Unsupported(_)), "{err:?}");
    script_passed(server).await;
}

#[tokio::test]
async fn oauthbearer_is_preferred_and_a_refusal_is_answered_and_explained() {
    // base64 of the OAUTHBEARER response for carol, imap.example.com:993, token "tok".
    let (mut conn, server) = scripted(
        &["IMAP4REV1", "SASL-IR", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER"],
        vec![
            Expect(
                "b1 AUTHENTICATE OAUTHBEARER bixhPWNhcm9sLAFob3N0PWltYXAuZXhhbXBsZS5jb20BcG9ydD05OTMBYXV0aD1CZWFyZXIgdG9rAQE=\r\n",
            ),
            // {"status":"invalid_token","schemes":"bearer","scope":"mail"}
            Send("+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NoZW1lcyI6ImJlYXJlciIsInNjb3BlIjoibWFpbCJ9\r\n"),
            // RFC 7628: the client answers the error challenge with a lone %x01.
            Expect("AQ==\r\n"),
            Send("b1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        ],
    )
    .await;
    let err = authenticate(&mut conn, "carol", &access_token("tok", None))
        .await
        .unwrap_err();
    match err {
        ImapError::TokenRefused(why) => assert_eq!(why, "status invalid_token, scope mail"),
        other => panic!("{other:?}"),
    }
    assert!(conn.is_clean(), "a refused login leaves a known state");
    script_passed(server).await;
}

#[tokio::test]
async fn xoauth2_is_used_when_asked_for_or_alone_offered_and_answered_with_an_empty_line() {
    // base64("user=carol\x01auth=Bearer tok\x01\x01")
    let (mut conn, server) = scripted(
        &["IMAP4REV1", "AUTH=XOAUTH2"],
        vec![
            Expect("b1 AUTHENTICATE XOAUTH2\r\n"),
            Send("+ \r\n"),
            Expect("dXNlcj1jYXJvbAFhdXRoPUJlYXJlciB0b2sBAQ==\r\n"),
            Send("+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"),
            Expect("\r\n"),
            Send("b1 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"),
        ],
    )
    .await;
    let err = authenticate(
        &mut conn,
        "carol",
        &access_token("tok", Some(OAuthMechanism::Xoauth2)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ImapError::TokenRefused(why) if why.contains("status 401")),
        "{err:?}"
    );
    script_passed(server).await;

    let (mut conn, server) = scripted(&["IMAP4REV1", "AUTH=XOAUTH2"], vec![]).await;
    let err = authenticate(
        &mut conn,
        "carol",
        &access_token("tok", Some(OAuthMechanism::Oauthbearer)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ImapError::Unsupported("AUTH=OAUTHBEARER")),
        "{err:?}"
    );
    script_passed(server).await;
}
