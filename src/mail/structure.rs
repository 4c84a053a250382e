//! Walking an IMAP BODYSTRUCTURE into what a mail reader shows: the plain-text body, the
//! HTML body and the attachments, each with the IMAP section number that fetches it.
//!
//! Section numbers follow RFC 3501 §6.4.5: the children of a multipart are numbered from 1
//! below the multipart's own number, the top-level multipart having none, and a message
//! that is not multipart has its body as part "1". A `message/rfc822` part is an
//! attachment in its own right, downloadable whole as an `.eml`, so the walk does not
//! descend into it.
//!
//! Which part is body and which is attachment follows what mail readers do:
//! * In `multipart/alternative` the last `text/plain` alternative is the text body and the
//!   last alternative with HTML the HTML body (RFC 2046 §5.1.4 orders alternatives by
//!   increasing faithfulness). Alternatives holding no body, such as the `text/calendar`
//!   of an invitation, contribute their attachments.
//! * In `multipart/related` the root (the `start` parameter's part, else the first) is the
//!   body; the other parts are resources it refers to. Those with a Content-ID are inline
//!   attachments (the HTML shows them through `cid:` URLs) unless their disposition says
//!   `attachment`.
//! * Anywhere else, `text/plain` and `text/html` parts without an `attachment` disposition
//!   and without a file name are body, kept in order so that the caller can join several;
//!   every other part is an attachment.
//!
//! Broken structures read as mail clients read them: a type without a subtype (`multipart/`,
//! `text`, `/`) is text/plain (RFC 2045 §5.2), and a multipart without a boundary parameter,
//! which servers split into one empty part, is one text/plain part holding its whole body.

use async_imap::imap_proto::{
    BodyContentCommon, BodyContentSinglePart, BodyParams, BodyStructure, ContentEncoding, Envelope,
};

use super::content::{decode_charset, first_field};
use super::part_id;
use super::summary::decode_header_text;
use super::transfer::{decode_all, decoded_base64_len};
use super::uuencode;

/// Bounds on the BODYSTRUCTURE a walk accepts, so that a hostile message costs bounded
/// time, memory and stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkLimits {
    /// Deepest section number accepted, counted in components ("1.2.3" is depth 3).
    pub max_depth: usize,
    /// Most parts accepted, multipart containers included.
    pub max_parts: usize,
}

impl Default for WalkLimits {
    fn default() -> Self {
        Self {
            max_depth: part_id::MAX_NUMBERS,
            max_parts: 1000,
        }
    }
}

/// A BODYSTRUCTURE beyond the [`WalkLimits`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StructureError {
    /// Multiparts are nested deeper than allowed.
    #[error("MIME structure nested deeper than {max_depth} levels")]
    TooDeep {
        /// The limit that was exceeded.
        max_depth: usize,
    },
    /// The message has more parts than allowed.
    #[error("MIME structure has more than {max_parts} parts")]
    TooManyParts {
        /// The limit that was exceeded.
        max_parts: usize,
    },
}

/// A message's parts, sorted into what a reader displays and what it offers for download.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageParts {
    /// `text/plain` body parts, in message order.
    pub text_parts: Vec<BodyPart>,
    /// `text/html` body parts, in message order.
    pub html_parts: Vec<BodyPart>,
    /// Attachments, inline ones included, in message order.
    pub attachments: Vec<BodyPart>,
    /// Number of parts walked, multipart containers included.
    pub part_count: usize,
}

impl MessageParts {
    /// Whether the message has an attachment a reader would show as one: a part that is
    /// not merely an image embedded in the HTML body.
    pub fn has_attachments(&self) -> bool {
        self.attachments.iter().any(|part| !part.inline)
    }
}

/// One leaf part of a message, as described by its BODYSTRUCTURE entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPart {
    /// IMAP section number, e.g. "1", "2.1"; for a uuencoded file inside text part `n`, the
    /// API's id `n.<index>` (see [`MessageParts::embedded_file_part`]).
    pub part_id: String,
    /// Lower-case `type/subtype`.
    pub content_type: String,
    /// The `charset` parameter, as the message declares it.
    pub charset: Option<String>,
    /// Content-Transfer-Encoding.
    pub encoding: TransferEncoding,
    /// Size of the part as stored, before transfer decoding.
    pub encoded_size: u32,
    /// File name from the Content-Disposition `filename` or the Content-Type `name`
    /// parameter, RFC 2231 and RFC 2047 decoded; for an attached message without one,
    /// made from its subject.
    pub filename: Option<String>,
    /// Content-ID, without its angle brackets.
    pub content_id: Option<String>,
    /// Whether the part is embedded in the HTML body rather than offered as a file.
    pub inline: bool,
    /// Lower-case Content-Disposition type (`inline`, `attachment`), when present.
    pub disposition: Option<String>,
    /// Size once transfer-decoded, when known exactly (see [`BodyPart::size_probe`]).
    pub decoded_size: Option<u64>,
    /// The content is the message's whole body, `BODY[TEXT]`, rather than section `part_id`:
    /// a top-level multipart without a boundary, which servers split into one empty part.
    pub whole_body: bool,
}

/// Content-Transfer-Encoding of a part (RFC 2045 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEncoding {
    /// `7bit`, also the default when the header is absent.
    SevenBit,
    /// `8bit`.
    EightBit,
    /// `binary`.
    Binary,
    /// `base64`.
    Base64,
    /// `quoted-printable`.
    QuotedPrintable,
    /// `x-uuencode`, `uuencode`, `x-uue` or `uue`: a uuencoded file (see
    /// [`uuencode`](super::uuencode)).
    UuEncode,
    /// Any other token, lower-cased (e.g. `x-gzip64`); such content is passed on as is.
    Other(String),
}

impl TransferEncoding {
    /// Whether the content is the same before and after decoding (7bit, 8bit, binary, and
    /// unknown encodings, which cannot be undone and are passed on as they are).
    pub fn is_identity(&self) -> bool {
        match self {
            Self::SevenBit | Self::EightBit | Self::Binary | Self::Other(_) => true,
            Self::Base64 | Self::QuotedPrintable | Self::UuEncode => false,
        }
    }
}

impl From<&ContentEncoding<'_>> for TransferEncoding {
    fn from(encoding: &ContentEncoding<'_>) -> Self {
        match encoding {
            ContentEncoding::SevenBit => Self::SevenBit,
            ContentEncoding::EightBit => Self::EightBit,
            ContentEncoding::Binary => Self::Binary,
            ContentEncoding::Base64 => Self::Base64,
            ContentEncoding::QuotedPrintable => Self::QuotedPrintable,
            ContentEncoding::Other(other) => {
                let token = other.trim().to_ascii_lowercase();
                match token.as_str() {
                    "x-uuencode" | "uuencode" | "x-uue" | "uue" => Self::UuEncode,
                    _ => Self::Other(token),
                }
            }
        }
    }
}

/// An attachment as the HTTP API lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Attachment {
    /// IMAP section number; pass it back to download the attachment. A uuencoded file inside
    /// the text of part `n` is listed as `n.1`, `n.2`… (IMAP numbers no parts below a text
    /// part, so these ids name nothing else).
    #[schema(example = "2")]
    pub part_id: String,
    /// File name suggested by the message, if any.
    #[schema(example = "Q1 report.pdf")]
    pub filename: Option<String>,
    /// Lower-case media type.
    #[schema(example = "application/pdf")]
    pub content_type: String,
    /// Size in bytes once decoded, which is what a download delivers. Exact, except where
    /// knowing it would mean reading much of the part: quoted-printable or uuencoded parts
    /// over 1 MiB (or past 4 MiB of them in one message), and base64 over 1 MiB that is not
    /// written in lines of one width, which no encoder does; those are estimated from the
    /// encoded size.
    #[schema(example = 182_044)]
    pub size: u64,
    /// Content-ID without angle brackets, for resolving `cid:` URLs in the HTML body.
    #[schema(example = json!(null))]
    pub content_id: Option<String>,
    /// True for resources embedded in the HTML body (e.g. images shown through `cid:`).
    #[schema(example = false)]
    pub inline: bool,
}

