# Shared by the backup campaign scripts (sourced, not run). Needs HERE and ROOT.
#
# campaign_setup: builds `backup` unless BACKUP_BIN is set, and makes WORK (a temporary
# directory removed at exit unless WORK was given).
campaign_setup() {
    if [ -z "${BACKUP_BIN:-}" ]; then
        (cd "$ROOT" && cargo build -q -p hostguard-examples --bin backup)
        BACKUP_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/backup"
    fi
    if [ -z "${WORK:-}" ]; then
        WORK=$(mktemp -d)
        trap 'rm -rf "$WORK"' EXIT
    fi
    mkdir -p "$WORK"
}

# campaign_two_snapshots SRC STATES TREE_MB SEED CMD...: writes a generated tree to SRC, backs
# it up with `CMD --json backup SRC`, changes 30 % of it and backs it up again; each state is
# kept as STATES/<snapshot id>.
campaign_two_snapshots() {
    local src=$1 states=$2 mb=$3 seed=$4 round id
    shift 4
    python3 "$HERE/gen-backup-tree.py" "$src" "$mb" "$seed"
    for round in 1 2; do
        if [ "$round" = 2 ]; then
            python3 "$HERE/mutate-tree.py" "$src" "$src.next" 0.3 "$seed" >/dev/null
            rm -rf "$src"
            mv "$src.next" "$src"
        fi
        id=$("$@" --json backup "$src" | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
        cp -a "$src" "$states/$id"
    done
}
