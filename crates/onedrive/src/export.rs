//! Exports to a folder in the customer's drive: incremental, resumable, optionally age-encrypted,
//! with a manifest listing every file.
//!
//! # Layout in the drive
//!
//! Under the export folder, each source file at its relative path (names mapped or refused per
//! [`NamePolicy`]; `.age` appended when encrypting), and [`MANIFEST_NAME`]: JSON listing every
//! file of the selection with its size and quickXorHash (of the plain content, and of the
//! remote file when that differs), so the customer can check the export without our tools.
//!
//! # Incremental and resumable
//!
//! A file is skipped when the remote copy already has its size and quickXorHash (encrypted files:
//! when the manifest's earlier entry has the same plain size and hash and the remote file still
//! has the size and hash recorded for it). Finished files are appended to a journal in the
//! state directory, and each upload session is persisted there, so a killed export run again
//! skips what was done and resumes the file in flight from the server's `nextExpectedRanges`.
//! Use one state directory per export target.
//!
//! # Memory
//!
//! Each of the `concurrency` uploads in flight holds one fragment (or one small file, up to the
//! client's simple-upload limit) and a 1 MiB read buffer: memory stays near
//! `concurrency x (fragment size + 1 MiB)` whatever the size of the export.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::client::{Conflict, Drive, DriveItem, ItemRef, OneDriveClient};
use crate::error::{Error, Result};
use crate::names::{NamePolicy, RemotePath, map_os_name};
use crate::quickxor::QuickXorHash;
use crate::upload::{AbortHandle, hash_file};

/// The manifest's name in the export folder.
pub const MANIFEST_NAME: &str = "hostguard-export-manifest.json";
/// The manifest's format tag.
pub const MANIFEST_FORMAT: &str = "hostguard-onedrive-export/1";

/// One file of an export selection.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// Path relative to the selection's root (no `..`, not absolute).
    pub path: PathBuf,
    /// Size in bytes, as listed.
    pub size: u64,
}

impl SourceEntry {
    /// An entry.
    pub fn new(path: impl Into<PathBuf>, size: u64) -> Self {
        Self {
            path: path.into(),
            size,
        }
    }
}

/// Where an export's files come from: a directory subtree ([`DirectorySource`]), a backup
/// snapshot (`snapshot::SnapshotSource`, behind the optional `backup-core` feature, so this crate
/// stays independent of backup-core by default), or anything else that can list and read files.
///
/// Methods are blocking; the export calls them off the async runtime.
pub trait ExportSource: Send + Sync {
    /// Every file of the selection.
    fn entries(&self) -> std::io::Result<Vec<SourceEntry>>;

    /// The content of `entry`.
    fn open(&self, entry: &SourceEntry) -> std::io::Result<Box<dyn Read + Send>>;

    /// A local file holding `entry`'s content, if there is one (then unencrypted exports upload
    /// it in place instead of copying it to the state directory first).
    fn local_path(&self, entry: &SourceEntry) -> Option<PathBuf> {
        let _ = entry;
        None
    }
}

/// The regular files under a directory (symbolic links and special files are left out).
#[derive(Debug, Clone)]
pub struct DirectorySource {
    root: PathBuf,
}

impl DirectorySource {
    /// The files under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn walk(&self, rel: &Path, out: &mut Vec<SourceEntry>) -> std::io::Result<()> {
        let dir = self.root.join(rel);
        let mut children = std::fs::read_dir(&dir)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
            .collect::<std::io::Result<Vec<_>>>()?;
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let kind = child.file_type()?;
            let path = rel.join(child.file_name());
            if kind.is_dir() {
                self.walk(&path, out)?;
            } else if kind.is_file() {
                out.push(SourceEntry::new(path, child.metadata()?.len()));
            } else {
                tracing::info!(path = %path.display(), "not a regular file; left out of the export");
            }
        }
        Ok(())
    }
}

impl ExportSource for DirectorySource {
    fn entries(&self) -> std::io::Result<Vec<SourceEntry>> {
        let mut out = Vec::new();
        self.walk(Path::new(""), &mut out)?;
        Ok(out)
    }

    fn open(&self, entry: &SourceEntry) -> std::io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::fs::File::open(self.root.join(&entry.path))?))
    }

    fn local_path(&self, entry: &SourceEntry) -> Option<PathBuf> {
        Some(self.root.join(&entry.path))
    }
}

