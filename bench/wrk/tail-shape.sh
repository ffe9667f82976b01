#!/usr/bin/env bash
# The shape of the HTTP write tail on one 3-node cluster: stalls (every connection waits) or unfair queueing (some
# connections wait while others are answered)? Starts a cluster of the given build, writes k0..k9999 once, then drives
# the leader with bench/wrk/putlat.c (closed loop, every request recorded with its connection) and prints
# bench/wrk/tail-shape.py's reading of the trace, with the leader's thread count by name every 0.5 s (does the
# thread pool inject threads during the run?).
#
#   bench/wrk/tail-shape.sh DIR/stcached [extra stcached flags...]
#
# Settings (environment): CONNECTIONS (default 64), DURATION (s measured, default 10), WARMUP (s, default 3),
# VALUE (bytes, default 100), OUT (default a temporary directory: logs, trace), LOG_LEVEL (the nodes', default
# Information: snapshots and WAL segment cuts are printed with their time in the run), PUTLAT_GET (stale, lease or
# linearizable: GETs of the preloaded keys at that consistency instead of writes). Set DOTNET_STARTUP_HOOKS and
# GCHOOK_OUT (bench/GcHook) to log every collection of the nodes as well. Needs gcc (or cc), curl and python3.
# Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ $# -ge 1 ]] || { sed -n '2,13p' "$0"; exit 2; }
BIN=$1
shift
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
VALUE=${VALUE:-100}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/stcache-tail.XXXXXX")}
mkdir -p "$OUT"
${CC:-cc} -O2 -o "$OUT/putlat" bench/wrk/putlat.c

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
PIDS=()
stop() { local p; for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT INT TERM
declare -a HTTP RAFT NODE
cluster=""
for i in 1 2 3; do HTTP[$i]=$(free_port); RAFT[$i]=$(free_port); cluster+="${cluster:+,}$i/127.0.0.1:${RAFT[$i]}"; done
for i in 1 2 3; do
  "$BIN" --http_addr="127.0.0.1:${HTTP[$i]}" --raft_addr="127.0.0.1:${RAFT[$i]}" --raft_id=$i --raft_cluster="$cluster" \
    --node="$OUT/n$i" --log-level="${LOG_LEVEL:-Information}" "$@" >"$OUT/n$i.log" 2>&1 &
  NODE[$i]=$!
  PIDS+=($!)
done
L=""
for _ in $(seq 1 300); do
  for i in 1 2 3; do
    curl -sf --max-time 1 "http://127.0.0.1:${HTTP[$i]}/v1/status" 2>/dev/null | grep -q '"role":"leader"' && L=$i
  done
  [[ -n "$L" ]] && curl -sf --max-time 2 -X PUT --data-binary x "http://127.0.0.1:${HTTP[$L]}/v1/kv/ready" >/dev/null && break
  L=""
  sleep 0.1
done
[[ -n "$L" ]] || { echo "no leader (logs in $OUT)" >&2; exit 1; }
python3 bench/wrk/preload.py "http://127.0.0.1:${HTTP[$L]}"
LP=${NODE[$L]}

threads() { # pid -> "name xN ..." of its threads, names with their numbers removed
  cat /proc/"$1"/task/*/comm 2>/dev/null | sed 's/ *[#0-9]*$//' | sort | uniq -c | awk '{n = $1; $1 = ""; printf "%s x%d;", substr($0, 2), n}'
}
echo "leader n$L pid $LP, $CONNECTIONS connections, $VALUE B, load $(cut -d' ' -f1-3 /proc/loadavg); out $OUT"
echo "threads before: $(threads "$LP")"
"$OUT/putlat" 127.0.0.1 "${HTTP[$L]}" "$CONNECTIONS" "$(( WARMUP + DURATION ))" "$VALUE" >"$OUT/trace.txt" 2>"$OUT/putlat.err" &
CLIENT=$!
PIDS+=($CLIENT)
: >"$OUT/threads.txt"
while kill -0 "$CLIENT" 2>/dev/null; do
  echo "$(date +%s.%N | cut -c1-14) $(threads "$LP")" >>"$OUT/threads.txt"
  sleep 0.5
done
wait "$CLIENT"
echo "threads during the run (distinct samples):"
cut -d' ' -f2- "$OUT/threads.txt" | sort | uniq -c | sort -rn | head -6
cat "$OUT/putlat.err"
GC=()
if [[ -n "${GCHOOK_OUT:-}" ]]; then
  for i in 1 2 3; do
    name=n$i; [[ $i == "$L" ]] && name+="(leader)"
    [[ -f "$GCHOOK_OUT.${NODE[$i]}" ]] && GC+=("$name=$GCHOOK_OUT.${NODE[$i]}")
  done
fi
python3 bench/wrk/tail-shape.py "$OUT/trace.txt" "$WARMUP" "$(sed -n 's/.*started at \([0-9.]*\).*/\1/p' "$OUT/putlat.err")" "${GC[@]}"
start=$(sed -n 's/.*started at \([0-9.]*\).*/\1/p' "$OUT/putlat.err")
echo "snapshots and WAL segment cuts (s since the client started; n$L leads):"
for i in 1 2 3; do
  grep -h 'cut new segment\|Snapshot taken' "$OUT/n$i.log" 2>/dev/null | while read -r ts rest; do
    python3 -c 'import sys, datetime; t = datetime.datetime.fromisoformat(sys.argv[1]).replace(tzinfo=datetime.timezone.utc).timestamp(); print(f"  n{sys.argv[3]} {t - float(sys.argv[2]):7.2f} s {sys.argv[4]}")' "$ts" "$start" "$i" "$(grep -q "segment" <<<"$rest" && echo segment || echo snapshot)"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
