//! Versioned snapshots in sled: the only module that knows sled and the key encodings.
//!
//! Everything but the large blobs lives in one sled tree so that one `apply_batch` — which sled applies
//! atomically — can write a new version, its changes, its bookkeeping and (later) the alerts it
//! owes. A process killed at any instant leaves the old state or the new one, never a half.
//!
//! A version's metadata, record and raw JSON never change once written, and are the bulk of
//! the data, so they live outside sled, appended to pack files under `packs/` (`pack.rs`); sled
//! keeps one small version table per trial and one time-index key per commit. That keeps sled
//! small (a few bytes per version), and sled's open — which every command pays, and which reads
//! all of sled's log — quick. A commit makes the pack bytes durable before it applies the sled
//! batch that points to them.
//!
//! The rest of the crate sees only [`Store`]'s methods — open, commit (one atomic batch), reads,
//! the watch list, meta values, subscriptions and the outbox — never sled (only `StoreError`
//! carries a sled error as its source), so a second backend would be added inside this folder. Where things are:
//!
//! - this file: the [`Store`] handle, open (format check), flush, size, [`StoreError`].
//! - `keys.rs`: the key layout (the table of every key and its value) and key encodings.
//! - `codec.rs`: how a blob is compressed (zstd, dictionaries, keyframes) and [`record_hash`].
//! - `pack.rs`: the append-only pack files that hold the blobs.
//! - `versions.rs`: committing new versions; [`TrialState`].
//! - `reads.rs`: reading versions back, and the time index ([`VersionRef`]).
//! - `list_rows.rs`: each trial's line of the web view's list, written with its head.
//! - `walk.rs`: one trial's whole timeline, each blob decoded once (`export`).
//! - `watch.rs`: the stored watch list and small named meta values.
//! - `outbox.rs`: subscriptions, fan-out records, outbox entries and their due index.
//! - `deadlines.rs`: what the daily deadline evaluation told about each trial.
//! - `queries.rs`: watched queries, their members (entered/left) and run state.
//! - `trial_value.rs`: a trial's `T` value, its state and version table in binary.
//! - `heads.rs`: the heads file, every trial's `T` value outside sled, for reads of one trial.
//! - `migrate.rs`: format 1 → 2 → 3 → 4 → 5.
//! - `verify.rs`: the integrity checks behind `trialwatch verify`.
//!
//! This module does not decide what changed (that is `diff`), which alerts a version owes
//! (`outbox` at the crate root) or how an alert is delivered (`notify`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::NctId;

mod codec;
mod deadlines;
mod heads;
mod keys;
mod list_rows;
mod migrate;
mod outbox;
mod pack;
mod queries;
mod reads;
mod repair;
mod trial_value;
mod verify;
mod versions;
mod walk;
mod watch;

#[cfg(test)]
mod tests;

pub use codec::{raw_hash, record_hash};
pub use list_rows::{ListRow, row_key};
pub use outbox::{FanOut, FanOutGroup, OutboxEntry, OwedAlert};
pub use pack::PackError;
pub use queries::{Member, QueryState};
pub use reads::VersionRef;
pub use repair::{RepairReport, repair};
pub use verify::{IntegrityReport, verify_dir};
pub use versions::{NewVersion, TrialState};
pub use watch::WatchEntry;

use codec::from_json;
use pack::Packs;

