//! Retries with backoff, and a timeout on every call, around any object store.
//!
//! [`RetryingStore`] wraps an [`ObjectStore`]: a call that fails with a transient error (a
//! timeout, a reset or refused connection, an interrupted transfer) is tried again after an exponential backoff with full jitter, at most
//! [`RetryPolicy::with_max_retries`] times; any other error (not found, already exists,
//! permission denied, a full disk) is returned at once. Every call, and every wait for the next
//! piece of a download or listing, is bounded by [`RetryPolicy::with_timeout`], so a store that
//! never answers gives an error instead of a hang. An error given up on names the object and the
//! attempts made.
//!
//! A download cut part-way is resumed from the byte where it stopped (a range request bound
//! to the object's ETag). A create-only put that failed and is retried may meet the object its
//! own earlier attempt left: when that object holds exactly the payload the put succeeded; when
//! it is a truncated copy of it (a partial write) it is replaced; anything else is a genuine
//! `AlreadyExists`. Likewise a conditional update (`PutMode::Update`) retried after an attempt
//! that was applied but answered with an error meets a changed ETag: when the object holds
//! exactly the payload, the update succeeded. A put given up on removes a truncated copy of its
//! payload that it left.
//!
//! [`crate::StoreOptions::build`] applies this wrapper to every store it opens. For S3,
//! object_store's HTTP client already retries (HTTP 5xx, 429, 408, connection errors, and it
//! resumes cut downloads), so the policy is handed to that client instead and this layer adds only the
//! deadlines, the put reconciliation and the error naming: nothing is retried twice.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, Result as StoreResult,
};

use crate::error::{Error, Result};

/// How a [`RetryingStore`] retries and how long it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(15),
            timeout: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Five retries, backoff from 200 ms doubling up to 15 s (full jitter), 300 s per call.
    pub fn new() -> Self {
        Self::default()
    }

    /// Retries after the first attempt (0: none).
    pub fn with_max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The first backoff and the most any backoff grows to (each retry doubles it; the wait is
    /// drawn uniformly below it).
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// The longest one call (or one wait for the next piece of a download or listing) may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the policy.
    pub fn build(self) -> Result<Self> {
        if self.timeout.is_zero() {
            return Err(Error::Config("store timeout must be over 0".into()));
        }
        if self.initial_backoff > self.max_backoff {
            return Err(Error::Config(format!(
                "initial backoff {:?} is over the maximum {:?}",
                self.initial_backoff, self.max_backoff
            )));
        }
        Ok(self)
    }

    /// Retries after the first attempt.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The first backoff.
    pub fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }

    /// The longest backoff.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// An error given up on: names the operation, the object and the attempts.
#[derive(Debug)]
struct GaveUp {
    what: String,
    attempts: u32,
    source: object_store::Error,
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.attempts > 1 {
            write!(f, "{}: gave up after {} attempts", self.what, self.attempts)
        } else {
            write!(f, "{}", self.what)
        }
    }
}

impl std::error::Error for GaveUp {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A call that did not answer in time.
#[derive(Debug)]
struct NoAnswer(Duration);

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no answer within {:?}", self.0)
    }
}

impl std::error::Error for NoAnswer {}

const STORE: &str = "RetryingStore";

fn timed_out(limit: Duration) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            NoAnswer(limit),
        )),
    }
}

/// Whether `error` is worth another attempt: a timeout, or a connection or transfer failure
/// (object_store's HTTP client, which retries HTTP 5xx, 408 and 429 itself, does not expose
/// the status of a request it gave up on).
pub fn is_transient(error: &object_store::Error) -> bool {
    use std::io::ErrorKind as K;
    let object_store::Error::Generic { source, .. } = error else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                K::TimedOut
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::ConnectionRefused
                    | K::BrokenPipe
                    | K::UnexpectedEof
                    | K::Interrupted
                    | K::WouldBlock
            );
        }
        if let Some(http) = e.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as H;
            return matches!(
                http.kind(),
                H::Connect | H::Request | H::Timeout | H::Interrupted
            );
        }
        cause = e.source();
    }
    false
}

