//! Restore: allocation of zero blocks (sparse is an option), hard-linked symlinks, and the
//! temporary files of killed restores.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use backup_core::conformance::{memory_repository, restore_all, restore_all_with};
use backup_core::{BackupOptions, NoProgress, Repository};

async fn backup_of(repo: &Arc<Repository>, src: &Path) -> String {
    let options = BackupOptions::builder([src]).build().unwrap();
    backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
        .await
        .unwrap()
        .0
}

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_blocks_are_allocated_unless_sparse_is_asked_for() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // A preallocated file of zeros (as a database or VM image) and a sparse one.
    std::fs::write(src.join("preallocated"), vec![0u8; MIB as usize]).unwrap();
    let sparse = std::fs::File::create(src.join("sparse")).unwrap();
    sparse.set_len(MIB).unwrap();
    drop(sparse);
    assert!(allocated(&src.join("preallocated")) >= MIB);
    let repo = memory_repository().await;
    let id = backup_of(&repo, &src).await;

    let full = work.path().join("full");
    restore_all(repo.clone(), &id, &full).await;
    for name in ["preallocated", "sparse"] {
        let path = full.join("src").join(name);
        assert_eq!(std::fs::read(&path).unwrap(), vec![0u8; MIB as usize]);
        assert!(
            allocated(&path) >= MIB,
            "{name}: {} bytes allocated",
            allocated(&path)
        );
    }

    let holes = work.path().join("holes");
    restore_all_with(repo, &id, &holes, true).await;
    for name in ["preallocated", "sparse"] {
        let path = holes.join("src").join(name);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), MIB);
        assert!(
            allocated(&path) < MIB / 4,
            "{name}: {} bytes allocated",
            allocated(&path)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_linked_symlink_comes_back_as_one_inode() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::os::unix::fs::symlink("../target-of-link", src.join("sub/link")).unwrap();
    // link(2) on a symlink links the symlink itself (std's hard_link does not follow).
    std::fs::hard_link(src.join("sub/link"), src.join("also-link")).unwrap();
    std::fs::hard_link(src.join("sub/link"), src.join("sub/third")).unwrap();
    assert_eq!(
        std::fs::symlink_metadata(src.join("sub/link"))
            .unwrap()
            .nlink(),
        3
    );
    let repo = memory_repository().await;
    let id = backup_of(&repo, &src).await;

    let target = work.path().join("restored");
    let summary = restore_all(repo, &id, &target).await;
    let restored = target.join("src");
    let inode = |p: &str| {
        let m = std::fs::symlink_metadata(restored.join(p)).unwrap();
        assert!(m.file_type().is_symlink(), "{p} is a symlink");
        (m.dev(), m.ino(), m.nlink())
    };
    assert_eq!(inode("sub/link"), inode("also-link"));
    assert_eq!(inode("sub/link"), inode("sub/third"));
    assert_eq!(inode("sub/link").2, 3);
    assert_eq!(
        std::fs::read_link(restored.join("also-link")).unwrap(),
        Path::new("../target-of-link")
    );
    assert_eq!(
        (summary.symlinks, summary.hard_links),
        (1, 2),
        "{summary:?}"
    );
    let diffs = backup_core::compare_trees(&src, &restored).unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
}

/// A process id that no process has now.
fn dead_pid() -> u32 {
    (1_000_000..u32::MAX)
        .find(|pid| !Path::new("/proc").join(pid.to_string()).exists())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_removes_the_temporary_files_of_killed_restores() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    std::fs::write(src.join("dir/page.php"), b"<?php").unwrap();
    std::fs::write(src.join("top"), b"top").unwrap();
    let repo = memory_repository().await;
    let id = backup_of(&repo, &src).await;
    let target = work.path().join("restored");
    restore_all(repo.clone(), &id, &target).await;

    // What restores killed before their rename leave, and what must stay.
    let dead = dead_pid();
    let dir = target.join("src/dir");
    let stale = [
        dir.join(format!(".page.php.restore-{dead}-0")),
        dir.join(format!(".page.php.restore-{dead}-1")),
        target.join(format!("src/.top.restore-{dead}-0")),
    ];
    let kept = [
        // Not a file of the snapshot.
        dir.join(format!(".mine.txt.restore-{dead}-0")),
        // A restore still running (this process).
        dir.join(format!(".page.php.restore-{}-0", std::process::id())),
        // Not a temporary name.
        dir.join(".page.php.restore-x-0"),
    ];
    for path in stale.iter().chain(&kept) {
        std::fs::write(path, b"partial").unwrap();
    }
    let summary = restore_all(repo, &id, &target).await;
    assert_eq!(summary.stale_temp_files_removed, 3, "{summary:?}");
    for path in &stale {
        assert!(!path.exists(), "{} left", path.display());
    }
    for path in &kept {
        assert!(path.exists(), "{} removed", path.display());
    }
}
