//! Configuration: the TOML file is parsed into `raw` structs that mirror it exactly (unknown keys
//! are errors), then validated into a [`Config`] whose values cannot be wrong (`NctId`, parsed
//! URLs, watched-field patterns that name real paths). Every mistake is reported with the file,
//! the key, the bad value and what would be valid; validation collects all mistakes at once.
//!
//! This module reads files (the config and the optional watch-list file) but never the network.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{
    DigestMode, FieldPattern, NctId, Origin, Severity, Subscription, Target, WatchedFields,
};
use crate::schema;
use crate::util::secret::read_secret_file;

/// The systemd credential name read from `$CREDENTIALS_DIRECTORY` when neither
/// `smtp.password_file` nor `smtp.password_env` is set (`LoadCredential=smtp-password:…`).
pub const SMTP_PASSWORD_CREDENTIAL: &str = "smtp-password";

/// Where the config is looked for when `--config` is not given, in order.
pub const DEFAULT_CONFIG_PATHS: &[&str] = &["/etc/trialwatch/config.toml", "./trialwatch.toml"];

/// Default store location for a system service (systemd's `StateDirectory=trialwatch`).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/trialwatch";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (`None` when running on built-in defaults), for messages.
    pub source: Option<PathBuf>,
    /// The sled store lives here.
    pub data_dir: PathBuf,
    pub ctgov: CtgovConfig,
    pub watch: WatchConfig,
    pub mirror: MirrorConfig,
    /// When the daemon syncs (`[schedule]`).
    pub schedule: ScheduleConfig,
    /// `[smtp]`: how email alerts leave; `None` when the section is absent (email
    /// subscriptions then become dead letters that say so).
    pub smtp: Option<SmtpConfig>,
    /// `[alerts]`: retry schedule and delivery limits of the outbox.
    pub alerts: AlertsConfig,
    /// `[[subscription]]` entries, each with a stable ID derived from its content so that the
    /// alerts it owes survive restarts.
    pub subscriptions: Vec<Subscription>,
}

/// `[alerts]`: how the outbox retries and how hard it pushes receivers.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    /// Delay after the first failed attempt; doubles with each further failure, jittered.
    pub retry_base: Duration,
    /// The longest delay between two attempts.
    pub retry_cap: Duration,
    /// An alert still failing this long after it was enqueued becomes a dead letter.
    pub give_up_after: Duration,
    /// Subscribers delivered to at once; one slow receiver holds only its own slot.
    pub concurrency: usize,
    /// Limit for one whole webhook request.
    pub webhook_timeout: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            retry_base: Duration::from_secs(30),
            retry_cap: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(72 * 3600),
            concurrency: 8,
            webhook_timeout: Duration::from_secs(10),
        }
    }
}

// --- [schedule] -------------------------------------------------------------

/// Default fire time: 13:30 UTC every day. CT.gov loads its daily refresh between 4 and 8 AM
/// US Eastern time, i.e. by 12:00 UTC in summer (EDT) and 13:00 UTC in winter (EST); the
/// `dataTimestamp` values seen live are around 09:00 UTC. Half an hour after the latest end of
/// that window the new data are in place whatever the season, and one sync a day is all the
/// data can change by.
pub const DEFAULT_CRON: &str = "0 30 13 * * *";

/// The daemon's timetable.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Fire times of scheduled syncs (the `cron` crate's syntax, seconds first), in UTC.
    pub cron: cron::Schedule,
    /// A full sync of the whole watch list runs at least this often, even when the cheap
    /// checks (`/version`, `LastUpdatePostDate`) say nothing moved: the safety net against
    /// a change CT.gov posted without moving either.
    pub full_sync_days: u32,
    /// After a scheduled sync that fetched at least this many trials, the daemon re-executes
    /// itself in place once idle (same PID, store flushed first), so the memory the sync used
    /// goes back to the system; 0 never does.
    pub reexec_after_trials: u32,
}