/// An object store whose calls are retried on transient errors and bounded in time; see the
/// [module documentation](self).
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
    backoff: Backoff,
}

/// The retry loop's policy and its jitter source, shared by the streams a store hands out.
#[derive(Clone)]
struct Backoff {
    policy: RetryPolicy,
    jitter: Arc<AtomicU64>,
}

impl fmt::Debug for RetryingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryingStore")
            .field("inner", &self.inner)
            .field("policy", &self.backoff.policy)
            .finish()
    }
}

impl fmt::Display for RetryingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryingStore({})", self.inner)
    }
}

impl RetryingStore {
    /// Wraps `inner`. Calls need a tokio runtime with its time driver (`enable_all`).
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        RetryingStore {
            inner,
            backoff: Backoff {
                policy,
                jitter: Arc::new(AtomicU64::new(seed)),
            },
        }
    }
}

impl Backoff {
    /// The wait before retry `n` (1-based): uniform in `0..=min(max, initial * 2^(n-1))`.
    fn delay(&self, n: u32) -> Duration {
        let cap = self
            .policy
            .initial_backoff
            .saturating_mul(1u32 << (n - 1).min(20))
            .min(self.policy.max_backoff);
        let draw = splitmix(
            self.jitter
                .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed),
        );
        cap.mul_f64((draw >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// Runs `call` until it succeeds, fails for good, or the retries are spent; each attempt
    /// bounded by the timeout. `what` names the operation and object in the final error.
    async fn retry<T, F, Fut>(&self, what: impl Fn() -> String, mut call: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match tokio::time::timeout(self.policy.timeout, call()).await {
                Ok(result) => result,
                Err(_) => Err(timed_out(self.policy.timeout)),
            };
            match result {
                Ok(value) => return Ok(value),
                Err(e) if is_transient(&e) && attempt <= self.policy.max_retries => {
                    tracing::debug!("{}: attempt {attempt} failed, retrying: {e}", what());
                    tokio::time::sleep(self.delay(attempt)).await;
                }
                Err(e) if is_transient(&e) => return Err(gave_up(what(), attempt, e)),
                Err(e) => return Err(e),
            }
        }
    }
}

impl RetryingStore {
    /// After a failed create-only put was retried and met an existing object: whether that
    /// object is this payload (true), a truncated copy of it (replaced), or someone else's.
    async fn reconcile(&self, location: &Path, payload: &PutPayload) -> StoreResult<Reconciled> {
        let existing = match self.inner.get_opts(location, GetOptions::default()).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(Reconciled::Gone),
            Err(e) => return Err(e),
        };
        let ours = Bytes::from(payload.clone());
        Ok(if existing == ours {
            Reconciled::Same
        } else if existing.len() < ours.len() && ours.starts_with(&existing) {
            Reconciled::Truncated
        } else {
            Reconciled::Other
        })
    }
}

impl RetryingStore {
    /// After a put given up on: removes the truncated copy of `payload` an attempt may have
    /// left (a store without atomic puts), trying harder than the put did, since a truncated
    /// object left behind reads as damage. Nobody else's object is a truncated copy of this
    /// payload, so nothing else is ever removed.
    async fn remove_partial_write(&self, location: &Path, payload: &PutPayload) {
        let attempts = 2 * (self.backoff.policy.max_retries + 1);
        for attempt in 1..=attempts {
            let step = async {
                match self.reconcile(location, payload).await? {
                    Reconciled::Truncated => {
                        match self.inner.delete_stream(single(location)).next().await {
                            Some(Err(e)) => Err(e),
                            _ => Ok(()),
                        }
                    }
                    _ => Ok(()),
                }
            };
            match tokio::time::timeout(self.backoff.policy.timeout, step).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) if !is_transient(&e) => return,
                _ => tokio::time::sleep(self.backoff.delay(attempt)).await,
            }
        }
        tracing::warn!("{location}: could not remove what a failed put may have left");
    }
}

enum Reconciled {
    Same,
    Truncated,
    Other,
    Gone,
}

