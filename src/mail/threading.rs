//! Threading messages into conversations by `Message-ID`, `In-Reply-To` and `References`:
//! the REFERENCES algorithm of RFC 5256 §3 (Jamie Zawinski's), for servers without
//! `THREAD=REFERENCES` and for threads that span mailboxes (a conversation with the user's
//! own replies from Sent), which no server threads.
//!
//! The steps, as the RFC numbers them:
//!
//! 1. Each message gets a container under its Message-ID (a message without one, or whose id
//!    another message already has, gets a container of its own). Its references (the
//!    `References` ids, or else the first `In-Reply-To` id) are linked parent to child in
//!    order, where that makes no loop and the child has no parent yet; then the message's
//!    parent becomes its last reference (or none), replacing any parent an earlier message
//!    gave it.
//! 2. The containers without a parent are the roots.
//! 4. Containers that stand only for a referenced id ("dummies") are pruned: one without
//!    children goes; one with children gives them to its parent, and at the root level only
//!    when it has a single child.
//! 5. Roots are sorted by sent date, then roots with the same base subject (RFC 5256 §2.1:
//!    without `Re:`, `Fwd:`, `[list]` tags and `(fwd)` trailers) are gathered, so that a reply
//!    that lost its references joins its thread.
//! 6. Siblings are sorted by sent date (a dummy by its first child's).
//!
//! Cost: linear in the messages and their references, plus the sorting of siblings and
//! roots, O(n log n); a folder of 10,000 messages threads in a few milliseconds. What it takes
//! from the server is each message's Message-ID, In-Reply-To, References, Subject and Date.

use std::collections::{HashMap, HashSet};

use super::address::parse_address_list;
use super::content::first_field;
use super::summary::{Address, decode_header_text, parse_internal_date, parse_rfc2822_date};

/// One message to thread, borrowing its text from wherever the caller keeps it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a, K> {
    /// What the caller knows the message by (a UID, a mailbox and a UID...).
    pub key: K,
    /// The Message-ID, angle brackets included or not.
    pub message_id: Option<&'a str>,
    /// The `References` header's raw value, if any.
    pub references: Option<&'a str>,
    /// The `In-Reply-To` header's raw value, if any.
    pub in_reply_to: Option<&'a str>,
    /// The decoded subject.
    pub subject: &'a str,
    /// The sent date (the Date header, or the arrival time when it has none), in seconds.
    pub date: i64,
}

/// A thread: its messages in reading order (each message before its replies, siblings
/// oldest first), each with its depth in the reply tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread<K> {
    /// The messages with their depth (0 for the first message, 1 for its replies…). A
    /// message whose parent is missing sits where the parent would.
    pub messages: Vec<(K, usize)>,
}

impl<K: Clone> Thread<K> {
    /// The messages' keys in reading order.
    pub fn keys(&self) -> Vec<K> {
        self.messages.iter().map(|(k, _)| k.clone()).collect()
    }
}

/// The header fields a [`ThreadHeader`] is read from, as `BODY.PEEK[HEADER.FIELDS (…)]`
/// names them.
pub const THREAD_HEADER_FIELDS: &str = "MESSAGE-ID IN-REPLY-TO REFERENCES SUBJECT DATE FROM";

/// What threading and a thread list take from one message's header: the fields that link it
/// to other messages, its subject, sent date and authors. It never changes for a message, so
/// it can be kept for as long as the message's UID stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadHeader {
    /// The Message-ID as written (angle brackets included), unfolded.
    pub message_id: Option<String>,
    /// The `References` value, unfolded.
    pub references: Option<String>,
    /// The `In-Reply-To` value, unfolded.
    pub in_reply_to: Option<String>,
    /// The subject, RFC 2047 decoded.
    pub subject: Option<String>,
    /// The Date header in seconds since the epoch, when it is readable.
    pub date: Option<i64>,
    /// The authors (From), read as mail clients read the field.
    pub from: Vec<Address>,
}

