#!/usr/bin/env bash
# hostguard `backup` vs restic (Debian package) and rustic (`cargo install rustic-rs`, if on PATH)
# on the Rust toolchain directory and a copy with 10% of its files modified (issue 4).
#
#   bash benches/scripts/backup-vs-restic.sh [RUNS] [WORKDIR]
#
# Per run and tool (tools alternate, order rotating each run), each timed step preceded by `sync`
# and a re-read of the source tree: cold backup into a fresh repository, unchanged re-backup
# (parent snapshot), full restore, backup of the modified copy as a new path into the same
# repository (no parent: every file is read and deduplicated against what is stored), repository
# size. `cp -a` of the tree is timed the same way as the restore floor. Prints medians as a
# markdown table. Needs: cargo build --release -p hostguard-examples --bin backup
#
# Restores (and `cp -a`) write into RESTORE_DIR, a tmpfs by default: on this machine's ext4 the
# restored trees deleted between runs make inode allocation scan "recently deleted" inodes
# (ext4's recently_deleted(), a 300 s window while inode tables are dirty), which turned 3 s
# restores into 12-25 s ones for every tool, growing run after run. tmpfs measures the tools;
# set RESTORE_DIR to a disk directory to measure the disk too.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
work=${2:-/var/tmp/backup-bench}
bin=${BACKUP_BIN:-${CARGO_TARGET_DIR:-target}/release/backup}
src=${BENCH_SRC:-$(rustc --print sysroot)}
restore_dir=${RESTORE_DIR:-/dev/shm/backup-bench-restore}
mkdir -p "$work" "$restore_dir"
mut="$work/mutated-tree"
[ -d "$mut" ] || python3 benches/scripts/mutate-tree.py "$src" "$mut" >"$work/mutate.log"

export BACKUP_PASSWORD=bench RESTIC_PASSWORD=bench RUSTIC_PASSWORD=bench
tools=(hostguard restic)
command -v rustic >/dev/null && tools+=(rustic)
results="$work/results.tsv"
: >"$results"

reread() { find "$1" -type f -print0 | xargs -0 cat >/dev/null 2>&1 || true; }
prep() { sync; reread "$1"; }
# timed TOOL STEP RUN -- command...: appends "tool step run seconds maxrss_kib"
timed() {
  local tool=$1 step=$2 run=$3
  shift 4
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >"$work/out-$tool-$step.txt" 2>&1 || {
    echo "FAILED: $tool $step: $*" >&2; cat "$work/out-$tool-$step.txt" >&2; exit 1; }
  printf '%s\t%s\t%s\t%s\n' "$tool" "$step" "$run" "$(tr ' ' '\t' <"$work/time.txt")" >>"$results"
}

cmd() { # tool verb args...
  local tool=$1 verb=$2 repo="$work/repo-$1"
  shift 2
  case $tool in
    hostguard) case $verb in
        init) "$bin" -r "$repo" init ;;
        backup) "$bin" -r "$repo" backup "$@" ;;
        restore) "$bin" -r "$repo" restore latest --target "$1" ;;
      esac ;;
    restic) case $verb in
        init) restic -r "$repo" init ;;
        backup) restic -r "$repo" backup "$@" ;;
        restore) restic -r "$repo" restore latest --target "$1" ;;
      esac ;;
    rustic) case $verb in
        init) rustic -r "$repo" init ;;
        backup) rustic -r "$repo" backup "$@" ;;
        restore) rustic -r "$repo" restore latest "$1" ;;
      esac ;;
  esac
}
export -f cmd
export bin work

for run in $(seq 1 "$runs"); do
  # Rotate the order each run so no tool always goes first.
  order=("${tools[@]:$(( (run - 1) % ${#tools[@]} ))}" "${tools[@]:0:$(( (run - 1) % ${#tools[@]} ))}")
  for tool in "${order[@]}"; do
    echo "run $run: $tool" >&2
    repo="$work/repo-$tool"; rm -rf "$repo" "$restore_dir/restore-$tool"
    cmd "$tool" init >/dev/null
    prep "$src"; timed "$tool" cold "$run" -- bash -c "cmd $tool backup '$src'"
    prep "$src"; timed "$tool" unchanged "$run" -- bash -c "cmd $tool backup '$src'"
    sync; timed "$tool" restore "$run" -- bash -c "cmd $tool restore '$restore_dir/restore-$tool'"
    rm -rf "$restore_dir/restore-$tool"
    prep "$mut"; timed "$tool" modified "$run" -- bash -c "cmd $tool backup '$mut'"
    printf '%s\t%s\t%s\t%s\t0\n' "$tool" repo_bytes "$run" "$(du -sb "$repo" | cut -f1)" >>"$results"
  done
  rm -rf "$restore_dir/cp-floor"; prep "$src"
  timed cp-a restore "$run" -- cp -a "$src" "$restore_dir/cp-floor"
  rm -rf "$restore_dir/cp-floor"
done

python3 - "$results" <<'EOF'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    tool, step, run, value, rss = line.split("\t")
    rows[(tool, step)].append((float(value), int(rss)))
tools = [t for t in ("hostguard", "restic", "rustic", "cp-a") if any(k[0] == t for k in rows)]
def cell(tool, step):
    v = rows.get((tool, step))
    if not v:
        return "-"
    if step == "repo_bytes":
        return f"{statistics.median(x for x, _ in v) / 2**20:.0f} MiB"
    t = statistics.median(x for x, _ in v)
    m = statistics.median(r for _, r in v) / 1024
    return f"{t:.2f} s / {m:.0f} MiB"
print("| step (median wall / peak RSS) | " + " | ".join(tools) + " |")
print("|---|" + "---|" * len(tools))
for step in ("cold", "unchanged", "modified", "restore", "repo_bytes"):
    print(f"| {step} | " + " | ".join(cell(t, step) for t in tools) + " |")
print(f"\nruns per cell: {max(len(v) for v in rows.values())}")
EOF
