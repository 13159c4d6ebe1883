//! Running a watched query: `GET /studies` with the query's parameters, `pageSize=1000`, only
//! the fields membership needs (`fields=`), `countTotal=true` on the first page, followed to the
//! last page. A query matching more than the cap is reported as too broad after its first
//! page, never cut short silently.
//!
//! Requests per run of a query matching N trials: ⌈N / 1000⌉ (at least 1). Memory is bounded
//! whatever the server sends: at most `max_matches` hits are kept, and paging stops after
//! ⌈max_matches / 1000⌉ + 2 pages.

use std::collections::HashSet;

use serde::Deserialize;
use tracing::warn;

use super::client::{CtGovClient, FetchError};
use super::http::no_answer;
use crate::model::NctId;

/// CT.gov's largest page.
const SEARCH_PAGE_SIZE: usize = 1000;

/// The fields a query run asks for: the ID and what an entry or exit alert shows.
pub const SEARCH_FIELDS: &str =
    "NCTId,BriefTitle,OverallStatus,Phase,LeadSponsorName,StudyFirstSubmitDate";

/// One trial a search found, with what its alert shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// The trial.
    pub nct_id: NctId,
    /// `briefTitle`.
    pub title: Option<String>,
    /// `overallStatus`.
    pub status: Option<String>,
    /// `phases`, joined with `, `.
    pub phase: Option<String>,
    /// `leadSponsor.name`.
    pub sponsor: Option<String>,
    /// `studyFirstSubmitDate` (`YYYY-MM-DD`), to tell a newly registered trial from one that
    /// newly matches.
    pub first_submitted: Option<String>,
}

/// What running a query gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchOutcome {
    /// Every match, each once.
    Complete(Vec<SearchHit>),
    /// It matches `total` trials, more than the cap; not run further.
    TooBroad {
        /// CT.gov's `totalCount` (or, without one, the count at which the run stopped).
        total: usize,
    },
}

#[derive(Deserialize)]
struct SearchPage {
    studies: Vec<PartialStudy>,
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<String>,
    #[serde(rename = "totalCount")]
    total_count: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PartialStudy {
    #[serde(rename = "protocolSection")]
    protocol: Protocol,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Protocol {
    #[serde(rename = "identificationModule")]
    identification: Identification,
    #[serde(rename = "statusModule")]
    status: Status,
    #[serde(rename = "designModule")]
    design: Design,
    #[serde(rename = "sponsorCollaboratorsModule")]
    sponsors: Sponsors,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Identification {
    #[serde(rename = "nctId")]
    nct_id: Option<String>,
    #[serde(rename = "briefTitle")]
    brief_title: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Status {
    #[serde(rename = "overallStatus")]
    overall_status: Option<String>,
    #[serde(rename = "studyFirstSubmitDate")]
    first_submit: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Design {
    phases: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Sponsors {
    #[serde(rename = "leadSponsor")]
    lead: Lead,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Lead {
    name: Option<String>,
}

fn parse_search_page(body: &str) -> Result<SearchPage, String> {
    serde_json::from_str(body).map_err(|e| format!("not a page of search results: {e}"))
}

impl CtGovClient {
    /// Run one query (`params` as [`crate::model::QuerySpec::params`] gives them) to its last
    /// page, or stop at the first page when it matches more than `max_matches` trials. `name`
    /// names the query in errors. Fails whole if any page fails: a partial membership would
    /// look like exits.
    pub async fn search(
        &self,
        name: &str,
        params: &[(String, String)],
        max_matches: usize,
    ) -> Result<SearchOutcome, FetchError> {
        let subject = format!("query {name}");
        let page_size = SEARCH_PAGE_SIZE.to_string();
        let max_pages = max_matches.max(1).div_ceil(SEARCH_PAGE_SIZE) + 2;
        let mut hits: Vec<SearchHit> = Vec::new();
        let mut seen: HashSet<NctId> = HashSet::new();
        let mut seen_tokens: HashSet<String> = HashSet::new();
        let mut token: Option<String> = None;
        for page in 1.. {
            let mut q: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            q.push(("fields", SEARCH_FIELDS));
            q.push(("pageSize", &page_size));
            match &token {
                None => q.push(("countTotal", "true")),
                Some(t) => q.push(("pageToken", t.as_str())),
            }
            let url = self.url("/studies", &q)?;
            let answer = self
                .get(&url, &subject, false, &parse_search_page)
                .await?
                .ok_or_else(|| no_answer(&url, &subject))?;
            if let Some(total) = answer.total_count
                && total as usize > max_matches
            {
                return Ok(SearchOutcome::TooBroad {
                    total: total as usize,
                });
            }
            for s in answer.studies {
                let p = s.protocol;
                let Some(nct) = p
                    .identification
                    .nct_id
                    .as_deref()
                    .and_then(|n| n.trim().parse::<NctId>().ok())
                else {
                    warn!(
                        query = name,
                        page, "CT.gov listed a study without a readable nctId; skipped"
                    );
                    continue;
                };
                if !seen.insert(nct.clone()) {
                    continue;
                }
                if hits.len() >= max_matches {
                    return Ok(SearchOutcome::TooBroad {
                        total: hits.len() + 1,
                    });
                }
                hits.push(SearchHit {
                    nct_id: nct,
                    title: p.identification.brief_title,
                    status: p.status.overall_status,
                    phase: (!p.design.phases.is_empty()).then(|| p.design.phases.join(", ")),
                    sponsor: p.sponsors.lead.name,
                    first_submitted: p.status.first_submit,
                });
            }
            match answer.next_page_token.filter(|t| !t.is_empty()) {
                None => break,
                Some(next) if !seen_tokens.insert(next.clone()) || page >= max_pages => {
                    return Err(FetchError::BadBody {
                        subject,
                        url: url.to_string(),
                        detail: format!(
                            "paging did not end: page {page} still has a nextPageToken ({next}) \
                             that was already followed or goes past the {max_pages} pages \
                             {max_matches} matches can take"
                        ),
                    });
                }
                Some(next) => token = Some(next),
            }
        }
        Ok(SearchOutcome::Complete(hits))
    }
}
