//! Which subscriptions an event that is no field change owes an alert (a trial entering or
//! leaving a watched query, a deadline, or syncing itself failing or recovering), and the outbox
//! entries that carry it. Policy only: the entries are written by the caller's own atomic store
//! batch (`Store::query_commit`, `Store::outbox_add`), delivered like any other alert (same
//! retries, severity filter, digests), and rendered from the event itself.

use crate::model::{AlertEvent, NctId};
use crate::store::OutboxEntry;

use super::EnqueuePlan;

impl EnqueuePlan {
    /// One outbox entry per subscription that hears about `event` on `nct`: its kind, query,
    /// trial and severity filters. Due now, or at a daily subscription's next digest.
    pub fn owed_event(&self, nct: &NctId, event: &AlertEvent) -> Vec<OutboxEntry> {
        let query = event.query.as_deref().unwrap_or("");
        self.entries(Some(nct), event, |s: &crate::model::Subscription| {
            s.wants_query_event(event.kind, query, nct, event.severity)
        })
    }

    /// One outbox entry per subscription that asked for `--event health`, for an event about
    /// trialwatch itself (no trial, so no trial filter applies; the severity filter does).
    pub fn owed_health(&self, event: &AlertEvent) -> Vec<OutboxEntry> {
        self.entries(None, event, |s: &crate::model::Subscription| {
            s.wants_health_event(event.severity)
        })
    }

    fn entries(
        &self,
        nct: Option<&NctId>,
        event: &AlertEvent,
        wanted: impl Fn(&crate::model::Subscription) -> bool,
    ) -> Vec<OutboxEntry> {
        self.subs
            .list
            .iter()
            .filter(|s| wanted(s))
            .map(|s| {
                let due = self.digest_due.get(&s.id).copied().unwrap_or(self.now);
                OutboxEntry {
                    subscription_id: s.id.clone(),
                    nct_id: nct.cloned(),
                    version: 0,
                    paths: Vec::new(),
                    created_at: self.now,
                    window_start: self.now,
                    attempts: 0,
                    next_attempt_at: due,
                    last_attempt_at: None,
                    last_error: None,
                    dead_at: None,
                    event: Some(event.clone()),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::Subscriptions;
    use super::super::test_support::{nct, sub};
    use super::*;
    use crate::model::{EventKind, Severity, WatchedFields};
    use crate::store::Store;

    fn event(kind: EventKind, query: &str) -> AlertEvent {
        AlertEvent {
            kind,
            query: Some(query.into()),
            severity: Severity::Notable,
            ..AlertEvent::health(
                "entered".into(),
                "newly registered".into(),
                format!("{kind}-{query}-20261201"),
            )
        }
    }

    #[test]
    fn events_go_only_to_subscriptions_that_chose_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let changes_only = sub(&[], &[], Severity::Minor);
        let cmv = sub(&[], &[], Severity::Minor).with_events(vec![], vec!["cmv".into()]);
        let left_only =
            sub(&[], &[], Severity::Minor).with_events(vec![EventKind::QueryLeft], vec![]);
        let critical =
            sub(&[], &[], Severity::Critical).with_events(vec![EventKind::QueryEntered], vec![]);
        assert_ne!(cmv.id, changes_only.id);
        // The defaults give the ID a subscription had before event kinds existed.
        assert_eq!(
            sub(&[], &[], Severity::Minor)
                .with_events(vec![EventKind::Changes], vec![])
                .id,
            changes_only.id
        );
        let subs = Arc::new(Subscriptions {
            list: vec![changes_only, cmv.clone(), left_only.clone(), critical],
            watched: WatchedFields::default(),
        });
        let now = "2026-12-01T06:00:00Z".parse().unwrap();
        let plan = EnqueuePlan::new(subs, &store, now).unwrap();
        let a = nct("NCT02241018");
        let entered = plan.owed_event(&a, &event(EventKind::QueryEntered, "cmv"));
        assert_eq!(
            entered
                .iter()
                .map(|e| e.subscription_id.as_str())
                .collect::<Vec<_>>(),
            [cmv.id.as_str()]
        );
        assert_eq!(
            entered[0].id(),
            format!("{}.NCT02241018.query-entered-cmv-20261201", cmv.id)
        );
        let left = plan.owed_event(&a, &event(EventKind::QueryLeft, "other"));
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].subscription_id, left_only.id);
    }

    #[test]
    fn health_events_go_to_health_subscriptions_whatever_their_trials_with_no_trial_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let changes_only = sub(&[], &[], Severity::Minor);
        let health = sub(&[], &["NCT02241018"], Severity::Critical)
            .with_events(vec![EventKind::Health], vec![]);
        let subs = Arc::new(Subscriptions {
            list: vec![changes_only, health.clone()],
            watched: WatchedFields::default(),
        });
        let now = "2026-12-01T06:00:00Z".parse().unwrap();
        let plan = EnqueuePlan::new(subs, &store, now).unwrap();
        let mut ev = event(EventKind::Health, "");
        ev.query = None;
        ev.severity = Severity::Critical;
        ev.key = "health-unhealthy-20261201T060000Z".into();
        let owed = plan.owed_health(&ev);
        assert_eq!(owed.len(), 1);
        assert_eq!(owed[0].subscription_id, health.id);
        assert_eq!(owed[0].nct_id, None);
        let id = owed[0].id();
        assert_eq!(
            id,
            format!("{}.health-unhealthy-20261201T060000Z", health.id)
        );
        // Written, found again by its id, listed, and added only once.
        assert_eq!(store.outbox_add(&owed).unwrap(), 1);
        assert_eq!(store.outbox_add(&owed).unwrap(), 0);
        assert_eq!(store.outbox_entry(&id).unwrap().as_ref(), Some(&owed[0]));
        assert_eq!(store.outbox_due(now).unwrap(), owed);
    }
}
