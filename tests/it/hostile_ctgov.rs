//! Black-box tests of `trialwatch sync` against a CT.gov that misbehaves on purpose: a gzip bomb,
//! paging that never ends, a redirect to another host. Each fails only its own batch, with a
//! message that says what happened, and the sync exits 2 with the other trials synced.

use std::process::Command;

use crate::support::env::{BIN, TestEnv, fixture, stderr, stdout};
use crate::support::fake_ctgov::{FakeCtGov, Fault};

const BAD: &str = "NCT03418623";
const GOOD: &str = "NCT06171568";

/// Two watched trials in batches of one, so a fault for `BAD` fails exactly one batch.
fn env() -> TestEnv {
    let env = TestEnv::with_config(&[BAD, GOOD], "batch_size = 1\n", "");
    env.server.put_study(fixture("NCT03418623.json"));
    env.server.put_study(fixture("NCT06171568.json"));
    env
}

/// The `failed:` lines of a sync's output.
fn failed_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("failed:")).collect()
}

/// The GOOD trial was stored: `show` finds it.
fn assert_synced(env: &TestEnv, id: &str) {
    let out = env.run(&["show", id]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A ~13.5 MB gzip answer that inflates to 2 GiB fails its batch at the default 64 MB limit,
/// with the limit named, while the binary's peak RSS stays under 200 MB.
#[test]
fn a_gzip_bomb_fails_its_batch_and_memory_stays_bounded() {
    let env = env();
    env.server.push_fault_for(BAD, Fault::GzipBomb);

    let time = std::path::Path::new("/usr/bin/time");
    let out = if time.exists() {
        let mut c = Command::new(time);
        c.args(["-f", "peak-rss-kb=%M", BIN, "--config"])
            .arg(&env.config)
            .arg("sync")
            .env_remove("RUST_LOG")
            .env_remove("TRIALWATCH_NOW");
        c.output().unwrap()
    } else {
        eprintln!("note: /usr/bin/time is absent; the peak RSS is not checked");
        env.run(&["sync"])
    };

    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}\n{}", stderr(&out));
    let failed = failed_lines(&text);
    assert_eq!(failed.len(), 1, "{text}");
    assert!(
        failed[0].contains(BAD) && !failed[0].contains(GOOD),
        "{text}"
    );
    assert!(
        failed[0].contains(
            "the answer is larger than 64 MB, the limit `[ctgov] max_body_mb`; raise it if \
             CT.gov really sends that much"
        ),
        "{text}"
    );
    assert_eq!(env.server.pending_faults(), 0);
    if time.exists() {
        let err = stderr(&out);
        let kb: u64 = err
            .lines()
            .filter_map(|l| l.strip_prefix("peak-rss-kb="))
            .next_back()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time in: {err}"));
        eprintln!("peak RSS of `trialwatch sync` against a gzip bomb: {kb} KB");
        assert!(kb < 200 * 1024, "peak RSS {kb} KB >= 200 MB");
    }
    assert_synced(&env, GOOD);
}

/// Paging that never ends fails its batch, naming the trial, instead of hanging the sync.
#[test]
fn paging_that_never_ends_fails_its_batch() {
    let env = env();
    for _ in 0..20 {
        env.server.push_fault_for(BAD, Fault::EndlessPages);
    }

    let out = env.run(&["sync"]);

    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}\n{}", stderr(&out));
    let failed = failed_lines(&text);
    assert_eq!(failed.len(), 1, "{text}");
    assert!(failed[0].contains(BAD), "{text}");
    assert!(failed[0].contains("paging did not end"), "{text}");
    let pages = env
        .server
        .requests()
        .iter()
        .filter(|r| r.contains(BAD))
        .count();
    assert_eq!(pages, 3, "{:#?}", env.server.requests());
    assert_synced(&env, GOOD);
}

/// A redirect to another host is not followed: that host hears nothing and the batch fails.
#[test]
fn a_redirect_to_another_host_fails_its_batch_unfollowed() {
    let env = env();
    let other = FakeCtGov::start();
    other.put_study(fixture("NCT03418623.json"));
    let target = format!("{}/api/v2/studies/{BAD}", other.base_url());
    env.server
        .push_fault_for(BAD, Fault::RedirectTo(target.clone()));

    let out = env.run(&["sync"]);

    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}\n{}", stderr(&out));
    let failed = failed_lines(&text);
    assert_eq!(failed.len(), 1, "{text}");
    assert!(failed[0].contains(BAD), "{text}");
    assert!(
        failed[0].contains("CT.gov redirected to another host") && failed[0].contains(&target),
        "{text}"
    );
    assert!(other.requests().is_empty(), "{:?}", other.requests());
    assert_synced(&env, GOOD);
}
