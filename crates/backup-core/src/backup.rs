//! Backup: scan the paths, read changed files through a parallel pipeline, write trees and a
//! snapshot.
//!
//! Pipeline (all stages run at once, joined by bounded channels so memory stays bounded whatever
//! the size of the tree or of one file):
//!
//! ```text
//! readers (N threads: read, chunk, hash, dedup)
//!   -> sealers (N threads: compress, encrypt, append to the open pack)
//!   -> uploaders (2 threads: put pack objects)
//! ```

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};
use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::compress::BlobCompressor;
use crate::error::{Error, Result};
use crate::format::{
    self, BlobKind, ChunkId, FileProblem, GroupRef, IndexFile, IndexPack, Node, NodeKind, Snapshot,
    Summary, Tree,
};
use crate::fsmeta;
use crate::pack::{FinishedPack, PackBuilder};
use crate::pool::{BufferPool, Pooled};
use crate::progress::Progress;
use crate::repo::{Repository, blob_aad, poisoned};

/// Concurrent pack uploads.
const UPLOADERS: usize = 2;

/// Room reserved past the pack size for the pack header (about 70 bytes per blob).
const PACK_SLACK: usize = 256 * 1024;

/// Options for [`backup`]; build with [`BackupOptions::new`] and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    paths: Vec<PathBuf>,
    excludes: Vec<String>,
    exclude_set: GlobSet,
    markers: Vec<String>,
    one_file_system: bool,
    parent: Option<String>,
    auto_parent: bool,
    tags: Vec<String>,
    host: Option<String>,
    threads: usize,
}

impl BackupOptions {
    /// Back up these paths (files or directories); each becomes one entry of the snapshot's root.
    pub fn new<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> Self {
        BackupOptions {
            paths: paths.into_iter().map(Into::into).collect(),
            excludes: Vec::new(),
            exclude_set: GlobSet::empty(),
            markers: Vec::new(),
            one_file_system: false,
            parent: None,
            auto_parent: false,
            tags: Vec::new(),
            host: None,
            threads: 0,
        }
    }

    /// Excludes paths matching a glob: `/abs/path/*.tmp` is anchored at the root; any other
    /// pattern (`*.log`, `www/cache`) matches at any depth.
    pub fn with_exclude(mut self, pattern: impl Into<String>) -> Self {
        self.excludes.push(pattern.into());
        self
    }

    /// Skips every directory that contains a file with this name (e.g. `CACHEDIR.TAG`).
    pub fn with_exclude_if_present(mut self, marker: impl Into<String>) -> Self {
        self.markers.push(marker.into());
        self
    }

    /// Stays on the file system of each given path (mount points are recorded, not entered).
    pub fn with_one_file_system(mut self, yes: bool) -> Self {
        self.one_file_system = yes;
        self
    }

    /// Uses this snapshot (id, prefix or `latest`) as parent: unchanged files are not read.
    pub fn with_parent(mut self, snapshot: impl Into<String>) -> Self {
        self.parent = Some(snapshot.into());
        self
    }

    /// Without an explicit parent, uses the latest snapshot of the same host and paths as parent.
    pub fn with_auto_parent(mut self, yes: bool) -> Self {
        self.auto_parent = yes;
        self
    }

    /// Adds a tag to the snapshot.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Overrides the host name recorded in the snapshot.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Worker threads per stage (default: every core).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Whether the exclude globs match `path` (absolute); valid after [`BackupOptions::build`].
    pub fn is_excluded(&self, path: &Path) -> bool {
        self.exclude_set.is_match(path)
    }

    /// Checks the options and compiles the globs.
    pub fn build(mut self) -> Result<Self> {
        if self.paths.is_empty() {
            return Err(Error::Config("nothing to back up: no paths given".into()));
        }
        let mut builder = GlobSetBuilder::new();
        for pattern in &self.excludes {
            let full = if pattern.starts_with('/') {
                pattern.clone()
            } else {
                format!("**/{pattern}")
            };
            let glob = Glob::new(&full)
                .map_err(|e| Error::Config(format!("exclude pattern {pattern:?}: {e}")))?;
            builder.add(glob);
        }
        self.exclude_set = builder
            .build()
            .map_err(|e| Error::Config(format!("exclude patterns: {e}")))?;
        if self.threads == 0 {
            self.threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        }
        Ok(self)
    }
}

