//! The normalized record, its field changes, a stored version's bookkeeping and watched-field
//! patterns. The record's shape is documented in `docs/record.md`; `crate::schema` holds the
//! ordered table of its field paths.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The normalized trial record: sections of keys, in the canonical order of `schema::SECTIONS`
/// (locations sorted by key). Absent or empty values are left out entirely.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Record(pub Map<String, Value>);

impl Record {
    /// The value at a field path `section.key`, if present.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let (section, key) = path.split_once('.')?;
        self.0.get(section)?.as_object()?.get(key)
    }

    /// Text at a field path, if it is a JSON string.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.get(path)?.as_str()
    }

    /// Every present field as `(path, value)`, in canonical order.
    pub fn fields(&self) -> impl Iterator<Item = (String, &Value)> {
        self.0.iter().flat_map(|(section, keys)| {
            keys.as_object()
                .into_iter()
                .flat_map(move |m| m.iter().map(move |(k, v)| (format!("{section}.{k}"), v)))
        })
    }

    /// Set a value at `section.key`, creating the section; used by tests and by diff application.
    pub fn set(&mut self, path: &str, value: Value) {
        if let Some((section, key)) = path.split_once('.') {
            let entry = self
                .0
                .entry(section.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                m.insert(key.to_string(), value);
            }
        }
    }

    /// Remove the value at `section.key`, dropping the section when it becomes empty.
    pub fn remove(&mut self, path: &str) -> Option<Value> {
        let (section, key) = path.split_once('.')?;
        let m = self.0.get_mut(section)?.as_object_mut()?;
        let old = m.shift_remove(key);
        if m.is_empty() {
            self.0.shift_remove(section);
        }
        old
    }

    /// The trial's NCT ID as CT.gov wrote it, for keying and messages.
    pub fn nct_id(&self) -> Option<&str> {
        self.text("identification.nctId")
    }

    /// The brief title, so people recognise the trial without its ID.
    pub fn title(&self) -> Option<&str> {
        self.text("identification.briefTitle")
    }

    /// The recruitment status (`RECRUITING`, `COMPLETED`, …), the field most users follow.
    pub fn overall_status(&self) -> Option<&str> {
        self.text("status.overallStatus")
    }

    /// When CT.gov last posted an update, so a version can be matched to the website's history.
    pub fn last_update_post_date(&self) -> Option<&str> {
        self.text("status.lastUpdatePostDate")
    }

    /// The canonical serialization: byte-identical for an unchanged study.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serializing a Map of Values cannot fail.
        serde_json::to_vec(&self.0).unwrap_or_default()
    }
}

/// What happened to one field path between two records (docs/record.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The path is new: `new` holds its value.
    Added,
    /// The path is gone: `old` holds its last value.
    Removed,
    /// The path holds a different value: both `old` and `new` are set.
    Changed,
}

impl ChangeKind {
    /// The lowercase name used in JSON output and on the terminal.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One changed value at one field path. `old` is absent for `added`, `new` for `removed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field path (`section.key`) that changed, as listed by `trialwatch fields`.
    pub path: String,
    /// Whether the value appeared, disappeared or changed; decides which of `old`/`new` is set.
    pub kind: ChangeKind,
    /// The value before the change, for the reader to compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// The value after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// The bookkeeping of one stored version of one trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// 1, 2, 3… per trial, without gaps.
    pub version: u32,
    /// When trialwatch first saw this version (the sync's clock), not when CT.gov posted it.
    pub detected_at: DateTime<Utc>,
    /// CT.gov's `lastUpdatePostDate` of this version, so a user can match it to the website.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_post_date: Option<String>,
    /// Field changes against the version before it in the trial's timeline (for the first:
    /// every path `added`).
    pub changes: Vec<FieldChange>,
    /// Where the version came from: a sync, or CT.gov's record history.
    #[serde(flatten)]
    pub provenance: Provenance,
}

/// Where a stored version came from, and how it relates to CT.gov's own version numbers
/// (`docs/ctgov-api.md` §9). Stored with each version; every field defaults to "observed by a
/// sync, CT.gov version unknown", which is what every version of an older store is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// `observed` (a sync fetched it from API v2) or `ctgov` (fetched from CT.gov's record
    /// history: a backfill, or a gap repair after the daemon missed versions).
    #[serde(default, skip_serializing_if = "Source::is_observed")]
    pub source: Source,
    /// CT.gov's version number (from 0), when CT.gov's history index names this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctgov_version: Option<u32>,
    /// The day CT.gov posted this version, from the history index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctgov_posted: Option<NaiveDate>,
    /// History, not news: a version from before trialwatch watched the trial. It never alerts
    /// and `changes` leaves it out unless asked (`--include-backfill`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backfilled: bool,
}

