//! Running the deadline rules ([`crate::deadlines`]) over the watched trials: [`due_now`] lists
//! what holds today (`trialwatch due`), [`evaluate_daily`] turns what changed since the last
//! evaluation into alerts, once a day (the daemon after each scheduled run, `trialwatch sync`
//! after its fetch), in one store write.
//!
//! The rules read the stored record; only `dispFirstSubmitDate` (a certification of delayed
//! submission, not part of the record) is read from the stored raw study, and only for the
//! trials the results rule applies to.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::deadlines::{Condition, Facts, conditions, day_key, transitions};
use crate::model::{AlertEvent, NctId, Record, TrialInfo};
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

/// Whether the stored raw study of the trial's head version carries `dispFirstSubmitDate`.
fn delay_certified(store: &Store, nct: &NctId, head: u32) -> Result<bool, StoreError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Raw {
        #[serde(rename = "protocolSection")]
        p: P,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct P {
        #[serde(rename = "statusModule")]
        s: S,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct S {
        #[serde(rename = "dispFirstSubmitDate")]
        disp: Option<String>,
    }
    Ok(store
        .raw(nct, head)?
        .and_then(|b| serde_json::from_slice::<Raw>(&b).ok())
        .is_some_and(|r| r.p.s.disp.is_some_and(|d| !d.trim().is_empty())))
}

/// The trials followed, each with its latest record and the conditions that hold `today`.
fn evaluate(
    cfg: &Config,
    store: &Store,
    today: NaiveDate,
) -> Result<Vec<(NctId, Record, Vec<Condition>)>, StoreError> {
    let mut out = Vec::new();
    for nct in super::watched_ids(cfg, store)? {
        let Some(state) = store.trial(&nct)? else {
            continue;
        };
        if state.latest_version == 0 {
            continue;
        }
        let Some(record) = store.record(&nct, state.head())? else {
            continue;
        };
        let mut facts = Facts::of(&record, false);
        if facts.results_rule_applies() {
            facts.delay_certified = delay_certified(store, &nct, state.head())?;
        }
        let now = conditions(&facts, today);
        out.push((nct, record, now));
    }
    Ok(out)
}

/// Every deadline condition that holds `today` among the followed trials.
pub fn due_now(cfg: &Config, store: &Store, today: NaiveDate) -> Result<Vec<DueRow>, StoreError> {
    Ok(evaluate(cfg, store, today)?
        .into_iter()
        .flat_map(|(nct, record, conds)| {
            let title = record.title().map(str::to_string);
            conds.into_iter().map(move |condition| DueRow {
                nct_id: nct.clone(),
                title: title.clone(),
                condition,
            })
        })
        .collect())
}

fn joined(record: &Record, path: &str) -> Option<String> {
    match record.get(path)? {
        serde_json::Value::Array(a) => {
            let parts: Vec<&str> = a.iter().filter_map(|v| v.as_str()).collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        }
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("name").and_then(|v| v.as_str()).map(str::to_string),
        _ => None,
    }
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
    for (nct, record, conds) in evaluated {
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
                    title: record.title().map(str::to_string),
                    overall_status: record.overall_status().map(str::to_string),
                    url: nct.ctgov_url(),
                },
                phase: joined(&record, "design.phases"),
                sponsor: joined(&record, "sponsor.lead"),
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