fn validate_schedule(raw: &raw::Schedule, problems: &mut Vec<String>) -> ScheduleConfig {
    let text = raw.cron.as_deref().unwrap_or(DEFAULT_CRON);
    let default = || {
        DEFAULT_CRON
            .parse::<cron::Schedule>()
            .unwrap_or_else(|_| unreachable!("the default cron expression is valid"))
    };
    let cron = match text.parse::<cron::Schedule>() {
        Ok(s) if s.upcoming(chrono::Utc).next().is_some() => s,
        Ok(_) => {
            problems.push(format!(
                "`schedule.cron` = {text:?} never fires again; give a recurring expression such as \
                 {DEFAULT_CRON:?} (sec min hour day-of-month month day-of-week, UTC)"
            ));
            default()
        }
        Err(e) => {
            problems.push(format!(
                "`schedule.cron` = {text:?} is not a cron expression ({e}); use six or seven fields, \
                 seconds first, e.g. {DEFAULT_CRON:?} = every day at 13:30:00 UTC"
            ));
            default()
        }
    };
    ScheduleConfig {
        cron,
        full_sync_days: int_in_range(
            raw.full_sync_days,
            "schedule.full_sync_days",
            7,
            1,
            365,
            problems,
        ) as u32,
        reexec_after_trials: int_in_range(
            raw.reexec_after_trials,
            "schedule.reexec_after_trials",
            1000,
            0,
            10_000_000,
            problems,
        ) as u32,
    }
}

// --- end [schedule] --------------------------------------------------------------------------

/// The `[ctgov]` table validated is exactly the client's own configuration.
/// The `[ctgov]` settings: how the CT.gov client reaches the API (checked again by
/// `CtGovClient::new`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtgovConfig {
    /// Scheme and host (optionally a path prefix); the API lives under `{base_url}/api/v2`.
    /// `https://clinicaltrials.gov` in production, the fake server's URL in tests.
    pub base_url: String,
    /// Budget shared by all requests of this client, spread evenly (60 s / n apart); 0 = no limit.
    /// CT.gov publishes no number; ~50/min per IP is the figure third parties report.
    pub requests_per_minute: u32,
    /// IDs per `filter.ids` request (also sent as `pageSize`); 1..=1000. AACT uses 50.
    pub batch_size: usize,
    /// Whole-request timeout (connect + headers + body). A timeout counts as transient.
    pub timeout: Duration,
    /// Attempts per request, the first included; 1 = never retry.
    pub max_attempts: u32,
    /// First backoff ceiling; attempt k waits a random time in `[0, min(cap, base·2^(k-1))]`.
    pub backoff_base: Duration,
    /// Upper bound of any backoff wait (not of a `Retry-After` CT.gov asks for).
    pub backoff_cap: Duration,
}

