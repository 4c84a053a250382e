//! Tests of the Cyrus IMAP harness (`tests/common/cyrus.rs`): a private Cyrus starts and
//! stops without leaving a process, speaks verifiable TLS on both ports and refuses
//! plaintext logins before STARTTLS, shows seeded mail with its flags and dates, uses `/`
//! and UTF-8 mailbox names, advertises what its module documentation says, notices
//! deliveries in IDLE, counts and kicks sessions; and the bridge itself works in front of it.
//!
//! The checks of the harness talk IMAP with a small blocking client over `std::net` and
//! rustls, so they do not depend on the library under test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::corpus;
use common::cyrus::{CAPABILITIES, Cyrus};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConnection, RootCertStore, StreamOwned};

const USER: &str = "robin";
/// Non-ASCII on purpose: it travels as a literal.
const PASSWORD: &str = "correct horse Pässwort";

/// A TCP stream to Cyrus, encrypted or not.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A minimal synchronous IMAP client for these tests.
struct Client {
    reader: BufReader<Stream>,
    tag: u32,
    greeting: String,
}

impl Client {
    /// Connects to the plain port and reads the greeting.
    fn plain(addr: SocketAddr) -> Self {
        Self::over(Stream::Plain(tcp(addr)))
    }

    /// Connects to the implicit-TLS port, trusting only `ca` for `localhost`.
    fn tls(addr: SocketAddr, ca: &Path) -> Self {
        Self::over(Stream::Tls(Box::new(
            handshake(tcp(addr), ca, "localhost").expect("TLS handshake"),
        )))
    }

    fn over(stream: Stream) -> Self {
        let mut client = Self {
            reader: BufReader::new(stream),
            tag: 0,
            greeting: String::new(),
        };
        client.greeting = client.read_line();
        assert!(
            client.greeting.starts_with("* OK"),
            "greeting: {}",
            client.greeting
        );
        client
    }

    /// STARTTLS, then a verified handshake for `localhost`.
    fn starttls(mut self, ca: &Path) -> Self {
        self.ok("STARTTLS");
        assert!(
            self.reader.buffer().is_empty(),
            "nothing may follow STARTTLS"
        );
        let Stream::Plain(tcp) = self.reader.into_inner() else {
            panic!("STARTTLS on a TLS stream");
        };
        let tls = handshake(tcp, ca, "localhost").expect("TLS handshake after STARTTLS");
        Self {
            reader: BufReader::new(Stream::Tls(Box::new(tls))),
            tag: self.tag,
            greeting: self.greeting,
        }
    }

    /// LOGIN with the password as a LITERAL+ literal; returns the tagged status.
    fn login(&mut self, user: &str, password: &str) -> String {
        let command = format!("LOGIN \"{user}\" {{{}+}}\r\n{password}", password.len());
        self.command(&command).1
    }

    /// Sends `command` and returns the untagged lines and the tagged status without tag.
    fn command(&mut self, command: &str) -> (Vec<String>, String) {
        let tag = self.send(command);
        let mut untagged = Vec::new();
        loop {
            let line = self.read_line();
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                return (untagged, status.to_owned());
            }
            untagged.push(line);
        }
    }

    /// [`Client::command`] that must answer OK; returns the untagged lines.
    fn ok(&mut self, command: &str) -> Vec<String> {
        let (untagged, status) = self.command(command);
        assert!(status.starts_with("OK"), "{command}: {status}");
        untagged
    }

    /// Sends a tagged command without waiting; returns the tag.
    fn send(&mut self, command: &str) -> String {
        self.tag += 1;
        let tag = format!("c{}", self.tag);
        self.write_raw(&format!("{tag} {command}\r\n"));
        tag
    }

    fn write_raw(&mut self, text: &str) {
        let stream = self.reader.get_mut();
        stream.write_all(text.as_bytes()).expect("write");
        stream.flush().expect("flush");
    }

    /// One response line without CRLF, literals inlined.
    fn read_line(&mut self) -> String {
        let mut line = Vec::new();
        loop {
            let start = line.len();
            let n = self.reader.read_until(b'\n', &mut line).expect("read");
            assert!(n > 0, "server closed the connection after {line:?}");
            let part = &line[start..];
            let literal = part
                .strip_suffix(b"}\r\n")
                .and_then(|p| p.iter().rposition(|&b| b == b'{').map(|i| &p[i + 1..]))
                .and_then(|digits| std::str::from_utf8(digits).ok()?.parse::<usize>().ok());
            let Some(size) = literal else { break };
            let mut bytes = vec![0; size];
            self.reader.read_exact(&mut bytes).expect("read literal");
            line.extend_from_slice(&bytes);
        }
        String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_owned()
    }

    /// Whether the server closes the connection (EOF or reset) before sending anything
    /// more within `within`; the line it sent otherwise.
    fn closed_within(&mut self, within: Duration) -> Result<(), String> {
        let stream = self.reader.get_ref();
        let tcp = match stream {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        };
        tcp.set_read_timeout(Some(within)).expect("set timeout");
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) if line.is_empty() => Ok(()),
            _ => Err(String::from_utf8_lossy(&line).into_owned()),
        }
    }
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to Cyrus");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set read timeout");
    stream
}

