#!/usr/bin/env bash
# The logban engine following a growing file (as the daemon does): lines per second while an
# auth.log of LINES lines is appended at once, and ban latency percentiles (failure line
# written -> ban in the sink; the memory sink, so nftables' own time is not included), at the
# daemon's poll period (50 ms) and at 250 ms (its period before 2026-12-06).
#
# Usage: benches/scripts/logban-follow.sh [LINES] [BANS]
# Needs: fail2ban's filters (Debian package fail2ban), python3. Writes to $WORK (default
# target/bench-logban-follow).
set -euo pipefail
cd "$(dirname "$0")/../.."
LINES=${1:-1000000}
BANS=${2:-100}
WORK=${WORK:-target/bench-logban-follow}
mkdir -p "$WORK"
LOG="$WORK/auth-$LINES.log"
[ -s "$LOG" ] || python3 benches/scripts/gen-authlog.py "$LINES" > "$LOG"
cargo build --release -q -p hostguard-examples --bin logban-follow-bench
BIN="${CARGO_TARGET_DIR:-target}/release/logban-follow-bench"
for period in 50 250; do
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$BIN" --period-ms "$period" --bans "$BANS" "$LOG"
done
