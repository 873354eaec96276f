//! The repository conformance suite: plain async functions every object store must pass
//! (InMemory, LocalFileSystem and S3 run it in this crate's tests).
//!
//! Each function takes an empty store (or a fresh prefix of one) and panics with a description
//! on failure. [`run_all`] runs every check, each under its own prefix.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;

mod mirror;
pub use mirror::{append_only_guards, copy_into};

use crate::{
    BackupOptions, ChunkerParams, Error, InitOptions, KeySource, NoProgress, Repository,
    RestoreOptions, backup, ops, restore,
};

fn key() -> KeySource {
    KeySource::passphrase("conformance passphrase")
}

/// Small chunks and packs so a small tree exercises many chunks and several packs.
pub fn small_options() -> InitOptions {
    InitOptions::new()
        .with_chunker(ChunkerParams {
            min_size: 16 * 1024,
            avg_size: 64 * 1024,
            max_size: 256 * 1024,
        })
        .with_pack_size(256 * 1024)
}

/// A repository with [`small_options`] in a fresh in-memory store.
pub async fn memory_repository() -> Arc<Repository> {
    let store = Arc::new(object_store::memory::InMemory::new());
    let repo = Repository::init(store, "memory", &key(), small_options()).await;
    Arc::new(repo.expect("init an in-memory repository"))
}

/// Restores all of snapshot `id` into `target`, panicking on failure.
pub async fn restore_all(repo: Arc<Repository>, id: &str, target: &Path) -> crate::RestoreSummary {
    restore_all_with(repo, id, target, false).await
}

/// [`restore_all`], leaving all-zero blocks as holes if `sparse`.
pub async fn restore_all_with(
    repo: Arc<Repository>,
    id: &str,
    target: &Path,
    sparse: bool,
) -> crate::RestoreSummary {
    let options = RestoreOptions::builder(target)
        .with_sparse(sparse)
        .build()
        .expect("restore options");
    restore(repo, id, options, Arc::new(NoProgress))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "restore {id} into {}: {}",
                target.display(),
                crate::report(&e)
            )
        })
}

/// The ids of the snapshots `repo` lists, oldest first, panicking on failure.
pub async fn snapshot_ids(repo: &Repository) -> Vec<String> {
    let listed = repo.snapshots().await.expect("list snapshots");
    listed.into_iter().map(|(id, _)| id).collect()
}

/// Writes a sample tree exercising every entry type the format stores.
pub fn write_sample_tree(root: &Path) {
    use std::fs;
    let w = |p: &str, data: &[u8]| fs::write(root.join(p), data).expect("write sample");
    fs::create_dir_all(root.join("dir/sub/deeper")).expect("mkdir");
    w("empty", b"");
    w("small.txt", b"hello, world\n");
    let mut big = Vec::with_capacity(1 << 20);
    for i in 0u32..(1 << 18) {
        big.extend_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
    }
    w("dir/big.bin", &big);
    w(
        "dir/sub/text.txt",
        &b"some text that compresses well ".repeat(4000),
    );
    w("dir/sub/deeper/x", b"x");
    std::os::unix::fs::symlink("../small.txt", root.join("dir/link")).expect("symlink");
    fs::hard_link(root.join("small.txt"), root.join("dir/hardlink")).expect("hard link");
    let odd = std::ffi::OsStr::from_bytes(b"caf\xc3\xa9 \xff\xfe name");
    fs::write(root.join("dir").join(odd), b"non-UTF-8 name").expect("write odd");
    let sparse = fs::File::create(root.join("sparse")).expect("create sparse");
    sparse.set_len(8 << 20).expect("extend sparse");
    use std::os::unix::fs::FileExt;
    sparse
        .write_all_at(b"island", 4 << 20)
        .expect("write island");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(root.join("small.txt"), fs::Permissions::from_mode(0o640)).expect("chmod");
    let _ = xattr::set(root.join("dir/sub/text.txt"), "user.hostguard", b"kept");
}

/// Asserts `b` is a faithful copy of `a` (see [`crate::compare_trees`]).
pub fn assert_same_tree(a: &Path, b: &Path) {
    let diffs = crate::compare_trees(a, b)
        .unwrap_or_else(|e| panic!("comparing {} and {}: {e}", a.display(), b.display()));
    assert!(diffs.is_empty(), "restored tree differs: {diffs:#?}");
}

