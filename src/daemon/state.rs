//! What the daemon's tasks share: the bookkeeping kept in the store ([`DaemonState`], meta
//! [`STATE_META`]), the open store, the configuration in use (replaced on SIGHUP), and the
//! one-sync-at-a-time lock.
//!
//! Not here: what runs when ([`super::scheduler`]), the background work and its cancellation
//! ([`super::tasks`]), what a scheduled run fetches ([`super::plan`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::systemd;
use super::tasks::{OneAtATime, Work};
use crate::config::Config;
use crate::store::Store;
use crate::sync::SyncReport;

/// Name of the store meta entry holding [`DaemonState`].
pub const STATE_META: &str = "daemon.state";

/// How long the daemon waits for a CLI command that has the store open when it starts.
const STORE_BUSY_WAIT: Duration = Duration::from_secs(60);

/// The daemon's bookkeeping, kept in the store (meta [`STATE_META`]) so that `status` can show
/// it and a restarted daemon continues where the last one stopped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DaemonState {
    /// PID of the daemon that wrote this (for `status`).
    pub pid: u32,
    /// When that daemon started (for `status`; also tells a re-executed image that it resumes).
    pub started_at: Option<DateTime<Utc>>,
    /// The fire time being waited for. A restarted daemon that finds it in the past runs the
    /// sync it missed while it was down.
    pub next_fire: Option<DateTime<Utc>>,
    /// Set while a scheduled sync runs.
    pub sync_running_since: Option<DateTime<Utc>>,
    /// The last `dataTimestamp` CT.gov's `/version` reported, and when it was asked.
    pub data_timestamp: Option<String>,
    /// When [`DaemonState::data_timestamp`] was asked (for `status`: how fresh it is).
    pub data_timestamp_checked_at: Option<DateTime<Utc>>,
    /// The `dataTimestamp` seen before the last sync that covered the whole plan: while CT.gov
    /// reports the same value, nothing can have changed and the fetch is skipped.
    pub complete_data_timestamp: Option<String>,
    /// Start of that sync (for `status` and the skip message).
    pub last_complete_at: Option<DateTime<Utc>>,
    /// Start of the last full sync (the safety net runs `full_sync_days` after it).
    pub last_full_at: Option<DateTime<Utc>>,
    /// What the last scheduled run decided and why, in a sentence.
    pub last_decision: Option<String>,
    /// Failed scheduled syncs in a row (business days only) and since when syncing is
    /// unhealthy; absent in state written before it existed.
    #[serde(default)]
    pub health: super::health::SyncHealth,
}

/// Read the daemon's bookkeeping from the store (absent before the first daemon run).
pub fn load_state(store: &Store) -> Option<DaemonState> {
    store.get_meta(STATE_META).ok().flatten()
}

/// State shared by the scheduler, the sync thread, the delivery passes and the control socket.
pub(super) struct Shared {
    pub(super) store: Store,
    /// Replaced whole on a successful SIGHUP reload.
    cfg: RwLock<Arc<Config>>,
    /// Where the configuration came from, to read it again on SIGHUP.
    config_path: Option<PathBuf>,
    /// `--data-dir`, which keeps winning over the file after a reload.
    data_dir_override: Option<PathBuf>,
    /// One sync or delivery pass at a time: scheduled ones, and `sync` / `outbox deliver`
    /// forwarded by the CLI.
    pub(super) sync_lock: Arc<tokio::sync::Mutex<()>>,
    /// In-memory copy of the bookkeeping; every change is written through to the store.
    state: Mutex<DaemonState>,
    pub(super) notifier: systemd::Notifier,
    /// Claimed while an outbox delivery pass runs, so timer and post-sync passes never
    /// overlap (released on drop, so a panicking pass cannot block later ones).
    pub(super) delivering: OneAtATime,
    /// Woken by a sync large enough to re-execute after (`[schedule] reexec_after_trials`).
    pub(super) reexec_due: tokio::sync::Notify,
    /// The background work, and the token that cancels it on shutdown.
    pub(super) work: Work,
    /// Runs CLI commands in the daemon (set once at start): the post-sync export uses it.
    pub(super) executor: std::sync::OnceLock<Arc<dyn super::control::Executor>>,
}

