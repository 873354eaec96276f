//! End-to-end tests of the `backup` binary: the operator's round trip and the errors they see.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use test_support::success_stdout as ok;

/// `backup --repo REPO ARGS...` with `password` (or none) in BACKUP_PASSWORD.
fn command(repo: &Path, args: &[&str], password: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_backup"));
    cmd.arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("BACKUP_PASSWORD")
        .env_remove("BACKUP_REPOSITORY")
        .env_remove("BACKUP_NEW_PASSWORD")
        .stdin(Stdio::null());
    if let Some(pw) = password {
        cmd.env("BACKUP_PASSWORD", pw);
    }
    cmd
}

fn backup(repo: &Path, args: &[&str], password: Option<&str>) -> Output {
    command(repo, args, password).output().expect("backup runs")
}

/// `backup` started in the background, its output discarded.
fn spawn(repo: &Path, args: &[&str]) -> std::process::Child {
    command(repo, args, Some("pw"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("backup starts")
}

/// `restore latest --target TARGET EXTRA...`, which must succeed.
fn restore_latest(repo: &Path, target: &Path, extra: &[&str]) {
    let target = target.to_str().expect("utf-8");
    let args = [&["restore", "latest", "--target", target][..], extra].concat();
    ok(backup(repo, &args, Some("pw")));
}

fn fails_with(out: Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success");
    assert!(
        stderr.contains(needle),
        "stderr {stderr:?} lacks {needle:?}"
    );
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn init_backup_snapshots_restore_diff_stats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("site");
    std::fs::create_dir_all(src.join("www/uploads")).expect("mkdir");
    std::fs::write(src.join("www/index.php"), b"<?php echo 'hi';").expect("write");
    std::fs::write(src.join("www/uploads/big.bin"), vec![7u8; 3 << 20]).expect("write");
    std::os::unix::fs::symlink("index.php", src.join("www/home.php")).expect("symlink");
    let repo = dir.path().join("repo");
    let pw = Some("correct horse");

    ok(backup(&repo, &["init"], pw));
    fails_with(backup(&repo, &["init"], pw), "already exists");

    let first = json(&ok(backup(
        &repo,
        &[
            "--json",
            "backup",
            "--tag",
            "nightly",
            src.to_str().expect("utf-8"),
        ],
        pw,
    )));
    let first_id = first["id"].as_str().expect("snapshot id").to_owned();
    assert_eq!(first["summary"]["files"], 2);
    assert_eq!(first["tags"][0], "nightly");

    std::fs::write(src.join("www/index.php"), b"<?php echo 'changed';").expect("write");
    let second = json(&ok(backup(
        &repo,
        &["--json", "backup", src.to_str().expect("utf-8")],
        pw,
    )));
    // The unchanged 3 MiB file is skipped through the parent snapshot.
    assert_eq!(second["summary"]["files_unchanged"], 1);
    let second_id = second["id"].as_str().expect("snapshot id").to_owned();

    let list = json(&ok(backup(&repo, &["--json", "snapshots"], pw)));
    assert_eq!(list.as_array().expect("array").len(), 2);

    let diff = ok(backup(&repo, &["diff", &first_id, &second_id], pw));
    assert!(diff.contains("index.php"), "diff: {diff}");
    assert!(!diff.contains("big.bin"), "diff: {diff}");

    let stats = json(&ok(backup(&repo, &["--json", "stats"], pw)));
    assert_eq!(stats["snapshots"], 2);

    let target = dir.path().join("restored");
    ok(backup(
        &repo,
        &[
            "restore",
            &first_id,
            "--target",
            target.to_str().expect("utf-8"),
        ],
        pw,
    ));
    let restored = target.join("site/www");
    assert_eq!(
        std::fs::read(restored.join("index.php")).expect("restored file"),
        b"<?php echo 'hi';"
    );
    assert_eq!(
        std::fs::read(restored.join("uploads/big.bin")).expect("restored file"),
        vec![7u8; 3 << 20]
    );
    assert_eq!(
        std::fs::read_link(restored.join("home.php")).expect("restored symlink"),
        Path::new("index.php")
    );
}

#[test]
fn password_errors_are_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    ok(backup(&repo, &["init"], Some("right")));
    fails_with(
        backup(&repo, &["snapshots"], Some("wrong")),
        "wrong password",
    );
    fails_with(backup(&repo, &["snapshots"], None), "BACKUP_PASSWORD");
    fails_with(
        backup(&dir.path().join("nowhere"), &["snapshots"], Some("right")),
        "nowhere",
    );
}

#[test]
fn demo_verifies_its_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("tree");
    std::fs::create_dir_all(src.join("a/b")).expect("mkdir");
    std::fs::write(src.join("a/b/file.txt"), b"demo data").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_backup"))
        .arg("demo")
        .arg(&src)
        .env_remove("BACKUP_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .expect("backup demo runs");
    let text = ok(out);
    assert!(text.contains("identical"), "demo output: {text}");
}

/// True when this process runs as root (whose files a plain chmod does not hide from it).
fn is_root() -> bool {
    let probe = tempfile::NamedTempFile::new().expect("temp file");
    std::os::unix::fs::MetadataExt::uid(&probe.as_file().metadata().expect("stat")) == 0
}

/// `backup` without the capabilities that let root read any file (so permissions apply as to
/// any user), or `None` (skipped, a failure under CI) if that cannot be arranged.
fn backup_without_dac_override(repo: &Path, args: &[&str], password: &str) -> Option<Output> {
    if !is_root() {
        return Some(backup(repo, args, Some(password)));
    }
    let setpriv = test_support::require_program("setpriv")?;
    let out = Command::new(setpriv)
        .args(["--bounding-set=-dac_override,-dac_read_search"])
        .arg(env!("CARGO_BIN_EXE_backup"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("BACKUP_PASSWORD", password)
        .env_remove("BACKUP_REPOSITORY")
        .stdin(Stdio::null())
        .output()
        .expect("setpriv runs");
    Some(out)
}

#[test]
fn a_backup_that_skipped_unreadable_files_exits_3_and_does_not_count_them_as_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("site");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("readable"), b"12345").expect("write");
    std::fs::write(src.join("secret"), vec![1u8; 1000]).expect("write");
    std::fs::set_permissions(src.join("secret"), std::fs::Permissions::from_mode(0o000))
        .expect("chmod");
    let repo = dir.path().join("repo");
    ok(backup(&repo, &["init"], Some("pw")));
    let Some(out) = backup_without_dac_override(
        &repo,
        &["--json", "backup", src.to_str().expect("utf-8")],
        "pw",
    ) else {
        return;
    };
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap = json(&String::from_utf8(out.stdout).expect("UTF-8"));
    assert_eq!(snap["skipped"].as_array().expect("skipped").len(), 1);
    assert_eq!(snap["summary"]["files"], 1);
    assert_eq!(snap["summary"]["bytes_read"], 5, "{snap}");
}

#[test]
fn ls_escapes_names_reversibly_and_restore_path_takes_them_back() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    let newline = std::ffi::OsStr::from_bytes(b"two\nlines");
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9 \\ back");
    std::fs::write(src.join(newline), b"newline").expect("write");
    std::fs::write(src.join(latin1), b"latin-1").expect("write");
    let repo = dir.path().join("repo");
    let pw = Some("pw");
    ok(backup(&repo, &["init"], pw));
    ok(backup(&repo, &["backup", src.to_str().expect("utf-8")], pw));

    let text = ok(backup(&repo, &["ls", "latest"], pw));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one line per entry: {text:?}");
    assert!(
        lines.iter().any(|l| l.ends_with(r"src/two\nlines")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with(r"src/caf\xe9 \\ back")),
        "{text}"
    );

    let listed = ok(backup(&repo, &["--json", "ls", "latest"], pw));
    for (raw, content) in [(newline, "newline"), (latin1, "latin-1")] {
        let entry = listed
            .lines()
            .map(json)
            .find(|e| {
                let path = e["path"].as_str().expect("path");
                backup_core::ops::unescape_path(path.as_bytes()).expect("unescapes")
                    == [b"src/".as_slice(), raw.as_bytes()].concat()
            })
            .unwrap_or_else(|| panic!("{raw:?} not in {listed}"));
        let target = dir.path().join(format!("restored-{content}"));
        restore_latest(
            &repo,
            &target,
            &["--path", entry["path"].as_str().expect("path")],
        );
        assert_eq!(
            std::fs::read(target.join(raw)).expect("restored by its listed path"),
            content.as_bytes()
        );
    }
}

