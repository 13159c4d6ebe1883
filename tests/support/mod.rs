//! Test support shared by the integration tests (`tests/it/`) and the benchmarks (`benches/`):
//! real servers on 127.0.0.1 and helpers to drive the real `trialwatch` binary. Nothing here is
//! a mock. See README.md beside this file.
//!
//! Included once per crate:
//! `#[path = "../support/mod.rs"] mod support;` from `tests/it/main.rs`,
//! `#[path = "../tests/support/mod.rs"] mod support;` from `benches/*.rs`.
#![allow(dead_code)]

// Studies in the registry's size mix and disk usage, for the benchmarks.
pub mod bench;
// `trialwatch daemon` as a child process: start, signal, stop, wait for it.
pub mod daemon;
// A temporary data directory and config pointing at a fake CT.gov, and fixture helpers.
pub mod env;
// The fake ClinicalTrials.gov API v2 server (its own tests are in `fake_ctgov/tests.rs`).
pub mod fake_ctgov;
// An HTTP proxy that records what passes, and an HTTPS server with an untrusted certificate.
pub mod net;
// Python's feedparser and headless chromium for the publishing tests (skip or fail in CI).
pub mod publish_tools;
// A real SMTP server (aiosmtpd, `smtp_server.py`) as a child process, and the test CA.
pub mod smtp_server;
// CT.gov's website HTML for Markdown texts, and API v2 studies as record-history versions.
pub mod website_html;
// A real webhook receiver (axum) that records, verifies signatures and answers from a script.
pub mod webhook_receiver;

// A free TCP port on 127.0.0.1 (bound, then released), for a server that must start later.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
