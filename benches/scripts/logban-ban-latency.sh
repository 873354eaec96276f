#!/usr/bin/env bash
# Ban latency from a failure line's write to the nftables set holding the address, through the
# engine following a file as the `logban` daemon does (50 ms poll, stock sshd filter, maxretry
# 1), with the nftables sink, the whole benchmark running inside a network namespace this
# script creates (`ip netns add`, removed on exit; `nft` runs there directly, as a daemon's
# would). A ban counts as landed when the `nft -f -` transaction adding the address to
# the jail's set has succeeded; at the end every timed address is checked to be in the set
# (`nft -j list set`). The memory sink is measured in the same run for comparison (the engine's
# own share).
#
# Usage: benches/scripts/logban-ban-latency.sh [BANS] [RUNS]
# Prints the load average before each run: on a loaded machine the tail (p99) grows with it.
# Needs: root (network namespaces), nft (Debian package nftables), ip (iproute2), fail2ban's
# filters (Debian package fail2ban).
set -euo pipefail
cd "$(dirname "$0")/../.."
BANS=${1:-200}
RUNS=${2:-2}
command -v nft >/dev/null || { echo "nft missing: apt-get install nftables" >&2; exit 1; }
cargo build --release -q -p hostguard-examples --bin logban-follow-bench
BIN="${CARGO_TARGET_DIR:-target}/release/logban-follow-bench"
NS="logban-bench-$$"
ip netns add "$NS"
trap 'ip netns del "$NS"' EXIT
ip -n "$NS" link set lo up
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(nft --version)"
for run in $(seq "$RUNS"); do
  echo "run $run, nftables sink in netns $NS; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  ip netns exec "$NS" "$BIN" --period-ms 50 --bans "$BANS" --nftables
  echo "run $run, memory sink; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$BIN" --period-ms 50 --bans "$BANS"
done
