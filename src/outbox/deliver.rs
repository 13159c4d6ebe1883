//! The delivery run: [`deliver_due`] expands the outbox, groups due entries by subscriber,
//! serves subscribers concurrently (each in order), and acknowledges, reschedules or buries
//! each entry. Also the operator's tools on the outbox: [`requeue`] and [`outbox_counts`], and
//! [`redact_addresses`] for logs.
//!
//! Not here: building the alerts (`compose`), the retry arithmetic (`retry`), the wire formats
//! and transports ([`crate::notify`]), the key layout of the outbox ([`crate::store`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::compose::{RenderCache, alert_for, alert_for_event, render_version};
use super::retry::after_failure;
use super::{DIGEST_INTERVAL, Subscriptions};
use crate::config::{AlertsConfig, Secret};
use crate::model::{Alert, DigestMode, Subscription, Target};
use crate::notify::{DeliveryError, Destination, Notifier};
use crate::store::{OutboxEntry, Store, StoreError};
use crate::util::secret::read_secret_file;

/// The destination to hand the notifier for `sub`, reading the webhook secret now (so a rotated
/// secret applies to alerts already pending).
pub fn destination(sub: &Subscription) -> Result<Destination, DeliveryError> {
    match &sub.target {
        Target::Email { address } => Ok(Destination::Email {
            to: address.clone(),
        }),
        Target::Webhook { url, secret_file } => {
            let secret = match secret_file {
                None => None,
                Some(path) => Some(Secret::new(read_secret_file(path).map_err(|e| {
                    DeliveryError::transient(format!(
                        "the webhook secret file {} {e}",
                        path.display()
                    ))
                })?)),
            };
            Ok(Destination::Webhook {
                url: url.clone(),
                secret,
            })
        }
        Target::Chat { service, url } => Ok(Destination::Chat {
            service: *service,
            url: url.clone(),
        }),
    }
}

/// What one delivery run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// Alerts the receivers accepted (and that left the outbox).
    pub delivered: usize,
    /// Emails and webhook calls that were accepted (a digest is one message for many alerts).
    pub messages: usize,
    /// Alerts that failed transiently and wait for a later attempt.
    pub retrying: usize,
    /// Alerts that became dead letters in this run.
    pub dead: usize,
    /// One line per subscriber that had a failure: `subscription id: error`.
    pub failures: Vec<String>,
    /// Store errors (the affected alerts stay in the outbox and are tried again).
    pub store_errors: Vec<String>,
}

impl DeliveryReport {
    fn merge(&mut self, o: DeliveryReport) {
        self.delivered += o.delivered;
        self.messages += o.messages;
        self.retrying += o.retrying;
        self.dead += o.dead;
        self.failures.extend(o.failures);
        self.store_errors.extend(o.store_errors);
    }

    /// Whether nothing failed: no subscriber failure and no store error (`trialwatch outbox
    /// deliver` exits with status 2 otherwise).
    pub fn all_ok(&self) -> bool {
        self.failures.is_empty() && self.store_errors.is_empty()
    }
}

