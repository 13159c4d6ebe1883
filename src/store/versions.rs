//! Trial versions: committing new ones — the version, its changes, the trial's state and the
//! alerts it owes in one atomic batch — and the per-trial state ([`TrialState`]: latest version,
//! "seen" and "failed" bookkeeping). Reading versions back is [`super::reads`].
//!
//! It does not choose the encoding of a blob ([`super::codec`]), build keys ([`super::keys`]) or
//! expand the alerts a version owes into outbox entries ([`super::outbox`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::{
    Codec, StoredMeta, ZSTD_KEYFRAME_LEVEL, encode, encode_at, keyframe_of, raw_hash, record_hash,
    to_json,
};
use super::keys::{VersionBlobs, encode_table, encode_time_entries, key, time_key, vkey};
use super::pack::BlobRef;
use super::trial_value;
use super::{FanOut, OwedAlert, Result, Store, corrupt};
use crate::model::{FieldChange, HistorySummary, NctId, Provenance, Record, Source, VersionMeta};

/// Per-trial bookkeeping, read on every sync to decide "changed or not" without decompressing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialState {
    /// The trial, as watched (its key).
    pub nct_id: NctId,
    /// 0 while the trial has never been fetched whole.
    pub latest_version: u32,
    /// SHA-256 (hex) of the latest record's canonical bytes: equality means "unchanged".
    pub record_hash: String,
    /// Detection time of its first version (or of its first failed fetch).
    pub first_seen_at: DateTime<Utc>,
    /// Time of the last sync that fetched this trial whole (the page's `last_seen_at`).
    pub last_seen_at: DateTime<Utc>,
    /// The canonical ID CT.gov answered with, when the watched ID is an alias of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_id: Option<NctId>,
    /// Why the last sync could not fetch this trial, until a later one succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When `last_error` happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<DateTime<Utc>>,
    /// `normalize::source_fingerprint` of the last study fetched whole: when the next fetch has
    /// the same, the record is unchanged and need not be normalized again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_fingerprint: Option<String>,
    /// [`super::raw_hash`] of the raw JSON of the last study fetched whole (store format 3):
    /// when the next fetch sends the same bytes, the sync skips even the fingerprint. Absent in
    /// older states, and for a head that came from CT.gov's history rather than the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_hash: Option<String>,
    /// The trial's versions in timeline order (by when CT.gov posted them), when that is not
    /// their numbers' order: a backfill into a trial that already had versions puts CT.gov's
    /// older versions before them, under new numbers (a number a user has seen never changes
    /// meaning). Empty means 1, 2, 3…
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<u32>,
    /// The first version a sync fetched itself: it and every version before it in the timeline
    /// alert nobody. 0 while no sync stored one (only backfilled versions). Stores written before
    /// backfills existed lack the key: there every version is observed, the first is version 1.
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub first_observed: u32,
    /// What CT.gov's history index said when trialwatch last read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctgov_history: Option<HistorySummary>,
}

fn first_version() -> u32 {
    1
}

fn is_first_version(v: &u32) -> bool {
    *v == 1
}

impl TrialState {
    /// A trial the store knows of but holds no version of yet.
    pub(super) fn empty(nct: &NctId, at: DateTime<Utc>) -> TrialState {
        TrialState {
            nct_id: nct.clone(),
            latest_version: 0,
            record_hash: String::new(),
            first_seen_at: at,
            last_seen_at: at,
            resolved_id: None,
            last_error: None,
            last_error_at: None,
            source_fingerprint: None,
            raw_hash: None,
            timeline: Vec::new(),
            first_observed: 0,
            ctgov_history: None,
        }
    }

    /// The version numbers in timeline order, oldest first.
    pub fn order(&self) -> Vec<u32> {
        if self.timeline.is_empty() {
            (1..=self.latest_version).collect()
        } else {
            self.timeline.clone()
        }
    }

