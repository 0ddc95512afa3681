#!/usr/bin/env python3
"""Scale curve of scripts/bench-scale.sh: a markdown table and an SVG plot.

usage: plot-scale.py SCALE_DIR OUT.svg

Reads SCALE_DIR/rig.csv (the bench rig's CSV: end-to-end msg/s, relay CPU,
messages lost) and SCALE_DIR/RELAY-cC-rREP.json (`tlsrelay bench -json` of
the same run: failures and end-of-DATA -> 250 latency). Prints, per relay
and session count, the medians over repetitions of end-to-end msg/s and ack
p99 with their ranges, and the errors summed over repetitions; then, per
relay, whether throughput at the largest session count stays within 20 % of
its peak with no errors ("no collapse"). Writes OUT.svg: msg/s (left) and
ack p99 (right, log scale) against sessions (log scale). Standard library
only.
"""
import csv
import glob
import json
import math
import os
import re
import statistics
import sys

COLOURS = {"tlsrelay": "#1f77b4", "smtprelay": "#ff7f0e", "postfix": "#2ca02c"}


def load(d):
    """{(relay, c): [{"mps":, "p99":, "err":, "cpu":}, ...]} over repetitions."""
    rig = {}
    with open(os.path.join(d, "rig.csv"), newline="") as f:
        for row in csv.DictReader(f):
            relay = row["relay"]
            if relay == "cmd":  # relays/cmd.sh: the version column starts with RELAY_NAME
                relay = row["version"].split()[0]
            rig[(relay, int(row["c"]), row["rep"])] = row
    points = {}
    for path in sorted(glob.glob(os.path.join(d, "*-c*-r*.json"))):
        m = re.fullmatch(r"(.+)-c(\d+)-r(.+)\.json", os.path.basename(path))
        relay, c, rep = m.group(1), int(m.group(2)), m.group(3)
        row = rig.get((relay, c, rep))
        if row is None:
            sys.exit(f"plot-scale: {path} has no line in rig.csv")
        with open(path) as f:
            js = json.load(f)
        ok, sink, left = int(js["ok"]), int(row["sink_count"] or 0), int(row["queued_left"] or 0)
        points.setdefault((relay, c), []).append({
            # end to end, as the rig measures it; only when every message was
            # accepted and delivered (the rig writes 0 otherwise)
            "mps": float(row["e2e_mps"]) if int(js["failed"]) == 0 and sink >= int(row["n"]) else None,
            "acc": float(js["msg_per_s"]),  # accepted messages per second, at the client
            "p99": float(js["ack_latency_ms"]["p99"]),
            "cpu": float(row["relay_cpu_s"] or 0) / int(row["n"]) * 1000,
            "n": int(row["n"]),
            "err": int(js["failed"]),  # refused or broken sessions
            "lost": max(0, ok - sink - left)})  # acknowledged, neither delivered nor queued
    return points


def fmt(vals, digits):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    med = statistics.median(vals)
    if len(vals) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(vals):.{digits}f}-{max(vals):.{digits}f})"


def median_mps(p):
    """Median end-to-end msg/s over runs, or None if any run had errors."""
    vals = [x["mps"] for x in p]
    return None if None in vals else statistics.median(vals)


