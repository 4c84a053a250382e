//! Fuzzes what the bridge does with a FETCH response describing a message: the summary of
//! a listing (`summary_from_fetch`: FLAGS, INTERNALDATE, ENVELOPE with its RFC 2047 words,
//! addresses and dates, BODYSTRUCTURE) and the MIME walk that picks body parts and
//! attachments (`walk`). The server writes these, but from the bytes of messages anyone can
//! send, so the structure is as hostile as the mail.
//!
//! The input is the inside of a FETCH response, `UID 5 BODYSTRUCTURE (...)`; it is wrapped
//! as `* 1 FETCH (<input>)\r\n` and parsed with imap-proto, as async-imap does.
//!
//! Properties: nothing panics; a walk stays within its `WalkLimits` or fails; every part id
//! a walk returns is a section number `PartId::parse` accepts (the message view fetches body
//! parts by it and downloads take it back from callers), with no more components than
//! `max_depth`; no part is listed twice; summaries keep their UID and drop `\Recent`.

#![no_main]

use std::collections::HashSet;

use imap_bridge::imap::encode::PartId;
use imap_bridge::mail::structure::{MessageParts, WalkLimits, walk};
use imap_bridge::mail::summary_from_fetch;
use imap_proto::{AttributeValue, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    // imap-proto 0.17.0 panics on `INTERNALDATE NIL` (an `unwrap` in rfc3501/mod.rs), which
    // RFC 3501 does not allow but some servers send; that is its bug, not ours, so such
    // inputs are left out here to let the search go on.
    if data
        .windows(16)
        .any(|w| w.eq_ignore_ascii_case(b"INTERNALDATE NIL"))
    {
        return;
    }
    // imap-proto parses nested lists recursively, so deep enough nesting overflows any stack
    // (about 350 levels fill a 2 MiB thread, 7,000 the 32 MiB main.rs gives its runtime).
    // Dovecot refuses MIME trees deeper than 100; the walk is bounded far below that.
    if paren_depth(data) > MAX_NESTING {
        return;
    }
    let mut line = Vec::with_capacity(data.len() + 16);
    line.extend_from_slice(b"* 1 FETCH (");
    line.extend_from_slice(data);
    line.extend_from_slice(b")\r\n");
    let Ok((_, Response::Fetch(_, attrs))) = Response::parse(&line) else {
        return;
    };

    let uid = attrs.iter().find_map(|attr| match attr {
        AttributeValue::Uid(uid) => Some(*uid),
        _ => None,
    });
    let summary = summary_from_fetch(&attrs);
    assert_eq!(summary.as_ref().map(|s| s.uid), uid);
    if let Some(summary) = &summary {
        assert!(
            !summary
                .flags
                .iter()
                .any(|f| f.eq_ignore_ascii_case("\\Recent"))
        );
    }

    for attr in &attrs {
        let AttributeValue::BodyStructure(structure) = attr else {
            continue;
        };
        let default = WalkLimits::default();
        let walked = walk(structure, &default);
        if let Some(summary) = &summary {
            assert_eq!(
                summary.has_attachments,
                walked.as_ref().is_ok_and(MessageParts::has_attachments)
            );
        }
        if let Ok(parts) = &walked {
            check_parts(parts, &default);
        }
        let tight = WalkLimits {
            max_depth: 2,
            max_parts: 5,
        };
        if let Ok(parts) = walk(structure, &tight) {
            check_parts(&parts, &tight);
        }
    }
}

/// Deepest list nesting fed to imap-proto: Dovecot's MIME depth limit, with room to spare.
const MAX_NESTING: usize = 200;

/// How deeply parentheses nest, counting those inside strings too (an overestimate).
fn paren_depth(data: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0;
    for &byte in data {
        match byte {
            b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn check_parts(parts: &MessageParts, limits: &WalkLimits) {
    assert!(parts.part_count <= limits.max_parts);
    let all: Vec<_> = parts
        .text_parts
        .iter()
        .chain(&parts.html_parts)
        .chain(&parts.attachments)
        .collect();
    assert!(all.len() <= parts.part_count);
    let mut seen = HashSet::new();
    for part in all {
        assert!(
            seen.insert(&part.part_id),
            "part {} listed twice",
            part.part_id
        );
        let id = PartId::parse(&part.part_id).unwrap_or_else(|e| {
            panic!(
                "walk produced part id {:?} ({} bytes) that PartId refuses: {e}",
                part.part_id,
                part.part_id.len()
            )
        });
        assert_eq!(id.as_str(), part.part_id);
        let depth = part.part_id.split('.').count();
        assert!(
            depth <= limits.max_depth,
            "part {} deeper than {}",
            part.part_id,
            limits.max_depth
        );
        let attachment = part.to_attachment();
        assert!(attachment.size <= u64::from(part.encoded_size));
        assert_eq!(part.content_type, part.content_type.to_ascii_lowercase());
    }
}
