#!/usr/bin/env bash
# Two stcached builds side by side ("the simultaneous-pair method", docs/PERFORMANCE.md): a 3-node cluster of each,
# and every row driven against both leaders at the same moment by two wrk processes, so both sides meet the same
# background load. Per side: ops/s, p50, p99 and p99.9, CPU time per request of the serving node (the leader; utime +
# stime from /proc) and of its three nodes, bytes allocated per request on the serving node
# (dotnet_gc_heap_total_allocated on /metrics), and the leader's collections of each generation in the measured window
# and its GC pause time per second.
#
#   bench/wrk/pair.sh A/stcached B/stcached [rows...]     rows: stale lin put put16 put1 put1k (default: stale lin put put1)
#
# Settings (environment): DURATION (s measured per row, default 8), WARMUP (s of unmeasured load per row, default 3),
# CONNECTIONS (default 64), ROUNDS (default 1: every row once), OUT (default a temporary directory: logs, wrk output),
# SEQUENTIAL=1 (drive one side at a time, alternating which goes first: a latency tail measured with the other
# cluster idle, as compare.sh measures it, at the cost of the two sides no longer meeting the same background load),
# THREADS=1 (after each row, the leader's threads by name: CPU, run-queue wait and preemptions, bench/wrk/runqueue.py).
# Every key (k0..k9999, 100 B) is written once before the rows. Needs wrk, curl and python3. Everything it starts
# is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ $# -ge 2 ]] || { sed -n '2,18p' "$0"; exit 2; }
BIN=("$1" "$2")
shift 2
ROWS=${*:-stale lin put put1}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-1}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/stcache-pair.XXXXXX")}
for b in "${BIN[@]}"; do [[ -x "$b" ]] || { echo "not executable: $b" >&2; exit 2; }; done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
declare -A HTTP PID
stop() { local p; for p in "${PID[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT INT TERM

start() { # side (0 or 1)
  local s=$1 i cluster="" raft=()
  mkdir -p "$OUT/$s"
  for i in 1 2 3; do HTTP[$s$i]=$(free_port); raft[$i]=$(free_port); done
  for i in 1 2 3; do cluster+="${cluster:+,}$i/127.0.0.1:${raft[$i]}"; done
  for i in 1 2 3; do
    "${BIN[$s]}" --http_addr="127.0.0.1:${HTTP[$s$i]}" --raft_addr="127.0.0.1:${raft[$i]}" --raft_id=$i --raft_cluster="$cluster" \
      --node="$OUT/$s/n$i" --log-level=Warning >"$OUT/$s/n$i.log" 2>&1 &
    PID[$s$i]=$!
  done
}

leader() { # side -> node index of the leader, or nothing
  local s=$1 i
  for i in 1 2 3; do
    curl -sf --max-time 1 "http://127.0.0.1:${HTTP[$s$i]}/v1/status" 2>/dev/null | grep -q '"role":"leader"' && { echo "$i"; return; }
  done
}

wait_leader() { # side
  local s=$1 l=""
  for _ in $(seq 1 300); do
    l=$(leader "$s")
    [[ -n "$l" ]] && curl -sf --max-time 2 -X PUT --data-binary x "http://127.0.0.1:${HTTP[$s$l]}/v1/kv/ready" >/dev/null && { echo "$l"; return; }
    sleep 0.1
  done
  echo "side $s: no leader (logs in $OUT/$s)" >&2; exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
idle_total() { awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit}' /proc/stat; }
gc_counters() { # url -> "allocated_bytes gen0 gen1 gen2 pause_seconds" of the node (collections of each generation)
  curl -sf --max-time 30 "$1/metrics" | awk '/^dotnet_gc_heap_total_allocated/ {a = $2} /^dotnet_gc_pause_time_seconds_total/ {p = $2}
    /^dotnet_gc_collections_total/ {g = $0; sub(/.*gc_heap_generation="gen/, "", g); c[substr(g, 1, 1)] = $2}
    END {print a + 0, c[0] + 0, c[1] + 0, c[2] + 0, p + 0}' || echo "nan nan nan nan nan"
}

start 0
start 1
L=("$(wait_leader 0)" "$(wait_leader 1)")
URL=("http://127.0.0.1:${HTTP[0${L[0]}]}" "http://127.0.0.1:${HTTP[1${L[1]}]}")
echo "A: ${BIN[0]} (leader pid ${PID[0${L[0]}]}), B: ${BIN[1]} (leader pid ${PID[1${L[1]}]}); out $OUT"
preload() { # url: writes k0..k9999 once (100 B each), 16 connections, so that no read meets a missing key
  python3 bench/wrk/preload.py "$1"
}
wait_jobs() { local j; for j in $(jobs -p); do case " ${PID[*]} " in *" $j "*) ;; *) wait "$j" || true;; esac; done; }
for s in 0 1; do preload "${URL[$s]}" & done
wait_jobs

row() { # name -> threads connections script consistency
  case $1 in
    stale) echo "2 $CONNECTIONS stale-gets.lua";;
    lin) echo "2 $CONNECTIONS gets.lua";;
    put) echo "2 $CONNECTIONS puts.lua";;
    put16) echo "2 16 puts.lua";;
    put1) echo "1 1 puts.lua";;
    put1k) echo "2 $CONNECTIONS puts-1k.lua";;
    *) echo "unknown row $1" >&2; exit 2;;
  esac
}

