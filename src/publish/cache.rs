//! The export's per-trial cache and the shared files made from it.
//!
//! Each exported trial leaves a [`TrialPiece`] in `DIR/.trialwatch-export/NCT….json`: a key of
//! the stored state its files were made from, until when its page stays the same, its index
//! row, its change rows already rendered as CSV records and JSON lines (one block per version),
//! and its newest feed entries already rendered as XML. A re-export renders only the trials
//! whose key moved and assembles `index.md`, `changes.csv`, `changes.jsonl` and the shared
//! feeds from the pieces ([`write_shared`]), so it never re-reads or re-sorts more than sort
//! keys and strings.
//!
//! A piece that is missing, does not parse, is of another [`PIECE_FORMAT`] or names another
//! trial is ignored and that trial is rendered again: a damaged cache costs time, never
//! correctness.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::tables::{self, TrialRow};
use super::{atom, files};
use crate::model::NctId;

/// The cache's directory, in the export's directory (a dot name: a web server's listing and
/// globs skip it).
pub const CACHE_DIR: &str = ".trialwatch-export";

/// Bump when what a piece holds or what an export writes changes: older pieces are then
/// ignored and every trial rendered again.
pub const PIECE_FORMAT: u32 = 2;

/// `feeds/all.atom` (and each query feed) holds this many newest entries.
pub const FEED_ENTRIES: usize = 200;

/// What the shared files need of one trial, and when its files must be made again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialPiece {
    /// [`PIECE_FORMAT`] when written.
    pub format: u32,
    /// The trial it is of.
    pub nct_id: String,
    /// A hash of the stored state and export options the files were made from.
    pub key: String,
    /// The page's recent-changes window changes at this time; render again from then on.
    pub valid_until: Option<DateTime<Utc>>,
    /// Its line of `index.md`.
    pub row: TrialRow,
    /// Its change rows, one block per version, in the trial's own order.
    pub blocks: Vec<ChangeBlock>,
    /// Its newest feed entries (at most [`FEED_ENTRIES`]), newest first.
    pub entries: Vec<FeedEntry>,
}

/// The change rows of one version, rendered: all share one sort key in the change tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeBlock {
    /// The rows' `detected_at`, as the rows print it (the tables sort on this text).
    pub at: String,
    /// The version's number.
    pub version: u32,
    /// The rows as `changes.csv` records.
    pub csv: String,
    /// The rows as `changes.jsonl` lines.
    pub jsonl: String,
}

/// One version's Atom entry, rendered, with what feeds sort on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedEntry {
    /// When the version was detected (the entry's `updated`).
    pub detected_at: DateTime<Utc>,
    /// The version's number.
    pub version: u32,
    /// The `<entry>` element.
    pub xml: String,
}

fn piece_path(dir: &Path, nct: &str) -> PathBuf {
    dir.join(CACHE_DIR).join(format!("{nct}.json"))
}

/// `nct`'s piece in the export at `dir`, when there is a sound one of this format.
pub fn load(dir: &Path, nct: &str) -> Option<TrialPiece> {
    let bytes = std::fs::read(piece_path(dir, nct)).ok()?;
    serde_json::from_slice::<TrialPiece>(&bytes)
        .ok()
        .filter(|p| p.format == PIECE_FORMAT && p.nct_id == nct)
}

/// Keep `piece` for the next export (through a temporary file renamed into place, rewritten
/// only when it changed).
pub fn save(w: &mut files::Writer, piece: &TrialPiece) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(piece)?;
    w.put(&format!("{CACHE_DIR}/{}.json", piece.nct_id), &bytes)?;
    Ok(())
}

/// Newest first, as feeds list versions: by detection time, then trial, then version (newest).
fn feed_order(a: &(&str, &FeedEntry), b: &(&str, &FeedEntry)) -> std::cmp::Ordering {
    b.1.detected_at
        .cmp(&a.1.detected_at)
        .then_with(|| a.0.cmp(b.0))
        .then_with(|| b.1.version.cmp(&a.1.version))
}

/// A trial's entries in feed order, at most `limit`: what its piece keeps.
pub fn newest_entries(nct: &str, mut entries: Vec<FeedEntry>, limit: usize) -> Vec<FeedEntry> {
    entries.sort_by(|a, b| feed_order(&(nct, a), &(nct, b)));
    entries.truncate(limit);
    entries
}

/// One shared feed: the newest [`FEED_ENTRIES`] of `pieces`' entries.
fn shared_feed(meta: &atom::FeedMeta<'_>, pieces: &[&TrialPiece]) -> String {
    let mut all: Vec<(&str, &FeedEntry)> = pieces
        .iter()
        .flat_map(|p| p.entries.iter().map(move |e| (p.nct_id.as_str(), e)))
        .collect();
    all.sort_by(feed_order);
    all.truncate(FEED_ENTRIES);
    let updated = all.iter().map(|(_, e)| e.detected_at).max();
    let xml: Vec<&str> = all.iter().map(|(_, e)| e.xml.as_str()).collect();
    atom::feed_of_entries(meta, updated, &xml)
}

