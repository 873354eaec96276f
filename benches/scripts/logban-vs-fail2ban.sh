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

python3 benches/scripts/compare-fail2ban-rows.py "$WORK/logban.jsonl" "$WORK/fail2ban.rows" \
  "$WORK/runs.txt" sshd
echo "load averages during the runs: $(cut -d' ' -f2 "$WORK/load.txt" | tr '\n' ' ')"
