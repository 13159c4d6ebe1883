//! Black-box tests of the delivery layer against real receivers on 127.0.0.1: an SMTP server
//! (aiosmtpd, with STARTTLS/implicit TLS and AUTH, see `tests/support/smtp_server.py`) and an
//! HTTP webhook receiver (axum, see `tests/support/webhook_receiver.rs`). Nothing is mocked:
//! lettre and reqwest talk to those servers over sockets, and the tests parse what arrived.
//!
//! Needs aiosmtpd: `bash .ci/install-test-deps.sh`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::json;
use trialwatch::config::{Secret, SmtpConfig, SmtpSecurity};
use trialwatch::model::{Alert, AlertChange, ChangeKind, FieldChange, NctId, Severity, TrialInfo};
use trialwatch::notify::{DeliveryError, Destination, Notifier, SetupError, webhook};

use crate::support::smtp_server::{SmtpOptions, SmtpServer, TestCerts};
use crate::support::webhook_receiver::{Reply, WebhookReceiver};

const USER: &str = "trialwatch-bot";
const PASSWORD: &str = "pa55-w0rd-never-logged";
const WEBHOOK_SECRET: &str = "whsec-never-logged";
const FROM: &str = "trialwatch <trialwatch@example.org>";
const READER: &str = "reader@example.org";

// ---------------------------------------------------------------------------------------------
// Fixtures

const OLD_CRITERIA: &str = "Inclusion Criteria:\n\
* Histologically confirmed melanoma\n\
* Age 18 to 65 years\n\
* ECOG performance status 0-1\n\
* Adequate organ function\n\
\n\
Exclusion Criteria:\n\
* Prior anti-PD-1 therapy\n\
* Active brain metastases\n";

const NEW_CRITERIA: &str = "Inclusion Criteria:\n\
* Histologically confirmed melanoma\n\
* Age 18 to 75 years\n\
* ECOG performance status 0-1\n\
* Adequate organ function\n\
\n\
Exclusion Criteria:\n\
* Prior anti-PD-1 therapy\n\
* Active brain metastases\n\
* Pregnancy\n";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("fixture timestamp")
}

fn nct(s: &str) -> NctId {
    s.parse().expect("fixture NCT id")
}

fn changed(path: &str, old: serde_json::Value, new: serde_json::Value) -> FieldChange {
    FieldChange {
        path: path.into(),
        kind: ChangeKind::Changed,
        old: Some(old),
        new: Some(new),
    }
}

fn alert_change(change: FieldChange, severity: Severity, summary: &str) -> AlertChange {
    AlertChange {
        change,
        severity,
        summary: summary.into(),
    }
}

/// A melanoma trial that completed and widened its age range: one critical status change
/// (listed second, so ordering is tested) and one notable long-text criteria change.
fn status_alert() -> Alert {
    let id = nct("NCT02241018");
    Alert {
        id: "alert-0001".into(),
        subscription_id: "sub-melanoma".into(),
        version: 4,
        detected_at: at("2024-05-01T06:00:00Z"),
        trial: TrialInfo {
            title: Some("Pembrolizumab <MK-3475> in Melanoma & NSCLC".into()),
            overall_status: Some("COMPLETED".into()),
            url: id.ctgov_url(),
        },
        nct_id: Some(id),
        changes: vec![
            alert_change(
                changed(
                    "eligibility.criteria",
                    OLD_CRITERIA.into(),
                    NEW_CRITERIA.into(),
                ),
                Severity::Notable,
                "eligibility criteria changed",
            ),
            alert_change(
                changed(
                    "status.overallStatus",
                    "RECRUITING".into(),
                    "COMPLETED".into(),
                ),
                Severity::Critical,
                "status RECRUITING → COMPLETED",
            ),
        ],
        ctgov_posted: None,
        event: None,
    }
}

/// A second alert for the same trial, one version later.
fn enrollment_alert() -> Alert {
    let id = nct("NCT02241018");
    Alert {
        id: "alert-0002".into(),
        subscription_id: "sub-melanoma".into(),
        version: 5,
        detected_at: at("2024-05-02T06:00:00Z"),
        trial: TrialInfo {
            title: Some("Pembrolizumab <MK-3475> in Melanoma & NSCLC".into()),
            overall_status: Some("COMPLETED".into()),
            url: id.ctgov_url(),
        },
        nct_id: Some(id),
        changes: vec![alert_change(
            changed("design.enrollmentCount", json!(120), json!(134)),
            Severity::Minor,
            "enrollment 120 → 134",
        )],
        ctgov_posted: None,
        event: None,
    }
}