#[test]
fn reading_commands_create_nothing_and_init_refuses_what_it_should() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no/such/repo");
    for args in [
        &["snapshots"][..],
        &["ls", "latest"],
        &["restore", "latest", "-t", "/tmp/x"],
    ] {
        fails_with(backup(&missing, args, Some("pw")), "no repository at");
        assert!(!dir.path().join("no").exists(), "{args:?} created the path");
    }
    let repo = dir.path().join("repo");
    fails_with(backup(&repo, &["init"], Some("")), "empty passphrase");
    assert!(!repo.join("config").exists());
    let site = dir.path().join("site");
    std::fs::create_dir(&site).expect("mkdir");
    std::fs::write(site.join("index.php"), b"<?php").expect("write");
    fails_with(backup(&site, &["init"], Some("pw")), "not empty");
    assert_eq!(std::fs::read_dir(&site).expect("list").count(), 1);
}

/// `needle` appears exactly once in `stderr`.
fn assert_said_once(stderr: &str, needle: &str) {
    assert_eq!(
        stderr.matches(needle).count(),
        1,
        "{needle:?} not once in {stderr:?}"
    );
}

#[test]
fn errors_are_clear_and_say_each_thing_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A regular file as the repository.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("write");
    for cmd in ["init", "snapshots"] {
        let out = backup(&file, &[cmd], Some("pw"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        fails_with(out.clone(), "not a directory");
        assert_said_once(&stderr, "not a directory");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    // No keys: not "wrong password".
    let repo = dir.path().join("repo");
    ok(backup(&repo, &["init"], Some("pw")));
    std::fs::rename(repo.join("keys"), dir.path().join("keys-elsewhere")).expect("mv");
    let out = backup(&repo, &["snapshots"], Some("pw"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("password"));
    fails_with(out, "keys/ is missing");
    std::fs::rename(dir.path().join("keys-elsewhere"), repo.join("keys")).expect("mv");
    // A store that cannot be reached (S3 on a closed loopback port) and a permission error.
    let out = Command::new(env!("CARGO_BIN_EXE_backup"))
        .args([
            "--repo",
            "s3://bucket/prefix",
            "--timeout",
            "2",
            "snapshots",
        ])
        .env("BACKUP_PASSWORD", "pw")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .output()
        .expect("backup runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    fails_with(out, "Connection refused");
    assert_said_once(&stderr, "Connection refused");
    assert_said_once(&stderr, "127.0.0.1:1");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(repo.join("config"), std::fs::Permissions::from_mode(0o000))
        .expect("chmod");
    let Some(out) = backup_without_dac_override(&repo, &["snapshots"], "pw") else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    fails_with(out, "Permission denied");
    assert_said_once(&stderr, "Permission denied");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn damaged_and_stray_objects_are_warned_about_and_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("f"), b"data").expect("write");
    let repo = dir.path().join("repo");
    let pw = Some("pw");
    ok(backup(&repo, &["init"], pw));
    ok(backup(&repo, &["backup", src.to_str().expect("utf-8")], pw));
    std::fs::write(repo.join("snapshots/.DS_Store"), b"").expect("write");
    let out = backup(&repo, &["--json", "snapshots"], pw);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let listed = json(&ok(out));
    assert_eq!(listed.as_array().expect("array").len(), 1);
    assert!(stderr.contains("snapshots/.DS_Store"), "{stderr}");
}

/// `init` killed with SIGKILL at any moment leaves nothing, or something a rerun of `init`
/// completes: after the rerun the repository opens with the password.
#[test]
fn init_killed_at_any_moment_is_completed_by_a_rerun() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, delay_ms) in (0..=240).step_by(12).enumerate() {
        let repo = dir.path().join(format!("repo{i}"));
        let mut child = spawn(&repo, &["init"]);
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let finished = child.wait().expect("wait").success();
        let rerun = backup(&repo, &["init"], Some("pw"));
        let stderr = String::from_utf8_lossy(&rerun.stderr);
        // Killed after writing its config, a run may have been complete though not finished.
        assert!(
            rerun.status.success() != stderr.contains("already exists"),
            "killed after {delay_ms} ms (finished: {finished}), init again: {stderr}"
        );
        if finished {
            assert!(stderr.contains("already exists"), "{stderr}");
        }
        let opened = backup(&repo, &["snapshots"], Some("pw"));
        assert!(
            opened.status.success(),
            "killed after {delay_ms} ms, then init and snapshots: {}",
            String::from_utf8_lossy(&opened.stderr)
        );
    }
}

/// Names under `dir` (recursively) that are restore temporary files.
fn temporary_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(listing) = std::fs::read_dir(dir) {
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(".restore-") {
                found.push(name);
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                found.extend(temporary_files(&entry.path()));
            }
        }
    }
    found
}

