//! Fuzzes the opaque tokens HTTP callers hand back: delta-sync states (`s1.…`) and page
//! cursors (`c1.…`), from `imap::state`.
//!
//! Properties: parsing never panics; a token parses exactly when it has the documented
//! syntax (the prefix, then canonical decimal numbers of 1 to 19 digits, and for cursors
//! eight hex digits); whatever parses prints back to a token that parses to the same value,
//! and, when its numbers fit a real mailbox, to the very same text (hex letters aside); and
//! any value built from numbers a server may report (mod-sequences of any 64 bits, taken as
//! the bridge takes them) round-trips through its text.

use imap_bridge::imap::state::{MailboxState, PageCursor, query_fingerprint, server_modseq};

/// Checks the properties above on one input; panics when one breaks.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);

    let state = text.parse::<MailboxState>();
    assert_eq!(
        state.is_ok(),
        well_formed(&text, "s1.", 3, false),
        "MailboxState {text:?}: {state:?}"
    );
    if let Ok(state) = state {
        assert_eq!(state.to_string().parse::<MailboxState>(), Ok(state));
        if state.uid_validity != 0 {
            assert_eq!(state.to_string(), text);
        }
    }

    let cursor = text.parse::<PageCursor>();
    assert_eq!(
        cursor.is_ok(),
        well_formed(&text, "c1.", 3, true),
        "PageCursor {text:?}: {cursor:?}"
    );
    if let Ok(cursor) = cursor {
        assert_eq!(cursor.to_string().parse::<PageCursor>(), Ok(cursor));
        if cursor.uid_validity != 0 {
            assert!(cursor.to_string().eq_ignore_ascii_case(&text));
        }
    }

    // Tokens the bridge itself hands out, from numbers taken from the input.
    let mut numbers = data.chunks(4).map(|chunk| {
        let mut bytes = [0u8; 4];
        bytes[..chunk.len()].copy_from_slice(chunk);
        u32::from_le_bytes(bytes)
    });
    let mut next = || numbers.next().unwrap_or(1);
    // Mod-sequences come from the server as any 64-bit number; `server_modseq` is how the
    // bridge takes them (RFC 7162 allows 63 bits, which always fit a token's 19 digits).
    let state = MailboxState {
        uid_validity: next().max(1),
        highest_modseq: server_modseq(u64::from(next()) << 32 | u64::from(next())),
        uid_next: next().max(1),
    };
    assert_eq!(state.to_string().parse::<MailboxState>(), Ok(state));
    let cursor = PageCursor {
        uid_validity: next().max(1),
        anchor_uid: next().max(1),
        position: next(),
        query: query_fingerprint(&[&text]),
    };
    assert_eq!(cursor.to_string().parse::<PageCursor>(), Ok(cursor));
}

/// The syntax of the OpenAPI document: `prefix`, `count` canonical decimal numbers of 1 to 19
/// digits separated by dots, then for cursors a dot and exactly eight hex digits.
fn well_formed(text: &str, prefix: &str, count: usize, hex_suffix: bool) -> bool {
    let Some(rest) = text.strip_prefix(prefix) else {
        return false;
    };
    let fields: Vec<&str> = rest.split('.').collect();
    if fields.len() != count + usize::from(hex_suffix) {
        return false;
    }
    let decimal_ok = fields[..count].iter().all(|field| {
        (1..=19).contains(&field.len())
            && field.bytes().all(|b| b.is_ascii_digit())
            && (field.len() == 1 || !field.starts_with('0'))
    });
    let hex_ok = !hex_suffix
        || (fields[count].len() == 8 && fields[count].bytes().all(|b| b.is_ascii_hexdigit()));
    decimal_ok && hex_ok
}
