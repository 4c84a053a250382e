//! Event ids: every mailbox's position, signed so that only ids the bridge issued are replayed.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::imap::UserKey;
use crate::imap::event_batch::Phase;
use crate::imap::state::{MAX_MODSEQ, MailboxState};

/// How far a client got in one mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Position {
    /// Everything up to this state.
    At(MailboxState),
    /// Inside the batch `from → to`, up to and including the change at `(phase, uid)`.
    Within {
        from: MailboxState,
        to: MailboxState,
        phase: Phase,
        uid: u32,
    },
}

impl Position {
    pub(super) fn encode(&self) -> String {
        match self {
            Position::At(s) => s.to_string(),
            Position::Within {
                from,
                to,
                phase,
                uid,
            } => format!(
                "p1.{}.{}.{}.{}.{}.{}.{}",
                from.uid_validity,
                from.highest_modseq,
                from.uid_next,
                to.highest_modseq,
                to.uid_next,
                *phase as u8,
                uid
            ),
        }
    }

    pub(super) fn decode(s: &str) -> Option<Position> {
        if let Ok(state) = s.parse::<MailboxState>() {
            return Some(Position::At(state));
        }
        let mut parts = s.strip_prefix("p1.")?.split('.');
        let mut next = || parts.next()?.parse::<u64>().ok();
        let uid_validity = u32::try_from(next()?).ok()?;
        let from_modseq = next()?;
        let from_next = u32::try_from(next()?).ok()?;
        let to_modseq = next()?;
        let to_next = u32::try_from(next()?).ok()?;
        let phase = match next()? {
            1 => Phase::Expunged,
            2 => Phase::Arrived,
            3 => Phase::Flags,
            _ => return None,
        };
        let uid = u32::try_from(next()?).ok()?;
        let from = MailboxState {
            uid_validity,
            highest_modseq: from_modseq,
            uid_next: from_next,
        };
        let to = MailboxState {
            uid_validity,
            highest_modseq: to_modseq,
            uid_next: to_next,
        };
        if uid_validity == 0
            || from_next == 0
            || to_next < from_next
            || to_modseq < from_modseq
            || to_modseq > MAX_MODSEQ
        {
            return None;
        }
        Some(Position::Within {
            from,
            to,
            phase,
            uid,
        })
    }

    pub(super) fn uid_validity(&self) -> u32 {
        match self {
            Position::At(s) => s.uid_validity,
            Position::Within { from, .. } => from.uid_validity,
        }
    }

    /// The state the replay starts from.
    pub(super) fn start(&self) -> MailboxState {
        match self {
            Position::At(s) => *s,
            Position::Within { from, .. } => *from,
        }
    }

    /// The mod-sequence changes are replayed from; 0 when there was none to go by.
    pub(super) fn highest_modseq(&self) -> u64 {
        match self {
            Position::At(s) => s.highest_modseq,
            Position::Within { from, .. } => from.highest_modseq,
        }
    }
}

/// Longest accepted `Last-Event-ID`.
pub(super) const MAX_EVENT_ID: usize = 8192;

/// Derives the event-id key from a secret (HMAC-SHA256 under this label).
pub(super) const EVENT_ID_LABEL: &[u8] = b"imap-bridge/event-id/v1";

/// Bytes of HMAC-SHA256 an event id carries.
pub(super) const MAC_LEN: usize = 16;

/// Signs event ids and checks `Last-Event-ID`s.
///
/// An id is `e2.` base64url(JSON of positions) `.` base64url(MAC), the MAC (HMAC-SHA256, first
/// 16 bytes) taken under a key derived from the bridge's secret over the IMAP server, the user
/// and the positions. A replay is computed from positions only after the MAC holds, so an id
/// the bridge did not issue — made up, edited, another user's, or from before this scheme —
/// costs one `mailbox.reset` and not a word to the IMAP server. Keys of previous secrets are
/// accepted too, so that rotating the secret loses no stream's place.
pub struct EventIdKeys {
    /// The current key first.
    keys: Vec<Zeroizing<[u8; 32]>>,
}

impl EventIdKeys {
    /// Keys from the current secret and the previous ones.
    pub fn new<'a>(current: &[u8], previous: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut keys = vec![crate::keys::derive(current, EVENT_ID_LABEL)];
        keys.extend(
            previous
                .into_iter()
                .map(|s| crate::keys::derive(s, EVENT_ID_LABEL)),
        );
        EventIdKeys { keys }
    }

    /// A MAC under `key` already fed with `user`, ready for one id's payload.
    pub(super) fn keyed(key: &[u8; 32], user: &UserKey) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
        for part in [
            user.upstream.host.as_bytes(),
            &user.upstream.port.to_be_bytes(),
            user.username.as_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The signer of `user`'s ids.
    pub(super) fn signer(&self, user: &UserKey) -> IdSigner {
        IdSigner {
            mac: Self::keyed(&self.keys[0], user),
        }
    }

    /// The positions of a `Last-Event-ID`, if this bridge (or one with the same secret) issued
    /// it to `user`.
    pub(super) fn open(&self, user: &UserKey, id: &str) -> Option<BTreeMap<String, Position>> {
        if id.len() > MAX_EVENT_ID {
            return None;
        }
        let (payload, tag) = id.strip_prefix("e2.")?.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != MAC_LEN {
            return None;
        }
        let genuine = self.keys.iter().any(|key| {
            let mut mac = Self::keyed(key, user);
            mac.update(payload.as_bytes());
            mac.verify_truncated_left(&tag).is_ok()
        });
        if !genuine {
            return None;
        }
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let raw: BTreeMap<String, String> = serde_json::from_slice(&json).ok()?;
        raw.into_iter()
            .map(|(name, pos)| Position::decode(&pos).map(|p| (name, p)))
            .collect()
    }
}

