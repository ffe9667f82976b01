#!/usr/bin/env bash
# Per-read counts of the HTTP read rows (docs/PERFORMANCE.md, "HTTP linearizable reads, session 10"): starts one
# 3-node cluster of the given build on free loopback ports, writes k0..k9999 (100 B), warms the row, then drives it
# with wrk against the leader and prints, per node (leader first), per read answered: read rounds
# (stcache_read_barrier_seconds_count: one per batch of reads), Raft inputs its loop took from peers
# (stcache_host_input_wait_seconds_count{kind="peer"}) and from readers ({kind="read"}), Ready passes
# (stcache_host_ready_seconds_count), WAL saves, thread-pool work items, CPU (utime + stime from /proc), context
# switches (voluntary + involuntary, summed over the process's threads from /proc/PID/task/*/status) and bytes
# allocated (dotnet_gc_heap_total_allocated_bytes). These do not depend on the machine's load as rates do. The
# machine's context switches (/proc/stat ctxt) per read and its idle share are printed too.
#
#   bench/wrk/read-counts.sh path/to/stcached [lin|stale]
#
# Env: DURATION (s measured, default 8), WARMUP (s, default 3), CONNECTIONS (default 64), ROUNDS (default 1),
# PERF=1 records every CPU with perf for PERF_SECONDS (default 5) in the middle of the first round (nodes then run
# with perf maps) and prints the leader's and a follower's top symbols; KEEP=1 keeps the temporary directory.
# Needs wrk, curl, python3 (and perf with PERF=1). Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:?usage: bench/wrk/read-counts.sh path/to/stcached [lin|stale]}
ROW=${2:-lin}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-1}
PERF_SECONDS=${PERF_SECONDS:-5}
[[ -x "$BIN" ]] || { echo "not executable: $BIN" >&2; exit 2; }
case $ROW in lin) SCRIPT=gets.lua ;; stale) SCRIPT=stale-gets.lua ;; *) echo "unknown row $ROW" >&2; exit 2 ;; esac
OUT=$(mktemp -d "${TMPDIR:-/tmp}/stcache-read-counts.XXXXXX")
[[ -n "${PERF:-}" ]] && export DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0
declare -A HTTP RAFT PID
cleanup() {
  local p
  for p in "${PID[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  for p in "${PID[@]:-}"; do [[ -n "$p" ]] && wait "$p" 2>/dev/null || true; done
  [[ -n "${KEEP:-}" ]] && echo "kept $OUT" || rm -rf "$OUT"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
cluster=""
for i in 1 2 3; do HTTP[$i]=$(free_port); RAFT[$i]=$(free_port); cluster+="${cluster:+,}$i/127.0.0.1:${RAFT[$i]}"; done
for i in 1 2 3; do
  "$BIN" --http_addr="127.0.0.1:${HTTP[$i]}" --raft_addr="127.0.0.1:${RAFT[$i]}" --raft_id=$i --raft_cluster="$cluster" \
    --node="$OUT/n$i" --log-level=Warning >"$OUT/n$i.log" 2>&1 &
  PID[$i]=$!
done
LEADER=""
for _ in $(seq 1 300); do
  for i in 1 2 3; do
    curl -sf --max-time 1 "http://127.0.0.1:${HTTP[$i]}/v1/status" 2>/dev/null | grep -q '"role":"leader"' && LEADER=$i
  done
  [[ -n "$LEADER" ]] && curl -sf --max-time 2 -X PUT --data-binary x "http://127.0.0.1:${HTTP[$LEADER]}/v1/kv/ready" >/dev/null && break
  LEADER=""
  sleep 0.1
done
[[ -n "$LEADER" ]] || { echo "no leader elected (logs in $OUT)" >&2; KEEP=1; exit 1; }
ORDER="$LEADER $((LEADER % 3 + 1)) $(((LEADER + 1) % 3 + 1))"
URL="http://127.0.0.1:${HTTP[$LEADER]}"
python3 bench/wrk/preload.py "$URL"

snapshot() { # file: one line per node (leader first) with its counters, then the machine's
  local i
  for i in $ORDER; do
    local p=${PID[$i]}
    local ticks cs
    ticks=$(awk '{print $14 + $15}' "/proc/$p/stat")
    cs=$(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s + 0}')
    curl -sf --max-time 10 "http://127.0.0.1:${HTTP[$i]}/metrics" | awk -v node="$i" -v ticks="$ticks" -v cs="$cs" '
      /^stcache_read_barrier_seconds_count/ { rounds = $NF }
      /^stcache_host_input_wait_seconds_count/ && /kind="peer"/ { peer = $NF }
      /^stcache_host_input_wait_seconds_count/ && /kind="read"/ { reads = $NF }
      /^stcache_host_ready_seconds_count/ { ready = $NF }
      /^stcache_wal_save_seconds_count/ { wal = $NF }
      /^dotnet_thread_pool_work_item_count/ { items = $NF }
      /^dotnet_gc_heap_total_allocated/ { alloc = $NF }
      END { print node, rounds + 0, peer + 0, reads + 0, ready + 0, wal + 0, items + 0, ticks, cs, alloc + 0 }'
  done
  awk '/^ctxt/ {c = $2} /^cpu / {idle = $5 + $6; total = $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9} END {print "machine", c, idle, total}' /proc/stat
}

echo "$BIN, row $ROW, $CONNECTIONS connections, leader node $LEADER (pid ${PID[$LEADER]}); out $OUT"
printf '%-8s %6s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n' round node reads/rnd peer_in/r read_in/r ready/r wal/r items/r cpu_us/r cs/r bytes/r
for (( round = 1; round <= ROUNDS; round++ )); do
  wrk -t2 -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 5s -s "bench/wrk/$SCRIPT" "$URL" -- dialect=stcache >/dev/null 2>&1
  snapshot >"$OUT/before.$round"
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s -s "bench/wrk/$SCRIPT" "$URL" -- dialect=stcache >"$OUT/wrk.$round" 2>&1 &
  WRK=$!
  if [[ -n "${PERF:-}" && $round == 1 ]]; then
    sleep $(( (DURATION - PERF_SECONDS) / 2 ))
    perf record -F 1999 -a -g -o "$OUT/perf.data" -- sleep "$PERF_SECONDS" >/dev/null 2>&1 || echo "perf record failed" >&2
  fi
  wait "$WRK"
  snapshot >"$OUT/after.$round"
  python3 - "$OUT/before.$round" "$OUT/after.$round" "$OUT/wrk.$round" "$round" "$(getconf CLK_TCK)" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
before, after, wrk, rnd, hz, load = sys.argv[1:7]
rows = lambda path: {l.split()[0]: [float(x) for x in l.split()[1:]] for l in open(path)}
b, a = rows(before), rows(after)
d = json.loads(next(l for l in open(wrk) if l.startswith("WRKJSON "))[8:])
n = max(d["requests"], 1)
errors = sum(d["errors"].values())
for node in [k for k in a if k != "machine"]:
    x = [a[node][i] - b[node][i] for i in range(len(a[node]))]
    rounds, peer, reads, ready, wal, items, ticks, cs, alloc = x
    print(f'{rnd:<8} {node:>6} {n / rounds if rounds else float("nan"):9.1f} {peer / n:9.4f} {reads / n:9.4f} {ready / n:9.4f} '
          f'{wal / n:9.4f} {items / n:9.3f} {ticks / int(hz) * 1e6 / n:9.2f} {cs / n:9.3f} {alloc / n:9.0f}')
c, idle, total = (a["machine"][i] - b["machine"][i] for i in range(3))
print(f'{rnd:<8} {d["rps"]:.0f} reads/s, p50 {d["p50_us"] / 1000:.3f} ms, p99 {d["p99_us"] / 1000:.3f} ms, {errors} errors; '
      f'machine: {c / n:.2f} context switches per read, idle {100 * idle / total:.0f}%, load {load}')
PY
done
if [[ -n "${PERF:-}" && -f "$OUT/perf.data" ]]; then
  for i in $LEADER $((LEADER % 3 + 1)); do
    echo "--- node $i (pid ${PID[$i]}$([[ $i == "$LEADER" ]] && echo ', leader' || echo ', follower')): top symbols (self) ---"
    perf report -i "$OUT/perf.data" --stdio --no-children -g none --pid "${PID[$i]}" --sort dso,sym 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | head -${PERF_TOP:-25}
  done
fi
