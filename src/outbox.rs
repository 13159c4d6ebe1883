//! Subscriptions and the durable outbox: who hears about which change, which alerts a new
//! version owes, and their delivery with retries, backoff, give-up and dead letters.
//!
//! This module owns the *policy*; it does not own the storage (key layout and atomic batches
//! are in [`crate::store`]) nor the wire formats (email and webhook bodies, SMTP/HTTP and the
//! classification of failures are in [`crate::notify`]).
//!
//! The life of an alert:
//! 1. A sync stores a new version (not a first snapshot). [`EnqueuePlan::owed`] matches it
//!    against every subscription; the version and one outbox entry per matching subscription
//!    are written by one atomic store batch.
//! 2. [`deliver_due`] (after each sync and on the daemon's timer) renders each due entry into an
//!    [`Alert`] from the stored version and sends it. Subscribers are served concurrently
//!    (bounded by `alerts.concurrency`), each in order, so one failing subscriber delays no one.
//! 3. An entry is removed only after the receiver accepted it (SMTP 250, HTTP 2xx). A transient
//!    failure reschedules it with capped exponential backoff and jitter (never sooner than a
//!    `Retry-After`), until `alerts.give_up_after_hours` have passed since it was enqueued; then,
//!    or at once on a permanent failure, it becomes a dead letter kept for `trialwatch outbox`.
//!
//! Every alert's idempotency key is `{subscription}.{NCT}.v{version}`: the email's Message-ID
//! and the webhook's event id. It never changes across retries, so a crash between send and
//! acknowledgement repeats an alert the receiver can recognise, and never loses one.
//!
//! Daily digests: an alert for a `digest = "daily"` subscription is due 24 h after the
//! subscription's previous digest (or 24 h after it was enqueued when no digest was sent yet).
//! The first delivery run at or after that time sends one message with all of the
//! subscription's pending alerts. A digest that failed is retried with exactly the alerts it
//! held, so its Message-ID stays the same.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{AlertsConfig, Config, Secret};
use crate::model::Severity;
use crate::model::{
    Alert, AlertChange, DigestMode, FieldChange, NctId, Record, Subscription, Target, TrialInfo,
    WatchedFields,
};
use crate::notify::{DeliveryError, Destination, Notifier};
use crate::severity::assess;
use crate::store::{OutboxEntry, OwedAlert, Store, StoreError};
use crate::util::backoff::equal_jitter;
use crate::util::secret::read_secret_file;

/// The time between two daily digests of one subscription.
pub const DIGEST_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The destination to hand the notifier for `sub`, reading the webhook secret now (so a rotated
/// secret applies to alerts already pending).
fn destination(sub: &Subscription) -> Result<Destination, DeliveryError> {
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
    }
}

/// Every subscription in force: the configuration's, then the store's, plus the watched
/// fields that subscriptions without their own `fields` follow.
#[derive(Debug, Clone, Default)]
pub struct Subscriptions {
    pub list: Vec<Subscription>,
    pub watched: WatchedFields,
}

impl Subscriptions {
    /// The configuration's subscriptions merged with the store's (the same content declared in
    /// both is one subscription, the configuration's).
    pub fn load(cfg: &Config, store: &Store) -> Result<Subscriptions, StoreError> {
        let mut list = cfg.subscriptions.clone();
        for s in store.subscriptions()? {
            // `cfg-` and `sub-` IDs share the content hash after the prefix.
            if !list.iter().any(|c| c.id.get(4..) == s.id.get(4..)) {
                list.push(s);
            }
        }
        Ok(Subscriptions {
            list,
            watched: cfg.mirror.fields.clone(),
        })
    }

    pub fn get(&self, id: &str) -> Option<&Subscription> {
        self.list.iter().find(|s| s.id == id)
    }
}

/// What one sync needs to decide the alerts of each new version: the subscriptions and, for
/// digest subscriptions, when their next digest is due. Built once per sync.
#[derive(Debug, Clone)]
pub struct EnqueuePlan {
    subs: Arc<Subscriptions>,
    /// First attempt time per daily-digest subscription.
    digest_due: HashMap<String, DateTime<Utc>>,
    now: DateTime<Utc>,
}

