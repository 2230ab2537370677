#!/usr/bin/env bash
# Reproduces the tables in BENCHMARKS.md on the project's 2-core machine. Everything (sections 1
# to 7) took 21 min 40 s on 2026-12-04 with the build cached; `scripts/bench.sh 3 8`, every
# figure issue 17 asks for, about 10 min:
#   1. criterion: digest rendering, the store's durable ingest, the rate guard
#   2. durable ingest over HTTP with the load tool: 1, 16 and 64 clients × 100 and 1 alert per POST
#   3. one wrk load (64 connections x 1 alert, 16 x 100) against nginx answering a bare 202 (the
#      machine's HTTP ceiling), Prometheus Alertmanager 0.25, sluice's /v1/alerts,
#      /v1/alertmanager and DingTalk front door, and three cluster nodes (one wrk per node at
#      once); then again while a bounded dd loop writes large files (needs wrk, nginx and
#      prometheus-alertmanager from Debian: apt-get install wrk nginx-light prometheus-alertmanager)
#   4. a 100 000-alert burst, memory and disk with a backlog, restart with a backlog, idle cost
#      (examples/backlog.rs)
#   5. drop-in ingest: DingTalk text messages to the front door (POST /robot/send?access_token=…,
#      signed) beside single-alert POSTs to /v1/alerts, 64 connections each, same daemon config
#   6. cluster mode: three sluice nodes with [cluster] on a 3-server NATS JetStream cluster
#      (replicas 3), the load spread over the nodes, beside one node with the embedded store under
#      the same load; and the raw JetStream publish rate on the same cluster (examples/js_publish.rs)
#   7. cluster failover: kill -9 of a robot's owner to the next send (examples/failover.rs), for
#      the default lease (20 s) and a short one (4 s)
#   8. (not in the default set) the parts of 1 and 4 that issue 17 names: 100 000 alerts rendered
#      in each dialect, peak memory with 1 000 000 pending, first send after kill -9 with 1 000 000
# The cluster runs of 3, and sections 6 and 7, need nats-server >= 2.11: $SLUICE_NATS_SERVER,
# else nats-server on PATH, else $target/pyenv/bin/nats-server (.ci/run installs it); without one
# they are skipped, saying so. Everything listens on 127.0.0.1 only and stops by itself. Pass
# section numbers to run only some: scripts/bench.sh 2 3
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
sections="${*:-1 2 3 4 5 6 7}"
want() { [[ " $sections " == *" $1 "* ]]; }

