//! Header list entries kept as JSON: a [`Summary`] serialised once, when it is fetched, and
//! written into every later page by concatenation.
//!
//! Only the flags of a summary change for a given UIDVALIDITY and UID, and the flags are read
//! fresh for every page. So a cached summary is its JSON with a gap where the flags' value
//! goes ([`SummaryJson`]), and a page entry is that JSON and the current flags, already in
//! JSON too ([`ListEntry`]). Serialising a page then copies bytes: no summary is cloned, no
//! string is escaped twice.
//!
//! The preview is the summary's last field, so its key and value are the end of the object,
//! and [`SummaryJson`] records where they start: a page without previews copies the JSON up to
//! there and closes the object, and a preview learnt later is appended to the JSON held.

use std::sync::Arc;

use super::summary::Summary;

/// What stands between the flags' key and the flags' value in a serialised [`Summary`].
const FLAGS_KEY: &str = "\"flags\":";

/// What stands before the preview's value in a serialised [`Summary`] that has one.
const PREVIEW_KEY: &str = ",\"preview\":";

/// A [`Summary`]'s JSON object without the value of `flags`: exactly what `serde_json` writes
/// for it, once the flags' value is put back between [`SummaryJson::head`] and
/// [`SummaryJson::tail`]. Cloning it shares the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryJson {
    /// The object, without the flags' value; its count and bytes in one allocation.
    text: Arc<str>,
    /// Where the flags' value goes in `text`.
    gap: u32,
    /// Where `,"preview":` starts in `text`, when the summary has a preview; else `text`
    /// ends with the `}` that closes the object.
    preview_at: Option<u32>,
    /// The message's UID.
    uid: u32,
}

impl SummaryJson {
    /// Serialises `summary`, whose flags and preview must be empty, with `preview`.
    fn new(summary: &Summary, preview: Option<&str>) -> Self {
        assert!(summary.flags.is_empty(), "the flags are kept apart");
        assert!(summary.preview.is_none(), "the preview is written apart");
        let text = serde_json::to_string(summary).expect("a summary serialises to JSON");
        // The flags' value, written empty, is cut out again. A quote inside a JSON string is
        // always escaped, so `"flags":[]` can only be the key and its empty value.
        let empty = format!("{FLAGS_KEY}[]");
        let at = text
            .find(&empty)
            .expect("a serialised summary has its flags");
        let gap = at + FLAGS_KEY.len();
        let preview_len = preview.map_or(0, |p| PREVIEW_KEY.len() + p.len() + 2);
        let mut cut = String::with_capacity(text.len() - 2 + preview_len);
        cut.push_str(&text[..gap]);
        cut.push_str(&text[gap + 2..]);
        // Without a preview (left out by serde) the object ends with its last field; the
        // preview goes after it, as serde writes the last field.
        let preview_at = preview.map(|preview| {
            cut.pop();
            let at = cut.len();
            cut.push_str(PREVIEW_KEY);
            push_json_string(&mut cut, preview);
            cut.push('}');
            u32::try_from(at).expect("a summary's JSON is far below 4 GiB")
        });
        SummaryJson {
            text: cut.into(),
            gap: u32::try_from(gap).expect("a summary's JSON is far below 4 GiB"),
            preview_at,
            uid: summary.uid,
        }
    }

    /// The same summary with `preview` as its preview (in place of the one it had).
    pub fn with_preview(&self, preview: &str) -> Self {
        let object = &self.text[..self.end_of_fields()];
        let mut text = String::with_capacity(object.len() + PREVIEW_KEY.len() + preview.len() + 3);
        text.push_str(object);
        text.push_str(PREVIEW_KEY);
        push_json_string(&mut text, preview);
        text.push('}');
        SummaryJson {
            text: text.into(),
            gap: self.gap,
            preview_at: Some(
                u32::try_from(object.len()).expect("a summary's JSON is far below 4 GiB"),
            ),
            uid: self.uid,
        }
    }

    /// Where the fields before the preview end: the preview's key, or the closing `}`.
    fn end_of_fields(&self) -> usize {
        self.preview_at
            .map_or(self.text.len() - 1, |at| at as usize)
    }

    /// The message's UID.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Whether the summary has its preview.
    pub fn has_preview(&self) -> bool {
        self.preview_at.is_some()
    }

