//! Hardening: a corpus of hostile values (`common::hostile`) sent through every field a caller
//! controls, each request checked against the exact commands Dovecot received (its rawlog,
//! read with IMAP's framing undone). A refused value sends nothing at all; an accepted one
//! arrives as exactly one string or atom of the command expected, and comes back unchanged.
//! Nothing answers 5xx and nothing hangs.
//!
//! Each test shares one bridge and Dovecot across its payloads and prints how many
//! payload × field pairs it tried (`--no-capture` shows them); findings are collected and
//! reported together, so one run lists every bug.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use common::bridge::{Link, TestBridge, USER};
use common::corpus;
use common::dovecot::{Dovecot, DovecotOptions};
use common::hostile::{
    self, Payload, RawlogCursor, Token, WireCommand, mutf7_decode, parse_commands, show_bytes,
};
use imap_bridge::config::Config;
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest URL the HTTP client builds (the `http` crate's limit is 65534 bytes); longer
/// ones are sent over a plain connection as they are.
const MAX_CLIENT_URL: usize = 60_000;

/// Longest any one request may take before it counts as a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Commands that only read; every route may send them.
const READ_VERBS: &[&str] = &[
    "CAPABILITY",
    "CHECK",
    "ENABLE",
    "EXAMINE",
    "FETCH",
    "ID",
    "LIST",
    "LSUB",
    "NAMESPACE",
    "NOOP",
    "SEARCH",
    "SELECT",
    "SORT",
    "STATUS",
    "UID FETCH",
    "UID SEARCH",
    "UID SORT",
    "UNSELECT",
];

/// Commands that name a mailbox they change or write to, with the positions of those names.
fn mailbox_arguments(cmd: &WireCommand) -> Vec<&Token> {
    let strings = || {
        cmd.args
            .iter()
            .filter(|t| !matches!(t, Token::Open | Token::Close))
    };
    match cmd.verb.as_str() {
        "CREATE" | "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" | "APPEND" => strings().take(1).collect(),
        "RENAME" => strings().take(2).collect(),
        "UID MOVE" | "UID COPY" | "MOVE" | "COPY" => strings().next_back().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// A mailbox name token as the caller's UTF-8 name: `INBOX` as an atom, else the decoded
/// modified UTF-7 of a string.
fn mailbox_of(token: &Token) -> Option<String> {
    match token {
        Token::Atom(a) if a.eq_ignore_ascii_case(b"INBOX") => Some("INBOX".to_owned()),
        Token::Quoted(v) | Token::Literal(v) => mutf7_decode(v),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// An HTTP request, kept as bytes so that any payload can be sent.
#[derive(Clone)]
struct Req {
    method: Method,
    path: String,
    bearer: bool,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Option<(&'static str, Vec<u8>)>,
}

impl Req {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Req {
            method,
            path: path.into(),
            bearer: true,
            headers: Vec::new(),
            body: None,
        }
    }
    fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }
    fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }
    fn patch(path: impl Into<String>) -> Self {
        Self::new(Method::PATCH, path)
    }
    fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path)
    }
    /// A JSON body given as its raw text, pieces concatenated.
    fn json(mut self, pieces: &[&[u8]]) -> Self {
        self.body = Some(("application/json", pieces.concat()));
        self
    }
    fn body(mut self, content_type: &'static str, bytes: Vec<u8>) -> Self {
        self.body = Some((content_type, bytes));
        self
    }
    fn header(mut self, name: &'static str, value: Vec<u8>) -> Self {
        self.headers.push((name, value));
        self
    }
    fn anonymous(mut self) -> Self {
        self.bearer = false;
        self
    }
}

/// What came back.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    code: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn show(&self) -> String {
        format!("{} {}", self.status, show_bytes(&self.body))
    }
    /// Whether the bridge turned the request down itself, before any IMAP: a malformed or
    /// forbidden value, no or a bad token, an unknown route, a body it does not take.
    fn refused_before_imap(&self) -> bool {
        matches!(
            self.status,
            400 | 401 | 405 | 411 | 413 | 414 | 415 | 416 | 431
        ) || self.code.as_deref() == Some("invalid_request")
            || self.code.as_deref() == Some("not_found")
            || (self.status == 404 && self.code.is_none())
    }
}

/// Whether a path has a `.` or `..` segment, which URL clients remove before sending.
fn has_dot_segment(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or("");
    path.split('/')
        .any(|s| s.eq_ignore_ascii_case("%2E") || s.eq_ignore_ascii_case("%2E%2E"))
}

/// Sends a request over a plain HTTP/1.1 connection exactly as given (reqwest would remove
/// dot segments from the path). Reads until the server closes.
async fn send_raw(base: &str, token: &str, req: &Req) -> std::io::Result<Reply> {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n",
        req.method, req.path
    )
    .into_bytes();
    if req.bearer {
        head.extend_from_slice(format!("Authorization: Bearer {token}\r\n").as_bytes());
    }
    for (name, value) in &req.headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    let body = req.body.as_ref().map(|(ct, b)| (*ct, b.as_slice()));
    if let Some((ct, b)) = body {
        head.extend_from_slice(
            format!("Content-Type: {ct}\r\nContent-Length: {}\r\n", b.len()).as_bytes(),
        );
    }
    head.extend_from_slice(b"\r\n");
    if let Some((_, b)) = body {
        head.extend_from_slice(b);
    }
    stream.write_all(&head).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let status = std::str::from_utf8(response.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |i| i + 4);
    let body = response[split..].to_vec();
    let code = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned));
    Ok(Reply { status, code, body })
}

// ---------------------------------------------------------------------------------------------
// Judging one request
// ---------------------------------------------------------------------------------------------

/// What the API's rules say about a value in a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// The API must refuse it (4xx) before anything reaches the server.
    Refuse,
    /// The API must accept it and pass it on to the server.
    Reach,
    /// Either, as long as nothing unexpected is sent.
    Either,
}

/// How a value that reached the server must appear there.
#[derive(Debug, Clone)]
enum Wire {
    /// Not checked (the value need not reach the server as such).
    Unchecked,
    /// As a mailbox name (an `INBOX` atom or a modified UTF-7 string).
    Mailbox(String),
    /// As one string (quoted or literal) with exactly these bytes.
    Str(Vec<u8>),
    /// As these atoms (letter case aside), e.g. flags or a UID set.
    Atoms(Vec<String>),
    /// As one literal with exactly these bytes.
    Literal(Vec<u8>),
}

/// One payload in one field of one route.
struct Case<'a> {
    field: &'static str,
    payload: &'a Payload,
    rule: Rule,
    wire: Wire,
    /// Commands beyond [`READ_VERBS`] this route may send.
    writes: &'static [&'static str],
    /// The mailboxes those commands may name.
    names: Vec<String>,
}

impl<'a> Case<'a> {
    fn new(field: &'static str, payload: &'a Payload, rule: Rule) -> Self {
        Case {
            field,
            payload,
            rule,
            wire: Wire::Unchecked,
            writes: &[],
            names: Vec::new(),
        }
    }
    fn wire(mut self, wire: Wire) -> Self {
        self.wire = wire;
        self
    }
    fn writes(mut self, verbs: &'static [&'static str], names: &[&str]) -> Self {
        self.writes = verbs;
        self.names = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }
}

/// A bridge in front of a Dovecot that records every session, with a logged-in token, and
/// the record of what was tried and what went wrong.
struct Harness {
    bridge: TestBridge,
    token: String,
    rawlog: RawlogCursor,
    tried: BTreeSet<(String, &'static str)>,
    /// Values already seen on the wire, per field: the bridge may answer a repeated query
    /// (the same IMAP search) from its cache without sending it again.
    sent: BTreeSet<(&'static str, String)>,
    failures: Vec<String>,
    notes: Vec<String>,
}

impl Harness {
    async fn start(
        link: Link,
        extra: &str,
        adjust: impl FnOnce(&mut Config),
        seed: impl FnOnce(&Dovecot),
    ) -> Self {
        let opts = DovecotOptions {
            extra_config: extra.to_owned(),
            ..DovecotOptions::default()
        };
        Self::start_with(opts, link, adjust, seed).await
    }

    /// Like [`Harness::start`] with Dovecot's options, which get `rawlog` set.
    async fn start_with(
        opts: DovecotOptions,
        link: Link,
        adjust: impl FnOnce(&mut Config),
        seed: impl FnOnce(&Dovecot),
    ) -> Self {
        let bridge = TestBridge::start_with(
            DovecotOptions {
                rawlog: true,
                ..opts
            },
            link,
            adjust,
        )
        .await;
        seed(&bridge.dovecot);
        let token = bridge.login().await;
        let dir = bridge.dovecot.dir().join("rawlog").join(USER);
        let rawlog = RawlogCursor::new(&dir);
        let mut h = Harness {
            bridge,
            token,
            rawlog,
            tried: BTreeSet::new(),
            sent: BTreeSet::new(),
            failures: Vec::new(),
            notes: Vec::new(),
        };
        // Warm the pooled session, so that what follows is each request's own traffic.
        let reply = h.send(Req::get("/v1/mailboxes")).await;
        assert_eq!(reply.map(|r| r.status), Some(200), "warm-up");
        let _ = h.rawlog.take();
        h
    }

    /// Sends `req` (with the harness's token unless anonymous); `None` after a hang, which is
    /// recorded as a failure.
    async fn send(&mut self, req: Req) -> Option<Reply> {
        let sent = tokio::time::timeout(REQUEST_TIMEOUT, self.send_inner(&req)).await;
        match sent {
            Ok(Ok(reply)) => Some(reply),
            Ok(Err(e)) => {
                self.failures.push(format!(
                    "{} {}: transport error {}",
                    req.method,
                    short(&req.path),
                    short(&e)
                ));
                None
            }
            Err(_) => {
                self.failures.push(format!(
                    "{} {}: no answer within {REQUEST_TIMEOUT:?} (hang)",
                    req.method,
                    short(&req.path)
                ));
                None
            }
        }
    }

    async fn send_inner(&self, req: &Req) -> Result<Reply, String> {
        if has_dot_segment(&req.path) || req.path.len() > MAX_CLIENT_URL {
            return send_raw(&self.bridge.base, &self.token, req)
                .await
                .map_err(|e| e.to_string());
        }
        let mut builder = self
            .bridge
            .http
            .request(req.method.clone(), self.bridge.url(&req.path));
        if req.bearer {
            builder = builder.bearer_auth(&self.token);
        }
        for (name, value) in &req.headers {
            let value =
                reqwest::header::HeaderValue::from_bytes(value).map_err(|e| e.to_string())?;
            builder = builder.header(*name, value);
        }
        if let Some((ct, body)) = &req.body {
            builder = builder.header("content-type", *ct).body(body.clone());
        }
        let res = builder.send().await.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let body = res.bytes().await.map_err(|e| e.to_string())?.to_vec();
        let code = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned));
        Ok(Reply { status, code, body })
    }

