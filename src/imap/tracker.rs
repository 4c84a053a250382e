//! Following a selected mailbox the way IMAP4rev1 clients do when the server has no
//! CONDSTORE/QRESYNC: by the untagged responses it sends on its own.
//!
//! The tracker keeps the UID of every message in sequence order. `* n EXPUNGE` removes the
//! n-th (and names its UID), `* n FETCH (FLAGS …)` reports the n-th message's flags,
//! `* n EXISTS` beyond the known count announces arrivals whose UIDs the caller then fetches,
//! and `* VANISHED` (RFC 7162, without EARLIER) removes UIDs directly. Each change is reported
//! once: this is what makes events exact on servers that cannot answer "what changed since".

use std::collections::BTreeMap;

use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response};

/// The changes heard of since the last [`MessageTracker::take`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Heard {
    /// Expunged UIDs, in the order the server announced them.
    pub expunged: Vec<u32>,
    /// Flags now, by UID, for messages still present and known before this round.
    pub flags: BTreeMap<u32, Vec<String>>,
}

/// The sequence-number-to-UID map of one selected mailbox, kept current from untagged
/// responses.
#[derive(Debug, Clone, Default)]
pub struct MessageTracker {
    /// UIDs in sequence order (ascending, as IMAP assigns them).
    uids: Vec<u32>,
    /// Messages the server says exist: beyond `uids.len()` are arrivals not fetched yet.
    exists: usize,
    heard: Heard,
}

impl MessageTracker {
    /// A tracker for a mailbox whose messages have `uids` (ascending: `UID SEARCH ALL` on a
    /// freshly synced session).
    pub fn new(mut uids: Vec<u32>) -> Self {
        uids.sort_unstable();
        uids.dedup();
        let exists = uids.len();
        MessageTracker {
            uids,
            exists,
            heard: Heard::default(),
        }
    }

    /// Takes in one untagged response.
    pub fn observe(&mut self, response: &Response<'_>) {
        match response {
            Response::MailboxData(MailboxDatum::Exists(n)) => {
                self.exists = usize::try_from(*n).unwrap_or(usize::MAX);
            }
            Response::Expunge(seq) => {
                let index = usize::try_from(*seq).unwrap_or(usize::MAX).wrapping_sub(1);
                if index < self.uids.len() {
                    let uid = self.uids.remove(index);
                    self.forget(uid);
                    self.exists = self.exists.saturating_sub(1);
                } else if index < self.exists {
                    // An arrival not fetched yet: it is gone before anyone heard of it.
                    self.exists -= 1;
                }
            }
            Response::Vanished {
                earlier: false,
                uids,
            } => {
                for range in uids {
                    // Bounded by what is known: a hostile range costs no more than the map.
                    let gone: Vec<u32> = self
                        .uids
                        .iter()
                        .copied()
                        .filter(|u| range.contains(u))
                        .collect();
                    for uid in gone {
                        if let Ok(index) = self.uids.binary_search(&uid) {
                            self.uids.remove(index);
                            self.forget(uid);
                            self.exists = self.exists.saturating_sub(1);
                        }
                    }
                }
            }
            Response::Fetch(seq, attrs) => {
                let index = usize::try_from(*seq).unwrap_or(usize::MAX).wrapping_sub(1);
                let Some(&uid) = self.uids.get(index) else {
                    // An arrival not fetched yet: its flags come with its summary.
                    return;
                };
                let said_uid = attrs.iter().find_map(|a| match a {
                    AttributeValue::Uid(u) => Some(*u),
                    _ => None,
                });
                if said_uid.is_some_and(|u| u != uid) {
                    // The map is off (a server bug or a missed response): trust the UID.
                    return;
                }
                if let Some(flags) = attrs.iter().find_map(|a| match a {
                    AttributeValue::Flags(f) => Some(f),
                    _ => None,
                }) {
                    self.heard.flags.insert(
                        uid,
                        flags
                            .iter()
                            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                            .map(|f| f.to_string())
                            .collect(),
                    );
                }
            }
            _ => {}
        }
    }

    fn forget(&mut self, uid: u32) {
        self.heard.flags.remove(&uid);
        self.heard.expunged.push(uid);
    }

    /// Whether anything was heard that [`MessageTracker::take`] or an arrival fetch would
    /// report.
    pub fn has_news(&self) -> bool {
        self.pending_arrivals() > 0
            || !self.heard.expunged.is_empty()
            || !self.heard.flags.is_empty()
    }

    /// Messages the server announced whose UIDs are not known yet.
    pub fn pending_arrivals(&self) -> usize {
        self.exists.saturating_sub(self.uids.len())
    }

    /// The lowest UID an arrival can have: one past the highest known.
    pub fn next_uid(&self) -> u32 {
        self.uids.last().map_or(1, |u| u.saturating_add(1))
    }

