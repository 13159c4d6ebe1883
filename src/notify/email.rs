//! Email delivery: renders alerts into a multipart/alternative message (plain text + HTML),
//! sends it over SMTP with lettre, and classifies SMTP failures.
//!
//! Rendering ([`render`]) is pure and deterministic, so tests and a preview command can look at
//! exactly what a subscriber would read. Sending ([`Mailer`]) owns the lettre transport, built
//! once from [`SmtpConfig`]; without lettre's pool feature every send opens a fresh connection,
//! so a relay that restarted between two sends costs nothing.
//!
//! What this file does not do: decide when to send, retry, or group alerts into digests; the
//! outbox does that and hands over the alerts of one message. Nor compute the line diff of a
//! long text: that is [`crate::render::textdiff`], shared with the terminal.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{DeliveryError, SetupError};
use crate::config::{SmtpConfig, SmtpSecurity};
use crate::model::NctId;
use crate::model::{Alert, AlertChange};
use crate::render::textdiff::unified_lines;
use crate::util::text::{error_chain, one_line, plural};

/// A value longer than this (or with a line break) is shown as a line diff, not `old → new`.
const LONG_TEXT_CHARS: usize = 80;
/// A diff longer than this is cut, with a pointer to the study page for the rest.
const MAX_DIFF_LINES: usize = 80;
/// A subject's headline is cut to this many characters; mail clients show less anyway.
const MAX_HEADLINE_CHARS: usize = 160;

/// A rendered message, before it becomes MIME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// The `Subject` header: the most severe change for one alert, counts for a digest.
    pub subject: String,
    /// The `text/plain` part.
    pub text: String,
    /// The `text/html` part; all outside text in it is escaped.
    pub html: String,
    /// `<…@trialwatch>`, stable for the same alerts, so a resent message is recognisable.
    pub message_id: String,
}

/// The `Message-ID` for one message: `<{alert.id}@trialwatch>` for one alert; for a digest,
/// `<digest-{hash of the sorted alert ids}@trialwatch>`, the same whatever the alerts' order.
/// An id with characters a Message-ID cannot hold is replaced by its hash.
pub fn message_id(alerts: &[Alert]) -> String {
    match alerts {
        [one] => {
            if is_dot_atom(&one.id) {
                format!("<{}@trialwatch>", one.id)
            } else {
                format!("<h-{}@trialwatch>", short_hash([one.id.as_str()]))
            }
        }
        many => {
            let ids: BTreeSet<&str> = many.iter().map(|a| a.id.as_str()).collect();
            format!("<digest-{}@trialwatch>", short_hash(ids))
        }
    }
}

/// Renders `alerts` (one: an immediate notice; several: a digest) into subject and bodies.
pub fn render(alerts: &[Alert]) -> RenderedEmail {
    let trials = group_by_trial(alerts);
    let subject = subject(alerts, &trials);
    let mut text = String::new();
    let mut html = String::new();
    let _ = writeln!(
        html,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n\
         <body style=\"font-family: sans-serif; line-height: 1.4\">",
        escape_html(&subject)
    );
    if alerts.len() > 1 {
        let heading = format!(
            "trialwatch daily digest: {} in {}",
            plural(count_changes(alerts), "change"),
            plural(trials.len(), "trial")
        );
        let _ = writeln!(text, "{heading}\n");
        let _ = writeln!(html, "<h1>{}</h1>", escape_html(&heading));
    }
    for (i, trial) in trials.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        render_trial(trial, &mut text, &mut html);
    }
    let subscriptions: BTreeSet<&str> = alerts.iter().map(|a| a.subscription_id.as_str()).collect();
    let subscriptions = subscriptions.into_iter().collect::<Vec<_>>().join(", ");
    let footer = format!(
        "You get this because your trialwatch subscription {subscriptions} watches these fields."
    );
    let stop = format!(
        "To stop these alerts, reply with the subject \"unsubscribe {subscriptions}\", or ask the operator to run `trialwatch unsubscribe {subscriptions}` (or remove it from the configuration)."
    );
    let _ = writeln!(text, "\n-- \n{footer}\n{stop}");
    let _ = writeln!(
        html,
        "<hr><p style=\"color: #666; font-size: small\">{}<br>{}</p>\n</body></html>",
        escape_html(&footer),
        escape_html(&stop)
    );
    RenderedEmail {
        subject,
        text,
        html,
        message_id: message_id(alerts),
    }
}

