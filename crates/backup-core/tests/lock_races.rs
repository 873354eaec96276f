//! Races on a real S3 server (moto on loopback, which enforces `If-None-Match` conditional
//! puts): contenders for the exclusive lock (exactly one wins each round), two backups side by
//! side (both succeed and both restore), and a prune beside a running backup (refused while
//! it runs, and never deleting its data).

use std::sync::Arc;
use std::time::Duration;

use backup_core::check::{CheckOptions, DataSubset};
use backup_core::conformance::small_options;
use backup_core::lock::{LockKind, LockOptions};
use backup_core::prune::{MaxUnused, PruneOptions};
use object_store::ObjectStoreExt as _;

use backup_core::{
    BackupOptions, Error, KeySource, NoProgress, Repository, RestoreOptions, StoreOptions,
};

fn key() -> KeySource {
    KeySource::passphrase("lock races")
}

/// A fresh bucket on the loopback S3 server that scripts/test.sh starts, or `None` (skipped,
/// a failure under CI) when there is none.
fn s3_location(name: &str) -> Option<(String, String)> {
    let endpoint = test_support::require_env("HOSTGUARD_S3_ENDPOINT", "an S3 server on loopback")?;
    let bucket = format!("locks-{name}-{}", std::process::id());
    // moto creates a bucket on a plain PUT of the bucket URL.
    let status = std::process::Command::new("curl")
        .args(["-sf", "-X", "PUT", &format!("{endpoint}/{bucket}")])
        .status()
        .expect("curl runs");
    assert!(status.success(), "creating bucket {bucket} at {endpoint}");
    Some((format!("s3://{bucket}/repo"), endpoint))
}

/// A new handle (its own HTTP client) on the repository at `location`.
async fn handle(location: &str, endpoint: &str) -> Arc<Repository> {
    let store = StoreOptions::new(location)
        .with_endpoint(endpoint)
        .build()
        .unwrap();
    Arc::new(Repository::open(store, location, &key()).await.unwrap())
}

async fn init(location: &str, endpoint: &str) {
    let store = StoreOptions::new(location)
        .with_endpoint(endpoint)
        .build()
        .unwrap();
    Repository::init(store, location, &key(), small_options())
        .await
        .unwrap();
}

fn write_tree(dir: &std::path::Path, seed: u8, files: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..files {
        let mut x = u64::from(seed) << 32 | i as u64 | 1;
        let bytes: Vec<u8> = (0..40_000 + 3_000 * i)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(dir.join(format!("file{i}")), bytes).unwrap();
    }
}

async fn assert_restores(repo: Arc<Repository>, id: &str, source: &std::path::Path) {
    let target = tempfile::tempdir().unwrap();
    let options = RestoreOptions::builder(target.path()).build().unwrap();
    backup_core::restore(repo, id, options, Arc::new(NoProgress))
        .await
        .unwrap();
    let name = source.file_name().unwrap();
    let differences = backup_core::compare_trees(source, &target.path().join(name)).unwrap();
    assert!(differences.is_empty(), "{differences:?}");
}

