//! Unit tests of the store: commits, reads, the encodings, migration, integrity checks, the
//! outbox tables and the watch list, through the [`Store`] API and its private helpers.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::codec::{KEYFRAME_EVERY, keyframe_of};
use super::keys::{key, vkey};
use super::*;
use crate::model::{FieldChange, NctId, Record};

fn rec(status: &str) -> Record {
    let mut r = Record::default();
    r.set("identification.nctId", json!("NCT02241018"));
    r.set("status.overallStatus", json!(status));
    r.set("status.lastUpdatePostDate", json!("2024-01-02"));
    r
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn version_of<'a>(nct: &'a NctId, r: &'a Record, c: &'a [u8], raw: &'a [u8]) -> NewVersion<'a> {
    NewVersion::observed(nct, r, c, raw, t("2026-01-01T00:00:00Z"))
}

#[test]
fn one_commit_stores_many_trials_and_two_versions_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a: NctId = "NCT00000001".parse().unwrap();
    let b: NctId = "NCT00000002".parse().unwrap();
    let (r1, r2) = (rec("RECRUITING"), rec("COMPLETED"));
    let (c1, c2) = (r1.canonical_bytes(), r2.canonical_bytes());
    let got = store
        .commit_versions(vec![
            version_of(&a, &r1, &c1, b"{\"a\":1}"),
            version_of(&b, &r1, &c1, b"{\"b\":1}"),
            version_of(&a, &r2, &c2, b"{\"a\":2}"),
        ])
        .unwrap();
    assert_eq!(got, [1, 1, 2]);
    assert_eq!(store.record(&a, 2).unwrap().unwrap(), r2);
    assert_eq!(store.raw(&a, 1).unwrap().unwrap(), b"{\"a\":1}");
    assert_eq!(store.raw(&b, 1).unwrap().unwrap(), b"{\"b\":1}");
    let rep = store.verify().unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert!(dir.path().join("packs").read_dir().unwrap().count() >= 1);
}

#[test]
fn a_first_versions_changes_are_derived_from_its_record_not_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let nct: NctId = "NCT02241018".parse().unwrap();
    let mut r = rec("RECRUITING");
    r.set("eligibility.criteria", json!("Inclusion: ".repeat(500)));
    let c = r.canonical_bytes();
    let all_added = crate::diff::diff(None, &r);
    assert!(all_added.len() >= 4);
    let mut nv = version_of(&nct, &r, &c, b"{}");
    nv.changes = all_added.clone();
    store.commit_version(nv).unwrap();
    assert_eq!(store.version(&nct, 1).unwrap().unwrap().changes, all_added);
    assert_eq!(store.versions(&nct).unwrap()[0].changes, all_added);
    // The stored metadata holds no values: far smaller than the record it describes.
    let e = store.entry(&nct, 1).unwrap().unwrap();
    assert!(e.meta.len < 200, "metadata blob of {} bytes", e.meta.len);
}

#[test]
fn a_version_1_committed_with_no_changes_reads_back_with_every_path_added() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let nct: NctId = "NCT02241018".parse().unwrap();
    let r = rec("RECRUITING");
    let c = r.canonical_bytes();
    let mut nv = version_of(&nct, &r, &c, b"{}");
    nv.changes = Vec::new();
    store.commit_version(nv).unwrap();
    let all_added = crate::diff::diff(None, &r);
    assert!(!all_added.is_empty());
    assert_eq!(store.version(&nct, 1).unwrap().unwrap().changes, all_added);
    // A later version with no changes stays without changes: only version 1 is derived.
    let mut nv = version_of(&nct, &r, &c, b"{}");
    nv.changes = Vec::new();
    store.commit_version(nv).unwrap();
    assert!(store.version(&nct, 2).unwrap().unwrap().changes.is_empty());
}

