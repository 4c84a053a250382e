//! Downloads: `GET …/messages/{uid}/raw` and `GET …/messages/{uid}/attachments/{part_id}`.
//!
//! Bodies are streamed from the IMAP server in partial fetches of [`CHUNK`] bytes, so a 25 MB
//! attachment never sits whole in memory. Both carry a strong ETag (the content of a UID is
//! immutable for a given UIDVALIDITY), honour `If-None-Match`, `If-Range` and single
//! `Range`s, and are sent as attachments with `nosniff` and a sandboxing CSP, so nothing
//! downloaded can run as a page of the bridge's origin.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiPath, AuthUser};
use super::schema::{BinarySchema, MailboxNameSchema, PartIdSchema, UidSchema};
use crate::imap::Session;
use crate::imap::encode::{MailboxName, PartId};
use crate::mail::structure::{BodyPart, TransferEncoding};
use crate::mail::transfer::TransferDecoder;
use crate::telemetry::names;

/// Bytes read from the IMAP server per partial fetch.
pub const CHUNK: u32 = 256 * 1024;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(raw_message))
        .routes(routes!(attachment))
}

/// The message exactly as the server stores it.
#[utoipa::path(
    get,
    path = "/v1/mailboxes/{mailbox}/messages/{uid}/raw",
    tag = "messages",
    security(("bearer" = [])),
    params(
        ("mailbox" = MailboxNameSchema, Path, description = "Full mailbox name, percent-encoded as one path segment."),
        ("uid" = UidSchema, Path, description = "The message's UID."),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier download."),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=1000-`."),
        ("If-Range" = Option<String>, Header, description = "Honour `Range` only if the content still has this ETag; otherwise the whole content is sent."),
    ),
    responses(
        (status = 200, description = "The message (`message/rfc822`), as `message-<uid>.eml`.", content_type = "message/rfc822", body = BinarySchema, headers(
            ("ETag" = String, description = "Strong validator of this content: `\"<uid_validity>-<uid>[-<part_id>]\"`."),
            ("Content-Disposition" = String, description = "Always `attachment`, with the file name as `filename=` (ASCII) and `filename*=UTF-8''…` (RFC 6266)."),
            ("X-Content-Type-Options" = String, description = "`nosniff`."),
            ("Content-Security-Policy" = String, description = "`default-src 'none'; sandbox`: opened directly, the content can run no script and load nothing."),
        )),
        (status = 206, description = "The requested range.", content_type = "message/rfc822", body = BinarySchema, headers(
            ("ETag" = String, description = "Strong validator of this content: `\"<uid_validity>-<uid>[-<part_id>]\"`."),
            ("Content-Disposition" = String, description = "Always `attachment`, with the file name as `filename=` (ASCII) and `filename*=UTF-8''…` (RFC 6266)."),
            ("X-Content-Type-Options" = String, description = "`nosniff`."),
            ("Content-Security-Policy" = String, description = "`default-src 'none'; sandbox`: opened directly, the content can run no script and load nothing."),
        )),
        (status = 304, description = "Not modified (the ETag matches)."),
        (status = 400, description = "Bad mailbox name or UID (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox or message (`mailbox_not_found`, `message_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range lies outside the message (`range_not_satisfiable`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server answered unexpectedly (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn raw_message(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((mailbox, uid)): ApiPath<(String, u32)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let name = MailboxName::new(&mailbox)?;
    if uid == 0 {
        return Err(ApiError::invalid("UIDs start at 1."));
    }
    let mut session = user.session(&state).await?;
    let (uid_validity, size) = session.message_size(&name, uid).await?;
    let etag = format!("\"{uid_validity}-{uid}\"");
    if matches_etag(&headers, &etag) {
        return Ok(not_modified(&etag));
    }
    let size = u64::from(size);
    let range = requested_range(&headers, &etag, size)?;
    let (start, end) = range.unwrap_or((0, size));
    let body = stall_guarded(
        section_stream(session, uid, None, start, end),
        state.config.download_stall_timeout(),
    );
    let mut response = download_response(body, range.map(|r| (r, size)), Some(end - start));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("message/rfc822"),
    );
    h.insert(header::ETAG, header_value(&etag));
    h.insert(
        header::CONTENT_DISPOSITION,
        disposition(&format!("message-{uid}.eml")),
    );
    Ok(response)
}

