#!/usr/bin/env bash
# One-connection write latency on a local 3-node cluster, with the stage breakdown from each node's /metrics.
#
#   bench/one-connection.sh [path/to/stcached] [extra stcached flags...]
#
# Starts three nodes on free loopback ports (static cluster, temporary data directories), sends closed-loop
# writes of 100 B values over one connection to the leader for DURATION (default 8s, after a 2 s warm-up) with
# the project's load generator, prints its latency table, then each node's mean time per stage: queue waits,
# WAL saves, leader commit, request. Kills the nodes and deletes their data on exit.
# TARGET=follower sends the writes to a follower instead, which forwards them to the leader.
set -euo pipefail
cd "$(dirname "$0")/.."
STCACHED=${1:-out/stcached}
shift || true
DURATION=${DURATION:-8s}
TARGET=${TARGET:-leader}
[[ "$TARGET" == leader || "$TARGET" == follower ]] || { echo "TARGET must be leader or follower" >&2; exit 2; }

[[ -x "$STCACHED" ]] || { echo "no stcached at $STCACHED (run ./build.sh)" >&2; exit 2; }
dotnet build bench/Stcache.LoadGen -c Release -v quiet -nologo >/dev/null
LOADGEN=bench/Stcache.LoadGen/bin/Release/net10.0/stcache-loadgen.dll

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
data=$(mktemp -d "${TMPDIR:-/tmp}/stcache-onecon.XXXXXX")
pids=()
cleanup() { kill -9 "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT INT TERM

http=() raft=()
for i in 0 1 2; do http+=("$(free_port)"); raft+=("$(free_port)"); done
cluster="1/127.0.0.1:${raft[0]},2/127.0.0.1:${raft[1]},3/127.0.0.1:${raft[2]}"
for i in 0 1 2; do
  "$STCACHED" --http="127.0.0.1:${http[$i]}" --raft="127.0.0.1:${raft[$i]}" --node="$data/n$i" \
    --raft_id=$((i + 1)) --raft_cluster="$cluster" "$@" >"$data/n$i.log" 2>&1 &
  pids+=($!)
done

leader=""
for _ in $(seq 1 200); do
  leader=$(curl -sf "http://127.0.0.1:${http[0]}/v1/status" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("leaderAddress") or "")' 2>/dev/null || true)
  [[ -n "$leader" ]] && break
  sleep 0.1
done
[[ -n "$leader" ]] || { echo "no leader elected; logs in $data" >&2; exit 1; }
echo "leader $leader"
target=$leader
if [[ "$TARGET" == follower ]]; then
  for i in 0 1 2; do
    [[ "127.0.0.1:${http[$i]}" != "$leader" ]] && { target="127.0.0.1:${http[$i]}"; break; }
  done
  echo "writing through follower $target"
fi

dotnet "$LOADGEN" --targets="http://$target" --connections=1 --duration="$DURATION" --warmup=2s \
  --keys=1000 --value-size=100

for i in 0 1 2; do
  echo "== node $((i + 1)) (http ${http[$i]}): mean per stage"
  curl -sf "http://127.0.0.1:${http[$i]}/metrics" | python3 -c '
import re, sys
sums, counts = {}, {}
for line in sys.stdin:
    m = re.match(r"(\w+)_(sum|count)(\{[^}]*\})? (\S+)", line)
    if m:
        (sums if m.group(2) == "sum" else counts)[m.group(1) + (m.group(3) or "")] = float(m.group(4))
for key in sorted(counts):
    # Only histograms have both a _sum and a _count (a gauge such as dotnet_assembly_count has no _sum).
    if key in sums and counts[key] > 1:
        print(f"  {key:58s} n={int(counts[key]):7d}  mean={sums[key] / counts[key] * 1e6:8.1f} us")
'
done
