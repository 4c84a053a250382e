//! Fuzzes the upstream guard (`imap::guard`) together with the parser behind it, on what an
//! IMAP server sends: the input is a server's byte stream, arriving in reads whose sizes come
//! from the input's first bytes.
//!
//! As in the bridge, each read passes the guard before async-imap appends it to its buffer and
//! asks imap-proto for the responses in it; a read the guard refuses is never handed on, and
//! the stream ends there.
//!
//! Properties: the guard's verdict does not depend on how the stream is split into reads (it
//! is checked against one read of the whole stream); and whatever the guard hands on, read
//! by read, imap-proto parses without overflowing the stack, response by response, each time
//! more bytes arrive. A panic of imap-proto is contained, as the bridge contains it (502 and
//! a discarded session); the guard keeps the ones known (`INTERNALDATE NIL`, a byte beyond
//! ASCII after a response code) from reaching the parser at all, which its unit tests check.

use imap_bridge::imap::guard::{GuardLimits, MAX_NESTING, ResponseScanner};

use crate::contained::parse_contained;

/// Limits small enough for the fuzzer's inputs (at most 64 KiB) to reach them.
const LIMITS: GuardLimits = GuardLimits {
    max_literal: 4096,
    max_line: 8192,
    max_depth: MAX_NESTING,
};

/// Checks the properties above on one input; panics when one breaks.
pub fn run(data: &[u8]) {
    let (sizes, stream) = data.split_at(data.len().min(8));
    let reads = || {
        let mut rest = stream;
        sizes
            .iter()
            .map(|&s| usize::from(s % 64) + 1)
            .cycle()
            .map_while(move |size| {
                let (read, tail) = rest.split_at(size.min(rest.len()));
                rest = tail;
                (!read.is_empty()).then_some(read)
            })
    };

    let whole = ResponseScanner::new(LIMITS).scan(stream);
    let mut scanner = ResponseScanner::new(LIMITS);
    let split = reads().try_for_each(|read| scanner.scan(read));
    assert_eq!(
        split, whole,
        "the verdict depends on how the stream is split"
    );

    // What the bridge does: guard each read, then parse what has arrived, response by
    // response (an error ends nothing here: the same bytes fail the same way next time).
    let mut scanner = ResponseScanner::new(LIMITS);
    let mut buffer: Vec<u8> = Vec::new();
    for read in reads() {
        if scanner.scan(read).is_err() {
            break;
        }
        buffer.extend_from_slice(read);
        while let Some((used, _)) = parse_contained(&buffer) {
            buffer.drain(..used);
        }
    }
}
