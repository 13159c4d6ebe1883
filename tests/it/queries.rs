//! Black-box tests of query watches: `trialwatch query …` and `subscribe … --query` with the
//! real binary against the fake CT.gov search, the webhook receiver and the real SMTP server:
//! the silent baseline, entered (newly registered / newly matches) and left events and their
//! alerts, paging to the end, the `max_matches` cap, `--watch`, and an SMTP outage.

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::env::{TestEnv, edit, fixture, fixture_as, stderr, stdout};
use crate::support::fake_ctgov::filter_ids_of;
use crate::support::free_port;
use crate::support::smtp_server::{SmtpOptions, SmtpServer};
use crate::support::webhook_receiver::WebhookReceiver;

const FAST_ALERTS: &str =
    "[alerts]\nretry_base_secs = 0.05\nretry_cap_secs = 0.2\nwebhook_timeout_secs = 5\n";

/// The real CMV trial (China, PHASE1/PHASE2).
const CMV: &str = "NCT02985775";
/// Real trials the tests turn into CMV trials or new registrations.
const OTHER: &str = "NCT03418623";
const NEW: &str = "NCT99000001";

const DAY1: &str = "2026-12-01T06:00:00Z";
const DAY2: &str = "2026-12-02T06:00:00Z";
const DAY3: &str = "2026-12-03T06:00:00Z";

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

fn with_conditions(raw: &str, conditions: &[&str]) -> String {
    edit(raw, |p| {
        p["conditionsModule"]["conditions"] = json!(conditions)
    })
}

/// A real study registered on `day` under `id`, about CMV.
fn newly_registered(id: &str, day: &str) -> String {
    edit(&fixture_as(&format!("{OTHER}.json"), id), |p| {
        p["conditionsModule"]["conditions"] = json!(["Cytomegalovirus (CMV) Infection"]);
        p["statusModule"]["studyFirstSubmitDate"] = json!(day);
        p["statusModule"]["overallStatus"] = json!("RECRUITING");
    })
}

fn search_requests(env: &TestEnv) -> Vec<String> {
    env.server
        .requests()
        .into_iter()
        .filter(|r| r.contains("query.cond") || r.contains("filter.overallStatus"))
        .collect()
}

