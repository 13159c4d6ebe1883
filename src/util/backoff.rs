//! Capped exponential backoff with jitter, for CT.gov requests and alert retries alike.

use std::time::Duration;

/// The nominal wait after the `attempt`-th failure (1-based): `base · 2^(attempt-1)`, capped.
pub fn ceiling(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(31);
    base.checked_mul(1u32 << exp).unwrap_or(cap).min(cap)
}

/// "Full jitter": a uniform draw in `[0, ceiling]`, which spreads many clients best; used for
/// requests to CT.gov, where only the total load matters.
pub fn full_jitter(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let nanos = u64::try_from(ceiling(base, cap, attempt).as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// "Equal jitter": a draw from the upper half of the ceiling, so a retry spreads out but never
/// comes sooner than half the nominal delay; `unit` in [0, 1] is the random draw (given by the
/// caller so tests can fix it).
pub fn equal_jitter(base: Duration, cap: Duration, attempt: u32, unit: f64) -> Duration {
    let nominal = ceiling(base, cap, attempt);
    nominal.div_f64(2.0) + nominal.div_f64(2.0).mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_and_stop_at_the_cap() {
        let (b, c) = (Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(ceiling(b, c, 1), Duration::from_secs(2));
        assert_eq!(ceiling(b, c, 3), Duration::from_secs(8));
        assert_eq!(ceiling(b, c, 10), c);
        assert_eq!(ceiling(b, c, u32::MAX), c);
        for attempt in 1..40 {
            assert!(full_jitter(b, c, attempt) <= ceiling(b, c, attempt));
            let e = equal_jitter(b, c, attempt, 0.5);
            assert!(e >= ceiling(b, c, attempt) / 2 && e <= ceiling(b, c, attempt));
        }
    }
}
