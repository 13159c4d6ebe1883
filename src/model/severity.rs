//! How much a change matters: the ordered severity levels. The rules that assign them are in
//! `crate::severity`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How much a change matters to someone following a trial. Ordered: `Minor < Notable <
/// Critical`, so "at least notable" is `>= Severity::Notable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Anything not listed as notable or critical: worth recording, rarely worth acting on.
    Minor,
    /// Worth a look: e.g. a status change, results posted, a site added or removed, enrolment
    /// or dates moved a lot.
    Notable,
    /// The trial stopped early or its primary outcomes changed: act now.
    Critical,
}

impl Severity {
    /// Every severity, least severe first.
    pub const ALL: [Severity; 3] = [Severity::Minor, Severity::Notable, Severity::Critical];

    /// The lowercase name used in configuration, `--min-severity`, JSON and alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Minor => "minor",
            Severity::Notable => "notable",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a severity; the message lists the accepted names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a severity: expected one of minor, notable, critical")]
pub struct BadSeverity {
    /// The rejected input, kept verbatim so the user can find it in their file.
    pub input: String,
}

impl FromStr for Severity {
    type Err = BadSeverity;

    /// Accepts the names in any case, with surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| BadSeverity {
                input: s.to_string(),
            })
    }
}
