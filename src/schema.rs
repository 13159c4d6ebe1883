//! The ordered table of field paths from docs/record.md §2: the single source of the canonical
//! order of sections and keys, used by the normalizer (to build records in order), by diff
//! (to list changes in table order) and by the page renderer.
//!
//! `locations` is special: its keys are per-site (`facility|city|state|country`), sorted.

/// Sections in canonical order, each with its keys in canonical order.
/// `locations` has no fixed keys (one per site).
pub const SECTIONS: &[(&str, &[&str])] = &[
    (
        "identification",
        &[
            "nctId",
            "briefTitle",
            "officialTitle",
            "acronym",
            "orgStudyId",
            "secondaryIds",
            "aliases",
            "organization",
        ],
    ),
    (
        "status",
        &[
            "overallStatus",
            "lastKnownStatus",
            "whyStopped",
            "statusVerifiedDate",
            "startDate",
            "startDateType",
            "primaryCompletionDate",
            "primaryCompletionDateType",
            "completionDate",
            "completionDateType",
            "studyFirstPostDate",
            "resultsFirstPostDate",
            "lastUpdatePostDate",
        ],
    ),
    (
        "sponsor",
        &["lead", "leadClass", "collaborators", "responsibleParty"],
    ),
    (
        "oversight",
        &["hasDmc", "fdaRegulatedDrug", "fdaRegulatedDevice"],
    ),
    ("description", &["briefSummary", "detailedDescription"]),
    ("conditions", &["conditions", "keywords"]),
    (
        "design",
        &[
            "studyType",
            "phases",
            "allocation",
            "interventionModel",
            "primaryPurpose",
            "observationalModel",
            "timePerspective",
            "masking",
            "whoMasked",
            "enrollmentCount",
            "enrollmentType",
        ],
    ),
    ("armsInterventions", &["arms", "interventions"]),
    ("outcomes", &["primary", "secondary", "other"]),
    (
        "eligibility",
        &[
            "criteria",
            "minAge",
            "maxAge",
            "sex",
            "healthyVolunteers",
            "stdAges",
            "studyPopulation",
        ],
    ),
    ("contacts", &["central", "officials"]),
    ("locations", &[]),
    ("references", &["references"]),
    ("ipd", &["sharing"]),
    ("documents", &["files"]),
    ("results", &["hasResults", "violations"]),
];

/// The section whose keys are per-site, sorted by key.
pub const LOCATIONS: &str = "locations";

/// Sort key of a field path in canonical (table) order. Unknown paths sort last, by name,
/// so a record written by a newer release still orders deterministically.
pub fn path_order(path: &str) -> (usize, usize, &str) {
    let (section, key) = path.split_once('.').unwrap_or((path, ""));
    match SECTIONS.iter().position(|(s, _)| *s == section) {
        Some(si) if section == LOCATIONS => (si, 0, key),
        Some(si) => match SECTIONS[si].1.iter().position(|k| *k == key) {
            Some(ki) => (si, ki, ""),
            None => (si, usize::MAX, key),
        },
        None => (usize::MAX, 0, path),
    }
}

/// Whether `path` names a field of the schema (any `locations.*` key counts).
pub fn is_known_path(path: &str) -> bool {
    let (si, ki, _) = path_order(path);
    si != usize::MAX && ki != usize::MAX
}

/// Every fixed path in table order, with `locations.*` standing for the per-site paths.
pub fn all_paths() -> impl Iterator<Item = String> {
    SECTIONS.iter().flat_map(|(s, keys)| {
        if *s == LOCATIONS {
            vec![format!("{s}.*")]
        } else {
            keys.iter().map(|k| format!("{s}.{k}")).collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_order_is_total_and_locations_sort_by_key() {
        assert!(path_order("identification.nctId") < path_order("status.overallStatus"));
        assert!(path_order("status.overallStatus") < path_order("status.lastUpdatePostDate"));
        assert!(path_order("contacts.officials") < path_order("locations.a||x|y"));
        assert!(path_order("locations.a||x|y") < path_order("locations.b||x|y"));
        assert!(path_order("locations.zzz") < path_order("references.references"));
        assert!(path_order("results.violations") < path_order("zzz.unknown"));
        assert!(is_known_path("results.hasResults"));
        assert!(!is_known_path("results.nope"));
        assert_eq!(all_paths().count(), 63);
    }
}
