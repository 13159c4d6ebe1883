//! The packs' own account of every commit, and what is built on it: the commit records a
//! commit appends to the packs, the check that the index (sled, `db/`) still holds every
//! commit they record (at open, and in full by `verify`), and `trialwatch repair`, which
//! rebuilds the index from them.
//!
//! Why commit records: a pack blob is only bytes — a version's metadata names its version but
//! not its trial, and a record names the canonical ID, not the watched one (an alias). So each
//! commit appends, once its sled batch is durable, one more pack entry (payload tag
//! [`COMMIT_TAG`], never a codec tag) listing each trial's new state (`TrialState`, the `t`
//! value) and its new version-table rows. A record thus exists only for a commit the index had
//! made durable: an index without one has lost it (damage, a rolled-back log), while the
//! remains of a commit killed before its sled batch (unreferenced blobs) carry no record and
//! are rightly ignored.
//!
//! What a rebuilt index cannot get from the packs: the watch list, subscriptions, the outbox,
//! digest times and bookkeeping (`last_sync`), and a trial's state changes after its last new
//! version (`last_seen_at`, `last_error`, CT.gov's history summary). Repair keeps them from the
//! old index when that can still be read; otherwise they are lost, and repair says so.
//! Versions committed before commit records existed (older stores) are taken from the old
//! index when it still has them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::{Codec, decode, encode, from_json, to_json};
use super::keys::encode_time_entries;
use super::keys::{VersionBlobs, decode_table, encode_table, key, name_key, time_key};
use super::pack::{COMMIT_TAG, FoundCommit};
use super::{
    FORMAT_VERSION, Packs, Result, Store, StoreError, TrialState, corrupt, make_private,
    sled_config,
};
use crate::model::NctId;

/// Meta name of the pack position where the newest commit's record goes: the open-time check
/// reads the packs from there only.
const PACK_END: &str = "pack_end";

/// One commit, as the packs keep it.
#[derive(Serialize, Deserialize)]
struct CommitRecord {
    trials: Vec<CommitTrial>,
}

#[derive(Serialize, Deserialize)]
struct CommitTrial {
    /// The trial's `t` value as this commit wrote it.
    state: TrialState,
    /// `(version, hex of its 48-byte table entry)` for every row this commit wrote.
    rows: Vec<(u32, String)>,
}

/// What `trialwatch repair` did, for its output.
#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    /// Trials in the rebuilt index.
    pub trials: usize,
    /// Versions in the rebuilt index.
    pub versions: usize,
    /// Commit records read from the packs.
    pub commits: usize,
    /// Pack bytes that were no whole entry (remains of failed writes, or damage).
    pub skipped_bytes: u64,
    /// Whether the old index could be read (its watch list, subscriptions, outbox and
    /// bookkeeping were kept).
    pub old_index_read: bool,
    /// Why the old index could not be read, when it could not.
    pub old_index_error: Option<String>,
    /// Where the old index was moved (kept until the user deletes it).
    pub old_index_kept_at: Option<PathBuf>,
    /// What could not be restored, one sentence each.
    pub not_restored: Vec<String>,
    /// What `verify` says of the rebuilt store (empty: sound).
    pub problems: Vec<String>,
}

/// One trial as the commit records tell it.
#[derive(Default)]
struct Replayed {
    state: Option<TrialState>,
    rows: BTreeMap<u32, VersionBlobs>,
}

/// Replay commit records in pack order: the newest state and row win.
fn replay(found: &[FoundCommit]) -> Result<BTreeMap<NctId, Replayed>> {
    let mut out: BTreeMap<NctId, Replayed> = BTreeMap::new();
    for f in found {
        let label = format!("commit record in pack {} at {}", f.pack, f.offset);
        let json = decode(label.as_bytes(), &f.payload, &[])?;
        let rec: CommitRecord = from_json(label.as_bytes(), &json)?;
        for t in rec.trials {
            let r = out.entry(t.state.nct_id.clone()).or_default();
            for (v, hex_row) in &t.rows {
                let bytes = hex::decode(hex_row)
                    .map_err(|e| corrupt(label.as_bytes(), format!("a row is not hex: {e}")))?;
                let row = decode_table(label.as_bytes(), &bytes)?;
                if let Some(row) = row.first() {
                    r.rows.insert(*v, *row);
                }
            }
            r.state = Some(t.state);
        }
    }
    Ok(out)
}

impl Store {
    /// The commit record of one commit, built from its staged states and tables (the last
    /// staged of each trial), with only the rows that differ from the stored table.
    pub(super) fn commit_record(
        &self,
        states: &[TrialState],
        tables: &[(NctId, Vec<VersionBlobs>)],
    ) -> Result<Vec<u8>> {
        let mut trials = Vec::new();
        let mut done = std::collections::HashSet::new();
        for state in states.iter().rev() {
            if !done.insert(state.nct_id.clone()) {
                continue;
            }
            let Some((_, table)) = tables.iter().rev().find(|(n, _)| *n == state.nct_id) else {
                continue;
            };
            let stored = self.table(&state.nct_id)?;
            let rows = table
                .iter()
                .zip(1u32..)
                .enumerate()
                .filter(|(i, (e, _))| stored.get(*i) != Some(*e))
                .map(|(_, (e, v))| (v, hex::encode(encode_table(std::slice::from_ref(e)))))
                .collect();
            trials.push(CommitTrial {
                state: state.clone(),
                rows,
            });
        }
        let mut payload = vec![COMMIT_TAG];
        payload.extend(encode(
            &to_json(&CommitRecord { trials }),
            Codec::Plain,
            &[],
        ));
        Ok(payload)
    }