impl ThreadHeader {
    /// Reads the fields of [`THREAD_HEADER_FIELDS`] from a header block (others are ignored).
    pub fn parse(block: &[u8]) -> Self {
        let unfolded = |name: &str| {
            first_field(block, name).and_then(|raw| {
                let text = String::from_utf8_lossy(raw);
                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                (!text.is_empty()).then_some(text)
            })
        };
        ThreadHeader {
            message_id: unfolded("Message-ID"),
            references: unfolded("References"),
            in_reply_to: unfolded("In-Reply-To"),
            subject: first_field(block, "Subject").map(decode_header_text),
            date: first_field(block, "Date")
                .and_then(parse_rfc2822_date)
                .and_then(|date| rfc3339_seconds(&date)),
            from: first_field(block, "From")
                .map(parse_address_list)
                .unwrap_or_default(),
        }
    }

    /// Where the message's conversation started, by the message's own account: the first id
    /// of its `References` (RFC 5322 §3.6.4 puts the conversation's first message there),
    /// else the first id of its `In-Reply-To`, else its own Message-ID; without angle
    /// brackets. `None` for a message that names no id at all.
    ///
    /// Every reply of a well-formed conversation names the same origin, and so does its first
    /// message (its own id), so the origin of a thread's first message stays the same when an
    /// earlier message joins the thread or the first one is deleted.
    pub fn origin(&self) -> Option<&str> {
        fn first(value: Option<&str>) -> Option<&str> {
            value.and_then(|v| message_ids(v).first().copied())
        }
        first(self.references.as_deref())
            .or_else(|| first(self.in_reply_to.as_deref()))
            .or_else(|| self.message_id.as_deref().and_then(own_id))
    }

    /// The message as [`thread`] takes it: `received` (the arrival time, in seconds) stands in
    /// for a missing or unreadable Date.
    pub fn message<K>(&self, key: K, received: Option<i64>) -> Message<'_, K> {
        Message {
            key,
            message_id: self.message_id.as_deref(),
            references: self.references.as_deref(),
            in_reply_to: self.in_reply_to.as_deref(),
            subject: self.subject.as_deref().unwrap_or_default(),
            date: self.date.or(received).unwrap_or(0),
        }
    }
}

/// An IMAP INTERNALDATE (`17-Jul-1996 02:44:25 -0700`) in seconds since the epoch.
pub fn internal_date_seconds(value: &str) -> Option<i64> {
    parse_internal_date(value).and_then(|date| rfc3339_seconds(&date))
}

fn rfc3339_seconds(value: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(value)
        .ok()
        .map(|date| date.timestamp())
}

/// The distinct authors of a thread's messages, given in reading order: each address once
/// (compared without regard to letter case), in the order they first wrote, at most `max`.
pub fn participants<'a>(
    authors: impl IntoIterator<Item = &'a [Address]>,
    max: usize,
) -> Vec<Address> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for address in authors.into_iter().flatten() {
        if out.len() == max {
            break;
        }
        if seen.insert(address.address.to_lowercase()) {
            out.push(address.clone());
        }
    }
    out
}

/// The message ids in a header value (`<a@b> <c@d>`), without their angle brackets; text
/// outside brackets (comments, broken ids) is skipped.
pub fn message_ids(value: &str) -> Vec<&str> {
    let mut ids = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(['>', '<']) else {
            break;
        };
        let id = after[..close].trim();
        if after.as_bytes()[close] == b'>' && !id.is_empty() && !id.contains(char::is_whitespace) {
            ids.push(id);
        }
        rest = &after[close..];
        if rest.starts_with('>') {
            rest = &rest[1..];
        }
    }
    ids
}

/// A message's Message-ID without angle brackets, if it has a usable one.
fn own_id(value: &str) -> Option<&str> {
    match message_ids(value).first() {
        Some(id) => Some(id),
        None => {
            let bare = value.trim();
            (!bare.is_empty() && !bare.contains(char::is_whitespace)).then_some(bare)
        }
    }
}

