//! A bounded, size-aware cache of message summaries and of SEARCH/SORT results.
//!
//! What a summary says (envelope, size, structure, arrival time) never changes for a given
//! UIDVALIDITY and UID, so it can be kept across requests and sessions; only flags change, and
//! those are always read fresh. Entries are scoped to one user on one server and one mailbox, so
//! nothing crosses accounts. Summaries are kept as JSON, in blocks of [`BLOCK`] consecutive
//! UIDs: a page of recent mail is one or two lookups rather than one per message, and its
//! summaries are evicted together, as they are read together.
//!
//! A message view's first round trip (summary, header, walked MIME structure) is kept too, in
//! an eighth of the cache, so that opening a message again reads only its flags and parts.
//!
//! A SEARCH or SORT result is kept with the mailbox's delta-sync state (UIDVALIDITY,
//! HIGHESTMODSEQ, UIDNEXT) it was computed at. With CONDSTORE every flag change and expunge
//! raises HIGHESTMODSEQ and every new message raises UIDNEXT, so while the state is the same
//! the result is too: a sorted page then costs a STATUS instead of a SORT of the whole mailbox.

use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Arc;

use moka::sync::Cache;

use super::encode::MailboxName;
use super::messages::MessageOutline;
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

/// UIDs per block of summaries.
const BLOCK: u32 = 64;

/// The block of UIDs `BLOCK * block ..` in a [`Folder`].
#[derive(Debug, Clone)]
struct BlockKey {
    folder: Arc<Folder>,
    block: u32,
}

impl PartialEq for BlockKey {
    fn eq(&self, other: &Self) -> bool {
        self.block == other.block
            && (Arc::ptr_eq(&self.folder, &other.folder) || self.folder == other.folder)
    }
}

impl Eq for BlockKey {}

impl Hash for BlockKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.folder.hash);
        state.write_u32(self.block);
    }
}

/// The summaries held of one block, by UID.
type Block = Arc<[SummaryJson]>;

/// A message in a [`Folder`].
#[derive(Debug, Clone)]
struct MessageKey {
    folder: Arc<Folder>,
    uid: u32,
}

impl PartialEq for MessageKey {
    fn eq(&self, other: &Self) -> bool {
        self.uid == other.uid
            && (Arc::ptr_eq(&self.folder, &other.folder) || self.folder == other.folder)
    }
}

impl Eq for MessageKey {}

impl Hash for MessageKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.folder.hash);
        state.write_u32(self.uid);
    }
}

/// The cache, shared by every session.
#[derive(Clone)]
pub struct SummaryCache {
    entries: Cache<BlockKey, Block>,
    results: Cache<ResultKey, Arc<CachedResult>>,
    details: Cache<MessageKey, Arc<MessageOutline>>,
    /// Hashes a [`Folder`]; random, like the tables' own, so that no one can choose names
    /// that collide.
    folder_hasher: RandomState,
}

