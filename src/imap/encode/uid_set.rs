//! Sets of UIDs, normalised to sorted, merged ranges.

use std::fmt;

use super::InvalidArgument;

/// How errors name the value they refuse.
const UID_SET: &str = "UID set";

/// A non-empty set of UIDs (each 1..=`u32::MAX`), normalised to sorted, merged ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidSet(
    /// Inclusive ranges, sorted, each starting at 1 or later, separated by at least one
    /// UID not in the set (so two sets are equal exactly when they hold the same UIDs).
    Vec<(u32, u32)>,
);

impl UidSet {
    /// Builds a set from UIDs in any order, with duplicates allowed. Fails if there are no
    /// UIDs or one of them is 0.
    pub fn from_uids(uids: impl IntoIterator<Item = u32>) -> Result<Self, InvalidArgument> {
        let mut uids: Vec<u32> = uids.into_iter().collect();
        if uids.is_empty() {
            return Err(InvalidArgument::Empty { what: UID_SET });
        }
        if uids.contains(&0) {
            return Err(InvalidArgument::ZeroUid);
        }
        uids.sort_unstable();
        uids.dedup();
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for uid in uids {
            match ranges.last_mut() {
                Some((_, last)) if last.checked_add(1) == Some(uid) => *last = uid,
                _ => ranges.push((uid, uid)),
            }
        }
        Ok(Self(ranges))
    }

    /// A set holding one UID; fails for 0.
    pub fn single(uid: u32) -> Result<Self, InvalidArgument> {
        Self::range(uid, uid)
    }

    /// The UIDs `first..=last`; fails if `first` is 0 or greater than `last`.
    pub fn range(first: u32, last: u32) -> Result<Self, InvalidArgument> {
        if first == 0 {
            return Err(InvalidArgument::ZeroUid);
        }
        if first > last {
            return Err(InvalidArgument::ReversedRange);
        }
        Ok(Self(vec![(first, last)]))
    }

    /// Every UID a message can have, `1:4294967295`. Unlike `1:*`, which RFC 3501 ends at
    /// the highest UID that exists now, it also covers expunged UIDs above that one, so a
    /// `VANISHED` query over it reports an expunged highest message (Cyrus reads `*` that
    /// way).
    pub fn every() -> Self {
        Self(vec![(1, u32::MAX)])
    }

    /// The UIDs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().flat_map(|&(first, last)| first..=last)
    }

    /// How many UIDs the set holds (up to 2³² − 1, hence `u64`).
    pub fn len(&self) -> u64 {
        self.0
            .iter()
            .map(|&(first, last)| u64::from(last - first) + 1)
            .sum()
    }

    /// Always `false`: a `UidSet` is never empty. Provided for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `uid` is in the set.
    pub fn contains(&self, uid: u32) -> bool {
        self.0
            .binary_search_by(|&(first, last)| {
                if last < uid {
                    std::cmp::Ordering::Less
                } else if first > uid {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }
}

/// The IMAP sequence-set form, e.g. `1:3,5,9:12`.
impl fmt::Display for UidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, &(first, last)) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            if first == last {
                write!(f, "{first}")?;
            } else {
                write!(f, "{first}:{last}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::encode::testing::*;
    use std::collections::BTreeSet;

    #[test]
    fn uid_sets_are_normalised() {
        let set = UidSet::from_uids([12, 5, 1, 3, 2, 9, 10, 11, 3, 5]).unwrap();
        assert_eq!(set.to_string(), "1:3,5,9:12");
        assert_eq!(set.iter().collect::<Vec<_>>(), [1, 2, 3, 5, 9, 10, 11, 12]);
        assert_eq!(set.len(), 8);
        assert!(!set.is_empty());
        assert!(set.contains(1) && set.contains(3) && set.contains(5) && set.contains(12));
        assert!(!set.contains(0) && !set.contains(4) && !set.contains(8) && !set.contains(13));

        assert_eq!(UidSet::from_uids([4, 3, 2]), UidSet::range(2, 4));
        assert_eq!(UidSet::single(7).unwrap().to_string(), "7");
        assert_eq!(UidSet::range(7, 7), UidSet::single(7));

        let top = UidSet::from_uids([u32::MAX, u32::MAX - 1, 1]).unwrap();
        assert_eq!(top.to_string(), format!("1,{}:{}", u32::MAX - 1, u32::MAX));
        let everything = UidSet::range(1, u32::MAX).unwrap();
        assert_eq!(everything.len(), u64::from(u32::MAX));
        assert!(everything.contains(u32::MAX));
        assert_eq!(everything.to_string(), "1:4294967295");
    }

    #[test]
    fn uid_set_errors() {
        assert_eq!(
            UidSet::from_uids([]),
            Err(InvalidArgument::Empty { what: "UID set" })
        );
        assert_eq!(UidSet::from_uids([3, 0]), Err(InvalidArgument::ZeroUid));
        assert_eq!(UidSet::single(0), Err(InvalidArgument::ZeroUid));
        assert_eq!(UidSet::range(0, 5), Err(InvalidArgument::ZeroUid));
        assert_eq!(UidSet::range(5, 4), Err(InvalidArgument::ReversedRange));
    }

    #[test]
    fn random_uid_sets_match_a_btreeset() {
        let mut rng = Rng(6);
        for _ in 0..2000 {
            let count = rng.below(20);
            let uids: Vec<u32> = (0..count)
                .map(|_| match rng.below(10) {
                    0 => u32::MAX - rng.below(3) as u32,
                    _ => 1 + rng.below(40) as u32,
                })
                .collect();
            let expected: BTreeSet<u32> = uids.iter().copied().collect();
            let Ok(set) = UidSet::from_uids(uids) else {
                assert!(expected.is_empty());
                continue;
            };
            assert_eq!(
                set.iter().collect::<Vec<_>>(),
                expected.iter().copied().collect::<Vec<_>>()
            );
            assert_eq!(set.len(), expected.len() as u64);
            for probe in (0..45).chain([u32::MAX - 3, u32::MAX - 2, u32::MAX - 1, u32::MAX]) {
                assert_eq!(set.contains(probe), expected.contains(&probe), "{probe}");
            }
            // The text form lists each UID once, in order, with adjacent UIDs merged.
            let mut previous_last: Option<u32> = None;
            let mut listed = Vec::new();
            for range in set.to_string().split(',') {
                let (first, last) = match range.split_once(':') {
                    Some((first, last)) => (first.parse::<u32>().unwrap(), last.parse().unwrap()),
                    None => (range.parse().unwrap(), range.parse().unwrap()),
                };
                assert!(first <= last);
                if let Some(previous) = previous_last {
                    assert!(u64::from(first) > u64::from(previous) + 1, "{set}");
                }
                previous_last = Some(last);
                listed.extend(first..=last);
            }
            assert_eq!(listed, set.iter().collect::<Vec<_>>());
        }
    }
}
