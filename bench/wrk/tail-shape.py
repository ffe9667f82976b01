"""The shape of a write tail, from bench/wrk/putlat.c's trace: stalls or unfair queueing?

    python3 bench/wrk/tail-shape.py TRACE [warmup_seconds] [START_UNIX_TIME NAME=GCHOOK_FILE...]

TRACE has one line per request, "connection start_us latency_us status". Requests that started in the first
warmup_seconds (default 2) are left out. Prints ops/s and percentiles; how evenly the connections were served
(answers per connection, each connection's own p99); the gaps in which no answer at all arrived (a stall holds
every connection); and for the requests above the p99, how many other answers arrived while each waited, as a share
of what the mean rate would give in that time ("served while waiting": near 0 means it waited through a stall, near
1 means the server went on answering others while this one waited, i.e. unfair queueing); the bursts in which a
round's answers arrive and how long each takes to come out. Then the slowest 100 ms bins. With the trace's start
(Unix time, printed by putlat) and bench/GcHook's files of the nodes, it also prints each node's collections and how
many of the requests above the p99 overlapped a pause of each node.
"""
import re
import sys
from bisect import bisect_left, bisect_right

path = sys.argv[1]
warmup = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
start_unix = float(sys.argv[3]) if len(sys.argv) > 3 else None
gc_files = [a.split("=", 1) for a in sys.argv[4:]]
recs = []
with open(path) as f:
    for line in f:
        p = line.split()
        if len(p) == 4:
            recs.append((int(p[0]), float(p[1]), float(p[2]), int(p[3])))
t_from = warmup * 1e6
recs = [r for r in recs if r[1] >= t_from]
if not recs:
    sys.exit("no requests after the warm-up")
ends = sorted(r[1] + r[2] for r in recs)
t_to = max(r[1] for r in recs)
span = (t_to - t_from) / 1e6
lats = sorted(r[2] for r in recs)


def pct(values, q):
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


bad = sum(1 for r in recs if r[3] >= 300)
rate = len(recs) / span
print(f"{len(recs)} requests in {span:.1f} s: {rate:,.0f}/s, {bad} not 2xx; latency ms p50 {pct(lats, 50) / 1e3:.2f} "
      f"p90 {pct(lats, 90) / 1e3:.2f} p99 {pct(lats, 99) / 1e3:.2f} p99.9 {pct(lats, 99.9) / 1e3:.2f} max {lats[-1] / 1e3:.2f}, "
      f"mean {sum(lats) / len(lats) / 1e3:.2f}")

by_conn = {}
for r in recs:
    by_conn.setdefault(r[0], []).append(r[2])
counts = sorted(len(v) for v in by_conn.values())
p99s = sorted(pct(sorted(v), 99) for v in by_conn.values())
print(f"connections {len(by_conn)}: answers each min {counts[0]} median {counts[len(counts) // 2]} max {counts[-1]}; "
      f"own p99 ms min {p99s[0] / 1e3:.2f} median {p99s[len(p99s) // 2] / 1e3:.2f} max {p99s[-1] / 1e3:.2f}")

gaps = [b - a for a, b in zip(ends, ends[1:])]
for limit in (2, 5, 10, 20):
    g = [x for x in gaps if x >= limit * 1e3]
    print(f"gaps without any answer >= {limit} ms: {len(g)} ({len(g) / span:.1f}/s), {sum(g) / 1e3:.0f} ms in all "
          f"({sum(g) / 1e4 / span:.2f}% of the time)")

# A commit round's writes are answered together: answers less than 1 ms apart form one burst. How long a burst takes
# to reach the client is the cost of answering a round's writes one after another.
bursts, first, last, n = [], ends[0], ends[0], 1
for e in ends[1:]:
    if e - last > 1000:
        bursts.append((n, last - first))
        first, n = e, 0
    last, n = e, n + 1
