//! Tests of the CT.gov client (`trialwatch::ctgov::client`) against the fake CT.gov server, with
//! real study fixtures: batching and paging, retries and their limits, aliases, 404s, a bad ID in
//! a batch, the rate limit and the User-Agent. The fake server's own CT.gov semantics are
//! checked beside it, in `tests/support/fake_ctgov/tests.rs`.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use trialwatch::config::CtgovConfig as ClientConfig;
use trialwatch::ctgov::client::{CtGovClient, FetchError, StudyOutcome, USER_AGENT};
use trialwatch::model::NctId;

use crate::support::fake_ctgov::{FakeCtGov, Fault, filter_ids_of};

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
        max_body_mb: 64,
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
        max_body_mb: 64,
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
// Hostile answers: bodies past `max_body_mb`, paging that never ends, redirects elsewhere
// ---------------------------------------------------------------------------------------------

/// A gzip body is capped on its decoded size while it streams in: ~13.5 MB that would inflate to
/// 2 GiB stop at 16 MiB decoded (more than the compressed size, so only counting decoded bytes
/// explains the stop) with the limit's name in the message, and are not retried.
#[tokio::test]
async fn a_gzip_bomb_stops_at_the_decoded_limit_and_is_not_retried() {
    let server = FakeCtGov::start();
    server.push_fault(Fault::GzipBomb);
    let client = client(ClientConfig {
        max_body_mb: 16,
        ..config(&server)
    });

    let started = Instant::now();
    let err = client.data_timestamp().await.unwrap_err();

    assert!(
        matches!(err, FetchError::TooLarge { limit_mb: 16, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(
            "the answer is larger than 16 MB, the limit `[ctgov] max_body_mb`; raise it if CT.gov \
             really sends that much"
        ),
        "{msg}"
    );
    assert!(!err.is_transient());
    assert_eq!(client.request_count(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// An uncompressed answer is capped too: a 1.5 MB study does not fit a 1 MiB limit, and fits
/// the default one.
#[tokio::test]
async fn a_plain_body_past_the_limit_fails_its_batch() {
    let server = FakeCtGov::start();
    let big = server.put_study(fixture("NCT02513394.json")); // 1.5 MB
    let small = client(ClientConfig {
        max_body_mb: 1,
        ..config(&server)
    });

    let outcomes = fetch_all(&small, std::slice::from_ref(&big)).await;

    let [StudyOutcome::Failed { ids, error }] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert_eq!(ids.len(), 1);
    assert!(
        matches!(error, FetchError::TooLarge { limit_mb: 1, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&big), "{error}");

    let roomy = client(config(&server));
    let outcomes = fetch_all(&roomy, std::slice::from_ref(&big)).await;
    assert_eq!(found_ids(&outcomes), [big]);
}

/// A `nextPageToken` seen before fails the batch at once, naming its trials.
#[tokio::test]
async fn a_repeated_page_token_fails_the_batch() {
    let server = FakeCtGov::start();
    let ids = put_synthetic(&server, 801..=803);
    for _ in 0..10 {
        server.push_fault(Fault::SameNextToken);
    }
    let client = client(config(&server));

    let outcomes = fetch_all(&client, &ids).await;

    let [StudyOutcome::Failed { ids: failed, error }] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert_eq!(failed.len(), 3);
    let msg = error.to_string();
    assert!(msg.contains("round in circles"), "{msg}");
    assert!(msg.contains("tw-same-token"), "{msg}");
    for id in &ids {
        assert!(msg.contains(id.as_str()), "{msg}");
    }
    assert_eq!(server.requests().len(), 2, "{:#?}", server.requests());
}

/// Paging that never ends (a new token each time, no studies) stops after ⌈ids / pageSize⌉ + 2
/// pages, naming the trials.
#[tokio::test]
async fn paging_that_never_ends_fails_the_batch_after_a_few_pages() {
    let server = FakeCtGov::start();
    let ids = put_synthetic(&server, 811..=815);
    for _ in 0..50 {
        server.push_fault(Fault::EndlessPages);
    }
    let client = client(config(&server));

    let outcomes = fetch_all(&client, &ids).await;

    let [StudyOutcome::Failed { ids: failed, error }] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert_eq!(failed.len(), 5);
    let msg = error.to_string();
    assert!(
        msg.contains("paging did not end: 3 pages for 5 IDs"),
        "{msg}"
    );
    for id in &ids {
        assert!(msg.contains(id.as_str()), "{msg}");
    }
    assert_eq!(server.requests().len(), 3, "{:#?}", server.requests());
    assert_eq!(server.pending_faults(), 47);
}

/// The updated-since query is bounded the same way.
#[tokio::test]
async fn updated_since_paging_that_never_ends_fails() {
    let server = FakeCtGov::start();
    let ids = put_synthetic(&server, 821..=822);
    for _ in 0..50 {
        server.push_fault(Fault::EndlessPages);
    }
    let client = client(config(&server));
    let asked: Vec<NctId> = ids.iter().map(|s| id(s)).collect();
    let since = chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();

    let err = client.fetch_updated_since(&asked, since).await.unwrap_err();

    assert!(err.to_string().contains("paging did not end"), "{err}");
    assert_eq!(server.requests().len(), 3);
}

/// A redirect to another origin is not followed: the other host gets no request and the error
/// says so (and is not retried).
#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed() {
    let server = FakeCtGov::start();
    let other = FakeCtGov::start();
    let target = format!("{}/api/v2/version", other.base_url());
    server.push_fault(Fault::RedirectTo(target.clone()));
    let client = client(config(&server));

    let err = client.data_timestamp().await.unwrap_err();

    assert!(
        matches!(&err, FetchError::Redirected { status: 302, location, .. } if *location == target),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("CT.gov redirected to another host"), "{msg}");
    assert!(
        msg.contains(&target) && msg.contains("not followed"),
        "{msg}"
    );
    assert!(other.requests().is_empty(), "{:?}", other.requests());
    assert_eq!(client.request_count(), 1);
    assert_eq!(server.requests().len(), 1);
}

/// A redirect within `base_url`'s own origin is followed (CT.gov's 301 for an alias is one).
#[tokio::test]
async fn a_redirect_within_the_same_origin_is_followed() {
    let server = FakeCtGov::start();
    server.push_fault(Fault::RedirectTo(format!(
        "{}/api/v2/version",
        server.base_url()
    )));
    let client = client(config(&server));

    let stamp = client.data_timestamp().await.unwrap();

    assert_eq!(stamp, "2026-09-04T09:00:06");
    assert_eq!(server.requests().len(), 2);
}
