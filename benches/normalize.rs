//! Parse and normalize throughput on the real CT.gov fixtures, for the "300 MB of studies in
//! about a second" budget of the sync. Run: `cargo bench --bench normalize` (release build, so
//! the figures mean something). Under `cargo test --all-targets` it runs one round over the
//! fixtures as a smoke test, so CI keeps it working without paying for it.
// The shared test support is `pub` so that every crate including it can use it; in one crate
// some of it is unused, which `unreachable_pub` would flag.
#![allow(unreachable_pub)]

use std::fs;
use std::path::{Path, PathBuf};

use trialwatch::ctgov::wire;
use trialwatch::normalize::normalize_json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn json_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(fixtures().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Throughput check for the "300 MB of studies in about a second" budget: parse only, a
/// skip-only floor, and parse + normalize, over about `target_bytes` of the fixtures' JSON
/// (at least one round).
fn parse_and_normalize_throughput(target_bytes: usize) {
    let studies: Vec<String> = json_files("ctgov")
        .into_iter()
        .filter(|p| name(p).starts_with("NCT"))
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    let per_round: usize = studies.iter().map(String::len).sum();
    let rounds = (target_bytes / per_round).max(1);
    let total_mb = (per_round * rounds) as f64 / 1e6;

    let t = std::time::Instant::now();
    let mut n = 0usize;
    for _ in 0..rounds {
        for s in &studies {
            let w: wire::Study = serde_json::from_str(s).unwrap();
            n += usize::from(w.protocol_section.is_some());
        }
    }
    let parse = t.elapsed().as_secs_f64();

    let t = std::time::Instant::now();
    for _ in 0..rounds {
        for s in &studies {
            let _: serde::de::IgnoredAny = serde_json::from_str(s).unwrap();
        }
    }
    let skip = t.elapsed().as_secs_f64();
    println!("skip-only floor {skip:.2}s ({:.0} MB/s)", total_mb / skip);

    let t = std::time::Instant::now();
    for _ in 0..rounds {
        for s in &studies {
            n += normalize_json(s).unwrap().0.len();
        }
    }
    let both = t.elapsed().as_secs_f64();
    println!(
        "{total_mb:.0} MB ({n} items): parse {parse:.2}s ({:.0} MB/s), parse+normalize {both:.2}s ({:.0} MB/s)",
        total_mb / parse,
        total_mb / both
    );
}

fn main() {
    // `cargo bench` passes `--bench`: the full 300 MB; otherwise (cargo test) one round.
    let full = std::env::args().any(|a| a == "--bench");
    parse_and_normalize_throughput(if full { 300_000_000 } else { 0 });
}