/// One attachment (or any body part), decoded from its transfer encoding.
#[utoipa::path(
    get,
    path = "/v1/mailboxes/{mailbox}/messages/{uid}/attachments/{part_id}",
    tag = "messages",
    security(("bearer" = [])),
    params(
        ("mailbox" = MailboxNameSchema, Path, description = "Full mailbox name, percent-encoded as one path segment."),
        ("uid" = UidSchema, Path, description = "The message's UID."),
        ("part_id" = PartIdSchema, Path, description = "The part's `part_id` from the message view (IMAP section number, e.g. `2` or `1.2`)."),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier download."),
        ("Range" = Option<String>, Header, description = "One byte range of the decoded content, e.g. `bytes=0-1023`."),
        ("If-Range" = Option<String>, Header, description = "Honour `Range` only if the content still has this ETag; otherwise the whole content is sent."),
    ),
    responses(
        (status = 200, description = "The decoded content, with the part's own Content-Type (`application/pdf`, `image/png`, `text/plain; charset=utf-8`…).", content_type = "*/*", body = BinarySchema, headers(
            ("ETag" = String, description = "Strong validator of this content: `\"<uid_validity>-<uid>[-<part_id>]\"`."),
            ("Content-Disposition" = String, description = "Always `attachment`, with the file name as `filename=` (ASCII) and `filename*=UTF-8''…` (RFC 6266)."),
            ("X-Content-Type-Options" = String, description = "`nosniff`."),
            ("Content-Security-Policy" = String, description = "`default-src 'none'; sandbox`: opened directly, the content can run no script and load nothing."),
        )),
        (status = 206, description = "The requested range of the decoded content.", content_type = "*/*", body = BinarySchema, headers(
            ("ETag" = String, description = "Strong validator of this content: `\"<uid_validity>-<uid>[-<part_id>]\"`."),
            ("Content-Disposition" = String, description = "Always `attachment`, with the file name as `filename=` (ASCII) and `filename*=UTF-8''…` (RFC 6266)."),
            ("X-Content-Type-Options" = String, description = "`nosniff`."),
            ("Content-Security-Policy" = String, description = "`default-src 'none'; sandbox`: opened directly, the content can run no script and load nothing."),
        )),
        (status = 304, description = "Not modified (the ETag matches)."),
        (status = 400, description = "Bad mailbox name, UID or part id (`invalid_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`), or the IMAP server refused the OAuth access token it carries (`upstream_token_expired`: refresh it with `POST /v1/auth/refresh`).", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The message's MIME structure exceeds the bridge's limits (`forbidden`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox, message or part (`mailbox_not_found`, `message_not_found`, `part_not_found`).", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range lies outside the content (`range_not_satisfiable`).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The IMAP server answered unexpectedly (`upstream_rejected`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The IMAP server is unavailable (`upstream_unavailable`).", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The IMAP server timed out (`upstream_timeout`).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn attachment(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((mailbox, uid, part_id)): ApiPath<(String, u32, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let name = MailboxName::new(&mailbox)?;
    if uid == 0 {
        return Err(ApiError::invalid("UIDs start at 1."));
    }
    let part_ref = PartId::parse(&part_id)?;
    let mut session = user.session(&state).await?;
    let (uid_validity, _, parts) = session
        .message_structure(&name, uid, &state.walk_limits)
        .await?;
    let etag = format!("\"{uid_validity}-{uid}-{part_id}\"");
    let Some(part) = parts
        .attachments
        .iter()
        .chain(&parts.text_parts)
        .chain(&parts.html_parts)
        .find(|p| p.part_id == part_id)
        .cloned()
    else {
        let (text, index) = parts
            .embedded_file_part(&part_id)
            .ok_or_else(ApiError::part_not_found)?;
        if matches_etag(&headers, &etag) {
            return Ok(not_modified(&etag));
        }
        return embedded_file(&mut session, uid, text, index, &etag, &headers).await;
    };
    if matches_etag(&headers, &etag) {
        return Ok(not_modified(&etag));
    }

    let encoded_size = u64::from(part.encoded_size);
    let identity = part.encoding.is_identity();
    let wants_range = headers.contains_key(header::RANGE) && if_range_holds(&headers, &etag);
    let (body, range, length) = if identity {
        let range = requested_range(&headers, &etag, encoded_size)?;
        let (start, end) = range.unwrap_or((0, encoded_size));
        let body = stall_guarded(
            section_stream(session, uid, Some(part_ref), start, end),
            state.config.download_stall_timeout(),
        );
        (body, range.map(|r| (r, encoded_size)), Some(end - start))
    } else if wants_range {
        // The decoded length is only known after decoding: one counting pass (constant
        // memory) makes the range exact. Ranges are for resuming, so this is the rare path.
        let total =
            decoded_length(&mut session, uid, &part_ref, &part.encoding, encoded_size).await?;
        let range = requested_range(&headers, &etag, total)?;
        let (start, end) = range.unwrap_or((0, total));
        let body = stall_guarded(
            decoded_stream(
                session,
                uid,
                part_ref,
                part.encoding.clone(),
                encoded_size,
                (start, end),
            ),
            state.config.download_stall_timeout(),
        );
        (body, range.map(|r| (r, total)), Some(end - start))
    } else {
        let body = stall_guarded(
            decoded_stream(
                session,
                uid,
                part_ref,
                part.encoding.clone(),
                encoded_size,
                (0, u64::MAX),
            ),
            state.config.download_stall_timeout(),
        );
        (body, None, None)
    };
    let mut response = download_response(body, range, length);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type(&part));
    h.insert(header::ETAG, header_value(&etag));
    let filename = part
        .filename
        .clone()
        .unwrap_or_else(|| format!("part-{part_id}"));
    h.insert(header::CONTENT_DISPOSITION, disposition(&filename));
    Ok(response)
}

/// A uuencoded file inside a text part (`<text part>.<n>`, as the message view lists it):
/// the text part is read as the view reads it and the file decoded in memory (a text part is
/// at most `MAX_TEXT_PART` bytes).
async fn embedded_file(
    session: &mut Session,
    uid: u32,
    text: &BodyPart,
    index: usize,
    etag: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let raw = session.read_text_part(uid, text).await?;
    let file = crate::mail::uuencode::find_blocks(&crate::mail::transfer::decode_all(
        &text.encoding,
        &raw,
    ))
    .into_iter()
    .nth(index - 1)
    .ok_or_else(ApiError::part_not_found)?;
    let total = file.data.len() as u64;
    let range = requested_range(headers, etag, total)?;
    let (start, end) = range.unwrap_or((0, total));
    let content = file
        .data
        .get(usize::try_from(start).unwrap_or(usize::MAX)..usize::try_from(end).unwrap_or(0))
        .unwrap_or_default()
        .to_vec();
    let mut response = download_response(
        Body::from(content),
        range.map(|r| (r, total)),
        Some(end - start),
    );
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::mail::uuencode::media_type_of(&file.name)),
    );
    h.insert(header::ETAG, header_value(etag));
    h.insert(header::CONTENT_DISPOSITION, disposition(&file.name));
    Ok(response)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().trim_start_matches("W/"))
        .any(|v| v == etag || v == "*")
}

