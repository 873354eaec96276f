//! Locks: the error names the holder, shared locks coexist and exclude the exclusive one,
//! refreshed locks stay alive, unrefreshed ones go stale and are taken over, `unlock` removes
//! only stale locks unless forced, forged lock objects block nobody, and a lost lock stops its
//! holder.

use std::sync::Arc;
use std::time::Duration;

use backup_core::conformance::small_options;
use backup_core::lock::{LockKind, LockOptions, RepositoryLock};
use backup_core::prune::PruneOptions;
use backup_core::{BackupOptions, Error, KeySource, NoProgress, Repository};
use object_store::ObjectStoreExt;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;

fn key() -> KeySource {
    KeySource::passphrase("lock tests")
}

async fn repository() -> (Arc<InMemory>, Arc<Repository>) {
    let store = Arc::new(InMemory::new());
    let repo = Repository::init(store.clone(), "memory", &key(), small_options())
        .await
        .unwrap();
    (store, Arc::new(repo))
}

/// Lock options for `command` of `kind` recorded for host `host` (so that this process's
/// liveness does not count), stale after `stale_ms`.
fn options(kind: LockKind, command: &str, host: &str, stale_ms: u64) -> LockOptions {
    LockOptions::builder(kind, command)
        .with_host(host)
        .with_stale_after(Duration::from_millis(stale_ms))
        .with_refresh_every(Duration::from_millis(stale_ms / 4))
        .build()
        .unwrap()
}

async fn take(repo: &Repository, kind: LockKind, command: &str, host: &str) -> RepositoryLock {
    repo.lock(&options(kind, command, host, 60_000))
        .await
        .unwrap()
}