/// A restore killed with SIGKILL while writing leaves its temporary file; the next restore into
/// the same target removes it.
#[test]
fn a_rerun_removes_what_a_killed_restore_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    // 48 MiB that does not compress, so the restore takes a while.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let big: Vec<u8> = (0..48 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(src.join("big"), &big).expect("write");
    let repo = dir.path().join("repo");
    let pw = Some("pw");
    ok(backup(&repo, &["init"], pw));
    ok(backup(&repo, &["backup", src.to_str().expect("utf-8")], pw));

    // Killed while its temporary file exists (a few tries: the kill may come just after the
    // rename).
    let target = dir.path().join("target");
    let mut left = Vec::new();
    for _ in 0..5 {
        let _ = std::fs::remove_dir_all(&target);
        let target_arg = target.to_str().expect("utf-8");
        let mut child = spawn(&repo, &["restore", "latest", "--target", target_arg]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while temporary_files(&target).is_empty() && std::time::Instant::now() < deadline {
            if child.try_wait().expect("try_wait").is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let _ = child.kill();
        child.wait().expect("wait");
        left = temporary_files(&target);
        if !left.is_empty() {
            break;
        }
    }
    assert!(!left.is_empty(), "no restore was killed while writing");

    restore_latest(&repo, &target, &[]);
    assert_eq!(
        temporary_files(&target),
        Vec::<String>::new(),
        "left: {left:?}"
    );
    assert!(std::fs::read(target.join("src/big")).expect("restored") == big);
}

#[test]
fn forget_lists_reasons_and_removes_only_what_the_policy_drops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("site");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("index.php"), b"<?php").expect("write");
    let repo = dir.path().join("repo");
    let src = src.to_str().expect("utf-8");
    ok(backup(&repo, &["init"], Some("pw")));
    let mut ids = Vec::new();
    for (tag, host) in [
        ("monthly", "web1"),
        ("a", "web1"),
        ("b", "web1"),
        ("c", "web2"),
    ] {
        let out = json(&ok(backup(
            &repo,
            &["--json", "backup", src, "--tag", tag, "--host", host],
            Some("pw"),
        )));
        ids.push(out["id"].as_str().expect("id").to_string());
    }
    fails_with(
        backup(&repo, &["forget", "--keep-daily", "0"], Some("pw")),
        "keeps nothing",
    );
    fails_with(
        backup(&repo, &["forget", "--keep-within", "3w"], Some("pw")),
        "unknown unit 'w'",
    );

    // Only web2's snapshots: its one is the newest, nothing goes, web1's are not listed.
    let web2 = ok(backup(
        &repo,
        &["forget", "--keep-last", "1", "--host", "web2", "--dry-run"],
        Some("pw"),
    ));
    assert!(web2.contains("would remove 0 snapshots"), "{web2}");
    assert!(
        web2.contains(&ids[3][..8]) && !web2.contains(&ids[1][..8]),
        "{web2}"
    );

    let args = ["forget", "--keep-last", "1", "--keep-tag", "monthly"];
    let plan = ok(backup(
        &repo,
        &[&args[..], &["--dry-run"]].concat(),
        Some("pw"),
    ));
    assert!(plan.contains("would remove 1 snapshots"), "{plan}");
    let line = |id: &str| {
        plan.lines()
            .find(|l| l.contains(&id[..8]))
            .unwrap_or_else(|| panic!("{id} not listed: {plan}"))
            .to_string()
    };
    assert!(line(&ids[0]).contains("keep") && line(&ids[0]).contains("tag monthly"));
    assert!(line(&ids[1]).contains("remove") && line(&ids[1]).contains("not among the last 1"));
    assert!(line(&ids[2]).trim_start().starts_with("keep") && line(&ids[2]).contains("last"));
    // web2 is its own group, where it is the newest.
    assert!(line(&ids[3]).trim_start().starts_with("keep"));
    let listed = json(&ok(backup(&repo, &["--json", "snapshots"], Some("pw"))));
    assert_eq!(
        listed.as_array().expect("array").len(),
        4,
        "dry run removed"
    );

    let done = json(&ok(backup(
        &repo,
        &[&["--json"], &args[..]].concat(),
        Some("pw"),
    )));
    assert_eq!(done["dry_run"], false);
    let removed: Vec<_> = done["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["decisions"].as_array().expect("decisions").iter())
        .filter(|d| d["keep"] == false)
        .map(|d| d["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(removed, [ids[1].clone()]);
    let listed = json(&ok(backup(&repo, &["--json", "snapshots"], Some("pw"))));
    let left: Vec<_> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(left, [ids[0].clone(), ids[2].clone(), ids[3].clone()]);
    // The kept snapshots still restore.
    let target = dir.path().join("restored");
    ok(backup(
        &repo,
        &[
            "restore",
            &ids[0],
            "--target",
            target.to_str().expect("utf-8"),
        ],
        Some("pw"),
    ));
    assert_eq!(
        std::fs::read(target.join("site/index.php")).expect("restored"),
        b"<?php"
    );
}

#[test]
fn check_passes_then_names_damage_with_exit_4_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("site");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("index.php"), b"<?php echo 'a page';").expect("write");
    let repo = dir.path().join("repo");
    ok(backup(&repo, &["init"], Some("pw")));
    let snap = json(&ok(backup(
        &repo,
        &["--json", "backup", src.to_str().expect("utf-8")],
        Some("pw"),
    )));
    let id = snap["id"].as_str().expect("id").to_string();
    let text = ok(backup(&repo, &["check", "--read-data"], Some("pw")));
    assert!(text.contains("no damage found"), "{text}");
    let part = ok(backup(
        &repo,
        &["check", "--read-data-subset", "1/1"],
        Some("pw"),
    ));
    assert!(part.contains("read part 1/1"), "{part}");
    fails_with(
        backup(&repo, &["check", "--read-data-subset", "0/3"], Some("pw")),
        "n must be in 1..=N",
    );

    // One pack holds everything; flip a byte of its first frame (the file's).
    let pack = std::fs::read_dir(repo.join("data"))
        .expect("data/")
        .flat_map(|d| std::fs::read_dir(d.expect("entry").path()).expect("pack dir"))
        .map(|p| p.expect("pack").path())
        .next()
        .expect("a pack");
    let mut bytes = std::fs::read(&pack).expect("read pack");
    bytes[10] ^= 1;
    std::fs::write(&pack, bytes).expect("write pack");
    let pack_name = pack
        .strip_prefix(&repo)
        .expect("inside")
        .to_string_lossy()
        .into_owned();

    let out = backup(&repo, &["--json", "check", "--read-data"], Some("pw"));
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&String::from_utf8(out.stdout).expect("utf-8"));
    let problems = report["problems"].as_array().expect("problems");
    assert!(
        problems.iter().any(|p| p["object"]
            .as_str()
            .is_some_and(|o| o.starts_with(&pack_name))),
        "{report}"
    );
    assert!(
        problems.iter().any(|p| p["snapshot"] == id.as_str()
            && p["path"].as_str().is_some_and(|p| p.starts_with("/site"))),
        "{report}"
    );
    let text = backup(&repo, &["check", "--read-data"], Some("pw"));
    assert_eq!(text.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&format!("damage: snapshot {}", &id[..8]))
    );
}

