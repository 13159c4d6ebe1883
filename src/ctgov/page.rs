//! The client's ID-only reading of CT.gov's answers: a page or a single study, each study kept
//! as the exact bytes CT.gov sent, with just the IDs read to match it to a request.
//!
//! It does not use `wire::Study` for that: building the whole study once here and again in
//! `normalize` would double the parsing cost of a sync, and a study whose other fields have an
//! odd shape must still reach `normalize` (which reports it for that study alone) instead of
//! failing its whole batch. Its page, unlike `wire::StudiesPage`, must have a `studies` array: a
//! body without one is not an answer, and is retried as a bad body.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::NctId;

/// A list page as the client reads it: each study kept as raw JSON, unparsed.
#[derive(Deserialize)]
pub(crate) struct RawStudiesPage<'a> {
    /// The page's studies (`studies`), borrowed from the body so their bytes stay exact.
    #[serde(borrow)]
    pub(crate) studies: Vec<&'a RawValue>,
    /// `nextPageToken`; absent (or empty) on the last page.
    #[serde(rename = "nextPageToken")]
    pub(crate) next_page_token: Option<String>,
}

/// Just the ID parts of a study, as a derived parse reads them: what [`read_ids`] is tested
/// against.
#[cfg(test)]
#[derive(Deserialize)]
pub(crate) struct StudyIds {
    /// `protocolSection`, of which only the identification module is read.
    #[serde(rename = "protocolSection")]
    pub(crate) protocol_section: Option<ProtocolIds>,
}

/// `protocolSection`, reduced to `identificationModule`.
#[cfg(test)]
#[derive(Deserialize)]
pub(crate) struct ProtocolIds {
    /// `identificationModule`, reduced to the IDs.
    #[serde(rename = "identificationModule")]
    pub(crate) identification_module: Option<IdentificationIds>,
}

/// `identificationModule`, reduced to the IDs a requested ID can match.
#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct IdentificationIds {
    /// `nctId`: the study's canonical ID.
    #[serde(rename = "nctId")]
    pub(crate) nct_id: Option<String>,
    /// `nctIdAliases`: older IDs CT.gov answers with this study.
    #[serde(rename = "nctIdAliases", default)]
    pub(crate) nct_id_aliases: Vec<String>,
}

/// `GET /version`: when CT.gov last loaded data.
#[derive(Deserialize)]
pub(crate) struct DataVersion {
    /// `dataTimestamp` (UTC, `yyyy-MM-ddTHH:mm:ss`), passed on as sent.
    #[serde(rename = "dataTimestamp")]
    pub(crate) data_timestamp: String,
}

#[derive(Debug)]
pub(super) struct ListedStudy {
    pub(super) nct_id: NctId,
    /// `identificationModule.nctIdAliases`, so a requested alias finds its study.
    pub(super) aliases: Vec<NctId>,
    pub(super) raw: Box<RawValue>,
}

/// A study of a list page that could not be read: it fails on its own, never its page.
#[derive(Debug)]
pub(super) struct BadListed {
    /// Its place on the page (1-based), to name it when its `nctId` cannot be read.
    pub(super) position: usize,
    /// `identificationModule.nctId` if it is readable text (it may still be no NCT ID).
    pub(super) nct_id: Option<String>,
    /// What was wrong with it.
    pub(super) reason: String,
}

/// A list page: `{"studies":[…], "nextPageToken"?, "totalCount"?}`.
pub(super) struct Page {
    pub(super) studies: Vec<ListedStudy>,
    /// Studies of the page that could not be read, each to fail alone.
    pub(super) bad: Vec<BadListed>,
    pub(super) next_page_token: Option<String>,
}

/// What the body of a page is called in the error when it is not JSON (the client splits the
/// batch on it, as for a 400, to isolate a study that breaks the whole body).
pub(super) const NOT_A_PAGE: &str = "not a complete page of studies";

pub(super) fn parse_study(raw: &RawValue) -> Result<ListedStudy, String> {
    let ident = read_ids(raw.get())
        .map_err(|e| format!("a study is not a JSON object of the expected shape: {e}"))?
        .ok_or("a study has no protocolSection.identificationModule")?;
    let nct = ident
        .nct_id
        .ok_or("a study has no protocolSection.identificationModule.nctId")?;
    let nct_id: NctId = nct
        .parse()
        .map_err(|e| format!("a study's nctId is not usable: {e}"))?;
    let aliases = ident
        .nct_id_aliases
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    Ok(ListedStudy {
        nct_id,
        aliases,
        raw: raw.to_owned(),
    })
}

#[cfg(test)]
pub(super) fn parse_single(body: &str) -> Result<ListedStudy, String> {
    parse_single_lenient(body)?
}

/// What [`read_ids`] has found so far: `None` before `protocolSection`, then its
/// `identificationModule` (`None` when it has none).
type Found = Option<Option<IdentificationIds>>;

