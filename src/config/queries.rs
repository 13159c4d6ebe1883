//! `[[query]]` (watched CT.gov searches declared in the file) and `[queries]` (their settings:
//! `max_matches`). Each entry is checked by [`QuerySpec::validated`], the same check
//! `trialwatch query add` uses. Running queries is `crate::sync`'s business.
//!
//! (`[query] max_matches` cannot sit beside `[[query]]` entries: TOML does not allow a table and
//! an array of tables under one name, so the settings table is `[queries]`.)

use serde::Deserialize;

use crate::model::QuerySpec;

/// The default cap: a query matching more trials is reported as too broad instead of run.
pub const DEFAULT_MAX_MATCHES: usize = 10_000;

/// The largest cap accepted: beyond it one run would hold too much (and take too long).
const MAX_MAX_MATCHES: i64 = 200_000;

/// `[queries]` and the `[[query]]` entries, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueriesConfig {
    /// A query matching more than this many trials is reported as too broad, not run.
    pub max_matches: usize,
    /// The `[[query]]` entries (a query of the same name added with `query add` is overridden).
    pub declared: Vec<QuerySpec>,
}

impl Default for QueriesConfig {
    fn default() -> Self {
        QueriesConfig {
            max_matches: DEFAULT_MAX_MATCHES,
            declared: Vec::new(),
        }
    }
}

/// `[queries]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueries {
    pub(super) max_matches: Option<i64>,
}

/// One `[[query]]` entry: the keys of `trialwatch query add`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuery {
    pub(super) name: Option<String>,
    pub(super) cond: Option<String>,
    pub(super) term: Option<String>,
    pub(super) intr: Option<String>,
    pub(super) spons: Option<String>,
    pub(super) locn: Option<String>,
    #[serde(default)]
    pub(super) status: Vec<String>,
    #[serde(default)]
    pub(super) phase: Vec<String>,
    #[serde(rename = "type")]
    pub(super) study_type: Option<String>,
    pub(super) raw: Option<String>,
    pub(super) watch: Option<bool>,
}

/// Check `[queries]` and every `[[query]]`; problems name the entry and key.
pub(super) fn validate_queries(
    settings: &RawQueries,
    entries: &[RawQuery],
    problems: &mut Vec<String>,
) -> QueriesConfig {
    let max_matches = match settings.max_matches {
        None => DEFAULT_MAX_MATCHES,
        Some(n) if (1..=MAX_MAX_MATCHES).contains(&n) => n as usize,
        Some(n) => {
            problems.push(format!(
                "`queries.max_matches` = {n} is out of range; use 1 to {MAX_MAX_MATCHES} (default {DEFAULT_MAX_MATCHES})"
            ));
            DEFAULT_MAX_MATCHES
        }
    };
    let mut declared: Vec<QuerySpec> = Vec::new();
    for (i, r) in entries.iter().enumerate() {
        let key = format!("query[{i}]");
        let Some(name) = r.name.clone() else {
            problems.push(format!(
                "`{key}` has no `name`; add name = \"cmv-china\" (what subscriptions refer to)"
            ));
            continue;
        };
        let spec = QuerySpec {
            name,
            cond: r.cond.clone(),
            term: r.term.clone(),
            intr: r.intr.clone(),
            spons: r.spons.clone(),
            locn: r.locn.clone(),
            status: r.status.clone(),
            phase: r.phase.clone(),
            study_type: r.study_type.clone(),
            raw: r.raw.clone(),
            watch: r.watch.unwrap_or(false),
        };
        match spec.validated() {
            Ok(q) if declared.iter().any(|d| d.name == q.name) => problems.push(format!(
                "`{key}` repeats the name {:?} of an earlier query; names must differ",
                q.name
            )),
            Ok(q) => declared.push(q),
            Err(e) => problems.push(format!("`{key}`: {e}")),
        }
    }
    QueriesConfig {
        max_matches,
        declared,
    }
}
