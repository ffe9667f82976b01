#!/usr/bin/env bash
# Two builds of the node side by side, driven at the same moment (docs/PERFORMANCE.md, "What changed after the
# profile, and the pairs"): for each row, two fresh 3-node clusters (A and B) on free loopback ports, warmed up,
# then one client per cluster started together, so both meet the same background load. Per side it prints ops/s,
# the three nodes' CPU time per operation (utime + stime from /proc) and the bytes each node allocated per
# operation (dotnet_gc_heap_total_allocated_bytes on /metrics, read before and after the row), and the leader's
# collections per generation in the row and its GC pause time per second (dotnet_gc_collections_total,
# dotnet_gc_pause_time_seconds_total). The wrk rows add p99 and p99.9 from wrk's latency distribution.
#
#   bench/write-pair.sh A/stcached B/stcached [rows...]
#
# Rows: set-c50 set-P16 set-c1 http-put (the default), http-put-c1 (wrk -t1 -c1 with bench/wrk/puts.lua: the
# one-connection HTTP write, set-c1's counterpart), the RESP reads get-c50 (linearizable GET at the leader)
# and ro-get-c50 (READONLY GET at a follower: both clusters start with --resp-readonly=true for that row), and
# http-stale-get (wrk -t2 -c64 with bench/wrk/stale-gets.lua at the leader, as compare.sh's stale row: k0..k9999
# written once first with bench/wrk/preload.py, so that no read meets a missing key).
#
# Env: N (requests per RESP row, default 100000; -P 16 rows 4x, -c 1 rows N/20), WRK_SECONDS (default 8),
# SEQUENTIAL=1 runs A's client then B's instead of both at once (for allocation only: bytes per operation do not
# depend on load), KEEP=1 keeps the temporary directory. Needs redis-benchmark, redis-cli, wrk, curl, python3.
# A client that fails is reported with its last lines; the other rows still run and the script ends with status 1.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${1:?usage: bench/write-pair.sh A/stcached B/stcached [rows...]}
B=${2:?usage: bench/write-pair.sh A/stcached B/stcached [rows...]}
shift 2
ROWS=${*:-set-c50 set-P16 set-c1 http-put}
N=${N:-100000}
WRK_SECONDS=${WRK_SECONDS:-8}
for bin in "$A" "$B"; do [[ -x "$bin" ]] || { echo "no stcached at $bin" >&2; exit 2; }; done
OUT=$(mktemp -d "${TMPDIR:-/tmp}/stcache-pair.XXXXXX")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
declare -A RESP HTTP PID LEADER
ALL_PIDS=()
stop() {
  local p
  for p in "${ALL_PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  for p in "${ALL_PIDS[@]:-}"; do [[ -n "$p" ]] && wait "$p" 2>/dev/null || true; done
  ALL_PIDS=()
}
cleanup() { stop; [[ -n "${KEEP:-}" ]] && echo "kept $OUT" || rm -rf "$OUT"; }
trap cleanup EXIT INT TERM

start() { # side binary [extra node arguments...]
  local side=$1 bin=$2 i cluster="" raft=()
  shift 2
  rm -rf "$OUT/$side"; mkdir -p "$OUT/$side"
  for i in 1 2 3; do RESP[$side$i]=$(free_port); HTTP[$side$i]=$(free_port); raft[$i]=$(free_port); done
  for i in 1 2 3; do cluster+="${cluster:+,}$i/127.0.0.1:${raft[$i]}"; done
  for i in 1 2 3; do
    "$bin" --http_addr="127.0.0.1:${HTTP[$side$i]}" --raft_addr="127.0.0.1:${raft[$i]}" --raft_id=$i --raft_cluster="$cluster" \
      --node="$OUT/$side/n$i" --resp="127.0.0.1:${RESP[$side$i]}" --log-level=Warning "$@" >"$OUT/$side/n$i.log" 2>&1 &
    PID[$side$i]=$!
    ALL_PIDS+=("$!")
  done
  LEADER[$side]=""
  for _ in $(seq 1 300); do
    for i in 1 2 3; do
      [[ "$(redis-cli -p "${RESP[$side$i]}" ROLE 2>/dev/null | head -1)" == master ]] && LEADER[$side]=$i
    done
    [[ -n "${LEADER[$side]}" && "$(redis-cli -p "${RESP[$side${LEADER[$side]}]}" SET ready 1 2>/dev/null)" == OK ]] && return 0
    LEADER[$side]=""
    sleep 0.1
  done
  echo "side $side: no leader elected (logs in $OUT/$side)" >&2
  exit 1
}

