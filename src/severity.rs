//! How much one field change matters: the alert severity rules, all in this one file, and a
//! one-line summary of each change for people.
//!
//! Pure: it judges a [`FieldChange`] with the two records around it for context. It does not
//! decide who hears about a change (watched fields, subscriptions) nor suppress the first
//! snapshot of a trial, where every path is `added`: that is the caller's job.
//!
//! The rules, from most to least severe:
//! - **critical** — `status.overallStatus` becomes one of [`STOPPED_STATUSES`];
//!   `status.whyStopped` is added; `outcomes.primary` changes in any way.
//! - **notable** — any other `status.overallStatus` change; `design.phases`; `sponsor.lead`;
//!   results posted (`results.hasResults` false or absent → true);
//!   `armsInterventions.arms` / `.interventions`; `design.enrollmentCount` moved by at least
//!   [`ENROLLMENT_NOTABLE_PERCENT`] % of the old count; `status.startDate`,
//!   `.primaryCompletionDate` or `.completionDate` moved by at least [`DATE_NOTABLE_DAYS`] days;
//!   a site added or removed.
//! - **minor** — everything else.

use chrono::NaiveDate;
use serde_json::Value;

use crate::diff::is_long_text;
use crate::model::{ChangeKind, FieldChange, Record, Severity};
use crate::render::text::value_brief;
use crate::util::text::plural;

/// `status.overallStatus` values that mean the trial stopped early: critical.
pub const STOPPED_STATUSES: &[&str] = &["TERMINATED", "SUSPENDED", "WITHDRAWN"];

/// An enrollment count moving by at least this percentage of the old count is notable.
pub const ENROLLMENT_NOTABLE_PERCENT: i64 = 20;

/// A start or completion date moving by at least this many days is notable.
pub const DATE_NOTABLE_DAYS: i64 = 30;

/// Which records [`assess`] reads for a change at `path`: `(old, new)`. A caller that lists
/// many changes (`changes --since`) decodes only those, instead of both records of every
/// version; keep it in step with the `match` in [`assess`].
pub fn records_read(path: &str) -> (bool, bool) {
    match path {
        "status.overallStatus" | "results.hasResults" => (false, true),
        "status.whyStopped" => (true, true),
        _ => (false, false),
    }
}

/// The paths of a version's own record that [`assess`] reads, for the changes
/// [`records_read`] says need a record (keep the three in step). A store keeps these values
/// beside such a version's metadata ([`context_of`]), so `changes --since` judges it without
/// decoding a record.
pub const CONTEXT_PATHS: &[&str] = &[
    "status.overallStatus",
    "status.whyStopped",
    "status.resultsFirstPostDate",
];

/// The part of `record` that [`assess`] reads when it is a change's new record.
pub fn context_of(record: &Record) -> Record {
    let mut out = Record::default();
    for path in CONTEXT_PATHS {
        if let Some(v) = record.get(path) {
            out.set(path, v.clone());
        }
    }
    out
}

/// Whether judging `changes` reads a record at all (and so a stored context pays off).
pub fn needs_context(changes: &[FieldChange]) -> bool {
    changes
        .iter()
        .any(|c| records_read(&c.path) != (false, false))
}

/// The `(old, new)` records [`assess`] needs for `changes` (a version's changes against the
/// version before it), rebuilt from the version's own [`context_of`]: what `assess` reads of
/// them is exactly what it would read of the whole records. The old record's status is the
/// status change's old value, or the unchanged new one.
pub fn records_from_context(context: &Record, changes: &[FieldChange]) -> (Record, Record) {
    let path = "status.overallStatus";
    let old_status = match changes.iter().find(|c| c.path == path) {
        Some(c) => c.old.clone(),
        None => context.get(path).cloned(),
    };
    let mut old = Record::default();
    if let Some(v) = old_status {
        old.set(path, v);
    }
    (old, context.clone())
}

/// The severity of one change and a one-line summary for people, such as
/// `status RECRUITING → COMPLETED`, `enrollment 41 → 20 (−51%)`,
/// `completion date slipped 184 days, 2019-03 → 2019-09`, `eligibility criteria edited` or
/// `site added: Peking University People's Hospital, Beijing (China)`.
///
/// `old` and `new` are the records the change was computed from (`old` is `None` for a first
/// snapshot); they give context to some summaries (the reason a trial stopped, when results
/// were first posted). Rules are in the module documentation.
pub fn assess(change: &FieldChange, old: Option<&Record>, new: &Record) -> (Severity, String) {
    let path = change.path.as_str();
    match path {
        "status.overallStatus" => overall_status(change, new),
        "status.whyStopped" => why_stopped(change, old, new),
        "outcomes.primary" => (Severity::Critical, list_change(change, "measure")),
        "design.phases" | "sponsor.lead" => (Severity::Notable, summary(change)),
        "armsInterventions.arms" => (Severity::Notable, list_change(change, "label")),
        "armsInterventions.interventions" => (Severity::Notable, list_change(change, "name")),
        "results.hasResults" => results(change, new),
        "design.enrollmentCount" => enrollment(change),
        "status.startDate" | "status.primaryCompletionDate" | "status.completionDate" => {
            date_shift(change)
        }
        _ if path.starts_with("locations.") => site(change),
        _ => (Severity::Minor, summary(change)),
    }
}