#[test]
fn keys_are_added_listed_changed_and_the_last_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    ok(backup(&repo, &["init"], Some("alice")));
    let added = json(&ok(command(
        &repo,
        &["--json", "key", "add"],
        Some("alice"),
    )
    .env("BACKUP_NEW_PASSWORD", "bob")
    .output()
    .expect("runs")));
    let bob = added["added"].as_str().expect("id").to_string();
    let listed = json(&ok(backup(&repo, &["--json", "key", "list"], Some("bob"))));
    let keys = listed.as_array().expect("array");
    assert_eq!(keys.len(), 2);
    let alice = keys
        .iter()
        .find(|k| k["id"] != bob.as_str())
        .expect("alice's key")["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(keys.iter().all(|k| k["kind"] == "passphrase"));
    assert!(
        keys.iter()
            .any(|k| k["id"] == bob.as_str() && k["current"] == true)
    );
    fails_with(
        backup(&repo, &["key", "remove", &bob], Some("bob")),
        "opened with",
    );
    fails_with(
        command(&repo, &["key", "passwd"], Some("bob"))
            .output()
            .expect("runs"),
        "BACKUP_NEW_PASSWORD",
    );
    ok(backup(&repo, &["key", "remove", &alice[..8]], Some("bob")));
    fails_with(
        backup(&repo, &["key", "list"], Some("alice")),
        "wrong password",
    );
    fails_with(
        backup(&repo, &["key", "remove", &bob], Some("bob")),
        "last key",
    );
    let changed = ok(command(&repo, &["key", "passwd"], Some("bob"))
        .env("BACKUP_NEW_PASSWORD", "bob2")
        .output()
        .expect("runs"));
    assert!(
        changed.contains(&format!("replaced key {bob}")),
        "{changed}"
    );
    fails_with(backup(&repo, &["snapshots"], Some("bob")), "wrong password");
    ok(backup(&repo, &["snapshots"], Some("bob2")));
}

