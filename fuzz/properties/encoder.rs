//! Fuzzes the IMAP command encoder (`imap::encode`): whatever a caller sends, every value the
//! validating constructors accept must come out of `Command::to_wire` as exactly one IMAP
//! command whose arguments a server reads back as exactly the caller's values.
//!
//! The input is a small program, so that seeds can be written by hand and mutations stay
//! meaningful. Records are separated by 0xFF (a byte that never occurs in UTF-8, so no text
//! value loses anything to it). The first record picks the command name (byte 0) and the tag
//! (byte 1); every other record appends one argument, chosen by its first byte:
//!
//! | byte | argument | rest of the record |
//! |---|---|---|
//! | `m` | `MailboxName::new` | the UTF-8 name |
//! | `M` | `MailboxName::from_imap` | the name as a server sends it (modified UTF-7) |
//! | `s` | `ImapString` | the text |
//! | `l` | literal | raw bytes; `L` takes the whole rest of the input, 0xFF included |
//! | `f` | flag list | flags separated by 0xFE |
//! | `u` | `UidSet` | `5`, `1:9` or a list such as `1,3:4,7` |
//! | `p` | `(UID BODY.PEEK[part]<o.l>)` | part id, optionally 0xFE and `offset.length` |
//! | `w` | `BODY.PEEK[]<o.l>` | optionally `offset.length` |
//! | `d` | date | `2024-01-31`, or a day number counted from 1 Jan of year 1 |
//! | `n` | number | decimal |
//! | `r` | sequence range | `1:50` or `51:*` |
//! | `a` | a code-chosen keyword | its index |
//! | `*` | LIST pattern `*` or `%` | one byte |
//! | `k` | search criteria | items separated by 0xFE, in prefix order (see `search_item`) |
//!
//! Properties checked, each a panic when broken:
//! * each constructor accepts exactly what its documentation says (an oracle written here);
//! * with and without LITERAL+, the wire bytes parse, with the independent reader below, as
//!   one command: the tag, the command name, then arguments in which quoted strings hold
//!   printable ASCII with only `\\` and `\"` escaped, every literal `{n}`/`{n+}` is followed
//!   by CRLF and exactly n bytes, and the only CRLF outside literal data and literal headers
//!   is the final one; synchronising literals split the pieces exactly after their header;
//! * the arguments read back are exactly the caller's values (strings byte for byte, mailbox
//!   names through modified UTF-7 decoding, flags, UID sets, dates, search keys);
//! * a mailbox name round-trips through modified UTF-7, and `from_imap` accepts exactly the
//!   canonical encodings of valid names;
//! * the redacted log form is one line.

use chrono::{Datelike, NaiveDate};
use imap_bridge::imap::encode::{
    Command, Flag, ImapString, MailboxName, PartId, SearchKey, UidSet,
};

/// Command names the bridge sends; the SORT and THREAD ones take `sort_criteria`.
const COMMANDS: &[&str] = &[
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "STATUS",
    "APPEND",
    "LIST",
    "LOGIN",
    "UID FETCH",
    "UID STORE",
    "UID COPY",
    "UID MOVE",
    "UID SEARCH",
    "SEARCH",
    "UID SORT",
    "SORT",
    "UID THREAD",
    "THREAD",
    "FETCH",
    "NOOP",
];

/// Tags as the connection might generate them: RFC 3501 ASTRING-CHARs other than `+`.
const TAGS: &[&str] = &["A1", "a0042", "T.17", "x!#$&'-/:;<=>?@[]^_`|~"];

/// Code-chosen keywords and parenthesised lists, as passed to `Command::atom`.
const ATOMS: &[&str] = &[
    "RETURN",
    "(CHILDREN)",
    "(SPECIAL-USE)",
    "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)",
    "+FLAGS.SILENT",
    "-FLAGS.SILENT (\\Seen)",
    "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)",
    "(CHANGEDSINCE 42)",
    "(REVERSE DATE)",
    "(ARRIVAL)",
    "REFERENCES",
    "()",
];

