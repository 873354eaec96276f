#!/usr/bin/env bash
# hostguard `backup forget` + `prune` vs restic (Debian package) and rustic (if on PATH): forget
# half of 20 snapshots, then prune, on the data of the backup benchmark (issue 12).
#
#   bash benches/scripts/backup-prune-vs-restic.sh [RUNS] [WORKDIR]
#
# Setup (once, not timed): a copy of the Rust toolchain directory (the sysroot, as
# backup-vs-restic.sh uses) at WORKDIR/tree is backed up 20 times by every tool into its own
# repository; between two snapshots mutate-tree.py makes a copy with 2 % of the files modified
# (seed = snapshot number) and rsync brings the tree to it, so the tree keeps its path and
# unchanged files keep their inodes (each backup is an incremental one with a parent, as a
# nightly backup is). Each repository is then saved as a template.
#
# Timed, per run and tool (tools alternate, order rotating each run), each on a fresh copy of the
# template: `forget --keep-last 10` (10 of the 20 snapshots go), then `prune` with the tool's
# default limits (5 % unused for all); and on another fresh copy, after the same forget (not
# timed), `prune --max-unused 0%` (step prune_all: every partly used pack repacked, so every
# tool reclaims all it can). Wall time and peak RSS by /usr/bin/time. After each prune (not
# timed) `check` must pass for hostguard and restic. Prints medians as a markdown table and the
# load average at the start of each run.
# Needs: cargo build --release -p hostguard-examples --bin backup
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
work=${2:-/var/tmp/backup-prune-bench}
bin=${BACKUP_BIN:-${CARGO_TARGET_DIR:-target}/release/backup}
src=${BENCH_SRC:-$(rustc --print sysroot)}
snapshots=${SNAPSHOTS:-20}
scratch=${SCRATCH_DIR:-/dev/shm/backup-prune-bench}
mkdir -p "$work" "$scratch"

export BACKUP_PASSWORD=bench RESTIC_PASSWORD=bench RUSTIC_PASSWORD=bench
tools=(hostguard restic)
command -v rustic >/dev/null && tools+=(rustic)
results="$work/results.tsv"
: >"$results"

cmd() { # tool repo verb args...
  local tool=$1 repo=$2 verb=$3
  shift 3
  case $tool in
    hostguard) "$bin" -r "$repo" "$verb" "$@" ;;
    restic) restic -q -r "$repo" "$verb" "$@" ;;
    rustic) rustic -r "$repo" "$verb" "$@" ;;
  esac
}

if [ ! -f "$work/templates.done" ]; then
  rm -rf "$work/tree" "$work"/template-*
  cp -a "$src" "$work/tree"
  for tool in "${tools[@]}"; do cmd "$tool" "$work/template-$tool" init >/dev/null; done
  for i in $(seq 1 "$snapshots"); do
    if [ "$i" -gt 1 ]; then
      rm -rf "$scratch/next"
      python3 benches/scripts/mutate-tree.py "$work/tree" "$scratch/next" 0.02 "$i" >/dev/null
      rsync -a --delete "$scratch/next/" "$work/tree/"
      rm -rf "$scratch/next"
    fi
    for tool in "${tools[@]}"; do
      echo "setup: snapshot $i: $tool" >&2
      cmd "$tool" "$work/template-$tool" backup "$work/tree" >/dev/null
    done
  done
  touch "$work/templates.done"
fi

# timed TOOL STEP RUN -- command...: appends "tool step run seconds maxrss_kib"
timed() {
  local tool=$1 step=$2 run=$3
  shift 4
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >"$work/out-$tool-$step.txt" 2>&1 || {
    echo "FAILED: $tool $step: $*" >&2; cat "$work/out-$tool-$step.txt" >&2; exit 1; }
  printf '%s\t%s\t%s\t%s\n' "$tool" "$step" "$run" "$(tr ' ' '\t' <"$work/time.txt")" >>"$results"
}