    /// Stage the pack position where this commit's record will go, in its own sled batch.
    pub(super) fn stage_pack_end(&self, batch: &mut sled::Batch) {
        if let Some(end) = self.packs.end() {
            batch.insert(name_key(b'm', PACK_END), to_json(&end));
        }
    }

    /// After the commit's sled batch: make it durable, then append its record (made durable
    /// by the next commit's pack sync, or the next flush). A record that cannot be written
    /// costs only the ability to rebuild this commit from the packs; the commit stands.
    ///
    /// A failed flush (a full disk) leaves the commit as sled applied it, as before commit
    /// records: the record is left out, since it must never name a commit the index may lose.
    pub(super) fn append_commit_record(&self, record: Vec<u8>) -> Result<()> {
        if !self
            .packs
            .commit_records
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        if let Err(e) = self.db()?.flush() {
            tracing::warn!(error = %e, "the index could not be flushed; no commit record written");
            return Ok(());
        }
        if let Err(e) = self.packs.append(&record) {
            tracing::warn!(error = %e, "the commit record could not be appended to the packs");
        }
        Ok(())
    }

    /// Turn commit records (and the sled flush before each) off or on for this handle. Only
    /// `benches/sync.rs` turns them off, to measure what they cost a commit: a store written
    /// without them cannot be checked or rebuilt by `verify`/`repair` for those commits.
    #[doc(hidden)]
    pub fn set_commit_records(&self, on: bool) {
        self.packs
            .commit_records
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// At open: every commit the packs record since the index's last known commit must be in
    /// the index; otherwise the index lost commits, and writing to it would build on that.
    pub(super) fn check_recent_commits(&self) -> Result<()> {
        let Some(from) = self.get_meta::<(u32, u64)>(PACK_END)? else {
            return Ok(());
        };
        let mut skipped = 0;
        let found = self.packs.scan_commits(Some(from), &mut skipped)?;
        match self.missing_commits(&replay(&found)?)?.first() {
            Some(reason) => Err(StoreError::IndexDamaged {
                path: self.path.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// One sentence per trial whose committed versions (as replayed) the index lacks.
    fn missing_commits(&self, replayed: &BTreeMap<NctId, Replayed>) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (nct, r) in replayed {
            let Some(&newest) = r.rows.keys().next_back() else {
                continue;
            };
            let (latest, have) = self
                .trial_entry(nct)
                .ok()
                .flatten()
                .map_or((0, 0), |(t, table)| (t.latest_version, table.len() as u32));
            if have < newest || latest < newest {
                out.push(format!(
                    "the packs record {nct} up to version {newest} as committed, but the index has \
                     {} of them",
                    have.min(latest)
                ));
            }
        }
        Ok(out)
    }

    /// `verify`'s cross-check of the whole index against every commit record in the packs.
    pub(super) fn verify_against_packs(&self, problems: &mut Vec<String>) -> Result<()> {
        let mut skipped = 0;
        let found = self.packs.scan_commits(None, &mut skipped)?;
        for p in self.missing_commits(&replay(&found)?)? {
            problems.push(format!(
                "{p}: the index is damaged or rolled back; run `trialwatch repair`"
            ));
        }
        Ok(())
    }
}

/// Rebuild the index of the store in `dir` from the commit records in its packs, keeping what
/// only the old index knew when it can still be read. The old `db/` is kept beside it as
/// `db.damaged-<time>`; the new one is built aside and swapped in only when complete.
/// Needs the store to be free (no daemon).
pub fn repair(dir: &Path) -> Result<RepairReport> {
    let mut rep = RepairReport::default();
    let old = match Store::open_read_only(dir) {
        Ok(s) => Some(s),
        Err(StoreError::IndexMissing { .. }) => {
            rep.old_index_error = Some("it is missing".into());
            None
        }
        Err(e) => {
            rep.old_index_error = Some(e.to_string());
            None
        }
    };
    rep.old_index_read = old.is_some();
    let packs = Packs::new(&dir.join("packs"));
    let found = packs.scan_commits(None, &mut rep.skipped_bytes)?;
    rep.commits = found.len();
    let replayed = replay(&found)?;

    let fresh = dir.join("db.repair");
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh).map_err(sled::Error::Io)?;
    }
    super::create_private_dir(&fresh).map_err(sled::Error::Io)?;
    let db = sled_config(&fresh, super::DEFAULT_CACHE_BYTES).open()?;
    // The heads file describes the index being replaced: gone before anything is rebuilt.
    super::heads::remove(dir).map_err(sled::Error::Io)?;
    let new = Store::with_db(dir, db, None);
    // What only the old index knows: everything but trial states, version tables and the
    // time index (rebuilt below).
    let mut old_states: HashMap<NctId, (TrialState, Vec<VersionBlobs>)> = HashMap::new();
    if let Some(old) = &old {
        for kv in old.db()?.iter() {
            let (k, v) = kv?;
            match k.first() {
                Some(b'T') => {
                    let (t, table) = super::trial_value::decode(&k, &v)?;
                    let table = decode_table(&k, table).unwrap_or_default();
                    old_states.insert(t.nct_id.clone(), (t, table));
                }
                // An index left in format 3 by a crash before its migration finished.
                Some(b't') => {
                    let t: TrialState = from_json(&k, &v)?;
                    let vk = key(b'V', &t.nct_id);
                    let table = match old.db()?.get(&vk)? {
                        Some(tv) => decode_table(&vk, &tv).unwrap_or_default(),
                        None => Vec::new(),
                    };
                    old_states.insert(t.nct_id.clone(), (t, table));
                }
                Some(b'V' | b'c') => {}
                // The rebuilt index is written in this build's format.
                _ if k.as_ref() == b"F" => {}
                _ => {
                    new.writing()?.insert(k, v)?;
                }
            }
        }
    } else {
        rep.not_restored = vec![
            "the watch list kept by `trialwatch watch add` (trials in the configuration are \
             unaffected)"
                .into(),
            "subscriptions added with `trialwatch subscribe` and their digest times".into(),
            "the outbox: alerts not yet delivered, and dead letters".into(),
            "each trial's last-seen time, last error and CT.gov history summary since its \
             newest version"
                .into(),
            "the last sync's summary shown by `status`".into(),
        ];
    }
    let mut ncts: Vec<NctId> = replayed.keys().cloned().collect();
    ncts.extend(
        old_states
            .keys()
            .filter(|n| !replayed.contains_key(*n))
            .cloned(),
    );
    ncts.sort();
    for nct in ncts {
        let old_one = old_states.remove(&nct);
        let (state, table) = match (replayed.get(&nct), old_one) {
            (Some(r), old_one) => {
                let Some(state) = r.state.clone() else {
                    continue;
                };
                let mut table = Vec::new();
                for v in 1..=state.latest_version {
                    let row = r.rows.get(&v).copied().or_else(|| {
                        old_one
                            .as_ref()
                            .and_then(|(_, t)| t.get(v as usize - 1).copied())
                    });
                    match row {
                        Some(row) => table.push(row),
                        None => break,
                    }
                }
                match old_one {
                    // The old index is at least as new: keep its fresher bookkeeping.
                    Some((t, old_table))
                        if t.latest_version >= state.latest_version
                            && old_table.len() >= table.len() =>
                    {
                        (t, old_table)
                    }
                    _ => {
                        if table.len() != state.latest_version as usize {
                            rep.not_restored.push(format!(
                                "{nct}: versions {} to {} (committed before commit records \
                                 existed, and the old index lacks them)",
                                table.len() + 1,
                                state.latest_version
                            ));
                            continue;
                        }
                        (state, table)
                    }
                }
            }
            (None, Some(old_one)) => old_one,
            (None, None) => continue,
        };
        rep.trials += 1;
        rep.versions += table.len();
        new.writing()?.insert(
            key(b'T', &nct),
            super::trial_value::encode(&state, &encode_table(&table)),
        )?;
    }
    // The time index, from each version's metadata (its detection time).
    let mut times: BTreeMap<DateTime<Utc>, Vec<(NctId, u32)>> = BTreeMap::new();
    for t in new.trials()? {
        let table = new.table(&t.nct_id)?;
        for v in 1..=table.len() as u32 {
            match new.meta_in(&t.nct_id, v, &table) {
                Ok(Some(meta)) => times
                    .entry(meta.detected_at)
                    .or_default()
                    .push((t.nct_id.clone(), v)),
                Ok(None) => {}
                Err(e) => rep.problems.push(format!("{} v{v}: {e}", t.nct_id)),
            }
        }
    }
    for (at, entries) in times {
        if let Some((nct, v)) = entries.first() {
            new.writing()?
                .insert(time_key(at, nct, *v), encode_time_entries(&entries))?;
        }
    }
    new.writing()?.insert(b"F", &FORMAT_VERSION.to_be_bytes())?;
    if let Some(last) = found.last() {
        new.writing()?
            .insert(name_key(b'm', PACK_END), to_json(&(last.pack, last.offset)))?;
    }
    let check = new.verify()?;
    rep.problems.extend(check.problems);
    new.db()?.flush()?;
    drop(new);
    drop(old);

    // Swap: the old index is kept, renamed, until the user deletes it.
    let db = dir.join("db");
    if db.exists() {
        let kept = dir.join(format!(
            "db.damaged-{}",
            Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
        std::fs::rename(&db, &kept).map_err(sled::Error::Io)?;
        rep.old_index_kept_at = Some(kept);
    }
    std::fs::rename(&fresh, &db).map_err(sled::Error::Io)?;
    make_private(&db).map_err(sled::Error::Io)?;
    Ok(rep)
}
