//! `trialwatch sync [NCT…]`: one sync run from the command line, with a progress line on a
//! terminal (trials done, rate, time left, CT.gov's retries; never when stderr is piped) and a summary at the end. The alerts the sync
//! enqueued (and any others due) are delivered right after it.

use std::io::Write;
use std::process::ExitCode;

use super::Ctx;
use crate::sync::{SyncReport, client_from_config, run as run_sync};

pub(crate) fn run(
    ctx: &Ctx,
    args: &[String],
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let (store, mut ids) = super::named_or_watched(ctx, args)?;
    // A plain sync runs the watched queries first: their watched members join the sync.
    let has_queries =
        args.is_empty() && !crate::sync::queries::all_queries(&ctx.cfg, &store)?.is_empty();
    if ids.is_empty() && !has_queries {
        writeln!(
            out,
            "nothing to sync: the watch list is empty; add trials with `trialwatch watch add NCT…` \
             or `[watch] nct_ids` in the configuration"
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let client = client_from_config(&ctx.cfg)?;
    let bar = super::progress::Progress::start("syncing", &client);
    let progress = bar.as_ref().map(|b| b.callback());
    let now = crate::clock::now();
    let subs = std::sync::Arc::new(crate::outbox::Subscriptions::load(&ctx.cfg, &store)?);
    let delivery = super::outbox::delivery(ctx)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let query_runs = if has_queries {
        let runs = rt.block_on(crate::sync::queries::run_all(
            &client,
            &store,
            &ctx.cfg,
            subs.clone(),
            now,
        ))?;
        ids = crate::sync::watched_ids(&ctx.cfg, &store)?;
        runs
    } else {
        Vec::new()
    };
    let query_requests = client.request_count();
    let mut report = rt.block_on(run_sync(
        &client,
        &store,
        subs.clone(),
        ids,
        now,
        progress,
        ctx.cfg.watch.backfill,
    ))?;
    report.requests += query_requests;
    if args.is_empty() {
        // The heads the sync just stored are not read back from the store.
        let known = std::mem::take(&mut report.head_facts);
        report.deadlines = crate::sync::deadlines::evaluate_daily_after(
            &ctx.cfg,
            &store,
            subs.clone(),
            now,
            &known,
        )?;
        if let Some(d) = &report.deadlines {
            report.alerts_enqueued += d.alerts_enqueued;
        }
    }
    report.alerts_enqueued += query_runs.iter().map(|q| q.alerts_enqueued).sum::<usize>();
    let query_failed = query_runs.iter().any(|q| q.problem.is_some());
    report.queries = query_runs;
    report.delivery = Some(rt.block_on(delivery.run(&ctx.cfg, &store))?);
    if let Some(bar) = &bar {
        bar.finish();
    }
    if report.nothing_reached() {
        // Every trial failed the same way: one line, not a `failed:` list of the watch list.
        let why = report.failed.first().map_or("", |f| f.error.as_str());
        if json {
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        }
        anyhow::bail!(
            "nothing could be fetched: CT.gov ({}) could not be reached; check the network, \
             a proxy (HTTPS_PROXY) or `[ctgov] base_url`, then run `trialwatch sync` again. \
             Last error: {why}",
            ctx.cfg.ctgov.base_url
        );
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_summary(&report, out)?;
    }
    Ok(if report.all_ok() && !query_failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn print_summary(r: &SyncReport, out: &mut dyn Write) -> std::io::Result<()> {
    use crate::util::text::plural;
    writeln!(
        out,
        "synced {} in {}: {} fetched, {}, {} unchanged, {} failed ({} to CT.gov)",
        plural(r.requested, "trial"),
        crate::util::text::duration(std::time::Duration::from_millis(r.duration_ms)),
        r.fetched,
        plural(r.new_versions, "new version"),
        r.unchanged,
        r.failed.len(),
        plural(usize::try_from(r.requests).unwrap_or(usize::MAX), "request")
    )?;
    if r.backfilled_versions > 0 {
        writeln!(
            out,
            "history: {} backfilled from CT.gov's record history",
            crate::util::text::plural(r.backfilled_versions, "older version")
        )?;
    }
    if r.gap_repaired > 0 {
        writeln!(
            out,
            "gap repair: {} stored from CT.gov's record history (earlier syncs missed them)",
            crate::util::text::plural_of(r.gap_repaired, "missed version", "missed versions")
        )?;
    }
    for q in &r.queries {
        match &q.problem {
            Some(p) => writeln!(out, "query {}: not run: {p}", q.name)?,
            None if q.baseline => writeln!(
                out,
                "query {}: {} (baseline: recorded without alerts)",
                q.name,
                crate::util::text::plural(q.members, "member")
            )?,
            None => writeln!(
                out,
                "query {}: {}, {} entered, {} left",
                q.name,
                crate::util::text::plural(q.members, "member"),
                q.entered,
                q.left
            )?,
        }
    }
    if let Some(d) = r.deadlines.as_ref().filter(|d| d.events > 0) {
        writeln!(
            out,
            "deadlines: {} ({} checked; `trialwatch due` lists what holds today)",
            crate::util::text::plural(d.events, "new event"),
            crate::util::text::plural(d.trials, "trial")
        )?;
    }
    for w in &r.backfill_warnings {
        writeln!(out, "warning: {w}")?;
    }
    for (watched, canonical) in &r.aliases {
        writeln!(
            out,
            "note: {watched} is an alias of {canonical} on CT.gov; it is stored under {watched}"
        )?;
    }
    // Trials that failed for one reason (a batch CT.gov never answered) share one line.
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for f in &r.failed {
        match groups.iter_mut().find(|(e, _)| *e == f.error) {
            Some((_, ids)) => ids.push(f.nct_id.as_str()),
            None => groups.push((&f.error, vec![f.nct_id.as_str()])),
        }
    }
    for (error, ids) in groups {
        writeln!(out, "failed: {}: {error}", id_list(&ids))?;
    }
    if let Some(d) = &r.delivery {
        writeln!(
            out,
            "alerts: {} enqueued; {}",
            r.alerts_enqueued,
            super::outbox::delivery_line(d)
        )?;
    }
    Ok(())
}

/// `NCT1`, or `NCT1, NCT2 (2 trials)`; long lists name the first few.
fn id_list(ids: &[&str]) -> String {
    const SHOWN: usize = 5;
    match ids {
        [one] => (*one).to_string(),
        _ if ids.len() <= SHOWN => format!("{} ({} trials)", ids.join(", "), ids.len()),
        _ => format!(
            "{}, … ({} trials; `trialwatch status --json` lists them all)",
            ids[..SHOWN].join(", "),
            ids.len()
        ),
    }
}