#[test]
fn a_format_1_store_is_migrated_and_an_interrupted_migration_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let a: NctId = "NCT02241018".parse().unwrap();
    let b: NctId = "NCT00000002".parse().unwrap();
    let (r1, r2) = (rec("RECRUITING"), rec("COMPLETED"));
    let (c1, c2) = (r1.canonical_bytes(), r2.canonical_bytes());
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .commit_versions(vec![
                version_of(&a, &r1, &c1, b"{\"a\":1}"),
                version_of(&b, &r1, &c1, b"{\"b\":1}"),
                version_of(&a, &r2, &c2, b"{\"a\":2}"),
            ])
            .unwrap();
        // Rewrite trial `a` as format 1 kept it: each encoded value under its own sled key,
        // no table, no packs. Trial `b` stays migrated, as if a migration had stopped.
        let table = store.table(&a).unwrap();
        super::migrate::tests::write_format_3(&store, &a);
        super::migrate::tests::write_format_3(&store, &b);
        for (v, e) in table.into_iter().zip(1u32..) {
            for (prefix, r) in [(b'v', v.meta), (b'r', v.record), (b'w', v.raw)] {
                let bytes = store.blob(b"", &r).unwrap();
                store
                    .db()
                    .unwrap()
                    .insert(vkey(prefix, &a, e), bytes)
                    .unwrap();
            }
        }
        store.db().unwrap().remove(key(b'V', &a)).unwrap();
        store
            .db()
            .unwrap()
            .insert(b"F", &1u32.to_be_bytes())
            .unwrap();
        store.flush().unwrap();
    }
    // `a`'s earlier blobs stay in the packs, unreferenced: the migration copies its values
    // from the sled keys.
    let store = Store::open(dir.path()).unwrap();
    // 1 → 2, then on to the current format.
    assert_eq!(
        store.db().unwrap().get(b"F").unwrap().unwrap().as_ref(),
        FORMAT_VERSION.to_be_bytes()
    );
    for prefix in [b'v', b'r', b'w'] {
        assert!(
            store
                .db()
                .unwrap()
                .scan_prefix(key(prefix, &a))
                .next()
                .is_none()
        );
    }
    assert_eq!(store.record(&a, 1).unwrap().unwrap(), r1);
    assert_eq!(store.record(&a, 2).unwrap().unwrap(), r2);
    assert_eq!(store.raw(&a, 2).unwrap().unwrap(), b"{\"a\":2}");
    assert_eq!(store.raw(&b, 1).unwrap().unwrap(), b"{\"b\":1}");
    assert_eq!(store.versions(&a).unwrap().len(), 2);
    let rep = store.verify().unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert_eq!(rep.versions, 3);
}

#[test]
fn a_damaged_pack_is_reported_by_verify_and_reads_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let nct: NctId = "NCT02241018".parse().unwrap();
    let r = rec("RECRUITING");
    let c = r.canonical_bytes();
    let record_at = {
        let store = Store::open(dir.path()).unwrap();
        store
            .commit_version(version_of(&nct, &r, &c, b"{\"raw\":1}"))
            .unwrap();
        store.flush().unwrap();
        // The raw JSON is the last blob, just before the commit's record.
        store.get_meta::<(u32, u64)>("pack_end").unwrap().unwrap().1
    };
    let pack = dir.path().join("packs/000001.pack");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(record_at - 3)
        .unwrap();
    let store = Store::open(dir.path()).unwrap();
    let problems = store.verify().unwrap().problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("NCT02241018 v1: raw JSON")),
        "{problems:?}"
    );
    let err = store.raw(&nct, 1).unwrap_err().to_string();
    assert!(err.contains("000001.pack"), "{err}");
    // Nothing else is lost: the trial's state and the other keys still read.
    assert_eq!(store.trial(&nct).unwrap().unwrap().latest_version, 1);
}