fn not_modified(etag: &str) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    response
        .headers_mut()
        .insert(header::ETAG, header_value(etag));
    response
}

/// Whether a `Range` may be honoured: there is no `If-Range`, or it names the current ETag
/// (RFC 9110 §13.1.5: strong comparison; a date never matches, as downloads carry no
/// `Last-Modified`).
fn if_range_holds(headers: &HeaderMap, etag: &str) -> bool {
    match headers.get(header::IF_RANGE) {
        None => true,
        Some(value) => value.to_str().is_ok_and(|v| v.trim() == etag),
    }
}

/// A single `bytes=` range of content of `size` bytes, as a half-open interval; `None` when
/// absent, not a single range (multi-range requests get the whole content, as RFC 9110
/// allows), or conditional on an `If-Range` that does not hold.
fn requested_range(headers: &HeaderMap, etag: &str, size: u64) -> ApiResult<Option<(u64, u64)>> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    if !if_range_holds(headers, etag) {
        return Ok(None);
    }
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Err(ApiError::range_not_satisfiable());
    };
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| ApiError::range_not_satisfiable())
    };
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        (false, true) => (parse(first)?, size),
        (false, false) => {
            let (a, b) = (parse(first)?, parse(last)?);
            if b < a {
                return Err(ApiError::range_not_satisfiable());
            }
            (a, b.saturating_add(1).min(size))
        }
        (true, false) => {
            let n = parse(last)?;
            if n == 0 {
                return Err(ApiError::range_not_satisfiable());
            }
            (size.saturating_sub(n), size)
        }
        (true, true) => return Err(ApiError::range_not_satisfiable()),
    };
    if start >= size {
        return Err(ApiError::range_not_satisfiable());
    }
    Ok(Some((start, end)))
}