bursts.append((n, last - first))
sizes = sorted(b[0] for b in bursts)
spans = sorted(b[1] for b in bursts)
print(f"bursts of answers (< 1 ms apart): {len(bursts)}, answers each p50 {pct(sizes, 50)} p90 {pct(sizes, 90)} max {sizes[-1]}; "
      f"spread over ms p50 {pct(spans, 50) / 1e3:.2f} p90 {pct(spans, 90) / 1e3:.2f} p99 {pct(spans, 99) / 1e3:.2f}")

p99 = pct(lats, 99)
slow = [r for r in recs if r[2] >= p99]
shares = []
for r in slow:
    start, end = r[1], r[1] + r[2]
    others = bisect_left(ends, end) - bisect_right(ends, start)
    shares.append(others / (r[2] / 1e6 * rate))
shares.sort()
print(f"requests at or above the p99 ({len(slow)}): served while waiting, share of the mean rate: "
      f"p10 {pct(shares, 10):.2f} p50 {pct(shares, 50):.2f} p90 {pct(shares, 90):.2f}; "
      f"below 0.25 (waited through a stall): {sum(1 for s in shares if s < 0.25)}, "
      f"above 0.75 (others answered meanwhile): {sum(1 for s in shares if s > 0.75)}")
slow_conns = {}
for r in slow:
    slow_conns[r[0]] = slow_conns.get(r[0], 0) + 1
top = sorted(slow_conns.values(), reverse=True)
print(f"  they came from {len(slow_conns)} connections; the most from one: {top[:5]}")

bins = {}
for r in recs:
    b = int((r[1] + r[2]) // 100000)
    n, m = bins.get(b, (0, 0.0))
    bins[b] = (n + 1, max(m, r[2]))
counts_b = sorted(n for n, _ in bins.values())
print(f"100 ms bins by answers: min {counts_b[0]} median {counts_b[len(counts_b) // 2]} max {counts_b[-1]}; slowest bins (t s, answers, max ms):")
for b, (n, m) in sorted(bins.items(), key=lambda kv: -kv[1][1])[:8]:
    print(f"  {b / 10:7.1f} {n:6d} {m / 1e3:8.2f}")

if start_unix is None or not gc_files:
    sys.exit(0)
import datetime
day = datetime.datetime.fromtimestamp(start_unix, datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
pat = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d+) idx \d+ gen (\d) compacted (\w+) concurrent (\w+) pause ([\d.]+)\+([\d.]+) ms.*promoted (\d+) MiB")
for name, gc_path in gc_files:
    pauses = []  # (from_us, to_us) relative to the trace's start; the hook polls every 5 ms, so widened by 5 ms
    kinds = {}
    for line in open(gc_path):
        m = pat.match(line)
        if not m:
            continue
        h, mi, sec, gen, compacted, concurrent, p0, p1, promoted = m.groups()
        t = (day + int(h) * 3600 + int(mi) * 60 + float(sec) - start_unix) * 1e6
        if t < t_from or t > t_to + 1e6:
            continue
        pause = (float(p0) + float(p1)) * 1e3
        kind = f"gen{gen}{' bg' if concurrent == 'True' else ''}{' compacting' if compacted == 'True' and gen == '2' else ''}"
        n, total, prom = kinds.get(kind, (0, 0.0, 0))
        kinds[kind] = (n + 1, total + pause, prom + int(promoted))
        pauses.append((t - pause - 5e3, t, pause))
    hit = sum(1 for r in slow if any(a < r[1] + r[2] and b > r[1] for a, b, _ in pauses))
    worst = sorted((p for _, _, p in pauses), reverse=True)[:5]
    print(f"{name}: " + "; ".join(f"{k} x{n} pause {t / 1e3:.0f} ms promoted {p} MiB" for k, (n, t, p) in sorted(kinds.items()))
          + f"; longest pauses ms {[round(w / 1e3, 1) for w in worst]}; requests above the p99 overlapping a pause: {hit} of {len(slow)}")