/// The error [`read_ids`] stops the parse with once it has what it came for.
const IDS_READ: &str = "(IDs read)";

/// The `identificationModule` of a study (as a derived `StudyIds` parse reads it), without scanning the rest of it once
/// `protocolSection.identificationModule` is read: CT.gov sends that module first, and the
/// rest (tens of KB, mostly results) is scanned by the page split before and by the normalizer
/// after; a derived `StudyIds` parse scanned it all once more for two fields. The study's JSON
/// is already known to be well-formed (it is a `RawValue`), so what stopping early leaves
/// unchecked is only a second `protocolSection` or `identificationModule` key after the first,
/// which the normalizer's typed parse refuses for that study anyway.
fn read_ids(raw: &str) -> Result<Option<IdentificationIds>, serde_json::Error> {
    use serde::de::DeserializeSeed;

    let mut found: Found = None;
    let mut de = serde_json::Deserializer::from_str(raw);
    match (IdsSeed::Top(&mut found)).deserialize(&mut de) {
        Ok(()) => de.end().map(|()| found.flatten()),
        Err(_) if found.is_some() => Ok(found.flatten()),
        Err(e) => Err(e),
    }
}

/// The keys [`read_ids`] looks for at the top of a study (no allocation per key).
#[derive(Deserialize)]
enum TopKey {
    #[serde(rename = "protocolSection")]
    Protocol,
    #[serde(other)]
    Other,
}

/// The key [`read_ids`] looks for in `protocolSection`.
#[derive(Deserialize)]
enum ProtocolKey {
    #[serde(rename = "identificationModule")]
    Identification,
    #[serde(other)]
    Other,
}

/// The two levels [`read_ids`] walks: the study, then its `protocolSection`.
enum IdsSeed<'f> {
    Top(&'f mut Found),
    Protocol(&'f mut Found),
}

impl<'de> serde::de::DeserializeSeed<'de> for IdsSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self {
            IdsSeed::Top(_) => d.deserialize_map(self),
            // `protocolSection: null` is a study without one, as for the derived parse.
            IdsSeed::Protocol(_) => d.deserialize_option(self),
        }
    }
}

impl<'de> serde::de::Visitor<'de> for IdsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdsSeed::Top(_) => "struct StudyIds",
            IdsSeed::Protocol(_) => "struct ProtocolIds",
        })
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        match self {
            IdsSeed::Protocol(found) => {
                *found = Some(None);
                Ok(())
            }
            IdsSeed::Top(_) => Err(E::invalid_type(serde::de::Unexpected::Option, &self)),
        }
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::{Error as _, IgnoredAny};

        match self {
            IdsSeed::Top(found) => {
                while let Some(key) = map.next_key::<TopKey>()? {
                    if let TopKey::Protocol = key {
                        map.next_value_seed(IdsSeed::Protocol(&mut *found))?;
                        // Read whole without the module: that is the answer too.
                        found.get_or_insert(None);
                        return Err(A::Error::custom(IDS_READ));
                    }
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(())
            }
            IdsSeed::Protocol(found) => {
                while let Some(key) = map.next_key::<ProtocolKey>()? {
                    if let ProtocolKey::Identification = key {
                        *found = Some(map.next_value()?);
                        return Err(A::Error::custom(IDS_READ));
                    }
                    map.next_value::<IgnoredAny>()?;
                }
                *found = Some(None);
                Ok(())
            }
        }
    }
}

/// A single study's body: `Err` when it is not JSON (a bad body, retried), `Ok(Err)` when it is
/// JSON but not a usable study (CT.gov's data: a retry would get the same).
pub(super) fn parse_single_lenient(body: &str) -> Result<Result<ListedStudy, String>, String> {
    let raw: &RawValue =
        serde_json::from_str(body).map_err(|e| format!("the study is not complete JSON: {e}"))?;
    Ok(parse_study(raw))
}

/// A page whose studies must all be readable (one that is not fails the page): what the tests
/// check the lenient parser against (every query now sets broken studies apart).
#[cfg(test)]
pub(super) fn parse_page(body: &str) -> Result<Page, String> {
    let page = parse_page_lenient(body)?;
    match page.bad.first() {
        Some(b) => Err(b.reason.clone()),
        None => Ok(page),
    }
}

/// A page whose unreadable studies are set aside in `bad`; only a page that is not JSON (or has
/// no `studies` array) fails.
pub(super) fn parse_page_lenient(body: &str) -> Result<Page, String> {
    let wire: RawStudiesPage<'_> =
        serde_json::from_str(body).map_err(|e| format!("{NOT_A_PAGE}: {e}"))?;
    let mut studies = Vec::with_capacity(wire.studies.len());
    let mut bad = Vec::new();
    for (i, raw) in wire.studies.into_iter().enumerate() {
        match parse_study(raw) {
            Ok(s) => studies.push(s),
            Err(reason) => bad.push(BadListed {
                position: i + 1,
                nct_id: readable_nct_id(raw),
                reason,
            }),
        }
    }
    Ok(Page {
        studies,
        bad,
        next_page_token: wire.next_page_token.filter(|t| !t.is_empty()),
    })
}

