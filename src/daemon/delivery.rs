//! The daemon's glue to alert delivery: a pass over the outbox after each sync and every
//! [`OUTBOX_INTERVAL`], one at a time, through [`crate::outbox::Delivery`] (the single
//! delivery entry point, shared with `trialwatch outbox deliver`).
//!
//! Not here: how alerts are sent or retried ([`crate::outbox`], [`crate::notify`]).

use std::sync::Arc;
use std::time::Duration;

use super::state::Shared;

/// How often the outbox is offered another delivery attempt between syncs.
pub const OUTBOX_INTERVAL: Duration = Duration::from_secs(60);

/// Start delivering what the outbox owes, unless a delivery is already running: called after
/// each sync and every [`OUTBOX_INTERVAL`]. Runs as its own task so a slow SMTP server never
/// holds up the main loop (and with it the systemd watchdog). On shutdown an unfinished
/// delivery is simply dropped: an alert leaves the outbox only once its receiver accepted it.
pub(super) fn deliver_outbox(shared: &Arc<Shared>) {
    let Some(claim) = shared.delivering.try_claim() else {
        return;
    };
    let shared = shared.clone();
    let tracker = shared.work.deliveries.clone();
    tracker.spawn(async move {
        let _claim = claim;
        tokio::select! {
            () = deliver_outbox_once(&shared) => {}
            () = shared.work.stop.cancelled() => {}
        }
    });
}

/// One delivery pass over the alerts that are due (new ones and retries), with the current
/// configuration's SMTP settings and delivery policy.
async fn deliver_outbox_once(shared: &Shared) {
    // Never alongside a sync or a forwarded `outbox deliver`: one sender per alert at a time.
    let _guard = shared.sync_lock.lock().await;
    let cfg = shared.config();
    let store = shared.store.clone();
    let delivery = match crate::outbox::Delivery::new(&cfg) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up alert delivery; alerts stay in the outbox");
            return;
        }
    };
    let report = match delivery.run(&cfg, &store).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the subscriptions or flush the store; delivery waits for the next pass");
            return;
        }
    };
    if report.delivered + report.retrying + report.dead > 0 || !report.store_errors.is_empty() {
        tracing::info!(
            outbox.delivered = report.delivered,
            outbox.messages = report.messages,
            outbox.retrying = report.retrying,
            outbox.dead = report.dead,
            outbox.store_errors = report.store_errors.len(),
            "outbox delivery pass"
        );
    }
}
