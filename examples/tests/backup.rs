//! End-to-end tests of the `backup` binary: the operator's round trip and the errors they see.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn backup(repo: &Path, args: &[&str], password: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_backup"));
    cmd.arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("BACKUP_PASSWORD")
        .env_remove("BACKUP_REPOSITORY")
        .stdin(Stdio::null());
    if let Some(pw) = password {
        cmd.env("BACKUP_PASSWORD", pw);
    }
    cmd.output().expect("backup runs")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
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
