//! An object store that misbehaves on purpose, for tests (feature `fault-injection`).
//!
//! [`FaultStore`] wraps any [`ObjectStore`] and, on each call, may inject:
//!
//! * an **error** (a reset connection or a timeout: transient, so a [`crate::retry::RetryingStore`]
//!   retries it), before the call reaches the inner store;
//! * **latency** before the call;
//! * a **cut connection**: a GET whose body stops part-way with a reset, or a PUT whose upload
//!   is cut (nothing is stored);
//! * a **partial write**: a PUT that leaves a truncated object under its name, then fails;
//! * a **lost reply**: a PUT that is stored whole, then fails (the answer never came back);
//! * a **hang**: a call that never answers;
//! * **persistent** errors (permission denied) for every object under chosen prefixes.
//!
//! Every decision is a hash of the seed, the operation, the object's name and how many times
//! that operation was made on that object before, so a run is repeatable from its seed whatever
//! order concurrent calls come in.
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::faults::{FaultConfig, FaultStore};
//! use object_store::{ObjectStoreExt, memory::InMemory, path::Path};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let faults = FaultConfig::new(7).with_error_rate(1.0).build().unwrap();
//! let store = FaultStore::new(Arc::new(InMemory::new()), faults);
//! assert!(store.put(&Path::from("a"), "x".into()).await.is_err());
//! assert_eq!(store.injected().errors, 1);
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result as StoreResult,
};

use crate::error::{Error, Result};
use crate::retry::{single, splitmix};

/// What a [`FaultStore`] injects, and how often (each rate is a probability per call, 0 to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    seed: u64,
    error_rate: f64,
    cut_rate: f64,
    partial_write_rate: f64,
    lost_reply_rate: f64,
    latency_rate: f64,
    max_latency: Duration,
    hang_rate: f64,
    persistent: Vec<String>,
}

impl FaultConfig {
    /// No faults yet; decisions drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        FaultConfig {
            seed,
            error_rate: 0.0,
            cut_rate: 0.0,
            partial_write_rate: 0.0,
            lost_reply_rate: 0.0,
            latency_rate: 0.0,
            max_latency: Duration::ZERO,
            hang_rate: 0.0,
            persistent: Vec::new(),
        }
    }

    /// Calls failing with a transient error before they reach the store.
    pub fn with_error_rate(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    /// GET bodies cut part-way and PUT uploads cut (nothing stored).
    pub fn with_cut_rate(mut self, rate: f64) -> Self {
        self.cut_rate = rate;
        self
    }

    /// PUTs that leave a truncated object, then fail.
    pub fn with_partial_write_rate(mut self, rate: f64) -> Self {
        self.partial_write_rate = rate;
        self
    }

    /// PUTs that store the whole object, then fail as if the reply were lost.
    pub fn with_lost_reply_rate(mut self, rate: f64) -> Self {
        self.lost_reply_rate = rate;
        self
    }

    /// Calls delayed by up to `max`.
    pub fn with_latency(mut self, rate: f64, max: Duration) -> Self {
        self.latency_rate = rate;
        self.max_latency = max;
        self
    }

    /// Calls that never answer.
    pub fn with_hang_rate(mut self, rate: f64) -> Self {
        self.hang_rate = rate;
        self
    }

    /// Every call on an object whose name starts with `prefix` fails with permission denied.
    pub fn with_persistent_failure(mut self, prefix: impl Into<String>) -> Self {
        self.persistent.push(prefix.into());
        self
    }

    /// Checks the rates.
    pub fn build(self) -> Result<Self> {
        let rates = [
            ("error", self.error_rate),
            ("cut", self.cut_rate),
            ("partial write", self.partial_write_rate),
            ("lost reply", self.lost_reply_rate),
            ("latency", self.latency_rate),
            ("hang", self.hang_rate),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(Error::Config(format!(
                    "fault {name} rate {rate} outside 0..1"
                )));
            }
        }
        Ok(self)
    }
}

/// How many faults a [`FaultStore`] injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultCounts {
    /// Calls failed before reaching the store.
    pub errors: u64,
    /// GET bodies and PUT uploads cut.
    pub cuts: u64,
    /// Truncated objects left by failed PUTs.
    pub partial_writes: u64,
    /// PUTs stored whole whose reply was lost.
    pub lost_replies: u64,
    /// Calls delayed.
    pub delays: u64,
    /// Calls that never answered.
    pub hangs: u64,
    /// Calls refused for good (permission denied).
    pub persistent: u64,
}

#[derive(Default)]
struct Counters {
    errors: AtomicU64,
    cuts: AtomicU64,
    partial_writes: AtomicU64,
    lost_replies: AtomicU64,
    delays: AtomicU64,
    hangs: AtomicU64,
    persistent: AtomicU64,
}

