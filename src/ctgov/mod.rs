//! The ClinicalTrials.gov API v2 client (`client`) and the wire types of its study JSON (`wire`).
//! Nothing here knows about the store or the normalized record.

pub mod client;
pub mod wire;

pub use client::{CtGovClient, FetchError, FetchedStudy, StudyOutcome};
