//! A trial's whole story: CT.gov's record history (`docs/ctgov-api.md` §9) fetched and put
//! into the trial's timeline before the versions trialwatch observed itself.
//!
//! For one trial: read CT.gov's history index (one request), match the trial's first stored
//! version to the CT.gov version it is (by its `lastUpdatePostDate`), fetch each older CT.gov
//! version not stored yet (one request each, through the client's one rate limiter), read its
//! HTML as API v2's Markdown (`normalize::history`), diff each against the one before it, and
//! store them all in one atomic insert before the first stored version, whose changes are then
//! recomputed against its new predecessor. A CT.gov version whose content is the first stored
//! version's (markup aside) is that version: it is not stored twice, the stored one takes its
//! CT.gov number.
//!
//! Restartable: the insert is atomic per trial and a run skips every CT.gov version already
//! stored, so a backfill killed at any moment and run again carries on and never stores a
//! version twice. Backfilled versions are history, not news: they owe no alerts.
//!
//! Not here: the sync that observes versions ([`crate::sync`]) and how versions are shown.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::ctgov::history::{HistoryEntry, HistoryIndex};
use crate::ctgov::wire;
use crate::ctgov::{CtGovClient, FetchError};
use crate::diff::diff;
use crate::model::{FieldChange, HistorySummary, NctId, Provenance, Record, Source, VersionMeta};
use crate::normalize::history::read_history_body;
use crate::normalize::markup::same_ignoring_markup;
use crate::normalize::normalize;
use crate::store::{NewVersion, Store, StoreError};
use crate::util::text::{error_chain, plural};

/// Trials backfilled at once: each waits on CT.gov most of the time, and the client's rate
/// limiter, not this, sets the request rate.
pub const CONCURRENT_TRIALS: usize = 4;

/// Which of CT.gov's versions to fetch (`--versions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Selection {
    /// Every version since registration.
    #[default]
    All,
    /// The newest N versions before the first stored one.
    Last(u32),
    /// Versions CT.gov posted on or after this day.
    Since(NaiveDate),
}

impl FromStr for Selection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = || {
            format!(
                "`{s}` is not a version selection: use `all`, `last:N` (e.g. last:5) or `since:DATE` (e.g. since:2016-01-01)"
            )
        };
        if t.eq_ignore_ascii_case("all") {
            return Ok(Selection::All);
        }
        if let Some(n) = t.strip_prefix("last:") {
            return match n.trim().parse::<u32>() {
                Ok(n) if n > 0 => Ok(Selection::Last(n)),
                _ => Err(bad()),
            };
        }
        if let Some(d) = t.strip_prefix("since:") {
            return NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                .map(Selection::Since)
                .map_err(|_| bad());
        }
        Err(bad())
    }
}

/// Why a trial could not be backfilled; each says what to do. Sync and other trials go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The trial has no stored version yet.
    NotSynced,
    /// CT.gov's index lists no version (`changes` missing or empty), as it does for some records.
    NoHistory,
    /// CT.gov answered 404 for the history.
    NotFound,
    /// CT.gov refused (403); it is reported to refuse some TLS clients on `/api/int`.
    Refused {
        /// CT.gov's answer, cut short.
        detail: String,
    },
    /// Anything else: CT.gov unreachable, a body that is not a history version, a store error.
    Failed {
        /// What went wrong.
        detail: String,
    },
}

impl Problem {
    /// One line naming the trial, what happened and what to do.
    pub fn message(&self, nct: &NctId) -> String {
        match self {
            Problem::NotSynced => format!(
                "{nct}: not backfilled: no stored version yet; run `trialwatch sync {nct}` first"
            ),
            Problem::NoHistory => format!(
                "{nct}: not backfilled: CT.gov keeps no record history for it (its History tab is empty); nothing to do"
            ),
            Problem::NotFound => format!(
                "{nct}: not backfilled: CT.gov has no history for this ID (404); check the ID on clinicaltrials.gov"
            ),
            Problem::Refused { detail } => format!(
                "{nct}: not backfilled: CT.gov refused the history request (403: {detail}); it refuses some clients on /api/int, try again later or from another network"
            ),
            Problem::Failed { detail } => {
                format!(
                    "{nct}: not backfilled: {detail}; run `trialwatch backfill {nct}` again later"
                )
            }
        }
    }
}

