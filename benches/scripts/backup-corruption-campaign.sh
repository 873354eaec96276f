#!/usr/bin/env bash
# Corruption campaign for backup-core (issue 12): RUNS runs, each on a fresh copy of a pristine
# repository (two snapshots, two keys), each flipping one random byte in one random object of
# one kind; the kinds come in turn, so every kind is hit RUNS/7 times:
#   pack      any byte of a pack (a blob's frame, the header, or the header's length field)
#   header    a byte of a pack's header or its length field (a random pack byte rarely is one)
#   tree      a byte inside a tree blob's frame (trees live in packs)
#   index     an index object        snapshot  a snapshot object
#   key       a key object           config    the config object
# After each flip:
#   1. `check --read-data` (with the first admin's password) must report the damage: exit 4, or
#      exit 1 when nothing can be opened with that password (config, or that admin's own key);
#   2. the damaged object must be named (in the problems, or in the error);
#   3. a damaged blob frame (pack or tree) must be reported with the snapshot and path of the
#      files it affects; a damaged index too (its blobs are then in no index);
#   4. restoring every snapshot (with whichever password opens) never leaves a file under its
#      final name whose bytes differ from the backed-up file, nor a temporary file.
#
# Usage: benches/scripts/backup-corruption-campaign.sh
#   RUNS=140 SEED=1 TREE_MB=8 BACKUP_BIN=path/to/backup (default: built with cargo)
#   WORK=dir (kept; default a temporary directory)
# Prints a markdown table of every run and a summary line; exits 1 if any run is not detected
# or any restore wrote corrupt data.
set -euo pipefail

RUNS=${RUNS:-140}
SEED=${SEED:-1}
TREE_MB=${TREE_MB:-8}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

. "$HERE/backup-campaign-common.sh"
campaign_setup
SRC="$WORK/src"
PRISTINE="$WORK/pristine"
STATES="$WORK/states"
FIRST="corruption campaign, first admin"
SECOND="corruption campaign, second admin"
bk() { BACKUP_PASSWORD="$FIRST" "$BACKUP_BIN" -r "$PRISTINE" "$@"; }

# The pristine repository: two snapshots of a changing tree, a second admin's key.
rm -rf "$PRISTINE" "$STATES" "$SRC"
mkdir -p "$STATES"
bk init >/dev/null
BACKUP_NEW_PASSWORD="$SECOND" bk key add >/dev/null
campaign_two_snapshots "$SRC" "$STATES" "$TREE_MB" "$SEED" bk
bk --json blobs >"$WORK/blobs.jsonl"

export BACKUP_BIN WORK PRISTINE STATES FIRST SECOND RUNS SEED HERE
python3 - <<'EOF'
import json, os, random, shutil, subprocess, sys

env = os.environ
sys.dont_write_bytecode = True
sys.path.insert(0, env["HERE"])
import backup_campaign  # noqa: E402
binary, work, pristine, states = env["BACKUP_BIN"], env["WORK"], env["PRISTINE"], env["STATES"]
passwords = [env["FIRST"], env["SECOND"]]
runs, rng = int(env["RUNS"]), random.Random(env["SEED"])
repo = os.path.join(work, "repo")
blobs = [json.loads(line) for line in open(os.path.join(work, "blobs.jsonl"))]
frames = {}
for b in blobs:
    frames.setdefault(b["pack"], set()).add((b["offset"], b["length"]))
trees = sorted({(b["pack"], b["offset"], b["length"]) for b in blobs if b["kind"] == "tree"})
snapshot_ids = sorted(os.listdir(states))


def objects(prefix):
    return backup_campaign.objects(pristine, prefix)


def backup(args, password):
    e = dict(os.environ, BACKUP_PASSWORD=password)
    return subprocess.run([binary, "-r", repo] + args, env=e, capture_output=True, text=True)


def in_frame(pack, at):
    return any(o <= at < o + n for o, n in frames.get(pack, ()))


