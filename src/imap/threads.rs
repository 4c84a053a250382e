//! Conversations: a mailbox's thread list page by page, and one thread with its messages.
//!
//! Threads come from the server where it offers `THREAD=REFERENCES` (RFC 5256): `UID THREAD
//! REFERENCES`, whose responses the response parser cannot read, so the connection's guard
//! takes them out of the stream
//! ([`GuardedStream::tap_threads`](super::guard::GuardedStream::tap_threads)) and they are
//! parsed here. Elsewhere, and whenever the user's Sent mailbox joins the threads (which no
//! server threads across mailboxes), the bridge threads the messages itself
//! ([`crate::mail::threading`]) from their `Message-ID`, `In-Reply-To`, `References`,
//! `Subject` and `Date`, which it fetches once per message (with `From`, for participants) and
//! keeps ([`super::thread_cache`]). Which threads a page holds and what each is called is decided
//! in [`super::thread_index`].
//!
//! A request costs, on a warm session: a NOOP; STATUS (with the THREAD command when no list of
//! this query is cached); then, only if the cached list is stale, the THREAD command (or a
//! `UID SEARCH` and the headers of the messages the cache lacks); the headers the page's
//! threads need that the cache lacks; a `UID SEARCH UNSEEN` among the page's messages; and the
//! summaries of the threads' latest messages (one `UID FETCH`, from the summary cache where it
//! has them). With `include_sent`, a LIST finds the Sent mailbox and a STATUS of it goes along;
//! threading Sent's new mail anew selects it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response, StatusAttribute};

use super::connection::{Connection, wire_string};
use super::encode::{Command, InvalidArgument, MailboxName, SearchKey, UidSet};
use super::error::{ImapError, Result};
use super::mailboxes::SpecialUse;
use super::state::{MailboxState, PageCursor, ThreadId, server_modseq};
use super::thread_cache::{CachedHeader, IndexStamp, MailboxHeaders, Snapshot, ThreadScope};
use super::thread_index::{IndexedThread, Mailboxes, Side, ThreadIndex};
use crate::mail::summary::{Address, Summary};
use crate::mail::threading::{self, Message, Thread, ThreadHeader};

/// What a FETCH asks for a message's threading header: the fields of
/// [`threading::THREAD_HEADER_FIELDS`] and the arrival time.
const HEADER_ITEMS: &str = "(UID INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID IN-REPLY-TO \
     REFERENCES SUBJECT DATE FROM)])";

/// Most headers asked for in one FETCH.
const HEADER_BATCH: usize = 5000;

/// Most participants a thread lists.
pub const MAX_PARTICIPANTS: usize = 20;

/// Which threads: of which messages, and whether the user's Sent mail joins them.
#[derive(Debug, Clone, Default)]
pub struct ThreadQuery {
    /// SEARCH criteria the listed mailbox's messages must match (every message when empty):
    /// threads are built from the matching messages only. They do not apply to Sent.
    pub filters: Vec<SearchKey>,
    /// Whether the messages of the user's Sent mailbox join the threads they belong to.
    pub include_sent: bool,
}

/// Which page of a thread list.
#[derive(Debug, Clone, Copy)]
pub struct ThreadPageRequest {
    /// Threads per page, at least 1.
    pub limit: u32,
    /// Where to continue, from the previous page.
    pub cursor: Option<PageCursor>,
    /// Fingerprint of the query, stored in cursors.
    pub query: u32,
    /// Whether the latest messages' summaries carry their previews.
    pub preview: bool,
}

/// A thread as a list shows it.
#[derive(Debug, Clone)]
pub struct ThreadSummary {
    /// Its id.
    pub id: ThreadId,
    /// Its first message's subject.
    pub subject: Option<String>,
    /// UIDs of its messages in the listed mailbox, in reading order.
    pub uids: Vec<u32>,
    /// Those of them without `\Seen`.
    pub unread_uids: Vec<u32>,
    /// UIDs of its messages in Sent, in reading order (empty without `include_sent`).
    pub sent_uids: Vec<u32>,
    /// Its distinct authors in reading order, at most [`MAX_PARTICIPANTS`].
    pub participants: Vec<Address>,
    /// The summary of its latest message in the listed mailbox.
    pub latest: Summary,
}

