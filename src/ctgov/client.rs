//! The HTTP client for ClinicalTrials.gov API v2: batching, paging, rate limiting and retries.
//!
//! Owns every request trialwatch sends to CT.gov and the rules of docs/ctgov-api.md §2–§6: one shared rate
//! limiter, exponential backoff with full jitter (honouring `Retry-After`), `filter.ids` batches
//! followed to the last page, alias resolution, and splitting a batch that CT.gov rejects with
//! 400 so one bad ID never blocks the others. It hands back each study's JSON exactly as CT.gov
//! sent it ([`FetchedStudy::raw`]); it does not interpret studies beyond their IDs (that is
//! `wire` and `normalize`), and it knows nothing about the store.
//!
//! Nothing CT.gov (or whatever answers in its place) sends can take memory or time without
//! bound: every body is read as a stream and given up once its decoded size (after gzip) passes
//! `max_body_mb`; a paged query fails on a `nextPageToken` it has already followed or after
//! ⌈ids / pageSize⌉ + 2 pages; redirects are followed only within `base_url`'s origin.
//!
//! Requests per sync of N good IDs: ⌈N / batch_size⌉, plus one per extra page, plus one per ID
//! missing from its batch answer (to tell 404 from an alias) — never one per trial.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{self, HeaderMap};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub use super::error::FetchError;
use super::error::describe_ids;
use super::http::{no_answer, same_origin_redirects};
use super::limiter::RateLimiter;
use super::page::{
    BadListed, DataVersion, ListedStudy, Page, parse_page_lenient, parse_single_lenient,
};
use crate::config::CtgovConfig;
use crate::model::NctId;

/// Sent with every request so CT.gov can tell who we are (and reach us).
pub const USER_AGENT: &str = concat!(
    "trialwatch/",
    env!("CARGO_PKG_VERSION"),
    " (+https://github.com/trialwatch/trialwatch)"
);

/// CT.gov cuts larger `pageSize` values to this, so a bigger batch could never fit one page.
pub const MAX_BATCH_SIZE: usize = 1000;

/// A `Retry-After` longer than this is not waited out inside a sync: the request fails (as a
/// transient error) and the next scheduled sync tries again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// Pages followed beyond the ⌈ids / pageSize⌉ a `filter.ids` query needs, for CT.gov's
/// occasional empty pages that carry a token (and test servers that cut the page size).
const PAGE_SLACK: usize = 2;

/// How much of an error answer's body is kept (an HTML error page can be large).
pub(super) const MAX_ERROR_BODY: usize = 64 * 1024;

/// One study as CT.gov returned it.
#[derive(Debug, Clone)]
pub struct FetchedStudy {
    /// The ID the caller asked for; differs from `nct_id` when it was an alias.
    pub requested: NctId,
    /// The study's own `identificationModule.nctId` (the canonical ID).
    pub nct_id: NctId,
    /// Exactly this study's JSON as sent by CT.gov, so snapshots keep the source bytes.
    pub raw: Box<RawValue>,
}

impl FetchedStudy {
    /// Whether CT.gov answered with another study because `requested` is an alias of it.
    pub fn is_alias(&self) -> bool {
        self.requested != self.nct_id
    }
}

/// What became of one requested ID (or of a group of IDs that failed together).
#[derive(Debug)]
pub enum StudyOutcome {
    /// CT.gov sent the study (for an alias: the canonical study it stands for).
    Found(FetchedStudy),
    /// CT.gov answered 404 for this well-formed ID: it does not exist (or no longer does).
    NotFound(NctId),
    /// No trustworthy answer for these IDs; `error` says why and whether a retry may help.
    Failed {
        /// The requested IDs left without an answer (a whole batch when its query failed).
        ids: Vec<NctId>,
        /// Why, and through `is_transient` whether the next sync may do better.
        error: FetchError,
    },
}

