//! Append-only pack files for the store's large immutable values (normalized records and raw
//! CT.gov JSON).
//!
//! Why not keep them in sled: sled's log rewrites a leaf — values included — each time it
//! consolidates it, so large values cost ~1.7× their size on disk, and opening sled reads every
//! segment of its log, so a store full of blobs makes every `trialwatch history` pay for bytes it
//! never reads. Blobs are written once and never changed, so they need none of that: they are
//! appended to `packs/NNNNNN.pack`, and sled keeps a 16-byte pointer to each.
//!
//! Entry on disk: `len` (u32 LE), `crc32(payload)` (u32 LE), then `len` payload bytes.
//!
//! Durability order: [`Packs::sync`] (fdatasync) runs before the sled batch that holds the
//! pointers is applied, so no crash or power cut can leave sled pointing at bytes that never
//! reached the disk. A crash between the two leaves unreferenced bytes at a pack's tail, which
//! cost space and nothing else; later appends go after them.
//!
//! This file knows nothing of what a blob holds (encoding is [`super::codec`]) nor where its
//! pointer is kept (the version table, [`super::keys`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// A pack is closed and the next one started once it reaches this size.
const ROLL_BYTES: u64 = 256 * 1024 * 1024;

const HEADER: usize = 8;

/// Where one blob lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BlobRef {
    /// Number of the pack file (`packs/NNNNNN.pack`).
    pub(super) pack: u32,
    /// Offset of the entry's header.
    pub(super) offset: u64,
    /// Payload length.
    pub(super) len: u32,
}

impl BlobRef {
    /// Bytes of one encoded pointer.
    pub(super) const BYTES: usize = 16;

