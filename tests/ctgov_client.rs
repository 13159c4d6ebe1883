//! Tests of the CT.gov client (`trialwatch::ctgov::client`) against the fake CT.gov server, with
//! real study fixtures: batching and paging, retries and their limits, aliases, 404s, a bad ID in
//! a batch, the rate limit and the User-Agent. The second half checks the fake server's own
//! CT.gov semantics with a plain HTTP client, so other test suites can rely on them.

// The shared helpers under tests/support/ are `pub` so that any test crate including them
// can use them; inside one crate they are not reachable from outside.
#![allow(unreachable_pub)]

#[path = "support/fake_ctgov.rs"]
mod fake_ctgov;

use std::time::{Duration, Instant};

use fake_ctgov::{FakeCtGov, Fault, filter_ids_of};
use tokio::sync::mpsc;
use trialwatch::config::CtgovConfig as ClientConfig;
use trialwatch::ctgov::client::{CtGovClient, FetchError, StudyOutcome, USER_AGENT};
use trialwatch::model::NctId;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ctgov");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

/// The real NCT03418623 record under another NCT number, to make many distinct studies.
fn synthetic(n: u32) -> String {
    let raw = fixture("NCT03418623.json");
    let out = raw.replacen(
        "\"nctId\": \"NCT03418623\"",
        &format!("\"nctId\": \"{}\"", nct(n)),
        1,
    );
    assert_ne!(out, raw, "fixture layout changed");
    out
}

/// A real study whose body lists `aliases` in `identificationModule.nctIdAliases`.
fn with_aliases(raw: &str, aliases: &[&str]) -> String {
    let mut v: serde_json::Value = serde_json::from_str(raw).unwrap();
    v["protocolSection"]["identificationModule"]["nctIdAliases"] = serde_json::json!(aliases);
    serde_json::to_string(&v).unwrap()
}

fn nct(n: u32) -> String {
    format!("NCT{n:08}")
}

fn id(s: &str) -> NctId {
    s.parse().unwrap()
}

/// Fast settings: no rate limit, 10 ms backoff base, 4 attempts.
fn config(server: &FakeCtGov) -> ClientConfig {
    ClientConfig {
        base_url: server.base_url(),
        requests_per_minute: 0,
        batch_size: 10,
        timeout: Duration::from_secs(5),
        max_attempts: 4,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(40),
    }
}

fn client(cfg: ClientConfig) -> CtGovClient {
    CtGovClient::new(cfg).unwrap()
}

/// Runs `fetch_many` and collects what it delivers, batch by batch.
async fn fetch_batches(client: &CtGovClient, ids: &[String]) -> Vec<Vec<StudyOutcome>> {
    let (tx, mut rx) = mpsc::channel(1);
    let ids: Vec<NctId> = ids.iter().map(|s| id(s)).collect();
    let c = client.clone();
    let task = tokio::spawn(async move { c.fetch_many(ids, tx).await });
    let mut batches = Vec::new();
    while let Some(batch) = rx.recv().await {
        batches.push(batch);
    }
    task.await.unwrap();
    batches
}

async fn fetch_all(client: &CtGovClient, ids: &[String]) -> Vec<StudyOutcome> {
    fetch_batches(client, ids)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn found_ids(outcomes: &[StudyOutcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            StudyOutcome::Found(s) => Some(s.requested.to_string()),
            _ => None,
        })
        .collect()
}

fn put_synthetic(server: &FakeCtGov, range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    server.put_studies(range.map(synthetic))
}

