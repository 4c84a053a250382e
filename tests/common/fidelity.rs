//! Real-world message fidelity: every message of `tests/corpus/realworld/` read through the
//! bridge (header list, message view, every attachment downloaded) and compared field by field
//! with an independent decoder, Python's `email` package
//! (`tests/corpus/realworld/decode_with_python.py`).
//!
//! Where Python reads a message differently from mail clients, `overrides.json` says so per
//! message and field, with the reason and the right value; an override that Python no longer
//! needs (its own value already equals the override) is reported as a failure, so the file
//! cannot rot.
//!
//! Comparison rules (the bridge's documented shapes, not leniency):
//! * subjects, display names, header values and text bodies compare with runs of whitespace
//!   collapsed to one space and the ends trimmed (folding and line ends are not content);
//!   an absent and an empty value are the same;
//! * the HTML body is sanitised by the bridge, so only its presence and its visible text
//!   (tags removed, entities decoded) are compared;
//! * dates compare as RFC 3339 UTC; Python's zone-less dates count as UTC, as the bridge's do;
//! * attachments compare in order: file name, content type, the listed `size`, and the
//!   length and SHA-256 of the downloaded bytes;
//! * header names compare in order for the first 500 fields, which is what the bridge lists.
//!
//! [`check_corpus`] needs only a bridge URL, a token and a mailbox that holds exactly the
//! corpus in corpus order, so it runs against any IMAP server behind the bridge.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::tools::in_repo;

/// Where the corpus lives, below the crate root.
pub const CORPUS_DIR: &str = "tests/corpus/realworld";

/// Header fields the bridge lists at most (`imap_bridge::mail::content::MAX_HEADERS`).
const MAX_HEADERS: usize = 500;

/// One corpus message and what it should read as.
#[derive(Debug, Clone)]
pub struct CorpusMessage {
    /// File name, e.g. `rfc2047-b-utf8.eml`.
    pub file: String,
    /// What the file name says it tests: the part before the first `-`.
    pub category: String,
    /// The message as written to the mailbox.
    pub raw: Vec<u8>,
    /// Python's reading with the overrides applied.
    pub expected: Value,
    /// Fields taken from `overrides.json` rather than from Python.
    pub overridden: Vec<String>,
}

/// The corpus, read from [`CORPUS_DIR`] in file-name order and decoded by Python, plus the
/// Python version that decoded it. Panics on a stale or malformed override.
pub fn load() -> (Vec<CorpusMessage>, String) {
    let dir = in_repo(CORPUS_DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .collect();
    files.sort();
    let venv = in_repo(".venv-tools/bin/python");
    let python = if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    };
    let output = std::process::Command::new(&python)
        .arg(dir.join("decode_with_python.py"))
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        output.status.success(),
        "the Python decoder failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines = output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty());
    let version: Value = serde_json::from_slice(lines.next().expect("version line")).expect("json");
    let python_version = version["python"].as_str().unwrap_or("?").to_owned();
    let decoded: Vec<Value> = lines
        .map(|line| serde_json::from_slice(line).expect("decoder JSON"))
        .collect();
    assert_eq!(decoded.len(), files.len(), "one JSON line per message");

    let overrides: BTreeMap<String, Value> =
        serde_json::from_slice(&std::fs::read(dir.join("overrides.json")).expect("overrides.json"))
            .expect("overrides.json is JSON");
    let mut stale = Vec::new();
    for (file, entry) in &overrides {
        assert!(
            entry["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "override for {file} needs a reason"
        );
        assert!(
            files
                .iter()
                .any(|f| f.file_name().is_some_and(|n| n == file.as_str())),
            "override for {file}, which is not in the corpus"
        );
    }
    let messages = files
        .iter()
        .zip(decoded)
        .map(|(path, mut expected)| {
            let file = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            assert_eq!(expected["file"], file.as_str());
            let mut overridden = Vec::new();
            if let Some(entry) = overrides.get(&file) {
                for (field, value) in entry["expect"].as_object().expect("expect object") {
                    assert!(
                        expected.get(field).is_some(),
                        "override of unknown field {field} in {file}"
                    );
                    if same_field(field, &expected[field], value) {
                        stale.push(format!("{file}: {field} (Python already reads {value})"));
                    }
                    expected[field] = value.clone();
                    overridden.push(field.clone());
                }
            }
            CorpusMessage {
                category: file.split('-').next().unwrap_or("").to_owned(),
                raw: std::fs::read(path).expect("corpus file"),
                file,
                expected,
                overridden,
            }
        })
        .collect();
    assert!(
        stale.is_empty(),
        "overrides Python does not need (remove them):\n{}",
        stale.join("\n")
    );
    (messages, python_version)
}

/// A bridge and the mailbox that holds the corpus.
pub struct Target<'a> {
    /// HTTP client.
    pub http: &'a reqwest::Client,
    /// `http://host:port` of the bridge.
    pub base: &'a str,
    /// A bearer token of the mailbox's owner.
    pub token: &'a str,
    /// The mailbox holding exactly the corpus, delivered in corpus order.
    pub mailbox: &'a str,
}

