//! Golden test against a real mirror page: NCT02985775 synced from the fake CT.gov server with
//! the clock at the page's `last_seen_at` must render byte for byte as the page.

// The shared helpers under tests/support/ are `pub` so that any test crate including them
// can use them; inside one crate they are not reachable from outside.
#![allow(unreachable_pub)]

#[path = "support/env.rs"]
mod env;
#[path = "support/fake_ctgov.rs"]
mod fake_ctgov;

use env::{TestEnv, fixture, fixtures_dir};

const NOW: &str = "2026-05-12T06:28:15.685Z";

#[test]
fn mirror_page_matches_byte_for_byte() {
    let page = std::fs::read_to_string(fixtures_dir().join("mirror/NCT02985775.md")).unwrap();
    let footer = page
        .trim_end()
        .lines()
        .last()
        .unwrap()
        .trim_matches('*')
        .to_string();
    let mirror = format!(
        "[mirror]\ncanonical_base = \"https://parkinsonspathways.com/agent/trials\"\nfooter_note = {footer:?}\n"
    );
    let env = TestEnv::with_config(&["NCT02985775"], "", &mirror);
    env.server.put_study(fixture("NCT02985775.json"));
    let sync = env
        .cmd(&["sync"])
        .env("TRIALWATCH_NOW", NOW)
        .output()
        .unwrap();
    assert!(
        sync.status.success(),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    let show = env
        .cmd(&["show", "NCT02985775", "--format", "markdown"])
        .env("TRIALWATCH_NOW", NOW)
        .output()
        .unwrap();
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let got = String::from_utf8(show.stdout).unwrap();
    if got != page {
        for (i, (a, b)) in got.lines().zip(page.lines()).enumerate() {
            assert_eq!(a, b, "first difference at line {}", i + 1);
        }
        assert_eq!(
            got.len(),
            page.len(),
            "same lines but different length/ending"
        );
    }
}

/// Outside the 30-day window the first-import changes are no longer "recent".
#[test]
fn recent_changes_window_moves_with_the_clock() {
    let env = TestEnv::new(&["NCT02985775"]);
    env.server.put_study(fixture("NCT02985775.json"));
    let sync = env
        .cmd(&["sync"])
        .env("TRIALWATCH_NOW", NOW)
        .output()
        .unwrap();
    assert!(sync.status.success());
    let later = env
        .cmd(&["show", "NCT02985775"])
        .env("TRIALWATCH_NOW", "2026-07-01T00:00:00Z")
        .output()
        .unwrap();
    let text = String::from_utf8(later.stdout).unwrap();
    assert!(
        text.contains("## Recent Field Changes (last 30 days)"),
        "{text}"
    );
    assert!(!text.contains("— added _(2026-05-12)_"), "{text}");
}