warm() { # side: tiered compilation settles before anything is measured
  local port=${RESP[$1${LEADER[$1]}]}
  redis-benchmark -h 127.0.0.1 -p "$port" -n 50000 -d 100 -r 10000 -c 50 -P 16 -t set -q >/dev/null 2>&1 || true
  redis-benchmark -h 127.0.0.1 -p "$port" -n 30000 -d 100 -r 10000 -c 50 -t set -q >/dev/null 2>&1 || true
  redis-benchmark -h 127.0.0.1 -p "$port" -n 30000 -d 100 -r 10000 -c 50 -t get -q >/dev/null 2>&1 || true
  wrk -t1 -c8 -d2s -s bench/wrk/puts.lua "http://127.0.0.1:${HTTP[$1${LEADER[$1]}]}" -- dialect=stcache >/dev/null 2>&1 || true
}

cpu_ticks() { # pid: utime + stime in clock ticks
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

allocated() { # http port
  curl -sf --max-time 5 "http://127.0.0.1:$1/metrics" | awk '/^dotnet_gc_heap_total_allocated_bytes/ && !seen { print $2; seen = 1 }'
}

gc_counts() { # http port -> "gen0 gen1 gen2 pause_seconds": collections of each generation and pause time so far
  curl -sf --max-time 5 "http://127.0.0.1:$1/metrics" | awk '/^dotnet_gc_pause_time_seconds_total/ { p = $2 }
    /^dotnet_gc_collections_total/ { g = $0; sub(/.*gc_heap_generation="gen/, "", g); c[substr(g, 1, 1)] = $2 }
    END { print c[0] + 0, c[1] + 0, c[2] + 0, p + 0 }'
}

# node order for a side: leader first, then the followers
order() { local l=${LEADER[$1]}; echo "$l $((l % 3 + 1)) $(((l + 1) % 3 + 1))"; }

snapshot() { # side -> "cpu a1 a2 a3 gen0 gen1 gen2 pause" (cpu summed over the three nodes, bytes allocated per
  # node, leader first, then the leader's collections and GC pause seconds)
  local side=$1 i cpu=0 bytes=""
  for i in $(order "$side"); do
    cpu=$((cpu + $(cpu_ticks "${PID[$side$i]}")))
    bytes+=" $(allocated "${HTTP[$side$i]}")"
  done
  echo "$cpu$bytes $(gc_counts "${HTTP[$side${LEADER[$side]}]}")"
}

client() { # side row output-file
  local side=$1 row=$2 out=$3 l=${LEADER[$1]}
  local port=${RESP[$side$l]} follower=${RESP[$side$((l % 3 + 1))]}
  case $row in
    set-c50) redis-benchmark -h 127.0.0.1 -p "$port" -d 100 -r 10000 -t set -c 50 -n "$N" --csv >"$out" 2>&1 ;;
    set-P16) redis-benchmark -h 127.0.0.1 -p "$port" -d 100 -r 10000 -t set -c 50 -P 16 -n $((N * 4)) --csv >"$out" 2>&1 ;;
    set-c1) redis-benchmark -h 127.0.0.1 -p "$port" -d 100 -r 10000 -t set -c 1 -n $((N / 20)) --csv >"$out" 2>&1 ;;
    get-c50) redis-benchmark -h 127.0.0.1 -p "$port" -d 100 -r 10000 -t get -c 50 -n "$N" --csv >"$out" 2>&1 ;;
    ro-get-c50) redis-benchmark -h 127.0.0.1 -p "$follower" -d 100 -r 10000 -t get -c 50 -n "$N" --csv >"$out" 2>&1 ;;
    http-put-c1) wrk -t1 -c1 -d"${WRK_SECONDS}s" --latency --timeout 5s -s bench/wrk/puts.lua "http://127.0.0.1:${HTTP[$side$l]}" -- dialect=stcache >"$out" 2>&1 ;;
    http-put) wrk -t2 -c64 -d"${WRK_SECONDS}s" --latency --timeout 5s -s bench/wrk/puts.lua "http://127.0.0.1:${HTTP[$side$l]}" -- dialect=stcache >"$out" 2>&1 ;;
    http-stale-get) wrk -t2 -c64 -d"${WRK_SECONDS}s" --latency --timeout 5s -s bench/wrk/stale-gets.lua "http://127.0.0.1:${HTTP[$side$l]}" -- dialect=stcache >"$out" 2>&1 ;;
  esac
}

ops() { # row output-file -> "ops/s p50ms requests [p99ms p99.9ms]"
  local row=$1 out=$2
  if [[ $row == http-* ]]; then
    python3 - "$out" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
total = re.search(r"(\d+) requests in", text)
scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def percentile(name):  # from --latency's distribution: "50%", "99%" (wrk prints no 99.9%: WRKJSON has it)
    m = re.search(rf"^\s+{re.escape(name)}\s+([\d.]+)(us|ms|s)$", text, re.M)
    return f"{float(m.group(1)) * scale[m.group(2)]:.3f}" if m else "-"


json_line = re.search(r"^WRKJSON (.*)$", text, re.M)
p999 = f"{json.loads(json_line.group(1))['p999_us'] / 1000:.3f}" if json_line else "-"
print(rps.group(1) if rps else "0", percentile("50%"), total.group(1) if total else "0", percentile("99%"), p999)
EOF
  else
    python3 - "$out" <<'EOF'
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if r and r[0] != "test"]
r = rows[-1] if rows else ["", "0", "0", "0", "-"]
print(r[1], r[4] if len(r) > 4 else "-", "")
EOF
  fi
}