impl SummaryCache {
    /// A cache holding about `max_bytes`: five eighths for summaries, an eighth for message
    /// outlines, a quarter for SEARCH/SORT results (4 bytes per UID, so 16 MiB of a 64 MiB
    /// cache hold a sorted 100,000-message mailbox 40 times).
    pub fn new(max_bytes: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes - max_bytes / 4 - max_bytes / 8)
            .weigher(|key: &BlockKey, value: &Block| {
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
        let details = Cache::builder()
            .max_capacity(max_bytes / 8)
            .weigher(|key: &MessageKey, value: &Arc<MessageOutline>| {
                u32::try_from(outline_weight(key, value)).unwrap_or(u32::MAX)
            })
            .build();
        SummaryCache {
            entries,
            results,
            details,
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
        self.details.run_pending_tasks();
        self.entries.weighted_size() + self.results.weighted_size() + self.details.weighted_size()
    }
}

/// The cache as one user's sessions see it.
#[derive(Clone)]
pub struct CacheScope {
    cache: SummaryCache,
    user: Arc<UserKey>,
}

impl CacheScope {
    fn key_folder(&self, mailbox: &MailboxName, uid_validity: u32) -> Arc<Folder> {
        let hash = self
            .cache
            .folder_hasher
            .hash_one((&*self.user, mailbox.as_str(), uid_validity));
        Arc::new(Folder {
            user: self.user.clone(),
            mailbox: mailbox.clone(),
            uid_validity,
            hash,
        })
    }

    /// The summaries of `mailbox` at `uid_validity`.
    pub fn folder(&self, mailbox: &MailboxName, uid_validity: u32) -> CachedFolder {
        CachedFolder {
            entries: self.cache.entries.clone(),
            folder: self.key_folder(mailbox, uid_validity),
            blocks: Vec::new(),
            new: Vec::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// The outline of message `uid` of `mailbox` at `uid_validity`, from a view of it before.
    pub fn detail(
        &self,
        mailbox: &MailboxName,
        uid_validity: u32,
        uid: u32,
    ) -> Option<Arc<MessageOutline>> {
        self.cache.details.get(&MessageKey {
            folder: self.key_folder(mailbox, uid_validity),
            uid,
        })
    }

    /// Remembers the outline of message `uid`.
    pub fn put_detail(
        &self,
        mailbox: &MailboxName,
        uid_validity: u32,
        uid: u32,
        outline: &MessageOutline,
    ) {
        self.cache.details.insert(
            MessageKey {
                folder: self.key_folder(mailbox, uid_validity),
                uid,
            },
            Arc::new(outline.clone()),
        );
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

/// The cached summaries of one mailbox at one UIDVALIDITY, as one page looks them up. When
/// it is dropped, the summaries it was given are stored, one insert per block, and its
/// lookups are counted in the metrics.
pub struct CachedFolder {
    entries: Cache<BlockKey, Block>,
    folder: Arc<Folder>,
    /// The blocks looked up so far, held or not.
    blocks: Vec<(u32, Option<Block>)>,
    /// Summaries to store.
    new: Vec<SummaryJson>,
    hits: u64,
    misses: u64,
}

impl CachedFolder {
    fn key(&self, block: u32) -> BlockKey {
        BlockKey {
            folder: self.folder.clone(),
            block,
        }
    }

    /// The cached summary of message `uid` (without flags).
    pub fn get(&mut self, uid: u32) -> Option<SummaryJson> {
        let block = uid / BLOCK;
        let held = match self.blocks.iter().find(|(b, _)| *b == block) {
            Some((_, held)) => held,
            None => {
                let held = self.entries.get(&self.key(block));
                self.blocks.push((block, held));
                &self.blocks[self.blocks.len() - 1].1
            }
        };
        let hit = held.as_ref().and_then(|summaries| {
            summaries
                .binary_search_by_key(&uid, SummaryJson::uid)
                .ok()
                .map(|i| summaries[i].clone())
        });
        match hit {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        hit
    }

    /// Remembers a summary.
    pub fn put(&mut self, summary: SummaryJson) {
        self.new.push(summary);
    }

    /// Adds the new summaries to their blocks as the cache holds them now.
    fn store(&mut self) {
        let mut new = std::mem::take(&mut self.new);
        // The last summary put of a message wins (one learnt with its preview after one put
        // without): reversed, sorted stably, the first of each UID kept.
        new.reverse();
        new.sort_by_key(SummaryJson::uid);
        new.dedup_by_key(|s| s.uid());
        for run in new.chunk_by(|a, b| a.uid() / BLOCK == b.uid() / BLOCK) {
            let key = self.key(run[0].uid() / BLOCK);
            let held = self.entries.get(&key);
            let mut summaries: Vec<SummaryJson> = run.to_vec();
            if let Some(held) = held {
                summaries.extend(
                    held.iter()
                        .filter(|s| {
                            run.binary_search_by_key(&s.uid(), SummaryJson::uid)
                                .is_err()
                        })
                        .cloned(),
                );
                summaries.sort_unstable_by_key(SummaryJson::uid);
            }
            self.entries.insert(key, summaries.into());
        }
    }
}

impl Drop for CachedFolder {
    fn drop(&mut self) {
        if !self.new.is_empty() {
            self.store();
        }
        for (hit, count) in [("true", self.hits), ("false", self.misses)] {
            if count > 0 {
                metrics::counter!(crate::telemetry::names::SUMMARY_CACHE_LOOKUPS, "hit" => hit)
                    .increment(count);
            }
        }
    }
}

/// Approximate heap bytes of an entry.
fn weight(key: &BlockKey, summaries: &Block) -> usize {
    std::mem::size_of::<BlockKey>()
        + key.folder.mailbox.as_str().len()
        + 64
        + summaries
            .iter()
            .map(|s| std::mem::size_of::<SummaryJson>() + s.len() + 16)
            .sum::<usize>()
}

/// Approximate heap bytes of a message outline.
fn outline_weight(key: &MessageKey, outline: &MessageOutline) -> usize {
    let summary = serde_json::to_string(&outline.summary).map_or(0, |s| s.len());
    let parts = outline.parts.text_parts.len()
        + outline.parts.html_parts.len()
        + outline.parts.attachments.len();
    std::mem::size_of::<MessageKey>()
        + std::mem::size_of::<MessageOutline>()
        + key.folder.mailbox.as_str().len()
        + 64
        + 2 * summary
        + outline.header.len()
        + 256 * parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::transport::{Security, Upstream};
    use crate::mail::listing::ListEntry;
    use crate::mail::summary::Summary;

    fn user(name: &str) -> UserKey {
        UserKey {
            upstream: Upstream {
                host: "imap.example.com".into(),
                port: 993,
                security: Security::Tls,
            },
            username: name.into(),
        }
    }

    fn summary(uid: u32) -> SummaryJson {
        let summary = Summary {
            uid,
            message_id: None,
            subject: Some(format!("message {uid}")),
            from: Vec::new(),
            to: Vec::new(),
            cc: Vec::new(),
            reply_to: Vec::new(),
            date: None,
            received_at: None,
            flags: Vec::new(),
            size: uid,
            has_attachments: false,
            in_reply_to: None,
            preview: None,
        };
        ListEntry::from_summary(summary).summary().clone()
    }

    #[test]
    fn summaries_come_back_by_uid_across_blocks_and_pages() {
        let cache = SummaryCache::new(1 << 20);
        let inbox = MailboxName::new("INBOX").unwrap();
        let scope = cache.scope(&user("alice"));
        let mut first = scope.folder(&inbox, 7);
        for uid in [1, 63, 64, 200] {
            assert_eq!(first.get(uid), None);
            first.put(summary(uid));
        }
        drop(first);
        // A later page adds to a block that holds summaries already.
        let mut second = scope.folder(&inbox, 7);
        second.put(summary(2));
        drop(second);
        let mut third = scope.folder(&inbox, 7);
        for uid in [1, 2, 63, 64, 200] {
            assert_eq!(third.get(uid), Some(summary(uid)), "uid {uid}");
        }
        assert_eq!(third.get(3), None);
        assert_eq!(third.get(65), None);
    }

    #[test]
    fn nothing_crosses_users_mailboxes_or_uid_validities() {
        let cache = SummaryCache::new(1 << 20);
        let inbox = MailboxName::new("INBOX").unwrap();
        let mut alice = cache.scope(&user("alice")).folder(&inbox, 7);
        alice.put(summary(5));
        drop(alice);
        let other = MailboxName::new("Other").unwrap();
        for (user, mailbox, uid_validity) in [
            ("bob", &inbox, 7),
            ("alice", &other, 7),
            ("alice", &inbox, 8),
        ] {
            let mut folder = cache
                .scope(&super::tests::user(user))
                .folder(mailbox, uid_validity);
            assert_eq!(folder.get(5), None);
        }
        assert_eq!(
            cache.scope(&user("alice")).folder(&inbox, 7).get(5),
            Some(summary(5))
        );
    }
}
