//! A pending alert as it is stored in the outbox and handed to the notifier: which version of
//! which trial one subscription must hear about, with the changes it watches.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{FieldChange, NctId, Severity};

/// One pending alert: what one subscription must hear about one new version of one trial.
///
/// Stored in the outbox as JSON, so every field must round-trip through serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Idempotency key, stable across retries: it becomes the email's `Message-ID` and the
    /// webhook's `event_id`, so receivers can drop a repeated delivery.
    pub id: String,
    /// Which subscription owes this alert; named in the email footer so a reader knows why
    /// they got it.
    pub subscription_id: String,
    /// The trial that changed, for the subject line and the webhook's `nct_id`; absent for an
    /// event about no trial (a health alert: syncing failing or recovered).
    pub nct_id: Option<NctId>,
    /// The trial's stored version this alert reports (1, 2, 3…), to match `trialwatch history`.
    pub version: u32,
    /// When trialwatch saw the new version; shown to the reader and sent in the webhook.
    pub detected_at: DateTime<Utc>,
    /// What a reader needs to recognise the trial without opening it.
    pub trial: TrialInfo,
    /// The changes this subscription watches, in canonical path order.
    pub changes: Vec<AlertChange>,
    /// When CT.gov posted this version, for a version trialwatch fetched from CT.gov's record
    /// history because syncs missed it (the daemon was down, or two were posted in between).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctgov_posted: Option<NaiveDate>,
    /// Set for an event that is no field change (a trial entering or leaving a watched query):
    /// `version` is then 0 and `changes` empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<AlertEvent>,
}

/// An event no field diff produces, as the outbox keeps it and a subscriber sees it: enough to
/// recognise the trial and to know why it is told, rendered when the event happened (there is
/// no stored version to render it from).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// What happened.
    pub kind: super::EventKind,
    /// The query it happened in, for query events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// How much it matters; a subscription's `min_severity` filters on it.
    pub severity: Severity,
    /// One line for the subject (`entered query cmv-china: newly registered`).
    pub summary: String,
    /// Why, in a sentence.
    pub reason: String,
    /// The trial's title, status and link when it happened.
    pub trial: TrialInfo,
    /// The trial's phases (`PHASE2, PHASE3`), when CT.gov lists any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The lead sponsor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sponsor: Option<String>,
    /// The part of the alert's idempotency key that names this event (kind, query, day), so
    /// the same event is one alert however often it is enqueued.
    pub key: String,
}

impl AlertEvent {
    /// A health alert (`--event health`): critical, about trialwatch itself and no trial.
    pub fn health(summary: String, reason: String, key: String) -> AlertEvent {
        AlertEvent {
            kind: super::EventKind::Health,
            query: None,
            severity: Severity::Critical,
            summary,
            reason,
            trial: TrialInfo {
                title: None,
                overall_status: None,
                url: String::new(),
            },
            phase: None,
            sponsor: None,
            key,
        }
    }
}

/// The trial as of the new version, for the message's heading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialInfo {
    /// Brief title; absent when CT.gov has none.
    pub title: Option<String>,
    /// Overall recruitment status after the change (`RECRUITING`, `COMPLETED`…).
    pub overall_status: Option<String>,
    /// The study's public page (`https://clinicaltrials.gov/study/NCT…`).
    pub url: String,
}

/// One field change as a subscriber sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertChange {
    /// Path, kind and old/new values, flattened so the webhook's change objects read
    /// `{"path", "kind", "old", "new", "severity", "summary"}`.
    #[serde(flatten)]
    pub change: FieldChange,
    /// Orders the message (most severe first) and picks the subject's headline.
    pub severity: Severity,
    /// One-line human sentence (`status RECRUITING → COMPLETED`), used as the headline.
    pub summary: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_round_trip_through_json_with_flat_changes() {
        let alert = Alert {
            id: "a1".into(),
            subscription_id: "s1".into(),
            nct_id: Some("NCT02241018".parse().unwrap()),
            version: 2,
            detected_at: "2024-05-01T06:00:00Z".parse().unwrap(),
            trial: TrialInfo {
                title: Some("T".into()),
                overall_status: None,
                url: "https://clinicaltrials.gov/study/NCT02241018".into(),
            },
            changes: vec![AlertChange {
                change: FieldChange {
                    path: "status.overallStatus".into(),
                    kind: super::super::ChangeKind::Changed,
                    old: Some("RECRUITING".into()),
                    new: Some("COMPLETED".into()),
                },
                severity: Severity::Critical,
                summary: "status RECRUITING → COMPLETED".into(),
            }],
            ctgov_posted: None,
            event: None,
        };
        let json = serde_json::to_value(&alert).unwrap();
        assert_eq!(json["changes"][0]["path"], "status.overallStatus");
        assert_eq!(json["changes"][0]["severity"], "critical");
        let back: Alert = serde_json::from_value(json).unwrap();
        assert_eq!(back, alert);
    }
}