def table(points, relays, sessions):
    out = ["| relay | sessions | msg/s end to end | accepted msg/s | ack p99 ms | relay CPU ms/msg | refused | lost | runs |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in relays:
        for c in sessions:
            p = points.get((r, c))
            if not p:
                continue
            out.append(f"| {r} | {c} | {fmt([x['mps'] for x in p], 0)} | {fmt([x['acc'] for x in p], 0)} "
                       f"| {fmt([x['p99'] for x in p], 2)} | {fmt([x['cpu'] for x in p], 2)} "
                       f"| {sum(x['err'] for x in p)} | {sum(x['lost'] for x in p)} | {len(p)} |")
    out.append("")
    top = max(sessions)
    for r in relays:
        meds = {c: median_mps(points[(r, c)]) for c in sessions if (r, c) in points}
        if top not in meds:
            continue
        errs = sum(x["err"] + x["lost"] for c in sessions for x in points.get((r, c), []))
        good = {c: m for c, m in meds.items() if m is not None}
        if meds[top] is None or not good:
            sent = sum(x["n"] for x in points[(r, top)])
            out.append(f"- {r}: at {top} sessions {errs} messages refused or lost (of {sent:,} over the "
                       f"{len(points[(r, top)])} runs): a collapse by the issue's definition (errors)")
            continue
        peak_c = max(good, key=good.get)
        ratio = meds[top] / good[peak_c]
        verdict = "no collapse" if ratio >= 0.8 and errs == 0 else "COLLAPSE"
        out.append(f"- {r}: at {top} sessions {meds[top]:.0f} msg/s end to end = {ratio:.0%} of its peak "
                   f"({good[peak_c]:.0f} at {peak_c}), {errs} refused or lost: {verdict}")
    return "\n".join(out)


def svg(points, relays, sessions, path):
    W, H, M = 440, 300, 55  # one panel; margins
    xs = [math.log10(c) for c in sessions]
    x0, x1 = min(xs), max(xs)
    def px(c, left):
        return left + M + (math.log10(c) - x0) / ((x1 - x0) or 1) * (W - 2 * M)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H + 30}" '
             'font-family="sans-serif" font-size="11">', f'<rect width="{2 * W}" height="{H + 30}" fill="white"/>']
    panels = [("mps", "msg/s end to end (median; runs with errors left out)", False), ("p99", "ack p99, ms (log scale)", True)]
    for i, (key, title, logy) in enumerate(panels):
        left = i * W
        meds = {}
        for r in relays:
            for c in sessions:
                m = median_mps(points[(r, c)]) if key == "mps" and (r, c) in points else None
                if key != "mps" and (r, c) in points:
                    m = statistics.median([x[key] for x in points[(r, c)]])
                if m is not None:
                    meds[(r, c)] = m
        vals = [v for v in meds.values() if v > 0]
        if logy:
            lo, hi = math.floor(math.log10(min(vals))), math.ceil(math.log10(max(vals)))
            ticks = [10 ** e for e in range(lo, hi + 1)]
            def py(v):
                return H - M + 10 - (math.log10(max(v, 10 ** lo)) - lo) / ((hi - lo) or 1) * (H - 2 * M)
        else:
            step = 10 ** math.floor(math.log10(max(vals))) / 2
            hi = math.ceil(max(vals) / step) * step
            ticks = [k * step for k in range(int(hi / step) + 1)]
            def py(v):
                return H - M + 10 - v / hi * (H - 2 * M)
        parts.append(f'<text x="{left + W / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>')
        parts.append(f'<line x1="{left + M}" y1="{py(ticks[0])}" x2="{left + W - M}" y2="{py(ticks[0])}" stroke="black"/>')
        parts.append(f'<line x1="{left + M}" y1="{py(ticks[0])}" x2="{left + M}" y2="{py(ticks[-1])}" stroke="black"/>')
        for t in ticks:
            parts.append(f'<line x1="{left + M}" y1="{py(t):.1f}" x2="{left + W - M}" y2="{py(t):.1f}" stroke="#ddd"/>')
            parts.append(f'<text x="{left + M - 4}" y="{py(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
        for c in sessions:
            parts.append(f'<text x="{px(c, left):.1f}" y="{py(ticks[0]) + 15:.1f}" text-anchor="middle">{c}</text>')
        parts.append(f'<text x="{left + W / 2}" y="{H}" text-anchor="middle">concurrent sessions (log scale)</text>')
        for r in relays:
            pts = [(px(c, left), py(meds[(r, c)])) for c in sessions if (r, c) in meds]
            line = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            parts.append(f'<polyline points="{line}" fill="none" stroke="{COLOURS.get(r, "black")}" stroke-width="2"/>')
            for x, y in pts:
                parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLOURS.get(r, "black")}"/>')
    left_out = [f"{r} at {c}" for r in relays for c in sessions
                if (r, c) in points and median_mps(points[(r, c)]) is None]
    if left_out:
        parts.append(f'<text x="{W / 2}" y="34" text-anchor="middle" fill="#555">'
                     f'left out, sessions refused: {", ".join(left_out)}</text>')
    for k, r in enumerate(relays):
        x = 2 * W / 2 - 150 + k * 110
        parts.append(f'<rect x="{x}" y="{H + 12}" width="12" height="4" fill="{COLOURS.get(r, "black")}"/>')
        parts.append(f'<text x="{x + 16}" y="{H + 18}">{r}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    points = load(sys.argv[1])
    if not points:
        sys.exit("plot-scale: no points in " + sys.argv[1])
    order = ["tlsrelay", "smtprelay", "postfix"]
    relays = [r for r in order if any(k[0] == r for k in points)] + sorted({k[0] for k in points} - set(order))
    sessions = sorted({k[1] for k in points})
    print(table(points, relays, sessions))
    svg(points, relays, sessions, sys.argv[2])


if __name__ == "__main__":
    main()
