//! Serde types mirroring the ClinicalTrials.gov API v2 JSON: the **Study** (`docs/ctgov-api.md`
//! §7), limited to what the normalizer reads (`docs/record.md` §2), and the few shapes the client
//! reads itself.
//!
//! Owns: the wire shape of a study, of a list page (`{"studies":[…]}`), of a history version
//! (`{"studyVersion":N,"study":{…}}`), and the client's ID-only view of a page and a study plus
//! the `/version` answer (at the end of this file). Does not own: any cleaning or canonical form
//! (that is `normalize`), nor HTTP or turning IDs into `NctId`s (that is `ctgov::client`).
//!
//! Rules that hold for every `Study` type here (the client's view is stricter, see below):
//! - Every field is optional. CT.gov leaves out whatever a record lacks, and `fields=` requests
//!   return partial studies. A JSON `null` reads as absent.
//! - Enumerations are read as `String`: NLM adds values in place, and an unknown value must not
//!   fail a sync.
//! - `derivedSection` and `resultsSection` are deliberately **not declared**. serde skips
//!   undeclared keys without building them, which keeps parsing fast (results are most of the
//!   bytes of a study with results) and keeps NLM's derived churn out of the record by
//!   construction. The same goes for each site's `geoPoint` and `contacts`.
//! - Unknown keys are ignored (no `deny_unknown_fields`), so new CT.gov fields never break parsing.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Reads a JSON `null` as the type's default, so `"conditions": null` is the same as no key.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One study: the response of `GET /studies/{nctId}` and each item of a list page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Study {
    /// Everything the sponsor registered; the source of almost every record path.
    pub protocol_section: Option<ProtocolSection>,
    /// `results.hasResults`. Absent in `fields=` responses that did not ask for `HasResults`.
    pub has_results: Option<bool>,
    /// FDAAA violation events (`results.violations`).
    pub annotation_section: Option<AnnotationSection>,
    /// Uploaded protocol/SAP/ICF documents (`documents.files`).
    pub document_section: Option<DocumentSection>,
}

impl Study {
    /// The study's `nctId` as CT.gov sent it (not validated), for error messages and routing.
    pub fn nct_id(&self) -> Option<&str> {
        self.protocol_section
            .as_ref()?
            .identification_module
            .as_ref()?
            .nct_id
            .as_deref()
    }
}

/// `GET /studies`: one page of a search or a `filter.ids` batch.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StudiesPage {
    /// The studies of this page; a page may be empty even when more pages follow.
    #[serde(deserialize_with = "null_as_default")]
    pub studies: Vec<Study>,
    /// Token for the next page; absent on the last page.
    pub next_page_token: Option<String>,
    /// Total hits; only on the first page and only with `countTotal=true`.
    pub total_count: Option<u64>,
}

/// `GET /api/int/studies/{nctId}/history/{version}`: one submitted version (HTML markup).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HistoryVersion {
    /// CT.gov's version index, from 0 without gaps.
    pub study_version: Option<u32>,
    /// The study as it was at that version (no `derivedSection`).
    pub study: Option<Study>,
}

/// `protocolSection`: one optional struct per module the record uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProtocolSection {
    /// `identificationModule`: IDs, titles, organization.
    pub identification_module: Option<IdentificationModule>,
    /// `statusModule`: overall status and the key dates.
    pub status_module: Option<StatusModule>,
    /// `sponsorCollaboratorsModule`: lead sponsor, collaborators, responsible party.
    pub sponsor_collaborators_module: Option<SponsorCollaboratorsModule>,
    /// `oversightModule`: DMC and FDA-regulation flags.
    pub oversight_module: Option<OversightModule>,
    /// `descriptionModule`: brief summary and detailed description.
    pub description_module: Option<DescriptionModule>,
    /// `conditionsModule`: conditions and keywords.
    pub conditions_module: Option<ConditionsModule>,
    /// `designModule`: study type, phases, design, enrollment.
    pub design_module: Option<DesignModule>,
    /// `armsInterventionsModule`: arm groups and interventions.
    pub arms_interventions_module: Option<ArmsInterventionsModule>,
    /// `outcomesModule`: primary, secondary and other outcome measures.
    pub outcomes_module: Option<OutcomesModule>,
    /// `eligibilityModule`: criteria, ages, sex, volunteers.
    pub eligibility_module: Option<EligibilityModule>,
    /// `contactsLocationsModule`: central contacts, officials, sites.
    pub contacts_locations_module: Option<ContactsLocationsModule>,
    /// `referencesModule`: publications.
    pub references_module: Option<ReferencesModule>,
    /// `ipdSharingStatementModule`: the IPD sharing plan.
    pub ipd_sharing_statement_module: Option<IpdSharingStatementModule>,
}

