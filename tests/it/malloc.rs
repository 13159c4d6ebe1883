//! The memory-heavy commands run with the systemd unit's glibc malloc settings whoever starts
//! them (`src/cli/malloc.rs`): a daemon started without `GLIBC_TUNABLES` has them, under the
//! PID it was started with; one started with `GLIBC_TUNABLES` set keeps what it was given.

use std::time::Duration;

use crate::support::daemon::{Daemon, wait_for, wait_running};
use crate::support::env::{TestEnv, stderr, stdout};

/// The daemon's environment, once it is up.
fn environ_of(d: &Daemon) -> String {
    let raw = std::fs::read(format!("/proc/{}/environ", d.pid())).unwrap();
    String::from_utf8_lossy(&raw).replace('\0', "\n")
}

const UNIT: &str = include_str!("../../systemd/trialwatch.service");

fn unit_tunables() -> &'static str {
    UNIT.lines()
        .find_map(|l| l.strip_prefix("Environment=GLIBC_TUNABLES="))
        .unwrap()
        .trim()
}

#[test]
fn a_daemon_started_without_malloc_settings_runs_with_the_units_under_its_own_pid() {
    let env = TestEnv::new(&[]);
    let mut d = Daemon::start_with(&env, |c| {
        c.env_remove("GLIBC_TUNABLES");
    });
    wait_running(&env, &d);
    let environ = wait_for(Duration::from_secs(10), "the daemon's environment", || {
        let e = environ_of(&d);
        e.contains("GLIBC_TUNABLES").then_some(e)
    });
    // `/proc/PID/environ` shows the start-up copy of the environment, which glibc (2.36) cuts
    // at the first `:` while it parses the tunables; the process's own environment is whole.
    let want = format!("GLIBC_TUNABLES={}", unit_tunables());
    assert!(
        environ
            .lines()
            .any(|l| l.starts_with("GLIBC_TUNABLES=glibc.malloc.") && want.starts_with(l)),
        "{environ}"
    );
    assert!(
        environ.lines().any(|l| l == "TRIALWATCH_MALLOC_TUNED=1"),
        "{environ}"
    );
    let (status, _) = d.terminate();
    assert_eq!(status.code(), Some(0), "{}", d.log());
}

#[test]
fn settings_given_are_kept_and_a_re_executed_sync_works() {
    let env = TestEnv::new(&[]);
    let mut d = Daemon::start_with(&env, |c| {
        c.env("GLIBC_TUNABLES", "");
    });
    wait_running(&env, &d);
    let environ = environ_of(&d);
    assert!(environ.lines().any(|l| l == "GLIBC_TUNABLES="), "{environ}");
    assert!(!environ.contains("TRIALWATCH_MALLOC_TUNED"), "{environ}");
    let (status, _) = d.terminate();
    assert_eq!(status.code(), Some(0), "{}", d.log());
    // A plain sync of nothing still works, re-executed or not.
    let out = env
        .cmd(&["sync"])
        .env_remove("GLIBC_TUNABLES")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}
