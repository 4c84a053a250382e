//! The README's walk-through ("Try it with curl"), run exactly as written against a bridge and
//! held to what the README says each step shows.
//!
//! The text is the README's own, taken from the `sh` blocks of its "Try it with curl" section;
//! the one change made to it is the bridge's address in its `B=` line, as `scripts/demo` prints
//! it. [`run`] runs that text with bash (`-eu -o pipefail`) in a scratch directory that holds
//! the repository's `examples/` (the walk-through uploads `examples/draft.eml` and saves an
//! attachment where it runs), with `B` pointing at a recording proxy in front of the bridge. It
//! fails when bash fails or writes to stderr, when any response is not 2xx or is a problem
//! report, or when the number of requests is not the number of `curl` commands in the text
//! (each curl command makes one request on a connection of its own). [`check`] then holds every
//! answer to what the README's text and comments promise for it: the invoice found by its
//! subject has an attachment, the file saved is that attachment under the name the message
//! gives it, the draft shows up under `created`, and so on.
//!
//! Three runs use it: `tests/readme.rs` on the demo's mail (`demo_mail.rs`) on a private
//! Dovecot, the demo's smoke run (`scripts/demo --smoke`, part of `scripts/test`), and
//! `tests/deploy.rs` on the compose demo's Dovecot and mail.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The README, as this build was compiled with it.
const README: &str = include_str!("../../README.md");
/// The heading of the walk-through's section.
const SECTION: &str = "## Try it with curl";
/// The walk-through's first line of code, naming the bridge's address.
const BASE_LINE: &str = "B=http://127.0.0.1:8080";
/// Longest time the whole walk-through may take.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Most bytes kept of one request or one response; the walk-through's are far smaller.
const MAX_KEPT: usize = 16 * 1024 * 1024;
/// The mailbox the walk-through creates, and its name as one path segment.
const NEW_MAILBOX: &str = "Projekte/Überblick";
const NEW_MAILBOX_SEGMENT: &str = "Projekte%2F%C3%9Cberblick";
/// The subject of `examples/draft.eml`, decoded.
const DRAFT_SUBJECT: &str = "Überblick für Donnerstag";

/// The walk-through as the README writes it: its `sh` blocks, in order, one after the other.
pub fn script() -> Result<String, String> {
    let start = README
        .lines()
        .position(|line| line == SECTION)
        .ok_or_else(|| format!("README.md has no {SECTION:?} section"))?;
    let mut blocks = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in README.lines().skip(start + 1) {
        match &mut block {
            None if line.starts_with("## ") => break,
            None if line == "```sh" => block = Some(Vec::new()),
            None => {}
            Some(lines) if line == "```" => {
                blocks.push(lines.join("\n"));
                block = None;
            }
            Some(lines) => lines.push(line),
        }
    }
    if blocks.is_empty() {
        return Err(format!("README.md's {SECTION:?} section has no sh block"));
    }
    let script = blocks.join("\n\n") + "\n";
    let base_lines = script.lines().filter(|l| *l == BASE_LINE).count();
    if base_lines != 1 {
        return Err(format!(
            "the walk-through should set the bridge's address once, as {BASE_LINE:?}; it does {base_lines} times"
        ));
    }
    Ok(script)
}

/// The walk-through for a bridge at `base` (`http://host:port`), as the demo prints it.
pub fn script_for(base: &str) -> Result<String, String> {
    Ok(script()?.replacen(BASE_LINE, &format!("B={base}"), 1))
}

/// One request the walk-through made and its answer, as the recording proxy saw them.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// The request's method.
    pub method: String,
    /// The request's target: path and query, as sent.
    pub target: String,
    /// The request's body.
    pub request_body: Vec<u8>,
    /// The final response's status; `None` when no response head came back.
    pub status: Option<u16>,
    /// The final response's header fields, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The response's body, without chunked framing.
    pub body: Vec<u8>,
}