/// One scanned entry.
struct Entry {
    path: PathBuf,
    node: Node,
    /// Children (directories only), indices into the arena.
    children: Vec<usize>,
    /// Metadata seen by the scan (files to read only), to detect change while reading.
    scanned: Option<(u64, i64, i64, u64)>,
}

struct Scan<'a> {
    repo: &'a Repository,
    options: &'a BackupOptions,
    handle: tokio::runtime::Handle,
    entries: Vec<Entry>,
    /// Indices of files that must be read.
    jobs: Vec<usize>,
    job_bytes: u64,
    skipped: Vec<FileProblem>,
    link_groups: HashMap<(u64, u64), u64>,
    unchanged: u64,
}

impl Scan<'_> {
    fn problem(&mut self, path: &Path, error: impl std::fmt::Display) {
        tracing::warn!("skipping {}: {error}", path.display());
        self.skipped.push(FileProblem {
            path: path.to_string_lossy().into_owned(),
            error: error.to_string(),
        });
    }

    /// Scans `path` (named `name` in its parent); returns its arena index, or `None` if excluded
    /// or unreadable.
    fn scan(
        &mut self,
        path: &Path,
        name: &OsStr,
        root_dev: u64,
        parent_node: Option<&Node>,
    ) -> Result<Option<usize>> {
        if self.options.exclude_set.is_match(path) {
            return Ok(None);
        }
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.problem(path, e);
                return Ok(None);
            }
        };
        let mut node = match fsmeta::node_from(name, path, &meta) {
            Ok(n) => n,
            Err(e) => {
                self.problem(path, e);
                return Ok(None);
            }
        };
        if node.kind == NodeKind::File && meta.nlink() > 1 {
            let next = self.link_groups.len() as u64 + 1;
            node.link_group = Some(
                *self
                    .link_groups
                    .entry((meta.dev(), meta.ino()))
                    .or_insert(next),
            );
        }
        let index = self.entries.len();
        let mut scanned = None;
        match node.kind {
            NodeKind::File => {
                let unchanged = parent_node.filter(|p| {
                    p.kind == NodeKind::File
                        && p.size == node.size
                        && p.mtime_ns == node.mtime_ns
                        && p.ctime_ns == node.ctime_ns
                        && p.inode == node.inode
                        && p.content.iter().all(|id| self.repo.has_blob(id))
                });
                if let Some(p) = unchanged {
                    node.content = p.content.clone();
                    self.unchanged += 1;
                } else {
                    scanned = Some((node.size, node.mtime_ns, node.ctime_ns, node.inode));
                    self.jobs.push(index);
                    self.job_bytes += node.size;
                }
            }
            NodeKind::Dir => {}
            _ => {}
        }
        self.entries.push(Entry {
            path: path.to_path_buf(),
            node,
            children: Vec::new(),
            scanned,
        });
        if self.entries[index].node.kind == NodeKind::Dir {
            let cross_device = self.options.one_file_system && meta.dev() != root_dev;
            let marked = self
                .options
                .markers
                .iter()
                .any(|m| std::fs::symlink_metadata(path.join(m)).is_ok());
            if marked {
                self.entries.pop();
                return Ok(None);
            }
            if !cross_device {
                let parent_tree = match parent_node.and_then(|p| p.subtree) {
                    Some(id) if parent_node.is_some_and(|p| p.kind == NodeKind::Dir) => {
                        Some(self.handle.block_on(self.repo.load_tree(&id))?)
                    }
                    _ => None,
                };
                let mut names: Vec<_> = match std::fs::read_dir(path) {
                    Ok(rd) => rd
                        .filter_map(|e| match e {
                            Ok(e) => Some(e.file_name()),
                            Err(e) => {
                                self.problem(path, e);
                                None
                            }
                        })
                        .collect(),
                    Err(e) => {
                        self.problem(path, e);
                        Vec::new()
                    }
                };
                names.sort();
                let mut children = Vec::with_capacity(names.len());
                for child_name in names {
                    let previous = parent_tree.as_ref().and_then(|t| find(t, &child_name));
                    if let Some(c) =
                        self.scan(&path.join(&child_name), &child_name, root_dev, previous)?
                    {
                        children.push(c);
                    }
                }
                self.entries[index].children = children;
            }
        }
        Ok(Some(index))
    }
}

