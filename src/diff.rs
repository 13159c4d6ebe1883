//! Record × record → field changes (docs/record.md §5), the inverse [`apply`], and the text a
//! long value is compared as ([`value_text`], [`is_long_text`]).
//!
//! Pure: no I/O, no clock, no configuration. This module says *what* changed; what a change
//! means is [`crate::severity`]'s job and how it is shown is [`crate::render`]'s (the line and
//! word diff of two texts is [`crate::render::textdiff`]).

use std::collections::HashMap;

use serde_json::Value;

use crate::model::{ChangeKind, FieldChange, Record};
use crate::schema;

/// The field changes that turn `old` into `new`, one per path whose value differs (JSON value
/// equality), sorted in the canonical order of [`schema::path_order`] (table order, locations
/// by key).
///
/// `old = None` is the first snapshot of a trial: every present path is `added`. An `added`
/// change carries only `new`, a `removed` change only `old`, a `changed` change both.
/// A section that is not a JSON object holds no fields (see [`Record::fields`]) and is ignored.
pub fn diff(old: Option<&Record>, new: &Record) -> Vec<FieldChange> {
    let old_fields: HashMap<String, &Value> = old.map(|r| r.fields().collect()).unwrap_or_default();
    let new_fields: HashMap<String, &Value> = new.fields().collect();

    let mut changes = Vec::new();
    for (path, &old_value) in &old_fields {
        match new_fields.get(path) {
            None => changes.push(FieldChange {
                path: path.clone(),
                kind: ChangeKind::Removed,
                old: Some(old_value.clone()),
                new: None,
            }),
            Some(&new_value) if new_value != old_value => changes.push(FieldChange {
                path: path.clone(),
                kind: ChangeKind::Changed,
                old: Some(old_value.clone()),
                new: Some(new_value.clone()),
            }),
            Some(_) => {}
        }
    }
    for (path, &new_value) in &new_fields {
        if !old_fields.contains_key(path) {
            changes.push(FieldChange {
                path: path.clone(),
                kind: ChangeKind::Added,
                old: None,
                new: Some(new_value.clone()),
            });
        }
    }
    changes.sort_by(|a, b| order_key(&a.path).cmp(&order_key(&b.path)));
    changes
}

/// `path_order`, tie-broken by the path itself so the order is total whatever the input.
fn order_key(path: &str) -> ((usize, usize, &str), &str) {
    (schema::path_order(path), path)
}

/// `base` with `changes` applied, rebuilt in canonical order (sections and keys in
/// [`schema::path_order`]), so `apply(a, &diff(Some(a), b))` equals `b` down to its
/// `canonical_bytes` when `b` was canonical.
///
/// `added` and `changed` set the path to `new` (a change without `new` removes the path);
/// `removed` removes it. Changes are applied in the order given, so a later change to the same
/// path wins. Sections of `base` that are not JSON objects hold no fields and are dropped.
pub fn apply(base: &Record, changes: &[FieldChange]) -> Record {
    let mut fields: HashMap<String, Value> = base
        .fields()
        .map(|(path, value)| (path, value.clone()))
        .collect();
    for change in changes {
        match (change.kind, &change.new) {
            (ChangeKind::Added | ChangeKind::Changed, Some(value)) => {
                fields.insert(change.path.clone(), value.clone());
            }
            _ => {
                fields.remove(&change.path);
            }
        }
    }
    let mut ordered: Vec<(String, Value)> = fields.into_iter().collect();
    ordered.sort_by(|(a, _), (b, _)| order_key(a).cmp(&order_key(b)));
    let mut record = Record::default();
    for (path, value) in ordered {
        record.set(&path, value);
    }
    record
}

/// Paths whose value is free text (markdown) written by the sponsor. Their changes are always
/// shown as a text diff, even while the text is short, so one field reads the same way in
/// every version.
pub const FREE_TEXT_PATHS: &[&str] = &[
    "description.briefSummary",
    "description.detailedDescription",
    "eligibility.criteria",
    "eligibility.studyPopulation",
];

/// A string is long past this many characters (or with any newline).
pub const LONG_TEXT_CHARS: usize = 80;