impl Default for CtgovConfig {
    /// The documented `[ctgov]` defaults (README, example config): 50 requests/min (the ~50/min
    /// third parties report), batches of 100, 30 s per request, 5 attempts, backoff 1 s to 60 s.
    /// The config file's missing keys take exactly these values.
    fn default() -> Self {
        CtgovConfig {
            base_url: "https://clinicaltrials.gov".to_string(),
            requests_per_minute: 50,
            batch_size: 100,
            timeout: Duration::from_secs(30),
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// IDs from `nct_ids` and `nct_file`, deduplicated, in the order first given.
    pub nct_ids: Vec<NctId>,
    /// Kept so SIGHUP and messages can name the file the IDs came from.
    pub nct_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Base of the page's `canonical_url` (`{canonical_base}/{NCT}.md`), without trailing slash.
    pub canonical_base: Option<String>,
    /// Last line of the page's footer.
    pub footer_note: Option<String>,
    /// Window of the page's "Recent Field Changes".
    pub recent_days: u32,
    /// Watched fields: the page's change list and the default subscription filter.
    pub fields: WatchedFields,
}

/// The raw file, key for key. `deny_unknown_fields` turns a misspelt key into an error.
mod raw {
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub data_dir: Option<String>,
        #[serde(default)]
        pub ctgov: Ctgov,
        #[serde(default)]
        pub watch: Watch,
        #[serde(default)]
        pub mirror: Mirror,
        #[serde(default)]
        pub schedule: Schedule,
        pub smtp: Option<Smtp>,
        #[serde(default)]
        pub alerts: Alerts,
        #[serde(default)]
        pub subscription: Vec<Subscription>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Schedule {
        pub cron: Option<String>,
        pub full_sync_days: Option<i64>,
        pub reexec_after_trials: Option<i64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Smtp {
        pub host: Option<String>,
        pub port: Option<i64>,
        pub security: Option<String>,
        pub username: Option<String>,
        pub password_file: Option<String>,
        pub password_env: Option<String>,
        pub from: Option<String>,
        pub timeout_secs: Option<f64>,
        pub root_cert_file: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Alerts {
        pub retry_base_secs: Option<f64>,
        pub retry_cap_secs: Option<f64>,
        pub give_up_after_hours: Option<f64>,
        pub concurrency: Option<i64>,
        pub webhook_timeout_secs: Option<f64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Subscription {
        pub email: Option<String>,
        pub webhook: Option<String>,
        pub secret_file: Option<String>,
        #[serde(default)]
        pub nct: Vec<String>,
        #[serde(default)]
        pub fields: Vec<String>,
        pub min_severity: Option<String>,
        pub digest: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Ctgov {
        pub base_url: Option<String>,
        pub requests_per_minute: Option<i64>,
        pub batch_size: Option<i64>,
        pub timeout_secs: Option<f64>,
        pub max_attempts: Option<i64>,
        pub backoff_base_ms: Option<i64>,
        pub backoff_cap_secs: Option<f64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Watch {
        #[serde(default)]
        pub nct_ids: Vec<String>,
        pub nct_file: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Mirror {
        pub canonical_base: Option<String>,
        pub footer_note: Option<String>,
        pub recent_days: Option<i64>,
        pub fields: Option<Vec<String>>,
    }
}

/// One or more mistakes in the configuration; `Display` lists each on its own line.
#[derive(Debug)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<built-in defaults>".into());
        if self.problems.len() == 1 {
            write!(f, "invalid configuration in {file}: {}", self.problems[0])
        } else {
            writeln!(
                f,
                "invalid configuration in {file} ({} problems):",
                self.problems.len()
            )?;
            for p in &self.problems {
                writeln!(f, "  - {p}")?;
            }
            Ok(())
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Load from `--config PATH`, else the first default path that exists, else built-in defaults.
    /// `data_dir_override` is `--data-dir` and wins over the file.
    pub fn load(
        path: Option<&Path>,
        data_dir_override: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let found = match path {
            Some(p) => Some(p.to_path_buf()),
            None => DEFAULT_CONFIG_PATHS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file()),
        };
        let mut cfg = match found {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|e| ConfigError {
                    file: Some(p.clone()),
                    problems: vec![format!(
                        "cannot read the file: {e}; pass --config PATH to a readable TOML file \
                         (config/trialwatch.example.toml shows every key)"
                    )],
                })?;
                Config::from_toml(&text, Some(&p))?
            }
            None => Config::from_toml("", None)?,
        };
        if let Some(d) = data_dir_override {
            cfg.data_dir = d.to_path_buf();
        }
        Ok(cfg)
    }

    /// Parse and validate TOML text. `file` is used for messages and to resolve `nct_file`.
    pub fn from_toml(text: &str, file: Option<&Path>) -> Result<Config, ConfigError> {
        let err = |problems: Vec<String>| ConfigError {
            file: file.map(Path::to_path_buf),
            problems,
        };
        let raw: raw::File = toml::from_str(text).map_err(|e| {
            err(vec![format!(
                "{}",
                e.to_string().trim_end().replace('\n', "\n    ")
            )])
        })?;
        let mut problems = Vec::new();

        let data_dir = match raw.data_dir.as_deref() {
            Some("") => {
                problems.push(
                    "`data_dir` is empty; give a directory path, e.g. \"/var/lib/trialwatch\""
                        .into(),
                );
                PathBuf::new()
            }
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(DEFAULT_DATA_DIR),
        };

        let ctgov = validate_ctgov(&raw.ctgov, &mut problems);
        let watch = validate_watch(&raw.watch, file, &mut problems);
        let mirror = validate_mirror(&raw.mirror, &mut problems);
        let schedule = validate_schedule(&raw.schedule, &mut problems);
        let smtp = raw
            .smtp
            .as_ref()
            .and_then(|s| validate_smtp(s, file, &mut problems));
        let alerts = validate_alerts(&raw.alerts, &mut problems);
        let subscriptions = validate_subscriptions(&raw.subscription, file, &mut problems);

        if !problems.is_empty() {
            return Err(err(problems));
        }
        Ok(Config {
            source: file.map(Path::to_path_buf),
            data_dir,
            ctgov,
            watch,
            mirror,
            schedule,
            smtp,
            alerts,
            subscriptions,
        })
    }
}

fn int_in_range(
    value: Option<i64>,
    key: &str,
    default: i64,
    min: i64,
    max: i64,
    problems: &mut Vec<String>,
) -> i64 {
    match value {
        None => default,
        Some(v) if (min..=max).contains(&v) => v,
        Some(v) => {
            problems.push(format!(
                "`{key}` = {v} is out of range; use a whole number from {min} to {max} (default {default})"
            ));
            default
        }
    }
}

fn secs_in_range(
    value: Option<f64>,
    key: &str,
    default: f64,
    min: f64,
    max: f64,
    problems: &mut Vec<String>,
) -> Duration {
    match value {
        None => Duration::from_secs_f64(default),
        Some(v) if v.is_finite() && v >= min && v <= max => Duration::from_secs_f64(v),
        Some(v) => {
            problems.push(format!(
                "`{key}` = {v} is out of range; use seconds from {min} to {max} (default {default})"
            ));
            Duration::from_secs_f64(default)
        }
    }
}

fn validate_ctgov(raw: &raw::Ctgov, problems: &mut Vec<String>) -> CtgovConfig {
    let d = CtgovConfig::default();
    let base_url = match raw.base_url.as_deref() {
        None => d.base_url.clone(),
        Some(u) => match reqwest::Url::parse(u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                u.trim_end_matches('/').to_string()
            }
            _ => {
                problems.push(format!(
                    "`ctgov.base_url` = {u:?} is not an http(s) URL; use \"https://clinicaltrials.gov\" \
                     (the API is reached under {{base_url}}/api/v2)"
                ));
                String::new()
            }
        },
    };
    CtgovConfig {
        base_url,
        requests_per_minute: int_in_range(
            raw.requests_per_minute,
            "ctgov.requests_per_minute",
            i64::from(d.requests_per_minute),
            0,
            6000,
            problems,
        ) as u32,
        batch_size: int_in_range(
            raw.batch_size,
            "ctgov.batch_size",
            d.batch_size as i64,
            1,
            1000,
            problems,
        ) as usize,
        timeout: secs_in_range(
            raw.timeout_secs,
            "ctgov.timeout_secs",
            d.timeout.as_secs_f64(),
            0.1,
            600.0,
            problems,
        ),
        max_attempts: int_in_range(
            raw.max_attempts,
            "ctgov.max_attempts",
            i64::from(d.max_attempts),
            1,
            20,
            problems,
        ) as u32,
        backoff_base: Duration::from_millis(int_in_range(
            raw.backoff_base_ms,
            "ctgov.backoff_base_ms",
            d.backoff_base.as_millis() as i64,
            1,
            60_000,
            problems,
        ) as u64),
        backoff_cap: secs_in_range(
            raw.backoff_cap_secs,
            "ctgov.backoff_cap_secs",
            d.backoff_cap.as_secs_f64(),
            0.001,
            3600.0,
            problems,
        ),
    }
}

fn validate_watch(
    raw: &raw::Watch,
    file: Option<&Path>,
    problems: &mut Vec<String>,
) -> WatchConfig {
    let mut ids: Vec<NctId> = Vec::new();
    let mut push = |id: NctId| {
        if !ids.contains(&id) {
            ids.push(id);
        }
    };
    for (i, s) in raw.nct_ids.iter().enumerate() {
        match s.parse::<NctId>() {
            Ok(id) => push(id),
            Err(e) => problems.push(format!("`watch.nct_ids[{i}]`: {e}")),
        }
    }
    let nct_file = raw.nct_file.as_ref().map(|f| {
        let p = PathBuf::from(f);
        // A relative watch-list path is relative to the config file, not to the working directory.
        match (p.is_relative(), file.and_then(Path::parent)) {
            (true, Some(dir)) => dir.join(p),
            _ => p,
        }
    });
    if let Some(path) = &nct_file {
        match read_watch_file(path) {
            Ok(list) => list.into_iter().for_each(&mut push),
            Err(mut e) => problems.append(&mut e),
        }
    }
    WatchConfig {
        nct_ids: ids,
        nct_file,
    }
}

/// Read a watch-list file: one NCT ID a line, blank lines and `#` comments ignored.
/// Returns every bad line at once, each naming `file:line`.
pub fn read_watch_file(path: &Path) -> Result<Vec<NctId>, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![format!(
            "`watch.nct_file` = {:?} cannot be read: {e}; create it (one NCT ID a line) or remove the key",
            path.display().to_string()
        )]
    })?;
    let mut ids = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        match content.parse::<NctId>() {
            Ok(id) => ids.push(id),
            Err(e) => problems.push(format!("{}:{}: {e}", path.display(), n + 1)),
        }
    }
    if problems.is_empty() {
        Ok(ids)
    } else {
        Err(problems)
    }
}

