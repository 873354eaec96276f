//! `check --read-data` when snapshots share their trees: damage in a group of small files is
//! named by each file's path in every snapshot that holds it (the walk works out once which
//! trees are sound, and reports the others per snapshot).

use std::sync::Arc;

use backup_core::check::{CheckOptions, DataSubset, check};
use backup_core::conformance::small_options;
use backup_core::{BackupOptions, KeySource, NoProgress, Repository, StoreOptions};

/// Files under the chunker's 16 KiB minimum: one group frame holds them all.
const FILES: usize = 6;

#[tokio::test]
async fn damage_in_a_shared_group_is_named_in_every_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in 0..FILES {
        // Incompressible, so the group fills almost all of the only pack.
        let content: Vec<u8> = (0..8 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(src.join("sub").join(format!("f{i}")), content).unwrap();
    }
    let repo_dir = dir.path().join("repo");
    let store = StoreOptions::new(repo_dir.to_string_lossy())
        .with_create(true)
        .build()
        .unwrap();
    let key = KeySource::passphrase("pw");
    let repo = Arc::new(
        Repository::init(store, "repo", &key, small_options())
            .await
            .unwrap(),
    );
    let mut snapshots = Vec::new();
    for _ in 0..2 {
        let options = BackupOptions::builder([&src]).build().unwrap();
        let (id, _) = backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
            .await
            .unwrap();
        snapshots.push(id);
    }
    let read_all = CheckOptions::builder()
        .with_read_data(DataSubset::All)
        .build()
        .unwrap();
    let sound = check(repo.clone(), &read_all).await.unwrap();
    assert!(sound.is_ok(), "{:?}", sound.problems);
    assert_eq!(sound.snapshots, 2);
    // Both snapshots have the same trees: root, src and sub.
    assert_eq!(sound.trees, 3);
    assert!(
        sound.blobs_verified >= FILES + 3,
        "{}",
        sound.blobs_verified
    );

    // One pack: the group (48 KiB) and three small trees. Its middle byte is in the group.
    let packs: Vec<_> = walk_files(&repo_dir.join("data"));
    assert_eq!(packs.len(), 1, "{packs:?}");
    // The middle byte of the largest data frame (a group): never a tree, which the structure
    // check below would see.
    let group = backup_core::ops::list_blobs(&repo)
        .await
        .unwrap()
        .into_iter()
        .filter(|b| b.kind == backup_core::format::BlobKind::Data)
        .max_by_key(|b| b.length)
        .expect("a data blob");
    let mut bytes = std::fs::read(&packs[0]).unwrap();
    let middle = group.offset as usize + group.length as usize / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&packs[0], bytes).unwrap();

    let store = StoreOptions::new(repo_dir.to_string_lossy())
        .build()
        .unwrap();
    let repo = Arc::new(Repository::open(store, "repo", &key).await.unwrap());
    let report = check(repo, &read_all).await.unwrap();
    assert!(!report.is_ok());
    // Which files the flipped group holds depends on how the pack threads grouped them; every
    // damaged blob must be traced to a file in each snapshot, and both name the same files.
    let damaged: std::collections::BTreeSet<&str> = report
        .problems
        .iter()
        .filter(|p| p.snapshot.is_none())
        .map(|p| p.object.as_str())
        .collect();
    assert!(!damaged.is_empty(), "{:?}", report.problems);
    let named = |snapshot: &str| -> std::collections::BTreeSet<(&str, &str)> {
        report
            .problems
            .iter()
            .filter(|p| p.snapshot.as_deref() == Some(snapshot))
            .map(|p| {
                assert!(p.problem.contains("fails authentication"), "{p:?}");
                (p.object.as_str(), p.path.as_deref().expect("a path"))
            })
            .collect()
    };
    for snapshot in &snapshots {
        let files = named(snapshot);
        for blob in &damaged {
            assert!(
                files.iter().any(|(object, _)| object == blob),
                "{blob} not traced to a file of {snapshot}: {:?}",
                report.problems
            );
        }
    }
    assert_eq!(named(&snapshots[0]), named(&snapshots[1]));
    // Without read-data the damage is not seen: the structure is intact.
    let structure = check(
        Arc::new(
            Repository::open(
                StoreOptions::new(repo_dir.to_string_lossy())
                    .build()
                    .unwrap(),
                "repo",
                &key,
            )
            .await
            .unwrap(),
        ),
        &CheckOptions::builder().build().unwrap(),
    )
    .await
    .unwrap();
    assert!(structure.is_ok(), "{:?}", structure.problems);
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}
