//! Unit tests of one study's decision (`prepare_study`): the raw-bytes fast path, the
//! fingerprint path, and that only a real change becomes a new version.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::*;

const FIXTURE: &str = include_str!("../../tests/fixtures/ctgov/NCT03418623.json");

fn study(raw: &str) -> FetchedStudy {
    let nct: NctId = "NCT03418623".parse().unwrap();
    FetchedStudy {
        requested: nct.clone(),
        nct_id: nct,
        raw: RawValue::from_string(raw.to_string()).unwrap(),
    }
}

fn now() -> DateTime<Utc> {
    "2026-02-01T00:00:00Z".parse().unwrap()
}

/// Store what `prepare_study` staged, as `process_batch` does.
fn commit(store: &Store, s: &FetchedStudy, staged: Staged) {
    store
        .commit_version(NewVersion {
            changes: staged.changes,
            source_fingerprint: staged.fingerprint,
            ..NewVersion::observed(
                &s.requested,
                &staged.record,
                &staged.canonical,
                s.raw.get().as_bytes(),
                now(),
            )
        })
        .unwrap();
}

/// The plan (no subscriptions), the fixture as fetched, and what `prepare_study` stages for it
/// as a trial's first version.
fn stage_first(store: &Store) -> (EnqueuePlan, FetchedStudy, Staged) {
    let plan = EnqueuePlan::new(Arc::new(Default::default()), store, now()).unwrap();
    let first = study(FIXTURE);
    let staged = prepare_study(store, &plan, &first, now(), true)
        .unwrap()
        .expect("a first version");
    (plan, first, staged)
}

/// What `prepare_study` stages for the fixture with its overall status changed, checked to
/// name that change.
fn stage_status_change(store: &Store, plan: &EnqueuePlan) -> Staged {
    let changed = FIXTURE.replacen(
        "\"overallStatus\": ",
        "\"overallStatus\": \"TERMINATED\", \"x\": ",
        1,
    );
    assert_ne!(changed, FIXTURE);
    let staged = prepare_study(store, plan, &study(&changed), now(), true)
        .unwrap()
        .expect("a real change");
    assert!(
        staged
            .changes
            .iter()
            .any(|c| c.path == "status.overallStatus"),
        "{:?}",
        staged.changes
    );
    staged
}

#[test]
fn byte_identical_studies_skip_the_fingerprint_and_churn_outside_the_record_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (plan, first, staged) = stage_first(&store);
    commit(&store, &first, staged);
    let nct = first.requested.clone();
    let state = store.trial(&nct).unwrap().unwrap();
    assert_eq!(state.raw_hash, Some(raw_hash(FIXTURE.as_bytes())));

    // Make the fingerprint path unable to match: only the raw hash can say "unchanged".
    let mut t = state.clone();
    t.source_fingerprint = None;
    store.mark_seen_state(t, now(), None, None, None).unwrap();
    assert!(
        prepare_study(&store, &plan, &first, now(), true)
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.trial(&nct).unwrap().unwrap().source_fingerprint,
        None,
        "the raw-bytes path was taken: nothing was parsed"
    );
    // After a normalizer change the raw hash is not trusted: the study is looked at (and its
    // record found unchanged, so the fingerprint comes back).
    assert!(
        prepare_study(&store, &plan, &first, now(), false)
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .trial(&nct)
            .unwrap()
            .unwrap()
            .source_fingerprint
            .is_some()
    );

    // CT.gov's own churn outside what the normalizer reads: other bytes, no new version, and
    // the new bytes are remembered for the next sync.
    let churned = FIXTURE.replacen("{", "{\"derivedSection\": {\"x\": 1},", 1);
    assert_ne!(churned, FIXTURE);
    assert!(
        prepare_study(&store, &plan, &study(&churned), now(), true)
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.trial(&nct).unwrap().unwrap().raw_hash,
        Some(raw_hash(churned.as_bytes()))
    );
    assert_eq!(store.trial(&nct).unwrap().unwrap().latest_version, 1);

    // A real change is a new version.
    stage_status_change(&store, &plan);
}

#[test]
fn a_first_version_is_staged_without_changes_and_reads_back_with_every_path_added() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (plan, first, staged) = stage_first(&store);
    assert!(staged.changes.is_empty(), "{:?}", staged.changes);
    assert_eq!(staged.alert_count, 0);
    assert!(!staged.posted_anew);
    let all_added = crate::diff::diff(None, &staged.record);
    assert!(!all_added.is_empty());
    commit(&store, &first, staged);
    let nct = first.requested.clone();
    assert_eq!(store.version(&nct, 1).unwrap().unwrap().changes, all_added);

    // A second version is diffed against the first as before.
    let staged = stage_status_change(&store, &plan);
    assert!(
        staged.changes.len() < all_added.len(),
        "{:?}",
        staged.changes
    );
}
