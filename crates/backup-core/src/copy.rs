//! Copying snapshots, with their data, into a second repository (a mirror, for example local
//! disk to S3): incremental, resumable, and sending only what the destination lacks.
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::copy::{CopyOptions, copy};
//! use backup_core::{BackupOptions, InitOptions, KeySource, NoProgress, Repository};
//! use object_store::memory::InMemory;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let site = tempfile::tempdir()?;
//! std::fs::write(site.path().join("index.php"), "<?php echo 'hello';")?;
//! let key = KeySource::passphrase("correct horse battery staple");
//! let local = Arc::new(Repository::init(Arc::new(InMemory::new()), "local", &key, InitOptions::new()).await?);
//! backup_core::backup(local.clone(), BackupOptions::builder([site.path()]).build()?, Arc::new(NoProgress)).await?;
//!
//! // The mirror shares the source's chunk keys (`init --copy-params-from`), with its own password.
//! let mirror_key = KeySource::passphrase("another passphrase for the mirror");
//! let options = InitOptions::new().with_params_from(&local);
//! let mirror = Arc::new(Repository::init(Arc::new(InMemory::new()), "mirror", &mirror_key, options).await?);
//!
//! let report = copy(local.clone(), mirror.clone(), &CopyOptions::builder().build()?).await?;
//! assert_eq!(report.copied.len(), 1);
//! // A rerun finds everything there and sends nothing.
//! let again = copy(local, mirror, &CopyOptions::builder().build()?).await?;
//! assert_eq!((again.copied.len(), again.already_present.len(), again.bytes_copied), (0, 1, 0));
//! # Ok(())
//! # }
//! ```
//!
//! # Why the destination shares the source's keys
//!
//! Chunk ids are keyed hashes (FORMAT.md), and cut points come from a keyed gear table, so the
//! same file gives different chunks and ids in two independent repositories: data could only
//! move between them by being decrypted, re-chunked, re-hashed, re-compressed and re-sealed,
//! and every tree rewritten (what restic must do without `init --copy-chunker-params`). A
//! destination created with [`InitOptions::with_params_from`](crate::InitOptions::with_params_from) (the tool's `init
//! --copy-params-from`) instead shares the source's master secret, chunker bounds, pack size
//! and zstd level, wrapped under its own passphrase or key file. Then ids agree, the
//! destination deduplicates against what it already holds, and sealed frames move verbatim:
//! `copy` decrypts them only to verify them (a mirror must not inherit damage) and re-seals
//! nothing but the new packs' headers. Anyone who can open either repository can open both;
//! they hold the same snapshots, so this gives nothing away that a copy does not. Copying
//! into a repository with other keys fails with [`Error::KeysDiffer`].
//!
//! # What is sent, in which order
//!
//! For each selected snapshot, oldest first, that the destination does not hold (snapshots
//! keep their ids, so a rerun skips what an earlier run copied): its trees are walked in the
//! source (a tree already walked for an earlier snapshot of this run is not walked again);
//! every tree and chunk missing from the destination's index is read from the source with
//! ranged reads of just its frame (several packs in flight), verified, and appended to new
//! packs in the destination. A frame holding a group of small blobs goes whole, and every
//! member is indexed. Packs are written create-only, then an index object naming them (one
//! per 16,384 blobs and one at the end), and only then the snapshot object, byte for byte as
//! the source holds it. A copy killed at any point leaves a destination that passes `check`
//! (at worst, packs no index names yet, which `check` lists apart and a prune reclaims), and a
//! rerun completes, sending again only what was not indexed.
//!
//! A snapshot whose data is damaged or missing in the source is not copied: it is listed in
//! [`CopyReport::failed`] with the reason (naming the damaged object), the sound data read
//! for it before the damage was found is kept (indexed), and the other snapshots are copied.
//! Failures of either store are errors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{PutMode, PutOptions};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cipher::MASTER_LEN;
use crate::error::{Error, Result};
use crate::format::{self, BlobKind, ChunkId, GroupRef, IndexFile, IndexPack, Snapshot};
use crate::lock::{LockKind, LockOptions, RepositoryLock};
use crate::pack::PackBuilder;
use crate::repo::{BlobLocation, Repository, get_bytes, list_names};

/// Source packs read at once.
const PACKS_IN_FLIGHT: usize = 4;

/// Destination packs uploaded at once (as a backup's uploaders).
const UPLOADS_IN_FLIGHT: usize = 2;

