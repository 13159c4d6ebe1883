//! Format 1 → 2 of the store: metadata, records and raw JSON move out of sled into the pack
//! files, behind a version table per trial. [`Store::open`] runs it.
//!
//! It does not check the format version (that is `open`, in the module root); a later format
//! adds its own step here.

use super::keys::{VersionBlobs, encode_table, key, vkey};
use super::pack::BlobRef;
use super::{Result, Store, corrupt};

impl Store {
    /// Format 1 → 2: move each trial's metadata, records and raw JSON out of sled into the
    /// packs, behind a version table; one atomic batch per trial, so an interrupted migration
    /// resumes where it stopped (a trial with a table is done). The time index stays as it is.
    pub(super) fn migrate_1_to_2(&self) -> Result<()> {
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
