//! `repair index` and `repair snapshots` on a real local repository: a lost or damaged index
//! is rebuilt from the pack headers, and a snapshot that lost data is rewritten to keep the rest.

mod common;

use backup_core::check::{CheckOptions, check};
use backup_core::repair::{REPAIRED_TAG, RepairOptions, repair_index, repair_snapshots};
use common::*;

fn options(dry_run: bool) -> RepairOptions {
    RepairOptions::builder()
        .with_dry_run(dry_run)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_and_a_damaged_index_are_rebuilt_from_the_pack_headers() {
    let work = tempfile::tempdir().unwrap();
    let (_, ids, copies) = two_snapshots(work.path()).await;
    let repo_dir = work.path().join("repo");
    let index_dir = repo_dir.join("index");
    let old = names(&index_dir);
    assert!(old.len() >= 2, "one index object per backup: {old:?}");
    // One index object damaged, the others lost.
    flip(&index_dir.join(&old[0]), 40);
    for name in &old[1..] {
        std::fs::remove_file(index_dir.join(name)).unwrap();
    }
    let repo = open(&repo_dir).await;
    assert!(
        restore_into(&repo, &ids[1], work.path(), "src")
            .await
            .is_err(),
        "the data is unreachable before the repair"
    );

    let dry = repair_index(repo.clone(), &options(true)).await.unwrap();
    assert!(dry.dry_run && dry.written.is_empty());
    assert_eq!(dry.removed, [format!("index/{}", old[0])]);
    assert_eq!(names(&index_dir), old[..1], "a dry run writes nothing");

    let report = repair_index(repo.clone(), &options(false)).await.unwrap();
    let on_disk = packs(&repo_dir);
    assert_eq!(report.packs, on_disk.len());
    assert_eq!(report.packs_indexed, on_disk.len());
    assert_eq!(report.packs_recovered.len(), on_disk.len());
    assert_eq!(report.damaged.len(), 1, "{:?}", report.damaged);
    assert_eq!(report.damaged[0].object, format!("index/{}", old[0]));
    let now = names(&index_dir);
    assert_eq!(
        now.iter().map(|n| format!("index/{n}")).collect::<Vec<_>>(),
        report.written
    );
    assert!(!now.contains(&old[0]), "the damaged object is gone");

    // The repository is whole again, in this handle and in a fresh one.
    for repo in [repo, open(&repo_dir).await] {
        let checked = check_all(repo.clone()).await;
        assert!(checked.is_ok(), "{:?}", checked.problems);
        assert!(checked.unindexed_packs.is_empty());
        for (id, expected) in ids.iter().zip(&copies) {
            let restored = restore_into(&repo, id, work.path(), "src").await.unwrap();
            assert_same(expected, &restored);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_with_a_damaged_header_keeps_the_entries_of_the_old_index() {
    let work = tempfile::tempdir().unwrap();
    let (_, ids, copies) = two_snapshots(work.path()).await;
    let repo_dir = work.path().join("repo");
    let (pack, size) = packs(&repo_dir).into_iter().max_by_key(|p| p.1).unwrap();
    // Inside the sealed header, just before the length field.
    flip(&pack, size as usize - 10);
    let pack_name = pack
        .strip_prefix(&repo_dir)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let repo = open(&repo_dir).await;
    let report = repair_index(repo.clone(), &options(false)).await.unwrap();
    assert_eq!(report.kept_from_old_index, [pack_name.as_str()]);
    assert!(
        report
            .damaged
            .iter()
            .any(|d| d.object == format!("{pack_name} (header)")),
        "{:?}",
        report.damaged
    );
    // Its blobs are intact and still found: every snapshot restores.
    for (id, expected) in ids.iter().zip(&copies) {
        let restored = restore_into(&repo, id, work.path(), "src").await.unwrap();
        assert_same(expected, &restored);
    }
    // check still names the damaged header.
    let checked = check_all(open(&repo_dir).await).await;
    assert!(
        checked
            .problems
            .iter()
            .any(|p| p.object.starts_with(&pack_name)),
        "{:?}",
        checked.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_lost_a_file_keeps_the_rest() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let repo_dir = work.path().join("repo");
    let repo = init(&repo_dir).await;
    write_tree(&src, 0);
    let id = backup(&repo, &src).await.unwrap();
    // Lose a pack that only big.bin needs.
    let aside = work.path().join("aside");
    let mut lost = None;
    for (pack, _) in {
        let mut by_size = packs(&repo_dir);
        by_size.sort_by_key(|p| std::cmp::Reverse(p.1));
        by_size
    } {
        std::fs::rename(&pack, &aside).unwrap();
        let report = check(
            open(&repo_dir).await,
            &CheckOptions::builder().build().unwrap(),
        )
        .await
        .unwrap();
        let paths: Vec<_> = report
            .problems
            .iter()
            .filter_map(|p| p.path.clone())
            .collect();
        if !paths.is_empty() && paths.iter().all(|p| p.ends_with("/src/a/big.bin")) {
            lost = Some(pack);
            break;
        }
        std::fs::rename(&aside, &pack).unwrap();
    }
    assert!(lost.is_some(), "no pack holds only chunks of big.bin");
    let repo = open(&repo_dir).await;

    let dry = repair_snapshots(repo.clone(), &options(true))
        .await
        .unwrap();
    assert_eq!(dry.snapshots, 1);
    assert_eq!(dry.repaired.len(), 1);
    let repaired = &dry.repaired[0];
    assert_eq!(repaired.snapshot, id);
    assert!(repaired.new_snapshot.is_none() && !repaired.removed);
    let dropped: Vec<_> = repaired.dropped.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(dropped, ["/src/a/big.bin"]);
    assert!(repaired.dropped[0].object.contains("blob"));
    assert_eq!(names(&repo_dir.join("snapshots")), [id.as_str()], "dry run");

    let report = repair_snapshots(repo.clone(), &options(false))
        .await
        .unwrap();
    let new_id = report.repaired[0].new_snapshot.clone().unwrap();
    assert_eq!(names(&repo_dir.join("snapshots")), [new_id.as_str()]);
    // The lost pack is still in the index until `repair index` drops it.
    let repo = open(&repo_dir).await;
    let reindexed = repair_index(repo.clone(), &options(false)).await.unwrap();
    assert_eq!(reindexed.missing_packs.len(), 1);
    let (_, snapshot) = repo.find_snapshot(&new_id).await.unwrap();
    assert!(snapshot.tags.iter().any(|t| t == REPAIRED_TAG));
    let checked = check(repo.clone(), &CheckOptions::builder().build().unwrap())
        .await
        .unwrap();
    assert!(checked.is_ok(), "{:?}", checked.problems);
    let restored = restore_into(&repo, &new_id, work.path(), "src")
        .await
        .unwrap();
    let diffs =
        backup_core::compare_trees_ignoring(&src, &restored, |p| p.ends_with("a/big.bin")).unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
    assert!(restored.join("c/d.txt").exists() && !restored.join("a/big.bin").exists());
    // Nothing left to repair.
    let again = repair_snapshots(repo, &options(false)).await.unwrap();
    assert!(again.repaired.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_whose_root_tree_is_lost_is_removed_and_the_others_stay() {
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    let repo = init(&repo_dir).await;
    let (one, two) = (work.path().join("one"), work.path().join("two"));
    write_tree(&one, 1);
    std::fs::create_dir(&two).unwrap();
    std::fs::write(two.join("only"), b"second snapshot").unwrap();
    let first = backup(&repo, &one).await.unwrap();
    let packs_before = packs(&repo_dir);
    let second = backup(&repo, &two).await.unwrap();
    // The second backup's packs hold its root tree (and its one file).
    for (pack, _) in packs(&repo_dir) {
        if !packs_before.iter().any(|(p, _)| *p == pack) {
            std::fs::remove_file(pack).unwrap();
        }
    }
    let repo = open(&repo_dir).await;
    let report = repair_snapshots(repo.clone(), &options(false))
        .await
        .unwrap();
    assert_eq!(report.repaired.len(), 1, "{:?}", report.repaired);
    assert_eq!(report.repaired[0].snapshot, second);
    assert!(report.repaired[0].removed);
    assert_eq!(report.repaired[0].dropped[0].path, "/");
    assert_eq!(names(&repo_dir.join("snapshots")), [first.as_str()]);
    let restored = restore_into(&repo, &first, work.path(), "one")
        .await
        .unwrap();
    assert_same(&one, &restored);
}