/// Trees loaded at once while walking a snapshot.
const TREES_IN_FLIGHT: usize = 16;

/// Blob entries per index object written (as a backup does).
const INDEX_ENTRIES: usize = 16 * 1024;

/// A source repository's master secret, held by [`InitOptions`] for
/// [`InitOptions::with_params_from`](crate::InitOptions::with_params_from); never shown by `Debug`.
#[derive(Clone)]
pub(crate) struct SharedMaster(Arc<Zeroizing<[u8; MASTER_LEN]>>);

impl SharedMaster {
    pub(crate) fn of(repo: &Repository) -> Self {
        SharedMaster(Arc::new(Zeroizing::new(*repo.keys.master())))
    }

    pub(crate) fn secret(&self) -> Zeroizing<[u8; MASTER_LEN]> {
        Zeroizing::new(**self.0)
    }
}

impl std::fmt::Debug for SharedMaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedMaster(..)")
    }
}

/// Which snapshots [`copy`] copies, made by [`CopyOptionsBuilder::build`].
#[derive(Debug, Clone)]
pub struct CopyOptions {
    snapshots: Vec<String>,
    hosts: Vec<String>,
    tags: Vec<String>,
}

/// Builder for [`CopyOptions`]; with nothing set, every snapshot is copied.
#[derive(Debug, Clone)]
pub struct CopyOptionsBuilder(CopyOptions);

impl CopyOptions {
    /// Starts options that select every snapshot.
    pub fn builder() -> CopyOptionsBuilder {
        CopyOptionsBuilder(CopyOptions {
            snapshots: Vec::new(),
            hosts: Vec::new(),
            tags: Vec::new(),
        })
    }
}

impl CopyOptionsBuilder {
    /// Copies this snapshot (id, unique prefix, or `latest`: the newest that the host and tag
    /// filters let through); repeatable. Without any, all are candidates.
    pub fn with_snapshot(mut self, id: impl Into<String>) -> Self {
        self.0.snapshots.push(id.into());
        self
    }

    /// Copies only snapshots of this host (repeatable: any of them).
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.0.hosts.push(host.into());
        self
    }

    /// Copies only snapshots with this tag (repeatable: any of them).
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.0.tags.push(tag.into());
        self
    }

    /// Checks the options.
    pub fn build(self) -> Result<CopyOptions> {
        if let Some(empty) = self.0.snapshots.iter().find(|s| s.is_empty()) {
            return Err(Error::Config(format!(
                "copy: empty snapshot id {empty:?} would match every snapshot"
            )));
        }
        Ok(self.0)
    }
}

/// What [`copy`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CopyReport {
    /// Snapshots copied by this run, oldest first.
    pub copied: Vec<String>,
    /// Selected snapshots the destination already held (skipped).
    pub already_present: Vec<String>,
    /// Snapshots not copied because their data is damaged or missing in the source.
    pub failed: Vec<CopyFailure>,
    /// Blobs (trees and chunks) the destination lacked and received.
    pub blobs_copied: u64,
    /// Bytes of sealed frames sent (group frames whole).
    pub bytes_copied: u64,
    /// Pack objects written to the destination.
    pub packs_written: u64,
}

/// A snapshot [`copy`] could not copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CopyFailure {
    /// The snapshot's id.
    pub snapshot: String,
    /// Why (the damaged or missing object).
    pub error: String,
}

/// Copies the selected snapshots of `source`, with every tree and chunk they need that
/// `destination` lacks, into `destination` (see the module docs). `destination` must share
/// the source's keys ([`InitOptions::with_params_from`](crate::InitOptions::with_params_from)), else [`Error::KeysDiffer`].
pub async fn copy(
    source: Arc<Repository>,
    destination: Arc<Repository>,
    options: &CopyOptions,
) -> Result<CopyReport> {
    if source.is_write_only() || destination.is_write_only() {
        return Err(Error::Config(
            "copy does not support write-only repositories (their frames are sealed to the owner's key, not to a shared master secret)".into(),
        ));
    }
    if !source.keys.same_master(&destination.keys) {
        return Err(Error::KeysDiffer {
            source_location: source.location().to_string(),
            destination: destination.location().to_string(),
        });
    }
    // The shared lock a backup takes: a prune of the destination must not delete data this
    // copy deduplicates against or has sent but not yet indexed.
    let lock = LockOptions::builder(LockKind::Shared, "copy").build()?;
    let lock = destination.lock(&lock).await?;
    let result = copy_locked(source, destination, options, &lock).await;
    lock.release_after(result).await
}

