//! Repository locks built on the store's conditional writes.
//!
//! Commands that add data (backup), forget snapshots or read take no lock or a **shared**
//! one; prune and key changes take the one **exclusive** lock. Shared locks coexist; the
//! exclusive lock excludes every other lock.
//!
//! ```text
//! locks/<32 hex>               a shared lock                         sealed LockInfo
//! locks/exclusive              the exclusive lock                    sealed LockInfo
//! locks/takeover-<32 hex>      claim on one stale exclusive lock     empty
//! ```
//!
//! * The exclusive lock has one fixed name and is created with `PutMode::Create` (S3
//!   `If-None-Match: *`): of two processes racing for it exactly one wins, the other gets
//!   [`Error::Locked`] naming the winner.
//! * Shared against exclusive: each side first writes its own lock, then looks for the other
//!   kind (a shared locker reads `locks/exclusive`, the exclusive locker lists `locks/`). On a
//!   store whose reads and lists follow completed writes (S3 since 2020, moto, local disks),
//!   at least one of two racing sides sees the other and withdraws its own lock, so they never
//!   both proceed.
//! * Locks are refreshed while held by a background task (every `refresh_every`, each write
//!   bounded by a timeout), and are **stale** when not refreshed for `stale_after` (recorded in
//!   the lock, default 30 min), or at once when the holder ran on this host and its process is
//!   gone. Stale locks do not block anyone. A holder whose last successful refresh is older
//!   than half of `stale_after`, or whose lock was removed, stops with [`Error::LockLost`]
//!   before its next change ([`RepositoryLock::check`]).
//! * Taking over a stale exclusive lock: the taker first creates `locks/takeover-<hash of the
//!   stale lock's bytes>` (create-only, so one taker per stale lock), re-reads the lock, and
//!   deletes it only if it is still those bytes; then it creates its own.
//! * Lock objects are sealed under the repository key with their name as associated data, like
//!   index objects: someone who can write to the store but has no key cannot forge a lock that
//!   blocks anyone (a lock object that fails authentication counts as stale and is removed), and
//!   a copied old lock carries its old refresh time, so it is stale.
//!
//! Read-only commands (`check`, `ls`, `restore`, `snapshots`) take **no** lock, so they work
//! with read-only credentials and on read-only stores. A prune that runs meanwhile can delete
//! a pack such a reader was about to read (the reader then fails with "not found"; it never
//! returns wrong data, since every blob is verified), and `check` may report what a concurrent
//! prune changed under it: run them apart, or rerun.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format;
use crate::repo::{Keys, Repository, is_object_name};

/// Prefix of every lock object (the one definition: [`crate::append_only`] lets handles
/// replace and delete objects under it).
pub const LOCKS_PREFIX: &str = "locks/";

/// The exclusive lock's name.
const EXCLUSIVE: &str = "locks/exclusive";
const TAKEOVER: &str = "locks/takeover-";

/// Shared or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LockKind {
    /// Coexists with other shared locks (backup, forget).
    Shared,
    /// Excludes every other lock (prune, key changes).
    Exclusive,
}

/// What a lock object holds (sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LockInfo {
    /// Random id of this lock.
    pub id: String,
    /// Shared or exclusive.
    pub kind: LockKind,
    /// The command that holds it (`backup`, `prune`, ...).
    pub command: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// When it was taken, ns since the epoch (holder's clock).
    pub created_ns: i64,
    /// When it was last refreshed, ns since the epoch (holder's clock).
    pub refreshed_ns: i64,
    /// The holder refreshes it within this many milliseconds, else it is stale.
    pub stale_after_ms: u64,
}

impl LockInfo {
    /// Why the lock is stale at `now_ns`, seen from host `here`; `None` if it is alive.
    pub fn stale_reason(&self, now_ns: i64, here: &str) -> Option<String> {
        let age_ms = now_ns.saturating_sub(self.refreshed_ns) / 1_000_000;
        if age_ms > i64::try_from(self.stale_after_ms).unwrap_or(i64::MAX) {
            return Some(format!(
                "not refreshed for {} s (stale after {} s)",
                age_ms / 1000,
                self.stale_after_ms / 1000
            ));
        }
        if self.host == here && process_gone(self.pid) {
            return Some(format!("process {} on this host is gone", self.pid));
        }
        None
    }

