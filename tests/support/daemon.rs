//! `trialwatch daemon` as a child process for the daemon tests (`tests/it/daemon.rs`) and the
//! idle-footprint benchmark (`benches/daemon_idle.rs`): started with a log file, signalled,
//! stopped within the daemon's deadline, killed on drop; and polling with a deadline instead of
//! sleeping.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::env::TestEnv;

/// Fires every second.
pub const EVERY_SECOND: &str = "[schedule]\ncron = \"* * * * * *\"\n";

/// The daemon's own stop deadline (`daemon::DEFAULT_STOP_TIMEOUT`).
pub const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// A running daemon; killed on drop if a test failed before stopping it.
pub struct Daemon {
    pub child: Child,
    /// Its stderr (the log), kept in a file so a failing test can show it.
    pub log: std::path::PathBuf,
}

impl Daemon {
    pub fn start(env: &TestEnv) -> Daemon {
        Self::start_with(env, |_| {})
    }

    pub fn start_with(env: &TestEnv, setup: impl FnOnce(&mut Command)) -> Daemon {
        let log = env
            .dir
            .path()
            .join(format!("daemon-{}.log", fastrand::u32(..)));
        let mut cmd = env.cmd(&["daemon", "--log-level", "trialwatch=debug,info"]);
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("RUNTIME_DIRECTORY");
        setup(&mut cmd);
        Daemon {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} failed");
    }

    /// SIGTERM, then wait (at most the deadline plus slack) for the exit status.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let t0 = Instant::now();
        self.signal("TERM");
        let status = wait_for(
            STOP_DEADLINE + Duration::from_secs(5),
            "daemon exit",
            || self.child.try_wait().unwrap(),
        );
        (status, t0.elapsed())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if std::thread::panicking() {
                eprintln!("--- daemon log ---\n{}", self.log());
            }
        }
    }
}

/// Poll `f` every 50 ms until it returns `Some`, or panic after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `status --json` once the daemon answers it as running.
pub fn wait_running(env: &TestEnv, d: &Daemon) -> Value {
    wait_for(
        Duration::from_secs(20),
        "the daemon to answer `status`",
        || {
            let out = env.run(&["status", "--json"]);
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            // A `status` run while the daemon still opens its store can see the daemon's lock
            // (running) but not yet its control socket (no pid): wait for the daemon's own
            // answer, which names its pid.
            (v["daemon"]["running"] == json!(true) && v["daemon"]["pid"] == json!(d.pid()))
                .then_some(v)
        },
    )
}
