#!/usr/bin/env python3
"""Checks that logban-regex and fail2ban-regex found the same failures, and sums up the runs.

Usage: compare-fail2ban-rows.py LOGBAN_JSONL FAIL2BAN_ROWS RUNS_TXT LABEL

LOGBAN_JSONL is `logban-regex --json` output, FAIL2BAN_ROWS is `fail2ban-regex -o row` output:
the failures must be the same, line by line (address and time). RUNS_TXT holds one
`tool wall_seconds max_rss_kib` line per run. Prints a Markdown table; exits 1 on a mismatch.
"""
import ast
import json
import statistics
import sys

ours_path, theirs_path, runs_path, label = sys.argv[1:5]
ours = []
for line in open(ours_path):
    v = json.loads(line)
    if "summary" in v:
        continue
    ours.append((v["id"], float(v["time"])))
theirs = []
for line in open(theirs_path):
    line = line.strip().rstrip(",")
    if not line.startswith("["):
        continue
    row = ast.literal_eval(line.replace("\t", " "))
    theirs.append((str(row[0]), float(row[1])))
diff = [(i, a, b) for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
if len(ours) != len(theirs) or diff:
    print(f"MISMATCH ({label}): logban {len(ours)} failures, fail2ban {len(theirs)}; first differences: {diff[:5]}")
    sys.exit(1)
runs = {}
for line in open(runs_path):
    name, wall, rss = line.split()
    runs.setdefault(name, []).append((float(wall), int(rss)))
med = {n: (statistics.median(w for w, _ in r), statistics.median(m for _, m in r)) for n, r in runs.items()}
lw, lm = med["logban"]
fw, fm = med["fail2ban"]
print(f"{label}: same failures: {len(ours)} (address and time, line by line)")
print("| tool | wall (median of %d) | peak RSS |" % len(runs["logban"]))
print("|---|---|---|")
print(f"| logban-regex ({label}) | {lw:.2f} s | {lm/1024:.0f} MiB |")
print(f"| fail2ban-regex 1.0.2 ({label}) | {fw:.2f} s | {fm/1024:.0f} MiB |")
print(f"ratio: {fw/lw:.1f}x faster, {fm/lm:.1f}x less memory")
print("runs (wall s, RSS KiB):", {n: r for n, r in runs.items()})
