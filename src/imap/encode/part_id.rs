//! Body part ids as FETCH `BODY[...]` takes them.

use std::fmt;

use super::InvalidArgument;
use crate::mail::part_id::{self, NotAPartId};

/// How errors name the value they refuse.
const PART_ID: &str = "part id";

/// A body part number as FETCH `BODY[...]` takes it (RFC 3501 `section-part`): one or more
/// non-zero numbers joined by dots, such as `1` or `2.1.3`.
///
/// Not in the original interface of this module: the message operations address body parts
/// by id, and a part id may come from a caller, so it needs the same validation as every
/// other caller value before [`Command::section`] puts it on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartId(String);

impl PartId {
    /// Validates a part id by the grammar of [`crate::mail::part_id`]: each number is
    /// written without leading zeros and has at most nine digits, so every part has exactly
    /// one spelling; there are at most [`part_id::MAX_NUMBERS`] numbers, so every part the
    /// MIME walk lists has an id this accepts, and the whole id is at most
    /// [`part_id::MAX_BYTES`] (319) bytes.
    pub fn parse(s: &str) -> Result<Self, InvalidArgument> {
        match part_id::check(s) {
            Ok(()) => Ok(Self(s.to_owned())),
            Err(NotAPartId::Empty) => Err(InvalidArgument::Empty { what: PART_ID }),
            Err(NotAPartId::TooLong) => Err(InvalidArgument::TooLong {
                what: PART_ID,
                max: part_id::MAX_BYTES,
            }),
            Err(NotAPartId::Malformed) => Err(InvalidArgument::InvalidPartId),
            Err(NotAPartId::TooDeep) => Err(InvalidArgument::PartIdTooDeep {
                max: part_id::MAX_NUMBERS,
            }),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::encode::*;

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
}
