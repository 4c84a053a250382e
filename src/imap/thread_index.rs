//! A mailbox's thread list, planned from numbers alone: which threads a list shows, in which
//! order, under which id, and which of them a page holds. `imap::threads` fetches what it
//! needs; this module only decides.
//!
//! **Order.** Threads stand newest first by their latest message in the listed mailbox, in
//! arrival order (its highest UID there), as header lists do by default. A UID belongs to one
//! thread, so no two threads tie, and mail that arrives puts its thread on top: after `k`
//! messages arrived, the `k` first threads hold every thread they went to. Threads with no
//! message in the listed mailbox (the user's own mail from Sent that nobody answered) are not
//! listed.
//!
//! **Ids.** A thread is named by where its first message (in reading order) says the
//! conversation started ([`ThreadHeader::origin`](crate::mail::threading::ThreadHeader::origin)):
//! the first id of its `References`, else of its `In-Reply-To`, else its own Message-ID. So
//! the id stays when an earlier message of the conversation arrives (it is the one the replies
//! name), when the first message is deleted (the next one names it), and with or without the
//! user's Sent mail. It changes when the first message is deleted and the next one names no
//! earlier message (a reply joined by subject alone), or when threads merge (a message that
//! links two threads: the merged thread keeps one id). A first message that names no id at all
//! gives its mailbox, UIDVALIDITY and UID instead. Two threads of one origin (the same message
//! delivered twice) are told apart by their first message: the one with the lowest UID keeps
//! the plain id.
//!
//! **Pages.** A cursor anchors on the last thread of its page: the next page holds the threads
//! whose latest message is older than that thread's was, so mail arriving or going between
//! pages neither shifts nor repeats the rest. New mail puts its threads above the anchor,
//! where the next pages never go (a client learns of them from events or `changes` and puts
//! them on top). A thread that loses its latest message moves down to its next latest one, and
//! if that is below the anchor, a later page lists it again (a client keys its list by id).

use super::state::{PageCursor, ThreadId};
use crate::mail::threading::Thread;

/// The id of a thread whose first message names `origin` as where its conversation started.
pub fn origin_id(origin: &str) -> ThreadId {
    ThreadId::derive(&[b"origin", origin.as_bytes()])
}

/// Which mailbox a threaded message is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The mailbox being listed.
    Listed,
    /// The user's Sent mailbox, whose messages join the listed mailbox's threads.
    Sent,
}

/// One message of a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadEntry {
    /// Its mailbox.
    pub side: Side,
    /// Its UID there.
    pub uid: u32,
    /// Its depth in the reply tree (0 for the first message).
    pub depth: u32,
}

/// A listed thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedThread {
    /// Its id.
    pub id: ThreadId,
    /// Its messages in reading order.
    pub messages: Vec<ThreadEntry>,
    /// Its highest UID in the listed mailbox: where it stands in the list.
    pub latest: u32,
}

impl IndexedThread {
    /// The UIDs of its messages on `side`, in reading order.
    pub fn uids(&self, side: Side) -> Vec<u32> {
        self.messages
            .iter()
            .filter(|m| m.side == side)
            .map(|m| m.uid)
            .collect()
    }
}

/// What names the mailboxes when a first message names no id: their names and UIDVALIDITY.
#[derive(Debug, Clone, Copy)]
pub struct Mailboxes<'a> {
    /// The listed mailbox.
    pub listed: (&'a str, u32),
    /// The Sent mailbox, when its messages are threaded too.
    pub sent: Option<(&'a str, u32)>,
}

impl Mailboxes<'_> {
    fn of(&self, side: Side) -> (&str, u32) {
        match side {
            Side::Listed => self.listed,
            Side::Sent => self.sent.unwrap_or(self.listed),
        }
    }
}

/// A mailbox's threads, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadIndex {
    threads: Vec<IndexedThread>,
}

/// One page of a thread list.
#[derive(Debug)]
pub struct IndexPage<'a> {
    /// The page's threads, newest first.
    pub threads: Vec<&'a IndexedThread>,
    /// Where the next page starts, if there is one.
    pub next: Option<PageCursor>,
}

