//! Files that vanish or change between the scan and the read are reported, recorded in the
//! snapshot, and never abort the backup; excludes, markers and tags apply.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use backup_core::conformance::memory_repository;
use backup_core::{BackupOptions, Progress, ops};

/// Runs between the scan and the read: deletes one file and grows another as the scan finds
/// them.
struct Saboteur {
    vanish: PathBuf,
    grow: PathBuf,
    problems: Mutex<Vec<String>>,
}

impl Progress for Saboteur {
    fn found(&self, path: &Path, _bytes: u64) {
        if path == self.vanish {
            std::fs::remove_file(&self.vanish).unwrap();
        }
        if path == self.grow {
            std::fs::write(&self.grow, b"grown after the scan, before the read").unwrap();
        }
    }
    fn problem(&self, path: &str, _what: &str) {
        self.problems.lock().unwrap().push(path.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_and_changed_files_are_reported_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("cache")).unwrap();
    std::fs::create_dir_all(src.join("marked")).unwrap();
    std::fs::write(src.join("keep"), b"kept").unwrap();
    std::fs::write(src.join("vanish"), b"gone soon").unwrap();
    std::fs::write(src.join("grow"), b"small").unwrap();
    std::fs::write(src.join("debug.log"), b"excluded by glob").unwrap();
    std::fs::write(src.join("cache/x"), b"excluded by glob").unwrap();
    std::fs::write(src.join("marked/.nobackup"), b"").unwrap();
    std::fs::write(src.join("marked/y"), b"excluded by marker").unwrap();
    let repo = memory_repository().await;
    let saboteur = Arc::new(Saboteur {
        vanish: src.join("vanish"),
        grow: src.join("grow"),
        problems: Mutex::new(Vec::new()),
    });
    let options = BackupOptions::builder([&src])
        .with_exclude("*.log")
        .with_exclude("src/cache")
        .with_exclude_if_present(".nobackup")
        .with_tag("nightly")
        .build()
        .unwrap();
    let (id, snap) = backup_core::backup(repo.clone(), options, saboteur.clone())
        .await
        .unwrap();
    assert_eq!(snap.skipped.len(), 1, "{:?}", snap.skipped);
    assert!(snap.skipped[0].path.ends_with("src/vanish"));
    // The error is the I/O error alone: the path is not said twice.
    assert!(
        !snap.skipped[0].error.contains("vanish"),
        "{:?}",
        snap.skipped
    );
    // Read: "kept" and the grown file up to its scanned size; nothing of the vanished one.
    assert_eq!(snap.summary.bytes_read, 4 + 5, "{:?}", snap.summary);
    assert_eq!(
        snap.summary.bytes_read, snap.summary.bytes,
        "{:?}",
        snap.summary
    );
    assert_eq!(snap.changed.len(), 1, "{:?}", snap.changed);
    assert!(snap.changed[0].path.ends_with("src/grow"));
    let reported = saboteur.problems.lock().unwrap().clone();
    assert!(
        reported.iter().any(|p| p.ends_with("src/vanish")),
        "{reported:?}"
    );
    assert!(
        reported.iter().any(|p| p.ends_with("src/grow")),
        "{reported:?}"
    );
    assert_eq!(snap.tags, ["nightly"]);

    let mut paths: Vec<String> = ops::list(&repo, &id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.display_path())
        .collect();
    paths.sort();
    assert_eq!(paths, ["src", "src/grow", "src/keep"]);

    // The changed file is never trusted as unchanged by the next backup.
    let again = BackupOptions::builder([&src])
        .with_parent(id)
        .build()
        .unwrap();
    let (_, next) = backup_core::backup(repo, again, Arc::new(backup_core::NoProgress))
        .await
        .unwrap();
    assert_eq!(next.summary.files_unchanged, 1, "{:?}", next.summary);
    assert!(next.changed.is_empty());
}
