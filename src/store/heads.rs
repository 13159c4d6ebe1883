//! The heads file (`heads` beside `db/`, store format 5): every trial's `T` value, the recent
//! time index and what `status` shows, copied out of sled into one file, so that `history`,
//! `show`, `diff`, `changes` and `status` read without opening sled.
//!
//! Why: sled 0.34's open recovers its whole log and page table and starts its I/O thread pool
//! whatever one reads afterwards — 20–28 ms at 100,000 trials against 4–11 ms at 10,000 — so a
//! read of one trial cost what the store holds. A lookup here is a binary search of fixed-size
//! entries (two `pread`s, see the layout below): the cost of what is returned. Hand-written because what it needs is small and specific (a sorted, checked,
//! immutable table of a few hundred thousand short values, read without `unsafe` memory
//! mapping); an embedded database would bring back the open cost this file exists to avoid.
//!
//! When it is right: the file describes the store as it was when it was written, and
//! [`super::Store`] keeps it that way — every write to sled first removes the file
//! (`Store::writing`), and a writer writes a new one only after a flush, with no write in
//! between (`Store::publish_heads`). A process that stops between the two leaves no file, and
//! reads open sled as before until the next writer writes one. Format 5 exists so that a build
//! that does not know the file (format 4) refuses the store rather than write values the file
//! would then contradict.
//!
//! Layout (integers big-endian):
//!
//! | bytes | what |
//! |---|---|
//! | 0..8 | magic `TWHEADS3` |
//! | 8..12 | store format version (u32) |
//! | 12..16 | entry count *n* (u32) |
//! | 16..24 | offset of the entry table (u64) |
//! | 24..32 | offset of the fences (u64) |
//! | 32..40 | the recent time index's first time (8 key bytes, as in `c` keys) |
//! | 40..48 | offset of its records (u64) |
//! | 48..56 | offset of its record index (u64) |
//! | 56..60 | its record count *r* (u32) |
//! | 60..68 | offset of the facts (u64) |
//! | 68..72 | their length (u32) |
//! | 72..76 | xxh3-64 of them, low 32 bits |
//! | 76..84 | length of the whole file (u64) |
//! | 84..88 | xxh3-64 of bytes 0..84, low 32 bits |
//! | 88.. | the `T` values, one after another |
//! | table | *n* entries of 24 bytes, by trial number: number (u32), value offset (u64), value length (u32), xxh3 of the value (low 32 bits), xxh3 of the entry's first 20 bytes (low 32 bits) |
//! | fences | the first trial number of each block of [`BLOCK`] entries (u32 each), then xxh3 of them (low 32 bits) |
//! | records | every `c` time-index entry at or after the first time: key length (u8), value length (u32), xxh3 of key and value (low 32 bits), key, value; in key order |
//! | record index | *r* entries of 20 bytes: the record's 8 time bytes, its offset (u64), xxh3 of both (low 32 bits) |
//! | facts | [`Facts`] as JSON: what `status` reads besides (meta values, outbox counts) |
//!
//! A lookup finds its block among the fences (read once, 4 bytes per 256 trials), reads that
//! block of the table with one `pread`, and the value with another. `changes --since` within
//! the recent window ([`RECENT_DAYS`] before the file was written) finds its first record by a
//! binary search of the record index and reads the records from there on: what it lists.
//!
//! Damage anywhere (a torn write, a bit flip) fails a check and the read falls back to sled; a
//! lookup never trusts an offset or length it has not checked. It does not decide what a `T`
//! value means (that is `trial_value.rs`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use xxhash_rust::xxh3::xxh3_64;

