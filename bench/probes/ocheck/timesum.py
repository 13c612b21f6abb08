#!/usr/bin/env python3
"""Medians and spread per binary from timing.log."""
import re, sys, statistics, collections
vals = collections.defaultdict(lambda: collections.defaultdict(list))
tag = None
for line in open(sys.argv[1] if len(sys.argv) > 1 else "timing.log"):
    m = re.match(r"== (\S+) round (\d+) (\w+)", line)
    if m:
        tag = m.group(1); continue
    m = re.match(r"\s+(\d+) \|\s+([\d.]+) \|\s+([\d.]+) \|\s+([\d.]+)", line)
    if m and tag:
        vals[f"decode tokens/s, batch {m.group(1)} (decode only)"][tag].append(float(m.group(3))); continue
    m = re.match(r"(N=\d+ \d+→\d+)\s+(\w+)\s+([\d.]+) (ms|µs)", line)
    if m and tag:
        t = float(m.group(3)) * (1e-3 if m.group(4) == "µs" else 1)
        vals[f"linear {m.group(1)} {m.group(2)} (ms per call)"][tag].append(t); continue
    m = re.match(r"\s+(\w+) N=(\d+): ([\d.]+) ms per step → (≤)?", line)
    if m and tag:
        kind = "linear stack" if m.group(4) else "whole decode step"
        vals[f"opt-125m {kind} {m.group(1)} N={m.group(2)} (ms per step)"][tag].append(float(m.group(3)))
tags = []
for k in vals:
    for t in vals[k]:
        if t not in tags: tags.append(t)
ref = tags[-1]
print(f"{'measure':52} " + " ".join(f"{t + ' median [min–max] (n)':>30}" for t in tags) + "   " + " ".join(f"{t}/{ref}" for t in tags[:-1]))
for k, d in vals.items():
    cells = []
    for t in tags:
        v = d.get(t, [])
        cells.append(f"{statistics.median(v):.3f} [{min(v):.3f}–{max(v):.3f}] ({len(v)})" if v else "-")
    ratios = []
    for t in tags[:-1]:
        if d.get(t) and d.get(ref):
            ratios.append(f"{statistics.median(d[t]) / statistics.median(d[ref]):.3f}")
    print(f"{k:52} " + " ".join(f"{c:>30}" for c in cells) + "   " + " ".join(f"{r:>9}" for r in ratios))