report() { # side row before after result-file requests-default
  local side=$1 row=$2 before=($3) after=($4) out=$5 requests=$6
  read -r rate p50 total p99 p999 <<<"$(ops "$row" "$out")"
  [[ -n "$total" ]] || total=$requests
  python3 - "$side" "$row" "$rate" "$p50" "$total" "${before[*]}" "${after[*]}" "$(getconf CLK_TCK)" "${p99:-}" "${p999:-}" "$WRK_SECONDS" <<'EOF'
import sys
side, row, rate, p50, total, before, after, hz, p99, p999, wrk_seconds = sys.argv[1:]
b, a, n = [float(x) for x in before.split()], [float(x) for x in after.split()], max(1, int(total))
cpu_us = (a[0] - b[0]) / int(hz) * 1e6 / n
alloc = [(a[i] - b[i]) / n for i in range(1, 4)]
gcs = "/".join(f"{a[i] - b[i]:.0f}" for i in range(4, 7))
tail = f"  p99 {p99:>6s} ms  p99.9 {p999:>6s} ms" if p99 else ""
# GC pause per second of the row: wrk rows run WRK_SECONDS; a RESP row's duration is its count over its rate.
seconds = float(wrk_seconds) if row.startswith("http-") else n / max(float(rate), 1.0)
print(f"{row:9s} {side}: {float(rate):>10,.0f} ops/s  p50 {p50:>6s} ms{tail}  CPU {cpu_us:6.1f} us/op (3 nodes)  "
      f"allocated B/op: leader {alloc[0]:,.0f}, followers {alloc[1]:,.0f} / {alloc[2]:,.0f}  "
      f"leader GC gen0/1/2 {gcs}, pause {(a[7] - b[7]) * 1000 / seconds:.2f} ms/s  ({n} ops)")
EOF
}

requests_of() {
  case $1 in set-c50 | get-c50 | ro-get-c50) echo "$N" ;; set-P16) echo $((N * 4)) ;; set-c1) echo $((N / 20)) ;; *) echo 0 ;; esac
}

FAILED=0
echo "A = $A"
echo "B = $B"
for row in $ROWS; do
  extra=()
  [[ $row == ro-get-c50 ]] && extra=(--resp-readonly=true)
  start A "$A" "${extra[@]}"
  start B "$B" "${extra[@]}"
  warm A
  warm B
  if [[ $row == http-stale-get ]]; then
    python3 bench/wrk/preload.py "http://127.0.0.1:${HTTP[A${LEADER[A]}]}" &
    pa=$!
    python3 bench/wrk/preload.py "http://127.0.0.1:${HTTP[B${LEADER[B]}]}" &
    pb=$!
    wait "$pa"
    wait "$pb"
    for side in A B; do
      wrk -t1 -c8 -d2s -s bench/wrk/stale-gets.lua "http://127.0.0.1:${HTTP[$side${LEADER[$side]}]}" -- dialect=stcache >/dev/null 2>&1 || true
    done
  fi
  read -r load _ </proc/loadavg
  before_a=$(snapshot A)
  before_b=$(snapshot B)
  status_a=0
  status_b=0
  if [[ -n "${SEQUENTIAL:-}" ]]; then
    client A "$row" "$OUT/A.$row" || status_a=$?
    client B "$row" "$OUT/B.$row" || status_b=$?
  else
    client A "$row" "$OUT/A.$row" &
    ca=$!
    client B "$row" "$OUT/B.$row" &
    cb=$!
    wait "$ca" || status_a=$?
    wait "$cb" || status_b=$?
  fi
  after_a=$(snapshot A)
  after_b=$(snapshot B)
  echo "== $row (load average at start $load)"
  # A client that fails (redis-benchmark's error reply, wrk unable to connect) is named with its last lines, and
  # the script goes on to the next row but ends with status 1, instead of leaving silently under set -e.
  for side in A B; do
    status_var=status_${side,,}
    if [[ ${!status_var} -ne 0 ]]; then
      echo "$row: client $side exited with status ${!status_var}; its last lines:" >&2
      tail -n 5 "$OUT/$side.$row" >&2 || true
      FAILED=1
    fi
  done
  report A "$row" "$before_a" "$after_a" "$OUT/A.$row" "$(requests_of "$row")"
  report B "$row" "$before_b" "$after_b" "$OUT/B.$row" "$(requests_of "$row")"
  stop
done
exit "$FAILED"
