#!/usr/bin/env bash
# Flood campaign for logban's jails (issue 3, Safety): ten million distinct failing addresses
# through the engine with the default tracker cap, plus three attackers that fail every 100,000
# flood lines. Asserts peak RSS < 256 MiB, the attackers banned and no flood address banned,
# and prints the figures (also appended to benches/results/logban-flood.txt).
#
# Usage: benches/scripts/logban-flood.sh [lines]   (default 10000000)
set -euo pipefail
cd "$(dirname "$0")/../.."
export LOGBAN_FLOOD_LINES="${1:-10000000}"
out=$(cargo test --release -p logban --test flood -- --ignored --nocapture \
      flood_ten_million_addresses_stays_under_256_mib 2>&1 | tee /dev/stderr | grep '^FLOOD ')
{
  echo "$(date -u +%FT%TZ) nproc=$(nproc) cpu=\"$(lscpu | sed -n 's/^Model name: *//p')\" $out"
} | tee -a benches/results/logban-flood.txt