/// An object store that injects faults into the calls it passes to another; see the
/// [module documentation](self).
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    shared: Arc<Shared>,
}

/// The decisions' state, shared with the delete streams a store hands out.
struct Shared {
    config: FaultConfig,
    calls: Mutex<HashMap<(Op, String), u64>>,
    counters: Counters,
    enabled: AtomicBool,
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultStore")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Put,
    Get,
    Delete,
    List,
    Other,
}

/// The faults chosen for one call.
#[derive(Default)]
struct Draw {
    delay: Option<Duration>,
    hang: bool,
    error: bool,
    cut: Option<f64>,
    partial: Option<f64>,
    lost_reply: bool,
    persistent: bool,
}

fn transient(what: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultStore",
        source: Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            what,
        )),
    }
}

impl FaultStore {
    /// Wraps `inner` with the faults of `config`.
    pub fn new(inner: Arc<dyn ObjectStore>, config: FaultConfig) -> Self {
        FaultStore {
            inner,
            shared: Arc::new(Shared {
                config,
                calls: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                enabled: AtomicBool::new(true),
            }),
        }
    }

    /// The store the faults are injected in front of.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Turns the faults on or off (off: every call goes straight through).
    pub fn set_enabled(&self, on: bool) {
        self.shared.enabled.store(on, Ordering::Relaxed);
    }

