#!/usr/bin/env bash
# Kill campaign for backup-core (issue 12): `kill -9` at instants spread over runs of `backup`,
# `forget`, key changes (`key passwd`) and `init`, until KILLS runs were killed mid-run (a
# point whose run had already finished when the kill came is tried, and counted apart). After
# each point:
#   1. `check --read-data` passes (exit 0);
#   2. every snapshot still listed restores byte-identical to the tree it was taken of, and no
#      snapshot that must stay is gone (a killed backup leaves its snapshot or none; a killed
#      forget keeps at least what the policy keeps; a killed key change leaves a key that opens);
#   3. a rerun of the killed command completes.
#
# Kill instants: each phase's last uninterrupted run gives its duration D; the kill comes after
# a delay drawn uniformly from [0, 1.1 D] (deterministic from SEED), so the points spread over
# the whole run, start-up included. The table printed gives each point's delay as a fraction of D.
#
# Each phase is one function (`phase_backup`, `phase_forget`, `phase_key`, `phase_init`) that
# prepares the run and sets CMD to the command to kill (and CMD_REPO when it is not the main
# repository), and has a `verify_<phase>` and `rerun_<phase>` partner; a
# phase is added by writing these three and naming it in PHASES (prune: see
# backup-kill-prune.sh).
#
# Usage: benches/scripts/backup-kill-campaign.sh
#   KILLS=50 SEED=1 PHASES="backup backup forget key init"   (phases in turn, with repeats)
#   POINTS=150 (the most points tried to reach KILLS)
#   BACKUP_BIN=path/to/backup (default: build it with cargo; RELEASE=1 for a release build)
#   TREE_MB=48 (size of the generated tree), WORK=dir (kept; default a temporary directory)
# Prints a markdown table of every point and a summary line; exits 1 at the first failure.
set -euo pipefail

KILLS=${KILLS:-50}
POINTS=${POINTS:-$((3 * KILLS))}
SEED=${SEED:-1}
PHASES=${PHASES:-"backup backup forget key init"}
TREE_MB=${TREE_MB:-48}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

if [ -z "${BACKUP_BIN:-}" ]; then
    profile=debug
    flags=()
    if [ "${RELEASE:-0}" = 1 ]; then profile=release; flags=(--release); fi
    (cd "$ROOT" && cargo build -q "${flags[@]}" -p hostguard-examples --bin backup)
    BACKUP_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$profile/backup"
fi
if [ -z "${WORK:-}" ]; then
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
REPO="$WORK/repo"
SRC="$WORK/src"
STATES="$WORK/states"
mkdir -p "$STATES"
PW_CUR="kill campaign 0"
PW_NEXT="$PW_CUR"

# A deterministic pseudo-random number in [0, $1) for draw number $2.
draw() {
    python3 -c "import random,sys; r=random.Random('$SEED-$2'); print(r.randrange($1))"
}

bk() {
    BACKUP_PASSWORD="$PW_CUR" "$BACKUP_BIN" -r "$REPO" "$@"
}

# Milliseconds since the epoch.
now_ms() { date +%s%3N; }

generate_tree() { python3 "$HERE/gen-backup-tree.py" "$SRC" "$TREE_MB" "$SEED"; }

# The snapshot ids the repository lists, one per line, oldest first.
snapshot_ids() {
    bk --json snapshots | python3 -c "
import json, sys
for s in json.load(sys.stdin): print(s['id'])"
}

# Expected content of each snapshot: $STATES/<id> is a copy of the tree it was taken of.
# Snapshots that appeared since the last call are attributed to the current tree.
record_new_snapshots() {
    local id
    for id in $(snapshot_ids); do
        if [ ! -e "$STATES/$id" ]; then
            cp -a "$SRC" "$STATES/$id"
        fi
    done
}

check_repository() {
    local out
    if ! out=$(bk check --read-data 2>&1); then
        echo "FAIL: check --read-data after point $point ($phase):" >&2
        echo "$out" >&2
        exit 1
    fi
}

