//! `trialwatch repair`: rebuild the store's index from the commit records in its packs
//! (`store::repair`), and say plainly what was restored, what was kept from the old index and
//! what is lost.

use std::io::Write;
use std::process::ExitCode;

use super::Ctx;

/// Run `repair`. Refused inside the daemon, which has the index open: the index is swapped
/// underneath, so the store must be free.
pub(super) fn run(ctx: &Ctx, json: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if ctx.store.get().is_some() {
        anyhow::bail!(
            "`trialwatch repair` needs the store to itself: stop the daemon (e.g. `systemctl stop \
             trialwatch`), run `trialwatch repair`, then start it again"
        );
    }
    let dir = &ctx.cfg.data_dir;
    let rep = crate::store::repair(dir)?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rep)?)?;
    } else {
        writeln!(
            out,
            "rebuilt the index of {} from {} in the packs: {}, {}",
            dir.display(),
            crate::util::text::plural(rep.commits, "commit record"),
            crate::util::text::plural(rep.trials, "trial"),
            crate::util::text::plural(rep.versions, "version")
        )?;
        if rep.skipped_bytes > 0 {
            writeln!(
                out,
                "skipped {} pack bytes that are no whole entry (remains of failed writes, or damage)",
                rep.skipped_bytes
            )?;
        }
        match &rep.old_index_error {
            None => writeln!(
                out,
                "kept from the old index: the watch list, subscriptions, the outbox and bookkeeping"
            )?,
            Some(why) => writeln!(out, "the old index could not be read ({why})")?,
        }
        for lost in &rep.not_restored {
            writeln!(out, "not restored: {lost}")?;
        }
        if let Some(kept) = &rep.old_index_kept_at {
            writeln!(
                out,
                "the old index was kept at {} (delete it once you are satisfied)",
                kept.display()
            )?;
        }
        super::print_problems(&rep.problems, out)?;
    }
    Ok(super::store_verdict(&rep.problems))
}