    /// Adds arrivals whose UIDs were fetched; UIDs not above the highest known are ignored
    /// (a `UID FETCH n:*` answers the last message even when `n` is beyond it).
    pub fn add_arrivals(&mut self, uids: impl IntoIterator<Item = u32>) -> Vec<u32> {
        let mut added: Vec<u32> = uids.into_iter().filter(|u| *u >= self.next_uid()).collect();
        added.sort_unstable();
        added.dedup();
        self.uids.extend_from_slice(&added);
        self.exists = self.exists.max(self.uids.len());
        added
    }

    /// The changes heard since the last call.
    pub fn take(&mut self) -> Heard {
        std::mem::take(&mut self.heard)
    }

    /// Messages known.
    pub fn len(&self) -> usize {
        self.uids.len()
    }

    /// Whether no message is known.
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(tracker: &mut MessageTracker, lines: &[&str]) {
        for line in lines {
            let bytes = format!("{line}\r\n");
            let (_, response) = Response::parse(bytes.as_bytes()).expect("parses");
            tracker.observe(&response);
        }
    }

    #[test]
    fn expunges_name_the_uid_at_their_sequence_number_at_that_moment() {
        let mut t = MessageTracker::new(vec![3, 5, 8, 13, 21]);
        // Expunging seq 2 (UID 5) renumbers: the next `2 EXPUNGE` is UID 8.
        feed(&mut t, &["* 2 EXPUNGE", "* 2 EXPUNGE", "* 3 EXPUNGE"]);
        assert_eq!(t.take().expunged, vec![5, 8, 21]);
        assert_eq!(t.len(), 2);
        assert_eq!(t.next_uid(), 14);
        assert!(!t.has_news());
    }

    #[test]
    fn flag_changes_are_reported_by_uid_once_and_the_last_one_wins() {
        let mut t = MessageTracker::new(vec![10, 11, 12]);
        feed(
            &mut t,
            &[
                "* 1 FETCH (FLAGS (\\Seen))",
                "* 3 FETCH (FLAGS (\\Flagged \\Recent))",
                "* 1 FETCH (FLAGS (\\Seen \\Answered))",
                // A FETCH that names a UID other than the map's is not believed.
                "* 2 FETCH (UID 99 FLAGS (\\Deleted))",
            ],
        );
        let heard = t.take();
        assert_eq!(
            heard.flags,
            BTreeMap::from([
                (10, vec!["\\Seen".to_owned(), "\\Answered".to_owned()]),
                (12, vec!["\\Flagged".to_owned()]),
            ])
        );
        assert!(heard.expunged.is_empty());
        assert_eq!(t.take(), Heard::default(), "each change is reported once");
    }

    #[test]
    fn a_message_flagged_then_expunged_is_only_expunged() {
        let mut t = MessageTracker::new(vec![1, 2]);
        feed(&mut t, &["* 2 FETCH (FLAGS (\\Deleted))", "* 2 EXPUNGE"]);
        let heard = t.take();
        assert_eq!(heard.expunged, vec![2]);
        assert!(heard.flags.is_empty());
    }

    #[test]
    fn exists_announces_arrivals_until_their_uids_are_added() {
        let mut t = MessageTracker::new(vec![4, 7]);
        feed(&mut t, &["* 4 EXISTS"]);
        assert_eq!(t.pending_arrivals(), 2);
        assert!(t.has_news());
        assert_eq!(t.next_uid(), 8);
        // `UID FETCH 8:*` may answer the last known message too; it is not an arrival.
        assert_eq!(t.add_arrivals([7, 9, 12]), vec![9, 12]);
        assert_eq!(t.pending_arrivals(), 0);
        feed(&mut t, &["* 4 FETCH (FLAGS (\\Seen))", "* 3 EXPUNGE"]);
        let heard = t.take();
        assert_eq!(heard.expunged, vec![9]);
        assert_eq!(
            heard.flags,
            BTreeMap::from([(12, vec!["\\Seen".to_owned()])])
        );
    }

    #[test]
    fn an_arrival_expunged_before_it_was_fetched_is_never_reported() {
        let mut t = MessageTracker::new(vec![1]);
        feed(
            &mut t,
            &["* 2 EXISTS", "* 2 FETCH (FLAGS (\\Seen))", "* 2 EXPUNGE"],
        );
        assert_eq!(t.pending_arrivals(), 0);
        assert_eq!(t.take(), Heard::default());
    }

    #[test]
    fn vanished_removes_by_uid() {
        let mut t = MessageTracker::new(vec![1, 2, 3, 9]);
        feed(&mut t, &["* VANISHED 2:3,7:9"]);
        assert_eq!(t.take().expunged, vec![2, 3, 9]);
        assert_eq!(t.len(), 1);
        // Out of range and hostile sequence numbers change nothing.
        feed(
            &mut t,
            &["* 0 EXPUNGE", "* 4294967295 FETCH (FLAGS (\\Seen))"],
        );
        assert_eq!(t.take(), Heard::default());
        assert_eq!(t.len(), 1);
    }
}