/// One file in the manifest.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The source path (lossy UTF-8 if the name is not UTF-8).
    pub path: String,
    /// Plain size in bytes.
    pub size: u64,
    /// quickXorHash of the plain content (base64).
    #[serde(rename = "quickXorHash")]
    pub quick_xor_hash: String,
    /// Path of the remote file, relative to the export folder.
    #[serde(rename = "remotePath")]
    pub remote_path: String,
    /// Size of the remote file (differs from `size` when encrypted).
    #[serde(rename = "remoteSize")]
    pub remote_size: u64,
    /// quickXorHash of the remote file.
    #[serde(rename = "remoteQuickXorHash")]
    pub remote_quick_xor_hash: String,
}

/// The manifest written to the export folder.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// True if the files are age-encrypted.
    pub encrypted: bool,
    /// Every file of the selection, sorted by path.
    pub files: Vec<ManifestEntry>,
}

/// What an export did, or (dry run) would do, with one file.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileAction {
    /// Uploaded (or to be uploaded).
    Upload,
    /// The remote copy already matches.
    Skip,
}

/// Progress of an export.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum ExportEvent {
    /// The selection is listed.
    Listed {
        /// Files in the selection.
        files: u64,
        /// Their total size.
        bytes: u64,
    },
    /// Bytes of a file acknowledged by the server so far.
    Progress {
        /// Remote path.
        path: String,
        /// Bytes acknowledged.
        done: u64,
        /// Size being uploaded.
        size: u64,
    },
    /// A file is finished.
    FileDone {
        /// Remote path.
        path: String,
        /// Uploaded or skipped.
        action: FileAction,
        /// Plain size.
        size: u64,
    },
}

/// Receives [`ExportEvent`]s (called from worker tasks; keep it quick).
pub type ExportProgress = Arc<dyn Fn(ExportEvent) + Send + Sync>;

/// The result of an export or a dry run.
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub struct ExportSummary {
    /// Files uploaded (dry run: to upload).
    pub uploaded: u64,
    /// Plain bytes uploaded (dry run: to upload).
    pub bytes_uploaded: u64,
    /// Files skipped because the remote copy matched.
    pub skipped: u64,
    /// Each file's remote path and action.
    pub files: Vec<(String, FileAction)>,
}

/// Settings for an [`ExportJob`].
pub struct ExportJobBuilder {
    client: OneDriveClient,
    drive: Drive,
    folder: RemotePath,
    source: Arc<dyn ExportSource>,
    state_dir: Option<PathBuf>,
    recipients: Vec<crypto_at_rest::age::X25519Recipient>,
    recipient_error: Option<String>,
    concurrency: usize,
    names: NamePolicy,
    progress: Option<ExportProgress>,
    abort: AbortHandle,
}

