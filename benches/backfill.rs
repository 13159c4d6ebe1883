//! Backfill benchmark of the real (release) binary against the local fake CT.gov server, with
//! the client's rate limit off. Run: `cargo bench --bench backfill` (figures in BENCHMARKS.md).
//!
//! N trials (default 1,000) made from the real fixtures under new IDs in the registry's size mix,
//! each with a record history of V versions (default 20) served as the website's HTML: version k
//! is the fixture with k real edits (enrollment, status, completion date), the last is the
//! current API v2 record. The trials are synced first without backfill (one snapshot each), then
//! `trialwatch backfill` runs on all of them. Measured: versions fetched per second end to end,
//! the HTTP requests it sent (exactly N index requests + N × V version requests), the store's
//! growth per backfilled version against the raw JSON CT.gov sent for it, and `trialwatch
//! history` of one backfilled trial as a whole process.
//!
//! Environment: `BENCH_TRIALS`, `BENCH_VERSIONS`.
// The shared test support is `pub` so that every crate including it can use it; in one crate
// some of it is unused, which `unreachable_pub` would flag.
#![allow(unreachable_pub)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::bench::{dir_size, make_studies, write_config};
use support::fake_ctgov::FakeCtGov;
use support::website_html::history_study;

const BIN: &str = env!("CARGO_BIN_EXE_trialwatch");

/// Version `k` of a study: `k` edits of the real record, each of the kind sponsors post.
fn edited(raw: &str, k: usize, versions: usize) -> String {
    let mut v: Value = serde_json::from_str(raw).unwrap();
    let ps = &mut v["protocolSection"];
    let day =
        chrono::NaiveDate::from_ymd_opt(2016, 1, 4).unwrap() + chrono::Days::new(k as u64 * 90);
    ps["statusModule"]["lastUpdatePostDateStruct"] =
        serde_json::json!({"date": day.to_string(), "type": "ACTUAL"});
    if k + 1 < versions {
        // Older versions differ from the current record: fewer participants planned, an
        // earlier completion date, and (for the oldest) not yet recruiting.
        ps["designModule"]["enrollmentInfo"] =
            serde_json::json!({"count": 100 + k * 10, "type": "ESTIMATED"});
        let done = day + chrono::Days::new(700);
        ps["statusModule"]["completionDateStruct"] =
            serde_json::json!({"date": done.format("%Y-%m").to_string(), "type": "ESTIMATED"});
        if k < versions / 4 {
            ps["statusModule"]["overallStatus"] = Value::from("NOT_YET_RECRUITING");
        }
    }
    serde_json::to_string(&v).unwrap()
}

fn run(cfg: &Path, args: &[&str]) -> (Duration, String) {
    let t0 = Instant::now();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .unwrap();
    let wall = t0.elapsed();
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (wall, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` this is a small smoke run
    // of the same code, asserting the request count.
    let full = std::env::args().any(|a| a == "--bench");
    let env_or = |k: &str, full_default: usize, smoke: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if full { full_default } else { smoke })
    };
    let n = env_or("BENCH_TRIALS", 1000, 20);
    let versions = env_or("BENCH_VERSIONS", 20, 4).max(2);
    println!(
        "machine: {} cores; trials: {n} x {versions} versions",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );

    let server = FakeCtGov::start();
    let studies = make_studies(n);
    let mut raw_history_bytes = 0usize;
    for (id, raw) in &studies {
        let history: Vec<(String, String)> = (0..versions)
            .map(|k| {
                let day = chrono::NaiveDate::from_ymd_opt(2016, 1, 4).unwrap()
                    + chrono::Days::new(k as u64 * 90);
                let html = history_study(&edited(raw, k, versions), false);
                raw_history_bytes += html.len();
                (day.to_string(), html)
            })
            .collect();
        server.put_history(id, history);
        server.put_study(edited(raw, versions - 1, versions));
    }
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = studies.iter().map(|(id, _)| id.clone()).collect();
    let cfg = write_config(dir.path(), &server.base_url(), &ids);
    run(&cfg, &["sync"]);
    let before = dir_size(&dir.path().join("data"));
    server.clear_requests();

    let (wall, out) = run(&cfg, &["backfill", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    let requests = server.requests();
    let index_requests = requests.iter().filter(|r| r.ends_with("/history")).count();
    let version_requests = requests.iter().filter(|r| r.contains("/history/")).count();
    let fetched: u64 = report["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["fetched"].as_u64().unwrap())
        .sum();
    let stored: u64 = report["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["stored"].as_u64().unwrap())
        .sum();
    println!(
        "backfill: {:.2}s, {:.0} versions/s ({fetched} fetched, {stored} stored), {} requests ({index_requests} index + {version_requests} versions; expected {} + {})",
        wall.as_secs_f64(),
        fetched as f64 / wall.as_secs_f64(),
        requests.len(),
        n,
        n * versions
    );
    assert_eq!(index_requests, n, "one index request per trial");
    assert_eq!(version_requests, n * versions, "one request per version");
    assert_eq!(requests.len(), n + n * versions, "nothing else");
    assert_eq!(
        stored as usize,
        n * (versions - 1),
        "the newest is the observed snapshot"
    );

    let after = dir_size(&dir.path().join("data"));
    let per_version = (after - before) as f64 / stored as f64;
    let raw_per_version = raw_history_bytes as f64 / (n * versions) as f64;
    println!(
        "store growth: {:.1} MB for {stored} versions = {:.0} B/version = {:.1}% of the {:.1} KB raw JSON per version",
        (after - before) as f64 / 1e6,
        per_version,
        100.0 * per_version / raw_per_version,
        raw_per_version / 1000.0
    );

    let id = &ids[ids.len() / 2];
    let mut times: Vec<Duration> = (0..21).map(|_| run(&cfg, &["history", id]).0).collect();
    times.sort();
    println!(
        "history of a {versions}-version backfilled trial (whole process, 21 runs): median {:.1} ms, max {:.1} ms",
        times[10].as_secs_f64() * 1000.0,
        times[20].as_secs_f64() * 1000.0
    );
    let (_, verify) = run(&cfg, &["verify"]);
    assert!(
        verify.contains("OK") || verify.contains("ok"),
        "verify: {verify}"
    );
}
