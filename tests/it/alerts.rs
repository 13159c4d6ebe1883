//! Black-box tests of subscriptions, severities and the outbox: the real binary against the
//! fake CT.gov server, a scriptable webhook receiver and a real SMTP server (aiosmtpd), all on
//! 127.0.0.1, with real CT.gov fixtures edited between syncs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::env::{TestEnv, edit, fixture, fixture_as, stderr, stdout};
use crate::support::free_port;
use crate::support::smtp_server::{SmtpOptions, SmtpServer};
use crate::support::webhook_receiver::{Recorded, Reply, WebhookReceiver};

/// Small retry settings so retries are due within a test's patience.
const FAST_ALERTS: &str =
    "[alerts]\nretry_base_secs = 0.05\nretry_cap_secs = 0.2\nwebhook_timeout_secs = 5\n";

const ID: &str = "NCT03418623";
const OTHER: &str = "NCT00973089";

fn with_status(raw: &str, status: &str) -> String {
    edit(raw, |p| p["statusModule"]["overallStatus"] = json!(status))
}

/// Wait out the test backoff (cap 0.2 s).
fn past_backoff() {
    std::thread::sleep(Duration::from_millis(350));
}

fn outbox(env: &TestEnv) -> Vec<Value> {
    env.json(&["outbox", "--json"]).as_array().unwrap().clone()
}

fn count_by_event(hits: &[Recorded]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for h in hits {
        *m.entry(h.event_id().to_string()).or_insert(0) += 1;
    }
    m
}

