//! CT.gov study (wire types) → normalized [`Record`] (`docs/record.md` §1–§4). Pure: no I/O,
//! no clock.
//!
//! Owns every rule of the canonical form:
//! - sections and keys in the order of [`schema::SECTIONS`] (guaranteed by construction: values
//!   are collected per path first and laid out in table order at the end);
//! - text trimmed, `\r\n` and `\r` turned into `\n`;
//! - absent or empty values left out: no `null`, `""`, `[]` or `{}` anywhere, also not inside
//!   the objects of object lists (empty strings are dropped, objects that become empty too);
//! - set-like lists (conditions, keywords, collaborators, stdAges, whoMasked, secondaryIds,
//!   aliases) sorted and de-duplicated, every other list in CT.gov's order;
//! - one `locations.KEY` path per site, KEY = `facility|city|state|country` lower-cased, sites
//!   with the same key merged into a list of their values in CT.gov's order.
//!
//! What never reaches the record: `derivedSection`, `resultsSection`, each site's `geoPoint` and
//! `contacts` (the wire types do not even declare them). Markup is kept as CT.gov sent it
//! (markdown from `/api/v2`, HTML from the internal history endpoint); converting between the
//! two is not this module's business.

pub mod history;
pub mod markup;
mod parts;

pub use parts::StudyParts;

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::ctgov::wire;
use crate::model::{BadNctId, NctId, Record};
use crate::schema;

/// Why a study could not be normalized. Each variant names what is wrong with the input.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    /// The text is not JSON, or not shaped like a CT.gov Study (e.g. a string where a module
    /// object belongs). The source carries serde_json's message with line and column.
    #[error("study JSON is not a valid CT.gov Study ({kind})")]
    Json {
        /// `syntax error`, `unexpected end of input` or `wrong shape`.
        kind: &'static str,
        /// serde_json's error, with the line and column where the study stopped making sense.
        #[source]
        source: serde_json::Error,
    },
    /// Every record is keyed by its NCT ID; without one there is nothing to store.
    #[error(
        "study has no protocolSection.identificationModule.nctId (expected a Study object; list \
         pages wrap studies in \"studies\", history responses in \"study\")"
    )]
    MissingNctId,
    /// The study's `nctId` is not an NCT ID.
    #[error("study's protocolSection.identificationModule.nctId is malformed")]
    BadNctId(#[source] BadNctId),
    /// The protocol section is hollow: no `statusModule`, and most other modules `null` at
    /// once. That is a broken answer, not a trial whose every field was removed, so it is
    /// refused instead of stored as removals.
    #[error(
        "study {0} is hollow: its protocolSection has an identificationModule but no \
         statusModule and most other modules null at once; refused as malformed (nothing \
         stored)"
    )]
    Hollow(NctId),
}

impl NormalizeError {
    /// Line and column (1-based) of a JSON error, for callers that point at a file position.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            NormalizeError::Json { source, .. } => Some((source.line(), source.column())),
            _ => None,
        }
    }
}

/// Parses one CT.gov API v2 Study object and normalizes it.
pub fn normalize_json(raw: &str) -> Result<Record, NormalizeError> {
    let study: wire::Study = serde_json::from_str(raw).map_err(|source| {
        let kind = match source.classify() {
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Eof => "unexpected end of input",
            serde_json::error::Category::Data | serde_json::error::Category::Io => "wrong shape",
        };
        NormalizeError::Json { kind, source }
    })?;
    let record = normalize(&study)?;
    // `is_hollow` is false whenever a status module is there: skip its scan of the study then.
    let has_status = study
        .protocol_section
        .as_ref()
        .is_some_and(|p| p.status_module.is_some());
    if !has_status && is_hollow(raw) {
        return Err(hollow_error(&record));
    }
    Ok(record)
}

/// The error for a hollow study, named by its record's ID.
fn hollow_error(record: &Record) -> NormalizeError {
    match record.nct_id().and_then(|n| n.parse().ok()) {
        Some(nct) => NormalizeError::Hollow(nct),
        None => NormalizeError::MissingNctId,
    }
}

/// Bumped whenever a change to this module could normalize the same CT.gov JSON differently, so
/// that stored [`source_fingerprint`]s from an older release stop matching.
pub const NORMALIZER_VERSION: u32 = 1;

/// A hash of exactly the parts of a study the normalizer reads (`protocolSection`,
/// `annotationSection`, `documentSection`, `hasResults`) and of [`NORMALIZER_VERSION`].
/// `derivedSection` and `resultsSection` are skipped unparsed. Equal fingerprints mean equal
/// normalized records, so a sync can skip normalizing a study CT.gov sent unchanged; different
/// ones mean nothing (e.g. a re-geocoded site), and the caller normalizes and compares.
pub fn source_fingerprint(raw: &str) -> Result<String, NormalizeError> {
    use serde::Deserialize;
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    struct Parts<'a> {
        #[serde(rename = "protocolSection", borrow)]
        protocol: Option<&'a RawValue>,
        #[serde(rename = "annotationSection", borrow)]
        annotation: Option<&'a RawValue>,
        #[serde(rename = "documentSection", borrow)]
        document: Option<&'a RawValue>,
        #[serde(rename = "hasResults")]
        has_results: Option<bool>,
    }
    let parts: Parts<'_> = serde_json::from_str(raw).map_err(|source| NormalizeError::Json {
        kind: "not a study object",
        source,
    })?;
    Ok(fingerprint_of(
        parts.protocol,
        parts.annotation,
        parts.document,
        parts.has_results,
    ))
}

