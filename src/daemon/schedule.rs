//! Fire times: when the next scheduled sync is due, and how long to sleep before looking again.
//!
//! The daemon never trusts one long monotonic sleep: tokio's timers run on `CLOCK_MONOTONIC`,
//! which stops while the machine is suspended. It sleeps at most [`MAX_STEP`] at a time and
//! compares the wall clock with the fire time it is waiting for, so a fire time missed while
//! the machine slept runs once, within `MAX_STEP` of waking. Several missed fire times
//! collapse into that one run, because the next fire time is computed from "now".
//!
//! Pure: every function takes "now" as an argument.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Longest sleep between two looks at the wall clock (the worst delay after a resume).
pub const MAX_STEP: Duration = Duration::from_secs(30);

/// The first fire time strictly after `now`, or `None` if the schedule never fires again.
pub fn next_fire(schedule: &cron::Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.after(&now).next()
}

/// The next `n` fire times after `now` (for `check-config` and `status`).
pub fn upcoming(schedule: &cron::Schedule, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    schedule.after(&now).take(n).collect()
}

/// What to do at a look at the clock while waiting for `fire`.
#[derive(Debug, PartialEq, Eq)]
pub enum Tick {
    /// Not yet: sleep this long, then look again.
    Sleep(Duration),
    /// Due (or overdue): run once.
    Fire {
        /// The later fire times that also passed (the machine slept, or a run overran them)
        /// and are folded into this run.
        missed: usize,
    },
}

/// Compare the wall clock `now` with the fire time being waited for.
pub fn tick(schedule: &cron::Schedule, fire: DateTime<Utc>, now: DateTime<Utc>) -> Tick {
    if now < fire {
        let left = (fire - now).to_std().unwrap_or(Duration::ZERO);
        // Wake a hair late rather than early, so one look usually suffices.
        return Tick::Sleep(left.min(MAX_STEP) + Duration::from_millis(5));
    }
    let missed = schedule
        .after(&fire)
        .take_while(|t| *t <= now)
        .take(10_000)
        .count();
    Tick::Fire { missed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, m, s).unwrap()
    }

    #[test]
    fn sleeps_in_bounded_steps_until_due() {
        let s: cron::Schedule = "0 30 13 * * *".parse().unwrap();
        let fire = next_fire(&s, at(1, 0, 0)).unwrap();
        assert_eq!(fire, at(13, 30, 0));
        assert_eq!(
            tick(&s, fire, at(1, 0, 0)),
            Tick::Sleep(MAX_STEP + Duration::from_millis(5))
        );
        assert_eq!(
            tick(&s, fire, at(13, 29, 58)),
            Tick::Sleep(Duration::from_millis(2005))
        );
        assert_eq!(tick(&s, fire, at(13, 30, 0)), Tick::Fire { missed: 0 });
    }

    /// Guards "a fire time missed while the machine slept runs once on wake": three days of
    /// suspend give one run that reports the two other fire times it absorbed.
    #[test]
    fn missed_fire_times_run_once_after_a_suspend() {
        let s: cron::Schedule = "0 30 13 * * *".parse().unwrap();
        let fire = at(13, 30, 0);
        let woke = fire + chrono::Duration::days(2) + chrono::Duration::hours(1);
        assert_eq!(tick(&s, fire, woke), Tick::Fire { missed: 2 });
        // After the run the next fire time is computed from now: tomorrow, not the missed ones.
        assert_eq!(next_fire(&s, woke), Some(fire + chrono::Duration::days(3)));
    }

    #[test]
    fn upcoming_lists_the_next_fire_times() {
        let s: cron::Schedule = "*/2 * * * * *".parse().unwrap();
        assert_eq!(
            upcoming(&s, at(0, 0, 1), 3),
            vec![at(0, 0, 2), at(0, 0, 4), at(0, 0, 6)]
        );
    }
}