/// The layout version this build reads and writes. Bump it with a migration in [`Store::open`].
///
/// 1: every value inside sled, one key per version and kind. 2: metadata, records and raw JSON
/// in pack files, a version table per trial, one time-index key per commit. 3: keyframe raw
/// JSON compressed with the CT.gov dictionary (codec tag 4), the raw-bytes hash in the trial
/// state. 4: each trial's state and version table in one compact binary `T` value instead of
/// `t` JSON and `V`. 5: the same index, with the heads file beside it (`heads.rs`), which a
/// format-4 build would leave out of date ([`Store::open`] migrates 1 → … → 5, see `migrate.rs`).
pub const FORMAT_VERSION: u32 = 5;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened: most often another process holds its lock (the daemon
    /// waits for this one while a CLI command finishes).
    #[error(
        "cannot open the store at {path}: {source}; check that the directory is writable and that \
         no other trialwatch process (a running daemon?) has it open"
    )]
    Open {
        /// The store directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
    #[error(
        "the store at {path} has format version {found}, but this trialwatch understands only up \
         to {supported}; upgrade trialwatch (the store was not changed)"
    )]
    /// A newer trialwatch wrote the store; this one refuses to touch it.
    TooNew {
        /// The store directory.
        path: PathBuf,
        /// The store's format version.
        found: u32,
        /// [`FORMAT_VERSION`] of this build.
        supported: u32,
    },
    #[error(
        "the store at {path} holds data but no format version; it was not written by trialwatch"
    )]
    /// The directory holds a sled database that trialwatch did not create.
    Foreign {
        /// The store directory.
        path: PathBuf,
    },
    #[error("store I/O failed: {0}")]
    /// A read or write of the sled database failed.
    Sled(#[from] sled::Error),
    #[error("store entry {key} is corrupt: {reason}")]
    /// A stored value does not decode: the store was damaged (see `trialwatch verify`).
    Corrupt {
        /// The entry, as text (a key, or a blob's label such as `NCT… v3 record`).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    #[error("store blob I/O failed: {0}")]
    /// A pack file could not be written or synced.
    Pack(#[from] PackError),
    /// A write hit a full disk. The commit order (packs first, then one atomic sled batch)
    /// means nothing already stored changed; the user needs to know where space is needed.
    #[error(
        "the disk holding the store {path} is full ({free} free); free some space there and run \
         the command again (nothing already stored was changed)"
    )]
    DiskFull {
        /// The store directory.
        path: PathBuf,
        /// Free space on its file system, for people (`12.0 KiB`), or `unknown`.
        free: String,
    },
    /// The index (`db/`) is gone while the packs still hold versions: opening it as a new,
    /// empty store would start every trial again at version 1.
    #[error(
        "the store's index {path}/db is missing, but its packs hold stored versions; run \
         `trialwatch repair` to rebuild the index from the packs (nothing was written)"
    )]
    IndexMissing {
        /// The store directory.
        path: PathBuf,
    },
    /// The index disagrees with the packs (it lost commits the packs record): writing to it
    /// would build on a rolled-back state.
    #[error(
        "the store's index {path}/db is damaged: {reason}; run `trialwatch repair` to rebuild it \
         from the packs (nothing was written)"
    )]
    IndexDamaged {
        /// The store directory.
        path: PathBuf,
        /// What disagrees.
        reason: String,
    },
}

impl StoreError {
    /// Whether a full disk caused this error (`ENOSPC` anywhere in its chain).
    fn is_disk_full(&self) -> bool {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && is_enospc(io)
            {
                return true;
            }
            if let Some(sled::Error::Io(io)) = e.downcast_ref::<sled::Error>()
                && is_enospc(io)
            {
                return true;
            }
            cur = e.source();
        }
        false
    }
}

fn is_enospc(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28)
}

/// Free space on the file system holding `dir`, for people.
fn free_space(dir: &Path) -> String {
    match fs4::available_space(dir) {
        Ok(b) if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        Ok(b) if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        Ok(b) => format!("{b} bytes"),
        Err(_) => "unknown".into(),
    }
}

/// The result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A [`StoreError::Corrupt`] naming `key`.
fn corrupt(key: &[u8], reason: String) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    }
}

/// The store handle. Cheap to clone (sled handles are reference-counted).
#[derive(Clone)]
pub struct Store {
    /// sled, opened at once by every open but [`Store::open_heads`], which opens it on first
    /// use (see [`Store::db`]).
    index: std::sync::Arc<Index>,
    /// Records and raw JSON; sled holds pointers to them.
    packs: std::sync::Arc<Packs>,
    path: PathBuf,
    /// The heads file's reader (in a store opened by [`Store::open_heads`]) and whether the
    /// file on disk is current (`heads.rs`).
    heads: std::sync::Arc<HeadsState>,
    /// Serializes fan-out expansion, so two callers never both expand one record (which
    /// could resurrect an alert the other had already delivered).
    expand_lock: std::sync::Arc<std::sync::Mutex<()>>,
}

