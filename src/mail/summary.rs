//! Message summaries, the JSON shape of a message in a listing, built from the FETCH items
//! UID, FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE and BODYSTRUCTURE; and the decoding of
//! the header text they carry: RFC 2047 encoded words, addresses and dates.

use async_imap::imap_proto::{self, AttributeValue, MessageSection, SectionPath};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, SecondsFormat, Utc};

use super::address::parse_address_list;
use super::content::{decode_charset, first_field, utf8_or_windows_1252};
use super::structure::{TransferEncoding, has_attachments};
use super::transfer::decode_all;

/// A mailbox in an address header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Address {
    /// Display name, RFC 2047 decoded.
    #[schema(example = "Zoë Martin")]
    pub name: Option<String>,
    /// The address itself; without `@domain` when the message gave none.
    #[schema(example = "zoe.martin@example.com")]
    pub address: String,
}

/// A message as listed in a mailbox.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Summary {
    /// The message's IMAP UID in its mailbox.
    #[schema(example = 4827)]
    pub uid: u32,
    /// The Message-ID header, angle brackets included.
    #[schema(example = "<CAF7x2pQ9wz@mail.example.com>")]
    pub message_id: Option<String>,
    /// The Subject header, RFC 2047 decoded.
    #[schema(example = "Re: Q1 report — final figures")]
    pub subject: Option<String>,
    /// Authors (From).
    #[schema(example = json!([{"name": "Zoë Martin", "address": "zoe.martin@example.com"}]))]
    pub from: Vec<Address>,
    /// Primary recipients (To).
    #[schema(example = json!([{"name": "Finance Team", "address": "finance@example.org"}]))]
    pub to: Vec<Address>,
    /// Carbon-copy recipients (Cc).
    #[schema(example = json!([{"name": null, "address": "audit@example.org"}]))]
    pub cc: Vec<Address>,
    /// Where replies should go (Reply-To; the server gives From when there is none).
    #[schema(example = json!([{"name": "Zoë Martin", "address": "zoe.martin@example.com"}]))]
    pub reply_to: Vec<Address>,
    /// The Date header, RFC 3339 UTC; null when absent or unreadable.
    #[schema(example = "2024-03-01T10:15:00Z")]
    pub date: Option<String>,
    /// When the server received the message (IMAP INTERNALDATE), RFC 3339 UTC.
    #[schema(example = "2024-03-01T10:15:04Z")]
    pub received_at: Option<String>,
    /// IMAP flags and keywords as the server holds them, `\Recent` excepted.
    #[schema(example = json!(["\\Seen", "\\Answered", "$Label1"]))]
    pub flags: Vec<String>,
    /// Size of the whole message in bytes (RFC822.SIZE).
    #[schema(example = 254_811)]
    pub size: u32,
    /// Whether the message has attachments other than images embedded in its HTML.
    #[schema(example = true)]
    pub has_attachments: bool,
    /// The In-Reply-To header: the Message-ID(s) of the message(s) this one answers.
    #[schema(example = "<CAF7x2pQ1ab@mail.example.com>")]
    pub in_reply_to: Option<String>,
    /// Up to 200 characters of the message's readable text, white space collapsed: from the
    /// IMAP server's `PREVIEW` (RFC 8970) where it offers one, else from the start of the
    /// first text part (text/plain, else text/html), with a reply's quoted message and the
    /// signature left out where they can be told apart. Empty when the message has no
    /// readable text (an attachment only). Left out with `preview=false`, and in the message
    /// view, which has the text itself.
    // Last, so that the cached JSON can be written without it by cutting it off
    // (`mail::listing::SummaryJson`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false, max_length = 200, example = "Thanks, Thursday at ten works for me. I will bring the figures.")]
    pub preview: Option<String>,
}

/// Builds a [`Summary`] from one FETCH response's attributes.
///
/// Expects UID, FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE and, when available,
/// BODYSTRUCTURE and the raw From, To, Cc, Reply-To and Subject fields (`BODY.PEEK[HEADER.FIELDS
/// (...)]`, or the whole header);
/// a missing item leaves its fields empty (`has_attachments` is false without
/// BODYSTRUCTURE). Returns `None` without a UID, as such a summary could not be acted upon.
///
/// With the raw header fields, the subject is decoded from the Subject field itself (an
/// ENVELOPE string may come as an IMAP quoted string whose escapes cannot be told from the
/// text), and an address list is read from its field when the ENVELOPE's holds a server's
/// placeholder (`MISSING_MAILBOX`, `SYNTAX_ERROR`...), a name with a backslash, or fewer
/// addresses than the field: see [`address_list`].
pub fn summary_from_fetch(attrs: &[AttributeValue<'_>]) -> Option<Summary> {
    let uid = attrs.iter().find_map(|attr| match attr {
        AttributeValue::Uid(uid) => Some(*uid),
        _ => None,
    })?;
    let mut summary = Summary {
        uid,
        message_id: None,
        subject: None,
        from: Vec::new(),
        to: Vec::new(),
        cc: Vec::new(),
        reply_to: Vec::new(),
        date: None,
        received_at: None,
        flags: Vec::new(),
        size: 0,
        has_attachments: false,
        in_reply_to: None,
        preview: None,
    };
    let raw_header = attrs.iter().find_map(|attr| match attr {
        AttributeValue::BodySection {
            section: Some(SectionPath::Full(MessageSection::Header)),
            data: Some(data),
            ..
        } => Some(data.as_ref()),
        _ => None,
    });
    let field = |name: &str| raw_header.and_then(|block| first_field(block, name));
    for attr in attrs {
        match attr {
            AttributeValue::Flags(flags) => {
                // \Recent is state of the server session, not a property of the message.
                summary.flags = flags
                    .iter()
                    .filter(|flag| !flag.eq_ignore_ascii_case("\\Recent"))
                    .map(|flag| flag.to_string())
                    .collect();
            }
            AttributeValue::InternalDate(date) => summary.received_at = parse_internal_date(date),
            AttributeValue::Rfc822Size(size) => summary.size = *size,
            AttributeValue::BodyStructure(structure) => {
                summary.has_attachments = has_attachments(structure);
            }
            AttributeValue::Envelope(envelope) => {
                summary.message_id = envelope.message_id.as_deref().and_then(id_list);
                summary.in_reply_to = envelope.in_reply_to.as_deref().and_then(id_list);
                summary.subject = field("Subject")
                    .or(envelope.subject.as_deref())
                    .map(decode_header_text);
                summary.date = envelope.date.as_deref().and_then(parse_rfc2822_date);
                summary.from = address_list(envelope.from.as_ref(), field("From"));
                summary.to = address_list(envelope.to.as_ref(), field("To"));
                summary.cc = address_list(envelope.cc.as_ref(), field("Cc"));
                summary.reply_to = match field("Reply-To") {
                    Some(raw) => address_list(envelope.reply_to.as_ref(), Some(raw)),
                    // Without a Reply-To the server repeats From (RFC 3501 §7.4.2), which may
                    // have needed the repair.
                    None if raw_header.is_some() => summary.from.clone(),
                    None => decode_address_list(envelope.reply_to.as_ref()),
                };
            }
            _ => {}
        }
    }
    Some(summary)
}

/// A Message-ID or In-Reply-To value with its folding whitespace collapsed; `None` when
/// empty.
fn id_list(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let ids = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!ids.is_empty()).then_some(ids)
}

