//! Why a CT.gov request failed: [`FetchError`], whether a retry may help
//! ([`FetchError::is_transient`]), and its `Display`, which says what was asked, what went wrong
//! and what to do.
//!
//! Owns the wording of every CT.gov error message and the naming of the trials a request was
//! for ([`describe_ids`]). Does not own when to retry or how long to wait (that is
//! `ctgov::client`), nor which HTTP statuses are transient (that is `util::http`).

use std::fmt;
use std::time::Duration;

use crate::model::NctId;
use crate::util::http::is_transient_status;
use crate::util::text::one_line;

/// How a body that is not UTF-8 is described in [`FetchError::BadBody`].
pub(super) const NOT_UTF8: &str = "the body is not UTF-8";

/// How many IDs an error message lists before it says "and N more".
const IDS_IN_MESSAGES: usize = 20;

/// Why a request to CT.gov did not give a usable answer.
///
/// `Display` says what was asked (trials and URL), what went wrong and what to do; print it with
/// `{:#}` (anyhow) to include the last error behind [`FetchError::GaveUp`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The client settings cannot work (bad `base_url`, `batch_size` 0, …).
    Config(String),
    /// CT.gov answered a non-success status (after redirects).
    Status {
        /// The trial(s) or resource the request was for, for messages.
        subject: String,
        /// The URL asked for, so a user can retry it by hand.
        url: String,
        /// The HTTP status, which decides the retry and the hint in the message.
        status: u16,
        /// CT.gov's raw text (error bodies are plain text, not JSON), up to 64 KiB.
        body: String,
        /// The `Retry-After` CT.gov asked for (429/503), read from seconds or an HTTP date.
        retry_after: Option<Duration>,
    },
    /// No complete HTTP answer: connection refused/reset, timeout, body cut off, redirect loop.
    Transport {
        /// The trial(s) or resource the request was for, for messages.
        subject: String,
        /// The URL asked for, so a user can retry it by hand.
        url: String,
        /// The underlying error chain, as text (so the error stays `Clone`).
        detail: String,
        /// Whether the `timeout` ran out, so the message can suggest raising it.
        timed_out: bool,
        /// False only for errors a retry cannot fix (redirect loops, unbuildable requests).
        retryable: bool,
    },
    /// The TLS handshake failed on CT.gov's certificate (not trusted, wrong name, expired):
    /// usually a TLS-inspecting proxy whose CA this machine does not trust. Not transient: a
    /// retry would meet the same certificate; the message says what to set.
    Certificate {
        /// The trial(s) or resource the request was for, for messages.
        subject: String,
        /// The URL asked for, so a user can retry it by hand.
        url: String,
        /// rustls's reason (unknown issuer, not valid for name, expired, …).
        detail: String,
    },
    /// A 200 whose body is not the expected JSON: an HTML page, cut-off JSON, a wrong shape.
    BadBody {
        /// The trial(s) or resource the request was for, for messages.
        subject: String,
        /// The URL asked for, so a user can retry it by hand.
        url: String,
        /// What was wrong with the body (HTML, not UTF-8, the JSON error).
        detail: String,
    },
    /// A JSON answer holding a study that cannot be used (no readable IDs, another trial than
    /// the one asked for). Not transient: it is CT.gov's data, a retry would get the same.
    BadStudy {
        /// The trial(s) the request was for, for messages.
        subject: String,
        /// The URL asked for, so a user can retry it by hand.
        url: String,
        /// What was wrong with the study.
        detail: String,
    },
    /// The answer's body (counted after gzip decoding) grew past `[ctgov] max_body_mb`; reading
    /// stopped there. Not transient: the same answer would be as large next time.
    TooLarge {
        /// The trial(s) or resource the request was for, for messages.
        subject: String,
        /// The URL asked for, so a user can retry it by hand.
        url: String,
        /// The limit that was passed, in MiB (`[ctgov] max_body_mb`).
        limit_mb: u64,
    },
    /// CT.gov answered with a redirect to another origin (scheme, host or port differ from
    /// `base_url`), which is not followed. Not transient.
    Redirected {
        /// The trial(s) or resource the request was for, for messages.
        subject: String,
        /// The URL asked for, so a user can retry it by hand.
        url: String,
        /// The HTTP status of the redirect (301, 302, 307, …).
        status: u16,
        /// Where CT.gov pointed (`Location`), as sent; empty if it sent none.
        location: String,
    },
    /// A transient error that persisted through every attempt; `last` is the final one.
    GaveUp {
        /// The trial(s) or resource the request was for, for messages.
        subject: String,
        /// How many requests were sent, the first included.
        attempts: u32,
        /// The last attempt's error: the one a user can act on.
        #[source]
        last: Box<FetchError>,
    },
}

