#!/usr/bin/env bash
# Healing-from-source campaign for backup-core (issue 13, "repair ... from the source files when
# they still hash the same"): RUNS runs, each on a fresh copy of a pristine repository holding
# one snapshot of a generated tree, with no mirror. Each run damages file data in one random
# way, in turn:
#   flip      one byte inside a random data frame (any pack; trees stay sound)
#   truncate  a random pack that holds no tree (else one cut after its last tree frame), to a
#             random shorter length (its header and later frames lost)
#   delete    a random pack that holds no tree
# Every third run also changes, in the source given to the heal, one file that `check
# --read-data --json` names as damaged (every byte inverted). Then:
#   1. `repair from-source SRC --json` must exit 0, or for a changed file exit 3 naming exactly
#      that file (snapshot and path) as lost;
#   2. `check --read-data --json` must exit 0, or for a changed file name exactly that path;
#   3. for a changed file: with the file back as it was, `repair from-source` again must exit 0
#      and `check --read-data` too;
#   4. the snapshot must restore byte-identical (the same files, the same bytes).
#
# Usage: benches/scripts/backup-heal-source-campaign.sh
#   RUNS=100 SEED=1 TREE_MB=32 BACKUP_BIN=path/to/backup (default: built with cargo)
#   WORK=dir (kept; default a temporary directory)
# Prints a markdown table of every run and a summary line; exits 1 if any run fails.
set -euo pipefail

RUNS=${RUNS:-100}
SEED=${SEED:-1}
TREE_MB=${TREE_MB:-32}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

. "$HERE/backup-campaign-common.sh"
campaign_setup
SRC="$WORK/src"
PRISTINE="$WORK/pristine"
export BACKUP_PASSWORD="heal from source campaign"

