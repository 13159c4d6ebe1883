//! Running the deadline rules ([`crate::deadlines`]) over the watched trials: [`due_now`] lists
//! what holds today (`trialwatch due`), [`evaluate_daily`] turns what changed since the last
//! evaluation into alerts, once a day (the daemon after each scheduled run, `trialwatch sync`
//! after its fetch), in one store write.
//!
//! The rules read the stored raw study of each trial's head version ([`read_raw`]), which
//! also holds `dispFirstSubmitDate` (a certification of delayed submission), not part of the
//! normalized record; so no field is added to the record and no stored trial gets a new version.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::deadlines::{Condition, Facts, Shown, conditions, day_key, read_raw, transitions};
use crate::model::{AlertEvent, NctId, TrialInfo};
use crate::outbox::{EnqueuePlan, Subscriptions};
use crate::store::{Store, StoreError};

/// The meta value holding the last day deadlines were evaluated (`YYYY-MM-DD`, UTC).
const LAST_DAY: &str = "deadlines.last_day";

/// One deadline condition of one trial, for `trialwatch due`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DueRow {
    /// The trial.
    pub nct_id: NctId,
    /// Its title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The condition.
    #[serde(flatten)]
    pub condition: Condition,
}

/// What one daily evaluation did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeadlineRun {
    /// The day evaluated.
    pub day: Option<NaiveDate>,
    /// Trials looked at.
    pub trials: usize,
    /// Events that were new today.
    pub events: usize,
    /// Alerts enqueued for them.
    pub alerts_enqueued: usize,
}

/// The most heads' facts a sync keeps for the evaluation (~0.2 KB each, see [`Packed`]): the
/// speed-up for a watch list of up to this size, bounded memory above it (the rest are read
/// back).
const MAX_HEAD_FACTS: usize = 20_000;

/// What [`read_raw`] said of the raw studies a sync just stored as their trials' heads, so the
/// day's evaluation that follows need not read and decompress them back from the store: on a
/// first sync that was every trial's raw JSON again, on one thread, after the sync. Keyed by
/// the trial's number (`NctId::number`), each kept [`Packed`].
#[derive(Debug, Clone, Default)]
pub struct HeadFacts(HashMap<u32, (u32, Option<Packed>)>);

impl HeadFacts {
    /// Remember `read_raw(raw)` of the `raw` just stored as `version` of `nct`, while fewer
    /// than [`MAX_HEAD_FACTS`] are kept.
    pub fn insert(&mut self, nct: NctId, version: u32, raw: &[u8]) {
        if self.0.len() < MAX_HEAD_FACTS {
            let packed = read_raw(raw).map(|(f, s)| Packed::new(&f, &s));
            self.0.insert(nct.number(), (version, packed));
        }
    }

    /// Add another batch's facts, up to [`MAX_HEAD_FACTS`] in all.
    pub fn extend(&mut self, other: HeadFacts) {
        let room = MAX_HEAD_FACTS.saturating_sub(self.0.len());
        self.0.extend(other.0.into_iter().take(room));
    }

    /// How many trials' facts are known.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `read_raw` of `version` of `nct`, when that is the version remembered.
    fn get(&self, nct: &NctId, version: u32) -> Option<Option<(Facts, Shown)>> {
        self.0
            .get(&nct.number())
            .filter(|(v, _)| *v == version)
            .map(|(_, f)| f.as_ref().map(Packed::unpack))
    }
}

/// One head's [`Facts`] and [`Shown`] in one allocation: their nine optional texts one after
/// another, with where each ends. Kept for up to [`MAX_HEAD_FACTS`] trials at once, where the
/// two structs as they are (nine `Option<String>`s, each its own allocation) held ~0.5 KB
/// each, ~10 MB of a 100,000-trial first sync's peak. Hand-written: a serde format would add a
/// decode step and a dependency for nine strings and three flags.
#[derive(Debug, Clone)]
struct Packed {
    /// The texts, in [`Packed::new`]'s order.
    text: Box<str>,
    /// Where each text ends in `text`; [`Packed::NONE`] for a text that is absent.
    ends: [u32; 9],
    /// `fda_regulated`, `has_results`, `delay_certified`.
    flags: [bool; 3],
}

impl Packed {
    /// The `ends` entry of an absent text.
    const NONE: u32 = u32::MAX;

    fn new(f: &Facts, s: &Shown) -> Packed {
        let texts = [
            &f.status,
            &f.primary_completion,
            &f.primary_completion_type,
            &f.completion,
            &f.verified,
            &s.title,
            &s.status,
            &s.phase,
            &s.sponsor,
        ];
        let mut text = String::with_capacity(
            texts
                .iter()
                .filter_map(|t| t.as_ref())
                .map(String::len)
                .sum(),
        );
        let mut ends = [Self::NONE; 9];
        for (end, t) in ends.iter_mut().zip(texts) {
            if let Some(t) = t {
                text.push_str(t);
                // A text over 4 GB cannot come from a size-capped CT.gov response; saturating
                // keeps it absent rather than wrong.
                *end = u32::try_from(text.len()).unwrap_or(Self::NONE);
            }
        }
        Packed {
            text: text.into_boxed_str(),
            ends,
            flags: [f.fda_regulated, f.has_results, f.delay_certified],
        }
    }