check_after() { # tool repo: the tool's own check must pass after a prune
  case $1 in
    hostguard|restic) cmd "$1" "$2" check >"$work/check-$1.txt" 2>&1 || {
      echo "FAILED: $1 check after prune" >&2; cat "$work/check-$1.txt" >&2; exit 1; } ;;
  esac
}

for run in $(seq 1 "$runs"); do
  echo "run $run: load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$work/load.txt" >&2
  order=("${tools[@]:$(( (run - 1) % ${#tools[@]} ))}" "${tools[@]:0:$(( (run - 1) % ${#tools[@]} ))}")
  for tool in "${order[@]}"; do
    repo="$work/repo-$tool"
    rm -rf "$repo"; cp -a "$work/template-$tool" "$repo"; sync
    case $tool in
      hostguard) argv=("$bin" -r "$repo") ;;
      restic) argv=(restic -r "$repo") ;;
      rustic) argv=(rustic -r "$repo") ;;
    esac
    timed "$tool" forget "$run" -- "${argv[@]}" forget --keep-last 10
    sync
    timed "$tool" prune "$run" -- "${argv[@]}" prune
    printf '%s\t%s\t%s\t%s\t0\n' "$tool" repo_bytes "$run" "$(du -sb "$repo" | cut -f1)" >>"$results"
    check_after "$tool" "$repo"
    # The same with --max-unused 0%: every partly used pack repacked, all unused data gone.
    rm -rf "$repo"; cp -a "$work/template-$tool" "$repo"; sync
    "${argv[@]}" forget --keep-last 10 >/dev/null
    sync
    timed "$tool" prune_all "$run" -- "${argv[@]}" prune --max-unused 0%
    printf '%s\t%s\t%s\t%s\t0\n' "$tool" repo_bytes_all "$run" "$(du -sb "$repo" | cut -f1)" >>"$results"
    check_after "$tool" "$repo"
  done
done
printf 'template\trepo_bytes\t0\t%s\t0\n' "$(du -sb "$work/template-hostguard" | cut -f1)" >>"$results"

python3 - "$results" <<'EOF'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    tool, step, run, value, rss = line.rstrip("\n").split("\t")
    rows[(tool, step)].append((float(value), int(rss)))
tools = [t for t in ("hostguard", "restic", "rustic") if any(k[0] == t for k in rows)]
def med(tool, step, i):
    return statistics.median(v[i] for v in rows[(tool, step)])
print("| step (median wall / peak RSS) | " + " | ".join(tools) + " |")
print("|---|" + "---|" * len(tools))
for step in ("forget", "prune", "prune_all"):
    print(f"| {step} | " + " | ".join(
        f"{med(t, step, 0):.2f} s / {med(t, step, 1) / 1024:.0f} MiB" for t in tools) + " |")
print("| forget + prune | " + " | ".join(
    f"{med(t, 'forget', 0) + med(t, 'prune', 0):.2f} s" for t in tools) + " |")
print("| repository after prune / prune_all | " + " | ".join(
    f"{med(t, 'repo_bytes', 0) / 2**20:.0f} MiB / {med(t, 'repo_bytes_all', 0) / 2**20:.0f} MiB"
    for t in tools) + " |")
print(f"| repository before (hostguard) | {med('template', 'repo_bytes', 0) / 2**20:.0f} MiB |")
h = med("hostguard", "forget", 0) + med("hostguard", "prune", 0)
for t in tools[1:]:
    o = med(t, "forget", 0) + med(t, "prune", 0)
    print(f"\nforget + prune: hostguard {o / h:.1f}x faster than {t}; prune peak RSS "
          f"{med('hostguard', 'prune', 1) / 1024:.0f} MiB vs {med(t, 'prune', 1) / 1024:.0f} MiB")
    a, b = med("hostguard", "prune_all", 0), med(t, "prune_all", 0)
    print(f"prune --max-unused 0%: hostguard {b / a:.1f}x faster than {t}; peak RSS "
          f"{med('hostguard', 'prune_all', 1) / 1024:.0f} MiB vs {med(t, 'prune_all', 1) / 1024:.0f} MiB")
print(f"\nruns per cell: {max(len(v) for v in rows.values())}")
EOF
