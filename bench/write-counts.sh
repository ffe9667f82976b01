#!/usr/bin/env bash
# Per-write counts on the consensus side (docs/PERFORMANCE.md, "Consensus-side writes, session 9"): starts one
# 3-node cluster of the given build on free loopback ports, warms it, then runs one redis-benchmark SET row against
# the leader and prints, per node (leader first), per acknowledged write: the peer messages its Raft loop took
# (stcache_host_input_wait_seconds_count{kind="peer"}), its WAL saves (stcache_wal_save_seconds_count), the work
# items its thread pool ran (dotnet_thread_pool_work_item_count: each one a hand-off to a pool worker) and, with
# STRACE=1, its system calls by name (strace -c over every thread of the leader and of one follower; strace slows
# the nodes, so ops/s under it mean nothing, the counts per write do).
#
#   bench/write-counts.sh path/to/stcached [set-c50|set-P16|set-c1|http-put-c1]
#
# http-put-c1 is the HTTP counterpart of set-c1: wrk -t1 -c1 with bench/wrk/puts.lua (100 B values) against the
# leader's HTTP port for WRK_SECONDS (default 10), its writes counted from wrk's total; its p50 and p99 are wrk's.
#
# With THREADS=1 it also prints, per node and thread name, the CPU time (µs) and the context switches (voluntary +
# involuntary) per write, from /proc/PID/task/*/stat and status: where the wake-ups and hand-offs per write are.
#
# With REDIS=1 it then stops the cluster and runs the same row against one redis-server with appendonly yes and
# appendfsync always (issue 12's yardstick), printing its CPU time and context switches per write the same way.
#
# Env: N (writes, default 30000; x4 for set-P16), WRK_SECONDS (http-put-c1), STRACE=1, THREADS=1, REDIS=1, KEEP=1 keeps the temporary directory.
# Needs redis-benchmark, redis-cli, curl, python3 (wrk for http-put-c1, strace with STRACE=1).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?usage: bench/write-counts.sh path/to/stcached [row]}
ROW=${2:-set-c50}
N=${N:-30000}
[[ -x "$BIN" ]] || { echo "no stcached at $BIN" >&2; exit 2; }
OUT=$(mktemp -d "${TMPDIR:-/tmp}/stcache-counts.XXXXXX")
PIDS=()
STRACES=()
cleanup() {
  local p
  for p in "${STRACES[@]:-}"; do [[ -n "$p" ]] && kill -INT "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}" "${STRACES[@]:-}"; do [[ -n "$p" ]] && wait "$p" 2>/dev/null || true; done
  [[ -n "${KEEP:-}" ]] && echo "kept $OUT" || rm -rf "$OUT"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
declare -A RESP HTTP PID
cluster=""
for i in 1 2 3; do RESP[$i]=$(free_port); HTTP[$i]=$(free_port); RAFT[$i]=$(free_port); cluster+="${cluster:+,}$i/127.0.0.1:${RAFT[$i]}"; done
for i in 1 2 3; do
  "$BIN" --http_addr="127.0.0.1:${HTTP[$i]}" --raft_addr="127.0.0.1:${RAFT[$i]}" --raft_id=$i --raft_cluster="$cluster" \
    --node="$OUT/n$i" --resp="127.0.0.1:${RESP[$i]}" --log-level=Warning >"$OUT/n$i.log" 2>&1 &
  PID[$i]=$!
  PIDS+=("$!")
done
LEADER=""
for _ in $(seq 1 300); do
  for i in 1 2 3; do [[ "$(redis-cli -p "${RESP[$i]}" ROLE 2>/dev/null | head -1)" == master ]] && LEADER=$i; done
  [[ -n "$LEADER" && "$(redis-cli -p "${RESP[$LEADER]}" SET ready 1 2>/dev/null)" == OK ]] && break
  LEADER=""
  sleep 0.1
done
[[ -n "$LEADER" ]] || { echo "no leader elected (logs in $OUT)" >&2; KEEP=1; exit 1; }
ORDER="$LEADER $((LEADER % 3 + 1)) $(((LEADER + 1) % 3 + 1))"
port=${RESP[$LEADER]}
warm() {
  redis-benchmark -h 127.0.0.1 -p "$port" "$@" -d 100 -r 10000 -c 50 -t set -q >"$OUT/warm" 2>&1 && return
  echo "warm-up failed against node $LEADER (a leader change under load?); last lines and the logs in $OUT:" >&2
  tail -3 "$OUT/warm" >&2
  KEEP=1
  exit 1
}
warm -n 50000 -P 16
warm -n 30000
if [[ $ROW == http-* ]]; then
  wrk -t1 -c8 -d2s -s bench/wrk/puts.lua "http://127.0.0.1:${HTTP[$LEADER]}" -- dialect=stcache >/dev/null 2>&1 || true
fi

counters() { # http port -> "peer_messages wal_saves wal_seconds pool_work_items"
  curl -sf --max-time 5 "http://127.0.0.1:$1/metrics" | awk '
    /^stcache_host_input_wait_seconds_count/ && /kind="peer"/ { peer = $NF }
    /^stcache_wal_save_seconds_count/ { wal = $NF }
    /^stcache_wal_save_seconds_sum/ { walsum = $NF }
    /^dotnet_thread_pool_work_item_count/ { items = $NF }
    END { print (peer == "" ? 0 : peer), (wal == "" ? 0 : wal), (walsum == "" ? 0 : walsum), (items == "" ? 0 : items) }'
}

threads() { # pid -> one line per thread: "tid<TAB>name<TAB>cpu_ticks<TAB>context_switches"
  python3 - "$1" <<'EOF'
import os, sys
root = f"/proc/{sys.argv[1]}/task"
for tid in os.listdir(root):
    try:
        stat = open(f"{root}/{tid}/stat").read()
        status = open(f"{root}/{tid}/status").read().splitlines()
    except OSError:
        continue
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    cs = sum(int(l.split()[1]) for l in status if l.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")))
    print(f"{tid}\t{name}\t{int(fields[11]) + int(fields[12])}\t{cs}")
EOF
}

declare -A BEFORE
for i in $ORDER; do BEFORE[$i]=$(counters "${HTTP[$i]}"); done
if [[ -n "${THREADS:-}" ]]; then
  for i in $ORDER; do threads "${PID[$i]}" >"$OUT/threads0.$i"; done
fi
if [[ -n "${STRACE:-}" ]]; then
  for i in $LEADER $((LEADER % 3 + 1)); do
    tasks=$(ls "/proc/${PID[$i]}/task" | paste -sd,)
    strace -c -f -p "$tasks" -o "$OUT/strace.$i" 2>/dev/null &
    STRACES+=("$!")
  done
  sleep 1
fi
case $ROW in
  set-c50) n=$N; ROW_ARGS=(-c 50) ;;
  set-P16) n=$((N * 4)); ROW_ARGS=(-c 50 -P 16) ;;
  set-c1) n=$((N / 10)); ROW_ARGS=(-c 1) ;;
  http-put-c1) n=0 ;;
  *) echo "unknown row $ROW" >&2; exit 2 ;;
