#!/usr/bin/env bash
# bench/compare.sh: etcd 3.4 vs a DotNext Raft KV vs stcache vs a bare Kestrel server, in one run on one machine.
#
# Starts a 3-node etcd cluster, a 3-node DotNext KV (bench/dotnext-kv), a 3-node stcache cluster and the baseline
# server on free loopback ports with
# temporary data directories, drives each with wrk and the same Lua scripts (bench/wrk), measures failover and
# memory, prints a side-by-side table and writes CSV/JSON/SVG under bench/results/<UTC time>/.
# Everything it starts is stopped on exit. See docs/PERFORMANCE.md.
#
# Settings (environment):
#   QUICK=1            smoke run of ~2-3 minutes plus builds (2 s runs, 3 failovers, 50,000 keys for memory)
#   SYSTEMS            which systems to run (default "etcd dotnext stcache baseline"; stcache is skipped without ./build.sh)
#   PARTS              which measurements (default "workloads failover memory"); e.g. PARTS=failover
#                      SYSTEMS="etcd stcache" for the failover figures alone, beside etcd's; PARTS=resp runs
#                      the Redis-protocol section alone (redis-benchmark vs Redis and Garnet; see below)
#   RESP_SYSTEMS       systems of the RESP section (default "redis garnet stcache")
#   RESP_N_C1, RESP_N_C50, RESP_N_P16   redis-benchmark requests per -c 1, -c 50 and -P 16 run
#                      (default 20000, 200000, 1000000; QUICK 2000, 20000, 100000)
#   RESP_RUNS          redis-benchmark runs per RESP row and system; the row reports the run with the median
#                      throughput (default 3; QUICK 1). One -c 50 run on this 2-core machine varies by 15% from the next.
#   DURATION           seconds per measured wrk run (default 8; QUICK 2)
#   WRK_RUNS           measured wrk runs per HTTP row and system, one after the other after one warm-up; the row
#                      reports the run with the median throughput, all runs are kept (raw/, runs.csv) (default 3;
#                      QUICK 1). Two runs of one binary on this 2-core VM differ by up to a quarter.
#   WARMUP             seconds of unmeasured load before each workload (default 2; QUICK 1)
#   WRITE_CONNECTIONS  connection counts for the write sweep (default "1 16 64 256")
#   CONNECTIONS        connections for the other workloads (default 64)
#   WRK_THREADS        wrk threads (default 2)
#   FAILOVER_REPS      leader kills per system (default 10; QUICK 3)
#   MEMORY_KEYS        keys of 100 B loaded before measuring RSS (default 1000000; QUICK 50000)
#   OUT                results directory (default bench/results/<UTC time>)
#   STCACHE_FLAGS      extra flags for every stcached node
#   STCACHED           use this stcached binary instead of building with ./build.sh
#   KEEP=1             keep the temporary directory (logs, data) for inspection
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
QUICK=${QUICK:-0}
if [[ "$QUICK" == 1 ]]; then
  DURATION=${DURATION:-2}
  WARMUP=${WARMUP:-1}
  WRK_RUNS=${WRK_RUNS:-1}
  FAILOVER_REPS=${FAILOVER_REPS:-3}
  MEMORY_KEYS=${MEMORY_KEYS:-50000}
  WRITE_CONNECTIONS=${WRITE_CONNECTIONS:-"1 16 64 256"}
else
  DURATION=${DURATION:-8}
  WARMUP=${WARMUP:-2}
  WRK_RUNS=${WRK_RUNS:-3}
  FAILOVER_REPS=${FAILOVER_REPS:-10}
  MEMORY_KEYS=${MEMORY_KEYS:-1000000}
  WRITE_CONNECTIONS=${WRITE_CONNECTIONS:-"1 16 64 256"}
fi
SYSTEMS=${SYSTEMS:-"etcd dotnext stcache baseline"}
PARTS=${PARTS:-"workloads failover memory"}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
STCACHE_FLAGS=${STCACHE_FLAGS:-}
KEEP=${KEEP:-0}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-"$BENCH/results/$STAMP"}