cargo build --release --locked --bin sluice --examples
work="$(mktemp -d /tmp/sluice-bench.XXXXXX)"
pids=() nats_pids=() node_pids=() nodes_name=""
cleanup() {
  for p in "${pids[@]}" "${nats_pids[@]}"; do kill "$p" 2>/dev/null || true; done
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
  # A cluster node connects to NATS and opens its streams first: up to 30 s.
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/healthz" > /dev/null && break
    sleep 0.05
  done
  addr="127.0.0.1:$port"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

stop_last() {
  local last=$((${#pids[@]} - 1))
  kill "${pids[$last]}" 2>/dev/null || true
  wait "${pids[$last]}" 2>/dev/null || true
  unset "pids[$last]"
  rm -rf "$work"/data-*
}

# A DingTalk robot with 加签 whose webhook carries the token the front-door loads post with
# (sections 3 and 5); the one-hour window means nothing is sent to its (unused) address.
ding='[robots.ding]
webhook = "http://127.0.0.1:9/robot/send?access_token=bench-token"
secret = "SECbench0123456789"'

# The first nats-server >= 2.11 of $SLUICE_NATS_SERVER, PATH and $target/pyenv/bin/nats-server
# (older servers have the R3 compare-and-swap and Msg-Id bugs CLUSTER.md §1 lists); empty if none.
find_nats() {
  local c v
  for c in "${SLUICE_NATS_SERVER:-}" "$(command -v nats-server || true)" "$target/pyenv/bin/nats-server"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    v=$("$c" --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    read -r major minor <<< "${v:-0 0}"
    if (( major > 2 || (major == 2 && minor >= 11) )); then echo "$c"; return; fi
  done
}

# Three nats-servers in one JetStream cluster on free loopback ports, their stores in
# $work/nats-$1 (the config of tests/support/nats.rs); waits until all three agree on a meta
# leader. Their client URLs go to $nats_urls (comma-separated), their pids to $nats_pids. $2, if
# given, is one more line of the jetstream block (`sync_interval: always`).
start_nats() {
  local dir="$work/nats-$1" extra="${2:-}" i ports=() routes=""
  mkdir -p "$dir"
  for i in $(seq 9); do ports+=("$(free_port)"); done
  for i in 0 1 2; do routes+="${routes:+, }nats-route://127.0.0.1:${ports[$((6 + i))]}"; done
  nats_urls="" nats_pids=()
  for i in 0 1 2; do
    cat > "$dir/n$((i + 1)).conf" <<CONF
server_name: n$((i + 1))
listen: 127.0.0.1:${ports[$i]}
http: 127.0.0.1:${ports[$((3 + i))]}
jetstream {
  store_dir: "$dir/n$((i + 1))"
  max_memory_store: 64MB
  max_file_store: 1GB
  $extra
}
cluster {
  name: sluice
  listen: 127.0.0.1:${ports[$((6 + i))]}
  routes: [ $routes ]
}
CONF
    "$nats" -c "$dir/n$((i + 1)).conf" > "$dir/n$((i + 1)).log" 2>&1 &
    nats_pids+=($!)
    nats_urls+="${nats_urls:+,}nats://127.0.0.1:${ports[$i]}"
  done
  local monitors="${ports[3]} ${ports[4]} ${ports[5]}"
  for _ in $(seq 300); do
    python3 - $monitors <<'PY' 2> /dev/null && return
import json, sys, urllib.request
leaders = set()
for port in sys.argv[1:]:
    m = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/jsz", timeout=1)).get("meta_cluster", {})
    leaders.add(m.get("leader", "") if m.get("cluster_size") == 3 else "")
sys.exit(0 if len(leaders) == 1 and "" not in leaders else 1)
PY
    sleep 0.1
  done
  echo "no JetStream meta leader within 30 s; logs in $dir" >&2
  return 1
}

stop_nats() {
  for p in "${nats_pids[@]}"; do kill "$p" 2> /dev/null || true; wait "$p" 2> /dev/null || true; done
  nats_pids=()
  rm -rf "$work"/nats-*
}

# Three sluice nodes n1..n3 on the cluster at $nats_urls (replicas 3, the default lease); their
# addresses go to $addrs (comma-separated). stop_nodes stops them and removes their stores (only
# theirs: section 3 keeps a single-node daemon running beside them).
start_nodes() {
  local i first=${#pids[@]} servers single="${addr:-}"
  nodes_name="$1"
  servers=$(sed 's/[^,]*/"&"/g; s/,/, /g' <<< "$nats_urls")
  addrs=""
  for i in 1 2 3; do
    start_sluice "$1-n$i" "[cluster]
nats = [$servers]
node = \"n$i\"
replicas = 3"
    addrs+="${addrs:+,}$addr"
  done
  node_pids=("${pids[@]:$first}")
  addr="$single"
}

stop_nodes() {
  local p
  for p in "${node_pids[@]}"; do kill "$p" 2> /dev/null || true; wait "$p" 2> /dev/null || true; done
  local keep=()
  for p in "${pids[@]}"; do [[ " ${node_pids[*]} " == *" $p "* ]] || keep+=("$p"); done
  pids=("${keep[@]}") node_pids=()
  rm -rf "$work/data-$nodes_name"-n*
}

nats=""
if want 3 || want 6 || want 7; then
  nats=$(find_nats)
  [ -n "$nats" ] || echo "== cluster runs (3, 6, 7) skipped: no nats-server >= 2.11 (set SLUICE_NATS_SERVER, put one on PATH, or run .ci/run to install $target/pyenv/bin/nats-server)"
fi

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
  echo "== 3. one wrk load, side by side: nginx's bare 202 (the ceiling), Alertmanager 0.25, sluice's"
  echo "   /v1/alerts, /v1/alertmanager and DingTalk front door; then the same while dd writes large files"
  if ! command -v wrk > /dev/null || [ ! -x /usr/bin/prometheus-alertmanager ] || [ ! -x /usr/sbin/nginx ]; then
    echo "skipped: needs wrk, nginx and prometheus-alertmanager (apt-get install wrk nginx-light prometheus-alertmanager)"
  else
    start_sluice wrk "$ding"
    am_port=$(free_port) nginx_port=$(free_port)
    printf 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n' > "$work/am.yml"
    /usr/bin/prometheus-alertmanager --config.file="$work/am.yml" --storage.path="$work/am" \
      --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address= > "$work/am.log" 2>&1 &
    pids+=($!)
    mkdir -p "$work/nginx"
    cat > "$work/nginx/nginx.conf" <<NGINX
daemon off;
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { default_type application/json; return 202 '{"accepted":1,"durable":false}'; }
  }
}
NGINX
    /usr/sbin/nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
    pids+=($!)
    sleep 2
    # The signed front-door URL; a sign is good for an hour.
    ding_url=$(python3 - "$addr" <<'PY'
import base64, hashlib, hmac, sys, time, urllib.parse
ts = str(int(time.time() * 1000)); secret = "SECbench0123456789"
sign = base64.b64encode(hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest())
print(f"http://{sys.argv[1]}/robot/send?access_token=bench-token&timestamp={ts}&sign={urllib.parse.quote(sign)}")
PY
)
    results="$work/wrk.tsv"
    one() { # phase name connections script url
      wrk -t2 -c"$3" -d10s --latency -s "scripts/wrk/$4" "$5" | scripts/wrk/table.py parse "$1" "$2" "$run" >> "$results"
    }
    # The same load spread over the three nodes of a cluster: one wrk per node at once, the
    # connections split among them; the rates add up, the latencies are the slowest node's.
    spread() { # phase name connections script path
      local i=0 node wrks=() files=() nodes n
      IFS=, read -ra nodes <<< "$addrs"
      n=${#nodes[@]}
      for node in "${nodes[@]}"; do
        wrk -t1 -c$(($3 / n + (i < $3 % n ? 1 : 0))) -d10s --latency -s "scripts/wrk/$4" \
          "http://$node$5" > "$work/spread-$i.txt" &
        wrks+=($!) files+=("$work/spread-$i.txt") i=$((i + 1))
      done
      for i in "${wrks[@]}"; do wait "$i"; done
      scripts/wrk/table.py parse "$1" "$2" "$run" "${files[@]}" >> "$results"
    }
    for run in 1 2 3; do
      one quiet nginx 64 nginx-one.lua "http://127.0.0.1:$nginx_port/"
      one quiet alertmanager 64 am-one.lua "http://127.0.0.1:$am_port/api/v2/alerts"
      one quiet "sluice /v1/alerts" 64 sluice-one.lua "http://$addr/v1/alerts"
      one quiet "sluice /v1/alertmanager" 64 sluice-am.lua "http://$addr/v1/alertmanager?robot=console"
      one quiet "sluice /robot/send" 64 sluice-dingtalk.lua "$ding_url"
      one quiet "alertmanager batch" 16 am-batch.lua "http://127.0.0.1:$am_port/api/v2/alerts"
      one quiet "sluice batch" 16 sluice-batch.lua "http://$addr/v1/alerts"
      if [ -n "$nats" ]; then
        # A fresh 3-server JetStream cluster (replicas 3) and three nodes for each round.
        start_nats "w-$run"
        start_nodes "w-$run"
        spread quiet "cluster, 3 nodes /v1/alerts" 64 sluice-one.lua /v1/alerts
        spread quiet "cluster, 3 nodes batch" 16 sluice-batch.lua /v1/alerts
        stop_nodes
        stop_nats
      fi
    done
    # Another process writing large files on the same file system, bounded: at most 40 files of
    # 1.5 GB, one at a time, stopped when the runs are done.
    (for _ in $(seq 40); do dd if=/dev/zero of="$work/dd.out" bs=1M count=1500 status=none; done; rm -f "$work/dd.out") &
    dd_loop=$!
    sleep 3
    # What the disk allows meanwhile: fdatasync of 32 KiB written over existing blocks, and appended.
    python3 - "$work" <<'PY'
import os, statistics, sys, time
for mode in ("over existing blocks", "appended"):
    path = os.path.join(sys.argv[1], "probe"); fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    if mode != "appended":
        os.write(fd, b"\0" * (8 << 20)); os.fsync(fd)
    lat = []
    for i in range(200):
        t = time.perf_counter(); os.pwrite(fd, b"x" * 32768, i * 32768); os.fdatasync(fd)
        lat.append((time.perf_counter() - t) * 1000)
    os.close(fd); os.remove(path); lat.sort()
    print(f"disk under dd: fdatasync of 32 KiB {mode}: median {statistics.median(lat):.2f} ms, p99 {lat[197]:.2f} ms")
PY
    for run in 1 2 3; do
      one "dd loop" alertmanager 64 am-one.lua "http://127.0.0.1:$am_port/api/v2/alerts"
      one "dd loop" "sluice /v1/alerts" 64 sluice-one.lua "http://$addr/v1/alerts"
      one "dd loop" "sluice batch" 16 sluice-batch.lua "http://$addr/v1/alerts"
      one "dd loop" "alertmanager batch" 16 am-batch.lua "http://127.0.0.1:$am_port/api/v2/alerts"
    done
    kill "$dd_loop" 2> /dev/null || true
    pkill -f "of=$work/dd.out" 2> /dev/null || true
    wait "$dd_loop" 2> /dev/null || true
    rm -f "$work/dd.out"
    scripts/wrk/table.py report "$results"
    curl -s "http://$addr/metrics" | grep -E '^sluice_commit_' || true
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

if want 6 && [ -n "$nats" ]; then
  echo "== 6. cluster mode ($("$nats" --version)): 3 sluice nodes, R3, load spread over them, beside one node with the embedded store"
  for run in 1 2 3; do
    for shape in "1 64 200000" "100 16 300000"; do
      read -r batch clients alerts <<< "$shape"
      start_nats "c-$batch-$run"
      start_nodes "c-$batch-$run"
      echo -n "cluster, 3 nodes: "
      "$target/release/examples/load" --server "$addrs" --robot console \
        --alerts "$alerts" --clients "$clients" --batch "$batch" --seconds 15 | tail -1
      stop_nodes
      stop_nats
      start_sluice "s-$batch-$run"
      echo -n "single node, embedded store: "
      "$target/release/examples/load" --server "$addr" --robot console \
        --alerts "$alerts" --clients "$clients" --batch "$batch" --seconds 15 | tail -1
      stop_last
    done
    # The ceiling: R3 publishes of ~300 bytes with a Nats-Msg-Id, without sluice, same cluster setup.
    start_nats "p-$run"
    "$target/release/examples/js_publish" --nats "$nats_urls" --mode sync --publishers 64 --seconds 10
    "$target/release/examples/js_publish" --nats "$nats_urls" --mode async --publishers 1 --inflight 1000 --seconds 10
    stop_nats
    # The same with an fsync per write (CLUSTER.md §2.3.3), the single node's promise.
    start_nats "p-always-$run" "sync_interval: always"
    echo -n "sync_interval always: "
    "$target/release/examples/js_publish" --nats "$nats_urls" --mode sync --publishers 64 --seconds 10
    echo -n "sync_interval always: "
    "$target/release/examples/js_publish" --nats "$nats_urls" --mode async --publishers 1 --inflight 1000 --seconds 10
    stop_nats
  done
fi

if want 7 && [ -n "$nats" ]; then
  echo "== 7. cluster failover: kill -9 of the owner to the next send (examples/failover.rs)"
  # A fresh NATS cluster for each lease: the node heartbeat bucket keeps the max_age (the
  # lease) of the run that created it.
  start_nats failover-20s
  "$target/release/examples/failover" --sluice "$target/release/sluice" --nats "$nats_urls" \
    --lease 20s --renew 2s --clock-skew 1s --request-timeout 10s --rounds 5 ||
    echo "failover with the 20 s lease failed (above, with the nodes' logs)"
  stop_nats
  start_nats failover-4s
  "$target/release/examples/failover" --sluice "$target/release/sluice" --nats "$nats_urls" \
    --lease 4s --renew 500ms --clock-skew 200ms --request-timeout 1s --rounds 5 ||
    echo "failover with the 4 s lease failed (above, with the nodes' logs)"
  stop_nats
fi

if want 8; then
  echo "== 8. issue 17's other figures: 100 000 alerts rendered in every dialect, peak memory with"
  echo "   1 000 000 pending, the first send after a kill -9 with 1 000 000 pending"
  cargo bench --locked --bench digest -- --warm-up-time 1 --measurement-time 3 \
    '^render(_wecom|_feishu|_slack|_fill)?/100000$' 2>&1 | grep -E "^render|time:"
  "$target/release/examples/backlog" backlog --sizes 1000000 --no-reuse
  "$target/release/examples/backlog" restart --alerts 1000000 --stop kill
fi
