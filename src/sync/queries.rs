//! Running the watched queries as part of a sync: each query is searched on CT.gov (to its last
//! page, or reported too broad), its membership compared with the stored one, and the trials
//! that entered or left are stored together with the alerts they owe, in one store write per
//! query. The first run of a query is a silent baseline.
//!
//! A trial that enters is *newly registered* when CT.gov received it (`studyFirstSubmitDate`)
//! on or after the day of the query's previous run, and *newly matches* otherwise.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::ctgov::CtGovClient;
use crate::ctgov::search::{SearchHit, SearchOutcome};
use crate::model::{AlertEvent, EventKind, NctId, QuerySpec, Severity, TrialInfo};
use crate::outbox::{EnqueuePlan, Subscriptions};
use crate::store::{Member, QueryState, Store, StoreError};
use crate::util::text::error_chain;

/// What one query's run did, for `sync`'s report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QueryRun {
    /// The query.
    pub name: String,
    /// Trials matching now (unchanged when the query did not run).
    pub members: usize,
    /// Trials that entered in this run.
    pub entered: usize,
    /// Trials that left in this run.
    pub left: usize,
    /// This was the query's first run: its members were recorded without alerts.
    pub baseline: bool,
    /// Alerts enqueued for the entries and exits.
    pub alerts_enqueued: usize,
    /// Why the query did not run (too broad, CT.gov failed); the membership is as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Every query in force: the configuration's `[[query]]` entries, then the store's (`query
/// add`) whose name the configuration does not use.
pub fn all_queries(cfg: &Config, store: &Store) -> Result<Vec<QuerySpec>, StoreError> {
    let mut out = cfg.queries.declared.clone();
    for q in store.queries()? {
        if !out.iter().any(|c| c.name == q.name) {
            out.push(q);
        }
    }
    Ok(out)
}

/// The current members of the queries that watch them (`--watch`), for the sync's trial list.
pub fn watched_members(cfg: &Config, store: &Store) -> Result<Vec<NctId>, StoreError> {
    let mut out = Vec::new();
    for q in all_queries(cfg, store)?.iter().filter(|q| q.watch) {
        out.extend(
            store
                .query_members(&q.name)?
                .into_iter()
                .filter(Member::is_current)
                .map(|m| m.nct_id),
        );
    }
    Ok(out)
}

/// Run every query once, at `now`. A query that fails is reported and keeps its membership;
/// the others still run.
pub async fn run_all(
    client: &CtGovClient,
    store: &Store,
    cfg: &Config,
    subs: Arc<Subscriptions>,
    now: DateTime<Utc>,
) -> Result<Vec<QueryRun>, StoreError> {
    let queries = all_queries(cfg, store)?;
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    let plan = EnqueuePlan::new(subs, store, now)?;
    let mut out = Vec::with_capacity(queries.len());
    for q in &queries {
        let outcome = client
            .search(&q.name, &q.params(), cfg.queries.max_matches)
            .await;
        let run = match outcome {
            Ok(SearchOutcome::Complete(hits)) => {
                let store = store.clone();
                let plan = plan.clone();
                let name = q.name.clone();
                // Comparing and writing thousands of members is store work: off the async
                // threads.
                tokio::task::spawn_blocking(move || apply(&store, &plan, &name, hits, now))
                    .await
                    .map_err(|e| StoreError::Corrupt {
                        key: format!("query {}", q.name),
                        reason: format!("the membership update failed: {e}"),
                    })??
            }
            Ok(SearchOutcome::TooBroad { total }) => not_run(
                store,
                q,
                format!(
                    "query {} matches {total} trials, more than [queries] max_matches ({}); \
                     narrow it (more words, --status, --phase) or raise max_matches; its \
                     membership was not updated",
                    q.name, cfg.queries.max_matches
                ),
            )?,
            Err(e) => not_run(
                store,
                q,
                format!(
                    "query {} could not be run: {}; its membership was not updated",
                    q.name,
                    error_chain(&e)
                ),
            )?,
        };
        out.push(run);
    }
    Ok(out)
}

/// Record why a query did not run, keeping its membership.
fn not_run(store: &Store, q: &QuerySpec, problem: String) -> Result<QueryRun, StoreError> {
    tracing::warn!(query = %q.name, "{problem}");
    let mut state = store.query_state(&q.name)?;
    state.problem = Some(problem.clone());
    store.query_set_state(&q.name, &state)?;
    Ok(QueryRun {
        name: q.name.clone(),
        members: state.members,
        problem: Some(problem),
        ..QueryRun::default()
    })
}