impl FetchError {
    /// Whether trying again later may succeed (throttling, CT.gov down, network trouble).
    /// 400/404-type answers and configuration errors are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Config(_) => false,
            FetchError::Status { status, .. } => is_transient_status(*status),
            FetchError::Transport { retryable, .. } => *retryable,
            FetchError::BadBody { .. } => true,
            FetchError::TooLarge { .. }
            | FetchError::Certificate { .. }
            | FetchError::Redirected { .. }
            | FetchError::BadStudy { .. } => false,
            FetchError::GaveUp { last, .. } => last.is_transient(),
        }
    }

    /// Whether CT.gov gave no HTTP answer at all (connection refused or reset, DNS, timeout):
    /// when every trial fails so, the CLI says "CT.gov could not be reached" in one line.
    pub fn is_unreachable(&self) -> bool {
        match self {
            FetchError::Transport { .. } | FetchError::Certificate { .. } => true,
            FetchError::GaveUp { last, .. } => last.is_unreachable(),
            _ => false,
        }
    }

    /// Whether the (last) answer was a 200 whose body as a whole was not a page of studies
    /// (not UTF-8, not JSON): one broken study can do that, so the batch is split to isolate it.
    pub(super) fn is_broken_page(&self) -> bool {
        match self {
            FetchError::BadBody { detail, .. } => {
                detail.starts_with(super::page::NOT_A_PAGE) || detail.starts_with(NOT_UTF8)
            }
            FetchError::GaveUp { last, .. } => last.is_broken_page(),
            _ => false,
        }
    }

    /// The HTTP status of the (last) error answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Status { status, .. } | FetchError::Redirected { status, .. } => {
                Some(*status)
            }
            FetchError::GaveUp { last, .. } => last.status(),
            _ => None,
        }
    }

    /// CT.gov's raw text of the (last) error answer, if there was one.
    pub fn body(&self) -> Option<&str> {
        match self {
            FetchError::Status { body, .. } => Some(body),
            FetchError::GaveUp { last, .. } => last.body(),
            _ => None,
        }
    }

    /// The `Retry-After` of this very answer (not looked for behind `GaveUp`, which is final).
    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Config(msg) => write!(f, "invalid CT.gov client settings: {msg}"),
            FetchError::Status {
                subject,
                url,
                status,
                body,
                retry_after,
            } => {
                write!(f, "CT.gov answered HTTP {status} for {subject} ({url})")?;
                let excerpt = excerpt(body);
                if !excerpt.is_empty() {
                    write!(f, ": {excerpt}")?;
                }
                if let Some(ra) = retry_after {
                    write!(f, " (Retry-After {} s)", ra.as_secs())?;
                }
                let hint = match *status {
                    400 => {
                        "; CT.gov rejected the request: check that the ID is a real NCT number \
                         (NCT followed by 8 digits) and remove it from the watch list if it is not"
                    }
                    404 => "; check that base_url points at the CT.gov API (…/api/v2 is added)",
                    429 => {
                        "; CT.gov is throttling us: the next sync retries; lower \
                         requests_per_minute if this keeps happening"
                    }
                    s if is_transient_status(s) => {
                        "; CT.gov seems to be having trouble: the next sync retries"
                    }
                    _ => "",
                };
                f.write_str(hint)
            }
            FetchError::Transport {
                subject,
                url,
                detail,
                timed_out,
                ..
            } => {
                if *timed_out {
                    write!(
                        f,
                        "CT.gov did not answer in time for {subject} ({url}): {detail}; the next \
                         sync retries, raise the timeout if this keeps happening"
                    )
                } else {
                    write!(
                        f,
                        "could not get an answer from CT.gov for {subject} ({url}): {detail}; \
                         check the network connection, the next sync retries"
                    )
                }
            }
            FetchError::Certificate {
                subject,
                url,
                detail,
            } => write!(
                f,
                "CT.gov's TLS certificate was refused for {subject} ({url}): {detail}; not \
                 retried. Behind a TLS-inspecting proxy (hospital, university), add its CA \
                 certificate to the system store (update-ca-certificates) or point SSL_CERT_FILE \
                 at a PEM file holding it; otherwise check `[ctgov] base_url`"
            ),
            FetchError::BadBody {
                subject,
                url,
                detail,
            } => write!(
                f,
                "CT.gov sent something other than the expected JSON for {subject} ({url}): \
                 {detail}; this is usually a passing fault of CT.gov, the next sync retries"
            ),
            FetchError::BadStudy {
                subject,
                url,
                detail,
            } => write!(
                f,
                "CT.gov's answer for {subject} ({url}) holds a study that cannot be used: \
                 {detail}; nothing was stored for it"
            ),
            FetchError::TooLarge {
                subject,
                url,
                limit_mb,
            } => write!(
                f,
                "CT.gov's answer for {subject} ({url}) was not read: the answer is larger than \
                 {limit_mb} MB, the limit `[ctgov] max_body_mb`; raise it if CT.gov really sends \
                 that much"
            ),
            FetchError::Redirected {
                subject,
                url,
                status,
                location,
            } => write!(
                f,
                "CT.gov redirected to another host (HTTP {status} to {location}) for {subject} \
                 ({url}); not followed: check base_url, the next sync tries again"
            ),
            FetchError::GaveUp {
                subject, attempts, ..
            } => write!(
                f,
                "gave up on {subject} after {}",
                crate::util::text::plural(*attempts as usize, "attempt")
            ),
        }
    }
}

