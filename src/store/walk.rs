//! Walking one trial's whole timeline with every blob decoded once: each version's metadata
//! and record handed to the caller in timeline order, oldest first, for the readers that need
//! all of them (`trialwatch export`, which makes a trial's page, JSON and history in one
//! pass).
//!
//! The version-at-a-time reads in `reads.rs` decode a version's raw JSON (and its keyframe's)
//! again for its metadata and again for its record; over a 20-version trial that is about
//! twice the zstd work. Here the trial's version table is read once, each raw JSON is decoded
//! once and each keyframe's raw JSON is kept while versions that need it are decoded. Only
//! the keyframes and the current version are in memory at a time, whatever the trial's size.
//!
//! One zstd decompression context serves the whole walk ([`Walker`]): creating a context per
//! blob, as a single read does, cost more than the decompression itself on a profile of
//! `export` (`ZSTD_createDCtx` 4.7 % of samples against 0.7 % decompressing).

use std::collections::HashMap;

use super::codec::{Codec, StoredMeta, codec_of, ctgov_decoder, decode, from_json, keyframe_of};
use super::keys::{VersionBlobs, blob_label};
use super::{Result, Store, StoreError, corrupt};
use crate::model::{NctId, Record, VersionMeta};

/// A frame whose header announces more than this is decoded by the store's streaming
/// decoder instead, so a damaged size field cannot make one allocation of that size.
const MAX_ANNOUNCED: usize = 256 << 20;

/// The walk's reusable zstd context.
struct Walker {
    d: Option<zstd::bulk::Decompressor<'static>>,
}

impl Walker {
    fn new() -> Walker {
        Walker {
            d: zstd::bulk::Decompressor::new().ok(),
        }
    }

    /// What [`decode`] gives for `bytes` with `dict`, through the reused context when the frame
    /// says its size (every frame the store writes does), else through [`decode`].
    fn decode(&mut self, key: &[u8], bytes: &[u8], dict: &[u8]) -> Result<Vec<u8>> {
        let Some(codec) = codec_of(key, bytes)? else {
            return decode(key, bytes, dict);
        };
        let frame = &bytes[1..];
        let size = zstd::bulk::Decompressor::upper_bound(frame).filter(|n| *n <= MAX_ANNOUNCED);
        match (&mut self.d, size) {
            (Some(d), Some(n)) => {
                let set = if codec == Codec::Ctgov {
                    let prepared = ctgov_decoder()
                        .ok_or_else(|| corrupt(key, "the CT.gov dictionary did not load".into()))?;
                    d.set_prepared_dictionary(prepared)
                } else {
                    d.set_dictionary(dict)
                };
                set.map_err(|e| corrupt(key, format!("cannot load its dictionary: {e}")))?;
                d.decompress(frame, n)
                    .map_err(|e| corrupt(key, format!("cannot decompress: {e}")))
            }
            _ => decode(key, bytes, dict),
        }
    }
}

impl Store {
    /// Call `f` with each version's metadata and record, in timeline order (as
    /// [`Store::versions`] lists them), decoding each blob once. Stops at `f`'s first error.
    /// The metadata is exactly what [`Store::versions`] returns and the record what
    /// [`Store::record`] returns for that version.
    pub fn walk_versions<E: From<StoreError>>(
        &self,
        nct: &NctId,
        mut f: impl FnMut(VersionMeta, Record) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let Some((t, table)) = self.trial_entry(nct)? else {
            return Ok(());
        };
        let order = if t.timeline.is_empty() {
            (1..=table.len() as u32).collect()
        } else {
            t.timeline
        };
        // Keyframe raw JSON by version: a dictionary for the versions after it.
        let mut keyframes: HashMap<u32, Vec<u8>> = HashMap::new();
        // Keyframe records' bytes by version: the dictionary of later records (format 3).
        let mut keyframe_records: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut w = Walker::new();
        for v in order {
            let Some(e) = v.checked_sub(1).and_then(|i| table.get(i as usize)) else {
                continue;
            };
            let raw = self.walk_raw(&mut w, nct, v, &table, e, &mut keyframes)?;
            let stored: StoredMeta = self.walk_own(&mut w, nct, v, &e.meta, "metadata", &raw)?;
            let record =
                self.walk_record(&mut w, nct, v, &table, e, &raw, &mut keyframe_records)?;
            let mut meta = stored.meta;
            if stored.changes_from_record {
                meta.changes = crate::diff::diff(None, &record);
            }
            f(meta, record)?;
        }
        Ok(())
    }