    /// The faults injected so far.
    pub fn injected(&self) -> FaultCounts {
        let c = &self.shared.counters;
        FaultCounts {
            errors: c.errors.load(Ordering::Relaxed),
            cuts: c.cuts.load(Ordering::Relaxed),
            partial_writes: c.partial_writes.load(Ordering::Relaxed),
            lost_replies: c.lost_replies.load(Ordering::Relaxed),
            delays: c.delays.load(Ordering::Relaxed),
            hangs: c.hangs.load(Ordering::Relaxed),
            persistent: c.persistent.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    /// Draws the faults of this call of `op` on `name`.
    fn draw(&self, op: Op, name: &str) -> Draw {
        if !self.enabled.load(Ordering::Relaxed) {
            return Draw::default();
        }
        if self.config.persistent.iter().any(|p| name.starts_with(p)) {
            return Draw {
                persistent: true,
                ..Draw::default()
            };
        }
        let nth = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let n = calls.entry((op, name.to_string())).or_default();
            *n += 1;
            *n
        };
        let mut state = self.config.seed ^ blake3_u64(name) ^ (op as u64) << 56 ^ nth;
        let mut next = || {
            state = splitmix(state);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let c = &self.config;
        let mut draw = Draw::default();
        let (latency, lat_amount) = (next(), next());
        if latency < c.latency_rate {
            draw.delay = Some(c.max_latency.mul_f64(lat_amount));
        }
        draw.hang = next() < c.hang_rate;
        draw.error = next() < c.error_rate;
        let (cut, where_) = (next(), next());
        if matches!(op, Op::Get | Op::Put) && cut < c.cut_rate {
            draw.cut = Some(where_);
        }
        let (partial, where_) = (next(), next());
        if op == Op::Put && partial < c.partial_write_rate {
            draw.partial = Some(where_);
        }
        draw.lost_reply = op == Op::Put && next() < c.lost_reply_rate;
        draw
    }

    /// Applies the faults that come before a call: persistent failure, latency, hang, error.
    async fn before(&self, draw: &Draw, what: &str) -> StoreResult<()> {
        if draw.persistent {
            self.counters.persistent.fetch_add(1, Ordering::Relaxed);
            return Err(object_store::Error::PermissionDenied {
                path: what.to_string(),
                source: "injected persistent failure".into(),
            });
        }
        if let Some(delay) = draw.delay {
            self.counters.delays.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
        }
        if draw.hang {
            self.counters.hangs.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<()>().await;
        }
        if draw.error {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            return Err(transient(format!("injected error on {what}")));
        }
        Ok(())
    }
}

fn blake3_u64(name: &str) -> u64 {
    let hash = blake3::hash(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// The first `fraction` of `bytes` (at least one byte short of all of it).
fn cut_at(len: usize, fraction: f64) -> usize {
    ((len as f64 * fraction) as usize).min(len.saturating_sub(1))
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreResult<PutResult> {
        let draw = self.shared.draw(Op::Put, location.as_ref());
        self.shared.before(&draw, location.as_ref()).await?;
        if draw.cut.is_some() {
            self.shared.counters.cuts.fetch_add(1, Ordering::Relaxed);
            return Err(transient(format!("injected cut upload of {location}")));
        }
        if let Some(fraction) = draw.partial {
            let whole = Bytes::from(payload);
            let part = whole.slice(..cut_at(whole.len(), fraction));
            self.inner.put_opts(location, part.into(), opts).await?;
            self.shared
                .counters
                .partial_writes
                .fetch_add(1, Ordering::Relaxed);
            return Err(transient(format!("injected partial write of {location}")));
        }
        let stored = self.inner.put_opts(location, payload, opts).await?;
        if draw.lost_reply {
            self.shared
                .counters
                .lost_replies
                .fetch_add(1, Ordering::Relaxed);
            return Err(transient(format!("injected lost reply for {location}")));
        }
        Ok(stored)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> StoreResult<Box<dyn MultipartUpload>> {
        let draw = self.shared.draw(Op::Put, location.as_ref());
        self.shared.before(&draw, location.as_ref()).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> StoreResult<GetResult> {
        let draw = self.shared.draw(Op::Get, location.as_ref());
        self.shared.before(&draw, location.as_ref()).await?;
        let result = self.inner.get_opts(location, options).await?;
        let Some(fraction) = draw.cut else {
            return Ok(result);
        };
        let GetResult {
            payload,
            meta,
            range,
            attributes,
            extensions,
        } = result;
        let body = match payload {
            GetResultPayload::Stream(stream) => stream,
            GetResultPayload::File(..) => {
                // Read the file through the ordinary path, then cut that stream.
                let whole = GetResult {
                    payload,
                    meta: meta.clone(),
                    range: range.clone(),
                    attributes: attributes.clone(),
                    extensions: extensions.clone(),
                }
                .bytes()
                .await?;
                futures::stream::once(std::future::ready(Ok(whole))).boxed()
            }
        };
        self.shared.counters.cuts.fetch_add(1, Ordering::Relaxed);
        let keep = cut_at((range.end - range.start) as usize, fraction);
        let name = location.to_string();
        let cut =
            futures::stream::unfold((body, keep, false), move |(mut body, mut left, done)| {
                let name = name.clone();
                async move {
                    if done {
                        return None;
                    }
                    match body.next().await {
                        Some(Ok(bytes)) if bytes.len() < left => {
                            left -= bytes.len();
                            Some((Ok(bytes), (body, left, false)))
                        }
                        Some(Ok(bytes)) if left > 0 => {
                            Some((Ok(bytes.slice(..left)), (body, 0, false)))
                        }
                        Some(Err(e)) => Some((Err(e), (body, 0, true))),
                        _ => Some((
                            Err(transient(format!("injected cut download of {name}"))),
                            (body, 0, true),
                        )),
                    }
                }
            });
        Ok(GetResult {
            payload: GetResultPayload::Stream(cut.boxed()),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> StoreResult<Vec<Bytes>> {
        let draw = self.shared.draw(Op::Get, location.as_ref());
        self.shared.before(&draw, location.as_ref()).await?;
        if draw.cut.is_some() {
            self.shared.counters.cuts.fetch_add(1, Ordering::Relaxed);
            return Err(transient(format!("injected cut download of {location}")));
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, StoreResult<Path>>,
    ) -> BoxStream<'static, StoreResult<Path>> {
        let (inner, shared) = (self.inner.clone(), self.shared.clone());
        locations
            .then(move |location| {
                let (inner, shared) = (inner.clone(), shared.clone());
                async move {
                    let location = location?;
                    let draw = shared.draw(Op::Delete, location.as_ref());
                    shared.before(&draw, location.as_ref()).await?;
                    match inner.delete_stream(single(&location)).next().await {
                        Some(result) => result,
                        None => Ok(location),
                    }
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        let name = prefix.map_or(String::new(), |p| p.to_string());
        let draw = self.shared.draw(Op::List, &name);
        if draw.persistent || draw.error {
            let counter = if draw.persistent {
                &self.shared.counters.persistent
            } else {
                &self.shared.counters.errors
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let error = if draw.persistent {
                object_store::Error::PermissionDenied {
                    path: name,
                    source: "injected persistent failure".into(),
                }
            } else {
                transient(format!("injected error on LIST {name}"))
            };
            return futures::stream::once(std::future::ready(Err(error))).boxed();
        }
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
        let name = prefix.map_or(String::new(), |p| p.to_string());
        let draw = self.shared.draw(Op::List, &name);
        self.shared.before(&draw, &name).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> StoreResult<()> {
        let draw = self.shared.draw(Op::Other, to.as_ref());
        self.shared.before(&draw, to.as_ref()).await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> StoreResult<()> {
        let draw = self.shared.draw(Op::Other, to.as_ref());
        self.shared.before(&draw, to.as_ref()).await?;
        self.inner.rename_opts(from, to, options).await
    }
}
