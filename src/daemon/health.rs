//! Sync health: how many scheduled syncs in a row have failed, counting business days only
//! (CT.gov posts no updates at weekends, so an outage then costs nothing and does not count),
//! and when that count crosses `[alerts] health_after` or falls back to zero. Pure
//! bookkeeping kept in [`super::state::DaemonState`]; the daemon logs each transition.

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use serde::{Deserialize, Serialize};

/// Whether failures on `day` count: Monday to Friday (UTC).
pub fn is_business_day(day: NaiveDate) -> bool {
    !matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
}

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
}

/// A change of health worth telling the operator about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthChange {
    /// `failures` scheduled syncs in a row failed (the threshold was reached now).
    Unhealthy {
        /// How many failed in a row.
        failures: u32,
    },
    /// A sync succeeded after the daemon had reported syncing unhealthy since `since`.
    Recovered {
        /// When it was reported unhealthy.
        since: DateTime<Utc>,
    },
}

impl SyncHealth {
    /// Record a failed scheduled sync at `at`; a failure at a weekend does not count.
    /// Returns [`HealthChange::Unhealthy`] once, when the count reaches `threshold`.
    pub fn failed(&mut self, at: DateTime<Utc>, threshold: u32) -> Option<HealthChange> {
        if !is_business_day(at.date_naive()) {
            return None;
        }
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        if self.unhealthy_since.is_none() && self.failures_in_a_row >= threshold.max(1) {
            self.unhealthy_since = Some(at);
            return Some(HealthChange::Unhealthy {
                failures: self.failures_in_a_row,
            });
        }
        None
    }

    /// Record a scheduled sync that worked (synced or rightly skipped): the count restarts,
    /// and an unhealthy state ends with [`HealthChange::Recovered`].
    pub fn succeeded(&mut self) -> Option<HealthChange> {
        self.failures_in_a_row = 0;
        self.unhealthy_since
            .take()
            .map(|since| HealthChange::Recovered { since })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        format!("{s}T06:00:00Z").parse().unwrap()
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
        assert_eq!(h.failed(at("2026-12-03"), 3), None);
        assert_eq!(h.failed(at("2026-12-04"), 3), None);
        assert_eq!(h.failed(at("2026-12-05"), 3), None);
        assert_eq!(h.failed(at("2026-12-06"), 3), None);
        assert_eq!(h.failures_in_a_row, 2);
        assert_eq!(
            h.failed(at("2026-12-07"), 3),
            Some(HealthChange::Unhealthy { failures: 3 })
        );
        // Told once, not at every further failure.
        assert_eq!(h.failed(at("2026-12-08"), 3), None);
        assert_eq!(
            h.succeeded(),
            Some(HealthChange::Recovered {
                since: at("2026-12-07")
            })
        );
        assert_eq!(h.succeeded(), None);
        assert_eq!(h.failures_in_a_row, 0);
    }

    #[test]
    fn a_success_in_between_restarts_the_count() {
        let mut h = SyncHealth::default();
        h.failed(at("2026-12-01"), 3);
        h.failed(at("2026-12-01"), 3);
        assert_eq!(h.succeeded(), None);
        assert_eq!(h.failed(at("2026-12-02"), 3), None);
        assert_eq!(h.failures_in_a_row, 1);
    }
}