log() { printf '[compare %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# ---- prerequisites --------------------------------------------------------------------------------------------

install_missing() {
  local missing=()
  command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if has_part resp; then
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
  fi
  if (( ${#missing[@]} == 0 )); then
    return
  fi
  [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

has_system() { [[ " $SYSTEMS " == *" $1 "* ]]; }
has_part() { [[ " $PARTS " == *" $1 "* ]]; }

# ---- process bookkeeping ----------------------------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stcache-compare.XXXXXX")
declare -A PIDS=()     # name -> pid of every process we started

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for name in "${!PIDS[@]}"; do
    kill -TERM "${PIDS[$name]}" 2>/dev/null || true
  done
  sleep 0.5
  for name in "${!PIDS[@]}"; do
    kill -KILL "${PIDS[$name]}" 2>/dev/null || true
    wait "${PIDS[$name]}" 2>/dev/null || true
  done
  if [[ "$KEEP" == 1 ]]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_process() { # name logfile command...
  local name=$1 logfile=$2
  shift 2
  "$@" >"$logfile" 2>&1 &
  PIDS[$name]=$!
}

stop_process() { # name [signal]
  local name=$1 signal=${2:-KILL}
  local pid=${PIDS[$name]:-}
  [[ -n "$pid" ]] || return 0
  kill "-$signal" "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$name]"
}

# Free loopback ports: ask the kernel for an ephemeral port and remember it, so no port is handed out twice.
declare -A USED_PORTS=()
free_port() {
  local port
  while true; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    if [[ -z "${USED_PORTS[$port]:-}" ]]; then
      USED_PORTS[$port]=1
      echo "$port"
      return
    fi
  done
}

wait_until() { # seconds command... : retries every 100 ms
  local deadline=$(( $(now_ms) + $1 * 1000 ))
  shift
  until "$@" >/dev/null 2>&1; do
    (( $(now_ms) < deadline )) || return 1
    sleep 0.1
  done
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

json_field() { # field : reads JSON on stdin, prints a top-level (or header.) field
  python3 -c 'import json,sys
d = json.load(sys.stdin)
f = sys.argv[1]
v = d
for part in f.split("."):
    v = v.get(part, "") if isinstance(v, dict) else ""
print(v)' "$1"
}

# ---- shared by the 3-node systems -------------------------------------------------------------------------------

three_pids() { local i; for i in 1 2 3; do echo "${PIDS[$1$i]:-}"; done; } # system

http_kv_leader() { # system http-ports : the 1-based index of the node whose /v1/status says it leads, or nothing
  local system=$1 i status role
  local -n http_ports=$2
  for i in 1 2 3; do
    [[ -n "${PIDS[$system$i]:-}" ]] || continue
    status=$(curl -sf --max-time 1 "http://127.0.0.1:${http_ports[$i]}/v1/status") || continue
    role=$(json_field role <<<"$status")
    if [[ "${role,,}" == leader ]]; then
      echo "$i"
      return
    fi
  done
}

http_kv_put() { # http-ports index : one /v1/kv write with a short timeout; success only when acknowledged
  local -n http_ports=$1
  curl -sf --max-time 0.5 -X PUT --data-binary x "http://127.0.0.1:${http_ports[$2]}/v1/kv/failover" >/dev/null 2>&1
}

# ---- etcd -------------------------------------------------------------------------------------------------------

declare -a ETCD_CLIENT=() ETCD_PEER=()
etcd_start_node() { # index (1-based)
  local i=$1 cluster="" j
  for j in 1 2 3; do
    cluster+="${cluster:+,}e$j=http://127.0.0.1:${ETCD_PEER[$j]}"
  done
  start_process "etcd$i" "$WORK/etcd$i.log" etcd --name "e$i" --data-dir "$WORK/etcd$i" \
    --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[$i]}" --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[$i]}" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "compare-$STAMP" \
    --logger zap --log-level warn
}

etcd_healthy() { curl -sf --max-time 1 "http://127.0.0.1:${ETCD_CLIENT[$1]}/health" | grep -q '"health":"true"'; }

etcd_start() {
  local i
  for i in 1 2 3; do
    ETCD_CLIENT[$i]=$(free_port)
    ETCD_PEER[$i]=$(free_port)
  done
  for i in 1 2 3; do
    etcd_start_node "$i"
  done
  for i in 1 2 3; do
    wait_until 30 etcd_healthy "$i" || die "etcd node $i did not become healthy (see $WORK/etcd$i.log)"
  done
  log "etcd $(etcd --version | head -1 | awk '{print $3}') up on client ports ${ETCD_CLIENT[*]}"
}

etcd_leader() { # prints the 1-based index of the leader, or nothing
  local i member leader
  for i in 1 2 3; do
    [[ -n "${PIDS[etcd$i]:-}" ]] || continue
    local status
    status=$(curl -sf --max-time 1 -X POST -d '{}' "http://127.0.0.1:${ETCD_CLIENT[$i]}/v3/maintenance/status") || continue
    member=$(json_field header.member_id <<<"$status")
    leader=$(json_field leader <<<"$status")
    if [[ -n "$member" && "$member" == "$leader" ]]; then
      echo "$i"
      return
    fi
  done
}

etcd_put() { # index : one write with a short timeout; success only when acknowledged
  curl -sf --max-time 0.5 -X POST -d '{"key":"ZmFpbG92ZXI=","value":"eA=="}' "http://127.0.0.1:${ETCD_CLIENT[$1]}/v3/kv/put" 2>/dev/null | grep -q '"revision"'
}

etcd_url() { echo "http://127.0.0.1:${ETCD_CLIENT[$1]}"; }

etcd_pids() { three_pids etcd; }

# ---- stcache ----------------------------------------------------------------------------------------------------

declare -a ST_HTTP=() ST_RAFT=()
STCACHED=${STCACHED:-}
stcache_build() {
  if [[ -n "$STCACHED" ]]; then
    [[ -x "$STCACHED" ]] || die "STCACHED=$STCACHED is not executable"
    return 0
  fi
  [[ -x "$ROOT/build.sh" ]] || return 1
  log "building stcache (./build.sh)"
  (cd "$ROOT" && ./build.sh) >"$WORK/build.log" 2>&1 || die "./build.sh failed (see $WORK/build.log)"
  STCACHED="$ROOT/out/stcached"
  [[ -x "$STCACHED" ]] || die "./build.sh did not produce out/stcached"
}

stcache_launch() { # name-prefix http-ports raft-ports index extra-flags... : one node of a 3-node stcache, in the
  # raft-demo static form, so every node starts (and restarts) alike; the port arguments name arrays
  local prefix=$1 i=$4 cluster="" j
  local -n http_ports=$2 raft_ports=$3
  shift 4
  for j in 1 2 3; do
    cluster+="${cluster:+,}$j/127.0.0.1:${raft_ports[$j]}"
  done
  # shellcheck disable=SC2086 # STCACHE_FLAGS is a list of flags
  start_process "$prefix$i" "$WORK/$prefix$i.log" "$STCACHED" --http_addr="127.0.0.1:${http_ports[$i]}" \
    --raft_addr="127.0.0.1:${raft_ports[$i]}" --raft_id="$i" --raft_cluster="$cluster" --node="$WORK/$prefix$i" \
    --log-level=Warning $STCACHE_FLAGS "$@"
}

stcache_start_node() { stcache_launch stcache ST_HTTP ST_RAFT "$1"; } # index (1-based)

stcache_healthy() { curl -sf --max-time 1 "http://127.0.0.1:${ST_HTTP[$1]}/v1/status" | grep -q '"leader":"[1-9]'; }

stcache_start() {
  local i
  for i in 1 2 3; do
    ST_HTTP[$i]=$(free_port)
    ST_RAFT[$i]=$(free_port)
  done
  for i in 1 2 3; do
    stcache_start_node "$i"
  done
  for i in 1 2 3; do
    wait_until 30 stcache_healthy "$i" || die "stcache node $i did not see a leader (see $WORK/stcache$i.log)"
  done
  wait_until 30 stcache_put 1 || die "stcache did not acknowledge a write"
  log "stcache up on HTTP ports ${ST_HTTP[*]}"
}

stcache_leader() { http_kv_leader stcache ST_HTTP; }

stcache_put() { http_kv_put ST_HTTP "$1"; }

stcache_url() { echo "http://127.0.0.1:${ST_HTTP[$1]}"; }

stcache_pids() { three_pids stcache; }

# ---- DotNext KV --------------------------------------------------------------------------------------------------
# bench/dotnext-kv: DotNext.AspNetCore.Cluster's Raft over HTTP (on the same Kestrel port as the API), its
# write-ahead log with default options, ApplyReadBarrierAsync for linearizable reads. A follower forwards writes
# to the leader once; wrk drives the leader (asked for again before every workload).

declare -a DN_HTTP=()
DOTNEXT_KV=""
dotnext_build() {
  log "building the DotNext KV (bench/dotnext-kv)"
  dotnet publish "$BENCH/dotnext-kv/DotNextKv.csproj" -c Release -o "$WORK/dotnext-kv" --nologo -v quiet >"$WORK/dotnext-build.log" 2>&1 ||
    die "DotNext KV build failed (see $WORK/dotnext-build.log)"
  DOTNEXT_KV="$WORK/dotnext-kv/dotnext-kv"
}

dotnext_start_node() { # index (1-based)
  local i=$1
  start_process "dotnext$i" "$WORK/dotnext$i.log" "$DOTNEXT_KV" --port="${DN_HTTP[$i]}" \
    --members="${DN_HTTP[1]},${DN_HTTP[2]},${DN_HTTP[3]}" --data="$WORK/dotnext$i"
}

dotnext_healthy() { curl -sf --max-time 1 "http://127.0.0.1:${DN_HTTP[$1]}/v1/status" | grep -q '"leader":"http'; }

dotnext_start() {
  local i
  dotnext_build
  for i in 1 2 3; do
    DN_HTTP[$i]=$(free_port)
  done
  for i in 1 2 3; do
    dotnext_start_node "$i"
  done
  for i in 1 2 3; do
    wait_until 30 dotnext_healthy "$i" || die "DotNext node $i did not see a leader (see $WORK/dotnext$i.log)"
  done
  local leader
  leader=$(dotnext_leader)
  wait_until 30 dotnext_put "${leader:-1}" || die "the DotNext KV did not acknowledge a write"
  log "DotNext KV up on ports ${DN_HTTP[*]}"
}

dotnext_leader() { http_kv_leader dotnext DN_HTTP; }

dotnext_put() { http_kv_put DN_HTTP "$1"; }

dotnext_url() { echo "http://127.0.0.1:${DN_HTTP[$1]}"; }

dotnext_pids() { three_pids dotnext; }

# ---- baseline ---------------------------------------------------------------------------------------------------

BASELINE_PORT=""
baseline_start() {
  log "building the baseline server"
  dotnet publish "$BENCH/baseline/Stcache.Baseline.csproj" -c Release -o "$WORK/baseline" --nologo -v quiet >"$WORK/baseline-build.log" 2>&1 ||
    die "baseline build failed (see $WORK/baseline-build.log)"
  BASELINE_PORT=$(free_port)
  start_process baseline "$WORK/baseline.log" "$WORK/baseline/stcache-baseline" --urls "http://127.0.0.1:$BASELINE_PORT"
  wait_until 30 curl -sf --max-time 1 "http://127.0.0.1:$BASELINE_PORT/health" || die "baseline did not start"
  log "baseline up on port $BASELINE_PORT"
}

baseline_leader() { echo 1; }

baseline_url() { echo "http://127.0.0.1:$BASELINE_PORT"; }

# ---- wrk --------------------------------------------------------------------------------------------------------

RESULTS_CSV="$OUT/results.csv"
run_wrk() { # system workload script connections url dialect [extra lua args...]
  local system=$1 workload=$2 script=$3 connections=$4 url=$5 dialect=$6
  shift 6
  local threads=$(( connections < WRK_THREADS ? connections : WRK_THREADS ))
  local raw="$OUT/raw/$system-$workload-c$connections.txt" k json rows=()
  if (( WARMUP > 0 )); then
    wrk -t"$threads" -c"$connections" -d"${WARMUP}s" --timeout 5s -s "$BENCH/wrk/$script" "$url" -- "dialect=$dialect" "$@" >/dev/null 2>&1 || true
  fi
  for (( k = 1; k <= WRK_RUNS; k++ )); do
    local run_raw="$OUT/raw/$system-$workload-c$connections.$k.txt"
    wrk -t"$threads" -c"$connections" -d"${DURATION}s" --timeout 5s -s "$BENCH/wrk/$script" "$url" -- "dialect=$dialect" "$@" >"$run_raw" 2>&1 ||
      log "wrk failed for $system $workload c=$connections run $k (see $run_raw)"
    json=$(sed -n 's/^WRKJSON //p' "$run_raw" | tail -1)
    if [[ -z "$json" ]]; then
      log "no result for $system $workload c=$connections run $k"
      continue
    fi
    rows+=("$(python3 - "$system" "$workload" "$connections" "$json" "$k" <<'PY'
import json, sys
system, workload, connections, raw, run = sys.argv[1:6]
d = json.loads(raw)
errors = sum(d["errors"].values())
ms = lambda us: f"{us / 1000:.3f}"
print(",".join([system, workload, connections, f'{d["rps"]:.0f}', ms(d["p50_us"]), ms(d["p90_us"]), ms(d["p99_us"]),
                ms(d["p999_us"]), ms(d["max_us"]), str(d["requests"]), str(errors), run]))
PY
)")
  done
  if (( ${#rows[@]} == 0 )); then
    return
  fi
  printf '%s\n' "${rows[@]}" >>"$OUT/runs.csv"
  # The run with the median throughput (of those that produced a result) is the row; its raw output is kept under
  # the row's own name as well.
  local median
  median=$(printf '%s\n' "${rows[@]}" | sort -t, -k4,4g | sed -n "$(( (${#rows[@]} + 1) / 2 ))p")
  printf '%s\n' "${median%,*}" >>"$RESULTS_CSV"
  cp "$OUT/raw/$system-$workload-c$connections.${median##*,}.txt" "$raw"
  local all=""
  (( ${#rows[@]} > 1 )) && all=" (runs $(printf '%s\n' "${rows[@]}" | cut -d, -f4 | paste -sd' '))"
  log "$(printf '%-8s %-11s c=%-3s %s' "$system" "$workload" "$connections" "$(tail -1 "$RESULTS_CSV" | cut -d, -f4,7 | sed 's/,/ ops\/s, p99 /') ms$all")"
}

# The URL of a system's current leader (waits up to 20 s for one). Asked again before every workload: on a loaded
# machine a leader can change between workloads, and every system should be measured on its leader.
leader_url() { # system
  local system=$1 leader="" deadline=$(( $(now_ms) + 20000 ))
  while [[ -z "$leader" ]] && (( $(now_ms) < deadline )); do
    leader=$("${system}_leader" || true)
    [[ -n "$leader" ]] || sleep 0.2
  done
  "${system}_url" "${leader:-1}"
}

# Every workload, for a system with the given Lua dialect, against its leader.
run_workloads() { # system dialect loadgen-api
  local system=$1 dialect=$2 api=$3 c attempt
  # Write every key once first, so that no read meets a missing key (a 404 would count as an error). Writing a
  # key again is harmless, so an incomplete preload (a leader change) is simply run again.
  for attempt in 1 2 3; do
    if "$WORK/loadgen/stcache-loadgen" --api="$api" --targets="$(leader_url "$system")" --connections=16 --keys=10000 \
      --value-size=100 --preload-only --timeout=30s >/dev/null 2>>"$WORK/loadgen.log"; then
      break
    fi
    log "$system: preload of 10,000 keys incomplete (attempt $attempt of 3)"
  done
  for c in $WRITE_CONNECTIONS; do
    run_wrk "$system" puts puts.lua "$c" "$(leader_url "$system")" "$dialect"
  done
  run_wrk "$system" gets gets.lua "$CONNECTIONS" "$(leader_url "$system")" "$dialect"
  run_wrk "$system" mix-90-10 mix.lua "$CONNECTIONS" "$(leader_url "$system")" "$dialect"
  run_wrk "$system" puts-1k puts-1k.lua "$CONNECTIONS" "$(leader_url "$system")" "$dialect"
  run_wrk "$system" stale-gets stale-gets.lua "$CONNECTIONS" "$(leader_url "$system")" "$dialect"
}

# ---- failover and memory ------------------------------------------------------------------------------------------

FAILOVER_CSV="$OUT/failover.csv"
measure_failover() { # system start_node_fn leader_fn put_fn
  local system=$1 start_fn=$2 leader_fn=$3 put_fn=$4 rep leader killed_at acked_at i ok
  for (( rep = 1; rep <= FAILOVER_REPS; rep++ )); do
    leader=$($leader_fn || true)
    [[ -n "$leader" ]] || { wait_until 20 "$put_fn" 1; leader=$($leader_fn); }
    [[ -n "$leader" ]] || die "$system: no leader before failover $rep"
    killed_at=$(now_ms)
    stop_process "$system$leader" KILL
    ok=0
    while (( $(now_ms) - killed_at < 30000 )); do
      for i in 1 2 3; do
        [[ $i == "$leader" ]] && continue
        if $put_fn "$i"; then
          ok=1
          break 2
        fi
      done
    done
    acked_at=$(now_ms)
    if (( ok == 1 )); then
      echo "$system,$rep,$(( acked_at - killed_at ))" >>"$FAILOVER_CSV"
      log "$system failover $rep: killed node $leader, next acknowledged write after $(( acked_at - killed_at )) ms"
    else
      echo "$system,$rep," >>"$FAILOVER_CSV"
      log "$system failover $rep: no acknowledged write within 30 s"
    fi
    # Bring the old leader back as a follower and let it catch up before the next kill.
    $start_fn "$leader"
    wait_until 30 "${system}_healthy" "$leader" || die "$system node $leader did not come back (see $WORK/$system$leader.log)"
    sleep 1
  done
}

MEMORY_CSV="$OUT/memory.csv"
measure_memory() { # system api url pids...
  local system=$1 api=$2 url=$3 loaded pid node=0
  shift 3
  log "$system: loading $MEMORY_KEYS keys of 100 B for the memory figure"
  loaded=$("$WORK/loadgen/stcache-loadgen" --api="$api" --targets="$url" --connections=64 --keys="$MEMORY_KEYS" \
    --value-size=100 --key-prefix=m --preload-only --timeout=30s 2>>"$WORK/loadgen.log") || true
  sleep 2
  for pid in "$@"; do
    node=$(( node + 1 ))
    [[ -n "$pid" ]] || continue
    echo "$system,$node,${loaded:-0},$(rss_kib "$pid")" >>"$MEMORY_CSV"
    log "$system node $node: RSS $(rss_kib "$pid") KiB after ${loaded:-0} keys"
  done
}

# ---- RESP (PARTS=resp) ------------------------------------------------------------------------------------------
# redis-benchmark against Redis 7 (Debian redis-server, appendonly yes + appendfsync always: the single-node twin
# of stcache's durability), Garnet (bench/garnet-host, Microsoft.Garnet with default settings) and a 3-node stcache
# cluster: 100-byte values, 10,000 keys, SET and GET at -c 1, -c 50 and -c 50 -P 16, and for stcache a READONLY
# GET row (stale local reads on a follower: the nodes restart with --resp-readonly=true on the same data, so
# redis-benchmark's connections start in READONLY mode). Writes and linearizable reads go to the leader. Figures
# come from redis-benchmark's own summary (throughput, p50 and p99 of its latency histogram). Results go to
# bench/results/resp/<UTC time>/ (RESP_OUT); the targets of issue 12 are printed MET or MISSED.
RESP_SYSTEMS=${RESP_SYSTEMS:-"redis garnet stcache"}
if [[ "$QUICK" == 1 ]]; then
  RESP_N_C1=${RESP_N_C1:-2000}
  RESP_N_C50=${RESP_N_C50:-20000}
  RESP_N_P16=${RESP_N_P16:-100000}
  RESP_RUNS=${RESP_RUNS:-1}
else
  RESP_RUNS=${RESP_RUNS:-3}
  RESP_N_C1=${RESP_N_C1:-20000}
  RESP_N_C50=${RESP_N_C50:-200000}
  RESP_N_P16=${RESP_N_P16:-1000000}
fi
RESP_OUT=${RESP_OUT:-"$BENCH/results/resp/$STAMP"}
RESP_RUN_TIMEOUT=${RESP_RUN_TIMEOUT:-900}   # seconds before one redis-benchmark run is abandoned (it waits forever on a dead server)
declare -a RS_HTTP=() RS_RAFT=() RS_RESP=()

resp_ping() { [[ "$(redis-cli -p "$1" PING 2>/dev/null)" == PONG ]]; }

# RESP_RUNS redis-benchmark runs of one row, one after the other; each full output is kept (raw/<system>-<row>.<k>.txt,
# and raw/<system>-<row>.txt is the reported one), and the run with the median throughput goes into results.csv
# (its p50 and p99 with it: the figures of one run, never mixed across runs).
resp_bench() { # system row port requests benchmark-args...
  local system=$1 row=$2 port=$3 requests=$4 k raw runs=()
  shift 4
  for (( k = 1; k <= RESP_RUNS; k++ )); do
    raw="$RESP_OUT/raw/$system-$row.$k.txt"
    log "$system $row (run $k of $RESP_RUNS): redis-benchmark -p $port -n $requests -d 100 -r 10000 $*"
    timeout "$RESP_RUN_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$port" -n "$requests" -d 100 -r 10000 --precision 3 "$@" >"$raw" 2>&1 ||
      log "$system $row: redis-benchmark failed (see $raw)"
    if grep -q 'Error from server' "$raw"; then
      log "$system $row: error replies (see $raw)"
    fi
    runs+=("$(awk -v name="$system" -v row="$row" -v run="$k" '
      /throughput summary:/ { rps = $3 }
      /latency summary/ { getline header; getline values; split(values, v); p50 = v[3]; p99 = v[5] }
      END { printf "%s,%s,%s,%s,%s,%s\n", (rps == "" ? "NaN" : rps), name, row, (p50 == "" ? "NaN" : p50), (p99 == "" ? "NaN" : p99), run }
    ' "$raw")")
  done
  # The median run by throughput (a failed run, NaN, sorts first and is reported only if most runs failed).
  local median
  median=$(printf '%s\n' "${runs[@]}" | sort -t, -k1,1g | sed -n "$(( (RESP_RUNS + 1) / 2 ))p")
  IFS=, read -r rps name rowname p50 p99 run <<<"$median"
  [[ "$RESP_RUNS" -gt 1 ]] && log "$system $row: runs $(printf '%s\n' "${runs[@]}" | cut -d, -f1 | paste -sd' '); reporting run $run"
  cp "$RESP_OUT/raw/$system-$row.$run.txt" "$RESP_OUT/raw/$system-$row.txt"
  printf '%s,%s,%s,%s,%s\n' "$name" "$rowname" "$rps" "$p50" "$p99" >>"$RESP_OUT/results.csv"
}

resp_rows() { # system port
  local system=$1 port=$2
  resp_bench "$system" set-c1 "$port" "$RESP_N_C1" -t set -c 1
  resp_bench "$system" get-c1 "$port" "$RESP_N_C1" -t get -c 1
  resp_bench "$system" set-c50 "$port" "$RESP_N_C50" -t set -c 50
  resp_bench "$system" get-c50 "$port" "$RESP_N_C50" -t get -c 50
  resp_bench "$system" set-c50-P16 "$port" "$RESP_N_P16" -t set -c 50 -P 16
  resp_bench "$system" get-c50-P16 "$port" "$RESP_N_P16" -t get -c 50 -P 16
}

resp_redis() {
  local port
  port=$(free_port)
  mkdir -p "$WORK/redis"
  start_process redis "$WORK/redis.log" redis-server --bind 127.0.0.1 --port "$port" --dir "$WORK/redis" \
    --appendonly yes --appendfsync always
  wait_until 30 resp_ping "$port" || die "redis-server did not start (see $WORK/redis.log)"
  echo "redis=$(redis-server --version | awk '{print $3}' | sed 's/v=//') appendonly=yes appendfsync=always" >>"$RESP_OUT/machine.txt"
  resp_rows redis "$port"
  stop_process redis TERM
}

resp_garnet() {
  local port
  port=$(free_port)
  log "building bench/garnet-host"
  dotnet publish "$BENCH/garnet-host/GarnetHost.csproj" -c Release -o "$WORK/garnet" --nologo -v quiet >"$WORK/garnet-build.log" 2>&1 ||
    die "garnet-host build failed (see $WORK/garnet-build.log)"
  start_process garnet "$WORK/garnet.log" "$WORK/garnet/garnet-host" --bind 127.0.0.1 --port "$port"
  wait_until 60 resp_ping "$port" || die "garnet did not start (see $WORK/garnet.log)"
  echo "garnet=Microsoft.Garnet $(sed -n 's/.*Include="Microsoft.Garnet" Version="\([^"]*\)".*/\1/p' "$ROOT/Directory.Packages.props") (default settings)" >>"$RESP_OUT/machine.txt"
  resp_rows garnet "$port"
  stop_process garnet TERM
}

resp_stcache_start_node() { # index extra-flags...
  local i=$1
  shift
  stcache_launch resp-stcache RS_HTTP RS_RAFT "$i" --resp="127.0.0.1:${RS_RESP[$i]}" "$@"
}

resp_stcache_role() { # index : prints the node's RESP role (master/slave)
  redis-cli -p "${RS_RESP[$1]}" ROLE 2>/dev/null | head -1
}

resp_stcache_leader() { # prints the index of the node whose RESP ROLE says master, once a write is acknowledged
  local i
  for i in 1 2 3; do
    if [[ "$(resp_stcache_role "$i")" == master ]]; then
      echo "$i"
      return 0
    fi
  done
  return 1
}

resp_stcache_leader_now() { # the leader's index, waiting out an election (a loaded machine may hold one at any time)
  local leader
  for _ in $(seq 300); do
    if leader=$(resp_stcache_leader); then
      echo "$leader"
      return 0
    fi
    sleep 0.1
  done
  die "stcache (RESP) has had no leader for 30 s (see $WORK/resp-stcache*.log)"
}

resp_stcache_writes() { [[ "$(redis-cli -p "${RS_RESP[1]}" SET resp-ready 1 2>/dev/null)" == OK ]]; }

resp_stcache_up() { # extra-flags... : starts (or restarts) the three nodes and waits for a leader that writes
  local i
  for i in 1 2 3; do
    resp_stcache_start_node "$i" "$@"
  done
  wait_until 60 resp_stcache_leader >/dev/null || die "stcache (RESP) elected no leader (see $WORK/resp-stcache*.log)"
  wait_until 30 resp_stcache_writes || die "stcache (RESP) did not acknowledge a write"
}

resp_stcache() {
  local i leader follower
  for i in 1 2 3; do
    RS_HTTP[$i]=$(free_port)
    RS_RAFT[$i]=$(free_port)
    RS_RESP[$i]=$(free_port)
  done
  resp_stcache_up
  leader=$(resp_stcache_leader_now)
  log "stcache (RESP) up on ports ${RS_RESP[*]}, leader node $leader"
  echo "stcache=3 nodes, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), flags: $STCACHE_FLAGS" >>"$RESP_OUT/machine.txt"
  resp_rows stcache "${RS_RESP[$leader]}"
  # READONLY GET: the same data, every connection starting in READONLY mode, read from a follower.
  for i in 1 2 3; do stop_process "resp-stcache$i" TERM; done
  resp_stcache_up --resp-readonly=true
  leader=$(resp_stcache_leader_now)
  follower=$(( leader % 3 + 1 ))
  # The restarted processes are cold (their code not yet tiered up, their buffers not grown) while every other row
  # runs on warm ones: an unrecorded quarter-length pass first, as the other rows had the rows before them.
  timeout "$RESP_RUN_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "${RS_RESP[$follower]}" -n $(( RESP_N_C50 / 4 )) -d 100 -r 10000 \
    -t get -c 50 -q >/dev/null 2>&1 || log "stcache readonly-get-c50: the warm-up pass failed"
  resp_bench stcache readonly-get-c50 "${RS_RESP[$follower]}" "$RESP_N_C50" -t get -c 50
  for i in 1 2 3; do stop_process "resp-stcache$i" TERM; done
}

resp_report() {
  python3 - "$RESP_OUT" <<'PY'
import csv, math, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/results.csv")))
data = {(r["system"], r["row"]): r for r in rows}
systems = [s for s in ["redis", "garnet", "stcache"] if any(r["system"] == s for r in rows)]
order = ["set-c1", "get-c1", "set-c50", "get-c50", "set-c50-P16", "get-c50-P16", "readonly-get-c50"]
def num(system, row, field):
    r = data.get((system, row))
    try:
        return float(r[field]) if r else math.nan
    except ValueError:
        return math.nan
lines = []
head = f"{'row':<18}" + "".join(f"{s + ' ops/s':>16}{'p50 ms':>9}{'p99 ms':>9}" for s in systems)
lines.append(head)
lines.append("-" * len(head))
for row in order:
    if not any((s, row) in data for s in systems):
        continue
    cells = []
    for s in systems:
        if (s, row) in data:
            cells.append(f"{num(s, row, 'ops_per_second'):>16,.0f}{num(s, row, 'p50_ms'):>9.3f}{num(s, row, 'p99_ms'):>9.3f}")
        else:
            cells.append(f"{'-':>16}{'-':>9}{'-':>9}")
    lines.append(f"{row:<18}" + "".join(cells))
lines.append("")
def target(name, value, goal, met):
    state = "n/a" if math.isnan(value) or math.isnan(goal) else ("MET" if met else "MISSED")
    lines.append(f"{state:<7} {name}: {value:,.3f} vs {goal:,.3f}")
st, rd = "stcache", "redis"
v = num(st, "set-c50", "ops_per_second"); g = num(rd, "set-c50", "ops_per_second")
target("SET -c 50 ops/s >= Redis (fsync always) SET -c 50", v, g, v >= g)
v = num(st, "set-c50-P16", "ops_per_second")
target("SET -c 50 -P 16 ops/s >= 100,000", v, 100000.0, v >= 100000)
v = num(st, "get-c50", "ops_per_second"); g = num(rd, "get-c50", "ops_per_second") / 2
target("linearizable GET -c 50 ops/s >= half of Redis GET -c 50", v, g, v >= g)
v = num(st, "readonly-get-c50", "ops_per_second"); g = num(rd, "get-c50", "ops_per_second") * 0.8
target("READONLY GET -c 50 ops/s >= 80% of Redis GET -c 50", v, g, v >= g)
v = num(st, "set-c1", "p50_ms")
target("SET -c 1 p50 ms <= 0.5", v, 0.5, v <= 0.5)
text = "\n".join(lines) + "\n"
open(f"{out}/table.txt", "w").write(text)
print(text, end="")
PY
}

resp_main() {
  mkdir -p "$RESP_OUT/raw"
  echo "system,row,ops_per_second,p50_ms,p99_ms" >"$RESP_OUT/results.csv"
  {
    echo "date_utc=$STAMP"
    echo "kernel=$(uname -sr)"
    echo "cpus=$(nproc)"
    echo "cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "redis_benchmark=$(redis-benchmark --version | awk '{print $2}')"
    echo "dotnet=$(dotnet --version)"
    echo "requests: c1=$RESP_N_C1 c50=$RESP_N_C50 P16=$RESP_N_P16 runs_per_row=$RESP_RUNS (the median run reported) quick=$QUICK; 100-byte values, -r 10000"
    echo "loadavg_at_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  } >"$RESP_OUT/machine.txt"
  if [[ " $RESP_SYSTEMS " == *" redis "* ]]; then resp_redis; fi
  if [[ " $RESP_SYSTEMS " == *" garnet "* ]]; then resp_garnet; fi
  if [[ " $RESP_SYSTEMS " == *" stcache "* ]]; then
    if stcache_build; then resp_stcache; else log "no ./build.sh: skipping stcache"; fi
  fi
  echo "loadavg_at_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESP_OUT/machine.txt"
  resp_report
  log "RESP results in $RESP_OUT"
}

# ---- main -------------------------------------------------------------------------------------------------------

install_missing
if has_part resp; then
  resp_main
  if ! has_part workloads && ! has_part failover && ! has_part memory; then
    exit 0
  fi
fi
mkdir -p "$OUT/raw"
echo "system,workload,connections,ops_per_second,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,requests,errors" >"$RESULTS_CSV"
echo "system,workload,connections,ops_per_second,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,requests,errors,run" >"$OUT/runs.csv"
echo "system,rep,ms" >"$FAILOVER_CSV"
echo "system,node,keys,rss_kib" >"$MEMORY_CSV"
{
  echo "date_utc=$STAMP"
  echo "kernel=$(uname -sr)"
  echo "cpus=$(nproc)"
  echo "cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "memory_mib=$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)"
  echo "etcd=$(command -v etcd >/dev/null && etcd --version | head -1 | awk '{print $3}')"
  echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
  echo "dotnet=$(dotnet --version)"
  echo "dotnext_kv=DotNext.AspNetCore.Cluster $(sed -n 's/.*Include="DotNext.AspNetCore.Cluster" Version="\([^"]*\)".*/\1/p' "$ROOT/Directory.Packages.props")"
  echo "stcache_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "stcache_flags=$STCACHE_FLAGS"
  echo "duration_s=$DURATION warmup_s=$WARMUP connections=$CONNECTIONS write_connections=\"$WRITE_CONNECTIONS\" failover_reps=$FAILOVER_REPS memory_keys=$MEMORY_KEYS quick=$QUICK wrk_runs_per_row=$WRK_RUNS (the median run reported)"
  echo "loadavg_at_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

log "building the load generator (used to preload keys for the memory figure)"
dotnet publish "$BENCH/Stcache.LoadGen/Stcache.LoadGen.csproj" -c Release -o "$WORK/loadgen" --nologo -v quiet >"$WORK/loadgen-build.log" 2>&1 ||
  die "load generator build failed (see $WORK/loadgen-build.log)"

if has_system stcache && ! stcache_build; then
  log "no ./build.sh yet: skipping stcache"
  SYSTEMS=${SYSTEMS//stcache/}
fi

# One system at a time on the machine, so none steals CPU from another's measurement.
if has_system etcd; then
  etcd_start
  if has_part workloads; then run_workloads etcd etcd etcd; fi
  if has_part failover; then measure_failover etcd etcd_start_node etcd_leader etcd_put; fi
  if has_part memory; then measure_memory etcd etcd "$(leader_url etcd)" $(etcd_pids); fi
  for i in 1 2 3; do stop_process "etcd$i" TERM; done
fi

if has_system dotnext; then
  dotnext_start
  if has_part workloads; then run_workloads dotnext stcache v1; fi
  if has_part failover; then measure_failover dotnext dotnext_start_node dotnext_leader dotnext_put; fi
  if has_part memory; then measure_memory dotnext v1 "$(leader_url dotnext)" $(dotnext_pids); fi
  for i in 1 2 3; do stop_process "dotnext$i" TERM; done
fi

if has_system stcache; then
  stcache_start
  if has_part workloads; then run_workloads stcache stcache v1; fi
  if has_part failover; then measure_failover stcache stcache_start_node stcache_leader stcache_put; fi
  if has_part memory; then measure_memory stcache v1 "$(leader_url stcache)" $(stcache_pids); fi
  for i in 1 2 3; do stop_process "stcache$i" TERM; done
fi

if has_system baseline; then
  baseline_start
  if has_part workloads; then run_workloads baseline stcache v1; fi
  if has_part memory; then measure_memory baseline v1 "http://127.0.0.1:$BASELINE_PORT" "${PIDS[baseline]}"; fi
  stop_process baseline TERM
fi

echo "loadavg_at_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
python3 "$BENCH/report.py" "$OUT"
log "results in $OUT"
