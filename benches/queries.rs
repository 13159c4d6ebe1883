//! Query-watch and deadline benchmarks (figures in BENCHMARKS.md, "Query watches and
//! deadlines"). Run: `cargo bench --bench queries`.
//!
//! 1. A query matching N = 10,000 trials (`BENCH_QUERY_TRIALS`) on the fake CT.gov server, run
//!    through the library (`sync::queries::run_all`): the baseline run, then a run after 1 % of
//!    the trials left the query and 1 % new ones entered. Reports the requests per run (target
//!    ⌈N / 1000⌉ + a constant) and the time of each run (search + membership update, target
//!    ≤ 2 s).
//! 2. Deadlines on N = 10,000 stored trials (`BENCH_DEADLINE_TRIALS`), every one an
//!    FDA-regulated drug trial with an actual primary completion date (the worst case: the raw
//!    study is read too): one `sync::deadlines::evaluate_daily` (target ≤ 1 s) and one
//!    `due_now`.
//!
//! Under `cargo test --all-targets` the same code runs as a small smoke test (300 trials) that
//! asserts the request count and the events.
// The shared test support is `pub` so that every crate including it can use it; in one crate
// some of it is unused, which `unreachable_pub` would flag.
#![allow(unreachable_pub)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use trialwatch::config::Config;
use trialwatch::model::{NctId, QuerySpec};
use trialwatch::outbox::Subscriptions;
use trialwatch::store::{NewVersion, Store};

use support::fake_ctgov::FakeCtGov;

fn tiny_study(id: &str, cond: &str) -> String {
    format!(
        r#"{{"protocolSection":{{"identificationModule":{{"nctId":"{id}","briefTitle":"A study of {cond} {id}"}},"statusModule":{{"overallStatus":"RECRUITING","studyFirstSubmitDate":"2024-01-01","lastUpdatePostDateStruct":{{"date":"2026-01-01"}}}},"conditionsModule":{{"conditions":["{cond}"]}},"designModule":{{"phases":["PHASE2"]}},"sponsorCollaboratorsModule":{{"leadSponsor":{{"name":"Sponsor {id}"}}}}}}}}"#
    )
}

fn config(server: &FakeCtGov, data: &std::path::Path) -> Config {
    let text = format!(
        "data_dir = {:?}\n[ctgov]\nbase_url = {:?}\nrequests_per_minute = 0\n[watch]\nbackfill = false\n",
        data.display().to_string(),
        server.base_url()
    );
    Config::from_toml(&text, None).unwrap()
}

fn query_bench(n: usize) {
    let server = FakeCtGov::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&server, &dir.path().join("data"));
    cfg.queries.max_matches = n.max(10_000);
    for i in 0..n {
        server.put_study(tiny_study(
            &format!("NCT8{i:07}"),
            "Cytomegalovirus Infection",
        ));
    }
    let store = Store::open(&cfg.data_dir).unwrap();
    store
        .query_put(
            &QuerySpec {
                name: "cmv".into(),
                cond: Some("cytomegalovirus".into()),
                ..QuerySpec::default()
            }
            .validated()
            .unwrap(),
        )
        .unwrap();
    let client = trialwatch::sync::client_from_config(&cfg).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let subs = Arc::new(Subscriptions::default());
    let run = |now: &str| {
        let before = client.request_count();
        let t = Instant::now();
        let now: DateTime<Utc> = now.parse().unwrap();
        let runs = rt
            .block_on(trialwatch::sync::queries::run_all(
                &client,
                &store,
                &cfg,
                subs.clone(),
                now,
            ))
            .unwrap();
        (t.elapsed(), client.request_count() - before, runs)
    };
    let (t1, req1, r1) = run("2026-12-01T06:00:00Z");
    // 1 % leave, 1 % enter.
    let moved = (n / 100).max(1);
    for i in 0..moved {
        server.put_study(tiny_study(&format!("NCT8{i:07}"), "Asthma"));
        server.put_study(tiny_study(
            &format!("NCT9{i:07}"),
            "Cytomegalovirus Infection",
        ));
    }
    let (t2, req2, r2) = run("2026-12-02T06:00:00Z");
    let pages = n.div_ceil(1000).max(1) as u64;
    println!(
        "query of {n} trials: baseline {:.3} s, {req1} requests; after {moved} left and {moved} entered: {:.3} s, {req2} requests (⌈N/1000⌉ = {pages})",
        t1.as_secs_f64(),
        t2.as_secs_f64()
    );
    assert_eq!(r1[0].members, n, "{r1:?}");
    assert!(r1[0].baseline);
    assert_eq!((r2[0].entered, r2[0].left), (moved, moved), "{r2:?}");
    assert_eq!(req1, pages);
    assert_eq!(req2, pages);
}

fn deadline_bench(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeCtGov::start();
    let cfg = config(&server, &dir.path().join("data"));
    let store = Store::open(&cfg.data_dir).unwrap();
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ctgov/NCT03418623.json"),
    )
    .unwrap();
    let at: DateTime<Utc> = "2021-01-01T00:00:00Z".parse().unwrap();
    let ids: Vec<NctId> = (0..n)
        .map(|i| format!("NCT7{i:07}").parse().unwrap())
        .collect();
    for chunk in ids.chunks(100) {
        let raws: Vec<String> = chunk
            .iter()
            .map(|id| template.replace("NCT03418623", id.as_str()))
            .collect();
        let records: Vec<_> = raws
            .iter()
            .map(|r| trialwatch::normalize::normalize_json(r).unwrap())
            .collect();
        let canon: Vec<Vec<u8>> = records.iter().map(|r| r.canonical_bytes()).collect();
        let items = chunk
            .iter()
            .zip(&raws)
            .zip(&records)
            .zip(&canon)
            .map(|(((nct, raw), record), canonical)| NewVersion {
                provenance: Default::default(),
                nct,
                record,
                canonical,
                raw: raw.as_bytes(),
                changes: trialwatch::diff::diff(None, record),
                detected_at: at,
                resolved_id: None,
                source_fingerprint: None,
                alerts: Vec::new(),
            })
            .collect();
        store.commit_versions(items).unwrap();
        for id in chunk {
            store.watch_add(id, at).unwrap();
        }
    }
    store.flush().unwrap();
    let now: DateTime<Utc> = "2021-06-01T06:00:00Z".parse().unwrap();
    let subs = Arc::new(Subscriptions::default());
    let t = Instant::now();
    let run = trialwatch::sync::deadlines::evaluate_daily(&cfg, &store, subs, now)
        .unwrap()
        .unwrap();
    let eval = t.elapsed();
    let t = Instant::now();
    let rows = trialwatch::sync::deadlines::due_now(&cfg, &store, now.date_naive()).unwrap();
    let listed = t.elapsed();
    println!(
        "deadlines on {n} trials: daily evaluation {:.3} s ({} events), `due` listing {:.3} s ({} rows)",
        eval.as_secs_f64(),
        run.events,
        listed.as_secs_f64(),
        rows.len()
    );
    assert_eq!(run.trials, n);
    assert_eq!(run.events, n, "every trial is overdue on 2021-06-01");
    assert_eq!(rows.len(), n);
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` this is a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let env_or = |k: &str, full_default: usize, smoke: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if full { full_default } else { smoke })
    };
    query_bench(env_or("BENCH_QUERY_TRIALS", 10_000, 300));
    deadline_bench(env_or("BENCH_DEADLINE_TRIALS", 10_000, 300));
}
