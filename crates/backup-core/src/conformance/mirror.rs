//! Conformance of mirrors (`copy`) and append-only handles on every store.

use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{
    CopyMode, CopyOptions as StoreCopyOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    UpdateVersion,
};

use super::{assert_same_tree, key, restore_all, small_options, write_sample_tree};
use crate::check::{CheckOptions, DataSubset, check};
use crate::copy::{CopyOptions, copy};
use crate::retention::RetentionPolicy;
use crate::{BackupOptions, Error, InitOptions, KeySource, NoProgress, Repository, backup};

/// Backs up `src` into `repo` with `tag`; returns the snapshot id.
async fn backup_tagged(repo: &Arc<Repository>, src: &std::path::Path, tag: &str) -> String {
    let options = BackupOptions::builder([src]).with_tag(tag).build();
    let (id, _) = backup(
        repo.clone(),
        options.expect("options"),
        Arc::new(NoProgress),
    )
    .await
    .unwrap_or_else(|e| panic!("backup: {}", crate::report(&e)));
    id
}

/// `check --read-data` of `repo` finds nothing wrong.
async fn assert_checks(repo: Arc<Repository>, what: &str) -> crate::check::CheckReport {
    let options = CheckOptions::builder()
        .with_read_data(DataSubset::All)
        .build()
        .expect("check options");
    let report = check(repo, &options).await.expect("check runs");
    assert!(report.is_ok(), "{what}: {:?}", report.problems);
    report
}

/// Two snapshots on a local disk repository are copied into a repository on `store` made with
/// the source's parameters: one selected by id first, then the rest; a rerun sends nothing;
/// the mirror checks with `--read-data` and restores the newer snapshot faithfully, and the
/// two copies sent no more than one copy of both. A repository with its own keys is refused.
pub async fn copy_into(store: Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("site");
    std::fs::create_dir(&src).expect("mkdir");
    write_sample_tree(&src);
    let local = crate::StoreOptions::new(dir.path().join("local").to_string_lossy())
        .with_create(true)
        .build()
        .expect("local store");
    let source = Arc::new(
        Repository::init(local, "local", &key(), small_options())
            .await
            .expect("init source"),
    );
    let first = backup_tagged(&source, &src, "daily").await;
    std::fs::write(src.join("dir/new.txt"), b"written after the first backup").expect("write");
    let second = backup_tagged(&source, &src, "daily").await;

    let mirror_key = KeySource::passphrase("the mirror's own passphrase");
    let stranger = Arc::new(
        Repository::init(
            Arc::new(object_store::memory::InMemory::new()),
            "stranger",
            &mirror_key,
            small_options(),
        )
        .await
        .expect("init stranger"),
    );
    let all = CopyOptions::builder().build().expect("options");
    let refused = copy(source.clone(), stranger, &all).await;
    assert!(
        matches!(refused, Err(Error::KeysDiffer { .. })),
        "{refused:?}"
    );

    let options = InitOptions::new().with_params_from(&source);
    let mirror = Repository::init(store.clone(), "mirror", &mirror_key, options).await;
    let mirror = Arc::new(mirror.expect("init mirror"));
    let only_first = CopyOptions::builder().with_snapshot(&first[..8]).build();
    let one = copy(
        source.clone(),
        mirror.clone(),
        &only_first.expect("options"),
    )
    .await
    .expect("copy the first");
    assert_eq!(one.copied, [first.as_str()], "{one:?}");
    assert!(one.blobs_copied > 0 && one.packs_written > 0, "{one:?}");
    let rest = copy(source.clone(), mirror.clone(), &all)
        .await
        .expect("copy the rest");
    assert_eq!(rest.copied, [second.as_str()], "{rest:?}");
    assert_eq!(rest.already_present, [first.as_str()], "{rest:?}");
    // Only what the second snapshot added (a new file, changed trees) is sent.
    assert!(
        rest.bytes_copied > 0 && rest.bytes_copied * 4 < one.bytes_copied,
        "{one:?} then {rest:?}"
    );
    let again = copy(source.clone(), mirror.clone(), &all)
        .await
        .expect("copy again");
    assert_eq!((again.copied.len(), again.already_present.len()), (0, 2));
    assert_eq!(
        (again.bytes_copied, again.packs_written),
        (0, 0),
        "{again:?}"
    );

    // A fresh handle, as another host would open the mirror.
    let reopened = Repository::open(store, "mirror", &mirror_key).await;
    let reopened = Arc::new(reopened.expect("open mirror"));
    let report = assert_checks(reopened.clone(), "the mirror").await;
    assert_eq!(report.snapshots, 2);
    let target = dir.path().join("restored");
    restore_all(reopened.clone(), &second, &target).await;
    assert_same_tree(&src, &target.join("site"));
    // Nothing was sent twice: the two copies sent what one copy of both sends, and no more
    // frame bytes than the source's packs hold.
    let whole = InitOptions::new().with_params_from(&source);
    let whole = Repository::init(
        Arc::new(object_store::memory::InMemory::new()),
        "whole",
        &mirror_key,
        whole,
    )
    .await;
    let whole = copy(source.clone(), Arc::new(whole.expect("init")), &all)
        .await
        .expect("copy at once");
    assert_eq!(whole.bytes_copied, one.bytes_copied + rest.bytes_copied);
    assert_eq!(whole.blobs_copied, one.blobs_copied + rest.blobs_copied);
    let original = source.packs_size().await.expect("size");
    assert!(
        whole.bytes_copied < original,
        "{whole:?}, source packs {original}"
    );
}

