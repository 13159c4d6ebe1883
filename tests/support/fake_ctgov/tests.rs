//! The fake server's own CT.gov semantics, checked with a plain HTTP client (no trialwatch code),
//! so every test and benchmark that uses [`FakeCtGov`] can rely on them. Compiled only into the
//! test binary (`#[cfg(test)]`), not into the benchmarks that include the support module.

use serde_json::Value;

use super::super::env::fixture;
use super::{FakeCtGov, Fault};

fn nct(n: u32) -> String {
    format!("NCT{n:08}")
}

/// A real study whose body lists `aliases` in `identificationModule.nctIdAliases`.
fn with_aliases(raw: &str, aliases: &[&str]) -> String {
    let mut v: Value = serde_json::from_str(raw).unwrap();
    v["protocolSection"]["identificationModule"]["nctIdAliases"] = serde_json::json!(aliases);
    serde_json::to_string(&v).unwrap()
}

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
    let (status, ctype, body) = get(&server, "/api/v2/studies?filter.ids=NCT00000001,XYZ").await;
    assert_eq!(status, 400);
    assert!(ctype.starts_with("text/plain"));
    assert_eq!(
        body,
        "Item 2 in parameter `filter.ids` has incorrect format"
    );
    // A search parameter the fake does not implement is refused, not ignored.
    assert_eq!(
        get(&server, "/api/v2/studies?query.outc=survival").await.0,
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
    let bad = "filter.advanced=AREA%5BLastUpdatePostDate%5DRANGE%5B2024-01-15";
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

/// A real study with its status, enrollment and primary outcomes set, for history versions.
fn version_of(raw: &str, status: &str, enrollment: u64, outcome: Option<&str>) -> String {
    let mut v: Value = serde_json::from_str(raw).unwrap();
    let ps = &mut v["protocolSection"];
    ps["statusModule"]["overallStatus"] = serde_json::json!(status);
    ps["designModule"]["enrollmentInfo"]["count"] = serde_json::json!(enrollment);
    if let Some(m) = outcome {
        ps["outcomesModule"]["primaryOutcomes"][0]["measure"] = serde_json::json!(m);
    }
    serde_json::to_string(&v).unwrap()
}

#[tokio::test]
async fn history_index_and_versions_are_built_from_the_studies() {
    let server = FakeCtGov::start();
    let raw = fixture("NCT03418623.json");
    let v0 = version_of(&raw, "NOT_YET_RECRUITING", 100, Some("Old measure"));
    let v1 = version_of(&raw, "RECRUITING", 100, Some("Old measure"));
    let v2 = version_of(&raw, "RECRUITING", 150, None);
    let id = server.put_history(
        "nct3418623",
        vec![
            ("2019-03-10", v0.clone()),
            ("2019-03-11", v1),
            ("2019-03-12", v2.clone()),
        ],
    );
    assert_eq!(id, "NCT03418623");
    let index = get_json(&server, "/api/int/studies/NCT03418623/history").await;
    let changes = index["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[0]["version"], 0);
    assert_eq!(changes[0]["date"], "2019-03-10");
    assert_eq!(changes[0]["status"], "NOT_YET_RECRUITING");
    assert_eq!(changes[0]["moduleLabels"], serde_json::json!([]));
    assert_eq!(changes[1]["status"], "RECRUITING");
    assert_eq!(
        changes[1]["moduleLabels"],
        serde_json::json!(["Study Status"])
    );
    assert_eq!(
        changes[2]["moduleLabels"],
        serde_json::json!(["Study Design", "Outcome Measures"])
    );
    // Primary outcomes changed at version 2 and differ from version 0's.
    assert_eq!(index["lastUpdateVersions"]["primaryOutcomes"], 2);
    assert_eq!(
        index["originalData"]["primaryOutcomes"][0]["measure"],
        "Old measure"
    );
    assert!(index["originalData"].get("primaryOutcomesSame").is_none());

    let body = get_json(&server, "/api/int/studies/NCT03418623/history/2").await;
    assert_eq!(body["studyVersion"], 2);
    let want: Value = serde_json::from_str(&v2).unwrap();
    assert_eq!(body["study"], want);
    let (status, ctype, text) = get(&server, "/api/int/studies/NCT03418623/history/3").await;
    assert_eq!(
        (status, text.as_str()),
        (404, "Version 3 of study NCT03418623 not found")
    );
    assert!(ctype.starts_with("text/plain"));

    // Same primary outcomes first and last: `primaryOutcomesSame`, last change 0.
    server.put_history(
        "NCT03418623",
        vec![("2019-03-10", v0.clone()), ("2019-03-11", v0)],
    );
    let index = get_json(&server, "/api/int/studies/NCT03418623/history").await;
    assert_eq!(index["originalData"]["primaryOutcomesSame"], true);
    assert_eq!(index["lastUpdateVersions"]["primaryOutcomes"], 0);
    assert_eq!(index["changes"][1]["moduleLabels"], serde_json::json!([]));
}

#[tokio::test]
async fn unknown_histories_are_404_and_odd_indexes_are_served_as_is() {
    let server = FakeCtGov::start();
    server.put_study(fixture("NCT03418623.json"));
    let (status, ctype, body) = get(&server, "/api/int/studies/NCT03418623/history").await;
    assert_eq!(
        (status, body.as_str()),
        (404, "Study NCT03418623 not found")
    );
    assert!(ctype.starts_with("text/plain"));
    assert_eq!(
        get(&server, "/api/int/studies/NCT03418623/history/0")
            .await
            .0,
        404
    );
    assert_eq!(
        get(&server, "/api/int/studies/NCT03418623/other").await.0,
        404
    );
    for odd in ["{}", r#"{"changes":[]}"#, r#"{"changes":null}"#] {
        server.put_history_index_raw("NCT03418623", odd);
        let (status, ctype, body) = get(&server, "/api/int/studies/NCT03418623/history").await;
        assert_eq!(
            (status, ctype.as_str(), body.as_str()),
            (200, "application/json", odd)
        );
    }
    assert!(server.remove_history("NCT03418623"));
    assert_eq!(
        get(&server, "/api/int/studies/NCT03418623/history").await.0,
        404
    );
}

#[tokio::test]
async fn faults_apply_to_the_history_routes() {
    let server = FakeCtGov::start();
    let raw = fixture("NCT03418623.json");
    server.put_history("NCT03418623", vec![("2019-03-10", raw)]);
    server.push_fault_for("/history/0", Fault::Status(403, "Forbidden".into()));
    server.push_fault_for(
        "/history",
        Fault::TooManyRequests {
            retry_after_secs: Some(7),
        },
    );
    let (status, _, body) = get(&server, "/api/int/studies/NCT03418623/history").await;
    assert_eq!(status, 429, "{body}");
    let (status, _, body) = get(&server, "/api/int/studies/NCT03418623/history/0").await;
    assert_eq!((status, body.as_str()), (403, "Forbidden"));
    assert_eq!(server.pending_faults(), 0);
    server.push_fault_for(
        "/history/0",
        Fault::Delay(std::time::Duration::from_millis(300)),
    );
    let t0 = std::time::Instant::now();
    let body = get_json(&server, "/api/int/studies/NCT03418623/history/0").await;
    assert!(t0.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(body["studyVersion"], 0);
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.contains("/history"))
            .count(),
        3
    );
}

/// The search the query watcher relies on: word matches per area, status and advanced filters,
/// `fields` projections, `countTotal` and CT.gov's 400 texts for bad parameters.
#[tokio::test]
async fn searches_match_words_filters_and_project_fields() {
    let server = FakeCtGov::start();
    server.put_study(fixture("NCT02985775.json")); // CMV Infection, China, PHASE1/PHASE2
    server.put_study(fixture("NCT03418623.json")); // Alcohol Use Disorder, US, PHASE2
    server.put_study(fixture("NCT02513394.json")); // Breast Cancer, PHASE3
    let ids = |q: &'static str| {
        let server = &server;
        async move { page_ids(&get_json(server, &format!("/api/v2/studies?{q}")).await) }
    };
    assert_eq!(ids("query.cond=cmv%20INFECTION").await, ["NCT02985775"]);
    assert_eq!(ids("query.locn=china").await, ["NCT02985775"]);
    assert!(ids("query.cond=cmv&query.locn=spain").await.is_empty());
    assert_eq!(ids("query.term=alcohol").await, ["NCT03418623"]);
    assert_eq!(
        ids("filter.advanced=AREA%5BPhase%5DPHASE2").await,
        ["NCT02985775", "NCT03418623"]
    );
    assert_eq!(
        ids("filter.advanced=(AREA%5BPhase%5DPHASE3%20OR%20AREA%5BPhase%5DPHASE1)%20AND%20AREA%5BStudyType%5DINTERVENTIONAL").await,
        ["NCT02513394", "NCT02985775"]
    );
    assert_eq!(
        ids("filter.overallStatus=ACTIVE_NOT_RECRUITING,RECRUITING").await,
        ["NCT02513394"]
    );
    assert_eq!(
        ids("filter.advanced=AREA%5BStudyFirstSubmitDate%5DRANGE%5B2018-01-01,MAX%5D").await,
        ["NCT03418623"]
    );
    let page = get_json(
        &server,
        "/api/v2/studies?query.cond=cmv&fields=NCTId,BriefTitle,OverallStatus,Phase,LeadSponsorName&countTotal=true",
    )
    .await;
    assert_eq!(page["totalCount"], 1);
    let p = &page["studies"][0]["protocolSection"];
    assert_eq!(p["identificationModule"]["nctId"], "NCT02985775");
    assert!(p["identificationModule"]["briefTitle"].is_string());
    assert!(p["eligibilityModule"].is_null(), "not projected: {p}");
    assert_eq!(
        p["designModule"]["phases"],
        serde_json::json!(["PHASE1", "PHASE2"])
    );
    for (q, want) in [
        (
            "filter.overallStatus=RECRUTING",
            "Invalid value in parameter `filter.overallStatus`: `RECRUTING`",
        ),
        (
            "query.cond=cmv&fields=NCTId,Bogus",
            "Parameter `fields` contains invalid field name: 'Bogus'",
        ),
        (
            "filter.advanced=AREA%5BPhase",
            "Error parsing query in parameter `filter.advanced`",
        ),
    ] {
        let (status, ctype, body) = get(&server, &format!("/api/v2/studies?{q}")).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(ctype.starts_with("text/plain"));
        assert!(body.starts_with(want), "{q}: {body}");
    }
}