/// Whether a value at `path` is long text, to be shown as a [`text_diff`](crate::render::textdiff::text_diff) of [`value_text`]
/// rather than on one line. True for:
/// - any string at one of the [`FREE_TEXT_PATHS`];
/// - any string with a newline or more than [`LONG_TEXT_CHARS`] characters;
/// - a list with at least one object item that has such a long string field (outcomes and
///   arms with descriptions, references with citations).
///
/// Everything else (numbers, bools, short strings, lists of short items, a single location
/// object) is short.
pub fn is_long_text(path: &str, v: &Value) -> bool {
    match v {
        Value::String(s) => FREE_TEXT_PATHS.contains(&path) || is_long_str(s),
        Value::Array(items) => items.iter().any(|item| {
            item.as_object()
                .is_some_and(|m| m.values().any(|f| f.as_str().is_some_and(is_long_str)))
        }),
        _ => false,
    }
}

fn is_long_str(s: &str) -> bool {
    s.contains('\n') || s.chars().count() > LONG_TEXT_CHARS
}

/// The multi-line text a value is compared as by [`text_diff`](crate::render::textdiff::text_diff): a string as it is; an object
/// as one `key: value` line per key; a list one item per line, with object items as blocks of
/// `key: value` lines separated by a blank line. Continuation lines of a multi-line field are
/// indented two spaces so they stay with their key. Nested lists are joined with `, `.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => object_lines(m),
        Value::Array(items) => {
            let any_object = items.iter().any(Value::is_object);
            let parts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Value::Object(m) => object_lines(m),
                    other => inline_text(other),
                })
                .collect();
            parts.join(if any_object { "\n\n" } else { "\n" })
        }
        other => inline_text(other),
    }
}