fn find<'t>(tree: &'t Tree, name: &OsStr) -> Option<&'t Node> {
    use std::os::unix::ffi::OsStrExt;
    tree.nodes
        .binary_search_by(|n| n.name.as_slice().cmp(name.as_bytes()))
        .ok()
        .map(|i| &tree.nodes[i])
}

/// What reading one file produced.
struct FileOutcome {
    content: Vec<ChunkId>,
    size: u64,
    changed: Option<String>,
}

/// State shared by the pipeline's threads.
struct Pipeline<'a> {
    repo: &'a Repository,
    handle: tokio::runtime::Handle,
    progress: &'a dyn Progress,
    pending: Mutex<HashSet<ChunkId>>,
    packer: Mutex<PackBuilder>,
    chunk_buffers: Arc<BufferPool>,
    pack_buffers: Arc<BufferPool>,
    written: Mutex<Vec<IndexPack>>,
    chunks_new: AtomicU64,
    bytes_new: AtomicU64,
    bytes_stored: AtomicU64,
}

/// A sealer thread's reusable state.
struct Sealer {
    compressor: BlobCompressor,
    encoded: Vec<u8>,
    /// Small blobs collected for the next group, and (id, start, length) of each.
    group: Vec<u8>,
    members: Vec<(ChunkId, u32, u32)>,
}

struct Blob {
    id: ChunkId,
    kind: BlobKind,
    data: Vec<u8>,
}

