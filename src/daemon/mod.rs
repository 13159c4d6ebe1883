//! `trialwatch daemon`: the long-running process. It owns the store for its whole life and
//!
//! - runs scheduled syncs on the `[schedule] cron` timetable ([`schedule`]), asking CT.gov's
//!   `/version` first and fetching only what moved (see [`plan`]), with a full sync at least
//!   every `full_sync_days`;
//! - delivers the outbox after each sync and on a timer ([`deliver_outbox`]);
//! - serves CLI commands over its control socket ([`control`]) so that every command works
//!   while it runs;
//! - reloads the configuration on SIGHUP (keeping the old one when the new one is broken);
//! - talks to systemd ([`notify`]) and holds the one-daemon-per-data-directory lock ([`lock`]).
//!
//! Shutdown comes in as a future ([`run`]'s `shutdown`), so tests and the CLI decide what ends
//! it (the CLI: SIGTERM or SIGINT). On shutdown it stops taking work, abandons the fetch of a
//! running sync but lets the store write in progress finish (each write is one atomic sled
//! batch), flushes the store and returns, all within [`Options::stop_timeout`].
//!
//! Not here: what a sync does ([`crate::sync`]), how commands behave ([`crate::cli`]).

pub mod control;
pub mod lock;
pub mod notify;
pub mod schedule;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::config::Config;
use crate::model::NctId;
use crate::store::Store;
use crate::sync::SyncReport;

/// Name of the store meta entry holding [`DaemonState`].
pub const STATE_META: &str = "daemon.state";

/// How often the outbox is offered another delivery attempt between syncs.
pub const OUTBOX_INTERVAL: Duration = Duration::from_secs(60);

/// Default for [`Options::stop_timeout`]: below systemd's default stop timeout (90 s) and the
/// unit's `TimeoutStopSec=30`, so the daemon always exits on its own before being killed.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the daemon waits for a CLI command that has the store open when it starts.
const STORE_BUSY_WAIT: Duration = Duration::from_secs(60);

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

/// The daemon's bookkeeping, kept in the store (meta [`STATE_META`]) so that `status` can show
/// it and a restarted daemon continues where the last one stopped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DaemonState {
    /// PID of the daemon that wrote this (for `status`).
    pub pid: u32,
    pub started_at: Option<DateTime<Utc>>,
    /// The fire time being waited for. A restarted daemon that finds it in the past runs the
    /// sync it missed while it was down.
    pub next_fire: Option<DateTime<Utc>>,
    /// Set while a scheduled sync runs.
    pub sync_running_since: Option<DateTime<Utc>>,
    /// The last `dataTimestamp` CT.gov's `/version` reported, and when it was asked.
    pub data_timestamp: Option<String>,
    pub data_timestamp_checked_at: Option<DateTime<Utc>>,
    /// The `dataTimestamp` seen before the last sync that covered the whole plan: while CT.gov
    /// reports the same value, nothing can have changed and the fetch is skipped.
    pub complete_data_timestamp: Option<String>,
    /// Start of that sync: incremental fetches ask for `LastUpdatePostDate` from (shortly
    /// before) this date.
    pub last_complete_at: Option<DateTime<Utc>>,
    /// Start of the last full sync (the safety net runs `full_sync_days` after it).
    pub last_full_at: Option<DateTime<Utc>>,
    /// What the last scheduled run decided and why, in a sentence.
    pub last_decision: Option<String>,
}

/// Read the daemon's bookkeeping from the store (absent before the first daemon run).
pub fn load_state(store: &Store) -> Option<DaemonState> {
    store.get_meta(STATE_META).ok().flatten()
}

