//! STUB (replaced by the ctgov branch).
#![allow(dead_code, unused_variables)]
use crate::model::NctId;
use std::time::Duration;
pub struct ClientConfig {
    pub base_url: String,
    pub requests_per_minute: u32,
    pub batch_size: usize,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}
#[derive(Clone)]
pub struct CtGovClient;
pub struct FetchedStudy {
    pub requested: NctId,
    pub nct_id: NctId,
    pub raw: Box<serde_json::value::RawValue>,
}
pub enum StudyOutcome {
    Found(FetchedStudy),
    NotFound(NctId),
    Failed { ids: Vec<NctId>, error: FetchError },
}
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct FetchError;
impl CtGovClient {
    pub fn new(cfg: ClientConfig) -> Result<Self, FetchError> {
        Ok(CtGovClient)
    }
    pub async fn fetch_many(
        &self,
        ids: Vec<NctId>,
        tx: tokio::sync::mpsc::Sender<Vec<StudyOutcome>>,
    ) {
    }
    pub fn request_count(&self) -> u64 {
        0
    }
}
