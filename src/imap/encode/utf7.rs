//! Modified UTF-7 (RFC 3501 §5.1.3), the form mailbox names take on the wire.
//!
//! Implemented here instead of using the `utf7-imap` crate, because that crate panics on
//! malformed base64 sent by a server and accepts input RFC 3501 forbids (an unterminated
//! shift such as `&AGE`, base64-encoded printable ASCII such as `&AGE-`, null shifts,
//! unpaired surrogates), and it leaves DEL unencoded. Strictness matters here: a name that
//! decoded leniently would be re-encoded differently and would no longer name the server's
//! mailbox.

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
pub(super) fn encode_modified_utf7(text: &str) -> String {
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
pub(super) fn decode_modified_utf7(encoded: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use crate::imap::encode::testing::*;
    use crate::imap::encode::*;

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
}