impl Shared {
    /// Shared state for a daemon starting with `cfg`, its store and its bookkeeping.
    pub(super) fn new(
        cfg: Config,
        config_path: Option<PathBuf>,
        data_dir_override: Option<PathBuf>,
        store: Store,
        state: DaemonState,
    ) -> Shared {
        Shared {
            store,
            cfg: RwLock::new(Arc::new(cfg)),
            config_path,
            data_dir_override,
            sync_lock: Arc::new(tokio::sync::Mutex::new(())),
            state: Mutex::new(state),
            notifier: systemd::Notifier::from_env(),
            delivering: OneAtATime::default(),
            reexec_due: tokio::sync::Notify::new(),
            work: Work::default(),
            executor: std::sync::OnceLock::new(),
        }
    }

    /// The configuration in use.
    pub(super) fn config(&self) -> Arc<Config> {
        self.cfg
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Change the bookkeeping and write it through to the store.
    pub(super) fn update_state(&self, f: impl FnOnce(&mut DaemonState)) {
        let snapshot = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
            s.clone()
        };
        if let Err(e) = self.store.set_meta(STATE_META, &snapshot) {
            tracing::warn!(error = %e, "could not record the daemon's state in the store");
        }
    }

    /// A copy of the bookkeeping.
    pub(super) fn state(&self) -> DaemonState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The one-line summary systemd shows in `systemctl status`.
    pub(super) fn status_line(&self) -> String {
        let s = self.state();
        let last = match self
            .store
            .get_meta::<SyncReport>("last_sync")
            .ok()
            .flatten()
        {
            Some(r) => format!(
                "last sync {} ({}, {}, {} failed)",
                r.started_at.format("%Y-%m-%d %H:%M UTC"),
                crate::util::text::plural(r.requested, "trial"),
                crate::util::text::plural(r.new_versions, "new version"),
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

    /// SIGHUP: read the configuration (and the watch-list file it names) again. A broken file
    /// is reported and the configuration in use is kept.
    pub(super) fn reload(&self) {
        let old = self.config();
        match Config::load(
            self.config_path.as_deref(),
            self.data_dir_override.as_deref(),
        ) {
            Ok(new) if new.data_dir != old.data_dir => tracing::error!(
                config.data_dir = %new.data_dir.display(),
                store.path = %old.data_dir.display(),
                "the new configuration moves data_dir, which needs a restart \
                 (`systemctl restart trialwatch`); keeping the configuration in use"
            ),
            Ok(new) => {
                super::web::reload_notice(&old, &new);
                tracing::info!(
                    watch.config_trials = new.watch.ids().len(),
                    schedule.cron = %new.schedule.cron.source(),
                    "configuration reloaded"
                );
                if let Ok(mut c) = self.cfg.write() {
                    *c = Arc::new(new);
                }
            }
            Err(e) => tracing::error!(
                error = %e,
                "the configuration could not be reloaded; keeping the one in use (fix the file and send SIGHUP again)"
            ),
        }
    }
}

/// Open the store, waiting while a CLI command (which opens it when no daemon runs) has it.
pub(super) async fn open_store(data_dir: &Path) -> anyhow::Result<Store> {
    let started = Instant::now();
    let mut warned = false;
    loop {
        let dir = data_dir.to_path_buf();
        match tokio::task::spawn_blocking(move || {
            Store::open_with_cache(&dir, crate::store::DAEMON_CACHE_BYTES)
        })
        .await?
        {
            Ok(s) => return Ok(s),
            Err(crate::store::StoreError::Open { .. }) if started.elapsed() < STORE_BUSY_WAIT => {
                if !warned {
                    tracing::info!(
                        store.path = %data_dir.display(),
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
