#!/usr/bin/env bash
# Measures the leader's expiry and eviction (issue 11, docs/CACHE.md) on a 3-node cluster on free loopback ports:
#
# 1. Reclaim: KEYS keys of VALUE_SIZE bytes, all written with the same absolute expiry (SET ... PXAT T, loaded
#    through redis-cli --pipe on the leader's RESP port; T is set after a probe of the load rate (1.5 times the probed load time, plus 30 s) so that the load
#    ends before T). From T on, the script samples every node's accounted used_memory (INFO) and RSS (/proc) every
#    100 ms until used_memory is back at the baseline, while a steady writer sets one of 100 keys back to back on
#    the leader. Reports the time to reclaim (T to baseline on every node), the reclaim rate, RSS before, at the
#    peak and after, and the writer's worst and p99 latency during the reclaim.
# 2. Limit: a new cluster started with --max-memory=LIMIT --eviction-policy=allkeys-lru is filled with FILL_KEYS
#    keys (past the limit); reports each node's used_memory, evicted keys, keys and RSS against the limit.
#
# Usage: bench/expiry-reclaim.sh [stcached]
#   stcached: a published stcached (default out/stcached, built with ./build.sh when missing) or a stcached.dll
#   KEYS (1000000), VALUE_SIZE (100), LIMIT (64mb), FILL_KEYS (600000), LIMIT_S (3600), WORK (a temp dir),
#   PHASES ("reclaim limit"), EXPIRE_IN_S (seconds from the probe to the expiry; default from the probed rate)
# Needs redis-cli (Debian redis-tools). Prints a line per figure with the load average, and one JSON line at the end.
# Everything it starts is killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
server="${1:-out/stcached}"
if [[ ! -e "$server" ]]; then
  if [[ "$server" == out/stcached ]]; then ./build.sh >/dev/null; else echo "no stcached at $server" >&2; exit 2; fi
fi
command -v redis-cli >/dev/null || { echo "redis-cli is needed (apt-get install redis-tools)" >&2; exit 2; }
work="${WORK:-$(mktemp -d -t stcache-expiry.XXXXXX)}"
mkdir -p "$work"
export STCACHED="$(cd "$(dirname "$server")" && pwd)/$(basename "$server")" WORK_DIR="$work"
export KEYS="${KEYS:-1000000}" VALUE_SIZE="${VALUE_SIZE:-100}" LIMIT="${LIMIT:-64mb}" FILL_KEYS="${FILL_KEYS:-600000}"
export PHASES="${PHASES:-reclaim limit}" LIMIT_S="${LIMIT_S:-3600}"
exec timeout --signal=TERM --kill-after=30 "$LIMIT_S" python3 - <<'PY'
import http.client, json, os, signal, socket, subprocess, sys, threading, time

stcached, work = os.environ["STCACHED"], os.environ["WORK_DIR"]
keys, value_size, fill_keys = int(os.environ["KEYS"]), int(os.environ["VALUE_SIZE"]), int(os.environ["FILL_KEYS"])
limit_text, phases = os.environ["LIMIT"], os.environ["PHASES"].split()
procs, results = {}, {"keys": keys, "value_size": value_size}

def log(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

def load_average():
    return open("/proc/loadavg").read().split()[0]

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def stop_all(*_):
    for i, p in list(procs.items()):
        if p.poll() is None:
            p.kill()
            p.wait()
        procs.pop(i, None)

signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(3)))

