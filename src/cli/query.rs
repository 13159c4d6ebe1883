//! The read commands: `history`, `show`, `diff`, `changes`. They only read the store.
//! JSON output uses the field names documented in the README; times are RFC 3339 UTC.
//! Every field change in JSON carries its `severity` and a one-line `summary` (the rules are in
//! [`crate::severity`]), judged with the two stored records around it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use clap::ValueEnum;
use serde::Serialize;

use super::{Ctx, TrialContext, parse_nct};
use crate::model::Severity;
use crate::model::{FieldChange, FieldPattern, NctId, Record, VersionMeta};
use crate::render::{markdown, text};
use crate::severity::assess;
use crate::store::Store;

/// A field change as the JSON output shows it: `{path, kind, old?, new?, severity, summary}`.
#[derive(Serialize)]
struct AssessedChange<'a> {
    #[serde(flatten)]
    change: &'a FieldChange,
    severity: Severity,
    summary: String,
}

fn assessed<'a>(
    changes: &'a [FieldChange],
    old: Option<&Record>,
    new: &Record,
) -> Vec<AssessedChange<'a>> {
    changes
        .iter()
        .map(|c| {
            let (severity, summary) = assess(c, old, new);
            AssessedChange {
                change: c,
                severity,
                summary,
            }
        })
        .collect()
}

/// The record of `version`.
fn record_of(store: &Store, id: &NctId, version: u32) -> anyhow::Result<Record> {
    store
        .record(id, version)
        .for_trial(id)?
        .with_context(|| format!("{id} version {version} is missing from the store"))
}

/// The records on both sides of `version` (the one before is `None` for version 1).
fn records_around(
    store: &Store,
    id: &NctId,
    version: u32,
) -> anyhow::Result<(Option<Record>, Record)> {
    let new = store
        .record(id, version)
        .for_trial(id)?
        .with_context(|| format!("{id} version {version} is missing from the store"))?;
    let before = store
        .trial(id)
        .for_trial(id)?
        .and_then(|t| t.before(version));
    let old = match before {
        Some(v) => store.record(id, v).for_trial(id)?,
        None => None,
    };
    Ok((old, new))
}

/// How `trialwatch show` prints a trial.
///
/// The variants' docs are kept out of `--help` (`help = None`): a described value would switch
/// clap to its long layout and change the whole `show --help` page; `--format` says it instead.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ShowFormat {
    /// The mirror page, as written for people.
    #[value(help = None::<&str>)]
    Markdown,
    /// The normalized record, as stored and diffed.
    #[value(help = None::<&str>)]
    Json,
}

/// Open the store and check the trial is in it, with a message that says how to get it there.
fn trial_store(ctx: &Ctx, nct: &str) -> anyhow::Result<(Store, NctId, crate::store::TrialState)> {
    let id = parse_nct(nct)?;
    let store = ctx.open_store()?;
    match store.trial(&id).for_trial(&id)? {
        Some(t) if t.latest_version > 0 => Ok((store, id, t)),
        Some(t) => bail!(
            "{id} has no stored version yet{}; run `trialwatch sync {id}`",
            t.last_error
                .map(|e| format!(" (last sync failed: {e})"))
                .unwrap_or_default()
        ),
        None => bail!(
            "{id} is not in the store at {}; add it with `trialwatch watch add {id}` and run `trialwatch sync`",
            ctx.cfg.data_dir.display()
        ),
    }
}

#[derive(Serialize)]
struct HistoryEntry<'a> {
    version: u32,
    detected_at: DateTime<Utc>,
    last_update_post_date: Option<&'a str>,
    /// `observed` or `ctgov` (from CT.gov's record history).
    source: &'static str,
    /// CT.gov's own version number, when known.
    ctgov_version: Option<u32>,
    /// The day CT.gov posted this version, when known.
    ctgov_posted: Option<NaiveDate>,
    /// From before trialwatch watched the trial: history, not news.
    backfilled: bool,
    changes: Vec<AssessedChange<'a>>,
}