/// One trial's alerts in a message, versions in ascending order.
struct TrialGroup<'a> {
    /// `None` for the group of events about no trial (health alerts).
    nct_id: Option<&'a NctId>,
    alerts: Vec<&'a Alert>,
}

impl TrialGroup<'_> {
    /// The newest alert's trial info: the title and status the reader will find online.
    fn latest(&self) -> &Alert {
        // A group is created with its first alert, so it is never empty.
        self.alerts[self.alerts.len() - 1]
    }

    fn max_severity(&self) -> Option<crate::model::Severity> {
        self.alerts
            .iter()
            .flat_map(|a| {
                a.changes
                    .iter()
                    .map(|c| c.severity)
                    .chain(a.event.as_ref().map(|e| e.severity))
            })
            .max()
    }
}

/// Trials ordered most severe first, then by NCT id; a stable order for a stable digest.
fn group_by_trial(alerts: &[Alert]) -> Vec<TrialGroup<'_>> {
    let mut groups: Vec<TrialGroup<'_>> = Vec::new();
    for alert in alerts {
        match groups
            .iter_mut()
            .find(|g| g.nct_id == alert.nct_id.as_ref())
        {
            Some(group) => group.alerts.push(alert),
            None => groups.push(TrialGroup {
                nct_id: alert.nct_id.as_ref(),
                alerts: vec![alert],
            }),
        }
    }
    for group in &mut groups {
        group.alerts.sort_by_key(|a| (a.version, a.detected_at));
    }
    groups.sort_by(|a, b| {
        b.max_severity()
            .cmp(&a.max_severity())
            .then_with(|| a.nct_id.cmp(&b.nct_id))
    });
    groups
}

/// Changes most severe first; equal severities keep their canonical path order.
fn by_severity(changes: &[AlertChange]) -> Vec<&AlertChange> {
    let mut sorted: Vec<&AlertChange> = changes.iter().collect();
    sorted.sort_by_key(|c| std::cmp::Reverse(c.severity));
    sorted
}

/// Field changes, with each event (query entry or exit) counted as one.
fn count_changes(alerts: &[Alert]) -> usize {
    alerts
        .iter()
        .map(|a| a.changes.len() + usize::from(a.event.is_some()))
        .sum()
}

fn subject(alerts: &[Alert], trials: &[TrialGroup<'_>]) -> String {
    match alerts {
        [
            Alert {
                event: Some(event),
                nct_id,
                ..
            },
        ] => match nct_id {
            Some(nct_id) => format!("[trialwatch] {nct_id}: {}", super::events::headline(event)),
            None => format!("[trialwatch] {}", super::events::headline(event)),
        },
        [alert] => {
            let headline = by_severity(&alert.changes)
                .first()
                .map(|c| one_line(&c.summary, MAX_HEADLINE_CHARS))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("new version {}", alert.version));
            match &alert.nct_id {
                Some(nct) => format!("[trialwatch] {nct}: {headline}"),
                None => format!("[trialwatch] {headline}"),
            }
        }
        _ => format!(
            "[trialwatch] daily digest: {} in {}",
            plural(count_changes(alerts), "change"),
            plural(trials.len(), "trial")
        ),
    }
}

