//! A bounded, size-aware cache of message summaries.
//!
//! What a summary says (envelope, size, structure, arrival time) never changes for a given
//! UIDVALIDITY and UID, so it can be kept across requests and sessions; only flags change, and
//! those are always read fresh. Entries are scoped to one user on one server and one mailbox, so
//! nothing crosses accounts.

use std::sync::Arc;

use moka::sync::Cache;

use super::encode::MailboxName;
use super::pool::UserKey;
use crate::mail::summary::Summary;

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
}

impl SummaryCache {
    /// A cache holding about `max_bytes` of summaries.
    pub fn new(max_bytes: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &SummaryKey, value: &Arc<Summary>| {
                u32::try_from(weight(key, value)).unwrap_or(u32::MAX)
            })
            .build();
        SummaryCache { entries }
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
        self.entries.weighted_size()
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
        metrics::counter!("summary_cache_lookups_total", "hit" => if hit.is_some() { "true" } else { "false" }).increment(1);
        hit.map(|cached| Summary {
            flags,
            ..(*cached).clone()
        })
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