    /// The timeline's newest version: what `show` shows and the next sync compares against.
    /// 0 when there is none.
    pub fn head(&self) -> u32 {
        self.timeline.last().copied().unwrap_or(self.latest_version)
    }

    /// The version just before `version` in the timeline, if any.
    pub fn before(&self, version: u32) -> Option<u32> {
        if self.timeline.is_empty() {
            return version
                .checked_sub(1)
                .filter(|v| *v > 0 && *v <= self.latest_version);
        }
        let i = self.timeline.iter().position(|v| *v == version)?;
        i.checked_sub(1).map(|i| self.timeline[i])
    }

    /// Whether a sync already stored a version of this trial itself (so a new one is news).
    pub fn has_observed(&self) -> bool {
        self.first_observed > 0 && self.latest_version > 0
    }
}

/// A new version to write: everything one atomic batch needs.
pub struct NewVersion<'a> {
    /// The trial, as watched.
    pub nct: &'a NctId,
    /// The normalized record this version stores.
    pub record: &'a Record,
    /// Canonical bytes of `record` (the caller already made them to hash them).
    pub canonical: &'a [u8],
    /// The study's JSON exactly as CT.gov sent it.
    pub raw: &'a [u8],
    /// What changed since the previous version: every path `added` for a first version, or
    /// nothing at all for a version 1, which means the same (its changes are derived from its
    /// record on read).
    pub changes: Vec<FieldChange>,
    /// When the sync saw it: the version's time in the time index.
    pub detected_at: DateTime<Utc>,
    /// The canonical ID CT.gov answered with, when `nct` is an alias of it.
    pub resolved_id: Option<NctId>,
    /// `normalize::source_fingerprint` of `raw`, kept for the next sync's fast path.
    pub source_fingerprint: Option<String>,
    /// The alerts this version owes, written in the same atomic batch as the version itself,
    /// so a crash can never store a change and lose its alerts (or the reverse).
    pub alerts: Vec<OwedAlert>,
    /// Where it came from (a sync, or CT.gov's record history) and its CT.gov version.
    pub provenance: Provenance,
}

#[cfg(test)]
impl<'a> NewVersion<'a> {
    /// A version a sync observed at `at`, with no changes (so a version 1 is derived), alerts,
    /// alias or fingerprint: what the crate's unit tests commit.
    pub(crate) fn observed(
        nct: &'a NctId,
        record: &'a Record,
        canonical: &'a [u8],
        raw: &'a [u8],
        at: DateTime<Utc>,
    ) -> NewVersion<'a> {
        NewVersion {
            provenance: Default::default(),
            nct,
            record,
            canonical,
            raw,
            changes: Vec::new(),
            detected_at: at,
            resolved_id: None,
            source_fingerprint: None,
            alerts: Vec::new(),
        }
    }
}

#[cfg(test)]
impl Store {
    /// Normalize `raw` and commit it as the next version of `nct` a sync observed at `at`;
    /// the record it stored.
    pub(crate) fn commit_observed_raw(&self, nct: &NctId, raw: &str, at: DateTime<Utc>) -> Record {
        let record = crate::normalize::normalize_json(raw).expect("a study that normalizes");
        let canonical = record.canonical_bytes();
        self.commit_version(NewVersion::observed(
            nct,
            &record,
            &canonical,
            raw.as_bytes(),
            at,
        ))
        .expect("the commit");
        record
    }
}

/// `(trial, version)` pairs committed at one detection time.
type TimeEntries = (DateTime<Utc>, Vec<(NctId, u32)>);

/// Versions staged for one commit.
#[derive(Default)]
struct Pending {
    /// The sled entries of every staged version.
    batch: sled::Batch,
    /// Time-index entries by detection time.
    times: Vec<TimeEntries>,
    /// Trials staged so far: a second version of one waits for the next batch.
    trials: Vec<NctId>,
    /// Trial states as staged, so a version staged after another of the same trial in this
    /// batch builds on it.
    states: Vec<TrialState>,
    /// Version tables as staged, for the same reason.
    tables: Vec<(NctId, Vec<VersionBlobs>)>,
}

