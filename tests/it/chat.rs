//! Team-chat subscriptions end to end: the real binary posts alerts to local receivers that
//! check each service's documented incoming-webhook format (Slack blocks, Discord embeds, a
//! Teams Adaptive Card, ntfy headers), through the outbox with its retries; `test-alert`; chat
//! targets in `[[subscription]]`; weekly digests.

use std::time::Duration;

use serde_json::json;

use crate::support::env::{TestEnv, edit, fixture, stderr, stdout};
use crate::support::webhook_receiver::{
    Reply, WebhookReceiver, check_discord, check_ntfy, check_slack, check_teams,
};

const FAST_ALERTS: &str =
    "[alerts]\nretry_base_secs = 0.05\nretry_cap_secs = 0.2\nwebhook_timeout_secs = 5\n";
const ID: &str = "NCT03418623";

fn with_status(raw: &str, status: &str) -> String {
    edit(raw, |p| p["statusModule"]["overallStatus"] = json!(status))
}

/// A synced trial, then a status change waiting to be synced.
fn env_with_change(tail: &str) -> (TestEnv, String) {
    let env = TestEnv::with_config(&[ID], "", tail);
    let v1 = fixture(&format!("{ID}.json"));
    env.server.put_study(v1.clone());
    env.ok(&["sync"]);
    (env, v1)
}

