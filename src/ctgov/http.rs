//! One HTTP exchange with CT.gov, for every call of the client: a GET under the shared rate
//! limiter with retries and backoff (honouring `Retry-After`), the answer classified into a
//! [`FetchError`], the body read with a size cap (decoded, so gzip bombs stop early), and the
//! redirect policy that follows CT.gov's own origin only. What the calls ask for and how their
//! answers are matched to trials is [`super::client`]'s.

use std::sync::atomic::Ordering;

use reqwest::header;
use reqwest::{StatusCode, Url};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::client::{CtGovClient, MAX_ERROR_BODY, MAX_RETRY_AFTER, Parser};
use super::error::{FetchError, NOT_UTF8};
use crate::util::backoff::full_jitter;
use crate::util::http::retry_after;
use crate::util::text::error_chain;

impl CtGovClient {
    pub(super) fn url(&self, path: &str, params: &[(&str, &str)]) -> Result<Url, FetchError> {
        let mut url = Url::parse(&format!("{}{path}", self.inner.api)).map_err(|e| {
            FetchError::Config(format!("cannot build a CT.gov URL for {path}: {e}"))
        })?;
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        Ok(url)
    }

    /// A URL under `{base_url}/api/int` (the record-history endpoints).
    pub(super) fn int_url(&self, path: &str) -> Result<Url, FetchError> {
        Url::parse(&format!("{}{path}", self.inner.int))
            .map_err(|e| FetchError::Config(format!("cannot build a CT.gov URL for {path}: {e}")))
    }

    /// GET with rate limiting and retries. `Ok(None)` only for a 404 when `accept_404`.
    pub(super) async fn get<T>(
        &self,
        url: &Url,
        subject: &str,
        accept_404: bool,
        parse: Parser<'_, T>,
    ) -> Result<Option<T>, FetchError> {
        Ok(self
            .get_from(url, subject, accept_404, parse)
            .await?
            .map(|(v, _)| v))
    }