/// State shared by the scheduler, the sync thread and the control socket.
struct Shared {
    store: Store,
    /// Replaced whole on a successful SIGHUP reload.
    cfg: RwLock<Arc<Config>>,
    /// One sync or delivery pass at a time: scheduled ones, and `sync` / `outbox deliver`
    /// forwarded by the CLI.
    sync_lock: Arc<tokio::sync::Mutex<()>>,
    /// In-memory copy of the bookkeeping; every change is written through to the store.
    state: Mutex<DaemonState>,
    notifier: notify::Notifier,
    /// Set while an outbox delivery pass runs, so timer and post-sync passes never overlap.
    delivering: std::sync::atomic::AtomicBool,
    /// Set by a sync large enough to re-execute after (`[schedule] reexec_after_trials`).
    reexec_due: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn config(&self) -> Arc<Config> {
        self.cfg
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn update_state(&self, f: impl FnOnce(&mut DaemonState)) {
        let snapshot = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
            s.clone()
        };
        if let Err(e) = self.store.set_meta(STATE_META, &snapshot) {
            tracing::warn!(error = %e, "could not record the daemon's state in the store");
        }
    }

    fn state(&self) -> DaemonState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The one-line summary systemd shows in `systemctl status`.
    fn status_line(&self) -> String {
        let s = self.state();
        let last = match self
            .store
            .get_meta::<SyncReport>("last_sync")
            .ok()
            .flatten()
        {
            Some(r) => format!(
                "last sync {} ({} trials, {} new versions, {} failed)",
                r.started_at.format("%Y-%m-%d %H:%M UTC"),
                r.requested,
                r.new_versions,
                r.failed.len()
            ),
            None => "no sync yet".into(),
        };
        let next = match (s.sync_running_since, s.next_fire) {
            (Some(t), _) => format!("syncing since {}", t.format("%H:%M:%S UTC")),
            (None, Some(t)) => format!("next sync {}", t.format("%Y-%m-%d %H:%M:%S UTC")),
            (None, None) => "no further sync scheduled".into(),
        };
        format!("{last}; {next}")
    }
}

