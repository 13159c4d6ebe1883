//! `trialwatch backfill [NCT…] [--versions all|last:N|since:DATE] [--json]`: fetch CT.gov's
//! record history of each trial (default: the watch list) into its timeline
//! ([`crate::backfill`]). One line per trial that could not be backfilled, then a summary;
//! exit 2 when some could not (the others were still backfilled).

use std::io::Write;
use std::process::ExitCode;

use super::Ctx;
use crate::backfill::{Problem, Selection};
use crate::sync::client_from_config;

pub(crate) fn run(
    ctx: &Ctx,
    args: &[String],
    versions: &str,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let selection: Selection = versions
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--versions: {e}"))?;
    let (store, ids) = super::named_or_watched(ctx, args)?;
    if ids.is_empty() {
        writeln!(
            out,
            "nothing to backfill: the watch list is empty; add trials with `trialwatch watch add NCT…`"
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let client = client_from_config(&ctx.cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let bar = super::progress::Progress::start("backfilling", &client);
    let progress = |done: usize, total: usize| {
        if let Some(b) = &bar {
            b.update(done, total);
        }
    };
    let report = rt.block_on(crate::backfill::run(
        &client,
        &store,
        ids,
        selection,
        crate::clock::now(),
        bar.is_some()
            .then_some(&progress as &(dyn Fn(usize, usize) + Sync)),
    ));
    store.flush()?;
    if let Some(bar) = &bar {
        bar.finish();
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        for t in &report.trials {
            if let Some(p) = &t.problem {
                writeln!(out, "{}", p.message(&t.nct_id))?;
            }
        }
        writeln!(out, "{}", report.summary())?;
    }
    let failed = report
        .trials
        .iter()
        .any(|t| t.problem.as_ref().is_some_and(|p| *p != Problem::NoHistory));
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
