//! The command line's conventions, shared by every command: exit codes (one table, the
//! README's), usage errors, a closed pipe (`trialwatch changes | head`) ending quietly, and the
//! zone human times are shown in (`--tz`, `TZ`).
//!
//! A new command adopts them by returning [`ExitCode`]s from [`exit`] and wrapping argument
//! mistakes in [`UsageError`]; `cli::main` does the rest.

use std::process::ExitCode;

/// The exit codes of every command, as the README's table lists them.
pub mod exit {
    /// Everything asked for was done.
    pub const OK: u8 = 0;
    /// A fatal error: bad configuration, unusable store, CT.gov not reachable at all.
    pub const FATAL: u8 = 1;
    /// Some trials failed (the others were done), or `verify` found a problem.
    pub const PARTIAL: u8 = 2;
    /// The command line itself is wrong (unknown flag, missing or malformed argument);
    /// `EX_USAGE` of BSD's `sysexits.h`.
    pub const USAGE: u8 = 64;
}

/// A mistake on the command line found after clap parsed it (a malformed NCT ID, say); exits
/// [`exit::USAGE`] like clap's own usage errors. Its text says what is wrong and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(
    /// The message, naming the argument and a valid example.
    pub String,
);

/// The exit code for an error that ended a command: usage mistakes get their own.
pub(crate) fn code_for(e: &anyhow::Error) -> ExitCode {
    if e.chain().any(|c| c.downcast_ref::<UsageError>().is_some()) {
        ExitCode::from(exit::USAGE)
    } else {
        ExitCode::from(exit::FATAL)
    }
}

/// Whether the error is only the reader of our output going away (`| head`, `| less` quit):
/// not a failure of the command, so it ends quietly with exit 0.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The zone for human times: `--tz`, else `$TZ` (not for the daemon itself, whose log and
/// texts stay UTC whatever its environment says), else UTC. An unknown zone is a usage error
/// naming where it came from.
pub(crate) fn display_zone(
    flag: Option<&str>,
    is_daemon: bool,
) -> Result<crate::util::zone::Zone, UsageError> {
    use crate::util::zone::{Zone, parse_zone};
    if let Some(z) = flag {
        return parse_zone(z).map_err(|e| UsageError(format!("--tz: {e}")));
    }
    if is_daemon {
        return Ok(Zone::UTC);
    }
    match std::env::var("TZ") {
        Ok(tz) if !tz.trim().is_empty() => parse_zone(&tz).map_err(|e| {
            UsageError(format!(
                "the TZ environment variable: {e}; or unset TZ to see times in UTC"
            ))
        }),
        _ => Ok(Zone::UTC),
    }
}

/// A command line about to be forwarded to a running daemon, with `$TZ` handed over as `--tz`
/// when the user gave no `--tz` (the daemon's own environment is not the user's).
pub(crate) fn with_tz_arg(args: Vec<String>) -> Vec<String> {
    let given = args.iter().any(|a| a == "--tz" || a.starts_with("--tz="));
    match std::env::var("TZ") {
        Ok(tz) if !given && !tz.trim().is_empty() => {
            ["--tz".to_string(), tz].into_iter().chain(args).collect()
        }
        _ => args,
    }
}

/// Check `--log-level`: a bare word must be a level (a typo such as `warnx` would otherwise be
/// read as a target name and silently log nothing); a filter (`trialwatch::sync=debug,warn`)
/// must parse. The error names the flag and valid values.
pub(crate) fn check_log_level(level: &str) -> Result<(), UsageError> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let bare = !level.contains(['=', ',', ':', '[']);
    let ok = if bare {
        LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
    } else {
        tracing_subscriber::EnvFilter::try_new(level).is_ok()
    };
    if ok {
        Ok(())
    } else {
        Err(UsageError(format!(
            "--log-level `{level}` is not a log level: use one of {} or a filter such as \
             `warn,trialwatch::sync=debug`",
            LEVELS.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_are_checked() {
        for ok in ["warn", "DEBUG", "off", "warn,trialwatch::sync=debug"] {
            assert!(check_log_level(ok).is_ok(), "{ok}");
        }
        for bad in ["warnx", "loud", "trialwatch=nonsense"] {
            assert!(check_log_level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_errors_and_broken_pipes_are_recognised_through_context() {
        let e = anyhow::Error::from(UsageError("bad".into())).context("parsing arguments");
        assert_eq!(code_for(&e), ExitCode::from(exit::USAGE));
        assert_eq!(code_for(&anyhow::anyhow!("x")), ExitCode::from(exit::FATAL));
        let pipe = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing the changes");
        assert!(is_broken_pipe(&pipe));
        assert!(!is_broken_pipe(&anyhow::anyhow!("x")));
    }
}
