//! Previews of summaries (the rules are [`crate::mail::preview`]'s): from the server's
//! `PREVIEW` (RFC 8970) fetched with the summaries where it is advertised, else from the first
//! [`PREVIEW_FETCH_BYTES`] of each message's first text part: read with the summaries when
//! that part is section 1 (most messages), else for the page's other messages in one more
//! round trip.
//!
//! Dovecot answers `PREVIEW` with its own preview. Cyrus 3.6 advertises `PREVIEW` and answers
//! `NIL` (it has no preview stored for the message), so a `NIL` is read past like a server
//! without the capability: the part is read instead. A summary the cache holds without a
//! preview (listed with `preview=false` before) asks for it, with the structure in case the
//! server has none.

use std::collections::HashMap;

use async_imap::imap_proto::{AttributeValue, Response, SectionPath};

use super::connection::Connection;
use super::encode::{Command, PartId, UidSet};
use super::error::Result;
use super::fetch_item::{NString, nstring_item};
use super::messages::section_key;
use crate::mail::content::utf8_or_windows_1252;
use crate::mail::preview::{
    PREVIEW_FETCH_BYTES, preview_from_server, preview_of_part_start, preview_part,
};
use crate::mail::structure::BodyPart;
use crate::telemetry::names;

/// How the summaries of one fetch get their previews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PreviewMode {
    /// None are wanted: nothing is fetched for them.
    Off,
    /// The server's `PREVIEW` is fetched with each summary.
    Server,
    /// The start of each message's text part is read after the summaries.
    Parts,
}

impl PreviewMode {
    /// The mode for `conn`'s server when previews are `wanted`.
    pub(crate) fn of(conn: &Connection, wanted: bool) -> Self {
        if !wanted {
            PreviewMode::Off
        } else if conn.capabilities().has("PREVIEW") {
            PreviewMode::Server
        } else {
            PreviewMode::Parts
        }
    }

    /// The FETCH items of a summary in this mode.
    pub(crate) fn summary_items(self) -> &'static str {
        match self {
            PreviewMode::Server => SUMMARY_ITEMS_WITH_PREVIEW,
            PreviewMode::Parts => SUMMARY_ITEMS_WITH_FIRST_PART,
            PreviewMode::Off => SUMMARY_ITEMS,
        }
    }
}

/// Attributes fetched for a header list entry (and a `message.new` event).
///
/// The raw address and subject fields are fetched with every summary, not only when the
/// ENVELOPE looks wrong: servers cut address lists short without a sign (Dovecot's ENVELOPE
/// of `To: a@x.com; b@y.com` or `To: bob@x.com <bob@x.com>, carol@y.com` simply ends after
/// the first address), so only the field itself shows what is missing. Measured on Dovecot
/// 2.3 for pages of 200 messages: 166 more bytes per message (+31%), 0.5 ms more per warm
/// page (1.7 → 2.2 ms), no difference cold; the summary cache makes it a one-time cost.
pub(crate) const SUMMARY_ITEMS: &str = "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE \
     BODY.PEEK[HEADER.FIELDS (FROM TO CC REPLY-TO SUBJECT)])";

/// [`SUMMARY_ITEMS`] and the server's preview. Servers answer items in the order asked (Dovecot
/// does), so `PREVIEW` comes early in each response, and reading it from the raw bytes
/// ([`nstring_item`]) skips only the UID rather than the envelope, structure and fields.
const SUMMARY_ITEMS_WITH_PREVIEW: &str = "(UID PREVIEW FLAGS INTERNALDATE RFC822.SIZE \
     ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (FROM TO CC REPLY-TO SUBJECT)])";

/// [`SUMMARY_ITEMS`] and the start of section 1, for servers without `PREVIEW`: section 1 is
/// the text of a message of one part and, most often, the plain text of a
/// multipart/alternative, which is where a preview is read ([`preview_part`]). Such a
/// summary gets its preview in the same round trip; one whose text is elsewhere (a
/// multipart/mixed holding an alternative, say) has its part read in one more round trip, as
/// all did before, and its section 1 read for nothing.
const SUMMARY_ITEMS_WITH_FIRST_PART: &str = "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE \
     BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (FROM TO CC REPLY-TO SUBJECT)] BODY.PEEK[1]<0.2048>)";

/// What a fetched summary still needs for its preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PreviewNeed {
    /// Nothing: it has its preview, or none is wanted.
    Nothing,
    /// The start of this part.
    Part(BodyPart),
    /// Its preview or structure: the summary came from the cache without a preview.
    Ask,
}

