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
//!
//! One job per file:
//! - `subscriptions`: every subscription in force (configuration + store).
//! - `plan`: which alerts a new version owes ([`EnqueuePlan`]), decided during the sync.
//! - `events`: which subscriptions an event that is no field change owes (query entries and
//!   exits), as outbox entries carrying the rendered event.
//! - `retry`: the retry policy: backoff delay, reschedule or dead letter after a failure.
//! - `compose`: an outbox entry + its stored version → the [`Alert`] the notifier sends.
//! - `deliver`: the delivery run ([`deliver_due`]): grouping, concurrency, acknowledgement,
//!   plus the operator's `requeue` and counts.
//! - this file: [`Delivery`], the one entry point that builds the notifier and runs delivery.
//!
//! [`Alert`]: crate::model::Alert

use std::time::Duration;

use crate::config::Config;
use crate::notify::Notifier;
use crate::store::{Store, StoreError};

mod compose;
mod deliver;
mod events;
mod plan;
mod retry;
mod subscriptions;
#[cfg(test)]
mod test_support;

pub use deliver::{
    DeliveryReport, deliver_due, destination, outbox_counts, redact_addresses, requeue,
};
pub use plan::EnqueuePlan;
pub use retry::{after_failure, retry_delay};
pub use subscriptions::Subscriptions;

/// The time between two daily digests of one subscription.
pub const DIGEST_INTERVAL: Duration = Duration::from_secs(24 * 3600);

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
