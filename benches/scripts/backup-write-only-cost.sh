#!/usr/bin/env bash
# Cost of write-only mode (issue 13): the `backup` tool on the same tree into a normal
# repository (password) and into a write-only one (host key; every frame, pack header and
# snapshot sealed to the owner's X25519 key), alternating, order rotating each run.
#
#   bash benches/scripts/backup-write-only-cost.sh [RUNS] [WORKDIR]
#
# Same data as backup-vs-restic.sh: the Rust toolchain directory (BENCH_SRC to change it). Per
# run and mode, each timed step preceded by `sync` and a re-read of the tree: cold backup into
# a fresh repository, unchanged re-backup (normal: the parent snapshot lets it skip unchanged
# files; write-only: the host's local parent cache, `<host key>.cache`, does),
# full restore (normal: password; write-only: the owner's identity), repository size. Prints
# medians (wall time / peak RSS / user+sys CPU time) as a markdown table, and the load
# average before and after (a shared machine: compare CPU time when the load is high).
# Needs: cargo build --release -p hostguard-examples --bin backup; age-keygen.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
work=${2:-/var/tmp/backup-write-only-bench}
bin=${BACKUP_BIN:-${CARGO_TARGET_DIR:-target}/release/backup}
src=${BENCH_SRC:-$(rustc --print sysroot)}
restore_dir=${RESTORE_DIR:-/dev/shm/backup-write-only-restore}
mkdir -p "$work" "$restore_dir"
# shellcheck source=backup-bench-common.sh
source benches/scripts/backup-bench-common.sh   # BACKUP_PASSWORD, reread
results="$work/results.tsv"
: >"$results"
[ -f "$work/owner.key" ] || age-keygen -o "$work/owner.key" 2>/dev/null
recipient=$(age-keygen -y "$work/owner.key")
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >"$work/load.txt"

prep() { sync; reread "$1"; }
# timed MODE STEP RUN -- command...: appends "mode step run seconds maxrss_kib cpu_seconds"
timed() {
  local mode=$1 step=$2 run=$3
  shift 4
  /usr/bin/time -f "%e %M %U %S" -o "$work/time.txt" "$@" >"$work/out-$mode-$step.txt" 2>&1 || {
    echo "FAILED: $mode $step: $*" >&2; cat "$work/out-$mode-$step.txt" >&2; exit 1; }
  printf '%s\t%s\t%s\t%s\n' "$mode" "$step" "$run" \
    "$(awk '{printf "%s\t%s\t%.2f", $1, $2, $3 + $4}' "$work/time.txt")" >>"$results"
}

for run in $(seq 1 "$runs"); do
  if (( run % 2 )); then order=(normal write-only); else order=(write-only normal); fi
  for mode in "${order[@]}"; do
    echo "run $run: $mode" >&2
    repo="$work/repo-$mode"; rm -rf "$repo" "$work/host.key" "$restore_dir/restore-$mode"
    case $mode in
      normal)
        writer=("$bin" -r "$repo"); reader=("$bin" -r "$repo")
        "$bin" -r "$repo" init >/dev/null ;;
      write-only)
        writer=("$bin" -r "$repo" --host-key "$work/host.key")
        reader=("$bin" -r "$repo" --identity "$work/owner.key")
        "${writer[@]}" init --write-only --owner-recipient "$recipient" >/dev/null ;;
    esac
    prep "$src"; timed "$mode" cold "$run" -- "${writer[@]}" backup "$src"
    prep "$src"; timed "$mode" unchanged "$run" -- "${writer[@]}" backup "$src"
    sync; timed "$mode" restore "$run" -- "${reader[@]}" restore latest --target "$restore_dir/restore-$mode"
    rm -rf "$restore_dir/restore-$mode"
    printf '%s\t%s\t%s\t%s\t0\t0\n' "$mode" repo_bytes "$run" "$(du -sb "$repo" | cut -f1)" >>"$results"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/load.txt"
cat "$work/load.txt"

python3 - "$results" <<'EOF'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    mode, step, run, value, rss, cpu = line.split("\t")
    rows[(mode, step)].append((float(value), int(rss), float(cpu)))
modes = ("normal", "write-only")
def cell(mode, step):
    v = rows[(mode, step)]
    if step == "repo_bytes":
        return f"{statistics.median(x for x, _, _ in v) / 2**20:.1f} MiB"
    t = statistics.median(x for x, _, _ in v)
    m = statistics.median(r for _, r, _ in v) / 1024
    c = statistics.median(c for _, _, c in v)
    runs = ", ".join(f"{x:.2f}" for x, _, _ in v)
    return f"{t:.2f} s / {m:.0f} MiB / {c:.2f} CPU-s (runs {runs})"
print("| step (median wall / peak RSS / user+sys CPU) | normal | write-only | write-only / normal (wall, CPU) |")
print("|---|---|---|---|")
for step in ("cold", "unchanged", "restore", "repo_bytes"):
    ratio = "-"
    if step != "repo_bytes":
        n = statistics.median(x for x, _, _ in rows[("normal", step)])
        w = statistics.median(x for x, _, _ in rows[("write-only", step)])
        nc = statistics.median(c for _, _, c in rows[("normal", step)])
        wc = statistics.median(c for _, _, c in rows[("write-only", step)])
        ratio = f"{w / n:.2f}x, {wc / nc:.2f}x"
    print(f"| {step} | {cell('normal', step)} | {cell('write-only', step)} | {ratio} |")
print(f"\nruns per cell: {max(len(v) for v in rows.values())}")
EOF
