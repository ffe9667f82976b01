#!/usr/bin/env bash
# bench/no-spurious-elections.sh: a healthy cluster under saturating load must never change leader.
#
#   bench/no-spurious-elections.sh [path/to/stcached] [extra stcached flags...]
#
# Starts a 3-node cluster on free loopback ports (static cluster, temporary data directories, default settings),
# drives the leader with wrk over CONNECTIONS connections of writes and linearizable reads for DURATION seconds
# (the wrk threads and the three nodes share the machine, so its cores are saturated), and watches every node's
# /v1/status once a second. It reports the leader changes it saw (every new term, and every change of the leader a
# node reports) and the number of new terms at the end (elections it may have missed between two samples), with
# wrk's throughput and each node's CPU time, and exits 1 if either is not zero.
# No node is killed and no network is cut, so every leader change is a spurious election: a GC pause or a
# starved thread that outlasted the election timeout. Everything it starts is killed on exit.
#
# Settings (environment):
#   DURATION     seconds of load (default 600)
#   CONNECTIONS  wrk connections (default 64)
#   THREADS      wrk threads (default 2)
#   READS        share of linearizable reads among the requests (default 0.5)
#   KEYS         keys written and read (default 1000); a write-only warm-up of WARMUP seconds (default 5) writes
#                them first, so that reads find them (a 404 would count as an error)
#   STALLS       whole-cluster stalls during the load (default 0): STALLS times, evenly spread, all three nodes are
#                frozen together with SIGSTOP for STALL_SECONDS (default 3, several election timeouts) and resumed
#                with SIGCONT, as a frozen VM or machine would be. Each node collapses the ticks due after it to one
#                (docs/RAFT.md, "Ticks after a stall"), so these too must cost no leader change
#   KEEP=1       keep the temporary directory (node logs, status samples)
set -euo pipefail
cd "$(dirname "$0")/.."
STCACHED=${1:-out/stcached}
shift || true
DURATION=${DURATION:-600}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
READS=${READS:-0.5}
KEYS=${KEYS:-1000}
WARMUP=${WARMUP:-5}
KEEP=${KEEP:-0}
STALLS=${STALLS:-0}
STALL_SECONDS=${STALL_SECONDS:-3}

