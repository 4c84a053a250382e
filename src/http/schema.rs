//! Named schemas for the values callers send, with the exact rules the bridge applies, so the
//! OpenAPI document tells a client (and a generator such as Schemathesis) which values are
//! accepted before it sends them.
//!
//! Each type here exists only for the document: handlers parse into the validated types of
//! [`crate::imap::encode`], whose rules these schemas restate. Lengths are in characters
//! (Unicode scalar values), as JSON Schema counts them, and the bridge counts them the same way.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::json;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{PartialSchema, ToSchema};

/// Declares a unit type whose OpenAPI schema is the given JSON, named `$name` in the document.
macro_rules! named_schema {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $schema:expr) => {
        $(#[$doc])*
        pub struct $ty;

        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                serde_json::from_value($schema).expect("a valid schema")
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

named_schema!(
    /// A full mailbox name.
    MailboxNameSchema,
    "MailboxName",
    json!({
        "type": "string",
        "description": "A full mailbox name in UTF-8, any script; the server's hierarchy \
            delimiter (`/` on most servers) separates levels. 1 to 1000 characters, no control \
            characters (U+0000–U+001F, U+007F–U+009F) and no `*` or `%`. `INBOX` is \
            case-insensitive. The server may refuse names its storage cannot hold (403 \
            `forbidden` on create or rename, 404 elsewhere).",
        "pattern": MAILBOX_PATTERN,
        "minLength": 1,
        "maxLength": 1000,
        "example": "Archive/2024",
    })
);

named_schema!(
    /// A message's IMAP UID.
    UidSchema,
    "Uid",
    json!({
        "type": "integer",
        "description": "A message's IMAP UID: a positive 32-bit number, unique within one \
            UIDVALIDITY of a mailbox.",
        "minimum": 1,
        "maximum": u32::MAX,
        "example": 4211,
    })
);

named_schema!(
    /// A flag.
    FlagSchema,
    "Flag",
    json!({
        "type": "string",
        "description": "A system flag, `\\Seen`, `\\Answered`, `\\Flagged`, `\\Deleted` or \
            `\\Draft` (any letter case), or a keyword: an IMAP atom of 1 to 100 printable ASCII \
            characters without space and `( ) { % * \" \\ ]` (`$Forwarded`, `$Label1`, `Work`).",
        "pattern": FLAG_PATTERN,
        "example": "\\Seen",
    })
);

named_schema!(
    /// A body part id.
    PartIdSchema,
    "PartId",
    json!({
        "type": "string",
        "description": "A body part of a message as IMAP numbers them: `1`, `2`, `1.2`; \
            1 to 32 numbers of 1 to 9 digits without leading zeros.",
        "pattern": PART_ID_PATTERN,
        "maxLength": 319,
        "example": "2",
    })
);

named_schema!(
    /// A delta-sync state.
    SyncStateSchema,
    "SyncState",
    json!({
        "type": "string",
        "description": "A delta-sync state, as returned in `state` by a header list or \
            `changes`; opaque to clients. One of another UIDVALIDITY gets 409 \
            `uid_validity_changed`.",
        "pattern": STATE_PATTERN,
        "example": "s1.1700000000.8812.10306",
    })
);

named_schema!(
    /// A page cursor.
    CursorSchema,
    "Cursor",
    json!({
        "type": "string",
        "description": "`next_cursor` of a previous page of the same list (same sort and \
            filters); opaque to clients.",
        "pattern": CURSOR_PATTERN,
        "example": "c1.1700000000.10256.50.5f3e2a11",
    })
);

named_schema!(
    /// A thread's id.
    ThreadIdSchema,
    "ThreadId",
    json!({
        "type": "string",
        "description": "A thread's `thread_id` from a thread list of the same mailbox; opaque \
            to clients.",
        "pattern": THREAD_ID_PATTERN,
        "example": "t1.5f3e2a11c09d7b64",
    })
);

named_schema!(
    /// Flags of a new message, comma separated.
    FlagListSchema,
    "FlagList",
    json!({
        "type": "string",
        "description": "No flags, or up to 50 comma-separated flags (see `Flag`); a keyword \
            cannot contain a comma here, although IMAP would allow one.",
        "pattern": FLAG_LIST_PATTERN,
        "example": "\\Seen,$Label1",
    })
);

named_schema!(
    /// Raw bytes: a message or a decoded body part.
    BinarySchema,
    "Binary",
    json!({
        "type": "string",
        "format": "binary",
        "description": "Raw bytes, as the media type of the body says.",
    })
);

const MAILBOX_PATTERN: &str = r"^[^\x00-\x1F\x7F-\x9F*%]+$";

const PART_ID_PATTERN: &str = r"^[1-9][0-9]{0,8}(\.[1-9][0-9]{0,8}){0,31}$";

/// One number of a token: canonical decimal of at most 19 digits.
macro_rules! token_number {
    () => {
        r"(0|[1-9][0-9]{0,18})"
    };
}

const STATE_PATTERN: &str = concat!(
    r"^s1\.",
    token_number!(),
    r"\.",
    token_number!(),
    r"\.",
    token_number!(),
    "$"
);

const CURSOR_PATTERN: &str = concat!(
    r"^c1\.",
    token_number!(),
    r"\.",
    token_number!(),
    r"\.",
    token_number!(),
    r"\.[0-9a-fA-F]{8}$"
);

/// One flag, unanchored: each system flag spelled with per-letter classes (ECMA regular
/// expressions have no case-insensitive group), or an atom whose characters are `$atom`.
macro_rules! flag {
    ($atom:expr) => {
        concat!(
            r"(\\([Ss][Ee][Ee][Nn]|[Aa][Nn][Ss][Ww][Ee][Rr][Ee][Dd]|[Ff][Ll][Aa][Gg][Gg][Ee][Dd]",
            r"|[Dd][Ee][Ll][Ee][Tt][Ee][Dd]|[Dd][Rr][Aa][Ff][Tt])|",
            $atom,
            "{1,100})"
        )
    };
}

const THREAD_ID_PATTERN: &str = r"^t1\.[0-9a-f]{16}$";

/// IMAP's ATOM-CHAR without `]` (RFC 3501's flag-keyword), as a character class.
macro_rules! atom_char {
    () => {
        r"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]"
    };
}

/// [`atom_char`] without the comma that separates flags in a list.
macro_rules! list_atom_char {
    () => {
        r"[!#$&'+\-./0-9:;<=>?@A-Z\[^_`a-z|}~]"
    };
}

const FLAG_PATTERN: &str = concat!("^", flag!(atom_char!()), "$");

/// No flags, or up to 50 separated by commas.
const FLAG_LIST_PATTERN: &str = concat!(
    "^(",
    flag!(list_atom_char!()),
    "(,",
    flag!(list_atom_char!()),
    "){0,49})?$"
);

/// The schema of a flag change, shared by `FlagsPatch` and `BulkFlags`: `add` and/or `remove`,
/// or `set` alone, each a list of at most 50 flags; `uids` too when `bulk`.
fn flag_change_schema(description: &str, bulk: bool, example: serde_json::Value) -> RefOr<Schema> {
    let list = |what: &str| {
        json!({
            "type": "array",
            "items": {"$ref": "#/components/schemas/Flag"},
            "maxItems": 50,
            "description": what,
        })
    };
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    if bulk {
        properties.insert(
            "uids".into(),
            json!({
                "type": "array",
                "items": {"$ref": "#/components/schemas/Uid"},
                "minItems": 1,
                "maxItems": 1000,
                "description": "The messages (1 to 1000 UIDs).",
            }),
        );
        required.push("uids");
    }
    properties.insert("add".into(), list("Flags to add."));
    properties.insert("remove".into(), list("Flags to remove."));
    properties.insert(
        "set".into(),
        list("The complete new set of flags (not with `add`/`remove`)."),
    );
    // Each branch repeats its property, so that generators (openapi-typescript) give each
    // branch a precise type instead of an object with no properties.
    let needs = |field: &str| {
        json!({
            "type": "object",
            "required": [field],
            "properties": {field: properties[field].clone()},
        })
    };
    serde_json::from_value(json!({
        "description": description,
        "allOf": [
            {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            },
            {"oneOf": [needs("set"), {"anyOf": [needs("add"), needs("remove")]}]},
        ],
        "example": example,
    }))
    .expect("a valid schema")
}

/// Registers the schemas a flag change refers to.
fn flag_change_dependencies(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    for (name, schema) in [
        (FlagSchema::name(), FlagSchema::schema()),
        (UidSchema::name(), UidSchema::schema()),
    ] {
        schemas.push((name.into_owned(), schema));
    }
}

impl PartialSchema for super::flags::FlagsPatch {
    fn schema() -> RefOr<Schema> {
        flag_change_schema(
            "A flag change: `add` and/or `remove`, or `set` alone (replace all). Flags are system \
             flags (`\\Seen`, `\\Answered`, `\\Flagged`, `\\Deleted`, `\\Draft`) or keywords (IMAP \
             atoms).",
            false,
            json!({"add": ["\\Seen", "$Important"], "remove": ["\\Flagged"]}),
        )
    }
}

impl ToSchema for super::flags::FlagsPatch {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("FlagsPatch")
    }
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        flag_change_dependencies(schemas);
    }
}