    /// Sends and judges; `None` after a hang.
    async fn probe(&mut self, case: Case<'_>, req: Req) -> Option<(Reply, Vec<WireCommand>)> {
        let path = req.path.clone();
        let reply = self.send(req).await?;
        let commands = self.judge(&case, &reply, &path);
        Some((reply, commands))
    }

    /// Checks one answer and the commands the server received meanwhile.
    fn judge(&mut self, case: &Case<'_>, reply: &Reply, path: &str) -> Vec<WireCommand> {
        self.tried.insert((case.payload.label.clone(), case.field));
        let what = format!(
            "{} <- {} [{}] ({})",
            case.field,
            case.payload.label,
            show_bytes(&case.payload.bytes),
            short(path)
        );
        let commands = match self.rawlog.take() {
            Ok(c) => c,
            Err(e) => {
                self.failures
                    .push(format!("{what}: the server received malformed IMAP: {e}"));
                Vec::new()
            }
        };
        let listing = || {
            commands
                .iter()
                .map(|c| format!("\n        {}: {}", c.session, c.show()))
                .collect::<String>()
        };
        let mut fail = |msg: String| self.failures.push(format!("{what}: {msg}"));
        if reply.status >= 500 || reply.status < 100 {
            fail(format!("answered {}{}", reply.show(), listing()));
        }
        let refused = reply.refused_before_imap();
        match case.rule {
            Rule::Refuse if !refused => fail(format!(
                "the API must refuse this value, got {}{}",
                reply.show(),
                listing()
            )),
            Rule::Reach if refused || reply.status >= 500 => fail(format!(
                "the API must accept this value and pass it on, got {}",
                reply.show()
            )),
            _ => {}
        }
        // Names with empty hierarchy levels are refused once the server's delimiter is known.
        let harmless = |c: &WireCommand| {
            c.verb == "LIST" && c.args == [Token::Quoted(Vec::new()), Token::Quoted(Vec::new())]
        };
        if refused && !commands.iter().all(harmless) {
            fail(format!(
                "refused with {}, yet the server received:{}",
                reply.status,
                listing()
            ));
        }
        for cmd in &commands {
            let tagged = cmd.tag.len() > 1
                && cmd.tag.starts_with('b')
                && cmd.tag[1..].bytes().all(|b| b.is_ascii_digit());
            let known =
                READ_VERBS.contains(&cmd.verb.as_str()) || case.writes.contains(&cmd.verb.as_str());
            if !(known && (tagged || cmd.verb == "DONE")) {
                fail(format!(
                    "unexpected command `{}` from {}{}",
                    cmd.show(),
                    cmd.session,
                    listing()
                ));
            }
            for arg in mailbox_arguments(cmd) {
                let name = mailbox_of(arg);
                let allowed = name.as_ref().is_some_and(|n| {
                    case.names.iter().any(|ok| ok == n)
                        || (n == "INBOX"
                            && case.names.iter().any(|ok| ok.eq_ignore_ascii_case("INBOX")))
                });
                if !allowed {
                    fail(format!(
                        "`{}` names {:?}, not one of {:?}",
                        cmd.show(),
                        name,
                        case.names
                    ));
                }
            }
        }
        let key = (case.field, format!("{:?}", case.wire));
        if !refused
            && reply.status < 500
            && !self.sent.contains(&key)
            && !wire_shows(&case.wire, &commands)
        {
            fail(format!(
                "reached the server ({}), but not as the one value expected ({}):{}",
                reply.status,
                describe_wire(&case.wire),
                listing()
            ));
        }
        if !refused {
            self.sent.insert(key);
        }
        commands
    }

    /// Sends a request that is not itself a probe (a round-trip check) and makes sure it, too,
    /// sends nothing unexpected.
    async fn follow(&mut self, case: Case<'_>, req: Req) -> Option<Reply> {
        let path = req.path.clone();
        let reply = self.send(req).await?;
        let before = self.tried.len();
        let key = (case.payload.label.clone(), case.field);
        let was_tried = self.tried.contains(&key);
        self.judge(&case, &reply, &path);
        if !was_tried && self.tried.len() > before {
            self.tried.remove(&key);
        }
        Some(reply)
    }

    fn fail(&mut self, msg: String) {
        self.failures.push(msg);
    }

    /// Prints what was tried and fails with every finding.
    fn finish(self, test: &str, payloads: usize) {
        let fields: BTreeSet<&str> = self.tried.iter().map(|(_, f)| *f).collect();
        eprintln!(
            "{test}: {} payloads x {} fields: {} payload-field pairs tried",
            payloads,
            fields.len(),
            self.tried.len()
        );
        eprintln!(
            "{test}: fields: {}",
            fields.into_iter().collect::<Vec<_>>().join(", ")
        );
        for note in &self.notes {
            eprintln!("{test}: note: {note}");
        }
        assert!(
            self.failures.is_empty(),
            "{test}: {} finding(s):\n  {}",
            self.failures.len(),
            self.failures.join("\n  ")
        );
    }
}

fn short(s: &str) -> String {
    if s.len() > 160 {
        let mut end = 160;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…({} bytes)", &s[..end], s.len())
    } else {
        s.to_owned()
    }
}

fn wire_shows(wire: &Wire, commands: &[WireCommand]) -> bool {
    let tokens = || commands.iter().flat_map(|c| c.args.iter());
    match wire {
        Wire::Unchecked => true,
        Wire::Mailbox(name) => tokens().any(|t| mailbox_of(t).as_deref() == Some(name.as_str())),
        Wire::Str(bytes) => tokens().any(|t| t.is_string() && t.value() == Some(bytes.as_slice())),
        Wire::Literal(bytes) => tokens().any(|t| matches!(t, Token::Literal(v) if v == bytes)),
        Wire::Atoms(atoms) => atoms.iter().all(|atom| {
            tokens().any(|t| matches!(t, Token::Atom(v) if v.eq_ignore_ascii_case(atom.as_bytes())))
        }),
    }
}

fn describe_wire(wire: &Wire) -> String {
    match wire {
        Wire::Unchecked => "anything".to_owned(),
        Wire::Mailbox(n) => format!("mailbox {n:?}"),
        Wire::Str(b) => format!("one string [{}]", show_bytes(b)),
        Wire::Literal(b) => format!("one literal [{}]", show_bytes(b)),
        Wire::Atoms(a) => format!("atoms {a:?}"),
    }
}

