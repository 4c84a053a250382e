//! A bounded, size-aware cache of message summaries and of SEARCH/SORT results.
//!
//! What a summary says (envelope, size, structure, arrival time) never changes for a given
//! UIDVALIDITY and UID, so it can be kept across requests and sessions; only flags change, and
//! those are always read fresh. Entries are scoped to one user on one server and one mailbox, so
//! nothing crosses accounts.
//!
//! A SEARCH or SORT result is kept with the mailbox's delta-sync state (UIDVALIDITY,
//! HIGHESTMODSEQ, UIDNEXT) it was computed at. With CONDSTORE every flag change and expunge
//! raises HIGHESTMODSEQ and every new message raises UIDNEXT, so while the state is the same
//! the result is too: a sorted page then costs a STATUS instead of a SORT of the whole mailbox.

use std::sync::Arc;

use moka::sync::Cache;

use super::encode::MailboxName;
use super::pool::UserKey;
use super::state::MailboxState;
use crate::mail::summary::Summary;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ResultKey {
    user: Arc<UserKey>,
    mailbox: MailboxName,
    /// The SEARCH or SORT command as sent, without its tag.
    query: Vec<u8>,
}

/// A SEARCH or SORT result and the state it was computed at.
#[derive(Debug)]
struct CachedResult {
    state: MailboxState,
    uids: Arc<[u32]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SummaryKey {
    user: Arc<UserKey>,
    mailbox: MailboxName,
    uid_validity: u32,
    uid: u32,
}

/// The cache, shared by every session.
#[derive(Clone)]
pub struct SummaryCache {
    entries: Cache<SummaryKey, Arc<Summary>>,
    results: Cache<ResultKey, Arc<CachedResult>>,
}

impl SummaryCache {
    /// A cache holding about `max_bytes`: three quarters for summaries, a quarter for
    /// SEARCH/SORT results (4 bytes per UID, so 16 MiB of a 64 MiB cache hold a sorted
    /// 100,000-message mailbox 40 times).
    pub fn new(max_bytes: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes - max_bytes / 4)
            .weigher(|key: &SummaryKey, value: &Arc<Summary>| {
                u32::try_from(weight(key, value)).unwrap_or(u32::MAX)
            })
            .build();
        let results = Cache::builder()
            .max_capacity(max_bytes / 4)
            .weigher(|key: &ResultKey, value: &Arc<CachedResult>| {
                let bytes =
                    128 + key.query.len() + key.mailbox.as_str().len() + 4 * value.uids.len();
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .build();
        SummaryCache { entries, results }
    }

    /// A view of the cache for one user.
    pub fn scope(&self, user: &UserKey) -> CacheScope {
        CacheScope {
            cache: self.clone(),
            user: Arc::new(user.clone()),
        }
    }

    /// Approximate bytes held.
    pub fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.results.run_pending_tasks();
        self.entries.weighted_size() + self.results.weighted_size()
    }
}

/// The cache as one user's sessions see it.
#[derive(Clone)]
pub struct CacheScope {
    cache: SummaryCache,
    user: Arc<UserKey>,
}

impl CacheScope {
    fn key(&self, mailbox: &MailboxName, uid_validity: u32, uid: u32) -> SummaryKey {
        SummaryKey {
            user: self.user.clone(),
            mailbox: mailbox.clone(),
            uid_validity,
            uid,
        }
    }

    /// The cached summary of a message, with `flags` (read fresh) put in.
    pub fn get(
        &self,
        mailbox: &MailboxName,
        uid_validity: u32,
        uid: u32,
        flags: Vec<String>,
    ) -> Option<Summary> {
        let hit = self
            .cache
            .entries
            .get(&self.key(mailbox, uid_validity, uid));
        metrics::counter!(crate::telemetry::names::SUMMARY_CACHE_LOOKUPS, "hit" => if hit.is_some() { "true" } else { "false" }).increment(1);
        hit.map(|cached| Summary {
            flags,
            ..(*cached).clone()
        })
    }

    /// The result of `query` in `mailbox` when it was computed at exactly `state`.
    pub fn result(
        &self,
        mailbox: &MailboxName,
        query: &[u8],
        state: &MailboxState,
    ) -> Option<Arc<[u32]>> {
        let key = ResultKey {
            user: self.user.clone(),
            mailbox: mailbox.clone(),
            query: query.to_vec(),
        };
        let hit = self
            .cache
            .results
            .get(&key)
            .filter(|cached| cached.state == *state)
            .map(|cached| cached.uids.clone());
        metrics::counter!(crate::telemetry::names::SEARCH_CACHE_LOOKUPS, "hit" => if hit.is_some() { "true" } else { "false" }).increment(1);
        hit
    }

    /// Whether a result of `query` in `mailbox` is held, at whatever state.
    pub fn has_result(&self, mailbox: &MailboxName, query: &[u8]) -> bool {
        self.cache.results.contains_key(&ResultKey {
            user: self.user.clone(),
            mailbox: mailbox.clone(),
            query: query.to_vec(),
        })
    }

    /// Remembers the result of `query` in `mailbox` at `state`.
    pub fn put_result(
        &self,
        mailbox: &MailboxName,
        query: &[u8],
        state: MailboxState,
        uids: Arc<[u32]>,
    ) {
        let key = ResultKey {
            user: self.user.clone(),
            mailbox: mailbox.clone(),
            query: query.to_vec(),
        };
        self.cache
            .results
            .insert(key, Arc::new(CachedResult { state, uids }));
    }

    /// Remembers a summary (its flags are not relied upon).
    pub fn put(&self, mailbox: &MailboxName, uid_validity: u32, summary: &Summary) {
        self.cache.entries.insert(
            self.key(mailbox, uid_validity, summary.uid),
            Arc::new(summary.clone()),
        );
    }
}

/// Approximate heap bytes of an entry.
fn weight(key: &SummaryKey, s: &Summary) -> usize {
    let text = |o: &Option<String>| o.as_ref().map_or(0, String::len);
    let addresses = |list: &[crate::mail::summary::Address]| {
        list.iter()
            .map(|a| a.address.len() + text(&a.name) + 48)
            .sum::<usize>()
    };
    std::mem::size_of::<Summary>()
        + key.mailbox.as_str().len()
        + 64
        + text(&s.message_id)
        + text(&s.subject)
        + text(&s.date)
        + text(&s.received_at)
        + text(&s.in_reply_to)
        + addresses(&s.from)
        + addresses(&s.to)
        + addresses(&s.cc)
        + addresses(&s.reply_to)
        + s.flags.iter().map(|f| f.len() + 24).sum::<usize>()
}
