//! The one place a caller's value becomes IMAP command bytes.
//!
//! Every value that arrives from an HTTP caller (mailbox names, search text, flags, UIDs,
//! dates, APPEND bodies, login names and passwords) is turned into one of the validated types
//! below before it can reach an IMAP server, and [`Command`] accepts caller data only through
//! those types. Command names and keywords are `&'static str`, so only code chooses them.
//! Together this makes it impossible to build a command in which a caller's value ends the
//! line, opens a literal the server did not expect, smuggles in a second command or is read
//! as a wildcard:
//!
//! * [`MailboxName`] refuses control characters and the LIST wildcards `*` and `%`; it is
//!   sent as a quoted string of its modified UTF-7 form (RFC 3501 §5.1.3), which is always
//!   printable ASCII.
//! * [`ImapString`] refuses NUL, CR and LF. It is sent as a quoted string when it is
//!   printable ASCII and as a literal otherwise, and the literal's length is always counted
//!   here, from the exact bytes that follow it.
//! * [`Flag`] keywords must be IMAP atoms; [`UidSet`]s, [`PartId`]s, numbers and dates are
//!   rendered from integers, so they carry nothing but digits and punctuation chosen here.
//! * [`Command::to_wire`] splits a command after every synchronising literal so that the
//!   sender waits for the server's continuation request (RFC 3501 §7.5), or uses
//!   non-synchronising literals when the server advertised LITERAL+ (RFC 7888).
//!
//! Modified UTF-7 is implemented in this module instead of using the `utf7-imap` crate,
//! because that crate panics on malformed base64 sent by a server and accepts input RFC 3501
//! forbids (an unterminated shift such as `&AGE`, base64-encoded printable ASCII such as
//! `&AGE-`, null shifts, unpaired surrogates), and it leaves DEL unencoded. Strictness
//! matters here: a name that decoded leniently would be re-encoded differently and would no
//! longer name the server's mailbox.
//!
//! The module only produces bytes; it has no async or network dependencies.

use std::borrow::Cow;
use std::fmt;

use chrono::{Datelike, NaiveDate};

/// Longest mailbox name accepted, in characters (what JSON Schema's `maxLength` counts).
const MAX_MAILBOX_NAME_CHARS: usize = 1000;

/// Longest keyword flag accepted. RFC 3501 sets no limit; this keeps flag lists short
/// enough for every server's command-line limit while allowing any realistic keyword.
const MAX_KEYWORD_BYTES: usize = 100;

/// Longest [`ImapString`] accepted, in characters.
const MAX_STRING_CHARS: usize = 8192;

/// Most numbers in a [`PartId`]: the deepest part the MIME walk names
/// ([`crate::mail::structure::WalkLimits`] never goes deeper), far beyond real MIME trees.
pub const MAX_PART_ID_NUMBERS: usize = 32;

/// Largest number in a [`PartId`]: nine digits, which always fit in 32 bits.
pub const MAX_PART_NUMBER: usize = 999_999_999;

/// Longest [`PartId`]: [`MAX_PART_ID_NUMBERS`] numbers of nine digits and the dots between.
const MAX_PART_ID_BYTES: usize = MAX_PART_ID_NUMBERS * 10 - 1;

// How the errors below name the value they refuse.
const MAILBOX_NAME: &str = "mailbox name";
const FLAG: &str = "flag";
const KEYWORD: &str = "keyword flag";
const TEXT: &str = "text";
const UID_SET: &str = "UID set";
const PART_ID: &str = "part id";

/// Why a caller's value was refused.
///
/// The `Display` text is meant for HTTP callers: it names the kind of value and the rule it
/// broke, but never repeats the value itself, which may be a password or may be crafted to
/// mislead whoever reads the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidArgument {
    /// The value is empty where something is required.
    #[error("The {what} must not be empty.")]
    Empty {
        /// The kind of value, e.g. "mailbox name".
        what: &'static str,
    },
    /// The value is longer than allowed.
    #[error("The {what} is too long; at most {max} characters are allowed.")]
    TooLong {
        /// The kind of value, e.g. "mailbox name".
        what: &'static str,
        /// The largest accepted length in bytes.
        max: usize,
    },
    /// The value contains U+0000, which IMAP cannot transport.
    #[error("The {what} must not contain NUL characters.")]
    Nul {
        /// The kind of value, e.g. "text".
        what: &'static str,
    },
    /// The value contains CR or LF, which would end the IMAP command line.
    #[error("The {what} must not contain line breaks (CR or LF).")]
    LineBreak {
        /// The kind of value, e.g. "text".
        what: &'static str,
    },
    /// The value contains a control character other than NUL, CR or LF.
    #[error("The {what} must not contain control characters (U+0000 to U+001F, U+007F to U+009F).")]
    ControlCharacter {
        /// The kind of value, e.g. "mailbox name".
        what: &'static str,
    },
    /// The value contains `*` or `%`, which IMAP LIST reads as wildcards.
    #[error("The {what} must not contain the wildcard characters '*' or '%'.")]
    Wildcard {
        /// The kind of value, e.g. "mailbox name".
        what: &'static str,
    },
    /// A keyword flag is not an IMAP atom.
    #[error(
        "A keyword flag must consist of printable ASCII characters other than \
         space and ( ) {{ % * \" \\ ]."
    )]
    NotAnAtom,
    /// A flag starts with a backslash but is not one a caller may set.
    #[error(
        "Only the system flags \\Seen, \\Answered, \\Flagged, \\Deleted and \\Draft \
         can be set; other flags starting with a backslash are reserved."
    )]
    UnknownSystemFlag,
    /// A UID of 0; UIDs start at 1 (RFC 3501 §2.3.1.1).
    #[error("UIDs start at 1; 0 is not a valid UID.")]
    ZeroUid,
    /// A UID range whose last UID is smaller than its first.
    #[error("A UID range must not end before it starts.")]
    ReversedRange,
    /// A mailbox name from the server is not valid modified UTF-7.
    #[error(
        "The IMAP server sent a mailbox name that is not valid modified UTF-7 \
         (RFC 3501 section 5.1.3)."
    )]
    MalformedModifiedUtf7,
    /// A body part number that is not RFC 3501's `section-part`.
    #[error("A part id must be one or more positive numbers separated by dots, such as 1 or 1.2.")]
    InvalidPartId,
    /// A body part number deeper than any part the bridge lists.
    #[error("A part id has at most {max} numbers.")]
    PartIdTooDeep {
        /// The most numbers accepted.
        max: usize,
    },
    /// Not in the original interface of this module: a page cursor made for another sort or
    /// other filters, found once the cursor's UIDVALIDITY was checked.
    #[error("The cursor belongs to a list with another sort or other filters.")]
    ForeignCursor,
}

/// A mailbox's full name as UTF-8 (what HTTP callers see), validated.
///
/// A `MailboxName` is never empty, at most 1000 characters long, and contains no control
/// characters and no `*` or `%`, so it can be placed in any command, including as a LIST
/// reference, without being read as a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxName(String);

