//! Smoke tests of the test harness itself (`tests/common`): a private
//! Dovecot starts and stops cleanly, accepts passwd-file logins, shows mail
//! seeded straight into its Maildirs, speaks verifiable TLS on both ports,
//! records rawlogs and counts and kicks sessions, and has Dovecot's own auth delays unless a
//! test opts out; the corpus is well formed.
//!
//! They talk IMAP over plain `std::net::TcpStream` and use the `openssl`
//! CLI for TLS, so they do not depend on the library under test.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::corpus;
use common::dovecot::{Dovecot, DovecotOptions};

const USER: &str = "robin";
const PASSWORD: &str = "correct horse";

/// A minimal synchronous IMAP client for these tests.
struct Session {
    reader: BufReader<TcpStream>,
    tag: u32,
}

impl Session {
    /// Connects to the plain port and reads the `* OK` greeting.
    fn connect(dovecot: &Dovecot) -> Self {
        let stream = TcpStream::connect(dovecot.imap_addr()).expect("connect to Dovecot");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("set read timeout");
        let mut session = Self {
            reader: BufReader::new(stream),
            tag: 0,
        };
        let greeting = session.read_response();
        assert!(
            greeting.starts_with("* OK"),
            "unexpected greeting {greeting:?}"
        );
        session
    }

    /// Connects and logs in with `LOGIN`, panicking on failure.
    fn login(dovecot: &Dovecot, user: &str, password: &str) -> Self {
        let mut session = Self::connect(dovecot);
        session.ok(&format!("LOGIN {} {}", quote(user), quote(password)));
        session
    }

