//! Opening a repository and listing its snapshots load objects a bounded number at a time, not
//! all at once (a repository with thousands of index objects would otherwise open thousands of
//! requests or files together).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result as StoreResult,
};

use backup_core::{InitOptions, KeySource, Repository};

/// An in-memory store whose gets take a moment, counting how many are in flight at most.
#[derive(Debug, Default)]
struct CountingStore {
    inner: InMemory,
    in_flight: AtomicUsize,
    most: AtomicUsize,
}

impl std::fmt::Display for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CountingStore")
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> StoreResult<PutResult> {
        self.inner.put_opts(l, p, o).await
    }
    async fn put_multipart_opts(
        &self,
        l: &Path,
        o: PutMultipartOptions,
    ) -> StoreResult<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(l, o).await
    }
    async fn get_opts(&self, l: &Path, o: GetOptions) -> StoreResult<GetResult> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let result = self.inner.get_opts(l, o).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
    async fn get_ranges(&self, l: &Path, r: &[Range<u64>]) -> StoreResult<Vec<Bytes>> {
        self.inner.get_ranges(l, r).await
    }
    fn delete_stream(
        &self,
        l: BoxStream<'static, StoreResult<Path>>,
    ) -> BoxStream<'static, StoreResult<Path>> {
        self.inner.delete_stream(l)
    }
    fn list(&self, p: Option<&Path>) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        self.inner.list(p)
    }
    fn list_with_offset(
        &self,
        p: Option<&Path>,
        o: &Path,
    ) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        self.inner.list_with_offset(p, o)
    }
    async fn list_with_delimiter(&self, p: Option<&Path>) -> StoreResult<ListResult> {
        self.inner.list_with_delimiter(p).await
    }
    async fn copy_opts(&self, f: &Path, t: &Path, o: CopyOptions) -> StoreResult<()> {
        self.inner.copy_opts(f, t, o).await
    }
    async fn rename_opts(&self, f: &Path, t: &Path, o: RenameOptions) -> StoreResult<()> {
        self.inner.rename_opts(f, t, o).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_and_snapshot_objects_load_a_bounded_number_at_a_time() {
    let store = Arc::new(CountingStore::default());
    let key = KeySource::passphrase("bounded");
    Repository::init(store.clone(), "counting", &key, InitOptions::new())
        .await
        .unwrap();
    // 200 index and 200 snapshot objects (sealed for other names, so each is loaded, fails
    // authentication and is skipped: the loads are what is counted).
    for dir in ["index", "snapshots"] {
        for i in 0..200u32 {
            let name = Path::from(format!("{dir}/{i:032x}"));
            store.put(&name, vec![0u8; 200].into()).await.unwrap();
        }
    }
    store.most.store(0, Ordering::SeqCst);
    let repo = Repository::open(store.clone(), "counting", &key)
        .await
        .unwrap();
    assert!(repo.snapshots().await.unwrap().is_empty());
    assert_eq!(repo.skipped_objects().len(), 400);
    let most = store.most.load(Ordering::SeqCst);
    assert!(most > 1, "loads ran one at a time");
    assert!(most <= 32, "{most} loads at once");
}