/// Deliver every due alert once: render, send, acknowledge or reschedule. Subscribers are
/// served concurrently (at most `policy.concurrency` at once), each subscriber's alerts in
/// order. Never fails as a whole: problems are counted and described in the report.
pub async fn deliver_due(
    store: &Store,
    notifier: &Notifier,
    subs: &Subscriptions,
    policy: &AlertsConfig,
    now: DateTime<Utc>,
) -> DeliveryReport {
    let started = Instant::now();
    let mut report = DeliveryReport::default();
    // Expanding a big sync's fan-out records is seconds of store writes: keep it off the
    // async worker threads (the daemon's other tasks share them).
    let expanding = store.clone();
    match tokio::task::spawn_blocking(move || expanding.outbox_expand()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => report.store_errors.push(e.to_string()),
        Err(e) => report
            .store_errors
            .push(format!("expanding the outbox failed: {e}")),
    }
    let due = match store.outbox_due(now) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the outbox");
            report.store_errors.push(e.to_string());
            return report;
        }
    };
    if due.is_empty() {
        return report;
    }
    let mut groups: BTreeMap<String, Vec<OutboxEntry>> = BTreeMap::new();
    for e in due {
        groups.entry(e.subscription_id.clone()).or_default().push(e);
    }

    // Digest subscribers send all they hold (or exactly the alerts of a failed digest).
    let mut work: Vec<(Option<Subscription>, Vec<OutboxEntry>, Vec<OutboxEntry>)> = Vec::new();
    for (sub_id, entries) in groups {
        let sub = subs.get(&sub_id).cloned();
        match &sub {
            Some(s) if s.digest != DigestMode::Immediate => {
                let all: Vec<OutboxEntry> = match store.outbox_of(&sub_id) {
                    Ok(all) => all.into_iter().filter(|e| !e.is_dead()).collect(),
                    Err(e) => {
                        report.store_errors.push(e.to_string());
                        continue;
                    }
                };
                let (retried, fresh): (Vec<_>, Vec<_>) =
                    all.into_iter().partition(|e| e.attempts > 0);
                if retried.is_empty() {
                    work.push((sub, fresh, Vec::new()));
                } else if retried.iter().any(|e| e.next_attempt_at <= now) {
                    work.push((sub, retried, fresh));
                }
            }
            _ => work.push((sub, entries, Vec::new())),
        }
    }

    // Render each referenced version once.
    let mut cache: RenderCache = HashMap::new();
    for (_, entries, _) in &work {
        for e in entries.iter().filter(|e| e.event.is_none()) {
            if let Some(nct) = &e.nct_id {
                cache
                    .entry((nct.clone(), e.version))
                    .or_insert_with(|| render_version(store, nct, e.version).map(Arc::new));
            }
        }
    }
    let cache = Arc::new(cache);

    let limit = Arc::new(Semaphore::new(policy.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (sub, entries, rest) in work {
        let store = store.clone();
        let notifier = notifier.clone();
        let policy = policy.clone();
        let cache = cache.clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let ctx = SubscriberRun {
                store: &store,
                notifier: &notifier,
                policy: &policy,
                cache: &cache,
                now,
                started,
            };
            match sub {
                None => ctx.orphaned(entries),
                Some(sub) if sub.digest != DigestMode::Immediate => {
                    ctx.digest(&sub, entries, rest).await
                }
                Some(sub) => ctx.immediate(&sub, entries).await,
            }
        });
    }
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok(r) => report.merge(r),
            Err(e) => report
                .store_errors
                .push(format!("a delivery task failed: {e}")),
        }
    }
    if report.delivered + report.retrying + report.dead > 0 {
        tracing::info!(
            outbox.delivered = report.delivered,
            outbox.messages = report.messages,
            outbox.retrying = report.retrying,
            outbox.dead = report.dead,
            outbox.duration_ms = started.elapsed().as_millis() as u64,
            "delivery run finished"
        );
    }
    report
}

/// What one subscriber's delivery task needs.
struct SubscriberRun<'a> {
    store: &'a Store,
    notifier: &'a Notifier,
    policy: &'a AlertsConfig,
    cache: &'a RenderCache,
    /// The run's clock; `started` advances it so a reschedule counts from the failure.
    now: DateTime<Utc>,
    started: Instant,
}