async fn assert_sound(repo: Arc<Repository>) {
    let options = CheckOptions::builder()
        .with_read_data(DataSubset::All)
        .build()
        .unwrap();
    let report = backup_core::check::check(repo, &options).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_contender_wins_the_exclusive_lock() {
    let Some((location, endpoint)) = s3_location("one") else {
        return;
    };
    init(&location, &endpoint).await;
    let mut contenders = Vec::new();
    for _ in 0..6 {
        contenders.push(handle(&location, &endpoint).await);
    }
    let options = LockOptions::builder(LockKind::Exclusive, "prune")
        .build()
        .unwrap();
    for round in 0..5 {
        let attempts = contenders.iter().map(|repo| {
            let (repo, options) = (repo.clone(), options.clone());
            tokio::spawn(async move { repo.lock(&options).await })
        });
        let results = futures::future::join_all(attempts).await;
        let mut winners = Vec::new();
        for result in results {
            match result.unwrap() {
                Ok(lock) => winners.push(lock),
                Err(Error::Locked { holder, .. }) => {
                    assert!(holder.contains("prune"), "round {round}: {holder}")
                }
                Err(e) => panic!("round {round}: {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        winners.pop().unwrap().release().await.unwrap();
    }
    // Shared against exclusive, at once: never both.
    for round in 0..5 {
        let shared = LockOptions::builder(LockKind::Shared, "backup")
            .build()
            .unwrap();
        let (a, b) = (contenders[0].clone(), contenders[1].clone());
        let (exclusive_opts, shared_opts) = (options.clone(), shared.clone());
        let (x, s) = tokio::join!(
            tokio::spawn(async move { a.lock(&exclusive_opts).await }),
            tokio::spawn(async move { b.lock(&shared_opts).await }),
        );
        let (x, s) = (x.unwrap(), s.unwrap());
        assert!(!(x.is_ok() && s.is_ok()), "round {round}: both hold a lock");
        for lock in [x, s].into_iter().flatten() {
            lock.release().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_backups_side_by_side_both_succeed_and_restore() {
    let Some((location, endpoint)) = s3_location("two") else {
        return;
    };
    init(&location, &endpoint).await;
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    write_tree(&a, 1, 30);
    write_tree(&b, 2, 30);
    // Shared content too, deduplicated by both at once.
    std::fs::copy(a.join("file7"), b.join("same-as-a7")).unwrap();
    let (ra, rb) = (
        handle(&location, &endpoint).await,
        handle(&location, &endpoint).await,
    );
    let run = |repo: Arc<Repository>, dir: std::path::PathBuf| {
        tokio::spawn(async move {
            let options = BackupOptions::builder([dir]).build().unwrap();
            backup_core::backup(repo, options, Arc::new(NoProgress)).await
        })
    };
    let (x, y) = tokio::join!(run(ra, a.clone()), run(rb, b.clone()));
    let (ida, _) = x.unwrap().unwrap();
    let (idb, _) = y.unwrap().unwrap();
    let repo = handle(&location, &endpoint).await;
    assert_eq!(repo.snapshots().await.unwrap().len(), 2);
    assert_restores(repo.clone(), &ida, &a).await;
    assert_restores(repo.clone(), &idb, &b).await;
    assert_sound(repo.clone()).await;
    assert!(repo.list_locks().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prune_beside_a_running_backup_deletes_none_of_its_data() {
    let Some((location, endpoint)) = s3_location("beside") else {
        return;
    };
    init(&location, &endpoint).await;
    let work = tempfile::tempdir().unwrap();
    let (old, new) = (work.path().join("old"), work.path().join("new"));
    write_tree(&old, 3, 20);
    write_tree(&new, 4, 120);
    // An old snapshot, forgotten: its data is what a prune would delete.
    let repo = handle(&location, &endpoint).await;
    let options = BackupOptions::builder([&old]).build().unwrap();
    let (forgotten, _) = backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
        .await
        .unwrap();
    repo.store()
        .delete(&object_store::path::Path::from(format!(
            "snapshots/{forgotten}"
        )))
        .await
        .unwrap();
    let pruner = handle(&location, &endpoint).await;
    let backup = {
        let repo = handle(&location, &endpoint).await;
        let new = new.clone();
        tokio::spawn(async move {
            let options = BackupOptions::builder([new])
                .with_threads(1)
                .build()
                .unwrap();
            backup_core::backup(repo, options, Arc::new(NoProgress)).await
        })
    };
    // Wait until the backup holds its lock, then prune beside it, again and again.
    let prune_options = PruneOptions::builder()
        .with_max_unused(MaxUnused::Percent(0.0))
        .build()
        .unwrap();
    let mut refused = 0;
    let mut pruned_during = 0;
    while !backup.is_finished() {
        if pruner.list_locks().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        match backup_core::prune::prune(pruner.clone(), &prune_options).await {
            Err(Error::Locked { holder, .. }) => {
                assert!(holder.contains("backup"), "{holder}");
                refused += 1;
            }
            // The backup had not taken its lock yet, or had released it.
            Ok(_) => pruned_during += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    let (id, _) = backup.await.unwrap().unwrap();
    assert!(refused > 0, "no prune ran while the backup held its lock");
    eprintln!("{refused} prunes refused, {pruned_during} ran before or after the backup's lock");
    // After the backup, a prune runs and removes the forgotten snapshot's data only.
    let report = backup_core::prune::prune(pruner.clone(), &prune_options)
        .await
        .unwrap();
    eprintln!("{report:?}");
    let repo = handle(&location, &endpoint).await;
    assert_sound(repo.clone()).await;
    assert_restores(repo, &id, &new).await;
}
