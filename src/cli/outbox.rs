//! `trialwatch outbox [--json]`, `outbox retry ID…|--all`, `outbox drop ID…`, `outbox deliver`:
//! show the pending and dead alerts and handle them by hand. Delivery itself is in
//! [`crate::outbox`]; this file builds the notifier from the configuration and prints reports.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::Serialize;

use super::Ctx;
use crate::outbox::{Delivery, DeliveryReport, requeue};
use crate::store::{OutboxEntry, Store};

/// What `trialwatch outbox` does with the alerts instead of listing them.
#[derive(Subcommand, Debug)]
pub enum OutboxAction {
    /// Put alerts (dead letters or waiting ones) back in line now, then deliver what is due
    Retry {
        /// Alert IDs as `trialwatch outbox` shows them
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Vec<String>,
        /// Every alert in the outbox
        #[arg(long)]
        all: bool,
    },
    /// Remove alerts from the outbox without delivering them
    Drop {
        /// Alert IDs as `trialwatch outbox` shows them
        #[arg(required = true)]
        id: Vec<String>,
    },
    /// Deliver the alerts that are due now (what the daemon does on its timer)
    Deliver,
}

/// The alert sender the configuration describes.
pub(crate) fn delivery(ctx: &Ctx) -> anyhow::Result<Delivery> {
    Delivery::new(&ctx.cfg).context("cannot set up alert delivery")
}

/// One line for people: what a delivery run did.
pub(crate) fn delivery_line(d: &DeliveryReport) -> String {
    let mut s = format!("{} delivered", d.delivered);
    if d.retrying > 0 {
        s.push_str(&format!(", {} waiting to be retried", d.retrying));
    }
    if d.dead > 0 {
        s.push_str(&format!(
            ", {} dead letters (see `trialwatch outbox`)",
            d.dead
        ));
    }
    s
}

/// One delivery run of everything due now.
pub(crate) fn deliver_now(ctx: &Ctx, store: &Store) -> anyhow::Result<DeliveryReport> {
    let delivery = delivery(ctx)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(delivery.run(&ctx.cfg, store))?)
}

#[derive(Serialize)]
struct Row<'a> {
    id: String,
    /// "pending" or "dead".
    state: &'static str,
    #[serde(flatten)]
    entry: &'a OutboxEntry,
}

fn print_report(d: &DeliveryReport, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(d)?)?;
    } else {
        writeln!(out, "alerts: {}", delivery_line(d))?;
        for f in &d.failures {
            writeln!(out, "failed: {f}")?;
        }
        for e in &d.store_errors {
            writeln!(out, "store error: {e}")?;
        }
    }
    Ok(())
}

pub(crate) fn run(
    ctx: &Ctx,
    action: Option<OutboxAction>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    match action {
        None => {
            let entries = store.outbox_all()?;
            let rows: Vec<Row> = entries
                .iter()
                .map(|e| Row {
                    id: e.id(),
                    state: if e.is_dead() { "dead" } else { "pending" },
                    entry: e,
                })
                .collect();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            let dead = rows.iter().filter(|r| r.state == "dead").count();
            for r in &rows {
                let when = match r.entry.dead_at {
                    Some(t) => format!("dead since {}", crate::util::zone::seconds(t)),
                    None => format!(
                        "next attempt {}",
                        crate::util::zone::seconds(r.entry.next_attempt_at)
                    ),
                };
                writeln!(
                    out,
                    "{}  {}  {}  {when}{}",
                    r.id,
                    r.state,
                    crate::util::text::plural(r.entry.attempts as usize, "attempt"),
                    r.entry
                        .last_error
                        .as_deref()
                        .map(|e| format!("  last error: {e}"))
                        .unwrap_or_default()
                )?;
            }
            writeln!(
                out,
                "{} pending, {dead} dead{}",
                rows.len() - dead,
                if dead > 0 {
                    "; `trialwatch outbox retry ID|--all` sends them again, `outbox drop ID` discards"
                } else {
                    ""
                }
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Some(OutboxAction::Retry { id, all }) => {
            let ids = if all { Vec::new() } else { id };
            let (n, unknown) = requeue(&store, &ids, crate::clock::now())?;
            let report = deliver_now(ctx, &store)?;
            if json {
                let body = serde_json::json!({
                    "requeued": n,
                    "unknown": unknown,
                    "delivery": report,
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
            } else {
                for u in &unknown {
                    writeln!(out, "no alert {u} in the outbox")?;
                }
                writeln!(out, "{n} alerts requeued")?;
                print_report(&report, false, out)?;
            }
            Ok(if unknown.is_empty() && report.all_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Some(OutboxAction::Drop { id }) => {
            let mut found = Vec::new();
            for i in &id {
                match store.outbox_entry(i)? {
                    Some(e) => found.push(e),
                    None => bail!("no alert {i} in the outbox; `trialwatch outbox` lists them"),
                }
            }
            store.outbox_remove(&found, None)?;
            store.flush()?;
            writeln!(
                out,
                "{} dropped",
                crate::util::text::plural(found.len(), "alert")
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Some(OutboxAction::Deliver) => {
            let report = deliver_now(ctx, &store)?;
            print_report(&report, json, out)?;
            Ok(if report.all_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}
