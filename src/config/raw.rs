//! The config file key for key, as serde reads it. `deny_unknown_fields` turns a misspelt key
//! into an error that names it. Everything is optional here; defaults, ranges and meaning are
//! the section files' business, not this one's.

use serde::Deserialize;

/// The whole file: top-level keys and one field per table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub(super) data_dir: Option<String>,
    #[serde(default)]
    pub(super) ctgov: Ctgov,
    #[serde(default)]
    pub(super) watch: Watch,
    #[serde(default)]
    pub(super) mirror: Mirror,
    #[serde(default)]
    pub(super) schedule: Schedule,
    pub(super) smtp: Option<Smtp>,
    #[serde(default)]
    pub(super) alerts: Alerts,
    #[serde(default)]
    pub(super) subscription: Vec<Subscription>,
    #[serde(default)]
    pub(super) publish: super::publish::RawPublish,
    #[serde(default)]
    pub(super) web: super::publish::RawWeb,
    #[serde(default)]
    pub(super) queries: super::queries::RawQueries,
    #[serde(default)]
    pub(super) query: Vec<super::queries::RawQuery>,
}

/// `[schedule]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Schedule {
    pub(super) cron: Option<String>,
    pub(super) full_sync_days: Option<i64>,
    pub(super) reexec_after_trials: Option<i64>,
}

/// `[smtp]`; absent means no email delivery.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Smtp {
    pub(super) host: Option<String>,
    pub(super) port: Option<i64>,
    pub(super) security: Option<String>,
    pub(super) username: Option<String>,
    /// An inline password: refused (see `smtp::validate_smtp`). Its value is not even kept, so
    /// no message can show it; only that the key is there.
    pub(super) password: Option<serde::de::IgnoredAny>,
    pub(super) password_file: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) from: Option<String>,
    pub(super) timeout_secs: Option<f64>,
    pub(super) root_cert_file: Option<String>,
}

/// `[alerts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Alerts {
    pub(super) retry_base_secs: Option<f64>,
    pub(super) retry_cap_secs: Option<f64>,
    pub(super) give_up_after_hours: Option<f64>,
    pub(super) concurrency: Option<i64>,
    pub(super) webhook_timeout_secs: Option<f64>,
    pub(super) health_after: Option<i64>,
}

/// One `[[subscription]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Subscription {
    pub(super) email: Option<String>,
    pub(super) webhook: Option<String>,
    /// Team-chat incoming-webhook URLs: at most one destination key per entry.
    pub(super) slack: Option<String>,
    pub(super) discord: Option<String>,
    pub(super) teams: Option<String>,
    pub(super) ntfy: Option<String>,
    pub(super) secret_file: Option<String>,
    /// An inline signing key: refused like `smtp.password`; the value is not kept.
    pub(super) secret: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) nct: Vec<String>,
    #[serde(default)]
    pub(super) fields: Vec<String>,
    pub(super) min_severity: Option<String>,
    pub(super) digest: Option<String>,
    /// Event kinds (`changes`, `query-entered`, …); absent means field changes only.
    #[serde(default)]
    pub(super) events: Vec<String>,
    /// Only entries and exits of these queries.
    #[serde(default)]
    pub(super) queries: Vec<String>,
}

/// `[ctgov]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Ctgov {
    pub(super) base_url: Option<String>,
    pub(super) requests_per_minute: Option<i64>,
    pub(super) batch_size: Option<i64>,
    pub(super) timeout_secs: Option<f64>,
    pub(super) max_attempts: Option<i64>,
    pub(super) backoff_base_ms: Option<i64>,
    pub(super) backoff_cap_secs: Option<f64>,
    pub(super) max_body_mb: Option<i64>,
}

/// `[watch]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Watch {
    #[serde(default)]
    pub(super) nct_ids: Vec<String>,
    pub(super) nct_file: Option<String>,
    pub(super) backfill: Option<bool>,
}

/// `[mirror]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Mirror {
    pub(super) canonical_base: Option<String>,
    pub(super) footer_note: Option<String>,
    pub(super) recent_days: Option<i64>,
    pub(super) fields: Option<Vec<String>>,
}
