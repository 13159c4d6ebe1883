//! The delivery layer: turns pending alerts into one email or one signed webhook `POST` and
//! says whether a failure is worth retrying.
//!
//! This module owns the wire formats a subscriber sees (the email's subject and bodies, the
//! webhook's JSON schema, headers and signature) and the classification of every failure into
//! *transient* (try again later) or *permanent* (dead letter). It does not own the outbox: the
//! storage of pending alerts, the retry schedule and the dead-letter list live elsewhere and
//! call [`Notifier::deliver`]. It is the only module that knows lettre and reqwest.
//!
//! Every send carries an idempotency key (`Message-ID: <{alert.id}@trialwatch>`, the
//! `X-Trialwatch-Event-Id` header), so a crash between "sent" and "removed from the outbox"
//! repeats an alert that the receiver can recognise, and never loses one.
//!
//! Secrets (the SMTP password, webhook secrets) live in [`Secret`], whose `Debug` and `Display`
//! print `[redacted]`; no error message built here contains one, nor a webhook URL's path or
//! query (which often carries a token).

pub mod email;
pub mod webhook;

use std::error::Error as StdError;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{FieldChange, NctId};
use crate::severity::Severity;

/// One pending alert: what one subscription must hear about one new version of one trial.
///
/// Stored in the outbox as JSON, so every field must round-trip through serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Idempotency key, stable across retries: it becomes the email's `Message-ID` and the
    /// webhook's `event_id`, so receivers can drop a repeated delivery.
    pub id: String,
    /// Which subscription owes this alert; named in the email footer so a reader knows why
    /// they got it.
    pub subscription_id: String,
    pub nct_id: NctId,
    /// The trial's stored version this alert reports (1, 2, 3…), to match `trialwatch history`.
    pub version: u32,
    /// When trialwatch saw the new version; shown to the reader and sent in the webhook.
    pub detected_at: DateTime<Utc>,
    /// What a reader needs to recognise the trial without opening it.
    pub trial: TrialInfo,
    /// The changes this subscription watches, in canonical path order.
    pub changes: Vec<AlertChange>,
}

/// The trial as of the new version, for the message's heading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialInfo {
    /// Brief title; absent when CT.gov has none.
    pub title: Option<String>,
    /// Overall recruitment status after the change (`RECRUITING`, `COMPLETED`…).
    pub overall_status: Option<String>,
    /// The study's public page (`https://clinicaltrials.gov/study/NCT…`).
    pub url: String,
}

/// One field change as a subscriber sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertChange {
    /// Path, kind and old/new values, flattened so the webhook's change objects read
    /// `{"path", "kind", "old", "new", "severity", "summary"}`.
    #[serde(flatten)]
    pub change: FieldChange,
    /// Orders the message (most severe first) and picks the subject's headline.
    pub severity: Severity,
    /// One-line human sentence (`status RECRUITING → COMPLETED`), used as the headline.
    pub summary: String,
}

/// Where one subscription's alerts go.
///
/// Built from the subscription's configuration, never stored in the outbox, so a rotated
/// secret applies to alerts that are already pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// One email per alert, or one digest for several.
    Email { to: String },
    /// One JSON `POST` per alert, signed when a secret is set.
    Webhook { url: String, secret: Option<Secret> },
}

/// A password or signing key. `Debug` and `Display` print `[redacted]`, and it is not
/// `Serialize`, so it cannot end up in a log line, an error message or the outbox by accident.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (AUTH, HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connect, then a *required* STARTTLS before AUTH or any mail (usually port 587).
    /// A server that does not offer STARTTLS is refused, so a downgrade cannot leak the password.
    StartTls,
    /// TLS from the first byte (implicit TLS, "SMTPS", usually port 465).
    Tls,
    /// No encryption, for a relay on this machine or a trusted local network (port 25).
    None,
}

impl SmtpSecurity {
    /// The port this mode conventionally uses, for configs that leave the port out.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

impl fmt::Display for SmtpSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmtpSecurity::StartTls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::None => "none",
        })
    }
}

