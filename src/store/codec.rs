//! How the store encodes the bytes it keeps: a tag byte and a zstd frame, with the version's own
//! raw JSON, its keyframe's raw JSON or the CT.gov dictionary shipped in the binary as
//! dictionary; JSON (de)serialization of stored values; the stored shape of a version's
//! metadata; and [`record_hash`].
//!
//! The shipped dictionary (`ctgov-1.dict`, tag 4) is the byte-exact concatenation of real CT.gov
//! records that are *not* among the benchmark's fixtures (`tests/fixtures/ctgov/`:
//! `page-sample-1study.json`, `list-NCT03281889.json`, `list-NCT06388018.json`,
//! `NCT02985775.json`, `partial/*.json`, `history/NCT04280705.history-v0.json`, in that order):
//! CT.gov's key names, module skeleton and enumerations, which a small record repeats in full
//! and cannot compress against itself. Its bytes never change once shipped: stores name it by
//! its tag, and a better dictionary would be a new tag beside it.
//!
//! Compressor contexts are kept per thread and reused: creating one per value cost more than
//! compressing a small record.
//!
//! It does not know where bytes are kept (sled keys are [`super::keys`], blobs are
//! [`super::pack`]) nor which dictionary a given version needs ([`super::versions`] decides).

use std::cell::RefCell;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Result, StoreError, corrupt};
use crate::model::VersionMeta;

/// zstd level: JSON is read and written on every sync of a changed trial, so speed wins.
const ZSTD_LEVEL: i32 = 3;

/// The CT.gov dictionary of tag 4 (see the module doc). Never edit: stores depend on its bytes.
static CTGOV_DICT: &[u8] = include_bytes!("ctgov-1.dict");

/// zstd level of a keyframe's raw JSON (with [`CTGOV_DICT`]), the largest thing a version
/// stores: with the dictionary, level 3 leaves less than level 6 without it did (16.0 % vs
/// 17.4 % of the benchmark's registry mix, 25 % vs 30 % of its small records), at the speed of
/// level 3.
pub(super) const ZSTD_KEYFRAME_LEVEL: i32 = 3;

/// Every this many versions the raw JSON is stored whole (a keyframe); the versions between are
/// stored as zstd deltas against their keyframe. Versions of one study are nearly identical, so a
/// delta costs tens of bytes, and any read needs at most two decompressions.
pub(super) const KEYFRAME_EVERY: u32 = 16;

/// How a stored value is encoded: a tag byte, then a zstd frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Codec {
    /// zstd on its own.
    Plain = 1,
    /// zstd with this version's raw CT.gov JSON as a raw-content dictionary: the normalized
    /// record and a first version's changes repeat the raw text, so they cost little on top.
    OwnRaw = 2,
    /// zstd with the keyframe version's raw JSON as dictionary (raw JSON of non-keyframes).
    Keyframe = 3,
    /// zstd with the CT.gov dictionary shipped in the binary ([`CTGOV_DICT`]): keyframe raw
    /// JSON since store format 3.
    Ctgov = 4,
    /// zstd with the keyframe version's normalized record (its canonical bytes) as dictionary:
    /// the records of non-keyframe versions since store format 3. Versions of one study are
    /// nearly the same record, so this costs tens of bytes where [`Codec::OwnRaw`] cost a
    /// whole record's worth of references.
    KeyframeRecord = 5,
}

impl Codec {
    fn from_tag(tag: u8) -> Option<Codec> {
        match tag {
            1 => Some(Codec::Plain),
            2 => Some(Codec::OwnRaw),
            3 => Some(Codec::Keyframe),
            4 => Some(Codec::Ctgov),
            5 => Some(Codec::KeyframeRecord),
            _ => None,
        }
    }
}

/// The version whose raw JSON is stored whole and serves as dictionary for `version`.
pub(super) fn keyframe_of(version: u32) -> u32 {
    ((version.max(1) - 1) / KEYFRAME_EVERY) * KEYFRAME_EVERY + 1
}

/// `data` encoded with `codec` at the everyday zstd level.
pub(super) fn encode(data: &[u8], codec: Codec, dict: &[u8]) -> Vec<u8> {
    encode_at(data, codec, dict, ZSTD_LEVEL)
}

/// [`CTGOV_DICT`] prepared for compression at [`ZSTD_KEYFRAME_LEVEL`], once per process.
fn ctgov_encoder() -> Option<&'static zstd::dict::EncoderDictionary<'static>> {
    static D: OnceLock<Option<zstd::dict::EncoderDictionary<'static>>> = OnceLock::new();
    D.get_or_init(|| zstd::dict::EncoderDictionary::try_copy(CTGOV_DICT, ZSTD_KEYFRAME_LEVEL).ok())
        .as_ref()
}