esac
run_row() { redis-benchmark -h 127.0.0.1 -p "$1" -d 100 -r 10000 -t set "${ROW_ARGS[@]}" -n "$n" --csv >"$OUT/row" 2>&1; }
started=$(date +%s.%N)
if [[ $ROW == http-put-c1 ]]; then
  wrk -t1 -c1 -d"${WRK_SECONDS:-10}s" --latency -s bench/wrk/puts.lua "http://127.0.0.1:${HTTP[$LEADER]}" -- dialect=stcache >"$OUT/wrk" 2>&1
  n=$(awk '/requests in/ { print $1 }' "$OUT/wrk")
  [[ -n "$n" && "$n" -gt 0 ]] || { echo "wrk made no requests; its output:" >&2; cat "$OUT/wrk" >&2; exit 1; }
  awk '/Requests\/sec/ { rate = $2 } /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 } END { printf "\"PUT\",\"%s\",\"p50 %s\",\"p99 %s\"\n", rate, p50, p99 }' "$OUT/wrk" >"$OUT/row"
else
  run_row "$port"
fi
elapsed=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$started" "$(date +%s.%N)")
for p in "${STRACES[@]:-}"; do [[ -n "$p" ]] && kill -INT "$p" 2>/dev/null || true; done
for p in "${STRACES[@]:-}"; do [[ -n "$p" ]] && wait "$p" 2>/dev/null || true; done
STRACES=()
if [[ -n "${THREADS:-}" ]]; then
  for i in $ORDER; do threads "${PID[$i]}" >"$OUT/threads1.$i"; done