fn gave_up(what: String, attempts: u32, source: object_store::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(GaveUp {
            what,
            attempts,
            source,
        }),
    }
}

/// SplitMix64: a well-mixed 64-bit value from a counter (jitter and fault draws).
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Backoff {
    /// A listing whose every item is awaited at most the timeout, started again (after a
    /// backoff) when it fails transiently before its first item; an error after items came
    /// through ends it (restarting would repeat them).
    fn retrying_list(
        &self,
        start: impl Fn() -> BoxStream<'static, StoreResult<ObjectMeta>> + Send + 'static,
    ) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        let backoff = self.clone();
        let limit = self.policy.timeout;
        let first = start();
        futures::stream::unfold(Some((first, start, false, 0u32)), move |state| {
            let backoff = backoff.clone();
            async move {
                let (mut stream, start, mut yielded, mut attempts) = state?;
                loop {
                    let item = match tokio::time::timeout(limit, stream.next()).await {
                        Ok(None) => return None,
                        Ok(Some(item)) => item,
                        Err(_) => Err(timed_out(limit)),
                    };
                    match item {
                        Ok(meta) => {
                            yielded = true;
                            return Some((Ok(meta), Some((stream, start, yielded, attempts))));
                        }
                        Err(e)
                            if is_transient(&e)
                                && !yielded
                                && attempts < backoff.policy.max_retries =>
                        {
                            attempts += 1;
                            tokio::time::sleep(backoff.delay(attempts)).await;
                            stream = start();
                        }
                        Err(e) if is_transient(&e) => {
                            let e = gave_up("LIST".into(), attempts + 1, e);
                            return Some((Err(e), None));
                        }
                        Err(e) => return Some((Err(e), None)),
                    }
                }
            }
        })
        .boxed()
    }
}

/// Wraps a stream so that waiting longer than `limit` for its next item is an error.
fn idle_limited<T: Send + 'static>(
    stream: BoxStream<'static, StoreResult<T>>,
    limit: Duration,
) -> BoxStream<'static, StoreResult<T>> {
    futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(limit, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((Err(timed_out(limit)), None)),
        }
    })
    .boxed()
}

