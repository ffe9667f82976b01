#!/usr/bin/env bash
# Where a node's CPU goes, per workload: starts a 3-node cluster (RESP and HTTP on free loopback ports), drives each
# row with redis-benchmark or wrk, and records every CPU of the machine with `perf record -a -g` for PERF_SECONDS
# while the row runs (the nodes run with perf maps, so JIT-compiled frames have names). Then prints, per row, how
# the serving node's samples split into stages (bench/profile-summary.py).
#
#   bench/profile.sh [path/to/stcached] [rows...]     rows: set-c50 get-c50 set-P16 get-P16 ro-get-c50
#                                                                http-put http-get http-stale (default: all)
#
# Each row also prints the bytes every node allocated per operation (dotnet_gc_heap_total_allocated_bytes on /metrics
# before and after the row, divided by the serving node's commands for RESP rows, wrk's requests for HTTP rows).
# Needs perf (Debian linux-perf), redis-benchmark, redis-cli, wrk, curl, python3, and root or perf_event_paranoid <= 1.
# Output in OUT (default a temporary directory, kept): ROW.data (perf), ROW.bench (client output), pids.
set -euo pipefail
cd "$(dirname "$0")/.."
STCACHED=${1:-out/stcached}
shift || true
ROWS=${*:-set-c50 get-c50 set-P16 get-P16 ro-get-c50 http-put http-get http-stale}
PERF_SECONDS=${PERF_SECONDS:-6}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/stcache-profile.XXXXXX")}
[[ -x "$STCACHED" ]] || { echo "no stcached at $STCACHED (run ./build.sh)" >&2; exit 2; }
export DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0   # names for JIT frames (W^X hides them from perf)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
declare -a RESP HTTP RAFT PID
LEADER="" FOLLOWER=""
stop() { local p; for p in "${PID[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PID=(); }
trap stop EXIT INT TERM
start() { # flags...
  local i cluster=""
  rm -rf "$OUT/data"; mkdir -p "$OUT/data"
  for i in 1 2 3; do RESP[$i]=$(free_port); HTTP[$i]=$(free_port); RAFT[$i]=$(free_port); done
  for i in 1 2 3; do cluster+="${cluster:+,}$i/127.0.0.1:${RAFT[$i]}"; done
  for i in 1 2 3; do
    "$STCACHED" --http_addr="127.0.0.1:${HTTP[$i]}" --raft_addr="127.0.0.1:${RAFT[$i]}" --raft_id=$i --raft_cluster="$cluster" \
      --node="$OUT/data/n$i" --resp="127.0.0.1:${RESP[$i]}" --log-level=Warning "$@" >"$OUT/data/n$i.log" 2>&1 &
    PID[$i]=$!
  done
  LEADER=""
  for _ in $(seq 1 300); do
    for i in 1 2 3; do
      [[ "$(redis-cli -p "${RESP[$i]}" ROLE 2>/dev/null | head -1)" == master ]] && LEADER=$i
    done
    [[ -n "$LEADER" && "$(redis-cli -p "${RESP[$LEADER]}" SET ready 1 2>/dev/null)" == OK ]] && break
    LEADER=""
    sleep 0.1
  done
  [[ -n "$LEADER" ]] || { echo "no leader elected (logs in $OUT/data)" >&2; exit 1; }
  FOLLOWER=$((LEADER % 3 + 1))
  echo "cluster $*: leader pid ${PID[$LEADER]}, follower pid ${PID[$FOLLOWER]}" | tee -a "$OUT/pids"
  # Keys to read, and warm code (tiered compilation) before anything is recorded.
  redis-benchmark -h 127.0.0.1 -p "${RESP[$LEADER]}" -n 50000 -d 100 -r 10000 -c 50 -P 16 -t set -q >/dev/null 2>&1 || true
  redis-benchmark -h 127.0.0.1 -p "${RESP[$LEADER]}" -n 30000 -d 100 -r 10000 -c 50 -t get,set -q >/dev/null 2>&1 || true
}
allocated() { # node: bytes the node's runtime has allocated so far
  curl -sf --max-time 5 "http://127.0.0.1:${HTTP[$1]}/metrics" | awk '/^dotnet_gc_heap_total_allocated_bytes/ && !seen { print $2; seen = 1 }'
}
commands() { # node: RESP commands the node has processed so far
  redis-cli -p "${RESP[$1]}" INFO stats 2>/dev/null | awk -F: '/^total_commands_processed/ { print $2 + 0 }'
}
record() { # row serving-node client-command...
  local row=$1 node=$2 serving=${PID[$2]}; shift 2
  local i before=() ops_before
  for i in 1 2 3; do before[$i]=$(allocated "$i"); done
  ops_before=$(commands "$node")
  "$@" >"$OUT/$row.bench" 2>&1 &
  local client=$!
  sleep 1.5
  perf record -F 499 -a -g -o "$OUT/$row.data" -- sleep "$PERF_SECONDS" >/dev/null 2>&1
  if [[ $row != http-* ]]; then kill "$client" 2>/dev/null || true; fi
  wait "$client" 2>/dev/null || true
  local ops per=""
  if [[ $row == http-* ]]; then
    ops=$(awk '/requests in/ { print $1; exit }' "$OUT/$row.bench")
  else
    ops=$(( $(commands "$node") - ops_before - 1 )) # less the INFO that reads the count
  fi
  for i in 1 2 3; do
    per+=" node $i$([[ $i == "$LEADER" ]] && echo ' (leader)'): $(python3 -c "print(f'{($(allocated "$i") - ${before[$i]}) / max(1, ${ops:-0}):,.0f}')") B/op;"
  done
  echo "== $row (serving pid $serving, $ops operations)"
  echo "allocated per operation:$per"
  python3 bench/profile-summary.py "$OUT/$row.data" "$serving"
}
rb() { redis-benchmark -h 127.0.0.1 -p "$1" -d 100 -r 10000 "${@:2}"; }
has() { [[ " $ROWS " == *" $1 "* ]]; }

start
L=${RESP[$LEADER]}
has set-c50 && record set-c50 "$LEADER" rb "$L" -t set -c 50 -n 10000000
has get-c50 && record get-c50 "$LEADER" rb "$L" -t get -c 50 -n 10000000
has set-P16 && record set-P16 "$LEADER" rb "$L" -t set -c 50 -P 16 -n 100000000
has get-P16 && record get-P16 "$LEADER" rb "$L" -t get -c 50 -P 16 -n 100000000
H="http://127.0.0.1:${HTTP[$LEADER]}"
for row in http-put http-get http-stale; do
  has $row || continue
  script=$(case $row in http-put) echo puts.lua;; http-get) echo gets.lua;; *) echo stale-gets.lua;; esac)
  record $row "$LEADER" wrk -t2 -c64 -d"$((PERF_SECONDS + 5))s" --timeout 5s -s "bench/wrk/$script" "$H" -- dialect=stcache
done
if has ro-get-c50; then
  stop
  start --resp-readonly=true
  record ro-get-c50 "$FOLLOWER" rb "${RESP[$FOLLOWER]}" -t get -c 50 -n 10000000
fi
echo "perf data in $OUT"