/// What one trial's backfill did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrialBackfill {
    /// The trial.
    pub nct_id: NctId,
    /// CT.gov version bodies fetched.
    pub fetched: usize,
    /// New versions stored (a fetched version equal to the first stored one is not stored).
    pub stored: usize,
    /// CT.gov versions the store already had, so not fetched.
    pub already_stored: usize,
    /// Why it could not be backfilled, if so.
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub problem: Option<Problem>,
}

/// What a backfill run did, trial by trial.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackfillReport {
    /// One entry per trial asked for, in the order asked.
    pub trials: Vec<TrialBackfill>,
    /// HTTP requests sent to CT.gov (retries included).
    pub requests: u64,
    /// Wall time of the run.
    pub duration_ms: u64,
}

impl BackfillReport {
    /// Whether every trial was backfilled (or had nothing to backfill).
    pub fn all_ok(&self) -> bool {
        self.trials.iter().all(|t| t.problem.is_none())
    }

    /// The one-line summary `trialwatch backfill` prints.
    pub fn summary(&self) -> String {
        let ok = self.trials.iter().filter(|t| t.problem.is_none()).count();
        let none = self
            .trials
            .iter()
            .filter(|t| t.problem == Some(Problem::NoHistory))
            .count();
        let without = if none > 0 {
            format!(" ({none} without a CT.gov history)")
        } else {
            String::new()
        };
        format!(
            "backfilled {} of {}{without}: {} fetched, {} stored, {} already stored ({})",
            ok,
            plural(self.trials.len(), "trial"),
            plural(self.trials.iter().map(|t| t.fetched).sum(), "version"),
            self.trials.iter().map(|t| t.stored).sum::<usize>(),
            self.trials.iter().map(|t| t.already_stored).sum::<usize>(),
            plural(self.requests as usize, "request"),
        )
    }
}

