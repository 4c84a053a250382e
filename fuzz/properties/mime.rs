//! Fuzzes what the bridge does with the bytes of a message, which anyone who can send mail
//! to a user controls: the header list (`parse_headers`), header text decoding (RFC 2047,
//! dates), body text decoding (`decode_text`: transfer encoding, then charset) and the
//! streaming transfer decoder used for downloads.
//!
//! The input is a raw message. Its header block (up to the first empty line) goes where
//! `BODY.PEEK[HEADER]` goes and its body where a part's `BODY.PEEK[n]` goes, decoded with the
//! charset and transfer encoding its headers declare (or ones picked from the input); the
//! parts of a multipart body, split at their boundary, are treated the same way.
//!
//! Properties: nothing panics; `parse_headers` keeps its documented bounds; decoding a body
//! in chunks, split anywhere, gives exactly the bytes decoding it whole gives; decoded
//! transfer encodings (uuencode included) are never longer than their input; the decoded size
//! a base64 part's ends announce is the size decoding it gives. Time and memory are bounded by the
//! runner (`-timeout`, `-rss_limit_mb`, `-malloc_limit_mb` in `scripts/fuzz`).

use imap_bridge::mail::content::{MAX_HEADER_VALUE_LEN, MAX_HEADERS};
use imap_bridge::mail::structure::PROBE_LEN;
use imap_bridge::mail::structure::{BodyPart, TransferEncoding};
use imap_bridge::mail::summary::{parse_internal_date, parse_rfc2822_date};
use imap_bridge::mail::transfer::{TransferDecoder, decode_all, decoded_base64_len};
use imap_bridge::mail::{decode_header_text, decode_text, parse_headers};

/// Charsets tried when the message declares none: the ones real mail uses, stateful ones
/// (ISO-2022-JP, UTF-7) and multi-byte ones included, and one nobody knows.
const CHARSETS: &[&str] = &[
    "utf-8",
    "us-ascii",
    "iso-8859-1",
    "iso-8859-7",
    "windows-1252",
    "koi8-r",
    "iso-2022-jp",
    "shift_jis",
    "euc-jp",
    "gb2312",
    "gb18030",
    "big5",
    "euc-kr",
    "utf-7",
    "utf-16",
    "utf-16le",
    "utf-16be",
    "x-no-such-charset",
];

/// Most entities (the message and its MIME parts) looked at per input.
const MAX_ENTITIES: usize = 64;

/// Checks the properties above on one input; panics when one breaks.
pub fn run(data: &[u8]) {
    // The message, then each part of each multipart, as the message view fetches them.
    let mut pending = vec![data];
    let mut seen = 0;
    while let Some(entity) = pending.pop() {
        seen += 1;
        if seen > MAX_ENTITIES {
            break;
        }
        pending.extend(entity_text(entity));
    }

    // Downloads decode in chunks that can split anywhere; chunk sizes come from the input
    // so that the fuzzer can steer them.
    let sizes: Vec<usize> = data
        .iter()
        .take(64)
        .map(|&b| usize::from(b % 16) + 1)
        .chain([1, 3, 7])
        .collect();
    for encoding in [
        TransferEncoding::Base64,
        TransferEncoding::QuotedPrintable,
        TransferEncoding::UuEncode,
        TransferEncoding::Binary,
    ] {
        check_chunked_decoding(&encoding, data, &sizes);
    }
    check_base64_size(data);
}

/// The size a base64 part's ends announce is the size decoding the part gives, for the input
/// encoded as encoders write it: lines of one width (from the input) and one line break.
fn check_base64_size(data: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut chars = Vec::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let bytes = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let values = [
            bytes[0] >> 2,
            (bytes[0] << 4 | bytes[1] >> 4) & 0x3f,
            (bytes[1] << 2 | bytes[2] >> 6) & 0x3f,
            bytes[2] & 0x3f,
        ];
        for (index, value) in values.into_iter().enumerate() {
            chars.push(if index <= group.len() {
                ALPHABET[usize::from(value)]
            } else {
                b'='
            });
        }
    }
    let width = 1 + usize::from(data.first().copied().unwrap_or(0)) % 100;
    let line_break: &[u8] = if data.len().is_multiple_of(2) {
        b"\r\n"
    } else {
        b"\n"
    };
    let mut encoded = Vec::new();
    for line in chars.chunks(width) {
        encoded.extend_from_slice(line);
        encoded.extend_from_slice(line_break);
    }
    let probe = PROBE_LEN as usize;
    let head = &encoded[..encoded.len().min(probe)];
    let tail = &encoded[encoded.len().saturating_sub(probe)..];
    if let Some(size) = decoded_base64_len(encoded.len() as u64, head, tail) {
        assert_eq!(
            size,
            decode_all(&TransferEncoding::Base64, &encoded).len() as u64,
            "lines of {width}"
        );
        assert_eq!(size, data.len() as u64, "lines of {width}");
    }
}

