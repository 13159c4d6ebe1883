//! Versioned snapshots in sled: the only module that knows sled and the key encodings.
//!
//! Everything but the large blobs lives in one sled tree so that one `apply_batch` — which sled applies
//! atomically — can write a new version, its changes, its bookkeeping and (later) the alerts it
//! owes. A process killed at any instant leaves the old state or the new one, never a half.
//!
//! Key layout (`NCT` is the 11-byte canonical ID, `ver` a big-endian u32, so prefix scans
//! return versions in order):
//!
//! | key | value |
//! |---|---|
//! | `F` | store format version, u32 BE |
//! | `t` NCT | [`TrialState`] JSON: latest version, record hash, last seen, last error |
//! | `V` NCT | the trial's version table: per version (1, 2, 3…) three 16-byte pack pointers, to zstd([`VersionMeta`] JSON: detected at, CT.gov last update, field changes), zstd(normalized record JSON) and zstd(raw CT.gov study JSON, kept so history can be re-normalized) |
//! | `c` time NCT ver | index of versions by detection time (µs since epoch, BE), for `changes`: the value lists the `(NCT, ver)` committed together at that time (15 bytes each); an empty value (format 1) means the one in the key |
//! | `W` NCT | [`WatchEntry`] JSON: the watch list kept in the store |
//! | `m` name | small JSON values of whole-store bookkeeping (last sync summary, …) |
//! | `S` sub | [`Subscription`] JSON: subscriptions added with `trialwatch subscribe` |
//! | `g` NCT ver | [`FanOut`] JSON: every alert a new version owes, written in the version's batch |
//! | `o` sub `/` NCT ver | [`OutboxEntry`] JSON: one alert owed to one subscription (pending or dead) |
//! | `d` due sub `/` NCT ver | empty: index of *pending* entries by next attempt time (µs BE), so due ones are one range scan |
//! | `D` sub | RFC 3339 JSON: when the subscription's last daily digest went out |
//!
//! A version's metadata, record and raw JSON never change once written, and are the bulk of
//! the data, so they live outside sled, appended to pack files under `packs/` ([`pack`]); sled
//! keeps one small version table per trial and one time-index key per commit. That keeps sled
//! small (a few bytes per version), and sled's open — which every command pays, and which reads
//! all of sled's log — quick. A commit makes the pack bytes durable before it applies the sled
//! batch that points to them.
//!
//! Outbox entries are small: they reference the stored version and the matching paths, and the
//! alert is rendered from the stored version at delivery time. The version's batch holds one
//! `g` fan-out record for all its alerts (one key instead of two per alert keeps a sync that
//! owes 100,000 alerts fast); the first outbox operation after it expands the record into the
//! per-alert `o`/`d` entries, in one atomic batch per record. The entry key (and so the alert's
//! idempotency key) is derived from subscription, trial and version, so enqueueing is idempotent.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Subscription;
use crate::model::{FieldChange, NctId, Record, VersionMeta};

mod pack;
pub use pack::PackError;
use pack::{BlobRef, Packs};

/// The layout version this build reads and writes. Bump it with a migration in [`Store::open`].
///
/// 1: every value inside sled, one key per version and kind. 2: metadata, records and raw JSON
/// in pack files, a version table per trial, one time-index key per commit ([`Store::open`]
/// migrates 1 → 2).
pub const FORMAT_VERSION: u32 = 2;

/// zstd level: JSON is read and written on every sync of a changed trial, so speed wins.
const ZSTD_LEVEL: i32 = 3;

/// zstd level of a keyframe's raw JSON, the largest thing a version stores and the one written
/// once per 16 versions: level 6 makes it ~7 % smaller than level 3 (measured on the fixture
/// mix of `benches/sync.rs`) for about 1 s more CPU per 300 MB.
const ZSTD_KEYFRAME_LEVEL: i32 = 6;

/// Every this many versions the raw JSON is stored whole (a keyframe); the versions between are
/// stored as zstd deltas against their keyframe. Versions of one study are nearly identical, so a
/// delta costs tens of bytes, and any read needs at most two decompressions.
const KEYFRAME_EVERY: u32 = 16;

/// How a stored value is encoded: a tag byte, then a zstd frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    /// zstd on its own.
    Plain = 1,
    /// zstd with this version's raw CT.gov JSON as a raw-content dictionary: the normalized
    /// record and a first version's changes repeat the raw text, so they cost little on top.
    OwnRaw = 2,
    /// zstd with the keyframe version's raw JSON as dictionary (raw JSON of non-keyframes).
    Keyframe = 3,
}

impl Codec {
    fn from_tag(tag: u8) -> Option<Codec> {
        match tag {
            1 => Some(Codec::Plain),
            2 => Some(Codec::OwnRaw),
            3 => Some(Codec::Keyframe),
            _ => None,
        }
    }
}

/// The version whose raw JSON is stored whole and serves as dictionary for `version`.
fn keyframe_of(version: u32) -> u32 {
    ((version.max(1) - 1) / KEYFRAME_EVERY) * KEYFRAME_EVERY + 1
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the store at {path}: {source}; check that the directory is writable and that \
         no other trialwatch process (a running daemon?) has it open"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error(
        "the store at {path} has format version {found}, but this trialwatch understands only up \
         to {supported}; upgrade trialwatch (the store was not changed)"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "the store at {path} holds data but no format version; it was not written by trialwatch"
    )]
    Foreign { path: PathBuf },
    #[error("store I/O failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("store entry {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("store blob I/O failed: {0}")]
    Pack(#[from] PackError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Per-trial bookkeeping, read on every sync to decide "changed or not" without decompressing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialState {
    pub nct_id: NctId,
    /// 0 while the trial has never been fetched whole.
    pub latest_version: u32,
    /// SHA-256 (hex) of the latest record's canonical bytes: equality means "unchanged".
    pub record_hash: String,
    pub first_seen_at: DateTime<Utc>,
    /// Time of the last sync that fetched this trial whole (the page's `last_seen_at`).
    pub last_seen_at: DateTime<Utc>,
    /// The canonical ID CT.gov answered with, when the watched ID is an alias of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_id: Option<NctId>,
    /// Why the last sync could not fetch this trial, until a later one succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<DateTime<Utc>>,
    /// `normalize::source_fingerprint` of the last study fetched whole: when the next fetch has
    /// the same, the record is unchanged and need not be normalized again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_fingerprint: Option<String>,
}

/// An entry of the watch list that `trialwatch watch add` keeps in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchEntry {
    pub nct_id: NctId,
    pub added_at: DateTime<Utc>,
}

/// A new version to write: everything one atomic batch needs.
pub struct NewVersion<'a> {
    pub nct: &'a NctId,
    pub record: &'a Record,
    /// Canonical bytes of `record` (the caller already made them to hash them).
    pub canonical: &'a [u8],
    /// The study's JSON exactly as CT.gov sent it.
    pub raw: &'a [u8],
    pub changes: Vec<FieldChange>,
    pub detected_at: DateTime<Utc>,
    pub resolved_id: Option<NctId>,
    /// `normalize::source_fingerprint` of `raw`, kept for the next sync's fast path.
    pub source_fingerprint: Option<String>,
    /// The alerts this version owes, written in the same atomic batch as the version itself,
    /// so a crash can never store a change and lose its alerts (or the reverse).
    pub alerts: Vec<OwedAlert>,
}