impl MailboxName {
    /// Validates a mailbox name given by a caller.
    ///
    /// The name must be non-empty, at most 1000 characters, free of C0 controls
    /// (U+0000–U+001F), DEL and C1 controls (U+0080–U+009F), and free of `*` and `%`.
    /// Quotes, backslashes, `&`, `{`, spaces and non-ASCII characters are allowed.
    ///
    /// `INBOX` in any letter case becomes `INBOX`, because RFC 3501 §5.1 makes that one
    /// name case-insensitive. Nothing else is case-folded: whether `inbox/Sub` names a
    /// child of INBOX depends on the server's hierarchy delimiter, which is not known here.
    pub fn new(name: &str) -> Result<Self, InvalidArgument> {
        if name.is_empty() {
            return Err(InvalidArgument::Empty { what: MAILBOX_NAME });
        }
        if name.len() > MAX_MAILBOX_NAME_CHARS && name.chars().count() > MAX_MAILBOX_NAME_CHARS {
            return Err(InvalidArgument::TooLong {
                what: MAILBOX_NAME,
                max: MAX_MAILBOX_NAME_CHARS,
            });
        }
        for ch in name.chars() {
            match ch {
                '\0' => return Err(InvalidArgument::Nul { what: MAILBOX_NAME }),
                '\r' | '\n' => return Err(InvalidArgument::LineBreak { what: MAILBOX_NAME }),
                // `is_control` is exactly Unicode's Cc category: C0, DEL and C1.
                c if c.is_control() => {
                    return Err(InvalidArgument::ControlCharacter { what: MAILBOX_NAME });
                }
                '*' | '%' => return Err(InvalidArgument::Wildcard { what: MAILBOX_NAME }),
                _ => {}
            }
        }
        if name.eq_ignore_ascii_case("INBOX") {
            return Ok(Self("INBOX".to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    /// Decodes a name as the server sent it in LIST or STATUS (modified UTF-7).
    ///
    /// Fails if the name is not strictly valid modified UTF-7, or if the decoded name breaks
    /// one of the rules of [`MailboxName::new`] (a server mailbox whose name contains `*`,
    /// `%` or a control character therefore cannot be represented).
    pub fn from_imap(encoded: &str) -> Result<Self, InvalidArgument> {
        let decoded =
            decode_modified_utf7(encoded).ok_or(InvalidArgument::MalformedModifiedUtf7)?;
        Self::new(&decoded)
    }

    /// The name as UTF-8.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The modified UTF-7 form sent to the server; always printable ASCII.
    pub fn to_imap(&self) -> String {
        encode_modified_utf7(&self.0)
    }

    /// Whether this is the INBOX.
    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The modified base64 alphabet of RFC 3501 §5.1.3: standard base64 with `,` for `/`.
const MODIFIED_BASE64: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Whether modified UTF-7 lets this character represent itself.
fn is_printable_ascii(ch: char) -> bool {
    (' '..='~').contains(&ch)
}

/// Encodes `text` as modified UTF-7.
///
/// Each maximal run of characters that cannot represent themselves becomes one base64
/// section, which is the only form the strict decoder below accepts.
fn encode_modified_utf7(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run: Vec<u16> = Vec::new();
    for ch in text.chars() {
        if is_printable_ascii(ch) {
            flush_base64_section(&mut run, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(ch.encode_utf16(&mut units));
        }
    }
    flush_base64_section(&mut run, &mut out);
    out
}

/// Appends `&<modified base64 of the UTF-16BE units>-` to `out` and empties `units`.
fn flush_base64_section(units: &mut Vec<u16>, out: &mut String) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    for &unit in units.iter() {
        bits = (bits << 16) | u32::from(unit);
        bit_count += 16;
        while bit_count >= 6 {
            bit_count -= 6;
            out.push(char::from(
                MODIFIED_BASE64[((bits >> bit_count) & 0x3f) as usize],
            ));
        }
        bits &= (1 << bit_count) - 1;
    }
    if bit_count > 0 {
        // Pad the last sextet with zero bits; RFC 3501 omits base64's `=` padding.
        out.push(char::from(
            MODIFIED_BASE64[((bits << (6 - bit_count)) & 0x3f) as usize],
        ));
    }
    out.push('-');
    units.clear();
}

/// Decodes modified UTF-7, accepting only the one canonical encoding of each name.
///
/// Rejected, following RFC 3501 §5.1.3: bytes outside printable ASCII; `&` without a
/// closing `-`; characters outside the modified base64 alphabet; a section whose length or
/// padding bits do not describe whole UTF-16 units; unpaired surrogates; base64 that encodes
/// printable ASCII, which must represent itself; and a null shift (a section that starts
/// right after another one ended), which the RFC prohibits.
fn decode_modified_utf7(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut position = 0;
    let mut after_base64_section = false;
    while let Some(&byte) = bytes.get(position) {
        match byte {
            b'&' => {
                let section_start = position + 1;
                let section_len = bytes[section_start..].iter().position(|&b| b == b'-')?;
                let section = &bytes[section_start..section_start + section_len];
                if section.is_empty() {
                    out.push('&');
                    after_base64_section = false;
                } else {
                    if after_base64_section {
                        return None;
                    }
                    decode_base64_section(section, &mut out)?;
                    after_base64_section = true;
                }
                position = section_start + section_len + 1;
            }
            0x20..=0x7e => {
                out.push(char::from(byte));
                after_base64_section = false;
                position += 1;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Decodes the modified base64 between `&` and `-` and appends the characters to `out`.
fn decode_base64_section(section: &[u8], out: &mut String) -> Option<()> {
    let mut units = Vec::with_capacity(section.len() * 6 / 16);
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    for &byte in section {
        let value = MODIFIED_BASE64.iter().position(|&b| b == byte)?;
        bits = (bits << 6) | value as u32;
        bit_count += 6;
        if bit_count >= 16 {
            bit_count -= 16;
            units.push((bits >> bit_count) as u16);
            bits &= (1 << bit_count) - 1;
        }
    }
    // The canonical encoding ends with fewer than six bits left over, all zero.
    if bit_count >= 6 || bits != 0 {
        return None;
    }
    for decoded in char::decode_utf16(units) {
        let ch = decoded.ok()?;
        if is_printable_ascii(ch) {
            return None;
        }
        out.push(ch);
    }
    Some(())
}

/// A message flag a caller may set or clear: one of the five settable system flags of
/// RFC 3501 §2.3.2, or a keyword.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// `\Seen`
    Seen,
    /// `\Answered`
    Answered,
    /// `\Flagged`
    Flagged,
    /// `\Deleted`
    Deleted,
    /// `\Draft`
    Draft,
    /// A keyword such as `$Label1` or `$Junk`: an IMAP atom of 1 to 100 characters, kept in
    /// the letter case it was given.
    Keyword(String),
}

impl Flag {
    /// Parses a flag given by a caller.
    ///
    /// `\Seen`, `\Answered`, `\Flagged`, `\Deleted` and `\Draft` are accepted in any letter
    /// case. `\Recent` (which only the server sets) and every other word starting with a
    /// backslash are refused. Anything else must be an IMAP atom: 1 to 100 printable ASCII
    /// characters, none of them space or one of `( ) { % * " \ ]`.
    pub fn parse(s: &str) -> Result<Self, InvalidArgument> {
        if s.is_empty() {
            return Err(InvalidArgument::Empty { what: FLAG });
        }
        if let Some(name) = s.strip_prefix('\\') {
            return Self::system(name).ok_or(InvalidArgument::UnknownSystemFlag);
        }
        if s.len() > MAX_KEYWORD_BYTES {
            return Err(InvalidArgument::TooLong {
                what: KEYWORD,
                max: MAX_KEYWORD_BYTES,
            });
        }
        if !s.bytes().all(is_atom_char) {
            return Err(InvalidArgument::NotAnAtom);
        }
        Ok(Self::Keyword(s.to_owned()))
    }

    /// Interprets a flag from a server response (e.g. a FETCH FLAGS item).
    ///
    /// Returns `None` for flags a caller could not set: `\Recent`, `\*`, unknown backslash
    /// flags, and keywords that [`Flag::parse`] would refuse.
    pub fn from_server(s: &str) -> Option<Self> {
        Self::parse(s).ok()
    }

    /// The wire form: `\Seen` etc., or the keyword.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Seen => "\\Seen",
            Self::Answered => "\\Answered",
            Self::Flagged => "\\Flagged",
            Self::Deleted => "\\Deleted",
            Self::Draft => "\\Draft",
            Self::Keyword(keyword) => keyword,
        }
    }

    /// The settable system flag called `\name`, matched case-insensitively.
    fn system(name: &str) -> Option<Self> {
        [
            Self::Seen,
            Self::Answered,
            Self::Flagged,
            Self::Deleted,
            Self::Draft,
        ]
        .into_iter()
        .find(|flag| flag.as_str()[1..].eq_ignore_ascii_case(name))
    }
}

/// Whether `byte` is an ATOM-CHAR of RFC 3501 §9: printable ASCII other than space and the
/// atom-specials `( ) { % * " \ ]`.
fn is_atom_char(byte: u8) -> bool {
    byte.is_ascii_graphic()
        && !matches!(byte, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// A non-empty set of UIDs (each 1..=`u32::MAX`), normalised to sorted, merged ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidSet(
    /// Inclusive ranges, sorted, each starting at 1 or later, separated by at least one
    /// UID not in the set (so two sets are equal exactly when they hold the same UIDs).
    Vec<(u32, u32)>,
);

impl UidSet {
    /// Builds a set from UIDs in any order, with duplicates allowed. Fails if there are no
    /// UIDs or one of them is 0.
    pub fn from_uids(uids: impl IntoIterator<Item = u32>) -> Result<Self, InvalidArgument> {
        let mut uids: Vec<u32> = uids.into_iter().collect();
        if uids.is_empty() {
            return Err(InvalidArgument::Empty { what: UID_SET });
        }
        if uids.contains(&0) {
            return Err(InvalidArgument::ZeroUid);
        }
        uids.sort_unstable();
        uids.dedup();
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for uid in uids {
            match ranges.last_mut() {
                Some((_, last)) if last.checked_add(1) == Some(uid) => *last = uid,
                _ => ranges.push((uid, uid)),
            }
        }
        Ok(Self(ranges))
    }

    /// A set holding one UID; fails for 0.
    pub fn single(uid: u32) -> Result<Self, InvalidArgument> {
        Self::range(uid, uid)
    }

    /// The UIDs `first..=last`; fails if `first` is 0 or greater than `last`.
    pub fn range(first: u32, last: u32) -> Result<Self, InvalidArgument> {
        if first == 0 {
            return Err(InvalidArgument::ZeroUid);
        }
        if first > last {
            return Err(InvalidArgument::ReversedRange);
        }
        Ok(Self(vec![(first, last)]))
    }

    /// Every UID a message can have, `1:4294967295`. Unlike `1:*`, which RFC 3501 ends at
    /// the highest UID that exists now, it also covers expunged UIDs above that one, so a
    /// `VANISHED` query over it reports an expunged highest message (Cyrus reads `*` that
    /// way).
    pub fn every() -> Self {
        Self(vec![(1, u32::MAX)])
    }

    /// The UIDs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().flat_map(|&(first, last)| first..=last)
    }

    /// How many UIDs the set holds (up to 2³² − 1, hence `u64`).
    pub fn len(&self) -> u64 {
        self.0
            .iter()
            .map(|&(first, last)| u64::from(last - first) + 1)
            .sum()
    }

    /// Always `false`: a `UidSet` is never empty. Provided for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `uid` is in the set.
    pub fn contains(&self, uid: u32) -> bool {
        self.0
            .binary_search_by(|&(first, last)| {
                if last < uid {
                    std::cmp::Ordering::Less
                } else if first > uid {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }
}

/// The IMAP sequence-set form, e.g. `1:3,5,9:12`.
impl fmt::Display for UidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, &(first, last)) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            if first == last {
                write!(f, "{first}")?;
            } else {
                write!(f, "{first}:{last}")?;
            }
        }
        Ok(())
    }
}

/// A body part number as FETCH `BODY[...]` takes it (RFC 3501 `section-part`): one or more
/// non-zero numbers joined by dots, such as `1` or `2.1.3`.
///
/// Not in the original interface of this module: the message operations address body parts
/// by id, and a part id may come from a caller, so it needs the same validation as every
/// other caller value before [`Command::section`] puts it on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartId(String);

impl PartId {
    /// Validates a part id. Each number must be written without leading zeros and have at
    /// most nine digits, so every part has exactly one spelling; there are at most
    /// [`MAX_PART_ID_NUMBERS`] numbers, so every part the MIME walk lists has an id this
    /// accepts, and the whole id is at most 319 bytes.
    pub fn parse(s: &str) -> Result<Self, InvalidArgument> {
        if s.is_empty() {
            return Err(InvalidArgument::Empty { what: PART_ID });
        }
        if s.len() > MAX_PART_ID_BYTES {
            return Err(InvalidArgument::TooLong {
                what: PART_ID,
                max: MAX_PART_ID_BYTES,
            });
        }
        // Nine digits are far beyond any real message's part count and always fit in 32 bits.
        let is_nz_number = |number: &str| {
            (1..=9).contains(&number.len())
                && number.bytes().all(|b| b.is_ascii_digit())
                && !number.starts_with('0')
        };
        if !s.split('.').all(is_nz_number) {
            return Err(InvalidArgument::InvalidPartId);
        }
        if s.split('.').count() > MAX_PART_ID_NUMBERS {
            return Err(InvalidArgument::PartIdTooDeep {
                max: MAX_PART_ID_NUMBERS,
            });
        }
        Ok(Self(s.to_owned()))
    }

    /// The id, e.g. `1.2`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PartId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string argument (search text, login name, password...): UTF-8 without NUL, CR or LF,
/// at most 8192 bytes; may be empty.
///
/// CR and LF are refused even though a literal could carry them: search text, login names
/// and passwords do not need line breaks in practice, and servers' handling of them in
/// search strings and credentials varies. `Debug` shows only the length,
/// because passwords are `ImapString`s.
#[derive(Clone, PartialEq, Eq)]
pub struct ImapString(String);

impl ImapString {
    /// Validates a string argument.
    pub fn new(s: &str) -> Result<Self, InvalidArgument> {
        if s.len() > MAX_STRING_CHARS && s.chars().count() > MAX_STRING_CHARS {
            return Err(InvalidArgument::TooLong {
                what: TEXT,
                max: MAX_STRING_CHARS,
            });
        }
        for byte in s.bytes() {
            match byte {
                0 => return Err(InvalidArgument::Nul { what: TEXT }),
                b'\r' | b'\n' => return Err(InvalidArgument::LineBreak { what: TEXT }),
                _ => {}
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// Whether the string is pure ASCII (a SEARCH needs `CHARSET UTF-8` otherwise).
    pub fn is_ascii(&self) -> bool {
        self.0.is_ascii()
    }

    /// The string itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ImapString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImapString({} bytes)", self.0.len())
    }
}

/// A SEARCH key callers can ask for (RFC 3501 §6.4.4).
///
/// Several keys given to [`Command::search`] must all match. Dates compare against the
/// internal date (`Since`, `Before`) or the Date header (`SentSince`, `SentBefore`), at day
/// granularity, as the RFC defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    /// Every message.
    All,
    /// Messages without `\Seen`.
    Unseen,
    /// Messages with `\Seen`.
    Seen,
    /// Messages with `\Flagged`.
    Flagged,
    /// Messages without `\Flagged`.
    Unflagged,
    /// Messages with `\Answered`.
    Answered,
    /// Messages with `\Deleted`.
    Deleted,
    /// Messages without `\Deleted`.
    Undeleted,
    /// Messages with `\Draft`.
    Draft,
    /// The From header contains the string.
    From(ImapString),
    /// The To header contains the string.
    To(ImapString),
    /// The Cc header contains the string.
    Cc(ImapString),
    /// The Subject header contains the string.
    Subject(ImapString),
    /// The headers or body contain the string.
    Text(ImapString),
    /// The body contains the string.
    Body(ImapString),
    /// Internal date on or after the day.
    Since(NaiveDate),
    /// Internal date before the day.
    Before(NaiveDate),
    /// Date header on or after the day.
    SentSince(NaiveDate),
    /// Date header before the day.
    SentBefore(NaiveDate),
    /// UID in the set.
    Uid(UidSet),
    /// Messages with the flag. A keyword is searched with `KEYWORD`; a system flag is
    /// searched with its own key (`SEEN`, `ANSWERED`, ...), because `KEYWORD` takes only
    /// keywords (RFC 3501 `flag-keyword`).
    Keyword(Flag),
    /// Messages that do not match the key.
    Not(Box<SearchKey>),
    /// Messages that match either key.
    Or(Box<SearchKey>, Box<SearchKey>),
}

impl SearchKey {
    /// The caller string this key carries, if any.
    fn text(&self) -> Option<&ImapString> {
        match self {
            Self::From(s)
            | Self::To(s)
            | Self::Cc(s)
            | Self::Subject(s)
            | Self::Text(s)
            | Self::Body(s) => Some(s),
            _ => None,
        }
    }
}

/// Visits search keys in prefix order (each `NOT` or `OR` before its operands), which is
/// the order RFC 3501 writes them in. It keeps its own stack instead of recursing, so a
/// deeply nested key cannot overflow the thread's stack.
struct PrefixOrder<'a> {
    pending: Vec<&'a SearchKey>,
}

impl<'a> PrefixOrder<'a> {
    fn new(keys: &'a [SearchKey]) -> Self {
        Self {
            pending: keys.iter().rev().collect(),
        }
    }
}

impl<'a> Iterator for PrefixOrder<'a> {
    type Item = &'a SearchKey;

    fn next(&mut self) -> Option<&'a SearchKey> {
        let key = self.pending.pop()?;
        match key {
            SearchKey::Not(operand) => self.pending.push(operand),
            SearchKey::Or(left, right) => {
                self.pending.push(right);
                self.pending.push(left);
            }
            _ => {}
        }
        Some(key)
    }
}

/// One argument of a [`Command`], kept apart from its wire form so that the same command
/// can be rendered with or without LITERAL+ and redacted for logs.
#[derive(Clone)]
enum Part {
    /// Text chosen by code, or rendered here from numbers, dates and part ids: sent and
    /// logged as is.
    Plain(Cow<'static, str>),
    /// Caller data whose wire form is fixed and safe by validation (atoms, UID sets): sent
    /// as `wire`, logged as `shape`.
    Masked { wire: String, shape: String },
    /// A caller's string, sent as a quoted string or as a literal depending on its bytes,
    /// logged as `shape`.
    Text { value: String, shape: String },
    /// Octets always sent as a literal, logged by size only.
    Literal(Vec<u8>),
}

impl Part {
    /// Whether a space goes before this part. A code-chosen `)` closes a list that an earlier
    /// atom such as `(UID` opened, and RFC 3501 allows no space before `)`.
    fn needs_separator(&self) -> bool {
        !matches!(self, Self::Plain(text) if text.starts_with(')'))
    }
}

/// A command under construction.
///
/// The command name and keywords are `&'static str` so that only code, never caller data,
/// chooses them; every caller value goes in through a typed method. Arguments follow the
/// name in the order the methods are called, separated by single spaces, except that an
/// [`atom`](Command::atom) starting with `)` is attached to the argument before it, so that
/// `.atom("(UID").section(..).atom(")")` gives `(UID BODY.PEEK[1]<0.100>)`. `Debug` prints
/// [`Command::redacted`].
#[derive(Clone)]
#[must_use = "a Command does nothing until it is encoded with to_wire"]
pub struct Command {
    name: &'static str,
    parts: Vec<Part>,
}

impl Command {
    /// Starts a command, e.g. `"UID FETCH"`, `"SELECT"` or `"LIST"`.
    pub fn new(name: &'static str) -> Self {
        debug_assert!(is_static_text(name), "command name must be one line");
        Self {
            name,
            parts: Vec::new(),
        }
    }

    /// The command's verb, e.g. `"UID FETCH"`: chosen by code, never by a caller.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Appends code-chosen text verbatim: a keyword such as `RETURN`, or static
    /// parenthesised text such as `(UID FLAGS ENVELOPE)` or `(SPECIAL-USE)`.
    pub fn atom(self, keyword: &'static str) -> Self {
        debug_assert!(is_static_text(keyword), "keyword must be one line");
        self.push(Part::Plain(Cow::Borrowed(keyword)))
    }

    /// Appends a number.
    pub fn number(self, n: u64) -> Self {
        self.push(Part::Plain(Cow::Owned(n.to_string())))
    }

    /// Appends a string: quoted (escaping `"` and `\`) when it is printable ASCII,
    /// otherwise a literal.
    pub fn string(self, s: &ImapString) -> Self {
        let shape = format!("<string {} bytes>", s.0.len());
        self.push(Part::Text {
            value: s.0.clone(),
            shape,
        })
    }

    /// Appends a mailbox name: INBOX as the atom `INBOX`, any other name as the quoted
    /// string of its modified UTF-7 form (which is printable ASCII, so never a literal).
    pub fn mailbox(self, m: &MailboxName) -> Self {
        let shape = format!("<mailbox {} bytes>", m.0.len());
        if m.is_inbox() {
            self.push(Part::Masked {
                wire: m.0.clone(),
                shape,
            })
        } else {
            self.push(Part::Text {
                value: m.to_imap(),
                shape,
            })
        }
    }

    /// Appends a LIST pattern chosen by code, such as `*` or `%`.
    pub fn list_pattern(self, pattern: &'static str) -> Self {
        debug_assert!(
            !pattern.is_empty()
                && pattern.bytes().all(
                    |b| b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'"' | b'\\')
                ),
            "a list pattern must consist of list-chars (RFC 3501 section 9)"
        );
        self.push(Part::Plain(Cow::Borrowed(pattern)))
    }

    /// Appends a UID set such as `1:3,5`.
    pub fn uid_set(self, s: &UidSet) -> Self {
        self.push(Part::Masked {
            wire: s.to_string(),
            shape: format!("<{} uids>", s.len()),
        })
    }

    /// Appends the sequence range `first:last`, or `first:*` without `last`, for windows
    /// chosen by code. `first` (and `last`, if given) must be at least 1.
    pub fn seq_range(self, first: u32, last: Option<u32>) -> Self {
        debug_assert!(first >= 1 && last != Some(0), "sequence numbers start at 1");
        let range = match last {
            Some(last) => format!("{first}:{last}"),
            None => format!("{first}:*"),
        };
        self.push(Part::Plain(Cow::Owned(range)))
    }

    /// Appends a parenthesised flag list such as `(\Seen $Label)`; an empty slice gives `()`.
    pub fn flags(self, flags: &[Flag]) -> Self {
        let wire = format!(
            "({})",
            flags.iter().map(Flag::as_str).collect::<Vec<_>>().join(" ")
        );
        let shape = format!(
            "({})",
            flags.iter().map(flag_shape).collect::<Vec<_>>().join(" ")
        );
        self.push(Part::Masked { wire, shape })
    }

    /// Appends a date such as `1-Feb-1994` (RFC 3501 `date`).
    ///
    /// IMAP years have exactly four digits, so dates before year 0 are sent as
    /// `1-Jan-0000` and dates after year 9999 as `31-Dec-9999`; no message is dated
    /// outside that range, so searches by such dates keep their meaning.
    pub fn date(self, d: NaiveDate) -> Self {
        self.push(Part::Plain(Cow::Owned(format_date(d))))
    }

    /// Appends the criteria of SEARCH (RFC 3501 §6.4.4): several keys must all match, and no
    /// keys means `ALL`. `CHARSET UTF-8` is emitted first when any string is non-ASCII (such
    /// strings are sent as literals); otherwise the charset is left at its US-ASCII default.
    ///
    /// For SORT and THREAD, whose criteria syntax differs, use [`Command::sort_criteria`].
    pub fn search(self, keys: &[SearchKey]) -> Self {
        debug_assert!(
            !self.takes_bare_charset(),
            "SORT and THREAD criteria are built with sort_criteria"
        );
        if PrefixOrder::new(keys).any(|key| key.text().is_some_and(|s| !s.is_ascii())) {
            self.atom("CHARSET").atom("UTF-8").search_keys(keys)
        } else {
            self.search_keys(keys)
        }
    }

    /// Appends the charset and criteria of SORT or THREAD (RFC 5256): `UTF-8`, then the keys
    /// as for [`Command::search`] (`ALL` when there are none).
    ///
    /// Not in the original interface of this module: RFC 5256 makes the charset mandatory
    /// and writes it without the `CHARSET` keyword, so [`Command::search`]'s output would be
    /// malformed there. UTF-8 is always named because every SORT server must support it and
    /// it covers ASCII.
    pub fn sort_criteria(self, keys: &[SearchKey]) -> Self {
        debug_assert!(
            self.takes_bare_charset(),
            "sort_criteria belongs to SORT and THREAD"
        );
        self.atom("UTF-8").search_keys(keys)
    }

    /// Appends one FETCH body section item such as `BODY.PEEK[1.2]<0.65536>`.
    ///
    /// `item` is chosen by code (`BODY`, `BODY.PEEK`, `BINARY.PEEK`...). `partial` is
    /// `(offset, length)`; servers refuse a length of 0 (RFC 3501 `partial` uses nz-number).
    ///
    /// Not in the original interface of this module: the message operations fetch body
    /// parts by [`PartId`], and composing `item[part]<o.l>` through [`Command::atom`] is not
    /// possible with a runtime part id.
    pub fn section(self, item: &'static str, part: &PartId, partial: Option<(u32, u32)>) -> Self {
        debug_assert!(is_static_text(item), "section item must be one line");
        let text = format!("{item}[{}]{}", part.0, format_partial(partial));
        self.push(Part::Plain(Cow::Owned(text)))
    }

    /// Appends a FETCH item for the whole message, such as `BODY.PEEK[]<0.65536>`; see
    /// [`Command::section`] for `item` and `partial`.
    ///
    /// Not in the original interface of this module, for the same reason as
    /// [`Command::section`].
    pub fn whole_body_section(self, item: &'static str, partial: Option<(u32, u32)>) -> Self {
        debug_assert!(is_static_text(item), "section item must be one line");
        let text = format!("{item}[]{}", format_partial(partial));
        self.push(Part::Plain(Cow::Owned(text)))
    }

    /// Appends a FETCH item for a part's MIME header, such as `BODY.PEEK[1.2.MIME]`; see
    /// [`Command::section`] for `item`. The message view reads a file name from it where the
    /// BODYSTRUCTURE lost bytes.
    pub fn mime_header_section(self, item: &'static str, part: &PartId) -> Self {
        debug_assert!(is_static_text(item), "section item must be one line");
        let text = format!("{item}[{}.MIME]", part.0);
        self.push(Part::Plain(Cow::Owned(text)))
    }

    /// Appends a FETCH item for the message's body without its header, such as
    /// `BODY.PEEK[TEXT]<0.65536>`; see [`Command::section`] for `item` and `partial`.
    pub fn text_section(self, item: &'static str, partial: Option<(u32, u32)>) -> Self {
        debug_assert!(is_static_text(item), "section item must be one line");
        let text = format!("{item}[TEXT]{}", format_partial(partial));
        self.push(Part::Plain(Cow::Owned(text)))
    }

    /// Appends search keys in RFC 3501 syntax, or `ALL` when there are none.
    fn search_keys(mut self, keys: &[SearchKey]) -> Self {
        if keys.is_empty() {
            return self.atom("ALL");
        }
        for key in PrefixOrder::new(keys) {
            self = match key {
                SearchKey::All => self.atom("ALL"),
                SearchKey::Unseen => self.atom("UNSEEN"),
                SearchKey::Seen | SearchKey::Keyword(Flag::Seen) => self.atom("SEEN"),
                SearchKey::Flagged | SearchKey::Keyword(Flag::Flagged) => self.atom("FLAGGED"),
                SearchKey::Unflagged => self.atom("UNFLAGGED"),
                SearchKey::Answered | SearchKey::Keyword(Flag::Answered) => self.atom("ANSWERED"),
                SearchKey::Deleted | SearchKey::Keyword(Flag::Deleted) => self.atom("DELETED"),
                SearchKey::Undeleted => self.atom("UNDELETED"),
                SearchKey::Draft | SearchKey::Keyword(Flag::Draft) => self.atom("DRAFT"),
                SearchKey::From(s) => self.atom("FROM").string(s),
                SearchKey::To(s) => self.atom("TO").string(s),
                SearchKey::Cc(s) => self.atom("CC").string(s),
                SearchKey::Subject(s) => self.atom("SUBJECT").string(s),
                SearchKey::Text(s) => self.atom("TEXT").string(s),
                SearchKey::Body(s) => self.atom("BODY").string(s),
                SearchKey::Since(d) => self.atom("SINCE").date(*d),
                SearchKey::Before(d) => self.atom("BEFORE").date(*d),
                SearchKey::SentSince(d) => self.atom("SENTSINCE").date(*d),
                SearchKey::SentBefore(d) => self.atom("SENTBEFORE").date(*d),
                SearchKey::Uid(set) => self.atom("UID").uid_set(set),
                SearchKey::Keyword(Flag::Keyword(keyword)) => {
                    self.atom("KEYWORD").push(Part::Masked {
                        wire: keyword.clone(),
                        shape: keyword_shape(keyword),
                    })
                }
                // The operands follow in prefix order.
                SearchKey::Not(_) => self.atom("NOT"),
                SearchKey::Or(_, _) => self.atom("OR"),
            };
        }
        self
    }

    /// Appends raw octets as a literal, e.g. an APPEND message. Any bytes are carried
    /// exactly (servers may still reject NUL); the caller enforces size limits.
    pub fn literal(self, bytes: &[u8]) -> Self {
        self.push(Part::Literal(bytes.to_vec()))
    }

    /// The wire form, as pieces to send in order, with `tag` prepended to the first.
    ///
    /// Without `literal_plus`, every piece but the last ends with a synchronising literal
    /// header `{n}\r\n`, after which the sender must wait for the server's `+`
    /// continuation request before sending the next piece (and must abandon the command if
    /// the server answers with a tagged response instead). With `literal_plus`, literals
    /// are sent as `{n+}` and the whole command is one piece; pass `true` only when the
    /// server advertised LITERAL+. [`Command::to_wire_for`] also covers LITERAL-. The last
    /// piece ends with `\r\n`.
    ///
    /// # Panics
    ///
    /// If `tag` is not a valid IMAP tag (non-empty ASTRING-CHARs other than `+`); tags
    /// are generated by the connection, never taken from callers.
    pub fn to_wire(&self, tag: &str, literal_plus: bool) -> Vec<Vec<u8>> {
        let mode = if literal_plus {
            Literals::Plus
        } else {
            Literals::Synchronizing
        };
        self.to_wire_for(tag, mode)
    }

    /// The wire form for a server whose literal support is `mode`: like
    /// [`Command::to_wire`], with non-synchronising literals wherever `mode` allows them.
    ///
    /// # Panics
    ///
    /// As [`Command::to_wire`].
    pub fn to_wire_for(&self, tag: &str, mode: Literals) -> Vec<Vec<u8>> {
        assert!(is_tag(tag), "invalid IMAP tag");
        let mut wire = Wire {
            pieces: Vec::new(),
            current: Vec::new(),
            mode,
        };
        wire.current.extend_from_slice(tag.as_bytes());
        wire.current.push(b' ');
        wire.current.extend_from_slice(self.name.as_bytes());
        for part in &self.parts {
            if part.needs_separator() {
                wire.current.push(b' ');
            }
            match part {
                Part::Plain(text) => wire.current.extend_from_slice(text.as_bytes()),
                Part::Masked { wire: text, .. } => wire.current.extend_from_slice(text.as_bytes()),
                Part::Text { value, .. } => wire.string(value),
                Part::Literal(bytes) => wire.literal(bytes),
            }
        }
        wire.current.extend_from_slice(b"\r\n");
        wire.pieces.push(wire.current);
        wire.pieces
    }

    /// A one-line description for logs: the command name, code-chosen keywords, numbers and
    /// dates, and only the shape of caller values, e.g.
    /// `UID SEARCH CHARSET UTF-8 SUBJECT <string 12 bytes>`. Never contains a caller's
    /// string, so passwords cannot leak through it.
    pub fn redacted(&self) -> String {
        let mut out = self.name.to_owned();
        for part in &self.parts {
            if part.needs_separator() {
                out.push(' ');
            }
            match part {
                Part::Plain(text) => out.push_str(text),
                Part::Masked { shape, .. } | Part::Text { shape, .. } => out.push_str(shape),
                Part::Literal(bytes) => out.push_str(&format!("<literal {} bytes>", bytes.len())),
            }
        }
        out
    }

    fn push(mut self, part: Part) -> Self {
        self.parts.push(part);
        self
    }

    /// Whether this command's criteria are preceded by a bare charset (RFC 5256).
    fn takes_bare_charset(&self) -> bool {
        ["SORT", "UID SORT", "THREAD", "UID THREAD"]
            .iter()
            .any(|name| name.eq_ignore_ascii_case(self.name))
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Command").field(&self.redacted()).finish()
    }
}

/// Accumulates the pieces of [`Command::to_wire`].
struct Wire {
    pieces: Vec<Vec<u8>>,
    current: Vec<u8>,
    mode: Literals,
}

/// What a server accepts as literals (RFC 3501, RFC 7888).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Literals {
    /// Synchronising literals only: `{n}`, then wait for `+`.
    Synchronizing,
    /// LITERAL+: `{n+}` of any size, no wait.
    Plus,
    /// LITERAL-: `{n+}` up to [`LITERAL_MINUS_MAX`] bytes, synchronising beyond.
    Minus,
}

/// The largest non-synchronising literal a LITERAL- server accepts (RFC 7888 §4).
pub const LITERAL_MINUS_MAX: usize = 4096;

impl Literals {
    /// Whether a literal of `len` bytes may be sent without waiting for `+`.
    fn non_synchronizing(self, len: usize) -> bool {
        match self {
            Literals::Synchronizing => false,
            Literals::Plus => true,
            Literals::Minus => len <= LITERAL_MINUS_MAX,
        }
    }
}

/// Whether `value` can travel as a quoted string (else it goes as a literal).
fn is_quotable(value: &str) -> bool {
    // RFC 3501 would also allow other 7-bit bytes except CR and LF in a quoted string,
    // but servers differ on control characters there; a literal is unambiguous.
    value.bytes().all(|b| matches!(b, 0x20..=0x7e))
}

impl Wire {
    /// Writes `value` as a quoted string if every byte may appear in one, else as a literal.
    fn string(&mut self, value: &str) {
        if is_quotable(value) {
            self.current.push(b'"');
            for byte in value.bytes() {
                if matches!(byte, b'"' | b'\\') {
                    self.current.push(b'\\');
                }
                self.current.push(byte);
            }
            self.current.push(b'"');
        } else {
            self.literal(value.as_bytes());
        }
    }

    /// Writes a literal header counting exactly `bytes`, then `bytes`, starting a new piece
    /// after a synchronising header.
    fn literal(&mut self, bytes: &[u8]) {
        let non_synchronizing = self.mode.non_synchronizing(bytes.len());
        let header = if non_synchronizing {
            format!("{{{}+}}\r\n", bytes.len())
        } else {
            format!("{{{}}}\r\n", bytes.len())
        };
        self.current.extend_from_slice(header.as_bytes());
        if !non_synchronizing {
            self.pieces.push(std::mem::take(&mut self.current));
        }
        self.current.extend_from_slice(bytes);
    }
}

/// How a flag appears in [`Command::redacted`]: system flags as themselves, keywords (which
/// callers choose) by length only.
fn flag_shape(flag: &Flag) -> String {
    match flag {
        Flag::Keyword(keyword) => keyword_shape(keyword),
        system => system.as_str().to_owned(),
    }
}

/// How a keyword appears in [`Command::redacted`]: by length only.
fn keyword_shape(keyword: &str) -> String {
    format!("<keyword {} bytes>", keyword.len())
}

/// Formats an RFC 3501 `date`: day without leading zero, English month abbreviation,
/// four-digit year, clamped to the years four digits can express.
fn format_date(d: NaiveDate) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (day, month0, year) = match d.year() {
        ..0 => (1, 0, 0),
        10_000.. => (31, 11, 9999),
        year => (d.day(), d.month0(), year),
    };
    format!("{day}-{}-{year:04}", MONTHS[month0 as usize])
}

/// Formats the `<offset.length>` suffix of a partial FETCH, or nothing.
fn format_partial(partial: Option<(u32, u32)>) -> String {
    match partial {
        Some((offset, length)) => format!("<{offset}.{length}>"),
        None => String::new(),
    }
}

/// Whether code-chosen text is fit to be a command name or keyword: non-empty and free of
/// control characters, so it cannot end the line.
fn is_static_text(text: &str) -> bool {
    !text.is_empty() && !text.bytes().any(|b| b.is_ascii_control())
}

/// Whether `tag` is an RFC 3501 tag: one or more ASTRING-CHARs other than `+`.
fn is_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// One token read back from the wire by [`parse_command`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Token {
        Atom(String),
        Quoted(Vec<u8>),
        Literal(Vec<u8>),
        List(Vec<Token>),
    }

    impl Token {
        fn atom(text: &str) -> Self {
            Self::Atom(text.to_owned())
        }

        /// The octets a server sees as this string token's value.
        fn string_value(&self) -> &[u8] {
            match self {
                Self::Quoted(value) | Self::Literal(value) => value,
                other => panic!("expected a string, got {other:?}"),
            }
        }
    }

    /// A reader of one IMAP command, just strict enough to check what this module emits.
    struct Reader<'a> {
        wire: &'a [u8],
        position: usize,
        literal_plus: bool,
        /// Offsets just after each synchronising literal header, where the sender must
        /// wait for a continuation request.
        sync_points: Vec<usize>,
    }