def restore_is_safe(run):
    """Restores every snapshot with each password; returns (files verified, failure or None)."""
    verified = 0
    for password in passwords:
        for sid in snapshot_ids:
            target = os.path.join(work, f"restore-{run}")
            shutil.rmtree(target, ignore_errors=True)
            backup(["restore", sid, "--target", target], password)
            top = os.path.join(target, "src")
            for dirpath, _, names in os.walk(target):
                for name in names:
                    path = os.path.join(dirpath, name)
                    if ".restore-" in name:
                        return verified, f"temporary file left: {path}"
                    if os.path.islink(path) or not os.path.isfile(path):
                        continue
                    rel = os.path.relpath(path, top)
                    expected = os.path.join(states, sid, rel)
                    with open(path, "rb") as a, open(expected, "rb") as b:
                        if a.read() != b.read():
                            return verified, f"{path} differs from what was backed up"
                    verified += 1
            shutil.rmtree(target, ignore_errors=True)
    return verified, None


kinds = ["pack", "header", "tree", "index", "snapshot", "key", "config"]
print("| run | kind | object | byte | where | check exit | object named | files named | restore |")
print("|---|---|---|---|---|---|---|---|---|")
detected = {k: 0 for k in kinds}
tried = {k: 0 for k in kinds}
failures = []
for run in range(1, runs + 1):
    kind = kinds[(run - 1) % len(kinds)]
    where = ""
    if kind == "tree":
        obj, offset, length = rng.choice(trees)
        at = offset + rng.randrange(length)
        where = "tree frame"
    elif kind == "header":
        obj = rng.choice(objects("data"))
        size = os.path.getsize(os.path.join(pristine, obj))
        header = max(o + n for o, n in frames[obj])
        at = rng.randrange(header, size)
        where = "length" if at >= size - 4 else "header"
    else:
        prefix = {"pack": "data", "index": "index", "snapshot": "snapshots", "key": "keys"}.get(kind)
        obj = rng.choice(objects(prefix)) if prefix else "config"
        size = os.path.getsize(os.path.join(pristine, obj))
        at = rng.randrange(size)
        if kind == "pack":
            where = "frame" if in_frame(obj, at) else ("length" if at >= size - 4 else "header")
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(pristine, repo, symlinks=True)
    path = os.path.join(repo, obj)
    data = bytearray(open(path, "rb").read())
    data[at] ^= rng.randrange(1, 256)
    open(path, "wb").write(bytes(data))

    result = backup(["--json", "check", "--read-data"], passwords[0])
    text = result.stdout + result.stderr
    problems = []
    if result.returncode == 4:
        problems = json.loads(result.stdout)["problems"]
    named = obj in text
    files = sorted({(p["snapshot"], p["path"]) for p in problems if p.get("snapshot") and p.get("path")})
    ok = result.returncode in (1, 4) and named
    if kind in ("tree", "index") or (kind == "pack" and where == "frame"):
        ok = ok and bool(files)
    verified, unsafe = restore_is_safe(run)
    tried[kind] += 1
    detected[kind] += ok
    if not ok:
        failures.append(f"run {run}: {kind} {obj} byte {at}: exit {result.returncode}: {text[:400]}")
    if unsafe:
        failures.append(f"run {run}: restore unsafe: {unsafe}")
    restore = f"{verified} files verified" if not unsafe else f"UNSAFE: {unsafe}"
    print(f"| {run} | {kind} | `{obj}` | {at} | {where} | {result.returncode} | "
          f"{'yes' if named else 'NO'} | {len(files)} | {restore} |", flush=True)

print()
summary = ", ".join(f"{k} {detected[k]}/{tried[k]}" for k in kinds)
total = sum(detected.values())
print(f"corruption campaign: {total}/{runs} detected and named ({summary}), seed {env['SEED']}")
if failures:
    print("FAILURES:", file=sys.stderr)
    for f in failures:
        print("  " + f, file=sys.stderr)
    sys.exit(1)
EOF
