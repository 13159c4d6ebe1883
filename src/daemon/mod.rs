//! `trialwatch daemon`: the long-running process. It owns the store for its whole life and
//!
//! - runs scheduled syncs on the `[schedule] cron` timetable (`scheduler.rs`, with the pure
//!   cron arithmetic in [`schedule`]), asking CT.gov's `/version` first and fetching the
//!   whole watch list once its `dataTimestamp` moved (see [`plan()`]), with a full sync at
//!   least every `full_sync_days` (`sync_run.rs`);
//! - delivers the outbox after each sync and every [`OUTBOX_INTERVAL`] (`delivery.rs`);
//! - serves CLI commands over its control socket ([`control`]) so that every command works
//!   while it runs;
//! - reloads the configuration on SIGHUP (keeping the old one when the new one is broken);
//! - keeps its bookkeeping ([`DaemonState`]) in the store (`state.rs`);
//! - re-executes itself in place after a large sync, to give its memory back (`reexec.rs`);
//! - talks to systemd ([`systemd`]) and holds the one-daemon-per-data-directory lock ([`lock`]).
//!
//! This file wires the tasks together; `tasks.rs` holds the cancellation token and the task
//! trackers they share. Shutdown comes in as a future ([`run`]'s `shutdown`), so tests and the
//! CLI decide what ends it (the CLI: SIGTERM or SIGINT). On shutdown it stops taking work,
//! abandons the fetch of a running sync but lets the store write in progress finish (each write
//! is one atomic sled batch), drops an unfinished delivery pass, waits for forwarded commands,
//! flushes the store and returns, all within [`Options::stop_timeout`].
//!
//! Not here: what a sync does ([`crate::sync`]), how commands behave ([`crate::cli`]), how
//! alerts are sent ([`crate::outbox`]).

pub mod control;
mod delivery;
pub mod health;
pub mod lock;
mod plan;
mod publish;
mod queries;
mod reexec;
pub mod schedule;
mod scheduler;
mod state;
mod sync_run;
pub mod systemd;
mod tasks;
mod web;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;

pub use delivery::OUTBOX_INTERVAL;
pub use plan::{Plan, SyncKind, plan};
pub use state::{DaemonState, STATE_META, load_state};

use crate::config::Config;
use state::Shared;

/// Default for [`Options::stop_timeout`]: below systemd's default stop timeout (90 s) and the
/// unit's `TimeoutStopSec=30`, so the daemon always exits on its own before being killed.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// What the daemon needs to start.
pub struct Options {
    /// The validated configuration it starts with.
    pub cfg: Config,
    /// Where the configuration came from, to read it again on SIGHUP.
    pub config_path: Option<PathBuf>,
    /// `--data-dir`, which keeps winning over the file after a reload.
    pub data_dir_override: Option<PathBuf>,
    /// Runs forwarded CLI commands (the CLI provides it).
    pub executor: Arc<dyn control::Executor>,
    /// Shutdown must be complete within this time after `shutdown` resolves.
    pub stop_timeout: Duration,
}

/// A missing optional credential (the SMTP password) does not stop the daemon: say so once at
/// start, naming where it was looked for and the fix; mail then fails per alert with the same
/// reason (kept in the outbox and retried), and everything else works.
fn warn_if_password_missing(cfg: &Config) {
    let Some(smtp) = &cfg.smtp else { return };
    if let Some(src) = &smtp.password_source
        && let Some(why) = &src.unavailable
    {
        tracing::warn!(
            smtp.password_source = %src.describe,
            "the SMTP password ({}) is not available: {why}; the daemon runs, but email alerts \
             wait in the outbox (retried) until it is. Fix: put the password in \
             /etc/credstore/{} (root-owned, mode 0600; the unit's LoadCredential= picks it up) \
             or set smtp.password_file, then `systemctl restart trialwatch`",
            src.describe,
            crate::config::SMTP_PASSWORD_CREDENTIAL
        );
    }
}

