//! The fake's CT.gov search: `query.cond/term/intr/spons/locn` (case-insensitive word match on
//! the fields CT.gov searches for each: every word of the query must be a word of them),
//! `filter.overallStatus`, `filter.advanced` (`AREA[Field]VALUE` and `AREA[Field]RANGE[a,b]`
//! joined by `AND`/`OR` with parentheses; fields Phase, StudyType, OverallStatus,
//! LastUpdatePostDate, StudyFirstPostDate, StudyFirstSubmitDate, PrimaryCompletionDate), and
//! `fields=` projections of the few fields a query watcher asks for. Bad parameters get CT.gov's
//! plain-text 400 bodies.
//!
//! Each study's search index is built on its first search (and dropped when it is replaced),
//! so tests that never search pay nothing for it.

use std::collections::HashSet;

use serde_json::{Value, json};

/// What a search reads of one study.
#[derive(Debug, Clone, Default)]
pub(super) struct SearchIndex {
    cond: HashSet<String>,
    intr: HashSet<String>,
    spons: HashSet<String>,
    locn: HashSet<String>,
    term: HashSet<String>,
    nct_id: String,
    title: Option<String>,
    status: Option<String>,
    phases: Vec<String>,
    study_type: Option<String>,
    sponsor: Option<String>,
    first_submit: Option<String>,
    first_post: Option<String>,
    last_update: Option<String>,
    primary_completion: Option<String>,
}

/// The fields `fields=` may name (CT.gov's piece names), and how they project.
const FIELDS: &[&str] = &[
    "NCTId",
    "BriefTitle",
    "OverallStatus",
    "Phase",
    "LeadSponsorName",
    "StudyFirstSubmitDate",
];

/// CT.gov's `overallStatus` enumeration.
const STATUSES: &[&str] = &[
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

fn words_into(text: &str, out: &mut HashSet<String>) {
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        out.insert(w.to_lowercase());
    }
}

fn strs<'a>(v: &'a Value, path: &[&str]) -> Vec<&'a str> {
    let mut cur = vec![v];
    for p in path {
        let mut next = Vec::new();
        for c in cur {
            match c.get(p) {
                Some(Value::Array(a)) => next.extend(a.iter()),
                Some(x) => next.push(x),
                None => {}
            }
        }
        cur = next;
    }
    cur.into_iter().filter_map(Value::as_str).collect()
}

impl SearchIndex {
    /// The index of one study body (anything unreadable indexes as empty).
    pub(super) fn build(raw: &[u8]) -> SearchIndex {
        let v: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
        let p = &v["protocolSection"];
        let one = |path: &[&str]| strs(p, path).first().map(|s| s.to_string());
        let mut ix = SearchIndex {
            nct_id: one(&["identificationModule", "nctId"]).unwrap_or_default(),
            title: one(&["identificationModule", "briefTitle"]),
            status: one(&["statusModule", "overallStatus"]),
            phases: strs(p, &["designModule", "phases"])
                .into_iter()
                .map(str::to_string)
                .collect(),
            study_type: one(&["designModule", "studyType"]),
            sponsor: one(&["sponsorCollaboratorsModule", "leadSponsor", "name"]),
            first_submit: one(&["statusModule", "studyFirstSubmitDate"]),
            first_post: one(&["statusModule", "studyFirstPostDateStruct", "date"]),
            last_update: one(&["statusModule", "lastUpdatePostDateStruct", "date"]),
            primary_completion: one(&["statusModule", "primaryCompletionDateStruct", "date"]),
            ..SearchIndex::default()
        };
        let titles = [
            strs(p, &["identificationModule", "briefTitle"]),
            strs(p, &["identificationModule", "officialTitle"]),
        ]
        .concat();
        let cond = [
            strs(p, &["conditionsModule", "conditions"]),
            strs(p, &["conditionsModule", "keywords"]),
            titles.clone(),
        ]
        .concat();
        let intr = [
            strs(p, &["armsInterventionsModule", "interventions", "name"]),
            strs(
                p,
                &["armsInterventionsModule", "interventions", "otherNames"],
            ),
        ]
        .concat();
        let spons = [
            strs(p, &["sponsorCollaboratorsModule", "leadSponsor", "name"]),
            strs(p, &["sponsorCollaboratorsModule", "collaborators", "name"]),
        ]
        .concat();
        let mut locn = Vec::new();
        for k in ["facility", "city", "state", "country"] {
            locn.extend(strs(p, &["contactsLocationsModule", "locations", k]));
        }
        for t in &cond {
            words_into(t, &mut ix.cond);
        }
        for t in &intr {
            words_into(t, &mut ix.intr);
        }
        for t in &spons {
            words_into(t, &mut ix.spons);
        }
        for t in &locn {
            words_into(t, &mut ix.locn);
        }
        let summary = strs(p, &["descriptionModule", "briefSummary"]);
        for t in cond
            .iter()
            .chain(&intr)
            .chain(&spons)
            .chain(&locn)
            .chain(&summary)
        {
            words_into(t, &mut ix.term);
        }
        words_into(&ix.nct_id.clone(), &mut ix.term);
        ix
    }

