#!/usr/bin/env python3
"""Where a process's threads spent a window: per thread name, CPU time, time spent runnable but waiting for a core
(the run queue), times scheduled in, and preemptions (involuntary context switches, a sched_yield included), from
/proc/PID/task/*/schedstat and status. A request served on a thread waits as long as that thread waits, so a thread
that carries many connections and waits in the run queue for milliseconds sets the latency tail.

    bench/wrk/runqueue.py PID SECONDS [REQUESTS]    (REQUESTS: per-request figures beside the totals)
"""
import collections
import os
import sys
import time


def snapshot(pid):
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run_ns, wait_ns, slices = map(int, f.read().split())
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = f.read()
            preempted = int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended between the listing and the read
        threads[tid] = (name, run_ns, wait_ns, slices, preempted)
    return threads


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    pid, seconds = sys.argv[1], float(sys.argv[2])
    requests = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    before = snapshot(pid)
    time.sleep(seconds)
    after = snapshot(pid)
    by_name = collections.defaultdict(lambda: [0, 0, 0, 0, 0])
    for tid, (name, run_ns, wait_ns, slices, preempted) in after.items():
        _, run0, wait0, slices0, preempted0 = before.get(tid, (name, 0, 0, 0, 0))
        row = by_name[name]
        row[0] += 1
        row[1] += run_ns - run0
        row[2] += wait_ns - wait0
        row[3] += slices - slices0
        row[4] += preempted - preempted0
    print(f"  {'thread':<16} {'count':>5} {'cpu_ms':>8} {'runq_ms':>8} {'slices':>8} {'preempted':>9} {'runq_us/slice':>13}"
          + (f" {'runq_us/req':>11}" if requests else ""))
    for name, (count, run_ns, wait_ns, slices, preempted) in sorted(by_name.items(), key=lambda kv: -kv[1][1]):
        if run_ns < 1_000_000 and wait_ns < 1_000_000:
            continue
        line = (f"  {name:<16} {count:>5} {run_ns / 1e6:8.0f} {wait_ns / 1e6:8.0f} {slices:8d} {preempted:9d} "
                f"{wait_ns / 1e3 / max(slices, 1):13.0f}")
        if requests:
            line += f" {wait_ns / 1e3 / requests:11.2f}"
        print(line)


if __name__ == "__main__":
    main()