/// Run the daemon until `shutdown` resolves, then stop cleanly within `opts.stop_timeout`.
pub async fn run(opts: Options, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let cfg = opts.cfg.clone();
    let socket = control::socket_path(&cfg.data_dir);
    let _lock = {
        let (dir, sock) = (cfg.data_dir.clone(), socket.clone());
        tokio::task::spawn_blocking(move || lock::acquire(&dir, &sock)).await??
    };
    let store = state::open_store(&cfg.data_dir).await?;
    let mut state = load_state(&store).unwrap_or_default();
    // The bookkeeping names our own PID only when this process image replaced the one that
    // wrote it (`reexec`).
    let resumed = state.pid == std::process::id() && state.started_at.is_some();
    state.pid = std::process::id();
    state.started_at = Some(Utc::now());
    state.sync_running_since = None;
    let shared = Arc::new(Shared::new(
        cfg.clone(),
        opts.config_path.clone(),
        opts.data_dir_override.clone(),
        store.clone(),
        state.clone(),
    ));
    let _ = shared.executor.set(opts.executor.clone());
    let work = &shared.work;

    let listener = control::bind(&socket)?;
    let serving = Arc::new(control::Serving {
        executor: opts.executor.clone(),
        config: {
            let shared = shared.clone();
            Arc::new(move || shared.config())
        },
        store: store.clone(),
        sync_lock: shared.sync_lock.clone(),
    });
    work.loops.spawn(control::accept_loop(
        listener,
        serving,
        work.commands.clone(),
        work.stop.clone(),
    ));

    if let Some(addr) = cfg.web.listen {
        web::start(&shared, opts.executor.clone(), addr).await?;
    }

    warn_if_password_missing(&cfg);

    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;

    let waiting_for = scheduler::first_fire(state.next_fire, &cfg.schedule.cron, Utc::now());
    shared.update_state(|s| {
        *s = state;
        s.next_fire = waiting_for;
    });
    tracing::info!(
        pid = std::process::id(),
        store.path = %cfg.data_dir.display(),
        control.socket = %socket.display(),
        watch.config_trials = cfg.watch.ids().len(),
        schedule.cron = %cfg.schedule.cron.source(),
        sync.next = ?waiting_for,
        systemd.notify = shared.notifier.enabled(),
        "{}",
        if resumed {
            "daemon ready (resumed after re-executing itself)"
        } else {
            "daemon ready"
        }
    );
    shared.notifier.ready(&shared.status_line());
    work.loops.spawn(reexec::when_due(shared.clone()));
    work.loops.spawn(reexec::settle_then_reexec(shared.clone()));
    // The scheduler runs here rather than as a task, so that a panic in it ends the daemon
    // (and systemd restarts it) instead of leaving it up without a schedule.
    tokio::select! {
        biased;
        () = shutdown => {}
        () = scheduler::run(shared.clone(), hup, waiting_for, opts.stop_timeout) => {}
    }

    // --- shutdown -------------------------------------------------------------------------
    let deadline = Instant::now() + opts.stop_timeout.saturating_sub(Duration::from_secs(2));
    let left = || deadline.saturating_duration_since(Instant::now());
    tracing::info!(
        stop.timeout_ms = opts.stop_timeout.as_millis() as u64,
        "shutting down: no new work is taken"
    );
    shared.notifier.stopping();
    work.stop.cancel();
    // The loops end at once; once they have, no command is accepted and no sync started.
    work.loops.close();
    let _ = tokio::time::timeout(left(), work.loops.wait()).await;
    let _ = std::fs::remove_file(&socket);
    work.syncs.close();
    if tokio::time::timeout(left(), work.syncs.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "the running sync did not stop in time; leaving it (every store write is atomic)"
        );
    }
    // A delivery pass ends as soon as it sees the stop token: what it did not send stays due.
    work.deliveries.close();
    let _ = tokio::time::timeout(left(), work.deliveries.wait()).await;
    work.commands.close();
    if tokio::time::timeout(left(), work.commands.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            control.inflight = work.commands.len(),
            "CLI commands still running at the stop deadline are abandoned (their store writes are atomic)"
        );
    }
    shared.update_state(|s| s.sync_running_since = None);
    // Flushed, and the heads file written, so that commands
    // run while no daemon does read one trial without opening the whole index.
    let flushed = tokio::task::spawn_blocking(move || {
        store
            .flush()
            .and_then(|()| store.publish_heads().map(|_| ()))
    })
    .await;
    match flushed {
        Ok(Ok(())) => tracing::info!("store flushed; daemon stopped"),
        Ok(Err(e)) => tracing::error!(error = %e, "the final store flush failed"),
        Err(e) => tracing::error!(error = %e, "the final store flush did not run"),
    }
    Ok(())
}