fn render_trial(trial: &TrialGroup<'_>, text: &mut String, html: &mut String) {
    let latest = trial.latest();
    let info = &latest.trial;
    let heading = match (trial.nct_id, &info.title) {
        (Some(nct), Some(title)) => format!("{nct}: {}", one_line(title, 300)),
        (Some(nct), None) => nct.to_string(),
        (None, _) => "trialwatch itself".to_string(),
    };
    let _ = writeln!(text, "{heading}\n{}", info.url);
    let _ = writeln!(
        html,
        "<h2 style=\"margin-bottom: 0.2em\"><a href=\"{}\">{}</a></h2>",
        escape_html(&info.url),
        escape_html(&heading)
    );
    if let Some(status) = &info.overall_status {
        let _ = writeln!(text, "Overall status: {status}");
        let _ = writeln!(
            html,
            "<p style=\"margin-top: 0\">Overall status: <strong>{}</strong></p>",
            escape_html(status)
        );
    }
    for alert in &trial.alerts {
        if let Some(event) = &alert.event {
            super::events::render_event(alert, event, text, html);
            continue;
        }
        // A version fetched afterwards from CT.gov's history says when CT.gov posted it.
        let when = match alert.ctgov_posted {
            Some(day) => format!(
                "posted by CT.gov on {day}, found {} (a sync had missed it)",
                alert.detected_at.format("%Y-%m-%d %H:%M UTC")
            ),
            None => format!(
                "detected {}",
                alert.detected_at.format("%Y-%m-%d %H:%M UTC")
            ),
        };
        let _ = writeln!(text, "\nVersion {}, {when}", alert.version);
        let _ = writeln!(
            html,
            "<h3 style=\"margin-bottom: 0.2em\">Version {}, {when}</h3>\n<ul>",
            alert.version
        );
        for change in by_severity(&alert.changes) {
            render_change(change, text, html);
        }
        html.push_str("</ul>\n");
    }
}

fn render_change(c: &AlertChange, text: &mut String, html: &mut String) {
    let severity = c.severity.to_string().to_ascii_uppercase();
    let summary = one_line(&c.summary, 300);
    let path = &c.change.path;
    let old = c.change.old.as_ref().map(value_text);
    let new = c.change.new.as_ref().map(value_text);
    let _ = writeln!(text, "\n  [{severity}] {summary}");
    let _ = writeln!(
        html,
        "<li style=\"margin-bottom: 0.6em\"><strong style=\"color: {}\">{severity}</strong> {}<br>",
        severity_colour(&severity),
        escape_html(&summary)
    );
    let is_long = |v: &Option<String>| v.as_deref().is_some_and(is_long_text);
    if is_long(&old) || is_long(&new) {
        let lines = line_diff(old.as_deref().unwrap_or(""), new.as_deref().unwrap_or(""));
        let _ = writeln!(text, "    {path}:");
        let _ = write!(
            html,
            "<code>{}</code>:\n<pre style=\"background: #f6f8fa; padding: 0.5em; white-space: pre-wrap\">",
            escape_html(path)
        );
        for line in &lines {
            let _ = writeln!(text, "    {line}");
            let colour = match line.as_bytes().first() {
                Some(b'+') => Some("#116329"),
                Some(b'-') => Some("#82071e"),
                Some(b'@') => Some("#666"),
                _ => None,
            };
            match colour {
                Some(colour) => {
                    let _ = writeln!(
                        html,
                        "<span style=\"color: {colour}\">{}</span>",
                        escape_html(line)
                    );
                }
                None => {
                    let _ = writeln!(html, "{}", escape_html(line));
                }
            }
        }
        html.push_str("</pre></li>\n");
    } else {
        let old = old.as_deref().unwrap_or("(none)");
        let new = new.as_deref().unwrap_or("(none)");
        let _ = writeln!(text, "    {path}: {old} → {new}");
        let _ = writeln!(
            html,
            "<code>{}</code>: <del>{}</del> → <ins>{}</ins></li>",
            escape_html(path),
            escape_html(old),
            escape_html(new)
        );
    }
}

fn severity_colour(upper: &str) -> &'static str {
    match upper {
        "CRITICAL" => "#b00020",
        "NOTABLE" => "#9a6700",
        _ => "#555",
    }
}

/// How a field value reads in a message: text as itself, other JSON compact, or pretty-printed
/// when compact would be long (so a long list diffs line by line).
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => {
            let compact = other.to_string();
            if compact.chars().count() > LONG_TEXT_CHARS {
                serde_json::to_string_pretty(other).unwrap_or(compact)
            } else {
                compact
            }
        }
    }
}

fn is_long_text(s: &str) -> bool {
    s.contains('\n') || s.chars().count() > LONG_TEXT_CHARS
}

/// A unified line diff (`@@ -a,b +c,d @@`, then ` `/`-`/`+` lines, the shared
/// [`unified_lines`]) cut after [`MAX_DIFF_LINES`].
fn line_diff(old: &str, new: &str) -> Vec<String> {
    let mut lines = unified_lines(old, new);
    if lines.len() > MAX_DIFF_LINES {
        let rest = lines.len() - MAX_DIFF_LINES;
        lines.truncate(MAX_DIFF_LINES);
        lines.push(format!(
            "… {rest} more diff lines: see the study page for the full text"
        ));
    }
    lines
}

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// RFC 5322 dot-atom text: what may stand left of the `@` in a Message-ID without quoting.
fn is_dot_atom(s: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-";
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || SPECIALS.contains(c))
}