#[test]
fn versions_are_numbered_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let nct: NctId = "NCT02241018".parse().unwrap();
    for (i, status) in ["RECRUITING", "COMPLETED"].iter().enumerate() {
        let r = rec(status);
        let c = r.canonical_bytes();
        let v = store
            .commit_version(NewVersion {
                provenance: Default::default(),
                nct: &nct,
                record: &r,
                canonical: &c,
                raw: b"{\"raw\":true}",
                changes: vec![],
                detected_at: t(if i == 0 {
                    "2026-01-01T00:00:00Z"
                } else {
                    "2026-02-01T00:00:00Z"
                }),
                resolved_id: None,
                source_fingerprint: None,
                alerts: vec![],
            })
            .unwrap();
        assert_eq!(v, i as u32 + 1);
    }
    let vs = store.versions(&nct).unwrap();
    assert_eq!(vs.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(vs[0].last_update_post_date.as_deref(), Some("2024-01-02"));
    assert_eq!(
        store.latest_record(&nct).unwrap().unwrap(),
        rec("COMPLETED")
    );
    assert_eq!(store.raw(&nct, 1).unwrap().unwrap(), b"{\"raw\":true}");
    assert_eq!(
        store
            .version_at(&nct, t("2026-01-15T00:00:00Z"))
            .unwrap()
            .unwrap()
            .version,
        1
    );
    assert!(
        store
            .version_at(&nct, t("2025-01-15T00:00:00Z"))
            .unwrap()
            .is_none()
    );
    let since = store.versions_since(t("2026-01-10T00:00:00Z")).unwrap();
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].1.version, 2);
    assert_eq!(
        store
            .versions_since(t("2000-01-01T00:00:00Z"))
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn seen_and_failed_keep_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let nct: NctId = "NCT02241018".parse().unwrap();
    let r = rec("RECRUITING");
    let c = r.canonical_bytes();
    store
        .commit_version(NewVersion {
            provenance: Default::default(),
            nct: &nct,
            record: &r,
            canonical: &c,
            raw: b"{}",
            changes: vec![],
            detected_at: t("2026-01-01T00:00:00Z"),
            resolved_id: None,
            source_fingerprint: None,
            alerts: vec![],
        })
        .unwrap();
    store
        .mark_failed(&nct, t("2026-01-02T00:00:00Z"), "boom")
        .unwrap();
    let st = store.trial(&nct).unwrap().unwrap();
    assert_eq!(st.latest_version, 1);
    assert_eq!(st.last_error.as_deref(), Some("boom"));
    store
        .mark_seen(&nct, t("2026-01-03T00:00:00Z"), None, None)
        .unwrap();
    let st = store.trial(&nct).unwrap().unwrap();
    assert_eq!(st.last_seen_at, t("2026-01-03T00:00:00Z"));
    assert_eq!(st.last_error, None);
    assert_eq!(st.record_hash, record_hash(&c));
}

/// Guards the delta/dictionary encoding: every version reads back exactly, across keyframe
/// boundaries, and a near-identical later version costs a small fraction of its raw JSON.
#[test]
fn delta_encoded_versions_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let nct: NctId = "NCT02241018".parse().unwrap();
    let filler: String = (0..400).map(|i| format!("criterion {i} text; ")).collect();
    let mut raws = Vec::new();
    for v in 1..=(2 * KEYFRAME_EVERY + 3) {
        let raw = format!("{{\"v\":{v},\"text\":\"{filler}\"}}");
        let mut r = rec("RECRUITING");
        r.set("description.briefSummary", json!(format!("{v} {filler}")));
        let c = r.canonical_bytes();
        let n = store
            .commit_version(NewVersion {
                provenance: Default::default(),
                nct: &nct,
                record: &r,
                canonical: &c,
                raw: raw.as_bytes(),
                changes: vec![FieldChange {
                    path: "description.briefSummary".into(),
                    kind: crate::model::ChangeKind::Changed,
                    old: None,
                    new: Some(json!(v)),
                }],
                detected_at: t("2026-01-01T00:00:00Z"),
                resolved_id: None,
                source_fingerprint: None,
                alerts: vec![],
            })
            .unwrap();
        assert_eq!(n, v);
        raws.push((raw, r));
    }
    for (i, (raw, r)) in raws.iter().enumerate() {
        let v = i as u32 + 1;
        assert_eq!(
            store.raw(&nct, v).unwrap().unwrap(),
            raw.as_bytes(),
            "raw v{v}"
        );
        assert_eq!(&store.record(&nct, v).unwrap().unwrap(), r, "record v{v}");
        assert_eq!(store.version(&nct, v).unwrap().unwrap().version, v);
    }
    assert_eq!(keyframe_of(1), 1);
    assert_eq!(keyframe_of(KEYFRAME_EVERY), 1);
    assert_eq!(keyframe_of(KEYFRAME_EVERY + 1), KEYFRAME_EVERY + 1);
    let stored = |v: u32| store.entry(&nct, v).unwrap().unwrap().raw.len as usize;
    assert!(
        stored(2) * 20 < raws[1].0.len(),
        "delta {} bytes",
        stored(2)
    );
    assert!(store.verify().unwrap().problems.is_empty());
}

