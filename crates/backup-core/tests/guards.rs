//! The guards around destructive operations: an append-only handle is refused by prune,
//! repair and `unlock --force` before anything is read or changed; `copy` takes the shared
//! lock a backup takes on its destination and repair the exclusive one prune takes; and a
//! lock whose own create succeeded but whose answer was lost is taken, not reported as held
//! by someone else.

mod hooked;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::conformance::{small_options, write_sample_tree};
use backup_core::copy::{CopyOptions, copy};
use backup_core::lock::{LockKind, LockOptions};
use backup_core::prune::{PruneOptions, prune};
use backup_core::repair::{RepairOptions, repair_index, repair_snapshots};
use backup_core::retry::{RetryPolicy, RetryingStore};
use backup_core::{BackupOptions, Error, InitOptions, KeySource, NoProgress, Repository};
use futures::TryStreamExt;
use hooked::{Hooked, Hooks};
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    ObjectStore, PutMode, PutOptions, PutPayload, PutResult, Result as StoreResult,
};

fn key() -> KeySource {
    KeySource::passphrase("pw")
}

async fn objects(store: &dyn ObjectStore) -> BTreeMap<String, u64> {
    store
        .list(None)
        .map_ok(|m| (m.location.to_string(), m.size))
        .try_collect()
        .await
        .unwrap()
}

/// A repository with one snapshot, on memory.
async fn repository_with_a_snapshot(store: Arc<dyn ObjectStore>) -> Arc<Repository> {
    let dir = tempfile::tempdir().unwrap();
    write_sample_tree(dir.path());
    let repo = Arc::new(
        Repository::init(store, "memory", &key(), small_options())
            .await
            .unwrap(),
    );
    let options = BackupOptions::builder([dir.path()]).build().unwrap();
    backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
        .await
        .unwrap();
    repo
}