/// An alert for another trial.
fn other_trial_alert() -> Alert {
    let id = nct("NCT00973089");
    Alert {
        id: "alert-0003".into(),
        subscription_id: "sub-melanoma".into(),
        version: 2,
        detected_at: at("2024-05-02T07:30:00Z"),
        trial: TrialInfo {
            title: Some("Adjuvant Ipilimumab".into()),
            overall_status: Some("ACTIVE_NOT_RECRUITING".into()),
            url: id.ctgov_url(),
        },
        nct_id: Some(id),
        changes: vec![alert_change(
            FieldChange {
                path: "status.primaryCompletionDate".into(),
                kind: ChangeKind::Added,
                old: None,
                new: Some("2025-12".into()),
            },
            Severity::Notable,
            "primary completion date set to 2025-12",
        )],
        ctgov_posted: None,
        event: None,
    }
}

fn smtp_config(port: u16, security: SmtpSecurity, password: &str, ca_pem: &str) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security,
        username: Some(USER.into()),
        password: Some(Secret::new(password)),
        from: FROM.into(),
        timeout: Duration::from_secs(5),
        extra_root_cert_pem: Some(ca_pem.to_string()),
        password_source: None,
    }
}

fn email_to(to: &str) -> Destination {
    Destination::Email { to: to.into() }
}

/// Every error a test sees goes through here: it must never carry a secret.
fn assert_no_secrets(err: &DeliveryError) {
    let shown = format!("{err} {err:?}");
    for secret in [PASSWORD, "wrong-password", WEBHOOK_SECRET, "tok3n-in-path"] {
        assert!(!shown.contains(secret), "error leaks `{secret}`: {shown}");
    }
}

async fn expect_failure(
    notifier: &Notifier,
    dest: &Destination,
    alerts: &[Alert],
) -> DeliveryError {
    let err = notifier
        .deliver(dest, alerts)
        .await
        .expect_err("delivery should fail");
    assert_no_secrets(&err);
    err
}

fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
    MessageParser::default()
        .parse(raw)
        .expect("the received message parses as RFC 5322")
}

// ---------------------------------------------------------------------------------------------
// Email

/// The plain-text part, byte for byte: it is fully deterministic (no dates but `detected_at`).
const EXPECTED_TEXT: &str = "\
NCT02241018: Pembrolizumab <MK-3475> in Melanoma & NSCLC
https://clinicaltrials.gov/study/NCT02241018
Overall status: COMPLETED

Version 4, detected 2024-05-01 06:00 UTC

  [CRITICAL] status RECRUITING → COMPLETED
    status.overallStatus: RECRUITING → COMPLETED

  [NOTABLE] eligibility criteria changed
    eligibility.criteria:
    @@ -1,5 +1,5 @@
     Inclusion Criteria:
     * Histologically confirmed melanoma
    -* Age 18 to 65 years
    +* Age 18 to 75 years
     * ECOG performance status 0-1
     * Adequate organ function
    @@ -8,2 +8,3 @@
     * Prior anti-PD-1 therapy
     * Active brain metastases
    +* Pregnancy

-- 
You get this because your trialwatch subscription sub-melanoma watches these fields.
To stop these alerts, reply with the subject \"unsubscribe sub-melanoma\", or ask the operator to run `trialwatch unsubscribe sub-melanoma` (or remove it from the configuration).
";