fn overall_status(change: &FieldChange, new: &Record) -> (Severity, String) {
    let stopped = change
        .new
        .as_ref()
        .and_then(Value::as_str)
        .is_some_and(|s| STOPPED_STATUSES.contains(&s));
    if !stopped {
        return (Severity::Notable, summary(change));
    }
    let mut text = summary(change);
    if let Some(why) = new.text("status.whyStopped") {
        text.push_str(&format!(
            " (why stopped: {})",
            value_brief(&Value::from(why))
        ));
    }
    (Severity::Critical, text)
}

fn why_stopped(change: &FieldChange, old: Option<&Record>, new: &Record) -> (Severity, String) {
    let (ChangeKind::Added, Some(why)) = (change.kind, &change.new) else {
        return (Severity::Minor, summary(change));
    };
    let mut text = format!("reason for stopping given: {}", value_brief(why));
    let before = old.and_then(Record::overall_status);
    if let Some(after) = new.overall_status().filter(|after| Some(*after) != before) {
        match before {
            Some(before) => text.push_str(&format!(" (status {before} → {after})")),
            None => text.push_str(&format!(" (status {after})")),
        }
    }
    (Severity::Critical, text)
}

fn results(change: &FieldChange, new: &Record) -> (Severity, String) {
    let is_true = |v: &Option<Value>| v.as_ref().and_then(Value::as_bool) == Some(true);
    if is_true(&change.new) && !is_true(&change.old) {
        let text = match new.text("status.resultsFirstPostDate") {
            Some(date) => format!("results posted (first posted {date})"),
            None => "results posted".to_string(),
        };
        (Severity::Notable, text)
    } else if is_true(&change.old) && !is_true(&change.new) {
        (Severity::Minor, "results no longer listed".to_string())
    } else {
        (Severity::Minor, summary(change))
    }
}

fn enrollment(change: &FieldChange) -> (Severity, String) {
    let count = |v: &Option<Value>| v.as_ref().and_then(Value::as_i64).map(i128::from);
    let (Some(before), Some(after)) = (count(&change.old), count(&change.new)) else {
        return (Severity::Minor, summary(change));
    };
    let delta = after - before;
    if before == 0 {
        let sev = if delta == 0 {
            Severity::Minor
        } else {
            Severity::Notable
        };
        return (sev, format!("enrollment {before} → {after}"));
    }
    let notable = delta.abs() * 100 >= i128::from(ENROLLMENT_NOTABLE_PERCENT) * before.abs();
    // Truncated toward zero, so a change shown as "20%" really is at least 20%.
    let percent = delta * 100 / before.abs();
    let sign = if percent < 0 { "−" } else { "+" };
    let text = format!("enrollment {before} → {after} ({sign}{}%)", percent.abs());
    let sev = if notable {
        Severity::Notable
    } else {
        Severity::Minor
    };
    (sev, text)
}

/// A CT.gov partial date `YYYY`, `YYYY-MM` or `YYYY-MM-DD` as its first day.
pub fn partial_date(s: &str) -> Option<NaiveDate> {
    let mut parts = s.trim().splitn(3, '-');
    let year = parts.next().filter(|y| y.len() == 4)?.parse().ok()?;
    let month = match parts.next() {
        Some(m) => m.parse().ok()?,
        None => 1,
    };
    let day = match parts.next() {
        Some(d) => d.parse().ok()?,
        None => 1,
    };
    NaiveDate::from_ymd_opt(year, month, day)
}