    /// `prune (exclusive lock) on host H, pid P, since T, refreshed T2`.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            LockKind::Shared => "shared",
            LockKind::Exclusive => "exclusive",
        };
        format!(
            "{} ({kind} lock) on host {}, pid {}, since {}, refreshed {}",
            self.command,
            self.host,
            self.pid,
            rfc3339(self.created_ns),
            rfc3339(self.refreshed_ns)
        )
    }
}

/// Whether no process `pid` exists here: `kill(pid, 0)` fails with ESRCH. (Not `/proc`, which
/// `ProtectProc=invisible` or `hidepid` hide other users' processes from; EPERM means it
/// exists.)
fn process_gone(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
}

fn rfc3339(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// How to take a lock.
#[derive(Debug, Clone)]
pub struct LockOptions {
    kind: LockKind,
    command: String,
    host: Option<String>,
    stale_after: Duration,
    refresh_every: Duration,
}

impl LockOptions {
    /// Shared or exclusive.
    pub fn kind(&self) -> LockKind {
        self.kind
    }
}

/// Builds [`LockOptions`].
#[derive(Debug, Clone)]
pub struct LockOptionsBuilder(LockOptions);

impl LockOptions {
    /// A lock of `kind` held by `command`; stale after 30 minutes without a refresh, refreshed
    /// every 5 minutes.
    pub fn builder(kind: LockKind, command: impl Into<String>) -> LockOptionsBuilder {
        LockOptionsBuilder(LockOptions {
            kind,
            command: command.into(),
            host: None,
            stale_after: Duration::from_secs(30 * 60),
            refresh_every: Duration::from_secs(5 * 60),
        })
    }
}

impl LockOptionsBuilder {
    /// Host name recorded in the lock (default: this host's).
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.0.host = Some(host.into());
        self
    }

    /// Age without a refresh after which others treat the lock as stale.
    pub fn with_stale_after(mut self, age: Duration) -> Self {
        self.0.stale_after = age;
        self
    }

    /// How often the lock is refreshed while held.
    pub fn with_refresh_every(mut self, every: Duration) -> Self {
        self.0.refresh_every = every;
        self
    }

    /// Checks the options: a refresh must come well within the stale age.
    pub fn build(self) -> Result<LockOptions> {
        if self.0.refresh_every.is_zero() || self.0.refresh_every * 3 > self.0.stale_after {
            return Err(Error::Config(format!(
                "lock refresh every {:?} must be over 0 and at most a third of the stale age {:?}",
                self.0.refresh_every, self.0.stale_after
            )));
        }
        if self.0.command.is_empty() {
            return Err(Error::Config("a lock needs a command name".into()));
        }
        Ok(self.0)
    }
}

/// A lock object found in `locks/`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LockEntry {
    /// Its name in the store.
    pub object: String,
    /// What it says, when it opens.
    pub info: Option<LockInfo>,
    /// Why it is stale (or does not open), when it is.
    pub stale: Option<String>,
}

struct State {
    /// When the last successful refresh (or the creation) began.
    fresh_at: Instant,
    /// Why the lock is lost, once it is.
    lost: Option<String>,
}