/// Length of a MIME base64 line (RFC 2045 §6.8): 76 characters and a CRLF.
const BASE64_LINE_LEN: u64 = 78;

/// Bytes read from each end of a base64 part to learn its decoded size exactly.
pub const PROBE_LEN: u32 = 256;

/// Largest part read whole to learn its decoded size, when its ends do not tell.
pub const MAX_WHOLE_PROBE: u32 = 1024 * 1024;

/// What the message view reads of an attachment to list its exact size (and, for a
/// uuencoded one, its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeProbe {
    /// Nothing: the size is known (no transfer encoding), or too costly to learn.
    None,
    /// The whole part, `<0.len>`.
    Whole(u32),
    /// The first and last [`PROBE_LEN`] bytes: `<0.PROBE_LEN>` and `<offset.PROBE_LEN>`.
    Ends {
        /// Where the tail starts.
        tail_offset: u32,
    },
}

impl BodyPart {
    /// The decoded size: exact when known, else [`BodyPart::decoded_size_estimate`].
    pub fn decoded_size(&self) -> u64 {
        self.decoded_size
            .unwrap_or_else(|| self.decoded_size_estimate())
    }

    /// Estimates the decoded size from the encoded size without fetching the part.
    ///
    /// Base64 is assumed to be in the usual 76-character lines, uuencode in lines of 45 bytes;
    /// quoted-printable is mostly text that decodes to about its own size, so no attempt is
    /// made there.
    pub fn decoded_size_estimate(&self) -> u64 {
        let encoded = u64::from(self.encoded_size);
        match self.encoding {
            TransferEncoding::Base64 => {
                let line_breaks = encoded.div_ceil(BASE64_LINE_LEN) * 2;
                encoded.saturating_sub(line_breaks) / 4 * 3
            }
            // `M` + 60 characters + CRLF per 45 bytes.
            TransferEncoding::UuEncode => encoded / 63 * 45,
            TransferEncoding::SevenBit
            | TransferEncoding::EightBit
            | TransferEncoding::Binary
            | TransferEncoding::QuotedPrintable
            | TransferEncoding::Other(_) => encoded,
        }
    }

    /// What to read of this part to know its decoded size exactly: base64 by its ends (the
    /// line width at the start, the padding at the end), the other encodings whole up to
    /// [`MAX_WHOLE_PROBE`]. Parts without a transfer encoding need nothing.
    pub fn size_probe(&self) -> SizeProbe {
        let size = self.encoded_size;
        if self.decoded_size.is_some() || size == 0 {
            return SizeProbe::None;
        }
        match self.encoding {
            TransferEncoding::Base64 if size > 2 * PROBE_LEN => SizeProbe::Ends {
                tail_offset: size - PROBE_LEN,
            },
            TransferEncoding::Base64
            | TransferEncoding::QuotedPrintable
            | TransferEncoding::UuEncode
                if size <= MAX_WHOLE_PROBE =>
            {
                SizeProbe::Whole(size)
            }
            _ => SizeProbe::None,
        }
    }

    /// Learns the exact decoded size of a base64 part from its first and last bytes
    /// ([`SizeProbe::Ends`]); leaves it unknown when they do not tell (lines of different
    /// widths, junk), for a whole read to settle.
    pub fn learn_from_ends(&mut self, head: &[u8], tail: &[u8]) {
        if self.encoding == TransferEncoding::Base64 {
            self.decoded_size = decoded_base64_len(u64::from(self.encoded_size), head, tail);
        }
    }

    /// Learns the exact decoded size from the whole part; a uuencoded part without a file
    /// name of its own takes the one on its `begin` line.
    pub fn learn_from_whole(&mut self, raw: &[u8]) {
        self.decoded_size = Some(decode_all(&self.encoding, raw).len() as u64);
        if self.encoding == TransferEncoding::UuEncode && self.filename.is_none() {
            self.filename = raw
                .split(|&byte| byte == b'\n')
                .take(64)
                .find_map(uuencode::begin_line);
        }
    }

    /// Whether the file name may have been damaged on its way through the server's
    /// BODYSTRUCTURE: imap-proto reads undeclared 8-bit bytes there as U+FFFD and keeps the
    /// escapes of IMAP quoted strings, so a name with either is read again from the part's
    /// own header ([`BodyPart::learn_filename_from_header`]).
    pub fn filename_needs_header(&self) -> bool {
        self.filename
            .as_deref()
            .is_some_and(|name| name.contains(['\u{fffd}', '\\']))
    }

    /// Takes the file name from the part's raw MIME header (`BODY.PEEK[<part>.MIME]`, or the
    /// message header for a message that is one part), where it is exactly as written.
    pub fn learn_filename_from_header(&mut self, raw_header: &[u8]) {
        if let Some(name) = filename_from_header(raw_header) {
            self.filename = Some(name);
        }
    }

    /// The part as an API [`Attachment`].
    pub fn to_attachment(&self) -> Attachment {
        Attachment {
            part_id: self.part_id.clone(),
            filename: self.filename.clone(),
            content_type: self.content_type.clone(),
            size: self.decoded_size(),
            content_id: self.content_id.clone(),
            inline: self.inline,
        }
    }
}

impl MessageParts {
    /// Lists the uuencoded files inside the text/plain body parts as attachments, each after
    /// the attachments before its text part, with the id `<text part>.<n>` (n from 1), which
    /// no real part can have: IMAP numbers no parts below a leaf. `bodies` holds the raw
    /// (transfer-encoded) text parts by part id, as the message view fetches them.
    pub fn add_embedded_files(&mut self, bodies: &std::collections::HashMap<String, Vec<u8>>) {
        for text in &self.text_parts {
            if text.content_type != "text/plain" {
                continue;
            }
            let Some(raw) = bodies.get(&text.part_id) else {
                continue;
            };
            let files = embedded_files(raw, text);
            if files.is_empty() {
                continue;
            }
            let at = self
                .attachments
                .iter()
                .position(|part| section_after(&part.part_id, &text.part_id))
                .unwrap_or(self.attachments.len());
            self.attachments.splice(at..at, files);
        }
    }

    /// The text part holding the uuencoded file that `part_id` (`<text part>.<n>`) names,
    /// and `n`, if `part_id` is such an id.
    pub fn embedded_file_part(&self, part_id: &str) -> Option<(&BodyPart, usize)> {
        let (parent, index) = part_id.rsplit_once('.')?;
        let index: usize = index.parse().ok().filter(|&index| index >= 1)?;
        let text = self
            .text_parts
            .iter()
            .find(|part| part.part_id == parent && part.content_type == "text/plain")?;
        Some((text, index))
    }
}

/// The uuencoded files in a text part, given its raw (transfer-encoded) content, as parts
/// with their API ids, names, guessed types and exact sizes; see
/// [`MessageParts::add_embedded_files`].
pub fn embedded_files(raw: &[u8], text: &BodyPart) -> Vec<BodyPart> {
    let decoded = decode_all(&text.encoding, raw);
    uuencode::find_blocks(&decoded)
        .into_iter()
        .enumerate()
        .map(|(index, block)| BodyPart {
            part_id: format!("{}.{}", text.part_id, index + 1),
            content_type: uuencode::media_type_of(&block.name).to_owned(),
            charset: None,
            encoding: TransferEncoding::UuEncode,
            encoded_size: u32::try_from(block.range.len()).unwrap_or(u32::MAX),
            decoded_size: Some(block.data.len() as u64),
            filename: Some(block.name),
            content_id: None,
            inline: false,
            disposition: Some("attachment".to_owned()),
            whole_body: false,
        })
        .filter(|part| part_id::check(&part.part_id).is_ok())
        .collect()
}

/// Whether section `id` comes after section `before` in message order ("2" after "1.3").
fn section_after(id: &str, before: &str) -> bool {
    let numbers = |id: &str| -> Vec<u64> { id.split('.').filter_map(|n| n.parse().ok()).collect() };
    numbers(id) > numbers(before)
}

