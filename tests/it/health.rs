//! Sync health through the daemon: a schedule firing every second against a fake CT.gov that
//! rejects the watched trial, with the clock frozen on a chosen weekday or weekend day; the
//! daemon says once that syncing is unhealthy after `[alerts] health_after` failed runs, says
//! when it recovers, and does not count failures at a weekend.

use std::time::Duration;

use crate::support::daemon::{Daemon, EVERY_SECOND, wait_for, wait_running};
use crate::support::env::{TestEnv, fixture_as};
use crate::support::free_port;
use crate::support::smtp_server::{SmtpOptions, SmtpServer};
use crate::support::webhook_receiver::WebhookReceiver;

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

/// Health alerts through the real outbox: a daemon whose scheduled syncs keep failing on a
/// business day sends one "could not sync" alert (count, since when, last error) to the email
/// and webhook subscriptions that asked for `--event health`, none for each further failure,
/// and one more when a sync works again; a subscription without `--event health` gets nothing.
#[test]
fn health_alerts_reach_health_subscribers_once_down_and_once_recovered() {
    let a = "NCT09000007";
    let port = free_port();
    let tail = format!(
        "{EVERY_SECOND}[alerts]\nhealth_after = 3\nretry_base_secs = 0.05\nretry_cap_secs = 0.2\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n\
         from = \"trialwatch@example.org\"\n"
    );
    let env = TestEnv::with_config(&[a], "", &tail);
    let smtp = SmtpServer::start_on(port, env.dir.path(), None, SmtpOptions::plain());
    let hook = WebhookReceiver::start();
    let changes_only = WebhookReceiver::start();
    env.ok(&["subscribe", "email", "ops@example.org", "--event", "health"]);
    env.ok(&[
        "subscribe",
        "webhook",
        &hook.url("/health"),
        "--event",
        "health",
    ]);
    env.ok(&["subscribe", "webhook", &changes_only.url("/changes")]);
    env.server.put_study(fixture_as("NCT03418623.json", a));
    env.server.reject_id(a);

    let mut d = Daemon::start_with(&env, |c| {
        c.env("TRIALWATCH_NOW", "2026-12-02T10:00:00Z");
    });
    wait_running(&env, &d);
    let mails = smtp.wait_for(1);
    hook.wait_for(1, Duration::from_secs(30));
    // Header lines come folded; unfold them to read the subject.
    let unfold = |m: &crate::support::smtp_server::Received| m.text().replace("\r\n ", " ");
    let mail = unfold(&mails[0]);
    assert!(
        mail.contains("Subject: [trialwatch] trialwatch could not sync: 3 scheduled syncs in a row failed since 2026-12-02 10:00 UTC"),
        "{mail}"
    );
    let body = hook.requests()[0].json();
    assert_eq!(body["event"]["kind"], "health", "{body}");
    assert!(
        body.get("nct_id").is_none(),
        "a health alert names no trial: {body}"
    );
    let summary = body["event"]["summary"].as_str().unwrap().to_string();
    assert!(
        summary.contains("3 scheduled syncs in a row failed since 2026-12-02 10:00 UTC: "),
        "{summary}"
    );
    assert!(
        summary.contains(a),
        "the last error names what failed: {summary}"
    );

    // Further failures send nothing more.
    let before = runs(&d);
    wait_runs(&d, before + 3);
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(hook.count(), 1);

    env.server.accept_id(a);
    wait_log(&d, RECOVERED, 1);
    let mails = smtp.wait_for(2);
    hook.wait_for(2, Duration::from_secs(30));
    let mail = unfold(&mails[1]);
    assert!(
        mail.contains("Subject: [trialwatch] trialwatch is syncing again"),
        "{mail}"
    );
    assert!(
        mail.contains("scheduled syncs in a row had failed since 2026-12-02 10:00 UTC"),
        "{mail}"
    );
    let body = hook.requests()[1].json();
    assert_eq!(body["event"]["kind"], "health");
    assert_ne!(body["event_id"], hook.requests()[0].json()["event_id"]);
    // A few more healthy runs: still two of each, and nothing for the changes-only subscriber.
    let before = runs(&d);
    wait_runs(&d, before + 2);
    let (status, _) = d.terminate();
    assert!(status.success());
    assert_eq!(smtp.messages().len(), 2);
    assert_eq!(hook.count(), 2);
    assert_eq!(changes_only.count(), 0, "{:?}", changes_only.requests());
    let outbox = env.json(&["outbox", "--json"]);
    assert_eq!(outbox.as_array().map(Vec::len), Some(0), "{outbox}");
}
