//! Where a header page in arrival order lies, in sequence numbers: the planning of
//! [`Connection::header_page`](super::Connection::header_page), without I/O.
//!
//! A mailbox in arrival order is its messages by sequence number; UIDs grow with it. A page
//! is found from a cursor's anchor UID and remembered position: expunges since the cursor was
//! made only move the anchor down, new mail only comes above it, so a window at the
//! remembered position usually holds the page, and when it does not, [`Locate`] finds where
//! the anchor is now with a few rounds of probes. `messages.rs` fetches what these functions
//! name and hands back what the server said; everything here is decided from numbers alone,
//! so it is tested here against a model mailbox.

use super::messages::Order;

/// An inclusive range of sequence numbers, `(lo, hi)`.
pub(crate) type SeqRange = (u32, u32);

/// The window to fetch, pipelined behind the refresh, for a first page (no cursor), from the
/// message count known before the refresh: the newest `limit` (`lo:*`) or the oldest
/// (`1:limit`, or `1:*` when that is all). `None` when the mailbox looked empty.
pub(crate) fn first_window(order: Order, before: u32, limit: u32) -> Option<(u32, Option<u32>)> {
    if before == 0 {
        return None;
    }
    Some(match order {
        Order::Desc => (before.saturating_sub(limit - 1).max(1), None),
        Order::Asc => (1, (before > limit).then_some(limit)),
    })
}

/// For a newest-first first page whose pipelined fetch reached sequence number `top` only:
/// the messages the refresh announced since, up to a page of them. Servers answer commands
/// pipelined behind a NOOP from the mailbox as it was before the NOOP caught up.
pub(crate) fn announced_since(top: u32, exists: u32, limit: u32) -> Option<SeqRange> {
    (top < exists).then(|| {
        (
            (top + 1).max(exists.saturating_sub(limit - 1)).max(1),
            exists,
        )
    })
}

/// What to fetch next to complete a newest-first page holding `have` messages, the lowest at
/// sequence number `lowest`; `None` when the page is full or the mailbox's start is reached.
pub(crate) fn fill_down(lowest: Option<u32>, have: usize, limit: u32) -> Option<SeqRange> {
    let need = limit.saturating_sub(u32::try_from(have).unwrap_or(u32::MAX));
    match lowest {
        Some(lowest) if need > 0 && lowest > 1 => {
            Some((lowest.saturating_sub(need).max(1), lowest - 1))
        }
        _ => None,
    }
}

/// What to fetch next to complete an oldest-first page holding `have` messages, the highest at
/// sequence number `highest`; `None` when the page is full or the mailbox's end is reached.
pub(crate) fn fill_up(
    highest: Option<u32>,
    have: usize,
    limit: u32,
    exists: u32,
) -> Option<SeqRange> {
    let need = limit.saturating_sub(u32::try_from(have).unwrap_or(u32::MAX));
    match highest {
        Some(highest) if need > 0 && highest < exists => {
            Some((highest + 1, highest.saturating_add(need).min(exists)))
        }
        _ => None,
    }
}

/// Probes per round trip of [`Locate`].
const PROBES_PER_ROUND: u32 = 16;

/// Finds how many messages have a UID below `bound` (the sequence number of the last of them)
/// by probing the UIDs at chosen sequence numbers, [`PROBES_PER_ROUND`] per round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Locate {
    bound: u32,
    /// A sequence number known to be below `bound` (0: none).
    lo: u32,
    /// A sequence number known to be at or above `bound` (`exists + 1`: none).
    hi: u32,
}

impl Locate {
    /// A search between `lo` (known below `bound`) and `hi` (known at or above).
    pub(crate) fn new(bound: u32, lo: u32, hi: u32) -> Self {
        Locate { bound, lo, hi }
    }

    /// The sequence numbers to probe next, evenly spread between what is known; empty when
    /// the answer is known.
    pub(crate) fn probes(&self) -> Vec<u32> {
        if self.hi.saturating_sub(self.lo) <= 1 {
            return Vec::new();
        }
        let step = (self.hi - self.lo - 1).div_ceil(PROBES_PER_ROUND).max(1);
        (1..=PROBES_PER_ROUND)
            .map(|i| self.lo + i * step)
            .filter(|&seq| seq < self.hi)
            .collect()
    }

