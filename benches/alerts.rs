//! Alert benchmarks (figures in BENCHMARKS.md, "Alerts"). Run: `cargo bench --bench alerts`.
//!
//! 1. Enqueue: the store phase of a sync that changes 1,000 trials (`BENCH_ALERT_TRIALS`) with
//!    100 subscriptions (`BENCH_ALERT_SUBS`): diff, severity, matching and the atomic write
//!    (one per batch of 100 trials, as in a sync) that holds the versions and their alerts, timed against the same phase with no
//!    subscriptions. Records are normalized beforehand: fetching and normalizing are the sync's
//!    other phases, benchmarked in `benches/sync.rs`.
//! 2. Delivery: 10,000 pending alerts (100 trials x 100 webhook subscriptions) delivered by one
//!    `deliver_due` run to the local webhook receiver (HTTP/1.1 on 127.0.0.1, answering 200),
//!    with the default concurrency (8 subscribers at once) and with 1. The time includes
//!    expanding the versions' fan-out records into per-alert entries.
//!
//! `BENCH_ALERT_PROFILE=1` instead prints where enqueue time goes (matching vs. raw sled).
// The shared test support is `pub` so that every crate including it can use it; in one crate
// some of it is unused, which `unreachable_pub` would flag.
#![allow(unreachable_pub)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use trialwatch::config::AlertsConfig;
use trialwatch::model::{
    DigestMode, FieldPattern, NctId, Origin, Record, Severity, Subscription, Target, WatchedFields,
};
use trialwatch::notify::Notifier;
use trialwatch::outbox::{EnqueuePlan, Subscriptions, deliver_due};
use trialwatch::store::{NewVersion, Store};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Trial `i` as normalized records before and after a status, enrollment and date edit.
fn trial_pair(template: &str, i: usize) -> (NctId, String, Record, String, Record) {
    let id = format!("NCT7{i:07}");
    let raw1 = template.replace("NCT03418623", &id);
    let mut v: Value = serde_json::from_str(&raw1).unwrap();
    let p = &mut v["protocolSection"];
    p["statusModule"]["overallStatus"] = json!(if i.is_multiple_of(10) {
        "TERMINATED"
    } else {
        "RECRUITING"
    });
    p["designModule"]["enrollmentInfo"]["count"] = json!(40 + i % 7);
    p["statusModule"]["completionDateStruct"]["date"] = json!("2027-01-31");
    let raw2 = serde_json::to_string(&v).unwrap();
    let r1 = trialwatch::normalize::normalize_json(&raw1).unwrap();
    let r2 = trialwatch::normalize::normalize_json(&raw2).unwrap();
    (id.parse().unwrap(), raw1, r1, raw2, r2)
}

/// One trial's new version for [`commit_batch`]: ID, raw JSON, record, previous record.
type Item<'a> = (&'a NctId, &'a str, &'a Record, Option<&'a Record>);