/// `init` on a location holding a repository fails and leaves the first one usable.
pub async fn init_refuses_overwrite(store: Arc<dyn ObjectStore>) {
    Repository::init(store.clone(), "first", &key(), small_options())
        .await
        .expect("first init");
    let second = Repository::init(store.clone(), "second", &key(), small_options()).await;
    assert!(
        matches!(second, Err(Error::RepositoryExists { .. })),
        "second init: {second:?}"
    );
    Repository::open(store, "first", &key())
        .await
        .expect("the first repository still opens");
}

/// A wrong passphrase is [`Error::WrongKey`]; an empty location is [`Error::NoRepository`].
pub async fn wrong_key_and_missing_repository(store: Arc<dyn ObjectStore>) {
    let missing = Repository::open(store.clone(), "empty", &key()).await;
    assert!(
        matches!(missing, Err(Error::NoRepository { .. })),
        "{missing:?}"
    );
    Repository::init(store.clone(), "r", &key(), small_options())
        .await
        .expect("init");
    let wrong = Repository::open(store, "r", &KeySource::passphrase("not it")).await;
    assert!(matches!(wrong, Err(Error::WrongKey)), "{wrong:?}");
}

/// Backup then restore gives a faithful copy; a rerun skips every file; a second backup with
/// the first as parent reads nothing and stores no new data.
pub async fn backup_restore_roundtrip(store: Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    write_sample_tree(&src);
    let repo = Arc::new(
        Repository::init(store, "roundtrip", &key(), small_options())
            .await
            .expect("init"),
    );
    let (id, snap) = backup(
        repo.clone(),
        BackupOptions::builder([&src])
            .with_tag("t1")
            .build()
            .expect("options"),
        Arc::new(NoProgress),
    )
    .await
    .expect("backup");
    assert!(snap.skipped.is_empty(), "{:?}", snap.skipped);
    assert_eq!(snap.tags, ["t1"]);
    assert!(snap.summary.files >= 8, "{:?}", snap.summary);
    assert!(snap.summary.chunks_new > 10, "{:?}", snap.summary);

    let target = dir.path().join("restored");
    let summary = restore(
        repo.clone(),
        &id[..8],
        RestoreOptions::builder(&target)
            .with_sparse(true)
            .build()
            .expect("options"),
        Arc::new(NoProgress),
    )
    .await
    .expect("restore");
    assert!(summary.files_restored >= 7, "{summary:?}");
    assert_same_tree(&src, &target.join("src"));
    let sparse = std::fs::metadata(target.join("src/sparse")).expect("stat sparse");
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "sparse file kept sparse: {} blocks",
        sparse.blocks()
    );

    let again = restore(
        repo.clone(),
        "latest",
        RestoreOptions::builder(&target).build().expect("options"),
        Arc::new(NoProgress),
    )
    .await
    .expect("second restore");
    assert_eq!(again.files_restored, 0, "{again:?}");
    assert_eq!(again.files_unchanged, summary.files_restored);

    let (_, second) = backup(
        repo.clone(),
        BackupOptions::builder([&src])
            .with_parent(id.clone())
            .build()
            .expect("options"),
        Arc::new(NoProgress),
    )
    .await
    .expect("second backup");
    assert_eq!(second.summary.bytes_read, 0, "{:?}", second.summary);
    assert_eq!(second.summary.chunks_new, 0, "{:?}", second.summary);
    assert_eq!(second.tree, snap.tree, "unchanged tree, same root id");
    assert_eq!(second.parent.as_deref(), Some(id.as_str()));

    assert_eq!(repo.snapshots().await.expect("list").len(), 2);
    let entries = ops::list(&repo, &id).await.expect("ls");
    assert!(entries.iter().any(|e| e.path == b"src/dir/sub/deeper/x"));
    let stats = ops::stats(&repo, &[]).await.expect("stats");
    assert!(
        stats.dedup_ratio > 1.5,
        "two identical snapshots: {stats:?}"
    );

    // A sub-path restore.
    let part = dir.path().join("part");
    restore(
        repo.clone(),
        &id,
        RestoreOptions::builder(&part)
            .with_sub_path("src/dir/sub")
            .build()
            .expect("options"),
        Arc::new(NoProgress),
    )
    .await
    .expect("sub-path restore");
    assert_same_tree(&src.join("dir/sub"), &part.join("sub"));
}

