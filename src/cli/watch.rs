//! `trialwatch watch add|remove|list`: the watch list kept in the store, shown merged with the
//! configuration's list (which this command cannot change: it says so instead).

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use serde::Serialize;

use super::{Ctx, parse_nct};

/// What `trialwatch watch` does to the store's watch list.
#[derive(Subcommand, Debug)]
pub enum WatchAction {
    /// Add trials to the watch list
    Add {
        /// NCT IDs to start watching
        #[arg(required = true)]
        nct: Vec<String>,
    },
    /// Remove trials from the watch list (their stored history is kept)
    Remove {
        /// NCT IDs to stop watching
        #[arg(required = true)]
        nct: Vec<String>,
    },
    /// List watched trials: the configuration's and the store's
    List {
        /// Print the watch list as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Entry {
    nct_id: String,
    /// "config", "store" or "config+store".
    source: &'static str,
}

pub(crate) fn run(ctx: &Ctx, action: WatchAction, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match action {
        WatchAction::Add { nct } => {
            let ids = nct
                .iter()
                .map(|s| parse_nct(s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let store = ctx.open_store()?;
            let now = crate::clock::now();
            for id in ids {
                if store.watch_add(&id, now)? {
                    writeln!(out, "watching {id}")?;
                } else {
                    writeln!(out, "{id} was already watched")?;
                }
            }
            store.flush()?;
        }
        WatchAction::Remove { nct } => {
            let ids = nct
                .iter()
                .map(|s| parse_nct(s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let store = ctx.open_store()?;
            for id in ids {
                let removed = store.watch_remove(&id)?;
                let in_config = ctx.cfg.watch.ids().contains(&id);
                match (removed, in_config) {
                    (_, true) => writeln!(
                        out,
                        "{id} is listed in the configuration ({}); remove it there to stop watching it",
                        ctx.cfg
                            .source
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    )?,
                    (true, false) => {
                        writeln!(out, "no longer watching {id} (its history is kept)")?
                    }
                    (false, false) => writeln!(out, "{id} was not watched")?,
                }
            }
            store.flush()?;
        }
        WatchAction::List { json } => {
            let store = ctx.open_store()?;
            let stored = store.watch_list()?;
            // Sets of numbers, not scans: both lists can hold 100,000 trials.
            let stored_ids: std::collections::HashSet<u32> =
                stored.iter().map(|w| w.nct_id.number()).collect();
            let config = ctx.cfg.watch.ids();
            let mut entries: Vec<Entry> = config
                .iter()
                .map(|id| Entry {
                    source: if stored_ids.contains(&id.number()) {
                        "config+store"
                    } else {
                        "config"
                    },
                    nct_id: id.into(),
                })
                .collect();
            let config_ids: std::collections::HashSet<u32> =
                config.iter().map(|id| id.number()).collect();
            for w in &stored {
                if !config_ids.contains(&w.nct_id.number()) {
                    entries.push(Entry {
                        nct_id: w.nct_id.to_string(),
                        source: "store",
                    });
                }
            }
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&entries)?)?;
            } else {
                for e in &entries {
                    writeln!(out, "{}\t{}", e.nct_id, e.source)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