fn validate_mirror(raw: &raw::Mirror, problems: &mut Vec<String>) -> MirrorConfig {
    let canonical_base = raw.canonical_base.as_deref().and_then(|b| {
        match reqwest::Url::parse(b) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(b.trim_end_matches('/').to_string()),
            _ => {
                problems.push(format!(
                    "`mirror.canonical_base` = {b:?} is not an http(s) URL; e.g. \"https://example.org/trials\""
                ));
                None
            }
        }
    });
    let fields = match &raw.fields {
        None => WatchedFields::default(),
        Some(list) => {
            let mut pats = Vec::new();
            for (i, f) in list.iter().enumerate() {
                match validate_field_pattern(f) {
                    Ok(p) => pats.push(p),
                    Err(e) => problems.push(format!("`mirror.fields[{i}]`: {e}")),
                }
            }
            WatchedFields(pats)
        }
    };
    MirrorConfig {
        canonical_base,
        footer_note: raw.footer_note.clone().filter(|s| !s.trim().is_empty()),
        recent_days: int_in_range(raw.recent_days, "mirror.recent_days", 30, 1, 3650, problems)
            as u32,
        fields,
    }
}

/// A path from the config, relative to the config file's directory.
fn relative_to(file: Option<&Path>, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    match (p.is_relative(), file.and_then(Path::parent)) {
        (true, Some(dir)) if !dir.as_os_str().is_empty() => dir.join(p),
        _ => p,
    }
}