/// `Store::open` of a store this process just dropped: sled's background threads can hold its
/// file lock for a moment after the drop, so an open that finds it locked tries again (for up
/// to 5 s) instead of failing the test on that race.
pub(super) fn reopen(dir: &std::path::Path) -> Result<Store, StoreError> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Store::open(dir) {
            Err(StoreError::Open { source, .. })
                if source.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < end =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

#[test]
fn format_version_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .db()
            .unwrap()
            .insert(b"F", &(FORMAT_VERSION + 1).to_be_bytes())
            .unwrap();
        store.flush().unwrap();
    }
    match reopen(dir.path()) {
        Err(StoreError::TooNew { found, .. }) => assert_eq!(found, FORMAT_VERSION + 1),
        other => panic!("expected TooNew, got {:?}", other.err()),
    }
}

#[test]
fn alerts_are_stored_with_their_version_and_found_by_due_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let nct: NctId = "NCT02241018".parse().unwrap();
    let r = rec("COMPLETED");
    let c = r.canonical_bytes();
    let at = t("2026-01-01T00:00:00Z");
    let later = t("2026-01-02T00:00:00Z");
    let owed = |sub: &str, due| OwedAlert {
        subscription_id: sub.into(),
        paths: vec!["status.overallStatus".into()],
        due,
    };
    store
        .commit_version(NewVersion {
            provenance: Default::default(),
            nct: &nct,
            record: &r,
            canonical: &c,
            raw: b"{}",
            changes: vec![],
            detected_at: at,
            resolved_id: None,
            source_fingerprint: None,
            alerts: vec![owed("sub-a", at), owed("sub-b", later)],
        })
        .unwrap();
    assert_eq!(store.outbox_counts().unwrap(), (2, 0));
    assert_eq!(store.outbox_next_due().unwrap(), Some(at));
    let due = store.outbox_due(at).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id(), "sub-a.NCT02241018.v1");
    assert_eq!(store.outbox_due(later).unwrap().len(), 2);
    assert_eq!(
        store
            .outbox_entry("sub-b.NCT02241018.v1")
            .unwrap()
            .unwrap()
            .next_attempt_at,
        later
    );
    assert!(store.outbox_entry("garbage").unwrap().is_none());

    // Rescheduling moves the index key; dead letters leave the index but stay listed.
    let mut dead = due[0].clone();
    dead.dead_at = Some(at);
    store
        .outbox_update(&[(due[0].clone(), dead.clone())])
        .unwrap();
    assert_eq!(store.outbox_counts().unwrap(), (1, 1));
    assert_eq!(store.outbox_due(later).unwrap().len(), 1);
    assert!(store.verify().unwrap().problems.is_empty());

    // Removing a subscription drops what it owes, atomically.
    let b = store.outbox_entry("sub-b.NCT02241018.v1").unwrap().unwrap();
    store.outbox_remove(&[b], Some(("sub-b", later))).unwrap();
    assert_eq!(store.last_digest("sub-b").unwrap(), Some(later));
    assert_eq!(store.outbox_counts().unwrap(), (0, 1));
    store.outbox_remove(&[dead], None).unwrap();
    assert_eq!(store.outbox_all().unwrap().len(), 0);
    assert_eq!(store.outbox_next_due().unwrap(), None);
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn watch_list_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a: NctId = "NCT00000002".parse().unwrap();
    assert!(store.watch_add(&a, t("2026-01-01T00:00:00Z")).unwrap());
    assert!(!store.watch_add(&a, t("2026-01-02T00:00:00Z")).unwrap());
    assert_eq!(store.watch_list().unwrap().len(), 1);
    assert!(store.watch_remove(&a).unwrap());
    assert!(!store.watch_remove(&a).unwrap());
}

