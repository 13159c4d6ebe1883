//! What a scheduled run fetches ([`plan`]): every watched trial once CT.gov's data moved (a
//! full sync), only trials never synced (CT.gov's data did not move), or nothing. Decided from
//! the store, the daemon's bookkeeping and CT.gov's `/version` `dataTimestamp`.
//!
//! Why a moved `dataTimestamp` fetches everything, not only the trials whose
//! `LastUpdatePostDate` moved: CT.gov edits records without moving that date (its own move of
//! unverified records to UNKNOWN, publications it links, site-name clean-ups across many
//! trials), and an incremental query would leave those for the next weekly full sync. A full
//! fetch costs ⌈N / batch_size⌉ `filter.ids` requests (100 for 10,000 trials), and the sync's
//! source fingerprint makes an unchanged study cost no normalization and no store write, so
//! "nothing missed" costs one request per 100 trials a day.
//!
//! Not here: running the plan ([`super::sync_run`]), when runs happen ([`super::scheduler`]).

use chrono::{DateTime, Utc};

use super::state::DaemonState;
use crate::config::Config;
use crate::model::NctId;
use crate::store::Store;

/// What kind of fetch a scheduled run decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// Every watched trial: first run, CT.gov's data moved (or `/version` could not say), or
    /// `full_sync_days` since the last full sync.
    Full,
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
        /// The watched trials to fetch.
        ids: Vec<NctId>,
    },
}

/// Decide what a scheduled run fetches. `data_timestamp` is CT.gov's current `dataTimestamp`
/// (`None` when `/version` could not be asked: then everything is fetched, to miss nothing).
pub fn plan(
    cfg: &Config,
    store: &Store,
    state: &DaemonState,
    data_timestamp: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<Plan> {
    let watched = crate::sync::watched_ids(cfg, store)?;
    if watched.is_empty() {
        return Ok(Plan::Skip(
            "the watch list is empty; add trials with `trialwatch watch add NCT…` or \
             `[watch] nct_ids`"
                .into(),
        ));
    }
    let full = Plan::Fetch {
        kind: SyncKind::Full,
        ids: watched.clone(),
    };
    let full_due = match state.last_full_at {
        None => true,
        Some(t) => now - t >= chrono::Duration::days(i64::from(cfg.schedule.full_sync_days)),
    };
    if full_due {
        return Ok(full);
    }
    let unmoved = match (data_timestamp, state.complete_data_timestamp.as_deref()) {
        (Some(ts), Some(done)) if ts == done => ts,
        // Moved, never recorded, or unknown: CT.gov may have changed any record, with or
        // without moving its LastUpdatePostDate.
        _ => return Ok(full),
    };
    // Never synced whole, or failed last time: these are fetched whatever CT.gov says.
    let mut pending = Vec::new();
    for id in &watched {
        match store.trial(id)? {
            Some(t) if t.latest_version > 0 && t.last_error.is_none() => {}
            _ => pending.push(id.clone()),
        }
    }
    Ok(if pending.is_empty() {
        Plan::Skip(format!(
            "CT.gov's dataTimestamp {unmoved} has not moved since the last complete sync{}; \
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
    })
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

    #[test]
    fn first_run_is_a_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cfg = cfg_with(&["NCT00000001"]);
        let p = plan(&cfg, &store, &DaemonState::default(), Some("x"), t(1)).unwrap();
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
    #[test]
    fn unchanged_data_timestamp_skips_all_but_new_trials() {
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
        let p = plan(&cfg, &store, &state, Some("2026-03-02T09:00:05"), t(3)).unwrap();
        assert!(
            matches!(&p, Plan::Skip(r) if r.contains("has not moved")),
            "{p:?}"
        );

        let cfg = cfg_with(&["NCT00000001", "NCT00000002"]);
        let p = plan(&cfg, &store, &state, Some("2026-03-02T09:00:05"), t(3)).unwrap();
        assert_eq!(
            p,
            Plan::Fetch {
                kind: SyncKind::NewOnly,
                ids: vec!["NCT00000002".parse().unwrap()]
            }
        );
    }

    /// Guards "nothing missed": a moved dataTimestamp fetches every watched trial, even the day
    /// after a full sync, because CT.gov edits records without moving `LastUpdatePostDate`; so
    /// does a `/version` that could not be asked.
    #[test]
    fn moved_data_timestamp_fetches_every_watched_trial() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        synced(&store, "NCT00000001");
        synced(&store, "NCT00000002");
        let state = DaemonState {
            complete_data_timestamp: Some("old".into()),
            last_complete_at: Some(t(5)),
            last_full_at: Some(t(5)),
            ..DaemonState::default()
        };
        let cfg = cfg_with(&["NCT00000001", "NCT00000002"]);
        let every = Plan::Fetch {
            kind: SyncKind::Full,
            ids: vec![
                "NCT00000001".parse().unwrap(),
                "NCT00000002".parse().unwrap(),
            ],
        };
        assert_eq!(
            plan(&cfg, &store, &state, Some("new"), t(6)).unwrap(),
            every
        );
        assert_eq!(plan(&cfg, &store, &state, None, t(6)).unwrap(), every);
        assert!(matches!(
            plan(&cfg, &store, &state, Some("old"), t(6)).unwrap(),
            Plan::Skip(_)
        ));
    }

    /// Guards the safety net: `full_sync_days` after the last full sync, everything is fetched
    /// even though CT.gov's data did not move.
    #[test]
    fn full_sync_runs_after_full_sync_days_whatever_version_says() {
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
        let p = plan(&cfg, &store, &state, Some("same"), t(8)).unwrap();
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