/// The fingerprint of a study's parts (see [`source_fingerprint`]); also [`StudyParts`]'s.
fn fingerprint_of(
    protocol: Option<&serde_json::value::RawValue>,
    annotation: Option<&serde_json::value::RawValue>,
    document: Option<&serde_json::value::RawValue>,
    has_results: Option<bool>,
) -> String {
    use sha2::{Digest, Sha256};

    let mut h = Sha256::new();
    h.update(NORMALIZER_VERSION.to_be_bytes());
    for part in [protocol, annotation, document] {
        let text = part.map_or("", |r| r.get());
        h.update((text.len() as u64).to_be_bytes());
        h.update(text.as_bytes());
    }
    h.update([match has_results {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    }]);
    hex::encode(h.finalize())
}

/// Modules explicitly `null` from which a study without a status module counts as hollow.
const HOLLOW_MIN_NULLS: usize = 3;

/// Whether a study's protocol section is hollow: `statusModule` missing or `null`, at least
/// [`HOLLOW_MIN_NULLS`] modules explicitly `null`, and more `null` modules than filled ones
/// besides `identificationModule`. CT.gov never sends a module as `null`, so that is whole
/// modules vanishing at once (a broken answer), not a trial whose fields were all removed.
/// (A study that merely leaves modules out, as small test studies do, is not hollow.)
fn is_hollow(raw: &str) -> bool {
    use serde::Deserialize;
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    struct Protocol<'a> {
        #[serde(rename = "protocolSection", borrow, default)]
        protocol: Option<std::collections::BTreeMap<String, &'a RawValue>>,
    }
    let Ok(Protocol {
        protocol: Some(modules),
    }) = serde_json::from_str::<Protocol<'_>>(raw)
    else {
        return false;
    };
    hollow_modules(&modules)
}

/// [`is_hollow`] of a study whose `protocolSection` text is `protocol`.
fn hollow_protocol(protocol: &str) -> bool {
    use serde_json::value::RawValue;

    match serde_json::from_str::<Option<BTreeMap<String, &RawValue>>>(protocol) {
        Ok(Some(modules)) => hollow_modules(&modules),
        _ => false,
    }
}

/// [`is_hollow`]'s rule on a protocol section's modules.
fn hollow_modules(modules: &BTreeMap<String, &serde_json::value::RawValue>) -> bool {
    use serde_json::value::RawValue;

    let is_null = |v: &RawValue| v.get().trim() == "null";
    if modules.get("statusModule").is_some_and(|m| !is_null(m)) {
        return false;
    }
    let others = modules
        .iter()
        .filter(|(k, _)| k.as_str() != "identificationModule");
    let nulls = others.clone().filter(|(_, v)| is_null(v)).count();
    let filled = others.count() - nulls;
    nulls >= HOLLOW_MIN_NULLS && nulls > filled
}

