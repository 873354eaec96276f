//! `copy` into a mirror: selection by id, host and tag; a copy cut off after any number of
//! writes leaves a mirror that passes `check --read-data`, and a rerun completes; damaged
//! source data is reported by snapshot and never copied. (The copy itself, onto every store
//! including S3, is in the conformance suite: `conformance::copy_into`.)

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use backup_core::check::{CheckOptions, DataSubset, check};
use backup_core::conformance::{assert_same_tree, restore_all, small_options, write_sample_tree};
use backup_core::copy::{CopyOptions, CopyReport, copy};
use backup_core::{BackupOptions, InitOptions, KeySource, NoProgress, Repository, StoreOptions};
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions as StoreCopyOptions, GetOptions, GetResult, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

fn key() -> KeySource {
    KeySource::passphrase("source passphrase")
}

fn mirror_key() -> KeySource {
    KeySource::passphrase("mirror passphrase")
}

/// A store whose writes fail once `limit` of them have succeeded: a copy killed after that
/// many objects reached the store.
#[derive(Debug)]
struct CutAfter {
    inner: Arc<dyn ObjectStore>,
    limit: usize,
    writes: AtomicUsize,
}

impl fmt::Display for CutAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CutAfter({})", self.limit)
    }
}

#[async_trait]
impl ObjectStore for CutAfter {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self.writes.fetch_add(1, Ordering::SeqCst) >= self.limit {
            return Err(object_store::Error::Generic {
                store: "CutAfter",
                source: format!("killed before writing {location}").into(),
            });
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: StoreCopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Backs up `path` into `repo` as `host` with `tag`.
async fn backup_as(repo: &Arc<Repository>, path: &Path, host: &str, tag: &str) -> String {
    let options = BackupOptions::builder([path])
        .with_host(host)
        .with_tag(tag)
        .build()
        .unwrap();
    backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
        .await
        .unwrap()
        .0
}

/// A source repository with small chunks and packs on `store`.
async fn source_repository(store: Arc<dyn ObjectStore>) -> Arc<Repository> {
    let repo = Repository::init(store, "source", &key(), small_options()).await;
    Arc::new(repo.unwrap())
}

/// A fresh mirror of `source` in memory; returns its store and an open handle.
async fn mirror_of(source: &Repository) -> (Arc<dyn ObjectStore>, Arc<Repository>) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let options = InitOptions::new().with_params_from(source);
    let repo = Repository::init(store.clone(), "mirror", &mirror_key(), options)
        .await
        .unwrap();
    (store, Arc::new(repo))
}

async fn copy_all(source: &Arc<Repository>, mirror: &Arc<Repository>) -> CopyReport {
    let all = CopyOptions::builder().build().unwrap();
    copy(source.clone(), mirror.clone(), &all).await.unwrap()
}

/// `check --read-data` of a fresh handle on `store` finds no damage; returns its snapshots.
async fn checks_clean(store: &Arc<dyn ObjectStore>) -> usize {
    check_mirror(store).await.snapshots
}

/// `check --read-data` of a fresh handle on `store`, which must find no damage.
async fn check_mirror(store: &Arc<dyn ObjectStore>) -> backup_core::check::CheckReport {
    let repo = Repository::open(store.clone(), "mirror", &mirror_key())
        .await
        .unwrap();
    let options = CheckOptions::builder()
        .with_read_data(DataSubset::All)
        .build()
        .unwrap();
    let report = check(Arc::new(repo), &options).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    report
}

#[tokio::test]
async fn snapshots_are_selected_by_id_host_and_tag() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    write_sample_tree(&src);
    let store = Arc::new(InMemory::new());
    let source = source_repository(store).await;
    let web_daily = backup_as(&source, &src, "web", "daily").await;
    let db_daily = backup_as(&source, &src, "db", "daily").await;
    let web_weekly = backup_as(&source, &src, "web", "weekly").await;

    let (_, mirror) = mirror_of(&source).await;
    let only = |b: backup_core::copy::CopyOptionsBuilder| b.build().unwrap();
    let db = copy(
        source.clone(),
        mirror.clone(),
        &only(CopyOptions::builder().with_host("db")),
    )
    .await
    .unwrap();
    assert_eq!(db.copied, [db_daily.as_str()]);
    let weekly = CopyOptions::builder().with_host("web").with_tag("weekly");
    let weekly = copy(source.clone(), mirror.clone(), &only(weekly))
        .await
        .unwrap();
    assert_eq!(weekly.copied, [web_weekly.as_str()]);
    // Same data: the trees and chunks are all there already.
    assert_eq!((weekly.blobs_copied, weekly.packs_written), (0, 0));
    let latest = CopyOptions::builder()
        .with_snapshot("latest")
        .with_snapshot(&web_daily[..10]);
    let latest = copy(source.clone(), mirror.clone(), &only(latest))
        .await
        .unwrap();
    assert_eq!(latest.copied, [web_daily.as_str()]);
    assert_eq!(latest.already_present, [web_weekly.as_str()]);

