//! Command-line parsing, logging set-up and dispatch; errors become exit codes here.
//!
//! Exit codes (the table is `output::exit`): 0 success; 2 some trials failed (the others were
//! synced); 1 a fatal error (bad config, unusable store, CT.gov unreachable), printed with its
//! whole cause chain; 64 a usage error (bad flags or arguments).

mod backfill;
mod check_config;
pub mod color; // `--color`, NO_COLOR, CLICOLOR_FORCE; painting diffs, severities, statuses
mod completions; // `completions SHELL`, `man`
mod daemon; // `daemon`, `status`, forwarding to a running daemon
mod due;
pub(crate) mod export;
mod journal;
mod malloc; // the systemd unit's glibc malloc settings for `sync`, `backfill`, `daemon`
pub mod outbox;
pub mod output;
mod progress; // the progress bar of sync and backfill
pub mod queries;
pub mod query;
mod repair; // `repair`: rebuild the index from the packs
pub(crate) mod serve;
mod store_access;
pub mod subscribe;
mod sync;
mod test_alert;
pub mod watch;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::model::NctId;
use crate::store::Store;

/// The whole command line: global options and the command to run.
#[derive(Parser, Debug)]
#[command(
    name = "trialwatch",
    version,
    about = "Watch ClinicalTrials.gov studies and report field-level changes",
    long_about = None,
    after_help = "Examples:\n  \
        trialwatch watch add NCT02241018       start watching a trial\n  \
        trialwatch sync                        fetch the watch list, store what changed\n  \
        trialwatch changes --since 7d          what changed this week\n  \
        trialwatch diff NCT02241018            the latest changes of one trial\n  \
        trialwatch check-config                where the configuration and the store are\n\n\
        Exit codes: 0 done, 1 fatal error, 2 some trials failed, 64 usage error."
)]
pub struct Cli {
    /// Configuration file [default: $XDG_CONFIG_HOME/trialwatch/config.toml (not for root),
    /// /etc/trialwatch/config.toml, then ./trialwatch.toml]
    #[arg(long, global = true, env = "TRIALWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Store directory; overrides `data_dir` from the configuration
    #[arg(long, global = true, env = "TRIALWATCH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Colour on a terminal: auto (unless NO_COLOR is set; CLICOLOR_FORCE forces it), always
    /// or never; output that is piped gets none in auto
    #[arg(long, global = true, value_enum, default_value_t = color::ColorChoice::Auto, value_name = "WHEN")]
    color: color::ColorChoice,
    /// Show times in this zone (IANA name: America/New_York, Europe/Berlin) instead of UTC;
    /// default: $TZ when set. Only human output: --json output stays UTC
    #[arg(long, global = true, value_name = "ZONE")]
    tz: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

/// What the user asked trialwatch to do; the daemon receives the same values over its socket.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fetch all watched trials (or the given ones) and store what changed
    Sync {
        /// Sync only these trials (default: the whole watch list)
        nct: Vec<String>,
        /// Print the summary as JSON
        #[arg(long)]
        json: bool,
    },
    /// Fetch CT.gov's record history of trials into their timelines (default: the watch list)
    ///
    /// One request for each trial's history index and one per version not stored yet, under the
    /// same rate limit as sync. Safe to interrupt and run again. Example:
    /// `trialwatch backfill NCT02241018 --versions since:2016-01-01`
    Backfill {
        /// Backfill only these trials (default: the whole watch list)
        nct: Vec<String>,
        /// Which CT.gov versions: all, last:N (the newest N before the first stored one) or
        /// since:DATE (posted on or after YYYY-MM-DD)
        #[arg(long, default_value = "all", value_name = "WHICH")]
        versions: String,
        /// Print the per-trial report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Manage the watch list kept in the store (merged with the configuration's)
    Watch {
        /// Add, remove or list trials
        #[command(subcommand)]
        action: watch::WatchAction,
    },
    /// List the stored versions of a trial, oldest first
    History {
        /// The trial's NCT ID
        nct: String,
        /// Print the versions as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show a trial as the Markdown mirror page or as the normalized record
    Show {
        /// The trial's NCT ID
        nct: String,
        /// Show this version instead of the latest
        #[arg(long, conflicts_with = "at")]
        version: Option<u32>,
        /// Show the version that was current at this time (RFC 3339, or YYYY-MM-DD = end of that day, UTC)
        #[arg(long)]
        at: Option<String>,
        /// What to show: the Markdown mirror page or the normalized record as JSON
        #[arg(long, value_enum, default_value_t = query::ShowFormat::Markdown)]
        format: query::ShowFormat,
    },
    /// Field changes between two versions (default: the latest against the one before)
    Diff {
        /// The trial's NCT ID
        nct: String,
        /// The older version (default: the one before TO)
        from: Option<u32>,
        /// The newer version (default: the latest)
        to: Option<u32>,
        /// Print the changes as JSON
        #[arg(long)]
        json: bool,
    },
    /// Recent field changes across all trials, newest first
    Changes {
        /// How far back: a duration (7d, 36h) or a time (RFC 3339 or YYYY-MM-DD)
        #[arg(long, default_value = "30d")]
        since: String,
        /// Only these trials
        #[arg(long, num_args = 1..)]
        nct: Vec<String>,
        /// Only paths matching these patterns (`*` is a wildcard)
        #[arg(long, num_args = 1..)]
        field: Vec<String>,
        /// Also list first snapshots (every field `added`)
        #[arg(long)]
        include_first: bool,
        /// Also list versions backfilled from CT.gov's record history
        #[arg(long)]
        include_backfill: bool,
        /// Only changes of at least this severity: minor, notable or critical
        #[arg(long, value_name = "LEVEL")]
        min_severity: Option<String>,
        /// Print the changes as JSON
        #[arg(long)]
        json: bool,
    },
    /// Subscribe an email address, a webhook or a team chat (Slack, Discord, Teams, ntfy) to
    /// alerts (kept in the store)
    Subscribe {
        /// Where the alerts go
        #[command(subcommand)]
        target: subscribe::SubscribeTarget,
    },
    /// Watch CT.gov searches for trials that enter or leave them (run by every sync)
    Query {
        /// Add, list, show or remove queries
        #[command(subcommand)]
        action: queries::QueryAction,
    },
    /// Deadlines that hold today: results due or overdue (42 CFR 11.44), verification lapsing,
    /// stale status
    Due {
        /// Print the conditions as JSON
        #[arg(long)]
        json: bool,
    },
    /// List subscriptions: the configuration's and the store's
    Subscriptions {
        /// Print the subscriptions as JSON
        #[arg(long)]
        json: bool,
    },
    /// Send one sample alert to one subscription now, to check it is wired up (not stored)
    TestAlert {
        /// The subscription's ID as `trialwatch subscriptions` shows it
        id: String,
    },
    /// Remove a subscription added with `subscribe`, and the alerts it still owes
    Unsubscribe {
        /// The subscription's ID as `trialwatch subscriptions` shows it
        id: String,
    },
    /// Show pending and dead alerts; retry, drop or deliver them
    Outbox {
        /// Print the outbox or the report as JSON
        #[arg(long, global = true)]
        json: bool,
        /// What to do with the alerts (default: list them)
        #[command(subcommand)]
        action: Option<outbox::OutboxAction>,
    },
    /// Validate the configuration without touching the network
    ///
    /// Says which file was used and where it looked, the data directory, every section's
    /// effective values (the SMTP password only as "hidden") and the next scheduled syncs.
    /// Example: `trialwatch check-config --json | jq .data_dir`
    CheckConfig {
        /// Print the effective configuration as JSON
        #[arg(long)]
        json: bool,
    },
    /// List the field paths of the normalized record (for watched fields and filters)
    ///
    /// Example: `trialwatch fields | grep status`
    Fields {
        /// Print the paths as a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Check the store's invariants (read-only); exit 2 when something is broken
    Verify {
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Run as a service: scheduled syncs, outbox delivery, and every other command served
    /// through a control socket while it runs (stop with SIGTERM, reload with SIGHUP)
    Daemon,
    /// Write the whole store as files: Markdown mirror pages, JSON, an index, every change as
    /// CSV and JSON lines, Atom feeds. Only files whose content changed are rewritten.
    Export {
        /// The directory to write into (created when missing)
        dir: PathBuf,
        /// Export only these trials (the index, change tables and all.atom then list only them)
        #[arg(long, num_args = 1.., value_name = "NCT")]
        only: Vec<String>,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Serve a read-only web view of the store: trial list, trial pages with timeline plots and
    /// diffs, recent changes, Atom feeds and the `--json` shapes under /api/ (stop with Ctrl-C)
    Serve {
        /// The address to listen on (loopback by default; another address exposes the store)
        #[arg(long, default_value = crate::config::DEFAULT_LISTEN, value_name = "ADDR")]
        listen: String,
    },
    /// Whether the daemon runs, the last and next sync, CT.gov's data version, store size
    Status {
        /// Print the status as JSON
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the store's index (`db/`) from the pack files, when `verify` reports it missing
    /// or damaged; the old index is kept beside it. Run it with the daemon stopped
    Repair {
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (needs no configuration)
    ///
    /// Example: `trialwatch completions bash > /usr/share/bash-completion/completions/trialwatch`
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page trialwatch(1) as roff (needs no configuration)
    ///
    /// Example: `trialwatch man | gzip > /usr/local/share/man/man1/trialwatch.1.gz`
    Man,
}

/// Parse the command line, run it, and turn the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` are not errors; everything else clap refuses is a
            // usage error, with its own exit code (64) distinct from "some trials failed".
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(output::exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // Memory-heavy commands run with the unit's allocator settings (re-executes once).
    malloc::tune_for(&cli.command);
    // The daemon logs at info unless told otherwise; commands stay quiet.
    // A command's own report names every trial CT.gov failed for, so the client's warnings
    // about the same failures would only repeat it on stderr.
    let default_level = if matches!(cli.command, Command::Daemon) {
        "info"
    } else {
        "warn,trialwatch::ctgov=error"
    };
    if let Some(Err(e)) = cli.log_level.as_deref().map(output::check_log_level) {
        eprintln!("error: {e}");
        return ExitCode::from(output::exit::USAGE);
    }
    // The daemon's stdout is not the user's terminal: what it executes for a client is plain.
    let is_daemon = matches!(cli.command, Command::Daemon);
    let zone = match output::display_zone(cli.tz.as_deref(), is_daemon) {
        Ok(z) => z,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(output::exit::USAGE);
        }
    };
    color::set_paint(
        !is_daemon && color::decide_from_env(cli.color, std::io::stdout().is_terminal()),
    );
    let log_color = color::decide_from_env(cli.color, std::io::stderr().is_terminal());
    init_logging(
        cli.log_level.as_deref(),
        cli.log_format,
        default_level,
        log_color,
    );
    // Generated from the parser alone: no configuration, store or daemon involved.
    let generated = match cli.command {
        Command::Completions { shell } => Some(completions::completions(
            shell,
            &mut std::io::stdout().lock(),
        )),
        Command::Man => Some(completions::man(&mut std::io::stdout().lock())),
        _ => None,
    };
    if let Some(result) = generated {
        return match result {
            Ok(code) => code,
            Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                output::code_for(&e)
            }
        };
    }
    let result = Config::load_with(
        cli.config.as_deref(),
        cli.data_dir.as_deref(),
        watch_file_for(&cli.command),
    )
    .map_err(anyhow::Error::from)
    .and_then(|cfg| {
        // Start the daemon, or let a running one execute the command.
        if matches!(cli.command, Command::Daemon) {
            return daemon::run_daemon(cli.config.clone(), cli.data_dir.clone(), cfg);
        }
        if let Some(code) = daemon::forward_if_running(&cfg, &cli.command)? {
            return Ok(code);
        }
        store_access::set_command(
            format!("{:?}", cli.command)
                .to_lowercase()
                .split([' ', '{', '('])
                .next()
                .unwrap_or(""),
        );
        let mut ctx = Ctx::new(cfg, None);
        ctx.reading = reads_only(&cli.command);
        ctx.one_trial = reads_one_trial(&cli.command);
        let code = crate::util::zone::with_zone(zone, || {
            execute(cli.command, &ctx, &mut std::io::stdout().lock())
        });
        ctx.finish();
        code
    });
    match result {
        Ok(code) => code,
        // The reader went away (`| head`): nothing is wrong, end quietly.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            output::code_for(&e)
        }
    }
}

/// Commands that only read the store: on a data directory without one they say so instead of
/// creating an empty store.
fn reads_only(command: &Command) -> bool {
    reads_one_trial(command)
        || matches!(
            command,
            Command::Verify { .. }
                | Command::Outbox { action: None, .. }
                | Command::TestAlert { .. }
        )
}

/// Commands that read trials' `T` values, their blobs, the recent time index and what `status`
/// shows, and nothing else of the index: they read the heads file when there is one, without
/// opening sled (`Store::open_heads`; `changes --since` further back than the file's window
/// opens sled).
fn reads_one_trial(command: &Command) -> bool {
    matches!(
        command,
        Command::History { .. }
            | Command::Show { .. }
            | Command::Diff { .. }
            | Command::Changes { .. }
            | Command::Status { .. }
    )
}

/// Whether loading the configuration reads `[watch] nct_file`: the commands that never look at
/// the watch list leave it unread, so that their cost does not grow with a list of 100,000
/// trials (issue #14). Every other command reads and checks it up front, as before.
fn watch_file_for(command: &Command) -> crate::config::WatchFile {
    use crate::config::WatchFile;
    match command {
        Command::History { .. }
        | Command::Show { .. }
        | Command::Diff { .. }
        | Command::Changes { .. }
        | Command::Status { .. }
        | Command::Verify { .. }
        | Command::Fields { .. } => WatchFile::Deferred,
        _ => WatchFile::Read,
    }
}

/// `verify`'s and `repair`'s closing lines: each problem, or "store OK" when there is none.
fn print_problems(problems: &[String], out: &mut dyn Write) -> std::io::Result<()> {
    for p in problems {
        writeln!(out, "problem: {p}")?;
    }
    if problems.is_empty() {
        writeln!(out, "store OK")?;
    }
    Ok(())
}

/// Exit 0 for a store without problems, 2 (the README's "something is broken") otherwise.
fn store_verdict(problems: &[String]) -> ExitCode {
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn init_logging(level: Option<&str>, format: LogFormat, default_level: &str, ansi: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|_| EnvFilter::new(default_level)),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // Under journald the journal stamps each line itself.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    // Under journald each text event carries its priority (`journalctl -p warning`) and
    // stays one entry however many lines it has.
    let _ = match (format, under_journald) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Text, true) => builder
            .without_time()
            .with_ansi(false)
            .with_writer(journal::Journal)
            .try_init(),
        (LogFormat::Text, false) => builder.try_init(),
    };
}

/// Shared context of the commands: the validated config and the store, opened on first use
/// (or handed in already open, when a running daemon executes a command for the CLI).
pub struct Ctx {
    /// The configuration every command reads (watch list, SMTP, alert settings, data_dir).
    pub cfg: Config,
    store: std::sync::OnceLock<Store>,
    /// The command only reads: a missing store is an error ("run `trialwatch sync` first"),
    /// not a reason to create an empty one, and a store that cannot be written (full disk,
    /// read-only mount) is read through `Store::open_for_reading`.
    reading: bool,
    /// The command reads one trial ([`reads_one_trial`]): the heads file serves it when the
    /// store has one.
    one_trial: bool,
}

impl Ctx {
    /// A context for `cfg`; pass `store` when it is already open (the daemon's), so the
    /// command does not try to open the sled store a second time.
    pub fn new(cfg: Config, store: Option<Store>) -> Ctx {
        let cell = std::sync::OnceLock::new();
        if let Some(s) = store {
            let _ = cell.set(s);
        }
        Ctx {
            cfg,
            store: cell,
            reading: false,
            one_trial: false,
        }
    }

    /// After the command: if it wrote the store (or found no heads file), write the heads file,
    /// so that the next `history`, `show` or `diff` reads one trial without opening sled. Only
    /// a cache: a failure is reported and changes nothing stored.
    fn finish(&self) {
        if let Some(s) = self.store.get()
            && let Err(e) = s.publish_heads()
        {
            tracing::warn!(
                error = %e,
                "could not write the store's heads file; reads of one trial will open the whole index until a later command writes it"
            );
        }
    }

    /// The store, opened at `cfg.data_dir` on first use; commands that never touch it
    /// (`check-config`, `fields`) run without one.
    pub fn open_store(&self) -> anyhow::Result<Store> {
        if let Some(s) = self.store.get() {
            return Ok(s.clone());
        }
        if self.reading {
            store_access::require_existing(&self.cfg.data_dir)?;
        }
        if self.one_trial
            && let Some(s) = Store::open_heads(&self.cfg.data_dir)
        {
            return Ok(self.store.get_or_init(|| s).clone());
        }
        let s = store_access::open(&self.cfg.data_dir, self.reading)?;
        Ok(self.store.get_or_init(|| s).clone())
    }
}

/// Parse an NCT ID given on the command line, naming the argument on failure.
/// The open store and the trials a command names, or (none named) the watch list: the
/// config's and the store's. The IDs are checked before the store is opened.
pub(crate) fn named_or_watched(ctx: &Ctx, args: &[String]) -> anyhow::Result<(Store, Vec<NctId>)> {
    let named = args
        .iter()
        .map(|s| parse_nct(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let store = ctx.open_store()?;
    let ids = if named.is_empty() {
        crate::sync::watched_ids(&ctx.cfg, &store)?
    } else {
        named
    };
    Ok((store, ids))
}

pub(crate) fn parse_nct(s: &str) -> anyhow::Result<NctId> {
    s.parse::<NctId>()
        .map_err(|e| output::UsageError(e.to_string()).into())
}

/// Run one command, writing its output to `out`. The daemon calls this too, with its own store.
pub fn execute(command: Command, ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match command {
        Command::Sync { nct, json } => sync::run(ctx, &nct, json, out),
        Command::Backfill {
            nct,
            versions,
            json,
        } => backfill::run(ctx, &nct, &versions, json, out),
        Command::Watch { action } => watch::run(ctx, action, out),
        Command::History { nct, json } => query::history(ctx, &nct, json, out),
        Command::Show {
            nct,
            version,
            at,
            format,
        } => query::show(ctx, &nct, version, at.as_deref(), format, out),
        Command::Diff {
            nct,
            from,
            to,
            json,
        } => query::diff(ctx, &nct, from, to, json, out),
        Command::Changes {
            since,
            nct,
            field,
            include_first,
            include_backfill,
            min_severity,
            json,
        } => query::changes(
            ctx,
            &query::ChangesFilter {
                since: &since,
                ncts: &nct,
                fields: &field,
                include_first,
                include_backfill,
                min_severity: min_severity.as_deref(),
            },
            json,
            out,
        ),
        Command::Subscribe { target } => subscribe::subscribe(ctx, target, out),
        Command::Query { action } => queries::run(ctx, action, out),
        Command::Due { json } => due::run(ctx, json, out),
        Command::Subscriptions { json } => subscribe::list(ctx, json, out),
        Command::Unsubscribe { id } => subscribe::unsubscribe(ctx, &id, out),
        Command::TestAlert { id } => test_alert::run(ctx, &id, out),
        Command::Outbox { json, action } => outbox::run(ctx, action, json, out),
        Command::CheckConfig { json } => check_config::run(ctx, json, out),
        Command::Verify { json } => {
            // Without a daemon, on a private copy of the index: verify changes no byte.
            let rep = match ctx.store.get() {
                Some(store) => store.verify()?,
                None => crate::store::verify_dir(&ctx.cfg.data_dir)?,
            };
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rep)?)?;
            } else {
                writeln!(
                    out,
                    "{}, {} checked",
                    crate::util::text::plural(rep.trials, "trial"),
                    crate::util::text::plural(rep.versions, "version")
                )?;
                print_problems(&rep.problems, out)?;
            }
            Ok(store_verdict(&rep.problems))
        }
        Command::Status { json } => daemon::status(ctx, json, out),
        Command::Export { dir, only, json } => export::run(ctx, &dir, &only, json, out),
        Command::Serve { listen } => serve::run(ctx, &listen, out),
        Command::Repair { json } => repair::run(ctx, json, out),
        Command::Daemon => anyhow::bail!(
            "`trialwatch daemon` runs the daemon itself; it cannot be executed as a command"
        ),
        Command::Completions { shell } => completions::completions(shell, out),
        Command::Man => completions::man(out),
        Command::Fields { json } => {
            if json {
                let paths: Vec<String> = crate::schema::all_paths().collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&paths)?)?;
            } else {
                for p in crate::schema::all_paths() {
                    writeln!(out, "{p}")?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Make `anyhow` context messages that name the trial.
pub(crate) trait TrialContext<T> {
    fn for_trial(self, nct: &NctId) -> anyhow::Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> TrialContext<T> for Result<T, E> {
    fn for_trial(self, nct: &NctId) -> anyhow::Result<T> {
        self.with_context(|| format!("reading {nct} from the store"))
    }
}