impl Exchange {
    /// Reads one connection's bytes: a request, and interim responses before the final one.
    fn parse(request: &[u8], response: &[u8]) -> Self {
        let mut exchange = Exchange::default();
        if let Some((head, body)) = split_head(request) {
            let mut words = head.lines().next().unwrap_or_default().split(' ');
            exchange.method = words.next().unwrap_or_default().to_owned();
            exchange.target = words.next().unwrap_or_default().to_owned();
            let length = content_length(&parse_fields(&head)).unwrap_or(body.len());
            exchange.request_body = body[..length.min(body.len())].to_vec();
        }
        let mut rest = response;
        while let Some((head, body)) = split_head(rest) {
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u16>().ok());
            rest = body;
            // Interim 1xx heads (100 Continue) come before the final one.
            if status.is_some_and(|s| (100..200).contains(&s)) {
                continue;
            }
            exchange.status = status;
            exchange.headers = parse_fields(&head);
            exchange.body = if exchange
                .header("transfer-encoding")
                .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
            {
                dechunk(body)
            } else {
                let length = content_length(&exchange.headers).unwrap_or(body.len());
                body[..length.min(body.len())].to_vec()
            };
            break;
        }
        exchange
    }

    /// The target's path.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(path, _)| path)
    }

    /// The target's query, empty without one.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, query)| query)
    }

    /// The value of the response's header field `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The response's media type, lower case, without parameters.
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// A success: 2xx, and not a problem report.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
            && self.media_type().as_deref() != Some("application/problem+json")
    }

    /// The response's body as JSON; `null` when it is none.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// `METHOD target`.
    pub fn request(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

/// What a successful run did.
#[derive(Debug)]
pub struct Report {
    /// Every request, in the order the connections were made.
    pub exchanges: Vec<Exchange>,
    /// What the walk-through printed.
    pub stdout: String,
    /// The files the walk-through left in the directory it ran in, by name.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Runs the README's walk-through against the bridge at `base` (`http://127.0.0.1:port`).
pub fn run(base: &str) -> Result<Report, String> {
    run_script(base, &script()?)
}

/// Runs `script`, a walk-through that sets `B` as [`BASE_LINE`] does, against the bridge at
/// `base`, and checks that every request it made succeeded. Blocks until the script ends.
pub fn run_script(base: &str, script: &str) -> Result<Report, String> {
    let upstream: SocketAddr = base
        .strip_prefix("http://")
        .and_then(|rest| rest.trim_end_matches('/').parse().ok())
        .ok_or_else(|| format!("{base} is not http://<ip>:<port>"))?;
    let expected = curl_commands(script);
    let proxy = Recorder::start(upstream)?;
    let script = script.replacen(BASE_LINE, &format!("B=http://{}", proxy.addr), 1);
    let dir = tempfile::tempdir().map_err(|e| format!("scratch directory: {e}"))?;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::os::unix::fs::symlink(&examples, dir.path().join("examples"))
        .map_err(|e| format!("cannot link {}: {e}", examples.display()))?;
    let outcome = run_bash(dir.path(), &script);
    let exchanges = proxy.stop();
    let (stdout, stderr) = outcome?;
    if let Some(failed) = exchanges.iter().find(|e| !e.succeeded()) {
        return Err(format!(
            "the walk-through's request `{}` was answered {} ({}): {}",
            failed.request(),
            failed
                .status
                .map_or_else(|| "with nothing".to_owned(), |s| s.to_string()),
            failed.media_type().as_deref().unwrap_or("no content type"),
            excerpt(&failed.body)
        ));
    }
    if exchanges.len() != expected {
        return Err(format!(
            "the walk-through has {expected} curl commands but made {} requests: {:?}",
            exchanges.len(),
            exchanges.iter().map(Exchange::request).collect::<Vec<_>>()
        ));
    }
    if !stderr.trim().is_empty() {
        return Err(format!(
            "the walk-through wrote to stderr:\n{}",
            excerpt(stderr.as_bytes())
        ));
    }
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir.path()).map_err(|e| format!("scratch directory: {e}"))? {
        let entry = entry.map_err(|e| format!("scratch directory: {e}"))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let content = std::fs::read(entry.path()).map_err(|e| format!("saved file: {e}"))?;
            files.insert(entry.file_name().to_string_lossy().into_owned(), content);
        }
    }
    Ok(Report {
        exchanges,
        stdout,
        files,
    })
}

