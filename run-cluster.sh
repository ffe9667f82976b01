#!/usr/bin/env bash
# Starts a local 3-node stcache cluster (the stcache seed's walkthrough): node 0 bootstraps, nodes 1 and 2 join.
# Usage: ./run-cluster.sh [data-directory]   (default: ./cluster-data). Ctrl-C stops all nodes cleanly.
set -euo pipefail
cd "$(dirname "$0")"
data="${1:-./cluster-data}"
http_base="${STCACHE_HTTP_BASE:-6000}"
raft_base="${STCACHE_RAFT_BASE:-7000}"
resp_base="${STCACHE_RESP_BASE:-6379}"

if [[ ! -x out/stcached || ! -f out/.built || -n "$(find src -newer out/.built \( -name '*.cs' -o -name '*.csproj' \) -print -quit 2>/dev/null)" ]]; then
  ./build.sh
fi

mkdir -p "$data"
pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping nodes..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopped; data kept in $data"
}
trap stop INT TERM EXIT

start_node() {
  local i=$1; shift
  ./out/stcached --http="127.0.0.1:$((http_base + i))" --raft="127.0.0.1:$((raft_base + i))" \
    --resp="127.0.0.1:$((resp_base + i))" --node="$data/node$i" "$@" >"$data/node$i.log" 2>&1 &
  pids+=($!)
}

wait_ready() {
  local port=$1
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "node on port $port did not become ready; see $data/*.log" >&2
  return 1
}

start_node 0 --bootstrap=true
wait_ready "$http_base"
start_node 1 --join="127.0.0.1:$http_base"
start_node 2 --join="127.0.0.1:$http_base"
wait_ready $((http_base + 1))
wait_ready $((http_base + 2))

cat <<MSG
stcache cluster running (data in $data, logs in $data/node*.log)
  node0  http 127.0.0.1:$http_base   raft 127.0.0.1:$raft_base   redis 127.0.0.1:$resp_base
  node1  http 127.0.0.1:$((http_base + 1))   raft 127.0.0.1:$((raft_base + 1))   redis 127.0.0.1:$((resp_base + 1))
  node2  http 127.0.0.1:$((http_base + 2))   raft 127.0.0.1:$((raft_base + 2))   redis 127.0.0.1:$((resp_base + 2))

dashboard: http://127.0.0.1:$http_base/ui   (every node serves one)
metrics:   http://127.0.0.1:$http_base/metrics

try:
  curl "http://127.0.0.1:$http_base/set?key=abc&value=efg"
  curl "http://127.0.0.1:$((http_base + 1))/get?key=abc"
  curl -X PUT --data-binary 'hello, world' http://127.0.0.1:$((http_base + 2))/v1/kv/greeting
  curl -i http://127.0.0.1:$http_base/v1/kv/greeting
  curl http://127.0.0.1:$http_base/v1/cluster
  ./out/stcachectl --endpoints 127.0.0.1:$http_base status
  ./out/stcachectl --endpoints 127.0.0.1:$http_base watch

redis clients work against any node (writes reach the leader inside the cluster; reads are linearizable):
  redis-cli -p $resp_base SET greeting "hello, world"
  redis-cli -p $((resp_base + 1)) GET greeting
  redis-cli -p $((resp_base + 2)) INCR visits
  redis-cli -p $((resp_base + 1)) ROLE
  redis-cli -p $((resp_base + 2)) INFO replication
  redis-benchmark -p $resp_base -t set,get -n 10000 -q
  StackExchange.Redis: ConnectionMultiplexer.Connect("127.0.0.1:$resp_base,127.0.0.1:$((resp_base + 1)),127.0.0.1:$((resp_base + 2))")

Ctrl-C stops all nodes.
MSG
wait
