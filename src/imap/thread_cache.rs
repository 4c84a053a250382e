//! A bounded cache of what thread lists are made of, shared by every session: each message's
//! threading header, and each mailbox's computed thread list.
//!
//! A message's header never changes for its UIDVALIDITY and UID, so a warm request fetches
//! only the headers of messages it has not seen. They are kept by mailbox, one map each, so
//! that threading 10,000 messages reads 10,000 entries of one map under one lock rather than as
//! many cache entries, each with a key of its own to build and hash; a mailbox's headers are
//! evicted together. A thread list is kept with the state it was
//! computed at ([`IndexStamp`]): UIDVALIDITY, UIDNEXT and the number of messages of the
//! listed mailbox (and of Sent when its messages are threaded in), plus HIGHESTMODSEQ when the
//! list's filters look at flags. New mail raises UIDNEXT and an expunge lowers the count, so
//! while the stamp is the same, so is the set of messages and therefore the list; it is always
//! computed after its stamp was read, so it never misses what the stamp counts. Entries are
//! scoped to one user on one server and one mailbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use moka::sync::Cache;

use super::encode::MailboxName;
use super::pool::UserKey;
use super::state::ThreadId;
use super::thread_index::{ThreadIndex, origin_id};
use crate::mail::threading::ThreadHeader;

/// A message's threading header and its arrival time (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedHeader {
    /// The header fields threading reads.
    pub header: ThreadHeader,
    /// INTERNALDATE, when the server sent a readable one.
    pub received: Option<i64>,
    /// The id of a thread this message is the first of (from its origin), worked out once.
    pub origin: Option<ThreadId>,
}

impl CachedHeader {
    /// A header as fetched, with its origin's thread id.
    pub fn new(header: ThreadHeader, received: Option<i64>) -> Self {
        let origin = header.origin().map(origin_id);
        CachedHeader {
            header,
            received,
            origin,
        }
    }

    /// Approximate heap bytes.
    fn weight(&self) -> usize {
        let h = &self.header;
        let text = |o: &Option<String>| o.as_ref().map_or(0, String::len);
        160 + text(&h.message_id)
            + text(&h.references)
            + text(&h.in_reply_to)
            + text(&h.subject)
            + h.from
                .iter()
                .map(|a| 48 + a.address.len() + text(&a.name))
                .sum::<usize>()
    }
}

/// The headers held of one mailbox (of one UIDVALIDITY), by UID.
#[derive(Debug, Default)]
pub struct MailboxHeaders {
    by_uid: RwLock<HashMap<u32, Arc<CachedHeader>>>,
    bytes: AtomicUsize,
}

impl MailboxHeaders {
    /// The headers of `uids` that are held, and the UIDs that are not.
    pub fn get_many(&self, uids: &[u32]) -> (HashMap<u32, Arc<CachedHeader>>, Vec<u32>) {
        let held = self
            .by_uid
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found = HashMap::with_capacity(uids.len());
        let mut missing = Vec::new();
        for &uid in uids {
            match held.get(&uid) {
                Some(header) => {
                    found.insert(uid, header.clone());
                }
                None => missing.push(uid),
            }
        }
        (found, missing)
    }

    /// Keeps the header of `uid`.
    pub fn insert(&self, uid: u32, header: Arc<CachedHeader>) {
        let weight = header.weight();
        let previous = self
            .by_uid
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(uid, header);
        let previous = previous.map_or(0, |p| p.weight());
        self.bytes.fetch_add(weight, Ordering::Relaxed);
        self.bytes.fetch_sub(previous, Ordering::Relaxed);
    }
}

/// A mailbox's state as far as its set of messages goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// UIDNEXT.
    pub uid_next: u32,
    /// MESSAGES.
    pub messages: u32,
    /// HIGHESTMODSEQ where the list depends on flags, else 0.
    pub modseq: u64,
}