/// Open the store, waiting while a CLI command (which opens it when no daemon runs) has it.
async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let started = Instant::now();
    let mut warned = false;
    loop {
        let dir = cfg.data_dir.clone();
        match tokio::task::spawn_blocking(move || {
            Store::open_with_cache(&dir, crate::store::DAEMON_CACHE_BYTES)
        })
        .await?
        {
            Ok(s) => return Ok(s),
            Err(crate::store::StoreError::Open { .. }) if started.elapsed() < STORE_BUSY_WAIT => {
                if !warned {
                    tracing::info!(
                        store.path = %cfg.data_dir.display(),
                        "the store is busy (a trialwatch command has it open?); waiting for it"
                    );
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.into()),
        }
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
    let store = open_store(&cfg).await?;
    let notifier = notify::Notifier::from_env();
    let mut state = load_state(&store).unwrap_or_default();
    // The bookkeeping names our own PID only when this process image replaced the one that
    // wrote it (`reexec`).
    let resumed = state.pid == std::process::id() && state.started_at.is_some();
    state.pid = std::process::id();
    state.started_at = Some(Utc::now());
    state.sync_running_since = None;
    let shared = Arc::new(Shared {
        store: store.clone(),
        cfg: RwLock::new(Arc::new(cfg.clone())),
        sync_lock: Arc::new(tokio::sync::Mutex::new(())),
        state: Mutex::new(state.clone()),
        notifier,
        delivering: std::sync::atomic::AtomicBool::new(false),
        reexec_due: std::sync::atomic::AtomicBool::new(false),
    });

    let listener = bind_control(&socket)?;
    let inflight = Arc::new(AtomicUsize::new(0));
    let serving = Arc::new(control::Serving {
        executor: opts.executor.clone(),
        config: {
            let shared = shared.clone();
            Arc::new(move || shared.config())
        },
        store: store.clone(),
        sync_lock: shared.sync_lock.clone(),
    });
    let accept_task = tokio::spawn(accept_loop(listener, serving, inflight.clone()));

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;

    // A fire time that passed while no daemon ran is made up for once, right away.
    let now = Utc::now();
    let mut waiting_for = match state.next_fire {
        Some(t) if t <= now => {
            tracing::info!(sync.fire_time = %t, "a scheduled sync was missed while the daemon was down; running it now");
            Some(t)
        }
        _ => schedule::next_fire(&cfg.schedule.cron, now),
    };
    shared.update_state(|s| {
        *s = state;
        s.next_fire = waiting_for;
    });
    tracing::info!(
        pid = std::process::id(),
        store.path = %cfg.data_dir.display(),
        control.socket = %socket.display(),
        watch.config_trials = cfg.watch.nct_ids.len(),
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

    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut running: Option<oneshot::Receiver<()>> = None;
    let mut outbox_timer = tokio::time::interval(OUTBOX_INTERVAL);
    outbox_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watchdog_every = shared
        .notifier
        .watchdog_interval()
        .unwrap_or(Duration::from_secs(3600));
    let watchdog_on = shared.notifier.watchdog_interval().is_some();
    let mut watchdog_timer = tokio::time::interval(watchdog_every);
    tokio::pin!(shutdown);

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
            _ = &mut shutdown => break,
            _ = hup.recv() => {
                let old_cron = shared.config().schedule.cron.source().to_string();
                reload(&shared, &opts);
                let cron = shared.config().schedule.cron.clone();
                if cron.source() != old_cron {
                    waiting_for = schedule::next_fire(&cron, Utc::now());
                    shared.update_state(|s| s.next_fire = waiting_for);
                }
                shared.notifier.send(&format!("READY=1\nSTATUS={}", shared.status_line()));
            }
            _ = async { if let Some(rx) = running.as_mut() { let _ = rx.await; } }, if running.is_some() => {
                running = None;
                deliver_outbox(&shared);
                shared.notifier.status(&shared.status_line());
            }
            _ = tokio::time::sleep(sleep_for) => {
                let Some(fire) = waiting_for else { continue };
                let now = Utc::now();
                let cron = shared.config().schedule.cron.clone();
                if let schedule::Tick::Fire { missed } = schedule::tick(&cron, fire, now) {
                    if missed > 0 {
                        tracing::info!(sync.fire_time = %fire, sync.missed = missed, "fire times passed while the machine slept or a sync ran; running once for all of them");
                    }
                    if running.is_some() {
                        tracing::warn!(sync.fire_time = %fire, "the previous sync is still running at the next fire time; not starting another");
                    } else {
                        running = Some(start_scheduled_sync(shared.clone(), fire, cancel_rx.clone(), opts.stop_timeout));
                    }
                    waiting_for = schedule::next_fire(&cron, now);
                    shared.update_state(|s| s.next_fire = waiting_for);
                    shared.notifier.status(&shared.status_line());
                }
            }
            _ = outbox_timer.tick() => {
                if running.is_none() {
                    deliver_outbox(&shared);
                }
            }
            _ = watchdog_timer.tick(), if watchdog_on => shared.notifier.watchdog(),
            _ = tokio::time::sleep(REEXEC_POLL), if shared.reexec_due.load(Ordering::SeqCst) => {
                let idle = running.is_none()
                    && !shared.delivering.load(Ordering::SeqCst)
                    && inflight.load(Ordering::SeqCst) == 0;
                if idle {
                    shared.reexec_due.store(false, Ordering::SeqCst);
                    let store = shared.store.clone();
                    match tokio::task::spawn_blocking(move || store.flush()).await {
                        Ok(Ok(())) => {
                            let e = reexec();
                            tracing::error!(error = %e, "cannot re-execute; carrying on in this process");
                        }
                        Ok(Err(e)) => tracing::error!(error = %e, "cannot flush the store; not re-executing"),
                        Err(e) => tracing::error!(error = %e, "cannot flush the store; not re-executing"),
                    }
                }
            }
        }
    }

    // --- shutdown -------------------------------------------------------------------------
    let deadline = Instant::now() + opts.stop_timeout.saturating_sub(Duration::from_secs(2));
    tracing::info!(
        stop.timeout_ms = opts.stop_timeout.as_millis() as u64,
        "shutting down: no new work is taken"
    );
    shared.notifier.stopping();
    accept_task.abort();
    let _ = std::fs::remove_file(&socket);
    let _ = cancel_tx.send(true);
    if let Some(rx) = running.take() {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, rx).await.is_err() {
            tracing::warn!(
                "the running sync did not stop in time; leaving it (every store write is atomic)"
            );
        }
    }
    while inflight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = inflight.load(Ordering::SeqCst);
    if left > 0 {
        tracing::warn!(
            control.inflight = left,
            "CLI commands still running at the stop deadline are abandoned (their store writes are atomic)"
        );
    }
    shared.update_state(|s| s.sync_running_since = None);
    let flushed = tokio::task::spawn_blocking(move || store.flush()).await;
    match flushed {
        Ok(Ok(())) => tracing::info!("store flushed; daemon stopped"),
        Ok(Err(e)) => tracing::error!(error = %e, "the final store flush failed"),
        Err(e) => tracing::error!(error = %e, "the final store flush did not run"),
    }
    Ok(())
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