printf '%-6s %-4s %9s %8s %8s %8s %12s %13s %12s %6s %9s %6s  %s\n' row side ops/s p50_ms p99_ms p999_ms leader_us/op 3_nodes_us/op \
  leader_B/op errors gen0/1/2 GCms/s 'load (1 min)'
measure() { # row round sides...: warm-up, then the measured window, of the given sides at the same moment
  local r=$1 round=$2 threads conns script s t1 n1 a1 i idle0 total0 idle1 total1 load
  shift 2
  read -r threads conns script <<<"$(row "$r")"
  for s in "$@"; do
    wrk -t"$threads" -c"$conns" -d"${WARMUP}s" --timeout 5s -s "bench/wrk/$script" "${URL[$s]}" -- dialect=stcache >/dev/null 2>&1 &
  done
  wait_jobs
  local -A t0 a0 n0
  for s in "$@"; do
    t0[$s]=$(cpu_ticks "${PID[$s${L[$s]}]}")
    n0[$s]=0; for i in 1 2 3; do n0[$s]=$(( n0[$s] + $(cpu_ticks "${PID[$s$i]}") )); done
    a0[$s]=$(gc_counters "${URL[$s]}")
  done
  read -r idle0 total0 <<<"$(idle_total)"
  for s in "$@"; do
    wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 5s -s "bench/wrk/$script" "${URL[$s]}" -- dialect=stcache >"$OUT/$r.$round.$s.txt" 2>&1 &
    if [[ -n "${THREADS:-}" ]]; then
      # The measured window but its last second (the script stops before wrk does).
      python3 bench/wrk/runqueue.py "${PID[$s${L[$s]}]}" "$(( DURATION > 2 ? DURATION - 1 : 1 ))" >"$OUT/$r.$round.$s.threads" 2>&1 &
    fi
  done
  wait_jobs
  read -r idle1 total1 <<<"$(idle_total)"
  load="$(cut -d' ' -f1 /proc/loadavg), machine idle $(( 100 * (idle1 - idle0) / (total1 - total0) ))%"
  for s in "$@"; do
    t1=$(cpu_ticks "${PID[$s${L[$s]}]}")
    n1=0; for i in 1 2 3; do n1=$(( n1 + $(cpu_ticks "${PID[$s$i]}") )); done
    a1=$(gc_counters "${URL[$s]}")
    python3 - "$r" "$([[ $s == 0 ]] && echo A || echo B)" "$OUT/$r.$round.$s.txt" "$(( t1 - t0[$s] ))" "$(( n1 - n0[$s] ))" "${a0[$s]}" "$a1" "$load" "$(getconf CLK_TCK)" <<'PY'
import json, sys
row, side, path, leader_ticks, all_ticks, g0, g1, load, hz = sys.argv[1:10]
line = next(l for l in open(path) if l.startswith("WRKJSON "))
d = json.loads(line[8:])
n = max(d["requests"], 1)
us = lambda ticks: int(ticks) / int(hz) * 1e6 / n
(a0, *c0, p0), (a1, *c1, p1) = ([float(x) for x in g.split()] for g in (g0, g1))
gcs = "/".join(f"{y - x:.0f}" for x, y in zip(c0, c1))
secs = max(d["seconds"], 1e-3)
print(f'{row:<6} {side:<4} {d["rps"]:9.0f} {d["p50_us"] / 1000:8.3f} {d["p99_us"] / 1000:8.3f} {d["p999_us"] / 1000:8.3f} '
      f'{us(leader_ticks):12.1f} {us(all_ticks):13.1f} {(a1 - a0) / n:12.0f} {sum(d["errors"].values()):6d} '
      f'{gcs:>9} {(p1 - p0) * 1000 / secs:6.2f}  {load}')
PY
    if [[ -n "${THREADS:-}" ]]; then cat "$OUT/$r.$round.$s.threads"; fi
  done
}

for (( round = 1; round <= ROUNDS; round++ )); do
  for r in $ROWS; do
    if [[ -n "${SEQUENTIAL:-}" ]]; then
      # One side at a time, A first in odd rounds and B first in even ones; the idle cluster only heartbeats.
      if (( round % 2 )); then measure "$r" "$round" 0; measure "$r" "$round" 1
      else measure "$r" "$round" 1; measure "$r" "$round" 0; fi
    else
      measure "$r" "$round" 0 1
    fi
  done
done