/// `identificationModule` → section `identification`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IdentificationModule {
    /// The study's ID; the only field a record cannot do without.
    pub nct_id: Option<String>,
    /// Other NCT IDs that redirect to this study (`identification.aliases`).
    #[serde(deserialize_with = "null_as_default")]
    pub nct_id_aliases: Vec<String>,
    /// The sponsor's own study ID (`identification.orgStudyId`).
    pub org_study_id_info: Option<IdInfo>,
    /// Other registries' IDs (`identification.secondaryIds`, ids only).
    #[serde(deserialize_with = "null_as_default")]
    pub secondary_id_infos: Vec<IdInfo>,
    /// `briefTitle` → `identification.briefTitle`; the title the Markdown mirror shows first.
    pub brief_title: Option<String>,
    /// `officialTitle` → `identification.officialTitle`.
    pub official_title: Option<String>,
    /// `acronym` → `identification.acronym`.
    pub acronym: Option<String>,
    /// The registering organization (`identification.organization`, full name only).
    pub organization: Option<Organization>,
}

/// `orgStudyIdInfo` / `secondaryIdInfos[]`: only the ID is recorded; `type`, `domain` and
/// `link` are descriptive extras the schema leaves out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IdInfo {
    /// `id`: the identifier itself.
    pub id: Option<String>,
}

/// `identificationModule.organization`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Organization {
    /// `fullName` → `identification.organization`.
    pub full_name: Option<String>,
}

/// `statusModule` → section `status`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StatusModule {
    /// `statusVerifiedDate` → `status.statusVerifiedDate` (a partial date).
    pub status_verified_date: Option<String>,
    /// `overallStatus` → `status.overallStatus` (RECRUITING, COMPLETED, …).
    pub overall_status: Option<String>,
    /// Only when `overallStatus` is `UNKNOWN`: the status before CT.gov lost track.
    pub last_known_status: Option<String>,
    /// `whyStopped` → `status.whyStopped`: the sponsor's reason for stopping early.
    pub why_stopped: Option<String>,
    /// `startDateStruct` → `status.startDate` and `startDateType`.
    pub start_date_struct: Option<DateStruct>,
    /// `primaryCompletionDateStruct` → `status.primaryCompletionDate`(`Type`).
    pub primary_completion_date_struct: Option<DateStruct>,
    /// `completionDateStruct` → `status.completionDate`(`Type`).
    pub completion_date_struct: Option<DateStruct>,
    /// `studyFirstPostDateStruct` → `status.studyFirstPostDate`.
    pub study_first_post_date_struct: Option<DateStruct>,
    /// `resultsFirstPostDateStruct` → `status.resultsFirstPostDate`.
    pub results_first_post_date_struct: Option<DateStruct>,
    /// The public "last update posted" date: the signal that the sponsor posted a new version.
    pub last_update_post_date_struct: Option<DateStruct>,
}

/// CT.gov's `DateStruct` / `PartialDateStruct`: `type` is absent on many older records.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DateStruct {
    /// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    pub date: Option<String>,
    /// `ACTUAL` / `ESTIMATED`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// `sponsorCollaboratorsModule` → section `sponsor`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SponsorCollaboratorsModule {
    /// Kept as CT.gov's object (docs/record.md §2, `sponsor.responsibleParty`), so new keys survive.
    pub responsible_party: Option<Map<String, Value>>,
    /// `leadSponsor` → `sponsor.lead` and `sponsor.leadClass`.
    pub lead_sponsor: Option<Sponsor>,
    /// `collaborators[]` → `sponsor.collaborators`.
    #[serde(deserialize_with = "null_as_default")]
    pub collaborators: Vec<Sponsor>,
}

/// `leadSponsor` and each of `collaborators[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Sponsor {
    /// `name`: the organization's name.
    pub name: Option<String>,
    /// AgencyClass (`NIH`, `INDUSTRY`, `OTHER`, …).
    pub class: Option<String>,
}

/// `oversightModule` → section `oversight` (the other flags are not in the schema).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OversightModule {
    /// `oversightHasDmc` → `oversight.hasDmc`.
    pub oversight_has_dmc: Option<bool>,
    /// `isFdaRegulatedDrug` → `oversight.fdaRegulatedDrug`.
    pub is_fda_regulated_drug: Option<bool>,
    /// `isFdaRegulatedDevice` → `oversight.fdaRegulatedDevice`.
    pub is_fda_regulated_device: Option<bool>,
}