impl std::fmt::Debug for ExportJobBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportJobBuilder")
            .field("folder", &self.folder)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl ExportJobBuilder {
    /// The local state directory (upload sessions, journal, encrypted spool files). Required.
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Encrypts every file to this age recipient (`age1...`), so the customer decrypts with
    /// the standard `age` tool. May be given several times.
    pub fn with_age_recipient(mut self, recipient: &str) -> Self {
        match crypto_at_rest::age::parse_recipients(recipient) {
            Ok(parsed) if !parsed.is_empty() => self.recipients.extend(parsed),
            Ok(_) => self.recipient_error = Some("empty age recipient".into()),
            Err(e) => self.recipient_error = Some(format!("age recipient: {e}")),
        }
        self
    }

    /// Uploads in parallel (default 4).
    pub fn with_concurrency(mut self, uploads: usize) -> Self {
        self.concurrency = uploads;
        self
    }

    /// What to do with names OneDrive refuses (default: refuse).
    pub fn with_name_policy(mut self, policy: NamePolicy) -> Self {
        self.names = policy;
        self
    }

    /// Receives progress events.
    pub fn with_progress(mut self, progress: ExportProgress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Stops the export between fragments (in-flight sessions are cancelled).
    pub fn with_abort(mut self, abort: AbortHandle) -> Self {
        self.abort = abort;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<ExportJob> {
        if let Some(error) = self.recipient_error {
            return Err(Error::InvalidConfig(error));
        }
        let state_dir = self
            .state_dir
            .ok_or_else(|| Error::InvalidConfig("an export needs a state directory".into()))?;
        if self.concurrency == 0 || self.concurrency > 64 {
            return Err(Error::InvalidConfig(format!(
                "concurrency {} is not between 1 and 64",
                self.concurrency
            )));
        }
        // Private: session records are bearer capabilities, spool files may be plain copies.
        for sub in ["sessions", "spool"] {
            let dir = state_dir.join(sub);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| Error::io(&dir, e))?;
        }
        Ok(ExportJob {
            client: self.client,
            drive: self.drive,
            folder: self.folder,
            source: self.source,
            state_dir,
            recipients: self.recipients,
            concurrency: self.concurrency,
            names: self.names,
            progress: self.progress,
            abort: self.abort,
            folders: tokio::sync::Mutex::new(HashSet::new()),
        })
    }
}

/// An export of a selection to a folder in a drive.
pub struct ExportJob {
    client: OneDriveClient,
    drive: Drive,
    folder: RemotePath,
    source: Arc<dyn ExportSource>,
    state_dir: PathBuf,
    recipients: Vec<crypto_at_rest::age::X25519Recipient>,
    concurrency: usize,
    names: NamePolicy,
    progress: Option<ExportProgress>,
    abort: AbortHandle,
    /// Remote folders known to exist.
    folders: tokio::sync::Mutex<HashSet<RemotePath>>,
}

impl std::fmt::Debug for ExportJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportJob")
            .field("folder", &self.folder)
            .field("encrypted", &!self.recipients.is_empty())
            .finish_non_exhaustive()
    }
}

/// One file as planned: where it goes and what it hashes to.
struct Planned {
    entry: SourceEntry,
    /// Relative to the export folder.
    remote: RemotePath,
    size: u64,
    hash: String,
    action: FileAction,
    /// For skipped files: the manifest line.
    record: Option<ManifestEntry>,
}

/// A line of the local journal of finished files.
type Journal = HashMap<String, ManifestEntry>;

impl ExportJob {
    /// Starts building an export of `source` to `folder` in `drive`.
    pub fn builder(
        client: OneDriveClient,
        drive: Drive,
        folder: RemotePath,
        source: Arc<dyn ExportSource>,
    ) -> ExportJobBuilder {
        ExportJobBuilder {
            client,
            drive,
            folder,
            source,
            state_dir: None,
            recipients: Vec::new(),
            recipient_error: None,
            concurrency: 4,
            names: NamePolicy::default(),
            progress: None,
            abort: AbortHandle::new(),
        }
    }

    fn encrypted(&self) -> bool {
        !self.recipients.is_empty()
    }

    fn emit(&self, event: ExportEvent) {
        if let Some(progress) = &self.progress {
            progress(event);
        }
    }

    fn journal_path(&self) -> PathBuf {
        self.state_dir.join("journal.jsonl")
    }

    /// What a run would do, without uploading anything (the dry run). Reads every file to hash
    /// it, and lists the export folder.
    pub async fn plan(&self) -> Result<ExportSummary> {
        let planned = self.plan_files().await?;
        let mut summary = ExportSummary::default();
        for p in &planned {
            match p.action {
                FileAction::Upload => {
                    summary.uploaded += 1;
                    summary.bytes_uploaded += p.size;
                }
                FileAction::Skip => summary.skipped += 1,
            }
            summary.files.push((p.remote.to_string(), p.action));
        }
        Ok(summary)
    }

    /// Runs the export: uploads what changed, then writes the manifest.
    pub async fn run(&self) -> Result<ExportSummary> {
        let planned = self.plan_files().await?;
        self.client.ensure_folder(&self.drive, &self.folder).await?;
        self.folders.lock().await.insert(self.folder.clone());
        let journal = Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(self.journal_path())
                .map_err(|e| Error::io(self.journal_path(), e))?,
        );
        let results: Vec<(ManifestEntry, FileAction, u64)> =
            futures::stream::iter(planned.into_iter().map(|p| self.export_one(p, &journal)))
                .buffer_unordered(self.concurrency)
                .try_collect()
                .await?;
        let mut summary = ExportSummary::default();
        let mut files = Vec::with_capacity(results.len());
        for (record, action, size) in results {
            match action {
                FileAction::Upload => {
                    summary.uploaded += 1;
                    summary.bytes_uploaded += size;
                }
                FileAction::Skip => summary.skipped += 1,
            }
            summary.files.push((record.remote_path.clone(), action));
            files.push(record);
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        summary.files.sort();
        self.write_manifest(files).await?;
        // The manifest now records everything the journal held.
        let _ = std::fs::remove_file(self.journal_path());
        Ok(summary)
    }