/// A page of a thread list.
#[derive(Debug)]
pub struct ThreadPage {
    /// UIDVALIDITY of the listed mailbox.
    pub uid_validity: u32,
    /// The listed mailbox's delta-sync state, taken before the list was read.
    pub state: MailboxState,
    /// Threads in the list.
    pub total: u32,
    /// The Sent mailbox whose messages joined the threads.
    pub sent_mailbox: Option<MailboxName>,
    /// The page, newest thread first.
    pub threads: Vec<ThreadSummary>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<PageCursor>,
}

/// One message of a thread.
#[derive(Debug, Clone)]
pub struct ThreadMessage {
    /// Its mailbox: the listed one, or Sent.
    pub side: Side,
    /// Its depth in the reply tree.
    pub depth: u32,
    /// Its summary.
    pub summary: Summary,
}

/// A thread with its messages.
#[derive(Debug)]
pub struct ThreadDetail {
    /// Its id.
    pub id: ThreadId,
    /// UIDVALIDITY of the listed mailbox.
    pub uid_validity: u32,
    /// The Sent mailbox whose messages joined the thread.
    pub sent_mailbox: Option<MailboxName>,
    /// Its first message's subject.
    pub subject: Option<String>,
    /// Its distinct authors in reading order, at most [`MAX_PARTICIPANTS`].
    pub participants: Vec<Address>,
    /// Its messages in reading order (those expunged since the list was computed left out).
    pub messages: Vec<ThreadMessage>,
}

/// A mailbox's thread list as one request sees it.
struct ThreadView {
    state: MailboxState,
    index: Arc<ThreadIndex>,
    /// The Sent mailbox whose messages are threaded in, and its UIDVALIDITY.
    sent: Option<(MailboxName, u32)>,
}

/// Whether messages matching `keys` change with their flags.
fn depends_on_flags(keys: &[SearchKey]) -> bool {
    let mut pending: Vec<&SearchKey> = keys.iter().collect();
    while let Some(key) = pending.pop() {
        match key {
            SearchKey::Unseen
            | SearchKey::Seen
            | SearchKey::Flagged
            | SearchKey::Unflagged
            | SearchKey::Answered
            | SearchKey::Deleted
            | SearchKey::Undeleted
            | SearchKey::Draft
            | SearchKey::Keyword(_) => return true,
            SearchKey::Not(operand) => pending.push(operand),
            SearchKey::Or(left, right) => {
                pending.push(left);
                pending.push(right);
            }
            _ => {}
        }
    }
    false
}

/// Whether a STATUS response's mailbox (as it came on the wire) is `name`.
fn names(name: &MailboxName, wire: &str) -> bool {
    wire == name.to_imap() || (name.is_inbox() && wire.eq_ignore_ascii_case("INBOX"))
}

/// A STATUS response folded into a snapshot (and the HIGHESTMODSEQ it reported).
fn snapshot(status: &[StatusAttribute]) -> (Snapshot, u64) {
    let mut snapshot = Snapshot {
        uid_validity: 0,
        uid_next: 1,
        messages: 0,
        modseq: 0,
    };
    let mut modseq = 0;
    for attr in status {
        match attr {
            StatusAttribute::UidValidity(v) => snapshot.uid_validity = *v,
            StatusAttribute::UidNext(n) => snapshot.uid_next = (*n).max(1),
            StatusAttribute::Messages(n) => snapshot.messages = *n,
            StatusAttribute::HighestModSeq(m) => modseq = server_modseq(*m),
            _ => {}
        }
    }
    (snapshot, modseq)
}

