//! Publishing benchmarks (figures in BENCHMARKS.md, "Publishing"). Run:
//! `BENCH_DIR=/some/scratch cargo bench --bench publish`.
//!
//! On a store of N = 10,000 trials × 20 versions (`BENCH_TRIALS`, `BENCH_VERSIONS`), built
//! through the library from the real fixtures (every version a real edit: title, enrollment,
//! completion date), with the real `trialwatch` binary as a child process:
//! 1. `trialwatch export DIR`: a full export;
//! 2. one new version for 1 % of the trials, then `trialwatch export DIR` again: time, and the
//!    files written (must be only the changed trials' three files and the four shared ones);
//! 3. `trialwatch serve`: a trial page (21 different trials) and the list page (21 times, after
//!    one request that fills its cache), timed as HTTP round trips on 127.0.0.1 (server time
//!    plus a loopback hop).
//!
//! Under `cargo test --all-targets` the same code runs as a 40-trial × 3-version smoke test.
// The shared test support is `pub` so that every crate including it can use it; in one crate
// some of it is unused, which `unreachable_pub` would flag.
#![allow(unreachable_pub)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use support::bench::make_studies;
use trialwatch::model::{NctId, Record};
use trialwatch::store::{NewVersion, Store};

const BIN: &str = env!("CARGO_BIN_EXE_trialwatch");

/// Version `v` of a record: retitled, enrollment and completion date moved.
fn edited(base: &Record, v: u32) -> Record {
    let mut r = base.clone();
    let title = r.title().unwrap_or("").to_string();
    r.set(
        "identification.briefTitle",
        json!(format!("(rev {v}) {title}")),
    );
    r.set("design.enrollmentCount", json!(100 + v * 7));
    r.set(
        "status.completionDate",
        json!(format!("{}-{:02}", 2027 + v / 12, 1 + v % 12)),
    );
    r
}

fn commit(store: &Store, items: &[(NctId, Record, Option<Record>, String)], day: i64) {
    let canon: Vec<Vec<u8>> = items
        .iter()
        .map(|(_, r, _, _)| r.canonical_bytes())
        .collect();
    let batch = items
        .iter()
        .zip(&canon)
        .map(|((nct, record, prev, raw), canonical)| NewVersion {
            provenance: Default::default(),
            nct,
            record,
            canonical,
            raw: raw.as_bytes(),
            changes: trialwatch::diff::diff(prev.as_ref(), record),
            detected_at: Utc.timestamp_opt(1_700_000_000 + day * 86_400, 0).unwrap(),
            resolved_id: None,
            source_fingerprint: None,
            alerts: vec![],
        })
        .collect();
    store.commit_versions(batch).unwrap();
}

