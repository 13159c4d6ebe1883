//! Habits of the people who run trialwatch: times in their own zone on request (`--tz ZONE` or
//! `TZ`) in human output while every `--json` stays UTC, and an unknown zone refused as a usage
//! error.

use crate::support::env::{TestEnv, edit, fixture, stderr, stdout};

const ID: &str = "NCT03418623";

/// A store with two versions of one trial, detected at a known time (10:00 UTC, a winter day,
/// so New York is 05:00 EST).
fn env_with_history() -> TestEnv {
    let env = TestEnv::new(&[ID]);
    let raw = fixture(&format!("{ID}.json"));
    env.server.put_study(raw.clone());
    let sync_at = |at: &str| {
        let out = env
            .cmd(&["sync"])
            .env("TRIALWATCH_NOW", at)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    sync_at("2026-12-01T10:00:00Z");
    env.server.put_study(edit(&raw, |p| {
        p["statusModule"]["overallStatus"] = serde_json::json!("SUSPENDED")
    }));
    sync_at("2026-12-02T10:00:00Z");
    env
}

fn run_with(env: &TestEnv, args: &[&str], tz: Option<&str>) -> std::process::Output {
    let mut c = env.cmd(args);
    if let Some(tz) = tz {
        c.env("TZ", tz);
    }
    c.output().unwrap()
}

#[test]
fn tz_flag_and_env_shift_human_times_and_leave_json_in_utc() {
    let env = env_with_history();
    let utc = env.ok(&["history", ID]);
    assert!(utc.contains("2026-12-02 10:00 UTC"), "{utc}");
    let ny = env.ok(&["--tz", "America/New_York", "history", ID]);
    assert!(ny.contains("2026-12-02 05:00 EST"), "{ny}");
    assert!(!ny.contains("10:00 UTC"), "{ny}");
    // The same from TZ, and a flag wins over TZ.
    let from_env = run_with(&env, &["history", ID], Some("America/New_York"));
    assert_eq!(stdout(&from_env), ny);
    let flag_wins = run_with(
        &env,
        &["--tz", "UTC", "history", ID],
        Some("America/New_York"),
    );
    assert_eq!(stdout(&flag_wins), utc);
    // `changes` names the zone when it is not UTC.
    let since = ["changes", "--since", "2026-11-01"];
    let changes = env.ok(&since);
    assert!(changes.contains("2026-12-02 10:00  "), "{changes}");
    let mut args = vec!["--tz", "Asia/Tokyo"];
    args.extend(since);
    let tokyo = env.ok(&args);
    assert!(tokyo.contains("2026-12-02 19:00 JST"), "{tokyo}");

    // --json is byte for byte the same whatever the zone.
    for json_args in [
        vec!["history", ID, "--json"],
        vec!["changes", "--since", "2026-11-01", "--json"],
        vec!["status", "--json"],
        vec!["outbox", "--json"],
    ] {
        let plain = env.ok(&json_args);
        let mut zoned = vec!["--tz", "America/New_York"];
        zoned.extend(json_args.iter().copied());
        let other = run_with(&env, &zoned, Some("Asia/Tokyo"));
        assert!(other.status.success(), "{}", stderr(&other));
        // `status` reports the store's size, which reading it does not change.
        assert_eq!(stdout(&other), plain, "{json_args:?}");
    }
    let h = env.json(&["--tz", "America/New_York", "history", ID, "--json"]);
    assert!(h.to_string().contains("2026-12-02T10:00:00"), "{h}");
}

#[test]
fn an_unknown_zone_is_a_usage_error_naming_it() {
    let env = TestEnv::new(&[ID]);
    let out = env.run(&["--tz", "Mars/Olympus", "status"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--tz") && err.contains("`Mars/Olympus`"),
        "{err}"
    );
    assert!(err.contains("America/New_York"), "the fix: {err}");
    let out = run_with(&env, &["status"], Some("Nowhere/Land"));
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("TZ") && err.contains("`Nowhere/Land`"),
        "{err}"
    );
    assert!(err.contains("unset TZ"), "{err}");
}

/// The SMTP password is an optional credential: a daemon whose `$CREDENTIALS_DIRECTORY` lacks
/// it (systemd started it without the file) starts, syncs, warns once naming the credential and
/// the fix, and keeps the email alert in the outbox with that reason; `check-config` says where
/// the password would come from. The unit asks for it in the form that does not fail the start.
#[test]
fn a_missing_smtp_credential_does_not_stop_the_daemon() {
    use crate::support::daemon::{Daemon, EVERY_SECOND, wait_for, wait_running};
    use std::time::Duration;
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/trialwatch.service"),
    )
    .unwrap();
    let creds: Vec<&str> = unit
        .lines()
        .filter(|l| l.starts_with("LoadCredential"))
        .collect();
    assert_eq!(
        creds,
        ["LoadCredential=smtp-password"],
        "by name, never by path"
    );

    let port = crate::support::free_port();
    let tail = format!(
        "{EVERY_SECOND}[alerts]\nretry_base_secs = 0.05\nretry_cap_secs = 0.2\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nusername = \"tw\"\n\
         from = \"trialwatch@example.org\"\n[[subscription]]\nemail = \"ops@example.org\"\n"
    );
    let env = TestEnv::with_config(&[ID], "", &tail);
    let creds_dir = tempfile::tempdir().unwrap();
    let out = env
        .cmd(&["check-config"])
        .env("CREDENTIALS_DIRECTORY", creds_dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("smtp password: from the systemd credential `smtp-password`"),
        "{text}"
    );
    assert!(
        text.contains("/etc/credstore/smtp-password"),
        "the fix: {text}"
    );

    let raw = fixture(&format!("{ID}.json"));
    env.server.put_study(raw.clone());
    let mut d = Daemon::start_with(&env, |c| {
        c.env("CREDENTIALS_DIRECTORY", creds_dir.path());
    });
    wait_running(&env, &d);
    wait_for(Duration::from_secs(30), "a first sync", || {
        d.log().contains("scheduled sync finished").then_some(())
    });
    let log = d.log();
    assert_eq!(
        log.matches("the SMTP password (the systemd credential `smtp-password`) is not available")
            .count(),
        1,
        "one warning: {log}"
    );
    assert!(log.contains("/etc/credstore/smtp-password"), "{log}");
    // A change owes the subscriber an email: it waits in the outbox with the reason.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    env.server.put_study(edit(&raw, |p| {
        p["statusModule"]["overallStatus"] = serde_json::json!("TERMINATED");
        p["statusModule"]["lastUpdatePostDateStruct"]["date"] = serde_json::json!(today);
    }));
    env.server.set_data_timestamp("2026-09-05T09:00:05");
    let entry = wait_for(
        Duration::from_secs(30),
        "the alert's failed attempt",
        || {
            let o = env.json(&["outbox", "--json"]);
            o.as_array()
                .and_then(|a| a.first().cloned())
                .filter(|e| e["last_error"].is_string())
        },
    );
    let why = entry["last_error"].as_str().unwrap();
    assert!(
        why.contains("smtp-password") && why.contains("not available"),
        "{why}"
    );
    assert_eq!(entry["state"], "pending", "kept and retried: {entry}");
    let (status, _) = d.terminate();
    assert!(status.success(), "{}", d.log());
}

