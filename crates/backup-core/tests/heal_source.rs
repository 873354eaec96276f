//! `heal_from_source`: the chunks of damaged packs are rebuilt from the files they were read
//! from. With the source unchanged, `check --read-data` passes afterwards and the snapshot
//! restores byte-identical; a source file changed or deleted since is named by snapshot and
//! path, everything else is healed, and `check` names exactly what is still lost. With a
//! mirror, what the mirror lacks comes from the source.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::copy::{CopyOptions, copy};
use backup_core::format::BlobKind;
use backup_core::heal::{HealOptions, HealReport, SourceFiles, heal, heal_from_source};
use backup_core::ops::list_blobs;
use backup_core::{Repository, conformance::small_options};
use common::*;

/// One snapshot of `work/src` in `work/repo`; returns its id and a kept copy of the source.
async fn one_snapshot(work: &Path) -> (String, PathBuf) {
    let src = work.join("src");
    write_tree(&src, 7);
    let repo = init(&work.join("repo")).await;
    let id = backup(&repo, &src).await.unwrap();
    let kept = work.join("kept");
    std::fs::create_dir(&kept).unwrap();
    keep_copy(&src, &kept);
    (id, kept.join("src"))
}

/// A copy of the kept source under `work/elsewhere` (to change without touching `kept`);
/// returns its `src`.
fn copy_elsewhere(work: &Path, kept: &Path) -> PathBuf {
    let elsewhere = work.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    keep_copy(kept, &elsewhere);
    elsewhere.join("src")
}

/// Flips a byte in the middle of every frame that holds only file data (trees stay sound);
/// returns the number of frames damaged.
async fn damage_every_data_frame(repo_dir: &Path) -> usize {
    let blobs = list_blobs(&*open(repo_dir).await).await.unwrap();
    let mut frames: Vec<(String, u32, u32)> = Vec::new();
    for b in &blobs {
        let frame = (b.pack.clone(), b.offset, b.length);
        let holds_tree = blobs
            .iter()
            .any(|o| o.pack == b.pack && o.offset == b.offset && o.kind == BlobKind::Tree);
        if !holds_tree && !frames.contains(&frame) {
            frames.push(frame);
        }
    }
    for (pack, offset, length) in &frames {
        flip(&repo_dir.join(pack), (offset + length / 2) as usize);
    }
    frames.len()
}

