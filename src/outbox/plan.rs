//! Which alerts a new version owes: [`EnqueuePlan`] matches a version's changes (with their
//! severity) against every subscription and says when each alert is due (now, or at the
//! subscription's next daily digest).
//!
//! Decided during the sync, so the version and its outbox entries are one atomic store write;
//! the write itself is [`crate::store`]'s, and sending is `deliver`'s.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Subscriptions;
use crate::model::{FieldChange, NctId, Record, Severity};
use crate::severity::assess;
use crate::store::{OwedAlert, Store, StoreError};

/// What one sync needs to decide the alerts of each new version: the subscriptions and, for
/// digest subscriptions, when their next digest is due. Built once per sync.
#[derive(Debug, Clone)]
pub struct EnqueuePlan {
    pub(super) subs: Arc<Subscriptions>,
    /// First attempt time per daily-digest subscription.
    pub(super) digest_due: HashMap<String, DateTime<Utc>>,
    pub(super) now: DateTime<Utc>,
}

impl EnqueuePlan {
    /// Reads, for every daily-digest subscription, when its previous digest went out, so
    /// that an alert due for it waits for the next digest instead of going out at once.
    pub fn new(
        subs: Arc<Subscriptions>,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<EnqueuePlan, StoreError> {
        let mut digest_due = HashMap::new();
        for s in subs.list.iter() {
            let Some(interval) = s.digest.interval() else {
                continue;
            };
            let due = match store.last_digest(&s.id)? {
                Some(last) => (last + interval).max(now),
                None => now + interval,
            };
            digest_due.insert(s.id.clone(), due);
        }
        Ok(EnqueuePlan {
            subs,
            digest_due,
            now,
        })
    }

    /// The alerts a new version of `nct` owes. A first snapshot (`old` is `None`) owes none.
    pub fn owed(
        &self,
        nct: &NctId,
        old: Option<&Record>,
        new: &Record,
        changes: &[FieldChange],
    ) -> Vec<OwedAlert> {
        if old.is_none() || self.subs.list.is_empty() {
            return Vec::new();
        }
        let assessed: Vec<(&FieldChange, Severity)> =
            changes.iter().map(|c| (c, assess(c, old, new).0)).collect();
        self.subs
            .list
            .iter()
            .filter_map(|s| {
                let paths = s.matching_paths(nct, &assessed, &self.subs.watched);
                (!paths.is_empty()).then(|| OwedAlert {
                    subscription_id: s.id.clone(),
                    paths,
                    due: self.digest_due.get(&s.id).copied().unwrap_or(self.now),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{change, nct, sub};
    use super::*;
    use crate::model::DigestMode;
    use crate::model::WatchedFields;
    use serde_json::json;

    #[test]
    fn matching_follows_trials_fields_and_severity() {
        let watched = WatchedFields::default();
        let status = change("status.overallStatus", "RECRUITING", "COMPLETED");
        let title = change("identification.briefTitle", "a", "b");
        let date = change("status.lastUpdatePostDate", "2024-01-01", "2024-02-01");
        let changes = [
            (&status, Severity::Notable),
            (&title, Severity::Minor),
            (&date, Severity::Minor),
        ];
        let a = nct("NCT02241018");
        let b = nct("NCT02985775");
        let status_sub = sub(&["status.overallStatus"], &[], Severity::Minor);
        assert_eq!(
            status_sub.matching_paths(&a, &changes, &watched),
            ["status.overallStatus"]
        );
        // Default fields are the watched ones: the title is not watched, the date is.
        let all = sub(&[], &[], Severity::Minor);
        assert_eq!(
            all.matching_paths(&a, &changes, &watched),
            ["status.overallStatus", "status.lastUpdatePostDate"]
        );
        let other_trial = sub(&[], &["NCT02985775"], Severity::Minor);
        assert!(
            other_trial
                .matching_paths(&a, &changes, &watched)
                .is_empty()
        );
        assert!(
            !other_trial
                .matching_paths(&b, &changes, &watched)
                .is_empty()
        );
        let critical = sub(&[], &[], Severity::Critical);
        assert!(critical.matching_paths(&a, &changes, &watched).is_empty());
        let eligibility = sub(&["eligibility.*"], &[], Severity::Minor);
        assert!(
            eligibility
                .matching_paths(&a, &changes, &watched)
                .is_empty()
        );
        let wildcard = sub(&["status.*"], &[], Severity::Notable);
        assert_eq!(
            wildcard.matching_paths(&a, &changes, &watched),
            ["status.overallStatus"]
        );
    }

    #[test]
    fn first_snapshots_owe_nothing_and_digests_wait_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut daily = sub(&["status.overallStatus"], &[], Severity::Minor);
        daily.digest = DigestMode::Daily;
        daily.id = "sub-daily".into();
        let subs = Arc::new(Subscriptions {
            list: vec![sub(&["status.overallStatus"], &[], Severity::Minor), daily],
            watched: WatchedFields::default(),
        });
        let plan = EnqueuePlan::new(subs, &store, now).unwrap();
        let a = nct("NCT02241018");
        let mut old = Record::default();
        old.set("status.overallStatus", json!("RECRUITING"));
        let mut new = Record::default();
        new.set("status.overallStatus", json!("COMPLETED"));
        let changes = crate::diff::diff(Some(&old), &new);
        assert!(plan.owed(&a, None, &new, &changes).is_empty());
        let owed = plan.owed(&a, Some(&old), &new, &changes);
        assert_eq!(owed.len(), 2);
        assert_eq!(owed[0].due, now);
        assert_eq!(owed[1].subscription_id, "sub-daily");
        assert_eq!(owed[1].due, now + chrono::Duration::hours(24));
    }
}