/// One alert a new version owes one subscription, as the sync computed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwedAlert {
    pub subscription_id: String,
    /// The version's change paths this subscription hears about (never empty).
    pub paths: Vec<String>,
    /// First delivery attempt: now for immediate subscriptions, the digest time for daily ones.
    pub due: DateTime<Utc>,
}

/// The alerts of one new version, as the version's own batch writes them: subscriptions that
/// owe the same paths at the same time share one group, which keeps the record small (most
/// subscriptions follow the same few filters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanOut {
    /// The version's detection time: every alert's `created_at`.
    pub created_at: DateTime<Utc>,
    pub groups: Vec<FanOutGroup>,
}

/// Subscriptions owed the same paths, due at the same time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanOutGroup {
    pub paths: Vec<String>,
    pub due: DateTime<Utc>,
    pub subscriptions: Vec<String>,
}

impl FanOut {
    fn new(created_at: DateTime<Utc>, alerts: Vec<OwedAlert>) -> FanOut {
        let mut groups: Vec<FanOutGroup> = Vec::new();
        for a in alerts {
            match groups
                .iter_mut()
                .find(|g| g.due == a.due && g.paths == a.paths)
            {
                Some(g) => g.subscriptions.push(a.subscription_id),
                None => groups.push(FanOutGroup {
                    paths: a.paths,
                    due: a.due,
                    subscriptions: vec![a.subscription_id],
                }),
            }
        }
        FanOut { created_at, groups }
    }
}

/// One alert in the outbox: a reference to a stored version plus the delivery bookkeeping.
/// Removed only after the receiver accepted the alert (or the user dropped it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub subscription_id: String,
    pub nct_id: NctId,
    /// The stored version the alert reports; the alert is rendered from it at delivery.
    pub version: u32,
    /// Which of the version's changes this subscription hears about.
    pub paths: Vec<String>,
    /// When the version was detected and the alert enqueued.
    pub created_at: DateTime<Utc>,
    /// Start of the give-up window: `created_at`, reset by `outbox retry`.
    pub window_start: DateTime<Utc>,
    /// Failed sends so far in this window; drives the backoff.
    pub attempts: u32,
    /// Not before this time; the `d` index holds the same instant while the entry is pending.
    pub next_attempt_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed, for `trialwatch outbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Set when the entry became a dead letter: it waits for `outbox retry` or `outbox drop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_at: Option<DateTime<Utc>>,
}

impl OutboxEntry {
    /// The alert's idempotency key, stable across retries and restarts:
    /// `{subscription}.{NCT}.v{version}` (valid as the left part of a Message-ID).
    pub fn id(&self) -> String {
        format!("{}.{}.v{}", self.subscription_id, self.nct_id, self.version)
    }

    pub fn is_dead(&self) -> bool {
        self.dead_at.is_some()
    }

    /// The part of the `o` and `d` keys that names this entry.
    fn tail(&self) -> Vec<u8> {
        entry_tail(&self.subscription_id, &self.nct_id, self.version)
    }

    fn key(&self) -> Vec<u8> {
        let mut k = vec![b'o'];
        k.extend_from_slice(&self.tail());
        k
    }

    fn due_key(&self) -> Vec<u8> {
        due_key(self.next_attempt_at, &self.tail())
    }
}

fn entry_tail(sub: &str, nct: &NctId, version: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(sub.len() + 16);
    k.extend_from_slice(sub.as_bytes());
    k.push(b'/');
    k.extend_from_slice(nct.as_str().as_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn micros_key(at: DateTime<Utc>) -> [u8; 8] {
    ((at.timestamp_micros() as u64) ^ (1 << 63)).to_be_bytes()
}

fn due_key(at: DateTime<Utc>, tail: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + tail.len());
    k.push(b'd');
    k.extend_from_slice(&micros_key(at));
    k.extend_from_slice(tail);
    k
}

/// Parse an alert id `{subscription}.{NCT}.v{version}` back into its key tail.
fn parse_alert_id(id: &str) -> Option<(String, NctId, u32)> {
    let (rest, ver) = id.trim().rsplit_once(".v")?;
    let (sub, nct) = rest.rsplit_once('.')?;
    Some((sub.to_string(), nct.parse().ok()?, ver.parse().ok()?))
}

/// SHA-256 hex of a record's canonical bytes.
pub fn record_hash(canonical: &[u8]) -> String {
    hex::encode(Sha256::digest(canonical))
}

/// The store handle. Cheap to clone (sled handles are reference-counted).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// Records and raw JSON; sled holds pointers to them.
    packs: std::sync::Arc<Packs>,
    path: PathBuf,
    /// Serializes fan-out expansion, so two callers never both expand one record (which
    /// could resurrect an alert the other had already delivered).
    expand_lock: std::sync::Arc<std::sync::Mutex<()>>,
}

fn key(prefix: u8, nct: &NctId) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.push(prefix);
    k.extend_from_slice(nct.as_str().as_bytes());
    k
}

