//! Black-box tests of `trialwatch sync` against a CT.gov that sends broken studies: one study
//! of a batch without its IDs, with text where numbers belong, not UTF-8, or cut off; another
//! trial's study for the one asked for; a study whose modules all vanished at once. Each time
//! only the broken study's trial fails, with a message naming it and what was wrong, the others
//! are stored, and the sync exits 2.

use serde_json::{Value, json};

use crate::support::env::{TestEnv, edit, fixture, stderr, stdout};
use crate::support::webhook_receiver::WebhookReceiver;

const A: &str = "NCT03418623";
const BAD: &str = "NCT06171568";
const C: &str = "NCT00973089";

/// The `failed:` lines of a sync's output.
fn failed_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("failed:")).collect()
}

/// How many versions `history` lists for `id`; 0 when it has none stored yet.
fn history_len(env: &TestEnv, id: &str) -> usize {
    let out = env.run(&["history", id, "--json"]);
    if !out.status.success() {
        let err = stderr(&out);
        assert!(
            err.contains("no stored version") || err.contains("is not in the store"),
            "{err}"
        );
        return 0;
    }
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    v.as_array().map_or(0, Vec::len)
}

/// Watches A, BAD and C in one batch, serves `bad` for BAD, syncs, and checks that only BAD
/// failed, with `expect` in its message, and that A and C were stored.
fn only_the_bad_study_fails(bad: impl Into<Vec<u8>>, expect: &str) {
    let env = TestEnv::new(&[A, BAD, C]);
    env.server.put_study(fixture(&format!("{A}.json")));
    env.server.put_study(fixture(&format!("{C}.json")));
    env.server.put_study_bytes(BAD, bad);

    let out = env.run(&["sync"]);

    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}\n{}", stderr(&out));
    let failed = failed_lines(&text);
    assert_eq!(failed.len(), 1, "{text}");
    assert!(failed[0].contains(BAD), "{text}");
    assert!(failed[0].contains(expect), "{text}");
    for id in [A, C] {
        assert_eq!(history_len(&env, id), 1, "{id}: {text}");
    }
    assert_eq!(history_len(&env, BAD), 0, "{text}");
}

fn bad_fixture() -> String {
    fixture(&format!("{BAD}.json"))
}

fn edited_study(f: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(&bad_fixture()).unwrap();
    f(&mut v);
    v.to_string()
}

#[test]
fn a_study_without_protocol_section_fails_alone() {
    let body = edited_study(|v| {
        v.as_object_mut().unwrap().remove("protocolSection");
    });
    only_the_bad_study_fails(body, "no protocolSection.identificationModule");
}

#[test]
fn a_study_without_identification_module_fails_alone() {
    let body = edited_study(|v| {
        v["protocolSection"]
            .as_object_mut()
            .unwrap()
            .remove("identificationModule");
    });
    only_the_bad_study_fails(body, "no protocolSection.identificationModule");
}

#[test]
fn a_null_identification_module_fails_alone() {
    let body = edited_study(|v| v["protocolSection"]["identificationModule"] = Value::Null);
    only_the_bad_study_fails(body, "no protocolSection.identificationModule");
}

#[test]
fn a_number_for_the_brief_title_fails_alone() {
    let body = edit(&bad_fixture(), |p| {
        p["identificationModule"]["briefTitle"] = json!(5);
    });
    only_the_bad_study_fails(body, "could not be normalized");
}

#[test]
fn a_number_for_the_aliases_fails_alone_by_its_nct_id() {
    let body = edit(&bad_fixture(), |p| {
        p["identificationModule"]["nctIdAliases"] = json!(5);
    });
    only_the_bad_study_fails(body, &format!("(nctId {BAD}) cannot be read"));
}

#[test]
fn an_nct_id_that_is_no_nct_id_fails_alone() {
    let body = bad_fixture().replace(BAD, "NCT123");
    only_the_bad_study_fails(body, "nctId is not usable");
}

#[test]
fn invalid_utf8_in_one_study_fails_alone() {
    let raw = bad_fixture();
    let at = raw
        .find("\"briefTitle\": \"")
        .or_else(|| raw.find("\"briefTitle\":\""));
    let at = at.expect("fixture has a briefTitle") + "\"briefTitle\":".len() + 2;
    let mut bytes = raw.into_bytes();
    bytes.splice(at..at, [0xff, 0xfe]);
    only_the_bad_study_fails(bytes, "not UTF-8");
}

#[test]
fn a_cut_off_study_fails_alone() {
    let raw = bad_fixture();
    let cut = raw.len() / 2;
    let body = raw.get(..cut).map(str::to_string).unwrap_or(raw);
    only_the_bad_study_fails(body, "not a complete page of studies");
}

/// CT.gov answering an ID with another trial's study (which does not list it as an alias) is
/// an error for that trial: nothing new is stored for it.
#[test]
fn another_trials_study_is_not_stored_as_the_asked_one() {
    let env = TestEnv::new(&[A, C]);
    env.server.put_study(fixture(&format!("{A}.json")));
    env.server.put_study(fixture(&format!("{C}.json")));
    env.ok(&["sync"]);
    // Both the batch and the single GET for A now answer with BAD's study.
    env.server.put_study_bytes(A, bad_fixture());

    let out = env.run(&["sync"]);

    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}\n{}", stderr(&out));
    let failed = failed_lines(&text);
    assert_eq!(failed.len(), 1, "{text}");
    assert!(failed[0].contains(A) && failed[0].contains(BAD), "{text}");
    assert!(failed[0].contains("nctIdAliases"), "{text}");
    assert_eq!(history_len(&env, A), 1, "{text}");
    assert_eq!(history_len(&env, C), 1, "{text}");
    assert_eq!(history_len(&env, BAD), 0, "{text}");
}

/// A study whose modules all turned `null` at once (but its identification) is refused as
/// malformed: the trial keeps its versions and no alert is owed.
#[test]
fn a_study_whose_modules_all_vanished_is_refused() {
    let env = TestEnv::new(&[A]);
    let sink = WebhookReceiver::start();
    env.ok(&["subscribe", "webhook", &sink.url("/all")]);
    let raw = fixture(&format!("{A}.json"));
    env.server.put_study(raw.clone());
    env.ok(&["sync"]);
    let outbox_before = env.json(&["outbox", "--json"]);

    let hollow = edit(&raw, |p| {
        for (k, m) in p.as_object_mut().unwrap().iter_mut() {
            if k != "identificationModule" {
                *m = Value::Null;
            }
        }
    });
    env.server.put_study_bytes(A, hollow);
    let out = env.run(&["sync"]);

    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}\n{}", stderr(&out));
    let failed = failed_lines(&text);
    assert_eq!(failed.len(), 1, "{text}");
    assert!(
        failed[0].contains(A) && failed[0].contains("hollow"),
        "{text}"
    );
    assert_eq!(history_len(&env, A), 1, "{text}");
    assert_eq!(env.json(&["outbox", "--json"]), outbox_before, "{text}");
}
