//! Uploads of local files: one PUT for small files, resumable upload sessions for larger ones,
//! every result verified against the server's quickXorHash and size.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::Secret;
use crate::client::{Conflict, Drive, DriveItem, ItemRef, OneDriveClient, parse_item};
use crate::error::{Error, Result};
use crate::names::RemotePath;
use crate::quickxor::QuickXorHash;

/// Stops uploads between fragments; an aborted upload cancels its session (`DELETE`).
#[derive(Debug, Clone, Default)]
pub struct AbortHandle(Arc<AtomicBool>);

impl AbortHandle {
    /// A handle that has not been triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every upload sharing this handle to stop.
    pub fn abort(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once [`AbortHandle::abort`] was called.
    pub fn is_aborted(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Fragment buffers, reused across fragments and uploads: each upload in flight holds one, so
/// memory stays near concurrency x fragment size instead of growing with allocator
/// fragmentation from a fresh multi-megabyte allocation per fragment.
#[derive(Clone, Default)]
pub(crate) struct BufferPool(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

/// Buffers kept for reuse (more are allocated when more uploads are in flight).
const POOL_KEEP: usize = 16;

impl BufferPool {
    /// An empty buffer with room for `capacity` bytes.
    pub(crate) fn take(&self, capacity: usize) -> PooledBuf {
        let reused = self.0.lock().ok().and_then(|mut pool| pool.pop());
        let mut buf = reused.unwrap_or_default();
        buf.clear();
        buf.reserve_exact(capacity);
        PooledBuf {
            buf,
            pool: self.clone(),
        }
    }
}

/// A buffer that goes back to its pool when dropped (also after the HTTP stack is done with it).
pub(crate) struct PooledBuf {
    buf: Vec<u8>,
    pool: BufferPool,
}

impl PooledBuf {
    /// An HTTP body that returns the buffer to the pool once sent.
    pub(crate) fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from_owner(self)
    }
}

impl std::ops::Deref for PooledBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl std::ops::DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if let Ok(mut pool) = self.pool.0.lock()
            && pool.len() < POOL_KEEP
        {
            pool.push(buf);
        }
    }
}

/// Called with the number of bytes of the file the server has acknowledged so far.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// An upload of one local file; made by [`OneDriveClient::upload_file`], run by
/// [`Upload::send`].
#[must_use = "an upload does nothing until sent"]
pub struct Upload<'a> {
    client: &'a OneDriveClient,
    drive: Drive,
    path: RemotePath,
    local: PathBuf,
    conflict: Conflict,
    session_file: Option<PathBuf>,
    abort: AbortHandle,
    progress: Option<ProgressFn>,
    known_hash: Option<(u64, String)>,
}

impl std::fmt::Debug for Upload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("path", &self.path)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// What is persisted about an upload session so a crashed process can resume it. The upload
/// URL is a bearer capability, so the file is written with mode 0600.
#[derive(Serialize, Deserialize)]
struct SessionRecord {
    upload_url: String,
    remote_path: String,
    size: u64,
    quick_xor_hash: String,
    /// Seconds since the epoch.
    expires_at: u64,
}

struct Session {
    url: Secret,
    expires_at: u64,
}

/// The upload session status answer (`GET uploadUrl`, and 202 answers to fragments).
#[derive(Deserialize)]
struct SessionStatus {
    #[serde(rename = "nextExpectedRanges", default)]
    next_expected_ranges: Vec<String>,
}

#[derive(Deserialize)]
struct CreatedSession {
    #[serde(rename = "uploadUrl")]
    upload_url: String,
    #[serde(rename = "expirationDateTime", default)]
    expiration: Option<String>,
}

/// How many fresh sessions one upload may start after its session expired or vanished.
const MAX_NEW_SESSIONS: u32 = 3;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The start of the first range in `nextExpectedRanges` (`"start-end"` or `"start-"`).
fn first_expected(what: &str, ranges: &[String]) -> Result<Option<u64>> {
    let Some(first) = ranges.first() else {
        return Ok(None);
    };
    let start = first.split('-').next().unwrap_or("");
    start
        .trim()
        .parse::<u64>()
        .map(Some)
        .map_err(|_| Error::invalid_response(what, format!("nextExpectedRanges entry `{first}`")))
}