class Cluster:
    def __init__(self, name, extra):
        self.ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
        members = ",".join(f"{i + 1}/127.0.0.1:{raft}" for i, (_, raft, _) in enumerate(self.ports))
        for i, (http, raft, resp) in enumerate(self.ports):
            cmd = ["dotnet", stcached] if stcached.endswith(".dll") else [stcached]
            cmd += [f"--http_addr=127.0.0.1:{http}", f"--raft_addr=127.0.0.1:{raft}", f"--raft_id={i + 1}",
                    f"--raft_cluster={members}", f"--node={work}/{name}{i + 1}", f"--resp=127.0.0.1:{resp}"] + extra
            out = open(f"{work}/{name}{i + 1}.log", "a")
            procs[i] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_until("a leader", lambda: self.leader() is not None, 300)

    def status(self, i):
        conn = http.client.HTTPConnection("127.0.0.1", self.ports[i][0], timeout=10)
        try:
            conn.request("GET", "/v1/status")
            r = conn.getresponse()
            return json.loads(r.read()) if r.status == 200 else None
        except OSError:
            return None
        finally:
            conn.close()

    def leader(self):
        for i in range(3):
            s = self.status(i)
            if s and s.get("role") == "leader":
                return i
        return None

    def wait_until(self, what, check, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise SystemExit(f"timed out waiting for {what}")

    def rss_mib(self, i):
        for line in open(f"/proc/{procs[i].pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def info(self, i):
        out = subprocess.run(["redis-cli", "-p", str(self.ports[i][2]), "INFO"], capture_output=True, text=True, timeout=30).stdout
        return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)

    def used(self, i):
        return int(self.info(i).get("used_memory", "0"))

    def pipe(self, i, commands):
        """Loads commands (lists of str) through redis-cli --pipe on node i; returns the seconds it took."""
        path = f"{work}/pipe.resp"
        with open(path, "wb") as f:
            for c in commands:
                f.write(f"*{len(c)}\r\n".encode())
                for a in c:
                    b = a.encode()
                    f.write(b"$%d\r\n%s\r\n" % (len(b), b))
        started = time.time()
        with open(path, "rb") as f:
            r = subprocess.run(["redis-cli", "-p", str(self.ports[i][2]), "--pipe", "--pipe-timeout", "0"], stdin=f, capture_output=True, text=True)
        said = (r.stdout + r.stderr).strip().splitlines()
        summary = said[-1] if said else f"exit code {r.returncode}"
        if "errors: 0," not in summary:
            log("redis-cli --pipe: " + " | ".join(said[-5:]))
        return time.time() - started

def resp_command(sock, reader, *args):
    data = f"*{len(args)}\r\n".encode() + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
    sock.sendall(data)
    return reader.readline()

def reclaim():
    c = Cluster("reclaim", [])
    lead = c.leader()
    value = "v" * value_size
    base_used = [c.used(i) for i in range(3)]
    base_rss = [c.rss_mib(i) for i in range(3)]
    log(f"baseline: used_memory {base_used}, RSS MiB {[round(r) for r in base_rss]} (load {load_average()})")

    # Probe the load rate with keys that expire right after the probe (they are part of the reclaim too).
    probe = min(20000, keys // 10)
    probe_seconds = c.pipe(lead, [["SET", f"probe:{n:07d}", value, "PX", "1000"] for n in range(probe)])
    rate = probe / max(probe_seconds, 0.001)
    expire_in = float(os.environ.get("EXPIRE_IN_S") or keys / rate * 1.5 + 30)
    expire_at = int((time.time() + expire_in) * 1000)
    log(f"probe: {probe} keys in {probe_seconds:.1f} s ({rate:,.0f}/s); all {keys:,} keys expire at +{(expire_at / 1000 - time.time()):.0f} s")
    load_seconds = c.pipe(lead, [["SET", f"key:{n:07d}", value, "PXAT", str(expire_at)] for n in range(keys)])
    loaded = [c.used(i) for i in range(3)]
    peak_rss = [c.rss_mib(i) for i in range(3)]
    present = int(subprocess.run(["redis-cli", "-p", str(c.ports[lead][2]), "DBSIZE"], capture_output=True, text=True).stdout.strip() or 0)
    log(f"loaded {keys:,} keys in {load_seconds:.1f} s ({present:,} present); used_memory {loaded}, RSS MiB {[round(r) for r in peak_rss]} (load {load_average()})")
    results["keys_present"] = present
    if time.time() * 1000 > expire_at:
        log("WARNING: the load ended after the expiry time; the reclaim began during the load")

    latencies, stop = [], threading.Event()
    def writer():
        with socket.create_connection(("127.0.0.1", c.ports[lead][2])) as s:
            reader = s.makefile("rb")
            n = 0
            while not stop.is_set():
                started = time.perf_counter()
                resp_command(s, reader, "SET", f"w:{n % 100}", value)
                latencies.append((time.time(), time.perf_counter() - started))
                n += 1

    while time.time() * 1000 < expire_at - 2000:
        time.sleep(0.1)
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    while time.time() * 1000 < expire_at:
        time.sleep(0.01)
    # Back at the baseline: within the writer's 100 keys (and what the probe left) of where it started.
    slack = 100 * (96 + 4 + value_size) * 2 + 64 * 1024
    done = [None] * 3
    samples = []
    while any(d is None for d in done) and time.time() * 1000 < expire_at + 1800 * 1000:
        now = time.time()
        used = [c.used(i) for i in range(3)]
        for i in range(3):
            peak_rss[i] = max(peak_rss[i], c.rss_mib(i))
            if done[i] is None and used[i] <= base_used[i] + slack:
                done[i] = now - expire_at / 1000
        samples.append((now - expire_at / 1000, used))
        time.sleep(0.1)
    stop.set()
    thread.join(10)
    before = sorted(l for t, l in latencies if t * 1000 < expire_at)
    during = sorted(l for t, l in latencies if t * 1000 >= expire_at and t - expire_at / 1000 <= max(d or 0 for d in done))
    worst = during[-1] * 1000 if during else float("nan")
    p99 = during[int(len(during) * 0.99) - 1] * 1000 if len(during) >= 100 else worst
    seconds = max(d or float("inf") for d in done)
    after_rss = [c.rss_mib(i) for i in range(3)]
    half = next((t for t, u in samples if all(u[i] <= base_used[i] + (loaded[i] - base_used[i]) / 2 for i in range(3))), None)
    log(f"reclaimed {present:,} keys on every node in {seconds:.1f} s after the expiry ({present / seconds:,.0f} keys/s; half of it by {half if half is None else round(half, 1)} s) (load {load_average()})")
    log(f"steady writer during the reclaim: {len(during)} writes, worst {worst:.1f} ms, p99 {p99:.1f} ms, median {during[len(during) // 2] * 1000 if during else float('nan'):.1f} ms; "
        f"in the 2 s before: {len(before)} writes, worst {before[-1] * 1000 if before else float('nan'):.1f} ms, median {before[len(before) // 2] * 1000 if before else float('nan'):.1f} ms")
    time.sleep(10)
    later_rss = [c.rss_mib(i) for i in range(3)]
    log(f"RSS MiB 10 s after the reclaim: {[round(r) for r in later_rss]}")
    results["rss_mib_10s_after"] = [round(r) for r in later_rss]
    results["writer_before_worst_ms"] = round(before[-1] * 1000, 1) if before else None
    log(f"RSS MiB per node: baseline {[round(r) for r in base_rss]}, peak {[round(r) for r in peak_rss]}, after the reclaim {[round(r) for r in after_rss]}")
    info = c.info(lead)
    results["reclaim"] = {"seconds": round(seconds, 2), "per_node_seconds": [round(d, 2) for d in done], "half_seconds": half,
                          "writer_worst_ms": round(worst, 1), "writer_p99_ms": round(p99, 1), "writes": len(during),
                          "rss_mib_baseline": [round(r) for r in base_rss], "rss_mib_peak": [round(r) for r in peak_rss],
                          "rss_mib_after": [round(r) for r in after_rss], "expired_keys": int(info.get("expired_keys", "0")),
                          "load_seconds": round(load_seconds, 1), "load_average": load_average()}
    stop_all()

def limit():
    c = Cluster("limit", [f"--max-memory={limit_text}", "--eviction-policy=allkeys-lru"])
    lead = c.leader()
    c.wait_until("the configured limit on every node", lambda: all(c.info(i).get("maxmemory", "0") != "0" for i in range(3)), 120)
    value = "v" * value_size
    seconds = c.pipe(lead, [["SET", f"key:{n:07d}", value] for n in range(fill_keys)])
    target = int(c.status(lead)["commit"])
    c.wait_until("every node to apply the fill", lambda: all((c.status(i) or {}).get("applied", 0) >= target for i in range(3)), 300)
    rows = []
    for i in range(3):
        info = c.info(i)
        rows.append({"node": i + 1, "used_memory": int(info["used_memory"]), "maxmemory": int(info["maxmemory"]),
                     "evicted_keys": int(info["evicted_keys"]), "keys": int(info.get("db0", "keys=0").split(",")[0].split("=")[1]),
                     "rss_mib": round(c.rss_mib(i))})
        log(f"node {i + 1}: used_memory {rows[-1]['used_memory']:,} of maxmemory {rows[-1]['maxmemory']:,}, "
            f"{rows[-1]['keys']:,} keys, {rows[-1]['evicted_keys']:,} evicted, RSS {rows[-1]['rss_mib']} MiB")
    log(f"filled {fill_keys:,} keys in {seconds:.1f} s (load {load_average()})")
    results["limit"] = {"limit": limit_text, "fill_keys": fill_keys, "nodes": rows, "load_average": load_average()}
    stop_all()

try:
    for phase in phases:
        {"reclaim": reclaim, "limit": limit}[phase]()
finally:
    stop_all()
print(json.dumps(results))
PY
