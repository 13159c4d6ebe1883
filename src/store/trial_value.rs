//! A trial's `T` value (store format 4): its [`TrialState`] and its version table in one sled
//! value, in a compact binary form.
//!
//! Why one value, and why binary: every command opens sled, and sled's open and its page table
//! grow with the number of keys and the bytes of its log (sled 0.34 keeps at most 16 keys per
//! leaf page, and rewrites a whole page every few updates). Format 3 kept two keys per trial
//! (`t`, its state as JSON of ~360 bytes with hex hashes, and `V`, its version table); format 4
//! keeps one of ~150 bytes, so a sync writes half the keys and a third of the bytes, and a
//! read command's open has half the pages to map.
//!
//! Layout: one tag byte ([`LAYOUT`]), the state in postcard's documented, stable wire format
//! (varints; a field per position, so adding one needs a new tag or format), then the version
//! table's entries, [`super::keys::encode_table`]'s bytes, to the end of the value. A reader of
//! the state alone stops before the table; a writer of the state alone copies the table bytes
//! as they are.
//!
//! It does not decide what the state means (that is [`super::versions`]) nor how the table's
//! entries are encoded (that is [`super::keys`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::keys::{VersionBlobs, decode_table};
use super::{Result, TrialState, corrupt};
use crate::model::{HistorySummary, NctId};

/// The first byte of every `T` value written by this build.
const LAYOUT: u8 = 1;

/// A digest kept as text in [`TrialState`] (lower-case hex), stored as its bytes; any other
/// text (none is written today) is kept as it is, so a value always reads back equal.
#[derive(Serialize, Deserialize)]
enum Digest {
    Bytes(Vec<u8>),
    Text(String),
}

impl Digest {
    fn of(s: &str) -> Digest {
        match hex::decode(s) {
            Ok(b) if hex::encode(&b) == s => Digest::Bytes(b),
            _ => Digest::Text(s.to_string()),
        }
    }

    fn text(self) -> String {
        match self {
            Digest::Bytes(b) => hex::encode(b),
            Digest::Text(s) => s,
        }
    }
}

/// A time to the nanosecond, as `TrialState`'s JSON kept it: seconds and nanoseconds.
type Instant = (i64, u32);

fn instant(at: &DateTime<Utc>) -> Instant {
    (at.timestamp(), at.timestamp_subsec_nanos())
}

/// [`TrialState`] as stored; the trial's ID is the key's.
#[derive(Serialize, Deserialize)]
struct Wire {
    latest_version: u32,
    record_hash: Digest,
    first_seen_at: Instant,
    last_seen_at: Instant,
    resolved_id: Option<String>,
    last_error: Option<String>,
    last_error_at: Option<Instant>,
    source_fingerprint: Option<Digest>,
    raw_hash: Option<Digest>,
    timeline: Vec<u32>,
    first_observed: u32,
    /// [`HistorySummary`] as JSON: rare, and its shape has optional fields postcard cannot skip.
    ctgov_history: Option<Vec<u8>>,
}

/// The `T` value of `state` with its version table's bytes.
pub(super) fn encode(state: &TrialState, table: &[u8]) -> Vec<u8> {
    let wire = Wire {
        latest_version: state.latest_version,
        record_hash: Digest::of(&state.record_hash),
        first_seen_at: instant(&state.first_seen_at),
        last_seen_at: instant(&state.last_seen_at),
        resolved_id: state.resolved_id.as_ref().map(|n| n.as_str().to_string()),
        last_error: state.last_error.clone(),
        last_error_at: state.last_error_at.as_ref().map(instant),
        source_fingerprint: state.source_fingerprint.as_deref().map(Digest::of),
        raw_hash: state.raw_hash.as_deref().map(Digest::of),
        timeline: state.timeline.clone(),
        first_observed: state.first_observed,
        ctgov_history: state
            .ctgov_history
            .as_ref()
            .and_then(|h| serde_json::to_vec(h).ok()),
    };
    let mut out = Vec::with_capacity(160 + table.len());
    out.push(LAYOUT);
    // Serializing these plain fields into a Vec cannot fail; an empty state would only mean a
    // value that reads back as corrupt, never a wrong one.
    out.extend(postcard::to_allocvec(&wire).unwrap_or_default());
    out.extend_from_slice(table);
    out
}

