"""What preparing a WAL segment does to the Raft loop's fdatasync, on this disk, without a cluster.

    python3 bench/wrk/zero-fill-sync.py DIR [rounds] [segment_mib]

A writer appends 200 B and calls fdatasync, back to back, for 3 s (the Raft loop's WAL saves). Half a second in, a
second thread writes a segment of zeros (default 64 MiB, the WAL's segment size) into a new file, as
WriteAheadLog.PrepareNextSegment does, in one of three ways, interleaved round by round: none (the writer alone),
whole (all the zeros, then one fsync: the WAL before session 14) and chunked (a sync after every 1 MiB: after). Per
way and round: the writer's fdatasync p50, p99 and max, and how many took 10 ms or more. DIR should be on the disk
the nodes' data directories use.
"""
import os
import sys
import threading
import time

directory = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
segment = (int(sys.argv[3]) if len(sys.argv) > 3 else 64) << 20
chunk = 1 << 20


def zero_fill(path, chunked, report):
    time.sleep(0.5)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    zeros = bytes(chunk)
    started = time.perf_counter()
    for _ in range(segment // chunk):
        os.write(fd, zeros)
        if chunked:
            os.fsync(fd)
    os.fsync(fd)
    report.append(time.perf_counter() - started)
    os.close(fd)
    os.unlink(path)


def run(way):
    wal = os.path.join(directory, "zero-fill-sync.wal")
    fd = os.open(wal, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    report = []
    filler = None
    if way != "none":
        filler = threading.Thread(target=zero_fill, args=(os.path.join(directory, "zero-fill-sync.tmp"), way == "chunked", report))
        filler.start()
    latencies = []
    stop = time.perf_counter() + 3
    while time.perf_counter() < stop:
        os.write(fd, b"x" * 200)
        t = time.perf_counter()
        os.fdatasync(fd)
        latencies.append(time.perf_counter() - t)
    if filler:
        filler.join()
    os.close(fd)
    os.unlink(wal)
    latencies.sort()
    n = len(latencies)
    fill = f", zero-fill took {report[0] * 1e3:.0f} ms" if report else ""
    print(f"{way:8} {n:5d} fdatasyncs: p50 {latencies[n // 2] * 1e6:6.0f} us, p99 {latencies[int(n * 0.99)] * 1e3:6.1f} ms, "
          f"max {latencies[-1] * 1e3:6.1f} ms, {sum(1 for x in latencies if x >= 0.01):3d} of 10 ms or more{fill}")


for r in range(rounds):
    for way in ("none", "whole", "chunked"):
        run(way)
print(f"load {open('/proc/loadavg').read().split()[0]}")