/// One alert over required STARTTLS with AUTH: the server saw TLS and our login, and the
/// message has the promised headers, parts and content.
#[tokio::test]
async fn email_over_starttls_with_auth_arrives_as_specified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = TestCerts::create(dir.path());
    let server = SmtpServer::start(
        dir.path(),
        Some(&certs),
        SmtpOptions {
            mode: "starttls",
            login: Some((USER.into(), PASSWORD.into())),
            reject_rcpt: vec![],
            defer_rcpt: vec![],
        },
    );
    let notifier = Notifier::new(
        Some(smtp_config(
            server.port,
            SmtpSecurity::StartTls,
            PASSWORD,
            &certs.ca_pem,
        )),
        Duration::from_secs(5),
    )
    .expect("notifier");

    notifier
        .deliver(&email_to(READER), &[status_alert()])
        .await
        .expect("delivered");

    let received = server.wait_for(1);
    assert_eq!(received.len(), 1);
    let meta = &received[0].meta;
    assert_eq!(meta["tls"], true, "STARTTLS was used: {meta}");
    assert_eq!(meta["authenticated"], true);
    assert_eq!(meta["login"], USER);
    assert_eq!(meta["mail_from"], "trialwatch@example.org");
    assert_eq!(meta["rcpt_tos"], json!([READER]));

    let raw = &received[0].raw;
    let msg = parse(raw);
    let from = msg.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.name(), Some("trialwatch"));
    assert_eq!(from.address(), Some("trialwatch@example.org"));
    let to = msg.to().and_then(|a| a.first()).expect("To");
    assert_eq!(to.address(), Some(READER));
    assert_eq!(
        msg.subject(),
        Some("[trialwatch] NCT02241018: status RECRUITING → COMPLETED")
    );
    assert_eq!(msg.message_id(), Some("alert-0001@trialwatch"));
    assert!(
        raw.windows(b"Message-ID: <alert-0001@trialwatch>".len())
            .any(|w| w.eq_ignore_ascii_case(b"Message-ID: <alert-0001@trialwatch>")),
        "Message-ID header keeps its angle brackets"
    );
    assert_eq!(
        msg.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-generated")
    );
    // RFC 2369: the unsubscribe button writes to the operator with the subscription's ID.
    assert_eq!(
        msg.header_raw("List-Unsubscribe").map(str::trim),
        Some("<mailto:trialwatch@example.org?subject=unsubscribe%20sub-melanoma>")
    );

    // multipart/alternative with exactly a text/plain and a text/html part.
    let root = msg.root_part().content_type().expect("root content type");
    assert_eq!(
        (root.ctype(), root.subtype()),
        ("multipart", Some("alternative"))
    );
    let kinds: Vec<(String, String)> = msg
        .parts
        .iter()
        .skip(1)
        .filter_map(|p| p.content_type())
        .map(|ct| {
            (
                ct.ctype().to_string(),
                ct.subtype().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("text".to_string(), "plain".to_string()),
            ("text".to_string(), "html".to_string())
        ]
    );

    let text = msg.body_text(0).expect("text part").replace("\r\n", "\n");
    assert_eq!(text, EXPECTED_TEXT);

    let html = msg.body_html(0).expect("html part");
    for needle in [
        "<a href=\"https://clinicaltrials.gov/study/NCT02241018\">",
        "NCT02241018: Pembrolizumab &lt;MK-3475&gt; in Melanoma &amp; NSCLC</a>",
        ">CRITICAL</strong> status RECRUITING → COMPLETED",
        "<code>status.overallStatus</code>: <del>RECRUITING</del> → <ins>COMPLETED</ins>",
        ">NOTABLE</strong> eligibility criteria changed",
        ">-* Age 18 to 65 years</span>",
        ">+* Age 18 to 75 years</span>",
        "Overall status: <strong>COMPLETED</strong>",
    ] {
        assert!(html.contains(needle), "HTML lacks {needle:?}:\n{html}");
    }
    assert!(!html.contains("<MK-3475>"), "HTML is escaped");
}

