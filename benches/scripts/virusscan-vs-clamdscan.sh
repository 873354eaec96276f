#!/usr/bin/env bash
# scan-uploads (virusscan) vs `clamdscan --multiscan --fdpass` on the same tree of 24,000 files
# with the same clamd (issue 16): first scan, and rescan of the unchanged tree.
#
#   bash benches/scripts/virusscan-vs-clamdscan.sh [RUNS] [WORKDIR]
#
# Starts its own clamd through scripts/services/virusscan.sh (only the test EICAR `.ndb`; no
# download), MaxThreads $CLAMD_THREADS (default 4), once per clamd temporary directory in
# $CLAMD_TMP (default "disk tmpfs"):
#   disk   clamd's default TemporaryDirectory (/tmp, on this machine's root file system). clamd
#          makes and removes a directory there for every file it scans, whoever asks.
#   tmpfs  TemporaryDirectory in a fresh directory under /dev/shm (skipped if there is none).
# Per run, tools alternate (order rotating), each timed step preceded by a re-read of the tree
# (warm page cache for everyone):
#   clamdscan       clamdscan --multiscan --fdpass (clamdscan has no cache: every run is a full scan)
#   hostguard-first scan-uploads scan --jobs $JOBS (default 128 requests outstanding on its one pipelined
#                   session: clamd queues 100 of them, as many as clamdscan keeps queued, and the rest
#                   wait in the socket for clamd to take when this tool is not scheduled) with a fresh
#                   --cache file
#   hostguard-rescan the same command again with the cache the first scan wrote
# Each step must report the 3 infected files. Prints, per clamd: medians, every run, the client's
# own CPU time (user+sys: independent of the machine's load) and clamd's during the step, the
# first scan's paired ratio per run, and the load average before each step, as markdown.
# Needs: cargo build --release -p hostguard-examples --bin scan-uploads; clamav-daemon, clamdscan.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
work=${2:-/var/tmp/virusscan-bench}
bin=${SCAN_UPLOADS_BIN:-${CARGO_TARGET_DIR:-target}/release/scan-uploads}
files=${BENCH_FILES:-24000}
jobs=${JOBS:-128}
modes=${CLAMD_TMP:-disk tmpfs}
export HOSTGUARD_CLAMD_THREADS=${CLAMD_THREADS:-4}
if [ ! -x "$bin" ]; then
  echo "no $bin: cargo build --release -p hostguard-examples --bin scan-uploads (or set SCAN_UPLOADS_BIN)" >&2
  exit 2
fi
tree="$work/tree"
mkdir -p "$work"
if [ ! -d "$tree" ]; then
  python3 benches/scripts/virusscan-tree.py "$tree" "$files" >"$work/tree.txt"
fi
read -r nfiles nbytes <"$work/tree.txt"

pids=()
cleanup_dirs=()
# shellcheck source=/dev/null
source scripts/services/virusscan.sh
stop_clamd() {
  if [ "${#pids[@]}" -gt 0 ]; then kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; fi
  pids=()
  if [ "${#cleanup_dirs[@]}" -gt 0 ]; then rm -rf "${cleanup_dirs[@]}"; fi
  cleanup_dirs=()
}
trap stop_clamd EXIT

results="$work/results.tsv"
: >"$results"
reread() { find "$tree" -type f -print0 | xargs -0 cat >/dev/null; }
clamd_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/${pids[0]}/stat"; }
timed() { # mode tool run command...
  local mode=$1 tool=$2 run=$3 rc=0 load
  shift 3
  reread
  load=$(cut -d' ' -f1 /proc/loadavg)
  local cpu_before
  cpu_before=$(clamd_cpu)
  /usr/bin/time -f "%e %M %U %S" -o "$work/time.txt" "$@" >"$work/out-$tool.txt" 2>&1 || rc=$?
  local found
  found=$(grep -c 'FOUND$' "$work/out-$tool.txt" || true)
  if [ "$rc" -ne 1 ] || [ "$found" -ne 3 ]; then
    echo "FAILED: $tool (exit $rc, $found found): $*" >&2; tail -5 "$work/out-$tool.txt" >&2; exit 1
  fi
  # /usr/bin/time puts "Command exited with non-zero status 1" first; the figures are last.
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$tool" "$run" "$(tail -1 "$work/time.txt" | tr ' ' '\t')" "$load" \
    "$(awk -v a="$(clamd_cpu)" -v b="$cpu_before" 'BEGIN { printf "%.2f", a - b }')" >>"$results"
}
clamdscan_run() { timed "$1" clamdscan "$2" clamdscan --config-file="$HOSTGUARD_CLAMD_CONF" --multiscan --fdpass --no-summary "$tree"; }
hostguard_run() {
  rm -f "$work/scan.cache"
  timed "$1" hostguard-first "$2" "$bin" scan --socket "$HOSTGUARD_CLAMD_SOCKET" --jobs "$jobs" --cache "$work/scan.cache" "$tree"
  timed "$1" hostguard-rescan "$2" "$bin" scan --socket "$HOSTGUARD_CLAMD_SOCKET" --jobs "$jobs" --cache "$work/scan.cache" "$tree"
}