/// A lock held on a repository, refreshed in the background until released or dropped.
///
/// Dropping it stops the refresh but leaves the object, which then goes stale; call
/// [`RepositoryLock::release`] to remove it.
pub struct RepositoryLock {
    name: String,
    info: LockInfo,
    store: Arc<dyn ObjectStore>,
    keys: Arc<Keys>,
    state: Arc<Mutex<State>>,
    refresher: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RepositoryLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositoryLock")
            .field("name", &self.name)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Drop for RepositoryLock {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl RepositoryLock {
    /// The lock object's name.
    pub fn object(&self) -> &str {
        &self.name
    }

    /// What the lock says.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// [`Error::LockLost`] if the lock was removed by someone else, or was not refreshed for
    /// half its stale age (others may soon treat it as stale). Call it before each change
    /// that relies on the lock.
    pub fn check(&self) -> Result<()> {
        let lost = |reason: String| Error::LockLost {
            object: self.name.clone(),
            reason,
        };
        let state = self
            .state
            .lock()
            .map_err(|_| lost("its refresh task panicked".into()))?;
        if let Some(reason) = &state.lost {
            return Err(lost(reason.clone()));
        }
        let limit = Duration::from_millis(self.info.stale_after_ms) / 2;
        if state.fresh_at.elapsed() > limit {
            return Err(lost(format!(
                "not refreshed for {} s (others treat it as stale after {} s)",
                state.fresh_at.elapsed().as_secs(),
                self.info.stale_after_ms / 1000
            )));
        }
        Ok(())
    }

    /// Releases the lock after `result`, the outcome of the work done under it: a lock that
    /// was lost is left (it may be someone else's now); when the work failed, a failure to
    /// release is only logged, so the work's error is the one returned.
    pub(crate) async fn release_after<T>(self, result: Result<T>) -> Result<T> {
        match (&result, self.check()) {
            (_, Err(_)) | (Err(Error::LockLost { .. }), _) => {}
            (Ok(_), Ok(())) => self.release().await?,
            (Err(_), Ok(())) => {
                let command = self.info.command.clone();
                if let Err(e) = self.release().await {
                    tracing::warn!("releasing the {command} lock: {}", crate::report(&e));
                }
            }
        }
        result
    }

    /// Stops refreshing and removes the lock object (and, for the exclusive lock, the
    /// takeover claims on earlier stale ones).
    pub async fn release(self) -> Result<()> {
        self.refresher.abort();
        if self.info.kind == LockKind::Shared {
            return delete(self.store.as_ref(), &self.name).await;
        }
        // The exclusive lock has a fixed name: only ours is removed (one taken over after
        // ours went stale is someone else's).
        let current = get_opt(self.store.as_ref(), &self.name).await?;
        let ours = current
            .as_deref()
            .and_then(|b| open(&self.keys, &self.name, b))
            .is_some_and(|held| held.id == self.info.id);
        if ours {
            delete(self.store.as_ref(), &self.name).await?;
            for name in crate::repo::list_names(self.store.as_ref(), "locks").await? {
                if name.starts_with(TAKEOVER) {
                    delete(self.store.as_ref(), &name).await?;
                }
            }
        }
        Ok(())
    }
}

async fn delete(store: &dyn ObjectStore, name: &str) -> Result<()> {
    match store.delete(&ObjectPath::from(name)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::store(name, e)),
    }
}

/// The bytes of `name`, or `None` if it does not exist.
async fn get_opt(store: &dyn ObjectStore, name: &str) -> Result<Option<bytes::Bytes>> {
    match crate::repo::get_bytes(store, name).await {
        Ok(b) => Ok(Some(b)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn seal(keys: &Keys, name: &str, info: &LockInfo) -> Result<Vec<u8>> {
    keys.cipher.seal(name.as_bytes(), &format::encode(info))
}

fn open(keys: &Keys, name: &str, bytes: &[u8]) -> Option<LockInfo> {
    let plain = keys.cipher.open(name.as_bytes(), bytes).ok()?;
    format::decode(name, &plain).ok()
}

/// The holder of lock bytes `bytes` at `name` if it is alive; `Err(reason)` if stale or forged.
fn alive(keys: &Keys, name: &str, bytes: &[u8]) -> std::result::Result<LockInfo, String> {
    let info = open(keys, name, bytes)
        .ok_or_else(|| "does not open under the repository key (damaged or forged)".to_string())?;
    match info.stale_reason(now_ns(), &crate::backup::hostname()) {
        Some(reason) => Err(reason),
        None => Ok(info),
    }
}

async fn put(store: &dyn ObjectStore, name: &str, bytes: Vec<u8>, mode: PutMode) -> Result<bool> {
    match store
        .put_opts(
            &ObjectPath::from(name),
            bytes.into(),
            PutOptions::from(mode),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(Error::store(name, e)),
    }
}

impl Repository {
    fn locked(&self, holder: String) -> Error {
        Error::Locked {
            location: self.location().to_string(),
            holder,
        }
    }

    /// Takes a lock ([`LockKind::Shared`] or [`LockKind::Exclusive`]), or fails with
    /// [`Error::Locked`] naming the holder of a conflicting one. Needs a tokio runtime with a
    /// timer (the refresh runs as a task on it).
    pub async fn lock(&self, options: &LockOptions) -> Result<RepositoryLock> {
        let store = self.store.as_ref();
        let keys = &self.keys;
        let now = now_ns();
        let info = LockInfo {
            id: format::random_id(),
            kind: options.kind,
            command: options.command.clone(),
            host: options.host.clone().unwrap_or_else(crate::backup::hostname),
            pid: std::process::id(),
            created_ns: now,
            refreshed_ns: now,
            stale_after_ms: u64::try_from(options.stale_after.as_millis()).unwrap_or(u64::MAX),
        };
        let started = Instant::now();
        let name = match options.kind {
            LockKind::Shared => {
                let name = format!("locks/{}", info.id);
                put(store, &name, seal(keys, &name, &info)?, PutMode::Create).await?;
                if let Some(bytes) = get_opt(store, EXCLUSIVE).await?
                    && let Ok(holder) = alive(keys, EXCLUSIVE, &bytes)
                {
                    delete(store, &name).await?;
                    return Err(self.locked(holder.describe()));
                }
                name
            }
            LockKind::Exclusive => {
                self.create_exclusive(&info).await?;
                // Then no live shared lock may exist (each shared locker checks for us after
                // writing its own).
                for other in crate::repo::list_names(store, "locks").await? {
                    if !is_object_name("locks", &other) {
                        continue;
                    }
                    let Some(bytes) = get_opt(store, &other).await? else {
                        continue;
                    };
                    match alive(keys, &other, &bytes) {
                        Ok(holder) => {
                            delete(store, EXCLUSIVE).await?;
                            return Err(self.locked(holder.describe()));
                        }
                        Err(reason) => {
                            tracing::info!("removing stale lock {other}: {reason}");
                            delete(store, &other).await?;
                        }
                    }
                }
                EXCLUSIVE.to_string()
            }
        };
        let state = Arc::new(Mutex::new(State {
            fresh_at: started,
            lost: None,
        }));
        let refresher = tokio::spawn(refresh(
            self.store.clone(),
            self.keys.clone(),
            name.clone(),
            info.clone(),
            options.refresh_every,
            state.clone(),
        ));
        Ok(RepositoryLock {
            name,
            info,
            store: self.store.clone(),
            keys: self.keys.clone(),
            state,
            refresher,
        })
    }

    /// Creates `locks/exclusive`, taking over a stale (or forged) one at most once.
    async fn create_exclusive(&self, info: &LockInfo) -> Result<()> {
        let store = self.store.as_ref();
        let sealed = seal(&self.keys, EXCLUSIVE, info)?;
        for _ in 0..3 {
            if put(store, EXCLUSIVE, sealed.clone(), PutMode::Create).await? {
                return Ok(());
            }
            let Some(bytes) = get_opt(store, EXCLUSIVE).await? else {
                continue; // released meanwhile
            };
            if bytes == sealed {
                // Our own create succeeded but its answer was lost, and a retry below us met
                // the object it made (sealed with a fresh nonce: nobody else has these bytes).
                return Ok(());
            }
            let reason = match alive(&self.keys, EXCLUSIVE, &bytes) {
                Ok(holder) => return Err(self.locked(holder.describe())),
                Err(reason) => reason,
            };
            let claim = format!("{TAKEOVER}{}", &blake3::hash(&bytes).to_hex()[..32]);
            if !put(store, &claim, Vec::new(), PutMode::Create).await? {
                return Err(self.locked(format!(
                    "another process is taking over the stale exclusive lock ({reason})"
                )));
            }
            tracing::info!("taking over the stale exclusive lock: {reason}");
            if get_opt(store, EXCLUSIVE).await?.as_deref() == Some(&bytes[..]) {
                delete(store, EXCLUSIVE).await?;
            }
        }
        Err(self.locked("the exclusive lock keeps changing hands".into()))
    }

    /// Every lock object, with its holder and whether it is stale.
    pub async fn list_locks(&self) -> Result<Vec<LockEntry>> {
        let mut entries = Vec::new();
        for name in crate::repo::list_names(self.store.as_ref(), "locks").await? {
            if name.starts_with(TAKEOVER) {
                continue;
            }
            let Some(bytes) = get_opt(self.store.as_ref(), &name).await? else {
                continue;
            };
            let info = open(&self.keys, &name, &bytes);
            let stale = alive(&self.keys, &name, &bytes).err();
            entries.push(LockEntry {
                object: name,
                info,
                stale,
            });
        }
        Ok(entries)
    }

    /// Removes stale lock objects (and ones that do not open), or with `force` every lock,
    /// alive or not; returns what was removed. Takeover claims go too when no exclusive lock
    /// is left.
    /// With `force` an append-only handle is refused ([`Error::AppendOnly`]): removing live
    /// locks is for the full-rights side, like prune.
    pub async fn unlock(&self, force: bool) -> Result<Vec<LockEntry>> {
        if force {
            self.refuse_if_append_only("unlock --force")?;
        }
        let mut removed = Vec::new();
        for entry in self.list_locks().await? {
            if force || entry.stale.is_some() {
                delete(self.store.as_ref(), &entry.object).await?;
                removed.push(entry);
            }
        }
        if get_opt(self.store.as_ref(), EXCLUSIVE).await?.is_none() {
            for name in crate::repo::list_names(self.store.as_ref(), "locks").await? {
                if name.starts_with(TAKEOVER) {
                    delete(self.store.as_ref(), &name).await?;
                }
            }
        }
        Ok(removed)
    }
}

/// Rewrites the lock with a new refresh time every `every`, each attempt bounded by `every`;
/// stops when the lock is gone or belongs to someone else.
async fn refresh(
    store: Arc<dyn ObjectStore>,
    keys: Arc<Keys>,
    name: String,
    mut info: LockInfo,
    every: Duration,
    state: Arc<Mutex<State>>,
) {
    loop {
        tokio::time::sleep(every).await;
        let began = Instant::now();
        let attempt = async {
            let current = get_opt(store.as_ref(), &name).await?;
            let ours = current
                .as_deref()
                .and_then(|b| open(&keys, &name, b))
                .is_some_and(|held| held.id == info.id);
            if !ours {
                return Ok::<_, Error>(Some("it was removed or taken over by another process"));
            }
            info.refreshed_ns = now_ns();
            put(
                store.as_ref(),
                &name,
                seal(&keys, &name, &info)?,
                PutMode::Overwrite,
            )
            .await?;
            Ok(None)
        };
        match tokio::time::timeout(every, attempt).await {
            Ok(Ok(None)) => {
                if let Ok(mut s) = state.lock() {
                    s.fresh_at = began;
                }
            }
            Ok(Ok(Some(reason))) => {
                if let Ok(mut s) = state.lock() {
                    s.lost = Some(reason.to_string());
                }
                return;
            }
            Ok(Err(e)) => tracing::warn!("refreshing lock {name}: {}", crate::report(&e)),
            Err(_) => tracing::warn!("refreshing lock {name}: timed out after {every:?}"),
        }
    }
}

/// Checks the lock a run holds, if it holds one (a dry run holds none): `LockLost` once it is
/// stale or gone, so the run stops before its next change.
pub(crate) fn check_held(lock: Option<&RepositoryLock>) -> Result<()> {
    lock.map_or(Ok(()), RepositoryLock::check)
}
