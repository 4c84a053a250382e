//! Message content for display: the header list of a message and the text of its body
//! parts, decoded to UTF-8.

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{HeaderName, MessageParser};

use super::structure::BodyPart;
use super::summary::decode_header_text;
use super::transfer::decode_all;
use super::uuencode;

/// One header field, as the message view lists them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Header {
    /// Field name as written in the message.
    #[schema(example = "Subject")]
    pub name: String,
    /// Field value, unfolded and RFC 2047 decoded.
    #[schema(example = "Re: Q1 report — final figures")]
    pub value: String,
}

/// Most header fields [`parse_headers`] returns; the rest are dropped.
pub const MAX_HEADERS: usize = 500;

/// Longest header value, in bytes, [`parse_headers`] returns; longer ones are truncated.
pub const MAX_HEADER_VALUE_LEN: usize = 64 * 1024;

/// Most raw bytes of one value decoded, so that a huge header costs bounded work.
/// Decoding shrinks text to no less than a third (Q-encoding's `=XX`), so unless the value
/// is mostly folding whitespace this drops nothing the decoded limit would keep.
const MAX_RAW_HEADER_VALUE_LEN: usize = 4 * MAX_HEADER_VALUE_LEN;

/// Splits a raw header block (as from `BODY.PEEK[HEADER]`) into fields, in message order,
/// duplicates kept.
///
/// Names are as written; values are unfolded and RFC 2047 decoded, with undeclared 8-bit
/// text read as UTF-8 when it is valid UTF-8 and as windows-1252 otherwise. At most
/// [`MAX_HEADERS`] fields are returned, each value at most [`MAX_HEADER_VALUE_LEN`] bytes.
/// mbox `From ` lines before the first field are skipped, as are other lines that are not
/// header fields; parsing stops at the first empty line.
pub fn parse_headers(raw_header_block: &[u8]) -> Vec<Header> {
    raw_fields(raw_header_block)
        .into_iter()
        .map(|(name, value)| {
            let value = value.get(..MAX_RAW_HEADER_VALUE_LEN).unwrap_or(value);
            let mut value = decode_header_text(value);
            value.truncate(value.floor_char_boundary(MAX_HEADER_VALUE_LEN));
            Header {
                name: utf8_or_windows_1252(name).trim().to_owned(),
                value,
            }
        })
        .take(MAX_HEADERS)
        .collect()
}

/// The fields of a raw header block as (name, raw value) pairs, in message order: the value
/// is the folded text after the colon, undecoded. mbox `From ` envelope lines at the start,
/// which mbox exports and some delivery agents leave in, are no fields and are skipped.
pub(crate) fn raw_fields(raw_header_block: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut block = raw_header_block;
    while block.starts_with(b"From ") {
        match block.iter().position(|&byte| byte == b'\n') {
            Some(end) => block = &block[end + 1..],
            None => return Vec::new(),
        }
    }
    // Registering one header makes mail-parser use the configured default, raw, for all
    // the others too: every field then ends where its folded lines end, whatever its
    // syntax, and the values are decoded by the caller uniformly from the raw bytes.
    let parser = MessageParser::new()
        .default_header_raw()
        .header_raw(HeaderName::Subject);
    let Some(message) = parser.parse_headers(block) else {
        return Vec::new();
    };
    message
        .headers()
        .iter()
        .filter_map(|field| {
            let name_start = usize::try_from(field.offset_field()).ok()?;
            let value_start = usize::try_from(field.offset_start()).ok()?;
            let value_end = usize::try_from(field.offset_end()).ok()?;
            let name = block.get(name_start..value_start)?;
            let name = name.strip_suffix(b":").unwrap_or(name);
            Some((name, block.get(value_start..value_end)?))
        })
        .collect()
}

