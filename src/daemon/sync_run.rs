//! One scheduled sync run: wait for the sync lock, ask CT.gov's `/version`, [`plan`], fetch
//! (on its own thread and runtime, so that on shutdown the fetch can be dropped while the
//! store write in progress finishes), record the outcome in the bookkeeping, then offer the
//! outbox a delivery pass.
//!
//! Not here: when runs start ([`super::scheduler`]), what a sync does
//! ([`crate::sync`]), what to fetch ([`super::plan`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::delivery::deliver_outbox;
use super::health::HealthChange;
use super::plan::{Plan, SyncKind, plan};
use super::state::{DaemonState, Shared};
use crate::config::Config;
use crate::store::Store;
use crate::sync::SyncReport;

/// CT.gov calls the scheduler needs beyond `sync::run`.
mod ctgov_calls {
    use crate::ctgov::client::CtGovClient;

    /// `GET /api/v2/version` → `dataTimestamp`.
    pub(super) async fn data_timestamp(client: &CtGovClient) -> anyhow::Result<String> {
        Ok(client.data_timestamp().await?)
    }
}

/// Start one scheduled run as a task tracked in [`super::tasks::Work::syncs`]: it waits for
/// the sync lock, runs on the sync thread, records the outcome and, unless shutdown began,
/// starts the delivery of what the new versions owe (before it leaves the tracker, so that a
/// due re-exec waits for that delivery too).
pub(super) fn start_scheduled_sync(
    shared: Arc<Shared>,
    fire: DateTime<Utc>,
    stop_timeout: Duration,
) {
    let stop = shared.work.stop.clone();
    let tracker = shared.work.syncs.clone();
    tracker.spawn(async move {
        let guard = tokio::select! {
            g = shared.sync_lock.clone().lock_owned() => g,
            _ = stop.cancelled() => return,
        };
        // The detection time of new versions: `clock::now()` like `trialwatch sync` (tests may
        // freeze it); the timetable itself always runs on the real wall clock.
        let started = crate::clock::now();
        shared.update_state(|s| s.sync_running_since = Some(started));
        shared.notifier.status(&shared.status_line());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread_shared = shared.clone();
        let thread_stop = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("trialwatch-sync".into())
            .spawn(move || {
                let _ = tx.send(sync_thread(
                    &thread_shared,
                    fire,
                    started,
                    &thread_stop,
                    stop_timeout,
                ));
            });
        let outcome = match spawned {
            Ok(_) => rx.await.unwrap_or(Outcome::Cancelled),
            Err(e) => Outcome::Failed(anyhow::anyhow!("cannot start the sync thread: {e}")),
        };
        let synced = matches!(outcome, Outcome::Synced { .. });
        record_outcome(&shared, started, outcome);
        if synced && !stop.is_cancelled() {
            super::publish::export_after_sync(&shared).await;
        }
        drop(guard);
        if !stop.is_cancelled() {
            deliver_outbox(&shared);
            shared.notifier.status(&shared.status_line());
        }
    });
}

/// How a scheduled run ended.
enum Outcome {
    Skipped {
        reason: String,
        data_timestamp: Option<String>,
    },
    Synced {
        kind: SyncKind,
        report: Option<Box<SyncReport>>,
        data_timestamp: Option<String>,
    },
    Cancelled,
    Failed(anyhow::Error),
}

/// The body of the sync thread: its own runtime, cancelled by `stop`.
fn sync_thread(
    shared: &Shared,
    fire: DateTime<Utc>,
    started: DateTime<Utc>,
    stop: &CancellationToken,
    stop_timeout: Duration,
) -> Outcome {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Outcome::Failed(anyhow::anyhow!("cannot start the sync runtime: {e}")),
    };
    let cfg = shared.config();
    let state = shared.state();
    let store = shared.store.clone();
    let mut outcome = rt.block_on(async {
        tokio::select! {
            o = scheduled_run(&cfg, &store, &state, fire, started) => o,
            _ = stop.cancelled() => Outcome::Cancelled,
        }
    });
    // Dropping the fetch left batch writes running on blocking threads: let them finish.
    rt.shutdown_timeout(stop_timeout);
    // Deadlines move with the calendar, not with CT.gov's data: evaluated once a day whatever
    // the sync found (even when it was skipped).
    if !matches!(outcome, Outcome::Cancelled) {
        // What the sync read of the heads it stored spares reading them back.
        let known = match &mut outcome {
            Outcome::Synced {
                report: Some(r), ..
            } => std::mem::take(&mut r.head_facts),
            _ => Default::default(),
        };
        super::queries::evaluate_deadlines(&cfg, &store, started, &known);
    }
    if let Err(e) = store.flush() {
        tracing::error!(error = %e, "cannot flush the store after a sync");
    }
    outcome
}