restore_every_snapshot() {
    local id listed target
    listed=$(snapshot_ids)
    restored=0
    for id in $listed; do
        if [ ! -e "$STATES/$id" ]; then
            echo "FAIL: snapshot $id appeared from nowhere after point $point" >&2
            exit 1
        fi
        target="$WORK/restore"
        rm -rf "$target"
        bk restore "$id" --target "$target" >/dev/null
        if ! diff -r "$STATES/$id" "$target/src" >/dev/null; then
            echo "FAIL: snapshot $id does not restore identically after point $point" >&2
            diff -r "$STATES/$id" "$target/src" | head >&2 || true
            exit 1
        fi
        restored=$((restored + 1))
    done
    rm -rf "$WORK/restore"
    # Forgotten snapshots' states are dropped only by a completed forget (see verify_forget).
    for state in "$STATES"/*; do
        id=$(basename "$state")
        if ! grep -qx "$id" <<<"$listed" && [ ! -e "$WORK/forgettable/$id" ]; then
            echo "FAIL: snapshot $id was lost at point $point ($phase)" >&2
            exit 1
        fi
    done
}

# --- phases: prepare and print the command to kill; verify; rerun -----------------------------

phase_backup() {
    CMD_REPO=""
    # A new round: the tree changes, the backup that saves it is killed.
    local next="$WORK/next"
    rm -rf "$next"
    python3 "$HERE/mutate-tree.py" "$SRC" "$next" 0.2 "$SEED$point" >/dev/null
    rm -rf "$SRC"
    mv "$next" "$SRC"
    CMD="backup $SRC"
}
verify_backup() { :; }
rerun_backup() { timed bk backup "$SRC" >/dev/null || [ $? = 3 ]; }

FORGET_KEEP=3
phase_forget() {
    CMD_REPO=""
    # Enough snapshots for the policy to forget some.
    local n
    n=$(snapshot_ids | wc -l)
    while [ "$n" -lt $((FORGET_KEEP + 3)) ]; do
        rerun_backup
        record_new_snapshots
        n=$((n + 1))
    done
    # The snapshots it may delete: all but the newest FORGET_KEEP.
    rm -rf "$WORK/forgettable"
    mkdir -p "$WORK/forgettable"
    snapshot_ids | head -n -$FORGET_KEEP | while read -r id; do touch "$WORK/forgettable/$id"; done
    CMD="forget --keep-last $FORGET_KEEP"
}
verify_forget() {
    local kept
    kept=$(snapshot_ids)
    for id in $(ls "$STATES"); do
        if [ ! -e "$WORK/forgettable/$id" ] && ! grep -qx "$id" <<<"$kept"; then
            echo "FAIL: forget killed at point $point lost kept snapshot $id" >&2
            exit 1
        fi
    done
}
rerun_forget() {
    timed bk forget --keep-last $FORGET_KEEP >/dev/null
    for f in "$WORK/forgettable"/*; do
        [ -e "$f" ] && rm -rf "$STATES/$(basename "$f")"
    done
    rm -rf "$WORK/forgettable"
}

phase_key() {
    CMD_REPO=""
    PW_NEXT="kill campaign $point"
    CMD="key passwd"
}
opens_with() { BACKUP_PASSWORD="$1" "$BACKUP_BIN" -r "$REPO" key list >/dev/null 2>&1; }
verify_key() {
    if ! opens_with "$PW_CUR" && ! opens_with "$PW_NEXT"; then
        echo "FAIL: key passwd killed at point $point left no key that opens" >&2
        exit 1
    fi
}
rerun_key() {
    BACKUP_PASSWORD="$PW_CUR" BACKUP_NEW_PASSWORD="$PW_NEXT" \
        timed "$BACKUP_BIN" -r "$REPO" key passwd >/dev/null
    PW_CUR="$PW_NEXT"
    opens_with "$PW_CUR"
}

INIT_REPO="$WORK/init-repo"
phase_init() {
    rm -rf "$INIT_REPO"
    CMD_REPO="$INIT_REPO"
    CMD="init"
}
verify_init() { :; }
rerun_init() {
    # A killed init leaves nothing, keys only (a rerun reuses them) or the whole repository.
    local out
    if ! out=$(BACKUP_PASSWORD="$PW_CUR" timed "$BACKUP_BIN" -r "$INIT_REPO" init 2>&1); then
        grep -q "already exists" <<<"$out" || { echo "FAIL: init rerun: $out" >&2; exit 1; }
    fi
    BACKUP_PASSWORD="$PW_CUR" "$BACKUP_BIN" -r "$INIT_REPO" check --read-data >/dev/null
}

# --- the campaign ----------------------------------------------------------------------------

# Runs a command, recording how long it took as the duration of the current phase's runs
# (a file, as reruns may call it in a subshell).
timed() {
    local start status=0
    start=$(now_ms)
    "$@" || status=$?
    echo $(($(now_ms) - start)) >"$WORK/duration-$phase"
    return $status
}
run_timed() {
    "rerun_$1"
    DURATION[$1]=$(cat "$WORK/duration-$1")
}
declare -A DURATION

generate_tree
bk init >/dev/null
bk backup "$SRC" >/dev/null
record_new_snapshots
# One uninterrupted run of each phase to time it.
read -r -a phase_list <<<"$PHASES"
for phase in $(printf '%s\n' "${phase_list[@]}" | sort -u); do
    point=0
    "phase_$phase"
    run_timed "$phase"
    record_new_snapshots
done

echo "| point | phase | command | delay ms | run ms | fraction | killed | snapshots restored |"
echo "|---|---|---|---|---|---|---|---|"
killed_count=0
declare -A per_phase
point=0
while [ "$killed_count" -lt "$KILLS" ] && [ "$point" -lt "$POINTS" ]; do
    point=$((point + 1))
    phase=${phase_list[$(((point - 1) % ${#phase_list[@]}))]}
    "phase_$phase"
    cmd=$CMD
    duration=${DURATION[$phase]}
    delay=$(draw $((duration * 11 / 10 + 1)) "$point")
    read -r -a args <<<"$cmd"
    BACKUP_PASSWORD="$PW_CUR" BACKUP_NEW_PASSWORD="${PW_NEXT:-}" \
        "$BACKUP_BIN" -r "${CMD_REPO:-$REPO}" "${args[@]}" >/dev/null 2>&1 &
    pid=$!
    sleep "$(awk "BEGIN { print $delay / 1000 }")"
    kill -9 "$pid" 2>/dev/null || true
    status=0
    wait "$pid" 2>/dev/null || status=$?
    # 137: killed by the signal; anything else: the run had ended by itself.
    if [ "$status" = 137 ]; then
        killed=yes
        killed_count=$((killed_count + 1))
        per_phase[$phase]=$((${per_phase[$phase]:-0} + 1))
    else
        killed="no (exit $status)"
    fi
    if [ "$phase" = key ]; then
        verify_key
        # Whichever key opens is used to check (and for the rerun).
        opens_with "$PW_CUR" || PW_CUR="$PW_NEXT"
    fi
    # A killed backup may have saved its snapshot: it holds the current tree.
    record_new_snapshots
    check_repository
    "verify_$phase"
    restore_every_snapshot
    run_timed "$phase"
    record_new_snapshots
    check_repository
    fraction=$(python3 -c "print(f'{$delay / max($duration, 1):.2f}')")
    echo "| $point | $phase | \`$cmd\` | $delay | $duration | $fraction | $killed | $restored |"
done
summary=""
for phase in "${!per_phase[@]}"; do summary="$summary $phase=${per_phase[$phase]}"; done
echo
echo "kill campaign: $point points, $killed_count killed mid-run (by phase:$summary), seed $SEED, tree ${TREE_MB} MiB: all passed"
if [ "$killed_count" -lt "$KILLS" ]; then
    echo "FAIL: only $killed_count of $KILLS runs killed mid-run in $POINTS points" >&2
    exit 1
fi
