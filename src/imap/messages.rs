//! Reading messages: header pages, one message's structure and text, and body sections in
//! chunks.
//!
//! Header pages in arrival order cost O(limit): the page is fetched by sequence window around
//! the cursor's remembered position, then verified against the anchor UID, so neither new mail
//! nor expunges between pages can make a page skip or repeat a message. Sorted or filtered pages
//! need the server's SEARCH/SORT result for the whole mailbox, which is what IMAP offers (no
//! ESEARCH parsing in imap-proto).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_imap::imap_proto::{
    AttributeValue, BodyStructure, MailboxDatum, MessageSection, Response, SectionPath,
    StatusAttribute,
};

use super::cache::CachedFolder;
use super::connection::{Connection, SelectedMailbox};
use super::encode::{Command, MailboxName, PartId, SearchKey, UidSet};
use super::error::{ImapError, Result};
use super::flag_window::{FlagAnswer, FlagWindow, WindowKey};
use super::paging::{self, Boundary, Locate};
use super::previews::{self, PreviewMode, PreviewNeed};
use super::state::{MailboxState, PageCursor, server_modseq};
use crate::mail::listing::{FlagsJson, ListEntry};
use crate::mail::structure::{
    self, BodyPart, MAX_WHOLE_PROBE, MessageParts, PROBE_LEN, SizeProbe, WalkLimits,
};
use crate::mail::summary::{Summary, summary_from_fetch};

/// Order of a header page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// The order mail entered the folder (UID order).
    Arrival,
    /// The Date header.
    Date,
    /// The first From address.
    From,
    /// The subject, without reply prefixes.
    Subject,
    /// Message size.
    Size,
}

/// Direction of a header page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Newest (or largest, or last) first.
    Desc,
    /// Oldest first.
    Asc,
}

/// What page of headers to read.
#[derive(Debug)]
pub struct PageRequest {
    /// Page size, 1..=200.
    pub limit: u32,
    /// Where to continue, from the previous page.
    pub cursor: Option<PageCursor>,
    /// Sort key.
    pub sort: SortKey,
    /// Direction.
    pub order: Order,
    /// SEARCH criteria (all must match); empty for every message.
    pub filters: Vec<SearchKey>,
    /// Fingerprint of sort + filters, stored in cursors.
    pub query: u32,
    /// Whether the summaries carry their previews. Without, the page fetches none (a summary
    /// the cache holds with its preview is written without it).
    pub preview: bool,
}

/// One page of a header list.
#[derive(Debug)]
pub struct HeaderPage {
    /// UIDVALIDITY the UIDs belong to.
    pub uid_validity: u32,
    /// Messages in the mailbox (or matching the filters).
    pub total: u32,
    /// Delta-sync state taken before the page was read.
    pub state: MailboxState,
    /// The page, in the requested order.
    pub messages: Vec<ListEntry>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<PageCursor>,
    /// Whether the entries are written with their previews.
    pub preview: bool,
}

/// One message as needed for its detail view.
#[derive(Debug)]
pub struct MessageDetail {
    /// Summary fields.
    pub summary: Summary,
    /// The raw header block.
    pub header: Vec<u8>,
    /// MIME parts by role.
    pub parts: MessageParts,
    /// Raw (transfer-encoded) content of the text parts, by part id.
    pub bodies: HashMap<String, Vec<u8>>,
    /// UIDVALIDITY of the mailbox.
    pub uid_validity: u32,
}

/// What a message view learns in its first round trip, and what the cache keeps of it: none
/// of it changes for a given UIDVALIDITY and UID but the summary's flags.
#[derive(Debug, Clone)]
pub struct MessageOutline {
    /// Summary fields (flags as read then).
    pub summary: Summary,
    /// The raw header block.
    pub header: Vec<u8>,
    /// MIME parts by role, before anything the second round trip learns.
    pub parts: MessageParts,
}

/// What [`Connection::refresh_and_run`] learnt.
struct Refreshed {
    state: MailboxState,
    fetched: Vec<Fetched>,
    /// The flag answers of the window, with their mod-sequences.
    answers: Vec<FlagAnswer>,
    /// UIDs from a SEARCH or SORT.
    found: Vec<u32>,
    /// The completion of the extra command, if any.
    extra: Option<super::connection::Completion>,
    /// Without an extra command: whether the server reported a change during the exchange
    /// (new mail, an expunge, a flag change). Dovecot answers a STATUS pipelined after NOOP
    /// from the session's view before the NOOP's sync, so `state` alone can miss what the
    /// NOOP reported.
    changed: bool,
}

/// Largest amount of one text or HTML part read for the detail view.
pub const MAX_TEXT_PART: u32 = 4 * 1024 * 1024;

/// One message of a page's FETCH answers: where it was, and its entry in the list.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) seq: u32,
    pub(crate) uid: u32,
    pub(crate) summary: ListEntry,
    /// What its preview still needs.
    pub(crate) preview: PreviewNeed,
}

/// One message of a FETCH answer with its full summary.
#[derive(Debug)]
pub(crate) struct FetchedSummary {
    pub(crate) uid: u32,
    pub(crate) summary: Summary,
    /// What its preview still needs.
    pub(crate) preview: PreviewNeed,
}

/// What the given messages still need for their previews, taken out of them (each left with
/// [`PreviewNeed::Nothing`]).
fn take_needs<'a>(
    entries: impl Iterator<Item = (u32, &'a mut PreviewNeed)>,
) -> Vec<(u32, PreviewNeed)> {
    entries
        .filter(|(_, need)| **need != PreviewNeed::Nothing)
        .map(|(uid, need)| (uid, std::mem::replace(need, PreviewNeed::Nothing)))
        .collect()
}

/// The `(sequence number, UID)` pairs of fetched messages, as the paging planner takes them.
fn seq_uids(fetched: &[Fetched]) -> Vec<(u32, u32)> {
    fetched.iter().map(|f| (f.seq, f.uid)).collect()
}