/// One FETCH answer of [`HEADER_ITEMS`]: the UID and what it says.
fn header_of(attrs: &[AttributeValue<'_>]) -> Option<(u32, CachedHeader)> {
    let mut uid = None;
    let mut block = None;
    let mut received = None;
    for attr in attrs {
        match attr {
            AttributeValue::Uid(u) => uid = Some(*u),
            AttributeValue::InternalDate(date) => {
                received = threading::internal_date_seconds(date);
            }
            AttributeValue::BodySection { data, .. } => {
                block = Some(data.as_deref().unwrap_or_default());
            }
            _ => {}
        }
    }
    Some((
        uid?,
        CachedHeader::new(ThreadHeader::parse(block?), received),
    ))
}

/// Parses the thread list of one THREAD response (RFC 5256 §4: `(2)(3 6 (4 23)(44 7 96))`)
/// into threads of `(UID, depth)` in reading order. A thread that starts with nested lists
/// (replies to a message that is not there) has them all at depth 0. `None` when the list is
/// not well formed.
pub(crate) fn parse_thread_list(list: &[u8]) -> Option<Vec<Thread<u32>>> {
    let mut threads = Vec::new();
    let mut current: Vec<(u32, usize)> = Vec::new();
    // For each open parenthesis, the depth of the next message in it.
    let mut open: Vec<usize> = Vec::new();
    let mut at = 0;
    while at < list.len() {
        match list[at] {
            b'(' => {
                let depth = open.last().copied().unwrap_or(0);
                open.push(depth);
                at += 1;
            }
            b')' => {
                open.pop()?;
                if open.is_empty() {
                    if current.is_empty() {
                        return None;
                    }
                    threads.push(Thread {
                        messages: std::mem::take(&mut current),
                    });
                }
                at += 1;
            }
            b' ' => at += 1,
            b'0'..=b'9' => {
                let start = at;
                while at < list.len() && list[at].is_ascii_digit() {
                    at += 1;
                }
                let uid: u32 = std::str::from_utf8(&list[start..at]).ok()?.parse().ok()?;
                let depth = open.last_mut()?;
                if uid == 0 {
                    return None;
                }
                current.push((uid, *depth));
                *depth += 1;
            }
            _ => return None,
        }
    }
    open.is_empty().then_some(threads)
}

impl Connection {
    /// The selected mailbox's threads of the messages matching `filters` (all when empty), as
    /// the server threads them (`THREAD=REFERENCES`), oldest thread first.
    pub async fn server_threads(&mut self, filters: &[SearchKey]) -> Result<Vec<Thread<u32>>> {
        if !self.capabilities().has("THREAD=REFERENCES") {
            return Err(ImapError::Unsupported("THREAD=REFERENCES"));
        }
        let cmd = Command::new("UID THREAD")
            .atom("REFERENCES")
            .sort_criteria(filters);
        self.tap_threads(true);
        let done = self.run(&cmd, |_| Ok(())).await;
        let lists = self.take_threads();
        self.tap_threads(false);
        done?.into_result()?;
        parse_thread_lists(lists)
    }

    /// A page of `mailbox`'s threads of `query`, newest first.
    pub async fn thread_page(
        &mut self,
        cache: Option<&ThreadScope>,
        mailbox: &MailboxName,
        query: &ThreadQuery,
        page: &ThreadPageRequest,
    ) -> Result<ThreadPage> {
        let selected = self.select(mailbox).await?;
        if let Some(cursor) = &page.cursor {
            if cursor.uid_validity != selected.uid_validity {
                return Err(ImapError::UidValidityChanged {
                    current: selected.uid_validity,
                });
            }
            if cursor.query != page.query {
                return Err(InvalidArgument::ForeignCursor.into());
            }
        }
        let view = self.thread_view(cache, mailbox, query).await?;
        let planned = view.index.page(
            page.cursor.as_ref(),
            page.limit as usize,
            view.state.uid_validity,
            page.query,
        );
        let threads: Vec<&IndexedThread> = planned.threads;
        let headers = self
            .headers_of_threads(cache, mailbox, &view, &threads)
            .await?;
        let listed_uids: Vec<u32> = threads.iter().flat_map(|t| t.uids(Side::Listed)).collect();
        // Which of the page's messages are unread, and the latest ones' summaries: one round
        // trip.
        let search = if listed_uids.is_empty() {
            Vec::new()
        } else {
            vec![
                SearchKey::Unseen,
                SearchKey::Uid(UidSet::from_uids(listed_uids)?),
            ]
        };
        let latest: Vec<u32> = threads.iter().map(|t| t.latest).collect();
        let (summaries, unseen) = self
            .summary_values_and_search(&latest, page.preview, &search)
            .await?;
        let unseen: HashSet<u32> = unseen.into_iter().collect();
        let mut summaries: HashMap<u32, Summary> =
            summaries.into_iter().map(|s| (s.uid, s)).collect();
        let listed = threads
            .iter()
            .filter_map(|thread| {
                // A latest message expunged since the list was read leaves its thread out; it
                // comes back further down, under its next latest message.
                let latest = summaries.remove(&thread.latest)?;
                let uids = thread.uids(Side::Listed);
                Some(ThreadSummary {
                    id: thread.id,
                    subject: subject(thread, &headers),
                    unread_uids: uids
                        .iter()
                        .copied()
                        .filter(|u| unseen.contains(u))
                        .collect(),
                    sent_uids: thread.uids(Side::Sent),
                    participants: participants(thread, &headers),
                    uids,
                    latest,
                })
            })
            .collect();
        Ok(ThreadPage {
            uid_validity: view.state.uid_validity,
            state: view.state,
            total: u32::try_from(view.index.total()).unwrap_or(u32::MAX),
            sent_mailbox: view.sent.map(|(name, _)| name),
            threads: listed,
            next_cursor: planned.next,
        })
    }

    /// The thread `id` of `mailbox`'s threads of `query`, with its messages' summaries (with
    /// their previews when `preview`).
    pub async fn thread_detail(
        &mut self,
        cache: Option<&ThreadScope>,
        mailbox: &MailboxName,
        query: &ThreadQuery,
        id: ThreadId,
        preview: bool,
    ) -> Result<ThreadDetail> {
        let view = self.thread_view(cache, mailbox, query).await?;
        let thread = view.index.find(id).ok_or(ImapError::ThreadNotFound)?;
        let mut summaries: HashMap<(Side, u32), Summary> = HashMap::new();
        let sent_uids = thread.uids(Side::Sent);
        if let Some((sent, validity)) = view.sent.as_ref().filter(|_| !sent_uids.is_empty()) {
            self.select_sent(sent, *validity).await?;
            for summary in self.summary_values_by_uid(&sent_uids, preview).await? {
                summaries.insert((Side::Sent, summary.uid), summary);
            }
        }
        let headers = self
            .headers_of_threads(cache, mailbox, &view, &[thread])
            .await?;
        for summary in self
            .summary_values_by_uid(&thread.uids(Side::Listed), preview)
            .await?
        {
            summaries.insert((Side::Listed, summary.uid), summary);
        }
        let messages = thread
            .messages
            .iter()
            .filter_map(|m| {
                Some(ThreadMessage {
                    side: m.side,
                    depth: m.depth,
                    summary: summaries.remove(&(m.side, m.uid))?,
                })
            })
            .collect();
        Ok(ThreadDetail {
            id: thread.id,
            uid_validity: view.state.uid_validity,
            subject: subject(thread, &headers),
            participants: participants(thread, &headers),
            sent_mailbox: view.sent.map(|(name, _)| name),
            messages,
        })
    }

    /// The thread list of `query` in `mailbox` now: from the cache while the mailbox (and
    /// Sent) stayed as they were, else computed and remembered. Leaves `mailbox` selected.
    async fn thread_view(
        &mut self,
        cache: Option<&ThreadScope>,
        mailbox: &MailboxName,
        query: &ThreadQuery,
    ) -> Result<ThreadView> {
        let sent = if query.include_sent {
            self.special_use_mailbox(SpecialUse::Sent)
                .await?
                .filter(|sent| sent != mailbox)
        } else {
            None
        };
        let selected = self.select(mailbox).await?;
        // Alone, so that what follows reads the mailbox as it is now (see `sync.rs`).
        self.noop().await?;
        let condstore = self.capabilities().has("CONDSTORE");
        let by_server = sent.is_none() && self.capabilities().has("THREAD=REFERENCES");
        let mut key = Command::new("UID SEARCH")
            .search(&query.filters)
            .to_wire("K", true)
            .concat();
        if let Some(sent) = &sent {
            key.extend_from_slice(b"\0sent\0");
            key.extend_from_slice(sent.as_str().as_bytes());
        }
        // Without a list of this query cached at all, THREAD goes along at once.
        let thread_now = by_server && cache.is_none_or(|c| !c.has_index(mailbox, &key));
        let mut cmds = vec![Command::new("STATUS").mailbox(mailbox).atom(if condstore {
            "(UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ)"
        } else {
            "(UIDVALIDITY UIDNEXT MESSAGES)"
        })];
        if let Some(sent) = &sent {
            cmds.push(
                Command::new("STATUS")
                    .mailbox(sent)
                    .atom("(UIDVALIDITY UIDNEXT MESSAGES)"),
            );
        }
        if thread_now {
            cmds.push(
                Command::new("UID THREAD")
                    .atom("REFERENCES")
                    .sort_criteria(&query.filters),
            );
        }
        let mut listed_status = None;
        let mut sent_status = None;
        self.tap_threads(thread_now);
        let done = self
            .run_pipelined_raw(&cmds, |_, r, raw| {
                if let Response::MailboxData(MailboxDatum::Status {
                    mailbox: named,
                    status,
                }) = r
                {
                    let wire = wire_string(raw, named);
                    if names(mailbox, &wire) {
                        listed_status = Some(snapshot(status));
                    } else if sent.as_ref().is_some_and(|s| names(s, &wire)) {
                        sent_status = Some(snapshot(status).0);
                    }
                }
                Ok(())
            })
            .await;
        let lists = self.take_threads();
        self.tap_threads(false);
        for completion in done? {
            completion.into_result()?;
        }
        let (mut listed, modseq) = listed_status
            .ok_or_else(|| ImapError::Protocol("STATUS came back without its answer".into()))?;
        if listed.uid_validity != selected.uid_validity {
            self.forget_selected();
            return Err(ImapError::UidValidityChanged {
                current: listed.uid_validity,
            });
        }
        let state = MailboxState {
            uid_validity: listed.uid_validity,
            highest_modseq: modseq,
            uid_next: listed.uid_next,
        };
        let flags_matter = depends_on_flags(&query.filters);
        if flags_matter {
            listed.modseq = modseq;
        }
        let sent = match (sent, sent_status) {
            (Some(name), Some(snapshot)) => Some((name, snapshot)),
            _ => None,
        };
        let stamp = IndexStamp {
            listed,
            sent: sent.clone(),
        };
        // A list may be kept when the messages it was read from are the ones STATUS counted
        // (nothing arrived or went during the exchange) and, where flags decide which
        // messages it holds, when HIGHESTMODSEQ tells that flags stayed the same too.
        let steady = self.selected().is_some_and(|s| s.exists == listed.messages);
        let keep = cache.filter(|_| steady && (!flags_matter || modseq > 0));
        let cached = keep.and_then(|c| c.index(mailbox, &key, &stamp));
        let sent_mailbox = sent
            .as_ref()
            .map(|(name, s)| (name.clone(), s.uid_validity));
        let index = match cached {
            Some(index) => index,
            None => {
                let mailboxes = Mailboxes {
                    listed: (mailbox.as_str(), listed.uid_validity),
                    sent: sent_mailbox
                        .as_ref()
                        .map(|(name, validity)| (name.as_str(), *validity)),
                };
                let (index, complete) = if by_server {
                    let threads = if thread_now {
                        parse_thread_lists(lists)?
                    } else {
                        self.server_threads(&query.filters).await?
                    };
                    self.index_server_threads(cache, threads, mailboxes).await?
                } else {
                    let sent = sent_mailbox.as_ref().map(|(name, _)| name);
                    self.index_by_bridge(cache, mailbox, &query.filters, mailboxes, sent)
                        .await?
                };
                let index = Arc::new(index);
                if let Some(c) = keep.filter(|_| complete) {
                    c.put_index(mailbox, &key, stamp, index.clone());
                }
                index
            }
        };
        Ok(ThreadView {
            state,
            index,
            sent: sent_mailbox,
        })
    }

    /// The list of the server's `threads`, named by their first messages' headers; and
    /// whether every one of those was there (else some thread has a makeshift id, and the
    /// list is not to be kept).
    async fn index_server_threads(
        &mut self,
        cache: Option<&ThreadScope>,
        threads: Vec<Thread<u32>>,
        mailboxes: Mailboxes<'_>,
    ) -> Result<(ThreadIndex, bool)> {
        let firsts: Vec<u32> = threads
            .iter()
            .filter_map(|t| t.messages.first().map(|(uid, _)| *uid))
            .collect();
        let headers = self.thread_headers(cache, &firsts).await?;
        let complete = headers.len() == firsts.len();
        let threads = threads
            .into_iter()
            .map(|t| Thread {
                messages: t
                    .messages
                    .into_iter()
                    .map(|(uid, depth)| ((Side::Listed, uid), depth))
                    .collect(),
            })
            .collect();
        let index = ThreadIndex::build(
            threads,
            |_, uid| headers.get(&uid).and_then(|h| h.origin),
            mailboxes,
        );
        Ok((index, complete))
    }

    /// The list of the messages of `mailbox` matching `filters` (with Sent's messages where
    /// `mailboxes` names Sent), threaded by the bridge. Leaves `mailbox` selected.
    /// Selects the Sent mailbox whose messages a thread list holds, as it was when listed
    /// (`validity`): recreated since, its UIDs name other messages, and the list is to be
    /// read anew.
    async fn select_sent(&mut self, sent: &MailboxName, validity: u32) -> Result<()> {
        let selected = self.select(sent).await?;
        if selected.uid_validity != validity {
            return Err(ImapError::UidValidityChanged {
                current: selected.uid_validity,
            });
        }
        Ok(())
    }

    async fn index_by_bridge(
        &mut self,
        cache: Option<&ThreadScope>,
        mailbox: &MailboxName,
        filters: &[SearchKey],
        mailboxes: Mailboxes<'_>,
        sent_mailbox: Option<&MailboxName>,
    ) -> Result<(ThreadIndex, bool)> {
        let uids = self.search_uids(filters).await?;
        let listed = self.thread_headers(cache, &uids).await?;
        let mut sent = HashMap::new();
        if let (Some(name), Some((_, validity))) = (sent_mailbox, mailboxes.sent) {
            self.select_sent(name, validity).await?;
            let uids = self.search_uids(&[]).await?;
            sent = self.thread_headers(cache, &uids).await?;
            let selected = self.select(mailbox).await?;
            if selected.uid_validity != mailboxes.listed.1 {
                return Err(ImapError::UidValidityChanged {
                    current: selected.uid_validity,
                });
            }
        }
        // Linear in the messages and their references, but thousands of them are CPU work
        // (see `threading`): off the async workers.
        let threaded = tokio::task::spawn_blocking(move || {
            // REFERENCES links messages in the order it meets them, and a server meets them
            // in mailbox (UID) order: so does the bridge, the Sent mail after, so that the same
            // mail always gives the same threads.
            let in_uid_order = |headers: &HashMap<u32, Arc<CachedHeader>>| {
                let mut uids: Vec<u32> = headers.keys().copied().collect();
                uids.sort_unstable();
                uids
            };
            let (listed_order, sent_order) = (in_uid_order(&listed), in_uid_order(&sent));
            let messages: Vec<Message<(Side, u32)>> = listed_order
                .iter()
                .map(|uid| {
                    listed[uid]
                        .header
                        .message((Side::Listed, *uid), listed[uid].received)
                })
                .chain(sent_order.iter().map(|uid| {
                    sent[uid]
                        .header
                        .message((Side::Sent, *uid), sent[uid].received)
                }))
                .collect();
            let threads = threading::thread(&messages);
            drop(messages);
            (threads, listed, sent)
        })
        .await;
        let (threads, listed, sent) = match threaded {
            Ok(threaded) => threaded,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => return Err(ImapError::Unavailable("the bridge is shutting down".into())),
            },
        };
        let index = ThreadIndex::build(
            threads,
            |side, uid| {
                let headers = match side {
                    Side::Listed => &listed,
                    Side::Sent => &sent,
                };
                headers.get(&uid).and_then(|h| h.origin)
            },
            mailboxes,
        );
        Ok((index, true))
    }

    /// The headers `threads` show (subjects, participants): the listed mailbox's from the
    /// cache or fetched, Sent's likewise (selecting Sent only when the cache lacks some).
    /// Leaves `mailbox` selected.
    async fn headers_of_threads(
        &mut self,
        cache: Option<&ThreadScope>,
        mailbox: &MailboxName,
        view: &ThreadView,
        threads: &[&IndexedThread],
    ) -> Result<HashMap<(Side, u32), Arc<CachedHeader>>> {
        let mut headers = HashMap::new();
        let uids_of =
            |side: Side| -> Vec<u32> { threads.iter().flat_map(|t| t.uids(side)).collect() };
        if let Some((sent, validity)) = &view.sent {
            let uids = uids_of(Side::Sent);
            let (held, missing) = match cache {
                Some(c) => c.headers(sent, *validity).get_many(&uids),
                None => (HashMap::new(), uids.clone()),
            };
            let found = if missing.is_empty() {
                held
            } else {
                self.select_sent(sent, *validity).await?;
                self.thread_headers(cache, &uids).await?
            };
            headers.extend(found.into_iter().map(|(uid, h)| ((Side::Sent, uid), h)));
        }
        let selected = self.select(mailbox).await?;
        if selected.uid_validity != view.state.uid_validity {
            return Err(ImapError::UidValidityChanged {
                current: selected.uid_validity,
            });
        }
        let found = self.thread_headers(cache, &uids_of(Side::Listed)).await?;
        headers.extend(found.into_iter().map(|(uid, h)| ((Side::Listed, uid), h)));
        Ok(headers)
    }

    /// The threading headers of `uids` in the selected mailbox, from the cache or fetched
    /// ([`HEADER_BATCH`] at a time); UIDs the mailbox no longer has are left out.
    async fn thread_headers(
        &mut self,
        cache: Option<&ThreadScope>,
        uids: &[u32],
    ) -> Result<HashMap<u32, Arc<CachedHeader>>> {
        let selected = self
            .selected()
            .cloned()
            .ok_or_else(|| ImapError::Protocol("no mailbox selected".into()))?;
        let held: Option<Arc<MailboxHeaders>> =
            cache.map(|c| c.headers(&selected.name, selected.uid_validity));
        let (mut found, missing) = match &held {
            Some(held) => held.get_many(uids),
            None => (HashMap::with_capacity(uids.len()), uids.to_vec()),
        };
        for batch in missing.chunks(HEADER_BATCH) {
            let set = UidSet::from_uids(batch.iter().copied())?;
            let cmd = Command::new("UID FETCH").uid_set(&set).atom(HEADER_ITEMS);
            self.run(&cmd, |r| {
                if let Response::Fetch(_, attrs) = r
                    && let Some((uid, header)) = header_of(attrs)
                    && set.contains(uid)
                {
                    let header = Arc::new(header);
                    if let Some(held) = &held {
                        held.insert(uid, header.clone());
                    }
                    found.insert(uid, header);
                }
                Ok(())
            })
            .await?
            .into_result()?;
        }
        if let (Some(c), Some(held)) = (cache, held)
            && !missing.is_empty()
        {
            c.reweigh(&selected.name, selected.uid_validity, held);
        }
        Ok(found)
    }
}

