//! Building [`Alert`]s from stored versions: the trial's title, status and link, and each
//! change with its severity and summary. A version is rendered once per delivery run and
//! shared by every alert about it; each alert keeps only the changes its subscription matched.
//!
//! Reads the store, sends nothing: turning an alert into an email or webhook body is
//! [`crate::notify`]'s job, deciding when to send it is `deliver`'s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::model::{Alert, AlertChange, AlertEvent, NctId, TrialInfo};
use crate::severity::assess;
use crate::store::{OutboxEntry, Store};

/// One stored version rendered once and shared by every alert about it.
#[derive(Debug)]
pub(super) struct RenderedVersion {
    detected_at: DateTime<Utc>,
    /// CT.gov's posting day of a gap-repaired version (see `Alert::ctgov_posted`).
    ctgov_posted: Option<chrono::NaiveDate>,
    trial: TrialInfo,
    changes: Vec<AlertChange>,
}

pub(super) type RenderCache = HashMap<(NctId, u32), Result<Arc<RenderedVersion>, String>>;

/// Renders version `version` of `nct` from the store: its changes assessed against the
/// version before it. An error (missing version, store failure) is a message, so every alert
/// about the version fails with it.
pub(super) fn render_version(
    store: &Store,
    nct: &NctId,
    version: u32,
) -> Result<RenderedVersion, String> {
    let missing = || format!("{nct} version {version} is no longer in the store");
    let meta = store
        .version(nct, version)
        .map_err(|e| e.to_string())?
        .ok_or_else(missing)?;
    let new = store
        .record(nct, version)
        .map_err(|e| e.to_string())?
        .ok_or_else(missing)?;
    // The version before it in the trial's timeline (not always `version - 1` once CT.gov's
    // older versions were backfilled in front).
    let before = store
        .trial(nct)
        .map_err(|e| e.to_string())?
        .and_then(|t| t.before(version));
    let old = match before {
        Some(v) => store.record(nct, v).map_err(|e| e.to_string())?,
        None => None,
    };
    let changes = meta
        .changes
        .iter()
        .map(|c| {
            let (severity, summary) = assess(c, old.as_ref(), &new);
            AlertChange {
                change: c.clone(),
                severity,
                summary,
            }
        })
        .collect();
    Ok(RenderedVersion {
        detected_at: meta.detected_at,
        ctgov_posted: (meta.provenance.source == crate::model::Source::Ctgov)
            .then_some(meta.provenance.ctgov_posted)
            .flatten(),
        trial: TrialInfo {
            title: new.title().map(str::to_string),
            overall_status: new.overall_status().map(str::to_string),
            url: nct.ctgov_url(),
        },
        changes,
    })
}

/// The alert an outbox entry stands for, rendered from its stored version.
pub(super) fn alert_for(entry: &OutboxEntry, rendered: &RenderedVersion) -> Alert {
    let wanted: HashSet<&str> = entry.paths.iter().map(String::as_str).collect();
    Alert {
        id: entry.id(),
        subscription_id: entry.subscription_id.clone(),
        nct_id: entry.nct_id.clone(),
        version: entry.version,
        detected_at: rendered.detected_at,
        trial: rendered.trial.clone(),
        changes: rendered
            .changes
            .iter()
            .filter(|c| wanted.contains(c.change.path.as_str()))
            .cloned()
            .collect(),
        ctgov_posted: rendered.ctgov_posted,
        event: None,
    }
}

/// The alert an event's outbox entry stands for: the event was rendered when it happened.
pub(super) fn alert_for_event(entry: &OutboxEntry, event: &AlertEvent) -> Alert {
    Alert {
        id: entry.id(),
        subscription_id: entry.subscription_id.clone(),
        nct_id: entry.nct_id.clone(),
        version: 0,
        detected_at: entry.created_at,
        trial: event.trial.clone(),
        changes: Vec::new(),
        ctgov_posted: None,
        event: Some(event.clone()),
    }
}
