//! `trialwatch daemon` (start the daemon, stop it with SIGTERM/SIGINT), `trialwatch status`,
//! and the CLI's side of forwarding: when a daemon holds the data directory, commands that need
//! the store run inside it (see [`crate::daemon::control`]) instead of opening the store here.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use serde::Serialize;

use super::{Cli, Command, Ctx, execute};
use crate::config::Config;
use crate::daemon::control::{self, Executor, ForwardError, Job};
use crate::daemon::{self, lock, schedule};
use crate::sync::SyncReport;

/// How long the CLI waits for a daemon that holds the lock but does not answer yet (it is
/// starting: opening the store, binding its socket).
const CONNECT_WAIT: Duration = Duration::from_secs(15);

/// `trialwatch daemon`: run until SIGTERM or SIGINT.
pub(super) fn run_daemon(
    cli_config: Option<std::path::PathBuf>,
    data_dir: Option<std::path::PathBuf>,
    cfg: Config,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("trialwatch")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let config_path = cli_config.or_else(|| cfg.source.clone());
    let opts = daemon::Options {
        cfg,
        config_path,
        data_dir_override: data_dir,
        executor: Arc::new(CliExecutor),
        stop_timeout: daemon::DEFAULT_STOP_TIMEOUT,
    };
    let result = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        // Listen before anything else, so an early SIGTERM is a clean stop and not a kill.
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        };
        daemon::run(opts, shutdown).await
    });
    // Blocking threads of abandoned CLI commands must not hold the exit up.
    rt.shutdown_timeout(Duration::from_secs(1));
    result.map(|()| ExitCode::SUCCESS)
}

/// Commands that open the store, and so must run inside a running daemon.
fn needs_store(command: &Command) -> bool {
    !matches!(
        command,
        Command::CheckConfig { .. }
            | Command::Fields { .. }
            | Command::Daemon
            | Command::Serve { .. }
            | Command::Completions { .. }
            | Command::Man
    )
}

/// When a daemon holds the data directory, run `command` in it and return its exit code;
/// `None` when no daemon runs (the caller then opens the store itself).
pub(super) fn forward_if_running(
    cfg: &Config,
    command: &Command,
) -> anyhow::Result<Option<ExitCode>> {
    if !needs_store(command) {
        return Ok(None);
    }
    // A store we may not even look into (another user's, 0700) is not ours to use, daemon or
    // not: say as whom to run instead of failing on sled's files.
    let lock_path = cfg.data_dir.join(lock::LOCK_FILE);
    if let Err(e) = std::fs::File::open(&lock_path)
        && e.kind() == std::io::ErrorKind::PermissionDenied
    {
        let owner = control::owner_of(&lock_path);
        anyhow::bail!(
            "cannot use the data directory {}: permission denied; run the command as {owner} \
             (the user the store belongs to), e.g. `sudo -u {owner} trialwatch …`",
            cfg.data_dir.display()
        );
    }
    let Some(holder) = lock::holder(&cfg.data_dir) else {
        return Ok(None);
    };
    let socket = holder
        .socket
        .clone()
        .unwrap_or_else(|| control::socket_path(&cfg.data_dir));
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // The daemon runs elsewhere: paths must mean what they mean to the user who typed them.
    let args = std::env::current_dir()
        .map(|cwd| super::export::absolute_dir_arg(absolute_paths(args.clone(), &cwd), &cwd))
        .unwrap_or(args);
    // The daemon does not see this shell's `TZ`: hand it over as `--tz` (checked in `main`).
    let args = super::output::with_tz_arg(args);
    let started = std::time::Instant::now();
    loop {
        // A sync or backfill the daemon runs draws its bar here, from the daemon's events.
        let verb = match command {
            Command::Sync { .. } => Some("syncing"),
            Command::Backfill { .. } => Some("backfilling"),
            _ => None,
        };
        let mut bar: Option<Option<super::progress::Progress>> = None;
        let mut on_progress = |ev| {
            if let Some(verb) = verb
                && let Some(b) = bar
                    .get_or_insert_with(|| {
                        super::progress::Progress::forwarded(verb, cfg.ctgov.timeout)
                    })
                    .as_ref()
            {
                b.show(ev);
            }
        };
        let forwarded = control::forward(&socket, args.clone(), &mut on_progress);
        if let Some(Some(b)) = &bar {
            b.finish();
        }
        match forwarded {
            Ok(code) => return Ok(Some(code)),
            Err(ForwardError::Connect { .. } | ForwardError::Busy)
                if started.elapsed() < CONNECT_WAIT =>
            {
                std::thread::sleep(Duration::from_millis(100));
                // The daemon may have stopped meanwhile: then open the store ourselves.
                if lock::holder(&cfg.data_dir).is_none() {
                    return Ok(None);
                }
            }
            Err(e @ ForwardError::Connect { .. }) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "a trialwatch daemon (PID {}) holds the data directory {} but does not answer; \
                     check it with `systemctl status trialwatch` or `journalctl -u trialwatch`",
                    holder
                        .pid
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "unknown".into()),
                    cfg.data_dir.display()
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Options whose value is a path (kept in step with the `PathBuf` arguments in `cli`).
const PATH_OPTIONS: [&str; 3] = ["--config", "--data-dir", "--secret-file"];

/// `args` with the values of [`PATH_OPTIONS`] (`--opt PATH` and `--opt=PATH`) made absolute
/// against `cwd`; arguments after `--` are left alone.
fn absolute_paths(args: Vec<String>, cwd: &std::path::Path) -> Vec<String> {
    let abs = |p: &str| -> String {
        let path = std::path::Path::new(p);
        if p.is_empty() || path.is_absolute() {
            p.to_string()
        } else {
            cwd.join(path).to_string_lossy().into_owned()
        }
    };
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            out.push(arg);
            out.extend(iter);
            break;
        }
        if PATH_OPTIONS.contains(&arg.as_str()) {
            out.push(arg);
            if let Some(value) = iter.next() {
                out.push(abs(&value));
            }
            continue;
        }
        match PATH_OPTIONS.iter().find_map(|o| {
            arg.strip_prefix(o)
                .and_then(|rest| rest.strip_prefix('='))
                .map(|v| (o, v))
        }) {
            Some((opt, value)) => out.push(format!("{opt}={}", abs(value))),
            None => out.push(arg),
        }
    }
    out
}

