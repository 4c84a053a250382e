//! Opaque tokens handed to HTTP callers: a mailbox's delta-sync state, a page cursor and a
//! thread's id.
//!
//! Both are plain dotted numbers behind a version prefix, strictly parsed: a token that does
//! not parse is a 400, and a token that parses can at worst make the bridge do more work,
//! never return wrong data (cursors are re-verified against the server).
//!
//! The syntax is what the OpenAPI document's patterns say: the prefix, then canonical decimal
//! numbers of at most 19 digits. A token of that syntax whose numbers no mailbox can have
//! (UIDVALIDITY or a UID of zero or beyond 32 bits, a mod-sequence beyond RFC 7162's 63 bits)
//! is not refused as malformed: it parses as a token of UIDVALIDITY 0, which no mailbox has,
//! so it is answered like any token from before a mailbox reset (409 `uid_validity_changed`,
//! or `mailbox.reset` for events).
//!
//! The bridge never hands out such a token: a mod-sequence a server reports beyond 63 bits
//! (which RFC 7162 does not allow) is taken as no mod-sequence at all ([`server_modseq`]).

use std::fmt;
use std::str::FromStr;

/// The largest mod-sequence RFC 7162 allows: mod-sequences are positive 63-bit numbers.
pub const MAX_MODSEQ: u64 = i64::MAX as u64;

/// A mod-sequence (HIGHESTMODSEQ or a message's MODSEQ) as the server reported it, as the
/// bridge keeps it: one beyond [`MAX_MODSEQ`], which no RFC 7162 server sends, becomes 0, "no
/// mod-sequence". The mailbox is then treated as one without CONDSTORE (changes are found by
/// comparing UIDs: more than changed, never less), and no token or command carries a number
/// that a state token cannot hold or the server would have to refuse.
pub fn server_modseq(modseq: u64) -> u64 {
    if modseq <= MAX_MODSEQ { modseq } else { 0 }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0}")]
pub struct MalformedToken(pub &'static str);

/// A mailbox's delta-sync state: everything after it can be asked for with `changes`.
///
/// Any state older than the truth is still correct (it reports more), so the bridge may hand
/// out a slightly stale one, never a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxState {
    /// The mailbox's UIDVALIDITY.
    pub uid_validity: u32,
    /// HIGHESTMODSEQ (0 when the server has no CONDSTORE).
    pub highest_modseq: u64,
    /// UIDNEXT: messages at or above it are new.
    pub uid_next: u32,
}

impl fmt::Display for MailboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "s1.{}.{}.{}",
            self.uid_validity, self.highest_modseq, self.uid_next
        )
    }
}

impl FromStr for MailboxState {
    type Err = MalformedToken;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = MalformedToken("state");
        let rest = s.strip_prefix("s1.").ok_or(err.clone())?;
        let mut parts = rest.split('.');
        let uid_validity = parse_part(parts.next(), &err)?;
        let highest_modseq = parse_part(parts.next(), &err)?;
        let uid_next = parse_part(parts.next(), &err)?;
        if parts.next().is_some() {
            return Err(err);
        }
        let fits = (
            nonzero_u32(uid_validity),
            nonzero_u32(uid_next),
            highest_modseq <= MAX_MODSEQ,
        );
        Ok(match fits {
            (Some(uid_validity), Some(uid_next), true) => MailboxState {
                uid_validity,
                highest_modseq,
                uid_next,
            },
            _ => MailboxState {
                uid_validity: 0,
                highest_modseq: 0,
                uid_next: 1,
            },
        })
    }
}

/// Where the next page starts: just past an anchor message, so that new mail arriving between
/// pages neither shifts nor repeats a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    /// UIDVALIDITY the anchor belongs to.
    pub uid_validity: u32,
    /// The last message of the previous page.
    pub anchor_uid: u32,
    /// Where the anchor was: its sequence number (arrival order) or index (sorted lists).
    /// Only a hint; it is verified before use.
    pub position: u32,
    /// Fingerprint of the sort and filters the cursor was made for.
    pub query: u32,
}

