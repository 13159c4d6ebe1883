//! The types that cross module boundaries: trial IDs, the normalized record, field changes,
//! version metadata, watched-field patterns, severities, subscriptions and alerts.
//!
//! Plain data with its own parsing and invariants. It imports nothing else of the crate, so
//! every other module can use it without creating a cycle, and it owns no I/O.

mod alert;
mod history;
mod nct;
mod query;
mod record;
mod severity;
mod subscription;

pub use alert::{Alert, AlertChange, AlertEvent, TrialInfo};
pub use history::{HistorySummary, OutcomeSwitch};
pub use nct::{BadNctId, NctId};
pub use query::{EventKind, PHASES, QuerySpec, RAW_KEYS, STATUSES, STUDY_TYPES};
pub use record::{
    ChangeKind, DEFAULT_WATCHED_FIELDS, FieldChange, FieldPattern, Provenance, Record, Source,
    VersionMeta, WatchedFields,
};
pub use severity::{BadSeverity, Severity};
pub use subscription::{
    BadHttpUrl, ChatService, DigestMode, Origin, Subscription, Target, validate_email,
    validate_http_url, validate_webhook_url,
};