    fn unpack(&self) -> (Facts, Shown) {
        let mut start = 0usize;
        let mut texts = self.ends.iter().map(|&end| {
            if end == Self::NONE {
                return None;
            }
            let end = end as usize;
            let t = self.text.get(start..end).map(str::to_owned);
            start = end;
            t
        });
        let mut next = || texts.next().flatten();
        let facts = Facts {
            status: next(),
            primary_completion: next(),
            primary_completion_type: next(),
            completion: next(),
            verified: next(),
            fda_regulated: self.flags[0],
            has_results: self.flags[1],
            delay_certified: self.flags[2],
        };
        let shown = Shown {
            title: next(),
            status: next(),
            phase: next(),
            sponsor: next(),
        };
        (facts, shown)
    }
}

/// Trials evaluated and committed together by [`evaluate_daily`]: its memory stays that of one
/// chunk whatever the watch list's size (at 100,000 trials one batch of every change and alert
/// held ~230 MB at once).
const TRIALS_PER_COMMIT: usize = 1_000;

/// One followed trial with what its alert shows and the conditions that hold `today`.
type Evaluated = (NctId, Shown, Vec<Condition>);

/// [`Evaluated`] for `nct`, or `None` when the store holds no version of it (or its raw study
/// does not read); `known` spares reading a head a sync just stored.
fn evaluate_one(
    store: &Store,
    nct: NctId,
    today: NaiveDate,
    known: &HeadFacts,
) -> Result<Option<Evaluated>, StoreError> {
    let Some(state) = store.trial(&nct)? else {
        return Ok(None);
    };
    if state.latest_version == 0 {
        return Ok(None);
    }
    let read = match known.get(&nct, state.head()) {
        Some(read) => read,
        None => store.raw(&nct, state.head())?.as_deref().and_then(read_raw),
    };
    let Some((facts, shown)) = read else {
        return Ok(None);
    };
    let now = conditions(&facts, today);
    Ok(Some((nct, shown, now)))
}

/// The trials followed, each with what its alert shows and the conditions that hold `today`;
/// `known` spares reading the heads a sync just stored.
fn evaluate(
    cfg: &Config,
    store: &Store,
    today: NaiveDate,
    known: &HeadFacts,
) -> Result<Vec<Evaluated>, StoreError> {
    let mut out = Vec::new();
    for nct in super::watched_ids(cfg, store)? {
        out.extend(evaluate_one(store, nct, today, known)?);
    }
    Ok(out)
}

/// Every deadline condition that holds `today` among the followed trials.
pub fn due_now(cfg: &Config, store: &Store, today: NaiveDate) -> Result<Vec<DueRow>, StoreError> {
    Ok(evaluate(cfg, store, today, &HeadFacts::default())?
        .into_iter()
        .flat_map(|(nct, shown, conds)| {
            let title = shown.title;
            conds.into_iter().map(move |condition| DueRow {
                nct_id: nct.clone(),
                title: title.clone(),
                condition,
            })
        })
        .collect())
}

/// Evaluate the deadlines once for the day of `now` (a second call the same day does nothing
/// and returns `None`), storing what is newly told together with the alerts it owes, one
/// atomic batch per [`TRIALS_PER_COMMIT`] trials. The day is marked done after the last batch:
/// an evaluation cut short runs again, and finds told what its committed batches told, so
/// nothing goes out twice.
pub fn evaluate_daily(
    cfg: &Config,
    store: &Store,
    subs: Arc<Subscriptions>,
    now: DateTime<Utc>,
) -> Result<Option<DeadlineRun>, StoreError> {
    evaluate_daily_after(cfg, store, subs, now, &HeadFacts::default())
}

/// [`evaluate_daily`] right after a sync, with what it read of the heads it stored
/// ([`super::SyncReport::head_facts`]); the same result, without reading those back.
pub fn evaluate_daily_after(
    cfg: &Config,
    store: &Store,
    subs: Arc<Subscriptions>,
    now: DateTime<Utc>,
    known: &HeadFacts,
) -> Result<Option<DeadlineRun>, StoreError> {
    let today = now.date_naive();
    if store.get_meta::<NaiveDate>(LAST_DAY)? == Some(today) {
        return Ok(None);
    }
    let run = evaluate_in_chunks(cfg, store, subs, now, known, TRIALS_PER_COMMIT, usize::MAX)?;
    store.set_meta(LAST_DAY, &today)?;
    if run.events > 0 {
        tracing::info!(
            deadlines.events = run.events,
            alerts.enqueued = run.alerts_enqueued,
            "deadline events"
        );
    }
    Ok(Some(run))
}