    async fn export_one(
        &self,
        planned: Planned,
        journal: &Mutex<std::fs::File>,
    ) -> Result<(ManifestEntry, FileAction, u64)> {
        if planned.action == FileAction::Skip {
            self.emit(ExportEvent::FileDone {
                path: planned.remote.to_string(),
                action: FileAction::Skip,
                size: planned.size,
            });
            let record = planned
                .record
                .ok_or_else(|| Error::InvalidConfig("skip without record".into()))?;
            return Ok((record, FileAction::Skip, planned.size));
        }
        let full = join(&self.folder, &planned.remote)?;
        let parent = full.parent();
        let known = self.folders.lock().await.contains(&parent);
        if !known {
            self.client.ensure_folder(&self.drive, &parent).await?;
            self.folders.lock().await.insert(parent);
        }
        let id = file_id(&planned.remote);
        let (body, body_size, body_hash, spooled) = self.prepare_body(&planned, &id).await?;
        let progress = self.progress.clone();
        let remote_name = planned.remote.to_string();
        let total = body_size;
        let mut upload = self
            .client
            .upload_file(&self.drive, &full, &body)
            .with_conflict(Conflict::Replace)
            .with_session_file(self.state_dir.join("sessions").join(format!("{id}.json")))
            .with_abort(self.abort.clone())
            .with_known_hash(body_size, body_hash.clone());
        if let Some(progress) = progress {
            let path = remote_name.clone();
            upload = upload.with_progress(Arc::new(move |done| {
                progress(ExportEvent::Progress {
                    path: path.clone(),
                    done,
                    size: total,
                })
            }));
        }
        let item = upload.send().await?;
        let record = ManifestEntry {
            path: planned.entry.path.to_string_lossy().into_owned(),
            size: planned.size,
            quick_xor_hash: planned.hash.clone(),
            remote_path: remote_name.clone(),
            remote_size: item.size,
            remote_quick_xor_hash: item.quick_xor_hash.clone().unwrap_or_default(),
        };
        let mut line = serde_json::to_vec(&record)
            .map_err(|e| Error::io(self.journal_path(), std::io::Error::other(e)))?;
        line.push(b'\n');
        {
            // Not synced: a line lost to a power cut only costs a re-upload, and a killed
            // process loses nothing (the kernel has the write).
            let mut file = journal
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            file.write_all(&line)
                .map_err(|e| Error::io(self.journal_path(), e))?;
        }
        if spooled {
            let _ = std::fs::remove_file(&body);
            let _ = std::fs::remove_file(body.with_extension("json"));
        }
        self.emit(ExportEvent::FileDone {
            path: remote_name,
            action: FileAction::Upload,
            size: planned.size,
        });
        Ok((record, FileAction::Upload, planned.size))
    }

