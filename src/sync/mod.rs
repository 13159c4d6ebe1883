//! One sync run: fetch the trials from CT.gov in batches, normalize each, compare it with the
//! latest stored version and store a new version only when the normalized record changed.
//!
//! Fetching (async, rate-limited) and processing (CPU: JSON parse, normalize, hash, diff,
//! compress) overlap: the client hands over one batch at a time through a bounded channel and
//! batches are processed on blocking threads, at most [`PROCESSING_PARALLELISM`] at once.
//! A trial that cannot be fetched whole or normalized is reported and left as it was stored.
//!
//! Each new version is stored together with the alerts it owes the subscriptions (one atomic
//! store write, see [`crate::outbox::EnqueuePlan`]); delivering them is the caller's next step.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::ctgov::client::{CtGovClient, FetchedStudy, StudyOutcome};
use crate::model::{NctId, Source};
use crate::normalize::{NORMALIZER_VERSION, StudyParts, normalize_json, source_fingerprint};
use crate::outbox::{EnqueuePlan, Subscriptions};
use crate::store::{NewVersion, Store, raw_hash, record_hash};
use crate::util::text::error_chain;

pub mod deadlines;
mod gap;
pub mod queries;
#[cfg(test)]
mod tests;
use gap::repair_and_commit;

/// Batches processed at once: the machine this is sized for has two cores.
const PROCESSING_PARALLELISM: usize = 2;

/// Meta name of the [`NORMALIZER_VERSION`] the last complete sync ran with. The raw-bytes fast
/// path (a study byte-identical to the last fetch is unchanged) holds only while the normalizer
/// is the same; after an upgrade that changed it, one sync normalizes every study again.
const NORMALIZER_META: &str = "sync.normalizer";

/// What one sync did, printed by `trialwatch sync` and kept in the store for `status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncReport {
    /// When the sync began (the sync's clock), shown by `status` as the last sync.
    pub started_at: DateTime<Utc>,
    /// How long the whole run took, to spot a slow CT.gov or a growing watch list.
    pub duration_ms: u64,
    /// Trials asked for.
    pub requested: usize,
    /// Trials fetched whole and normalized.
    pub fetched: usize,
    /// Trials whose record changed, so a new version was stored.
    pub new_versions: usize,
    /// Trials fetched whose record matched the latest stored version (nothing stored).
    pub unchanged: usize,
    /// Trials that could not be synced, with the reason (nothing stored for them changed).
    pub failed: Vec<TrialFailure>,
    /// Watched IDs that CT.gov answered under another (canonical) ID.
    pub aliases: Vec<(NctId, NctId)>,
    /// HTTP requests sent to CT.gov, retries included.
    pub requests: u64,
    /// Alerts enqueued for subscribers with the new versions.
    #[serde(default)]
    pub alerts_enqueued: usize,
    /// Versions fetched from CT.gov's record history for trials synced for the first time
    /// (`[watch] backfill`).
    #[serde(default)]
    pub backfilled_versions: usize,
    /// Versions CT.gov posted that earlier syncs missed, fetched from its record history and
    /// stored before the new one (each alerts like a new version).
    #[serde(default)]
    pub gap_repaired: usize,
    /// One line per trial whose history could not be backfilled; the sync itself succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backfill_warnings: Vec<String>,
    /// The watched queries run before the sync (entries, exits, problems).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<queries::QueryRun>,
    /// The day's deadline evaluation, when this sync was the day's first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadlines: Option<deadlines::DeadlineRun>,
    /// The delivery run that followed the sync, when the caller ran one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<crate::outbox::DeliveryReport>,
    /// What the deadline rules read of each new head version this sync stored, for the day's
    /// evaluation that follows it ([`deadlines::evaluate_daily_after`]); not in the JSON.
    #[serde(skip)]
    pub head_facts: deadlines::HeadFacts,
}

/// One trial a sync could not handle, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialFailure {
    /// The trial that failed; its stored history is untouched.
    pub nct_id: NctId,
    /// What went wrong, in words the user can act on.
    pub error: String,
    /// CT.gov gave no answer at all for it (network down, connection refused, timeout); not
    /// in the JSON, whose shape stays as it was.
    #[serde(skip)]
    pub unreachable: bool,
}

