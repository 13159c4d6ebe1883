//! What a scheduled run fetches ([`plan`]): everything (a full sync), only what CT.gov says
//! moved since the last complete sync (incremental), only trials never synced (CT.gov's data
//! did not move), or nothing. Decided from the store, the daemon's bookkeeping and CT.gov's
//! `/version`; the one CT.gov question it may ask comes in as a function, so tests need no
//! server.
//!
//! Not here: running the plan ([`super::sync_run`]), when runs happen ([`super::scheduler`]).

use std::future::Future;

use chrono::{DateTime, Utc};

use super::state::DaemonState;
use crate::config::Config;
use crate::model::NctId;
use crate::store::Store;

/// What kind of fetch a scheduled run decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// Every watched trial (first run, or `full_sync_days` since the last full sync).
    Full,
    /// Watched trials whose `LastUpdatePostDate` moved, plus those never synced or failed.
    Incremental,
    /// Only trials never synced (or whose last sync failed): CT.gov's data did not move.
    NewOnly,
}

/// The plan of one scheduled run, decided from the store and CT.gov's `/version`.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to fetch, and why.
    Skip(String),
    /// Fetch these trials.
    Fetch {
        /// Why these trials: recorded in the bookkeeping once the fetch is done.
        kind: SyncKind,
        /// The watched trials to fetch (may be empty: nothing moved).
        ids: Vec<NctId>,
    },
}

