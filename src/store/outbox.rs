//! The store's side of alerting: stored subscriptions, the fan-out record a new version's batch
//! writes ([`FanOut`]), the outbox entries it expands into ([`OutboxEntry`]) and their due index,
//! and the last-digest times.
//!
//! Outbox entries are small: they reference the stored version and the matching paths, and the
//! alert is rendered from the stored version at delivery time. The version's batch holds one
//! `g` fan-out record for all its alerts (one key instead of two per alert keeps a sync that
//! owes 100,000 alerts fast); the first outbox operation after it expands the record into the
//! per-alert `o`/`d` entries, in one atomic batch per record. The entry key (and so the alert's
//! idempotency key) is derived from subscription, trial and version, so enqueueing is idempotent.
//!
//! It does not decide which alerts a version owes, nor retry or deliver them: that is the
//! crate's `outbox` module, above the store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::{from_json, to_json};
use super::keys::{
    decode_version_key, entries_prefix, entry_key_of_due, entry_tail, micros_key, name_key,
    parse_alert_id,
};
use super::{Result, Store};
use crate::model::{AlertEvent, NctId, Subscription};

/// One alert a new version owes one subscription, as the sync computed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwedAlert {
    /// The subscription the alert goes to.
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
    /// The alerts, grouped by what they report and when they are due.
    pub groups: Vec<FanOutGroup>,
}

/// Subscriptions owed the same paths, due at the same time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanOutGroup {
    /// The version's change paths these subscriptions hear about.
    pub paths: Vec<String>,
    /// Their first delivery attempt.
    pub due: DateTime<Utc>,
    /// The subscriptions owed this alert, by ID.
    pub subscriptions: Vec<String>,
}

impl FanOut {
    /// Group `alerts` by `(paths, due)`, keeping their first-seen order.
    pub(super) fn new(created_at: DateTime<Utc>, alerts: Vec<OwedAlert>) -> FanOut {
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
    /// The subscription the alert goes to.
    pub subscription_id: String,
    /// The trial whose version the alert reports; absent for an event about no trial (a health
    /// alert). Entries written before health alerts always carry one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nct_id: Option<NctId>,
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
    /// When the last failed attempt was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed, for `trialwatch outbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Set when the entry became a dead letter: it waits for `outbox retry` or `outbox drop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_at: Option<DateTime<Utc>>,
    /// An event that is no version (a trial entering or leaving a query), rendered when it
    /// happened; `version` is then 0. Absent in entries written before events existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<AlertEvent>,
}

impl OutboxEntry {
    /// The alert's idempotency key, stable across retries and restarts:
    /// `{subscription}.{NCT}.v{version}`, `{subscription}.{NCT}.{event key}` for an event, or
    /// `{subscription}.{event key}` for an event about no trial (valid as the left part of a
    /// Message-ID).
    pub fn id(&self) -> String {
        match (&self.event, &self.nct_id) {
            (Some(ev), Some(nct)) => format!("{}.{nct}.{}", self.subscription_id, ev.key),
            (Some(ev), None) => format!("{}.{}", self.subscription_id, ev.key),
            (None, Some(nct)) => format!("{}.{nct}.v{}", self.subscription_id, self.version),
            // Cannot be written (an entry without a trial is an event), but named all the same.
            (None, None) => format!("{}.v{}", self.subscription_id, self.version),
        }
    }

    /// Whether the entry is a dead letter (no longer retried, not in the due index).
    pub fn is_dead(&self) -> bool {
        self.dead_at.is_some()
    }
}

/// Subscriptions and the outbox.
impl Store {
    /// Store a subscription, replacing one with the same ID.
    pub fn subscription_put(&self, sub: &Subscription) -> Result<()> {
        self.writing()?
            .insert(name_key(b'S', &sub.id), to_json(sub))?;
        Ok(())
    }

    /// One stored subscription by ID.
    pub fn subscription(&self, id: &str) -> Result<Option<Subscription>> {
        let k = name_key(b'S', id);
        self.get_json(&k)
    }

    /// Subscriptions kept in the store, by ID.
    pub fn subscriptions(&self) -> Result<Vec<Subscription>> {
        self.scan_json(b"S")
    }