/// Turns a parsed study into its normalized record (docs/record.md §1–§4).
pub fn normalize(study: &wire::Study) -> Result<Record, NormalizeError> {
    let raw_id = study
        .nct_id()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(NormalizeError::MissingNctId)?;
    let nct: NctId = raw_id.parse().map_err(NormalizeError::BadNctId)?;

    let mut b = Builder::default();
    b.put("identification.nctId", Some(Value::String(nct.to_string())));

    if let Some(p) = &study.protocol_section {
        identification(&mut b, p.identification_module.as_ref());
        status(&mut b, p.status_module.as_ref());
        sponsor(&mut b, p.sponsor_collaborators_module.as_ref());
        if let Some(m) = &p.oversight_module {
            b.put("oversight.hasDmc", m.oversight_has_dmc.map(Value::Bool));
            b.put(
                "oversight.fdaRegulatedDrug",
                m.is_fda_regulated_drug.map(Value::Bool),
            );
            b.put(
                "oversight.fdaRegulatedDevice",
                m.is_fda_regulated_device.map(Value::Bool),
            );
        }
        if let Some(m) = &p.description_module {
            b.put("description.briefSummary", text(&m.brief_summary));
            b.put(
                "description.detailedDescription",
                text(&m.detailed_description),
            );
        }
        if let Some(m) = &p.conditions_module {
            b.put("conditions.conditions", text_set(&m.conditions));
            b.put("conditions.keywords", text_set(&m.keywords));
        }
        design(&mut b, p.design_module.as_ref());
        if let Some(m) = &p.arms_interventions_module {
            b.put("armsInterventions.arms", object_list(&m.arm_groups, arm));
            b.put(
                "armsInterventions.interventions",
                object_list(&m.interventions, intervention),
            );
        }
        if let Some(m) = &p.outcomes_module {
            b.put(
                "outcomes.primary",
                object_list(&m.primary_outcomes, outcome),
            );
            b.put(
                "outcomes.secondary",
                object_list(&m.secondary_outcomes, outcome),
            );
            b.put("outcomes.other", object_list(&m.other_outcomes, outcome));
        }
        eligibility(&mut b, p.eligibility_module.as_ref());
        if let Some(m) = &p.contacts_locations_module {
            b.put(
                "contacts.central",
                object_list(&m.central_contacts, contact),
            );
            b.put(
                "contacts.officials",
                object_list(&m.overall_officials, official),
            );
            for site in &m.locations {
                b.site(site);
            }
        }
        if let Some(m) = &p.references_module {
            b.put(
                "references.references",
                object_list(&m.references, reference),
            );
        }
        if let Some(m) = &p.ipd_sharing_statement_module {
            b.put("ipd.sharing", text(&m.ipd_sharing));
        }
    }

    let docs = study
        .document_section
        .as_ref()
        .and_then(|d| d.large_document_module.as_ref())
        .map(|m| m.large_docs.as_slice())
        .unwrap_or_default();
    b.put("documents.files", object_list(docs, large_doc));

    b.put("results.hasResults", study.has_results.map(Value::Bool));
    let violations = study
        .annotation_section
        .as_ref()
        .and_then(|a| a.annotation_module.as_ref())
        .and_then(|m| m.violation_annotation.as_ref())
        .map(|v| v.violation_events.as_slice())
        .unwrap_or_default();
    b.put("results.violations", object_list(violations, violation));

    Ok(b.finish())
}

fn identification(b: &mut Builder, m: Option<&wire::IdentificationModule>) {
    let Some(m) = m else { return };
    b.put("identification.briefTitle", text(&m.brief_title));
    b.put("identification.officialTitle", text(&m.official_title));
    b.put("identification.acronym", text(&m.acronym));
    b.put(
        "identification.orgStudyId",
        m.org_study_id_info.as_ref().and_then(|i| text(&i.id)),
    );
    let secondary: Vec<&str> = m
        .secondary_id_infos
        .iter()
        .filter_map(|i| i.id.as_deref())
        .collect();
    b.put("identification.secondaryIds", text_set(&secondary));
    b.put("identification.aliases", text_set(&m.nct_id_aliases));
    b.put(
        "identification.organization",
        m.organization.as_ref().and_then(|o| text(&o.full_name)),
    );
}

fn status(b: &mut Builder, m: Option<&wire::StatusModule>) {
    let Some(m) = m else { return };
    let date = |d: &Option<wire::DateStruct>| d.as_ref().and_then(|d| text(&d.date));
    let kind = |d: &Option<wire::DateStruct>| d.as_ref().and_then(|d| text(&d.kind));
    b.put("status.overallStatus", text(&m.overall_status));
    b.put("status.lastKnownStatus", text(&m.last_known_status));
    b.put("status.whyStopped", text(&m.why_stopped));
    b.put("status.statusVerifiedDate", text(&m.status_verified_date));
    b.put("status.startDate", date(&m.start_date_struct));
    b.put("status.startDateType", kind(&m.start_date_struct));
    b.put(
        "status.primaryCompletionDate",
        date(&m.primary_completion_date_struct),
    );
    b.put(
        "status.primaryCompletionDateType",
        kind(&m.primary_completion_date_struct),
    );
    b.put("status.completionDate", date(&m.completion_date_struct));
    b.put("status.completionDateType", kind(&m.completion_date_struct));
    b.put(
        "status.studyFirstPostDate",
        date(&m.study_first_post_date_struct),
    );
    b.put(
        "status.resultsFirstPostDate",
        date(&m.results_first_post_date_struct),
    );
    b.put(
        "status.lastUpdatePostDate",
        date(&m.last_update_post_date_struct),
    );
}

/// `responsibleParty` keys in the order CT.gov documents them; keys CT.gov adds later follow
/// in name order, so the record does not depend on the order keys arrive in.
const RESPONSIBLE_PARTY_KEYS: &[&str] = &[
    "type",
    "investigatorFullName",
    "investigatorTitle",
    "investigatorAffiliation",
    "oldNameTitle",
    "oldOrganization",
];

