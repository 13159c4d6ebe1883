//! Black-box tests of the library's normalizer and mirror page against the CT.gov fixtures in
//! `tests/fixtures/ctgov/` (real API output, see SOURCES.md there) and the reference page in
//! `tests/fixtures/mirror/`.
//!
//! Owns: the guarantees docs/record.md makes about real data (every fixture normalizes, no empty
//! values, canonical order, derived churn ignored) and the byte-for-byte golden page.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use trialwatch::ctgov::wire;
use trialwatch::model::{ChangeKind, FieldChange, Record, VersionMeta, WatchedFields};
use trialwatch::normalize::{normalize, normalize_json};
use trialwatch::render::markdown::{DEFAULT_RECENT_DAYS, PageOptions, mirror_page};
use trialwatch::schema;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(rel: &str) -> String {
    let p = fixtures().join(rel);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn json_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(fixtures().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn record(rel: &str) -> Record {
    normalize_json(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e:#}"))
}

/// Every study in every fixture, normalized, labelled with where it came from: full studies,
/// `versions/`, `partial/`, the history version, and each study of the list pages.
fn all_records() -> Vec<(String, Record)> {
    let mut out = Vec::new();
    for dir in ["ctgov", "ctgov/versions", "ctgov/partial"] {
        for p in json_files(dir) {
            let raw = fs::read_to_string(&p).unwrap();
            let n = name(&p);
            if n.starts_with("page-") || n.starts_with("list-") {
                let page: wire::StudiesPage = serde_json::from_str(&raw).unwrap();
                assert!(!page.studies.is_empty(), "{n}");
                for (i, s) in page.studies.iter().enumerate() {
                    let r = normalize(s).unwrap_or_else(|e| panic!("{n}[{i}]: {e:#}"));
                    out.push((format!("{n}[{i}]"), r));
                }
            } else {
                let r = normalize_json(&raw).unwrap_or_else(|e| panic!("{n}: {e:#}"));
                out.push((format!("{dir}/{n}"), r));
            }
        }
    }
    let h: wire::HistoryVersion =
        serde_json::from_str(&read("ctgov/history/NCT04280705.history-v0.json")).unwrap();
    let r = normalize(h.study.as_ref().unwrap()).unwrap();
    out.push(("history/NCT04280705.history-v0.json".into(), r));
    out
}

fn location_count(r: &Record) -> usize {
    r.0.get("locations")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

#[test]
fn every_fixture_normalizes_with_its_nct_id() {
    let all = all_records();
    // 13 full studies + 1 later fetch + 3 partial + 1 history + 25 studies in 10 list pages.
    assert_eq!(
        all.len(),
        43,
        "{:?}",
        all.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for (n, r) in &all {
        let id = r.nct_id().unwrap();
        assert!(id.starts_with("NCT") && id.len() == 11, "{n}: {id}");
        assert!(r.title().is_some(), "{n} has a title");
        if let Some(file_id) = n.split(['/', '.']).find(|s| s.starts_with("NCT")) {
            assert_eq!(id, file_id, "{n}");
        }
    }
}

#[test]
fn no_null_or_empty_value_anywhere() {
    fn walk(v: &Value, at: &str) {
        match v {
            Value::Null => panic!("null at {at}"),
            Value::String(s) => {
                assert!(!s.is_empty(), "empty string at {at}");
                assert_eq!(s.trim(), s, "untrimmed text at {at}");
                assert!(!s.contains('\r'), "\\r at {at}");
            }
            Value::Array(a) => {
                assert!(!a.is_empty(), "empty list at {at}");
                a.iter()
                    .enumerate()
                    .for_each(|(i, x)| walk(x, &format!("{at}[{i}]")));
            }
            Value::Object(o) => {
                assert!(!o.is_empty(), "empty object at {at}");
                o.iter().for_each(|(k, x)| walk(x, &format!("{at}.{k}")));
            }
            Value::Bool(_) | Value::Number(_) => {}
        }
    }
    for (n, r) in all_records() {
        walk(&Value::Object(r.0.clone()), &n);
    }
}

#[test]
fn records_are_laid_out_in_schema_order_with_known_paths_only() {
    for (n, r) in all_records() {
        let paths: Vec<String> = r.fields().map(|(p, _)| p).collect();
        for p in &paths {
            assert!(schema::is_known_path(p), "{n}: unknown path {p}");
        }
        for w in paths.windows(2) {
            assert!(
                schema::path_order(&w[0]) < schema::path_order(&w[1]),
                "{n}: {} before {}",
                w[0],
                w[1]
            );
        }
        // Normalizing is a fixed point of the canonical serialization.
        let back: Record = serde_json::from_slice(&r.canonical_bytes()).unwrap();
        assert_eq!(back.canonical_bytes(), r.canonical_bytes(), "{n}");
    }
}

#[test]
fn concrete_values_of_real_fixtures() {
    // PALLAS: 437 sites, every key distinct, so 437 paths and no merged (list) value.
    let r = record("ctgov/NCT02513394.json");
    assert_eq!(location_count(&r), 437);
    let locs = r.0["locations"].as_object().unwrap();
    assert!(locs.values().all(Value::is_object));
    assert_eq!(
        locs["university of south alabama mitchell cancer institute|mobile|alabama|united states"],
        serde_json::json!({"facility": "University of South Alabama Mitchell Cancer Institute",
            "city": "Mobile", "state": "Alabama", "zip": "36604", "country": "United States"})
    );
    assert_eq!(r.text("status.startDate"), Some("2015-08"));
    assert_eq!(
        r.get("status.startDateType"),
        None,
        "type-less startDateStruct"
    );
    assert_eq!(r.get("results.hasResults"), Some(&Value::Bool(true)));

    let r = record("ctgov/NCT02210780.json");
    assert_eq!(location_count(&r), 42);
    assert!(
        r.0["locations"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| k.starts_with('|'))
    );

    let r = record("ctgov/NCT00973089.json");
    assert_eq!(r.overall_status(), Some("WITHDRAWN"));
    assert_eq!(
        r.text("status.whyStopped"),
        Some("recruiting or enrolling participants has halted prematurely and will not resume")
    );
    assert_eq!(r.text("status.startDate"), Some("2010-05"));
    assert_eq!(r.get("status.startDateType"), None);

    let r = record("ctgov/NCT00763412.json");
    assert_eq!(r.text("status.startDate"), Some("2006-11"));
    assert_eq!(r.get("status.startDateType"), None);

    let r = record("ctgov/NCT03475563.json");
    assert_eq!(r.overall_status(), Some("UNKNOWN"));
    assert_eq!(r.text("status.lastKnownStatus"), Some("RECRUITING"));
    assert_eq!(r.text("status.startDateType"), Some("ACTUAL"));
    let locs = r.0["locations"].as_object().unwrap();
    assert_eq!(locs.len(), 3);
    assert!(locs.values().all(|s| s["status"] == "RECRUITING"));

    let r = record("ctgov/NCT03064438.json");
    let v = r.get("results.violations").unwrap().as_array().unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(
        v[0],
        serde_json::json!({"type": "CORRECTION_CONFIRMED",
            "description": "The responsible party has corrected the violation.",
            "issuedDate": "2022-05-26"})
    );
    assert_eq!(
        r.get("documents.files"),
        Some(&serde_json::json!([
            {"label": "Study Protocol", "date": "2017-08-05", "filename": "Prot_000.pdf"},
            {"label": "Statistical Analysis Plan", "date": "2018-05-11", "filename": "SAP_001.pdf"},
        ]))
    );

    let r = record("ctgov/NCT02552212.json");
    assert_eq!(r.get("results.hasResults"), Some(&Value::Bool(true)));
    assert_eq!(location_count(&r), 105);
    assert_eq!(r.last_update_post_date(), Some("2022-08-18"));

    let r = record("ctgov/NCT03418623.json");
    assert_eq!(r.get("design.enrollmentCount"), Some(&Value::from(24)));
    assert_eq!(
        r.get("design.whoMasked"),
        Some(&serde_json::json!([
            "CARE_PROVIDER",
            "INVESTIGATOR",
            "OUTCOMES_ASSESSOR",
            "PARTICIPANT"
        ]))
    );
    assert_eq!(
        r.get("conditions.keywords"),
        Some(&serde_json::json!([
            "Alcohol use",
            "GABA",
            "GET73",
            "Glutamate",
            "Non-treatment seeking"
        ]))
    );
    assert_eq!(r.get("results.hasResults"), Some(&Value::Bool(false)));

    // Partial responses (`fields=`) have no hasResults, and the record says nothing about it.
    let r = record("ctgov/partial/NCT02576665.json");
    assert_eq!(r.get("results.hasResults"), None);
    assert_eq!(location_count(&r), 3);

    // The history version keeps its HTML markup as sent.
    let h: wire::HistoryVersion =
        serde_json::from_str(&read("ctgov/history/NCT04280705.history-v0.json")).unwrap();
    let r = normalize(h.study.as_ref().unwrap()).unwrap();
    assert_eq!(r.overall_status(), Some("NOT_YET_RECRUITING"));
    assert_eq!(r.get("design.enrollmentCount"), Some(&Value::from(394)));
    assert!(
        r.text("description.briefSummary")
            .unwrap()
            .contains("evolve&#x2F;improve")
    );
}

#[test]
fn the_same_study_fetched_weeks_apart_gives_identical_bytes() {
    let a = read("ctgov/NCT02552212.json");
    let b = read("ctgov/versions/NCT02552212.versionHolder-2024-01-03.json");
    assert_ne!(a, b, "the two fetches differ in derivedSection");
    let (ra, rb) = (normalize_json(&a).unwrap(), normalize_json(&b).unwrap());
    assert_eq!(ra.canonical_bytes(), rb.canonical_bytes());
}

/// Changes a real fixture through its JSON tree and returns the new record.
fn edited(rel: &str, edit: impl FnOnce(&mut Value)) -> Record {
    let mut v: Value = serde_json::from_str(&read(rel)).unwrap();
    edit(&mut v);
    normalize_json(&v.to_string()).unwrap()
}

fn locations(v: &mut Value) -> &mut Vec<Value> {
    v["protocolSection"]["contactsLocationsModule"]["locations"]
        .as_array_mut()
        .unwrap()
}

#[test]
fn geo_points_condition_order_and_site_order_change_nothing() {
    let rel = "ctgov/NCT02513394.json";
    let base = record(rel).canonical_bytes();

    let geo = edited(rel, |v| {
        locations(v)[5]["geoPoint"] = serde_json::json!({"lat": 0.5, "lon": -0.5});
        locations(v)[7].as_object_mut().unwrap().remove("geoPoint");
    });
    assert_eq!(geo.canonical_bytes(), base, "geoPoint alone");

    let reordered = edited(rel, |v| {
        locations(v).reverse();
        locations(v).rotate_left(100);
    });
    assert_eq!(reordered.canonical_bytes(), base, "site order");

    let rel = "ctgov/NCT02552212.json";
    let base = record(rel);
    let conditions = |v: &mut Value| {
        v["protocolSection"]["conditionsModule"]["conditions"]
            .as_array_mut()
            .unwrap()
            .reverse();
        v["protocolSection"]["conditionsModule"]["keywords"]
            .as_array_mut()
            .unwrap()
            .reverse();
    };
    assert!(
        base.get("conditions.keywords")
            .unwrap()
            .as_array()
            .unwrap()
            .len()
            > 1
    );
    assert_eq!(
        edited(rel, conditions).canonical_bytes(),
        base.canonical_bytes()
    );

    // A real edit does change the bytes (the test above is not vacuous).
    let moved = edited(rel, |v| {
        locations(v)[0]["city"] = Value::from("Elsewhere");
    });
    assert_ne!(moved.canonical_bytes(), base.canonical_bytes());
}

#[test]
fn duplicate_site_keys_in_a_real_study_merge_into_a_list() {
    let rel = "ctgov/NCT03475563.json";
    let r = edited(rel, |v| {
        let mut twin = locations(v)[0].clone();
        twin["zip"] = Value::from("00000");
        locations(v).push(twin);
    });
    let locs = r.0["locations"].as_object().unwrap();
    assert_eq!(locs.len(), 3);
    let merged: Vec<&Value> = locs.values().filter(|v| v.is_array()).collect();
    assert_eq!(merged.len(), 1);
    let merged = merged[0].as_array().unwrap();
    assert_eq!(merged.len(), 2);
    assert_eq!(
        merged[1]["zip"], "00000",
        "CT.gov order within the merged list"
    );
}

// ---- The mirror page ----

fn first_import(record: &Record, at: DateTime<Utc>) -> VersionMeta {
    VersionMeta {
        provenance: Default::default(),
        version: 1,
        detected_at: at,
        last_update_post_date: record.last_update_post_date().map(str::to_string),
        changes: record
            .fields()
            .map(|(path, v)| FieldChange {
                path,
                kind: ChangeKind::Added,
                old: None,
                new: Some(v.clone()),
            })
            .collect(),
    }
}

/// The footer's last line of the reference page, used as the configured footer note.
const NOTE: &str = "This page is a raw mirror with no AI summary, no editorial enrichment, and no \
                    Parkinson's-specific filtering.";

#[test]
fn golden_mirror_page_matches_the_reference_byte_for_byte() {
    let expected = read("mirror/NCT02985775.md");
    let r = record("ctgov/NCT02985775.json");
    let at: DateTime<Utc> = "2026-05-12T06:28:15.685Z".parse().unwrap();
    let watched = WatchedFields::default();
    let opts = PageOptions {
        canonical_base: Some("https://parkinsonspathways.com/agent/trials"),
        footer_note: Some(NOTE),
        recent_days: DEFAULT_RECENT_DAYS,
        watched: &watched,
    };
    let page = mirror_page(&r, at, at, &[first_import(&r, at)], &opts);
    if page != expected {
        let diff = similar::TextDiff::from_lines(&expected, &page);
        panic!(
            "page differs:\n{}",
            diff.unified_diff().header("expected", "rendered")
        );
    }
    // A base with a trailing slash gives the same page.
    let opts = PageOptions {
        canonical_base: Some("https://parkinsonspathways.com/agent/trials/"),
        ..opts
    };
    assert_eq!(
        mirror_page(&r, at, at, &[first_import(&r, at)], &opts),
        expected
    );
}

#[test]
fn the_built_fixture_carries_derived_noise_that_the_record_ignores() {
    let raw: Value = serde_json::from_str(&read("ctgov/NCT02985775.json")).unwrap();
    assert!(raw["derivedSection"]["miscInfoModule"]["versionHolder"].is_string());
    assert!(
        raw["protocolSection"]["contactsLocationsModule"]["locations"][0]["geoPoint"].is_object()
    );
    let r = record("ctgov/NCT02985775.json");
    let bytes = String::from_utf8(r.canonical_bytes()).unwrap();
    for noise in ["versionHolder", "geoPoint", "browseLeaves", "39.9075"] {
        assert!(!bytes.contains(noise), "{noise}");
    }
}

#[test]
fn a_month_later_the_first_import_is_no_longer_recent() {
    let r = record("ctgov/NCT02985775.json");
    let at: DateTime<Utc> = "2026-05-12T06:28:15.685Z".parse().unwrap();
    let watched = WatchedFields::default();
    let opts = PageOptions {
        canonical_base: None,
        footer_note: None,
        recent_days: 30,
        watched: &watched,
    };
    let versions = [first_import(&r, at)];
    let page = mirror_page(&r, at, at + Duration::days(31), &versions, &opts);
    assert!(page.contains(
        "## Recent Field Changes (last 30 days)\n\n_No watched-field changes in this period._\n"
    ));
    let page = mirror_page(&r, at, at + Duration::days(30), &versions, &opts);
    assert!(page.contains("- `status.completionDate` — added _(2026-05-12)_\n"));
}

#[test]
fn every_fixture_renders_a_page() {
    let watched = WatchedFields::default();
    let now: DateTime<Utc> = "2026-05-12T06:28:15.685Z".parse().unwrap();
    let opts = PageOptions {
        canonical_base: Some("https://example.org/trials/"),
        footer_note: None,
        recent_days: 30,
        watched: &watched,
    };
    for (n, r) in all_records() {
        let page = mirror_page(&r, now, now, &[first_import(&r, now)], &opts);
        let nct = r.nct_id().unwrap();
        assert!(page.starts_with("---\ntitle: "), "{n}");
        assert!(
            page.contains(&format!(
                "canonical_url: \"https://example.org/trials/{nct}.md\""
            )),
            "{n}"
        );
        assert!(
            page.ends_with(&format!(
                "*Source data (authoritative): https://clinicaltrials.gov/study/{nct}*\n"
            )),
            "{n}"
        );
        if let Some(locs) = r.0.get("locations").and_then(Value::as_object) {
            assert!(
                page.contains(&format!("## Locations ({})\n", locs.len())),
                "{n}"
            );
        }
    }
}

/// Guards the sync fast path: derived-data churn (the NCT02552212 pair) leaves the source
/// fingerprint unchanged, while any edit the normalizer can see changes it.
#[test]
fn source_fingerprint_ignores_derived_data_only() {
    use trialwatch::normalize::source_fingerprint;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ctgov");
    let a = std::fs::read_to_string(dir.join("NCT02552212.json")).unwrap();
    let b = std::fs::read_to_string(dir.join("versions/NCT02552212.versionHolder-2024-01-03.json"))
        .unwrap();
    assert_ne!(a, b);
    assert_eq!(
        source_fingerprint(&a).unwrap(),
        source_fingerprint(&b).unwrap()
    );
    let edited = a.replacen(
        "\"overallStatus\": \"COMPLETED\"",
        "\"overallStatus\": \"TERMINATED\"",
        1,
    );
    assert_ne!(edited, a);
    assert_ne!(
        source_fingerprint(&a).unwrap(),
        source_fingerprint(&edited).unwrap()
    );
    let results_flip = a.replacen("\"hasResults\": true", "\"hasResults\": false", 1);
    assert_ne!(results_flip, a);
    assert_ne!(
        source_fingerprint(&a).unwrap(),
        source_fingerprint(&results_flip).unwrap()
    );
    assert!(source_fingerprint("<html>").is_err());
}