impl ThreadIndex {
    /// The list of `threads` (in any order; keys are a side and a UID): those with a message
    /// in the listed mailbox, newest first, with their ids. `origin` is the [`origin_id`] of
    /// where a message says its conversation started (`None` when it names no id).
    pub fn build(
        threads: Vec<Thread<(Side, u32)>>,
        origin: impl Fn(Side, u32) -> Option<ThreadId>,
        mailboxes: Mailboxes<'_>,
    ) -> Self {
        let mut named: Vec<((Side, u32), IndexedThread)> = Vec::with_capacity(threads.len());
        for thread in threads {
            let listed = thread
                .messages
                .iter()
                .filter(|((side, _), _)| *side == Side::Listed)
                .map(|((_, uid), _)| *uid);
            let Some(latest) = listed.max() else {
                continue;
            };
            let Some(&(first, _)) = thread.messages.first() else {
                continue;
            };
            let id = match origin(first.0, first.1) {
                Some(id) => id,
                None => {
                    let (name, uid_validity) = mailboxes.of(first.0);
                    ThreadId::derive(&[
                        b"message",
                        name.as_bytes(),
                        &uid_validity.to_be_bytes(),
                        &first.1.to_be_bytes(),
                    ])
                }
            };
            let messages = thread
                .messages
                .iter()
                .map(|&((side, uid), depth)| ThreadEntry {
                    side,
                    uid,
                    depth: u32::try_from(depth).unwrap_or(u32::MAX),
                })
                .collect();
            named.push((
                first,
                IndexedThread {
                    id,
                    messages,
                    latest,
                },
            ));
        }
        // The same origin twice: the thread whose first message comes first keeps the id.
        named.sort_unstable_by_key(|(first, thread)| (thread.id, *first));
        let mut previous: Option<ThreadId> = None;
        for ((side, uid), thread) in &mut named {
            let base = thread.id;
            if previous == Some(base) {
                let (name, _) = mailboxes.of(*side);
                thread.id = ThreadId::derive(&[
                    b"duplicate",
                    base.to_string().as_bytes(),
                    name.as_bytes(),
                    &uid.to_be_bytes(),
                ]);
            }
            previous = Some(base);
        }
        let mut threads: Vec<IndexedThread> = named.into_iter().map(|(_, t)| t).collect();
        threads.sort_unstable_by_key(|t| std::cmp::Reverse(t.latest));
        ThreadIndex { threads }
    }

    /// How many threads the list has.
    pub fn total(&self) -> usize {
        self.threads.len()
    }

    /// Every message of every thread, for bounding what a cache holds.
    pub fn messages(&self) -> usize {
        self.threads.iter().map(|t| t.messages.len()).sum()
    }

    /// The thread with `id`.
    pub fn find(&self, id: ThreadId) -> Option<&IndexedThread> {
        self.threads.iter().find(|t| t.id == id)
    }