/// [`CTGOV_DICT`] prepared for decompression, once per process.
pub(super) fn ctgov_decoder() -> Option<&'static zstd::dict::DecoderDictionary<'static>> {
    static D: OnceLock<Option<zstd::dict::DecoderDictionary<'static>>> = OnceLock::new();
    D.get_or_init(|| zstd::dict::DecoderDictionary::try_copy(CTGOV_DICT).ok())
        .as_ref()
}

/// A compressor context that has just worked on more than this (value and dictionary) is
/// dropped rather than kept for the next value.
const KEEP_CONTEXT_BYTES: usize = 256 * 1024;

thread_local! {
    /// This thread's compressors, reused for every value (see the module doc): one per kind,
    /// so that a dictionary set for one kind can never stay on for a value of another.
    static PLAIN: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static CTGOV: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static WITH_DICT: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
}

/// One zstd frame of `data`: with the prepared CT.gov dictionary for [`Codec::Ctgov`], else
/// with `dict` (none when empty) at `level`, on this thread's reused context for that kind.
fn frame(data: &[u8], codec: Codec, dict: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let cell = match codec {
        Codec::Ctgov => &CTGOV,
        _ if dict.is_empty() => &PLAIN,
        _ => &WITH_DICT,
    };
    cell.with(|cell| {
        let mut slot = cell.try_borrow_mut().map_err(std::io::Error::other)?;
        let c = match &mut *slot {
            Some(c) => c,
            empty => empty.insert(zstd::bulk::Compressor::new(level)?),
        };
        let out = if codec == Codec::Ctgov {
            let d = ctgov_encoder()
                .ok_or_else(|| std::io::Error::other("the CT.gov dictionary did not load"))?;
            c.set_prepared_dictionary(d)?;
            c.compress(data)
        } else if dict.is_empty() {
            c.compress(data)
        } else {
            // A dictionary used for this one value (a raw JSON, a keyframe): loaded straight
            // into the context (zstd's one-shot `compress_usingDict`, which indexes it sparsely)
            // rather than prepared as a full dictionary first, whose table fill over the whole
            // raw JSON cost more than compressing the value. The frame is the same kind (raw
            // content dictionary, content size recorded): read back as before.
            let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
            c.context_mut()
                .compress_using_dict(&mut out, data, dict, level)
                .map(|_| out)
                .map_err(|code| {
                    std::io::Error::other(zstd::zstd_safe::get_error_name(code).to_string())
                })
        };
        if out.is_err() || data.len() + dict.len() > KEEP_CONTEXT_BYTES {
            // A failed job may leave the context half set up: start the next one afresh. A
            // context that grew for a large value (and holds a copy of its dictionary) is not
            // kept either, so the reuse costs no memory beyond what small values need.
            *slot = None;
        }
        out
    })
}