fi
read -r load _ </proc/loadavg
echo "== $ROW, $n writes, load average $load: $(tail -1 "$OUT/row")"
role=leader
for i in $ORDER; do
  read -r p0 w0 s0 q0 <<<"${BEFORE[$i]}"
  read -r p1 w1 s1 q1 <<<"$(counters "${HTTP[$i]}")"
  python3 -c "import sys; n,p,w=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]); busy=(float(sys.argv[7])-float(sys.argv[6]))/float(sys.argv[8]); q=(float(sys.argv[10])-float(sys.argv[9]))/n; print(f'{sys.argv[4]:8s} node {sys.argv[5]}: peer messages/write {p/n:.3f}  WAL saves/write {w/n:.4f} ({n/max(w,1):.1f} writes/save)  loop in WAL save {busy:.0%} of the row  pool work items/write {q:.2f}')" \
    "$n" "$((${p1%.*} - ${p0%.*}))" "$((${w1%.*} - ${w0%.*}))" "$role" "$i" "$s0" "$s1" "$elapsed" "$q0" "$q1"
  if [[ -f "$OUT/strace.$i" ]]; then
    python3 - "$OUT/strace.$i" "$n" <<'EOF'
import sys
n = int(sys.argv[2])
rows = []
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] not in ("total",):
        calls = int(parts[3])
        rows.append((calls, parts[-1]))
rows.sort(reverse=True)
total = sum(c for c, _ in rows)
print(f"           syscalls/write {total / n:.2f}: " + ", ".join(f"{name} {c / n:.2f}" for c, name in rows[:10]))
EOF
  fi
  if [[ -f "$OUT/threads1.$i" ]]; then
    python3 - "$OUT/threads0.$i" "$OUT/threads1.$i" "$n" "$(getconf CLK_TCK)" <<'EOF'
import sys
from collections import defaultdict
def load(path):
    rows = {}
    for line in open(path):
        tid, name, ticks, cs = line.rstrip("\n").split("\t")
        rows[tid] = (name, int(ticks), int(cs))
    return rows
before, after, n, hz = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
by_name = defaultdict(lambda: [0, 0, 0])
for tid, (name, ticks, cs) in after.items():
    t0, c0 = before.get(tid, (name, 0, 0))[1:]
    if ticks - t0 or cs - c0:
        row = by_name[name]
        row[0] += ticks - t0; row[1] += cs - c0; row[2] += 1
total_us = sum(r[0] for r in by_name.values()) * 1e6 / hz / n
total_cs = sum(r[1] for r in by_name.values()) / n
print(f"           threads: CPU {total_us:.1f} µs/write, context switches {total_cs:.2f}/write")
for name, (ticks, cs, count) in sorted(by_name.items(), key=lambda kv: -kv[1][1]):
    print(f"             {name:18s} x{count:<3d} CPU {ticks * 1e6 / hz / n:6.1f} µs/write  switches {cs / n:5.2f}/write")
EOF
  fi
  role=follower
done

if [[ -n "${REDIS:-}" ]]; then
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  PIDS=()
  port=$(free_port)
  mkdir -p "$OUT/redis"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$OUT/redis" --appendonly yes --appendfsync always --save "" \
    >"$OUT/redis.log" 2>&1 &
  PIDS+=("$!")
  rpid=$!
  for _ in $(seq 1 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.1; done
  redis-benchmark -h 127.0.0.1 -p "$port" -n 30000 -d 100 -r 10000 -c 50 -t set -q >/dev/null 2>&1
  threads "$rpid" >"$OUT/redis0"
  run_row "$port"
  threads "$rpid" >"$OUT/redis1"
  read -r load _ </proc/loadavg
  echo "== redis-server (appendfsync always), $ROW, $n writes, load average $load: $(tail -1 "$OUT/row")"
  python3 - "$OUT/redis0" "$OUT/redis1" "$n" "$(getconf CLK_TCK)" <<'EOF'
import sys
def total(path):
    ticks = cs = 0
    for line in open(path):
        _, _, t, c = line.rstrip("\n").split("\t")
        ticks += int(t); cs += int(c)
    return ticks, cs
(t0, c0), (t1, c1) = total(sys.argv[1]), total(sys.argv[2])
n, hz = int(sys.argv[3]), int(sys.argv[4])
print(f"redis-server threads: CPU {(t1 - t0) * 1e6 / hz / n:.1f} µs/write, context switches {(c1 - c0) / n:.2f}/write")
EOF
fi