    /// The file to upload, its size and hash, and whether it is a spool file to delete after.
    async fn prepare_body(
        &self,
        planned: &Planned,
        id: &str,
    ) -> Result<(PathBuf, u64, String, bool)> {
        let local = self.source.local_path(&planned.entry);
        if !self.encrypted()
            && let Some(local) = local
        {
            return Ok((local, planned.size, planned.hash.clone(), false));
        }
        let spool = self.state_dir.join("spool").join(format!("{id}.body"));
        let meta_path = spool.with_extension("json");
        // A spool left by an interrupted run of the same content is reused: its upload session
        // (keyed by the spool's hash) can then resume.
        if let Ok(bytes) = std::fs::read(&meta_path)
            && let Ok(meta) = serde_json::from_slice::<SpoolMeta>(&bytes)
            && meta.plain_hash == planned.hash
            && meta.plain_size == planned.size
        {
            return Ok((spool, meta.body_size, meta.body_hash, true));
        }
        let source = self.source.clone();
        let entry = planned.entry.clone();
        let recipients = self.recipients.clone();
        let spool_path = spool.clone();
        // Only bodies that go through an upload session can be resumed, so only they are made
        // durable and recorded (a single PUT is simply redone).
        let resumable_above = self.client.simple_upload_limit;
        let (body_size, body_hash) = tokio::task::spawn_blocking(move || {
            spool_file(&*source, &entry, &recipients, &spool_path, resumable_above)
        })
        .await
        .map_err(|e| Error::io(&spool, std::io::Error::other(e)))??;
        if body_size <= resumable_above {
            return Ok((spool, body_size, body_hash, true));
        }
        let meta = SpoolMeta {
            plain_size: planned.size,
            plain_hash: planned.hash.clone(),
            body_size,
            body_hash: body_hash.clone(),
        };
        let json = serde_json::to_vec(&meta)
            .map_err(|e| Error::io(&meta_path, std::io::Error::other(e)))?;
        crate::state::write_atomic(&meta_path, &json, 0o600)?;
        Ok((spool, body_size, body_hash, true))
    }

