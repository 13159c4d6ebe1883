//! The daemon's timed loop: waits for the next fire time of `[schedule] cron` (in bounded
//! steps, see [`super::schedule`]) and starts a scheduled sync then, unless one still runs;
//! offers the outbox a delivery pass every [`OUTBOX_INTERVAL`]; reloads the configuration on
//! SIGHUP; tells systemd it is alive (`WATCHDOG=1`) and what it waits for (`STATUS=`). Ends
//! when the stop token is cancelled.
//!
//! The watchdog is fed from this loop on purpose: it proves the scheduler itself is not stuck.
//! Everything slow (syncs, deliveries) runs in tasks of its own.
//!
//! Not here: the cron arithmetic ([`super::schedule`], pure), the run itself
//! ([`super::sync_run`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::signal::unix::Signal;

use super::delivery::{OUTBOX_INTERVAL, deliver_outbox};
use super::schedule;
use super::state::Shared;
use super::sync_run::start_scheduled_sync;

/// The first fire time to wait for at start: one that passed while no daemon ran is made up
/// for once, right away; otherwise the next one after now.
pub(super) fn first_fire(
    recorded: Option<DateTime<Utc>>,
    cron: &cron::Schedule,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match recorded {
        Some(t) if t <= now => {
            tracing::info!(sync.fire_time = %t, "a scheduled sync was missed while the daemon was down; running it now");
            Some(t)
        }
        _ => schedule::next_fire(cron, now),
    }
}

/// Run the loop until `shared.work.stop` is cancelled, starting by waiting for `waiting_for`.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut hup: Signal,
    mut waiting_for: Option<DateTime<Utc>>,
    stop_timeout: Duration,
) {
    let mut outbox_timer = tokio::time::interval(OUTBOX_INTERVAL);
    outbox_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watchdog_every = shared
        .notifier
        .watchdog_interval()
        .unwrap_or(Duration::from_secs(3600));
    let watchdog_on = shared.notifier.watchdog_interval().is_some();
    let mut watchdog_timer = tokio::time::interval(watchdog_every);
    let stop = shared.work.stop.clone();

    loop {
        let sleep_for = match waiting_for {
            Some(fire) => match schedule::tick(&shared.config().schedule.cron, fire, Utc::now()) {
                schedule::Tick::Sleep(d) => d,
                schedule::Tick::Fire { .. } => Duration::ZERO,
            },
            None => schedule::MAX_STEP,
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = hup.recv() => {
                let old_cron = shared.config().schedule.cron.source().to_string();
                shared.reload();
                let cron = shared.config().schedule.cron.clone();
                if cron.source() != old_cron {
                    waiting_for = schedule::next_fire(&cron, Utc::now());
                    shared.update_state(|s| s.next_fire = waiting_for);
                }
                shared.notifier.send(&format!("READY=1\nSTATUS={}", shared.status_line()));
            }
            () = tokio::time::sleep(sleep_for) => {
                let Some(fire) = waiting_for else { continue };
                let now = Utc::now();
                let cron = shared.config().schedule.cron.clone();
                if let schedule::Tick::Fire { missed } = schedule::tick(&cron, fire, now) {
                    if missed > 0 {
                        tracing::info!(sync.fire_time = %fire, sync.missed = missed, "fire times passed while the machine slept or a sync ran; running once for all of them");
                    }
                    if !shared.work.syncs.is_empty() {
                        tracing::warn!(sync.fire_time = %fire, "the previous sync is still running at the next fire time; not starting another");
                    } else {
                        start_scheduled_sync(shared.clone(), fire, stop_timeout);
                    }
                    waiting_for = schedule::next_fire(&cron, now);
                    shared.update_state(|s| s.next_fire = waiting_for);
                    shared.notifier.status(&shared.status_line());
                }
            }
            _ = outbox_timer.tick() => {
                if shared.work.syncs.is_empty() {
                    deliver_outbox(&shared);
                }
            }
            _ = watchdog_timer.tick(), if watchdog_on => shared.notifier.watchdog(),
        }
    }
}
