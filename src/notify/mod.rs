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

pub mod chat;
pub mod email;
mod events;
pub mod webhook;

use std::fmt;
use std::time::Duration;

use crate::config::{Secret, SmtpConfig};
use crate::model::Alert;

/// Where one subscription's alerts go.
///
/// Built from the subscription's configuration, never stored in the outbox, so a rotated
/// secret applies to alerts that are already pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// One email per alert, or one digest for several.
    Email {
        /// The recipient's mailbox (`user@example.org` or `Name <user@example.org>`).
        to: String,
    },
    /// One JSON `POST` per alert, signed when a secret is set.
    Webhook {
        /// The endpoint that receives the `POST`; only its origin appears in error messages.
        url: String,
        /// The key the body is signed with (`X-Trialwatch-Signature`); `None` sends unsigned.
        secret: Option<Secret>,
    },
    /// One message per alert in a team-chat service's incoming-webhook format.
    Chat {
        /// Which format ([`chat::render`]).
        service: crate::model::ChatService,
        /// The service's webhook URL; only its origin appears in error messages.
        url: String,
    },
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
    /// A failure worth retrying later (the outbox backs off and tries again).
    pub fn transient(message: impl Into<String>) -> Self {
        DeliveryError {
            transient: true,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure that will repeat: the alert goes to the dead letters at once.
    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryError {
            transient: false,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Whether the outbox should retry this alert rather than make it a dead letter.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

/// Why a [`Notifier`] could not be built from its configuration; each message names the
/// setting and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// `smtp.host` is empty, so there is nowhere to send mail.
    #[error("smtp.host is empty: set it to the SMTP server's name, e.g. smtp.example.org")]
    EmptyHost,
    #[error(
        "smtp.from `{value}` is not a mailbox ({reason}): write it as `trialwatch <trialwatch@example.org>`"
    )]
    /// `smtp.from` is not an address receivers would accept as a sender.
    BadFrom {
        /// The `smtp.from` value as configured.
        value: String,
        /// Why lettre would not parse it as a mailbox.
        reason: String,
    },
    #[error(
        "smtp.username and its password must be set together: set username and password_file (or password_env) to log in, or neither for a relay that needs no AUTH"
    )]
    /// Only one of `smtp.username` / `smtp.password` is set.
    HalfCredentials,
    #[error(
        "smtp.security = \"none\" would send the password unencrypted to `{host}`: use \"starttls\" or \"tls\", or drop username/password for a local relay"
    )]
    /// A login over an unencrypted connection was configured; refused so the password never
    /// travels in clear.
    PlaintextAuth {
        /// The server the password would have been sent to.
        host: String,
    },
    #[error(
        "smtp.root_cert_file holds no usable certificate ({reason}): give a PEM file with `-----BEGIN CERTIFICATE-----`"
    )]
    /// The extra root certificate for a private SMTP server's CA cannot be used.
    BadRootCert {
        /// What was wrong with the PEM file.
        reason: String,
    },
    /// The TLS parameters for the SMTP connection could not be built.
    #[error("could not set up TLS for smtp.host `{host}`: {reason}")]
    Tls {
        /// The SMTP server the TLS set-up was for.
        host: String,
        /// The TLS library's explanation.
        reason: String,
    },
    /// The shared HTTP client for webhooks could not be built.
    #[error("could not build the HTTP client for webhooks: {reason}")]
    HttpClient {
        /// reqwest's explanation (usually a TLS back-end problem).
        reason: String,
    },
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
            Destination::Chat { service, url } => {
                for alert in alerts {
                    self.webhook
                        .post_chat(url, chat::render(*service, alert))
                        .await?;
                }
                Ok(())
            }
        };
        if result.is_ok() {
            tracing::debug!(
                delivery.kind = match dest {
                    Destination::Email { .. } => "email",
                    Destination::Webhook { .. } => "webhook",
                    Destination::Chat { service, .. } => service.as_str(),
                },
                delivery.alerts = alerts.len(),
                delivery.duration_ms = started.elapsed().as_millis() as u64,
                "alerts delivered"
            );
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

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
}