/// 32 hex digits of SHA-256 over the ids joined by newlines.
fn short_hash<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = Sha256::new();
    for (i, id) in ids.into_iter().enumerate() {
        if i > 0 {
            hasher.update(b"\n");
        }
        hasher.update(id.as_bytes());
    }
    let digest = hasher.finalize();
    hex::encode(&digest[..16])
}

/// The SMTP side of a [`super::Notifier`]: the transport, built once, and what error messages
/// need to say where they were going.
#[derive(Clone)]
pub(crate) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// Parsed once at start-up, so a bad `from` fails there and not on every alert.
    from: Mailbox,
    /// `host:port`, named in error messages so the reader knows which server failed.
    endpoint: String,
    /// lettre's timeout is per connect and per reply; this bounds the whole conversation so a
    /// server that answers very slowly cannot hold a delivery worker for ever.
    total_timeout: Duration,
    /// Why no message can be sent from this process although the config is valid: the
    /// password (systemd credential, file, environment) is not available here. Transient,
    /// so the alert waits for the service, which has it.
    password_unavailable: Option<String>,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("endpoint", &self.endpoint)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub(crate) fn new(cfg: &SmtpConfig) -> Result<Self, SetupError> {
        let host = cfg.host.trim();
        if host.is_empty() {
            return Err(SetupError::EmptyHost);
        }
        let from: Mailbox = cfg.from.parse().map_err(|e| SetupError::BadFrom {
            value: cfg.from.clone(),
            reason: format!("{e}"),
        })?;
        let mut password_unavailable = None;
        let credentials = match (&cfg.username, &cfg.password, &cfg.password_source) {
            (Some(user), Some(password), _) => Some(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            )),
            (None, None, _) => None,
            (Some(_), None, Some(source)) => {
                password_unavailable = Some(format!(
                    "the SMTP password ({}) is not available here: {}",
                    source.describe,
                    source
                        .unavailable
                        .as_deref()
                        .unwrap_or("it could not be read")
                ));
                None
            }
            _ => return Err(SetupError::HalfCredentials),
        };
        if cfg.username.is_some() && cfg.security == SmtpSecurity::None && !is_loopback(host) {
            return Err(SetupError::PlaintextAuth {
                host: host.to_string(),
            });
        }
        let tls = match cfg.security {
            SmtpSecurity::None => Tls::None,
            SmtpSecurity::StartTls => Tls::Required(tls_parameters(host, cfg)?),
            SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(host, cfg)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(cfg.timeout));
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            endpoint: format!("{host}:{}", cfg.port),
            total_timeout: cfg.timeout.saturating_mul(3),
            password_unavailable,
        })
    }

    /// Sends one message for `alerts` to `to`.
    pub(crate) async fn send(&self, to: &str, alerts: &[Alert]) -> Result<(), DeliveryError> {
        if let Some(why) = &self.password_unavailable {
            return Err(DeliveryError::transient(why.clone()));
        }
        let to: Mailbox = to.trim().parse().map_err(|e| {
            DeliveryError::permanent(format!(
                "the subscription's email address is not valid ({e}): fix it in the subscription"
            ))
        })?;
        let rendered = render(alerts);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .message_id(Some(rendered.message_id))
            // RFC 3834: tells vacation responders and list servers not to answer.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_string(),
            ))
            // RFC 2369: mail clients show an "unsubscribe" button that writes to the sender.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                list_unsubscribe(&self.from, alerts),
            ))
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ))
            .map_err(|e| {
                DeliveryError::permanent(format!("could not build the email message: {e}"))
            })?;
        match tokio::time::timeout(self.total_timeout, self.transport.send(message)).await {
            Err(_) => Err(DeliveryError::transient(format!(
                "SMTP server {} did not finish the conversation within {:?}: will retry; raise smtp.timeout_secs if the server is just slow",
                self.endpoint, self.total_timeout
            ))),
            Ok(Err(err)) => Err(classify(&err, &self.endpoint)),
            Ok(Ok(_response)) => Ok(()),
        }
    }
}

