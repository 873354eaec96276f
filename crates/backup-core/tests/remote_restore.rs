//! Restores from a remote store (one whose reads are streams, with a round trip each) read only
//! the byte ranges they need, merged, several at once: no whole-pack GETs, fewer GETs than
//! chunks, more than the restore threads' worth in flight, a partial restore reading a part of
//! the data, and a second restore over an intact target (every file skipped) finishing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
mod hooked;

use async_trait::async_trait;
use backup_core::conformance::small_options;
use backup_core::{
    BackupOptions, KeySource, NoProgress, Repository, RestoreOptions, compare_trees, restore,
};
use common::noise;
use futures::TryStreamExt;
use hooked::{Hooked, Hooks};
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, GetResult, ObjectStore, Result as StoreResult};

/// Reads of packs, once `slow`, take a round trip and are logged.
#[derive(Debug, Default)]
struct Remote {
    slow: AtomicBool,
    /// Pack reads: (object, range asked for, or None for the whole object).
    reads: Mutex<Vec<(String, Option<GetRange>)>>,
    bytes: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

#[async_trait]
impl Hooks for Remote {
    async fn get(
        &self,
        inner: &InMemory,
        location: &ObjectPath,
        options: GetOptions,
    ) -> StoreResult<GetResult> {
        if !location.as_ref().starts_with("data/") || !self.slow.load(Ordering::SeqCst) {
            return inner.get_opts(location, options).await;
        }
        self.reads
            .lock()
            .unwrap()
            .push((location.to_string(), options.range.clone()));
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(15)).await;
        let result = inner.get_opts(location, options).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let result = result?;
        self.bytes
            .fetch_add(result.range.end - result.range.start, Ordering::SeqCst);
        Ok(result)
    }
}