impl StudyOutcome {
    /// The requested IDs this outcome accounts for.
    pub fn ids(&self) -> Vec<&NctId> {
        match self {
            StudyOutcome::Found(s) => vec![&s.requested],
            StudyOutcome::NotFound(id) => vec![id],
            StudyOutcome::Failed { ids, .. } => ids.iter().collect(),
        }
    }
}

/// The CT.gov API v2 client. Cheap to clone: clones share the connection pool, the rate limiter
/// and the request counter.
#[derive(Clone, Debug)]
pub struct CtGovClient {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    /// The validated settings (batch size, retry policy) every call reads.
    pub(super) cfg: CtgovConfig,
    /// `{base_url}/api/v2` without a trailing slash; every API v2 URL starts with it.
    pub(super) api: String,
    /// `{base_url}/api/int`: the website's internal endpoints (record history).
    pub(super) int: String,
    /// One connection pool for all calls, carrying the User-Agent, timeout and redirect policy.
    pub(super) http: reqwest::Client,
    /// One budget for all calls and clones: CT.gov throttles per IP, not per request kind.
    pub(super) limiter: RateLimiter,
    /// HTTP requests sent (each attempt counts), for tests and sync statistics.
    pub(super) requests: AtomicU64,
    /// Told before each retry (the CLI's progress bar shows it), set by [`CtGovClient::on_retry`].
    pub(super) on_retry: std::sync::OnceLock<RetryObserver>,
}

/// Before a retry: which attempt comes next, of how many, after what wait, and why the last
/// one failed; so a user sees "waiting for CT.gov: attempt 2 of 5" instead of a silent screen.
#[derive(Debug, Clone)]
pub struct RetryNotice {
    /// The attempt about to be made (2 for the first retry).
    pub attempt: u32,
    /// `[ctgov] max_attempts`.
    pub max_attempts: u32,
    /// The wait before it (backoff or CT.gov's `Retry-After`).
    pub delay: Duration,
    /// The per-request timeout (`[ctgov] timeout_secs`).
    pub timeout: Duration,
    /// Why the last attempt failed, briefly: `HTTP 503`, `timed out`, `no answer`.
    pub reason: String,
}

/// The callback behind [`CtGovClient::on_retry`] (a wrapper so [`Inner`] stays `Debug`).
pub(super) struct RetryObserver(pub(super) Box<dyn Fn(&RetryNotice) + Send + Sync>);

impl std::fmt::Debug for RetryObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryObserver")
    }
}

/// What one attempt's parser makes of a 200 body.
pub(super) type Parser<'a, T> = &'a (dyn Fn(&str) -> Result<T, String> + Sync);

