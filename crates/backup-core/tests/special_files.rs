//! FIFOs and device nodes are backed up with their metadata and recreated on restore; sockets
//! are recorded and reported, never recreated.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::sync::Arc;

use backup_core::conformance::{memory_repository, restore_all};
use backup_core::{BackupOptions, NoProgress};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifos_and_devices_are_recreated_with_their_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let fifo = src.join("pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mtime = filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789);
    filetime::set_symlink_file_times(&fifo, mtime, mtime).unwrap();
    // /dev/null's numbers; creating it needs CAP_MKNOD, which CI (root) has.
    let null = src.join("null");
    let dev = rustix::fs::makedev(1, 3);
    let have_device = rustix::fs::mknodat(
        rustix::fs::CWD,
        &null,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        dev,
    )
    .is_ok();
    let socket = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();

    let repo = memory_repository().await;
    let options = BackupOptions::builder([&src]).build().unwrap();
    let (id, snap) = backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(snap.summary.others, 2 + u64::from(have_device));
    drop(socket);

    let target = dir.path().join("restored");
    let summary = restore_all(repo, &id, &target).await;
    assert_eq!(summary.special_files, 1 + u64::from(have_device));
    let restored = target.join("src");
    let meta = std::fs::symlink_metadata(restored.join("pipe")).unwrap();
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(
        (meta.mtime(), meta.mtime_nsec()),
        (1_600_000_000, 123_456_789)
    );
    if have_device {
        let meta = std::fs::symlink_metadata(restored.join("null")).unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!(meta.rdev(), dev);
    } else {
        eprintln!("no CAP_MKNOD here: device node round trip not checked");
    }
    assert!(!restored.join("sock").exists());
    assert!(
        summary
            .warnings
            .iter()
            .any(|w| w.contains("sock") && w.contains("Socket")),
        "{:?}",
        summary.warnings
    );
}