/// `descriptionModule` → section `description` (markup text).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DescriptionModule {
    /// `briefSummary` → `description.briefSummary`.
    pub brief_summary: Option<String>,
    /// `detailedDescription` → `description.detailedDescription`.
    pub detailed_description: Option<String>,
}

/// `conditionsModule` → section `conditions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConditionsModule {
    /// `conditions[]` → `conditions.conditions`.
    #[serde(deserialize_with = "null_as_default")]
    pub conditions: Vec<String>,
    /// `keywords[]` → `conditions.keywords`.
    #[serde(deserialize_with = "null_as_default")]
    pub keywords: Vec<String>,
}

/// `designModule` → section `design`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DesignModule {
    /// `studyType` → `design.studyType` (INTERVENTIONAL, OBSERVATIONAL, …).
    pub study_type: Option<String>,
    /// CT.gov's order is kept (`["PHASE1","PHASE2"]`).
    #[serde(deserialize_with = "null_as_default")]
    pub phases: Vec<String>,
    /// `designInfo`: allocation, model, purpose, masking.
    pub design_info: Option<DesignInfo>,
    /// `enrollmentInfo` → `design.enrollmentCount` and `design.enrollmentType`.
    pub enrollment_info: Option<EnrollmentInfo>,
}

/// `designModule.designInfo`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DesignInfo {
    /// `allocation` → `design.allocation`.
    pub allocation: Option<String>,
    /// `interventionModel` → `design.interventionModel` (interventional studies).
    pub intervention_model: Option<String>,
    /// `primaryPurpose` → `design.primaryPurpose`.
    pub primary_purpose: Option<String>,
    /// `observationalModel` → `design.observationalModel` (observational studies).
    pub observational_model: Option<String>,
    /// `timePerspective` → `design.timePerspective` (observational studies).
    pub time_perspective: Option<String>,
    /// `maskingInfo` → `design.masking` and `design.whoMasked`.
    pub masking_info: Option<MaskingInfo>,
}

/// `designInfo.maskingInfo`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MaskingInfo {
    /// `masking` → `design.masking` (NONE, SINGLE, …).
    pub masking: Option<String>,
    /// `whoMasked[]` → `design.whoMasked`.
    #[serde(deserialize_with = "null_as_default")]
    pub who_masked: Vec<String>,
}

/// `designModule.enrollmentInfo`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnrollmentInfo {
    /// An integer in the API; read leniently because some producers send `"41"` or `41.0`.
    pub count: Option<Count>,
    /// `ACTUAL` / `ESTIMATED`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// An enrollment count as sent: a usable integer, or something that is not one (kept as text
/// so the normalizer can decide to leave it out instead of failing the whole study).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Count {
    /// A count that is a whole number, as CT.gov means it.
    Int(i64),
    /// Anything else (`"about 40"`, `41.5`, `true`), as text, so it can be reported.
    NotAnInteger(String),
}