/// Hashes a local file (blocking; run off the runtime).
pub(crate) fn hash_file(path: &Path) -> Result<(u64, String)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hash = QuickXorHash::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok((hash.len(), hash.finalize_base64()))
}

async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::io(path, std::io::Error::other(e)))?
}

impl OneDriveClient {
    /// Prepares an upload of local file `local` to `path` (conflict behaviour replace).
    pub fn upload_file(
        &self,
        drive: &Drive,
        path: &RemotePath,
        local: impl Into<PathBuf>,
    ) -> Upload<'_> {
        Upload {
            client: self,
            drive: drive.clone(),
            path: path.clone(),
            local: local.into(),
            conflict: Conflict::Replace,
            session_file: None,
            abort: AbortHandle::new(),
            progress: None,
            known_hash: None,
        }
    }
}

impl Upload<'_> {
    /// The conflict behaviour (default replace).
    pub fn with_conflict(mut self, conflict: Conflict) -> Self {
        self.conflict = conflict;
        self
    }

    /// Persists the upload session here, so an upload interrupted by a crash resumes from the
    /// server's `nextExpectedRanges` when run again with the same file.
    pub fn with_session_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.session_file = Some(path.into());
        self
    }

    /// Aborts between fragments when `abort` triggers (the session is cancelled).
    pub fn with_abort(mut self, abort: AbortHandle) -> Self {
        self.abort = abort;
        self
    }

    /// Reports acknowledged bytes.
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The file's size and quickXorHash if the caller already computed them (saves a read).
    pub fn with_known_hash(mut self, size: u64, quick_xor_hash: String) -> Self {
        self.known_hash = Some((size, quick_xor_hash));
        self
    }

    /// Uploads and verifies: the item only counts as uploaded when the server reports the
    /// file's size and quickXorHash.
    pub async fn send(self) -> Result<DriveItem> {
        let (size, hash) = match self.known_hash.clone() {
            Some(known) => known,
            None => {
                let local = self.local.clone();
                blocking(&self.local, move || hash_file(&local)).await?
            }
        };
        if self.abort.is_aborted() {
            return Err(Error::Aborted);
        }
        let item = if size == 0 || size <= self.client.simple_upload_limit {
            let local = self.local.clone();
            let data = blocking(&self.local, move || {
                std::fs::read(&local).map_err(|e| Error::io(&local, e))
            })
            .await?;
            self.client
                .put_small(&self.drive, &self.path, data, self.conflict)
                .await?
        } else {
            self.send_session(size, &hash).await?
        };
        if let Some(progress) = &self.progress {
            progress(size);
        }
        verify(&self.path, &item, size, &hash)?;
        Ok(item)
    }

    async fn send_session(&self, size: u64, hash: &str) -> Result<DriveItem> {
        let what = format!("upload {}", self.path);
        let mut fresh_sessions = 0;
        let (mut session, mut offset) = match self.resume(size, hash).await? {
            Some(resumed) => resumed,
            None => {
                fresh_sessions += 1;
                (self.create_session(size, hash).await?, 0)
            }
        };
        let policy = self.client.http.policy().clone();
        let mut attempt = 0;
        loop {
            if self.abort.is_aborted() {
                self.cancel(&session).await;
                return Err(Error::Aborted);
            }
            if let Some(progress) = &self.progress {
                progress(offset);
            }
            // An expired session cannot take more data: start again.
            if session.expires_at != 0 && session.expires_at <= now_secs() {
                (session, offset) = self.renew(&mut fresh_sessions, size, hash).await?;
                continue;
            }
            // The server (or a saved session) asking for a byte past the end is a broken answer,
            // not a reason to read beyond the file.
            if offset >= size {
                return Err(Error::invalid_response(
                    &what,
                    format!("next expected byte {offset} is past the file's {size} bytes"),
                ));
            }
            let end = offset.saturating_add(self.client.fragment_size).min(size);
            let local = self.local.clone();
            let mut buf = self.client.buffers.take(self.client.fragment_size as usize);
            let fragment = blocking(&self.local, move || {
                let file = std::fs::File::open(&local).map_err(|e| Error::io(&local, e))?;
                buf.resize((end - offset) as usize, 0);
                file.read_exact_at(&mut buf, offset)
                    .map_err(|e| Error::io(&local, e))?;
                Ok(buf)
            })
            .await?;
            let fragment_what = format!("{what}: fragment {offset}-{}", end - 1);
            // Upload URLs are pre-authenticated: no Authorization header goes to them.
            let request = self
                .client
                .http
                .client()
                .put(session.url.expose())
                .header(
                    "Content-Range",
                    format!("bytes {offset}-{}/{size}", end - 1),
                )
                .header("Content-Length", end - offset)
                .timeout(Duration::from_secs(600))
                .body(reqwest::Body::from(fragment.into_bytes()));
            attempt += 1;
            let response = match self.client.http.send_once(request).await {
                Ok(response) => response,
                Err(source) => {
                    if attempt >= policy.max_attempts() {
                        return Err(Error::Transport {
                            what: fragment_what,
                            source,
                        });
                    }
                    tracing::debug!(what = %fragment_what, error = %source, "fragment failed; asking the session where to resume");
                    tokio::time::sleep(policy.backoff(attempt)).await;
                    match self.status(&session).await? {
                        Some(next) => offset = next,
                        None => {
                            (session, offset) = self.renew(&mut fresh_sessions, size, hash).await?
                        }
                    }
                    continue;
                }
            };
            match response.status {
                202 => {
                    attempt = 0;
                    let status: SessionStatus = serde_json::from_slice(&response.body)
                        .map_err(|e| Error::invalid_response(&fragment_what, e.to_string()))?;
                    offset = first_expected(&fragment_what, &status.next_expected_ranges)?
                        .ok_or_else(|| {
                            Error::invalid_response(
                                &fragment_what,
                                "202 without nextExpectedRanges",
                            )
                        })?;
                }
                200 | 201 => {
                    self.forget_session().await;
                    return parse_item(&fragment_what, &response.body);
                }
                416 => {
                    // Already received: continue where the server says.
                    match self.status(&session).await? {
                        Some(next) => offset = next,
                        None => {
                            (session, offset) = self.renew(&mut fresh_sessions, size, hash).await?
                        }
                    }
                }
                404 => {
                    (session, offset) = self.renew(&mut fresh_sessions, size, hash).await?;
                }
                409 => {
                    self.forget_session().await;
                    return Err(Error::AlreadyExists {
                        path: self.path.to_string(),
                    });
                }
                status if response.is_transient() && attempt < policy.max_attempts() => {
                    let wait = if matches!(status, 429 | 503) {
                        policy.throttle_wait(
                            &fragment_what,
                            status,
                            response.retry_after,
                            attempt,
                        )?
                    } else {
                        policy.backoff(attempt)
                    };
                    tokio::time::sleep(wait).await;
                    if !matches!(status, 429 | 503)
                        && let Some(next) = self.status(&session).await?
                    {
                        offset = next;
                    }
                }
                _ => {
                    self.cancel(&session).await;
                    return Err(response.into_error(&fragment_what));
                }
            }
        }
    }

    /// A new session after the old one expired or vanished (bounded, so a server that loses
    /// every session cannot keep the upload going forever).
    async fn renew(&self, fresh: &mut u32, size: u64, hash: &str) -> Result<(Session, u64)> {
        if *fresh >= MAX_NEW_SESSIONS {
            self.forget_session().await;
            return Err(Error::invalid_response(
                &format!("upload {}", self.path),
                format!("the upload session was lost {MAX_NEW_SESSIONS} times"),
            ));
        }
        *fresh += 1;
        tracing::debug!(path = %self.path, "upload session expired or gone; starting a new one");
        Ok((self.create_session(size, hash).await?, 0))
    }

    async fn create_session(&self, size: u64, hash: &str) -> Result<Session> {
        let what = format!("create upload session for {}", self.path);
        let name = self.path.file_name().unwrap_or_default();
        let body = json!({
            "item": {
                "@microsoft.graph.conflictBehavior": self.conflict.as_str(),
                "name": name,
            },
        });
        let url = self.client.item_url(
            &self.drive,
            &ItemRef::Path(self.path.clone()),
            "/createUploadSession",
        );
        let bytes = serde_json::to_vec(&body).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        let response = self
            .client
            .api(&what, Method::POST, &url, Some(("application/json", bytes)))
            .await?;
        match response.status {
            200 | 201 => {}
            409 => {
                return Err(Error::AlreadyExists {
                    path: self.path.to_string(),
                });
            }
            _ => return Err(response.into_error(&what)),
        }
        let created: CreatedSession = serde_json::from_slice(&response.body)
            .map_err(|e| Error::invalid_response(&what, format!("uploadSession: {e}")))?;
        let expires_at = match &created.expiration {
            Some(text) => text
                .parse::<jiff::Timestamp>()
                .map(|t| u64::try_from(t.as_second()).unwrap_or(0))
                .map_err(|e| {
                    Error::invalid_response(&what, format!("expirationDateTime `{text}`: {e}"))
                })?,
            None => 0,
        };
        let session = Session {
            url: Secret::new(created.upload_url.clone()),
            expires_at,
        };
        if let Some(file) = &self.session_file {
            let record = SessionRecord {
                upload_url: created.upload_url.clone(),
                remote_path: self.path.to_string(),
                size,
                quick_xor_hash: hash.to_owned(),
                expires_at,
            };
            let json = zeroize::Zeroizing::new(
                serde_json::to_vec(&record)
                    .map_err(|e| Error::io(file, std::io::Error::other(e)))?,
            );
            let owned = file.clone();
            blocking(file, move || {
                crate::state::write_atomic(&owned, &json, 0o600)
            })
            .await?;
        }
        Ok(session)
    }

    /// Resumes the persisted session if it is for this file and still alive.
    async fn resume(&self, size: u64, hash: &str) -> Result<Option<(Session, u64)>> {
        let Some(file) = &self.session_file else {
            return Ok(None);
        };
        let owned = file.clone();
        let bytes = match tokio::task::spawn_blocking(move || std::fs::read(owned)).await {
            Ok(Ok(bytes)) => zeroize::Zeroizing::new(bytes),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Ok(Err(e)) => return Err(Error::io(file, e)),
            Err(e) => return Err(Error::io(file, std::io::Error::other(e))),
        };
        let record: SessionRecord = match serde_json::from_slice(&bytes) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "ignoring a malformed upload session record");
                return Ok(None);
            }
        };
        if record.remote_path != self.path.to_string()
            || record.size != size
            || record.quick_xor_hash != hash
            || (record.expires_at != 0 && record.expires_at <= now_secs())
        {
            return Ok(None);
        }
        let session = Session {
            url: Secret::new(record.upload_url.clone()),
            expires_at: record.expires_at,
        };
        Ok(self.status(&session).await?.map(|offset| (session, offset)))
    }

    /// Where the server wants the next byte; `None` if the session is gone (404).
    async fn status(&self, session: &Session) -> Result<Option<u64>> {
        let what = format!("upload status of {}", self.path);
        let response = self
            .client
            .http
            .send(&what, || {
                self.client.http.client().get(session.url.expose())
            })
            .await?;
        match response.status {
            200 => {
                let status: SessionStatus = serde_json::from_slice(&response.body)
                    .map_err(|e| Error::invalid_response(&what, e.to_string()))?;
                // A session with nothing left to receive is finished or broken; start over.
                first_expected(&what, &status.next_expected_ranges)
            }
            404 => Ok(None),
            _ => Err(response.into_error(&what)),
        }
    }

    /// Cancels a session (best effort) and forgets its record.
    async fn cancel(&self, session: &Session) {
        let result = self
            .client
            .http
            .send_once(self.client.http.client().delete(session.url.expose()))
            .await;
        if let Err(error) = result {
            tracing::warn!(path = %self.path, %error, "cancelling the upload session failed");
        }
        self.forget_session().await;
    }

    async fn forget_session(&self) {
        if let Some(file) = &self.session_file {
            let _ = tokio::fs::remove_file(file).await;
        }
    }
}

fn verify(path: &RemotePath, item: &DriveItem, size: u64, hash: &str) -> Result<()> {
    if item.size != size {
        return Err(Error::VerificationFailed {
            path: path.to_string(),
            detail: format!("size sent {size}, server reports {}", item.size),
        });
    }
    match &item.quick_xor_hash {
        Some(remote) if remote == hash => Ok(()),
        Some(remote) => Err(Error::VerificationFailed {
            path: path.to_string(),
            detail: format!("quickXorHash sent {hash}, server reports {remote}"),
        }),
        None => Err(Error::VerificationFailed {
            path: path.to_string(),
            detail: "the server reported no quickXorHash".into(),
        }),
    }
}
