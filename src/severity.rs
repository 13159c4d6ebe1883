//! Placeholder for the severity of a field change, so the delivery layer compiles on its own
//! branch. The real module (with the rules that assign a severity to a change) replaces this
//! file at merge; only the enum, its serde form, `Display` and `FromStr` are relied upon here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How much a change matters to a subscriber; ordered so that `max()` is the most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Minor,
    Notable,
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Minor => "minor",
            Severity::Notable => "notable",
            Severity::Critical => "critical",
        })
    }
}

/// Why a string is not a severity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a severity: expected minor, notable or critical")]
pub struct BadSeverity(pub String);

impl FromStr for Severity {
    type Err = BadSeverity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "minor" => Ok(Severity::Minor),
            "notable" => Ok(Severity::Notable),
            "critical" => Ok(Severity::Critical),
            _ => Err(BadSeverity(s.to_string())),
        }
    }
}

/// Placeholder with the agreed signature until the diff branch's rules replace this file:
/// status changes are notable (critical when the trial stopped), everything else minor.
pub fn assess(
    change: &crate::model::FieldChange,
    _old: Option<&crate::model::Record>,
    _new: &crate::model::Record,
) -> (Severity, String) {
    let brief = |v: &Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "∅".to_string(),
    };
    let summary = format!(
        "{} {} → {}",
        change.path,
        brief(&change.old),
        brief(&change.new)
    );
    let sev = match change.path.as_str() {
        "status.overallStatus" => match change.new.as_ref().and_then(|v| v.as_str()) {
            Some("TERMINATED" | "SUSPENDED" | "WITHDRAWN") => Severity::Critical,
            _ => Severity::Notable,
        },
        "outcomes.primary" => Severity::Critical,
        _ => Severity::Minor,
    };
    (sev, summary)
}
