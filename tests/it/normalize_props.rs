//! Property tests of the parsers that read what CT.gov sends: on any input, arbitrary JSON or
//! a study-shaped tree whose modules hold values of the wrong types, they answer `Ok` or
//! `Err`, never a panic (a panic in a sync would stop it for every other trial).

use proptest::prelude::*;
use serde_json::{Map, Value};

use trialwatch::normalize::{history::read_history_body, markup::html_to_markdown, normalize_json};

/// Keys the normalizer looks for, so that generated trees reach its code paths.
const KEYS: &[&str] = &[
    "nctId",
    "briefTitle",
    "officialTitle",
    "overallStatus",
    "startDateStruct",
    "completionDateStruct",
    "lastUpdatePostDateStruct",
    "studyFirstPostDateStruct",
    "date",
    "type",
    "conditions",
    "keywords",
    "interventions",
    "name",
    "armGroups",
    "label",
    "locations",
    "facility",
    "city",
    "country",
    "status",
    "eligibilityCriteria",
    "enrollmentInfo",
    "count",
    "phases",
    "primaryOutcomes",
    "secondaryOutcomes",
    "measure",
    "timeFrame",
    "leadSponsor",
    "collaborators",
    "briefSummary",
    "detailedDescription",
    "orgStudyIdInfo",
    "id",
    "versionHolder",
];

const MODULES: &[&str] = &[
    "identificationModule",
    "statusModule",
    "sponsorCollaboratorsModule",
    "descriptionModule",
    "conditionsModule",
    "designModule",
    "armsInterventionsModule",
    "outcomesModule",
    "eligibilityModule",
    "contactsLocationsModule",
    "oversightModule",
    "referencesModule",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
        // Date-like and NCT-like strings, which parsers look into.
        "[0-9]{1,5}(-[0-9]{1,3}){0,2}".prop_map(Value::String),
        "NCT[0-9]{0,10}".prop_map(Value::String),
    ]
}

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `{"protocolSection": {module: anything, …}, …}`, with random extra top-level keys.
fn study() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((proptest::sample::select(MODULES), json()), 0..8),
        prop::collection::vec((key(), json()), 0..3),
        any::<bool>(),
    )
        .prop_map(|(modules, extra, nct)| {
            let mut protocol: Map<String, Value> = modules
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            if nct {
                protocol.insert(
                    "identificationModule".into(),
                    serde_json::json!({"nctId": "NCT01234567", "briefTitle": "x"}),
                );
            }
            let mut top: Map<String, Value> = extra.into_iter().collect();
            top.insert("protocolSection".into(), Value::Object(protocol));
            Value::Object(top)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn normalize_json_never_panics_on_arbitrary_json(v in json()) {
        let _ = normalize_json(&v.to_string());
    }

    #[test]
    fn normalize_json_never_panics_on_study_shaped_trees(v in study()) {
        let _ = normalize_json(&v.to_string());
    }

    #[test]
    fn normalize_json_never_panics_on_arbitrary_text(s in ".{0,200}") {
        let _ = normalize_json(&s);
    }

    #[test]
    fn read_history_body_never_panics(s in ".{0,200}") {
        let _ = read_history_body(&s);
    }

    #[test]
    fn read_history_body_never_panics_on_json(v in json(), study in study(), n in 0u64..40) {
        let _ = read_history_body(&v.to_string());
        let body = serde_json::json!({"studyVersion": n, "study": study, "changes": v});
        let _ = read_history_body(&body.to_string());
    }

    #[test]
    fn html_to_markdown_never_panics(s in ".{0,300}") {
        let _ = html_to_markdown(&s);
    }

    #[test]
    fn html_to_markdown_never_panics_on_tag_soup(
        parts in prop::collection::vec(
            prop_oneof![
                Just("<".to_string()), Just(">".to_string()), Just("</".to_string()),
                Just("&".to_string()), Just("&amp;".to_string()), Just("&#".to_string()),
                Just("<ul>".to_string()), Just("<li>".to_string()), Just("</li>".to_string()),
                Just("<br/>".to_string()), Just("<a href=\"".to_string()), Just("*".to_string()),
                Just("\n".to_string()), Just("<table><tr><td>".to_string()), Just("<sup>".to_string()),
                ".{0,6}",
            ],
            0..40,
        )
    ) {
        let _ = html_to_markdown(&parts.concat());
    }
}
