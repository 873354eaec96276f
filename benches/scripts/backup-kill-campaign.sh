#!/usr/bin/env bash
# Kill campaign for backup-core (issues 12 and 13): `kill -9` at instants spread over runs of
# `backup`, `forget`, key changes (`key passwd`) and `init`, and (issue 13, PHASES="copy heal
# schedule") `copy` to a mirror, `repair from-mirror` and a scheduled run (`schedule
# --run-now JOB --once`), until KILLS runs were killed mid-run (a point whose run had already
# finished when the kill came is tried, and counted apart). After each point:
#   1. `check --read-data` passes (exit 0);
#   2. every snapshot still listed restores byte-identical to the tree it was taken of, and no
#      snapshot that must stay is gone (a killed backup leaves its snapshot or none; a killed
#      forget keeps at least what the policy keeps; a killed key change leaves a key that opens);
#   3. a rerun of the killed command completes.
# The issue-13 phases add:
#   copy      each point copies every snapshot into a fresh mirror (made by `init
#             --copy-params-from`); after the kill the mirror passes `check --read-data` and
#             lists only snapshots of the source; after the rerun it lists all of them and
#             passes again.
#   heal      each point deletes 3 random packs of the repository (the mirror, kept up to date
#             with `copy`, holds them) and kills `repair from-mirror`; after the kill the
#             repository's `check --read-data` names no damage but in the deleted packs, and the
#             mirror passes; the rerun must exit 0 (all healed), after which the repository
#             passes `check --read-data` and every snapshot restores byte-identical.
#   schedule  each point changes the tree and kills `schedule --run-now nightly --once` (a
#             policy of backup, forget --keep-last 3 and check --read-data-subset 25%); the
#             rerun (`--run-now nightly --once`) must succeed and leave a status file whose job
#             is not marked running and records a success.
# For these three, D is the duration of the phase's last whole run: its first uninterrupted
# run, or a later point's run that ended before its kill (a rerun after a kill does only what
# was left, so it does not count).
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
#   MIN_KILLS_PER_PHASE=0 (go on past KILLS until each phase has that many runs killed)
#   BACKUP_BIN=path/to/backup (default: build it with cargo; RELEASE=1 for a release build)
#   TREE_MB=48 (size of the generated tree), WORK=dir (kept; default a temporary directory)
# Prints a markdown table of every point and a summary line; exits 1 at the first failure.
set -euo pipefail

KILLS=${KILLS:-50}
POINTS=${POINTS:-$((3 * KILLS))}
SEED=${SEED:-1}
PHASES=${PHASES:-"backup backup forget key init"}
# The issue-13 phases: PHASES="copy heal schedule" MIN_KILLS_PER_PHASE=30
MIN_KILLS_PER_PHASE=${MIN_KILLS_PER_PHASE:-0}
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
# The mirrors' own password (copy --to and repair from-mirror read these).
export BACKUP_TO_PASSWORD="kill campaign mirror" BACKUP_MIRROR_PASSWORD="kill campaign mirror"

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

# --- issue 13: copy, repair from-mirror, a scheduled run ---------------------------------------

mirror_bk() { BACKUP_PASSWORD="$BACKUP_TO_PASSWORD" "$BACKUP_BIN" -r "$1" "${@:2}"; }

# check --read-data passes on mirror $1 (exit 0).
check_mirror() {
    local out
    if ! out=$(mirror_bk "$1" check --read-data 2>&1); then
        echo "FAIL: check --read-data of mirror $1 after point $point ($phase):" >&2
        echo "$out" >&2
        exit 1
    fi
}

mirror_ids() {
    mirror_bk "$1" --json snapshots | python3 -c "
import json, sys
for s in json.load(sys.stdin): print(s['id'])"
}

COPY_MIRROR="$WORK/copy-mirror"
phase_copy() {
    CMD_REPO=""
    # A fresh, empty mirror each point, so every copy sends everything.
    if [ ! -e "$WORK/empty-mirror" ]; then
        BACKUP_PASSWORD="$BACKUP_TO_PASSWORD" BACKUP_FROM_PASSWORD="$PW_CUR" \
            "$BACKUP_BIN" -r "$WORK/empty-mirror" init --copy-params-from "$REPO" >/dev/null
    fi
    rm -rf "$COPY_MIRROR"
    cp -a "$WORK/empty-mirror" "$COPY_MIRROR"
    CMD="copy --to $COPY_MIRROR"
}
verify_copy() {
    check_mirror "$COPY_MIRROR"
    local source id
    source=$(snapshot_ids)
    for id in $(mirror_ids "$COPY_MIRROR"); do
        grep -qx "$id" <<<"$source" || { echo "FAIL: mirror has $id the source lacks" >&2; exit 1; }
    done
}
rerun_copy() {
    timed bk copy --to "$COPY_MIRROR" >/dev/null
    check_mirror "$COPY_MIRROR"
    if [ "$(mirror_ids "$COPY_MIRROR" | sort)" != "$(snapshot_ids | sort)" ]; then
        echo "FAIL: after the rerun of copy the mirror lacks snapshots" >&2
        exit 1
    fi
}