/// The exit code's number, for the control socket's answer (`ExitCode` does not expose it).
/// Commands return only the codes the CLI documents (see `cli/mod.rs`): 0, 2, and 1 for a
/// fatal error, which is also what anything else becomes.
fn code_of(code: ExitCode) -> u8 {
    if code == ExitCode::SUCCESS {
        0
    } else if code == ExitCode::from(2) {
        2
    } else {
        1
    }
}

/// Parses forwarded arguments exactly as `main` parsed them in the CLI process.
struct CliExecutor;

impl Executor for CliExecutor {
    fn parse(&self, args: &[String]) -> Result<Job, String> {
        let argv = std::iter::once("trialwatch".to_string()).chain(args.iter().cloned());
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string().trim_end().to_string())?;
        let command = cli.command;
        // The zone the user's CLI chose (it forwards `$TZ` as `--tz`); checked there already.
        let zone =
            super::output::display_zone(cli.tz.as_deref(), true).map_err(|e| e.to_string())?;
        if matches!(command, Command::Daemon) {
            return Err("a daemon already runs on this data directory".into());
        }
        if matches!(command, Command::Serve { .. }) {
            return Err("a daemon runs on this data directory: set `[web] listen` in its configuration to serve the web view".into());
        }
        Ok(Job {
            exclusive: matches!(
                command,
                Command::Sync { .. }
                    | Command::Backfill { .. }
                    | Command::Verify { .. }
                    | Command::Outbox {
                        action: Some(_),
                        ..
                    }
            ),
            run: Box::new(move |cfg, store, out| {
                let ctx = Ctx::new(cfg.clone(), Some(store.clone()));
                crate::util::zone::with_zone(zone, || execute(command, &ctx, out)).map(code_of)
            }),
        })
    }
}

/// `trialwatch status --json`: field names are stable.
#[derive(Serialize)]
struct Status {
    daemon: DaemonStatus,
    /// The last sync's summary, whoever ran it (daemon or `trialwatch sync`).
    last_sync: Option<SyncReport>,
    /// When the daemon syncs next (computed from the configuration when no daemon runs).
    next_sync: Option<DateTime<Utc>>,
    sync_running_since: Option<DateTime<Utc>>,
    /// CT.gov's `dataTimestamp` last seen by the daemon, and when it asked.
    ctgov_data_timestamp: Option<String>,
    ctgov_data_timestamp_checked_at: Option<DateTime<Utc>>,
    last_full_sync: Option<DateTime<Utc>>,
    /// What the daemon's last scheduled run decided, and why.
    last_decision: Option<String>,
    outbox: OutboxStatus,
    store: StoreStatus,
}

#[derive(Serialize)]
struct DaemonStatus {
    running: bool,
    pid: Option<u32>,
    started_at: Option<DateTime<Utc>>,
}

/// Alerts waiting for delivery, and dead letters (`null` when the store cannot tell).
#[derive(Serialize)]
struct OutboxStatus {
    pending: Option<u64>,
    dead: Option<u64>,
}

#[derive(Serialize)]
struct StoreStatus {
    path: String,
    size_bytes: u64,
}

