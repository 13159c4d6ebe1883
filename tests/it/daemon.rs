//! Black-box tests of `trialwatch daemon`: the real binary as a child process against the fake
//! CT.gov server, with a cron that fires every second, a temporary data directory, and real
//! signals (`kill -TERM`, `kill -HUP`). Every wait polls with a deadline instead of sleeping.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::daemon::{Daemon, EVERY_SECOND, STOP_DEADLINE, wait_for, wait_running};
use crate::support::env::{TestEnv, edit, fixture_as, stderr, stdout};
use crate::support::fake_ctgov::Fault;
use crate::support::webhook_receiver::WebhookReceiver;

/// `trialwatch history NCT --json`, once it lists at least `n` versions.
fn wait_versions(env: &TestEnv, d: &Daemon, nct: &str, n: usize) -> Value {
    wait_for(
        Duration::from_secs(20),
        &format!("{n} versions of {nct}"),
        || {
            let out = env.run(&["history", nct, "--json"]);
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            let len = v
                .as_array()
                .or_else(|| v["versions"].as_array())
                .map(|a| a.len())?;
            (len >= n).then_some(v)
        },
    );
    let _ = d;
    serde_json::from_slice(&env.run(&["history", nct, "--json"]).stdout).unwrap()
}

fn write_config(env: &TestEnv, watch: &[&str]) {
    let text = std::fs::read_to_string(&env.config).unwrap();
    let ids: Vec<String> = watch.iter().map(|s| format!("{s:?}")).collect();
    let start = text.find("nct_ids = [").unwrap();
    let end = start + text[start..].find(']').unwrap() + 1;
    let new = format!(
        "{}nct_ids = [{}]{}",
        &text[..start],
        ids.join(", "),
        &text[end..]
    );
    std::fs::write(&env.config, new).unwrap();
}

