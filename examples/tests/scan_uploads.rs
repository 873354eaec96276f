//! `scan-uploads` end to end against the real clamd (scripts/services/virusscan.sh): scan with
//! quarantine and cache, list, restore, exit statuses, and watch mode stopped by SIGTERM.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_scan-uploads");

fn eicar() -> Vec<u8> {
    let mut v = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-".to_vec();
    v.extend_from_slice(b"STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    v
}

fn run(args: &[&str], socket: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .env("CLAMD_SOCKET", socket)
        .output()
        .expect("run scan-uploads")
}

/// The clamd socket, a temporary directory and its (created) `uploads` directory.
fn clamd_and_uploads() -> Option<(String, tempfile::TempDir, std::path::PathBuf)> {
    let socket = test_support::require_env(
        "HOSTGUARD_CLAMD_SOCKET",
        "clamd from scripts/services/virusscan.sh",
    )?;
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("uploads");
    std::fs::create_dir(&up).unwrap();
    Some((socket, dir, up))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn scan_quarantine_list_restore() {
    let Some((socket, dir, up)) = clamd_and_uploads() else {
        return;
    };
    std::fs::create_dir_all(up.join("2026/12")).unwrap();
    std::fs::write(up.join("2026/12/shell.php"), eicar()).unwrap();
    std::fs::write(up.join("index.php"), b"<?php echo 'hi'; ?>").unwrap();
    let q = dir.path().join("quarantine");
    let cache = dir.path().join("scan.cache");
    let (up_s, q_s, cache_s) = (
        up.to_str().unwrap(),
        q.to_str().unwrap(),
        cache.to_str().unwrap(),
    );

    let out = run(
        &["scan", up_s, "--quarantine", q_s, "--cache", cache_s],
        &socket,
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("shell.php: Hostguard.Test.EICAR.UNOFFICIAL FOUND"),
        "{t}"
    );
    assert!(
        t.contains("1 clean, 1 infected") && t.contains("1 quarantined"),
        "{t}"
    );
    assert!(!up.join("2026/12/shell.php").exists());

    // Rescan: the clean file is unchanged, the infected one is gone.
    let out = run(
        &["scan", up_s, "--quarantine", q_s, "--cache", cache_s],
        &socket,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("scanned 0 files") && text(&out).contains("1 unchanged"),
        "{}",
        text(&out)
    );

    let out = run(&["list", "--quarantine", q_s, "--json"], &socket);
    let record: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(
        record["original_path"],
        up.join("2026/12/shell.php").to_str().unwrap()
    );
    let id = record["id"].as_str().unwrap();
    let out = run(&["restore", id, "--quarantine", q_s], &socket);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(up.join("2026/12/shell.php")).unwrap(),
        eicar()
    );
    let out = run(&["restore", id, "--quarantine", q_s], &socket);
    assert_eq!(out.status.code(), Some(2), "restoring twice must fail");
}

#[test]
fn dead_clamd_is_an_error_exit() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["scan", dir.path().to_str().unwrap()],
        dir.path().join("none.sock").to_str().unwrap(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("clamd does not answer"),
        "{}",
        text(&out)
    );
}

#[test]
fn watch_mode_quarantines_new_uploads() {
    let Some((socket, dir, up)) = clamd_and_uploads() else {
        return;
    };
    let q = dir.path().join("quarantine");
    let mut child = Command::new(BIN)
        .args(["scan", "--watch", "--settle", "300ms", "--quarantine"])
        .arg(&q)
        .arg(&up)
        .env("CLAMD_SOCKET", &socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(|| q.exists(), "the quarantine directory");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(up.join("evil.php"), eicar()).unwrap();
    wait_for(
        || !up.join("evil.php").exists(),
        "evil.php to be quarantined",
    );
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "watch mode did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    assert!(status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("evil.php: quarantined as"),
        "{}",
        text(&out)
    );
}

fn wait_for(cond: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