fn validate_smtp(
    raw: &raw::Smtp,
    file: Option<&Path>,
    problems: &mut Vec<String>,
) -> Option<SmtpConfig> {
    let before = problems.len();
    let host = match raw.host.as_deref().map(str::trim) {
        Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) => h.to_string(),
        Some(h) => {
            problems.push(format!(
                "`smtp.host` = {h:?} is not a host name; e.g. \"smtp.example.org\" or \"localhost\""
            ));
            String::new()
        }
        None => {
            problems.push(
                "`smtp.host` is missing; name the SMTP server, e.g. host = \"localhost\"".into(),
            );
            String::new()
        }
    };
    let security = match raw.security.as_deref() {
        None => SmtpSecurity::StartTls,
        Some(s) => match s.parse::<SmtpSecurity>() {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("`smtp.security`: {e}"));
                SmtpSecurity::StartTls
            }
        },
    };
    let port = int_in_range(
        raw.port,
        "smtp.port",
        i64::from(security.default_port()),
        1,
        65535,
        problems,
    ) as u16;
    let from = match raw.from.as_deref().map(str::trim) {
        Some(f) if f.contains('@') => f.to_string(),
        Some(f) => {
            problems.push(format!(
                "`smtp.from` = {f:?} is not a mailbox; write it as \"trialwatch <trialwatch@example.org>\""
            ));
            String::new()
        }
        None => {
            problems.push(
                "`smtp.from` is missing; e.g. from = \"trialwatch <trialwatch@example.org>\""
                    .into(),
            );
            String::new()
        }
    };
    let password = match (&raw.password_file, &raw.password_env) {
        (Some(_), Some(_)) => {
            problems
                .push("`smtp.password_file` and `smtp.password_env` are both set; keep one".into());
            None
        }
        (Some(f), None) => {
            let path = relative_to(file, f);
            match read_secret_file(&path) {
                Ok(text) => Some(Secret::new(text)),
                Err(e) => {
                    problems.push(format!(
                        "`smtp.password_file` = {:?} {e} (the password on one line, mode 0600), or remove the key",
                        path.display().to_string()
                    ));
                    None
                }
            }
        }
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Some(Secret::new(v)),
            _ => {
                problems.push(format!(
                    "`smtp.password_env` = {var:?} names an environment variable that is not set; \
                     set it in the service's environment or use password_file"
                ));
                None
            }
        },
        (None, None) => credentials_dir_password(),
    };
    if raw.username.is_some() && password.is_none() && problems.len() == before {
        problems.push(
            "`smtp.username` is set but no password is: add password_file or password_env (or \
             LoadCredential=smtp-password in the systemd unit), or drop username for a relay without AUTH"
                .into(),
        );
    }
    let timeout = secs_in_range(
        raw.timeout_secs,
        "smtp.timeout_secs",
        30.0,
        0.1,
        600.0,
        problems,
    );
    let extra_root_cert_pem = raw.root_cert_file.as_ref().and_then(|f| {
        let path = relative_to(file, f);
        match std::fs::read_to_string(&path) {
            Ok(pem) => Some(pem),
            Err(e) => {
                problems.push(format!(
                    "`smtp.root_cert_file` = {:?} cannot be read: {e}; give a PEM certificate file or remove the key",
                    path.display().to_string()
                ));
                None
            }
        }
    });
    // Only pair a password with a user name; a credential file alone must not turn AUTH on.
    let password = raw.username.as_ref().and(password);
    (problems.len() == before).then(|| SmtpConfig {
        host,
        port,
        security,
        username: raw.username.clone(),
        password,
        from,
        timeout,
        extra_root_cert_pem,
    })
}

