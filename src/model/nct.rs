//! The trial identifier: `NCT` and exactly 8 digits, parsed once at the edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A ClinicalTrials.gov study identifier in canonical form: `NCT` and exactly 8 digits.
///
/// Parsing accepts any case and surrounding spaces but insists on all 8 digits: CT.gov 2.0.5
/// lets leading zeros be dropped, but in a watch list `NCT123` is far more likely a typo that
/// would silently watch the wrong trial than a deliberate short form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NctId(String);

/// Why a string is not an NCT ID; the message says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not an NCT ID: expected `NCT` followed by 8 digits, e.g. NCT02241018")]
pub struct BadNctId {
    /// The rejected input, kept verbatim so the user can find it in their file.
    pub input: String,
}

impl NctId {
    /// The ID as text (`NCT02241018`), for display, URLs and the CT.gov API.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The numeric part, used for compact keys and ordering.
    pub fn number(&self) -> u32 {
        // Invariant of construction: 8 ASCII digits follow "NCT".
        self.0[3..].parse().unwrap_or(0)
    }

    /// The study's public page on CT.gov.
    pub fn ctgov_url(&self) -> String {
        format!("https://clinicaltrials.gov/study/{}", self.0)
    }
}

impl FromStr for NctId {
    type Err = BadNctId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadNctId {
            input: s.to_string(),
        };
        let t = s.trim();
        if t.len() < 4 || !t.is_char_boundary(3) || !t[..3].eq_ignore_ascii_case("nct") {
            return Err(bad());
        }
        let digits = &t[3..];
        if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u32 = digits.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        Ok(NctId(format!("NCT{n:08}")))
    }
}

impl TryFrom<String> for NctId {
    type Error = BadNctId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<NctId> for String {
    fn from(id: NctId) -> String {
        id.0
    }
}

impl fmt::Display for NctId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nct_ids_are_canonicalized() {
        assert_eq!(
            "NCT02985775".parse::<NctId>().unwrap().as_str(),
            "NCT02985775"
        );
        assert_eq!(
            "nct02985775".parse::<NctId>().unwrap().as_str(),
            "NCT02985775"
        );
        assert_eq!(
            " NCT00000001 ".parse::<NctId>().unwrap().as_str(),
            "NCT00000001"
        );
    }

    #[test]
    fn malformed_nct_ids_are_rejected_with_a_hint() {
        for bad in [
            "",
            "NCT",
            "NCT0",
            "NCT123",
            "nct2985775",
            "NCT00000000",
            "NCT123456789",
            "XYZ02985775",
            "NCT0298577a",
            "12345678",
            "NCT-1234",
            "ÑCT1234",
        ] {
            let err = bad.parse::<NctId>().unwrap_err();
            assert!(
                err.to_string()
                    .contains("expected `NCT` followed by 8 digits"),
                "{bad}"
            );
        }
    }
}
