//! Webhook delivery: one signed JSON `POST` per alert, and the classification of the answer.
//!
//! The wire format is a public contract (schema 1):
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! User-Agent: trialwatch/<version>
//! X-Trialwatch-Event-Id: <alert id, the same on every retry>
//! X-Trialwatch-Timestamp: <unix seconds>
//! X-Trialwatch-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>   (with a secret)
//!
//! {"schema": 1, "event_id", "nct_id", "version", "detected_at", "trial": {…}, "changes": [{…}]}
//! ```
//!
//! [`sign`] and [`verify`] are public so receivers, docs and tests share one definition.
//! A receiver in another language checks the raw body bytes, before parsing the JSON:
//!
//! ```python
//! import hmac, hashlib, time
//!
//! def verify(secret: bytes, headers, body: bytes, tolerance=300) -> bool:
//!     ts = headers.get("X-Trialwatch-Timestamp", "")
//!     sig = headers.get("X-Trialwatch-Signature", "")
//!     if not ts.isdigit() or abs(time.time() - int(ts)) > tolerance:
//!         return False  # missing, stale or replayed
//!     mac = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256)
//!     return hmac.compare_digest("sha256=" + mac.hexdigest(), sig)
//! ```
//!
//! Redirects are not followed: a signed payload goes only where the subscription says.
//! This file does not retry; it says whether a retry may help ([`DeliveryError::transient`]).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use sha2::Sha256;

use super::{DeliveryError, SetupError};
use crate::config::Secret;
use crate::model::NctId;
use crate::model::{Alert, AlertChange, AlertEvent, TrialInfo};
use crate::util::http::{is_transient_status, retry_after};
use crate::util::text::{error_chain, one_line};

/// The payload's `schema` field; bumped only for a change a receiver must know about.
pub const SCHEMA_VERSION: u32 = 1;
/// Carries the alert id, so a receiver can drop a retried delivery it already has.
pub const EVENT_ID_HEADER: &str = "X-Trialwatch-Event-Id";
/// Unix seconds when the request was signed; part of the signed text, so receivers can
/// refuse old (replayed) requests.
pub const TIMESTAMP_HEADER: &str = "X-Trialwatch-Timestamp";
/// `sha256=<hex>` HMAC of the timestamp and body; sent only when the subscription has a secret.
pub const SIGNATURE_HEADER: &str = "X-Trialwatch-Signature";
/// How much of an error answer's body goes into the error message.
const MAX_ANSWER_SNIPPET: usize = 200;

/// The JSON body of one webhook call, in the field order receivers see.
#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    /// [`SCHEMA_VERSION`], so a receiver can tell which payload shape it got.
    pub schema: u32,
    /// The alert id: the same on every retry, so receivers can drop repeats.
    pub event_id: &'a str,
    /// The trial that changed; left out for a health alert, which is about no trial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nct_id: Option<&'a NctId>,
    /// The stored version this alert reports, to match `trialwatch history`.
    pub version: u32,
    /// RFC 3339 in UTC (`2024-05-01T06:00:00Z`).
    pub detected_at: String,
    /// Title, status and link, so a receiver can show the trial without looking it up.
    pub trial: &'a TrialInfo,
    /// `{"path", "kind", "old"?, "new"?, "severity", "summary"}` each.
    pub changes: &'a [AlertChange],
    /// `YYYY-MM-DD` CT.gov posted the version, present only for a version trialwatch missed
    /// and fetched from CT.gov's record history afterwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctgov_posted: Option<String>,
    /// For an event that is no field change (a trial entering or leaving a watched query):
    /// `{"kind", "query", "severity", "summary", "reason", "trial", "phase"?, "sponsor"?, "key"}`;
    /// `version` is then 0 and `changes` empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<&'a AlertEvent>,
}