/// `$CREDENTIALS_DIRECTORY/smtp-password`, when systemd handed one over.
fn credentials_dir_password() -> Option<Secret> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    read_secret_file(&Path::new(&dir).join(SMTP_PASSWORD_CREDENTIAL))
        .ok()
        .map(Secret::new)
}

fn validate_alerts(raw: &raw::Alerts, problems: &mut Vec<String>) -> AlertsConfig {
    let d = AlertsConfig::default();
    let retry_base = secs_in_range(
        raw.retry_base_secs,
        "alerts.retry_base_secs",
        d.retry_base.as_secs_f64(),
        0.001,
        86_400.0,
        problems,
    );
    let retry_cap = secs_in_range(
        raw.retry_cap_secs,
        "alerts.retry_cap_secs",
        d.retry_cap.as_secs_f64(),
        0.001,
        7.0 * 86_400.0,
        problems,
    );
    if retry_cap < retry_base {
        problems.push(format!(
            "`alerts.retry_cap_secs` ({}) is below `alerts.retry_base_secs` ({}); the cap must be at least the base",
            retry_cap.as_secs_f64(),
            retry_base.as_secs_f64()
        ));
    }
    let give_up_hours = match raw.give_up_after_hours {
        None => 72.0,
        Some(h) if h.is_finite() && h > 0.0 && h <= 24.0 * 365.0 => h,
        Some(h) => {
            problems.push(format!(
                "`alerts.give_up_after_hours` = {h} is out of range; use hours above 0 and up to 8760 (default 72)"
            ));
            72.0
        }
    };
    AlertsConfig {
        retry_base,
        retry_cap,
        give_up_after: Duration::from_secs_f64(give_up_hours * 3600.0),
        concurrency: int_in_range(raw.concurrency, "alerts.concurrency", 8, 1, 256, problems)
            as usize,
        webhook_timeout: secs_in_range(
            raw.webhook_timeout_secs,
            "alerts.webhook_timeout_secs",
            d.webhook_timeout.as_secs_f64(),
            0.1,
            600.0,
            problems,
        ),
    }
}

fn validate_subscriptions(
    raw: &[raw::Subscription],
    file: Option<&Path>,
    problems: &mut Vec<String>,
) -> Vec<Subscription> {
    let mut out: Vec<Subscription> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("subscription[{i}]");
        let before = problems.len();
        let target = match (&r.email, &r.webhook) {
            (Some(addr), None) => {
                if r.secret_file.is_some() {
                    problems.push(format!(
                        "`{key}.secret_file` is for webhooks; an email subscription cannot use it, remove it"
                    ));
                }
                match crate::model::validate_email(addr) {
                    Ok(address) => Some(Target::Email { address }),
                    Err(e) => {
                        problems.push(format!("`{key}.email`: {e}"));
                        None
                    }
                }
            }
            (None, Some(url)) => match crate::model::validate_webhook_url(url) {
                Ok(url) => {
                    let secret_file = r.secret_file.as_ref().map(|f| relative_to(file, f));
                    if let Some(p) = &secret_file
                        && !p.is_file()
                    {
                        problems.push(format!(
                            "`{key}.secret_file` = {:?} is not a readable file; create it (the signing secret on one line) or remove the key",
                            p.display().to_string()
                        ));
                    }
                    Some(Target::Webhook { url, secret_file })
                }
                Err(e) => {
                    problems.push(format!("`{key}.webhook`: {e}"));
                    None
                }
            },
            (Some(_), Some(_)) => {
                problems.push(format!(
                    "`{key}` has both `email` and `webhook`; declare two subscriptions, one each"
                ));
                None
            }
            (None, None) => {
                problems.push(format!(
                    "`{key}` has neither `email` nor `webhook`; add email = \"you@example.org\" or webhook = \"https://…\""
                ));
                None
            }
        };
        let mut nct = Vec::new();
        for (j, s) in r.nct.iter().enumerate() {
            match s.parse::<NctId>() {
                Ok(id) => nct.push(id),
                Err(e) => problems.push(format!("`{key}.nct[{j}]`: {e}")),
            }
        }
        let mut fields = Vec::new();
        for (j, f) in r.fields.iter().enumerate() {
            match validate_field_pattern(f) {
                Ok(p) => fields.push(p),
                Err(e) => problems.push(format!("`{key}.fields[{j}]`: {e}")),
            }
        }
        let min_severity = match r.min_severity.as_deref() {
            None => Severity::Minor,
            Some(s) => s.parse().unwrap_or_else(|e| {
                problems.push(format!("`{key}.min_severity`: {e}"));
                Severity::Minor
            }),
        };
        let digest = match r.digest.as_deref() {
            None => DigestMode::Immediate,
            Some(s) => s.parse().unwrap_or_else(|e| {
                problems.push(format!("`{key}.digest`: {e}"));
                DigestMode::Immediate
            }),
        };
        if let (Some(target), true) = (target, problems.len() == before) {
            let sub = Subscription::new(
                Origin::Config,
                target,
                nct,
                fields,
                min_severity,
                digest,
                None,
            );
            if out.iter().any(|s| s.id == sub.id) {
                problems.push(format!(
                    "`{key}` repeats an earlier subscription (same destination and filters); remove one"
                ));
            } else {
                out.push(sub);
            }
        }
    }
    out
}

