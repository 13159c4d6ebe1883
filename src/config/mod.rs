//! Configuration: the TOML file is parsed into `raw` structs that mirror it exactly (unknown keys
//! are errors), then validated into a [`Config`] whose values cannot be wrong (`NctId`, parsed
//! URLs, watched-field patterns that name real paths). Every mistake is reported with the file,
//! the key, the bad value and what would be valid; validation collects all mistakes at once.
//!
//! This file owns [`Config`], [`ConfigError`], where the file is looked for and how the
//! sections' problems are collected into one error. Each section's validated type and its checks
//! live in the file named after it (`ctgov`, `watch`, `mirror`, `schedule`, `smtp`, `alerts`,
//! `subscriptions`); the TOML's shape is in `raw`, the shared range and path helpers in `check`.
//!
//! This module reads files (the config, the optional watch-list file, secret and certificate
//! files) but never the network.

mod alerts;
mod check;
mod ctgov;
mod lenient;
mod locate;
mod mirror;
mod publish;
mod queries;
mod raw;
mod schedule;
mod smtp;
mod subscriptions;
mod watch;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::Subscription;

pub use alerts::AlertsConfig;
pub use ctgov::CtgovConfig;
pub use locate::config_candidates;
pub use mirror::{MirrorConfig, validate_field_pattern};
pub use publish::{DEFAULT_LISTEN, PublishConfig, WebConfig, parse_listen};
pub use queries::{DEFAULT_MAX_MATCHES, QueriesConfig};
pub use schedule::{DEFAULT_CRON, ScheduleConfig};
pub use smtp::{
    BadSmtpSecurity, PasswordSource, SMTP_PASSWORD_CREDENTIAL, Secret, SmtpConfig, SmtpSecurity,
};
pub use watch::{WatchConfig, WatchFile, WatchList, read_watch_file};

/// Where the config is looked for when `--config` is not given, in order.
pub const DEFAULT_CONFIG_PATHS: &[&str] = &["/etc/trialwatch/config.toml", "./trialwatch.toml"];

/// Why an email subscription is refused without `[smtp]`, and the fix.
pub const NO_SMTP_FOR_EMAIL: &str = "email alerts need an [smtp] section to send them, and the \
     configuration has none: add [smtp] with host = \"smtp.example.org\" and \
     from = \"trialwatch <trialwatch@example.org>\" (see the README's Email settings), or \
     subscribe a webhook instead";

/// Default store location for a system service (systemd's `StateDirectory=trialwatch`).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/trialwatch";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (`None` when running on built-in defaults), for messages.
    pub source: Option<PathBuf>,
    /// Where [`Config::load`] looked for a file without `--config`, in order (empty with
    /// `--config`), for `check-config`.
    pub searched: Vec<PathBuf>,
    /// The sled store lives here.
    pub data_dir: PathBuf,
    /// `[ctgov]`: how the CT.gov client reaches the API (rate, batches, retries).
    pub ctgov: CtgovConfig,
    /// `[watch]`: the trials to track.
    pub watch: WatchConfig,
    /// `[mirror]`: how the Markdown mirror page is written and which fields it watches.
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
    /// `[publish]`: the static export the daemon refreshes after every sync.
    pub publish: PublishConfig,
    /// `[web]`: the read-only web view the daemon serves.
    pub web: WebConfig,
    /// `[[query]]` watched searches and `[queries]` settings.
    pub queries: QueriesConfig,
}

/// How many problems `Display` lists before it only counts the rest: a config with thousands
/// of mistakes (a pasted list gone wrong) must not make a message of megabytes.
const PROBLEMS_SHOWN: usize = 20;

/// One or more mistakes in the configuration; `Display` lists each on its own line, at most
/// [`PROBLEMS_SHOWN`] of them, then how many more there are.
#[derive(Debug)]
pub struct ConfigError {
    /// The file the mistakes are in (`None` for the built-in defaults), named first in messages.
    pub file: Option<PathBuf>,
    /// Every mistake found, each naming its key, the bad value and a valid example, so one
    /// run shows the operator all there is to fix.
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
            for p in self.problems.iter().take(PROBLEMS_SHOWN) {
                writeln!(f, "  - {p}")?;
            }
            let rest = self.problems.len().saturating_sub(PROBLEMS_SHOWN);
            if rest > 0 {
                writeln!(
                    f,
                    "  … and {rest} more problem{} (fix these first)",
                    if rest == 1 { "" } else { "s" }
                )?;
            }
            Ok(())
        }
    }
}

impl std::error::Error for ConfigError {}

/// A TOML error as "line L, column C: message", without the quoted source line the `toml`
/// crate would print: that line may hold a value that must never be shown (an inline password
/// under a misspelt key).
fn toml_problem(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end().replace('\n', "\n    ");
    match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let before = text.get(..start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before
                .rfind('\n')
                .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
                + 1;
            format!("TOML error at line {line}, column {column}: {message}")
        }
        None => format!("TOML error: {message}"),
    }
}

