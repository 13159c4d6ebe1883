//! CT.gov's record history, the two internal endpoints behind the website's "History of
//! Changes" (`docs/ctgov-api.md` §9): the index of a study's versions
//! (`/api/int/studies/{nct}/history`) and one version's body (`…/history/{v}`).
//!
//! Requests go through the client's one rate limiter and retry policy, exactly like API v2
//! calls. This file reads the index's shape; turning a version body into a record is
//! `crate::normalize::history`'s job, deciding where it goes the backfill's.

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::client::CtGovClient;
use super::error::{FetchError, describe_ids};
use crate::model::{NctId, OutcomeSwitch};

/// One entry of the history index: a version CT.gov posted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// CT.gov's version number: 0 for the record as first registered, then 1, 2… without gaps.
    pub version: u32,
    /// The day CT.gov posted this version.
    pub date: NaiveDate,
    /// The overall status at this version, as the website lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The record's sections this version changed ("Study Status", "Contacts/Locations"…);
    /// empty for version 0.
    #[serde(default)]
    pub module_labels: Vec<String>,
}

/// The history index of one study.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryIndex {
    /// Every version, oldest first, by version number.
    pub entries: Vec<HistoryEntry>,
    /// Whether the primary outcomes changed since registration, when the index says.
    pub outcome_switch: Option<OutcomeSwitch>,
}

impl HistoryIndex {
    /// The newest version CT.gov posted on `day` (`YYYY-MM-DD`, a record's
    /// `lastUpdatePostDate`): the CT.gov version a record with that date is.
    pub fn newest_posted_on(&self, day: Option<&str>) -> Option<&HistoryEntry> {
        let day = NaiveDate::parse_from_str(day?, "%Y-%m-%d").ok()?;
        self.entries
            .iter()
            .filter(|e| e.date == day)
            .max_by_key(|e| e.version)
    }
}

/// The index as CT.gov sends it; unknown keys are ignored (the endpoint is unversioned).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIndex {
    #[serde(default)]
    changes: Option<Vec<HistoryEntry>>,
    #[serde(default)]
    last_update_versions: Option<Map<String, Value>>,
    #[serde(default)]
    original_data: Option<Map<String, Value>>,
}

/// Reads an index body. An index without `changes`, or with an empty list, has no versions.
pub(crate) fn parse_index(body: &str) -> Result<HistoryIndex, String> {
    let raw: RawIndex = serde_json::from_str(body)
        .map_err(|e| format!("not a history index (`changes`, `lastUpdateVersions`): {e}"))?;
    let mut entries = raw.changes.unwrap_or_default();
    entries.sort_by_key(|e| e.version);
    entries.dedup_by_key(|e| e.version);
    let same = raw
        .original_data
        .as_ref()
        .and_then(|o| o.get("primaryOutcomesSame"))
        .and_then(Value::as_bool);
    let last = raw
        .last_update_versions
        .as_ref()
        .and_then(|l| l.get("primaryOutcomes"))
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok());
    let outcome_switch = match (same, last) {
        (Some(true), _) | (None, Some(0)) => Some(OutcomeSwitch::Unchanged),
        (_, Some(v)) if v > 0 => Some(OutcomeSwitch::Changed {
            last_ctgov_version: v,
        }),
        _ => None,
    };
    Ok(HistoryIndex {
        entries,
        outcome_switch,
    })
}

impl CtGovClient {
    /// `GET /api/int/studies/{id}/history`: the study's version index. `Ok(None)`: 404, CT.gov
    /// keeps no history for it.
    pub async fn history_index(&self, id: &NctId) -> Result<Option<HistoryIndex>, FetchError> {
        let url = self.int_url(&format!("/studies/{id}/history"))?;
        let subject = format!("the history of {}", describe_ids(std::slice::from_ref(id)));
        self.get(&url, &subject, true, &parse_index).await
    }

    /// `GET /api/int/studies/{id}/history/{version}`: one version's body, as sent (HTML
    /// markup; see `normalize::history`). `Ok(None)`: 404.
    pub async fn history_version(
        &self,
        id: &NctId,
        version: u32,
    ) -> Result<Option<String>, FetchError> {
        let url = self.int_url(&format!("/studies/{id}/history/{version}"))?;
        let subject = format!(
            "version {version} of the history of {}",
            describe_ids(std::slice::from_ref(id))
        );
        let keep = |body: &str| Ok::<_, String>(body.to_string());
        self.get(&url, &subject, true, &keep).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_lists_versions_and_tells_an_outcome_switch() {
        let body = r#"{"changes":[
            {"version":1,"date":"2020-02-25","status":"RECRUITING","moduleLabels":["Study Status"]},
            {"version":0,"date":"2020-02-21","status":"NOT_YET_RECRUITING","moduleLabels":[]}],
          "lastUpdateVersions":{"primaryOutcomes":1,"enrollmentInfo":0},
          "originalData":{"primaryOutcomes":[{"measure":"x"}]}, "outcomesUpdateCount": 1}"#;
        let idx = parse_index(body).unwrap();
        assert_eq!(idx.entries.len(), 2);
        assert_eq!(idx.entries[0].version, 0);
        assert_eq!(
            idx.entries[1].module_labels,
            vec!["Study Status".to_string()]
        );
        assert_eq!(
            idx.outcome_switch,
            Some(OutcomeSwitch::Changed {
                last_ctgov_version: 1
            })
        );
        let same = r#"{"changes":[{"version":0,"date":"2020-02-21"}],
            "originalData":{"primaryOutcomesSame":true},"lastUpdateVersions":{"primaryOutcomes":0}}"#;
        assert_eq!(
            parse_index(same).unwrap().outcome_switch,
            Some(OutcomeSwitch::Unchanged)
        );
    }

    #[test]
    fn an_index_without_changes_has_no_versions() {
        assert!(parse_index("{}").unwrap().entries.is_empty());
        assert!(parse_index(r#"{"changes":[]}"#).unwrap().entries.is_empty());
        assert!(
            parse_index(r#"{"changes":null}"#)
                .unwrap()
                .entries
                .is_empty()
        );
        assert!(parse_index("<html>").is_err());
    }
}
