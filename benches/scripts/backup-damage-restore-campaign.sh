#!/usr/bin/env bash
# Damage-without-a-mirror campaign for backup-core (issue 13): RUNS runs, each on a fresh copy
# of a pristine repository (two snapshots of a changing tree) that has NO mirror. Each run
# damages one random object, the kinds in turn (pack, pack, tree):
#   pack  a random data pack: one byte flipped anywhere, truncated at a random length, or deleted
#   tree  the pack holding a random tree blob (not a root): a byte flipped inside the tree's
#         frame, the pack truncated inside that frame, or the pack deleted
# and then restores every snapshot with `restore --json`. For each snapshot:
#   1. the set of paths the restore names as damaged equals EXACTLY the set computed
#      independently of restore: the damaged byte range of the pack, the index (`blobs --json`:
#      where each blob's frame lies) and the snapshot's listing taken before the damage
#      (`ls --json`: the blob ids of each file, the tree id of each directory) give the
#      damaged blobs; the expected set is every directory whose tree is damaged (outermost
#      only) and every file outside them with a damaged blob;
#   2. every file not named (nor under a named directory) is restored byte-identical to the
#      backed-up tree, no named path exists in the target, no temporary file is left;
#   3. the exit status is 5 if something was named, 0 if not. When the snapshot's root tree is
#      damaged nothing can be restored: exit 1, with the root tree named in the error.
# Cross-check: `check --read-data --json` on the damaged repository must report the damage
# (exit 4 if a blob is damaged; a damaged pack header is reported with no path) and its
# problems' paths for the snapshot must cover the
# expected set (check names files inside a damaged directory's readable subtrees the restore
# cannot reach, and nothing else). Recorded per run; a disagreement is a failure.
#
# Usage: benches/scripts/backup-damage-restore-campaign.sh
#   RUNS=100 SEED=1 TREE_MB=48 PACK_SIZE=1M (`init --pack-size`: about 40 packs) BACKUP_BIN=path/to/backup (default: built with cargo)
#   WORK=dir (kept; default a temporary directory)
# Prints a markdown table of every run and a summary line; exits 1 if any run fails.
set -euo pipefail

RUNS=${RUNS:-100}
SEED=${SEED:-1}
TREE_MB=${TREE_MB:-48}
PACK_SIZE=${PACK_SIZE:-1M}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

. "$HERE/backup-campaign-common.sh"
campaign_setup
SRC="$WORK/src"
PRISTINE="$WORK/pristine"
STATES="$WORK/states"
export BACKUP_PASSWORD="damage restore campaign"
bk() { "$BACKUP_BIN" -r "$PRISTINE" "$@"; }