/// A damaged pack (a flipped bit, or cut to half its length) is named by restore: the file
/// it holds is left out and named in [`crate::RestoreSummary::damaged`] with the pack, or,
/// when the snapshot's root tree is damaged, the restore fails with [`Error::Corrupt`] naming
/// it. Nothing damaged is written.
pub async fn corrupt_pack_is_named(store: Arc<dyn ObjectStore>) {
    let flip: fn(&mut Vec<u8>) = |bytes| bytes[0] ^= 0x40;
    let cut: fn(&mut Vec<u8>) = |bytes| bytes.truncate(bytes.len() / 2);
    for (name, damage) in [("flipped", flip), ("cut", cut)] {
        let prefix: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(store.clone(), name));
        restore_of_damaged_packs_fails(prefix, damage).await;
    }
}

async fn restore_of_damaged_packs_fails(store: Arc<dyn ObjectStore>, damage: fn(&mut Vec<u8>)) {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("f"), b"precious data ".repeat(10_000)).expect("write");
    let repo = Arc::new(
        Repository::init(store.clone(), "corrupt", &key(), small_options())
            .await
            .expect("init"),
    );
    let (id, _) = backup(
        repo.clone(),
        BackupOptions::builder([&src]).build().expect("options"),
        Arc::new(NoProgress),
    )
    .await
    .expect("backup");
    let packs: Vec<_> = store
        .list(Some(&ObjectPath::from("data")))
        .try_collect()
        .await
        .expect("list packs");
    assert!(!packs.is_empty());
    for meta in &packs {
        let mut bytes = store
            .get(&meta.location)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes")
            .to_vec();
        damage(&mut bytes);
        store
            .put(&meta.location, bytes.into())
            .await
            .expect("overwrite pack");
    }
    let reopened = Arc::new(
        Repository::open(store, "corrupt", &key())
            .await
            .expect("open"),
    );
    let out = dir.path().join("out");
    let restored = restore(
        reopened,
        &id,
        RestoreOptions::builder(&out).build().expect("options"),
        Arc::new(NoProgress),
    )
    .await;
    let names_a_pack = |text: &str| packs.iter().any(|m| text.contains(m.location.as_ref()));
    match restored {
        Err(err) => {
            assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
            assert!(
                names_a_pack(&crate::report(&err)),
                "error names the pack: {err}"
            );
        }
        Ok(summary) => {
            // The damage hits the file's data, or the tree of `src` when that tree shares a
            // damaged pack (which pack a tree lands in depends on the packer threads).
            let named: Vec<&str> = summary.damaged.iter().map(|d| d.path.as_str()).collect();
            assert!(named == ["src/f"] || named == ["src"], "{summary:?}");
            assert!(names_a_pack(&summary.damaged[0].object), "{summary:?}");
        }
    }
    assert!(!out.join("src/f").exists(), "a damaged file was written");
}

/// Two backups, then: `check --read-data` finds nothing wrong and reads every pack; `forget`
/// of the older removes its snapshot object only (the other still checks and restores); a
/// second key opens the repository and the key in use cannot be removed.
pub async fn check_forget_and_keys(store: Arc<dyn ObjectStore>) {
    use crate::check::{CheckOptions, DataSubset, check};
    use crate::retention::RetentionPolicy;
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    write_sample_tree(&src);
    let repo = Arc::new(
        Repository::init(store.clone(), "maintenance", &key(), small_options())
            .await
            .expect("init"),
    );
    for tag in ["old", "new"] {
        let options = BackupOptions::builder([&src]).with_tag(tag).build();
        backup(
            repo.clone(),
            options.expect("options"),
            Arc::new(NoProgress),
        )
        .await
        .expect("backup");
    }
    let read_all = CheckOptions::builder()
        .with_read_data(DataSubset::All)
        .build()
        .expect("options");
    let report = check(repo.clone(), &read_all).await.expect("check");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.snapshots, 2);
    assert!(
        report.packs > 1 && report.packs_read == report.packs,
        "{report:?}"
    );

    let policy = RetentionPolicy::builder().with_keep_last(1).build();
    let groups = repo
        .forget(&policy.expect("policy"), false)
        .await
        .expect("forget");
    assert_eq!(groups.iter().map(|g| g.removed().count()).sum::<usize>(), 1);
    let left = repo.snapshots().await.expect("snapshots");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1.tags, ["new"]);
    let report = check(repo.clone(), &read_all).await.expect("check");
    assert!(report.is_ok(), "{:?}", report.problems);

    let second = KeySource::passphrase("second admin");
    let id = repo.add_key(&second).await.expect("add key");
    let reopened = Repository::open(store, "maintenance", &second)
        .await
        .expect("open");
    assert_eq!(reopened.current_key().expect("current"), id);
    let refused = reopened.remove_key(&id).await;
    assert!(
        matches!(refused, Err(Error::KeyRemovalRefused { .. })),
        "{refused:?}"
    );
    let target = dir.path().join("restored");
    restore_all(Arc::new(reopened), &left[0].0, &target).await;
    assert_same_tree(&src, &target.join("src"));
}