/// Plan and fetch, on the sync thread's runtime.
async fn scheduled_run(
    cfg: &Config,
    store: &Store,
    state: &DaemonState,
    fire: DateTime<Utc>,
    started: DateTime<Utc>,
) -> Outcome {
    let client = match crate::sync::client_from_config(cfg) {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(e),
    };
    let data_timestamp = match ctgov_calls::data_timestamp(&client).await {
        Ok(ts) => Some(ts),
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "cannot ask CT.gov for its data version; syncing anyway"
            );
            None
        }
    };
    let plan = plan(cfg, store, state, data_timestamp.as_deref(), started);
    // The watched queries run with every sync that fetches; members they add to the watch
    // list (`--watch`) join this sync.
    let plan = match plan {
        Ok(Plan::Fetch { kind, ids }) => {
            match super::queries::run_queries(&client, cfg, store, started, ids).await {
                Ok(ids) => Ok(Plan::Fetch { kind, ids }),
                Err(e) => Err(e),
            }
        }
        // Only queries (an empty watch list): they still run, and their `--watch` members are
        // fetched for the first time.
        Ok(Plan::Skip(reason))
            if crate::sync::watched_ids(cfg, store).is_ok_and(|w| w.is_empty()) =>
        {
            match super::queries::run_queries(&client, cfg, store, started, Vec::new()).await {
                Ok(ids) if !ids.is_empty() => Ok(Plan::Fetch {
                    kind: SyncKind::NewOnly,
                    ids,
                }),
                Ok(_) => Ok(Plan::Skip(reason)),
                Err(e) => Err(e),
            }
        }
        other => other,
    };
    match plan {
        Err(e) => Outcome::Failed(e),
        Ok(Plan::Skip(reason)) => Outcome::Skipped {
            reason,
            data_timestamp,
        },
        Ok(Plan::Fetch { kind, ids }) if ids.is_empty() => {
            tracing::info!(sync.fire_time = %fire, sync.kind = ?kind, "no watched trial changed on CT.gov; nothing to fetch");
            Outcome::Synced {
                kind,
                report: None,
                data_timestamp,
            }
        }
        Ok(Plan::Fetch { kind, ids }) => {
            tracing::info!(sync.fire_time = %fire, sync.kind = ?kind, sync.trials = ids.len(), "scheduled sync started");
            // Which subscriptions each new version owes alerts to is decided in the same
            // store write as the version itself (read fresh: `subscribe` may have added some).
            let subs = match crate::outbox::Subscriptions::load(cfg, store) {
                Ok(s) => Arc::new(s),
                Err(e) => return Outcome::Failed(e.into()),
            };
            match crate::sync::run(&client, store, subs, ids, started, None, cfg.watch.backfill)
                .await
            {
                Ok(report) => Outcome::Synced {
                    kind,
                    report: Some(Box::new(report)),
                    data_timestamp,
                },
                Err(e) => Outcome::Failed(e),
            }
        }
    }
}

/// Whether the run failed as a whole: an error, or every trial it fetched failed.
fn all_failed(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Failed(_) => true,
        Outcome::Synced {
            report: Some(r), ..
        } => r.requested > 0 && r.failed.len() >= r.requested,
        _ => false,
    }
}

/// What a failed run said: its error, or the first trial's failure when every trial failed.
fn failure_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed(e) => format!("{e:#}"),
        Outcome::Synced {
            report: Some(r), ..
        } => match (r.failed.first(), r.failed.len()) {
            (Some(f), 1) => format!("{}: {}", f.nct_id, f.error),
            (Some(f), n) => format!(
                "{}: {} (and {} more)",
                f.nct_id,
                f.error,
                crate::util::text::plural(n - 1, "trial")
            ),
            (None, _) => "every trial failed".to_string(),
        },
        _ => "the sync failed".to_string(),
    }
}