/// Makes one subscriber's event ids.
pub(super) struct IdSigner {
    pub(super) mac: Hmac<Sha256>,
}

impl IdSigner {
    pub(super) fn sign(&self, positions: &BTreeMap<Arc<str>, Position>) -> String {
        let raw: BTreeMap<&str, String> =
            positions.iter().map(|(k, v)| (&**k, v.encode())).collect();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&raw).unwrap_or_default());
        let mut mac = self.mac.clone();
        mac.update(payload.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("e2.{payload}.{}", URL_SAFE_NO_PAD.encode(&tag[..MAC_LEN]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::testing::{state, user};
    use crate::imap::transport::Upstream;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OLD_SECRET: &[u8] = b"fedcba9876543210fedcba9876543210";

    fn positions() -> BTreeMap<Arc<str>, Position> {
        let mut positions = BTreeMap::new();
        positions.insert(Arc::from("INBOX"), Position::At(state(10, 5)));
        positions.insert(
            Arc::from("Entwürfe \"x\""),
            Position::Within {
                from: state(10, 5),
                to: state(20, 9),
                phase: Phase::Arrived,
                uid: 7,
            },
        );
        positions
    }

    fn as_strings(positions: &BTreeMap<Arc<str>, Position>) -> BTreeMap<String, Position> {
        positions.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn event_ids_round_trip_every_position() {
        let keys = EventIdKeys::new(SECRET, []);
        let id = keys.signer(&user("alice")).sign(&positions());
        assert!(id.bytes().all(|b| b.is_ascii_graphic()), "{id}");
        assert_eq!(
            keys.open(&user("alice"), &id).expect("opens"),
            as_strings(&positions())
        );
    }

    #[test]
    fn event_ids_the_bridge_did_not_issue_are_refused() {
        let keys = EventIdKeys::new(SECRET, []);
        let genuine = keys.signer(&user("alice")).sign(&positions());
        let (payload, tag) = genuine
            .strip_prefix("e2.")
            .and_then(|r| r.split_once('.'))
            .expect("e2.payload.tag");
        // A position far behind, as an attacker would write it to make the bridge fetch a
        // whole mailbox: valid JSON, valid positions, no valid MAC.
        let far_behind = URL_SAFE_NO_PAD.encode(r#"{"INBOX":"7.1.1"}"#);
        let unsigned_v1 = format!("e1.{far_behind}");
        let forged = format!("e2.{far_behind}.{tag}");
        let short_tag = format!("e2.{payload}.{}", &tag[..10]);
        let other_user = keys.open(&user("bob"), &genuine);
        assert!(other_user.is_none(), "another user's id");
        let other_server = UserKey {
            upstream: Upstream {
                port: 143,
                ..user("alice").upstream
            },
            ..user("alice")
        };
        assert!(keys.open(&other_server, &genuine).is_none());
        let other_bridge = EventIdKeys::new(OLD_SECRET, []);
        assert!(other_bridge.open(&user("alice"), &genuine).is_none());
        for bad in [
            "",
            "e2.",
            "e2.!!!",
            "e2.e30",
            unsigned_v1.as_str(),
            forged.as_str(),
            short_tag.as_str(),
            &format!("e2.{}.{tag}", "A".repeat(9000)),
        ] {
            assert!(keys.open(&user("alice"), bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ids_signed_under_a_previous_secret_still_open() {
        let before = EventIdKeys::new(OLD_SECRET, []);
        let id = before.signer(&user("alice")).sign(&positions());
        let after = EventIdKeys::new(SECRET, [OLD_SECRET]);
        assert_eq!(
            after.open(&user("alice"), &id).expect("opens"),
            as_strings(&positions())
        );
        let new_id = after.signer(&user("alice")).sign(&positions());
        assert!(before.open(&user("alice"), &new_id).is_none());
    }

    #[test]
    fn a_signed_batch_that_runs_backwards_is_still_refused() {
        let keys = EventIdKeys::new(SECRET, []);
        let payload = URL_SAFE_NO_PAD.encode(r#"{"INBOX":"p1.7.20.9.10.5.2.1"}"#);
        let mut mac = EventIdKeys::keyed(&keys.keys[0], &user("alice"));
        mac.update(payload.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..MAC_LEN]);
        assert!(
            keys.open(&user("alice"), &format!("e2.{payload}.{tag}"))
                .is_none()
        );
    }
}