impl Store {
    /// One blob's bytes, checked; `label` names it in errors.
    pub(super) fn blob(&self, label: &[u8], r: &BlobRef) -> Result<Vec<u8>> {
        self.packs
            .read(r)
            .map_err(|e| corrupt(label, format!("its blob cannot be read: {e}")))
    }

    /// The trial's state and version table, from its one `T` value.
    pub(super) fn trial_entry(
        &self,
        nct: &NctId,
    ) -> Result<Option<(TrialState, Vec<VersionBlobs>)>> {
        let k = key(b'T', nct);
        self.t_get(&k, nct)?
            .map(|v| trial_value::decode_all(&k, &v))
            .transpose()
    }

    /// The trial's version table (empty before its first version).
    pub(super) fn table(&self, nct: &NctId) -> Result<Vec<VersionBlobs>> {
        Ok(self.trial_entry(nct)?.map(|(_, t)| t).unwrap_or_default())
    }

    /// Where version `version`'s blobs are, if it is stored.
    pub(super) fn entry(&self, nct: &NctId, version: u32) -> Result<Option<VersionBlobs>> {
        let table = self.table(nct)?;
        Ok(version
            .checked_sub(1)
            .and_then(|i| table.get(i as usize).copied()))
    }

    /// The trial's bookkeeping, if the store has seen it.
    pub fn trial(&self, nct: &NctId) -> Result<Option<TrialState>> {
        let k = key(b'T', nct);
        self.t_get(&k, nct)?
            .map(|v| trial_value::decode(&k, &v).map(|(s, _)| s))
            .transpose()
    }

    /// Every trial the store has seen, by ID.
    pub fn trials(&self) -> Result<Vec<TrialState>> {
        self.db()?
            .scan_prefix(b"T")
            .map(|kv| {
                let (k, v) = kv?;
                trial_value::decode(&k, &v).map(|(s, _)| s)
            })
            .collect()
    }

    /// Write `state` over the trial's stored one, keeping its version table as it is.
    fn put_state(&self, state: TrialState) -> Result<()> {
        let nct = state.nct_id.clone();
        self.update_state(&nct, |_| Some(state))
    }

    /// Replace the trial's state by what `change` makes of it (`None` before the store knew
    /// the trial; returning `None` writes nothing), keeping its version table: one read of its
    /// `T` value and one write.
    fn update_state(
        &self,
        nct: &NctId,
        change: impl FnOnce(Option<TrialState>) -> Option<TrialState>,
    ) -> Result<()> {
        let k = key(b'T', nct);
        let stored = self.db()?.get(&k)?;
        let (old, table) = match &stored {
            Some(v) => {
                let (s, table) = trial_value::decode(&k, v)?;
                (Some(s), table)
            }
            None => (None, &[][..]),
        };
        if let Some(new) = change(old) {
            self.writing()?
                .insert(k, trial_value::encode(&new, table))?;
        }
        Ok(())
    }

    /// Write a new version atomically: record, raw JSON, metadata with its changes, the time
    /// index and the trial's state. Returns the new version number.
    pub fn commit_version(&self, nv: NewVersion<'_>) -> Result<u32> {
        let mut v = self.commit_versions(vec![nv])?;
        v.pop()
            .ok_or_else(|| corrupt(b"", "a commit returned no version".into()))
    }

