//! `[schedule]`: when the daemon syncs ([`ScheduleConfig`], [`DEFAULT_CRON`]) and its checks.
//! Running the timetable is `crate::daemon`'s business.

use super::check::int_in_range;
use super::raw;

/// Default fire time: 13:30 UTC every day. CT.gov loads its daily refresh between 4 and 8 AM
/// US Eastern time, i.e. by 12:00 UTC in summer (EDT) and 13:00 UTC in winter (EST); the
/// `dataTimestamp` values seen live are around 09:00 UTC. Half an hour after the latest end of
/// that window the new data are in place whatever the season, and one sync a day is all the
/// data can change by.
pub const DEFAULT_CRON: &str = "0 30 13 * * *";

/// The daemon's timetable.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Fire times of scheduled syncs (the `cron` crate's syntax, seconds first), in UTC.
    pub cron: cron::Schedule,
    /// A full sync of the whole watch list runs at least this often, even when `/version`
    /// says CT.gov's data did not move: the safety net against a change CT.gov posted
    /// without moving its `dataTimestamp`.
    pub full_sync_days: u32,
    /// After a scheduled sync that fetched at least this many trials, the daemon re-executes
    /// itself in place once idle (same PID, store flushed first), so the memory the sync used
    /// goes back to the system; 0 never does.
    pub reexec_after_trials: u32,
}

/// Check `[schedule]`: the cron expression must parse and fire again.
pub(super) fn validate_schedule(raw: &raw::Schedule, problems: &mut Vec<String>) -> ScheduleConfig {
    let given = raw.cron.as_deref().unwrap_or(DEFAULT_CRON);
    // A crontab(5) line has five fields (no seconds); the `cron` crate wants seconds first.
    let five_field = format!("0 {}", given.trim());
    let text = if given.split_whitespace().count() == 5 {
        five_field.as_str()
    } else {
        given
    };
    let default = || {
        DEFAULT_CRON
            .parse::<cron::Schedule>()
            .unwrap_or_else(|_| unreachable!("the default cron expression is valid"))
    };
    let cron = match text.parse::<cron::Schedule>() {
        Ok(s) if s.upcoming(chrono::Utc).next().is_some() => s,
        Ok(_) => {
            problems.push(format!(
                "`schedule.cron` = {given:?} never fires again; give a recurring expression such as \
                 {DEFAULT_CRON:?} (sec min hour day-of-month month day-of-week, UTC)"
            ));
            default()
        }
        Err(e) => {
            problems.push(format!(
                "`schedule.cron` = {given:?} is not a cron expression ({e}); use a crontab line \
                 (minute hour day-of-month month day-of-week, e.g. \"30 13 * * *\") or six or \
                 seven fields, seconds first, e.g. {DEFAULT_CRON:?} = every day at 13:30:00 UTC"
            ));
            default()
        }
    };
    ScheduleConfig {
        cron,
        full_sync_days: int_in_range(
            raw.full_sync_days,
            "schedule.full_sync_days",
            7,
            1,
            365,
            problems,
        ) as u32,
        reexec_after_trials: int_in_range(
            raw.reexec_after_trials,
            "schedule.reexec_after_trials",
            1000,
            0,
            10_000_000,
            problems,
        ) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn default_schedule_fires_daily_after_the_ctgov_refresh() {
        let c = Config::from_toml("", None).unwrap();
        assert_eq!(c.schedule.cron.source(), DEFAULT_CRON);
        assert_eq!(c.schedule.full_sync_days, 7);
        assert_eq!(c.schedule.reexec_after_trials, 1000);
        let off = Config::from_toml("[schedule]\nreexec_after_trials = 0\n", None).unwrap();
        assert_eq!(off.schedule.reexec_after_trials, 0);
    }

    #[test]
    fn a_five_field_crontab_line_means_second_zero() {
        let c = Config::from_toml("[schedule]\ncron = \"30 13 * * 1-5\"\n", None).unwrap();
        assert_eq!(c.schedule.cron.source(), "0 30 13 * * 1-5");
    }

    #[test]
    fn bad_cron_and_days_are_named_with_a_fix() {
        let e = Config::from_toml(
            "[schedule]\ncron = \"30 13 * *\"\nfull_sync_days = 0\nreexec_after_trials = -1\n",
            Some(Path::new("c.toml")),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`schedule.cron` = \"30 13 * *\""), "{msg}");
        assert!(msg.contains("seconds first"), "{msg}");
        assert!(msg.contains("`schedule.full_sync_days` = 0"), "{msg}");
        assert!(msg.contains("`schedule.reexec_after_trials` = -1"), "{msg}");
    }
}