/// Compare a complete search with the stored membership and store the difference with the
/// alerts it owes, in one batch.
fn apply(
    store: &Store,
    plan: &EnqueuePlan,
    name: &str,
    hits: Vec<SearchHit>,
    now: DateTime<Utc>,
) -> Result<QueryRun, StoreError> {
    let state = store.query_state(name)?;
    let baseline = state.last_run.is_none();
    let since_day = state.last_run.map(|t| t.format("%Y-%m-%d").to_string());
    let mut stored: HashMap<NctId, Member> = store
        .query_members(name)?
        .into_iter()
        .map(|m| (m.nct_id.clone(), m))
        .collect();
    let found: HashSet<&NctId> = hits.iter().map(|h| &h.nct_id).collect();
    let mut changed = Vec::new();
    let mut alerts = Vec::new();
    let (mut entered, mut left) = (0, 0);
    let day = now.format("%Y%m%d");
    for h in &hits {
        if stored.get(&h.nct_id).is_some_and(Member::is_current) {
            continue;
        }
        let because = match (&since_day, &h.first_submitted) {
            _ if baseline => "baseline",
            (Some(since), Some(sub)) if sub.as_str() >= since.as_str() => "newly registered",
            _ => "newly matches",
        };
        entered += 1;
        changed.push(Member {
            nct_id: h.nct_id.clone(),
            entered_at: now,
            left_at: None,
            entered_because: because.to_string(),
            title: h.title.clone(),
            status: h.status.clone(),
        });
        if !baseline {
            let reason = match because {
                "newly registered" => format!(
                    "newly registered on CT.gov (first submitted {}) and matches query {name}",
                    h.first_submitted.as_deref().unwrap_or("recently")
                ),
                _ => format!(
                    "registered earlier ({}), newly matches query {name} (its record or CT.gov's \
                     search changed)",
                    h.first_submitted.as_deref().unwrap_or("date unknown")
                ),
            };
            let event = AlertEvent {
                kind: EventKind::QueryEntered,
                query: Some(name.to_string()),
                severity: Severity::Notable,
                summary: format!("entered query {name} ({because})"),
                reason,
                trial: TrialInfo {
                    title: h.title.clone(),
                    overall_status: h.status.clone(),
                    url: h.nct_id.ctgov_url(),
                },
                phase: h.phase.clone(),
                sponsor: h.sponsor.clone(),
                key: format!("{}-{name}-{day}", EventKind::QueryEntered),
            };
            alerts.extend(plan.owed_event(&h.nct_id, &event));
        }
    }
    for m in stored.values_mut() {
        if !m.is_current() || found.contains(&m.nct_id) {
            continue;
        }
        left += 1;
        m.left_at = Some(now);
        let event = AlertEvent {
            kind: EventKind::QueryLeft,
            query: Some(name.to_string()),
            severity: Severity::Notable,
            summary: format!("left query {name}"),
            reason: format!(
                "no longer matches query {name} (in it since {}; last seen with status {})",
                m.entered_at.format("%Y-%m-%d"),
                m.status.as_deref().unwrap_or("unknown")
            ),
            trial: TrialInfo {
                title: m.title.clone(),
                overall_status: m.status.clone(),
                url: m.nct_id.ctgov_url(),
            },
            phase: None,
            sponsor: None,
            key: format!("{}-{name}-{day}", EventKind::QueryLeft),
        };
        alerts.extend(plan.owed_event(&m.nct_id, &event));
        changed.push(m.clone());
    }
    let new_state = QueryState {
        last_run: Some(now),
        members: hits.len(),
        problem: None,
    };
    store.query_commit(name, &changed, &new_state, &alerts)?;
    if entered + left > 0 {
        tracing::info!(
            query = name,
            query.entered = entered,
            query.left = left,
            query.baseline = baseline,
            alerts.enqueued = alerts.len(),
            "query membership changed"
        );
    }
    Ok(QueryRun {
        name: name.to_string(),
        members: hits.len(),
        entered,
        left,
        baseline,
        alerts_enqueued: alerts.len(),
        problem: None,
    })
}
