//! One scan of a study for the sync: its top-level sections the normalizer reads, split once as
//! raw slices, from which both the [`source_fingerprint`](super::source_fingerprint) and the
//! record of [`normalize_json`](super::normalize_json) are made.
//!
//! Why: a sync that asked the two whole-text functions scanned each study (tens of KB, most of
//! it `resultsSection` and `derivedSection`, which nothing reads) once for the fingerprint and
//! again for the typed parse. Here those sections are skipped once, and the typed parse reads
//! only the sections it uses. The results are byte-identical to the whole-text functions (the
//! fingerprint hashes the very slices `source_fingerprint` hashes; the typed sections are parsed
//! from the same text), and any study this path cannot take whole (not an object, a section of
//! the wrong shape) is handed to the whole-text functions, so its error reads as before.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{NormalizeError, fingerprint_of, hollow_protocol, normalize, normalize_json};
use crate::ctgov::wire;
use crate::model::Record;

/// A study split into the top-level parts the normalizer reads, borrowed from its text.
pub struct StudyParts<'a> {
    raw: &'a str,
    split: Split<'a>,
}

/// The top-level keys `wire::Study` reads; everything else is skipped unparsed.
#[derive(Deserialize)]
struct Split<'a> {
    #[serde(rename = "protocolSection", borrow)]
    protocol: Option<&'a RawValue>,
    #[serde(rename = "hasResults")]
    has_results: Option<bool>,
    #[serde(rename = "annotationSection", borrow)]
    annotation: Option<&'a RawValue>,
    #[serde(rename = "documentSection", borrow)]
    document: Option<&'a RawValue>,
}

impl<'a> StudyParts<'a> {
    /// Split `raw` in one scan; `None` when it is not a JSON object of that shape, for which
    /// the caller uses the whole-text functions (and gets their errors).
    pub fn split(raw: &'a str) -> Option<Self> {
        // Only an object: serde would also read a struct from an array (by position), which
        // the whole-text functions read with other field orders.
        if !raw.trim_start().starts_with('{') {
            return None;
        }
        let split = serde_json::from_str(raw).ok()?;
        Some(StudyParts { raw, split })
    }

    /// Equal to `source_fingerprint(raw)` (the same slices hashed the same way).
    pub fn fingerprint(&self) -> String {
        let s = &self.split;
        fingerprint_of(s.protocol, s.annotation, s.document, s.has_results)
    }

    /// Equal to `normalize_json(raw)`, errors included.
    pub fn normalize(&self) -> Result<Record, NormalizeError> {
        let Ok(study) = self.typed() else {
            // The whole-text parse meets the same bad section and names it in the study's own
            // lines and columns.
            return normalize_json(self.raw);
        };
        let record = normalize(&study)?;
        // Only a study without a status module can be hollow: skip its second look otherwise.
        let has_status = study
            .protocol_section
            .as_ref()
            .is_some_and(|p| p.status_module.is_some());
        if !has_status
            && self
                .split
                .protocol
                .is_some_and(|p| hollow_protocol(p.get()))
        {
            return Err(super::hollow_error(&record));
        }
        Ok(record)
    }