/// `backup -r SOURCE copy --to MIRROR`, the mirror's password in BACKUP_TO_PASSWORD.
fn copy_command(source: &Path, mirror: &Path) -> Command {
    let mut cmd = command(source, &["copy", "--to"], Some("pw"));
    cmd.arg(mirror).env("BACKUP_TO_PASSWORD", "mirror pw");
    cmd
}

/// `init --copy-params-from SOURCE` of a mirror with its own password.
fn init_mirror(source: &Path, mirror: &Path) {
    let source = source.to_str().expect("utf-8");
    let mut cmd = command(
        mirror,
        &["init", "--copy-params-from", source],
        Some("mirror pw"),
    );
    ok(cmd
        .env("BACKUP_FROM_PASSWORD", "pw")
        .output()
        .expect("init runs"));
}

#[test]
fn copy_killed_anywhere_leaves_a_mirror_that_checks_and_a_rerun_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("site");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("a.bin"), test_support::noise(12 << 20, 1)).expect("write");
    let source = dir.path().join("source");
    ok(backup(&source, &["init"], Some("pw")));
    let site = src.to_str().expect("utf-8");
    ok(backup(
        &source,
        &["backup", site, "--tag", "one"],
        Some("pw"),
    ));
    std::fs::write(src.join("b.bin"), test_support::noise(9 << 20, 2)).expect("write");
    ok(backup(
        &source,
        &["backup", site, "--tag", "two"],
        Some("pw"),
    ));

    // A different key: refused, naming the fix.
    let stranger = dir.path().join("stranger");
    ok(backup(&stranger, &["init"], Some("mirror pw")));
    let refused = copy_command(&source, &stranger)
        .output()
        .expect("copy runs");
    fails_with(refused, "init --copy-params-from");

    let started = std::time::Instant::now();
    let whole = dir.path().join("whole");
    init_mirror(&source, &whole);
    let out = ok(copy_command(&source, &whole).output().expect("copy runs"));
    assert!(out.contains("2 snapshots copied, 0 already there"), "{out}");
    let took = started.elapsed().as_millis() as u64;
    let again = ok(copy_command(&source, &whole).output().expect("copy runs"));
    assert!(
        again.contains("0 snapshots copied, 2 already there, 0 failed: 0 blobs"),
        "{again}"
    );

    for (i, delay_ms) in (0..12).map(|i| i * took / 10).enumerate() {
        let mirror = dir.path().join(format!("mirror{i}"));
        init_mirror(&source, &mirror);
        let mut child = copy_command(&source, &mirror)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("copy starts");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        child.wait().expect("wait");
        let check = backup(&mirror, &["check", "--read-data"], Some("mirror pw"));
        let said = String::from_utf8_lossy(&check.stdout);
        assert!(check.status.success(), "killed after {delay_ms} ms: {said}");
        let rerun = copy_command(&source, &mirror).output().expect("copy runs");
        let said = ok(rerun);
        assert!(
            said.contains(" 0 failed"),
            "killed after {delay_ms} ms: {said}"
        );
        let listed = json(&ok(backup(
            &mirror,
            &["--json", "snapshots"],
            Some("mirror pw"),
        )));
        assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
        ok(backup(
            &mirror,
            &["check", "--read-data"],
            Some("mirror pw"),
        ));
        std::fs::remove_dir_all(&mirror).expect("cleanup");
    }
    let target = dir.path().join("restored");
    let target = target.to_str().expect("utf-8");
    let restore = ["restore", "latest", "--target", target];
    ok(backup(&whole, &restore, Some("mirror pw")));
    assert_eq!(
        std::fs::read(Path::new(target).join("site/b.bin")).expect("read"),
        test_support::noise(9 << 20, 2)
    );
}