    /// Sends `command` and returns the untagged responses and the tagged
    /// status (without the tag), e.g. `OK Logged in`.
    fn command(&mut self, command: &str) -> (Vec<String>, String) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        write!(self.reader.get_mut(), "{tag} {command}\r\n").expect("send IMAP command");
        let mut untagged = Vec::new();
        loop {
            let response = self.read_response();
            if let Some(status) = response.strip_prefix(&format!("{tag} ")) {
                return (untagged, status.to_owned());
            }
            untagged.push(response);
        }
    }

    /// Like [`Session::command`], asserting a tagged `OK`.
    fn ok(&mut self, command: &str) -> Vec<String> {
        let (untagged, status) = self.command(command);
        assert!(
            status.starts_with("OK"),
            "{command:?} failed: {status}\n{untagged:#?}"
        );
        untagged
    }

    /// Reads one response with any `{n}` literals inlined, CRLF removed.
    fn read_response(&mut self) -> String {
        let mut response = String::new();
        loop {
            let mut line = Vec::new();
            let read = self
                .reader
                .read_until(b'\n', &mut line)
                .expect("read from Dovecot");
            assert!(
                read > 0,
                "Dovecot closed the connection; got so far: {response:?}"
            );
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            let literal = line
                .strip_suffix('}')
                .and_then(|l| l.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok());
            response.push_str(&line);
            let Some(len) = literal else {
                return response;
            };
            let mut data = vec![0; len];
            self.reader
                .read_exact(&mut data)
                .expect("read IMAP literal");
            response.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

/// An IMAP quoted string.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The number from the `* N EXISTS` response.
fn exists(untagged: &[String]) -> usize {
    untagged
        .iter()
        .find_map(|line| {
            line.strip_prefix("* ")?
                .strip_suffix(" EXISTS")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no EXISTS in {untagged:#?}"))
}

/// Delivers the whole realistic corpus with its flags and internal dates.
fn seed_realistic(dovecot: &Dovecot, user: &str) {
    for message in corpus::realistic() {
        dovecot.deliver(
            user,
            message.mailbox,
            &message.raw,
            message.flags,
            Some(message.internal_date()),
        );
    }
}

/// Runs `openssl s_client` against `port` trusting only the instance's CA,
/// sends `LOGOUT` once connected and returns the combined output.
fn s_client(dovecot: &Dovecot, port: u16, extra: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
        ])
        .args([
            "-servername",
            "localhost",
            "-connect",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["-crlf", "-ign_eof"])
        .arg("-CAfile")
        .arg(dovecot.ca_cert_path())
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    // With -ign_eof, s_client only exits once Dovecot closes the connection.
    let mut stdin = child.stdin.take().expect("s_client stdin");
    stdin.write_all(b"z LOGOUT\n").expect("write to s_client");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for s_client");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether a process whose command line mentions `needle` is alive.
fn process_mentioning(needle: &str) -> bool {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .any(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn login_checks_passwords_and_add_user_works_while_running() {
    let started = Instant::now();
    let dovecot = Dovecot::start();
    eprintln!("Dovecot::start took {:?}", started.elapsed());
    dovecot.add_user(USER, PASSWORD);

    let mut session = Session::login(&dovecot, USER, PASSWORD);
    let capabilities = session.ok("CAPABILITY").join(" ");
    for capability in [
        "IDLE",
        "CONDSTORE",
        "QRESYNC",
        "MOVE",
        "SORT",
        "SPECIAL-USE",
        "UIDPLUS",
        "LITERAL+",
        "ENABLE",
        "ID",
        "ESEARCH",
    ] {
        assert!(
            capabilities.split_whitespace().any(|c| c == capability),
            "{capability} missing from {capabilities}"
        );
    }
    session.ok("LOGOUT");

    // Replacing a password takes effect immediately.
    dovecot.add_user(USER, "new password");
    Session::login(&dovecot, USER, "new password").ok("LOGOUT");

    // The failures come last and side by side: under Dovecot's auth penalty each one in turn
    // would hold back everything after it by 4, 8, then 15 s.
    let refusals = failed_logins_at_once(
        &dovecot,
        &[
            format!("LOGIN {USER} wrong"),
            "LOGIN nobody secret".to_owned(),
            format!("LOGIN {USER} {}", quote(PASSWORD)),
        ],
    );
    for (command, status) in refusals {
        assert!(
            status.starts_with("NO [AUTHENTICATIONFAILED]"),
            "{command}: {status}"
        );
    }
}

/// Sends each LOGIN command on its own connection, all at the same moment, and returns each
/// command's tagged status.
fn failed_logins_at_once(dovecot: &Dovecot, commands: &[String]) -> Vec<(String, String)> {
    let sessions: Vec<Session> = commands.iter().map(|_| Session::connect(dovecot)).collect();
    let start = std::sync::Barrier::new(commands.len());
    std::thread::scope(|scope| {
        let running: Vec<_> = sessions
            .into_iter()
            .zip(commands)
            .map(|(mut session, command)| {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    (command.clone(), session.command(command).1)
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| t.join().expect("login thread"))
            .collect()
    })
}

/// Time from sending `LOGIN user password` on a new connection to its tagged status, and the
/// status.
fn timed_login(dovecot: &Dovecot, user: &str, password: &str) -> (Duration, String) {
    let mut session = Session::connect(dovecot);
    let started = Instant::now();
    let (_, status) = session.command(&format!("LOGIN {} {}", quote(user), quote(password)));
    (started.elapsed(), status)
}

#[test]
fn instances_have_dovecots_auth_delays_unless_a_test_opts_out() {
    // Both instances side by side: the default one spends about 6 s waiting.
    let opted_out = std::thread::spawn(|| {
        let dovecot = Dovecot::start_with(DovecotOptions {
            auth_penalty: false,
            auth_failure_delay_secs: 0,
            ..DovecotOptions::default()
        });
        dovecot.add_user(USER, PASSWORD);
        dovecot.add_user("other", PASSWORD);
        let failed = timed_login(&dovecot, USER, "wrong");
        let next = timed_login(&dovecot, "other", PASSWORD);
        (failed, next)
    });
    let dovecot = Dovecot::start();
    dovecot.add_user(USER, PASSWORD);
    dovecot.add_user("other", PASSWORD);
    let failed = timed_login(&dovecot, USER, "wrong");
    let next = timed_login(&dovecot, "other", PASSWORD);
    let again = timed_login(&dovecot, "other", PASSWORD);
    let (opted_out_failed, opted_out_next) = opted_out.join().expect("opted-out instance");
    eprintln!(
        "default: failed login {:?}, another user's correct login after it {:?}, the next one \
         {:?}; opted out: {:?}, {:?}",
        failed.0, next.0, again.0, opted_out_failed.0, opted_out_next.0
    );

    assert!(
        failed.1.starts_with("NO [AUTHENTICATIONFAILED]"),
        "{failed:?}"
    );
    assert!(next.1.starts_with("OK"), "{next:?}");
    assert!(again.1.starts_with("OK"), "{again:?}");
    // auth_failure_delay = 2 s, counted in whole seconds: at least 1 s. Without it, failures
    // are answered on a 500 ms timer.
    assert!(failed.0 > Duration::from_millis(900), "{failed:?}");
    // The penalty's first level is 4 s, for every user of the address.
    assert!(next.0 > Duration::from_secs(3), "{next:?}");
    // A successful login resets it.
    assert!(again.0 < Duration::from_secs(1), "{again:?}");

    assert!(
        opted_out_failed.1.starts_with("NO [AUTHENTICATIONFAILED]"),
        "{opted_out_failed:?}"
    );
    assert!(opted_out_next.1.starts_with("OK"), "{opted_out_next:?}");
    assert!(
        opted_out_failed.0 < Duration::from_millis(900),
        "{opted_out_failed:?}"
    );
    assert!(
        opted_out_next.0 < Duration::from_secs(1),
        "{opted_out_next:?}"
    );
}

#[test]
fn seeded_corpus_and_bulk_mail_are_visible() {
    let dovecot = Dovecot::start();
    dovecot.add_user(USER, PASSWORD);
    let started = Instant::now();
    seed_realistic(&dovecot, USER);
    dovecot.deliver_many(USER, "INBOX", corpus::bulk(3000, 1));
    eprintln!("seeding 30 + 3000 messages took {:?}", started.elapsed());

    let mut session = Session::login(&dovecot, USER, PASSWORD);
    let started = Instant::now();
    let selected = session.ok("SELECT INBOX");
    eprintln!("first SELECT of 3020 messages took {:?}", started.elapsed());
    assert_eq!(exists(&selected), 3020);

    // UIDs follow internal dates: the corpus (days old) first, in N order,
    // then the bulk messages in iteration order.
    let headers = session.ok("FETCH 1:21 (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT)])");
    for (n, response) in (1..=20).zip(&headers) {
        assert!(
            response.contains(&format!("<seed-{n}@example.test>")),
            "{response}"
        );
    }
    assert!(headers[20].contains("Bulk message 0"), "{}", headers[20]);
    let last = session.ok("FETCH 3020 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    assert!(last[0].contains("Bulk message 2999"), "{last:?}");

    // Flags from the Maildir file names.
    let unseen = session.ok("SEARCH UNSEEN").join(" ");
    let unseen: Vec<&str> = unseen.split_whitespace().skip(2).collect();
    assert_eq!(
        unseen.len(),
        6 + 3000,
        "realistic unread: 2, 6, 8, 11, 16, 17"
    );
    assert_eq!(&unseen[..6], ["2", "6", "8", "11", "16", "17"]);
    assert_eq!(session.ok("SEARCH FLAGGED"), ["* SEARCH 3 11 17"]);
    assert_eq!(session.ok("SEARCH DELETED"), ["* SEARCH 20"]);
    assert_eq!(session.ok("SEARCH ANSWERED"), ["* SEARCH 10 13"]);

    let listed = session.ok("LIST \"\" \"*\"").join("\n");
    for mailbox in [
        "INBOX",
        "Archive/2024",
        corpus::MAILBOX_ENTWUERFE_MUTF7,
        "Sent",
        "Trash",
        "Drafts",
    ] {
        assert!(
            listed
                .lines()
                .any(|line| line.ends_with(&format!(" {mailbox}"))),
            "{mailbox} not listed:\n{listed}"
        );
    }
    assert!(
        listed.contains("(\\HasChildren \\Archive) \"/\" Archive"),
        "{listed}"
    );
    let subscribed = session.ok("LSUB \"\" \"*\"").join("\n");
    assert!(
        subscribed.contains(corpus::MAILBOX_ENTWUERFE_MUTF7),
        "{subscribed}"
    );

    let expected = [
        ("Archive/2024", 3),
        (corpus::MAILBOX_ENTWUERFE_MUTF7, 2),
        ("Sent", 3),
        ("Trash", 2),
    ];
    for (mailbox, count) in expected {
        let status = session
            .ok(&format!("STATUS \"{mailbox}\" (MESSAGES)"))
            .join("\n");
        assert!(
            status.ends_with(&format!("{mailbox} (MESSAGES {count})")),
            "{status}"
        );
    }
    let drafts = session.ok(&format!("SELECT \"{}\"", corpus::MAILBOX_ENTWUERFE_MUTF7));
    assert_eq!(exists(&drafts), 2);
    assert_eq!(session.ok("SEARCH DRAFT"), ["* SEARCH 1 2"]);
}

#[test]
fn mail_seeded_during_a_session_reaches_that_session() {
    let dovecot = Dovecot::start();
    dovecot.add_user(USER, PASSWORD);
    let mut session = Session::login(&dovecot, USER, PASSWORD);
    assert_eq!(exists(&session.ok("SELECT INBOX")), 0);

    dovecot.deliver(USER, "INBOX", &corpus::with_attachment(10), "", None);
    let noop = session.ok("NOOP");
    assert!(noop.contains(&"* 1 EXISTS".to_owned()), "{noop:?}");

    dovecot.create_mailbox(USER, "Projekte/Größe");
    let listed = session.ok("LIST \"\" \"Projekte/*\"");
    assert_eq!(
        listed,
        ["* LIST (\\HasNoChildren) \"/\" Projekte/Gr&APYA3w-e"]
    );
}

#[test]
fn both_ports_serve_certificates_that_verify_against_the_ca() {
    let dovecot = Dovecot::start();
    let mut session = Session::connect(&dovecot);
    let capabilities = session.ok("CAPABILITY").join(" ");
    assert!(capabilities.contains("STARTTLS"), "{capabilities}");

    let implicit = s_client(&dovecot, dovecot.imaps_addr().port(), &[]);
    assert!(
        implicit.contains("Verify return code: 0 (ok)"),
        "{implicit}"
    );
    assert!(
        implicit.contains("* OK"),
        "no IMAP greeting over TLS:\n{implicit}"
    );
    assert!(
        implicit.contains("z OK Logout completed"),
        "no IMAP over TLS:\n{implicit}"
    );

    let starttls = s_client(&dovecot, dovecot.imap_addr().port(), &["-starttls", "imap"]);
    assert!(
        starttls.contains("Verify return code: 0 (ok)"),
        "{starttls}"
    );
    assert!(
        starttls.contains("z OK Logout completed"),
        "no IMAP after STARTTLS:\n{starttls}"
    );

    let wrong_name = Command::new("openssl")
        .args([
            "s_client",
            "-verify_return_error",
            "-verify_hostname",
            "example.test",
        ])
        .args(["-connect", &dovecot.imaps_addr().to_string()])
        .arg("-CAfile")
        .arg(dovecot.ca_cert_path())
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    assert!(
        !wrong_name.status.success(),
        "certificate must not be valid for example.test"
    );
}

#[test]
fn rawlog_records_commands_after_login() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        rawlog: true,
        ..DovecotOptions::default()
    });
    dovecot.add_user(USER, PASSWORD);
    let mut session = Session::login(&dovecot, USER, PASSWORD);
    session.ok("SELECT INBOX");
    session.ok("UID SEARCH SUBJECT \"rawlog probe\"");
    let rawlog = dovecot.rawlog_in(USER);
    assert!(rawlog.contains("t2 SELECT INBOX\r\n"), "{rawlog:?}");
    assert!(
        rawlog.contains("t3 UID SEARCH SUBJECT \"rawlog probe\"\r\n"),
        "{rawlog:?}"
    );
    assert!(
        !rawlog.contains("LOGIN"),
        "Dovecot does not record the login phase"
    );
}

#[test]
fn connections_are_counted_limited_and_kicked() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        max_userip_connections: 2,
        very_dirty_syncs: true,
        extra_config: "imap_idle_notify_interval = 1 mins\n".into(),
        ..DovecotOptions::default()
    });
    dovecot.add_user(USER, PASSWORD);
    dovecot.add_user("other", PASSWORD);
    assert_eq!(dovecot.connections(USER), 0);
    dovecot.kick(USER);

    let mut first = Session::login(&dovecot, USER, PASSWORD);
    let mut second = Session::login(&dovecot, USER, PASSWORD);
    let _other = Session::login(&dovecot, "other", PASSWORD);
    dovecot.wait_for_connections(USER, 2, Duration::from_secs(5));
    assert_eq!(dovecot.connections(USER), 2);
    assert_eq!(dovecot.connections("other"), 1);

    let (untagged, status) =
        Session::connect(&dovecot).command(&format!("LOGIN {USER} {}", quote(PASSWORD)));
    let refusal = format!("{untagged:?} {status}");
    assert!(
        refusal.contains("Maximum number of connections"),
        "{refusal}"
    );

    dovecot.kick(USER);
    dovecot.wait_for_connections(USER, 0, Duration::from_secs(5));
    assert_eq!(dovecot.connections("other"), 1);
    for session in [&mut first, &mut second] {
        let bye = session.read_response();
        assert!(bye.starts_with("* BYE"), "{bye}");
    }

    let config = dovecot.doveadm(&["config", "-n"]);
    let config = String::from_utf8_lossy(&config.stdout);
    assert!(
        config.contains("maildir_very_dirty_syncs = yes"),
        "{config}"
    );
    assert!(
        config.contains("imap_idle_notify_interval = 1 mins"),
        "{config}"
    );
}

#[test]
fn dropping_stops_dovecot_and_deletes_its_directory() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Dovecot>(); // async tests move it across threads

    let dovecot = Dovecot::start();
    let conf = dovecot.dir().join("dovecot.conf").display().to_string();
    let dir = dovecot.dir().to_path_buf();
    assert!(process_mentioning(&conf));
    let started = Instant::now();
    drop(dovecot);
    eprintln!("drop took {:?}", started.elapsed());
    // The group is killed before drop returns; a loaded machine may take a moment to reap
    // the processes the supervisor did not start itself.
    wait_until(
        "Dovecot's processes are gone",
        Duration::from_secs(5),
        || !process_mentioning(&conf),
    );
    assert!(!dir.exists(), "{} not deleted", dir.display());
}

#[test]
fn start_in_keeps_users_and_mail_across_restarts() {
    let parent = tempfile::tempdir().expect("create temporary directory");
    let dir = parent.path().join("persistent");
    {
        let dovecot = Dovecot::start_in(dir.clone(), DovecotOptions::default());
        dovecot.add_user(USER, PASSWORD);
        dovecot.deliver(USER, "INBOX", &corpus::with_attachment(1000), "S", None);
        let mut dovecot = dovecot;
        let started = Instant::now();
        dovecot.stop();
        eprintln!("graceful stop took {:?}", started.elapsed());
    }
    let dovecot = Dovecot::start_in(dir.clone(), DovecotOptions::default());
    let mut session = Session::login(&dovecot, USER, PASSWORD);
    assert_eq!(exists(&session.ok("SELECT INBOX")), 1);
    let body = session.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    assert!(body[0].contains("Attachment of 1000 bytes"), "{body:?}");
    drop(session);
    drop(dovecot);
    assert!(
        dir.join("home").join(USER).join("Maildir").is_dir(),
        "data must survive drop"
    );
}

/// Environment variable that turns [`orphan_helper`] on.
const ORPHAN_HELPER: &str = "HARNESS_SMOKE_ORPHAN_HELPER";

/// Run in a child process by [`dovecot_stops_when_the_test_process_is_killed`]:
/// starts Dovecot, reports its config path and kills itself with SIGKILL so
/// no destructor runs.
#[test]
#[ignore = "helper process for dovecot_stops_when_the_test_process_is_killed"]
fn orphan_helper() {
    if std::env::var_os(ORPHAN_HELPER).is_none() {
        return;
    }
    let dovecot = Dovecot::start();
    println!("DIR={}", dovecot.dir().display());
    std::io::stdout().flush().expect("flush stdout");
    Command::new("sh")
        .args(["-c", "kill -s KILL $PPID"])
        .status()
        .expect("run kill");
    unreachable!("the test process was killed");
}

#[test]
fn dovecot_stops_when_the_test_process_is_killed() {
    let out = Command::new(std::env::current_exe().expect("path of the test binary"))
        .args([
            "--exact",
            "orphan_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ORPHAN_HELPER, "1")
        .stdin(Stdio::null())
        .output()
        .expect("run the helper test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .find_map(|line| Some(line.split_once("DIR=")?.1))
        .unwrap_or_else(|| {
            panic!(
                "helper printed no DIR: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let conf = Path::new(dir).join("dovecot.conf").display().to_string();
    wait_until(
        "the orphaned Dovecot has stopped",
        Duration::from_secs(10),
        || !process_mentioning(&conf),
    );
    std::fs::remove_dir_all(dir).expect("remove the helper's Dovecot directory");
}

#[test]
fn corpus_is_well_formed_and_deterministic() {
    let realistic = corpus::realistic();
    assert_eq!(realistic.len(), 30);
    let mut ids = HashSet::new();
    for (n, message) in (1..).zip(&realistic) {
        let raw = &message.raw;
        let id = format!("Message-ID: <seed-{n}@example.test>\r\n");
        assert!(
            raw.starts_with(id.as_bytes()),
            "message {n} must start with {id}"
        );
        assert!(ids.insert(id));
        for (i, &byte) in raw.iter().enumerate() {
            if byte == b'\n' {
                assert!(i > 0 && raw[i - 1] == b'\r', "bare LF in message {n}");
            }
        }
        let head_len = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header/body separator");
        assert!(raw[..head_len].is_ascii(), "message {n} has 8-bit headers");
        assert!(
            raw.split(|&b| b == b'\n').all(|line| line.len() <= 998),
            "long line in {n}"
        );
    }
    let count = |mailbox: &str| realistic.iter().filter(|m| m.mailbox == mailbox).count();
    assert_eq!(count("INBOX"), 20);
    assert_eq!(count(corpus::MAILBOX_ARCHIVE), 3);
    assert_eq!(count(corpus::MAILBOX_ENTWUERFE), 2);
    assert_eq!(count("Sent"), 3);
    assert_eq!(count("Trash"), 2);

    let first: Vec<Vec<u8>> = corpus::bulk(50, 9).collect();
    assert_eq!(first, corpus::bulk(50, 9).collect::<Vec<_>>());
    assert_ne!(first, corpus::bulk(50, 10).collect::<Vec<_>>());
    for (i, message) in first.iter().enumerate() {
        assert!(
            (1500..=7000).contains(&message.len()),
            "bulk {i} is {} bytes",
            message.len()
        );
        let subject = format!("\r\nSubject: Bulk message {i}\r\n");
        assert!(
            message
                .windows(subject.len())
                .any(|w| w == subject.as_bytes())
        );
    }

    assert_eq!(
        corpus::attachment_bytes(10),
        corpus::attachment_bytes(100)[..10]
    );
    let message = corpus::with_attachment(100);
    let text = String::from_utf8(message).expect("ASCII message");
    assert!(
        text.contains("filename=\"payload-100.bin\"; size=100"),
        "{text}"
    );
}
