//! A mount whose statfs hangs, in a test binary of its own: it counts the process's statvfs
//! threads, which other disk tests running alongside would add to.

mod support;

use std::time::Duration;

use healthcheck::checks::DiskCheck;
use healthcheck::{Reason, Status};
use support::{fixture, is_root, spawn_until};

/// A mount whose statfs hangs (a FUSE file system standing in for a dead NFS server): each run
/// ends at the monitor's timeout, and later runs wait for the stuck probe instead of starting
/// another stuck thread.
#[tokio::test]
async fn hung_mount_times_out_and_is_not_probed_twice() {
    let is_root = is_root();
    if !is_root || !std::path::Path::new("/dev/fuse").exists() {
        test_support::missing(
            "root and /dev/fuse (to mount a FUSE file system whose statfs hangs)",
        );
        return;
    }
    let Some(_) =
        test_support::require_path("/usr/lib/python3/dist-packages/fusepy.py", "python3-fusepy")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().join("hung");
    std::fs::create_dir(&mountpoint).unwrap();
    let mut fs = spawn_until(
        std::process::Command::new("/usr/bin/python3")
            .arg(fixture("hang_statfs.py"))
            .arg(&mountpoint),
        "mounted",
    );
    let monitor = healthcheck::Monitor::builder()
        .with_check(
            healthcheck::CheckEntry::builder(
                "nfs",
                std::sync::Arc::new(DiskCheck::new(&mountpoint)),
            )
            .with_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
        )
        .build()
        .unwrap();
    let first = monitor.run().await;
    let second = monitor.run().await;
    monitor.run().await;
    let stuck_threads = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|c| c.trim() == "healthcheck-sta")
        })
        .count();
    // Stop the file system: the stuck statvfs fails with ENOTCONN and its thread ends.
    let _ = fs.kill();
    let _ = fs.wait();
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&mountpoint)
        .status();
    let c = &first.checks[0];
    assert_eq!(
        (c.status, c.reason),
        (Status::Critical, Reason::Timeout),
        "{}",
        c.message
    );
    assert!(c.duration >= 0.3 && c.duration < 1.0, "{}", c.duration);
    let c = &second.checks[0];
    assert_eq!(
        (c.status, c.reason),
        (Status::Critical, Reason::Timeout),
        "{}",
        c.message
    );
    assert_eq!(stuck_threads, 1, "one stuck statvfs thread for three runs");
}
