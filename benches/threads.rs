//! Conversations, issue 17's speed goals: the first page of 50 threads of a folder of 10,000
//! messages that form real conversations, and its first header page of 50 with previews,
//! through the bridge and by a direct IMAP client doing the same work on the same Dovecot, side
//! by side in one run; and the bridge's threading alone.
//!
//! Run with `cargo bench --bench threads` (release build; `scripts/bench` runs it too).
//! `BENCH_ITERS` sets the samples per side and case (default 100; threading 100,000 messages
//! takes a fifth of that); `BENCH_FOLDER` the folder's size (default 10,000).
//!
//! **The folder.** `INBOX` seeded straight into Maildir with conversations (see
//! [`Corpus`]): about 2,900 threads of 1 to 10 messages (a third of them single messages), each
//! among 2–4 of 300 people, replies arriving minutes to a day and a half after what they answer
//! and interleaved with other conversations, each naming its parent in `In-Reply-To` and its
//! ancestors in `References` (3 % keep only `In-Reply-To`, 2 % name nothing and join by
//! subject); a quarter are multipart/alternative; 3 % of the mail and the newest 20 messages
//! are unread. New mail during the run is 70 % replies to a random conversation and 30 % new
//! conversations, stored by another IMAP session with `APPEND`: Dovecot then parses and caches
//! it as it stores it, as it does for mail delivered by its LDA or LMTP. (A file written into
//! the Maildir behind Dovecot's back, as the seeding does, is parsed at each session's first use
//! of each kind of data instead: about 10 ms each for its threading headers, for THREAD and for
//! its summary, which whichever side comes first would pay.)
//!
//! **The bridge** is served in-process over HTTP/1.1 on loopback (default settings: the
//! summary and thread caches on), talking to Dovecot over TLS; a reqwest client with
//! keep-alive times `GET /v1/mailboxes/INBOX/threads?limit=50` until its body is read whole
//! (the JSON is checked afterwards, untimed). **The direct client** is one IMAP session over
//! TLS on the same Dovecot (the replica below has a second one, set up as the bridge sets up
//! its own: `ENABLE QRESYNC`, `SELECT … (CONDSTORE)`), which writes each round trip's commands
//! in one write (pipelined) and parses every FETCH, SEARCH and STATUS answer with imap-proto,
//! as the bridge does (THREAD answers, which imap-proto cannot read, with a small parser of its
//! own, as the bridge does).
//!
//! Every direct page takes three round trips: `NOOP` alone (Dovecot answers commands pipelined
//! behind a NOOP from the mailbox as it was before it, `src/imap/sync.rs`, so they would miss
//! the new message); the threads; then, pipelined, `UID SEARCH UNSEEN UID <the page's
//! messages>` and `UID FETCH <the 50 threads' latest messages> <summary items>`, the 50
//! threads being those with the newest latest messages (highest UID), as the bridge orders them.
//!
//! | case | bridge | direct |
//! | --- | --- | --- |
//! | (a) warm, after one new message; Dovecot (`THREAD=REFERENCES`) | the page, its thread list computed anew (the server threads) | *minimal*: `NOOP`, `UID THREAD REFERENCES UTF-8 ALL`, `UID SEARCH UNSEEN` + `UID FETCH` summaries. *Same data*: the same, plus `UID FETCH <the page's other messages> (UID BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])` in the last round trip, for each thread's first subject and its participants, which the bridge's page shows too. *Replica* (reference): the bridge's own exchanges, one round trip each as the bridge sends them: `NOOP`, `STATUS`, `UID THREAD` (unless the UIDNEXT and message count of the list it holds still stand), the threading headers it lacks of the threads' first messages and the page's messages, `UID SEARCH UNSEEN` pipelined with `UID FETCH <the 50 latest> (UID FLAGS)`, the summaries it lacks; bridge − replica is the bridge's own work |
//! | (b) cached repeat, nothing new; Dovecot | the page, its list from the bridge's cache | the same exchanges as in (a) |
//! | (c) warm, after one new message; Dovecot advertising Gmail's capabilities (no THREAD, no SORT) | the page, the bridge threading itself from the headers it keeps | *stateless*: `NOOP`, `UID FETCH 1:* <the bridge's threading header items>` with every header parsed and threaded locally with the bridge's own code (`mail::threading`), `UID SEARCH UNSEEN` + `UID FETCH` summaries (From and Subject came with the headers). *Own header cache* (reference): keeps the parsed headers, so its second round trip is `UID FETCH <next UID>:* <header items>`, only new mail (it assumes no expunges), then it threads all it holds and goes on as the stateless one |
//! | (d) cached repeat, nothing new; Gmail profile | the page from the cache | as in (c) |
//! | (e) header page of 50 with previews, the summary cache off; both profiles | a second bridge with `IMAP_BRIDGE_CACHE_SIZE=0`, so every page fetches its summaries and previews: `GET /v1/mailboxes/INBOX/messages?limit=50` (previews are on by default) | `NOOP` + `FETCH <n-49>:* <summary items>` in one round trip, with `PREVIEW` on Dovecot (the bridge's `SUMMARY_ITEMS_WITH_PREVIEW`); on the Gmail profile, which lacks `PREVIEW`, the summary items with the first 2 KiB of section 1 (the bridge's `SUMMARY_ITEMS_WITH_FIRST_PART`), which is the text part of most messages, then for the others the first 2 KiB of their text part, `UID FETCH <UIDs> (UID BODY.PEEK[<part>]<0.2048>)` per part id, pipelined; previews made with the bridge's rules (`mail::preview`). A session of its own, opened for (e) and (f) as the second bridge's are. Checked to give the bridge's previews |
//! | (f) the same, cached repeat | the bridge with its summary cache (summaries and previews from the cache, flags from IMAP) | as in (e) |
//!
//! The thread pages are asked for without previews (`preview=false`), as the direct sides of
//! (a)–(d) fetch none; (e) and (f) are what previews cost.
//!
//! The sides take turns, one sample each per round, starting with another side each round.
//! In (a) and (c) each sample comes right after a new message of its own. After each sample,
//! untimed, the other sides take that message in (the bridge with a page, the direct session
//! with `NOOP` and `UID THREAD`, or the new headers where it keeps them), and then each session
//! syncs what the others wrote meanwhile (Dovecot's cache updates: a cached bridge page and a
//! direct `NOOP`), so every sample is of exactly one new message since its side last looked,
//! with nothing of another session's left to read. The folder grows by one message per side
//! and sample (10,000 → 10,401 on Dovecot, with four sides and 100 samples). The summary items
//! and the threading header items are read from the bridge's source (`SUMMARY_ITEMS` and
//! `SUMMARY_ITEMS_WITH_PREVIEW` in `src/imap/previews.rs`, `HEADER_ITEMS` in
//! `src/imap/threads.rs`), so the direct client asks for what the bridge asks for. Before the
//! timed samples of each case, the bridge's page and each direct side's are checked to be the
//! same threads (latest UID, UIDs and unread UIDs of each); every timed sample checks that its
//! top thread holds the newest message.
//!
//! Goals (issue 17): a warm page within 1.5× of the direct client (held to the *minimal* one
//! with THREAD and the *stateless* one without); a cached repeat at most 0.5× of it.
//!
//! Each case ends with a breakdown in means: the bridge's IMAP exchanges, with its commands by
//! kind, how many per page and how long each took, from its
//! `imap_bridge_imap_command_duration_seconds` (the bridge is in-process; commands sent
//! together each record the whole exchange, which counts once in the total), and the rest of
//! its time, its own work (HTTP, token, pool, caches, threading, JSON); and each direct side's
//! round trips.
//!
//! **Threading alone**: `mail::threading::thread` over the threading headers of 10,000 and
//! 100,000 messages of the same kind of corpus (parsed beforehand, untimed).

mod common {
    #![allow(dead_code)]
    #[path = "../../tests/common/bridge.rs"]
    pub mod bridge;
    #[path = "../../tests/common/corpus.rs"]
    pub mod corpus;
    #[path = "../../tests/common/cyrus.rs"]
    pub mod cyrus;
    #[path = "../../tests/common/dovecot.rs"]
    pub mod dovecot;
    #[path = "../../tests/common/servers.rs"]
    pub mod servers;
}
#[path = "common/direct.rs"]
mod direct;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail, ensure};
use async_imap::imap_proto::{
    AttributeValue, MailboxDatum, Response, SectionPath, StatusAttribute,
};
use common::dovecot::{Dovecot, DovecotOptions};
use direct::QuickAck;
use imap_bridge::config::{Config, Security};
use imap_bridge::imap::encode::UidSet;
use imap_bridge::imap::fetch_item::{NString, nstring_item};
use imap_bridge::mail::preview::{
    PREVIEW_FETCH_BYTES, preview_from_server, preview_of_part_start, preview_part,
};
use imap_bridge::mail::structure::BodyPart;
use imap_bridge::mail::threading::{self, Message, ThreadHeader};
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const USER: &str = "bench";
const PASSWORD: &str = "bench-password";
const MAILBOX: &str = "INBOX";
const PAGE: usize = 50;
/// Same as the `imap-bridge` binary: imap-proto parses BODYSTRUCTURE recursively.
const THREAD_STACK: usize = 32 * 1024 * 1024;
/// Issue 17's goals.
const WARM_RATIO: f64 = 1.5;
const CACHED_RATIO: f64 = 0.5;
const PREVIEW_RATIO: f64 = 1.5;
/// The larger folder threading alone is timed on.
const LARGE_THREADING: usize = 100_000;

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let load_before = load_average();
    let iterations = env_number("BENCH_ITERS", 100)?;
    let folder = env_number("BENCH_FOLDER", 10_000)?;
    ensure!(iterations > 0, "BENCH_ITERS must be at least 1");
    ensure!(folder > PAGE * 4, "BENCH_FOLDER must be above {}", PAGE * 4);
    let items = Items::from_source()?;

    let mut report = Report::default();
    for count in [folder, LARGE_THREADING] {
        let samples = if count > folder {
            (iterations / 5).max(3)
        } else {
            iterations
        };
        report.threading.push(threading_alone(count, samples));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK)
        .build()?;
    for profile in [ServerProfile::Dovecot, ServerProfile::Gmail] {
        let run = runtime.block_on(run_profile(profile, folder, iterations, &items))?;
        report.profiles.push(run);
    }
    report.load = (load_before, load_average());
    report.elapsed = started.elapsed();
    report.print(folder, iterations);
    Ok(())
}

