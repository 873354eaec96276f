//! Helpers shared by the repair, fault and campaign tests: a local repository with a few
//! snapshots of a small tree, and the checks every campaign makes after damage or a crash.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::check::{CheckOptions, CheckReport, DataSubset, check};
use backup_core::conformance::small_options;
use backup_core::{
    BackupOptions, KeySource, NoProgress, Repository, RestoreOptions, StoreOptions, restore,
};

pub fn key() -> KeySource {
    KeySource::passphrase("repair and fault tests")
}

/// `len` bytes of a xorshift stream from `seed` (does not compress, so its chunks fill packs).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Writes the test tree under `src`: `a/big.bin` (several chunks), `b.txt`, `c/d.txt`,
/// varied by `round`.
pub fn write_tree(src: &Path, round: u64) {
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::create_dir_all(src.join("c")).unwrap();
    std::fs::write(src.join("a/big.bin"), noise(round + 1, 3 << 18)).unwrap();
    std::fs::write(src.join("b.txt"), format!("small file, round {round}")).unwrap();
    std::fs::write(src.join("c/d.txt"), b"text ".repeat(1000 + round as usize)).unwrap();
}

/// A local store at `dir` (created if missing).
pub fn local(dir: &Path) -> Arc<dyn object_store::ObjectStore> {
    StoreOptions::new(dir.to_string_lossy())
        .with_create(true)
        .build()
        .unwrap()
}

pub async fn init(dir: &Path) -> Arc<Repository> {
    Arc::new(
        Repository::init(local(dir), "repo", &key(), small_options())
            .await
            .unwrap(),
    )
}

pub async fn open(dir: &Path) -> Arc<Repository> {
    Arc::new(Repository::open(local(dir), "repo", &key()).await.unwrap())
}

pub async fn backup(repo: &Arc<Repository>, src: &Path) -> backup_core::Result<String> {
    let options = BackupOptions::builder([src]).build().unwrap();
    backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
        .await
        .map(|(id, _)| id)
}

/// Copies `src` to `to` with `cp -a` (mtimes kept), as the expected state of a snapshot.
pub fn keep_copy(src: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

pub async fn check_all(repo: Arc<Repository>) -> CheckReport {
    let options = CheckOptions::builder()
        .with_read_data(DataSubset::All)
        .build()
        .unwrap();
    check(repo, &options).await.unwrap()
}

/// Restores snapshot `id` into a fresh directory under `work` and returns the restored copy
/// of the backed-up directory (named like `src`).
pub async fn restore_into(
    repo: &Arc<Repository>,
    id: &str,
    work: &Path,
    name: &str,
) -> backup_core::Result<PathBuf> {
    let target = work.join(format!("restored-{id}-{}", next()));
    let options = RestoreOptions::builder(&target).build().unwrap();
    restore(repo.clone(), id, options, Arc::new(NoProgress)).await?;
    Ok(target.join(name))
}

fn next() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Asserts the two trees are identical (content and metadata).
pub fn assert_same(expected: &Path, restored: &Path) {
    let diffs = backup_core::compare_trees(expected, restored).unwrap();
    assert!(diffs.is_empty(), "{}: {diffs:?}", restored.display());
}

/// Every pack file of a local repository, with its size.
pub fn packs(repo_dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(repo_dir.join("data")).unwrap() {
        for pack in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let pack = pack.unwrap();
            out.push((pack.path(), pack.metadata().unwrap().len()));
        }
    }
    out.sort();
    out
}

/// The entries of a repository directory (`index`, `snapshots`, ...), sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = listing
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

pub fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

/// Two snapshots of `work/src` in `work/repo` (the tree changed between them), with a kept copy
/// of each state (`work/state0/src`, `work/state1/src`).
pub async fn two_snapshots(work: &Path) -> (Arc<Repository>, Vec<String>, Vec<PathBuf>) {
    let src = work.join("src");
    let repo = init(&work.join("repo")).await;
    let mut ids = Vec::new();
    let mut copies = Vec::new();
    for round in 0..2 {
        write_tree(&src, round);
        ids.push(backup(&repo, &src).await.unwrap());
        let copy = work.join(format!("state{round}"));
        std::fs::create_dir(&copy).unwrap();
        keep_copy(&src, &copy);
        copies.push(copy.join("src"));
    }
    (repo, ids, copies)
}
