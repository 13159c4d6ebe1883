//! Re-execute in place after a large sync (`[schedule] reexec_after_trials`): once a sync
//! that fetched that many trials has ended and the daemon is idle (no sync, delivery or
//! forwarded command), flush the store and replace the process image with a fresh one of the
//! same binary, to give back the heap the sync grew. Same PID, same arguments and environment,
//! so systemd sees no restart; the new image finds its bookkeeping in the store and resumes.
//!
//! The re-executed image's first store open replays the whole sync's log (sled writes its
//! snapshot only when it opens), which leaves that image as large as a restart's plus the
//! replay's heap; so that image, once it has opened the store (and so written the snapshot),
//! re-executes once more ([`again_after_first_open`]), and the one that stays opens from the
//! snapshot, as a restart would. The first exec marks its image with [`REOPEN_ENV`] (set on the
//! exec only); every exec removes it, so the environment neither grows nor reaches a child.
//!
//! Not here: deciding that a sync was large ([`super::sync_run`]).

use std::sync::Arc;
use std::time::Duration;

use super::state::Shared;
use crate::store::Store;

/// Set on the image a large sync's re-execution starts: it re-executes once more right after
/// its first store open. Never set by anything else, and removed by every exec.
const REOPEN_ENV: &str = "TRIALWATCH_REEXEC_REOPEN";

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
        let store = shared.store.clone();
        match tokio::task::spawn_blocking(move || store.flush()).await {
            // Shutdown began while the store was flushed: stop instead, as asked.
            Ok(Ok(())) if stop.is_cancelled() => return,
            // Work started during the flush (a fire time, a command): wait for it to end.
            Ok(Ok(())) if !shared.work.idle() => shared.reexec_due.notify_one(),
            Ok(Ok(())) => {
                tracing::info!(
                    "re-executing in place to give back the memory the sync used (same PID; \
                     schedule, state and store are kept)"
                );
                let e = reexec(true);
                tracing::error!(error = %e, "cannot re-execute; carrying on in this process");
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot flush the store; not re-executing"),
            Err(e) => tracing::error!(error = %e, "cannot flush the store; not re-executing"),
        }
    }
}

/// How often a due re-execution checks whether the daemon is idle.
const REEXEC_POLL: Duration = Duration::from_millis(200);

/// In the image a large sync's re-execution started (marked by [`REOPEN_ENV`]), right after
/// the daemon opened `store`: flush it and re-execute once more, so that the image that stays
/// opens the store from the snapshot this open wrote instead of replaying the sync's log
/// (measured at 100,000 trials: 33.2 MB idle without this second exec, as a restart's 29.7 MB
/// with it). Returns at once in any other image, and when the exec fails (the daemon carries on
/// in this image, as large as before but working).
pub(super) fn again_after_first_open(store: &Store) {
    if std::env::var_os(REOPEN_ENV).is_none() {
        return;
    }
    if let Err(e) = store.flush() {
        tracing::error!(error = %e, "cannot flush the store; not re-executing again");
        return;
    }
    tracing::info!(
        "re-executing once more, to open the store from the snapshot its first open wrote (same PID)"
    );
    let e = reexec(false);
    tracing::error!(error = %e, "cannot re-execute again; carrying on in this process");
}

/// Replace this process image with a fresh one of the same binary and arguments: the PID, the
/// environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`) and so systemd's view of the service stay;
/// the heap a large sync grew does not. `reopen` marks the new image with [`REOPEN_ENV`] (see
/// [`again_after_first_open`]); the mark is removed otherwise, so it never outlives one image.
/// The caller has flushed the store; the lock, the store and the control socket are
/// close-on-exec, and the new image takes them again at start. Returns only if the exec failed.
fn reexec(reopen: bool) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    if reopen {
        cmd.env(REOPEN_ENV, "1");
    } else {
        cmd.env_remove(REOPEN_ENV);
    }
    cmd.args(args).exec()
}