for mode in $modes; do
  case $mode in
    disk) unset HOSTGUARD_CLAMD_TMPDIR ;;
    tmpfs)
      if [ ! -d /dev/shm ]; then echo "no /dev/shm: tmpfs runs skipped" >&2; continue; fi
      HOSTGUARD_CLAMD_TMPDIR=$(mktemp -d /dev/shm/hostguard-clamd-tmp.XXXXXX)
      export HOSTGUARD_CLAMD_TMPDIR
      cleanup_dirs+=("$HOSTGUARD_CLAMD_TMPDIR")
      ;;
    *) echo "CLAMD_TMP: unknown mode $mode (disk, tmpfs)" >&2; exit 2 ;;
  esac
  start_clamd >&2
  # One untimed warm-up of clamd's own caches for both.
  clamdscan --config-file="$HOSTGUARD_CLAMD_CONF" --multiscan --fdpass --no-summary "$tree" >/dev/null 2>&1 || true
  for run in $(seq 1 "$runs"); do
    if [ $((run % 2)) -eq 1 ]; then clamdscan_run "$mode" "$run"; hostguard_run "$mode" "$run"; else hostguard_run "$mode" "$run"; clamdscan_run "$mode" "$run"; fi
  done
  stop_clamd
done

echo "tree: $nfiles files, $((nbytes / 1048576)) MiB; clamd MaxThreads $HOSTGUARD_CLAMD_THREADS; scan-uploads --jobs $jobs; $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for mode in $modes; do
  grep -q "^$mode	" "$results" || continue
  echo
  case $mode in
    disk) echo "### clamd TemporaryDirectory: default (/tmp, $(df -T /tmp | awk 'NR == 2 { print $2 }'))" ;;
    tmpfs) echo "### clamd TemporaryDirectory: tmpfs (/dev/shm)" ;;
  esac
  echo
  echo "| step | median s | runs (s) | median client CPU s (user+sys) | median clamd CPU s | median max RSS MiB |"
  echo "| --- | --- | --- | --- | --- | --- |"
  for tool in clamdscan hostguard-first hostguard-rescan; do
    awk -v m="$mode" -v t="$tool" -F'\t' '
      function median(a, n) { asort(a); return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
      $1 == m && $2 == t { n++; s[n] = $4; m2[n] = $5; c[n] = $6 + $7; d[n] = $9; runs = runs (n > 1 ? ", " : "") $4 }
      END { printf "| %s | %.2f | %s | %.2f | %.2f | %.0f |\n", t, median(s, n), runs, median(c, n), median(d, n), median(m2, n) / 1024 }' "$results"
  done
  awk -v m="$mode" -F'\t' '
    function median(a, n) { asort(a); return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    $1 != m { next }
    $2 == "clamdscan" { c[$3] = $4; cpu_c[$3] = $6 + $7 }
    $2 == "hostguard-first" { f[$3] = $4; cpu_f[$3] = $6 + $7 }
    $2 == "hostguard-rescan" { r[$3] = $4 }
    { load[++nl] = $8 }
    END {
      for (run in c) { n++; rf[n] = c[run] / f[run]; rr[n] = c[run] / r[run]; cc[n] = c[run]; ff[n] = f[run]; if (f[run] < c[run]) won++ }
      list = ""; for (i = 1; i <= n; i++) list = list (i > 1 ? ", " : "") sprintf("%.2f", c[i] / f[i])
      mc = median(cc, n); mf = median(ff, n); mrf = median(rf, n); mrr = median(rr, n)
      asort(load)
      printf "\nfirst scan: clamdscan / hostguard = %.2fx (medians), paired per run: median %.2fx, runs %s; hostguard faster in %d of %d runs\n", mc / mf, mrf, list, won, n
      printf "rescan: clamdscan / hostguard = %.1fx (paired median)\n", mrr
      printf "load average (1 min) before the steps: %s to %s, median %s\n", load[1], load[nl], (nl % 2) ? load[(nl + 1) / 2] : load[nl / 2] }' "$results"
done
