#!/usr/bin/env bash
# Two sluice binaries side by side, interleaved so that both see the same machine:
#   scripts/compare.sh OLD_BINARY NEW_BINARY [RUNS]
# 1. the load tool (examples/load.rs, built here) at 64 clients × 1 alert and 16 × 100 per POST,
#    RUNS times each (default 3), every alert acknowledged after fsync;
# 2. start-up with 10 000 DingTalk robots (webhooks on a closed loopback port, a one-hour
#    window: nothing is sent): seconds until /healthz answers, and RSS 2 s later.
# Everything listens on 127.0.0.1 and stops by itself. Build an older binary with, e.g.:
#   git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release) 
set -euo pipefail
cd "$(dirname "$0")/.."
old="$1" new="$2" runs="${3:-3}"
cargo build --release --locked --example load
work="$(mktemp -d /tmp/sluice-compare.XXXXXX)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

serve() { # binary config
  "$1" serve -c "$2" > "$work/log" 2>&1 &
  pid=$!
}

wait_healthy() { # port
  for _ in $(seq 2000); do
    curl -sf "http://127.0.0.1:$1/healthz" > /dev/null && return 0
    sleep 0.01
  done
  echo "not healthy: $(tail -3 "$work/log")" >&2
  return 1
}

stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; rm -rf "$work/data"; }

load() { # binary batch clients alerts
  local port; port=$(free_port)
  cat > "$work/load.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
data_dir = "$work/data"
max_body = "2MiB"
max_alerts_per_request = 1000
[defaults]
window = "1h"
max_pending = 100000000
[robots.console]
provider = "console"
TOML
  serve "$1" "$work/load.toml"
  wait_healthy "$port"
  printf '%s %sx%s: ' "$1" "$2" "$3"
  target/release/examples/load --server "127.0.0.1:$port" --robot console \
    --alerts "$4" --clients "$3" --batch "$2" --seconds 60 | tail -1
  stop
}

robots() { # binary
  local port; port=$(free_port)
  {
    printf '[server]\nlisten = "127.0.0.1:%s"\ndata_dir = "%s/data"\n[defaults]\nwindow = "1h"\n' "$port" "$work"
    for i in $(seq 0 9999); do
      printf '[robots.r%s]\nwebhook = "http://127.0.0.1:9/robot/send?access_token=t%s"\n' "$i" "$i"
    done
  } > "$work/robots.toml"
  local start end
  start=$(date +%s.%N)
  serve "$1" "$work/robots.toml"
  wait_healthy "$port"
  end=$(date +%s.%N)
  sleep 2
  printf '%s 10000 robots: healthy after %.2f s, %s\n' "$1" "$(echo "$end - $start" | bc)" \
    "$(grep VmRSS "/proc/$pid/status" | tr -s ' ')"
  stop
}

for _ in $(seq "$runs"); do
  for b in "$old" "$new"; do load "$b" 1 64 200000; done
  for b in "$old" "$new"; do load "$b" 100 16 300000; done
done
for b in "$old" "$new"; do robots "$b"; done