#[test]
fn append_only_backs_up_but_forgets_and_removes_keys_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("site");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("index.php"), b"<?php").expect("write");
    let repo = dir.path().join("repo");
    let site = src.to_str().expect("utf-8");
    ok(backup(&repo, &["init"], Some("pw")));
    let mut add = command(&repo, &["--json", "key", "add"], Some("pw"));
    let added = json(&ok(add
        .env("BACKUP_NEW_PASSWORD", "other")
        .output()
        .expect("runs")));
    let other = added["added"].as_str().expect("key id").to_string();
    for _ in 0..2 {
        ok(backup(
            &repo,
            &["--append-only", "backup", site],
            Some("pw"),
        ));
    }
    let forget = ["--append-only", "forget", "--keep-last", "1"];
    fails_with(backup(&repo, &forget, Some("pw")), "opened append-only");
    let remove = ["--append-only", "key", "remove", other.as_str()];
    fails_with(backup(&repo, &remove, Some("pw")), "opened append-only");
    let mut passwd = command(&repo, &["--append-only", "key", "passwd"], Some("pw"));
    passwd.env("BACKUP_NEW_PASSWORD", "third");
    fails_with(passwd.output().expect("runs"), "opened append-only");
    let listed = json(&ok(backup(&repo, &["--json", "snapshots"], Some("pw"))));
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    let keys = json(&ok(backup(&repo, &["--json", "key", "list"], Some("pw"))));
    assert_eq!(keys.as_array().map(Vec::len), Some(2));
    // Without --append-only, the same forget works.
    ok(backup(&repo, &["forget", "--keep-last", "1"], Some("pw")));
}

