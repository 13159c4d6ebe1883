//! `[alerts]`: the outbox's retry schedule and delivery limits ([`AlertsConfig`]) and their
//! checks. The outbox that follows them is `crate::outbox`.

use std::time::Duration;

use super::check::{int_in_range, secs_in_range};
use super::raw;

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
    /// Failed scheduled syncs in a row (business days only) after which the daemon reports
    /// syncing unhealthy (`[alerts] health_after`).
    pub health_after: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            retry_base: Duration::from_secs(30),
            retry_cap: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(72 * 3600),
            concurrency: 8,
            webhook_timeout: Duration::from_secs(10),
            health_after: 3,
        }
    }
}

/// Check `[alerts]`; the retry cap may not be below the base.
pub(super) fn validate_alerts(raw: &raw::Alerts, problems: &mut Vec<String>) -> AlertsConfig {
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
        health_after: int_in_range(
            raw.health_after,
            "alerts.health_after",
            3,
            1,
            1000,
            problems,
        ) as u32,
    }
}
