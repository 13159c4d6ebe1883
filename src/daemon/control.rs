//! The control socket: how CLI commands run while the daemon holds the store (sled lets one
//! process open it). The CLI sends the arguments it was started with; the daemon parses them
//! the same way, runs the command against its open store on a blocking thread and streams the
//! output back, then the exit code. The user sees the same output and exit code either way.
//!
//! Wire format, one connection per command:
//! - request: one line of JSON, `{"v":1,"args":["history","NCT…"]}` (argv without `argv[0]`);
//! - response: frames of `tag (1 byte) | length (u32 BE) | payload`: `o` stdout bytes,
//!   `e` stderr text, `p` a progress event (JSON [`ProgressEvent`], only when the request said
//!   `"progress":true`, so an older CLI never meets one), `x` the exit code (1 byte), which ends
//!   the response. A sync handed to the daemon thus draws its bar in the user's terminal.
//!
//! A request must arrive within [`REQUEST_TIMEOUT`] of connecting, and at most
//! [`MAX_CONNECTIONS`] connections are served at once (waiting for their request or running);
//! one more is answered with a single `b` frame (busy), on which the CLI tries again shortly.
//! Requests are read on the async runtime, so idle connections hold no thread and never delay
//! the accept loop.
//!
//! The socket is created 0600 in the data directory or `$RUNTIME_DIRECTORY` ([`socket_path`]);
//! its path is recorded in the daemon's lock file, where the CLI looks for it.
//!
//! Both sides live here: the daemon's (bind, accept, [`handle`]) and the CLI's ([`forward`]).
//! Not here: the command set ([`Executor`] is implemented by [`crate::cli`]).

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::store::Store;

/// File name of the socket.
pub const SOCKET_FILE: &str = "control.sock";
/// Protocol version: a daemon refuses requests of another version with a clear message.
const PROTOCOL: u32 = 1;
/// Longest request line accepted (arguments are small).
const MAX_REQUEST: u64 = 1 << 20;
/// How long a connection may take to send its request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How many connections are served at once; more are answered "busy" at once.
pub const MAX_CONNECTIONS: usize = 64;

#[derive(Serialize, Deserialize)]
struct Request {
    v: u32,
    args: Vec<String>,
    /// The CLI draws the command's progress itself (`p` frames); older CLIs leave it out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    progress: bool,
}

/// What a forwarded sync or backfill tells the CLI that handed it over, which draws it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressEvent {
    /// `done` of `total` trials finished.
    Done {
        /// Trials finished.
        done: usize,
        /// Trials in the run.
        total: usize,
    },
    /// CT.gov is slow or failing: the retry notice to show.
    Retry {
        /// "waiting for CT.gov: attempt 2 of 4 …".
        message: String,
    },
}

/// Where a forwarded command's progress goes (the CLI's `p` frames).
pub type ProgressSink = Arc<dyn Fn(&ProgressEvent) + Send + Sync>;

thread_local! {
    /// Set on the thread running a forwarded command whose CLI asked for progress.
    static PROGRESS: RefCell<Option<ProgressSink>> = const { RefCell::new(None) };
}

/// The progress sink of the forwarded command running on this thread, if its CLI draws
/// progress; the progress bar takes it when it starts (later events come from other threads).
pub fn progress_sink() -> Option<ProgressSink> {
    PROGRESS.with(|p| p.borrow().clone())
}

/// Where the daemon puts its socket: `$RUNTIME_DIRECTORY` (systemd's `RuntimeDirectory=`)
/// when set, else the data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    std::env::var_os("RUNTIME_DIRECTORY")
        // systemd may list several directories separated by ':'; the first is ours.
        .and_then(|v| {
            v.to_string_lossy()
                .split(':')
                .next()
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| data_dir.to_path_buf())
        .join(SOCKET_FILE)
}