fn sponsor(b: &mut Builder, m: Option<&wire::SponsorCollaboratorsModule>) {
    let Some(m) = m else { return };
    if let Some(lead) = &m.lead_sponsor {
        b.put("sponsor.lead", text(&lead.name));
        b.put("sponsor.leadClass", text(&lead.class));
    }
    let mut collaborators: Vec<(Option<String>, Option<String>)> = m
        .collaborators
        .iter()
        .map(|c| (text_str(c.name.as_deref()), text_str(c.class.as_deref())))
        .filter(|(n, c)| n.is_some() || c.is_some())
        .collect();
    collaborators.sort();
    collaborators.dedup();
    let collaborators: Vec<Value> = collaborators
        .into_iter()
        .map(|(name, class)| {
            let mut o = Map::new();
            put(&mut o, "name", name.map(Value::String));
            put(&mut o, "class", class.map(Value::String));
            Value::Object(o)
        })
        .collect();
    b.put("sponsor.collaborators", non_empty_list(collaborators));

    if let Some(rp) = &m.responsible_party {
        let mut keys: Vec<&String> = rp.keys().collect();
        keys.sort_by_key(|k| {
            let known = RESPONSIBLE_PARTY_KEYS.iter().position(|r| r == k);
            (known.unwrap_or(usize::MAX), k.as_str())
        });
        let mut o = Map::new();
        for k in keys {
            put(&mut o, k, rp.get(k).and_then(clean_value));
        }
        b.put("sponsor.responsibleParty", non_empty_object(o));
    }
}

fn design(b: &mut Builder, m: Option<&wire::DesignModule>) {
    let Some(m) = m else { return };
    b.put("design.studyType", text(&m.study_type));
    b.put("design.phases", text_list(&m.phases));
    if let Some(d) = &m.design_info {
        b.put("design.allocation", text(&d.allocation));
        b.put("design.interventionModel", text(&d.intervention_model));
        b.put("design.primaryPurpose", text(&d.primary_purpose));
        b.put("design.observationalModel", text(&d.observational_model));
        b.put("design.timePerspective", text(&d.time_perspective));
        if let Some(mi) = &d.masking_info {
            b.put("design.masking", text(&mi.masking));
            b.put("design.whoMasked", text_set(&mi.who_masked));
        }
    }
    if let Some(e) = &m.enrollment_info {
        // A count that is not an integer is left out rather than failing the study: the
        // schema says integer, and one odd value must not stop the other fields being watched.
        let count = e.count.as_ref().and_then(wire::Count::as_i64);
        b.put("design.enrollmentCount", count.map(Value::from));
        b.put("design.enrollmentType", text(&e.kind));
    }
}

fn eligibility(b: &mut Builder, m: Option<&wire::EligibilityModule>) {
    let Some(m) = m else { return };
    b.put("eligibility.criteria", text(&m.eligibility_criteria));
    b.put("eligibility.minAge", text(&m.minimum_age));
    b.put("eligibility.maxAge", text(&m.maximum_age));
    b.put("eligibility.sex", text(&m.sex));
    b.put(
        "eligibility.healthyVolunteers",
        m.healthy_volunteers.map(Value::Bool),
    );
    b.put("eligibility.stdAges", text_set(&m.std_ages));
    b.put("eligibility.studyPopulation", text(&m.study_population));
}

fn arm(a: &wire::ArmGroup) -> Map<String, Value> {
    let mut o = Map::new();
    put(&mut o, "label", text(&a.label));
    put(&mut o, "type", text(&a.kind));
    put(&mut o, "description", text(&a.description));
    put(
        &mut o,
        "interventionNames",
        text_list(&a.intervention_names),
    );
    o
}

fn intervention(i: &wire::Intervention) -> Map<String, Value> {
    let mut o = Map::new();
    put(&mut o, "type", text(&i.kind));
    put(&mut o, "name", text(&i.name));
    put(&mut o, "description", text(&i.description));
    put(&mut o, "armGroupLabels", text_list(&i.arm_group_labels));
    put(&mut o, "otherNames", text_list(&i.other_names));
    o
}

fn outcome(x: &wire::Outcome) -> Map<String, Value> {
    let mut o = Map::new();
    put(&mut o, "measure", text(&x.measure));
    put(&mut o, "timeFrame", text(&x.time_frame));
    put(&mut o, "description", text(&x.description));
    o
}

fn contact(c: &wire::Contact) -> Map<String, Value> {
    let mut o = Map::new();
    put(&mut o, "name", text(&c.name));
    put(&mut o, "role", text(&c.role));
    put(&mut o, "phone", text(&c.phone));
    put(&mut o, "email", text(&c.email));
    o
}

fn official(c: &wire::Official) -> Map<String, Value> {
    let mut o = Map::new();
    put(&mut o, "name", text(&c.name));
    put(&mut o, "affiliation", text(&c.affiliation));
    put(&mut o, "role", text(&c.role));
    o
}

fn reference(r: &wire::Reference) -> Map<String, Value> {
    let mut o = Map::new();
    put(&mut o, "pmid", text(&r.pmid));
    put(&mut o, "type", text(&r.kind));
    put(&mut o, "citation", text(&r.citation));
    o
}

fn large_doc(d: &wire::LargeDoc) -> Map<String, Value> {
    let mut o = Map::new();
    put(&mut o, "label", text(&d.label));
    put(&mut o, "date", text(&d.date));
    put(&mut o, "filename", text(&d.filename));
    o
}

