#!/usr/bin/env python3
"""Turns one compare.sh results directory into a side-by-side table (table.txt), summary.json and chart.svg.

Usage: python3 bench/report.py bench/results/<run>
Standard library only.
"""
import csv
import json
import math
import statistics
import sys
from pathlib import Path

SYSTEMS = ["etcd", "dotnext", "stcache", "baseline"]
COLORS = {"etcd": "#4c78a8", "dotnext": "#54a24b", "stcache": "#e45756", "baseline": "#9d9d9d"}
WORKLOAD_NAMES = {
    "puts": "100% writes, 100 B",
    "gets": "100% linearizable reads",
    "mix-90-10": "90% reads / 10% writes",
    "puts-1k": "100% writes, 1 KiB",
    "stale-gets": "100% stale/serializable reads",
}


def read_csv(path):
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def http_targets(results):
    """Issue 16's targets, each MET, MISSED or n/a (a row this run lacks), from one run's rows."""
    def row(workload, conns, system):
        return results.get((workload, conns, system))

    def value(workload, conns, system, field="ops_per_second"):
        r = row(workload, conns, system)
        return float(r[field]) if r else None

    def check(name, v, goal, met):
        if v is None or goal is None:
            return (name, v, goal, "n/a")
        return (name, v, goal, "MET" if met(v, goal) else "MISSED")

    if not any(k[2] == "stcache" for k in results):
        return []
    at_least = lambda v, g: v >= g
    at_most = lambda v, g: v <= g
    out = []
    base_stale = value("stale-gets", 64, "baseline")
    out.append(check("stale reads ops/s >= 95% of the baseline's", value("stale-gets", 64, "stcache"),
                     base_stale * 0.95 if base_stale else None, at_least))
    dn_lin = value("gets", 64, "dotnext")
    out.append(check("linearizable reads ops/s >= 1.5 x DotNext's", value("gets", 64, "stcache"),
                     dn_lin * 1.5 if dn_lin else None, at_least))
    base_lin = value("gets", 64, "baseline")
    out.append(check("linearizable reads ops/s >= 70% of the baseline's GET", value("gets", 64, "stcache"),
                     base_lin * 0.70 if base_lin else None, at_least))
    dn_put = value("puts", 64, "dotnext")
    out.append(check("writes ops/s >= 3 x DotNext's", value("puts", 64, "stcache"), dn_put * 3 if dn_put else None, at_least))
    out.append(check("writes ops/s >= 30,000", value("puts", 64, "stcache"), 30000.0, at_least))
    for workload, conns in sorted({(w, c) for (w, c, s) in results if s == "stcache"}, key=lambda k: (list(WORKLOAD_NAMES).index(k[0]) if k[0] in WORKLOAD_NAMES else 99, k[1])):
        dn = row(workload, conns, "dotnext")
        # A DotNext row with errors, or with no request answered, sets no p99 to meet: its failed requests are not
        # in its latencies.
        goal = float(dn["p99_ms"]) if dn and int(dn["errors"]) == 0 and float(dn["ops_per_second"]) > 0 else None
        out.append(check(f"p99 ms <= DotNext's: {WORKLOAD_NAMES.get(workload, workload)}, {conns} connections",
                         value(workload, conns, "stcache", "p99_ms"), goal, at_most))
    out.append(check("one connection: write p50 ms <= 0.5", value("puts", 1, "stcache", "p50_ms"), 0.5, at_most))
    return out


