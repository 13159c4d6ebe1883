//! `[watch]`: which trials are tracked ([`WatchConfig`]), from the inline `nct_ids` and the
//! optional watch-list file ([`read_watch_file`]). What a sync does with the list is
//! `crate::sync`'s business.

use std::path::{Path, PathBuf};

use super::check::relative_to;
use super::raw;
use crate::model::NctId;

/// `[watch]`: the trials every sync fetches.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// IDs from `nct_ids` and `nct_file`, deduplicated, in the order first given.
    pub nct_ids: Vec<NctId>,
    /// Kept so SIGHUP and messages can name the file the IDs came from.
    pub nct_file: Option<PathBuf>,
    /// `backfill` (default true): a trial's first sync also fetches its CT.gov record history
    /// (`crate::backfill`), and a sync that finds a new version repairs the versions it missed.
    pub backfill: bool,
}

/// Check `[watch]`: parse the inline IDs, read `nct_file` and merge both, first-given order.
pub(super) fn validate_watch(
    raw: &raw::Watch,
    file: Option<&Path>,
    problems: &mut Vec<String>,
) -> WatchConfig {
    let mut ids: Vec<NctId> = Vec::new();
    // A set, not `ids.contains`: every command loads the config, and a scan per ID made a
    // 100,000-line watch file cost seconds (quadratic) before any command ran.
    let mut seen = std::collections::HashSet::new();
    let mut push = |id: NctId| {
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    };
    for (i, s) in raw.nct_ids.iter().enumerate() {
        match s.parse::<NctId>() {
            Ok(id) => push(id),
            Err(e) => problems.push(format!("`watch.nct_ids[{i}]`: {e}")),
        }
    }
    // A relative watch-list path is relative to the config file, not to the working directory.
    let nct_file = raw.nct_file.as_ref().map(|f| relative_to(file, f));
    if let Some(path) = &nct_file {
        match read_watch_file(path) {
            Ok(list) => list.into_iter().for_each(&mut push),
            Err(mut e) => problems.append(&mut e),
        }
    }
    WatchConfig {
        nct_ids: ids,
        nct_file,
        backfill: raw.backfill.unwrap_or(true),
    }
}

/// Read a watch-list file: one NCT ID a line, blank lines and `#` comments ignored.
/// A leading UTF-8 byte-order mark (as Windows editors write) is ignored.
/// Returns every bad line at once, each naming `file:line`.
pub fn read_watch_file(path: &Path) -> Result<Vec<NctId>, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![format!(
            "`watch.nct_file` = {:?} cannot be read: {e}; create it (one NCT ID a line) or remove the key",
            path.display().to_string()
        )]
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut ids = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        match content.parse::<NctId>() {
            Ok(id) => ids.push(id),
            Err(e) => problems.push(format!("{}:{}: {e}", path.display(), n + 1)),
        }
    }
    if problems.is_empty() {
        Ok(ids)
    } else {
        Err(problems)
    }
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
        let ids: Vec<_> = c.watch.nct_ids.iter().map(|i| i.to_string()).collect();
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
        assert_eq!(c.watch.nct_ids.len(), 100_000);
        assert_eq!(c.watch.nct_ids[1].as_str(), "NCT70000001");
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    }
}
