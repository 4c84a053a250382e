//! What the bridge does with imap-proto's panics, shared by the properties that parse server
//! responses (each crate that includes them declares it at its root as `mod contained`).

use imap_proto::Response;

/// `Response::parse` as the bridge runs it: a panic in imap-proto is contained there (the
/// request gets 502, the session is discarded), so it is not a finding here and is kept
/// quiet; a stack overflow is not contained, and still ends the run.
pub fn parse_contained(bytes: &[u8]) -> Option<(usize, Response<'_>)> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let parsed = std::panic::catch_unwind(|| Response::parse(bytes));
    std::panic::set_hook(hook);
    let (rest, response) = parsed.ok()?.ok()?;
    Some((bytes.len() - rest.len(), response))
}