/// Enqueue the health alert `change` owes to the subscriptions that asked for
/// `--event health` (delivered by the delivery pass right after this run, like any alert).
fn enqueue_health(shared: &Shared, change: &HealthChange, at: DateTime<Utc>) {
    let cfg = shared.config();
    let store = &shared.store;
    let event = super::health::alert_event(change, at);
    let result = crate::outbox::Subscriptions::load(&cfg, store)
        .map(Arc::new)
        .and_then(|subs| crate::outbox::EnqueuePlan::new(subs, store, at))
        .map(|plan| plan.owed_health(&event))
        .and_then(|entries| store.outbox_add(&entries))
        .and_then(|n| store.flush().map(|()| n));
    match result {
        Ok(n) => tracing::info!(
            alerts.enqueued = n,
            "health alert enqueued: {}",
            event.summary
        ),
        Err(e) => tracing::error!(error = %e, "cannot enqueue the health alert"),
    }
}

/// Log the outcome and update the bookkeeping it decides.
fn record_outcome(shared: &Shared, started: DateTime<Utc>, outcome: Outcome) {
    let checked = Utc::now();
    let threshold = shared.config().alerts.health_after;
    let mut change = None;
    if !matches!(outcome, Outcome::Cancelled) {
        // A run in which every trial failed (CT.gov answering errors) is a failed sync too.
        if all_failed(&outcome) {
            let error = failure_text(&outcome);
            shared.update_state(|s| change = s.health.failed(started, threshold, &error));
        } else {
            shared.update_state(|s| change = s.health.succeeded());
        }
    }
    match &change {
        Some(HealthChange::Unhealthy { failures, .. }) => tracing::error!(
            sync.failures_in_a_row = failures,
            "{} in a row {} failed (business days only); syncing is unhealthy until one succeeds",
            crate::util::text::plural(*failures as usize, "scheduled sync"),
            if *failures == 1 { "has" } else { "have" }
        ),
        Some(HealthChange::Recovered { since, .. }) => tracing::warn!(
            sync.unhealthy_since = %since,
            "scheduled syncing recovered: this run worked after the failures reported at {since}"
        ),
        None => {}
    }
    if let Some(change) = &change {
        enqueue_health(shared, change, started);
    }
    match outcome {
        Outcome::Skipped {
            reason,
            data_timestamp,
        } => {
            // The field is left out when unknown, never logged as Rust's `None`/`Some(…)`.
            tracing::info!(
                ctgov.data_timestamp = data_timestamp.as_deref(),
                "scheduled sync skipped: {reason}"
            );
            shared.update_state(|s| {
                s.sync_running_since = None;
                if data_timestamp.is_some() {
                    s.data_timestamp = data_timestamp;
                    s.data_timestamp_checked_at = Some(checked);
                }
                s.last_decision = Some(format!("skipped: {reason}"));
            });
        }
        Outcome::Synced {
            kind,
            report,
            data_timestamp,
        } => {
            let threshold = shared.config().schedule.reexec_after_trials as usize;
            if let Some(r) = &report
                && threshold > 0
                && r.fetched >= threshold
            {
                shared.reexec_due.notify_one();
            }
            if let Some(r) = &report {
                tracing::info!(
                    sync.kind = ?kind,
                    sync.trials = r.requested,
                    sync.new_versions = r.new_versions,
                    sync.unchanged = r.unchanged,
                    sync.failed = r.failed.len(),
                    sync.requests = r.requests,
                    sync.duration_ms = r.duration_ms,
                    "scheduled sync finished"
                );
            }
            let summary = match &report {
                Some(r) => format!(
                    "{kind:?} sync of {}: {}, {} failed",
                    crate::util::text::plural(r.requested, "trial"),
                    crate::util::text::plural(r.new_versions, "new version"),
                    r.failed.len()
                ),
                None => format!("{kind:?} sync: no watched trial changed"),
            };
            shared.update_state(|s| {
                s.sync_running_since = None;
                if data_timestamp.is_some() {
                    s.data_timestamp = data_timestamp.clone();
                    s.data_timestamp_checked_at = Some(checked);
                }
                // Failed trials are retried by every later run (they stay "pending"), so a
                // run that covered its plan counts as complete even with failures.
                if kind != SyncKind::NewOnly {
                    s.complete_data_timestamp = data_timestamp;
                    s.last_complete_at = Some(started);
                }
                if kind == SyncKind::Full {
                    s.last_full_at = Some(started);
                }
                s.last_decision = Some(summary);
            });
        }
        Outcome::Cancelled => {
            tracing::info!("scheduled sync abandoned for shutdown; what it stored is kept");
            shared.update_state(|s| s.sync_running_since = None);
        }
        Outcome::Failed(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "scheduled sync failed; the next fire time will try again"
            );
            shared.update_state(|s| {
                s.sync_running_since = None;
                s.last_decision = Some(format!("failed: {e:#}"));
            });
        }
    }
}