/// Collects the summaries of FETCH answers of `mode`'s summary items (responses and their raw
/// bytes), with their previews or what those need ([`Connection::fill_previews`]).
pub(crate) fn collect_summaries(
    into: &mut Vec<FetchedSummary>,
    mode: PreviewMode,
) -> impl FnMut(&Response<'_>, &[u8]) -> Result<()> + Send + '_ {
    move |response, raw| {
        if let Response::Fetch(_, attrs) = response
            && attrs
                .iter()
                .any(|a| matches!(a, AttributeValue::Envelope(_)))
            && let Some(mut summary) = summary_from_fetch(attrs)
        {
            let (preview, need) = previews::from_response(mode, attrs, raw);
            summary.preview = preview;
            into.push(FetchedSummary {
                uid: summary.uid,
                summary,
                preview: need,
            });
        }
        Ok(())
    }
}

/// Collects a window's FETCH answers: full summaries (remembered in the cache), or UID+FLAGS
/// answers completed from the cache; the misses are listed for one more fetch.
struct WindowCollector {
    cache: Option<CachedFolder>,
    /// How summaries get their previews.
    mode: PreviewMode,
    fetched: Vec<Fetched>,
    missing: Vec<(u32, u32)>,
    /// Which answers belong to the request: unsolicited FETCHes (another client's flag change
    /// elsewhere in the mailbox) carry UID and FLAGS too.
    wanted: Wanted,
    /// The flag answers taken in, with their mod-sequences, for [`FlagWindow`].
    answers: Vec<FlagAnswer>,
}

/// The messages a window asked for.
enum Wanted {
    /// Sequence numbers from `.0` to `.1` (`None`: to the end).
    Seqs(u32, Option<u32>),
    /// These UIDs.
    Uids(UidSet),
}

impl WindowCollector {
    fn new(conn: &Connection, mailbox: &MailboxName, wanted: Wanted, mode: PreviewMode) -> Self {
        let uid_validity = conn.selected().map_or(0, |s| s.uid_validity);
        WindowCollector {
            cache: conn.cache().map(|c| c.folder(mailbox, uid_validity)),
            mode,
            fetched: Vec::new(),
            missing: Vec::new(),
            wanted,
            answers: Vec::new(),
        }
    }

    fn wants(&self, seq: u32, uid: u32) -> bool {
        match &self.wanted {
            Wanted::Seqs(lo, hi) => seq >= *lo && hi.is_none_or(|hi| seq <= hi),
            Wanted::Uids(set) => set.contains(uid),
        }
    }

    /// The FETCH items to ask a window for: flags only when summaries can come from the cache.
    fn items(&self) -> &'static str {
        if self.cache.is_some() {
            "(UID FLAGS)"
        } else {
            self.mode.summary_items()
        }
    }

    /// Takes in one response and its raw bytes.
    fn on(&mut self, response: &Response<'_>, raw: &[u8]) {
        let Response::Fetch(seq, attrs) = response else {
            return;
        };
        if attrs
            .iter()
            .any(|a| matches!(a, AttributeValue::Envelope(_)))
        {
            if let Some(mut summary) = summary_from_fetch(attrs)
                && (self.wants(*seq, summary.uid)
                    || self.missing.iter().any(|(_, u)| *u == summary.uid))
            {
                let uid = summary.uid;
                let (preview, need) = previews::from_response(self.mode, attrs, raw);
                summary.preview = preview;
                let entry = ListEntry::from_summary(summary);
                if let Some(cache) = &mut self.cache {
                    cache.put(entry.summary().clone());
                }
                self.missing.retain(|(_, u)| *u != uid);
                self.fetched.retain(|f| f.uid != uid);
                self.fetched.push(Fetched {
                    seq: *seq,
                    uid,
                    summary: entry,
                    preview: need,
                });
            }
            return;
        }
        if self.cache.is_none() {
            return;
        }
        let Some((uid, flags)) = uid_and_flags_json(attrs) else {
            return;
        };
        if !self.wants(*seq, uid) {
            return;
        }
        let modseq = attrs
            .iter()
            .find_map(|a| match a {
                AttributeValue::ModSeq(m) => Some(server_modseq(*m)),
                _ => None,
            })
            .unwrap_or(0);
        // Two answers for one message (a NOOP's news and the window's own answer, which
        // servers may give from the mailbox as it was before the NOOP): the higher
        // mod-sequence is the later state; without them, the later answer.
        let newer_known = self
            .answers
            .iter()
            .any(|a| a.uid == uid && a.modseq > modseq);
        self.answers.push(FlagAnswer {
            seq: *seq,
            uid,
            flags: flags.clone(),
            modseq,
        });
        if newer_known {
            return;
        }
        self.fetched.retain(|f| f.uid != uid);
        self.missing.retain(|(_, u)| *u != uid);
        self.take_flags(*seq, uid, flags);
    }

    /// Takes in the flags of the message `uid` at `seq`, its summary from the cache, or lists
    /// it as missing.
    fn take_flags(&mut self, seq: u32, uid: u32, flags: FlagsJson) {
        match self.cache.as_mut().and_then(|cache| cache.get(uid)) {
            Some(cached) => self.fetched.push(Fetched {
                seq,
                uid,
                preview: if self.mode == PreviewMode::Off || cached.has_preview() {
                    PreviewNeed::Nothing
                } else {
                    PreviewNeed::Ask
                },
                summary: ListEntry::new(cached, flags),
            }),
            None => self.missing.push((seq, uid)),
        }
    }
}