/// Why a string is not an SMTP security mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an SMTP security mode: expected starttls, tls or none")]
pub struct BadSmtpSecurity(pub String);

impl FromStr for SmtpSecurity {
    type Err = BadSmtpSecurity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starttls" => Ok(SmtpSecurity::StartTls),
            "tls" => Ok(SmtpSecurity::Tls),
            "none" => Ok(SmtpSecurity::None),
            _ => Err(BadSmtpSecurity(s.to_string())),
        }
    }
}

/// The validated `[smtp]` settings.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Server name: what we connect to and what its TLS certificate must name.
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// AUTH user; set together with `password`, or neither for a relay that needs no login.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The `From:` mailbox, e.g. `trialwatch <trialwatch@example.org>`.
    pub from: String,
    /// Limit for connecting and for each SMTP reply; a whole send gets three times this.
    pub timeout: Duration,
    /// An extra trusted root certificate (PEM), for a server whose certificate comes from a
    /// private CA (a company relay, the tests' own CA). The public web roots stay trusted.
    pub extra_root_cert_pem: Option<String>,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .field(
                "extra_root_cert_pem",
                &self
                    .extra_root_cert_pem
                    .as_ref()
                    .map(|pem| format!("<PEM, {} bytes>", pem.len())),
            )
            .finish()
    }
}

/// Why one delivery failed, and whether trying again later may succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// `true`: the receiver may accept later (network down, 4xx SMTP, HTTP 5xx/429/408,
    /// timeouts), so the outbox retries with backoff. `false`: the same message will be refused
    /// again (bad address, bad credentials, HTTP 404), so it goes to the dead letters.
    pub transient: bool,
    /// What failed and how to fix it. Holds no password, secret, or webhook URL path/query.
    pub message: String,
    /// How long the receiver asked us to wait (HTTP `Retry-After`), when it said; the outbox
    /// should not retry sooner.
    pub retry_after: Option<Duration>,
}

impl DeliveryError {
    pub fn transient(message: impl Into<String>) -> Self {
        DeliveryError {
            transient: true,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryError {
            transient: false,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

/// Why a [`Notifier`] could not be built from its configuration; each message names the
/// setting and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("smtp.host is empty: set it to the SMTP server's name, e.g. smtp.example.org")]
    EmptyHost,
    #[error(
        "smtp.from `{value}` is not a mailbox ({reason}): write it as `trialwatch <trialwatch@example.org>`"
    )]
    BadFrom { value: String, reason: String },
    #[error(
        "smtp.username and smtp.password must be set together: set both to log in, or neither for a relay that needs no AUTH"
    )]
    HalfCredentials,
    #[error(
        "smtp.security = \"none\" would send the password unencrypted to `{host}`: use \"starttls\" or \"tls\", or drop username/password for a local relay"
    )]
    PlaintextAuth { host: String },
    #[error(
        "smtp.extra_root_cert_pem holds no usable certificate ({reason}): give a PEM file with `-----BEGIN CERTIFICATE-----`"
    )]
    BadRootCert { reason: String },
    #[error("could not set up TLS for smtp.host `{host}`: {reason}")]
    Tls { host: String, reason: String },
    #[error("could not build the HTTP client for webhooks: {reason}")]
    HttpClient { reason: String },
}

/// Sends alerts. Cheap to clone: the SMTP transport and the HTTP client are built once, and
/// clones share the HTTP connection pool.
#[derive(Clone)]
pub struct Notifier {
    /// `None` when no `[smtp]` section is configured; email destinations then fail with a
    /// message that says so instead of a panic at start-up.
    email: Option<email::Mailer>,
    /// One HTTP client for every webhook, carrying the timeout and `User-Agent`.
    webhook: webhook::Poster,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("email", &self.email)
            .field("webhook", &self.webhook)
            .finish()
    }
}