    /// Write new versions of several trials in one atomic sled batch, after one fdatasync of
    /// the pack files that hold their blobs (so a sync pays one disk flush per batch, not per
    /// trial). Returns each version number, in order. Versions of one trial in `items` follow
    /// each other in its timeline, in the order given.
    pub fn commit_versions(&self, items: Vec<NewVersion<'_>>) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(items.len());
        let mut pending = Pending::default();
        for nv in items {
            // A second version of one trial builds on the first as staged (its blobs are
            // already readable in the packs), so a whole chain is one atomic batch.
            out.push(
                self.stage_version(nv, None, &mut pending)
                    .map_err(|e| self.disk_full_or(e))?,
            );
        }
        if !pending.trials.is_empty() {
            self.apply_versions(pending)
                .map_err(|e| self.disk_full_or(e))?;
        }
        Ok(out)
    }

    /// Pack blobs first, durably; then the sled batch that points to them, with one
    /// time-index key per detection time.
    fn apply_versions(&self, pending: Pending) -> Result<()> {
        let record = self.commit_record(&pending.states, &pending.tables)?;
        let Pending {
            mut batch, times, ..
        } = pending;
        for (at, entries) in times {
            let Some((nct, ver)) = entries.first() else {
                continue;
            };
            batch.insert(time_key(at, nct, *ver), encode_time_entries(&entries));
        }
        self.stage_pack_end(&mut batch);
        self.packs.sync()?;
        self.writing()?.apply_batch(batch)?;
        // The packs' own record of this commit, once the batch is durable (see `repair.rs`).
        self.append_commit_record(record)
    }

    /// Write CT.gov's older versions of a trial that already has some, in one atomic batch:
    /// `items` (oldest first) go into the timeline just before version `successor.version`,
    /// under the next free numbers, and that version's metadata becomes `successor` (its
    /// changes now against the last of `items`; its CT.gov version, when the history index
    /// names it). With no `items` only the successor's metadata is rewritten. Returns the new
    /// numbers.
    pub fn insert_versions_before(
        &self,
        nct: &NctId,
        items: Vec<NewVersion<'_>>,
        successor: VersionMeta,
    ) -> Result<Vec<u32>> {
        let before = successor.version;
        let nct = nct.clone();
        if items.iter().any(|nv| *nv.nct != nct) {
            return Err(corrupt(&key(b'T', &nct), "an insert mixes trials".into()));
        }
        let mut pending = Pending::default();
        let mut out = Vec::with_capacity(items.len());
        for nv in items {
            out.push(self.stage_version(nv, Some(before), &mut pending)?);
        }
        // The successor's metadata is rewritten: same version, changes against its new
        // predecessor (a new blob; the old one becomes unreferenced pack bytes).
        let mut table = self.staged_table(&nct, &pending)?;
        let state = self.staged_state(&nct, &pending)?;
        let Some(state) = state else {
            return Err(corrupt(
                &key(b'T', &nct),
                "an insert into an unknown trial".into(),
            ));
        };
        let Some(i) = (before as usize)
            .checked_sub(1)
            .filter(|i| *i < table.len())
        else {
            return Err(corrupt(
                &key(b'T', &nct),
                format!("version {before} is not stored"),
            ));
        };
        let stored = StoredMeta {
            meta: successor,
            changes_from_record: false,
            context: None,
        };
        table[i].meta = self
            .packs
            .append(&encode(&to_json(&stored), Codec::Plain, &[]))?;
        pending.batch.insert(
            key(b'T', &nct),
            trial_value::encode(&state, &encode_table(&table)),
        );
        pending.tables.push((nct.clone(), table));
        pending.states.push(state);
        self.apply_versions(pending)
            .map_err(|e| self.disk_full_or(e))?;
        Ok(out)
    }

    /// The trial's state as staged in `pending`, or as stored.
    fn staged_state(&self, nct: &NctId, pending: &Pending) -> Result<Option<TrialState>> {
        match pending.states.iter().rev().find(|t| t.nct_id == *nct) {
            Some(t) => Ok(Some(t.clone())),
            None => self.trial(nct),
        }
    }

    /// The trial's version table as staged in `pending`, or as stored.
    fn staged_table(&self, nct: &NctId, pending: &Pending) -> Result<Vec<VersionBlobs>> {
        match pending.tables.iter().rev().find(|(n, _)| n == nct) {
            Some((_, t)) => Ok(t.clone()),
            None => self.table(nct),
        }
    }

