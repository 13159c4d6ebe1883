//! Gap repair: before a sync stores a new version of a trial it already observed, CT.gov's
//! history index tells whether versions were posted in between that the syncs missed (the
//! daemon was down, or two came between two syncs); those are fetched and stored first, in
//! order, each with its own changes and alerts (`docs/ctgov-api.md` §9). Deciding which
//! studies changed is [`super`]'s; storing is the store's.

use chrono::{DateTime, Utc};

use super::{Processed, Staged, failed};
use crate::ctgov::client::{CtGovClient, FetchedStudy};
use crate::model::{NctId, Provenance, Record, Source};
use crate::outbox::EnqueuePlan;
use crate::store::{NewVersion, Store};

/// Store a trial's new version after checking CT.gov's history index for versions posted
/// between the stored one and it (the daemon was down, or two were posted between syncs): those
/// are fetched and stored first, in order, each with its own changes and alerts. Returns the
/// trial's outcome, how many versions were repaired, and a warning when the index or a
/// version could not be read (the new version is then stored on its own, as before).
pub(super) async fn repair_and_commit(
    client: &CtGovClient,
    store: &Store,
    plan: &EnqueuePlan,
    study: FetchedStudy,
    staged: Staged,
    alias_of: Option<NctId>,
    now: DateTime<Utc>,
) -> ((NctId, Processed, Option<NctId>), usize, Option<String>) {
    let nct = study.requested.clone();
    let mut warning = None;
    let mut repaired: Vec<(Record, Vec<u8>, String, crate::ctgov::history::HistoryEntry)> =
        Vec::new();
    let mut observed = Provenance::default();
    match find_gap(client, store, &nct, &staged.record, now).await {
        Ok((gap, matched)) => {
            if let Some(e) = matched {
                observed.ctgov_version = Some(e.version);
                observed.ctgov_posted = Some(e.date);
            }
            for e in gap {
                match client.history_version(&nct, e.version).await {
                    Ok(Some(body)) => match crate::backfill::read_version(&nct, e.version, &body) {
                        Ok(record) => {
                            let canonical = record.canonical_bytes();
                            repaired.push((record, canonical, body, e));
                        }
                        Err(p) => {
                            warning = Some(p.message(&nct));
                            repaired.clear();
                            break;
                        }
                    },
                    Ok(None) | Err(_) => {
                        warning = Some(format!(
                            "{nct}: CT.gov version {} (posted {}) was missed by earlier syncs and could not be fetched; the new version is stored after the one before it",
                            e.version, e.date
                        ));
                        repaired.clear();
                        break;
                    }
                }
            }
        }
        Err(w) => warning = w,
    }
    let result = commit_chain(
        store, plan, &study, staged, &repaired, observed, alias_of, now,
    );
    (result, repaired.len(), warning)
}

/// CT.gov's versions posted after the trial's stored head and before `new` (its
/// `lastUpdatePostDate` names it in the index), and the index entry `new` is. `Err` holds a
/// warning when it matters that the index could not be read.
async fn find_gap(
    client: &CtGovClient,
    store: &Store,
    nct: &NctId,
    new: &Record,
    now: DateTime<Utc>,
) -> Result<
    (
        Vec<crate::ctgov::history::HistoryEntry>,
        Option<crate::ctgov::history::HistoryEntry>,
    ),
    Option<String>,
> {
    let index = match client.history_index(nct).await {
        Ok(Some(i)) if !i.entries.is_empty() => i,
        // No history to compare with: nothing to repair, and nothing worth a warning.
        Ok(_) => return Ok((Vec::new(), None)),
        Err(e) => {
            tracing::warn!(trial.nct = %nct, error = %e, "CT.gov's history index could not be read; no gap repair");
            return Err(None);
        }
    };
    let _ = store.set_ctgov_history(nct, crate::backfill::summary_of(&index, now));
    let newest_on = |day: Option<&str>| index.newest_posted_on(day).cloned();
    let matched = newest_on(new.last_update_post_date());
    let head = store
        .trial(nct)
        .ok()
        .flatten()
        .and_then(|t| store.version(nct, t.head()).ok().flatten());
    let head_ctgov = head.as_ref().and_then(|h| {
        h.provenance
            .ctgov_version
            .or_else(|| newest_on(h.last_update_post_date.as_deref()).map(|e| e.version))
    });
    let gap = match (head_ctgov, &matched) {
        (Some(h), Some(m)) if m.version > h + 1 => index
            .entries
            .iter()
            .filter(|e| e.version > h && e.version < m.version)
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    Ok((gap, matched))
}

/// Store the repaired versions, then the new one, in one atomic commit; each version's changes
/// against the one before it and the alerts they owe.
#[allow(clippy::too_many_arguments)]
fn commit_chain(
    store: &Store,
    plan: &EnqueuePlan,
    study: &FetchedStudy,
    mut staged: Staged,
    repaired: &[(Record, Vec<u8>, String, crate::ctgov::history::HistoryEntry)],
    observed: Provenance,
    alias_of: Option<NctId>,
    now: DateTime<Utc>,
) -> (NctId, Processed, Option<NctId>) {
    let nct = study.requested.clone();
    let head = match store.latest_record(&nct) {
        Ok(r) => r,
        Err(e) => return failed(store, nct, now, e.to_string(), alias_of),
    };
    let mut prev: Option<(&Record, Source)> = head.as_ref().map(|r| (r, Source::Observed));
    let mut items = Vec::with_capacity(repaired.len() + 1);
    let mut alerts_total = 0;
    for (record, canonical, body, entry) in repaired {
        let changes = crate::backfill::changes_between(prev, record, Source::Ctgov);
        let alerts = plan.owed(&nct, prev.map(|p| p.0), record, &changes);
        alerts_total += alerts.len();
        items.push(NewVersion {
            nct: &study.requested,
            record,
            canonical,
            raw: body.as_bytes(),
            changes,
            detected_at: now,
            resolved_id: alias_of.clone(),
            source_fingerprint: None,
            alerts,
            provenance: Provenance {
                source: Source::Ctgov,
                ctgov_version: Some(entry.version),
                ctgov_posted: Some(entry.date),
                backfilled: false,
            },
        });
        prev = Some((record, Source::Ctgov));
    }
    if !repaired.is_empty() {
        staged.changes = crate::backfill::changes_between(prev, &staged.record, Source::Observed);
        staged.alerts = plan.owed(&nct, prev.map(|p| p.0), &staged.record, &staged.changes);
    }
    alerts_total += staged.alerts.len();
    items.push(NewVersion {
        nct: &study.requested,
        record: &staged.record,
        canonical: &staged.canonical,
        raw: study.raw.get().as_bytes(),
        changes: staged.changes,
        detected_at: now,
        resolved_id: alias_of.clone(),
        source_fingerprint: staged.fingerprint,
        alerts: staged.alerts,
        provenance: observed,
    });
    match store.commit_versions(items) {
        Ok(versions) => {
            tracing::info!(
                trial.nct = %nct,
                trial.version = versions.last().copied().unwrap_or(0),
                trial.repaired = repaired.len(),
                alerts.enqueued = alerts_total,
                "new version stored"
            );
            (
                nct,
                Processed::New(alerts_total, false, Box::default()),
                alias_of,
            )
        }
        Err(e) => {
            let error = format!("the new version could not be stored: {e}");
            failed(store, nct, now, error, alias_of)
        }
    }
}