    /// The JSON up to the flags' value.
    pub fn head(&self) -> &str {
        &self.text[..self.gap as usize]
    }

    /// The JSON after the flags' value.
    pub fn tail(&self) -> &str {
        &self.text[self.gap as usize..]
    }

    /// The JSON after the flags' value up to the preview (or the object's end), without the
    /// closing `}`.
    fn tail_before_preview(&self) -> &str {
        &self.text[self.gap as usize..self.end_of_fields()]
    }

    /// Bytes held (for cache weights).
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Never true: a summary's JSON is an object with fields.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// The flags of a message as a JSON array of strings, `\Recent` left out (it is state of the
/// server session, not a property of the message), as `Vec<String>` would serialise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagsJson(Box<str>);

impl FlagsJson {
    /// The flags of `flags` but `\Recent`.
    pub fn new<'a>(flags: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = String::with_capacity(16);
        out.push('[');
        for flag in flags
            .into_iter()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        {
            if out.len() > 1 {
                out.push(',');
            }
            push_json_string(&mut out, flag);
        }
        out.push(']');
        FlagsJson(out.into_boxed_str())
    }

    /// The array.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One message of a header list: its summary's JSON and its current flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    summary: SummaryJson,
    flags: FlagsJson,
}

/// The JSON of an empty preview, written for an entry whose preview is wanted but unknown.
const EMPTY_PREVIEW: &str = ",\"preview\":\"\"}";

impl ListEntry {
    /// `summary` with `flags`.
    pub fn new(summary: SummaryJson, flags: FlagsJson) -> Self {
        ListEntry { summary, flags }
    }

    /// A fresh summary, flags and all.
    pub fn from_summary(mut summary: Summary) -> Self {
        let flags = std::mem::take(&mut summary.flags);
        let preview = summary.preview.take();
        ListEntry {
            summary: SummaryJson::new(&summary, preview.as_deref()),
            flags: FlagsJson::new(flags.iter().map(String::as_str)),
        }
    }

    /// The entry with `preview` as its summary's preview.
    pub fn with_preview(&self, preview: &str) -> Self {
        ListEntry {
            summary: self.summary.with_preview(preview),
            flags: self.flags.clone(),
        }
    }

    /// The message's UID.
    pub fn uid(&self) -> u32 {
        self.summary.uid
    }

    /// The summary without flags, as the cache keeps it.
    pub fn summary(&self) -> &SummaryJson {
        &self.summary
    }

    /// Bytes [`ListEntry::write`] adds at most.
    pub fn json_len(&self) -> usize {
        self.summary.len() + self.flags.0.len() + EMPTY_PREVIEW.len()
    }

    /// The entry as a [`Summary`] value, read back from its JSON (with its preview when
    /// `preview`).
    pub fn to_summary(&self, preview: bool) -> Option<Summary> {
        let mut json = String::with_capacity(self.json_len());
        self.write(&mut json, preview);
        serde_json::from_str(&json).ok()
    }

    /// Appends the entry's JSON object, as `serde_json` writes the [`Summary`]: with its
    /// preview when `preview` (an empty one if the summary has none), else without.
    pub fn write(&self, out: &mut String, preview: bool) {
        out.push_str(self.summary.head());
        out.push_str(self.flags.as_str());
        match (preview, self.summary.has_preview()) {
            (true, true) => out.push_str(self.summary.tail()),
            (true, false) => {
                out.push_str(self.summary.tail_before_preview());
                out.push_str(EMPTY_PREVIEW);
            }
            (false, _) => {
                out.push_str(self.summary.tail_before_preview());
                out.push('}');
            }
        }
    }
}

