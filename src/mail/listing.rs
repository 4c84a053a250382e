//! Header list entries kept as JSON: a [`Summary`] serialised once, when it is fetched, and
//! written into every later page by concatenation.
//!
//! Only the flags of a summary change for a given UIDVALIDITY and UID, and the flags are read
//! fresh for every page. So a cached summary is its JSON with a gap where the flags' value
//! goes ([`SummaryJson`]), and a page entry is that JSON and the current flags, already in
//! JSON too ([`ListEntry`]). Serialising a page then copies bytes: no summary is cloned, no
//! string is escaped twice.

use std::sync::Arc;

use super::summary::Summary;

/// What stands between the flags' key and the flags' value in a serialised [`Summary`].
const FLAGS_KEY: &str = "\"flags\":";

/// A [`Summary`]'s JSON object without the value of `flags`: exactly what `serde_json` writes
/// for it, once the flags' value is put back between [`SummaryJson::head`] and
/// [`SummaryJson::tail`]. Cloning it shares the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryJson {
    /// The object, without the flags' value; its count and bytes in one allocation.
    text: Arc<str>,
    /// Where the flags' value goes in `text`.
    gap: u32,
    /// The message's UID.
    uid: u32,
}

impl SummaryJson {
    /// Serialises `summary`, whose flags must be empty.
    fn new(summary: &Summary) -> Self {
        assert!(summary.flags.is_empty(), "the flags are kept apart");
        // The flags' value, written empty, is cut out again. A quote inside a JSON string is
        // always escaped, so `"flags":[]` can only be the key and its empty value.
        let text = serde_json::to_string(summary).expect("a summary serialises to JSON");
        let empty = format!("{FLAGS_KEY}[]");
        let at = text
            .find(&empty)
            .expect("a serialised summary has its flags");
        let gap = at + FLAGS_KEY.len();
        let mut cut = String::with_capacity(text.len() - 2);
        cut.push_str(&text[..gap]);
        cut.push_str(&text[gap + 2..]);
        SummaryJson {
            text: cut.into(),
            gap: u32::try_from(gap).expect("a summary's JSON is far below 4 GiB"),
            uid: summary.uid,
        }
    }

    /// The message's UID.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The JSON up to the flags' value.
    pub fn head(&self) -> &str {
        &self.text[..self.gap as usize]
    }

    /// The JSON after the flags' value.
    pub fn tail(&self) -> &str {
        &self.text[self.gap as usize..]
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

impl ListEntry {
    /// `summary` with `flags`.
    pub fn new(summary: SummaryJson, flags: FlagsJson) -> Self {
        ListEntry { summary, flags }
    }

    /// A fresh summary, flags and all.
    pub fn from_summary(mut summary: Summary) -> Self {
        let flags = std::mem::take(&mut summary.flags);
        ListEntry {
            summary: SummaryJson::new(&summary),
            flags: FlagsJson::new(flags.iter().map(String::as_str)),
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

    /// Bytes [`ListEntry::write`] adds.
    pub fn json_len(&self) -> usize {
        self.summary.len() + self.flags.0.len()
    }

    /// The entry as a [`Summary`] value, read back from its JSON.
    pub fn to_summary(&self) -> Option<Summary> {
        let mut json = String::with_capacity(self.json_len());
        self.write(&mut json);
        serde_json::from_str(&json).ok()
    }

    /// Appends the entry's JSON object, as `serde_json` writes the [`Summary`].
    pub fn write(&self, out: &mut String) {
        out.push_str(self.summary.head());
        out.push_str(self.flags.as_str());
        out.push_str(self.summary.tail());
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

    fn summary(flags: &[&str]) -> Summary {
        Summary {
            uid: 4827,
            message_id: Some("<a\"b@example.com>".into()),
            subject: Some("Re: \"flags\":[] — \\ \u{1} tab\t\"flags\":".into()),
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
        }
    }

    fn written(entry: &ListEntry) -> String {
        let mut out = String::new();
        entry.write(&mut out);
        assert_eq!(out.len(), entry.json_len());
        out
    }

    #[test]
    fn an_entry_is_what_serde_writes_for_the_summary() {
        for flags in [
            &[][..],
            &["\\Seen"][..],
            &["\\Seen", "\\Flagged", "$Label1", "odd\"one", "back\\slash"][..],
        ] {
            let fetched = summary(flags);
            let expected = serde_json::to_string(&fetched).unwrap();
            let cached = ListEntry::from_summary(fetched);
            assert_eq!(written(&cached), expected);
            // The cached form with fresh flags says the same.
            let fresh = FlagsJson::new(flags.iter().copied());
            let kept = ListEntry::from_summary(summary(&["\\Deleted"]));
            let again = ListEntry::new(kept.summary().clone(), fresh);
            assert_eq!(written(&again), expected);
        }
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
        let original = summary(&["\\Seen", "$x"]);
        assert_eq!(
            ListEntry::from_summary(original.clone()).to_summary(),
            Some(original)
        );
    }
}
