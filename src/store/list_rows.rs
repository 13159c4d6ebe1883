//! Each trial's line of the web view's trial list, kept in sled under `L` NCT so that the
//! first list page after a start reads 10,000 small values instead of decoding 10,000 records.
//!
//! A commit that makes a new head writes the row in the same batch ([`stage`], one line in
//! `versions.rs`): it has the head's record and changes at hand, so this costs no decode. A
//! row names the state it was made for ([`row_key`]); a reader that finds it missing (a trial
//! synced before rows existed, or whose head's changes a backfill rewrote) or made for another
//! state computes it from the store ([`Store::list_row_made`]) and may keep it
//! ([`Store::list_row_put`]). The rows are derived data: losing them loses nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::{from_json, to_json};
use super::keys::key;
use super::keys::nct_of;
use super::{Result, Store, TrialState};
use crate::model::{FieldChange, NctId, Record, Severity};

/// One trial as the list shows it: its head version's record fields and severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListRow {
    /// The [`row_key`] of the state it was made for.
    pub key: String,
    /// Brief title, else official title, else the NCT ID.
    pub title: String,
    /// `status.overallStatus` (empty when absent).
    pub status: String,
    /// `design.phases`, joined with ", ".
    pub phase: String,
    /// `sponsor.lead` (empty when absent).
    pub sponsor: String,
    /// When the head version was detected.
    pub last_change: DateTime<Utc>,
    /// The head version's highest severity; `None` for a first snapshot.
    pub severity: Option<Severity>,
}

/// What a row depends on in a trial's state: its head, its latest number (a backfill rewrites
/// the head's changes when it inserts versions before it) and the version before the head.
pub fn row_key(state: &TrialState) -> String {
    format!(
        "{}/{}/{:?}",
        state.head(),
        state.latest_version,
        state.before(state.head())
    )
}