impl Count {
    /// The count, if it is a usable integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Count::Int(n) => Some(*n),
            Count::NotAnInteger(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an enrollment count (integer, or a string holding one)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Count, E> {
                Ok(Count::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(
                    i64::try_from(v)
                        .map_or_else(|_| Count::NotAnInteger(v.to_string()), Count::Int),
                )
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Count, E> {
                // `41.0` is 41; `41.5` is not a count.
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(Count::Int(v as i64))
                } else {
                    Ok(Count::NotAnInteger(v.to_string()))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Count, E> {
                let t = v.trim();
                Ok(t.parse::<i64>()
                    .map_or_else(|_| Count::NotAnInteger(t.to_string()), Count::Int))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Count, E> {
                Ok(Count::NotAnInteger(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `armsInterventionsModule` → section `armsInterventions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ArmsInterventionsModule {
    /// `armGroups[]` → `armsInterventions.arms`.
    #[serde(deserialize_with = "null_as_default")]
    pub arm_groups: Vec<ArmGroup>,
    /// `interventions[]` → `armsInterventions.interventions`.
    #[serde(deserialize_with = "null_as_default")]
    pub interventions: Vec<Intervention>,
}

/// `armGroups[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ArmGroup {
    /// `label`: the arm's name, which interventions refer to.
    pub label: Option<String>,
    /// ArmGroupType (`EXPERIMENTAL`, `PLACEBO_COMPARATOR`, …).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `description`: what the arm's participants get.
    pub description: Option<String>,
    /// `"Drug: Remdesivir"`: the intervention's type label, `": "`, its name.
    #[serde(deserialize_with = "null_as_default")]
    pub intervention_names: Vec<String>,
}

/// `interventions[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Intervention {
    /// InterventionType (`DRUG`, `BIOLOGICAL`, …).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `name`: the intervention's name (e.g. `Remdesivir`).
    pub name: Option<String>,
    /// `description`: dose, schedule and such, as the sponsor wrote it.
    pub description: Option<String>,
    /// `armGroupLabels[]`: the arms that get this intervention.
    #[serde(deserialize_with = "null_as_default")]
    pub arm_group_labels: Vec<String>,
    /// `otherNames[]`: brand names and codes of the same intervention.
    #[serde(deserialize_with = "null_as_default")]
    pub other_names: Vec<String>,
}

/// `outcomesModule` → section `outcomes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OutcomesModule {
    /// `primaryOutcomes[]` → `outcomes.primary`.
    #[serde(deserialize_with = "null_as_default")]
    pub primary_outcomes: Vec<Outcome>,
    /// `secondaryOutcomes[]` → `outcomes.secondary`.
    #[serde(deserialize_with = "null_as_default")]
    pub secondary_outcomes: Vec<Outcome>,
    /// `otherOutcomes[]` → `outcomes.other`.
    #[serde(deserialize_with = "null_as_default")]
    pub other_outcomes: Vec<Outcome>,
}

/// One outcome measure.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Outcome {
    /// `measure`: what is measured.
    pub measure: Option<String>,
    /// `description`: how it is measured.
    pub description: Option<String>,
    /// `timeFrame`: when it is measured.
    pub time_frame: Option<String>,
}

/// `eligibilityModule` → section `eligibility`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EligibilityModule {
    /// `eligibilityCriteria` → `eligibility.criteria` (markup text).
    pub eligibility_criteria: Option<String>,
    /// `healthyVolunteers` → `eligibility.healthyVolunteers`.
    pub healthy_volunteers: Option<bool>,
    /// Sex (`ALL`, `FEMALE`, `MALE`).
    pub sex: Option<String>,
    /// `minimumAge` → `eligibility.minAge`, e.g. `"18 Years"`.
    pub minimum_age: Option<String>,
    /// `maximumAge` → `eligibility.maxAge`, same form as `minimumAge`.
    pub maximum_age: Option<String>,
    /// Computed by CT.gov from the ages, but part of the protocol section; recorded as a set.
    #[serde(deserialize_with = "null_as_default")]
    pub std_ages: Vec<String>,
    /// `studyPopulation` → `eligibility.studyPopulation` (observational studies).
    pub study_population: Option<String>,
}

/// `contactsLocationsModule` → sections `contacts` and `locations`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContactsLocationsModule {
    /// `centralContacts[]` → `contacts.central`.
    #[serde(deserialize_with = "null_as_default")]
    pub central_contacts: Vec<Contact>,
    /// `overallOfficials[]` → `contacts.officials`.
    #[serde(deserialize_with = "null_as_default")]
    pub overall_officials: Vec<Official>,
    /// `locations[]` → one `locations.` path per site (docs/record.md §3).
    #[serde(deserialize_with = "null_as_default")]
    pub locations: Vec<Location>,
}

/// `centralContacts[]` (`phoneExt` is not in the schema).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Contact {
    /// `name`.
    pub name: Option<String>,
    /// `role` (CONTACT, …).
    pub role: Option<String>,
    /// `phone`.
    pub phone: Option<String>,
    /// `email`.
    pub email: Option<String>,
}

/// `overallOfficials[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Official {
    /// `name`.
    pub name: Option<String>,
    /// `affiliation`: the official's institution.
    pub affiliation: Option<String>,
    /// `role` (PRINCIPAL_INVESTIGATOR, STUDY_CHAIR, …).
    pub role: Option<String>,
}

/// `locations[]`: one site. `geoPoint` (recomputed by CT.gov, churns) and the site's
/// `contacts` are left undeclared on purpose: they never reach the record.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Location {
    /// `facility`: the site's name; part of its key.
    pub facility: Option<String>,
    /// RecruitmentStatus of the site; present mostly on recruiting studies.
    pub status: Option<String>,
    /// `city`; part of the site's key.
    pub city: Option<String>,
    /// `state`; part of the site's key.
    pub state: Option<String>,
    /// `zip`; in the site's value, not its key.
    pub zip: Option<String>,
    /// `country`; part of the site's key.
    pub country: Option<String>,
}

/// `referencesModule` → section `references`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReferencesModule {
    /// `references[]` → `references.references`.
    #[serde(deserialize_with = "null_as_default")]
    pub references: Vec<Reference>,
}

/// `references[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Reference {
    /// `pmid`: the PubMed ID, when there is one.
    pub pmid: Option<String>,
    /// `BACKGROUND` / `RESULT` / `DERIVED`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `citation`: the reference as text.
    pub citation: Option<String>,
}

