//! Checks of the local host: disk, memory, swap, load, processes, file freshness.

mod support;

use std::time::Duration;

use healthcheck::checks::{
    DiskCheck, FileFreshnessCheck, LoadCheck, MemoryCheck, ProcessCheck, SwapCheck,
};
use healthcheck::conformance::check_suite;
use healthcheck::{Check, Reason, Status};
use support::{assert_verdict, fixture, is_root, spawn_until};

const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn disk_space_and_inodes_match_df() {
    let dir = tempfile::tempdir().unwrap();
    let check = DiskCheck::new(dir.path());
    let o = check.run().await;
    assert_verdict(&o, Status::Ok, Reason::Ok);
    // Compare with df, which reports the same statvfs figures (available to non-root users).
    if let Some(df) = test_support::require_program("df") {
        let out = std::process::Command::new(df)
            .args(["-B1", "--output=avail,size"])
            .arg(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let nums: Vec<f64> = text
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        let free = o.metric("free_bytes").unwrap();
        // Other engineers write to the same disk: allow 256 MiB of drift between the two reads.
        assert!(
            (free - nums[0]).abs() < 256.0 * 1024.0 * 1024.0,
            "free {free} vs df {}",
            nums[0]
        );
    }
    let p = o.metric("free_percent").unwrap();
    assert!((0.0..=100.0).contains(&p));
    assert!((0.0..=100.0).contains(&o.metric("inodes_free_percent").unwrap()));
    check_suite(&check, WITHIN).await;

    let o = DiskCheck::new(dir.path().join("no/such/dir")).run().await;
    assert_verdict(&o, Status::Critical, Reason::Missing);
}

/// A read-only tmpfs mounted in a private mount namespace of a child process, seen through
/// `/proc/PID/root` (needs root and util-linux `unshare`).
#[tokio::test]
async fn read_only_mount_is_critical() {
    let is_root = is_root();
    if !is_root {
        test_support::missing("root (to mount a read-only tmpfs in a private namespace)");
        return;
    }
    let Some(unshare) = test_support::require_program("unshare") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_until(
        std::process::Command::new(unshare)
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o ro,size=1m hgro {} && echo ready && exec sleep 30",
                dir.path().display()
            )),
        "ready",
    );
    let seen = format!("/proc/{}/root{}", child.id(), dir.path().display());
    let o = DiskCheck::new(&seen).run().await;
    let expected = DiskCheck::new(&seen)
        .with_read_only_expected(true)
        .run()
        .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_verdict(&o, Status::Critical, Reason::ReadOnly);
    assert_eq!(expected.status, Status::Ok, "{}", expected.message);
    // tmpfs of 1 MiB, empty: all of it free.
    assert_eq!(expected.metric("free_bytes"), Some(1024.0 * 1024.0));
}

#[tokio::test]
async fn memory_swap_and_load_from_fixture() {
    let root = fixture("proc-busy");
    let o = MemoryCheck::new().with_proc_root(&root).run().await;
    assert_eq!(o.metric("available_percent"), Some(5.0));
    assert_eq!(o.metric("available_bytes"), Some(400_000.0 * 1024.0));
    let o = SwapCheck::new().with_proc_root(&root).run().await;
    assert_eq!(o.metric("free_percent"), Some(25.0));
    assert_eq!(o.metric("used_bytes"), Some(1_500_000.0 * 1024.0));
    let o = LoadCheck::new().with_proc_root(&root).run().await;
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert_eq!(o.metric("load5_per_core"), Some(5.0 / cores));
    assert_eq!(o.metric("load15_per_core"), Some(7.0 / cores));
    let o = MemoryCheck::new()
        .with_proc_root(root.join("missing"))
        .run()
        .await;
    assert_eq!((o.status, o.reason), (Status::Unknown, Reason::CheckFailed));
}

#[tokio::test]
async fn memory_swap_and_load_of_this_host() {
    let checks: [&dyn Check; 3] = [&MemoryCheck::new(), &SwapCheck::new(), &LoadCheck::new()];
    for check in checks {
        let o = check.run().await;
        assert_eq!(o.status, Status::Ok, "{}", o.message);
        check_suite(check, WITHIN).await;
    }
}

#[tokio::test]
async fn process_by_name_and_pidfile() {
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("sleep.pid");
    std::fs::write(&pidfile, format!("{}\n", sleeper.id())).unwrap();
    let by_file = ProcessCheck::by_pidfile(&pidfile);
    let o = by_file.run().await;
    assert_verdict(&o, Status::Ok, Reason::Ok);
    check_suite(&by_file, WITHIN).await;
    let o = ProcessCheck::by_name("sleep").run().await;
    assert!(o.metric("processes").unwrap() >= 1.0, "{}", o.message);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let o = by_file.run().await;
    assert_verdict(&o, Status::Critical, Reason::NotRunning);
    let o = ProcessCheck::by_name("no-such-daemon-hg").run().await;
    assert_verdict(&o, Status::Critical, Reason::NotRunning);
    let o = ProcessCheck::by_pidfile(dir.path().join("missing.pid"))
        .run()
        .await;
    assert_eq!(o.reason, Reason::NotRunning, "{}", o.message);
    std::fs::write(&pidfile, "not a pid").unwrap();
    let o = by_file.run().await;
    assert_verdict(&o, Status::Unknown, Reason::CheckFailed);
}

#[tokio::test]
async fn file_freshness() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backup-status.json");
    std::fs::write(&path, "{}").unwrap();
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(48 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    let check = FileFreshnessCheck::new(&path);
    let o = check.run().await;
    let age = o.metric("age_seconds").unwrap();
    assert!((age - 48.0 * 3600.0).abs() < 5.0, "{age}");
    check_suite(&check, WITHIN).await;
    // Through the monitor: older than 26 hours warns.
    let monitor = healthcheck::Monitor::builder()
        .with_check(
            healthcheck::CheckEntry::builder("backup", std::sync::Arc::new(check))
                .with_thresholds(
                    healthcheck::Thresholds::parse(Some("93600"), Some("259200")).unwrap(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let r = monitor.run().await;
    assert_eq!(
        (r.checks[0].status, r.checks[0].reason),
        (Status::Warning, Reason::Threshold)
    );
    let o = FileFreshnessCheck::new(dir.path().join("gone")).run().await;
    assert_eq!((o.status, o.reason), (Status::Critical, Reason::Missing));
}
