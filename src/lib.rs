//! trialwatch: watches ClinicalTrials.gov studies and reports field-level changes.
//!
//! Data flows one way: schedule → [`ctgov`] fetch → [`normalize`] → [`diff`] against the latest
//! snapshot → one atomic [`store`] write (snapshot, its changes, the alerts it owes) →
//! [`outbox`] delivery through [`notify`]. `ARCHITECTURE.md` tells the whole story.
//!
//! The layers, bottom first. A module imports only modules above it in this list (the test
//! `tests/it/layers.rs` checks it), so there is no import circle:
//!
//! | layer | modules | job |
//! |---|---|---|
//! | plain data and helpers | [`model`], [`schema`], [`util`], [`clock`] | types that cross modules, the field-path table, small shared helpers, "now"; they import nothing of the crate |
//! | settings | [`config`] | TOML file → validated `Config`, one file per section |
//! | fetch | [`ctgov`] | the CT.gov API v2 client (batching, paging, rate limit, retries) and its wire types |
//! | pure transforms | [`normalize`], [`diff`], [`render`], [`severity`], [`deadlines`] | study JSON → `Record`; record × record → changes; text for people; how much a change matters; which deadlines (results, verification, status) a record says are due |
//! | storage | [`store`] | versioned snapshots: the only module that knows sled |
//! | delivery | [`notify`], [`outbox`] | email and webhook wire formats; who hears what, retries, the one delivery entry point |
//! | history | [`backfill`] | CT.gov's record history put into a trial's timeline |
//! | one run | [`sync`] | fetch → decide → plan alerts → one commit per batch |
//! | publishing | [`publish`] | the static export's pure pieces (Atom feeds, index, change tables) and its only-if-changed atomic file writer |
//! | web view | [`web`] | the read-only website: list, trial pages with plots and diffs, feeds, `/api/` |
//! | processes | [`daemon`], [`cli`] | the long-running service; the commands |

pub mod backfill;
pub mod cli;
pub mod clock;
pub mod config;
pub mod ctgov;
pub mod daemon;
pub mod deadlines;
pub mod diff;
pub mod model;
pub mod normalize;
pub mod notify;
pub mod outbox;
pub mod publish;
pub mod render;
pub mod schema;
pub mod severity;
pub mod store;
pub mod sync;
pub mod util;
pub mod web;
