//! The store's format migrations, which [`Store::open`] runs in order ([`Store::migrate_from`]):
//!
//! - 1 → 2: metadata, records and raw JSON move out of sled into the pack files, behind a
//!   version table per trial.
//! - 2 → 3: nothing is rewritten. Format 3 adds a blob encoding (tag 4: zstd with the CT.gov
//!   dictionary shipped in the binary, used for keyframe raw JSON) and a field of the `t` state
//!   (`raw_hash`), both of which a format-2 build cannot read right; the bump makes such a build
//!   refuse the store ("upgrade trialwatch") instead of failing on the first new blob. Every
//!   format-2 blob still decodes as it is.
//!
//! - 3 → 4: each trial's `t` state (JSON) and `V` version table become one `T` value in a
//!   compact binary form (`trial_value.rs`): half the sled keys, a third of their bytes.
//!
//! - 4 → 5: nothing is rewritten. Format 5 keeps the heads file (`heads.rs`) beside the index,
//!   removed before every write to the index; a format-4 build would write without removing it and
//!   leave the file out of date, so the bump makes it refuse the store instead.
//!
//! It does not check the format version (that is `open`, in the module root); a later format
//! adds its own step here.

use super::codec::from_json;
use super::keys::{VersionBlobs, decode_table, encode_table, key, vkey};
use super::pack::BlobRef;
use super::{Result, Store, StoreError, TrialState, corrupt, trial_value};

/// Trials moved per atomic batch by the 3 → 4 step: bounded memory at any store size.
const TRIALS_PER_BATCH: usize = 1_000;

impl Store {
    /// Bring a store of format `found` up to [`super::FORMAT_VERSION`], one step at a time.
    pub(super) fn migrate_from(&self, found: u32) -> Result<()> {
        if found < 2 {
            self.migrate_1_to_2()?;
        }
        if found < 3 {
            self.migrate_2_to_3()?;
        }
        if found < 4 {
            self.migrate_3_to_4()?;
        }
        if found < 5 {
            self.migrate_4_to_5()?;
        }
        Ok(())
    }

    /// Bring the private copy of a read-only open ([`Store::open_read_only`]) up to
    /// [`super::FORMAT_VERSION`]: the steps that rewrite only sled run on the copy; format 1,
    /// whose step writes the packs, is refused (the store itself is never written there).
    pub(super) fn migrate_copy_from(&self, found: u32) -> Result<()> {
        if found < 2 {
            return Err(StoreError::Open {
                path: self.path.clone(),
                source: sled::Error::Unsupported(format!(
                    "the store has format {found}, which must be migrated in place before it can \
                     be read; run any trialwatch command (e.g. `trialwatch status`) with write \
                     access to the store once"
                )),
            });
        }
        self.migrate_from(found)
    }

    /// The format-1-to-3 trial states (`t` keys, JSON), for the steps that predate format 4.
    fn legacy_trials(&self) -> Result<Vec<TrialState>> {
        self.db()?
            .scan_prefix(b"t")
            .map(|kv| {
                let (k, v) = kv?;
                from_json(&k, &v)
            })
            .collect()
    }