/// The UID and the flags (without `\Recent`, as JSON) of a FETCH response.
fn uid_and_flags_json(attrs: &[AttributeValue<'_>]) -> Option<(u32, FlagsJson)> {
    let uid = attrs.iter().find_map(|a| match a {
        AttributeValue::Uid(u) => Some(*u),
        _ => None,
    })?;
    let flags = attrs.iter().find_map(|a| match a {
        AttributeValue::Flags(f) => Some(f),
        _ => None,
    })?;
    Some((uid, FlagsJson::new(flags.iter().map(|f| &**f))))
}

/// The UID and the flags (without `\\Recent`) of a FETCH response.
pub(super) fn uid_and_flags(attrs: &[AttributeValue<'_>]) -> Option<(u32, Vec<String>)> {
    let uid = attrs.iter().find_map(|a| match a {
        AttributeValue::Uid(u) => Some(*u),
        _ => None,
    })?;
    let flags = attrs.iter().find_map(|a| match a {
        AttributeValue::Flags(f) => Some(f),
        _ => None,
    })?;
    Some((
        uid,
        flags
            .iter()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .map(|f| f.to_string())
            .collect(),
    ))
}

impl Connection {
    /// A page of message summaries from `mailbox`.
    pub async fn header_page(
        &mut self,
        mailbox: &MailboxName,
        req: &PageRequest,
    ) -> Result<HeaderPage> {
        let selected = self.select(mailbox).await?;
        if let Some(cursor) = &req.cursor
            && cursor.uid_validity != selected.uid_validity
        {
            return Err(ImapError::UidValidityChanged {
                current: selected.uid_validity,
            });
        }
        if req.cursor.is_some_and(|c| c.query != req.query) {
            return Err(super::encode::InvalidArgument::ForeignCursor.into());
        }
        if req.sort == SortKey::Arrival && req.filters.is_empty() {
            self.arrival_page(mailbox, req).await
        } else {
            self.searched_page(mailbox, req).await
        }
    }

    fn current(&self) -> Result<SelectedMailbox> {
        self.selected()
            .cloned()
            .ok_or_else(|| ImapError::Protocol("no mailbox selected".into()))
    }

    /// NOOP (to hear of new mail and expunges) and STATUS (for a fresh delta-sync state),
    /// optionally followed by a FETCH of `window`, all in one round trip.
    ///
    /// With the summary cache and CONDSTORE, the window's flags are read with their
    /// mod-sequences and kept ([`FlagWindow`]), and the same window asked for again reads only
    /// the flags changed since.
    async fn refresh_and_fetch(
        &mut self,
        mailbox: &MailboxName,
        window: Option<(u32, Option<u32>)>,
        mode: PreviewMode,
    ) -> Result<(MailboxState, Vec<Fetched>)> {
        let selected = self.current()?;
        let key = window.map(|(lo, hi)| WindowKey {
            lo,
            hi,
            exists: selected.exists,
        });
        let flags_only = self.cache().is_some();
        let with_modseq = flags_only && selected.highest_modseq.is_some();
        let epoch = self.view_epoch();
        // A page below a cursor leaves the first page's window kept.
        let kept = if key.is_some() && with_modseq {
            self.take_flag_window()
        } else {
            None
        };
        let since = match (&kept, key) {
            (Some(kept), Some(key)) => {
                kept.changed_since(mailbox, selected.uid_validity, epoch, key)
            }
            _ => None,
        };
        let extra = window.map(|(lo, hi)| {
            let fetch = Command::new("FETCH").seq_range(lo, hi);
            match since {
                Some(modseq) => fetch
                    .atom("(UID FLAGS) (CHANGEDSINCE")
                    .number(modseq)
                    .atom(")"),
                None if with_modseq => fetch.atom("(UID FLAGS MODSEQ)"),
                None if flags_only => fetch.atom("(UID FLAGS)"),
                None => fetch.atom(mode.summary_items()),
            }
        });
        let wanted = window.map_or(Wanted::Seqs(u32::MAX, Some(0)), |(lo, hi)| {
            Wanted::Seqs(lo, hi)
        });
        let refreshed = self.refresh_and_run(mailbox, extra, wanted, mode).await?;
        let mut fetched = refreshed.fetched;
        let answers = refreshed.answers;
        if refreshed.extra.is_some_and(|c| c.into_result().is_err()) || self.view_epoch() != epoch {
            // The window went stale: the NOOP announced expunges, which moved positions, and
            // servers answer a FETCH pipelined behind a NOOP from the mailbox as it was before
            // (Dovecot: an expunged message came back with `\Deleted`). The caller re-plans.
            fetched.clear();
            return Ok((refreshed.state, fetched));
        }
        let (Some(key), true) = (key, with_modseq) else {
            return Ok((refreshed.state, fetched));
        };
        let uid_validity = selected.uid_validity;
        let read = match (since, kept) {
            (Some(_), Some(kept)) => match kept.update(&answers) {
                Some((window, all)) => {
                    // The unchanged messages, from the window as read before.
                    let answered: HashSet<u32> = answers.iter().map(|a| a.seq).collect();
                    let unchanged: Vec<_> = all
                        .into_iter()
                        .filter(|(seq, _, _)| !answered.contains(seq))
                        .collect();
                    if !unchanged.is_empty() {
                        let uids = UidSet::from_uids(unchanged.iter().map(|(_, uid, _)| *uid))?;
                        let mut collector =
                            WindowCollector::new(self, mailbox, Wanted::Uids(uids), mode);
                        for (seq, uid, flags) in unchanged {
                            collector.take_flags(seq, uid, flags);
                        }
                        fetched.extend(self.complete(collector).await?);
                    }
                    Some(window)
                }
                None => {
                    // An answer contradicts the window: the caller re-plans.
                    fetched.clear();
                    None
                }
            },
            _ => FlagWindow::read(mailbox, uid_validity, epoch, key, &answers),
        };
        self.keep_flag_window(read.map(|w| w.capped(refreshed.state.highest_modseq)));
        Ok((refreshed.state, fetched))
    }

    /// NOOP and STATUS, then `extra` (a FETCH, SEARCH or SORT), in one round trip.
    async fn refresh_and_run(
        &mut self,
        mailbox: &MailboxName,
        extra: Option<Command>,
        wanted: Wanted,
        mode: PreviewMode,
    ) -> Result<Refreshed> {
        let mut cmds = vec![
            Command::new("NOOP"),
            Command::new("STATUS")
                .mailbox(mailbox)
                .atom(if self.capabilities().has("CONDSTORE") {
                    "(UIDVALIDITY UIDNEXT HIGHESTMODSEQ)"
                } else {
                    "(UIDVALIDITY UIDNEXT)"
                }),
        ];
        cmds.extend(extra);
        let mut status = Vec::new();
        let mut found = Vec::new();
        // Only without an extra command is every untagged FETCH unsolicited news.
        let only_refresh = cmds.len() == 2;
        let mut changed = false;
        let mut seen_modseq = 0;
        let mut window = WindowCollector::new(self, mailbox, wanted, mode);
        let done = self
            .run_pipelined_raw(&cmds, |_, r, raw| {
                match r {
                    Response::MailboxData(MailboxDatum::Status { status: attrs, .. }) => {
                        status = attrs.clone()
                    }
                    Response::MailboxData(
                        MailboxDatum::Search(uids) | MailboxDatum::Sort(uids),
                    ) => {
                        found.extend_from_slice(uids);
                    }
                    _ => {
                        if only_refresh {
                            changed |= matches!(
                                r,
                                Response::Fetch(..)
                                    | Response::Expunge(_)
                                    | Response::Vanished { .. }
                                    | Response::MailboxData(MailboxDatum::Exists(_))
                            );
                        }
                        if let Response::Fetch(_, attrs) = r {
                            for attr in attrs {
                                if let AttributeValue::ModSeq(m) = attr {
                                    seen_modseq = seen_modseq.max(server_modseq(*m));
                                }
                            }
                        }
                        window.on(r, raw)
                    }
                }
                Ok(())
            })
            .await?;
        let mut done = done.into_iter();
        for completion in done.by_ref().take(2) {
            completion.into_result()?;
        }
        let extra = done.next();
        let selected = self.current()?;
        let mut state = MailboxState {
            uid_validity: selected.uid_validity,
            highest_modseq: selected.highest_modseq.unwrap_or(0),
            uid_next: selected.uid_next.max(1),
        };
        for attr in status {
            match attr {
                StatusAttribute::UidValidity(v) => state.uid_validity = v,
                StatusAttribute::UidNext(n) => state.uid_next = n.max(1),
                StatusAttribute::HighestModSeq(m) => state.highest_modseq = server_modseq(m),
                _ => {}
            }
        }
        if state.uid_validity != selected.uid_validity {
            // The mailbox was recreated under us; this session's view is worthless.
            self.forget_selected();
            return Err(ImapError::UidValidityChanged {
                current: state.uid_validity,
            });
        }
        let answers = std::mem::take(&mut window.answers);
        let fetched = self.complete(window).await?;
        Ok(Refreshed {
            state,
            fetched,
            answers,
            found,
            extra,
            changed: changed || seen_modseq > state.highest_modseq,
        })
    }

    async fn fetch_seq(&mut self, lo: u32, hi: u32, mode: PreviewMode) -> Result<Vec<Fetched>> {
        if lo == 0 || hi < lo {
            return Ok(Vec::new());
        }
        let mailbox = self.current()?.name;
        let mut window = WindowCollector::new(self, &mailbox, Wanted::Seqs(lo, Some(hi)), mode);
        let cmd = Command::new("FETCH")
            .seq_range(lo, Some(hi))
            .atom(window.items());
        self.run_raw(&cmd, |r, raw| {
            window.on(r, raw);
            Ok(())
        })
        .await?
        .into_result()?;
        self.complete(window).await
    }

    /// Fetches the summaries the cache did not have (one round trip, none when all hit).
    async fn complete(&mut self, mut window: WindowCollector) -> Result<Vec<Fetched>> {
        if window.missing.is_empty() {
            return Ok(window.fetched);
        }
        let seqs: HashMap<u32, u32> = window
            .missing
            .iter()
            .map(|(seq, uid)| (*uid, *seq))
            .collect();
        let set = UidSet::from_uids(seqs.keys().copied())?;
        let cmd = Command::new("UID FETCH")
            .uid_set(&set)
            .atom(window.mode.summary_items());
        self.run_raw(&cmd, |r, raw| {
            window.on(r, raw);
            Ok(())
        })
        .await?
        .into_result()?;
        Ok(window.fetched)
    }

    /// UIDs at the given sequence numbers (cheap probe used to locate an anchor).
    async fn probe(&mut self, seqs: &[u32]) -> Result<Vec<(u32, u32)>> {
        let set = UidSet::from_uids(seqs.iter().copied())?;
        let mut found = Vec::new();
        // A sequence set has the same syntax as a UID set.
        let cmd = Command::new("FETCH").uid_set(&set).atom("(UID)");
        self.run(&cmd, |r| {
            if let Response::Fetch(seq, attrs) = r {
                for a in attrs {
                    if let AttributeValue::Uid(uid) = a {
                        found.push((*seq, *uid));
                    }
                }
            }
            Ok(())
        })
        .await?
        .into_result()?;
        found.sort_unstable();
        Ok(found)
    }

    /// Runs a [`Locate`] search to its end: the number of messages whose UID is below its
    /// bound.
    async fn locate(&mut self, mut search: Locate) -> Result<u32> {
        loop {
            let seqs = search.probes();
            if seqs.is_empty() {
                return Ok(search.count());
            }
            let probes = self.probe(&seqs).await?;
            if probes.len() != seqs.len() {
                return Err(ImapError::Protocol(
                    "sequence probe came back incomplete".into(),
                ));
            }
            search.learn(&probes);
        }
    }

    async fn arrival_page(
        &mut self,
        mailbox: &MailboxName,
        req: &PageRequest,
    ) -> Result<HeaderPage> {
        let limit = req.limit.max(1);
        let mode = PreviewMode::of(self, req.preview);
        let before = self.current()?.exists;
        let window = match req.cursor {
            None => paging::first_window(req.order, before, limit),
            Some(_) => None,
        };
        let (state, mut first) = self.refresh_and_fetch(mailbox, window, mode).await?;
        let exists = self.current()?.exists;
        let mut page = match (req.order, req.cursor) {
            (_, _) if exists == 0 => Vec::new(),
            (Order::Desc, None) => {
                let top = first.iter().map(|f| f.seq).max().unwrap_or(0);
                if let Some((lo, hi)) = paging::announced_since(top, exists, limit) {
                    first.extend(self.fetch_seq(lo, hi, mode).await?);
                }
                self.fill_down(first, u32::MAX, limit, mode).await?
            }
            (Order::Asc, None) => {
                if first.is_empty() {
                    first = self.fetch_seq(1, exists.min(limit), mode).await?;
                }
                self.fill_up(first, 0, limit, exists, mode).await?
            }
            (Order::Desc, Some(c)) => self.page_below(c, limit, exists, mode).await?,
            (Order::Asc, Some(c)) => self.page_above(c, limit, exists, mode).await?,
        };
        match req.order {
            Order::Desc => page.sort_unstable_by_key(|f| std::cmp::Reverse(f.uid)),
            Order::Asc => page.sort_unstable_by_key(|f| f.uid),
        }
        page.truncate(limit as usize);
        // Only the page's own messages: a window may have fetched a few more.
        self.add_previews(mailbox, &mut page).await?;
        let next_cursor = page
            .last()
            .filter(|last| paging::continues(req.order, last.seq, exists))
            .map(|last| PageCursor {
                uid_validity: state.uid_validity,
                anchor_uid: last.uid,
                position: last.seq,
                query: req.query,
            });
        Ok(HeaderPage {
            uid_validity: state.uid_validity,
            total: exists,
            state,
            messages: page.into_iter().map(|f| f.summary).collect(),
            next_cursor,
            preview: req.preview,
        })
    }

    /// Completes a newest-first page: keeps messages below `bound`, then fetches further down
    /// until `limit` are had or the mailbox's start is reached.
    async fn fill_down(
        &mut self,
        mut have: Vec<Fetched>,
        bound: u32,
        limit: u32,
        mode: PreviewMode,
    ) -> Result<Vec<Fetched>> {
        have.retain(|f| f.uid < bound);
        let lowest = |have: &[Fetched]| have.iter().map(|f| f.seq).min();
        while let Some((lo, hi)) = paging::fill_down(lowest(&have), have.len(), limit) {
            let more = self.fetch_seq(lo, hi, mode).await?;
            if more.is_empty() {
                break;
            }
            have.extend(more);
        }
        Ok(have)
    }

    /// Completes an oldest-first page: keeps messages above `bound`, then fetches further up.
    async fn fill_up(
        &mut self,
        mut have: Vec<Fetched>,
        bound: u32,
        limit: u32,
        exists: u32,
        mode: PreviewMode,
    ) -> Result<Vec<Fetched>> {
        have.retain(|f| f.uid > bound);
        let highest = |have: &[Fetched]| have.iter().map(|f| f.seq).max();
        while let Some((lo, hi)) = paging::fill_up(highest(&have), have.len(), limit, exists) {
            let more = self.fetch_seq(lo, hi, mode).await?;
            if more.is_empty() {
                break;
            }
            have.extend(more);
        }
        Ok(have)
    }

    /// The `limit` messages just below the cursor's anchor.
    async fn page_below(
        &mut self,
        cursor: PageCursor,
        limit: u32,
        exists: u32,
        mode: PreviewMode,
    ) -> Result<Vec<Fetched>> {
        let anchor = cursor.anchor_uid;
        let (lo, hi) = paging::below_window(cursor.position, limit, exists);
        let window = self.fetch_seq(lo, hi, mode).await?;
        let have = match paging::below_boundary(&seq_uids(&window), anchor, (lo, hi), exists) {
            Boundary::InWindow => window,
            Boundary::Empty => return Ok(Vec::new()),
            Boundary::Search(search) => {
                let count = self.locate(search).await?;
                match paging::below_range(count, limit) {
                    Some((lo, hi)) => self.fetch_seq(lo, hi, mode).await?,
                    None => return Ok(Vec::new()),
                }
            }
        };
        self.fill_down(have, anchor, limit, mode).await
    }

    /// The `limit` messages just above the cursor's anchor.
    async fn page_above(
        &mut self,
        cursor: PageCursor,
        limit: u32,
        exists: u32,
        mode: PreviewMode,
    ) -> Result<Vec<Fetched>> {
        let anchor = cursor.anchor_uid;
        let (lo, hi) = paging::above_window(cursor.position, limit, exists);
        let window = self.fetch_seq(lo, hi, mode).await?;
        let have = match paging::above_boundary(&seq_uids(&window), anchor, (lo, hi), exists) {
            Boundary::InWindow => window,
            Boundary::Empty => return Ok(Vec::new()),
            Boundary::Search(search) => {
                let count = self.locate(search).await?;
                match paging::above_range(count, limit, exists) {
                    Some((lo, hi)) => self.fetch_seq(lo, hi, mode).await?,
                    None => return Ok(Vec::new()),
                }
            }
        };
        self.fill_up(have, anchor, limit, exists, mode).await
    }

    async fn searched_page(
        &mut self,
        mailbox: &MailboxName,
        req: &PageRequest,
    ) -> Result<HeaderPage> {
        let limit = req.limit.max(1) as usize;
        let query = match req.sort {
            SortKey::Arrival => Command::new("UID SEARCH").search(&req.filters),
            key => self.sort_command(key, req.order, &req.filters)?,
        };
        let (state, ordered) = self.ordered_uids(mailbox, query, req).await?;
        let start = match req.cursor {
            None => 0,
            Some(c) => match ordered.iter().position(|&u| u == c.anchor_uid) {
                Some(i) => i + 1,
                None if req.sort == SortKey::Arrival => match req.order {
                    Order::Desc => ordered.partition_point(|&u| u > c.anchor_uid),
                    Order::Asc => ordered.partition_point(|&u| u < c.anchor_uid),
                },
                // The anchor left the result: continue from where it was.
                None => (c.position as usize).min(ordered.len()),
            },
        };
        let end = (start + limit).min(ordered.len());
        let page_uids = &ordered[start..end];
        let mode = PreviewMode::of(self, req.preview);
        let messages = self.summaries_by_uid(page_uids, mode).await?;
        let next_cursor = (end < ordered.len() && end > start).then(|| PageCursor {
            uid_validity: state.uid_validity,
            anchor_uid: ordered[end - 1],
            position: u32::try_from(end).unwrap_or(u32::MAX),
            query: req.query,
        });
        Ok(HeaderPage {
            uid_validity: state.uid_validity,
            total: u32::try_from(ordered.len()).unwrap_or(u32::MAX),
            state,
            messages,
            next_cursor,
            preview: req.preview,
        })
    }

    /// The UIDs `query` (a UID SEARCH or UID SORT) returns, in page order, and the mailbox's
    /// state. A result cached at the mailbox's current state is reused (NOOP and STATUS first,
    /// then the query only if the state moved); without one cached, NOOP, STATUS and the query
    /// go in one round trip as before. Caching needs CONDSTORE, whose HIGHESTMODSEQ is what
    /// says nothing changed.
    async fn ordered_uids(
        &mut self,
        mailbox: &MailboxName,
        query: Command,
        req: &PageRequest,
    ) -> Result<(MailboxState, Arc<[u32]>)> {
        let cache = self
            .cache()
            .filter(|_| self.capabilities().has("CONDSTORE"))
            .cloned();
        // The command as sent (under a fixed tag) names the query exactly.
        let key = cache.as_ref().map(|_| query.to_wire("K", true).concat());
        let in_page_order = |mut uids: Vec<u32>| -> Arc<[u32]> {
            if req.sort == SortKey::Arrival {
                uids.sort_unstable();
                if req.order == Order::Desc {
                    uids.reverse();
                }
            }
            uids.into()
        };
        let remember = |state: MailboxState, uids: &Arc<[u32]>| {
            if let (Some(cache), Some(key)) = (&cache, &key) {
                cache.put_result(mailbox, key, state, uids.clone());
            }
        };
        if let (Some(cache), Some(key)) = (&cache, &key)
            && cache.has_result(mailbox, key)
        {
            let refreshed = self
                .refresh_and_run(
                    mailbox,
                    None,
                    Wanted::Seqs(u32::MAX, Some(0)),
                    PreviewMode::Off,
                )
                .await?;
            if !refreshed.changed
                && let Some(uids) = cache.result(mailbox, key, &refreshed.state)
            {
                return Ok((refreshed.state, uids));
            }
            let mut found = Vec::new();
            self.run(&query, |r| {
                if let Response::MailboxData(
                    MailboxDatum::Search(uids) | MailboxDatum::Sort(uids),
                ) = r
                {
                    found.extend_from_slice(uids);
                }
                Ok(())
            })
            .await?
            .into_result()?;
            let uids = in_page_order(found);
            remember(refreshed.state, &uids);
            return Ok((refreshed.state, uids));
        }
        let refreshed = self
            .refresh_and_run(
                mailbox,
                Some(query),
                Wanted::Seqs(u32::MAX, Some(0)),
                PreviewMode::Off,
            )
            .await?;
        if let Some(done) = refreshed.extra {
            done.into_result()?;
        }
        let uids = in_page_order(refreshed.found);
        remember(refreshed.state, &uids);
        Ok((refreshed.state, uids))
    }

    /// UIDs matching `filters` (every message when empty).
    pub async fn search_uids(&mut self, filters: &[SearchKey]) -> Result<Vec<u32>> {
        let mut uids = Vec::new();
        let cmd = Command::new("UID SEARCH").search(filters);
        self.run(&cmd, |r| {
            if let Response::MailboxData(MailboxDatum::Search(found)) = r {
                uids.extend_from_slice(found);
            }
            Ok(())
        })
        .await?
        .into_result()?;
        Ok(uids)
    }

    fn sort_command(&self, key: SortKey, order: Order, filters: &[SearchKey]) -> Result<Command> {
        if !self.capabilities().has("SORT") {
            return Err(ImapError::Unsupported(
                "SORT (only arrival order is available)",
            ));
        }
        let criteria = match (key, order) {
            (SortKey::Arrival, Order::Asc) => "(ARRIVAL)",
            (SortKey::Arrival, Order::Desc) => "(REVERSE ARRIVAL)",
            (SortKey::Date, Order::Asc) => "(DATE)",
            (SortKey::Date, Order::Desc) => "(REVERSE DATE)",
            (SortKey::From, Order::Asc) => "(FROM)",
            (SortKey::From, Order::Desc) => "(REVERSE FROM)",
            (SortKey::Subject, Order::Asc) => "(SUBJECT)",
            (SortKey::Subject, Order::Desc) => "(REVERSE SUBJECT)",
            (SortKey::Size, Order::Asc) => "(SIZE)",
            (SortKey::Size, Order::Desc) => "(REVERSE SIZE)",
        };
        Ok(Command::new("UID SORT")
            .atom(criteria)
            .sort_criteria(filters))
    }

    /// Summaries of `uids` as values, in the order given (missing ones are skipped), with
    /// their previews when `preview`: for callers that read their fields, such as thread
    /// lists. Header lists write the cached JSON instead ([`Connection::summaries_by_uid`]).
    pub(crate) async fn summary_values_by_uid(
        &mut self,
        uids: &[u32],
        preview: bool,
    ) -> Result<Vec<Summary>> {
        Ok(self.summary_values_and_search(uids, preview, &[]).await?.0)
    }

    /// [`Connection::summary_values_by_uid`], with a `UID SEARCH` of `search` (unless empty)
    /// pipelined before the fetch: the summaries and the UIDs found, in one round trip.
    pub(crate) async fn summary_values_and_search(
        &mut self,
        uids: &[u32],
        preview: bool,
        search: &[SearchKey],
    ) -> Result<(Vec<Summary>, Vec<u32>)> {
        let mode = PreviewMode::of(self, preview);
        let (entries, found) = self.summaries_and_search(uids, mode, search).await?;
        let summaries = entries
            .iter()
            .filter_map(|entry| entry.to_summary(preview))
            .collect();
        Ok((summaries, found))
    }

    /// Summaries of `uids`, in the order given (missing ones, expunged meanwhile, are
    /// skipped), with their previews unless `mode` is off.
    async fn summaries_by_uid(
        &mut self,
        uids: &[u32],
        mode: PreviewMode,
    ) -> Result<Vec<ListEntry>> {
        Ok(self.summaries_and_search(uids, mode, &[]).await?.0)
    }

    /// [`Connection::summaries_by_uid`], with a `UID SEARCH` of `search` (unless empty)
    /// pipelined before the fetch, and its UIDs.
    async fn summaries_and_search(
        &mut self,
        uids: &[u32],
        mode: PreviewMode,
        search: &[SearchKey],
    ) -> Result<(Vec<ListEntry>, Vec<u32>)> {
        let mut found = Vec::new();
        let mut cmds = Vec::with_capacity(2);
        if !search.is_empty() {
            cmds.push(Command::new("UID SEARCH").search(search));
        }
        let set = (!uids.is_empty())
            .then(|| UidSet::from_uids(uids.iter().copied()))
            .transpose()?;
        let mailbox = self.current()?.name;
        let mut window = set
            .as_ref()
            .map(|set| WindowCollector::new(self, &mailbox, Wanted::Uids(set.clone()), mode));
        if let (Some(set), Some(window)) = (&set, &window) {
            cmds.push(Command::new("UID FETCH").uid_set(set).atom(window.items()));
        }
        if cmds.is_empty() {
            return Ok((Vec::new(), found));
        }
        let done = self
            .run_pipelined_raw(&cmds, |_, r, raw| {
                if let Response::MailboxData(MailboxDatum::Search(uids)) = r {
                    found.extend_from_slice(uids);
                } else if let Some(window) = window.as_mut() {
                    window.on(r, raw);
                }
                Ok(())
            })
            .await?;
        for completion in done {
            completion.into_result()?;
        }
        let Some(window) = window else {
            return Ok((Vec::new(), found));
        };
        let mut fetched = self.complete(window).await?;
        self.add_previews(&mailbox, &mut fetched).await?;
        let mut by_uid: HashMap<u32, ListEntry> =
            fetched.into_iter().map(|f| (f.uid, f.summary)).collect();
        Ok((
            uids.iter().filter_map(|u| by_uid.remove(u)).collect(),
            found,
        ))
    }

    /// Gives the entries of `page` (of `mailbox`, selected) that need one their preview, and
    /// keeps it in the cache with the summary: at most two round trips, none when every
    /// entry has its preview or none is wanted.
    async fn add_previews(&mut self, mailbox: &MailboxName, page: &mut [Fetched]) -> Result<()> {
        let needs = take_needs(page.iter_mut().map(|f| (f.uid, &mut f.preview)));
        if needs.is_empty() {
            return Ok(());
        }
        let needed: HashSet<u32> = needs.iter().map(|(uid, _)| *uid).collect();
        let mut found = self.fetch_previews(needs).await?;
        let uid_validity = self.current()?.uid_validity;
        let mut cache = self.cache().map(|c| c.folder(mailbox, uid_validity));
        for f in page.iter_mut().filter(|f| needed.contains(&f.uid)) {
            // None found: the message was expunged meanwhile, as in `fill_previews`.
            let preview = found.remove(&f.uid).unwrap_or_default();
            f.summary = f.summary.with_preview(&preview);
            if let Some(cache) = &mut cache {
                cache.put(f.summary.summary().clone());
            }
        }
        Ok(())
    }

    /// Gives the summaries of `fetched` that need one their preview (an empty one for a
    /// message expunged meanwhile): at most two round trips, none when none needs one.
    pub(crate) async fn fill_previews(&mut self, fetched: &mut [FetchedSummary]) -> Result<()> {
        let needs = take_needs(fetched.iter_mut().map(|f| (f.uid, &mut f.preview)));
        if needs.is_empty() {
            return Ok(());
        }
        let mut found = self.fetch_previews(needs).await?;
        for f in fetched.iter_mut().filter(|f| f.summary.preview.is_none()) {
            f.summary.preview = Some(found.remove(&f.uid).unwrap_or_default());
        }
        Ok(())
    }

    /// One message's summary, header, MIME structure and text parts (two round trips: the
    /// structure decides which parts to read). `mark_seen` sets `\Seen` in the second one.
    ///
    /// The second round trip also reads what the structure cannot tell: the ends of base64
    /// attachments and small quoted-printable or uuencoded ones whole, for their exact decoded
    /// size ([`BodyPart::size_probe`]), and the MIME header of a part whose file name the
    /// BODYSTRUCTURE damaged. Uuencoded files inside the text are listed as attachments. A
    /// third round trip reads whole the rare base64 attachment whose ends do not tell its size.
    pub async fn message_detail(
        &mut self,
        mailbox: &MailboxName,
        uid: u32,
        mark_seen: bool,
        limits: &WalkLimits,
    ) -> Result<MessageDetail> {
        let selected = self.select(mailbox).await?;
        let set = UidSet::single(uid)?;
        // A message read before needs one round trip: its structure and header are known,
        // only its flags are read with the parts. Setting \Seen takes the long way, which
        // knows the flags before deciding to store.
        let known = self
            .cache()
            .filter(|_| !mark_seen)
            .and_then(|cache| cache.detail(mailbox, selected.uid_validity, uid));
        let (mut summary, header, mut parts) = match &known {
            Some(known) => (
                known.summary.clone(),
                known.header.clone(),
                known.parts.clone(),
            ),
            None => {
                let detail = self.message_outline(uid, limits).await?;
                if let Some(cache) = self.cache() {
                    cache.put_detail(mailbox, selected.uid_validity, uid, &detail);
                }
                (detail.summary, detail.header, detail.parts)
            }
        };

        let mut fetch = Command::new("UID FETCH")
            .uid_set(&set)
            .atom(if known.is_some() {
                "(UID FLAGS"
            } else {
                "(UID"
            });
        let mut items = 0;
        for part in parts.text_parts.iter().chain(parts.html_parts.iter()) {
            fetch = if part.whole_body {
                fetch.text_section("BODY.PEEK", Some((0, MAX_TEXT_PART)))
            } else {
                fetch.section(
                    "BODY.PEEK",
                    &PartId::parse(&part.part_id)?,
                    Some((0, MAX_TEXT_PART)),
                )
            };
            items += 1;
        }
        let mut whole_budget = MAX_WHOLE_PROBES;
        for part in &mut parts.attachments {
            let id = PartId::parse(&part.part_id)?;
            match part.size_probe() {
                SizeProbe::Ends { tail_offset } => {
                    fetch = fetch
                        .section("BODY.PEEK", &id, Some((0, PROBE_LEN)))
                        .section("BODY.PEEK", &id, Some((tail_offset, PROBE_LEN)));
                    items += 2;
                }
                SizeProbe::Whole(len) if len <= whole_budget => {
                    whole_budget -= len;
                    fetch = fetch.section("BODY.PEEK", &id, Some((0, len)));
                    items += 1;
                }
                SizeProbe::Whole(_) | SizeProbe::None => {}
            }
            if part.filename_needs_header() {
                fetch = fetch.mime_header_section("BODY.PEEK", &id);
                items += 1;
            }
        }
        let mut cmds = Vec::new();
        if items > 0 || known.is_some() {
            cmds.push(fetch.atom(")"));
        }
        let already_seen = summary
            .flags
            .iter()
            .any(|f| f.eq_ignore_ascii_case("\\Seen"));
        if mark_seen && !already_seen {
            cmds.push(
                Command::new("UID STORE")
                    .uid_set(&set)
                    .atom("+FLAGS.SILENT (\\Seen)"),
            );
        }
        let mut sections = Sections::new();
        let mut flags = None;
        if !cmds.is_empty() {
            let done = self
                .run_pipelined(&cmds, |_, r| {
                    if known.is_some()
                        && let Response::Fetch(_, attrs) = r
                        && let Some((u, f)) = uid_and_flags(attrs)
                        && u == uid
                    {
                        flags = Some(f);
                    }
                    sections.take(uid, r);
                    Ok(())
                })
                .await?;
            for completion in done {
                completion.into_result()?;
            }
            if mark_seen && !already_seen {
                summary.flags.push("\\Seen".to_owned());
            }
        }
        if known.is_some() {
            summary.flags = flags.ok_or(ImapError::MessageNotFound)?;
        }

        let mut bodies = HashMap::new();
        for part in parts.text_parts.iter().chain(parts.html_parts.iter()) {
            let key = if part.whole_body {
                "TEXT"
            } else {
                &part.part_id
            };
            if let Some(data) = sections.remove(key, 0) {
                bodies.insert(part.part_id.clone(), data);
            }
        }
        // Cyrus describes a message whose multipart lacks a boundary as one empty part and
        // serves its TEXT section empty too, though the body is there: read it from the whole
        // message, past the header (one more round trip, only then).
        let hidden: Vec<String> = parts
            .text_parts
            .iter()
            .chain(parts.html_parts.iter())
            .filter(|p| p.whole_body && bodies.get(&p.part_id).is_none_or(Vec::is_empty))
            .map(|p| p.part_id.clone())
            .collect();
        let header_len = u32::try_from(header.len()).unwrap_or(u32::MAX);
        let unsplit_multipart = crate::mail::content::first_field(&header, "Content-Type")
            .is_some_and(|value| {
                let value = value.to_ascii_lowercase();
                value.trim_ascii_start().starts_with(b"multipart/")
                    && !value.windows(9).any(|w| w == b"boundary=")
            });
        if !hidden.is_empty() && unsplit_multipart && summary.size > header_len {
            let fetch = Command::new("UID FETCH")
                .uid_set(&set)
                .atom("(UID")
                .whole_body_section("BODY.PEEK", Some((header_len, MAX_TEXT_PART)))
                .atom(")");
            let mut whole = Sections::new();
            self.run(&fetch, |r| {
                whole.take(uid, r);
                Ok(())
            })
            .await?
            .into_result()?;
            if let Some(data) = whole.remove("", header_len) {
                for id in hidden {
                    bodies.insert(id, data.clone());
                }
            }
        }
        let mut unsettled = Vec::new();
        for part in &mut parts.attachments {
            match part.size_probe() {
                SizeProbe::Ends { tail_offset } => {
                    if let (Some(head), Some(tail)) = (
                        sections.get(&part.part_id, 0),
                        sections.get(&part.part_id, tail_offset),
                    ) {
                        part.learn_from_ends(head, tail);
                    }
                    if part.decoded_size.is_none() && part.encoded_size <= MAX_WHOLE_PROBE {
                        unsettled.push(part.part_id.clone());
                    }
                }
                SizeProbe::Whole(_) => {
                    if let Some(data) = sections.get(&part.part_id, 0) {
                        part.learn_from_whole(data);
                    }
                }
                SizeProbe::None => {}
            }
            if let Some(mime) = sections.get(&format!("{}.MIME", part.part_id), 0) {
                part.learn_filename_from_header(mime);
            }
        }
        if !unsettled.is_empty() {
            self.settle_sizes(uid, &mut parts.attachments, &unsettled)
                .await?;
        }
        parts.add_embedded_files(&bodies);
        Ok(MessageDetail {
            summary,
            header,
            parts,
            bodies,
            uid_validity: selected.uid_validity,
        })
    }

    /// The first round trip of a message view: the summary, the header and the walked
    /// structure (with file names the header gives a single-part message).
    async fn message_outline(&mut self, uid: u32, limits: &WalkLimits) -> Result<MessageOutline> {
        let set = UidSet::single(uid)?;
        let mut summary = None;
        let mut header = None;
        let mut structure_result = None;
        let mut single_part = false;
        let cmd = Command::new("UID FETCH")
            .uid_set(&set)
            .atom("(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER])");
        self.run(&cmd, |r| {
            if let Response::Fetch(_, attrs) = r
                && attrs
                    .iter()
                    .any(|a| matches!(a, AttributeValue::Uid(u) if *u == uid))
                && attrs
                    .iter()
                    .any(|a| matches!(a, AttributeValue::Envelope(_)))
            {
                summary = summary_from_fetch(attrs);
                for attr in attrs {
                    match attr {
                        AttributeValue::BodySection { data, .. } => {
                            header = Some(data.as_deref().unwrap_or_default().to_vec());
                        }
                        AttributeValue::BodyStructure(bs) => {
                            single_part = !matches!(bs, BodyStructure::Multipart { .. });
                            structure_result = Some(structure::walk(bs, limits));
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        })
        .await?
        .into_result()?;
        let summary = summary.ok_or(ImapError::MessageNotFound)?;
        let header = header.unwrap_or_default();
        let mut parts = match structure_result {
            Some(Ok(parts)) => parts,
            Some(Err(e)) => {
                return Err(ImapError::NotAllowed(format!(
                    "the message's MIME structure is refused: {e}"
                )));
            }
            None => {
                return Err(ImapError::Protocol(
                    "no BODYSTRUCTURE in FETCH response".into(),
                ));
            }
        };
        if single_part {
            // The part's MIME header is the message header, which is here already.
            for part in parts
                .attachments
                .iter_mut()
                .filter(|p| p.filename_needs_header())
            {
                part.learn_filename_from_header(&header);
            }
        }
        Ok(MessageOutline {
            summary,
            header,
            parts,
        })
    }

    /// Reads the attachments `ids` whole (up to [`MAX_WHOLE_PROBES`] together) to learn their
    /// decoded sizes.
    async fn settle_sizes(
        &mut self,
        uid: u32,
        attachments: &mut [BodyPart],
        ids: &[String],
    ) -> Result<()> {
        let set = UidSet::single(uid)?;
        let mut fetch = Command::new("UID FETCH").uid_set(&set).atom("(UID");
        let mut budget = MAX_WHOLE_PROBES;
        let mut wanted = Vec::new();
        for part in attachments.iter().filter(|p| ids.contains(&p.part_id)) {
            if part.encoded_size > budget {
                continue;
            }
            budget -= part.encoded_size;
            let id = PartId::parse(&part.part_id)?;
            fetch = fetch.section("BODY.PEEK", &id, Some((0, part.encoded_size.max(1))));
            wanted.push(part.part_id.clone());
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let mut sections = Sections::new();
        self.run(&fetch.atom(")"), |r| {
            sections.take(uid, r);
            Ok(())
        })
        .await?
        .into_result()?;
        for part in attachments
            .iter_mut()
            .filter(|p| wanted.contains(&p.part_id))
        {
            if let Some(data) = sections.get(&part.part_id, 0) {
                part.learn_from_whole(data);
            }
        }
        Ok(())
    }

    /// The raw (transfer-encoded) content of a text part as the message view reads it: its
    /// first [`MAX_TEXT_PART`] bytes.
    pub async fn read_text_part(&mut self, uid: u32, part: &BodyPart) -> Result<Vec<u8>> {
        let set = UidSet::single(uid)?;
        let fetch = Command::new("UID FETCH").uid_set(&set).atom("(UID");
        let fetch = if part.whole_body {
            fetch.text_section("BODY.PEEK", Some((0, MAX_TEXT_PART)))
        } else {
            fetch.section(
                "BODY.PEEK",
                &PartId::parse(&part.part_id)?,
                Some((0, MAX_TEXT_PART)),
            )
        };
        let mut sections = Sections::new();
        self.run(&fetch.atom(")"), |r| {
            sections.take(uid, r);
            Ok(())
        })
        .await?
        .into_result()?;
        let key = if part.whole_body {
            "TEXT"
        } else {
            &part.part_id
        };
        sections.remove(key, 0).ok_or(ImapError::MessageNotFound)
    }

    /// The message's size, for raw downloads: (UIDVALIDITY, RFC822.SIZE).
    pub async fn message_size(&mut self, mailbox: &MailboxName, uid: u32) -> Result<(u32, u32)> {
        let selected = self.select(mailbox).await?;
        let set = UidSet::single(uid)?;
        let mut size = None;
        let cmd = Command::new("UID FETCH")
            .uid_set(&set)
            .atom("(UID RFC822.SIZE)");
        self.run(&cmd, |r| {
            if let Response::Fetch(_, attrs) = r
                && attrs
                    .iter()
                    .any(|a| matches!(a, AttributeValue::Uid(u) if *u == uid))
            {
                for attr in attrs {
                    if let AttributeValue::Rfc822Size(s) = attr {
                        size = Some(*s);
                    }
                }
            }
            Ok(())
        })
        .await?
        .into_result()?;
        Ok((
            selected.uid_validity,
            size.ok_or(ImapError::MessageNotFound)?,
        ))
    }

    /// The message's size and MIME structure, for downloads; file names the BODYSTRUCTURE
    /// damaged are read again from the parts' MIME headers.
    pub async fn message_structure(
        &mut self,
        mailbox: &MailboxName,
        uid: u32,
        limits: &WalkLimits,
    ) -> Result<(u32, u32, MessageParts)> {
        let selected = self.select(mailbox).await?;
        let set = UidSet::single(uid)?;
        let mut size = None;
        let mut parts = None;
        let mut single_part = false;
        let cmd = Command::new("UID FETCH")
            .uid_set(&set)
            .atom("(UID RFC822.SIZE BODYSTRUCTURE)");
        self.run(&cmd, |r| {
            if let Response::Fetch(_, attrs) = r
                && attrs
                    .iter()
                    .any(|a| matches!(a, AttributeValue::Uid(u) if *u == uid))
            {
                for attr in attrs {
                    match attr {
                        AttributeValue::Rfc822Size(s) => size = Some(*s),
                        AttributeValue::BodyStructure(bs) => {
                            single_part = !matches!(bs, BodyStructure::Multipart { .. });
                            parts = Some(structure::walk(bs, limits))
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        })
        .await?
        .into_result()?;
        let size = size.ok_or(ImapError::MessageNotFound)?;
        let mut parts = parts
            .ok_or_else(|| ImapError::Protocol("no BODYSTRUCTURE in FETCH response".into()))?
            .map_err(|e| {
                ImapError::NotAllowed(format!("the message's MIME structure is refused: {e}"))
            })?;
        self.repair_filenames(uid, &mut parts.attachments, single_part)
            .await?;
        Ok((selected.uid_validity, size, parts))
    }

    /// Reads again, from the parts' own MIME headers (the message header for a message of one
    /// part), the file names the BODYSTRUCTURE damaged; one round trip, and none when no name
    /// needs it.
    async fn repair_filenames(
        &mut self,
        uid: u32,
        attachments: &mut [BodyPart],
        single_part: bool,
    ) -> Result<()> {
        if !attachments.iter().any(BodyPart::filename_needs_header) {
            return Ok(());
        }
        let set = UidSet::single(uid)?;
        let mut fetch = Command::new("UID FETCH").uid_set(&set).atom("(UID");
        if single_part {
            fetch = fetch.atom("BODY.PEEK[HEADER]");
        } else {
            for part in attachments.iter().filter(|p| p.filename_needs_header()) {
                fetch = fetch.mime_header_section("BODY.PEEK", &PartId::parse(&part.part_id)?);
            }
        }
        let mut sections = Sections::new();
        self.run(&fetch.atom(")"), |r| {
            sections.take(uid, r);
            Ok(())
        })
        .await?
        .into_result()?;
        for part in attachments.iter_mut().filter(|p| p.filename_needs_header()) {
            let key = if single_part {
                "HEADER".to_owned()
            } else {
                format!("{}.MIME", part.part_id)
            };
            if let Some(header) = sections.get(&key, 0) {
                part.learn_filename_from_header(header);
            }
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset` of a section (`None` = the whole message) of a message
    /// in the selected mailbox, without setting `\Seen`. An empty result means past the end.
    pub async fn read_section(
        &mut self,
        uid: u32,
        part: Option<&PartId>,
        offset: u32,
        len: u32,
    ) -> Result<Vec<u8>> {
        let set = UidSet::single(uid)?;
        let mut cmd = Command::new("UID FETCH").uid_set(&set).atom("(UID");
        cmd = match part {
            Some(id) => cmd.section("BODY.PEEK", id, Some((offset, len))),
            None => cmd.whole_body_section("BODY.PEEK", Some((offset, len))),
        };
        let cmd = cmd.atom(")");
        let mut chunk = None;
        self.run(&cmd, |r| {
            if let Response::Fetch(_, attrs) = r
                && attrs
                    .iter()
                    .any(|a| matches!(a, AttributeValue::Uid(u) if *u == uid))
            {
                for attr in attrs {
                    if let AttributeValue::BodySection { data, .. } = attr {
                        chunk = Some(data.as_deref().unwrap_or_default().to_vec());
                    }
                }
            }
            Ok(())
        })
        .await?
        .into_result()?;
        chunk.ok_or(ImapError::MessageNotFound)
    }
}

/// Most bytes of whole attachments one message view reads to learn their exact sizes.
const MAX_WHOLE_PROBES: u32 = 4 * MAX_WHOLE_PROBE;

/// The body sections of one message's FETCH answers, by section (`1.2`, `1.2.MIME`, `TEXT`,
/// `HEADER`) and offset.
#[derive(Debug, Default)]
struct Sections(HashMap<(String, u32), Vec<u8>>);

impl Sections {
    fn new() -> Self {
        Self::default()
    }

    /// Keeps the body sections of `response` if it is a FETCH answer for `uid`.
    fn take(&mut self, uid: u32, response: &Response<'_>) {
        let Response::Fetch(_, attrs) = response else {
            return;
        };
        if !attrs
            .iter()
            .any(|a| matches!(a, AttributeValue::Uid(u) if *u == uid))
        {
            return;
        }
        for attr in attrs {
            if let AttributeValue::BodySection {
                section,
                index,
                data,
            } = attr
                && let Some(key) = section.as_ref().map_or(Some(String::new()), section_key)
            {
                self.0.insert(
                    (key, index.unwrap_or(0)),
                    data.as_deref().unwrap_or_default().to_vec(),
                );
            }
        }
    }

    fn get(&self, key: &str, offset: u32) -> Option<&[u8]> {
        self.0.get(&(key.to_owned(), offset)).map(Vec::as_slice)
    }

    fn remove(&mut self, key: &str, offset: u32) -> Option<Vec<u8>> {
        self.0.remove(&(key.to_owned(), offset))
    }
}

/// The key a body section is held by in [`Sections`]: `1.2`, `1.2.MIME`, `TEXT`, `HEADER`.
pub(super) fn section_key(section: &SectionPath) -> Option<String> {
    let number = |numbers: &[u32]| {
        numbers
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(".")
    };
    match section {
        SectionPath::Part(numbers, None) => Some(number(numbers)),
        SectionPath::Part(numbers, Some(MessageSection::Mime)) => {
            Some(format!("{}.MIME", number(numbers)))
        }
        SectionPath::Full(MessageSection::Text) => Some("TEXT".to_owned()),
        SectionPath::Full(MessageSection::Header) => Some("HEADER".to_owned()),
        SectionPath::Part(_, Some(_)) | SectionPath::Full(_) => None,
    }
}
