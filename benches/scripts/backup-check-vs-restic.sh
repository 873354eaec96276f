#!/usr/bin/env bash
# hostguard `backup check` vs restic (and rustic, if on PATH): `check` (structure) and
# `check --read-data` (every pack read, decrypted and verified) on the data of the backup
# benchmark (issue 12): repositories holding the Rust toolchain tree and the copy of it with
# 10 % of its files modified (benches/scripts/mutate-tree.py), as backup-vs-restic.sh stores them.
#
#   bash benches/scripts/backup-check-vs-restic.sh [RUNS] [WORKDIR]
#
# Each tool's repository is made once (init, backup of the tree, backup of the modified copy as
# a new path; not timed). Then per run the tools alternate, order rotating each run, and each
# timed step is preceded by `sync` and a re-read of that tool's repository, so every tool reads
# its packs from the page cache: the figures compare the tools' own work (decryption,
# decompression, hashing, bookkeeping), not the disk. EVICT=1 instead drops the repository's
# pages (POSIX_FADV_DONTNEED, file by file, nothing else on the machine) before each step.
# Prints medians (wall / peak RSS) and the per-run ours/restic ratios; every sample is in
# WORKDIR/check-results.tsv. Needs: cargo build --release -p hostguard-examples --bin backup
#
# Environment: BACKUP_BIN (our binary), BENCH_SRC (tree, default the Rust sysroot), EVICT.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
work=${2:-/var/tmp/backup-check-bench}
bin=${BACKUP_BIN:-${CARGO_TARGET_DIR:-target}/release/backup}
src=${BENCH_SRC:-$(rustc --print sysroot)}
evict=${EVICT:-0}
mkdir -p "$work"
mut="$work/mutated-tree"
[ -d "$mut" ] || python3 benches/scripts/mutate-tree.py "$src" "$mut" >"$work/mutate.log"

source benches/scripts/backup-bench-common.sh
results="$work/check-results.tsv"
: >"$results"

prepare_repo() {
  local repo="$work/repo-$1"
  if [ "$evict" = 1 ]; then
    python3 - "$repo" <<'EOF'
import os, sys
for root, _, names in os.walk(sys.argv[1]):
    for name in names:
        fd = os.open(os.path.join(root, name), os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
EOF
  else
    reread "$repo"
  fi
}
timed() { # tool step run -- command...: appends "tool step run seconds maxrss_kib"
  local tool=$1 step=$2 run=$3
  shift 4
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >"$work/out-$tool-$step.txt" 2>&1 || {
    echo "FAILED: $tool $step: $*" >&2; cat "$work/out-$tool-$step.txt" >&2; exit 1; }
  printf '%s\t%s\t%s\t%s\n' "$tool" "$step" "$run" "$(tr ' ' '\t' <"$work/time.txt")" >>"$results"
}

for tool in "${tools[@]}"; do
  repo="$work/repo-$tool"
  [ -f "$repo/config" ] && continue
  echo "setting up the $tool repository" >&2
  rm -rf "$repo"
  run_tool "$tool" init >/dev/null
  run_tool "$tool" backup "$src" >/dev/null
  run_tool "$tool" backup "$mut" >/dev/null
done
du -sb "$work"/repo-* >"$work/repo-sizes.txt"

echo "load average before: $(cat /proc/loadavg)" >&2
for run in $(seq 1 "$runs"); do
  order=("${tools[@]:$(( (run - 1) % ${#tools[@]} ))}" "${tools[@]:0:$(( (run - 1) % ${#tools[@]} ))}")
  for tool in "${order[@]}"; do
    echo "run $run: $tool (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    sync; prepare_repo "$tool"
    timed "$tool" structure "$run" -- bash -c "run_tool $tool check"
    sync; prepare_repo "$tool"
    timed "$tool" read-data "$run" -- bash -c "run_tool $tool check --read-data"
  done
done
echo "load average after: $(cat /proc/loadavg)" >&2

python3 - "$results" <<'EOF'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    tool, step, run, secs, rss = line.split("\t")
    rows[(tool, step)].append((int(run), float(secs), int(rss)))
tools = [t for t in ("hostguard", "restic", "rustic") if any(k[0] == t for k in rows)]
print("| step (median wall / peak RSS) | " + " | ".join(tools) + " |")
print("|---|" + "---|" * len(tools))
for step in ("structure", "read-data"):
    cells = []
    for t in tools:
        v = rows.get((t, step), [])
        cells.append(f"{statistics.median(s for _, s, _ in v):.2f} s / "
                     f"{statistics.median(r for _, _, r in v) / 1024:.0f} MiB" if v else "-")
    print(f"| {step} | " + " | ".join(cells) + " |")
print()
for step in ("structure", "read-data"):
    ours = {r: (s, m) for r, s, m in rows.get(("hostguard", step), [])}
    for peer in tools[1:]:
        theirs = {r: (s, m) for r, s, m in rows.get((peer, step), [])}
        per_run = [f"run {r}: {ours[r][0]:.2f} / {theirs[r][0]:.2f} s = {theirs[r][0] / ours[r][0]:.2f}x, "
                   f"{ours[r][1] / 1024:.0f} / {theirs[r][1] / 1024:.0f} MiB"
                   for r in sorted(ours) if r in theirs]
        print(f"{step}, ours / {peer}: " + "; ".join(per_run))
EOF
