#!/usr/bin/env bash
# The floor under the small-fixture mix's store share (BENCHMARKS.md, issue #14): how small the
# raw CT.gov JSON of the five small fixtures (the benchmark's BENCH_MIX=small) gets when each
# record is compressed on its own, as a store that can read any one version by itself must, and
# before the store keeps anything else (the normalized record, metadata, index).
#
# Three figures, each the sum over the five records against their raw size:
#   1. zstd level 3 with the dictionary the binary ships (src/store/ctgov-1.dict): what sync does;
#   2. the same at level 19, with its speed: the best a slower sync could do;
#   3. level 3 with the shipped dictionary followed by the other four small records, i.e. a
#      dictionary trained on the store's other records, measured on a record it has not seen
#      (leave one out), which is what such a dictionary would do for a real, distinct trial.
# A share over 25 % here means no per-record store of this mix can reach 25 %.
#
# Needs the zstd command-line tool (Debian: apt-get install zstd). Run: bash benches/small_floor.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v zstd >/dev/null || {
  echo "small_floor: the zstd command is missing; install it (Debian: apt-get install zstd)" >&2
  exit 1
}
dict=src/store/ctgov-1.dict
fixtures=tests/fixtures/ctgov
small=(NCT00973089 NCT03418623 NCT03475563 NCT06171568 NCT04207047)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

raw=0 l3=0 l19=0 loo=0
paths=()
for id in "${small[@]}"; do
  f="$fixtures/$id.json"
  paths+=("$f")
  r=$(stat -c %s "$f")
  a=$(zstd -q -3 -c -D "$dict" "$f" | wc -c)
  b=$(zstd -q -19 -c -D "$dict" "$f" | wc -c)
  cat "$dict" >"$scratch/loo.dict"
  for other in "${small[@]}"; do
    [ "$other" = "$id" ] || cat "$fixtures/$other.json" >>"$scratch/loo.dict"
  done
  c=$(zstd -q -3 -c -D "$scratch/loo.dict" "$f" | wc -c)
  printf '%s: %6d B raw, level 3 %5d B, level 19 %5d B, level 3 leave-one-out %5d B\n' \
    "$id" "$r" "$a" "$b" "$c"
  raw=$((raw + r)) l3=$((l3 + a)) l19=$((l19 + b)) loo=$((loo + c))
done
pct() { awk -v n="$1" -v d="$raw" 'BEGIN { printf "%.1f %%", 100 * n / d }'; }
echo "BENCH small-fixture raw JSON alone, per record: level 3 $(pct $l3), level 19 $(pct $l19), level 3 leave-one-out $(pct $loo) of $raw B"
# The speed of each level on the same five records, each on its own (zstd's benchmark mode, -S):
# the last figure it prints per record is its final one.
for level in 3 19; do
  zstd -b"$level" -S -D "$dict" "${paths[@]}" 2>&1 | tr '\r' '\n' \
    | awk -v l="$level" '/MB\/s, / { sub(/^ *[|\/=\\-]+/, ""); last[$1] = $0 }
        END { for (k in last) print "BENCH level " l ": " last[k] }' | sort
done