impl PartialSchema for super::flags::BulkFlags {
    fn schema() -> RefOr<Schema> {
        flag_change_schema(
            "A flag change for many messages: `add` and/or `remove`, or `set` alone.",
            true,
            json!({"uids": [4209, 4210, 4211], "add": ["\\Seen"]}),
        )
    }
}

impl ToSchema for super::flags::BulkFlags {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("BulkFlags")
    }
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        flag_change_dependencies(schemas);
    }
}

/// A JSON number as a whole number of type `T`: JSON Schema counts `4211.0` as the integer
/// 4211, so the bridge accepts it too; fractions, negatives and values out of `T`'s range are
/// refused.
fn whole_number<T: TryFrom<u64>>(n: &serde_json::Number) -> Option<T> {
    let whole = match n.as_u64() {
        Some(u) => Some(u),
        None => n
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(f))
            .map(|f| f as u64),
    };
    whole.and_then(|u| T::try_from(u).ok())
}

/// For `#[serde(deserialize_with = "whole")]` on an integer field (see [`whole_number`]).
pub fn whole<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error as _;
    let n = serde_json::Number::deserialize(deserializer)?;
    whole_number(&n).ok_or_else(|| D::Error::custom(format!("{n} is out of range")))
}

/// For `#[serde(deserialize_with = "uid_numbers")]` on a UID list: whole numbers from 0 to
/// 2³²−1 (see [`whole_number`]; 0 is refused later, with the other UID rules).
pub fn uid_numbers<'de, D>(deserializer: D) -> Result<Vec<u32>, D::Error>
where
    D: Deserializer<'de>,
{
    use serde::de::Error as _;
    Vec::<serde_json::Number>::deserialize(deserializer)?
        .iter()
        .map(|n| whole_number(n).ok_or_else(|| D::Error::custom(format!("{n} is not a UID"))))
        .collect()
}