    /// Append one version's blobs to the packs and its sled entries to `pending`: at the
    /// timeline's end, or (`before`) just before that version.
    fn stage_version(
        &self,
        nv: NewVersion<'_>,
        before: Option<u32>,
        pending: &mut Pending,
    ) -> Result<u32> {
        let prev = self.staged_state(nv.nct, pending)?;
        let mut table = self.staged_table(nv.nct, pending)?;
        let version = prev.as_ref().map_or(0, |t| t.latest_version) + 1;
        if table.len() + 1 != version as usize {
            return Err(corrupt(
                &key(b'T', nv.nct),
                format!(
                    "the version table has {} entries but the trial is at version {}",
                    table.len(),
                    version - 1
                ),
            ));
        }
        let observed = nv.provenance.source == Source::Observed;
        let meta = VersionMeta {
            version,
            detected_at: nv.detected_at,
            last_update_post_date: nv.record.last_update_post_date().map(str::to_string),
            changes: nv.changes,
            provenance: nv.provenance,
        };
        let mut state = match &prev {
            Some(t) => t.clone(),
            None => TrialState::empty(nv.nct, nv.detected_at),
        };
        if version == 1 && !observed {
            // A trial whose story starts with CT.gov's history: no observed version yet.
            state.first_observed = 0;
        }
        let mut order = state.order();
        match before.and_then(|b| order.iter().position(|v| *v == b)) {
            Some(i) => order.insert(i, version),
            None => {
                // At the end: the new head.
                order.push(version);
                state.record_hash = record_hash(nv.canonical);
                state.last_seen_at = nv.detected_at;
                state.resolved_id = nv.resolved_id;
                state.last_error = None;
                state.last_error_at = None;
                state.source_fingerprint = nv.source_fingerprint;
                state.raw_hash = (observed && !nv.raw.is_empty()).then(|| raw_hash(nv.raw));
                if observed && !state.has_observed() {
                    state.first_observed = version;
                }
            }
        }
        state.latest_version = version;
        state.timeline = if order.iter().copied().eq(1..=version) {
            Vec::new()
        } else {
            order
        };
        if self.keeps_list_rows() {
            super::list_rows::stage(
                &mut pending.batch,
                &state,
                version,
                meta.detected_at,
                &meta.changes,
                nv.record,
            );
        }
        let keyframe = keyframe_of(version);
        let raw_value = if keyframe == version {
            encode_at(nv.raw, Codec::Ctgov, &[], ZSTD_KEYFRAME_LEVEL)
        } else {
            let dict = self.raw_in(nv.nct, keyframe, &table)?.unwrap_or_default();
            encode(nv.raw, Codec::Keyframe, &dict)
        };
        // A timeline's first version's changes are every path of its record, `added`: derived
        // from the record on read rather than stored twice (see `StoredMeta`). That is version 1,
        // or the oldest CT.gov version a backfill puts before it (cheap test first: a later
        // version's changes are rarely all additions).
        // A version 1 committed with no changes at all is derived by definition: a caller that
        // knows it stores a first version (the sync) need not build every path's `added` change
        // only for it to be compared here and dropped.
        let derived = (version == 1 && meta.changes.is_empty())
            || (version == 1
                || (!meta.changes.is_empty()
                    && meta
                        .changes
                        .iter()
                        .all(|c| c.kind == crate::model::ChangeKind::Added)))
                && meta.changes == crate::diff::diff(None, nv.record);
        // What the severity rules read of the record, when these changes need it (issue #14:
        // `changes --since` then decodes no record).
        let context = (!derived && crate::severity::needs_context(&meta.changes))
            .then(|| crate::severity::context_of(nv.record));
        let stored = StoredMeta {
            meta: VersionMeta {
                changes: if derived { Vec::new() } else { meta.changes },
                ..meta
            },
            changes_from_record: derived,
            context,
        };
        let meta_codec = if version == 1 && !derived {
            Codec::OwnRaw
        } else {
            Codec::Plain
        };
        // A keyframe's record against its own raw JSON; any other against its keyframe's
        // record, which it nearly equals (tens of bytes).
        let record_value = if keyframe == version {
            encode(nv.canonical, Codec::OwnRaw, nv.raw)
        } else {
            let label = super::keys::blob_label(nv.nct, version, "record");
            let dict = self.keyframe_record(&label, nv.nct, version, &table)?;
            encode(nv.canonical, Codec::KeyframeRecord, &dict)
        };
        table.push(VersionBlobs {
            meta: self
                .packs
                .append(&encode(&to_json(&stored), meta_codec, nv.raw))?,
            record: self.packs.append(&record_value)?,
            raw: self.packs.append(&raw_value)?,
        });
        let batch = &mut pending.batch;
        batch.insert(
            key(b'T', nv.nct),
            trial_value::encode(&state, &encode_table(&table)),
        );
        pending.states.push(state);
        pending.tables.push((nv.nct.clone(), table));
        if !nv.alerts.is_empty() {
            let fan = FanOut::new(nv.detected_at, nv.alerts);
            batch.insert(vkey(b'g', nv.nct, version), to_json(&fan));
        }
        match pending
            .times
            .iter_mut()
            .find(|(at, _)| *at == nv.detected_at)
        {
            Some((_, entries)) => entries.push((nv.nct.clone(), version)),
            None => pending
                .times
                .push((nv.detected_at, vec![(nv.nct.clone(), version)])),
        }
        pending.trials.push(nv.nct.clone());
        Ok(version)
    }