/// What a thread list was computed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexStamp {
    /// The listed mailbox.
    pub listed: Snapshot,
    /// The Sent mailbox, when its messages were threaded in.
    pub sent: Option<(MailboxName, Snapshot)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HeaderKey {
    user: Arc<UserKey>,
    mailbox: MailboxName,
    uid_validity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct IndexKey {
    user: Arc<UserKey>,
    mailbox: MailboxName,
    /// The filters as sent, and whether Sent was threaded in.
    query: Vec<u8>,
}

#[derive(Debug)]
struct CachedIndex {
    stamp: IndexStamp,
    index: Arc<ThreadIndex>,
}

/// The cache.
#[derive(Clone)]
pub struct ThreadCache {
    headers: Cache<HeaderKey, Arc<MailboxHeaders>>,
    indexes: Cache<IndexKey, Arc<CachedIndex>>,
}

impl ThreadCache {
    /// A cache holding about `max_bytes`: three quarters for headers (about 300 bytes each, so
    /// 12 MiB of a 16 MiB cache hold 40,000 messages' headers; a mailbox whose headers take
    /// more than that is not kept), a quarter for thread lists (about 50 bytes per message, so
    /// 4 MiB hold the lists of eight 10,000-message mailboxes).
    pub fn new(max_bytes: u64) -> Self {
        let headers = Cache::builder()
            .max_capacity(max_bytes - max_bytes / 4)
            .weigher(|key: &HeaderKey, value: &Arc<MailboxHeaders>| {
                let bytes = 128 + key.mailbox.as_str().len() + value.bytes.load(Ordering::Relaxed);
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .build();
        let indexes = Cache::builder()
            .max_capacity(max_bytes / 4)
            .weigher(|key: &IndexKey, value: &Arc<CachedIndex>| {
                let bytes = 256
                    + key.query.len()
                    + key.mailbox.as_str().len()
                    + 12 * value.index.messages()
                    + 64 * value.index.total();
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .build();
        ThreadCache { headers, indexes }
    }

    /// The cache as `user`'s requests see it.
    pub fn scope(&self, user: &UserKey) -> ThreadScope {
        ThreadScope {
            cache: self.clone(),
            user: Arc::new(user.clone()),
        }
    }
}

/// One user's view of the cache.
#[derive(Clone)]
pub struct ThreadScope {
    cache: ThreadCache,
    user: Arc<UserKey>,
}

impl ThreadScope {
    fn header_key(&self, mailbox: &MailboxName, uid_validity: u32) -> HeaderKey {
        HeaderKey {
            user: self.user.clone(),
            mailbox: mailbox.clone(),
            uid_validity,
        }
    }

    fn index_key(&self, mailbox: &MailboxName, query: &[u8]) -> IndexKey {
        IndexKey {
            user: self.user.clone(),
            mailbox: mailbox.clone(),
            query: query.to_vec(),
        }
    }

    /// The headers held of `mailbox` at `uid_validity` (an empty set the first time).
    pub fn headers(&self, mailbox: &MailboxName, uid_validity: u32) -> Arc<MailboxHeaders> {
        self.cache
            .headers
            .get_with(self.header_key(mailbox, uid_validity), Default::default)
    }

    /// Weighs `headers` again after headers were added to them, so that the cache bounds what
    /// it holds (and keeps them, if they were evicted meanwhile).
    pub fn reweigh(&self, mailbox: &MailboxName, uid_validity: u32, headers: Arc<MailboxHeaders>) {
        self.cache
            .headers
            .insert(self.header_key(mailbox, uid_validity), headers);
    }

    /// The thread list of `query` in `mailbox` when it was computed at exactly `stamp`.
    pub fn index(
        &self,
        mailbox: &MailboxName,
        query: &[u8],
        stamp: &IndexStamp,
    ) -> Option<Arc<ThreadIndex>> {
        let hit = self
            .cache
            .indexes
            .get(&self.index_key(mailbox, query))
            .filter(|cached| cached.stamp == *stamp)
            .map(|cached| cached.index.clone());
        metrics::counter!(crate::telemetry::names::THREAD_CACHE_LOOKUPS, "hit" => if hit.is_some() { "true" } else { "false" }).increment(1);
        hit
    }

    /// Whether a thread list of `query` in `mailbox` is held, at whatever stamp.
    pub fn has_index(&self, mailbox: &MailboxName, query: &[u8]) -> bool {
        self.cache
            .indexes
            .contains_key(&self.index_key(mailbox, query))
    }

    /// Remembers the thread list of `query` in `mailbox` computed at `stamp`.
    pub fn put_index(
        &self,
        mailbox: &MailboxName,
        query: &[u8],
        stamp: IndexStamp,
        index: Arc<ThreadIndex>,
    ) {
        self.cache.indexes.insert(
            self.index_key(mailbox, query),
            Arc::new(CachedIndex { stamp, index }),
        );
    }
}
