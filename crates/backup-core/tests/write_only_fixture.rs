//! The version-2 (write-only) fixture repository (`tests/fixtures/repository-v2-write-only`,
//! written once by `tests/fixtures/make_write_only_repository.py` with the tool of its day and
//! the real `age-keygen`) opens with its committed owner identity and restores every snapshot to
//! the content its manifest records, forever; its committed host key still deduplicates against
//! it and still reads nothing. The manifest was written by that script (Python's `os.lstat` and
//! `hashlib`), not by backup-core.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::check::{CheckOptions, DataSubset, check};
use backup_core::conformance::{restore_all, snapshot_ids};
use backup_core::{BackupOptions, Error, KeySource, NoProgress, Repository, StoreOptions};

const NAME: &str = "repository-v2-write-only";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn manifest() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(fixtures().join(format!("{NAME}.manifest"))).unwrap();
    let mut snapshots: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        match line.split_once('\t') {
            Some(("snapshot", id)) => current = Some(id.to_string()),
            Some(("entry", entry)) => {
                let id = current.clone().expect("an entry after its snapshot line");
                snapshots.entry(id).or_default().insert(entry.to_string());
            }
            _ => panic!("manifest line {line:?}"),
        }
    }
    snapshots
}

/// The entries under `root/top` in the manifest's format (path, kind, mode, mtime, size,
/// SHA-256 or link target in hex).
fn entries_of(root: &Path, rel: &Path, out: &mut BTreeSet<String>) {
    let path = root.join(rel);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    let ft = meta.file_type();
    let (kind, size, content) = if ft.is_symlink() {
        let target = std::fs::read_link(&path).unwrap();
        let hex = hex::encode(target.as_os_str().as_bytes());
        ("symlink", meta.len().to_string(), hex)
    } else if ft.is_dir() {
        ("dir", "-".to_string(), "-".to_string())
    } else {
        let digest = ring::digest::digest(&ring::digest::SHA256, &std::fs::read(&path).unwrap());
        ("file", meta.len().to_string(), hex::encode(digest.as_ref()))
    };
    let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    out.insert(
        [
            rel.to_str().unwrap().to_string(),
            kind.to_string(),
            format!("{:o}", meta.mode() & 0o7777),
            mtime.to_string(),
            size,
            content,
        ]
        .join("\t"),
    );
    if ft.is_dir() {
        for entry in std::fs::read_dir(&path).unwrap() {
            entries_of(root, &rel.join(entry.unwrap().file_name()), out);
        }
    }
}

fn store(dir: &Path) -> Arc<dyn object_store::ObjectStore> {
    StoreOptions::new(dir.to_string_lossy()).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_only_fixture_restores_for_the_owner_and_stays_unreadable_for_the_host() {
    let expected = manifest();
    assert_eq!(expected.len(), 2, "two snapshots in the manifest");
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join(NAME);
    test_support::copy_dir(&fixtures().join(NAME), &repo_dir);

    let identity =
        KeySource::owner_identity_file(&fixtures().join(format!("{NAME}.identity"))).unwrap();
    let owner = Arc::new(
        Repository::open(store(&repo_dir), "fixture", &identity)
            .await
            .unwrap(),
    );
    assert_eq!(owner.config().version, 2);
    assert!(owner.is_write_only());
    let listed: BTreeSet<String> = snapshot_ids(&owner).await.into_iter().collect();
    assert_eq!(listed, expected.keys().cloned().collect());
    assert!(owner.skipped_objects().is_empty());
    let hosts = owner.write_only_hosts().await.unwrap();
    assert_eq!(hosts.len(), 1);

    for (id, lines) in &expected {
        let target = work.path().join(format!("restored-{id}"));
        restore_all(owner.clone(), id, &target).await;
        let mut restored = BTreeSet::new();
        entries_of(&target, Path::new("site"), &mut restored);
        assert_eq!(&restored, lines, "snapshot {id}");
    }
    let options = CheckOptions::builder()
        .with_read_data(DataSubset::All)
        .build()
        .unwrap();
    let report = check(owner.clone(), &options).await.unwrap();
    assert!(report.is_ok(), "{report:?}");

    // The committed host key: reads nothing, and deduplicates a restored copy entirely.
    let host_key = KeySource::host_key_file(&fixtures().join(format!("{NAME}.host-key"))).unwrap();
    let host = Arc::new(
        Repository::open(store(&repo_dir), "fixture", &host_key)
            .await
            .unwrap(),
    );
    assert!(matches!(
        host.snapshots().await,
        Err(Error::WriteOnly { .. })
    ));
    let restored = work
        .path()
        .join(format!("restored-{}", expected.keys().next().unwrap()))
        .join("site");
    let options = BackupOptions::builder([restored]).build().unwrap();
    let (_, snapshot) = backup_core::backup(host.clone(), options, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(snapshot.summary.bytes > 1_350_000);
    // New: the trees (one per directory and the root: their ctimes and inodes differ), and
    // nothing of the 1.35 MB of file data.
    let summary = &snapshot.summary;
    assert!(summary.chunks_new <= summary.dirs + 1, "{summary:?}");
    assert!(summary.bytes_new < 10_000, "{summary:?}");
}
