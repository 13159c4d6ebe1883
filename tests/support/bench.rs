//! Shared by the benchmarks: studies made from the real fixtures under new IDs in a size mix
//! like the registry's, and disk usage.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Fixture files and how many of every 1,000 generated trials use each. The weights give a mean
/// near the registry's ~30 KB with the 1.5 MB PALLAS record at 1 in 1,000.
pub const MIX: &[(&str, u32)] = &[
    ("NCT00973089.json", 140), // 7 KB
    ("NCT03418623.json", 150), // 9 KB
    ("NCT03475563.json", 120), // 10 KB
    ("NCT06171568.json", 120), // 11 KB
    ("NCT04207047.json", 100), // 14 KB
    ("NCT05594173.json", 80),  // 26 KB
    ("NCT03630471.json", 80),  // 36 KB
    ("NCT00763412.json", 60),  // 43 KB
    ("NCT03064438.json", 50),  // 62 KB
    ("NCT02210780.json", 55),  // 98 KB
    ("NCT02552212.json", 44),  // 151 KB
    ("NCT02513394.json", 1),   // 1.5 MB
];

pub fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ctgov")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn nct_of(raw: &str) -> String {
    let v: Value = serde_json::from_str(raw).unwrap();
    v["protocolSection"]["identificationModule"]["nctId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Only the small real fixtures (7–14 KB), equally: the worst case for the store's compression
/// (least repeated text per record). `BENCH_MIX=small` selects it.
pub const SMALL_MIX: &[(&str, u32)] = &[
    ("NCT00973089.json", 1),
    ("NCT03418623.json", 1),
    ("NCT03475563.json", 1),
    ("NCT06171568.json", 1),
    ("NCT04207047.json", 1),
];

/// Makes study `i` of a mix on demand, so a benchmark of 100,000 trials need not hold 3 GB of
/// JSON twice (once here, once in the fake server).
pub struct StudyMaker {
    sources: Vec<(String, String)>,
    slots: Vec<usize>,
}

impl StudyMaker {
    pub fn new(mix: &[(&str, u32)]) -> StudyMaker {
        let sources: Vec<(String, String)> = mix
            .iter()
            .map(|(f, _)| {
                let raw = fixture(f);
                let id = nct_of(&raw);
                (raw, id)
            })
            .collect();
        let mut slots = Vec::new();
        for (i, (_, w)) in mix.iter().enumerate() {
            slots.extend(std::iter::repeat_n(i, *w as usize));
        }
        StudyMaker { sources, slots }
    }

    /// The ID of study `i`.
    pub fn id(i: usize) -> String {
        format!("NCT{:08}", 70_000_000 + i)
    }

    /// Study `i`: its ID and JSON.
    pub fn study(&self, i: usize) -> (String, String) {
        let (raw, old) = &self.sources[self.slots[(i * 7919) % self.slots.len()]];
        let id = Self::id(i);
        (id.clone(), raw.replace(old.as_str(), &id))
    }
}

/// `n` studies under IDs NCT7xxxxxxx, following MIX.
pub fn make_studies(n: usize) -> Vec<(String, String)> {
    let maker = StudyMaker::new(MIX);
    (0..n).map(|i| maker.study(i)).collect()
}

pub fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let m = e.metadata().unwrap();
                    if m.is_dir() {
                        dir_size(&e.path())
                    } else {
                        m.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A config for the benchmarks: the watch list in a file, no rate limit, batches of 100, no
/// backfill (a benchmark that wants one runs `trialwatch backfill` itself).
pub fn write_config(dir: &Path, base_url: &str, ids: &[String]) -> PathBuf {
    let list = dir.join("watchlist.txt");
    std::fs::write(&list, ids.join("\n")).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[ctgov]\nbase_url = {base_url:?}\nrequests_per_minute = 0\nbatch_size = 100\n\
             [watch]\nnct_file = {:?}\nbackfill = false\n",
            dir.join("data").display().to_string(),
            list.display().to_string()
        ),
    )
    .unwrap();
    cfg
}