impl SyncReport {
    /// Whether every trial synced; `trialwatch sync` exits 2 otherwise.
    pub fn all_ok(&self) -> bool {
        self.failed.is_empty()
    }

    /// Whether nothing at all was fetched because CT.gov never answered (every trial failed
    /// for want of a connection): the CLI says so in one line and exits 1.
    pub fn nothing_reached(&self) -> bool {
        self.fetched == 0 && !self.failed.is_empty() && self.failed.iter().all(|f| f.unreachable)
    }
}

/// Build the CT.gov client from configuration.
pub fn client_from_config(cfg: &Config) -> anyhow::Result<CtGovClient> {
    Ok(CtGovClient::new(cfg.ctgov.clone())?)
}

/// Outcome of processing one fetched study.
enum Processed {
    /// A new version, with the number of alerts it enqueued, whether it is the trial's first,
    /// and what the deadline rules read of it (see [`SyncReport::head_facts`]).
    New(usize, bool, Box<deadlines::HeadFacts>),
    /// A new version to store after a look at CT.gov's history index (gap repair).
    Deferred(Box<(FetchedStudy, Staged)>),
    Unchanged,
    Failed(TrialFailure),
}

/// Sync `ids` into `store`, with `now` as the detection time of every new version, enqueuing
/// the alerts each new version owes `subs` in the same store write.
/// `progress` is called with (done, total) as batches complete.
pub async fn run(
    client: &CtGovClient,
    store: &Store,
    subs: Arc<Subscriptions>,
    ids: Vec<NctId>,
    now: DateTime<Utc>,
    progress: Option<Arc<dyn Fn(usize, usize) + Send + Sync>>,
    backfill: bool,
) -> anyhow::Result<SyncReport> {
    let t0 = Instant::now();
    let plan = Arc::new(EnqueuePlan::new(subs, store, now)?);
    let same_normalizer = store.get_meta::<u32>(NORMALIZER_META)? == Some(NORMALIZER_VERSION);
    let requests_before = client.request_count();
    let mut report = SyncReport {
        started_at: now,
        requested: ids.len(),
        ..SyncReport::default()
    };
    let total = ids.len();
    let (tx, mut rx) = mpsc::channel::<Vec<StudyOutcome>>(2);
    let fetcher = {
        let client = client.clone();
        tokio::spawn(async move { client.fetch_many(ids, tx).await })
    };

    let done = Arc::new(AtomicUsize::new(0));
    let mut workers: JoinSet<Vec<(NctId, Processed, Option<NctId>)>> = JoinSet::new();
    let mut first_versions: Vec<NctId> = Vec::new();
    let mut deferred: Vec<(FetchedStudy, Staged, Option<NctId>)> = Vec::new();
    let collect = |results: Vec<(NctId, Processed, Option<NctId>)>,
                   report: &mut SyncReport,
                   first_versions: &mut Vec<NctId>,
                   deferred: &mut Vec<(FetchedStudy, Staged, Option<NctId>)>| {
        for (nct, p, alias_of) in results {
            if let Processed::Deferred(d) = p {
                let (study, staged) = *d;
                deferred.push((study, staged, alias_of));
                continue;
            }
            if let Some(canonical) = alias_of {
                report.aliases.push((nct.clone(), canonical));
            }
            match p {
                Processed::New(alerts, first, facts) => {
                    // Kept only for the backfill that reads them: at 100,000 trials the
                    // list of first versions alone was ~5 MB of the first sync's peak.
                    if first && backfill {
                        first_versions.push(nct.clone());
                    }
                    report.head_facts.extend(*facts);
                    report.fetched += 1;
                    report.new_versions += 1;
                    report.alerts_enqueued += alerts;
                }
                Processed::Unchanged => {
                    report.fetched += 1;
                    report.unchanged += 1;
                }
                Processed::Failed(f) => report.failed.push(f),
                Processed::Deferred(_) => {}
            }
        }
    };

    while let Some(batch) = rx.recv().await {
        while workers.len() >= PROCESSING_PARALLELISM {
            if let Some(res) = workers.join_next().await {
                collect(res?, &mut report, &mut first_versions, &mut deferred);
            }
        }
        let store = store.clone();
        let plan = plan.clone();
        let done = done.clone();
        let progress = progress.clone();
        workers.spawn_blocking(move || {
            let n = batch.len();
            let out = process_batch(&store, &plan, batch, now, backfill, same_normalizer);
            let d = done.fetch_add(n, Ordering::Relaxed) + n;
            if let Some(p) = progress {
                p(d.min(total), total);
            }
            out
        });
    }
    while let Some(res) = workers.join_next().await {
        collect(res?, &mut report, &mut first_versions, &mut deferred);
    }
    fetcher.await?;
    // New versions CT.gov posted since the stored one: look at its history index first, and
    // store any version the syncs missed before the new one, each alerting like a new version.
    for (study, staged, alias_of) in std::mem::take(&mut deferred) {
        let results = repair_and_commit(client, store, &plan, study, staged, alias_of, now).await;
        report.gap_repaired += results.1;
        if let Some(w) = results.2 {
            report.backfill_warnings.push(w);
        }
        collect(
            vec![results.0],
            &mut report,
            &mut first_versions,
            &mut Vec::new(),
        );
    }
    if backfill && !first_versions.is_empty() {
        // A trial's story from its registration: CT.gov's history before its first snapshot.
        // History, not news: nothing here alerts, and a trial CT.gov keeps no history for (or
        // refuses it) is one warning, not a failed sync.
        let b = crate::backfill::run(
            client,
            store,
            first_versions,
            crate::backfill::Selection::All,
            now,
            None,
        )
        .await;
        report.backfilled_versions = b.trials.iter().map(|t| t.stored).sum();
        report.backfill_warnings = b
            .trials
            .iter()
            .filter_map(|t| {
                t.problem
                    .as_ref()
                    // A trial without history is normal, not worth a warning in a sync.
                    .filter(|p| **p != crate::backfill::Problem::NoHistory)
                    .map(|p| p.message(&t.nct_id))
            })
            .collect();
    }
    if let Err(e) = store.set_meta(NORMALIZER_META, &NORMALIZER_VERSION) {
        tracing::warn!(error = %e, "could not record the normalizer version");
    }
    store.flush()?;

    report.failed.sort_by(|a, b| a.nct_id.cmp(&b.nct_id));
    report.requests = client.request_count() - requests_before;
    report.duration_ms = t0.elapsed().as_millis() as u64;
    // A summary for `status`; losing it would lose nothing a user relies on.
    if let Err(e) = store.set_meta("last_sync", &report) {
        tracing::warn!(error = %e, "could not record the sync summary");
    }
    Ok(report)
}

