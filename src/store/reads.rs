//! Reading versions back: one version's metadata, record or raw JSON (undoing the codecs and
//! the keyframe delta), a trial's versions in timeline order, the version current at a time,
//! and the time index (versions detected since a time) — listed from the index alone, so a
//! caller decodes only the versions it shows.
//!
//! Reads take the trial's version table as read once by the caller, so that one `history` or
//! `verify` of a trial reads its table from sled once, not once per blob. Writing versions is
//! [`super::versions`].

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::codec::{Codec, StoredMeta, codec_of, decode, from_json, keyframe_of};
use super::keys::{VersionBlobs, blob_label, decode_time_entries_where, decode_time_key, time_key};
use super::pack::BlobRef;
use super::{Result, Store, corrupt};
use crate::model::{NctId, Record, VersionMeta};

/// One entry of the time index: a version named by trial and number, with its detection time,
/// read without decoding anything of the version itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRef {
    /// The trial.
    pub nct: NctId,
    /// The version's number.
    pub version: u32,
    /// When the sync (or backfill) stored it: its time in the index.
    pub detected_at: DateTime<Utc>,
}

impl Store {
    /// Decode a value of `nct`/`version` whose dictionary, if any, is that version's raw JSON.
    fn decode_own(
        &self,
        key: &[u8],
        bytes: &[u8],
        nct: &NctId,
        version: u32,
        table: &[VersionBlobs],
    ) -> Result<Vec<u8>> {
        let dict = match codec_of(key, bytes)? {
            Some(Codec::OwnRaw) => self.raw_in(nct, version, table)?.ok_or_else(|| {
                corrupt(
                    key,
                    "its dictionary (the version's raw JSON) is missing".into(),
                )
            })?,
            Some(Codec::KeyframeRecord) => self.keyframe_record(key, nct, version, table)?,
            _ => Vec::new(),
        };
        decode(key, bytes, &dict)
    }

    /// The canonical bytes of the record of `version`'s keyframe: the dictionary of a
    /// [`Codec::KeyframeRecord`] record (store format 3).
    pub(super) fn keyframe_record(
        &self,
        key: &[u8],
        nct: &NctId,
        version: u32,
        table: &[VersionBlobs],
    ) -> Result<Vec<u8>> {
        let kf = keyframe_of(version);
        let ke = (kf as usize)
            .checked_sub(1)
            .and_then(|i| table.get(i))
            .filter(|_| kf != version)
            .ok_or_else(|| corrupt(key, format!("its keyframe (version {kf}) is missing")))?;
        let kl = blob_label(nct, kf, "record");
        let kb = self.blob(&kl, &ke.record)?;
        if codec_of(&kl, &kb)? == Some(Codec::KeyframeRecord) {
            return Err(corrupt(
                &kl,
                "a keyframe's record must not be a delta".into(),
            ));
        }
        self.decode_own(&kl, &kb, nct, kf, table)
    }

    /// Read and decode one JSON blob of `nct`/`version`.
    fn blob_json<T: for<'de> Deserialize<'de>>(
        &self,
        nct: &NctId,
        version: u32,
        table: &[VersionBlobs],
        which: fn(&VersionBlobs) -> &BlobRef,
        what: &str,
    ) -> Result<Option<T>> {
        let Some(e) = version.checked_sub(1).and_then(|i| table.get(i as usize)) else {
            return Ok(None);
        };
        let label = blob_label(nct, version, what);
        let bytes = self.blob(&label, which(e))?;
        from_json(
            &label,
            &self.decode_own(&label, &bytes, nct, version, table)?,
        )
        .map(Some)
    }

    /// Version `version`'s metadata, with a first version's changes derived from its record.
    pub(super) fn meta_in(
        &self,
        nct: &NctId,
        version: u32,
        table: &[VersionBlobs],
    ) -> Result<Option<VersionMeta>> {
        Ok(self
            .meta_context_in(nct, version, table)?
            .map(|(meta, _)| meta))
    }

    /// [`Store::meta_in`] with the stored severity context, if any.
    fn meta_context_in(
        &self,
        nct: &NctId,
        version: u32,
        table: &[VersionBlobs],
    ) -> Result<Option<(VersionMeta, Option<Record>)>> {
        let Some(stored) =
            self.blob_json::<StoredMeta>(nct, version, table, |e| &e.meta, "metadata")?
        else {
            return Ok(None);
        };
        let mut meta = stored.meta;
        if stored.changes_from_record
            && let Some(record) = self.record_in(nct, version, table)?
        {
            meta.changes = crate::diff::diff(None, &record);
        }
        Ok(Some((meta, stored.context)))
    }