    impl Reader<'_> {
        fn peek(&self) -> Option<u8> {
            self.wire.get(self.position).copied()
        }

        fn next_byte(&mut self) -> u8 {
            let byte = self.peek().expect("command ends in the middle of a token");
            self.position += 1;
            byte
        }

        fn expect(&mut self, expected: &[u8]) {
            assert!(
                self.wire[self.position..].starts_with(expected),
                "expected {:?} at byte {}",
                String::from_utf8_lossy(expected),
                self.position
            );
            self.position += expected.len();
        }

        fn token(&mut self) -> Token {
            match self.peek() {
                Some(b'"') => self.quoted(),
                Some(b'{') => self.literal(),
                Some(b'(') => self.list(),
                _ => Token::Atom(self.bare_atom()),
            }
        }

        /// An atom-like token: atoms, flags, numbers, sequence sets, wildcards.
        fn bare_atom(&mut self) -> String {
            let start = self.position;
            while let Some(byte) = self.peek()
                && byte.is_ascii_graphic()
                && !matches!(byte, b'(' | b')' | b'{' | b'"')
            {
                self.position += 1;
            }
            assert!(self.position > start, "expected a token at byte {start}");
            String::from_utf8(self.wire[start..self.position].to_vec()).unwrap()
        }

        fn quoted(&mut self) -> Token {
            self.expect(b"\"");
            let mut value = Vec::new();
            loop {
                match self.next_byte() {
                    b'"' => return Token::Quoted(value),
                    b'\\' => {
                        let escaped = self.next_byte();
                        assert!(matches!(escaped, b'"' | b'\\'), "bad escape {escaped:#04x}");
                        value.push(escaped);
                    }
                    byte @ 0x20..=0x7e => value.push(byte),
                    byte => panic!("raw byte {byte:#04x} inside a quoted string"),
                }
            }
        }

