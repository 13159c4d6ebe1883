#!/usr/bin/env bash
# Idle footprint of `trialwatch daemon` with 10,000 watched trials (BENCHMARKS.md, "## Daemon").
# Builds the release binary, then runs the ignored test `idle_footprint_with_10000_trials`
# (tests/daemon.rs): the fake CT.gov serves 10,000 studies, the daemon syncs them once on a
# daily cron, then idles; RSS comes from /proc/PID/status (VmRSS, VmHWM) and CPU from
# /proc/PID/stat (utime + stime) over IDLE_SECS (default 30) seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin trialwatch
TRIALWATCH_BENCH_BIN="$(pwd)/target/release/trialwatch" IDLE_SECS="${IDLE_SECS:-30}" \
  cargo test --locked --test daemon -- --ignored --nocapture idle_footprint_with_10000_trials \
  2>&1 | grep -E '^BENCH|test result'
