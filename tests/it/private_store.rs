//! The store and the control socket against local hostility: a store created private whatever
//! the umask, idle connections that cannot starve the control socket, and relative paths that
//! mean what they meant to the user who typed them even when a daemon runs the command.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::daemon::{Daemon, wait_running};
use crate::support::env::{TestEnv, fixture_as, stderr, stdout};

const ID: &str = "NCT09100001";

/// Every path under `dir` (itself included), with its mode bits.
fn modes(dir: &Path, out: &mut Vec<(std::path::PathBuf, u32, bool)>) {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    out.push((
        dir.to_path_buf(),
        meta.permissions().mode() & 0o777,
        meta.is_dir(),
    ));
    if meta.is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            modes(&e.unwrap().path(), out);
        }
    }
}

#[test]
fn sync_under_umask_000_creates_a_private_store() {
    let env = TestEnv::new(&[ID]);
    env.server.put_study(fixture_as("NCT03418623.json", ID));
    let cmd = env.cmd(&["sync"]);
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_remove("RUST_LOG")
        .env_remove("TRIALWATCH_NOW");
    let out = sh.output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let mut all = Vec::new();
    modes(&env.data_dir(), &mut all);
    assert!(all.len() > 3, "{all:?}");
    assert!(all.iter().any(|(p, _, _)| p.ends_with("packs")), "{all:?}");
    for (path, mode, is_dir) in &all {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", path.display());
    }
}

#[test]
fn idle_connections_do_not_delay_a_real_command() {
    let env = TestEnv::new(&[ID]);
    env.server.put_study(fixture_as("NCT03418623.json", ID));
    let mut d = Daemon::start(&env);
    wait_running(&env, &d);
    let socket = env.data_dir().join("control.sock");
    let idle: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    let t0 = Instant::now();
    let out = env.run(&["status"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("daemon: running"), "{}", stdout(&out));
    assert!(t0.elapsed() < Duration::from_secs(14), "{:?}", t0.elapsed());
    drop(idle);
    let (status, _) = d.terminate();
    assert_eq!(status.code(), Some(0), "{}", d.log());
}

#[test]
fn a_relative_secret_file_is_stored_absolute_when_the_daemon_runs_the_command() {
    let env = TestEnv::new(&[ID]);
    env.server.put_study(fixture_as("NCT03418623.json", ID));
    let mut d = Daemon::start(&env);
    wait_running(&env, &d);
    let cwd = env.dir.path().join("elsewhere");
    std::fs::create_dir(&cwd).unwrap();
    std::fs::write(cwd.join("s.txt"), "s3cret\n").unwrap();
    let mut cmd = env.cmd(&[
        "subscribe",
        "webhook",
        "https://example.org/hook",
        "--secret-file",
        "s.txt",
    ]);
    let out = cmd.current_dir(&cwd).output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let list = env.json(&["subscriptions", "--json"]);
    let want = cwd.join("s.txt").display().to_string();
    assert!(
        list.to_string().contains(&format!("{want:?}")),
        "{want} not in {list}"
    );
    let (status, _) = d.terminate();
    assert_eq!(status.code(), Some(0), "{}", d.log());
}

/// Another user whom the socket keeps out is told at once as whom to run the command. Needs
/// root (to run the CLI as `nobody` with `setpriv`); skipped otherwise.
#[test]
fn a_user_locked_out_of_the_socket_is_told_at_once_whom_to_run_as() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !root || !setpriv {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let env = TestEnv::new(&[ID]);
    env.server.put_study(fixture_as("NCT03418623.json", ID));
    let mut d = Daemon::start(&env);
    wait_running(&env, &d);
    // Let `nobody` read the config and the lock file, but not use the socket (0600, root's).
    let open = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    open(env.dir.path(), 0o755).unwrap();
    open(&env.data_dir(), 0o755).unwrap();
    open(&env.config, 0o644).unwrap();
    open(&env.data_dir().join("daemon.lock"), 0o644).unwrap();
    let cmd = env.cmd(&["status"]);
    let t0 = Instant::now();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}{err}", stdout(&out));
    assert!(
        err.contains("control.sock: permission denied; run the command as root (the user the daemon runs as), e.g. `sudo -u root trialwatch"),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let (status, _) = d.terminate();
    assert_eq!(status.code(), Some(0), "{}", d.log());
}

/// A user who cannot even look into the (private) store is told as whom to run, too.
#[test]
fn a_user_locked_out_of_the_store_is_told_whom_to_run_as() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !root || !setpriv {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let env = TestEnv::new(&[ID]);
    env.server.put_study(fixture_as("NCT03418623.json", ID));
    env.ok(&["sync"]);
    let open = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    open(env.dir.path(), 0o755).unwrap();
    open(&env.config, 0o644).unwrap();
    let cmd = env.cmd(&["status"]);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}{err}", stdout(&out));
    assert!(
        err.contains("permission denied; run the command as root (the user the store belongs to), e.g. `sudo -u root trialwatch"),
        "{err}"
    );
}