/// What [`check_corpus`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// Per category: messages, and messages that matched in every field.
    pub categories: BTreeMap<String, (usize, usize)>,
    /// One line per mismatching field.
    pub failures: Vec<String>,
    /// Overridden fields, as `file: field`.
    pub overridden: Vec<String>,
    /// Attachments downloaded.
    pub downloads: usize,
    /// Time taken by the bridge requests.
    pub elapsed: Duration,
}

impl Report {
    /// The per-category summary, one line each, and the totals.
    pub fn summary(&self) -> String {
        let mut out = String::from("category      messages  matching\n");
        let (mut total, mut matching) = (0, 0);
        for (category, (count, ok)) in &self.categories {
            out.push_str(&format!("{category:<13} {count:>8}  {ok:>8}\n"));
            total += count;
            matching += ok;
        }
        out.push_str(&format!(
            "all           {total:>8}  {matching:>8}   ({} attachments downloaded, {} fields overridden, {:.1} s)\n",
            self.downloads,
            self.overridden.len(),
            self.elapsed.as_secs_f64()
        ));
        out
    }

    /// Prints the summary and panics with every mismatch, if any.
    pub fn assert_all_match(&self) {
        println!("{}", self.summary());
        assert!(
            self.failures.is_empty(),
            "{} mismatches:\n{}\n\n{}",
            self.failures.len(),
            self.failures.join("\n"),
            self.summary()
        );
    }
}

