#!/usr/bin/env bash
# Measures what a snapshot catch-up costs: a 3-node cluster on free loopback ports is loaded with KEYS keys of
# VALUE_SIZE bytes, every node snapshots, one follower is stopped, the leader takes more writes and a new
# snapshot (so the log the follower needs is gone), then the follower is restarted and catches up by snapshot.
# Meanwhile one client writes to the leader back to back; the script reports the longest write (the pause),
# the p99, and the peak RSS of the leader and of the lagging follower (sampled from /proc every 20 ms, plus
# VmHWM) during the catch-up. Everything it starts is killed on exit; the whole run is bounded by LIMIT_S.
#
# Usage: bench/snapshot-catchup.sh [stcached-directory]
#   stcached-directory: a published node (default: out/, built with ./build.sh when missing)
#   KEYS (2000000), VALUE_SIZE (100), EXTRA_WRITES (30000), CONNECTIONS (256), LIMIT_S (1800), WORK (a temp dir)
# Prints a summary line per figure and one JSON line at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir="${1:-out}"
if [[ ! -x "$bin_dir/stcached" ]]; then
  if [[ "$bin_dir" == out ]]; then ./build.sh >/dev/null; else echo "no stcached in $bin_dir" >&2; exit 2; fi
fi
loadgen_dir="${LOADGEN_DIR:-bench/Stcache.LoadGen/bin/Release/net10.0}"
if [[ ! -f "$loadgen_dir/stcache-loadgen.dll" ]]; then
  dotnet build bench/Stcache.LoadGen/Stcache.LoadGen.csproj -c Release --nologo -v quiet >/dev/null
fi

work="${WORK:-$(mktemp -d -t stcache-snapbench.XXXXXX)}"
mkdir -p "$work"
export STCACHED="$(cd "$bin_dir" && pwd)/stcached" LOADGEN="$(cd "$loadgen_dir" && pwd)/stcache-loadgen.dll" WORK_DIR="$work"
export KEYS="${KEYS:-2000000}" VALUE_SIZE="${VALUE_SIZE:-100}" EXTRA_WRITES="${EXTRA_WRITES:-30000}"
export CONNECTIONS="${CONNECTIONS:-256}" LIMIT_S="${LIMIT_S:-1800}"
exec timeout --signal=TERM --kill-after=30 "$LIMIT_S" python3 - <<'PY'
import http.client, json, os, signal, socket, subprocess, sys, threading, time

stcached, loadgen, work = os.environ["STCACHED"], os.environ["LOADGEN"], os.environ["WORK_DIR"]
keys, value_size, extra = int(os.environ["KEYS"]), int(os.environ["VALUE_SIZE"]), int(os.environ["EXTRA_WRITES"])
connections = int(os.environ["CONNECTIONS"])
procs = {}

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

ports = [(free_port(), free_port()) for _ in range(3)]
cluster = ",".join(f"{i + 1}/127.0.0.1:{raft}" for i, (_, raft) in enumerate(ports))

def log(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

def start(i):
    http, raft = ports[i]
    args = [stcached, f"--http_addr=127.0.0.1:{http}", f"--raft_addr=127.0.0.1:{raft}", f"--raft_id={i + 1}",
            f"--raft_cluster={cluster}", f"--node={work}/node{i + 1}",
            # No automatic snapshots: the script takes them, so every run snapshots at the same points.
            "--snapshot-threshold=1000000000", "--snapshot-interval-s=0"]
    out = open(f"{work}/node{i + 1}.log", "a")
    procs[i] = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

def stop(i):
    p = procs.pop(i, None)
    if p and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

def stop_all(*_):
    for i in list(procs):
        stop(i)

signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(3)))