/// Sorts a BODYSTRUCTURE's parts into text body, HTML body and attachments.
///
/// Fails when the structure exceeds `limits`; the recursion depth is bounded by
/// `limits.max_depth`. Every part id it returns is one [`part_id::check`] accepts, so the
/// caller can fetch and download every part it lists: depths beyond [`part_id::MAX_NUMBERS`]
/// and part counts beyond [`part_id::MAX_NUMBER`] count as those limits.
pub fn walk(
    structure: &BodyStructure<'_>,
    limits: &WalkLimits,
) -> Result<MessageParts, StructureError> {
    let limits = WalkLimits {
        max_depth: limits.max_depth.min(part_id::MAX_NUMBERS),
        max_parts: limits.max_parts.min(part_id::MAX_NUMBER),
    };
    let mut walker = Walker {
        limits: &limits,
        part_count: 0,
    };
    let root_id = match structure {
        BodyStructure::Multipart { .. } => SectionId::root(),
        BodyStructure::Basic { .. }
        | BodyStructure::Text { .. }
        | BodyStructure::Message { .. } => SectionId::root().child(1),
    };
    let mut sorted = walker.node(structure, &root_id, Placement::Body)?;
    if let BodyStructure::Text { other, .. } = structure
        && other.octets == 0
    {
        // Cyrus describes a message whose multipart has no boundary as one empty text part,
        // and serves that part empty too; the message's own body is the text mail clients
        // show, and for an empty single part it is empty as well.
        for part in &mut sorted.text {
            part.whole_body = true;
        }
    }
    Ok(MessageParts {
        text_parts: sorted.text,
        html_parts: sorted.html,
        attachments: sorted.attachments,
        part_count: walker.part_count,
    })
}

/// Whether the message has an attachment a reader would show as one (see
/// [`MessageParts::has_attachments`]). A structure beyond the default [`WalkLimits`]
/// counts as having none: it cannot be shown as a message either.
pub fn has_attachments(structure: &BodyStructure<'_>) -> bool {
    walk(structure, &WalkLimits::default()).is_ok_and(|parts| parts.has_attachments())
}

/// An IMAP section number under construction.
#[derive(Debug, Clone)]
struct SectionId {
    text: String,
    depth: usize,
}

impl SectionId {
    /// The top-level multipart, which has no number of its own.
    fn root() -> Self {
        Self {
            text: String::new(),
            depth: 0,
        }
    }

    fn child(&self, index: usize) -> Self {
        let text = if self.text.is_empty() {
            index.to_string()
        } else {
            format!("{}.{index}", self.text)
        };
        Self {
            text,
            depth: self.depth + 1,
        }
    }
}

/// Where a part sits, as far as choosing body or attachment goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Where body text may be found.
    Body,
    /// A non-root part of a `multipart/related`: a resource of the body, never body itself.
    RelatedResource,
}

/// Parts found under one node of the structure.
#[derive(Debug, Default)]
struct Sorted {
    text: Vec<BodyPart>,
    html: Vec<BodyPart>,
    attachments: Vec<BodyPart>,
}

impl Sorted {
    fn has_body(&self) -> bool {
        !self.text.is_empty() || !self.html.is_empty()
    }

    fn append(&mut self, other: Sorted) {
        self.text.extend(other.text);
        self.html.extend(other.html);
        self.attachments.extend(other.attachments);
    }
}

struct Walker<'l> {
    limits: &'l WalkLimits,
    part_count: usize,
}

impl Walker<'_> {
    fn node(
        &mut self,
        node: &BodyStructure<'_>,
        id: &SectionId,
        placement: Placement,
    ) -> Result<Sorted, StructureError> {
        if id.depth > self.limits.max_depth {
            return Err(StructureError::TooDeep {
                max_depth: self.limits.max_depth,
            });
        }
        self.part_count += 1;
        if self.part_count > self.limits.max_parts {
            return Err(StructureError::TooManyParts {
                max_parts: self.limits.max_parts,
            });
        }
        match node {
            BodyStructure::Multipart { common, bodies, .. } => {
                self.multipart(common, bodies, id, placement)
            }
            BodyStructure::Basic { common, other, .. }
            | BodyStructure::Text { common, other, .. } => Ok(leaf(
                body_part(common, other, id, placement, None),
                placement,
            )),
            BodyStructure::Message {
                common,
                other,
                envelope,
                ..
            } => Ok(leaf(
                body_part(common, other, id, placement, Some(envelope)),
                placement,
            )),
        }
    }

    fn multipart(
        &mut self,
        common: &BodyContentCommon<'_>,
        bodies: &[BodyStructure<'_>],
        id: &SectionId,
        placement: Placement,
    ) -> Result<Sorted, StructureError> {
        if is_unsplit(common, bodies) {
            // Nothing delimits parts: the server found one empty part and the text is in the
            // multipart's body, which mail clients show as plain text.
            return Ok(leaf(no_boundary_part(common, id), placement));
        }
        let subtype = common.ty.subtype.to_ascii_lowercase();
        match subtype.as_str() {
            "alternative" => self.alternative(bodies, id, placement),
            "related" => self.related(common, bodies, id, placement),
            _ => {
                let mut sorted = Sorted::default();
                for (index, body) in bodies.iter().enumerate() {
                    sorted.append(self.node(body, &id.child(index + 1), placement)?);
                }
                Ok(sorted)
            }
        }
    }

    fn alternative(
        &mut self,
        bodies: &[BodyStructure<'_>],
        id: &SectionId,
        placement: Placement,
    ) -> Result<Sorted, StructureError> {
        let mut alternatives = Vec::with_capacity(bodies.len());
        for (index, body) in bodies.iter().enumerate() {
            alternatives.push(self.node(body, &id.child(index + 1), placement)?);
        }
        let text_choice = alternatives.iter().rposition(|a| !a.text.is_empty());
        let html_choice = alternatives.iter().rposition(|a| !a.html.is_empty());

        let mut sorted = Sorted::default();
        for (index, alternative) in alternatives.into_iter().enumerate() {
            let is_text_choice = text_choice == Some(index);
            let is_html_choice = html_choice == Some(index);
            // The body parts of the alternatives not chosen are other renderings of the
            // chosen ones; their attachments would be duplicates too, unless the
            // alternative has no body at all (an invitation's text/calendar).
            if !(is_text_choice || is_html_choice || !alternative.has_body()) {
                continue;
            }
            if is_text_choice {
                sorted.text.extend(alternative.text);
            }
            if is_html_choice {
                sorted.html.extend(alternative.html);
            }
            sorted.attachments.extend(alternative.attachments);
        }
        Ok(sorted)
    }

    fn related(
        &mut self,
        common: &BodyContentCommon<'_>,
        bodies: &[BodyStructure<'_>],
        id: &SectionId,
        placement: Placement,
    ) -> Result<Sorted, StructureError> {
        // RFC 2387 §3.2: `start` names the root by Content-ID; the default is the first part.
        let root = param(&common.ty.params, "start")
            .map(strip_angle_brackets)
            .and_then(|start| {
                bodies.iter().position(|body| {
                    single_part(body)
                        .and_then(|other| other.id.as_deref())
                        .is_some_and(|cid| strip_angle_brackets(cid) == start)
                })
            })
            .unwrap_or(0);
        let mut sorted = Sorted::default();
        for (index, body) in bodies.iter().enumerate() {
            let child_placement = if index == root {
                placement
            } else {
                Placement::RelatedResource
            };
            sorted.append(self.node(body, &id.child(index + 1), child_placement)?);
        }
        Ok(sorted)
    }
}

fn single_part<'a>(body: &'a BodyStructure<'_>) -> Option<&'a BodyContentSinglePart<'a>> {
    match body {
        BodyStructure::Basic { other, .. }
        | BodyStructure::Text { other, .. }
        | BodyStructure::Message { other, .. } => Some(other),
        BodyStructure::Multipart { .. } => None,
    }
}

/// Files a leaf part as body or attachment.
fn leaf(part: BodyPart, placement: Placement) -> Sorted {
    let mut sorted = Sorted::default();
    let is_body = placement == Placement::Body
        && part.disposition.as_deref() != Some("attachment")
        && part.filename.is_none();
    match part.content_type.as_str() {
        "text/plain" if is_body => sorted.text.push(part),
        "text/html" if is_body => sorted.html.push(part),
        _ => sorted.attachments.push(part),
    }
    sorted
}

/// Whether a multipart is one the server could not split for want of a boundary parameter:
/// it then lists one empty text/plain part (Dovecot does). Both signs are needed, as a server
/// may leave out a multipart's parameters altogether.
fn is_unsplit(common: &BodyContentCommon<'_>, bodies: &[BodyStructure<'_>]) -> bool {
    let no_boundary = param(&common.ty.params, "boundary").is_none_or(|b| b.trim().is_empty());
    let one_empty_text = match bodies {
        [BodyStructure::Text { common, other, .. }] => {
            other.octets == 0 && common.ty.subtype.eq_ignore_ascii_case("plain")
        }
        _ => false,
    };
    no_boundary && one_empty_text
}

