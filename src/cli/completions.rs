//! `trialwatch completions SHELL` and `trialwatch man`: shell completion scripts and the roff
//! man page, generated from the same clap definition as the parser so they never drift from it.
//!
//! Both print to stdout and need no configuration or store, so an installer can run them on a
//! fresh machine (see the README's install steps).

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use super::Cli;

/// Print the completion script for `shell` (bash, zsh, fish, elvish, powershell).
pub(super) fn completions(
    shell: clap_complete::Shell,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "trialwatch", out);
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Print the man page, trialwatch(1), as roff: global options, every command with its summary,
/// the examples and exit codes (each command's own flags are in `trialwatch COMMAND --help`).
pub(super) fn man(out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    clap_mangen::Man::new(Cli::command())
        .manual("trialwatch manual")
        .render(out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
