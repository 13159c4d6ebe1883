//! The integrity checks behind `trialwatch verify`: every invariant a crash must not break, in
//! the versions, the time index and the outbox.
//!
//! It only reads; it repairs nothing (`repair.rs` does). [`verify_dir`] runs it on a private copy
//! of the index, so that `trialwatch verify` changes no byte of the store, and reports an index
//! that is missing or cannot be read as a problem rather than failing.

use serde::Serialize;

use super::codec::record_hash;
use super::keys::{blob_label, decode_time_entries, decode_version_key, nct_of};
use super::{Result, Store};

/// What [`Store::verify`] found: counts, and every broken invariant as a sentence.
#[derive(Debug, Default, Serialize)]
pub struct IntegrityReport {
    /// Trials checked.
    pub trials: usize,
    /// Versions checked, over all trials.
    pub versions: usize,
    /// Every broken invariant, one sentence each; empty when the store is sound.
    pub problems: Vec<String>,
}

/// `trialwatch verify` of the store in `dir`, without changing a byte of it: on a private copy
/// of the index ([`Store::open_read_only`]). An index that is missing or unreadable is itself
/// the problem reported.
pub fn verify_dir(dir: &std::path::Path) -> Result<IntegrityReport> {
    match Store::open_read_only(dir) {
        Ok(store) => store.verify(),
        Err(
            e @ (super::StoreError::IndexMissing { .. } | super::StoreError::IndexDamaged { .. }),
        ) => Ok(IntegrityReport {
            problems: vec![e.to_string()],
            ..Default::default()
        }),
        Err(super::StoreError::Open { source, .. }) if dir.join("db").exists() => {
            Ok(IntegrityReport {
                problems: vec![format!(
                    "the store's index {}/db cannot be read ({source}): it is damaged; run \
                     `trialwatch repair` to rebuild it from the packs",
                    dir.display()
                )],
                ..Default::default()
            })
        }
        Err(e) => Err(e),
    }
}

impl Store {
    /// Check every invariant a crash must not break: each trial's versions are 1..=latest with
    /// no gap, each has its metadata, record and raw JSON, the latest record hashes to the
    /// trial's `record_hash`, and each version is in the time index exactly once.
    pub fn verify(&self) -> Result<IntegrityReport> {
        let mut rep = IntegrityReport::default();
        let mut indexed = std::collections::HashSet::new();
        for kv in self.db()?.scan_prefix(b"c") {
            let (k, v) = kv?;
            match decode_time_entries(&k, &v) {
                Ok(entries) => {
                    for (nct, v) in entries {
                        if !indexed.insert((nct.clone(), v)) {
                            rep.problems.push(format!("{nct} v{v} is indexed twice"));
                        }
                    }
                }
                Err(_) => rep.problems.push("a time-index entry is malformed".into()),
            }
        }
        for t in self.trials()? {
            rep.trials += 1;
            let nct = &t.nct_id;
            let table = match self.table(nct) {
                Ok(table) => table,
                Err(e) => {
                    rep.problems.push(format!("{nct}: {e}"));
                    continue;
                }
            };
            if table.len() != t.latest_version as usize {
                rep.problems.push(format!(
                    "{nct}: {} versions stored, expected {}",
                    table.len(),
                    t.latest_version
                ));
            }
            for (e, v) in table.iter().zip(1u32..) {
                rep.versions += 1;
                // Every blob must be there whole (length and checksum) and decode.
                if let Err(e) = self.meta_in(nct, v, &table) {
                    rep.problems.push(format!("{nct} v{v}: metadata: {e}"));
                }
                if let Err(e) = self.blob(&blob_label(nct, v, "record"), &e.record) {
                    rep.problems.push(format!("{nct} v{v}: record: {e}"));
                }
                if let Err(e) = self.raw_in(nct, v, &table) {
                    rep.problems.push(format!("{nct} v{v}: raw JSON: {e}"));
                }
                if !indexed.remove(&(nct.clone(), v)) {
                    rep.problems
                        .push(format!("{nct} v{v}: not in the time index"));
                }
            }
            if !t.timeline.is_empty() {
                let mut sorted = t.timeline.clone();
                sorted.sort_unstable();
                if !sorted.iter().copied().eq(1..=t.latest_version) {
                    rep.problems.push(format!(
                        "{nct}: the timeline {:?} does not list versions 1 to {} once each",
                        t.timeline, t.latest_version
                    ));
                }
            }
            if t.latest_version > 0 {
                match self.record_in(nct, t.head(), &table) {
                    Ok(Some(r)) if record_hash(&r.canonical_bytes()) == t.record_hash => {}
                    Ok(Some(_)) => rep
                        .problems
                        .push(format!("{nct}: latest record does not match its hash")),
                    // Missing or unreadable blobs are reported above.
                    Ok(None) | Err(_) => {}
                }
            }
        }
        for (nct, v) in indexed {
            rep.problems
                .push(format!("{nct} v{v}: indexed but not stored"));
        }
        self.verify_outbox(&mut rep)?;
        self.verify_against_packs(&mut rep.problems)?;
        self.verify_heads(&mut rep.problems)?;
        Ok(rep)
    }