/// A command parsed from forwarded arguments, ready to run against the daemon's store.
pub struct Job {
    /// Runs alone with respect to syncs and outbox delivery (the daemon's own and forwarded
    /// ones): `sync`, `outbox deliver|retry|drop` (so no alert is sent twice at once), and
    /// `verify`, which must not see a sync half-way.
    pub exclusive: bool,
    /// Runs the command, writing its output; returns the exit code, or the error to print.
    #[allow(clippy::type_complexity)]
    pub run: Box<dyn FnOnce(&Config, &Store, &mut dyn Write) -> anyhow::Result<u8> + Send>,
}

/// Turns forwarded arguments into a [`Job`]. Implemented by the CLI, so that this module does
/// not depend on the command set. `Err` is a message for the user (exit code 1).
pub trait Executor: Send + Sync {
    /// Parse `args` (the command line without `argv[0]`) exactly as the CLI would.
    fn parse(&self, args: &[String]) -> Result<Job, String>;
}

/// Frames output into the response stream; shared with the progress sink, so frames written
/// from several threads never interleave.
struct FrameWriter {
    stream: Arc<Mutex<UnixStream>>,
}

impl FrameWriter {
    fn frame(&self, tag: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut s = self
            .stream
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        write_frame(&mut *s, tag, payload)
    }
}

fn write_frame(w: &mut impl Write, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    for chunk in payload.chunks(u32::MAX as usize) {
        w.write_all(&[tag])?;
        w.write_all(&(chunk.len() as u32).to_be_bytes())?;
        w.write_all(chunk)?;
    }
    Ok(())
}

impl Write for FrameWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.frame(b'o', buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stream
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .flush()
    }
}

/// What the daemon gives each forwarded command.
pub struct Serving {
    /// Turns the forwarded arguments into the job to run.
    pub executor: Arc<dyn Executor>,
    /// The current configuration (replaced on SIGHUP).
    pub config: Arc<dyn Fn() -> Arc<Config> + Send + Sync>,
    /// The daemon's open store, which the command uses instead of opening its own.
    pub store: Store,
    /// Held while a sync (or another exclusive command) runs, shared with the scheduled syncs.
    pub sync_lock: Arc<tokio::sync::Mutex<()>>,
}

/// Serve one connection to the end (blocking; run it on a blocking thread).
pub fn handle(stream: UnixStream, serving: &Serving) {
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let mut line = String::new();
    let read = BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line);
    serve(stream, read.map(|_| line), serving);
}

/// Serve a connection whose request line was read (or could not be): run it, answer.
fn serve(mut stream: UnixStream, read: std::io::Result<String>, serving: &Serving) {
    let request: Result<Request, String> = match read {
        Ok(line) => serde_json::from_str(&line).map_err(|e| format!("bad request: {e}")),
        Err(e) => Err(format!("cannot read the request: {e}")),
    };
    let (job, args, progress) = match request {
        Ok(r) if r.v == PROTOCOL => match serving.executor.parse(&r.args) {
            Ok(job) => (job, r.args, r.progress),
            Err(msg) => return finish(&mut stream, Some(&msg), 1),
        },
        Ok(r) => {
            let msg = format!(
                "the running daemon speaks control protocol {PROTOCOL}, this command {}; \
                 run the same trialwatch version as the daemon (or restart the daemon after an upgrade)",
                r.v
            );
            return finish(&mut stream, Some(&msg), 1);
        }
        Err(msg) => return finish(&mut stream, Some(&msg), 1),
    };
    tracing::debug!(command = ?args, "running a forwarded command");
    let _guard = job.exclusive.then(|| serving.sync_lock.blocking_lock());
    let cfg = (serving.config)();
    let shared = match stream.try_clone() {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => {
            let msg = format!("cannot answer on the control socket: {e}");
            return finish(&mut stream, Some(&msg), 1);
        }
    };
    if progress {
        let frames = FrameWriter {
            stream: shared.clone(),
        };
        let sink: ProgressSink = Arc::new(move |ev: &ProgressEvent| {
            if let Ok(json) = serde_json::to_vec(ev) {
                // The CLI went away: the command goes on, its progress is nobody's business.
                let _ = frames.frame(b'p', &json);
            }
        });
        PROGRESS.with(|p| *p.borrow_mut() = Some(sink));
    }
    let result = {
        let mut out = std::io::BufWriter::new(FrameWriter {
            stream: shared.clone(),
        });
        // A command that panics must not take its connection down unanswered: the CLI is told,
        // and the daemon (its store, its schedule, the other commands) carries on.
        let run = job.run;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run(&cfg, &serving.store, &mut out)
        }))
        .unwrap_or_else(|panic| {
            let what = panic_message(panic.as_ref());
            tracing::error!(command = ?args, panic = %what, "a forwarded command panicked");
            Err(anyhow::anyhow!(
                "the command failed inside the daemon (a bug: {what}); the daemon keeps running, \
                 see its log, and please report this"
            ))
        });
        let _ = out.flush();
        r
    };
    PROGRESS.with(|p| *p.borrow_mut() = None);
    match result {
        Ok(code) => finish(&mut stream, None, code),
        Err(e) => finish(&mut stream, Some(&format!("{e:#}")), 1),
    }
}