def request(i, method, path, body=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", ports[i][0], timeout=timeout)
    try:
        conn.request(method, path, body=body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()

def status(i):
    try:
        code, body = request(i, "GET", "/v1/status", timeout=5)
        return json.loads(body) if code == 200 else None
    except (OSError, ValueError):
        return None

def wait_until(what, check, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting until {what}")

seen = {}

def leader():
    for i in procs:
        s = seen[i] = status(i)
        if s and s.get("role") == "leader":
            return i
    return None

def snapshot(i):
    code, body = request(i, "POST", "/v1/snapshot", timeout=600)
    if code != 200:
        raise SystemExit(f"snapshot on node {i + 1} failed: {code} {body[:200]!r}")

def rss_kib(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

def preload(count, prefix):
    # A loaded machine can time out a few writes; the load only has to be nearly complete.
    run = subprocess.run(["dotnet", loadgen, f"--targets=http://127.0.0.1:{ports[lead][0]}", "--preload-only",
                          f"--keys={count}", f"--key-prefix={prefix}", f"--value-size={value_size}",
                          f"--connections={connections}", "--timeout=30s"], stdout=subprocess.PIPE, text=True)
    loaded = int(run.stdout.strip() or 0)
    if loaded < count * 0.99:
        raise SystemExit(f"only {loaded} of {count} writes were acknowledged")
    return loaded

try:
    for i in range(3):
        start(i)
    try:
        lead = wait_until("a leader is elected", leader, 300)
    except SystemExit:
        raise SystemExit(f"no leader seen in 300 s; last statuses: {seen}; ports: {ports}")
    log(f"leader is node {lead + 1}; loading {keys} keys of {value_size} B with {connections} connections")
    t0 = time.time()
    loaded = preload(keys, "k")
    log(f"loaded {loaded} keys in {time.time() - t0:.0f} s; snapshotting every node")
    for i in range(3):
        snapshot(i)
    lag = next(i for i in range(3) if i != lead)
    log(f"stopping follower node {lag + 1}; writing {extra} more keys")
    stop(lag)
    preload(extra, "extra")
    for i in procs:
        snapshot(i)
    target = status(lead)["commit"]
    log(f"leader snapshot at {status(lead)['snapshotIndex']}, commit {target}; restarting node {lag + 1}")

    # Writer: back-to-back PUTs to the leader on one keep-alive connection, each timed.
    latencies, stop_writer = [], threading.Event()
    def writer():
        conn, n, value = None, 0, b"x" * value_size
        while not stop_writer.is_set():
            started = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", ports[lead][0], timeout=60)
                conn.request("PUT", f"/v1/kv/probe{n % 1000}", body=value)
                r = conn.getresponse()
                r.read()
                ok = r.status in (200, 204)
            except OSError:
                conn, ok = None, False
            latencies.append((time.perf_counter() - started, ok))
            n += 1
    # Sampler: RSS of the leader and the lagging follower every 20 ms.
    peaks, stop_sampler = {"leader": 0, "follower": 0}, threading.Event()
    def sampler():
        while not stop_sampler.is_set():
            peaks["leader"] = max(peaks["leader"], rss_kib(procs[lead].pid))
            if lag in procs:
                peaks["follower"] = max(peaks["follower"], rss_kib(procs[lag].pid))
            time.sleep(0.02)

    leader_rss_before = rss_kib(procs[lead].pid)
    try:
        with open(f"/proc/{procs[lead].pid}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, so it covers the catch-up only
        hwm_reset = True
    except OSError:
        hwm_reset = False
    threads = [threading.Thread(target=writer, daemon=True), threading.Thread(target=sampler, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(2)  # a baseline of normal writes first
    t_restart = time.time()
    start(lag)
    def caught_up():
        s = status(lag)
        return s and s.get("applied", 0) >= target and s.get("snapshotIndex", 0) >= target - extra
    wait_until(f"node {lag + 1} catches up", caught_up, 900)
    catch_up_s = time.time() - t_restart
    time.sleep(2)
    stop_writer.set()
    stop_sampler.set()
    for t in threads:
        t.join(70)

    follower_hwm = rss_kib(procs[lag].pid, "VmHWM")
    leader_hwm = rss_kib(procs[lead].pid, "VmHWM") if hwm_reset else None
    installed = "Snapshot from the leader installed" in open(f"{work}/node{lag + 1}.log").read()
    times = sorted(l for l, ok in latencies)
    failed = sum(1 for _, ok in latencies if not ok)
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000
    result = {
        "keys": keys, "value_size": value_size, "catch_up_s": round(catch_up_s, 1), "installed_snapshot": installed,
        "writes": len(times), "failed_writes": failed,
        "write_max_ms": round(times[-1] * 1000, 1), "write_p99_ms": round(p(0.99), 1), "write_p50_ms": round(p(0.5), 2),
        "leader_rss_before_mib": round(leader_rss_before / 1024), "leader_rss_peak_mib": round(peaks["leader"] / 1024),
        "leader_hwm_mib": None if leader_hwm is None else round(leader_hwm / 1024),
        "follower_rss_peak_mib": round(peaks["follower"] / 1024), "follower_hwm_mib": round(follower_hwm / 1024),
        "snapshot_file_mib": round(max((os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(f"{work}/node{lead + 1}")
                                        for f in files if f.endswith(".snap")), default=0) / 1048576),
    }
    log(f"node {lag + 1} caught up in {catch_up_s:.1f} s (snapshot installed: {installed})")
    log(f"leader writes during catch-up: {len(times)} ({failed} failed), longest {result['write_max_ms']} ms, "
        f"p99 {result['write_p99_ms']} ms, p50 {result['write_p50_ms']} ms")
    log(f"leader RSS: {result['leader_rss_before_mib']} MiB before, peak {result['leader_rss_peak_mib']} MiB "
        f"(VmHWM {result['leader_hwm_mib']}); follower peak {result['follower_rss_peak_mib']} MiB (VmHWM {result['follower_hwm_mib']})")
    print(json.dumps(result), flush=True)
finally:
    stop_all()
PY