    /// Record that a sync fetched `nct` whole and found it unchanged.
    /// `fingerprint`: the fetched study's `normalize::source_fingerprint`, when known.
    pub fn mark_seen(
        &self,
        nct: &NctId,
        at: DateTime<Utc>,
        resolved_id: Option<NctId>,
        fingerprint: Option<String>,
    ) -> Result<()> {
        match self.trial(nct)? {
            Some(t) => self.mark_seen_state(t, at, resolved_id, fingerprint, None),
            None => Ok(()),
        }
    }

    /// Record that a sync fetched the trial of `state` (as read by the caller, this sync) whole
    /// and found it unchanged, with its fetched study's fingerprint and [`super::raw_hash`]
    /// when known: [`Store::mark_seen`] without reading the state a second time.
    pub fn mark_seen_state(
        &self,
        mut t: TrialState,
        at: DateTime<Utc>,
        resolved_id: Option<NctId>,
        fingerprint: Option<String>,
        raw: Option<String>,
    ) -> Result<()> {
        t.last_seen_at = at;
        t.resolved_id = resolved_id;
        if fingerprint.is_some() {
            t.source_fingerprint = fingerprint;
        }
        if raw.is_some() {
            t.raw_hash = raw;
        }
        t.last_error = None;
        t.last_error_at = None;
        self.put_state(t)
    }

    /// Record why a sync could not fetch `nct`. Stored versions are untouched.
    pub fn mark_failed(&self, nct: &NctId, at: DateTime<Utc>, error: &str) -> Result<()> {
        self.update_state(nct, |t| {
            let mut t = t.unwrap_or_else(|| TrialState::empty(nct, at));
            t.last_error = Some(error.to_string());
            t.last_error_at = Some(at);
            Some(t)
        })
    }

    /// Record what CT.gov's history index said of a trial (outcome switching, its newest
    /// CT.gov version), or why it could not be read.
    pub fn set_ctgov_history(&self, nct: &NctId, summary: HistorySummary) -> Result<()> {
        self.update_state(nct, |t| {
            t.map(|mut t| {
                t.ctgov_history = Some(summary);
                t
            })
        })?;
        Ok(())
    }
}