/// The preview a summary's FETCH response (`attrs`, in the raw bytes `raw`) carries in `mode`,
/// or what it still needs: the server's `PREVIEW` where it gave one, an empty preview for a
/// message without readable text, else its text part.
pub(crate) fn from_response(
    mode: PreviewMode,
    attrs: &[AttributeValue<'_>],
    raw: &[u8],
) -> (Option<String>, PreviewNeed) {
    if mode == PreviewMode::Off {
        return (None, PreviewNeed::Nothing);
    }
    if mode == PreviewMode::Server
        && let Some(NString::Text(text)) = nstring_item(raw, b"PREVIEW")
    {
        metrics::counter!(names::PREVIEWS_FETCHED, "source" => "server").increment(1);
        return (Some(server_preview(&text)), PreviewNeed::Nothing);
    }
    let structure = attrs.iter().find_map(|attr| match attr {
        AttributeValue::BodyStructure(structure) => Some(structure),
        _ => None,
    });
    match structure.map(preview_part) {
        Some(Some(part)) => match first_part_start(mode, &part, attrs) {
            Some(data) => {
                metrics::counter!(names::PREVIEWS_FETCHED, "source" => "body").increment(1);
                let complete = data.len() < PREVIEW_FETCH_BYTES as usize
                    || part.encoded_size <= PREVIEW_FETCH_BYTES;
                (
                    Some(preview_of_part_start(data, &part, complete)),
                    PreviewNeed::Nothing,
                )
            }
            None => (None, PreviewNeed::Part(part)),
        },
        Some(None) => (Some(String::new()), PreviewNeed::Nothing),
        None => (None, PreviewNeed::Ask),
    }
}

/// The start of section 1 fetched with the summary ([`SUMMARY_ITEMS_WITH_FIRST_PART`]), when
/// `part`, the one a preview is read from, is section 1.
fn first_part_start<'a>(
    mode: PreviewMode,
    part: &BodyPart,
    attrs: &'a [AttributeValue<'_>],
) -> Option<&'a [u8]> {
    if mode != PreviewMode::Parts || part.whole_body || part.part_id != "1" {
        return None;
    }
    attrs.iter().find_map(|attr| match attr {
        AttributeValue::BodySection {
            section: Some(SectionPath::Part(numbers, None)),
            index: None | Some(0),
            data,
        } if numbers.as_slice() == [1] => Some(data.as_deref().unwrap_or_default()),
        _ => None,
    })
}

/// Most bytes of a server's preview read: RFC 8970 previews have at most 256 characters, and
/// a preview has 200.
const MAX_SERVER_PREVIEW_BYTES: usize = 4096;

/// The preview of the server's `PREVIEW` text (UTF-8 by RFC 8970; bytes that are not are read
/// as windows-1252, as everywhere), of its first [`MAX_SERVER_PREVIEW_BYTES`] only.
fn server_preview(raw: &[u8]) -> String {
    let raw = &raw[..raw.len().min(MAX_SERVER_PREVIEW_BYTES)];
    match std::str::from_utf8(raw) {
        Ok(text) => preview_from_server(text),
        // Valid but for a character cut by the bound.
        Err(e) if e.error_len().is_none() => {
            preview_from_server(&String::from_utf8_lossy(&raw[..e.valid_up_to()]))
        }
        Err(_) => preview_from_server(&utf8_or_windows_1252(raw)),
    }
}

/// The section a preview reads of `part`, as the answer names it ([`section_key`]).
fn part_key(part: &BodyPart) -> &str {
    if part.whole_body {
        "TEXT"
    } else {
        &part.part_id
    }
}