impl Config {
    /// Load from `--config PATH`, else the first default path that exists, else built-in defaults.
    /// `data_dir_override` is `--data-dir` and wins over the file. The watch-list file is read
    /// and checked too (see [`Config::load_with`]).
    pub fn load(
        path: Option<&Path>,
        data_dir_override: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        Config::load_with(path, data_dir_override, WatchFile::Read)
    }

    /// [`Config::load`], saying whether `[watch] nct_file` is read now or on first use: a
    /// command that never looks at the watch list defers it, so its cost does not grow with
    /// the list.
    pub fn load_with(
        path: Option<&Path>,
        data_dir_override: Option<&Path>,
        watch_file: WatchFile,
    ) -> Result<Config, ConfigError> {
        let searched = if path.is_some() {
            Vec::new()
        } else {
            config_candidates()
        };
        let found = match path {
            Some(p) => Some(p.to_path_buf()),
            None => searched.iter().find(|p| p.is_file()).cloned(),
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
                let mut cfg = Config::from_toml_with(&text, Some(&p), watch_file)?;
                let sets_data_dir =
                    toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.contains_key("data_dir"));
                if !sets_data_dir {
                    cfg.data_dir = locate::default_data_dir(Some(&p));
                }
                cfg
            }
            None => {
                let mut cfg = Config::from_toml("", None)?;
                cfg.data_dir = locate::default_data_dir(None);
                cfg
            }
        };
        cfg.searched = searched;
        if let Some(d) = data_dir_override {
            cfg.data_dir = d.to_path_buf();
        }
        Ok(cfg)
    }

    /// Parse and validate TOML text. `file` is used for messages and to resolve `nct_file`,
    /// which is read and checked too.
    pub fn from_toml(text: &str, file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::from_toml_with(text, file, WatchFile::Read)
    }

    /// [`Config::from_toml`], reading `nct_file` now or on first use (`watch_file`).
    pub fn from_toml_with(
        text: &str,
        file: Option<&Path>,
        watch_file: WatchFile,
    ) -> Result<Config, ConfigError> {
        let err = |problems: Vec<String>| ConfigError {
            file: file.map(Path::to_path_buf),
            problems,
        };
        // Syntax errors stop here (with their line); type mistakes are collected with the rest.
        let table: toml::Table =
            toml::from_str(text).map_err(|e| err(vec![toml_problem(text, &e)]))?;
        let mut problems = Vec::new();
        let raw = lenient::read(table, &mut problems).ok_or_else(|| err(problems.clone()))?;

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

        let ctgov = ctgov::validate_ctgov(&raw.ctgov, &mut problems);
        let watch = watch::validate_watch(&raw.watch, file, watch_file, &mut problems);
        let mirror = mirror::validate_mirror(&raw.mirror, &mut problems);
        let schedule = schedule::validate_schedule(&raw.schedule, &mut problems);
        let smtp = raw
            .smtp
            .as_ref()
            .and_then(|s| smtp::validate_smtp(s, file, &mut problems));
        let alerts = alerts::validate_alerts(&raw.alerts, &mut problems);
        let subscriptions =
            subscriptions::validate_subscriptions(&raw.subscription, file, &mut problems);
        let publish = publish::validate_publish(&raw.publish, file, &mut problems);
        let web = publish::validate_web(&raw.web, &mut problems);
        let queries = queries::validate_queries(&raw.queries, &raw.query, &mut problems);
        if raw.smtp.is_none() {
            for (i, s) in raw.subscription.iter().enumerate() {
                if s.email.is_some() {
                    problems.push(format!("`subscription[{i}].email`: {NO_SMTP_FOR_EMAIL}"));
                }
            }
        }

        if !problems.is_empty() {
            return Err(err(problems));
        }
        Ok(Config {
            source: file.map(Path::to_path_buf),
            searched: Vec::new(),
            data_dir,
            ctgov,
            watch,
            mirror,
            schedule,
            smtp,
            alerts,
            subscriptions,
            publish,
            web,
            queries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WatchedFields;

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
}

#[cfg(test)]
mod example_tests {
    use super::*;
    use crate::model::WatchedFields;

    /// Guards the shipped example: it must stay valid and keep the defaults it documents.
    #[test]
    fn example_config_is_valid() {
        let c =
            Config::from_toml(include_str!("../../config/trialwatch.example.toml"), None).unwrap();
        assert_eq!(c.watch.ids().len(), 3);
        assert_eq!(c.mirror.fields, WatchedFields::default());
        assert_eq!(c.ctgov.requests_per_minute, 50);
    }
}