    /// The typed study, each section parsed from its own slice.
    fn typed(&self) -> Result<wire::Study, serde_json::Error> {
        fn section<'de, T: Deserialize<'de>>(
            r: Option<&'de RawValue>,
        ) -> Result<Option<T>, serde_json::Error> {
            Ok(r.map(|r| serde_json::from_str::<Option<T>>(r.get()))
                .transpose()?
                .flatten())
        }
        let s = &self.split;
        Ok(wire::Study {
            protocol_section: section(s.protocol)?,
            has_results: s.has_results,
            annotation_section: section(s.annotation)?,
            document_section: section(s.document)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::source_fingerprint;
    use super::*;

    /// Every study fixture (single studies, and each study of the list pages).
    fn fixture_studies() -> Vec<(String, String)> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ctgov");
        let mut out = Vec::new();
        let mut visit = vec![std::path::PathBuf::from(dir)];
        while let Some(d) = visit.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    visit.push(p);
                    continue;
                }
                if p.extension().and_then(|x| x.to_str()) != Some("json") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                let name = p.display().to_string();
                #[derive(Deserialize)]
                struct Page<'a> {
                    #[serde(borrow)]
                    studies: Vec<&'a RawValue>,
                }
                match serde_json::from_str::<Page<'_>>(&text) {
                    Ok(page) => out.extend(
                        page.studies
                            .iter()
                            .enumerate()
                            .map(|(i, s)| (format!("{name}#{i}"), s.get().to_string())),
                    ),
                    Err(_) => out.push((name, text)),
                }
            }
        }
        assert!(out.len() > 20, "{} fixture studies", out.len());
        out
    }

    #[test]
    fn one_scan_gives_the_whole_text_fingerprint_and_record_on_every_fixture() {
        let mut normalized = 0;
        for (name, raw) in fixture_studies() {
            let old_fp = source_fingerprint(&raw).ok();
            let old_rec = normalize_json(&raw).map_err(|e| e.to_string());
            // Not an object: the sync uses the whole-text functions themselves.
            let Some(parts) = StudyParts::split(&raw) else {
                continue;
            };
            assert_eq!(Some(parts.fingerprint()), old_fp, "{name}");
            let new_rec = parts.normalize().map_err(|e| e.to_string());
            match (&old_rec, &new_rec) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.canonical_bytes(), b.canonical_bytes(), "{name}");
                    normalized += 1;
                }
                _ => assert_eq!(old_rec.err(), new_rec.err(), "{name}"),
            }
        }
        assert!(normalized > 20, "{normalized} fixtures normalized");
    }

    #[test]
    fn hollow_and_broken_studies_fail_as_the_whole_text_functions_say() {
        let cases = [
            // Hollow: no status module, whole modules null.
            r#"{"protocolSection": {"identificationModule": {"nctId": "NCT02985775"},
                "statusModule": null, "designModule": null, "eligibilityModule": null,
                "conditionsModule": null}}"#,
            // Hollow without a statusModule key at all.
            r#"{"protocolSection": {"identificationModule": {"nctId": "NCT02985775"},
                "designModule": null, "eligibilityModule": null, "conditionsModule": null}}"#,
            // A status module present: never hollow.
            r#"{"protocolSection": {"identificationModule": {"nctId": "NCT02985775"},
                "statusModule": {"overallStatus": "RECRUITING"}, "designModule": null,
                "eligibilityModule": null, "conditionsModule": null}}"#,
            // A section of the wrong shape, named at its place in the whole study.
            "{\n \"hasResults\": false,\n \"protocolSection\": {\"identificationModule\": 5}\n}",
            r#"{"protocolSection": {"identificationModule": {"nctId": "NCT02985775"}},
                "documentSection": {"largeDocumentModule": {"largeDocs": 3}}}"#,
            r#"{"protocolSection": {"identificationModule": {"nctId": "NCT02985775"}},
                "hasResults": "yes"}"#,
            r#"{"protocolSection": null, "hasResults": true}"#,
            r#"{"protocolSection": {"identificationModule": {"nctId": "bad"}}}"#,
            r#"[{"identificationModule": {"nctId": "NCT02985775"}}]"#,
            r#"{"protocolSection": {"#,
        ];
        let mut hollow = 0;
        for raw in cases {
            let old = normalize_json(raw).map_err(|e| e.to_string());
            let old_fp = source_fingerprint(raw).ok();
            match StudyParts::split(raw) {
                Some(p) => {
                    assert_eq!(Some(p.fingerprint()), old_fp, "{raw}");
                    let new = p.normalize().map_err(|e| e.to_string());
                    match (&old, &new) {
                        (Ok(a), Ok(b)) => assert_eq!(a.canonical_bytes(), b.canonical_bytes()),
                        _ => assert_eq!(old.as_ref().err(), new.as_ref().err(), "{raw}"),
                    }
                    hollow += usize::from(new.is_err_and(|e| e.contains("hollow")));
                }
                // The sync uses the whole-text functions themselves.
                None => assert!(!raw.starts_with('{') || old.is_err(), "{raw}"),
            }
        }
        assert_eq!(hollow, 2, "both hollow studies refused");
    }
}