    /// The pointer as stored in a version table: pack, offset, length, big-endian.
    pub(super) fn to_bytes(self) -> [u8; Self::BYTES] {
        let mut b = [0u8; Self::BYTES];
        b[..4].copy_from_slice(&self.pack.to_be_bytes());
        b[4..12].copy_from_slice(&self.offset.to_be_bytes());
        b[12..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    /// `None` unless `bytes` is exactly one encoded pointer.
    pub(super) fn from_bytes(bytes: &[u8]) -> Option<BlobRef> {
        if bytes.len() != Self::BYTES {
            return None;
        }
        Some(BlobRef {
            pack: u32::from_be_bytes(bytes[..4].try_into().ok()?),
            offset: u64::from_be_bytes(bytes[4..12].try_into().ok()?),
            len: u32::from_be_bytes(bytes[12..].try_into().ok()?),
        })
    }
}

/// Why a blob could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Opening, reading, writing or syncing a pack file failed.
    #[error("pack {path}: {source}")]
    Io {
        /// The pack file (or the `packs/` directory).
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The bytes at a pointer are not the blob it names: short, or failing their checksum.
    #[error("pack {path} at offset {offset}: {reason}")]
    Bad {
        /// The pack file.
        path: PathBuf,
        /// Offset of the entry's header.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

struct Writer {
    pack: u32,
    file: File,
    len: u64,
    /// Appended to since the last fdatasync.
    dirty: bool,
}

/// The pack files of one store. Appends are serialized; reads are positional and concurrent.
pub(super) struct Packs {
    dir: PathBuf,
    /// Opened on the first append, so read-only commands never create files.
    writer: Mutex<Option<Writer>>,
    readers: RwLock<HashMap<u32, Arc<File>>>,
    /// Whether commits append their commit records (always, except in the benchmark that
    /// measures what they cost: `Store::set_commit_records`).
    pub(super) commit_records: std::sync::atomic::AtomicBool,
}

fn pack_name(no: u32) -> String {
    format!("{no:06}.pack")
}

impl Packs {
    /// Packs under `dir` (created on the first append).
    pub(super) fn new(dir: &Path) -> Packs {
        Packs {
            dir: dir.to_path_buf(),
            writer: Mutex::new(None),
            readers: RwLock::new(HashMap::new()),
            commit_records: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// The file of pack number `pack`.
    pub(super) fn path_of(&self, pack: u32) -> PathBuf {
        self.dir.join(pack_name(pack))
    }

    /// Numbers of the pack files present, ascending.
    fn list(&self) -> io::Result<Vec<u32>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for e in entries {
            let name = e?.file_name();
            if let Some(no) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|n| n.parse::<u32>().ok())
            {
                out.push(no);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Bytes the pack files take.
    pub(super) fn size(&self) -> io::Result<u64> {
        let mut total = 0;
        for no in self.list()? {
            total += std::fs::metadata(self.path_of(no))?.len();
        }
        Ok(total)
    }

    fn open_writer(&self, no: u32) -> io::Result<Writer> {
        super::create_private_dir(&self.dir)?;
        let path = self.path_of(no);
        let existed = path.exists();
        let file = OpenOptions::new()
            .mode(0o600)
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)?;
        if !existed {
            // Make the new file's directory entry durable before anything points into it.
            File::open(&self.dir)?.sync_all()?;
        }
        let len = file.metadata()?.len();
        Ok(Writer {
            pack: no,
            file,
            len,
            dirty: false,
        })
    }

    /// Append one blob; it is durable only after the next [`Packs::sync`].
    pub(super) fn append(&self, payload: &[u8]) -> Result<BlobRef, PackError> {
        let len = u32::try_from(payload.len()).map_err(|_| PackError::Bad {
            path: self.dir.clone(),
            offset: 0,
            reason: format!("a blob of {} bytes is larger than 4 GiB", payload.len()),
        })?;
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let io_err = |path: PathBuf| move |source| PackError::Io { path, source };
        if guard.is_none() {
            let no = self.list().map_err(io_err(self.dir.clone()))?;
            let no = no.last().copied().unwrap_or(1);
            *guard = Some(self.open_writer(no).map_err(io_err(self.path_of(no)))?);
        }
        let roll = guard.as_ref().is_some_and(|w| w.len >= ROLL_BYTES);
        if roll && let Some(old) = guard.take() {
            // Everything in a closed pack is durable, so `sync` only ever needs the open one.
            if old.dirty {
                old.file
                    .sync_data()
                    .map_err(io_err(self.path_of(old.pack)))?;
            }
            let no = old.pack + 1;
            *guard = Some(self.open_writer(no).map_err(io_err(self.path_of(no)))?);
        }
        let Some(w) = guard.as_mut() else {
            return Err(PackError::Bad {
                path: self.dir.clone(),
                offset: 0,
                reason: "no pack open for writing".into(),
            });
        };
        let mut buf = Vec::with_capacity(HEADER + payload.len());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        buf.extend_from_slice(payload);
        let offset = w.len;
        if let Err(source) = w.file.write_all_at(&buf, offset) {
            // Whatever part of the entry was written stays unreferenced; append after it.
            w.len = w.file.metadata().map_or(offset, |m| m.len().max(offset));
            return Err(PackError::Io {
                path: self.path_of(w.pack),
                source,
            });
        }
        w.len += buf.len() as u64;
        w.dirty = true;
        Ok(BlobRef {
            pack: w.pack,
            offset,
            len,
        })
    }

    /// Make every appended blob durable (fdatasync of the open pack).
    pub(super) fn sync(&self) -> Result<(), PackError> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = guard.as_mut()
            && w.dirty
        {
            w.file.sync_data().map_err(|source| PackError::Io {
                path: self.path_of(w.pack),
                source,
            })?;
            w.dirty = false;
        }
        Ok(())
    }

    fn reader(&self, pack: u32) -> Result<Arc<File>, PackError> {
        if let Some(f) = self
            .readers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pack)
        {
            return Ok(f.clone());
        }
        let path = self.path_of(pack);
        let f = Arc::new(File::open(&path).map_err(|source| PackError::Io {
            path: path.clone(),
            source,
        })?);
        self.readers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pack, f.clone());
        Ok(f)
    }

    /// Read one blob, checking its length and checksum.
    pub(super) fn read(&self, r: &BlobRef) -> Result<Vec<u8>, PackError> {
        let file = self.reader(r.pack)?;
        let path = || self.path_of(r.pack);
        let bad = |reason: String| PackError::Bad {
            path: path(),
            offset: r.offset,
            reason,
        };
        let mut buf = vec![0u8; HEADER + r.len as usize];
        file.read_exact_at(&mut buf, r.offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                bad(format!("the pack ends before this {}-byte entry", r.len))
            } else {
                PackError::Io {
                    path: path(),
                    source: e,
                }
            }
        })?;
        let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if len != r.len {
            return Err(bad(format!(
                "entry length {len}, but the store expects {}",
                r.len
            )));
        }
        let payload = buf.split_off(HEADER);
        if crc32fast::hash(&payload) != crc {
            return Err(bad("checksum mismatch".into()));
        }
        Ok(payload)
    }
}

/// First payload byte of a commit record (see `repair.rs`). A blob's first byte is its codec
/// tag (0 to 3), so a scan tells the two apart.
pub(super) const COMMIT_TAG: u8 = 0xC1;

/// The largest entry a scan reads: anything claiming more is a damaged header.
const MAX_SCANNED_ENTRY: u64 = 1 << 30;

/// One commit record found by [`Packs::scan_commits`]: where it is and its payload (after the
/// tag byte).
pub(super) struct FoundCommit {
    /// Pack number.
    pub(super) pack: u32,
    /// Offset of the entry's header.
    pub(super) offset: u64,
    /// The record, tag byte removed.
    pub(super) payload: Vec<u8>,
}

impl Packs {
    /// Where the next append goes, `(pack, offset)`, if a pack is open for writing.
    pub(super) fn end(&self) -> Option<(u32, u64)> {
        let guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|w| (w.pack, w.len))
    }