/// A multipart without a boundary, as one text/plain part: its own section, or the message's
/// whole body for the top-level one (which has no section number of its own).
fn no_boundary_part(common: &BodyContentCommon<'_>, id: &SectionId) -> BodyPart {
    let whole_body = id.depth == 0;
    BodyPart {
        part_id: if whole_body {
            id.child(1).text
        } else {
            id.text.clone()
        },
        content_type: "text/plain".to_owned(),
        charset: param(&common.ty.params, "charset")
            .map(|charset| charset.trim().to_owned())
            .filter(|charset| !charset.is_empty()),
        encoding: TransferEncoding::SevenBit,
        encoded_size: 0,
        filename: None,
        content_id: None,
        inline: false,
        disposition: common
            .disposition
            .as_ref()
            .map(|d| d.ty.trim().to_ascii_lowercase()),
        decoded_size: None,
        whole_body,
    }
}

fn body_part(
    common: &BodyContentCommon<'_>,
    other: &BodyContentSinglePart<'_>,
    id: &SectionId,
    placement: Placement,
    envelope: Option<&Envelope<'_>>,
) -> BodyPart {
    let disposition = common
        .disposition
        .as_ref()
        .map(|d| d.ty.trim().to_ascii_lowercase());
    let content_id = other
        .id
        .as_deref()
        .map(strip_angle_brackets)
        .filter(|cid| !cid.is_empty())
        .map(str::to_owned);
    let content_type = media_type(&common.ty.ty, &common.ty.subtype);
    let filename = common
        .disposition
        .as_ref()
        .and_then(|d| decoded_param(&byte_params(&d.params), "filename"))
        .or_else(|| decoded_param(&byte_params(&common.ty.params), "name"))
        .or_else(|| envelope.and_then(eml_filename))
        // Outlook's TNEF wrapper is known to every mail client by this name.
        .or_else(|| (content_type == "application/ms-tnef").then(|| "winmail.dat".to_owned()));
    let inline = placement == Placement::RelatedResource
        && content_id.is_some()
        && disposition.as_deref() != Some("attachment");
    let encoding = TransferEncoding::from(&other.transfer_encoding);
    BodyPart {
        part_id: id.text.clone(),
        content_type,
        charset: param(&common.ty.params, "charset")
            .map(|charset| charset.trim().to_owned())
            .filter(|charset| !charset.is_empty()),
        decoded_size: encoding.is_identity().then_some(u64::from(other.octets)),
        encoding,
        encoded_size: other.octets,
        filename,
        content_id,
        inline,
        disposition,
        whole_body: false,
    }
}

/// Lower-case `type/subtype`; text/plain for a type without a subtype or a subtype without a
/// type (`multipart/`, `text`, `/`), as RFC 2045 §5.2 has invalid types read.
fn media_type(ty: &str, subtype: &str) -> String {
    let (ty, subtype) = (ty.trim(), subtype.trim());
    if ty.is_empty() || subtype.is_empty() {
        return "text/plain".to_owned();
    }
    format!(
        "{}/{}",
        ty.to_ascii_lowercase(),
        subtype.to_ascii_lowercase()
    )
}

fn strip_angle_brackets(id: &str) -> &str {
    let id = id.trim();
    id.strip_prefix('<')
        .and_then(|inner| inner.strip_suffix('>'))
        .unwrap_or(id)
        .trim()
}

/// Longest subject, in characters, used for an attached message's file name.
const MAX_SUBJECT_FILENAME_CHARS: usize = 120;

/// A file name for an attached message that has none: its subject, made safe as a file
/// name, plus `.eml`.
fn eml_filename(envelope: &Envelope<'_>) -> Option<String> {
    let subject = decode_header_text(envelope.subject.as_deref()?);
    let name: String = subject
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if matches!(c, '/' | '\\') { '_' } else { c })
        .take(MAX_SUBJECT_FILENAME_CHARS)
        .collect();
    let name = name.trim();
    (!name.is_empty()).then(|| format!("{name}.eml"))
}

fn param<'a>(params: &'a BodyParams<'_>, name: &str) -> Option<&'a str> {
    params
        .as_deref()?
        .iter()
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_ref())
}

/// BODYSTRUCTURE parameters as (name, value bytes).
fn byte_params<'a>(params: &'a BodyParams<'_>) -> Vec<(&'a str, &'a [u8])> {
    params
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|(key, value)| (key.as_ref(), value.as_bytes()))
        .collect()
}

/// The decoded value of parameter `name`: its RFC 2231 form (`name*`, or the continuations
/// `name*0`, `name*1*`, ...) when present, else the plain one, in which many mailers put
/// RFC 2047 encoded words or undeclared 8-bit text.
fn decoded_param(params: &[(&str, &[u8])], name: &str) -> Option<String> {
    let value = rfc2231_param(params, name).or_else(|| {
        params
            .iter()
            .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| decode_header_text(value))
    })?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// Most continuation segments of one parameter joined (RFC 2231 §3).
const MAX_PARAM_SEGMENTS: usize = 256;

fn rfc2231_param(params: &[(&str, &[u8])], name: &str) -> Option<String> {
    let mut segments: Vec<Segment<'_>> = Vec::new();
    for &(key, value) in params {
        let Some(rest) =
            strip_prefix_ignore_case(key.trim(), name).and_then(|rest| rest.strip_prefix('*'))
        else {
            continue;
        };
        if rest.is_empty() {
            // `name*=charset'lang'value`: a single extended segment.
            return Some(join_segments(&[Segment {
                index: 0,
                extended: true,
                value,
            }]));
        }
        let (number, extended) = match rest.strip_suffix('*') {
            Some(number) => (number, true),
            None => (rest, false),
        };
        if let Ok(index) = number.parse::<usize>()
            && index < MAX_PARAM_SEGMENTS
        {
            segments.push(Segment {
                index,
                extended,
                value,
            });
        }
    }
    segments.sort_by_key(|segment| segment.index);
    if segments.first().is_none_or(|segment| segment.index != 0) {
        return None;
    }
    Some(join_segments(&segments))
}

/// One RFC 2231 parameter segment: `name*<index>` or, when `extended`, `name*<index>*`.
struct Segment<'a> {
    index: usize,
    extended: bool,
    value: &'a [u8],
}

/// Joins segments sorted by index, up to the first gap in the numbering.
fn join_segments(segments: &[Segment<'_>]) -> String {
    // Only the first segment may name the charset; later ones are bytes in that charset.
    let mut charset = None;
    let mut bytes = Vec::new();
    for (position, segment) in segments.iter().enumerate() {
        if segment.index != position {
            break;
        }
        if !segment.extended {
            bytes.extend_from_slice(segment.value);
        } else if position == 0 {
            let (first_charset, encoded) = split_extended_value(segment.value);
            charset = first_charset;
            bytes.extend(percent_encoding::percent_decode(encoded));
        } else {
            bytes.extend(percent_encoding::percent_decode(segment.value));
        }
    }
    let charset = charset.map(String::from_utf8_lossy);
    decode_charset(charset.as_deref(), &bytes)
}

/// Splits `charset'language'text` into charset (if named) and text. A value without the
/// two quotes is taken as text alone, as some mailers write it.
fn split_extended_value(value: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let mut pieces = value.splitn(3, |&byte| byte == b'\'');
    match (pieces.next(), pieces.next(), pieces.next()) {
        (Some(charset), Some(_language), Some(text)) => {
            let charset = charset.trim_ascii();
            ((!charset.is_empty()).then_some(charset), text)
        }
        _ => (None, value),
    }
}

/// The file name in a raw MIME header: the Content-Disposition `filename`, else the
/// Content-Type `name`, decoded as from a BODYSTRUCTURE.
pub fn filename_from_header(raw_header: &[u8]) -> Option<String> {
    let params = |field: &str| first_field(raw_header, field).map(header_params);
    params("Content-Disposition")
        .and_then(|params| decoded_param(&borrowed(&params), "filename"))
        .or_else(|| {
            params("Content-Type").and_then(|params| decoded_param(&borrowed(&params), "name"))
        })
}

fn borrowed(params: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    params
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_slice()))
        .collect()
}