/// Host names servers put in an ENVELOPE address when the header had no domain or could
/// not be parsed: Dovecot's, UW-IMAP's (c-client's) and Cyrus's.
const HOST_PLACEHOLDERS: [&str; 5] = [
    "MISSING_DOMAIN",
    ".MISSING-HOST-NAME.",
    "SYNTAX_ERROR",
    ".SYNTAX-ERROR.",
    "unspecified-domain",
];

/// Mailbox names servers put in an ENVELOPE address they could not parse: Dovecot's and
/// c-client's.
const MAILBOX_PLACEHOLDERS: [&str; 5] = [
    "MISSING_MAILBOX",
    "SYNTAX_ERROR",
    "MISSING_MAILBOX_TERMINATOR",
    "UNEXPECTED_DATA_AFTER_ADDRESS",
    "INVALID_ADDRESS",
];

fn is_placeholder(text: Option<&[u8]>, placeholders: &[&str]) -> bool {
    text.is_some_and(|text| {
        let text = text.trim_ascii();
        placeholders
            .iter()
            .any(|placeholder| text == placeholder.as_bytes())
    })
}

/// An address list from the ENVELOPE's `list` and, when fetched, the raw header field
/// `raw` (the folded text after the colon).
///
/// The ENVELOPE is what the server understood, and is used unless it shows that the server
/// did not understand the field: an address holds a placeholder (`To: , a@aol.com` gives
/// `MISSING_MAILBOX`), a display name holds a backslash (an IMAP quoted string's escapes
/// cannot be told from the text), a mailbox holds white space or `@` (Cyrus takes
/// `Big Bug bb@bug.com` for the mailbox `Big Bug bb`), or the field has another number of
/// addresses than the list (Dovecot ends `To: a@x.com, Mikel@Lindsaar <r@x.com>, t@x.com`
/// after the second, Cyrus makes four of it). Then the field is read with
/// [`parse_address_list`], as mail clients read it.
pub fn address_list(
    list: Option<&Vec<imap_proto::Address<'_>>>,
    raw: Option<&[u8]>,
) -> Vec<Address> {
    let from_envelope = decode_address_list(list);
    let Some(raw) = raw else {
        return from_envelope;
    };
    let doubtful = list.is_some_and(|list| {
        list.iter().any(|entry| {
            is_placeholder(entry.mailbox.as_deref(), &MAILBOX_PLACEHOLDERS)
                || is_placeholder(entry.host.as_deref(), &HOST_PLACEHOLDERS)
                || entry
                    .name
                    .as_deref()
                    .is_some_and(|name| name.contains(&b'\\'))
                || entry.host.is_some()
                    && entry
                        .mailbox
                        .as_deref()
                        .is_some_and(|m| m.iter().any(|b| b.is_ascii_whitespace() || *b == b'@'))
        })
    });
    let from_field = parse_address_list(raw);
    if doubtful || from_field.len() != from_envelope.len() {
        from_field
    } else {
        from_envelope
    }
}

/// Converts an ENVELOPE address list to API addresses.
///
/// RFC 3501 §7.4.2 marks groups in the list: a start marker holds the group name in the
/// mailbox field with a NIL host, an end marker has NIL mailbox and host. The markers are
/// dropped and the members kept. A NIL-host entry not followed by an end marker is no
/// group, but an address without a domain (`From: root`), and is kept as such. A server's
/// placeholder is never shown as an address: a placeholder host is dropped (leaving the
/// mailbox), an entry with a placeholder mailbox is dropped.
pub fn decode_address_list(list: Option<&Vec<imap_proto::Address<'_>>>) -> Vec<Address> {
    let Some(list) = list else {
        return Vec::new();
    };
    let is_group_end =
        |entry: &imap_proto::Address<'_>| entry.mailbox.is_none() && entry.host.is_none();
    let last_group_end = list.iter().rposition(is_group_end);
    let mut addresses = Vec::with_capacity(list.len());
    let mut in_group = false;
    for (position, entry) in list.iter().enumerate() {
        if is_group_end(entry) {
            in_group = false;
            continue;
        }
        let Some(mailbox) = entry.mailbox.as_deref() else {
            continue;
        };
        if entry.host.is_none() && !in_group && last_group_end.is_some_and(|end| end > position) {
            in_group = true;
            continue;
        }
        if is_placeholder(Some(mailbox), &MAILBOX_PLACEHOLDERS) {
            continue;
        }
        let host = entry
            .host
            .as_deref()
            .filter(|host| !is_placeholder(Some(host), &HOST_PLACEHOLDERS))
            .map(utf8_or_windows_1252)
            .map(|host| host.trim().to_owned())
            .filter(|host| !host.is_empty());
        let mailbox = utf8_or_windows_1252(mailbox);
        let mailbox = mailbox.trim();
        let address = match host {
            Some(host) => format!("{mailbox}@{host}"),
            None => mailbox.to_owned(),
        };
        if address.is_empty() {
            continue;
        }
        let name = entry
            .name
            .as_deref()
            .map(decode_header_text)
            .filter(|name| !name.is_empty());
        addresses.push(Address { name, address });
    }
    addresses
}

// The encoded-word and date decoders below are written here, not taken from mail-parser
// (which the bridge uses for charsets, `decode_charset`, and for whole messages): run over the
// unit vectors and every unstructured field and Date of `tests/corpus/realworld`, mail-parser
// 0.11 agrees on 217 of 241 texts and 217 of 229 dates, and where it differs it is wrong for a
// reader. It splits characters cut across adjacent encoded words into U+FFFD, decodes a `B`
// word that is not base64 into noise, drops a `Q` word's trailing `=`, reads undeclared 8-bit
// bytes as U+FFFD instead of windows-1252, puts spaces inside `(…)` around encoded words
// (RFC 2047 §8), keeps trailing white space; and for dates it refuses three-digit years,
// asctime, full month names, RFC 3339, a leap second and a missing zone, and takes
// 31 February for 2 March. `mail_parser_is_kept_out_where_it_is_wrong` below shows each, and
// fails once a mail-parser release gets them right.

