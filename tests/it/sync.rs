//! Black-box tests of `trialwatch sync` and the read commands: the real binary against the fake
//! CT.gov server, fed with real CT.gov fixtures that are changed between syncs.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::env::{BIN, TestEnv, edit, fixture, fixture_as, stderr, stdout};
use crate::support::fake_ctgov::Fault;

fn paths(changes: &Value) -> BTreeSet<String> {
    changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap().to_string())
        .collect()
}

/// Two syncs with a changed status, date, enrollment, site and criteria give exactly those
/// field changes, with both values kept.
#[test]
fn edited_fields_become_exactly_those_changes() {
    let id = "NCT03418623";
    let env = TestEnv::new(&[id]);
    let v1 = fixture("NCT03418623.json");
    env.server.put_study(v1.clone());
    let out = env.ok(&["sync"]);
    assert!(out.contains("1 new version,"), "{out}");

    let v2 = edit(&v1, |p| {
        p["statusModule"]["overallStatus"] = json!("TERMINATED");
        p["statusModule"]["completionDateStruct"]["date"] = json!("2027-06-30");
        p["designModule"]["enrollmentInfo"]["count"] = json!(12);
        let crit = p["eligibilityModule"]["eligibilityCriteria"]
            .as_str()
            .unwrap()
            .to_string();
        p["eligibilityModule"]["eligibilityCriteria"] =
            json!(format!("{crit}\n* New: no prior anti-PD-1 therapy"));
        p["contactsLocationsModule"]["locations"]
            .as_array_mut()
            .unwrap()
            .push(
                json!({"facility": "Charité", "city": "Berlin", "country": "Germany",
                         "geoPoint": {"lat": 52.5, "lon": 13.4}}),
            );
    });
    env.server.put_study(v2);
    let out = env.ok(&["sync"]);
    assert!(out.contains("1 new version,"), "{out}");

    let d = env.json(&["diff", id, "--json"]);
    assert_eq!(d["nct_id"], id);
    assert_eq!((d["from"].as_u64(), d["to"].as_u64()), (Some(1), Some(2)));
    let expected: BTreeSet<String> = [
        "status.overallStatus",
        "status.completionDate",
        "design.enrollmentCount",
        "eligibility.criteria",
        "locations.charité|berlin||germany",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(paths(&d["changes"]), expected);
    let by_path = |p: &str| {
        d["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == p)
            .unwrap()
            .clone()
    };
    let status = by_path("status.overallStatus");
    assert_eq!(status["kind"], "changed");
    assert_eq!(status["old"], "COMPLETED");
    assert_eq!(status["new"], "TERMINATED");
    assert_eq!(by_path("design.enrollmentCount")["new"], 12);
    let site = by_path("locations.charité|berlin||germany");
    assert_eq!(site["kind"], "added");
    assert!(site.get("old").is_none());
    assert_eq!(site["new"]["city"], "Berlin");

    // history agrees with diff, oldest first, and the text form names the status change.
    let h = env.json(&["history", id, "--json"]);
    assert_eq!(h.as_array().unwrap().len(), 2);
    assert_eq!(h[0]["version"], 1);
    assert_eq!(h[1]["version"], 2);
    assert_eq!(paths(&h[1]["changes"]), expected);
    let text = env.ok(&["history", id]);
    assert!(text.contains("COMPLETED → TERMINATED"), "{text}");

    // changes across trials: filtered by field; first snapshots only on request.
    let c = env.json(&["changes", "--since", "1h", "--field", "status.*", "--json"]);
    let rows = c.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{c}");
    assert!(rows.iter().all(|r| r["nct_id"] == id && r["version"] == 2));
    let all = env.json(&["changes", "--since", "1h", "--include-first", "--json"]);
    assert!(all.as_array().unwrap().len() > rows.len());

    // The criteria diff is readable text in the terminal form.
    let dt = env.ok(&["diff", id]);
    assert!(dt.contains("New: no prior anti-PD-1 therapy"), "{dt}");

    // show --version 1 still gives the old record.
    let old = env.json(&["show", id, "--version", "1", "--format", "json"]);
    assert_eq!(old["status"]["overallStatus"], "COMPLETED");
}

/// Regression guard for derived-data churn: the NCT02552212 pair differs only in
/// derivedSection (versionHolder, browse-list order), so the second sync stores no version.
#[test]
fn derived_data_churn_makes_no_version() {
    let id = "NCT02552212";
    let env = TestEnv::new(&[id]);
    env.server.put_study(fixture("NCT02552212.json"));
    env.ok(&["sync"]);
    env.server.put_study(fixture(
        "versions/NCT02552212.versionHolder-2024-01-03.json",
    ));
    let out = env.ok(&["sync", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["unchanged"], 1, "{out}");
    assert_eq!(report["new_versions"], 0, "{out}");
    let h = env.json(&["history", id, "--json"]);
    assert_eq!(h.as_array().unwrap().len(), 1);
}

/// Transient faults (429 with Retry-After, 500, an HTML page, a truncated body) are retried
/// and the sync ends right; nothing broken is stored.
#[test]
fn transient_faults_are_retried_and_end_right() {
    let id = "NCT03418623";
    let env = TestEnv::new(&[id]);
    env.server.put_study(fixture("NCT03418623.json"));
    env.server.push_fault(Fault::TooManyRequests {
        retry_after_secs: Some(1),
    });
    env.server.push_fault(Fault::ServerError);
    env.server.push_fault(Fault::Html);
    let t0 = std::time::Instant::now();
    let out = env.ok(&["sync", "--json"]);
    assert!(
        t0.elapsed().as_millis() >= 900,
        "Retry-After was not honoured"
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["new_versions"], 1, "{out}");
    assert_eq!(report["requests"], 4, "{out}");

    // A truncated answer on the next sync must not become a version (nor a failure).
    env.server.push_fault(Fault::Truncated);
    let report: Value = serde_json::from_str(&env.ok(&["sync", "--json"])).unwrap();
    assert_eq!(report["unchanged"], 1);
    assert_eq!(
        env.json(&["history", id, "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// Trials of one batch that CT.gov never answered share one `failed:` line with the reason.
#[test]
fn a_failed_batch_is_reported_once_for_all_its_trials() {
    let ids = ["NCT03418623", "NCT06171568", "NCT00973089"];
    let env = TestEnv::new(&ids);
    for id in ids {
        env.server.put_study(fixture(&format!("{id}.json")));
    }
    for _ in 0..4 {
        env.server.push_fault(Fault::ServerError);
    }
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stdout(&out);
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("failed:")).collect();
    assert_eq!(failed.len(), 1, "{text}");
    for id in ids {
        assert!(failed[0].contains(id), "{text}");
    }
    assert!(failed[0].contains("(3 trials)"), "{text}");
}

/// `sync` shows a progress line on a terminal and never when its output is piped.
#[test]
fn progress_shows_on_a_terminal_and_never_when_piped() {
    let id = "NCT03418623";
    let env = TestEnv::new(&[id]);
    env.server.put_study(fixture("NCT03418623.json"));
    let out = env.run(&["sync"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("syncing:"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("syncing:"), "{}", stdout(&out));

    // The same command under a pseudo-terminal (util-linux `script`, part of every Debian and
    // Ubuntu base system).
    let line = format!(
        "{} --config '{}' sync",
        BIN,
        env.config.display().to_string().replace('\'', "'\\''")
    );
    let tty = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("RUST_LOG")
        .output()
        .expect("`script` (util-linux) runs the command under a terminal");
    let text = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{text}");
    assert!(text.contains("syncing: 1/1 trials"), "{text}");
}

/// On a terminal the bar shows trials done, and when CT.gov throttles or fails, which attempt
/// comes next and the timeout, instead of a silent screen.
#[test]
fn the_progress_bar_says_when_ctgov_is_being_retried() {
    let id = "NCT03418623";
    let env = TestEnv::new(&[id]);
    env.server.put_study(fixture("NCT03418623.json"));
    env.server.push_fault(Fault::TooManyRequests {
        retry_after_secs: Some(1),
    });
    let line = format!(
        "{} --config '{}' sync",
        BIN,
        env.config.display().to_string().replace('\'', "'\\''")
    );
    let tty = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("RUST_LOG")
        .output()
        .expect("`script` (util-linux) runs the command under a terminal");
    let text = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{text}");
    assert!(
        text.contains("waiting for CT.gov: attempt 2 of 4 in 1.0 s (HTTP 429), 5.0 s timeout"),
        "{text}"
    );
    assert!(text.contains("syncing: 1/1 trials"), "{text}");
    assert!(text.contains("1 new version"), "{text}");
}

/// When CT.gov keeps failing, the trial is reported (exit 2) and its stored history is intact.
#[test]
fn persistent_failure_is_reported_and_loses_nothing() {
    let id = "NCT03418623";
    let env = TestEnv::new(&[id]);
    env.server.put_study(fixture("NCT03418623.json"));
    env.ok(&["sync"]);
    for _ in 0..4 {
        env.server.push_fault(Fault::ServerError);
    }
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("failed: {id}")), "{text}");
    assert!(text.contains("500"), "{text}");
    // The reason is said once, not once per attempt or per trial.
    assert_eq!(text.matches("HTTP 500").count(), 1, "{text}");
    assert_eq!(text.matches("gave up on").count(), 1, "{text}");
    assert_eq!(
        env.json(&["history", id, "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// A well-formed unknown ID is reported per trial; the others sync.
#[test]
fn unknown_trial_is_reported_per_trial() {
    let env = TestEnv::new(&["NCT03418623", "NCT09999999"]);
    env.server.put_study(fixture("NCT03418623.json"));
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(
        text.contains("failed: NCT09999999: NCT09999999 is not on ClinicalTrials.gov (404)"),
        "{text}"
    );
    assert!(text.contains("1 new version,"), "{text}");
}

/// Malformed IDs fail at the edge with a message that says what a valid one looks like.
#[test]
fn malformed_ids_are_refused_clearly() {
    let env = TestEnv::new(&[]);
    // A usage error (64), not a fatal one.
    let out = env.run(&["sync", "NCT123"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("`NCT123` is not an NCT ID: expected `NCT` followed by 8 digits"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["history", "02241018"]);
    assert_eq!(out.status.code(), Some(64));

    // In the config: the file, the key and the bad value are named.
    let bad = env.dir.path().join("bad.toml");
    std::fs::write(&bad, "[watch]\nnct_ids = [\"NCT02241018\", \"NCTX\"]\n").unwrap();
    let out = TestEnv::new(&[])
        .cmd(&["check-config"])
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(
        err.contains("`watch.nct_ids[1]`: `NCTX` is not an NCT ID"),
        "{err}"
    );
}

/// Requests per sync are ⌈N / batch_size⌉, never one per trial.
#[test]
fn requests_are_batched() {
    let ids: Vec<String> = (1..=250)
        .map(|i| format!("NCT{:08}", 90_000_000 + i))
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let env = TestEnv::new(&refs);
    let sources = ["NCT03418623.json", "NCT00973089.json", "NCT06171568.json"];
    for (i, id) in ids.iter().enumerate() {
        env.server.put_study(fixture_as(sources[i % 3], id));
    }
    let report: Value = serde_json::from_str(&env.ok(&["sync", "--json"])).unwrap();
    assert_eq!(report["new_versions"], 250);
    assert_eq!(report["requests"], 3, "{report}");
    let served = env.server.requests();
    assert_eq!(served.len(), 3, "{served:?}");
    assert!(
        served.iter().all(|r| r.contains("filter.ids=")),
        "{served:?}"
    );
}

/// The watch list kept in the store is merged with the config's and synced.
#[test]
fn watch_list_in_the_store() {
    let env = TestEnv::new(&["NCT03418623"]);
    env.server.put_study(fixture("NCT03418623.json"));
    env.server.put_study(fixture("NCT00973089.json"));
    assert!(
        env.ok(&["watch", "add", "nct00973089"])
            .contains("watching NCT00973089")
    );
    let list = env.json(&["watch", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let report: Value = serde_json::from_str(&env.ok(&["sync", "--json"])).unwrap();
    assert_eq!(report["new_versions"], 2);
    let out = env.ok(&["watch", "remove", "NCT03418623"]);
    assert!(out.contains("listed in the configuration"), "{out}");
    env.ok(&["watch", "remove", "NCT00973089"]);
    assert_eq!(
        env.json(&["watch", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Its history is kept.
    assert_eq!(
        env.json(&["history", "NCT00973089", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// `show --at` picks the version current at that time.
#[test]
fn show_at_a_time_picks_the_version_then_current() {
    let id = "NCT03418623";
    let env = TestEnv::new(&[id]);
    let v1 = fixture("NCT03418623.json");
    env.server.put_study(v1.clone());
    let mut c = env.cmd(&["sync"]);
    assert!(
        c.env("TRIALWATCH_NOW", "2026-01-10T00:00:00Z")
            .status()
            .unwrap()
            .success()
    );
    env.server.put_study(edit(&v1, |p| {
        p["statusModule"]["overallStatus"] = json!("SUSPENDED");
    }));
    let mut c = env.cmd(&["sync"]);
    assert!(
        c.env("TRIALWATCH_NOW", "2026-02-10T00:00:00Z")
            .status()
            .unwrap()
            .success()
    );
    let at = |t: &str| {
        env.json(&["show", id, "--at", t, "--format", "json"])["status"]["overallStatus"].clone()
    };
    assert_eq!(at("2026-01-20"), "COMPLETED");
    assert_eq!(at("2026-02-10T00:00:00Z"), "SUSPENDED");
    let out = env.run(&["show", id, "--at", "2025-12-31"]);
    assert_eq!(out.status.code(), Some(1));
}
