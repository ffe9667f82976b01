#!/usr/bin/env bash
# bench/memory-vs-redis.sh: RSS of each stcached node of a 3-node cluster after KEYS keys of VALUE_BYTES bytes,
# beside Debian's redis-server holding the same keys (issue 11: aim for at most 1.5 times Redis's RSS).
#
# Both get the same RESP stream (SET key:NNNNNNN <value> [PX ttl]) through `redis-cli --pipe`: stcache through the
# leader's RESP port, so every node applies the keys from the log. RSS is read from /proc after every node has
# applied the last key (and after the same wait for Redis). Everything started is stopped on exit.
#
# Where a node's memory goes, per phase (empty, loaded, then settled: after a snapshot on every node, which
# compacts the Raft log, and SETTLE_S seconds): RSS split into anonymous memory and mapped files (/proc), and the
# managed heap after the last GC by generation, its fragmentation (free space inside) and the committed memory
# (the .NET runtime's meter on /metrics).
#
# Settings (environment):
#   KEYS          keys to load (default 1000000)
#   VALUE_BYTES   value size (default 100)
#   TTL_MS        if set, every SET gets PX TTL_MS (a long TTL, so nothing expires while measuring)
#   STCACHED      use this stcached binary instead of building with ./build.sh
#   KEEP=1        keep the temporary directory (logs, data)
#   SETTLE_S      seconds to wait after the snapshots before the settled reading (default 10)
#   REDIS=0       skip redis-server (the ratio column is then left out)
#   GCDUMP=PATH   a dotnet-gcdump executable: after the settled reading, each node's heap is dumped (this forces a
#                 full, compacting GC) and the largest types are printed, with the heap and RSS after that GC
#   RESP_STREAM   a file to keep the generated RESP stream in and reuse (it takes a while to write)
#   GETS=N        after the settled reading, N pipelined GETs of one key through the leader (redis-benchmark):
#                 the rate and the CPU per GET over the three nodes
#   STCACHE_FLAGS extra flags for every node (e.g. --snapshot-threshold=...); DOTNET_* variables in the
#                 environment reach the nodes (GC settings to compare), and are printed with the results
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KEYS=${KEYS:-1000000}
VALUE_BYTES=${VALUE_BYTES:-100}
TTL_MS=${TTL_MS:-}
KEEP=${KEEP:-0}
SETTLE_S=${SETTLE_S:-10}
REDIS=${REDIS:-1}
STCACHE_FLAGS=${STCACHE_FLAGS:-}
WORK=$(mktemp -d)
declare -A PIDS=()

