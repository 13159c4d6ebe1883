//! Sync health: how many scheduled syncs in a row have failed, counting business days only
//! (CT.gov posts no updates at weekends, so an outage then costs nothing and does not count),
//! and when that count crosses `[alerts] health_after` or falls back to zero. The bookkeeping
//! is kept in [`super::state::DaemonState`]; each transition becomes one health alert
//! ([`alert_event`]) for the subscriptions that asked for `--event health`, through the same
//! outbox as every other alert, and is logged.

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::model::AlertEvent;
use crate::util::text::{one_line, plural};

/// Whether failures on `day` count: Monday to Friday (UTC).
pub fn is_business_day(day: NaiveDate) -> bool {
    !matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
}

/// How much of a failed sync's error the bookkeeping and the alert keep.
const MAX_ERROR_CHARS: usize = 500;

/// The run of failed scheduled syncs, as the daemon's bookkeeping keeps it (so a restart does
/// not reset it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncHealth {
    /// Failed scheduled syncs in a row on business days; a success resets it.
    #[serde(default)]
    pub failures_in_a_row: u32,
    /// Set when the count reached the threshold: syncing is unhealthy since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_since: Option<DateTime<Utc>>,
    /// The first failure of the current run of failures, for the alert's "since when".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// The last failure's error, one line, for the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A change of health worth telling the operator about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthChange {
    /// `failures` scheduled syncs in a row failed (the threshold was reached now).
    Unhealthy {
        /// How many failed in a row.
        failures: u32,
        /// When the first of them failed.
        since: DateTime<Utc>,
        /// What the last one said.
        last_error: String,
    },
    /// A sync succeeded after the daemon had reported syncing unhealthy since `since`.
    Recovered {
        /// When it was reported unhealthy.
        since: DateTime<Utc>,
        /// When the run of failures began (the unhealthy alert's key names it).
        failing_since: DateTime<Utc>,
        /// How many had failed in a row.
        failures: u32,
    },
}

impl SyncHealth {
    /// Record a failed scheduled sync at `at` that said `error`; a failure at a weekend does
    /// not count. Returns [`HealthChange::Unhealthy`] once, when the count reaches `threshold`.
    pub fn failed(
        &mut self,
        at: DateTime<Utc>,
        threshold: u32,
        error: &str,
    ) -> Option<HealthChange> {
        if !is_business_day(at.date_naive()) {
            return None;
        }
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        let since = *self.failing_since.get_or_insert(at);
        let last_error = one_line(error, MAX_ERROR_CHARS);
        self.last_error = Some(last_error.clone());
        if self.unhealthy_since.is_none() && self.failures_in_a_row >= threshold.max(1) {
            self.unhealthy_since = Some(at);
            return Some(HealthChange::Unhealthy {
                failures: self.failures_in_a_row,
                since,
                last_error,
            });
        }
        None
    }

    /// Record a scheduled sync that worked (synced or rightly skipped): the count restarts,
    /// and an unhealthy state ends with [`HealthChange::Recovered`].
    pub fn succeeded(&mut self) -> Option<HealthChange> {
        let failures = std::mem::take(&mut self.failures_in_a_row);
        let failing_since = self.failing_since.take();
        self.last_error = None;
        self.unhealthy_since
            .take()
            .map(|since| HealthChange::Recovered {
                since,
                failing_since: failing_since.unwrap_or(since),
                failures,
            })
    }
}

