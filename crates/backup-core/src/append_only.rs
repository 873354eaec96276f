//! Append-only access: a store wrapper that adds objects but never deletes or replaces one, and
//! repositories opened through it.
//!
//! A host that backs up holds credentials for its repository; if it is broken into, whoever
//! holds them can erase the backups that would undo the damage. Opened through
//! [`AppendOnlyStore`] (the tool's `--append-only`), the host can still back up, restore, list
//! and check, but every request that would delete or replace an object is refused before it
//! reaches the store: deletes, overwriting and conditional-update puts, multipart uploads
//! (whose completion replaces the object), overwriting copies and renames (which delete their
//! source). Create-only puts and copies (`PutMode::Create`) pass, and the store itself refuses
//! them when the object exists. Forgetting snapshots, pruning and removing keys run elsewhere,
//! with full rights.
//!
//! This guards a handle, not the store: the wrapper cannot stop a thief who holds credentials
//! allowing deletes from using them directly. For that the credentials themselves must be
//! limited: an S3 policy granting `s3:PutObject` and `s3:GetObject`/`s3:ListBucket` but no
//! `s3:DeleteObject` (with object versioning or object lock, since a plain `PutObject` can
//! still overwrite), or a local repository reached through a daemon that runs this wrapper.
//! backup-core's repository format writes every object once (`PutMode::Create`), so nothing a
//! backup does needs more than this wrapper allows.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, Result as StoreResult,
};

use crate::cipher::KeySource;
use crate::error::{Error, Result};
use crate::repo::Repository;

/// Prefix of lock objects, which an append-only handle may replace and delete: a lock is no
/// part of the repository's history, and a backup must release the lock it took.
pub use crate::lock::LOCKS_PREFIX;

/// Why an [`AppendOnlyStore`] refused a request; the source of the
/// `object_store::Error::PermissionDenied` it returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the repository is opened append-only: {operation} refused")]
#[non_exhaustive]
pub struct AppendOnlyRefusal {
    /// What was refused (`delete`, `overwrite`, ...).
    pub operation: &'static str,
}

/// An [`ObjectStore`] that can add objects but never delete or replace one (see the module
/// docs); everything else passes through to the wrapped store.
///
/// ```
/// use std::sync::Arc;
/// use backup_core::AppendOnlyStore;
/// use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, path::Path};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = AppendOnlyStore::new(Arc::new(object_store::memory::InMemory::new()));
/// let name = Path::from("snapshots/one");
/// let create = PutOptions::from(PutMode::Create);
/// store.put_opts(&name, "first".into(), create).await.unwrap();
/// assert!(store.put(&name, "replaced".into()).await.is_err()); // an overwrite
/// assert!(store.delete(&name).await.is_err());
/// let kept = store.get(&name).await.unwrap().bytes().await.unwrap();
/// assert_eq!(&kept[..], b"first");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AppendOnlyStore {
    inner: Arc<dyn ObjectStore>,
    /// Prefixes (ending in `/`) under which objects may still be replaced and deleted.
    mutable: Vec<String>,
}

impl AppendOnlyStore {
    /// Wraps `inner`: nothing in it can be deleted or replaced through this handle.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        AppendOnlyStore {
            inner,
            mutable: Vec::new(),
        }
    }

    /// Lets objects under `prefix` (a directory such as `locks`) be replaced and deleted.
    pub fn with_mutable_prefix(mut self, prefix: &str) -> Self {
        self.mutable
            .push(format!("{}/", prefix.trim_end_matches('/')));
        self
    }

    fn is_mutable(&self, location: &Path) -> bool {
        is_under(&self.mutable, location)
    }
}

fn is_under(prefixes: &[String], location: &Path) -> bool {
    prefixes.iter().any(|p| location.as_ref().starts_with(p))
}

fn refused(operation: &'static str, location: &Path) -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: location.to_string(),
        source: Box::new(AppendOnlyRefusal { operation }),
    }
}

impl fmt::Display for AppendOnlyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppendOnly({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for AppendOnlyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreResult<PutResult> {
        match opts.mode {
            PutMode::Create => {}
            _ if self.is_mutable(location) => {}
            PutMode::Overwrite => return Err(refused("overwrite", location)),
            PutMode::Update(_) => return Err(refused("conditional update", location)),
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> StoreResult<Box<dyn MultipartUpload>> {
        // A multipart upload's completion replaces any object at its name: there is no
        // create-only form.
        if !self.is_mutable(location) {
            return Err(refused("multipart upload (may overwrite)", location));
        }
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> StoreResult<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> StoreResult<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, StoreResult<Path>>,
    ) -> BoxStream<'static, StoreResult<Path>> {
        let inner = self.inner.clone();
        let mutable = self.mutable.clone();
        locations
            .then(move |location| {
                let inner = inner.clone();
                let allowed = location
                    .as_ref()
                    .map(|l| is_under(&mutable, l))
                    .unwrap_or(false);
                async move {
                    let location = location?;
                    if !allowed {
                        return Err(refused("delete", &location));
                    }
                    inner.delete(&location).await.map(|()| location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> StoreResult<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> StoreResult<()> {
        if options.mode == CopyMode::Overwrite && !self.is_mutable(to) {
            return Err(refused("overwriting copy", to));
        }
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> StoreResult<()> {
        // A rename deletes its source (and may replace its target).
        if !(self.is_mutable(from) && self.is_mutable(to)) {
            return Err(refused("rename", from));
        }
        self.inner.rename_opts(from, to, options).await
    }
}

impl Repository {
    /// Opens the repository through an [`AppendOnlyStore`] (which may still replace and delete
    /// lock objects, under [`LOCKS_PREFIX`]): backups, restores, listings and checks work;
    /// [`Repository::forget`], key removal and anything else that deletes objects fail with
    /// [`Error::AppendOnly`] before touching the store, and the store refuses any delete or
    /// overwrite that gets past that.
    pub async fn open_append_only(
        store: Arc<dyn ObjectStore>,
        location: impl Into<String>,
        key: &KeySource,
    ) -> Result<Repository> {
        let guarded = AppendOnlyStore::new(store).with_mutable_prefix(LOCKS_PREFIX);
        let mut repo = Repository::open(Arc::new(guarded), location, key).await?;
        repo.append_only = true;
        Ok(repo)
    }

    /// Whether this handle was opened with [`Repository::open_append_only`].
    pub fn is_append_only(&self) -> bool {
        self.append_only
    }

    /// [`Error::AppendOnly`] when this handle is append-only: called first by every operation
    /// that deletes or replaces objects.
    pub(crate) fn refuse_if_append_only(&self, operation: &'static str) -> Result<()> {
        if self.append_only {
            return Err(Error::AppendOnly {
                location: self.location().to_string(),
                operation,
            });
        }
        Ok(())
    }
}
