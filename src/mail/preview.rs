//! Previews: the first line or two of a message's readable text, as a mail list shows under
//! each subject.
//!
//! A preview is at most [`MAX_PREVIEW_CHARS`] characters of the message's own words: white
//! space collapsed, and what can be told apart cheaply from the start of the text left out —
//! the quoted message of a reply (lines starting with `>` and the "On … wrote:" line above
//! them, Outlook's "-----Original Message-----", an HTML `<blockquote>` or Gmail's and
//! Outlook's reply containers) and the signature after a `-- ` line. It comes from the
//! server's `PREVIEW` (RFC 8970) where offered, else from the first
//! [`PREVIEW_FETCH_BYTES`] of the first text part, decoded here.

use async_imap::imap_proto::BodyStructure;
use mail_parser::decoders::html::html_to_text;

use super::content::decode_charset;
use super::structure::{self, BodyPart, WalkLimits};
use super::transfer::decode_all;

/// Longest preview, in characters.
pub const MAX_PREVIEW_CHARS: usize = 200;

/// Bytes of the first text part read for a preview when the server has no PREVIEW: enough
/// for 200 characters of text after quoted-printable or base64, HTML markup, or a long
/// greeting line.
pub const PREVIEW_FETCH_BYTES: u32 = 2048;

/// The part a preview is read from when the server gives none: the first text/plain body
/// part, else the first text/html one (the parts a reader shows as the message's text). `None`
/// when the message has no readable text, or an empty one, so that its preview is empty
/// without reading anything; also for a structure beyond the default [`WalkLimits`], which
/// cannot be shown as a message either.
pub fn preview_part(structure: &BodyStructure<'_>) -> Option<BodyPart> {
    let parts = structure::walk(structure, &WalkLimits::default()).ok()?;
    parts
        .text_parts
        .into_iter()
        .next()
        .or_else(|| parts.html_parts.into_iter().next())
        .filter(|part| part.whole_body || part.encoded_size > 0)
}

/// A preview of `text` (plain text when `html` is false).
pub fn preview_of(text: &str, html: bool) -> String {
    let plain;
    let text = if html {
        plain = html_to_text(before_html_quote(text));
        plain.as_str()
    } else {
        text
    };
    collapse(own_words(text))
}

/// A preview of the start of a text part, `raw` being its first bytes as the server sent
/// them (transfer-encoded): a cut through a base64 group, a quoted-printable escape or a
/// multi-byte character at the end is dropped rather than shown as noise.
pub fn preview_of_part_start(raw: &[u8], part: &BodyPart, complete: bool) -> String {
    let raw = if complete {
        raw
    } else {
        match &part.encoding {
            super::structure::TransferEncoding::Base64 => whole_base64_groups(raw),
            super::structure::TransferEncoding::QuotedPrintable => before_cut_escape(raw),
            _ => raw,
        }
    };
    let bytes = decode_all(&part.encoding, raw);
    let text = decode_charset(part.charset.as_deref(), &bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let text = if complete {
        text
    } else {
        text.trim_end_matches('\u{fffd}')
    };
    preview_of(text, part.content_type == "text/html")
}

/// The server's PREVIEW text, held to the same length and white space.
pub fn preview_from_server(text: &str) -> String {
    collapse(text)
}

/// The HTML before the first quoted message: a `<blockquote>`, or the containers Gmail
/// (`gmail_quote`) and Outlook (`divRplyFwdMsg`, `appendonsend`) put replies' quotes in.
fn before_html_quote(html: &str) -> &str {
    let lower = html.to_ascii_lowercase();
    let cut = [
        "<blockquote",
        "gmail_quote",
        "divrplyfwdmsg",
        "appendonsend",
    ]
    .iter()
    .filter_map(|marker| lower.find(marker))
    .min();
    match cut {
        // Back to the start of the tag the marker is in.
        Some(at) => &html[..lower[..at + 1].rfind('<').unwrap_or(at)],
        None => html,
    }
}

/// The text before the quoted message and the signature.
fn own_words(text: &str) -> &str {
    let mut end = text.len();
    let mut offset = 0;
    // Where the line before the current one started, and whether it was an attribution.
    let mut attribution: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_end_matches(['\r', '\n']);
        let bare = trimmed.trim();
        if trimmed.starts_with('>') {
            end = attribution.unwrap_or(offset);
            break;
        }
        if trimmed == "-- " || trimmed == "--" || bare.starts_with("-----Original Message-----") {
            end = offset;
            break;
        }
        if bare.ends_with("wrote:") || bare.ends_with("schrieb:") || bare.ends_with("a écrit :") {
            attribution = Some(offset);
        } else if !bare.is_empty() {
            attribution = None;
        }
        offset += line.len();
    }
    &text[..end]
}

