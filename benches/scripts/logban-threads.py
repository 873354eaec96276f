#!/usr/bin/env python3
"""Two logban-regex binaries alternated, on one thread and on all cores.

    logban-threads.py [--runs N] OLD_BIN NEW_BIN FILTER=LOG [FILTER=LOG ...]

Runs `BIN --json [--threads 1] --filter-dir $FAIL2BAN_FILTER_DIR LOG FILTER` for each
filter and log, the old and the new binary one after the other, N times (3 by default), and
prints each run's wall time, user and system CPU and peak RSS, and their medians. On a
machine shared with other work, alternating keeps the two binaries under the same load, and
user CPU is the steadier figure; the load averages are printed at the end.
"""

import os
import statistics
import subprocess
import sys
import time


def run(cmd):
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    if status != 0:
        sys.exit(f"{' '.join(cmd)}: exit status {status}")
    return wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss


def main():
    args = sys.argv[1:]
    runs = 3
    if args[:1] == ["--runs"]:
        runs = int(args[1])
        args = args[2:]
    if len(args) < 3:
        sys.exit(__doc__)
    old, new, pairs = args[0], args[1], args[2:]
    filter_dir = os.environ.get("FAIL2BAN_FILTER_DIR", "/etc/fail2ban/filter.d")
    configs = []
    for pair in pairs:
        name, log = pair.split("=", 1)
        for threads in (["--threads", "1"], []):
            for label, binary in (("old", old), ("new", new)):
                cmd = [binary, "--json", *threads, "--filter-dir", filter_dir, log, name]
                tag = f"{label} {name} {'t1' if threads else 'default'}"
                configs.append((tag, cmd))
    results = {tag: [] for tag, _ in configs}
    for _ in range(runs):
        for tag, cmd in configs:
            results[tag].append(run(cmd))
    print("| run | wall (median) | user | sys | peak RSS | runs (wall / user s) |")
    print("|---|---|---|---|---|---|")
    for tag, _ in configs:
        r = results[tag]
        med = [statistics.median(x[i] for x in r) for i in range(3)]
        rss = max(x[3] for x in r) / 1024
        each = ", ".join(f"{x[0]:.2f}/{x[1]:.2f}" for x in r)
        print(f"| {tag} | {med[0]:.2f} s | {med[1]:.2f} s | {med[2]:.2f} s | {rss:.0f} MiB | {each} |")
    print("load averages after the runs:", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