HEAL_MIRROR="$WORK/heal-mirror"
HEAL_LOST=3
phase_heal() {
    CMD_REPO=""
    if [ ! -e "$HEAL_MIRROR" ]; then
        BACKUP_PASSWORD="$BACKUP_TO_PASSWORD" BACKUP_FROM_PASSWORD="$PW_CUR" \
            "$BACKUP_BIN" -r "$HEAL_MIRROR" init --copy-params-from "$REPO" >/dev/null
    fi
    bk copy --to "$HEAL_MIRROR" >/dev/null
    # Lose HEAL_LOST packs the mirror holds too (and note the blobs they held).
    local packs n i
    mapfile -t packs < <(cd "$REPO" && find data -type f | sort)
    : >"$WORK/heal-lost"
    # The blobs each pack holds: once a (killed) repair rebuilt the index without the deleted
    # packs, check names their blobs as in no index, without the pack.
    bk --json blobs >"$WORK/heal-blobs.json"
    for i in $(seq 1 "$HEAL_LOST"); do
        n=$(draw "${#packs[@]}" "heal-$point-$i")
        if [ -e "$REPO/${packs[$n]}" ]; then
            rm "$REPO/${packs[$n]}"
            echo "${packs[$n]}" >>"$WORK/heal-lost"
        fi
    done
    bk --json blobs | python3 -c '
import json, sys
lost = set(open(sys.argv[1]).read().split())
for line in sys.stdin:
    b = json.loads(line)
    if b["pack"] in lost: print(b["id"])' "$WORK/heal-lost" >>"$WORK/heal-lost"
    DAMAGED=1
    # Snapshots forgotten here since (by the scheduled runs) stay forgotten.
    CMD="repair from-mirror --skip-missing-snapshots $HEAL_MIRROR"
}
verify_heal() {
    check_mirror "$HEAL_MIRROR"
    # The killed repair added no damage: whatever check finds lies in the packs deleted.
    local status=0
    bk --json check --read-data >"$WORK/heal-check.json" 2>"$WORK/heal-check.err" || status=$?
    if [ "$status" != 0 ] && [ "$status" != 4 ]; then
        echo "FAIL: check after killed repair at point $point: exit $status" >&2
        cat "$WORK/heal-check.err" >&2
        exit 1
    fi
    if ! python3 - "$WORK/heal-check.json" "$WORK/heal-lost" "$WORK/heal-blobs.json" <<'PY'
import json, sys
problems = json.load(open(sys.argv[1]))["problems"]
lost = [l.strip() for l in open(sys.argv[2]) if l.strip()]
blobs = [json.loads(l) for l in open(sys.argv[3]) if l.strip()]
lost_blobs = {b["id"] for b in blobs if b["pack"] in lost}
def explained(p):
    text = p["object"] + " " + p["problem"]
    return any(pack in text for pack in lost) or any(blob in text for blob in lost_blobs)
other = [p for p in problems if not explained(p)]
for p in other[:5]:
    print(f"  {p}", file=sys.stderr)
sys.exit(1 if other else 0)
PY
    then
        echo "FAIL: killed repair at point $point left damage outside the deleted packs" >&2
        exit 1
    fi
}
rerun_heal() {
    timed bk repair from-mirror --skip-missing-snapshots "$HEAL_MIRROR" >"$WORK/heal.out" 2>&1 || {
        echo "FAIL: repair from-mirror rerun at point $point did not heal everything:" >&2
        cat "$WORK/heal.out" >&2
        exit 1
    }
}