/// `protocolSection.identificationModule.nctId` of a study that failed to parse, if it is text.
fn readable_nct_id(raw: &RawValue) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    v.pointer("/protocolSection/identificationModule/nctId")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_keeps_each_study_byte_for_byte() {
        let body = r#"{"studies":[{"protocolSection":{"identificationModule":{"nctId":"NCT00000001","nctIdAliases":["NCT00000009"]}},"x": [1, 2]}],"nextPageToken":"abc"}"#;
        let page = parse_page(body).unwrap();
        assert_eq!(page.next_page_token.as_deref(), Some("abc"));
        let s = &page.studies[0];
        assert_eq!(s.nct_id.as_str(), "NCT00000001");
        assert_eq!(s.aliases[0].as_str(), "NCT00000009");
        assert!(s.raw.get().ends_with(r#""x": [1, 2]}"#));
    }

    #[test]
    fn a_lenient_page_sets_bad_studies_aside() {
        let body = r#"{"studies":[{"protocolSection":{"identificationModule":{"nctId":"NCT00000001"}}},{"protocolSection":{"identificationModule":{"nctId":"NCT00000002","briefTitle":5,"nctIdAliases":7}}},{"protocolSection":null}]}"#;
        let page = parse_page_lenient(body).unwrap();
        assert_eq!(page.studies.len(), 1);
        assert_eq!(page.bad.len(), 2);
        assert_eq!(page.bad[0].position, 2);
        assert_eq!(page.bad[0].nct_id.as_deref(), Some("NCT00000002"));
        assert_eq!(page.bad[1].position, 3);
        assert_eq!(page.bad[1].nct_id, None);
        assert!(parse_page_lenient(r#"{"studies":[1,"#).is_err());
    }

    /// The derived parse `read_ids` replaces, as it was.
    fn derived_ids(raw: &str) -> Result<Option<IdentificationIds>, String> {
        let ids: StudyIds = serde_json::from_str(raw).map_err(|e| e.to_string())?;
        Ok(ids.protocol_section.and_then(|p| p.identification_module))
    }

    #[test]
    fn reading_ids_up_to_the_identification_module_answers_as_the_derived_parse() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ctgov");
        let mut studies = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            match parse_page_lenient(&text) {
                Ok(page) => studies.extend(page.studies.iter().map(|s| s.raw.get().to_string())),
                Err(_) => studies.push(text),
            }
        }
        assert!(studies.len() > 20, "{} studies", studies.len());
        let crafted = [
            r#"{"x": [1, {"protocolSection": 2}], "protocolSection": {"a": {}, "identificationModule": {"nctId": "NCT00000001", "nctIdAliases": ["NCT00000002"]}}, "resultsSection": {}}"#,
            r#"{"protocolSection": {"identificationModule": {"nctId": "NCT00000001"}}, "derivedSection": {"miscInfoModule": {}}}"#,
            r#"{"protocolSection": {"statusModule": {}}}"#,
            r#"{"protocolSection": null}"#,
            r#"{"protocolSection": {"identificationModule": null}}"#,
            r#"{"protocolSection": {"identificationModule": {"nctIdAliases": 7}}}"#,
            r#"{"protocolSection": {"identificationModule": {"nctId": 5}}}"#,
            r#"{"protocolSection": {"identificationModule": {"nctId": "NCT00000001", "nctId": "NCT00000002"}}}"#,
            r#"{"protocolSection": "text"}"#,
            r#"{"protocolSection": {"identificationModule": {"nctId": "NCT00000003"}}}"#,
            r#"{}"#,
            r#"null"#,
            r#"5"#,
        ];
        studies.extend(crafted.iter().map(|s| s.to_string()));
        for raw in &studies {
            let old = derived_ids(raw);
            let new = read_ids(raw).map_err(|e| e.to_string());
            assert_eq!(new, old, "{raw}");
        }
    }

    #[test]
    fn wrong_shapes_are_bad_bodies() {
        assert!(parse_page(r#"{"items":[]}"#).is_err());
        assert!(parse_page(r#"{"studies":[{"protocolSection":{}}]}"#).is_err());
        assert!(
            parse_page(
                r#"{"studies":[{"protocolSection":{"identificationModule":{"nctId":"X"}}}]}"#
            )
            .is_err()
        );
        assert!(
            parse_single(r#"{"protocolSection":{"identificationModule":{"nctId":"NCT0000"#)
                .is_err()
        );
    }
}
