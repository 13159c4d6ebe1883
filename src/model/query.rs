//! Query watches as plain data: a named CT.gov search ([`QuerySpec`]) with its checks, the API
//! v2 parameters it turns into, and the event kinds a subscription can choose ([`EventKind`]).
//!
//! Running the search is `ctgov`'s, keeping its members is `store`'s, deciding who entered or
//! left is `sync`'s.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// CT.gov's `overallStatus` values (API v2 enumeration), the only ones `--status` accepts.
pub const STATUSES: &[&str] = &[
    "ACTIVE_NOT_RECRUITING",
    "COMPLETED",
    "ENROLLING_BY_INVITATION",
    "NOT_YET_RECRUITING",
    "RECRUITING",
    "SUSPENDED",
    "TERMINATED",
    "WITHDRAWN",
    "AVAILABLE",
    "NO_LONGER_AVAILABLE",
    "TEMPORARILY_NOT_AVAILABLE",
    "APPROVED_FOR_MARKETING",
    "WITHHELD",
    "UNKNOWN",
];

/// CT.gov's `phases` values, the only ones `--phase` accepts.
pub const PHASES: &[&str] = &["NA", "EARLY_PHASE1", "PHASE1", "PHASE2", "PHASE3", "PHASE4"];

/// CT.gov's `studyType` values, the only ones `--type` accepts.
pub const STUDY_TYPES: &[&str] = &["INTERVENTIONAL", "OBSERVATIONAL", "EXPANDED_ACCESS"];

/// The `--raw` parameters a query may carry: CT.gov's search and filter parameters, never paging
/// or `fields` (the watcher sets those itself).
pub const RAW_KEYS: &[&str] = &[
    "query.cond",
    "query.term",
    "query.intr",
    "query.spons",
    "query.locn",
    "query.titles",
    "query.outc",
    "query.lead",
    "query.patient",
    "filter.overallStatus",
    "filter.advanced",
    "filter.geo",
    "filter.synonyms",
    "aggFilters",
];

/// One watched search, as `trialwatch query add` or `[[query]]` declares it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuerySpec {
    /// The query's name: what `subscribe --query` and `query show` refer to.
    pub name: String,
    /// `query.cond`: conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cond: Option<String>,
    /// `query.term`: anywhere in the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    /// `query.intr`: interventions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intr: Option<String>,
    /// `query.spons`: sponsors and collaborators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spons: Option<String>,
    /// `query.locn`: locations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locn: Option<String>,
    /// `filter.overallStatus`: any of these statuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<String>,
    /// Any of these phases (`filter.advanced=AREA[Phase]…`; CT.gov has no `filter.phase`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phase: Vec<String>,
    /// This study type (`filter.advanced=AREA[StudyType]…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_type: Option<String>,
    /// More CT.gov parameters as a query string, for what the options do not cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// Whether the members are also synced with full change tracking.
    #[serde(default)]
    pub watch: bool,
}

