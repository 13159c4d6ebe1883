//! End-to-end sync benchmarks of the real (release) binary against the local fake CT.gov server,
//! with the client's rate limit off. Run: `cargo bench --bench sync` (figures in BENCHMARKS.md).
//!
//! 1. first sync of N trials (default 10,000) made from the real fixtures under new IDs, in a
//!    size mix like the registry's (mean ≈ 30 KB, the 1.5 MB fixture included in proportion):
//!    trials/s and peak RSS (GNU `time`), HTTP requests per sync;
//! 2. re-sync of the same N with 1 % changed: trials/s;
//! 3. store size per stored version against the raw CT.gov JSON;
//! 4. the reads, as whole processes (median of 21 runs): `history`, `show`, `diff`, `status`,
//!    `watch list` and `changes --since 1d`, on the store made today by the first sync (every
//!    first version inside the range) and again after the 1 %-changed re-sync;
//! 5. what the per-commit records of issue #12 cost the write path: up to 2,000 first versions
//!    committed through the library with and without them (alternating, medians of 3);
//! 6. `trialwatch history` on a store of N trials x 20 versions: whole-process wall time, and
//!    that store's size against the raw JSON.
//!
//! Environment: `BENCH_TRIALS` (default 10000), `BENCH_VERSIONS` (default 20; 0 skips step 5),
//! `BENCH_MIX=small` (only the small fixtures: the worst case for compression).
// The shared test support is `pub` so that every crate including it can use it; in one crate
// some of it is unused, which `unreachable_pub` would flag.
#![allow(unreachable_pub)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde_json::Value;
use support::bench::{MIX, SMALL_MIX, StudyMaker, dir_size, write_config};
use support::fake_ctgov::FakeCtGov;
use trialwatch::model::NctId;
use trialwatch::store::{NewVersion, Store};

const BIN: &str = env!("CARGO_BIN_EXE_trialwatch");

struct Run {
    wall: Duration,
    peak_rss_kb: Option<u64>,
    report: Value,
}