    /// Format 3 → 4: each trial's `t` and `V` become its `T` value, removed in the batch that
    /// writes it, a thousand trials per atomic batch; an interrupted migration resumes with
    /// the trials still under `t`.
    fn migrate_3_to_4(&self) -> Result<()> {
        let mut moved = 0usize;
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for kv in self.db()?.scan_prefix(b"t").take(TRIALS_PER_BATCH) {
                let (k, v) = kv?;
                let t: TrialState = from_json(&k, &v)?;
                let vk = key(b'V', &t.nct_id);
                let table = self.db()?.get(&vk)?.map(|b| b.to_vec()).unwrap_or_default();
                // Checked before it is carried over: a damaged table stops the migration
                // with the key named, rather than moving into the new layout.
                decode_table(&vk, &table)?;
                batch.insert(key(b'T', &t.nct_id), trial_value::encode(&t, &table));
                batch.remove(k);
                batch.remove(vk);
                n += 1;
            }
            if n == 0 {
                break;
            }
            self.writing()?.apply_batch(batch)?;
            moved += n;
        }
        self.set_format(4)?;
        tracing::info!(
            store.path = %self.path.display(),
            store.trials_moved = moved,
            "store format 3 → 4 (one compact index entry per trial)"
        );
        Ok(())
    }

    /// Record that the store is now in format `n`, durably: the last step of each migration,
    /// and the first write to a new store.
    pub(super) fn set_format(&self, n: u32) -> Result<()> {
        self.writing()?.insert(b"F", &n.to_be_bytes())?;
        self.db()?.flush()?;
        Ok(())
    }

    /// Format 4 → 5: only the format version changes (see the module doc); no heads file
    /// exists yet, and the next write command writes one.
    fn migrate_4_to_5(&self) -> Result<()> {
        self.set_format(5)?;
        tracing::info!(
            store.path = %self.path.display(),
            "store format 4 → 5 (a heads file beside the index, for quick reads of one trial)"
        );
        Ok(())
    }

    /// Format 2 → 3: only the format version changes (see the module doc).
    fn migrate_2_to_3(&self) -> Result<()> {
        self.set_format(3)?;
        tracing::info!(
            store.path = %self.path.display(),
            "store format 2 → 3 (keyframes compressed with the CT.gov dictionary from now on)"
        );
        Ok(())
    }

    /// Format 1 → 2: move each trial's metadata, records and raw JSON out of sled into the
    /// packs, behind a version table; one atomic batch per trial, so an interrupted migration
    /// resumes where it stopped (a trial with a table is done). The time index stays as it is.
    fn migrate_1_to_2(&self) -> Result<()> {
        let mut moved = 0usize;
        for t in self.legacy_trials()? {
            let nct = &t.nct_id;
            if t.latest_version == 0 || self.db()?.get(key(b'V', nct))?.is_some() {
                continue;
            }
            let mut table = Vec::with_capacity(t.latest_version as usize);
            let mut batch = sled::Batch::default();
            for v in 1..=t.latest_version {
                let mut blob = |prefix: u8| -> Result<BlobRef> {
                    let k = vkey(prefix, nct, v);
                    let value = self.db()?.get(&k)?.ok_or_else(|| {
                        corrupt(&k, "missing while migrating the store to format 2".into())
                    })?;
                    batch.remove(k);
                    Ok(self.packs.append(&value)?)
                };
                table.push(VersionBlobs {
                    meta: blob(b'v')?,
                    record: blob(b'r')?,
                    raw: blob(b'w')?,
                });
            }
            batch.insert(key(b'V', nct), encode_table(&table));
            self.packs.sync()?;
            self.writing()?.apply_batch(batch)?;
            moved += table.len();
        }
        self.set_format(2)?;
        if moved > 0 {
            tracing::info!(
                store.path = %self.path.display(),
                store.versions_moved = moved,
                "store migrated to format 2 (records and raw JSON in pack files)"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::codec::{Codec, encode_at};
    use super::super::keys::{encode_table, key};
    use super::super::{FORMAT_VERSION, NewVersion, Store};
    use crate::model::{NctId, Record};

    /// Rewrite `nct`'s entry as formats 2 and 3 kept it: `t` JSON and `V` (no `V` before its
    /// first version).
    pub(in super::super) fn write_format_3(store: &Store, nct: &NctId) {
        let (t, table) = store.trial_entry(nct).unwrap().unwrap();
        store
            .db()
            .unwrap()
            .insert(key(b't', nct), serde_json::to_vec(&t).unwrap())
            .unwrap();
        if !table.is_empty() {
            store
                .db()
                .unwrap()
                .insert(key(b'V', nct), encode_table(&table))
                .unwrap();
        }
        store.db().unwrap().remove(key(b'T', nct)).unwrap();
    }

    fn version<'a>(nct: &'a NctId, rec: &'a Record, c: &'a [u8], raw: &'a [u8]) -> NewVersion<'a> {
        NewVersion {
            source_fingerprint: Some("0e34".repeat(16)),
            ..NewVersion::observed(nct, rec, c, raw, "2026-01-01T00:00:00Z".parse().unwrap())
        }
    }

    #[test]
    fn a_format_3_store_becomes_one_value_per_trial_and_an_interrupted_step_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<NctId> = (1..=5)
            .map(|i| format!("NCT{i:08}").parse().unwrap())
            .collect();
        let failed: NctId = "NCT00000099".parse().unwrap();
        let mut rec = Record::default();
        rec.set("status.overall", serde_json::json!("RECRUITING"));
        let c = rec.canonical_bytes();
        let before = {
            let store = Store::open(dir.path()).unwrap();
            for n in &ids {
                store.commit_version(version(n, &rec, &c, b"{}")).unwrap();
            }
            store
                .commit_version(version(&ids[0], &rec, &c, b"{\"x\":1}"))
                .unwrap();
            store
                .mark_failed(
                    &failed,
                    "2026-01-02T00:00:00Z".parse().unwrap(),
                    "CT.gov 503",
                )
                .unwrap();
            let before: Vec<_> = ids
                .iter()
                .chain([&failed])
                .map(|n| store.trial_entry(n).unwrap().unwrap())
                .collect();
            // All but the first trial back in format 3, as if the step had stopped after it.
            for n in ids[1..].iter().chain([&failed]) {
                write_format_3(&store, n);
            }
            store
                .db()
                .unwrap()
                .insert(b"F", &3u32.to_be_bytes())
                .unwrap();
            store.flush().unwrap();
            before
        };
        let f = |s: &Store| s.db().unwrap().get(b"F").unwrap().unwrap().to_vec();
        // A read-only open migrates its private copy only: the store stays in format 3.
        {
            let ro = Store::open_read_only(dir.path()).unwrap();
            assert!(ro.path().join("db").exists());
            assert_eq!(ro.trial_entry(&ids[2]).unwrap().unwrap(), before[2]);
            assert_eq!(ro.raw(&ids[0], 2).unwrap().unwrap(), b"{\"x\":1}");
            assert_eq!(f(&ro), FORMAT_VERSION.to_be_bytes());
        }
        let store = super::super::tests::reopen(dir.path()).unwrap();
        // (The copy was migrated, not the store: this open found format 3 and migrated it.)
        assert_eq!(
            store.db().unwrap().get(b"F").unwrap().unwrap().as_ref(),
            FORMAT_VERSION.to_be_bytes()
        );
        for prefix in [b"t", b"V"] {
            assert!(store.db().unwrap().scan_prefix(prefix).next().is_none());
        }
        let after: Vec<_> = ids
            .iter()
            .chain([&failed])
            .map(|n| store.trial_entry(n).unwrap().unwrap())
            .collect();
        assert_eq!(after, before);
        assert_eq!(store.trials().unwrap().len(), 6);
        assert_eq!(store.raw(&ids[0], 2).unwrap().unwrap(), b"{\"x\":1}");
        let rep = store.verify().unwrap();
        assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    }

    #[test]
    fn a_format_3_store_with_a_damaged_table_is_refused_naming_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let nct: NctId = "NCT00000001".parse().unwrap();
        let rec = Record::default();
        let c = rec.canonical_bytes();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .commit_version(version(&nct, &rec, &c, b"{}"))
                .unwrap();
            write_format_3(&store, &nct);
            store
                .db()
                .unwrap()
                .insert(key(b'V', &nct), &b"short"[..])
                .unwrap();
            store
                .db()
                .unwrap()
                .insert(b"F", &3u32.to_be_bytes())
                .unwrap();
            store.flush().unwrap();
        }
        let e = match super::super::tests::reopen(dir.path()) {
            Ok(_) => panic!("a damaged table was migrated"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("VNCT00000001"), "{e}");
    }

    #[test]
    fn a_format_2_store_opens_in_the_current_format_and_its_old_keyframes_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let nct: NctId = "NCT02241018".parse().unwrap();
        let raw = br#"{"protocolSection":{"identificationModule":{"nctId":"NCT02241018"}}}"#;
        let rec = Record::default();
        let canonical = rec.canonical_bytes();
        let nv = |raw: &'static [u8]| NewVersion {
            provenance: Default::default(),
            nct: &nct,
            record: &rec,
            canonical: &canonical,
            raw,
            changes: vec![],
            detected_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            resolved_id: None,
            source_fingerprint: None,
            alerts: vec![],
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store.commit_version(nv(raw)).unwrap();
            write_format_3(&store, &nct);
            // Rewrite the keyframe as format 2 stored it (plain zstd at level 6), the state
            // without its raw hash, and the format version 2.
            let mut table = super::super::keys::decode_table(
                b"V",
                &store.db().unwrap().get(key(b'V', &nct)).unwrap().unwrap(),
            )
            .unwrap();
            table[0].raw = store
                .packs
                .append(&encode_at(raw, Codec::Plain, &[], 6))
                .unwrap();
            store
                .db()
                .unwrap()
                .insert(key(b'V', &nct), encode_table(&table))
                .unwrap();
            let mut t: super::super::TrialState =
                serde_json::from_slice(&store.db().unwrap().get(key(b't', &nct)).unwrap().unwrap())
                    .unwrap();
            assert!(t.raw_hash.is_some(), "format 3 keeps the raw hash");
            t.raw_hash = None;
            store
                .db()
                .unwrap()
                .insert(key(b't', &nct), serde_json::to_vec(&t).unwrap())
                .unwrap();
            store
                .db()
                .unwrap()
                .insert(b"F", &2u32.to_be_bytes())
                .unwrap();
            store.flush().unwrap();
        }
        let store = super::super::tests::reopen(dir.path()).unwrap();
        assert_eq!(
            store.db().unwrap().get(b"F").unwrap().unwrap().as_ref(),
            FORMAT_VERSION.to_be_bytes()
        );
        assert_eq!(store.raw(&nct, 1).unwrap().unwrap(), raw);
        assert_eq!(store.trial(&nct).unwrap().unwrap().raw_hash, None);
        // A delta against the old (plain) keyframe, and a new trial's keyframe with the
        // CT.gov dictionary (tag 4), both read back; verify finds nothing wrong.
        let raw2: &'static [u8] =
            br#"{"protocolSection":{"identificationModule":{"nctId":"NCT02241018","x":2}}}"#;
        store.commit_version(nv(raw2)).unwrap();
        assert_eq!(store.raw(&nct, 2).unwrap().unwrap(), raw2);
        assert_eq!(store.raw(&nct, 1).unwrap().unwrap(), raw);
        let table = store.table(&nct).unwrap();
        assert_eq!(
            store.packs.read(&table[1].raw).unwrap()[0],
            Codec::Keyframe as u8
        );
        assert_eq!(
            store.packs.read(&table[1].record).unwrap()[0],
            Codec::KeyframeRecord as u8,
            "a non-keyframe's record is a delta against its keyframe's (a format-2 one here)"
        );
        assert_eq!(store.record(&nct, 2).unwrap().unwrap(), rec);
        let other: NctId = "NCT00000002".parse().unwrap();
        store
            .commit_version(NewVersion {
                nct: &other,
                ..nv(raw)
            })
            .unwrap();
        let t2 = store.table(&other).unwrap();
        assert_eq!(store.packs.read(&t2[0].raw).unwrap()[0], Codec::Ctgov as u8);
        assert_eq!(store.raw(&other, 1).unwrap().unwrap(), raw);
        let rep = store.verify().unwrap();
        assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    }
}