    /// Narrows the search with the `(sequence number, UID)` pairs a probe found.
    pub(crate) fn learn(&mut self, found: &[(u32, u32)]) {
        for &(seq, uid) in found {
            if uid < self.bound {
                self.lo = self.lo.max(seq);
            } else {
                self.hi = self.hi.min(seq);
            }
        }
    }

    /// The number of messages with a UID below the bound, once [`Locate::probes`] is empty.
    pub(crate) fn count(&self) -> u32 {
        self.lo
    }
}

/// What a window fetched at a cursor's remembered position says about the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Boundary {
    /// The window holds where the page starts: complete it from there.
    InWindow,
    /// Nothing lies beyond the anchor: the page is empty.
    Empty,
    /// The anchor moved out of the window: find where it is now.
    Search(Locate),
}

/// The window around a newest-first cursor's remembered `position`: a page below it and one
/// message above, which proves where the boundary is.
pub(crate) fn below_window(position: u32, limit: u32, exists: u32) -> SeqRange {
    // Expunges only move the anchor down, so the remembered position is an upper bound for
    // honest cursors.
    let hint = position.clamp(1, exists);
    (
        hint.saturating_sub(limit).max(1),
        hint.saturating_add(1).min(exists),
    )
}

/// Where the messages below `anchor` start, given the `(sequence number, UID)` pairs of the
/// window `lo..=hi` from [`below_window`].
pub(crate) fn below_boundary(
    window: &[(u32, u32)],
    anchor: u32,
    (lo, hi): SeqRange,
    exists: u32,
) -> Boundary {
    let below = window.iter().filter(|&&(_, uid)| uid < anchor).count();
    let top_is_below = window
        .iter()
        .max_by_key(|&&(seq, _)| seq)
        .is_some_and(|&(_, uid)| uid < anchor);
    if below > 0 && !top_is_below {
        Boundary::InWindow
    } else if below == 0 {
        if lo == 1 {
            Boundary::Empty
        } else {
            Boundary::Search(Locate::new(anchor, 0, lo))
        }
    } else if hi < exists {
        Boundary::Search(Locate::new(anchor, hi, exists + 1))
    } else {
        Boundary::InWindow
    }
}

/// The newest-first page below a located boundary: the `limit` messages up to the `count`th;
/// `None` when there are none.
pub(crate) fn below_range(count: u32, limit: u32) -> Option<SeqRange> {
    (count > 0).then(|| (count.saturating_sub(limit - 1).max(1), count))
}

/// The window from an oldest-first cursor's remembered `position` up a page.
pub(crate) fn above_window(position: u32, limit: u32, exists: u32) -> SeqRange {
    let hint = position.clamp(1, exists);
    (hint, hint.saturating_add(limit).min(exists))
}

/// Where the messages above `anchor` start, given the `(sequence number, UID)` pairs of the
/// window `lo..=hi` from [`above_window`].
pub(crate) fn above_boundary(
    window: &[(u32, u32)],
    anchor: u32,
    (lo, hi): SeqRange,
    exists: u32,
) -> Boundary {
    let bottom_is_at_or_below = window
        .iter()
        .min_by_key(|&&(seq, _)| seq)
        .is_some_and(|&(_, uid)| uid <= anchor);
    let all_at_or_below = window.iter().all(|&(_, uid)| uid <= anchor);
    // Counting the messages below `anchor + 1` counts those at or below the anchor.
    let bound = anchor.saturating_add(1);
    if !bottom_is_at_or_below && lo > 1 {
        Boundary::Search(Locate::new(bound, 0, lo))
    } else if all_at_or_below && hi < exists {
        Boundary::Search(Locate::new(bound, hi, exists + 1))
    } else {
        Boundary::InWindow
    }
}

/// The oldest-first page above a located boundary (`count` messages at or below the anchor);
/// `None` when there are none.
pub(crate) fn above_range(count: u32, limit: u32, exists: u32) -> Option<SeqRange> {
    (count < exists).then(|| (count + 1, count.saturating_add(limit).min(exists)))
}