/// The file's name in the store directory.
pub(super) const FILE: &str = "heads";
const TMP: &str = "heads.tmp";
const MAGIC: &[u8; 8] = b"TWHEADS4";
const HEADER: u64 = 88;
const RECORD_INDEX: u64 = 20;
/// How far back the heads file keeps a copy of the time index, from when it is written: what
/// `changes --since` asks for day to day (a day, a week, a month) is read without sled.
pub(super) const RECENT_DAYS: i64 = 35;
const ENTRY: u64 = 24;
/// Entries per block of the table: one fence each, one `pread` per lookup.
const BLOCK: u64 = 256;
/// Blocks a reader keeps once read (`changes` looks up a thousand trials, often twice).
const CACHED_BLOCKS: usize = 256;

fn sum32(bytes: &[u8]) -> u32 {
    xxh3_64(bytes) as u32
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[i..i + 8]);
    u64::from_be_bytes(x)
}

/// An open, header-checked heads file.
#[derive(Debug)]
pub(super) struct Reader {
    file: File,
    count: u64,
    table: u64,
    values_end: u64,
    /// The first trial number of each block of the table.
    fences: Vec<u32>,
    /// Blocks read so far, by block number (bounded by [`CACHED_BLOCKS`]).
    blocks: Mutex<HashMap<u64, std::sync::Arc<Vec<u8>>>>,
    /// The recent time index: its first time (key bytes), records, record index and count.
    recent_from: u64,
    records: u64,
    record_index: u64,
    record_count: u64,
    /// Where the facts are (offset, length, checksum), and them once read.
    facts_at: (u64, u32, u32),
    facts: std::sync::OnceLock<Result<Facts, Damage>>,
}

/// What `status` reads besides the trials, as of the file: every `m` meta value (name, JSON
/// text) and the outbox's (pending, dead) counts, absent when fan-outs still waited to be
/// expanded into entries (then sled answers).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Facts {
    pub(super) meta: Vec<(String, String)>,
    pub(super) outbox: Option<(u64, u64)>,
}

/// One `c` time-index entry, as sled holds it.
pub(super) type TimeEntry = (Vec<u8>, Vec<u8>);

/// Why the heads file cannot be used (the caller reads sled instead).
pub(super) type Damage = String;

impl Reader {
    /// Open `dir`'s heads file, checking its header against the file and `format`; `None` when
    /// there is none, `Err` when it is there but unusable.
    pub(super) fn open(dir: &Path, format: u32) -> Result<Option<Reader>, Damage> {
        let file = match File::open(dir.join(FILE)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open it: {e}")),
        };
        let len = file
            .metadata()
            .map_err(|e| format!("cannot stat it: {e}"))?
            .len();
        let mut h = [0u8; HEADER as usize];
        file.read_exact_at(&mut h, 0)
            .map_err(|e| format!("cannot read its header: {e}"))?;
        if &h[..8] != MAGIC || u32_at(&h, 84) != sum32(&h[..84]) {
            return Err("its header is damaged".into());
        }
        let found = u32_at(&h, 8);
        if found != format {
            return Err(format!("it was written for store format {found}"));
        }
        let count = u64::from(u32_at(&h, 12));
        let (table, fences_at) = (u64_at(&h, 16), u64_at(&h, 24));
        let blocks = count.div_ceil(BLOCK);
        let (records, record_index) = (u64_at(&h, 40), u64_at(&h, 48));
        let record_count = u64::from(u32_at(&h, 56));
        let facts_at = (u64_at(&h, 60), u32_at(&h, 68), u32_at(&h, 72));
        if u64_at(&h, 76) != len
            || table < HEADER
            || table.checked_add(count * ENTRY) != Some(fences_at)
            || fences_at.checked_add(blocks * 4 + 4) != Some(records)
            || records > record_index
            || record_index.checked_add(record_count * RECORD_INDEX) != Some(facts_at.0)
            || facts_at.0.checked_add(u64::from(facts_at.1)) != Some(len)
        {
            return Err("its length does not match its header (a torn write?)".into());
        }
        let mut f = vec![0u8; (blocks * 4 + 4) as usize];
        file.read_exact_at(&mut f, fences_at)
            .map_err(|e| format!("cannot read its fences: {e}"))?;
        let body = f.len() - 4;
        if u32_at(&f, body) != sum32(&f[..body]) {
            return Err("its fences are damaged".into());
        }
        let fences = f[..body].chunks_exact(4).map(|c| u32_at(c, 0)).collect();
        Ok(Some(Reader {
            file,
            count,
            table,
            values_end: table,
            fences,
            blocks: Mutex::new(HashMap::new()),
            recent_from: u64_at(&h, 32),
            records,
            record_index,
            record_count,
            facts_at,
            facts: std::sync::OnceLock::new(),
        }))
    }

