//! The retry policy: how long to wait after a failed attempt ([`retry_delay`]) and what a
//! failure does to an outbox entry ([`after_failure`]: rescheduled, or a dead letter).
//!
//! Pure: the caller passes the time, the policy and the random draw. Classifying a failure as
//! transient or permanent is [`crate::notify`]'s; the jitter formula is
//! [`crate::util::backoff`]'s.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::AlertsConfig;
use crate::notify::DeliveryError;
use crate::store::OutboxEntry;
use crate::util::backoff::equal_jitter;

/// How long to wait after the `attempts`-th failure (1-based): `base · 2^(attempts-1)`, capped,
/// with "equal jitter" (a uniform draw from the upper half) so that retries of many alerts
/// spread out without ever coming sooner than half the nominal delay. `unit` is in [0, 1).
pub fn retry_delay(attempts: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    equal_jitter(base, cap, attempts, unit)
}

/// The bookkeeping after a failed attempt at `at`: rescheduled with backoff, or dead when the
/// failure is permanent or the give-up age has passed.
pub fn after_failure(
    entry: &OutboxEntry,
    err: &DeliveryError,
    at: DateTime<Utc>,
    policy: &AlertsConfig,
    unit: f64,
) -> OutboxEntry {
    let mut e = entry.clone();
    e.attempts += 1;
    e.last_attempt_at = Some(at);
    let age = (at - e.window_start).to_std().unwrap_or_default();
    if !err.transient {
        e.last_error = Some(format!("permanent: {}", err.message));
        e.dead_at = Some(at);
    } else if age >= policy.give_up_after {
        e.last_error = Some(format!(
            "gave up after {} over {}: {}",
            crate::util::text::plural(e.attempts as usize, "attempt"),
            crate::util::text::duration(Duration::from_secs(age.as_secs())),
            err.message
        ));
        e.dead_at = Some(at);
    } else {
        let delay = retry_delay(e.attempts, policy.retry_base, policy.retry_cap, unit)
            .max(err.retry_after.unwrap_or_default());
        e.last_error = Some(err.message.clone());
        e.next_attempt_at = at + chrono::Duration::from_std(delay).unwrap_or_default();
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NctId;

    fn nct(s: &str) -> NctId {
        s.parse().unwrap()
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_the_upper_half() {
        let base = Duration::from_secs(30);
        let cap = Duration::from_secs(3600);
        assert_eq!(retry_delay(1, base, cap, 0.0), Duration::from_secs(15));
        assert_eq!(retry_delay(1, base, cap, 1.0), Duration::from_secs(30));
        assert_eq!(retry_delay(2, base, cap, 1.0), Duration::from_secs(60));
        assert_eq!(retry_delay(4, base, cap, 1.0), Duration::from_secs(240));
        assert_eq!(retry_delay(20, base, cap, 1.0), cap);
        assert_eq!(retry_delay(u32::MAX, base, cap, 0.0), cap / 2);
        for i in 0..100 {
            let d = retry_delay(3, base, cap, f64::from(i) / 100.0);
            assert!(d >= Duration::from_secs(60) && d <= Duration::from_secs(120));
        }
    }

    fn entry(created: &str) -> OutboxEntry {
        let t: DateTime<Utc> = created.parse().unwrap();
        OutboxEntry {
            subscription_id: "sub-0123456789".into(),
            nct_id: Some(nct("NCT02241018")),
            version: 2,
            paths: vec!["status.overallStatus".into()],
            created_at: t,
            window_start: t,
            attempts: 0,
            next_attempt_at: t,
            last_attempt_at: None,
            last_error: None,
            dead_at: None,
            event: None,
        }
    }

    #[test]
    fn transient_failures_back_off_until_the_give_up_age() {
        let policy = AlertsConfig::default();
        let e = entry("2026-01-01T00:00:00Z");
        let err = DeliveryError::transient("connection refused");
        let at: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let n = after_failure(&e, &err, at, &policy, 1.0);
        assert_eq!(n.attempts, 1);
        assert!(!n.is_dead());
        assert_eq!(n.next_attempt_at, at + chrono::Duration::seconds(30));
        // Retry-After wins when it asks for longer.
        let mut slow = err.clone();
        slow.retry_after = Some(Duration::from_secs(600));
        let n2 = after_failure(&e, &slow, at, &policy, 1.0);
        assert_eq!(n2.next_attempt_at, at + chrono::Duration::seconds(600));
        // Just before 3 days: still retried; at 3 days: dead letter.
        let late = at + chrono::Duration::hours(72) - chrono::Duration::seconds(1);
        assert!(!after_failure(&n, &err, late, &policy, 0.5).is_dead());
        let dead = after_failure(&n, &err, at + chrono::Duration::hours(72), &policy, 0.5);
        assert!(dead.is_dead());
        assert!(
            dead.last_error
                .as_deref()
                .unwrap()
                .starts_with("gave up after 2 attempts over 72 h: "),
            "{:?}",
            dead.last_error
        );
        // One attempt is singular, and the age is printed the one way durations are.
        let once = after_failure(&e, &err, at + chrono::Duration::hours(73), &policy, 0.5);
        assert!(
            once.last_error
                .as_deref()
                .unwrap()
                .starts_with("gave up after 1 attempt over 73 h: "),
            "{:?}",
            once.last_error
        );
    }

    #[test]
    fn permanent_failures_are_dead_at_once() {
        let e = entry("2026-01-01T00:00:00Z");
        let at: DateTime<Utc> = "2026-01-01T00:00:05Z".parse().unwrap();
        let n = after_failure(
            &e,
            &DeliveryError::permanent("550 no such user"),
            at,
            &AlertsConfig::default(),
            0.5,
        );
        assert_eq!(n.dead_at, Some(at));
        assert_eq!(n.last_error.as_deref(), Some("permanent: 550 no such user"));
    }
}