    fn area(&self, name: &str) -> Option<&HashSet<String>> {
        Some(match name {
            "query.cond" => &self.cond,
            "query.intr" => &self.intr,
            "query.spons" => &self.spons,
            "query.locn" => &self.locn,
            "query.term" => &self.term,
            _ => return None,
        })
    }

    /// The value of an `AREA[Field]` (dates as `YYYY-MM-DD`).
    fn field(&self, name: &str) -> Vec<&str> {
        match name {
            "Phase" => self.phases.iter().map(String::as_str).collect(),
            "StudyType" => self.study_type.iter().map(String::as_str).collect(),
            "OverallStatus" => self.status.iter().map(String::as_str).collect(),
            "LastUpdatePostDate" => self.last_update.iter().map(String::as_str).collect(),
            "StudyFirstPostDate" => self.first_post.iter().map(String::as_str).collect(),
            "StudyFirstSubmitDate" => self.first_submit.iter().map(String::as_str).collect(),
            "PrimaryCompletionDate" => self.primary_completion.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// The study reduced to `fields`, as CT.gov nests them.
    pub(super) fn project(&self, fields: &[String]) -> Vec<u8> {
        let has = |f: &str| fields.iter().any(|x| x == f);
        let mut ident = serde_json::Map::new();
        if has("NCTId") {
            ident.insert("nctId".into(), json!(self.nct_id));
        }
        if has("BriefTitle")
            && let Some(t) = &self.title
        {
            ident.insert("briefTitle".into(), json!(t));
        }
        let mut status = serde_json::Map::new();
        if has("OverallStatus")
            && let Some(s) = &self.status
        {
            status.insert("overallStatus".into(), json!(s));
        }
        if has("StudyFirstSubmitDate")
            && let Some(s) = &self.first_submit
        {
            status.insert("studyFirstSubmitDate".into(), json!(s));
        }
        let mut p = serde_json::Map::new();
        if !ident.is_empty() {
            p.insert("identificationModule".into(), Value::Object(ident));
        }
        if !status.is_empty() {
            p.insert("statusModule".into(), Value::Object(status));
        }
        if has("Phase") && !self.phases.is_empty() {
            p.insert("designModule".into(), json!({ "phases": self.phases }));
        }
        if has("LeadSponsorName")
            && let Some(s) = &self.sponsor
        {
            p.insert(
                "sponsorCollaboratorsModule".into(),
                json!({ "leadSponsor": { "name": s } }),
            );
        }
        serde_json::to_vec(&json!({ "protocolSection": p })).unwrap_or_default()
    }
}

/// A parsed search: what every study must satisfy.
#[derive(Debug, Default)]
pub(super) struct Search {
    /// `(area, words)`: every word must be in the area.
    words: Vec<(String, Vec<String>)>,
    statuses: Option<Vec<String>>,
    advanced: Option<Expr>,
    /// `fields=`, when given.
    pub(super) fields: Option<Vec<String>>,
}

#[derive(Debug)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Is(String, String),
    Range(String, String, String),
}

impl Expr {
    fn holds(&self, ix: &SearchIndex) -> bool {
        match self {
            Expr::And(v) => v.iter().all(|e| e.holds(ix)),
            Expr::Or(v) => v.iter().any(|e| e.holds(ix)),
            Expr::Is(f, want) => ix.field(f).iter().any(|v| v.eq_ignore_ascii_case(want)),
            Expr::Range(f, from, to) => ix.field(f).iter().any(|v| {
                (from == "MIN" || *v >= from.as_str()) && (to == "MAX" || *v <= to.as_str())
            }),
        }
    }
}

/// `a AND (b OR c)`: a tiny recursive-descent reader of the Essie subset the CLI sends.
struct Reader<'a> {
    s: &'a str,
}

