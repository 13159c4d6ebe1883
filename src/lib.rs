//! trialwatch: watches ClinicalTrials.gov studies and reports field-level changes.
//!
//! Data flows one way:
//! schedule -> [`ctgov`] fetch -> [`normalize`] -> [`diff`] against the latest snapshot ->
//! one atomic [`store`] write (snapshot, its changes, the alerts it owes) -> delivery.
//!
//! - [`model`]: types shared by every stage (`NctId`, `Record`, `FieldChange`, …).
//! - [`schema`]: the canonical order of field paths (docs/record.md §2, §4).
//! - [`config`]: TOML file -> validated `Config`.
//! - [`ctgov`]: the CT.gov API v2 client (batching, paging, rate limit, retries) and its wire types.
//! - [`normalize`]: CT.gov study JSON -> normalized `Record`. Pure.
//! - [`diff`]: record x record -> field changes, plus readable text diffs. Pure.
//! - [`severity`]: how much a field change matters (minor / notable / critical), with a summary. Pure.
//! - [`store`]: versioned snapshots in sled; the only module that knows sled.
//! - [`render`]: the Markdown mirror page and terminal output.
//! - [`sync`]: one sync run: fetch, normalize, compare, store.
//! - [`outbox`]: subscriptions, the alerts each new version owes, delivery with retries.
//! - [`notify`]: alert delivery by email (lettre) and signed webhooks (reqwest).
//! - [`daemon`]: the long-running service: schedule, signals, systemd notify, control socket.
//! - [`cli`]: command-line parsing and the commands.

pub mod cli;
pub mod clock;
pub mod config;
pub mod ctgov;
pub mod daemon;
pub mod diff;
pub mod model;
pub mod normalize;
pub mod notify;
pub mod outbox;
pub mod render;
pub mod schema;
pub mod severity;
pub mod store;
pub mod sync;
pub mod util;