/// Store one new version of each trial in `items` with one store commit, as a sync does for
/// each fetched batch; returns the alerts enqueued.
fn commit_batch(
    store: &Store,
    items: &[Item<'_>],
    plan: Option<&EnqueuePlan>,
    at: DateTime<Utc>,
) -> usize {
    let canonical: Vec<Vec<u8>> = items
        .iter()
        .map(|(_, _, r, _)| r.canonical_bytes())
        .collect();
    let mut n = 0;
    let versions = items
        .iter()
        .zip(&canonical)
        .map(|((nct, raw, rec, old), canonical)| {
            let changes = trialwatch::diff::diff(*old, rec);
            let alerts = plan
                .map(|p| p.owed(nct, *old, rec, &changes))
                .unwrap_or_default();
            n += alerts.len();
            NewVersion {
                provenance: Default::default(),
                nct,
                record: rec,
                canonical,
                raw: raw.as_bytes(),
                changes,
                detected_at: at,
                resolved_id: None,
                source_fingerprint: None,
                alerts,
            }
        })
        .collect();
    store.commit_versions(versions).unwrap();
    n
}

/// `n` subscriptions in a realistic mix of filters, all webhooks to `url_base/{i}`.
fn subscriptions(n: usize, url_base: &str, ids: &[NctId]) -> Subscriptions {
    let list = (0..n)
        .map(|i| {
            let (nct, fields, min) = match i % 10 {
                0..=3 => (vec![], vec![], Severity::Minor),
                4..=6 => (
                    vec![],
                    vec![FieldPattern::new("status.overallStatus")],
                    Severity::Minor,
                ),
                7..=8 => (
                    vec![],
                    vec![FieldPattern::new("status.*")],
                    Severity::Notable,
                ),
                _ => (
                    ids.iter().skip(i).step_by(n.max(1)).cloned().collect(),
                    vec![],
                    Severity::Minor,
                ),
            };
            Subscription::new(
                Origin::Store,
                Target::Webhook {
                    url: format!("{url_base}/{i}"),
                    secret_file: None,
                },
                nct,
                fields,
                min,
                DigestMode::Immediate,
                None,
            )
        })
        .collect();
    Subscriptions {
        list,
        watched: WatchedFields::default(),
    }
}

fn enqueue_bench(template: &str) {
    let trials = env_usize("BENCH_ALERT_TRIALS", 1000);
    let nsubs = env_usize("BENCH_ALERT_SUBS", 100);
    println!("## enqueue: {trials} changed trials, {nsubs} subscriptions");
    let pairs: Vec<_> = (0..trials).map(|i| trial_pair(template, i)).collect();
    let ids: Vec<NctId> = pairs.iter().map(|p| p.0.clone()).collect();
    let t1: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let t2: DateTime<Utc> = "2026-01-02T00:00:00Z".parse().unwrap();
    for with_subs in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for chunk in pairs.chunks(100) {
            let items: Vec<Item> = chunk
                .iter()
                .map(|(nct, raw1, r1, _, _)| (nct, raw1.as_str(), r1, None))
                .collect();
            commit_batch(&store, &items, None, t1);
        }
        store.flush().unwrap();
        let subs = Arc::new(if with_subs {
            subscriptions(nsubs, "http://127.0.0.1:9/hook", &ids)
        } else {
            Subscriptions::default()
        });
        let t0 = Instant::now();
        let plan = EnqueuePlan::new(subs, &store, t2).unwrap();
        let mut alerts = 0;
        for chunk in pairs.chunks(100) {
            let items: Vec<Item> = chunk
                .iter()
                .map(|(nct, _, r1, raw2, r2)| (nct, raw2.as_str(), r2, Some(r1)))
                .collect();
            alerts += commit_batch(&store, &items, Some(&plan), t2);
        }
        store.flush().unwrap();
        let took = t0.elapsed();
        println!(
            "{}: {} new versions, {alerts} alerts enqueued in {:.3} s (incl. diff, severity, one atomic write per batch of 100, final flush)",
            if with_subs {
                "with subscriptions"
            } else {
                "no subscriptions (baseline)"
            },
            trials,
            took.as_secs_f64()
        );
        if with_subs {
            let t0 = Instant::now();
            let expanded = store.outbox_expand().unwrap();
            println!(
                "  then the first outbox operation expands them into {expanded} per-alert entries in {:.3} s",
                t0.elapsed().as_secs_f64()
            );
            let (pending, _) = store.outbox_counts().unwrap();
            assert_eq!(pending, alerts);
            assert!(store.verify().unwrap().problems.is_empty());
        }
    }
}