fn env_number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name} must be a number")),
        Err(_) => Ok(default),
    }
}

/// The one-minute load average: whether something else ran on the machine meanwhile.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// What the bridge fetches, read from its source so that the direct client asks the same.
struct Items {
    /// A message's summary (`SUMMARY_ITEMS`, `src/imap/previews.rs`).
    summary: String,
    /// The same with the server's preview (`SUMMARY_ITEMS_WITH_PREVIEW`).
    summary_with_preview: String,
    /// The same with the start of section 1 (`SUMMARY_ITEMS_WITH_FIRST_PART`), without
    /// `PREVIEW`.
    summary_with_first_part: String,
    /// A message's threading header (`HEADER_ITEMS`, `src/imap/threads.rs`).
    thread_header: String,
}

impl Items {
    fn from_source() -> anyhow::Result<Self> {
        Ok(Items {
            summary: direct::str_const(include_str!("../src/imap/previews.rs"), "SUMMARY_ITEMS")?,
            summary_with_preview: direct::str_const(
                include_str!("../src/imap/previews.rs"),
                "SUMMARY_ITEMS_WITH_PREVIEW",
            )?,
            summary_with_first_part: direct::str_const(
                include_str!("../src/imap/previews.rs"),
                "SUMMARY_ITEMS_WITH_FIRST_PART",
            )?,
            thread_header: direct::str_const(
                include_str!("../src/imap/threads.rs"),
                "HEADER_ITEMS",
            )?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The corpus.

/// A small, fixed pseudo-random generator (SplitMix64): the corpus is the same in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` %.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const FIRST_NAMES: [&str; 20] = [
    "Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiroshi", "Ines", "Jonas",
    "Kateryna", "Liam", "Maya", "Nikolai", "Olga", "Pedro", "Quinn", "Rosa", "Samir", "Tereza",
];
const LAST_NAMES: [&str; 15] = [
    "Andersen",
    "Becker",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Horvat",
    "Ivanova",
    "Jansen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Okafor",
];
const TOPICS: [&str; 24] = [
    "Quarterly budget review",
    "Offsite agenda",
    "Release checklist",
    "Customer escalation",
    "Hiring plan",
    "Q3 roadmap",
    "Invoice question",
    "Server migration",
    "Design review notes",
    "Travel arrangements",
    "Contract renewal",
    "Security audit findings",
    "Team lunch",
    "Onboarding schedule",
    "Bug triage",
    "Conference talk proposal",
    "Office move",
    "Vendor comparison",
    "Performance numbers",
    "Holiday rota",
    "Training materials",
    "Board meeting minutes",
    "Support backlog",
    "Partner integration",
];
/// Conversation sizes 1 to 10, in percent: a third single messages, then fewer and fewer.
const SIZE_WEIGHTS: [u64; 10] = [33, 17, 12, 9, 7, 6, 5, 4, 4, 3];

/// One message of a conversation.
struct Mail {
    /// Its Message-ID, with angle brackets.
    id: String,
    /// Its ancestors' ids, oldest first (what its `References` names).
    ancestors: Vec<String>,
    /// Whose it is: an index into the people.
    from: usize,
    to: usize,
    /// Seconds after the corpus's start.
    time: i64,
    /// Which headers link it: 0 both, 1 `In-Reply-To` alone, 2 neither (subject alone).
    links: u8,
    /// A multipart/alternative body.
    html: bool,
}

/// A conversation: a topic, its people and its messages in the order they were written.
struct Conversation {
    topic: String,
    people: Vec<usize>,
    mails: Vec<Mail>,
}

/// A folder's worth of conversations, and the order its messages arrived in.
struct Corpus {
    conversations: Vec<Conversation>,
    /// (conversation, message) in arrival order.
    arrivals: Vec<(usize, usize)>,
    /// Unread among the arrivals.
    unseen: HashSet<(usize, usize)>,
    rng: Rng,
    /// Messages written after the seeding.
    later: usize,
}

impl Corpus {
    /// About `total` messages' worth of conversations, the first `total` of which (by time)
    /// make the folder.
    fn new(total: usize, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let span = total as f64 * 450.0;
        let mut conversations = Vec::new();
        let mut written = 0;
        while written < total {
            let k = conversations.len();
            let mut pick = rng.below(100) as u64;
            let mut size = 1;
            for (i, weight) in SIZE_WEIGHTS.iter().enumerate() {
                if pick < *weight {
                    size = i + 1;
                    break;
                }
                pick -= weight;
            }
            let people: Vec<usize> = (0..2 + rng.below(3))
                .map(|_| rng.below(FIRST_NAMES.len() * LAST_NAMES.len()))
                .collect();
            let mut conversation = Conversation {
                topic: format!("{} #{k}", TOPICS[rng.below(TOPICS.len())]),
                people,
                mails: Vec::new(),
            };
            let mut time = (rng.unit() * span) as i64;
            for _ in 0..size {
                let mail = conversation.reply(&mut rng, time, k);
                conversation.mails.push(mail);
                // Two minutes to a day and a half later.
                time += (120.0 * 2f64.powf(rng.unit() * 10.0)) as i64;
            }
            written += size;
            conversations.push(conversation);
        }
        let mut arrivals: Vec<(i64, usize, usize)> = conversations
            .iter()
            .enumerate()
            .flat_map(|(c, conv)| {
                conv.mails
                    .iter()
                    .enumerate()
                    .map(move |(m, mail)| (mail.time, c, m))
            })
            .collect();
        arrivals.sort_unstable();
        arrivals.truncate(total);
        // What was written after the last arrival never came: within a conversation, times
        // grow, so each keeps a prefix of its messages.
        let mut kept = vec![0; conversations.len()];
        for (_, c, m) in &arrivals {
            kept[*c] = kept[*c].max(m + 1);
        }
        for (conversation, kept) in conversations.iter_mut().zip(kept) {
            conversation.mails.truncate(kept);
        }
        let arrivals: Vec<(usize, usize)> = arrivals.into_iter().map(|(_, c, m)| (c, m)).collect();
        let newest = arrivals.len().saturating_sub(20);
        let unseen = arrivals
            .iter()
            .enumerate()
            .filter(|(i, _)| *i >= newest || rng.chance(3))
            .map(|(_, a)| *a)
            .collect();
        Corpus {
            conversations,
            arrivals,
            unseen,
            rng,
            later: 0,
        }
    }

    /// The raw message `(conversation, message)`.
    fn raw(&self, (c, m): (usize, usize)) -> Vec<u8> {
        self.conversations[c].raw(m)
    }

    /// The threading header of `(conversation, message)`, as the bridge reads it.
    fn thread_header(&self, at: (usize, usize)) -> ThreadHeader {
        let raw = self.raw(at);
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(raw.len(), |p| p + 2);
        ThreadHeader::parse(&raw[..end])
    }

    /// A message written now: 70 % a reply to a random conversation, else a new one.
    fn next_new(&mut self) -> Vec<u8> {
        let time = self
            .arrivals
            .last()
            .map_or(0, |&(c, m)| self.conversations[c].mails[m].time)
            + 60 * (self.later as i64 + 1);
        self.later += 1;
        let k = self.conversations.len();
        let c = if self.rng.chance(70) && k > 0 {
            self.rng.below(k)
        } else {
            let people = (0..2 + self.rng.below(3))
                .map(|_| self.rng.below(FIRST_NAMES.len() * LAST_NAMES.len()))
                .collect();
            self.conversations.push(Conversation {
                topic: format!("{} #{k}", TOPICS[self.rng.below(TOPICS.len())]),
                people,
                mails: Vec::new(),
            });
            k
        };
        let conversation = &mut self.conversations[c];
        let mail = conversation.reply(&mut self.rng, time, c);
        conversation.mails.push(mail);
        conversation.raw(conversation.mails.len() - 1)
    }
}

impl Conversation {
    /// The next message of this conversation (number `k`), written at `time`: the first, or a
    /// reply to the latest message (60 %) or an earlier one.
    fn reply(&self, rng: &mut Rng, time: i64, k: usize) -> Mail {
        let n = self.mails.len();
        let id = format!(
            "<c{k}.m{n}.{:x}@mail.example.test>",
            rng.next() & 0xffff_ffff
        );
        let from = self.people[rng.below(self.people.len())];
        let to = self.people[rng.below(self.people.len())];
        let html = rng.chance(25);
        if n == 0 {
            return Mail {
                id,
                ancestors: Vec::new(),
                from,
                to,
                time,
                links: 0,
                html,
            };
        }
        let parent = if rng.chance(60) { n - 1 } else { rng.below(n) };
        let parent = &self.mails[parent];
        let mut ancestors = parent.ancestors.clone();
        ancestors.push(parent.id.clone());
        let links = match rng.below(100) {
            0..=2 => 1,
            3..=4 => 2,
            _ => 0,
        };
        Mail {
            id,
            ancestors,
            from,
            to,
            time,
            links,
            html,
        }
    }

    fn raw(&self, m: usize) -> Vec<u8> {
        let mail = &self.mails[m];
        let person = |p: usize| {
            let (first, last) = (
                FIRST_NAMES[p % FIRST_NAMES.len()],
                LAST_NAMES[p / FIRST_NAMES.len()],
            );
            format!(
                "{first} {last} <{}.{}@example.test>",
                first.to_lowercase(),
                p / FIRST_NAMES.len()
            )
        };
        // 1 May 2024 onwards.
        let date = chrono::DateTime::from_timestamp(1_714_521_600 + mail.time, 0)
            .unwrap_or_default()
            .format("%a, %d %b %Y %H:%M:%S +0000");
        let subject = if m == 0 {
            self.topic.clone()
        } else {
            format!("Re: {}", self.topic)
        };
        let mut head = format!(
            "From: {}\r\nTo: {}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: {}\r\n",
            person(mail.from),
            person(mail.to),
            mail.id
        );
        if let Some(parent) = mail.ancestors.last() {
            if mail.links == 0 {
                head.push_str("References:");
                for id in &mail.ancestors {
                    head.push_str("\r\n ");
                    head.push_str(id);
                }
                head.push_str("\r\n");
            }
            if mail.links <= 1 {
                let _ = write!(head, "In-Reply-To: {parent}\r\n");
            }
        }
        head.push_str("MIME-Version: 1.0\r\n");
        let mut text = format!(
            "Hello,\r\n\r\nabout {}: here is where things stand after message {m}.\r\n",
            self.topic
        );
        for line in 0..(4 + (mail.time as usize % 12)) {
            let _ = write!(
                text,
                "Point {line}: the numbers for this part look fine, and the next step is \
                 agreed.\r\n"
            );
        }
        text.push_str("\r\nBest,\r\n");
        text.push_str(FIRST_NAMES[mail.from % FIRST_NAMES.len()]);
        text.push_str("\r\n");
        if m > 0 {
            text.push_str("\r\n> Earlier in this thread: what we said before.\r\n");
        }
        let body = if mail.html {
            let boundary = format!("b-{}", mail.id.trim_matches(['<', '>']));
            head.push_str(&format!(
                "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n"
            ));
            format!(
                "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
                 --{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
                 <html><body><p>{}</p></body></html>\r\n--{boundary}--\r\n",
                text.replace("\r\n", "<br>\r\n")
            )
        } else {
            head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
            text
        };
        format!("{head}\r\n{body}").into_bytes()
    }
}

// ---------------------------------------------------------------------------------------------
// Threading alone.

/// `mail::threading::thread` over `count` messages' headers, `samples` times.
fn threading_alone(count: usize, samples: usize) -> ThreadingCost {
    let corpus = Corpus::new(count, 17);
    let headers: Vec<ThreadHeader> = corpus
        .arrivals
        .iter()
        .map(|&at| corpus.thread_header(at))
        .collect();
    let messages: Vec<Message<'_, u32>> = (1u32..)
        .zip(&headers)
        .map(|(uid, h)| h.message(uid, None))
        .collect();
    let mut times = Vec::with_capacity(samples);
    let mut threads = 0;
    // One round more than counted, untimed: the allocator's first growth.
    for round in 0..=samples {
        let start = Instant::now();
        let threaded = threading::thread(&messages);
        let took = start.elapsed();
        threads = threaded.len();
        drop(threaded);
        if round > 0 {
            times.push(took);
        }
    }
    ThreadingCost {
        messages: count,
        threads,
        conversations: corpus.conversations.len(),
        stats: Stats::of(times),
    }
}

struct ThreadingCost {
    messages: usize,
    threads: usize,
    conversations: usize,
    stats: Stats,
}

// ---------------------------------------------------------------------------------------------
// The server profiles.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerProfile {
    /// Dovecot as it comes: `THREAD=REFERENCES`.
    Dovecot,
    /// Dovecot advertising Gmail's capabilities: no THREAD (nor SORT).
    Gmail,
}

impl ServerProfile {
    fn label(self) -> &'static str {
        match self {
            ServerProfile::Dovecot => "Dovecot (THREAD=REFERENCES: the server threads)",
            ServerProfile::Gmail => {
                "Dovecot advertising Gmail's capabilities (no THREAD: the bridge threads)"
            }
        }
    }

    /// The direct sides of its cases; the first is the one the goals hold the bridge to.
    fn direct_sides(self) -> &'static [DirectKind] {
        match self {
            ServerProfile::Dovecot => &[
                DirectKind::ThreadMinimal,
                DirectKind::ThreadSameData,
                DirectKind::Replica,
            ],
            ServerProfile::Gmail => &[DirectKind::Stateless, DirectKind::OwnCache],
        }
    }
}

/// What a direct client does for a page of threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirectKind {
    /// `NOOP`, `UID THREAD`, then `UID SEARCH UNSEEN` + the latest messages' summaries.
    ThreadMinimal,
    /// The same, plus From and Subject of the page's other messages.
    ThreadSameData,
    /// Every message's threading header fetched and threaded locally.
    Stateless,
    /// Only new messages' headers fetched; all held ones threaded locally.
    OwnCache,
    /// The bridge's own exchanges for the page, in a session set up as the bridge's.
    Replica,
    /// The newest 50 messages' summaries and previews: from the server's `PREVIEW`, or read
    /// from the start of each one's text part.
    PreviewPage,
}