fn vkey(prefix: u8, nct: &NctId, version: u32) -> Vec<u8> {
    let mut k = key(prefix, nct);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn time_key(at: DateTime<Utc>, nct: &NctId, version: u32) -> Vec<u8> {
    // Offset so that times before 1970 still sort correctly as unsigned bytes.
    let micros = (at.timestamp_micros() as u64) ^ (1 << 63);
    let mut k = Vec::with_capacity(24);
    k.push(b'c');
    k.extend_from_slice(&micros.to_be_bytes());
    k.extend_from_slice(nct.as_str().as_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// Where one version's three blobs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VersionBlobs {
    meta: BlobRef,
    record: BlobRef,
    raw: BlobRef,
}

const TABLE_ENTRY: usize = 3 * BlobRef::BYTES;

fn encode_table(entries: &[VersionBlobs]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * TABLE_ENTRY);
    for e in entries {
        out.extend_from_slice(&e.meta.to_bytes());
        out.extend_from_slice(&e.record.to_bytes());
        out.extend_from_slice(&e.raw.to_bytes());
    }
    out
}

fn decode_table(key: &[u8], bytes: &[u8]) -> Result<Vec<VersionBlobs>> {
    if !bytes.len().is_multiple_of(TABLE_ENTRY) {
        return Err(corrupt(
            key,
            format!("version table of {} bytes", bytes.len()),
        ));
    }
    bytes
        .chunks_exact(TABLE_ENTRY)
        .map(|c| {
            let at =
                |i: usize| BlobRef::from_bytes(&c[i * BlobRef::BYTES..(i + 1) * BlobRef::BYTES]);
            match (at(0), at(1), at(2)) {
                (Some(meta), Some(record), Some(raw)) => Ok(VersionBlobs { meta, record, raw }),
                _ => Err(corrupt(key, "malformed version table entry".into())),
            }
        })
        .collect()
}

/// The `(NCT, version)` entries of one time-index key: its value's list, or (format 1, empty
/// value) the one in the key.
fn decode_time_entries(k: &[u8], v: &[u8]) -> Result<Vec<(NctId, u32)>> {
    let bad = || corrupt(k, "bad time-index entry".into());
    if v.is_empty() {
        let (_, nct, ver) = decode_time_key(k).ok_or_else(bad)?;
        return Ok(vec![(nct, ver)]);
    }
    if !v.len().is_multiple_of(15) {
        return Err(bad());
    }
    v.chunks_exact(15)
        .map(|c| {
            let nct: NctId = std::str::from_utf8(&c[..11])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            let ver = u32::from_be_bytes(c[11..].try_into().map_err(|_| bad())?);
            Ok((nct, ver))
        })
        .collect()
}

fn blob_label(nct: &NctId, version: u32, what: &str) -> Vec<u8> {
    format!("{nct} v{version} {what}").into_bytes()
}

/// `(NCT, version)` of a `v`/`r`/`w`/`g` key.
fn decode_version_key(k: &[u8]) -> Result<(NctId, u32)> {
    let bad = || StoreError::Corrupt {
        key: String::from_utf8_lossy(k).into_owned(),
        reason: "bad version key".into(),
    };
    if k.len() != 1 + 11 + 4 {
        return Err(bad());
    }
    let nct: NctId = std::str::from_utf8(&k[1..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let ver = u32::from_be_bytes(k[12..16].try_into().map_err(|_| bad())?);
    Ok((nct, ver))
}

fn decode_time_key(k: &[u8]) -> Option<(DateTime<Utc>, NctId, u32)> {
    if k.len() != 1 + 8 + 11 + 4 {
        return None;
    }
    let micros = u64::from_be_bytes(k[1..9].try_into().ok()?) ^ (1 << 63);
    let at = Utc.timestamp_micros(micros as i64).single()?;
    let nct: NctId = std::str::from_utf8(&k[9..20]).ok()?.parse().ok()?;
    let ver = u32::from_be_bytes(k[20..24].try_into().ok()?);
    Some((at, nct, ver))
}

fn encode(data: &[u8], codec: Codec, dict: &[u8]) -> Vec<u8> {
    encode_at(data, codec, dict, ZSTD_LEVEL)
}

fn encode_at(data: &[u8], codec: Codec, dict: &[u8], level: i32) -> Vec<u8> {
    let frame = if codec == Codec::Plain || dict.is_empty() {
        zstd::bulk::compress(data, level)
    } else {
        zstd::bulk::Compressor::with_dictionary(level, dict).and_then(|mut c| c.compress(data))
    };
    match frame {
        Ok(f) => {
            let mut out = Vec::with_capacity(f.len() + 1);
            out.push(if dict.is_empty() { Codec::Plain } else { codec } as u8);
            out.extend_from_slice(&f);
            out
        }
        // zstd on a buffer fails only when memory runs out; store the data uncompressed rather
        // than lose it (tag 0).
        Err(_) => {
            let mut out = Vec::with_capacity(data.len() + 1);
            out.push(0);
            out.extend_from_slice(data);
            out
        }
    }
}

fn corrupt(key: &[u8], reason: String) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    }
}

/// The codec a stored value needs, so the caller can fetch its dictionary first.
fn codec_of(key: &[u8], bytes: &[u8]) -> Result<Option<Codec>> {
    match bytes.first() {
        Some(0) => Ok(None),
        Some(&t) => Codec::from_tag(t)
            .map(Some)
            .ok_or_else(|| corrupt(key, format!("unknown encoding tag {t}"))),
        None => Err(corrupt(key, "empty value".into())),
    }
}

fn decode(key: &[u8], bytes: &[u8], dict: &[u8]) -> Result<Vec<u8>> {
    use std::io::Read;
    if codec_of(key, bytes)?.is_none() {
        return Ok(bytes[1..].to_vec());
    }
    let mut out = Vec::new();
    zstd::stream::read::Decoder::with_dictionary(&bytes[1..], dict)
        .and_then(|mut d| d.read_to_end(&mut out))
        .map_err(|e| corrupt(key, format!("cannot decompress: {e}")))?;
    Ok(out)
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Our own plain data types always serialize.
    serde_json::to_vec(v).unwrap_or_default()
}

fn from_json<T: for<'de> Deserialize<'de>>(key: &[u8], bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// A version's metadata as stored. A first version's changes are every path of its record,
/// `added` — the record a second time — so they are kept as a flag and derived from the record
/// on read (`diff(None, record)`), which halves what a first version costs.
#[derive(Serialize, Deserialize)]
struct StoredMeta {
    #[serde(flatten)]
    meta: VersionMeta,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    changes_from_record: bool,
}

/// `(trial, version)` pairs committed at one detection time.
type TimeEntries = (DateTime<Utc>, Vec<(NctId, u32)>);

/// Versions staged for one commit.
#[derive(Default)]
struct Pending {
    batch: sled::Batch,
    /// Time-index entries by detection time.
    times: Vec<TimeEntries>,
    trials: Vec<NctId>,
}

/// sled's page cache for one-shot commands: enough to keep a sync's working set of tree nodes.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// sled's page cache for the long-running daemon, which idles between daily syncs and should hold
/// little memory while it does; reads then come from the OS page cache, which is shared.
pub const DAEMON_CACHE_BYTES: u64 = 4 * 1024 * 1024;

impl Store {
    /// Open (creating if needed) the store in `dir`, checking its format version.
    pub fn open(dir: &Path) -> Result<Store> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Like [`Store::open`], with sled's page cache limited to `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Store> {
        let open_err = |source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(sled::Error::Io(e)))?;
        let db = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::LowSpace)
            .flush_every_ms(Some(500))
            .open()
            .map_err(open_err)?;
        let store = Store {
            db,
            packs: std::sync::Arc::new(Packs::new(&dir.join("packs"))),
            path: dir.to_path_buf(),
            expand_lock: Default::default(),
        };
        match store.db.get(b"F")? {
            Some(v) => {
                let found = v.as_ref().try_into().map(u32::from_be_bytes).map_err(|_| {
                    StoreError::Corrupt {
                        key: "F".into(),
                        reason: "format version is not 4 bytes".into(),
                    }
                })?;
                if found > FORMAT_VERSION {
                    return Err(StoreError::TooNew {
                        path: dir.to_path_buf(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                if found < 2 {
                    store.migrate_1_to_2()?;
                }
            }
            None if store.db.is_empty() => {
                store.db.insert(b"F", &FORMAT_VERSION.to_be_bytes())?;
                store.db.flush()?;
            }
            None => {
                return Err(StoreError::Foreign {
                    path: dir.to_path_buf(),
                });
            }
        }
        Ok(store)
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

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.packs.sync()?;
        self.db.flush()?;
        Ok(())
    }

    /// Bytes the store takes on disk (sled and the pack files).
    pub fn size_on_disk(&self) -> Result<u64> {
        let packs = self.packs.size().map_err(|source| {
            StoreError::Pack(PackError::Io {
                path: self.path.join("packs"),
                source,
            })
        })?;
        Ok(self.db.size_on_disk()? + packs)
    }

    /// One blob's bytes, checked; `label` names it in errors.
    fn blob(&self, label: &[u8], r: &BlobRef) -> Result<Vec<u8>> {
        self.packs
            .read(r)
            .map_err(|e| corrupt(label, format!("its blob cannot be read: {e}")))
    }

    /// The trial's version table (empty before its first version).
    fn table(&self, nct: &NctId) -> Result<Vec<VersionBlobs>> {
        let k = key(b'V', nct);
        match self.db.get(&k)? {
            Some(v) => decode_table(&k, &v),
            None => Ok(Vec::new()),
        }
    }

    fn entry(&self, nct: &NctId, version: u32) -> Result<Option<VersionBlobs>> {
        let table = self.table(nct)?;
        Ok(version
            .checked_sub(1)
            .and_then(|i| table.get(i as usize).copied()))
    }

    pub fn trial(&self, nct: &NctId) -> Result<Option<TrialState>> {
        let k = key(b't', nct);
        self.db.get(&k)?.map(|v| from_json(&k, &v)).transpose()
    }

    /// Every trial the store has seen, by ID.
    pub fn trials(&self) -> Result<Vec<TrialState>> {
        self.scan_json(b"t")
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
    /// trial). Returns each version number, in order. Two versions of one trial in `items` are
    /// written one after the other.
    pub fn commit_versions(&self, items: Vec<NewVersion<'_>>) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(items.len());
        let mut pending = Pending::default();
        for nv in items {
            if pending.trials.contains(nv.nct) {
                // Its previous version must be readable before this one is built.
                self.apply_versions(std::mem::take(&mut pending))?;
            }
            out.push(self.stage_version(nv, &mut pending)?);
        }
        if !pending.trials.is_empty() {
            self.apply_versions(pending)?;
        }
        Ok(out)
    }

    /// Pack blobs first, durably; then the sled batch that points to them, with one
    /// time-index key per detection time.
    fn apply_versions(&self, pending: Pending) -> Result<()> {
        let Pending {
            mut batch, times, ..
        } = pending;
        for (at, entries) in times {
            let Some((nct, ver)) = entries.first() else {
                continue;
            };
            let mut v = Vec::with_capacity(entries.len() * 15);
            for (n, e) in &entries {
                v.extend_from_slice(n.as_str().as_bytes());
                v.extend_from_slice(&e.to_be_bytes());
            }
            batch.insert(time_key(at, nct, *ver), v);
        }
        self.packs.sync()?;
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// Append one version's blobs to the packs and its sled entries to `pending`.
    fn stage_version(&self, nv: NewVersion<'_>, pending: &mut Pending) -> Result<u32> {
        let prev = self.trial(nv.nct)?;
        let mut table = self.table(nv.nct)?;
        let version = prev.as_ref().map_or(0, |t| t.latest_version) + 1;
        if table.len() + 1 != version as usize {
            return Err(corrupt(
                &key(b'V', nv.nct),
                format!(
                    "the version table has {} entries but the trial is at version {}",
                    table.len(),
                    version - 1
                ),
            ));
        }
        let meta = VersionMeta {
            version,
            detected_at: nv.detected_at,
            last_update_post_date: nv.record.last_update_post_date().map(str::to_string),
            changes: nv.changes,
        };
        let state = TrialState {
            nct_id: nv.nct.clone(),
            latest_version: version,
            record_hash: record_hash(nv.canonical),
            first_seen_at: prev.as_ref().map_or(nv.detected_at, |t| t.first_seen_at),
            last_seen_at: nv.detected_at,
            resolved_id: nv.resolved_id,
            last_error: None,
            last_error_at: None,
            source_fingerprint: nv.source_fingerprint,
        };
        let keyframe = keyframe_of(version);
        let raw_value = if keyframe == version {
            encode_at(nv.raw, Codec::Plain, &[], ZSTD_KEYFRAME_LEVEL)
        } else {
            let dict = self.raw_in(nv.nct, keyframe, &table)?.unwrap_or_default();
            encode(nv.raw, Codec::Keyframe, &dict)
        };
        // A first version's changes are every path of its record, `added`: derived from the
        // record on read rather than stored twice (see `StoredMeta`).
        let derived = version == 1 && meta.changes == crate::diff::diff(None, nv.record);
        let stored = StoredMeta {
            meta: VersionMeta {
                changes: if derived { Vec::new() } else { meta.changes },
                ..meta
            },
            changes_from_record: derived,
        };
        let meta_codec = if version == 1 && !derived {
            Codec::OwnRaw
        } else {
            Codec::Plain
        };
        table.push(VersionBlobs {
            meta: self
                .packs
                .append(&encode(&to_json(&stored), meta_codec, nv.raw))?,
            record: self
                .packs
                .append(&encode(nv.canonical, Codec::OwnRaw, nv.raw))?,
            raw: self.packs.append(&raw_value)?,
        });
        let batch = &mut pending.batch;
        batch.insert(key(b't', nv.nct), to_json(&state));
        batch.insert(key(b'V', nv.nct), encode_table(&table));
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
        if let Some(mut t) = self.trial(nct)? {
            t.last_seen_at = at;
            t.resolved_id = resolved_id;
            if fingerprint.is_some() {
                t.source_fingerprint = fingerprint;
            }
            t.last_error = None;
            t.last_error_at = None;
            self.db.insert(key(b't', nct), to_json(&t))?;
        }
        Ok(())
    }

    /// Record why a sync could not fetch `nct`. Stored versions are untouched.
    pub fn mark_failed(&self, nct: &NctId, at: DateTime<Utc>, error: &str) -> Result<()> {
        let mut t = self.trial(nct)?.unwrap_or_else(|| TrialState {
            nct_id: nct.clone(),
            latest_version: 0,
            record_hash: String::new(),
            first_seen_at: at,
            last_seen_at: at,
            resolved_id: None,
            last_error: None,
            last_error_at: None,
            source_fingerprint: None,
        });
        t.last_error = Some(error.to_string());
        t.last_error_at = Some(at);
        self.db.insert(key(b't', nct), to_json(&t))?;
        Ok(())
    }

    // Reads take the trial's version table as read once by the caller, so that one `history`
    // or `verify` of a trial reads its table from sled once, not once per blob.

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
            _ => Vec::new(),
        };
        decode(key, bytes, &dict)
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

    fn meta_in(
        &self,
        nct: &NctId,
        version: u32,
        table: &[VersionBlobs],
    ) -> Result<Option<VersionMeta>> {
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
        Ok(Some(meta))
    }

    fn record_in(
        &self,
        nct: &NctId,
        version: u32,
        table: &[VersionBlobs],
    ) -> Result<Option<Record>> {
        self.blob_json(nct, version, table, |e| &e.record, "record")
    }

    pub fn version(&self, nct: &NctId, version: u32) -> Result<Option<VersionMeta>> {
        self.meta_in(nct, version, &self.table(nct)?)
    }

    /// All versions of a trial, oldest first.
    pub fn versions(&self, nct: &NctId) -> Result<Vec<VersionMeta>> {
        let table = self.table(nct)?;
        (1..=table.len() as u32)
            .filter_map(|v| self.meta_in(nct, v, &table).transpose())
            .collect()
    }

    /// The version that was current at `at` (the newest detected at or before it).
    pub fn version_at(&self, nct: &NctId, at: DateTime<Utc>) -> Result<Option<VersionMeta>> {
        Ok(self
            .versions(nct)?
            .into_iter()
            .rev()
            .find(|v| v.detected_at <= at))
    }

    pub fn record(&self, nct: &NctId, version: u32) -> Result<Option<Record>> {
        self.record_in(nct, version, &self.table(nct)?)
    }

    pub fn latest_record(&self, nct: &NctId) -> Result<Option<Record>> {
        match self.trial(nct)? {
            Some(t) if t.latest_version > 0 => self.record(nct, t.latest_version),
            _ => Ok(None),
        }
    }

    /// The study JSON exactly as CT.gov sent it for `version`.
    pub fn raw(&self, nct: &NctId, version: u32) -> Result<Option<Vec<u8>>> {
        self.raw_in(nct, version, &self.table(nct)?)
    }

    fn raw_in(&self, nct: &NctId, version: u32, table: &[VersionBlobs]) -> Result<Option<Vec<u8>>> {
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
    pub fn versions_since(&self, since: DateTime<Utc>) -> Result<Vec<(NctId, VersionMeta)>> {
        let start = time_key(since, &NctId::min(), 0);
        let mut out = Vec::new();
        for kv in self.db.range(start..b"d".to_vec()).rev() {
            let (k, v) = kv?;
            let mut entries = decode_time_entries(&k, &v)?;
            entries.reverse();
            for (nct, ver) in entries {
                if let Some(meta) = self.version(&nct, ver)? {
                    out.push((nct, meta));
                }
            }
        }
        // Newest first; within one detection time, by trial and version, descending.
        out.sort_by(|a, b| {
            (b.1.detected_at, &b.0, b.1.version).cmp(&(a.1.detected_at, &a.0, a.1.version))
        });
        Ok(out)
    }

    pub fn watch_add(&self, nct: &NctId, at: DateTime<Utc>) -> Result<bool> {
        let k = key(b'W', nct);
        let entry = WatchEntry {
            nct_id: nct.clone(),
            added_at: at,
        };
        let previous =
            self.db
                .compare_and_swap(&k, None as Option<&[u8]>, Some(to_json(&entry)))?;
        Ok(previous.is_ok())
    }

    pub fn watch_remove(&self, nct: &NctId) -> Result<bool> {
        Ok(self.db.remove(key(b'W', nct))?.is_some())
    }

    pub fn watch_list(&self) -> Result<Vec<WatchEntry>> {
        self.scan_json(b"W")
    }

    /// A small named bookkeeping value (e.g. the last sync's summary).
    pub fn get_meta<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>> {
        let mut k = vec![b'm'];
        k.extend_from_slice(name.as_bytes());
        self.db.get(&k)?.map(|v| from_json(&k, &v)).transpose()
    }

    pub fn set_meta<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let mut k = vec![b'm'];
        k.extend_from_slice(name.as_bytes());
        self.db.insert(k, to_json(value))?;
        Ok(())
    }
}

/// Subscriptions and the outbox.
impl Store {
    pub fn subscription_put(&self, sub: &Subscription) -> Result<()> {
        let mut k = vec![b'S'];
        k.extend_from_slice(sub.id.as_bytes());
        self.db.insert(k, to_json(sub))?;
        Ok(())
    }

    pub fn subscription(&self, id: &str) -> Result<Option<Subscription>> {
        let mut k = vec![b'S'];
        k.extend_from_slice(id.as_bytes());
        self.db.get(&k)?.map(|v| from_json(&k, &v)).transpose()
    }

    /// Subscriptions kept in the store, by ID.
    pub fn subscriptions(&self) -> Result<Vec<Subscription>> {
        self.scan_json(b"S")
    }

    /// Remove a stored subscription and every alert it still owes, in one atomic batch.
    /// Returns `None` when there is no such stored subscription, else the alerts dropped.
    pub fn subscription_remove(&self, id: &str) -> Result<Option<usize>> {
        let mut k = vec![b'S'];
        k.extend_from_slice(id.as_bytes());
        if self.db.get(&k)?.is_none() {
            return Ok(None);
        }
        let mut batch = sled::Batch::default();
        batch.remove(k);
        let entries = self.outbox_of(id)?;
        for e in &entries {
            batch.remove(e.key());
            if !e.is_dead() {
                batch.remove(e.due_key());
            }
        }
        let mut dk = vec![b'D'];
        dk.extend_from_slice(id.as_bytes());
        batch.remove(dk);
        self.db.apply_batch(batch)?;
        Ok(Some(entries.len()))
    }

    /// When the subscription's last daily digest was sent.
    pub fn last_digest(&self, sub: &str) -> Result<Option<DateTime<Utc>>> {
        let mut k = vec![b'D'];
        k.extend_from_slice(sub.as_bytes());
        self.db.get(&k)?.map(|v| from_json(&k, &v)).transpose()
    }

    /// Turn every `g` fan-out record into per-alert entries, one atomic batch per record.
    /// Every outbox reader calls this first; it costs one empty prefix scan when there is
    /// nothing to expand.
    pub fn outbox_expand(&self) -> Result<usize> {
        if self.db.scan_prefix(b"g").next().is_none() {
            return Ok(0);
        }
        let _guard = self
            .expand_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut expanded = 0;
        for kv in self.db.scan_prefix(b"g") {
            let (k, v) = kv?;
            let fan: FanOut = from_json(&k, &v)?;
            let (nct, version) = decode_version_key(&k)?;
            let mut batch = sled::Batch::default();
            batch.remove(k.clone());
            for group in fan.groups {
                for sub in group.subscriptions {
                    let entry = OutboxEntry {
                        subscription_id: sub,
                        nct_id: nct.clone(),
                        version,
                        paths: group.paths.clone(),
                        created_at: fan.created_at,
                        window_start: fan.created_at,
                        attempts: 0,
                        next_attempt_at: group.due,
                        last_attempt_at: None,
                        last_error: None,
                        dead_at: None,
                    };
                    batch.insert(entry.due_key(), &[][..]);
                    batch.insert(entry.key(), to_json(&entry));
                    expanded += 1;
                }
            }
            self.db.apply_batch(batch)?;
        }
        Ok(expanded)
    }

    /// Every outbox entry (pending and dead), ordered by subscription, trial, version.
    pub fn outbox_all(&self) -> Result<Vec<OutboxEntry>> {
        self.outbox_expand()?;
        self.scan_entries(vec![b'o'])
    }

    /// The outbox entries of one subscription.
    pub fn outbox_of(&self, sub: &str) -> Result<Vec<OutboxEntry>> {
        self.outbox_expand()?;
        let mut p = vec![b'o'];
        p.extend_from_slice(sub.as_bytes());
        p.push(b'/');
        self.scan_entries(p)
    }

    fn scan_entries(&self, prefix: Vec<u8>) -> Result<Vec<OutboxEntry>> {
        self.scan_json(prefix)
    }

    /// Every JSON value stored under `prefix`, in key order.
    fn scan_json<T: for<'de> Deserialize<'de>>(&self, prefix: impl AsRef<[u8]>) -> Result<Vec<T>> {
        self.db
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv?;
                from_json(&k, &v)
            })
            .collect()
    }

    /// One entry by its alert id (`{subscription}.{NCT}.v{version}`).
    pub fn outbox_entry(&self, id: &str) -> Result<Option<OutboxEntry>> {
        let Some((sub, nct, version)) = parse_alert_id(id) else {
            return Ok(None);
        };
        self.outbox_expand()?;
        let mut k = vec![b'o'];
        k.extend_from_slice(&entry_tail(&sub, &nct, version));
        self.db.get(&k)?.map(|v| from_json(&k, &v)).transpose()
    }

    /// Pending entries whose next attempt is at or before `now`, soonest first: one range scan
    /// of the due index.
    pub fn outbox_due(&self, now: DateTime<Utc>) -> Result<Vec<OutboxEntry>> {
        self.outbox_expand()?;
        let mut end = vec![b'd'];
        end.extend_from_slice(&micros_key(now));
        end.push(0xff);
        let mut out = Vec::new();
        for kv in self.db.range(&b"d"[..]..end.as_slice()) {
            let (k, _) = kv?;
            let mut ok = vec![b'o'];
            ok.extend_from_slice(&k[9..]);
            // An index key without its entry can only come from a bug; skip it rather than stall.
            if let Some(v) = self.db.get(&ok)? {
                out.push(from_json(&ok, &v)?);
            }
        }
        Ok(out)
    }

    /// The soonest next attempt of any pending entry.
    pub fn outbox_next_due(&self) -> Result<Option<DateTime<Utc>>> {
        self.outbox_expand()?;
        match self.db.scan_prefix(b"d").next() {
            Some(kv) => {
                let (k, _) = kv?;
                let micros = k
                    .get(1..9)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| StoreError::Corrupt {
                        key: String::from_utf8_lossy(&k).into_owned(),
                        reason: "bad due-index key".into(),
                    })?;
                Ok(Utc.timestamp_micros((micros ^ (1 << 63)) as i64).single())
            }
            None => Ok(None),
        }
    }

    /// `(pending, dead)` counts, from key counts alone.
    pub fn outbox_counts(&self) -> Result<(usize, usize)> {
        self.outbox_expand()?;
        let mut pending = 0;
        for kv in self.db.scan_prefix(b"d") {
            kv?;
            pending += 1;
        }
        let mut total: usize = 0;
        for kv in self.db.scan_prefix(b"o") {
            kv?;
            total += 1;
        }
        Ok((pending, total.saturating_sub(pending)))
    }

    /// Replace entries (same identity, new bookkeeping) and keep the due index in step, in one
    /// atomic batch. Each pair is `(as read, as it should be)`.
    pub fn outbox_update(&self, changes: &[(OutboxEntry, OutboxEntry)]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (old, new) in changes {
            if !old.is_dead() {
                batch.remove(old.due_key());
            }
            if !new.is_dead() {
                batch.insert(new.due_key(), &[][..]);
            }
            batch.insert(new.key(), to_json(new));
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// Remove entries (delivered or dropped) and their index keys in one atomic batch;
    /// `digest_sent` also records a subscription's digest time in the same batch.
    pub fn outbox_remove(
        &self,
        entries: &[OutboxEntry],
        digest_sent: Option<(&str, DateTime<Utc>)>,
    ) -> Result<()> {
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.remove(e.key());
            if !e.is_dead() {
                batch.remove(e.due_key());
            }
        }
        if let Some((sub, at)) = digest_sent {
            let mut k = vec![b'D'];
            k.extend_from_slice(sub.as_bytes());
            batch.insert(k, to_json(&at));
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }
}

/// What [`Store::verify`] found: counts, and every broken invariant as a sentence.
#[derive(Debug, Default, Serialize)]
pub struct IntegrityReport {
    pub trials: usize,
    pub versions: usize,
    pub problems: Vec<String>,
}

impl Store {
    /// Check every invariant a crash must not break: each trial's versions are 1..=latest with
    /// no gap, each has its metadata, record and raw JSON, the latest record hashes to the
    /// trial's `record_hash`, and each version is in the time index exactly once.
    pub fn verify(&self) -> Result<IntegrityReport> {
        let mut rep = IntegrityReport::default();
        let mut indexed = std::collections::HashSet::new();
        for kv in self.db.scan_prefix(b"c") {
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
            if t.latest_version > 0 {
                match self.record_in(nct, t.latest_version, &table) {
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
        Ok(rep)
    }

    /// Whether `nct` has a stored version `version`.
    fn has_version(&self, nct: &NctId, version: u32) -> Result<bool> {
        Ok(self.entry(nct, version)?.is_some())
    }
}

impl Store {
    /// Outbox invariants: every pending entry has exactly its due-index key, every due-index
    /// key names a pending entry, and every entry references a stored version.
    fn verify_outbox(&self, rep: &mut IntegrityReport) -> Result<()> {
        let mut due = std::collections::HashSet::new();
        for kv in self.db.scan_prefix(b"d") {
            let (k, _) = kv?;
            due.insert(k.to_vec());
        }
        for kv in self.db.scan_prefix(b"g") {
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
            if !self.has_version(&e.nct_id, e.version)? {
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

impl NctId {
    /// The smallest ID, used as a range bound.
    fn min() -> NctId {
        // "NCT00000001" is valid by construction.
        "NCT00000001".parse().unwrap_or_else(|_| unreachable!())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(status: &str) -> Record {
        let mut r = Record::default();
        r.set("identification.nctId", json!("NCT02241018"));
        r.set("status.overallStatus", json!(status));
        r.set("status.lastUpdatePostDate", json!("2024-01-02"));
        r
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn version_of<'a>(nct: &'a NctId, r: &'a Record, c: &'a [u8], raw: &'a [u8]) -> NewVersion<'a> {
        NewVersion {
            nct,
            record: r,
            canonical: c,
            raw,
            changes: vec![],
            detected_at: t("2026-01-01T00:00:00Z"),
            resolved_id: None,
            source_fingerprint: None,
            alerts: vec![],
        }
    }

    #[test]
    fn one_commit_stores_many_trials_and_two_versions_of_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a: NctId = "NCT00000001".parse().unwrap();
        let b: NctId = "NCT00000002".parse().unwrap();
        let (r1, r2) = (rec("RECRUITING"), rec("COMPLETED"));
        let (c1, c2) = (r1.canonical_bytes(), r2.canonical_bytes());
        let got = store
            .commit_versions(vec![
                version_of(&a, &r1, &c1, b"{\"a\":1}"),
                version_of(&b, &r1, &c1, b"{\"b\":1}"),
                version_of(&a, &r2, &c2, b"{\"a\":2}"),
            ])
            .unwrap();
        assert_eq!(got, [1, 1, 2]);
        assert_eq!(store.record(&a, 2).unwrap().unwrap(), r2);
        assert_eq!(store.raw(&a, 1).unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(store.raw(&b, 1).unwrap().unwrap(), b"{\"b\":1}");
        let rep = store.verify().unwrap();
        assert!(rep.problems.is_empty(), "{:?}", rep.problems);
        assert!(dir.path().join("packs").read_dir().unwrap().count() >= 1);
    }

    #[test]
    fn a_first_versions_changes_are_derived_from_its_record_not_stored_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let nct: NctId = "NCT02241018".parse().unwrap();
        let mut r = rec("RECRUITING");
        r.set("eligibility.criteria", json!("Inclusion: ".repeat(500)));
        let c = r.canonical_bytes();
        let all_added = crate::diff::diff(None, &r);
        assert!(all_added.len() >= 4);
        let mut nv = version_of(&nct, &r, &c, b"{}");
        nv.changes = all_added.clone();
        store.commit_version(nv).unwrap();
        assert_eq!(store.version(&nct, 1).unwrap().unwrap().changes, all_added);
        assert_eq!(store.versions(&nct).unwrap()[0].changes, all_added);
        // The stored metadata holds no values: far smaller than the record it describes.
        let e = store.entry(&nct, 1).unwrap().unwrap();
        assert!(e.meta.len < 200, "metadata blob of {} bytes", e.meta.len);
    }

    #[test]
    fn a_format_1_store_is_migrated_and_an_interrupted_migration_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let a: NctId = "NCT02241018".parse().unwrap();
        let b: NctId = "NCT00000002".parse().unwrap();
        let (r1, r2) = (rec("RECRUITING"), rec("COMPLETED"));
        let (c1, c2) = (r1.canonical_bytes(), r2.canonical_bytes());
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .commit_versions(vec![
                    version_of(&a, &r1, &c1, b"{\"a\":1}"),
                    version_of(&b, &r1, &c1, b"{\"b\":1}"),
                    version_of(&a, &r2, &c2, b"{\"a\":2}"),
                ])
                .unwrap();
            // Rewrite trial `a` as format 1 kept it: each encoded value under its own sled key,
            // no table, no packs. Trial `b` stays migrated, as if a migration had stopped.
            for (v, e) in store.table(&a).unwrap().into_iter().zip(1u32..) {
                for (prefix, r) in [(b'v', v.meta), (b'r', v.record), (b'w', v.raw)] {
                    let bytes = store.blob(b"", &r).unwrap();
                    store.db.insert(vkey(prefix, &a, e), bytes).unwrap();
                }
            }
            store.db.remove(key(b'V', &a)).unwrap();
            store.db.insert(b"F", &1u32.to_be_bytes()).unwrap();
            store.flush().unwrap();
        }
        // `a`'s earlier blobs stay in the packs, unreferenced: the migration copies its values
        // from the sled keys.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.db.get(b"F").unwrap().unwrap().as_ref(),
            2u32.to_be_bytes()
        );
        for prefix in [b'v', b'r', b'w'] {
            assert!(store.db.scan_prefix(key(prefix, &a)).next().is_none());
        }
        assert_eq!(store.record(&a, 1).unwrap().unwrap(), r1);
        assert_eq!(store.record(&a, 2).unwrap().unwrap(), r2);
        assert_eq!(store.raw(&a, 2).unwrap().unwrap(), b"{\"a\":2}");
        assert_eq!(store.raw(&b, 1).unwrap().unwrap(), b"{\"b\":1}");
        assert_eq!(store.versions(&a).unwrap().len(), 2);
        let rep = store.verify().unwrap();
        assert!(rep.problems.is_empty(), "{:?}", rep.problems);
        assert_eq!(rep.versions, 3);
    }

    #[test]
    fn a_damaged_pack_is_reported_by_verify_and_reads_fail_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let nct: NctId = "NCT02241018".parse().unwrap();
        let r = rec("RECRUITING");
        let c = r.canonical_bytes();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .commit_version(version_of(&nct, &r, &c, b"{\"raw\":1}"))
                .unwrap();
            store.flush().unwrap();
        }
        let pack = dir.path().join("packs/000001.pack");
        let len = std::fs::metadata(&pack).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&pack)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let store = Store::open(dir.path()).unwrap();
        let problems = store.verify().unwrap().problems;
        assert!(
            problems
                .iter()
                .any(|p| p.contains("NCT02241018 v1: raw JSON")),
            "{problems:?}"
        );
        let err = store.raw(&nct, 1).unwrap_err().to_string();
        assert!(err.contains("000001.pack"), "{err}");
        // Nothing else is lost: the trial's state and the other keys still read.
        assert_eq!(store.trial(&nct).unwrap().unwrap().latest_version, 1);
    }

    #[test]
    fn versions_are_numbered_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let nct: NctId = "NCT02241018".parse().unwrap();
        for (i, status) in ["RECRUITING", "COMPLETED"].iter().enumerate() {
            let r = rec(status);
            let c = r.canonical_bytes();
            let v = store
                .commit_version(NewVersion {
                    nct: &nct,
                    record: &r,
                    canonical: &c,
                    raw: b"{\"raw\":true}",
                    changes: vec![],
                    detected_at: t(if i == 0 {
                        "2026-01-01T00:00:00Z"
                    } else {
                        "2026-02-01T00:00:00Z"
                    }),
                    resolved_id: None,
                    source_fingerprint: None,
                    alerts: vec![],
                })
                .unwrap();
            assert_eq!(v, i as u32 + 1);
        }
        let vs = store.versions(&nct).unwrap();
        assert_eq!(vs.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(vs[0].last_update_post_date.as_deref(), Some("2024-01-02"));
        assert_eq!(
            store.latest_record(&nct).unwrap().unwrap(),
            rec("COMPLETED")
        );
        assert_eq!(store.raw(&nct, 1).unwrap().unwrap(), b"{\"raw\":true}");
        assert_eq!(
            store
                .version_at(&nct, t("2026-01-15T00:00:00Z"))
                .unwrap()
                .unwrap()
                .version,
            1
        );
        assert!(
            store
                .version_at(&nct, t("2025-01-15T00:00:00Z"))
                .unwrap()
                .is_none()
        );
        let since = store.versions_since(t("2026-01-10T00:00:00Z")).unwrap();
        assert_eq!(since.len(), 1);
        assert_eq!(since[0].1.version, 2);
        assert_eq!(
            store
                .versions_since(t("2000-01-01T00:00:00Z"))
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn seen_and_failed_keep_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let nct: NctId = "NCT02241018".parse().unwrap();
        let r = rec("RECRUITING");
        let c = r.canonical_bytes();
        store
            .commit_version(NewVersion {
                nct: &nct,
                record: &r,
                canonical: &c,
                raw: b"{}",
                changes: vec![],
                detected_at: t("2026-01-01T00:00:00Z"),
                resolved_id: None,
                source_fingerprint: None,
                alerts: vec![],
            })
            .unwrap();
        store
            .mark_failed(&nct, t("2026-01-02T00:00:00Z"), "boom")
            .unwrap();
        let st = store.trial(&nct).unwrap().unwrap();
        assert_eq!(st.latest_version, 1);
        assert_eq!(st.last_error.as_deref(), Some("boom"));
        store
            .mark_seen(&nct, t("2026-01-03T00:00:00Z"), None, None)
            .unwrap();
        let st = store.trial(&nct).unwrap().unwrap();
        assert_eq!(st.last_seen_at, t("2026-01-03T00:00:00Z"));
        assert_eq!(st.last_error, None);
        assert_eq!(st.record_hash, record_hash(&c));
    }

    /// Guards the delta/dictionary encoding: every version reads back exactly, across keyframe
    /// boundaries, and a near-identical later version costs a small fraction of its raw JSON.
    #[test]
    fn delta_encoded_versions_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let nct: NctId = "NCT02241018".parse().unwrap();
        let filler: String = (0..400).map(|i| format!("criterion {i} text; ")).collect();
        let mut raws = Vec::new();
        for v in 1..=(2 * KEYFRAME_EVERY + 3) {
            let raw = format!("{{\"v\":{v},\"text\":\"{filler}\"}}");
            let mut r = rec("RECRUITING");
            r.set("description.briefSummary", json!(format!("{v} {filler}")));
            let c = r.canonical_bytes();
            let n = store
                .commit_version(NewVersion {
                    nct: &nct,
                    record: &r,
                    canonical: &c,
                    raw: raw.as_bytes(),
                    changes: vec![FieldChange {
                        path: "description.briefSummary".into(),
                        kind: crate::model::ChangeKind::Changed,
                        old: None,
                        new: Some(json!(v)),
                    }],
                    detected_at: t("2026-01-01T00:00:00Z"),
                    resolved_id: None,
                    source_fingerprint: None,
                    alerts: vec![],
                })
                .unwrap();
            assert_eq!(n, v);
            raws.push((raw, r));
        }
        for (i, (raw, r)) in raws.iter().enumerate() {
            let v = i as u32 + 1;
            assert_eq!(
                store.raw(&nct, v).unwrap().unwrap(),
                raw.as_bytes(),
                "raw v{v}"
            );
            assert_eq!(&store.record(&nct, v).unwrap().unwrap(), r, "record v{v}");
            assert_eq!(store.version(&nct, v).unwrap().unwrap().version, v);
        }
        assert_eq!(keyframe_of(1), 1);
        assert_eq!(keyframe_of(KEYFRAME_EVERY), 1);
        assert_eq!(keyframe_of(KEYFRAME_EVERY + 1), KEYFRAME_EVERY + 1);
        let stored = |v: u32| store.entry(&nct, v).unwrap().unwrap().raw.len as usize;
        assert!(
            stored(2) * 20 < raws[1].0.len(),
            "delta {} bytes",
            stored(2)
        );
        assert!(store.verify().unwrap().problems.is_empty());
    }

    #[test]
    fn format_version_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .db
                .insert(b"F", &(FORMAT_VERSION + 1).to_be_bytes())
                .unwrap();
            store.flush().unwrap();
        }
        match Store::open(dir.path()) {
            Err(StoreError::TooNew { found, .. }) => assert_eq!(found, FORMAT_VERSION + 1),
            other => panic!("expected TooNew, got {:?}", other.err()),
        }
    }

    #[test]
    fn alerts_are_stored_with_their_version_and_found_by_due_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let nct: NctId = "NCT02241018".parse().unwrap();
        let r = rec("COMPLETED");
        let c = r.canonical_bytes();
        let at = t("2026-01-01T00:00:00Z");
        let later = t("2026-01-02T00:00:00Z");
        let owed = |sub: &str, due| OwedAlert {
            subscription_id: sub.into(),
            paths: vec!["status.overallStatus".into()],
            due,
        };
        store
            .commit_version(NewVersion {
                nct: &nct,
                record: &r,
                canonical: &c,
                raw: b"{}",
                changes: vec![],
                detected_at: at,
                resolved_id: None,
                source_fingerprint: None,
                alerts: vec![owed("sub-a", at), owed("sub-b", later)],
            })
            .unwrap();
        assert_eq!(store.outbox_counts().unwrap(), (2, 0));
        assert_eq!(store.outbox_next_due().unwrap(), Some(at));
        let due = store.outbox_due(at).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id(), "sub-a.NCT02241018.v1");
        assert_eq!(store.outbox_due(later).unwrap().len(), 2);
        assert_eq!(
            store
                .outbox_entry("sub-b.NCT02241018.v1")
                .unwrap()
                .unwrap()
                .next_attempt_at,
            later
        );
        assert!(store.outbox_entry("garbage").unwrap().is_none());

        // Rescheduling moves the index key; dead letters leave the index but stay listed.
        let mut dead = due[0].clone();
        dead.dead_at = Some(at);
        store
            .outbox_update(&[(due[0].clone(), dead.clone())])
            .unwrap();
        assert_eq!(store.outbox_counts().unwrap(), (1, 1));
        assert_eq!(store.outbox_due(later).unwrap().len(), 1);
        assert!(store.verify().unwrap().problems.is_empty());

        // Removing a subscription drops what it owes, atomically.
        let b = store.outbox_entry("sub-b.NCT02241018.v1").unwrap().unwrap();
        store.outbox_remove(&[b], Some(("sub-b", later))).unwrap();
        assert_eq!(store.last_digest("sub-b").unwrap(), Some(later));
        assert_eq!(store.outbox_counts().unwrap(), (0, 1));
        store.outbox_remove(&[dead], None).unwrap();
        assert_eq!(store.outbox_all().unwrap().len(), 0);
        assert_eq!(store.outbox_next_due().unwrap(), None);
        assert!(store.verify().unwrap().problems.is_empty());
    }

    #[test]
    fn watch_list_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a: NctId = "NCT00000002".parse().unwrap();
        assert!(store.watch_add(&a, t("2026-01-01T00:00:00Z")).unwrap());
        assert!(!store.watch_add(&a, t("2026-01-02T00:00:00Z")).unwrap());
        assert_eq!(store.watch_list().unwrap().len(), 1);
        assert!(store.watch_remove(&a).unwrap());
        assert!(!store.watch_remove(&a).unwrap());
    }
}