/// What the walk-through showed that depends on the mail it ran on, for the caller to check.
#[derive(Debug)]
pub struct Shown {
    /// The invoice found by its subject, as the message view answered it.
    pub invoice: Value,
    /// The name the attachment was saved under, and the saved bytes.
    pub saved_file: (String, Vec<u8>),
    /// The UID the draft got in Drafts.
    pub draft_uid: u64,
}

/// Holds every answer of `report` to what the README says its step shows. Every request must
/// belong to one of the steps below, and every step must have been taken: a step added to the
/// README needs its promise checked here, and one taken out must go from here too.
pub fn check(report: &Report) -> Result<Shown, String> {
    let mut c = Claims::new(&report.exchanges);
    const INBOX: &str = "/v1/mailboxes/INBOX/messages";
    const DRAFTS: &str = "/v1/mailboxes/Drafts/messages";

    for ex in c.step("log in", "POST", |p, _| p == "/v1/auth/login") {
        let body = ex.json();
        c.claim(
            ex,
            body["access_token"].is_string() && body["token_type"] == "Bearer",
            "a bearer token",
        );
    }

    for ex in c.step("list the mailboxes", "GET", |p, q| {
        p == "/v1/mailboxes" && q.is_empty()
    }) {
        let list = array(&ex.json()["mailboxes"]);
        let roles: BTreeSet<&str> = list
            .iter()
            .filter_map(|m| m["special_use"].as_str())
            .collect();
        c.claim(
            ex,
            ["inbox", "drafts", "trash"]
                .iter()
                .all(|r| roles.contains(r))
                && list
                    .iter()
                    .all(|m| m["total"].is_u64() && m["unseen"].is_u64()),
            "the folders with their roles (inbox, drafts, trash among them) and counts",
        );
    }

    let mut first_page: Vec<u64> = Vec::new();
    let mut cursor = None;
    for ex in c.step("list INBOX's first three messages", "GET", |p, q| {
        p == INBOX && q == "limit=3"
    }) {
        let page = ex.json();
        first_page = uids(&page);
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        c.claim(
            ex,
            first_page.len() == 3 && descending(&first_page) && cursor.is_some(),
            "three messages, newest first, and a next_cursor",
        );
    }
    for ex in c.step("list the next page", "GET", |p, q| {
        p == INBOX && q.starts_with("limit=3&cursor=")
    }) {
        let next = uids(&ex.json());
        c.claim(
            ex,
            ex.query().strip_prefix("limit=3&cursor=") == cursor.as_deref(),
            "the next_cursor the first page gave",
        );
        c.claim(
            ex,
            !next.is_empty()
                && descending(&next)
                && next.iter().all(|uid| first_page.iter().all(|f| uid < f)),
            "the messages that follow the first page",
        );
    }
    for ex in c.step("list unread mail by date", "GET", |p, q| {
        p == INBOX && q == "unseen=true&sort=date"
    }) {
        let messages = array(&ex.json()["messages"]);
        let dates: Vec<&str> = messages.iter().filter_map(|m| m["date"].as_str()).collect();
        c.claim(
            ex,
            !messages.is_empty()
                && messages.iter().all(|m| !has_flag(m, "\\Seen"))
                && dates.windows(2).all(|w| w[0] >= w[1]),
            "unread messages only, the latest Date header first",
        );
    }
    for ex in c.step("filter by sender and day", "GET", |p, q| {
        p == INBOX && q == "from=M%C3%BCller&since=2024-01-01"
    }) {
        let messages = array(&ex.json()["messages"]);
        c.claim(
            ex,
            !messages.is_empty()
                && messages.iter().all(|m| {
                    array(&m["from"]).iter().any(|a| {
                        a["name"].as_str().unwrap_or_default().contains("Müller")
                            || a["address"].as_str().unwrap_or_default().contains("Müller")
                    }) && m["received_at"].as_str() >= Some("2024-01-01")
                }),
            "messages from Müller, received since 2024-01-01",
        );
    }

    const THREADS: &str = "/v1/mailboxes/INBOX/threads";
    for ex in c.step("list the conversations", "GET", |p, q| {
        p == THREADS && q == "limit=3"
    }) {
        let threads = array(&ex.json()["threads"]);
        let latest: Vec<u64> = threads
            .iter()
            .filter_map(|t| t["latest"]["uid"].as_u64())
            .collect();
        c.claim(
            ex,
            (1..=3).contains(&threads.len())
                && latest.len() == threads.len()
                && descending(&latest)
                && threads.iter().all(|t| {
                    let listed = numbers(&t["uids"]);
                    t["thread_id"].is_string()
                        && listed.iter().max() == t["latest"]["uid"].as_u64().as_ref()
                        && t["messages"].as_u64()
                            == Some((listed.len() + array(&t["sent_uids"]).len()) as u64)
                }),
            "up to three conversations, newest first by their latest message, each with its id, \
             count and latest summary",
        );
    }
    let mut newest_thread: Option<(String, Vec<u64>)> = None;
    for ex in c.step("take the newest conversation's id", "GET", |p, q| {
        p == THREADS && q == "limit=1"
    }) {
        let threads = array(&ex.json()["threads"]);
        newest_thread = threads
            .first()
            .and_then(|t| Some((t["thread_id"].as_str()?.to_owned(), numbers(&t["uids"]))));
        c.claim(
            ex,
            threads.len() == 1 && newest_thread.is_some(),
            "one conversation with its thread_id",
        );
    }
    let (thread_id, thread_uids) = newest_thread.unwrap_or_default();
    for ex in c.step("open the conversation", "GET", |p, q| {
        p == format!("{THREADS}/{thread_id}") && q.is_empty()
    }) {
        let thread = ex.json();
        let messages = array(&thread["messages"]);
        let uids: Vec<u64> = messages.iter().filter_map(|m| m["uid"].as_u64()).collect();
        c.claim(
            ex,
            thread["thread_id"] == thread_id.as_str()
                && uids == thread_uids
                && messages.first().is_some_and(|m| m["depth"] == 0)
                && messages.iter().all(|m| m["mailbox"] == "INBOX"),
            "the conversation's messages in reading order, as the list had them",
        );
    }

    let mut invoice_uid = None;
    let mut invoice_subject = String::new();
    for ex in c.step("find the invoice by its subject", "GET", |p, q| {
        p == INBOX && q == "subject=Invoice&limit=1"
    }) {
        let messages = array(&ex.json()["messages"]);
        let found = messages.first().cloned().unwrap_or_default();
        invoice_uid = found["uid"].as_u64();
        invoice_subject = found["subject"].as_str().unwrap_or_default().to_owned();
        c.claim(
            ex,
            messages.len() == 1
                && invoice_subject.starts_with("Invoice")
                && found["has_attachments"] == true,
            "one message: an invoice with an attachment",
        );
    }
    let invoice = format!("{INBOX}/{}", invoice_uid.unwrap_or(0));
    let mut view = Value::Null;
    let mut attachment: Option<(String, u64)> = None;
    for ex in c.step("open the invoice", "GET", |p, q| {
        p == invoice && q.is_empty()
    }) {
        view = ex.json();
        let second = array(&view["attachments"])
            .into_iter()
            .find(|a| a["part_id"] == "2");
        attachment = second
            .as_ref()
            .and_then(|a| Some((a["filename"].as_str()?.to_owned(), a["size"].as_u64()?)));
        c.claim(
            ex,
            !array(&view["headers"]).is_empty()
                && view["text"].is_string()
                && view.get("html").is_some()
                && attachment.is_some(),
            "its headers, text, html and attachments, part 2 among them with a file name",
        );
    }
    let mut saved_file = (String::new(), Vec::new());
    for ex in c.step("save the invoice's attachment", "GET", |p, q| {
        p == format!("{invoice}/attachments/2") && q.is_empty()
    }) {
        let Some((name, size)) = &attachment else {
            continue;
        };
        c.claim(
            ex,
            ex.header("content-disposition")
                .is_some_and(|d| d.contains(&format!("filename=\"{name}\""))),
            &format!("the file name {name:?}"),
        );
        c.claim(
            ex,
            ex.body.len() as u64 == *size,
            &format!("the {size} bytes the message view announced"),
        );
        let saved = report.files.get(name);
        c.claim(
            ex,
            saved == Some(&ex.body) && report.files.len() == 1,
            &format!(
                "to be saved as {name:?} and nothing else; the walk-through left {:?}",
                report.files.keys().collect::<Vec<_>>()
            ),
        );
        saved_file = (name.clone(), saved.cloned().unwrap_or_default());
    }
    for ex in c.step("read the invoice's first KiB", "GET", |p, q| {
        p == format!("{invoice}/raw") && q.is_empty()
    }) {
        let head = String::from_utf8_lossy(&ex.body);
        // `bytes 0-<last>/<size>`: the first KiB, or all of a smaller message.
        let range = ex
            .header("content-range")
            .and_then(|r| r.strip_prefix("bytes 0-"))
            .and_then(|r| r.split_once('/'))
            .and_then(|(last, size)| {
                Some((last.parse::<usize>().ok()?, size.parse::<usize>().ok()?))
            });
        c.claim(
            ex,
            ex.status == Some(206)
                && range.is_some_and(|(last, size)| {
                    last + 1 == size.min(1024) && ex.body.len() == last + 1
                })
                && head.contains(&format!("Subject: {invoice_subject}")),
            "206 with the message's first 1,024 bytes (or all of a smaller one), its Subject field among them",
        );
    }

    let mut state = None;
    for ex in c.step("take Drafts' state", "GET", |p, q| {
        p == DRAFTS && q == "limit=1"
    }) {
        state = ex.json()["state"].as_str().map(str::to_owned);
        c.claim(ex, state.is_some(), "a state");
    }
    let mut draft_uid = None;
    for ex in c.step("store the draft", "POST", |p, q| {
        p == DRAFTS && q == "flags=%5CDraft"
    }) {
        let draft = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/draft.eml"))
            .unwrap_or_default();
        draft_uid = ex.json()["uid"].as_u64();
        c.claim(
            ex,
            ex.status == Some(201) && ex.request_body == draft && draft_uid.is_some(),
            "examples/draft.eml sent as it is, and 201 with the draft's UID",
        );
    }
    let draft = format!("{DRAFTS}/{}", draft_uid.unwrap_or(0));
    for ex in c.step("flag the draft", "PATCH", |p, _| {
        p == format!("{draft}/flags")
    }) {
        let flags = ex.json();
        c.claim(
            ex,
            has_flag(&flags, "\\Flagged") && has_flag(&flags, "\\Draft"),
            "the draft's flags: \\Draft and now \\Flagged",
        );
    }
    for ex in c.step("ask what changed in Drafts", "GET", |p, _| {
        p == "/v1/mailboxes/Drafts/changes"
    }) {
        c.claim(
            ex,
            state
                .as_deref()
                .is_some_and(|s| ex.query() == format!("since={s}")),
            "since the state taken before",
        );
        c.claim(
            ex,
            array(&ex.json()["created"])
                .iter()
                .any(|uid| uid.as_u64() == draft_uid),
            "the draft under \"created\"",
        );
    }
    for ex in c.step("create a folder", "POST", |p, _| p == "/v1/mailboxes") {
        c.claim(
            ex,
            ex.status == Some(201) && ex.json()["name"] == NEW_MAILBOX,
            &format!("201 with the name {NEW_MAILBOX:?}"),
        );
    }
    let mut copy_uid = None;
    for ex in c.step("copy the draft into it", "POST", |p, _| {
        p == "/v1/mailboxes/Drafts/copy"
    }) {
        let results = array(&ex.json()["results"]);
        copy_uid = results.first().and_then(|r| r["new_uid"].as_u64());
        c.claim(
            ex,
            results.len() == 1 && results[0]["uid"].as_u64() == draft_uid && copy_uid.is_some(),
            "the draft's UID and its copy's",
        );
    }
    let folder = format!("/v1/mailboxes/{NEW_MAILBOX_SEGMENT}");
    for ex in c.step("list the new folder", "GET", |p, _| {
        p == format!("{folder}/messages")
    }) {
        let messages = array(&ex.json()["messages"]);
        c.claim(
            ex,
            messages.len() == 1
                && messages[0]["uid"].as_u64() == copy_uid
                && messages[0]["subject"] == DRAFT_SUBJECT,
            &format!("the copy alone, subject {DRAFT_SUBJECT:?}"),
        );
    }
    for ex in c.step("delete the draft", "DELETE", |p, _| p == draft) {
        c.claim(ex, ex.status == Some(204), "204");
    }
    for ex in c.step("delete the folder", "DELETE", |p, _| p == folder) {
        c.claim(ex, ex.status == Some(204), "204");
    }
    for ex in c.step("log out", "POST", |p, _| p == "/v1/auth/logout") {
        c.claim(ex, ex.status == Some(204), "204");
    }

    c.finish()?;
    Ok(Shown {
        invoice: view,
        saved_file,
        draft_uid: draft_uid.unwrap_or(0),
    })
}