impl SubscriberRun<'_> {
    fn at(&self) -> DateTime<Utc> {
        self.now + chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default()
    }

    fn rendered(&self, e: &OutboxEntry) -> Result<Alert, String> {
        if let Some(event) = &e.event {
            return Ok(alert_for_event(e, event));
        }
        let Some(nct) = &e.nct_id else {
            return Err(format!("{} names neither a trial nor an event", e.id()));
        };
        match self.cache.get(&(nct.clone(), e.version)) {
            Some(Ok(r)) => Ok(alert_for(e, r)),
            Some(Err(msg)) => Err(msg.clone()),
            None => Err(format!("{nct} version {} was not rendered", e.version)),
        }
    }

    /// Write bookkeeping; a store error is reported and the alert stays as it was (so it is
    /// retried: repeated, never lost).
    fn update(&self, rep: &mut DeliveryReport, changes: &[(OutboxEntry, OutboxEntry)]) {
        if let Err(e) = self.store.outbox_update(changes) {
            tracing::warn!(error = %e, "cannot update the outbox");
            rep.store_errors.push(e.to_string());
        }
    }

    fn ack(&self, rep: &mut DeliveryReport, entries: &[OutboxEntry], digest: Option<&str>) {
        match self
            .store
            .outbox_remove(entries, digest.map(|id| (id, self.at())))
        {
            Ok(()) => {
                rep.delivered += entries.len();
                rep.messages += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, "delivered alert not removed from the outbox; it will be sent again");
                rep.store_errors.push(e.to_string());
            }
        }
    }

    fn fail(
        &self,
        rep: &mut DeliveryReport,
        sub_id: &str,
        entries: &[OutboxEntry],
        err: &DeliveryError,
    ) -> Vec<OutboxEntry> {
        let at = self.at();
        let changes: Vec<(OutboxEntry, OutboxEntry)> = entries
            .iter()
            .map(|e| {
                (
                    e.clone(),
                    after_failure(e, err, at, self.policy, fastrand::f64()),
                )
            })
            .collect();
        for (_, n) in &changes {
            if n.is_dead() {
                rep.dead += 1;
            } else {
                rep.retrying += 1;
            }
        }
        tracing::warn!(
            subscription.id = sub_id,
            alerts = entries.len(),
            transient = err.transient,
            error = %redact_addresses(&err.message),
            "alert delivery failed"
        );
        rep.failures.push(format!("{sub_id}: {}", err.message));
        self.update(rep, &changes);
        changes.into_iter().map(|(_, n)| n).collect()
    }

    /// Entries whose subscription no longer exists become dead letters.
    fn orphaned(&self, entries: Vec<OutboxEntry>) -> DeliveryReport {
        let mut rep = DeliveryReport::default();
        let sub_id = entries
            .first()
            .map(|e| e.subscription_id.clone())
            .unwrap_or_default();
        let err = DeliveryError::permanent(format!(
            "subscription {sub_id} no longer exists (removed from the configuration?); `trialwatch outbox drop` these alerts, or restore the subscription and `trialwatch outbox retry`"
        ));
        self.fail(&mut rep, &sub_id, &entries, &err);
        rep
    }

    async fn immediate(&self, sub: &Subscription, entries: Vec<OutboxEntry>) -> DeliveryReport {
        let mut rep = DeliveryReport::default();
        let dest = match destination(sub) {
            Ok(d) => d,
            Err(err) => {
                self.fail(&mut rep, &sub.id, &entries, &err);
                return rep;
            }
        };
        let mut i = 0;
        while i < entries.len() {
            let entry = &entries[i];
            let alert = match self.rendered(entry) {
                Ok(a) => a,
                Err(msg) => {
                    let err = DeliveryError::permanent(msg);
                    self.fail(&mut rep, &sub.id, std::slice::from_ref(entry), &err);
                    i += 1;
                    continue;
                }
            };
            match self.notifier.deliver(&dest, &[alert]).await {
                Ok(()) => {
                    tracing::debug!(subscription.id = %sub.id, alert.id = %entry.id(), "alert delivered");
                    self.ack(&mut rep, std::slice::from_ref(entry), None);
                }
                Err(err) if err.transient => {
                    let failed = self.fail(&mut rep, &sub.id, std::slice::from_ref(entry), &err);
                    // The receiver is unwell: the alerts behind this one wait for the same
                    // retry instead of each waiting for its own timeout now.
                    let retry_at = failed
                        .first()
                        .filter(|n| !n.is_dead())
                        .map_or(self.at(), |n| n.next_attempt_at);
                    let later: Vec<(OutboxEntry, OutboxEntry)> = entries[i + 1..]
                        .iter()
                        .map(|e| {
                            let mut n = e.clone();
                            n.next_attempt_at = retry_at.max(e.next_attempt_at);
                            (e.clone(), n)
                        })
                        .collect();
                    rep.retrying += later.len();
                    self.update(&mut rep, &later);
                    return rep;
                }
                Err(err) => {
                    self.fail(&mut rep, &sub.id, std::slice::from_ref(entry), &err);
                }
            }
            i += 1;
        }
        rep
    }

    /// One message with `group`; on success the alerts not in it (`rest`) wait for the next
    /// digest, 24 h later.
    async fn digest(
        &self,
        sub: &Subscription,
        group: Vec<OutboxEntry>,
        rest: Vec<OutboxEntry>,
    ) -> DeliveryReport {
        let mut rep = DeliveryReport::default();
        let dest = match destination(sub) {
            Ok(d) => d,
            Err(err) => {
                self.fail(&mut rep, &sub.id, &group, &err);
                return rep;
            }
        };
        let mut alerts = Vec::new();
        let mut sendable = Vec::new();
        for e in group {
            match self.rendered(&e) {
                Ok(a) => {
                    alerts.push(a);
                    sendable.push(e);
                }
                Err(msg) => {
                    self.fail(&mut rep, &sub.id, &[e], &DeliveryError::permanent(msg));
                }
            }
        }
        if alerts.is_empty() {
            return rep;
        }
        match self.notifier.deliver(&dest, &alerts).await {
            Ok(()) => {
                self.ack(&mut rep, &sendable, Some(&sub.id));
                let interval = sub.digest.interval().unwrap_or(DIGEST_INTERVAL);
                let next = self.at() + chrono::Duration::from_std(interval).unwrap_or_default();
                let later: Vec<(OutboxEntry, OutboxEntry)> = rest
                    .into_iter()
                    .map(|e| {
                        let mut n = e.clone();
                        n.next_attempt_at = next;
                        (e, n)
                    })
                    .collect();
                self.update(&mut rep, &later);
            }
            Err(err) => {
                self.fail(&mut rep, &sub.id, &sendable, &err);
            }
        }
        rep
    }
}