/// Checks the properties above on one input; panics when one breaks.
pub fn run(data: &[u8]) {
    let mut records = Records {
        data,
        position: 0,
        done: false,
    };
    let header = records.next().unwrap_or_default();
    let name = COMMANDS[usize::from(header.first().copied().unwrap_or(0)) % COMMANDS.len()];
    let tag = TAGS[usize::from(header.get(1).copied().unwrap_or(0)) % TAGS.len()];
    let sort_like = ["UID SORT", "SORT", "UID THREAD", "THREAD"].contains(&name);

    let mut command = Command::new(name);
    let mut expected: Vec<Exp> = name.split(' ').map(Exp::atom).collect();
    let mut search_keys: Vec<Vec<SearchKey>> = Vec::new();

    for record in records {
        let Some((&kind, payload)) = record.split_first() else {
            continue;
        };
        command = match kind {
            b'm' => mailbox_arg(command, &mut expected, &lossy(payload)),
            b'M' => match server_mailbox(&lossy(payload)) {
                Some(mailbox) => {
                    expected.push(mailbox_exp(&mailbox));
                    command.mailbox(&mailbox)
                }
                None => command,
            },
            b's' => {
                let text = lossy(payload);
                let accepted = ImapString::new(&text);
                assert_eq!(
                    accepted.is_ok(),
                    string_is_valid(&text),
                    "ImapString::new disagrees with its documentation on {text:?}"
                );
                match accepted {
                    Ok(string) => {
                        assert_eq!(string.as_str(), text);
                        expected.push(Exp::Str(text.into_bytes()));
                        command.string(&string)
                    }
                    Err(_) => command,
                }
            }
            b'l' | b'L' => {
                expected.push(Exp::Literal(payload.to_vec()));
                command.literal(payload)
            }
            b'f' => {
                let flags: Vec<Flag> = payload
                    .split(|&b| b == 0xFE)
                    .filter_map(|flag| parse_flag(&lossy(flag)))
                    .collect();
                expected.push(Exp::List(
                    flags.iter().map(|f| Exp::atom(f.as_str())).collect(),
                ));
                command.flags(&flags)
            }
            b'u' => match uid_set(&lossy(payload)) {
                Some((set, canonical)) => {
                    expected.push(Exp::atom(&canonical));
                    command.uid_set(&set)
                }
                None => command,
            },
            b'p' => {
                let mut fields = payload.splitn(2, |&b| b == 0xFE);
                let part = lossy(fields.next().unwrap_or_default());
                let partial = fields.next().and_then(|p| partial(&lossy(p)));
                let accepted = PartId::parse(&part);
                assert_eq!(
                    accepted.is_ok(),
                    part_id_is_valid(&part),
                    "PartId::parse disagrees with RFC 3501 section-part on {part:?}"
                );
                match accepted {
                    Ok(id) => {
                        assert_eq!(id.as_str(), part);
                        expected.push(Exp::List(vec![
                            Exp::atom("UID"),
                            Exp::atom(&format!("BODY.PEEK[{part}]{}", partial_text(partial))),
                        ]));
                        command
                            .atom("(UID")
                            .section("BODY.PEEK", &id, partial)
                            .atom(")")
                    }
                    Err(_) => command,
                }
            }
            b'w' => {
                let partial = partial(&lossy(payload));
                expected.push(Exp::atom(&format!("BODY.PEEK[]{}", partial_text(partial))));
                command.whole_body_section("BODY.PEEK", partial)
            }
            b'd' => match date(&lossy(payload)) {
                Some(day) => {
                    expected.push(Exp::atom(&imap_date(day)));
                    command.date(day)
                }
                None => command,
            },
            b'n' => match lossy(payload).parse::<u64>() {
                Ok(n) => {
                    expected.push(Exp::atom(&n.to_string()));
                    command.number(n)
                }
                Err(_) => command,
            },
            b'r' => match seq_range(&lossy(payload)) {
                Some((first, last)) => {
                    let text = match last {
                        Some(last) => format!("{first}:{last}"),
                        None => format!("{first}:*"),
                    };
                    expected.push(Exp::atom(&text));
                    command.seq_range(first, last)
                }
                None => command,
            },
            b'a' => {
                let atom = ATOMS[usize::from(payload.first().copied().unwrap_or(0)) % ATOMS.len()];
                let tokens = read_fragment(atom.as_bytes())
                    .unwrap_or_else(|e| panic!("static atom {atom:?} unreadable: {e}"));
                expected.extend(tokens.iter().map(Exp::from_token));
                command.atom(atom)
            }
            b'*' => {
                let pattern = if payload.first().copied().unwrap_or(0) % 2 == 0 {
                    "*"
                } else {
                    "%"
                };
                expected.push(Exp::atom(pattern));
                command.list_pattern(pattern)
            }
            b'k' => {
                let keys = search_keys_from(payload);
                let mut tokens = Vec::new();
                if sort_like {
                    tokens.push(Exp::atom("UTF-8"));
                } else if any_non_ascii_text(&keys) {
                    tokens.push(Exp::atom("CHARSET"));
                    tokens.push(Exp::atom("UTF-8"));
                }
                if keys.is_empty() {
                    tokens.push(Exp::atom("ALL"));
                }
                expected_search_tokens(&keys, &mut tokens);
                expected.extend(tokens);
                let command = if sort_like {
                    command.sort_criteria(&keys)
                } else {
                    command.search(&keys)
                };
                search_keys.push(keys);
                command
            }
            _ => command,
        };
    }

    for literal_plus in [false, true] {
        let pieces = command.to_wire(tag, literal_plus);
        let tokens = read_command(&pieces, literal_plus, tag).unwrap_or_else(|error| {
            panic!(
                "not one IMAP command (literal_plus = {literal_plus}): {error}\nwire: {:?}",
                String::from_utf8_lossy(&pieces.concat())
            )
        });
        assert_eq!(
            tokens.len(),
            expected.len(),
            "argument count differs\ntokens:   {tokens:?}\nexpected: {expected:?}"
        );
        for (index, (token, exp)) in tokens.iter().zip(&expected).enumerate() {
            assert!(
                exp.matches(token),
                "argument {index} read back as {token:?}, expected {exp:?}"
            );
        }
    }
    let redacted = command.redacted();
    assert!(
        !redacted.contains(['\r', '\n']),
        "redacted form spans lines: {redacted:?}"
    );

    // Deeply nested keys are taken apart iteratively; dropping them recursively could
    // overflow the stack on inputs that are merely long.
    for keys in search_keys {
        drop_keys(keys);
    }
}