/// `data` encoded with `codec` (with `dict` as its dictionary, when not empty) at `level`.
pub(super) fn encode_at(data: &[u8], codec: Codec, dict: &[u8], level: i32) -> Vec<u8> {
    // Plain and Ctgov ignore `dict`; a codec that needs one falls back to Plain without it.
    let (codec, dict) = match codec {
        Codec::Plain => (Codec::Plain, &[][..]),
        Codec::Ctgov => (Codec::Ctgov, &[][..]),
        _ if dict.is_empty() => (Codec::Plain, &[][..]),
        c => (c, dict),
    };
    match frame(data, codec, dict, level) {
        Ok(f) => {
            let mut out = Vec::with_capacity(f.len() + 1);
            out.push(codec as u8);
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

/// The codec a stored value needs, so the caller can fetch its dictionary first.
pub(super) fn codec_of(key: &[u8], bytes: &[u8]) -> Result<Option<Codec>> {
    match bytes.first() {
        Some(0) => Ok(None),
        Some(&t) => Codec::from_tag(t)
            .map(Some)
            .ok_or_else(|| corrupt(key, format!("unknown encoding tag {t}"))),
        None => Err(corrupt(key, "empty value".into())),
    }
}

/// A frame whose header claims more than this is decoded by streaming (which allocates as the
/// data really comes) rather than into a buffer allocated up front for the claimed size.
const BULK_DECODE_MAX: usize = 64 * 1024 * 1024;

thread_local! {
    /// This thread's decompressor, reused for every value as the compressors are: creating a
    /// context per value showed in the read commands' profiles (`ZSTD_createDCtx`).
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// One frame decoded on this thread's reused context, when its header gives its size (every
/// frame the store writes does): `None` leaves it to the streaming decoder.
fn decode_reused(frame: &[u8], codec: Codec, dict: &[u8]) -> Option<std::io::Result<Vec<u8>>> {
    let size = zstd::bulk::Decompressor::upper_bound(frame).filter(|&n| n <= BULK_DECODE_MAX)?;
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        let d = match &mut *slot {
            Some(d) => d,
            empty => match zstd::bulk::Decompressor::new() {
                Ok(d) => empty.insert(d),
                Err(e) => return Some(Err(e)),
            },
        };
        let set = if codec == Codec::Ctgov {
            match ctgov_decoder() {
                Some(p) => d.set_prepared_dictionary(p),
                None => Err(std::io::Error::other("the CT.gov dictionary did not load")),
            }
        } else {
            // An empty dictionary clears the last one.
            d.set_dictionary(dict)
        };
        let out = set.and_then(|()| d.decompress(frame, size));
        if out.is_err() || dict.len() > KEEP_CONTEXT_BYTES {
            // As for the compressors: no half-set-up context, and no large dictionary copy
            // kept for the next value.
            *slot = None;
        }
        Some(out)
    })
}

/// The bytes a stored value encodes; `dict` must be the dictionary [`codec_of`] asked for.
pub(super) fn decode(key: &[u8], bytes: &[u8], dict: &[u8]) -> Result<Vec<u8>> {
    use std::io::Read;
    let Some(codec) = codec_of(key, bytes)? else {
        return Ok(bytes[1..].to_vec());
    };
    if let Some(out) = decode_reused(&bytes[1..], codec, dict) {
        return out.map_err(|e| corrupt(key, format!("cannot decompress: {e}")));
    }
    let mut out = Vec::new();
    let read = if codec == Codec::Ctgov {
        let d = ctgov_decoder()
            .ok_or_else(|| corrupt(key, "the CT.gov dictionary did not load".into()))?;
        zstd::stream::read::Decoder::with_prepared_dictionary(&bytes[1..], d)
            .and_then(|mut d| d.read_to_end(&mut out))
    } else {
        zstd::stream::read::Decoder::with_dictionary(&bytes[1..], dict)
            .and_then(|mut d| d.read_to_end(&mut out))
    };
    read.map_err(|e| corrupt(key, format!("cannot decompress: {e}")))?;
    Ok(out)
}

/// The JSON a value is stored as.
pub(super) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Our own plain data types always serialize.
    serde_json::to_vec(v).unwrap_or_default()
}

/// A stored JSON value read back; `key` names it in the error when it does not parse.
pub(super) fn from_json<T: for<'de> Deserialize<'de>>(key: &[u8], bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// xxh3-128 hex of a study's raw JSON as CT.gov sent it, kept in the trial's state
/// ([`super::TrialState::raw_hash`]): the next sync that receives the same bytes skips parsing,
/// normalizing and diffing them. A fast non-cryptographic hash is enough: it guards against
/// chance, not against CT.gov (which could change the content anyway), and a sync hashes
/// every study it fetches (~300 MB for 10,000 trials), where SHA-256 costs about 1 s.
pub fn raw_hash(raw: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(raw))
}

/// SHA-256 hex of a record's canonical bytes.
pub fn record_hash(canonical: &[u8]) -> String {
    hex::encode(Sha256::digest(canonical))
}

/// A version's metadata as stored. A first version's changes are every path of its record,
/// `added` — the record a second time — so they are kept as a flag and derived from the record
/// on read (`diff(None, record)`), which halves what a first version costs.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredMeta {
    /// The metadata itself; its `changes` are empty when `changes_from_record` is set.
    #[serde(flatten)]
    pub(super) meta: VersionMeta,
    /// Set when the changes are `diff(None, record)` and so were not stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) changes_from_record: bool,
    /// The values of the version's record the severity rules read
    /// (`severity::context_of`), kept only when its changes need them, so `changes --since`
    /// judges the version without decoding records. Absent in older stores and after a
    /// backfill rewrote the metadata: readers then decode the records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) context: Option<crate::model::Record>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small real CT.gov record (a benchmark fixture, so not part of the dictionary).
    const SMALL: &str = include_str!("../../tests/fixtures/ctgov/NCT00973089.json");

    #[test]
    fn the_ctgov_dictionary_round_trips_and_shrinks_a_small_record() {
        let with = encode_at(SMALL.as_bytes(), Codec::Ctgov, &[], ZSTD_KEYFRAME_LEVEL);
        assert_eq!(with[0], Codec::Ctgov as u8);
        assert_eq!(
            codec_of(b"k", &with).unwrap(),
            Some(Codec::Ctgov),
            "tag 4 is known"
        );
        assert_eq!(decode(b"k", &with, &[]).unwrap(), SMALL.as_bytes());
        let without = encode_at(SMALL.as_bytes(), Codec::Plain, &[], 6);
        // Measured: 2,549 bytes plain at level 6, ~1,900 with the dictionary at level 3.
        assert!(
            with.len() * 100 < without.len() * 85,
            "{} bytes with the dictionary, {} without",
            with.len(),
            without.len()
        );
        // The dictionary's bytes are what stores were written with: never edited.
        assert_eq!(
            hex::encode(Sha256::digest(CTGOV_DICT)),
            "9a9aed798f75c8dbda1b50efc45498e130a7f67fc849ede49a125b4d15b8ac0c"
        );
    }

    #[test]
    fn a_reused_compressor_context_keeps_each_values_own_dictionary() {
        // Alternating codecs on one thread's context must never leak a dictionary into the
        // next value: each decodes with exactly its own.
        let a = b"{\"briefTitle\": \"one\", \"x\": [1, 2, 3]}".repeat(20);
        let b = b"{\"briefTitle\": \"two\", \"y\": [4, 5, 6]}".repeat(20);
        // The order a commit encodes in (metadata, record, raw JSON), trial after trial, and
        // the other way round.
        for _ in 0..3 {
            let plain = encode(&b, Codec::Plain, &[]);
            let own = encode(&b, Codec::OwnRaw, &a);
            let ctgov = encode_at(&a, Codec::Ctgov, &[], ZSTD_KEYFRAME_LEVEL);
            let plain_after = encode(&b, Codec::Plain, &[]);
            let own_after = encode(&b, Codec::OwnRaw, &a);
            assert_eq!(decode(b"k", &own, &a).unwrap(), b);
            assert_eq!(decode(b"k", &plain, &[]).unwrap(), b);
            assert_eq!(decode(b"k", &plain_after, &[]).unwrap(), b);
            assert_eq!(decode(b"k", &own_after, &a).unwrap(), b);
            assert_eq!(decode(b"k", &ctgov, &[]).unwrap(), a);
            assert!(decode(b"k", &own, &[]).is_err() || decode(b"k", &own, &[]).unwrap() != b);
        }
        // Plain ignores a dictionary passed to it (callers pass the raw JSON for metadata that
        // may or may not use it): it decodes without one.
        let plain_given_dict = encode(&b, Codec::Plain, &a);
        assert_eq!(decode(b"k", &plain_given_dict, &[]).unwrap(), b);
        assert_eq!(raw_hash(b"abc"), raw_hash(b"abc"));
        assert_ne!(raw_hash(b"abc"), raw_hash(b"abd"));
        assert_eq!(raw_hash(b"").len(), 32);
    }

    #[test]
    fn the_reused_decompressor_survives_bad_frames_and_frames_without_a_size() {
        let a = b"{\"briefTitle\": \"one\", \"x\": [1, 2, 3]}".repeat(20);
        let good = encode(&a, Codec::OwnRaw, SMALL.as_bytes());
        // A frame whose header has no content size (a streaming encoder's): the streaming path.
        let mut streamed = vec![Codec::Plain as u8];
        let mut enc = zstd::stream::write::Encoder::new(&mut streamed, 3).unwrap();
        std::io::Write::write_all(&mut enc, &a).unwrap();
        enc.finish().unwrap();
        assert_eq!(zstd::bulk::Decompressor::upper_bound(&streamed[1..]), None);
        assert_eq!(decode(b"k", &streamed, &[]).unwrap(), a);
        // A damaged frame is an error naming the key, and the next value decodes as before.
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        bad.truncate(bad.len() - 3);
        let e = decode(b"the-key", &bad, SMALL.as_bytes()).map(|_| ());
        assert!(e.is_err_and(|e| e.to_string().contains("the-key")));
        assert_eq!(decode(b"k", &good, SMALL.as_bytes()).unwrap(), a);
        let stored = [&[0u8][..], &a].concat();
        assert_eq!(decode(b"k", &stored, &[]).unwrap(), a);
    }

    #[test]
    fn a_later_versions_record_costs_tens_of_bytes_against_its_keyframes() {
        use crate::model::NctId;
        use crate::store::Store;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let nct: NctId = "NCT00973089".parse().unwrap();
        let raws: Vec<String> = (1..=3)
            .map(|v| {
                SMALL.replacen(
                    "\"briefTitle\": \"",
                    &format!("\"briefTitle\": \"(rev {v}) "),
                    1,
                )
            })
            .collect();
        let mut records = Vec::new();
        for raw in &raws {
            let at = "2026-01-01T00:00:00Z".parse().unwrap();
            records.push(store.commit_observed_raw(&nct, raw, at));
        }
        let table = store.table(&nct).unwrap();
        for (v, r) in (1..).zip(&records) {
            assert_eq!(&store.record(&nct, v).unwrap().unwrap(), r, "v{v}");
        }
        assert!(table[0].record.len > 200, "the keyframe's record is whole");
        for e in &table[1..] {
            assert!(
                e.record.len < 120,
                "a delta record of {} bytes",
                e.record.len
            );
        }
        assert!(store.verify().unwrap().problems.is_empty());
    }
}
