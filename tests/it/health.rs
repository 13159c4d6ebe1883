//! Sync health through the daemon: a schedule firing every second against a fake CT.gov that
//! rejects the watched trial, with the clock frozen on a chosen weekday or weekend day; the
//! daemon says once that syncing is unhealthy after `[alerts] health_after` failed runs, says
//! when it recovers, and does not count failures at a weekend.

use std::time::Duration;

use crate::support::daemon::{Daemon, EVERY_SECOND, wait_for, wait_running};
use crate::support::env::{TestEnv, fixture_as};

const UNHEALTHY: &str = "scheduled syncs in a row have failed";
const RECOVERED: &str = "scheduled syncing recovered";

fn wait_log(d: &Daemon, what: &str, n: usize) {
    wait_for(Duration::from_secs(30), what, || {
        (d.log().matches(what).count() >= n).then_some(())
    });
}

/// Scheduled runs that ended, whichever way.
fn runs(d: &Daemon) -> usize {
    let log = d.log();
    [
        "scheduled sync finished",
        "scheduled sync failed",
        "scheduled sync skipped",
    ]
    .iter()
    .map(|m| log.matches(m).count())
    .sum()
}

fn wait_runs(d: &Daemon, n: usize) {
    wait_for(
        Duration::from_secs(30),
        &format!("{n} scheduled runs"),
        || (runs(d) >= n).then_some(()),
    );
}

#[test]
fn failed_syncs_on_business_days_make_syncing_unhealthy_until_one_works() {
    let a = "NCT09000007";
    let tail = format!("{EVERY_SECOND}[alerts]\nhealth_after = 3\n");
    let env = TestEnv::with_config(&[a], "", &tail);
    env.server.put_study(fixture_as("NCT03418623.json", a));
    env.server.reject_id(a);

    // Wednesday 2026-12-02: every failure counts.
    let mut d = Daemon::start_with(&env, |c| {
        c.env("TRIALWATCH_NOW", "2026-12-02T10:00:00Z");
    });
    wait_running(&env, &d);
    wait_log(&d, UNHEALTHY, 1);
    let log = d.log();
    assert!(log.contains(&format!("3 {UNHEALTHY}")), "{log}");
    // Told once, however many runs fail after that.
    let before = runs(&d);
    wait_runs(&d, before + 2);
    assert_eq!(d.log().matches(UNHEALTHY).count(), 1, "{}", d.log());
    assert!(!d.log().contains(RECOVERED));

    env.server.accept_id(a);
    wait_log(&d, RECOVERED, 1);
    let (status, _) = d.terminate();
    assert!(status.success());

    // Saturday 2026-12-05: the same outage (a trial never synced yet, rejected at every run)
    // does not count.
    let env = TestEnv::with_config(&[a], "", &tail);
    env.server.put_study(fixture_as("NCT03418623.json", a));
    env.server.reject_id(a);
    let mut d = Daemon::start_with(&env, |c| {
        c.env("TRIALWATCH_NOW", "2026-12-05T10:00:00Z");
    });
    wait_running(&env, &d);
    wait_runs(&d, 5);
    let log = d.log();
    assert!(!log.contains(RECOVERED), "{log}");
    assert!(
        !log.contains("scheduled sync skipped"),
        "every run tried: {log}"
    );
    assert!(log.contains("sync.failed=1"), "{log}");
    assert!(!log.contains(UNHEALTHY), "weekend failures counted: {log}");
    let (status, _) = d.terminate();
    assert!(status.success());
}