/// Decodes one entity's headers and body text; returns the parts of a multipart body.
fn entity_text(entity: &[u8]) -> Vec<&[u8]> {
    let body_start = find(entity, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| find(entity, b"\n\n").map(|i| i + 2))
        .unwrap_or(entity.len());
    let (header_block, body) = entity.split_at(body_start);

    let headers = parse_headers(header_block);
    check_headers(&headers);
    // A server may hand over more than the header block; the parser must stop by itself.
    check_headers(&parse_headers(entity));

    let _ = decode_header_text(header_block);
    let first_line = header_block
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    let _ = parse_rfc2822_date(first_line);
    let _ = parse_internal_date(&String::from_utf8_lossy(first_line));

    let mut charset = None;
    let mut encoding = None;
    let mut boundary = None;
    for header in &headers {
        if header.name.eq_ignore_ascii_case("Date") {
            let _ = parse_rfc2822_date(header.value.as_bytes());
        } else if header.name.eq_ignore_ascii_case("Content-Type") {
            charset = parameter(&header.value, "charset");
            boundary = parameter(&header.value, "boundary");
        } else if header
            .name
            .eq_ignore_ascii_case("Content-Transfer-Encoding")
        {
            encoding = Some(transfer_encoding(&header.value));
        }
    }
    let pick = usize::from(body.first().copied().unwrap_or(0));
    let charset = charset.unwrap_or_else(|| CHARSETS[pick % CHARSETS.len()].to_owned());
    let encoding = encoding.unwrap_or_else(|| {
        [
            TransferEncoding::QuotedPrintable,
            TransferEncoding::Base64,
            TransferEncoding::SevenBit,
            TransferEncoding::UuEncode,
        ][pick % 4]
            .clone()
    });
    for content_type in ["text/plain", "text/html"] {
        let part = BodyPart {
            content_type: content_type.to_owned(),
            charset: Some(charset.clone()),
            ..part_for(encoding.clone())
        };
        let _ = decode_text(body, &part);
    }
    let _ = decode_text(body, &part_for(encoding));

    match boundary {
        Some(boundary) if !boundary.is_empty() && boundary.len() <= 200 => {
            split_multipart(body, boundary.as_bytes())
        }
        _ => Vec::new(),
    }
}

/// The parts of a multipart body (RFC 2046 §5.1.1), leniently: what lies between one
/// `--boundary` line and the next, up to the closing `--boundary--`.
fn split_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let mut parts = Vec::new();
    let mut rest = body;
    let Some(first) = find(rest, &delimiter) else {
        return parts;
    };
    rest = &rest[first + delimiter.len()..];
    while !rest.starts_with(b"--") {
        let Some(line_end) = rest.iter().position(|&b| b == b'\n') else {
            break;
        };
        rest = &rest[line_end + 1..];
        let end = find(rest, &delimiter).unwrap_or(rest.len());
        parts.push(&rest[..end]);
        if end == rest.len() {
            break;
        }
        rest = &rest[end + delimiter.len()..];
    }
    parts
}

fn check_headers(headers: &[imap_bridge::mail::Header]) {
    assert!(headers.len() <= MAX_HEADERS, "{} headers", headers.len());
    for header in headers {
        assert!(
            header.value.len() <= MAX_HEADER_VALUE_LEN,
            "header value of {} bytes",
            header.value.len()
        );
    }
}

fn check_chunked_decoding(encoding: &TransferEncoding, input: &[u8], sizes: &[usize]) {
    let whole = decode_all(encoding, input);
    assert!(
        whole.len() <= input.len(),
        "{encoding:?} decoded {} bytes to {}",
        input.len(),
        whole.len()
    );
    let mut decoder = TransferDecoder::new(encoding);
    let mut chunked = Vec::new();
    let mut rest = input;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        decoder.decode_chunk(chunk, &mut chunked);
        rest = tail;
    }
    decoder.finish(&mut chunked);
    assert!(
        whole == chunked,
        "{encoding:?}: chunked decoding differs from whole decoding"
    );
}

fn part_for(encoding: TransferEncoding) -> BodyPart {
    BodyPart {
        part_id: "1".to_owned(),
        content_type: "text/plain".to_owned(),
        charset: None,
        encoding,
        encoded_size: 0,
        filename: None,
        content_id: None,
        inline: false,
        disposition: None,
        decoded_size: None,
        whole_body: false,
    }
}

fn transfer_encoding(value: &str) -> TransferEncoding {
    match value.trim().to_ascii_lowercase().as_str() {
        "7bit" => TransferEncoding::SevenBit,
        "8bit" => TransferEncoding::EightBit,
        "binary" => TransferEncoding::Binary,
        "base64" => TransferEncoding::Base64,
        "quoted-printable" => TransferEncoding::QuotedPrintable,
        "x-uuencode" | "uuencode" | "x-uue" | "uue" => TransferEncoding::UuEncode,
        other => TransferEncoding::Other(other.to_owned()),
    }
}

/// A `name=value` parameter of a header value such as `text/plain; charset="utf-8"`.
fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
