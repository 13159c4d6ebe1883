//! `trialwatch query add|list|show|remove`: the watched CT.gov searches kept in the store,
//! listed together with the configuration's `[[query]]` entries (which these commands cannot
//! change: they say so instead). Queries run with every `sync`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use serde::Serialize;

use super::Ctx;
use crate::model::QuerySpec;
use crate::store::{Member, QueryState};
use crate::sync::queries::all_queries;

/// What `trialwatch query` does.
#[derive(Subcommand, Debug)]
pub enum QueryAction {
    /// Watch a CT.gov search: every sync runs it and alerts on trials entering or leaving it
    ///
    /// Example: `trialwatch query add cmv-china --cond "CMV infection" --status RECRUITING
    /// --locn China`
    Add(Box<AddQuery>),
    /// List the watched queries: the configuration's and the store's
    List {
        /// Print the queries as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show a query: its parameters, its last run and its members
    Show {
        /// The query's name
        name: String,
        /// Print the query as JSON
        #[arg(long)]
        json: bool,
    },
    /// Stop watching a query added with `query add` (its members' stored history is kept)
    Remove {
        /// The query's name
        name: String,
    },
}

/// `query add`: a query's name and parameters.
#[derive(clap::Args, Debug)]
pub struct AddQuery {
    /// The query's name (letters, digits, `-`, `_`), for `subscribe --query NAME`
    name: String,
    /// Conditions or diseases (query.cond)
    #[arg(long)]
    cond: Option<String>,
    /// Words anywhere in the record (query.term)
    #[arg(long)]
    term: Option<String>,
    /// Interventions or treatments (query.intr)
    #[arg(long)]
    intr: Option<String>,
    /// Sponsors or collaborators (query.spons)
    #[arg(long)]
    spons: Option<String>,
    /// Locations: city, state, country or facility (query.locn)
    #[arg(long)]
    locn: Option<String>,
    /// Only trials with one of these overall statuses (e.g. RECRUITING NOT_YET_RECRUITING)
    #[arg(long, num_args = 1.., value_name = "S")]
    status: Vec<String>,
    /// Only trials in one of these phases (e.g. PHASE2 PHASE3, or 2 3)
    #[arg(long, num_args = 1.., value_name = "P")]
    phase: Vec<String>,
    /// Only this study type: INTERVENTIONAL, OBSERVATIONAL or EXPANDED_ACCESS
    #[arg(long = "type", value_name = "T")]
    study_type: Option<String>,
    /// More CT.gov search parameters, e.g. 'query.cond=covid&filter.overallStatus=RECRUITING'
    #[arg(long, value_name = "PARAMS")]
    raw: Option<String>,
    /// Also sync its members with full change tracking
    #[arg(long)]
    watch: bool,
}

#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    query: &'a QuerySpec,
    /// "config" or "store".
    source: &'static str,
    /// The CT.gov parameters it runs with.
    params: String,
    #[serde(flatten)]
    state: QueryState,
}

#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    listed: Listed<'a>,
    /// Current and former members.
    members: Vec<Member>,
}

