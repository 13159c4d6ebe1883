//! A damaged or missing index (`db/`): `verify` never says "store OK" on it, write commands
//! refuse it, `verify` changes no byte of the store, and `trialwatch repair` rebuilds the index
//! from the packs so that every trial's `history --json` is what it was.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::support::env::{TestEnv, edit, fixture_as, stderr, stdout};

const SOURCES: [&str; 3] = ["NCT02552212.json", "NCT03418623.json", "NCT00763412.json"];

/// A store of `trials` trials with `rounds` versions each (past one keyframe when
/// `rounds` > 16), and its trials' IDs.
fn store_with_versions(trials: usize, rounds: u32) -> (TestEnv, Vec<String>) {
    let ids: Vec<String> = (1..=trials)
        .map(|i| format!("NCT{:08}", 81_000_000 + i))
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let env = TestEnv::new(&refs);
    let base: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| fixture_as(SOURCES[i % SOURCES.len()], id))
        .collect();
    for round in 0..rounds {
        for raw in &base {
            env.server.put_study(edit(raw, |p| {
                p["designModule"]["enrollmentInfo"]["count"] = json!(500 + round);
            }));
        }
        env.ok(&["sync"]);
    }
    (env, ids)
}

/// Every trial's `history --json`.
fn histories(env: &TestEnv, ids: &[String]) -> BTreeMap<String, Value> {
    ids.iter()
        .map(|id| (id.clone(), env.json(&["history", id, "--json"])))
        .collect()
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// `verify` exits 2 and never prints "store OK"; returns its output.
fn verify_fails(env: &TestEnv) -> String {
    let out = env.run(&["verify"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "verify: {text}{}", stderr(&out));
    assert!(!text.contains("store OK"), "{text}");
    text
}

fn repair_restores(env: &TestEnv, ids: &[String], before: &BTreeMap<String, Value>) {
    let out = env.ok(&["repair"]);
    assert!(out.contains("store OK"), "{out}");
    assert_eq!(&histories(env, ids), before, "repair: {out}");
    let v = env.ok(&["verify"]);
    assert!(v.contains("store OK"), "{v}");
    // The repaired store takes new versions as usual, numbered after the restored ones.
    env.ok(&["sync"]);
}

#[test]
fn a_deleted_index_is_reported_refused_and_rebuilt_from_the_packs() {
    let (env, ids) = store_with_versions(4, 18);
    let before = histories(&env, &ids);
    assert_eq!(before[&ids[0]].as_array().unwrap().len(), 18);
    let db = env.data_dir().join("db");
    std::fs::remove_dir_all(&db).unwrap();

    let text = verify_fails(&env);
    assert!(
        text.contains("missing") && text.contains("repair"),
        "{text}"
    );
    // A sync refuses instead of starting every trial again at version 1, and writes nothing.
    let packs = snapshot(&env.data_dir().join("packs"));
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("trialwatch repair"),
        "{}",
        stderr(&out)
    );
    assert!(!db.exists(), "the refused sync created an index");
    assert_eq!(snapshot(&env.data_dir().join("packs")), packs);

    let out = env.ok(&["repair"]);
    assert!(out.contains("not restored: subscriptions"), "{out}");
    repair_restores_after(&env, &ids, &before, &out);
}

fn repair_restores_after(
    env: &TestEnv,
    ids: &[String],
    before: &BTreeMap<String, Value>,
    out: &str,
) {
    assert!(out.contains("store OK"), "{out}");
    assert_eq!(&histories(env, ids), before, "repair: {out}");
    let v = env.ok(&["verify"]);
    assert!(v.contains("store OK"), "{v}");
    env.ok(&["sync"]);
}

/// Flip `n` bytes of the largest file in `db/` at `at` (a fraction of its written part).
fn flip_index_bytes(env: &TestEnv, at: f64, n: usize) {
    let db = env.data_dir().join("db");
    let (path, _) = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .max_by_key(|(_, len)| *len)
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // sled's segment file is mostly unused: aim inside the bytes written so far.
    let used = bytes
        .iter()
        .rposition(|b| *b != 0)
        .map_or(bytes.len(), |i| i + 1);
    let start = ((used as f64 * at) as usize).min(used.saturating_sub(n));
    let end = (start + n).min(bytes.len());
    for b in &mut bytes[start..end] {
        *b ^= 0xff;
    }
    std::fs::write(&path, &bytes).unwrap();
}

#[test]
fn a_damaged_index_is_never_store_ok_and_repair_restores_every_history() {
    // 256 flipped bytes at several places of sled's file: either the store is still whole
    // (sled never reads those bytes again) and `verify` may say so, or `verify` fails, writes
    // are refused and `repair` restores every history. Never a silent rollback.
    let mut damaged = 0;
    for at in [0.05, 0.3, 0.5, 0.7, 0.95] {
        let (env, ids) = store_with_versions(3, 6);
        let before = histories(&env, &ids);
        flip_index_bytes(&env, at, 256);
        let out = env.run(&["verify"]);
        if out.status.code() == Some(0) {
            assert!(stdout(&out).contains("store OK"));
            assert_eq!(
                histories(&env, &ids),
                before,
                "at {at}: verify passed a rollback"
            );
            continue;
        }
        damaged += 1;
        verify_fails(&env);
        // Write commands refuse the damaged index (they must not build on a rolled-back one).
        let out = env.run(&["sync"]);
        assert_eq!(out.status.code(), Some(1), "at {at}: {}", stdout(&out));
        assert!(stderr(&out).contains("repair"), "at {at}: {}", stderr(&out));
        repair_restores(&env, &ids, &before);
    }
    assert!(
        damaged > 0,
        "no flip damaged the index; the test proves nothing"
    );
}

#[test]
fn an_index_that_lost_its_last_commit_is_caught_and_repaired() {
    // A rolled-back index (here: an older copy of `db/` put back) passed verify before.
    let (env, ids) = store_with_versions(3, 2);
    let db = env.data_dir().join("db");
    let old = env.dir.path().join("db-old");
    copy_dir(&db, &old);
    for (i, id) in ids.iter().enumerate() {
        env.server
            .put_study(edit(&fixture_as(SOURCES[i % SOURCES.len()], id), |p| {
                p["designModule"]["enrollmentInfo"]["count"] = json!(9999);
            }));
    }
    env.ok(&["sync"]);
    let before = histories(&env, &ids);
    assert_eq!(before[&ids[0]].as_array().unwrap().len(), 3);
    std::fs::remove_dir_all(&db).unwrap();
    copy_dir(&old, &db);

    let text = verify_fails(&env);
    assert!(text.contains("up to version 3"), "{text}");
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
    // The old index could be read: what only it knows is kept.
    let out = env.ok(&["repair"]);
    assert!(out.contains("kept from the old index"), "{out}");
    repair_restores_after(&env, &ids, &before, &out);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn verify_changes_no_byte_of_the_store() {
    let (env, ids) = store_with_versions(2, 3);
    let before = snapshot(&env.data_dir());
    let out = env.ok(&["verify"]);
    assert!(out.contains("store OK"), "{out}");
    env.ok(&["verify", "--json"]);
    assert_eq!(snapshot(&env.data_dir()), before);
    // Read commands leave the index usable too.
    env.ok(&["history", &ids[0]]);
}
