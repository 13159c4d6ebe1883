//! `trialwatch export DIR [--only NCT…]`: the whole store as files (a static mirror).
//!
//! For each trial: `trials/NCT….md` (exactly what `show --format markdown` prints: made by the
//! same function), `trials/NCT….json` (`{nct_id, record, versions}`: `show --format json` and
//! `history --json`), `feeds/NCT….atom`; for the store: `index.md`, `changes.csv`,
//! `changes.jsonl` and `feeds/all.atom`. Files are rewritten only when their bytes change
//! ([`crate::publish::files`]).
//!
//! A re-export skips the work for trials that did not move: `.trialwatch-export.json` in DIR
//! remembers, per trial, a key of its stored state and until when its page stays the same (the
//! page's "recent changes" window moves with the clock), and what the shared files need of it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Ctx, parse_nct, query};
use crate::model::NctId;
use crate::publish::tables::{self, ChangeRow, TrialRow};
use crate::publish::{PublishedVersion, atom, files};

/// The bookkeeping file of an export, in its directory.
pub(crate) const MANIFEST: &str = ".trialwatch-export.json";
/// Bump when what an export writes changes, so the next export renders everything again.
const MANIFEST_FORMAT: u32 = 1;
/// `feeds/all.atom` holds this many newest entries.
const ALL_FEED_ENTRIES: usize = 200;

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    trials: BTreeMap<String, Cached>,
}

/// What the shared files need of one trial, and when it must be rendered again.
#[derive(Serialize, Deserialize, Clone)]
struct Cached {
    key: String,
    /// The page's recent-changes window changes at this time; render again from then on.
    valid_until: Option<DateTime<Utc>>,
    row: TrialRow,
    versions: Vec<PublishedVersion>,
    changes: Vec<ChangeRow>,
}

/// What one export worker rendered, and what its writer did.
type WorkerDone = (Vec<(String, Cached)>, files::WriteStats);

/// What one export did.
#[derive(Serialize, Debug, Default)]
pub(crate) struct ExportReport {
    /// Trials exported.
    pub trials: usize,
    /// Trials whose pages were rendered again (the others had not moved).
    pub rendered: usize,
    /// Files written and left alone.
    #[serde(flatten)]
    pub files: files::WriteStats,
}

/// A list of (feed name, trial IDs): one extra feed each (query watches).
pub(crate) type FeedGroups = [(String, Vec<NctId>)];

pub(crate) fn run(
    ctx: &Ctx,
    dir: &Path,
    only: &[String],
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let only = only
        .iter()
        .map(|s| parse_nct(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let groups = query_groups(ctx)?;
    let rep = export(ctx, dir, &only, &groups)?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rep)?)?;
    } else {
        writeln!(
            out,
            "exported {} trials to {}: {} files written, {} unchanged",
            rep.trials,
            dir.display(),
            rep.files.written,
            rep.files.unchanged
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One feed group per query watch (the configuration's and the store's): its current members.
fn query_groups(ctx: &Ctx) -> anyhow::Result<Vec<(String, Vec<NctId>)>> {
    let store = ctx.open_store()?;
    let mut groups = Vec::new();
    for q in crate::sync::queries::all_queries(&ctx.cfg, &store)? {
        let members = store
            .query_members(&q.name)?
            .into_iter()
            .filter(|m| m.is_current())
            .map(|m| m.nct_id)
            .collect();
        groups.push((q.name, members));
    }
    Ok(groups)
}

/// Export the store (or the `only` trials) into `dir`, with one extra feed per `groups` entry.
pub(crate) fn export(
    ctx: &Ctx,
    dir: &Path,
    only: &[NctId],
    groups: &FeedGroups,
) -> anyhow::Result<ExportReport> {
    let store = ctx.open_store()?;
    let mut w = files::Writer::new(dir)?;
    let manifest_path = dir.join(MANIFEST);
    let mut manifest: Manifest = std::fs::read(&manifest_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|m: &Manifest| m.format == MANIFEST_FORMAT)
        .unwrap_or(Manifest {
            format: MANIFEST_FORMAT,
            trials: BTreeMap::new(),
        });
    let now = crate::clock::now();
    let options = format!(
        "{:?}|{:?}|{}|{:?}",
        ctx.cfg.mirror.canonical_base,
        ctx.cfg.mirror.footer_note,
        ctx.cfg.mirror.recent_days,
        ctx.cfg.mirror.fields.0
    );
    let mut rep = ExportReport::default();
    let mut included: Vec<String> = Vec::new();
    let mut todo: Vec<(NctId, crate::store::TrialState, String)> = Vec::new();
    for state in store.trials()? {
        let Some(id) = state_id(&state) else { continue };
        if state.latest_version == 0 || (!only.is_empty() && !only.contains(&id)) {
            continue;
        }
        rep.trials += 1;
        let key = {
            let mut h = Sha256::new();
            h.update(serde_json::to_vec(&state)?);
            h.update(options.as_bytes());
            hex::encode(h.finalize())
        };
        let fresh = manifest
            .trials
            .get(id.as_str())
            .is_some_and(|c| c.key == key && c.valid_until.is_none_or(|t| now < t))
            && dir.join(format!("trials/{id}.md")).is_file();
        included.push(id.as_str().to_string());
        if !fresh {
            todo.push((id, state, key));
        }
    }
    if let Some(missing) = only
        .iter()
        .find(|id| !included.iter().any(|i| i == id.as_str()))
    {
        anyhow::bail!(
            "--only {missing}: the trial has no stored version; add it with \
             `trialwatch watch add {missing}` and run `trialwatch sync`"
        );
    }
    // Rendering is CPU-bound (decoding records, assessing changes): one worker per core, at
    // most two (the target machine has two), each with its own writer.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 2);
    let per = todo.len().div_ceil(workers).max(1);
    let results: Vec<anyhow::Result<WorkerDone>> = std::thread::scope(|scope| {
        let handles: Vec<_> = todo
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut tw = files::Writer::new(dir)?;
                    let mut done = Vec::with_capacity(chunk.len());
                    for (id, state, key) in chunk {
                        let cached = render_trial(ctx, &mut tw, id, state, key.clone(), now)?;
                        done.push((id.as_str().to_string(), cached));
                    }
                    Ok((done, tw.stats))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an export worker panicked")))
            })
            .collect()
    });
    for r in results {
        let (done, stats) = r?;
        rep.rendered += done.len();
        w.stats.written += stats.written;
        w.stats.unchanged += stats.unchanged;
        manifest.trials.extend(done);
    }
    let chosen: Vec<&Cached> = included
        .iter()
        .filter_map(|id| manifest.trials.get(id))
        .collect();
    write_shared(&mut w, &chosen, groups)?;
    rep.files = w.stats;
    // The manifest last: a crash before it only means more rendering next time.
    let bytes = serde_json::to_vec(&manifest)?;
    let mut plain = files::Writer::new(dir)?;
    plain.put(MANIFEST, &bytes)?;
    Ok(rep)
}