/// The text a panic was raised with (`panic!("…")` gives a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

fn finish(stream: &mut UnixStream, error: Option<&str>, code: u8) {
    let r = (|| {
        if let Some(e) = error {
            write_frame(stream, b'e', format!("error: {e}\n").as_bytes())?;
        }
        write_frame(stream, b'x', &[code])?;
        stream.flush()
    })();
    if let Err(e) = r {
        tracing::debug!(error = %e, "the CLI went away before the answer was sent");
    }
}

/// Bind the control socket with mode 0600 (only the daemon's user may run commands in it).
pub(super) fn bind(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        crate::store::create_private_dir(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    // We hold the lock, so a socket file left here is a dead daemon's.
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).with_context(|| {
        format!(
            "cannot create the control socket {}; check that its directory is writable (paths \
             longer than 107 bytes do not work: use a shorter --data-dir or set RUNTIME_DIRECTORY)",
            path.display()
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private (0600)", path.display()))?;
    Ok(listener)
}

/// Counts the connections being served; the count drops when the slot is.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A slot if fewer than `max` are taken.
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Read the request line (at most [`MAX_REQUEST`] bytes, within [`REQUEST_TIMEOUT`]).
async fn read_request(stream: &mut tokio::net::UnixStream) -> std::io::Result<String> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(stream.take(MAX_REQUEST));
    match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(r) => r.map(|_| line),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no request within {} s", REQUEST_TIMEOUT.as_secs()),
        )),
    }
}

/// Tell a connection over the limit that the daemon is busy (the CLI tries again), then let
/// its request arrive before closing, so that the CLI's write of it does not fail.
async fn answer_busy(mut stream: tokio::net::UnixStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut frame = vec![b'b'];
    frame.extend_from_slice(&0u32.to_be_bytes());
    if stream.write_all(&frame).await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut sink)).await;
}

/// Accept CLI connections until `stop` is cancelled; each command runs on a blocking thread
/// tracked by `commands` (so shutdown can wait for it, and a panicking one is forgotten).
pub(super) async fn accept_loop(
    listener: tokio::net::UnixListener,
    serving: Arc<Serving>,
    commands: TaskTracker,
    stop: CancellationToken,
) {
    let served = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let mut stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = Slot::take(&served, MAX_CONNECTIONS) else {
            tracing::debug!("control socket busy: {MAX_CONNECTIONS} connections served");
            tokio::spawn(answer_busy(stream));
            continue;
        };
        let (serving, commands, stop) = (serving.clone(), commands.clone(), stop.clone());
        // The request is read here, not on a thread: an idle connection costs a task.
        tokio::spawn(async move {
            let read = tokio::select! {
                () = stop.cancelled() => return,
                r = read_request(&mut stream) => r,
            };
            let std_stream = match stream.into_std().and_then(|s| {
                s.set_nonblocking(false)?;
                Ok(s)
            }) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot use a control connection");
                    return;
                }
            };
            commands.spawn_blocking(move || {
                let _slot = slot;
                serve(std_stream, read, &serving)
            });
        });
    }
}