// ---------------------------------------------------------------------------------------------
// Batching and paging
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn twenty_five_ids_in_batches_of_ten_take_exactly_three_requests() {
    let server = FakeCtGov::start();
    let ids = put_synthetic(&server, 1..=25);
    let client = client(config(&server));
    let mut asked = ids.clone();
    asked.extend(ids[..5].iter().cloned()); // duplicates are fetched once

    let batches = fetch_batches(&client, &asked).await;

    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        [10, 10, 5]
    );
    let outcomes: Vec<StudyOutcome> = batches.into_iter().flatten().collect();
    assert_eq!(found_ids(&outcomes), ids);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    assert_eq!(client.request_count(), 3);
    let sizes: Vec<usize> = reqs.iter().map(|r| filter_ids_of(r).len()).collect();
    assert_eq!(sizes, [10, 10, 5]);
    for r in &reqs {
        assert!(r.starts_with("/api/v2/studies?"), "{r}");
    }
    // Each study's bytes are exactly what the server stored.
    let StudyOutcome::Found(s) = &outcomes[7] else {
        panic!("not found: {:?}", outcomes[7]);
    };
    assert_eq!(s.raw.get(), synthetic(8).trim());
    assert_eq!(s.nct_id, s.requested);
}

#[tokio::test]
async fn pages_smaller_than_the_batch_are_followed_to_the_last_token() {
    let server = FakeCtGov::start();
    let ids = put_synthetic(&server, 101..=110);
    server.set_max_page_size(4);
    let client = client(config(&server));

    let outcomes = fetch_all(&client, &ids).await;

    assert_eq!(found_ids(&outcomes), ids);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    assert!(!reqs[0].contains("pageToken"));
    for later in &reqs[1..] {
        assert!(later.contains("pageToken="), "{later}");
        assert_eq!(filter_ids_of(later), ids, "later pages repeat the query");
    }
}

#[tokio::test]
async fn an_empty_page_that_carries_a_token_is_not_the_end() {
    let server = FakeCtGov::start();
    let ids = put_synthetic(&server, 201..=205);
    server.push_fault(Fault::EmptyPage);
    let client = client(config(&server));

    let outcomes = fetch_all(&client, &ids).await;

    assert_eq!(found_ids(&outcomes), ids);
    assert_eq!(server.requests().len(), 2);
    assert_eq!(server.pending_faults(), 0);
}