/// A message with every word that holds an `@` (an email address, an SMTP reply naming the
/// recipient) replaced, so logs never carry a subscriber's address. The outbox keeps the full
/// message for the operator's `trialwatch outbox`.
pub fn redact_addresses(message: &str) -> String {
    message
        .split(' ')
        .map(|w| if w.contains('@') { "[address]" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `(pending, dead)` alert counts, for `status`.
pub fn outbox_counts(store: &Store) -> Result<(usize, usize), StoreError> {
    store.outbox_counts()
}

/// Put dead or waiting alerts back in line for an attempt at `now`, with a fresh give-up window.
/// `ids` empty means every alert in the outbox. Returns how many were requeued; unknown IDs
/// are returned separately.
pub fn requeue(
    store: &Store,
    ids: &[String],
    now: DateTime<Utc>,
) -> Result<(usize, Vec<String>), StoreError> {
    let mut unknown = Vec::new();
    let entries = if ids.is_empty() {
        store.outbox_all()?
    } else {
        let mut v = Vec::new();
        for id in ids {
            match store.outbox_entry(id)? {
                Some(e) => v.push(e),
                None => unknown.push(id.clone()),
            }
        }
        v
    };
    let changes: Vec<(OutboxEntry, OutboxEntry)> = entries
        .into_iter()
        .map(|e| {
            let mut n = e.clone();
            n.dead_at = None;
            n.attempts = 0;
            n.window_start = now;
            n.next_attempt_at = now;
            (e, n)
        })
        .collect();
    store.outbox_update(&changes)?;
    Ok((changes.len(), unknown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_errors_carry_no_address() {
        assert_eq!(
            redact_addresses("550 5.1.1 <bob@example.org>: unknown user"),
            "550 5.1.1 [address] unknown user"
        );
    }
}
