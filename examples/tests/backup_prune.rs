//! `backup prune` and `backup unlock` end to end, and prune killed with SIGKILL at points spread
//! over a timed run (the short form of `benches/scripts/backup-kill-prune.sh`): after each kill
//! `check --read-data` passes, every kept snapshot restores byte-identical, and a rerun
//! completes and leaves no garbage.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn command(repo: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_backup"));
    cmd.arg("--repo")
        .arg(repo)
        .args(args)
        .env("BACKUP_PASSWORD", "pw")
        .env_remove("BACKUP_REPOSITORY")
        .stdin(Stdio::null());
    cmd
}

fn run(repo: &Path, args: &[&str]) -> Output {
    command(repo, args).output().expect("backup runs")
}

fn ok(repo: &Path, args: &[&str]) -> String {
    let out = run(repo, args);
    assert!(
        out.status.success(),
        "backup {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Pseudo-random bytes from `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Source trees `v0..v{versions}`, each a copy of the previous with a third of its files
/// rewritten, backed up one by one into a new repository at `repo`. Returns the trees.
fn repository_with_versions(work: &Path, repo: &Path, versions: usize) -> Vec<PathBuf> {
    ok(repo, &["init"]);
    let mut trees = Vec::new();
    for v in 0..versions {
        let dir = work.join(format!("v{v}"));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for f in 0..24u64 {
            let changed_in = if f % 3 == (v as u64) % 3 { v as u64 } else { 0 };
            let len = 30_000 + 41_000 * (f as usize % 9);
            let name = if f % 2 == 0 {
                format!("f{f}")
            } else {
                format!("sub/f{f}")
            };
            std::fs::write(dir.join(name), noise(f * 1000 + changed_in, len)).unwrap();
        }
        ok(repo, &["backup", dir.to_str().unwrap()]);
        trees.push(dir);
    }
    trees
}

/// Snapshot ids by backed-up path.
fn snapshots(repo: &Path) -> Vec<(String, PathBuf)> {
    let listed = json(&ok(repo, &["--json", "snapshots"]));
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                PathBuf::from(s["paths"][0].as_str().unwrap()),
            )
        })
        .collect()
}

/// `check --read-data` passes, every snapshot restores byte-identical to its source tree, and
/// with `clean` no pack is left unindexed.
fn assert_sound(repo: &Path, scratch: &Path, clean: bool, context: &str) {
    let report = json(&ok(repo, &["--json", "check", "--read-data"]));
    assert_eq!(
        report["problems"].as_array().unwrap().len(),
        0,
        "{context}: {report}"
    );
    if clean {
        assert_eq!(
            report["unindexed_packs"].as_array().unwrap().len(),
            0,
            "{context}: {report}"
        );
    }
    for (id, source) in snapshots(repo) {
        let target = scratch.join(format!("restore-{id}"));
        ok(
            repo,
            &["restore", &id, "--target", target.to_str().unwrap()],
        );
        let restored = target.join(source.file_name().unwrap());
        let differences = backup_core::compare_trees(&source, &restored).unwrap();
        assert!(differences.is_empty(), "{context}: {id}: {differences:?}");
        std::fs::remove_dir_all(&target).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn prune_dry_run_json_prune_and_unlock() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let trees = repository_with_versions(dir.path(), &repo, 4);
    let forgotten = json(&ok(
        &repo,
        &["--json", "forget", "--group-by", "", "--keep-last", "2"],
    ));
    assert!(forgotten["groups"].is_array());
    let before: Vec<_> = walk(&repo.join("data"));
    let dry = json(&ok(
        &repo,
        &["--json", "prune", "--dry-run", "--max-unused", "0%"],
    ));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(walk(&repo.join("data")), before, "a dry run changed packs");
    let decisions = dry["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), before.len());
    assert!(
        decisions
            .iter()
            .any(|d| d["action"] == "delete" || d["action"] == "repack"),
        "{dry}"
    );
    let text = ok(&repo, &["prune", "--dry-run", "--max-unused", "0%"]);
    assert!(text.contains("would delete"), "{text}");
    let done = json(&ok(&repo, &["--json", "prune", "--max-unused", "0%"]));
    assert_eq!(done["packs_deleted"], dry["packs_deleted"]);
    assert_eq!(done["packs_repacked"], dry["packs_repacked"]);
    assert_sound(&repo, dir.path(), true, "after prune");
    assert_eq!(snapshots(&repo).len(), 2);
    assert_eq!(trees.len(), 4);
    // A lock left by a killed backup is stale (its process is gone): unlock removes it.
    let big = dir.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join("f"), noise(5, 48 << 20)).unwrap();
    let spawn_backup = || {
        command(&repo, &["backup", "--threads", "1", big.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = spawn_backup();
    assert!(wait_for_lock(&repo, &mut child), "the backup took no lock");
    child.kill().unwrap();
    child.wait().unwrap();
    let unlocked = ok(&repo, &["unlock"]);
    assert!(
        unlocked.contains("backup (shared lock)") && unlocked.contains("is gone"),
        "{unlocked}"
    );
    assert!(ok(&repo, &["unlock"]).contains("removed 0 locks"));
    // A running backup's lock blocks prune, and the error names it; plain unlock leaves it.
    let mut child = spawn_backup();
    assert!(wait_for_lock(&repo, &mut child), "the backup took no lock");
    let out = run(&repo, &["prune"]);
    let unlocked = ok(&repo, &["unlock"]);
    let running = child.try_wait().unwrap().is_none();
    child.wait().unwrap();
    if running {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is locked: backup (shared lock)"),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("pid {}", child.id())), "{stderr}");
        assert!(unlocked.contains("removed 0 locks"), "{unlocked}");
    }
    assert!(walk(&repo.join("locks")).is_empty());
}

/// Waits until `child` has written a lock under `repo/locks` (true), or has exited (false).
fn wait_for_lock(repo: &Path, child: &mut std::process::Child) -> bool {
    loop {
        if !walk(&repo.join("locks")).is_empty() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Every file under `dir`, relative, sorted; staging files of writes in progress
/// (`NAME#N`) left out.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().contains('#') {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Prune killed with SIGKILL at points spread over a whole run of it.
#[test]
fn prune_killed_at_any_point_leaves_a_sound_repository_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template");
    repository_with_versions(dir.path(), &template, 6);
    ok(&template, &["forget", "--group-by", "", "--keep-last", "3"]);
    // Garbage of a killed backup too: a backup of a large file killed once its first packs
    // are stored.
    let big = dir.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join("f"), noise(77, 40 << 20)).unwrap();
    let mut child = command(&template, &["backup", big.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while walk(&template.join("data")).len() < 3 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&big).unwrap();
    // How long a whole prune takes.
    let timing = dir.path().join("timing");
    copy_dir(&template, &timing);
    let started = Instant::now();
    ok(&timing, &["prune", "--max-unused", "0%"]);
    let whole = started.elapsed();
    assert_sound(&timing, dir.path(), true, "uninterrupted");
    let points = 6;
    for point in 0..points {
        let delay = whole * point / points;
        let repo = dir.path().join(format!("repo{point}"));
        copy_dir(&template, &repo);
        let mut child = command(&repo, &["prune", "--max-unused", "0%"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap();
        let finished = child.wait().unwrap().success();
        let context = format!("killed after {delay:?} of {whole:?} (finished: {finished})");
        assert_sound(&repo, dir.path(), false, &context);
        ok(&repo, &["prune", "--max-unused", "0%"]);
        assert_sound(&repo, dir.path(), true, &format!("{context}, then rerun"));
        std::fs::remove_dir_all(&repo).unwrap();
    }
}