/// A command handed to a running daemon shows times in the caller's zone (its `TZ` travels as
/// `--tz`), not the daemon's, and its `--json` stays UTC.
#[test]
fn a_forwarded_command_shows_the_callers_zone() {
    use crate::support::daemon::{Daemon, wait_running};
    let env = env_with_history();
    let mut d = Daemon::start(&env);
    wait_running(&env, &d);
    let out = run_with(&env, &["history", ID], Some("America/New_York"));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("2026-12-02 05:00 EST"), "{text}");
    assert!(
        d.log().contains("running a forwarded command"),
        "not forwarded: {}",
        d.log()
    );
    let json = run_with(&env, &["history", ID, "--json"], Some("America/New_York"));
    assert!(
        stdout(&json).contains("2026-12-02T10:00:00"),
        "{}",
        stdout(&json)
    );
    let (status, _) = d.terminate();
    assert!(status.success());
}

/// A sync handed to a running daemon draws its progress in the user's terminal (here a real
/// pseudo-terminal from util-linux `script`), from the daemon's progress events; piped, the same
/// command prints its summary and no bar; and the bar never goes to the daemon's log.
#[test]
fn a_forwarded_sync_draws_its_progress_in_the_users_terminal() {
    use crate::support::daemon::{Daemon, wait_running};
    let env = TestEnv::new(&[ID]);
    env.server.put_study(fixture(&format!("{ID}.json")));
    let mut d = Daemon::start(&env);
    wait_running(&env, &d);

    // Piped: the summary, no bar.
    let out = env.run(&["sync"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("synced 1 trial"), "{}", stdout(&out));
    assert!(!stderr(&out).contains("syncing:"), "{}", stderr(&out));

    // On a terminal: the bar, drawn by this CLI from the daemon's events.
    let cmd = format!(
        "{} --config {} sync",
        crate::support::env::BIN,
        env.config.display()
    );
    let tty = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env_remove("TZ")
        .env_remove("TRIALWATCH_NOW")
        .output()
        .expect("util-linux `script` (a pseudo-terminal)");
    let screen = String::from_utf8_lossy(&tty.stdout).into_owned();
    assert!(tty.status.success(), "{screen}");
    assert!(screen.contains("syncing: 1/1 trials"), "no bar: {screen:?}");
    assert!(screen.contains("synced 1 trial"), "{screen:?}");
    let log = d.log();
    assert!(
        log.matches("running a forwarded command").count() >= 2,
        "{log}"
    );
    assert!(
        !log.contains("syncing:"),
        "the bar reached the daemon's log: {log}"
    );
    let (status, _) = d.terminate();
    assert!(status.success());
}