impl DirectKind {
    fn label(self) -> &'static str {
        match self {
            DirectKind::ThreadMinimal => {
                "direct, minimal: NOOP | UID THREAD | UID SEARCH UNSEEN + UID FETCH 50 summaries"
            }
            DirectKind::ThreadSameData => {
                "direct, same data: minimal + FROM SUBJECT of the page's other messages"
            }
            DirectKind::Stateless => {
                "direct, stateless: NOOP | UID FETCH 1:* headers, thread | SEARCH + FETCH"
            }
            DirectKind::OwnCache => {
                "direct, own header cache (reference): new headers only, thread | SEARCH + FETCH"
            }
            DirectKind::Replica => {
                "replica (reference): the bridge's IMAP exchanges for the page, sent directly"
            }
            DirectKind::PreviewPage => {
                "direct: NOOP + FETCH <n-49>:* summaries (+ PREVIEW) | 2 KiB of each text part"
            }
        }
    }

    /// What its three timed stretches are.
    fn rounds(self) -> [&'static str; 3] {
        match self {
            DirectKind::PreviewPage => ["NOOP + summaries", "text parts", ""],
            _ => ["NOOP", "threads", "unread and summaries"],
        }
    }
}

/// The measurements of one profile.
struct ProfileRun {
    profile: ServerProfile,
    cold: Duration,
    priming: Duration,
    messages_before: usize,
    messages_after: usize,
    threads: u64,
    warm: Case,
    cached: Case,
    /// Header pages with previews, the summary cache off.
    previews: Case,
    /// The same, cached.
    previews_cached: Case,
}

/// One case: the bridge's samples and each direct side's.
struct Case {
    bridge: Vec<Duration>,
    /// The IMAP commands the bridge sent during its samples: by command, their number and
    /// the seconds they took (from its `imap_bridge_imap_command_duration_seconds`).
    bridge_commands: BTreeMap<String, (u64, f64)>,
    /// The seconds the bridge's IMAP exchanges took during its samples.
    bridge_imap: f64,
    direct: Vec<DirectSide>,
}

/// One direct side's samples, whole and by round trip.
struct DirectSide {
    kind: DirectKind,
    samples: Vec<Duration>,
    rounds: Vec<[Duration; 3]>,
}

impl Case {
    fn new(profile: ServerProfile) -> Self {
        Case {
            bridge: Vec::new(),
            bridge_commands: BTreeMap::new(),
            bridge_imap: 0.0,
            direct: profile
                .direct_sides()
                .iter()
                .map(|&kind| DirectSide {
                    kind,
                    samples: Vec::new(),
                    rounds: Vec::new(),
                })
                .collect(),
        }
    }

    /// One page by side `side` (0 the bridge, then the direct sides in order), timed.
    async fn sample(
        &mut self,
        side: usize,
        bridge: &Bridge,
        sessions: &mut Sessions,
    ) -> anyhow::Result<(Duration, Page, &'static str)> {
        if side == 0 {
            let before = imap_command_totals();
            let (took, page) = timed_bridge(bridge).await?;
            self.add_commands(&before);
            return Ok((took, page, "bridge"));
        }
        let side = &mut self.direct[side - 1];
        let direct = sessions.of(side.kind);
        let start = Instant::now();
        let page = direct.page(side.kind).await?;
        let took = start.elapsed();
        side.rounds.push(direct.rounds);
        Ok((took, page, side.kind.label()))
    }

