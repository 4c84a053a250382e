//! Fuzzes what the bridge does with a FETCH response describing a message: the summary of
//! a listing (`summary_from_fetch`: FLAGS, INTERNALDATE, ENVELOPE with its RFC 2047 words,
//! addresses and dates, BODYSTRUCTURE) and the MIME walk that picks body parts and
//! attachments (`walk`). The server writes these, but from the bytes of messages anyone can
//! send, so the structure is as hostile as the mail.
//!
//! The input is the inside of a FETCH response, `UID 5 BODYSTRUCTURE (...)`; it is wrapped
//! as `* 1 FETCH (<input>)\r\n` and, as in the bridge, first checked by the upstream guard
//! (`imap::guard`) with its default limits, then parsed with imap-proto as async-imap does.
//! What the guard refuses ends there, as such a response ends its session in the bridge:
//! `INTERNALDATE NIL` (imap-proto 0.17 panics on it) and nesting deeper than 128 levels
//! (imap-proto recurses once per level and would overflow the stack). A panic of imap-proto
//! on what the guard lets through is contained, as the bridge contains it.
//!
//! Properties: nothing panics; a walk stays within its `WalkLimits` or fails; every part id
//! a walk returns is a section number `PartId::parse` accepts (the message view fetches body
//! parts by it and downloads take it back from callers), with no more components than
//! `max_depth`; no part is listed twice; summaries keep their UID and drop `\Recent`.

use std::collections::HashSet;

use imap_bridge::imap::encode::PartId;
use imap_bridge::imap::guard::{GuardLimits, ResponseScanner};
use imap_bridge::mail::structure::{MessageParts, WalkLimits, walk};
use imap_bridge::mail::summary_from_fetch;
use imap_proto::{AttributeValue, Response};

use crate::contained::parse_contained;

/// Checks the properties above on one input; panics when one breaks.
pub fn run(data: &[u8]) {
    let mut line = Vec::with_capacity(data.len() + 16);
    line.extend_from_slice(b"* 1 FETCH (");
    line.extend_from_slice(data);
    line.extend_from_slice(b")\r\n");
    if ResponseScanner::new(GuardLimits::default())
        .scan(&line)
        .is_err()
    {
        return;
    }
    let Some((_, Response::Fetch(_, attrs))) = parse_contained(&line) else {
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
