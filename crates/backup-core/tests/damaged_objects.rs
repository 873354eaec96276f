//! One damaged index or snapshot object, or a stray file in the repository, does not make the
//! repository unusable: it is reported by name and skipped, and every snapshot that does not
//! depend on it is still listed and restored.

use std::path::Path;
use std::sync::Arc;

use backup_core::conformance::{restore_all, snapshot_ids};
use backup_core::{BackupOptions, InitOptions, KeySource, NoProgress, Repository, StoreOptions};

fn key() -> KeySource {
    KeySource::passphrase("damaged objects")
}

fn names(dir: &Path) -> Vec<String> {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = listing
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_stray_objects_are_skipped_by_name() {
    let work = tempfile::tempdir().unwrap();
    let location = work.path().join("repo");
    let store = StoreOptions::new(location.to_string_lossy())
        .with_create(true)
        .build()
        .unwrap();
    let repo = Arc::new(
        Repository::init(store, "repo", &key(), InitOptions::new())
            .await
            .unwrap(),
    );
    // Four backups of four directories with distinct contents: no snapshot shares a blob (or
    // an index object) with another.
    let mut snapshots = Vec::new();
    let mut index_of = Vec::new();
    for i in 0..4 {
        let src = work.path().join(format!("src{i}"));
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("file"), format!("content of backup {i}")).unwrap();
        let before = names(&location.join("index"));
        let options = BackupOptions::builder([&src]).build().unwrap();
        let (id, _) = backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
            .await
            .unwrap();
        let after = names(&location.join("index"));
        let new: Vec<_> = after
            .iter()
            .filter(|n| !before.contains(n))
            .cloned()
            .collect();
        assert_eq!(new.len(), 1, "one index object per small backup");
        snapshots.push(id);
        index_of.push(new[0].clone());
    }
    drop(repo);

    // Damage snapshot 1's object and snapshot 2's index; add stray files.
    flip_a_byte(&location.join("snapshots").join(&snapshots[1]));
    flip_a_byte(&location.join("index").join(&index_of[2]));
    std::fs::write(location.join("snapshots/.DS_Store"), b"").unwrap();
    std::fs::write(location.join("index/notes.txt"), b"my notes").unwrap();
    std::fs::write(location.join("keys/README"), b"keys are here").unwrap();

    let store = StoreOptions::new(location.to_string_lossy())
        .build()
        .unwrap();
    let repo = Arc::new(Repository::open(store, "repo", &key()).await.unwrap());
    let listed = snapshot_ids(&repo).await;
    assert_eq!(
        listed,
        [
            snapshots[0].clone(),
            snapshots[2].clone(),
            snapshots[3].clone()
        ],
        "every intact snapshot is listed"
    );
    let skipped: Vec<String> = repo
        .skipped_objects()
        .into_iter()
        .map(|s| s.object)
        .collect();
    let mut expected = vec![
        format!("index/{}", index_of[2]),
        "index/notes.txt".to_string(),
        "keys/README".to_string(),
        format!("snapshots/{}", snapshots[1]),
        "snapshots/.DS_Store".to_string(),
    ];
    expected.sort();
    assert_eq!(skipped, expected);

    // Snapshots 0 and 3 depend on nothing damaged and restore; snapshot 2's blobs were in the
    // damaged index, and its restore says so.
    for (i, id) in [(0, &snapshots[0]), (3, &snapshots[3])] {
        let target = work.path().join(format!("restored{i}"));
        restore_all(repo.clone(), id, &target).await;
        assert_eq!(
            std::fs::read_to_string(target.join(format!("src{i}/file"))).unwrap(),
            format!("content of backup {i}")
        );
    }
    let options = backup_core::RestoreOptions::builder(work.path().join("restored2"))
        .build()
        .unwrap();
    let err = backup_core::restore(repo.clone(), &snapshots[2], options, Arc::new(NoProgress))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not in any index"), "{err}");
}
