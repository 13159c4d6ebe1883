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