rm -rf "$PRISTINE" "$SRC"
"$BACKUP_BIN" -r "$PRISTINE" init >/dev/null
python3 "$HERE/gen-backup-tree.py" "$SRC" "$TREE_MB" "$SEED"
SNAPSHOT=$("$BACKUP_BIN" -r "$PRISTINE" --json backup "$SRC" |
    python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
"$BACKUP_BIN" -r "$PRISTINE" --json blobs >"$WORK/blobs.jsonl"

export BACKUP_BIN WORK PRISTINE SRC SNAPSHOT RUNS SEED HERE
python3 - <<'EOF'
import filecmp, json, os, random, shutil, subprocess, sys

env = os.environ
sys.dont_write_bytecode = True
sys.path.insert(0, env["HERE"])
import backup_campaign  # noqa: E402
binary, work, pristine, src, snapshot = (
    env["BACKUP_BIN"], env["WORK"], env["PRISTINE"], env["SRC"], env["SNAPSHOT"])
runs, rng = int(env["RUNS"]), random.Random(env["SEED"])
repo = os.path.join(work, "repo")
blobs = [json.loads(line) for line in open(os.path.join(work, "blobs.jsonl"))]
tree_frames = {(b["pack"], b["offset"], b["length"]) for b in blobs if b["kind"] == "tree"}
data_frames = sorted({(b["pack"], b["offset"], b["length"]) for b in blobs
                      if b["kind"] == "data"} - tree_frames)
packs = backup_campaign.objects(pristine, "data")
tree_end = {p: max([o + l for (q, o, l) in tree_frames if q == p], default=0) for p in packs}
treeless = [p for p in packs if tree_end[p] == 0]
modes = ["flip", "truncate", "delete"] if treeless else ["flip", "truncate"]


def backup(args):
    return subprocess.run([binary, "-r", repo] + args, capture_output=True, text=True)


def files_under(top):
    out = set()
    for dirpath, _, names in os.walk(top):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                out.add(os.path.relpath(path, top))
    return out


def restore_identical(run):
    """Restores the snapshot; returns (files compared, failure or None)."""
    target = os.path.join(work, f"restore-{run}")
    shutil.rmtree(target, ignore_errors=True)
    result = backup(["restore", snapshot, "--target", target])
    if result.returncode != 0:
        return 0, f"restore exit {result.returncode}: {result.stderr[:300]}"
    got_top = os.path.join(target, "src")
    expected, got = files_under(src), files_under(got_top)
    if expected != got:
        return 0, f"files differ: {sorted(expected ^ got)[:5]}"
    for rel in sorted(expected):
        if not filecmp.cmp(os.path.join(src, rel), os.path.join(got_top, rel), shallow=False):
            return 0, f"{rel} differs"
    shutil.rmtree(target, ignore_errors=True)
    return len(expected), None


def check_paths():
    """`check --read-data`: (exit code, the set of paths its problems name)."""
    result = backup(["--json", "check", "--read-data"])
    try:
        report = json.loads(result.stdout)
    except ValueError:
        return result.returncode, {"<no report>"}
    return result.returncode, {p.get("path") for p in report["problems"]}


def heal(source):
    result = backup(["--json", "repair", "from-source", source])
    try:
        report = json.loads(result.stdout)
    except ValueError:
        report = None
    return result, report


print("| run | damage | object | changed file | heal exit | rebuilt from source | lost paths | check | rerun | restore |")
print("|---|---|---|---|---|---|---|---|---|---|")
passed = {m: 0 for m in modes}
tried = {m: 0 for m in modes}
changed_runs = changed_ok = 0
failures = []
for run in range(1, runs + 1):
    mode = modes[(run - 1) % len(modes)]
    change = run % 3 == 0
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(pristine, repo, symlinks=True)
    if mode == "flip":
        obj, offset, length = rng.choice(data_frames)
        path = os.path.join(repo, obj)
        data = bytearray(open(path, "rb").read())
        at = offset + rng.randrange(length)
        data[at] ^= rng.randrange(1, 256)
        open(path, "wb").write(bytes(data))
        damage = f"byte {at} flipped"
    elif mode == "truncate":
        obj = rng.choice(treeless or packs)
        size = os.path.getsize(os.path.join(repo, obj))
        cut = rng.randrange(tree_end[obj], size)
        os.truncate(os.path.join(repo, obj), cut)
        damage = f"truncated to {cut}"
    else:
        obj = rng.choice(treeless)
        os.remove(os.path.join(repo, obj))
        damage = "deleted"

    # The source the heal reads: the backed-up tree, or a copy with one damaged file changed.
    source, changed = src, None
    if change:
        _, named = check_paths()
        named = sorted(p for p in named if p and p.startswith("/src/"))
        if named:
            changed = rng.choice(named)
            top = os.path.join(work, f"source-{run}")
            shutil.rmtree(top, ignore_errors=True)
            os.makedirs(top)
            shutil.copytree(src, os.path.join(top, "src"), symlinks=True)
            source = os.path.join(top, "src")
            target = os.path.join(top, changed.lstrip("/"))
            data = open(target, "rb").read()
            open(target, "wb").write(bytes(b ^ 0xFF for b in data))

    result, report = heal(source)
    lost = sorted({l["path"] for l in report["lost"]}) if report else ["<no report>"]
    rebuilt = report["blobs_from_source"] if report else "-"
    code, named = check_paths()
    problem, rerun = None, "-"
    if changed is None:
        if result.returncode != 0 or lost:
            problem = f"heal exit {result.returncode}, lost {lost}: {result.stderr[-300:]}"
        elif code != 0:
            problem = f"check exit {code} naming {sorted(map(str, named))[:5]}"
    else:
        changed_runs += 1
        if result.returncode != 3 or lost != [changed]:
            problem = f"heal exit {result.returncode}, lost {lost}, changed {changed}"
        elif code != 4 or named != {changed}:
            problem = f"check exit {code} naming {sorted(map(str, named))[:5]}, changed {changed}"
        else:
            # The file as it was: a rerun heals the rest.
            again, _ = heal(src)
            code, named = check_paths()
            rerun = f"{again.returncode}, check {code}"
            if again.returncode != 0 or code != 0:
                problem = f"rerun exit {again.returncode}, check {code} naming {sorted(map(str, named))[:5]}"
            else:
                changed_ok += 1
        shutil.rmtree(os.path.dirname(source), ignore_errors=True)
    compared = 0
    if problem is None:
        compared, problem = restore_identical(run)
    tried[mode] += 1
    passed[mode] += problem is None
    if problem is not None:
        failures.append(f"run {run}: {mode} {obj} {damage}: {problem}")
    restore = f"{compared} files identical" if problem is None else f"FAILED: {problem}"
    print(f"| {run} | {damage} | `{obj}` | {changed or '-'} | {result.returncode} | {rebuilt} | "
          f"{', '.join(lost) or '-'} | {code} | {rerun} | {restore} |", flush=True)

print()
summary = ", ".join(f"{m} {passed[m]}/{tried[m]}" for m in modes)
total = sum(passed.values())
print(f"heal-from-source campaign: {total}/{runs} passed ({summary}; {changed_ok}/{changed_runs} "
      f"runs with a changed file named exactly, then healed by a rerun), seed {env['SEED']}")
if failures:
    print("FAILURES:", file=sys.stderr)
    for f in failures:
        print("  " + f, file=sys.stderr)
    sys.exit(1)
EOF
