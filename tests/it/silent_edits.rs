//! CT.gov's silent edits (changes it makes to a record without moving `LastUpdatePostDate`)
//! reach the store on the daemon's next scheduled run after `dataTimestamp` moves: its own move
//! of an unverified record to UNKNOWN, a publication it links, a site clean-up, results posted.
//! The daemon runs on its default schedule settings except the cron, which fires every second
//! so the test does not wait a day.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::daemon::{Daemon, EVERY_SECOND, wait_for, wait_running};
use crate::support::env::{TestEnv, fixture_as, stderr, stdout};

/// The number of versions `history NCT --json` lists.
fn versions(env: &TestEnv, nct: &str) -> Option<usize> {
    let out = env.run(&["history", nct, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()
        .or_else(|| v["versions"].as_array())
        .map(|a| a.len())
}

fn with(raw: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(raw).unwrap();
    f(&mut v);
    serde_json::to_string(&v).unwrap()
}

fn last_update(raw: &str) -> Value {
    let v: Value = serde_json::from_str(raw).unwrap();
    v["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"].clone()
}

/// Each kind of silent change, made on the fake server with `LastUpdatePostDate` (and
/// `lastUpdateSubmitDate`) untouched, becomes a new version on the first scheduled run after
/// `dataTimestamp` moves, and no run before that fetches the trials again.
#[test]
fn silent_edits_become_versions_on_the_next_scheduled_run() {
    let (status, refs, sites, results) =
        ("NCT09100001", "NCT09100002", "NCT09100003", "NCT09100004");
    let env = TestEnv::with_config(&[status, refs, sites, results], "", EVERY_SECOND);

    // What CT.gov will do silently, and the record before it did.
    let status_after = fixture_as("NCT04207047.json", status);
    let status_before = with(&status_after, |v| {
        let m = &mut v["protocolSection"]["statusModule"];
        m["overallStatus"] = json!("ACTIVE_NOT_RECRUITING");
        m.as_object_mut().unwrap().remove("lastKnownStatus");
    });
    let refs_before = fixture_as("NCT02985775.json", refs);
    let refs_after = with(&refs_before, |v| {
        v["protocolSection"]["referencesModule"] = json!({"references": [{
            "pmid": "39999999",
            "type": "DERIVED",
            "citation": "Doe J, et al. Outcomes of the trial. Lancet. 2026;1(1):1-9."
        }]});
    });
    let sites_after = with(&fixture_as("NCT02210780.json", sites), |v| {
        v["protocolSection"]["contactsLocationsModule"]["locations"][0]["city"] = json!("Naples");
    });
    let sites_before = with(&sites_after, |v| {
        v["protocolSection"]["contactsLocationsModule"]["locations"][0]["city"] = json!("Napoli");
    });
    let results_after = fixture_as("NCT00763412.json", results);
    let results_before = with(&results_after, |v| {
        v["hasResults"] = json!(false);
        v.as_object_mut().unwrap().remove("resultsSection");
    });
    for raw in [&status_before, &refs_before, &sites_before, &results_before] {
        env.server.put_study(raw.clone());
    }

    let mut d = Daemon::start(&env);
    wait_running(&env, &d);
    for id in [status, refs, sites, results] {
        wait_for(Duration::from_secs(20), &format!("{id} synced"), || {
            (versions(&env, id)? >= 1).then_some(())
        });
    }

    // CT.gov edits all four without moving their LastUpdatePostDate...
    for (before, after) in [
        (&status_before, &status_after),
        (&refs_before, &refs_after),
        (&sites_before, &sites_after),
        (&results_before, &results_after),
    ] {
        assert_eq!(last_update(before), last_update(after));
        env.server.put_study(after.clone());
    }
    // ...and while its dataTimestamp has not moved, the runs that fire skip the fetch.
    env.server.clear_requests();
    wait_for(Duration::from_secs(20), "two skipped runs", || {
        let asked = env.server.requests();
        (asked.iter().filter(|r| r.contains("/version")).count() >= 2).then_some(())
    });
    assert!(
        !env.server.requests().iter().any(|r| r.contains("/studies")),
        "fetched although dataTimestamp did not move: {:?}",
        env.server.requests()
    );
    for id in [status, refs, sites, results] {
        assert_eq!(versions(&env, id), Some(1), "{id}");
    }

    // CT.gov loads its daily refresh: the next run catches every silent edit.
    env.server.set_data_timestamp("2026-09-05T09:00:05");
    for id in [status, refs, sites, results] {
        wait_for(
            Duration::from_secs(20),
            &format!("{id}'s new version"),
            || (versions(&env, id)? >= 2).then_some(()),
        );
    }
    // One run did it: one /studies batch request for the four trials, no LastUpdatePostDate query.
    let studies: Vec<String> = env
        .server
        .requests()
        .into_iter()
        .filter(|r| r.contains("/studies"))
        .collect();
    assert_eq!(studies.len(), 1, "{studies:?}");
    assert!(!studies[0].contains("LastUpdatePostDate"), "{studies:?}");

    let diff = env.ok(&["diff", status]);
    assert!(diff.contains("UNKNOWN"), "{diff}");
    let diff = env.ok(&["diff", refs]);
    assert!(diff.contains("39999999"), "{diff}");
    let diff = env.ok(&["diff", sites]);
    assert!(diff.contains("Napoli") && diff.contains("Naples"), "{diff}");
    let diff = env.ok(&["diff", results]);
    assert!(diff.contains("hasResults"), "{diff}");

    let (code, _) = d.terminate();
    assert_eq!(code.code(), Some(0), "{}", d.log());
    let out = env.run(&["verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}