/// The raw value (the folded text after the colon) of the first field named `name` in a
/// header block, by a linear scan: cheaper than [`raw_fields`] where a listing needs a few
/// fields of every message.
pub(crate) fn first_field<'a>(header_block: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let line_end = |from: usize| {
        header_block[from..]
            .iter()
            .position(|&byte| byte == b'\n')
            .map_or(header_block.len(), |at| from + at + 1)
    };
    let mut position = 0;
    while position < header_block.len() {
        let end = line_end(position);
        let line = &header_block[position..end];
        if line.trim_ascii().is_empty() {
            return None;
        }
        if !matches!(line[0], b' ' | b'\t')
            && let Some(colon) = line.iter().position(|&byte| byte == b':')
            && line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
        {
            let mut value_end = end;
            while matches!(header_block.get(value_end), Some(b' ' | b'\t')) {
                value_end = line_end(value_end);
            }
            return Some(&header_block[position + colon + 1..value_end]);
        }
        position = end;
    }
    None
}

/// Decodes a text part's raw bytes, as returned by `BODY.PEEK[<part_id>]`, to UTF-8:
/// undoes the transfer encoding, then converts from the part's charset.
///
/// An unknown charset is read as UTF-8 with invalid bytes replaced. A byte order mark is
/// dropped. `text/plain` has its CRLF line ends turned into `\n`, and its uuencoded files
/// left out: they are listed as attachments
/// ([`MessageParts::add_embedded_files`](super::structure::MessageParts::add_embedded_files)).
pub fn decode_text(raw_part: &[u8], part: &BodyPart) -> String {
    let bytes = decode_all(&part.encoding, raw_part);
    let text = decode_charset(part.charset.as_deref(), &bytes);
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    };
    if part.content_type != "text/plain" {
        return text;
    }
    let blocks = uuencode::find_blocks(text.as_bytes());
    let text = if blocks.is_empty() {
        text
    } else {
        uuencode::without_blocks(&text, &blocks)
    };
    text.replace("\r\n", "\n")
}

/// Converts `bytes` in `charset` to UTF-8 with mail-parser's decoders.
///
/// Without a charset, or with US-ASCII, which mailers often declare for 8-bit text, the
/// bytes are read as UTF-8 when they are valid UTF-8 and as windows-1252 otherwise (the
/// usual undeclared legacy charset, and a superset of ISO-8859-1). UTF-8, and any charset
/// mail-parser has no decoder for, reads as UTF-8 with invalid bytes replaced.
pub(crate) fn decode_charset(charset: Option<&str>, bytes: &[u8]) -> String {
    let label = charset
        .map(|charset| charset.trim().trim_matches('"').trim())
        .filter(|charset| !charset.is_empty());
    match label {
        None => utf8_or_windows_1252(bytes),
        Some(label)
            if label.eq_ignore_ascii_case("us-ascii") || label.eq_ignore_ascii_case("ascii") =>
        {
            utf8_or_windows_1252(bytes)
        }
        Some(label) => match charset_decoder(label.as_bytes()) {
            Some(decode) => decode(bytes),
            None => String::from_utf8_lossy(bytes).into_owned(),
        },
    }
}

