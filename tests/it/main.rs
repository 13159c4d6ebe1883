//! The one integration-test binary: every black-box test of trialwatch, one module per area,
//! all sharing one copy of the test support (`tests/support/`: the fake CT.gov server, the
//! webhook receiver, the SMTP server harness, the test environment and the daemon harness).
//!
//! Run one area with `cargo test --test it alerts::`, one test with its name.
// The shared test support is `pub` so that every crate including it can use it; in one crate
// some of it is unused, which `unreachable_pub` would flag.
#![allow(unreachable_pub)]

#[path = "../support/mod.rs"]
mod support;

mod alerts;
mod backfill;
mod bad_studies;
mod chat;
mod color;
mod conventions;
mod crash;
mod ctgov_client;
mod daemon;
mod damaged_store;
mod deadlines;
mod full_disk;
mod golden;
mod habits;
mod health;
mod hostile_ctgov;
mod input;
mod layers;
mod malloc;
mod network;
mod normalize_fixtures;
mod normalize_props;
mod notify;
mod private_store;
mod publish;
mod queries;
mod read_costs;
mod reads;
mod shell;
mod silent_edits;
mod sync;
mod updated_since;
mod web;