/// Every object in `store` with its bytes, by name.
async fn all_objects(store: &dyn ObjectStore) -> Vec<(ObjectPath, bytes::Bytes)> {
    use futures::TryStreamExt;
    let metas: Vec<_> = store.list(None).try_collect().await.expect("list");
    let mut objects = Vec::new();
    for meta in metas {
        let bytes = store.get(&meta.location).await.expect("get");
        objects.push((meta.location, bytes.bytes().await.expect("read")));
    }
    objects.sort();
    objects
}

/// Asserts `result` is the append-only wrapper's refusal.
fn assert_refused<T: std::fmt::Debug>(result: object_store::Result<T>, what: &str) {
    match result {
        Err(object_store::Error::PermissionDenied { source, .. })
            if source.is::<crate::append_only::AppendOnlyRefusal>() => {}
        other => panic!("{what}: expected an append-only refusal, got {other:?}"),
    }
}

/// Through a handle opened with [`Repository::open_append_only`], a backup and a restore work,
/// but no object of any kind can be deleted, overwritten, updated, replaced by a copy, renamed
/// or replaced by a multipart upload, `forget`, `key remove` and `key passwd` fail with
/// [`Error::AppendOnly`], and afterwards every object holds the bytes it held before.
pub async fn append_only_guards(store: Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("site");
    std::fs::create_dir(&src).expect("mkdir");
    write_sample_tree(&src);
    let full = Repository::init(store.clone(), "append-only", &key(), small_options()).await;
    let full = Arc::new(full.expect("init"));
    backup_tagged(&full, &src, "before").await;
    let second_key = full
        .add_key(&KeySource::passphrase("second admin"))
        .await
        .expect("add key");

    let guarded = Repository::open_append_only(store.clone(), "append-only", &key()).await;
    let guarded = Arc::new(guarded.expect("open append-only"));
    assert!(guarded.is_append_only() && !full.is_append_only());
    std::fs::write(src.join("dir/new.txt"), b"backed up append-only").expect("write");
    let latest = backup_tagged(&guarded, &src, "after").await;
    let third_key = guarded
        .add_key(&KeySource::passphrase("adding is allowed"))
        .await
        .expect("add a key append-only");

    let before = all_objects(store.as_ref()).await;
    let kinds = ["config", "keys/", "data/", "index/", "snapshots/"];
    for kind in kinds {
        assert!(
            before.iter().any(|(p, _)| p.as_ref().starts_with(kind)),
            "no {kind} object to attack"
        );
    }
    let handle = guarded.store().clone();
    let decoy = ObjectPath::from("decoy");
    for (path, _) in &before {
        let what = |op: &str| format!("{op} {path}");
        assert_refused(handle.delete(path).await, &what("delete"));
        assert_refused(handle.put(path, "x".into()).await, &what("overwrite"));
        let meta = handle.head(path).await.expect("head");
        let update = PutMode::Update(UpdateVersion {
            e_tag: meta.e_tag,
            version: meta.version,
        });
        let update = handle.put_opts(path, "x".into(), update.into()).await;
        assert_refused(update, &what("update"));
        let create = handle
            .put_opts(path, "x".into(), PutOptions::from(PutMode::Create))
            .await;
        assert!(create.is_err(), "{}: {create:?}", what("create-only put"));
        let copy_over = StoreCopyOptions::new().with_mode(CopyMode::Overwrite);
        let copied = handle.copy_opts(&before[0].0, path, copy_over).await;
        assert_refused(copied, &what("copy over"));
        assert_refused(handle.rename(path, &decoy).await, &what("rename away"));
        assert_refused(
            handle.rename_if_not_exists(path, &decoy).await,
            &what("rename away"),
        );
        assert_refused(
            handle.put_multipart(path).await.map(|_| ()),
            &what("multipart upload over"),
        );
    }
    let names: Vec<_> = before.iter().map(|(p, _)| Ok(p.clone())).collect();
    let stream = futures::stream::iter(names);
    let results: Vec<_> = futures::StreamExt::collect(handle.delete_stream(Box::pin(stream))).await;
    assert_eq!(results.len(), before.len());
    for result in results {
        assert_refused(result, "delete_stream");
    }

    let policy = RetentionPolicy::builder().with_keep_last(1).build();
    let policy = policy.expect("policy");
    let forget = guarded.forget(&policy, false).await;
    assert!(
        matches!(forget, Err(Error::AppendOnly { .. })),
        "{forget:?}"
    );
    let dry_run = guarded.forget(&policy, true).await.expect("dry run");
    assert_eq!(
        dry_run.iter().map(|g| g.removed().count()).sum::<usize>(),
        1
    );
    let remove = guarded.remove_key(&second_key).await;
    assert!(
        matches!(remove, Err(Error::AppendOnly { .. })),
        "{remove:?}"
    );
    let passwd = guarded.change_key(&KeySource::passphrase("new")).await;
    assert!(
        matches!(passwd, Err(Error::AppendOnly { .. })),
        "{passwd:?}"
    );
    let message = crate::report(&passwd.expect_err("refused"));
    assert!(message.contains("append-only"), "{message}");
    assert_eq!(
        all_objects(store.as_ref()).await,
        before,
        "an object changed through the append-only handle"
    );

    // Restores, checks and lock objects work; the full handle can still forget.
    let target = dir.path().join("restored");
    restore_all(guarded.clone(), &latest, &target).await;
    assert_same_tree(&src, &target.join("site"));
    assert_checks(guarded.clone(), "through the append-only handle").await;
    let lock = ObjectPath::from(format!("{}1", crate::append_only::LOCKS_PREFIX));
    handle.put(&lock, "held".into()).await.expect("take a lock");
    handle
        .put(&lock, "refreshed".into())
        .await
        .expect("refresh it");
    handle.delete(&lock).await.expect("release it");
    full.remove_key(&third_key)
        .await
        .expect("full rights remove");
    let forgotten = full
        .forget(&policy, false)
        .await
        .expect("full rights forget");
    assert_eq!(
        forgotten.iter().map(|g| g.removed().count()).sum::<usize>(),
        1
    );
}