/// The `; name=value` parameters of a raw Content-Type or Content-Disposition value (RFC 2045
/// §5.1), quoted strings unquoted; folding is whitespace.
fn header_params(value: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut params = Vec::new();
    let mut rest = match value.iter().position(|&byte| byte == b';') {
        Some(at) => &value[at + 1..],
        None => return params,
    };
    loop {
        rest = rest.trim_ascii_start();
        let Some(equals) = rest.iter().position(|&byte| byte == b'=' || byte == b';') else {
            return params;
        };
        if rest[equals] == b';' {
            rest = &rest[equals + 1..];
            continue;
        }
        let key = String::from_utf8_lossy(rest[..equals].trim_ascii()).into_owned();
        rest = rest[equals + 1..].trim_ascii_start();
        let value = if let Some(quoted) = rest.strip_prefix(b"\"") {
            let mut value = Vec::new();
            let mut escaped = false;
            let mut end = quoted.len();
            for (position, &byte) in quoted.iter().enumerate() {
                match byte {
                    _ if escaped => {
                        value.push(byte);
                        escaped = false;
                    }
                    b'\\' => escaped = true,
                    b'"' => {
                        end = position + 1;
                        break;
                    }
                    b'\r' | b'\n' => {}
                    _ => value.push(byte),
                }
            }
            rest = &quoted[end.min(quoted.len())..];
            value
        } else {
            let end = rest
                .iter()
                .position(|&byte| byte == b';')
                .unwrap_or(rest.len());
            let value = rest[..end].trim_ascii().to_vec();
            rest = &rest[end..];
            value
        };
        if !key.is_empty() {
            params.push((key, value));
        }
        match rest.iter().position(|&byte| byte == b';') {
            Some(at) => rest = &rest[at + 1..],
            None => return params,
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_imap::imap_proto::{AttributeValue, Response};

    /// Parses a FETCH response line as a server sends it and walks its BODYSTRUCTURE.
    fn parse_and_walk(line: &str, limits: &WalkLimits) -> Result<MessageParts, StructureError> {
        let (rest, response) = Response::parse(line.as_bytes()).expect("test line parses");
        assert!(
            rest.is_empty(),
            "unparsed: {:?}",
            String::from_utf8_lossy(rest)
        );
        let Response::Fetch(_, attrs) = response else {
            panic!("not a FETCH response: {response:?}");
        };
        let structure = attrs
            .iter()
            .find_map(|attr| match attr {
                AttributeValue::BodyStructure(structure) => Some(structure),
                _ => None,
            })
            .expect("BODYSTRUCTURE present");
        walk(structure, limits)
    }

    fn walk_line(line: &str) -> MessageParts {
        parse_and_walk(line, &WalkLimits::default()).expect("walk succeeds")
    }

    fn ids(parts: &[BodyPart]) -> Vec<&str> {
        parts.iter().map(|part| part.part_id.as_str()).collect()
    }

    const PLAIN: &str = "* 1 FETCH (UID 5 BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 1315 42 NIL NIL NIL NIL))\r\n";

    const ALTERNATIVE: &str = "* 1 FETCH (UID 5 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 226 8 NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 1460 30 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"000000000000d0c9a905f3a1b2c3\") NIL NIL NIL))\r\n";

    const MIXED_WITH_PDF: &str = "* 1 FETCH (UID 5 BODYSTRUCTURE (((\"text\" \"plain\" (\"charset\" \"UTF-8\") NIL NIL \"7bit\" 302 10 NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"UTF-8\") NIL NIL \"quoted-printable\" 1712 35 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"alt-boundary\") NIL NIL NIL)(\"application\" \"pdf\" (\"name\" \"Q1 report.pdf\") NIL NIL \"base64\" 249116 NIL (\"attachment\" (\"filename\" \"Q1 report.pdf\" \"size\" \"182044\")) NIL NIL) \"mixed\" (\"boundary\" \"mixed-boundary\") NIL NIL NIL))\r\n";

    const RELATED_INLINE_IMAGE: &str = "* 1 FETCH (UID 5 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 120 4 NIL NIL NIL NIL)((\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 980 20 NIL NIL NIL NIL)(\"image\" \"png\" (\"name\" \"logo.png\") \"<logo@example.com>\" NIL \"base64\" 4056 NIL (\"inline\" (\"filename\" \"logo.png\")) NIL NIL) \"related\" (\"boundary\" \"rel\" \"type\" \"text/html\") NIL NIL NIL) \"alternative\" (\"boundary\" \"alt\") NIL NIL NIL))\r\n";

    const ATTACHED_MESSAGE: &str = "* 1 FETCH (UID 5 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 40 2 NIL NIL NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 1032 (\"Mon, 04 Mar 2024 09:12:00 +0100\" \"=?UTF-8?Q?Re=3A_Caf=C3=A9_meeting?=\" ((\"Bob\" NIL \"bob\" \"example.org\")) ((\"Bob\" NIL \"bob\" \"example.org\")) ((\"Bob\" NIL \"bob\" \"example.org\")) ((NIL NIL \"alice\" \"example.com\")) NIL NIL NIL \"<inner@example.org>\") ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 1 NIL NIL NIL NIL)(\"image\" \"jpeg\" NIL NIL NIL \"base64\" 600 NIL (\"attachment\" (\"filename\" \"a.jpg\")) NIL NIL) \"mixed\" (\"boundary\" \"inner\") NIL NIL NIL) 30 NIL (\"attachment\" NIL) NIL NIL) \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL))\r\n";

    const RFC2231_FILENAME: &str = "* 1 FETCH (UID 5 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL)(\"application\" \"pdf\" NIL NIL NIL \"base64\" 7800 NIL (\"attachment\" (\"filename*\" \"UTF-8''%E2%82%AC%20rates.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL))\r\n";

    #[test]
    fn plain_text_message_is_part_1() {
        let parts = walk_line(PLAIN);
        assert_eq!(ids(&parts.text_parts), ["1"]);
        assert!(parts.html_parts.is_empty());
        assert!(parts.attachments.is_empty());
        assert_eq!(parts.part_count, 1);
        let text = &parts.text_parts[0];
        assert_eq!(text.content_type, "text/plain");
        assert_eq!(text.charset.as_deref(), Some("utf-8"));
        assert_eq!(text.encoding, TransferEncoding::QuotedPrintable);
        assert_eq!(text.encoded_size, 1315);
        assert!(!parts.has_attachments());
    }

    #[test]
    fn alternative_yields_text_and_html() {
        let parts = walk_line(ALTERNATIVE);
        assert_eq!(ids(&parts.text_parts), ["1"]);
        assert_eq!(ids(&parts.html_parts), ["2"]);
        assert!(parts.attachments.is_empty());
        assert_eq!(parts.part_count, 3);
    }

    #[test]
    fn mixed_alternative_with_pdf() {
        let parts = walk_line(MIXED_WITH_PDF);
        assert_eq!(ids(&parts.text_parts), ["1.1"]);
        assert_eq!(ids(&parts.html_parts), ["1.2"]);
        assert_eq!(ids(&parts.attachments), ["2"]);
        let pdf = &parts.attachments[0];
        assert_eq!(pdf.filename.as_deref(), Some("Q1 report.pdf"));
        assert_eq!(pdf.content_type, "application/pdf");
        assert_eq!(pdf.disposition.as_deref(), Some("attachment"));
        assert!(!pdf.inline);
        assert!(parts.has_attachments());
        let attachment = pdf.to_attachment();
        assert_eq!(attachment.part_id, "2");
        // 249116 bytes of base64 in 76-character lines hold 182044 bytes (±padding).
        assert!(
            (182_040..=182_046).contains(&attachment.size),
            "{}",
            attachment.size
        );
    }

    #[test]
    fn related_image_is_inline_attachment() {
        let parts = walk_line(RELATED_INLINE_IMAGE);
        assert_eq!(ids(&parts.text_parts), ["1"]);
        assert_eq!(ids(&parts.html_parts), ["2.1"]);
        assert_eq!(ids(&parts.attachments), ["2.2"]);
        let image = &parts.attachments[0];
        assert!(image.inline);
        assert_eq!(image.content_id.as_deref(), Some("logo@example.com"));
        assert_eq!(image.filename.as_deref(), Some("logo.png"));
        assert!(!parts.has_attachments());
    }

    #[test]
    fn attached_message_is_one_attachment() {
        let parts = walk_line(ATTACHED_MESSAGE);
        assert_eq!(ids(&parts.text_parts), ["1"]);
        assert_eq!(ids(&parts.attachments), ["2"]);
        let message = &parts.attachments[0];
        assert_eq!(message.content_type, "message/rfc822");
        assert_eq!(message.filename.as_deref(), Some("Re: Café meeting.eml"));
        assert!(parts.has_attachments());
        // The attached message's own parts are not walked.
        assert_eq!(parts.part_count, 3);
    }

    #[test]
    fn rfc2231_filename() {
        let parts = walk_line(RFC2231_FILENAME);
        assert_eq!(ids(&parts.attachments), ["2"]);
        assert_eq!(
            parts.attachments[0].filename.as_deref(),
            Some("€ rates.pdf")
        );
    }

    #[test]
    fn rfc2231_continuations_and_charsets() {
        let params: BodyParams<'_> = Some(vec![
            ("filename*1*".into(), "%E9t%E9.txt".into()),
            ("filename*0*".into(), "iso-8859-1'fr'r%E9sum%E9%20".into()),
        ]);
        assert_eq!(
            decoded_param(&byte_params(&params), "filename").as_deref(),
            Some("résumé été.txt")
        );
        let mixed: BodyParams<'_> = Some(vec![
            ("NAME*0".into(), "long ".into()),
            ("name*1".into(), "name.txt".into()),
        ]);
        assert_eq!(
            decoded_param(&byte_params(&mixed), "name").as_deref(),
            Some("long name.txt")
        );
        let missing_first: BodyParams<'_> = Some(vec![
            ("name*1".into(), "tail".into()),
            ("name".into(), "plain.txt".into()),
        ]);
        assert_eq!(
            decoded_param(&byte_params(&missing_first), "name").as_deref(),
            Some("plain.txt")
        );
    }

    #[test]
    fn rfc2047_filename_and_name_fallback() {
        let line = "* 1 FETCH (UID 5 BODYSTRUCTURE ((\"text\" \"plain\" NIL NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL)(\"application\" \"vnd.openxmlformats-officedocument.wordprocessingml.document\" (\"name\" \"=?UTF-8?B?0J/RgNC40LLQtdGCLmRvY3g=?=\") NIL NIL \"base64\" 3000 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL))\r\n";
        let parts = walk_line(line);
        assert_eq!(
            parts.attachments[0].filename.as_deref(),
            Some("Привет.docx")
        );
        assert_eq!(parts.attachments[0].disposition, None);
        assert!(parts.has_attachments());
    }

    #[test]
    fn text_parts_with_filename_or_attachment_disposition_are_attachments() {
        let line = "* 1 FETCH (UID 5 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 20 1 NIL (\"inline\" (\"filename\" \"notes.txt\")) NIL NIL)(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 30 1 NIL (\"attachment\" NIL) NIL NIL)(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 40 1 NIL (\"inline\" NIL) NIL NIL)(\"text\" \"calendar\" (\"charset\" \"utf-8\" \"method\" \"REQUEST\") NIL NIL \"7bit\" 50 1 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL))\r\n";
        let parts = walk_line(line);
        assert_eq!(ids(&parts.text_parts), ["1", "4"]);
        assert!(parts.html_parts.is_empty());
        assert_eq!(ids(&parts.attachments), ["2", "3", "5"]);
    }

    #[test]
    fn alternative_prefers_last_html_and_keeps_calendar() {
        // Plain, HTML, richer HTML with an image, and an invitation.
        let line = "* 1 FETCH (UID 5 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 20 1 NIL NIL NIL NIL)((\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 30 1 NIL NIL NIL NIL)(\"image\" \"gif\" NIL \"<dot>\" NIL \"base64\" 40 NIL NIL NIL NIL) \"related\" NIL NIL NIL NIL)(\"text\" \"calendar\" (\"method\" \"REQUEST\") NIL NIL \"7bit\" 50 2 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"b\") NIL NIL NIL))\r\n";
        let parts = walk_line(line);
        assert_eq!(ids(&parts.text_parts), ["1"]);
        assert_eq!(ids(&parts.html_parts), ["3.1"]);
        assert_eq!(ids(&parts.attachments), ["3.2", "4"]);
        assert!(parts.attachments[0].inline);
        assert!(!parts.attachments[1].inline);
        assert!(parts.has_attachments());
    }

    #[test]
    fn related_start_parameter_selects_root() {
        let line = "* 1 FETCH (UID 5 BODYSTRUCTURE ((\"image\" \"png\" NIL \"<img1>\" NIL \"base64\" 100 NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"utf-8\") \"<root>\" NIL \"7bit\" 20 1 NIL NIL NIL NIL)(\"application\" \"pdf\" NIL NIL NIL \"base64\" 300 NIL NIL NIL NIL) \"related\" (\"start\" \"<root>\" \"type\" \"text/html\") NIL NIL NIL))\r\n";
        let parts = walk_line(line);
        assert_eq!(ids(&parts.html_parts), ["2"]);
        assert_eq!(ids(&parts.attachments), ["1", "3"]);
        assert!(parts.attachments[0].inline);
        // Without a Content-ID the HTML cannot refer to it: a real attachment.
        assert!(!parts.attachments[1].inline);
    }

    #[test]
    fn non_multipart_attachment_message() {
        let line = "* 1 FETCH (UID 5 BODYSTRUCTURE (\"application\" \"octet-stream\" (\"name\" \"data.bin\") NIL NIL \"base64\" 780 NIL (\"attachment\" (\"filename\" \"data.bin\")) NIL NIL))\r\n";
        let parts = walk_line(line);
        assert!(parts.text_parts.is_empty());
        assert_eq!(ids(&parts.attachments), ["1"]);
        assert_eq!(parts.attachments[0].decoded_size_estimate(), 570);
    }

    #[test]
    fn other_encodings_are_lower_cased_and_uuencode_known() {
        for (token, encoding) in [
            ("X-GZIP64", TransferEncoding::Other("x-gzip64".into())),
            ("X-UUENCODE", TransferEncoding::UuEncode),
            ("uuencode", TransferEncoding::UuEncode),
            ("x-uue", TransferEncoding::UuEncode),
        ] {
            let line = format!(
                "* 1 FETCH (UID 5 BODYSTRUCTURE (\"application\" \"octet-stream\" NIL NIL NIL \"{token}\" 100 NIL NIL NIL NIL))\r\n"
            );
            let part = &walk_line(&line).attachments[0];
            assert_eq!(part.encoding, encoding, "{token}");
            // Only content passed on as it is has its size known from the structure.
            assert_eq!(
                part.decoded_size.is_some(),
                encoding.is_identity(),
                "{token}"
            );
        }
    }

    fn nested(depth: usize) -> String {
        let mut body =
            String::from("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL NIL NIL NIL)");
        for _ in 0..depth {
            body = format!("({body} \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)");
        }
        format!("* 1 FETCH (UID 5 BODYSTRUCTURE {body})\r\n")
    }

    #[test]
    fn nesting_at_the_limit_is_accepted() {
        let limits = WalkLimits::default();
        let parts = parse_and_walk(&nested(limits.max_depth), &limits).expect("within limits");
        assert_eq!(parts.text_parts.len(), 1);
        assert_eq!(parts.text_parts[0].part_id, vec!["1"; 32].join("."));
    }

    #[test]
    fn nesting_beyond_the_limit_is_an_error() {
        let limits = WalkLimits::default();
        assert_eq!(
            parse_and_walk(&nested(limits.max_depth + 1), &limits),
            Err(StructureError::TooDeep { max_depth: 32 })
        );
        let tight = WalkLimits {
            max_depth: 3,
            max_parts: 1000,
        };
        assert_eq!(
            parse_and_walk(&nested(10), &tight),
            Err(StructureError::TooDeep { max_depth: 3 })
        );
        // imap-proto's own recursive parser bounds how deep a test line can go.
        let line = nested(40);
        let (_, response) = Response::parse(line.as_bytes()).expect("parses");
        let Response::Fetch(_, attrs) = response else {
            panic!("not a FETCH");
        };
        let Some(AttributeValue::BodyStructure(structure)) = attrs.get(1) else {
            panic!("no BODYSTRUCTURE");
        };
        assert!(!has_attachments(structure));
    }

    #[test]
    fn too_many_parts_is_an_error() {
        let limits = WalkLimits {
            max_depth: 32,
            max_parts: 3,
        };
        assert_eq!(
            parse_and_walk(MIXED_WITH_PDF, &limits),
            Err(StructureError::TooManyParts { max_parts: 3 })
        );
        assert!(parse_and_walk(ALTERNATIVE, &limits).is_ok());
    }

    #[test]
    fn base64_size_estimate() {
        let part = BodyPart {
            part_id: "2".into(),
            content_type: "image/png".into(),
            charset: None,
            encoding: TransferEncoding::Base64,
            encoded_size: 78,
            filename: None,
            content_id: None,
            inline: false,
            disposition: None,
            decoded_size: None,
            whole_body: false,
        };
        assert_eq!(part.decoded_size_estimate(), 57);
        let empty = BodyPart {
            encoded_size: 0,
            ..part.clone()
        };
        assert_eq!(empty.decoded_size_estimate(), 0);
        let quoted = BodyPart {
            encoding: TransferEncoding::QuotedPrintable,
            ..part
        };
        assert_eq!(quoted.decoded_size_estimate(), 78);
    }

    #[test]
    fn multipart_without_boundary_is_one_text_part() {
        // Dovecot's BODYSTRUCTURE of `Content-Type: multipart/mixed` without a boundary.
        let root = "* 1 FETCH (UID 5 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" NIL NIL NIL NIL))\r\n";
        let parts = walk_line(root);
        assert_eq!(ids(&parts.text_parts), ["1"]);
        assert!(parts.text_parts[0].whole_body);
        assert!(parts.attachments.is_empty());
        // Nested: the multipart's own section holds the text.
        let nested = "* 1 FETCH (UID 5 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 2 0 NIL NIL NIL NIL)((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"alternative\" NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL))\r\n";
        let parts = walk_line(nested);
        assert_eq!(ids(&parts.text_parts), ["1", "2"]);
        assert!(!parts.text_parts[1].whole_body);
        assert!(parts.attachments.is_empty());
        // A multipart whose server left out the parameters is still a multipart.
        let without_params = "* 1 FETCH (UID 5 BODYSTRUCTURE ((\"text\" \"plain\" NIL NIL NIL \"7bit\" 4 1 NIL NIL NIL NIL)(\"image\" \"png\" NIL NIL NIL \"base64\" 8 NIL NIL NIL NIL) \"mixed\"))\r\n";
        let parts = walk_line(without_params);
        assert_eq!(ids(&parts.text_parts), ["1"]);
        assert_eq!(ids(&parts.attachments), ["2"]);
    }

    #[test]
    fn types_without_subtype_are_text_plain() {
        // Dovecot for `Content-Type: multipart/` (and `/`), `text`, `garbage`.
        let line = "* 1 FETCH (UID 5 BODYSTRUCTURE ((\"\" \"\" NIL NIL NIL \"7bit\" 5 NIL NIL NIL NIL)(\"text\" \"\" NIL NIL NIL \"7bit\" 4 NIL NIL NIL NIL)(\"garbage\" \"\" NIL NIL NIL \"7bit\" 4 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL))\r\n";
        let parts = walk_line(line);
        assert_eq!(ids(&parts.text_parts), ["1", "2", "3"]);
        assert!(
            parts
                .text_parts
                .iter()
                .all(|p| p.content_type == "text/plain")
        );
        assert!(parts.attachments.is_empty());
        let single = walk_line(
            "* 1 FETCH (UID 5 BODYSTRUCTURE (\"\" \"\" NIL NIL NIL \"7bit\" 7 NIL NIL NIL NIL))\r\n",
        );
        assert_eq!(ids(&single.text_parts), ["1"]);
    }

    #[test]
    fn tnef_without_a_name_is_winmail_dat() {
        let line = "* 1 FETCH (UID 5 BODYSTRUCTURE ((\"text\" \"plain\" NIL NIL NIL \"7bit\" 4 1 NIL NIL NIL NIL)(\"application\" \"ms-tnef\" NIL NIL NIL \"base64\" 2704 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL))\r\n";
        let parts = walk_line(line);
        assert_eq!(
            parts.attachments[0].filename.as_deref(),
            Some("winmail.dat")
        );
    }

    #[test]
    fn filenames_from_the_raw_mime_header() {
        let cases: [(&[u8], Option<&str>); 7] = [
            (
                b"Content-Type: text/plain; name=\"Fr\xe4sche.txt\"\r\nContent-Disposition: attachment;\r\n filename=\"Fr\xe4sche.txt\"\r\n\r\n",
                Some("Fräsche.txt"),
            ),
            (
                b"Content-Disposition: attachment; filename=\"report \\\"final\\\" v2.pdf\"\r\n",
                Some("report \"final\" v2.pdf"),
            ),
            (
                b"Content-Type: application/pdf; name=\"C:\\\\dir\\\\x.pdf\"\r\n",
                Some("C:\\dir\\x.pdf"),
            ),
            (
                b"Content-Disposition: attachment; filename*0*=iso-8859-1'fr'r%E9sum%E9%20;\r\n filename*1*=%E9t%E9.txt\r\n",
                Some("résumé été.txt"),
            ),
            (
                b"Content-Disposition: attachment; filename=\"fallback.txt\";\r\n filename*=UTF-8''pr%C3%A9f%C3%A9r%C3%A9.txt\r\n",
                Some("préféré.txt"),
            ),
            (
                b"Content-Disposition: attachment; size=12; filename=plain.bin ; x=\"y\"\r\n",
                Some("plain.bin"),
            ),
            (b"Content-Type: text/plain\r\n", None),
        ];
        for (header, expected) in cases {
            assert_eq!(
                filename_from_header(header).as_deref(),
                expected,
                "{}",
                String::from_utf8_lossy(header)
            );
        }
        let mut part = walk_line("* 1 FETCH (UID 5 BODYSTRUCTURE (\"application\" \"pdf\" NIL NIL NIL \"base64\" 700 NIL (\"attachment\" (\"filename\" \"report \\\"final\\\".pdf\")) NIL NIL))\r\n").attachments.remove(0);
        assert_eq!(part.filename.as_deref(), Some("report \\\"final\\\".pdf"));
        assert!(part.filename_needs_header());
        part.learn_filename_from_header(
            b"Content-Disposition: attachment; filename=\"report \\\"final\\\".pdf\"\r\n",
        );
        assert_eq!(part.filename.as_deref(), Some("report \"final\".pdf"));
        assert!(!part.filename_needs_header());
        for garbage in [
            &b""[..],
            b";",
            b"; =",
            b"; a=\"",
            b"; a=\"\\",
            b";;;b",
            b"x; filename",
        ] {
            header_params(garbage);
        }
    }

    fn base64_part(encoded: &[u8]) -> BodyPart {
        BodyPart {
            part_id: "2".into(),
            content_type: "application/octet-stream".into(),
            charset: None,
            encoding: TransferEncoding::Base64,
            encoded_size: u32::try_from(encoded.len()).expect("small"),
            filename: None,
            content_id: None,
            inline: false,
            disposition: None,
            decoded_size: None,
            whole_body: false,
        }
    }

    /// What the message view does with a part's probe, given the part's bytes.
    fn probe(part: &mut BodyPart, encoded: &[u8]) {
        match part.size_probe() {
            SizeProbe::Ends { tail_offset } => {
                let head = &encoded[..PROBE_LEN as usize];
                part.learn_from_ends(head, &encoded[tail_offset as usize..]);
                if part.decoded_size.is_none() {
                    part.learn_from_whole(encoded);
                }
            }
            SizeProbe::Whole(len) => part.learn_from_whole(&encoded[..len as usize]),
            SizeProbe::None => {}
        }
    }

    #[test]
    fn exact_sizes_where_the_estimate_was_off() {
        use base64::Engine;
        for size in [0usize, 1, 2, 57, 58, 10_239, 10_240, 10_241, 600_001] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
            for (width, line_break) in [
                (76, &b"\r\n"[..]),
                (64, b"\r\n"),
                (76, b"\n"),
                (72, b"\r\n"),
            ] {
                let mut wrapped = Vec::new();
                for line in encoded.as_bytes().chunks(width) {
                    wrapped.extend_from_slice(line);
                    wrapped.extend_from_slice(line_break);
                }
                // Dovecot counts a part without the line break before the next boundary.
                for body in [
                    &wrapped[..],
                    wrapped.strip_suffix(line_break).unwrap_or(&wrapped),
                ] {
                    let mut part = base64_part(body);
                    if size > 400 {
                        assert!(matches!(part.size_probe(), SizeProbe::Ends { .. }));
                    }
                    probe(&mut part, body);
                    assert_eq!(
                        part.decoded_size(),
                        size as u64,
                        "{size} bytes in lines of {width}"
                    );
                }
            }
        }
    }

    #[test]
    fn irregular_base64_is_read_whole() {
        use base64::Engine;
        let data: Vec<u8> = (0..2000).map(|i| (i % 7) as u8).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
        let mut messy = Vec::new();
        for (index, line) in encoded.as_bytes().chunks(60).enumerate() {
            messy.extend_from_slice(line);
            messy.extend_from_slice(if index % 2 == 0 {
                b" \t\r\n"
            } else {
                b"\r\n\r\n"
            });
        }
        let mut part = base64_part(&messy);
        let SizeProbe::Ends { tail_offset } = part.size_probe() else {
            panic!("ends first");
        };
        part.learn_from_ends(&messy[..PROBE_LEN as usize], &messy[tail_offset as usize..]);
        assert_eq!(part.decoded_size, None);
        part.learn_from_whole(&messy);
        assert_eq!(part.decoded_size, Some(2000));
        // A list footer after the data: the ends disagree, the whole read stops at padding.
        let mut footer = encoded.as_bytes()[..1000].to_vec();
        footer.extend_from_slice(b"==\r\n-- \r\nmailing list footer\r\n");
        let mut part = base64_part(&footer);
        part.learn_from_ends(&footer[..256], &footer[footer.len() - 256..]);
        assert_eq!(part.decoded_size, None);
    }

    #[test]
    fn other_encodings_are_measured_whole_up_to_a_limit() {
        let mut part = BodyPart {
            encoding: TransferEncoding::QuotedPrintable,
            ..base64_part(b"caf=C3=A9 =3D=\r\n soft\r\n")
        };
        assert_eq!(part.size_probe(), SizeProbe::Whole(23));
        part.learn_from_whole(b"caf=C3=A9 =3D=\r\n soft\r\n");
        assert_eq!(part.decoded_size, Some(14));
        let mut uu = BodyPart {
            encoding: TransferEncoding::UuEncode,
            ..base64_part(b"begin 644 cat.txt\r\n#0V%T\r\n`\r\nend\r\n")
        };
        uu.learn_from_whole(b"begin 644 cat.txt\r\n#0V%T\r\n`\r\nend\r\n");
        assert_eq!(
            (uu.decoded_size, uu.filename.as_deref()),
            (Some(3), Some("cat.txt"))
        );
        let big = BodyPart {
            encoded_size: MAX_WHOLE_PROBE + 1,
            ..uu.clone()
        };
        assert_eq!(
            BodyPart {
                decoded_size: None,
                ..big
            }
            .size_probe(),
            SizeProbe::None
        );
        let identity = walk_line(RFC2231_FILENAME);
        assert_eq!(identity.text_parts[0].decoded_size, Some(10));
        assert_eq!(identity.text_parts[0].size_probe(), SizeProbe::None);
    }

    #[test]
    fn uuencoded_files_in_text_are_attachments() {
        let line = "* 1 FETCH (UID 5 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 60 3 NIL NIL NIL NIL)(\"application\" \"pdf\" NIL NIL NIL \"base64\" 8 NIL (\"attachment\" (\"filename\" \"new.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL))\r\n";
        let mut parts = walk_line(line);
        let text = b"Old-style:\r\nbegin 644 old.doc\r\n#0V%T\r\n`\r\nend\r\nbegin 600 two.txt\r\n!80``\r\n`\r\nend\r\n".to_vec();
        let bodies = std::collections::HashMap::from([("1".to_owned(), text)]);
        parts.add_embedded_files(&bodies);
        assert_eq!(ids(&parts.attachments), ["1.1", "1.2", "2"]);
        let old = parts.attachments[0].to_attachment();
        assert_eq!(
            (old.filename.as_deref(), old.content_type.as_str(), old.size),
            (Some("old.doc"), "application/msword", 3)
        );
        assert_eq!(parts.attachments[1].to_attachment().size, 1);
        assert!(parts.has_attachments());
        let (text_part, index) = parts.embedded_file_part("1.2").expect("an embedded id");
        assert_eq!((text_part.part_id.as_str(), index), ("1", 2));
        for id in ["2.1", "1.0", "1", "1.x", "3.1"] {
            assert!(parts.embedded_file_part(id).is_none(), "{id}");
        }
    }

    /// A multipart `depth` levels deep where level k has `width(k)` children, the last of
    /// which holds the next level: its deepest part has the longest id 1,000 parts allow.
    fn deep_and_wide(depth: usize, width: &dyn Fn(usize) -> usize) -> String {
        fn level(k: usize, depth: usize, width: &dyn Fn(usize) -> usize, out: &mut String) {
            out.push('(');
            let leaves = if k == depth { width(k) } else { width(k) - 1 };
            for _ in 0..leaves {
                out.push_str("(\"application\" \"x\" NIL NIL NIL \"7bit\" 1)");
            }
            if k < depth {
                level(k + 1, depth, width, out);
            }
            out.push_str(" \"mixed\")");
        }
        let mut line = String::from("* 1 FETCH (UID 1 BODYSTRUCTURE ");
        level(1, depth, width, &mut line);
        line.push_str(")\r\n");
        line
    }

    #[test]
    fn every_part_the_walk_lists_has_an_id_the_api_accepts() {
        // The fuzzer's finding: 32 levels with 100 parts on 7 of them and 10 on the others
        // stay within 1,000 parts, and the deepest id has 102 bytes, beyond the 100 a part id
        // was once allowed.
        let line = deep_and_wide(32, &|k| if k <= 7 { 100 } else { 10 });
        let parts = parse_and_walk(&line, &WalkLimits::default()).expect("within limits");
        let longest = parts
            .attachments
            .iter()
            .map(|part| part.part_id.as_str())
            .max_by_key(|id| id.len())
            .expect("attachments");
        assert_eq!(longest.len(), 102, "{longest}");
        assert_eq!(longest.split('.').count(), 32);
        for part in &parts.attachments {
            assert_eq!(
                part_id::check(&part.part_id),
                Ok(()),
                "the API takes every listed id"
            );
        }
        // Limits beyond what a part id can name are the part id's limits.
        let generous = WalkLimits {
            max_depth: 40,
            max_parts: usize::MAX,
        };
        assert_eq!(
            parse_and_walk(&deep_and_wide(33, &|_| 2), &generous),
            Err(StructureError::TooDeep { max_depth: 32 })
        );
    }
}