impl EnqueuePlan {
    pub fn new(
        subs: Arc<Subscriptions>,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<EnqueuePlan, StoreError> {
        let mut digest_due = HashMap::new();
        for s in subs.list.iter().filter(|s| s.digest == DigestMode::Daily) {
            let due = match store.last_digest(&s.id)? {
                Some(last) => (last + DIGEST_INTERVAL).max(now),
                None => now + DIGEST_INTERVAL,
            };
            digest_due.insert(s.id.clone(), due);
        }
        Ok(EnqueuePlan {
            subs,
            digest_due,
            now,
        })
    }

    /// The alerts a new version of `nct` owes. A first snapshot (`old` is `None`) owes none.
    pub fn owed(
        &self,
        nct: &NctId,
        old: Option<&Record>,
        new: &Record,
        changes: &[FieldChange],
    ) -> Vec<OwedAlert> {
        if old.is_none() || self.subs.list.is_empty() {
            return Vec::new();
        }
        let assessed: Vec<(&FieldChange, Severity)> =
            changes.iter().map(|c| (c, assess(c, old, new).0)).collect();
        self.subs
            .list
            .iter()
            .filter_map(|s| {
                let paths = s.matching_paths(nct, &assessed, &self.subs.watched);
                (!paths.is_empty()).then(|| OwedAlert {
                    subscription_id: s.id.clone(),
                    paths,
                    due: self.digest_due.get(&s.id).copied().unwrap_or(self.now),
                })
            })
            .collect()
    }
}

/// How long to wait after the `attempts`-th failure (1-based): `base · 2^(attempts-1)`, capped,
/// with "equal jitter" (a uniform draw from the upper half) so that retries of many alerts
/// spread out without ever coming sooner than half the nominal delay. `unit` is in [0, 1).
pub fn retry_delay(attempts: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    equal_jitter(base, cap, attempts, unit)
}

/// The bookkeeping after a failed attempt at `at`: rescheduled with backoff, or dead when the
/// failure is permanent or the give-up age has passed.
pub fn after_failure(
    entry: &OutboxEntry,
    err: &DeliveryError,
    at: DateTime<Utc>,
    policy: &AlertsConfig,
    unit: f64,
) -> OutboxEntry {
    let mut e = entry.clone();
    e.attempts += 1;
    e.last_attempt_at = Some(at);
    let age = (at - e.window_start).to_std().unwrap_or_default();
    if !err.transient {
        e.last_error = Some(format!("permanent: {}", err.message));
        e.dead_at = Some(at);
    } else if age >= policy.give_up_after {
        e.last_error = Some(format!(
            "gave up after {} attempts over {}: {}",
            e.attempts,
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            err.message
        ));
        e.dead_at = Some(at);
    } else {
        let delay = retry_delay(e.attempts, policy.retry_base, policy.retry_cap, unit)
            .max(err.retry_after.unwrap_or_default());
        e.last_error = Some(err.message.clone());
        e.next_attempt_at = at + chrono::Duration::from_std(delay).unwrap_or_default();
    }
    e
}

/// A ready sender of alerts: the notifier the configuration describes. The one way the daemon's
/// timer, `trialwatch sync` and `trialwatch outbox deliver` deliver what is due: build it (which
/// checks the SMTP settings), then [`Delivery::run`].
pub struct Delivery {
    /// Built once per run: the SMTP transport and the webhook HTTP client.
    notifier: Notifier,
}

impl Delivery {
    /// Checks the `[smtp]` and `[alerts]` settings and builds the transports.
    pub fn new(cfg: &Config) -> Result<Delivery, crate::notify::SetupError> {
        Ok(Delivery {
            notifier: Notifier::new(cfg.smtp.clone(), cfg.alerts.webhook_timeout)?,
        })
    }

