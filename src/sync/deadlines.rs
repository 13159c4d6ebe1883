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

/// The trials followed, each with what its alert shows and the conditions that hold `today`.
fn evaluate(
    cfg: &Config,
    store: &Store,
    today: NaiveDate,
) -> Result<Vec<(NctId, Shown, Vec<Condition>)>, StoreError> {
    let mut out = Vec::new();
    for nct in super::watched_ids(cfg, store)? {
        let Some(state) = store.trial(&nct)? else {
            continue;
        };
        if state.latest_version == 0 {
            continue;
        }
        let Some((facts, shown)) = store.raw(&nct, state.head())?.as_deref().and_then(read_raw)
        else {
            continue;
        };
        let now = conditions(&facts, today);
        out.push((nct, shown, now));
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
/// and returns `None`), storing what is newly told and the alerts it owes in one batch.
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
    let plan = EnqueuePlan::new(subs, store, now)?;
    let evaluated = evaluate(cfg, store, today)?;
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
