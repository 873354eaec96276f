#!/usr/bin/env bash
# scan-uploads (virusscan) vs `clamdscan --multiscan --fdpass` on the same tree of 24,000 files
# with the same clamd (issue 16): first scan, and rescan of the unchanged tree.
#
#   bash benches/scripts/virusscan-vs-clamdscan.sh [RUNS] [WORKDIR]
#
# Starts its own clamd through scripts/services/virusscan.sh (only the test EICAR `.ndb`; no
# download), MaxThreads $CLAMD_THREADS (default 4). Per run, tools alternate (order rotating),
# each timed step preceded by a re-read of the tree (warm page cache for everyone):
#   clamdscan       clamdscan --multiscan --fdpass (clamdscan has no cache: every run is a full scan)
#   hostguard-first scan-uploads scan --jobs $JOBS (default 64 requests outstanding on its one pipelined
#                   session, so clamd always has queued work, as clamdscan keeps) with a fresh --cache file
#   hostguard-rescan the same command again with the cache the first scan wrote
# Each step must report the 3 infected files. Prints medians and every run as markdown.
# Needs: cargo build --release -p hostguard-examples --bin scan-uploads; clamav-daemon, clamdscan.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
work=${2:-/var/tmp/virusscan-bench}
bin=${SCAN_UPLOADS_BIN:-${CARGO_TARGET_DIR:-target}/release/scan-uploads}
files=${BENCH_FILES:-24000}
jobs=${JOBS:-64}
export HOSTGUARD_CLAMD_THREADS=${CLAMD_THREADS:-4}
tree="$work/tree"
mkdir -p "$work"
if [ ! -d "$tree" ]; then
  python3 benches/scripts/virusscan-tree.py "$tree" "$files" >"$work/tree.txt"
fi
read -r nfiles nbytes <"$work/tree.txt"

pids=()
# shellcheck source=/dev/null
source scripts/services/virusscan.sh
start_clamd >&2
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$HOSTGUARD_CLAMD_DIR"' EXIT

results="$work/results.tsv"
: >"$results"
reread() { find "$tree" -type f -print0 | xargs -0 cat >/dev/null; }
timed() { # tool run command...
  local tool=$1 run=$2 rc=0
  shift 2
  reread
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >"$work/out-$tool.txt" 2>&1 || rc=$?
  local found
  found=$(grep -c 'FOUND$' "$work/out-$tool.txt" || true)
  if [ "$rc" -ne 1 ] || [ "$found" -ne 3 ]; then
    echo "FAILED: $tool (exit $rc, $found found): $*" >&2; tail -5 "$work/out-$tool.txt" >&2; exit 1
  fi
  # /usr/bin/time puts "Command exited with non-zero status 1" first; the figures are last.
  printf '%s\t%s\t%s\n' "$tool" "$run" "$(tail -1 "$work/time.txt" | tr ' ' '\t')" >>"$results"
}
clamdscan_run() { timed clamdscan "$1" clamdscan --config-file="$HOSTGUARD_CLAMD_CONF" --multiscan --fdpass --no-summary "$tree"; }
hostguard_run() {
  rm -f "$work/scan.cache"
  timed hostguard-first "$1" "$bin" scan --socket "$HOSTGUARD_CLAMD_SOCKET" --jobs "$jobs" --cache "$work/scan.cache" "$tree"
  timed hostguard-rescan "$1" "$bin" scan --socket "$HOSTGUARD_CLAMD_SOCKET" --jobs "$jobs" --cache "$work/scan.cache" "$tree"
}
# One untimed warm-up of clamd's own caches for both.
clamdscan --config-file="$HOSTGUARD_CLAMD_CONF" --multiscan --fdpass --no-summary "$tree" >/dev/null 2>&1 || true
for run in $(seq 1 "$runs"); do
  if [ $((run % 2)) -eq 1 ]; then clamdscan_run "$run"; hostguard_run "$run"; else hostguard_run "$run"; clamdscan_run "$run"; fi
done

echo "tree: $nfiles files, $((nbytes / 1048576)) MiB; clamd MaxThreads $HOSTGUARD_CLAMD_THREADS; scan-uploads --jobs $jobs; $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| step | median s | runs (s) | median max RSS MiB |"
echo "| --- | --- | --- | --- |"
for tool in clamdscan hostguard-first hostguard-rescan; do
  awk -v t="$tool" -F'\t' '$1 == t { s[++n] = $3; m[n] = $4 } END {
    asort(s, ss); asort(m, mm);
    med = (n % 2) ? ss[(n + 1) / 2] : (ss[n / 2] + ss[n / 2 + 1]) / 2;
    mrss = (n % 2) ? mm[(n + 1) / 2] : (mm[n / 2] + mm[n / 2 + 1]) / 2;
    runs = ""; for (i = 1; i <= n; i++) runs = runs (i > 1 ? ", " : "") s[i];
    printf "| %s | %.2f | %s | %.0f |\n", t, med, runs, mrss / 1024 }' "$results"
done
awk -F'\t' '{ s[$1] = s[$1] " " $3 } END {
  split(s["clamdscan"], c, " "); split(s["hostguard-first"], f, " "); split(s["hostguard-rescan"], r, " ");
  n = asort(c); asort(f); asort(r);
  mc = (n % 2) ? c[(n + 1) / 2] : (c[n / 2] + c[n / 2 + 1]) / 2;
  mf = (n % 2) ? f[(n + 1) / 2] : (f[n / 2] + f[n / 2 + 1]) / 2;
  mr = (n % 2) ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2;
  printf "\nfirst scan: clamdscan / hostguard = %.2fx; rescan: clamdscan / hostguard = %.1fx\n", mc / mf, mc / mr }' "$results"