    /// Version `v`'s raw JSON, its keyframe's taken from (or put into) `keyframes`.
    fn walk_raw(
        &self,
        w: &mut Walker,
        nct: &NctId,
        v: u32,
        table: &[VersionBlobs],
        e: &VersionBlobs,
        keyframes: &mut HashMap<u32, Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let label = blob_label(nct, v, "raw JSON");
        let bytes = self.blob(&label, &e.raw)?;
        if codec_of(&label, &bytes)? != Some(Codec::Keyframe) {
            let raw = w.decode(&label, &bytes, &[])?;
            if keyframe_of(v) == v {
                keyframes.insert(v, raw.clone());
            }
            return Ok(raw);
        }
        let kf = keyframe_of(v);
        let dict = match keyframes.entry(kf) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let kl = blob_label(nct, kf, "raw JSON");
                let ke = kf
                    .checked_sub(1)
                    .and_then(|i| table.get(i as usize))
                    .ok_or_else(|| {
                        corrupt(&label, format!("its keyframe (version {kf}) is missing"))
                    })?;
                let kv = self.blob(&kl, &ke.raw)?;
                if codec_of(&kl, &kv)? == Some(Codec::Keyframe) {
                    return Err(corrupt(&kl, "a keyframe must not be a delta".into()));
                }
                slot.insert(w.decode(&kl, &kv, &[])?)
            }
        };
        w.decode(&label, &bytes, dict)
    }

    /// Version `v`'s record: its dictionary is its own raw JSON (`raw`) or, in store format 3,
    /// its keyframe's record, taken from (or put into) `keyframe_records`.
    #[allow(clippy::too_many_arguments)]
    fn walk_record(
        &self,
        w: &mut Walker,
        nct: &NctId,
        v: u32,
        table: &[VersionBlobs],
        e: &VersionBlobs,
        raw: &[u8],
        keyframe_records: &mut HashMap<u32, Vec<u8>>,
    ) -> Result<Record> {
        let label = blob_label(nct, v, "record");
        let bytes = self.blob(&label, &e.record)?;
        let decoded = match codec_of(&label, &bytes)? {
            Some(Codec::KeyframeRecord) => {
                let kf = keyframe_of(v);
                let dict = match keyframe_records.entry(kf) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(self.keyframe_record(&label, nct, v, table)?)
                    }
                };
                w.decode(&label, &bytes, dict)?
            }
            Some(Codec::OwnRaw) => w.decode(&label, &bytes, raw)?,
            _ => w.decode(&label, &bytes, &[])?,
        };
        if keyframe_of(v) == v {
            keyframe_records.insert(v, decoded.clone());
        }
        from_json(&label, &decoded)
    }

    /// Read and decode a JSON blob of version `v` whose dictionary, if any, is `raw`.
    fn walk_own<T: for<'de> serde::Deserialize<'de>>(
        &self,
        w: &mut Walker,
        nct: &NctId,
        v: u32,
        r: &super::pack::BlobRef,
        what: &str,
        raw: &[u8],
    ) -> Result<T> {
        let label = blob_label(nct, v, what);
        let bytes = self.blob(&label, r)?;
        let dict: &[u8] = match codec_of(&label, &bytes)? {
            Some(Codec::OwnRaw) => raw,
            _ => &[],
        };
        from_json(&label, &w.decode(&label, &bytes, dict)?)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use crate::model::{NctId, Record};
    use crate::store::{NewVersion, Store};

    #[test]
    fn walking_gives_what_the_single_reads_give() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let nct: NctId = "NCT00000102".parse().unwrap();
        let mut prev: Option<Record> = None;
        // More than one keyframe's worth of versions, so deltas against two keyframes are read.
        for v in 1..=20u32 {
            let raw = format!(
                r#"{{"protocolSection":{{"identificationModule":{{"nctId":"NCT00000102","briefTitle":"Trial rev {v}"}}}}}}"#
            );
            let mut rec = Record::default();
            rec.set(
                "identification.briefTitle",
                serde_json::json!(format!("Trial rev {v}")),
            );
            rec.set("design.enrollmentCount", serde_json::json!(v * 10));
            let canonical = rec.canonical_bytes();
            store
                .commit_version(NewVersion {
                    provenance: Default::default(),
                    nct: &nct,
                    record: &rec,
                    canonical: &canonical,
                    raw: raw.as_bytes(),
                    changes: crate::diff::diff(prev.as_ref(), &rec),
                    detected_at: Utc
                        .timestamp_opt(1_700_000_000 + i64::from(v) * 86_400, 0)
                        .unwrap(),
                    resolved_id: None,
                    source_fingerprint: None,
                    alerts: vec![],
                })
                .unwrap();
            prev = Some(rec);
        }
        let expected = store.versions(&nct).unwrap();
        let mut seen = Vec::new();
        store
            .walk_versions(&nct, |meta, record| {
                assert_eq!(
                    Some(&record),
                    store.record(&nct, meta.version).unwrap().as_ref()
                );
                seen.push(meta);
                Ok::<(), crate::store::StoreError>(())
            })
            .unwrap();
        assert_eq!(seen.len(), 20);
        assert_eq!(seen, expected);
    }
}
