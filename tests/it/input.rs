//! Black-box tests of what the real binary does with hostile or odd input: durations and times
//! out of range, a watch file with a byte-order mark, a config with thousands of mistakes, and
//! an inline secret in the config (refused, and its value shown nowhere, not even at trace level).

use std::process::{Output, Stdio};
use std::time::Duration;

use crate::support::daemon::{Daemon, wait_for, wait_running};
use crate::support::env::{TestEnv, fixture_as, stderr, stdout};

const SECRET: &str = "hunter2-secret";

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

/// `--since` and `--at` with values that used to overflow chrono (exit 101) are errors that
/// name the flag and a valid example; the extremes that are valid still work.
#[test]
fn out_of_range_durations_and_times_are_clear_errors_not_panics() {
    let id = "NCT09100001";
    let env = TestEnv::new(&[id]);
    env.server.put_study(fixture_as("NCT06171568.json", id));
    env.ok(&["sync"]);

    for (since, wanted) in [
        ("99999999999d", "too long"),
        ("1000000y", "too long"),
        ("99999999999999999999999d", "too long"),
        ("0000-01-01", "out of range"),
        ("-0001-06-01T00:00:00Z", "negative"),
        ("tomorrow", "neither a duration"),
    ] {
        let out = env.run(&["changes", &format!("--since={since}")]);
        let err = stderr(&out);
        assert_eq!(code(&out), Some(1), "--since {since}: {err}");
        assert!(err.contains(wanted), "--since {since}: {err}");
        assert!(err.contains("--since"), "--since {since}: {err}");
        assert!(!err.contains("panicked"), "--since {since}: {err}");
    }
    // A valid example is offered.
    let err = stderr(&env.run(&["changes", "--since", "99999999999d"]));
    assert!(err.contains("--since 7d"), "{err}");

    // `-5d` as its own word is taken by clap for an option (exit 64, its usage message); glued
    // to the flag it reaches trialwatch, which says it is negative.
    let out = env.run(&["changes", "--since", "-5d"]);
    assert_eq!(code(&out), Some(64), "{}", stderr(&out));
    let out = env.run(&["changes", "--since=-5d"]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--since `-5d` is negative"),
        "{}",
        stderr(&out)
    );

    // The last representable second is a valid (if empty) window.
    let out = env.ok(&["changes", "--since", "9999-12-31T23:59:59Z"]);
    assert!(out.contains("no field changes since 9999-12-31"), "{out}");

    // `show --at` is checked the same way.
    let out = env.run(&["show", id, "--at", "0000-01-01"]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--at `0000-01-01` is out of range")
            && stderr(&out).contains("--at 2026-05-12"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&[
        "show",
        id,
        "--at",
        "9999-12-31T23:59:59Z",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(id));
}

/// A watch-list file saved with a UTF-8 byte-order mark (Windows editors) is read normally.
#[test]
fn a_watch_file_with_a_byte_order_mark_is_read_normally() {
    let id = "NCT09100002";
    let env = TestEnv::with_options(&[], "", "backfill = false\nnct_file = \"list.txt\"", "");
    std::fs::write(
        env.dir.path().join("list.txt"),
        format!("\u{feff}{id}\n# a comment\n"),
    )
    .unwrap();
    env.server.put_study(fixture_as("NCT06171568.json", id));
    let out = env.run(&["check-config"]);
    assert_eq!(code(&out), Some(0), "{}{}", stdout(&out), stderr(&out));
    let out = env.ok(&["sync"]);
    assert!(out.contains("1 new version,"), "{out}");
    assert!(env.ok(&["history", id]).contains(id));
}

/// 10,000 bad IDs: the message lists the first 20 and counts the rest, it is not megabytes.
#[test]
fn a_config_with_thousands_of_mistakes_lists_twenty_and_a_count() {
    let bad: Vec<String> = (0..10_000).map(|i| format!("NOPE{i}")).collect();
    let refs: Vec<&str> = bad.iter().map(String::as_str).collect();
    let env = TestEnv::new(&refs);
    let out = env.run(&["check-config"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(code(&out), Some(1), "{}", &all[..all.len().min(2000)]);
    assert!(all.len() < 10_000, "{} bytes", all.len());
    assert!(all.contains("(10000 problems)"), "{all}");
    assert!(all.contains("`watch.nct_ids[0]`: `NOPE0`"), "{all}");
    assert!(all.contains("`watch.nct_ids[19]`"), "{all}");
    assert!(!all.contains("`watch.nct_ids[20]`"), "{all}");
    assert!(
        all.contains("and 9980 more problems (fix these first)"),
        "{all}"
    );
}

/// Everything a run printed, both streams.
fn all_output(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// An inline `password` under `[smtp]` (or `secret` in a subscription) is refused with the fix,
/// and the value is in no output of `check-config` or `sync`, even at trace level; a misspelt
/// secret key and a broken TOML line do not echo it either.
#[test]
fn an_inline_secret_is_refused_and_never_shown() {
    let smtp = "[smtp]\nhost = \"localhost\"\nfrom = \"tw@example.org\"\nusername = \"u\"\n";
    let cases = [
        (
            format!("{smtp}password = \"{SECRET}\"\n"),
            "`smtp.password` is not allowed",
        ),
        (
            format!(
                "[[subscription]]\nwebhook = \"http://127.0.0.1:9/hook\"\nsecret = \"{SECRET}\"\n"
            ),
            "`subscription[0].secret` is not allowed",
        ),
        (
            format!("{smtp}pasword = \"{SECRET}\"\n"),
            "unknown field `pasword`",
        ),
        (
            format!("{smtp}smtp_password = \"{SECRET}\" x\n"),
            "TOML error at line",
        ),
    ];
    for (tail, wanted) in &cases {
        let env = TestEnv::with_config(&[], "", tail);
        for args in [
            &["--log-level", "trace", "check-config"][..],
            &["--log-level", "trace", "sync"][..],
        ] {
            let out = env.run(args);
            let all = all_output(&out);
            assert_eq!(code(&out), Some(1), "{args:?} {tail}: {all}");
            assert!(all.contains(wanted), "{args:?} {tail}: {all}");
            assert!(!all.contains(SECRET), "{args:?} {tail}: {all}");
        }
    }
    // The fix is spelt out.
    let env = TestEnv::with_config(&[], "", &cases[0].0);
    let err = stderr(&env.run(&["check-config"]));
    assert!(
        err.contains("password_file = ") && err.contains("password_env = "),
        "{err}"
    );
    let env = TestEnv::with_config(&[], "", &cases[1].0);
    let err = stderr(&env.run(&["check-config"]));
    assert!(err.contains("secret_file = "), "{err}");
}

/// A SIGHUP reload of a config with an inline password keeps the old config and logs why,
/// without the value, at trace level.
#[test]
fn a_sighup_reload_with_an_inline_password_never_logs_it() {
    let env = TestEnv::new(&[]);
    let log = env.dir.path().join("daemon-trace.log");
    let mut cmd = env.cmd(&["--log-level", "trace", "daemon"]);
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("RUNTIME_DIRECTORY");
    let d = Daemon {
        child: cmd.spawn().unwrap(),
        log,
    };
    wait_running(&env, &d);
    let good = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!(
            "{good}\n[smtp]\nhost = \"localhost\"\nfrom = \"tw@example.org\"\nusername = \"u\"\npassword = \"{SECRET}\"\n"
        ),
    )
    .unwrap();
    d.signal("HUP");
    wait_for(
        Duration::from_secs(10),
        "the reload error in the log",
        || {
            d.log()
                .contains("could not be reloaded; keeping the one in use")
                .then_some(())
        },
    );
    let logged = d.log();
    assert!(logged.contains("smtp.password"), "{logged}");
    assert!(!logged.contains(SECRET), "{logged}");
    // Forwarded commands' output does not show it either.
    let out = env.run(&["--log-level", "trace", "status"]);
    assert!(!all_output(&out).contains(SECRET), "{}", all_output(&out));
}