/// The sled database behind a [`Store`], and the private copy a read-only open works on.
#[derive(Default)]
struct Index {
    db: std::sync::OnceLock<sled::Db>,
    /// The private copy of `db/` a read-only open works on (see [`Store::open_read_only`]);
    /// removed when the last handle goes.
    scratch: std::sync::OnceLock<std::sync::Arc<tempfile::TempDir>>,
    /// Held while sled is opened on first use, so two threads never both open it.
    opening: std::sync::Mutex<()>,
}

/// sled for one write ([`Store::writing`]): holds the heads lock, so that no heads file is
/// written from a state this write is changing.
struct Writing<'a> {
    db: &'a sled::Db,
    _heads: std::sync::MutexGuard<'a, bool>,
}

impl std::ops::Deref for Writing<'_> {
    type Target = sled::Db;
    fn deref(&self) -> &sled::Db {
        self.db
    }
}

/// What a [`Store`] knows of its heads file (`heads.rs`).
struct HeadsState {
    /// Where `T` values are read from instead of sled, in a store opened by
    /// [`Store::open_heads`]; dropped from use on the first damage it reports.
    reader: Option<heads::Reader>,
    reader_ok: std::sync::atomic::AtomicBool,
    /// Whether the file on disk describes this store's `T` values now. Held (locked) across
    /// every write to sled, which removes the file first, and across [`Store::publish_heads`].
    current: std::sync::Mutex<bool>,
    /// A store whose writes never reach the data directory (a read-only open's copy): it
    /// neither removes nor writes the heads file.
    private_copy: bool,
}

impl HeadsState {
    /// `reader` is read from at once when `read`; `current` says the file on disk is.
    fn new(
        reader: Option<heads::Reader>,
        read: bool,
        current: bool,
        private_copy: bool,
    ) -> HeadsState {
        HeadsState {
            reader_ok: std::sync::atomic::AtomicBool::new(read && reader.is_some()),
            reader,
            current: std::sync::Mutex::new(current),
            private_copy,
        }
    }
}

/// sled's page cache for one-shot commands: enough to keep a sync's working set of tree nodes.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// sled's page cache for the long-running daemon, which idles between daily syncs and should hold
/// little memory while it does; reads then come from the OS page cache, which is shared.
pub const DAEMON_CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// Create `path` (and missing parents) with mode 0700; an existing directory is left as is.
pub(crate) fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Make `dir` and everything in it private: directories 0700, files 0600.
fn make_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            make_private(&entry.path())?;
        } else if kind.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// sled's settings, the same for the store and for a read-only copy of its index.
fn sled_config(db: &Path, cache_bytes: u64) -> sled::Config {
    sled::Config::new()
        .path(db)
        .cache_capacity(cache_bytes)
        .mode(sled::Mode::LowSpace)
        .flush_every_ms(Some(500))
}

/// A sled open error as a [`StoreError`]: one that found damaged bytes says the index is
/// damaged (and how to rebuild it), anything else is [`StoreError::Open`].
fn damaged_or(dir: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::IndexDamaged {
            path: dir.to_path_buf(),
            reason: format!("sled cannot read it ({e})"),
        },
        source => StoreError::Open {
            path: dir.to_path_buf(),
            source,
        },
    }
}

/// Whether `dir/db` holds a sled database (its `db` file).
fn index_present(dir: &Path) -> bool {
    dir.join("db").join("db").is_file()
}

/// Whether `dir/packs` holds any pack bytes (stored versions an index should point to).
fn packs_hold_data(dir: &Path) -> bool {
    Packs::new(&dir.join("packs")).size().is_ok_and(|n| n > 0)
}