/// One status change reaches a Slack, a Discord, a Teams and an ntfy subscription, each in its
/// own format, with the trial in the title; ntfy's priority follows the severity.
#[test]
fn each_chat_service_gets_its_own_documented_format() {
    let (env, v1) = env_with_change(FAST_ALERTS);
    let sink = WebhookReceiver::start();
    for service in ["slack", "discord", "teams", "ntfy"] {
        let out = env.ok(&["subscribe", service, &sink.url(&format!("/{service}"))]);
        assert!(out.contains("subscribed sub-"), "{out}");
        assert!(out.contains(service), "{out}");
    }
    env.server.put_study(with_status(&v1, "SUSPENDED"));
    let out = env.ok(&["sync"]);
    assert!(out.contains("4 delivered"), "{out}");
    let hits = sink.requests();
    assert_eq!(hits.len(), 4, "{hits:?}");
    for h in &hits {
        let title = match h.path() {
            "/slack" => check_slack(h),
            "/discord" => check_discord(h),
            "/teams" => check_teams(h),
            "/ntfy" => check_ntfy(h),
            other => panic!("unexpected path {other}"),
        }
        .unwrap_or_else(|e| panic!("{}: {e}", h.path()));
        assert!(title.contains(ID), "{}: title {title:?}", h.path());
        assert!(
            title.starts_with("[CRITICAL]") || title.starts_with("[NOTABLE]"),
            "{title}"
        );
        if h.path() == "/ntfy" {
            let expected = if title.starts_with("[CRITICAL]") {
                "5"
            } else {
                "4"
            };
            assert_eq!(h.header("priority"), Some(expected));
            let body = String::from_utf8_lossy(&h.body);
            assert!(body.contains("SUSPENDED"), "{body}");
        }
    }
    let slack = hits.iter().find(|h| h.path() == "/slack").unwrap().json();
    assert!(
        slack["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("SUSPENDED")
    );
    let subs = env.json(&["subscriptions", "--json"]);
    let kinds: Vec<&str> = subs
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["target"]["service"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds.len(), 4);
    assert!(
        env.json(&["outbox", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// A chat service answering 503 (Slack's "try later") is retried through the outbox like a
/// webhook, and delivered once it answers 200.
#[test]
fn chat_failure_is_retried_through_the_outbox() {
    let (env, v1) = env_with_change(FAST_ALERTS);
    let sink = WebhookReceiver::start();
    sink.script([Reply::status(503)]);
    env.ok(&["subscribe", "discord", &sink.url("/d")]);
    env.server.put_study(with_status(&v1, "SUSPENDED"));
    let out = env.ok(&["sync"]);
    assert!(out.contains("1 waiting to be retried"), "{out}");
    std::thread::sleep(Duration::from_millis(350));
    let out = env.ok(&["outbox", "deliver"]);
    assert!(out.contains("1 delivered"), "{out}");
    let hits = sink.requests();
    assert_eq!(hits.len(), 2);
    check_discord(&hits[1]).unwrap();
    assert!(
        env.json(&["outbox", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// A big edit (a 20,000-character criteria rewrite, 40 keywords) still arrives within every
/// limit the receivers check (the cut-with-a-note itself is `notify::chat`'s unit tests).
#[test]
fn big_edits_arrive_within_every_chat_limit() {
    let (env, v1) = env_with_change(FAST_ALERTS);
    let sink = WebhookReceiver::start();
    env.ok(&["subscribe", "slack", &sink.url("/slack"), "--field", "*"]);
    env.ok(&[
        "subscribe",
        "discord",
        &sink.url("/discord"),
        "--field",
        "*",
    ]);
    let long = "Inclusion criterion with a very long explanation. ".repeat(400);
    let v2 = edit(&v1, |p| {
        p["statusModule"]["overallStatus"] = json!("SUSPENDED");
        p["eligibilityModule"]["eligibilityCriteria"] = json!(long);
        let keywords: Vec<String> = (0..40)
            .map(|i| format!("keyword {i} {}", "k".repeat(40)))
            .collect();
        p["conditionsModule"]["keywords"] = json!(keywords);
    });
    env.server.put_study(v2);
    let out = env.ok(&["sync"]);
    assert!(out.contains("2 delivered"), "{out}\n");
    let hits = sink.requests();
    assert_eq!(hits.len(), 2);
    for h in &hits {
        match h.path() {
            "/slack" => {
                check_slack(h).unwrap();
            }
            _ => {
                check_discord(h).unwrap();
            }
        }
    }
}

/// `test-alert ID` sends one sample to that subscription only, and says so; an unknown ID is a
/// usage error naming the listing command.
#[test]
fn test_alert_reaches_exactly_one_subscription() {
    let env = TestEnv::with_config(&[ID], "", FAST_ALERTS);
    let sink = WebhookReceiver::start();
    let out = env.ok(&["subscribe", "ntfy", &sink.url("/one")]);
    let id = out
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    env.ok(&["subscribe", "teams", &sink.url("/two")]);
    let out = env.ok(&["test-alert", &id]);
    assert!(out.contains(&format!("sent a test alert to {id}")), "{out}");
    let hits = sink.requests();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].path(), "/one");
    let title = check_ntfy(&hits[0]).unwrap();
    assert!(title.contains("test alert"), "{title}");
    assert!(
        env.json(&["outbox", "--json"])
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing stored"
    );

    let bad = env.run(&["test-alert", "sub-nope"]);
    assert_eq!(bad.status.code(), Some(64), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("trialwatch subscriptions"),
        "{}",
        stderr(&bad)
    );

    sink.set_default(Reply::status(404));
    let failed = env.run(&["test-alert", &id]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(stderr(&failed).contains("404"), "{}", stderr(&failed));
}

/// `[[subscription]]` takes `slack`/`discord`/`teams`/`ntfy` keys; two destinations in one
/// entry, or a bad URL, is named with the fix.
#[test]
fn chat_targets_in_the_configuration() {
    let sink = WebhookReceiver::start();
    let tail = format!(
        "{FAST_ALERTS}[[subscription]]\nslack = \"{}\"\n\n[[subscription]]\nntfy = \"{}\"\nmin_severity = \"critical\"\n",
        sink.url("/s"),
        sink.url("/n")
    );
    let env = TestEnv::with_config(&[ID], "", &tail);
    let out = env.ok(&["subscriptions"]);
    assert!(out.contains("(config)  slack "), "{out}");
    assert!(out.contains("(config)  ntfy "), "{out}");

    let bad = "[[subscription]]\nslack = \"https://hooks.example.org/x\"\nemail = \"a@example.org\"\n\n\
               [[subscription]]\ndiscord = \"ftp://example.org/\"\n";
    let env = TestEnv::with_config(&[ID], "", bad);
    let out = env.run(&["check-config"]);
    assert!(!out.status.success());
    let err = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        err.contains("`subscription[0]` has `email` and `slack`"),
        "{err}"
    );
    assert!(err.contains("`subscription[1].discord`"), "{err}");
}

/// A weekly digest holds its alerts past a day and sends them once the week is up.
#[test]
fn weekly_digest_waits_a_week() {
    let sink = WebhookReceiver::start();
    let tail = format!(
        "{FAST_ALERTS}[[subscription]]\nwebhook = \"{}\"\ndigest = \"weekly\"\n",
        sink.url("/w")
    );
    let (env, v1) = env_with_change(&tail);
    env.server.put_study(with_status(&v1, "SUSPENDED"));
    let out = env.ok(&["sync"]);
    assert!(out.contains("1 enqueued; 0 delivered"), "{out}");
    let at = |hours: i64| (chrono::Utc::now() + chrono::Duration::hours(hours)).to_rfc3339();
    let out = env
        .cmd(&["outbox", "deliver"])
        .env("TRIALWATCH_NOW", at(25))
        .output()
        .unwrap();
    assert!(stdout(&out).contains("0 delivered"), "{}", stdout(&out));
    assert_eq!(sink.count(), 0);
    let out = env
        .cmd(&["outbox", "deliver"])
        .env("TRIALWATCH_NOW", at(24 * 7 + 1))
        .output()
        .unwrap();
    assert!(stdout(&out).contains("1 delivered"), "{}", stdout(&out));
    assert_eq!(sink.count(), 1);
}