/// `ipdSharingStatementModule` → section `ipd`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IpdSharingStatementModule {
    /// `YES` / `NO` / `UNDECIDED`.
    pub ipd_sharing: Option<String>,
}

/// `annotationSection`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AnnotationSection {
    /// `annotationModule`.
    pub annotation_module: Option<AnnotationModule>,
}

/// `annotationSection.annotationModule` (`unpostedAnnotation` is not in the schema).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AnnotationModule {
    /// `violationAnnotation`: FDAAA 801 violations.
    pub violation_annotation: Option<ViolationAnnotation>,
}

/// `annotationModule.violationAnnotation`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ViolationAnnotation {
    /// `violationEvents[]` → `results.violations`.
    #[serde(deserialize_with = "null_as_default")]
    pub violation_events: Vec<ViolationEvent>,
}

/// One FDAAA violation event (`results.violations`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ViolationEvent {
    /// `type`: the kind of event, as CT.gov names it.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `issuedDate`: when the event happened.
    pub issued_date: Option<String>,
}

/// `documentSection`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DocumentSection {
    /// `largeDocumentModule`.
    pub large_document_module: Option<LargeDocumentModule>,
}

/// `documentSection.largeDocumentModule`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LargeDocumentModule {
    /// `largeDocs[]` → `documents.files`.
    #[serde(deserialize_with = "null_as_default")]
    pub large_docs: Vec<LargeDoc>,
}

/// One uploaded document (`documents.files`); `uploadDate` and `size` are left out because
/// a re-upload of the same file is not a change a watcher cares about.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LargeDoc {
    /// `label`: what the document is (Study Protocol, Statistical Analysis Plan, …).
    pub label: Option<String>,
    /// `date`: the document's own date.
    pub date: Option<String>,
    /// `filename`: the file's name on CT.gov.
    pub filename: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_optional_and_null_reads_as_absent() {
        let s: Study = serde_json::from_str("{}").unwrap();
        assert!(s.protocol_section.is_none() && s.has_results.is_none());
        let s: Study = serde_json::from_str(
            r#"{"protocolSection":{"conditionsModule":{"conditions":null,"keywords":["a"]},
                "identificationModule":null},"hasResults":null}"#,
        )
        .unwrap();
        let c = s.protocol_section.unwrap().conditions_module.unwrap();
        assert!(c.conditions.is_empty());
        assert_eq!(c.keywords, ["a"]);
    }

    #[test]
    fn enrollment_count_is_read_leniently() {
        let count = |j: &str| -> Option<Count> {
            let e: EnrollmentInfo = serde_json::from_str(j).unwrap();
            e.count
        };
        assert_eq!(count(r#"{"count":41}"#), Some(Count::Int(41)));
        assert_eq!(count(r#"{"count":"41"}"#), Some(Count::Int(41)));
        assert_eq!(count(r#"{"count":" 41 "}"#), Some(Count::Int(41)));
        assert_eq!(count(r#"{"count":41.0}"#), Some(Count::Int(41)));
        assert_eq!(count(r#"{"count":null}"#), None);
        assert_eq!(count(r#"{}"#), None);
        assert_eq!(
            count(r#"{"count":"about 40"}"#),
            Some(Count::NotAnInteger("about 40".into()))
        );
    }

    #[test]
    fn undeclared_sections_are_skipped() {
        let s: Study = serde_json::from_str(
            r#"{"derivedSection":{"miscInfoModule":{"versionHolder":"2024-01-03"}},
                "resultsSection":{"x":[1,2,{"y":null}]},"hasResults":true,"newThing":1}"#,
        )
        .unwrap();
        assert_eq!(s.has_results, Some(true));
    }

    #[test]
    fn pages_and_history_versions_wrap_studies() {
        let p: StudiesPage = serde_json::from_str(
            r#"{"studies":[{"hasResults":false}],"nextPageToken":"abc","totalCount":21}"#,
        )
        .unwrap();
        assert_eq!(p.studies.len(), 1);
        assert_eq!(p.next_page_token.as_deref(), Some("abc"));
        assert_eq!(p.total_count, Some(21));
        let h: HistoryVersion = serde_json::from_str(
            r#"{"studyVersion":0,"study":{"protocolSection":{"identificationModule":{"nctId":"NCT04280705"}}}}"#,
        )
        .unwrap();
        assert_eq!(h.study.unwrap().nct_id(), Some("NCT04280705"));
    }
}