#[tokio::test]
async fn full_fixtures_of_every_size_come_back_byte_for_byte() {
    let server = FakeCtGov::start();
    let names = [
        "NCT02552212.json",
        "NCT02513394.json", // 1.5 MB, 437 sites
        "NCT03064438.json",
        "NCT00973089.json",
    ];
    let ids = server.put_studies(names.iter().map(|n| fixture(n)));
    let client = client(config(&server));

    let outcomes = fetch_all(&client, &ids).await;

    assert_eq!(outcomes.len(), names.len());
    for (o, name) in outcomes.iter().zip(names) {
        let StudyOutcome::Found(s) = o else {
            panic!("{name}: {o:?}");
        };
        assert_eq!(s.raw.get(), fixture(name).trim(), "{name}");
    }
    let single = client
        .fetch_study(&id("NCT02552212"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(single.raw.get(), fixture("NCT02552212.json").trim());
}

// ---------------------------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_429_waits_out_retry_after_then_succeeds() {
    let server = FakeCtGov::start();
    server.put_study(fixture("NCT03418623.json"));
    server.push_fault(Fault::TooManyRequests {
        retry_after_secs: Some(1),
    });
    let client = client(config(&server));

    let started = Instant::now();
    let study = client.fetch_study(&id("NCT03418623")).await.unwrap();

    assert!(study.is_some());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}, before Retry-After",
        started.elapsed()
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_until_an_answer_comes() {
    let server = FakeCtGov::start();
    let ids = put_synthetic(&server, 301..=303);
    server.push_fault(Fault::ServerError);
    server.push_fault(Fault::ServerError);
    let client = client(config(&server));

    let outcomes = fetch_all(&client, &ids).await;

    assert_eq!(found_ids(&outcomes), ids);
    assert_eq!(server.requests().len(), 3);
    assert_eq!(client.request_count(), 3);
}

#[tokio::test]
async fn html_and_truncated_bodies_are_retried_as_transient() {
    let server = FakeCtGov::start();
    let ids = put_synthetic(&server, 401..=403);
    server.put_study(fixture("NCT02552212.json"));
    server.push_fault(Fault::Html);
    server.push_fault(Fault::Truncated);
    let client = client(config(&server));

    let outcomes = fetch_all(&client, &ids).await;
    assert_eq!(found_ids(&outcomes), ids);
    assert_eq!(server.requests().len(), 3);

    server.push_fault(Fault::Truncated);
    server.push_fault(Fault::Html);
    let study = client
        .fetch_study(&id("NCT02552212"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(study.raw.get(), fixture("NCT02552212.json").trim());
    assert_eq!(server.requests().len(), 6);
}

#[tokio::test]
async fn a_wrong_json_shape_is_retried_as_transient() {
    let server = FakeCtGov::start();
    let ids = put_synthetic(&server, 451..=452);
    server.push_fault(Fault::Status(200, r#"{"error":"maintenance"}"#.to_string()));
    let client = client(config(&server));

    let outcomes = fetch_all(&client, &ids).await;

    assert_eq!(found_ids(&outcomes), ids);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_retried() {
    let server = FakeCtGov::start();
    let ids = put_synthetic(&server, 501..=502);
    server.push_fault(Fault::Delay(Duration::from_secs(3)));
    let client = client(ClientConfig {
        timeout: Duration::from_millis(300),
        ..config(&server)
    });

    let started = Instant::now();
    let outcomes = fetch_all(&client, &ids).await;

    assert_eq!(found_ids(&outcomes), ids);
    assert_eq!(server.requests().len(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "did not time out"
    );
}

#[tokio::test]
async fn a_408_is_retried() {
    let server = FakeCtGov::start();
    server.put_study(fixture("NCT03418623.json"));
    server.push_fault(Fault::Status(408, "Request Timeout".to_string()));
    let client = client(config(&server));

    assert!(
        client
            .fetch_study(&id("NCT03418623"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn persistent_server_errors_fail_the_whole_batch_naming_its_trials() {
    let server = FakeCtGov::start();
    let ids = put_synthetic(&server, 601..=603);
    for _ in 0..4 {
        server.push_fault(Fault::ServerError);
    }
    let client = client(config(&server));

    let outcomes = fetch_all(&client, &ids).await;

    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    let StudyOutcome::Failed { ids: failed, error } = &outcomes[0] else {
        panic!("{:?}", outcomes[0]);
    };
    assert_eq!(failed.iter().map(NctId::to_string).collect::<Vec<_>>(), ids);
    assert!(error.is_transient());
    assert_eq!(error.status(), Some(500));
    assert_eq!(error.body(), Some("Internal Server Error"));
    let msg = error.to_string();
    for nct in &ids {
        assert!(msg.contains(nct.as_str()), "{msg}");
    }
    assert!(msg.contains("after 4 attempts"), "{msg}");
    assert!(matches!(error, FetchError::GaveUp { attempts: 4, .. }));
    assert_eq!(server.requests().len(), 4);
}

/// Guards "never a partial result treated as real": the first page's studies must not be
/// reported Found when a later page of the same batch fails.
#[tokio::test]
async fn a_failing_later_page_fails_the_batch_without_partial_results() {
    let server = FakeCtGov::start();
    let ids = put_synthetic(&server, 701..=705);
    server.set_max_page_size(2);
    for _ in 0..4 {
        server.push_fault_for("pageToken=", Fault::ServerError);
    }
    let client = client(config(&server));

    let outcomes = fetch_all(&client, &ids).await;

    assert!(found_ids(&outcomes).is_empty(), "{outcomes:?}");
    let failed: Vec<&NctId> = outcomes.iter().flat_map(StudyOutcome::ids).collect();
    assert_eq!(failed.len(), 5);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, StudyOutcome::Failed { .. }))
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_failure() {
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = client(ClientConfig {
        base_url: format!("http://127.0.0.1:{port}"),
        requests_per_minute: 0,
        max_attempts: 2,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(10),
        ..ClientConfig::default()
    });

    let err = client.fetch_study(&id("NCT03418623")).await.unwrap_err();

    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("NCT03418623"), "{err}");
    assert_eq!(client.request_count(), 2);
}

// ---------------------------------------------------------------------------------------------
// Missing studies, aliases, rejected IDs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_id_is_not_found_after_one_single_lookup() {
    let server = FakeCtGov::start();
    let mut ids = put_synthetic(&server, 801..=802);
    ids.push(nct(899));
    let client = client(config(&server));

    let outcomes = fetch_all(&client, &ids).await;

    assert_eq!(found_ids(&outcomes), ids[..2]);
    assert!(matches!(&outcomes[2], StudyOutcome::NotFound(n) if n.as_str() == nct(899)));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_eq!(reqs[1], format!("/api/v2/studies/{}", nct(899)));
    assert!(client.fetch_study(&id(&nct(899))).await.unwrap().is_none());
}

#[tokio::test]
async fn an_alias_listed_in_the_body_is_matched_without_extra_requests() {
    let server = FakeCtGov::start();
    server.put_study(with_aliases(&fixture("NCT00763412.json"), &["NCT00536757"]));
    let ids = vec!["NCT00536757".to_string(), "NCT00763412".to_string()];
    let client = client(config(&server));

    let outcomes = fetch_all(&client, &ids).await;

    assert_eq!(found_ids(&outcomes), ids);
    let StudyOutcome::Found(alias) = &outcomes[0] else {
        panic!("{:?}", outcomes[0]);
    };
    assert_eq!(alias.requested.as_str(), "NCT00536757");
    assert_eq!(alias.nct_id.as_str(), "NCT00763412");
    assert!(alias.is_alias());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn an_alias_is_resolved_through_ctgovs_redirect() {
    let server = FakeCtGov::start();
    server.put_study(fixture("NCT03418623.json"));
    // Known to CT.gov but not listed in the stored body: only the 301 tells.
    server.add_alias("NCT00000042", "NCT03418623");
    let client = client(config(&server));

    let outcomes = fetch_all(&client, &["NCT00000042".to_string()]).await;

    let [StudyOutcome::Found(s)] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert_eq!(s.requested.as_str(), "NCT00000042");
    assert_eq!(s.nct_id.as_str(), "NCT03418623");
    assert_eq!(
        server.requests()[1..],
        [
            "/api/v2/studies/NCT00000042".to_string(),
            "/api/v2/studies/NCT03418623".to_string()
        ]
    );
}

#[tokio::test]
async fn a_rejected_id_in_a_batch_fails_alone_with_ctgovs_message() {
    let server = FakeCtGov::start();
    let ids = put_synthetic(&server, 901..=910);
    server.reject_id(&ids[6]);
    let client = client(config(&server));

    let outcomes = fetch_all(&client, &ids).await;

    let mut good = ids.clone();
    let bad = good.remove(6);
    assert_eq!(found_ids(&outcomes), good);
    let failed: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            StudyOutcome::Failed { ids, error } => Some((ids, error)),
            _ => None,
        })
        .collect();
    let [(failed_ids, error)] = failed.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert_eq!(failed_ids.len(), 1);
    assert_eq!(failed_ids[0].as_str(), bad);
    assert_eq!(error.status(), Some(400));
    assert_eq!(
        error.body(),
        Some("Item 1 in parameter `filter.ids` has incorrect format")
    );
    assert!(!error.is_transient());
    assert!(error.to_string().contains(&bad), "{error}");
    // Halving isolates it in O(log n) requests, not one per trial.
    let n = server.requests().len();
    assert!((3..=9).contains(&n), "{n} requests");
}

#[tokio::test]
async fn a_single_rejected_id_keeps_ctgovs_text() {
    let server = FakeCtGov::start();
    server.reject_id("NCT00000077");
    let client = client(config(&server));

    let err = client.fetch_study(&id("NCT00000077")).await.unwrap_err();

    assert_eq!(err.status(), Some(400));
    assert_eq!(err.body(), Some("Parameter `nctId` has incorrect format"));
    assert!(!err.is_transient());
    assert_eq!(server.requests().len(), 1, "a 400 is not retried");
}

// ---------------------------------------------------------------------------------------------
// Rate limit, headers, version, settings
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn six_hundred_per_minute_spreads_six_requests_over_half_a_second() {
    let server = FakeCtGov::start();
    server.put_study(fixture("NCT03418623.json"));
    let client = client(ClientConfig {
        requests_per_minute: 600,
        ..config(&server)
    });

    let started = Instant::now();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.fetch_study(&id("NCT03418623")).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_some());
    }

    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(490), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(server.requests().len(), 6);
}

#[tokio::test]
async fn every_request_names_trialwatch_in_the_user_agent() {
    let server = FakeCtGov::start();
    server.put_study(fixture("NCT03418623.json"));
    let client = client(config(&server));

    client.fetch_study(&id("NCT03418623")).await.unwrap();
    client.data_timestamp().await.unwrap();

    let recorded = server.recorded();
    assert_eq!(recorded.len(), 2);
    for r in recorded {
        assert_eq!(r.user_agent.as_deref(), Some(USER_AGENT));
    }
    assert!(USER_AGENT.starts_with(concat!(
        "trialwatch/",
        env!("CARGO_PKG_VERSION"),
        " (+https://"
    )));
}

#[tokio::test]
async fn data_timestamp_reads_the_version_endpoint() {
    let server = FakeCtGov::start();
    let client = client(config(&server));
    assert_eq!(
        client.data_timestamp().await.unwrap(),
        "2026-09-04T09:00:06"
    );
    server.set_data_timestamp("2026-09-05T09:00:04");
    assert_eq!(
        client.data_timestamp().await.unwrap(),
        "2026-09-05T09:00:04"
    );
    assert_eq!(server.requests(), ["/api/v2/version", "/api/v2/version"]);
}

#[test]
fn unusable_settings_are_refused_with_a_hint() {
    let bad = [
        ClientConfig {
            batch_size: 0,
            ..ClientConfig::default()
        },
        ClientConfig {
            batch_size: 1001,
            ..ClientConfig::default()
        },
        ClientConfig {
            max_attempts: 0,
            ..ClientConfig::default()
        },
        ClientConfig {
            base_url: "clinicaltrials.gov".into(),
            ..ClientConfig::default()
        },
    ];
    for cfg in bad {
        let err = CtGovClient::new(cfg.clone()).unwrap_err();
        assert!(matches!(err, FetchError::Config(_)), "{cfg:?}");
        assert!(!err.is_transient());
    }
    assert!(CtGovClient::new(ClientConfig::default()).is_ok());
}

#[tokio::test]
async fn fetch_many_stops_when_the_receiver_is_gone() {
    let server = FakeCtGov::start();
    let ids = put_synthetic(&server, 1001..=1030);
    let client = client(config(&server));
    let (tx, mut rx) = mpsc::channel(1);
    let ids: Vec<NctId> = ids.iter().map(|s| id(s)).collect();
    let c = client.clone();
    let task = tokio::spawn(async move { c.fetch_many(ids, tx).await });
    assert_eq!(rx.recv().await.unwrap().len(), 10);
    drop(rx);
    task.await.unwrap();
    assert!(server.requests().len() <= 2);
}

// ---------------------------------------------------------------------------------------------
// The fake server's own CT.gov semantics (plain HTTP, no trialwatch code)
// ---------------------------------------------------------------------------------------------

mod fake_server {
    use super::*;
    use serde_json::Value;

    fn tiny(n: u32, last_update: &str) -> String {
        format!(
            r#"{{"protocolSection":{{"identificationModule":{{"nctId":"{}"}},"statusModule":{{"lastUpdatePostDateStruct":{{"date":"{last_update}"}}}}}}}}"#,
            nct(n)
        )
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    async fn get(server: &FakeCtGov, path: &str) -> (u16, String, String) {
        let resp = http()
            .get(format!("{}{path}", server.base_url()))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ctype, resp.text().await.unwrap())
    }

    async fn get_json(server: &FakeCtGov, path: &str) -> Value {
        let (status, _, body) = get(server, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn page_ids(page: &Value) -> Vec<String> {
        page["studies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["protocolSection"]["identificationModule"]["nctId"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn single_study_ids_follow_ctgov_2_0_5_rules() {
        let server = FakeCtGov::start();
        server.put_study(fixture("NCT03418623.json"));
        for path in ["NCT03418623", "nct3418623", "NcT0003418623"] {
            let (status, ctype, body) = get(&server, &format!("/api/v2/studies/{path}")).await;
            assert_eq!(
                (status, ctype.as_str()),
                (200, "application/json"),
                "{path}"
            );
            assert_eq!(body, fixture("NCT03418623.json").trim());
        }
        for bad in ["NCT0", "XYZ03418623", "NCT123456789", "NCT03418623x"] {
            let (status, ctype, body) = get(&server, &format!("/api/v2/studies/{bad}")).await;
            assert_eq!(status, 400, "{bad}");
            assert!(ctype.starts_with("text/plain"));
            assert_eq!(body, "Parameter `nctId` has incorrect format");
        }
        let (status, ctype, body) = get(&server, "/api/v2/studies/NCT09999999").await;
        assert_eq!(
            (status, body.as_str()),
            (404, "NCT number NCT09999999 not found")
        );
        assert!(ctype.starts_with("text/plain"));
        assert_eq!(get(&server, "/api/v2/nothing").await.0, 404);
        assert_eq!(
            get(&server, "/api/v2/studies/NCT03418623?fields=NCTId")
                .await
                .0,
            400
        );
    }

    #[tokio::test]
    async fn an_alias_redirects_to_the_canonical_study() {
        let server = FakeCtGov::start();
        server.put_study(with_aliases(&fixture("NCT03418623.json"), &["NCT00000011"]));
        server.add_alias("NCT00000012", "NCT03418623");
        for alias in ["NCT00000011", "nct12"] {
            let resp = http()
                .get(format!("{}/api/v2/studies/{alias}", server.base_url()))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 301, "{alias}");
            assert_eq!(
                resp.headers()["location"].to_str().unwrap(),
                format!("{}/api/v2/studies/NCT03418623", server.base_url())
            );
        }
        let page = get_json(
            &server,
            "/api/v2/studies?filter.ids=NCT00000011,NCT00000012",
        )
        .await;
        assert_eq!(page_ids(&page), ["NCT03418623"]);
        assert!(server.remove_study("NCT03418623"));
        assert_eq!(get(&server, "/api/v2/studies/NCT00000011").await.0, 404);
    }

    #[tokio::test]
    async fn list_paging_follows_ctgov_rules() {
        let server = FakeCtGov::start();
        server.put_studies((1..=25).map(|n| tiny(n, "2024-01-01")));

        // Default page size 10 (also for 0), totalCount on the first page only.
        let first = get_json(&server, "/api/v2/studies?countTotal=true&pageSize=0").await;
        assert_eq!(page_ids(&first).len(), 10);
        assert_eq!(first["totalCount"], 25);
        let token = first["nextPageToken"].as_str().unwrap().to_string();
        assert!(token.len() >= 20);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let second = get_json(
            &server,
            &format!("/api/v2/studies?countTotal=true&pageToken={token}"),
        )
        .await;
        assert_eq!(page_ids(&second)[0], nct(11));
        assert!(second.get("totalCount").is_none());
        let t2 = second["nextPageToken"].as_str().unwrap();
        let last = get_json(
            &server,
            &format!("/api/v2/studies?pageToken={t2}&pageSize=50"),
        )
        .await;
        assert_eq!(page_ids(&last).len(), 5);
        assert!(last.get("nextPageToken").is_none());

        // Later pages must repeat the first request's filters.
        let f = get_json(
            &server,
            "/api/v2/studies?filter.ids=NCT00000001|NCT00000002&pageSize=1",
        )
        .await;
        let t = f["nextPageToken"].as_str().unwrap();
        let (status, _, _) = get(
            &server,
            &format!("/api/v2/studies?pageToken={t}&pageSize=1"),
        )
        .await;
        assert_eq!(status, 400);
        let ok = get_json(
            &server,
            &format!("/api/v2/studies?filter.ids=NCT00000001|NCT00000002&pageToken={t}"),
        )
        .await;
        assert_eq!(page_ids(&ok), [nct(2)]);
        assert_eq!(
            get(&server, "/api/v2/studies?pageToken=nonsense").await.0,
            400
        );
    }

    #[tokio::test]
    async fn page_size_is_cut_to_a_thousand() {
        let server = FakeCtGov::start();
        server.put_studies((1..=1001).map(|n| tiny(n, "2024-01-01")));
        let page = get_json(&server, "/api/v2/studies?pageSize=5000").await;
        assert_eq!(page_ids(&page).len(), 1000);
        assert!(page["nextPageToken"].is_string());
    }

    #[tokio::test]
    async fn filter_ids_matches_loosely_and_rejects_malformed_items() {
        let server = FakeCtGov::start();
        server.put_studies((1..=5).map(|n| tiny(n, "2024-01-01")));
        let page = get_json(
            &server,
            "/api/v2/studies?filter.ids=nct3,NCT00000001%7CNCT00000099",
        )
        .await;
        assert_eq!(page_ids(&page), [nct(1), nct(3)]);
        let (status, ctype, body) =
            get(&server, "/api/v2/studies?filter.ids=NCT00000001,XYZ").await;
        assert_eq!(status, 400);
        assert!(ctype.starts_with("text/plain"));
        assert_eq!(
            body,
            "Item 2 in parameter `filter.ids` has incorrect format"
        );
        assert_eq!(
            get(&server, "/api/v2/studies?query.cond=melanoma").await.0,
            400
        );
    }

    #[tokio::test]
    async fn last_update_range_filters_with_or_without_ids() {
        let server = FakeCtGov::start();
        server.put_study(tiny(1, "2023-12-31"));
        server.put_study(tiny(2, "2024-01-15"));
        server.put_study(tiny(3, "2024-03-01"));
        let range = "filter.advanced=AREA%5BLastUpdatePostDate%5DRANGE%5B2024-01-15,MAX%5D";
        let page = get_json(&server, &format!("/api/v2/studies?{range}")).await;
        assert_eq!(page_ids(&page), [nct(2), nct(3)]);
        let page = get_json(
            &server,
            &format!("/api/v2/studies?{range}&filter.ids=NCT00000001,NCT00000003"),
        )
        .await;
        assert_eq!(page_ids(&page), [nct(3)]);
        let bad = "filter.advanced=AREA%5BPhase%5DPHASE3";
        assert_eq!(get(&server, &format!("/api/v2/studies?{bad}")).await.0, 400);
    }

    #[tokio::test]
    async fn faults_are_consumed_in_order_by_matching_requests() {
        let server = FakeCtGov::start();
        server.put_study(tiny(1, "2024-01-01"));
        server.push_fault_for("NCT00000002", Fault::ServerError);
        server.push_fault(Fault::EmptyPage); // list requests only
        server.push_fault(Fault::TooManyRequests {
            retry_after_secs: Some(7),
        });
        server.push_fault(Fault::Html);

        let resp = http()
            .get(format!("{}/api/v2/studies/NCT00000001", server.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 429);
        assert_eq!(resp.headers()["retry-after"], "7");
        let (status, ctype, _) = get(&server, "/api/v2/version").await;
        assert_eq!((status, ctype.as_str()), (200, "text/html; charset=utf-8"));
        let empty = get_json(&server, "/api/v2/studies?filter.ids=NCT00000001").await;
        assert_eq!(page_ids(&empty).len(), 0);
        let t = empty["nextPageToken"].as_str().unwrap();
        let real = get_json(
            &server,
            &format!("/api/v2/studies?filter.ids=NCT00000001&pageToken={t}"),
        )
        .await;
        assert_eq!(page_ids(&real), [nct(1)]);
        assert_eq!(get(&server, "/api/v2/studies/NCT00000002").await.0, 500);
        assert_eq!(server.pending_faults(), 0);

        server.push_fault(Fault::Truncated);
        let (status, _, body) = get(&server, "/api/v2/studies/NCT00000001").await;
        assert_eq!(status, 200);
        assert_eq!(body.len(), tiny(1, "2024-01-01").len() / 2);
        assert_eq!(server.requests().len(), 6);
        server.clear_requests();
        assert!(server.requests().is_empty());
    }
}