impl Pipeline<'_> {
    /// True if this blob must be stored (not in the repository, not already queued).
    fn claim(&self, id: &ChunkId) -> Result<bool> {
        if self.repo.has_blob(id) {
            return Ok(false);
        }
        Ok(self.pending.lock().map_err(poisoned)?.insert(*id))
    }

    fn read_file(
        &self,
        entry: &Entry,
        scratch: &mut Vec<u8>,
        chunks: &Sender<Blob>,
    ) -> Result<FileOutcome> {
        let path = &entry.path;
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut content = Vec::new();
        let keys = &self.repo.keys;
        let size = keys.chunker.stream(
            &file,
            scratch,
            |chunk| {
                let id = keys.chunk_id(chunk);
                content.push(id);
                self.progress.bytes_done(chunk.len() as u64);
                if self.claim(&id)? {
                    let mut data = self.chunk_buffers.take();
                    data.extend_from_slice(chunk);
                    let blob = Blob {
                        id,
                        kind: BlobKind::Data,
                        data,
                    };
                    chunks
                        .send(blob)
                        .map_err(|_| Error::Worker("sealer threads stopped".into()))?;
                }
                Ok(())
            },
            |e| Error::io(path, e),
        )?;
        let after = file.metadata().map_err(|e| Error::io(path, e))?;
        let now = (
            after.size(),
            fsmeta::time_ns(after.mtime(), after.mtime_nsec()),
            fsmeta::time_ns(after.ctime(), after.ctime_nsec()),
            after.ino(),
        );
        let changed = match entry.scanned {
            Some(before) if before != now || size != now.0 => Some(format!(
                "changed while being read (size {} -> {}, read {size} bytes)",
                before.0, now.0
            )),
            _ => None,
        };
        Ok(FileOutcome {
            content,
            size,
            changed,
        })
    }

    /// Compresses, seals and packs blobs until the channel closes. Data blobs smaller than the
    /// chunker's minimum (small files and files' tails) are collected and sealed in groups of
    /// about one average chunk: compressed together they take about a fifth less space than
    /// alone, and cost one envelope instead of dozens.
    fn seal_blobs(&self, blobs: &Receiver<Blob>, packs: &Sender<FinishedPack>) -> Result<()> {
        let chunker = self.repo.config.chunker;
        let mut sealer = Sealer {
            compressor: BlobCompressor::new(self.repo.config.compression_level),
            encoded: Vec::new(),
            group: Vec::new(),
            members: Vec::new(),
        };
        for blob in blobs {
            if blob.kind == BlobKind::Data && blob.data.len() < chunker.min_size as usize {
                sealer
                    .members
                    .push((blob.id, sealer.group.len() as u32, blob.data.len() as u32));
                sealer.group.extend_from_slice(&blob.data);
                self.chunk_buffers.give(blob.data);
                if sealer.group.len() >= chunker.avg_size as usize {
                    self.seal_group(&mut sealer, packs)?;
                }
                continue;
            }
            let raw_length = blob.data.len() as u32;
            let members = [(blob.id, blob.kind, raw_length, None)];
            self.seal_frame(&mut sealer, &blob.id, &blob.data, members, packs)?;
            if blob.kind == BlobKind::Data {
                self.chunk_buffers.give(blob.data);
            }
        }
        self.seal_group(&mut sealer, packs)
    }

    /// Seals the collected small blobs as one group (a lone blob is sealed on its own).
    fn seal_group(&self, sealer: &mut Sealer, packs: &Sender<FinishedPack>) -> Result<()> {
        let group = std::mem::take(&mut sealer.group);
        let members = std::mem::take(&mut sealer.members);
        match members.as_slice() {
            [] => {}
            [(id, _, length)] => {
                let only = [(*id, BlobKind::Data, *length, None)];
                self.seal_frame(sealer, id, &group, only, packs)?;
            }
            _ => {
                let id = self.repo.keys.chunk_id(&group);
                let raw_length = group.len() as u32;
                let refs = members.iter().map(|&(member, start, length)| {
                    let place = GroupRef {
                        id,
                        raw_length,
                        start,
                    };
                    (member, BlobKind::Data, length, Some(place))
                });
                self.seal_frame(sealer, &id, &group, refs, packs)?;
            }
        }
        // Keep the allocation for the next group.
        sealer.group = group;
        sealer.group.clear();
        sealer.members = members;
        sealer.members.clear();
        Ok(())
    }

    /// Compresses and seals `plaintext` bound to `frame_id`, appends it to the open pack with
    /// the blobs it holds, and hands the pack to the uploaders when full.
    fn seal_frame(
        &self,
        sealer: &mut Sealer,
        frame_id: &ChunkId,
        plaintext: &[u8],
        members: impl IntoIterator<Item = (ChunkId, BlobKind, u32, Option<GroupRef>)>,
        packs: &Sender<FinishedPack>,
    ) -> Result<()> {
        let keys = &self.repo.keys;
        let pack_size = self.repo.config.pack_size as usize;
        sealer
            .compressor
            .encode_into(plaintext, &mut sealer.encoded);
        let sealed = keys.cipher.seal(&blob_aad(frame_id), &sealer.encoded)?;
        self.bytes_new
            .fetch_add(plaintext.len() as u64, Ordering::Relaxed);
        let full = {
            let mut packer = self.packer.lock().map_err(poisoned)?;
            // A pack closes before a frame would overflow it, so packs never reallocate; the
            // slack covers the sealed header.
            let full = (packer.len() > 0 && packer.len() + sealed.len() > pack_size)
                .then(|| std::mem::take(&mut *packer));
            let added = packer.add(&sealed, members, || self.pack_buffers.take());
            self.chunks_new.fetch_add(added as u64, Ordering::Relaxed);
            full
        };
        if let Some(mut full) = full {
            if let Some(pack) = full.finish(&keys.cipher)? {
                packs
                    .send(pack)
                    .map_err(|_| Error::Worker("upload threads stopped".into()))?;
            }
        }
        Ok(())
    }

    fn upload(&self, packs: &Receiver<FinishedPack>) -> Result<()> {
        for pack in packs {
            let size = pack.bytes.len() as u64;
            let bytes =
                bytes::Bytes::from_owner(Pooled::new(pack.bytes, self.pack_buffers.clone()));
            self.handle
                .block_on(self.repo.put(&pack.path, bytes, true))?;
            self.repo.add_to_index(&pack.index)?;
            self.written.lock().map_err(poisoned)?.push(pack.index);
            self.bytes_stored.fetch_add(size, Ordering::Relaxed);
        }
        Ok(())
    }
}