fn names_of(list: &Value) -> Vec<String> {
    list["mailboxes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The rule for a mailbox name: a name with an empty hierarchy level (`//`, a leading or
/// trailing delimiter) may be refused once the server's delimiter is known.
fn mailbox_rule(text: Option<&str>) -> Rule {
    match text {
        _ if !hostile::valid_mailbox(text) => Rule::Refuse,
        Some(t) if t.starts_with('/') || t.ends_with('/') || t.contains("//") => Rule::Either,
        _ => Rule::Reach,
    }
}

/// A query value as the bridge reads it: its text, or `None` (refused with 400) when the
/// bytes are not UTF-8.
fn query_text(p: &Payload) -> Option<String> {
    String::from_utf8(p.bytes.clone()).ok()
}

fn rule_if(valid: bool) -> Rule {
    if valid { Rule::Reach } else { Rule::Refuse }
}

/// A message for uploads.
const DRAFT: &[u8] = b"Message-ID: <hostile-draft@example.test>\r\n\
From: Robin Example <robin@example.test>\r\n\
To: Alice Anders <alice@example.test>\r\n\
Subject: A draft\r\n\
Date: Mon, 06 May 2024 12:00:00 +0000\r\n\
\r\n\
Body.\r\n";

// ---------------------------------------------------------------------------------------------
// The wire reader itself
// ---------------------------------------------------------------------------------------------

#[test]
fn the_wire_reader_knows_quoting_literals_and_modified_utf7() {
    let input = b"b1 UID SEARCH CHARSET UTF-8 SUBJECT {9+}\r\n\xc3\xbc A1 DEL\r\nb2 SELECT \"a\\\"b\"\r\nDONE\r\n";
    let (cmds, used) = parse_commands("s", input).expect("well-formed");
    assert_eq!(used, input.len());
    assert_eq!(cmds.len(), 3);
    assert_eq!(cmds[0].verb, "UID SEARCH");
    assert_eq!(
        cmds[0].args.last(),
        Some(&Token::Literal("ü A1 DEL".as_bytes().to_vec()))
    );
    assert_eq!(cmds[1].args, vec![Token::Quoted(b"a\"b".to_vec())]);
    assert_eq!(cmds[2].verb, "DONE");
    // A smuggled command is its own command, and an unbalanced quote is malformed.
    let (cmds, _) = parse_commands("s", b"b1 SELECT \"x\"\r\nA1 DELETE INBOX\r\n").expect("parses");
    assert_eq!(cmds[1].verb, "DELETE");
    assert!(parse_commands("s", b"b1 SELECT \"x\r\n").is_err());

    assert_eq!(mutf7_decode(b"Entw&APw-rfe").as_deref(), Some("Entwürfe"));
    assert_eq!(mutf7_decode(b"&-AGEAYgBj-").as_deref(), Some("&AGEAYgBj-"));
    assert_eq!(mutf7_decode(b"&2D3eAA-").as_deref(), Some("😀"));
    assert_eq!(mutf7_decode(b"&AGE-"), None, "ASCII inside a run");

    let corpus = hostile::corpus();
    let labels: BTreeSet<&str> = corpus.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels.len(), corpus.len(), "labels are unique");
    assert!(corpus.len() >= 60, "{} payloads", corpus.len());
    eprintln!("corpus: {} hostile payloads", corpus.len());
}

// ---------------------------------------------------------------------------------------------
// Mailbox names: every route's path, create, rename, move and copy targets
// ---------------------------------------------------------------------------------------------

/// Every route with a `{mailbox}` path segment: field name, request, the writes it may make.
fn mailbox_routes(seg: &str) -> Vec<(&'static str, Req, &'static [&'static str])> {
    let m = format!("/v1/mailboxes/{seg}");
    vec![
        (
            "path mailbox: list messages",
            Req::get(format!("{m}/messages")),
            &[],
        ),
        (
            "path mailbox: append",
            Req::post(format!("{m}/messages")).body("message/rfc822", DRAFT.to_vec()),
            &["APPEND"],
        ),
        (
            "path mailbox: get message",
            Req::get(format!("{m}/messages/1")),
            &[],
        ),
        (
            "path mailbox: delete message",
            Req::delete(format!("{m}/messages/1")),
            &["UID MOVE", "UID COPY", "UID STORE", "UID EXPUNGE"],
        ),
        (
            "path mailbox: raw",
            Req::get(format!("{m}/messages/1/raw")),
            &[],
        ),
        (
            "path mailbox: attachment",
            Req::get(format!("{m}/messages/1/attachments/2")),
            &[],
        ),
        (
            "path mailbox: patch flags",
            Req::patch(format!("{m}/messages/1/flags")).json(&[br#"{"add":["\\Seen"]}"#]),
            &["UID STORE"],
        ),
        (
            "path mailbox: bulk flags",
            Req::post(format!("{m}/flags")).json(&[br#"{"uids":[1],"add":["\\Seen"]}"#]),
            &["UID STORE"],
        ),
        (
            "path mailbox: move",
            Req::post(format!("{m}/move")).json(&[br#"{"uids":[1],"to":"Dest"}"#]),
            &["UID MOVE", "UID COPY", "UID STORE", "UID EXPUNGE"],
        ),
        (
            "path mailbox: copy",
            Req::post(format!("{m}/copy")).json(&[br#"{"uids":[1],"to":"Dest"}"#]),
            &["UID COPY"],
        ),
        (
            "path mailbox: changes",
            Req::get(format!("{m}/changes?since=s1.1.1.1")),
            &[],
        ),
        (
            "path mailbox: rename",
            Req::patch(m.clone()).json(&[br#"{"name":"Renamed"}"#]),
            &["RENAME", "SUBSCRIBE", "UNSUBSCRIBE"],
        ),
        (
            "path mailbox: delete mailbox",
            Req::delete(m),
            &["DELETE", "UNSUBSCRIBE"],
        ),
    ]
}

#[tokio::test]
async fn hostile_mailbox_names_in_every_path_and_body_field() {
    let mut h = Harness::start(
        Link::Tls,
        "",
        |_| {},
        |d| {
            d.deliver_many(USER, "INBOX", corpus::bulk(3, 1));
            d.deliver_many(USER, "Box", corpus::bulk(3, 2));
            d.create_mailbox(USER, "Src");
            d.create_mailbox(USER, "Dest");
        },
    )
    .await;
    let corpus = hostile::corpus();
    let mut refused_by_server = Vec::new();
    for p in &corpus {
        let valid = hostile::valid_mailbox(p.text.as_deref());
        let name = p.text.clone().unwrap_or_default();
        let rule = mailbox_rule(p.text.as_deref());
        let on_wire = || {
            if valid {
                Wire::Mailbox(name.clone())
            } else {
                Wire::Unchecked
            }
        };
        let fixtures = [name.as_str(), "Dest", "Trash", "Renamed"];

        // Every route that takes the mailbox in its path; none of these names exists.
        for (field, req, writes) in mailbox_routes(&p.url()) {
            let case = Case::new(field, p, rule)
                .wire(on_wire())
                .writes(writes, &fixtures);
            h.probe(case, req).await;
        }

        // Move and copy into it: it does not exist, so nothing moves.
        let transfers: [(&'static str, &str, &'static [&'static str]); 2] = [
            (
                "move to",
                "move",
                &["UID MOVE", "UID COPY", "UID STORE", "UID EXPUNGE"],
            ),
            ("copy to", "copy", &["UID COPY"]),
        ];
        for (field, op, writes) in transfers {
            let case = Case::new(field, p, rule)
                .wire(on_wire())
                .writes(writes, &[name.as_str(), "Box"]);
            let req = Req::post(format!("/v1/mailboxes/Box/{op}")).json(&[
                b"{\"uids\":[1],\"to\":",
                &p.json,
                b"}",
            ]);
            if let Some((reply, _)) = h.probe(case, req).await
                && valid
                && reply.status != 404
                && reply.status != 403
            {
                h.fail(format!(
                    "{field} <- {}: a missing target must be 404 (403 for a name the server cannot hold), got {}",
                    p.label,
                    reply.show()
                ));
            }
        }

        // Create it, see it listed under the same name, file a message into it, read it back,
        // delete it.
        let case = Case::new("create name", p, rule)
            .wire(on_wire())
            .writes(&["CREATE", "SUBSCRIBE"], &[name.as_str()]);
        let req = Req::post("/v1/mailboxes").json(&[b"{\"name\":", &p.json, b"}"]);
        if let Some((reply, _)) = h.probe(case, req).await {
            if reply.status == 201 {
                mailbox_round_trip(&mut h, p, &name).await;
            } else if valid {
                refused_by_server.push(format!("{} -> {} {:?}", p.label, reply.status, reply.code));
            }
        }

        // Rename a folder to it and back.
        let case = Case::new("rename new name", p, rule)
            .wire(on_wire())
            .writes(
                &["RENAME", "SUBSCRIBE", "UNSUBSCRIBE"],
                &["Src", name.as_str()],
            );
        let req = Req::patch("/v1/mailboxes/Src").json(&[b"{\"name\":", &p.json, b"}"]);
        if let Some((reply, _)) = h.probe(case, req).await
            && reply.status == 200
        {
            let listed = h
                .send(Req::get("/v1/mailboxes"))
                .await
                .map(|r| names_of(&r.json()));
            let _ = h.rawlog.take();
            if !listed
                .as_ref()
                .is_some_and(|l| l.contains(&name) && !l.contains(&"Src".to_owned()))
            {
                h.fail(format!(
                    "renamed Src to {} [{}]: GET /v1/mailboxes lists {listed:?}",
                    p.label,
                    name.escape_debug()
                ));
            }
            let case = Case::new("path mailbox: rename", p, Rule::Reach)
                .wire(Wire::Mailbox(name.clone()))
                .writes(
                    &["RENAME", "SUBSCRIBE", "UNSUBSCRIBE"],
                    &["Src", name.as_str()],
                );
            let back = h
                .follow(
                    case,
                    Req::patch(format!("/v1/mailboxes/{}", p.url())).json(&[br#"{"name":"Src"}"#]),
                )
                .await;
            if back.as_ref().map(|r| r.status) != Some(200) {
                h.fail(format!(
                    "renaming {} back to Src: {:?}",
                    p.label,
                    back.map(|r| r.show())
                ));
            }
        }
    }
    h.notes.push(format!(
        "valid names the server refused to create: {}",
        refused_by_server.join("; ")
    ));
    // Nothing else changed: the fixtures are intact and no stray folder was left behind.
    let listed = h
        .send(Req::get("/v1/mailboxes"))
        .await
        .map(|r| names_of(&r.json()))
        .unwrap_or_default();
    let expected: BTreeSet<&str> = [
        "INBOX", "Box", "Src", "Dest", "Drafts", "Sent", "Trash", "Junk", "Archive",
    ]
    .into();
    let got: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    if got != expected {
        h.fail(format!(
            "mailboxes afterwards: {got:?}, expected {expected:?}"
        ));
    }
    let mut imap = h.bridge.imap().await;
    if imap.uids("INBOX").await != vec![1, 2, 3] {
        h.fail("INBOX changed".to_owned());
    }
    h.finish("mailbox names", corpus.len());
}

/// After creating `name`: listed exactly, a message copied in, listed there, deleted again.
async fn mailbox_round_trip(h: &mut Harness, p: &Payload, name: &str) {
    let listed = h
        .send(Req::get("/v1/mailboxes"))
        .await
        .map(|r| names_of(&r.json()));
    let _ = h.rawlog.take();
    if !listed.as_ref().is_some_and(|l| l.iter().any(|n| n == name)) {
        h.fail(format!(
            "created {} [{}]: GET /v1/mailboxes does not list it under that name: {listed:?}",
            p.label,
            name.escape_debug()
        ));
    }
    let case = Case::new("copy to", p, Rule::Reach)
        .wire(Wire::Mailbox(name.to_owned()))
        .writes(&["UID COPY"], &[name]);
    let req =
        Req::post("/v1/mailboxes/INBOX/copy").json(&[b"{\"uids\":[1],\"to\":", &p.json, b"}"]);
    let copied = h.follow(case, req).await;
    let new_uid = copied
        .as_ref()
        .and_then(|r| r.json()["results"][0]["new_uid"].as_u64());
    if new_uid.is_none() {
        h.fail(format!(
            "copy into {}: {:?}",
            p.label,
            copied.map(|r| r.show())
        ));
    }
    let seg = p.url();
    let case = Case::new("path mailbox: list messages", p, Rule::Reach)
        .wire(Wire::Mailbox(name.to_owned()));
    let list = h
        .follow(case, Req::get(format!("/v1/mailboxes/{seg}/messages")))
        .await;
    let json = list.as_ref().map(Reply::json).unwrap_or(Value::Null);
    if json["total"] != 1 || json["mailbox"] != name {
        h.fail(format!("list of {}: {:?}", p.label, list.map(|r| r.show())));
    }
    let case = Case::new("path mailbox: delete mailbox", p, Rule::Reach)
        .wire(Wire::Mailbox(name.to_owned()))
        .writes(&["DELETE", "UNSUBSCRIBE"], &[name]);
    let deleted = h
        .follow(case, Req::delete(format!("/v1/mailboxes/{seg}")))
        .await;
    if deleted.as_ref().map(|r| r.status) != Some(204) {
        h.fail(format!(
            "delete {}: {:?}",
            p.label,
            deleted.map(|r| r.show())
        ));
    }
    let listed = h
        .send(Req::get("/v1/mailboxes"))
        .await
        .map(|r| names_of(&r.json()));
    let _ = h.rawlog.take();
    if listed.as_ref().is_some_and(|l| l.iter().any(|n| n == name)) {
        h.fail(format!("deleted {}: still listed", p.label));
    }
}

// ---------------------------------------------------------------------------------------------
// The header list: filters, dates, cursor, sort, order, limit
// ---------------------------------------------------------------------------------------------

/// Payloads a subject can hold and a substring search can find unambiguously.
fn searchable(p: &Payload) -> Option<&str> {
    let text = p.text.as_deref()?;
    (hostile::valid_filter(Some(text))
        && !text.chars().any(char::is_control)
        && text.trim() == text
        && (1..=40).contains(&text.chars().count()))
    .then_some(text)
}

fn subject_message(i: usize, subject: &str) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(subject);
    format!(
        "Message-ID: <search-{i}@example.test>\r\n\
         From: Sender <sender@example.test>\r\n\
         To: Alice <alice@example.test>\r\n\
         Subject: =?UTF-8?B?{encoded}?=\r\n\
         Date: Mon, 06 May 2024 12:00:00 +0000\r\n\
         \r\n\
         Body {i}.\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn hostile_search_filters_and_list_parameters() {
    let corpus = hostile::corpus();
    let seeds: Vec<(usize, String)> = corpus
        .iter()
        .enumerate()
        .filter_map(|(i, p)| searchable(p).map(|s| (i, s.to_owned())))
        .fold(Vec::new(), |mut seeds: Vec<(usize, String)>, (i, s)| {
            // One message per distinct subject (an escaped surrogate pair is the emoji again).
            if !seeds.iter().any(|(_, t)| *t == s) {
                seeds.push((i, s));
            }
            seeds
        });
    let messages: Vec<Vec<u8>> = seeds.iter().map(|(i, s)| subject_message(*i, s)).collect();
    let mut h = Harness::start(
        Link::Tls,
        "",
        |_| {},
        move |d| {
            d.deliver_many(USER, "INBOX", corpus::bulk(3, 1));
            d.deliver_many(USER, "Search", messages);
        },
    )
    .await;

    let date = regex::Regex::new(r"^\d{1,2}-[A-Z][a-z]{2}-\d{4}$").expect("regex");
    for p in &corpus {
        let v = p.url();
        for field in ["from", "to", "subject", "text"] {
            let text = query_text(p);
            let valid = hostile::valid_filter(text.as_deref());
            let wire = match &text {
                Some(text) if valid => Wire::Str(text.clone().into_bytes()),
                _ => Wire::Unchecked,
            };
            let field_name: &'static str = match field {
                "from" => "query from",
                "to" => "query to",
                "subject" => "query subject",
                _ => "query text",
            };
            let case = Case::new(field_name, p, rule_if(valid)).wire(wire);
            if let Some((reply, _)) = h
                .probe(
                    case,
                    Req::get(format!("/v1/mailboxes/INBOX/messages?{field}={v}")),
                )
                .await
                && valid
                && reply.status != 200
            {
                h.fail(format!("{field} <- {}: {}", p.label, reply.show()));
            }
        }
        for (field, field_name) in [
            ("since", "query since"),
            ("before", "query before"),
            ("cursor", "query cursor"),
            ("sort", "query sort"),
            ("order", "query order"),
            ("limit", "query limit"),
            ("unseen", "query unseen"),
            ("flagged", "query flagged"),
        ] {
            let case = Case::new(field_name, p, Rule::Either);
            if let Some((reply, commands)) = h
                .probe(
                    case,
                    Req::get(format!("/v1/mailboxes/INBOX/messages?{field}={v}")),
                )
                .await
                && reply.status == 200
                && matches!(field, "since" | "before")
            {
                // An accepted date goes out as one IMAP date (unless an equal search was
                // answered from the cache, when it does not go out at all).
                let keyword = field.to_ascii_uppercase();
                let ok = commands.iter().all(|c| {
                    c.args.windows(2).all(|w| {
                        !matches!(&w[0], Token::Atom(a) if a.eq_ignore_ascii_case(keyword.as_bytes()))
                            || matches!(&w[1], Token::Atom(d) if date.is_match(&String::from_utf8_lossy(d)))
                    })
                });
                if !ok {
                    let sent: Vec<String> = commands.iter().map(WireCommand::show).collect();
                    h.fail(format!(
                        "{field} <- {} accepted but not sent as a date: {sent:?}",
                        p.label
                    ));
                }
            }
        }
    }

    h.notes.push(
        "query values that are not UTF-8 once percent-decoded are refused with 400, like path \
         segments with the same bytes"
            .to_owned(),
    );

    // Values with quotes, braces, wildcards, separators and embedded commands find exactly the
    // message whose subject holds them.
    for (i, text) in &seeds {
        let p = &corpus[*i];
        let case = Case::new("query subject", p, Rule::Reach).wire(Wire::Str(p.bytes.clone()));
        let req = Req::get(format!(
            "/v1/mailboxes/Search/messages?limit=200&subject={}",
            p.url()
        ));
        let Some((reply, _)) = h.probe(case, req).await else {
            continue;
        };
        let json = reply.json();
        let found: Vec<(u64, String)> = json["messages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        (
                            m["uid"].as_u64().unwrap_or(0),
                            m["subject"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let own = found.iter().any(|(_, s)| s == text);
        let strangers: Vec<&String> = found
            .iter()
            .map(|(_, s)| s)
            .filter(|s| !s.to_lowercase().contains(&text.to_lowercase()))
            .collect();
        if reply.status != 200 || !own || !strangers.is_empty() {
            h.fail(format!(
                "subject search for {} [{}]: {} found {:?}",
                p.label,
                text.escape_debug(),
                reply.status,
                found
            ));
        }
    }
    let mut imap = h.bridge.imap().await;
    if imap.uids("INBOX").await != vec![1, 2, 3] {
        h.fail("INBOX changed".to_owned());
    }
    h.finish("search", corpus.len());
}

// ---------------------------------------------------------------------------------------------
// Flags, UIDs, part ids, sync states, uploads
// ---------------------------------------------------------------------------------------------

/// The UID a JSON number stands for, as the API reads `uids`.
fn uid_of_json(raw: &[u8]) -> Option<u32> {
    let n: serde_json::Number = serde_json::from_slice(raw).ok()?;
    let whole = match n.as_u64() {
        Some(u) => Some(u),
        None => n
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
            .map(|f| f as u64),
    }?;
    u32::try_from(whole).ok().filter(|u| *u > 0)
}

/// Whether a comma-separated `flags` query is one the API takes.
fn valid_flag_list(text: Option<&str>) -> Option<Vec<String>> {
    let text = text?;
    if text.is_empty() {
        return Some(Vec::new());
    }
    let flags: Vec<String> = text.split(',').map(str::to_owned).collect();
    (flags.len() <= 50 && flags.iter().all(|f| hostile::valid_flag(Some(f)))).then_some(flags)
}

/// Whether the API takes a message body.
fn valid_message(body: &[u8]) -> bool {
    let first = body.split(|b| *b == b'\n').next().unwrap_or_default();
    !body.is_empty()
        && !body.contains(&0)
        && first
            .iter()
            .position(|b| *b == b':')
            .is_some_and(|c| c > 0 && first[..c].iter().all(u8::is_ascii_graphic))
}

#[tokio::test]
async fn hostile_flags_uids_part_ids_states_and_uploads() {
    let mut h = Harness::start(
        Link::Tls,
        "",
        |_| {},
        |d| {
            d.deliver_many(USER, "INBOX", corpus::bulk(3, 1));
            d.deliver(USER, "INBOX", &corpus::with_attachment(2000), "", None);
            d.deliver_many(USER, "Box", corpus::bulk(5, 2));
            d.deliver_many(USER, "Pad", corpus::bulk(3, 3));
            d.create_mailbox(USER, "Dest");
            d.create_mailbox(USER, "Uploads");
        },
    )
    .await;
    let corpus = hostile::corpus();
    let (_, list) = h
        .bridge
        .get_json(&h.token, "/v1/mailboxes/INBOX/messages")
        .await;
    let uid_validity = list["uid_validity"].as_u64().expect("uid_validity");
    let _ = h.rawlog.take();

    for p in &corpus {
        let text = p.text.as_deref();
        let flag_ok = hostile::valid_flag(text);
        let flag_wire = || {
            if flag_ok {
                Wire::Atoms(vec![p.text.clone().unwrap_or_default()])
            } else {
                Wire::Unchecked
            }
        };
        // One message's flags: add, remove, set; and the same in bulk.
        for (field, key) in [
            ("patch add", "add"),
            ("patch remove", "remove"),
            ("patch set", "set"),
        ] {
            let case = Case::new(field, p, rule_if(flag_ok))
                .wire(flag_wire())
                .writes(&["UID STORE"], &[]);
            let req = Req::patch("/v1/mailboxes/INBOX/messages/1/flags").json(&[
                b"{\"",
                key.as_bytes(),
                b"\":[",
                &p.json,
                b"]}",
            ]);
            if let Some((reply, _)) = h.probe(case, req).await
                && flag_ok
            {
                let flags: Vec<String> = reply.json()["flags"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|f| f.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let has = flags
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(text.unwrap_or_default()));
                if reply.status != 200 || (key == "remove") == has {
                    h.fail(format!(
                        "{field} <- {}: {} flags {flags:?}",
                        p.label,
                        reply.show()
                    ));
                }
            }
        }
        for (field, key) in [
            ("bulk add", "add"),
            ("bulk remove", "remove"),
            ("bulk set", "set"),
        ] {
            let case = Case::new(field, p, rule_if(flag_ok))
                .wire(flag_wire())
                .writes(&["UID STORE"], &[]);
            let req = Req::post("/v1/mailboxes/INBOX/flags").json(&[
                b"{\"uids\":[1,2],\"",
                key.as_bytes(),
                b"\":[",
                &p.json,
                b"]}",
            ]);
            if let Some((reply, _)) = h.probe(case, req).await
                && flag_ok
                && reply.status != 200
            {
                h.fail(format!("{field} <- {}: {}", p.label, reply.show()));
            }
        }

        // UIDs in bodies, as numbers when they look like one.
        let raw = p.json_for_number();
        let uid = uid_of_json(&raw);
        let uid_wire = || uid.map_or(Wire::Unchecked, |u| Wire::Atoms(vec![u.to_string()]));
        let case = Case::new("bulk uids", p, rule_if(uid.is_some()))
            .wire(uid_wire())
            .writes(&["UID STORE"], &[]);
        h.probe(
            case,
            Req::post("/v1/mailboxes/Box/flags").json(&[
                b"{\"uids\":[",
                &raw,
                b"],\"add\":[\"$Probe\"]}",
            ]),
        )
        .await;
        let case = Case::new("move uids", p, rule_if(uid.is_some()))
            .wire(uid_wire())
            .writes(
                &["UID MOVE", "UID COPY", "UID STORE", "UID EXPUNGE"],
                &["Box", "Dest"],
            );
        h.probe(
            case,
            Req::post("/v1/mailboxes/Box/move").json(&[
                b"{\"uids\":[",
                &raw,
                b"],\"to\":\"Dest\"}",
            ]),
        )
        .await;
        let case = Case::new("copy uids", p, rule_if(uid.is_some()))
            .wire(uid_wire())
            .writes(&["UID COPY"], &["Box", "Dest"]);
        h.probe(
            case,
            Req::post("/v1/mailboxes/Dest/copy").json(&[
                b"{\"uids\":[",
                &raw,
                b"],\"to\":\"Box\"}",
            ]),
        )
        .await;

        // The UID path segment.
        let seg = p.url();
        let path_uid = text.and_then(|t| t.parse::<u32>().ok()).filter(|u| *u > 0);
        let seg_wire = || path_uid.map_or(Wire::Unchecked, |u| Wire::Atoms(vec![u.to_string()]));
        let routes: [(&'static str, Req, &'static [&'static str]); 5] = [
            (
                "uid segment: get message",
                Req::get(format!("/v1/mailboxes/INBOX/messages/{seg}")),
                &[],
            ),
            (
                "uid segment: raw",
                Req::get(format!("/v1/mailboxes/INBOX/messages/{seg}/raw")),
                &[],
            ),
            (
                "uid segment: attachment",
                Req::get(format!("/v1/mailboxes/INBOX/messages/{seg}/attachments/2")),
                &[],
            ),
            (
                "uid segment: patch flags",
                Req::patch(format!("/v1/mailboxes/INBOX/messages/{seg}/flags"))
                    .json(&[br#"{"add":["$Probe"]}"#]),
                &["UID STORE"],
            ),
            (
                "uid segment: delete message",
                Req::delete(format!("/v1/mailboxes/Pad/messages/{seg}?permanent=true")),
                &["UID STORE", "UID EXPUNGE"],
            ),
        ];
        for (field, req, writes) in routes {
            let case = Case::new(field, p, rule_if(path_uid.is_some()))
                .wire(seg_wire())
                .writes(writes, &["Pad"]);
            h.probe(case, req).await;
        }

        // Part ids: only a real part comes back, with its exact bytes.
        let case = Case::new("part id", p, Rule::Either);
        if let Some((reply, _)) = h
            .probe(
                case,
                Req::get(format!("/v1/mailboxes/INBOX/messages/4/attachments/{seg}")),
            )
            .await
            && reply.status == 200
            && (text != Some("2") || reply.body != corpus::attachment_bytes(2000))
        {
            h.fail(format!("part {}: {}", p.label, reply.show()));
        }

        // A sync state.
        let case = Case::new("changes since", p, Rule::Either);
        h.probe(
            case,
            Req::get(format!("/v1/mailboxes/INBOX/changes?since={seg}")),
        )
        .await;

        // Upload flags.
        let flags = valid_flag_list(text);
        let wire = flags.clone().map_or(Wire::Unchecked, Wire::Atoms);
        let case = Case::new("append flags", p, rule_if(flags.is_some()))
            .wire(wire)
            .writes(&["APPEND"], &["Uploads"]);
        h.probe(
            case,
            Req::post(format!("/v1/mailboxes/Uploads/messages?flags={seg}"))
                .body("message/rfc822", DRAFT.to_vec()),
        )
        .await;

        // Upload bodies: the value after a header, and the value as the whole message.
        let mut body = b"Subject: hostile upload\r\n\r\n".to_vec();
        body.extend_from_slice(&p.bytes);
        for (field, body) in [
            ("append body", body),
            ("append whole message", p.bytes.clone()),
        ] {
            let ok = valid_message(&body);
            let case = Case::new(field, p, rule_if(ok))
                .wire(if ok {
                    Wire::Literal(body.clone())
                } else {
                    Wire::Unchecked
                })
                .writes(&["APPEND"], &["Uploads"]);
            let Some((reply, _)) = h
                .probe(
                    case,
                    Req::post("/v1/mailboxes/Uploads/messages")
                        .body("message/rfc822", body.clone()),
                )
                .await
            else {
                continue;
            };
            let uid = reply.json()["uid"].as_u64();
            if ok && (reply.status != 201 || uid.is_none()) {
                h.fail(format!("{field} <- {}: {}", p.label, reply.show()));
            }
            // Maildir stores line ends as LF and gives CRLF back, so only bodies whose line ends
            // are all CRLF come back byte for byte.
            let crlf_only = body.iter().enumerate().all(|(i, b)| match b {
                b'\r' => body.get(i + 1) == Some(&b'\n'),
                b'\n' => i > 0 && body[i - 1] == b'\r',
                _ => true,
            });
            if let Some(uid) = uid
                && crlf_only
            {
                let raw = h
                    .send(Req::get(format!(
                        "/v1/mailboxes/Uploads/messages/{uid}/raw"
                    )))
                    .await;
                let _ = h.rawlog.take();
                if raw.as_ref().map(|r| &r.body) != Some(&body) {
                    h.fail(format!(
                        "{field} <- {}: downloaded back as {:?}",
                        p.label,
                        raw.map(|r| r.show())
                    ));
                }
            }
        }
    }

    // Sync states that parse but carry extreme numbers.
    let extremes = [
        format!("s1.{uid_validity}.0.1"),
        format!("s1.{uid_validity}.18446744073709551615.4294967295"),
        format!("s1.{uid_validity}.18446744073709551616.1"),
        format!("s1.{uid_validity}.1.0"),
        format!("s1.{uid_validity}.1.4294967296"),
        "s1.0.0.0".to_owned(),
        "s1.4294967295.1.1".to_owned(),
        format!("s1.{uid_validity}.1.1.1"),
        format!("s1.{uid_validity}.-1.1"),
        format!("s1.{uid_validity}.+1.1"),
        format!("s1.{uid_validity}. 1.1"),
        format!("s1.{uid_validity}.1.1\r\nb1 LOGOUT"),
    ];
    let extremes: Vec<Payload> = extremes
        .iter()
        .map(|s| Payload {
            label: format!("state {s:?}"),
            text: Some(s.clone()),
            bytes: s.clone().into_bytes(),
            json: serde_json::to_vec(s).expect("json"),
            number: None,
        })
        .collect();
    for p in &extremes {
        let case = Case::new("changes since", p, Rule::Either);
        h.probe(
            case,
            Req::get(format!("/v1/mailboxes/INBOX/changes?since={}", p.url())),
        )
        .await;
    }

    // INBOX still holds its four messages, and Pad lost only what was deleted by a valid UID.
    let mut imap = h.bridge.imap().await;
    if imap.uids("INBOX").await != vec![1, 2, 3, 4] {
        h.fail("INBOX lost messages".to_owned());
    }
    h.finish(
        "flags, uids, parts, states, uploads",
        corpus.len() + extremes.len(),
    );
}

// ---------------------------------------------------------------------------------------------
// Credentials and tokens
// ---------------------------------------------------------------------------------------------

/// Turns on Dovecot's pre-login rawlog (`imap-login -R`), which records LOGIN itself.
const PRELOGIN_RAWLOG: &str = "service imap-login {\n  executable = imap-login -R rawlogs\n}\n";

/// Makes the directory the pre-login rawlog writes to.
fn prelogin_rawlog_dir(dovecot: &Dovecot) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let dir = dovecot.dir().join("run").join("login").join("rawlogs");
    std::fs::create_dir_all(&dir).expect("pre-login rawlog dir");
    let login = dovecot.dir().join("run").join("login");
    let owner = std::fs::metadata(&login).expect("login dir");
    // The login processes run as the owner of their directory (dovenull under root).
    std::os::unix::fs::chown(&dir, Some(owner.uid()), Some(owner.gid())).ok();
    let probe = std::process::Command::new("sh")
        .arg("-c")
        .arg("id -u dovenull 2>/dev/null")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u32>().ok());
    if let Some(uid) = probe
        && owner.uid() == 0
    {
        std::os::unix::fs::chown(&dir, Some(uid), None).ok();
    }
    dir
}

/// Every command of every pre-login session recorded in `dir`.
fn prelogin_commands(dir: &std::path::Path) -> Result<Vec<WireCommand>, String> {
    RawlogCursor::new_from_start(dir).take()
}

#[tokio::test]
async fn hostile_credentials_tokens_and_tickets() {
    let corpus = hostile::corpus();
    // Users whose passwords are hostile but legal: they must be able to log in.
    let hostile_passwords: Vec<(String, String)> = corpus
        .iter()
        .filter_map(|p| p.text.as_deref())
        .filter(|t| {
            !t.is_empty()
                // Dovecot's passwd-file cannot hold ':' or line breaks; a tab did not survive
                // it either (the LOGIN carried it exactly), so controls are left out.
                && !t.chars().any(|c| c == ':' || c.is_control())
                && t.trim() == *t
                && t.chars().count() <= 200
        })
        .enumerate()
        .map(|(i, t)| (format!("pw{i}"), t.to_owned()))
        .collect();
    let users = hostile_passwords.clone();
    // Opted out of Dovecot's auth penalty: about 240 hostile credentials fail on purpose, and
    // under the penalty every later login would wait 15 s (brute_force.rs tests the penalty).
    let opts = DovecotOptions {
        auth_penalty: false,
        extra_config: PRELOGIN_RAWLOG.to_owned(),
        ..DovecotOptions::default()
    };
    let mut h = Harness::start_with(
        opts,
        Link::Plain,
        |c| {
            c.login_failures_per_user = 100_000;
            c.login_failures_per_ip = 100_000;
        },
        move |d| {
            for (user, password) in &users {
                d.add_user(user, password);
            }
        },
    )
    .await;
    let prelogin = prelogin_rawlog_dir(&h.bridge.dovecot);
    let baseline = prelogin_commands(&prelogin).map(|c| c.len()).unwrap_or(0);

    // Logins: each hostile value as the user name, then as the password, many at a time
    // (Dovecot answers each failed login after its 2 s auth_failure_delay).
    let mut expected: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut attempts: Vec<(&'static str, &Payload, Rule, Vec<u8>)> = Vec::new();
    for p in &corpus {
        let text = p.text.as_deref();
        let ok = |max: usize| {
            text.is_some_and(|t| {
                (1..=max).contains(&t.chars().count()) && !t.contains(['\0', '\r', '\n'])
            })
        };
        let user_ok = ok(255);
        let pass_ok = ok(1024);
        attempts.push((
            "login username",
            p,
            rule_if(user_ok),
            [b"{\"username\":", &p.json[..], b",\"password\":\"x\"}"].concat(),
        ));
        attempts.push((
            "login password",
            p,
            rule_if(pass_ok),
            [b"{\"username\":\"nobody\",\"password\":", &p.json[..], b"}"].concat(),
        ));
        if user_ok {
            expected.push((p.bytes.clone(), b"x".to_vec()));
        }
        if pass_ok {
            expected.push((b"nobody".to_vec(), p.bytes.clone()));
        }
    }
    let http = h.bridge.http.clone();
    let url = h.bridge.url("/v1/auth/login");
    for chunk in attempts.chunks(120) {
        let replies = futures::future::join_all(chunk.iter().map(|(_, _, _, body)| {
            let req = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone());
            async move {
                let res = tokio::time::timeout(REQUEST_TIMEOUT, req.send())
                    .await
                    .ok()?
                    .ok()?;
                let status = res.status().as_u16();
                let body = res.bytes().await.ok()?.to_vec();
                let code = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_owned));
                Some(Reply { status, code, body })
            }
        }))
        .await;
        for ((field, p, rule, _), reply) in chunk.iter().zip(replies) {
            h.tried.insert((p.label.clone(), field));
            let what = format!("{field} <- {} [{}]", p.label, show_bytes(&p.bytes));
            let Some(reply) = reply else {
                h.fail(format!("{what}: no answer (hang or transport error)"));
                continue;
            };
            let good = match rule {
                Rule::Reach => reply.status == 401,
                _ => reply.status == 400 || reply.status == 413,
            };
            if !good {
                h.fail(format!("{what}: {}", reply.show()));
            }
        }
    }
    // Hostile but legal passwords log in, the token works, and logging out works.
    let bridge = &h.bridge;
    let check_user = |user: &str, password: &str| {
        let (user, password) = (user.to_owned(), password.to_owned());
        async move {
            let res = bridge
                .request(Method::POST, "/v1/auth/login", None)
                .json(&serde_json::json!({"username": user, "password": password}))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            if status != 200 {
                return Err(format!(
                    "login with password [{}]: {status} {body}",
                    password.escape_debug()
                ));
            }
            let token = body["access_token"].as_str().unwrap_or_default().to_owned();
            let (status, _) = bridge.get_json(&token, "/v1/mailboxes").await;
            let res = bridge
                .request(Method::POST, "/v1/auth/logout", Some(&token))
                .send()
                .await;
            let logout = res.map(|r| r.status().as_u16()).ok();
            if status != 200 || logout != Some(204) {
                return Err(format!("{user}: mailboxes {status}, logout {logout:?}"));
            }
            Ok(())
        }
    };
    let mut outcomes = Vec::new();
    for chunk in hostile_passwords.chunks(40) {
        outcomes
            .extend(futures::future::join_all(chunk.iter().map(|(u, p)| check_user(u, p))).await);
    }
    for ((user, password), outcome) in hostile_passwords.iter().zip(outcomes) {
        expected.push((user.clone().into_bytes(), password.clone().into_bytes()));
        if let Err(e) = outcome {
            h.fail(e);
        }
    }
    // Exactly one login per attempt that reached the server: LOGIN with each value as one
    // string, or AUTHENTICATE PLAIN carrying exactly both.
    match prelogin_commands(&prelogin) {
        Err(e) => h.fail(format!("pre-login traffic is malformed IMAP: {e}")),
        Ok(commands) => {
            let commands = &commands[baseline.min(commands.len())..];
            let mut logins: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for cmd in commands {
                match cmd.verb.as_str() {
                    "LOGIN" => match cmd.args.as_slice() {
                        [u, p] if u.value().is_some() && p.value().is_some() => {
                            logins.push((
                                u.value().unwrap_or_default().to_vec(),
                                p.value().unwrap_or_default().to_vec(),
                            ));
                        }
                        _ => h.fail(format!(
                            "LOGIN with other than two arguments: {}",
                            cmd.show()
                        )),
                    },
                    // Where the server offers AUTH=PLAIN and SASL-IR (Dovecot), the bridge
                    // logs in with one AUTHENTICATE PLAIN: its base64 argument must decode
                    // to exactly NUL, the user name, NUL, the password.
                    "AUTHENTICATE" => match cmd.args.as_slice() {
                        [mechanism, response]
                            if mechanism.value() == Some(b"PLAIN".as_slice())
                                && !response.is_string() =>
                        {
                            use base64::Engine as _;
                            let decoded = base64::engine::general_purpose::STANDARD
                                .decode(response.value().unwrap_or_default());
                            let fields = match &decoded {
                                Ok(d) => d.split(|b| *b == 0).collect::<Vec<_>>(),
                                Err(_) => Vec::new(),
                            };
                            match fields.as_slice() {
                                [[], u, p] => logins.push((u.to_vec(), p.to_vec())),
                                _ => h.fail(format!(
                                    "AUTHENTICATE PLAIN whose response is not NUL user NUL password: {}",
                                    cmd.show()
                                )),
                            }
                        }
                        _ => h.fail(format!(
                            "AUTHENTICATE other than PLAIN with its initial response: {}",
                            cmd.show()
                        )),
                    },
                    "CAPABILITY" | "ID" | "LOGOUT" => {}
                    _ => h.fail(format!("unexpected pre-login command: {}", cmd.show())),
                }
            }
            let mut want = expected.clone();
            want.sort();
            logins.sort();
            let missing: Vec<String> = want
                .iter()
                .filter(|w| !logins.contains(w))
                .map(|(u, p)| format!("({}, {})", show_bytes(u), show_bytes(p)))
                .collect();
            let extra: Vec<String> = logins
                .iter()
                .filter(|l| !want.contains(l) && l.0 != USER.as_bytes())
                .map(|(u, p)| format!("({}, {})", show_bytes(u), show_bytes(p)))
                .collect();
            if !missing.is_empty() || !extra.is_empty() {
                h.fail(format!(
                    "LOGIN commands do not match the attempts: missing {missing:?}, unexpected {extra:?}"
                ));
            }
            h.notes.push(format!(
                "{} LOGIN and AUTHENTICATE PLAIN commands checked in the pre-login rawlog",
                logins.len()
            ));
        }
    }
    let _ = h.rawlog.take();

    // Bearer tokens: refused, and nothing reaches the server.
    for p in &corpus {
        if reqwest::header::HeaderValue::from_bytes(&p.bytes).is_err() {
            continue;
        }
        let case = Case::new("bearer token", p, Rule::Refuse);
        let mut req = Req::get("/v1/mailboxes").anonymous();
        req.headers
            .push(("authorization", [b"Bearer ".as_slice(), &p.bytes].concat()));
        h.probe(case, req).await;
    }
    h.finish("credentials", corpus.len());
}

// ---------------------------------------------------------------------------------------------
// Event streams
// ---------------------------------------------------------------------------------------------

/// Opens an event stream and, when it opens, reads its first event (or waits briefly), then
/// closes it and waits for the user's connections to settle.
async fn probe_events(
    h: &mut Harness,
    case: Case<'_>,
    req: Req,
    settle_to: usize,
) -> Option<Reply> {
    let path = req.path.clone();
    if path.len() > MAX_CLIENT_URL {
        let reply = h.send(req).await?;
        h.judge(&case, &reply, &path);
        return Some(reply);
    }
    let mut builder = h
        .bridge
        .http
        .request(req.method.clone(), h.bridge.url(&req.path));
    if req.bearer {
        builder = builder.bearer_auth(&h.token);
    }
    for (name, value) in &req.headers {
        builder = builder.header(*name, reqwest::header::HeaderValue::from_bytes(value).ok()?);
    }
    let sent = tokio::time::timeout(REQUEST_TIMEOUT, builder.send()).await;
    let res = match sent {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => {
            h.fail(format!(
                "{} <- {}: transport error {e}",
                case.field, case.payload.label
            ));
            return None;
        }
        Err(_) => {
            h.fail(format!(
                "{} <- {}: events did not answer (hang)",
                case.field, case.payload.label
            ));
            return None;
        }
    };
    let status = res.status().as_u16();
    let body = if status == 200 {
        use futures::StreamExt;
        let mut stream = res.bytes_stream();
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await {
            got.extend_from_slice(&chunk);
            if got.windows(6).any(|w| w == b"event:") && got.ends_with(b"\n\n") {
                break;
            }
        }
        got
    } else {
        res.bytes().await.map(|b| b.to_vec()).unwrap_or_default()
    };
    let code = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned));
    let reply = Reply { status, code, body };
    if status != 400 && status != 401 {
        for _ in 0..250 {
            if h.bridge.dovecot.connections(USER) == settle_to {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    h.judge(&case, &reply, &path);
    Some(reply)
}

fn event_id(positions: &Value) -> String {
    format!(
        "e1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(positions.to_string())
    )
}

#[tokio::test]
async fn hostile_event_subscriptions() {
    let mut h = Harness::start(
        Link::Tls,
        "",
        |_| {},
        |d| {
            d.deliver_many(USER, "INBOX", corpus::bulk(3, 1));
        },
    )
    .await;
    let corpus = hostile::corpus();
    let (_, list) = h
        .bridge
        .get_json(&h.token, "/v1/mailboxes/INBOX/messages")
        .await;
    let v = list["uid_validity"].as_u64().expect("uid_validity");
    let state = list["state"].as_str().expect("state").to_owned();
    // A stream kept open on INBOX, so that every probe on INBOX shares its watcher.
    let keeper = h.bridge.events(&h.token, &["INBOX"], None).await;
    h.bridge
        .wait_for_connections(2, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = h.rawlog.take();
    let watch: &'static [&'static str] = &["IDLE", "DONE", "LOGOUT"];

    for p in &corpus {
        let name = query_text(p);
        let valid = hostile::valid_mailbox(name.as_deref());
        let case = Case::new("events mailbox", p, mailbox_rule(name.as_deref()))
            .wire(match &name {
                Some(name) if valid => Wire::Mailbox(name.clone()),
                _ => Wire::Unchecked,
            })
            .writes(watch, &[]);
        probe_events(
            &mut h,
            case,
            Req::get(format!("/v1/events?mailbox={}", p.url())),
            2,
        )
        .await;

        let case = Case::new("events ticket", p, Rule::Refuse);
        probe_events(
            &mut h,
            case,
            Req::get(format!("/v1/events?ticket={}", p.url())).anonymous(),
            2,
        )
        .await;

        if reqwest::header::HeaderValue::from_bytes(&p.bytes).is_ok() {
            let case = Case::new("Last-Event-ID", p, Rule::Either).writes(watch, &[]);
            let req = Req::get("/v1/events?mailbox=INBOX").header("last-event-id", p.bytes.clone());
            if let Some(reply) = probe_events(&mut h, case, req, 2).await
                && reply.status != 200
            {
                h.fail(format!("Last-Event-ID <- {}: {}", p.label, reply.show()));
            }
        }
    }
    // Ids in the bridge's own format carrying hostile names and extreme positions.
    let ids: Vec<(String, String)> = vec![
        (
            "own state".into(),
            event_id(&serde_json::json!({"INBOX": state})),
        ),
        (
            "modseq max".into(),
            event_id(
                &serde_json::json!({"INBOX": format!("s1.{v}.18446744073709551615.4294967295")}),
            ),
        ),
        (
            "modseq zero".into(),
            event_id(&serde_json::json!({"INBOX": format!("s1.{v}.0.1")})),
        ),
        (
            "other validity".into(),
            event_id(&serde_json::json!({"INBOX": "s1.4294967295.1.1"})),
        ),
        (
            "within, extreme".into(),
            event_id(
                &serde_json::json!({"INBOX": format!("p1.{v}.0.1.18446744073709551615.4294967295.2.4294967295")}),
            ),
        ),
        (
            "within, reversed".into(),
            event_id(&serde_json::json!({"INBOX": format!("p1.{v}.9.9.1.1.2.1")})),
        ),
        (
            "hostile key".into(),
            event_id(
                &serde_json::json!({"INBOX\r\nb1 LOGOUT": format!("s1.{v}.1.1"), "INBOX": format!("s1.{v}.1.1")}),
            ),
        ),
        (
            "quoted key".into(),
            event_id(&serde_json::json!({"\" DELETE \"INBOX": format!("s1.{v}.1.1")})),
        ),
        (
            "not json".into(),
            format!(
                "e1.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("{\"INBOX\":")
            ),
        ),
        ("huge".into(), format!("e1.{}", "A".repeat(20_000))),
    ];
    let ids: Vec<Payload> = ids
        .into_iter()
        .map(|(label, id)| Payload {
            label: format!("event id: {label}"),
            text: Some(id.clone()),
            bytes: id.clone().into_bytes(),
            json: serde_json::to_vec(&id).expect("json"),
            number: None,
        })
        .collect();
    for p in &ids {
        let case = Case::new("Last-Event-ID", p, Rule::Either).writes(watch, &[]);
        let req = Req::get("/v1/events?mailbox=INBOX").header("last-event-id", p.bytes.clone());
        if let Some(reply) = probe_events(&mut h, case, req, 2).await
            && reply.status != 200
        {
            h.fail(format!("Last-Event-ID <- {}: {}", p.label, reply.show()));
        }
    }
    drop(keeper);
    h.finish("events", corpus.len() + ids.len());
}

/// Whether `token` is what the bridge takes as an access token: RFC 6750 `b64token`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && token.len() <= 16384
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[tokio::test]
async fn hostile_access_tokens_and_user_names_reach_the_server_only_inside_one_authenticate() {
    let corpus = hostile::corpus();
    let provider = common::oauth::Introspection::start();
    // Opted out of Dovecot's auth penalty, as for passwords: about 250 logins fail on purpose.
    let opts = DovecotOptions {
        auth_penalty: false,
        extra_config: PRELOGIN_RAWLOG.to_owned(),
        oauth2_introspection: Some(provider.url()),
        ..DovecotOptions::default()
    };
    let mut h = Harness::start_with(
        opts,
        Link::Plain,
        |c| {
            c.login_failures_per_user = 100_000;
            c.login_failures_per_ip = 100_000;
        },
        |_| {},
    )
    .await;
    let prelogin = prelogin_rawlog_dir(&h.bridge.dovecot);
    let baseline = prelogin_commands(&prelogin).map(|c| c.len()).unwrap_or(0);

    // Each hostile value as the access token of a user, and as the user name of a token.
    const SHAPED: &str = "ya29.shaped-like-a-token";
    let mut expected: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut attempts: Vec<(&'static str, &Payload, bool, Vec<u8>)> = Vec::new();
    for p in &corpus {
        let text = p.text.as_deref();
        let token_ok = text.is_some_and(is_b64token);
        let user_ok = text.is_some_and(|t| {
            (1..=255).contains(&t.chars().count()) && !t.chars().any(char::is_control)
        });
        attempts.push((
            "access_token",
            p,
            token_ok,
            [
                b"{\"username\":\"nobody\",\"access_token\":",
                &p.json[..],
                b"}",
            ]
            .concat(),
        ));
        attempts.push((
            "username with a token",
            p,
            user_ok,
            [
                b"{\"username\":",
                &p.json[..],
                b",\"access_token\":\"",
                SHAPED.as_bytes(),
                b"\"}",
            ]
            .concat(),
        ));
        // Dovecot drops a connection whose SASL response is over about 8 KB before its rawlog
        // records it (the bridge answers 401, checked below); a token of 6,000 bytes fits.
        if token_ok && p.bytes.len() <= 6000 {
            expected.push((b"nobody".to_vec(), p.bytes.clone()));
        }
        if user_ok {
            expected.push((p.bytes.clone(), SHAPED.as_bytes().to_vec()));
        }
    }
    let http = h.bridge.http.clone();
    let url = h.bridge.url("/v1/auth/login");
    for chunk in attempts.chunks(120) {
        let replies = futures::future::join_all(chunk.iter().map(|(_, _, _, body)| {
            let req = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone());
            async move {
                let res = tokio::time::timeout(REQUEST_TIMEOUT, req.send())
                    .await
                    .ok()?
                    .ok()?;
                let status = res.status().as_u16();
                let body = res.bytes().await.ok()?.to_vec();
                let code = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_owned));
                Some(Reply { status, code, body })
            }
        }))
        .await;
        for ((field, p, reaches, _), reply) in chunk.iter().zip(replies) {
            h.tried.insert((p.label.clone(), field));
            let what = format!("{field} <- {} [{}]", p.label, show_bytes(&p.bytes));
            let Some(reply) = reply else {
                h.fail(format!("{what}: no answer (hang or transport error)"));
                continue;
            };
            let good = if *reaches {
                reply.status == 401
            } else {
                reply.status == 400 || reply.status == 413
            };
            if !good {
                h.fail(format!("{what}: {}", reply.show()));
            }
            let echoed = p
                .text
                .as_deref()
                .is_some_and(|t| t.len() >= 8 && String::from_utf8_lossy(&reply.body).contains(t));
            if *field == "access_token" && echoed {
                h.fail(format!("{what}: the token is echoed: {}", reply.show()));
            }
        }
    }

    // Exactly one AUTHENTICATE per attempt that reached the server, whose one base64 argument
    // decodes to exactly the user and token it was given; nothing else.
    let port = h.bridge.dovecot.imap_addr().port();
    match prelogin_commands(&prelogin) {
        Err(e) => h.fail(format!("pre-login traffic is malformed IMAP: {e}")),
        Ok(commands) => {
            let mut seen: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for cmd in &commands[baseline.min(commands.len())..] {
                match (cmd.verb.as_str(), cmd.args.as_slice()) {
                    ("AUTHENTICATE", [mechanism, response])
                        if mechanism.value() == Some(b"OAUTHBEARER".as_slice())
                            && !response.is_string() =>
                    {
                        use base64::Engine as _;
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(response.value().unwrap_or_default())
                            .unwrap_or_default();
                        match parse_oauthbearer(&decoded, port) {
                            Some(pair) => seen.push(pair),
                            None => h.fail(format!(
                                "an OAUTHBEARER response of another shape: {}",
                                String::from_utf8_lossy(&decoded).escape_debug()
                            )),
                        }
                    }
                    // The answer to the server's error challenge: a lone %x01.
                    ("SASL", [answer]) if answer.value() == Some(b"AQ==".as_slice()) => {}
                    ("AUTHENTICATE", [mechanism, _])
                        if mechanism.value() == Some(b"PLAIN".as_slice()) => {}
                    ("CAPABILITY" | "ID" | "LOGOUT", _) => {}
                    _ => h.fail(format!("unexpected pre-login command: {}", cmd.show())),
                }
            }
            let mut want = expected.clone();
            want.sort();
            seen.retain(|(_, token)| token.len() <= 6000);
            seen.sort();
            if want != seen {
                let show = |pairs: Vec<&(Vec<u8>, Vec<u8>)>| -> Vec<String> {
                    pairs
                        .iter()
                        .map(|(u, t)| format!("({}, {} bytes)", show_bytes(u), t.len()))
                        .collect()
                };
                let missing = show(want.iter().filter(|w| !seen.contains(w)).collect());
                let extra = show(seen.iter().filter(|s| !want.contains(s)).collect());
                h.fail(format!(
                    "AUTHENTICATE commands do not match the attempts: missing {missing:?}, unexpected {extra:?}"
                ));
            }
            h.notes.push(format!(
                "{} AUTHENTICATE OAUTHBEARER commands checked in the pre-login rawlog",
                seen.len()
            ));
        }
    }
    h.finish("access tokens", corpus.len());
}

/// The user and token of an OAUTHBEARER response to the bridge's upstream at 127.0.0.1:`port`,
/// if it has exactly that shape (RFC 7628, the GS2 header's user escaped as RFC 5801 says).
fn parse_oauthbearer(decoded: &[u8], port: u16) -> Option<(Vec<u8>, Vec<u8>)> {
    let rest = decoded.strip_prefix(b"n,a=")?;
    let comma = rest.iter().position(|b| *b == b',')?;
    let escaped = String::from_utf8(rest[..comma].to_vec()).ok()?;
    let user = escaped.replace("=2C", ",").replace("=3D", "=");
    let fields = rest[comma + 1..].strip_prefix(b"\x01")?;
    let expected_host = format!("host=127.0.0.1\x01port={port}\x01auth=Bearer ");
    let token_and_end = fields.strip_prefix(expected_host.as_bytes())?;
    let token = token_and_end.strip_suffix(b"\x01\x01")?;
    if token.contains(&1) {
        return None;
    }
    Some((user.into_bytes(), token.to_vec()))
}