/// `<mailto:{from}?subject=unsubscribe%20{ids}>`: the unsubscribe request reaches the operator
/// who runs trialwatch, with the subscription IDs to remove.
pub fn list_unsubscribe(from: &Mailbox, alerts: &[Alert]) -> String {
    let ids: BTreeSet<&str> = alerts.iter().map(|a| a.subscription_id.as_str()).collect();
    let ids: Vec<String> = ids
        .into_iter()
        .map(|id| {
            id.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect()
        })
        .collect();
    format!(
        "<mailto:{}?subject=unsubscribe%20{}>",
        from.email,
        ids.join("%20")
    )
}

fn tls_parameters(host: &str, cfg: &SmtpConfig) -> Result<TlsParameters, SetupError> {
    let mut builder = TlsParameters::builder(host.to_string());
    if let Some(pem) = &cfg.extra_root_cert_pem {
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(SetupError::BadRootCert {
                reason: "no PEM certificate block found".into(),
            });
        }
        let cert = Certificate::from_pem(pem.as_bytes()).map_err(|e| SetupError::BadRootCert {
            reason: e.to_string(),
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| SetupError::Tls {
        host: host.to_string(),
        reason: error_chain(&e),
    })
}

/// The rustls error behind a failed handshake. lettre reports those as connection errors
/// wrapping an `io::Error`, whose `source()` skips the wrapped error, hence `get_ref`.
fn tls_failure(err: &lettre::transport::smtp::Error) -> Option<&rustls::Error> {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        source = cause.source();
    }
    None
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Sorts an SMTP failure into transient or permanent, with a message that says what to do.
///
/// 4xx replies, connection and network errors, timeouts and TLS handshake failures may pass;
/// 5xx replies (unknown user, bad credentials, policy) and client-side refusals (no usable AUTH
/// mechanism, no STARTTLS offered while it is required) will not.
fn classify(err: &lettre::transport::smtp::Error, endpoint: &str) -> DeliveryError {
    let detail = error_chain(err);
    if let Some(code) = err.status() {
        let code = u16::from(code);
        if err.is_transient() {
            return DeliveryError::transient(format!(
                "SMTP server {endpoint} deferred the message ({detail}): will retry"
            ));
        }
        let hint = match code {
            535 | 534 | 454 => {
                "check smtp.username and the password (smtp.password_file, smtp.password_env or the smtp-password credential)"
            }
            530 => {
                "the server wants authentication: set smtp.username and smtp.password_file (or smtp.password_env)"
            }
            550 | 551 | 553 | 501 => {
                "the server refused an address: check the subscriber's address and smtp.from"
            }
            552 => "the server refused the message as too large",
            554 => "the server refused the message (policy or spam filter): see its log",
            _ => "see the SMTP server's log",
        };
        return DeliveryError::permanent(format!(
            "SMTP server {endpoint} refused the message permanently ({detail}): {hint}"
        ));
    }
    if err.is_timeout() {
        return DeliveryError::transient(format!(
            "SMTP server {endpoint} timed out ({detail}): will retry; check the server is up, or raise smtp.timeout_secs"
        ));
    }
    if err.is_tls() || tls_failure(err).is_some() {
        let hint = match tls_failure(err) {
            Some(rustls::Error::InvalidCertificate(_)) => {
                "the server's certificate is not trusted: check that smtp.host is the name on the certificate and, for a private CA, set smtp.root_cert_file"
            }
            _ => "check that smtp.security matches the port (starttls: 587, tls: 465)",
        };
        return DeliveryError::transient(format!(
            "TLS with SMTP server {endpoint} failed ({detail}): will retry; {hint}"
        ));
    }
    if err.is_client() {
        return DeliveryError::permanent(format!(
            "could not talk to SMTP server {endpoint} as configured ({detail}): check smtp.security (STARTTLS offered?) and that the server offers AUTH PLAIN or LOGIN"
        ));
    }
    DeliveryError::transient(format!(
        "could not deliver to SMTP server {endpoint} ({detail}): will retry; check that it is running and that smtp.host and smtp.port are right"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;
    use crate::model::TrialInfo;
    use crate::model::{ChangeKind, FieldChange};

    fn change(path: &str, old: &str, new: &str, severity: Severity, summary: &str) -> AlertChange {
        AlertChange {
            change: FieldChange {
                path: path.into(),
                kind: ChangeKind::Changed,
                old: Some(old.into()),
                new: Some(new.into()),
            },
            severity,
            summary: summary.into(),
        }
    }

    fn alert(id: &str, nct: &str, version: u32, changes: Vec<AlertChange>) -> Alert {
        let nct_id: NctId = nct.parse().unwrap();
        Alert {
            id: id.into(),
            subscription_id: "sub-1".into(),
            version,
            detected_at: "2024-05-01T06:00:00Z".parse().unwrap(),
            trial: TrialInfo {
                title: Some("A <b>bold</b> & \"quoted\" trial".into()),
                overall_status: Some("COMPLETED".into()),
                url: nct_id.ctgov_url(),
            },
            nct_id: Some(nct_id),
            changes,
            ctgov_posted: None,
            event: None,
        }
    }

    #[test]
    fn subject_headlines_the_most_severe_change() {
        let a = alert(
            "a1",
            "NCT02241018",
            3,
            vec![
                change(
                    "design.phases",
                    "PHASE2",
                    "PHASE3",
                    Severity::Minor,
                    "phase 2 → 3",
                ),
                change(
                    "status.overallStatus",
                    "RECRUITING",
                    "COMPLETED",
                    Severity::Critical,
                    "status RECRUITING → COMPLETED",
                ),
            ],
        );
        let r = render(std::slice::from_ref(&a));
        assert_eq!(
            r.subject,
            "[trialwatch] NCT02241018: status RECRUITING → COMPLETED"
        );
        assert_eq!(r.message_id, "<a1@trialwatch>");
        // Most severe first in the body too.
        let critical = r.text.find("[CRITICAL]").unwrap();
        let minor = r.text.find("[MINOR]").unwrap();
        assert!(critical < minor, "{}", r.text);
        assert!(
            r.text
                .contains("status.overallStatus: RECRUITING → COMPLETED")
        );
    }

    #[test]
    fn html_escapes_outside_text() {
        let a = alert(
            "a1",
            "NCT02241018",
            1,
            vec![change(
                "x.y",
                "<script>",
                "a&b",
                Severity::Minor,
                "<i>sum</i>",
            )],
        );
        let r = render(&[a]);
        assert!(!r.html.contains("<script>"));
        assert!(!r.html.contains("<b>bold"));
        assert!(r.html.contains("&lt;script&gt;"));
        assert!(
            r.html
                .contains("A &lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot; trial")
        );
        assert!(r.html.contains("&lt;i&gt;sum&lt;/i&gt;"));
    }

    #[test]
    fn long_text_becomes_a_line_diff_with_little_context() {
        let old = "Inclusion:\n- a\n- b\n- c\n- d\n- e\n- f\n";
        let new = "Inclusion:\n- a\n- b\n- c\n- D\n- e\n- f\n";
        let lines = line_diff(old, new);
        assert_eq!(
            lines,
            vec![
                "@@ -3,5 +3,5 @@",
                " - b",
                " - c",
                "-- d",
                "+- D",
                " - e",
                " - f"
            ]
        );
    }

    #[test]
    fn digest_ids_are_stable_and_order_free() {
        let a = alert("a1", "NCT02241018", 1, vec![]);
        let b = alert("b2", "NCT00000001", 1, vec![]);
        let ab = message_id(&[a.clone(), b.clone()]);
        assert_eq!(ab, message_id(&[b, a]));
        assert!(ab.starts_with("<digest-") && ab.ends_with("@trialwatch>"));
    }

    #[test]
    fn unsafe_ids_are_hashed_in_message_ids() {
        let a = alert("has space@x", "NCT02241018", 1, vec![]);
        let id = message_id(&[a]);
        assert!(id.starts_with("<h-") && !id.contains(' '), "{id}");
    }

    #[test]
    fn digest_subject_counts_changes_and_trials() {
        let c = || change("a.b", "1", "2", Severity::Minor, "s");
        let alerts = [
            alert("a", "NCT00000001", 1, vec![c(), c()]),
            alert("b", "NCT00000002", 1, vec![c()]),
        ];
        assert_eq!(
            render(&alerts).subject,
            "[trialwatch] daily digest: 3 changes in 2 trials"
        );
    }
}