impl<'a> Payload<'a> {
    /// The payload for `alert`, borrowing from it (the body is built again on each retry).
    pub fn new(alert: &'a Alert) -> Self {
        Payload {
            schema: SCHEMA_VERSION,
            event_id: &alert.id,
            nct_id: alert.nct_id.as_ref(),
            version: alert.version,
            detected_at: rfc3339(alert.detected_at),
            trial: &alert.trial,
            changes: &alert.changes,
            ctgov_posted: alert.ctgov_posted.map(|d| d.to_string()),
            event: alert.event.as_ref(),
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The body bytes for `alert`, exactly as sent and signed.
pub fn body(alert: &Alert) -> Vec<u8> {
    // Serializing plain strings, numbers and JSON values cannot fail.
    serde_json::to_vec(&Payload::new(alert)).unwrap_or_default()
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length; `new_from_slice` only fails for fixed-size-key MACs.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Trialwatch-Signature` header value: `sha256=` and the lowercase hex
/// HMAC-SHA256 of `"{timestamp}.{body}"` keyed with `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Whether `signature` (a `X-Trialwatch-Signature` value, `sha256=<hex>`) is the signature of
/// `body` sent at `timestamp` under `secret`. The comparison takes the same time whichever byte
/// differs. Receivers should also refuse a timestamp far from their clock (say 5 minutes), so a
/// captured request cannot be replayed later.
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], signature: &str) -> bool {
    let Some(hex_part) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_part) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&expected).is_ok()
}

/// The HTTP side of a [`super::Notifier`]: one client, shared by every webhook.
#[derive(Clone)]
pub(crate) struct Poster {
    /// Pools connections per host; carries the timeout and the `User-Agent`.
    client: reqwest::Client,
    /// Named in timeout messages.
    timeout: Duration,
}

impl fmt::Debug for Poster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poster")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a refused receiver certificate means and how to fix it. The trusted roots are the
/// bundled ones plus the system store (`/etc/ssl/certs`, or the PEM file `SSL_CERT_FILE` names,
/// which the message names when it is set).
fn certificate_message(origin: &str, reason: &str) -> String {
    let store = match std::env::var_os("SSL_CERT_FILE") {
        Some(f) => format!(
            "the CA file SSL_CERT_FILE names ({}) does not hold the CA that signed it",
            std::path::Path::new(&f).display()
        ),
        None => "the system's CA store (/etc/ssl/certs) does not hold the CA that signed it".into(),
    };
    format!(
        "webhook {origin}'s TLS certificate was refused ({reason}): {store}; not retried. For a \
         receiver with a private CA, add that CA's certificate to the system store \
         (/usr/local/share/ca-certificates/, then update-ca-certificates) or set SSL_CERT_FILE \
         to a PEM file holding it, restart trialwatch and `trialwatch outbox retry --all`; \
         otherwise give the receiver a certificate from a public CA for this host name"
    )
}

impl Poster {
    pub(crate) fn new(timeout: Duration) -> Result<Self, SetupError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("trialwatch/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SetupError::HttpClient {
                reason: error_chain(&e),
            })?;
        Ok(Poster { client, timeout })
    }

    /// Posts one alert; `Ok` only when the receiver answered 2xx.
    pub(crate) async fn post(
        &self,
        url: &str,
        secret: Option<&Secret>,
        alert: &Alert,
    ) -> Result<(), DeliveryError> {
        let url = checked_url(url)?;
        let origin = origin(&url);
        let event_id = HeaderValue::from_str(&alert.id).map_err(|_| {
            DeliveryError::permanent(format!(
                "alert id {:?} cannot be sent as the {EVENT_ID_HEADER} header (control or non-ASCII characters)",
                alert.id
            ))
        })?;
        let body = body(alert);
        let timestamp = Utc::now().timestamp();
        let mut request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(EVENT_ID_HEADER, event_id)
            .header(TIMESTAMP_HEADER, timestamp.to_string());
        if let Some(secret) = secret {
            request = request.header(
                SIGNATURE_HEADER,
                sign(secret.expose().as_bytes(), timestamp, &body),
            );
        }
        self.finish(request.body(body), &origin).await
    }

    /// Posts a team-chat message (the chat formats are [`super::chat`]'s); answers are
    /// classified exactly as for a webhook.
    pub(crate) async fn post_chat(
        &self,
        url: &str,
        chat: super::chat::ChatRequest,
    ) -> Result<(), DeliveryError> {
        let url = checked_url(url)?;
        let origin = origin(&url);
        let mut request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, chat.content_type);
        for (name, value) in chat.headers {
            request = request.header(name, value);
        }
        self.finish(request.body(chat.body), &origin).await
    }

    /// Sends the request and turns a failure or an unsuccessful answer into a [`DeliveryError`].
    async fn finish(
        &self,
        request: reqwest::RequestBuilder,
        origin: &str,
    ) -> Result<(), DeliveryError> {
        let response = request
            .send()
            .await
            .map_err(|e| self.request_failed(e, origin))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = retry_after(response.headers(), Utc::now());
        let snippet = answer_snippet(response).await;
        let mut err = classify_status(status, origin, &snippet);
        err.retry_after = retry_after;
        Err(err)
    }

    fn request_failed(&self, err: reqwest::Error, origin: &str) -> DeliveryError {
        // The URL's path or query may hold a token: keep it out of the message.
        let err = err.without_url();
        let detail = error_chain(&err);
        if let Some(reason) = crate::util::http::certificate_problem(&err) {
            return DeliveryError::permanent(certificate_message(origin, &reason));
        }
        if err.is_timeout() {
            DeliveryError::transient(format!(
                "webhook {origin} did not answer within {:?} ({detail}): will retry",
                self.timeout
            ))
        } else if err.is_connect() {
            DeliveryError::transient(format!(
                "could not connect to webhook {origin} ({detail}): will retry; check that the receiver is up"
            ))
        } else if err.is_builder() {
            DeliveryError::permanent(format!(
                "could not build the request to webhook {origin} ({detail})"
            ))
        } else {
            DeliveryError::transient(format!(
                "webhook request to {origin} failed ({detail}): will retry"
            ))
        }
    }
}