    /// The page after `cursor` (from the top without one) of up to `limit` threads, and the
    /// cursor of the next page (of UIDVALIDITY `uid_validity` and query `query`).
    pub fn page(
        &self,
        cursor: Option<&PageCursor>,
        limit: usize,
        uid_validity: u32,
        query: u32,
    ) -> IndexPage<'_> {
        let start = cursor.map_or(0, |c| {
            self.threads.partition_point(|t| t.latest >= c.anchor_uid)
        });
        let end = (start + limit.max(1)).min(self.threads.len());
        let threads: Vec<&IndexedThread> = self.threads[start..end].iter().collect();
        let next = threads
            .last()
            .filter(|_| end < self.threads.len())
            .map(|last| PageCursor {
                uid_validity,
                anchor_uid: last.latest,
                // Where the anchor was, as sorted header lists have it; only a hint.
                position: u32::try_from(end).unwrap_or(u32::MAX),
                query,
            });
        IndexPage { threads, next }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const MAILBOXES: Mailboxes<'static> = Mailboxes {
        listed: ("INBOX", 7),
        sent: Some(("Sent", 9)),
    };

    /// A thread of listed UIDs at depth 0.
    fn listed(uids: &[u32]) -> Thread<(Side, u32)> {
        Thread {
            messages: uids.iter().map(|&u| ((Side::Listed, u), 0)).collect(),
        }
    }

    /// Every message names its own UID as its origin.
    fn own_origin(side: Side, uid: u32) -> Option<ThreadId> {
        Some(origin_id(&format!("{side:?}-{uid}")))
    }

    /// A thread's lowest listed UID, which names it in these tests.
    fn first_uid(thread: &IndexedThread) -> u32 {
        thread.uids(Side::Listed).into_iter().min().unwrap_or(0)
    }

    fn order(index: &ThreadIndex) -> Vec<Vec<u32>> {
        index.threads.iter().map(|t| t.uids(Side::Listed)).collect()
    }

    #[test]
    fn threads_stand_newest_first_by_their_latest_listed_message() {
        let mut sent_reply = listed(&[2]);
        sent_reply.messages.push(((Side::Sent, 40), 1));
        let only_sent = Thread {
            messages: vec![((Side::Sent, 41), 0)],
        };
        let index = ThreadIndex::build(
            vec![
                listed(&[1, 5]),
                sent_reply,
                listed(&[3, 4]),
                only_sent,
                listed(&[6]),
            ],
            own_origin,
            MAILBOXES,
        );
        assert_eq!(order(&index), [vec![6], vec![1, 5], vec![3, 4], vec![2]]);
        assert_eq!(index.total(), 4, "a thread only in Sent is not listed");
        let with_sent = &index.threads[3];
        assert_eq!(with_sent.uids(Side::Sent), [40]);
        assert_eq!(with_sent.latest, 2);
        assert_eq!(index.messages(), 7, "what is listed");
    }

    #[test]
    fn ids_follow_the_origin_and_tell_duplicates_apart() {
        let origins: HashMap<u32, &str> = [(1, "a@x"), (2, "a@x"), (3, "b@x")].into();
        let origin = |_: Side, uid: u32| origins.get(&uid).map(|o| origin_id(o));
        let index = ThreadIndex::build(
            vec![listed(&[2]), listed(&[1]), listed(&[3]), listed(&[4])],
            origin,
            MAILBOXES,
        );
        let id = |uid: u32| {
            index
                .threads
                .iter()
                .find(|t| first_uid(t) == uid)
                .expect("listed")
                .id
        };
        assert_eq!(id(1), ThreadId::derive(&[b"origin", b"a@x"]));
        assert_ne!(id(2), id(1), "the later duplicate gets its own id");
        assert_eq!(id(3), ThreadId::derive(&[b"origin", b"b@x"]));
        assert_eq!(
            id(4),
            ThreadId::derive(&[
                b"message",
                b"INBOX",
                &7u32.to_be_bytes(),
                &4u32.to_be_bytes()
            ])
        );
        assert_eq!(index.find(id(2)).map(first_uid), Some(2));
        // Stable: building again, in another order, gives the same ids.
        let again = ThreadIndex::build(
            vec![listed(&[4]), listed(&[3]), listed(&[1]), listed(&[2])],
            origin,
            MAILBOXES,
        );
        assert_eq!(again, index);
    }

    /// The page of `index` after `cursor`, as its threads' lowest UIDs.
    fn page_of(index: &ThreadIndex, cursor: Option<&PageCursor>, limit: usize) -> Vec<u32> {
        index
            .page(cursor, limit, 7, 0xfeed)
            .threads
            .iter()
            .map(|t| first_uid(t))
            .collect()
    }

    #[test]
    fn a_cursor_continues_below_its_anchor_while_mail_comes_and_goes() {
        // Threads 1..=20, each of UIDs 10n and 10n+1.
        let mut threads: Vec<Vec<u32>> = (1..=20).map(|n| vec![10 * n, 10 * n + 1]).collect();
        let build = |threads: &[Vec<u32>]| {
            ThreadIndex::build(
                threads.iter().map(|t| listed(t)).collect(),
                own_origin,
                MAILBOXES,
            )
        };
        let index = build(&threads);
        let first = index.page(None, 6, 7, 0xfeed);
        assert_eq!(
            first
                .threads
                .iter()
                .map(|t| first_uid(t))
                .collect::<Vec<_>>(),
            [200, 190, 180, 170, 160, 150]
        );
        let cursor = first.next.expect("more");
        assert_eq!(
            (cursor.anchor_uid, cursor.position, cursor.query),
            (151, 6, 0xfeed)
        );
        // Meanwhile: a reply to a listed thread, a reply to one not listed yet, a new thread,
        // and a thread further down loses a message.
        threads[18].push(300);
        threads[3].push(301);
        threads.push(vec![302]);
        threads[9].retain(|&u| u != 101);
        let index = build(&threads);
        let second = page_of(&index, Some(&cursor), 6);
        assert_eq!(second, [140, 130, 120, 110, 100, 90], "no repeat, no gap");
        // The thread that got a reply is on top of a new first page instead.
        assert_eq!(page_of(&index, None, 3), [302, 40, 190]);
        // The last page has no next cursor.
        let tail = index.page(Some(&cursor), 100, 7, 0xfeed);
        assert_eq!(tail.threads.len(), 13);
        assert!(tail.next.is_none());
        // A listed thread that loses its latest message moves down below the anchor, and the
        // rest of the list holds it again.
        let first = build(&[vec![1, 10], vec![5], vec![3]]);
        let cursor = first.page(None, 1, 7, 0).next.expect("more");
        let index = build(&[vec![1], vec![5], vec![3]]);
        assert_eq!(page_of(&index, Some(&cursor), 10), [5, 3, 1]);
        // An exact fit ends without a cursor too.
        assert!(index.page(None, index.total(), 7, 0).next.is_none());
    }
}