/// For `#[serde(default, deserialize_with = "present")]` on an optional list: absent is
/// `None`, a value is `Some`, and `null` is refused (the document does not allow it).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::encode::{Flag, MailboxName, PartId};
    use utoipa::PartialSchema;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;

    /// The `pattern` of a newtype schema.
    fn pattern_of(schema: RefOr<Schema>) -> regex::Regex {
        let RefOr::T(Schema::Object(object)) = schema else {
            panic!("an inline object schema");
        };
        regex::Regex::new(&object.pattern.expect("a pattern")).expect("a valid pattern")
    }

    const SAMPLES: &[&str] = &[
        "\\Seen",
        "\\seen",
        "\\SEEN",
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\draft",
        "\\Recent",
        "\\Foo",
        "\\",
        "$Label1",
        "$Forwarded",
        "Work",
        "a]b",
        "a b",
        "(x",
        "x)",
        "{5}",
        "50%",
        "a*",
        "\"q\"",
        "back\\slash",
        "",
        "ü",
        "\r\n",
        "A1 DELETE INBOX",
        "1",
        "1.2",
        "01",
        "1.",
        ".1",
        "1..2",
        "0",
        "4294967295",
        "4294967296",
        "2.10.3",
        "1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1",
        "1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1",
        "INBOX",
        "Archive/2024",
        "Entwürfe",
        "日本語",
        "a\u{85}b",
        "a\u{7f}",
        "x\ty",
        "&-",
    ];

    #[test]
    fn the_flag_pattern_accepts_exactly_what_the_bridge_accepts() {
        let pattern = pattern_of(FlagSchema::schema());
        for sample in SAMPLES {
            let long = sample.repeat(60);
            for s in [*sample, long.as_str()] {
                assert_eq!(
                    pattern.is_match(s),
                    Flag::parse(s).is_ok(),
                    "flag {s:?}: pattern and parser disagree"
                );
            }
        }
    }

    #[test]
    fn the_part_id_pattern_accepts_exactly_what_the_bridge_accepts() {
        let pattern = pattern_of(PartIdSchema::schema());
        for s in SAMPLES {
            assert_eq!(
                pattern.is_match(s),
                PartId::parse(s).is_ok(),
                "part id {s:?}: pattern and parser disagree"
            );
        }
    }

    #[test]
    fn the_thread_id_pattern_accepts_exactly_what_the_bridge_accepts() {
        let pattern = pattern_of(ThreadIdSchema::schema());
        for s in SAMPLES.iter().copied().chain([
            "t1.0123456789abcdef",
            "t1.0123456789ABCDEF",
            "t1.0123456789abcde",
            "t1.0123456789abcdef0",
            "t2.0123456789abcdef",
            "t1.0123456789abcdef\n",
        ]) {
            assert_eq!(
                pattern.is_match(s),
                s.parse::<crate::imap::state::ThreadId>().is_ok(),
                "thread id {s:?}: pattern and parser disagree"
            );
        }
    }

    #[test]
    fn the_mailbox_pattern_accepts_exactly_what_the_bridge_accepts() {
        let pattern = pattern_of(MailboxNameSchema::schema());
        for s in SAMPLES {
            let fits = pattern.is_match(s) && s.chars().count() <= 1000;
            assert_eq!(
                fits,
                MailboxName::new(s).is_ok(),
                "mailbox {s:?}: pattern and parser disagree"
            );
        }
        let longest = "ü".repeat(1000);
        assert!(MailboxName::new(&longest).is_ok(), "1000 characters fit");
        assert!(MailboxName::new(&format!("{longest}x")).is_err());
    }
}