fn state_id(state: &crate::store::TrialState) -> Option<NctId> {
    Some(state.nct_id.clone())
}

/// The value at `section.key` in a record's JSON.
fn at<'a>(record: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let (section, key) = path.split_once('.')?;
    record.get(section)?.get(key)
}

fn capture(f: impl FnOnce(&mut Vec<u8>) -> anyhow::Result<ExitCode>) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    f(&mut buf)?;
    Ok(buf)
}

/// Write one trial's page, JSON and feed; return what the shared files need of it.
fn render_trial(
    ctx: &Ctx,
    w: &mut files::Writer,
    id: &NctId,
    state: &crate::store::TrialState,
    key: String,
    now: DateTime<Utc>,
) -> anyhow::Result<Cached> {
    let nct = id.as_str();
    let md = capture(|b| query::show(ctx, nct, None, None, query::ShowFormat::Markdown, b))?;
    let record_json = capture(|b| query::show(ctx, nct, None, None, query::ShowFormat::Json, b))?;
    let history_json = capture(|b| query::history(ctx, nct, true, b))?;
    let record: serde_json::Value =
        serde_json::from_slice(&record_json).context("reading back `show --format json`")?;
    let history: Vec<serde_json::Value> =
        serde_json::from_slice(&history_json).context("reading back `history --json`")?;
    let doc = serde_json::json!({ "nct_id": nct, "record": record, "versions": history });
    w.put(&format!("trials/{nct}.md"), &md)?;
    let mut doc_bytes = serde_json::to_vec_pretty(&doc)?;
    doc_bytes.push(b'\n');
    w.put(&format!("trials/{nct}.json"), &doc_bytes)?;

    let text = |path: &str| {
        at(&record, path)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let title = text("identification.briefTitle")
        .or_else(|| text("identification.officialTitle"))
        .unwrap_or_else(|| nct.to_string());
    let recent = Duration::days(i64::from(ctx.cfg.mirror.recent_days));
    let (versions, changes) =
        crate::publish::from_history(nct, &title, &history, state.first_observed);
    // The page lists a version's changes until it leaves the recent-changes window.
    let valid_until = versions
        .iter()
        .filter(|v| !v.backfilled)
        .map(|v| v.detected_at + recent)
        .filter(|t| *t > now)
        .min();
    let latest = versions.first();
    let row = TrialRow {
        nct_id: nct.to_string(),
        title: title.clone(),
        status: text("status.overallStatus"),
        phase: at(&record, "design.phases")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
        sponsor: text("sponsor.lead"),
        last_change: latest.map(|v| v.detected_at),
        severity: latest.filter(|v| !v.first).map(PublishedVersion::severity),
    };
    let link = atom::ctgov_link(nct);
    let feed_title = format!("{nct}: {title}");
    let refs: Vec<&PublishedVersion> = versions.iter().collect();
    let feed = atom::feed(
        &atom::FeedMeta {
            key: nct,
            title: &feed_title,
            alternate: Some(&link),
        },
        &refs,
    );
    w.put(&format!("feeds/{nct}.atom"), feed.as_bytes())?;
    Ok(Cached {
        key,
        valid_until,
        row,
        versions,
        changes,
    })
}

/// A file name for a feed group: letters, digits, `-` and `_` kept, anything else `_`.
fn feed_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn newest_first(mut v: Vec<&PublishedVersion>, limit: usize) -> Vec<&PublishedVersion> {
    v.sort_by(|a, b| {
        b.detected_at
            .cmp(&a.detected_at)
            .then_with(|| a.nct_id.cmp(&b.nct_id))
            .then_with(|| b.version.cmp(&a.version))
    });
    v.truncate(limit);
    v
}

fn write_shared(
    w: &mut files::Writer,
    trials: &[&Cached],
    groups: &FeedGroups,
) -> anyhow::Result<()> {
    let rows: Vec<TrialRow> = trials.iter().map(|c| c.row.clone()).collect();
    w.put("index.md", tables::index_markdown(&rows).as_bytes())?;
    let mut changes: Vec<&ChangeRow> = trials.iter().flat_map(|c| c.changes.iter()).collect();
    // Newest first, as `trialwatch changes`; a version's changes keep their order.
    // Keys borrowed from the rows: 500,000 rows must sort without an allocation per compare.
    fn key(r: &ChangeRow) -> (Option<&str>, Option<&str>, Option<u64>) {
        (
            r.get("detected_at").and_then(|v| v.as_str()),
            r.get("nct_id").and_then(|v| v.as_str()),
            r.get("version").and_then(|v| v.as_u64()),
        )
    }
    changes.sort_by(|a, b| {
        let (ta, na, va) = key(a);
        let (tb, nb, vb) = key(b);
        tb.cmp(&ta)
            .then_with(|| na.cmp(&nb))
            .then_with(|| va.cmp(&vb))
    });
    let changes: Vec<ChangeRow> = changes.into_iter().cloned().collect();
    w.put("changes.csv", tables::changes_csv(&changes).as_bytes())?;
    w.put("changes.jsonl", tables::changes_jsonl(&changes).as_bytes())?;
    let all: Vec<&PublishedVersion> = trials.iter().flat_map(|c| c.versions.iter()).collect();
    let all = newest_first(all, ALL_FEED_ENTRIES);
    let feed = atom::feed(
        &atom::FeedMeta {
            key: "all",
            title: "trialwatch: all trials",
            alternate: None,
        },
        &all,
    );
    w.put("feeds/all.atom", feed.as_bytes())?;
    for (name, ids) in groups {
        let picked: Vec<&PublishedVersion> = trials
            .iter()
            .filter(|c| ids.iter().any(|i| i.as_str() == c.row.nct_id))
            .flat_map(|c| c.versions.iter())
            .collect();
        let picked = newest_first(picked, ALL_FEED_ENTRIES);
        let title = format!("trialwatch: {name}");
        let key = format!("query:{name}");
        let feed = atom::feed(
            &atom::FeedMeta {
                key: &key,
                title: &title,
                alternate: None,
            },
            &picked,
        );
        w.put(
            &format!("feeds/query-{}.atom", feed_file_name(name)),
            feed.as_bytes(),
        )?;
    }
    Ok(())
}

/// `args` (a command line about to be forwarded to a running daemon) with `export`'s DIR made
/// absolute against `cwd`: the daemon runs elsewhere, and DIR must mean what the user meant.
pub(super) fn absolute_dir_arg(mut args: Vec<String>, cwd: &Path) -> Vec<String> {
    let Some(at) = args.iter().position(|a| a == "export") else {
        return args;
    };
    let mut i = at + 1;
    let mut after_only = false;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if a.starts_with('-') {
            after_only = a == "--only";
        } else if !after_only {
            break;
        }
        i += 1;
    }
    if let Some(dir) = args.get_mut(i)
        && Path::new(dir.as_str()).is_relative()
    {
        *dir = cwd.join(&*dir).to_string_lossy().into_owned();
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_export_dir_is_made_absolute() {
        let cwd = Path::new("/home/u");
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            absolute_dir_arg(v(&["--config", "/c", "export", "site", "--json"]), cwd),
            v(&["--config", "/c", "export", "/home/u/site", "--json"])
        );
        assert_eq!(
            absolute_dir_arg(v(&["export", "--json", "/abs"]), cwd),
            v(&["export", "--json", "/abs"])
        );
        assert_eq!(
            absolute_dir_arg(v(&["sync", "site"]), cwd),
            v(&["sync", "site"])
        );
    }
}