/// Wrong password and a refused recipient (550) are permanent; a deferred recipient (451) and a
/// stopped server are transient; once the server is back, the same notifier delivers. Error messages say what to fix and leak no secret.
#[tokio::test]
async fn smtp_failures_are_classified_and_delivery_resumes_when_the_server_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = TestCerts::create(dir.path());
    let mut server = SmtpServer::start(
        dir.path(),
        Some(&certs),
        SmtpOptions {
            mode: "starttls",
            login: Some((USER.into(), PASSWORD.into())),
            reject_rcpt: vec!["nobody@example.org".into()],
            defer_rcpt: vec!["greylisted@example.org".into()],
        },
    );
    let alerts = [status_alert()];

    let wrong = Notifier::new(
        Some(smtp_config(
            server.port,
            SmtpSecurity::StartTls,
            "wrong-password",
            &certs.ca_pem,
        )),
        Duration::from_secs(5),
    )
    .expect("notifier");
    let err = expect_failure(&wrong, &email_to(READER), &alerts).await;
    assert!(!err.transient, "bad credentials are permanent: {err}");
    assert!(err.message.contains("535"), "{err}");
    assert!(err.message.contains("smtp.password"), "{err}");

    let notifier = Notifier::new(
        Some(smtp_config(
            server.port,
            SmtpSecurity::StartTls,
            PASSWORD,
            &certs.ca_pem,
        )),
        Duration::from_secs(5),
    )
    .expect("notifier");
    let err = expect_failure(&notifier, &email_to("nobody@example.org"), &alerts).await;
    assert!(!err.transient, "unknown user is permanent: {err}");
    assert!(err.message.contains("550"), "{err}");
    assert!(err.message.contains("User unknown"), "{err}");

    let err = expect_failure(&notifier, &email_to("greylisted@example.org"), &alerts).await;
    assert!(err.transient, "a 4xx reply is worth retrying: {err}");
    assert!(err.message.contains("451"), "{err}");

    let err = expect_failure(&notifier, &email_to("not an address"), &alerts).await;
    assert!(!err.transient, "{err}");

    server.stop();
    let err = expect_failure(&notifier, &email_to(READER), &alerts).await;
    assert!(err.transient, "a server that is down may come back: {err}");
    assert!(
        err.message.contains(&format!("127.0.0.1:{}", server.port)),
        "{err}"
    );

    server.restart();
    notifier
        .deliver(&email_to(READER), &alerts)
        .await
        .expect("delivered once the server is back");
    let received = server.wait_for(1);
    assert_eq!(received.len(), 1, "refused attempts left no message");
    assert_eq!(
        parse(&received[0].raw).message_id(),
        Some("alert-0001@trialwatch")
    );
}

/// A server whose certificate we do not trust fails the TLS handshake: transient (it may be
/// a hiccup or a certificate being renewed), with a hint at the fix.
#[tokio::test]
async fn untrusted_server_certificate_is_transient_with_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = TestCerts::create(dir.path());
    let server = SmtpServer::start(
        dir.path(),
        Some(&certs),
        SmtpOptions {
            mode: "tls",
            login: None,
            reject_rcpt: vec![],
            defer_rcpt: vec![],
        },
    );
    let mut cfg = smtp_config(server.port, SmtpSecurity::Tls, PASSWORD, &certs.ca_pem);
    cfg.extra_root_cert_pem = None;
    let notifier = Notifier::new(Some(cfg), Duration::from_secs(5)).expect("notifier");
    let err = expect_failure(&notifier, &email_to(READER), &[status_alert()]).await;
    assert!(err.transient, "{err}");
    assert!(err.message.contains("smtp.root_cert_file"), "{err}");
    assert!(server.messages().is_empty());
}

/// Three alerts for two trials make one digest message (here over implicit TLS with AUTH),
/// with every change, the trials most severe first, and a Message-ID derived from the ids.
#[tokio::test]
async fn digest_of_three_alerts_for_two_trials_is_one_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = TestCerts::create(dir.path());
    let server = SmtpServer::start(
        dir.path(),
        Some(&certs),
        SmtpOptions {
            mode: "tls",
            login: Some((USER.into(), PASSWORD.into())),
            reject_rcpt: vec![],
            defer_rcpt: vec![],
        },
    );
    let notifier = Notifier::new(
        Some(smtp_config(
            server.port,
            SmtpSecurity::Tls,
            PASSWORD,
            &certs.ca_pem,
        )),
        Duration::from_secs(5),
    )
    .expect("notifier");
    let alerts = [other_trial_alert(), enrollment_alert(), status_alert()];
    notifier
        .deliver(&email_to(READER), &alerts)
        .await
        .expect("delivered");

    let received = server.wait_for(1);
    assert_eq!(received.len(), 1, "one message for the whole digest");
    assert_eq!(received[0].meta["tls"], true);
    assert_eq!(received[0].meta["authenticated"], true);
    let msg = parse(&received[0].raw);
    assert_eq!(
        msg.subject(),
        Some("[trialwatch] daily digest: 4 changes in 2 trials")
    );
    let id = msg.message_id().expect("Message-ID");
    assert!(
        id.starts_with("digest-") && id.ends_with("@trialwatch"),
        "{id}"
    );
    assert_eq!(
        format!("<{id}>"),
        trialwatch::notify::email::message_id(&[
            status_alert(),
            other_trial_alert(),
            enrollment_alert()
        ]),
        "the digest id does not depend on the alerts' order"
    );

    let text = msg.body_text(0).expect("text part").replace("\r\n", "\n");
    assert!(
        text.starts_with("trialwatch daily digest: 4 changes in 2 trials\n"),
        "{text}"
    );
    for needle in [
        "NCT02241018: Pembrolizumab <MK-3475> in Melanoma & NSCLC\nhttps://clinicaltrials.gov/study/NCT02241018",
        "NCT00973089: Adjuvant Ipilimumab\nhttps://clinicaltrials.gov/study/NCT00973089",
        "Version 4, detected 2024-05-01 06:00 UTC",
        "Version 5, detected 2024-05-02 06:00 UTC",
        "Version 2, detected 2024-05-02 07:30 UTC",
        "[CRITICAL] status RECRUITING → COMPLETED",
        "[NOTABLE] eligibility criteria changed",
        "+* Pregnancy",
        "[MINOR] enrollment 120 → 134\n    design.enrollmentCount: 120 → 134",
        "[NOTABLE] primary completion date set to 2025-12\n    status.primaryCompletionDate: (none) → 2025-12",
    ] {
        assert!(text.contains(needle), "digest lacks {needle:?}:\n{text}");
    }
    // The trial with the critical change comes first; its versions in ascending order.
    let pos = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s} missing"));
    assert!(pos("NCT02241018:") < pos("NCT00973089:"));
    assert!(pos("Version 4,") < pos("Version 5,"));

    let html = msg.body_html(0).expect("html part");
    assert!(html.contains("<h1>trialwatch daily digest: 4 changes in 2 trials</h1>"));
    assert!(html.contains("href=\"https://clinicaltrials.gov/study/NCT00973089\""));
}