/// Splits the input at 0xFF; after the header, a record starting with `L` takes the rest of
/// the input.
struct Records<'a> {
    data: &'a [u8],
    position: usize,
    done: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        let rest = &self.data[self.position..];
        if self.position > 0 && rest.first() == Some(&b'L') {
            self.done = true;
            return Some(rest);
        }
        match rest.iter().position(|&b| b == 0xFF) {
            Some(end) => {
                self.position += end + 1;
                Some(&rest[..end])
            }
            None => {
                self.done = true;
                Some(rest)
            }
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------
// Oracles: what each constructor is documented to accept.

/// `MailboxName::new`: 1 to 1000 characters, no control character (Unicode Cc), no `*`/`%`.
fn mailbox_is_valid(name: &str) -> bool {
    let chars = name.chars().count();
    (1..=1000).contains(&chars) && !name.chars().any(|c| c.is_control() || c == '*' || c == '%')
}

/// `ImapString::new`: at most 8192 characters, no NUL, CR or LF.
fn string_is_valid(text: &str) -> bool {
    text.chars().count() <= 8192 && !text.contains(['\0', '\r', '\n'])
}

/// RFC 3501 ATOM-CHAR: printable ASCII but SP and the atom-specials `( ) { % * " \ ]`.
fn is_atom_char(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte) && !b"(){%*\"\\]".contains(&byte)
}

const SYSTEM_FLAGS: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

/// Parses a flag and checks `Flag::parse` against its documentation: a settable system flag
/// in any letter case (given back in its canonical case), or an atom of 1 to 100 bytes.
fn parse_flag(text: &str) -> Option<Flag> {
    let system = SYSTEM_FLAGS
        .iter()
        .find(|flag| flag.eq_ignore_ascii_case(text));
    let keyword_ok = (1..=100).contains(&text.len()) && text.bytes().all(is_atom_char);
    let parsed = Flag::parse(text);
    assert_eq!(
        parsed.is_ok(),
        system.is_some() || keyword_ok,
        "Flag::parse disagrees with its documentation on {text:?}"
    );
    let flag = parsed.ok()?;
    match system {
        Some(canonical) => assert_eq!(flag.as_str(), *canonical),
        None => assert_eq!(flag.as_str(), text),
    }
    assert_eq!(Flag::from_server(flag.as_str()).as_ref(), Some(&flag));
    Some(flag)
}

/// RFC 3501 `section-part` as `PartId` documents it: dot-separated non-zero numbers of at most
/// nine digits without leading zeros, at most 100 bytes in all.
fn part_id_is_valid(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 100
        && part.split('.').all(|number| {
            (1..=9).contains(&number.len())
                && number.bytes().all(|b| b.is_ascii_digit())
                && !number.starts_with('0')
        })
}

// ---------------------------------------------------------------------------------------
// Mailbox names and modified UTF-7 (RFC 3501 §5.1.3), written here independently.

