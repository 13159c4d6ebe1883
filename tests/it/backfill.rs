//! Black-box tests of the backfill (`trialwatch backfill`, `[watch] backfill = true`): the real
//! binary against the fake CT.gov's record-history endpoints, serving real API v2 fixtures
//! rendered as the website's HTML (`support::website_html`). Also the library-level round trip
//! that every real fixture, served as a history version, reads back as its API v2 record.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde_json::{Value, json};
use trialwatch::ctgov::wire;
use trialwatch::normalize::history::read_history_body;
use trialwatch::normalize::markup::same_ignoring_markup;
use trialwatch::normalize::normalize;

use crate::support::env::{TestEnv, edit, fixture, fixture_as, fixtures_dir, stderr, stdout};
use crate::support::fake_ctgov::Fault;
use crate::support::webhook_receiver::WebhookReceiver;
use crate::support::website_html::{history_body, history_study};

const ID: &str = "NCT03418623";
/// NCT03418623's `lastUpdatePostDate`: the day CT.gov posted the version API v2 serves.
const POSTED: &str = "2020-10-08";

fn on() -> TestEnv {
    TestEnv::with_options(&[ID], "", "backfill = true", "")
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// `n` days before `date`, as `YYYY-MM-DD`.
fn days_before(date: &str, n: i64) -> String {
    (day(date) - chrono::Duration::days(n)).to_string()
}

/// A study edited as one of its older versions: posted on `posted`, with `f` applied.
fn older(raw: &str, posted: &str, f: impl FnOnce(&mut Value)) -> String {
    edit(raw, |p| {
        p["statusModule"]["lastUpdatePostDateStruct"]["date"] = json!(posted);
        f(p);
    })
}

/// `(date, html study)` pairs for the fake, one per API v2 study, on consecutive days ending on
/// `last`.
fn as_history(studies: &[String], last: &str, double: bool) -> Vec<(String, String)> {
    let n = studies.len() as i64;
    studies
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                days_before(last, n - 1 - i as i64),
                history_study(s, double),
            )
        })
        .collect()
}

/// An entry of `history --json` as (version, source, ctgov_version, ctgov_posted, backfilled).
type Provenance<'a> = (u64, &'a str, Option<u64>, Option<&'a str>, bool);

fn history(env: &TestEnv, id: &str) -> Vec<Value> {
    env.json(&["history", id, "--json"])
        .as_array()
        .unwrap()
        .clone()
}

/// The paths an entry of `history --json` changed, without the post date every version moves.
fn paths(entry: &Value) -> BTreeSet<String> {
    entry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap().to_string())
        .filter(|p| p != "status.lastUpdatePostDate")
        .collect()
}

/// The CT.gov versions of `id` whose body was requested, in request order.
fn version_fetches(requests: &[String], id: &str) -> Vec<u32> {
    let prefix = format!("/api/int/studies/{id}/history/");
    requests
        .iter()
        .filter_map(|r| r.strip_prefix(&prefix).map(|v| v.parse().unwrap()))
        .collect()
}

/// (list batches, history indexes, version bodies, anything else) among the requests served.
fn request_kinds(requests: &[String]) -> (usize, usize, usize, Vec<String>) {
    let (mut list, mut index, mut version, mut other) = (0, 0, 0, Vec::new());
    for r in requests {
        if r.starts_with("/api/v2/studies?") {
            list += 1;
        } else if r.starts_with("/api/int/studies/") && r.ends_with("/history") {
            index += 1;
        } else if r.starts_with("/api/int/studies/") && r.contains("/history/") {
            version += 1;
        } else {
            other.push(r.clone());
        }
    }
    (list, index, version, other)
}