/// Locks and prune: of four handles racing for the exclusive lock exactly one wins (the store's
/// create-only put decides), a shared lock keeps the exclusive one out, and a prune after a
/// forget deletes the forgotten data while the kept snapshot still checks and restores.
pub async fn locks_and_prune(store: Arc<dyn ObjectStore>) {
    use crate::check::{CheckOptions, DataSubset, check};
    use crate::lock::{LockKind, LockOptions};
    use crate::prune::{MaxUnused, PruneOptions, prune};
    use object_store::ObjectStoreExt;
    let repo = Arc::new(
        Repository::init(store.clone(), "locks", &key(), small_options())
            .await
            .expect("init"),
    );
    let exclusive = LockOptions::builder(LockKind::Exclusive, "conformance")
        .build()
        .expect("lock options");
    let mut handles = Vec::new();
    for _ in 0..4 {
        let handle = Repository::open(store.clone(), "locks", &key()).await;
        handles.push(Arc::new(handle.expect("open")));
    }
    let attempts = handles.iter().map(|r| r.lock(&exclusive));
    let (won, lost): (Vec<_>, Vec<_>) = futures::future::join_all(attempts)
        .await
        .into_iter()
        .partition(|r| r.is_ok());
    assert_eq!(won.len(), 1, "{lost:?}");
    assert!(lost.iter().all(|r| matches!(r, Err(Error::Locked { .. }))));
    for lock in won.into_iter().flatten() {
        lock.release().await.expect("release");
    }
    let shared = LockOptions::builder(LockKind::Shared, "conformance");
    let shared = repo
        .lock(&shared.build().expect("options"))
        .await
        .expect("shared");
    let blocked = repo.lock(&exclusive).await;
    assert!(matches!(blocked, Err(Error::Locked { .. })), "{blocked:?}");
    shared.release().await.expect("release");

    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    write_sample_tree(&src);
    let run = || BackupOptions::builder([&src]).build().expect("options");
    let (old, _) = backup(repo.clone(), run(), Arc::new(NoProgress))
        .await
        .expect("backup");
    std::fs::write(src.join("replaced.bin"), vec![3u8; 200_000]).expect("write");
    let (new, _) = backup(repo.clone(), run(), Arc::new(NoProgress))
        .await
        .expect("backup");
    store
        .delete(&ObjectPath::from(format!("snapshots/{old}")))
        .await
        .expect("forget");
    let options = PruneOptions::builder().with_max_unused(MaxUnused::Percent(0.0));
    let report = prune(repo.clone(), &options.build().expect("options"))
        .await
        .expect("prune");
    assert!(
        report.packs_deleted + report.packs_repacked > 0,
        "{report:?}"
    );
    let read_all = CheckOptions::builder()
        .with_read_data(DataSubset::All)
        .build();
    let checked = check(repo.clone(), &read_all.expect("options"))
        .await
        .expect("check");
    assert!(
        checked.is_ok() && checked.unindexed_packs.is_empty(),
        "{checked:?}"
    );
    let target = dir.path().join("restored");
    restore_all(repo, &new, &target).await;
    assert_same_tree(&src, &target.join("src"));
}

/// Runs every check above, each under its own prefix of `store`.
pub async fn run_all(store: Arc<dyn ObjectStore>) {
    let sub = |p: &str| -> Arc<dyn ObjectStore> { Arc::new(PrefixStore::new(store.clone(), p)) };
    init_refuses_overwrite(sub("init")).await;
    wrong_key_and_missing_repository(sub("keys")).await;
    backup_restore_roundtrip(sub("roundtrip")).await;
    corrupt_pack_is_named(sub("corrupt")).await;
    check_forget_and_keys(sub("maintenance")).await;
    locks_and_prune(sub("locks")).await;
    copy_into(sub("mirror")).await;
    append_only_guards(sub("append-only")).await;
}