fn download_response(
    body: Body,
    range: Option<((u64, u64), u64)>,
    length: Option<u64>,
) -> Response {
    let mut response = body.into_response();
    if let Some(((start, end), total)) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let last = end.saturating_sub(1);
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {start}-{last}/{total}")),
        );
    }
    let h = response.headers_mut();
    if let Some(length) = length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    response
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded` (RFC 6266).
fn disposition(filename: &str) -> HeaderValue {
    const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let cleaned: String = filename
        .chars()
        .map(|c| {
            if c.is_control() || c == '/' || c == '\\' {
                '_'
            } else {
                c
            }
        })
        .take(200)
        .collect();
    let ascii: String = cleaned
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = utf8_percent_encode(&cleaned, ATTR_CHAR);
    header_value(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
}

fn content_type(part: &BodyPart) -> HeaderValue {
    let is_token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let valid = part
        .content_type
        .split_once('/')
        .is_some_and(|(t, s)| is_token(t) && is_token(s));
    if !valid {
        return HeaderValue::from_static("application/octet-stream");
    }
    match &part.charset {
        Some(charset) if part.content_type.starts_with("text/") && is_token(charset) => {
            header_value(&format!("{}; charset={charset}", part.content_type))
        }
        _ => header_value(&part.content_type),
    }
}

/// Sends `content` to the client from a task of its own, one chunk ahead, so that a client
/// that stops reading cannot hold the IMAP session it comes from: when a chunk has waited
/// `stall` for the client to take the one before, the task stops, the session goes back to
/// the pool, and the response is cut off with an error (a client sees a body shorter than its
/// `Content-Length`). A client that goes away releases the session the same way, at once.
fn stall_guarded<S>(content: S, stall: Duration) -> Body
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(1);
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = stalled.clone();
    tokio::spawn(async move {
        let mut content = std::pin::pin!(content);
        while let Some(item) = content.next().await {
            let failed = item.is_err();
            match tx.send_timeout(item, stall).await {
                Ok(()) if !failed => {}
                Ok(()) | Err(SendTimeoutError::Closed(_)) => return,
                Err(SendTimeoutError::Timeout(_)) => {
                    tracing::warn!(
                        stall_ms = stall.as_millis() as u64,
                        "download stalled: the client took nothing for too long; its IMAP session is released"
                    );
                    metrics::counter!(names::DOWNLOADS_STALLED).increment(1);
                    flag.store(true, Ordering::Release);
                    return;
                }
            }
        }
    });
    let chunks = futures::stream::unfold(Some(rx), move |rx| {
        let stalled = stalled.clone();
        async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(item) => Some((item, Some(rx))),
                None if stalled.load(Ordering::Acquire) => Some((
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading the download",
                    )),
                    None,
                )),
                None => None,
            }
        }
    });
    Body::from_stream(chunks)
}

fn to_io(e: crate::imap::ImapError) -> io::Error {
    tracing::warn!(error = %e, "download interrupted");
    io::Error::other("the IMAP server stopped sending the content")
}

/// The bytes `[start, end)` of a section (`None` = the whole message), in partial fetches.
fn section_stream(
    session: Session,
    uid: u32,
    part: Option<PartId>,
    start: u64,
    end: u64,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    futures::stream::try_unfold((session, start), move |(mut session, offset)| {
        let part = part.clone();
        async move {
            if offset >= end {
                return Ok(None);
            }
            let len = u32::try_from((end - offset).min(u64::from(CHUNK))).unwrap_or(CHUNK);
            let at = u32::try_from(offset).map_err(|_| io::Error::other("offset beyond 4 GiB"))?;
            let chunk = session
                .read_section(uid, part.as_ref(), at, len)
                .await
                .map_err(to_io)?;
            if chunk.is_empty() {
                return Ok(None);
            }
            let next = offset + chunk.len() as u64;
            Ok(Some((Bytes::from(chunk), (session, next))))
        }
    })
}

struct Decoding {
    session: Session,
    decoder: Option<TransferDecoder>,
    encoded_offset: u64,
    decoded_offset: u64,
}

/// Length of a part after transfer decoding, by decoding it once without keeping it.
async fn decoded_length(
    session: &mut Session,
    uid: u32,
    part: &PartId,
    encoding: &TransferEncoding,
    encoded_size: u64,
) -> ApiResult<u64> {
    let mut decoder = TransferDecoder::new(encoding);
    let mut out = Vec::with_capacity(CHUNK as usize);
    let mut total = 0u64;
    let mut offset = 0u64;
    while offset < encoded_size {
        let at = u32::try_from(offset).map_err(|_| ApiError::range_not_satisfiable())?;
        let chunk = session.read_section(uid, Some(part), at, CHUNK).await?;
        offset += chunk.len() as u64;
        out.clear();
        decoder.decode_chunk(&chunk, &mut out);
        total += out.len() as u64;
        if chunk.len() < CHUNK as usize {
            break;
        }
    }
    out.clear();
    decoder.finish(&mut out);
    Ok(total + out.len() as u64)
}

/// A transfer-decoded part, cut to the decoded range `[start, end)`.
fn decoded_stream(
    session: Session,
    uid: u32,
    part: PartId,
    encoding: TransferEncoding,
    encoded_size: u64,
    (want_start, want_end): (u64, u64),
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let state = Decoding {
        session,
        decoder: Some(TransferDecoder::new(&encoding)),
        encoded_offset: 0,
        decoded_offset: 0,
    };
    futures::stream::try_unfold(state, move |mut st| {
        let part = part.clone();
        async move {
            loop {
                let Some(decoder) = st.decoder.as_mut() else {
                    return Ok(None);
                };
                if st.decoded_offset >= want_end {
                    return Ok(None);
                }
                let mut out = Vec::new();
                let finished = if st.encoded_offset >= encoded_size {
                    true
                } else {
                    let at = u32::try_from(st.encoded_offset)
                        .map_err(|_| io::Error::other("offset beyond 4 GiB"))?;
                    let chunk = st
                        .session
                        .read_section(uid, Some(&part), at, CHUNK)
                        .await
                        .map_err(to_io)?;
                    st.encoded_offset += chunk.len() as u64;
                    decoder.decode_chunk(&chunk, &mut out);
                    chunk.len() < CHUNK as usize
                };
                if finished && let Some(decoder) = st.decoder.take() {
                    decoder.finish(&mut out);
                }
                let from = st.decoded_offset;
                st.decoded_offset += out.len() as u64;
                let lo = want_start.saturating_sub(from).min(out.len() as u64) as usize;
                let hi = want_end.saturating_sub(from).min(out.len() as u64) as usize;
                if lo < hi {
                    out.truncate(hi);
                    out.drain(..lo);
                    return Ok(Some((Bytes::from(out), st)));
                }
                if st.decoder.is_none() {
                    return Ok(None);
                }
            }
        }
    })
}
