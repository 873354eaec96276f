#!/usr/bin/env bash
# hostguard `backup` vs restic (Debian package) on an S3-compatible server on loopback (moto, from
# the project's virtualenv), issue 13 "remote speed": cold backup into a fresh bucket, then a full
# restore of that snapshot.
#
#   bash benches/scripts/backup-s3-vs-restic.sh [RUNS] [WORKDIR]
#
# Data: BENCH_SRC, by default the Rust toolchain directory as in backup-vs-restic.sh (set it to a
# part of it when moto is too slow for the whole). Each tool and run gets a fresh moto server
# (its objects live in the server's memory), tools alternate with the order rotating each run,
# and every timed step is preceded by `sync` and a re-read of the source tree. The 1-minute load
# average is recorded before each step: the machine may be shared. Restores write into
# RESTORE_DIR (a tmpfs by default, see backup-vs-restic.sh). Prints medians as a markdown table.
# Needs: cargo build --release -p hostguard-examples --bin backup; restic; the virtualenv with
# moto (scripts/services/*.sh installs it: ~/.cache/hostguard-venv).
#
# SERVER=moto (default) or SERVER=s3s-fs: s3s-fs 0.14.1 from crates.io (the s3s project's S3
# server over a directory, in Rust; installed into ~/.cache/hostguard-tools when missing), with
# its objects in a tmpfs directory. moto answers every ranged GET by copying the whole object in
# Python, so on moto the server's time is most of a restore; s3s-fs reads the range from a file.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
work=${2:-/var/tmp/backup-s3-bench}
bin=${BACKUP_BIN:-${CARGO_TARGET_DIR:-target}/release/backup}
src=${BENCH_SRC:-$(rustc --print sysroot)}
restore_dir=${RESTORE_DIR:-/dev/shm/backup-s3-bench-restore}
server=${SERVER:-moto}
moto=${MOTO_SERVER:-$HOME/.cache/hostguard-venv/bin/moto_server}
s3s_fs=${S3S_FS:-$HOME/.cache/hostguard-tools/bin/s3s-fs}
s3s_root=${S3S_ROOT:-/dev/shm/backup-s3-bench-objects}
port=${MOTO_PORT:-5391}
case $server in
  moto) ;;
  s3s-fs)
    [ -x "$s3s_fs" ] || cargo install --locked s3s-fs@0.14.1 --features binary \
      --root "$(dirname "$(dirname "$s3s_fs")")" ;;
  *) echo "SERVER must be moto or s3s-fs, not $server" >&2; exit 2 ;;
esac
mkdir -p "$work" "$restore_dir"
endpoint="http://127.0.0.1:$port"

export BACKUP_PASSWORD=bench RESTIC_PASSWORD=bench
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=benchbench AWS_DEFAULT_REGION=us-east-1
export AWS_REGION=us-east-1 AWS_ENDPOINT_URL="$endpoint"
tools=(hostguard restic)
results="$work/results.tsv"
: >"$results"

server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  server_pid=
  if [ "$server" = s3s-fs ]; then rm -rf "$s3s_root"; fi
}
trap stop_server EXIT
start_server() {
  stop_server
  if [ "$server" = s3s-fs ]; then
    rm -rf "$s3s_root"; mkdir -p "$s3s_root"
    "$s3s_fs" --host 127.0.0.1 --port "$port" --access-key bench --secret-key benchbench \
      "$s3s_root" >"$work/server.log" 2>&1 &
  else
    "$moto" -H 127.0.0.1 -p "$port" >"$work/server.log" 2>&1 &
  fi
  server_pid=$!
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "$endpoint/" && break
    sleep 0.2
  done
  if [ "$server" = s3s-fs ]; then mkdir -p "$s3s_root/bench"; else curl -sf -X PUT "$endpoint/bench" >/dev/null; fi
}