/// Reads every corpus message through the bridge and compares it with its expectation: the
/// header list entry, the message view, and every attachment downloaded.
pub async fn check_corpus(target: &Target<'_>, corpus: &[CorpusMessage]) -> Report {
    let started = Instant::now();
    let mailbox =
        percent_encoding::utf8_percent_encode(target.mailbox, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let summaries = list_all(target, &mailbox).await;
    assert_eq!(
        summaries.len(),
        corpus.len(),
        "the mailbox must hold exactly the corpus"
    );
    let checks = futures::stream::iter(corpus.iter().zip(summaries))
        .map(|(message, summary)| check_message(target, &mailbox, message, summary))
        .buffered(4)
        .collect::<Vec<_>>()
        .await;
    let mut report = Report::default();
    for (message, (failures, downloads)) in corpus.iter().zip(checks) {
        let entry = report
            .categories
            .entry(message.category.clone())
            .or_default();
        entry.0 += 1;
        if failures.is_empty() {
            entry.1 += 1;
        }
        report.failures.extend(failures);
        report.downloads += downloads;
        report.overridden.extend(
            message
                .overridden
                .iter()
                .map(|field| format!("{}: {field}", message.file)),
        );
    }
    report.elapsed = started.elapsed();
    report
}

/// Uploads the corpus in corpus order through the bridge (`POST …/messages`, IMAP APPEND),
/// for servers whose mail store a test cannot write directly. Returns the files the server
/// refused, with its answer; [`check_corpus`] then needs the mailbox to hold the rest only,
/// so pass it the corpus without them.
pub async fn upload(target: &Target<'_>, corpus: &[CorpusMessage]) -> Vec<(String, String)> {
    let mailbox =
        percent_encoding::utf8_percent_encode(target.mailbox, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let mut refused = Vec::new();
    for message in corpus {
        let response = target
            .http
            .post(format!("{}/v1/mailboxes/{mailbox}/messages", target.base))
            .bearer_auth(target.token)
            .header("content-type", "message/rfc822")
            .body(message.raw.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {}: {e}", message.file));
        if response.status() != StatusCode::CREATED {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            refused.push((message.file.clone(), format!("{status} {body}")));
        }
    }
    refused
}

async fn get(target: &Target<'_>, path: &str) -> (StatusCode, Vec<u8>) {
    let response = target
        .http
        .get(format!("{}{path}", target.base))
        .bearer_auth(target.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status();
    let body = response.bytes().await.expect("body").to_vec();
    (status, body)
}

async fn get_json(target: &Target<'_>, path: &str) -> Value {
    let (status, body) = get(target, path).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).expect("JSON")
}

/// Every summary of the mailbox, oldest first.
async fn list_all(target: &Target<'_>, mailbox: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/mailboxes/{mailbox}/messages?limit=200&order=asc");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(target, &path).await;
        all.extend(
            page["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .cloned(),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
}

/// The mismatches of one message and the number of attachments downloaded.
async fn check_message(
    target: &Target<'_>,
    mailbox: &str,
    message: &CorpusMessage,
    summary: Value,
) -> (Vec<String>, usize) {
    let uid = summary["uid"].as_u64().expect("uid");
    let view = get_json(target, &format!("/v1/mailboxes/{mailbox}/messages/{uid}")).await;
    let expected = &message.expected;
    let mut failures = Vec::new();
    let mut fail = |field: &str, want: &dyn std::fmt::Debug, got: &dyn std::fmt::Debug| {
        failures.push(format!(
            "{}: {field}: expected {}, got {}",
            message.file,
            clip(&format!("{want:?}")),
            clip(&format!("{got:?}"))
        ));
    };

    for (source, fields) in [("list", &summary), ("view", &view)] {
        let want = collapse_opt(&expected["subject"]);
        let got = collapse_opt(&fields["subject"]);
        if want != got {
            fail(&format!("{source} subject"), &want, &got);
        }
        for list in ["from", "to", "cc"] {
            let want = addresses(&expected[list]);
            let got = addresses(&fields[list]);
            if want != got {
                fail(&format!("{source} {list}"), &want, &got);
            }
        }
        if expected["date"] != fields["date"] {
            fail(
                &format!("{source} date"),
                &expected["date"],
                &fields["date"],
            );
        }
    }

    let want = collapse_opt(&expected["text"]);
    let got = collapse_opt(&view["text"]);
    if want != got {
        fail("text", &want, &got);
    }
    let want_html = expected["html"].as_bool().unwrap_or(false);
    let got_html = view["html"].as_str();
    if want_html != got_html.is_some() {
        fail("html present", &want_html, &got_html.is_some());
    } else if let Some(html) = got_html {
        let want = collapse_opt(&expected["html_text"]);
        let got = collapse(&visible_text(html));
        if want != got {
            fail("html text", &want, &got);
        }
    }

    let names: Vec<&str> = view["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| h["name"].as_str().unwrap_or(""))
        .collect();
    let want_names: Vec<&str> = expected["header_names"]
        .as_array()
        .expect("header_names")
        .iter()
        .map(|n| n.as_str().unwrap_or(""))
        .take(MAX_HEADERS)
        .collect();
    if names != want_names {
        fail("header names", &want_names, &names);
    }
    let is_compared = |name: &str| {
        let lower = name.to_ascii_lowercase();
        lower == "subject" || lower == "comments" || lower.starts_with("x-")
    };
    let values: Vec<(String, String)> = view["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|h| is_compared(h["name"].as_str().unwrap_or("")))
        .map(|h| {
            (
                h["name"].as_str().unwrap_or("").to_owned(),
                collapse(h["value"].as_str().unwrap_or("")),
            )
        })
        .collect();
    let want_values: Vec<(String, String)> = expected["header_values"]
        .as_array()
        .expect("header_values")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap_or("").to_owned(),
                collapse(pair[1].as_str().unwrap_or("")),
            )
        })
        .collect();
    if values != want_values {
        fail("header values", &want_values, &values);
    }

    let listed = view["attachments"].as_array().expect("attachments");
    let want_attachments = expected["attachments"].as_array().expect("attachments");
    let mut downloads = 0;
    if listed.len() != want_attachments.len() {
        let describe = |list: &[Value]| -> Vec<String> {
            list.iter()
                .map(|a| format!("{} {}", a["filename"], a["content_type"]))
                .collect()
        };
        fail(
            "attachments",
            &describe(want_attachments),
            &describe(listed),
        );
    }
    for (index, (got, want)) in listed.iter().zip(want_attachments).enumerate() {
        for field in ["filename", "content_type"] {
            if got[field] != want[field] {
                fail(
                    &format!("attachment {index} {field}"),
                    &want[field],
                    &got[field],
                );
            }
        }
        if got["size"] != want["size"] {
            fail(
                &format!("attachment {index} listed size"),
                &want["size"],
                &got["size"],
            );
        }
        let part = got["part_id"].as_str().expect("part_id");
        let (status, body) = get(
            target,
            &format!("/v1/mailboxes/{mailbox}/messages/{uid}/attachments/{part}"),
        )
        .await;
        downloads += 1;
        if status != StatusCode::OK {
            fail(
                &format!("attachment {index} download"),
                &200,
                &status.as_u16(),
            );
            continue;
        }
        if want["size"].as_u64() != Some(body.len() as u64) {
            fail(
                &format!("attachment {index} downloaded size"),
                &want["size"],
                &body.len(),
            );
        }
        let sha = hex(&Sha256::digest(&body));
        if want["sha256"].as_str() != Some(sha.as_str()) {
            fail(&format!("attachment {index} sha256"), &want["sha256"], &sha);
        }
    }
    (failures, downloads)
}

/// Whether a Python value and an override say the same, by this module's comparison rules.
fn same_field(field: &str, python: &Value, wanted: &Value) -> bool {
    match field {
        "subject" | "text" | "html_text" => collapse_opt(python) == collapse_opt(wanted),
        "from" | "to" | "cc" => addresses(python) == addresses(wanted),
        _ => python == wanted,
    }
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A string field collapsed; absent and empty are the same.
fn collapse_opt(value: &Value) -> String {
    value.as_str().map(collapse).unwrap_or_default()
}

/// (name, address) pairs, names collapsed, an empty name the same as none.
fn addresses(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .map(|list| {
            list.iter()
                .map(|a| {
                    (
                        collapse_opt(&a["name"]),
                        a["address"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The text a browser shows of sanitised HTML: tags become word breaks, entities are decoded.
fn visible_text(html: &str) -> String {
    let tags = regex::Regex::new(r"(?s)<[^>]*>").expect("regex");
    let text = tags.replace_all(html, " ");
    let entities = regex::Regex::new(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|[a-zA-Z]+);").expect("regex");
    let named: HashMap<&str, &str> = [
        ("amp", "&"),
        ("lt", "<"),
        ("gt", ">"),
        ("quot", "\""),
        ("apos", "'"),
        ("nbsp", "\u{a0}"),
    ]
    .into_iter()
    .collect();
    entities
        .replace_all(&text, |caps: &regex::Captures<'_>| {
            let entity = &caps[1];
            let decoded = if let Some(hex) = entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
            {
                u32::from_str_radix(hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .map(String::from)
            } else if let Some(decimal) = entity.strip_prefix('#') {
                decimal
                    .parse()
                    .ok()
                    .and_then(char::from_u32)
                    .map(String::from)
            } else {
                named.get(entity).map(|s| (*s).to_owned())
            };
            decoded.unwrap_or_else(|| caps[0].to_owned())
        })
        .into_owned()
}

fn clip(text: &str) -> String {
    const MAX: usize = 400;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let end = text.floor_char_boundary(MAX);
    format!("{}… ({} bytes)", &text[..end], text.len())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