    // `latest` is the newest snapshot the filters let through.
    let (_, fresh) = mirror_of(&source).await;
    let latest_db = CopyOptions::builder()
        .with_snapshot("latest")
        .with_host("db");
    let latest_db = copy(source.clone(), fresh, &only(latest_db)).await.unwrap();
    assert_eq!(latest_db.copied, [db_daily.as_str()]);

    let missing = CopyOptions::builder().with_snapshot("ffffffff");
    let missing = copy(source.clone(), mirror.clone(), &only(missing)).await;
    assert!(
        matches!(missing, Err(backup_core::Error::NotFound { .. })),
        "{missing:?}"
    );
    assert!(CopyOptions::builder().with_snapshot("").build().is_err());
}

/// Every point at which a copy can be cut off (after 0, 1, 2, ... objects written): the
/// mirror passes `check --read-data` with only whole snapshots in it, and a rerun completes.
#[tokio::test]
async fn a_copy_cut_off_anywhere_leaves_a_sound_mirror_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    write_sample_tree(&src);
    let source = source_repository(Arc::new(InMemory::new())).await;
    backup_as(&source, &src, "web", "daily").await;
    std::fs::write(src.join("dir/added.bin"), vec![7u8; 300_000]).unwrap();
    let newest = backup_as(&source, &src, "web", "daily").await;

    // How many objects a whole copy writes.
    let (store, _) = mirror_of(&source).await;
    let counting = Arc::new(CutAfter {
        inner: store,
        limit: usize::MAX,
        writes: AtomicUsize::new(0),
    });
    let mirror = Repository::open(counting.clone(), "mirror", &mirror_key()).await;
    let full = copy_all(&source, &Arc::new(mirror.unwrap())).await;
    let writes = counting.writes.load(Ordering::SeqCst);
    assert!(
        writes >= 6 && full.packs_written >= 4,
        "{writes} writes: {full:?}"
    );

    for limit in 0..writes {
        let (store, _) = mirror_of(&source).await;
        let cut = Arc::new(CutAfter {
            inner: store.clone(),
            limit,
            writes: AtomicUsize::new(0),
        });
        let mirror = Repository::open(cut, "mirror", &mirror_key()).await;
        let all = CopyOptions::builder().build().unwrap();
        let killed = copy(source.clone(), Arc::new(mirror.unwrap()), &all).await;
        assert!(killed.is_err(), "cut after {limit} writes: {killed:?}");
        let kept = checks_clean(&store).await;
        assert!(kept < 2, "cut after {limit} writes kept {kept} snapshots");

        let mirror = Repository::open(store.clone(), "mirror", &mirror_key()).await;
        let mirror = Arc::new(mirror.unwrap());
        let rerun = copy_all(&source, &mirror).await;
        assert_eq!(rerun.copied.len() + rerun.already_present.len(), 2);
        assert_eq!(rerun.already_present.len(), kept, "{rerun:?}");
        assert_eq!(checks_clean(&store).await, 2, "cut after {limit}");
        if limit == writes / 2 {
            let target = dir.path().join("restored");
            restore_all(mirror, &newest, &target).await;
            assert_same_tree(&src, &target.join("src"));
        }
    }
}

/// A flipped byte in a pack only the second snapshot uses: the first is copied, the second is
/// reported with the damaged pack and not copied, and the mirror passes `check`.
#[tokio::test]
async fn damaged_source_data_is_reported_and_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    std::fs::create_dir(&one).unwrap();
    write_sample_tree(&one);
    std::fs::create_dir(&two).unwrap();
    let noise: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    std::fs::write(two.join("only-here.bin"), noise).unwrap();
    let repo_dir = dir.path().join("source");
    let store = StoreOptions::new(repo_dir.to_string_lossy())
        .with_create(true)
        .build()
        .unwrap();
    let source = source_repository(store).await;
    let first = backup_as(&source, &one, "web", "daily").await;
    let packs_before = pack_files(&repo_dir);
    let second = backup_as(&source, &two, "web", "daily").await;
    let new_packs: Vec<_> = pack_files(&repo_dir)
        .into_iter()
        .filter(|p| !packs_before.contains(p))
        .collect();
    // The largest new pack holds the noise file's chunks.
    let victim = new_packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[100] ^= 0x20;
    std::fs::write(victim, bytes).unwrap();

    let (store, mirror) = mirror_of(&source).await;
    let report = copy_all(&source, &mirror).await;
    assert_eq!(report.copied, [first.as_str()]);
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].snapshot, second);
    let victim_name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        report.failed[0].error.contains(victim_name),
        "{}",
        report.failed[0].error
    );
    let checked = check_mirror(&store).await;
    assert_eq!(checked.snapshots, 1);
    // What was sent for the second snapshot before the damage was found is indexed.
    assert!(checked.unindexed_packs.is_empty(), "{checked:?}");
}

fn pack_files(repo: &Path) -> Vec<std::path::PathBuf> {
    let mut packs = Vec::new();
    for dir in std::fs::read_dir(repo.join("data")).unwrap() {
        for pack in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            packs.push(pack.unwrap().path());
        }
    }
    packs
}