/// The promises [`check`] found broken, and which requests no step accounted for.
struct Claims<'r> {
    exchanges: &'r [Exchange],
    accounted: Vec<bool>,
    broken: Vec<String>,
}

impl<'r> Claims<'r> {
    fn new(exchanges: &'r [Exchange]) -> Self {
        Claims {
            exchanges,
            accounted: vec![false; exchanges.len()],
            broken: Vec::new(),
        }
    }

    /// The requests of step `what`: `method` on a target whose path and query `matches`. A
    /// step that made no request is a broken promise too.
    fn step(
        &mut self,
        what: &str,
        method: &str,
        matches: impl Fn(&str, &str) -> bool,
    ) -> Vec<&'r Exchange> {
        let mut taken = Vec::new();
        for (i, ex) in self.exchanges.iter().enumerate() {
            if !self.accounted[i] && ex.method == method && matches(ex.path(), ex.query()) {
                self.accounted[i] = true;
                taken.push(ex);
            }
        }
        if taken.is_empty() {
            self.broken
                .push(format!("the walk-through no longer does this: {what}"));
        }
        taken
    }

    /// Notes a broken promise when `kept` is false.
    fn claim(&mut self, ex: &Exchange, kept: bool, promise: &str) {
        if !kept {
            self.broken.push(format!(
                "`{}` should answer {promise}; it answered {}: {}",
                ex.request(),
                ex.status.unwrap_or(0),
                excerpt(&ex.body)
            ));
        }
    }

    fn finish(mut self) -> Result<(), String> {
        for (ex, accounted) in self.exchanges.iter().zip(&self.accounted) {
            if !accounted {
                self.broken.push(format!(
                    "`{}` belongs to no step that tests/common/walkthrough.rs checks",
                    ex.request()
                ));
            }
        }
        if self.broken.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the README's walk-through does not show what it says:\n- {}",
                self.broken.join("\n- ")
            ))
        }
    }
}