fn object_lines(m: &serde_json::Map<String, Value>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}: {}", inline_text(v).replace('\n', "\n  ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A value as text on (mostly) one line: strings unquoted, lists joined with `, `.
fn inline_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(inline_text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A record from `(path, value)` pairs, built in canonical order like the normalizer does.
    fn record(fields: &[(&str, Value)]) -> Record {
        let mut sorted: Vec<&(&str, Value)> = fields.iter().collect();
        sorted.sort_by(|a, b| order_key(a.0).cmp(&order_key(b.0)));
        let mut r = Record::default();
        for (path, value) in sorted {
            r.set(path, value.clone());
        }
        r
    }

    const SITE_PEKING: &str =
        "locations.peking university people's hospital|beijing|beijing municipality|china";
    const SITE_MUNICH: &str = "locations.klinikum der universität münchen|munich||germany";

    fn site(facility: &str, city: &str, country: &str) -> Value {
        json!({"facility": facility, "city": city, "country": country, "status": "RECRUITING"})
    }

    const CRITERIA_V1: &str = "Inclusion Criteria:\n\n1. Age 18 to 65 years.\n2. Primary disease is leukemia or MDS.\n3. Both patients and donors are CMV seropositive.\n\nExclusion Criteria:\n\n1. Participation in another study.\n2. Other adoptive immunotherapy.";
    const CRITERIA_V2: &str = "Inclusion Criteria:\n\n1. Age 15 to 65 years.\n2. Primary disease is leukemia or MDS.\n3. Both patients and donors are CMV seropositive.\n\nExclusion Criteria:\n\n1. Participation in another study.\n2. Other adoptive immunotherapy.\n3. Active hepatitis B.";

    fn v1() -> Record {
        record(&[
            ("identification.nctId", json!("NCT02985775")),
            ("status.overallStatus", json!("RECRUITING")),
            ("status.completionDate", json!("2019-03")),
            ("status.lastUpdatePostDate", json!("2018-01-10")),
            ("design.phases", json!(["PHASE1", "PHASE2"])),
            ("design.enrollmentCount", json!(41)),
            ("eligibility.criteria", json!(CRITERIA_V1)),
            (
                SITE_PEKING,
                site("Peking University People's Hospital", "Beijing", "China"),
            ),
        ])
    }

    fn v2() -> Record {
        record(&[
            ("identification.nctId", json!("NCT02985775")),
            ("status.overallStatus", json!("COMPLETED")),
            ("status.completionDate", json!("2019-09")),
            ("status.lastUpdatePostDate", json!("2020-03-10")),
            ("design.phases", json!(["PHASE1", "PHASE2"])),
            ("design.enrollmentCount", json!(20)),
            ("eligibility.criteria", json!(CRITERIA_V2)),
            (
                SITE_MUNICH,
                site("Klinikum der Universität München", "Munich", "Germany"),
            ),
            (
                SITE_PEKING,
                site("Peking University People's Hospital", "Beijing", "China"),
            ),
        ])
    }

    fn changed(path: &str, old: Value, new: Value) -> FieldChange {
        FieldChange {
            path: path.into(),
            kind: ChangeKind::Changed,
            old: Some(old),
            new: Some(new),
        }
    }

    #[test]
    fn concrete_changes_between_two_versions_in_table_order() {
        let got = diff(Some(&v1()), &v2());
        let want = vec![
            changed(
                "status.overallStatus",
                json!("RECRUITING"),
                json!("COMPLETED"),
            ),
            changed("status.completionDate", json!("2019-03"), json!("2019-09")),
            changed(
                "status.lastUpdatePostDate",
                json!("2018-01-10"),
                json!("2020-03-10"),
            ),
            changed("design.enrollmentCount", json!(41), json!(20)),
            changed(
                "eligibility.criteria",
                json!(CRITERIA_V1),
                json!(CRITERIA_V2),
            ),
            FieldChange {
                path: SITE_MUNICH.into(),
                kind: ChangeKind::Added,
                old: None,
                new: Some(site(
                    "Klinikum der Universität München",
                    "Munich",
                    "Germany",
                )),
            },
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_removed_site_carries_only_its_old_value() {
        let got = diff(Some(&v2()), &v1());
        let site_change = got.iter().find(|c| c.path == SITE_MUNICH).unwrap();
        assert_eq!(site_change.kind, ChangeKind::Removed);
        assert!(site_change.old.is_some() && site_change.new.is_none());
    }

    #[test]
    fn first_snapshot_adds_every_present_path() {
        let got = diff(None, &v1());
        let paths: Vec<&str> = got.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "identification.nctId",
                "status.overallStatus",
                "status.completionDate",
                "status.lastUpdatePostDate",
                "design.phases",
                "design.enrollmentCount",
                "eligibility.criteria",
                SITE_PEKING,
            ]
        );
        assert!(
            got.iter()
                .all(|c| c.kind == ChangeKind::Added && c.old.is_none())
        );
    }

    #[test]
    fn json_value_equality_decides_a_change() {
        let a = record(&[("design.enrollmentCount", json!(20))]);
        let b = record(&[("design.enrollmentCount", json!("20"))]);
        assert_eq!(diff(Some(&a), &b).len(), 1);
        let c = record(&[(
            "sponsor.responsibleParty",
            json!({"type": "SPONSOR", "x": 1}),
        )]);
        let d = record(&[(
            "sponsor.responsibleParty",
            json!({"x": 1, "type": "SPONSOR"}),
        )]);
        assert!(
            diff(Some(&c), &d).is_empty(),
            "object key order is not a change"
        );
    }

    #[test]
    fn apply_rebuilds_the_newer_record_in_canonical_order() {
        let (a, b) = (v1(), v2());
        let got = apply(&a, &diff(Some(&a), &b));
        assert_eq!(got, b);
        assert_eq!(got.canonical_bytes(), b.canonical_bytes());
        // Munich sorts before Peking although it was added after it.
        let keys: Vec<String> = got.fields().map(|(p, _)| p).collect();
        let munich = keys.iter().position(|p| p == SITE_MUNICH).unwrap();
        let peking = keys.iter().position(|p| p == SITE_PEKING).unwrap();
        assert!(munich < peking);
    }

    #[test]
    fn long_text_rule() {
        assert!(is_long_text("eligibility.criteria", &json!("short")));
        assert!(is_long_text(
            "identification.officialTitle",
            &json!("x".repeat(81))
        ));
        assert!(!is_long_text(
            "identification.officialTitle",
            &json!("x".repeat(80))
        ));
        assert!(is_long_text("identification.briefTitle", &json!("a\nb")));
        assert!(!is_long_text("design.enrollmentCount", &json!(41)));
        assert!(!is_long_text("design.phases", &json!(["PHASE1", "PHASE2"])));
        let outcomes = json!([{"measure": "Survival", "timeFrame": "6 months", "description": "d".repeat(90)}]);
        assert!(is_long_text("outcomes.primary", &outcomes));
        let contacts = json!([{"name": "Dr. Wang", "role": "CONTACT"}]);
        assert!(!is_long_text("contacts.central", &contacts));
        assert!(!is_long_text(
            SITE_PEKING,
            &site("Peking University People's Hospital", "Beijing", "China")
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::collections::{BTreeMap, BTreeSet};

        /// Real paths of every section plus a few site keys (some with `.` and unicode), so
        /// generated pairs share sites often enough to exercise `changed` locations.
        fn path() -> impl Strategy<Value = String> {
            let mut paths: Vec<String> = schema::all_paths()
                .filter(|p| !p.starts_with("locations."))
                .collect();
            paths.extend(
                [
                    "st. mary's|london||united kingdom",
                    "peking university people's hospital|beijing|beijing municipality|china",
                    "klinikum der universität münchen|munich||germany",
                    "||",
                    "mayo clinic|rochester|minnesota|united states",
                ]
                .iter()
                .map(|k| format!("locations.{k}")),
            );
            prop::sample::select(paths)
        }

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                prop::sample::select(vec!["RECRUITING", "COMPLETED", "2019-03", "2019-09", "x"])
                    .prop_map(Value::from),
                "[a-zé \n]{0,12}".prop_map(Value::from),
                (0i64..50).prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<bool>().prop_map(Value::from),
            ];
            leaf.prop_recursive(2, 12, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 1..4).prop_map(Value::Array),
                    prop::collection::btree_map("[a-z]{1,6}", inner, 1..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn fields() -> impl Strategy<Value = BTreeMap<String, Value>> {
            prop::collection::btree_map(path(), value(), 0..10)
        }

        fn build(fields: &BTreeMap<String, Value>) -> Record {
            let pairs: Vec<(&str, Value)> = fields
                .iter()
                .map(|(p, v)| (p.as_str(), v.clone()))
                .collect();
            record(&pairs)
        }

        /// Two related records: shared fields, each side's own overrides, and paths dropped
        /// from one side only.
        fn pair() -> impl Strategy<Value = (Record, Record)> {
            (
                fields(),
                fields(),
                fields(),
                prop::collection::btree_set(path(), 0..4),
                prop::collection::btree_set(path(), 0..4),
            )
                .prop_map(|(common, only_a, only_b, drop_a, drop_b)| {
                    let side = |own: BTreeMap<String, Value>, drop: BTreeSet<String>| {
                        let mut m = common.clone();
                        m.extend(own);
                        m.retain(|p, _| !drop.contains(p));
                        build(&m)
                    };
                    (side(only_a, drop_a), side(only_b, drop_b))
                })
        }

        fn mirrored(c: &FieldChange) -> FieldChange {
            FieldChange {
                path: c.path.clone(),
                kind: match c.kind {
                    ChangeKind::Added => ChangeKind::Removed,
                    ChangeKind::Removed => ChangeKind::Added,
                    ChangeKind::Changed => ChangeKind::Changed,
                },
                old: c.new.clone(),
                new: c.old.clone(),
            }
        }

        proptest! {
            #[test]
            fn a_record_has_no_changes_against_itself((a, _) in pair()) {
                prop_assert!(diff(Some(&a), &a).is_empty());
            }

            #[test]
            fn applying_the_diff_gives_the_newer_record((a, b) in pair()) {
                let got = apply(&a, &diff(Some(&a), &b));
                prop_assert_eq!(&got, &b);
                prop_assert_eq!(got.canonical_bytes(), b.canonical_bytes());
            }

            #[test]
            fn first_snapshot_is_every_path_added((_, b) in pair()) {
                let changes = diff(None, &b);
                let paths: Vec<String> = changes.iter().map(|c| c.path.clone()).collect();
                let want: Vec<String> = b.fields().map(|(p, _)| p).collect();
                prop_assert_eq!(paths, want);
                for c in &changes {
                    prop_assert_eq!(c.kind, ChangeKind::Added);
                    prop_assert!(c.old.is_none());
                    prop_assert_eq!(c.new.as_ref(), b.get(&c.path));
                }
                prop_assert_eq!(apply(&Record::default(), &changes), b);
            }

            #[test]
            fn changes_are_unique_ordered_and_well_formed((a, b) in pair()) {
                let changes = diff(Some(&a), &b);
                for w in changes.windows(2) {
                    prop_assert!(order_key(&w[0].path) < order_key(&w[1].path),
                        "{} before {}", w[0].path, w[1].path);
                }
                for c in &changes {
                    match c.kind {
                        ChangeKind::Added => prop_assert!(c.old.is_none() && c.new.is_some()),
                        ChangeKind::Removed => prop_assert!(c.old.is_some() && c.new.is_none()),
                        ChangeKind::Changed => prop_assert!(c.old.is_some() && c.new.is_some() && c.old != c.new),
                    }
                    prop_assert_eq!(c.old.as_ref(), a.get(&c.path));
                    prop_assert_eq!(c.new.as_ref(), b.get(&c.path));
                }
            }

            #[test]
            fn diffs_in_both_directions_mirror_each_other((a, b) in pair()) {
                let forward: Vec<FieldChange> = diff(Some(&a), &b).iter().map(mirrored).collect();
                prop_assert_eq!(forward, diff(Some(&b), &a));
            }
        }
    }
}