/// `trialwatch status [--json]`.
pub(super) fn status(ctx: &Ctx, json: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let cfg = &ctx.cfg;
    let holder = lock::holder(&cfg.data_dir);
    let store = ctx.open_store()?;
    let state = daemon::load_state(&store).unwrap_or_default();
    let running = holder.is_some();
    let next_sync = if running {
        state.next_fire
    } else {
        schedule::next_fire(&cfg.schedule.cron, Utc::now())
    };
    let st = Status {
        daemon: DaemonStatus {
            running,
            pid: holder.as_ref().and_then(|h| h.pid),
            started_at: running.then_some(state.started_at).flatten(),
        },
        last_sync: store.get_meta("last_sync")?,
        next_sync,
        sync_running_since: running.then_some(state.sync_running_since).flatten(),
        ctgov_data_timestamp: state.data_timestamp.clone(),
        ctgov_data_timestamp_checked_at: state.data_timestamp_checked_at,
        last_full_sync: state.last_full_at,
        last_decision: state.last_decision.clone(),
        outbox: match crate::outbox::outbox_counts(&store) {
            Ok((pending, dead)) => OutboxStatus {
                pending: Some(pending as u64),
                dead: Some(dead as u64),
            },
            Err(_) => OutboxStatus {
                pending: None,
                dead: None,
            },
        },
        store: StoreStatus {
            path: cfg.data_dir.display().to_string(),
            size_bytes: store.size_on_disk()?,
        },
    };
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&st)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let t = crate::util::zone::seconds;
    match (&st.daemon.pid, st.daemon.running) {
        (pid, true) => writeln!(
            out,
            "daemon: running (PID {}{})",
            pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            st.daemon
                .started_at
                .map(|s| format!(", since {}", t(s)))
                .unwrap_or_default()
        )?,
        (_, false) => writeln!(out, "daemon: not running")?,
    }
    match &st.last_sync {
        Some(r) => writeln!(
            out,
            "last sync: {}, took {}: {}, {}, {} failed",
            t(r.started_at),
            crate::util::text::duration(std::time::Duration::from_millis(r.duration_ms)),
            crate::util::text::plural(r.requested, "trial"),
            crate::util::text::plural(r.new_versions, "new version"),
            r.failed.len()
        )?,
        None => writeln!(out, "last sync: never")?,
    }
    if let Some(s) = st.sync_running_since {
        writeln!(out, "sync running since: {}", t(s))?;
    }
    match st.next_sync {
        Some(n) if running => {
            writeln!(out, "next sync: {} ({})", t(n), cfg.schedule.cron.source())?
        }
        Some(n) => writeln!(
            out,
            "next sync: {} ({}), once the daemon runs",
            t(n),
            cfg.schedule.cron.source()
        )?,
        None => writeln!(out, "next sync: none (the schedule never fires again)")?,
    }
    match (&st.ctgov_data_timestamp, st.ctgov_data_timestamp_checked_at) {
        (Some(ts), Some(at)) => writeln!(out, "CT.gov data: {ts} (checked {})", t(at))?,
        (Some(ts), None) => writeln!(out, "CT.gov data: {ts}")?,
        _ => writeln!(out, "CT.gov data: not checked yet")?,
    }
    if let Some(d) = &st.last_decision {
        writeln!(out, "last scheduled run: {d}")?;
    }
    match (st.outbox.pending, st.outbox.dead) {
        (Some(p), Some(d)) => writeln!(out, "outbox: {p} alerts pending, {d} dead letters")?,
        _ => writeln!(out, "outbox: unknown (the store could not be read)")?,
    }
    writeln!(
        out,
        "store: {} ({:.1} MB)",
        st.store.path,
        st.store.size_bytes as f64 / 1e6
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_keep_their_number_through_the_control_socket() {
        for n in [0u8, 1, 2] {
            assert_eq!(code_of(ExitCode::from(n)), n);
        }
        assert_eq!(code_of(ExitCode::SUCCESS), 0);
        assert_eq!(code_of(ExitCode::FAILURE), 1);
    }

    #[test]
    fn relative_path_options_are_made_absolute_before_forwarding() {
        let cwd = std::path::Path::new("/home/ann/work");
        let args: Vec<String> = [
            "--config=c.toml",
            "subscribe",
            "webhook",
            "https://example.org/hook",
            "--secret-file",
            "s.txt",
            "--data-dir",
            "/abs/data",
            "--nct",
            "s.txt",
            "--",
            "--config",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            absolute_paths(args, cwd),
            [
                "--config=/home/ann/work/c.toml",
                "subscribe",
                "webhook",
                "https://example.org/hook",
                "--secret-file",
                "/home/ann/work/s.txt",
                "--data-dir",
                "/abs/data",
                "--nct",
                "s.txt",
                "--",
                "--config",
            ]
        );
    }
}