fn violation(v: &wire::ViolationEvent) -> Map<String, Value> {
    let mut o = Map::new();
    put(&mut o, "type", text(&v.kind));
    put(&mut o, "description", text(&v.description));
    put(&mut o, "issuedDate", text(&v.issued_date));
    o
}

/// Collects values per path, then lays them out in the schema's order, so the canonical order
/// cannot depend on the order the code above happens to fill them in.
#[derive(Default)]
struct Builder {
    /// Fixed paths (`section.key`, both from the schema table) → value.
    fields: HashMap<&'static str, Value>,
    /// Location key → the values of the sites with that key, in CT.gov order. A BTreeMap
    /// sorts keys the way `schema::path_order` does (byte order).
    sites: BTreeMap<String, Vec<Value>>,
}

impl Builder {
    fn put(&mut self, path: &'static str, value: Option<Value>) {
        debug_assert!(schema::is_known_path(path), "{path} is not in the schema");
        if let Some(v) = value {
            self.fields.insert(path, v);
        }
    }

    fn site(&mut self, l: &wire::Location) {
        let facility = text_str(l.facility.as_deref());
        let city = text_str(l.city.as_deref());
        let state = text_str(l.state.as_deref());
        let country = text_str(l.country.as_deref());
        let key = [&facility, &city, &state, &country]
            .map(|p| p.as_deref().unwrap_or("").to_lowercase())
            .join("|");
        let mut o = Map::new();
        put(&mut o, "facility", facility.map(Value::String));
        put(&mut o, "city", city.map(Value::String));
        put(&mut o, "state", state.map(Value::String));
        put(&mut o, "zip", text(&l.zip));
        put(&mut o, "country", country.map(Value::String));
        put(&mut o, "status", text(&l.status));
        if !o.is_empty() {
            self.sites.entry(key).or_default().push(Value::Object(o));
        }
    }

    fn finish(mut self) -> Record {
        let mut record = Map::new();
        for (section, keys) in schema::SECTIONS {
            let mut m = Map::new();
            if *section == schema::LOCATIONS {
                for (key, mut values) in std::mem::take(&mut self.sites) {
                    let v = if values.len() == 1 {
                        values.swap_remove(0)
                    } else {
                        Value::Array(values)
                    };
                    m.insert(key, v);
                }
            } else {
                for key in *keys {
                    let path = format!("{section}.{key}");
                    if let Some(v) = self.fields.remove(path.as_str()) {
                        m.insert((*key).to_string(), v);
                    }
                }
            }
            if !m.is_empty() {
                record.insert((*section).to_string(), Value::Object(m));
            }
        }
        debug_assert!(
            self.fields.is_empty(),
            "paths outside the schema: {:?}",
            self.fields.keys()
        );
        Record(record)
    }
}

/// Canonical text: line endings `\n`, trimmed; `None` when nothing is left.
fn text_str(s: Option<&str>) -> Option<String> {
    let s = s?;
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    if t.contains('\r') {
        let unified = t.replace("\r\n", "\n").replace('\r', "\n");
        let t = unified.trim();
        (!t.is_empty()).then(|| t.to_string())
    } else {
        Some(t.to_string())
    }
}

fn text(s: &Option<String>) -> Option<Value> {
    text_str(s.as_deref()).map(Value::String)
}

/// A list of text in CT.gov's order, empty items dropped.
fn text_list<S: AsRef<str>>(items: &[S]) -> Option<Value> {
    let v: Vec<Value> = items
        .iter()
        .filter_map(|s| text_str(Some(s.as_ref())))
        .map(Value::String)
        .collect();
    non_empty_list(v)
}

/// A set of text: sorted and de-duplicated, so CT.gov's order never shows as a change.
fn text_set<S: AsRef<str>>(items: &[S]) -> Option<Value> {
    let mut v: Vec<String> = items
        .iter()
        .filter_map(|s| text_str(Some(s.as_ref())))
        .collect();
    v.sort();
    v.dedup();
    non_empty_list(v.into_iter().map(Value::String).collect())
}

/// A list of objects in CT.gov's order; items that are empty after cleaning are dropped.
fn object_list<T>(items: &[T], f: impl Fn(&T) -> Map<String, Value>) -> Option<Value> {
    let v: Vec<Value> = items
        .iter()
        .map(f)
        .filter(|o| !o.is_empty())
        .map(Value::Object)
        .collect();
    non_empty_list(v)
}

fn non_empty_list(v: Vec<Value>) -> Option<Value> {
    (!v.is_empty()).then_some(Value::Array(v))
}

fn non_empty_object(o: Map<String, Value>) -> Option<Value> {
    (!o.is_empty()).then_some(Value::Object(o))
}

fn put(o: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        o.insert(key.to_string(), v);
    }
}

