#!/usr/bin/env bash
# Reproduces the tables in BENCHMARKS.md, in under 10 minutes on the project's 2-core machine (9 min 22 s):
#   1. criterion: digest rendering, the store's durable ingest, the rate guard
#   2. durable ingest over HTTP with the load tool: 1, 16 and 64 clients × 100 and 1 alert per POST
#   3. sluice against Prometheus Alertmanager 0.25 under the same wrk load (needs wrk and
#      prometheus-alertmanager from Debian: apt-get install wrk prometheus-alertmanager)
#   4. a 100 000-alert burst, memory and disk with a backlog, restart with a backlog, idle cost
#      (examples/backlog.rs)
#   5. drop-in ingest: DingTalk text messages to the front door (POST /robot/send?access_token=…,
#      signed) beside single-alert POSTs to /v1/alerts, 64 connections each, same daemon config
# Everything listens on 127.0.0.1 only and stops by itself. Pass section numbers to run only
# some: scripts/bench.sh 2 3
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
sections="${*:-1 2 3 4 5}"
want() { [[ " $sections " == *" $1 "* ]]; }

cargo build --release --locked --bin sluice --examples
work="$(mktemp -d /tmp/sluice-bench.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A daemon on a free port with one console robot and a one-hour window (nothing is sent while
# the load runs), its store in $work/data-$1; its address goes to $addr. $2, if given, is more
# TOML appended to the config (another robot).
start_sluice() {
  local name="$1" extra="${2:-}" port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$work/$name.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
data_dir = "$work/data-$name"
max_body = "2MiB"
max_alerts_per_request = 1000
[defaults]
window = "1h"
max_pending = 100000000
[robots.console]
provider = "console"
$extra
TOML
  "$target/release/sluice" serve -c "$work/$name.toml" > "$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" > /dev/null && break
    sleep 0.05
  done
  addr="127.0.0.1:$port"
}

stop_last() {
  local last=$((${#pids[@]} - 1))
  kill "${pids[$last]}" 2>/dev/null || true
  wait "${pids[$last]}" 2>/dev/null || true
  unset "pids[$last]"
  rm -rf "$work"/data-*
}

if want 1; then
  echo "== 1. criterion"
  cargo bench --locked --bench digest -- --warm-up-time 1 --measurement-time 3 2>&1 | grep -E "^render|time:"
  cargo bench --locked --bench ingest -- --warm-up-time 1 --measurement-time 3 2>&1 | grep -E "^ingest|time:|thrpt:"
  cargo bench --locked --bench limit -- --warm-up-time 1 --measurement-time 2 2>&1 | grep -E "^rate_guard|time:"
fi

if want 2; then
  echo "== 2. durable ingest over HTTP (examples/load.rs); every alert counted was acknowledged after fsync"
  for shape in "100 1 100000" "100 16 300000" "100 64 300000" "1 1 20000" "1 16 60000" "1 64 200000"; do
    read -r batch clients alerts <<< "$shape"
    for run in 1 2 3; do
      start_sluice "load-$batch-$clients-$run"
      "$target/release/examples/load" --server "$addr" --robot console \
        --alerts "$alerts" --clients "$clients" --batch "$batch" --seconds 60 | tail -1
      stop_last
    done
  done
fi

if want 3; then
  echo "== 3. sluice vs Alertmanager 0.25, same wrk load, same machine"
  if ! command -v wrk > /dev/null || [ ! -x /usr/bin/prometheus-alertmanager ]; then
    echo "skipped: needs wrk and prometheus-alertmanager (apt-get install wrk prometheus-alertmanager)"
  else
    start_sluice wrk
    am_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n' > "$work/am.yml"
    /usr/bin/prometheus-alertmanager --config.file="$work/am.yml" --storage.path="$work/am" \
      --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address= > "$work/am.log" 2>&1 &
    pids+=($!)
    sleep 2
    rps() { wrk -t2 -c"$1" -d10s -s "scripts/wrk/$2" "$3" | awk '/Requests\/sec/ {print $2}'; }
    for run in 1 2 3; do
      s1=$(rps 64 sluice-one.lua "http://$addr/v1/alerts")
      a1=$(rps 64 am-one.lua "http://127.0.0.1:$am_port/api/v2/alerts")
      s2=$(rps 16 sluice-batch.lua "http://$addr/v1/alerts")
      a2=$(rps 16 am-batch.lua "http://127.0.0.1:$am_port/api/v2/alerts")
      python3 -c "
s1, a1, s2, a2 = $s1, $a1, $s2 * 100, $a2 * 100
print(f'run $run: 1 alert/POST, 64 conns: sluice {s1:,.0f}/s, alertmanager {a1:,.0f}/s, ratio {s1/a1:.2f}; '
      f'100 alerts/POST, 16 conns: sluice {s2:,.0f} alerts/s, alertmanager {a2:,.0f} alerts/s, ratio {s2/a2:.2f}')"
    done
  fi
fi

if want 4; then
  echo "== 4. burst, backlog, restart, idle (examples/backlog.rs)"
  "$target/release/examples/backlog" burst
  "$target/release/examples/backlog" backlog
  "$target/release/examples/backlog" restart --stop all
  "$target/release/examples/backlog" idle --seconds 30
fi

if want 5; then
  echo "== 5. drop-in ingest: DingTalk text messages through /robot/send vs 1 alert per POST to /v1/alerts, 64 connections"
  # A DingTalk robot with 加签 whose webhook carries the token the load tool posts with; the
  # one-hour window means nothing is sent to its (unused) address while the load runs.
  ding='[robots.ding]
webhook = "http://127.0.0.1:9/robot/send?access_token=bench-token"
secret = "SECbench0123456789"'
  for run in 1 2 3; do
    start_sluice "alerts-$run" "$ding"
    "$target/release/examples/load" --server "$addr" --robot ding \
      --alerts 200000 --clients 64 --batch 1 --seconds 60 | tail -1
    stop_last
    start_sluice "dropin-$run" "$ding"
    "$target/release/examples/load" --server "$addr" --dingtalk bench-token:SECbench0123456789 \
      --alerts 200000 --clients 64 --seconds 60 | tail -1
    stop_last
  done
fi
