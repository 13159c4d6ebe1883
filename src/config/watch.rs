//! `[watch]`: which trials are tracked ([`WatchConfig`]), from the inline `nct_ids` and the
//! optional watch-list file ([`read_watch_file`]), kept compactly as numbers ([`WatchList`]).
//! The file is read when the configuration is loaded with [`WatchFile::Read`], or on first use
//! of [`WatchConfig::ids`] when it was loaded with [`WatchFile::Deferred`] (the read commands,
//! which never look at the watch list, so a 100,000-line file costs them nothing). What a sync
//! does with the list is `crate::sync`'s business.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::check::relative_to;
use super::raw;
use crate::model::NctId;

/// Whether loading the configuration reads `[watch] nct_file` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFile {
    /// Read and check it now, its problems reported with the rest of the configuration's
    /// (the commands that use the watch list: sync, daemon, watch, check-config, ...).
    Read,
    /// Leave it unread until [`WatchConfig::ids`] is called: for commands that never use the
    /// watch list (history, show, diff, changes, status, ...), whose cost must not grow with it.
    Deferred,
}

/// The watched trials, deduplicated, in the order first given, as the numbers of their IDs
/// (`NCT` + 8 digits fits a `u32`): 4 bytes a trial instead of a heap `String`, which matters
/// to the daemon's idle memory at 100,000 trials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchList {
    numbers: Vec<u32>,
}

impl WatchList {
    /// How many trials the list holds.
    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    /// Whether the list is empty (nothing to sync).
    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }

    /// The trials as IDs, in list order.
    pub fn iter(&self) -> impl Iterator<Item = NctId> + '_ {
        // Every number came from a parsed ID, so the round trip cannot fail.
        self.numbers
            .iter()
            .filter_map(|n| format!("NCT{n:08}").parse().ok())
    }

    /// Whether `id` is on the list (a scan of 4-byte numbers: ~0.1 ms at 100,000 trials).
    pub fn contains(&self, id: &NctId) -> bool {
        let n = id.number();
        self.numbers.contains(&n)
    }

    /// The trials as IDs, in list order.
    pub fn to_vec(&self) -> Vec<NctId> {
        self.iter().collect()
    }

    fn extend_unique(&mut self, seen: &mut HashSet<u32>, numbers: impl IntoIterator<Item = u32>) {
        for n in numbers {
            if seen.insert(n) {
                self.numbers.push(n);
            }
        }
    }
}

/// `[watch]`: the trials every sync fetches.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Kept so SIGHUP and messages can name the file the IDs came from.
    pub nct_file: Option<PathBuf>,
    /// `backfill` (default true): a trial's first sync also fetches its CT.gov record history
    /// (`crate::backfill`), and a sync that finds a new version repairs the versions it missed.
    pub backfill: bool,
    /// The inline `nct_ids`, checked at load.
    inline: WatchList,
    /// `inline` then the file's IDs; set at load ([`WatchFile::Read`], or no file) or on the
    /// first [`WatchConfig::ids`].
    all: OnceLock<WatchList>,
}

impl WatchConfig {
    /// IDs from `nct_ids` and `nct_file`, deduplicated, in the order first given. With a
    /// deferred file (see [`WatchFile`]) the first call reads it; if it cannot be read then,
    /// the problems are logged and only the inline IDs are returned (the commands that defer
    /// it do not use the list; `check-config` and `sync` load it up front and report them).
    pub fn ids(&self) -> &WatchList {
        self.all.get_or_init(|| {
            let mut problems = Vec::new();
            let list = self.merged(&mut problems);
            for p in &problems {
                tracing::error!("invalid configuration: {p}");
            }
            list
        })
    }

    /// The inline IDs followed by the file's, deduplicated; the file's problems (if any) are
    /// pushed to `problems`.
    fn merged(&self, problems: &mut Vec<String>) -> WatchList {
        let mut list = self.inline.clone();
        if let Some(path) = &self.nct_file {
            match read_watch_numbers(path) {
                Ok(numbers) => {
                    let mut seen: HashSet<u32> = list.numbers.iter().copied().collect();
                    seen.reserve(numbers.len());
                    list.extend_unique(&mut seen, numbers);
                }
                Err(mut e) => problems.append(&mut e),
            }
        }
        list.numbers.shrink_to_fit();
        list
    }
}

/// Check `[watch]`: parse the inline IDs and (unless deferred) read `nct_file` and merge both,
/// first-given order.
pub(super) fn validate_watch(
    raw: &raw::Watch,
    file: Option<&Path>,
    watch_file: WatchFile,
    problems: &mut Vec<String>,
) -> WatchConfig {
    let mut inline = WatchList::default();
    let mut seen = HashSet::new();
    for (i, s) in raw.nct_ids.iter().enumerate() {
        match s.parse::<NctId>() {
            Ok(id) => inline.extend_unique(&mut seen, [id.number()]),
            Err(e) => problems.push(format!("`watch.nct_ids[{i}]`: {e}")),
        }
    }
    // A relative watch-list path is relative to the config file, not to the working directory.
    let nct_file = raw.nct_file.as_ref().map(|f| relative_to(file, f));
    let cfg = WatchConfig {
        nct_file,
        backfill: raw.backfill.unwrap_or(true),
        inline,
        all: OnceLock::new(),
    };
    if cfg.nct_file.is_none() || watch_file == WatchFile::Read {
        let all = cfg.merged(problems);
        let _ = cfg.all.set(all);
    }
    cfg
}