fn join<T>(h: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    h.join()
        .map_err(|_| Error::Worker("a pipeline thread panicked".into()))?
}

/// Backs up `options`' paths into `repo`; returns the new snapshot's id and the snapshot.
///
/// Unreadable files are reported through `progress`, left out, and listed in
/// [`Snapshot::skipped`]; files that change while read are kept as read and listed in
/// [`Snapshot::changed`]. The reading pipeline runs on its own threads; the async caller only
/// awaits it, so any tokio runtime flavour works.
pub async fn backup(
    repo: Arc<Repository>,
    options: BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<(String, Snapshot)> {
    let started = Instant::now();
    let time_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let host = options.host.clone().unwrap_or_else(hostname);
    let paths: Vec<String> = options
        .paths
        .iter()
        .map(|p| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let parent = match &options.parent {
        Some(p) => Some(repo.find_snapshot(p).await?),
        None if options.auto_parent => repo
            .snapshots()
            .await?
            .into_iter()
            .rev()
            .find(|(_, s)| s.host == host && s.paths == paths),
        None => None,
    };
    let parent_root = match &parent {
        Some((_, snap)) => Some(repo.load_tree(&snap.tree).await?),
        None => None,
    };
    let handle = tokio::runtime::Handle::current();
    let (tree, mut summary, skipped, changed) = {
        let repo = repo.clone();
        let options = options.clone();
        tokio::task::spawn_blocking(move || {
            run_blocking(
                &repo,
                &options,
                progress.as_ref(),
                handle,
                parent_root.as_ref(),
            )
        })
        .await
        .map_err(|e| Error::Worker(format!("backup pipeline: {e}")))??
    };
    summary.duration_ms = started.elapsed().as_millis() as u64;
    let snapshot = Snapshot {
        time_ns,
        host,
        paths,
        tags: options.tags.clone(),
        parent: parent.map(|(id, _)| id),
        tree,
        summary,
        skipped,
        changed,
    };
    let id = format::random_id();
    repo.put_sealed(&format!("snapshots/{id}"), &snapshot)
        .await?;
    Ok((id, snapshot))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

type Outcome = (ChunkId, Summary, Vec<FileProblem>, Vec<FileProblem>);

fn run_blocking(
    repo: &Repository,
    options: &BackupOptions,
    progress: &dyn Progress,
    handle: tokio::runtime::Handle,
    parent_root: Option<&Tree>,
) -> Result<Outcome> {
    let mut scan = Scan {
        repo,
        options,
        handle: handle.clone(),
        entries: Vec::new(),
        jobs: Vec::new(),
        job_bytes: 0,
        skipped: Vec::new(),
        link_groups: HashMap::new(),
        unchanged: 0,
    };
    let mut roots = Vec::new();
    let mut root_names = HashSet::new();
    for path in &options.paths {
        let abs = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        let meta = std::fs::symlink_metadata(&abs).map_err(|e| Error::io(&abs, e))?;
        let name = abs
            .file_name()
            .ok_or_else(|| {
                Error::Config(format!(
                    "{} has no file name to store it under",
                    abs.display()
                ))
            })?
            .to_os_string();
        if !root_names.insert(name.clone()) {
            return Err(Error::Config(format!(
                "two paths end in the same name {name:?}; back them up separately"
            )));
        }
        let previous = parent_root.and_then(|t| find(t, &name));
        if let Some(i) = scan.scan(&abs, &name, meta.dev(), previous)? {
            roots.push(i);
        }
    }
    progress.start(scan.jobs.len() as u64, scan.job_bytes);
    for p in &scan.skipped {
        progress.problem(&p.path, &p.error);
    }

    let threads = options.threads.max(1);
    let pipeline = Pipeline {
        repo,
        handle,
        progress,
        pending: Mutex::new(HashSet::new()),
        packer: Mutex::new(PackBuilder::default()),
        // Every chunk buffer in flight: one per reader, queued, and per sealer (plus spares).
        chunk_buffers: BufferPool::new(
            repo.config.chunker.max_size as usize,
            4 * options.threads.max(1) + 2,
        ),
        // Packs uploading, handed over and filling.
        pack_buffers: BufferPool::new(repo.config.pack_size as usize + PACK_SLACK, UPLOADERS + 2),
        written: Mutex::new(Vec::new()),
        chunks_new: AtomicU64::new(0),
        bytes_new: AtomicU64::new(0),
        bytes_stored: AtomicU64::new(0),
    };
    let skipped = std::mem::take(&mut scan.skipped);
    let jobs: Vec<(usize, &Entry)> = scan.jobs.iter().map(|&i| (i, &scan.entries[i])).collect();
    let mut trees = TreeBuilder {
        pipeline: &pipeline,
        entries: &scan.entries,
        outcomes: HashMap::new(),
        summary: Summary {
            files_unchanged: scan.unchanged,
            ..Summary::default()
        },
        skipped,
        changed: Vec::new(),
    };
    let root = run_pipeline(&pipeline, &jobs, threads, |blobs, outcomes| {
        trees.outcomes = outcomes;
        trees.tree_of(&roots, blobs)
    })?;
    let TreeBuilder {
        mut summary,
        skipped,
        changed,
        ..
    } = trees;
    let written = std::mem::take(&mut *pipeline.written.lock().map_err(poisoned)?);
    if !written.is_empty() {
        let name = format!("index/{}", format::random_id());
        pipeline
            .handle
            .block_on(repo.put_sealed(&name, &IndexFile { packs: written }))?;
    }
    summary.bytes_read = scan.job_bytes;
    summary.chunks_new = pipeline.chunks_new.load(Ordering::Relaxed);
    summary.bytes_new = pipeline.bytes_new.load(Ordering::Relaxed);
    summary.bytes_stored = pipeline.bytes_stored.load(Ordering::Relaxed);
    Ok((root, summary, skipped, changed))
}

/// Runs readers, sealers and uploaders over `jobs`; when every file is read, `finish` gets the
/// blob channel (for tree blobs) and the per-file outcomes, and its result is returned once
/// everything it queued is uploaded.
fn run_pipeline<T>(
    pipeline: &Pipeline<'_>,
    jobs: &[(usize, &Entry)],
    threads: usize,
    finish: impl FnOnce(&Sender<Blob>, HashMap<usize, Result<FileOutcome>>) -> Result<T>,
) -> Result<T> {
    let next_job = AtomicUsize::new(0);
    std::thread::scope(|s| {
        // Memory bound: `threads` queued chunks, and at most UPLOADERS packs uploading plus one
        // handed over (a zero-capacity channel) plus one filling.
        let (blob_tx, blob_rx) = bounded::<Blob>(threads);
        let (pack_tx, pack_rx) = bounded::<FinishedPack>(0);
        let uploaders: Vec<_> = (0..UPLOADERS)
            .map(|_| {
                let rx = pack_rx.clone();
                s.spawn(move || pipeline.upload(&rx))
            })
            .collect();
        drop(pack_rx);
        let sealers: Vec<_> = (0..threads)
            .map(|_| {
                let rx = blob_rx.clone();
                let tx = pack_tx.clone();
                s.spawn(move || pipeline.seal_blobs(&rx, &tx))
            })
            .collect();
        drop(blob_rx);
        // Twice as many readers as cores: with many small files they wait on open/read.
        let readers: Vec<_> = (0..2 * threads)
            .map(|_| {
                let tx = blob_tx.clone();
                let next = &next_job;
                s.spawn(move || -> Result<Vec<(usize, Result<FileOutcome>)>> {
                    let mut done = Vec::new();
                    let mut scratch = Vec::new();
                    while let Some(&(i, entry)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let outcome = pipeline.read_file(entry, &mut scratch, &tx);
                        if let Err(Error::Worker(w)) = outcome {
                            return Err(Error::Worker(w));
                        }
                        pipeline.progress.file_done();
                        done.push((i, outcome));
                    }
                    Ok(done)
                })
            })
            .collect();
        let mut first_error = None;
        let mut outcomes = HashMap::new();
        for r in readers {
            match join(r) {
                Ok(done) => outcomes.extend(done),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let result = match first_error.take() {
            None => finish(&blob_tx, outcomes),
            Some(e) => Err(e),
        };
        drop(blob_tx);
        let mut errors = Vec::new();
        for h in sealers {
            if let Err(e) = join(h) {
                errors.push(e);
            }
        }
        if errors.is_empty() && result.is_ok() {
            let last = pipeline
                .packer
                .lock()
                .map_err(poisoned)
                .and_then(|mut p| p.finish(&pipeline.repo.keys.cipher));
            match last {
                Ok(Some(pack)) => {
                    if pack_tx.send(pack).is_err() {
                        errors.push(Error::Worker("upload threads stopped".into()));
                    }
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        drop(pack_tx);
        for h in uploaders {
            if let Err(e) = join(h) {
                errors.push(e);
            }
        }
        // Prefer the root cause (an upload or seal failure) over the "channel closed" it caused.
        errors.sort_by_key(|e| matches!(e, Error::Worker(_)));
        match (result, errors.into_iter().next()) {
            (_, Some(e)) => Err(e),
            (r, None) => r,
        }
    })
}

/// Turns scanned entries plus read outcomes into tree blobs, bottom-up.
struct TreeBuilder<'a> {
    pipeline: &'a Pipeline<'a>,
    entries: &'a [Entry],
    outcomes: HashMap<usize, Result<FileOutcome>>,
    summary: Summary,
    skipped: Vec<FileProblem>,
    changed: Vec<FileProblem>,
}

impl TreeBuilder<'_> {
    fn node(&mut self, i: usize, blobs: &Sender<Blob>) -> Result<Option<Node>> {
        let entry = &self.entries[i];
        let mut node = entry.node.clone();
        let lossy = || entry.path.to_string_lossy().into_owned();
        match node.kind {
            NodeKind::File => {
                if entry.scanned.is_some() {
                    match self.outcomes.remove(&i) {
                        Some(Ok(read)) => {
                            node.content = read.content;
                            node.size = read.size;
                            if let Some(what) = read.changed {
                                // Never let a later backup trust this entry's metadata.
                                node.ctime_ns = 0;
                                self.pipeline.progress.problem(&lossy(), &what);
                                self.changed.push(FileProblem {
                                    path: lossy(),
                                    error: what,
                                });
                            }
                        }
                        Some(Err(e)) => {
                            self.pipeline.progress.problem(&lossy(), &e.to_string());
                            self.skipped.push(FileProblem {
                                path: lossy(),
                                error: e.to_string(),
                            });
                            return Ok(None);
                        }
                        None => return Err(Error::Worker(format!("{} was never read", lossy()))),
                    }
                }
                self.summary.files += 1;
                self.summary.bytes += node.size;
            }
            NodeKind::Dir => {
                node.subtree = Some(self.tree_of(&entry.children, blobs)?);
                self.summary.dirs += 1;
            }
            _ => self.summary.others += 1,
        }
        Ok(Some(node))
    }

    fn tree_of(&mut self, children: &[usize], blobs: &Sender<Blob>) -> Result<ChunkId> {
        let mut nodes = Vec::with_capacity(children.len());
        for &c in children {
            if let Some(n) = self.node(c, blobs)? {
                nodes.push(n);
            }
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let data = format::encode(&Tree { nodes });
        let id = self.pipeline.repo.keys.chunk_id(&data);
        if self.pipeline.claim(&id)? {
            blobs
                .send(Blob {
                    id,
                    kind: BlobKind::Tree,
                    data,
                })
                .map_err(|_| Error::Worker("sealer threads stopped".into()))?;
        }
        Ok(id)
    }
}