log() { printf '[no-spurious-elections %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 2; }
[[ -x "$STCACHED" ]] || die "no stcached at $STCACHED (run ./build.sh)"
command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -gt 0 ]] || die "DURATION must be a positive number of seconds"
[[ "$STALLS" =~ ^[0-9]+$ && "$STALL_SECONDS" =~ ^[0-9]+$ ]] || die "STALLS and STALL_SECONDS must be whole numbers"
(( STALLS == 0 || DURATION > STALLS * STALL_SECONDS )) || die "the stalls do not fit in DURATION"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
work=$(mktemp -d "${TMPDIR:-/tmp}/stcache-elections.XXXXXX")
pids=()
watcher=""
staller=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  [[ -n "$watcher" ]] && kill "$watcher" 2>/dev/null || true
  [[ -n "$staller" ]] && kill "$staller" 2>/dev/null || true
  (( ${#pids[@]} )) && kill -9 "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  if [[ "$KEEP" == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

http=() raft=()
for i in 0 1 2; do
  p=$(free_port); while [[ " ${http[*]} ${raft[*]} " == *" $p "* ]]; do p=$(free_port); done; http+=("$p")
  p=$(free_port); while [[ " ${http[*]} ${raft[*]} " == *" $p "* ]]; do p=$(free_port); done; raft+=("$p")
done
cluster="1/127.0.0.1:${raft[0]},2/127.0.0.1:${raft[1]},3/127.0.0.1:${raft[2]}"
for i in 0 1 2; do
  "$STCACHED" --http_addr="127.0.0.1:${http[$i]}" --raft_addr="127.0.0.1:${raft[$i]}" --raft_id=$((i + 1)) \
    --raft_cluster="$cluster" --node="$work/n$((i + 1))" --log-level=Warning "$@" >"$work/n$((i + 1)).log" 2>&1 &
  pids+=($!)
done

# status i: "term leader" as node i reports them, or nothing.
status() {
  curl -sf --max-time 1 "http://127.0.0.1:${http[$1]}/v1/status" 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["term"], d["leader"])' 2>/dev/null || true
}

leader=""
for _ in $(seq 1 300); do
  for i in 0 1 2; do
    read -r term id <<<"$(status "$i")" || true
    if [[ -n "${id:-}" && "$id" != 0 ]]; then leader=$((id - 1)); break 2; fi
  done
  sleep 0.1
done
[[ -n "$leader" ]] || die "no leader within 30 s (see $work/n*.log)"
for _ in $(seq 1 100); do
  curl -sf --max-time 1 -X PUT --data-binary x "http://127.0.0.1:${http[$leader]}/v1/kv/warm" >/dev/null && break
  sleep 0.1
done
read -r start_term start_leader <<<"$(status "$leader")"
log "cluster up: leader node $start_leader at term $start_term; ${DURATION}s of load, $CONNECTIONS connections, reads $READS"

# One sample per node per second: "seconds node term leader".
(
  t=0
  while true; do
    for i in 0 1 2; do echo "$t $((i + 1)) $(status "$i")"; done
    sleep 1
    t=$((t + 1))
  done
) >"$work/status.txt" &
watcher=$!

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

timeout $((WARMUP + 60)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 5s -s bench/wrk/kv.lua \
  "http://127.0.0.1:${http[$leader]}" -- dialect=stcache reads=0 keys="$KEYS" >"$work/warmup.txt" 2>&1 || log "warm-up failed"
declare -a cpu0=()
for i in 0 1 2; do cpu0[$i]=$(cpu_ticks "${pids[$i]}"); done
if (( STALLS > 0 )); then
  (
    gap=$(( DURATION / (STALLS + 1) ))
    for n in $(seq 1 "$STALLS"); do
      sleep "$gap"
      kill -STOP "${pids[@]}"
      echo "stall $n: all nodes stopped at $(date -u +%H:%M:%S) for ${STALL_SECONDS}s" >>"$work/stalls.txt"
      sleep "$STALL_SECONDS"
      kill -CONT "${pids[@]}"
    done
  ) &
  staller=$!
  log "$STALLS whole-cluster stalls of ${STALL_SECONDS}s during the load"
fi
timeout $((DURATION + 60)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s -s bench/wrk/kv.lua \
  "http://127.0.0.1:${http[$leader]}" -- dialect=stcache reads="$READS" keys="$KEYS" consistency=linearizable >"$work/wrk.txt" 2>&1 ||
  log "wrk failed (see $work/wrk.txt)"
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ -n "$staller" ]]; then
  kill "$staller" 2>/dev/null || true
  wait "$staller" 2>/dev/null || true
  staller=""
  kill -CONT "${pids[@]}" 2>/dev/null || true
  jumps=""
  for i in 0 1 2; do
    jumps+=" $(curl -sf --max-time 2 "http://127.0.0.1:${http[$i]}/metrics" | awk '/^stcache_raft_clock_jumps_total/ { print $NF }' | tail -1)"
  done
  log "stalls done: $(wc -l <"$work/stalls.txt" 2>/dev/null || echo 0); clock jumps per node (stcache_raft_clock_jumps_total):$jumps"
fi
kill "$watcher" 2>/dev/null || true
wait "$watcher" 2>/dev/null || true
watcher=""
for i in 0 1 2; do echo "end $((i + 1)) $(status "$i")"; done >>"$work/status.txt"

hz=$(getconf CLK_TCK)
for i in 0 1 2; do
  kill -0 "${pids[$i]}" 2>/dev/null || die "node $((i + 1)) died during the run (see $work/n$((i + 1)).log)"
  used=$(( $(cpu_ticks "${pids[$i]}") - cpu0[i] ))
  log "node $((i + 1)): $(awk -v u="$used" -v hz="$hz" -v d="$DURATION" 'BEGIN { printf "%.0f s of CPU, %.0f%% of one core", u / hz, 100 * u / hz / d }')"
done
json=$(sed -n 's/^WRKJSON //p' "$work/wrk.txt" | tail -1)
if [[ -n "$json" ]]; then
  log "load: $(python3 -c 'import json,sys
d = json.loads(sys.argv[1])
print("%.0f requests/s, p99 %.1f ms, max %.1f ms, errors %d" % (d["rps"], d["p99_us"] / 1000, d["max_us"] / 1000, sum(d["errors"].values())))' "$json")"
fi
log "load average: $load_start at start, $load_end at end ($(nproc) cores)"

# Leader changes: distinct (term, leader) pairs that any node reported, after the first, plus terms nobody was
# seen leading in (an election that won no leader still deposed one). Both count from the term at the start.
changes=$(python3 - "$work/status.txt" "$start_term" <<'PY'
import sys
start = int(sys.argv[2])
leaders, terms = {}, set()
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) != 4:
        continue
    term, leader = int(parts[2]), parts[3]
    terms.add(term)
    if leader != "0":
        leaders.setdefault(term, set()).add(leader)
changed = {t for t in terms if t > start}
print(len(changed) + sum(len(v) - 1 for v in leaders.values()))
PY
)
end_term=$(awk '$1 == "end" && NF == 4 { print $3 }' "$work/status.txt" | sort -n | tail -1)
new_terms=$(( ${end_term:-$start_term} - start_term ))
log "leader changes seen: $changes; elections (new terms, seen or not): $new_terms (term $start_term at start, ${end_term:-?} at end)"
echo "leader_changes=$changes new_terms=$new_terms"
(( changes == 0 && new_terms == 0 ))