/// Split `a=b&c=d` into decoded pairs, refusing keys a query may not carry.
fn raw_pairs(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    // reqwest's URL parser decodes a query string the way CT.gov's server does.
    let url = reqwest::Url::parse(&format!("http://q/?{}", raw.trim().trim_start_matches('?')))
        .map_err(|e| {
            format!(
                "--raw is not a query string ({e}); write it as query.cond=…&filter.overallStatus=…"
            )
        })?;
    for (k, v) in url.query_pairs() {
        if !RAW_KEYS.contains(&k.as_ref()) {
            return Err(format!(
                "--raw: `{k}` is not a search parameter a query may set; use one of {}",
                RAW_KEYS.join(", ")
            ));
        }
        if v.trim().is_empty() {
            return Err(format!(
                "--raw: `{k}` is empty; give it a value or leave it out"
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// `s` upper-cased with `-`/space as `_`, if it is one of `allowed`.
fn enum_value(s: &str, allowed: &[&str], what: &str, example: &str) -> Result<String, String> {
    let v = s.trim().to_ascii_uppercase().replace(['-', ' '], "_");
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(format!(
            "`{s}` is not a CT.gov {what}; use one of {} (e.g. {example})",
            allowed.join(", ")
        ))
    }
}

impl QuerySpec {
    /// Check the name and every parameter, upper-casing the enumerations; every problem is in
    /// the one message, so the user fixes them all at once. Nothing is stored before this.
    pub fn validated(mut self) -> Result<QuerySpec, String> {
        let mut problems = Vec::new();
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            problems.push(format!(
                "query name {:?} must be 1 to 64 letters, digits, `-` or `_` (e.g. cmv-china)",
                self.name
            ));
        }
        for (key, v) in [
            ("cond", &mut self.cond),
            ("term", &mut self.term),
            ("intr", &mut self.intr),
            ("spons", &mut self.spons),
            ("locn", &mut self.locn),
        ] {
            if let Some(s) = v {
                if s.trim().is_empty() {
                    problems.push(format!(
                        "--{key} is empty; give search words or leave it out"
                    ));
                }
                *s = s.trim().to_string();
            }
        }
        let mut status = Vec::new();
        for s in &self.status {
            match enum_value(s, STATUSES, "status", "RECRUITING") {
                Ok(v) if !status.contains(&v) => status.push(v),
                Ok(_) => {}
                Err(e) => problems.push(format!("--status: {e}")),
            }
        }
        self.status = status;
        let mut phase = Vec::new();
        for s in &self.phase {
            let s = s.trim();
            // `2` and `phase2` are how people write it.
            let t = if s.chars().all(|c| c.is_ascii_digit()) {
                format!("PHASE{s}")
            } else {
                s.to_string()
            };
            match enum_value(&t, PHASES, "phase", "PHASE2") {
                Ok(v) if !phase.contains(&v) => phase.push(v),
                Ok(_) => {}
                Err(_) => problems.push(format!(
                    "--phase: `{s}` is not a CT.gov phase; use one of {} (e.g. PHASE2)",
                    PHASES.join(", ")
                )),
            }
        }
        self.phase = phase;
        if let Some(t) = &self.study_type {
            match enum_value(t, STUDY_TYPES, "study type", "INTERVENTIONAL") {
                Ok(v) => self.study_type = Some(v),
                Err(e) => problems.push(format!("--type: {e}")),
            }
        }
        if let Some(r) = &self.raw
            && let Err(e) = raw_pairs(r)
        {
            problems.push(e);
        }
        if problems.is_empty() && self.params().is_empty() {
            problems.push(
                "the query has no search parameter: give at least one of --cond, --term, --intr, \
                 --spons, --locn, --status, --phase, --type or --raw"
                    .into(),
            );
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(problems.join("; "))
        }
    }

    /// The API v2 `/studies` parameters of the search (without paging or `fields`), in a fixed
    /// order so every page repeats them exactly.
    pub fn params(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (key, v) in [
            ("query.cond", &self.cond),
            ("query.term", &self.term),
            ("query.intr", &self.intr),
            ("query.spons", &self.spons),
            ("query.locn", &self.locn),
        ] {
            if let Some(s) = v {
                out.push((key.into(), s.clone()));
            }
        }
        if !self.status.is_empty() {
            out.push(("filter.overallStatus".into(), self.status.join(",")));
        }
        let mut advanced = Vec::new();
        match self.phase.as_slice() {
            [] => {}
            [one] => advanced.push(format!("AREA[Phase]{one}")),
            many => advanced.push(format!(
                "({})",
                many.iter()
                    .map(|p| format!("AREA[Phase]{p}"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            )),
        }
        if let Some(t) = &self.study_type {
            advanced.push(format!("AREA[StudyType]{t}"));
        }
        for (k, v) in self
            .raw
            .as_deref()
            .map(raw_pairs)
            .and_then(Result::ok)
            .unwrap_or_default()
        {
            if k == "filter.advanced" {
                advanced.push(v);
            } else if let Some(slot) = out.iter_mut().find(|(ok, _)| *ok == k) {
                // The option and `--raw` both set it: CT.gov would take one, so both must hold.
                slot.1 = format!("({}) AND ({v})", slot.1);
            } else {
                out.push((k, v));
            }
        }
        if !advanced.is_empty() {
            out.push(("filter.advanced".into(), advanced.join(" AND ")));
        }
        out
    }

    /// The parameters as one line for listings (`query.cond=CMV&filter.overallStatus=…`).
    pub fn describe(&self) -> String {
        self.params()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// What a subscription hears about, beyond (or instead of) field changes. New kinds are added
/// here; a subscription without a list hears field changes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// Field changes of a new version (the only kind before event kinds existed).
    Changes,
    /// A trial entered a watched query.
    QueryEntered,
    /// A trial left a watched query.
    QueryLeft,
    /// Results are due within 30 days (42 CFR 11.44).
    ResultsDue,
    /// Results are overdue: past the deadline and its 30 days' grace.
    ResultsOverdue,
    /// A trial that was overdue is no longer (results posted, deadline extended).
    ResultsNoLongerOverdue,
    /// The record was last verified more than 12 months ago.
    VerificationLapsing,
    /// The completion date is past but the status still says (not yet) recruiting.
    StaleStatus,
    /// trialwatch itself: scheduled syncs kept failing (`[alerts] health_after` in a row on
    /// business days), or syncing recovered. About no trial.
    Health,
}

impl EventKind {
    /// Every kind, for messages that list them.
    pub const ALL: &'static [EventKind] = &[
        EventKind::Changes,
        EventKind::QueryEntered,
        EventKind::QueryLeft,
        EventKind::ResultsDue,
        EventKind::ResultsOverdue,
        EventKind::ResultsNoLongerOverdue,
        EventKind::VerificationLapsing,
        EventKind::StaleStatus,
        EventKind::Health,
    ];

    /// The word the CLI, the config and the webhook's `event` use.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Changes => "changes",
            EventKind::QueryEntered => "query-entered",
            EventKind::QueryLeft => "query-left",
            EventKind::ResultsDue => "results-due",
            EventKind::ResultsOverdue => "results-overdue",
            EventKind::ResultsNoLongerOverdue => "results-no-longer-overdue",
            EventKind::VerificationLapsing => "verification-lapsing",
            EventKind::StaleStatus => "stale-status",
            EventKind::Health => "health",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase().replace('_', "-");
        EventKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == t)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not an event kind; use one of {}",
                    EventKind::ALL
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> QuerySpec {
        QuerySpec {
            name: "cmv-china".into(),
            cond: Some(" CMV infection ".into()),
            status: vec!["recruiting".into()],
            phase: vec!["2".into(), "phase3".into()],
            study_type: Some("interventional".into()),
            locn: Some("China".into()),
            ..QuerySpec::default()
        }
    }

    #[test]
    fn parameters_are_checked_and_become_api_v2_params() {
        let q = spec().validated().unwrap();
        assert_eq!(q.status, ["RECRUITING"]);
        assert_eq!(q.phase, ["PHASE2", "PHASE3"]);
        let p = q.params();
        assert!(p.contains(&("query.cond".into(), "CMV infection".into())));
        assert!(p.contains(&("filter.overallStatus".into(), "RECRUITING".into())));
        assert!(p.contains(&(
            "filter.advanced".into(),
            "(AREA[Phase]PHASE2 OR AREA[Phase]PHASE3) AND AREA[StudyType]INTERVENTIONAL".into()
        )));
    }

    #[test]
    fn bad_parameters_get_one_clear_message() {
        let mut q = spec();
        q.status = vec!["RECRUTING".into()];
        q.phase = vec!["PHASE9".into()];
        q.name = "has space".into();
        let e = q.validated().unwrap_err();
        assert!(e.contains("`RECRUTING` is not a CT.gov status"), "{e}");
        assert!(e.contains("`PHASE9` is not a CT.gov phase"), "{e}");
        assert!(e.contains("query name"), "{e}");
        let raw = QuerySpec {
            name: "x".into(),
            raw: Some("pageSize=5".into()),
            ..QuerySpec::default()
        };
        assert!(raw.validated().unwrap_err().contains("`pageSize`"));
        let empty = QuerySpec {
            name: "x".into(),
            ..QuerySpec::default()
        };
        assert!(
            empty
                .validated()
                .unwrap_err()
                .contains("no search parameter")
        );
    }

    #[test]
    fn raw_parameters_merge_with_the_options() {
        let q = QuerySpec {
            name: "x".into(),
            phase: vec!["PHASE2".into()],
            raw: Some(
                "query.cond=covid&filter.advanced=AREA[StudyFirstPostDate]RANGE[2024-01-01,MAX]"
                    .into(),
            ),
            ..QuerySpec::default()
        }
        .validated()
        .unwrap();
        assert_eq!(
            q.params(),
            vec![
                ("query.cond".to_string(), "covid".to_string()),
                (
                    "filter.advanced".to_string(),
                    "AREA[Phase]PHASE2 AND AREA[StudyFirstPostDate]RANGE[2024-01-01,MAX]"
                        .to_string()
                )
            ]
        );
    }

    #[test]
    fn event_kinds_parse() {
        assert_eq!(
            "query-entered".parse::<EventKind>(),
            Ok(EventKind::QueryEntered)
        );
        assert_eq!("QUERY_LEFT".parse::<EventKind>(), Ok(EventKind::QueryLeft));
        assert!("nope".parse::<EventKind>().unwrap_err().contains("changes"));
    }
}
