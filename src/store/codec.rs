//! How the store encodes the bytes it keeps: a tag byte and a zstd frame, with the version's own
//! raw JSON or its keyframe's raw JSON as dictionary; JSON (de)serialization of stored values;
//! the stored shape of a version's metadata; and [`record_hash`].
//!
//! It does not know where bytes are kept (sled keys are [`super::keys`], blobs are
//! [`super::pack`]) nor which dictionary a given version needs ([`super::versions`] decides).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Result, StoreError, corrupt};
use crate::model::VersionMeta;

/// zstd level: JSON is read and written on every sync of a changed trial, so speed wins.
const ZSTD_LEVEL: i32 = 3;

/// zstd level of a keyframe's raw JSON, the largest thing a version stores and the one written
/// once per 16 versions: level 6 makes it ~7 % smaller than level 3 (measured on the fixture
/// mix of `benches/sync.rs`) for about 1 s more CPU per 300 MB.
pub(super) const ZSTD_KEYFRAME_LEVEL: i32 = 6;

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
pub(super) fn keyframe_of(version: u32) -> u32 {
    ((version.max(1) - 1) / KEYFRAME_EVERY) * KEYFRAME_EVERY + 1
}

/// `data` encoded with `codec` at the everyday zstd level.
pub(super) fn encode(data: &[u8], codec: Codec, dict: &[u8]) -> Vec<u8> {
    encode_at(data, codec, dict, ZSTD_LEVEL)
}

/// `data` encoded with `codec` (with `dict` as its dictionary, when not empty) at `level`.
pub(super) fn encode_at(data: &[u8], codec: Codec, dict: &[u8], level: i32) -> Vec<u8> {
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

/// The bytes a stored value encodes; `dict` must be the dictionary [`codec_of`] asked for.
pub(super) fn decode(key: &[u8], bytes: &[u8], dict: &[u8]) -> Result<Vec<u8>> {
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