/// Process one fetched batch: decide per study, then store all its new versions in one
/// commit (one disk flush for the batch).
fn process_batch(
    store: &Store,
    plan: &EnqueuePlan,
    batch: Vec<StudyOutcome>,
    now: DateTime<Utc>,
    repair: bool,
    same_normalizer: bool,
) -> Vec<(NctId, Processed, Option<NctId>)> {
    let mut out = Vec::with_capacity(batch.len());
    let mut found = Vec::new();
    for outcome in batch {
        match outcome {
            StudyOutcome::Found(study) => found.push(study),
            StudyOutcome::NotFound(nct) => {
                tracing::warn!(trial.nct = %nct, "trial not found on CT.gov");
                let error = format!(
                    "{nct} is not on ClinicalTrials.gov (404); check the ID, or remove it from the watch list"
                );
                out.push(failed(store, nct, now, error, None));
            }
            StudyOutcome::Failed { ids, error } => {
                let unreachable = error.is_unreachable();
                let error = error_chain(&error);
                // The client has logged the failure, its retries and the trials it concerns.
                tracing::debug!(trial.count = ids.len(), error = %error, "trials not fetched");
                out.extend(ids.into_iter().map(|nct| {
                    let mut f = failed(store, nct, now, error.clone(), None);
                    if let Processed::Failed(t) = &mut f.1 {
                        t.unreachable = unreachable;
                    }
                    f
                }));
            }
        }
    }
    let mut staged = Vec::new();
    for study in &found {
        let nct = study.requested.clone();
        let alias_of = (study.nct_id != study.requested).then(|| study.nct_id.clone());
        match prepare_study(store, plan, study, now, same_normalizer) {
            Ok(None) => out.push((nct, Processed::Unchanged, alias_of)),
            Ok(Some(s)) if repair && s.posted_anew => out.push((
                nct,
                Processed::Deferred(Box::new((study.clone(), s))),
                alias_of,
            )),
            Ok(Some(s)) => staged.push((study, s, alias_of)),
            Err(error) => {
                tracing::warn!(trial.nct = %nct, error = %error, "trial not synced");
                out.push(failed(store, nct, now, error, alias_of));
            }
        }
    }
    if staged.is_empty() {
        return out;
    }
    let items = staged
        .iter_mut()
        .map(|(study, s, alias_of)| {
            let Staged {
                record,
                canonical,
                changes,
                alerts,
                fingerprint,
                ..
            } = s;
            NewVersion {
                provenance: Default::default(),
                nct: &study.requested,
                record: &*record,
                canonical: &canonical[..],
                raw: study.raw.get().as_bytes(),
                changes: std::mem::take(changes),
                detected_at: now,
                resolved_id: alias_of.clone(),
                source_fingerprint: fingerprint.take(),
                alerts: std::mem::take(alerts),
            }
        })
        .collect();
    match store.commit_versions(items) {
        Ok(versions) => {
            for ((study, s, alias_of), version) in staged.into_iter().zip(versions) {
                tracing::info!(
                    trial.nct = %study.requested,
                    trial.version = version,
                    alerts.enqueued = s.alert_count,
                    "new version stored"
                );
                // Read here, on the processing threads, while the raw JSON is at hand.
                let mut facts = deadlines::HeadFacts::default();
                facts.insert(study.requested.clone(), version, study.raw.get().as_bytes());
                out.push((
                    study.requested.clone(),
                    Processed::New(s.alert_count, version == 1, Box::new(facts)),
                    alias_of,
                ));
            }
        }
        Err(e) => {
            let error = format!("the new version could not be stored: {e}");
            for (study, _, alias_of) in staged {
                let nct = study.requested.clone();
                tracing::warn!(trial.nct = %nct, error = %error, "trial not synced");
                out.push(failed(store, nct, now, error.clone(), alias_of));
            }
        }
    }
    out
}