/// A file name for a feed group: letters, digits, `-` and `_` kept, anything else `_`.
pub fn feed_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Write the shared files from the exported trials' pieces (in index order): `index.md`,
/// `changes.csv` and `changes.jsonl` (newest first, as `trialwatch changes`: by detection
/// time, then trial, then version, a version's rows in their order), `feeds/all.atom`, and
/// one `feeds/query-NAME.atom` per `(name, members)` group.
pub fn write_shared(
    w: &mut files::Writer,
    pieces: &[&TrialPiece],
    groups: &[(String, Vec<NctId>)],
) -> anyhow::Result<()> {
    let rows: Vec<TrialRow> = pieces.iter().map(|p| p.row.clone()).collect();
    w.put("index.md", tables::index_markdown(&rows).as_bytes())?;
    drop(rows);

    let mut blocks: Vec<(&str, &ChangeBlock)> = pieces
        .iter()
        .flat_map(|p| p.blocks.iter().map(move |b| (p.nct_id.as_str(), b)))
        .collect();
    blocks.sort_by(|(na, a), (nb, b)| {
        b.at.cmp(&a.at)
            .then_with(|| na.cmp(nb))
            .then_with(|| a.version.cmp(&b.version))
    });
    let mut csv = tables::CSV_COLUMNS.join(",");
    csv.push_str("\r\n");
    csv.reserve(blocks.iter().map(|(_, b)| b.csv.len()).sum());
    for (_, b) in &blocks {
        csv.push_str(&b.csv);
    }
    w.put("changes.csv", csv.as_bytes())?;
    drop(csv);
    let mut jsonl = String::with_capacity(blocks.iter().map(|(_, b)| b.jsonl.len()).sum());
    for (_, b) in &blocks {
        jsonl.push_str(&b.jsonl);
    }
    w.put("changes.jsonl", jsonl.as_bytes())?;
    drop(jsonl);

    let feed = shared_feed(
        &atom::FeedMeta {
            key: "all",
            title: "trialwatch: all trials",
            alternate: None,
        },
        pieces,
    );
    w.put("feeds/all.atom", feed.as_bytes())?;
    for (name, ids) in groups {
        let members: std::collections::HashSet<&str> = ids.iter().map(NctId::as_str).collect();
        let picked: Vec<&TrialPiece> = pieces
            .iter()
            .copied()
            .filter(|p| members.contains(p.nct_id.as_str()))
            .collect();
        let title = format!("trialwatch: {name}");
        let key = format!("query:{name}");
        let feed = shared_feed(
            &atom::FeedMeta {
                key: &key,
                title: &title,
                alternate: None,
            },
            &picked,
        );
        w.put(
            &format!("feeds/query-{}.atom", feed_file_name(name)),
            feed.as_bytes(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(nct: &str) -> TrialPiece {
        TrialPiece {
            format: PIECE_FORMAT,
            nct_id: nct.into(),
            key: "k".into(),
            valid_until: None,
            row: TrialRow {
                nct_id: nct.into(),
                title: "t".into(),
                status: None,
                phase: None,
                sponsor: None,
                last_change: None,
                severity: None,
            },
            blocks: vec![],
            entries: vec![],
        }
    }

    #[test]
    fn a_damaged_or_foreign_piece_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = files::Writer::new(dir.path()).unwrap();
        save(&mut w, &piece("NCT00000102")).unwrap();
        assert_eq!(load(dir.path(), "NCT00000102"), Some(piece("NCT00000102")));
        let path = piece_path(dir.path(), "NCT00000102");
        // Another trial's piece under this name, an old format, a torn file: all ignored.
        std::fs::copy(&path, piece_path(dir.path(), "NCT00000103")).unwrap();
        assert_eq!(load(dir.path(), "NCT00000103"), None);
        let mut old = piece("NCT00000102");
        old.format = PIECE_FORMAT - 1;
        save(&mut w, &old).unwrap();
        assert_eq!(load(dir.path(), "NCT00000102"), None);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(load(dir.path(), "NCT00000102"), None);
        assert_eq!(load(dir.path(), "NCT00000104"), None);
    }

    #[test]
    fn change_blocks_are_joined_newest_first_and_feeds_keep_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = files::Writer::new(dir.path()).unwrap();
        let block = |at: &str, v: u32, line: &str| ChangeBlock {
            at: at.into(),
            version: v,
            csv: format!("{line}\r\n"),
            jsonl: format!("{line}\n"),
        };
        let entry = |t: i64, v: u32| FeedEntry {
            detected_at: DateTime::from_timestamp(t, 0).unwrap(),
            version: v,
            xml: format!("<e{t}/>\n"),
        };
        let mut a = piece("NCT00000001");
        a.blocks = vec![
            block("2026-01-01T00:00:00Z", 2, "a2"),
            block("2026-01-03T00:00:00Z", 3, "a3"),
        ];
        a.entries = vec![entry(3, 3), entry(1, 2)];
        let mut b = piece("NCT00000002");
        b.blocks = vec![block("2026-01-01T00:00:00Z", 2, "b2")];
        b.entries = vec![entry(2, 2)];
        write_shared(&mut w, &[&a, &b], &[]).unwrap();
        let jsonl = std::fs::read_to_string(dir.path().join("changes.jsonl")).unwrap();
        assert_eq!(jsonl, "a3\na2\nb2\n");
        let csv = std::fs::read_to_string(dir.path().join("changes.csv")).unwrap();
        assert!(csv.ends_with("\r\na3\r\na2\r\nb2\r\n"), "{csv}");
        let feed = std::fs::read_to_string(dir.path().join("feeds/all.atom")).unwrap();
        let (e3, e2, e1) = (
            feed.find("<e3/>").unwrap(),
            feed.find("<e2/>").unwrap(),
            feed.find("<e1/>").unwrap(),
        );
        assert!(e3 < e2 && e2 < e1, "{feed}");
        assert!(
            feed.contains("<updated>1970-01-01T00:00:03Z</updated>"),
            "{feed}"
        );
    }
}