    /// Remove a stored subscription and every alert it still owes, in one atomic batch.
    /// Returns `None` when there is no such stored subscription, else the alerts dropped.
    pub fn subscription_remove(&self, id: &str) -> Result<Option<usize>> {
        let k = name_key(b'S', id);
        if self.db()?.get(&k)?.is_none() {
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
        batch.remove(name_key(b'D', id));
        self.writing()?.apply_batch(batch)?;
        Ok(Some(entries.len()))
    }

    /// When the subscription's last daily digest was sent.
    pub fn last_digest(&self, sub: &str) -> Result<Option<DateTime<Utc>>> {
        let k = name_key(b'D', sub);
        self.get_json(&k)
    }

    /// Turn every `g` fan-out record into per-alert entries, one atomic batch per record.
    /// Every outbox reader calls this first; it costs one empty prefix scan when there is
    /// nothing to expand.
    pub fn outbox_expand(&self) -> Result<usize> {
        if self.db()?.scan_prefix(b"g").next().is_none() {
            return Ok(0);
        }
        let _guard = self
            .expand_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut expanded = 0;
        for kv in self.db()?.scan_prefix(b"g") {
            let (k, v) = kv?;
            let fan: FanOut = from_json(&k, &v)?;
            let (nct, version) = decode_version_key(&k)?;
            let mut batch = sled::Batch::default();
            batch.remove(k.clone());
            for group in fan.groups {
                for sub in group.subscriptions {
                    let entry = OutboxEntry {
                        subscription_id: sub,
                        nct_id: Some(nct.clone()),
                        version,
                        paths: group.paths.clone(),
                        created_at: fan.created_at,
                        window_start: fan.created_at,
                        attempts: 0,
                        next_attempt_at: group.due,
                        last_attempt_at: None,
                        last_error: None,
                        dead_at: None,
                        event: None,
                    };
                    batch.insert(entry.due_key(), &[][..]);
                    batch.insert(entry.key(), to_json(&entry));
                    expanded += 1;
                }
            }
            self.writing()?.apply_batch(batch)?;
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
        self.scan_entries(entries_prefix(sub))
    }

    /// The outbox entries under `prefix`, without expanding fan-out records first.
    pub(super) fn scan_entries(&self, prefix: Vec<u8>) -> Result<Vec<OutboxEntry>> {
        self.scan_json(prefix)
    }

    /// One entry by its alert id (`{subscription}.{NCT}.v{version}`).
    pub fn outbox_entry(&self, id: &str) -> Result<Option<OutboxEntry>> {
        let Some((sub, nct, version, event)) = parse_alert_id(id) else {
            return Ok(None);
        };
        self.outbox_expand()?;
        let mut k = vec![b'o'];
        k.extend_from_slice(&entry_tail(&sub, nct.as_ref(), version, event.as_deref()));
        self.get_json(&k)
    }

    /// Pending entries whose next attempt is at or before `now`, soonest first: one range scan
    /// of the due index.
    pub fn outbox_due(&self, now: DateTime<Utc>) -> Result<Vec<OutboxEntry>> {
        self.outbox_expand()?;
        let mut end = vec![b'd'];
        end.extend_from_slice(&micros_key(now));
        end.push(0xff);
        let mut out = Vec::new();
        for kv in self.db()?.range(&b"d"[..]..end.as_slice()) {
            let (k, _) = kv?;
            let ok = entry_key_of_due(&k);
            // An index key without its entry can only come from a bug; skip it rather than stall.
            if let Some(v) = self.db()?.get(&ok)? {
                out.push(from_json(&ok, &v)?);
            }
        }
        Ok(out)
    }

    /// The soonest next attempt of any pending entry. Only the tests ask (delivery polls
    /// [`Store::outbox_due`]).
    #[cfg(test)]
    pub(super) fn outbox_next_due(&self) -> Result<Option<DateTime<Utc>>> {
        use super::StoreError;
        use chrono::TimeZone;
        self.outbox_expand()?;
        match self.db()?.scan_prefix(b"d").next() {
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
        if let Some((pending, dead)) = self.heads_facts().and_then(|f| f.outbox) {
            return Ok((pending as usize, dead as usize));
        }
        self.outbox_expand()?;
        let mut pending = 0;
        for kv in self.db()?.scan_prefix(b"d") {
            kv?;
            pending += 1;
        }
        let mut total: usize = 0;
        for kv in self.db()?.scan_prefix(b"o") {
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
        self.writing()?.apply_batch(batch)?;
        Ok(())
    }

    /// Add event entries no version or query write carries (health alerts), with their
    /// due-index keys, in one atomic batch. An entry already there (same idempotency key) is
    /// kept as it is, so enqueueing the same event twice is one alert.
    pub fn outbox_add(&self, entries: &[OutboxEntry]) -> Result<usize> {
        let mut batch = sled::Batch::default();
        let mut added = 0;
        for e in entries {
            if self.db()?.get(e.key())?.is_some() {
                continue;
            }
            batch.insert(e.due_key(), &[][..]);
            batch.insert(e.key(), to_json(e));
            added += 1;
        }
        self.writing()?.apply_batch(batch)?;
        Ok(added)
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
            batch.insert(name_key(b'D', sub), to_json(&at));
        }
        self.writing()?.apply_batch(batch)?;
        Ok(())
    }
}
