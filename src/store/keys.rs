//! The sled key layout and the encodings of the keys and of the small binary values (version
//! tables, time-index entries). Every key the store writes is built here.
//!
//! It does not hold the JSON shapes of the values (those are the types in [`super::versions`],
//! [`super::watch`], [`super::outbox`]) nor the blob encoding ([`super::codec`]).
//!
//! Key layout (`NCT` is the 11-byte canonical ID, `ver` a big-endian u32, so prefix scans
//! return versions in order):
//!
//! | key | value |
//! |---|---|
//! | `F` | store format version, u32 BE |
//! | `T` NCT | the trial's state and version table in one binary value (`trial_value.rs`): [`TrialState`] (latest version, record hash, last seen, last error…), then per version (1, 2, 3…) three 16-byte pack pointers, to zstd([`VersionMeta`] JSON: detected at, CT.gov last update, field changes), zstd(normalized record JSON) and zstd(raw CT.gov study JSON, kept so history can be re-normalized) |
//! | `c` time NCT ver | index of versions by detection time (µs since epoch, BE), for `changes`: the value lists the `(NCT, ver)` committed together at that time (15 bytes each); an empty value (format 1) means the one in the key |
//! | `W` NCT | [`WatchEntry`] JSON: the watch list kept in the store |
//! | `m` name | small JSON values of whole-store bookkeeping (last sync summary, …) |
//! | `S` sub | [`Subscription`] JSON: subscriptions added with `trialwatch subscribe` |
//! | `g` NCT ver | [`FanOut`] JSON: every alert a new version owes, written in the version's batch |
//! | `o` sub `/` NCT ver | [`OutboxEntry`] JSON: one alert owed to one subscription (pending or dead) |
//! | `d` due sub `/` NCT ver | empty: index of *pending* entries by next attempt time (µs BE), so due ones are one range scan |
//! | `D` sub | RFC 3339 JSON: when the subscription's last daily digest went out |
//! | `A` NCT | `deadlines::Told` JSON: the deadline events told about the trial |
//! | `Q` name | `QuerySpec` JSON: a query kept by `trialwatch query add` |
//! | `q` name | `QueryState` JSON: the query's last run |
//! | `M` name `\0` NCT | `Member` JSON: when the trial entered (and left) the query |
//! | `L` NCT | `ListRow` JSON: the trial's line of the web view's list, for the state it names (derived; kept by commits once the web view has listed the store; `list_rows.rs`) |
//!
//! Formats 2 and 3 kept the state as `t` NCT ([`TrialState`] JSON) and the table as `V` NCT;
//! format 1 also had `v`/`r`/`w` NCT ver keys holding each version's encoded metadata, record
//! and raw JSON inside sled; [`super::migrate`] moves them into the packs.
//!
//! [`TrialState`]: super::TrialState
//! [`VersionMeta`]: crate::model::VersionMeta
//! [`WatchEntry`]: super::WatchEntry
//! [`Subscription`]: crate::model::Subscription
//! [`FanOut`]: super::FanOut
//! [`OutboxEntry`]: super::OutboxEntry

use chrono::{DateTime, TimeZone, Utc};

use super::pack::BlobRef;
use super::{OutboxEntry, Result, StoreError, corrupt};
use crate::model::NctId;

/// `prefix` NCT: the key of a per-trial entry (`T`, `W`, …; formats 2–3's `t` and `V`).
pub(super) fn key(prefix: u8, nct: &NctId) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.push(prefix);
    k.extend_from_slice(nct.as_str().as_bytes());
    k
}

/// The trial a per-trial key ([`key`]) names, whatever its prefix; `None` when what follows
/// the prefix is not an NCT ID.
pub(super) fn nct_of(k: &[u8]) -> Option<NctId> {
    std::str::from_utf8(k.get(1..)?).ok()?.parse().ok()
}