    /// Version `version`'s metadata and, when the store kept it, the values of its record the
    /// severity rules read (`severity::context_of`; `None` in older stores or when its changes
    /// need none), so a caller can judge its changes without decoding records.
    pub fn version_with_context(
        &self,
        nct: &NctId,
        version: u32,
    ) -> Result<Option<(VersionMeta, Option<Record>)>> {
        self.meta_context_in(nct, version, &self.table(nct)?)
    }

    /// Version `version`'s normalized record.
    pub(super) fn record_in(
        &self,
        nct: &NctId,
        version: u32,
        table: &[VersionBlobs],
    ) -> Result<Option<Record>> {
        self.blob_json(nct, version, table, |e| &e.record, "record")
    }

    /// One version's metadata (detection time, CT.gov last update, changes).
    pub fn version(&self, nct: &NctId, version: u32) -> Result<Option<VersionMeta>> {
        self.meta_in(nct, version, &self.table(nct)?)
    }

    /// All versions of a trial in timeline order, oldest first (by when CT.gov posted them;
    /// for a trial without backfilled history, the numbers' order).
    pub fn versions(&self, nct: &NctId) -> Result<Vec<VersionMeta>> {
        let Some((t, table)) = self.trial_entry(nct)? else {
            return Ok(Vec::new());
        };
        let order = if t.timeline.is_empty() {
            (1..=table.len() as u32).collect()
        } else {
            t.timeline
        };
        order
            .into_iter()
            .filter_map(|v| self.meta_in(nct, v, &table).transpose())
            .collect()
    }

    /// The version that was current at `at`: the newest in the timeline that CT.gov had posted
    /// by then (versions from CT.gov's history, and observed versions CT.gov's index names), or
    /// that a sync had seen by then (other observed versions).
    pub fn version_at(&self, nct: &NctId, at: DateTime<Utc>) -> Result<Option<VersionMeta>> {
        Ok(self
            .versions(nct)?
            .into_iter()
            .rev()
            .find(|v| effective_time(v) <= at))
    }

    /// The normalized record of one version.
    pub fn record(&self, nct: &NctId, version: u32) -> Result<Option<Record>> {
        self.record_in(nct, version, &self.table(nct)?)
    }

    /// The normalized record of the trial's newest version (the timeline's head).
    pub fn latest_record(&self, nct: &NctId) -> Result<Option<Record>> {
        match self.trial_entry(nct)? {
            Some((t, table)) if t.latest_version > 0 => self.record_in(nct, t.head(), &table),
            _ => Ok(None),
        }
    }

    /// The study JSON exactly as CT.gov sent it for `version`.
    pub fn raw(&self, nct: &NctId, version: u32) -> Result<Option<Vec<u8>>> {
        self.raw_in(nct, version, &self.table(nct)?)
    }

    /// Version `version`'s raw JSON, undoing the keyframe delta.
    pub(super) fn raw_in(
        &self,
        nct: &NctId,
        version: u32,
        table: &[VersionBlobs],
    ) -> Result<Option<Vec<u8>>> {
        let Some(e) = version.checked_sub(1).and_then(|i| table.get(i as usize)) else {
            return Ok(None);
        };
        let label = blob_label(nct, version, "raw JSON");
        let v = self.blob(&label, &e.raw)?;
        let dict = match codec_of(&label, &v)? {
            Some(Codec::Keyframe) => {
                let kf = keyframe_of(version);
                let kl = blob_label(nct, kf, "raw JSON");
                let ke = table.get(kf as usize - 1).ok_or_else(|| {
                    corrupt(&label, format!("its keyframe (version {kf}) is missing"))
                })?;
                let kv = self.blob(&kl, &ke.raw)?;
                if codec_of(&kl, &kv)? == Some(Codec::Keyframe) {
                    return Err(corrupt(&kl, "a keyframe must not be a delta".into()));
                }
                decode(&kl, &kv, &[])?
            }
            _ => Vec::new(),
        };
        decode(&label, &v, &dict).map(Some)
    }

    /// Versions detected at or after `since`, newest first, as `(trial, version metadata)`.
    /// Decodes every one of them: a caller that shows only some lists them with
    /// [`Store::version_refs_since`] and decodes those.
    pub fn versions_since(&self, since: DateTime<Utc>) -> Result<Vec<(NctId, VersionMeta)>> {
        let mut out = Vec::new();
        for r in self.version_refs_since(since)? {
            if let Some(meta) = self.version(&r.nct, r.version)? {
                out.push((r.nct, meta));
            }
        }
        Ok(out)
    }

