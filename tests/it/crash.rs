//! Crash safety: `trialwatch sync` killed with SIGKILL at random moments, over and over, never
//! leaves a store that fails `trialwatch verify` or a heads file that disagrees with the index,
//! and a later sync completes the work.
//! (Like sled's own crash test: the parent kills a child mid-write and checks invariants.)

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::env::{TestEnv, edit, fixture_as};

const TRIALS: usize = 300;

#[test]
fn kill_9_during_sync_never_corrupts_the_store() {
    let ids: Vec<String> = (1..=TRIALS)
        .map(|i| format!("NCT{:08}", 80_000_000 + i))
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let env = TestEnv::with_config(&refs, "batch_size = 20", "");
    let sources = [
        "NCT02552212.json",
        "NCT03418623.json",
        "NCT00763412.json",
        "NCT05594173.json",
        "NCT06171568.json",
    ];
    let base: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| fixture_as(sources[i % sources.len()], id))
        .collect();
    let mut rng = fastrand::Rng::with_seed(0x7e57);
    let mut kills = 0;
    for round in 0..12 {
        // Every round changes every trial, so each sync has a version to write for each.
        for raw in &base {
            env.server.put_study(edit(raw, |p| {
                p["designModule"]["enrollmentInfo"]["count"] = json!(1000 + round);
            }));
        }
        let mut child = env
            .cmd(&["sync"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(20..600)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL on Unix
            kills += 1;
        }
        let _ = child.wait();
        let out = env.run(&["verify", "--json"]);
        let rep: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("round {round}: verify printed no JSON ({e}): {out:?}"));
        assert_eq!(out.status.code(), Some(0), "round {round}: {rep}");
        assert!(
            rep["problems"].as_array().unwrap().is_empty(),
            "round {round}: {rep}"
        );
        // The heads file a kill left (if any) says what the index says: a one-trial read from
        // it equals the same read once the file is gone and the index answers.
        let heads = env.data_dir().join("heads");
        if heads.exists() {
            let from_heads: Vec<Value> = ids
                .iter()
                .step_by(61)
                .map(|id| env.json(&["history", id, "--json"]))
                .collect();
            std::fs::remove_file(&heads).unwrap();
            for (id, h) in ids.iter().step_by(61).zip(&from_heads) {
                assert_eq!(
                    &env.json(&["history", id, "--json"]),
                    h,
                    "round {round}: {id}"
                );
            }
        }
    }
    assert!(
        kills >= 6,
        "only {kills} syncs were killed mid-run; the test proves little"
    );

    // A complete sync afterwards brings every trial to the server's current record.
    env.ok(&["sync"]);
    let rep = env.json(&["verify", "--json"]);
    assert!(rep["problems"].as_array().unwrap().is_empty(), "{rep}");
    assert_eq!(rep["trials"], TRIALS);
    for id in ids.iter().step_by(37) {
        let r = env.json(&["show", id, "--format", "json"]);
        assert_eq!(r["design"]["enrollmentCount"], 1011, "{id}");
    }
}