    /// Adds the bridge's IMAP commands since `before` to its count, and their time to its
    /// IMAP time: commands sent together each record the whole exchange (timed once per
    /// command as it is recorded, microseconds apart), so durations within 10 µs of each other
    /// count once.
    fn add_commands(&mut self, before: &BTreeMap<String, (u64, f64)>) {
        let mut exchanges: Vec<f64> = Vec::new();
        for (command, (count, seconds)) in imap_command_totals() {
            let (count_before, seconds_before) = before.get(&command).copied().unwrap_or_default();
            if count > count_before {
                let took = seconds - seconds_before;
                let total = self.bridge_commands.entry(command).or_default();
                total.0 += count - count_before;
                total.1 += took;
                if !exchanges.iter().any(|t| (t - took).abs() < 1e-5) {
                    exchanges.push(took);
                }
            }
        }
        self.bridge_imap += exchanges.iter().sum::<f64>();
    }

    fn push(&mut self, side: usize, took: Duration) {
        match side {
            0 => self.bridge.push(took),
            _ => self.direct[side - 1].samples.push(took),
        }
    }
}

async fn run_profile(
    profile: ServerProfile,
    folder: usize,
    iterations: usize,
    items: &Items,
) -> anyhow::Result<ProfileRun> {
    let shm = Path::new("/dev/shm");
    let place = tempfile::Builder::new()
        .prefix("imap-bridge-threads-")
        .tempdir_in(if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        })?;
    // Dovecot's imap processes re-read the Maildir's `dovecot-uidlist` whole at times, into a
    // pool that grows until the session ends: with hundreds of APPENDs from another session,
    // a session of the run outgrows the default 256 MB address space (`block_alloc` out of
    // memory in `maildir_uidlist_refresh`). The sessions here live for the whole run.
    let mut extra_config = "service imap {\n  vsz_limit = 2G\n}\n".to_owned();
    if profile == ServerProfile::Gmail {
        writeln!(
            extra_config,
            "imap_capability = {}",
            common::servers::GMAIL_CAPABILITIES
        )?;
    }
    let dir = place.path().to_path_buf();
    // Declared after `place`, so it stops before its directory is deleted.
    let dovecot = tokio::task::spawn_blocking(move || {
        Dovecot::start_in(
            dir,
            DovecotOptions {
                very_dirty_syncs: true,
                max_userip_connections: 100,
                extra_config,
                ..Default::default()
            },
        )
    })
    .await?;
    dovecot.add_user(USER, PASSWORD);
    let measured = measure(profile, &dovecot, folder, iterations, items).await;
    measured.map_err(|e| {
        let log = dovecot.log();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        e.context(format!("Dovecot's log ends:\n{}", tail.join("\n")))
    })
}

/// Seeds `dovecot`'s folder and measures it.
async fn measure(
    profile: ServerProfile,
    dovecot: &Dovecot,
    folder: usize,
    iterations: usize,
    items: &Items,
) -> anyhow::Result<ProfileRun> {
    let mut corpus = Corpus::new(folder, 1);
    let first = SystemTime::now() - Duration::from_secs(folder as u64 * 2);
    for (i, &at) in corpus.arrivals.iter().enumerate() {
        let flags = if corpus.unseen.contains(&at) { "" } else { "S" };
        let arrived = first + Duration::from_secs(i as u64);
        dovecot.deliver(USER, MAILBOX, &corpus.raw(at), flags, Some(arrived));
    }
    let mut count = corpus.arrivals.len();

    let mut config = Config::for_server("localhost", dovecot.imaps_addr().port(), Security::Tls);
    config.imap_ca_file = Some(dovecot.ca_cert_path());
    config.jwt_secret = Some("benchmark-secret-that-is-at-least-32-bytes".to_owned());
    config.shutdown_delay = 0;
    let mut uncached_config = config.clone();
    uncached_config.cache_size = 0;
    let server = BridgeServer::start(config).await?;
    let http = reqwest::Client::new();
    let bridge = Bridge::login(&http, &server).await?;
    let tls = imap_bridge::imap::transport::tls_config(Some(&dovecot.ca_cert_path()))?;
    let mut direct = Raw::connect(tls.clone(), dovecot.imaps_addr(), items).await?;
    direct.select(MAILBOX).await?;
    let replica = if profile.direct_sides().contains(&DirectKind::Replica) {
        let mut replica = Raw::connect(tls, dovecot.imaps_addr(), items).await?;
        replica.set_up_as_bridge(MAILBOX).await?;
        Some(replica)
    } else {
        None
    };
    let mut sessions = Sessions { direct, replica };
    let mut mta = Raw::connect(
        imap_bridge::imap::transport::tls_config(Some(&dovecot.ca_cert_path()))?,
        dovecot.imaps_addr(),
        items,
    )
    .await?;

    // Dovecot indexes the folder at its first SELECT, builds its thread index at the first
    // THREAD and caches the headers at their first FETCH: once, here.
    let priming = Instant::now();
    for &kind in profile.direct_sides() {
        sessions.of(kind).page(kind).await?;
    }
    let priming = priming.elapsed();
    let start = Instant::now();
    let page = bridge.page().await?;
    let cold = start.elapsed();
    let threads = page.total;

    // The same page on both sides, after one new message.
    mta.append(&corpus.next_new()).await?;
    count += 1;
    let bridge_page = bridge.page().await?;
    for &kind in profile.direct_sides() {
        same_page(&bridge_page, &sessions.of(kind).page(kind).await?, kind)?;
    }
    ensure!(
        bridge_page.threads.first().map(|t| t.latest) == Some(count as u32),
        "the bridge's top thread does not hold the new message {count}"
    );

    let sides = 1 + profile.direct_sides().len();
    let mut warm = Case::new(profile);
    for i in 0..iterations {
        // Each side in turn, starting with another one each round.
        for side in (0..sides).map(|s| (i + s) % sides) {
            mta.append(&corpus.next_new()).await?;
            count += 1;
            let (took, page, label) = warm.sample(side, &bridge, &mut sessions).await?;
            page.check_top(count, label)?;
            settle(&bridge, &mut sessions, profile, count).await?;
            warm.push(side, took);
        }
    }

    // Nothing new from here on: both sides take in the last message, then must agree.
    let bridge_page = bridge.page().await?;
    for &kind in profile.direct_sides() {
        same_page(&bridge_page, &sessions.of(kind).page(kind).await?, kind)?;
    }
    let mut cached = Case::new(profile);
    for i in 0..iterations {
        for side in (0..sides).map(|s| (i + s) % sides) {
            let (took, page, label) = cached.sample(side, &bridge, &mut sessions).await?;
            page.check_top(count, label)?;
            cached.push(side, took);
        }
    }
    // Header pages with previews, nothing new meanwhile: with the summary cache off (every
    // page fetches its summaries and previews), then a cached repeat.
    // The direct side gets a session of its own, as fresh as the second bridge's: Dovecot
    // reads text parts about five times slower (8 ms against 1.5 ms a page) in a session that
    // has fetched `1:*` headers hundreds of times, as the Gmail profile's direct session has.
    let uncached_server = BridgeServer::start(uncached_config).await?;
    let uncached = Bridge::login(&http, &uncached_server).await?;
    let mut previews_direct = Raw::connect(
        imap_bridge::imap::transport::tls_config(Some(&dovecot.ca_cert_path()))?,
        dovecot.imaps_addr(),
        items,
    )
    .await?;
    previews_direct.select(MAILBOX).await?;
    let server_preview = profile == ServerProfile::Dovecot;
    let previews = preview_case(
        &uncached,
        &mut previews_direct,
        server_preview,
        count,
        iterations,
    )
    .await?;
    let previews_cached = preview_case(
        &bridge,
        &mut previews_direct,
        server_preview,
        count,
        iterations,
    )
    .await?;
    previews_direct.logout().await?;
    uncached_server.stop().await?;

    mta.logout().await?;
    sessions.direct.logout().await?;
    if let Some(replica) = sessions.replica {
        replica.logout().await?;
    }
    server.stop().await?;
    Ok(ProfileRun {
        profile,
        cold,
        priming,
        messages_before: folder,
        messages_after: count,
        threads,
        warm,
        cached,
        previews,
        previews_cached,
    })
}

/// Brings every side up to date with the mailbox, untimed: the others take in the message
/// the last sample took in (the bridge with a page, the direct session with `NOOP` and
/// `UID THREAD`, or the new headers where it keeps them), then each session syncs what the
/// other wrote meanwhile (a cached bridge page and a direct `NOOP`, which write nothing). So
/// every warm sample takes in exactly one new message, and no session has another's changes
/// (Dovecot's cache updates) to read first.
async fn settle(
    bridge: &Bridge,
    sessions: &mut Sessions,
    profile: ServerProfile,
    newest: usize,
) -> anyhow::Result<()> {
    bridge.page().await?.check_top(newest, "bridge, settling")?;
    sessions.direct.catch_up(profile).await?;
    if let Some(replica) = &mut sessions.replica {
        replica.page(DirectKind::Replica).await?;
    }
    bridge.page().await?.check_top(newest, "bridge, settling")?;
    sessions.direct.noop().await?;
    if let Some(replica) = &mut sessions.replica {
        replica.noop().await?;
    }
    Ok(())
}

