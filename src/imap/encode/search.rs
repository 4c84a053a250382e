//! SEARCH keys callers can ask for.

use chrono::NaiveDate;

use super::{Flag, ImapString, UidSet};

/// A SEARCH key callers can ask for (RFC 3501 §6.4.4).
///
/// Several keys given to [`Command::search`] must all match. Dates compare against the
/// internal date (`Since`, `Before`) or the Date header (`SentSince`, `SentBefore`), at day
/// granularity, as the RFC defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    /// Every message.
    All,
    /// Messages without `\Seen`.
    Unseen,
    /// Messages with `\Seen`.
    Seen,
    /// Messages with `\Flagged`.
    Flagged,
    /// Messages without `\Flagged`.
    Unflagged,
    /// Messages with `\Answered`.
    Answered,
    /// Messages with `\Deleted`.
    Deleted,
    /// Messages without `\Deleted`.
    Undeleted,
    /// Messages with `\Draft`.
    Draft,
    /// The From header contains the string.
    From(ImapString),
    /// The To header contains the string.
    To(ImapString),
    /// The Cc header contains the string.
    Cc(ImapString),
    /// The Subject header contains the string.
    Subject(ImapString),
    /// The headers or body contain the string.
    Text(ImapString),
    /// The body contains the string.
    Body(ImapString),
    /// Internal date on or after the day.
    Since(NaiveDate),
    /// Internal date before the day.
    Before(NaiveDate),
    /// Date header on or after the day.
    SentSince(NaiveDate),
    /// Date header before the day.
    SentBefore(NaiveDate),
    /// UID in the set.
    Uid(UidSet),
    /// Messages with the flag. A keyword is searched with `KEYWORD`; a system flag is
    /// searched with its own key (`SEEN`, `ANSWERED`, ...), because `KEYWORD` takes only
    /// keywords (RFC 3501 `flag-keyword`).
    Keyword(Flag),
    /// Messages that do not match the key.
    Not(Box<SearchKey>),
    /// Messages that match either key.
    Or(Box<SearchKey>, Box<SearchKey>),
}

impl SearchKey {
    /// The caller string this key carries, if any.
    pub(super) fn text(&self) -> Option<&ImapString> {
        match self {
            Self::From(s)
            | Self::To(s)
            | Self::Cc(s)
            | Self::Subject(s)
            | Self::Text(s)
            | Self::Body(s) => Some(s),
            _ => None,
        }
    }
}

/// Visits search keys in prefix order (each `NOT` or `OR` before its operands), which is
/// the order RFC 3501 writes them in. It keeps its own stack instead of recursing, so a
/// deeply nested key cannot overflow the thread's stack.
pub(super) struct PrefixOrder<'a> {
    pending: Vec<&'a SearchKey>,
}

impl<'a> PrefixOrder<'a> {
    pub(super) fn new(keys: &'a [SearchKey]) -> Self {
        Self {
            pending: keys.iter().rev().collect(),
        }
    }
}

impl<'a> Iterator for PrefixOrder<'a> {
    type Item = &'a SearchKey;

    fn next(&mut self) -> Option<&'a SearchKey> {
        let key = self.pending.pop()?;
        match key {
            SearchKey::Not(operand) => self.pending.push(operand),
            SearchKey::Or(left, right) => {
                self.pending.push(right);
                self.pending.push(left);
            }
            _ => {}
        }
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::encode::testing::*;
    use crate::imap::encode::*;

    #[test]
    fn dates_are_formatted_for_imap() {
        let cases = [
            (date(1994, 2, 1), "1-Feb-1994"),
            (date(2024, 12, 31), "31-Dec-2024"),
            (date(2000, 1, 9), "9-Jan-2000"),
            (date(2023, 3, 10), "10-Mar-2023"),
            (date(2023, 4, 1), "1-Apr-2023"),
            (date(2023, 5, 1), "1-May-2023"),
            (date(2023, 6, 1), "1-Jun-2023"),
            (date(2023, 7, 1), "1-Jul-2023"),
            (date(2023, 8, 1), "1-Aug-2023"),
            (date(2023, 9, 1), "1-Sep-2023"),
            (date(2023, 10, 1), "1-Oct-2023"),
            (date(2023, 11, 1), "1-Nov-2023"),
            (date(5, 6, 7), "7-Jun-0005"),
            (date(0, 1, 1), "1-Jan-0000"),
            (date(-1, 12, 31), "1-Jan-0000"),
            (date(9999, 12, 31), "31-Dec-9999"),
            (date(10_000, 1, 1), "31-Dec-9999"),
            (NaiveDate::MIN, "1-Jan-0000"),
            (NaiveDate::MAX, "31-Dec-9999"),
        ];
        for (day, expected) in cases {
            assert_eq!(
                wire_text(&Command::new("SEARCH").atom("SINCE").date(day), false),
                [format!("A1 SEARCH SINCE {expected}\r\n")]
            );
        }
    }

    #[test]
    fn search_with_nested_not_and_or() {
        let keys = [
            SearchKey::Or(
                Box::new(SearchKey::Not(Box::new(SearchKey::Seen))),
                Box::new(SearchKey::Or(
                    Box::new(SearchKey::Flagged),
                    Box::new(SearchKey::Not(Box::new(SearchKey::Keyword(Flag::Keyword(
                        "$Junk".to_owned(),
                    ))))),
                )),
            ),
            SearchKey::Since(date(2024, 1, 2)),
            SearchKey::Uid(UidSet::range(10, 20).unwrap()),
            SearchKey::Subject(text("report \"Q1\"")),
        ];
        assert_eq!(
            wire_text(&Command::new("UID SEARCH").search(&keys), false),
            [
                "A1 UID SEARCH OR NOT SEEN OR FLAGGED NOT KEYWORD $Junk SINCE 2-Jan-2024 \
              UID 10:20 SUBJECT \"report \\\"Q1\\\"\"\r\n"
            ]
        );
    }