    /// Every commit record from `from` (`(pack, offset)`; the start when `None`) to the end of
    /// the last pack, in order. Every entry's length and checksum are checked; where they do
    /// not hold (the unreferenced remains of a write that failed, or damage) the scan moves on
    /// byte by byte to the next entry that checks out, and `skipped` counts the bytes passed
    /// over. Memory: one entry at a time.
    pub(super) fn scan_commits(
        &self,
        from: Option<(u32, u64)>,
        skipped: &mut u64,
    ) -> Result<Vec<FoundCommit>, PackError> {
        let io_err = |path: PathBuf| move |source| PackError::Io { path, source };
        let (first, start) = from.unwrap_or((0, 0));
        let mut out = Vec::new();
        for no in self.list().map_err(io_err(self.dir.clone()))? {
            if no < first {
                continue;
            }
            let path = self.path_of(no);
            let file = File::open(&path).map_err(io_err(path.clone()))?;
            let size = file.metadata().map_err(io_err(path.clone()))?.len();
            let mut offset = if no == first { start } else { 0 };
            let mut header = [0u8; HEADER];
            let mut buf = Vec::new();
            while offset + HEADER as u64 <= size {
                file.read_exact_at(&mut header, offset)
                    .map_err(io_err(path.clone()))?;
                let len = u64::from(u32::from_le_bytes([
                    header[0], header[1], header[2], header[3],
                ]));
                let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
                let whole = len > 0
                    && len <= MAX_SCANNED_ENTRY
                    && offset + HEADER as u64 + len <= size
                    && {
                        buf.resize(len as usize, 0);
                        file.read_exact_at(&mut buf, offset + HEADER as u64)
                            .map_err(io_err(path.clone()))?;
                        crc32fast::hash(&buf) == crc
                    };
                if !whole {
                    *skipped += 1;
                    offset += 1;
                    continue;
                }
                if buf.first() == Some(&COMMIT_TAG) {
                    out.push(FoundCommit {
                        pack: no,
                        offset,
                        payload: buf[1..].to_vec(),
                    });
                }
                offset += HEADER as u64 + len;
            }
            if offset < size {
                *skipped += size - offset;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_across_reopen_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::new(dir.path());
        assert_eq!(
            packs.size().unwrap(),
            0,
            "nothing is created before an append"
        );
        let a = packs.append(b"first blob").unwrap();
        let b = packs.append(&vec![7u8; 100_000]).unwrap();
        packs.sync().unwrap();
        assert_eq!(packs.read(&a).unwrap(), b"first blob");
        assert_eq!(BlobRef::from_bytes(&b.to_bytes()), Some(b));
        drop(packs);

        // Reopened: appends continue after the existing bytes, old pointers still read.
        let packs = Packs::new(dir.path());
        let c = packs.append(b"third").unwrap();
        assert!(c.offset > b.offset);
        assert_eq!(packs.read(&b).unwrap(), vec![7u8; 100_000]);
        assert_eq!(packs.read(&c).unwrap(), b"third");

        // A flipped byte and a pointer past the end are errors, not wrong data.
        let path = packs.path_of(a.pack);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 2] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let fresh = Packs::new(dir.path());
        assert!(matches!(fresh.read(&a), Err(PackError::Bad { .. })));
        let past = BlobRef {
            offset: bytes.len() as u64,
            ..c
        };
        assert!(fresh.read(&past).is_err());
        assert_eq!(BlobRef::from_bytes(b"short"), None);
    }

    #[test]
    fn a_scan_finds_commit_records_past_the_remains_of_a_failed_write() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::new(dir.path());
        packs.append(b"\x01blob").unwrap();
        let mut first = vec![COMMIT_TAG];
        first.extend_from_slice(b"one");
        packs.append(&first).unwrap();
        packs.sync().unwrap();
        // A write cut short (a full disk): a header claiming 1000 bytes, and only 10 of them.
        let path = packs.path_of(1);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        use std::io::Write;
        f.write_all(&1000u32.to_le_bytes()).unwrap();
        f.write_all(&[0u8; 14]).unwrap();
        drop(f);
        drop(packs);
        let packs = Packs::new(dir.path());
        let mut second = vec![COMMIT_TAG];
        second.extend_from_slice(b"two");
        packs.append(&second).unwrap();
        packs.sync().unwrap();

        let mut skipped = 0;
        let found = packs.scan_commits(None, &mut skipped).unwrap();
        let payloads: Vec<&[u8]> = found.iter().map(|f| f.payload.as_slice()).collect();
        assert_eq!(payloads, [b"one".as_slice(), b"two".as_slice()]);
        assert_eq!(
            skipped, 18,
            "the cut-short entry is passed over byte by byte"
        );
        // From the second record's position, only it.
        let from = Some((found[1].pack, found[1].offset));
        let again = packs.scan_commits(from, &mut skipped).unwrap();
        assert_eq!(again.len(), 1);
    }
}