    /// [`get`](Self::get), also handing back the URL that answered (after redirects).
    pub(super) async fn get_from<T>(
        &self,
        url: &Url,
        subject: &str,
        accept_404: bool,
        parse: Parser<'_, T>,
    ) -> Result<Option<(T, Url)>, FetchError> {
        let cfg = &self.inner.cfg;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.inner.limiter.acquire().await;
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let err = match self.attempt(url, subject, accept_404, parse).await {
                Ok(v) => return Ok(v),
                Err(err) => err,
            };
            if !err.is_transient() {
                return Err(err);
            }
            let retry_after = err.retry_after();
            if attempt >= cfg.max_attempts || retry_after.is_some_and(|ra| ra > MAX_RETRY_AFTER) {
                warn!(
                    http.url = %url,
                    http.status = err.status().unwrap_or(0),
                    retry.attempts = attempt,
                    error = %err,
                    "giving up on a CT.gov request"
                );
                return Err(FetchError::GaveUp {
                    subject: subject.to_string(),
                    attempts: attempt,
                    last: Box::new(err),
                });
            }
            let delay = match retry_after {
                Some(ra) => {
                    // Everyone waits: CT.gov throttles per IP, not per request.
                    self.inner.limiter.hold_until(Instant::now() + ra);
                    ra
                }
                None => full_jitter(cfg.backoff_base, cfg.backoff_cap, attempt),
            };
            if let Some(observer) = self.inner.on_retry.get() {
                let reason = match &err {
                    FetchError::Status { status, .. } => format!("HTTP {status}"),
                    FetchError::Transport {
                        timed_out: true, ..
                    } => "timed out".to_string(),
                    FetchError::Transport { .. } => "no answer".to_string(),
                    _ => "unusable answer".to_string(),
                };
                (observer.0)(&super::client::RetryNotice {
                    attempt: attempt + 1,
                    max_attempts: cfg.max_attempts,
                    delay,
                    timeout: cfg.timeout,
                    reason,
                });
            }
            warn!(
                http.url = %url,
                http.status = err.status().unwrap_or(0),
                retry.attempt = attempt,
                retry.delay_ms = delay.as_millis() as u64,
                error = %err,
                "CT.gov request failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP exchange, classified.
    async fn attempt<T>(
        &self,
        url: &Url,
        subject: &str,
        accept_404: bool,
        parse: Parser<'_, T>,
    ) -> Result<Option<(T, Url)>, FetchError> {
        let transport = |e: reqwest::Error| match crate::util::http::certificate_problem(&e) {
            Some(detail) => FetchError::Certificate {
                subject: subject.to_string(),
                url: url.to_string(),
                detail,
            },
            None => FetchError::Transport {
                subject: subject.to_string(),
                url: url.to_string(),
                timed_out: e.is_timeout(),
                retryable: !(e.is_redirect() || e.is_builder()),
                // The URL is in our own message already.
                detail: error_chain(&e.without_url()),
            },
        };
        let bad_body = |detail: String| FetchError::BadBody {
            subject: subject.to_string(),
            url: url.to_string(),
            detail,
        };
        let resp = self
            .inner
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let answered = resp.url().clone();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let retry_after = retry_after(resp.headers(), chrono::Utc::now());
        if status.is_redirection() {
            // Only a redirect the policy refused (another origin) comes back as an answer.
            let location = resp
                .headers()
                .get(header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            warn!(
                http.url = %url,
                http.status = status.as_u16(),
                http.location = %location,
                "CT.gov redirected to another host; not followed"
            );
            return Err(FetchError::Redirected {
                subject: subject.to_string(),
                url: url.to_string(),
                status: status.as_u16(),
                location,
            });
        }
        let body = self
            .read_body(resp, status.is_success())
            .await
            .map_err(|e| match e {
                BodyError::Transport(e) => transport(e),
                BodyError::TooLarge => FetchError::TooLarge {
                    subject: subject.to_string(),
                    url: url.to_string(),
                    limit_mb: self.inner.cfg.max_body_mb,
                },
            })?;
        debug!(
            http.url = %url,
            http.status = status.as_u16(),
            http.body_bytes = body.len(),
            "CT.gov answered"
        );
        if status == StatusCode::NOT_FOUND && accept_404 {
            return Ok(None);
        }
        if !status.is_success() {
            let cut = &body[..body.len().min(MAX_ERROR_BODY)];
            return Err(FetchError::Status {
                subject: subject.to_string(),
                url: url.to_string(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(cut).into_owned(),
                retry_after,
            });
        }
        if content_type.contains("html") {
            return Err(bad_body(format!(
                "an HTML page ({content_type}, {} bytes) instead of JSON",
                body.len()
            )));
        }
        let text = std::str::from_utf8(&body).map_err(|e| bad_body(format!("{NOT_UTF8}: {e}")))?;
        parse(text).map(|v| Some((v, answered))).map_err(bad_body)
    }
}

/// Why a body could not be read whole.
enum BodyError {
    /// The connection broke (or the gzip stream did) while reading.
    Transport(reqwest::Error),
    /// The decoded body passed `max_body_mb`.
    TooLarge,
}

impl CtGovClient {
    /// Reads the (already gzip-decoded) body chunk by chunk and stops as soon as it passes
    /// `max_body_mb`, so a huge or endless answer, compressed or not, never fills memory. An
    /// error answer's body (`!success`) is only needed for its start: reading stops, without an
    /// error, at [`MAX_ERROR_BODY`].
    async fn read_body(
        &self,
        mut resp: reqwest::Response,
        success: bool,
    ) -> Result<Vec<u8>, BodyError> {
        let limit = usize::try_from(self.inner.cfg.max_body_mb.saturating_mul(1024 * 1024))
            .unwrap_or(usize::MAX);
        let announced = resp
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        if success && announced > limit {
            return Err(BodyError::TooLarge);
        }
        let mut body = Vec::with_capacity(announced.min(limit).min(16 * 1024 * 1024));
        while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
            if !success {
                let room = MAX_ERROR_BODY.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= MAX_ERROR_BODY {
                    break;
                }
                continue;
            }
            if chunk.len() > limit.saturating_sub(body.len()) {
                return Err(BodyError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The origin (scheme, host, port) of a URL, to compare redirect targets with `base_url`'s.
fn origin(url: &Url) -> (String, Option<String>, Option<u16>) {
    (
        url.scheme().to_ascii_lowercase(),
        url.host_str().map(str::to_ascii_lowercase),
        url.port_or_known_default(),
    )
}

/// Follows up to 5 redirects within `base`'s origin (CT.gov answers an alias ID with a 301 to
/// the canonical study); a redirect elsewhere is not followed, so the 3xx itself becomes the
/// answer and `attempt` reports it.
pub(super) fn same_origin_redirects(base: &Url) -> reqwest::redirect::Policy {
    let home = origin(base);
    reqwest::redirect::Policy::custom(move |attempt| {
        if origin(attempt.url()) != home {
            attempt.stop()
        } else if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else {
            attempt.follow()
        }
    })
}

/// `get` lacks a value only for an accepted 404, which callers passing `accept_404 = false`
/// never see; this keeps that impossible case an error rather than a panic.
pub(super) fn no_answer(url: &Url, subject: &str) -> FetchError {
    FetchError::BadBody {
        subject: subject.to_string(),
        url: url.to_string(),
        detail: "no answer".to_string(),
    }
}