def main(run):
    rows = read_csv(run / "results.csv")
    failover = read_csv(run / "failover.csv")
    memory = read_csv(run / "memory.csv")
    machine = (run / "machine.txt").read_text() if (run / "machine.txt").exists() else ""

    results = {}
    for r in rows:
        results[(r["workload"], int(r["connections"]), r["system"])] = r
    # A system counts as present with any figure at all (PARTS may have skipped the workloads).
    present = [s for s in SYSTEMS if any(k[2] == s for k in results) or any(r["system"] == s for r in failover + memory)]
    keys = sorted({(w, c) for (w, c, _) in results}, key=lambda k: (list(WORKLOAD_NAMES).index(k[0]) if k[0] in WORKLOAD_NAMES else 99, k[1]))

    lines = []
    header = f"{'workload':<32}{'conns':>6}"
    for s in present:
        header += f" | {s + ' ops/s':>15}{'p50 ms':>9}{'p99 ms':>9}{'err':>6}"
    header += " | stcache/etcd  stcache/dotnext  stcache/baseline"
    lines.append(header)
    lines.append("-" * len(header))
    for workload, conns in keys:
        line = f"{WORKLOAD_NAMES.get(workload, workload):<32}{conns:>6}"
        ops = {}
        for s in present:
            r = results.get((workload, conns, s))
            if r:
                ops[s] = float(r["ops_per_second"])
                line += f" | {float(r['ops_per_second']):>15,.0f}{float(r['p50_ms']):>9.2f}{float(r['p99_ms']):>9.2f}{int(r['errors']):>6}"
            else:
                line += f" | {'-':>15}{'-':>9}{'-':>9}{'-':>6}"
        line += f" | {ratio(ops.get('stcache'), ops.get('etcd')):>12}  {ratio(ops.get('stcache'), ops.get('dotnext')):>15}  {ratio(ops.get('stcache'), ops.get('baseline')):>16}"
        lines.append(line)

    summary = {"machine": dict(l.split("=", 1) for l in machine.splitlines() if "=" in l), "results": rows, "failover": {}, "memory": {}}
    lines.append("")
    lines.append("failover: kill -9 of the leader until the next acknowledged write")
    for s in present:
        times = [int(r["ms"]) for r in failover if r["system"] == s and r["ms"]]
        failed = sum(1 for r in failover if r["system"] == s and not r["ms"])
        if times or failed:
            median = statistics.median(times) if times else None
            summary["failover"][s] = {"runs_ms": times, "median_ms": median, "max_ms": max(times) if times else None, "failed": failed}
            lines.append(f"  {s:<10} n={len(times)} median {median:.0f} ms, max {max(times)} ms, min {min(times)} ms" + (f", {failed} without a write in 30 s" if failed else "")
                         if times else f"  {s:<10} {failed} runs without a write in 30 s")
    lines.append("")
    lines.append("memory: RSS of each node after loading the keys (100 B values)")
    for s in present:
        nodes = [r for r in memory if r["system"] == s]
        if nodes:
            summary["memory"][s] = [{"node": int(r["node"]), "keys": int(r["keys"]), "rss_kib": int(r["rss_kib"])} for r in nodes]
            lines.append(f"  {s:<10} keys={nodes[0]['keys']}: " + ", ".join(f"node {r['node']} {int(r['rss_kib']) / 1024:.0f} MiB" for r in nodes))

    targets = http_targets(results)
    if targets:
        summary["targets"] = [{"target": name, "value": value, "goal": goal, "state": state} for name, value, goal, state in targets]
        lines.append("")
        lines.append("targets (issue 16; 64 connections unless named; a target needs both systems' rows in this run)")
        for name, value, goal, state in targets:
            shown = "-" if value is None else f"{value:,.2f}"
            wanted = "-" if goal is None else f"{goal:,.2f}"
            lines.append(f"  {state:<7} {name}: {shown} (goal {wanted})")

    table = "\n".join(lines)
    print(table)
    (run / "table.txt").write_text(table + "\n")
    (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (run / "chart.svg").write_text(chart(results, present))


def chart(results, present):
    """Two panels: write throughput and write p99 latency against connections, one line per system."""
    conns = sorted({c for (w, c, _) in results if w == "puts"})
    width, height, pad_left, pad_top, panel_w, panel_h, gap = 980, 420, 70, 50, 380, 280, 110
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">100% writes, 100 B values, 3 nodes on loopback (wrk)</text>']
    if not conns:
        out.append('<text x="40" y="80">no write results</text></svg>')
        return "\n".join(out)

    def panel(index, title, metric, log_scale, unit):
        x0 = pad_left + index * (panel_w + gap)
        y0 = pad_top
        values = [float(results[("puts", c, s)][metric]) for s in present for c in conns if ("puts", c, s) in results]
        top = max(values) * 1.1 if values else 1
        bottom = min(v for v in values if v > 0) / 1.5 if log_scale and values else 0

        def y_of(v):
            if log_scale:
                v = max(v, bottom)
                return y0 + panel_h - (math.log10(v) - math.log10(bottom)) / (math.log10(top) - math.log10(bottom)) * panel_h
            return y0 + panel_h - v / top * panel_h

        def x_of(i):
            return x0 + (i + 0.5) * panel_w / len(conns)

        out.append(f'<text x="{x0 + panel_w / 2}" y="{y0 - 10}" text-anchor="middle" font-size="13">{title}</text>')
        out.append(f'<rect x="{x0}" y="{y0}" width="{panel_w}" height="{panel_h}" fill="none" stroke="#333"/>')
        ticks = []
        if log_scale:
            e = math.floor(math.log10(bottom))
            while 10 ** e <= top:
                for m in (1, 2, 5):
                    if bottom <= m * 10 ** e <= top:
                        ticks.append(m * 10 ** e)
                e += 1
        else:
            step = 10 ** math.floor(math.log10(top / 5)) if top > 0 else 1
            for mult in (1, 2, 5, 10):
                if top / (step * mult) <= 6:
                    step *= mult
                    break
            ticks = [i * step for i in range(0, int(top / step) + 1)]
        for t in ticks:
            y = y_of(t)
            label = f"{t:,.0f}" if t >= 1 else f"{t:g}"
            out.append(f'<line x1="{x0}" x2="{x0 + panel_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
        for i, c in enumerate(conns):
            out.append(f'<text x="{x_of(i):.1f}" y="{y0 + panel_h + 18}" text-anchor="middle">{c}</text>')
        out.append(f'<text x="{x0 + panel_w / 2}" y="{y0 + panel_h + 38}" text-anchor="middle">connections</text>')
        out.append(f'<text x="{x0 - 55}" y="{y0 + panel_h / 2}" text-anchor="middle" transform="rotate(-90 {x0 - 55} {y0 + panel_h / 2})">{unit}</text>')
        for s in present:
            points = [(x_of(i), y_of(float(results[("puts", c, s)][metric]))) for i, c in enumerate(conns) if ("puts", c, s) in results]
            if not points:
                continue
            out.append(f'<polyline fill="none" stroke="{COLORS[s]}" stroke-width="2.5" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in points)}"/>')
            for x, y in points:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{COLORS[s]}"/>')

    panel(0, "throughput (acknowledged writes/s)", "ops_per_second", False, "ops/s")
    panel(1, "p99 latency (log scale)", "p99_ms", True, "ms")
    for i, s in enumerate(present):
        x = pad_left + i * 150
        out.append(f'<rect x="{x}" y="{height - 22}" width="14" height="4" fill="{COLORS[s]}"/>')
        out.append(f'<text x="{x + 20}" y="{height - 16}">{s}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