SCHEDULE_STATE="$WORK/schedule-state"
schedule_cmd() {
    echo "schedule --policy $WORK/policy.toml --state-dir $SCHEDULE_STATE $*"
}
phase_schedule() {
    CMD_REPO=""
    cat >"$WORK/policy.toml" <<TOML
[[job]]
name = "nightly"
at = "daily 03:00"
[[job.step]]
kind = "backup"
paths = ["$SRC"]
[[job.step]]
kind = "forget"
keep_last = 3
[[job.step]]
kind = "check"
read_data_subset = "25%"
TOML
    # The tree changes; the scheduled backup saves it, then forget keeps the newest 3 (the
    # new one and two others): all but the newest two before the run may go.
    local next="$WORK/next"
    rm -rf "$next"
    python3 "$HERE/mutate-tree.py" "$SRC" "$next" 0.2 "$SEED$point" >/dev/null
    rm -rf "$SRC"
    mv "$next" "$SRC"
    rm -rf "$WORK/forgettable"
    mkdir -p "$WORK/forgettable"
    snapshot_ids | head -n -2 | while read -r id; do touch "$WORK/forgettable/$id"; done
    CMD=$(schedule_cmd --run-now nightly --once)
}
verify_schedule() { :; }
rerun_schedule() {
    local out
    # Serves a request the kill left (and runs the job: a request is not doubled).
    read -r -a args <<<"$(schedule_cmd --run-now nightly --once)"
    out=$(timed bk "${args[@]}" 2>&1) || {
        echo "FAIL: scheduled run after point $point: $out" >&2
        exit 1
    }
    read -r -a args <<<"$(schedule_cmd --status)"
    bk "${args[@]}" | python3 -c '
import json, sys
job = json.load(sys.stdin)["jobs"]["nightly"]
sys.exit(0 if job.get("running_since") is None and job.get("last_success") else 1)' || {
        echo "FAIL: status after the scheduled rerun at point $point marks the job running or unsuccessful" >&2
        exit 1
    }
    # Forget kept the newest 3, whichever they are; the states of the others go.
    record_new_snapshots
    local listed id
    listed=$(snapshot_ids)
    if [ "$(wc -l <<<"$listed")" -gt 3 ]; then
        echo "FAIL: the scheduled forget left more than 3 snapshots at point $point" >&2
        exit 1
    fi
    for id in $(ls "$STATES"); do
        grep -qx "$id" <<<"$listed" || rm -rf "$STATES/$id"
    done
    rm -rf "$WORK/forgettable"
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
    if [ -z "${DURATION[$1]:-}" ] || [ -z "${FIXED_DURATION[$1]:-}" ]; then
        DURATION[$1]=$(cat "$WORK/duration-$1")
    fi
}
declare -A DURATION
# Phases whose rerun after a kill does only what the killed run left (copy, heal) or does
# something else (schedule): D is that of their last whole run, the first uninterrupted one
# or a later one that ended before its kill.
declare -A FIXED_DURATION=([copy]=1 [heal]=1 [schedule]=1)

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

DAMAGED=""
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo
echo "| point | phase | command | delay ms | run ms | fraction | killed | snapshots restored |"
echo "|---|---|---|---|---|---|---|---|"
killed_count=0
declare -A per_phase
point=0
# Whether every phase of PHASES has MIN_KILLS_PER_PHASE runs killed mid-run.
phases_done() {
    local p
    for p in "${phase_list[@]}"; do
        [ "${per_phase[$p]:-0}" -ge "$MIN_KILLS_PER_PHASE" ] || return 1
    done
}
while { [ "$killed_count" -lt "$KILLS" ] || ! phases_done; } && [ "$point" -lt "$POINTS" ]; do
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
    started_ms=$(now_ms)
    if [ -n "${FIXED_DURATION[$phase]:-}" ]; then
        # Watched until the kill: a run that ends by itself first gives the whole duration of
        # one, the D of this phase's next points (the machine's load changes meanwhile).
        while state=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) && [ "$state" != Z ] &&
            [ $(($(now_ms) - started_ms)) -lt "$delay" ]; do
            sleep 0.005
        done
    else
        sleep "$(awk "BEGIN { print $delay / 1000 }")"
    fi
    ended_ms=$(now_ms)
    kill -9 "$pid" 2>/dev/null || true
    status=0
    wait "$pid" 2>/dev/null || status=$?
    if [ "$status" != 137 ] && [ -n "${FIXED_DURATION[$phase]:-}" ]; then
        DURATION[$phase]=$((ended_ms - started_ms))
    fi
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
    # A phase that damaged the repository on purpose (heal) is checked after its rerun only.
    [ -n "${DAMAGED:-}" ] || check_repository
    "verify_$phase"
    [ -n "${DAMAGED:-}" ] || restore_every_snapshot
    run_timed "$phase"
    record_new_snapshots
    check_repository
    [ -z "${DAMAGED:-}" ] || restore_every_snapshot
    DAMAGED=""
    fraction=$(python3 -c "print(f'{$delay / max($duration, 1):.2f}')")
    echo "| $point | $phase | \`$cmd\` | $delay | $duration | $fraction | $killed | $restored |"
done
summary=""
for phase in "${!per_phase[@]}"; do summary="$summary $phase=${per_phase[$phase]}"; done
echo
echo "kill campaign: $point points, $killed_count killed mid-run (by phase:$summary), seed $SEED, tree ${TREE_MB} MiB: all passed"
if [ "$killed_count" -lt "$KILLS" ] || ! phases_done; then
    echo "FAIL: only $killed_count of $KILLS runs killed mid-run in $POINTS points" \
        "(at least $MIN_KILLS_PER_PHASE per phase wanted:$summary)" >&2
    exit 1
fi