/// One entry of `history --json`: version `v`, its changes judged against `prev` and `rec`.
fn history_entry<'a>(v: &'a VersionMeta, prev: Option<&Record>, rec: &Record) -> HistoryEntry<'a> {
    HistoryEntry {
        version: v.version,
        detected_at: v.detected_at,
        last_update_post_date: v.last_update_post_date.as_deref(),
        source: v.provenance.source.as_str(),
        ctgov_version: v.provenance.ctgov_version,
        ctgov_posted: v.provenance.ctgov_posted,
        backfilled: v.provenance.backfilled,
        changes: assessed(&v.changes, prev, rec),
    }
}

/// One entry of `history --json` as a JSON value: what `export` puts in a trial's JSON file
/// (the same function as the command, so the bytes stay the CLI's).
pub(crate) fn history_entry_json(
    v: &VersionMeta,
    prev: Option<&Record>,
    rec: &Record,
) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::to_value(history_entry(v, prev, rec))?)
}

pub(crate) fn history(
    ctx: &Ctx,
    nct: &str,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let (store, id, state) = trial_store(ctx, nct)?;
    let versions = store.versions(&id).for_trial(&id)?;
    if json {
        let mut entries: Vec<HistoryEntry> = Vec::new();
        let mut prev: Option<Record> = None;
        for v in &versions {
            let rec = store
                .record(&id, v.version)
                .for_trial(&id)?
                .with_context(|| format!("{id} version {} is missing from the store", v.version))?;
            entries.push(history_entry(v, prev.as_ref(), &rec));
            prev = Some(rec);
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&entries)?)?;
    } else {
        let title = store
            .latest_record(&id)
            .for_trial(&id)?
            .and_then(|r| r.title().map(str::to_string))
            .unwrap_or_default();
        writeln!(out, "{id}  {title}")?;
        if let Some(canonical) = &state.resolved_id {
            writeln!(out, "(CT.gov answers this ID as {canonical})")?;
        }
        if let Some(sentence) = outcome_sentence(&state) {
            writeln!(out, "({sentence})")?;
        }
        for (i, v) in versions.iter().enumerate() {
            writeln!(
                out,
                "{}",
                super::color::statuses(&text::history_line(v, 3, i == 0))
            )?;
        }
        writeln!(
            out,
            "last seen {}",
            crate::util::zone::minutes(state.last_seen_at)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What CT.gov's history index says of the primary outcomes, when trialwatch read it.
fn outcome_sentence(state: &crate::store::TrialState) -> Option<String> {
    let h = state.ctgov_history.as_ref()?;
    h.outcome_switch.map(|o| o.sentence())
}

/// A bare date means the end of that day (UTC); otherwise RFC 3339. `flag` names the option
/// in messages. Times outside the years 1 to 9999 (what RFC 3339 can write) are refused.
fn parse_time(s: &str, end_of_day: bool, flag: &str) -> anyhow::Result<DateTime<Utc>> {
    let t = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        Some(t.with_timezone(&Utc))
    } else if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if end_of_day {
            d.and_hms_milli_opt(23, 59, 59, 999)
        } else {
            d.and_hms_opt(0, 0, 0)
        }
        .map(|t| t.and_utc())
    } else {
        None
    };
    match t {
        Some(t) => in_range(t, s, flag),
        None => bail!(
            "{flag} `{s}` is not a time; use RFC 3339 (2026-05-12T06:28:15Z) or a date (2026-05-12)"
        ),
    }
}

/// `t` when it lies in the years 1 to 9999, else an error naming `flag` and a valid example.
fn in_range(t: DateTime<Utc>, s: &str, flag: &str) -> anyhow::Result<DateTime<Utc>> {
    let earliest = NaiveDate::from_ymd_opt(1, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0));
    let latest =
        NaiveDate::from_ymd_opt(9999, 12, 31).and_then(|d| d.and_hms_milli_opt(23, 59, 59, 999));
    match (earliest, latest) {
        (Some(lo), Some(hi)) if t >= lo.and_utc() && t <= hi.and_utc() => Ok(t),
        _ => bail!(
            "{flag} `{s}` is out of range: times must lie between 0001-01-01 and 9999-12-31 UTC; \
             e.g. {flag} 2026-05-12 or {flag} 2026-05-12T06:28:15Z"
        ),
    }
}