    async fn plan_files(&self) -> Result<Vec<Planned>> {
        let source = self.source.clone();
        let entries = tokio::task::spawn_blocking(move || source.entries())
            .await
            .map_err(|e| Error::Source {
                what: "listing".into(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| Error::Source {
                what: "listing".into(),
                source,
            })?;
        self.emit(ExportEvent::Listed {
            files: entries.len() as u64,
            bytes: entries.iter().map(|e| e.size).sum(),
        });
        let remote = self.remote_files().await?;
        let previous = self.previous_records().await?;
        let mut seen = HashSet::new();
        let mut planned = Vec::with_capacity(entries.len());
        for entry in entries {
            let remote_path = self.remote_path_of(&entry)?;
            if !seen.insert(remote_path.clone()) {
                return Err(Error::InvalidName {
                    path: entry.path.to_string_lossy().into_owned(),
                    reason: format!("maps to `{remote_path}`, like another file of the export"),
                });
            }
            if remote_path.names() == [MANIFEST_NAME] {
                return Err(Error::InvalidName {
                    path: entry.path.to_string_lossy().into_owned(),
                    reason: "is the export manifest's name".into(),
                });
            }
            planned.push((entry, remote_path));
        }
        // Hash in parallel, bounded like the uploads.
        let hashed: Vec<(SourceEntry, RemotePath, u64, String)> =
            futures::stream::iter(planned.into_iter().map(|(entry, remote)| async move {
                let source = self.source.clone();
                let e = entry.clone();
                let (size, hash) = tokio::task::spawn_blocking(move || hash_entry(&*source, &e))
                    .await
                    .map_err(|e| Error::Source {
                        what: "hashing".into(),
                        source: std::io::Error::other(e),
                    })??;
                Ok::<_, Error>((entry, remote, size, hash))
            }))
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        let encrypted = self.encrypted();
        Ok(hashed
            .into_iter()
            .map(|(entry, remote_path, size, hash)| {
                let key = remote_path.to_string();
                let remote_item = remote.get(&key);
                let record = if encrypted {
                    previous
                        .get(&key)
                        .filter(|prev| {
                            prev.size == size
                                && prev.quick_xor_hash == hash
                                && remote_item.is_some_and(|item| {
                                    item.size == prev.remote_size
                                        && item.quick_xor_hash.as_deref()
                                            == Some(prev.remote_quick_xor_hash.as_str())
                                })
                        })
                        .cloned()
                } else {
                    remote_item
                        .filter(|item| {
                            item.size == size
                                && item.quick_xor_hash.as_deref() == Some(hash.as_str())
                        })
                        .map(|item| ManifestEntry {
                            path: entry.path.to_string_lossy().into_owned(),
                            size,
                            quick_xor_hash: hash.clone(),
                            remote_path: key.clone(),
                            remote_size: item.size,
                            remote_quick_xor_hash: hash.clone(),
                        })
                };
                Planned {
                    entry,
                    remote: remote_path,
                    size,
                    hash,
                    action: if record.is_some() {
                        FileAction::Skip
                    } else {
                        FileAction::Upload
                    },
                    record,
                }
            })
            .collect())
    }

    fn remote_path_of(&self, entry: &SourceEntry) -> Result<RemotePath> {
        let mut remote = RemotePath::root();
        let components: Vec<_> = entry.path.components().collect();
        for (i, component) in components.iter().enumerate() {
            let std::path::Component::Normal(name) = component else {
                return Err(Error::Source {
                    what: format!("entry {}", entry.path.display()),
                    source: std::io::Error::other("not a plain relative path"),
                });
            };
            let mut mapped = map_os_name(name, self.names).map_err(|e| match e {
                Error::InvalidName { reason, .. } => Error::InvalidName {
                    path: entry.path.to_string_lossy().into_owned(),
                    reason,
                },
                other => other,
            })?;
            if i + 1 == components.len() && self.encrypted() {
                mapped.push_str(".age");
            }
            remote = remote.join(&mapped)?;
        }
        // The full remote path counts against OneDrive's limit.
        join(&self.folder, &remote)?;
        Ok(remote)
    }

    async fn remote_files(&self) -> Result<HashMap<String, DriveItem>> {
        remote_files(&self.client, &self.drive, &self.folder).await
    }

    /// Records of files exported before: the remote manifest, then the local journal.
    async fn previous_records(&self) -> Result<Journal> {
        let mut records = Journal::new();
        // An unreadable manifest only costs re-uploads.
        match read_manifest(&self.client, &self.drive, &self.folder).await {
            Ok(Some(manifest)) => {
                for entry in manifest.files {
                    records.insert(entry.remote_path.clone(), entry);
                }
            }
            Ok(None) => {}
            Err(Error::InvalidResponse { detail, .. }) => {
                tracing::warn!(%detail, "ignoring an unreadable remote manifest");
            }
            Err(e) => return Err(e),
        }
        match std::fs::read(self.journal_path()) {
            Ok(bytes) => {
                // A torn last line (killed mid-write) is ignored.
                for line in bytes.split(|&b| b == b'\n') {
                    if let Ok(entry) = serde_json::from_slice::<ManifestEntry>(line) {
                        records.insert(entry.remote_path.clone(), entry);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(self.journal_path(), e)),
        }
        Ok(records)
    }

    async fn write_manifest(&self, files: Vec<ManifestEntry>) -> Result<()> {
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            encrypted: self.encrypted(),
            files,
        };
        let local = self.state_dir.join(MANIFEST_NAME);
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::io(&local, std::io::Error::other(e)))?;
        crate::state::write_atomic(&local, &json, 0o600)?;
        let remote = join(&self.folder, &RemotePath::parse(MANIFEST_NAME)?)?;
        self.client
            .upload_file(&self.drive, &remote, &local)
            .with_session_file(self.state_dir.join("sessions").join("manifest.json"))
            .send()
            .await?;
        let _ = std::fs::remove_file(&local);
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct SpoolMeta {
    plain_size: u64,
    plain_hash: String,
    body_size: u64,
    body_hash: String,
}

fn join(base: &RemotePath, rel: &RemotePath) -> Result<RemotePath> {
    let mut out = base.clone();
    for name in rel.names() {
        out = out.join(name)?;
    }
    Ok(out)
}

/// A file name for state kept about one remote path.
fn file_id(remote: &RemotePath) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, remote.to_string().as_bytes());
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn source_error(entry: &SourceEntry, source: std::io::Error) -> Error {
    Error::Source {
        what: format!("reading {}", entry.path.display()),
        source,
    }
}

/// Size and quickXorHash of an entry's plain content.
fn hash_entry(source: &dyn ExportSource, entry: &SourceEntry) -> Result<(u64, String)> {
    if let Some(local) = source.local_path(entry) {
        return hash_file(&local);
    }
    let mut reader = source.open(entry).map_err(|e| source_error(entry, e))?;
    let mut hash = QuickXorHash::new();
    std::io::copy(&mut reader, &mut hash).map_err(|e| source_error(entry, e))?;
    Ok((hash.len(), hash.finalize_base64()))
}

/// Writes through to `inner` and hashes what passes.
struct HashingWriter<W> {
    inner: W,
    hash: QuickXorHash,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Copies (and encrypts, with recipients) an entry to `spool`; returns the spool's size and hash.
fn spool_file(
    source: &dyn ExportSource,
    entry: &SourceEntry,
    recipients: &[crypto_at_rest::age::X25519Recipient],
    spool: &Path,
    sync_above: u64,
) -> Result<(u64, String)> {
    let mut reader = source.open(entry).map_err(|e| source_error(entry, e))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(spool)
        .map_err(|e| Error::io(spool, e))?;
    let mut out = HashingWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        hash: QuickXorHash::new(),
    };
    if recipients.is_empty() {
        std::io::copy(&mut reader, &mut out).map_err(|e| source_error(entry, e))?;
    } else {
        let list: Vec<&dyn crypto_at_rest::age::Recipient> = recipients
            .iter()
            .map(|r| r as &dyn crypto_at_rest::age::Recipient)
            .collect();
        let encryption = |source| Error::Encryption {
            path: entry.path.to_string_lossy().into_owned(),
            source,
        };
        let mut writer = crypto_at_rest::age::Encryptor::new(&list)
            .map_err(encryption)?
            .wrap_output(&mut out)
            .map_err(encryption)?;
        std::io::copy(&mut reader, &mut writer).map_err(|e| source_error(entry, e))?;
        writer.finish().map_err(encryption)?;
    }
    out.flush().map_err(|e| Error::io(spool, e))?;
    let HashingWriter { inner, hash } = out;
    let file = inner
        .into_inner()
        .map_err(|e| Error::io(spool, e.into_error()))?;
    if hash.len() > sync_above {
        file.sync_all().map_err(|e| Error::io(spool, e))?;
    }
    Ok((hash.len(), hash.finalize_base64()))
}

/// Every file under `folder`, by path relative to it (empty if the folder does not exist).
async fn remote_files(
    client: &OneDriveClient,
    drive: &Drive,
    folder: &RemotePath,
) -> Result<HashMap<String, DriveItem>> {
    let mut out = HashMap::new();
    if client
        .get_item(drive, &ItemRef::Path(folder.clone()))
        .await?
        .is_none()
    {
        return Ok(out);
    }
    let mut pending = vec![(ItemRef::Path(folder.clone()), String::new())];
    while let Some((parent, prefix)) = pending.pop() {
        for item in client.list_children(drive, &parent).await? {
            let rel = if prefix.is_empty() {
                item.name.clone()
            } else {
                format!("{prefix}/{}", item.name)
            };
            if item.is_folder {
                pending.push((ItemRef::Id(item.id.clone()), rel));
            } else {
                out.insert(rel, item);
            }
        }
    }
    Ok(out)
}

/// The manifest of the export in `folder`, if there is one.
pub async fn read_manifest(
    client: &OneDriveClient,
    drive: &Drive,
    folder: &RemotePath,
) -> Result<Option<Manifest>> {
    let path = ItemRef::Path(join(folder, &RemotePath::parse(MANIFEST_NAME)?)?);
    let Some(bytes) = client.download(drive, &path).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::invalid_response("read the export manifest", e.to_string()))
}

/// What [`export_status`] found.
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub struct ExportStatus {
    /// The manifest, if the folder has one.
    pub manifest: Option<Manifest>,
    /// Files whose remote size and quickXorHash match the manifest.
    pub verified: u64,
    /// Manifest entries with no remote file.
    pub missing: Vec<String>,
    /// Remote files whose size or quickXorHash differ from the manifest.
    pub mismatched: Vec<String>,
}

/// Checks an export folder against its manifest: every listed file present with the recorded
/// size and quickXorHash (as the server reports them; nothing is downloaded).
pub async fn export_status(
    client: &OneDriveClient,
    drive: &Drive,
    folder: &RemotePath,
) -> Result<ExportStatus> {
    let Some(manifest) = read_manifest(client, drive, folder).await? else {
        return Ok(ExportStatus::default());
    };
    let remote = remote_files(client, drive, folder).await?;
    let mut status = ExportStatus::default();
    for entry in &manifest.files {
        match remote.get(&entry.remote_path) {
            None => status.missing.push(entry.remote_path.clone()),
            Some(item)
                if item.size == entry.remote_size
                    && item.quick_xor_hash.as_deref()
                        == Some(entry.remote_quick_xor_hash.as_str()) =>
            {
                status.verified += 1
            }
            Some(_) => status.mismatched.push(entry.remote_path.clone()),
        }
    }
    status.manifest = Some(manifest);
    Ok(status)
}
