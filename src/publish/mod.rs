//! Publishing what the store knows as files: the static mirror export's pieces. This module owns
//! the pure renderings (Atom feeds in [`atom`], the index page and the change tables in
//! [`tables`]), the per-trial cache a re-export assembles the shared files from ([`cache`]),
//! and the one writer that puts a file in place only when its bytes changed, through a
//! temporary file and a rename ([`files`]). Which trials and what their pages say come from
//! the caller (`trialwatch export`, in `cli::export`), so the pages stay exactly the CLI's.

pub mod atom;
pub mod cache;
pub mod files;
pub mod tables;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::Severity;

/// One field change as published: what feeds and the change tables show of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedChange {
    /// The record's field path (`status.overallStatus`).
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub kind: String,
    /// How much the change matters.
    pub severity: Severity,
    /// The one-line summary `trialwatch changes` prints.
    pub summary: String,
}

/// One stored version of one trial, as feeds list it: one Atom entry each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedVersion {
    /// The trial's NCT ID.
    pub nct_id: String,
    /// The trial's title at this version's time of publishing (the latest record's).
    pub title: String,
    /// The stored version number (stable: an entry's id is made from it).
    pub version: u32,
    /// When trialwatch detected it.
    pub detected_at: DateTime<Utc>,
    /// The trial's first stored snapshot (its changes are every field `added`, not listed).
    pub first: bool,
    /// From CT.gov's record history rather than observed by a sync.
    pub backfilled: bool,
    /// Its field changes (empty for a first snapshot).
    pub changes: Vec<PublishedChange>,
}

impl PublishedVersion {
    /// The highest severity among its changes (minor when it has none).
    pub fn severity(&self) -> Severity {
        self.changes
            .iter()
            .map(|c| c.severity)
            .max()
            .unwrap_or(Severity::Minor)
    }
}

/// A trial's versions (newest first) and its change rows, from `history --json`'s entries
/// (oldest first). As `trialwatch changes --include-backfill`, the first snapshot and the first
/// version observed after a backfill (`first_observed`) give no change rows.
pub fn from_history(
    nct: &str,
    title: &str,
    history: &[serde_json::Value],
    first_observed: u32,
) -> (Vec<PublishedVersion>, Vec<tables::ChangeRow>) {
    let mut versions = Vec::new();
    let mut rows = Vec::new();
    for (i, h) in history.iter().enumerate() {
        let version = h
            .get("version")
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0);
        let detected_at: DateTime<Utc> = h
            .get("detected_at")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let backfilled = h.get("backfilled").and_then(|v| v.as_bool()) == Some(true);
        let raw = h
            .get("changes")
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default();
        let first = i == 0;
        if !(first || version == first_observed) {
            for c in &raw {
                let mut row = serde_json::Map::new();
                row.insert("nct_id".into(), nct.into());
                row.insert("version".into(), version.into());
                row.insert("detected_at".into(), tables::row_time(detected_at).into());
                if let serde_json::Value::Object(m) = c {
                    row.extend(m.clone());
                }
                rows.push(serde_json::Value::Object(row));
            }
        }
        let changes = if first {
            Vec::new()
        } else {
            raw.iter()
                .filter_map(|c| serde_json::from_value(c.clone()).ok())
                .collect()
        };
        versions.push(PublishedVersion {
            nct_id: nct.to_string(),
            title: title.to_string(),
            version,
            detected_at,
            first,
            backfilled,
            changes,
        });
    }
    versions.reverse();
    (versions, rows)
}