/// The first run records the members silently; the next one alerts on a newly registered
/// trial, on one that newly matches and on one that left, each once, with why.
#[test]
fn baseline_is_silent_then_entries_and_exits_alert_once_each() {
    let env = TestEnv::with_config(&[], "", FAST_ALERTS);
    let sink = WebhookReceiver::start();
    let cmv = fixture(&format!("{CMV}.json"));
    let other = fixture(&format!("{OTHER}.json"));
    env.server.put_study(cmv.clone());
    env.server.put_study(other.clone());
    let added = env.ok(&[
        "query",
        "add",
        "cmv",
        "--cond",
        "CMV infection",
        "--status",
        "RECRUITING",
        "COMPLETED",
    ]);
    assert!(
        added.contains(
            "watching query cmv: query.cond=CMV infection&filter.overallStatus=RECRUITING,COMPLETED"
        ),
        "{added}"
    );
    env.ok(&["subscribe", "webhook", &sink.url("/cmv"), "--query", "cmv"]);
    // A subscriber to field changes (the default) hears nothing of queries.
    env.ok(&["subscribe", "webhook", &sink.url("/changes")]);

    let out = ok_at(&env, DAY1, &["sync"]);
    assert!(out.contains("query cmv: 1 member (baseline"), "{out}");
    assert!(sink.requests().is_empty(), "the baseline alerted");
    let reqs = search_requests(&env);
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert!(
        reqs[0].contains("pageSize=1000") && reqs[0].contains("fields="),
        "{reqs:?}"
    );

    // Day 2: a new CMV trial registered yesterday, the other trial now about CMV too, and the
    // real CMV trial withdrawn (out of the status filter).
    env.server.put_study(newly_registered(NEW, "2026-12-01"));
    env.server.put_study(with_conditions(
        &other,
        &["CMV Infection", "Alcohol Use Disorder"],
    ));
    env.server.put_study(edit(&cmv, |p| {
        p["statusModule"]["overallStatus"] = json!("WITHDRAWN")
    }));
    let out = ok_at(&env, DAY2, &["sync"]);
    assert!(
        out.contains("query cmv: 2 members, 2 entered, 1 left"),
        "{out}"
    );
    let hits = sink.requests();
    assert!(hits.iter().all(|h| h.path() == "/cmv"), "{hits:?}");
    assert_eq!(hits.len(), 3, "{hits:?}");
    let by_trial = |id: &str| -> Value {
        hits.iter()
            .map(|h| h.json())
            .find(|b| b["nct_id"] == id)
            .unwrap_or_else(|| panic!("no alert for {id}: {hits:?}"))
    };
    let new = by_trial(NEW);
    assert_eq!(new["version"], 0);
    assert_eq!(new["changes"], json!([]));
    assert_eq!(new["event"]["kind"], "query-entered");
    assert_eq!(new["event"]["query"], "cmv");
    assert!(
        new["event"]["summary"]
            .as_str()
            .unwrap()
            .contains("newly registered"),
        "{new}"
    );
    assert_eq!(new["event"]["phase"], "PHASE2");
    assert!(
        new["event"]["sponsor"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{new}"
    );
    assert_eq!(new["trial"]["overall_status"], "RECRUITING");
    assert!(
        new["trial"]["title"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(
        new["trial"]["url"],
        format!("https://clinicaltrials.gov/study/{NEW}")
    );
    let matched = by_trial(OTHER);
    assert!(
        matched["event"]["summary"]
            .as_str()
            .unwrap()
            .contains("newly matches"),
        "{matched}"
    );
    assert!(
        matched["event"]["reason"]
            .as_str()
            .unwrap()
            .contains("2018-01-08"),
        "{matched}"
    );
    let left = by_trial(CMV);
    assert_eq!(left["event"]["kind"], "query-left");
    let why = left["event"]["reason"].as_str().unwrap();
    assert!(
        why.contains("no longer matches") && why.contains("COMPLETED"),
        "{left}"
    );
    assert!(
        left["event_id"]
            .as_str()
            .unwrap()
            .ends_with(".query-left-cmv-20261202"),
        "{left}"
    );

    // Nothing moved: no alert again.
    let out = ok_at(&env, DAY3, &["sync"]);
    assert!(
        out.contains("query cmv: 2 members, 0 entered, 0 left"),
        "{out}"
    );
    assert_eq!(sink.requests().len(), 3);

    let shown = env.json(&["query", "show", "cmv", "--json"]);
    assert_eq!(shown["members"].as_array().unwrap().len(), 3, "{shown}");
    let gone = shown["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["nct_id"] == CMV)
        .unwrap();
    assert_eq!(gone["entered_at"], "2026-12-01T06:00:00Z");
    assert_eq!(gone["left_at"], "2026-12-02T06:00:00Z");
    assert_eq!(gone["entered_because"], "baseline");
    assert!(env.ok(&["verify"]).contains("store OK"));
}

/// A query is paged to its end (the fake serves 2 a page here): nothing is capped silently.
#[test]
fn a_query_is_paged_to_the_end() {
    let env = TestEnv::with_config(&[], "", "");
    let ids: Vec<String> = (1..=5).map(|n| format!("NCT9900000{n}")).collect();
    for id in &ids {
        env.server.put_study(newly_registered(id, "2020-01-01"));
    }
    env.server.set_max_page_size(2);
    env.ok(&[
        "query",
        "add",
        "cmv",
        "--cond",
        "cytomegalovirus",
        "--status",
        "recruiting",
    ]);
    let out = env.ok(&["sync"]);
    assert!(out.contains("query cmv: 5 members"), "{out}");
    assert_eq!(search_requests(&env).len(), 3);
    let shown = env.json(&["query", "show", "cmv", "--json"]);
    let mut got: Vec<String> = shown["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["nct_id"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, ids);
}

/// Over `[queries] max_matches` the query is reported as too broad after one request, and its
/// membership stays as it was.
#[test]
fn a_query_over_the_cap_is_reported_too_broad() {
    let env = TestEnv::with_config(&[], "", "[queries]\nmax_matches = 2\n");
    for n in 1..=3 {
        env.server
            .put_study(newly_registered(&format!("NCT9900000{n}"), "2020-01-01"));
    }
    env.ok(&["query", "add", "cmv", "--cond", "cmv"]);
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("matches 3 trials, more than [queries] max_matches (2)"),
        "{text}"
    );
    assert_eq!(search_requests(&env).len(), 1);
    let listed = env.json(&["query", "list", "--json"]);
    assert!(
        listed[0]["problem"].as_str().unwrap().contains("narrow it"),
        "{listed}"
    );
    assert_eq!(listed[0]["members"], 0);
    assert!(
        env.json(&["query", "show", "cmv", "--json"])["members"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// `--watch` syncs the members with full change tracking; a member that leaves keeps its
/// history and is no longer fetched.
#[test]
fn watched_query_members_are_synced_and_leavers_keep_their_history() {
    let env = TestEnv::with_config(&[], "", "");
    let cmv = fixture(&format!("{CMV}.json"));
    env.server.put_study(cmv.clone());
    env.server.put_study(fixture(&format!("{OTHER}.json")));
    env.ok(&[
        "query", "add", "cmv", "--cond", "cmv", "--locn", "china", "--watch",
    ]);
    let out = env.ok(&["sync"]);
    assert!(out.contains("synced 1 trial "), "{out}");
    assert_eq!(
        env.json(&["history", CMV, "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A change while a member: a second version.
    env.server.put_study(edit(&cmv, |p| {
        p["statusModule"]["overallStatus"] = json!("TERMINATED")
    }));
    env.ok(&["sync"]);
    assert_eq!(
        env.json(&["history", CMV, "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // It leaves (no longer in China): kept, not fetched again.
    env.server.put_study(edit(&cmv, |p| {
        p["contactsLocationsModule"]["locations"] = json!([{"city": "Oslo", "country": "Norway"}])
    }));
    env.server.clear_requests();
    let out = env.ok(&["sync"]);
    assert!(out.contains("1 left"), "{out}");
    let fetched: Vec<String> = env
        .server
        .requests()
        .iter()
        .flat_map(|r| filter_ids_of(r))
        .collect();
    assert!(!fetched.contains(&CMV.to_string()), "{fetched:?}");
    assert_eq!(
        env.json(&["history", CMV, "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// An entry alert waits out an SMTP outage in the outbox and arrives once, listing the trial.
#[test]
fn a_query_alert_survives_an_smtp_outage() {
    let port = free_port();
    let tail = format!(
        "{FAST_ALERTS}[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n\
         from = \"trialwatch <trialwatch@example.org>\"\ntimeout_secs = 2\n\
         [[query]]\nname = \"cmv\"\ncond = \"cmv\"\n\
         [[subscription]]\nemail = \"team@example.org\"\nqueries = [\"cmv\"]\n"
    );
    let env = TestEnv::with_config(&[], "", &tail);
    env.server.put_study(fixture(&format!("{CMV}.json")));
    ok_at(&env, DAY1, &["sync"]);
    env.server.put_study(newly_registered(NEW, "2026-12-01"));
    let out = ok_at(&env, DAY2, &["sync"]);
    assert!(
        out.contains("alerts: 1 enqueued; 0 delivered, 1 waiting"),
        "{out}"
    );
    let smtp = SmtpServer::start_on(port, env.dir.path(), None, SmtpOptions::plain());
    std::thread::sleep(Duration::from_millis(350));
    let out = ok_at(&env, "2026-12-02T06:10:00Z", &["outbox", "deliver"]);
    assert!(out.contains("1 delivered"), "{out}");
    ok_at(&env, "2026-12-02T06:20:00Z", &["outbox", "deliver"]);
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let text = mails[0].text();
    assert!(text.contains(&format!("{NEW}: ")), "{text}");
    assert!(
        text.contains("entered query cmv (newly registered)"),
        "{text}"
    );
    assert!(text.contains("Why: newly registered on CT.gov"), "{text}");
    assert!(
        text.contains("Status: RECRUITING") && text.contains("Phase: PHASE2"),
        "{text}"
    );
    assert!(
        text.contains(&format!("https://clinicaltrials.gov/study/{NEW}")),
        "{text}"
    );
    assert!(
        mails[0]
            .message_id()
            .contains(".query-entered-cmv-20261202@")
    );
}

/// Bad parameters are refused before anything is stored, with the fix; `query remove` keeps
/// the configuration's queries.
#[test]
fn query_parameters_are_checked_before_storing() {
    let env = TestEnv::with_config(&[], "", "[[query]]\nname = \"cfg\"\nterm = \"asthma\"\n");
    let out = env.run(&[
        "query",
        "add",
        "x",
        "--cond",
        "cmv",
        "--status",
        "RECRUTING",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`RECRUTING` is not a CT.gov status; use one of"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["query", "add", "x", "--phase", "PHASE9"]);
    assert!(
        stderr(&out).contains("`PHASE9` is not a CT.gov phase"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["query", "add", "x", "--raw", "pageSize=3"]);
    assert!(
        stderr(&out).contains("`pageSize` is not a search parameter"),
        "{}",
        stderr(&out)
    );
    let listed = env.json(&["query", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["source"], "config");
    let out = env.run(&["query", "remove", "cfg"]);
    assert!(
        stderr(&out).contains("declared in the configuration"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&[
        "subscribe",
        "webhook",
        "https://example.org/h",
        "--query",
        "nope",
    ]);
    assert!(
        stderr(&out).contains("there is no such query"),
        "{}",
        stderr(&out)
    );
    env.ok(&[
        "query",
        "add",
        "x",
        "--spons",
        "pfizer",
        "--phase",
        "3",
        "--type",
        "interventional",
    ]);
    let shown = env.json(&["query", "show", "x", "--json"]);
    assert_eq!(
        shown["params"],
        "query.spons=pfizer&filter.advanced=AREA[Phase]PHASE3 AND AREA[StudyType]INTERVENTIONAL"
    );
    assert!(
        env.ok(&["query", "remove", "x"])
            .contains("no longer watching query x")
    );
    let bad = TestEnv::with_config(&[], "", "[[query]]\nname = \"b\"\nstatus = [\"DONE\"]\n");
    let out = bad.run(&["check-config"]);
    assert!(
        stderr(&out).contains("`query[0]`: --status: `DONE`"),
        "{}",
        stderr(&out)
    );
}

/// The daemon runs the queries with its scheduled syncs (here with nothing else watched),
/// syncs a `--watch` query's members, evaluates the deadlines after the run and delivers the
/// events: a not-yet-recruiting CMV trial whose completion date has passed is `stale-status`.
#[test]
fn the_daemon_runs_queries_and_evaluates_deadlines() {
    use crate::support::daemon::{Daemon, EVERY_SECOND, wait_for, wait_running};
    let sink = WebhookReceiver::start();
    let tail = format!(
        "{EVERY_SECOND}{FAST_ALERTS}[[query]]\nname = \"cmv\"\ncond = \"cmv\"\nwatch = true\n\
         [[subscription]]\nwebhook = {:?}\nevents = [\"stale-status\", \"query-entered\"]\n",
        sink.url("/d")
    );
    let env = TestEnv::with_config(&[], "", &tail);
    let stale = "NCT06171568"; // NOT_YET_RECRUITING, completion 2025-02-01
    env.server
        .put_study(edit(&fixture(&format!("{stale}.json")), |p| {
            p["conditionsModule"]["conditions"] = json!(["CMV Infection"]);
        }));
    let mut d = Daemon::start(&env);
    wait_running(&env, &d);
    wait_for(Duration::from_secs(20), "the stale-status alert", || {
        sink.requests()
            .iter()
            .map(|h| h.json())
            .find(|b| b["event"]["kind"] == "stale-status")
    });
    let shown = env.json(&["query", "show", "cmv", "--json"]);
    assert_eq!(shown["members"][0]["nct_id"], stale, "{shown}");
    assert_eq!(
        env.json(&["history", stale, "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The baseline told nobody of the entry; the deadline was told once.
    std::thread::sleep(Duration::from_millis(1500));
    let kinds: Vec<Value> = sink
        .requests()
        .iter()
        .map(|h| h.json()["event"]["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("stale-status")], "{}", d.log());
    d.terminate();
}