/// The start of an error body, on one line, for messages (the full text stays in the error).
fn excerpt(body: &str) -> String {
    one_line(body, 300)
}

/// "trial NCT00000001" / "trials NCT…, NCT… (25 IDs)", for messages and logs.
pub(super) fn describe_ids(ids: &[NctId]) -> String {
    match ids {
        [one] => format!("trial {one}"),
        _ => {
            let shown: Vec<&str> = ids
                .iter()
                .take(IDS_IN_MESSAGES)
                .map(NctId::as_str)
                .collect();
            let more = ids.len().saturating_sub(IDS_IN_MESSAGES);
            if more > 0 {
                format!(
                    "trials {} and {more} more ({} IDs)",
                    shown.join(", "),
                    ids.len()
                )
            } else {
                format!("trials {} ({} IDs)", shown.join(", "), ids.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_messages_are_listed_then_counted() {
        let ids: Vec<NctId> = (1..=25)
            .map(|n| format!("NCT{n:08}").parse().unwrap())
            .collect();
        assert_eq!(describe_ids(&ids[..1]), "trial NCT00000001");
        assert_eq!(
            describe_ids(&ids[..2]),
            "trials NCT00000001, NCT00000002 (2 IDs)"
        );
        let many = describe_ids(&ids);
        assert!(many.contains("NCT00000020 and 5 more (25 IDs)"), "{many}");
    }

    #[test]
    fn transient_errors_are_classified() {
        let status = |s: u16| FetchError::Status {
            subject: "trial NCT00000001".into(),
            url: "u".into(),
            status: s,
            body: String::new(),
            retry_after: None,
        };
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status(s).is_transient(), "{s}");
        }
        for s in [400, 401, 403, 404, 410] {
            assert!(!status(s).is_transient(), "{s}");
        }
        let gave_up = FetchError::GaveUp {
            subject: "trial NCT00000001".into(),
            attempts: 3,
            last: Box::new(status(503)),
        };
        assert!(gave_up.is_transient());
        assert_eq!(gave_up.status(), Some(503));
    }
}
