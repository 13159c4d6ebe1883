//! Re-execute in place after a large sync (`[schedule] reexec_after_trials`): once a sync
//! that fetched that many trials has ended and the daemon is idle (no sync, delivery or
//! forwarded command), flush the store and replace the process image with a fresh one of the
//! same binary, to give back the heap the sync grew. Same PID, same arguments and environment,
//! so systemd sees no restart; the new image finds its bookkeeping in the store and resumes.
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
        let store = shared.store.clone();
        match tokio::task::spawn_blocking(move || store.flush()).await {
            // Shutdown began while the store was flushed: stop instead, as asked.
            Ok(Ok(())) if stop.is_cancelled() => return,
            // Work started during the flush (a fire time, a command): wait for it to end.
            Ok(Ok(())) if !shared.work.idle() => shared.reexec_due.notify_one(),
            Ok(Ok(())) => {
                let e = reexec();
                tracing::error!(error = %e, "cannot re-execute; carrying on in this process");
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot flush the store; not re-executing"),
            Err(e) => tracing::error!(error = %e, "cannot flush the store; not re-executing"),
        }
    }
}

/// How often a due re-execution checks whether the daemon is idle.
const REEXEC_POLL: Duration = Duration::from_millis(200);

/// Replace this process image with a fresh one of the same binary and arguments: the PID, the
/// environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`) and so systemd's view of the service stay;
/// the heap a large sync grew does not. The caller has flushed the store; the lock, the store
/// and the control socket are close-on-exec, and the new image takes them again at start.
/// Returns only if the exec failed.
fn reexec() -> std::io::Error {
    use std::os::unix::process::CommandExt;
    tracing::info!(
        "re-executing in place to give back the memory the sync used (same PID; schedule, state \
         and store are kept)"
    );
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    cmd.args(args).exec()
}