    /// The versions detected at or after `since`, newest first (within one detection time, by
    /// trial and version, descending), from the time index alone: no version is read or
    /// decoded, so `changes` pays only for the versions it goes on to show.
    pub fn version_refs_since(&self, since: DateTime<Utc>) -> Result<Vec<VersionRef>> {
        self.version_refs_since_where(since, |_, _| true)
    }

    /// [`Store::version_refs_since`], keeping only the entries `keep(trial number, version)`
    /// accepts, judged on the index's bytes before anything is built: `changes` skips a
    /// store's 100,000 first versions without making an ID for each.
    pub fn version_refs_since_where(
        &self,
        since: DateTime<Utc>,
        keep: impl Fn(u32, u32) -> bool,
    ) -> Result<Vec<VersionRef>> {
        let mut out = Vec::new();
        let mut add = |k: &[u8], v: &[u8]| -> Result<()> {
            let Some((at, _, _)) = decode_time_key(k) else {
                return Err(corrupt(k, "bad time-index key".into()));
            };
            let mut entries = decode_time_entries_where(k, v, &keep)?;
            // Within one key, descending by trial and version (one key is one commit).
            entries.sort_by(|a, b| (&b.0, b.1).cmp(&(&a.0, a.1)));
            out.extend(entries.into_iter().map(|(nct, version)| VersionRef {
                nct,
                version,
                detected_at: at,
            }));
            Ok(())
        };
        // The heads file's copy of the recent time index, when it covers `since`.
        if let Some(recent) = self.heads_time_entries(since) {
            for (k, v) in recent.iter().rev() {
                add(k, v)?;
            }
        } else {
            let start = time_key(since, &NctId::min(), 0);
            for kv in self.db()?.range(start..b"d".to_vec()).rev() {
                let (k, v) = kv?;
                add(&k, &v)?;
            }
        }
        // Keys are in time order already; two keys at one time (two commits in the same
        // microsecond) are merged in order by the stable sort.
        out.sort_by_key(|r| std::cmp::Reverse(r.detected_at));
        Ok(out)
    }

    /// Whether `nct` has a stored version `version`.
    pub(super) fn has_version(&self, nct: &NctId, version: u32) -> Result<bool> {
        Ok(self.entry(nct, version)?.is_some())
    }
}

/// When a version became current, for `show --at`: CT.gov's posting day (its end, UTC) when
/// known, else when a sync saw it.
fn effective_time(v: &VersionMeta) -> DateTime<Utc> {
    v.provenance
        .ctgov_posted
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .map(|t| t.and_utc())
        .unwrap_or(v.detected_at)
}

#[cfg(test)]
mod tests {
    //! The time index read without decoding: order, range, and that a damaged version is not
    //! read while it is only listed.

    use super::*;
    use crate::store::NewVersion;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn version_refs_list_newest_first_without_reading_any_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a: NctId = "NCT00000001".parse().unwrap();
        let b: NctId = "NCT00000002".parse().unwrap();
        let rec = Record::default();
        let canonical = rec.canonical_bytes();
        let nv = |nct, when| NewVersion {
            provenance: Default::default(),
            nct,
            record: &rec,
            canonical: &canonical,
            raw: b"{}",
            changes: vec![],
            detected_at: at(when),
            resolved_id: None,
            source_fingerprint: None,
            alerts: vec![],
        };
        store
            .commit_versions(vec![
                nv(&a, "2026-01-01T00:00:00Z"),
                nv(&b, "2026-01-01T00:00:00Z"),
            ])
            .unwrap();
        store
            .commit_versions(vec![nv(&a, "2026-01-02T00:00:00Z")])
            .unwrap();
        let refs = store
            .version_refs_since(at("2025-12-31T00:00:00Z"))
            .unwrap();
        let got: Vec<(String, u32)> = refs
            .iter()
            .map(|r| (r.nct.to_string(), r.version))
            .collect();
        assert_eq!(
            got,
            [
                ("NCT00000001".to_string(), 2),
                ("NCT00000002".to_string(), 1),
                ("NCT00000001".to_string(), 1)
            ]
        );
        assert_eq!(refs[0].detected_at, at("2026-01-02T00:00:00Z"));
        let later = store
            .version_refs_since(at("2026-01-01T12:00:00Z"))
            .unwrap();
        assert_eq!(later.len(), 1);
        // The metadata the full listing would decode agrees.
        let full = store.versions_since(at("2025-12-31T00:00:00Z")).unwrap();
        assert_eq!(full.len(), 3);
        assert_eq!(full[0].1.version, 2);
    }
}