impl Connection {
    /// The previews of the messages `needs` names (in the selected mailbox), by UID: one round
    /// trip for the messages whose structure or server preview is asked for, one for the
    /// parts read, pipelined per part id. A message expunged meanwhile is left out.
    pub(crate) async fn fetch_previews(
        &mut self,
        needs: Vec<(u32, PreviewNeed)>,
    ) -> Result<HashMap<u32, String>> {
        let mut found = HashMap::new();
        let mut parts: HashMap<u32, BodyPart> = HashMap::new();
        let mut asks = Vec::new();
        for (uid, need) in needs {
            match need {
                PreviewNeed::Nothing => {}
                PreviewNeed::Part(part) => {
                    parts.insert(uid, part);
                }
                PreviewNeed::Ask => asks.push(uid),
            }
        }
        if !asks.is_empty() {
            let mode = PreviewMode::of(self, true);
            let items = match mode {
                PreviewMode::Server => "(UID PREVIEW BODYSTRUCTURE)",
                PreviewMode::Off | PreviewMode::Parts => "(UID BODYSTRUCTURE)",
            };
            let set = UidSet::from_uids(asks.iter().copied())?;
            let cmd = Command::new("UID FETCH").uid_set(&set).atom(items);
            self.run_raw(&cmd, |r, raw| {
                if let Response::Fetch(_, attrs) = r
                    && let Some(uid) = uid_of(attrs)
                    && set.contains(uid)
                    && attrs
                        .iter()
                        .any(|a| matches!(a, AttributeValue::BodyStructure(_)))
                {
                    match from_response(mode, attrs, raw) {
                        (Some(preview), _) => {
                            found.insert(uid, preview);
                        }
                        (None, PreviewNeed::Part(part)) => {
                            parts.insert(uid, part);
                        }
                        (None, _) => {}
                    }
                }
                Ok(())
            })
            .await?
            .into_result()?;
        }
        if parts.is_empty() {
            return Ok(found);
        }
        // One FETCH per part id: messages of one shape (single part, or text in an
        // alternative) share a command.
        let mut by_key: HashMap<&str, Vec<u32>> = HashMap::new();
        for (uid, part) in &parts {
            by_key.entry(part_key(part)).or_default().push(*uid);
        }
        let mut cmds = Vec::with_capacity(by_key.len());
        for (key, uids) in &by_key {
            let set = UidSet::from_uids(uids.iter().copied())?;
            let range = Some((0, PREVIEW_FETCH_BYTES));
            let fetch = Command::new("UID FETCH").uid_set(&set).atom("(UID");
            let fetch = if *key == "TEXT" {
                fetch.text_section("BODY.PEEK", range)
            } else {
                fetch.section("BODY.PEEK", &PartId::parse(key)?, range)
            };
            cmds.push(fetch.atom(")"));
        }
        let mut read = 0;
        let done = self
            .run_pipelined(&cmds, |_, r| {
                let Response::Fetch(_, attrs) = r else {
                    return Ok(());
                };
                let Some(part) = uid_of(attrs).and_then(|uid| Some((uid, parts.get(&uid)?))) else {
                    return Ok(());
                };
                for attr in attrs.iter() {
                    if let AttributeValue::BodySection {
                        section,
                        index: None | Some(0),
                        data,
                    } = attr
                        && section.as_ref().and_then(section_key).as_deref()
                            == Some(part_key(part.1))
                    {
                        let data = data.as_deref().unwrap_or_default();
                        let complete = data.len() < PREVIEW_FETCH_BYTES as usize
                            || part.1.encoded_size <= PREVIEW_FETCH_BYTES;
                        found.insert(part.0, preview_of_part_start(data, part.1, complete));
                        read += 1;
                    }
                }
                Ok(())
            })
            .await?;
        metrics::counter!(names::PREVIEWS_FETCHED, "source" => "body").increment(read);
        for completion in done {
            completion.into_result()?;
        }
        Ok(found)
    }
}