impl fmt::Display for PageCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "c1.{}.{}.{}.{:08x}",
            self.uid_validity, self.anchor_uid, self.position, self.query
        )
    }
}

impl FromStr for PageCursor {
    type Err = MalformedToken;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = MalformedToken("cursor");
        let rest = s.strip_prefix("c1.").ok_or(err.clone())?;
        let mut parts = rest.split('.');
        let uid_validity = parse_part(parts.next(), &err)?;
        let anchor_uid = parse_part(parts.next(), &err)?;
        let position = parse_part(parts.next(), &err)?;
        let query = parts
            .next()
            .filter(|q| q.len() == 8 && q.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|q| u32::from_str_radix(q, 16).ok())
            .ok_or(err.clone())?;
        if parts.next().is_some() {
            return Err(err);
        }
        let fits = (
            nonzero_u32(uid_validity),
            nonzero_u32(anchor_uid),
            u32::try_from(position).ok(),
        );
        Ok(match fits {
            (Some(uid_validity), Some(anchor_uid), Some(position)) => PageCursor {
                uid_validity,
                anchor_uid,
                position,
                query,
            },
            _ => PageCursor {
                uid_validity: 0,
                anchor_uid: 1,
                position: 0,
                query,
            },
        })
    }
}

/// A conversation's id within a mailbox: 64 bits of SHA-256 over what names the
/// conversation (see `imap::thread_index` for what that is), as `t1.` and 16 lower-case hex
/// digits. It says nothing about the mailbox or the messages without the mailbox at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadId(u64);

impl ThreadId {
    /// The id derived from `parts` (each one delimited, so `["ab", "c"]` and `["a", "bc"]`
    /// differ).
    pub fn derive(parts: &[&[u8]]) -> Self {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in parts {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        let digest = hash.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        ThreadId(u64::from_be_bytes(first))
    }
}

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t1.{:016x}", self.0)
    }
}

impl FromStr for ThreadId {
    type Err = MalformedToken;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = MalformedToken("thread id");
        let hex = s.strip_prefix("t1.").ok_or(err.clone())?;
        if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(err);
        }
        u64::from_str_radix(hex, 16).map(ThreadId).map_err(|_| err)
    }
}

/// `n` as a UID or UIDVALIDITY: non-zero and within 32 bits.
fn nonzero_u32(n: u64) -> Option<u32> {
    u32::try_from(n).ok().filter(|&n| n != 0)
}

/// One number of a token: canonical decimal (no sign, no leading zeros) of 1 to 19 digits, so
/// it always fits in 64 bits.
fn parse_part(part: Option<&str>, err: &MalformedToken) -> Result<u64, MalformedToken> {
    let part = part.ok_or(err.clone())?;
    if part.is_empty()
        || part.len() > 19
        || !part.bytes().all(|b| b.is_ascii_digit())
        || (part.len() > 1 && part.starts_with('0'))
    {
        return Err(err.clone());
    }
    part.parse().map_err(|_| err.clone())
}

