//! The grammar of body part ids, shared by the MIME walk that names parts and the IMAP
//! encoder that puts them on the wire.
//!
//! A part id is RFC 3501's `section-part`: one or more non-zero numbers joined by dots, such
//! as `1` or `2.1.3`. The walk in [`crate::mail::structure`] lists only parts whose id
//! [`check`] accepts, and the IMAP encoder refuses every id it does not, so every
//! listed part can be fetched and nothing else reaches a FETCH command.

/// Most numbers in a part id: the deepest part the MIME walk names
/// ([`crate::mail::structure::WalkLimits`] never goes deeper), far beyond real MIME trees.
pub const MAX_NUMBERS: usize = 32;

/// Largest number in a part id: nine digits, which always fit in 32 bits.
pub const MAX_NUMBER: usize = 999_999_999;

/// Longest part id: [`MAX_NUMBERS`] numbers of nine digits and the dots between.
pub const MAX_BYTES: usize = MAX_NUMBERS * 10 - 1;

/// Why a string is not a part id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAPartId {
    /// The string is empty.
    Empty,
    /// The string is longer than [`MAX_BYTES`].
    TooLong,
    /// Something other than non-zero numbers of at most nine digits, without leading zeros,
    /// joined by single dots.
    Malformed,
    /// More than [`MAX_NUMBERS`] numbers.
    TooDeep,
}

/// Checks that `s` is a part id with exactly one spelling: each number has at most nine
/// digits and no leading zero, and there are at most [`MAX_NUMBERS`] of them.
pub fn check(s: &str) -> Result<(), NotAPartId> {
    if s.is_empty() {
        return Err(NotAPartId::Empty);
    }
    if s.len() > MAX_BYTES {
        return Err(NotAPartId::TooLong);
    }
    let is_nz_number = |number: &str| {
        (1..=9).contains(&number.len())
            && number.bytes().all(|b| b.is_ascii_digit())
            && !number.starts_with('0')
    };
    if !s.split('.').all(is_nz_number) {
        return Err(NotAPartId::Malformed);
    }
    if s.split('.').count() > MAX_NUMBERS {
        return Err(NotAPartId::TooDeep);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_one_spelling_of_each_part() {
        for valid in ["1", "2.1.3", "10.999999999", &["1"; MAX_NUMBERS].join(".")] {
            assert_eq!(check(valid), Ok(()), "{valid}");
        }
        for (input, why) in [
            ("", NotAPartId::Empty),
            ("0", NotAPartId::Malformed),
            ("01", NotAPartId::Malformed),
            ("1.", NotAPartId::Malformed),
            (".1", NotAPartId::Malformed),
            ("1..2", NotAPartId::Malformed),
            ("1.2.MIME", NotAPartId::Malformed),
            ("1234567890", NotAPartId::Malformed),
            ("+1", NotAPartId::Malformed),
            ("1 ", NotAPartId::Malformed),
            ("１", NotAPartId::Malformed),
        ] {
            assert_eq!(check(input), Err(why), "{input:?}");
        }
        let too_deep = ["1"; MAX_NUMBERS + 1].join(".");
        assert_eq!(check(&too_deep), Err(NotAPartId::TooDeep));
        let too_long = ["999999999"; MAX_NUMBERS + 1].join(".");
        assert_eq!(check(&too_long), Err(NotAPartId::TooLong));
        let longest = ["999999999"; MAX_NUMBERS].join(".");
        assert_eq!(longest.len(), MAX_BYTES);
        assert_eq!(check(&longest), Ok(()));
    }
}