/// White space collapsed to single spaces, trimmed, cut to [`MAX_PREVIEW_CHARS`].
fn collapse(text: &str) -> String {
    let mut out = String::with_capacity(MAX_PREVIEW_CHARS.min(text.len()));
    let mut chars = 0;
    'words: for word in text.split_whitespace() {
        if chars > 0 {
            if chars == MAX_PREVIEW_CHARS {
                break;
            }
            out.push(' ');
            chars += 1;
        }
        for c in word.chars() {
            if chars == MAX_PREVIEW_CHARS {
                break 'words;
            }
            if !c.is_control() {
                out.push(c);
                chars += 1;
            }
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// Base64 text up to its last whole group of four characters.
fn whole_base64_groups(raw: &[u8]) -> &[u8] {
    let mut count = 0;
    let mut end = 0;
    for (i, byte) in raw.iter().enumerate() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=') {
            count += 1;
            if count % 4 == 0 {
                end = i + 1;
            }
        }
    }
    &raw[..end]
}

/// Quoted-printable text without an escape or soft line break cut at its end.
fn before_cut_escape(raw: &[u8]) -> &[u8] {
    match raw.iter().rposition(|&b| b == b'=') {
        Some(at) if raw.len() - at < 3 => &raw[..at],
        _ => raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::structure::TransferEncoding;

    fn part(content_type: &str, encoding: TransferEncoding, charset: Option<&str>) -> BodyPart {
        BodyPart {
            part_id: "1".to_owned(),
            content_type: content_type.to_owned(),
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
    fn white_space_is_collapsed_and_the_length_held() {
        assert_eq!(
            preview_of("  Hello,\r\n\r\n\tworld  \n", false),
            "Hello, world"
        );
        let long = "word ".repeat(100);
        let preview = preview_of(&long, false);
        assert_eq!(
            preview.chars().count(),
            199,
            "cut at a word's end: {preview:?}"
        );
        let one_word = "x".repeat(500);
        assert_eq!(
            preview_of(&one_word, false).chars().count(),
            MAX_PREVIEW_CHARS
        );
        assert_eq!(
            preview_of("é".repeat(300).as_str(), false).chars().count(),
            200
        );
        assert_eq!(preview_of("a\u{7}b", false), "ab");
    }

    #[test]
    fn quoted_replies_and_signatures_are_left_out() {
        let reply = "Sounds good, see you at 10.\n\nOn Mon, 6 May 2024, Bob wrote:\n> Shall we meet?\n> Bob\n";
        assert_eq!(preview_of(reply, false), "Sounds good, see you at 10.");
        let signed = "Thanks!\n-- \nAlice Example\nACME Corp\n";
        assert_eq!(preview_of(signed, false), "Thanks!");
        let outlook = "Yes.\r\n\r\n-----Original Message-----\r\nFrom: Bob\r\n";
        assert_eq!(preview_of(outlook, false), "Yes.");
        let bottom_posted = "> Shall we meet?\nYes, at 10.\n";
        assert_eq!(preview_of(bottom_posted, false), "");
        let arrow = "Price -> 10 EUR\n";
        assert_eq!(preview_of(arrow, false), "Price -> 10 EUR");
    }

    #[test]
    fn html_becomes_its_text_without_the_quote() {
        let html = "<html><head><style>p{color:red}</style></head><body><p>Hi &amp; welcome,</p>\
                    <p>see <b>below</b>.</p><div class=\"gmail_quote\">On Mon Bob wrote:\
                    <blockquote>old text</blockquote></div></body></html>";
        assert_eq!(preview_of(html, true), "Hi & welcome, see below.");
        assert_eq!(
            preview_of("<p>A</p><blockquote>quoted</blockquote>", true),
            "A"
        );
    }

    #[test]
    fn the_start_of_an_encoded_part_is_decoded_without_noise_at_the_cut() {
        let text = "Grüße aus Köln, bis bald! ".repeat(10);
        let base64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &text);
        let b64 = part("text/plain", TransferEncoding::Base64, Some("utf-8"));
        for cut in [10, 11, 13, 57, 101] {
            let preview = preview_of_part_start(&base64.as_bytes()[..cut], &b64, false);
            assert!(!preview.contains('\u{fffd}'), "cut {cut}: {preview:?}");
            assert!(text.starts_with(&preview), "cut {cut}: {preview:?}");
        }
        let qp = part(
            "text/plain",
            TransferEncoding::QuotedPrintable,
            Some("iso-8859-1"),
        );
        let raw = b"Gr=FC=DFe aus K=F6ln, bis bald! Gr=FC=DFe";
        for cut in [raw.len(), raw.len() - 1, raw.len() - 2] {
            let preview = preview_of_part_start(&raw[..cut], &qp, false);
            assert!(
                preview.starts_with("Grüße aus Köln, bis bald! Gr"),
                "{preview:?}"
            );
            assert!(!preview.contains('='), "{preview:?}");
        }
        let html = part("text/html", TransferEncoding::SevenBit, None);
        assert_eq!(
            preview_of_part_start(b"<p>Hello <i>there</i></p><p>Second", &html, false),
            "Hello there Second"
        );
    }

    /// The BODYSTRUCTURE of a FETCH response, parsed as the connection parses it.
    fn structure_of(raw: &[u8], check: impl FnOnce(Option<BodyPart>)) {
        let (_, response) = async_imap::imap_proto::Response::parse(raw).expect("a FETCH response");
        let async_imap::imap_proto::Response::Fetch(_, attrs) = response else {
            panic!("not a FETCH");
        };
        let structure = attrs
            .iter()
            .find_map(|a| match a {
                async_imap::imap_proto::AttributeValue::BodyStructure(bs) => Some(bs),
                _ => None,
            })
            .expect("a BODYSTRUCTURE");
        check(preview_part(structure));
    }

    #[test]
    fn the_preview_is_read_from_the_first_text_part_plain_before_html() {
        // multipart/mixed (multipart/alternative (text/plain text/html) application/pdf)
        structure_of(
            b"* 1 FETCH (UID 1 BODYSTRUCTURE (((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 120 3 NIL NIL NIL NIL)\
              (\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"base64\" 400 6 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"a\") NIL NIL NIL)\
              (\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 800 NIL (\"attachment\" (\"filename\" \"a.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"m\") NIL NIL NIL))\r\n",
            |part| {
                let part = part.expect("a text part");
                assert_eq!(part.part_id, "1.1");
                assert_eq!(part.content_type, "text/plain");
                assert_eq!(part.encoding, TransferEncoding::QuotedPrintable);
            },
        );
        structure_of(
            b"* 1 FETCH (UID 1 BODYSTRUCTURE (\"text\" \"html\" (\"charset\" \"iso-8859-1\") NIL NIL \"7bit\" 40 1 NIL NIL NIL NIL))\r\n",
            |part| {
                let part = part.expect("the HTML part");
                assert_eq!((part.part_id.as_str(), part.content_type.as_str()), ("1", "text/html"));
                assert_eq!(part.charset.as_deref(), Some("iso-8859-1"));
            },
        );
    }

    #[test]
    fn a_message_without_readable_text_has_no_preview_part() {
        structure_of(
            b"* 1 FETCH (UID 1 BODYSTRUCTURE ((\"application\" \"pdf\" NIL NIL NIL \"base64\" 800 NIL (\"attachment\" (\"filename\" \"a.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"m\") NIL NIL NIL))\r\n",
            |part| assert_eq!(part, None),
        );
        // An empty text part before the attachment.
        structure_of(
            b"* 1 FETCH (UID 1 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)\
              (\"application\" \"pdf\" NIL NIL NIL \"base64\" 800 NIL (\"attachment\" (\"filename\" \"a.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"m\") NIL NIL NIL))\r\n",
            |part| assert_eq!(part, None),
        );
    }

    #[test]
    fn a_server_preview_is_held_to_the_same_rules() {
        assert_eq!(preview_from_server("  Hi\r\n there "), "Hi there");
        assert_eq!(
            preview_from_server(&"y".repeat(256)).len(),
            MAX_PREVIEW_CHARS
        );
    }
}