/// Decodes unstructured header text (RFC 5322 §2.2.1): RFC 2047 encoded words become
/// UTF-8, folding line breaks are removed (with the whitespace after them collapsed to one
/// space), and the result is trimmed.
///
/// Tolerant: an encoded word that is not well formed stays as written, an unknown charset
/// is read as UTF-8, and undeclared 8-bit text (RFC 6532 UTF-8, or a legacy charset nobody
/// declared) is read as UTF-8 when it is valid UTF-8 and as windows-1252 otherwise, as mail
/// clients and the body decoder do.
/// Whitespace between adjacent encoded words is dropped (RFC 2047 §6.2), and adjacent
/// words in the same (stateless) charset are decoded together, so a character split across
/// two words by a careless encoder still comes out whole.
pub fn decode_header_text(raw: &[u8]) -> String {
    let mut decoder = HeaderTextDecoder::default();
    let mut text_start = 0;
    let mut search_from = 0;
    while let Some(found) = find(&raw[search_from..], b"=?") {
        let start = search_from + found;
        let Some(word) = EncodedWord::parse(&raw[start..]) else {
            search_from = start + 1;
            continue;
        };
        let between = &raw[text_start..start];
        if !(decoder.after_word() && between.iter().all(u8::is_ascii_whitespace)) {
            decoder.push_text(between);
        }
        decoder.push_word(word.charset, word.decoded);
        text_start = start + word.len;
        search_from = text_start;
    }
    decoder.push_text(&raw[text_start..]);
    decoder.finish()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Output of [`decode_header_text`] under construction.
#[derive(Default)]
struct HeaderTextDecoder<'a> {
    out: String,
    /// Decoded bytes of the run of encoded words just seen, and their charset.
    pending: Option<(&'a [u8], Vec<u8>)>,
}

impl<'a> HeaderTextDecoder<'a> {
    fn after_word(&self) -> bool {
        self.pending.is_some()
    }

    fn push_word(&mut self, charset: &'a [u8], decoded: Vec<u8>) {
        match &mut self.pending {
            Some((pending_charset, bytes))
                if pending_charset.eq_ignore_ascii_case(charset) && !is_stateful(charset) =>
            {
                bytes.extend_from_slice(&decoded);
            }
            _ => {
                self.flush_word();
                self.pending = Some((charset, decoded));
            }
        }
    }

    fn flush_word(&mut self) {
        if let Some((charset, bytes)) = self.pending.take() {
            let charset = String::from_utf8_lossy(charset);
            self.out.push_str(&decode_charset(Some(&charset), &bytes));
        }
    }

    fn push_text(&mut self, text: &[u8]) {
        if text.is_empty() {
            return;
        }
        self.flush_word();
        let text = utf8_or_windows_1252(text);
        let mut lines = text.split('\n');
        if let Some(first) = lines.next() {
            self.out.push_str(first.trim_end_matches('\r'));
        }
        for line in lines {
            let line = line.trim_end_matches('\r');
            let unfolded = line.trim_start_matches([' ', '\t']);
            if unfolded.len() != line.len() && !self.out.ends_with(' ') {
                self.out.push(' ');
            }
            self.out.push_str(unfolded);
        }
    }

    fn finish(mut self) -> String {
        self.flush_word();
        let trimmed = self.out.trim();
        if trimmed.len() == self.out.len() {
            self.out
        } else {
            trimmed.to_owned()
        }
    }
}

/// Whether `charset` is a stateful encoding (ISO-2022-JP and its kin, UTF-7), whose words
/// each end by returning to ASCII: joined, the escape back to ASCII and the escape out of
/// it in the next word would sit side by side, which decoders rightly reject.
fn is_stateful(charset: &[u8]) -> bool {
    charset
        .get(..9)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"iso-2022-"))
        || charset.eq_ignore_ascii_case(b"utf-7")
}

/// An RFC 2047 encoded word, `=?charset?encoding?text?=`, decoded to bytes in its charset.
struct EncodedWord<'a> {
    /// The charset, without an RFC 2231 `*language` suffix.
    charset: &'a [u8],
    decoded: Vec<u8>,
    /// Length of the word as written.
    len: usize,
}

/// Longest charset name accepted in an encoded word.
const MAX_CHARSET_LEN: usize = 64;

impl<'a> EncodedWord<'a> {
    /// Parses the encoded word at the start of `input`, which begins with `=?`.
    fn parse(input: &'a [u8]) -> Option<Self> {
        let is_token_byte = |byte: &u8| !byte.is_ascii_whitespace() && !byte.is_ascii_control();
        let rest = input.strip_prefix(b"=?")?;
        let charset_len = rest
            .iter()
            .take(MAX_CHARSET_LEN + 1)
            .position(|&byte| byte == b'?')?;
        let charset_spec = &rest[..charset_len];
        if charset_spec.is_empty() || !charset_spec.iter().all(is_token_byte) {
            return None;
        }
        let charset = charset_spec
            .split(|&byte| byte == b'*')
            .next()
            .filter(|charset| !charset.is_empty())?;
        let rest = &rest[charset_len + 1..];
        let (&encoding, rest) = rest.split_first()?;
        let rest = rest.strip_prefix(b"?")?;
        let text_len = rest
            .iter()
            .position(|byte| *byte == b'?' || !is_token_byte(byte))?;
        if rest.get(text_len..text_len + 2) != Some(b"?=") {
            return None;
        }
        let text = &rest[..text_len];
        let decoded = match encoding {
            // Strict here, unlike in bodies: text that is not base64 is more likely a
            // subject that happens to look like an encoded word than a damaged one.
            b'B' | b'b' if text.iter().all(|&byte| is_base64_byte(byte)) => {
                decode_all(&TransferEncoding::Base64, text)
            }
            b'Q' | b'q' => decode_q(text),
            _ => return None,
        };
        Some(Self {
            charset,
            decoded,
            len: 2 + charset_len + 3 + text_len + 2,
        })
    }
}

fn is_base64_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=')
}

