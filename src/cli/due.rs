//! `trialwatch due [--json]`: the deadline conditions that hold today for the followed trials
//! (results due or overdue, verification lapsing, stale status), most severe first. Lists only;
//! the alerts are the daily evaluation's (`sync`, the daemon).

use std::io::Write;
use std::process::ExitCode;

use super::Ctx;
use crate::sync::deadlines::due_now;

pub(crate) fn run(ctx: &Ctx, json: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let today = crate::clock::now().date_naive();
    let mut rows = due_now(&ctx.cfg, &store, today)?;
    rows.sort_by(|a, b| {
        b.condition
            .severity
            .cmp(&a.condition.severity)
            .then(a.condition.due.cmp(&b.condition.due))
            .then(a.nct_id.cmp(&b.nct_id))
    });
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    } else if rows.is_empty() {
        writeln!(out, "nothing due on {today} among the followed trials")?;
    } else {
        for r in &rows {
            writeln!(
                out,
                "{}\t{}\t{}\t{}",
                r.nct_id,
                r.condition.kind,
                r.condition.summary,
                r.title.as_deref().unwrap_or("")
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
