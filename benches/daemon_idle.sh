#!/usr/bin/env bash
# Idle footprint of `trialwatch daemon` with 10,000 watched trials (BENCHMARKS.md, "## Daemon").
# Runs the benchmark benches/daemon_idle.rs (`cargo bench --bench daemon_idle`, which builds the
# release binary): the fake CT.gov serves 10,000 studies, the daemon syncs them once on an
# every-second cron, is switched by SIGHUP to a yearly one, then idles; RSS comes from
# /proc/PID/status (VmRSS, VmHWM) and CPU from /proc/PID/stat (utime + stime) over IDLE_SECS
# (default 30) seconds, in the same process and after a restart on the full store.
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE_SECS="${IDLE_SECS:-30}" cargo bench --locked --bench daemon_idle 2>&1 \
  | grep -E '^BENCH|panicked|^error'
