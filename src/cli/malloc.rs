//! The allocator settings of the memory-heavy commands, whoever starts them: `daemon` runs with
//! glibc's malloc as the systemd unit configures it ([`TUNABLES`]), `sync` and `backfill` with
//! two arenas only ([`ONE_SHOT_TUNABLES`]).
//!
//! With glibc's defaults a first sync of 100,000 trials peaked at ~186 MB of RSS for ~115 MB of
//! live heap: each thread gets its own arena (up to 8 per core), and once a large block (a
//! CT.gov page, a zstd context) has been freed, the dynamic mmap threshold rises and every
//! later block below it lands in those arenas, which give memory back only from their top.
//! With the unit's settings (two arenas, a fixed 128 KiB mmap threshold, trimming from 128 KiB)
//! the same sync peaked at ~126 MB (BENCHMARKS.md, "Memory (branch mem)"), but the 128 KiB trim
//! threshold costs a one-shot sync dearly: glibc gives the heap's top back after each large free
//! and faults it in again for the next page, and a re-sync of 10,000 trials fell from ~11,800
//! to ~6,600 trials/s (~7,700 with the three together). Two arenas alone keep most of the gain
//! (132 MB at 100,000 trials) at glibc's speed, so one-shot commands take only that; the
//! daemon, which idles for hours between syncs, keeps the unit's three.
//! glibc reads them only from `GLIBC_TUNABLES` when a process starts, and setting them from
//! inside (`mallopt`) needs `unsafe`, so such a command re-executes itself once with them set:
//! same PID, same arguments, before it has started a thread or opened anything.
//!
//! Nothing happens when `GLIBC_TUNABLES` is already set (to anything, empty included: the
//! user's or the unit's choice wins), on a libc other than glibc, or in the image this
//! re-execution started ([`TUNED_ENV`]).

use super::Command;

/// The glibc malloc tunables of `systemd/trialwatch.service` (`Environment=GLIBC_TUNABLES=`),
/// which a test keeps equal to the unit's.
pub(super) const TUNABLES: &str = "glibc.malloc.trim_threshold=131072:glibc.malloc.mmap_threshold=131072:glibc.malloc.arena_max=2";

/// What `sync` and `backfill` run with: two malloc arenas (see the module doc).
pub(super) const ONE_SHOT_TUNABLES: &str = "glibc.malloc.arena_max=2";

/// Set on the image [`tune_for`] started, so that it never re-executes twice even if glibc
/// drops `GLIBC_TUNABLES` (as it does for a set-user-ID program).
const TUNED_ENV: &str = "TRIALWATCH_MALLOC_TUNED";

/// The settings `command`'s image should run with: [`TUNABLES`] for the daemon,
/// [`ONE_SHOT_TUNABLES`] for the commands that fetch much, none for the others.
fn tunables_for(command: &Command) -> Option<&'static str> {
    match command {
        Command::Daemon => Some(TUNABLES),
        Command::Sync { .. } | Command::Backfill { .. } => Some(ONE_SHOT_TUNABLES),
        _ => None,
    }
}

/// For a heavy `command` started without `GLIBC_TUNABLES`, re-execute this process with its
/// settings ([`tunables_for`]); returns when there is nothing to do or the exec failed (the command then
/// runs with glibc's defaults, as before). Call before any thread is started.
pub(super) fn tune_for(command: &Command) {
    let Some(tunables) = tunables_for(command) else {
        return;
    };
    if std::env::var_os("GLIBC_TUNABLES").is_some() || std::env::var_os(TUNED_ENV).is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        // Only returns on failure, which loses nothing but the settings.
        let _ = crate::util::exec::this_program_again()
            .env("GLIBC_TUNABLES", tunables)
            .env(TUNED_ENV, "1")
            .exec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunables_are_the_systemd_units() {
        let unit = include_str!("../../systemd/trialwatch.service");
        let set = unit
            .lines()
            .find_map(|l| l.strip_prefix("Environment=GLIBC_TUNABLES="))
            .expect("the unit sets GLIBC_TUNABLES");
        assert_eq!(set.trim(), TUNABLES);
    }

    #[test]
    fn only_the_commands_that_fetch_or_stay_up_are_heavy() {
        use clap::Parser;
        let heavy = |args: &[&str]| {
            let cli = super::super::Cli::try_parse_from(
                std::iter::once("trialwatch").chain(args.iter().copied()),
            )
            .unwrap();
            tunables_for(&cli.command)
        };
        assert_eq!(heavy(&["sync"]), Some(ONE_SHOT_TUNABLES));
        assert_eq!(heavy(&["daemon"]), Some(TUNABLES));
        assert_eq!(heavy(&["backfill", "NCT03418623"]), Some(ONE_SHOT_TUNABLES));
        assert_eq!(heavy(&["status"]), None);
        assert_eq!(heavy(&["history", "NCT03418623"]), None);
    }
}