/// [`evaluate_daily`]'s work without the once-a-day check: `chunk` trials per batch, at most
/// `max_chunks` of them (the tests cut an evaluation short this way).
fn evaluate_in_chunks(
    cfg: &Config,
    store: &Store,
    subs: Arc<Subscriptions>,
    now: DateTime<Utc>,
    known: &HeadFacts,
    chunk: usize,
    max_chunks: usize,
) -> Result<DeadlineRun, StoreError> {
    let today = now.date_naive();
    let plan = EnqueuePlan::new(subs, store, now)?;
    let mut run = DeadlineRun {
        day: Some(today),
        ..DeadlineRun::default()
    };
    let ids = super::watched_ids(cfg, store)?;
    for chunk in ids.chunks(chunk.max(1)).take(max_chunks) {
        let mut evaluated = Vec::with_capacity(chunk.len());
        for nct in chunk {
            evaluated.extend(evaluate_one(store, nct.clone(), today, known)?);
        }
        run.trials += evaluated.len();
        commit_chunk(store, &plan, evaluated, &mut run)?;
    }
    Ok(run)
}

/// The new events of one chunk of evaluated trials, stored in one atomic batch with what is
/// told after them; `run` counts them.
fn commit_chunk(
    store: &Store,
    plan: &EnqueuePlan,
    evaluated: Vec<Evaluated>,
    run: &mut DeadlineRun,
) -> Result<(), StoreError> {
    let mut told_changes = Vec::new();
    let mut alerts = Vec::new();
    for (nct, shown, conds) in evaluated {
        let told = store.deadlines_told(&nct)?;
        let (events, next) = transitions(&conds, &told);
        if next != told {
            told_changes.push((nct.clone(), next));
        }
        for c in events {
            run.events += 1;
            let event = AlertEvent {
                kind: c.kind,
                query: None,
                severity: c.severity,
                summary: c.summary.clone(),
                reason: c.summary,
                trial: TrialInfo {
                    title: shown.title.clone(),
                    overall_status: shown.status.clone(),
                    url: nct.ctgov_url(),
                },
                phase: shown.phase.clone(),
                sponsor: shown.sponsor.clone(),
                key: format!("{}-{}", c.kind, day_key(c.due)),
            };
            alerts.extend(plan.owed_event(&nct, &event));
        }
    }
    run.alerts_enqueued += alerts.len();
    if told_changes.is_empty() && alerts.is_empty() {
        return Ok(());
    }
    store.deadlines_commit(&told_changes, &alerts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: [&str; 3] = [
        include_str!("../../tests/fixtures/ctgov/NCT03418623.json"),
        include_str!("../../tests/fixtures/ctgov/NCT04207047.json"),
        include_str!("../../tests/fixtures/ctgov/NCT06171568.json"),
    ];

    fn store_with_fixtures(dir: &std::path::Path, now: DateTime<Utc>) -> Store {
        let store = Store::open(dir).unwrap();
        for raw in FIXTURES {
            let nct: NctId = crate::normalize::normalize_json(raw)
                .unwrap()
                .nct_id()
                .unwrap()
                .parse()
                .unwrap();
            store.commit_observed_raw(&nct, raw, now);
            store.watch_add(&nct, now).unwrap();
        }
        store
    }

    #[test]
    fn a_packed_head_reads_back_as_read_raw_said() {
        let shown = |s: &Shown| [&s.title, &s.status, &s.phase, &s.sponsor].map(|t| t.clone());
        let mut cases: Vec<(Facts, Shown)> = FIXTURES
            .iter()
            .map(|raw| read_raw(raw.as_bytes()).unwrap())
            .collect();
        // Absent and empty texts stay apart, and so do the flags.
        cases.push((
            Facts {
                status: Some(String::new()),
                completion: Some("2020-03".into()),
                has_results: true,
                delay_certified: true,
                ..Facts::default()
            },
            Shown {
                title: Some("Ünïcode — title".into()),
                sponsor: Some(String::new()),
                ..Shown::default()
            },
        ));
        cases.push((Facts::default(), Shown::default()));
        for (facts, s) in &cases {
            let (f2, s2) = Packed::new(facts, s).unpack();
            assert_eq!(&f2, facts);
            assert_eq!(shown(&s2), shown(s));
        }
        let mut known = HeadFacts::default();
        let nct: NctId = "NCT03418623".parse().unwrap();
        known.insert(nct.clone(), 3, FIXTURES[0].as_bytes());
        let (f, s) = known.get(&nct, 3).unwrap().unwrap();
        let (want_f, want_s) = read_raw(FIXTURES[0].as_bytes()).unwrap();
        assert_eq!(f, want_f);
        assert_eq!(shown(&s), shown(&want_s));
        assert!(
            known.get(&nct, 2).is_none(),
            "another version is not remembered"
        );
    }

    #[test]
    fn an_evaluation_in_chunks_cut_short_resumes_without_telling_anything_twice() {
        let now: DateTime<Utc> = "2026-12-01T06:00:00Z".parse().unwrap();
        let cfg = Config::from_toml("", None).unwrap();
        let subs: Arc<Subscriptions> = Arc::new(Default::default());
        let whole = {
            let dir = tempfile::tempdir().unwrap();
            let store = store_with_fixtures(dir.path(), now);
            evaluate_in_chunks(
                &cfg,
                &store,
                subs.clone(),
                now,
                &HeadFacts::default(),
                1_000,
                usize::MAX,
            )
            .unwrap()
        };
        assert_eq!(whole.trials, 3);
        assert!(whole.events >= 2, "{whole:?}");
        // One trial per batch, stopped after the first: the rest is told by the next run, and
        // what the first batch told is not told again.
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_fixtures(dir.path(), now);
        let first =
            evaluate_in_chunks(&cfg, &store, subs.clone(), now, &HeadFacts::default(), 1, 1)
                .unwrap();
        assert_eq!(first.trials, 1);
        let rest = evaluate_in_chunks(
            &cfg,
            &store,
            subs.clone(),
            now,
            &HeadFacts::default(),
            1,
            usize::MAX,
        )
        .unwrap();
        assert_eq!(rest.trials, 3);
        assert_eq!(first.events + rest.events, whole.events);
        let again = evaluate_in_chunks(
            &cfg,
            &store,
            subs,
            now,
            &HeadFacts::default(),
            1,
            usize::MAX,
        )
        .unwrap();
        assert_eq!(again.events, 0);
    }

    const RAW: &str = include_str!("../../tests/fixtures/ctgov/NCT03418623.json");

    fn shown(out: &[(NctId, Shown, Vec<Condition>)]) -> Vec<String> {
        out.iter()
            .map(|(n, s, c)| format!("{n} {s:?} {c:?}"))
            .collect()
    }

    #[test]
    fn the_heads_a_sync_read_stand_for_the_stored_ones_only_at_their_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let nct: NctId = "NCT03418623".parse().unwrap();
        store.commit_observed_raw(&nct, RAW, "2026-02-01T00:00:00Z".parse().unwrap());
        let cfg = Config::from_toml("[watch]\nnct_ids = [\"NCT03418623\"]\n", None).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
        let from_store = evaluate(&cfg, &store, today, &HeadFacts::default()).unwrap();
        assert_eq!(from_store.len(), 1);

        // What the sync read of the very bytes it stored: the same evaluation.
        let mut known = HeadFacts::default();
        known.insert(nct.clone(), 1, RAW.as_bytes());
        assert_eq!(known.len(), 1);
        let from_sync = evaluate(&cfg, &store, today, &known).unwrap();
        assert_eq!(shown(&from_sync), shown(&from_store));

        // The known facts are what is used at their version (here other bytes, to tell)...
        let retitled = RAW.replacen("\"briefTitle\": \"", "\"briefTitle\": \"RETITLED ", 1);
        let mut other = HeadFacts::default();
        other.insert(nct.clone(), 1, retitled.as_bytes());
        let used = evaluate(&cfg, &store, today, &other).unwrap();
        assert!(shown(&used)[0].contains("RETITLED"), "{:?}", shown(&used));
        // ...and ignored for any other version: the store's head is read.
        let mut stale = HeadFacts::default();
        stale.insert(nct, 2, retitled.as_bytes());
        let ignored = evaluate(&cfg, &store, today, &stale).unwrap();
        assert_eq!(shown(&ignored), shown(&from_store));
    }

    #[test]
    fn the_heads_facts_a_sync_keeps_are_bounded() {
        let mut kept = HeadFacts::default();
        let mut batch = HeadFacts::default();
        for i in 0..MAX_HEAD_FACTS + 10 {
            let nct: NctId = format!("NCT{:08}", i + 1).parse().unwrap();
            if i % 2 == 0 {
                kept.insert(nct, 1, b"{}");
            } else {
                batch.insert(nct, 1, b"{}");
            }
        }
        kept.extend(batch);
        assert_eq!(kept.len(), MAX_HEAD_FACTS);
        let nct: NctId = "NCT99999999".parse().unwrap();
        kept.insert(nct.clone(), 1, b"{}");
        assert_eq!(kept.len(), MAX_HEAD_FACTS);
        assert!(
            kept.get(&nct, 1).is_none(),
            "beyond the bound, a head is read back"
        );
    }
}