async fn from_source(work: &Path, sources: Vec<PathBuf>, dry_run: bool) -> HealReport {
    let options = HealOptions::builder()
        .with_source_files(SourceFiles::Paths(sources))
        .with_dry_run(dry_run)
        .build()
        .unwrap();
    heal_from_source(open(&work.join("repo")).await, &options)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_data_is_rebuilt_from_the_unchanged_source() {
    let work = tempfile::tempdir().unwrap();
    let (id, kept) = one_snapshot(work.path()).await;
    let repo_dir = work.path().join("repo");
    let damaged = damage_every_data_frame(&repo_dir).await;
    assert!(damaged >= 3, "big.bin has several chunks: {damaged} frames");
    assert!(!check_all(open(&repo_dir).await).await.is_ok());
    let src = work.path().join("src");

    let packs_before = packs(&repo_dir);
    let dry = from_source(work.path(), vec![src.clone()], true).await;
    assert!(dry.dry_run && dry.is_healed(), "{dry:?}");
    assert!(dry.blobs_from_source > 0 && dry.packs_written == 0);
    assert_eq!(packs(&repo_dir), packs_before, "a dry run writes nothing");

    let report = from_source(work.path(), vec![src.clone()], false).await;
    assert!(report.is_healed(), "{report:?}");
    assert_eq!(report.blobs_from_source, dry.blobs_from_source);
    assert_eq!(report.blobs_from_mirror, 0);
    assert!(report.packs_written > 0 && !report.damaged_packs.is_empty());
    for pack in &report.damaged_packs {
        assert!(!repo_dir.join(pack).exists(), "{pack} is deleted");
    }
    let repo = open(&repo_dir).await;
    let checked = check_all(repo.clone()).await;
    assert!(checked.is_ok(), "{:?}", checked.problems);
    assert!(checked.unindexed_packs.is_empty());
    let restored = restore_into(&repo, &id, work.path(), "src").await.unwrap();
    assert_same(&kept, &restored);
    assert!(
        names(&repo_dir.join("locks")).is_empty(),
        "the lock is released"
    );
    // Nothing left to do.
    let again = from_source(work.path(), vec![src], false).await;
    assert!(again.is_healed() && again.damaged_packs.is_empty());
    assert_eq!(again.blobs_from_source + again.source_files_read, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_source_paths_are_the_default() {
    let work = tempfile::tempdir().unwrap();
    let (id, kept) = one_snapshot(work.path()).await;
    let repo_dir = work.path().join("repo");
    // Every pack that holds no tree is lost.
    let blobs = list_blobs(&*open(&repo_dir).await).await.unwrap();
    let mut deleted = 0;
    for (pack, _) in packs(&repo_dir) {
        let name = pack
            .strip_prefix(&repo_dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if !blobs
            .iter()
            .any(|b| b.pack == name && b.kind == BlobKind::Tree)
        {
            std::fs::remove_file(&pack).unwrap();
            deleted += 1;
        }
    }
    assert!(deleted > 0);
    let options = HealOptions::builder().build().unwrap();
    let report = heal_from_source(open(&repo_dir).await, &options)
        .await
        .unwrap();
    assert!(report.is_healed(), "{report:?}");
    assert_eq!(report.damaged_packs.len(), deleted);
    let repo = open(&repo_dir).await;
    assert!(check_all(repo.clone()).await.is_ok());
    let restored = restore_into(&repo, &id, work.path(), "src").await.unwrap();
    assert_same(&kept, &restored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_and_deleted_source_files_are_named_and_the_rest_is_healed() {
    let work = tempfile::tempdir().unwrap();
    let (id, kept) = one_snapshot(work.path()).await;
    let repo_dir = work.path().join("repo");
    damage_every_data_frame(&repo_dir).await;
    // Another source tree: big.bin edited in its middle (its first and last chunks are still
    // the same), c/d.txt gone, b.txt unchanged.
    let src = copy_elsewhere(work.path(), &kept);
    let big = src.join("a/big.bin");
    let original = std::fs::read(&big).unwrap();
    let mut edited = original.clone();
    let middle = edited.len() / 2;
    edited[middle..middle + 64].fill(0);
    std::fs::write(&big, &edited).unwrap();
    std::fs::remove_file(src.join("c/d.txt")).unwrap();

    let report = from_source(work.path(), vec![src.clone()], false).await;
    assert!(!report.is_healed());
    assert!(report.blobs_from_source > 0, "{report:?}");
    let lost_paths: std::collections::BTreeSet<&str> =
        report.lost.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(
        lost_paths,
        ["/src/a/big.bin", "/src/c/d.txt"].into(),
        "{:?}",
        report.lost
    );
    for lost in &report.lost {
        assert_eq!(lost.snapshot, id);
        let reason = match lost.path.as_str() {
            "/src/a/big.bin" => "changed since the backup",
            _ => "No such file",
        };
        assert!(lost.problem.contains(reason), "{lost:?}");
    }
    // The repository is consistent: check names exactly the chunks reported lost.
    let repo = open(&repo_dir).await;
    let checked = check_all(repo.clone()).await;
    assert!(!checked.is_ok());
    let mut named: Vec<(String, String)> = checked
        .problems
        .iter()
        .map(|p| (p.path.clone().unwrap_or_default(), p.object.clone()))
        .collect();
    named.sort();
    named.dedup();
    let mut expected: Vec<(String, String)> = report
        .lost
        .iter()
        .map(|l| (l.path.clone(), l.object.clone()))
        .collect();
    expected.sort();
    assert_eq!(named, expected, "{:?}", checked.problems);
    assert!(
        !report.lost.iter().any(|l| l.path == "/src/b.txt"),
        "b.txt is healed"
    );
    // With the original files back, a rerun heals the rest.
    std::fs::write(&big, &original).unwrap();
    keep_copy(&kept.join("c/d.txt"), &src.join("c"));
    let report = from_source(work.path(), vec![src], false).await;
    assert!(report.is_healed(), "{report:?}");
    let repo = open(&repo_dir).await;
    assert!(check_all(repo.clone()).await.is_ok());
    let restored = restore_into(&repo, &id, work.path(), "src").await.unwrap();
    assert_same(&kept, &restored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_mirror_lacks_comes_from_the_source() {
    let work = tempfile::tempdir().unwrap();
    let (id, kept) = one_snapshot(work.path()).await;
    let repo_dir = work.path().join("repo");
    let mirror_dir = work.path().join("mirror");
    let repo = open(&repo_dir).await;
    let options = small_options().with_params_from(&repo);
    let mirror = Repository::init(local(&mirror_dir), "mirror", &key(), options)
        .await
        .unwrap();
    let mirror = Arc::new(mirror);
    copy(
        repo,
        mirror.clone(),
        &CopyOptions::builder().build().unwrap(),
    )
    .await
    .unwrap();
    damage_every_data_frame(&repo_dir).await;
    damage_every_data_frame(&mirror_dir).await;
    let options = HealOptions::builder()
        .with_source_files(SourceFiles::Paths(vec![work.path().join("src")]))
        .build()
        .unwrap();
    let report = heal(open(&repo_dir).await, mirror.clone(), &options)
        .await
        .unwrap();
    assert!(report.is_healed(), "{report:?}");
    assert!(report.blobs_from_source > 0, "{report:?}");
    let repo = open(&repo_dir).await;
    assert!(check_all(repo.clone()).await.is_ok());
    let restored = restore_into(&repo, &id, work.path(), "src").await.unwrap();
    assert_same(&kept, &restored);
}

#[test]
fn source_paths_must_name_distinct_root_entries() {
    let twice = SourceFiles::Paths(vec!["/a/site".into(), "/b/site".into()]);
    let err = HealOptions::builder().with_source_files(twice).build();
    assert!(err.unwrap_err().to_string().contains("site"));
    let parent = SourceFiles::Paths(vec!["/srv/www/..".into()]);
    let err = HealOptions::builder().with_source_files(parent).build();
    assert!(err.unwrap_err().to_string().contains("no last component"));
    let none = SourceFiles::Paths(Vec::new());
    assert!(
        HealOptions::builder()
            .with_source_files(none)
            .build()
            .is_err()
    );
}

/// A source file replaced by a FIFO or a symbolic link is reported, never read through (a FIFO
/// would block the heal forever; a link could point anywhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_or_a_symlink_in_the_source_is_not_read() {
    let work = tempfile::tempdir().unwrap();
    let (_, kept) = one_snapshot(work.path()).await;
    let repo_dir = work.path().join("repo");
    damage_every_data_frame(&repo_dir).await;
    let src = copy_elsewhere(work.path(), &kept);
    std::fs::remove_file(src.join("c/d.txt")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(src.join("c/d.txt"))
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::remove_file(src.join("a/big.bin")).unwrap();
    std::os::unix::fs::symlink(kept.join("a/big.bin"), src.join("a/big.bin")).unwrap();
    let healing = from_source(work.path(), vec![src], false);
    let report = tokio::time::timeout(std::time::Duration::from_secs(60), healing)
        .await
        .expect("the heal does not block on a FIFO");
    let reasons: Vec<(&str, &str)> = report
        .lost
        .iter()
        .map(|l| (l.path.as_str(), l.problem.as_str()))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|(p, why)| *p == "/src/c/d.txt" && why.contains("is no regular file now")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(p, why)| *p == "/src/a/big.bin" && why.contains("is a symbolic link now")),
        "{reasons:?}"
    );
    assert!(!reasons.iter().any(|(p, _)| *p == "/src/b.txt"));
}