/// Which source a version was fetched from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Fetched by a sync from API v2; `detected_at` is when.
    #[default]
    Observed,
    /// Fetched from CT.gov's record history (`/api/int/studies/{nct}/history/{v}`).
    Ctgov,
}

impl Source {
    /// The name used in JSON and in `history`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Observed => "observed",
            Source::Ctgov => "ctgov",
        }
    }

    fn is_observed(&self) -> bool {
        *self == Source::Observed
    }
}

/// A field-path pattern where `*` matches any run of characters (`locations.*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldPattern(String);

impl FieldPattern {
    /// A pattern as written in the configuration or on the command line; `*` is the only wildcard.
    pub fn new(pattern: impl Into<String>) -> Self {
        FieldPattern(pattern.into())
    }

    /// The pattern as written, for messages and for a subscription's stable ID.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `path` is covered by this pattern (`*` matches any run of characters, dots included).
    pub fn matches(&self, path: &str) -> bool {
        glob_match(self.0.as_bytes(), path.as_bytes())
    }
}

impl fmt::Display for FieldPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Iterative `*`-only glob match with backtracking to the last star; linear in practice.
fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if p < pat.len() && pat[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// The ordered list of watched-field patterns (docs/record.md §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFields(pub Vec<FieldPattern>);

/// The mirror's own list, in the mirror's order: the default for a fresh install.
pub const DEFAULT_WATCHED_FIELDS: &[&str] = &[
    "status.completionDate",
    "status.overallStatus",
    "status.primaryCompletionDate",
    "status.lastUpdatePostDate",
    "design.phases",
    "design.enrollmentCount",
    "eligibility.criteria",
    "eligibility.minAge",
    "eligibility.maxAge",
    "eligibility.sex",
    "outcomes.primary",
    "outcomes.secondary",
    "armsInterventions.arms",
    "armsInterventions.interventions",
    "sponsor.lead",
    "results.hasResults",
    "locations.*",
];

impl Default for WatchedFields {
    fn default() -> Self {
        WatchedFields(
            DEFAULT_WATCHED_FIELDS
                .iter()
                .map(|p| FieldPattern::new(*p))
                .collect(),
        )
    }
}

impl WatchedFields {
    /// The index of the first pattern matching `path`, or `None` when the path is not watched.
    /// Sorting by `(rank, path)` gives the page's order (locations by key).
    pub fn rank(&self, path: &str) -> Option<usize> {
        self.0.iter().position(|p| p.matches(path))
    }

    /// Whether a change at `path` belongs on the mirror page and in default alerts.
    pub fn is_watched(&self, path: &str) -> bool {
        self.rank(path).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns_match_like_the_mirror() {
        let p = FieldPattern::new("locations.*");
        assert!(p.matches("locations.a|b||c"));
        assert!(!p.matches("status.overallStatus"));
        assert!(FieldPattern::new("status.*Date").matches("status.completionDate"));
        assert!(!FieldPattern::new("status.*Date").matches("status.completionDateType"));
        assert!(FieldPattern::new("*").matches("anything.at_all"));
        assert!(FieldPattern::new("status.overallStatus").matches("status.overallStatus"));
    }

    #[test]
    fn watched_rank_follows_list_order() {
        let w = WatchedFields::default();
        assert_eq!(w.rank("status.completionDate"), Some(0));
        assert_eq!(w.rank("locations.x|y||z"), Some(16));
        assert_eq!(w.rank("identification.briefTitle"), None);
    }

    #[test]
    fn record_paths_round_trip() {
        let mut r = Record::default();
        r.set("status.overallStatus", Value::from("RECRUITING"));
        assert_eq!(r.overall_status(), Some("RECRUITING"));
        assert_eq!(r.fields().count(), 1);
        assert_eq!(
            r.remove("status.overallStatus"),
            Some(Value::from("RECRUITING"))
        );
        assert!(r.0.is_empty());
    }
}