    /// The heads file, when there is one, must say what the index says: every `T` value and
    /// the time-index entries of its window, and no trial the index does not know.
    fn verify_heads(&self, problems: &mut Vec<String>) -> Result<()> {
        let fix = format!(
            "delete {} (reads use the index meanwhile, and the next command that writes the \
             store writes it again)",
            self.path.join(super::heads::FILE).display()
        );
        let r = match super::heads::Reader::open(&self.path, super::FORMAT_VERSION) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(why) => {
                problems.push(format!("the heads file is damaged ({why}); {fix}"));
                return Ok(());
            }
        };
        let mut trials = 0u64;
        for kv in self.db()?.scan_prefix(b"T") {
            let (k, v) = kv?;
            trials += 1;
            let number = nct_of(&k).map(|n| n.number());
            let found = number.map(|n| r.get(n));
            if !matches!(&found, Some(Ok(Some(h))) if h[..] == v[..]) {
                let what = match found {
                    Some(Err(why)) => why,
                    Some(Ok(None)) => "it lacks the trial".into(),
                    _ => "it holds another state".into(),
                };
                problems.push(format!(
                    "the heads file disagrees with the index on {}: {what}; {fix}",
                    String::from_utf8_lossy(&k[1..])
                ));
                return Ok(());
            }
        }
        if r.trials() != trials {
            problems.push(format!(
                "the heads file lists {} trials, the index {trials}; {fix}",
                r.trials()
            ));
            return Ok(());
        }
        let from = r.recent_from();
        let mut start = vec![b'c'];
        start.extend_from_slice(&from);
        let mut index = Vec::new();
        for kv in self.db()?.range(start..b"d".to_vec()) {
            let (k, v) = kv?;
            index.push((k.to_vec(), v.to_vec()));
        }
        match r.time_entries_since(from) {
            Ok(Some(copy)) if copy == index => {}
            Ok(_) => problems.push(format!(
                "the heads file's copy of the recent time index disagrees with the index; {fix}"
            )),
            Err(why) => problems.push(format!("the heads file is damaged ({why}); {fix}")),
        }
        Ok(())
    }

    /// Outbox invariants: every pending entry has exactly its due-index key, every due-index
    /// key names a pending entry, and every entry references a stored version.
    fn verify_outbox(&self, rep: &mut IntegrityReport) -> Result<()> {
        let mut due = std::collections::HashSet::new();
        for kv in self.db()?.scan_prefix(b"d") {
            let (k, _) = kv?;
            due.insert(k.to_vec());
        }
        for kv in self.db()?.scan_prefix(b"g") {
            let (k, _) = kv?;
            match decode_version_key(&k) {
                Ok((nct, v)) if self.has_version(&nct, v)? => {}
                _ => rep.problems.push(format!(
                    "fan-out record {} references no stored version",
                    String::from_utf8_lossy(&k)
                )),
            }
        }
        for e in self.scan_entries(vec![b'o'])? {
            let id = e.id();
            if !e.is_dead() && !due.remove(&e.due_key()) {
                rep.problems
                    .push(format!("alert {id} is pending but not in the due index"));
            }
            // An event (query entry or exit) carries what it reports: no version behind it.
            if e.event.is_none()
                && !e
                    .nct_id
                    .as_ref()
                    .map(|n| self.has_version(n, e.version))
                    .transpose()?
                    .unwrap_or(false)
            {
                rep.problems.push(format!(
                    "alert {id} references a version that is not stored"
                ));
            }
        }
        if !due.is_empty() {
            rep.problems.push(format!(
                "{} due-index keys name no pending alert",
                due.len()
            ));
        }
        Ok(())
    }
}
