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
//! - `watch.rs`: the stored watch list and small named meta values.
//! - `outbox.rs`: subscriptions, fan-out records, outbox entries and their due index.
//! - `migrate.rs`: format 1 → 2.
//! - `verify.rs`: the integrity checks behind `trialwatch verify`.
//!
//! This module does not decide what changed (that is `diff`), which alerts a version owes
//! (`outbox` at the crate root) or how an alert is delivered (`notify`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod codec;
mod keys;
mod migrate;
mod outbox;
mod pack;
mod reads;
mod verify;
mod versions;
mod watch;

#[cfg(test)]
mod tests;

pub use codec::record_hash;
pub use outbox::{FanOut, FanOutGroup, OutboxEntry, OwedAlert};
pub use pack::PackError;
pub use reads::VersionRef;
pub use verify::IntegrityReport;
pub use versions::{NewVersion, TrialState};
pub use watch::WatchEntry;

use codec::from_json;
use pack::Packs;

/// The layout version this build reads and writes. Bump it with a migration in [`Store::open`].
///
/// 1: every value inside sled, one key per version and kind. 2: metadata, records and raw JSON
/// in pack files, a version table per trial, one time-index key per commit ([`Store::open`]
/// migrates 1 → 2).
pub const FORMAT_VERSION: u32 = 2;

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
    db: sled::Db,
    /// Records and raw JSON; sled holds pointers to them.
    packs: std::sync::Arc<Packs>,
    path: PathBuf,
    /// Serializes fan-out expansion, so two callers never both expand one record (which
    /// could resurrect an alert the other had already delivered).
    expand_lock: std::sync::Arc<std::sync::Mutex<()>>,
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
        // Private whatever the umask: the store holds who watches what, and webhook targets.
        create_private_dir(dir).map_err(|e| open_err(sled::Error::Io(e)))?;
        create_private_dir(&dir.join("db")).map_err(|e| open_err(sled::Error::Io(e)))?;
        let db = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::LowSpace)
            .flush_every_ms(Some(500))
            .open()
            .map_err(open_err)?;
        // sled creates its files with the process's umask; `db/` is 0700 already, and its
        // files are made 0600 too, so a later chmod of `db/` reveals nothing.
        make_private(&dir.join("db")).map_err(|e| open_err(sled::Error::Io(e)))?;
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

    /// The store directory (sled under `db/`, blobs under `packs/`).
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
}