/// The `Locked` error's text, which must name `needles`.
fn assert_locked(result: backup_core::Result<RepositoryLock>, needles: &[&str]) {
    match result {
        Err(e @ Error::Locked { .. }) => {
            let text = e.to_string();
            for needle in needles {
                assert!(text.contains(needle), "{text:?} lacks {needle:?}");
            }
        }
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[tokio::test]
async fn the_error_names_the_holder_and_kinds_exclude_as_they_should() {
    let (_, repo) = repository().await;
    let pid = std::process::id().to_string();
    let prune = take(&repo, LockKind::Exclusive, "prune", "web-1").await;
    assert_locked(
        repo.lock(&options(LockKind::Exclusive, "prune", "web-2", 60_000))
            .await,
        &["prune", "exclusive", "web-1", &pid, "since"],
    );
    assert_locked(
        repo.lock(&options(LockKind::Shared, "backup", "web-2", 60_000))
            .await,
        &["prune", "web-1"],
    );
    prune.release().await.unwrap();
    // Shared locks coexist, and each keeps the exclusive one out.
    let a = take(&repo, LockKind::Shared, "backup", "web-1").await;
    let b = take(&repo, LockKind::Shared, "forget", "web-2").await;
    assert_locked(
        repo.lock(&options(LockKind::Exclusive, "prune", "web-3", 60_000))
            .await,
        &["shared", &pid],
    );
    a.release().await.unwrap();
    assert_locked(
        repo.lock(&options(LockKind::Exclusive, "prune", "web-3", 60_000))
            .await,
        &["forget", "web-2"],
    );
    b.release().await.unwrap();
    let exclusive = take(&repo, LockKind::Exclusive, "prune", "web-3").await;
    exclusive.release().await.unwrap();
    assert!(repo.list_locks().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_refreshed_lock_stays_alive_and_an_abandoned_one_goes_stale() {
    let (_, repo) = repository().await;
    // Refreshed every 100 ms, stale after 400 ms without a refresh.
    let held = repo
        .lock(&options(LockKind::Exclusive, "prune", "elsewhere", 400))
        .await
        .unwrap();
    let created = held.info().created_ns;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    held.check().unwrap();
    assert_locked(
        repo.lock(&options(LockKind::Shared, "backup", "here", 400))
            .await,
        &["elsewhere"],
    );
    let listed = repo.list_locks().await.unwrap();
    assert_eq!(listed.len(), 1);
    let info = listed[0].info.as_ref().unwrap();
    assert!(info.refreshed_ns > created + 500_000_000, "{info:?}");
    assert!(listed[0].stale.is_none());
    // Dropped without release (as a killed process): no more refreshes.
    drop(held);
    assert_locked(
        repo.lock(&options(LockKind::Exclusive, "prune", "here", 400))
            .await,
        &["elsewhere"],
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let listed = repo.list_locks().await.unwrap();
    assert!(
        listed[0]
            .stale
            .as_deref()
            .unwrap()
            .contains("not refreshed"),
        "{listed:?}"
    );
    // A stale lock blocks nobody: a shared lock passes it, the exclusive one takes it over.
    let shared = take(&repo, LockKind::Shared, "backup", "here").await;
    shared.release().await.unwrap();
    let taken = take(&repo, LockKind::Exclusive, "prune", "here").await;
    assert_eq!(taken.info().host, "here");
    taken.release().await.unwrap();
    let left = repo.list_locks().await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_lock_of_this_host_whose_process_is_gone_is_stale_at_once() {
    let (_, repo) = repository().await;
    let held = repo
        .lock(
            &LockOptions::builder(LockKind::Exclusive, "prune")
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let mut info = held.info().clone();
    held.release().await.unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(info.host, host);
    assert_eq!(info.stale_reason(info.refreshed_ns, &host), None);
    let mut child = std::process::Command::new("true").spawn().unwrap();
    info.pid = child.id();
    child.wait().unwrap();
    let reason = info.stale_reason(info.refreshed_ns, &host).unwrap();
    assert!(
        reason.contains(&format!("process {}", info.pid)),
        "{reason}"
    );
    // Seen from another host, only its age counts.
    assert_eq!(info.stale_reason(info.refreshed_ns, "another-host"), None);
    let later = info.refreshed_ns + 31 * 60 * 1_000_000_000;
    assert!(info.stale_reason(later, "another-host").is_some());
}

#[tokio::test]
async fn unlock_removes_stale_locks_and_force_removes_all() {
    let (_, repo) = repository().await;
    let stale = repo
        .lock(&options(LockKind::Shared, "backup", "gone-host", 200))
        .await
        .unwrap();
    let live = take(&repo, LockKind::Shared, "backup", "live-host").await;
    let stale_object = stale.object().to_string();
    drop(stale);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let removed = repo.unlock(false).await.unwrap();
    let names: Vec<&str> = removed.iter().map(|e| e.object.as_str()).collect();
    assert_eq!(names, [stale_object.as_str()]);
    let left = repo.list_locks().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].object, live.object());
    let forced = repo.unlock(true).await.unwrap();
    assert_eq!(forced.len(), 1);
    assert!(repo.list_locks().await.unwrap().is_empty());
    // Its holder finds out at its next refresh.
    drop(live);
}

#[tokio::test]
async fn forged_lock_objects_block_nobody() {
    let (store, repo) = repository().await;
    // Someone with write access to the store but no key.
    for name in ["locks/exclusive", "locks/0123456789abcdef0123456789abcdef"] {
        store
            .put(&ObjectPath::from(name), vec![7u8; 300].into())
            .await
            .unwrap();
    }
    let listed = repo.list_locks().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|e| e.info.is_none() && e.stale.as_deref().unwrap().contains("forged")),
        "{listed:?}"
    );
    let shared = take(&repo, LockKind::Shared, "backup", "here").await;
    shared.release().await.unwrap();
    let exclusive = take(&repo, LockKind::Exclusive, "prune", "here").await;
    exclusive.release().await.unwrap();
    // The forged shared lock was removed by the exclusive locker, the exclusive one taken over.
    assert!(repo.list_locks().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_holder_whose_lock_was_removed_stops() {
    let (_, repo) = repository().await;
    let held = repo
        .lock(&options(LockKind::Shared, "backup", "here", 400))
        .await
        .unwrap();
    held.check().unwrap();
    repo.unlock(true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lost = held.check().unwrap_err();
    assert!(matches!(lost, Error::LockLost { .. }), "{lost:?}");
    assert!(lost.to_string().contains("removed"), "{lost}");
}

#[tokio::test]
async fn backup_and_prune_take_their_locks() {
    let (_, repo) = repository().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"content").unwrap();
    let backup = |repo: Arc<Repository>| {
        let options = BackupOptions::builder([dir.path()]).build().unwrap();
        backup_core::backup(repo, options, Arc::new(NoProgress))
    };
    let prune = take(&repo, LockKind::Exclusive, "prune", "elsewhere").await;
    let blocked = backup(repo.clone()).await.unwrap_err();
    assert!(
        matches!(&blocked, Error::Locked { holder, .. } if holder.contains("elsewhere")),
        "{blocked:?}"
    );
    prune.release().await.unwrap();
    backup(repo.clone()).await.unwrap();
    let running = take(&repo, LockKind::Shared, "backup", "elsewhere").await;
    let refused =
        backup_core::prune::prune(repo.clone(), &PruneOptions::builder().build().unwrap())
            .await
            .unwrap_err();
    assert!(
        matches!(&refused, Error::Locked { holder, .. } if holder.contains("backup")),
        "{refused:?}"
    );
    // A dry run takes no lock.
    backup_core::prune::prune(
        repo.clone(),
        &PruneOptions::builder().with_dry_run(true).build().unwrap(),
    )
    .await
    .unwrap();
    running.release().await.unwrap();
    assert!(repo.list_locks().await.unwrap().is_empty());
}

#[test]
fn lock_options_are_checked() {
    let too_slow = LockOptions::builder(LockKind::Shared, "backup")
        .with_stale_after(Duration::from_secs(60))
        .with_refresh_every(Duration::from_secs(30))
        .build();
    assert!(matches!(too_slow, Err(Error::Config(_))), "{too_slow:?}");
    let unnamed = LockOptions::builder(LockKind::Shared, "").build();
    assert!(matches!(unnamed, Err(Error::Config(_))));
    let shared_prune = PruneOptions::builder()
        .with_lock(
            LockOptions::builder(LockKind::Shared, "prune")
                .build()
                .unwrap(),
        )
        .build();
    assert!(matches!(shared_prune, Err(Error::Config(_))));
}

/// Reading commands take no lock and write nothing, so they work with read-only credentials:
/// every object (name and e-tag) is the same after them.
#[tokio::test]
async fn reading_commands_write_nothing() {
    use backup_core::check::{CheckOptions, DataSubset};
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let (store, repo) = repository().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), vec![5u8; 100_000]).unwrap();
    let options = BackupOptions::builder([&src]).build().unwrap();
    let (id, _) = backup_core::backup(repo, options, Arc::new(NoProgress))
        .await
        .unwrap();
    let objects = || async {
        let all: Vec<_> = store.list(None).try_collect().await.unwrap();
        all.into_iter()
            .map(|m| (m.location.to_string(), m.e_tag))
            .collect::<Vec<_>>()
    };
    let before = objects().await;
    let repo = Arc::new(
        Repository::open(store.clone(), "memory", &key())
            .await
            .unwrap(),
    );
    repo.snapshots().await.unwrap();
    let read_all = CheckOptions::builder()
        .with_read_data(DataSubset::All)
        .build()
        .unwrap();
    let report = backup_core::check::check(repo.clone(), &read_all)
        .await
        .unwrap();
    assert!(report.is_ok());
    backup_core::ops::list(&repo, &id).await.unwrap();
    let target = dir.path().join("restored");
    let options = backup_core::RestoreOptions::builder(&target)
        .build()
        .unwrap();
    backup_core::restore(repo.clone(), &id, options, Arc::new(NoProgress))
        .await
        .unwrap();
    repo.list_locks().await.unwrap();
    assert_eq!(objects().await, before);
}
