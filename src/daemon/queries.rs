//! The daemon's side of query watches and deadlines: a scheduled sync that fetches runs every
//! watched query first, and the trials a `--watch` query newly brought in (never synced yet)
//! join the sync's trial list; after each scheduled run the deadlines are evaluated (once a
//! day). What a query run and an evaluation do is [`crate::sync::queries`]' and
//! [`crate::sync::deadlines`]'.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::ctgov::CtGovClient;
use crate::model::NctId;
use crate::store::Store;

/// Run the queries at `now` and return `ids` plus the watched members not stored yet. A query
/// that fails is logged (by the run) and keeps its membership; only a store failure fails.
pub(super) async fn run_queries(
    client: &CtGovClient,
    cfg: &Config,
    store: &Store,
    now: DateTime<Utc>,
    mut ids: Vec<NctId>,
) -> anyhow::Result<Vec<NctId>> {
    let queries = crate::sync::queries::all_queries(cfg, store)?;
    if queries.is_empty() {
        return Ok(ids);
    }
    let subs = Arc::new(crate::outbox::Subscriptions::load(cfg, store)?);
    let runs = crate::sync::queries::run_all(client, store, cfg, subs, now).await?;
    for r in &runs {
        tracing::info!(
            query = %r.name,
            query.members = r.members,
            query.entered = r.entered,
            query.left = r.left,
            query.baseline = r.baseline,
            "query run"
        );
    }
    let mut seen: std::collections::HashSet<NctId> = ids.iter().cloned().collect();
    for id in crate::sync::queries::watched_members(cfg, store)? {
        if !seen.contains(&id) && store.trial(&id)?.is_none() {
            seen.insert(id.clone());
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The day's deadline evaluation (a no-op when it already ran today); a failure is logged and
/// the next run tries again.
/// `known`: what the run's sync read of the heads it stored.
pub(super) fn evaluate_deadlines(
    cfg: &Config,
    store: &Store,
    now: DateTime<Utc>,
    known: &crate::sync::deadlines::HeadFacts,
) {
    let result = crate::outbox::Subscriptions::load(cfg, store).and_then(|subs| {
        crate::sync::deadlines::evaluate_daily_after(cfg, store, Arc::new(subs), now, known)
    });
    match result {
        Ok(Some(run)) => tracing::info!(
            deadlines.trials = run.trials,
            deadlines.events = run.events,
            alerts.enqueued = run.alerts_enqueued,
            "deadlines evaluated"
        ),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot evaluate the deadlines; the next run tries again")
        }
    }
}