/// `scheme://host[:port]`: enough to say which receiver failed, without the path or query.
/// The subscription's URL, parsed and checked to be http(s) with a host.
fn checked_url(url: &str) -> Result<Url, DeliveryError> {
    let url = Url::parse(url.trim()).map_err(|e| {
        DeliveryError::permanent(format!(
            "the subscription's webhook URL is not valid ({e}): fix it in the subscription"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(DeliveryError::permanent(format!(
            "the subscription's webhook URL must be http:// or https:// with a host, not `{}:`",
            url.scheme()
        )));
    }
    Ok(url)
}

fn origin(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// The first bytes of an error answer, flattened to one line, for the error message.
async fn answer_snippet(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ANSWER_SNIPPET * 4 {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    one_line(&String::from_utf8_lossy(&bytes), MAX_ANSWER_SNIPPET)
}

/// 2xx is handled before; 408, 429 and 5xx may pass later; every other answer will repeat.
fn classify_status(status: StatusCode, origin: &str, snippet: &str) -> DeliveryError {
    let answered = if snippet.is_empty() {
        format!("webhook {origin} answered {status}")
    } else {
        format!("webhook {origin} answered {status}: {snippet}")
    };
    let code = status.as_u16();
    if is_transient_status(code) {
        return DeliveryError::transient(format!("{answered}; will retry"));
    }
    let hint = match code {
        300..=399 => {
            "redirects are not followed, so a signed alert never goes elsewhere: put the final URL in the subscription"
        }
        401 | 403 => {
            "the receiver refused us: check that the subscription's secret matches the receiver's"
        }
        404 | 410 => "check the subscription's webhook URL",
        400 | 415 | 422 => "the receiver does not accept trialwatch's payload (schema 1)",
        _ => "the same request would be refused again",
    };
    DeliveryError::permanent(format!("{answered}; {hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject_tampering() {
        let sig = sign(b"k", 1_700_000_000, b"{\"a\":1}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert!(verify(b"k", 1_700_000_000, b"{\"a\":1}", &sig));
        assert!(!verify(b"other", 1_700_000_000, b"{\"a\":1}", &sig));
        assert!(!verify(b"k", 1_700_000_001, b"{\"a\":1}", &sig));
        assert!(!verify(b"k", 1_700_000_000, b"{\"a\":2}", &sig));
        assert!(!verify(b"k", 1_700_000_000, b"{\"a\":1}", &sig[7..]));
        assert!(!verify(b"k", 1_700_000_000, b"{\"a\":1}", "sha256=zz"));
    }

    /// Guards the signature definition against a known vector, computed independently with
    /// `printf '1700000000.{}' | openssl dgst -sha256 -hmac secret`.
    #[test]
    fn signature_matches_an_independent_computation() {
        assert_eq!(
            sign(b"secret", 1_700_000_000, b"{}"),
            "sha256=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }

    #[test]
    fn statuses_are_classified() {
        for (code, transient) in [
            (500, true),
            (503, true),
            (429, true),
            (408, true),
            (404, false),
            (400, false),
            (401, false),
            (301, false),
        ] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(
                classify_status(status, "http://x", "").transient,
                transient,
                "{code}"
            );
        }
    }

    #[test]
    fn origins_drop_path_and_query() {
        let url = Url::parse("https://hooks.example.org:8443/T0/B0/tok3n?key=x").unwrap();
        assert_eq!(origin(&url), "https://hooks.example.org:8443");
    }
}
