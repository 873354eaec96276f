#!/usr/bin/env bash
# Healing-from-source campaign for backup-core (issue 13, "repair ... from the source files when
# they still hash the same"): RUNS runs, each on a fresh copy of a pristine repository holding
# one snapshot of a generated tree (and of its mirror, made by `init --copy-params-from` and
# `copy`). The damage comes in turn:
#   flip      one byte inside a random data frame (trees stay sound); healed with
#             `repair from-source SRC`, no mirror;
#   truncate  a random pack cut at a random length (data, trees and header after the cut lost),
#   delete    a random pack; for these two, the mirror's copy of every lost data chunk is
#             damaged too (a byte flipped in its frame there), so the heal, `repair
#             from-mirror MIRROR --source SRC`, must take the trees from the mirror and the
#             data from the source files (trees cannot come from files).
# Every other flip run also changes, in the source given to the heal, one file that `check
# --read-data --json` names as damaged (every byte inverted). Then:
#   1. the heal must exit 0 (for a changed file: exit 3 naming exactly that file as lost);
#   2. `check --read-data --json` must exit 0 (for a changed file: name exactly that path);
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
MIRROR_PRISTINE="$WORK/mirror-pristine"
export BACKUP_PASSWORD="heal from source campaign"

rm -rf "$PRISTINE" "$MIRROR_PRISTINE" "$SRC"
"$BACKUP_BIN" -r "$PRISTINE" init >/dev/null
python3 "$HERE/gen-backup-tree.py" "$SRC" "$TREE_MB" "$SEED"
SNAPSHOT=$("$BACKUP_BIN" -r "$PRISTINE" --json backup "$SRC" |
    python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
"$BACKUP_BIN" -r "$PRISTINE" --json blobs >"$WORK/blobs.jsonl"
"$BACKUP_BIN" -r "$MIRROR_PRISTINE" init --copy-params-from "$PRISTINE" >/dev/null
"$BACKUP_BIN" -r "$PRISTINE" copy --to "$MIRROR_PRISTINE" >/dev/null
"$BACKUP_BIN" -r "$MIRROR_PRISTINE" --json blobs >"$WORK/mirror-blobs.jsonl"

export BACKUP_BIN WORK PRISTINE MIRROR_PRISTINE SRC SNAPSHOT RUNS SEED HERE
python3 - <<'EOF'
import filecmp, json, os, random, shutil, subprocess, sys

env = os.environ
sys.dont_write_bytecode = True
sys.path.insert(0, env["HERE"])
import backup_campaign  # noqa: E402
binary, work, pristine, mirror_pristine, src, snapshot = (
    env["BACKUP_BIN"], env["WORK"], env["PRISTINE"], env["MIRROR_PRISTINE"], env["SRC"],
    env["SNAPSHOT"])
runs, rng = int(env["RUNS"]), random.Random(env["SEED"])
repo, mirror = os.path.join(work, "repo"), os.path.join(work, "mirror")
mirror_blobs = {}
for line in open(os.path.join(work, "mirror-blobs.jsonl")):
    b = json.loads(line)
    mirror_blobs[b["id"]] = (b["pack"], b["offset"], b["length"])
blobs = [json.loads(line) for line in open(os.path.join(work, "blobs.jsonl"))]
tree_frames = {(b["pack"], b["offset"], b["length"]) for b in blobs if b["kind"] == "tree"}
data_frames = sorted({(b["pack"], b["offset"], b["length"]) for b in blobs
                      if b["kind"] == "data"} - tree_frames)
packs = backup_campaign.objects(pristine, "data")
modes = ["flip", "truncate", "delete"]


def flip(path, offset, length):
    data = bytearray(open(path, "rb").read())
    at = offset + rng.randrange(length)
    data[at] ^= rng.randrange(1, 256)
    open(path, "wb").write(bytes(data))
    return at


def backup(args):
    return subprocess.run([binary, "-r", repo] + args, capture_output=True, text=True)


def restore_identical(run):
    """Restores the snapshot; returns (files compared, failure or None)."""
    target = os.path.join(work, f"restore-{run}")
    shutil.rmtree(target, ignore_errors=True)
    result = backup(["restore", snapshot, "--target", target])
    if result.returncode != 0:
        return 0, f"restore exit {result.returncode}: {result.stderr[:300]}"
    got_top = os.path.join(target, "src")
    expected, got = backup_campaign.regular_files(src), backup_campaign.regular_files(got_top)
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


def heal(source, with_mirror=False):
    args = ["--json", "repair", "from-source", source]
    if with_mirror:
        args = ["--json", "repair", "from-mirror", mirror, "--source", source]
    result = backup(args)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        report = None
    return result, report


print("| run | damage | object | changed file | heal exit | from source / mirror / salvaged | lost paths | check | rerun | restore |")
print("|---|---|---|---|---|---|---|---|---|---|")
passed = {m: 0 for m in modes}
tried = {m: 0 for m in modes}
changed_runs = changed_ok = 0
failures = []
for run in range(1, runs + 1):
    mode = modes[(run - 1) % len(modes)]
    change = mode == "flip" and (run - 1) // len(modes) % 2 == 1
    for copy_from, copy_to in ((pristine, repo), (mirror_pristine, mirror)):
        shutil.rmtree(copy_to, ignore_errors=True)
        shutil.copytree(copy_from, copy_to, symlinks=True)
    if mode == "flip":
        obj, offset, length = rng.choice(data_frames)
        damage = f"byte {flip(os.path.join(repo, obj), offset, length)} flipped"
        lost = []
    else:
        obj = rng.choice(packs)
        path = os.path.join(repo, obj)
        if mode == "truncate":
            cut = rng.randrange(os.path.getsize(path))
            os.truncate(path, cut)
            damage = f"truncated to {cut}"
        else:
            cut = 0
            os.remove(path)
            damage = "deleted"
        lost = sorted({b["id"] for b in blobs if b["pack"] == obj and b["kind"] == "data"
                       and b["offset"] + b["length"] > cut})
        # The mirror lacks them too.
        for frame in sorted({mirror_blobs[i] for i in lost}):
            flip(os.path.join(mirror, frame[0]), frame[1], frame[2])
        damage += f", {len(lost)} data chunks damaged in the mirror too"

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

    result, report = heal(source, with_mirror=mode != "flip")
    lost = sorted({l["path"] for l in report["lost"]}) if report else ["<no report>"]
    rebuilt = "-"
    if report:
        rebuilt = (f"{report['blobs_from_source']} / {report['blobs_from_mirror']} / "
                   f"{report['blobs_salvaged']}")
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
