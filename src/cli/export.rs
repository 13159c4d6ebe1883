//! `trialwatch export DIR [--only NCT…]`: the whole store as files (a static mirror).
//!
//! For each trial: `trials/NCT….md` (exactly what `show --format markdown` prints: made by the
//! same function), `trials/NCT….json` (`{nct_id, record, versions}`: `show --format json` and
//! `history --json`), `feeds/NCT….atom`; for the store: `index.md`, `changes.csv`,
//! `changes.jsonl` and `feeds/all.atom`. Files are rewritten only when their bytes change
//! ([`crate::publish::files`]).
//!
//! A re-export skips the work for trials that did not move: `DIR/.trialwatch-export/NCT….json`
//! ([`crate::publish::cache`]) remembers, per trial, a key of its stored state, until when its
//! page stays the same (the page's "recent changes" window moves with the clock), and what the
//! shared files need of it, already rendered; the shared files are assembled from those.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Ctx, parse_nct, query};
use crate::model::{NctId, Record, VersionMeta};
use crate::publish::cache::{self, ChangeBlock, FeedEntry, TrialPiece};
use crate::publish::tables::{self, TrialRow};
use crate::publish::{PublishedVersion, atom, files};
use crate::store::{Store, TrialState};

/// The whole-export bookkeeping file of earlier versions (all trials in one JSON file, read and
/// rewritten whole); removed once the per-trial cache ([`cache::CACHE_DIR`]) replaces it.
const OLD_MANIFEST: &str = ".trialwatch-export.json";

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
            "exported {} to {}: {} written, {} unchanged",
            crate::util::text::plural(rep.trials, "trial"),
            dir.display(),
            crate::util::text::plural(rep.files.written, "file"),
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
    let now = crate::clock::now();
    let options = format!(
        "{}|{:?}|{:?}|{}|{:?}",
        cache::PIECE_FORMAT,
        ctx.cfg.mirror.canonical_base,
        ctx.cfg.mirror.footer_note,
        ctx.cfg.mirror.recent_days,
        ctx.cfg.mirror.fields.0
    );
    let mut rep = ExportReport::default();
    let mut todo: Vec<(NctId, TrialState)> = Vec::new();
    for state in store.trials()? {
        if state.latest_version == 0 || (!only.is_empty() && !only.contains(&state.nct_id)) {
            continue;
        }
        todo.push((state.nct_id.clone(), state));
    }
    rep.trials = todo.len();
    if let Some(missing) = only.iter().find(|id| !todo.iter().any(|(i, _)| i == *id)) {
        anyhow::bail!(
            "--only {missing}: the trial has no stored version; add it with \
             `trialwatch watch add {missing}` and run `trialwatch sync`"
        );
    }
    // Rendering is CPU-bound (decoding records, assessing changes): one worker per core, at
    // most two (the target machine has two), each taking the next trial when it is done, with
    // its own writer. What each keeps per trial is its piece (rendered rows and entries).
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 2);
    let next = AtomicUsize::new(0);
    let pieces: Vec<Mutex<Option<TrialPiece>>> = todo.iter().map(|_| Mutex::new(None)).collect();
    let results: Vec<anyhow::Result<(usize, files::WriteStats)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut tw = files::Writer::new(dir)?;
                    let mut sidecars = files::Writer::new(dir)?;
                    let mut rendered = 0;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((id, state)) = todo.get(i) else {
                            break;
                        };
                        let key = state_key(state, &options)?;
                        let fresh = cache::load(dir, id.as_str()).filter(|p| {
                            p.key == key
                                && p.valid_until.is_none_or(|t| now < t)
                                && dir.join(format!("trials/{id}.md")).is_file()
                        });
                        let piece = match fresh {
                            Some(p) => p,
                            None => {
                                let p = render_trial(ctx, &store, &mut tw, id, state, key, now)?;
                                cache::save(&mut sidecars, &p)?;
                                rendered += 1;
                                p
                            }
                        };
                        *pieces[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(piece);
                    }
                    Ok((rendered, tw.stats))
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
        let (rendered, stats) = r?;
        rep.rendered += rendered;
        w.stats.written += stats.written;
        w.stats.unchanged += stats.unchanged;
    }
    let pieces: Vec<TrialPiece> = pieces
        .into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    let refs: Vec<&TrialPiece> = pieces.iter().collect();
    cache::write_shared(&mut w, &refs, groups)?;
    rep.files = w.stats;
    // The single manifest of earlier versions is superseded by the pieces.
    let _ = std::fs::remove_file(dir.join(OLD_MANIFEST));
    Ok(rep)
}