/// A TLS client handshake over `tcp` for `name`, trusting only the CA in `ca`.
fn handshake(
    mut tcp: TcpStream,
    ca: &Path,
    name: &str,
) -> Result<StreamOwned<ClientConnection, TcpStream>, std::io::Error> {
    let mut roots = RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("read the CA file") {
        roots.add(cert.expect("CA certificate")).expect("usable CA");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    let mut conn = ClientConnection::new(Arc::new(config), name).expect("TLS client");
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// A logged-in session over implicit TLS.
fn login_tls(cyrus: &Cyrus, user: &str, password: &str) -> Client {
    let mut client = Client::tls(cyrus.imaps_addr(), &cyrus.ca_cert_path());
    let status = client.login(user, password);
    assert!(status.starts_with("OK"), "LOGIN {user}: {status}");
    client
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

/// The capability atoms of a CAPABILITY response.
fn capabilities(untagged: &[String]) -> Vec<String> {
    untagged
        .iter()
        .filter_map(|line| line.strip_prefix("* CAPABILITY "))
        .flat_map(|caps| caps.split(' ').map(str::to_owned))
        .collect()
}

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@example.test>\r\nTo: Robin <robin@example.test>\r\n\
         Subject: {subject}\r\nMessage-ID: <{subject}@example.test>\r\n\
         Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nHello, {subject}.\r\n"
    )
    .into_bytes()
}

#[test]
fn start_and_stop_leave_no_process_and_no_directory() {
    let started = Instant::now();
    let cyrus = Cyrus::start();
    eprintln!("Cyrus::start took {:?}", started.elapsed());
    let dir = cyrus.dir().to_path_buf();
    let needle = dir.display().to_string();
    assert!(process_mentioning(&needle), "master runs");
    cyrus.add_user(USER, PASSWORD);
    // A logged-in session keeps an imapd busy, which must stop too.
    let _session = login_tls(&cyrus, USER, PASSWORD);

    let stopping = Instant::now();
    drop(cyrus);
    eprintln!("dropping Cyrus took {:?}", stopping.elapsed());
    wait_until("no Cyrus process is left", Duration::from_secs(5), || {
        !process_mentioning(&needle)
    });
    assert!(!dir.exists(), "{} is deleted", dir.display());
}

#[test]
fn logins_over_implicit_tls_and_starttls_verify_against_the_test_ca() {
    let cyrus = Cyrus::start();
    cyrus.add_user(USER, PASSWORD);

    let mut implicit = login_tls(&cyrus, USER, PASSWORD);
    implicit.ok("NOOP");
    implicit.ok("LOGOUT");

    let mut plain = Client::plain(cyrus.imap_addr());
    plain.ok("CAPABILITY");
    let mut upgraded = plain.starttls(&cyrus.ca_cert_path());
    let caps = capabilities(&upgraded.ok("CAPABILITY"));
    assert!(
        caps.iter().any(|c| c == "AUTH=PLAIN") && !caps.iter().any(|c| c == "LOGINDISABLED"),
        "after STARTTLS: {caps:?}"
    );
    let status = upgraded.login(USER, PASSWORD);
    assert!(status.starts_with("OK"), "LOGIN after STARTTLS: {status}");

    let mut wrong = Client::tls(cyrus.imaps_addr(), &cyrus.ca_cert_path());
    let asked = Instant::now();
    let status = wrong.login(USER, "wrong password");
    eprintln!("a failed LOGIN took {:?}", asked.elapsed());
    assert_eq!(status, "NO Login failed: authentication failure");

    // add_user on an existing user replaces the password at once.
    cyrus.add_user(USER, "new password");
    let mut old = Client::tls(cyrus.imaps_addr(), &cyrus.ca_cert_path());
    assert!(old.login(USER, PASSWORD).starts_with("NO"));
    login_tls(&cyrus, USER, "new password").ok("LOGOUT");

    let tcp = tcp(cyrus.imaps_addr());
    let refused = handshake(tcp, &cyrus.ca_cert_path(), "example.test");
    assert!(
        refused.is_err(),
        "the certificate must not be valid for example.test"
    );
}

#[test]
fn the_plain_port_advertises_logindisabled_before_starttls() {
    let cyrus = Cyrus::start();
    cyrus.add_user(USER, PASSWORD);
    let mut plain = Client::plain(cyrus.imap_addr());
    eprintln!("plain greeting: {}", plain.greeting);
    assert!(
        plain.greeting.contains("STARTTLS LOGINDISABLED"),
        "{}",
        plain.greeting
    );
    let caps = capabilities(&plain.ok("CAPABILITY"));
    for expected in ["STARTTLS", "LOGINDISABLED"] {
        assert!(caps.iter().any(|c| c == expected), "{expected}: {caps:?}");
    }
    assert!(
        !caps.iter().any(|c| c == "AUTH=PLAIN" || c == "AUTH=LOGIN"),
        "no plaintext mechanisms before TLS: {caps:?}"
    );
    assert_eq!(
        plain.login(USER, PASSWORD),
        "NO Login only available under a layer"
    );
    assert_eq!(
        plain.command("AUTHENTICATE PLAIN").1,
        "NO encryption needed to use mechanism"
    );
}

#[test]
fn delivered_messages_show_up_with_their_flags_and_internal_dates() {
    let cyrus = Cyrus::start();
    cyrus.add_user(USER, PASSWORD);
    // 2024-02-29T12:34:56Z
    let date = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
    let raw = message("flagged");
    let uid = cyrus.deliver(USER, "INBOX", &raw, "SF", Some(date));
    let unread = cyrus.deliver(USER, "INBOX", &message("unread"), "", None);
    assert_eq!((uid, unread), (1, 2));
    // A mailbox that does not exist yet is created and subscribed.
    let listed = cyrus.deliver(USER, "Lists/rust", &message("list"), "RT", None);
    assert_eq!(listed, 1);

    let mut session = login_tls(&cyrus, USER, PASSWORD);
    session.ok("SELECT INBOX");
    let fetched = session.ok("UID FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[])");
    assert_eq!(fetched.len(), 2, "{fetched:?}");
    assert!(
        fetched[0].contains("FLAGS (\\Recent \\Flagged \\Seen)")
            && fetched[0].contains("INTERNALDATE \"29-Feb-2024 12:34:56 +0000\""),
        "{}",
        fetched[0]
    );
    assert!(
        fetched[0].contains(std::str::from_utf8(&raw).expect("ASCII message")),
        "the exact bytes: {}",
        fetched[0]
    );
    assert!(fetched[1].contains("FLAGS (\\Recent)"), "{}", fetched[1]);
    let listed = session.ok("LSUB \"\" *");
    assert_eq!(listed, ["* LSUB () \"/\" Lists/rust"]);
    session.ok("SELECT Lists/rust");
    let flags = session.ok("UID FETCH 1 FLAGS");
    assert!(
        flags[0].contains("\\Answered \\Deleted"),
        "R and T: {flags:?}"
    );
}

/// Cyrus's default `munge8bit: yes` replaces each byte of raw 8-bit header text with `X` on
/// APPEND (RFC 2047-encoded headers and 8-bit bodies are kept as they are).
#[test]
fn eight_bit_headers_are_munged_on_append() {
    let cyrus = Cyrus::start();
    cyrus.add_user(USER, PASSWORD);
    let raw = "From: Jürgen <j@example.test>\r\nSubject: Grüße\r\n\r\nKörper\r\n";
    cyrus.deliver(USER, "INBOX", raw.as_bytes(), "", None);
    let mut session = login_tls(&cyrus, USER, PASSWORD);
    session.ok("SELECT INBOX");
    let fetched = session.ok("UID FETCH 1 BODY.PEEK[]");
    assert!(
        fetched[0].contains("From: JXXrgen <j@example.test>\r\nSubject: GrXXXXe\r\n\r\nKörper"),
        "{fetched:?}"
    );
}

#[test]
fn deliver_many_seeds_a_thousand_messages_in_order_quickly() {
    let cyrus = Cyrus::start();
    cyrus.add_user(USER, PASSWORD);
    let messages: Vec<Vec<u8>> = corpus::bulk(1000, 7).collect();
    let bytes: usize = messages.iter().map(Vec::len).sum();
    let started = Instant::now();
    cyrus.deliver_many(USER, "Bulk", messages.clone());
    let took = started.elapsed();
    eprintln!(
        "deliver_many: 1000 messages ({} KiB) in {took:?}, {:.0} messages/s",
        bytes / 1024,
        1000.0 / took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(60), "deliver_many took {took:?}");

    let mut session = login_tls(&cyrus, USER, PASSWORD);
    let status = session.ok("STATUS Bulk (MESSAGES UIDNEXT)");
    assert_eq!(status, ["* STATUS Bulk (MESSAGES 1000 UIDNEXT 1001)"]);
    session.ok("SELECT Bulk");
    let dates = session.ok("UID FETCH 1:* (INTERNALDATE)");
    let parsed: Vec<&str> = dates
        .iter()
        .map(|line| line.split('"').nth(1).expect("quoted date"))
        .collect();
    assert_eq!(parsed.len(), 1000);
    let distinct: std::collections::BTreeSet<&str> = parsed.iter().copied().collect();
    assert_eq!(distinct.len(), 1000, "one second apart");
    let first = session.ok("UID FETCH 1 BODY.PEEK[]");
    let last = session.ok("UID FETCH 1000 BODY.PEEK[]");
    let text = |raw: &[u8]| String::from_utf8_lossy(raw).into_owned();
    assert!(first[0].contains(&text(&messages[0])), "UID 1 is message 0");
    assert!(
        last[0].contains(&text(&messages[999])),
        "UID 1000 is message 999"
    );
}

#[test]
fn mailboxes_use_slash_and_utf8_names() {
    let cyrus = Cyrus::start();
    cyrus.add_user(USER, PASSWORD);
    cyrus.create_mailbox(USER, corpus::MAILBOX_ENTWUERFE);
    cyrus.create_mailbox(USER, corpus::MAILBOX_ARCHIVE);
    cyrus.create_mailbox(USER, corpus::MAILBOX_ARCHIVE);
    cyrus.deliver(
        USER,
        corpus::MAILBOX_ENTWUERFE,
        &message("draft"),
        "D",
        None,
    );

    let mut session = login_tls(&cyrus, USER, PASSWORD);
    assert_eq!(
        session.ok("NAMESPACE"),
        ["* NAMESPACE ((\"\" \"/\")) ((\"Other Users/\" \"/\")) ((\"Shared Folders/\" \"/\"))"]
    );
    let mut listed = session.ok("LIST \"\" *");
    listed.sort();
    assert_eq!(
        listed,
        [
            "* LIST (\\HasChildren) \"/\" Archive",
            "* LIST (\\HasNoChildren) \"/\" Archive/2024",
            "* LIST (\\HasNoChildren) \"/\" Entw&APw-rfe",
            "* LIST (\\HasNoChildren) \"/\" INBOX",
        ]
    );
    let mut subscribed = session.ok("LSUB \"\" *");
    subscribed.sort();
    assert_eq!(
        subscribed,
        [
            "* LSUB () \"/\" Archive/2024",
            "* LSUB () \"/\" Entw&APw-rfe"
        ]
    );
    let (_, parent) = session.command("SELECT Archive");
    eprintln!("SELECT of the implied parent Archive: {parent}");
    let selected = session.ok(&format!("SELECT {}", corpus::MAILBOX_ENTWUERFE_MUTF7));
    assert!(selected.contains(&"* 1 EXISTS".to_owned()), "{selected:?}");
}

#[test]
fn capability_after_login_lists_what_the_module_documents() {
    let cyrus = Cyrus::start();
    cyrus.add_user(USER, PASSWORD);
    let mut session = login_tls(&cyrus, USER, PASSWORD);
    let caps = capabilities(&session.ok("CAPABILITY"));
    eprintln!("CAPABILITY after login: {}", caps.join(" "));
    for expected in CAPABILITIES {
        assert!(caps.iter().any(|c| c == expected), "{expected}: {caps:?}");
    }
    assert!(!caps.iter().any(|c| c == "NOTIFY"), "{caps:?}");
}

#[test]
fn idle_notices_a_delivery() {
    let cyrus = Cyrus::start();
    cyrus.add_user(USER, PASSWORD);
    cyrus.deliver(USER, "INBOX", &message("before"), "S", None);
    let mut session = login_tls(&cyrus, USER, PASSWORD);
    session.ok("SELECT INBOX");
    let tag = session.send("IDLE");
    assert!(session.read_line().starts_with("+ "), "IDLE continuation");

    let delivered = Instant::now();
    cyrus.deliver(USER, "INBOX", &message("during"), "", None);
    let line = session.read_line();
    eprintln!(
        "IDLE saw {line:?} {:?} after the delivery",
        delivered.elapsed()
    );
    assert_eq!(line, "* 2 EXISTS");
    assert!(delivered.elapsed() < Duration::from_secs(5));
    session.write_raw("DONE\r\n");
    loop {
        let line = session.read_line();
        if line.starts_with(&format!("{tag} ")) {
            assert!(line.contains(" OK"), "{line}");
            break;
        }
    }
}

#[test]
fn connections_are_counted_and_kicked() {
    let cyrus = Cyrus::start();
    cyrus.add_user(USER, PASSWORD);
    cyrus.add_user("sam", PASSWORD);
    let mut first = login_tls(&cyrus, USER, PASSWORD);
    let mut second = Client::plain(cyrus.imap_addr()).starttls(&cyrus.ca_cert_path());
    assert!(second.login(USER, PASSWORD).starts_with("OK"));
    let mut other = login_tls(&cyrus, "sam", PASSWORD);
    // Not logged in yet: not counted.
    let _anonymous = Client::tls(cyrus.imaps_addr(), &cyrus.ca_cert_path());
    cyrus.wait_for_connections(USER, 2, Duration::from_secs(5));
    assert_eq!(cyrus.connections("sam"), 1);
    // The harness's own sessions do not count.
    cyrus.deliver(USER, "INBOX", &message("counted"), "", None);
    assert_eq!(cyrus.connections(USER), 2);

    cyrus.kick(USER);
    for client in [&mut first, &mut second] {
        client
            .closed_within(Duration::from_secs(5))
            .expect("kicked sessions close without a BYE");
    }
    cyrus.wait_for_connections(USER, 0, Duration::from_secs(5));
    other.ok("NOOP");
    assert_eq!(cyrus.connections("sam"), 1);
    cyrus.kick("nobody");
}

#[test]
fn special_use_mailboxes_match_the_dovecot_harness() {
    let cyrus = Cyrus::start();
    cyrus.add_user(USER, PASSWORD);
    cyrus.create_special_use_mailboxes(USER);
    cyrus.create_special_use_mailboxes(USER);
    let mut session = login_tls(&cyrus, USER, PASSWORD);
    let mut listed = session.ok("LIST \"\" * RETURN (SPECIAL-USE SUBSCRIBED)");
    listed.sort();
    assert_eq!(
        listed,
        [
            "* LIST (\\HasNoChildren) \"/\" INBOX",
            "* LIST (\\Subscribed \\HasNoChildren \\Archive) \"/\" Archive",
            "* LIST (\\Subscribed \\HasNoChildren \\Drafts) \"/\" Drafts",
            "* LIST (\\Subscribed \\HasNoChildren \\Junk) \"/\" Junk",
            "* LIST (\\Subscribed \\HasNoChildren \\Sent) \"/\" Sent",
            "* LIST (\\Subscribed \\HasNoChildren \\Trash) \"/\" Trash",
        ]
    );
    assert_eq!(
        session.command("DELETE Trash").1,
        "NO SPECIAL-USE flag conflict"
    );
}

#[test]
fn traffic_is_recorded_after_login() {
    let cyrus = Cyrus::start();
    cyrus.add_user(USER, PASSWORD);
    cyrus.record_traffic(USER);
    let mut session = login_tls(&cyrus, USER, PASSWORD);
    session.ok("SELECT INBOX");
    session.ok("LOGOUT");
    cyrus.deliver(USER, "INBOX", &message("unrecorded"), "", None);
    let traffic = cyrus.traffic(USER);
    assert!(traffic.contains("<c2 SELECT INBOX\r\n"), "{traffic}");
    assert!(
        traffic.contains("\r\nc2 OK [READ-WRITE] Completed"),
        "{traffic}"
    );
    assert!(
        !traffic.contains("c1 LOGIN"),
        "LOGIN itself is not recorded"
    );
    assert!(
        !traffic.contains("unrecorded"),
        "the harness is not recorded"
    );
}

/// The bridge in front of Cyrus over implicit TLS: it logs in, lists the mailboxes and
/// reads messages of the realistic corpus.
#[tokio::test]
async fn the_bridge_logs_in_lists_mailboxes_and_reads_messages() {
    use common::bridge::{self, Link, Serving, config_for_server, json_of};
    use reqwest::Method;
    use reqwest::StatusCode;

    let cyrus = tokio::task::spawn_blocking(|| {
        let cyrus = Cyrus::start();
        cyrus.add_user(bridge::USER, bridge::PASSWORD);
        cyrus.create_special_use_mailboxes(bridge::USER);
        cyrus.record_traffic(bridge::USER);
        for msg in corpus::realistic() {
            cyrus.deliver(
                bridge::USER,
                msg.mailbox,
                &msg.raw,
                msg.flags,
                Some(msg.internal_date()),
            );
        }
        cyrus
    })
    .await
    .expect("start Cyrus");
    let inbox_total = corpus::realistic()
        .iter()
        .filter(|m| m.mailbox == "INBOX")
        .count();
    let config = config_for_server(
        cyrus.imap_addr(),
        cyrus.imaps_addr(),
        cyrus.ca_cert_path(),
        Link::Tls,
    );
    let (_serving, bridge, _state) = Serving::start(config).await;
    let report = |what: &str, body: &serde_json::Value| {
        format!(
            "{what}: {body}\n--- Cyrus traffic ---\n{}",
            cyrus.traffic(bridge::USER)
        )
    };

    let (status, body) = json_of(
        bridge
            .request(Method::POST, "/v1/auth/login", None)
            .json(&serde_json::json!({"username": bridge::USER, "password": bridge::PASSWORD}))
            .send()
            .await
            .expect("login request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", report("login", &body));
    let token = body["access_token"].as_str().expect("token").to_owned();

    let (status, body) = bridge.get_json(&token, "/v1/mailboxes").await;
    assert_eq!(status, StatusCode::OK, "{}", report("mailboxes", &body));
    let boxes = body["mailboxes"].as_array().expect("mailboxes");
    let by_name = |n: &str| {
        boxes
            .iter()
            .find(|b| b["name"] == n)
            .unwrap_or_else(|| panic!("{n} listed: {body}"))
    };
    assert_eq!(boxes[0]["name"], "INBOX", "INBOX comes first: {body}");
    assert_eq!(by_name("INBOX")["total"], inbox_total);
    assert_eq!(by_name("Sent")["special_use"], "sent");
    assert_eq!(by_name(corpus::MAILBOX_ENTWUERFE)["total"], 2);
    assert_eq!(by_name(corpus::MAILBOX_ARCHIVE)["total"], 3);
    assert_eq!(by_name(corpus::MAILBOX_ARCHIVE)["delimiter"], "/");

    let (status, list) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?limit=200")
        .await;
    assert_eq!(status, StatusCode::OK, "{}", report("messages", &list));
    assert_eq!(list["total"], inbox_total);
    let messages = list["messages"].as_array().expect("messages");
    let subjects: Vec<&str> = messages
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or(""))
        .collect();
    for expected in [
        corpus::SUBJECT_JAPANESE,
        corpus::SUBJECT_GREEK,
        corpus::SUBJECT_RUSSIAN,
        corpus::SUBJECT_CHINESE,
        corpus::SUBJECT_GERMAN,
        corpus::SUBJECT_EMOJI,
    ] {
        assert!(subjects.contains(&expected), "{expected} in {subjects:?}");
    }
    let japanese = messages
        .iter()
        .find(|m| m["subject"] == corpus::SUBJECT_JAPANESE)
        .expect("the Japanese message");
    let uid = japanese["uid"].as_u64().expect("uid");
    let (status, msg) = bridge
        .get_json(&token, &format!("/v1/mailboxes/INBOX/messages/{uid}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{}", report("message", &msg));
    assert_eq!(msg["subject"], corpus::SUBJECT_JAPANESE);
    assert!(
        msg["text"]
            .as_str()
            .expect("text")
            .contains(corpus::BODY_JAPANESE),
        "{msg}"
    );
}