log() { printf '[memory %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
  local name
  for name in "${!PIDS[@]}"; do
    kill -9 "${PIDS[$name]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [[ "$KEEP" == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

for tool in redis-server redis-cli curl python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/ensure-deps.sh installs redis-server and redis-tools)"
done

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# CPU time (user + system) a process has used so far, in clock ticks (the comm field of a node has no spaces)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)
# "RSS anon file" in bytes (RssFile includes shared memory: the JIT's double-mapped code)
rss_split() { awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } /^RssShmem:/ { f += $2 } END { print r * 1024, a * 1024, f * 1024 }' "/proc/$1/status" 2>/dev/null || echo "0 0 0"; }
# The managed heap after the last GC, from /metrics: "gen0 gen1 gen2 loh poh fragmentation committed" in bytes.
gc_heap() {
  curl -sf --max-time 5 "http://127.0.0.1:$1/metrics" | awk '
    /^dotnet_gc_last_collection_heap_size_bytes\{/ {
      for (g in want) if (index($0, "\"" g "\"")) size[g] += $NF
    }
    /^dotnet_gc_last_collection_heap_fragmentation_size_bytes\{/ { frag += $NF }
    /^dotnet_gc_last_collection_memory_committed_size_bytes/ { committed += $NF }
    BEGIN { want["gen0"]; want["gen1"]; want["gen2"]; want["loh"]; want["poh"] }
    END { printf "%d %d %d %d %d %d %d\n", size["gen0"], size["gen1"], size["gen2"], size["loh"], size["poh"], frag, committed }'
}
# RSS by kind of mapping, in MiB: "managed.dll so jit-wx other-file anon(largest 3 blocks)" from /proc/<pid>/smaps.
# The JIT's code is mapped twice under W^X (a shared "doublemapper" file); anonymous memory holds the GC heap,
# the runtime's own allocations and thread stacks.
rss_kinds() {
  awk '
    /^[0-9a-f]+-[0-9a-f]+ / { path = $6; kind = "anon"
      if (path ~ /\.dll$/) kind = "dll"; else if (path ~ /\.so(\.[0-9]+)*$/) kind = "so"
      else if (path ~ /doublemapper/) kind = "jit"; else if (path ~ /^\// || path ~ /^\[/) kind = (path == "[heap]" || path ~ /^\[stack/ ? "anon" : "file")
      next }
    /^Rss:/ { rss[kind] += $2; if (kind == "anon" && $2 > 4096) big = big sprintf(" %d", $2 / 1024) }
    END { printf "dll %d so %d jit %d file %d anon %d (blocks over 4 MiB:%s)\n", rss["dll"] / 1024, rss["so"] / 1024, rss["jit"] / 1024, rss["file"] / 1024, rss["anon"] / 1024, big }
  ' "/proc/$1/smaps" 2>/dev/null || echo "?"
}
KINDS=""
mib() { python3 -c "import sys; print(' '.join(f'{int(v) / 1048576:.0f}' for v in sys.argv[1:]))" "$@"; }
# One row of the breakdown table: phase, node, RSS/anon/file (MiB), heap by generation, fragmentation, committed.
BREAKDOWN=""
breakdown_row() { # phase node pid http_port
  local split heap
  split=$(rss_split "$3")
  heap=$(gc_heap "$4" || echo "0 0 0 0 0 0 0")
  # shellcheck disable=SC2046
  BREAKDOWN+=$(printf '%-8s %-4s %6s %6s %6s | %5s %5s %5s %5s %5s %6s %7s' "$1" "$2" $(mib $split) $(mib $heap))$'\n'
}
wait_until() { # seconds command...
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

if [[ -z "${STCACHED:-}" ]]; then
  log "building stcached (./build.sh)"
  (cd "$ROOT" && ./build.sh >"$WORK/build.log" 2>&1) || die "build failed (see $WORK/build.log)"
  STCACHED="$ROOT/out/stcached"
fi

STREAM=${RESP_STREAM:-$WORK/load.resp}
if [[ -n "${RESP_STREAM:-}" && -s "$STREAM" && -s "$STREAM.params" && "$(cat "$STREAM.params")" == "$KEYS $VALUE_BYTES $TTL_MS" ]]; then
  log "reusing the RESP stream $STREAM"
else
log "writing the RESP stream: $KEYS keys of $VALUE_BYTES B${TTL_MS:+, PX $TTL_MS}"
python3 - "$KEYS" "$VALUE_BYTES" "$TTL_MS" >"$STREAM" <<'EOF'
import sys
keys, size, ttl = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
out = sys.stdout.buffer
value = b"v" * size
def bulk(b): return b"$%d\r\n%s\r\n" % (len(b), b)
for i in range(keys):
    key = b"key:%07d" % i
    parts = [b"SET", key, value] + ([b"PX", ttl.encode()] if ttl else [])
    out.write(b"*%d\r\n" % len(parts) + b"".join(bulk(p) for p in parts))
EOF
echo "$KEYS $VALUE_BYTES $TTL_MS" >"$STREAM.params"
fi
LAST_KEY=$(printf 'key:%07d' $((KEYS - 1)))

# ---- stcache -------------------------------------------------------------------------------------------------
declare -a HTTP=() RAFT=() RESP=()
for i in 1 2 3; do HTTP[$i]=$(free_port); RAFT[$i]=$(free_port); RESP[$i]=$(free_port); done
CLUSTER="1/127.0.0.1:${RAFT[1]},2/127.0.0.1:${RAFT[2]},3/127.0.0.1:${RAFT[3]}"
for i in 1 2 3; do
  mkdir -p "$WORK/n$i"
  (cd "$WORK/n$i" && exec "$STCACHED" --http_addr="127.0.0.1:${HTTP[$i]}" --raft_addr="127.0.0.1:${RAFT[$i]}" \
    --raft_id="$i" --raft_cluster="$CLUSTER" --resp="127.0.0.1:${RESP[$i]}" $STCACHE_FLAGS >"$WORK/n$i.log" 2>&1) &
  PIDS[n$i]=$!
done

leader() {
  local i
  for i in 1 2 3; do
    if curl -sf --max-time 1 "http://127.0.0.1:${HTTP[$i]}/v1/status" | grep -q '"role":"leader"'; then echo "$i"; return 0; fi
  done
  return 1
}
wait_until 60 leader || die "no stcache leader (see $WORK/n*.log)"
L=$(leader)
wait_until 30 redis-cli -p "${RESP[$L]}" SET warm x || die "the leader does not take writes"
declare -a EMPTY=() CPU0=()
for i in 1 2 3; do EMPTY[$i]=$(rss_kib "${PIDS[n$i]}"); breakdown_row empty "n$i" "${PIDS[n$i]}" "${HTTP[$i]}"; done
for i in 1 2 3; do CPU0[$i]=$(cpu_ticks "${PIDS[n$i]}"); KINDS+="empty   n$i $(rss_kinds "${PIDS[n$i]}")"$'\n'; done

log "loading stcache through node $L's RESP port"
start=$SECONDS
redis-cli -p "${RESP[$L]}" --pipe <"$STREAM" >"$WORK/stcache-pipe.log" 2>&1 || die "redis-cli --pipe into stcache failed: $(tail -3 "$WORK/stcache-pipe.log")"
applied_everywhere() {
  local i
  for i in 1 2 3; do
    curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:${HTTP[$i]}/v1/kv/$LAST_KEY?consistency=stale" || return 1
  done
}
wait_until 300 applied_everywhere || die "not every node applied the last key"
LOAD_S=$((SECONDS - start))
log "stcache loaded in $LOAD_S s: $(tail -1 "$WORK/stcache-pipe.log")"
declare -a CPU=()
for i in 1 2 3; do CPU[$i]=$(( $(cpu_ticks "${PIDS[n$i]}") - CPU0[i] )); done
sleep 2 # let the last snapshot and its buffers settle before reading RSS
declare -a RSS=()
for i in 1 2 3; do RSS[$i]=$(rss_kib "${PIDS[n$i]}"); breakdown_row loaded "n$i" "${PIDS[n$i]}" "${HTTP[$i]}"; done
USED=$(redis-cli -p "${RESP[$L]}" INFO memory | awk -F: '/^used_memory:/ { gsub("\r", "", $2); print $2 }')

log "a snapshot on every node (compacts the in-memory Raft log), then ${SETTLE_S} s"
for i in 1 2 3; do
  curl -sf --max-time 120 -X POST -o /dev/null "http://127.0.0.1:${HTTP[$i]}/v1/snapshot" || log "node $i: snapshot request failed"
done
sleep "$SETTLE_S"
declare -a SETTLED=()
for i in 1 2 3; do SETTLED[$i]=$(rss_kib "${PIDS[n$i]}"); breakdown_row settled "n$i" "${PIDS[n$i]}" "${HTTP[$i]}"; done
for i in 1 2 3; do KINDS+="settled n$i $(rss_kinds "${PIDS[n$i]}")"$'\n'; done
GET_LINE=""
if [[ "${GETS:-0}" -gt 0 ]]; then
  # Reads of a present key through the leader's RESP port, pipelined so the nodes' CPU, not the round trips, sets
  # the pace: CPU per GET summed over the three nodes, and the rate (both noisy on a loaded machine).
  for i in 1 2 3; do CPU0[$i]=$(cpu_ticks "${PIDS[n$i]}"); done
  redis-benchmark -p "${RESP[$L]}" -n "$GETS" -c 50 -P 16 -q GET key:0000000 >"$WORK/gets.log" 2>&1 || log "redis-benchmark failed"
  ticks=0
  for i in 1 2 3; do ticks=$(( ticks + $(cpu_ticks "${PIDS[n$i]}") - CPU0[i] )); done
  GET_LINE="GET key:0000000 x $GETS (-c 50 -P 16): $(tr '\r' '\n' <"$WORK/gets.log" | grep -a 'requests per second' | tail -1 | sed 's/^ *//'); CPU over the 3 nodes $(python3 -c "print(f'{$ticks / $CLK_TCK * 1e6 / $GETS:.1f}')") us per GET"
fi
GCDUMPS=""
if [[ -n "${GCDUMP:-}" ]]; then
  for i in 1 2 3; do
    "$GCDUMP" collect -p "${PIDS[n$i]}" -o "$WORK/n$i.gcdump" >/dev/null 2>&1 || log "node $i: gcdump failed"
    breakdown_row "gc'd" "n$i" "${PIDS[n$i]}" "${HTTP[$i]}"
    GCDUMPS+="node $i, largest types after a full GC (bytes, count, type):"$'\n'
    GCDUMPS+=$("$GCDUMP" report "$WORK/n$i.gcdump" 2>/dev/null | head -14)$'\n'
  done
fi

# ---- redis-server --------------------------------------------------------------------------------------------
REDIS_RSS=0 REDIS_EMPTY=0 REDIS_USED="" REDIS_VERSION=""
if [[ "$REDIS" == 1 ]]; then
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS[redis]=$!
wait_until 30 redis-cli -p "$RPORT" PING || die "redis-server did not start"
REDIS_EMPTY=$(rss_kib "${PIDS[redis]}")
redis-cli -p "$RPORT" --pipe <"$STREAM" >"$WORK/redis-pipe.log" 2>&1 || die "redis-cli --pipe into redis failed"
sleep 2
REDIS_RSS=$(rss_kib "${PIDS[redis]}")
REDIS_USED=$(redis-cli -p "$RPORT" INFO memory | awk -F: '/^used_memory:/ { gsub("\r", "", $2); print $2 }')
REDIS_VERSION=$(redis-server --version | awk '{ print $3 }')
kill -9 "${PIDS[redis]}" 2>/dev/null || true
fi

# ---- report --------------------------------------------------------------------------------------------------
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; keys=$KEYS value=${VALUE_BYTES}B ttl=${TTL_MS:-none}"
echo "stcached flags: ${STCACHE_FLAGS:-none}; environment: $(env | grep '^DOTNET_' | sort | tr '\n' ' ')"
ratio() { if [[ "$REDIS_RSS" -gt 0 ]]; then python3 -c "print(f'{$1 / $REDIS_RSS:.2f}x')"; else echo -; fi; }
echo "stcache load: ${LOAD_S} s; CPU is each node's user + system time from the first write to the last key applied everywhere"
printf '%-14s %12s %12s %12s %14s %10s %10s %10s %10s\n' process "RSS MiB" "empty MiB" "settled MiB" "B/key (RSS)" "vs Redis" "settled" "CPU s" "CPU us/key"
for i in 1 2 3; do
  per_key=$(( (RSS[i] - EMPTY[i]) * 1024 / KEYS ))
  printf '%-14s %12d %12d %12d %14d %10s %10s %10s %10s\n' "stcached n$i" $((RSS[i] / 1024)) $((EMPTY[i] / 1024)) $((SETTLED[i] / 1024)) "$per_key" \
    "$(ratio "${RSS[$i]}")" "$(ratio "${SETTLED[$i]}")" "$(python3 -c "print(f'{${CPU[$i]} / $CLK_TCK:.1f}')")" \
    "$(python3 -c "print(f'{${CPU[$i]} / $CLK_TCK * 1e6 / $KEYS:.1f}')")"
done
if [[ "$REDIS" == 1 ]]; then
  redis_per_key=$(( (REDIS_RSS - REDIS_EMPTY) * 1024 / KEYS ))
  printf '%-14s %12d %12d %12s %14d %10s\n' "redis $REDIS_VERSION" $((REDIS_RSS / 1024)) $((REDIS_EMPTY / 1024)) - "$redis_per_key" "1.00x"
fi
[[ -n "$GET_LINE" ]] && echo "$GET_LINE"
echo "accounted used_memory: stcache ${USED:-?} B, redis ${REDIS_USED:-?} B"
echo "leader: n$L. Breakdown in MiB: RSS = anonymous + mapped files; the managed heap after the last GC by generation,"
echo "its fragmentation (free space inside the generations) and the memory the GC had committed:"
printf '%-8s %-4s %6s %6s %6s | %5s %5s %5s %5s %5s %6s %7s\n' phase node RSS anon file gen0 gen1 gen2 loh poh frag commit
printf '%s' "$BREAKDOWN"
echo "RSS by mapping (MiB): our and the framework's assemblies, native libraries, the JIT's double-mapped code, other files, anonymous:"
printf '%s' "$KINDS"
printf '%s' "$GCDUMPS"
