//! `heal` from a mirror: a deleted or damaged pack, index object, tree or snapshot object is
//! rebuilt from the mirror, after which `check --read-data` passes and every snapshot restores
//! byte-identical; a blob the mirror lacks too is named by snapshot and path.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::copy::{CopyOptions, copy};
use backup_core::format::BlobKind;
use backup_core::heal::{HealOptions, HealReport, heal};
use backup_core::ops::list_blobs;
use backup_core::repair::{RepairOptions, repair_snapshots};
use backup_core::{Repository, conformance::small_options};
use common::*;

/// Two snapshots in `work/repo`, copied into the mirror `work/mirror`; the kept states.
async fn with_mirror(work: &Path) -> (Vec<String>, Vec<PathBuf>) {
    let (repo, ids, copies) = two_snapshots(work).await;
    let mirror = Arc::new(
        Repository::init(
            local(&work.join("mirror")),
            "mirror",
            &key(),
            small_options().with_params_from(&repo),
        )
        .await
        .unwrap(),
    );
    let copied = copy(repo, mirror, &CopyOptions::builder().build().unwrap())
        .await
        .unwrap();
    assert_eq!(copied.copied.len(), 2);
    (ids, copies)
}

async fn open_mirror(work: &Path) -> Arc<Repository> {
    Arc::new(
        Repository::open(local(&work.join("mirror")), "mirror", &key())
            .await
            .unwrap(),
    )
}

async fn run_heal(work: &Path, dry_run: bool) -> HealReport {
    let repo = open(&work.join("repo")).await;
    let options = HealOptions::builder()
        .with_dry_run(dry_run)
        .build()
        .unwrap();
    heal(repo, open_mirror(work).await, &options).await.unwrap()
}