/// A field pattern is valid when it matches at least one path of the schema, so a typo such as
/// `status.overalStatus` is caught instead of silently watching nothing.
pub fn validate_field_pattern(s: &str) -> Result<FieldPattern, String> {
    let p = FieldPattern::new(s.trim());
    let sample_location = format!("{}.x|y||z", schema::LOCATIONS);
    if !s.trim().is_empty()
        && (schema::all_paths().any(|path| p.matches(&path)) || p.matches(&sample_location))
    {
        Ok(p)
    } else {
        Err(format!(
            "{s:?} matches no field path; use `section.key` from the schema (e.g. \
             \"status.overallStatus\", \"locations.*\"; `*` is a wildcard); `trialwatch fields` lists them"
        ))
    }
}

/// A password or signing key. `Debug` and `Display` print `[redacted]`, and it is not
/// `Serialize`, so it cannot end up in a log line, an error message or the outbox by accident.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (AUTH, HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connect, then a *required* STARTTLS before AUTH or any mail (usually port 587).
    /// A server that does not offer STARTTLS is refused, so a downgrade cannot leak the password.
    StartTls,
    /// TLS from the first byte (implicit TLS, "SMTPS", usually port 465).
    Tls,
    /// No encryption, for a relay on this machine or a trusted local network (port 25).
    None,
}

impl SmtpSecurity {
    /// The port this mode conventionally uses, for configs that leave the port out.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

impl fmt::Display for SmtpSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmtpSecurity::StartTls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::None => "none",
        })
    }
}

/// Why a string is not an SMTP security mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an SMTP security mode: expected starttls, tls or none")]
pub struct BadSmtpSecurity(pub String);

impl FromStr for SmtpSecurity {
    type Err = BadSmtpSecurity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starttls" => Ok(SmtpSecurity::StartTls),
            "tls" => Ok(SmtpSecurity::Tls),
            "none" => Ok(SmtpSecurity::None),
            _ => Err(BadSmtpSecurity(s.to_string())),
        }
    }
}