fn delivery_bench(template: &str, concurrency: usize) {
    let trials = 100;
    let nsubs = 100;
    let sink = support::webhook_receiver::WebhookReceiver::start();
    sink.set_light(true);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t1: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let t2: DateTime<Utc> = "2026-01-02T00:00:00Z".parse().unwrap();
    // Every subscriber hears about every trial: 100 x 100 alerts.
    let list = (0..nsubs)
        .map(|i| {
            Subscription::new(
                Origin::Store,
                Target::Webhook {
                    url: sink.url(&format!("/{i}")),
                    secret_file: None,
                },
                vec![],
                vec![],
                Severity::Minor,
                DigestMode::Immediate,
                None,
            )
        })
        .collect();
    let subs = Arc::new(Subscriptions {
        list,
        watched: WatchedFields::default(),
    });
    let plan = EnqueuePlan::new(subs.clone(), &store, t2).unwrap();
    let mut alerts = 0;
    for start in (0..trials).step_by(100) {
        let pairs: Vec<_> = (start..trials.min(start + 100))
            .map(|i| trial_pair(template, i))
            .collect();
        let first: Vec<Item> = pairs
            .iter()
            .map(|(nct, raw1, r1, _, _)| (nct, raw1.as_str(), r1, None))
            .collect();
        commit_batch(&store, &first, None, t1);
        let second: Vec<Item> = pairs
            .iter()
            .map(|(nct, _, r1, raw2, r2)| (nct, raw2.as_str(), r2, Some(r1)))
            .collect();
        alerts += commit_batch(&store, &second, Some(&plan), t2);
    }
    store.flush().unwrap();
    assert_eq!(alerts, trials * nsubs);
    let notifier = Notifier::new(None, Duration::from_secs(10)).unwrap();
    let policy = AlertsConfig {
        concurrency,
        ..AlertsConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // deliver_due expands the fan-out records first; that is part of the time measured.
    let t0 = Instant::now();
    let report = rt.block_on(deliver_due(&store, &notifier, &subs, &policy, t2));
    store.flush().unwrap();
    let took = t0.elapsed();
    assert_eq!(report.delivered, alerts, "{report:?}");
    assert_eq!(sink.count(), alerts);
    assert_eq!(store.outbox_counts().unwrap(), (0, 0));
    println!(
        "## delivery (concurrency {concurrency}): {alerts} alerts to the local webhook receiver in {:.3} s = {:.0} alerts/s",
        took.as_secs_f64(),
        alerts as f64 / took.as_secs_f64()
    );
}

/// Where the enqueue time goes (set BENCH_ALERT_PROFILE=1): matching alone, and raw sled
/// batches of the same shape with large and small values.
fn profile(template: &str) {
    let trials = env_usize("BENCH_ALERT_TRIALS", 1000);
    let pairs: Vec<_> = (0..trials).map(|i| trial_pair(template, i)).collect();
    let ids: Vec<NctId> = pairs.iter().map(|p| p.0.clone()).collect();
    let t2: DateTime<Utc> = "2026-01-02T00:00:00Z".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let subs = Arc::new(subscriptions(100, "http://127.0.0.1:9/hook", &ids));
    let plan = EnqueuePlan::new(subs, &store, t2).unwrap();
    let changes: Vec<_> = pairs
        .iter()
        .map(|(_, _, r1, _, r2)| trialwatch::diff::diff(Some(r1), r2))
        .collect();
    let t0 = Instant::now();
    let mut n = 0;
    for ((nct, _, r1, _, r2), c) in pairs.iter().zip(&changes) {
        n += plan.owed(nct, Some(r1), r2, c).len();
    }
    println!(
        "profile: matching only: {n} alerts in {:.3} s",
        t0.elapsed().as_secs_f64()
    );
    for (per, threads) in [(180usize, 1usize), (90, 1), (90, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path())
            .cache_capacity(32 << 20)
            .mode(sled::Mode::LowSpace)
            .flush_every_ms(Some(500))
            .open()
            .unwrap();
        let t0 = Instant::now();
        std::thread::scope(|sc| {
            for th in 0..threads {
                let db = db.clone();
                sc.spawn(move || {
                    for t in (th..trials).step_by(threads) {
                        let mut b = sled::Batch::default();
                        for s in 0..per as u32 {
                            let mut k = format!("dxxxxxxxxsub-{s:010}/NCT7{t:07}").into_bytes();
                            k.extend_from_slice(&2u32.to_be_bytes());
                            b.insert(k, vec![b'x'; 60]);
                        }
                        db.apply_batch(b).unwrap();
                    }
                });
            }
        });
        db.flush().unwrap();
        println!(
            "profile: raw sled, {trials} batches of {per} inserts, {threads} threads: {:.3} s",
            t0.elapsed().as_secs_f64()
        );
    }
}

fn main() {
    if std::env::var_os("BENCH_ALERT_PROFILE").is_some() {
        let template = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/ctgov/NCT03418623.json"),
        )
        .unwrap();
        profile(&template);
        return;
    }
    // `cargo bench` passes `--bench`; nothing to parse.
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ctgov/NCT03418623.json"),
    )
    .unwrap();
    enqueue_bench(&template);
    delivery_bench(&template, AlertsConfig::default().concurrency);
    delivery_bench(&template, 1);
}