/// The base subject of RFC 5256 §2.1, lower-cased for comparison, and whether the subject
/// was a reply or a forward (had a `Re:`, `Fwd:` or `(fwd)` taken off).
pub fn base_subject(subject: &str) -> (String, bool) {
    let mut text = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut reply = false;
    loop {
        // (2) trailers: `(fwd)` and white space.
        loop {
            let trimmed = text.trim_end();
            let lower = trimmed.to_lowercase();
            if lower.ends_with("(fwd)") {
                text = trimmed[..trimmed.len() - "(fwd)".len()].to_owned();
                reply = true;
            } else {
                text = trimmed.to_owned();
                break;
            }
        }
        // (3), (4), (5): leaders, `Re:`, `Fw:`, `Fwd:` with their `[blob]`s.
        loop {
            let start = text.trim_start();
            if let Some(rest) = strip_refwd(start) {
                text = rest.to_owned();
                reply = true;
                continue;
            }
            if let Some(rest) = strip_blob(start)
                && !rest.trim().is_empty()
            {
                text = rest.to_owned();
                continue;
            }
            text = start.to_owned();
            break;
        }
        // (6) `[fwd: … ]`
        let lower = text.to_lowercase();
        if lower.starts_with("[fwd:") && text.ends_with(']') {
            text = text["[fwd:".len()..text.len() - 1].to_owned();
            reply = true;
            continue;
        }
        break;
    }
    (text.trim().to_lowercase(), reply)
}

/// `subj-blob`: `[…]` without brackets inside, and the white space after it.
fn strip_blob(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('[')?;
    let close = inner.find([']', '['])?;
    (inner.as_bytes()[close] == b']').then(|| inner[close + 1..].trim_start())
}

/// `subj-refwd`: `re`, `fw` or `fwd`, white space, an optional blob, and `:`; and the blobs
/// before it (`subj-leader`).
fn strip_refwd(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(after) = strip_blob(rest) {
        rest = after;
    }
    let lower = rest
        .get(..3)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let word = if lower.starts_with("re") {
        2
    } else if lower == "fwd" {
        3
    } else if lower.starts_with("fw") {
        2
    } else {
        return None;
    };
    let mut after = rest[word..].trim_start();
    if let Some(blob) = strip_blob(after) {
        after = blob;
    }
    after.strip_prefix(':')
}

struct Container {
    message: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Threader<'a, K> {
    messages: &'a [Message<'a, K>],
    containers: Vec<Container>,
}

