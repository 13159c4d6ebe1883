//! `[ctgov]`: the CT.gov client's settings ([`CtgovConfig`]), their documented defaults and
//! their checks. The client that uses them lives in `crate::ctgov`, not here.

use std::time::Duration;

use super::check::{int_in_range, secs_in_range};
use super::raw;
use crate::model::validate_http_url;

/// The `[ctgov]` settings: how the CT.gov client reaches the API. The validated table is
/// exactly the client's own configuration (checked again by `CtGovClient::new`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtgovConfig {
    /// Scheme and host (optionally a path prefix); the API lives under `{base_url}/api/v2`.
    /// `https://clinicaltrials.gov` in production, the fake server's URL in tests.
    pub base_url: String,
    /// Budget shared by all requests of this client, spread evenly (60 s / n apart); 0 = no limit.
    /// CT.gov publishes no number; ~50/min per IP is the figure third parties report.
    pub requests_per_minute: u32,
    /// IDs per `filter.ids` request (also sent as `pageSize`); 1..=1000. AACT uses 50.
    pub batch_size: usize,
    /// Whole-request timeout (connect + headers + body). A timeout counts as transient.
    pub timeout: Duration,
    /// Attempts per request, the first included; 1 = never retry.
    pub max_attempts: u32,
    /// First backoff ceiling; attempt k waits a random time in `[0, min(cap, base·2^(k-1))]`.
    pub backoff_base: Duration,
    /// Upper bound of any backoff wait (not of a `Retry-After` CT.gov asks for).
    pub backoff_cap: Duration,
    /// The largest answer body read, in MiB, counted after gzip decoding while it streams in;
    /// a bigger one fails its request (1..=4096). CT.gov's largest study is ~3.6 MB and a
    /// 1000-study page ~17 MB, so the default 64 leaves room without letting a bomb fill memory.
    pub max_body_mb: u64,
}

impl Default for CtgovConfig {
    /// The documented `[ctgov]` defaults (README, example config): 50 requests/min (the ~50/min
    /// third parties report), batches of 100, 30 s per request, 5 attempts, backoff 1 s to 60 s, bodies up to 64 MiB.
    /// The config file's missing keys take exactly these values.
    fn default() -> Self {
        CtgovConfig {
            base_url: "https://clinicaltrials.gov".to_string(),
            requests_per_minute: 50,
            batch_size: 100,
            timeout: Duration::from_secs(30),
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            max_body_mb: 64,
        }
    }
}

/// Check `[ctgov]`; a missing key takes [`CtgovConfig::default`]'s value.
pub(super) fn validate_ctgov(raw: &raw::Ctgov, problems: &mut Vec<String>) -> CtgovConfig {
    let d = CtgovConfig::default();
    let base_url = match raw.base_url.as_deref() {
        None => d.base_url.clone(),
        Some(u) => match validate_http_url(u) {
            // The client adds `/api/v2` itself; pasted from CT.gov's docs it would be doubled.
            Ok(_) if u.trim_end_matches('/').ends_with("/api/v2") => {
                let fixed = u.trim_end_matches('/').trim_end_matches("/api/v2");
                problems.push(format!(
                    "`ctgov.base_url` = {u:?} ends in /api/v2, which trialwatch adds itself; \
                     write base_url = {fixed:?}"
                ));
                String::new()
            }
            Ok(_) => u.trim_end_matches('/').to_string(),
            Err(_) => {
                problems.push(format!(
                    "`ctgov.base_url` = {u:?} is not an http(s) URL; use \"https://clinicaltrials.gov\" \
                     (the API is reached under {{base_url}}/api/v2)"
                ));
                String::new()
            }
        },
    };
    CtgovConfig {
        base_url,
        requests_per_minute: int_in_range(
            raw.requests_per_minute,
            "ctgov.requests_per_minute",
            i64::from(d.requests_per_minute),
            0,
            6000,
            problems,
        ) as u32,
        batch_size: int_in_range(
            raw.batch_size,
            "ctgov.batch_size",
            d.batch_size as i64,
            1,
            1000,
            problems,
        ) as usize,
        timeout: secs_in_range(
            raw.timeout_secs,
            "ctgov.timeout_secs",
            d.timeout.as_secs_f64(),
            0.1,
            600.0,
            problems,
        ),
        max_attempts: int_in_range(
            raw.max_attempts,
            "ctgov.max_attempts",
            i64::from(d.max_attempts),
            1,
            20,
            problems,
        ) as u32,
        backoff_base: Duration::from_millis(int_in_range(
            raw.backoff_base_ms,
            "ctgov.backoff_base_ms",
            d.backoff_base.as_millis() as i64,
            1,
            60_000,
            problems,
        ) as u64),
        backoff_cap: secs_in_range(
            raw.backoff_cap_secs,
            "ctgov.backoff_cap_secs",
            d.backoff_cap.as_secs_f64(),
            0.001,
            3600.0,
            problems,
        ),
        max_body_mb: int_in_range(
            raw.max_body_mb,
            "ctgov.max_body_mb",
            d.max_body_mb as i64,
            1,
            4096,
            problems,
        ) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_body(value: Option<i64>) -> (u64, Vec<String>) {
        let raw = raw::Ctgov {
            max_body_mb: value,
            ..raw::Ctgov::default()
        };
        let mut problems = Vec::new();
        let c = validate_ctgov(&raw, &mut problems);
        (c.max_body_mb, problems)
    }

    #[test]
    fn max_body_mb_defaults_to_64_and_takes_1_to_4096() {
        assert_eq!(max_body(None), (64, vec![]));
        assert_eq!(max_body(Some(1)), (1, vec![]));
        assert_eq!(max_body(Some(4096)), (4096, vec![]));
        for bad in [0, -1, 4097] {
            let (_, problems) = max_body(Some(bad));
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(problems[0].contains("ctgov.max_body_mb"), "{problems:?}");
        }
    }

    #[test]
    fn max_body_mb_is_read_from_the_file() {
        let c = crate::config::Config::from_toml("[ctgov]\nmax_body_mb = 8\n", None).unwrap();
        assert_eq!(c.ctgov.max_body_mb, 8);
    }
}