/// Record on the trial why it was not synced (its stored versions are untouched), and report it.
fn failed(
    store: &Store,
    nct: NctId,
    now: DateTime<Utc>,
    error: String,
    alias_of: Option<NctId>,
) -> (NctId, Processed, Option<NctId>) {
    if let Err(e) = store.mark_failed(&nct, now, &error) {
        tracing::warn!(trial.nct = %nct, error = %e, "could not record the failure");
    }
    (
        nct.clone(),
        Processed::Failed(TrialFailure {
            nct_id: nct,
            error,
            unreachable: false,
        }),
        alias_of,
    )
}

/// The trials a plain sync covers: the configuration's `[watch]` list, then the store's watch
/// list (`trialwatch watch add`), then the current members of queries with `watch`, without
/// repeats.
pub fn watched_ids(cfg: &Config, store: &Store) -> Result<Vec<NctId>, crate::store::StoreError> {
    let mut ids = cfg.watch.ids().to_vec();
    // A set: a scan of `ids` per stored entry is quadratic in the watch list.
    let mut seen: std::collections::HashSet<NctId> = ids.iter().cloned().collect();
    let stored = store.watch_list()?.into_iter().map(|w| w.nct_id);
    for id in stored.chain(queries::watched_members(cfg, store)?) {
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// A changed study, ready to be stored with the rest of its batch.
struct Staged {
    record: crate::model::Record,
    canonical: Vec<u8>,
    changes: Vec<crate::model::FieldChange>,
    alerts: Vec<crate::store::OwedAlert>,
    /// `alerts.len()`, kept once `alerts` moved into the commit.
    alert_count: usize,
    fingerprint: Option<String>,
    /// CT.gov posted a new version since the stored one (its `lastUpdatePostDate` moved) of a
    /// trial a sync already observed: more than one may have been posted since, so the sync
    /// checks CT.gov's history index before storing it (gap repair).
    posted_anew: bool,
}

/// Normalize one study and compare it with the stored record: `None` when it did not change
/// (its `last_seen_at` is updated), the new version to store when it did. Errors are messages
/// for the user. `same_normalizer`: the store's raw hashes were made under this normalizer, so
/// a byte-identical study is unchanged without a look inside.
fn prepare_study(
    store: &Store,
    plan: &EnqueuePlan,
    study: &FetchedStudy,
    now: DateTime<Utc>,
    same_normalizer: bool,
) -> Result<Option<Staged>, String> {
    let nct = &study.requested;
    let raw = study.raw.get();
    let resolved_id = (study.nct_id != *nct).then(|| study.nct_id.clone());
    let state = store.trial(nct).map_err(|e| e.to_string())?;
    let raw_h = raw_hash(raw.as_bytes());
    let seen = |t: &crate::store::TrialState, fingerprint, raw_h| {
        store
            .mark_seen_state(t.clone(), now, resolved_id.clone(), fingerprint, raw_h)
            .map_err(|e| e.to_string())
    };
    // Fastest path: the very bytes of the last fetch (most trials, most days).
    if let Some(t) = &state
        && same_normalizer
        && t.latest_version > 0
        && t.raw_hash.as_deref() == Some(raw_h.as_str())
    {
        seen(t, None, None)?;
        return Ok(None);
    }
    // Fast path: the parts of the study the normalizer reads are byte-identical to last time.
    // One scan gives both the fingerprint and, when needed, the record's typed parse.
    let parts = StudyParts::split(raw);
    let fingerprint = match &parts {
        Some(p) => Some(p.fingerprint()),
        None => source_fingerprint(raw).ok(),
    };
    if let Some(t) = &state
        && t.latest_version > 0
        && fingerprint.is_some()
        && t.source_fingerprint == fingerprint
    {
        seen(t, None, Some(raw_h))?;
        return Ok(None);
    }
    let record = match &parts {
        Some(p) => p.normalize(),
        None => normalize_json(raw),
    }
    .map_err(|e| {
        format!("CT.gov's answer for {nct} could not be normalized (nothing stored): {e}")
    })?;
    let canonical = record.canonical_bytes();
    let hash = record_hash(&canonical);
    let old = match &state {
        Some(t) if t.latest_version > 0 && t.record_hash == hash => {
            seen(t, fingerprint, Some(raw_h))?;
            return Ok(None);
        }
        Some(t) if t.latest_version > 0 => {
            store.record(nct, t.head()).map_err(|e| e.to_string())?
        }
        _ => None,
    };
    // Across sources (a gap-repaired head came from CT.gov's history HTML) markup is no change.
    let head_source = match (&state, &old) {
        (Some(t), Some(_)) => store
            .version(nct, t.head())
            .map_err(|e| e.to_string())?
            .map(|m| m.provenance.source)
            .unwrap_or_default(),
        _ => Source::Observed,
    };
    // A trial's first version (nothing stored yet) is committed without changes: the store
    // derives "every path added" from its record on read, so building them here would only be
    // work for the store to compare and drop. Nothing else needs them: a first version owes no
    // alerts (`EnqueuePlan::owed` returns none without an old record) and is never deferred
    // (gap repair needs an observed version).
    let first = state.as_ref().is_none_or(|t| t.latest_version == 0);
    let changes = if first {
        Vec::new()
    } else {
        crate::backfill::changes_between(
            old.as_ref().map(|o| (o, head_source)),
            &record,
            Source::Observed,
        )
    };
    if !first && changes.is_empty() {
        // Same record under a different hash can only mean a hash format change: treat as seen.
        if let Some(t) = &state {
            seen(t, fingerprint, Some(raw_h))?;
        }
        return Ok(None);
    }
    let alerts = plan.owed(nct, old.as_ref(), &record, &changes);
    let posted_anew = state.as_ref().is_some_and(|t| t.has_observed())
        && old.as_ref().map(|o| o.last_update_post_date()) != Some(record.last_update_post_date());
    Ok(Some(Staged {
        record,
        canonical,
        changes,
        alert_count: alerts.len(),
        alerts,
        fingerprint,
        posted_anew,
    }))
}