impl<K: Clone> Threader<'_, K> {
    fn add(&mut self) -> usize {
        self.containers.push(Container {
            message: None,
            parent: None,
            children: Vec::new(),
        });
        self.containers.len() - 1
    }

    /// Whether `ancestor` is `node` or above it. A container without children is above
    /// nothing, which spares the walk up a deep chain for every new message.
    fn is_ancestor(&self, ancestor: usize, mut node: usize) -> bool {
        if node != ancestor && self.containers[ancestor].children.is_empty() {
            return false;
        }
        loop {
            if node == ancestor {
                return true;
            }
            match self.containers[node].parent {
                Some(parent) => node = parent,
                None => return false,
            }
        }
    }

    fn unlink(&mut self, child: usize) {
        if let Some(parent) = self.containers[child].parent.take() {
            self.containers[parent].children.retain(|&c| c != child);
        }
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.unlink(child);
        self.containers[child].parent = Some(parent);
        self.containers[parent].children.push(child);
    }

    /// The sent date of a container: its message's, or its first child's.
    fn date(&self, container: usize) -> (i64, usize) {
        let mut node = container;
        loop {
            let c = &self.containers[node];
            if let Some(m) = c.message {
                return (self.messages[m].date, m);
            }
            match c.children.first() {
                Some(&child) => node = child,
                None => return (i64::MAX, usize::MAX),
            }
        }
    }

    /// The containers under `roots`, each after all of its descendants (post-order), found
    /// without recursion: reference chains can be as deep as a hostile sender makes them.
    fn post_order(&self, roots: &[usize]) -> Vec<usize> {
        let mut order = Vec::new();
        let mut stack: Vec<usize> = roots.to_vec();
        while let Some(node) = stack.pop() {
            order.push(node);
            stack.extend(self.containers[node].children.iter().copied());
        }
        order.reverse();
        order
    }

    /// Step 4: under each root, dummies without children go and dummies with children give
    /// them to their parent; at the root level a dummy goes only when it has one child.
    fn prune(&mut self, roots: Vec<usize>) -> Vec<usize> {
        for node in self.post_order(&roots) {
            let children = std::mem::take(&mut self.containers[node].children);
            let mut kept = Vec::with_capacity(children.len());
            for child in children {
                if self.containers[child].message.is_some() {
                    kept.push(child);
                } else {
                    let grandchildren = std::mem::take(&mut self.containers[child].children);
                    for &g in &grandchildren {
                        self.containers[g].parent = Some(node);
                    }
                    kept.extend(grandchildren);
                }
            }
            self.containers[node].children = kept;
        }
        let mut out = Vec::with_capacity(roots.len());
        for root in roots {
            let c = &self.containers[root];
            if c.message.is_some() || c.children.len() > 1 {
                out.push(root);
            } else if let Some(&only) = c.children.first() {
                self.containers[only].parent = None;
                out.push(only);
            }
        }
        out
    }

    fn subject_of(&self, container: usize) -> (String, bool) {
        let (_, message) = self.date(container);
        match self.messages.get(message) {
            Some(m) => base_subject(m.subject),
            None => (String::new(), false),
        }
    }

    /// Step 6: siblings oldest first under `roots`, deepest first so that a dummy's date is
    /// its sorted first child's.
    fn sort_children(&mut self, roots: &[usize]) {
        for node in self.post_order(roots) {
            let mut children = std::mem::take(&mut self.containers[node].children);
            children.sort_by_key(|&c| self.date(c));
            self.containers[node].children = children;
        }
    }

    /// The thread under `root` in reading order.
    fn flatten(&self, root: usize) -> Thread<K> {
        let mut messages = Vec::new();
        let mut stack = vec![(root, 0usize)];
        while let Some((node, depth)) = stack.pop() {
            let c = &self.containers[node];
            let depth_below = match c.message {
                Some(m) => {
                    messages.push((self.messages[m].key.clone(), depth));
                    depth + 1
                }
                None => depth,
            };
            stack.extend(c.children.iter().rev().map(|&child| (child, depth_below)));
        }
        Thread { messages }
    }
}