/// `prefix` NCT ver: the key of a per-version entry (`g`, and format 1's `v`/`r`/`w`).
pub(super) fn vkey(prefix: u8, nct: &NctId, version: u32) -> Vec<u8> {
    let mut k = key(prefix, nct);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// `c` time NCT ver: a time-index key, named by the first `(NCT, ver)` committed at `at`.
pub(super) fn time_key(at: DateTime<Utc>, nct: &NctId, version: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.push(b'c');
    k.extend_from_slice(&micros_key(at));
    k.extend_from_slice(nct.as_str().as_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// A time as 8 key bytes that sort in time order, offset so that times before 1970 still sort
/// correctly as unsigned bytes.
pub(super) fn micros_key(at: DateTime<Utc>) -> [u8; 8] {
    ((at.timestamp_micros() as u64) ^ (1 << 63)).to_be_bytes()
}

/// `prefix` name: the key of an entry named by a string (`m` meta, `S` subscription, `D` digest
/// time).
pub(super) fn name_key(prefix: u8, name: &str) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(name.as_bytes());
    k
}

/// `o` sub `/`: the prefix of every outbox entry of one subscription.
pub(super) fn entries_prefix(sub: &str) -> Vec<u8> {
    let mut p = vec![b'o'];
    p.extend_from_slice(sub.as_bytes());
    p.push(b'/');
    p
}

/// The `o` key of the entry a `d` due-index key names.
pub(super) fn entry_key_of_due(due_key: &[u8]) -> Vec<u8> {
    let mut ok = vec![b'o'];
    ok.extend_from_slice(&due_key[9..]);
    ok
}

/// `d` due tail: a due-index key.
fn due_key(at: DateTime<Utc>, tail: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + tail.len());
    k.push(b'd');
    k.extend_from_slice(&micros_key(at));
    k.extend_from_slice(tail);
    k
}

/// An alert id's parts: subscription, trial (none for an event about no trial), version and
/// event key.
type AlertIdParts = (String, Option<NctId>, u32, Option<String>);

/// Parse an alert id back into its key tail: `{subscription}.{NCT}.v{version}`,
/// `{subscription}.{NCT}.{event key}` for an event (version 0), or `{subscription}.{event key}`
/// for an event about no trial (a health alert).
pub(super) fn parse_alert_id(id: &str) -> Option<AlertIdParts> {
    let mut parts = id.trim().splitn(3, '.');
    let (sub, second) = (parts.next()?, parts.next()?);
    let Some(last) = parts.next() else {
        // No trial: the second part is the event key (which never parses as an NCT ID).
        return (!second.is_empty() && second.parse::<NctId>().is_err())
            .then(|| (sub.to_string(), None, 0, Some(second.to_string())));
    };
    let nct = second.parse().ok()?;
    match last.strip_prefix('v').and_then(|v| v.parse().ok()) {
        Some(ver) => Some((sub.to_string(), Some(nct), ver, None)),
        None => Some((sub.to_string(), Some(nct), 0, Some(last.to_string()))),
    }
}

/// `sub` `/` NCT ver [event key]: the part of the `o` and `d` keys that names one outbox
/// entry; an event's entry (version 0) carries its key after the version. An event about no
/// trial is `sub` `/` event key: its key starts with a lower-case word (`health-…`), never with
/// `NCT`, so it cannot meet a trial's entry.
pub(super) fn entry_tail(
    sub: &str,
    nct: Option<&NctId>,
    version: u32,
    event: Option<&str>,
) -> Vec<u8> {
    let mut k = Vec::with_capacity(sub.len() + 16);
    k.extend_from_slice(sub.as_bytes());
    k.push(b'/');
    if let Some(nct) = nct {
        k.extend_from_slice(nct.as_str().as_bytes());
        k.extend_from_slice(&version.to_be_bytes());
    }
    if let Some(e) = event {
        k.extend_from_slice(e.as_bytes());
    }
    k
}

/// The keys of one outbox entry.
impl OutboxEntry {
    /// The part of the `o` and `d` keys that names this entry.
    fn tail(&self) -> Vec<u8> {
        entry_tail(
            &self.subscription_id,
            self.nct_id.as_ref(),
            self.version,
            self.event.as_ref().map(|e| e.key.as_str()),
        )
    }

    /// Its `o` key, which holds the entry.
    pub(crate) fn key(&self) -> Vec<u8> {
        let mut k = vec![b'o'];
        k.extend_from_slice(&self.tail());
        k
    }

    /// Its `d` key, present while the entry is pending.
    pub(crate) fn due_key(&self) -> Vec<u8> {
        due_key(self.next_attempt_at, &self.tail())
    }
}

/// Where one version's three blobs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct VersionBlobs {
    /// zstd([`StoredMeta`](super::codec::StoredMeta) JSON).
    pub(super) meta: BlobRef,
    /// zstd(normalized record canonical JSON).
    pub(super) record: BlobRef,
    /// zstd(raw CT.gov study JSON), whole at a keyframe, else a delta against it.
    pub(super) raw: BlobRef,
}