/// A header page of 50 with previews: `bridge`'s against the direct client's fetch of the same
/// data, taking turns, after a check that both have the same previews.
async fn preview_case(
    bridge: &Bridge,
    direct: &mut Raw,
    server_preview: bool,
    exists: usize,
    iterations: usize,
) -> anyhow::Result<Case> {
    let bridge_previews = previews_of(&bridge.messages_body().await?)?;
    let direct_previews = direct.preview_page(server_preview, exists).await?;
    if bridge_previews != direct_previews {
        let differ = bridge_previews
            .iter()
            .find(|(uid, preview)| direct_previews.get(uid) != Some(preview));
        bail!(
            "the bridge's previews and the direct client's differ: {differ:?} vs {:?}",
            differ.and_then(|(uid, _)| direct_previews.get(uid))
        );
    }
    let mut case = Case {
        bridge: Vec::new(),
        bridge_commands: BTreeMap::new(),
        bridge_imap: 0.0,
        direct: vec![DirectSide {
            kind: DirectKind::PreviewPage,
            samples: Vec::new(),
            rounds: Vec::new(),
        }],
    };
    for i in 0..iterations {
        for side in (0..2).map(|s| (i + s) % 2) {
            if side == 0 {
                let before = imap_command_totals();
                let start = Instant::now();
                let body = bridge.messages_body().await?;
                case.bridge.push(start.elapsed());
                case.add_commands(&before);
                ensure!(
                    previews_of(&body)?.len() == PAGE,
                    "the bridge's page is not full"
                );
            } else {
                let start = Instant::now();
                direct.preview_page(server_preview, exists).await?;
                case.direct[0].samples.push(start.elapsed());
                case.direct[0].rounds.push(direct.rounds);
            }
        }
    }
    Ok(case)
}

/// The direct client's sessions: one for the direct sides, one set up as the bridge's for the
/// replica.
struct Sessions {
    direct: Raw,
    replica: Option<Raw>,
}

impl Sessions {
    fn of(&mut self, kind: DirectKind) -> &mut Raw {
        match (&mut self.replica, kind) {
            (Some(replica), DirectKind::Replica) => replica,
            _ => &mut self.direct,
        }
    }
}

async fn timed_bridge(bridge: &Bridge) -> anyhow::Result<(Duration, Page)> {
    let start = Instant::now();
    let body = bridge.page_body().await?;
    let took = start.elapsed();
    Ok((took, Page::from_json(&serde_json::from_slice(&body)?)?))
}

/// The IMAP commands every bridge in this process has sent: by command, their number and the
/// seconds they took, from the process's Prometheus recorder (the bridges run in-process).
fn imap_command_totals() -> BTreeMap<String, (u64, f64)> {
    let text = imap_bridge::telemetry::metrics_handle().render();
    let mut totals: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("imap_bridge_imap_command_duration_seconds_") else {
            continue;
        };
        let Some((kind, rest)) = rest.split_once("{command=\"") else {
            continue;
        };
        if kind != "count" && kind != "sum" {
            continue;
        }
        let Some((command, value)) = rest.split_once("\"}") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let total = totals.entry(command.to_owned()).or_default();
        match kind {
            "count" => total.0 = value as u64,
            "sum" => total.1 = value,
            _ => {}
        }
    }
    totals
}

/// A page as both sides see it: each thread's latest UID, UIDs and unread UIDs (sorted).
#[derive(Debug, PartialEq, Eq)]
struct Page {
    total: u64,
    threads: Vec<PageThread>,
}

#[derive(Debug, PartialEq, Eq)]
struct PageThread {
    latest: u32,
    uids: Vec<u32>,
    unread: Vec<u32>,
}

