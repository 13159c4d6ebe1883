//! Test helpers shared by the outbox's unit tests: trial ids, field changes, subscriptions.

use serde_json::json;

use crate::model::{
    ChangeKind, DigestMode, FieldChange, FieldPattern, NctId, Origin, Severity, Subscription,
    Target,
};

pub(super) fn nct(s: &str) -> NctId {
    s.parse().unwrap()
}

pub(super) fn change(path: &str, old: &str, new: &str) -> FieldChange {
    FieldChange {
        path: path.into(),
        kind: ChangeKind::Changed,
        old: Some(json!(old)),
        new: Some(json!(new)),
    }
}

pub(super) fn sub(fields: &[&str], ncts: &[&str], min: Severity) -> Subscription {
    Subscription::new(
        Origin::Store,
        Target::Email {
            address: "a@example.org".into(),
        },
        ncts.iter().map(|s| nct(s)).collect(),
        fields.iter().map(|f| FieldPattern::new(*f)).collect(),
        min,
        DigestMode::Immediate,
        None,
    )
}
