//! A record-history version body (`/api/int/studies/{nct}/history/{v}`) read as the API v2
//! study it stands for: the same JSON shape, with the website's HTML turned back into API v2's
//! Markdown in markup fields and entities decoded in every other text, so that it normalizes
//! like a study fetched from `/api/v2` (`docs/ctgov-api.md` §9).
//!
//! Pure. Fetching the body is the client's job; deciding where the version goes, the
//! backfill's.

use serde_json::Value;

use super::markup::{decode_entities, html_to_markdown};

/// Keys whose value is CT.gov "markup" wherever they appear in a protocol section (CT.gov's
/// field metadata marks them `MARKUP`).
const MARKUP_KEYS: &[&str] = &[
    "whyStopped",
    "briefSummary",
    "detailedDescription",
    "interventionModelDescription",
    "maskingDescription",
    "eligibilityCriteria",
    "genderDescription",
    "studyPopulation",
    "accessCriteria",
];

/// Keys that are markup only inside one parent (`description` of an arm is markup, a
/// `timeFrame` of an outcome is not).
const MARKUP_IN: &[(&str, &str)] = &[
    ("bioSpec", "description"),
    ("armGroups", "description"),
    ("interventions", "description"),
    ("primaryOutcomes", "description"),
    ("secondaryOutcomes", "description"),
    ("otherOutcomes", "description"),
    ("seeAlsoLinks", "label"),
    ("availIpds", "comment"),
    ("ipdSharingStatementModule", "description"),
    ("ipdSharingStatementModule", "timeFrame"),
];

/// Why a history body could not be read as a study.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryBodyError {
    /// Not JSON at all (a proxy's HTML page, a truncated answer).
    #[error("the history version is not JSON: {0}")]
    NotJson(String),
    /// JSON, but without the `{"studyVersion": N, "study": {…}}` shape.
    #[error("the history version has no `{0}`")]
    Missing(&'static str),
}

/// A version body read as an API v2 study: its CT.gov version number and the study JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryStudy {
    /// `studyVersion`: CT.gov's own number, from 0.
    pub version: u32,
    /// The study as API v2 would give it (Markdown markup, no entities).
    pub study: Value,
}

/// Reads a history version body.
pub fn read_history_body(body: &str) -> Result<HistoryStudy, HistoryBodyError> {
    let mut v: Value =
        serde_json::from_str(body).map_err(|e| HistoryBodyError::NotJson(e.to_string()))?;
    let version = v
        .get("studyVersion")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(HistoryBodyError::Missing("studyVersion"))?;
    let mut study = match v.get_mut("study") {
        Some(s @ Value::Object(_)) => s.take(),
        _ => return Err(HistoryBodyError::Missing("study")),
    };
    as_api_v2(&mut study, "", "");
    Ok(HistoryStudy { version, study })
}

/// Rewrites every text of `v` in place: markup fields to Markdown, others entity-decoded.
/// `parent` is the key of the object (or list) holding `v`, `key` its own key.
fn as_api_v2(v: &mut Value, parent: &str, key: &str) {
    match v {
        Value::String(s) => {
            let markup = MARKUP_KEYS.contains(&key) || MARKUP_IN.contains(&(parent, key));
            let new = if markup {
                html_to_markdown(s)
            } else {
                decode_entities(s).into_owned()
            };
            *s = new;
        }
        Value::Array(items) => {
            for item in items {
                // A list item's own keys have the list's key as parent (`armGroups[].description`).
                as_api_v2(item, key, key);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                as_api_v2(item, key, k);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_fields_become_markdown_and_other_texts_lose_their_entities() {
        let body = r#"{"studyVersion": 3, "study": {"protocolSection": {
            "identificationModule": {"nctId": "NCT04280705", "briefTitle": "A &amp; B"},
            "eligibilityModule": {"eligibilityCriteria": "<p>Inclusion:</p><ul><li>Age &gt;&#x2F;= 18</li></ul>"},
            "armsInterventionsModule": {"armGroups": [{"label": "A &lt; B", "description": "<p>x</p><p>y</p>"}]},
            "outcomesModule": {"primaryOutcomes": [{"measure": "m", "timeFrame": "Day 1 &#x2F; 29"}]}
        }}}"#;
        let h = read_history_body(body).unwrap();
        assert_eq!(h.version, 3);
        let ps = &h.study["protocolSection"];
        assert_eq!(ps["identificationModule"]["briefTitle"], "A & B");
        assert_eq!(
            ps["eligibilityModule"]["eligibilityCriteria"],
            "Inclusion:\n\n* Age \\>/= 18"
        );
        assert_eq!(
            ps["armsInterventionsModule"]["armGroups"][0]["label"],
            "A < B"
        );
        assert_eq!(
            ps["armsInterventionsModule"]["armGroups"][0]["description"],
            "x\n\ny"
        );
        assert_eq!(
            ps["outcomesModule"]["primaryOutcomes"][0]["timeFrame"],
            "Day 1 / 29"
        );
    }

    #[test]
    fn bodies_without_the_version_shape_are_refused() {
        assert!(matches!(
            read_history_body("<html>"),
            Err(HistoryBodyError::NotJson(_))
        ));
        assert_eq!(
            read_history_body(r#"{"study": {}}"#),
            Err(HistoryBodyError::Missing("studyVersion"))
        );
        assert_eq!(
            read_history_body(r#"{"studyVersion": 1}"#),
            Err(HistoryBodyError::Missing("study"))
        );
    }
}