fn joined(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// The row of `state`'s head, whose record is `rec`, detected at `at`, with `changes`.
///
/// The severity is judged without the record before: no rule of [`crate::severity::assess`]
/// lets the old record move a change's severity (it only words some summaries), which the
/// unit test below checks against the records around it.
fn row_of(state: &TrialState, rec: &Record, at: DateTime<Utc>, changes: &[FieldChange]) -> ListRow {
    let severity = state.before(state.head()).and_then(|_| {
        changes
            .iter()
            .map(|c| crate::severity::assess(c, None, rec).0)
            .max()
    });
    ListRow {
        key: row_key(state),
        title: rec
            .title()
            .or_else(|| rec.text("identification.officialTitle"))
            .unwrap_or(state.nct_id.as_str())
            .to_string(),
        status: rec.overall_status().unwrap_or_default().to_string(),
        phase: joined(rec.get("design.phases")),
        sponsor: rec.text("sponsor.lead").unwrap_or_default().to_string(),
        last_change: at,
        severity,
    }
}

/// Put the head's row in a commit's batch, when `version` (whose record and changes are
/// given) is `state`'s head; a version put elsewhere in the timeline leaves the stored row
/// to be found stale and made again.
pub(super) fn stage(
    batch: &mut sled::Batch,
    state: &TrialState,
    version: u32,
    at: DateTime<Utc>,
    changes: &[FieldChange],
    rec: &Record,
) {
    if state.head() == version {
        batch.insert(
            key(b'L', &state.nct_id),
            to_json(&row_of(state, rec, at, changes)),
        );
    }
}

impl Store {
    /// Whether commits keep list rows: only once the web view has made some (any `L` key),
    /// so a store that is never served pays nothing for them (they were ~0.7 KB of sled per
    /// trial, 2 points of the store's share of the raw JSON on the sync benchmark). One sled
    /// lookup per staged version.
    pub(super) fn keeps_list_rows(&self) -> bool {
        self.db()
            .is_ok_and(|db| matches!(db.scan_prefix(b"L").next(), Some(Ok(_))))
    }

    /// The stored list row of `nct`, if any (it may be stale: compare its `key` with
    /// [`row_key`] of the trial's state).
    pub fn list_row(&self, nct: &NctId) -> Result<Option<ListRow>> {
        let k = key(b'L', nct);
        match self.db()?.get(&k)? {
            Some(v) => Ok(from_json(&k, &v).ok()),
            None => Ok(None),
        }
    }

    /// Every stored list row, by trial (one prefix scan; rows that do not parse are left out,
    /// to be made again).
    pub fn list_rows(&self) -> Result<std::collections::HashMap<NctId, ListRow>> {
        let mut out = std::collections::HashMap::new();
        for kv in self.db()?.scan_prefix(b"L") {
            let (k, v) = kv?;
            let Some(nct) = nct_of(&k) else {
                continue;
            };
            if let Ok(row) = from_json::<ListRow>(&k, &v) {
                out.insert(nct, row);
            }
        }
        Ok(out)
    }

    /// The list row of `state`'s head, made from the store (its record and metadata).
    pub fn list_row_made(&self, state: &TrialState) -> Result<Option<ListRow>> {
        let id = &state.nct_id;
        let head = state.head();
        let Some(rec) = self.record(id, head)? else {
            return Ok(None);
        };
        let meta = self.version(id, head)?;
        let (at, changes) = match &meta {
            Some(m) => (m.detected_at, m.changes.as_slice()),
            None => (state.first_seen_at, &[][..]),
        };
        let mut row = row_of(state, &rec, at, changes);
        if meta.is_none() {
            row.severity = None;
        }
        Ok(Some(row))
    }

    /// Keep `row` as `nct`'s list row.
    pub fn list_row_put(&self, nct: &NctId, row: &ListRow) -> Result<()> {
        self.writing()?.insert(key(b'L', nct), to_json(row))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    use crate::model::{NctId, Record};
    use crate::store::{NewVersion, Store};

    fn commit(store: &Store, nct: &NctId, rec: &Record, prev: Option<&Record>, day: i64) {
        let canonical = rec.canonical_bytes();
        store
            .commit_version(NewVersion {
                provenance: Default::default(),
                nct,
                record: rec,
                canonical: &canonical,
                raw: b"{}",
                changes: crate::diff::diff(prev, rec),
                detected_at: Utc.timestamp_opt(1_700_000_000 + day * 86_400, 0).unwrap(),
                resolved_id: None,
                source_fingerprint: None,
                alerts: vec![],
            })
            .unwrap();
    }

    #[test]
    fn a_commit_writes_the_row_the_store_would_make_and_severity_ignores_the_old_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let nct: NctId = "NCT00000102".parse().unwrap();
        let mut a = Record::default();
        a.set("identification.briefTitle", json!("A trial"));
        a.set("status.overallStatus", json!("RECRUITING"));
        a.set("design.phases", json!(["PHASE2", "PHASE3"]));
        a.set("sponsor.lead", json!("Acme"));
        // A store the web view never listed keeps no rows.
        let other: NctId = "NCT00000104".parse().unwrap();
        commit(&store, &other, &a, None, 1);
        assert!(
            store.list_rows().unwrap().is_empty(),
            "rows before any list"
        );
        // Once the list has made a row, every commit keeps its trial's row.
        let st = store.trial(&other).unwrap().unwrap();
        let made = store.list_row_made(&st).unwrap().unwrap();
        store.list_row_put(&other, &made).unwrap();
        commit(&store, &nct, &a, None, 1);
        let st = store.trial(&nct).unwrap().unwrap();
        let row = store.list_row(&nct).unwrap().unwrap();
        assert_eq!(Some(&row), store.list_row_made(&st).unwrap().as_ref());
        assert_eq!(row.severity, None, "a first snapshot has none");
        assert_eq!(row.phase, "PHASE2, PHASE3");

        let mut b = a.clone();
        b.set("status.overallStatus", json!("TERMINATED"));
        b.set("status.whyStopped", json!("Low accrual"));
        b.set("design.enrollmentCount", json!(12));
        commit(&store, &nct, &b, Some(&a), 2);
        let st = store.trial(&nct).unwrap().unwrap();
        let row = store.list_row(&nct).unwrap().unwrap();
        assert_eq!(row.key, super::row_key(&st));
        assert_eq!(Some(&row), store.list_row_made(&st).unwrap().as_ref());
        assert_eq!(row.status, "TERMINATED");
        assert_eq!(row.severity, Some(crate::model::Severity::Critical));
        // Judged with the record before, every change has the same severity.
        for c in store.version(&nct, 2).unwrap().unwrap().changes {
            assert_eq!(
                crate::severity::assess(&c, Some(&a), &b).0,
                crate::severity::assess(&c, None, &b).0,
                "{}",
                c.path
            );
        }
        assert_eq!(store.list_rows().unwrap().len(), 2);
    }
}
