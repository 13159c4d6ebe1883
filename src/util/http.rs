//! HTTP conventions shared by the CT.gov client and the webhook sender: transient statuses,
//! `Retry-After`, and telling a refused TLS certificate from other transport failures.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Whether an HTTP status is worth retrying later: request timeout (408), too many requests
/// (429) and every server error (5xx). Everything else will be answered the same way again.
pub fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// A `Retry-After` header value as a delay from `now`: delta-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2026 07:28:00 GMT`, RFC 9110 §10.2.3). A date in the past is no wait; a value
/// that is neither form is ignored.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// The `Retry-After` of an answer's headers, if it has a readable one.
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, now)
}

/// rustls's reason when a request failed on the server's certificate (CT.gov's or a webhook
/// receiver's): such a failure is never retried, and its message says how to trust the CA.
/// hyper reports a failed handshake as an `io::Error` wrapping the rustls error, and
/// `io::Error::source()` skips the wrapped error, hence `get_ref`.
pub fn certificate_problem(err: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        // An `io::Error` may wrap another `io::Error` around the rustls error.
        let mut inner = Some(cause);
        while let Some(e) = inner {
            if let Some(tls @ rustls::Error::InvalidCertificate(_)) =
                e.downcast_ref::<rustls::Error>()
            {
                return Some(tls.to_string());
            }
            inner = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|r| r as &(dyn std::error::Error + 'static));
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    #[test]
    fn retry_after_values_read_seconds_and_dates() {
        let now: DateTime<Utc> = "2026-10-21T07:27:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn transient_statuses_are_classified() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_transient_status(s), "{s}");
        }
        for s in [200, 301, 400, 401, 403, 404, 410, 422] {
            assert!(!is_transient_status(s), "{s}");
        }
    }

    #[test]
    fn retry_after_headers_read_seconds_and_dates() {
        let now: DateTime<Utc> = "2015-10-21T07:28:00Z".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:29:00 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(60)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }
}
