#!/usr/bin/env bash
# Where logban-regex spends its time per line: perf over the first LINES lines of LOG through
# FILTER on one thread, reported as the share of samples (including callees) of the parts of
# the per-line path, and the top functions by their own time.
#
# Usage: benches/scripts/logban-profile.sh FILTER LOG [LINES] [BIN]
#   BIN defaults to the release logban-regex (built here); pass another build to compare.
# Needs: perf (Debian package linux-perf), fail2ban's filters.
set -euo pipefail
cd "$(dirname "$0")/../.."
FILTER=$1
LOG=$2
LINES=${3:-200000}
FILTER_DIR=${FAIL2BAN_FILTER_DIR:-/etc/fail2ban/filter.d}
WORK=${WORK:-target/bench-logban-profile}
mkdir -p "$WORK"
if [ -n "${4:-}" ]; then
  BIN=$4
else
  cargo build --release -q -p hostguard-examples --bin logban-regex
  BIN="${CARGO_TARGET_DIR:-target}/release/logban-regex"
fi
head -n "$LINES" "$LOG" > "$WORK/prefix.log"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "%e s wall, %U s user, %M KiB peak" \
  "$BIN" --threads 1 --json --filter-dir "$FILTER_DIR" "$WORK/prefix.log" "$FILTER" > /dev/null
perf record -q -F 1999 --call-graph dwarf,16384 -o "$WORK/perf.data" -- \
  "$BIN" --threads 1 --json --filter-dir "$FILTER_DIR" "$WORK/prefix.log" "$FILTER" > /dev/null 2>&1
perf report -i "$WORK/perf.data" --children --stdio -g none --percent-limit 0.5 \
  --sort symbol 2>/dev/null | grep -v '^#' | grep -v '^$' > "$WORK/children.txt"
echo "share of samples including callees (parts of the per-line path):"
for part in 'DateDetector::find' 'Screen::verdict' 'find_failures' 'Linear::captures' \
            'fancy_regex' 'FailSet::candidates' 'fields_to_time' 'malloc' 'free' 'print_match' \
            'from_utf8_lossy' 'buffer_text'; do
  share=$( (grep -F "$part" "$WORK/children.txt" || true) | head -1 | awk '{print $1}')
  printf '  %-22s %s\n' "$part" "${share:--}"
done
echo "top functions by own time:"
perf report -i "$WORK/perf.data" --no-children --stdio -g none --percent-limit 2 --sort symbol \
  2>/dev/null | grep -v '^#' | grep -v '^$' | head -15
