//! Black-box tests of deadline alerts: the real binary with a fixed clock (`TRIALWATCH_NOW`)
//! against the fake CT.gov server and the webhook receiver: each rule's event, each told once
//! per trial, kind and due date, "no longer overdue" when results are posted, `trialwatch due`,
//! and subscriptions that did not choose these kinds hearing nothing.

use std::process::Output;

use serde_json::{Value, json};

use crate::support::env::{TestEnv, edit, fixture, stderr, stdout};
use crate::support::webhook_receiver::WebhookReceiver;

/// FDA-regulated drug, primary completion 2020-03-13 (actual), no results: due 2021-03-13.
const DUE: &str = "NCT03418623";
/// FDA-regulated device, UNKNOWN, primary completion 2018-10-31 (actual), no results,
/// verified 2019-12: overdue and lapsing in 2021.
const OVERDUE: &str = "NCT04207047";
/// Not yet recruiting; the test moves its completion date to 2021-01 and its verification to
/// 2019-12: stale and lapsing.
const STALE: &str = "NCT06171568";

fn at(env: &TestEnv, now: &str, args: &[&str]) -> Output {
    env.cmd(args).env("TRIALWATCH_NOW", now).output().unwrap()
}

fn ok_at(env: &TestEnv, now: &str, args: &[&str]) -> String {
    let out = at(env, now, args);
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn events(sink: &WebhookReceiver) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = sink
        .requests()
        .iter()
        // Field-change alerts (a version's `results.hasResults` change) are not deadlines.
        .filter(|h| h.json()["event"].is_object())
        .map(|h| {
            let b = h.json();
            (
                b["nct_id"].as_str().unwrap().to_string(),
                b["event"]["kind"].as_str().unwrap_or("").to_string(),
                h.event_id().rsplit('.').next().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn each_deadline_rule_is_told_once_and_leaving_overdue_too() {
    let env = TestEnv::with_config(&[DUE, OVERDUE, STALE], "", "");
    let sink = WebhookReceiver::start();
    env.server.put_study(fixture(&format!("{DUE}.json")));
    let overdue = fixture(&format!("{OVERDUE}.json"));
    env.server.put_study(overdue.clone());
    env.server
        .put_study(edit(&fixture(&format!("{STALE}.json")), |p| {
            p["statusModule"]["completionDateStruct"]["date"] = json!("2021-01");
            p["statusModule"]["statusVerifiedDate"] = json!("2019-12");
        }));
    env.ok(&[
        "subscribe",
        "webhook",
        &sink.url("/deadlines"),
        "--event",
        "results-due",
        "results-overdue",
        "results-no-longer-overdue",
        "verification-lapsing",
        "stale-status",
    ]);
    env.ok(&[
        "subscribe",
        "webhook",
        &sink.url("/critical"),
        "--event",
        "results-overdue",
        "--min-severity",
        "critical",
    ]);
    // Field changes only (the default): hears nothing of deadlines.
    env.ok(&["subscribe", "webhook", &sink.url("/changes")]);

    let out = ok_at(&env, "2021-03-01T06:00:00Z", &["sync"]);
    assert!(out.contains("deadlines: 5 new events"), "{out}");
    let got = events(&sink);
    let want = [
        (DUE, "results-due", "results-due-20210313"),
        (OVERDUE, "results-overdue", "results-overdue-20191031"),
        (OVERDUE, "results-overdue", "results-overdue-20191031"),
        (
            OVERDUE,
            "verification-lapsing",
            "verification-lapsing-20201231",
        ),
        (STALE, "stale-status", "stale-status-20210131"),
        (
            STALE,
            "verification-lapsing",
            "verification-lapsing-20201231",
        ),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(got, want);
    let hits = sink.requests();
    assert!(hits.iter().all(|h| h.path() != "/changes"), "{hits:?}");
    assert_eq!(hits.iter().filter(|h| h.path() == "/critical").count(), 1);
    let due = hits
        .iter()
        .map(|h| h.json())
        .find(|b| b["nct_id"] == DUE)
        .unwrap();
    assert_eq!(due["event"]["severity"], "notable");
    assert!(
        due["event"]["summary"]
            .as_str()
            .unwrap()
            .contains("results due 2021-03-13, in 12 days"),
        "{due}"
    );
    assert!(due["trial"]["title"].is_string());

    // `due` lists what holds today, most severe first.
    let listed: Value =
        serde_json::from_str(&ok_at(&env, "2021-03-01T07:00:00Z", &["due", "--json"])).unwrap();
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 5, "{listed}");
    assert_eq!(rows[0]["nct_id"], OVERDUE);
    assert_eq!(rows[0]["kind"], "results-overdue");
    assert_eq!(rows[0]["due"], "2019-10-31");

    // The same day again, and the next day: nothing new is told.
    ok_at(&env, "2021-03-01T12:00:00Z", &["sync"]);
    ok_at(&env, "2021-03-02T06:00:00Z", &["sync"]);
    assert_eq!(sink.requests().len(), 6);

    // Results posted: "no longer overdue", once.
    env.server
        .put_study(edit(&overdue, |_| {}).replace("\"hasResults\":false", "\"hasResults\":true"));
    let out = ok_at(&env, "2021-03-03T06:00:00Z", &["sync"]);
    assert!(out.contains("deadlines: 1 new event"), "{out}");
    ok_at(&env, "2021-03-04T06:00:00Z", &["sync"]);
    let got = events(&sink);
    assert_eq!(got.len(), 7, "{got:?}");
    assert!(got.contains(&(
        OVERDUE.to_string(),
        "results-no-longer-overdue".to_string(),
        "results-no-longer-overdue-20191031".to_string()
    )));
    // DUE becomes overdue after its grace (2021-04-12): a new event for it.
    let out = ok_at(&env, "2021-04-13T06:00:00Z", &["sync"]);
    assert!(out.contains("deadlines: 1 new event"), "{out}");
    assert!(env.ok(&["verify"]).contains("store OK"));
}