#[async_trait]
impl ObjectStore for RetryingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreResult<PutResult> {
        let create_only = matches!(opts.mode, PutMode::Create);
        let mut failed_before = false;
        let result = self
            .backoff
            .retry(
                || format!("PUT {location}"),
                || {
                    let (payload, opts) = (payload.clone(), opts.clone());
                    let retried = std::mem::replace(&mut failed_before, true);
                    async move {
                        match self
                            .inner
                            .put_opts(location, payload.clone(), opts.clone())
                            .await
                        {
                            Err(object_store::Error::AlreadyExists { path, source })
                                if retried && create_only =>
                            {
                                match self.reconcile(location, &payload).await? {
                                    Reconciled::Same => Ok(PutResult {
                                        e_tag: None,
                                        version: None,
                                        extensions: Default::default(),
                                    }),
                                    Reconciled::Gone => {
                                        self.inner.put_opts(location, payload, opts).await
                                    }
                                    Reconciled::Truncated => {
                                        let overwrite = PutOptions {
                                            mode: PutMode::Overwrite,
                                            ..opts
                                        };
                                        self.inner.put_opts(location, payload, overwrite).await
                                    }
                                    Reconciled::Other => {
                                        Err(object_store::Error::AlreadyExists { path, source })
                                    }
                                }
                            }
                            // A conditional update whose first attempt was applied but
                            // answered with an error: the object now holds this payload.
                            Err(e @ object_store::Error::Precondition { .. })
                                if retried && matches!(opts.mode, PutMode::Update(_)) =>
                            {
                                match self.reconcile(location, &payload).await? {
                                    Reconciled::Same => Ok(PutResult {
                                        e_tag: None,
                                        version: None,
                                        extensions: Default::default(),
                                    }),
                                    _ => Err(e),
                                }
                            }
                            other => other,
                        }
                    }
                },
            )
            .await;
        if let Err(e) = &result
            && is_transient_or_gave_up(e)
        {
            self.remove_partial_write(location, &payload).await;
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> StoreResult<Box<dyn MultipartUpload>> {
        self.backoff
            .retry(
                || format!("start multipart PUT {location}"),
                || self.inner.put_multipart_opts(location, opts.clone()),
            )
            .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> StoreResult<GetResult> {
        let result = self
            .backoff
            .retry(
                || format!("GET {location}"),
                || self.inner.get_opts(location, options.clone()),
            )
            .await?;
        if options.head {
            return Ok(result);
        }
        let GetResult {
            payload,
            meta,
            range,
            attributes,
            extensions,
        } = result;
        let payload = match payload {
            GetResultPayload::Stream(stream) => {
                GetResultPayload::Stream(self.resuming(location, &options, &meta, &range, stream))
            }
            file => file,
        };
        Ok(GetResult {
            payload,
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> StoreResult<Vec<Bytes>> {
        self.backoff
            .retry(
                || format!("GET {location} ({} ranges)", ranges.len()),
                || self.inner.get_ranges(location, ranges),
            )
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, StoreResult<Path>>,
    ) -> BoxStream<'static, StoreResult<Path>> {
        let timeout = self.backoff.policy.timeout;
        if self.backoff.policy.max_retries == 0 {
            // The inner store's own client retries (S3's batches its deletes).
            return idle_limited(self.inner.delete_stream(locations), timeout);
        }
        let (inner, backoff) = (self.inner.clone(), self.backoff.clone());
        locations
            .map(move |location| {
                let (inner, backoff) = (inner.clone(), backoff.clone());
                async move {
                    let location = location?;
                    backoff
                        .retry(
                            || format!("DELETE {location}"),
                            || async {
                                match inner.delete_stream(single(&location)).next().await {
                                    Some(result) => result.map(|_| ()),
                                    None => Ok(()),
                                }
                            },
                        )
                        .await?;
                    Ok(location)
                }
            })
            .buffered(16)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        let (inner, prefix) = (self.inner.clone(), prefix.cloned());
        self.backoff
            .retrying_list(move || inner.list(prefix.as_ref()))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        let (inner, prefix, offset) = (self.inner.clone(), prefix.cloned(), offset.clone());
        self.backoff
            .retrying_list(move || inner.list_with_offset(prefix.as_ref(), &offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> StoreResult<ListResult> {
        self.backoff
            .retry(
                || format!("LIST {}", prefix.map_or("/", |p| p.as_ref())),
                || self.inner.list_with_delimiter(prefix),
            )
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> StoreResult<()> {
        self.backoff
            .retry(
                || format!("COPY {from} to {to}"),
                || self.inner.copy_opts(from, to, options.clone()),
            )
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> StoreResult<()> {
        self.backoff
            .retry(
                || format!("RENAME {from} to {to}"),
                || self.inner.rename_opts(from, to, options.clone()),
            )
            .await
    }
}

/// A stream of one location, for a single delete through `delete_stream`.
pub(crate) fn single(location: &Path) -> BoxStream<'static, StoreResult<Path>> {
    futures::stream::once(std::future::ready(Ok(location.clone()))).boxed()
}

fn is_transient_or_gave_up(e: &object_store::Error) -> bool {
    if is_transient(e) {
        return true;
    }
    matches!(e, object_store::Error::Generic { store, .. } if *store == STORE)
}

impl RetryingStore {
    /// A download stream that waits at most the timeout for each piece and, when cut by a
    /// transient error, resumes from where it stopped (bound to the object's ETag).
    fn resuming(
        &self,
        location: &Path,
        options: &GetOptions,
        meta: &ObjectMeta,
        range: &Range<u64>,
        stream: BoxStream<'static, StoreResult<Bytes>>,
    ) -> BoxStream<'static, StoreResult<Bytes>> {
        struct State {
            store: Arc<dyn ObjectStore>,
            location: Path,
            options: GetOptions,
            stream: BoxStream<'static, StoreResult<Bytes>>,
            next: u64,
            end: u64,
            resumes: u32,
        }
        let mut options = options.clone();
        if options.if_match.is_none() {
            options.if_match = meta.e_tag.clone();
        }
        let state = State {
            store: self.inner.clone(),
            location: location.clone(),
            options,
            stream,
            next: range.start,
            end: range.end,
            resumes: 0,
        };
        let backoff = self.backoff.clone();
        let policy = backoff.policy;
        futures::stream::unfold(Some(state), move |state| {
            let backoff = backoff.clone();
            async move {
                let mut s = state?;
                loop {
                    let item = match tokio::time::timeout(policy.timeout, s.stream.next()).await {
                        Ok(None) if s.next >= s.end => return None,
                        // A body that ends short is a cut connection, never a shorter object.
                        Ok(None) => Err(object_store::Error::Generic {
                            store: STORE,
                            source: Box::new(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                format!("body ended at byte {} of {}", s.next, s.end),
                            )),
                        }),
                        Ok(Some(item)) => item,
                        Err(_) => Err(timed_out(policy.timeout)),
                    };
                    match item {
                        Ok(bytes) => {
                            s.next += bytes.len() as u64;
                            return Some((Ok(bytes), Some(s)));
                        }
                        Err(e)
                            if is_transient(&e)
                                && s.resumes < policy.max_retries
                                && s.next < s.end =>
                        {
                            s.resumes += 1;
                            tokio::time::sleep(backoff.delay(s.resumes)).await;
                            let mut options = s.options.clone();
                            options.range = Some(GetRange::Bounded(s.next..s.end));
                            let reopened = tokio::time::timeout(
                                policy.timeout,
                                s.store
                                    .get_opts(&s.location, options)
                                    .map(|r| r.map(GetResult::into_stream)),
                            )
                            .await;
                            match reopened {
                                Ok(Ok(stream)) => s.stream = stream,
                                Ok(Err(e)) if is_transient(&e) => {
                                    s.stream =
                                        futures::stream::once(std::future::ready(Err(e))).boxed();
                                }
                                Ok(Err(e)) => return Some((Err(e), None)),
                                Err(_) => {
                                    let what = format!("GET {} (resuming)", s.location);
                                    let e = gave_up(what, s.resumes, timed_out(policy.timeout));
                                    return Some((Err(e), None));
                                }
                            }
                        }
                        Err(e) if is_transient(&e) => {
                            let what = format!("GET {} (reading the body)", s.location);
                            return Some((Err(gave_up(what, s.resumes + 1, e)), None));
                        }
                        Err(e) => return Some((Err(e), None)),
                    }
                }
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let store = RetryingStore::new(
            Arc::new(object_store::memory::InMemory::new()),
            RetryPolicy::new().with_backoff(Duration::from_millis(100), Duration::from_secs(1)),
        );
        for n in 1..30 {
            let cap = Duration::from_millis(100 << (n - 1).min(4)).min(Duration::from_secs(1));
            for _ in 0..50 {
                assert!(store.backoff.delay(n) <= cap, "retry {n}");
            }
        }
        // Full jitter: the draws spread over the range rather than sitting at the cap.
        let draws: Vec<Duration> = (0..200).map(|_| store.backoff.delay(5)).collect();
        assert!(draws.iter().any(|d| *d < Duration::from_millis(500)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(500)));
    }

    #[test]
    fn transient_errors_are_told_from_persistent_ones() {
        let io = |kind| object_store::Error::Generic {
            store: "test",
            source: Box::new(std::io::Error::new(kind, "x")),
        };
        assert!(is_transient(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(is_transient(&io(std::io::ErrorKind::TimedOut)));
        assert!(!is_transient(&io(std::io::ErrorKind::PermissionDenied)));
        assert!(!is_transient(&io(std::io::ErrorKind::StorageFull)));
        assert!(!is_transient(&object_store::Error::NotFound {
            path: "x".into(),
            source: "gone".into(),
        }));
        let http = object_store::Error::Generic {
            store: "test",
            source: Box::new(object_store::client::HttpError::new(
                object_store::client::HttpErrorKind::Interrupted,
                std::io::Error::other("cut"),
            )),
        };
        assert!(is_transient(&http));
    }
}
