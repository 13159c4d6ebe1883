//! The daemon's background work and how it ends: one [`CancellationToken`] that shutdown
//! cancels, and a [`TaskTracker`] per kind of work, so that the scheduler can ask "is a sync
//! running?", a re-exec can wait until the daemon is idle, and shutdown can wait for each kind
//! with a deadline. A tracker forgets a task when its future ends, returns or panics alike, so
//! no counter can be left behind by a panic.
//!
//! Not here: what the tasks do ([`super::scheduler`], [`super::sync_run`],
//! [`super::delivery`], [`super::control`]), or the order of shutdown ([`super::run`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The token and the trackers, shared by every task of the daemon.
#[derive(Default)]
pub(super) struct Work {
    /// Cancelled when shutdown begins: every loop stops taking work, a scheduled sync abandons
    /// its fetch (the store write in progress finishes), a delivery pass is dropped.
    pub(super) stop: CancellationToken,
    /// The daemon's own tasks: the control socket's accept loop and the re-exec
    /// watch. They end as soon as `stop` is cancelled.
    pub(super) loops: TaskTracker,
    /// Scheduled syncs (at most one: the scheduler starts one only while this is empty).
    pub(super) syncs: TaskTracker,
    /// Outbox delivery passes (at most one: see [`super::state::Shared::delivering`]).
    pub(super) deliveries: TaskTracker,
    /// Forwarded CLI commands, each on a blocking thread.
    pub(super) commands: TaskTracker,
}

impl Work {
    /// No sync, delivery or forwarded command runs (the moment a re-exec may happen).
    pub(super) fn idle(&self) -> bool {
        self.syncs.is_empty() && self.deliveries.is_empty() && self.commands.is_empty()
    }
}

/// A "one at a time" flag that a panic cannot leave set: [`OneAtATime::try_claim`] sets it and
/// the [`Claim`] it returns clears it when dropped, also while unwinding.
#[derive(Debug, Default, Clone)]
pub(super) struct OneAtATime(Arc<AtomicBool>);

/// Proof of a [`OneAtATime`] claim; releases it on drop.
#[derive(Debug)]
pub(super) struct Claim(Arc<AtomicBool>);

impl OneAtATime {
    /// Claim the flag, or `None` when a claim is already held.
    pub(super) fn try_claim(&self) -> Option<Claim> {
        (!self.0.swap(true, Ordering::SeqCst)).then(|| Claim(self.0.clone()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_exclusive_and_released_on_drop_even_by_a_panic() {
        let flag = OneAtATime::default();
        let claim = flag.try_claim().unwrap();
        assert!(flag.try_claim().is_none());
        drop(claim);
        let moved = flag.try_claim().unwrap();
        let r = std::thread::spawn(move || {
            let _claim = moved;
            panic!("a delivery pass panicked");
        })
        .join();
        assert!(r.is_err());
        assert!(flag.try_claim().is_some());
    }

    #[tokio::test]
    async fn a_panicking_task_leaves_its_tracker() {
        let work = Work::default();
        let h = work
            .commands
            .spawn_blocking(|| panic!("a forwarded command panicked"));
        assert!(h.await.is_err());
        assert!(work.idle());
    }
}