impl Notifier {
    /// Validates the settings and builds the SMTP transport and the HTTP client.
    ///
    /// `webhook_timeout` bounds one whole webhook request (connect, send, answer).
    pub fn new(smtp: Option<SmtpConfig>, webhook_timeout: Duration) -> Result<Self, SetupError> {
        let email = smtp.as_ref().map(email::Mailer::new).transpose()?;
        let webhook = webhook::Poster::new(webhook_timeout)?;
        Ok(Notifier { email, webhook })
    }

    /// Sends one message for `alerts`: one alert is an immediate notice, several are a daily
    /// digest for one subscriber. A webhook gets one `POST` per alert, in order, and the first
    /// failure stops the rest (retrying repeats the earlier ones, which their event id lets the
    /// receiver drop). An empty slice sends nothing.
    pub async fn deliver(&self, dest: &Destination, alerts: &[Alert]) -> Result<(), DeliveryError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let result = match dest {
            Destination::Email { to } => match &self.email {
                Some(mailer) => mailer.send(to, alerts).await,
                None => Err(DeliveryError::permanent(
                    "this subscription wants email but no [smtp] section is configured: add one (host, port, security, from) and restart",
                )),
            },
            Destination::Webhook { url, secret } => {
                for alert in alerts {
                    self.webhook.post(url, secret.as_ref(), alert).await?;
                }
                Ok(())
            }
        };
        if result.is_ok() {
            tracing::debug!(
                delivery.kind = match dest {
                    Destination::Email { .. } => "email",
                    Destination::Webhook { .. } => "webhook",
                },
                delivery.alerts = alerts.len(),
                delivery.duration_ms = started.elapsed().as_millis() as u64,
                "alerts delivered"
            );
        }
        result
    }
}

/// An error and its causes on one line, `outer: inner: innermost`, skipping a cause whose text
/// the outer message already contains (lettre and hyper often repeat it).
pub(crate) fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Text from a remote server, made safe for a one-line error message: control characters
/// become spaces and it is cut to `max` characters.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut last_space = true;
    for (n, c) in text.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        if c.is_whitespace() || c.is_control() {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        let d = Destination::Webhook {
            url: "https://example.org/hook".into(),
            secret: Some(s),
        };
        assert!(!format!("{d:?}").contains("hunter2"));
    }

    #[test]
    fn smtp_security_parses_and_prints() {
        for mode in [
            SmtpSecurity::StartTls,
            SmtpSecurity::Tls,
            SmtpSecurity::None,
        ] {
            assert_eq!(mode.to_string().parse::<SmtpSecurity>(), Ok(mode));
        }
        assert!("ssl".parse::<SmtpSecurity>().is_err());
    }

    #[test]
    fn one_line_flattens_and_cuts() {
        assert_eq!(one_line("a\r\n  b\tc", 100), "a b c");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }

    #[test]
    fn alerts_round_trip_through_json_with_flat_changes() {
        let alert = Alert {
            id: "a1".into(),
            subscription_id: "s1".into(),
            nct_id: "NCT02241018".parse().unwrap(),
            version: 2,
            detected_at: "2024-05-01T06:00:00Z".parse().unwrap(),
            trial: TrialInfo {
                title: Some("T".into()),
                overall_status: None,
                url: "https://clinicaltrials.gov/study/NCT02241018".into(),
            },
            changes: vec![AlertChange {
                change: FieldChange {
                    path: "status.overallStatus".into(),
                    kind: crate::model::ChangeKind::Changed,
                    old: Some("RECRUITING".into()),
                    new: Some("COMPLETED".into()),
                },
                severity: Severity::Critical,
                summary: "status RECRUITING → COMPLETED".into(),
            }],
        };
        let json = serde_json::to_value(&alert).unwrap();
        assert_eq!(json["changes"][0]["path"], "status.overallStatus");
        assert_eq!(json["changes"][0]["severity"], "critical");
        let back: Alert = serde_json::from_value(json).unwrap();
        assert_eq!(back, alert);
    }
}