fn export(cfg: &Path, site: &Path) -> (Duration, Value) {
    let t0 = Instant::now();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .args(["export", site.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, serde_json::from_slice(&out.stdout).unwrap())
}

fn get(addr: &str, path: &str) -> (Duration, u16, usize) {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let took = t0.elapsed();
    let status = String::from_utf8_lossy(&raw[..raw.len().min(12)])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (took, status, raw.len())
}

fn median_ms(mut t: Vec<Duration>) -> (f64, f64) {
    t.sort();
    (
        t[t.len() / 2].as_secs_f64() * 1e3,
        t[t.len() - 1].as_secs_f64() * 1e3,
    )
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let env_or = |k: &str, full_default: usize, smoke: usize| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if full { full_default } else { smoke })
    };
    let n = env_or("BENCH_TRIALS", 10_000, 40);
    let versions = env_or("BENCH_VERSIONS", 20, 3) as u32;
    let scratch = match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let data = scratch.path().join("data");
    let site = scratch.path().join("site");
    let cfg = scratch.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!("data_dir = {:?}\n", data.display().to_string()),
    )
    .unwrap();

    // The store: N trials × `versions` versions, one commit per 100 trials and version.
    let t0 = Instant::now();
    let studies = make_studies(n);
    let bases: Vec<(NctId, Record, String)> = studies
        .iter()
        .map(|(id, raw)| {
            (
                id.parse().unwrap(),
                trialwatch::normalize::normalize_json(raw).unwrap(),
                raw.clone(),
            )
        })
        .collect();
    {
        let store = Store::open(&data).unwrap();
        for chunk in bases.chunks(100) {
            let mut prev: Vec<Option<Record>> = vec![None; chunk.len()];
            for v in 1..=versions {
                let items: Vec<(NctId, Record, Option<Record>, String)> = chunk
                    .iter()
                    .zip(&prev)
                    .map(|((id, base, raw), p)| {
                        (id.clone(), edited(base, v), p.clone(), raw.clone())
                    })
                    .collect();
                commit(&store, &items, i64::from(v));
                prev = items.into_iter().map(|(_, r, _, _)| Some(r)).collect();
            }
        }
        store.flush().unwrap();
    }
    println!(
        "store: {n} trials x {versions} versions built in {:.0} s",
        t0.elapsed().as_secs_f64()
    );

    // 1. Full export.
    let (took, rep) = export(&cfg, &site);
    println!(
        "full export of {n} trials: {:.2} s ({rep})",
        took.as_secs_f64()
    );
    assert_eq!(rep["trials"], n);
    assert_eq!(rep["rendered"], n);

    // 2. 1 % of the trials get a new version; re-export.
    let changed = (n / 100).max(1);
    {
        let store = Store::open(&data).unwrap();
        let items: Vec<(NctId, Record, Option<Record>, String)> = bases
            .iter()
            .step_by(n / changed)
            .take(changed)
            .map(|(id, base, raw)| {
                (
                    id.clone(),
                    edited(base, versions + 1),
                    Some(edited(base, versions)),
                    raw.clone(),
                )
            })
            .collect();
        commit(&store, &items, i64::from(versions) + 1);
        store.flush().unwrap();
    }
    let (took, rep) = export(&cfg, &site);
    println!(
        "re-export after {changed} trials ({:.0} %) changed: {:.2} s ({rep})",
        100.0 * changed as f64 / n as f64,
        took.as_secs_f64()
    );
    assert_eq!(rep["rendered"], changed, "{rep}");
    assert_eq!(
        rep["written"],
        changed * 3 + 4,
        "only the changed files: {rep}"
    );

    // 3. The web view.
    let (mut child, addr, first_start) = start_serve(&cfg);
    let mut trial = Vec::new();
    for k in 0..21 {
        let id = &bases[(k * 4999) % n].0;
        let (t, status, _) = get(&addr, &format!("/trials/{id}"));
        assert_eq!(status, 200);
        trial.push(t);
    }
    let (cold, status, bytes) = get(&addr, "/");
    assert_eq!(status, 200);
    let mut list = Vec::new();
    for _ in 0..21 {
        let (t, status, _) = get(&addr, "/");
        assert_eq!(status, 200);
        list.push(t);
    }
    let _ = child.kill();
    let _ = child.wait();
    // A restart: the rows the first list made are kept in the store, so its first list page
    // reads them instead of making them.
    let (mut child, addr, second_start) = start_serve(&cfg);
    let (restarted, status, _) = get(&addr, "/");
    assert_eq!(status, 200);
    let _ = child.kill();
    let _ = child.wait();
    let (tm, tx) = median_ms(trial);
    let (lm, lx) = median_ms(list);
    println!("trial page (21 trials): median {tm:.1} ms, max {tx:.1} ms");
    println!(
        "serve start (prepares the list's rows): {:.0} ms on a store never listed, {:.0} ms after a restart",
        first_start.as_secs_f64() * 1e3,
        second_start.as_secs_f64() * 1e3
    );
    println!(
        "list page ({n} trials, {bytes} bytes): first after the start {:.1} ms, first after a restart {:.1} ms, then median {lm:.1} ms, max {lx:.1} ms",
        cold.as_secs_f64() * 1e3,
        restarted.as_secs_f64() * 1e3
    );
}

/// `trialwatch serve` on a free loopback port: the child, the address it printed, and how long
/// it took to print it.
fn start_serve(cfg: &std::path::Path) -> (std::process::Child, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = support::publish_tools::served_addr(&mut child);
    (child, addr, started.elapsed())
}
