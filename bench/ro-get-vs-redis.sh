#!/usr/bin/env bash
# Issue 12 point 8's READONLY row on its own: READONLY GET -c 50 at a stcache follower against GET -c 50 at Redis
# (appendonly yes, appendfsync always, as bench/compare.sh runs it), on the same machine, one after the other.
# Redis and a 3-node stcache cluster (--resp-readonly=true, so redis-benchmark's connections read stale locally)
# run side by side for the whole script; both are filled with the same 10,000 keys of 100 B and warmed up, then
# each round runs redis-benchmark against Redis, then against the follower, and prints both rates, their ratio and
# the load average before each run, and the CPU time the server process spent per GET (utime + stime from /proc:
# less sensitive to a loaded machine than the rates). The runs alternate rather than overlap because the ratio is to Redis on the
# same machine at about the same moment; the median of the rounds' ratios is the figure.
#
#   bench/ro-get-vs-redis.sh [out/stcached] [-- extra node arguments...]
#
# Env: ROUNDS (default 3), N (GETs per run, default 200000), NODE_ENV (assignments for the nodes' environment, e.g.
# "DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT=1"), KEEP=1 keeps the temporary directory (logs, redis-benchmark output).
# Prints the follower's pid, so a profiler or strace can be attached from another shell.
# Needs redis-server, redis-benchmark, redis-cli, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=out/stcached
if [[ $# -gt 0 && $1 != -- ]]; then BIN=$1; shift; fi
[[ ${1:-} == -- ]] && shift
EXTRA=("$@")
ROUNDS=${ROUNDS:-3}
N=${N:-200000}
[[ -x "$BIN" ]] || { echo "no stcached at $BIN (./build.sh builds out/stcached)" >&2; exit 2; }
for tool in redis-server redis-benchmark redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
done
OUT=$(mktemp -d "${TMPDIR:-/tmp}/stcache-roget.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && wait "$p" 2>/dev/null || true; done
  [[ -n "${KEEP:-}" ]] && echo "kept $OUT" || rm -rf "$OUT"
}
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Redis, the single-node twin of stcache's durability.
REDIS_PORT=$(free_port)
mkdir -p "$OUT/redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$OUT/redis" --save '' \
  --appendonly yes --appendfsync always >"$OUT/redis.log" 2>&1 &
PIDS+=("$!")

# A 3-node stcache cluster whose RESP connections start in READONLY mode.
declare -A RESP NODE_PID
raft=()
cluster=""
for i in 1 2 3; do RESP[$i]=$(free_port); raft[$i]=$(free_port); done
for i in 1 2 3; do cluster+="${cluster:+,}$i/127.0.0.1:${raft[$i]}"; done
read -r -a node_env <<<"${NODE_ENV:-}"
for i in 1 2 3; do
  env ${node_env[@]+"${node_env[@]}"} "$BIN" --http_addr="127.0.0.1:$(free_port)" --raft_addr="127.0.0.1:${raft[$i]}" \
    --raft_id=$i --raft_cluster="$cluster" --node="$OUT/n$i" --resp="127.0.0.1:${RESP[$i]}" --resp-readonly=true \
    --log-level=Warning ${EXTRA[@]+"${EXTRA[@]}"} >"$OUT/n$i.log" 2>&1 &
  NODE_PID[$i]=$!
  PIDS+=("$!")
done

leader=""
for _ in $(seq 1 300); do
  for i in 1 2 3; do
    [[ "$(redis-cli -p "${RESP[$i]}" ROLE 2>/dev/null | head -1)" == master ]] && leader=$i
  done
  [[ -n "$leader" && "$(redis-cli -p "${RESP[$leader]}" SET ready 1 2>/dev/null)" == OK ]] && break
  leader=""
  sleep 0.1
done
[[ -n "$leader" ]] || { echo "no stcache leader elected (logs in $OUT)" >&2; KEEP=1; exit 1; }
for _ in $(seq 1 300); do [[ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" == PONG ]] && break; sleep 0.1; done
follower=$((leader % 3 + 1))
FOLLOWER_PORT=${RESP[$follower]}
echo "stcache: $BIN ${EXTRA[*]:-} ${NODE_ENV:-}"
echo "leader node $leader; follower node $follower (pid ${NODE_PID[$follower]}, RESP port $FOLLOWER_PORT); redis pid ${PIDS[0]}"

# Same data on both (writes to stcache go to its leader), then a warm-up of the read path on both.
bench() { # port requests test [extra...] -> csv on stdout
  local port=$1 n=$2 test=$3
  shift 3
  redis-benchmark -h 127.0.0.1 -p "$port" -d 100 -r 10000 -c 50 -n "$n" -t "$test" --csv "$@"
}
bench "$REDIS_PORT" 50000 set -P 16 >/dev/null
bench "${RESP[$leader]}" 50000 set -P 16 >/dev/null
for _ in 1 2; do
  bench "$REDIS_PORT" 50000 get >/dev/null
  bench "$FOLLOWER_PORT" 50000 get >/dev/null
done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime of a process, in clock ticks
per_op() { python3 -c "import sys; print(f'{(int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3]) * 1e6 / int(sys.argv[4]):.1f}')" "$@" "$(getconf CLK_TCK)" "$N"; }
rate() { python3 -c 'import csv,sys; rows=[r for r in csv.reader(open(sys.argv[1])) if r and r[0] != "test"]; print(rows[-1][1] if rows else 0)' "$1"; }
ratios=()
for round in $(seq 1 "$ROUNDS"); do
  read -r load_redis _ </proc/loadavg
  c0=$(cpu_ticks "${PIDS[0]}")
  bench "$REDIS_PORT" "$N" get >"$OUT/redis.$round.csv"
  redis_cpu=$(per_op "$c0" "$(cpu_ticks "${PIDS[0]}")")
  read -r load_follower _ </proc/loadavg
  c0=$(cpu_ticks "${NODE_PID[$follower]}")
  bench "$FOLLOWER_PORT" "$N" get >"$OUT/follower.$round.csv"
  follower_cpu=$(per_op "$c0" "$(cpu_ticks "${NODE_PID[$follower]}")")
  r=$(rate "$OUT/redis.$round.csv")
  f=$(rate "$OUT/follower.$round.csv")
  ratio=$(python3 -c "import sys; print(f'{float(sys.argv[2]) / float(sys.argv[1]):.3f}')" "$r" "$f")
  ratios+=("$ratio")
  printf 'round %d: redis GET -c50 %8.0f ops/s %5s us CPU/op (load %s)  stcache READONLY GET -c50 at a follower %8.0f ops/s %5s us CPU/op (load %s)  ratio %s\n' \
    "$round" "$r" "$redis_cpu" "$load_redis" "$f" "$follower_cpu" "$load_follower" "$ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; print(f"{v[len(v)//2] if len(v)%2 else (v[len(v)//2-1]+v[len(v)//2])/2:.3f}")')
echo "median ratio over $ROUNDS rounds: $median (target 0.80)"
