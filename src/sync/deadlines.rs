//! Running the deadline rules ([`crate::deadlines`]) over the watched trials: [`due_now`] lists
//! what holds today (`trialwatch due`), [`evaluate_daily`] turns what changed since the last
//! evaluation into alerts, once a day (the daemon after each scheduled run, `trialwatch sync`
//! after its fetch), in one store write.
//!
//! The rules read the stored raw study of each trial's head version ([`read_raw`]), which
//! also holds `dispFirstSubmitDate` (a certification of delayed submission), not part of the
//! normalized record; so no field is added to the record and no stored trial gets a new version.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::deadlines::{Condition, Shown, conditions, day_key, read_raw, transitions};
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

/// Trials evaluated and committed together by [`evaluate_daily`]: its memory stays that of one
/// chunk whatever the watch list's size (at 100,000 trials one batch of every change and alert
/// held ~230 MB at once).
const TRIALS_PER_COMMIT: usize = 1_000;

/// One followed trial with what its alert shows and the conditions that hold `today`.
type Evaluated = (NctId, Shown, Vec<Condition>);

/// [`Evaluated`] for `nct`, or `None` when the store holds no version of it (or its raw study
/// does not read).
fn evaluate_one(
    store: &Store,
    nct: NctId,
    today: NaiveDate,
) -> Result<Option<Evaluated>, StoreError> {
    let Some(state) = store.trial(&nct)? else {
        return Ok(None);
    };
    if state.latest_version == 0 {
        return Ok(None);
    }
    let Some((facts, shown)) = store.raw(&nct, state.head())?.as_deref().and_then(read_raw) else {
        return Ok(None);
    };
    let now = conditions(&facts, today);
    Ok(Some((nct, shown, now)))
}

/// The trials followed, each with what its alert shows and the conditions that hold `today`.
fn evaluate(cfg: &Config, store: &Store, today: NaiveDate) -> Result<Vec<Evaluated>, StoreError> {
    let mut out = Vec::new();
    for nct in super::watched_ids(cfg, store)? {
        out.extend(evaluate_one(store, nct, today)?);
    }
    Ok(out)
}

/// Every deadline condition that holds `today` among the followed trials.
pub fn due_now(cfg: &Config, store: &Store, today: NaiveDate) -> Result<Vec<DueRow>, StoreError> {
    Ok(evaluate(cfg, store, today)?
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
/// and returns `None`), storing what is newly told together with the alerts it owes, one
/// atomic batch per [`TRIALS_PER_COMMIT`] trials. The day is marked done after the last batch:
/// an evaluation cut short runs again, and finds told what its committed batches told, so
/// nothing goes out twice.
pub fn evaluate_daily(
    cfg: &Config,
    store: &Store,
    subs: Arc<Subscriptions>,
    now: DateTime<Utc>,
) -> Result<Option<DeadlineRun>, StoreError> {
    let today = now.date_naive();
    if store.get_meta::<NaiveDate>(LAST_DAY)? == Some(today) {
        return Ok(None);
    }
    let run = evaluate_in_chunks(cfg, store, subs, now, TRIALS_PER_COMMIT, usize::MAX)?;
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

/// [`evaluate_daily`]'s work without the once-a-day check: `chunk` trials per batch, at most
/// `max_chunks` of them (the tests cut an evaluation short this way).
fn evaluate_in_chunks(
    cfg: &Config,
    store: &Store,
    subs: Arc<Subscriptions>,
    now: DateTime<Utc>,
    chunk: usize,
    max_chunks: usize,
) -> Result<DeadlineRun, StoreError> {
    let today = now.date_naive();
    let plan = EnqueuePlan::new(subs, store, now)?;
    let mut run = DeadlineRun {
        day: Some(today),
        ..DeadlineRun::default()
    };
    let ids = super::watched_ids(cfg, store)?;
    for chunk in ids.chunks(chunk.max(1)).take(max_chunks) {
        let mut evaluated = Vec::with_capacity(chunk.len());
        for nct in chunk {
            evaluated.extend(evaluate_one(store, nct.clone(), today)?);
        }
        run.trials += evaluated.len();
        commit_chunk(store, &plan, evaluated, &mut run)?;
    }
    Ok(run)
}

/// The new events of one chunk of evaluated trials, stored in one atomic batch with what is
/// told after them; `run` counts them.
fn commit_chunk(
    store: &Store,
    plan: &EnqueuePlan,
    evaluated: Vec<Evaluated>,
    run: &mut DeadlineRun,
) -> Result<(), StoreError> {
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
    run.alerts_enqueued += alerts.len();
    if told_changes.is_empty() && alerts.is_empty() {
        return Ok(());
    }
    store.deadlines_commit(&told_changes, &alerts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewVersion;

    const FIXTURES: [&str; 3] = [
        include_str!("../../tests/fixtures/ctgov/NCT03418623.json"),
        include_str!("../../tests/fixtures/ctgov/NCT04207047.json"),
        include_str!("../../tests/fixtures/ctgov/NCT06171568.json"),
    ];

    fn store_with_fixtures(dir: &std::path::Path, now: DateTime<Utc>) -> Store {
        let store = Store::open(dir).unwrap();
        for raw in FIXTURES {
            let record = crate::normalize::normalize_json(raw).unwrap();
            let nct: NctId = record.nct_id().unwrap().parse().unwrap();
            let canonical = record.canonical_bytes();
            store
                .commit_version(NewVersion {
                    provenance: Default::default(),
                    nct: &nct,
                    record: &record,
                    canonical: &canonical,
                    raw: raw.as_bytes(),
                    changes: Vec::new(),
                    detected_at: now,
                    resolved_id: None,
                    source_fingerprint: None,
                    alerts: vec![],
                })
                .unwrap();
            store.watch_add(&nct, now).unwrap();
        }
        store
    }

    #[test]
    fn an_evaluation_in_chunks_cut_short_resumes_without_telling_anything_twice() {
        let now: DateTime<Utc> = "2026-12-01T06:00:00Z".parse().unwrap();
        let cfg = Config::from_toml("", None).unwrap();
        let subs: Arc<Subscriptions> = Arc::new(Default::default());
        let whole = {
            let dir = tempfile::tempdir().unwrap();
            let store = store_with_fixtures(dir.path(), now);
            evaluate_in_chunks(&cfg, &store, subs.clone(), now, 1_000, usize::MAX).unwrap()
        };
        assert_eq!(whole.trials, 3);
        assert!(whole.events >= 2, "{whole:?}");
        // One trial per batch, stopped after the first: the rest is told by the next run, and
        // what the first batch told is not told again.
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_fixtures(dir.path(), now);
        let first = evaluate_in_chunks(&cfg, &store, subs.clone(), now, 1, 1).unwrap();
        assert_eq!(first.trials, 1);
        let rest = evaluate_in_chunks(&cfg, &store, subs.clone(), now, 1, usize::MAX).unwrap();
        assert_eq!(rest.trials, 3);
        assert_eq!(first.events + rest.events, whole.events);
        let again = evaluate_in_chunks(&cfg, &store, subs, now, 1, usize::MAX).unwrap();
        assert_eq!(again.events, 0);
    }
}