    /// The facts `status` reads (read and checked once).
    pub(super) fn facts(&self) -> Result<&Facts, Damage> {
        self.facts
            .get_or_init(|| {
                let (at, len, sum) = self.facts_at;
                let mut bytes = vec![0u8; len as usize];
                self.file
                    .read_exact_at(&mut bytes, at)
                    .map_err(|e| format!("cannot read its facts: {e}"))?;
                if sum32(&bytes) != sum {
                    return Err("its facts are damaged".into());
                }
                serde_json::from_slice(&bytes).map_err(|e| format!("its facts do not parse: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// How many trials the file lists.
    pub(super) fn trials(&self) -> u64 {
        self.count
    }

    /// The first time (8 key bytes) of the recent time index the file holds.
    pub(super) fn recent_from(&self) -> [u8; 8] {
        self.recent_from.to_be_bytes()
    }

    /// Every time-index entry at or after `since` (8 key bytes), in key order; `None` when
    /// `since` is before the recent window this file holds (sled has the rest).
    pub(super) fn time_entries_since(
        &self,
        since: [u8; 8],
    ) -> Result<Option<Vec<TimeEntry>>, Damage> {
        let since = u64::from_be_bytes(since);
        if since < self.recent_from {
            return Ok(None);
        }
        let index_entry = |i: u64| -> Result<(u64, u64), Damage> {
            let mut e = [0u8; RECORD_INDEX as usize];
            self.file
                .read_exact_at(&mut e, self.record_index + i * RECORD_INDEX)
                .map_err(|err| format!("cannot read time record {i}: {err}"))?;
            if u32_at(&e, 16) != sum32(&e[..16]) {
                return Err(format!("time record {i}'s index entry is damaged"));
            }
            Ok((u64_at(&e, 0), u64_at(&e, 8)))
        };
        // The first record at or after `since`.
        let (mut lo, mut hi) = (0u64, self.record_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if index_entry(mid)?.0 < since {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == self.record_count {
            return Ok(Some(Vec::new()));
        }
        let first = index_entry(lo)?.1;
        if first < self.records || first > self.record_index {
            return Err(format!("time record {lo} points outside the records"));
        }
        let mut bytes = vec![0u8; (self.record_index - first) as usize];
        self.file
            .read_exact_at(&mut bytes, first)
            .map_err(|e| format!("cannot read the time records: {e}"))?;
        let mut out = Vec::new();
        let mut at = 0usize;
        while at < bytes.len() {
            let bad = || format!("a time record at offset {} is damaged", first + at as u64);
            let head = bytes.get(at..at + 9).ok_or_else(bad)?;
            let (klen, vlen, sum) = (head[0] as usize, u32_at(head, 1) as usize, u32_at(head, 5));
            let body = bytes.get(at + 9..at + 9 + klen + vlen).ok_or_else(bad)?;
            if sum32(body) != sum {
                return Err(bad());
            }
            out.push((body[..klen].to_vec(), body[klen..].to_vec()));
            at += 9 + klen + vlen;
        }
        Ok(Some(out))
    }

    /// Block `b` of the table, read once.
    fn block(&self, b: u64) -> Result<std::sync::Arc<Vec<u8>>, Damage> {
        let mut cache = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(block) = cache.get(&b) {
            return Ok(block.clone());
        }
        let entries = BLOCK.min(self.count - b * BLOCK);
        let mut bytes = vec![0u8; (entries * ENTRY) as usize];
        self.file
            .read_exact_at(&mut bytes, self.table + b * BLOCK * ENTRY)
            .map_err(|e| format!("cannot read block {b}: {e}"))?;
        if cache.len() >= CACHED_BLOCKS {
            cache.clear();
        }
        let block = std::sync::Arc::new(bytes);
        cache.insert(b, block.clone());
        Ok(block)
    }

    /// The `T` value of trial `number`, `None` when the store does not know the trial.
    pub(super) fn get(&self, number: u32) -> Result<Option<Vec<u8>>, Damage> {
        // The block whose first number is the last one at or below `number`.
        let b = self.fences.partition_point(|&f| f <= number);
        let Some(b) = b.checked_sub(1) else {
            return Ok(None);
        };
        let block = self.block(b as u64)?;
        let entry = |i: usize| -> Result<(u32, u64, u32, u32), Damage> {
            let e = &block[i * ENTRY as usize..(i + 1) * ENTRY as usize];
            if u32_at(e, 20) != sum32(&e[..20]) {
                return Err(format!("entry {} is damaged", b as u64 * BLOCK + i as u64));
            }
            Ok((u32_at(e, 0), u64_at(e, 4), u32_at(e, 12), u32_at(e, 16)))
        };
        if entry(0)?.0 != self.fences[b] {
            return Err(format!("block {b} does not start where its fence says"));
        }
        let (mut lo, mut hi) = (0usize, block.len() / ENTRY as usize);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (n, off, len, sum) = entry(mid)?;
            match n.cmp(&number) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    if off < HEADER
                        || off
                            .checked_add(u64::from(len))
                            .is_none_or(|e| e > self.values_end)
                    {
                        return Err(format!(
                            "the entry of trial {number} points outside the values"
                        ));
                    }
                    let mut v = vec![0u8; len as usize];
                    self.file
                        .read_exact_at(&mut v, off)
                        .map_err(|e| format!("cannot read the value of trial {number}: {e}"))?;
                    if sum32(&v) != sum {
                        return Err(format!("the value of trial {number} is damaged"));
                    }
                    return Ok(Some(v));
                }
            }
        }
        Ok(None)
    }
}

/// Remove `dir`'s heads file (none is fine) and make the removal durable, so that no later
/// read can find a file older than the write about to happen.
pub(super) fn remove(dir: &Path) -> std::io::Result<()> {
    for name in [FILE, TMP] {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    File::open(dir)?.sync_all()
}

/// The recent time index to copy: its first time (8 key bytes) and the `c` entries from there
/// on, in key order.
pub(super) struct Recent<I> {
    /// The window's first time, as the 8 time bytes of a `c` key.
    pub(super) from: [u8; 8],
    /// The `c` entries at or after it.
    pub(super) entries: I,
}

/// Write `dir`'s heads file for store format `format` from `values`: (trial number, `T` value)
/// in increasing trial order, and `recent`. Written to a temporary file, made durable, then renamed into
/// place; on any error the temporary file is removed and no heads file is left.
pub(super) fn write(
    dir: &Path,
    format: u32,
    values: impl Iterator<Item = Result<(u32, sled::IVec), super::StoreError>>,
    recent: Recent<impl Iterator<Item = Result<(sled::IVec, sled::IVec), super::StoreError>>>,
    facts: &Facts,
) -> Result<u64, super::StoreError> {
    let tmp = dir.join(TMP);
    let out = write_tmp(&tmp, format, values, recent, facts).and_then(|n| {
        std::fs::rename(&tmp, dir.join(FILE))
            .and_then(|()| File::open(dir)?.sync_all())
            .map(|()| n)
            .map_err(|e| io_err(&tmp, e))
    });
    if out.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    out
}

fn io_err(path: &Path, source: std::io::Error) -> super::StoreError {
    super::StoreError::Pack(super::PackError::Io {
        path: PathBuf::from(path),
        source,
    })
}

fn write_tmp(
    tmp: &Path,
    format: u32,
    values: impl Iterator<Item = Result<(u32, sled::IVec), super::StoreError>>,
    recent: Recent<impl Iterator<Item = Result<(sled::IVec, sled::IVec), super::StoreError>>>,
    facts: &Facts,
) -> Result<u64, super::StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| io_err(tmp, e))?;
    let mut w = BufWriter::with_capacity(1 << 16, &file);
    let io = |e| io_err(tmp, e);
    w.write_all(&[0u8; HEADER as usize]).map_err(io)?;
    let mut table: Vec<[u8; ENTRY as usize]> = Vec::new();
    let mut at = HEADER;
    let mut last: Option<u32> = None;
    for item in values {
        let (number, v) = item?;
        if last.is_some_and(|l| l >= number) {
            return Err(super::corrupt(
                FILE.as_bytes(),
                format!("trial {number} out of order while writing it"),
            ));
        }
        last = Some(number);
        let len = u32::try_from(v.len()).map_err(|_| {
            super::corrupt(
                FILE.as_bytes(),
                format!("trial {number}'s value is too long"),
            )
        })?;
        let mut e = [0u8; ENTRY as usize];
        e[..4].copy_from_slice(&number.to_be_bytes());
        e[4..12].copy_from_slice(&at.to_be_bytes());
        e[12..16].copy_from_slice(&len.to_be_bytes());
        e[16..20].copy_from_slice(&sum32(&v).to_be_bytes());
        let s = sum32(&e[..20]);
        e[20..].copy_from_slice(&s.to_be_bytes());
        table.push(e);
        w.write_all(&v).map_err(io)?;
        at += u64::from(len);
    }
    let count = u32::try_from(table.len())
        .map_err(|_| super::corrupt(FILE.as_bytes(), "too many trials".into()))?;
    let mut fences = Vec::with_capacity(table.len().div_ceil(BLOCK as usize) * 4 + 4);
    for (i, e) in table.iter().enumerate() {
        w.write_all(e).map_err(io)?;
        if (i as u64).is_multiple_of(BLOCK) {
            fences.extend_from_slice(&e[..4]);
        }
    }
    let s = sum32(&fences);
    fences.extend_from_slice(&s.to_be_bytes());
    w.write_all(&fences).map_err(io)?;
    let fences_at = at + u64::from(count) * ENTRY;
    let records = fences_at + fences.len() as u64;
    let mut pos = records;
    let mut record_index: Vec<u8> = Vec::new();
    let mut last_key: Option<sled::IVec> = None;
    for item in recent.entries {
        let (k, v) = item?;
        let time = k.get(1..9).filter(|_| k.len() <= 255 && k[0] == b'c');
        let (Some(time), Ok(vlen)) = (time, u32::try_from(v.len())) else {
            return Err(super::corrupt(&k, "not a time-index entry".into()));
        };
        if last_key.as_ref().is_some_and(|l| l >= &k) || time < &recent.from[..] {
            return Err(super::corrupt(
                &k,
                "time-index entry out of order while writing the heads file".into(),
            ));
        }
        let mut body = Vec::with_capacity(k.len() + v.len());
        body.extend_from_slice(&k);
        body.extend_from_slice(&v);
        let mut head = [0u8; 9];
        head[0] = k.len() as u8;
        head[1..5].copy_from_slice(&vlen.to_be_bytes());
        head[5..9].copy_from_slice(&sum32(&body).to_be_bytes());
        w.write_all(&head).map_err(io)?;
        w.write_all(&body).map_err(io)?;
        let mut e = [0u8; RECORD_INDEX as usize];
        e[..8].copy_from_slice(time);
        e[8..16].copy_from_slice(&pos.to_be_bytes());
        let s = sum32(&e[..16]);
        e[16..].copy_from_slice(&s.to_be_bytes());
        record_index.extend_from_slice(&e);
        pos += 9 + body.len() as u64;
        last_key = Some(k);
    }
    let record_count = u32::try_from(record_index.len() as u64 / RECORD_INDEX)
        .map_err(|_| super::corrupt(FILE.as_bytes(), "too many time-index entries".into()))?;
    w.write_all(&record_index).map_err(io)?;
    let facts_at = pos + record_index.len() as u64;
    let facts = serde_json::to_vec(facts)
        .map_err(|e| super::corrupt(FILE.as_bytes(), format!("its facts: {e}")))?;
    let facts_len = u32::try_from(facts.len())
        .map_err(|_| super::corrupt(FILE.as_bytes(), "its facts are too long".into()))?;
    w.write_all(&facts).map_err(io)?;
    w.flush().map_err(io)?;
    drop(w);
    let len = facts_at + u64::from(facts_len);
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&format.to_be_bytes());
    h[12..16].copy_from_slice(&count.to_be_bytes());
    h[16..24].copy_from_slice(&at.to_be_bytes());
    h[24..32].copy_from_slice(&fences_at.to_be_bytes());
    h[32..40].copy_from_slice(&recent.from);
    h[40..48].copy_from_slice(&records.to_be_bytes());
    h[48..56].copy_from_slice(&pos.to_be_bytes());
    h[56..60].copy_from_slice(&record_count.to_be_bytes());
    h[60..68].copy_from_slice(&facts_at.to_be_bytes());
    h[68..72].copy_from_slice(&facts_len.to_be_bytes());
    h[72..76].copy_from_slice(&sum32(&facts).to_be_bytes());
    h[76..84].copy_from_slice(&len.to_be_bytes());
    let s = sum32(&h[..84]);
    h[84..].copy_from_slice(&s.to_be_bytes());
    file.write_all_at(&h, 0).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(u64::from(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: u32) -> Vec<(u32, sled::IVec)> {
        (0..n)
            .map(|i| {
                (
                    i * 3 + 1,
                    sled::IVec::from(format!("value of {i}").into_bytes()),
                )
            })
            .collect()
    }

    /// Time-index entries at times 100, 110, 120, … (key bytes), `n` of them.
    fn times(n: u64) -> Vec<(sled::IVec, sled::IVec)> {
        (0..n)
            .map(|i| {
                let mut k = vec![b'c'];
                k.extend_from_slice(&(100 + 10 * i).to_be_bytes());
                k.extend_from_slice(b"NCT00000001\0\0\0\x01");
                (
                    sled::IVec::from(k),
                    sled::IVec::from(vec![i as u8; (i % 40) as usize]),
                )
            })
            .collect()
    }

    fn recent(
        n: u64,
    ) -> Recent<impl Iterator<Item = Result<(sled::IVec, sled::IVec), crate::store::StoreError>>>
    {
        Recent {
            from: 95u64.to_be_bytes(),
            entries: times(n).into_iter().map(Ok),
        }
    }

    fn facts() -> Facts {
        Facts {
            meta: vec![("last_sync".into(), "{\"requested\":3}".into())],
            outbox: Some((2, 1)),
        }
    }

    fn written(n: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let count = write(
            dir.path(),
            5,
            values(n).into_iter().map(Ok),
            recent(u64::from(n) / 3),
            &facts(),
        )
        .unwrap();
        assert_eq!(count, u64::from(n));
        dir
    }

    #[test]
    fn every_value_reads_back_and_others_are_absent() {
        for n in [0, 1, 2, 7, 255, 256, 257, 1000] {
            let dir = written(n);
            let r = Reader::open(dir.path(), 5).unwrap().unwrap();
            for (k, v) in values(n) {
                assert_eq!(r.get(k).unwrap().as_deref(), Some(&v[..]), "{n}: {k}");
                assert_eq!(r.get(k + 1).unwrap(), None, "{n}: {}", k + 1);
            }
            assert_eq!(r.get(0).unwrap(), None);
            assert_eq!(r.get(u32::MAX).unwrap(), None);
            assert_eq!(r.facts().unwrap(), &facts());
            // The time index from any time in the window on, and nothing before it.
            let all = times(u64::from(n) / 3);
            assert_eq!(r.time_entries_since(94u64.to_be_bytes()).unwrap(), None);
            for since in [
                95u64,
                100,
                101,
                110,
                155,
                100 + 10 * u64::from(n / 3),
                u64::MAX,
            ] {
                let want: Vec<TimeEntry> = all
                    .iter()
                    .filter(|(k, _)| k[1..9] >= since.to_be_bytes()[..])
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect();
                assert_eq!(
                    r.time_entries_since(since.to_be_bytes()).unwrap(),
                    Some(want),
                    "{n}: {since}"
                );
            }
            assert!(!dir.path().join(TMP).exists());
        }
    }

    #[test]
    fn another_format_a_torn_file_or_a_flipped_byte_is_refused_never_misread() {
        let dir = written(50);
        assert!(
            Reader::open(dir.path(), 4)
                .unwrap_err()
                .contains("format 5")
        );
        let path = dir.path().join(FILE);
        let good = std::fs::read(&path).unwrap();
        // Cut short anywhere: the header no longer matches.
        for cut in [0, 10, 87, 88, 200, good.len() - 1] {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(Reader::open(dir.path(), 5).is_err(), "cut at {cut}");
        }
        // Any one byte flipped: the header, an entry or a value says so on the read that
        // touches it; no read returns a wrong value.
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            let Ok(Some(r)) = Reader::open(dir.path(), 5) else {
                continue;
            };
            for (k, v) in values(50) {
                match r.get(k) {
                    Ok(Some(got)) => assert_eq!(got, v.to_vec(), "flip at {at}, trial {k}"),
                    Ok(None) => panic!("flip at {at}: trial {k} lost without an error"),
                    Err(_) => {}
                }
            }
            let all: Vec<TimeEntry> = times(16)
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            if let Ok(f) = r.facts() {
                assert_eq!(f, &facts(), "flip at {at}: the facts");
            }
            match r.time_entries_since(95u64.to_be_bytes()) {
                Ok(Some(got)) => assert_eq!(got, all, "flip at {at}: the time index"),
                Ok(None) => panic!("flip at {at}: the time index window moved without an error"),
                Err(_) => {}
            }
        }
        // And removal leaves nothing behind.
        std::fs::write(&path, &good).unwrap();
        remove(dir.path()).unwrap();
        assert!(Reader::open(dir.path(), 5).unwrap().is_none());
    }

    #[test]
    fn out_of_order_values_are_refused_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = [
            (5u32, sled::IVec::from(&b"a"[..])),
            (5, sled::IVec::from(&b"b"[..])),
        ];
        assert!(write(dir.path(), 5, bad.into_iter().map(Ok), recent(2), &facts()).is_err());
        // Time-index entries out of order, or before the window, likewise.
        let mut t = times(3);
        t.swap(0, 2);
        let r = Recent {
            from: 95u64.to_be_bytes(),
            entries: t.into_iter().map(Ok),
        };
        assert!(write(dir.path(), 5, values(3).into_iter().map(Ok), r, &facts()).is_err());
        let r = Recent {
            from: 105u64.to_be_bytes(),
            entries: times(3).into_iter().map(Ok),
        };
        assert!(write(dir.path(), 5, values(3).into_iter().map(Ok), r, &facts()).is_err());
        assert!(!dir.path().join(FILE).exists());
        assert!(!dir.path().join(TMP).exists());
    }
}
