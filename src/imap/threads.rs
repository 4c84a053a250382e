//! Threads by the server: `UID THREAD REFERENCES` (RFC 5256), whose responses the response
//! parser cannot read, so the connection's guard takes them out of the stream
//! ([`GuardedStream::tap_threads`](super::guard::GuardedStream::tap_threads)) and they are
//! parsed here.

use super::connection::Connection;
use super::encode::{Command, SearchKey};
use super::error::{ImapError, Result};
use crate::mail::threading::Thread;

/// Parses the thread list of one THREAD response (RFC 5256 §4: `(2)(3 6 (4 23)(44 7 96))`)
/// into threads of `(UID, depth)` in reading order. A thread that starts with nested lists
/// (replies to a message that is not there) has them all at depth 0. `None` when the list is
/// not well formed.
pub(crate) fn parse_thread_list(list: &[u8]) -> Option<Vec<Thread<u32>>> {
    let mut threads = Vec::new();
    let mut current: Vec<(u32, usize)> = Vec::new();
    // For each open parenthesis, the depth of the next message in it.
    let mut open: Vec<usize> = Vec::new();
    let mut at = 0;
    while at < list.len() {
        match list[at] {
            b'(' => {
                let depth = open.last().copied().unwrap_or(0);
                open.push(depth);
                at += 1;
            }
            b')' => {
                open.pop()?;
                if open.is_empty() {
                    if current.is_empty() {
                        return None;
                    }
                    threads.push(Thread {
                        messages: std::mem::take(&mut current),
                    });
                }
                at += 1;
            }
            b' ' => at += 1,
            b'0'..=b'9' => {
                let start = at;
                while at < list.len() && list[at].is_ascii_digit() {
                    at += 1;
                }
                let uid: u32 = std::str::from_utf8(&list[start..at]).ok()?.parse().ok()?;
                let depth = open.last_mut()?;
                if uid == 0 {
                    return None;
                }
                current.push((uid, *depth));
                *depth += 1;
            }
            _ => return None,
        }
    }
    open.is_empty().then_some(threads)
}

impl Connection {
    /// The selected mailbox's threads of the messages matching `filters` (all when empty), as
    /// the server threads them (`THREAD=REFERENCES`), oldest thread first.
    pub async fn server_threads(&mut self, filters: &[SearchKey]) -> Result<Vec<Thread<u32>>> {
        if !self.capabilities().has("THREAD=REFERENCES") {
            return Err(ImapError::Unsupported("THREAD=REFERENCES"));
        }
        let cmd = Command::new("UID THREAD")
            .atom("REFERENCES")
            .sort_criteria(filters);
        self.tap_threads(true);
        let done = self.run(&cmd, |_| Ok(())).await;
        let lists = self.take_threads();
        self.tap_threads(false);
        done?.into_result()?;
        let mut threads = Vec::new();
        for list in lists {
            threads.extend(parse_thread_list(&list).ok_or_else(|| {
                ImapError::Protocol("the IMAP server sent a malformed THREAD response".into())
            })?);
        }
        Ok(threads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threads(list: &str) -> Option<Vec<Vec<(u32, usize)>>> {
        parse_thread_list(list.as_bytes())
            .map(|threads| threads.into_iter().map(|t| t.messages).collect())
    }

    #[test]
    fn reads_the_rfc_5256_example() {
        assert_eq!(
            threads("(2)(3 6 (4 23)(44 7 96))"),
            Some(vec![
                vec![(2, 0)],
                vec![(3, 0), (6, 1), (4, 2), (23, 3), (44, 2), (7, 3), (96, 4)],
            ])
        );
    }

    #[test]
    fn replies_to_a_missing_message_start_at_depth_0() {
        assert_eq!(
            threads("((1)(2 3))(4)"),
            Some(vec![vec![(1, 0), (2, 0), (3, 1)], vec![(4, 0)]])
        );
    }

    #[test]
    fn an_empty_answer_has_no_threads() {
        assert_eq!(threads(""), Some(Vec::new()));
    }

    #[test]
    fn malformed_lists_are_refused() {
        for bad in [
            "(1",
            "1)",
            "(1))",
            "()",
            "(0)",
            "(1 x)",
            "(99999999999)",
            "((1)",
        ] {
            assert_eq!(threads(bad), None, "{bad}");
        }
    }
}