/// Bind the control socket with mode 0600 (only the daemon's user may run commands in it).
fn bind_control(path: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    // We hold the lock, so a socket file left here is a dead daemon's.
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).with_context(|| {
        format!(
            "cannot create the control socket {}; check that its directory is writable (paths \
             longer than 107 bytes do not work: use a shorter --data-dir or set RUNTIME_DIRECTORY)",
            path.display()
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private (0600)", path.display()))?;
    Ok(listener)
}

/// Accept CLI connections until aborted; each command runs on a blocking thread.
async fn accept_loop(
    listener: tokio::net::UnixListener,
    serving: Arc<control::Serving>,
    inflight: Arc<AtomicUsize>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let std_stream = match stream.into_std().and_then(|s| {
            s.set_nonblocking(false)?;
            Ok(s)
        }) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot use a control connection");
                continue;
            }
        };
        let serving = serving.clone();
        let inflight = inflight.clone();
        inflight.fetch_add(1, Ordering::SeqCst);
        tokio::task::spawn_blocking(move || {
            control::handle(std_stream, &serving);
            inflight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// SIGHUP: read the configuration (and the watch-list file it names) again. A broken file is
/// reported and the configuration in use is kept.
fn reload(shared: &Shared, opts: &Options) {
    let old = shared.config();
    match Config::load(
        opts.config_path.as_deref(),
        opts.data_dir_override.as_deref(),
    ) {
        Ok(new) if new.data_dir != old.data_dir => tracing::error!(
            config.data_dir = %new.data_dir.display(),
            store.path = %old.data_dir.display(),
            "the new configuration moves data_dir, which needs a restart \
             (`systemctl restart trialwatch`); keeping the configuration in use"
        ),
        Ok(new) => {
            tracing::info!(
                watch.config_trials = new.watch.nct_ids.len(),
                schedule.cron = %new.schedule.cron.source(),
                "configuration reloaded"
            );
            if let Ok(mut c) = shared.cfg.write() {
                *c = Arc::new(new);
            }
        }
        Err(e) => tracing::error!(
            error = %e,
            "the configuration could not be reloaded; keeping the one in use (fix the file and send SIGHUP again)"
        ),
    }
}

/// Start delivering what the outbox owes, unless a delivery is already running: called after
/// each sync and every [`OUTBOX_INTERVAL`]. Runs as its own task so a slow SMTP server never
/// holds up the main loop (and with it the systemd watchdog). On shutdown an unfinished
/// delivery is simply dropped: an alert leaves the outbox only once its receiver accepted it.
fn deliver_outbox(shared: &Arc<Shared>) {
    if shared.delivering.swap(true, Ordering::SeqCst) {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        deliver_outbox_once(&shared).await;
        shared.delivering.store(false, Ordering::SeqCst);
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

/// What kind of fetch a scheduled run decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// Every watched trial (first run, or `full_sync_days` since the last full sync).
    Full,
    /// Watched trials whose `LastUpdatePostDate` moved, plus those never synced or failed.
    Incremental,
    /// Only trials never synced (or whose last sync failed): CT.gov's data did not move.
    NewOnly,
}

/// The plan of one scheduled run, decided from the store and CT.gov's `/version`.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to fetch, and why.
    Skip(String),
    Fetch {
        kind: SyncKind,
        ids: Vec<NctId>,
    },
}

/// Decide what a scheduled run fetches. `changed_since` asks CT.gov which of the watched
/// trials changed since a date; it is only called for an incremental run.
pub async fn plan<F, Fut>(
    cfg: &Config,
    store: &Store,
    state: &DaemonState,
    data_timestamp: Option<&str>,
    now: DateTime<Utc>,
    changed_since: F,
) -> anyhow::Result<Plan>
where
    F: FnOnce(Vec<NctId>, chrono::NaiveDate) -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<NctId>>>,
{
    let watched = crate::sync::watched_ids(cfg, store)?;
    if watched.is_empty() {
        return Ok(Plan::Skip(
            "the watch list is empty; add trials with `trialwatch watch add NCT…` or \
             `[watch] nct_ids`"
                .into(),
        ));
    }
    // Never synced whole, or failed last time: these are fetched whatever CT.gov says.
    let mut pending = Vec::new();
    for id in &watched {
        match store.trial(id)? {
            Some(t) if t.latest_version > 0 && t.last_error.is_none() => {}
            _ => pending.push(id.clone()),
        }
    }
    let full_due = match state.last_full_at {
        None => true,
        Some(t) => now - t >= chrono::Duration::days(i64::from(cfg.schedule.full_sync_days)),
    };
    if full_due {
        return Ok(Plan::Fetch {
            kind: SyncKind::Full,
            ids: watched,
        });
    }
    let unmoved = match (data_timestamp, state.complete_data_timestamp.as_deref()) {
        (Some(ts), Some(done)) if ts == done => Some(ts),
        _ => None,
    };
    if let Some(ts) = unmoved {
        return Ok(if pending.is_empty() {
            Plan::Skip(format!(
                "CT.gov's dataTimestamp {ts} has not moved since the last complete sync{}; \
                     nothing can have changed",
                state
                    .last_complete_at
                    .map(|t| format!(" at {}", t.format("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_default()
            ))
        } else {
            Plan::Fetch {
                kind: SyncKind::NewOnly,
                ids: pending,
            }
        });
    }
    let Some(last) = state.last_complete_at else {
        return Ok(Plan::Fetch {
            kind: SyncKind::Full,
            ids: watched,
        });
    };
    // Two days of slack: LastUpdatePostDate is a US date, our clock is UTC.
    let since = last.date_naive() - chrono::Days::new(2);
    match changed_since(watched.clone(), since).await {
        Ok(changed) => {
            let mut ids = pending;
            for id in changed {
                if watched.contains(&id) && !ids.contains(&id) {
                    ids.push(id);
                }
            }
            Ok(Plan::Fetch {
                kind: SyncKind::Incremental,
                ids,
            })
        }
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "cannot ask CT.gov what changed; running a full sync instead"
            );
            Ok(Plan::Fetch {
                kind: SyncKind::Full,
                ids: watched,
            })
        }
    }
}

/// CT.gov calls the scheduler needs beyond `sync::run`.
mod ctgov_calls {
    use super::*;
    use crate::ctgov::client::CtGovClient;

    /// `GET /api/v2/version` → `dataTimestamp`.
    pub async fn data_timestamp(client: &CtGovClient) -> anyhow::Result<String> {
        Ok(client.data_timestamp().await?)
    }

    /// Watched trials whose `LastUpdatePostDate` is on or after `since`.
    pub async fn changed_since(
        client: &CtGovClient,
        ids: Vec<NctId>,
        since: chrono::NaiveDate,
    ) -> anyhow::Result<Vec<NctId>> {
        Ok(client.fetch_updated_since(&ids, since).await?)
    }
}

/// Start one scheduled run (wait for the sync lock, plan, fetch, record) on its own thread
/// and runtime, so that on shutdown the fetch can be dropped while the store write in
/// progress finishes. The receiver resolves when the run is over.
fn start_scheduled_sync(
    shared: Arc<Shared>,
    fire: DateTime<Utc>,
    mut cancel: watch::Receiver<bool>,
    stop_timeout: Duration,
) -> oneshot::Receiver<()> {
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let guard = tokio::select! {
            g = shared.sync_lock.clone().lock_owned() => g,
            _ = cancel.wait_for(|c| *c) => { let _ = done_tx.send(()); return; }
        };
        // The detection time of new versions: `clock::now()` like `trialwatch sync` (tests may
        // freeze it); the timetable itself always runs on the real wall clock.
        let started = crate::clock::now();
        shared.update_state(|s| s.sync_running_since = Some(started));
        shared.notifier.status(&shared.status_line());
        let (tx, rx) = oneshot::channel();
        let thread_shared = shared.clone();
        let thread_cancel = cancel.clone();
        let spawned = std::thread::Builder::new()
            .name("trialwatch-sync".into())
            .spawn(move || {
                let _ = tx.send(sync_thread(
                    &thread_shared,
                    fire,
                    started,
                    thread_cancel,
                    stop_timeout,
                ));
            });
        let outcome = match spawned {
            Ok(_) => rx.await.unwrap_or(Outcome::Cancelled),
            Err(e) => Outcome::Failed(anyhow::anyhow!("cannot start the sync thread: {e}")),
        };
        record_outcome(&shared, started, outcome);
        drop(guard);
        let _ = done_tx.send(());
    });
    done_rx
}

/// How a scheduled run ended.
enum Outcome {
    Skipped {
        reason: String,
        data_timestamp: Option<String>,
    },
    Synced {
        kind: SyncKind,
        report: Option<SyncReport>,
        data_timestamp: Option<String>,
    },
    Cancelled,
    Failed(anyhow::Error),
}

/// The body of the sync thread: its own runtime, cancelled by `cancel`.
fn sync_thread(
    shared: &Shared,
    fire: DateTime<Utc>,
    started: DateTime<Utc>,
    mut cancel: watch::Receiver<bool>,
    stop_timeout: Duration,
) -> Outcome {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Outcome::Failed(anyhow::anyhow!("cannot start the sync runtime: {e}")),
    };
    let cfg = shared.config();
    let state = shared.state();
    let store = shared.store.clone();
    let outcome = rt.block_on(async {
        tokio::select! {
            o = scheduled_run(&cfg, &store, &state, fire, started) => o,
            _ = cancel.wait_for(|c| *c) => Outcome::Cancelled,
        }
    });
    // Dropping the fetch left batch writes running on blocking threads: let them finish.
    rt.shutdown_timeout(stop_timeout);
    if let Err(e) = store.flush() {
        tracing::error!(error = %e, "cannot flush the store after a sync");
    }
    outcome
}

async fn scheduled_run(
    cfg: &Config,
    store: &Store,
    state: &DaemonState,
    fire: DateTime<Utc>,
    started: DateTime<Utc>,
) -> Outcome {
    let client = match crate::sync::client_from_config(cfg) {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(e),
    };
    let data_timestamp = match ctgov_calls::data_timestamp(&client).await {
        Ok(ts) => Some(ts),
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "cannot ask CT.gov for its data version; syncing anyway"
            );
            None
        }
    };
    let plan = plan(
        cfg,
        store,
        state,
        data_timestamp.as_deref(),
        started,
        |ids, since| {
            let client = client.clone();
            async move { ctgov_calls::changed_since(&client, ids, since).await }
        },
    )
    .await;
    match plan {
        Err(e) => Outcome::Failed(e),
        Ok(Plan::Skip(reason)) => Outcome::Skipped {
            reason,
            data_timestamp,
        },
        Ok(Plan::Fetch { kind, ids }) if ids.is_empty() => {
            tracing::info!(sync.fire_time = %fire, sync.kind = ?kind, "no watched trial changed on CT.gov; nothing to fetch");
            Outcome::Synced {
                kind,
                report: None,
                data_timestamp,
            }
        }
        Ok(Plan::Fetch { kind, ids }) => {
            tracing::info!(sync.fire_time = %fire, sync.kind = ?kind, sync.trials = ids.len(), "scheduled sync started");
            // Which subscriptions each new version owes alerts to is decided in the same
            // store write as the version itself (read fresh: `subscribe` may have added some).
            let subs = match crate::outbox::Subscriptions::load(cfg, store) {
                Ok(s) => Arc::new(s),
                Err(e) => return Outcome::Failed(e.into()),
            };
            match crate::sync::run(&client, store, subs, ids, started, None).await {
                Ok(report) => Outcome::Synced {
                    kind,
                    report: Some(report),
                    data_timestamp,
                },
                Err(e) => Outcome::Failed(e),
            }
        }
    }
}