/// Reads undeclared text as mail clients do: as UTF-8 when it is valid UTF-8, else as
/// windows-1252, the usual legacy charset and a superset of ISO-8859-1's printable range.
pub(crate) fn utf8_or_windows_1252(bytes: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return text.to_owned();
    }
    match charset_decoder(b"windows-1252") {
        Some(decode) => decode(bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::structure::TransferEncoding;

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    fn text_part(
        content_type: &str,
        charset: Option<&str>,
        encoding: TransferEncoding,
    ) -> BodyPart {
        BodyPart {
            part_id: "1".into(),
            content_type: content_type.into(),
            charset: charset.map(str::to_owned),
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

    #[test]
    fn headers_in_order_with_duplicates_decoded_and_unfolded() {
        let raw = concat!(
            "Received: from mx.example.org by imap.example.com;\r\n",
            "\tFri, 01 Mar 2024 10:15:02 +0000\r\n",
            "Received: from sender.example.com by mx.example.org;\r\n",
            " Fri, 01 Mar 2024 10:15:01 +0000\r\n",
            "From: =?UTF-8?Q?Zo=C3=AB_Martin?= <zoe.martin@example.com>\r\n",
            "SUBJECT: =?ISO-2022-JP?B?GyRCMnE1RCROO3FOQRsoQg==?=\r\n",
            "X-Microsoft-Antispam-Mailbox-Delivery: ucf:0;jmr:0\r\n",
            "x-empty:\r\n",
            "Content-Type: text/plain; charset=\"utf-8\"\r\n",
            "\r\n",
            "Body: not a header\r\n",
        );
        assert_eq!(
            parse_headers(raw.as_bytes()),
            vec![
                header(
                    "Received",
                    "from mx.example.org by imap.example.com; Fri, 01 Mar 2024 10:15:02 +0000"
                ),
                header(
                    "Received",
                    "from sender.example.com by mx.example.org; Fri, 01 Mar 2024 10:15:01 +0000"
                ),
                header("From", "Zoë Martin <zoe.martin@example.com>"),
                header("SUBJECT", "会議の資料"),
                header("X-Microsoft-Antispam-Mailbox-Delivery", "ucf:0;jmr:0"),
                header("x-empty", ""),
                header("Content-Type", "text/plain; charset=\"utf-8\""),
            ]
        );
    }

    #[test]
    fn headers_tolerate_bare_lf_missing_blank_line_and_junk() {
        let raw = b"To: a@example.com\nthis line has no colon\nSubject: caf\xc3\xa9\n  au lait";
        assert_eq!(
            parse_headers(raw),
            vec![
                header("To", "a@example.com"),
                header("Subject", "café au lait"),
            ]
        );
        assert!(parse_headers(b"").is_empty());
        assert!(parse_headers(b"\r\n").is_empty());
    }

    #[test]
    fn mbox_from_lines_are_no_header_fields() {
        let raw = b"From sender@example.com Mon Mar  4 10:00:00 2024\r\nFrom MAILER-DAEMON\r\nFrom: a@example.com\r\nSubject: x\r\n\r\n";
        assert_eq!(
            parse_headers(raw),
            vec![header("From", "a@example.com"), header("Subject", "x")]
        );
        // Only before the first field: later, `From ` is a malformed line like any other.
        assert_eq!(
            parse_headers(b"Subject: x\r\nFrom y\r\n\r\n"),
            vec![header("Subject", "x")]
        );
        assert!(parse_headers(b"From nobody").is_empty());
    }

    #[test]
    fn undeclared_8bit_fields_read_as_utf8_or_windows_1252() {
        let raw = b"X-Mailer: M\xfcller Mail\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\nX-N\xe4me: \x93q\x94\r\n\r\n";
        assert_eq!(
            parse_headers(raw),
            vec![
                header("X-Mailer", "Müller Mail"),
                header("Subject", "Grüße"),
                header("X-Näme", "“q”"),
            ]
        );
    }

    #[test]
    fn first_field_finds_folded_values() {
        let block = b"From sender@example.com Mon Mar  4 10:00:00 2024\r\nSubject: one\r\n two\r\nTO:\ta@example.com,\r\n\tb@example.com\r\nsubject: second\r\n\r\nCc: not a field\r\n";
        assert_eq!(
            first_field(block, "Subject"),
            Some(&b" one\r\n two\r\n"[..])
        );
        assert_eq!(
            first_field(block, "To"),
            Some(&b"\ta@example.com,\r\n\tb@example.com\r\n"[..])
        );
        assert_eq!(first_field(block, "From"), None);
        assert_eq!(first_field(block, "Cc"), None);
        assert_eq!(first_field(b"X-Empty:", "X-Empty"), Some(&b""[..]));
        assert_eq!(first_field(b"", "To"), None);
    }

    #[test]
    fn headers_are_bounded() {
        let mut raw = String::new();
        for index in 0..MAX_HEADERS + 20 {
            raw.push_str(&format!("X-Count: {index}\r\n"));
        }
        let headers = parse_headers(raw.as_bytes());
        assert_eq!(headers.len(), MAX_HEADERS);
        assert_eq!(
            headers[MAX_HEADERS - 1].value,
            (MAX_HEADERS - 1).to_string()
        );

        let long = format!("X-Long: {}\r\n\r\n", "é".repeat(MAX_HEADER_VALUE_LEN));
        let headers = parse_headers(long.as_bytes());
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].value.len(), MAX_HEADER_VALUE_LEN);
        assert!(headers[0].value.chars().all(|c| c == 'é'));
    }

    #[test]
    fn decodes_quoted_printable_utf8_plain_text() {
        let part = text_part(
            "text/plain",
            Some("utf-8"),
            TransferEncoding::QuotedPrintable,
        );
        assert_eq!(
            decode_text(
                b"Caf=C3=A9 cr=C3=A8me =\r\nbr=C3=BBl=C3=A9e\r\nSecond line\r\n",
                &part
            ),
            "Café crème brûlée\nSecond line\n"
        );
    }

    #[test]
    fn decodes_legacy_charsets() {
        let cases: [(&str, &[u8], &str); 5] = [
            (
                "ISO-2022-JP",
                b"GyRCMnE1RCRPTEBGfCRHJDkhIxsoQg0KGyRCJGgkbSQ3JC8bKEI=",
                "会議は明日です。\nよろしく",
            ),
            ("Shift_JIS", b"grGC8YLJgr+CzYFBkKKKRQ==", "こんにちは、世界"),
            ("GB18030", b"xOO6w6OsysC95w==", "你好，世界"),
            ("KOI8-R", b"5M/C0tnKIMTFztg=", "Добрый день"),
            ("windows-1251", b"z/Do4uXyLCDs6PA=", "Привет, мир"),
        ];
        for (charset, encoded, expected) in cases {
            let part = text_part("text/plain", Some(charset), TransferEncoding::Base64);
            assert_eq!(decode_text(encoded, &part), expected, "{charset}");
        }
    }

    #[test]
    fn charset_fallbacks() {
        let unknown = text_part(
            "text/plain",
            Some("x-no-such-charset"),
            TransferEncoding::EightBit,
        );
        assert_eq!(decode_text(b"caf\xc3\xa9 \xff", &unknown), "café \u{fffd}");

        let undeclared = text_part("text/plain", None, TransferEncoding::EightBit);
        assert_eq!(decode_text(b"caf\xc3\xa9", &undeclared), "café");
        assert_eq!(decode_text(b"caf\xe9 \x80", &undeclared), "café €");

        let ascii = text_part("text/plain", Some("us-ascii"), TransferEncoding::SevenBit);
        assert_eq!(decode_text(b"na\xc3\xafve", &ascii), "naïve");

        let quoted = text_part(
            "text/plain",
            Some("\"ISO-8859-1\""),
            TransferEncoding::EightBit,
        );
        assert_eq!(decode_text(b"\xe9t\xe9", &quoted), "été");
    }

    #[test]
    fn uuencoded_files_are_left_out_of_the_text() {
        let raw =
            b"Here is the photo:\r\n\r\nbegin 644 cat.txt\r\n#0V%T\r\n`\r\nend\r\n\r\nCheers\r\n";
        let plain = text_part("text/plain", Some("us-ascii"), TransferEncoding::SevenBit);
        assert_eq!(decode_text(raw, &plain), "Here is the photo:\n\n\nCheers\n");
        // Not in HTML, and not without its end line.
        let html = text_part("text/html", Some("us-ascii"), TransferEncoding::SevenBit);
        assert_eq!(decode_text(raw, &html), String::from_utf8_lossy(raw));
        let prose = b"begin 644 is the mode\r\nsee you\r\n";
        assert_eq!(
            decode_text(prose, &plain),
            "begin 644 is the mode\nsee you\n"
        );
    }

    #[test]
    fn html_keeps_line_ends_and_bom_is_dropped() {
        let html = text_part("text/html", Some("utf-8"), TransferEncoding::SevenBit);
        assert_eq!(
            decode_text(b"\xef\xbb\xbf<p>Hi</p>\r\n<p>there</p>\r\n", &html),
            "<p>Hi</p>\r\n<p>there</p>\r\n"
        );
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let encodings = [
            TransferEncoding::Base64,
            TransferEncoding::QuotedPrintable,
            TransferEncoding::SevenBit,
        ];
        for (index, input) in crate::mail::summary::tests::arbitrary_inputs(3000)
            .into_iter()
            .enumerate()
        {
            parse_headers(&input);
            let encoding = encodings[index % encodings.len()].clone();
            for charset in [None, Some("iso-2022-jp"), Some("utf-16"), Some("utf-7")] {
                decode_text(&input, &text_part("text/plain", charset, encoding.clone()));
            }
        }
    }
}
