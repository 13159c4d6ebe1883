//! A test environment for black-box tests of the real `trialwatch` binary: a temporary data
//! directory, a config file pointing at a fake CT.gov server, and helpers to run commands and
//! to make study JSON from the real fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::fake_ctgov::FakeCtGov;

pub const BIN: &str = env!("CARGO_BIN_EXE_trialwatch");

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A real CT.gov fixture by file name under tests/fixtures/ctgov.
pub fn fixture(name: &str) -> String {
    let p = fixtures_dir().join("ctgov").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The fixture's JSON with its NCT ID replaced everywhere by `new_id`.
pub fn fixture_as(name: &str, new_id: &str) -> String {
    let raw = fixture(name);
    let v: Value = serde_json::from_str(&raw).unwrap();
    let old = v["protocolSection"]["identificationModule"]["nctId"]
        .as_str()
        .unwrap()
        .to_string();
    raw.replace(&old, new_id)
}

/// Edit a study's JSON with a closure over its `protocolSection`.
pub fn edit(raw: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(raw).unwrap();
    f(&mut v["protocolSection"]);
    serde_json::to_string(&v).unwrap()
}

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub server: FakeCtGov,
    pub config: PathBuf,
}

impl TestEnv {
    /// A fake server and a config with no rate limit and fast retries; `extra` is appended to
    /// the `[ctgov]` table, `tail` after the whole file.
    pub fn new(watch: &[&str]) -> TestEnv {
        Self::with_config(watch, "", "")
    }

    /// Tests that are not about backfills run with `[watch] backfill = false`: the fake
    /// server serves no record history unless a test puts one.
    pub fn with_config(watch: &[&str], ctgov_extra: &str, tail: &str) -> TestEnv {
        Self::with_options(watch, ctgov_extra, "backfill = false", tail)
    }

    /// Like [`TestEnv::with_config`], with `watch_extra` as the rest of the `[watch]` table.
    pub fn with_options(
        watch: &[&str],
        ctgov_extra: &str,
        watch_extra: &str,
        tail: &str,
    ) -> TestEnv {
        let server = FakeCtGov::start();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let ids: Vec<String> = watch.iter().map(|s| format!("{s:?}")).collect();
        // Keys given in `ctgov_extra` replace the defaults below.
        let defaults: String = [
            "requests_per_minute = 0",
            "batch_size = 100",
            "timeout_secs = 5",
            "max_attempts = 4",
            "backoff_base_ms = 10",
            "backoff_cap_secs = 0.2",
        ]
        .iter()
        .filter(|kv| {
            let key = kv.split(' ').next().unwrap_or("");
            !ctgov_extra.lines().any(|l| l.trim_start().starts_with(key))
        })
        .map(|kv| format!("{kv}\n"))
        .collect();
        let text = format!(
            "data_dir = {data:?}\n[ctgov]\nbase_url = {url:?}\n{defaults}{ctgov_extra}\n\
             [watch]\nnct_ids = [{ids}]\n{watch_extra}\n{tail}\n",
            data = dir.path().join("data").display().to_string(),
            url = server.base_url(),
            ids = ids.join(", "),
        );
        std::fs::write(&config, text).unwrap();
        TestEnv {
            dir,
            server,
            config,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(&self.config).args(args);
        // TZ too: human times are UTC unless a test chooses a zone.
        c.env_remove("RUST_LOG")
            .env_remove("TRIALWATCH_NOW")
            .env_remove("TZ");
        c
    }

    /// Run a command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "trialwatch {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run a command that must succeed and print JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