/// Log the outcome and update the bookkeeping it decides.
fn record_outcome(shared: &Shared, started: DateTime<Utc>, outcome: Outcome) {
    let checked = Utc::now();
    match outcome {
        Outcome::Skipped {
            reason,
            data_timestamp,
        } => {
            tracing::info!(ctgov.data_timestamp = ?data_timestamp, "scheduled sync skipped: {reason}");
            shared.update_state(|s| {
                s.sync_running_since = None;
                if data_timestamp.is_some() {
                    s.data_timestamp = data_timestamp;
                    s.data_timestamp_checked_at = Some(checked);
                }
                s.last_decision = Some(format!("skipped: {reason}"));
            });
        }
        Outcome::Synced {
            kind,
            report,
            data_timestamp,
        } => {
            let threshold = shared.config().schedule.reexec_after_trials as usize;
            if let Some(r) = &report
                && threshold > 0
                && r.fetched >= threshold
            {
                shared.reexec_due.store(true, Ordering::SeqCst);
            }
            if let Some(r) = &report {
                tracing::info!(
                    sync.kind = ?kind,
                    sync.trials = r.requested,
                    sync.new_versions = r.new_versions,
                    sync.unchanged = r.unchanged,
                    sync.failed = r.failed.len(),
                    sync.requests = r.requests,
                    sync.duration_ms = r.duration_ms,
                    "scheduled sync finished"
                );
            }
            let summary = match &report {
                Some(r) => format!(
                    "{kind:?} sync of {} trials: {} new versions, {} failed",
                    r.requested,
                    r.new_versions,
                    r.failed.len()
                ),
                None => format!("{kind:?} sync: no watched trial changed"),
            };
            shared.update_state(|s| {
                s.sync_running_since = None;
                if data_timestamp.is_some() {
                    s.data_timestamp = data_timestamp.clone();
                    s.data_timestamp_checked_at = Some(checked);
                }
                // Failed trials are retried by every later run (they stay "pending"), so a
                // run that covered its plan counts as complete even with failures.
                if kind != SyncKind::NewOnly {
                    s.complete_data_timestamp = data_timestamp;
                    s.last_complete_at = Some(started);
                }
                if kind == SyncKind::Full {
                    s.last_full_at = Some(started);
                }
                s.last_decision = Some(summary);
            });
        }
        Outcome::Cancelled => {
            tracing::info!("scheduled sync abandoned for shutdown; what it stored is kept");
            shared.update_state(|s| s.sync_running_since = None);
        }
        Outcome::Failed(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "scheduled sync failed; the next fire time will try again"
            );
            shared.update_state(|s| {
                s.sync_running_since = None;
                s.last_decision = Some(format!("failed: {e:#}"));
            });
        }
    }
}

#[cfg(test)]
mod tests;
