//! The daemon's incremental query ("which watched trials has CT.gov updated since…") with a
//! broken study in its answer: the query still answers, the broken study counts as changed
//! (so the sync fetches it and fails it alone, as `bad_studies` shows for batches), and one
//! whose ID cannot be read makes only its own batch count as changed.

use std::time::Duration;

use serde_json::json;
use trialwatch::config::CtgovConfig;
use trialwatch::ctgov::client::CtGovClient;
use trialwatch::model::NctId;

use crate::support::env::{edit, fixture_as};
use crate::support::fake_ctgov::FakeCtGov;

fn study(id: &str, updated: &str, f: impl FnOnce(&mut serde_json::Value)) -> String {
    edit(&fixture_as("NCT03418623.json", id), |p| {
        p["statusModule"]["lastUpdatePostDateStruct"]["date"] = json!(updated);
        f(p);
    })
}

#[tokio::test]
async fn a_broken_study_in_the_updated_since_answer_fails_alone() {
    let server = FakeCtGov::start();
    let ids = [
        "NCT83000001",
        "NCT83000002",
        "NCT83000003",
        "NCT83000004",
        "NCT83000005",
    ];
    server.put_study(study(ids[0], "2020-05-01", |_| {}));
    // A number where text belongs: broken, but its ID can be read.
    server.put_study(study(ids[1], "2025-05-01", |p| {
        p["identificationModule"]["briefTitle"] = json!(5);
    }));
    server.put_study(study(ids[2], "2020-05-01", |_| {}));
    // No identificationModule: which trial it is cannot be told.
    server.put_study_bytes_updated(
        ids[3],
        r#"{"protocolSection":{"statusModule":{"overallStatus":"RECRUITING"}}}"#,
        "2025-05-01",
    );
    server.put_study(study(ids[4], "2025-05-01", |_| {}));
    let client = CtGovClient::new(CtgovConfig {
        base_url: server.base_url(),
        requests_per_minute: 0,
        batch_size: 2,
        timeout: Duration::from_secs(5),
        max_attempts: 2,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(40),
        max_body_mb: 64,
    })
    .unwrap();
    let asked: Vec<NctId> = ids.iter().map(|s| s.parse().unwrap()).collect();
    let since = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();

    let mut changed = client
        .fetch_updated_since(&asked, since)
        .await
        .expect("one broken study must not fail the whole query");
    changed.sort();

    // Not ids[0]: its batch's broken study named itself.
    let expect: Vec<NctId> = ids[1..].iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(changed, expect);
}
