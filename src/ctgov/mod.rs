//! The ClinicalTrials.gov API v2 client and the wire types of its JSON.
//!
//! - `client`: [`CtGovClient`], every request trialwatch sends to CT.gov (batches, paging,
//!   aliases, retries, incremental queries) and what it hands back ([`StudyOutcome`]).
//! - `error`: [`FetchError`], why a request failed and whether a retry may help.
//! - `limiter`: the one rate limiter all requests share.
//! - `search`: running a watched query to its last page, or reporting it too broad.
//! - `wire`: the serde types of CT.gov's JSON (the study, list pages, history versions, and the
//!   ID-only view the client reads).
//!
//! Nothing here knows about the store or the normalized record.

pub mod client;
mod error;
pub mod history;
mod http;
mod limiter;
mod page;
pub mod search;
pub mod wire;

pub use client::{
    CtGovClient, FetchError, FetchedStudy, MAX_BATCH_SIZE, MAX_RETRY_AFTER, StudyOutcome,
    USER_AGENT,
};
