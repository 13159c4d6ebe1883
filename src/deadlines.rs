//! The deadline rules, all in one place and pure (the caller passes "today" and the stored raw
//! study, read by [`read_raw`]): which deadlines a trial's record says are coming or missed. No
//! edit announces these; they follow from dates.
//!
//! - **Results due / overdue** (42 CFR 11.44): a trial with an FDA-regulated drug or device
//!   (`oversight.fdaRegulatedDrug`/`fdaRegulatedDevice`) whose primary completion date is
//!   `ACTUAL` owes results 12 months after that date; a partial date (`2020-03`) counts as the
//!   end of its month. A certification of delayed submission (`dispFirstSubmitDate`) moves the
//!   deadline two more years. Overdue starts after 30 days' grace (as the FDAAA TrialsTracker
//!   counts). Posted results (`results.hasResults`) end it.
//! - **Verification lapsing** (42 CFR 11.64): `status.statusVerifiedDate` older than 12 months
//!   on a trial not completed, terminated or withdrawn (CT.gov shows such records as UNKNOWN
//!   once two years have passed).
//! - **Stale status** (42 CFR 11.64, status updated within 30 days of a change): the completion
//!   date is past while the status still says recruiting or not yet recruiting.
//!
//! Which of these become events, and when, is [`transitions`]: each condition is told once per
//! trial, kind and due date, and leaving "overdue" is told once too.

use chrono::{Datelike, Duration, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::model::{EventKind, Severity};

/// Days before the results deadline that "due in 30 days" is told.
pub const DUE_SOON_DAYS: i64 = 30;
/// Days of grace after the results deadline before a trial counts as overdue.
pub const GRACE_DAYS: i64 = 30;

/// What the rules read of one trial (the CT.gov fields named in the rules above).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// `status.overallStatus`.
    pub status: Option<String>,
    /// `status.primaryCompletionDate` (partial date).
    pub primary_completion: Option<String>,
    /// `status.primaryCompletionDateType`.
    pub primary_completion_type: Option<String>,
    /// `status.completionDate` (partial date).
    pub completion: Option<String>,
    /// `oversight.fdaRegulatedDrug` or `oversight.fdaRegulatedDevice`.
    pub fda_regulated: bool,
    /// `results.hasResults`.
    pub has_results: bool,
    /// `status.statusVerifiedDate` (partial date).
    pub verified: Option<String>,
    /// `statusModule.dispFirstSubmitDate` is set (it is not in the normalized record): a
    /// certification of delayed submission was filed.
    pub delay_certified: bool,
}

impl Facts {
    /// Whether the results rule applies at all.
    pub fn results_rule_applies(&self) -> bool {
        self.fda_regulated
            && self
                .primary_completion_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("ACTUAL"))
            && self
                .primary_completion
                .as_deref()
                .and_then(end_of)
                .is_some()
    }
}

/// A partial date (`2020`, `2020-03`, `2020-03-13`) as its last day.
pub fn end_of(date: &str) -> Option<NaiveDate> {
    let parts: Vec<&str> = date.trim().split('-').collect();
    let num = |s: &str| s.parse::<u32>().ok();
    match parts.as_slice() {
        [y, m, d] => NaiveDate::from_ymd_opt(y.parse().ok()?, num(m)?, num(d)?),
        [y, m] => {
            let first = NaiveDate::from_ymd_opt(y.parse().ok()?, num(m)?, 1)?;
            Some(first.checked_add_months(Months::new(1))? - Duration::days(1))
        }
        [y] => NaiveDate::from_ymd_opt(y.parse().ok()?, 12, 31),
        _ => None,
    }
}