/// The threads of the THREAD responses' lists.
fn parse_thread_lists(lists: Vec<Vec<u8>>) -> Result<Vec<Thread<u32>>> {
    let mut threads = Vec::new();
    for list in lists {
        threads.extend(parse_thread_list(&list).ok_or_else(|| {
            ImapError::Protocol("the IMAP server sent a malformed THREAD response".into())
        })?);
    }
    Ok(threads)
}

/// The subject of a thread's first message.
fn subject(
    thread: &IndexedThread,
    headers: &HashMap<(Side, u32), Arc<CachedHeader>>,
) -> Option<String> {
    let first = thread.messages.first()?;
    headers
        .get(&(first.side, first.uid))?
        .header
        .subject
        .clone()
}

/// The distinct authors of a thread in reading order.
fn participants(
    thread: &IndexedThread,
    headers: &HashMap<(Side, u32), Arc<CachedHeader>>,
) -> Vec<Address> {
    threading::participants(
        thread
            .messages
            .iter()
            .filter_map(|m| headers.get(&(m.side, m.uid)))
            .map(|h| h.header.from.as_slice()),
        MAX_PARTICIPANTS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threads(list: &str) -> Option<Vec<Vec<(u32, usize)>>> {
        parse_thread_list(list.as_bytes())
            .map(|threads| threads.into_iter().map(|t| t.messages).collect())
    }

    #[test]
    fn reads_the_rfc_5256_example() {
        assert_eq!(
            threads("(2)(3 6 (4 23)(44 7 96))"),
            Some(vec![
                vec![(2, 0)],
                vec![(3, 0), (6, 1), (4, 2), (23, 3), (44, 2), (7, 3), (96, 4)],
            ])
        );
    }

    #[test]
    fn replies_to_a_missing_message_start_at_depth_0() {
        assert_eq!(
            threads("((1)(2 3))(4)"),
            Some(vec![vec![(1, 0), (2, 0), (3, 1)], vec![(4, 0)]])
        );
    }

    #[test]
    fn an_empty_answer_has_no_threads() {
        assert_eq!(threads(""), Some(Vec::new()));
    }

    #[test]
    fn the_header_fetch_asks_for_what_threading_reads() {
        let fields = HEADER_ITEMS
            .split_once("HEADER.FIELDS (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(fields, _)| fields.split_whitespace().collect::<Vec<_>>().join(" "));
        assert_eq!(fields.as_deref(), Some(threading::THREAD_HEADER_FIELDS));
    }

    #[test]
    fn filters_on_flags_are_told_apart() {
        let text = || SearchKey::Subject(crate::imap::encode::ImapString::new("x").expect("ok"));
        assert!(!depends_on_flags(&[]));
        assert!(!depends_on_flags(&[
            text(),
            SearchKey::Since(chrono::NaiveDate::MIN)
        ]));
        assert!(depends_on_flags(&[text(), SearchKey::Unseen]));
        assert!(depends_on_flags(&[SearchKey::Not(Box::new(
            SearchKey::Or(Box::new(text()), Box::new(SearchKey::Flagged))
        ))]));
    }

    #[test]
    fn malformed_lists_are_refused() {
        for bad in [
            "(1",
            "1)",
            "(1))",
            "()",
            "(0)",
            "(1 x)",
            "(99999999999)",
            "((1)",
        ] {
            assert_eq!(threads(bad), None, "{bad}");
        }
    }
}