/// The UID of a FETCH response.
fn uid_of(attrs: &[AttributeValue<'_>]) -> Option<u32> {
    attrs.iter().find_map(|a| match a {
        AttributeValue::Uid(uid) => Some(*uid),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::summary::summary_from_fetch;

    /// A response to [`SUMMARY_ITEMS_WITH_PREVIEW`] as Dovecot writes it (in the order asked),
    /// with `preview` as the PREVIEW value.
    fn response(preview: &str) -> Vec<u8> {
        format!(
            "* 3 FETCH (UID 7 PREVIEW {preview} FLAGS (\\Seen) INTERNALDATE \"06-May-2024 12:00:00 +0000\" \
             RFC822.SIZE 482 ENVELOPE (\"Mon, 06 May 2024 12:00:00 +0000\" \"Re: Thursday\" \
             ((\"Alice\" NIL \"alice\" \"example.test\")) NIL NIL NIL NIL NIL NIL \"<a@b>\") \
             BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 60 2 NIL NIL NIL NIL) \
             BODY[HEADER.FIELDS (FROM TO CC REPLY-TO SUBJECT)] {{23}}\r\nSubject: Re: Thursday\r\n)\r\n"
        )
        .into_bytes()
    }

    fn read(raw: &[u8], mode: PreviewMode) -> (Option<String>, PreviewNeed, Vec<String>) {
        let (_, parsed) = Response::parse(raw).expect("a FETCH response");
        let Response::Fetch(_, attrs) = parsed else {
            panic!("not a FETCH");
        };
        let summary = summary_from_fetch(&attrs).expect("a summary");
        assert_eq!(summary.subject.as_deref(), Some("Re: Thursday"));
        let (preview, need) = from_response(mode, &attrs, raw);
        (preview, need, summary.flags)
    }

    #[test]
    fn the_server_preview_is_read_beside_the_parsed_summary() {
        let raw = response("\"Thanks, see you   there.\"");
        let (preview, need, flags) = read(&raw, PreviewMode::Server);
        // The response parser reads past PREVIEW to the items after it.
        assert_eq!(flags, ["\\Seen"]);
        assert_eq!(preview.as_deref(), Some("Thanks, see you there."));
        assert_eq!(need, PreviewNeed::Nothing);
        // Cyrus's NIL: the text part is read instead.
        let (preview, need, _) = read(&response("NIL"), PreviewMode::Server);
        assert_eq!(preview, None);
        assert!(matches!(need, PreviewNeed::Part(part) if part.part_id == "1"));
        // Previews not wanted: none, and nothing to read.
        assert_eq!(read(&raw, PreviewMode::Off).0, None);
        assert_eq!(read(&raw, PreviewMode::Off).1, PreviewNeed::Nothing);
    }

    /// A response to [`SUMMARY_ITEMS_WITH_FIRST_PART`] of a message with `structure`, whose
    /// section 1 starts with `first`.
    fn response_with_first_part(structure: &str, first: &str) -> Vec<u8> {
        format!(
            "* 3 FETCH (UID 7 FLAGS () INTERNALDATE \"06-May-2024 12:00:00 +0000\" \
             RFC822.SIZE 482 ENVELOPE (\"Mon, 06 May 2024 12:00:00 +0000\" \"Re: Thursday\" \
             ((\"Alice\" NIL \"alice\" \"example.test\")) NIL NIL NIL NIL NIL NIL \"<a@b>\") \
             BODYSTRUCTURE {structure} \
             BODY[HEADER.FIELDS (FROM TO CC REPLY-TO SUBJECT)] {{23}}\r\nSubject: Re: Thursday\r\n \
             BODY[1]<0> {{{}}}\r\n{first})\r\n",
            first.len()
        )
        .into_bytes()
    }

    #[test]
    fn without_preview_section_1_read_with_the_summary_makes_its_preview() {
        assert!(
            SUMMARY_ITEMS_WITH_FIRST_PART
                .contains(&format!("BODY.PEEK[1]<0.{PREVIEW_FETCH_BYTES}>"))
        );
        assert!(
            SUMMARY_ITEMS_WITH_FIRST_PART.starts_with(&SUMMARY_ITEMS[..SUMMARY_ITEMS.len() - 1])
        );
        let plain =
            "(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 33 2 NIL NIL NIL NIL)";
        let raw = response_with_first_part(plain, "See you  there.\r\n> earlier words\r\n");
        let (preview, need, _) = read(&raw, PreviewMode::Parts);
        assert_eq!(preview.as_deref(), Some("See you there."));
        assert_eq!(need, PreviewNeed::Nothing);
        // An alternative: section 1 is its plain text.
        let alternative = format!(
            "({plain}(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 40 1 NIL NIL NIL NIL) \
             \"alternative\" (\"boundary\" \"b\") NIL NIL NIL)"
        );
        let raw = response_with_first_part(&alternative, "Plain words.\r\n");
        assert_eq!(
            read(&raw, PreviewMode::Parts).0.as_deref(),
            Some("Plain words.")
        );
        // A mixed message whose text is in section 1.1: section 1 is not read as text.
        let mixed = format!(
            "({alternative}(\"application\" \"pdf\" NIL NIL NIL \"base64\" 100 NIL NIL NIL NIL) \
             \"mixed\" (\"boundary\" \"m\") NIL NIL NIL)"
        );
        let raw = response_with_first_part(&mixed, "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n");
        let (preview, need, _) = read(&raw, PreviewMode::Parts);
        assert_eq!(preview, None);
        assert!(matches!(need, PreviewNeed::Part(part) if part.part_id == "1.1"));
        // The server's mode never reads section 1, even where an answer carries it.
        let raw = response_with_first_part(plain, "See you there.");
        assert!(matches!(
            read(&raw, PreviewMode::Server).1,
            PreviewNeed::Part(_)
        ));
    }

    #[test]
    fn a_server_preview_is_read_as_utf_8_and_bounded() {
        assert_eq!(
            server_preview("Grüße  aus\r\nKöln".as_bytes()),
            "Grüße aus Köln"
        );
        assert_eq!(server_preview(b"Gr\xfc\xdfe"), "Grüße");
        // A hostile server's endless preview costs its first bytes, cut at a character.
        let long = "é".repeat(MAX_SERVER_PREVIEW_BYTES);
        assert_eq!(server_preview(long.as_bytes()), "é".repeat(200));
        let odd = format!("x{long}");
        let preview = server_preview(odd.as_bytes());
        assert!(preview.starts_with("xé") && !preview.contains('\u{fffd}'));
    }
}