/// A status change reaches the subscriber to `status.overallStatus`, and nobody filtered to
/// other fields or other trials; the first snapshot alerts nobody.
#[test]
fn status_change_reaches_only_the_status_subscriber() {
    let env = TestEnv::with_config(&[ID, OTHER], "", FAST_ALERTS);
    let sink = WebhookReceiver::start();
    let v1 = fixture(&format!("{ID}.json"));
    env.server.put_study(v1.clone());
    env.server.put_study(fixture(&format!("{OTHER}.json")));
    let status = env.ok(&[
        "subscribe",
        "webhook",
        &sink.url("/status"),
        "--field",
        "status.overallStatus",
    ]);
    assert!(status.starts_with("subscribed sub-"), "{status}");
    env.ok(&[
        "subscribe",
        "webhook",
        &sink.url("/criteria"),
        "--field",
        "eligibility.criteria",
    ]);
    env.ok(&[
        "subscribe",
        "webhook",
        &sink.url("/other-trial"),
        "--nct",
        OTHER,
        "--field",
        "status.overallStatus",
    ]);
    env.ok(&[
        "subscribe",
        "webhook",
        &sink.url("/critical-only"),
        "--min-severity",
        "critical",
    ]);

    let out = env.ok(&["sync"]);
    assert!(out.contains("alerts: 0 enqueued"), "{out}");
    assert!(
        sink.requests().is_empty(),
        "first snapshots alerted someone"
    );

    env.server
        .put_study(with_status(&v1, "ACTIVE_NOT_RECRUITING"));
    let out = env.ok(&["sync"]);
    assert!(out.contains("alerts: 1 enqueued; 1 delivered"), "{out}");
    let hits = sink.requests();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let h = &hits[0];
    let body = h.json();
    assert_eq!(h.path(), "/status");
    assert!(h.event_id().starts_with("sub-") && h.event_id().ends_with(&format!(".{ID}.v2")));
    assert_eq!(body["event_id"], h.event_id());
    assert_eq!(body["nct_id"], ID);
    assert_eq!(body["version"], 2);
    assert_eq!(body["trial"]["overall_status"], "ACTIVE_NOT_RECRUITING");
    let changes = body["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["path"], "status.overallStatus");
    assert_eq!(changes[0]["old"], "COMPLETED");
    assert_eq!(changes[0]["new"], "ACTIVE_NOT_RECRUITING");
    assert_eq!(changes[0]["severity"], "notable");
    assert!(
        changes[0]["summary"]
            .as_str()
            .unwrap()
            .contains("ACTIVE_NOT_RECRUITING"),
        "{changes:?}"
    );
    assert!(outbox(&env).is_empty());

    // A stop is critical: now the critical-only subscriber hears too.
    env.server.put_study(with_status(&v1, "TERMINATED"));
    env.ok(&["sync"]);
    let mut paths: Vec<String> = sink
        .requests()
        .iter()
        .map(|h| h.path().to_string())
        .collect();
    paths.sort();
    assert_eq!(paths, ["/critical-only", "/status", "/status"]);
}

/// Severities and summaries of real-fixture edits in `diff`, `history` and `changes`, and the
/// `--min-severity` filter.
#[test]
fn severities_and_summaries_of_real_fixture_edits() {
    let env = TestEnv::new(&[ID]);
    let v1 = fixture(&format!("{ID}.json"));
    env.server.put_study(v1.clone());
    env.ok(&["sync"]);
    let v2 = edit(&v1, |p| {
        p["statusModule"]["overallStatus"] = json!("TERMINATED");
        p["statusModule"]["whyStopped"] = json!("Sponsor decision");
        p["statusModule"]["completionDateStruct"]["date"] = json!("2027-06-30");
        let n = p["designModule"]["enrollmentInfo"]["count"]
            .as_i64()
            .unwrap();
        p["designModule"]["enrollmentInfo"]["count"] = json!(n / 2);
        p["contactsLocationsModule"]["locations"]
            .as_array_mut()
            .unwrap()
            .push(json!({"facility": "Charité", "city": "Berlin", "country": "Germany"}));
        p["identificationModule"]["acronym"] = json!("NEWACRO");
    });
    env.server.put_study(v2);
    env.ok(&["sync"]);

    let d = env.json(&["diff", ID, "--json"]);
    let sev: BTreeMap<String, (String, String)> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                (
                    c["severity"].as_str().unwrap().to_string(),
                    c["summary"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(sev["status.overallStatus"].0, "critical", "{sev:?}");
    assert!(
        sev["status.overallStatus"].1.contains("TERMINATED"),
        "{sev:?}"
    );
    assert_eq!(sev["status.whyStopped"].0, "critical", "{sev:?}");
    assert_eq!(sev["status.completionDate"].0, "notable", "{sev:?}");
    assert_eq!(sev["design.enrollmentCount"].0, "notable", "{sev:?}");
    assert!(sev["design.enrollmentCount"].1.contains('%'), "{sev:?}");
    assert_eq!(sev["locations.charité|berlin||germany"].0, "notable");
    assert_eq!(sev["identification.acronym"].0, "minor");
    assert!(sev.values().all(|(_, s)| !s.is_empty()));

    let h = env.json(&["history", ID, "--json"]);
    let last = h.as_array().unwrap().last().unwrap();
    assert!(
        last["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["severity"].is_string() && c["summary"].is_string())
    );

    let crit = env.json(&[
        "changes",
        "--since",
        "1h",
        "--min-severity",
        "critical",
        "--json",
    ]);
    let mut crit_paths: Vec<&str> = crit
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    crit_paths.sort();
    assert_eq!(crit_paths, ["status.overallStatus", "status.whyStopped"]);
    let notable = env.json(&[
        "changes",
        "--since",
        "1h",
        "--min-severity",
        "notable",
        "--json",
    ]);
    assert_eq!(notable.as_array().unwrap().len(), 5, "{notable}");
    let bad = env.run(&["changes", "--min-severity", "urgent"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("`urgent` is not a severity"),
        "{}",
        stderr(&bad)
    );
}

/// The SMTP server is down during the sync: the alerts wait in the outbox and arrive, once
/// each, when it is back.
#[test]
fn smtp_down_during_sync_alerts_arrive_once_it_is_back() {
    let port = free_port();
    let tail = format!(
        "{FAST_ALERTS}[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n\
         from = \"trialwatch <trialwatch@example.org>\"\ntimeout_secs = 2\n\
         [[subscription]]\nemail = \"team@example.org\"\nfields = [\"status.overallStatus\"]\n"
    );
    let env = TestEnv::with_config(&[ID, OTHER], "", &tail);
    let a = fixture(&format!("{ID}.json"));
    let b = fixture(&format!("{OTHER}.json"));
    env.server.put_study(a.clone());
    env.server.put_study(b.clone());
    env.ok(&["sync"]);
    env.server.put_study(with_status(&a, "WITHDRAWN"));
    env.server.put_study(with_status(&b, "SUSPENDED"));
    let out = env.ok(&["sync"]);
    assert!(
        out.contains("alerts: 2 enqueued; 0 delivered, 2 waiting"),
        "{out}"
    );
    let pending = outbox(&env);
    assert_eq!(pending.len(), 2);
    // The first alert failed; the one behind it waits for the same retry without its own try.
    assert!(pending.iter().all(|e| e["state"] == "pending"));
    let attempts: Vec<u64> = pending
        .iter()
        .map(|e| e["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts.iter().sum::<u64>(), 1, "{pending:?}");
    assert!(
        pending.iter().any(|e| e["last_error"]
            .as_str()
            .is_some_and(|m| m.contains("127.0.0.1"))),
        "{pending:?}"
    );

    let smtp = SmtpServer::start_on(port, env.dir.path(), None, SmtpOptions::plain());
    past_backoff();
    let out = env.ok(&["outbox", "deliver"]);
    assert!(out.contains("2 delivered"), "{out}");
    past_backoff();
    env.ok(&["outbox", "deliver"]);
    env.ok(&["sync"]);
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2, "{mails:?}");
    let mut ids: Vec<String> = mails.iter().map(|m| m.message_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2);
    assert!(mails.iter().all(|m| m.to() == ["team@example.org"]));
    assert!(
        mails
            .iter()
            .any(|m| m.message_id().contains(&format!(".{ID}.v2@")))
    );
    assert!(outbox(&env).is_empty());
}

/// A webhook answering 500 twice, then 200: delivered once (three tries, one key).
#[test]
fn webhook_500_twice_then_200_is_delivered_once() {
    let env = TestEnv::with_config(&[ID], "", FAST_ALERTS);
    let sink = WebhookReceiver::start();
    sink.script([Reply::status(500), Reply::status(500)]);
    let v1 = fixture(&format!("{ID}.json"));
    env.server.put_study(v1.clone());
    env.ok(&["sync"]);
    env.ok(&["subscribe", "webhook", &sink.url("/h")]);
    env.server.put_study(with_status(&v1, "RECRUITING"));
    let out = env.ok(&["sync"]);
    assert!(out.contains("1 waiting to be retried"), "{out}");
    for _ in 0..3 {
        past_backoff();
        let _ = env.run(&["outbox", "deliver"]);
    }
    let hits = sink.requests();
    let replies: Vec<Reply> = hits.iter().map(|h| h.reply.clone()).collect();
    assert_eq!(
        replies,
        [Reply::status(500), Reply::status(500), Reply::status(200)]
    );
    assert_eq!(
        count_by_event(&hits).len(),
        1,
        "one idempotency key across retries"
    );
    assert!(outbox(&env).is_empty());
}

/// A permanent rejection makes a dead letter, shown by `outbox`, which `outbox retry` sends.
#[test]
fn permanent_rejection_is_a_dead_letter_until_retried() {
    let env = TestEnv::with_config(&[ID], "", FAST_ALERTS);
    let sink = WebhookReceiver::start();
    sink.script([Reply::status(404)]);
    let v1 = fixture(&format!("{ID}.json"));
    env.server.put_study(v1.clone());
    env.ok(&["sync"]);
    env.ok(&["subscribe", "webhook", &sink.url("/gone")]);
    env.server.put_study(with_status(&v1, "RECRUITING"));
    let out = env.ok(&["sync"]);
    assert!(out.contains("1 dead letters"), "{out}");
    let dead = outbox(&env);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["state"], "dead");
    assert!(
        dead[0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("permanent:")
    );
    let text = env.ok(&["outbox"]);
    assert!(text.contains("0 pending, 1 dead"), "{text}");
    // Dead letters are not retried by themselves.
    past_backoff();
    env.ok(&["outbox", "deliver"]);
    assert_eq!(sink.count(), 1);

    let id = dead[0]["id"].as_str().unwrap();
    let out = env.ok(&["outbox", "retry", id]);
    assert!(
        out.contains("1 alerts requeued") && out.contains("1 delivered"),
        "{out}"
    );
    assert!(outbox(&env).is_empty());
    let hits = sink.requests();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].event_id(), hits[1].event_id());

    // drop: another dead letter, discarded by hand.
    sink.script([Reply::status(410)]);
    env.server.put_study(with_status(&v1, "COMPLETED"));
    env.ok(&["sync"]);
    let dead = outbox(&env);
    assert_eq!(dead.len(), 1);
    env.ok(&["outbox", "drop", dead[0]["id"].as_str().unwrap()]);
    assert!(outbox(&env).is_empty());
}

/// Crash safety: trialwatch is killed (-9) while the receiver holds the request, i.e. after the
/// send and before the acknowledgement. The next delivery repeats the alert with the same key:
/// the receiver sees it twice at most, and never zero times.
#[test]
fn kill_between_send_and_ack_repeats_but_never_loses() {
    let env = TestEnv::with_config(&[ID], "", FAST_ALERTS);
    let sink = WebhookReceiver::start();
    let v1 = fixture(&format!("{ID}.json"));
    env.server.put_study(v1.clone());
    env.ok(&["sync"]);
    env.ok(&["subscribe", "webhook", &sink.url("/slow")]);
    env.server.put_study(with_status(&v1, "TERMINATED"));

    sink.script([Reply::hold()]);
    let mut child = env
        .cmd(&["sync"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    sink.wait_for(1, Duration::from_secs(20));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The version and its alert were stored before the send.
    assert_eq!(
        env.json(&["history", ID, "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let pending = outbox(&env);
    assert_eq!(pending.len(), 1, "the alert was lost: {pending:?}");
    let out = env.ok(&["outbox", "deliver"]);
    assert!(out.contains("1 delivered"), "{out}");
    env.ok(&["outbox", "deliver"]);
    let by_event = count_by_event(&sink.requests());
    assert_eq!(by_event.len(), 1, "{by_event:?}");
    let n = *by_event.values().next().unwrap();
    assert!((1..=2).contains(&n), "seen {n} times");
    assert!(outbox(&env).is_empty());
}

/// One subscriber whose receiver hangs does not hold up another: the healthy one is served
/// while the hanging request is still open.
#[test]
fn a_hanging_subscriber_does_not_delay_the_others() {
    let env = TestEnv::with_config(&[ID], "", FAST_ALERTS);
    let hanging = WebhookReceiver::start();
    hanging.set_default(Reply::hold());
    let healthy = WebhookReceiver::start();
    let v1 = fixture(&format!("{ID}.json"));
    env.server.put_study(v1.clone());
    env.ok(&["sync"]);
    env.ok(&["subscribe", "webhook", &hanging.url("/hang")]);
    env.ok(&["subscribe", "webhook", &healthy.url("/ok")]);
    env.server.put_study(with_status(&v1, "TERMINATED"));
    let mut child = env
        .cmd(&["sync"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    hanging.wait_for(1, Duration::from_secs(20));
    healthy.wait_for(1, Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the sync ended before the hanging request timed out"
    );
    child.wait().unwrap();
    let pending = outbox(&env);
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(pending[0]["id"].as_str().unwrap().starts_with("sub-"));
    assert!(
        pending[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("timed out")
            || pending[0]["last_error"]
                .as_str()
                .unwrap()
                .contains("timeout"),
        "{pending:?}"
    );
}

/// A daily digest: nothing before its time, then one message grouping the pending alerts.
#[test]
fn daily_digest_groups_pending_alerts_into_one_message() {
    let port = free_port();
    let tail = format!(
        "{FAST_ALERTS}[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n\
         from = \"trialwatch@example.org\"\n"
    );
    let env = TestEnv::with_config(&[ID, OTHER], "", &tail);
    let smtp = SmtpServer::start_on(port, env.dir.path(), None, SmtpOptions::plain());
    let a = fixture(&format!("{ID}.json"));
    let b = fixture(&format!("{OTHER}.json"));
    env.server.put_study(a.clone());
    env.server.put_study(b.clone());
    env.ok(&["sync"]);
    env.ok(&[
        "subscribe",
        "email",
        "digest@example.org",
        "--field",
        "status.overallStatus",
        "--digest",
        "daily",
    ]);
    env.server.put_study(with_status(&a, "SUSPENDED"));
    env.server.put_study(with_status(&b, "RECRUITING"));
    let out = env.ok(&["sync"]);
    assert!(out.contains("alerts: 2 enqueued; 0 delivered"), "{out}");
    assert!(smtp.messages().is_empty());

    let tomorrow = (chrono::Utc::now() + chrono::Duration::hours(25)).to_rfc3339();
    let out = env
        .cmd(&["outbox", "deliver"])
        .env("TRIALWATCH_NOW", &tomorrow)
        .output()
        .unwrap();
    assert!(stdout(&out).contains("2 delivered"), "{}", stdout(&out));
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].text().contains(ID) && mails[0].text().contains(OTHER));
    assert!(outbox(&env).is_empty());
}

/// Passwords never reach `check-config` output or the logs, whichever way they are given.
#[test]
fn smtp_password_never_appears_in_output_or_logs() {
    const PASSWORD: &str = "hunter2-very-secret";
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let tail = format!(
        "{FAST_ALERTS}[smtp]\nhost = \"localhost\"\nport = {port}\nsecurity = \"starttls\"\n\
         username = \"tw\"\npassword_file = {pw:?}\nfrom = \"trialwatch@example.org\"\n\
         [[subscription]]\nemail = \"ops@example.org\"\n",
        pw = pw.display().to_string()
    );
    let env = TestEnv::with_config(&[ID], "", &tail);
    let out = env.run(&["--log-level", "trace", "check-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("with a password (hidden)"), "{all}");
    assert!(!all.contains(PASSWORD), "password leaked: {all}");

    // A sync whose delivery fails (nothing listens) logs at trace level without the password.
    let v1 = fixture(&format!("{ID}.json"));
    env.server.put_study(v1.clone());
    env.ok(&["sync"]);
    env.server.put_study(with_status(&v1, "TERMINATED"));
    let out = env.run(&["--log-level", "trace", "sync"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("1 enqueued"), "{all}");
    assert!(!all.contains(PASSWORD), "password leaked: {all}");

    // systemd credentials: used when neither password key is set.
    let tail = tail.replace(
        &format!("password_file = {:?}\n", pw.display().to_string()),
        "",
    );
    let env2 = TestEnv::with_config(&[ID], "", &tail);
    let out = env2
        .cmd(&["check-config"])
        .env("CREDENTIALS_DIRECTORY", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("with a password (hidden)"));
    assert!(!stdout(&out).contains(PASSWORD));
    let out = env2
        .cmd(&["check-config"])
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    // Without the credential (a shell, not the service) the config still loads and says
    // where the password will come from.
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("from the systemd credential `smtp-password`; not readable"),
        "{}",
        stdout(&out)
    );
}

/// Bad subscribe arguments and config entries are refused with the bad value and the fix;
/// subscriptions list, deduplicate and unsubscribe.
#[test]
fn subscriptions_are_validated_listed_and_removed() {
    let tail = "[smtp]\nhost = \"localhost\"\nfrom = \"tw@example.org\"\n\
         [[subscription]]\nwebhook = \"https://example.org/hook\"\nnct = [\"NCT02241018\"]\n";
    let env = TestEnv::with_config(&[ID], "", tail);
    for (args, needle) in [
        (
            vec!["subscribe", "email", "not-an-address"],
            "\"not-an-address\" is not an email address; write it as name@example.org",
        ),
        (
            vec!["subscribe", "webhook", "ftp://x.org/h"],
            "must be http:// or https://",
        ),
        (
            vec!["subscribe", "email", "a@example.org", "--nct", "NCT123"],
            "`NCT123` is not an NCT ID",
        ),
        (
            vec![
                "subscribe",
                "email",
                "a@example.org",
                "--field",
                "status.overalStatus",
            ],
            "matches no field path",
        ),
        (
            vec![
                "subscribe",
                "email",
                "a@example.org",
                "--min-severity",
                "huge",
            ],
            "expected one of minor, notable, critical",
        ),
        (
            vec!["subscribe", "email", "a@example.org", "--digest", "hourly"],
            "use \"daily\"",
        ),
        (
            vec![
                "subscribe",
                "webhook",
                "https://x.org/h",
                "--secret-file",
                "/nonexistent/s",
            ],
            "--secret-file /nonexistent/s",
        ),
    ] {
        let out = env.run(&args);
        // A malformed NCT ID is a usage error (64); the others are refused values (1).
        let code = if needle.contains("NCT123") { 64 } else { 1 };
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    let first = env.ok(&[
        "subscribe",
        "email",
        "me@example.org",
        "--field",
        "status.overallStatus",
    ]);
    let id = first
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    let again = env.ok(&[
        "subscribe",
        "email",
        "me@example.org",
        "--field",
        "status.overallStatus",
    ]);
    assert!(
        again.contains(&format!("already subscribed as {id}")),
        "{again}"
    );
    let secret = env.dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    env.ok(&[
        "subscribe",
        "webhook",
        "https://example.org/signed",
        "--secret-file",
        secret.to_str().unwrap(),
    ]);

    let list = env.json(&["subscriptions", "--json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(list[0]["origin"], "config");
    assert!(list[0]["id"].as_str().unwrap().starts_with("cfg-"));
    assert!(list.iter().all(|s| !s.to_string().contains("s3cret")));
    let cfg_id = list[0]["id"].as_str().unwrap();
    let out = env.run(&["unsubscribe", cfg_id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("declared in the configuration"));
    assert!(
        env.ok(&["unsubscribe", &id])
            .contains(&format!("unsubscribed {id}"))
    );
    assert_eq!(
        env.json(&["subscriptions", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The config-derived ID is stable across runs.
    assert_eq!(env.json(&["subscriptions", "--json"])[0]["id"], cfg_id);

    let bad = "[smtp]\nhost = \"localhost\"\nfrom = \"tw@example.org\"\n[[subscription]]\nemail = \"x\"\nnct = [\"NCT1\"]\nfields = [\"nope\"]\nmin_severity = \"big\"\n";
    let env = TestEnv::with_config(&[ID], "", bad);
    let out = env.run(&["check-config"]);
    let err = stderr(&out);
    for needle in [
        "`subscription[0].email`: \"x\" is not an email address",
        "`subscription[0].nct[0]`: `NCT1` is not an NCT ID",
        "`subscription[0].fields[0]`: \"nope\" matches no field path",
        "`subscription[0].min_severity`: `big` is not a severity",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let _ = fixture_as; // shared helper, unused here
}
