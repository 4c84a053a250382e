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

use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Arc;

use moka::sync::Cache;

use super::encode::MailboxName;
use super::pool::UserKey;
use super::state::MailboxState;
use crate::mail::listing::SummaryJson;

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

/// One user's mailbox at one UIDVALIDITY: what the keys of a page's summaries share, made
/// once per page, with its hash.
#[derive(Debug)]
struct Folder {
    user: Arc<UserKey>,
    mailbox: MailboxName,
    uid_validity: u32,
    /// Of the three above, by the cache's own random hasher.
    hash: u64,
}

impl PartialEq for Folder {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.uid_validity == other.uid_validity
            && self.mailbox == other.mailbox
            && self.user == other.user
    }
}

impl Eq for Folder {}

/// A message in a [`Folder`].
#[derive(Debug, Clone)]
struct SummaryKey {
    folder: Arc<Folder>,
    uid: u32,
}

impl PartialEq for SummaryKey {
    fn eq(&self, other: &Self) -> bool {
        self.uid == other.uid
            && (Arc::ptr_eq(&self.folder, &other.folder) || self.folder == other.folder)
    }
}

impl Eq for SummaryKey {}

impl Hash for SummaryKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.folder.hash);
        state.write_u32(self.uid);
    }
}

/// The cache, shared by every session.
#[derive(Clone)]
pub struct SummaryCache {
    entries: Cache<SummaryKey, Arc<SummaryJson>>,
    results: Cache<ResultKey, Arc<CachedResult>>,
    /// Hashes a [`Folder`]; random, like the tables' own, so that no one can choose names
    /// that collide.
    folder_hasher: RandomState,
}

impl SummaryCache {
    /// A cache holding about `max_bytes`: three quarters for summaries, a quarter for
    /// SEARCH/SORT results (4 bytes per UID, so 16 MiB of a 64 MiB cache hold a sorted
    /// 100,000-message mailbox 40 times).
    pub fn new(max_bytes: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes - max_bytes / 4)
            .weigher(|key: &SummaryKey, value: &Arc<SummaryJson>| {
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
        SummaryCache {
            entries,
            results,
            folder_hasher: RandomState::new(),
        }
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
    /// The summaries of `mailbox` at `uid_validity`.
    pub fn folder(&self, mailbox: &MailboxName, uid_validity: u32) -> CachedFolder {
        let hash = self
            .cache
            .folder_hasher
            .hash_one((&*self.user, mailbox.as_str(), uid_validity));
        CachedFolder {
            entries: self.cache.entries.clone(),
            folder: Arc::new(Folder {
                user: self.user.clone(),
                mailbox: mailbox.clone(),
                uid_validity,
                hash,
            }),
            hits: 0,
            misses: 0,
        }
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
}

/// The cached summaries of one mailbox at one UIDVALIDITY, as one page looks them up. Its
/// lookups are counted in the metrics when it is dropped.
pub struct CachedFolder {
    entries: Cache<SummaryKey, Arc<SummaryJson>>,
    folder: Arc<Folder>,
    hits: u64,
    misses: u64,
}

impl CachedFolder {
    fn key(&self, uid: u32) -> SummaryKey {
        SummaryKey {
            folder: self.folder.clone(),
            uid,
        }
    }

    /// The cached summary of message `uid` (without flags).
    pub fn get(&mut self, uid: u32) -> Option<Arc<SummaryJson>> {
        let hit = self.entries.get(&self.key(uid));
        match hit {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        hit
    }

    /// Remembers a summary.
    pub fn put(&self, summary: Arc<SummaryJson>) {
        self.entries.insert(self.key(summary.uid()), summary);
    }
}

impl Drop for CachedFolder {
    fn drop(&mut self) {
        for (hit, count) in [("true", self.hits), ("false", self.misses)] {
            if count > 0 {
                metrics::counter!(crate::telemetry::names::SUMMARY_CACHE_LOOKUPS, "hit" => hit)
                    .increment(count);
            }
        }
    }
}

/// Approximate heap bytes of an entry.
fn weight(key: &SummaryKey, s: &SummaryJson) -> usize {
    std::mem::size_of::<SummaryKey>()
        + std::mem::size_of::<SummaryJson>()
        + key.folder.mailbox.as_str().len()
        + 64
        + s.len()
}
