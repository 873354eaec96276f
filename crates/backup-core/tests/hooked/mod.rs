//! An in-memory object store whose puts and gets go through hooks a test overrides (a lost
//! answer, a slow and watched read), everything else passed straight through.

#![allow(dead_code, unreachable_pub)]

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result as StoreResult,
};

/// What a test changes; by default calls go straight to the store.
#[async_trait]
pub trait Hooks: std::fmt::Debug + Send + Sync + 'static {
    /// A put (`put_opts`).
    async fn put(
        &self,
        inner: &InMemory,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreResult<PutResult> {
        inner.put_opts(location, payload, opts).await
    }

    /// A get (`get_opts`; ranged reads come here too).
    async fn get(
        &self,
        inner: &InMemory,
        location: &ObjectPath,
        options: GetOptions,
    ) -> StoreResult<GetResult> {
        inner.get_opts(location, options).await
    }
}

/// [`InMemory`] with [`Hooks`].
#[derive(Debug, Default)]
pub struct Hooked<H> {
    pub inner: InMemory,
    pub hooks: H,
}

impl<H> std::fmt::Display for Hooked<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooked(InMemory)")
    }
}

#[async_trait]
impl<H: Hooks> ObjectStore for Hooked<H> {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreResult<PutResult> {
        self.hooks.put(&self.inner, location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> StoreResult<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &ObjectPath, options: GetOptions) -> StoreResult<GetResult> {
        self.hooks.get(&self.inner, location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, StoreResult<ObjectPath>>,
    ) -> BoxStream<'static, StoreResult<ObjectPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&ObjectPath>) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&ObjectPath>) -> StoreResult<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> StoreResult<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