rm -rf "$PRISTINE" "$STATES" "$SRC"
mkdir -p "$STATES"
bk init --pack-size "$PACK_SIZE" >/dev/null
campaign_two_snapshots "$SRC" "$STATES" "$TREE_MB" "$SEED" bk
bk --json blobs >"$WORK/blobs.jsonl"
bk --json snapshots >"$WORK/snapshots.json"
for state in "$STATES"/*; do
    bk --json ls "$(basename "$state")" >"$WORK/ls-$(basename "$state").jsonl"
done

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
export BACKUP_BIN WORK PRISTINE STATES RUNS SEED HERE
python3 - <<'EOF'
import filecmp, json, os, random, shutil, subprocess, sys

env = os.environ
sys.dont_write_bytecode = True
sys.path.insert(0, env["HERE"])
import backup_campaign  # noqa: E402
binary, work, pristine, states = env["BACKUP_BIN"], env["WORK"], env["PRISTINE"], env["STATES"]
runs, rng = int(env["RUNS"]), random.Random(env["SEED"])
repo = os.path.join(work, "repo")
blobs = [json.loads(line) for line in open(os.path.join(work, "blobs.jsonl"))]
root_of = {s["id"]: s["tree"] for s in json.load(open(os.path.join(work, "snapshots.json")))}
# Trees to damage: not a snapshot's root (a damaged root leaves nothing to restore).
trees = sorted({(b["pack"], b["offset"], b["length"]) for b in blobs
                if b["kind"] == "tree" and b["id"] not in root_of.values()})
snapshot_ids = sorted(os.listdir(states))
listing = {}
for sid in snapshot_ids:
    entries = [json.loads(line) for line in open(os.path.join(work, f"ls-{sid}.jsonl"))]
    # ls prints paths as /src/...; restore names them relative to the target: src/...
    listing[sid] = [dict(e, path=e["path"].lstrip("/")) for e in entries]
# A blob stored twice (in two packs) would make the expectation ambiguous: none here.
locations = {}
for b in blobs:
    locations.setdefault(b["id"], []).append(b)
duplicated = sum(1 for v in locations.values() if len(v) > 1)


def backup(args):
    return subprocess.run([binary, "-r", repo] + args, capture_output=True, text=True)


def damaged_blobs(pack, start, end):
    return {b["id"] for b in blobs
            if b["pack"] == pack and b["offset"] < end and start < b["offset"] + b["length"]}


def under(path, dirs):
    return any(path.startswith(d + "/") for d in dirs)


def expected_names(sid, bad):
    entries = listing[sid]
    bad_dirs = [e["path"] for e in entries if e["type"] == "dir" and e.get("subtree") in bad]
    names = {d for d in bad_dirs if not under(d, bad_dirs)}
    for e in entries:
        if e["type"] == "file" and not under(e["path"], bad_dirs) and set(e["content"]) & bad:
            names.add(e["path"])
    return names


def files_under(top):
    """The regular files below TOP, and ("TEMP", path) for a restore's temporary file left."""
    out = backup_campaign.regular_files(top)
    for dirpath, dirnames, names in os.walk(top):
        for name in names + dirnames:
            if ".restore-" in name:
                out.add(("TEMP", os.path.relpath(os.path.join(dirpath, name), top)))
    return out


def restore_snapshot(run, sid, bad):
    """Restores one snapshot; returns (expected count, files compared, problem or None)."""
    target = os.path.join(work, f"restore-{run}")
    shutil.rmtree(target, ignore_errors=True)
    result = backup(["--json", "restore", sid, "--target", target])
    if root_of[sid] in bad:
        shutil.rmtree(target, ignore_errors=True)
        if result.returncode == 1 and root_of[sid] in result.stderr:
            return "root", 0, None
        return "root", 0, f"root tree damaged: exit {result.returncode} {result.stderr[-300:]}"
    expected = expected_names(sid, bad)
    want_exit = 5 if expected else 0
    if result.returncode != want_exit:
        return len(expected), 0, (f"exit {result.returncode}, expected {want_exit}: "
                                  f"{result.stderr[-300:]}")
    named = {d["path"] for d in json.loads(result.stdout)["damaged"]}
    if named != expected:
        return len(expected), 0, (f"named {sorted(named - expected)[:3]} not expected, "
                                  f"missed {sorted(expected - named)[:3]}")
    source_top, got_top = os.path.join(states, sid), os.path.join(target, "src")
    keep = {f for f in files_under(source_top)
            if not any(f"src/{f}" == n or under(f"src/{f}", [n]) for n in named)}
    got = files_under(got_top) if os.path.isdir(got_top) else set()
    if got != keep:
        return len(expected), 0, f"restored files differ: {sorted(map(str, got ^ keep))[:4]}"
    for rel in sorted(keep):
        if not filecmp.cmp(os.path.join(source_top, rel), os.path.join(got_top, rel),
                           shallow=False):
            return len(expected), 0, f"{rel} differs"
    shutil.rmtree(target, ignore_errors=True)
    return len(expected), len(keep), None


def check_cross(bad):
    """check --read-data --json: exit 4 iff a blob is damaged, and per snapshot its problem
    paths cover the expected names; returns (summary, problem or None)."""
    result = backup(["--json", "check", "--read-data"])
    if result.returncode not in (0, 4) or (bad and result.returncode != 4):
        return f"exit {result.returncode}", f"check exit {result.returncode}"
    if result.returncode == 0:
        return "clean", None
    report = json.loads(result.stdout)
    if not bad:
        # Damage outside every frame (a pack's header): check finds it, no file is hit.
        hit = [p for p in report["problems"] if p.get("path")]
        if hit:
            return "disagrees", f"check names {hit[0]} though no blob is damaged"
        return f"{len(report['problems'])} problems, none in a file", None
    for sid in snapshot_ids:
        if root_of[sid] in bad:
            continue
        paths = {p["path"].lstrip("/") for p in report["problems"]
                 if p.get("snapshot") == sid and p.get("path")}
        expected = expected_names(sid, bad)
        if not expected <= paths:
            return "disagrees", f"check misses {sorted(expected - paths)[:3]} in {sid}"
        # Anything else it names lies inside an expected directory.
        extra = {p for p in paths - expected if not under(p, expected)}
        if extra:
            return "disagrees", f"check names {sorted(extra)[:3]} in {sid}, restore would not"
    return f"{len(report['problems'])} problems, agree", None


kinds = ["pack", "pack", "tree"]
modes = ["flip", "truncate", "delete"]
print(f"pristine: {len(blobs)} blobs, {len(trees)} trees, "
      f"{len(backup_campaign.objects(pristine, 'data'))} packs, {duplicated} blobs stored twice")
print()
print("| run | kind | damage | object | damaged blobs | named per snapshot (expected = named) "
      "| files identical | check --read-data |")
print("|---|---|---|---|---|---|---|---|")
failures = []
named_runs = clean_runs = root_runs = 0
for run in range(1, runs + 1):
    kind = kinds[(run - 1) % len(kinds)]
    mode = rng.choice(modes)
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(pristine, repo, symlinks=True)
    if kind == "tree":
        obj, offset, length = rng.choice(trees)
    else:
        obj = rng.choice(backup_campaign.objects(pristine, "data"))
        offset, length = 0, os.path.getsize(os.path.join(pristine, obj))
    start, end, damage = backup_campaign.damage(rng, os.path.join(repo, obj), offset, length, mode)
    bad = damaged_blobs(obj, start, end)
    per_snapshot, compared, problems = [], 0, []
    for sid in snapshot_ids:
        count, files, problem = restore_snapshot(run, sid, bad)
        per_snapshot.append(str(count))
        compared += files
        if problem:
            problems.append(f"snapshot {sid[:8]}: {problem}")
    check_summary, check_problem = check_cross(bad)
    if check_problem:
        problems.append(check_problem)
    if any(root_of[s] in bad for s in snapshot_ids):
        root_runs += 1
    elif any(c != "0" for c in per_snapshot):
        named_runs += 1
    else:
        clean_runs += 1
    if problems:
        failures.append(f"run {run}: {kind} {obj} {damage}: " + "; ".join(problems))
    shown = " / ".join(per_snapshot) + ("" if not problems else " FAILED")
    print(f"| {run} | {kind} | {mode} ({damage}) | `{obj}` | {len(bad)} | {shown} | "
          f"{compared} | {check_summary} |", flush=True)

print()
print(f"damage-restore campaign: {runs - len(failures)}/{runs} runs passed "
      f"({named_runs} with damaged files named and exit 5, {clean_runs} with damage no "
      f"snapshot uses and exit 0, {root_runs} with a root tree damaged and exit 1), "
      f"seed {env['SEED']}")
if failures:
    print("FAILURES:", file=sys.stderr)
    for f in failures:
        print("  " + f, file=sys.stderr)
    sys.exit(1)
EOF
