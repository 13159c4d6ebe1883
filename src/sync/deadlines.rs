//! Running the deadline rules ([`crate::deadlines`]) over the watched trials: [`due_now`] lists
//! what holds today (`trialwatch due`), [`evaluate_daily`] turns what changed since the last
//! evaluation into alerts, once a day (the daemon after each scheduled run, `trialwatch sync`
//! after its fetch), in one store write.
//!
//! The rules read the stored raw study of each trial's head version ([`read_raw`]), which
//! also holds `dispFirstSubmitDate` (a certification of delayed submission), not part of the
//! normalized record; so no field is added to the record and no stored trial gets a new version.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::deadlines::{Condition, Facts, Shown, conditions, day_key, read_raw, transitions};
use crate::model::{AlertEvent, NctId, TrialInfo};
use crate::outbox::{EnqueuePlan, Subscriptions};
use crate::store::{Store, StoreError};

/// The meta value holding the last day deadlines were evaluated (`YYYY-MM-DD`, UTC).
const LAST_DAY: &str = "deadlines.last_day";

/// One deadline condition of one trial, for `trialwatch due`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DueRow {
    /// The trial.
    pub nct_id: NctId,
    /// Its title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The condition.
    #[serde(flatten)]
    pub condition: Condition,
}

/// What one daily evaluation did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeadlineRun {
    /// The day evaluated.
    pub day: Option<NaiveDate>,
    /// Trials looked at.
    pub trials: usize,
    /// Events that were new today.
    pub events: usize,
    /// Alerts enqueued for them.
    pub alerts_enqueued: usize,
}

/// What [`read_raw`] said of the raw studies a sync just stored as their trials' heads, so the
/// day's evaluation that follows need not read and decompress them back from the store: on a
/// first sync that was every trial's raw JSON again, on one thread, after the sync.
#[derive(Debug, Clone, Default)]
pub struct HeadFacts(HashMap<NctId, (u32, Option<(Facts, Shown)>)>);

impl HeadFacts {
    /// Remember `read_raw(raw)` of the `raw` just stored as `version` of `nct`.
    pub fn insert(&mut self, nct: NctId, version: u32, raw: &[u8]) {
        self.0.insert(nct, (version, read_raw(raw)));
    }

    /// Add another batch's facts.
    pub fn extend(&mut self, other: HeadFacts) {
        self.0.extend(other.0);
    }

    /// How many trials' facts are known.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `read_raw` of `version` of `nct`, when that is the version remembered.
    fn get(&self, nct: &NctId, version: u32) -> Option<Option<(Facts, Shown)>> {
        self.0
            .get(nct)
            .filter(|(v, _)| *v == version)
            .map(|(_, f)| f.clone())
    }
}

/// The trials followed, each with what its alert shows and the conditions that hold `today`;
/// `known` spares reading the heads a sync just stored.
fn evaluate(
    cfg: &Config,
    store: &Store,
    today: NaiveDate,
    known: &HeadFacts,
) -> Result<Vec<(NctId, Shown, Vec<Condition>)>, StoreError> {
    let mut out = Vec::new();
    for nct in super::watched_ids(cfg, store)? {
        let Some(state) = store.trial(&nct)? else {
            continue;
        };
        if state.latest_version == 0 {
            continue;
        }
        let read = match known.get(&nct, state.head()) {
            Some(read) => read,
            None => store.raw(&nct, state.head())?.as_deref().and_then(read_raw),
        };
        let Some((facts, shown)) = read else {
            continue;
        };
        let now = conditions(&facts, today);
        out.push((nct, shown, now));
    }
    Ok(out)
}

/// Every deadline condition that holds `today` among the followed trials.
pub fn due_now(cfg: &Config, store: &Store, today: NaiveDate) -> Result<Vec<DueRow>, StoreError> {
    Ok(evaluate(cfg, store, today, &HeadFacts::default())?
        .into_iter()
        .flat_map(|(nct, shown, conds)| {
            let title = shown.title;
            conds.into_iter().map(move |condition| DueRow {
                nct_id: nct.clone(),
                title: title.clone(),
                condition,
            })
        })
        .collect())
}

/// Evaluate the deadlines once for the day of `now` (a second call the same day does nothing
/// and returns `None`), storing what is newly told and the alerts it owes in one batch.
pub fn evaluate_daily(
    cfg: &Config,
    store: &Store,
    subs: Arc<Subscriptions>,
    now: DateTime<Utc>,
) -> Result<Option<DeadlineRun>, StoreError> {
    evaluate_daily_after(cfg, store, subs, now, &HeadFacts::default())
}