fn write_tree(root: &Path) {
    for i in 0..6u64 {
        std::fs::write(
            root.join(format!("big-{i}.bin")),
            noise(1000 + 2 * i, 500_000),
        )
        .unwrap();
    }
    let small = root.join("small");
    std::fs::create_dir(&small).unwrap();
    for i in 0..40u64 {
        std::fs::write(
            small.join(format!("{i}.php")),
            noise(5000 + 2 * i, 2_000 + i as usize * 37),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_read_merged_ranges_several_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("site");
    std::fs::create_dir(&src).unwrap();
    write_tree(&src);
    let remote = Arc::new(Hooked::<Remote>::default());
    let key = KeySource::passphrase("pw");
    // An s3:// location: trees are read in one range per pack too.
    let repo = Repository::init(remote.clone(), "s3://bucket/repo", &key, small_options());
    let repo = Arc::new(repo.await.unwrap());
    let options = BackupOptions::builder([&src]).build().unwrap();
    let (id, snapshot) = backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
        .await
        .unwrap();
    let packs: BTreeMap<String, u64> = remote
        .inner
        .list(Some(&ObjectPath::from("data")))
        .map_ok(|m| (m.location.to_string(), m.size))
        .try_collect()
        .await
        .unwrap();
    let stored: u64 = packs.values().sum();

    remote.hooks.slow.store(true, Ordering::SeqCst);
    let target = dir.path().join("restored");
    let restore_options = RestoreOptions::builder(&target)
        .with_threads(2)
        .build()
        .unwrap();
    let summary = tokio::time::timeout(
        Duration::from_secs(120),
        restore(
            repo.clone(),
            &id,
            restore_options.clone(),
            Arc::new(NoProgress),
        ),
    )
    .await
    .expect("the restore finishes")
    .unwrap();
    assert_eq!(summary.files_restored, 46);
    assert!(
        compare_trees(&src, &target.join("site"))
            .unwrap()
            .is_empty()
    );

    let reads = std::mem::take(&mut *remote.hooks.reads.lock().unwrap());
    let whole: Vec<_> = reads.iter().filter(|(_, r)| r.is_none()).collect();
    assert!(whole.is_empty(), "whole-pack reads: {whole:?}");
    let chunks = snapshot.summary.chunks_new;
    assert!(
        (reads.len() as u64) < chunks / 2,
        "{} reads for {chunks} chunks in {} packs: not merged",
        reads.len(),
        packs.len()
    );
    let max = remote.hooks.max_in_flight.load(Ordering::SeqCst);
    assert!(
        max > 2,
        "at most {max} reads in flight with 2 restore threads"
    );
    let fetched = remote.hooks.bytes.swap(0, Ordering::SeqCst);
    assert!(
        fetched <= stored + stored / 10,
        "{fetched} bytes read of {stored} stored"
    );

    // Part of the snapshot: a part of the data is read.
    let part = dir.path().join("part");
    let part_options = RestoreOptions::builder(&part)
        .with_sub_path("site/big-3.bin")
        .build()
        .unwrap();
    restore(repo.clone(), &id, part_options, Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(part.join("big-3.bin")).unwrap(),
        std::fs::read(src.join("big-3.bin")).unwrap()
    );
    let fetched = remote.hooks.bytes.swap(0, Ordering::SeqCst);
    assert!(
        fetched < stored / 3,
        "{fetched} bytes read of {stored} stored for one file of six"
    );

    // Again over the intact target: every file is skipped, and the restore still ends.
    let again = tokio::time::timeout(
        Duration::from_secs(120),
        restore(repo, &id, restore_options, Arc::new(NoProgress)),
    )
    .await
    .expect("a restore over an intact target finishes")
    .unwrap();
    assert_eq!((again.files_restored, again.files_unchanged), (0, 46));
}

/// Small files with the same content in directories restored far apart (a site copied four
/// times, with other sites between): the blob groups they share are read from the store once,
/// though the restorer's few decoded groups moved on long before the next copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_shared_by_files_restored_apart_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("sites");
    for round in 0..4u64 {
        let copy = src.join(format!("{round}-copy"));
        let other = src.join(format!("{round}-other"));
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        for i in 0..120u64 {
            std::fs::write(copy.join(format!("{i}.php")), noise(7000 + i, 2_500)).unwrap();
        }
        for i in 0..300u64 {
            let seed = 20_000 + round * 1000 + i;
            std::fs::write(other.join(format!("{i}.php")), noise(seed, 2_500)).unwrap();
        }
    }
    let remote = Arc::new(Hooked::<Remote>::default());
    let key = KeySource::passphrase("pw");
    let repo = Repository::init(remote.clone(), "s3://bucket/repo", &key, small_options());
    let repo = Arc::new(repo.await.unwrap());
    let options = BackupOptions::builder([&src]).build().unwrap();
    let (id, _) = backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
        .await
        .unwrap();
    let stored: u64 = remote
        .inner
        .list(Some(&ObjectPath::from("data")))
        .map_ok(|m| m.size)
        .try_collect::<Vec<u64>>()
        .await
        .unwrap()
        .iter()
        .sum();

    remote.hooks.slow.store(true, Ordering::SeqCst);
    let target = dir.path().join("restored");
    let options = RestoreOptions::builder(&target)
        .with_threads(2)
        .build()
        .unwrap();
    let summary = tokio::time::timeout(
        Duration::from_secs(120),
        restore(repo.clone(), &id, options, Arc::new(NoProgress)),
    )
    .await
    .expect("the restore finishes")
    .unwrap();
    assert_eq!(summary.files_restored, 4 * 420);
    assert!(
        compare_trees(&src, &target.join("sites"))
            .unwrap()
            .is_empty()
    );
    // Each copy after the first would read the shared groups again (about a fifth more bytes).
    // The tree loads read ranges starting at a tree (data frames between trees come along):
    // among the other reads, the restore's, no data frame may be read twice.
    let blobs = backup_core::ops::list_blobs(&repo).await.unwrap();
    let tree_starts: std::collections::BTreeSet<(String, u64)> = blobs
        .iter()
        .filter(|b| b.kind == backup_core::format::BlobKind::Tree)
        .map(|b| (b.pack.clone(), u64::from(b.offset)))
        .collect();
    let reads: Vec<(String, Option<GetRange>)> = remote
        .hooks
        .reads
        .lock()
        .unwrap()
        .iter()
        .filter(|(location, range)| match range {
            Some(GetRange::Bounded(r)) => !tree_starts.contains(&(location.clone(), r.start)),
            _ => true,
        })
        .cloned()
        .collect();
    let frames: std::collections::BTreeSet<(String, u64, u64)> = blobs
        .iter()
        .filter(|b| b.kind == backup_core::format::BlobKind::Data)
        .map(|b| (b.pack.clone(), u64::from(b.offset), u64::from(b.length)))
        .collect();
    for (pack, offset, length) in &frames {
        let times = reads
            .iter()
            .filter(|(location, range)| {
                location == pack
                    && matches!(range, Some(GetRange::Bounded(r))
                        if r.start <= *offset && offset + length <= r.end)
            })
            .count();
        assert!(
            times <= 1,
            "data frame {pack} at {offset} read {times} times"
        );
    }
    let fetched = remote.hooks.bytes.load(Ordering::SeqCst);
    assert!(
        fetched <= 2 * stored,
        "{fetched} bytes read of {stored} stored"
    );
}