/// Decodes RFC 2047 "Q" text: quoted-printable with `_` for space. An `=` not followed by
/// two hex digits is kept as written.
fn decode_q(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut position = 0;
    while let Some(&byte) = text.get(position) {
        match byte {
            b'_' => out.push(b' '),
            b'=' => {
                let escaped = match text.get(position + 1..position + 3) {
                    Some(&[high, low]) => hex_digit(high).zip(hex_digit(low)),
                    _ => None,
                };
                if let Some((high, low)) = escaped {
                    let decoded = high << 4 | low;
                    out.push(decoded);
                    position += 3;
                    continue;
                }
                out.push(b'=');
            }
            _ => out.push(byte),
        }
        position += 1;
    }
    out
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

/// Converts an IMAP INTERNALDATE (`17-Jul-1996 02:44:25 -0700`, RFC 3501 `date-time`) to
/// RFC 3339 UTC (`1996-07-17T09:44:25Z`).
pub fn parse_internal_date(s: &str) -> Option<String> {
    // The day may be space-padded (" 7-Jul-1996"); trimming makes it a 1-digit day.
    DateTime::parse_from_str(s.trim(), "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|date| to_rfc3339_utc(date.with_timezone(&Utc)))
}

fn to_rfc3339_utc(date: DateTime<Utc>) -> String {
    date.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Converts a Date header value (RFC 5322 §3.3, obsolete forms included) to RFC 3339 UTC.
///
/// Tolerates what mailers really write: no day of week, full month names, two- and
/// three-digit years, no seconds, comments such as `(CET)`, named and military zones,
/// `+01:00` offsets, the asctime layout (`Mon Jan  1 10:00:00 2024`) and RFC 3339 itself.
/// A date without a zone is taken as UTC. Returns `None` for anything that does not name a
/// real calendar date and time.
pub fn parse_rfc2822_date(s: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(s);
    let text = strip_comments(&text);
    let text = text.trim();
    if let Ok(date) = DateTime::parse_from_rfc3339(text) {
        return Some(to_rfc3339_utc(date.with_timezone(&Utc)));
    }
    let mut fields = DateFields::default();
    for token in text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|token| !token.is_empty())
    {
        fields.take(token);
    }
    fields.resolve().map(to_rfc3339_utc)
}

/// Removes parenthesised comments, which may nest (RFC 5322 §3.2.2).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    let mut escaped = false;
    for c in text.chars() {
        if depth > 0 {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
        } else if c == '(' {
            depth = 1;
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// The parts of a date found so far, in whatever order the tokens came.
#[derive(Debug, Default)]
struct DateFields {
    day: Option<u32>,
    month: Option<u32>,
    year: Option<i32>,
    time: Option<NaiveTime>,
    offset_seconds: Option<i32>,
}

impl DateFields {
    fn take(&mut self, token: &str) {
        if token.contains(':') && self.take_time(token) {
            return;
        }
        if let Some((sign, digits)) = split_sign(token) {
            if self.offset_seconds.is_none() {
                self.offset_seconds = parse_numeric_zone(sign, digits);
            }
            return;
        }
        if let Some(iso) = IsoDate::parse(token) {
            self.year = self.year.or(Some(iso.year));
            self.month = self.month.or(Some(iso.month));
            self.day = self.day.or(Some(iso.day));
            if let Some(time) = iso.time {
                self.take_time(time);
            }
            return;
        }
        if token.bytes().all(|byte| byte.is_ascii_digit()) {
            self.take_number(token);
            return;
        }
        if token
            .bytes()
            .all(|byte| byte.is_ascii_alphabetic() || byte == b'.')
        {
            let word = token.trim_end_matches('.');
            if let Some(month) = month_number(word) {
                if self.month.is_none() {
                    self.month = Some(month);
                }
            } else if self.time.is_some() && self.offset_seconds.is_none() {
                self.offset_seconds = Some(named_zone(word));
            }
            return;
        }
        // `01-Mar-2024`, as some mailers and IMAP's own date format write a date.
        if token.contains('-') && token.bytes().any(|byte| byte.is_ascii_alphabetic()) {
            for piece in token.split('-').filter(|piece| !piece.is_empty()) {
                self.take(piece);
            }
        }
    }

    /// Takes `token` as the time of day if none was found yet and it reads as one.
    fn take_time(&mut self, token: &str) -> bool {
        if self.time.is_some() {
            return false;
        }
        let Some((time, offset)) = parse_time(token) else {
            return false;
        };
        self.time = Some(time);
        if offset.is_some() {
            self.offset_seconds = offset;
        }
        true
    }

    fn take_number(&mut self, digits: &str) {
        let Ok(value) = digits.parse::<i32>() else {
            return;
        };
        if digits.len() <= 2 && self.day.is_none() && self.year.is_none() {
            self.day = u32::try_from(value).ok();
        } else if self.year.is_none() {
            // RFC 5322 §4.3: two-digit years below 50 are 20xx, other two- and three-digit
            // years are counted from 1900.
            self.year = Some(match digits.len() {
                1 | 2 if value < 50 => 2000 + value,
                1..=3 => 1900 + value,
                _ => value,
            });
        } else if self.day.is_none() {
            self.day = u32::try_from(value).ok();
        }
    }

    fn resolve(&self) -> Option<DateTime<Utc>> {
        let year = self.year.filter(|year| (1000..=9999).contains(year))?;
        let date = NaiveDate::from_ymd_opt(year, self.month?, self.day?)?;
        let offset = FixedOffset::east_opt(self.offset_seconds.unwrap_or(0))?;
        date.and_time(self.time?)
            .and_local_timezone(offset)
            .single()
            .map(|date| date.with_timezone(&Utc))
    }
}

/// Parses `hh:mm[:ss[.fraction]]`, possibly with a zone glued on (`10:15:00Z`,
/// `10:15:00+01:00`). A leap second reads as :59.
fn parse_time(token: &str) -> Option<(NaiveTime, Option<i32>)> {
    let (clock, offset) = match token.find(['+', '-', 'Z', 'z']) {
        Some(at) => {
            let zone = &token[at..];
            let offset = match split_sign(zone) {
                Some((sign, digits)) => parse_numeric_zone(sign, digits)?,
                None if zone.eq_ignore_ascii_case("z") => 0,
                None => return None,
            };
            let offset = Some(offset);
            (&token[..at], offset)
        }
        None => (token, None),
    };
    let mut numbers = clock.split(':');
    let hour: u32 = numbers.next()?.parse().ok()?;
    let minute: u32 = numbers.next()?.parse().ok()?;
    let second: u32 = match numbers.next() {
        Some(second) => second.split('.').next()?.parse().ok()?,
        None => 0,
    };
    if numbers.next().is_some() {
        return None;
    }
    let time = NaiveTime::from_hms_opt(hour, minute, second.min(59))?;
    Some((time, offset))
}

/// Splits a leading `+` or `-` off a zone, as the sign of its offset.
fn split_sign(token: &str) -> Option<(Sign, &str)> {
    if let Some(digits) = token.strip_prefix('+') {
        Some((Sign::East, digits))
    } else {
        token.strip_prefix('-').map(|digits| (Sign::West, digits))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sign {
    East,
    West,
}

/// A `yyyy-mm-dd[Thh:mm...]` token, as mailers that write RFC 3339 without a zone send.
struct IsoDate<'a> {
    year: i32,
    month: u32,
    day: u32,
    /// The text after the `T`, if any.
    time: Option<&'a str>,
}

impl<'a> IsoDate<'a> {
    fn parse(token: &'a str) -> Option<Self> {
        let (date, time) = match token.split_once(['T', 't']) {
            Some((date, time)) => (date, Some(time)),
            None => (token, None),
        };
        let mut numbers = date.split('-');
        let year = numbers
            .next()
            .filter(|year| year.len() == 4)?
            .parse()
            .ok()?;
        let month = numbers.next()?.parse().ok()?;
        let day = numbers.next()?.parse().ok()?;
        if numbers.next().is_some() {
            return None;
        }
        Some(Self {
            year,
            month,
            day,
            time,
        })
    }
}

/// Parses the digits of a numeric zone after its sign: `hhmm`, `hh:mm` or `hh`.
fn parse_numeric_zone(sign: Sign, digits: &str) -> Option<i32> {
    let digits: String = digits.chars().filter(|&c| c != ':').collect();
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i32 = digits.parse().ok()?;
    let (hours, minutes) = if digits.len() <= 2 {
        (value, 0)
    } else {
        (value / 100, value % 100)
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    let seconds = hours * 3600 + minutes * 60;
    Some(match sign {
        Sign::East => seconds,
        Sign::West => -seconds,
    })
}

/// Offset of a zone name RFC 5322 §4.3 knows. Military letters and unknown names read as
/// UTC, as RFC 5322 §4.3 asks for the former (their sense was often inverted).
fn named_zone(name: &str) -> i32 {
    let hours = match name.to_ascii_uppercase().as_str() {
        "UT" | "UTC" | "GMT" | "Z" => 0,
        "EDT" => -4,
        "EST" | "CDT" => -5,
        "CST" | "MDT" => -6,
        "MST" | "PDT" => -7,
        "PST" => -8,
        _ => 0,
    };
    hours * 3600
}

fn month_number(word: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let prefix = word.get(..3)?.to_ascii_lowercase();
    let index = MONTHS.iter().position(|month| *month == prefix)?;
    u32::try_from(index + 1).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use async_imap::imap_proto::Response;
    use std::borrow::Cow;

    fn decode(raw: &str) -> String {
        decode_header_text(raw.as_bytes())
    }

    /// The cases where mail-parser's decoders give another answer than the hand-written ones
    /// (see the comment above `decode_header_text`): each expected answer is what a mail
    /// reader should show, the hand-written decoder gives it, and mail-parser does not. When
    /// this fails because mail-parser now agrees, its decoder can replace ours for that case.
    #[test]
    fn mail_parser_is_kept_out_where_it_is_wrong() {
        use mail_parser::HeaderValue;
        use mail_parser::parsers::MessageStream;
        let mail_parser_text = |raw: &[u8]| {
            let line = [raw, b"\r\n"].concat();
            match MessageStream::new(&line).parse_unstructured() {
                HeaderValue::Text(text) => Some(text.into_owned()),
                _ => None,
            }
        };
        let texts: [(&[u8], &str); 7] = [
            (
                b"=?UTF-8?B?4oI=?= =?UTF-8?B?rCByYXRlcw==?=",
                "\u{20ac} rates",
            ),
            (b"=?UTF-8?B?not base64?=", "=?UTF-8?B?not base64?="),
            (b"=?UTF-8?Q?50=?=", "50="),
            (
                b"Gr\xfc\xdfe von Heinz M\xfcller",
                "Gr\u{fc}\u{df}e von Heinz M\u{fc}ller",
            ),
            (b"(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"),
            (b"Re:=?UTF-8?Q?Caf=C3=A9?=", "Re:Caf\u{e9}"),
            (b"=?UTF-8?Q?word_=C3=A9=20?=", "word \u{e9}"),
        ];
        for (raw, expected) in texts {
            assert_eq!(decode_header_text(raw), expected, "{raw:?}");
            assert_ne!(mail_parser_text(raw).as_deref(), Some(expected), "{raw:?}");
        }
        let mail_parser_date = |raw: &str| {
            let line = format!("{raw}\r\n");
            match MessageStream::new(line.as_bytes()).parse_date() {
                HeaderValue::DateTime(date) if date.is_valid() => {
                    DateTime::from_timestamp(date.to_timestamp(), 0).map(to_rfc3339_utc)
                }
                _ => None,
            }
        };
        let dates = [
            (
                "Fri, 1 Mar 124 10:15:00 +0000",
                Some("2024-03-01T10:15:00Z"),
            ),
            ("Fri Mar  1 10:15:00 2024", Some("2024-03-01T10:15:00Z")),
            (
                "Friday, 1 March 2024 10:15:00 +0000",
                Some("2024-03-01T10:15:00Z"),
            ),
            (
                "Sun, 31 Dec 2023 23:59:60 +0000",
                Some("2023-12-31T23:59:59Z"),
            ),
            ("2024-03-01T11:15:00+01:00", Some("2024-03-01T10:15:00Z")),
            (
                "Fri, 01-Mar-2024 10:15:00 -0000",
                Some("2024-03-01T10:15:00Z"),
            ),
            ("Fri, 1 Mar 2024 10:15:00", Some("2024-03-01T10:15:00Z")),
            ("Fri, 31 Feb 2024 10:15:00 +0000", None),
        ];
        for (raw, expected) in dates {
            assert_eq!(
                parse_rfc2822_date(raw.as_bytes()).as_deref(),
                expected,
                "{raw:?}"
            );
            assert_ne!(mail_parser_date(raw).as_deref(), expected, "{raw:?}");
        }
    }

    fn imap_address<'a>(
        name: Option<&'a [u8]>,
        mailbox: Option<&'a str>,
        host: Option<&'a str>,
    ) -> imap_proto::Address<'a> {
        imap_proto::Address {
            name: name.map(Cow::Borrowed),
            adl: None,
            mailbox: mailbox.map(|m| Cow::Borrowed(m.as_bytes())),
            host: host.map(|h| Cow::Borrowed(h.as_bytes())),
        }
    }

    fn address(name: Option<&str>, address: &str) -> Address {
        Address {
            name: name.map(str::to_owned),
            address: address.to_owned(),
        }
    }

    #[test]
    fn decodes_iso_2022_jp() {
        assert_eq!(
            decode("=?ISO-2022-JP?B?GyRCMnE1RCROO3FOQRsoQg==?="),
            "会議の資料"
        );
        // Two words, folded onto two lines: joined without the whitespace between them.
        assert_eq!(
            decode("=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?=\r\n =?ISO-2022-JP?B?GyRCQkBPOhsoQg==?="),
            "山田太郎"
        );
    }

    #[test]
    fn decodes_iso_8859_7() {
        assert_eq!(
            decode("=?ISO-8859-7?Q?=C3=E5=E9=DC_=F3=EF=F5_=CA=FC=F3=EC=E5?="),
            "Γειά σου Κόσμε"
        );
        assert_eq!(decode("=?iso-8859-7?b?yuHr5+zd8eE=?="), "Καλημέρα");
    }

    #[test]
    fn decodes_koi8_r() {
        assert_eq!(decode("=?KOI8-R?B?8NLJ18XULCDNydI=?="), "Привет, мир");
        assert_eq!(
            decode("=?koi8-r?q?=E9=D7=C1=CE_=F0=C5=D4=D2=CF=D7?="),
            "Иван Петров"
        );
    }

    #[test]
    fn decodes_iso_8859_1() {
        assert_eq!(
            decode("=?ISO-8859-1?Q?Patrik_F=E4ltstr=F6m?="),
            "Patrik Fältström"
        );
        assert_eq!(decode("=?iso-8859-1?q?=805.4bn?="), "€5.4bn");
    }

    #[test]
    fn decodes_utf8_and_mixed_text() {
        assert_eq!(
            decode("Re: =?UTF-8?Q?Caf=C3=A9_cr=C3=A8me?= tomorrow"),
            "Re: Café crème tomorrow"
        );
        assert_eq!(decode("=?UTF-8?B?SsO2cmcgTcO8bGxlcg==?="), "Jörg Müller");
        assert_eq!(decode("=?UTF-8*en?Q?hello?="), "hello");
    }

    #[test]
    fn joins_a_character_split_across_words() {
        assert_eq!(
            decode("=?UTF-8?B?4oI=?= =?UTF-8?B?rCByYXRlcw==?="),
            "€ rates"
        );
    }

    #[test]
    fn rfc2047_section_8_examples() {
        let cases = [
            ("(=?ISO-8859-1?Q?a?=)", "(a)"),
            ("(=?ISO-8859-1?Q?a?= b)", "(a b)"),
            ("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"),
            ("(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)"),
            ("(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)"),
            ("(=?ISO-8859-1?Q?a_b?=)", "(a b)"),
            ("(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)"),
        ];
        for (raw, expected) in cases {
            assert_eq!(decode(raw), expected, "{raw}");
        }
    }

    #[test]
    fn tolerates_bad_encodings() {
        let cases: [(&[u8], &str); 9] = [
            (b"=?UTF-8?Q?abc", "=?UTF-8?Q?abc"),
            (b"=?UTF-8?X?abc?=", "=?UTF-8?X?abc?="),
            (b"=?UTF-8?B?not base64?=", "=?UTF-8?B?not base64?="),
            (b"=??Q?abc?=", "=??Q?abc?="),
            (b"=?x-unknown?Q?caf=C3=A9?=", "café"),
            (b"=?UTF-8?Q?bad=FFbyte?=", "bad\u{fffd}byte"),
            (b"=?UTF-8?Q?50=?=", "50="),
            // Not UTF-8 as a whole: the run is read as windows-1252, as mail clients do.
            (b"J\xc3\xb6rg \xff", "JÃ¶rg ÿ"),
            (b"1 + 1 =? 2", "1 + 1 =? 2"),
        ];
        for (raw, expected) in cases {
            assert_eq!(decode_header_text(raw), expected, "{raw:?}");
        }
    }

    #[test]
    fn unfolds_plain_text() {
        assert_eq!(
            decode("  A long subject\r\n\tthat was folded \r\n twice  "),
            "A long subject that was folded twice"
        );
        assert_eq!(decode(""), "");
    }

    #[test]
    fn address_names_in_each_script() {
        let list = vec![
            imap_address(
                Some(b"=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= =?ISO-2022-JP?B?GyRCQkBPOhsoQg==?="),
                Some("yamada"),
                Some("example.jp"),
            ),
            imap_address(
                Some(b"=?KOI8-R?Q?=E9=D7=C1=CE_=F0=C5=D4=D2=CF=D7?="),
                Some("ivan"),
                Some("example.ru"),
            ),
            imap_address(
                Some(b"=?ISO-8859-7?B?yuHr5+zd8eE=?="),
                Some("k"),
                Some("example.gr"),
            ),
            imap_address(
                Some(b"=?ISO-8859-1?Q?Patrik_F=E4ltstr=F6m?="),
                Some("paf"),
                Some("example.se"),
            ),
            imap_address(
                Some(b"=?UTF-8?Q?Zo=C3=AB?="),
                Some("zoe"),
                Some("example.com"),
            ),
            imap_address(
                Some("Jörg Müller".as_bytes()),
                Some("joerg"),
                Some("example.de"),
            ),
            imap_address(Some(b"Bad \xe9 byte"), Some("bad"), Some("example.net")),
            imap_address(Some(b""), Some("anon"), Some("example.net")),
        ];
        assert_eq!(
            decode_address_list(Some(&list)),
            vec![
                address(Some("山田太郎"), "yamada@example.jp"),
                address(Some("Иван Петров"), "ivan@example.ru"),
                address(Some("Καλημέρα"), "k@example.gr"),
                address(Some("Patrik Fältström"), "paf@example.se"),
                address(Some("Zoë"), "zoe@example.com"),
                address(Some("Jörg Müller"), "joerg@example.de"),
                address(Some("Bad é byte"), "bad@example.net"),
                address(None, "anon@example.net"),
            ]
        );
        assert!(decode_address_list(None).is_empty());
    }

    #[test]
    fn group_markers_are_skipped() {
        let list = vec![
            imap_address(None, Some("A Group"), None),
            imap_address(Some(b"Ann"), Some("ann"), Some("example.com")),
            imap_address(None, Some("bob"), Some("example.com")),
            imap_address(None, None, None),
            imap_address(None, Some("carol"), Some("example.org")),
            imap_address(None, Some("undisclosed-recipients"), None),
            imap_address(None, None, None),
        ];
        assert_eq!(
            decode_address_list(Some(&list)),
            vec![
                address(Some("Ann"), "ann@example.com"),
                address(None, "bob@example.com"),
                address(None, "carol@example.org"),
            ]
        );
    }

    #[test]
    fn missing_host_gives_bare_mailbox() {
        let list = vec![
            imap_address(Some(b"Root"), Some("root"), None),
            imap_address(None, Some("daemon"), Some("MISSING_DOMAIN")),
            imap_address(None, Some("uucp"), Some(".MISSING-HOST-NAME.")),
            imap_address(None, Some("nobody"), Some("")),
        ];
        assert_eq!(
            decode_address_list(Some(&list)),
            vec![
                address(Some("Root"), "root"),
                address(None, "daemon"),
                address(None, "uucp"),
                address(None, "nobody"),
            ]
        );
    }

    #[test]
    fn undeclared_8bit_header_text() {
        let cases: [(&[u8], &str); 6] = [
            (b"Gr\xfc\xdfe von Heinz M\xfcller", "Grüße von Heinz Müller"),
            (b"\x93Quoted\x94 \x96 costs \x8010", "“Quoted” – costs €10"),
            ("Grüße aus Köln ✓".as_bytes(), "Grüße aus Köln ✓"),
            (
                b"M\xfcller: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= zur\xfcck",
                "Müller: Grüße zurück",
            ),
            (b"Fr\xe4sche.txt", "Fräsche.txt"),
            (b"caf\xe9\r\n cr\xe8me", "café crème"),
        ];
        for (raw, expected) in cases {
            assert_eq!(decode_header_text(raw), expected, "{raw:?}");
        }
    }

    #[test]
    fn placeholders_are_never_addresses() {
        let list = vec![
            imap_address(None, Some("MISSING_MAILBOX"), Some("MISSING_DOMAIN")),
            imap_address(
                Some(b"Big Bug bb"),
                Some("MISSING_MAILBOX"),
                Some("MISSING_DOMAIN"),
            ),
            imap_address(Some(b"Joe"), Some("joe"), Some("SYNTAX_ERROR")),
            imap_address(None, Some("a"), Some("aol.com")),
        ];
        assert_eq!(
            decode_address_list(Some(&list)),
            vec![address(Some("Joe"), "joe"), address(None, "a@aol.com")]
        );
    }

    #[test]
    fn cyrus_envelopes_fall_back_to_the_raw_field_too() {
        // Cyrus's ENVELOPE for `Big Bug bb@bug.com`, `root` and `a@x.com, Mikel@Lindsaar
        // <r@x.com>, t@x.com`.
        let no_brackets = vec![imap_address(None, Some("Big Bug bb"), Some("bug.com"))];
        assert_eq!(
            address_list(Some(&no_brackets), Some(b" Big Bug bb@bug.com\r\n")),
            vec![address(Some("Big Bug"), "bb@bug.com")]
        );
        let no_domain = vec![imap_address(None, Some("root"), Some("unspecified-domain"))];
        assert_eq!(
            decode_address_list(Some(&no_domain)),
            vec![address(None, "root")]
        );
        let split = vec![
            imap_address(None, Some("a"), Some("x.com")),
            imap_address(None, Some("Mikel"), Some("Lindsaar")),
            imap_address(None, Some("r"), Some("x.com")),
            imap_address(None, Some("t"), Some("x.com")),
        ];
        assert_eq!(
            address_list(
                Some(&split),
                Some(b" a@x.com, Mikel@Lindsaar <r@x.com>, t@x.com\r\n")
            ),
            vec![
                address(None, "a@x.com"),
                address(Some("Mikel@Lindsaar"), "r@x.com"),
                address(None, "t@x.com")
            ]
        );
    }

    #[test]
    fn address_lists_fall_back_to_the_raw_field() {
        // Dovecot's ENVELOPE for each field, and the field.
        let empty_element = vec![
            imap_address(None, Some("MISSING_MAILBOX"), Some("MISSING_DOMAIN")),
            imap_address(None, Some("a"), Some("aol.com")),
        ];
        assert_eq!(
            address_list(Some(&empty_element), Some(b" , a@aol.com\r\n")),
            vec![address(None, "a@aol.com")]
        );
        let no_brackets = vec![imap_address(
            Some(b"Big Bug bb"),
            Some("MISSING_MAILBOX"),
            Some("MISSING_DOMAIN"),
        )];
        assert_eq!(
            address_list(Some(&no_brackets), Some(b" Big Bug bb@bug.com\r\n")),
            vec![address(Some("Big Bug"), "bb@bug.com")]
        );
        let cut_short = vec![
            imap_address(None, Some("a"), Some("x.com")),
            imap_address(None, Some("Mikel"), Some("Lindsaar")),
        ];
        assert_eq!(
            address_list(
                Some(&cut_short),
                Some(b" a@x.com, Mikel@Lindsaar <r@x.com>, t@x.com\r\n")
            ),
            vec![
                address(None, "a@x.com"),
                address(Some("Mikel@Lindsaar"), "r@x.com"),
                address(None, "t@x.com"),
            ]
        );
        // An IMAP quoted string keeps its escapes in imap-proto: the field is unambiguous.
        let escaped = vec![imap_address(
            Some(br#"Say \"Hi\""#),
            Some("hi"),
            Some("x.com"),
        )];
        assert_eq!(
            address_list(Some(&escaped), Some(br#" "Say \"Hi\"" <hi@x.com>"#)),
            vec![address(Some("Say \"Hi\""), "hi@x.com")]
        );
        // A sound ENVELOPE is what the server understood: it wins over this parser's reading.
        let sound = vec![imap_address(
            Some(b"Comment (nested)"),
            Some("a"),
            Some("b.c"),
        )];
        assert_eq!(
            address_list(Some(&sound), Some(b" a@b.c (Comment (nested))")),
            vec![address(Some("Comment (nested)"), "a@b.c")]
        );
        assert_eq!(
            address_list(Some(&sound), None),
            vec![address(Some("Comment (nested)"), "a@b.c")]
        );
    }

    #[test]
    fn summary_reads_what_the_envelope_got_wrong_from_the_header_fields() {
        let fields = "From: Big Bug bb@bug.com\r\nTo: , a@aol.com\r\nCc: a@x.com, Mikel@Lindsaar <r@x.com>, t@x.com\r\nSubject: Heinz M\u{fc}ller \\\"quoted\\\"\r\n\r\n";
        let line = format!(
            "* 3 FETCH (UID 7 ENVELOPE (NIL \"Heinz\" ((\"Big Bug bb\" NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")) ((\"Big Bug bb\" NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")) ((\"Big Bug bb\" NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")) ((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")(NIL NIL \"a\" \"aol.com\")) ((NIL NIL \"a\" \"x.com\")(NIL NIL \"Mikel\" \"Lindsaar\")) NIL NIL NIL) BODY[HEADER.FIELDS (FROM TO CC REPLY-TO SUBJECT)] {{{}}}\r\n{fields})\r\n",
            fields.len()
        );
        let summary = summary_from_fetch(&fetch_attrs(&line)).expect("has a UID");
        let big_bug = vec![address(Some("Big Bug"), "bb@bug.com")];
        assert_eq!(summary.from, big_bug);
        assert_eq!(summary.reply_to, big_bug);
        assert_eq!(summary.to, vec![address(None, "a@aol.com")]);
        assert_eq!(summary.cc.len(), 3);
        assert_eq!(
            summary.subject.as_deref(),
            Some("Heinz Müller \\\"quoted\\\"")
        );
        // Without the fields, nothing of a placeholder shows.
        let bare = line
            .split(" BODY[HEADER.FIELDS")
            .next()
            .expect("prefix")
            .to_owned()
            + ")\r\n";
        let summary = summary_from_fetch(&fetch_attrs(&bare)).expect("has a UID");
        assert!(summary.from.is_empty());
        assert_eq!(summary.to, vec![address(None, "a@aol.com")]);
        assert_eq!(summary.subject.as_deref(), Some("Heinz"));
    }

    /// Deterministic pseudo-random inputs over an alphabet rich in the bytes the decoders
    /// treat specially.
    pub(crate) fn arbitrary_inputs(count: usize) -> Vec<Vec<u8>> {
        const ALPHABET: &[u8] =
            b"=?=?QqBb_-+:;,()<>@\"' \t\r\n0123456789AaFfZzJjMm\x1b\x80\xc3\xa9\xff";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..count)
            .map(|_| {
                let len = usize::try_from(next() % 64).unwrap_or(0);
                (0..len)
                    .map(|_| {
                        let index = usize::try_from(next() % ALPHABET.len() as u64).unwrap_or(0);
                        ALPHABET[index]
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn arbitrary_input_never_panics() {
        for input in arbitrary_inputs(5000) {
            decode_header_text(&input);
            parse_rfc2822_date(&input);
            parse_internal_date(&String::from_utf8_lossy(&input));
            let mut prefixed = b"=?utf-8?q?".to_vec();
            prefixed.extend_from_slice(&input);
            decode_header_text(&prefixed);
        }
    }

    const FETCH_LINE: &str = concat!(
        "* 12 FETCH (UID 4827 FLAGS (\\Seen \\Recent $Label1) ",
        "INTERNALDATE \"01-Mar-2024 11:15:04 +0100\" RFC822.SIZE 254811 ",
        "ENVELOPE (\"Fri, 01 Mar 2024 11:15:00 +0100\" ",
        "\"=?UTF-8?Q?Re=3A_Q1_report_=E2=80=94_final_figures?=\" ",
        "((\"=?UTF-8?Q?Zo=C3=AB_Martin?=\" NIL \"zoe.martin\" \"example.com\")) ",
        "((\"=?UTF-8?Q?Zo=C3=AB_Martin?=\" NIL \"zoe.martin\" \"example.com\")) ",
        "((\"=?UTF-8?Q?Zo=C3=AB_Martin?=\" NIL \"zoe.martin\" \"example.com\")) ",
        "((\"Finance Team\" NIL \"finance\" \"example.org\")) ",
        "((NIL NIL \"audit\" \"example.org\")) NIL ",
        "\"<CAF7x2pQ1ab@mail.example.com>\" \"<CAF7x2pQ9wz@mail.example.com>\") ",
        "BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 302 10 NIL NIL NIL NIL)",
        "(\"application\" \"pdf\" (\"name\" \"Q1 report.pdf\") NIL NIL \"base64\" 249116 NIL ",
        "(\"attachment\" (\"filename\" \"Q1 report.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL))\r\n"
    );

    fn fetch_attrs(line: &str) -> Vec<AttributeValue<'_>> {
        let (rest, response) = Response::parse(line.as_bytes()).expect("test line parses");
        assert!(rest.is_empty());
        match response {
            Response::Fetch(_, attrs) => attrs,
            other => panic!("not a FETCH: {other:?}"),
        }
    }

    #[test]
    fn summary_from_full_fetch() {
        let summary = summary_from_fetch(&fetch_attrs(FETCH_LINE)).expect("has a UID");
        let zoe = address(Some("Zoë Martin"), "zoe.martin@example.com");
        assert_eq!(
            summary,
            Summary {
                uid: 4827,
                message_id: Some("<CAF7x2pQ9wz@mail.example.com>".into()),
                subject: Some("Re: Q1 report — final figures".into()),
                from: vec![zoe.clone()],
                to: vec![address(Some("Finance Team"), "finance@example.org")],
                cc: vec![address(None, "audit@example.org")],
                reply_to: vec![zoe],
                date: Some("2024-03-01T10:15:00Z".into()),
                received_at: Some("2024-03-01T10:15:04Z".into()),
                flags: vec!["\\Seen".into(), "$Label1".into()],
                size: 254_811,
                has_attachments: true,
                in_reply_to: Some("<CAF7x2pQ1ab@mail.example.com>".into()),
                preview: None,
            }
        );
        let json = serde_json::to_value(&summary).expect("serialises");
        assert_eq!(json["from"][0]["name"], "Zoë Martin");
        assert_eq!(json["cc"][0]["name"], serde_json::Value::Null);
        assert_eq!(json["received_at"], "2024-03-01T10:15:04Z");
    }

    #[test]
    fn summary_needs_a_uid_and_tolerates_missing_items() {
        assert_eq!(
            summary_from_fetch(&fetch_attrs(
                "* 1 FETCH (FLAGS (\\Seen) RFC822.SIZE 10)\r\n"
            )),
            None
        );
        let summary = summary_from_fetch(&fetch_attrs(
            "* 1 FETCH (UID 9 ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n",
        ))
        .expect("has a UID");
        assert_eq!(summary.uid, 9);
        assert_eq!(summary.subject, None);
        assert_eq!(summary.date, None);
        assert_eq!(summary.received_at, None);
        assert!(summary.from.is_empty() && summary.flags.is_empty());
        assert!(!summary.has_attachments);
        assert_eq!(summary.size, 0);
    }

    #[test]
    fn internal_dates() {
        let cases = [
            ("17-Jul-1996 02:44:25 -0700", Some("1996-07-17T09:44:25Z")),
            (" 7-Jul-1996 02:44:25 +0000", Some("1996-07-07T02:44:25Z")),
            ("01-Jan-2024 00:30:00 +0100", Some("2023-12-31T23:30:00Z")),
            ("31-Feb-2024 10:00:00 +0000", None),
            ("17-Jul-1996", None),
            ("", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(parse_internal_date(raw).as_deref(), expected, "{raw:?}");
        }
    }

    #[test]
    fn header_dates() {
        let cases: [(&str, Option<&str>); 22] = [
            (
                "Fri, 01 Mar 2024 11:15:00 +0100",
                Some("2024-03-01T10:15:00Z"),
            ),
            ("1 Mar 2024 10:15:00 +0000", Some("2024-03-01T10:15:00Z")),
            (
                "Fri, 1 Mar 2024 11:15:00 +0100 (CET)",
                Some("2024-03-01T10:15:00Z"),
            ),
            (
                "Fri, 01 Mar 2024 10:15:00 GMT",
                Some("2024-03-01T10:15:00Z"),
            ),
            ("Fri, 01 Mar 2024 10:15:00 UT", Some("2024-03-01T10:15:00Z")),
            (
                "Fri, 01 Mar 2024 05:15:00 EST",
                Some("2024-03-01T10:15:00Z"),
            ),
            ("Fri, 01 Mar 2024 10:15 +0000", Some("2024-03-01T10:15:00Z")),
            (
                "Fri, 01 Mar 24 10:15:00 +0000",
                Some("2024-03-01T10:15:00Z"),
            ),
            (
                "Sat, 01 Mar 99 10:15:00 +0000",
                Some("1999-03-01T10:15:00Z"),
            ),
            (
                "Fri, 01 Mar 124 10:15:00 +0000",
                Some("2024-03-01T10:15:00Z"),
            ),
            ("Fri Mar  1 10:15:00 2024", Some("2024-03-01T10:15:00Z")),
            (
                "Friday, 1 March 2024 11:15:00 +01:00",
                Some("2024-03-01T10:15:00Z"),
            ),
            (
                "Thu, 29 Feb 2024 23:30:00 -0700",
                Some("2024-03-01T06:30:00Z"),
            ),
            (
                "Fri, 01 Mar 2024\r\n 11:15:00 +0100",
                Some("2024-03-01T10:15:00Z"),
            ),
            (
                "Sun, 31 Dec 2023 23:59:60 +0000",
                Some("2023-12-31T23:59:59Z"),
            ),
            ("2024-03-01T11:15:00+01:00", Some("2024-03-01T10:15:00Z")),
            ("2024-03-01 10:15:00", Some("2024-03-01T10:15:00Z")),
            (
                "Fri, 01-Mar-2024 10:15:00 -0000",
                Some("2024-03-01T10:15:00Z"),
            ),
            ("Fri, 31 Feb 2024 10:15:00 +0000", None),
            ("Fri, 01 Mar 2024", None),
            ("not a date", None),
            ("", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                parse_rfc2822_date(raw.as_bytes()).as_deref(),
                expected,
                "{raw:?}"
            );
        }
        assert_eq!(
            parse_rfc2822_date(b"Fri, 01 Mar 2024 10:15:00 +0000 \xff"),
            Some("2024-03-01T10:15:00Z".into())
        );
        assert_eq!(parse_rfc2822_date(b"01 Mar 99999 10:15:00 +0000"), None);
        let nested_iso = "2024-03-01T".repeat(100_000);
        assert_eq!(parse_rfc2822_date(nested_iso.as_bytes()), None);
        let deep_comment = format!("01 Mar 2024 10:15:00 +0000 {}", "(".repeat(100_000));
        assert_eq!(
            parse_rfc2822_date(deep_comment.as_bytes()).as_deref(),
            Some("2024-03-01T10:15:00Z")
        );
    }
}
