//! A restore target that is a symlink to a directory is written through (the user chose it),
//! while directories below it are never followed.

use std::sync::Arc;

use backup_core::conformance::{memory_repository, restore_all};
use backup_core::{BackupOptions, NoProgress, compare_trees};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_writes_through_a_symlinked_target() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("site");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("index.php"), "<?php echo 1;").unwrap();
    std::fs::write(src.join("sub/data"), vec![7u8; 100_000]).unwrap();
    // A file given as a path of its own lands directly in the target.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "backed up by itself").unwrap();
    let repo = memory_repository().await;
    let options = BackupOptions::builder([&src, &notes]).build().unwrap();
    let (id, _) = backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
        .await
        .unwrap();

    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let summary = restore_all(repo.clone(), &id, &link).await;
    assert_eq!(summary.files_restored, 3);
    assert!(compare_trees(&src, &real.join("site")).unwrap().is_empty());
    assert_eq!(
        std::fs::read_to_string(real.join("notes.txt")).unwrap(),
        "backed up by itself"
    );
    // A rerun into the same target finds every file already correct.
    let again = restore_all(repo, &id, &link).await;
    assert_eq!((again.files_restored, again.files_unchanged), (0, 3));
}