pub(crate) fn run(ctx: &Ctx, action: QueryAction, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match action {
        QueryAction::Add(add) => {
            let AddQuery {
                name,
                cond,
                term,
                intr,
                spons,
                locn,
                status,
                phase,
                study_type,
                raw,
                watch,
            } = *add;
            // Checked before anything is stored.
            let spec = QuerySpec {
                name,
                cond,
                term,
                intr,
                spons,
                locn,
                status,
                phase,
                study_type,
                raw,
                watch,
            }
            .validated()
            .map_err(anyhow::Error::msg)?;
            if ctx.cfg.queries.declared.iter().any(|q| q.name == spec.name) {
                bail!(
                    "query {} is declared in the configuration ({}); change it there, or pick \
                     another name",
                    spec.name,
                    config_file(ctx)
                );
            }
            let store = ctx.open_store()?;
            let replaced = store.queries()?.into_iter().find(|q| q.name == spec.name);
            if replaced.as_ref() == Some(&spec) {
                writeln!(out, "query {} is already watched as given", spec.name)?;
                return Ok(ExitCode::SUCCESS);
            }
            store.query_put(&spec)?;
            store.flush()?;
            writeln!(
                out,
                "{} query {}: {}{}",
                if replaced.is_some() {
                    "updated"
                } else {
                    "watching"
                },
                spec.name,
                spec.describe(),
                if spec.watch {
                    " (members synced too)"
                } else {
                    ""
                }
            )?;
            if replaced.is_none() {
                writeln!(
                    out,
                    "the next sync records its members without alerts (a baseline); later syncs \
                     alert on entries and exits"
                )?;
            }
        }
        QueryAction::List { json } => {
            let store = ctx.open_store()?;
            let queries = all_queries(&ctx.cfg, &store)?;
            let mut rows = Vec::new();
            for q in &queries {
                rows.push(listed(ctx, &store, q)?);
            }
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if rows.is_empty() {
                writeln!(
                    out,
                    "no queries; add one with `trialwatch query add NAME --cond …` or [[query]] \
                     in the configuration"
                )?;
            } else {
                for r in &rows {
                    writeln!(out, "{}", summary_line(r))?;
                }
            }
        }
        QueryAction::Show { name, json } => {
            let store = ctx.open_store()?;
            let queries = all_queries(&ctx.cfg, &store)?;
            let Some(q) = queries.iter().find(|q| q.name == name) else {
                bail!("there is no query {name}; `trialwatch query list` lists them");
            };
            let shown = Shown {
                listed: listed(ctx, &store, q)?,
                members: store.query_members(&q.name)?,
            };
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&shown)?)?;
            } else {
                writeln!(out, "{}", summary_line(&shown.listed))?;
                for m in shown.members.iter().filter(|m| m.is_current()) {
                    writeln!(
                        out,
                        "  {}  since {} ({})  {}  {}",
                        m.nct_id,
                        m.entered_at.format("%Y-%m-%d"),
                        m.entered_because,
                        m.status.as_deref().unwrap_or("-"),
                        m.title.as_deref().unwrap_or("")
                    )?;
                }
                for m in shown.members.iter().filter(|m| !m.is_current()) {
                    writeln!(
                        out,
                        "  {}  left {} (in it from {})  {}",
                        m.nct_id,
                        m.left_at
                            .map(|t| t.format("%Y-%m-%d").to_string())
                            .unwrap_or_default(),
                        m.entered_at.format("%Y-%m-%d"),
                        m.title.as_deref().unwrap_or("")
                    )?;
                }
            }
        }
        QueryAction::Remove { name } => {
            if ctx.cfg.queries.declared.iter().any(|q| q.name == name) {
                bail!(
                    "query {name} is declared in the configuration ({}); remove its [[query]] \
                     entry there",
                    config_file(ctx)
                );
            }
            let store = ctx.open_store()?;
            if !store.query_remove(&name)? {
                bail!("there is no query {name}; `trialwatch query list` lists them");
            }
            store.flush()?;
            writeln!(
                out,
                "no longer watching query {name} (its members' stored history is kept)"
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn config_file(ctx: &Ctx) -> String {
    ctx.cfg
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn listed<'a>(
    ctx: &Ctx,
    store: &crate::store::Store,
    q: &'a QuerySpec,
) -> anyhow::Result<Listed<'a>> {
    Ok(Listed {
        query: q,
        source: if ctx.cfg.queries.declared.iter().any(|c| c.name == q.name) {
            "config"
        } else {
            "store"
        },
        params: q.describe(),
        state: store.query_state(&q.name)?,
    })
}

fn summary_line(r: &Listed<'_>) -> String {
    let run = match (&r.state.last_run, &r.state.problem) {
        (_, Some(p)) => format!("problem: {p}"),
        (Some(t), None) => format!(
            "{} at {}",
            crate::util::text::plural(r.state.members, "member"),
            crate::util::zone::minutes(*t)
        ),
        (None, None) => "not run yet".to_string(),
    };
    format!(
        "{}\t({}){}\t{}\t{run}",
        r.query.name,
        r.source,
        if r.query.watch { ", watched" } else { "" },
        r.params
    )
}