/// Cleans a free-form JSON value (CT.gov's own object): text canonicalized, empties dropped
/// recursively. `None` when nothing is left.
fn clean_value(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::String(s) => text_str(Some(s)).map(Value::String),
        Value::Bool(_) | Value::Number(_) => Some(v.clone()),
        Value::Array(items) => non_empty_list(items.iter().filter_map(clean_value).collect()),
        Value::Object(m) => {
            let mut o = Map::new();
            for (k, x) in m {
                put(&mut o, k, clean_value(x));
            }
            non_empty_object(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(v: Value) -> Record {
        normalize_json(&v.to_string()).unwrap()
    }

    fn study(protocol: Value) -> Value {
        json!({ "protocolSection": protocol })
    }

    fn id() -> Value {
        json!({ "nctId": "NCT02985775" })
    }

    #[test]
    fn nct_id_is_required_and_validated() {
        let e = normalize_json("{}").unwrap_err();
        assert!(matches!(e, NormalizeError::MissingNctId), "{e}");
        assert!(e.to_string().contains("nctId"));
        let e = normalize_json(r#"{"studies":[]}"#).unwrap_err();
        assert!(e.to_string().contains("\"studies\""), "{e}");
        let e = normalize_json(&study(json!({"identificationModule":{"nctId":"  "}})).to_string())
            .unwrap_err();
        assert!(matches!(e, NormalizeError::MissingNctId));
        let e =
            normalize_json(&study(json!({"identificationModule":{"nctId":"NCTX"}})).to_string())
                .unwrap_err();
        assert!(matches!(e, NormalizeError::BadNctId(_)), "{e}");
        // The ID is canonicalized like every other NCT ID.
        let r = norm(study(
            json!({"identificationModule":{"nctId":"nct02985775"}}),
        ));
        assert_eq!(r.nct_id(), Some("NCT02985775"));
    }

    #[test]
    fn a_hollow_study_is_refused_but_a_small_one_is_not() {
        let hollow = json!({"protocolSection": {
            "identificationModule": {"nctId": "NCT02985775"},
            "statusModule": null, "designModule": null, "eligibilityModule": null,
            "conditionsModule": null,
        }});
        let e = normalize_json(&hollow.to_string()).unwrap_err();
        assert!(matches!(e, NormalizeError::Hollow(_)), "{e}");
        assert!(e.to_string().contains("NCT02985775"), "{e}");
        norm(study(
            json!({"identificationModule": {"nctId": "NCT02985775"}}),
        ));
        norm(study(json!({
            "identificationModule": {"nctId": "NCT02985775"},
            "statusModule": {"overallStatus": "RECRUITING"}, "designModule": null,
            "eligibilityModule": null, "conditionsModule": null,
        })));
    }

    #[test]
    fn json_errors_name_their_position() {
        let e = normalize_json("{\n  \"protocolSection\": {,}\n}").unwrap_err();
        assert_eq!(e.position(), Some((2, 23)));
        assert!(e.to_string().contains("syntax error"), "{e}");
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert!(chain.contains("line 2 column 23"), "{chain}");

        let e = normalize_json(r#"{"protocolSection":{"identificationModule":"x"}}"#).unwrap_err();
        assert!(e.to_string().contains("wrong shape"), "{e}");
        let e = normalize_json(r#"{"protocolSection":"#).unwrap_err();
        assert!(e.to_string().contains("end of input"), "{e}");
    }

    #[test]
    fn text_is_trimmed_with_unix_line_endings_and_empties_are_left_out() {
        let r = norm(study(json!({
            "identificationModule": {"nctId": "NCT02985775", "briefTitle": "  A\r\nB\rC \n",
                "acronym": "   ", "officialTitle": ""},
            "descriptionModule": {"briefSummary": "\r\n\r\n"},
            "conditionsModule": {"conditions": ["", "  "], "keywords": []},
        })));
        assert_eq!(r.title(), Some("A\nB\nC"));
        assert_eq!(r.get("identification.acronym"), None);
        assert_eq!(r.get("identification.officialTitle"), None);
        assert!(r.0.get("description").is_none());
        assert!(r.0.get("conditions").is_none());
    }

    #[test]
    fn sets_are_sorted_and_other_lists_keep_ctgov_order() {
        let r = norm(study(json!({
            "identificationModule": {"nctId": "NCT02985775",
                "secondaryIdInfos": [{"id": "b"}, {"id": "a", "type": "OTHER"}, {"type": "X"}],
                "nctIdAliases": ["NCT00000002", "NCT00000001"]},
            "conditionsModule": {"conditions": ["b", "a", "b"], "keywords": ["z", "y"]},
            "designModule": {"phases": ["PHASE2", "PHASE1"],
                "designInfo": {"maskingInfo": {"whoMasked": ["PARTICIPANT", "CARE_PROVIDER"]}}},
            "sponsorCollaboratorsModule": {"collaborators": [
                {"name": "Zeta", "class": "OTHER"}, {"name": "Alpha", "class": "NIH"}]},
            "eligibilityModule": {"stdAges": ["OLDER_ADULT", "ADULT", "CHILD"]},
        })));
        assert_eq!(
            r.get("identification.secondaryIds"),
            Some(&json!(["a", "b"]))
        );
        assert_eq!(
            r.get("identification.aliases"),
            Some(&json!(["NCT00000001", "NCT00000002"]))
        );
        assert_eq!(r.get("conditions.conditions"), Some(&json!(["a", "b"])));
        assert_eq!(r.get("conditions.keywords"), Some(&json!(["y", "z"])));
        assert_eq!(r.get("design.phases"), Some(&json!(["PHASE2", "PHASE1"])));
        assert_eq!(
            r.get("design.whoMasked"),
            Some(&json!(["CARE_PROVIDER", "PARTICIPANT"]))
        );
        assert_eq!(
            r.get("sponsor.collaborators"),
            Some(&json!([{"name": "Alpha", "class": "NIH"}, {"name": "Zeta", "class": "OTHER"}]))
        );
        assert_eq!(
            r.get("eligibility.stdAges"),
            Some(&json!(["ADULT", "CHILD", "OLDER_ADULT"]))
        );
    }

    #[test]
    fn object_list_items_use_schema_keys_in_schema_order() {
        let r = norm(study(json!({
            "identificationModule": id(),
            "armsInterventionsModule": {
                "armGroups": [
                    {"interventionNames": ["Drug: X"], "description": "d", "type": "EXPERIMENTAL", "label": "A"},
                    {"label": "", "description": " "},
                ],
                "interventions": [{"otherNames": ["x1"], "armGroupLabels": ["A"], "name": "X", "type": "DRUG",
                    "description": ""}],
            },
            "outcomesModule": {"primaryOutcomes": [{"description": "why", "timeFrame": "6 months", "measure": "M"}]},
            "contactsLocationsModule": {
                "centralContacts": [{"email": "e@x", "phoneExt": "12", "phone": "1", "role": "CONTACT", "name": "N"}],
                "overallOfficials": [{"role": "STUDY_CHAIR", "affiliation": "Aff", "name": "N"}],
            },
            "referencesModule": {"references": [{"citation": "C", "type": "BACKGROUND", "pmid": "1"}]},
        })));
        let keys = |path: &str, i: usize| -> Vec<String> {
            r.get(path).unwrap()[i]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(
            keys("armsInterventions.arms", 0),
            ["label", "type", "description", "interventionNames"]
        );
        assert_eq!(
            r.get("armsInterventions.arms")
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            keys("armsInterventions.interventions", 0),
            ["type", "name", "armGroupLabels", "otherNames"]
        );
        assert_eq!(
            keys("outcomes.primary", 0),
            ["measure", "timeFrame", "description"]
        );
        assert_eq!(
            keys("contacts.central", 0),
            ["name", "role", "phone", "email"]
        );
        assert_eq!(
            keys("contacts.officials", 0),
            ["name", "affiliation", "role"]
        );
        assert_eq!(
            keys("references.references", 0),
            ["pmid", "type", "citation"]
        );
    }

    #[test]
    fn sections_and_keys_follow_the_schema_table() {
        // Modules arrive in an unusual order; the record is laid out in table order anyway.
        let r = norm(json!({
            "hasResults": false,
            "protocolSection": {
                "eligibilityModule": {"sex": "ALL", "criteria": "x", "minimumAge": "1 Year"},
                "statusModule": {"lastUpdatePostDateStruct": {"date": "2020-03-10"},
                    "overallStatus": "COMPLETED", "startDateStruct": {"date": "2017-01"}},
                "identificationModule": {"briefTitle": "T", "nctId": "NCT02985775"},
            }
        }));
        let paths: Vec<String> = r.fields().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "identification.nctId",
                "identification.briefTitle",
                "status.overallStatus",
                "status.startDate",
                "status.lastUpdatePostDate",
                "eligibility.minAge",
                "eligibility.sex",
                "results.hasResults",
            ]
        );
        let bytes = String::from_utf8(r.canonical_bytes()).unwrap();
        assert!(bytes.starts_with(
            r#"{"identification":{"nctId":"NCT02985775","briefTitle":"T"},"status":"#
        ));
    }

    #[test]
    fn date_type_is_recorded_only_when_ctgov_sends_it() {
        let r = norm(study(json!({
            "identificationModule": id(),
            "statusModule": {"startDateStruct": {"date": "2009-09"},
                "completionDateStruct": {"date": "2010-01", "type": "ACTUAL"}},
        })));
        assert_eq!(r.text("status.startDate"), Some("2009-09"));
        assert_eq!(r.get("status.startDateType"), None);
        assert_eq!(r.text("status.completionDateType"), Some("ACTUAL"));
    }

    #[test]
    fn enrollment_count_is_an_integer_even_when_sent_as_text() {
        let count = |c: Value| {
            norm(study(json!({"identificationModule": id(),
                "designModule": {"enrollmentInfo": {"count": c, "type": "ACTUAL"}}})))
            .get("design.enrollmentCount")
            .cloned()
        };
        assert_eq!(count(json!(41)), Some(json!(41)));
        assert_eq!(count(json!("41")), Some(json!(41)));
        assert_eq!(count(json!(0)), Some(json!(0)));
        assert_eq!(count(json!("n/a")), None);
    }

    #[test]
    fn responsible_party_keeps_ctgov_keys_in_a_stable_order() {
        let a = norm(study(json!({"identificationModule": id(),
            "sponsorCollaboratorsModule": {"responsibleParty": {
                "investigatorAffiliation": "Uni ", "zNew": "z", "type": "PRINCIPAL_INVESTIGATOR",
                "investigatorTitle": "", "investigatorFullName": "Dr X", "oldOrganization": null}}})));
        let b = norm(study(json!({"identificationModule": id(),
            "sponsorCollaboratorsModule": {"responsibleParty": {
                "type": "PRINCIPAL_INVESTIGATOR", "investigatorFullName": "Dr X",
                "investigatorAffiliation": "Uni", "zNew": "z"}}})));
        assert_eq!(a.canonical_bytes(), b.canonical_bytes());
        let keys: Vec<&String> = a
            .get("sponsor.responsibleParty")
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(
            keys,
            [
                "type",
                "investigatorFullName",
                "investigatorAffiliation",
                "zNew"
            ]
        );
        let empty = norm(study(json!({"identificationModule": id(),
            "sponsorCollaboratorsModule": {"responsibleParty": {"type": " "}}})));
        assert!(empty.0.get("sponsor").is_none());
    }

    #[test]
    fn sites_are_keyed_and_same_key_sites_merge_in_ctgov_order() {
        let r = norm(study(json!({
            "identificationModule": id(),
            "contactsLocationsModule": {"locations": [
                {"facility": "St. Mary's", "city": "London", "country": "United Kingdom", "zip": "W2",
                    "geoPoint": {"lat": 51.5, "lon": -0.1}, "contacts": [{"name": "X"}]},
                {"city": "Mobile", "state": "Alabama", "country": "United States", "status": "RECRUITING"},
                {"facility": "st. mary's ", "city": "LONDON", "country": "United Kingdom", "zip": "W1"},
                {"geoPoint": {"lat": 1.0, "lon": 2.0}},
            ]},
        })));
        let locs = r.0.get("locations").unwrap().as_object().unwrap();
        let keys: Vec<&String> = locs.keys().collect();
        assert_eq!(
            keys,
            [
                "st. mary's|london||united kingdom",
                "|mobile|alabama|united states"
            ]
        );
        assert_eq!(
            locs["|mobile|alabama|united states"],
            json!({"city": "Mobile", "state": "Alabama", "country": "United States", "status": "RECRUITING"})
        );
        assert_eq!(
            locs["st. mary's|london||united kingdom"],
            json!([
                {"facility": "St. Mary's", "city": "London", "zip": "W2", "country": "United Kingdom"},
                {"facility": "st. mary's", "city": "LONDON", "zip": "W1", "country": "United Kingdom"},
            ])
        );
    }

    #[test]
    fn geo_points_site_order_and_set_order_do_not_change_the_record() {
        let base = json!({
            "identificationModule": id(),
            "conditionsModule": {"conditions": ["B", "A"]},
            "contactsLocationsModule": {"locations": [
                {"facility": "F1", "city": "C1", "country": "X", "geoPoint": {"lat": 1.0, "lon": 2.0}},
                {"facility": "F2", "city": "C2", "country": "Y", "geoPoint": {"lat": 3.0, "lon": 4.0}},
            ]},
        });
        let mut moved = base.clone();
        moved["conditionsModule"]["conditions"] = json!(["A", "B"]);
        let locs = moved["contactsLocationsModule"]["locations"]
            .as_array_mut()
            .unwrap();
        locs.reverse();
        locs[0]["geoPoint"] = json!({"lat": 9.9, "lon": 9.9});
        assert_eq!(
            norm(study(base)).canonical_bytes(),
            norm(study(moved)).canonical_bytes()
        );
    }

    #[test]
    fn violations_documents_and_has_results_are_read_outside_the_protocol_section() {
        let r = norm(json!({
            "protocolSection": {"identificationModule": id()},
            "hasResults": false,
            "documentSection": {"largeDocumentModule": {"largeDocs": [
                {"typeAbbrev": "Prot", "label": "Study Protocol", "date": "2017-01-01",
                 "uploadDate": "2021-08-13T11:54", "filename": "Prot_000.pdf", "size": 1}]}},
            "annotationSection": {"annotationModule": {"violationAnnotation": {"violationEvents": [
                {"type": "VIOLATION_IDENTIFIED", "description": "D", "creationDate": "2020-01-01",
                 "issuedDate": "2020-01-02"}]}}},
        }));
        assert_eq!(r.get("results.hasResults"), Some(&json!(false)));
        assert_eq!(
            r.get("documents.files"),
            Some(
                &json!([{"label": "Study Protocol", "date": "2017-01-01", "filename": "Prot_000.pdf"}])
            )
        );
        assert_eq!(
            r.get("results.violations"),
            Some(
                &json!([{"type": "VIOLATION_IDENTIFIED", "description": "D", "issuedDate": "2020-01-02"}])
            )
        );
    }
}
