//! Re-executing this program in place: the daemon after a large sync (`daemon::reexec`), and a
//! heavy command to take its malloc settings (`cli::malloc`).

/// A command that runs this same binary (`/proc/self/exe`, whatever its path was) with this
/// process's `argv[0]` and arguments; the caller adds environment and calls
/// [`std::os::unix::process::CommandExt::exec`], which keeps the PID.
pub fn this_program_again() -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    cmd.args(args);
    cmd
}