/// Run `trialwatch sync --json` under GNU time when available (for peak RSS).
fn sync(cfg: &Path) -> Run {
    let gnu_time = Path::new("/usr/bin/time").exists();
    let rss_file = cfg.with_extension("rss");
    let mut cmd = if gnu_time {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(BIN);
        c
    } else {
        Command::new(BIN)
    };
    cmd.arg("--config").arg(cfg).arg("sync").arg("--json");
    let t0 = Instant::now();
    let out = cmd.output().unwrap();
    let wall = t0.elapsed();
    assert!(
        out.status.success(),
        "sync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak_rss_kb = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|s| s.trim().lines().last()?.trim().parse().ok());
    Run {
        wall,
        peak_rss_kb,
        report: serde_json::from_slice(&out.stdout).unwrap(),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` this runs as a small smoke
    // test of the same code, so CI keeps the benchmark working without paying for it.
    let full = std::env::args().any(|a| a == "--bench");
    let env_or = |k: &str, full_default: usize, smoke: usize| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if full { full_default } else { smoke })
    };
    let n = env_or("BENCH_TRIALS", 10_000, 300);
    let versions = env_or("BENCH_VERSIONS", 20, 3) as u32;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("machine: {cores} cores; trials: {n}");

    let small = std::env::var("BENCH_MIX").is_ok_and(|m| m == "small");
    let maker = StudyMaker::new(if small { SMALL_MIX } else { MIX });
    let server = FakeCtGov::start();
    let mut raw_total = 0usize;
    for i in 0..n {
        let (_, raw) = maker.study(i);
        raw_total += raw.len();
        server.put_study(raw);
    }
    println!(
        "generated {n} studies ({} mix), {:.1} MB raw JSON, mean {:.1} KB",
        if small { "small-fixture" } else { "registry" },
        raw_total as f64 / 1e6,
        raw_total as f64 / n as f64 / 1e3
    );
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..n).map(StudyMaker::id).collect();
    let cfg = write_config(dir.path(), &server.base_url(), &ids);

    // 1. First sync.
    let first = sync(&cfg);
    let rate = n as f64 / first.wall.as_secs_f64();
    println!(
        "first sync: {:.2}s, {:.0} trials/s, peak RSS {}, {} requests (batch_size 100: ceil(N/100) = {})",
        first.wall.as_secs_f64(),
        rate,
        first
            .peak_rss_kb
            .map_or("n/a (install GNU time)".into(), |k| format!(
                "{:.1} MB",
                k as f64 / 1024.0
            )),
        first.report["requests"],
        n.div_ceil(100)
    );
    assert_eq!(first.report["new_versions"], n as u64);
    let requests = first.report["requests"].as_u64().unwrap_or(u64::MAX);
    assert!(
        requests <= n.div_ceil(100) as u64 + 2,
        "{requests} requests for {n} trials: not batched"
    );

    // 3. Store size per version.
    let store_bytes = dir_size(&dir.path().join("data"));
    println!(
        "store after first sync: {:.1} MB for {n} versions = {:.1} KB/version = {:.1}% of raw JSON",
        store_bytes as f64 / 1e6,
        store_bytes as f64 / n as f64 / 1e3,
        100.0 * store_bytes as f64 / raw_total as f64
    );

    let packs = dir_size(&dir.path().join("data/packs"));
    let heads = std::fs::metadata(dir.path().join("data/heads")).map_or(0, |m| m.len());
    println!(
        "  of which pack files (records, raw JSON) {:.1} MB = {:.1}% of raw, sled (index) {:.1} MB, heads file {:.1} MB",
        packs as f64 / 1e6,
        100.0 * packs as f64 / raw_total as f64,
        (store_bytes - packs - heads) as f64 / 1e6,
        heads as f64 / 1e6
    );

    let sample: Vec<&str> = (0..21).map(|k| ids[(k * 4999) % n].as_str()).collect();
    reads(&cfg, "store made today (first versions only)", &sample);

    // 2. Re-sync with 1 % changed.
    let changed = n / 100;
    for (id, raw) in (0..n).step_by(100).take(changed).map(|i| maker.study(i)) {
        // A real status change; the old value moves to an unknown key, which CT.gov's schema
        // tolerates and the normalizer ignores.
        let edited = raw.replacen(
            "\"overallStatus\": ",
            "\"overallStatus\": \"TERMINATED\", \"x\": ",
            1,
        );
        assert_ne!(edited, raw, "{id}");
        server.put_study(edited);
    }
    let resync = sync(&cfg);
    println!(
        "re-sync, 1% changed: {:.2}s, {:.0} trials/s, peak RSS {}, {} new versions",
        resync.wall.as_secs_f64(),
        n as f64 / resync.wall.as_secs_f64(),
        resync
            .peak_rss_kb
            .map_or("n/a".into(), |k| format!("{:.1} MB", k as f64 / 1024.0)),
        resync.report["new_versions"]
    );
    drop(server);
    // The trials changed that day, for `diff`, and others for the rest.
    let changed_ids: Vec<&str> = (0..21)
        .map(|k| ids[((k * 37) % changed.max(1)) * 100].as_str())
        .collect();
    reads(&cfg, "after the 1%-changed re-sync", &changed_ids);
    commit_record_cost(&maker, n.min(2_000));
    // BENCH_KEEP=1 leaves the stores on disk (paths printed) for further measurements.
    let keep = std::env::var_os("BENCH_KEEP").is_some();
    if keep {
        println!("synced store kept at {}", dir.keep().display());
    }
    if versions == 0 {
        return;
    }

    // 6. history on N trials x `versions` versions, built through the library.
    let hdir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let mut raw_bytes = 0usize;
    {
        let store = Store::open(hdir.path()).unwrap();
        // As a sync does: one commit (one disk flush) per batch of 100 trials.
        let all: Vec<usize> = (0..n).collect();
        for (c, chunk) in all.chunks(100).enumerate() {
            let chunk: Vec<(String, String)> = chunk.iter().map(|i| maker.study(*i)).collect();
            let mut prev: Vec<Option<trialwatch::model::Record>> = vec![None; chunk.len()];
            for v in 1..=versions {
                let mut staged = Vec::with_capacity(chunk.len());
                for (id, raw) in &chunk {
                    // Each version retitles the trial: one real field change per version.
                    let raw_v = raw.replacen(
                        "\"briefTitle\": \"",
                        &format!("\"briefTitle\": \"(rev {v}) "),
                        1,
                    );
                    assert_ne!(&raw_v, raw, "{id}");
                    let nct: NctId = id.parse().unwrap();
                    let record = trialwatch::normalize::normalize_json(&raw_v).unwrap();
                    let canonical = record.canonical_bytes();
                    raw_bytes += raw_v.len();
                    staged.push((nct, record, canonical, raw_v));
                }
                let items = staged
                    .iter()
                    .zip(&prev)
                    .map(|((nct, record, canonical, raw_v), prev)| NewVersion {
                        provenance: Default::default(),
                        nct,
                        record,
                        canonical,
                        raw: raw_v.as_bytes(),
                        changes: trialwatch::diff::diff(prev.as_ref(), record),
                        detected_at: Utc
                            .timestamp_opt(1_700_000_000 + (v as i64) * 86_400, 0)
                            .unwrap(),
                        resolved_id: None,
                        source_fingerprint: None,
                        alerts: vec![],
                    })
                    .collect();
                store.commit_versions(items).unwrap();
                prev = staged.into_iter().map(|(_, r, _, _)| Some(r)).collect();
            }
            if c % 10 == 9 {
                eprintln!("  built {} trials x {versions} versions", (c + 1) * 100);
            }
        }
        store.flush().unwrap();
        // As a sync command does at its end.
        store.publish_heads().unwrap();
    }
    let hsize = dir_size(hdir.path());
    println!(
        "history store: {n} trials x {versions} versions built in {:.0}s; {:.1} MB = {:.1}% of {:.1} MB raw JSON",
        t0.elapsed().as_secs_f64(),
        hsize as f64 / 1e6,
        100.0 * hsize as f64 / raw_bytes as f64,
        raw_bytes as f64 / 1e6
    );
    println!(
        "  of which sled and the heads file (the index) {:.1} MB",
        (hsize - dir_size(&hdir.path().join("packs"))) as f64 / 1e6
    );
    let hcfg = hdir.path().join("config.toml");
    std::fs::write(
        &hcfg,
        format!("data_dir = {:?}\n", hdir.path().display().to_string()),
    )
    .unwrap();
    let mut times = Vec::new();
    for k in 0..21 {
        let id = &ids[(k * 4999) % n];
        let t0 = Instant::now();
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&hcfg)
            .args(["history", id])
            .output()
            .unwrap();
        times.push(t0.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    times.sort();
    println!(
        "history (whole process, 21 runs): median {:.1} ms, max {:.1} ms",
        times[10].as_secs_f64() * 1e3,
        times[20].as_secs_f64() * 1e3
    );
    if keep {
        println!("history store kept at {}", hdir.keep().display());
    }
}

/// What the per-commit records of issue #12 (one sled flush and one pack entry per commit) cost
/// the write path: the same `n` first versions (normalized beforehand, outside the timing)
/// committed through the library in batches of 100, as a sync commits them, with and without
/// the records, alternating, three rounds each; medians.
fn commit_record_cost(maker: &StudyMaker, n: usize) {
    let studies: Vec<(NctId, trialwatch::model::Record, Vec<u8>, String)> = (0..n)
        .map(|i| {
            let (id, raw) = maker.study(i);
            let record = trialwatch::normalize::normalize_json(&raw).unwrap();
            let canonical = record.canonical_bytes();
            (id.parse().unwrap(), record, canonical, raw)
        })
        .collect();
    let mut with = Vec::new();
    let mut without = Vec::new();
    for round in 0..6 {
        let on = round % 2 == 0;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.set_commit_records(on);
        let t0 = Instant::now();
        for chunk in studies.chunks(100) {
            let items = chunk
                .iter()
                .map(|(nct, record, canonical, raw)| NewVersion {
                    provenance: Default::default(),
                    nct,
                    record,
                    canonical,
                    raw: raw.as_bytes(),
                    changes: trialwatch::diff::diff(None, record),
                    detected_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
                    resolved_id: None,
                    source_fingerprint: None,
                    alerts: vec![],
                })
                .collect();
            store.commit_versions(items).unwrap();
        }
        store.flush().unwrap();
        let secs = t0.elapsed().as_secs_f64();
        if on { &mut with } else { &mut without }.push(secs);
    }
    with.sort_by(f64::total_cmp);
    without.sort_by(f64::total_cmp);
    let (w, wo) = (with[1], without[1]);
    println!(
        "commit records (#12), {n} first versions in {} commits through the library: with {:.3}s \
         ({:.0} trials/s), without {:.3}s ({:.0} trials/s): {:+.1}% ({:.2} ms per commit), median of 3",
        n.div_ceil(100),
        w,
        n as f64 / w,
        wo,
        n as f64 / wo,
        100.0 * (w - wo) / wo,
        1e3 * (w - wo) / n.div_ceil(100) as f64
    );
}

/// Median and max wall time of `trialwatch ARGS` as a whole process, over `targets` (one run
/// each; `{}` in `args` is replaced by the trial).
fn timed(cfg: &Path, args: &[&str], targets: &[&str]) -> (f64, f64) {
    let mut times = Vec::with_capacity(targets.len());
    for id in targets {
        let argv: Vec<&str> = args
            .iter()
            .map(|a| if *a == "{}" { *id } else { a })
            .collect();
        let t0 = Instant::now();
        let out = Command::new(BIN)
            .arg("--config")
            .arg(cfg)
            .args(&argv)
            .output()
            .unwrap();
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() - 1])
}

/// The read commands on the store as it is, 21 runs each.
fn reads(cfg: &Path, what: &str, trials: &[&str]) {
    let same = vec![""; trials.len()];
    for (name, args, targets) in [
        ("history", &["history", "{}"][..], trials),
        ("show", &["show", "{}"][..], trials),
        ("diff", &["diff", "{}"][..], trials),
        (
            "changes --since 1d",
            &["changes", "--since", "1d"][..],
            &same[..],
        ),
        ("status", &["status"][..], &same[..]),
        ("watch list", &["watch", "list"][..], &same[..]),
    ] {
        let (median, max) = timed(cfg, args, targets);
        println!("  {what}: {name}: median {median:.1} ms, max {max:.1} ms (21 runs)");
    }
}