/// Errors of the forwarding client.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Nothing listens (yet): the caller may wait for a starting daemon.
    #[error("cannot connect to the daemon's control socket {path}: {source}")]
    Connect {
        /// The socket tried.
        path: PathBuf,
        /// Why connecting failed.
        #[source]
        source: std::io::Error,
    },
    /// The socket's permissions keep us out: another user runs the daemon.
    #[error(
        "cannot use the daemon's control socket {path}: permission denied; run the command as \
         {owner} (the user the daemon runs as), e.g. `sudo -u {owner} trialwatch …`"
    )]
    PermissionDenied {
        /// The socket tried.
        path: PathBuf,
        /// Its owner's user name, or uid when it has none.
        owner: String,
    },
    /// The daemon serves as many connections as it takes: try again shortly.
    #[error("the daemon is busy (too many connections to its control socket); try again")]
    Busy,
    /// The connection broke while the command ran (the daemon stopped or crashed).
    #[error(
        "lost the connection to the daemon while the command ran ({0}); it may have been \
         stopped: see `trialwatch status`, then run the command again"
    )]
    Lost(std::io::Error),
    /// The answer ended before its exit code.
    #[error(
        "the daemon closed the connection before the command finished (is it shutting down?); \
         run the command again"
    )]
    Truncated,
}

/// What a failed `connect` means: no permission (EACCES, EPERM) is final and names the user to
/// run as; anything else may be a daemon still starting.
fn connect_error(socket: &Path, source: std::io::Error) -> ForwardError {
    if source.kind() == std::io::ErrorKind::PermissionDenied {
        ForwardError::PermissionDenied {
            path: socket.to_path_buf(),
            owner: owner_of(socket),
        }
    } else {
        ForwardError::Connect {
            path: socket.to_path_buf(),
            source,
        }
    }
}

/// The user name owning `path` (its uid when /etc/passwd has no name, or its directory's owner
/// when the socket itself cannot be seen).
pub(crate) fn owner_of(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(path)
        .or_else(|_| std::fs::metadata(path.parent().unwrap_or(path)))
        .map(|m| m.uid());
    match uid {
        Ok(uid) => std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|p| user_name(&p, uid))
            .unwrap_or_else(|| uid.to_string()),
        Err(_) => "the daemon's user".into(),
    }
}

/// The name of `uid` in a passwd file's text.
fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id = f.nth(1)?;
        (id.parse() == Ok(uid) && !name.is_empty()).then(|| name.to_string())
    })
}