/// The state of the `T` value `v` (key `k`, which names the trial), and its table's bytes.
pub(super) fn decode<'a>(k: &[u8], v: &'a [u8]) -> Result<(TrialState, &'a [u8])> {
    let bad = |why: String| corrupt(k, format!("trial state: {why}"));
    let nct: NctId = k
        .get(1..)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("its key names no trial".into()))?;
    let Some((&LAYOUT, body)) = v.split_first() else {
        return Err(bad(format!(
            "unknown layout {:?} (written by a newer trialwatch?)",
            v.first()
        )));
    };
    let (w, table): (Wire, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| bad(e.to_string()))?;
    let time = |(s, n): Instant| {
        DateTime::from_timestamp(s, n).ok_or_else(|| bad(format!("time {s}.{n} out of range")))
    };
    let state = TrialState {
        nct_id: nct,
        latest_version: w.latest_version,
        record_hash: w.record_hash.text(),
        first_seen_at: time(w.first_seen_at)?,
        last_seen_at: time(w.last_seen_at)?,
        resolved_id: w
            .resolved_id
            .map(|s| s.parse().map_err(|_| bad(format!("resolved ID {s:?}"))))
            .transpose()?,
        last_error: w.last_error,
        last_error_at: w.last_error_at.map(time).transpose()?,
        source_fingerprint: w.source_fingerprint.map(Digest::text),
        raw_hash: w.raw_hash.map(Digest::text),
        timeline: w.timeline,
        first_observed: w.first_observed,
        ctgov_history: w
            .ctgov_history
            .map(|j| serde_json::from_slice::<HistorySummary>(&j))
            .transpose()
            .map_err(|e| bad(format!("history summary: {e}")))?,
    };
    Ok((state, table))
}

/// The state and the version table of the `T` value `v`.
pub(super) fn decode_all(k: &[u8], v: &[u8]) -> Result<(TrialState, Vec<VersionBlobs>)> {
    let (state, table) = decode(k, v)?;
    Ok((state, decode_table(k, table)?))
}

#[cfg(test)]
mod tests {
    use super::super::keys::{encode_table, key};
    use super::super::pack::BlobRef;
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn full_state() -> TrialState {
        let nct: NctId = "NCT02985775".parse().unwrap();
        TrialState {
            nct_id: nct,
            latest_version: 7,
            record_hash: "83555fc6ecfa7e37aacababa8b29a7f2f3019692335b4fb1338c9d84e3008af5".into(),
            first_seen_at: at("2026-12-01T18:46:10.810360721Z"),
            last_seen_at: at("2026-12-02T06:00:00.000000001Z"),
            resolved_id: Some("NCT00000102".parse().unwrap()),
            last_error: Some("CT.gov answered 503".into()),
            last_error_at: Some(at("2026-12-02T06:00:01Z")),
            source_fingerprint: Some(
                "0e3436cb7d0d66b24b444d7a4a0324dc10769af9f502a4fc26544a900b89f9bc".into(),
            ),
            raw_hash: Some("d1e7de88d22d9f4c9d7f41cdc33003b5".into()),
            timeline: vec![3, 1, 2, 4, 5, 6, 7],
            first_observed: 1,
            ctgov_history: Some(HistorySummary {
                checked_at: at("2026-12-01T00:00:00Z"),
                latest_ctgov_version: Some(41),
                outcome_switch: None,
            }),
        }
    }

    #[test]
    fn a_state_and_its_table_read_back_equal_and_far_smaller_than_json() {
        let state = full_state();
        let k = key(b'T', &state.nct_id);
        let r = BlobRef {
            pack: 3,
            offset: 1 << 40,
            len: 70_000,
        };
        let table = encode_table(&[VersionBlobs {
            meta: r,
            record: r,
            raw: r,
        }]);
        let v = encode(&state, &table);
        let (back, rest) = decode(&k, &v).unwrap();
        assert_eq!(back, state);
        assert_eq!(rest, &table[..]);
        assert_eq!(decode_all(&k, &v).unwrap().1.len(), 1);
        let json = serde_json::to_vec(&state).unwrap().len();
        assert!(
            v.len() - table.len() < json / 2,
            "{} bytes against {json} as JSON",
            v.len() - table.len()
        );
        // An empty state (a trial only ever failed) too, and odd digests kept as text.
        let mut empty = TrialState::empty(&state.nct_id, at("2026-01-01T00:00:00Z"));
        empty.record_hash = "not hex".into();
        empty.raw_hash = Some("ABCDEF".into());
        let v = encode(&empty, &[]);
        assert_eq!(decode(&k, &v).unwrap(), (empty, &[][..]));
    }

    #[test]
    fn damaged_values_are_corrupt_errors_never_panics() {
        let state = full_state();
        let k = key(b'T', &state.nct_id);
        let v = encode(&state, &[]);
        for cut in 0..v.len() {
            assert!(decode(&k, &v[..cut]).is_err(), "cut at {cut}");
        }
        let mut newer = v.clone();
        newer[0] = 9;
        let e = decode(&k, &newer).unwrap_err().to_string();
        assert!(e.contains("newer trialwatch"), "{e}");
        assert!(decode(b"Tnot-an-id", &v).is_err());
        // A table of a length no entry divides is corrupt too.
        let mut odd = v;
        odd.push(1);
        assert!(decode_all(&k, &odd).is_err());
    }
}