impl Page {
    fn from_json(list: &Value) -> anyhow::Result<Self> {
        let uids = |v: &Value| -> anyhow::Result<Vec<u32>> {
            let mut uids: Vec<u32> = v
                .as_array()
                .context("not an array")?
                .iter()
                .map(|u| {
                    u.as_u64()
                        .and_then(|u| u32::try_from(u).ok())
                        .context("not a UID")
                })
                .collect::<anyhow::Result<_>>()?;
            uids.sort_unstable();
            Ok(uids)
        };
        let threads = list["threads"]
            .as_array()
            .context("no threads in the list")?
            .iter()
            .map(|t| {
                Ok(PageThread {
                    latest: t["latest"]["uid"]
                        .as_u64()
                        .and_then(|u| u32::try_from(u).ok())
                        .context("no latest UID")?,
                    uids: uids(&t["uids"])?,
                    unread: uids(&t["unread_uids"])?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Page {
            total: list["total"].as_u64().context("no total")?,
            threads,
        })
    }

    /// Checks that the page is full and its top thread holds message `newest`.
    fn check_top(&self, newest: usize, side: &str) -> anyhow::Result<()> {
        ensure!(
            self.threads.len() == PAGE
                && self.threads[0].latest == newest as u32
                && self.threads[0].uids.contains(&(newest as u32)),
            "{side}: {} threads, the top one's latest {:?}, not the newest message {newest}",
            self.threads.len(),
            self.threads.first().map(|t| t.latest)
        );
        Ok(())
    }
}

fn same_page(bridge: &Page, direct: &Page, kind: DirectKind) -> anyhow::Result<()> {
    if bridge == direct {
        return Ok(());
    }
    let first_difference = bridge
        .threads
        .iter()
        .zip(&direct.threads)
        .position(|(b, d)| b != d);
    bail!(
        "the bridge's page and {}'s differ: totals {} and {}, {} and {} threads, first \
         difference at {first_difference:?}: {:?} vs {:?}",
        kind.label(),
        bridge.total,
        direct.total,
        bridge.threads.len(),
        direct.threads.len(),
        first_difference.map(|i| &bridge.threads[i]),
        first_difference.map(|i| &direct.threads[i]),
    )
}

// ---------------------------------------------------------------------------------------------
// The bridge.

/// A bridge served in-process on a free port.
struct BridgeServer {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl BridgeServer {
    async fn start(config: Config) -> anyhow::Result<Self> {
        let state = imap_bridge::build_state(config)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(imap_bridge::serve_with_state(state, listener, async {
            let _ = stopped.await;
        }));
        Ok(BridgeServer { base, stop, task })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// A logged-in HTTP client of one bridge.
struct Bridge {
    http: reqwest::Client,
    /// The first page of threads, without previews: the direct sides of the thread cases
    /// fetch none.
    url: String,
    /// The first header page, with previews (the default).
    messages_url: String,
    token: String,
}

impl Bridge {
    async fn login(http: &reqwest::Client, server: &BridgeServer) -> anyhow::Result<Self> {
        let login: Value = http
            .post(format!("{}/v1/auth/login", server.base))
            .json(&json!({"username": USER, "password": PASSWORD}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(Bridge {
            http: http.clone(),
            url: format!(
                "{}/v1/mailboxes/{MAILBOX}/threads?limit={PAGE}&preview=false",
                server.base
            ),
            messages_url: format!(
                "{}/v1/mailboxes/{MAILBOX}/messages?limit={PAGE}",
                server.base
            ),
            token: login["access_token"]
                .as_str()
                .context("no access_token in the login response")?
                .to_owned(),
        })
    }

    /// The first page's body, read whole.
    async fn page_body(&self) -> anyhow::Result<bytes::Bytes> {
        let response = self
            .http
            .get(&self.url)
            .bearer_auth(&self.token)
            .send()
            .await?;
        ensure!(response.status() == 200, "threads: {}", response.status());
        Ok(response.bytes().await?)
    }

    async fn page(&self) -> anyhow::Result<Page> {
        Page::from_json(&serde_json::from_slice(&self.page_body().await?)?)
    }

    /// The first header page's body, read whole.
    async fn messages_body(&self) -> anyhow::Result<bytes::Bytes> {
        let response = self
            .http
            .get(&self.messages_url)
            .bearer_auth(&self.token)
            .send()
            .await?;
        ensure!(response.status() == 200, "messages: {}", response.status());
        Ok(response.bytes().await?)
    }
}

/// The previews of a header page's JSON, by UID.
fn previews_of(body: &[u8]) -> anyhow::Result<BTreeMap<u32, String>> {
    let list: Value = serde_json::from_slice(body)?;
    list["messages"]
        .as_array()
        .context("no messages in the list")?
        .iter()
        .map(|m| {
            Ok((
                m["uid"]
                    .as_u64()
                    .and_then(|u| u32::try_from(u).ok())
                    .context("message without uid")?,
                m["preview"]
                    .as_str()
                    .context("message without preview")?
                    .to_owned(),
            ))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The direct client.

/// An IMAP session over TLS that reads responses as bytes (literals included) and parses them
/// itself: THREAD answers with [`parse_threads`], everything else with imap-proto.
struct Raw {
    stream: BufReader<QuickAck>,
    response: Vec<u8>,
    items: SidesItems,
    /// Threading headers held by [`DirectKind::OwnCache`], by UID, and the UID after the last.
    held: BTreeMap<u32, ThreadHeader>,
    held_next: u32,
    /// The last page's round trips: `NOOP`; the threads (with local threading and the choice
    /// of the page); the unread and the summaries.
    rounds: [Duration; 3],
    /// The replica's summary cache: the UIDs whose summaries it fetched.
    summaries_held: HashSet<u32>,
    /// The replica's thread list cache: the list, and the UIDNEXT and message count it was
    /// read at.
    threads_held: Option<(Stamp, Vec<Vec<u32>>)>,
}

/// A mailbox's UIDNEXT and message count.
type Stamp = (u32, u32);

/// The FETCH items of the direct client's commands.
struct SidesItems {
    summary: String,
    summary_with_preview: String,
    summary_with_first_part: String,
    thread_header: String,
}

impl Raw {
    async fn connect(
        tls: Arc<rustls::ClientConfig>,
        addr: std::net::SocketAddr,
        items: &Items,
    ) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let mut raw = Raw {
            stream: BufReader::new(QuickAck(stream)),
            response: Vec::new(),
            items: SidesItems {
                summary: items.summary.clone(),
                summary_with_preview: items.summary_with_preview.clone(),
                summary_with_first_part: items.summary_with_first_part.clone(),
                thread_header: items.thread_header.clone(),
            },
            held: BTreeMap::new(),
            held_next: 1,
            rounds: [Duration::ZERO; 3],
            summaries_held: HashSet::new(),
            threads_held: None,
        };
        raw.read_response().await?;
        raw.exchange(
            &[format!(
                "LOGIN {USER} {{{}+}}\r\n{PASSWORD}",
                PASSWORD.len()
            )],
            |_| Ok(()),
        )
        .await?;
        Ok(raw)
    }

    /// `ENABLE QRESYNC` and `SELECT … (CONDSTORE)`, as the bridge sets up its sessions.
    async fn set_up_as_bridge(&mut self, mailbox: &str) -> anyhow::Result<()> {
        self.exchange(&["ENABLE QRESYNC".to_owned()], |_| Ok(()))
            .await?;
        self.exchange(&[format!("SELECT \"{mailbox}\" (CONDSTORE)")], |_| Ok(()))
            .await
    }

    /// Stores `raw` in the mailbox, unseen, as a delivery would (`APPEND`).
    async fn append(&mut self, raw: &[u8]) -> anyhow::Result<()> {
        let text = std::str::from_utf8(raw).context("the corpus writes ASCII")?;
        self.exchange(
            &[format!("APPEND \"{MAILBOX}\" {{{}+}}\r\n{text}", raw.len())],
            |_| Ok(()),
        )
        .await
    }

    async fn noop(&mut self) -> anyhow::Result<()> {
        self.exchange(&["NOOP".to_owned()], |_| Ok(())).await
    }

    async fn select(&mut self, mailbox: &str) -> anyhow::Result<()> {
        self.exchange(&[format!("SELECT \"{mailbox}\"")], |_| Ok(()))
            .await
    }

    async fn logout(mut self) -> anyhow::Result<()> {
        self.exchange(&["LOGOUT".to_owned()], |_| Ok(())).await
    }

    /// Reads one response, literals included, into `self.response`.
    async fn read_response(&mut self) -> anyhow::Result<()> {
        self.response.clear();
        loop {
            let line_start = self.response.len();
            let n = self.stream.read_until(b'\n', &mut self.response).await?;
            ensure!(n > 0, "the IMAP server closed the connection");
            let Some(length) = literal_length(&self.response[line_start..]) else {
                return Ok(());
            };
            let at = self.response.len();
            self.response.resize(at + length, 0);
            self.stream.read_exact(&mut self.response[at..]).await?;
        }
    }

    /// Sends `commands` in one write, tagged `d0`, `d1`, …, and hands every untagged response
    /// to `on_data` until the last completes; fails unless every one completes with OK.
    async fn exchange(
        &mut self,
        commands: &[String],
        mut on_data: impl FnMut(&[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut wire = String::new();
        for (tag, command) in commands.iter().enumerate() {
            write!(wire, "d{tag} {command}\r\n")?;
        }
        let stream = self.stream.get_mut();
        stream.write_all(wire.as_bytes()).await?;
        stream.flush().await?;
        let mut open = commands.len();
        while open > 0 {
            self.read_response().await?;
            let response = &self.response;
            if response.starts_with(b"* ") || response.starts_with(b"+ ") {
                on_data(response)?;
                continue;
            }
            let ok = response
                .iter()
                .position(|&b| b == b' ')
                .is_some_and(|space| response[space + 1..].starts_with(b"OK"));
            ensure!(ok, "{}", String::from_utf8_lossy(response).trim_end());
            open -= 1;
        }
        Ok(())
    }

    /// Takes in new mail, untimed, as the page of `profile`'s direct sides would: `NOOP`,
    /// then `UID THREAD` (its answer dropped) where the server threads, else the new
    /// messages' headers into the held ones.
    async fn catch_up(&mut self, profile: ServerProfile) -> anyhow::Result<()> {
        self.exchange(&["NOOP".to_owned()], |_| Ok(())).await?;
        match profile {
            ServerProfile::Dovecot => {
                self.exchange(&["UID THREAD REFERENCES UTF-8 ALL".to_owned()], |_| Ok(()))
                    .await
            }
            ServerProfile::Gmail => self.fetch_new_headers().await,
        }
    }

    /// The headers of the messages above the held ones, into the held ones.
    async fn fetch_new_headers(&mut self) -> anyhow::Result<()> {
        let mut held = std::mem::take(&mut self.held);
        let next = self.held_next;
        let fetch = format!("UID FETCH {next}:* {}", self.items.thread_header);
        let fetched = self
            .exchange(&[fetch], |r| {
                // `n:*` answers the last message even when it is below `n`.
                if let Some((uid, header)) = thread_header_of(r)?
                    && uid >= next
                {
                    held.insert(uid, header);
                }
                Ok(())
            })
            .await;
        self.held_next = held.last_key_value().map_or(1, |(uid, _)| uid + 1);
        self.held = held;
        fetched
    }

    /// The first page of threads, as `kind` gets it.
    async fn page(&mut self, kind: DirectKind) -> anyhow::Result<Page> {
        if kind == DirectKind::Replica {
            return self.replica_page().await;
        }
        // Alone: Dovecot answers commands pipelined behind a NOOP from the mailbox as it was
        // before the NOOP (see `src/imap/sync.rs`), so they would miss the new message.
        let started = Instant::now();
        self.exchange(&["NOOP".to_owned()], |_| Ok(())).await?;
        let synced = Instant::now();
        // Threads as UID lists in reading order.
        let threads: Vec<Vec<u32>> = match kind {
            DirectKind::ThreadMinimal | DirectKind::ThreadSameData => {
                let mut threads = Vec::new();
                self.exchange(&["UID THREAD REFERENCES UTF-8 ALL".to_owned()], |r| {
                    if let Some(list) = r.strip_prefix(b"* THREAD") {
                        threads = parse_threads(list).context("a malformed THREAD answer")?;
                    }
                    Ok(())
                })
                .await?;
                threads
            }
            DirectKind::Stateless => {
                let mut headers = BTreeMap::new();
                let fetch = format!("UID FETCH 1:* {}", self.items.thread_header);
                self.exchange(&[fetch], |r| {
                    if let Some((uid, header)) = thread_header_of(r)? {
                        headers.insert(uid, header);
                    }
                    Ok(())
                })
                .await?;
                thread_locally(&headers)
            }
            DirectKind::OwnCache => {
                self.fetch_new_headers().await?;
                thread_locally(&self.held)
            }
            DirectKind::Replica | DirectKind::PreviewPage => {
                unreachable!("a page of its own")
            }
        };
        let total = threads.len() as u64;
        let mut threads: Vec<(u32, Vec<u32>)> = threads
            .into_iter()
            .map(|uids| (uids.iter().copied().max().unwrap_or(0), uids))
            .collect();
        threads.sort_unstable_by_key(|t| std::cmp::Reverse(t.0));
        threads.truncate(PAGE);
        let listed: Vec<u32> = threads.iter().flat_map(|(_, uids)| uids.clone()).collect();
        let latest: Vec<u32> = threads.iter().map(|(latest, _)| *latest).collect();
        let mut commands = vec![
            format!(
                "UID SEARCH UNSEEN UID {}",
                UidSet::from_uids(listed.iter().copied())?
            ),
            format!(
                "UID FETCH {} {}",
                UidSet::from_uids(latest.iter().copied())?,
                self.items.summary
            ),
        ];
        let others: Vec<u32> = listed
            .iter()
            .copied()
            .filter(|u| !latest.contains(u))
            .collect();
        if kind == DirectKind::ThreadSameData && !others.is_empty() {
            commands.push(format!(
                "UID FETCH {} (UID BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])",
                UidSet::from_uids(others)?
            ));
        }
        let threaded = Instant::now();
        let mut unseen = HashSet::new();
        let mut summaries = HashSet::new();
        self.exchange(&commands, |r| {
            match Response::parse(r) {
                Ok((_, Response::MailboxData(MailboxDatum::Search(uids)))) => {
                    unseen.extend(uids);
                }
                Ok((_, Response::Fetch(_, attrs))) => {
                    if attrs
                        .iter()
                        .any(|a| matches!(a, AttributeValue::Envelope(_)))
                        && let Some(uid) = uid_of(&attrs)
                    {
                        summaries.insert(uid);
                    }
                }
                Ok(_) => {}
                Err(e) => bail!("unreadable answer: {e:?}"),
            }
            Ok(())
        })
        .await?;
        ensure!(
            latest.iter().all(|u| summaries.contains(u)),
            "a summary did not come"
        );
        self.rounds = [synced - started, threaded - synced, threaded.elapsed()];
        Ok(Page {
            total,
            threads: threads
                .into_iter()
                .map(|(latest, mut uids)| {
                    uids.sort_unstable();
                    let unread = uids
                        .iter()
                        .copied()
                        .filter(|u| unseen.contains(u))
                        .collect();
                    PageThread {
                        latest,
                        uids,
                        unread,
                    }
                })
                .collect(),
        })
    }
}

impl Raw {
    /// The page as the bridge gets it on Dovecot with its summary and thread caches, one round
    /// trip per command (`src/imap/threads.rs`): `NOOP`; `STATUS`; `UID THREAD` unless UIDNEXT
    /// and the message count are those of the list it holds; the threading
    /// headers it lacks of the threads' first messages and the page's messages; `UID SEARCH
    /// UNSEEN` among the page's messages; the flags of the 50 latest messages; the summaries it
    /// lacks of them.
    async fn replica_page(&mut self) -> anyhow::Result<Page> {
        let started = Instant::now();
        self.noop().await?;
        let synced = Instant::now();
        let mut stamp: Stamp = (0, 0);
        self.exchange(
            &[format!(
                "STATUS \"{MAILBOX}\" (UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ)"
            )],
            |r| {
                if let Ok((_, Response::MailboxData(MailboxDatum::Status { status, .. }))) =
                    Response::parse(r)
                {
                    for attr in status {
                        match attr {
                            StatusAttribute::UidNext(n) => stamp.0 = n,
                            StatusAttribute::Messages(n) => stamp.1 = n,
                            _ => {}
                        }
                    }
                }
                Ok(())
            },
        )
        .await?;
        let threads = match self.threads_held.take() {
            Some((held, threads)) if held == stamp => threads,
            _ => {
                let mut threads = Vec::new();
                self.exchange(&["UID THREAD REFERENCES UTF-8 ALL".to_owned()], |r| {
                    if let Some(list) = r.strip_prefix(b"* THREAD") {
                        threads = parse_threads(list).context("a malformed THREAD answer")?;
                    }
                    Ok(())
                })
                .await?;
                threads
            }
        };
        self.threads_held = Some((stamp, threads.clone()));
        let total = threads.len() as u64;
        let firsts: Vec<u32> = threads.iter().filter_map(|t| t.first().copied()).collect();
        let missing: Vec<u32> = firsts
            .into_iter()
            .filter(|u| !self.held.contains_key(u))
            .collect();
        self.fetch_headers(missing).await?;
        let mut threads: Vec<(u32, Vec<u32>)> = threads
            .into_iter()
            .map(|uids| (uids.iter().copied().max().unwrap_or(0), uids))
            .collect();
        threads.sort_unstable_by_key(|t| std::cmp::Reverse(t.0));
        threads.truncate(PAGE);
        let listed: Vec<u32> = threads.iter().flat_map(|(_, uids)| uids.clone()).collect();
        let missing: Vec<u32> = listed
            .iter()
            .copied()
            .filter(|u| !self.held.contains_key(u))
            .collect();
        self.fetch_headers(missing).await?;
        let threaded = Instant::now();
        let mut unseen = HashSet::new();
        let latest: Vec<u32> = threads.iter().map(|(latest, _)| *latest).collect();
        // The unread messages and the latest ones' flags, pipelined as the bridge sends them.
        self.exchange(
            &[
                format!(
                    "UID SEARCH UNSEEN UID {}",
                    UidSet::from_uids(listed.iter().copied())?
                ),
                format!(
                    "UID FETCH {} (UID FLAGS)",
                    UidSet::from_uids(latest.iter().copied())?
                ),
            ],
            |r| match Response::parse(r) {
                Ok((_, Response::MailboxData(MailboxDatum::Search(uids)))) => {
                    unseen.extend(uids);
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => bail!("unreadable answer: {e:?}"),
            },
        )
        .await?;
        let missing: Vec<u32> = latest
            .iter()
            .copied()
            .filter(|u| !self.summaries_held.contains(u))
            .collect();
        if !missing.is_empty() {
            let mut fetched = Vec::new();
            self.exchange(
                &[format!(
                    "UID FETCH {} {}",
                    UidSet::from_uids(missing)?,
                    self.items.summary
                )],
                |r| {
                    if let Ok((_, Response::Fetch(_, attrs))) = Response::parse(r)
                        && let Some(uid) = uid_of(&attrs)
                    {
                        fetched.push(uid);
                    }
                    Ok(())
                },
            )
            .await?;
            self.summaries_held.extend(fetched);
        }
        self.rounds = [synced - started, threaded - synced, threaded.elapsed()];
        Ok(Page {
            total,
            threads: threads
                .into_iter()
                .map(|(latest, mut uids)| {
                    uids.sort_unstable();
                    let unread = uids
                        .iter()
                        .copied()
                        .filter(|u| unseen.contains(u))
                        .collect();
                    PageThread {
                        latest,
                        uids,
                        unread,
                    }
                })
                .collect(),
        })
    }

    /// The newest 50 of `exists` messages' summaries with their previews, by UID, as a client
    /// would get them with the bridge's rules (`mail::preview`): the server's `PREVIEW` with
    /// the summaries where `server_preview`, else the first 2 KiB of each one's text part
    /// (`BODY.PEEK[<part>]<0.2048>`, one pipelined FETCH per part id, as the bridge reads them).
    async fn preview_page(
        &mut self,
        server_preview: bool,
        exists: usize,
    ) -> anyhow::Result<BTreeMap<u32, String>> {
        let started = Instant::now();
        let items = if server_preview {
            &self.items.summary_with_preview
        } else {
            &self.items.summary_with_first_part
        };
        let first = exists.saturating_sub(PAGE - 1).max(1);
        let mut previews = BTreeMap::new();
        let mut parts: BTreeMap<u32, BodyPart> = BTreeMap::new();
        self.exchange(
            &["NOOP".to_owned(), format!("FETCH {first}:* {items}")],
            |r| {
                let attrs = match Response::parse(r) {
                    Ok((_, Response::Fetch(_, attrs))) => attrs,
                    Ok(_) => return Ok(()),
                    Err(e) => bail!("unreadable answer: {e:?}"),
                };
                let Some(uid) = uid_of(&attrs) else {
                    return Ok(());
                };
                if server_preview && let Some(NString::Text(text)) = nstring_item(r, b"PREVIEW") {
                    previews.insert(uid, preview_from_server(&String::from_utf8_lossy(&text)));
                    return Ok(());
                }
                let structure = attrs.iter().find_map(|a| match a {
                    AttributeValue::BodyStructure(structure) => Some(structure),
                    _ => None,
                });
                match structure.map(preview_part) {
                    Some(Some(part)) => {
                        // Section 1, read with the summary, where it is the text part.
                        let first = attrs.iter().find_map(|a| match a {
                            AttributeValue::BodySection {
                                section: Some(SectionPath::Part(numbers, None)),
                                index: Some(0),
                                data,
                            } if numbers.as_slice() == [1] => {
                                Some(data.as_deref().unwrap_or_default())
                            }
                            _ => None,
                        });
                        match first {
                            Some(data) if !part.whole_body && part.part_id == "1" => {
                                let complete = data.len() < PREVIEW_FETCH_BYTES as usize
                                    || part.encoded_size <= PREVIEW_FETCH_BYTES;
                                previews.insert(uid, preview_of_part_start(data, &part, complete));
                            }
                            _ => {
                                parts.insert(uid, part);
                            }
                        }
                    }
                    Some(None) => {
                        previews.insert(uid, String::new());
                    }
                    None => {}
                }
                Ok(())
            },
        )
        .await?;
        let summaries = Instant::now();
        let mut by_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (uid, part) in &parts {
            let key = if part.whole_body {
                "TEXT".to_owned()
            } else {
                part.part_id.clone()
            };
            by_key.entry(key).or_default().push(*uid);
        }
        let commands: Vec<String> = by_key
            .iter()
            .map(|(key, uids)| {
                Ok(format!(
                    "UID FETCH {} (UID BODY.PEEK[{key}]<0.{PREVIEW_FETCH_BYTES}>)",
                    UidSet::from_uids(uids.iter().copied())?
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        if !commands.is_empty() {
            self.exchange(&commands, |r| {
                let attrs = match Response::parse(r) {
                    Ok((_, Response::Fetch(_, attrs))) => attrs,
                    Ok(_) => return Ok(()),
                    Err(e) => bail!("unreadable answer: {e:?}"),
                };
                let Some((uid, part)) = uid_of(&attrs).and_then(|u| Some((u, parts.get(&u)?)))
                else {
                    return Ok(());
                };
                for attr in &attrs {
                    if let AttributeValue::BodySection {
                        index: Some(0),
                        data,
                        ..
                    } = attr
                    {
                        let data = data.as_deref().unwrap_or_default();
                        let complete = data.len() < PREVIEW_FETCH_BYTES as usize
                            || part.encoded_size <= PREVIEW_FETCH_BYTES;
                        previews.insert(uid, preview_of_part_start(data, part, complete));
                    }
                }
                Ok(())
            })
            .await?;
        }
        self.rounds = [summaries - started, summaries.elapsed(), Duration::ZERO];
        ensure!(
            previews.len() == PAGE,
            "{} previews for a page of {PAGE}",
            previews.len()
        );
        Ok(previews)
    }

    /// The threading headers of `uids`, into the held ones.
    async fn fetch_headers(&mut self, uids: Vec<u32>) -> anyhow::Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let set = UidSet::from_uids(uids)?;
        let fetch = format!("UID FETCH {set} {}", self.items.thread_header);
        let mut held = std::mem::take(&mut self.held);
        let fetched = self
            .exchange(&[fetch], |r| {
                if let Some((uid, header)) = thread_header_of(r)? {
                    held.insert(uid, header);
                }
                Ok(())
            })
            .await;
        self.held = held;
        fetched
    }
}

fn uid_of(attrs: &[AttributeValue<'_>]) -> Option<u32> {
    attrs.iter().find_map(|a| match a {
        AttributeValue::Uid(uid) => Some(*uid),
        _ => None,
    })
}

/// A FETCH answer of the threading header items: the UID and the header, parsed.
fn thread_header_of(response: &[u8]) -> anyhow::Result<Option<(u32, ThreadHeader)>> {
    let attrs = match Response::parse(response) {
        Ok((_, Response::Fetch(_, attrs))) => attrs,
        Ok(_) => return Ok(None),
        Err(e) => bail!("unreadable answer: {e:?}"),
    };
    let mut block = None;
    for attr in &attrs {
        if let AttributeValue::BodySection { data, .. } = attr {
            block = Some(data.as_deref().unwrap_or_default());
        }
    }
    Ok(uid_of(&attrs).zip(block.map(ThreadHeader::parse)))
}

/// Threads of the held headers, as UID lists in reading order (the arrival time only stands
/// in for a missing Date, which this corpus never lacks).
fn thread_locally(headers: &BTreeMap<u32, ThreadHeader>) -> Vec<Vec<u32>> {
    let messages: Vec<Message<'_, u32>> = headers
        .iter()
        .map(|(uid, h)| h.message(*uid, None))
        .collect();
    threading::thread(&messages)
        .into_iter()
        .map(|t| t.messages.into_iter().map(|(uid, _)| uid).collect())
        .collect()
}

/// The threads of a THREAD answer (after `* THREAD`), each as its UIDs in reading order.
fn parse_threads(list: &[u8]) -> Option<Vec<Vec<u32>>> {
    let mut threads = Vec::new();
    let mut current = Vec::new();
    let mut depth = 0usize;
    let mut at = 0;
    while at < list.len() {
        match list[at] {
            b'(' => depth += 1,
            b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    threads.push(std::mem::take(&mut current));
                }
            }
            b'0'..=b'9' => {
                let start = at;
                while at + 1 < list.len() && list[at + 1].is_ascii_digit() {
                    at += 1;
                }
                current.push(std::str::from_utf8(&list[start..=at]).ok()?.parse().ok()?);
            }
            b' ' | b'\r' | b'\n' => {}
            _ => return None,
        }
        at += 1;
    }
    (depth == 0).then_some(threads)
}

/// `n` when `line` ends with a literal announcement `{n}\r\n`.
fn literal_length(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n")?.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&line[open + 1..]).ok()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The report.

/// Latency percentiles of one side of one case.
#[derive(Clone, Copy)]
struct Stats {
    median: Duration,
    p95: Duration,
    p99: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        // Nearest rank.
        let at = |p: usize| samples[(samples.len() * p).div_ceil(100).max(1) - 1];
        Stats {
            median: at(50),
            p95: at(95),
            p99: at(99),
        }
    }
}

fn mean_ms(samples: &[Duration]) -> f64 {
    samples.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / samples.len().max(1) as f64
}

impl Case {
    /// Where the time goes, in means: the bridge's IMAP commands by kind and the rest (its own
    /// work: HTTP, token, pool, caches, threading, JSON); each direct side's round trips.
    fn breakdown(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let samples = self.bridge.len().max(1) as f64;
        let bridge = mean_ms(&self.bridge);
        let imap = self.bridge_imap * 1e3 / samples;
        let commands: Vec<String> = self
            .bridge_commands
            .iter()
            .map(|(command, (count, seconds))| {
                format!(
                    "{command} {:.2} × {:.2}",
                    *count as f64 / samples,
                    seconds * 1e3 / *count as f64
                )
            })
            .collect();
        lines.push(format!(
            "means, ms: bridge {bridge:.2} = its IMAP exchanges {imap:.2} (per page, command count \
             × ms, commands sent together each showing the whole exchange: {}) + the rest {:.2}",
            commands.join(", "),
            bridge - imap
        ));
        for side in &self.direct {
            let round = |i: usize| {
                side.rounds.iter().map(|r| r[i].as_secs_f64()).sum::<f64>() * 1e3
                    / side.rounds.len().max(1) as f64
            };
            let label = side.kind.label();
            let mut text = format!(
                "           {} {:.2} =",
                label.split(':').next().unwrap_or(label),
                mean_ms(&side.samples)
            );
            for (i, name) in side.kind.rounds().iter().enumerate() {
                if !name.is_empty() {
                    let _ = write!(
                        text,
                        "{} {name} {:.2}",
                        if i == 0 { "" } else { " +" },
                        round(i)
                    );
                }
            }
            lines.push(text);
        }
        lines
    }
}

#[derive(Default)]
struct Report {
    threading: Vec<ThreadingCost>,
    profiles: Vec<ProfileRun>,
    load: (f64, f64),
    elapsed: Duration,
}

fn micros(d: Duration) -> u128 {
    d.as_micros()
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

impl Report {
    fn print(&self, folder: usize, iterations: usize) {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(format!(
            "imap-bridge threads: the first page of {PAGE} threads of a folder of {folder} \
             messages in conversations, the bridge (in-process, HTTP/1.1 on loopback) vs a \
             direct IMAP client, same Dovecot over TLS on loopback; {cores} cores; \
             {iterations} samples per side; times in µs"
        ));
        line(String::new());
        line("threading alone (mail::threading::thread, headers parsed beforehand):".to_owned());
        for cost in &self.threading {
            line(format!(
                "  {:>7} messages ({} conversations → {} threads): median {} µs, p95 {} µs, \
                 p99 {} µs",
                cost.messages,
                cost.conversations,
                cost.threads,
                micros(cost.stats.median),
                micros(cost.stats.p95),
                micros(cost.stats.p99),
            ));
        }
        for run in &self.profiles {
            line(String::new());
            line(format!(
                "{}: {} threads; {} → {} messages during the run; bridge cold (login's first \
                 page, nothing cached) {} ms; priming the direct sides {} ms",
                run.profile.label(),
                run.threads,
                run.messages_before,
                run.messages_after,
                run.cold.as_millis(),
                run.priming.as_millis(),
            ));
            let threads = "bridge: GET /v1/mailboxes/INBOX/threads?limit=50&preview=false";
            for (title, bridge_label, case, goal) in [
                (
                    "threads: warm page after one new message",
                    threads,
                    &run.warm,
                    WARM_RATIO,
                ),
                (
                    "threads: cached repeat, nothing new",
                    threads,
                    &run.cached,
                    CACHED_RATIO,
                ),
                (
                    "header page of 50 with previews, the summary cache off (each page fetches \
                     its summaries and previews)",
                    "bridge, IMAP_BRIDGE_CACHE_SIZE=0: GET /v1/mailboxes/INBOX/messages?limit=50",
                    &run.previews,
                    PREVIEW_RATIO,
                ),
                (
                    "header page of 50 with previews, cached repeat",
                    "bridge: GET /v1/mailboxes/INBOX/messages?limit=50",
                    &run.previews_cached,
                    CACHED_RATIO,
                ),
            ] {
                line(format!("  {title}"));
                line(format!(
                    "    {:<84} {:>8} {:>8} {:>8}  {:>7}  goal",
                    "side", "median", "p95", "p99", "b/d"
                ));
                let bridge = Stats::of(case.bridge.clone());
                line(format!(
                    "    {:<84} {:>8} {:>8} {:>8}",
                    bridge_label,
                    micros(bridge.median),
                    micros(bridge.p95),
                    micros(bridge.p99),
                ));
                for (i, side) in case.direct.iter().enumerate() {
                    let (kind, samples) = (side.kind, &side.samples);
                    let direct = Stats::of(samples.clone());
                    let r = ratio(bridge.median, direct.median);
                    let judged = if i == 0 {
                        format!("≤ {goal}×: {}", verdict(r <= goal))
                    } else {
                        "(reference)".to_owned()
                    };
                    line(format!(
                        "    {:<84} {:>8} {:>8} {:>8}  {r:>6.2}x  {judged}",
                        kind.label(),
                        micros(direct.median),
                        micros(direct.p95),
                        micros(direct.p99),
                    ));
                }
                for text in case.breakdown() {
                    line(format!("    {text}"));
                }
            }
        }
        line(String::new());
        line(format!(
            "cores {cores}; load average {:.2} at start, {:.2} at end (other work on the \
             machine skews every figure); whole run {:.1} s",
            self.load.0,
            self.load.1,
            self.elapsed.as_secs_f64()
        ));
        print!("{out}");
    }
}
