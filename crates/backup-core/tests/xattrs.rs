//! A file's extended attributes are read from its open descriptor when it is read, and taken
//! from the parent snapshot when it is unchanged; setting one changes the ctime, so the next
//! backup reads the file again and records the new set.

use std::path::Path;
use std::sync::Arc;

use backup_core::conformance::{memory_repository, restore_all};
use backup_core::{BackupOptions, NoProgress, Repository};

/// Backs up `src` (with its latest snapshot as parent), restores the new snapshot into a fresh
/// `target` and returns how many files the backup found unchanged.
async fn backup_and_restore(repo: &Arc<Repository>, src: &Path, target: &Path) -> u64 {
    let options = BackupOptions::builder([src])
        .with_auto_parent(true)
        .build()
        .unwrap();
    let (id, snap) = backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(target);
    restore_all(repo.clone(), &id, target).await;
    snap.summary.files_unchanged
}

fn attr(path: &Path, name: &str) -> Option<Vec<u8>> {
    xattr::get(path, name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xattrs_survive_unchanged_backups_and_changes_are_seen() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let file = src.join("file");
    std::fs::write(&file, b"contents").unwrap();
    if xattr::set(&file, "user.first", b"1").is_err() {
        // Skips only through test-support: listed at the end of scripts/test.sh, and a failure
        // under CI=true.
        test_support::missing(&format!(
            "user xattr support on the file system of {}",
            dir.path().display()
        ));
        return;
    }
    xattr::set(&src, "user.dir", b"d").unwrap();
    let repo = memory_repository().await;
    let target = dir.path().join("restored");
    let restored = target.join("src").join("file");

    assert_eq!(backup_and_restore(&repo, &src, &target).await, 0);
    assert_eq!(attr(&restored, "user.first").as_deref(), Some(&b"1"[..]));
    assert_eq!(
        attr(&target.join("src"), "user.dir").as_deref(),
        Some(&b"d"[..])
    );

    // Unchanged: not read again, its xattrs come from the parent snapshot.
    assert_eq!(backup_and_restore(&repo, &src, &target).await, 1);
    assert_eq!(attr(&restored, "user.first").as_deref(), Some(&b"1"[..]));

    // A new xattr changes the ctime: the file is read again and both attributes are kept.
    xattr::set(&file, "user.second", b"2").unwrap();
    assert_eq!(backup_and_restore(&repo, &src, &target).await, 0);
    assert_eq!(attr(&restored, "user.first").as_deref(), Some(&b"1"[..]));
    assert_eq!(attr(&restored, "user.second").as_deref(), Some(&b"2"[..]));
}
