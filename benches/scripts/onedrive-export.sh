#!/usr/bin/env bash
# Export throughput of onedrive-export to the mock Graph server on loopback, with peak RSS, and
# QuickXorHash throughput (criterion). Results go to benches/results/onedrive.md by hand.
#
#   bash benches/scripts/onedrive-export.sh            # 512 MiB + 2,000 small files, 3 runs each
#   EXPORT_BENCH_MIB=1024 EXPORT_BENCH_RUNS=5 bash benches/scripts/onedrive-export.sh
#
# Needs /usr/bin/time (Debian package `time`).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release -p hostguard-examples --bin onedrive-export
export ONEDRIVE_EXPORT_BIN="$target/release/onedrive-export"
cargo bench -p onedrive --bench export
cargo bench -p onedrive --bench quickxor
