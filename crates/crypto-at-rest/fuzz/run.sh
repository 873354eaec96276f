#!/bin/sh
# Runs crypto-at-rest's fuzz targets at once, each for SECONDS (default 600), and prints
# libFuzzer's final stats (executions, corpus size) per target.
#   fuzz/run.sh [SECONDS] [TARGET...]      (default: every target of `cargo fuzz list`)
# Leak detection is off: LeakSanitizer flags the per-thread state std keeps for threads that the
# multi-threaded engine spawns (scoped threads, joined) as leaks.
# Needs the nightly toolchain and cargo-fuzz; logs go to fuzz/logs/, the corpus to fuzz/corpus/.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-600}
[ $# -gt 0 ] && shift
targets=${*:-$(cargo +nightly fuzz list)}
mkdir -p fuzz/logs
for target in $targets; do
    cargo +nightly fuzz run "$target" -- -max_total_time="$secs" -print_final_stats=1 -detect_leaks=0 \
        >"fuzz/logs/$target.log" 2>&1 &
done
status=0
wait || status=$?
for target in $targets; do
    echo "== $target ($secs s)"
    grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' \
        "fuzz/logs/$target.log" || tail -n 20 "fuzz/logs/$target.log"
    echo "corpus: $(ls "fuzz/corpus/$target" | wc -l) files"
done
exit $status