fn mailbox_arg(command: Command, expected: &mut Vec<Exp>, name: &str) -> Command {
    let accepted = MailboxName::new(name);
    assert_eq!(
        accepted.is_ok(),
        mailbox_is_valid(name),
        "MailboxName::new disagrees with its documentation on {name:?}"
    );
    let Ok(mailbox) = accepted else {
        return command;
    };
    if name.eq_ignore_ascii_case("INBOX") {
        assert_eq!(mailbox.as_str(), "INBOX");
        assert!(mailbox.is_inbox());
    } else {
        assert_eq!(mailbox.as_str(), name);
        assert!(!mailbox.is_inbox());
    }
    let wire = mailbox.to_imap();
    assert_eq!(
        wire,
        mutf7_encode(mailbox.as_str()),
        "not the canonical modified UTF-7 of {name:?}"
    );
    assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)));
    assert_eq!(mutf7_decode(&wire).as_deref(), Some(mailbox.as_str()));
    assert_eq!(
        MailboxName::from_imap(&wire).as_ref(),
        Ok(&mailbox),
        "modified UTF-7 round trip of {name:?}"
    );
    expected.push(mailbox_exp(&mailbox));
    command.mailbox(&mailbox)
}

/// Checks `MailboxName::from_imap`: it accepts exactly the canonical encodings of valid names.
fn server_mailbox(encoded: &str) -> Option<MailboxName> {
    let decoded = mutf7_decode(encoded).filter(|d| mutf7_encode(d) == encoded);
    let parsed = MailboxName::from_imap(encoded);
    let valid = decoded.as_deref().is_some_and(mailbox_is_valid);
    assert_eq!(
        parsed.is_ok(),
        valid,
        "from_imap({encoded:?}) = {parsed:?}, independent decoding gives {decoded:?}"
    );
    let mailbox = parsed.ok()?;
    let decoded = decoded.expect("valid");
    if decoded.eq_ignore_ascii_case("INBOX") {
        assert_eq!(mailbox.as_str(), "INBOX");
    } else {
        assert_eq!(mailbox.as_str(), decoded);
        assert_eq!(mailbox.to_imap(), encoded);
    }
    Some(mailbox)
}

fn mailbox_exp(mailbox: &MailboxName) -> Exp {
    if mailbox.is_inbox() {
        Exp::atom("INBOX")
    } else {
        Exp::MailboxName(mailbox.as_str().to_owned())
    }
}

