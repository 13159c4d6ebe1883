//! One daemon per data directory: an advisory lock (`flock`, through `fs4`) on `<data_dir>/daemon.lock`,
//! held for the daemon's whole life and released by the kernel when it exits, however it
//! exits, so a stale file never blocks a restart. The file's text names the holder's PID and
//! its control socket, which is how the CLI finds a running daemon (the socket may live in
//! `$RUNTIME_DIRECTORY`, which the CLI's environment does not know).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

// Fully qualified calls: std's own `File::try_lock` (Rust 1.89) is newer than our MSRV.
use fs4::FileExt;
use fs4::TryLockError;

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "daemon.lock";

/// The lock, held until dropped.
#[derive(Debug)]
pub struct DaemonLock {
    /// Kept open: closing the file would release the lock.
    _file: File,
}

/// What the lock file says about the daemon holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holder's PID (for messages: "stop it first").
    pub pid: Option<u32>,
    /// The holder's control socket (where the CLI forwards commands).
    pub socket: Option<PathBuf>,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another daemon holds it.
    #[error(
        "another trialwatch daemon (PID {pid}) already runs on the data directory {dir}; stop it \
         first (`systemctl stop trialwatch` or `kill {pid}`), or give this one another --data-dir",
        pid = .holder.pid.map(|p| p.to_string()).unwrap_or_else(|| "unknown".into()),
        dir = .dir.display()
    )]
    Held {
        /// The data directory both daemons want.
        dir: PathBuf,
        /// Who holds it.
        holder: Holder,
    },
    /// The lock file cannot be created, read or written.
    #[error("cannot use the lock file {path}: {source}; check that the data directory is writable")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

fn parse(text: &str) -> Holder {
    let mut h = Holder {
        pid: None,
        socket: None,
    };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("pid=") {
            h.pid = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("socket=") {
            h.socket = Some(PathBuf::from(v.trim_end()));
        }
    }
    h
}

/// Take the lock for this process and record its PID and control socket in the file.
pub fn acquire(data_dir: &Path, socket: &Path) -> Result<DaemonLock, LockError> {
    let path = data_dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    crate::store::create_private_dir(data_dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .mode(0o600)
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    // A CLI command probing the lock holds it for a moment: retry briefly before giving up.
    let mut tries = 0;
    loop {
        match FileExt::try_lock(&file) {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    dir: data_dir.to_path_buf(),
                    holder: parse(&text),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    write!(
        file,
        "pid={}\nsocket={}\n",
        std::process::id(),
        socket.display()
    )
    .map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(DaemonLock { _file: file })
}

/// The running daemon holding `data_dir`, if any (this process included).
pub fn holder(data_dir: &Path) -> Option<Holder> {
    let mut file = File::open(data_dir.join(LOCK_FILE)).ok()?;
    // A shared lock succeeds only when no daemon holds the exclusive one.
    match FileExt::try_lock_shared(&file) {
        Ok(()) => {
            let _ = FileExt::unlock(&file);
            None
        }
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            file.read_to_string(&mut text).ok()?;
            Some(parse(&text))
        }
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_first_holder_and_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("control.sock");
        assert_eq!(holder(dir.path()), None);
        let lock = acquire(dir.path(), &sock).unwrap();
        let h = holder(dir.path()).unwrap();
        assert_eq!(h.pid, Some(std::process::id()));
        assert_eq!(h.socket.as_deref(), Some(sock.as_path()));
        let err = acquire(dir.path(), &sock).unwrap_err().to_string();
        assert!(
            err.contains(&format!("PID {}", std::process::id())),
            "{err}"
        );
        drop(lock);
        assert_eq!(holder(dir.path()), None);
        acquire(dir.path(), &sock).unwrap();
    }
}
