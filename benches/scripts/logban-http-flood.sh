#!/usr/bin/env bash
# logban-regex vs fail2ban-regex on an HTTP flood: nginx access and error logs of LINES lines
# each from benches/scripts/gen-nginx-logs.py (deterministic), through the stock
# nginx-botsearch (both logs), nginx-limit-req and nginx-http-auth (error log) and
# apache-badbots (access log) filters. Whole process, runs alternated, medians of wall time and
# peak RSS (/usr/bin/time); the failures must be the same, line by line, as
# `fail2ban-regex -o row` (benches/scripts/compare-fail2ban-rows.py checks).
#
# Usage: benches/scripts/logban-http-flood.sh [LINES] [RUNS]
# Needs: fail2ban (Debian package), python3, /usr/bin/time. Writes to $WORK (default
# target/bench-logban-http) and prints Markdown tables for benches/results/logban-http.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
LINES=${1:-1000000}
RUNS=${2:-3}
FILTER_DIR=${FAIL2BAN_FILTER_DIR:-/etc/fail2ban/filter.d}
WORK=${WORK:-target/bench-logban-http}
mkdir -p "$WORK"
LOGS="$WORK/logs-$LINES"
[ -s "$LOGS/error.log" ] || python3 benches/scripts/gen-nginx-logs.py "$LINES" "$LOGS"

cargo build --release -q -p hostguard-examples --bin logban-regex
BIN="${CARGO_TARGET_DIR:-target}/release/logban-regex"

measure() { # runs file, name, output file, command...
  local runs=$1 name=$2 out=$3; shift 3
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" > "$out"
  echo "$name $(cat "$WORK/time.txt")" >> "$runs"
}

status=0
for pair in nginx-botsearch:access nginx-botsearch:error nginx-limit-req:error \
            nginx-http-auth:error apache-badbots:access; do
  filter=${pair%%:*} log="$LOGS/${pair##*:}.log" label="$filter on ${pair##*:}.log"
  runs="$WORK/runs-$filter-${pair##*:}.txt"
  rm -f "$runs"
  for _ in $(seq "$RUNS"); do
    measure "$runs" logban "$WORK/logban.jsonl" "$BIN" --json --filter-dir "$FILTER_DIR" "$log" "$filter"
    measure "$runs" fail2ban "$WORK/fail2ban.rows" fail2ban-regex -o row "$log" "$FILTER_DIR/$filter.conf"
  done
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  python3 benches/scripts/compare-fail2ban-rows.py "$WORK/logban.jsonl" "$WORK/fail2ban.rows" "$runs" "$label" || status=1
  echo
done
exit $status