const MODIFIED_BASE64: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// The canonical modified UTF-7: printable ASCII as itself (`&` as `&-`), each maximal run
/// of other characters as one `&<base64 of UTF-16BE>-` without padding.
fn mutf7_encode(text: &str) -> String {
    let mut out = String::new();
    let mut run: Vec<u8> = Vec::new();
    let flush = |run: &mut Vec<u8>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        out.push('&');
        for chunk in run.chunks(3) {
            let mut group = [0u8; 3];
            group[..chunk.len()].copy_from_slice(chunk);
            let n = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
            let sextets = match chunk.len() {
                1 => 2,
                2 => 3,
                _ => 4,
            };
            for i in 0..sextets {
                out.push(char::from(
                    MODIFIED_BASE64[(n >> (18 - 6 * i) & 63) as usize],
                ));
            }
        }
        out.push('-');
        run.clear();
    };
    for ch in text.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut run, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                run.extend_from_slice(&unit.to_be_bytes());
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A lenient modified UTF-7 decoder: `None` only for what cannot be decoded at all (bytes
/// outside printable ASCII, `&` without `-`, foreign base64 characters, an odd number of
/// bytes, unpaired surrogates). Canonicity is checked by re-encoding.
fn mutf7_decode(encoded: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = encoded.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        match byte {
            b'&' => {
                let end = tail.iter().position(|&b| b == b'-')?;
                let section = &tail[..end];
                rest = &tail[end + 1..];
                if section.is_empty() {
                    out.push('&');
                    continue;
                }
                let mut bits = 0u32;
                let mut count = 0;
                let mut bytes = Vec::new();
                for &c in section {
                    let value = MODIFIED_BASE64.iter().position(|&b| b == c)? as u32;
                    bits = (bits << 6 | value) & 0xFFFF;
                    count += 6;
                    if count >= 8 {
                        count -= 8;
                        bytes.push((bits >> count) as u8);
                    }
                }
                if bytes.len() % 2 != 0 {
                    return None;
                }
                let units = bytes.chunks(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
                for unit in char::decode_utf16(units) {
                    out.push(unit.ok()?);
                }
            }
            0x20..=0x7e => {
                out.push(char::from(byte));
                rest = tail;
            }
            _ => return None,
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// UID sets, part sections, dates, numbers.

/// Builds a UID set from `5`, `1:9` or `1,3:4,7`, checking the constructor's acceptance, and
/// returns it with its canonical sequence-set text (sorted, merged ranges), computed here.
fn uid_set(text: &str) -> Option<(UidSet, String)> {
    let items: Vec<(u32, u32)> = text
        .split(',')
        .map(|item| match item.split_once(':') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => item.parse().ok().map(|a| (a, a)),
        })
        .collect::<Option<_>>()?;
    let (set, mut uids) = if let [(first, last)] = items[..] {
        let set = if first == last && !text.contains(':') {
            UidSet::single(first)
        } else {
            UidSet::range(first, last)
        };
        assert_eq!(
            set.is_ok(),
            first >= 1 && first <= last,
            "UidSet::range({first}, {last})"
        );
        (set.ok()?, vec![(first, last)])
    } else {
        // A list: small ranges are expanded, so that from_uids sees every UID.
        let uids: Vec<u32> = items
            .iter()
            .filter(|(a, b)| a <= b && b - a < 64)
            .flat_map(|&(a, b)| a..=b)
            .collect();
        let set = UidSet::from_uids(uids.iter().copied());
        assert_eq!(
            set.is_ok(),
            !uids.is_empty() && !uids.contains(&0),
            "UidSet::from_uids({uids:?})"
        );
        (set.ok()?, uids.iter().map(|&u| (u, u)).collect())
    };
    uids.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for (first, last) in uids {
        match merged.last_mut() {
            Some((_, end)) if u64::from(first) <= u64::from(*end) + 1 => *end = (*end).max(last),
            _ => merged.push((first, last)),
        }
    }
    let size: u64 = merged.iter().map(|&(a, b)| u64::from(b - a) + 1).sum();
    assert_eq!(set.len(), size);
    for &(a, b) in &merged {
        assert!(set.contains(a) && set.contains(b));
        assert!(a == 1 || !set.contains(a - 1));
        assert!(b == u32::MAX || !set.contains(b + 1));
    }
    let canonical = merged
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}:{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(set.to_string(), canonical);
    Some((set, canonical))
}

fn partial(text: &str) -> Option<(u32, u32)> {
    let (offset, length) = text.split_once('.')?;
    Some((offset.parse().ok()?, length.parse().ok()?))
}

fn partial_text(partial: Option<(u32, u32)>) -> String {
    partial.map_or_else(String::new, |(o, l)| format!("<{o}.{l}>"))
}

fn date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .or_else(|| NaiveDate::from_num_days_from_ce_opt(text.parse().ok()?))
}

/// RFC 3501 `date` (`d-Mon-yyyy`), clamped to four-digit years as `Command::date` documents.
fn imap_date(day: NaiveDate) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if day.year() < 0 {
        return "1-Jan-0000".to_owned();
    }
    if day.year() > 9999 {
        return "31-Dec-9999".to_owned();
    }
    format!(
        "{}-{}-{:04}",
        day.day(),
        MONTHS[day.month0() as usize],
        day.year()
    )
}

/// `a:b` or `a:*` with numbers of at least 1, as `Command::seq_range` requires of its callers.
fn seq_range(text: &str) -> Option<(u32, Option<u32>)> {
    let (first, last) = text.split_once(':')?;
    let first: u32 = first.parse().ok().filter(|&n| n >= 1)?;
    let last = match last {
        "*" => None,
        n => Some(n.parse().ok().filter(|&n: &u32| n >= 1)?),
    };
    Some((first, last))
}

// ---------------------------------------------------------------------------------------
// Search keys.

/// One item of a search program: a key, or `NOT`/`OR` applying to the keys after it.
enum SearchItem {
    Key(SearchKey),
    Not,
    Or,
}

/// Reads one search item: a key letter, then its operand.
///
/// `A` ALL, `U` UNSEEN, `S` SEEN, `F` FLAGGED, `G` UNFLAGGED, `N` ANSWERED, `D` DELETED,
/// `E` UNDELETED, `R` DRAFT; `f` FROM, `t` TO, `c` CC, `s` SUBJECT, `x` TEXT, `b` BODY with
/// text; `i` SINCE, `e` BEFORE, `I` SENTSINCE, `X` SENTBEFORE with a date; `u` UID with a
/// UID set; `k` a flag; `!` NOT and `|` OR, whose operands are the keys that follow.
fn search_item(item: &[u8]) -> Option<SearchItem> {
    let (&kind, operand) = item.split_first()?;
    let text = || {
        let text = lossy(operand);
        let accepted = ImapString::new(&text);
        assert_eq!(
            accepted.is_ok(),
            string_is_valid(&text),
            "ImapString {text:?}"
        );
        accepted.ok()
    };
    let day = || date(&lossy(operand));
    let key = match kind {
        b'A' => SearchKey::All,
        b'U' => SearchKey::Unseen,
        b'S' => SearchKey::Seen,
        b'F' => SearchKey::Flagged,
        b'G' => SearchKey::Unflagged,
        b'N' => SearchKey::Answered,
        b'D' => SearchKey::Deleted,
        b'E' => SearchKey::Undeleted,
        b'R' => SearchKey::Draft,
        b'f' => SearchKey::From(text()?),
        b't' => SearchKey::To(text()?),
        b'c' => SearchKey::Cc(text()?),
        b's' => SearchKey::Subject(text()?),
        b'x' => SearchKey::Text(text()?),
        b'b' => SearchKey::Body(text()?),
        b'i' => SearchKey::Since(day()?),
        b'e' => SearchKey::Before(day()?),
        b'I' => SearchKey::SentSince(day()?),
        b'X' => SearchKey::SentBefore(day()?),
        b'u' => SearchKey::Uid(uid_set(&lossy(operand))?.0),
        b'k' => SearchKey::Keyword(parse_flag(&lossy(operand))?),
        b'!' => return Some(SearchItem::Not),
        b'|' => return Some(SearchItem::Or),
        _ => return None,
    };
    Some(SearchItem::Key(key))
}

/// Builds keys from items in prefix order, without recursion; a missing operand is `ALL`.
fn search_keys_from(payload: &[u8]) -> Vec<SearchKey> {
    let items: Vec<SearchItem> = payload
        .split(|&b| b == 0xFE)
        .filter_map(search_item)
        .collect();
    let mut stack: Vec<SearchKey> = Vec::new();
    for item in items.into_iter().rev() {
        let key = match item {
            SearchItem::Key(key) => key,
            SearchItem::Not => SearchKey::Not(Box::new(stack.pop().unwrap_or(SearchKey::All))),
            SearchItem::Or => {
                let left = stack.pop().unwrap_or(SearchKey::All);
                let right = stack.pop().unwrap_or(SearchKey::All);
                SearchKey::Or(Box::new(left), Box::new(right))
            }
        };
        stack.push(key);
    }
    stack.reverse();
    stack
}

fn any_non_ascii_text(keys: &[SearchKey]) -> bool {
    let mut pending: Vec<&SearchKey> = keys.iter().collect();
    while let Some(key) = pending.pop() {
        match key {
            SearchKey::From(s)
            | SearchKey::To(s)
            | SearchKey::Cc(s)
            | SearchKey::Subject(s)
            | SearchKey::Text(s)
            | SearchKey::Body(s)
                if !s.as_str().is_ascii() =>
            {
                return true;
            }
            SearchKey::Not(k) => pending.push(k),
            SearchKey::Or(a, b) => {
                pending.push(a);
                pending.push(b);
            }
            _ => {}
        }
    }
    false
}

/// The tokens RFC 3501 §6.4.4 writes for `keys`, in prefix order.
fn expected_search_tokens(keys: &[SearchKey], out: &mut Vec<Exp>) {
    let mut pending: Vec<&SearchKey> = keys.iter().rev().collect();
    while let Some(key) = pending.pop() {
        let (word, operand) = match key {
            SearchKey::All => ("ALL", None),
            SearchKey::Unseen => ("UNSEEN", None),
            SearchKey::Seen | SearchKey::Keyword(Flag::Seen) => ("SEEN", None),
            SearchKey::Flagged | SearchKey::Keyword(Flag::Flagged) => ("FLAGGED", None),
            SearchKey::Unflagged => ("UNFLAGGED", None),
            SearchKey::Answered | SearchKey::Keyword(Flag::Answered) => ("ANSWERED", None),
            SearchKey::Deleted | SearchKey::Keyword(Flag::Deleted) => ("DELETED", None),
            SearchKey::Undeleted => ("UNDELETED", None),
            SearchKey::Draft | SearchKey::Keyword(Flag::Draft) => ("DRAFT", None),
            SearchKey::From(s) => ("FROM", Some(Exp::Str(s.as_str().into()))),
            SearchKey::To(s) => ("TO", Some(Exp::Str(s.as_str().into()))),
            SearchKey::Cc(s) => ("CC", Some(Exp::Str(s.as_str().into()))),
            SearchKey::Subject(s) => ("SUBJECT", Some(Exp::Str(s.as_str().into()))),
            SearchKey::Text(s) => ("TEXT", Some(Exp::Str(s.as_str().into()))),
            SearchKey::Body(s) => ("BODY", Some(Exp::Str(s.as_str().into()))),
            SearchKey::Since(d) => ("SINCE", Some(Exp::atom(&imap_date(*d)))),
            SearchKey::Before(d) => ("BEFORE", Some(Exp::atom(&imap_date(*d)))),
            SearchKey::SentSince(d) => ("SENTSINCE", Some(Exp::atom(&imap_date(*d)))),
            SearchKey::SentBefore(d) => ("SENTBEFORE", Some(Exp::atom(&imap_date(*d)))),
            SearchKey::Uid(set) => ("UID", Some(Exp::atom(&set.to_string()))),
            SearchKey::Keyword(Flag::Keyword(k)) => ("KEYWORD", Some(Exp::atom(k))),
            SearchKey::Not(operand) => {
                pending.push(operand);
                ("NOT", None)
            }
            SearchKey::Or(left, right) => {
                pending.push(right);
                pending.push(left);
                ("OR", None)
            }
        };
        out.push(Exp::atom(word));
        out.extend(operand);
    }
}

fn drop_keys(keys: Vec<SearchKey>) {
    let mut pending = keys;
    while let Some(key) = pending.pop() {
        match key {
            SearchKey::Not(operand) => pending.push(*operand),
            SearchKey::Or(left, right) => {
                pending.push(*left);
                pending.push(*right);
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// An independent reader of one IMAP command (RFC 3501 §9, RFC 7888).

/// A token as a server reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Atom(Vec<u8>),
    Quoted(Vec<u8>),
    Literal(Vec<u8>),
    List(Vec<Token>),
}

/// What an argument must read back as.
#[derive(Debug)]
enum Exp {
    Atom(Vec<u8>),
    /// A string, quoted or literal, with exactly these octets.
    Str(Vec<u8>),
    /// A literal with exactly these octets.
    Literal(Vec<u8>),
    /// A string whose octets decode (modified UTF-7, checked here) to this mailbox name.
    MailboxName(String),
    List(Vec<Exp>),
}

impl Exp {
    fn atom(text: &str) -> Self {
        Self::Atom(text.as_bytes().to_vec())
    }

    fn from_token(token: &Token) -> Self {
        match token {
            Token::Atom(a) => Self::Atom(a.clone()),
            Token::Quoted(s) => Self::Str(s.clone()),
            Token::Literal(l) => Self::Literal(l.clone()),
            Token::List(items) => Self::List(items.iter().map(Self::from_token).collect()),
        }
    }

    fn matches(&self, token: &Token) -> bool {
        match (self, token) {
            (Self::Atom(a), Token::Atom(b)) => a == b,
            (Self::Str(a), Token::Quoted(b) | Token::Literal(b)) => a == b,
            (Self::Literal(a), Token::Literal(b)) => a == b,
            (Self::MailboxName(name), Token::Quoted(b) | Token::Literal(b)) => {
                std::str::from_utf8(b)
                    .ok()
                    .and_then(mutf7_decode)
                    .as_deref()
                    == Some(name)
            }
            (Self::List(a), Token::List(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(e, t)| e.matches(t))
            }
            _ => false,
        }
    }
}

struct Reader<'a> {
    wire: &'a [u8],
    position: usize,
    literal_plus: bool,
    /// Offsets right after each synchronising literal header.
    sync_points: Vec<usize>,
}

type ReadResult<T> = Result<T, String>;

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.wire.get(self.position).copied()
    }

    fn fail<T>(&self, what: &str) -> ReadResult<T> {
        Err(format!("{what} at byte {}", self.position))
    }

    fn expect(&mut self, bytes: &[u8]) -> ReadResult<()> {
        if self.wire[self.position..].starts_with(bytes) {
            self.position += bytes.len();
            Ok(())
        } else {
            self.fail(&format!("expected {:?}", String::from_utf8_lossy(bytes)))
        }
    }

    /// Tokens separated by single spaces, up to (not including) `)`, CR or the end.
    fn tokens(&mut self) -> ReadResult<Vec<Token>> {
        let mut tokens = Vec::new();
        loop {
            tokens.push(self.token()?);
            if self.peek() == Some(b' ') {
                self.position += 1;
            } else {
                return Ok(tokens);
            }
        }
    }

    fn token(&mut self) -> ReadResult<Token> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            Some(b'(') => {
                self.position += 1;
                let items = if self.peek() == Some(b')') {
                    Vec::new()
                } else {
                    self.tokens()?
                };
                self.expect(b")")?;
                Ok(Token::List(items))
            }
            _ => self.atom(),
        }
    }

    /// Atoms, numbers, sequence sets, flags (`\Seen`), wildcards and FETCH items such as
    /// `BODY.PEEK[1.2]<0.100>`: printable ASCII other than SP, `(`, `)`, `{` and `"`, with a
    /// backslash only in first position (RFC 3501 `flag`).
    fn atom(&mut self) -> ReadResult<Token> {
        let start = self.position;
        while let Some(byte) = self.peek() {
            let allowed = (0x21..=0x7e).contains(&byte)
                && !b"(){\"".contains(&byte)
                && (byte != b'\\' || self.position == start);
            if !allowed {
                break;
            }
            self.position += 1;
        }
        if self.position == start {
            return self.fail("expected a token");
        }
        Ok(Token::Atom(self.wire[start..self.position].to_vec()))
    }

    fn quoted(&mut self) -> ReadResult<Token> {
        self.expect(b"\"")?;
        let mut value = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                return self.fail("unterminated quoted string");
            };
            self.position += 1;
            match byte {
                b'"' => return Ok(Token::Quoted(value)),
                b'\\' => match self.peek() {
                    Some(escaped @ (b'"' | b'\\')) => {
                        self.position += 1;
                        value.push(escaped);
                    }
                    _ => return self.fail("backslash escaping neither '\"' nor '\\'"),
                },
                0x20..=0x7e => value.push(byte),
                _ => return self.fail(&format!("byte {byte:#04x} in a quoted string")),
            }
        }
    }

    fn literal(&mut self) -> ReadResult<Token> {
        self.expect(b"{")?;
        let start = self.position;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.position += 1;
        }
        let digits = &self.wire[start..self.position];
        if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') || digits.len() > 10 {
            return self.fail("literal length not a canonical number");
        }
        let length: usize = std::str::from_utf8(digits).unwrap().parse().unwrap();
        let plus = self.peek() == Some(b'+');
        if plus != self.literal_plus {
            return self.fail("literal kind does not follow LITERAL+");
        }
        if plus {
            self.position += 1;
        }
        self.expect(b"}\r\n")?;
        if !plus {
            self.sync_points.push(self.position);
        }
        let Some(data) = self.wire.get(self.position..self.position + length) else {
            return self.fail(&format!("literal of {length} bytes runs past the end"));
        };
        self.position += length;
        if !matches!(self.peek(), Some(b' ' | b')' | b'\r')) {
            return self.fail("literal data does not end at a token boundary");
        }
        Ok(Token::Literal(data.to_vec()))
    }
}