/// The validated `[smtp]` settings.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Server name: what we connect to and what its TLS certificate must name.
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// AUTH user; set together with `password`, or neither for a relay that needs no login.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The `From:` mailbox, e.g. `trialwatch <trialwatch@example.org>`.
    pub from: String,
    /// Limit for connecting and for each SMTP reply; a whole send gets three times this.
    pub timeout: Duration,
    /// An extra trusted root certificate (PEM), for a server whose certificate comes from a
    /// private CA (a company relay, the tests' own CA). The public web roots stay trusted.
    pub extra_root_cert_pem: Option<String>,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .field(
                "extra_root_cert_pem",
                &self
                    .extra_root_cert_pem
                    .as_ref()
                    .map(|pem| format!("<PEM, {} bytes>", pem.len())),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("", None).unwrap();
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.ctgov.base_url, "https://clinicaltrials.gov");
        assert_eq!(c.ctgov.requests_per_minute, 50);
        assert_eq!(c.ctgov.batch_size, 100);
        assert_eq!(c.mirror.recent_days, 30);
        assert_eq!(c.mirror.fields, WatchedFields::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let e =
            Config::from_toml("[ctgov]\nbatchsize = 3\n", Some(Path::new("x.toml"))).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("x.toml"), "{msg}");
        assert!(msg.contains("batchsize"), "{msg}");
    }

    #[test]
    fn every_bad_value_is_reported_with_its_key() {
        let text = r#"
            [ctgov]
            batch_size = 0
            base_url = "ftp://nope"
            [watch]
            nct_ids = ["NCT02241018", "NCT123"]
            [mirror]
            fields = ["status.overalStatus", "locations.*"]
        "#;
        let e = Config::from_toml(text, Some(Path::new("c.toml"))).unwrap_err();
        assert_eq!(e.problems.len(), 4, "{e}");
        let msg = e.to_string();
        assert!(msg.contains("`ctgov.batch_size` = 0"), "{msg}");
        assert!(msg.contains("ctgov.base_url"), "{msg}");
        assert!(
            msg.contains("`watch.nct_ids[1]`: `NCT123` is not an NCT ID"),
            "{msg}"
        );
        assert!(
            msg.contains("`mirror.fields[0]`: \"status.overalStatus\""),
            "{msg}"
        );
    }

    #[test]
    fn watch_file_is_read_relative_to_the_config_with_comments() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("list.txt"),
            "# my trials\nNCT02241018\n\nnct02985775  # lowercase is fine\nNCT02241018\n",
        )
        .unwrap();
        let cfg_path = dir.path().join("c.toml");
        let c = Config::from_toml(
            "[watch]\nnct_ids=[\"NCT00000001\"]\nnct_file = \"list.txt\"\n",
            Some(&cfg_path),
        )
        .unwrap();
        let ids: Vec<_> = c.watch.nct_ids.iter().map(|i| i.to_string()).collect();
        assert_eq!(ids, ["NCT00000001", "NCT02241018", "NCT02985775"]);
    }

    #[test]
    fn bad_watch_file_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list.txt");
        std::fs::write(&p, "NCT02241018\nNCTXYZ\n").unwrap();
        let e = read_watch_file(&p).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("list.txt:2"), "{}", e[0]);
    }

    #[test]
    fn field_patterns_must_name_real_paths() {
        assert!(validate_field_pattern("status.*").is_ok());
        assert!(validate_field_pattern("locations.*").is_ok());
        assert!(validate_field_pattern("results.hasResults").is_ok());
        assert!(validate_field_pattern("nope.*").is_err());
        assert!(validate_field_pattern("").is_err());
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    #[test]
    fn default_schedule_fires_daily_after_the_ctgov_refresh() {
        let c = Config::from_toml("", None).unwrap();
        assert_eq!(c.schedule.cron.source(), DEFAULT_CRON);
        assert_eq!(c.schedule.full_sync_days, 7);
        assert_eq!(c.schedule.reexec_after_trials, 1000);
        let off = Config::from_toml("[schedule]\nreexec_after_trials = 0\n", None).unwrap();
        assert_eq!(off.schedule.reexec_after_trials, 0);
    }

    #[test]
    fn bad_cron_and_days_are_named_with_a_fix() {
        let e = Config::from_toml(
            "[schedule]\ncron = \"30 13 * * *\"\nfull_sync_days = 0\nreexec_after_trials = -1\n",
            Some(Path::new("c.toml")),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`schedule.cron` = \"30 13 * * *\""), "{msg}");
        assert!(msg.contains("seconds first"), "{msg}");
        assert!(msg.contains("`schedule.full_sync_days` = 0"), "{msg}");
        assert!(msg.contains("`schedule.reexec_after_trials` = -1"), "{msg}");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// Guards the shipped example: it must stay valid and keep the defaults it documents.
    #[test]
    fn example_config_is_valid() {
        let c = Config::from_toml(include_str!("../config/trialwatch.example.toml"), None).unwrap();
        assert_eq!(c.watch.nct_ids.len(), 3);
        assert_eq!(c.mirror.fields, WatchedFields::default());
        assert_eq!(c.ctgov.requests_per_minute, 50);
    }

    #[test]
    fn smtp_security_parses_and_prints() {
        for mode in [
            SmtpSecurity::StartTls,
            SmtpSecurity::Tls,
            SmtpSecurity::None,
        ] {
            assert_eq!(mode.to_string().parse::<SmtpSecurity>(), Ok(mode));
        }
        assert!("ssl".parse::<SmtpSecurity>().is_err());
    }
}