pub(crate) fn show(
    ctx: &Ctx,
    nct: &str,
    version: Option<u32>,
    at: Option<&str>,
    format: ShowFormat,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let (store, id, state) = trial_store(ctx, nct)?;
    let version = match (version, at) {
        (Some(v), _) => {
            if v == 0 || v > state.latest_version {
                bail!(
                    "{id} has versions 1 to {}; there is no version {v}",
                    state.latest_version
                );
            }
            v
        }
        (None, Some(at)) => {
            let t = parse_time(at, true, "--at")?;
            match store.version_at(&id, t).for_trial(&id)? {
                Some(v) => v.version,
                None => bail!("{id} had no stored version yet at {t}"),
            }
        }
        (None, None) => state.head(),
    };
    if let Some(sentence) = outcome_sentence(&state) {
        // On stderr: stdout is the page or the record, byte for byte.
        eprintln!("{id}: {sentence}");
    }
    let record = store
        .record(&id, version)
        .for_trial(&id)?
        .with_context(|| format!("{id} version {version} is missing from the store"))?;
    match format {
        ShowFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&record)?)?,
        ShowFormat::Markdown => {
            let all = store.versions(&id).for_trial(&id)?;
            write!(
                out,
                "{}",
                mirror_markdown(ctx, &state, &record, all, version)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `show --format markdown` of `version` (whose record is `record`), given all of the trial's
/// versions in timeline order: the page `show` prints and `export` writes.
pub(crate) fn mirror_markdown(
    ctx: &Ctx,
    state: &crate::store::TrialState,
    record: &Record,
    all: Vec<VersionMeta>,
    version: u32,
) -> String {
    // The timeline up to this version, and the one after it (if any).
    let cut = all
        .iter()
        .position(|v| v.version == version)
        .map_or(all.len(), |i| i + 1);
    let successor = all.get(cut).map(|v| v.detected_at);
    let versions: Vec<VersionMeta> = all.into_iter().take(cut).collect();
    // The latest version was last seen at the last sync; an older one when its successor came.
    let last_seen_at = if version == state.head() {
        state.last_seen_at
    } else {
        successor.unwrap_or(state.last_seen_at)
    };
    let now = if version == state.head() {
        crate::clock::now()
    } else {
        last_seen_at
    };
    let m = &ctx.cfg.mirror;
    let opts = markdown::PageOptions {
        canonical_base: m.canonical_base.as_deref(),
        footer_note: m.footer_note.as_deref(),
        recent_days: m.recent_days,
        watched: &m.fields,
    };
    markdown::mirror_page(record, last_seen_at, now, &versions, &opts)
}

#[derive(Serialize)]
struct DiffOut<'a> {
    nct_id: &'a NctId,
    from: u32,
    to: u32,
    changes: Vec<AssessedChange<'a>>,
}

pub(crate) fn diff(
    ctx: &Ctx,
    nct: &str,
    from: Option<u32>,
    to: Option<u32>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let (store, id, state) = trial_store(ctx, nct)?;
    let latest = state.latest_version;
    let head = state.head();
    let (from, to) = match (from, to) {
        (None, _) => (state.before(head).unwrap_or(0), head),
        (Some(f), None) => (f, head),
        (Some(f), Some(t)) => (f, t),
    };
    for v in [from, to] {
        if v > latest {
            bail!("{id} has versions 1 to {latest}; there is no version {v}");
        }
    }
    if to == 0 {
        bail!("version 0 means \"before the first snapshot\" and can only be FROM");
    }
    let load = |v: u32| -> anyhow::Result<Option<crate::model::Record>> {
        if v == 0 {
            return Ok(None);
        }
        store
            .record(&id, v)
            .for_trial(&id)?
            .with_context(|| format!("{id} version {v} is missing from the store"))
            .map(Some)
    };
    let old = load(from)?;
    let new = load(to)?.with_context(|| format!("{id} version {to} is missing"))?;
    // Across sources (CT.gov's history HTML, API v2 Markdown) markup alone is no change.
    let source = |v: u32| -> anyhow::Result<crate::model::Source> {
        Ok(store
            .version(&id, v)
            .for_trial(&id)?
            .map(|m| m.provenance.source)
            .unwrap_or_default())
    };
    let changes = match &old {
        Some(o) => crate::backfill::changes_between(Some((o, source(from)?)), &new, source(to)?),
        None => crate::diff::diff(None, &new),
    };
    if json {
        let body = DiffOut {
            nct_id: &id,
            from,
            to,
            changes: assessed(&changes, old.as_ref(), &new),
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
    } else {
        write!(
            out,
            "{}",
            super::color::diff_report(&text::diff_report(id.as_str(), from, to, &changes))
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct ChangeOut<'a> {
    nct_id: &'a NctId,
    version: u32,
    detected_at: DateTime<Utc>,
    #[serde(flatten)]
    change: &'a AssessedChange<'a>,
}

/// The filters of `trialwatch changes`.
pub(crate) struct ChangesFilter<'a> {
    /// A duration back from now or a time.
    pub since: &'a str,
    pub ncts: &'a [String],
    pub fields: &'a [String],
    pub include_first: bool,
    /// Also versions backfilled from CT.gov's record history (history, not news).
    pub include_backfill: bool,
    pub min_severity: Option<&'a str>,
}

/// `--since`: a duration back from now (`7d`, `36h`) or a time. A duration that reaches back
/// before year 1 (or does not fit a number at all) is an error, never an overflow.
fn parse_since(s: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let too_long = || {
        anyhow::anyhow!(
            "--since `{s}` is too long: it reaches back before year 1; \
             give a shorter duration (e.g. --since 7d or --since 2weeks) or a date (--since 2026-05-01)"
        )
    };
    match humantime::parse_duration(s) {
        Ok(d) => {
            let d = chrono::Duration::from_std(d).map_err(|_| too_long())?;
            let t = now.checked_sub_signed(d).ok_or_else(too_long)?;
            return in_range(t, s, "--since").map_err(|_| too_long());
        }
        Err(humantime::DurationError::NumberOverflow) => return Err(too_long()),
        Err(_) => {}
    }
    match parse_time(s, false, "--since") {
        Ok(t) => Ok(t),
        // A real time outside the years 1 to 9999 gets that message, not the generic one.
        Err(e) if e.to_string().contains("out of range") => Err(e),
        Err(_) if s.trim_start().starts_with('-') => bail!(
            "--since `{s}` is negative; give how far back to look as a positive duration \
             (e.g. --since 7d) or a time (--since 2026-05-01)"
        ),
        Err(_) => bail!(
            "--since `{s}` is neither a duration (7d, 36h, 2weeks) nor a time (RFC 3339 or YYYY-MM-DD)"
        ),
    }
}

pub(crate) fn changes(
    ctx: &Ctx,
    filter: &ChangesFilter<'_>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let since = parse_since(filter.since, crate::clock::now())?;
    let ncts = filter
        .ncts
        .iter()
        .map(|s| parse_nct(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let patterns = filter
        .fields
        .iter()
        .map(|f| {
            crate::config::validate_field_pattern(f).map_err(|e| anyhow::anyhow!("--field {e}"))
        })
        .collect::<anyhow::Result<Vec<FieldPattern>>>()?;
    let min = match filter.min_severity {
        None => Severity::Minor,
        Some(s) => s
            .parse::<Severity>()
            .map_err(|e| anyhow::anyhow!("--min-severity {e}"))?,
    };
    let store = ctx.open_store()?;
    // Listed from the time index alone; each version is decoded only once the filters that
    // need no decoding (trial, first version) have kept it, so the cost is what is shown.
    // Trial filter and version 1 (see below) are judged on the index's bytes.
    let numbers: Vec<u32> = ncts.iter().map(NctId::number).collect();
    let skip_v1 = !filter.include_first && !filter.include_backfill;
    let refs = store.version_refs_since_where(since, |n, v| {
        (numbers.is_empty() || numbers.contains(&n)) && !(skip_v1 && v == 1)
    })?;
    let mut versions: Vec<(NctId, VersionMeta, Option<Record>)> = Vec::new();
    let mut states: std::collections::HashMap<NctId, Option<crate::store::TrialState>> =
        std::collections::HashMap::new();
    for r in refs {
        if !ncts.is_empty() && !ncts.contains(&r.nct) {
            continue;
        }
        // Version 1 is always the trial's first snapshot, its first observed version, or a
        // backfilled one: skipped without reading anything unless backfills are shown.
        if !filter.include_first && r.version == 1 && !filter.include_backfill {
            continue;
        }
        if !filter.include_first {
            let state = match states.get(&r.nct) {
                Some(s) => s.clone(),
                None => {
                    let s = store.trial(&r.nct)?;
                    states.insert(r.nct.clone(), s.clone());
                    s
                }
            };
            // A trial's first snapshot (every field `added`), and the first version trialwatch
            // observed after a backfill (whose changes are CT.gov's past, not news).
            let first = state
                .as_ref()
                .is_none_or(|t| r.version == t.first_observed || t.before(r.version).is_none());
            if first {
                continue;
            }
        }
        if let Some((meta, context)) = store.version_with_context(&r.nct, r.version)? {
            // The stored context stands for both records only when there is a version before
            // (a first snapshot, shown with --include-first, is judged against none).
            let context = context.filter(|_| {
                !filter.include_first
                    || states
                        .get(&r.nct)
                        .is_some_and(|s| s.as_ref().is_some_and(|t| t.before(r.version).is_some()))
            });
            versions.push((r.nct, meta, context));
        }
    }
    let mut found: Vec<(NctId, &VersionMeta, AssessedChange)> = Vec::new();
    for (nct, meta, context) in &versions {
        if meta.provenance.backfilled && !filter.include_backfill {
            continue;
        }
        let wanted: Vec<&FieldChange> = meta
            .changes
            .iter()
            .filter(|c| patterns.is_empty() || patterns.iter().any(|p| p.matches(&c.path)))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        // Only the records the severity rules read for these paths (often none).
        let (need_old, need_new) = wanted
            .iter()
            .map(|c| crate::severity::records_read(&c.path))
            .fold((false, false), |a, b| (a.0 || b.0, a.1 || b.1));
        let (old, new) = if let Some(context) = context.as_ref().filter(|_| need_old || need_new) {
            // What the rules read of both records, kept at commit: no record is decoded.
            let (old, new) = crate::severity::records_from_context(context, &meta.changes);
            (Some(old), new)
        } else if need_old {
            records_around(&store, nct, meta.version)?
        } else if need_new {
            (None, record_of(&store, nct, meta.version)?)
        } else {
            (None, Record::default())
        };
        for c in wanted {
            let (severity, summary) = assess(c, old.as_ref(), &new);
            if severity >= min {
                found.push((
                    nct.clone(),
                    meta,
                    AssessedChange {
                        change: c,
                        severity,
                        summary,
                    },
                ));
            }
        }
    }
    if json {
        let rows: Vec<ChangeOut> = found
            .iter()
            .map(|(nct, meta, c)| ChangeOut {
                nct_id: nct,
                version: meta.version,
                detected_at: meta.detected_at,
                change: c,
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    } else if found.is_empty() {
        writeln!(
            out,
            "no field changes since {}",
            crate::util::zone::minutes(since)
        )?;
    } else {
        for (nct, meta, c) in &found {
            writeln!(
                out,
                "{}  {} v{}  {}  {}",
                crate::util::zone::table_minutes(meta.detected_at),
                nct,
                meta.version,
                super::color::severity(c.severity, &format!("{:<8}", c.severity.to_string())),
                super::color::statuses(&c.summary)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_durations_dates_and_times() {
        let now: DateTime<Utc> = "2026-05-12T00:00:00Z".parse().unwrap();
        assert_eq!(
            parse_since("7d", now).unwrap(),
            "2026-05-05T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_since("2026-05-01", now).unwrap(),
            "2026-05-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_since("yesterday-ish", now).is_err());
        assert_eq!(
            parse_time("2026-05-01", true, "--at").unwrap(),
            "2026-05-01T23:59:59.999Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn out_of_range_durations_and_times_are_errors_not_panics() {
        let now: DateTime<Utc> = "2026-05-12T00:00:00Z".parse().unwrap();
        for s in [
            "99999999999d",
            "1000000y",
            "99999999999999999999999d",
            "3000y",
        ] {
            let e = parse_since(s, now).unwrap_err().to_string();
            assert!(
                e.contains("too long") && e.contains("--since 7d"),
                "{s}: {e}"
            );
        }
        let e = parse_since("-5d", now).unwrap_err().to_string();
        assert!(e.contains("negative"), "{e}");
        let e = parse_since("0000-01-01", now).unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
        assert!(parse_since("9999-12-31T23:59:59Z", now).is_ok());
        assert!(parse_time("0000-12-31T23:59:59Z", true, "--at").is_err());
        assert!(parse_time("+10000-01-01", true, "--at").is_err());
    }
}