/// Reads `pieces` as exactly one command: `tag SP name args CRLF`, nothing after it, and the
/// pieces split exactly after each synchronising literal header (one piece with LITERAL+).
/// Returns the tokens after the tag (the command name's words first).
fn read_command(pieces: &[Vec<u8>], literal_plus: bool, tag: &str) -> ReadResult<Vec<Token>> {
    if pieces.is_empty() {
        return Err("no pieces".into());
    }
    if literal_plus && pieces.len() != 1 {
        return Err(format!("{} pieces with LITERAL+", pieces.len()));
    }
    let wire = pieces.concat();
    let mut reader = Reader {
        wire: &wire,
        position: 0,
        literal_plus,
        sync_points: Vec::new(),
    };
    reader.expect(tag.as_bytes())?;
    reader.expect(b" ")?;
    let tokens = reader.tokens()?;
    reader.expect(b"\r\n")?;
    if reader.position != wire.len() {
        return reader.fail("bytes after the final CRLF");
    }
    let mut boundaries = Vec::new();
    let mut offset = 0;
    for piece in &pieces[..pieces.len() - 1] {
        offset += piece.len();
        boundaries.push(offset);
    }
    if reader.sync_points != boundaries {
        return Err(format!(
            "pieces end at {boundaries:?}, synchronising literal headers at {:?}",
            reader.sync_points
        ));
    }
    Ok(tokens)
}

/// Reads a code-chosen fragment such as `(UID FLAGS)` into tokens.
fn read_fragment(fragment: &[u8]) -> ReadResult<Vec<Token>> {
    let mut reader = Reader {
        wire: fragment,
        position: 0,
        literal_plus: false,
        sync_points: Vec::new(),
    };
    let tokens = reader.tokens()?;
    if reader.position != fragment.len() {
        return reader.fail("trailing bytes");
    }
    Ok(tokens)
}