fn date_shift(change: &FieldChange) -> (Severity, String) {
    let label = field_label(&change.path);
    let date = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).map(str::to_string);
    let (Some(before), Some(after)) = (date(&change.old), date(&change.new)) else {
        return (Severity::Minor, summary(change));
    };
    let (Some(from), Some(to)) = (partial_date(&before), partial_date(&after)) else {
        return (Severity::Minor, format!("{label} {before} → {after}"));
    };
    let days = (to - from).num_days();
    let text = match days {
        0 => format!("{label} {before} → {after}"),
        d if d > 0 => format!(
            "{label} slipped {}, {before} → {after}",
            plural(usize::try_from(d).unwrap_or(usize::MAX), "day")
        ),
        d => format!(
            "{label} moved earlier by {}, {before} → {after}",
            plural(
                usize::try_from(d.unsigned_abs()).unwrap_or(usize::MAX),
                "day"
            )
        ),
    };
    let sev = if days.abs() >= DATE_NOTABLE_DAYS {
        Severity::Notable
    } else {
        Severity::Minor
    };
    (sev, text)
}

fn site(change: &FieldChange) -> (Severity, String) {
    let key = change
        .path
        .strip_prefix("locations.")
        .unwrap_or(&change.path);
    match change.kind {
        ChangeKind::Added => (
            Severity::Notable,
            format!("site added: {}", site_name(change.new.as_ref(), key)),
        ),
        ChangeKind::Removed => (
            Severity::Notable,
            format!("site removed: {}", site_name(change.old.as_ref(), key)),
        ),
        ChangeKind::Changed => {
            let name = site_name(change.new.as_ref(), key);
            let status = |v: &Option<Value>| {
                first_site(v.as_ref())
                    .and_then(|m| m.get("status"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let text = match (status(&change.old), status(&change.new)) {
                (Some(a), Some(b)) if a != b => format!("site {a} → {b}: {name}"),
                _ => format!("site details edited: {name}"),
            };
            (Severity::Minor, text)
        }
    }
}

/// The site object of a location value (the first one when duplicates were merged).
fn first_site(v: Option<&Value>) -> Option<&serde_json::Map<String, Value>> {
    match v? {
        Value::Object(m) => Some(m),
        Value::Array(items) => items.first()?.as_object(),
        _ => None,
    }
}

/// `Facility, City (Country)` from the site's value, falling back to the lower-cased parts of
/// its key (`facility|city|state|country`) when the value lacks them.
fn site_name(v: Option<&Value>, key: &str) -> String {
    let from_key: Vec<&str> = key.split('|').collect();
    let part = |field: &str, index: usize| -> String {
        first_site(v)
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .or_else(|| from_key.get(index).copied())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let (facility, city, country) = (part("facility", 0), part("city", 1), part("country", 3));
    let place: Vec<&str> = [facility.as_str(), city.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    match (place.is_empty(), country.is_empty()) {
        (false, false) => format!("{} ({country})", place.join(", ")),
        (false, true) => place.join(", "),
        (true, false) => country,
        (true, true) => "unnamed site".to_string(),
    }
}

/// A change to a list of objects (outcomes, arms, interventions) named by their `name_key`
/// field: `primary outcomes changed: added X; removed Y`, or just `… changed` when the same
/// items were edited.
fn list_change(change: &FieldChange, name_key: &str) -> String {
    let label = field_label(&change.path);
    let (old, new) = match (change.kind, &change.old, &change.new) {
        (ChangeKind::Changed, Some(old), Some(new)) => (old, new),
        _ => return summary(change),
    };
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item.get(name_key)?.as_str())
            .map(|s| value_brief(&Value::from(s)))
            .collect()
    };
    let (before, after) = (names(old), names(new));
    let added: Vec<&str> = after
        .iter()
        .filter(|n| !before.contains(n))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = before
        .iter()
        .filter(|n| !after.contains(n))
        .map(String::as_str)
        .collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("added {}", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {}", removed.join(", ")));
    }
    if parts.is_empty() {
        format!("{label} changed")
    } else {
        format!("{label} changed: {}", parts.join("; "))
    }
}

/// The summary of a change that no rule words specially: `label old → new`, `label edited` for
/// long text, `label added: value` / `label added`, `label removed`.
fn summary(change: &FieldChange) -> String {
    let label = field_label(&change.path);
    let long = [&change.old, &change.new]
        .into_iter()
        .flatten()
        .any(|v| is_long_text(&change.path, v));
    let compound = |v: &Value| v.is_object() || v.is_array() && !is_scalar_list(v);
    match (change.kind, &change.old, &change.new) {
        (ChangeKind::Changed, _, _) if long => format!("{label} edited"),
        (ChangeKind::Changed, Some(old), Some(new)) if !compound(old) && !compound(new) => {
            format!("{label} {} → {}", brief(old), brief(new))
        }
        (ChangeKind::Changed, _, _) => format!("{label} changed"),
        (ChangeKind::Added, _, Some(new)) if !long && !compound(new) => {
            format!("{label} added: {}", brief(new))
        }
        (ChangeKind::Added, _, _) => format!("{label} added"),
        (ChangeKind::Removed, _, _) => format!("{label} removed"),
    }
}

fn is_scalar_list(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|a| a.iter().all(|i| !i.is_object() && !i.is_array()))
}

/// Like [`value_brief`], but a list of scalars reads as `a, b` in a sentence.
fn brief(v: &Value) -> String {
    match v.as_array() {
        Some(items) if is_scalar_list(v) => {
            let s = value_brief(v);
            let inner = s.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
            match (items.is_empty(), inner) {
                (true, _) => "none".to_string(),
                (false, Some(inner)) => inner.to_string(),
                (false, None) => s,
            }
        }
        _ => value_brief(v),
    }
}

/// Words for a field path in summaries (`design.enrollmentCount` → `enrollment`); an unknown
/// path reads as itself.
pub fn field_label(path: &str) -> &str {
    match path {
        "identification.nctId" => "NCT ID",
        "identification.briefTitle" => "brief title",
        "identification.officialTitle" => "official title",
        "identification.acronym" => "acronym",
        "identification.orgStudyId" => "organization's study ID",
        "identification.secondaryIds" => "secondary IDs",
        "identification.aliases" => "NCT ID aliases",
        "identification.organization" => "organization",
        "status.overallStatus" => "status",
        "status.lastKnownStatus" => "last known status",
        "status.whyStopped" => "reason for stopping",
        "status.statusVerifiedDate" => "status verified date",
        "status.startDate" => "start date",
        "status.startDateType" => "start date type",
        "status.primaryCompletionDate" => "primary completion date",
        "status.primaryCompletionDateType" => "primary completion date type",
        "status.completionDate" => "completion date",
        "status.completionDateType" => "completion date type",
        "status.studyFirstPostDate" => "first posted date",
        "status.resultsFirstPostDate" => "results first posted date",
        "status.lastUpdatePostDate" => "last update posted",
        "sponsor.lead" => "lead sponsor",
        "sponsor.leadClass" => "lead sponsor class",
        "sponsor.collaborators" => "collaborators",
        "sponsor.responsibleParty" => "responsible party",
        "oversight.hasDmc" => "data monitoring committee",
        "oversight.fdaRegulatedDrug" => "FDA-regulated drug",
        "oversight.fdaRegulatedDevice" => "FDA-regulated device",
        "description.briefSummary" => "brief summary",
        "description.detailedDescription" => "detailed description",
        "conditions.conditions" => "conditions",
        "conditions.keywords" => "keywords",
        "design.studyType" => "study type",
        "design.phases" => "phase",
        "design.allocation" => "allocation",
        "design.interventionModel" => "intervention model",
        "design.primaryPurpose" => "primary purpose",
        "design.observationalModel" => "observational model",
        "design.timePerspective" => "time perspective",
        "design.masking" => "masking",
        "design.whoMasked" => "who is masked",
        "design.enrollmentCount" => "enrollment",
        "design.enrollmentType" => "enrollment type",
        "armsInterventions.arms" => "arms",
        "armsInterventions.interventions" => "interventions",
        "outcomes.primary" => "primary outcomes",
        "outcomes.secondary" => "secondary outcomes",
        "outcomes.other" => "other outcomes",
        "eligibility.criteria" => "eligibility criteria",
        "eligibility.minAge" => "minimum age",
        "eligibility.maxAge" => "maximum age",
        "eligibility.sex" => "sex",
        "eligibility.healthyVolunteers" => "healthy volunteers",
        "eligibility.stdAges" => "age groups",
        "eligibility.studyPopulation" => "study population",
        "contacts.central" => "central contacts",
        "contacts.officials" => "overall officials",
        "references.references" => "references",
        "ipd.sharing" => "individual participant data sharing",
        "documents.files" => "documents",
        "results.hasResults" => "results",
        "results.violations" => "violations",
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;
    use serde_json::json;

    use Severity::{Critical, Minor, Notable};

    fn change(path: &str, old: Option<Value>, new: Option<Value>) -> FieldChange {
        let kind = match (&old, &new) {
            (None, _) => ChangeKind::Added,
            (_, None) => ChangeKind::Removed,
            _ => ChangeKind::Changed,
        };
        FieldChange {
            path: path.into(),
            kind,
            old,
            new,
        }
    }

    /// `(severity, summary)` of a change judged between two empty-but-present records.
    fn judge(path: &str, old: Option<Value>, new: Option<Value>) -> (Severity, String) {
        let record = Record::default();
        assess(&change(path, old, new), Some(&record), &record)
    }

    /// Guards [`records_read`]: a path it says reads no record is judged the same with rich
    /// records as with empty ones, and one it says reads the new record only does not read the
    /// old one (so `changes` may skip decoding them).
    #[test]
    fn records_read_names_every_record_assess_reads() {
        let mut old = Record::default();
        old.set("status.overallStatus", json!("RECRUITING"));
        old.set("status.whyStopped", json!("funding"));
        old.set("results.hasResults", json!(false));
        let mut new = Record::default();
        new.set("status.overallStatus", json!("TERMINATED"));
        new.set("status.whyStopped", json!("sponsor decision"));
        new.set("results.hasResults", json!(true));
        let empty = Record::default();
        let values = [
            (None, Some(json!("TERMINATED"))),
            (Some(json!("x")), Some(json!("y"))),
            (Some(json!(false)), Some(json!(true))),
            (None, Some(json!("sponsor decision"))),
        ];
        let mut paths: Vec<String> = schema::all_paths().collect();
        paths.push("locations.x|Naples||Italy".into());
        for path in &paths {
            let (need_old, need_new) = records_read(path);
            for (o, n) in &values {
                let c = change(path, o.clone(), n.clone());
                let full = assess(&c, Some(&old), &new);
                let new_only = assess(&c, None, if need_new { &new } else { &empty });
                if !need_old {
                    assert_eq!(full, new_only, "{path}");
                }
            }
        }
    }

    /// Guards [`records_from_context`]: for real changes (a diff of two records), every change
    /// is judged the same from the stored context as from the two whole records.
    #[test]
    fn a_context_judges_like_the_whole_records() {
        let mut base = Record::default();
        base.set("status.overallStatus", json!("RECRUITING"));
        base.set("status.startDate", json!("2020-01"));
        base.set("design.enrollmentCount", json!(100));
        base.set("identification.briefTitle", json!("A trial"));
        let edits: &[fn(&mut Record)] = &[
            |r| r.set("status.overallStatus", json!("TERMINATED")),
            |r| {
                r.set("status.overallStatus", json!("TERMINATED"));
                r.set("status.whyStopped", json!("funding ended"));
            },
            |r| r.set("status.whyStopped", json!("funding ended")),
            |r| {
                r.set("status.overallStatus", json!("COMPLETED"));
                r.set("results.hasResults", json!(true));
                r.set("status.resultsFirstPostDate", json!("2024-05-01"));
            },
            |r| r.set("results.hasResults", json!(true)),
            |r| r.set("design.enrollmentCount", json!(10)),
            |r| r.set("identification.briefTitle", json!("Another")),
        ];
        for (i, edit) in edits.iter().enumerate() {
            for old in [base.clone(), Record::default()] {
                let mut new = old.clone();
                edit(&mut new);
                let changes = crate::diff::diff(Some(&old), &new);
                assert!(!changes.is_empty(), "edit {i}");
                let (c_old, c_new) = records_from_context(&context_of(&new), &changes);
                for c in &changes {
                    assert_eq!(
                        assess(c, Some(&old), &new),
                        assess(c, Some(&c_old), &c_new),
                        "edit {i}: {}",
                        c.path
                    );
                }
            }
        }
    }

    /// `(path, old value, new value, expected severity, expected summary)`.
    type Case<'a> = (&'a str, Option<Value>, Option<Value>, Severity, &'a str);

    fn check(cases: &[Case<'_>]) {
        for (path, old, new, sev, text) in cases {
            let got = judge(path, old.clone(), new.clone());
            assert_eq!(got, (*sev, text.to_string()), "{path}: {old:?} → {new:?}");
        }
    }

    fn s(v: &str) -> Option<Value> {
        Some(json!(v))
    }

    #[test]
    fn severities_are_ordered_named_and_parsed() {
        assert!(Minor < Notable && Notable < Critical);
        assert_eq!(serde_json::to_string(&Critical).unwrap(), "\"critical\"");
        assert_eq!(
            serde_json::from_str::<Severity>("\"notable\"").unwrap(),
            Notable
        );
        assert_eq!(" Critical ".parse::<Severity>().unwrap(), Critical);
        assert_eq!("minor".parse::<Severity>().unwrap(), Minor);
        let err = "urgent".parse::<Severity>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`urgent` is not a severity: expected one of minor, notable, critical"
        );
        assert_eq!(Notable.to_string(), "notable");
    }

    #[test]
    fn overall_status_rules() {
        let p = "status.overallStatus";
        check(&[
            (
                p,
                s("RECRUITING"),
                s("TERMINATED"),
                Critical,
                "status RECRUITING → TERMINATED",
            ),
            (
                p,
                s("RECRUITING"),
                s("SUSPENDED"),
                Critical,
                "status RECRUITING → SUSPENDED",
            ),
            (
                p,
                s("NOT_YET_RECRUITING"),
                s("WITHDRAWN"),
                Critical,
                "status NOT_YET_RECRUITING → WITHDRAWN",
            ),
            (p, None, s("WITHDRAWN"), Critical, "status added: WITHDRAWN"),
            (
                p,
                s("RECRUITING"),
                s("COMPLETED"),
                Notable,
                "status RECRUITING → COMPLETED",
            ),
            (
                p,
                s("SUSPENDED"),
                s("RECRUITING"),
                Notable,
                "status SUSPENDED → RECRUITING",
            ),
            (p, s("RECRUITING"), None, Notable, "status removed"),
            (
                p,
                None,
                s("RECRUITING"),
                Notable,
                "status added: RECRUITING",
            ),
        ]);
    }

    #[test]
    fn a_stopped_status_names_the_reason_from_the_new_record() {
        let mut new = Record::default();
        new.set("status.overallStatus", json!("TERMINATED"));
        new.set("status.whyStopped", json!("Sponsor decision"));
        let c = change("status.overallStatus", s("RECRUITING"), s("TERMINATED"));
        assert_eq!(
            assess(&c, None, &new),
            (
                Critical,
                "status RECRUITING → TERMINATED (why stopped: Sponsor decision)".into()
            )
        );
    }

    #[test]
    fn why_stopped_appearing_is_critical_and_edits_are_minor() {
        let mut old = Record::default();
        old.set("status.overallStatus", json!("RECRUITING"));
        let mut new = Record::default();
        new.set("status.overallStatus", json!("TERMINATED"));
        let c = change("status.whyStopped", None, s("Low accrual"));
        assert_eq!(
            assess(&c, Some(&old), &new),
            (
                Critical,
                "reason for stopping given: Low accrual (status RECRUITING → TERMINATED)".into()
            )
        );
        assert_eq!(
            assess(&c, Some(&new), &new),
            (Critical, "reason for stopping given: Low accrual".into())
        );
        check(&[
            (
                "status.whyStopped",
                s("Low accrual"),
                s("Low accrual, funding"),
                Minor,
                "reason for stopping Low accrual → Low accrual, funding",
            ),
            (
                "status.whyStopped",
                s("Low accrual"),
                None,
                Minor,
                "reason for stopping removed",
            ),
        ]);
    }

    #[test]
    fn primary_outcomes_are_critical_in_every_kind() {
        let p = "outcomes.primary";
        let one = json!([{"measure": "Overall survival", "timeFrame": "6 months"}]);
        let edited = json!([{"measure": "Overall survival", "timeFrame": "12 months"}]);
        let two = json!([{"measure": "Overall survival", "timeFrame": "6 months"},
                         {"measure": "Relapse rate", "timeFrame": "6 months"}]);
        let other = json!([{"measure": "Relapse rate", "timeFrame": "6 months"}]);
        check(&[
            (
                p,
                Some(one.clone()),
                Some(edited),
                Critical,
                "primary outcomes changed",
            ),
            (
                p,
                Some(one.clone()),
                Some(two),
                Critical,
                "primary outcomes changed: added Relapse rate",
            ),
            (
                p,
                Some(one.clone()),
                Some(other),
                Critical,
                "primary outcomes changed: added Relapse rate; removed Overall survival",
            ),
            (
                p,
                None,
                Some(one.clone()),
                Critical,
                "primary outcomes added",
            ),
            (
                p,
                Some(one.clone()),
                None,
                Critical,
                "primary outcomes removed",
            ),
            (
                "outcomes.secondary",
                Some(one.clone()),
                None,
                Minor,
                "secondary outcomes removed",
            ),
        ]);
    }

    #[test]
    fn design_sponsor_arms_and_interventions_are_notable() {
        let arm = |l: &str| json!([{"label": l, "type": "EXPERIMENTAL"}]);
        let drug = |n: &str| json!([{"name": n, "type": "DRUG"}]);
        check(&[
            (
                "design.phases",
                Some(json!(["PHASE1"])),
                Some(json!(["PHASE1", "PHASE2"])),
                Notable,
                "phase PHASE1 → PHASE1, PHASE2",
            ),
            (
                "design.phases",
                None,
                Some(json!(["PHASE2"])),
                Notable,
                "phase added: PHASE2",
            ),
            (
                "sponsor.lead",
                s("Peking University"),
                s("Novartis"),
                Notable,
                "lead sponsor Peking University → Novartis",
            ),
            (
                "armsInterventions.arms",
                Some(arm("A")),
                Some(arm("B")),
                Notable,
                "arms changed: added B; removed A",
            ),
            (
                "armsInterventions.interventions",
                Some(drug("Placebo")),
                Some(json!([{"name": "Placebo", "type": "OTHER"}])),
                Notable,
                "interventions changed",
            ),
            (
                "armsInterventions.interventions",
                None,
                Some(drug("X")),
                Notable,
                "interventions added",
            ),
        ]);
    }

    #[test]
    fn results_posted_is_notable_only_when_they_appear() {
        let p = "results.hasResults";
        check(&[
            (
                p,
                Some(json!(false)),
                Some(json!(true)),
                Notable,
                "results posted",
            ),
            (p, None, Some(json!(true)), Notable, "results posted"),
            (
                p,
                Some(json!(true)),
                Some(json!(false)),
                Minor,
                "results no longer listed",
            ),
            (
                p,
                Some(json!(true)),
                None,
                Minor,
                "results no longer listed",
            ),
            (p, None, Some(json!(false)), Minor, "results added: false"),
        ]);
        let mut new = Record::default();
        new.set("status.resultsFirstPostDate", json!("2021-04-02"));
        let c = change(p, Some(json!(false)), Some(json!(true)));
        assert_eq!(
            assess(&c, None, &new),
            (Notable, "results posted (first posted 2021-04-02)".into())
        );
    }

    #[test]
    fn enrollment_moves_of_twenty_percent_are_notable() {
        let p = "design.enrollmentCount";
        let n = |v: i64| Some(json!(v));
        check(&[
            (p, n(41), n(20), Notable, "enrollment 41 → 20 (−51%)"),
            (p, n(100), n(120), Notable, "enrollment 100 → 120 (+20%)"),
            (p, n(100), n(80), Notable, "enrollment 100 → 80 (−20%)"),
            (p, n(100), n(119), Minor, "enrollment 100 → 119 (+19%)"),
            (p, n(100), n(81), Minor, "enrollment 100 → 81 (−19%)"),
            // 19.9% is below the line and is not rounded up to look like it is on it.
            (p, n(1000), n(1199), Minor, "enrollment 1000 → 1199 (+19%)"),
            (p, n(5), n(6), Notable, "enrollment 5 → 6 (+20%)"),
            (p, n(0), n(10), Notable, "enrollment 0 → 10"),
            (p, None, n(10), Minor, "enrollment added: 10"),
            (p, n(10), None, Minor, "enrollment removed"),
            (p, n(10), s("ten"), Minor, "enrollment 10 → ten"),
            (
                "design.enrollmentType",
                s("ESTIMATED"),
                s("ACTUAL"),
                Minor,
                "enrollment type ESTIMATED → ACTUAL",
            ),
        ]);
    }

    #[test]
    fn partial_dates_are_their_first_day() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(partial_date("2019"), d(2019, 1, 1));
        assert_eq!(partial_date("2019-03"), d(2019, 3, 1));
        assert_eq!(partial_date("2019-03-15"), d(2019, 3, 15));
        for bad in ["", "19", "2019-13", "2019-02-30", "March 2019", "2019-xx"] {
            assert_eq!(partial_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn date_moves_of_thirty_days_are_notable() {
        check(&[
            (
                "status.completionDate",
                s("2019-03"),
                s("2019-09"),
                Notable,
                "completion date slipped 184 days, 2019-03 → 2019-09",
            ),
            (
                "status.completionDate",
                s("2019-09"),
                s("2019-03"),
                Notable,
                "completion date moved earlier by 184 days, 2019-09 → 2019-03",
            ),
            (
                "status.primaryCompletionDate",
                s("2020-01-01"),
                s("2020-01-31"),
                Notable,
                "primary completion date slipped 30 days, 2020-01-01 → 2020-01-31",
            ),
            (
                "status.primaryCompletionDate",
                s("2020-01-01"),
                s("2020-01-30"),
                Minor,
                "primary completion date slipped 29 days, 2020-01-01 → 2020-01-30",
            ),
            (
                "status.startDate",
                s("2020-01-31"),
                s("2020-01-01"),
                Notable,
                "start date moved earlier by 30 days, 2020-01-31 → 2020-01-01",
            ),
            (
                "status.startDate",
                s("2020-01-30"),
                s("2020-01"),
                Minor,
                "start date moved earlier by 29 days, 2020-01-30 → 2020-01",
            ),
            // A month is its first day: February 2019 → March 2019 is 28 days.
            (
                "status.startDate",
                s("2019-02"),
                s("2019-03"),
                Minor,
                "start date slipped 28 days, 2019-02 → 2019-03",
            ),
            (
                "status.startDate",
                s("2019"),
                s("2019-02"),
                Notable,
                "start date slipped 31 days, 2019 → 2019-02",
            ),
            (
                "status.startDate",
                s("2019"),
                s("2019-01-02"),
                Minor,
                "start date slipped 1 day, 2019 → 2019-01-02",
            ),
            (
                "status.completionDate",
                s("2019-03"),
                s("2019-03-01"),
                Minor,
                "completion date 2019-03 → 2019-03-01",
            ),
            (
                "status.completionDate",
                s("2019-03"),
                s("soon"),
                Minor,
                "completion date 2019-03 → soon",
            ),
            (
                "status.completionDate",
                None,
                s("2019-03"),
                Minor,
                "completion date added: 2019-03",
            ),
            (
                "status.completionDate",
                s("2019-03"),
                None,
                Minor,
                "completion date removed",
            ),
            (
                "status.studyFirstPostDate",
                s("2019-03-01"),
                s("2019-09-01"),
                Minor,
                "first posted date 2019-03-01 → 2019-09-01",
            ),
        ]);
    }

    #[test]
    fn sites_added_or_removed_are_notable() {
        let key =
            "locations.peking university people's hospital|beijing|beijing municipality|china";
        let site = |status: &str| {
            json!({"facility": "Peking University People's Hospital",
            "city": "Beijing", "state": "Beijing Municipality", "country": "China", "status": status})
        };
        check(&[
            (
                key,
                None,
                Some(site("RECRUITING")),
                Notable,
                "site added: Peking University People's Hospital, Beijing (China)",
            ),
            (
                key,
                Some(site("RECRUITING")),
                None,
                Notable,
                "site removed: Peking University People's Hospital, Beijing (China)",
            ),
            (
                key,
                Some(site("RECRUITING")),
                Some(site("COMPLETED")),
                Minor,
                "site RECRUITING → COMPLETED: Peking University People's Hospital, Beijing (China)",
            ),
            (
                key,
                Some(site("RECRUITING")),
                Some(json!([site("RECRUITING"), site("RECRUITING")])),
                Minor,
                "site details edited: Peking University People's Hospital, Beijing (China)",
            ),
            // Without a usable value the key still names the place.
            (
                "locations.st. mary's|london||united kingdom",
                None,
                Some(json!({})),
                Notable,
                "site added: st. mary's, london (united kingdom)",
            ),
            (
                "locations.||germany",
                None,
                Some(json!({"country": "Germany"})),
                Notable,
                "site added: Germany",
            ),
            (
                "locations.|||",
                Some(json!({})),
                None,
                Notable,
                "site removed: unnamed site",
            ),
        ]);
    }

    #[test]
    fn everything_else_is_minor_with_a_summary() {
        let criteria = "Inclusion Criteria:\n\n1. Adults.";
        check(&[
            (
                "eligibility.criteria",
                s(criteria),
                s("Inclusion Criteria:\n\n1. Adults over 18."),
                Minor,
                "eligibility criteria edited",
            ),
            (
                "eligibility.criteria",
                s("Adults."),
                s("Adults over 18."),
                Minor,
                "eligibility criteria edited",
            ),
            (
                "eligibility.minAge",
                s("15 Years"),
                s("18 Years"),
                Minor,
                "minimum age 15 Years → 18 Years",
            ),
            (
                "status.lastUpdatePostDate",
                s("2018-01-10"),
                s("2020-03-10"),
                Minor,
                "last update posted 2018-01-10 → 2020-03-10",
            ),
            (
                "conditions.keywords",
                None,
                Some(json!(["CMV", "HSCT"])),
                Minor,
                "keywords added: CMV, HSCT",
            ),
            (
                "contacts.central",
                None,
                Some(json!([{"name": "Dr. Wang"}])),
                Minor,
                "central contacts added",
            ),
            (
                "sponsor.responsibleParty",
                Some(json!({"type": "SPONSOR"})),
                Some(json!({"type": "PRINCIPAL_INVESTIGATOR"})),
                Minor,
                "responsible party changed",
            ),
            (
                "oversight.hasDmc",
                Some(json!(true)),
                Some(json!(false)),
                Minor,
                "data monitoring committee true → false",
            ),
            ("future.field", s("a"), s("b"), Minor, "future.field a → b"),
        ]);
    }

    #[test]
    fn every_schema_path_has_words() {
        for path in schema::all_paths().filter(|p| !p.starts_with("locations.")) {
            assert_ne!(field_label(&path), path, "{path} has no label");
        }
    }
}
