#!/usr/bin/env bash
# Healing campaign for backup-core (issue 13): RUNS runs, each on a fresh copy of a pristine
# repository (two snapshots of a changing tree) that has a mirror (`init --copy-params-from`,
# then `copy`). Each run damages one random object of one kind, the kinds in turn:
#   pack      a pack            tree      the pack holding a tree blob (damage inside its frame)
#   index     an index object   snapshot  a snapshot object
# in one random way: flip (one byte, anywhere in the object; for `tree`, inside the tree's
# frame), truncate (to a random shorter length), or delete. Then:
#   1. `repair from-mirror MIRROR` must exit 0 (everything healed);
#   2. `check --read-data` must exit 0;
#   3. every snapshot must restore byte-identical: the same set of files, each with the same
#      bytes, as the backed-up tree.
# Keys and the config are not damaged: without them the repository cannot be opened, and a
# mirror with its own password cannot give them back (a key file backup does).
#
# Usage: benches/scripts/backup-heal-campaign.sh
#   RUNS=100 SEED=1 TREE_MB=4 BACKUP_BIN=path/to/backup (default: built with cargo)
#   WORK=dir (kept; default a temporary directory)
# Prints a markdown table of every run and a summary line; exits 1 if any run is not healed.
set -euo pipefail

RUNS=${RUNS:-100}
SEED=${SEED:-1}
TREE_MB=${TREE_MB:-4}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

. "$HERE/backup-campaign-common.sh"
campaign_setup
SRC="$WORK/src"
PRISTINE="$WORK/pristine"
MIRROR="$WORK/mirror"
STATES="$WORK/states"
export BACKUP_PASSWORD="heal campaign"
bk() { "$BACKUP_BIN" -r "$PRISTINE" "$@"; }

rm -rf "$PRISTINE" "$MIRROR" "$STATES" "$SRC"
mkdir -p "$STATES"
bk init >/dev/null
campaign_two_snapshots "$SRC" "$STATES" "$TREE_MB" "$SEED" bk
"$BACKUP_BIN" -r "$MIRROR" init --copy-params-from "$PRISTINE" >/dev/null
bk copy --to "$MIRROR" >/dev/null
bk --json blobs >"$WORK/blobs.jsonl"

export BACKUP_BIN WORK PRISTINE MIRROR STATES RUNS SEED HERE
python3 - <<'EOF'
import filecmp, json, os, random, shutil, subprocess, sys

env = os.environ
sys.dont_write_bytecode = True
sys.path.insert(0, env["HERE"])
import backup_campaign  # noqa: E402
binary, work, pristine, mirror, states = (
    env["BACKUP_BIN"], env["WORK"], env["PRISTINE"], env["MIRROR"], env["STATES"])
runs, rng = int(env["RUNS"]), random.Random(env["SEED"])
repo = os.path.join(work, "repo")
blobs = [json.loads(line) for line in open(os.path.join(work, "blobs.jsonl"))]
trees = sorted({(b["pack"], b["offset"], b["length"]) for b in blobs if b["kind"] == "tree"})
snapshot_ids = sorted(os.listdir(states))


def objects(prefix):
    return backup_campaign.objects(pristine, prefix)


def backup(args):
    return subprocess.run([binary, "-r", repo] + args, capture_output=True, text=True)


def restore_identical(run):
    """Restores every snapshot; returns (files compared, failure or None)."""
    compared = 0
    for sid in snapshot_ids:
        target = os.path.join(work, f"restore-{run}")
        shutil.rmtree(target, ignore_errors=True)
        result = backup(["restore", sid, "--target", target])
        if result.returncode != 0:
            return compared, f"restore {sid} exit {result.returncode}: {result.stderr[:300]}"
        expected_top, got_top = os.path.join(states, sid), os.path.join(target, "src")
        expected, got = backup_campaign.regular_files(expected_top), backup_campaign.regular_files(got_top)
        if expected != got:
            return compared, f"snapshot {sid}: files differ: {sorted(expected ^ got)[:5]}"
        for rel in sorted(expected):
            if not filecmp.cmp(os.path.join(expected_top, rel), os.path.join(got_top, rel),
                               shallow=False):
                return compared, f"snapshot {sid}: {rel} differs"
            compared += 1
        shutil.rmtree(target, ignore_errors=True)
    return compared, None


kinds = ["pack", "tree", "index", "snapshot"]
modes = ["flip", "truncate", "delete"]
print("| run | kind | damage | object | heal exit | healed from mirror | check --read-data | restore |")
print("|---|---|---|---|---|---|---|---|")
healed = {k: 0 for k in kinds}
tried = {k: 0 for k in kinds}
failures = []
for run in range(1, runs + 1):
    kind = kinds[(run - 1) % len(kinds)]
    mode = rng.choice(modes)
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(pristine, repo, symlinks=True)
    if kind == "tree":
        obj, offset, length = rng.choice(trees)
    else:
        prefix = {"pack": "data", "index": "index", "snapshot": "snapshots"}[kind]
        obj = rng.choice(objects(prefix))
        offset, length = 0, os.path.getsize(os.path.join(pristine, obj))
    _, _, damage = backup_campaign.damage(rng, os.path.join(repo, obj), offset, length, mode)

    heal = backup(["--json", "repair", "from-mirror", mirror])
    what = ""
    if heal.returncode in (0, 3):
        report = json.loads(heal.stdout)
        what = (f"{report['blobs_from_mirror']} blobs, {len(report['snapshots_restored'])} "
                f"snapshots{', index rebuilt' if report['index_rebuilt'] else ''}")
    checked = backup(["check", "--read-data"])
    compared, problem = restore_identical(run)
    ok = heal.returncode == 0 and checked.returncode == 0 and problem is None
    tried[kind] += 1
    healed[kind] += ok
    if not ok:
        failures.append(f"run {run}: {kind} {obj} {damage}: heal exit {heal.returncode} "
                        f"{heal.stdout[-300:]}{heal.stderr[-300:]}; check exit {checked.returncode} "
                        f"{checked.stdout[-300:]}; restore: {problem}")
    restore = f"{compared} files identical" if problem is None else f"FAILED: {problem}"
    print(f"| {run} | {kind} | {damage} | `{obj}` | {heal.returncode} | {what} | "
          f"{checked.returncode} | {restore} |", flush=True)

print()
summary = ", ".join(f"{k} {healed[k]}/{tried[k]}" for k in kinds)
total = sum(healed.values())
print(f"heal campaign: {total}/{runs} healed with a byte-identical restore ({summary}), "
      f"seed {env['SEED']}")
if failures:
    print("FAILURES:", file=sys.stderr)
    for f in failures:
        print("  " + f, file=sys.stderr)
    sys.exit(1)
EOF