/// Read a watch-list file: one NCT ID a line, blank lines and `#` comments ignored.
/// A leading UTF-8 byte-order mark (as Windows editors write) is ignored.
/// Returns every bad line at once, each naming `file:line`.
pub fn read_watch_file(path: &Path) -> Result<Vec<NctId>, Vec<String>> {
    let list = WatchList {
        numbers: read_watch_numbers(path)?,
    };
    Ok(list.to_vec())
}

/// [`read_watch_file`] as numbers, without one `String` per line.
fn read_watch_numbers(path: &Path) -> Result<Vec<u32>, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![format!(
            "`watch.nct_file` = {:?} cannot be read: {e}; create it (one NCT ID a line) or remove the key",
            path.display().to_string()
        )]
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut numbers = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        match quick_number(content) {
            Some(number) => numbers.push(number),
            // The slow path, for its message: `NctId`'s parser is the one definition of an ID.
            None => match content.parse::<NctId>() {
                Ok(id) => numbers.push(id.number()),
                Err(e) => problems.push(format!("{}:{}: {e}", path.display(), n + 1)),
            },
        }
    }
    if problems.is_empty() {
        Ok(numbers)
    } else {
        Err(problems)
    }
}

/// The number of a trimmed, well-formed ID (`NCT` in any case and 8 digits, not all zero),
/// without allocating; `None` sends the line to `NctId`'s parser. Hand-written rather than
/// `NctId::from_str` because that builds a `String` per line, the main cost of a 100,000-line
/// file.
fn quick_number(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 11 || !b[..3].eq_ignore_ascii_case(b"nct") {
        return None;
    }
    let mut n: u32 = 0;
    for &d in &b[3..] {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(d - b'0');
    }
    (n != 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn watch_file_is_read_relative_to_the_config_with_comments() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("list.txt"),
            "# my trials\nNCT02241018\n\nnct02985775  # lowercase is fine\nNCT02241018\n",
        )
        .unwrap();
        let cfg_path = dir.path().join("c.toml");
        let c = Config::from_toml(
            "[watch]\nnct_ids=[\"NCT00000001\"]\nnct_file = \"list.txt\"\n",
            Some(&cfg_path),
        )
        .unwrap();
        let ids: Vec<_> = c.watch.ids().iter().map(|i| i.to_string()).collect();
        assert_eq!(ids, ["NCT00000001", "NCT02241018", "NCT02985775"]);
    }

    #[test]
    fn bad_watch_file_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list.txt");
        std::fs::write(&p, "NCT02241018\nNCTXYZ\n").unwrap();
        let e = read_watch_file(&p).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("list.txt:2"), "{}", e[0]);
    }

    /// Guards the set behind the deduplication: every command loads the config, so a watch
    /// file of 100,000 trials must load in milliseconds, not in the seconds a scan per ID took.
    #[test]
    fn a_100k_watch_file_loads_fast_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let mut text: String = (0..100_000)
            .map(|i| format!("NCT{:08}\n", 70_000_000 + i))
            .collect();
        text.push_str("NCT70000000\n");
        std::fs::write(dir.path().join("list.txt"), text).unwrap();
        let t0 = std::time::Instant::now();
        let c = Config::from_toml(
            "[watch]\nnct_file = \"list.txt\"\n",
            Some(&dir.path().join("c.toml")),
        )
        .unwrap();
        let took = t0.elapsed();
        assert_eq!(c.watch.ids().len(), 100_000);
        assert_eq!(c.watch.ids().to_vec()[1].as_str(), "NCT70000001");
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    }

    /// The read commands load the configuration with the file deferred: a missing or broken
    /// watch file costs them nothing and does not stop them; the first `ids()` reads it.
    #[test]
    fn a_deferred_watch_file_is_read_on_first_use_only() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("c.toml");
        let text = "[watch]\nnct_ids = [\"NCT00000001\"]\nnct_file = \"list.txt\"\n";
        // Missing: eager loading names the file, deferred loading does not look at it.
        let e = Config::from_toml(text, Some(&cfg_path)).unwrap_err();
        assert!(e.to_string().contains("list.txt"), "{e}");
        let c = Config::from_toml_with(text, Some(&cfg_path), WatchFile::Deferred).unwrap();
        std::fs::write(dir.path().join("list.txt"), "NCT02241018\nNCT00000001\n").unwrap();
        let ids: Vec<_> = c.watch.ids().iter().map(String::from).collect();
        assert_eq!(ids, ["NCT00000001", "NCT02241018"]);
        // Still unreadable at first use: the inline IDs, and no panic.
        let c = Config::from_toml_with(
            "[watch]\nnct_ids = [\"NCT00000001\"]\nnct_file = \"gone.txt\"\n",
            Some(&cfg_path),
            WatchFile::Deferred,
        )
        .unwrap();
        assert_eq!(c.watch.ids().len(), 1);
        assert!(c.watch.ids().contains(&"NCT00000001".parse().unwrap()));
        assert!(!c.watch.ids().contains(&"NCT02241018".parse().unwrap()));
    }

    /// The allocation-free fast path accepts exactly what `NctId`'s parser accepts.
    #[test]
    fn the_fast_line_parser_agrees_with_nct_id() {
        for s in [
            "NCT02241018",
            "nct02241018",
            "NcT02241018",
            "NCT00000000",
            "NCT0224101",
            "NCT022410180",
            "NCT0224101x",
            "XCT02241018",
            "NCT-2241018",
            "NCT+2241018",
            "ÑCT02241018",
            "NCT99999999",
        ] {
            let slow = s.parse::<NctId>().ok().map(|id| id.number());
            if let Some(fast) = quick_number(s) {
                assert_eq!(Some(fast), slow, "{s}");
            }
            assert_eq!(quick_number(s).is_some(), slow.is_some(), "{s}");
        }
    }
}