reread() { find "$1" -type f -print0 | xargs -0 cat >/dev/null 2>&1 || true; }
load() { cut -d' ' -f1 /proc/loadavg; }
# CPU seconds the server has used (user + system): what a step cost the server, whatever the load.
server_cpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$server_pid/stat"; }
# timed TOOL STEP RUN -- command...: appends "tool step run seconds maxrss_kib cpu_s load
# server_cpu_s" (cpu_s: the tool's user + system time)
timed() {
  local tool=$1 step=$2 run=$3 before cpu_before
  shift 4
  before=$(load)
  cpu_before=$(server_cpu)
  /usr/bin/time -f "%e %M %U %S" -o "$work/time.txt" "$@" >"$work/out-$tool-$step.txt" 2>&1 || {
    echo "FAILED: $tool $step: $*" >&2; cat "$work/out-$tool-$step.txt" >&2; exit 1; }
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$step" "$run" \
    "$(awk '{ printf "%s\t%s\t%.2f", $1, $2, $3 + $4 }' "$work/time.txt")" "$before" \
    "$(awk -v a="$cpu_before" -v b="$(server_cpu)" 'BEGIN { printf "%.2f", b - a }')" >>"$results"
}

run_tool() { # tool verb args...
  local tool=$1 verb=$2
  shift 2
  case $tool in
    hostguard) case $verb in
        init) "$bin" -r s3://bench/repo init ;;
        backup) "$bin" -r s3://bench/repo backup "$@" ;;
        restore) "$bin" -r s3://bench/repo restore latest --target "$1" ;;
      esac ;;
    restic) case $verb in
        init) restic -r "s3:$endpoint/bench/repo" init ;;
        backup) restic -r "s3:$endpoint/bench/repo" backup "$@" ;;
        restore) restic -r "s3:$endpoint/bench/repo" restore latest --target "$1" ;;
      esac ;;
  esac
}
export -f run_tool
export bin endpoint

for run in $(seq 1 "$runs"); do
  order=("${tools[@]:$(( (run - 1) % ${#tools[@]} ))}" "${tools[@]:0:$(( (run - 1) % ${#tools[@]} ))}")
  for tool in "${order[@]}"; do
    echo "run $run: $tool (load $(load))" >&2
    start_server
    rm -rf "$restore_dir/restore-$tool"
    run_tool "$tool" init >/dev/null
    sync; reread "$src"; timed "$tool" backup "$run" -- bash -c "run_tool $tool backup '$src'"
    sync; timed "$tool" restore "$run" -- bash -c "run_tool $tool restore '$restore_dir/restore-$tool'"
    rm -rf "$restore_dir/restore-$tool"
    stop_server
  done
done

python3 - "$results" "$src" "$server" <<'EOF'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    tool, step, run, value, rss, cpu, load, server_cpu = line.split("\t")
    rows[(tool, step)].append((float(value), int(rss), float(load), float(server_cpu), float(cpu)))
print(f"source: {sys.argv[2]}\n")
print("| step (median wall / peak RSS / CPU / server CPU) | hostguard | restic | restic / hostguard | load avg (1 min) at start |")
print("|---|---|---|---|---|")
for step in ("backup", "restore"):
    cells, med = [], {}
    for tool in ("hostguard", "restic"):
        v = rows.get((tool, step), [])
        if not v:
            cells.append("-")
            continue
        med[tool] = statistics.median(x for x, _, _, _, _ in v)
        rss = statistics.median(r for _, r, _, _, _ in v) / 1024
        cpu = statistics.median(c for _, _, _, c, _ in v)
        own = statistics.median(c for _, _, _, _, c in v)
        cells.append(f"{med[tool]:.2f} s / {rss:.0f} MiB / {own:.2f} s / {cpu:.2f} s")
    ratio = f"{med['restic'] / med['hostguard']:.2f}x" if len(med) == 2 else "-"
    loads = ", ".join(f"{l:.1f}" for t in ("hostguard", "restic") for _, _, l, _, _ in rows.get((t, step), []))
    print(f"| {step} | {cells[0]} | {cells[1]} | {ratio} | {loads} |")
print(f"\nserver: {sys.argv[3]}; per run (tool step run seconds rss_kib cpu_s load server_cpu_s):")
for line in open(sys.argv[1]):
    print("    " + line.rstrip().replace("\t", " "))
EOF