/// The heads file (`heads.rs`): written after a write, removed before the next write, and a
/// store opened on it reads each trial as sled does, opening sled only when asked for more.
#[test]
fn the_heads_file_is_current_or_absent_and_reads_what_sled_holds() {
    let dir = tempfile::tempdir().unwrap();
    let a: NctId = "NCT00000001".parse().unwrap();
    let b: NctId = "NCT00000777".parse().unwrap();
    let (r1, r2) = (rec("RECRUITING"), rec("COMPLETED"));
    let (c1, c2) = (r1.canonical_bytes(), r2.canonical_bytes());
    let store = Store::open(dir.path()).unwrap();
    store
        .commit_versions(vec![
            version_of(&a, &r1, &c1, b"{\"a\":1}"),
            version_of(&b, &r1, &c1, b"{\"b\":1}"),
        ])
        .unwrap();
    assert!(
        Store::open_heads(dir.path()).is_none(),
        "no heads file before one is written"
    );
    assert!(store.publish_heads().unwrap());
    assert!(
        !store.publish_heads().unwrap(),
        "a current file is not written again"
    );
    // Any write removes it (the file also answers `status`: meta values, outbox counts).
    store.set_meta("x", &1).unwrap();
    assert!(!dir.path().join(heads::FILE).exists());
    assert!(store.publish_heads().unwrap());

    // Read while the writer still has sled open (and its lock): no sled involved.
    let reader = Store::open_heads(dir.path()).unwrap();
    assert_eq!(reader.trial(&a).unwrap(), store.trial(&a).unwrap());
    assert_eq!(reader.versions(&b).unwrap(), store.versions(&b).unwrap());
    assert_eq!(reader.latest_record(&a).unwrap().unwrap(), r1);
    let unknown: NctId = "NCT00000002".parse().unwrap();
    assert_eq!(reader.trial(&unknown).unwrap(), None);
    assert!(
        reader.index.db.get().is_none(),
        "sled was opened for a one-trial read"
    );

    // A new version removes the file before it is written, and its reads stay right.
    store
        .commit_version(version_of(&a, &r2, &c2, b"{\"a\":2}"))
        .unwrap();
    assert!(!dir.path().join(heads::FILE).exists());
    assert!(Store::open_heads(dir.path()).is_none());
    // So does a state-only write.
    assert!(store.publish_heads().unwrap());
    store
        .mark_failed(&b, t("2026-02-01T00:00:00Z"), "HTTP 500")
        .unwrap();
    assert!(Store::open_heads(dir.path()).is_none());
    assert!(store.publish_heads().unwrap());
    let reader = Store::open_heads(dir.path()).unwrap();
    assert_eq!(reader.latest_record(&a).unwrap().unwrap(), r2);
    assert_eq!(
        reader.trial(&b).unwrap().unwrap().last_error.as_deref(),
        Some("HTTP 500")
    );
    drop(store);

    // What `status` reads comes from the file too: meta values, outbox counts, sizes.
    assert_eq!(reader.get_meta::<i32>("x").unwrap(), Some(1));
    assert_eq!(reader.get_meta::<i32>("absent").unwrap(), None);
    assert_eq!(reader.outbox_counts().unwrap(), (0, 0));
    assert!(reader.size_on_disk().unwrap() > 0);
    assert!(
        reader.index.db.get().is_none(),
        "sled was opened for status' reads"
    );
    // Anything else opens sled on first use.
    assert_eq!(reader.trials().unwrap().len(), 2);
    assert!(reader.index.db.get().is_some());
    drop(reader);

    // A damaged file is noticed on the read that touches it, and sled answers instead.
    let path = dir.path().join(heads::FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff; // inside the first `T` value
    std::fs::write(&path, &bytes).unwrap();
    let reader = Store::open_heads(dir.path()).unwrap();
    assert_eq!(reader.latest_record(&a).unwrap().unwrap(), r2);
    assert_eq!(reader.trial(&b).unwrap().unwrap().latest_version, 1);
}

/// A read-only open works on a private copy: it neither removes nor writes the heads file.
#[test]
fn a_read_only_open_leaves_the_heads_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let a: NctId = "NCT00000001".parse().unwrap();
    let r = rec("RECRUITING");
    let c = r.canonical_bytes();
    {
        let store = Store::open(dir.path()).unwrap();
        store.commit_version(version_of(&a, &r, &c, b"{}")).unwrap();
        store.publish_heads().unwrap();
    }
    let before = std::fs::read(dir.path().join(heads::FILE)).unwrap();
    let ro = Store::open_read_only(dir.path()).unwrap();
    ro.mark_failed(&a, t("2026-02-01T00:00:00Z"), "x").unwrap();
    assert!(!ro.publish_heads().unwrap());
    drop(ro);
    assert_eq!(std::fs::read(dir.path().join(heads::FILE)).unwrap(), before);
}

