#!/usr/bin/env bash
# Peak RSS of `backup backup` for one 4 MiB file vs one 4 GiB file (issue 4: the 4 GiB backup may
# peak at most 64 MiB above the 4 MiB one). Random (incompressible) data, local repository.
#
#   bash benches/scripts/backup-memory.sh [WORKDIR]
#
# Needs the release binary: cargo build --release -p hostguard-examples --bin backup
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${BACKUP_BIN:-${CARGO_TARGET_DIR:-target}/release/backup}
work=${1:-$(mktemp -d /var/tmp/backup-mem.XXXXXX)}
mkdir -p "$work"
export BACKUP_PASSWORD=memory-benchmark
[ -f "$work/small/f" ] || { mkdir -p "$work/small"; head -c 4M /dev/urandom >"$work/small/f"; }
[ -f "$work/large/f" ] || { mkdir -p "$work/large"; head -c 4G /dev/urandom >"$work/large/f"; }

peak() { # label dir
  rm -rf "$work/repo-$1"
  "$bin" -r "$work/repo-$1" init >/dev/null
  /usr/bin/time -v "$bin" -r "$work/repo-$1" backup "$2" --no-parent 2>"$work/time-$1.txt" >/dev/null
  grep 'Maximum resident set size' "$work/time-$1.txt" | awk '{print $6}'
}
small=$(peak small "$work/small")
large=$(peak large "$work/large")
wall=$(grep 'Elapsed (wall clock)' "$work/time-large.txt" | awk '{print $8}')
echo "4 MiB file: peak RSS ${small} KiB"
echo "4 GiB file: peak RSS ${large} KiB (wall ${wall})"
echo "difference: $(( (large - small) / 1024 )) MiB (limit 64 MiB)"
rm -rf "$work/repo-small" "$work/repo-large"
[ $(( large - small )) -le $(( 64 * 1024 )) ]
