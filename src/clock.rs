//! The wall clock, with one testing hook: `TRIALWATCH_NOW` (RFC 3339) freezes "now" so that
//! golden tests can reproduce a page made at a known instant. Nothing else reads the time.

use chrono::{DateTime, Utc};

/// The current time, or `TRIALWATCH_NOW` when it is set to a valid RFC 3339 instant.
pub fn now() -> DateTime<Utc> {
    std::env::var("TRIALWATCH_NOW")
        .ok()
        .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(Utc::now)
}