/// [`evaluate_daily`] right after a sync, with what it read of the heads it stored
/// ([`super::SyncReport::head_facts`]); the same result, without reading those back.
pub fn evaluate_daily_after(
    cfg: &Config,
    store: &Store,
    subs: Arc<Subscriptions>,
    now: DateTime<Utc>,
    known: &HeadFacts,
) -> Result<Option<DeadlineRun>, StoreError> {
    let today = now.date_naive();
    if store.get_meta::<NaiveDate>(LAST_DAY)? == Some(today) {
        return Ok(None);
    }
    let plan = EnqueuePlan::new(subs, store, now)?;
    let evaluated = evaluate(cfg, store, today, known)?;
    let mut run = DeadlineRun {
        day: Some(today),
        trials: evaluated.len(),
        ..DeadlineRun::default()
    };
    let mut told_changes = Vec::new();
    let mut alerts = Vec::new();
    for (nct, shown, conds) in evaluated {
        let told = store.deadlines_told(&nct)?;
        let (events, next) = transitions(&conds, &told);
        if next != told {
            told_changes.push((nct.clone(), next));
        }
        for c in events {
            run.events += 1;
            let event = AlertEvent {
                kind: c.kind,
                query: None,
                severity: c.severity,
                summary: c.summary.clone(),
                reason: c.summary,
                trial: TrialInfo {
                    title: shown.title.clone(),
                    overall_status: shown.status.clone(),
                    url: nct.ctgov_url(),
                },
                phase: shown.phase.clone(),
                sponsor: shown.sponsor.clone(),
                key: format!("{}-{}", c.kind, day_key(c.due)),
            };
            alerts.extend(plan.owed_event(&nct, &event));
        }
    }
    run.alerts_enqueued = alerts.len();
    store.deadlines_commit(&told_changes, &alerts)?;
    store.set_meta(LAST_DAY, &today)?;
    if run.events > 0 {
        tracing::info!(
            deadlines.events = run.events,
            alerts.enqueued = run.alerts_enqueued,
            "deadline events"
        );
    }
    Ok(Some(run))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewVersion;

    const RAW: &str = include_str!("../../tests/fixtures/ctgov/NCT03418623.json");

    fn shown(out: &[(NctId, Shown, Vec<Condition>)]) -> Vec<String> {
        out.iter()
            .map(|(n, s, c)| format!("{n} {s:?} {c:?}"))
            .collect()
    }

    #[test]
    fn the_heads_a_sync_read_stand_for_the_stored_ones_only_at_their_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let nct: NctId = "NCT03418623".parse().unwrap();
        let record = crate::normalize::normalize_json(RAW).unwrap();
        let canonical = record.canonical_bytes();
        store
            .commit_version(NewVersion {
                provenance: Default::default(),
                nct: &nct,
                record: &record,
                canonical: &canonical,
                raw: RAW.as_bytes(),
                changes: vec![],
                detected_at: "2026-02-01T00:00:00Z".parse().unwrap(),
                resolved_id: None,
                source_fingerprint: None,
                alerts: vec![],
            })
            .unwrap();
        let cfg = Config::from_toml("[watch]\nnct_ids = [\"NCT03418623\"]\n", None).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
        let from_store = evaluate(&cfg, &store, today, &HeadFacts::default()).unwrap();
        assert_eq!(from_store.len(), 1);

        // What the sync read of the very bytes it stored: the same evaluation.
        let mut known = HeadFacts::default();
        known.insert(nct.clone(), 1, RAW.as_bytes());
        assert_eq!(known.len(), 1);
        let from_sync = evaluate(&cfg, &store, today, &known).unwrap();
        assert_eq!(shown(&from_sync), shown(&from_store));

        // The known facts are what is used at their version (here other bytes, to tell)...
        let retitled = RAW.replacen("\"briefTitle\": \"", "\"briefTitle\": \"RETITLED ", 1);
        let mut other = HeadFacts::default();
        other.insert(nct.clone(), 1, retitled.as_bytes());
        let used = evaluate(&cfg, &store, today, &other).unwrap();
        assert!(shown(&used)[0].contains("RETITLED"), "{:?}", shown(&used));
        // ...and ignored for any other version: the store's head is read.
        let mut stale = HeadFacts::default();
        stale.insert(nct, 2, retitled.as_bytes());
        let ignored = evaluate(&cfg, &store, today, &stale).unwrap();
        assert_eq!(shown(&ignored), shown(&from_store));
    }
}