/// Threads `messages` (RFC 5256 REFERENCES): the threads, oldest first by their first
/// message's sent date.
pub fn thread<K: Clone>(messages: &[Message<'_, K>]) -> Vec<Thread<K>> {
    let mut t = Threader {
        messages,
        containers: Vec::with_capacity(messages.len() * 2),
    };
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(messages.len() * 2);
    for (index, message) in messages.iter().enumerate() {
        // (1A)
        let own = message.message_id.and_then(own_id);
        let container = match own.and_then(|id| ids.get(id).copied()) {
            Some(c) if t.containers[c].message.is_none() => c,
            _ => {
                let c = t.add();
                if let Some(id) = own {
                    ids.entry(id).or_insert(c);
                }
                c
            }
        };
        t.containers[container].message = Some(index);
        // (1B)
        let mut references = message.references.map(message_ids).unwrap_or_default();
        if references.is_empty() {
            references = message
                .in_reply_to
                .map(message_ids)
                .unwrap_or_default()
                .into_iter()
                .take(1)
                .collect();
        }
        let mut previous: Option<usize> = None;
        for id in references {
            let reference = match ids.get(id) {
                Some(&c) => c,
                None => {
                    let c = t.add();
                    ids.insert(id, c);
                    c
                }
            };
            if let Some(parent) = previous
                && t.containers[reference].parent.is_none()
                && !t.is_ancestor(reference, parent)
            {
                t.link(parent, reference);
            }
            previous = Some(reference);
        }
        // (1C)
        match previous {
            Some(parent) if !t.is_ancestor(container, parent) => t.link(parent, container),
            _ => t.unlink(container),
        }
    }
    // (2), (4)
    let roots: Vec<usize> = (0..t.containers.len())
        .filter(|&c| t.containers[c].parent.is_none())
        .collect();
    let mut roots = t.prune(roots);
    t.sort_children(&roots);
    // (5A)
    roots.sort_by_key(|&c| t.date(c));
    // (5B)
    let mut by_subject: HashMap<String, usize> = HashMap::new();
    for &root in &roots {
        let (subject, reply) = t.subject_of(root);
        if subject.is_empty() {
            continue;
        }
        match by_subject.get(&subject) {
            None => {
                by_subject.insert(subject, root);
            }
            Some(&current) => {
                let current_dummy = t.containers[current].message.is_none();
                let this_dummy = t.containers[root].message.is_none();
                let current_reply = t.subject_of(current).1;
                if (this_dummy && !current_dummy) || (current_reply && !reply && !this_dummy) {
                    by_subject.insert(subject, root);
                }
            }
        }
    }
    // (5C)
    let mut kept = Vec::with_capacity(roots.len());
    let mut merged_into: HashMap<usize, usize> = HashMap::new();
    for &root in &roots {
        let (subject, reply) = t.subject_of(root);
        let Some(&target) = by_subject.get(&subject).filter(|_| !subject.is_empty()) else {
            kept.push(root);
            continue;
        };
        let target = merged_into.get(&target).copied().unwrap_or(target);
        if target == root {
            kept.push(root);
            continue;
        }
        let target_dummy = t.containers[target].message.is_none();
        let root_dummy = t.containers[root].message.is_none();
        let target_reply = t.subject_of(target).1;
        if target_dummy && root_dummy {
            for child in std::mem::take(&mut t.containers[root].children) {
                t.containers[child].parent = None;
                t.link(target, child);
            }
        } else if target_dummy || (reply && !target_reply) {
            t.link(target, root);
        } else {
            let dummy = t.add();
            let position = kept.iter().position(|&k| k == target);
            t.link(dummy, target);
            t.link(dummy, root);
            merged_into.insert(target, dummy);
            if let Some(slot) = position.and_then(|p| kept.get_mut(p)) {
                *slot = dummy;
            }
            by_subject.insert(subject, dummy);
        }
    }
    // (6)
    t.sort_children(&kept);
    kept.iter().map(|&root| t.flatten(root)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<'a>(
        key: u32,
        id: &'a str,
        references: &'a str,
        in_reply_to: &'a str,
        subject: &'a str,
        date: i64,
    ) -> Message<'a, u32> {
        let some = |s: &'a str| (!s.is_empty()).then_some(s);
        Message {
            key,
            message_id: some(id),
            references: some(references),
            in_reply_to: some(in_reply_to),
            subject,
            date,
        }
    }

    /// A thread from `(key, depth)` pairs.
    fn t(messages: &[(u32, usize)]) -> Thread<u32> {
        Thread {
            messages: messages.to_vec(),
        }
    }

    #[test]
    fn base_subjects_lose_reply_and_forward_markers() {
        for (subject, base, reply) in [
            ("Hello", "hello", false),
            ("Re: Hello", "hello", true),
            ("RE: re: Fwd: Hello", "hello", true),
            ("Re[2]: Hello", "hello", true),
            ("[list] Re: Hello", "hello", true),
            ("Re: [list] Hello", "hello", true),
            ("Hello (fwd)", "hello", true),
            ("[Fwd: Hello]", "hello", true),
            ("  Hello   world  ", "hello world", false),
            ("[list]", "[list]", false),
            ("Fw: Hello", "hello", true),
            ("Reply to all", "reply to all", false),
            ("", "", false),
        ] {
            assert_eq!(
                base_subject(subject),
                (base.to_owned(), reply),
                "{subject:?}"
            );
        }
    }

    #[test]
    fn thread_headers_are_read_from_the_fetched_fields() {
        let header = ThreadHeader::parse(
            b"Message-ID: <b@x>\r\nReferences: <a@x>\r\n <m@x>\r\nIn-Reply-To: <m@x>\r\n\
              Subject: =?UTF-8?Q?Re:_Pl=C3=A4ne?=\r\nDate: Mon, 06 May 2024 12:00:00 +0200\r\n\
              From: Bob <bob@example.test>, carol@example.test\r\n\r\n",
        );
        assert_eq!(header.message_id.as_deref(), Some("<b@x>"));
        assert_eq!(header.references.as_deref(), Some("<a@x> <m@x>"));
        assert_eq!(header.in_reply_to.as_deref(), Some("<m@x>"));
        assert_eq!(header.subject.as_deref(), Some("Re: Pläne"));
        assert_eq!(header.date, Some(1_714_989_600));
        let from: Vec<&str> = header.from.iter().map(|a| a.address.as_str()).collect();
        assert_eq!(from, ["bob@example.test", "carol@example.test"]);
        assert_eq!(header.origin(), Some("a@x"));
        let message = header.message(7u32, Some(5));
        assert_eq!((message.key, message.date), (7, 1_714_989_600));
        assert_eq!(message.subject, "Re: Pläne");

        let bare = ThreadHeader::parse(b"Subject: Hi\r\nDate: not a date\r\n\r\n");
        assert_eq!(bare.origin(), None);
        assert_eq!(bare.message(1u32, Some(42)).date, 42, "arrival stands in");
        assert_eq!(bare.message(1u32, None).date, 0);
        assert_eq!(
            internal_date_seconds("06-May-2024 12:00:00 +0000"),
            Some(1_714_996_800)
        );
    }

    #[test]
    fn the_origin_is_where_the_conversation_started() {
        let header = |id: &str, references: &str, in_reply_to: &str| ThreadHeader {
            message_id: (!id.is_empty()).then(|| id.to_owned()),
            references: (!references.is_empty()).then(|| references.to_owned()),
            in_reply_to: (!in_reply_to.is_empty()).then(|| in_reply_to.to_owned()),
            ..ThreadHeader::default()
        };
        assert_eq!(header("<a@x>", "", "").origin(), Some("a@x"));
        assert_eq!(
            header("<c@x>", "<a@x> <b@x>", "<b@x>").origin(),
            Some("a@x")
        );
        assert_eq!(header("<c@x>", "", "<b@x> <z@x>").origin(), Some("b@x"));
        // A broken References falls through to what is usable.
        assert_eq!(header("<c@x>", "garbage", "").origin(), Some("c@x"));
        assert_eq!(header("bare@id", "", "").origin(), Some("bare@id"));
        assert_eq!(header("", "", "").origin(), None);
    }

    #[test]
    fn participants_are_the_distinct_authors_in_order() {
        let address = |a: &str| Address {
            name: None,
            address: a.to_owned(),
        };
        let bob = [address("bob@x")];
        let alice = [address("Alice@x")];
        let both = [address("alice@X"), address("carol@x")];
        let authors: [&[Address]; 4] = [&bob, &alice, &bob, &both];
        let names = |max| -> Vec<String> {
            participants(authors, max)
                .into_iter()
                .map(|a| a.address)
                .collect()
        };
        assert_eq!(names(10), ["bob@x", "Alice@x", "carol@x"]);
        assert_eq!(names(2), ["bob@x", "Alice@x"]);
    }

    #[test]
    fn message_ids_are_read_from_header_values() {
        assert_eq!(message_ids("<a@x> <b@y>"), ["a@x", "b@y"]);
        assert_eq!(message_ids("<a@x>\r\n\t<b@y> (comment)"), ["a@x", "b@y"]);
        assert_eq!(message_ids("broken <a@x <b@y>"), ["b@y"]);
        assert!(message_ids("no ids here").is_empty());
        assert!(message_ids("<> < >").is_empty());
    }

    #[test]
    fn replies_hang_under_what_they_answer() {
        let threads = thread(&[
            message(1, "<a@x>", "", "", "Plan", 10),
            message(2, "<b@x>", "<a@x>", "<a@x>", "Re: Plan", 20),
            message(3, "<c@x>", "<a@x> <b@x>", "<b@x>", "Re: Plan", 30),
            message(4, "<d@x>", "<a@x>", "", "Re: Plan", 25),
            message(5, "<e@x>", "", "", "Other", 15),
        ]);
        assert_eq!(
            threads,
            [t(&[(1, 0), (2, 1), (3, 2), (4, 1)]), t(&[(5, 0)])]
        );
        assert_eq!(threads[0].keys(), [1, 2, 3, 4]);
    }

    #[test]
    fn a_missing_parent_keeps_its_replies_together() {
        // Two replies to a message that is not there: one thread under a dummy.
        let threads = thread(&[
            message(1, "<b@x>", "<a@x>", "", "Re: Plan", 20),
            message(2, "<c@x>", "<a@x>", "", "Re: Plan", 30),
        ]);
        assert_eq!(threads, [t(&[(1, 0), (2, 0)])]);
        // One reply alone is promoted in the dummy's place.
        let threads = thread(&[message(1, "<b@x>", "<a@x>", "", "Re: Plan", 20)]);
        assert_eq!(threads, [t(&[(1, 0)])]);
    }

    #[test]
    fn in_reply_to_stands_in_for_missing_references() {
        let threads = thread(&[
            message(1, "<a@x>", "", "", "Plan", 10),
            message(2, "<b@x>", "", "<a@x> <zzz@x>", "Re: Plan", 20),
        ]);
        assert_eq!(threads, [t(&[(1, 0), (2, 1)])]);
    }

    #[test]
    fn broken_references_do_not_make_loops() {
        // Each claims the other as its parent, and one references itself.
        let threads = thread(&[
            message(1, "<a@x>", "<b@x>", "", "Loop", 10),
            message(2, "<b@x>", "<a@x>", "", "Re: Loop", 20),
            message(3, "<c@x>", "<c@x>", "", "Self", 30),
        ]);
        let mut keys: Vec<u32> = threads.iter().flat_map(Thread::keys).collect();
        keys.sort_unstable();
        assert_eq!(keys, [1, 2, 3], "every message once: {threads:?}");
        assert_eq!(threads.len(), 2, "{threads:?}");
    }

    #[test]
    fn a_reply_that_lost_its_references_joins_by_subject() {
        let threads = thread(&[
            message(1, "<a@x>", "", "", "Budget 2027", 10),
            message(2, "<b@x>", "", "", "Re: Budget 2027", 20),
            message(3, "<c@x>", "", "", "Budget 2027", 30),
        ]);
        // The reply goes under the original; two originals with one subject share a dummy.
        assert_eq!(threads.len(), 1, "{threads:?}");
        // Under a dummy: the two originals side by side, the reply under the first.
        assert_eq!(threads[0], t(&[(1, 0), (2, 1), (3, 0)]));
    }

    #[test]
    fn duplicate_and_missing_message_ids_stay_separate_messages() {
        let threads = thread(&[
            message(1, "<a@x>", "", "", "One", 10),
            message(2, "<a@x>", "", "", "Two", 20),
            message(3, "", "", "", "Three", 30),
        ]);
        assert_eq!(threads, [t(&[(1, 0)]), t(&[(2, 0)]), t(&[(3, 0)])]);
    }

    #[test]
    fn a_thread_spans_mailboxes_when_the_keys_say_where() {
        let threads = thread(&[
            Message {
                key: ("INBOX", 7),
                message_id: Some("<a@x>"),
                references: None,
                in_reply_to: None,
                subject: "Trip",
                date: 10,
            },
            Message {
                key: ("Sent", 3),
                message_id: Some("<b@me>"),
                references: Some("<a@x>"),
                in_reply_to: Some("<a@x>"),
                subject: "Re: Trip",
                date: 20,
            },
        ]);
        assert_eq!(threads.len(), 1);
        assert_eq!(threads[0].keys(), [("INBOX", 7), ("Sent", 3)]);
    }

    #[test]
    fn a_chain_ten_thousand_deep_threads_without_recursion() {
        let text: Vec<(String, String)> = (0..10_000u32)
            .map(|i| {
                let references = (i.saturating_sub(20)..i)
                    .map(|r| format!("<m{r}@x>"))
                    .collect::<Vec<_>>()
                    .join(" ");
                (format!("<m{i}@x>"), references)
            })
            .collect();
        let messages: Vec<Message<u32>> = (0u32..)
            .zip(&text)
            .map(|(i, (id, references))| message(i, id, references, "", "Chain", i64::from(i)))
            .collect();
        let threads = thread(&messages);
        assert_eq!(threads.len(), 1);
        assert_eq!(threads[0].messages.len(), 10_000);
        assert_eq!(threads[0].messages[9_999], (9_999, 9_999));
    }
}