/// Bytes of one version-table entry: three pack pointers.
const TABLE_ENTRY: usize = 3 * BlobRef::BYTES;

/// A trial's version table (the tail of its `T` value): its versions' blob pointers, version 1
/// first.
pub(super) fn encode_table(entries: &[VersionBlobs]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * TABLE_ENTRY);
    for e in entries {
        out.extend_from_slice(&e.meta.to_bytes());
        out.extend_from_slice(&e.record.to_bytes());
        out.extend_from_slice(&e.raw.to_bytes());
    }
    out
}

/// A version table read back; `key` names it in errors.
pub(super) fn decode_table(key: &[u8], bytes: &[u8]) -> Result<Vec<VersionBlobs>> {
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

/// A time-index value: the `(NCT, version)` entries committed together, 15 bytes each.
pub(super) fn encode_time_entries(entries: &[(NctId, u32)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(entries.len() * 15);
    for (n, e) in entries {
        v.extend_from_slice(n.as_str().as_bytes());
        v.extend_from_slice(&e.to_be_bytes());
    }
    v
}

/// The `(NCT, version)` entries of one time-index key: its value's list, or (format 1, empty
/// value) the one in the key.
pub(super) fn decode_time_entries(k: &[u8], v: &[u8]) -> Result<Vec<(NctId, u32)>> {
    decode_time_entries_where(k, v, &|_, _| true)
}

/// [`decode_time_entries`], keeping only the entries `keep(trial number, version)` accepts;
/// an entry is judged on its bytes (a canonical ID is `NCT` and 8 digits), and only the kept
/// ones become [`NctId`]s. A malformed entry is an error whether kept or not.
pub(super) fn decode_time_entries_where(
    k: &[u8],
    v: &[u8],
    keep: &dyn Fn(u32, u32) -> bool,
) -> Result<Vec<(NctId, u32)>> {
    let bad = || corrupt(k, "bad time-index entry".into());
    if v.is_empty() {
        let (_, nct, ver) = decode_time_key(k).ok_or_else(bad)?;
        return Ok(if keep(nct.number(), ver) {
            vec![(nct, ver)]
        } else {
            Vec::new()
        });
    }
    if !v.len().is_multiple_of(15) {
        return Err(bad());
    }
    let mut out = Vec::new();
    for c in v.chunks_exact(15) {
        let ver = u32::from_be_bytes(c[11..].try_into().map_err(|_| bad())?);
        let digits = &c[3..11];
        if &c[..3] != b"NCT" || !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let number = digits
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        if !keep(number, ver) {
            continue;
        }
        let nct: NctId = std::str::from_utf8(&c[..11])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        out.push((nct, ver));
    }
    Ok(out)
}

/// How errors name one blob of one version (it has no sled key of its own).
pub(super) fn blob_label(nct: &NctId, version: u32, what: &str) -> Vec<u8> {
    format!("{nct} v{version} {what}").into_bytes()
}

/// `(NCT, version)` of a `v`/`r`/`w`/`g` key.
pub(super) fn decode_version_key(k: &[u8]) -> Result<(NctId, u32)> {
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

/// `(detected at, NCT, version)` of a `c` key.
pub(super) fn decode_time_key(k: &[u8]) -> Option<(DateTime<Utc>, NctId, u32)> {
    if k.len() != 1 + 8 + 11 + 4 {
        return None;
    }
    let micros = u64::from_be_bytes(k[1..9].try_into().ok()?) ^ (1 << 63);
    let at = Utc.timestamp_micros(micros as i64).single()?;
    let nct: NctId = std::str::from_utf8(&k[9..20]).ok()?.parse().ok()?;
    let ver = u32::from_be_bytes(k[20..24].try_into().ok()?);
    Some((at, nct, ver))
}

/// A range bound for key scans.
impl NctId {
    /// The smallest ID, used as a range bound.
    pub(super) fn min() -> NctId {
        // "NCT00000001" is valid by construction.
        "NCT00000001".parse().unwrap_or_else(|_| unreachable!())
    }
}
