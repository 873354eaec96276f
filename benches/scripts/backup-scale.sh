#!/usr/bin/env bash
# Scale (issue 12): a repository of over 2,000,000 chunks. Peak memory of backup, check,
# check --read-data and prune, ours against restic's (and rustic's, if on PATH), per million
# blobs.
#
#   sudo bash benches/scripts/backup-scale.sh [FILES] [WORKDIR]
#
# The tree is FILES (default 2,100,000) small files of distinct content written by
# benches/scripts/gen-small-files.py: every file is one blob, so the repositories hold FILES
# data blobs plus one tree blob per directory. The tree goes into an ext4 image (1 KiB blocks,
# inline data, 256-byte inodes) loop-mounted at WORKDIR/mnt (the tree is WORKDIR/mnt/tree), since on 4 KiB blocks 2.1 M files
# take 8.6 GB (2.6 GB this way; the repositories add about 2.5 GB). Needs root for the mount;
# with TREE=DIR an existing tree is used instead and nothing is mounted.
#
# Steps, per tool (ours first, then restic, then rustic; each step after `sync` and a re-read of
# what it reads): cold backup; check; check --read-data; then 10 % of the files are deleted
# (every tenth directory), a second backup runs, the first snapshot is forgotten (untimed) and
# prune runs (ours only if the binary has a `prune` command). /usr/bin/time gives wall time and
# peak RSS. Results in WORKDIR/scale-results.tsv (appended to) and as a table. KEEP=1 keeps
# the tree, image and repositories; by default everything is deleted at the end. TOOLS="restic"
# runs only the tools named; REREAD=0 skips the re-reads (on a loaded machine whose page cache
# had dropped the image, re-reading the 2.1 M files through the loop device took over 12
# minutes); PRUNE=0 skips the second backup, forget and prune.
set -euo pipefail
cd "$(dirname "$0")/../.."
files=${1:-2100000}
work=${2:-/var/tmp/backup-scale}
bin=${BACKUP_BIN:-${CARGO_TARGET_DIR:-target}/release/backup}
mkdir -p "$work"
work=$(cd "$work" && pwd)

# The tree, and beside it (same file system, so moves are renames) the directories taken out of
# it for the second backup.
mnt=$work/mnt
tree=${TREE:-$mnt/tree}
moved=$(dirname "$tree")/scale-moved
mounted=0
cleanup() {
  if [ "${KEEP:-0}" != 1 ]; then
    [ "$mounted" = 1 ] && umount "$mnt" && rm -f "$work/tree.img"
    rm -rf "$work"/repo-*
  fi
}
trap cleanup EXIT
if [ -z "${TREE:-}" ]; then
  mkdir -p "$mnt"
  if ! mountpoint -q "$mnt"; then
    if [ ! -f "$work/tree.img" ]; then
      truncate -s $(( files / 1000 * 2 + 512 ))M "$work/tree.img"
      mkfs.ext4 -q -b 1024 -I 256 -O inline_data -N $(( files + files / 500 + 1000 )) "$work/tree.img"
    fi
    mount -o loop,noatime "$work/tree.img" "$mnt"
  fi
  mounted=1
  mkdir -p "$tree"
fi
[ -e "$tree/d000" ] || python3 benches/scripts/gen-small-files.py "$tree" "$files"
echo "tree: $(find "$tree" -type f | wc -l) files, $(df -h --output=used "$tree" | tail -1) used" >&2

source benches/scripts/backup-bench-common.sh
[ -n "${TOOLS:-}" ] && read -ra tools <<<"$TOOLS"
results="$work/scale-results.tsv"
[ "${REREAD:-1}" = 1 ] || reread() { :; }
timed() { # tool step -- command...: appends "tool step seconds maxrss_kib"
  local tool=$1 step=$2
  shift 3
  echo "$tool $step (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >"$work/out-$tool-$step.txt" 2>&1 || {
    echo "FAILED: $tool $step: $*" >&2; tail -20 "$work/out-$tool-$step.txt" >&2; exit 1; }
  printf '%s\t%s\t%s\n' "$tool" "$step" "$(tr ' ' '\t' <"$work/time.txt")" >>"$results"
}
has_prune() {
  [ "${PRUNE:-1}" = 1 ] || return 1
  case $1 in
    hostguard) "$bin" prune --help >/dev/null 2>&1 ;;
    *) true ;;
  esac
}

