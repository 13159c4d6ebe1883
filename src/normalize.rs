//! STUB
use crate::model::Record;
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct NormalizeError;
pub fn normalize_json(raw: &str) -> Result<Record, NormalizeError> {
    let _ = raw;
    Err(NormalizeError)
}