/// Run a command in the daemon listening on `socket`, copying its output to our stdout and
/// stderr and handing its progress events to `on_progress`; returns its exit code.
pub fn forward(
    socket: &Path,
    args: Vec<String>,
    on_progress: &mut dyn FnMut(ProgressEvent),
) -> Result<ExitCode, ForwardError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| connect_error(socket, source))?;
    let mut req = serde_json::to_vec(&Request {
        v: PROTOCOL,
        args,
        progress: true,
    })
    .unwrap_or_default();
    req.push(b'\n');
    // A daemon that is busy may answer (and close) before our request is written: its
    // answer, not the failed write, is what counts.
    let mut written = stream.write_all(&req).err();
    let mut reader = BufReader::new(stream);
    let stdout = std::io::stdout();
    let mut first = true;
    loop {
        let mut head = [0u8; 5];
        match reader.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) => {
                return Err(match written.take() {
                    Some(w) => ForwardError::Lost(w),
                    None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        ForwardError::Truncated
                    }
                    None => ForwardError::Lost(e),
                });
            }
        }
        if first && head[0] == b'b' {
            return Err(ForwardError::Busy);
        }
        first = false;
        if let Some(w) = written.take() {
            return Err(ForwardError::Lost(w));
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut payload = vec![0u8; len];
        reader
            .read_exact(&mut payload)
            .map_err(ForwardError::Lost)?;
        match head[0] {
            b'o' => {
                // A closed stdout (`| head`) ends our interest, not the daemon's command.
                let _ = stdout.lock().write_all(&payload);
            }
            b'e' => {
                let _ = std::io::stderr().write_all(&payload);
            }
            b'p' => {
                // An event this CLI cannot read is skipped: progress is only a display.
                if let Ok(ev) = serde_json::from_slice(&payload) {
                    on_progress(ev);
                }
            }
            b'x' => {
                let _ = stdout.lock().flush();
                return Ok(ExitCode::from(payload.first().copied().unwrap_or(1)));
            }
            _ => return Err(ForwardError::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Panicky;

    impl Executor for Panicky {
        fn parse(&self, args: &[String]) -> Result<Job, String> {
            let boom = args.first().is_some_and(|a| a == "boom");
            Ok(Job {
                exclusive: true,
                run: Box::new(move |_, _, out| {
                    if boom {
                        panic!("kaboom in a command");
                    }
                    writeln!(out, "fine")?;
                    Ok(0)
                }),
            })
        }
    }

    /// Sends `args` through `handle` and returns (output, error text, exit code).
    fn ask(serving: &Serving, args: &[&str]) -> (String, String, u8) {
        let (mut client, server) = UnixStream::pair().unwrap();
        let req = serde_json::to_vec(&Request {
            v: PROTOCOL,
            args: args.iter().map(|s| s.to_string()).collect(),
            progress: false,
        })
        .unwrap();
        client.write_all(&req).unwrap();
        client.write_all(b"\n").unwrap();
        handle(server, serving);
        let (mut out, mut err) = (String::new(), String::new());
        loop {
            let (tag, payload) = read_frame(&mut client);
            let text = String::from_utf8_lossy(&payload).into_owned();
            match tag {
                b'o' => out.push_str(&text),
                b'e' => err.push_str(&text),
                _ => return (out, err, payload[0]),
            }
        }
    }

    /// One answer frame as the CLI reads it: its tag byte and payload.
    fn read_frame(client: &mut UnixStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 5];
        client.read_exact(&mut head).unwrap();
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut payload = vec![0u8; len];
        client.read_exact(&mut payload).unwrap();
        (head[0], payload)
    }

    struct Reporting;

    impl Executor for Reporting {
        fn parse(&self, _args: &[String]) -> Result<Job, String> {
            Ok(Job {
                exclusive: false,
                run: Box::new(|_, _, out| {
                    // Taken on the command's thread, used from another (as a sync's batches do).
                    if let Some(sink) = progress_sink() {
                        std::thread::spawn(move || {
                            sink(&ProgressEvent::Done { done: 1, total: 2 });
                            sink(&ProgressEvent::Retry {
                                message: "waiting for CT.gov".into(),
                            });
                        })
                        .join()
                        .unwrap();
                    }
                    writeln!(out, "synced")?;
                    Ok(0)
                }),
            })
        }
    }

    /// The frames of one request: (tag, payload) in order.
    fn frames(serving: &Serving, progress: bool) -> Vec<(u8, Vec<u8>)> {
        let (mut client, server) = UnixStream::pair().unwrap();
        let mut req = serde_json::to_vec(&Request {
            v: PROTOCOL,
            args: vec!["sync".into()],
            progress,
        })
        .unwrap();
        req.push(b'\n');
        client.write_all(&req).unwrap();
        handle(server, serving);
        let mut out = Vec::new();
        loop {
            let (tag, payload) = read_frame(&mut client);
            out.push((tag, payload));
            if tag == b'x' {
                return out;
            }
        }
    }

    #[test]
    fn progress_goes_to_a_cli_that_asks_for_it_and_to_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Arc::new(Config::from_toml("", None).unwrap());
        let serving = Serving {
            executor: Arc::new(Reporting),
            config: Arc::new(move || cfg.clone()),
            store: Store::open(dir.path()).unwrap(),
            sync_lock: Arc::new(tokio::sync::Mutex::new(())),
        };
        let got = frames(&serving, true);
        let events: Vec<ProgressEvent> = got
            .iter()
            .filter(|(t, _)| *t == b'p')
            .map(|(_, p)| serde_json::from_slice(p).unwrap())
            .collect();
        assert_eq!(
            events,
            [
                ProgressEvent::Done { done: 1, total: 2 },
                ProgressEvent::Retry {
                    message: "waiting for CT.gov".into()
                }
            ]
        );
        assert!(got.iter().any(|(t, p)| *t == b'o' && p == b"synced\n"));
        assert_eq!(got.last(), Some(&(b'x', vec![0])));
        // An older CLI (no `progress` in its request) gets only the frames it knows.
        let old = frames(&serving, false);
        assert!(old.iter().all(|(t, _)| *t != b'p'), "{old:?}");
        // And the sink does not outlive the command on this thread.
        assert!(progress_sink().is_none());
    }

    #[test]
    fn permission_denied_on_connect_names_the_user_to_run_as() {
        for errno in [13, 1] {
            // EACCES, EPERM
            let e = connect_error(
                Path::new("/run/trialwatch/control.sock"),
                std::io::Error::from_raw_os_error(errno),
            );
            let msg = e.to_string();
            assert!(matches!(e, ForwardError::PermissionDenied { .. }), "{msg}");
            assert!(
                msg.starts_with(
                    "cannot use the daemon's control socket /run/trialwatch/control.sock: \
                     permission denied; run the command as "
                ),
                "{msg}"
            );
            assert!(
                msg.contains("(the user the daemon runs as), e.g. `sudo -u "),
                "{msg}"
            );
        }
        let refused = connect_error(Path::new("/x.sock"), std::io::Error::from_raw_os_error(111));
        assert!(matches!(refused, ForwardError::Connect { .. }));
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\ntrialwatch:x:998:998::/var/lib:/usr/sbin/nologin\n";
        assert_eq!(user_name(passwd, 998).as_deref(), Some("trialwatch"));
        assert_eq!(user_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name(passwd, 5), None);
    }

    #[test]
    fn slots_are_limited_and_given_back() {
        let count = Arc::new(AtomicUsize::new(0));
        let a = Slot::take(&count, 2).unwrap();
        let _b = Slot::take(&count, 2).unwrap();
        assert!(Slot::take(&count, 2).is_none());
        drop(a);
        assert!(Slot::take(&count, 2).is_some());
    }

    #[test]
    fn a_panicking_command_is_answered_as_an_error_and_the_daemon_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cfg = Arc::new(Config::from_toml("", None).unwrap());
        let serving = Serving {
            executor: Arc::new(Panicky),
            config: Arc::new(move || cfg.clone()),
            store,
            sync_lock: Arc::new(tokio::sync::Mutex::new(())),
        };
        let (_, err, code) = ask(&serving, &["boom"]);
        assert_eq!(code, 1);
        assert!(err.contains("kaboom in a command"), "{err}");
        assert!(err.contains("the daemon keeps running"), "{err}");
        // The exclusive lock was released and the next command runs normally.
        assert!(serving.sync_lock.try_lock().is_ok());
        let (out, err, code) = ask(&serving, &["ok"]);
        assert_eq!((out.as_str(), err.as_str(), code), ("fine\n", "", 0));
    }
}
