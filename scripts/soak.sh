#!/usr/bin/env bash
# Soak test: builds sluice and the soak harness (release), then runs the harness for
# SOAK_SECONDS (default 60) against the fake DingTalk robot with faults on, kill -9 and restart
# at random, and checks delivery and the rate limit at the end. Extra arguments go to the
# harness (see examples/soak.rs): --clients N, --seed N, --kill-min S, --kill-max S, --drain S,
# --dir DIR. Exit status is the harness's: 0 pass, 1 a check failed, 2 usage or set-up error.
#
#   scripts/soak.sh                          # one minute
#   SOAK_SECONDS=600 scripts/soak.sh         # ten minutes, as reported in BENCHMARKS.md
#   scripts/soak.sh --seed 42 --clients 8
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${SOAK_SECONDS:-60}"
target="${CARGO_TARGET_DIR:-target}"

cargo build --release --locked --bin sluice --example soak
exec "$target/release/examples/soak" --seconds "$seconds" --sluice "$target/release/sluice" "$@"