/// A stable 32-bit FNV-1a fingerprint, for tying a cursor to the query that produced it.
pub fn query_fingerprint(parts: &[&str]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let state = MailboxState {
            uid_validity: 1_700_000_000,
            highest_modseq: 42,
            uid_next: 1001,
        };
        assert_eq!(state.to_string(), "s1.1700000000.42.1001");
        assert_eq!(state.to_string().parse::<MailboxState>(), Ok(state));
    }

    #[test]
    fn cursor_round_trips() {
        let cursor = PageCursor {
            uid_validity: 7,
            anchor_uid: 9951,
            position: 9950,
            query: 0xdead_beef,
        };
        assert_eq!(cursor.to_string(), "c1.7.9951.9950.deadbeef");
        assert_eq!(cursor.to_string().parse::<PageCursor>(), Ok(cursor));
    }

    #[test]
    fn hostile_tokens_are_refused() {
        for bad in [
            "",
            "s1.",
            "s1.1.2",
            "s1.1.2.3.4",
            "s1.-1.2.3",
            "s1.+1.2.3",
            "s1.01.2.3",
            "s1.1.2.99999999999999999999999",
            "s2.1.2.3",
            "s1.1.2.3\r\n",
            "s1.1 .2.3",
            "s1.1.2.18446744073709551615",
        ] {
            assert!(bad.parse::<MailboxState>().is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "c1.1.2.3",
            "c1.1.2.3.zzzzzzzz",
            "c1.1.2.3.1234567",
            "c1.1.2.3.00000000.1",
            "c1.1.2.3.+0000000",
        ] {
            assert!(bad.parse::<PageCursor>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn well_formed_tokens_no_mailbox_can_have_belong_to_uid_validity_zero() {
        for foreign in [
            "s1.0.2.3",
            "s1.1.2.0",
            "s1.4294967296.2.3",
            "s1.1.2.9999999999999999999",
            "s1.1.9223372036854775808.3",
            "s1.1.9999999999999999999.3",
        ] {
            let state = foreign.parse::<MailboxState>().expect(foreign);
            assert_eq!(state.uid_validity, 0, "{foreign:?}");
        }
        for foreign in [
            "c1.0.2.3.00000000",
            "c1.1.0.3.00000000",
            "c1.4294967296.2.3.00000000",
            "c1.1.2.4294967296.00000000",
        ] {
            let cursor = foreign.parse::<PageCursor>().expect(foreign);
            assert_eq!(cursor.uid_validity, 0, "{foreign:?}");
        }
    }

    #[test]
    fn mod_sequences_beyond_63_bits_are_no_mod_sequence_and_every_state_round_trips() {
        assert_eq!(server_modseq(1), 1);
        assert_eq!(server_modseq(MAX_MODSEQ), MAX_MODSEQ);
        assert_eq!(server_modseq(MAX_MODSEQ + 1), 0);
        assert_eq!(server_modseq(u64::MAX), 0);
        let largest = MailboxState {
            uid_validity: u32::MAX,
            highest_modseq: MAX_MODSEQ,
            uid_next: u32::MAX,
        };
        assert_eq!(
            largest.to_string(),
            "s1.4294967295.9223372036854775807.4294967295"
        );
        assert_eq!(largest.to_string().parse(), Ok(largest));
        // What a non-compliant server reports (the fuzzer's finding: a 20-digit
        // HIGHESTMODSEQ made a token the bridge itself refused) still makes a valid token.
        for reported in [MAX_MODSEQ + 1, 10_000_000_000_000_000_000, u64::MAX] {
            let state = MailboxState {
                uid_validity: 7,
                highest_modseq: server_modseq(reported),
                uid_next: 9,
            };
            assert_eq!(state.to_string(), "s1.7.0.9");
            assert_eq!(state.to_string().parse(), Ok(state));
        }
    }

    #[test]
    fn thread_ids_round_trip_and_refuse_anything_else() {
        let id = ThreadId::derive(&[b"origin", b"a@x"]);
        assert_eq!(id.to_string().len(), "t1.".len() + 16);
        assert_eq!(id.to_string().parse::<ThreadId>(), Ok(id));
        assert_eq!(ThreadId::derive(&[b"origin", b"a@x"]), id, "stable");
        assert_ne!(
            ThreadId::derive(&[b"origina", b"@x"]),
            id,
            "parts delimited"
        );
        for bad in [
            "",
            "t1.",
            "t1.0123456789abcde",
            "t1.0123456789abcdef0",
            "t1.0123456789ABCDEF",
            "t2.0123456789abcdef",
            "t1.0123456789abcdeg",
            "t1.0123456789abcdef\r\n",
            "c1.1.2.3.00000000",
        ] {
            assert!(bad.parse::<ThreadId>().is_err(), "{bad:?}");
        }
        assert!("t1.0123456789abcdef".parse::<ThreadId>().is_ok());
    }

    #[test]
    fn fingerprint_separates_fields() {
        assert_ne!(
            query_fingerprint(&["ab", "c"]),
            query_fingerprint(&["a", "bc"])
        );
        assert_eq!(
            query_fingerprint(&["date", "desc"]),
            query_fingerprint(&["date", "desc"])
        );
    }
}
