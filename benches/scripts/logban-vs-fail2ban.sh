#!/usr/bin/env bash
# logban-regex vs fail2ban-regex: the stock sshd filter over the same 1,000,000-line auth.log,
# whole process, alternating runs, medians of wall time and peak RSS (/usr/bin/time -v).
# The failures found must be the same, line by line (address and time) against
# `fail2ban-regex -o row`.
#
# Usage: benches/scripts/logban-vs-fail2ban.sh [LINES] [RUNS]
# Needs: fail2ban (Debian package), python3, /usr/bin/time. Writes to $WORK (default
# target/bench-logban) and prints a Markdown table for benches/results/logban.md.
# The log comes from benches/scripts/gen-authlog.py (a byte-identical copy of
# shared/bench/gen-authlog.py, the project's shared deterministic generator).
set -euo pipefail
cd "$(dirname "$0")/../.."
LINES=${1:-1000000}
RUNS=${2:-3}
FILTER_DIR=${FAIL2BAN_FILTER_DIR:-/etc/fail2ban/filter.d}
WORK=${WORK:-target/bench-logban}
mkdir -p "$WORK"
LOG="$WORK/auth-$LINES.log"
[ -s "$LOG" ] || python3 benches/scripts/gen-authlog.py "$LINES" > "$LOG"

cargo build --release -q -p hostguard-examples --bin logban-regex
BIN="${CARGO_TARGET_DIR:-target}/release/logban-regex"

measure() { # name, output file, command...
  local name=$1 out=$2; shift 2
  /usr/bin/time -v "$@" > "$out" 2> "$WORK/$name.time"
  local wall rss
  wall=$(grep "Elapsed (wall clock)" "$WORK/$name.time" | awk '{print $NF}' \
    | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(grep "Maximum resident set size" "$WORK/$name.time" | awk '{print $NF}')
  echo "$name $wall $rss" >> "$WORK/runs.txt"
}

rm -f "$WORK/runs.txt" "$WORK/load.txt"
for _ in $(seq "$RUNS"); do
  measure logban "$WORK/logban.jsonl" "$BIN" --json --filter-dir "$FILTER_DIR" "$LOG" sshd
  echo "load $(cut -d' ' -f1 /proc/loadavg)" >> "$WORK/load.txt"
  measure fail2ban "$WORK/fail2ban.rows" fail2ban-regex -o row "$LOG" "$FILTER_DIR/sshd.conf"
done

python3 - "$WORK" <<'PY'
import ast, json, statistics, sys
work = sys.argv[1]
ours = []
for line in open(f"{work}/logban.jsonl"):
    v = json.loads(line)
    if "summary" in v:
        continue
    ours.append((v["id"], float(v["time"])))
theirs = []
for line in open(f"{work}/fail2ban.rows"):
    line = line.strip().rstrip(",")
    if not line.startswith("["):
        continue
    row = ast.literal_eval(line.replace("\t", " "))
    theirs.append((str(row[0]), float(row[1])))
diff = [(i, a, b) for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
if len(ours) != len(theirs) or diff:
    print(f"MISMATCH: logban {len(ours)} failures, fail2ban {len(theirs)}; first differences: {diff[:5]}")
    sys.exit(1)
runs = {}
for line in open(f"{work}/runs.txt"):
    name, wall, rss = line.split()
    runs.setdefault(name, []).append((float(wall), int(rss)))
med = {n: (statistics.median(w for w, _ in r), statistics.median(m for _, m in r)) for n, r in runs.items()}
lw, lm = med["logban"]
fw, fm = med["fail2ban"]
print(f"same failures: {len(ours)} (address and time, line by line)")
print("| tool | wall (median of %d) | peak RSS |" % len(runs["logban"]))
print("|---|---|---|")
print(f"| logban-regex (sshd) | {lw:.2f} s | {lm/1024:.0f} MiB |")
print(f"| fail2ban-regex 1.0.2 (sshd) | {fw:.2f} s | {fm/1024:.0f} MiB |")
print(f"ratio: {fw/lw:.1f}x faster, {fm/lm:.1f}x less memory")
print("runs (wall s, RSS KiB):", {n: r for n, r in runs.items()})
print("load averages during the runs:", " ".join(l.split()[1] for l in open(f"{work}/load.txt")))
PY
