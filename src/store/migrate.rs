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
//! It does not check the format version (that is `open`, in the module root); a later format
//! adds its own step here.

use super::keys::{VersionBlobs, encode_table, key, vkey};
use super::pack::BlobRef;
use super::{Result, Store, corrupt};

impl Store {
    /// Bring a store of format `found` up to [`super::FORMAT_VERSION`], one step at a time.
    pub(super) fn migrate_from(&self, found: u32) -> Result<()> {
        if found < 2 {
            self.migrate_1_to_2()?;
        }
        if found < 3 {
            self.migrate_2_to_3()?;
        }
        Ok(())
    }

    /// Format 2 → 3: only the format version changes (see the module doc).
    fn migrate_2_to_3(&self) -> Result<()> {
        self.db.insert(b"F", &3u32.to_be_bytes())?;
        self.db.flush()?;
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
        for t in self.trials()? {
            let nct = &t.nct_id;
            if t.latest_version == 0 || self.db.get(key(b'V', nct))?.is_some() {
                continue;
            }
            let mut table = Vec::with_capacity(t.latest_version as usize);
            let mut batch = sled::Batch::default();
            for v in 1..=t.latest_version {
                let mut blob = |prefix: u8| -> Result<BlobRef> {
                    let k = vkey(prefix, nct, v);
                    let value = self.db.get(&k)?.ok_or_else(|| {
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
            self.db.apply_batch(batch)?;
            moved += table.len();
        }
        self.db.insert(b"F", &2u32.to_be_bytes())?;
        self.db.flush()?;
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
mod tests {
    use super::super::codec::{Codec, encode_at};
    use super::super::keys::{decode_table, encode_table, key};
    use super::super::{FORMAT_VERSION, NewVersion, Store};
    use crate::model::{NctId, Record};

    #[test]
    fn a_format_2_store_opens_as_format_3_and_its_old_keyframes_still_read() {
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
            // Rewrite the keyframe as format 2 stored it (plain zstd at level 6), the state
            // without its raw hash, and the format version 2.
            let mut table = store.table(&nct).unwrap();
            table[0].raw = store
                .packs
                .append(&encode_at(raw, Codec::Plain, &[], 6))
                .unwrap();
            store
                .db
                .insert(key(b'V', &nct), encode_table(&table))
                .unwrap();
            let mut t = store.trial(&nct).unwrap().unwrap();
            assert!(t.raw_hash.is_some(), "format 3 keeps the raw hash");
            t.raw_hash = None;
            store
                .db
                .insert(key(b't', &nct), serde_json::to_vec(&t).unwrap())
                .unwrap();
            store.db.insert(b"F", &2u32.to_be_bytes()).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(FORMAT_VERSION, 3);
        assert_eq!(
            store.db.get(b"F").unwrap().unwrap().as_ref(),
            3u32.to_be_bytes()
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
        let table = decode_table(b"V", &store.db.get(key(b'V', &nct)).unwrap().unwrap()).unwrap();
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