async fn copy_locked(
    source: Arc<Repository>,
    destination: Arc<Repository>,
    options: &CopyOptions,
    lock: &RepositoryLock,
) -> Result<CopyReport> {
    let all = source.snapshots().await?;
    let selected = select(&all, options)?;
    let present: HashSet<String> = list_names(destination.store.as_ref(), "snapshots")
        .await?
        .into_iter()
        .filter_map(|n| n.strip_prefix("snapshots/").map(str::to_string))
        .collect();
    let mut report = CopyReport::default();
    // Trees walked for snapshots copied by this run: everything under them is there now.
    let mut walked = HashSet::new();
    for (id, snapshot) in selected {
        if present.contains(id) {
            report.already_present.push(id.clone());
            continue;
        }
        let mut mirror = Mirror {
            source: &source,
            destination: &destination,
            pack: PackBuilder::default(),
            uploads: tokio::task::JoinSet::new(),
            uploaded: Vec::new(),
            entries: 0,
            report: &mut report,
        };
        let copied = mirror.copy_snapshot(id, snapshot, &walked, lock).await;
        if let Err(Error::Corrupt { .. } | Error::NotFound { .. }) = &copied {
            // What was verified and sent before the damage is indexed, so it is neither
            // garbage nor sent again.
            mirror.close_pack().await?;
            mirror.write_index().await?;
        }
        match copied {
            Ok(trees) => {
                walked.extend(trees);
                report.copied.push(id.clone());
            }
            Err(e @ (Error::Corrupt { .. } | Error::NotFound { .. })) => {
                tracing::warn!("copy: snapshot {id} not copied: {e}");
                report.failed.push(CopyFailure {
                    snapshot: id.clone(),
                    error: crate::report(&e),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// The snapshots `options` select, oldest first, each once.
fn select<'a>(
    all: &'a [(String, Snapshot)],
    options: &CopyOptions,
) -> Result<Vec<&'a (String, Snapshot)>> {
    let passes = |s: &Snapshot| {
        (options.hosts.is_empty() || options.hosts.contains(&s.host))
            && (options.tags.is_empty() || options.tags.iter().any(|t| s.tags.contains(t)))
    };
    let mut chosen: Vec<&(String, Snapshot)> = Vec::new();
    if options.snapshots.is_empty() {
        chosen.extend(all);
    }
    for wanted in &options.snapshots {
        let matching: Vec<_> = if wanted == "latest" {
            all.iter()
                .rev()
                .find(|(_, s)| passes(s))
                .into_iter()
                .collect()
        } else {
            all.iter()
                .filter(|(id, _)| id.starts_with(wanted))
                .collect()
        };
        match matching.as_slice() {
            [one] => chosen.push(one),
            [] => {
                return Err(Error::NotFound {
                    what: format!("snapshot {wanted} in the source repository"),
                });
            }
            many => {
                return Err(Error::Config(format!(
                    "snapshot prefix {wanted} is ambiguous ({} match)",
                    many.len()
                )));
            }
        }
    }
    chosen.retain(|(_, s)| passes(s));
    chosen.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
    chosen.dedup_by(|a, b| a.0 == b.0);
    Ok(chosen)
}

/// One frame of a source pack to copy: where it is, and the blobs it holds.
struct Frame {
    length: u32,
    members: Vec<Member>,
}

/// A blob in a frame: id, kind, plaintext length, place in its group.
type Member = (ChunkId, BlobKind, u32, Option<GroupRef>);

/// Copies one snapshot at a time into the destination.
struct Mirror<'a> {
    source: &'a Arc<Repository>,
    destination: &'a Arc<Repository>,
    pack: PackBuilder,
    /// Packs being uploaded.
    uploads: tokio::task::JoinSet<Result<IndexPack>>,
    /// Packs uploaded but in no index object yet.
    uploaded: Vec<IndexPack>,
    /// Blob entries in `uploaded`.
    entries: usize,
    report: &'a mut CopyReport,
}

impl Mirror<'_> {
    /// Copies snapshot `id`'s missing data, then the snapshot; returns the trees it walked.
    async fn copy_snapshot(
        &mut self,
        id: &str,
        snapshot: &Snapshot,
        walked: &HashSet<ChunkId>,
        lock: &RepositoryLock,
    ) -> Result<HashSet<ChunkId>> {
        let (needed, trees) = self.walk(snapshot.tree, walked).await?;
        let frames = self.frames(&needed)?;
        let source = self.source.clone();
        // Spawned, so reads go on while frames are packed and uploaded.
        let mut fetched = futures::stream::iter(frames)
            .map(|(pack, frames)| {
                let task = tokio::spawn(fetch(source.clone(), pack, frames));
                async move {
                    task.await
                        .map_err(|e| Error::Worker(format!("reading source packs: {e}")))?
                }
            })
            .buffered(PACKS_IN_FLIGHT);
        while let Some(frames) = fetched.try_next().await? {
            for (bytes, members) in frames {
                self.add(bytes, members).await?;
            }
        }
        drop(fetched);
        self.close_pack().await?;
        self.write_index().await?;
        // The data is indexed: now the snapshot, byte for byte (same keys, same name).
        lock.check()?;
        let name = format!("snapshots/{id}");
        let sealed = get_bytes(self.source.store.as_ref(), &name).await?;
        match self
            .destination
            .store
            .put_opts(
                &ObjectPath::from(name.as_str()),
                sealed.into(),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            // Copied meanwhile by another run: the same bytes.
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(trees),
            Err(e) => Err(Error::store(name, e)),
        }
    }

    /// The blobs under `root` that the destination lacks, with their kinds, and the trees
    /// walked (those in `walked` are not walked again).
    async fn walk(
        &self,
        root: ChunkId,
        walked: &HashSet<ChunkId>,
    ) -> Result<(HashMap<ChunkId, BlobKind>, HashSet<ChunkId>)> {
        let mut needed = HashMap::new();
        let mut seen = HashSet::new();
        let mut frontier = Vec::new();
        if !walked.contains(&root) {
            seen.insert(root);
            frontier.push(root);
        }
        while !frontier.is_empty() {
            let source = self.source;
            let trees: Vec<_> = futures::stream::iter(std::mem::take(&mut frontier))
                .map(|id| async move { source.load_tree(&id).await.map(|tree| (id, tree)) })
                .buffer_unordered(TREES_IN_FLIGHT)
                .try_collect()
                .await?;
            for (id, tree) in trees {
                if !self.destination.has_blob(&id) {
                    needed.insert(id, BlobKind::Tree);
                }
                for node in tree.nodes {
                    for chunk in node.content {
                        if !self.destination.has_blob(&chunk) {
                            needed.insert(chunk, BlobKind::Data);
                        }
                    }
                    if let Some(sub) = node.subtree
                        && !walked.contains(&sub)
                        && seen.insert(sub)
                    {
                        frontier.push(sub);
                    }
                }
            }
        }
        Ok((needed, seen))
    }

    /// The source frames holding `needed`, by pack and offset. A grouped blob brings its
    /// whole group, with every member the source's index places in it.
    fn frames(
        &self,
        needed: &HashMap<ChunkId, BlobKind>,
    ) -> Result<BTreeMap<Arc<str>, BTreeMap<u32, Frame>>> {
        let mut packs: BTreeMap<Arc<str>, BTreeMap<u32, Frame>> = BTreeMap::new();
        let mut groups = false;
        for (id, kind) in needed {
            let loc = self.source.locate(id)?;
            let frame = packs
                .entry(loc.pack.clone())
                .or_default()
                .entry(loc.offset)
                .or_insert_with(|| Frame {
                    length: loc.length,
                    members: Vec::new(),
                });
            match loc.group {
                None => frame.members.push((*id, *kind, loc.raw_length, None)),
                Some(_) => groups = true,
            }
        }
        if groups {
            let index = self.source.index.read().map_err(crate::repo::poisoned)?;
            for (id, loc) in index.iter() {
                if let Some(group) = loc.group
                    && let Some(frame) = packs
                        .get_mut(&loc.pack)
                        .and_then(|f| f.get_mut(&loc.offset))
                    && frame.length == loc.length
                {
                    // Groups hold file data only (FORMAT.md).
                    frame
                        .members
                        .push((*id, BlobKind::Data, loc.raw_length, Some(group)));
                }
            }
        }
        for frame in packs.values_mut().flat_map(BTreeMap::values_mut) {
            frame.members.sort_by_key(|m| (m.3.map(|g| g.start), m.0));
        }
        Ok(packs)
    }

    /// Appends one verified frame to the open pack, closing the pack first when the frame
    /// would overflow it.
    async fn add(&mut self, frame: Bytes, members: Vec<Member>) -> Result<()> {
        let limit = self.destination.config.pack_size as usize;
        if self.pack.len() > 0
            && self.pack.len() + frame.len() + self.pack.header_bound(members.len()) > limit
        {
            self.close_pack().await?;
        }
        self.report.blobs_copied += members.len() as u64;
        self.report.bytes_copied += frame.len() as u64;
        self.pack.add(
            |out| {
                out.extend_from_slice(&frame);
                Ok(())
            },
            members,
            || Vec::with_capacity(limit + 64 * 1024),
        )?;
        Ok(())
    }

    /// Seals the open pack's header and starts its upload (create-only), once fewer than
    /// [`UPLOADS_IN_FLIGHT`] are under way.
    async fn close_pack(&mut self) -> Result<()> {
        let Some(pack) = self.pack.finish(&self.destination.keys.cipher)? else {
            return Ok(());
        };
        while self.uploads.len() >= UPLOADS_IN_FLIGHT {
            self.finish_upload().await?;
        }
        let destination = self.destination.clone();
        self.uploads.spawn(async move {
            let bytes = Bytes::from(pack.bytes).slice(pack.start..);
            destination.put(&pack.path, bytes, true).await?;
            Ok(pack.index)
        });
        if self.entries >= INDEX_ENTRIES {
            self.write_index().await?;
        }
        Ok(())
    }

    /// Waits for one upload to end.
    async fn finish_upload(&mut self) -> Result<()> {
        if let Some(done) = self.uploads.join_next().await {
            let index = done.map_err(|e| Error::Worker(format!("uploading a pack: {e}")))??;
            self.report.packs_written += 1;
            self.entries += index.entries.len();
            self.uploaded.push(index);
        }
        Ok(())
    }

    /// Writes an index object naming the packs uploaded since the last one, once every
    /// upload under way has ended (an index never names a pack not yet stored).
    async fn write_index(&mut self) -> Result<()> {
        while !self.uploads.is_empty() {
            self.finish_upload().await?;
        }
        if self.uploaded.is_empty() {
            return Ok(());
        }
        let packs = std::mem::take(&mut self.uploaded);
        self.entries = 0;
        let name = format!("index/{}", format::random_id());
        let file = IndexFile { packs };
        self.destination.put_sealed(&name, &file).await?;
        for pack in &file.packs {
            self.destination.add_to_index(pack)?;
        }
        Ok(())
    }
}

/// Reads the wanted frames of one source pack (ranged reads, merged by the store when close)
/// and verifies every blob in them off the async runtime.
async fn fetch(
    source: Arc<Repository>,
    pack: Arc<str>,
    frames: BTreeMap<u32, Frame>,
) -> Result<Vec<(Bytes, Vec<Member>)>> {
    let path = format::pack_path(&pack);
    let ranges: Vec<_> = frames
        .iter()
        .map(|(offset, f)| u64::from(*offset)..u64::from(*offset) + u64::from(f.length))
        .collect();
    let bytes = source
        .store
        .get_ranges(&ObjectPath::from(path.as_str()), &ranges)
        .await
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => Error::NotFound {
                what: format!("pack {path} (indexed, but missing from the store)"),
            },
            e => Error::store(&path, e),
        })?;
    tokio::task::spawn_blocking(move || {
        frames
            .into_iter()
            .zip(bytes)
            .map(|((offset, frame), bytes)| {
                verify(&source, &pack, &path, offset, &frame, &bytes)?;
                Ok((bytes, frame.members))
            })
            .collect()
    })
    .await
    .map_err(|e| Error::Worker(format!("verifying copied frames: {e}")))?
}

/// Opens and checks every blob of one frame against its id.
fn verify(
    source: &Repository,
    pack: &Arc<str>,
    path: &str,
    offset: u32,
    frame: &Frame,
    bytes: &[u8],
) -> Result<()> {
    let location = |raw_length, group| BlobLocation {
        pack: pack.clone(),
        offset,
        length: frame.length,
        raw_length,
        group,
    };
    let mut decoded_group = None;
    for &(id, _, raw_length, group) in &frame.members {
        match group {
            None => {
                source.decode_blob(&id, &location(raw_length, None), path, bytes)?;
            }
            Some(group) => {
                if decoded_group.is_none() {
                    decoded_group = Some(source.open_group(&group, path, bytes)?);
                }
                let decoded = decoded_group.as_deref().unwrap_or_default();
                source.cut_member(&id, &location(raw_length, Some(group)), path, decoded)?;
            }
        }
    }
    Ok(())
}