impl CtGovClient {
    /// Checks the settings and builds the HTTP client.
    pub fn new(cfg: CtgovConfig) -> Result<Self, FetchError> {
        let base = cfg.base_url.trim().trim_end_matches('/').to_string();
        let parsed = Url::parse(&base).map_err(|e| {
            FetchError::Config(format!(
                "base_url `{}` is not a URL ({e}); use e.g. https://clinicaltrials.gov",
                cfg.base_url
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(FetchError::Config(format!(
                "base_url `{}` must be an http(s) URL with a host, e.g. https://clinicaltrials.gov",
                cfg.base_url
            )));
        }
        if cfg.batch_size == 0 || cfg.batch_size > MAX_BATCH_SIZE {
            return Err(FetchError::Config(format!(
                "batch_size is {}; it must be between 1 and {MAX_BATCH_SIZE} (50 is a good value)",
                cfg.batch_size
            )));
        }
        if cfg.max_attempts == 0 {
            return Err(FetchError::Config(
                "max_attempts is 0; it must be at least 1 (1 = no retries)".to_string(),
            ));
        }
        if cfg.max_body_mb == 0 {
            return Err(FetchError::Config(
                "max_body_mb is 0; it must be at least 1 (64 is a good value)".to_string(),
            ));
        }
        if cfg.timeout.is_zero() {
            return Err(FetchError::Config(
                "timeout is 0; give CT.gov some seconds to answer (e.g. 60 s)".to_string(),
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            header::HeaderValue::from_static("application/json"),
        );
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(20)))
            .redirect(same_origin_redirects(&parsed))
            .build()
            .map_err(|e| FetchError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(CtGovClient {
            inner: Arc::new(Inner {
                api: format!("{base}/api/v2"),
                int: format!("{base}/api/int"),
                limiter: RateLimiter::new(cfg.requests_per_minute),
                requests: AtomicU64::new(0),
                on_retry: std::sync::OnceLock::new(),
                http,
                cfg,
            }),
        })
    }

    /// Call `f` before every retry of any request (first call wins; clones share it).
    pub fn on_retry(&self, f: impl Fn(&RetryNotice) + Send + Sync + 'static) {
        let _ = self.inner.on_retry.set(RetryObserver(Box::new(f)));
    }

    /// The settings this client was built with (validated by [`CtGovClient::new`]).
    pub fn config(&self) -> &CtgovConfig {
        &self.inner.cfg
    }

    /// HTTP requests sent so far by this client and its clones (retries included).
    pub fn request_count(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// `GET /api/v2/studies/{id}`. `Ok(None)` means 404 (no such study). For an alias CT.gov
    /// redirects to the canonical study, so `nct_id` may differ from `id`.
    pub async fn fetch_study(&self, id: &NctId) -> Result<Option<FetchedStudy>, FetchError> {
        let url = self.url(&format!("/studies/{id}"), &[])?;
        let subject = describe_ids(std::slice::from_ref(id));
        let parse = |body: &str| parse_single_lenient(body);
        let Some((study, answered)) = self.get_from(&url, &subject, true, &parse).await? else {
            debug!(trial.nct = %id, "CT.gov has no such study (404)");
            return Ok(None);
        };
        let bad_study = |detail: String| FetchError::BadStudy {
            subject: subject.clone(),
            url: url.to_string(),
            detail,
        };
        let study = study.map_err(bad_study)?;
        // Another trial than the one asked for is accepted only as the study `id` is an alias
        // of: one that lists it in `nctIdAliases`, or the one CT.gov redirected it to.
        let redirected_to_it = answered != url
            && answered
                .path()
                .trim_end_matches('/')
                .ends_with(&format!("/studies/{}", study.nct_id));
        if study.nct_id != *id && !study.aliases.contains(id) && !redirected_to_it {
            warn!(
                trial.nct = %id,
                trial.answered_nct = %study.nct_id,
                "CT.gov answered with another trial that does not list the asked ID as an alias"
            );
            return Err(bad_study(format!(
                "CT.gov answered {id} with the study of {}, which does not list {id} among its \
                 nctIdAliases; {id} is not updated from it",
                study.nct_id
            )));
        }
        if study.nct_id != *id {
            info!(
                trial.nct = %id,
                trial.canonical_nct = %study.nct_id,
                "CT.gov redirected an alias ID to its canonical study"
            );
        }
        Ok(Some(FetchedStudy {
            requested: id.clone(),
            nct_id: study.nct_id,
            raw: study.raw,
        }))
    }

    /// Fetches all `ids` in `filter.ids` batches of `batch_size`, following `nextPageToken` to
    /// the last page, and sends each batch's outcomes to `tx` as soon as the batch is done, so
    /// the caller can process one batch while the next downloads. Every distinct requested ID
    /// gets exactly one outcome. Duplicates are fetched once (and reported once). Returns when
    /// all batches are sent, or early if the receiver is dropped.
    pub async fn fetch_many(&self, ids: Vec<NctId>, tx: mpsc::Sender<Vec<StudyOutcome>>) {
        let mut seen = HashSet::with_capacity(ids.len());
        let ids: Vec<NctId> = ids
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .collect();
        let batches = ids.len().div_ceil(self.inner.cfg.batch_size);
        for (i, batch) in ids.chunks(self.inner.cfg.batch_size).enumerate() {
            if tx.is_closed() {
                debug!("the receiver of fetched studies is gone; stopping the fetch");
                return;
            }
            let started = Instant::now();
            let outcomes = self.fetch_batch(batch).await;
            let failed = outcomes
                .iter()
                .filter(|o| matches!(o, StudyOutcome::Failed { .. }))
                .count();
            debug!(
                batch.index = i + 1,
                batch.count = batches,
                batch.ids = batch.len(),
                batch.failed_outcomes = failed,
                batch.duration_ms = started.elapsed().as_millis() as u64,
                "CT.gov batch done"
            );
            if tx.send(outcomes).await.is_err() {
                debug!("the receiver of fetched studies is gone; stopping the fetch");
                return;
            }
        }
    }

    /// `GET /api/v2/version` → `dataTimestamp` (UTC, `yyyy-MM-ddTHH:mm:ss`), the cheapest way
    /// to learn whether CT.gov loaded new data since the last sync.
    pub async fn data_timestamp(&self) -> Result<String, FetchError> {
        let url = self.url("/version", &[])?;
        let parse = |body: &str| {
            serde_json::from_str::<DataVersion>(body)
                .map(|v| v.data_timestamp)
                .map_err(|e| format!("not a version object with dataTimestamp: {e}"))
        };
        let subject = "the CT.gov data version";
        self.get(&url, subject, false, &parse)
            .await?
            .ok_or_else(|| no_answer(&url, subject))
    }

    // --- incremental syncs (the daemon's scheduler; docs/ctgov-api.md §4) ----------------------------------------------------

    /// Which of `ids` CT.gov lists with a `LastUpdatePostDate` on or after `since`, in batches
    /// of `batch_size`: `filter.ids=…&filter.advanced=AREA[LastUpdatePostDate]RANGE[since,MAX]`.
    /// The daemon then syncs only those. A watched alias is reported under the watched ID.
    /// Fails whole if any page fails (the daemon then falls back to a full sync), but not for a
    /// broken study on a page: that study counts as changed, so the sync fetches it and it
    /// fails alone there with its message; one whose ID cannot be read makes its whole batch
    /// count as changed (fetching a few more trials is harmless, missing a change is not).
    ///
    /// (CT.gov's `fields=NCTId` would shrink the answers; the test server does not take it.)
    pub async fn fetch_updated_since(
        &self,
        ids: &[NctId],
        since: chrono::NaiveDate,
    ) -> Result<Vec<NctId>, FetchError> {
        let filter = format!(
            "AREA[LastUpdatePostDate]RANGE[{},MAX]",
            since.format("%Y-%m-%d")
        );
        let mut changed = Vec::new();
        for batch in ids.chunks(self.inner.cfg.batch_size.max(1)) {
            let subject = format!("trials updated since {since} among {}", describe_ids(batch));
            let parse = |body: &str| parse_page_lenient(body);
            let (studies, bad) = self
                .query_pages(
                    batch,
                    &[("filter.advanced", filter.as_str())],
                    subject,
                    &parse,
                )
                .await?;
            for s in studies {
                let hit = std::iter::once(&s.nct_id)
                    .chain(&s.aliases)
                    .find(|id| batch.contains(id));
                match hit {
                    Some(id) if !changed.contains(id) => changed.push(id.clone()),
                    _ => {}
                }
            }
            for (b, _) in &bad {
                let named = b
                    .nct_id
                    .as_deref()
                    .and_then(|s| s.parse::<NctId>().ok())
                    .filter(|id| batch.contains(id));
                let ids = match &named {
                    Some(id) => std::slice::from_ref(id),
                    None => batch,
                };
                debug!(
                    trial.ncts = %describe_ids(ids),
                    error = %b.reason,
                    "a study in CT.gov's updated-since answer is broken; syncing it to fail it alone"
                );
                for id in ids {
                    if !changed.contains(id) {
                        changed.push(id.clone());
                    }
                }
            }
        }
        Ok(changed)
    }

    /// One batch: the pages of a `filter.ids` query, matched back to the requested IDs.
    /// A 400 splits the batch in halves (recursively) so one bad ID fails alone.
    fn fetch_batch<'a>(
        &'a self,
        ids: &'a [NctId],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<StudyOutcome>> + Send + 'a>> {
        Box::pin(async move {
            match self.fetch_pages(ids).await {
                Ok((studies, bad)) => self.match_studies(ids, studies, bad).await,
                Err(err)
                    if (err.status() == Some(400) || err.is_broken_page()) && ids.len() > 1 =>
                {
                    let (left, right) = ids.split_at(ids.len() / 2);
                    debug!(
                        batch.ids = ids.len(),
                        http.status = err.status().unwrap_or(0),
                        error = %err,
                        "CT.gov rejected a batch or broke its answer; splitting it to isolate the \
                         bad ID"
                    );
                    let mut out = self.fetch_batch(left).await;
                    out.extend(self.fetch_batch(right).await);
                    out
                }
                Err(error) => {
                    warn!(
                        trial.ncts = %describe_ids(ids),
                        http.status = error.status().unwrap_or(0),
                        error = %error,
                        "fetching a batch of trials from CT.gov failed"
                    );
                    vec![StudyOutcome::Failed {
                        ids: ids.to_vec(),
                        error,
                    }]
                }
            }
        })
    }

    /// All pages of `filter.ids=ids`; fails whole if any page fails. Studies that cannot be
    /// read come back apart (with the URL of their page), to fail alone.
    async fn fetch_pages(
        &self,
        ids: &[NctId],
    ) -> Result<(Vec<ListedStudy>, Vec<(BadListed, String)>), FetchError> {
        let parse = |body: &str| parse_page_lenient(body);
        self.query_pages(ids, &[], describe_ids(ids), &parse).await
    }

    /// All pages of `filter.ids=ids` with `extra` query parameters, following
    /// `nextPageToken` to the end; fails whole if any page fails. `subject` names the query in
    /// errors.
    async fn query_pages(
        &self,
        ids: &[NctId],
        extra: &[(&str, &str)],
        subject: String,
        parse: Parser<'_, Page>,
    ) -> Result<(Vec<ListedStudy>, Vec<(BadListed, String)>), FetchError> {
        let joined = ids.iter().map(NctId::as_str).collect::<Vec<_>>().join("|");
        let page_len = ids.len().max(1);
        let page_size = page_len.to_string();
        let mut studies = Vec::with_capacity(ids.len());
        let mut bad = Vec::new();
        let mut token: Option<String> = None;
        // Empty pages with a token are legal, but a server that never ends (or goes round in
        // circles) must not hang us: every token may come once, and one query of `ids.len()` IDs
        // with `pageSize` = `ids.len()` has ⌈ids / pageSize⌉ = 1 page, plus slack for CT.gov's
        // occasional empty pages and for servers that cut the page size.
        let max_pages = ids.len().div_ceil(page_len) + PAGE_SLACK;
        let mut seen_tokens: HashSet<String> = HashSet::new();
        for page in 1.. {
            let mut params = vec![("filter.ids", joined.as_str())];
            params.extend_from_slice(extra);
            params.push(("pageSize", &page_size));
            if let Some(t) = &token {
                params.push(("pageToken", t.as_str()));
            }
            let url = self.url("/studies", &params)?;
            let answer = self
                .get(&url, &subject, false, parse)
                .await?
                .ok_or_else(|| no_answer(&url, &subject))?;
            studies.extend(answer.studies);
            bad.extend(answer.bad.into_iter().map(|b| (b, url.to_string())));
            match answer.next_page_token {
                Some(next) if seen_tokens.contains(&next) => {
                    warn!(trial.ncts = %describe_ids(ids), page, "CT.gov repeated a page token");
                    return Err(FetchError::BadBody {
                        subject,
                        url: url.to_string(),
                        detail: format!(
                            "paging went round in circles: page {page} points again to \
                             nextPageToken {next}, already followed"
                        ),
                    });
                }
                Some(next) if page >= max_pages => {
                    warn!(trial.ncts = %describe_ids(ids), page, "CT.gov paging does not end");
                    return Err(FetchError::BadBody {
                        subject,
                        url: url.to_string(),
                        detail: format!(
                            "paging did not end: {page} pages for {} IDs (pageSize {page_size}) \
                             and still a nextPageToken ({next}); at most {max_pages} are followed",
                            ids.len()
                        ),
                    });
                }
                Some(next) => {
                    seen_tokens.insert(next.clone());
                    token = Some(next);
                }
                None => break,
            }
        }
        Ok((studies, bad))
    }

    /// Pairs each requested ID with its study (by `nctId`, then by `nctIdAliases`); IDs still
    /// missing get one `GET /studies/{id}` to tell a 404 from an alias. A study that could not
    /// be read fails the requested ID its `nctId` names; one whose `nctId` cannot be read leaves
    /// its ID missing, and that ID's own GET then reports what is wrong with it.
    async fn match_studies(
        &self,
        ids: &[NctId],
        studies: Vec<ListedStudy>,
        bad: Vec<(BadListed, String)>,
    ) -> Vec<StudyOutcome> {
        let mut by_id: HashMap<&NctId, &ListedStudy> = HashMap::with_capacity(studies.len());
        let mut by_alias: HashMap<&NctId, &ListedStudy> = HashMap::new();
        for s in &studies {
            by_id.insert(&s.nct_id, s);
            for a in &s.aliases {
                by_alias.insert(a, s);
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        let mut bad_by_id: HashMap<NctId, (BadListed, String)> = HashMap::new();
        for (b, url) in bad {
            let named = b
                .nct_id
                .as_deref()
                .and_then(|n| n.trim().parse::<NctId>().ok())
                .filter(|n| ids.contains(n) && !by_id.contains_key(n));
            warn!(
                page.position = b.position,
                trial.nct = b.nct_id.as_deref().unwrap_or("?"),
                error = %b.reason,
                "CT.gov sent a study that cannot be read; it fails alone"
            );
            if let Some(n) = named {
                bad_by_id.insert(n, (b, url));
            }
        }
        for id in ids {
            if let Some((b, url)) = bad_by_id.remove(id) {
                out.push(StudyOutcome::Failed {
                    ids: vec![id.clone()],
                    error: FetchError::BadStudy {
                        subject: describe_ids(std::slice::from_ref(id)),
                        url,
                        detail: format!(
                            "study {} of the page (nctId {id}) cannot be read: {}",
                            b.position, b.reason
                        ),
                    },
                });
                continue;
            }
            let hit = by_id.get(id).or_else(|| by_alias.get(id));
            if let Some(s) = hit {
                if s.nct_id != *id {
                    info!(
                        trial.nct = %id,
                        trial.canonical_nct = %s.nct_id,
                        "requested ID is an alias; CT.gov returned the canonical study"
                    );
                }
                out.push(StudyOutcome::Found(FetchedStudy {
                    requested: id.clone(),
                    nct_id: s.nct_id.clone(),
                    raw: s.raw.clone(),
                }));
                continue;
            }
            debug!(trial.nct = %id, "missing from the batch answer; asking for it alone");
            out.push(match self.fetch_study(id).await {
                Ok(Some(study)) => StudyOutcome::Found(study),
                Ok(None) => StudyOutcome::NotFound(id.clone()),
                Err(error) => {
                    warn!(trial.nct = %id, error = %error, "fetching a trial from CT.gov failed");
                    StudyOutcome::Failed {
                        ids: vec![id.clone()],
                        error,
                    }
                }
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::backoff::full_jitter;

    #[test]
    fn backoff_stays_under_the_exponential_ceiling_and_the_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        for attempt in 1..40 {
            let d = full_jitter(base, cap, attempt);
            let ceiling = (base * 2u32.saturating_pow(attempt.min(20) - 1)).min(cap);
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
        }
    }

    // A 429's `Retry-After` in its HTTP-date form (RFC 9110 §10.2.3) goes through the same
    // path as delta-seconds: read by `util::http::retry_after`, waited out by `get`, and capped
    // by `MAX_RETRY_AFTER`. The fake CT.gov only sends seconds, so these tests script the raw
    // HTTP answers themselves.

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `answers` (raw HTTP responses) in order, one per connection, on 127.0.0.1.
    async fn scripted_server(answers: Vec<String>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for answer in answers {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = sock.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&chunk[..n]);
                }
                sock.write_all(answer.as_bytes()).await.unwrap();
                let _ = sock.shutdown().await;
            }
        });
        format!("http://{addr}")
    }

    fn http_answer(status: &str, extra_headers: &str, content_type: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
             connection: close\r\n{extra_headers}\r\n{body}",
            body.len()
        )
    }

    fn too_many_requests_until(at: chrono::DateTime<chrono::Utc>) -> String {
        let date = at.format("%a, %d %b %Y %H:%M:%S GMT");
        http_answer(
            "429 Too Many Requests",
            &format!("retry-after: {date}\r\n"),
            "text/plain",
            "Too Many Requests",
        )
    }

    fn test_client(base_url: String) -> CtGovClient {
        CtGovClient::new(CtgovConfig {
            base_url,
            requests_per_minute: 0,
            batch_size: 10,
            timeout: Duration::from_secs(5),
            max_attempts: 4,
            // Far below the Retry-After waited for, so only honouring it explains the wait.
            backoff_base: Duration::from_millis(10),
            backoff_cap: Duration::from_millis(40),
            max_body_mb: 64,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_429_with_an_http_date_retry_after_is_waited_out() {
        // HTTP dates have whole seconds: now + 2 s, cut to the second, is at least 1 s away.
        let until = chrono::Utc::now() + chrono::Duration::seconds(2);
        let base = scripted_server(vec![
            too_many_requests_until(until),
            http_answer(
                "200 OK",
                "",
                "application/json",
                r#"{"dataTimestamp":"2026-09-04T09:00:06"}"#,
            ),
        ])
        .await;
        let client = test_client(base);

        let stamp = client.data_timestamp().await.unwrap();

        assert_eq!(stamp, "2026-09-04T09:00:06");
        // The property itself, on the wall clock: the answer came no earlier than the date
        // (whole seconds) the 429 named. (An elapsed time measured from here would depend on
        // how long the set-up above took on a loaded machine.)
        let named = chrono::DurationRound::duration_trunc(until, chrono::Duration::seconds(1))
            .unwrap_or(until);
        let answered = chrono::Utc::now();
        assert!(
            answered >= named,
            "answered at {answered}, before the Retry-After date {named}"
        );
        assert_eq!(client.request_count(), 2);
    }

    #[tokio::test]
    async fn an_http_date_retry_after_beyond_the_limit_gives_up_at_once() {
        let until = chrono::Utc::now() + chrono::Duration::hours(1);
        let base = scripted_server(vec![too_many_requests_until(until)]).await;
        let client = test_client(base);

        let err = client.data_timestamp().await.unwrap_err();

        let FetchError::GaveUp { attempts, last, .. } = &err else {
            panic!("expected GaveUp, got {err:?}");
        };
        assert_eq!(*attempts, 1);
        let wait = last.retry_after().unwrap();
        assert!(wait > MAX_RETRY_AFTER, "{wait:?}");
        assert!(wait <= Duration::from_secs(3600), "{wait:?}");
        assert_eq!(err.status(), Some(429));
        assert_eq!(client.request_count(), 1);
    }
}