#[test]
fn schedule_runs_requested_jobs_and_writes_a_status_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("site");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("index.php"), b"<?php").expect("write");
    let repo = dir.path().join("repo");
    ok(backup(&repo, &["init"], Some("pw")));
    let policy = dir.path().join("policy.toml");
    let text = format!(
        "[[job]]\nname = \"nightly\"\nat = \"daily 03:00\"\n\
         [[job.step]]\nkind = \"backup\"\npaths = [{:?}]\ntag = [\"nightly\"]\n\
         [[job.step]]\nkind = \"check\"\nread_data_subset = \"1/2\"\n",
        src.to_str().expect("utf-8")
    );
    std::fs::write(&policy, text).expect("write policy");
    let state = dir.path().join("state");
    let schedule = |extra: &[&str]| {
        let base = [
            "schedule",
            "--policy",
            policy.to_str().expect("utf-8"),
            "--state-dir",
        ];
        let args = [&base[..], &[state.to_str().expect("utf-8")], extra].concat();
        backup(&repo, &args, Some("pw"))
    };
    let status = || json(&ok(schedule(&["--status"])));
    assert_eq!(status()["jobs"], json("{}"), "nothing ran yet");
    fails_with(
        schedule(&["--run-now", "weekly"]),
        "no job named \"weekly\"",
    );
    let requested = ok(schedule(&["--run-now", "nightly"]));
    assert!(
        requested.contains("requested a run of nightly"),
        "{requested}"
    );
    // No job is due yet (a new job waits for its slot): only the requested run happens.
    let ran = ok(schedule(&["--once"]));
    assert!(
        ran.contains("job nightly: manual run succeeded: backup: snapshot"),
        "{ran}"
    );
    let listed = json(&ok(backup(&repo, &["--json", "snapshots"], Some("pw"))));
    assert_eq!(listed[0]["tags"], json("[\"nightly\"]"));
    let nightly = &status()["jobs"]["nightly"];
    assert!(nightly["last_success"].is_string(), "{nightly}");
    assert!(
        nightly["next_run"]
            .as_str()
            .is_some_and(|t| t.ends_with("T03:00:00Z")),
        "{nightly}"
    );
    assert_eq!(nightly["last_check"]["ok"], true, "{nightly}");
    assert_eq!(nightly["last_check"]["part"], "1/2", "{nightly}");
    assert_eq!(nightly["last_error"], serde_json::Value::Null);
    assert!(
        ok(schedule(&["--once"])).is_empty(),
        "the request was served once"
    );

    std::fs::write(
        &policy,
        "[[job]]\nname = \"p\"\nat = \"hourly\"\n[[job.step]]\nkind = \"vacuum\"\n",
    )
    .expect("write policy");
    fails_with(schedule(&["--once"]), "no step kind \"vacuum\"");
    // The shipped example policy is valid (its jobs wait for their first slots).
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/backup-schedule.toml");
    let args = [
        "schedule",
        "--policy",
        example.to_str().expect("utf-8"),
        "--state-dir",
    ];
    let fresh = dir.path().join("fresh-state");
    ok(backup(
        &repo,
        &[&args[..], &[fresh.to_str().expect("utf-8"), "--once"]].concat(),
        Some("pw"),
    ));
}