        fn literal(&mut self) -> Token {
            self.expect(b"{");
            let start = self.position;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.position += 1;
            }
            let digits = std::str::from_utf8(&self.wire[start..self.position]).unwrap();
            let length: usize = digits.parse().expect("literal length");
            let non_synchronising = self.peek() == Some(b'+');
            assert_eq!(
                non_synchronising, self.literal_plus,
                "literal kind must follow LITERAL+"
            );
            if non_synchronising {
                self.position += 1;
            }
            self.expect(b"}\r\n");
            if !non_synchronising {
                self.sync_points.push(self.position);
            }
            assert!(
                self.position + length <= self.wire.len(),
                "literal longer than the rest of the command"
            );
            let data = self.wire[self.position..self.position + length].to_vec();
            self.position += length;
            assert!(
                matches!(self.peek(), Some(b' ' | b'\r' | b')')),
                "literal count does not end at a token boundary"
            );
            Token::Literal(data)
        }

        fn list(&mut self) -> Token {
            self.expect(b"(");
            let mut items = Vec::new();
            if self.peek() == Some(b')') {
                self.position += 1;
                return Token::List(items);
            }
            loop {
                items.push(self.token());
                match self.next_byte() {
                    b' ' => {}
                    b')' => return Token::List(items),
                    byte => panic!("unexpected {byte:#04x} in a list"),
                }
            }
        }
    }

    /// Reads `pieces` back as exactly one command and returns its tag and tokens (the
    /// command name's words included). Panics unless the only CRLFs outside literal data
    /// are literal headers and the final one, the pieces split exactly after synchronising
    /// literal headers, and every literal's count matches its data.
    fn parse_command(pieces: &[Vec<u8>], literal_plus: bool) -> (String, Vec<Token>) {
        assert!(!pieces.is_empty());
        let boundaries: Vec<usize> = pieces[..pieces.len() - 1]
            .iter()
            .scan(0, |offset, piece| {
                *offset += piece.len();
                Some(*offset)
            })
            .collect();
        let wire = pieces.concat();
        let mut reader = Reader {
            wire: &wire,
            position: 0,
            literal_plus,
            sync_points: Vec::new(),
        };
        let tag = reader.bare_atom();
        reader.expect(b" ");
        let mut tokens = vec![reader.token()];
        while reader.peek() == Some(b' ') {
            reader.position += 1;
            tokens.push(reader.token());
        }
        reader.expect(b"\r\n");
        assert_eq!(reader.position, wire.len(), "bytes after the final CRLF");
        assert_eq!(
            reader.sync_points, boundaries,
            "pieces must end exactly at synchronising literal headers"
        );
        (tag, tokens)
    }

    /// Encodes `command` with and without LITERAL+, checks both framings, and returns the
    /// tokens, which must not depend on the literal kind.
    fn wire_tokens(command: &Command) -> Vec<Token> {
        let (tag, tokens) = parse_command(&command.to_wire("A1", false), false);
        assert_eq!(tag, "A1");
        let plus = command.to_wire("A1", true);
        assert_eq!(plus.len(), 1, "with LITERAL+ a command is one piece");
        let (tag_plus, tokens_plus) = parse_command(&plus, true);
        assert_eq!(tag_plus, "A1");
        assert_eq!(tokens, tokens_plus);
        tokens
    }

    #[test]
    fn literal_minus_sends_small_literals_without_waiting_and_large_ones_synchronised() {
        let small = "ü".repeat(LITERAL_MINUS_MAX / 2);
        let large = "ü".repeat(LITERAL_MINUS_MAX / 2 + 1);
        let command = Command::new("UID SEARCH").search(&[
            SearchKey::Subject(text(&small)),
            SearchKey::From(text(&large)),
        ]);
        let pieces: Vec<String> = command
            .to_wire_for("A1", Literals::Minus)
            .into_iter()
            .map(|p| String::from_utf8(p).unwrap())
            .collect();
        assert_eq!(pieces.len(), 2, "only the large literal waits: {pieces:?}");
        assert!(
            pieces[0].contains(&format!("SUBJECT {{{}+}}\r\n{small}", small.len())),
            "{pieces:?}"
        );
        assert!(
            pieces[0].ends_with(&format!("FROM {{{}}}\r\n", large.len())),
            "{pieces:?}"
        );
        assert_eq!(pieces[1], format!("{large}\r\n"));
    }

    fn wire_text(command: &Command, literal_plus: bool) -> Vec<String> {
        command
            .to_wire("A1", literal_plus)
            .into_iter()
            .map(|piece| String::from_utf8(piece).unwrap())
            .collect()
    }

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).unwrap()
    }

    fn text(s: &str) -> ImapString {
        ImapString::new(s).unwrap()
    }

    fn hostile_corpus() -> Vec<String> {
        let mut corpus: Vec<String> = [
            "\r",
            "\n",
            "\r\n",
            "a\rb",
            "a\nb",
            "x\r\nA2 LOGOUT",
            "\0",
            "a\0b",
            "\"",
            "\\",
            "\\\"",
            "\"\\",
            "{5}",
            "{5+}",
            "{5}\r\n",
            "{0}",
            "*",
            "%",
            "a*",
            "INBOX.%",
            "&",
            "&-",
            "&AGE-",
            "&AGE",
            "&&",
            "-&-",
            "A1 DELETE INBOX",
            "\") (",
            ") (",
            "]",
            "(",
            "+",
            "NIL",
            "é",
            "日本語",
            "~peter/mail/台北/日本語",
            "😀",
            "a😀",
            "😀b&",
            "שלום",
            "مرحبا",
            "\u{202e}evil",
            "",
            " ",
            "a b",
            " leading and trailing ",
            "\t",
            "\u{7f}",
            "\u{85}",
            "\u{9f}",
            "\u{a0}",
            "\u{2028}",
            "\u{feff}",
            "\u{fffd}",
            "e\u{301}",
            "\u{301}",
            "INBOX",
            "inbox",
            "InBoX",
            "INBOX/Sub",
            "\\Seen",
            "\\seen",
            "\\Recent",
            "\\*",
            "\\",
            "$Label1",
            "$Junk",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        corpus.push("x".repeat(10 * 1024));
        corpus.push("a".repeat(999));
        corpus.push("a".repeat(1000));
        corpus.push("a".repeat(1001));
        corpus.push("é".repeat(500));
        corpus.push(format!("a{}", "é".repeat(500)));
        corpus.push("😀".repeat(250));
        corpus.push(format!("{}a", "😀".repeat(250)));
        corpus.push("k".repeat(100));
        corpus.push("k".repeat(101));
        corpus.push("s".repeat(8192));
        corpus.push("s".repeat(8193));
        corpus
    }

    /// The mailbox-name rules, restated independently of the code under test.
    fn mailbox_name_allowed(input: &str) -> bool {
        !input.is_empty()
            && input.chars().count() <= 1000
            && !input
                .chars()
                .any(|c| matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '*' | '%'))
    }

    /// Either `MailboxName::new` refuses `input` as the rules say, or the name reaches the
    /// wire as one token that decodes back to it.
    fn check_mailbox(input: &str) {
        let result = MailboxName::new(input);
        assert_eq!(
            result.is_ok(),
            mailbox_name_allowed(input),
            "{input:?}: {result:?}"
        );
        let Ok(name) = result else { return };
        let expected = if input.eq_ignore_ascii_case("INBOX") {
            "INBOX"
        } else {
            input
        };
        assert_eq!(name.as_str(), expected);
        let encoded = name.to_imap();
        assert!(encoded.bytes().all(|b| matches!(b, 0x20..=0x7e)));
        assert_eq!(MailboxName::from_imap(&encoded).as_ref(), Ok(&name));

        let tokens = wire_tokens(&Command::new("SELECT").mailbox(&name));
        assert_eq!(tokens.len(), 2, "{input:?}: {tokens:?}");
        assert_eq!(tokens[0], Token::atom("SELECT"));
        let decoded = match &tokens[1] {
            Token::Atom(atom) => {
                assert_eq!(atom, "INBOX");
                atom.clone()
            }
            Token::Quoted(bytes) => MailboxName::from_imap(std::str::from_utf8(bytes).unwrap())
                .unwrap()
                .as_str()
                .to_owned(),
            other => panic!("mailbox sent as {other:?}"),
        };
        assert_eq!(decoded, expected);
    }

    fn string_allowed(input: &str) -> bool {
        input.len() <= 8192 && !input.contains(['\0', '\r', '\n'])
    }

    /// Either `ImapString::new` refuses `input` as the rules say, or it reaches the wire,
    /// in LOGIN and in a nested SEARCH, as tokens whose octets are exactly the input.
    fn check_string(input: &str) {
        let result = ImapString::new(input);
        assert_eq!(
            result.is_ok(),
            string_allowed(input),
            "{input:?}: {result:?}"
        );
        let Ok(s) = result else { return };
        let quotable = input.bytes().all(|b| matches!(b, 0x20..=0x7e));

        let tokens = wire_tokens(&Command::new("LOGIN").string(&s).string(&s));
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens[0], Token::atom("LOGIN"));
        for token in &tokens[1..] {
            assert_eq!(token.string_value(), input.as_bytes());
            assert_eq!(matches!(token, Token::Quoted(_)), quotable);
        }

        let keys = [
            SearchKey::Subject(s.clone()),
            SearchKey::Not(Box::new(SearchKey::Or(
                Box::new(SearchKey::From(s.clone())),
                Box::new(SearchKey::Seen),
            ))),
        ];
        let tokens = wire_tokens(&Command::new("UID SEARCH").search(&keys));
        let mut expected_prefix = vec![Token::atom("UID"), Token::atom("SEARCH")];
        if !input.is_ascii() {
            expected_prefix.extend([Token::atom("CHARSET"), Token::atom("UTF-8")]);
        }
        let (prefix, rest) = tokens.split_at(expected_prefix.len());
        assert_eq!(prefix, expected_prefix.as_slice());
        assert_eq!(rest.len(), 7, "{rest:?}");
        assert_eq!(rest[0], Token::atom("SUBJECT"));
        assert_eq!(rest[1].string_value(), input.as_bytes());
        assert_eq!(&rest[2..4], &[Token::atom("NOT"), Token::atom("OR")]);
        assert_eq!(rest[4], Token::atom("FROM"));
        assert_eq!(rest[5].string_value(), input.as_bytes());
        assert_eq!(rest[6], Token::atom("SEEN"));
    }

    fn flag_allowed(input: &str) -> bool {
        match input.strip_prefix('\\') {
            Some(name) => ["Seen", "Answered", "Flagged", "Deleted", "Draft"]
                .iter()
                .any(|system| system.eq_ignore_ascii_case(name)),
            None => {
                (1..=100).contains(&input.len())
                    && input
                        .chars()
                        .all(|c| c.is_ascii_graphic() && !"(){%*\"\\]".contains(c))
            }
        }
    }

    /// Either `Flag::parse` refuses `input` as the rules say, or the flag reaches the wire
    /// in STORE and SEARCH as an atom that parses back to it.
    fn check_flag(input: &str) {
        let result = Flag::parse(input);
        assert_eq!(result.is_ok(), flag_allowed(input), "{input:?}: {result:?}");
        assert_eq!(Flag::from_server(input), result.clone().ok());
        let Ok(flag) = result else { return };
        if !input.starts_with('\\') {
            assert_eq!(flag, Flag::Keyword(input.to_owned()));
        }

        let command = Command::new("UID STORE")
            .uid_set(&UidSet::single(7).unwrap())
            .atom("+FLAGS.SILENT")
            .flags(&[flag.clone(), Flag::Seen]);
        let tokens = wire_tokens(&command);
        let expected_prefix = [
            Token::atom("UID"),
            Token::atom("STORE"),
            Token::atom("7"),
            Token::atom("+FLAGS.SILENT"),
        ];
        assert_eq!(&tokens[..4], &expected_prefix);
        assert_eq!(tokens.len(), 5);
        let Token::List(items) = &tokens[4] else {
            panic!("flags sent as {:?}", tokens[4]);
        };
        assert_eq!(items.len(), 2);
        let Token::Atom(sent) = &items[0] else {
            panic!("flag sent as {:?}", items[0]);
        };
        assert_eq!(Flag::parse(sent).as_ref(), Ok(&flag));
        assert_eq!(items[1], Token::atom("\\Seen"));

        let tokens =
            wire_tokens(&Command::new("SEARCH").search(&[SearchKey::Keyword(flag.clone())]));
        match &flag {
            Flag::Keyword(keyword) => assert_eq!(
                tokens,
                [
                    Token::atom("SEARCH"),
                    Token::atom("KEYWORD"),
                    Token::atom(keyword)
                ]
            ),
            system => assert_eq!(
                tokens,
                [
                    Token::atom("SEARCH"),
                    Token::Atom(system.as_str()[1..].to_ascii_uppercase())
                ]
            ),
        }
    }

    /// Raw octets reach the wire as one literal with exactly those octets.
    fn check_literal(bytes: &[u8]) {
        let inbox = MailboxName::new("INBOX").unwrap();
        let command = Command::new("APPEND")
            .mailbox(&inbox)
            .flags(&[Flag::Seen])
            .literal(bytes);
        let tokens = wire_tokens(&command);
        assert_eq!(
            tokens,
            [
                Token::atom("APPEND"),
                Token::atom("INBOX"),
                Token::List(vec![Token::atom("\\Seen")]),
                Token::Literal(bytes.to_vec()),
            ]
        );
    }

    #[test]
    fn hostile_corpus_as_mailbox_names() {
        for input in hostile_corpus() {
            check_mailbox(&input);
        }
    }

    #[test]
    fn hostile_corpus_as_strings() {
        for input in hostile_corpus() {
            check_string(&input);
        }
    }

    #[test]
    fn hostile_corpus_as_flags() {
        for input in hostile_corpus() {
            check_flag(&input);
        }
    }

    #[test]
    fn hostile_corpus_as_literals() {
        for input in hostile_corpus() {
            check_literal(input.as_bytes());
        }
        check_literal(&[0, 255, b'\r', b'\n', b'}', 0xc3]);
        check_literal(b"");
    }

    /// splitmix64: a small deterministic generator, so failures are reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }

        fn char_in(&mut self, low: u32, high: u32) -> char {
            let span = (high - low + 1) as usize;
            loop {
                if let Some(c) = char::from_u32(low + self.below(span) as u32) {
                    return c;
                }
            }
        }

        /// A character from a mix that favours the troublesome ones.
        fn char(&mut self) -> char {
            const SPECIAL: &[char] = &[
                '&', '-', '*', '%', '"', '\\', '{', '}', '+', '\r', '\n', '\0', ' ', '(', ')', ']',
                '~', ',', '/', '\t', '\u{7f}', '\u{85}', '\u{2028}', '\u{301}', '\u{feff}',
            ];
            match self.below(7) {
                0 | 1 => self.char_in(0x20, 0x7e),
                2 => self.char_in(0, 0x7f),
                3 => *self.pick(SPECIAL),
                4 => self.char_in(0x80, 0x7ff),
                5 => self.char_in(0x800, 0xffff),
                _ => self.char_in(0x1_0000, 0x10_ffff),
            }
        }

        /// A string of characters and hostile fragments.
        fn string(&mut self, max_len: usize) -> String {
            const FRAGMENTS: &[&str] = &[
                "{5}\r\n",
                "{5+}",
                "A1 DELETE INBOX",
                "\") (",
                "&-",
                "&AGE-",
                "INBOX",
                "\r\n",
                "😀",
                "日本語",
            ];
            let len = self.below(max_len + 1);
            let mut out = String::new();
            while out.chars().count() < len {
                if self.below(8) == 0 {
                    let fragment = *self.pick(FRAGMENTS);
                    out.push_str(fragment);
                } else {
                    out.push(self.char());
                }
            }
            out
        }

        /// Like `string`, but without the characters mailbox names refuse, so that most
        /// results are valid names.
        fn mailbox_like(&mut self, max_len: usize) -> String {
            self.string(max_len)
                .chars()
                .filter(|c| !c.is_control() && !matches!(c, '*' | '%'))
                .collect()
        }
    }

    #[test]
    fn random_mailbox_names_round_trip() {
        let mut rng = Rng(1);
        for round in 0..3000 {
            let input = if round % 3 == 0 {
                rng.string(24)
            } else {
                rng.mailbox_like(40)
            };
            check_mailbox(&input);
        }
    }

    #[test]
    fn random_strings_round_trip() {
        let mut rng = Rng(2);
        for round in 0..3000 {
            let input = if round % 2 == 0 {
                rng.string(30)
            } else {
                rng.string(30).replace(['\0', '\r', '\n'], "")
            };
            check_string(&input);
        }
    }

    #[test]
    fn random_flags_round_trip() {
        let mut rng = Rng(3);
        for round in 0..3000 {
            let input: String = match round % 3 {
                0 => rng.string(12),
                1 => (0..=rng.below(12))
                    .map(|_| rng.char_in(0x20, 0x7e))
                    .collect(),
                _ => format!(
                    "\\{}",
                    rng.pick(&["seen", "DRAFT", "Recent", "Answered", "x"])
                ),
            };
            check_flag(&input);
        }
    }

    #[test]
    fn random_literals_round_trip() {
        let mut rng = Rng(4);
        for _ in 0..500 {
            let len = rng.below(64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            check_literal(&bytes);
        }
    }

    /// The decoder accepts only canonical encodings: whatever it accepts re-encodes to the
    /// exact input (INBOX apart, whose letter case is canonicalised).
    #[test]
    fn random_encoded_names_decode_strictly_or_not_at_all() {
        const ALPHABET: &[u8] = b"&&&---AAB+,/aez09!~ \x7f*";
        let mut rng = Rng(5);
        let mut accepted = 0;
        for round in 0..20_000 {
            let candidate: Vec<u8> = if round % 2 == 0 {
                (0..rng.below(14)).map(|_| *rng.pick(ALPHABET)).collect()
            } else {
                let mut bytes = MailboxName::new(&rng.mailbox_like(10))
                    .map(|name| name.to_imap())
                    .unwrap_or_default()
                    .into_bytes();
                let at = rng.below(bytes.len() + 1);
                match rng.below(3) {
                    0 => bytes.insert(at, *rng.pick(ALPHABET)),
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ if at < bytes.len() => bytes[at] = *rng.pick(ALPHABET),
                    _ => {}
                }
                bytes
            };
            let Ok(candidate) = String::from_utf8(candidate) else {
                continue;
            };
            if let Ok(name) = MailboxName::from_imap(&candidate) {
                accepted += 1;
                if !candidate.eq_ignore_ascii_case("INBOX") {
                    assert_eq!(name.to_imap(), candidate);
                }
            }
        }
        assert!(accepted > 1000, "only {accepted} candidates decoded");
    }

    #[test]
    fn modified_utf7_matches_rfc3501_example() {
        let name = MailboxName::new("~peter/mail/台北/日本語").unwrap();
        assert_eq!(name.to_imap(), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(
            MailboxName::from_imap("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(),
            name
        );
    }

    #[test]
    fn modified_utf7_vectors() {
        // Expected forms computed independently from UTF-16BE and standard base64.
        let vectors = [
            ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
            ("é", "&AOk-"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("😀", "&2D3eAA-"),
            ("a😀b", "a&2D3eAA-b"),
            ("שלום", "&BekF3AXVBd0-"),
            ("&", "&-"),
            ("&-", "&--"),
            ("é&", "&AOk-&-"),
            ("e\u{301}", "e&AwE-"),
            ("\u{2028}", "&ICg-"),
            ("Ω", "&A6k-"),
            ("~", "~"),
            ("a,b+c/d", "a,b+c/d"),
        ];
        for (decoded, encoded) in vectors {
            let name = MailboxName::new(decoded).unwrap();
            assert_eq!(name.to_imap(), encoded, "{decoded:?}");
            assert_eq!(
                MailboxName::from_imap(encoded).unwrap(),
                name,
                "{encoded:?}"
            );
        }
    }

    #[test]
    fn modified_utf7_rejects_malformed_input() {
        let malformed = [
            "&AGE",                // no closing '-'
            "&Jjo!",               // '!' is not modified base64, and no '-'
            "&Jjo!-",              // '!' is not modified base64
            "&",                   // lone '&'
            "a&",                  // lone '&' at the end
            "&AGE-",               // printable ASCII ('a') in base64
            "&ACY-",               // '&' in base64 instead of "&-"
            "&AOk-&AOI-",          // null shift between two sections
            "&AOl-",               // non-zero padding bits
            "&AO-",                // too short for one UTF-16 unit
            "&AOkA-",              // a sextet left over
            "&2D0-",               // unpaired high surrogate
            "&3gA-",               // unpaired low surrogate
            "&AOk/-",              // '/' belongs to standard base64, not modified base64
            "&AOk=-",              // base64 padding is not used
            "é",                   // raw 8-bit
            "a\tb",                // control character sent raw
            "&2D3eAA",             // unterminated astral character
            "&U,BTFw-&-&ZeVnLIqe", // second section unterminated
        ];
        for input in malformed {
            assert_eq!(
                MailboxName::from_imap(input),
                Err(InvalidArgument::MalformedModifiedUtf7),
                "{input:?}"
            );
        }
    }

    #[test]
    fn from_imap_applies_the_mailbox_rules() {
        assert_eq!(
            MailboxName::from_imap("&AAA-"),
            Err(InvalidArgument::Nul {
                what: "mailbox name"
            })
        );
        assert_eq!(
            MailboxName::from_imap("a&AAo-b"),
            Err(InvalidArgument::LineBreak {
                what: "mailbox name"
            })
        );
        assert_eq!(
            MailboxName::from_imap("&AIU-"),
            Err(InvalidArgument::ControlCharacter {
                what: "mailbox name"
            })
        );
        assert_eq!(
            MailboxName::from_imap("Lists/*"),
            Err(InvalidArgument::Wildcard {
                what: "mailbox name"
            })
        );
        assert_eq!(
            MailboxName::from_imap(""),
            Err(InvalidArgument::Empty {
                what: "mailbox name"
            })
        );
        assert_eq!(MailboxName::from_imap("inbox").unwrap().as_str(), "INBOX");
        assert_eq!(MailboxName::from_imap("&-").unwrap().as_str(), "&");
    }

    #[test]
    fn mailbox_name_errors() {
        let what = "mailbox name";
        let cases: [(&str, InvalidArgument); 8] = [
            ("", InvalidArgument::Empty { what }),
            ("a\0", InvalidArgument::Nul { what }),
            ("a\r\nb", InvalidArgument::LineBreak { what }),
            ("\t", InvalidArgument::ControlCharacter { what }),
            ("\u{7f}", InvalidArgument::ControlCharacter { what }),
            ("\u{85}", InvalidArgument::ControlCharacter { what }),
            ("Lists/%", InvalidArgument::Wildcard { what }),
            ("*", InvalidArgument::Wildcard { what }),
        ];
        for (input, error) in cases {
            assert_eq!(MailboxName::new(input), Err(error), "{input:?}");
        }
    }

    #[test]
    fn mailbox_name_length_boundary_is_1000_characters() {
        let too_long = InvalidArgument::TooLong {
            what: "mailbox name",
            max: 1000,
        };
        assert!(MailboxName::new(&"a".repeat(1000)).is_ok());
        assert_eq!(MailboxName::new(&"a".repeat(1001)), Err(too_long.clone()));
        assert!(MailboxName::new(&"é".repeat(1000)).is_ok());
        assert_eq!(
            MailboxName::new(&format!("a{}", "é".repeat(1000))),
            Err(too_long.clone())
        );
        assert!(MailboxName::new(&"😀".repeat(1000)).is_ok());
        assert_eq!(
            MailboxName::new(&format!("{}a", "😀".repeat(1000))),
            Err(too_long)
        );
    }

    #[test]
    fn inbox_is_canonicalised_and_sent_as_an_atom() {
        for spelling in ["INBOX", "inbox", "Inbox", "iNbOx"] {
            let name = MailboxName::new(spelling).unwrap();
            assert!(name.is_inbox());
            assert_eq!(name.as_str(), "INBOX");
            assert_eq!(name.to_string(), "INBOX");
            assert_eq!(
                wire_text(&Command::new("SELECT").mailbox(&name), false),
                ["A1 SELECT INBOX\r\n"]
            );
        }
        for other in ["inbox/Sub", "INBOX ", "INBOXX", "İNBOX"] {
            let name = MailboxName::new(other).unwrap();
            assert!(!name.is_inbox());
            assert_eq!(name.as_str(), other);
        }
    }

    #[test]
    fn mailbox_quoting_escapes_quotes_and_backslashes() {
        let name = MailboxName::new("a\"b\\c & {5}").unwrap();
        assert_eq!(
            wire_text(&Command::new("SELECT").mailbox(&name), false),
            ["A1 SELECT \"a\\\"b\\\\c &- {5}\"\r\n"]
        );
    }

    #[test]
    fn string_errors_and_quoting() {
        assert_eq!(
            ImapString::new("a\0b"),
            Err(InvalidArgument::Nul { what: "text" })
        );
        assert_eq!(
            ImapString::new("a\rb"),
            Err(InvalidArgument::LineBreak { what: "text" })
        );
        assert_eq!(
            ImapString::new("a\nb"),
            Err(InvalidArgument::LineBreak { what: "text" })
        );
        assert_eq!(
            ImapString::new(&"s".repeat(8193)),
            Err(InvalidArgument::TooLong {
                what: "text",
                max: 8192
            })
        );
        assert!(ImapString::new(&"s".repeat(8192)).is_ok());
        assert!(text("").is_ascii());
        assert!(text("a\tb").is_ascii());
        assert!(!text("é").is_ascii());
        assert_eq!(text("pass word").as_str(), "pass word");

        let command = Command::new("LOGIN")
            .string(&text("user\"name"))
            .string(&text(""));
        assert_eq!(
            wire_text(&command, false),
            ["A1 LOGIN \"user\\\"name\" \"\"\r\n"]
        );
        // A tab is legal in a quoted string by RFC 3501, but is sent as a literal.
        let command = Command::new("LOGIN")
            .string(&text("a\tb"))
            .string(&text("p"));
        assert_eq!(
            wire_text(&command, false),
            ["A1 LOGIN {3}\r\n", "a\tb \"p\"\r\n"]
        );
    }

    #[test]
    fn uid_sets_are_normalised() {
        let set = UidSet::from_uids([12, 5, 1, 3, 2, 9, 10, 11, 3, 5]).unwrap();
        assert_eq!(set.to_string(), "1:3,5,9:12");
        assert_eq!(set.iter().collect::<Vec<_>>(), [1, 2, 3, 5, 9, 10, 11, 12]);
        assert_eq!(set.len(), 8);
        assert!(!set.is_empty());
        assert!(set.contains(1) && set.contains(3) && set.contains(5) && set.contains(12));
        assert!(!set.contains(0) && !set.contains(4) && !set.contains(8) && !set.contains(13));

        assert_eq!(UidSet::from_uids([4, 3, 2]), UidSet::range(2, 4));
        assert_eq!(UidSet::single(7).unwrap().to_string(), "7");
        assert_eq!(UidSet::range(7, 7), UidSet::single(7));

        let top = UidSet::from_uids([u32::MAX, u32::MAX - 1, 1]).unwrap();
        assert_eq!(top.to_string(), format!("1,{}:{}", u32::MAX - 1, u32::MAX));
        let everything = UidSet::range(1, u32::MAX).unwrap();
        assert_eq!(everything.len(), u64::from(u32::MAX));
        assert!(everything.contains(u32::MAX));
        assert_eq!(everything.to_string(), "1:4294967295");
    }

    #[test]
    fn uid_set_errors() {
        assert_eq!(
            UidSet::from_uids([]),
            Err(InvalidArgument::Empty { what: "UID set" })
        );
        assert_eq!(UidSet::from_uids([3, 0]), Err(InvalidArgument::ZeroUid));
        assert_eq!(UidSet::single(0), Err(InvalidArgument::ZeroUid));
        assert_eq!(UidSet::range(0, 5), Err(InvalidArgument::ZeroUid));
        assert_eq!(UidSet::range(5, 4), Err(InvalidArgument::ReversedRange));
    }

    #[test]
    fn random_uid_sets_match_a_btreeset() {
        let mut rng = Rng(6);
        for _ in 0..2000 {
            let count = rng.below(20);
            let uids: Vec<u32> = (0..count)
                .map(|_| match rng.below(10) {
                    0 => u32::MAX - rng.below(3) as u32,
                    _ => 1 + rng.below(40) as u32,
                })
                .collect();
            let expected: BTreeSet<u32> = uids.iter().copied().collect();
            let Ok(set) = UidSet::from_uids(uids) else {
                assert!(expected.is_empty());
                continue;
            };
            assert_eq!(
                set.iter().collect::<Vec<_>>(),
                expected.iter().copied().collect::<Vec<_>>()
            );
            assert_eq!(set.len(), expected.len() as u64);
            for probe in (0..45).chain([u32::MAX - 3, u32::MAX - 2, u32::MAX - 1, u32::MAX]) {
                assert_eq!(set.contains(probe), expected.contains(&probe), "{probe}");
            }
            // The text form lists each UID once, in order, with adjacent UIDs merged.
            let mut previous_last: Option<u32> = None;
            let mut listed = Vec::new();
            for range in set.to_string().split(',') {
                let (first, last) = match range.split_once(':') {
                    Some((first, last)) => (first.parse::<u32>().unwrap(), last.parse().unwrap()),
                    None => (range.parse().unwrap(), range.parse().unwrap()),
                };
                assert!(first <= last);
                if let Some(previous) = previous_last {
                    assert!(u64::from(first) > u64::from(previous) + 1, "{set}");
                }
                previous_last = Some(last);
                listed.extend(first..=last);
            }
            assert_eq!(listed, set.iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn flags_parse() {
        assert_eq!(Flag::parse("\\Seen"), Ok(Flag::Seen));
        assert_eq!(Flag::parse("\\SEEN"), Ok(Flag::Seen));
        assert_eq!(Flag::parse("\\answered"), Ok(Flag::Answered));
        assert_eq!(Flag::parse("\\Flagged"), Ok(Flag::Flagged));
        assert_eq!(Flag::parse("\\deleted"), Ok(Flag::Deleted));
        assert_eq!(Flag::parse("\\DrAfT"), Ok(Flag::Draft));
        assert_eq!(
            Flag::parse("$Label1"),
            Ok(Flag::Keyword("$Label1".to_owned()))
        );
        assert_eq!(Flag::parse("Seen"), Ok(Flag::Keyword("Seen".to_owned())));
        assert_eq!(Flag::parse("[x"), Ok(Flag::Keyword("[x".to_owned())));
        assert_eq!(
            Flag::parse("\\Recent"),
            Err(InvalidArgument::UnknownSystemFlag)
        );
        assert_eq!(Flag::parse("\\*"), Err(InvalidArgument::UnknownSystemFlag));
        assert_eq!(
            Flag::parse("\\Junk"),
            Err(InvalidArgument::UnknownSystemFlag)
        );
        assert_eq!(Flag::parse("\\"), Err(InvalidArgument::UnknownSystemFlag));
        assert_eq!(
            Flag::parse(""),
            Err(InvalidArgument::Empty { what: "flag" })
        );
        assert_eq!(
            Flag::parse(&"k".repeat(101)),
            Err(InvalidArgument::TooLong {
                what: "keyword flag",
                max: 100
            })
        );
        assert!(Flag::parse(&"k".repeat(100)).is_ok());
        for bad in [
            "a b", "a]", "(", "a)", "{1}", "%", "a*", "\"", "é", "a\u{7f}", "a\r\n",
        ] {
            assert_eq!(Flag::parse(bad), Err(InvalidArgument::NotAnAtom), "{bad:?}");
        }
        for flag in [
            Flag::Seen,
            Flag::Answered,
            Flag::Flagged,
            Flag::Deleted,
            Flag::Draft,
        ] {
            assert_eq!(Flag::parse(flag.as_str()), Ok(flag.clone()));
        }
        assert_eq!(Flag::Keyword("$Junk".to_owned()).as_str(), "$Junk");
    }

    #[test]
    fn flags_from_server() {
        assert_eq!(Flag::from_server("\\Seen"), Some(Flag::Seen));
        assert_eq!(Flag::from_server("\\deleted"), Some(Flag::Deleted));
        assert_eq!(
            Flag::from_server("$Forwarded"),
            Some(Flag::Keyword("$Forwarded".to_owned()))
        );
        assert_eq!(Flag::from_server("\\Recent"), None);
        assert_eq!(Flag::from_server("\\*"), None);
        assert_eq!(Flag::from_server("\\Important"), None);
        assert_eq!(Flag::from_server(""), None);
    }

    #[test]
    fn flag_lists() {
        let flags = [Flag::Seen, Flag::Keyword("$Label".to_owned())];
        let command = Command::new("UID STORE")
            .uid_set(&UidSet::from_uids([1, 2, 3, 5]).unwrap())
            .atom("+FLAGS")
            .flags(&flags);
        assert_eq!(
            wire_text(&command, false),
            ["A1 UID STORE 1:3,5 +FLAGS (\\Seen $Label)\r\n"]
        );
        let command = Command::new("UID STORE")
            .uid_set(&UidSet::single(1).unwrap())
            .atom("FLAGS")
            .flags(&[]);
        assert_eq!(wire_text(&command, false), ["A1 UID STORE 1 FLAGS ()\r\n"]);
    }

    #[test]
    fn dates_are_formatted_for_imap() {
        let cases = [
            (date(1994, 2, 1), "1-Feb-1994"),
            (date(2024, 12, 31), "31-Dec-2024"),
            (date(2000, 1, 9), "9-Jan-2000"),
            (date(2023, 3, 10), "10-Mar-2023"),
            (date(2023, 4, 1), "1-Apr-2023"),
            (date(2023, 5, 1), "1-May-2023"),
            (date(2023, 6, 1), "1-Jun-2023"),
            (date(2023, 7, 1), "1-Jul-2023"),
            (date(2023, 8, 1), "1-Aug-2023"),
            (date(2023, 9, 1), "1-Sep-2023"),
            (date(2023, 10, 1), "1-Oct-2023"),
            (date(2023, 11, 1), "1-Nov-2023"),
            (date(5, 6, 7), "7-Jun-0005"),
            (date(0, 1, 1), "1-Jan-0000"),
            (date(-1, 12, 31), "1-Jan-0000"),
            (date(9999, 12, 31), "31-Dec-9999"),
            (date(10_000, 1, 1), "31-Dec-9999"),
            (NaiveDate::MIN, "1-Jan-0000"),
            (NaiveDate::MAX, "31-Dec-9999"),
        ];
        for (day, expected) in cases {
            assert_eq!(
                wire_text(&Command::new("SEARCH").atom("SINCE").date(day), false),
                [format!("A1 SEARCH SINCE {expected}\r\n")]
            );
        }
    }

    #[test]
    fn search_with_nested_not_and_or() {
        let keys = [
            SearchKey::Or(
                Box::new(SearchKey::Not(Box::new(SearchKey::Seen))),
                Box::new(SearchKey::Or(
                    Box::new(SearchKey::Flagged),
                    Box::new(SearchKey::Not(Box::new(SearchKey::Keyword(Flag::Keyword(
                        "$Junk".to_owned(),
                    ))))),
                )),
            ),
            SearchKey::Since(date(2024, 1, 2)),
            SearchKey::Uid(UidSet::range(10, 20).unwrap()),
            SearchKey::Subject(text("report \"Q1\"")),
        ];
        assert_eq!(
            wire_text(&Command::new("UID SEARCH").search(&keys), false),
            [
                "A1 UID SEARCH OR NOT SEEN OR FLAGGED NOT KEYWORD $Junk SINCE 2-Jan-2024 \
              UID 10:20 SUBJECT \"report \\\"Q1\\\"\"\r\n"
            ]
        );
    }

    #[test]
    fn search_covers_every_key() {
        let keys = [
            SearchKey::All,
            SearchKey::Unseen,
            SearchKey::Seen,
            SearchKey::Flagged,
            SearchKey::Unflagged,
            SearchKey::Answered,
            SearchKey::Deleted,
            SearchKey::Undeleted,
            SearchKey::Draft,
            SearchKey::From(text("f")),
            SearchKey::To(text("t")),
            SearchKey::Cc(text("c")),
            SearchKey::Subject(text("s")),
            SearchKey::Text(text("x")),
            SearchKey::Body(text("b")),
            SearchKey::Since(date(2020, 1, 1)),
            SearchKey::Before(date(2020, 1, 2)),
            SearchKey::SentSince(date(2020, 1, 3)),
            SearchKey::SentBefore(date(2020, 1, 4)),
            SearchKey::Uid(UidSet::single(4).unwrap()),
            SearchKey::Keyword(Flag::Seen),
            SearchKey::Keyword(Flag::Answered),
            SearchKey::Keyword(Flag::Flagged),
            SearchKey::Keyword(Flag::Deleted),
            SearchKey::Keyword(Flag::Draft),
            SearchKey::Keyword(Flag::Keyword("$k".to_owned())),
        ];
        assert_eq!(
            wire_text(&Command::new("SEARCH").search(&keys), false),
            [
                "A1 SEARCH ALL UNSEEN SEEN FLAGGED UNFLAGGED ANSWERED DELETED UNDELETED DRAFT \
              FROM \"f\" TO \"t\" CC \"c\" SUBJECT \"s\" TEXT \"x\" BODY \"b\" \
              SINCE 1-Jan-2020 BEFORE 2-Jan-2020 SENTSINCE 3-Jan-2020 SENTBEFORE 4-Jan-2020 \
              UID 4 SEEN ANSWERED FLAGGED DELETED DRAFT KEYWORD $k\r\n"
            ]
        );
    }

    #[test]
    fn search_declares_utf8_only_for_non_ascii_strings() {
        let ascii = [SearchKey::From(text("alice")), SearchKey::Unseen];
        assert_eq!(
            wire_text(&Command::new("UID SEARCH").search(&ascii), false),
            ["A1 UID SEARCH FROM \"alice\" UNSEEN\r\n"]
        );
        let nested = [SearchKey::Not(Box::new(SearchKey::Or(
            Box::new(SearchKey::All),
            Box::new(SearchKey::Body(text("日本"))),
        )))];
        assert_eq!(
            wire_text(&Command::new("UID SEARCH").search(&nested), false),
            [
                "A1 UID SEARCH CHARSET UTF-8 NOT OR ALL BODY {6}\r\n",
                "日本\r\n"
            ]
        );
        assert_eq!(
            wire_text(&Command::new("UID SEARCH").search(&nested), true),
            ["A1 UID SEARCH CHARSET UTF-8 NOT OR ALL BODY {6+}\r\n日本\r\n"]
        );
    }

    #[test]
    fn search_without_keys_is_all() {
        assert_eq!(
            wire_text(&Command::new("UID SEARCH").search(&[]), false),
            ["A1 UID SEARCH ALL\r\n"]
        );
        let command = Command::new("UID SEARCH")
            .atom("RETURN")
            .atom("(COUNT)")
            .search(&[]);
        assert_eq!(
            wire_text(&command, false),
            ["A1 UID SEARCH RETURN (COUNT) ALL\r\n"]
        );
    }

    #[test]
    fn sort_and_thread_take_a_bare_charset() {
        let command = Command::new("UID SORT")
            .atom("(REVERSE DATE)")
            .sort_criteria(&[SearchKey::Subject(text("é"))]);
        assert_eq!(
            wire_text(&command, true),
            ["A1 UID SORT (REVERSE DATE) UTF-8 SUBJECT {2+}\r\né\r\n"]
        );
        let command = Command::new("UID SORT")
            .atom("(ARRIVAL)")
            .sort_criteria(&[]);
        assert_eq!(
            wire_text(&command, false),
            ["A1 UID SORT (ARRIVAL) UTF-8 ALL\r\n"]
        );
        let command = Command::new("THREAD")
            .atom("REFERENCES")
            .sort_criteria(&[SearchKey::Unseen]);
        assert_eq!(
            wire_text(&command, false),
            ["A1 THREAD REFERENCES UTF-8 UNSEEN\r\n"]
        );
    }

    #[test]
    fn deeply_nested_search_does_not_recurse() {
        let mut key = SearchKey::All;
        for _ in 0..100_000 {
            key = SearchKey::Not(Box::new(key));
        }
        let pieces = Command::new("SEARCH")
            .search(std::slice::from_ref(&key))
            .to_wire("A1", false);
        assert_eq!(pieces.len(), 1);
        assert!(pieces[0].starts_with(b"A1 SEARCH NOT NOT "));
        assert!(pieces[0].ends_with(b" NOT ALL\r\n"));
        assert_eq!(
            pieces[0].len(),
            "A1 SEARCH ".len() + 100_000 * 4 + "ALL\r\n".len()
        );
        // Dropping the chain recursively could overflow the test thread's stack, so take it
        // apart one level at a time.
        while let SearchKey::Not(inner) = key {
            key = *inner;
        }
    }

    #[test]
    fn to_wire_splits_at_synchronising_literals() {
        let command = Command::new("APPEND")
            .mailbox(&MailboxName::new("Sent Items").unwrap())
            .flags(&[Flag::Seen])
            .literal(b"Subject: hi\r\n\r\nbody\r\n");
        assert_eq!(
            wire_text(&command, false),
            [
                "A1 APPEND \"Sent Items\" (\\Seen) {21}\r\n",
                "Subject: hi\r\n\r\nbody\r\n\r\n"
            ]
        );
        assert_eq!(
            wire_text(&command, true),
            ["A1 APPEND \"Sent Items\" (\\Seen) {21+}\r\nSubject: hi\r\n\r\nbody\r\n\r\n"]
        );
    }

    #[test]
    fn to_wire_with_several_literals() {
        let command = Command::new("LOGIN")
            .string(&text("jürgen"))
            .string(&text("pässword"));
        assert_eq!(
            wire_text(&command, false),
            ["A1 LOGIN {7}\r\n", "jürgen {9}\r\n", "pässword\r\n"]
        );
        assert_eq!(
            wire_text(&command, true),
            ["A1 LOGIN {7+}\r\njürgen {9+}\r\npässword\r\n"]
        );
        let pieces = command.to_wire("A1", false);
        let (_, tokens) = parse_command(&pieces, false);
        assert_eq!(tokens[1], Token::Literal("jürgen".as_bytes().to_vec()));
        assert_eq!(tokens[2], Token::Literal("pässword".as_bytes().to_vec()));
    }

    #[test]
    fn code_chosen_arguments() {
        let command = Command::new("LIST")
            .atom("(SPECIAL-USE)")
            .string(&text(""))
            .list_pattern("*")
            .atom("RETURN")
            .atom("(CHILDREN)");
        assert_eq!(
            wire_text(&command, false),
            ["A1 LIST (SPECIAL-USE) \"\" * RETURN (CHILDREN)\r\n"]
        );
        let command = Command::new("FETCH").seq_range(1, Some(50)).atom("(UID)");
        assert_eq!(wire_text(&command, false), ["A1 FETCH 1:50 (UID)\r\n"]);
        let command = Command::new("FETCH").seq_range(51, None).atom("(UID)");
        assert_eq!(wire_text(&command, false), ["A1 FETCH 51:* (UID)\r\n"]);
        let command = Command::new("UID FETCH")
            .uid_set(&UidSet::single(9).unwrap())
            .atom("(BODY.PEEK[]<0.")
            .number(u64::from(u32::MAX) + 1);
        assert_eq!(
            wire_text(&command, false),
            ["A1 UID FETCH 9 (BODY.PEEK[]<0. 4294967296\r\n"]
        );
        let command = Command::new("NOOP");
        assert_eq!(wire_text(&command, false), ["A1 NOOP\r\n"]);
    }

    #[test]
    #[should_panic(expected = "invalid IMAP tag")]
    fn to_wire_refuses_a_tag_that_could_end_the_line() {
        let _ = Command::new("NOOP").to_wire("A1\r\nA2", false);
    }

    #[test]
    fn redacted_shows_shapes_not_caller_values() {
        let secret = "SECRET-MARKER";
        let command = Command::new("LOGIN")
            .string(&text(&format!("user-{secret}")))
            .string(&text(&format!("pässwörd-{secret}")));
        assert_eq!(
            command.redacted(),
            "LOGIN <string 18 bytes> <string 24 bytes>"
        );
        assert_eq!(
            format!("{command:?}"),
            "Command(\"LOGIN <string 18 bytes> <string 24 bytes>\")"
        );

        let command = Command::new("UID SEARCH").search(&[
            SearchKey::Subject(text(&format!("日本 {secret}"))),
            SearchKey::Keyword(Flag::parse(&format!("${secret}")).unwrap()),
            SearchKey::Uid(UidSet::from_uids([1, 2, 3, 7]).unwrap()),
            SearchKey::Since(date(2024, 5, 6)),
        ]);
        assert_eq!(
            command.redacted(),
            "UID SEARCH CHARSET UTF-8 SUBJECT <string 20 bytes> KEYWORD <keyword 14 bytes> \
             UID <4 uids> SINCE 6-May-2024"
        );

        let command = Command::new("APPEND")
            .mailbox(&MailboxName::new(&format!("Folder {secret}")).unwrap())
            .flags(&[Flag::Draft, Flag::parse(&format!("${secret}")).unwrap()])
            .literal(secret.as_bytes());
        assert_eq!(
            command.redacted(),
            "APPEND <mailbox 20 bytes> (\\Draft <keyword 14 bytes>) <literal 13 bytes>"
        );
        assert_eq!(
            Command::new("SELECT")
                .mailbox(&MailboxName::new("inbox").unwrap())
                .redacted(),
            "SELECT <mailbox 5 bytes>"
        );
    }

    #[test]
    fn imap_string_debug_hides_content() {
        let password = text("hunter2");
        assert_eq!(format!("{password:?}"), "ImapString(7 bytes)");
        let key = SearchKey::Text(text("hunter2"));
        assert!(!format!("{key:?}").contains("hunter2"));
    }

    #[test]
    fn error_messages_do_not_echo_the_value() {
        let secret = "SECRET-MARKER";
        let errors = [
            MailboxName::new(&format!("{secret}\r\n")).unwrap_err(),
            MailboxName::new(&format!("{secret}*")).unwrap_err(),
            MailboxName::new(&format!("{secret}\u{85}")).unwrap_err(),
            MailboxName::new(&secret.repeat(100)).unwrap_err(),
            MailboxName::from_imap(&format!("{secret}&AGE")).unwrap_err(),
            ImapString::new(&format!("{secret}\0")).unwrap_err(),
            Flag::parse(&format!("{secret} x")).unwrap_err(),
            Flag::parse(&format!("\\{secret}")).unwrap_err(),
        ];
        for error in errors {
            let message = error.to_string();
            assert!(!message.contains(secret), "{message}");
            assert!(!message.is_empty());
        }
        assert_eq!(
            InvalidArgument::TooLong {
                what: "mailbox name",
                max: 1000
            }
            .to_string(),
            "The mailbox name is too long; at most 1000 characters are allowed."
        );
        assert_eq!(
            InvalidArgument::LineBreak { what: "text" }.to_string(),
            "The text must not contain line breaks (CR or LF)."
        );
        assert_eq!(
            InvalidArgument::NotAnAtom.to_string(),
            "A keyword flag must consist of printable ASCII characters other than space and \
             ( ) { % * \" \\ ]."
        );
    }

    #[test]
    fn part_ids() {
        for valid in ["1", "2.1.3", "10.999999999", "1.1.1.1.1.1"] {
            assert_eq!(PartId::parse(valid).unwrap().as_str(), valid);
            assert_eq!(PartId::parse(valid).unwrap().to_string(), valid);
        }
        for invalid in [
            "0",
            "1.0",
            "01",
            "1..2",
            ".1",
            "1.",
            "4294967296",
            "1000000000",
            "1.2]",
            "1 2",
            "TEXT",
            "1.MIME",
            "１",
            "1\r\n",
            "-1",
            "+1",
        ] {
            assert_eq!(
                PartId::parse(invalid),
                Err(InvalidArgument::InvalidPartId),
                "{invalid:?}"
            );
        }
        assert_eq!(
            PartId::parse(""),
            Err(InvalidArgument::Empty { what: "part id" })
        );
        assert_eq!(
            PartId::parse(&vec!["1"; 33].join(".")),
            Err(InvalidArgument::PartIdTooDeep { max: 32 })
        );
        assert!(PartId::parse(&vec!["1"; 32].join(".")).is_ok());
        // The longest id: 32 numbers of nine digits.
        let longest = vec!["999999999"; 32].join(".");
        assert_eq!(longest.len(), 319);
        assert!(PartId::parse(&longest).is_ok());
        assert_eq!(
            PartId::parse(&format!("{longest}9")),
            Err(InvalidArgument::TooLong {
                what: "part id",
                max: 319
            })
        );
    }

    #[test]
    fn body_sections_and_closing_parenthesis() {
        let part = PartId::parse("1.2").unwrap();
        let command = Command::new("UID FETCH")
            .uid_set(&UidSet::single(5).unwrap())
            .atom("(UID")
            .section("BODY.PEEK", &part, Some((0, 65536)))
            .section("BODY.PEEK", &PartId::parse("3").unwrap(), None)
            .atom(")");
        assert_eq!(
            wire_text(&command, false),
            ["A1 UID FETCH 5 (UID BODY.PEEK[1.2]<0.65536> BODY.PEEK[3])\r\n"]
        );
        assert_eq!(
            command.redacted(),
            "UID FETCH <1 uids> (UID BODY.PEEK[1.2]<0.65536> BODY.PEEK[3])"
        );
        let command = Command::new("UID FETCH")
            .uid_set(&UidSet::single(5).unwrap())
            .atom("(UID")
            .whole_body_section("BODY.PEEK", Some((100, 50)))
            .atom(")");
        assert_eq!(
            wire_text(&command, false),
            ["A1 UID FETCH 5 (UID BODY.PEEK[]<100.50>)\r\n"]
        );
        let command = Command::new("FETCH")
            .seq_range(1, None)
            .whole_body_section("BODY", None);
        assert_eq!(wire_text(&command, false), ["A1 FETCH 1:* BODY[]\r\n"]);
        let command = Command::new("UID FETCH")
            .uid_set(&UidSet::single(5).unwrap())
            .atom("(UID")
            .mime_header_section("BODY.PEEK", &part)
            .text_section("BODY.PEEK", Some((0, 4096)))
            .text_section("BODY", None)
            .atom(")");
        assert_eq!(
            wire_text(&command, false),
            ["A1 UID FETCH 5 (UID BODY.PEEK[1.2.MIME] BODY.PEEK[TEXT]<0.4096> BODY[TEXT])\r\n"]
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "sort_criteria")]
    fn search_is_not_for_sort() {
        let _ = Command::new("UID SORT").atom("(DATE)").search(&[]);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "SORT and THREAD")]
    fn sort_criteria_is_not_for_search() {
        let _ = Command::new("UID SEARCH").sort_criteria(&[]);
    }
}