fn array(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

fn uids(page: &Value) -> Vec<u64> {
    array(&page["messages"])
        .iter()
        .filter_map(|m| m["uid"].as_u64())
        .collect()
}

fn numbers(list: &Value) -> Vec<u64> {
    array(list).iter().filter_map(Value::as_u64).collect()
}

fn descending(uids: &[u64]) -> bool {
    uids.windows(2).all(|w| w[0] > w[1])
}

/// Whether `value`'s `flags` hold `flag`.
fn has_flag(value: &Value, flag: &str) -> bool {
    array(&value["flags"]).iter().any(|f| f == flag)
}

/// The start of `bytes`, as text, for error messages.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(600).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// Runs `script` with bash in `dir`; stdout and stderr when it exits 0 in time.
fn run_bash(dir: &Path, script: &str) -> Result<(String, String), String> {
    let mut child = Command::new("bash")
        .args(["--noprofile", "--norc", "-eu", "-o", "pipefail", "-s"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(script.as_bytes())
        .map_err(|e| format!("cannot hand the walk-through to bash: {e}"))?;
    drop(stdin);
    let mut stdout_pipe = child.stdout.take().expect("piped stdout");
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let stdout = thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout_pipe.read_to_end(&mut out);
        out
    });
    let stderr = thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the walk-through took longer than {TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("cannot wait for bash: {e}")),
        }
    };
    let stdout = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    if status.success() {
        Ok((stdout, stderr))
    } else {
        Err(format!(
            "the walk-through failed ({status}); stderr:\n{stderr}\nstdout:\n{stdout}"
        ))
    }
}

