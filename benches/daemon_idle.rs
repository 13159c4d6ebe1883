//! Idle footprint of `trialwatch daemon` with 10,000 watched trials (BENCHMARKS.md, "## Daemon").
//! Run: `bash benches/daemon_idle.sh`, i.e. `cargo bench --bench daemon_idle` (release build).
//!
//! The fake CT.gov serves 10,000 copies of a small real study; the daemon syncs them once on a
//! every-second cron, is switched by SIGHUP to a yearly cron, then idles; RSS comes from
//! `/proc/PID/status` (`VmRSS`, `VmHWM`) and CPU from `/proc/PID/stat` (utime + stime) over
//! `IDLE_SECS` (default 30) seconds, then again after a restart on the full store. The daemon
//! runs as the systemd unit runs it (with the unit's `GLIBC_TUNABLES`), and each window starts
//! once it is idle (a second under 20 ms of CPU: after a large sync it still evaluates the
//! deadlines and re-executes itself).
//! `BENCH_TRIALS` overrides the 10,000; `TRIALWATCH_BENCH_BIN` another binary than the one
//! cargo built. Under `cargo test --all-targets` it runs as a smoke test (100 trials, 1 s idle
//! windows), so CI keeps it working without paying for it.
// The shared test support is `pub` so that every crate including it can use it; in one crate
// some of it is unused, which `unreachable_pub` would flag.
#![allow(unreachable_pub)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::{Daemon, EVERY_SECOND, wait_for, wait_running};
use support::env::{BIN, TestEnv, fixture_as};

/// CPU seconds (utime + stime) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

/// The `GLIBC_TUNABLES` the systemd unit sets (`systemd/trialwatch.service`), if it sets any.
fn unit_tunables() -> Option<String> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/trialwatch.service"
    ))
    .ok()?;
    unit.lines()
        .find_map(|l| l.strip_prefix("Environment=GLIBC_TUNABLES="))
        .map(str::to_string)
}

/// A `/proc/PID/status` value in kB (`VmRSS`, `VmHWM`).
fn proc_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// The `## Daemon` figures of BENCHMARKS.md: `n` (10,000) watched trials synced from the fake
/// CT.gov, then the daemon's idle RSS and CPU, (a) right after that sync in the same process and
/// (b) after a restart on the full store, each over `idle_secs`.
fn idle_footprint_with_10000_trials(n: usize, idle_secs: u64) {
    let ids: Vec<String> = (1..=n).map(|i| format!("NCT08{i:06}")).collect();
    let env = TestEnv::with_config(&[], "", "");
    let list = env.dir.path().join("watch.txt");
    std::fs::write(&list, ids.join("\n")).unwrap();
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "nct_ids = []",
        &format!("nct_ids = []\nnct_file = {list:?}"),
    );
    std::fs::write(&env.config, text).unwrap();
    let raw = fixture_as("NCT06171568.json", "NCT08999999");
    for id in &ids {
        env.server.put_study(raw.replace("NCT08999999", id));
    }
    // Every second until the sync is done, then (SIGHUP) once a year: nothing but idling.
    let base = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, format!("{base}{EVERY_SECOND}")).unwrap();
    let bin = std::env::var("TRIALWATCH_BENCH_BIN").unwrap_or_else(|_| BIN.to_string());
    let start = |log: &str| {
        let mut cmd = Command::new(&bin);
        cmd.arg("--config")
            .arg(&env.config)
            .arg("daemon")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(env.dir.path().join(log)).unwrap())
            .env_remove("NOTIFY_SOCKET");
        // As the systemd unit runs it: with the unit's allocator settings.
        if let Some(t) = unit_tunables() {
            cmd.env("GLIBC_TUNABLES", t);
        }
        Daemon {
            child: cmd.spawn().unwrap(),
            log: env.dir.path().join(log),
        }
    };
    let measure = |d: &Daemon, label: &str| {
        std::thread::sleep(Duration::from_secs(3));
        // Idle means idle: after a large sync the daemon still evaluates the deadlines and
        // re-executes itself; wait (up to 5 minutes) for a second with under 20 ms of CPU.
        let quiet_by = Instant::now() + Duration::from_secs(300);
        while Instant::now() < quiet_by {
            let c = cpu_seconds(d.pid());
            std::thread::sleep(Duration::from_secs(1));
            if cpu_seconds(d.pid()) - c < 0.02 {
                break;
            }
        }
        let c0 = cpu_seconds(d.pid());
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(idle_secs));
        let cpu = cpu_seconds(d.pid()) - c0;
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "BENCH {label}: VmRSS {:.1} MB, VmHWM {:.1} MB, idle CPU {:.3} s over {:.0} s ({:.3} %)",
            proc_kb(d.pid(), "VmRSS") as f64 / 1024.0,
            proc_kb(d.pid(), "VmHWM") as f64 / 1024.0,
            cpu,
            secs,
            100.0 * cpu / secs
        );
    };

    let mut d = start("daemon-1.log");
    let t0 = Instant::now();
    let st = wait_for(
        Duration::from_secs(600),
        &format!("the {n}-trial sync"),
        || {
            std::thread::sleep(Duration::from_millis(500));
            let v: Value = serde_json::from_slice(&env.run(&["status", "--json"]).stdout).ok()?;
            (v["last_sync"]["requested"] == json!(n)).then_some(v)
        },
    );
    println!(
        "BENCH sync of {n} trials: {} ms in the daemon ({:.1} s until `status` showed it), \
         {} new versions, {} failed, store {:.1} MB",
        st["last_sync"]["duration_ms"],
        t0.elapsed().as_secs_f64(),
        st["last_sync"]["new_versions"],
        st["last_sync"]["failed"].as_array().map_or(0, Vec::len),
        st["store"]["size_bytes"].as_f64().unwrap_or(0.0) / 1e6
    );
    std::fs::write(
        &env.config,
        format!("{base}[schedule]\ncron = \"0 0 0 1 1 *\"\n"),
    )
    .unwrap();
    d.signal("HUP");
    wait_for(Duration::from_secs(30), "the reload", || {
        d.log().contains("configuration reloaded").then_some(())
    });
    measure(&d, "idle after the sync, same process");
    assert_eq!(d.terminate().0.code(), Some(0));

    let d = start("daemon-2.log");
    wait_running(&env, &d);
    measure(&d, &format!("idle after a restart on the {n}-trial store"));
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` this is a smoke test.
    let full = std::env::args().any(|a| a == "--bench");
    let env_or = |k: &str, full_default: u64, smoke: u64| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if full { full_default } else { smoke })
    };
    let n = env_or("BENCH_TRIALS", 10_000, 100) as usize;
    let idle_secs = env_or("IDLE_SECS", 30, 1);
    idle_footprint_with_10000_trials(n, idle_secs);
}