/// The daemon syncs on schedule, every CLI command works through it while it runs (`history`,
/// `subscribe`, `watch add`, `sync`, `status`), a record changed on CT.gov (with a new
/// `dataTimestamp`) becomes a new version on the next scheduled run and
/// an alert at the subscriber's webhook, and SIGTERM stops it with exit 0 and a consistent store.
#[test]
fn daemon_syncs_on_schedule_and_serves_cli_commands() {
    let a = "NCT09000001";
    let env = TestEnv::with_config(&[a], "", EVERY_SECOND);
    let v1 = fixture_as("NCT03418623.json", a);
    env.server.put_study(v1.clone());
    let mut d = Daemon::start(&env);
    let st = wait_running(&env, &d);
    assert_eq!(st["outbox"]["pending"], json!(0), "{st}");

    wait_versions(&env, &d, a, 1);
    // The version is visible as soon as its batch is committed; the run's summary a moment
    // later, when the run ends (seen missing once under a loaded machine's full test run).
    let st = wait_for(Duration::from_secs(10), "the first run's summary", || {
        let st = env.json(&["status", "--json"]);
        st["last_sync"]["requested"].is_u64().then_some(st)
    });
    assert!(st["last_sync"]["requested"].as_u64() >= Some(1), "{st}");
    assert!(st["next_sync"].is_string(), "{st}");
    assert_eq!(
        st["ctgov_data_timestamp"],
        json!("2026-09-04T09:00:06"),
        "{st}"
    );
    let text = env.ok(&["status"]);
    assert!(
        text.contains(&format!("daemon: running (PID {}", d.pid())),
        "{text}"
    );

    // `subscribe` works through the daemon too; the next change reaches the webhook.
    let sink = WebhookReceiver::start();
    let out = env.ok(&["subscribe", "webhook", &sink.url("/hook")]);
    assert!(out.starts_with("subscribed sub-"), "{out}");

    // CT.gov posts a change today and loads it: the next run fetches the watch list.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let v2 = edit(&v1, |p| {
        p["statusModule"]["overallStatus"] = json!("TERMINATED");
        p["statusModule"]["lastUpdatePostDateStruct"]["date"] = json!(today);
    });
    env.server.put_study(v2);
    env.server.set_data_timestamp("2026-09-05T09:00:05");
    wait_versions(&env, &d, a, 2);
    // A moved dataTimestamp fetches the whole watch list (CT.gov edits records without moving
    // LastUpdatePostDate, so asking only for what that date says moved would miss some).
    assert!(
        !env.server
            .requests()
            .iter()
            .any(|r| r.contains("LastUpdatePostDate")),
        "an incremental query was sent: {:?}",
        env.server.requests()
    );
    let diff = env.ok(&["diff", a]);
    assert!(diff.contains("TERMINATED"), "{diff}");
    // The daemon delivers the alert the new version owes, right after the sync.
    sink.wait_for(1, Duration::from_secs(20));
    let body = sink.requests()[0].json();
    assert!(body.to_string().contains("TERMINATED"), "{:?}", body);
    let st = env.json(&["status", "--json"]);
    assert_eq!(st["outbox"]["pending"], json!(0), "{st}");
    assert_eq!(st["outbox"]["dead"], json!(0), "{st}");

    // Writing commands work too, through the daemon.
    let b = "NCT09000002";
    env.server.put_study(fixture_as("NCT06171568.json", b));
    let out = env.ok(&["watch", "add", b]);
    assert!(out.contains(&format!("watching {b}")), "{out}");
    wait_versions(&env, &d, b, 1);
    // `sync` runs in the daemon too, one at a time with the scheduled syncs.
    let out = env.ok(&["sync"]);
    assert!(out.contains("synced 2 trials"), "{out}");
    // A command's failure keeps its exit code and message through the socket.
    let out = env.run(&["history", "NCT09999999"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("NCT09999999"), "{}", stderr(&out));

    let (status, took) = d.terminate();
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(took < STOP_DEADLINE, "took {took:?}");
    let out = env.run(&["verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // The stopped daemon left a heads file for one-trial reads, and it is current: what it
    // gives equals what the index gives once it is gone.
    let heads = env.data_dir().join("heads");
    assert!(heads.exists(), "no heads file after the daemon stopped");
    let from_heads = env.json(&["history", a, "--json"]);
    assert_eq!(from_heads.as_array().map(Vec::len), Some(2), "{from_heads}");
    std::fs::remove_file(&heads).unwrap();
    assert_eq!(env.json(&["history", a, "--json"]), from_heads);
    // With no daemon the CLI opens the store itself.
    let st = env.json(&["status", "--json"]);
    assert_eq!(st["daemon"]["running"], json!(false), "{st}");
}

/// After a sync that fetched at least `reexec_after_trials` trials the daemon re-executes itself
/// in place once idle, to give back the sync's memory, and once more when that image has
/// settled: same PID, still serving commands, state and store kept, and no more (the syncs
/// after it fetch nothing).
#[test]
fn a_large_sync_is_followed_by_one_reexec_in_place() {
    let (a, b) = ("NCT09000011", "NCT09000012");
    let env = TestEnv::with_config(
        &[a, b],
        "",
        "[schedule]\ncron = \"* * * * * *\"\nreexec_after_trials = 2\n",
    );
    env.server.put_study(fixture_as("NCT03418623.json", a));
    env.server.put_study(fixture_as("NCT06171568.json", b));
    let mut d = Daemon::start(&env);
    wait_for(Duration::from_secs(30), "the re-exec", || {
        d.log()
            .contains("resumed after re-executing itself")
            .then_some(())
    });
    // The same process (the test's child) answers, under the same PID.
    let st = wait_running(&env, &d);
    assert_eq!(st["last_sync"]["fetched"], json!(2), "{st}");
    assert_eq!(
        wait_versions(&env, &d, a, 1).as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        wait_versions(&env, &d, b, 1).as_array().map(Vec::len),
        Some(1)
    );
    // Once settled, the image re-executes once more (sled's cleaning after the first open of
    // the freshly written store stays in its memory otherwise), and answers as before.
    wait_for(Duration::from_secs(60), "the settled re-exec", || {
        d.log()
            .contains("re-executing once more, now that the store has settled")
            .then_some(())
    });
    let st = wait_running(&env, &d);
    assert_eq!(st["last_sync"]["fetched"], json!(2), "{st}");
    assert_eq!(st["daemon"]["pid"], json!(d.pid()), "{st}");
    // Scheduled runs go on every second after it, and fetch nothing: no further re-exec.
    std::thread::sleep(Duration::from_secs(8));
    let log = d.log();
    assert_eq!(log.matches("re-executing in place").count(), 1, "{log}");
    assert_eq!(log.matches("re-executing once more").count(), 1, "{log}");
    assert!(log.matches("scheduled sync skipped").count() >= 1, "{log}");
    let (status, _) = d.terminate();
    assert_eq!(status.code(), Some(0), "{}", d.log());
    let out = env.run(&["verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// SIGHUP re-reads the configuration: a broken file is reported and the old one kept; a new
/// watch list is picked up and its new trial synced (even though CT.gov's data did not move).
#[test]
fn sighup_reloads_the_watch_list_and_keeps_a_good_config_over_a_broken_one() {
    let (a, b) = ("NCT09000011", "NCT09000012");
    let env = TestEnv::with_config(&[a], "", EVERY_SECOND);
    env.server.put_study(fixture_as("NCT06171568.json", a));
    env.server.put_study(fixture_as("NCT03418623.json", b));
    let mut d = Daemon::start(&env);
    wait_running(&env, &d);
    wait_versions(&env, &d, a, 1);

    let good = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, format!("{good}\n[schedule]\ncron = \"bad\"\n")).unwrap();
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
    assert!(d.log().contains("schedule"), "{}", d.log());
    // Still running, on the old config.
    assert!(d.child.try_wait().unwrap().is_none(), "{}", d.log());

    std::fs::write(&env.config, &good).unwrap();
    write_config(&env, &[a, b]);
    d.signal("HUP");
    wait_versions(&env, &d, b, 1);
    assert!(d.log().contains("configuration reloaded"), "{}", d.log());
}

/// A sync still running at the next fire times is not started twice. SIGTERM while it is
/// fetching: the fetch is abandoned, the store writes already made are kept, the daemon exits 0
/// well within its deadline, and `trialwatch verify` is clean.
#[test]
fn sigterm_during_a_sync_exits_zero_within_the_deadline_and_leaves_the_store_consistent() {
    // 150 trials = two batches of 100 and 50; the second batch's request hangs.
    let ids: Vec<String> = (1..=150).map(|n| format!("NCT091{n:05}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let env = TestEnv::with_config(&refs, "", EVERY_SECOND);
    let raw = fixture_as("NCT06171568.json", "NCT09199999");
    for id in &ids {
        env.server.put_study(raw.replace("NCT09199999", id));
    }
    env.server
        .push_fault_for("NCT09100101", Fault::Delay(Duration::from_secs(4)));
    let mut d = Daemon::start(&env);
    wait_for(Duration::from_secs(20), "the second batch request", || {
        env.server
            .requests()
            .iter()
            .any(|r| r.contains("NCT09100101"))
            .then_some(())
    });
    // The next fire times come while this sync hangs: none starts a second one.
    wait_for(
        Duration::from_secs(10),
        "a fire time during the sync",
        || d.log().contains("not starting another").then_some(()),
    );
    assert_eq!(
        d.log().matches("scheduled sync started").count(),
        1,
        "{}",
        d.log()
    );
    let (status, took) = d.terminate();
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(took < STOP_DEADLINE, "took {took:?}\n{}", d.log());
    let out = env.run(&["verify", "--json"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let rep: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["problems"], json!([]), "{rep}");
    assert!(
        d.log().contains("scheduled sync abandoned for shutdown"),
        "{}",
        d.log()
    );
}

/// With `NOTIFY_SOCKET` set the daemon tells systemd `READY=1` (with a STATUS), sends
/// `WATCHDOG=1` at half `WATCHDOG_USEC`, and `STOPPING=1` on SIGTERM. A second daemon on the
/// same data directory is refused with a message naming the first one's PID.
#[test]
fn notify_protocol_and_one_daemon_per_data_directory() {
    let env = TestEnv::with_config(&[], "", EVERY_SECOND);
    let sock_path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    // Read every datagram as it comes, like systemd does.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
    }
    let mut d = Daemon::start_with(&env, |c| {
        c.env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "400000");
    });
    let recv_until = |pred: &dyn Fn(&str) -> bool, what: &str| {
        wait_for(Duration::from_secs(20), what, || {
            seen.lock().unwrap().iter().any(|m| pred(m)).then_some(())
        })
    };
    recv_until(&|m| m.starts_with("READY=1\nSTATUS="), "READY=1");
    recv_until(&|m| m == "WATCHDOG=1", "WATCHDOG=1");

    let second = env.run(&["daemon"]);
    assert_eq!(second.status.code(), Some(1));
    let msg = stderr(&second);
    assert!(
        msg.contains(&format!(
            "another trialwatch daemon (PID {}) already runs",
            d.pid()
        )),
        "{msg}"
    );

    let (status, _) = d.terminate();
    assert_eq!(status.code(), Some(0), "{}", d.log());
    recv_until(&|m| m.starts_with("STOPPING=1"), "STOPPING=1");
    assert!(!Path::new(&env.data_dir().join("control.sock")).exists());
}

/// `check-config` shows the schedule and its next three fire times (UTC), and a bad cron
/// expression is an error naming the key and a valid example.
#[test]
fn check_config_prints_the_next_three_fire_times() {
    let env = TestEnv::with_config(&[], "", "[schedule]\ncron = \"0 30 13 * * *\"\n");
    let out = env.ok(&["check-config"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("schedule:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(line.matches("13:30:00 UTC").count(), 3, "{line}");

    // A crontab line (five fields) is accepted as second 0; four fields are not a schedule.
    let env = TestEnv::with_config(&[], "", "[schedule]\ncron = \"30 13 * * *\"\n");
    let out = env.ok(&["check-config"]);
    assert!(out.contains("\"0 30 13 * * *\""), "{out}");
    let env = TestEnv::with_config(&[], "", "[schedule]\ncron = \"30 13 * *\"\n");
    let out = env.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`schedule.cron`"), "{}", stderr(&out));
}