/// How many curl commands `script` runs: the word `curl` in command position, outside comments.
fn curl_commands(script: &str) -> usize {
    script
        .lines()
        .map(|line| match line.find(" #") {
            Some(comment) => &line[..comment],
            None if line.trim_start().starts_with('#') => "",
            None => line,
        })
        .map(|code| {
            let bytes = code.as_bytes();
            code.match_indices("curl ")
                .filter(|(at, _)| *at == 0 || b" \t(;&|".contains(&bytes[at - 1]))
                .count()
        })
        .sum()
}

/// `bytes` split after its head (up to the blank line): the head as text, and what follows.
fn split_head(bytes: &[u8]) -> Option<(String, &[u8])> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((
        String::from_utf8_lossy(&bytes[..end]).into_owned(),
        &bytes[end + 4..],
    ))
}

/// The header fields of a head (its first line left out), names in lower case.
fn parse_fields(head: &str) -> Vec<(String, String)> {
    head.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect()
}

fn content_length(fields: &[(String, String)]) -> Option<usize> {
    fields
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
}

/// A chunked body's content (RFC 9112 §7.1); what arrived of it when it was cut short.
fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = bytes.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&bytes[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            break;
        }
        let take = size.min(bytes.len());
        out.extend_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
        bytes = bytes.strip_prefix(b"\r\n").unwrap_or(bytes);
    }
    out
}

