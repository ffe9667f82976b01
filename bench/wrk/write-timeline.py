"""A write row's latency over time on one 3-node cluster, beside what might stall it.

    python3 bench/wrk/write-timeline.py DIR/stcached [seconds] [value_bytes] [connections] [-- extra stcached flags]

Starts a cluster (log level Information, so snapshot lines carry their timestamps), writes k0..k9999 once, then for
the given seconds (default 20) drives `wrk` with puts-1k.lua (or puts.lua when value_bytes is 100) at the given
connections (default 64) against the leader. Beside it, a probe writes a value of the same size on one connection of
its own, back to back, and records each write's start and latency; a poller reads the leader's and one follower's
/metrics every 100 ms (GC collections per generation, GC pause time, snapshot index). It prints one line per 100 ms
bin in which the probe saw a write slower than SLOW_MS (default 15) or something else happened: the probe's slowest
write, the collections and pause time of each node, and the snapshot and WAL segment-cut lines of the node logs. Then a
summary: how many slow probe writes fell in a bin with a gen1/gen2 collection, a snapshot or a segment cut of either
node, and wrk's own figures.
Everything it starts is stopped on exit. Needs wrk, curl-free: only python3.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

args = sys.argv[1:]
extra = []
if "--" in args:
    extra = args[args.index("--") + 1:]
    args = args[:args.index("--")]
binary = args[0]
seconds = int(args[1]) if len(args) > 1 else 20
value_bytes = int(args[2]) if len(args) > 2 else 1024
connections = int(args[3]) if len(args) > 3 else 64
slow_ms = float(os.environ.get("SLOW_MS", "15"))
here = os.path.dirname(os.path.abspath(__file__))
out = tempfile.mkdtemp(prefix="stcache-timeline.")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


http_ports = [free_port() for _ in range(3)]
raft_ports = [free_port() for _ in range(3)]
cluster = ",".join(f"{i + 1}/127.0.0.1:{raft_ports[i]}" for i in range(3))
procs = []
logs = []
for i in range(3):
    log = open(f"{out}/n{i + 1}.log", "w")
    logs.append(f"{out}/n{i + 1}.log")
    procs.append(subprocess.Popen([binary, f"--http_addr=127.0.0.1:{http_ports[i]}", f"--raft_addr=127.0.0.1:{raft_ports[i]}",
                                   f"--raft_id={i + 1}", f"--raft_cluster={cluster}", f"--node={out}/n{i + 1}",
                                   "--log-level=Information", *extra], stdout=log, stderr=subprocess.STDOUT))


def stop(*_):
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(1)))


def get(port, path, timeout=2.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


try:
    leader = None
    for _ in range(300):
        for i in range(3):
            try:
                status, body = get(http_ports[i], "/v1/status", 1.0)
                if status == 200 and json.loads(body).get("role") == "leader":
                    leader = i
            except OSError:
                pass
        if leader is not None:
            break
        time.sleep(0.1)
    if leader is None:
        sys.exit(f"no leader (logs in {out})")
    follower = (leader + 1) % 3
    url = f"http://127.0.0.1:{http_ports[leader]}"
    subprocess.run([sys.executable, f"{here}/preload.py", url], check=True)

    def metrics(port):
        _, body = get(port, "/metrics", 5.0)
        gen = {}
        pause = snap = 0.0
        for line in body.decode().splitlines():
            if line.startswith("dotnet_gc_collections_total"):
                gen[re.search(r'gen(\d)', line).group(1)] = float(line.split()[-1])
            elif line.startswith("dotnet_gc_pause_time_seconds_total"):
                pause = float(line.split()[-1])
            elif line.startswith("stcache_snapshot_index"):
                snap = float(line.split()[-1])
        return gen, pause, snap

    samples = []  # (t, node, gen dict, pause, snapshot index)
    probes = []  # (t start, latency s)
    done = threading.Event()

    def poll():
        while not done.is_set():
            for node in (leader, follower):
                t = time.time()
                try:
                    samples.append((t, node, *metrics(http_ports[node])))
                except OSError:
                    pass
            done.wait(0.1)

    def probe():
        conn = http.client.HTTPConnection("127.0.0.1", http_ports[leader], timeout=10)
        value = b"p" * value_bytes
        n = 0
        while not done.is_set():
            t = time.time()
            conn.request("PUT", f"/v1/kv/probe{n % 100}", value)
            r = conn.getresponse()
            r.read()
            probes.append((t, time.time() - t))
            n += 1

    script = "puts-1k.lua" if value_bytes == 1024 else "puts.lua"
    wrk = subprocess.Popen(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", f"{here}/{script}", url,
                            "--", "dialect=stcache", f"value={value_bytes}"], stdout=subprocess.PIPE, text=True)
    time.sleep(1)  # the first second warms up: not in the timeline
    threads = [threading.Thread(target=poll), threading.Thread(target=probe)]
    start = time.time()
    for t in threads:
        t.start()
    wrk_out = wrk.communicate()[0]
    done.set()
    for t in threads:
        t.join()
    end = time.time()

    snap_lines = []
    for i, path in enumerate(logs):
        for line in open(path):
            if "napshot" in line or "ompact" in line or "cut new segment" in line:
                m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})", line)
                if m:
                    ts = time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) + float(m.group(1)[19:]) - time.timezone
                    snap_lines.append((ts, i, line.strip()[24:110]))

    bin_s = 0.1
    nbins = int((end - start) / bin_s) + 1
    slow = [[] for _ in range(nbins)]
    for t, lat in probes:
        if start <= t < end:
            slow[int((t - start) / bin_s)].append(lat * 1000)
    events = [[] for _ in range(nbins)]
    last = {}
    for t, node, gen, pause, snap in samples:
        if node in last:
            g0, p0, s0 = last[node]
            d = "/".join(f"{gen.get(k, 0) - g0.get(k, 0):.0f}" for k in "012")
            b = int((t - start) / bin_s)
            if 0 <= b < nbins and (d != "0/0/0" or snap != s0):
                role = "L" if node == leader else "F"
                events[b].append(f"{role} gc {d} {1000 * (pause - p0):.1f}ms" + (f" snap->{snap:.0f}" if snap != s0 else ""))
        last[node] = (gen, pause, snap)
    for ts, node, text in snap_lines:
        b = int((ts - start) / bin_s)
        if 0 <= b < nbins:
            events[b].append(f"n{node + 1}{'L' if node == leader else ''} {text}")
    slow_bins = heavy_bins = 0
    for b in range(nbins):
        worst = max(slow[b], default=0)
        if worst >= slow_ms or events[b]:
            print(f"{b * bin_s:6.1f}s probe max {worst:7.1f} ms n={len(slow[b]):3d}  {'; '.join(events[b])}")
        if worst >= slow_ms:
            slow_bins += 1
            near = events[max(b - 1, 0)] + events[b]
            if any(("gc" in e and e.split(" gc ")[1].split()[0].split("/")[1:] != ["0", "0"]) or "napshot" in e or "snap->" in e or "segment" in e for e in near):
                heavy_bins += 1
    lat = sorted(l for t, l in probes if start <= t < end)
    if lat:
        print(f"probe: {len(lat)} writes, p50 {1000 * lat[len(lat) // 2]:.2f} ms, p99 {1000 * lat[int(len(lat) * 0.99)]:.2f} ms, "
              f"max {1000 * lat[-1]:.1f} ms; {slow_bins} bins with a write >= {slow_ms} ms, {heavy_bins} of them with a gen1/gen2 "
              f"collection, a snapshot or a WAL segment cut in that bin or the one before")
    for line in wrk_out.splitlines():
        if line.startswith("WRKJSON "):
            d = json.loads(line[8:])
            print(f"wrk: {d['rps']:.0f} ops/s, p50 {d['p50_us'] / 1000:.2f} ms, p99 {d['p99_us'] / 1000:.2f} ms, p99.9 {d['p999_us'] / 1000:.2f} ms, "
                  f"errors {sum(d['errors'].values())}; load {open('/proc/loadavg').read().split()[0]}; logs in {out}")
finally:
    stop()