impl Reader<'_> {
    fn skip_ws(&mut self) {
        self.s = self.s.trim_start();
    }

    fn keyword(&mut self, k: &str) -> bool {
        self.skip_ws();
        if self.s.len() >= k.len()
            && self.s[..k.len()].eq_ignore_ascii_case(k)
            && self.s[k.len()..].starts_with([' ', '('])
        {
            self.s = &self.s[k.len()..];
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut v = vec![self.and()?];
        while self.keyword("OR") {
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::Or(v)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut v = vec![self.atom()?];
        while self.keyword("AND") {
            v.push(self.atom()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::And(v)
        })
    }

    fn atom(&mut self) -> Result<Expr, String> {
        self.skip_ws();
        if let Some(rest) = self.s.strip_prefix('(') {
            self.s = rest;
            let e = self.or()?;
            self.skip_ws();
            self.s = self.s.strip_prefix(')').ok_or("missing `)`")?;
            return Ok(e);
        }
        let rest = self.s.strip_prefix("AREA[").ok_or_else(|| {
            format!(
                "expected AREA[Field]… at `{}`",
                self.s.chars().take(20).collect::<String>()
            )
        })?;
        let (field, rest) = rest.split_once(']').ok_or("missing `]` after AREA[")?;
        let field = field.trim().to_string();
        if let Some(r) = rest.strip_prefix("RANGE[") {
            let (inner, rest) = r.split_once(']').ok_or("missing `]` after RANGE[")?;
            let (from, to) = inner.split_once(',').ok_or("RANGE needs two bounds")?;
            self.s = rest;
            return Ok(Expr::Range(field, from.trim().into(), to.trim().into()));
        }
        let end = rest.find([' ', ')']).unwrap_or(rest.len());
        let value = rest[..end].trim().to_string();
        if value.is_empty() {
            return Err(format!("AREA[{field}] has no value"));
        }
        self.s = &rest[end..];
        Ok(Expr::Is(field, value))
    }
}

fn parse_advanced(expr: &str) -> Result<Expr, String> {
    let mut r = Reader { s: expr };
    let e = r.or()?;
    r.skip_ws();
    if !r.s.is_empty() {
        return Err(format!("unexpected `{}`", r.s));
    }
    Ok(e)
}

/// Whether these parameters make a search (any `query.*` word search, a status filter, an
/// advanced filter other than the plain LastUpdatePostDate range, or `fields`).
pub(super) fn is_search(params: &[(String, String)]) -> bool {
    params.iter().any(|(k, v)| match k.as_str() {
        "query.cond"
        | "query.intr"
        | "query.spons"
        | "query.locn"
        | "filter.overallStatus"
        | "fields" => true,
        "query.term" | "filter.advanced" => super::parse_last_update_range(v).is_none(),
        _ => false,
    })
}

impl Search {
    /// Parse the search parameters, or CT.gov's 400 text for the first bad one.
    pub(super) fn parse(params: &[(String, String)]) -> Result<Search, String> {
        let mut s = Search::default();
        let mut advanced = Vec::new();
        for (k, v) in params {
            match k.as_str() {
                "query.term" if super::parse_last_update_range(v).is_some() => {
                    advanced.push(parse_advanced(v).map_err(|e| {
                        format!("Error parsing query in parameter `query.term`: {e}")
                    })?)
                }
                "query.cond" | "query.intr" | "query.spons" | "query.locn" | "query.term" => {
                    let mut set = HashSet::new();
                    words_into(v, &mut set);
                    set.remove("and");
                    if set.is_empty() {
                        return Err(format!(
                            "Error parsing query in parameter `{k}`: empty search expression"
                        ));
                    }
                    s.words.push((k.clone(), set.into_iter().collect()));
                }
                "filter.overallStatus" => {
                    let mut list = Vec::new();
                    for item in v.split([',', '|']).map(str::trim).filter(|x| !x.is_empty()) {
                        if !STATUSES.contains(&item) {
                            return Err(format!(
                                "Invalid value in parameter `filter.overallStatus`: `{item}`"
                            ));
                        }
                        list.push(item.to_string());
                    }
                    s.statuses = Some(list);
                }
                "filter.advanced" => advanced.push(parse_advanced(v).map_err(|e| {
                    format!("Error parsing query in parameter `filter.advanced`: {e}")
                })?),
                "fields" => {
                    let mut list = Vec::new();
                    for f in v.split([',', '|']).map(str::trim).filter(|x| !x.is_empty()) {
                        if !FIELDS.contains(&f) {
                            return Err(format!(
                                "Parameter `fields` contains invalid field name: '{f}'"
                            ));
                        }
                        list.push(f.to_string());
                    }
                    s.fields = Some(list);
                }
                _ => {}
            }
        }
        s.advanced = match advanced.len() {
            0 => None,
            1 => advanced.pop(),
            _ => Some(Expr::And(advanced)),
        };
        Ok(s)
    }

    /// Whether one study matches.
    pub(super) fn matches(&self, ix: &SearchIndex) -> bool {
        self.words.iter().all(|(area, words)| {
            ix.area(area)
                .is_some_and(|set| words.iter().all(|w| set.contains(w)))
        }) && self
            .statuses
            .as_ref()
            .is_none_or(|l| ix.status.as_ref().is_some_and(|s| l.contains(s)))
            && self.advanced.as_ref().is_none_or(|e| e.holds(ix))
    }
}