/// Decide what a scheduled run fetches. `changed_since` asks CT.gov which of the watched
/// trials changed since a date; it is only called for an incremental run.
pub async fn plan<F, Fut>(
    cfg: &Config,
    store: &Store,
    state: &DaemonState,
    data_timestamp: Option<&str>,
    now: DateTime<Utc>,
    changed_since: F,
) -> anyhow::Result<Plan>
where
    F: FnOnce(Vec<NctId>, chrono::NaiveDate) -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<NctId>>>,
{
    let watched = crate::sync::watched_ids(cfg, store)?;
    if watched.is_empty() {
        return Ok(Plan::Skip(
            "the watch list is empty; add trials with `trialwatch watch add NCT…` or \
             `[watch] nct_ids`"
                .into(),
        ));
    }
    // Never synced whole, or failed last time: these are fetched whatever CT.gov says.
    let mut pending = Vec::new();
    for id in &watched {
        match store.trial(id)? {
            Some(t) if t.latest_version > 0 && t.last_error.is_none() => {}
            _ => pending.push(id.clone()),
        }
    }
    let full_due = match state.last_full_at {
        None => true,
        Some(t) => now - t >= chrono::Duration::days(i64::from(cfg.schedule.full_sync_days)),
    };
    if full_due {
        return Ok(Plan::Fetch {
            kind: SyncKind::Full,
            ids: watched,
        });
    }
    let unmoved = match (data_timestamp, state.complete_data_timestamp.as_deref()) {
        (Some(ts), Some(done)) if ts == done => Some(ts),
        _ => None,
    };
    if let Some(ts) = unmoved {
        return Ok(if pending.is_empty() {
            Plan::Skip(format!(
                "CT.gov's dataTimestamp {ts} has not moved since the last complete sync{}; \
                     nothing can have changed",
                state
                    .last_complete_at
                    .map(|t| format!(" at {}", t.format("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_default()
            ))
        } else {
            Plan::Fetch {
                kind: SyncKind::NewOnly,
                ids: pending,
            }
        });
    }
    let Some(last) = state.last_complete_at else {
        return Ok(Plan::Fetch {
            kind: SyncKind::Full,
            ids: watched,
        });
    };
    // Two days of slack: LastUpdatePostDate is a US date, our clock is UTC.
    let since = last.date_naive() - chrono::Days::new(2);
    match changed_since(watched.clone(), since).await {
        Ok(changed) => {
            let mut ids = pending;
            for id in changed {
                if watched.contains(&id) && !ids.contains(&id) {
                    ids.push(id);
                }
            }
            Ok(Plan::Fetch {
                kind: SyncKind::Incremental,
                ids,
            })
        }
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "cannot ask CT.gov what changed; running a full sync instead"
            );
            Ok(Plan::Fetch {
                kind: SyncKind::Full,
                ids: watched,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    //! Unit tests of the scheduler's decisions ([`plan`]) against a real temporary store.

    use super::*;
    use chrono::TimeZone;

    fn cfg_with(ids: &[&str]) -> Config {
        let list = ids
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(",");
        Config::from_toml(&format!("[watch]\nnct_ids = [{list}]\n"), None).unwrap()
    }

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 13, 30, 0).unwrap()
    }

    async fn never(_: Vec<NctId>, _: chrono::NaiveDate) -> anyhow::Result<Vec<NctId>> {
        panic!("not an incremental run")
    }

    fn synced(store: &Store, id: &str) {
        let nct: NctId = id.parse().unwrap();
        let rec = crate::model::Record::default();
        let canonical = rec.canonical_bytes();
        store
            .commit_version(crate::store::NewVersion {
                provenance: Default::default(),
                nct: &nct,
                record: &rec,
                canonical: &canonical,
                raw: b"{}",
                changes: vec![],
                detected_at: t(1),
                resolved_id: None,
                source_fingerprint: None,
                alerts: vec![],
            })
            .unwrap();
    }

    #[tokio::test]
    async fn first_run_is_a_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cfg = cfg_with(&["NCT00000001"]);
        let p = plan(
            &cfg,
            &store,
            &DaemonState::default(),
            Some("x"),
            t(1),
            never,
        )
        .await
        .unwrap();
        assert!(
            matches!(
                p,
                Plan::Fetch {
                    kind: SyncKind::Full,
                    ..
                }
            ),
            "{p:?}"
        );
    }

    /// Guards "skip the fetch while dataTimestamp has not moved", and that trials added to the
    /// watch list since are fetched all the same.
    #[tokio::test]
    async fn unchanged_data_timestamp_skips_all_but_new_trials() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        synced(&store, "NCT00000001");
        let state = DaemonState {
            complete_data_timestamp: Some("2026-03-02T09:00:05".into()),
            last_complete_at: Some(t(2)),
            last_full_at: Some(t(2)),
            ..DaemonState::default()
        };
        let cfg = cfg_with(&["NCT00000001"]);
        let p = plan(
            &cfg,
            &store,
            &state,
            Some("2026-03-02T09:00:05"),
            t(3),
            never,
        )
        .await
        .unwrap();
        assert!(
            matches!(&p, Plan::Skip(r) if r.contains("has not moved")),
            "{p:?}"
        );

        let cfg = cfg_with(&["NCT00000001", "NCT00000002"]);
        let p = plan(
            &cfg,
            &store,
            &state,
            Some("2026-03-02T09:00:05"),
            t(3),
            never,
        )
        .await
        .unwrap();
        assert_eq!(
            p,
            Plan::Fetch {
                kind: SyncKind::NewOnly,
                ids: vec!["NCT00000002".parse().unwrap()]
            }
        );
    }

    #[tokio::test]
    async fn moved_data_timestamp_fetches_what_changed_since_the_last_complete_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        synced(&store, "NCT00000001");
        synced(&store, "NCT00000002");
        let state = DaemonState {
            complete_data_timestamp: Some("old".into()),
            last_complete_at: Some(t(5)),
            last_full_at: Some(t(4)),
            ..DaemonState::default()
        };
        let cfg = cfg_with(&["NCT00000001", "NCT00000002"]);
        let p = plan(
            &cfg,
            &store,
            &state,
            Some("new"),
            t(6),
            |ids, since| async move {
                assert_eq!(ids.len(), 2);
                assert_eq!(since, chrono::NaiveDate::from_ymd_opt(2026, 3, 3).unwrap());
                Ok(vec![
                    "NCT00000002".parse().unwrap(),
                    "NCT09999999".parse().unwrap(),
                ])
            },
        )
        .await
        .unwrap();
        assert_eq!(
            p,
            Plan::Fetch {
                kind: SyncKind::Incremental,
                ids: vec!["NCT00000002".parse().unwrap()]
            }
        );
    }

    /// Guards the safety net: `full_sync_days` after the last full sync, everything is fetched
    /// even though CT.gov's data did not move.
    #[tokio::test]
    async fn full_sync_runs_after_full_sync_days_whatever_version_says() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        synced(&store, "NCT00000001");
        let state = DaemonState {
            complete_data_timestamp: Some("same".into()),
            last_complete_at: Some(t(8)),
            last_full_at: Some(t(1)),
            ..DaemonState::default()
        };
        let cfg = cfg_with(&["NCT00000001"]);
        let p = plan(&cfg, &store, &state, Some("same"), t(8), never)
            .await
            .unwrap();
        assert!(
            matches!(
                p,
                Plan::Fetch {
                    kind: SyncKind::Full,
                    ..
                }
            ),
            "{p:?}"
        );
    }
}