# Blobs in the repository (after the first backup): ours as `check --read-data` counted them,
# restic's and rustic's from their index.
blob_count() {
  case $1 in
    hostguard) sed -n 's/.* \([0-9]*\) blobs verified.*/\1/p' "$work/out-hostguard-check-read-data.txt" ;;
    *) run_tool "$1" list blobs | wc -l ;;
  esac
}

# The tree is changed for the second backup: put it back first if a previous run stopped.
restore_tree() {
  [ -d "$moved" ] || return 0
  find "$moved" -mindepth 1 -maxdepth 1 -type d | while read -r d; do
    mv "$d" "$tree/$(basename "$d" | cut -d_ -f1)/$(basename "$d" | cut -d_ -f2)"
  done
  rmdir "$moved"
}
restore_tree
for tool in "${tools[@]}"; do
  rm -rf "$work/repo-$tool"
  run_tool "$tool" init >/dev/null
  sync; reread "$tree"
  timed "$tool" backup -- bash -c "run_tool $tool backup '$tree'"
  sync; reread "$work/repo-$tool"
  timed "$tool" check -- bash -c "run_tool $tool check"
  sync; reread "$work/repo-$tool"
  timed "$tool" check-read-data -- bash -c "run_tool $tool check --read-data"
  printf '%s\tblobs\t%s\t0\n' "$tool" "$(blob_count "$tool")" >>"$results"
  if has_prune "$tool"; then
    # Every tenth directory leaves the tree (moved within the file system, put back below).
    mkdir -p "$moved"
    mapfile -t tenth < <(find "$tree" -mindepth 2 -maxdepth 2 -type d -name 'd??0')
    for d in "${tenth[@]}"; do
      mv "$d" "$moved/$(basename "$(dirname "$d")")_$(basename "$d")"
    done
    sync; reread "$tree"
    timed "$tool" backup-2 -- bash -c "run_tool $tool backup '$tree'"
    restore_tree
    run_tool "$tool" forget --keep-last 1 >/dev/null
    sync; reread "$work/repo-$tool"
    timed "$tool" prune -- bash -c "run_tool $tool prune"
  fi
  printf '%s\trepo_bytes\t%s\t0\n' "$tool" "$(du -sb "$work/repo-$tool" | cut -f1)" >>"$results"
done

python3 - "$results" <<'EOF'
import sys, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):  # the last sample of each step counts
    tool, step, secs, rss = line.rstrip("\n").split("\t")
    rows[(tool, step)] = (float(secs), int(rss))
blobs = {t: int(v[0]) for (t, step), v in rows.items() if step == "blobs"}
tools = [t for t in ("hostguard", "restic", "rustic") if any(k[0] == t for k in rows)]
print("blobs after the first backup: " + ", ".join(f"{t} {n:,}" for t, n in blobs.items()))
print("| step (wall / peak RSS / peak RSS per million blobs) | " + " | ".join(tools) + " |")
print("|---|" + "---|" * len(tools))
for step in ("backup", "check", "check-read-data", "backup-2", "prune", "repo_bytes"):
    cells = []
    for t in tools:
        v = rows.get((t, step))
        if v is None:
            cells.append("-")
        elif step == "repo_bytes":
            cells.append(f"{v[0] / 2**20:.0f} MiB")
        else:
            per = v[1] / 1024 / (blobs.get(t, 0) / 1e6) if blobs.get(t) else float("nan")
            cells.append(f"{v[0]:.1f} s / {v[1] / 1024:.0f} MiB / {per:.0f} MiB")
    print(f"| {step} | " + " | ".join(cells) + " |")
EOF
