//! Opening the store from the command line: a read command on a data directory without a
//! store says so instead of creating an empty one, and a store another trialwatch command
//! holds (a long `trialwatch sync`) is waited for, naming who holds it, never shown as sled's
//! raw lock error.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::store::{Store, StoreError};

/// Beside the store: the PID and command of the CLI process that has it open, read only to
/// tell another command who holds the store (a stale file is harmless: it is read only when
/// opening failed on the lock).
const HOLDER_FILE: &str = "cli-holder";

/// How long a command waits for another one to let the store go before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// The command this process runs (`sync`, `history`, …), for the holder file.
static COMMAND: OnceLock<String> = OnceLock::new();

/// Remember the command's name for [`open`]'s holder file; set once by `cli::main`.
pub(super) fn set_command(name: &str) {
    let _ = COMMAND.set(name.to_string());
}

/// Refuse a read command on a data directory that holds no store, with the next step.
pub(super) fn require_existing(dir: &Path) -> anyhow::Result<()> {
    if dir.join("db").exists() {
        return Ok(());
    }
    anyhow::bail!(
        "no store at {}; run `trialwatch sync` first (or pass --data-dir / set `data_dir` to \
         where the store is)",
        dir.display()
    )
}

fn is_lock_error(e: &StoreError) -> bool {
    match e {
        StoreError::Open {
            source: sled::Error::Io(io),
            ..
        } => {
            io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

/// Who holds the store, from the holder file: "PID 123 (`trialwatch sync`)".
fn holder(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(HOLDER_FILE))
        .ok()
        .and_then(|t| {
            let mut lines = t.lines();
            let pid = lines.next()?.trim().parse::<u32>().ok()?;
            let cmd = lines.next().unwrap_or("").trim().to_string();
            // Only a process that still runs holds anything.
            Path::new(&format!("/proc/{pid}"))
                .exists()
                .then(|| format!("PID {pid} (`trialwatch {cmd}`)"))
        })
        .unwrap_or_else(|| "another trialwatch process".into())
}

/// Open the store at `dir`, waiting while another trialwatch command holds it; `reading`
/// (a read command) also works on a store that cannot be written (`Store::open_for_reading`).
pub(super) fn open(dir: &Path, reading: bool) -> anyhow::Result<Store> {
    let started = Instant::now();
    let mut told = false;
    loop {
        let opened = if reading {
            Store::open_for_reading(dir)
        } else {
            Store::open(dir)
        };
        match opened {
            Ok(s) => {
                let text = format!(
                    "{}\n{}\n",
                    std::process::id(),
                    COMMAND.get().map_or("", String::as_str)
                );
                // Best effort: only messages of other commands read it. Private like the
                // rest of the store, whatever the umask.
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(dir.join(HOLDER_FILE))
                    .and_then(|mut f| f.write_all(text.as_bytes()));
                return Ok(s);
            }
            Err(e) if is_lock_error(&e) => {
                let who = holder(dir);
                if started.elapsed() >= LOCK_WAIT {
                    anyhow::bail!(
                        "the store at {} is in use by {who}; waited {} s: let it finish (or stop \
                         it) and run this command again",
                        dir.display(),
                        LOCK_WAIT.as_secs()
                    );
                }
                if !told {
                    eprintln!(
                        "waiting for the store at {}: it is in use by {who}",
                        dir.display()
                    );
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