    /// One delivery pass: reads the subscriptions (fresh: `subscribe` may have added some),
    /// sends everything due now, and flushes the store so acknowledged alerts stay gone.
    pub async fn run(&self, cfg: &Config, store: &Store) -> Result<DeliveryReport, StoreError> {
        let subs = Subscriptions::load(cfg, store)?;
        let report = deliver_due(
            store,
            &self.notifier,
            &subs,
            &cfg.alerts,
            crate::clock::now(),
        )
        .await;
        store.flush()?;
        Ok(report)
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

    pub fn all_ok(&self) -> bool {
        self.failures.is_empty() && self.store_errors.is_empty()
    }
}

/// One stored version rendered once and shared by every alert about it.
#[derive(Debug)]
struct RenderedVersion {
    detected_at: DateTime<Utc>,
    trial: TrialInfo,
    changes: Vec<AlertChange>,
}

type RenderCache = HashMap<(NctId, u32), Result<Arc<RenderedVersion>, String>>;

fn render_version(store: &Store, nct: &NctId, version: u32) -> Result<RenderedVersion, String> {
    let missing = || format!("{nct} version {version} is no longer in the store");
    let meta = store
        .version(nct, version)
        .map_err(|e| e.to_string())?
        .ok_or_else(missing)?;
    let new = store
        .record(nct, version)
        .map_err(|e| e.to_string())?
        .ok_or_else(missing)?;
    let old = if version > 1 {
        store.record(nct, version - 1).map_err(|e| e.to_string())?
    } else {
        None
    };
    let changes = meta
        .changes
        .iter()
        .map(|c| {
            let (severity, summary) = assess(c, old.as_ref(), &new);
            AlertChange {
                change: c.clone(),
                severity,
                summary,
            }
        })
        .collect();
    Ok(RenderedVersion {
        detected_at: meta.detected_at,
        trial: TrialInfo {
            title: new.title().map(str::to_string),
            overall_status: new.overall_status().map(str::to_string),
            url: nct.ctgov_url(),
        },
        changes,
    })
}

/// The alert an outbox entry stands for, rendered from its stored version.
fn alert_for(entry: &OutboxEntry, rendered: &RenderedVersion) -> Alert {
    let wanted: HashSet<&str> = entry.paths.iter().map(String::as_str).collect();
    Alert {
        id: entry.id(),
        subscription_id: entry.subscription_id.clone(),
        nct_id: entry.nct_id.clone(),
        version: entry.version,
        detected_at: rendered.detected_at,
        trial: rendered.trial.clone(),
        changes: rendered
            .changes
            .iter()
            .filter(|c| wanted.contains(c.change.path.as_str()))
            .cloned()
            .collect(),
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
            Some(s) if s.digest == DigestMode::Daily => {
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
        for e in entries {
            cache
                .entry((e.nct_id.clone(), e.version))
                .or_insert_with(|| render_version(store, &e.nct_id, e.version).map(Arc::new));
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
                Some(sub) if sub.digest == DigestMode::Daily => {
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
        match self.cache.get(&(e.nct_id.clone(), e.version)) {
            Some(Ok(r)) => Ok(alert_for(e, r)),
            Some(Err(msg)) => Err(msg.clone()),
            None => Err(format!(
                "{} version {} was not rendered",
                e.nct_id, e.version
            )),
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
                let next =
                    self.at() + chrono::Duration::from_std(DIGEST_INTERVAL).unwrap_or_default();
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
    use crate::model::{ChangeKind, FieldPattern, Origin};
    use serde_json::json;

    fn nct(s: &str) -> NctId {
        s.parse().unwrap()
    }

    fn change(path: &str, old: &str, new: &str) -> FieldChange {
        FieldChange {
            path: path.into(),
            kind: ChangeKind::Changed,
            old: Some(json!(old)),
            new: Some(json!(new)),
        }
    }

    fn sub(fields: &[&str], ncts: &[&str], min: Severity) -> Subscription {
        Subscription::new(
            Origin::Store,
            Target::Email {
                address: "a@example.org".into(),
            },
            ncts.iter().map(|s| nct(s)).collect(),
            fields.iter().map(|f| FieldPattern::new(*f)).collect(),
            min,
            DigestMode::Immediate,
            None,
        )
    }

    #[test]
    fn matching_follows_trials_fields_and_severity() {
        let watched = WatchedFields::default();
        let status = change("status.overallStatus", "RECRUITING", "COMPLETED");
        let title = change("identification.briefTitle", "a", "b");
        let date = change("status.lastUpdatePostDate", "2024-01-01", "2024-02-01");
        let changes = [
            (&status, Severity::Notable),
            (&title, Severity::Minor),
            (&date, Severity::Minor),
        ];
        let a = nct("NCT02241018");
        let b = nct("NCT02985775");
        let status_sub = sub(&["status.overallStatus"], &[], Severity::Minor);
        assert_eq!(
            status_sub.matching_paths(&a, &changes, &watched),
            ["status.overallStatus"]
        );
        // Default fields are the watched ones: the title is not watched, the date is.
        let all = sub(&[], &[], Severity::Minor);
        assert_eq!(
            all.matching_paths(&a, &changes, &watched),
            ["status.overallStatus", "status.lastUpdatePostDate"]
        );
        let other_trial = sub(&[], &["NCT02985775"], Severity::Minor);
        assert!(
            other_trial
                .matching_paths(&a, &changes, &watched)
                .is_empty()
        );
        assert!(
            !other_trial
                .matching_paths(&b, &changes, &watched)
                .is_empty()
        );
        let critical = sub(&[], &[], Severity::Critical);
        assert!(critical.matching_paths(&a, &changes, &watched).is_empty());
        let eligibility = sub(&["eligibility.*"], &[], Severity::Minor);
        assert!(
            eligibility
                .matching_paths(&a, &changes, &watched)
                .is_empty()
        );
        let wildcard = sub(&["status.*"], &[], Severity::Notable);
        assert_eq!(
            wildcard.matching_paths(&a, &changes, &watched),
            ["status.overallStatus"]
        );
    }

    #[test]
    fn ids_are_stable_and_ignore_order() {
        let a = sub(
            &["status.overallStatus", "design.phases"],
            &["NCT02241018", "NCT02985775"],
            Severity::Minor,
        );
        let b = sub(
            &["design.phases", "status.overallStatus"],
            &["NCT02985775", "NCT02241018"],
            Severity::Minor,
        );
        assert_eq!(a.id, b.id);
        assert!(a.id.starts_with("sub-") && a.id.len() == 14, "{}", a.id);
        let c = sub(&["design.phases"], &[], Severity::Minor);
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_the_upper_half() {
        let base = Duration::from_secs(30);
        let cap = Duration::from_secs(3600);
        assert_eq!(retry_delay(1, base, cap, 0.0), Duration::from_secs(15));
        assert_eq!(retry_delay(1, base, cap, 1.0), Duration::from_secs(30));
        assert_eq!(retry_delay(2, base, cap, 1.0), Duration::from_secs(60));
        assert_eq!(retry_delay(4, base, cap, 1.0), Duration::from_secs(240));
        assert_eq!(retry_delay(20, base, cap, 1.0), cap);
        assert_eq!(retry_delay(u32::MAX, base, cap, 0.0), cap / 2);
        for i in 0..100 {
            let d = retry_delay(3, base, cap, f64::from(i) / 100.0);
            assert!(d >= Duration::from_secs(60) && d <= Duration::from_secs(120));
        }
    }

    fn entry(created: &str) -> OutboxEntry {
        let t: DateTime<Utc> = created.parse().unwrap();
        OutboxEntry {
            subscription_id: "sub-0123456789".into(),
            nct_id: nct("NCT02241018"),
            version: 2,
            paths: vec!["status.overallStatus".into()],
            created_at: t,
            window_start: t,
            attempts: 0,
            next_attempt_at: t,
            last_attempt_at: None,
            last_error: None,
            dead_at: None,
        }
    }

    #[test]
    fn transient_failures_back_off_until_the_give_up_age() {
        let policy = AlertsConfig::default();
        let e = entry("2026-01-01T00:00:00Z");
        let err = DeliveryError::transient("connection refused");
        let at: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let n = after_failure(&e, &err, at, &policy, 1.0);
        assert_eq!(n.attempts, 1);
        assert!(!n.is_dead());
        assert_eq!(n.next_attempt_at, at + chrono::Duration::seconds(30));
        // Retry-After wins when it asks for longer.
        let mut slow = err.clone();
        slow.retry_after = Some(Duration::from_secs(600));
        let n2 = after_failure(&e, &slow, at, &policy, 1.0);
        assert_eq!(n2.next_attempt_at, at + chrono::Duration::seconds(600));
        // Just before 3 days: still retried; at 3 days: dead letter.
        let late = at + chrono::Duration::hours(72) - chrono::Duration::seconds(1);
        assert!(!after_failure(&n, &err, late, &policy, 0.5).is_dead());
        let dead = after_failure(&n, &err, at + chrono::Duration::hours(72), &policy, 0.5);
        assert!(dead.is_dead());
        assert!(
            dead.last_error
                .as_deref()
                .unwrap()
                .starts_with("gave up after 2 attempts over 3days"),
            "{:?}",
            dead.last_error
        );
    }

    #[test]
    fn permanent_failures_are_dead_at_once() {
        let e = entry("2026-01-01T00:00:00Z");
        let at: DateTime<Utc> = "2026-01-01T00:00:05Z".parse().unwrap();
        let n = after_failure(
            &e,
            &DeliveryError::permanent("550 no such user"),
            at,
            &AlertsConfig::default(),
            0.5,
        );
        assert_eq!(n.dead_at, Some(at));
        assert_eq!(n.last_error.as_deref(), Some("permanent: 550 no such user"));
    }

    #[test]
    fn first_snapshots_owe_nothing_and_digests_wait_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut daily = sub(&["status.overallStatus"], &[], Severity::Minor);
        daily.digest = DigestMode::Daily;
        daily.id = "sub-daily".into();
        let subs = Arc::new(Subscriptions {
            list: vec![sub(&["status.overallStatus"], &[], Severity::Minor), daily],
            watched: WatchedFields::default(),
        });
        let plan = EnqueuePlan::new(subs, &store, now).unwrap();
        let a = nct("NCT02241018");
        let mut old = Record::default();
        old.set("status.overallStatus", json!("RECRUITING"));
        let mut new = Record::default();
        new.set("status.overallStatus", json!("COMPLETED"));
        let changes = crate::diff::diff(Some(&old), &new);
        assert!(plan.owed(&a, None, &new, &changes).is_empty());
        let owed = plan.owed(&a, Some(&old), &new, &changes);
        assert_eq!(owed.len(), 2);
        assert_eq!(owed[0].due, now);
        assert_eq!(owed[1].subscription_id, "sub-daily");
        assert_eq!(owed[1].due, now + chrono::Duration::hours(24));
    }

    #[test]
    fn logged_errors_carry_no_address() {
        assert_eq!(
            redact_addresses("550 5.1.1 <bob@example.org>: unknown user"),
            "550 5.1.1 [address] unknown user"
        );
    }
}