/// Whether a page whose last message has sequence number `last` has a next page.
pub(crate) fn continues(order: Order, last: u32, exists: u32) -> bool {
    match order {
        Order::Desc => last > 1,
        Order::Asc => last < exists,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mailbox in arrival order: UIDs, strictly increasing; message `seq` is `uids[seq - 1]`.
    struct Model {
        uids: Vec<u32>,
    }

    impl Model {
        fn exists(&self) -> u32 {
            self.uids.len() as u32
        }

        /// What `FETCH lo:hi (UID)` answers.
        fn fetch(&self, (lo, hi): SeqRange) -> Vec<(u32, u32)> {
            (lo.max(1)..=hi.min(self.exists()))
                .map(|seq| (seq, self.uids[seq as usize - 1]))
                .collect()
        }

        /// Runs a search to its end, counting round trips.
        fn locate(&self, mut search: Locate) -> (u32, usize) {
            let mut rounds = 0;
            loop {
                let seqs = search.probes();
                if seqs.is_empty() {
                    return (search.count(), rounds);
                }
                rounds += 1;
                let found: Vec<(u32, u32)> = seqs
                    .iter()
                    .map(|&s| (s, self.uids[s as usize - 1]))
                    .collect();
                search.learn(&found);
            }
        }

        /// A newest-first page below `anchor` from a cursor remembering `position`, planned as
        /// `Connection::page_below` does.
        fn page_below(&self, anchor: u32, position: u32, limit: u32) -> Vec<u32> {
            let exists = self.exists();
            let window = below_window(position, limit, exists);
            let mut have = match below_boundary(&self.fetch(window), anchor, window, exists) {
                Boundary::InWindow => self.fetch(window),
                Boundary::Empty => return Vec::new(),
                Boundary::Search(search) => match below_range(self.locate(search).0, limit) {
                    Some(range) => self.fetch(range),
                    None => return Vec::new(),
                },
            };
            have.retain(|&(_, uid)| uid < anchor);
            while let Some(range) = fill_down(have.iter().map(|&(s, _)| s).min(), have.len(), limit)
            {
                have.extend(self.fetch(range));
            }
            let mut uids: Vec<u32> = have.into_iter().map(|(_, uid)| uid).collect();
            uids.sort_unstable_by(|a, b| b.cmp(a));
            uids.truncate(limit as usize);
            uids
        }

        /// An oldest-first page above `anchor`, planned as `Connection::page_above` does.
        fn page_above(&self, anchor: u32, position: u32, limit: u32) -> Vec<u32> {
            let exists = self.exists();
            let window = above_window(position, limit, exists);
            let mut have = match above_boundary(&self.fetch(window), anchor, window, exists) {
                Boundary::InWindow => self.fetch(window),
                Boundary::Empty => return Vec::new(),
                Boundary::Search(search) => match above_range(self.locate(search).0, limit, exists)
                {
                    Some(range) => self.fetch(range),
                    None => return Vec::new(),
                },
            };
            have.retain(|&(_, uid)| uid > anchor);
            while let Some(range) = fill_up(
                have.iter().map(|&(s, _)| s).max(),
                have.len(),
                limit,
                exists,
            ) {
                have.extend(self.fetch(range));
            }
            let mut uids: Vec<u32> = have.into_iter().map(|(_, uid)| uid).collect();
            uids.sort_unstable();
            uids.truncate(limit as usize);
            uids
        }
    }

    /// splitmix64, so that a failing case can be reproduced from its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, bound: u32) -> u32 {
            (self.next() % u64::from(bound)) as u32
        }

        /// A mailbox of up to `max` messages whose UIDs have gaps (expunged messages).
        fn mailbox(&mut self, max: u32) -> Model {
            let mut uid = 0;
            let uids = (0..self.below(max + 1))
                .map(|_| {
                    uid += 1 + self.below(4);
                    uid
                })
                .collect();
            Model { uids }
        }
    }

    #[test]
    fn first_windows_cover_the_newest_or_oldest_page() {
        assert_eq!(first_window(Order::Desc, 0, 50), None);
        assert_eq!(first_window(Order::Desc, 1000, 50), Some((951, None)));
        assert_eq!(first_window(Order::Desc, 20, 50), Some((1, None)));
        assert_eq!(first_window(Order::Asc, 1000, 50), Some((1, Some(50))));
        assert_eq!(first_window(Order::Asc, 50, 50), Some((1, None)));
    }

    #[test]
    fn mail_announced_by_the_refresh_is_fetched_up_to_a_page() {
        assert_eq!(announced_since(1000, 1000, 50), None);
        assert_eq!(announced_since(1000, 1003, 50), Some((1001, 1003)));
        assert_eq!(announced_since(1000, 2000, 50), Some((1951, 2000)));
        assert_eq!(announced_since(0, 3, 50), Some((1, 3)));
    }

    #[test]
    fn pages_continue_until_the_mailbox_ends() {
        assert!(continues(Order::Desc, 2, 10));
        assert!(!continues(Order::Desc, 1, 10));
        assert!(continues(Order::Asc, 9, 10));
        assert!(!continues(Order::Asc, 10, 10));
    }

    #[test]
    fn locate_counts_the_uids_below_its_bound_in_few_round_trips() {
        let mut rng = Rng(7);
        for _ in 0..500 {
            let model = rng.mailbox(5000);
            let exists = model.exists();
            let bound = rng.below(model.uids.last().copied().unwrap_or(0) + 3);
            let expected = model.uids.iter().filter(|&&uid| uid < bound).count() as u32;
            let (count, rounds) = model.locate(Locate::new(bound, 0, exists + 1));
            assert_eq!(count, expected, "bound {bound} in {:?}", model.uids);
            // Each round narrows the span sixteen-fold: 5000 messages take at most 4.
            assert!(rounds <= 4, "{rounds} rounds for {exists} messages");
        }
    }

    #[test]
    fn a_page_below_any_anchor_is_the_next_messages_down_wherever_the_cursor_points() {
        let mut rng = Rng(11);
        for case in 0..3000 {
            let model = rng.mailbox(300);
            let exists = model.exists();
            if exists == 0 {
                continue;
            }
            let limit = 1 + rng.below(60);
            let anchor = 1 + rng.below(model.uids[exists as usize - 1] + 2);
            // Honest cursors remember a position at or above the anchor's now; stale or
            // made-up ones anything at all.
            let position = rng.below(exists + 5);
            let mut expected: Vec<u32> = model
                .uids
                .iter()
                .copied()
                .filter(|&uid| uid < anchor)
                .collect();
            expected.reverse();
            expected.truncate(limit as usize);
            assert_eq!(
                model.page_below(anchor, position, limit),
                expected,
                "case {case}: anchor {anchor}, position {position}, limit {limit}"
            );
        }
    }

    #[test]
    fn a_page_above_any_anchor_is_the_next_messages_up_wherever_the_cursor_points() {
        let mut rng = Rng(13);
        for case in 0..3000 {
            let model = rng.mailbox(300);
            let exists = model.exists();
            if exists == 0 {
                continue;
            }
            let limit = 1 + rng.below(60);
            let anchor = rng.below(model.uids[exists as usize - 1] + 2);
            let position = rng.below(exists + 5);
            let mut expected: Vec<u32> = model
                .uids
                .iter()
                .copied()
                .filter(|&uid| uid > anchor)
                .collect();
            expected.truncate(limit as usize);
            assert_eq!(
                model.page_above(anchor, position, limit),
                expected,
                "case {case}: anchor {anchor}, position {position}, limit {limit}"
            );
        }
    }

    #[test]
    fn a_cursor_at_its_true_position_needs_no_search() {
        let model = Model {
            uids: (1..=1000).map(|n| n * 2).collect(),
        };
        // The anchor UID 1000 is message 500; the page below it is in the first window.
        let window = below_window(500, 50, 1000);
        assert_eq!(
            below_boundary(&model.fetch(window), 1000, window, 1000),
            Boundary::InWindow
        );
        let window = above_window(500, 50, 1000);
        assert_eq!(
            above_boundary(&model.fetch(window), 1000, window, 1000),
            Boundary::InWindow
        );
        // After 100 expunges below it, the anchor is message 400: a search finds it.
        let expunged = Model {
            uids: model.uids[100..].to_vec(),
        };
        let window = below_window(500, 50, 900);
        let Boundary::Search(search) = below_boundary(&expunged.fetch(window), 1000, window, 900)
        else {
            panic!("the anchor moved out of the window");
        };
        assert_eq!(expunged.locate(search).0, 399);
    }
}