/// Every real API v2 study among the fixtures, labelled: the full studies and each study of the
/// list pages.
fn real_studies() -> Vec<(String, String)> {
    let dir = fixtures_dir().join("ctgov");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let mut out = Vec::new();
    for p in files {
        let n = name(&p);
        let raw = fs::read_to_string(&p).unwrap();
        if n.starts_with("NCT") {
            out.push((n, raw));
        } else if n.starts_with("page-") || n.starts_with("list-") {
            let page: Value = serde_json::from_str(&raw).unwrap();
            for (i, s) in page["studies"].as_array().unwrap().iter().enumerate() {
                out.push((format!("{n}[{i}]"), serde_json::to_string(s).unwrap()));
            }
        }
    }
    out
}

/// Every real fixture served as a history version (website HTML, escaped once or twice) reads
/// back as a record equal to its API v2 record, markup aside: the HTML reader loses no field
/// and no text of real data.
#[test]
fn every_real_fixture_reads_back_from_its_history_html() {
    let studies = real_studies();
    assert!(studies.len() > 20, "{} studies", studies.len());
    let mut failures = Vec::new();
    for (label, raw) in &studies {
        let study: wire::Study = serde_json::from_str(raw).unwrap();
        let want = Value::Object(normalize(&study).unwrap().0);
        for double in [false, true] {
            let body = history_body(7, raw, double);
            let h = read_history_body(&body).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(h.version, 7);
            let study: wire::Study = serde_json::from_value(h.study).unwrap();
            let got = Value::Object(normalize(&study).unwrap().0);
            if !same_ignoring_markup(&want, &got) {
                let (w, g) = (want.as_object().unwrap(), got.as_object().unwrap());
                let mut diffs = Vec::new();
                for (section, wv) in w {
                    for (k, a) in wv.as_object().into_iter().flatten() {
                        let b = g.get(section).and_then(|s| s.get(k));
                        if !b.is_some_and(|b| same_ignoring_markup(a, b)) {
                            diffs.push(format!("{section}.{k}: {a} vs {b:?}"));
                        }
                    }
                }
                for (section, gv) in g {
                    for k in gv.as_object().into_iter().flatten().map(|(k, _)| k) {
                        if w.get(section).and_then(|s| s.get(k)).is_none() {
                            diffs.push(format!("{section}.{k}: only in the history record"));
                        }
                    }
                }
                failures.push(format!("{label} (double: {double}): {}", diffs.join("; ")));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The NCT03418623 chain of the brief: v0 not yet recruiting with 100 planned, v1 recruiting,
/// v2 with 150 planned and a later completion date, v3 the real record (posted on `POSTED`).
fn chain() -> Vec<String> {
    let fx = fixture(&format!("{ID}.json"));
    let v0 = older(&fx, &days_before(POSTED, 3), |p| {
        p["statusModule"]["overallStatus"] = json!("NOT_YET_RECRUITING");
        p["designModule"]["enrollmentInfo"] = json!({"count": 100, "type": "ESTIMATED"});
    });
    let v1 = older(&v0, &days_before(POSTED, 2), |p| {
        p["statusModule"]["overallStatus"] = json!("RECRUITING");
    });
    let v2 = older(&v1, &days_before(POSTED, 1), |p| {
        p["designModule"]["enrollmentInfo"]["count"] = json!(150);
        p["statusModule"]["completionDateStruct"] =
            json!({"date": "2021-06-30", "type": "ESTIMATED"});
    });
    vec![v0, v1, v2, fx]
}

/// A first sync with backfill on stores the observed snapshot and CT.gov's three older
/// versions before it, each with the changes from the one before, the right provenance, and
/// exactly one request per version it needed (one list batch, one index, three bodies).
#[test]
fn sync_backfills_a_chain_of_real_versions_in_timeline_order() {
    let env = on();
    let versions = chain();
    env.server.put_study(versions[3].clone());
    env.server
        .put_history(ID, as_history(&versions, POSTED, false));
    let out = env.ok(&["sync"]);
    assert!(
        out.contains("history: 3 older versions backfilled"),
        "{out}"
    );
    let h = history(&env, ID);
    let order: Vec<Provenance> = h
        .iter()
        .map(|e| {
            (
                e["version"].as_u64().unwrap(),
                e["source"].as_str().unwrap(),
                e["ctgov_version"].as_u64(),
                e["ctgov_posted"].as_str(),
                e["backfilled"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            (2, "ctgov", Some(0), Some("2020-10-05"), true),
            (3, "ctgov", Some(1), Some("2020-10-06"), true),
            (4, "ctgov", Some(2), Some("2020-10-07"), true),
            (1, "observed", Some(3), Some(POSTED), false),
        ]
    );
    // The oldest is a first snapshot: every field added.
    let first = h[0]["changes"].as_array().unwrap();
    assert!(first.len() > 20, "{first:?}");
    assert!(first.iter().all(|c| c["kind"] == "added"));
    assert_eq!(
        paths(&h[1]),
        BTreeSet::from(["status.overallStatus".to_string()])
    );
    let status = &h[1]["changes"][0];
    assert_eq!(
        (&status["old"], &status["new"]),
        (&json!("NOT_YET_RECRUITING"), &json!("RECRUITING"))
    );
    let want: BTreeSet<String> = [
        "design.enrollmentCount",
        "status.completionDate",
        "status.completionDateType",
    ]
    .map(String::from)
    .into();
    assert_eq!(paths(&h[2]), want);
    // The observed snapshot's changes are the real record's differences from v2.
    let want: BTreeSet<String> = [
        "design.enrollmentCount",
        "design.enrollmentType",
        "status.completionDate",
        "status.completionDateType",
        "status.overallStatus",
    ]
    .map(String::from)
    .into();
    assert_eq!(paths(&h[3]), want, "{:#}", h[3]["changes"]);
    let enrollment = h[3]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "design.enrollmentCount")
        .unwrap();
    assert_eq!(
        (&enrollment["old"], &enrollment["new"]),
        (&json!(150), &json!(24))
    );

    let requests = env.server.requests();
    let (list, index, bodies, other) = request_kinds(&requests);
    // Version 3 is fetched too: only its content shows it is the observed snapshot.
    assert_eq!((list, index, bodies), (1, 1, 4), "{requests:#?}");
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(version_fetches(&requests, ID), [0, 1, 2, 3]);
    env.ok(&["verify"]);
}

/// History whose last version is the observed record itself, rendered as HTML and posted on
/// another day than its `lastUpdatePostDate` says (so it cannot be matched by date and is
/// fetched): it is recognised markup-blind, not stored a second time, the snapshot takes its
/// CT.gov number, and the snapshot's changes against the older edit hold no change that is
/// only markup. Escaped once and twice.
#[test]
fn the_observed_record_served_as_html_is_not_stored_twice() {
    for double in [false, true] {
        let env = on();
        let fx = fixture(&format!("{ID}.json"));
        let v0 = older(&fx, "2020-09-01", |p| {
            p["designModule"]["enrollmentInfo"]["count"] = json!(30);
            p["identificationModule"]["briefTitle"] = json!("An older title");
        });
        env.server.put_study(fx.clone());
        env.server.put_history(
            ID,
            vec![
                ("2020-09-01".to_string(), history_study(&v0, double)),
                ("2020-10-09".to_string(), history_study(&fx, double)),
            ],
        );
        env.ok(&["sync"]);
        let h = history(&env, ID);
        let order: Vec<(u64, Option<u64>, bool)> = h
            .iter()
            .map(|e| {
                (
                    e["version"].as_u64().unwrap(),
                    e["ctgov_version"].as_u64(),
                    e["backfilled"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            order,
            [(2, Some(0), true), (1, Some(1), false)],
            "double: {double}"
        );
        assert_eq!(h[1]["ctgov_posted"], "2020-10-09");
        let want: BTreeSet<String> = ["design.enrollmentCount", "identification.briefTitle"]
            .map(String::from)
            .into();
        assert_eq!(
            paths(&h[1]),
            want,
            "double: {double}: {:#}",
            h[1]["changes"]
        );
        for c in h[1]["changes"].as_array().unwrap() {
            if let (Some(a), Some(b)) = (c.get("old"), c.get("new")) {
                assert!(!same_ignoring_markup(a, b), "markup-only change {c}");
            }
        }
        let requests = env.server.requests();
        assert_eq!(version_fetches(&requests, ID), [0, 1], "double: {double}");
    }
}

/// A backfill killed with SIGKILL in the middle and run again: exits 0, the store verifies,
/// each trial has every CT.gov version exactly once, a trial is either wholly backfilled or
/// not at all after the kill, and the second run fetches no version of a trial the first run
/// completed.
#[test]
fn a_backfill_killed_mid_run_resumes_without_refetching_or_duplicating() {
    let ids: Vec<String> = (1..=20).map(|n| format!("NCT091000{n:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let env = TestEnv::with_config(&refs, "", "");
    for id in &ids {
        let fx = fixture_as(&format!("{ID}.json"), id);
        let mut versions: Vec<String> = (0..9)
            .map(|k| {
                older(&fx, &days_before(POSTED, 9 - k), |p| {
                    p["designModule"]["enrollmentInfo"]["count"] = json!(100 + k);
                })
            })
            .collect();
        versions.push(fx.clone());
        env.server.put_study(fx);
        env.server
            .put_history(id, as_history(&versions, POSTED, false));
    }
    env.ok(&["sync"]);
    for _ in 0..180 {
        env.server
            .push_fault_for("/history/", Fault::Delay(Duration::from_millis(60)));
    }
    env.server.clear_requests();
    let mut child = env.cmd(&["backfill"]).spawn().unwrap();
    let t0 = Instant::now();
    while version_count(&env.server.requests()) < 50 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the backfill made no progress"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let run1 = env.server.requests();
    let mut done = BTreeSet::new();
    for id in &ids {
        let n = history(&env, id).len();
        assert!(
            n == 1 || n == 10,
            "{id}: {n} versions after the kill: not atomic"
        );
        if n == 10 {
            done.insert(id.clone());
        }
    }
    assert!(
        !done.is_empty() && done.len() < ids.len(),
        "the kill should land mid-run: {} of 20 done",
        done.len()
    );
    env.server.clear_requests();
    let out = env.run(&["backfill"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let run2 = env.server.requests();
    let verify = env.run(&["verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
    for id in &ids {
        let h = history(&env, id);
        let ctgov: Vec<u64> = h
            .iter()
            .map(|e| e["ctgov_version"].as_u64().unwrap())
            .collect();
        assert_eq!(ctgov, (0..10).collect::<Vec<u64>>(), "{id}");
        // A version asked for twice in a row is the client's retry after a transient failure
        // (a slow answer on a loaded machine): one fetch, which stores nothing twice (the
        // history above says so).
        let fetches = |requests: &[String]| {
            let mut f = version_fetches(requests, id);
            f.dedup();
            f
        };
        let (f1, f2) = (fetches(&run1), fetches(&run2));
        if done.contains(id) {
            assert_eq!(f1, (0..10).collect::<Vec<u32>>(), "{id}: run 1");
            assert!(
                f2.is_empty(),
                "{id} was done by run 1 but run 2 fetched {f2:?}"
            );
        } else {
            assert_eq!(
                f2,
                (0..10).collect::<Vec<u32>>(),
                "{id}: run 2\n{}",
                stderr(&out)
            );
        }
    }
}

fn version_count(requests: &[String]) -> usize {
    request_kinds(requests).2
}

/// Backfilled versions are history, not news: a webhook subscriber gets nothing for them, and
/// exactly one alert for the next real change.
#[test]
fn backfilled_versions_alert_nobody() {
    let env = TestEnv::with_options(
        &[ID],
        "",
        "backfill = true",
        "[alerts]\nretry_base_secs = 0.05\nretry_cap_secs = 0.2\nwebhook_timeout_secs = 5\n",
    );
    let sink = WebhookReceiver::start();
    env.ok(&["subscribe", "webhook", &sink.url("/h")]);
    let versions = chain();
    env.server.put_study(versions[3].clone());
    env.server
        .put_history(ID, as_history(&versions, POSTED, false));
    let out = env.ok(&["sync"]);
    assert!(out.contains("3 older versions backfilled"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.count(), 0, "{:?}", sink.requests());
    assert_eq!(env.json(&["outbox", "--json"]), json!([]));

    env.server.put_study(edit(&versions[3], |p| {
        p["statusModule"]["overallStatus"] = json!("TERMINATED");
    }));
    env.ok(&["sync"]);
    sink.wait_for(1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let hits = sink.requests();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let body = hits[0].json();
    assert_eq!(body["nct_id"], ID);
    assert_eq!(body["version"], 5, "{body:#}");
}

/// Trials for the outcome tests: one of each way a history request can end.
struct Outcomes {
    ok: String,
    empty: String,
    no_changes: String,
    not_found: String,
    refused: String,
    retry_after: String,
    no_retry_after: String,
    stalled: String,
}

impl Outcomes {
    fn new() -> Outcomes {
        let id = |n: u32| format!("NCT0920000{n}");
        Outcomes {
            ok: id(1),
            empty: id(2),
            no_changes: id(3),
            not_found: id(4),
            refused: id(5),
            retry_after: id(6),
            no_retry_after: id(7),
            stalled: id(8),
        }
    }

    fn all(&self) -> Vec<&str> {
        [
            &self.ok,
            &self.empty,
            &self.no_changes,
            &self.not_found,
            &self.refused,
            &self.retry_after,
            &self.no_retry_after,
            &self.stalled,
        ]
        .map(String::as_str)
        .to_vec()
    }

    /// The studies and histories; faults are queued separately, right before the run they are for.
    fn serve(&self, env: &TestEnv) {
        for id in self.all() {
            let fx = fixture_as(&format!("{ID}.json"), id);
            let v0 = older(&fx, &days_before(POSTED, 1), |p| {
                p["statusModule"]["overallStatus"] = json!("RECRUITING");
            });
            env.server.put_study(fx.clone());
            if id != self.not_found {
                env.server
                    .put_history(id, as_history(&[v0, fx], POSTED, false));
            }
        }
        env.server
            .put_history_index_raw(&self.empty, r#"{"changes":[]}"#);
        env.server.put_history_index_raw(&self.no_changes, "{}");
    }

    fn faults(&self, env: &TestEnv) {
        let index = |id: &str| format!("/api/int/studies/{id}/history");
        env.server.push_fault_for(
            &index(&self.refused),
            Fault::Status(403, "Request blocked.".into()),
        );
        env.server.push_fault_for(
            &index(&self.retry_after),
            Fault::TooManyRequests {
                retry_after_secs: Some(1),
            },
        );
        env.server.push_fault_for(
            &index(&self.no_retry_after),
            Fault::TooManyRequests {
                retry_after_secs: None,
            },
        );
        // Every attempt stalls past the 1 s timeout.
        for _ in 0..2 {
            env.server
                .push_fault_for(&index(&self.stalled), Fault::Delay(Duration::from_secs(3)));
        }
    }

    fn assert_backfilled(&self, env: &TestEnv) {
        for id in [&self.ok, &self.retry_after, &self.no_retry_after] {
            let h = history(env, id);
            let ctgov: Vec<Option<u64>> = h.iter().map(|e| e["ctgov_version"].as_u64()).collect();
            assert_eq!(ctgov, [Some(0), Some(1)], "{id}");
        }
        for id in [
            &self.empty,
            &self.no_changes,
            &self.not_found,
            &self.refused,
            &self.stalled,
        ] {
            assert_eq!(history(env, id).len(), 1, "{id}");
        }
        let requests = env.server.requests();
        for id in [&self.retry_after, &self.no_retry_after] {
            let n = requests
                .iter()
                .filter(|r| r.ends_with(&format!("/{id}/history")))
                .count();
            assert_eq!(n, 2, "{id}: one 429 then the index");
        }
    }
}

const SLOW: &str = "timeout_secs = 1\nmax_attempts = 2";

/// `trialwatch backfill`: one line per trial that could not be backfilled, naming it and why;
/// exit 2; the others (429s retried) are still backfilled; and a trial without history alone
/// is not a failure.
#[test]
fn backfill_reports_each_failed_trial_and_exits_2() {
    let t = Outcomes::new();
    let env = TestEnv::with_config(&t.all(), SLOW, "");
    t.serve(&env);
    env.ok(&["sync"]);
    t.faults(&env);
    let out = env.run(&["backfill"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}{}", stderr(&out));
    let lines: Vec<&str> = text.lines().collect();
    let line_of = |id: &str| {
        let found: Vec<&&str> = lines.iter().filter(|l| l.contains(id)).collect();
        assert_eq!(found.len(), 1, "{id}: {text}");
        found[0].to_string()
    };
    assert!(line_of(&t.not_found).contains("404"), "{text}");
    let refused = line_of(&t.refused);
    assert!(
        refused.contains("403") && refused.contains("Request blocked."),
        "{refused}"
    );
    let stalled = line_of(&t.stalled);
    assert!(
        stalled.contains(&format!("{}: not backfilled", t.stalled)),
        "{stalled}"
    );
    for id in [&t.empty, &t.no_changes] {
        assert!(line_of(id).contains("no record history"), "{text}");
    }
    for id in [&t.ok, &t.retry_after, &t.no_retry_after] {
        assert!(!text.contains(id.as_str()), "{id} was backfilled: {text}");
    }
    assert!(
        text.contains(
            "backfilled 3 of 8 trials (2 without a CT.gov history): 6 versions fetched, 3 stored"
        ),
        "{text}"
    );
    t.assert_backfilled(&env);

    let alone = env.run(&["backfill", &t.empty, &t.no_changes]);
    assert_eq!(alone.status.code(), Some(0), "{}", stdout(&alone));
}

/// A sync with backfill on: a trial whose history fails is one `warning:` line naming it, a
/// trial without history none, and the sync still exits 0 with the others backfilled.
#[test]
fn sync_warns_once_per_failed_history_and_exits_0() {
    let t = Outcomes::new();
    let env = TestEnv::with_options(&t.all(), SLOW, "backfill = true", "");
    t.serve(&env);
    t.faults(&env);
    let out = env.run(&["sync"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 3, "{text}");
    for id in [&t.not_found, &t.refused, &t.stalled] {
        assert_eq!(
            warnings.iter().filter(|w| w.contains(id.as_str())).count(),
            1,
            "{id}: {text}"
        );
    }
    assert!(
        text.contains("history: 3 older versions backfilled"),
        "{text}"
    );
    t.assert_backfilled(&env);
}

/// `changes` leaves backfilled versions out and `--include-backfill` lists them; `show --at`
/// picks the CT.gov version posted by that day; `show --version` and `diff` work across
/// backfilled versions; `history` shows the CT.gov lines and the outcome-switch sentence.
#[test]
fn queries_across_backfilled_versions() {
    let env = on();
    let mut versions = chain();
    versions[0] = edit(&versions[0], |p| {
        p["outcomesModule"]["primaryOutcomes"][0]["measure"] = json!("An earlier primary outcome");
    });
    env.server.put_study(versions[3].clone());
    env.server
        .put_history(ID, as_history(&versions, POSTED, false));
    env.ok(&["sync"]);
    // Nothing observed changed yet: the backfilled past is not news.
    let rows = env.json(&["changes", "--json"]);
    assert_eq!(rows, json!([]));
    let rows = env.json(&["changes", "--json", "--include-backfill"]);
    let seen: BTreeSet<(u64, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_u64().unwrap(),
                r["path"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(_, p)| p != "status.lastUpdatePostDate")
        .collect();
    let want: BTreeSet<(u64, String)> = [
        (3, "outcomes.primary"),
        (3, "status.overallStatus"),
        (4, "design.enrollmentCount"),
        (4, "status.completionDate"),
        (4, "status.completionDateType"),
    ]
    .map(|(v, p)| (v, p.to_string()))
    .into();
    assert_eq!(seen, want, "{rows:#}");

    let at = |d: &str| env.json(&["show", ID, "--at", d, "--format", "json"]);
    assert_eq!(
        at("2020-10-05")["status"]["overallStatus"],
        "NOT_YET_RECRUITING"
    );
    assert_eq!(at("2020-10-06")["status"]["overallStatus"], "RECRUITING");
    assert_eq!(at("2020-10-07")["design"]["enrollmentCount"], 150);
    assert_eq!(at("2020-10-08")["status"]["overallStatus"], "COMPLETED");
    let v4 = env.json(&["show", ID, "--version", "4", "--format", "json"]);
    assert_eq!(v4["design"]["enrollmentCount"], 150);
    let d = env.json(&["diff", ID, "2", "1", "--json"]);
    assert_eq!((&d["from"], &d["to"]), (&json!(2), &json!(1)));
    let d_paths: BTreeSet<String> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap().to_string())
        .filter(|p| p != "status.lastUpdatePostDate")
        .collect();
    let want: BTreeSet<String> = [
        "design.enrollmentCount",
        "design.enrollmentType",
        "outcomes.primary",
        "status.overallStatus",
    ]
    .map(String::from)
    .into();
    assert_eq!(d_paths, want, "{d:#}");

    let text = env.ok(&["history", ID]);
    assert!(
        text.contains("(primary outcomes changed since registration, last in CT.gov v1)"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[2].starts_with("v2  CT.gov v0 posted 2020-10-05 · backfilled  first snapshot"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("v3  CT.gov v1 posted 2020-10-06 · backfilled  "),
        "{text}"
    );
    assert!(
        lines[4].starts_with("v4  CT.gov v2 posted 2020-10-07 · backfilled  "),
        "{text}"
    );
    assert!(
        lines[5].starts_with("v1  ") && lines[5].contains("CT.gov v3"),
        "{text}"
    );

    // A later observed change is news: `changes` lists it alone.
    env.server.put_study(edit(&versions[3], |p| {
        p["statusModule"]["overallStatus"] = json!("TERMINATED");
    }));
    env.ok(&["sync"]);
    let rows = env.json(&["changes", "--json"]);
    let vs: BTreeSet<u64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    assert_eq!(vs, BTreeSet::from([5]), "{rows:#}");
}

/// `--versions last:2` fetches only the newest two older versions; a later `--versions all`
/// adds the rest before them without fetching those two again.
#[test]
fn last_n_then_all_fills_in_without_refetching() {
    let env = TestEnv::with_config(&[ID], "", "");
    let versions = chain();
    env.server.put_study(versions[3].clone());
    env.server
        .put_history(ID, as_history(&versions, POSTED, false));
    env.ok(&["sync"]);
    env.server.clear_requests();
    env.ok(&["backfill", "--versions", "last:2"]);
    // The newest two older versions, and version 3 to compare with the snapshot.
    assert_eq!(version_fetches(&env.server.requests(), ID), [1, 2, 3]);
    let ctgov: Vec<Option<u64>> = history(&env, ID)
        .iter()
        .map(|e| e["ctgov_version"].as_u64())
        .collect();
    assert_eq!(ctgov, [Some(1), Some(2), Some(3)]);
    env.server.clear_requests();
    env.ok(&["backfill", "--versions", "all"]);
    assert_eq!(version_fetches(&env.server.requests(), ID), [0]);
    let h = history(&env, ID);
    let ctgov: Vec<Option<u64>> = h.iter().map(|e| e["ctgov_version"].as_u64()).collect();
    assert_eq!(ctgov, [Some(0), Some(1), Some(2), Some(3)]);
    // v1's changes are now recomputed against v0: the status change.
    assert_eq!(
        paths(&h[1]),
        BTreeSet::from(["status.overallStatus".to_string()])
    );
    env.ok(&["verify"]);
}

/// Gap repair: syncs stopped (the daemon was down) while CT.gov posted two versions; the next
/// sync stores the missed one before the new one, each with its own changes and one alert, and
/// the repaired version's alert says when CT.gov posted it.
#[test]
fn a_sync_after_missed_versions_repairs_the_gap_with_one_alert_per_version() {
    let env = TestEnv::with_options(
        &[ID],
        "",
        "backfill = true",
        "[alerts]\nretry_base_secs = 0.05\nretry_cap_secs = 0.2\nwebhook_timeout_secs = 5\n",
    );
    let versions = chain();
    let all = as_history(&versions, POSTED, false);
    // First the trial as it was at CT.gov version 1.
    env.server.put_study(versions[1].clone());
    env.server.put_history(ID, all[..2].to_vec());
    env.ok(&["sync"]);
    let sink = WebhookReceiver::start();
    env.ok(&["subscribe", "webhook", &sink.url("/h")]);
    let before: Vec<u64> = history(&env, ID)
        .iter()
        .map(|e| e["ctgov_version"].as_u64().unwrap())
        .collect();
    assert_eq!(before, [0, 1]);

    // CT.gov posts versions 2 and 3 while nothing syncs; the next sync sees version 3.
    env.server.put_history(ID, all.clone());
    env.server.put_study(versions[3].clone());
    env.server.clear_requests();
    let out = env.ok(&["sync"]);
    assert!(out.contains("gap repair: 1 missed version stored"), "{out}");
    let requests = env.server.requests();
    assert_eq!(version_fetches(&requests, ID), [2], "{requests:#?}");

    let h = history(&env, ID);
    let tail: Vec<Provenance> = h[2..]
        .iter()
        .map(|e| {
            (
                e["version"].as_u64().unwrap(),
                e["source"].as_str().unwrap(),
                e["ctgov_version"].as_u64(),
                e["ctgov_posted"].as_str(),
                e["backfilled"].as_bool().unwrap(),
            )
        })
        .collect();
    let posted2 = days_before(POSTED, 1);
    assert_eq!(
        tail,
        [
            (3, "ctgov", Some(2), Some(posted2.as_str()), false),
            (4, "observed", Some(3), Some(POSTED), false),
        ],
        "{h:#?}"
    );
    // Each version's changes are against the one before it: the enrollment and completion date
    // moved in the repaired version 2; the observed one carries the rest.
    assert!(
        paths(&h[2]).contains("design.enrollmentCount"),
        "{:#}",
        h[2]
    );
    let enrollment = |e: &Value| {
        e["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == "design.enrollmentCount")
            .map(|c| (c["old"].clone(), c["new"].clone()))
    };
    assert_eq!(
        enrollment(&h[2]),
        Some((json!(100), json!(150))),
        "{:#}",
        h[2]
    );
    assert_eq!(
        enrollment(&h[3]),
        Some((json!(150), json!(24))),
        "{:#}",
        h[3]
    );

    sink.wait_for(2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let hits = sink.requests();
    assert_eq!(hits.len(), 2, "{hits:?}");
    let mut got: Vec<(u64, Option<String>)> = hits
        .iter()
        .map(|r| {
            let b = r.json();
            (
                b["version"].as_u64().unwrap(),
                b["ctgov_posted"].as_str().map(str::to_string),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, [(3, Some(posted2.clone())), (4, None)]);
    let text = env.ok(&["history", ID]);
    assert!(
        text.contains(&format!("v3  CT.gov v2 posted {posted2} · gap repaired")),
        "{text}"
    );
    env.ok(&["verify"]);
}