/// The time as alerts write it.
fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The health alert a change owes, at `at`: about no trial, critical (so a subscription's
/// severity filter never hides either half), keyed by the start of the run of failures so each
/// outage is one "failing" alert and one "recovered" alert however often it is enqueued.
pub fn alert_event(change: &HealthChange, at: DateTime<Utc>) -> AlertEvent {
    let key_time = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    let (summary, reason, key) = match change {
        HealthChange::Unhealthy {
            failures,
            since,
            last_error,
        } => (
            format!(
                "trialwatch could not sync: {} in a row failed since {}: {last_error}",
                plural(*failures as usize, "scheduled sync"),
                utc(*since)
            ),
            format!(
                "The last failure, at {}, said: {last_error}. Weekend failures are not counted \
                 (CT.gov posts no updates then). trialwatch keeps trying at every scheduled time \
                 and sends one more alert when a sync works again; `trialwatch status` and the \
                 daemon's log show each attempt.",
                utc(at)
            ),
            format!("health-unhealthy-{}", key_time(*since)),
        ),
        HealthChange::Recovered {
            since,
            failing_since,
            failures,
        } => (
            format!(
                "trialwatch is syncing again: the scheduled sync at {} worked",
                utc(at)
            ),
            format!(
                "{} in a row had failed since {} (reported unhealthy at {}); nothing CT.gov \
                 posted meanwhile is lost, the sync that worked fetched it.",
                plural(*failures as usize, "scheduled sync"),
                utc(*failing_since),
                utc(*since)
            ),
            format!("health-recovered-{}", key_time(*failing_since)),
        ),
    };
    AlertEvent::health(summary, reason, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventKind;

    fn at(s: &str) -> DateTime<Utc> {
        format!("{s}T06:00:00Z").parse().unwrap()
    }

    impl SyncHealth {
        fn failed_(&mut self, at: DateTime<Utc>, threshold: u32) -> Option<HealthChange> {
            self.failed(at, threshold, "CT.gov answered 503")
        }
    }

    #[test]
    fn weekends_are_not_business_days() {
        // 2026-12-04 is a Friday.
        let fri = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        assert!(is_business_day(fri));
        assert!(!is_business_day(fri.succ_opt().unwrap()));
        assert!(!is_business_day(
            NaiveDate::from_ymd_opt(2026, 12, 6).unwrap()
        ));
        assert!(is_business_day(
            NaiveDate::from_ymd_opt(2026, 12, 7).unwrap()
        ));
    }

    #[test]
    fn three_business_day_failures_then_recovery() {
        let mut h = SyncHealth::default();
        // Thursday, Friday fail; the weekend's failures do not count; Monday is the third.
        assert_eq!(h.failed_(at("2026-12-03"), 3), None);
        assert_eq!(h.failed_(at("2026-12-04"), 3), None);
        assert_eq!(h.failed_(at("2026-12-05"), 3), None);
        assert_eq!(h.failed_(at("2026-12-06"), 3), None);
        assert_eq!(h.failures_in_a_row, 2);
        let unhealthy = HealthChange::Unhealthy {
            failures: 3,
            since: at("2026-12-03"),
            last_error: "CT.gov answered 503".into(),
        };
        assert_eq!(h.failed_(at("2026-12-07"), 3), Some(unhealthy.clone()));
        let ev = alert_event(&unhealthy, at("2026-12-07"));
        assert_eq!(ev.kind, EventKind::Health);
        assert_eq!(
            ev.summary,
            "trialwatch could not sync: 3 scheduled syncs in a row failed since 2026-12-03 06:00 UTC: CT.gov answered 503"
        );
        assert_eq!(ev.key, "health-unhealthy-20261203T060000Z");
        // Told once, not at every further failure.
        assert_eq!(h.failed_(at("2026-12-08"), 3), None);
        let recovered = HealthChange::Recovered {
            since: at("2026-12-07"),
            failing_since: at("2026-12-03"),
            failures: 4,
        };
        assert_eq!(h.succeeded(), Some(recovered.clone()));
        let ev = alert_event(&recovered, at("2026-12-09"));
        assert!(
            ev.summary.starts_with("trialwatch is syncing again"),
            "{}",
            ev.summary
        );
        assert!(
            ev.reason
                .starts_with("4 scheduled syncs in a row had failed since 2026-12-03"),
            "{}",
            ev.reason
        );
        assert_eq!(ev.key, "health-recovered-20261203T060000Z");
        assert_eq!(h.succeeded(), None);
        assert_eq!(h.failures_in_a_row, 0);
    }

    #[test]
    fn a_success_in_between_restarts_the_count() {
        let mut h = SyncHealth::default();
        h.failed_(at("2026-12-01"), 3);
        h.failed_(at("2026-12-01"), 3);
        assert_eq!(h.succeeded(), None);
        assert_eq!(h.failed_(at("2026-12-02"), 3), None);
        assert_eq!(h.failures_in_a_row, 1);
    }
}