/// Heals (after a dry run that changes nothing) and asserts the repository is whole again.
async fn heal_and_verify(work: &Path, ids: &[String], copies: &[PathBuf]) -> HealReport {
    let before = std::fs::read_dir(work.join("repo/index"))
        .map(|d| d.count())
        .ok();
    let dry = run_heal(work, true).await;
    assert!(dry.dry_run);
    let after_dry = std::fs::read_dir(work.join("repo/index"))
        .map(|d| d.count())
        .ok();
    assert_eq!(before, after_dry, "a dry run writes nothing");
    let report = run_heal(work, false).await;
    assert!(report.is_healed(), "{report:?}");
    let repo = open(&work.join("repo")).await;
    let checked = check_all(repo.clone()).await;
    assert!(checked.is_ok(), "{:?}", checked.problems);
    assert!(checked.unindexed_packs.is_empty());
    for (id, expected) in ids.iter().zip(copies) {
        let restored = restore_into(&repo, id, work, "src").await.unwrap();
        assert_same(expected, &restored);
    }
    assert!(
        names(&work.join("repo/locks")).is_empty(),
        "the lock is released"
    );
    // A second heal finds nothing to do.
    let again = run_heal(work, false).await;
    assert!(again.damaged_packs.is_empty() && again.snapshots_restored.is_empty());
    assert_eq!(again.blobs_from_mirror + again.blobs_salvaged, 0);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pack_is_rebuilt_from_the_mirror() {
    let work = tempfile::tempdir().unwrap();
    let (ids, copies) = with_mirror(work.path()).await;
    let (largest, _) = packs(&work.path().join("repo"))
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .unwrap();
    std::fs::remove_file(&largest).unwrap();
    let report = heal_and_verify(work.path(), &ids, &copies).await;
    assert_eq!(report.damaged_packs.len(), 1, "{report:?}");
    assert!(largest.ends_with(&report.damaged_packs[0]));
    assert!(report.blobs_from_mirror > 0 && report.packs_written > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_pack_is_healed_and_the_pack_deleted() {
    let work = tempfile::tempdir().unwrap();
    let (ids, copies) = with_mirror(work.path()).await;
    // A byte in the first frame of a pack holding several.
    let repo_dir = work.path().join("repo");
    let blobs = list_blobs(&*open(&repo_dir).await).await.unwrap();
    let victim = blobs
        .iter()
        .find(|b| {
            blobs
                .iter()
                .filter(|o| o.pack == b.pack && o.offset != b.offset)
                .count()
                > 0
        })
        .expect("a pack holds several frames");
    let largest = repo_dir.join(&victim.pack);
    flip(&largest, (victim.offset + victim.length / 2) as usize);
    let report = heal_and_verify(work.path(), &ids, &copies).await;
    assert_eq!(report.damaged_packs.len(), 1, "{report:?}");
    assert!(report.blobs_from_mirror > 0, "{report:?}");
    assert!(
        report.blobs_salvaged > 0,
        "the pack's sound frames are kept: {report:?}"
    );
    assert!(!largest.exists(), "the damaged pack is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_and_a_damaged_index_object_are_rebuilt() {
    let work = tempfile::tempdir().unwrap();
    let (ids, copies) = with_mirror(work.path()).await;
    let index_dir = work.path().join("repo/index");
    let old = names(&index_dir);
    assert!(old.len() >= 2);
    flip(&index_dir.join(&old[0]), 40);
    std::fs::remove_file(index_dir.join(&old[1])).unwrap();
    let report = heal_and_verify(work.path(), &ids, &copies).await;
    assert!(report.index_rebuilt);
    assert!(report.damaged_packs.is_empty(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_tree_is_read_back_from_the_mirror() {
    let work = tempfile::tempdir().unwrap();
    let (ids, copies) = with_mirror(work.path()).await;
    let repo_dir = work.path().join("repo");
    // A byte in the middle of a tree's frame.
    let blobs = list_blobs(&*open(&repo_dir).await).await.unwrap();
    let tree = blobs
        .iter()
        .find(|b| b.kind == BlobKind::Tree)
        .expect("the index lists trees");
    flip(
        &repo_dir.join(&tree.pack),
        (tree.offset + tree.length / 2) as usize,
    );
    let damaged = check_all(open(&repo_dir).await).await;
    assert!(!damaged.is_ok());
    let report = heal_and_verify(work.path(), &ids, &copies).await;
    assert_eq!(report.damaged_packs.len(), 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_and_a_damaged_snapshot_object_come_back_from_the_mirror() {
    let work = tempfile::tempdir().unwrap();
    let (ids, copies) = with_mirror(work.path()).await;
    let dir = work.path().join("repo/snapshots");
    std::fs::remove_file(dir.join(&ids[0])).unwrap();
    flip(&dir.join(&ids[1]), 30);
    let report = heal_and_verify(work.path(), &ids, &copies).await;
    let mut restored = report.snapshots_restored.clone();
    restored.sort();
    let mut expected: Vec<String> = ids.iter().map(|id| format!("snapshots/{id}")).collect();
    expected.sort();
    assert_eq!(restored, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_missing_in_both_is_named_by_path_and_the_repository_stays_consistent() {
    let work = tempfile::tempdir().unwrap();
    let (ids, _copies) = with_mirror(work.path()).await;
    // A chunk of `a/big.bin`, deleted with its pack here and in the mirror.
    let repo_dir = work.path().join("repo");
    let mirror_dir = work.path().join("mirror");
    let here = list_blobs(&*open(&repo_dir).await).await.unwrap();
    let there = list_blobs(&*open_mirror(work.path()).await).await.unwrap();
    let holds_trees = |blobs: &[backup_core::ops::IndexedBlob], pack: &str| {
        blobs
            .iter()
            .any(|b| b.pack == pack && b.kind == BlobKind::Tree)
    };
    // One whose packs hold no trees, so that the snapshots stay readable around it.
    let chunk = here
        .iter()
        .find(|b| {
            b.kind == BlobKind::Data
                && !b.grouped
                && !holds_trees(&here, &b.pack)
                && there
                    .iter()
                    .any(|t| t.id == b.id && !holds_trees(&there, &t.pack))
        })
        .expect("big.bin has chunks in packs without trees")
        .clone();
    let mirrored = there.iter().find(|b| b.id == chunk.id).unwrap();
    let largest = repo_dir.join(&chunk.pack);
    std::fs::remove_file(&largest).unwrap();
    std::fs::remove_file(mirror_dir.join(&mirrored.pack)).unwrap();
    let report = run_heal(work.path(), false).await;
    assert!(!report.is_healed());
    assert!(!report.lost.is_empty());
    for lost in &report.lost {
        assert!(ids.contains(&lost.snapshot), "{lost:?}");
        assert!(lost.path.starts_with('/'), "{lost:?}");
    }
    assert!(
        report
            .lost
            .iter()
            .any(|l| l.path == "/src/a/big.bin" && l.object == format!("blob {}", chunk.id)),
        "{:?}",
        report.lost
    );
    assert!(!largest.exists());
    // Consistent: only missing blobs are left, which `repair snapshots` drops.
    let repo = open(&work.path().join("repo")).await;
    let checked = check_all(repo.clone()).await;
    assert!(!checked.is_ok());
    // Every problem left is a blob the heal named as lost, at a path it named.
    for problem in &checked.problems {
        assert!(
            report
                .lost
                .iter()
                .any(|l| Some(&l.path) == problem.path.as_ref() && l.object == problem.object),
            "{problem:?} not in {:?}",
            report.lost
        );
    }
    let options = RepairOptions::builder().build().unwrap();
    let repaired = repair_snapshots(repo, &options).await.unwrap();
    let checked = check_all(open(&work.path().join("repo")).await).await;
    assert!(
        checked.is_ok(),
        "{:?}\n{repaired:?}\n{report:?}",
        checked.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_with_other_keys_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let _ = with_mirror(work.path()).await;
    let other = init(&work.path().join("other")).await;
    let repo = open(&work.path().join("repo")).await;
    let options = HealOptions::builder().build().unwrap();
    let err = heal(repo, other, &options).await.unwrap_err();
    assert!(
        matches!(err, backup_core::Error::KeysDiffer { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_pack_is_rebuilt_from_the_mirror() {
    let work = tempfile::tempdir().unwrap();
    let (ids, copies) = with_mirror(work.path()).await;
    let (largest, size) = packs(&work.path().join("repo"))
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&largest)
        .unwrap();
    file.set_len(size / 2).unwrap();
    let report = heal_and_verify(work.path(), &ids, &copies).await;
    assert_eq!(report.damaged_packs.len(), 1, "{report:?}");
    assert!(!largest.exists());
}

/// A heal that fails part-way (writes cut, half-written or unanswered, at a different point
/// for each seed) leaves a repository that a rerun heals completely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heal_cut_off_by_failing_writes_is_completed_by_a_rerun() {
    use backup_core::faults::{FaultConfig, FaultStore};
    let work = tempfile::tempdir().unwrap();
    let (ids, copies) = with_mirror(work.path()).await;
    let repo_dir = work.path().join("repo");
    let pristine = work.path().join("pristine");
    std::fs::create_dir(&pristine).unwrap();
    keep_copy(&repo_dir, &pristine);
    let mut failed = 0;
    for seed in 1..=12u64 {
        std::fs::remove_dir_all(&repo_dir).unwrap();
        keep_copy(&pristine.join("repo"), work.path());
        // A damaged pack and a lost snapshot object: the heal writes packs, an index, a
        // snapshot, and deletes.
        let (largest, size) = packs(&repo_dir)
            .into_iter()
            .max_by_key(|(_, size)| *size)
            .unwrap();
        flip(&largest, size as usize / 2);
        std::fs::remove_file(repo_dir.join("snapshots").join(&ids[0])).unwrap();
        let faults = FaultConfig::new(seed)
            .with_cut_rate(0.15)
            .with_partial_write_rate(0.15)
            .with_lost_reply_rate(0.15)
            .build()
            .unwrap();
        let store = Arc::new(FaultStore::new(local(&repo_dir), faults));
        store.set_enabled(false);
        let repo = Arc::new(
            Repository::open(store.clone(), "repo", &key())
                .await
                .unwrap(),
        );
        store.set_enabled(true);
        let options = HealOptions::builder().build().unwrap();
        if heal(repo, open_mirror(work.path()).await, &options)
            .await
            .is_err()
        {
            failed += 1;
        }
        // The lock of a failed heal may be left behind: it is ours, and no process holds it.
        open(&repo_dir).await.unlock(true).await.unwrap();
        heal_and_verify(work.path(), &ids, &copies).await;
    }
    assert!(failed >= 4, "the faults cut off only {failed} of 12 heals");
}