/// A key of what a trial's files are made from: its stored state and the export's options.
fn state_key(state: &TrialState, options: &str) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(state)?);
    h.update(options.as_bytes());
    Ok(hex::encode(h.finalize()))
}

/// The value at `section.key` in a record's JSON.
fn at<'a>(record: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let (section, key) = path.split_once('.')?;
    record.get(section)?.get(key)
}

/// Write one trial's page, JSON and feed; return its piece for the shared files.
///
/// The page, the record and the history are made by the functions behind `show --format
/// markdown`, `show --format json` and `history --json`, from one pass over the trial's
/// versions that decodes each of them once ([`Store::walk_versions`]).
fn render_trial(
    ctx: &Ctx,
    store: &Store,
    w: &mut files::Writer,
    id: &NctId,
    state: &TrialState,
    key: String,
    now: DateTime<Utc>,
) -> anyhow::Result<TrialPiece> {
    let nct = id.as_str();
    let head = state.head();
    let mut metas: Vec<VersionMeta> = Vec::new();
    let mut history: Vec<serde_json::Value> = Vec::new();
    let mut prev: Option<Record> = None;
    let mut head_record: Option<Record> = None;
    store.walk_versions(id, |meta, rec| -> anyhow::Result<()> {
        history.push(query::history_entry_json(&meta, prev.as_ref(), &rec)?);
        if meta.version == head {
            head_record = Some(rec.clone());
        }
        metas.push(meta);
        prev = Some(rec);
        Ok(())
    })?;
    drop(prev);
    let Some(head_record) = head_record else {
        anyhow::bail!("{id} version {head} is missing from the store; run `trialwatch verify`");
    };
    let md = query::mirror_markdown(ctx, state, &head_record, metas, head);
    let record = serde_json::to_value(&head_record)?;
    drop(head_record);
    w.put(&format!("trials/{nct}.md"), md.as_bytes())?;
    drop(md);
    let doc = serde_json::json!({ "nct_id": nct, "record": record, "versions": history });
    let mut doc_bytes = serde_json::to_vec_pretty(&doc)?;
    doc_bytes.push(b'\n');
    w.put(&format!("trials/{nct}.json"), &doc_bytes)?;
    drop(doc_bytes);
    let record = &doc["record"];
    let history = doc["versions"].as_array().map(Vec::as_slice).unwrap_or(&[]);

    let text = |path: &str| {
        at(record, path)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let title = text("identification.briefTitle")
        .or_else(|| text("identification.officialTitle"))
        .unwrap_or_else(|| nct.to_string());
    let recent = Duration::days(i64::from(ctx.cfg.mirror.recent_days));
    let (versions, changes) =
        crate::publish::from_history(nct, &title, history, state.first_observed);
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
        phase: at(record, "design.phases")
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
    let entries: Vec<FeedEntry> = versions
        .iter()
        .map(|v| FeedEntry {
            detected_at: v.detected_at,
            version: v.version,
            xml: atom::entry_xml(v),
        })
        .collect();
    let link = atom::ctgov_link(nct);
    let feed_title = format!("{nct}: {title}");
    let xml: Vec<&str> = entries.iter().map(|e| e.xml.as_str()).collect();
    let feed = atom::feed_of_entries(
        &atom::FeedMeta {
            key: nct,
            title: &feed_title,
            alternate: Some(&link),
        },
        versions.iter().map(|v| v.detected_at).max(),
        &xml,
    );
    w.put(&format!("feeds/{nct}.atom"), feed.as_bytes())?;
    Ok(TrialPiece {
        format: cache::PIECE_FORMAT,
        nct_id: nct.to_string(),
        key,
        valid_until,
        row,
        blocks: blocks_of(&changes),
        entries: cache::newest_entries(nct, entries, cache::FEED_ENTRIES),
    })
}

/// A trial's change rows (each version's contiguous, as [`crate::publish::from_history`]
/// gives them) as one rendered block per version.
fn blocks_of(rows: &[tables::ChangeRow]) -> Vec<ChangeBlock> {
    let version = |r: &tables::ChangeRow| r.get("version").and_then(|v| v.as_u64());
    let mut out = Vec::new();
    let mut rest = rows;
    while let Some(first) = rest.first() {
        let v = version(first);
        let n = rest.iter().take_while(|r| version(r) == v).count();
        let (block, tail) = rest.split_at(n);
        out.push(ChangeBlock {
            at: first
                .get("detected_at")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string(),
            version: v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
            csv: tables::csv_records(block),
            jsonl: tables::changes_jsonl(block),
        });
        rest = tail;
    }
    out
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