/// The parts of a raw CT.gov study the rules and the alert read. The stored raw study of the
/// head version is read instead of the normalized record: it holds `dispFirstSubmitDate`, which
/// the record does not, and one small serde pass over it (everything else skipped) costs a
/// fraction of decoding the record, which the store compresses against the raw study anyway.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStudy {
    #[serde(rename = "protocolSection")]
    p: RawProtocol,
    #[serde(rename = "hasResults")]
    has_results: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawProtocol {
    #[serde(rename = "identificationModule")]
    ident: RawIdent,
    #[serde(rename = "statusModule")]
    status: RawStatus,
    #[serde(rename = "oversightModule")]
    oversight: RawOversight,
    #[serde(rename = "designModule")]
    design: RawDesign,
    #[serde(rename = "sponsorCollaboratorsModule")]
    sponsors: RawSponsors,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawIdent {
    #[serde(rename = "briefTitle")]
    title: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawDate {
    date: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStatus {
    #[serde(rename = "overallStatus")]
    overall: Option<String>,
    #[serde(rename = "statusVerifiedDate")]
    verified: Option<String>,
    #[serde(rename = "primaryCompletionDateStruct")]
    primary: RawDate,
    #[serde(rename = "completionDateStruct")]
    completion: RawDate,
    #[serde(rename = "dispFirstSubmitDate")]
    disp: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawOversight {
    #[serde(rename = "isFdaRegulatedDrug")]
    drug: Option<bool>,
    #[serde(rename = "isFdaRegulatedDevice")]
    device: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawDesign {
    phases: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSponsors {
    #[serde(rename = "leadSponsor")]
    lead: RawLead,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawLead {
    name: Option<String>,
}

/// What an alert shows of the trial besides the condition.
#[derive(Debug, Clone, Default)]
pub struct Shown {
    /// `briefTitle`.
    pub title: Option<String>,
    /// `overallStatus`.
    pub status: Option<String>,
    /// `phases`, joined with `, `.
    pub phase: Option<String>,
    /// `leadSponsor.name`.
    pub sponsor: Option<String>,
}

/// The rules' facts and the alert's trial details of one raw study (`None` if it is not JSON).
pub fn read_raw(raw: &[u8]) -> Option<(Facts, Shown)> {
    let r: RawStudy = serde_json::from_slice(raw).ok()?;
    let s = r.p.status;
    let facts = Facts {
        status: s.overall.clone(),
        primary_completion: s.primary.date,
        primary_completion_type: s.primary.kind,
        completion: s.completion.date,
        fda_regulated: r.p.oversight.drug == Some(true) || r.p.oversight.device == Some(true),
        has_results: r.has_results == Some(true),
        verified: s.verified,
        delay_certified: s.disp.is_some_and(|d| !d.trim().is_empty()),
    };
    let shown = Shown {
        title: r.p.ident.title,
        status: s.overall,
        phase: (!r.p.design.phases.is_empty()).then(|| r.p.design.phases.join(", ")),
        sponsor: r.p.sponsors.lead.name,
    };
    Some((facts, shown))
}

/// One deadline condition that holds today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// Which rule.
    pub kind: EventKind,
    /// The deadline it is about (results due date, verification due date, completion date).
    pub due: NaiveDate,
    /// How much it matters.
    pub severity: Severity,
    /// One line for people: what is due and since or until when.
    pub summary: String,
}

fn results_due(f: &Facts) -> Option<NaiveDate> {
    if !f.results_rule_applies() || f.has_results {
        return None;
    }
    let pcd = f.primary_completion.as_deref().and_then(end_of)?;
    let years = if f.delay_certified { 3 } else { 1 };
    pcd.checked_add_months(Months::new(12 * years))
}

/// Every condition that holds for `f` on `today`.
pub fn conditions(f: &Facts, today: NaiveDate) -> Vec<Condition> {
    let mut out = Vec::new();
    if let Some(due) = results_due(f) {
        let certified = if f.delay_certified {
            " (extended by a certification of delayed submission)"
        } else {
            ""
        };
        if today > due + Duration::days(GRACE_DAYS) {
            out.push(Condition {
                kind: EventKind::ResultsOverdue,
                due,
                severity: Severity::Critical,
                summary: format!(
                    "results overdue: due {due}{certified}, {} days late (42 CFR 11.44)",
                    (today - due).num_days()
                ),
            });
        } else if today >= due - Duration::days(DUE_SOON_DAYS) {
            let days = (due - today).num_days();
            out.push(Condition {
                kind: EventKind::ResultsDue,
                due,
                severity: Severity::Notable,
                summary: if days >= 0 {
                    format!("results due {due}{certified}, in {days} days (42 CFR 11.44)")
                } else {
                    format!(
                        "results were due {due}{certified}; {} days of grace left (42 CFR 11.44)",
                        GRACE_DAYS + days
                    )
                },
            });
        }
    }
    let closed = matches!(
        f.status.as_deref(),
        Some("COMPLETED" | "TERMINATED" | "WITHDRAWN")
    );
    if !closed
        && let Some(verified) = f.verified.as_deref().and_then(end_of)
        && let Some(due) = verified.checked_add_months(Months::new(12))
        && today > due
    {
        out.push(Condition {
            kind: EventKind::VerificationLapsing,
            due,
            severity: Severity::Notable,
            summary: format!(
                "record last verified {verified}, more than 12 months ago: due again by {due} \
                 (42 CFR 11.64; CT.gov shows it as UNKNOWN once 2 years have passed)"
            ),
        });
    }
    if matches!(
        f.status.as_deref(),
        Some("RECRUITING" | "NOT_YET_RECRUITING")
    ) && let Some(done) = f.completion.as_deref().and_then(end_of)
        && today > done
    {
        out.push(Condition {
            kind: EventKind::StaleStatus,
            due: done,
            severity: Severity::Notable,
            summary: format!(
                "completion date {done} is past but the status still says {}",
                f.status.as_deref().unwrap_or("")
            ),
        });
    }
    out
}

/// What was told about one trial already, kept between evaluations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Told {
    /// `(kind, due)` of every event told.
    #[serde(default)]
    pub events: Vec<(EventKind, NaiveDate)>,
    /// The results deadline the trial is overdue on, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overdue: Option<NaiveDate>,
}

/// The events today's conditions owe given what was told, and what is told after them: each
/// condition once per kind and due date, and "no longer overdue" once when a trial leaves
/// overdue (results posted, a certification moved the deadline, the record changed).
pub fn transitions(now: &[Condition], told: &Told) -> (Vec<Condition>, Told) {
    let mut next = told.clone();
    let mut events = Vec::new();
    for c in now {
        if !told.events.contains(&(c.kind, c.due)) {
            events.push(c.clone());
            next.events.push((c.kind, c.due));
        }
    }
    let overdue_now = now
        .iter()
        .find(|c| c.kind == EventKind::ResultsOverdue)
        .map(|c| c.due);
    if let Some(was) = told.overdue
        && overdue_now != Some(was)
    {
        let key = (EventKind::ResultsNoLongerOverdue, was);
        if !next.events.contains(&key) {
            events.push(Condition {
                kind: EventKind::ResultsNoLongerOverdue,
                due: was,
                severity: Severity::Notable,
                summary: format!("no longer overdue: results were due {was}"),
            });
            next.events.push(key);
        }
    }
    next.overdue = overdue_now;
    (events, next)
}

/// `YYYYMMDD` of a day, for event keys.
pub fn day_key(d: NaiveDate) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn fixture(name: &str) -> String {
        let p = format!("{}/tests/fixtures/ctgov/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(p).unwrap()
    }

    fn facts(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Facts {
        let mut v: serde_json::Value = serde_json::from_str(&fixture(name)).unwrap();
        edit(&mut v);
        read_raw(v.to_string().as_bytes()).unwrap().0
    }

    fn kinds(c: &[Condition]) -> Vec<(EventKind, String)> {
        c.iter().map(|c| (c.kind, c.due.to_string())).collect()
    }

    #[test]
    fn partial_dates_count_as_the_end_of_their_month() {
        assert_eq!(end_of("2013-01"), Some(day("2013-01-31")));
        assert_eq!(end_of("2024-02"), Some(day("2024-02-29")));
        assert_eq!(end_of("2020"), Some(day("2020-12-31")));
        assert_eq!(end_of("2020-03-13"), Some(day("2020-03-13")));
        assert_eq!(end_of("soon"), None);
    }

    /// NCT03418623: FDA-regulated drug, primary completion 2020-03-13 (actual), no results.
    #[test]
    fn results_are_due_then_overdue_after_the_grace() {
        let f = facts("NCT03418623.json", |_| {});
        assert!(f.results_rule_applies());
        assert!(conditions(&f, day("2021-02-10")).is_empty());
        let soon = conditions(&f, day("2021-02-20"));
        assert_eq!(kinds(&soon), [(EventKind::ResultsDue, "2021-03-13".into())]);
        assert!(soon[0].summary.contains("in 21 days"), "{soon:?}");
        // In the grace period it is still "due", not overdue.
        assert_eq!(
            kinds(&conditions(&f, day("2021-04-12")))[0].0,
            EventKind::ResultsDue
        );
        let late = conditions(&f, day("2021-04-13"));
        assert_eq!(
            kinds(&late),
            [(EventKind::ResultsOverdue, "2021-03-13".into())]
        );
        assert_eq!(late[0].severity, Severity::Critical);
    }

    /// NCT00763412: FDA drug, primary completion "2013-01" (a partial date), results posted.
    #[test]
    fn a_partial_primary_completion_date_and_posted_results() {
        assert!(conditions(&facts("NCT00763412.json", |_| {}), day("2014-06-01")).is_empty());
        let f = facts("NCT00763412.json", |v| v["hasResults"] = false.into());
        let c = conditions(&f, day("2014-01-05"));
        assert_eq!(kinds(&c), [(EventKind::ResultsDue, "2014-01-31".into())]);
        // Not FDA-regulated, or an estimated date: the rule does not apply.
        let f = facts("NCT00763412.json", |v| {
            v["hasResults"] = false.into();
            v["protocolSection"]["oversightModule"]["isFdaRegulatedDrug"] = false.into();
        });
        assert!(conditions(&f, day("2015-01-05")).is_empty());
        let f = facts("NCT00763412.json", |v| {
            v["hasResults"] = false.into();
            v["protocolSection"]["statusModule"]["primaryCompletionDateStruct"]["type"] =
                "ESTIMATED".into();
        });
        assert!(conditions(&f, day("2015-01-05")).is_empty());
    }

    /// Each way out of "overdue" is told once: results posted, or a certification of delayed
    /// submission moving the deadline two years.
    #[test]
    fn each_way_out_of_overdue_is_told_once() {
        let today = day("2021-06-01");
        let overdue = conditions(&facts("NCT03418623.json", |_| {}), today);
        let (events, told) = transitions(&overdue, &Told::default());
        assert_eq!(
            kinds(&events),
            [(EventKind::ResultsOverdue, "2021-03-13".into())]
        );
        assert_eq!(told.overdue, Some(day("2021-03-13")));
        // Told once: the next day says nothing new.
        let (again, told) = transitions(
            &conditions(&facts("NCT03418623.json", |_| {}), day("2021-06-02")),
            &told,
        );
        assert!(again.is_empty());

        let posted = facts("NCT03418623.json", |v| v["hasResults"] = true.into());
        let (out, after) = transitions(&conditions(&posted, today), &told);
        assert_eq!(
            kinds(&out),
            [(EventKind::ResultsNoLongerOverdue, "2021-03-13".into())]
        );
        assert_eq!(after.overdue, None);
        assert!(
            transitions(&conditions(&posted, today), &after)
                .0
                .is_empty()
        );

        let certified = facts("NCT03418623.json", |v| {
            v["protocolSection"]["statusModule"]["dispFirstSubmitDate"] = "2021-02-01".into();
        });
        let c = conditions(&certified, today);
        assert!(c.is_empty(), "{c:?}");
        let (out, _) = transitions(&c, &told);
        assert_eq!(
            kinds(&out),
            [(EventKind::ResultsNoLongerOverdue, "2021-03-13".into())]
        );
        // The extended deadline is 2023-03-13.
        let c = conditions(&certified, day("2023-03-01"));
        assert_eq!(kinds(&c), [(EventKind::ResultsDue, "2023-03-13".into())]);
    }

    /// NCT06171568: not yet recruiting, completion 2025-02-01, verified 2023-12.
    #[test]
    fn stale_status_and_lapsing_verification() {
        let f = facts("NCT06171568.json", |_| {});
        assert!(conditions(&f, day("2024-12-31")).is_empty());
        let c = conditions(&f, day("2025-02-02"));
        assert_eq!(
            kinds(&c),
            [
                (EventKind::VerificationLapsing, "2024-12-31".into()),
                (EventKind::StaleStatus, "2025-02-01".into())
            ]
        );
        // A completed trial needs no re-verification.
        let done = facts("NCT06171568.json", |v| {
            v["protocolSection"]["statusModule"]["overallStatus"] = "COMPLETED".into();
        });
        assert!(conditions(&done, day("2026-01-01")).is_empty());
        // Re-verified: the lapse has a new due date, told again once it lapses.
        let reverified = facts("NCT06171568.json", |v| {
            v["protocolSection"]["statusModule"]["statusVerifiedDate"] = "2025-01".into();
        });
        let (first, told) = transitions(&conditions(&f, day("2025-02-02")), &Told::default());
        assert_eq!(first.len(), 2);
        let (later, _) = transitions(&conditions(&reverified, day("2026-02-02")), &told);
        assert_eq!(
            kinds(&later),
            [(EventKind::VerificationLapsing, "2026-01-31".into())]
        );
    }
}
