//! The systemd notify protocol (`sd_notify(3)`), hand-written: a datagram of `KEY=VALUE` lines
//! sent to the Unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract
//! socket). Without `NOTIFY_SOCKET` every call is a no-op, so the daemon runs the same way in a
//! terminal. Also reads the watchdog interval (`$WATCHDOG_USEC`, `$WATCHDOG_PID`).
//!
//! Sending never fails the daemon: a lost notification is logged at debug level.
//!
//! Not here: alert notifications to users ([`crate::notify`]); when the daemon says what
//! (`scheduler.rs`, [`super::run`]).

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use crate::util::text::one_line;

/// Longest wait for room in the receiver's queue before a notification is dropped.
const SEND_TIMEOUT: Duration = Duration::from_millis(50);

/// Where the notifications go.
#[derive(Debug, Clone)]
enum Target {
    Path(PathBuf),
    /// Linux abstract socket name (without the leading `@`).
    Abstract(Vec<u8>),
}

/// A handle on the service manager's notify socket (or nothing).
#[derive(Debug)]
pub struct Notifier {
    /// `None` when not started by a service manager that asked for notifications.
    target: Option<(UnixDatagram, Target)>,
    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when the watchdog is on for us.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Read `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|raw| {
            let s = raw.to_string_lossy().into_owned();
            let target = if let Some(name) = s.strip_prefix('@') {
                Target::Abstract(name.as_bytes().to_vec())
            } else if s.starts_with('/') {
                Target::Path(PathBuf::from(raw))
            } else {
                tracing::warn!(
                    notify.socket = %s,
                    "NOTIFY_SOCKET is neither a path nor an @abstract name; not notifying systemd"
                );
                return None;
            };
            match sender_socket() {
                Ok(sock) => Some((sock, target)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create a socket to notify systemd");
                    None
                }
            }
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(|u| Duration::from_micros(u / 2));
        Notifier { target, watchdog }
    }

    /// Whether a service manager listens (for log messages only).
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Half the watchdog timeout, when systemd expects `WATCHDOG=1` from us.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Send one notification: newline-separated `KEY=VALUE` lines.
    pub fn send(&self, message: &str) {
        let Some((sock, target)) = &self.target else {
            return;
        };
        let result = match target {
            Target::Path(p) => sock.send_to(message.as_bytes(), p),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|addr| sock.send_to_addr(message.as_bytes(), &addr))
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "could not notify systemd");
        }
    }

    /// `READY=1` with a `STATUS=` line: start-up is over (also sent after a SIGHUP reload).
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status, usize::MAX)));
    }

    /// `STATUS=`: the one line `systemctl status` shows (newlines folded).
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status, usize::MAX)));
    }

    /// `WATCHDOG=1`: still alive (every [`Notifier::watchdog_interval`]).
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}

/// The sending socket. A receiver that stops reading must not stall the daemon: once its
/// queue is full a send waits at most [`SEND_TIMEOUT`], then the message is dropped.
fn sender_socket() -> std::io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.set_write_timeout(Some(SEND_TIMEOUT))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some((UnixDatagram::unbound().unwrap(), Target::Path(path))),
            watchdog: None,
        };
        n.ready("next sync\nat 13:30");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=next sync at 13:30");
    }

    /// Regression: a receiver that stops reading (its queue holds ~10 datagrams) once blocked
    /// `send` forever and with it the daemon's main loop; now each send gives up quickly.
    #[test]
    fn a_receiver_that_does_not_read_never_blocks_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let _rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some((sender_socket().unwrap(), Target::Path(path))),
            watchdog: None,
        };
        let t0 = std::time::Instant::now();
        for _ in 0..30 {
            n.watchdog();
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    }

    #[test]
    fn sends_datagrams_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("trialwatch-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                Target::Abstract(name.into_bytes()),
            )),
            watchdog: None,
        };
        n.stopping();
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert!(buf[..len].starts_with(b"STOPPING=1"));
    }
}