/// Appends `s` as a JSON string, escaped as `serde_json` escapes it.
pub fn push_json_string(out: &mut String, s: &str) {
    let plain = |b: u8| b >= 0x20 && b != b'"' && b != b'\\';
    if s.bytes().all(plain) {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // serde_json writes a `&str` into a `String` infallibly.
        out.push_str(&serde_json::to_string(s).expect("a string serialises to JSON"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::summary::Address;

    fn summary(flags: &[&str], preview: Option<&str>) -> Summary {
        Summary {
            uid: 4827,
            message_id: Some("<a\"b@example.com>".into()),
            subject: Some("Re: \"flags\":[] — \\ \u{1} tab\t\"flags\":,\"preview\":\"x\"}".into()),
            from: vec![Address {
                name: Some("Zoë \"Z\" Martin".into()),
                address: "zoe@example.com".into(),
            }],
            to: vec![Address {
                name: None,
                address: "finance@example.org".into(),
            }],
            cc: Vec::new(),
            reply_to: vec![Address {
                name: Some("flags".into()),
                address: "r@example.com".into(),
            }],
            date: Some("2024-03-01T10:15:00Z".into()),
            received_at: None,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            size: 254_811,
            has_attachments: true,
            in_reply_to: Some("<x@y>".into()),
            preview: preview.map(str::to_owned),
        }
    }

    fn written(entry: &ListEntry, preview: bool) -> String {
        let mut out = String::new();
        entry.write(&mut out, preview);
        assert!(out.len() <= entry.json_len());
        out
    }

    /// What serde writes for `summary`, with or without its preview.
    fn serde(summary: &Summary, preview: bool) -> String {
        let mut summary = summary.clone();
        if !preview {
            summary.preview = None;
        }
        serde_json::to_string(&summary).unwrap()
    }

    const PREVIEWS: [Option<&str>; 4] = [
        None,
        Some(""),
        Some("Thanks, see you there."),
        Some("a \"quote\", a \\ and ,\"preview\":\"not the key\"} — ✉"),
    ];

    #[test]
    fn an_entry_is_what_serde_writes_for_the_summary() {
        for flags in [
            &[][..],
            &["\\Seen"][..],
            &["\\Seen", "\\Flagged", "$Label1", "odd\"one", "back\\slash"][..],
        ] {
            for preview in PREVIEWS {
                let fetched = summary(flags, preview);
                let cached = ListEntry::from_summary(fetched.clone());
                assert_eq!(written(&cached, false), serde(&fetched, false));
                if preview.is_some() {
                    assert_eq!(written(&cached, true), serde(&fetched, true));
                }
                // The cached form with fresh flags says the same.
                let fresh = FlagsJson::new(flags.iter().copied());
                let kept = ListEntry::from_summary(summary(&["\\Deleted"], preview));
                let again = ListEntry::new(kept.summary().clone(), fresh);
                assert_eq!(written(&again, false), serde(&fetched, false));
                if preview.is_some() {
                    assert_eq!(written(&again, true), serde(&fetched, true));
                }
            }
        }
    }

    #[test]
    fn a_preview_learnt_later_is_what_serde_writes() {
        for learnt in PREVIEWS.into_iter().flatten() {
            let expected = summary(&["\\Seen"], Some(learnt));
            for had in PREVIEWS {
                let entry = ListEntry::from_summary(summary(&["\\Seen"], had)).with_preview(learnt);
                assert!(entry.summary().has_preview());
                assert_eq!(written(&entry, true), serde(&expected, true), "had {had:?}");
                assert_eq!(written(&entry, false), serde(&expected, false));
                assert_eq!(entry.to_summary(true), Some(expected.clone()));
            }
        }
    }

    #[test]
    fn a_wanted_preview_that_is_unknown_is_written_empty() {
        let entry = ListEntry::from_summary(summary(&[], None));
        assert!(!entry.summary().has_preview());
        assert_eq!(written(&entry, true), serde(&summary(&[], Some("")), true));
    }

    #[test]
    fn recent_is_left_out_of_the_flags() {
        let flags = FlagsJson::new(["\\Seen", "\\RECENT", "\\Recent", "$Junk"]);
        assert_eq!(flags.as_str(), r#"["\\Seen","$Junk"]"#);
        assert_eq!(FlagsJson::new([]).as_str(), "[]");
    }

    #[test]
    fn strings_are_escaped_as_serde_escapes_them() {
        for s in [
            "plain",
            "",
            "quo\"te",
            "back\\slash",
            "\u{0}\u{1f}\n",
            "Zoë ✉",
            "\u{7f}",
        ] {
            let mut out = String::new();
            push_json_string(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn an_entry_reads_back_as_the_summary_it_was_made_from() {
        for preview in PREVIEWS {
            let original = summary(&["\\Seen", "$x"], preview);
            let entry = ListEntry::from_summary(original.clone());
            assert_eq!(entry.to_summary(preview.is_some()), Some(original.clone()));
            assert_eq!(
                entry.to_summary(false),
                Some(Summary {
                    preview: None,
                    ..original
                })
            );
        }
    }
}