/// Backfill `ids`, [`CONCURRENT_TRIALS`] at a time. Never fails as a whole: each trial's
/// outcome is in the report. `progress(done, total)` is called as trials finish.
pub async fn run(
    client: &CtGovClient,
    store: &Store,
    ids: Vec<NctId>,
    selection: Selection,
    now: DateTime<Utc>,
    progress: Option<&(dyn Fn(usize, usize) + Sync)>,
) -> BackfillReport {
    let t0 = Instant::now();
    let before = client.request_count();
    let total = ids.len();
    let mut results: Vec<(usize, TrialBackfill)> = Vec::with_capacity(total);
    let mut tasks = tokio::task::JoinSet::new();
    let mut queue = ids.into_iter().enumerate();
    loop {
        while tasks.len() < CONCURRENT_TRIALS {
            let Some((i, nct)) = queue.next() else { break };
            let (client, store) = (client.clone(), store.clone());
            tasks.spawn(async move {
                (
                    i,
                    backfill_trial(&client, &store, &nct, selection, now).await,
                )
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        match joined {
            Ok(r) => results.push(r),
            // A panic inside one trial's backfill is that trial's problem alone; its index is
            // lost with it, so the report just has one entry fewer.
            Err(e) => tracing::error!(error = %e, "a trial's backfill panicked"),
        }
        if let Some(p) = progress {
            p(results.len(), total);
        }
    }
    results.sort_by_key(|(i, _)| *i);
    BackfillReport {
        trials: results.into_iter().map(|(_, t)| t).collect(),
        requests: client.request_count() - before,
        duration_ms: t0.elapsed().as_millis() as u64,
    }
}

/// One trial's backfill; its outcome, problems included.
pub async fn backfill_trial(
    client: &CtGovClient,
    store: &Store,
    nct: &NctId,
    selection: Selection,
    now: DateTime<Utc>,
) -> TrialBackfill {
    let mut out = TrialBackfill {
        nct_id: nct.clone(),
        fetched: 0,
        stored: 0,
        already_stored: 0,
        problem: None,
    };
    if let Err(p) = backfill_into(client, store, nct, selection, now, &mut out).await {
        tracing::warn!(trial.nct = %nct, "{}", p.message(nct));
        out.problem = Some(p);
    }
    out
}

fn store_problem(e: StoreError) -> Problem {
    Problem::Failed {
        detail: format!("the store: {e}"),
    }
}

fn fetch_problem(e: &FetchError) -> Problem {
    let status = match e {
        FetchError::GaveUp { last, .. } => last.status(),
        other => other.status(),
    };
    match status {
        Some(403) => Problem::Refused {
            detail: crate::util::text::one_line(e.body().unwrap_or("forbidden"), 120),
        },
        Some(404) => Problem::NotFound,
        _ => Problem::Failed {
            detail: error_chain(e),
        },
    }
}

async fn backfill_into(
    client: &CtGovClient,
    store: &Store,
    nct: &NctId,
    selection: Selection,
    now: DateTime<Utc>,
    out: &mut TrialBackfill,
) -> Result<(), Problem> {
    let state = match store.trial(nct).map_err(store_problem)? {
        Some(t) if t.latest_version > 0 => t,
        _ => return Err(Problem::NotSynced),
    };
    let index = match client.history_index(nct).await {
        Ok(Some(i)) => i,
        Ok(None) => return Err(Problem::NotFound),
        Err(e) => return Err(fetch_problem(&e)),
    };
    store
        .set_ctgov_history(nct, summary_of(&index, now))
        .map_err(store_problem)?;
    if index.entries.is_empty() {
        return Err(Problem::NoHistory);
    }
    let versions = store.versions(nct).map_err(store_problem)?;
    let Some(anchor) = versions.first().cloned() else {
        return Err(Problem::NotSynced);
    };
    let known: HashSet<u32> = versions
        .iter()
        .filter_map(|v| v.provenance.ctgov_version)
        .collect();
    // The CT.gov version the first stored one is: already known, or the newest posted on its
    // `lastUpdatePostDate`.
    let anchor_ctgov = anchor.provenance.ctgov_version.or_else(|| {
        index
            .newest_posted_on(anchor.last_update_post_date.as_deref())
            .map(|e| e.version)
    });
    // CT.gov's versions older than the first stored one: before its number when known. When
    // only its posting day names it, that version is fetched too and compared: the same
    // content (markup aside) means it is the stored one; other content means CT.gov edited the
    // record after posting it without a new version (docs/ctgov-api.md §8), and it is stored.
    // With no match at all: the versions posted before the trial was first seen.
    let known_anchor = anchor.provenance.ctgov_version;
    let candidate: Option<&HistoryEntry> = match (known_anchor, anchor_ctgov) {
        (Some(_), _) => None,
        (None, Some(a)) => index.entries.iter().find(|e| e.version == a),
        (None, None) => index
            .entries
            .iter()
            .filter(|e| e.date <= anchor.detected_at.date_naive())
            .max_by_key(|e| e.version),
    };
    let below = known_anchor.or(candidate.map(|c| c.version)).unwrap_or(0);
    let older: Vec<&HistoryEntry> = index.entries.iter().filter(|e| e.version < below).collect();
    let mut wanted: Vec<&HistoryEntry> = match selection {
        Selection::All => older,
        Selection::Last(n) => {
            let skip = older.len().saturating_sub(n as usize);
            older.into_iter().skip(skip).collect()
        }
        Selection::Since(d) => older.into_iter().filter(|e| e.date >= d).collect(),
    };
    // The candidate is fetched whatever the selection: only its content tells.
    wanted.extend(candidate);
    out.already_stored = wanted.iter().filter(|e| known.contains(&e.version)).count();
    // Only a run of versions right before the earliest stored CT.gov version can go in one
    // insert; versions older than what an earlier `last:N` stored come before it.
    let earliest_known = versions
        .iter()
        .find(|v| v.provenance.ctgov_version.is_some())
        .cloned();
    let (successor, missing): (VersionMeta, Vec<&HistoryEntry>) = match &earliest_known {
        Some(k) if k.version != anchor.version || anchor.provenance.ctgov_version.is_some() => {
            let limit = k.provenance.ctgov_version.unwrap_or(u32::MAX);
            (
                k.clone(),
                wanted
                    .into_iter()
                    .filter(|e| e.version < limit && !known.contains(&e.version))
                    .collect(),
            )
        }
        _ => (
            anchor.clone(),
            wanted
                .into_iter()
                .filter(|e| !known.contains(&e.version))
                .collect(),
        ),
    };
    let anchor_entry = anchor_ctgov.and_then(|a| index.entries.iter().find(|e| e.version == a));
    if missing.is_empty() {
        // Nothing to fetch; still name the anchor's CT.gov version if it was unknown.
        if let (Some(e), None) = (anchor_entry, anchor.provenance.ctgov_version) {
            let mut meta = anchor.clone();
            meta.provenance.ctgov_version = Some(e.version);
            meta.provenance.ctgov_posted = Some(e.date);
            store
                .insert_versions_before(nct, Vec::new(), meta)
                .map_err(store_problem)?;
        }
        return Ok(());
    }
    // Fetch and read every missing version, oldest first.
    let mut fetched: Vec<(HistoryEntry, Record, String)> = Vec::with_capacity(missing.len());
    for e in missing {
        let body = match client.history_version(nct, e.version).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Err(Problem::Failed {
                    detail: format!(
                        "CT.gov lists version {} in the history but answers 404 for it",
                        e.version
                    ),
                });
            }
            Err(err) => return Err(fetch_problem(&err)),
        };
        out.fetched += 1;
        let record = read_version(nct, e.version, &body)?;
        fetched.push((e.clone(), record, body));
    }
    // The stored version before the insert point (none when inserting at the very start).
    let prev_meta = state
        .before(successor.version)
        .and_then(|v| versions.iter().find(|m| m.version == v))
        .cloned();
    let mut prev: Option<(Record, Source)> = match &prev_meta {
        Some(m) => store
            .record(nct, m.version)
            .map_err(store_problem)?
            .map(|r| (r, m.provenance.source)),
        None => None,
    };
    let successor_record = store
        .record(nct, successor.version)
        .map_err(store_problem)?
        .ok_or_else(|| Problem::Failed {
            detail: format!("version {} is missing from the store", successor.version),
        })?;
    // The newest fetched version is the successor itself when their contents agree (markup
    // aside): it is not stored again, and the successor takes its CT.gov number.
    let mut successor_meta = successor.clone();
    let candidate_fetched =
        anchor_entry.is_some_and(|a| fetched.iter().any(|(e, _, _)| e.version == a.version));
    if let Some((last_entry, last_record, _)) = fetched.last()
        && successor.provenance.ctgov_version.is_none()
        && anchor_entry.is_none_or(|a| a.version == last_entry.version)
        && changes_between(
            Some((last_record, Source::Ctgov)),
            &successor_record,
            successor.provenance.source,
        )
        .is_empty()
    {
        successor_meta.provenance.ctgov_version = Some(last_entry.version);
        successor_meta.provenance.ctgov_posted = Some(last_entry.date);
        fetched.pop();
    } else if let (Some(e), None) = (anchor_entry, successor.provenance.ctgov_version)
        && successor.version == anchor.version
        && !candidate_fetched
    {
        successor_meta.provenance.ctgov_version = Some(e.version);
        successor_meta.provenance.ctgov_posted = Some(e.date);
    }
    let mut staged: Vec<Staged> = Vec::with_capacity(fetched.len());
    for (entry, record, body) in fetched {
        let changes = changes_between(prev.as_ref().map(|(r, s)| (r, *s)), &record, Source::Ctgov);
        let canonical = record.canonical_bytes();
        prev = Some((record.clone(), Source::Ctgov));
        staged.push((record, canonical, body, changes, entry));
    }
    successor_meta.changes = changes_between(
        prev.as_ref().map(|(r, s)| (r, *s)),
        &successor_record,
        successor.provenance.source,
    );
    let items: Vec<NewVersion<'_>> = staged
        .iter()
        .map(|(record, canonical, body, changes, entry)| NewVersion {
            nct,
            record,
            canonical,
            raw: body.as_bytes(),
            changes: changes.clone(),
            detected_at: now,
            resolved_id: None,
            source_fingerprint: None,
            alerts: Vec::new(),
            provenance: Provenance {
                source: Source::Ctgov,
                ctgov_version: Some(entry.version),
                ctgov_posted: Some(entry.date),
                backfilled: true,
            },
        })
        .collect();
    out.stored = items.len();
    store
        .insert_versions_before(nct, items, successor_meta)
        .map_err(store_problem)?;
    Ok(())
}

/// A fetched history version ready to store: record, canonical bytes, body, changes, entry.
type Staged = (Record, Vec<u8>, String, Vec<FieldChange>, HistoryEntry);

/// The field changes from `prev` to `new`. Across sources (history HTML on one side, API v2
/// Markdown on the other) a text that differs only by its markup is no change.
pub fn changes_between(
    prev: Option<(&Record, Source)>,
    new: &Record,
    new_source: Source,
) -> Vec<FieldChange> {
    let Some((old, old_source)) = prev else {
        return diff(None, new);
    };
    let mut changes = diff(Some(old), new);
    if old_source != new_source {
        changes.retain(|c| match (&c.old, &c.new) {
            (Some(a), Some(b)) => !same_ignoring_markup(a, b),
            _ => true,
        });
    }
    changes
}

/// One history version body as a record, or a problem naming the version.
pub fn read_version(nct: &NctId, version: u32, body: &str) -> Result<Record, Problem> {
    let bad = |detail: String| Problem::Failed {
        detail: format!("CT.gov's history version {version} of {nct} could not be read: {detail}"),
    };
    let h = read_history_body(body).map_err(|e| bad(e.to_string()))?;
    if h.version != version {
        return Err(bad(format!("it says it is version {}", h.version)));
    }
    let study: wire::Study =
        serde_json::from_value(h.study).map_err(|e| bad(format!("not a study: {e}")))?;
    let record = normalize(&study).map_err(|e| bad(e.to_string()))?;
    if record.nct_id() != Some(nct.as_str()) {
        return Err(bad(format!(
            "it is the record of {}",
            record.nct_id().unwrap_or("another trial")
        )));
    }
    Ok(record)
}

/// What the index says, to keep with the trial.
pub fn summary_of(index: &HistoryIndex, now: DateTime<Utc>) -> HistorySummary {
    HistorySummary {
        checked_at: now,
        latest_ctgov_version: index.entries.last().map(|e| e.version),
        outcome_switch: index.outcome_switch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_parse_with_a_clear_message() {
        assert_eq!("all".parse::<Selection>(), Ok(Selection::All));
        assert_eq!("last:3".parse::<Selection>(), Ok(Selection::Last(3)));
        assert_eq!(
            "since:2016-01-01".parse::<Selection>(),
            Ok(Selection::Since(
                NaiveDate::from_ymd_opt(2016, 1, 1).unwrap()
            ))
        );
        for bad in ["last:0", "last:x", "since:2016", "some"] {
            let e = bad.parse::<Selection>().unwrap_err();
            assert!(e.contains("last:N"), "{bad}: {e}");
        }
    }
}