#[test]
fn a_scheduled_run_killed_anywhere_leaves_a_repository_that_checks_and_runs_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("site");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("a.bin"), test_support::noise(16 << 20, 3)).expect("write");
    let repo = dir.path().join("repo");
    ok(backup(&repo, &["init"], Some("pw")));
    let policy = dir.path().join("policy.toml");
    let text = format!(
        "[[job]]\nname = \"nightly\"\nat = \"daily 03:00\"\n\
         [[job.step]]\nkind = \"backup\"\npaths = [{:?}]\n\
         [[job.step]]\nkind = \"forget\"\nkeep_last = 3\n",
        src.to_str().expect("utf-8")
    );
    std::fs::write(&policy, text).expect("write policy");
    let schedule = |state: &Path, extra: &[&str]| {
        let policy = policy.to_str().expect("utf-8");
        let base = ["schedule", "--policy", policy, "--state-dir"];
        let args = [&base[..], &[state.to_str().expect("utf-8")], extra].concat();
        command(&repo, &args, Some("pw"))
    };
    let started = std::time::Instant::now();
    let first = dir.path().join("state-first");
    ok(schedule(&first, &["--run-now", "nightly", "--once"])
        .output()
        .expect("runs"));
    let took = started.elapsed().as_millis() as u64;
    for i in 0..8u64 {
        let state = dir.path().join(format!("state{i}"));
        let mut child = schedule(&state, &["--run-now", "nightly", "--once"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("schedule starts");
        std::thread::sleep(std::time::Duration::from_millis(i * took / 6));
        let _ = child.kill(); // SIGKILL
        child.wait().expect("wait");
        ok(backup(&repo, &["check", "--read-data"], Some("pw")));
        // The rerun serves a request the kill left, and records an interrupted run as such.
        ok(schedule(&state, &["--once"]).output().expect("runs"));
        let status = json(&ok(schedule(&state, &["--status"]).output().expect("runs")));
        let nightly = &status["jobs"]["nightly"];
        assert!(nightly["running_since"].is_null(), "{status}");
        if nightly["runs"].as_u64().unwrap_or(0) > 0 {
            assert!(nightly["last_success"].is_string(), "{status}");
        }
        ok(backup(&repo, &["check", "--read-data"], Some("pw")));
    }
}
