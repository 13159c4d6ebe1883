//! Every subscription in force: the configuration's merged with the ones `trialwatch subscribe`
//! stored, and the watched fields that subscriptions without their own `fields` follow.
//!
//! This file only gathers them. What a subscription is and which changes it matches live in
//! [`crate::model`]; which alerts a version owes is `plan`'s job.

use crate::config::Config;
use crate::model::{Subscription, WatchedFields};
use crate::store::{Store, StoreError};

/// Every subscription in force: the configuration's, then the store's, plus the watched
/// fields that subscriptions without their own `fields` follow.
#[derive(Debug, Clone, Default)]
pub struct Subscriptions {
    /// Configuration subscriptions first, then stored ones not also declared in the
    /// configuration; each is matched against every new version.
    pub list: Vec<Subscription>,
    /// The mirror's watched fields (`[mirror] fields`): what a subscription without its own
    /// `fields` follows, so "everything I watch" means the same in the page and the alerts.
    pub watched: WatchedFields,
}

impl Subscriptions {
    /// The configuration's subscriptions merged with the store's (the same content declared in
    /// both is one subscription, the configuration's).
    pub fn load(cfg: &Config, store: &Store) -> Result<Subscriptions, StoreError> {
        let mut list = cfg.subscriptions.clone();
        for s in store.subscriptions()? {
            // `cfg-` and `sub-` IDs share the content hash after the prefix.
            if !list.iter().any(|c| c.id.get(4..) == s.id.get(4..)) {
                list.push(s);
            }
        }
        Ok(Subscriptions {
            list,
            watched: cfg.mirror.fields.clone(),
        })
    }

    /// The subscription with this ID, if it is still in force (an outbox entry may outlive
    /// its subscription).
    pub fn get(&self, id: &str) -> Option<&Subscription> {
        self.list.iter().find(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::sub;
    use crate::model::Severity;

    #[test]
    fn ids_are_stable_and_ignore_order() {
        let a = sub(
            &["status.overallStatus", "design.phases"],
            &["NCT02241018", "NCT02985775"],
            Severity::Minor,
        );
        let b = sub(
            &["design.phases", "status.overallStatus"],
            &["NCT02985775", "NCT02241018"],
            Severity::Minor,
        );
        assert_eq!(a.id, b.id);
        assert!(a.id.starts_with("sub-") && a.id.len() == 14, "{}", a.id);
        let c = sub(&["design.phases"], &[], Severity::Minor);
        assert_ne!(a.id, c.id);
    }
}