/// `changes --since` reads the heads file's copy of the recent time index, and sled's index for
/// anything further back; both list the same versions in the same order.
#[test]
fn the_time_index_reads_the_same_from_the_heads_file_and_from_sled() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = chrono::Utc::now();
    let ids: Vec<NctId> = (1..=5)
        .map(|i| format!("NCT0000000{i}").parse().unwrap())
        .collect();
    let recs = [rec("RECRUITING"), rec("COMPLETED"), rec("TERMINATED")];
    let canon: Vec<Vec<u8>> = recs.iter().map(Record::canonical_bytes).collect();
    // Versions 100 days, 20 days, 2 days and an hour ago; two trials in one commit.
    for (k, days_ago) in [(0usize, 100i64), (1, 20), (2, 2)] {
        let at = now - chrono::Duration::days(days_ago);
        let items = ids
            .iter()
            .map(|n| NewVersion::observed(n, &recs[k], &canon[k], b"{}", at))
            .collect();
        store.commit_versions(items).unwrap();
    }
    store
        .commit_version(NewVersion::observed(
            &ids[0],
            &recs[0],
            &canon[0],
            b"{}",
            now - chrono::Duration::hours(1),
        ))
        .unwrap();
    store.publish_heads().unwrap();
    let reader = Store::open_heads(dir.path()).unwrap();
    for back in [
        chrono::Duration::hours(2),
        chrono::Duration::days(3),
        chrono::Duration::days(30),
    ] {
        let since = now - back;
        assert!(
            reader.heads_time_entries(since).is_some(),
            "{back}: inside the window"
        );
        assert_eq!(
            reader.version_refs_since(since).unwrap(),
            store.version_refs_since(since).unwrap(),
            "{back}"
        );
    }
    assert!(
        reader.index.db.get().is_none(),
        "sled opened for the recent window"
    );
    let since = now - chrono::Duration::days(200);
    assert!(
        reader.heads_time_entries(since).is_none(),
        "outside the window"
    );
    let want = store.version_refs_since(since).unwrap();
    assert_eq!(want.len(), 16);
    // Further back, the reader opens sled (once the writer has let it go).
    drop(store);
    assert_eq!(reader.version_refs_since(since).unwrap(), want);
    assert!(reader.index.db.get().is_some());
}

/// `verify` compares the heads file with the index: a file some other writer left out of date
/// (here a `T` value changed behind the store's back) is a problem it names, with the fix.
#[test]
fn verify_names_a_heads_file_that_disagrees_with_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let a: NctId = "NCT00000001".parse().unwrap();
    let r = rec("RECRUITING");
    let c = r.canonical_bytes();
    {
        let store = Store::open(dir.path()).unwrap();
        store.commit_version(version_of(&a, &r, &c, b"{}")).unwrap();
        store.publish_heads().unwrap();
        assert!(store.verify().unwrap().problems.is_empty());
        // Behind the store's back, as a build that does not know the file would write.
        let k = key(b'T', &a);
        let v = store.db().unwrap().get(&k).unwrap().unwrap();
        let (mut state, table) = trial_value::decode(&k, &v).unwrap();
        state.last_error = Some("changed".into());
        let table = table.to_vec();
        store
            .db()
            .unwrap()
            .insert(&k, trial_value::encode(&state, &table))
            .unwrap();
        store.flush().unwrap();
    }
    let rep = verify_dir(dir.path()).unwrap();
    assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
    assert!(
        rep.problems[0].contains("heads file disagrees with the index on NCT00000001")
            && rep.problems[0].contains("delete"),
        "{:?}",
        rep.problems
    );
}
