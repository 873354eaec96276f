#!/usr/bin/env bash
# Kill campaign for `backup prune` (issue 12): prune killed with SIGKILL at POINTS instants spread
# evenly over a timed uninterrupted prune; after each kill `check --read-data` must pass, every
# kept snapshot must restore byte-identical to its source, and a rerun of prune must complete and
# leave no unindexed pack (the garbage of the killed run reclaimed). The short form of this loop
# (6 points, small data) is examples/tests/backup_prune.rs.
#
#   bash benches/scripts/backup-kill-prune.sh [POINTS] [WORKDIR]
#
# Data: the target's standard library rlibs of the Rust toolchain (the sysroot that the backup
# benchmark uses, 159 MiB) and five successors made by mutate-tree.py (30 % of the files modified
# each time, seeds 1..5), each backed up as its own path; then `forget --group-by '' --keep-last 3`
# drops the first three, and a backup of a large file is killed part-way (its packs are garbage
# for prune to reclaim). Each point prunes a fresh copy of that repository with --max-unused 0%,
# so that it both deletes and repacks. Prints one markdown row per point.
# Needs: cargo build --release -p hostguard-examples --bin backup
set -euo pipefail
cd "$(dirname "$0")/../.."
points=${1:-24}
work=${2:-/var/tmp/backup-kill-prune}
bin=${BACKUP_BIN:-${CARGO_TARGET_DIR:-target}/release/backup}
src=${BENCH_SRC:-$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/lib}
export BACKUP_PASSWORD=kill
mkdir -p "$work"
template="$work/template"

if [ ! -f "$work/template.done" ]; then
  rm -rf "$template" "$work"/v*
  cp -a "$src" "$work/v0"
  for v in 1 2 3 4 5; do
    python3 benches/scripts/mutate-tree.py "$work/v$((v - 1))" "$work/v$v" 0.3 "$v" >/dev/null
  done
  "$bin" -r "$template" init >/dev/null
  for v in 0 1 2 3 4 5; do "$bin" -r "$template" backup "$work/v$v" >/dev/null; done
  "$bin" -r "$template" forget --group-by '' --keep-last 3 >/dev/null
  mkdir -p "$work/big"
  head -c $((200 << 20)) /dev/urandom >"$work/big/f"
  packs() { find "$template/data" -type f ! -name '*#*' | wc -l; }
  before=$(packs)
  "$bin" -r "$template" backup "$work/big" >/dev/null 2>&1 &
  killer=$!
  while [ "$(packs)" -lt $((before + 5)) ]; do sleep 0.05; done
  kill -9 "$killer" 2>/dev/null || true
  wait "$killer" 2>/dev/null || true
  rm -rf "$work/big"
  touch "$work/template.done"
fi

# Every snapshot restores byte-identical to the tree it was taken of.
restores() {
  local repo=$1 ok=0 id path
  while read -r id path; do
    rm -rf "$work/restore"
    "$bin" -r "$repo" restore "$id" --target "$work/restore" >/dev/null 2>&1 || return 1
    diff -r --no-dereference "$path" "$work/restore/$(basename "$path")" >/dev/null || return 1
    ok=$((ok + 1))
  done < <("$bin" -r "$repo" --json snapshots | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    print(s["id"], s["paths"][0])')
  rm -rf "$work/restore"
  echo "$ok"
}

# check --read-data passes (exit 0); with "clean", no pack is unindexed either.
checks() {
  local repo=$1 clean=${2:-}
  "$bin" -r "$repo" --json check --read-data >"$work/check.json" 2>"$work/check.err" || return 1
  [ -z "$clean" ] || python3 -c '
import json, sys
sys.exit(1 if json.load(open(sys.argv[1]))["unindexed_packs"] else 0)' "$work/check.json"
}

# The shortest of three uninterrupted prunes: the kills are spread over it.
whole=
for _ in 1 2 3; do
  rm -rf "$work/timing"; cp -a "$template" "$work/timing"; sync
  start=$(date +%s.%N)
  "$bin" -r "$work/timing" prune --max-unused 0% >"$work/prune-timing.txt"
  took=$(echo "$(date +%s.%N) - $start" | bc)
  if [ -z "$whole" ] || [ "$(echo "$took < $whole" | bc)" = 1 ]; then whole=$took; fi
done
rm -rf "$work/timing"
echo "uninterrupted prune (shortest of 3): ${whole} s ($(grep -E 'delete|repack' "$work/prune-timing.txt" | head -1))"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| point | killed after (s) | finished before the kill | check --read-data | snapshots restored identical | rerun | check after rerun (no unindexed pack) |"
echo "|---|---|---|---|---|---|---|"
failures=0
interrupted=0
for point in $(seq 0 $((points - 1))); do
  delay=$(echo "scale=3; $whole * $point / $points" | bc)
  repo="$work/repo"
  rm -rf "$repo"; cp -a "$template" "$repo"
  "$bin" -r "$repo" prune --max-unused 0% >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null || true
  finished=no
  wait "$pid" 2>/dev/null && finished=yes
  [ "$finished" = yes ] || interrupted=$((interrupted + 1))
  c1=pass; checks "$repo" || c1=FAIL
  r=$(restores "$repo") || r=FAIL
  rerun=pass; "$bin" -r "$repo" prune --max-unused 0% >/dev/null 2>&1 || rerun=FAIL
  c2=pass; checks "$repo" clean || c2=FAIL
  r2=$(restores "$repo") || r2=FAIL
  [ "$c1$rerun$c2" = passpasspass ] && [ "$r" != FAIL ] && [ "$r2" != FAIL ] || failures=$((failures + 1))
  echo "| $point | $delay | $finished | $c1 | $r, after rerun $r2 | $rerun | $c2 |"
done
rm -rf "$work/repo"
echo
echo "points: $points, killed before finishing: $interrupted, failures: $failures"
[ "$failures" -eq 0 ]