fn refused(result: Result<impl std::fmt::Debug, Error>, operation: &str) {
    match result {
        Err(Error::AppendOnly { operation: op, .. }) => assert_eq!(op, operation),
        other => panic!("{operation}: expected an append-only refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_repair_and_forced_unlock_refuse_an_append_only_handle() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    repository_with_a_snapshot(store.clone()).await;
    // A live shared lock someone else holds, which only a forced unlock would remove.
    let full = Repository::open(store.clone(), "memory", &key())
        .await
        .unwrap();
    let held = full
        .lock(
            &LockOptions::builder(LockKind::Shared, "backup")
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let before = objects(store.as_ref()).await;

    let guarded = Arc::new(
        Repository::open_append_only(store.clone(), "memory", &key())
            .await
            .unwrap(),
    );
    refused(
        prune(guarded.clone(), &PruneOptions::builder().build().unwrap()).await,
        "prune",
    );
    let dry = PruneOptions::builder().with_dry_run(true).build().unwrap();
    refused(prune(guarded.clone(), &dry).await, "prune");
    let repair = RepairOptions::builder().build().unwrap();
    refused(repair_index(guarded.clone(), &repair).await, "repair");
    refused(repair_snapshots(guarded.clone(), &repair).await, "repair");
    refused(guarded.unlock(true).await, "unlock --force");
    // A heal deletes damaged packs: refused before the mirror is even looked at.
    let heal_options = backup_core::heal::HealOptions::builder().build().unwrap();
    refused(
        backup_core::heal::heal(guarded.clone(), guarded.clone(), &heal_options).await,
        "heal",
    );
    // Removing only stale locks stays allowed (a host must clear its own dead backup's lock).
    assert!(guarded.unlock(false).await.unwrap().is_empty());
    assert_eq!(objects(store.as_ref()).await, before, "nothing was changed");

    held.release().await.unwrap();
    // The full-rights handle still can.
    prune(Arc::new(full), &PruneOptions::builder().build().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_takes_a_shared_lock_on_the_destination_and_repair_the_exclusive_one() {
    let source = repository_with_a_snapshot(Arc::new(InMemory::new())).await;
    let mirror_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let options = InitOptions::new().with_params_from(&source);
    let mirror = Arc::new(
        Repository::init(mirror_store.clone(), "mirror", &key(), options)
            .await
            .unwrap(),
    );

    // A prune (exclusive lock) on the mirror keeps copy out, naming the holder.
    let exclusive = LockOptions::builder(LockKind::Exclusive, "prune")
        .build()
        .unwrap();
    let pruning = mirror.lock(&exclusive).await.unwrap();
    match copy(
        source.clone(),
        mirror.clone(),
        &CopyOptions::builder().build().unwrap(),
    )
    .await
    {
        Err(Error::Locked { holder, .. }) => assert!(holder.contains("prune"), "{holder}"),
        other => panic!("copy beside a prune: {other:?}"),
    }
    assert!(
        !objects(mirror_store.as_ref())
            .await
            .keys()
            .any(|k| k.starts_with("snapshots/"))
    );
    pruning.release().await.unwrap();

    // A backup (shared lock) does not keep copy out; copy leaves no lock behind.
    let shared = LockOptions::builder(LockKind::Shared, "backup")
        .build()
        .unwrap();
    let backing_up = mirror.lock(&shared).await.unwrap();
    let report = copy(
        source.clone(),
        mirror.clone(),
        &CopyOptions::builder().build().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(report.copied.len(), 1);
    assert_eq!(
        mirror.list_locks().await.unwrap().len(),
        1,
        "only the backup's lock is left"
    );

    // ... but it keeps repair out, and a repair dry run takes no lock.
    let repair = RepairOptions::builder().build().unwrap();
    for result in [
        repair_index(mirror.clone(), &repair).await.map(drop),
        repair_snapshots(mirror.clone(), &repair).await.map(drop),
    ] {
        match result {
            Err(Error::Locked { holder, .. }) => assert!(holder.contains("backup"), "{holder}"),
            other => panic!("repair beside a backup: {other:?}"),
        }
    }
    let dry = RepairOptions::builder().with_dry_run(true).build().unwrap();
    repair_index(mirror.clone(), &dry).await.unwrap();
    backing_up.release().await.unwrap();
    repair_index(mirror.clone(), &repair).await.unwrap();
    repair_snapshots(mirror.clone(), &repair).await.unwrap();
    assert!(
        mirror.list_locks().await.unwrap().is_empty(),
        "repair released its lock"
    );
}

/// How the store below the lock code loses the answer to the first create-only put of a
/// lock object, after the put itself succeeded.
#[derive(Debug, Clone, Copy)]
enum LostAnswer {
    /// A retry inside the HTTP client met the object: `AlreadyExists` (S3's 412).
    RetriedBelow,
    /// The call timed out: the layer above (a [`RetryingStore`]) retries.
    TimedOut,
}

#[derive(Debug)]
struct LosesAnswer {
    how: LostAnswer,
    done: AtomicBool,
}

#[async_trait]
impl Hooks for LosesAnswer {
    async fn put(
        &self,
        inner: &InMemory,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreResult<PutResult> {
        let create = matches!(opts.mode, PutMode::Create);
        let result = inner.put_opts(location, payload, opts).await;
        if result.is_ok()
            && create
            && location.as_ref().starts_with("locks/")
            && !self.done.swap(true, Ordering::SeqCst)
        {
            let source: Box<dyn std::error::Error + Send + Sync> = match self.how {
                LostAnswer::RetriedBelow => "412 Precondition Failed on the retry".into(),
                LostAnswer::TimedOut => Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the answer was lost",
                )),
            };
            return Err(match self.how {
                LostAnswer::RetriedBelow => object_store::Error::AlreadyExists {
                    path: location.to_string(),
                    source,
                },
                LostAnswer::TimedOut => object_store::Error::Generic {
                    store: "LosesAnswer",
                    source,
                },
            });
        }
        result
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_create_answer_was_lost_is_taken_not_reported_as_held() {
    let policy = RetryPolicy::new()
        .with_max_retries(3)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(10))
        .build()
        .unwrap();
    for how in [LostAnswer::RetriedBelow, LostAnswer::TimedOut] {
        for kind in [LockKind::Exclusive, LockKind::Shared] {
            let losing = Arc::new(Hooked {
                inner: InMemory::new(),
                hooks: LosesAnswer {
                    how,
                    done: AtomicBool::new(true),
                },
            });
            let store: Arc<dyn ObjectStore> = match how {
                LostAnswer::RetriedBelow => losing.clone(),
                LostAnswer::TimedOut => Arc::new(RetryingStore::new(losing.clone(), policy)),
            };
            let repo = Repository::init(store, "memory", &key(), small_options())
                .await
                .unwrap();
            losing.hooks.done.store(false, Ordering::SeqCst);
            let options = LockOptions::builder(kind, "prune").build().unwrap();
            let lock = repo.lock(&options).await;
            let lock = lock.unwrap_or_else(|e| panic!("{how:?} {kind:?}: {e}"));
            assert!(
                losing.hooks.done.load(Ordering::SeqCst),
                "the answer was lost"
            );
            let locks = repo.list_locks().await.unwrap();
            assert_eq!(locks.len(), 1, "{how:?} {kind:?}: {locks:?}");
            assert_eq!(locks[0].object, lock.object());
            lock.release().await.unwrap();
            assert!(repo.list_locks().await.unwrap().is_empty());
        }
    }
}