/// The bytes of one proxied connection: what the client sent, what the bridge answered.
type Recording = Arc<Mutex<(Vec<u8>, Vec<u8>)>>;

/// A loopback HTTP proxy that forwards bytes untouched and keeps, per connection, what went
/// each way.
struct Recorder {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<Recording>>>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Recorder {
    fn start(upstream: SocketAddr) -> Result<Self, String> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("recording proxy: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("recording proxy: {e}"))?;
        let connections: Arc<Mutex<Vec<Recording>>> = Arc::default();
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = thread::spawn({
            let connections = connections.clone();
            let stopping = stopping.clone();
            move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let recording = Recording::default();
                    connections
                        .lock()
                        .expect("connections")
                        .push(recording.clone());
                    if let Ok(server) = TcpStream::connect(upstream) {
                        forward(client, server, recording);
                    }
                }
            }
        });
        Ok(Recorder {
            addr,
            connections,
            stopping,
            acceptor: Some(acceptor),
        })
    }

    /// Stops accepting and returns what was recorded. Every client has ended by then, and each
    /// byte is recorded before it is passed on, so nothing a client received is missing.
    fn stop(mut self) -> Vec<Exchange> {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.connections
            .lock()
            .expect("connections")
            .iter()
            .map(|recording| {
                let recording = recording.lock().expect("recording");
                Exchange::parse(&recording.0, &recording.1)
            })
            .collect()
    }
}

/// Copies both directions of one connection on two threads, recording each.
fn forward(client: TcpStream, server: TcpStream, recording: Recording) {
    let (Ok(client_reader), Ok(server_writer)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let requests = recording.clone();
    thread::spawn(move || {
        pump(client_reader, server_writer, |bytes| {
            keep(&mut requests.lock().expect("recording").0, bytes);
        });
    });
    thread::spawn(move || {
        pump(server, client, |bytes| {
            keep(&mut recording.lock().expect("recording").1, bytes);
        });
    });
}

/// Appends `bytes` to `kept`, up to [`MAX_KEPT`].
fn keep(kept: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_KEPT.saturating_sub(kept.len());
    kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// Copies `from` to `to` until either ends, showing each piece to `see` first; then passes the
/// end on.
fn pump(mut from: TcpStream, mut to: TcpStream, mut see: impl FnMut(&[u8])) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                see(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