/// `security = none` reaches a plain local relay without AUTH.
#[tokio::test]
async fn plain_local_relay_without_auth_delivers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = SmtpServer::start(
        dir.path(),
        None,
        SmtpOptions {
            mode: "none",
            login: None,
            reject_rcpt: vec![],
            defer_rcpt: vec![],
        },
    );
    let cfg = SmtpConfig {
        host: "127.0.0.1".into(),
        port: server.port,
        security: SmtpSecurity::None,
        username: None,
        password: None,
        from: FROM.into(),
        timeout: Duration::from_secs(5),
        extra_root_cert_pem: None,
        password_source: None,
    };
    let notifier = Notifier::new(Some(cfg), Duration::from_secs(5)).expect("notifier");
    notifier
        .deliver(&email_to(READER), &[enrollment_alert()])
        .await
        .expect("delivered");
    let received = server.wait_for(1);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].meta["tls"], false);
    assert_eq!(received[0].meta["authenticated"], false);
    assert_eq!(
        parse(&received[0].raw).subject(),
        Some("[trialwatch] NCT02241018: enrollment 120 → 134")
    );
}

// ---------------------------------------------------------------------------------------------
// Webhook

/// One alert = one POST whose body is schema 1, with the promised headers and a signature the
/// receiver's own check accepts (and rejects under a wrong secret).
#[tokio::test]
async fn webhook_posts_schema_1_with_headers_and_a_valid_signature() {
    let receiver = WebhookReceiver::with_secret(WEBHOOK_SECRET.as_bytes());
    let notifier = Notifier::new(None, Duration::from_secs(5)).expect("notifier");
    let dest = Destination::Webhook {
        url: receiver.url("/hooks/trialwatch?team=oncology"),
        secret: Some(Secret::new(WEBHOOK_SECRET)),
    };
    let before = Utc::now().timestamp();
    notifier
        .deliver(&dest, &[status_alert()])
        .await
        .expect("delivered");
    let after = Utc::now().timestamp();

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.uri, "/hooks/trialwatch?team=oncology");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.header("user-agent"),
        Some(concat!("trialwatch/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(req.header("x-trialwatch-event-id"), Some("alert-0001"));
    let ts: i64 = req
        .header("x-trialwatch-timestamp")
        .and_then(|t| t.parse().ok())
        .expect("unix timestamp header");
    assert!(
        (before..=after).contains(&ts),
        "{ts} not in {before}..={after}"
    );

    // The receiver's own HMAC check, and the library's `verify`, agree.
    let signature = req.header("x-trialwatch-signature").expect("signature");
    assert!(signature.starts_with("sha256=") && signature.len() == 7 + 64);
    assert_eq!(req.signature_ok, Some(true));
    let ts_text = ts.to_string();
    assert!(WebhookReceiver::verify_with(
        WEBHOOK_SECRET.as_bytes(),
        &ts_text,
        &req.body,
        signature
    ));
    assert!(!WebhookReceiver::verify_with(
        b"wrong-secret",
        &ts_text,
        &req.body,
        signature
    ));
    assert!(webhook::verify(
        WEBHOOK_SECRET.as_bytes(),
        ts,
        &req.body,
        signature
    ));
    assert!(!webhook::verify(b"wrong-secret", ts, &req.body, signature));
    assert!(!webhook::verify(
        WEBHOOK_SECRET.as_bytes(),
        ts + 1,
        &req.body,
        signature
    ));

    assert_eq!(
        req.json(),
        json!({
            "schema": 1,
            "event_id": "alert-0001",
            "nct_id": "NCT02241018",
            "version": 4,
            "detected_at": "2024-05-01T06:00:00Z",
            "trial": {
                "title": "Pembrolizumab <MK-3475> in Melanoma & NSCLC",
                "overall_status": "COMPLETED",
                "url": "https://clinicaltrials.gov/study/NCT02241018"
            },
            "changes": [
                {
                    "path": "eligibility.criteria",
                    "kind": "changed",
                    "old": OLD_CRITERIA,
                    "new": NEW_CRITERIA,
                    "severity": "notable",
                    "summary": "eligibility criteria changed"
                },
                {
                    "path": "status.overallStatus",
                    "kind": "changed",
                    "old": "RECRUITING",
                    "new": "COMPLETED",
                    "severity": "critical",
                    "summary": "status RECRUITING → COMPLETED"
                }
            ]
        })
    );
    // An `added` change has no "old" key at all.
    let added = webhook::body(&other_trial_alert());
    let added: serde_json::Value = serde_json::from_slice(&added).expect("JSON");
    assert_eq!(
        added["changes"][0],
        json!({"path": "status.primaryCompletionDate", "kind": "added", "new": "2025-12",
               "severity": "notable", "summary": "primary completion date set to 2025-12"})
    );
}

/// Several alerts to a webhook are several POSTs, never a digest; without a secret there is no
/// signature header.
#[tokio::test]
async fn webhook_sends_one_post_per_alert_and_signs_only_with_a_secret() {
    let receiver = WebhookReceiver::start();
    let notifier = Notifier::new(None, Duration::from_secs(5)).expect("notifier");
    let dest = Destination::Webhook {
        url: receiver.url("/in"),
        secret: None,
    };
    notifier
        .deliver(&dest, &[status_alert(), other_trial_alert()])
        .await
        .expect("delivered");
    let requests = receiver.requests();
    let ids: Vec<_> = requests
        .iter()
        .map(|r| r.json()["event_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids, ["alert-0001", "alert-0003"]);
    assert!(
        requests
            .iter()
            .all(|r| r.header("x-trialwatch-signature").is_none())
    );
}

/// 500/429/408, a slow receiver and a closed port are transient; 404/400/401/3xx are permanent;
/// a retried alert carries the same event id; no message shows the secret or the URL's token.
#[tokio::test]
async fn webhook_answers_are_classified() {
    let receiver = WebhookReceiver::with_secret(WEBHOOK_SECRET.as_bytes());
    let notifier = Notifier::new(None, Duration::from_millis(700)).expect("notifier");
    let dest = Destination::Webhook {
        url: receiver.url("/hooks/tok3n-in-path?key=tok3n-in-path"),
        secret: Some(Secret::new(WEBHOOK_SECRET)),
    };
    let alerts = [status_alert()];

    let cases: Vec<(Reply, bool, &str)> = vec![
        (
            Reply::status(500).body("database is down"),
            true,
            "500 Internal Server Error: database is down",
        ),
        (Reply::status(503), true, "503"),
        (Reply::status(429).header("retry-after", "7"), true, "429"),
        (Reply::status(408), true, "408"),
        (
            Reply::status(404),
            false,
            "check the subscription's webhook URL",
        ),
        (
            Reply::status(400).body("bad schema"),
            false,
            "400 Bad Request: bad schema",
        ),
        (Reply::status(401), false, "secret"),
        (
            Reply::status(301).header("location", "http://127.0.0.1:1/elsewhere"),
            false,
            "redirects are not followed",
        ),
        (
            Reply::delayed(200, Duration::from_secs(2)),
            true,
            "did not answer within",
        ),
    ];
    for (reply, transient, needle) in cases {
        let status = reply.status;
        receiver.script([reply]);
        let err = expect_failure(&notifier, &dest, &alerts).await;
        assert_eq!(err.transient, transient, "{status}: {err}");
        assert!(err.message.contains(needle), "{status}: {err}");
        assert!(
            err.message.contains(&format!("http://{}", receiver.addr)),
            "{err}"
        );
        if status == 429 {
            assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
        }
    }

    // 500, 500, then 200: the outbox's retries succeed with one stable event id.
    let seen_before = receiver.requests().len();
    receiver.script([Reply::status(500), Reply::status(500), Reply::status(200)]);
    assert!(expect_failure(&notifier, &dest, &alerts).await.transient);
    assert!(expect_failure(&notifier, &dest, &alerts).await.transient);
    notifier.deliver(&dest, &alerts).await.expect("third try");
    let retries = &receiver.requests()[seen_before..];
    assert_eq!(retries.len(), 3);
    assert!(
        retries
            .iter()
            .all(|r| r.header("x-trialwatch-event-id") == Some("alert-0001")
                && r.signature_ok == Some(true))
    );

    // Nobody listening: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let refused = Destination::Webhook {
        url: format!("http://127.0.0.1:{port}/hooks/tok3n-in-path"),
        secret: Some(Secret::new(WEBHOOK_SECRET)),
    };
    let err = expect_failure(&notifier, &refused, &alerts).await;
    assert!(err.transient, "{err}");
    assert!(err.message.contains("could not connect"), "{err}");

    // A malformed URL or another scheme will not get better.
    for url in ["not a url", "ftp://127.0.0.1/x"] {
        let dest = Destination::Webhook {
            url: url.into(),
            secret: None,
        };
        assert!(
            !expect_failure(&notifier, &dest, &alerts).await.transient,
            "{url}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets

/// Configuration and notifier Debug output, and set-up errors, never show the password.
#[test]
fn debug_output_and_setup_errors_never_show_secrets() {
    let cfg = smtp_config(
        587,
        SmtpSecurity::StartTls,
        PASSWORD,
        "-----BEGIN CERTIFICATE-----",
    );
    let shown = format!("{cfg:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");

    let dest = Destination::Webhook {
        url: "https://example.org/h".into(),
        secret: Some(Secret::new(WEBHOOK_SECRET)),
    };
    assert!(!format!("{dest:?}").contains(WEBHOOK_SECRET));

    let mut plain = smtp_config(25, SmtpSecurity::None, PASSWORD, "");
    plain.host = "smtp.example.org".into();
    plain.extra_root_cert_pem = None;
    let err = Notifier::new(Some(plain), Duration::from_secs(1)).expect_err("plaintext AUTH");
    assert!(matches!(err, SetupError::PlaintextAuth { .. }));
    assert!(!format!("{err} {err:?}").contains(PASSWORD));

    let mut bad_pem = smtp_config(587, SmtpSecurity::StartTls, PASSWORD, "not a certificate");
    bad_pem.from = "trialwatch <trialwatch@example.org>".into();
    let err = Notifier::new(Some(bad_pem), Duration::from_secs(1)).expect_err("bad PEM");
    assert!(matches!(err, SetupError::BadRootCert { .. }), "{err}");

    let mut bad_from = smtp_config(587, SmtpSecurity::StartTls, PASSWORD, "");
    bad_from.extra_root_cert_pem = None;
    bad_from.from = "no at sign".into();
    let err = Notifier::new(Some(bad_from), Duration::from_secs(1)).expect_err("bad from");
    assert!(err.to_string().contains("smtp.from"), "{err}");

    let notifier = Notifier::new(
        Some({
            let mut c = smtp_config(587, SmtpSecurity::StartTls, PASSWORD, "");
            c.extra_root_cert_pem = None;
            c
        }),
        Duration::from_secs(1),
    )
    .expect("notifier");
    assert!(!format!("{notifier:?}").contains(PASSWORD));
}

/// An email destination without `[smtp]` is a permanent, explained failure, not a panic.
#[tokio::test]
async fn email_without_smtp_config_is_permanent() {
    let notifier = Notifier::new(None, Duration::from_secs(1)).expect("notifier");
    let err = expect_failure(&notifier, &email_to(READER), &[status_alert()]).await;
    assert!(!err.transient);
    assert!(err.message.contains("[smtp]"), "{err}");
}