/// Remove the snapshots sled was writing when it stopped: a `snap.*.generating` is never
/// complete (sled renames it once written), and sled 0.34 fails every later open on one
/// ("Read corrupted data") — which is what a full disk during a sync used to leave behind.
fn remove_unfinished_snapshots(db: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(db) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::info!(file = %entry.path().display(), "removing an unfinished sled snapshot");
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// A private temporary copy of the index `db` (without unfinished snapshots), under
/// `$TMPDIR` or, when that cannot hold it (the same full disk), `/dev/shm`.
fn scratch_copy(db: &Path) -> std::io::Result<tempfile::TempDir> {
    let mut last = None;
    for base in [std::env::temp_dir(), PathBuf::from("/dev/shm")] {
        let attempt = tempfile::Builder::new()
            .prefix("trialwatch-index-")
            .tempdir_in(&base)
            .and_then(|t| copy_tree(db, &t.path().join("db")).map(|()| t));
        match attempt {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary directory")))
}

/// Copy the directory tree `from` to `to` (created 0700), skipping unfinished snapshots.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    create_private_dir(to)?;
    let entries = match std::fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".generating") {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(&name))?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

impl Store {
    /// A handle on the open sled `db` of the store in `dir`; `scratch` is the private copy it
    /// was opened from, for a read-only open.
    fn with_db(
        dir: &Path,
        db: sled::Db,
        scratch: Option<std::sync::Arc<tempfile::TempDir>>,
    ) -> Store {
        let index = Index::default();
        let private_copy = scratch.is_some();
        let _ = index.db.set(db);
        if let Some(s) = scratch {
            let _ = index.scratch.set(s);
        }
        // A heads file that reads is taken as current: every write removes it first. Its
        // reader is kept for a read command's handle ([`Store::reading_heads`]).
        let reader = heads::Reader::open(dir, FORMAT_VERSION).ok().flatten();
        let current = private_copy || reader.is_some();
        Store {
            index: std::sync::Arc::new(index),
            packs: std::sync::Arc::new(Packs::new(&dir.join("packs"))),
            path: dir.to_path_buf(),
            heads: std::sync::Arc::new(HeadsState::new(reader, false, current, private_copy)),
            expand_lock: Default::default(),
        }
    }

    /// Open the store in `dir` for reading one trial at a time without opening sled: `T` values
    /// come from the heads file (`heads.rs`), blobs from the packs, and sled is opened (as
    /// [`Store::open_for_reading`] does) only if something else is asked for. `None` when the
    /// store has no usable heads file (none yet, or a writer is at work): open it another way.
    pub fn open_heads(dir: &Path) -> Option<Store> {
        match heads::Reader::open(dir, FORMAT_VERSION) {
            Ok(Some(reader)) => Some(Store {
                index: Default::default(),
                packs: std::sync::Arc::new(Packs::new(&dir.join("packs"))),
                path: dir.to_path_buf(),
                heads: std::sync::Arc::new(HeadsState::new(Some(reader), true, true, false)),
                expand_lock: Default::default(),
            }),
            Ok(None) => None,
            Err(why) => {
                tracing::warn!(store.path = %dir.display(), "the store's heads file is not usable ({why}); reading its index instead");
                None
            }
        }
    }

    /// This freshly opened handle, reading `T` values from the heads file while it is current
    /// (a read command's: sled's pages for 1,000 trials cost more than 1,000 lookups there).
    /// The reader is the one the open found, used only while no write (a migration, say)
    /// has removed the file since.
    fn reading_heads(self) -> Store {
        let current = self.heads.current.lock().unwrap_or_else(|p| p.into_inner());
        if *current && self.heads.reader.is_some() {
            self.heads
                .reader_ok
                .store(true, std::sync::atomic::Ordering::Release);
        }
        drop(current);
        self
    }

    /// sled, opened now if this handle came from [`Store::open_heads`] and has not needed it yet.
    fn db(&self) -> Result<&sled::Db> {
        if let Some(db) = self.index.db.get() {
            return Ok(db);
        }
        let _opening = self.index.opening.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = self.index.db.get() {
            return Ok(db);
        }
        let full = Store::open_for_reading(&self.path)?;
        if let Some(s) = full.index.scratch.get() {
            let _ = self.index.scratch.set(s.clone());
        }
        let db = full.db()?.clone();
        Ok(self.index.db.get_or_init(|| db))
    }

    /// The heads file's reader, while this handle reads from it.
    fn heads_reader(&self) -> Option<&heads::Reader> {
        self.heads.reader.as_ref().filter(|_| {
            self.heads
                .reader_ok
                .load(std::sync::atomic::Ordering::Acquire)
        })
    }

    /// The `T` value under `k` (the key of `nct`): from the heads file when this handle reads
    /// one, else from sled.
    fn t_get(&self, k: &[u8], nct: &NctId) -> Result<Option<sled::IVec>> {
        if let Some(r) = self.heads_reader() {
            match r.get(nct.number()) {
                Ok(v) => return Ok(v.map(sled::IVec::from)),
                Err(why) => self.heads_damaged(&why),
            }
        }
        Ok(self.db()?.get(k)?)
    }

    /// Stop reading the heads file, which `why` says is damaged: sled answers from now on.
    fn heads_damaged(&self, why: &str) {
        self.heads
            .reader_ok
            .store(false, std::sync::atomic::Ordering::Release);
        tracing::warn!(store.path = %self.path.display(), "the store's heads file is damaged ({why}); reading its index instead");
    }

    /// What `status` reads besides the trials, from the heads file when this handle reads one.
    fn heads_facts(&self) -> Option<&heads::Facts> {
        match self.heads_reader()?.facts() {
            Ok(f) => Some(f),
            Err(why) => {
                self.heads_damaged(&why);
                None
            }
        }
    }

    /// The time-index entries at or after `since` from the heads file, when this handle reads
    /// one and it covers `since` (`None`: read sled's).
    fn heads_time_entries(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Option<Vec<heads::TimeEntry>> {
        match self
            .heads_reader()?
            .time_entries_since(keys::micros_key(since))
        {
            Ok(found) => found,
            Err(why) => {
                self.heads_damaged(&why);
                None
            }
        }
    }

    /// sled, for a write: the heads file, which the write would leave out of date, is removed
    /// first (see `heads.rs`), and none is written while the returned guard lives — use it in
    /// one statement (`self.writing()?.insert(…)?`), never while holding another.
    fn writing(&self) -> Result<Writing<'_>> {
        let db = self.db()?;
        let mut current = self.heads.current.lock().unwrap_or_else(|p| p.into_inner());
        if !self.heads.private_copy {
            if *current {
                heads::remove(&self.path)
                    .map_err(|e| self.disk_full_or(StoreError::Sled(sled::Error::Io(e))))?;
                *current = false;
            }
            self.heads
                .reader_ok
                .store(false, std::sync::atomic::Ordering::Release);
        }
        Ok(Writing {
            db,
            _heads: current,
        })
    }

    /// Write the heads file (`heads.rs`) if the one on disk is not current: after a write
    /// command, so that later reads of one trial need not open sled. Flushes first, so that the
    /// file never describes a state sled could still lose. Returns whether it wrote one. Call
    /// it when no commit runs (a command's end, the daemon's stop).
    pub fn publish_heads(&self) -> Result<bool> {
        let Some(db) = self.index.db.get() else {
            // sled never opened: nothing was written through this handle.
            return Ok(false);
        };
        if self.heads.private_copy {
            return Ok(false);
        }
        let mut current = self.heads.current.lock().unwrap_or_else(|p| p.into_inner());
        if *current {
            return Ok(false);
        }
        self.flush()?;
        let values = db.scan_prefix(b"T").map(|kv| {
            let (k, v) = kv?;
            let nct =
                keys::nct_of(&k).ok_or_else(|| corrupt(&k, "its key is not an NCT ID".into()))?;
            Ok((nct.number(), v))
        });
        let from = chrono::Utc::now() - chrono::Duration::days(heads::RECENT_DAYS);
        let recent = heads::Recent {
            from: keys::micros_key(from),
            entries: db
                .range(keys::time_key(from, &NctId::min(), 0)..b"d".to_vec())
                .map(|kv| Ok(kv?)),
        };
        let facts = heads::Facts {
            meta: db
                .scan_prefix(b"m")
                .map(|kv| {
                    let (k, v) = kv?;
                    let text = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
                    match (text(&k[1..]), text(&v)) {
                        (Some(name), Some(value)) => Ok((name, value)),
                        _ => Err(corrupt(&k, "a meta entry that is not text".into())),
                    }
                })
                .collect::<Result<_>>()?,
            // Fan-outs not yet expanded into entries: `status` expands them, so it asks sled.
            outbox: if db.scan_prefix(b"g").next().is_none() {
                let pending = db.scan_prefix(b"d").count() as u64;
                let total = db.scan_prefix(b"o").count() as u64;
                Some((pending, total.saturating_sub(pending)))
            } else {
                None
            },
        };
        heads::write(&self.path, FORMAT_VERSION, values, recent, &facts)
            .map_err(|e| self.disk_full_or(e))?;
        *current = true;
        Ok(true)
    }

    /// Open (creating if needed) the store in `dir`, checking its format version.
    pub fn open(dir: &Path) -> Result<Store> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Like [`Store::open`], with sled's page cache limited to `cache_bytes`.
    ///
    /// Refuses ([`StoreError::IndexMissing`], [`StoreError::IndexDamaged`]) an index that is
    /// gone or lost commits the packs record, before writing anything, so that no command
    /// builds on it; `trialwatch repair` rebuilds it.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Store> {
        Self::open_writable(dir, cache_bytes).map_err(|e| {
            if e.is_disk_full() {
                StoreError::DiskFull {
                    path: dir.to_path_buf(),
                    free: free_space(dir),
                }
            } else {
                e
            }
        })
    }

    fn open_writable(dir: &Path, cache_bytes: u64) -> Result<Store> {
        let open_err = |source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        };
        if !index_present(dir) && packs_hold_data(dir) {
            return Err(StoreError::IndexMissing {
                path: dir.to_path_buf(),
            });
        }
        // Private whatever the umask: the store holds who watches what, and webhook targets.
        create_private_dir(dir).map_err(|e| open_err(sled::Error::Io(e)))?;
        create_private_dir(&dir.join("db")).map_err(|e| open_err(sled::Error::Io(e)))?;
        remove_unfinished_snapshots(&dir.join("db")).map_err(|e| open_err(sled::Error::Io(e)))?;
        let db = sled_config(&dir.join("db"), cache_bytes)
            .open()
            .map_err(|e| damaged_or(dir, e))?;
        // sled creates its files with the process's umask; `db/` is 0700 already, and its
        // files are made 0600 too, so a later chmod of `db/` reveals nothing.
        make_private(&dir.join("db")).map_err(|e| open_err(sled::Error::Io(e)))?;
        let store = Store::with_db(dir, db, None);
        match store.format()? {
            Some(found) => {
                store.migrate_from(found)?;
                store.check_recent_commits()?;
            }
            None => {
                if packs_hold_data(dir) {
                    return Err(StoreError::IndexMissing {
                        path: dir.to_path_buf(),
                    });
                }
                store.set_format(FORMAT_VERSION)?;
            }
        }
        Ok(store)
    }

    /// Open the store without changing a byte of it, for `verify` and for read commands on a
    /// store that cannot be written (a full disk, a read-only mount, another user's files).
    ///
    /// Why a copy: sled 0.34 has no read-only mode, and its open writes (it recovers its log
    /// and may write a snapshot, which on a full disk left an unfinished `snap.*.generating`
    /// that broke every later open). The index is small — blobs live in the packs, which are
    /// only read here — so `db/` is copied into a private temporary directory (`$TMPDIR`, then
    /// `/dev/shm`) and sled opens the copy; the packs are read in place. Nothing written
    /// through this handle reaches the store, and read commands write nothing.
    pub fn open_read_only(dir: &Path) -> Result<Store> {
        if !index_present(dir) {
            if packs_hold_data(dir) {
                return Err(StoreError::IndexMissing {
                    path: dir.to_path_buf(),
                });
            }
            if !dir.exists() {
                return Err(StoreError::Open {
                    path: dir.to_path_buf(),
                    source: sled::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no store there yet (run `trialwatch sync` first)",
                    )),
                });
            }
        }
        let scratch = scratch_copy(&dir.join("db")).map_err(|e| StoreError::Open {
            path: dir.to_path_buf(),
            source: sled::Error::Io(e),
        })?;
        let db = sled_config(&scratch.path().join("db"), DEFAULT_CACHE_BYTES)
            .open()
            .map_err(|e| damaged_or(dir, e))?;
        let store = Store::with_db(dir, db, Some(std::sync::Arc::new(scratch)));
        match store.format()? {
            None if !store.db()?.is_empty() => {
                return Err(StoreError::Foreign {
                    path: dir.to_path_buf(),
                });
            }
            // An older layout is brought up to date in the private copy only.
            Some(found) if found < FORMAT_VERSION => store.migrate_copy_from(found)?,
            _ => {}
        }
        Ok(store)
    }

    /// Open for a read command: the store itself when it can be written, else (a full disk, a
    /// read-only mount, no write permission) the private copy of [`Store::open_read_only`].
    pub fn open_for_reading(dir: &Path) -> Result<Store> {
        // Below this much free space sled's own open could fill the disk.
        const LOW_SPACE: u64 = 16 << 20;
        let low = fs4::available_space(dir).is_ok_and(|free| free < LOW_SPACE);
        if low {
            return Self::open_read_only(dir).map(Store::reading_heads);
        }
        let opened = match Self::open(dir) {
            Err(StoreError::Open {
                source: sled::Error::Io(e),
                ..
            }) if matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::ReadOnlyFilesystem
                    | std::io::ErrorKind::StorageFull
            ) || matches!(e.raw_os_error(), Some(1 | 13 | 28 | 30)) =>
            {
                Self::open_read_only(dir)
            }
            other => other,
        };
        opened.map(Store::reading_heads)
    }

    /// The stored format version (`None` in an empty index); refuses a newer one.
    fn format(&self) -> Result<Option<u32>> {
        let Some(v) = self.db()?.get(b"F")? else {
            if self.db()?.is_empty() {
                return Ok(None);
            }
            return Err(StoreError::Foreign {
                path: self.path.clone(),
            });
        };
        let found =
            v.as_ref()
                .try_into()
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    key: "F".into(),
                    reason: "format version is not 4 bytes".into(),
                })?;
        if found > FORMAT_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        Ok(Some(found))
    }

    /// `e`, or [`StoreError::DiskFull`] naming the store and its free space when a full disk
    /// caused it.
    pub(super) fn disk_full_or(&self, e: StoreError) -> StoreError {
        if e.is_disk_full() {
            StoreError::DiskFull {
                path: self.path.clone(),
                free: free_space(&self.path),
            }
        } else {
            e
        }
    }

    /// The store directory (sled under `db/`, blobs under `packs/`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.packs.sync()?;
        self.db()?.flush()?;
        Ok(())
    }

    /// Bytes the store takes on disk: sled (its log and blob files, as sled counts them), the
    /// pack files and the heads file. Read from the file system, so it needs no open sled.
    pub fn size_on_disk(&self) -> Result<u64> {
        let io = |path: PathBuf| move |source| StoreError::Pack(PackError::Io { path, source });
        let packs = self.packs.size().map_err(io(self.path.join("packs")))?;
        let len = |p: &Path| match std::fs::metadata(p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        };
        let db = match self.index.scratch.get() {
            Some(copy) => copy.path().join("db"),
            None => self.path.join("db"),
        };
        let mut sled = len(&db.join("db")).map_err(io(db.clone()))?;
        if let Ok(blobs) = std::fs::read_dir(db.join("blobs")) {
            for b in blobs.flatten() {
                sled += b.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        let heads = len(&self.path.join(heads::FILE)).map_err(io(self.path.clone()))?;
        Ok(sled + packs + heads)
    }

    /// The JSON value stored under `k`, if any (a value that does not parse is an error that
    /// names the key).
    fn get_json<T: for<'de> Deserialize<'de>>(&self, k: &[u8]) -> Result<Option<T>> {
        self.db()?.get(k)?.map(|v| from_json(k, &v)).transpose()
    }

    /// Every JSON value stored under `prefix`, in key order.
    fn scan_json<T: for<'de> Deserialize<'de>>(&self, prefix: impl AsRef<[u8]>) -> Result<Vec<T>> {
        self.db()?
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv?;
                from_json(&k, &v)
            })
            .collect()
    }
}
