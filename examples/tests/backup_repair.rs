//! `backup repair index` and `backup repair snapshots` end to end: a repository whose index was
//! lost checks clean again after `repair index`, and `repair snapshots` names what a lost pack
//! took, by snapshot and path, before and after rewriting; `repair from-mirror` heals from a
//! mirror and names by path what the mirror lacks too (exit 3); `repair from-source` rebuilds a
//! damaged chunk from its unchanged file and names a changed one (exit 3); `repair config`
//! rebuilds a damaged config from a mirror sharing the keys. `restore` of a snapshot with
//! damage that cannot be healed restores the rest, names the damaged file with the pack at
//! fault, writes none of it, and exits 5.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn backup(repo: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backup"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("BACKUP_PASSWORD", "pw")
        .env_remove("BACKUP_REPOSITORY")
        .stdin(Stdio::null())
        .output()
        .expect("backup runs")
}

fn json(output: Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

/// Asserts `check --read-data` passes, restores `snapshot` into `work/restored` and returns that.
fn check_and_restore(repo: &Path, snapshot: &str, work: &Path) -> std::path::PathBuf {
    assert_eq!(
        backup(repo, &["check", "--read-data"]).status.code(),
        Some(0)
    );
    let target = work.join("restored");
    let restored = backup(
        repo,
        &["restore", snapshot, "--target", target.to_str().unwrap()],
    );
    assert!(restored.status.success());
    target
}

#[test]
fn repair_index_and_snapshots_from_the_command_line() {
    let work = tempfile::tempdir().unwrap();
    let (repo, src) = (work.path().join("repo"), work.path().join("src"));
    std::fs::create_dir_all(src.join("keep")).unwrap();
    std::fs::write(src.join("keep/a.txt"), b"kept file").unwrap();
    // 20 MB of noise: packs of its chunks alone between those holding trees.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let lost: Vec<u8> = (0..20_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(src.join("lost.bin"), &lost).unwrap();
    assert!(backup(&repo, &["init"]).status.success());
    let src_arg = src.to_str().unwrap();
    let snapshot = json(backup(&repo, &["--json", "backup", src_arg]))["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The index is lost: check fails, repair index brings every pack back.
    std::fs::remove_dir_all(repo.join("index")).unwrap();
    assert_eq!(backup(&repo, &["check"]).status.code(), Some(4));
    let report = json(backup(&repo, &["--json", "repair", "index"]));
    assert!(report["packs_indexed"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["packs_indexed"], report["packs"]);
    assert_eq!(
        backup(&repo, &["check", "--read-data"]).status.code(),
        Some(0)
    );

    // A pack that holds no tree (so chunks of lost.bin only) is lost: repair snapshots
    // names the file.
    let blobs = backup(&repo, &["--json", "blobs"]);
    assert!(blobs.status.success());
    let blobs: Vec<serde_json::Value> = String::from_utf8_lossy(&blobs.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let with_trees: Vec<&str> = blobs
        .iter()
        .filter(|b| b["kind"] == "tree")
        .map(|b| b["pack"].as_str().unwrap())
        .collect();
    let data_only = blobs
        .iter()
        .map(|b| b["pack"].as_str().unwrap())
        .find(|pack| !with_trees.contains(pack))
        .expect("a pack of data only");
    std::fs::remove_file(repo.join(data_only)).unwrap();
    let dry = json(backup(
        &repo,
        &["--json", "repair", "snapshots", "--dry-run"],
    ));
    let repaired = &dry["repaired"][0];
    assert_eq!(repaired["snapshot"], snapshot.as_str());
    let dropped = repaired["dropped"][0]["path"].as_str().unwrap();
    assert!(dropped.ends_with("/src/lost.bin"), "{dry}");
    let done = json(backup(&repo, &["--json", "repair", "snapshots"]));
    let new = done["repaired"][0]["new_snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(backup(&repo, &["repair", "index"]).status.success());
    let target = check_and_restore(&repo, &new, work.path());
    assert_eq!(
        std::fs::read(target.join("src/keep/a.txt")).unwrap(),
        b"kept file"
    );
    assert!(!target.join("src/lost.bin").exists());
}

/// Every pack file under a local repository.
fn pack_files(repo: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(repo.join("data")).unwrap() {
        for pack in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            out.push(pack.unwrap().path());
        }
    }
    out
}

/// A source tree (`dir/a.txt` and `b.bin` holding `big`) under `work`, backed up into a new
/// repository: the repository, a mirror path (not made), the source and the snapshot id.
fn backed_up_source(
    work: &Path,
    big: Vec<u8>,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    String,
) {
    let (repo, mirror, src) = (work.join("repo"), work.join("mirror"), work.join("src"));
    std::fs::create_dir_all(src.join("dir")).unwrap();
    std::fs::write(src.join("dir/a.txt"), b"a small file").unwrap();
    std::fs::write(src.join("b.bin"), big).unwrap();
    assert!(backup(&repo, &["init"]).status.success());
    let snapshot = json(backup(&repo, &["--json", "backup", src.to_str().unwrap()]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    (repo, mirror, src, snapshot)
}

#[test]
fn repair_from_mirror_from_the_command_line() {
    let work = tempfile::tempdir().unwrap();
    let (repo, mirror, src, snapshot) =
        backed_up_source(work.path(), b"some bytes ".repeat(50_000));
    let repo_arg = repo.to_str().unwrap();
    let mirror_arg = mirror.to_str().unwrap();
    assert!(
        backup(&mirror, &["init", "--copy-params-from", repo_arg])
            .status
            .success()
    );
    assert!(
        backup(&repo, &["copy", "--to", mirror_arg])
            .status
            .success()
    );

    // The index and the snapshot object are lost here.
    std::fs::remove_dir_all(repo.join("index")).unwrap();
    std::fs::remove_file(repo.join("snapshots").join(&snapshot)).unwrap();
    let dry = json(backup(
        &repo,
        &["--json", "repair", "from-mirror", mirror_arg, "--dry-run"],
    ));
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert!(!repo.join("snapshots").join(&snapshot).exists(), "dry run");
    let healed = json(backup(
        &repo,
        &["--json", "repair", "from-mirror", mirror_arg],
    ));
    assert_eq!(healed["index_rebuilt"], true, "{healed}");
    assert_eq!(
        healed["snapshots_restored"],
        serde_json::json!([format!("snapshots/{snapshot}")])
    );
    let target = check_and_restore(&repo, &snapshot, work.path());
    assert_eq!(
        std::fs::read(target.join("src/b.bin")).unwrap(),
        std::fs::read(src.join("b.bin")).unwrap()
    );

    // Every pack is lost here and in the mirror: named by path, exit 3.
    for pack in pack_files(&repo).into_iter().chain(pack_files(&mirror)) {
        std::fs::remove_file(pack).unwrap();
    }
    let lost = backup(&repo, &["repair", "from-mirror", mirror_arg]);
    let text = String::from_utf8_lossy(&lost.stdout);
    assert_eq!(lost.status.code(), Some(3), "{text}");
    assert!(
        text.contains(&format!("LOST: snapshot {} /", &snapshot[..8])),
        "{text}"
    );
}

/// Flips the middle byte of the largest data frame (`blobs --json`); returns its pack.
fn flip_largest_data_frame(repo: &Path) -> std::path::PathBuf {
    let listing = backup(repo, &["--json", "blobs"]);
    assert!(listing.status.success());
    let frame = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON line"))
        .filter(|b| b["kind"] == "data")
        .max_by_key(|b| b["length"].as_u64())
        .expect("a data blob");
    let pack = repo.join(frame["pack"].as_str().unwrap());
    let at = frame["offset"].as_u64().unwrap() + frame["length"].as_u64().unwrap() / 2;
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[at as usize] ^= 0x55;
    std::fs::write(&pack, bytes).unwrap();
    pack
}

#[test]
fn repair_from_source_and_config_from_the_command_line() {
    let work = tempfile::tempdir().unwrap();
    let (repo, mirror, src, snapshot) =
        backed_up_source(work.path(), test_support::noise(3 << 20, 7));
    let src_arg = src.to_str().unwrap();

    // A damaged chunk of b.bin comes back from the unchanged file.
    let pack = flip_largest_data_frame(&repo);
    assert_eq!(
        backup(&repo, &["check", "--read-data"]).status.code(),
        Some(4)
    );
    let dry = json(backup(
        &repo,
        &["--json", "repair", "from-source", "--dry-run", src_arg],
    ));
    assert!(dry["blobs_from_source"].as_u64() >= Some(1), "{dry}");
    assert!(pack.exists(), "a dry run deletes nothing");
    let healed = json(backup(&repo, &["--json", "repair", "from-source", src_arg]));
    assert_eq!(
        healed["blobs_from_source"], dry["blobs_from_source"],
        "{healed}"
    );
    assert!(!pack.exists());
    let target = check_and_restore(&repo, &snapshot, work.path());
    assert_eq!(
        std::fs::read(target.join("src/b.bin")).unwrap(),
        std::fs::read(src.join("b.bin")).unwrap()
    );

    // Again, but b.bin changed since: named by snapshot and path, exit 3 (the recorded
    // paths are the default source).
    flip_largest_data_frame(&repo);
    std::fs::write(src.join("b.bin"), test_support::noise(3 << 20, 8)).unwrap();
    let lost = backup(&repo, &["repair", "from-source"]);
    let text = String::from_utf8_lossy(&lost.stdout);
    assert_eq!(lost.status.code(), Some(3), "{text}");
    assert!(
        text.contains(&format!("LOST: snapshot {} /src/b.bin", &snapshot[..8]))
            && text.contains("changed since the backup"),
        "{text}"
    );

    // A damaged config comes back from a mirror that shares the keys.
    let repo_arg = repo.to_str().unwrap();
    let mirror_arg = mirror.to_str().unwrap();
    let made = backup(&mirror, &["init", "--copy-params-from", repo_arg]);
    assert!(made.status.success());
    let config = repo.join("config");
    let mut bytes = std::fs::read(&config).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&config, bytes).unwrap();
    assert!(!backup(&repo, &["snapshots"]).status.success());
    let dry = json(backup(
        &repo,
        &["--json", "repair", "config", mirror_arg, "--dry-run"],
    ));
    assert_eq!(dry["restored"], true, "{dry}");
    let rebuilt = json(backup(&repo, &["--json", "repair", "config", mirror_arg]));
    assert_eq!(rebuilt["restored"], true, "{rebuilt}");
    let listed = backup(&repo, &["snapshots"]);
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&snapshot[..8]));
}

#[test]
fn restore_names_the_file_of_a_deleted_pack_restores_the_rest_and_exits_5() {
    let work = tempfile::tempdir().unwrap();
    let (repo, src) = (work.path().join("repo"), work.path().join("src"));
    std::fs::create_dir_all(src.join("www")).unwrap();
    // 40 MB of noise: several packs holding its chunks alone.
    std::fs::write(src.join("big.bin"), test_support::noise(40 << 20, 7)).unwrap();
    std::fs::write(src.join("www/index.php"), b"<?php echo 'kept';").unwrap();
    assert!(backup(&repo, &["init"]).status.success());
    assert!(
        backup(&repo, &["backup", src.to_str().unwrap()])
            .status
            .success()
    );
    let blobs = backup(&repo, &["--json", "blobs"]);
    assert!(blobs.status.success());
    // A pack of data blobs only, none grouped: only big.bin's chunks live there.
    let lines: Vec<serde_json::Value> = String::from_utf8(blobs.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let pack = lines
        .iter()
        .map(|b| b["pack"].as_str().unwrap())
        .find(|pack| {
            lines
                .iter()
                .filter(|b| b["pack"] == *pack)
                .all(|b| b["kind"] == "data" && b["grouped"] == false)
        })
        .expect("a pack of big.bin's chunks alone")
        .to_string();
    std::fs::remove_file(repo.join(&pack)).unwrap();

    let target = work.path().join("restored");
    let out = backup(
        &repo,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("damaged, not restored: src/big.bin") && stderr.contains(&pack),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(target.join("src/www/index.php")).unwrap(),
        b"<?php echo 'kept';"
    );
    assert!(!target.join("src/big.bin").exists());
    let left: Vec<_> = std::fs::read_dir(target.join("src")).unwrap().collect();
    assert_eq!(left.len(), 1, "only www: no temporary file left: {left:?}");

    let target = work.path().join("restored-json");
    let out = backup(
        &repo,
        &[
            "--json",
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(5));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let damaged = summary["damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{summary}");
    assert_eq!(damaged[0]["path"], "src/big.bin");
    assert_eq!(damaged[0]["kind"], "file");
    assert!(damaged[0]["object"].as_str().unwrap().contains(&pack));
}