    #[test]
    fn search_covers_every_key() {
        let keys = [
            SearchKey::All,
            SearchKey::Unseen,
            SearchKey::Seen,
            SearchKey::Flagged,
            SearchKey::Unflagged,
            SearchKey::Answered,
            SearchKey::Deleted,
            SearchKey::Undeleted,
            SearchKey::Draft,
            SearchKey::From(text("f")),
            SearchKey::To(text("t")),
            SearchKey::Cc(text("c")),
            SearchKey::Subject(text("s")),
            SearchKey::Text(text("x")),
            SearchKey::Body(text("b")),
            SearchKey::Since(date(2020, 1, 1)),
            SearchKey::Before(date(2020, 1, 2)),
            SearchKey::SentSince(date(2020, 1, 3)),
            SearchKey::SentBefore(date(2020, 1, 4)),
            SearchKey::Uid(UidSet::single(4).unwrap()),
            SearchKey::Keyword(Flag::Seen),
            SearchKey::Keyword(Flag::Answered),
            SearchKey::Keyword(Flag::Flagged),
            SearchKey::Keyword(Flag::Deleted),
            SearchKey::Keyword(Flag::Draft),
            SearchKey::Keyword(Flag::Keyword("$k".to_owned())),
        ];
        assert_eq!(
            wire_text(&Command::new("SEARCH").search(&keys), false),
            [
                "A1 SEARCH ALL UNSEEN SEEN FLAGGED UNFLAGGED ANSWERED DELETED UNDELETED DRAFT \
              FROM \"f\" TO \"t\" CC \"c\" SUBJECT \"s\" TEXT \"x\" BODY \"b\" \
              SINCE 1-Jan-2020 BEFORE 2-Jan-2020 SENTSINCE 3-Jan-2020 SENTBEFORE 4-Jan-2020 \
              UID 4 SEEN ANSWERED FLAGGED DELETED DRAFT KEYWORD $k\r\n"
            ]
        );
    }

    #[test]
    fn search_declares_utf8_only_for_non_ascii_strings() {
        let ascii = [SearchKey::From(text("alice")), SearchKey::Unseen];
        assert_eq!(
            wire_text(&Command::new("UID SEARCH").search(&ascii), false),
            ["A1 UID SEARCH FROM \"alice\" UNSEEN\r\n"]
        );
        let nested = [SearchKey::Not(Box::new(SearchKey::Or(
            Box::new(SearchKey::All),
            Box::new(SearchKey::Body(text("日本"))),
        )))];
        assert_eq!(
            wire_text(&Command::new("UID SEARCH").search(&nested), false),
            [
                "A1 UID SEARCH CHARSET UTF-8 NOT OR ALL BODY {6}\r\n",
                "日本\r\n"
            ]
        );
        assert_eq!(
            wire_text(&Command::new("UID SEARCH").search(&nested), true),
            ["A1 UID SEARCH CHARSET UTF-8 NOT OR ALL BODY {6+}\r\n日本\r\n"]
        );
    }

    #[test]
    fn search_without_keys_is_all() {
        assert_eq!(
            wire_text(&Command::new("UID SEARCH").search(&[]), false),
            ["A1 UID SEARCH ALL\r\n"]
        );
        let command = Command::new("UID SEARCH")
            .atom("RETURN")
            .atom("(COUNT)")
            .search(&[]);
        assert_eq!(
            wire_text(&command, false),
            ["A1 UID SEARCH RETURN (COUNT) ALL\r\n"]
        );
    }

    #[test]
    fn sort_and_thread_take_a_bare_charset() {
        let command = Command::new("UID SORT")
            .atom("(REVERSE DATE)")
            .sort_criteria(&[SearchKey::Subject(text("é"))]);
        assert_eq!(
            wire_text(&command, true),
            ["A1 UID SORT (REVERSE DATE) UTF-8 SUBJECT {2+}\r\né\r\n"]
        );
        let command = Command::new("UID SORT")
            .atom("(ARRIVAL)")
            .sort_criteria(&[]);
        assert_eq!(
            wire_text(&command, false),
            ["A1 UID SORT (ARRIVAL) UTF-8 ALL\r\n"]
        );
        let command = Command::new("THREAD")
            .atom("REFERENCES")
            .sort_criteria(&[SearchKey::Unseen]);
        assert_eq!(
            wire_text(&command, false),
            ["A1 THREAD REFERENCES UTF-8 UNSEEN\r\n"]
        );
    }

    #[test]
    fn deeply_nested_search_does_not_recurse() {
        let mut key = SearchKey::All;
        for _ in 0..100_000 {
            key = SearchKey::Not(Box::new(key));
        }
        let pieces = Command::new("SEARCH")
            .search(std::slice::from_ref(&key))
            .to_wire("A1", false);
        assert_eq!(pieces.len(), 1);
        assert!(pieces[0].starts_with(b"A1 SEARCH NOT NOT "));
        assert!(pieces[0].ends_with(b" NOT ALL\r\n"));
        assert_eq!(
            pieces[0].len(),
            "A1 SEARCH ".len() + 100_000 * 4 + "ALL\r\n".len()
        );
        // Dropping the chain recursively could overflow the test thread's stack, so take it
        // apart one level at a time.
        while let SearchKey::Not(inner) = key {
            key = *inner;
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "sort_criteria")]
    fn search_is_not_for_sort() {
        let _ = Command::new("UID SORT").atom("(DATE)").search(&[]);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "SORT and THREAD")]
    fn sort_criteria_is_not_for_search() {
        let _ = Command::new("UID SEARCH").sort_criteria(&[]);
    }
}
