#!/usr/bin/env bash
# Two builds of `backup` against each other on one tree (A/B, interleaved, order alternating
# each run): cold backup, unchanged re-backup and full restore (to tmpfs), each timed step after
# `sync` and a re-read of what it reads. For telling whether a change made a step slower on a
# machine too loaded for absolute figures.
#
#   bash benches/scripts/backup-ab.sh BIN_A BIN_B TREE [RUNS] [WORKDIR]
#
# Prints each run and the median per step and build.
set -euo pipefail
bin_a=$1 bin_b=$2 src=$3 runs=${4:-3} work=${5:-/var/tmp/backup-ab}
restore_dir=${RESTORE_DIR:-/dev/shm/backup-ab-restore}
mkdir -p "$work" "$restore_dir"
export BACKUP_PASSWORD=bench
results="$work/ab-results.tsv"
: >"$results"
reread() { find "$1" -type f -print0 | xargs -0 cat >/dev/null 2>&1 || true; }
timed() { # label step run -- command...
  local label=$1 step=$2 run=$3
  shift 4
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >"$work/out.txt" 2>&1 || {
    echo "FAILED: $label $step" >&2; cat "$work/out.txt" >&2; exit 1; }
  printf '%s\t%s\t%s\t%s\n' "$label" "$step" "$run" "$(tr ' ' '\t' <"$work/time.txt")" >>"$results"
}
for run in $(seq 1 "$runs"); do
  order=(A B)
  [ $((run % 2)) = 0 ] && order=(B A)
  for label in "${order[@]}"; do
    bin=$bin_a
    [ "$label" = B ] && bin=$bin_b
    repo="$work/repo-$label"
    rm -rf "$repo" "$restore_dir/$label"
    "$bin" -r "$repo" init >/dev/null
    sync; reread "$src"; timed "$label" cold "$run" -- "$bin" -r "$repo" backup "$src"
    sync; reread "$src"; timed "$label" unchanged "$run" -- "$bin" -r "$repo" backup "$src"
    sync; timed "$label" restore "$run" -- "$bin" -r "$repo" restore latest --target "$restore_dir/$label"
    rm -rf "$restore_dir/$label"
  done
  echo "run $run done (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
done
python3 - "$results" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    label, step, run, secs, rss = line.split("\t")
    rows[step].setdefault(label, []).append((int(run), float(secs), int(rss)))
for step, by in rows.items():
    a = {r: s for r, s, _ in by["A"]}
    b = {r: s for r, s, _ in by["B"]}
    per_run = ", ".join(f"{a[r]:.2f}/{b[r]:.2f}" for r in sorted(a))
    ma, mb = statistics.median(a.values()), statistics.median(b.values())
    print(f"{step}: A/B per run {per_run}; medians A {ma:.2f} s, B {mb:.2f} s (B/A {mb / ma:.3f})")
PY
