//! Re-execute in place after a large sync (`[schedule] reexec_after_trials`): once a sync
//! that fetched that many trials has ended and the daemon is idle (no sync, delivery or
//! forwarded command), flush the store and replace the process image with a fresh one of the
//! same binary, to give back the heap the sync grew. Same PID, same arguments and environment,
//! so systemd sees no restart; the new image finds its bookkeeping in the store and resumes.
//!
//! Then once more ([`settle_then_reexec`]): the first open of a store a large sync has just
//! written sets sled to cleaning its log's segments, which rewrites pages on its own threads and
//! leaves that memory in their malloc arena for good (measured at 100,000 trials: 40.5 MB idle
//! in that image, 30.2 MB after a restart on the same store). The image the first re-execution
//! starts carries [`SETTLE_ENV`]; once its own CPU use shows sled has finished, it re-executes
//! without it, and the image that stays opens a clean store.
//!
//! Not here: deciding that a sync was large ([`super::sync_run`]).

use std::sync::Arc;
use std::time::Duration;

use super::state::Shared;

/// Wait for [`Shared::reexec_due`], then for an idle moment, then re-execute. Returns when the
/// stop token is cancelled (or, having re-executed, never).
pub(super) async fn when_due(shared: Arc<Shared>) {
    let stop = shared.work.stop.clone();
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = shared.reexec_due.notified() => {}
        }
        while !shared.work.idle() {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = tokio::time::sleep(REEXEC_POLL) => {}
            }
        }
        match flush_when_idle(&shared).await {
            Flushed::Stopping => return,
            // Logged; the next large sync tries again.
            Flushed::Failed => {}
            // Work started during the flush (a fire time, a command): wait for it to end.
            Flushed::Busy => shared.reexec_due.notify_one(),
            Flushed::Ready => {
                tracing::info!(
                    "re-executing in place to give back the memory the sync used (same PID; \
                     schedule, state and store are kept)"
                );
                let e = reexec(true);
                tracing::error!(error = %e, "cannot re-execute; carrying on in this process");
            }
        }
    }
}

/// How often a due re-execution checks whether the daemon is idle.
const REEXEC_POLL: Duration = Duration::from_millis(200);

/// Set on the image the first re-execution starts: it re-executes once more when settled.
pub(super) const SETTLE_ENV: &str = "TRIALWATCH_REEXEC_SETTLE";

/// Settled: the whole process used less than this much CPU over [`SETTLE_WINDOW`] (ticks of
/// 10 ms: 2 % of a core; the idle daemon uses ~0.6 %, sled's cleaning far more).
const SETTLED_TICKS: u64 = 10;
/// The window over which [`SETTLED_TICKS`] is judged.
const SETTLE_WINDOW: Duration = Duration::from_secs(5);
/// Past this, an image that never settled stays as it is.
const SETTLE_GIVE_UP: Duration = Duration::from_secs(600);

/// In the image a re-execution started ([`SETTLE_ENV`]): wait until the daemon is idle and the
/// process has used almost no CPU for [`SETTLE_WINDOW`] (sled's cleaning after the first open
/// of a freshly written store is done), then flush and re-execute once more, without
/// [`SETTLE_ENV`]. Returns when the stop token is cancelled or it gives up.
pub(super) async fn settle_then_reexec(shared: Arc<Shared>) {
    if std::env::var_os(SETTLE_ENV).is_none() {
        return;
    }
    let stop = shared.work.stop.clone();
    let started = std::time::Instant::now();
    let mut last = cpu_ticks();
    while started.elapsed() < SETTLE_GIVE_UP {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SETTLE_WINDOW) => {}
        }
        let now = cpu_ticks();
        let used = match (last, now) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            // Without /proc the process's CPU use cannot be read: stay as it is.
            _ => return,
        };
        last = now;
        if used >= SETTLED_TICKS || !shared.work.idle() {
            continue;
        }
        match flush_when_idle(&shared).await {
            Flushed::Stopping | Flushed::Failed => return,
            Flushed::Busy => continue,
            Flushed::Ready => {
                tracing::info!(
                    "re-executing once more, now that the store has settled after the large sync \
                     (same PID)"
                );
                let e = reexec(false);
                tracing::error!(error = %e, "cannot re-execute; carrying on in this process");
                return;
            }
        }
    }
}

/// What [`flush_when_idle`] found.
enum Flushed {
    /// Flushed, and still idle: re-execute now.
    Ready,
    /// Work started during the flush.
    Busy,
    /// Shutdown began during the flush: stop instead, as asked.
    Stopping,
    /// The flush failed (logged): do not re-execute.
    Failed,
}

/// Flush the store before a re-execution, and say whether the daemon may re-execute now.
async fn flush_when_idle(shared: &Arc<Shared>) -> Flushed {
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || store.flush()).await {
        Ok(Ok(())) if shared.work.stop.is_cancelled() => Flushed::Stopping,
        Ok(Ok(())) if !shared.work.idle() => Flushed::Busy,
        Ok(Ok(())) => Flushed::Ready,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot flush the store; not re-executing");
            Flushed::Failed
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot flush the store; not re-executing");
            Flushed::Failed
        }
    }
}

/// This process's CPU time so far (user and system, all threads), in clock ticks of
/// `/proc/self/stat` (USER_HZ, 100 a second on Linux).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the parenthesised command name; utime and stime are its 12th and 13th.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut f = rest.split_whitespace().skip(11);
    let user: u64 = f.next()?.parse().ok()?;
    let system: u64 = f.next()?.parse().ok()?;
    Some(user + system)
}

/// Replace this process image with a fresh one of the same binary and arguments: the PID, the
/// environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`) and so systemd's view of the service stay;
/// the heap a large sync grew does not. The caller has flushed the store; the lock, the store
/// and the control socket are close-on-exec, and the new image takes them again at start.
/// `settle`: the new image re-executes once more when settled ([`SETTLE_ENV`]); otherwise the
/// marker is dropped. Returns only if the exec failed.
fn reexec(settle: bool) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let mut cmd = crate::util::exec::this_program_again();
    if settle {
        cmd.env(SETTLE_ENV, "1");
    } else {
        cmd.env_remove(SETTLE_ENV);
    }
    cmd.exec()
}
