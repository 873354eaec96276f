//! Repairing a damaged repository: rebuilding the index from the packs, and rewriting
//! snapshots so that they keep what can still be reached.
//!
//! * [`repair_index`] reads the header at the end of every pack (FORMAT.md keeps them for
//!   this) and writes a new index listing every pack whose header opens, so a lost or damaged
//!   index object no longer makes intact packs unreachable. A pack whose header is damaged is
//!   reported; the entries an old, readable index object gives for it are kept (its other
//!   blobs stay reachable). The old index objects are deleted only once the new ones are
//!   written (every store put is durable), so a repair killed at any point leaves a usable
//!   index: the old one, or the old and the new.
//! * [`repair_snapshots`] walks every snapshot: a directory whose tree is missing or damaged,
//!   and a file any of whose chunks is missing or damaged (with
//!   [`RepairOptionsBuilder::with_read_data`], every chunk is read and verified; otherwise a
//!   chunk counts as missing when no index lists it or its pack is gone), are dropped, and
//!   the rest is written as a new snapshot tagged `repaired` (same time, host and paths), saved
//!   before the damaged one is deleted. A snapshot whose root tree cannot be read keeps
//!   nothing and is deleted. The report names every dropped path by snapshot.
//!
//! Run `repair index` first when index objects are damaged: a blob that only a lost index
//! listed would otherwise count as missing. With [`RepairOptionsBuilder::with_dry_run`]
//! nothing is written or deleted and the report says what would be.
//!
//! Neither takes a lock: do not run them beside a prune (a backup beside them is safe: its
//! new index objects are not among those `repair index` deletes).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde::Serialize;

use crate::compress::BlobCompressor;
use crate::error::{Error, Result};
use crate::format::{self, BlobKind, ChunkId, IndexFile, IndexPack, NodeKind, PackEntry, Tree};
use crate::pack::PackBuilder;
use crate::repo::{Repository, blob_aad, is_object_name, list_names};

/// Blob entries per index object a repair writes (as a backup does).
const INDEX_ENTRIES: usize = 16 * 1024;

/// The tag a rewritten snapshot gets.
pub const REPAIRED_TAG: &str = "repaired";

/// Options for [`repair_index`] and [`repair_snapshots`].
#[derive(Debug, Clone)]
pub struct RepairOptions {
    dry_run: bool,
    read_data: bool,
    loads: usize,
}

/// Builds [`RepairOptions`].
#[derive(Debug, Clone)]
pub struct RepairOptionsBuilder(RepairOptions);

impl RepairOptions {
    /// Options that write the repair; see the builder's methods.
    pub fn builder() -> RepairOptionsBuilder {
        RepairOptionsBuilder(RepairOptions {
            dry_run: false,
            read_data: false,
            loads: 8,
        })
    }
}

impl RepairOptionsBuilder {
    /// Only report what would be written and deleted.
    pub fn with_dry_run(mut self, yes: bool) -> Self {
        self.0.dry_run = yes;
        self
    }

    /// `repair snapshots`: read and verify every chunk a snapshot references, and drop files
    /// with damaged ones too (not only missing ones).
    pub fn with_read_data(mut self, yes: bool) -> Self {
        self.0.read_data = yes;
        self
    }

    /// Pack headers read at once by `repair index` (default 8).
    pub fn with_parallel_loads(mut self, loads: usize) -> Self {
        self.0.loads = loads;
        self
    }

    /// Checks the options.
    pub fn build(self) -> Result<RepairOptions> {
        if self.0.loads == 0 {
            return Err(Error::Config(
                "repair: parallel loads must be at least 1".into(),
            ));
        }
        Ok(self.0)
    }
}

/// A damaged object and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub struct Damage {
    /// The object (`data/…`, `index/…`).
    pub object: String,
    /// What is wrong.
    pub problem: String,
}

/// What [`repair_index`] did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct IndexRepairReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Packs in the store.
    pub packs: usize,
    /// Packs the new index lists.
    pub packs_indexed: usize,
    /// Blob entries in the new index.
    pub blobs: usize,
    /// Packs that were in no readable index object and are now indexed.
    pub packs_recovered: Vec<String>,
    /// Damaged packs and index objects.
    pub damaged: Vec<Damage>,
    /// Packs with a damaged header whose entries were kept from an old index object.
    pub kept_from_old_index: Vec<String>,
    /// Packs an old index listed that are missing from the store (dropped from the index).
    pub missing_packs: Vec<String>,
    /// Index objects written.
    pub written: Vec<String>,
    /// Old index objects deleted (or, in a dry run, that would be).
    pub removed: Vec<String>,
}

/// Rebuilds the index from the pack headers; see the [module documentation](self).
pub async fn repair_index(
    repo: Arc<Repository>,
    options: &RepairOptions,
) -> Result<IndexRepairReport> {
    // Pack headers and snapshots are sealed to the owner: a host would take them for damage.
    repo.refuse_if_write_only("repair index")?;
    under_lock(
        &repo,
        options,
        "repair index",
        repair_index_locked(repo.clone(), options),
    )
    .await
}

/// Runs `work` (a repair) under the exclusive lock, as prune does, after refusing an
/// append-only handle; a dry run changes nothing and takes no lock.
async fn under_lock<T>(
    repo: &Repository,
    options: &RepairOptions,
    command: &str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    repo.refuse_if_append_only("repair")?;
    if options.dry_run {
        return work.await;
    }
    let lock =
        crate::lock::LockOptions::builder(crate::lock::LockKind::Exclusive, command).build()?;
    let lock = repo.lock(&lock).await?;
    let result = work.await;
    lock.release_after(result).await
}

/// [`repair_index`] for a caller that already holds the exclusive lock (a heal).
pub(crate) async fn repair_index_locked(
    repo: Arc<Repository>,
    options: &RepairOptions,
) -> Result<IndexRepairReport> {
    let mut report = IndexRepairReport {
        dry_run: options.dry_run,
        ..IndexRepairReport::default()
    };
    // The old index objects first, then the packs: every pack an old index lists was
    // written before it, so the pack listing holds it (unless it is really gone).
    let old: Vec<String> = list_names(repo.store.as_ref(), "index")
        .await?
        .into_iter()
        .filter(|name| is_object_name("index", name))
        .collect();
    let mut old_packs: HashMap<String, IndexPack> = HashMap::new();
    for name in &old {
        match repo.get_sealed::<IndexFile>(name).await {
            Ok(file) => {
                for pack in file.packs {
                    old_packs.insert(pack.id.clone(), pack);
                }
            }
            Err(Error::Corrupt { reason, .. }) => report.damaged.push(Damage {
                object: name.clone(),
                problem: reason,
            }),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let sizes = pack_sizes(&repo).await?;
    report.packs = sizes.len();
    let headers: Vec<(String, u64, std::result::Result<Vec<PackEntry>, String>)> =
        futures::stream::iter(sizes.iter())
            .map(|(id, &size)| {
                let repo = repo.clone();
                async move {
                    let header = read_header(&repo, id, size).await?;
                    Ok::<_, Error>((id.clone(), size, header))
                }
            })
            .buffer_unordered(options.loads)
            .try_collect()
            .await?;
    let mut packs = Vec::new();
    for (id, size, header) in headers {
        let path = format::pack_path(&id);
        match header {
            Ok(mut entries) => {
                let before = entries.len();
                // An entry outside the pack would send readers past its end.
                entries.retain(|e| u64::from(e.offset) + u64::from(e.length) + 4 <= size);
                if entries.len() < before {
                    report.damaged.push(Damage {
                        object: format!("{path} (header)"),
                        problem: format!(
                            "{} entries place blobs outside the pack; dropped",
                            before - entries.len()
                        ),
                    });
                }
                if !old_packs.contains_key(&id) {
                    report.packs_recovered.push(path);
                }
                packs.push(IndexPack { id, size, entries });
            }
            Err(problem) => {
                report.damaged.push(Damage {
                    object: format!("{path} (header)"),
                    problem,
                });
                if let Some(pack) = old_packs.get(&id) {
                    report.kept_from_old_index.push(path);
                    packs.push(IndexPack {
                        id,
                        size,
                        entries: pack.entries.clone(),
                    });
                }
            }
        }
    }
    report.missing_packs = old_packs
        .keys()
        .filter(|id| !sizes.contains_key(*id))
        .map(|id| format::pack_path(id))
        .collect();
    packs.sort_by(|a, b| a.id.cmp(&b.id));
    report.packs_indexed = packs.len();
    report.blobs = packs.iter().map(|p| p.entries.len()).sum();
    for list in [
        &mut report.packs_recovered,
        &mut report.kept_from_old_index,
        &mut report.missing_packs,
    ] {
        list.sort();
    }
    report.damaged.sort();
    report.removed = old;
    if options.dry_run {
        return Ok(report);
    }
    // Write the new index in full before removing any old object.
    let mut batch: Vec<IndexPack> = Vec::new();
    let mut entries = 0;
    for pack in &packs {
        entries += pack.entries.len();
        batch.push(pack.clone());
        if entries >= INDEX_ENTRIES {
            report.written.push(write_index(&repo, &mut batch).await?);
            entries = 0;
        }
    }
    if !batch.is_empty() {
        report.written.push(write_index(&repo, &mut batch).await?);
    }
    for name in &report.removed {
        match repo.store.delete(&ObjectPath::from(name.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::store(name, e)),
        }
    }
    repo.replace_index(&packs, report.written.len())?;
    if let Ok(mut skipped) = repo.skipped.lock() {
        skipped.retain(|name, _| !report.removed.contains(name));
    }
    Ok(report)
}

/// Writes `batch` as one index object (emptying it) and returns its name.
async fn write_index(repo: &Repository, batch: &mut Vec<IndexPack>) -> Result<String> {
    let name = format!("index/{}", format::random_id());
    let packs = std::mem::take(batch);
    repo.put_sealed(&name, &IndexFile { packs }).await?;
    Ok(name)
}

/// The packs in the store, by id, with their sizes (other names under `data/` are ignored).
async fn pack_sizes(repo: &Repository) -> Result<HashMap<String, u64>> {
    let mut sizes = HashMap::new();
    let mut listing = repo.store.list(Some(&ObjectPath::from("data")));
    while let Some(meta) = listing
        .try_next()
        .await
        .map_err(|e| Error::store("data/", e))?
    {
        let name = meta.location.to_string();
        if let Some((_, id)) = name.rsplit_once('/')
            && format::pack_path(id) == name
            && is_object_name("x", &format!("x/{id}"))
        {
            sizes.insert(id.to_string(), meta.size);
        }
    }
    Ok(sizes)
}

/// Pack `id`'s header entries, or what is wrong with it; errors are the store failing.
async fn read_header(
    repo: &Repository,
    id: &str,
    size: u64,
) -> Result<std::result::Result<Vec<PackEntry>, String>> {
    let path = format::pack_path(id);
    let object = ObjectPath::from(path.as_str());
    let Some(len_at) = size.checked_sub(4) else {
        return Ok(Err("shorter than its length field".into()));
    };
    let len = match repo.store.get_range(&object, len_at..size).await {
        Ok(b) if b.len() == 4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        Ok(_) => return Ok(Err("shorter than the store says".into())),
        Err(object_store::Error::NotFound { .. }) => return Ok(Err("vanished".into())),
        Err(e) => return Err(Error::store(&path, e)),
    };
    let Some(start) = len_at.checked_sub(u64::from(len)) else {
        return Ok(Err("its header length points outside the pack".into()));
    };
    let tail = match repo.store.get_range(&object, start..size).await {
        Ok(b) => b,
        Err(object_store::Error::NotFound { .. }) => return Ok(Err("vanished".into())),
        Err(e) => return Err(Error::store(&path, e)),
    };
    Ok(repo.pack_header(&path, &tail))
}

/// A path dropped from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub struct DroppedPath {
    /// The path inside the snapshot (escaped as `ls` prints it); `/` is the whole snapshot.
    pub path: String,
    /// The damaged or missing object (`data/… (blob …)`, `blob …`).
    pub object: String,
    /// What is wrong with it.
    pub problem: String,
}

/// One damaged snapshot and what its repair did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RepairedSnapshot {
    /// The damaged snapshot's id.
    pub snapshot: String,
    /// The new snapshot that replaces it (none in a dry run, or when nothing could be kept).
    pub new_snapshot: Option<String>,
    /// Whether nothing could be kept (its root tree is unreadable): the snapshot is deleted.
    pub removed: bool,
    /// What was dropped.
    pub dropped: Vec<DroppedPath>,
}

/// What [`repair_snapshots`] did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct SnapshotRepairReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Snapshots looked at.
    pub snapshots: usize,
    /// The damaged ones.
    pub repaired: Vec<RepairedSnapshot>,
    /// Snapshot objects that cannot be read at all (left alone), with the reason.
    pub unreadable: Vec<Damage>,
    /// Trees written for the rewritten snapshots.
    pub trees_written: usize,
}

/// A damaged or missing object and what is wrong with it.
type Fault = (String, String);

/// A tree's repair, or why the tree cannot be read at all.
type TreeOutcome = std::result::Result<TreeFix, Fault>;

/// A tree's repair, cached by tree id: its replacement (`None`: unchanged) and the paths
/// dropped below it, relative to it.
#[derive(Clone)]
struct TreeFix {
    new_id: Option<ChunkId>,
    dropped: Vec<DroppedPath>,
}

/// State of one [`repair_snapshots`] run.
struct SnapshotRepair<'a> {
    repo: &'a Repository,
    read_data: bool,
    pack_sizes: HashMap<String, u64>,
    /// Chunk id -> what is wrong with it (`None`: sound).
    chunks: HashMap<ChunkId, Option<Fault>>,
    /// Tree id -> its repair; `Err` when the tree itself cannot be read.
    trees: HashMap<ChunkId, TreeOutcome>,
    /// New trees to store.
    new_trees: Vec<(ChunkId, Vec<u8>)>,
    stored: BTreeSet<ChunkId>,
}

impl SnapshotRepair<'_> {
    /// What is wrong with blob `id`, if anything.
    async fn chunk_problem(&mut self, id: &ChunkId) -> Result<Option<Fault>> {
        if let Some(known) = self.chunks.get(id) {
            return Ok(known.clone());
        }
        let problem = match self.locate(id) {
            Err(problem) => Some(problem),
            Ok(()) if self.read_data => match self.repo.load_blob(id).await {
                Ok(_) => None,
                Err(Error::Corrupt { object, reason }) => Some((object, reason)),
                Err(Error::NotFound { what }) => Some((format!("blob {id}"), what)),
                Err(e) => return Err(e),
            },
            Ok(()) => None,
        };
        self.chunks.insert(*id, problem.clone());
        Ok(problem)
    }

    /// Whether blob `id` is indexed, in a pack the store holds, and within it.
    fn locate(&self, id: &ChunkId) -> std::result::Result<(), Fault> {
        let loc = self
            .repo
            .locate(id)
            .map_err(|e| (format!("blob {id}"), crate::report(&e)))?;
        let object = format!("{} (blob {id})", format::pack_path(&loc.pack));
        match self.pack_sizes.get(&*loc.pack) {
            None => Err((object, "its pack is missing from the store".into())),
            Some(&size) if u64::from(loc.offset) + u64::from(loc.length) > size => {
                Err((object, "lies outside its pack".into()))
            }
            Some(_) => Ok(()),
        }
    }

    /// Repairs tree `id`; `Err` (object, problem) when it cannot be read at all.
    fn tree<'s>(
        &'s mut self,
        id: ChunkId,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<TreeOutcome>> + Send + 's>> {
        Box::pin(async move {
            if let Some(known) = self.trees.get(&id) {
                return Ok(known.clone());
            }
            let outcome = self.fix_tree(id).await?;
            self.trees.insert(id, outcome.clone());
            Ok(outcome)
        })
    }

    async fn fix_tree(&mut self, id: ChunkId) -> Result<TreeOutcome> {
        if let Err(problem) = self.locate(&id) {
            return Ok(Err(problem));
        }
        let tree = match self.repo.load_tree(&id).await {
            Ok(tree) => tree,
            Err(e @ (Error::Corrupt { .. } | Error::NotFound { .. })) => {
                let object = match self.repo.locate(&id) {
                    Ok(loc) => format!("{} (tree {id})", format::pack_path(&loc.pack)),
                    Err(_) => format!("tree {id}"),
                };
                let problem = match e {
                    Error::Corrupt { reason, .. } => reason,
                    other => crate::report(&other),
                };
                return Ok(Err((object, problem)));
            }
            Err(e) => return Err(e),
        };
        let mut dropped = Vec::new();
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        let mut changed = false;
        for mut node in tree.nodes {
            let name = crate::ops::escape_path(&node.name);
            let mut drop = |object: String, problem: String| {
                dropped.push(DroppedPath {
                    path: format!("/{name}"),
                    object,
                    problem,
                });
            };
            match node.kind {
                NodeKind::Dir => match node.subtree {
                    Some(subtree) => match self.tree(subtree).await? {
                        Ok(fix) => {
                            if let Some(new_id) = fix.new_id {
                                node.subtree = Some(new_id);
                                changed = true;
                            }
                            dropped.extend(fix.dropped.into_iter().map(|d| DroppedPath {
                                path: format!("/{name}{}", d.path),
                                ..d
                            }));
                        }
                        Err((object, problem)) => {
                            drop(object, problem);
                            changed = true;
                            continue;
                        }
                    },
                    None => {
                        drop(format!("tree {id}"), "directory without a subtree".into());
                        changed = true;
                        continue;
                    }
                },
                NodeKind::File => {
                    let mut bad = None;
                    for chunk in &node.content {
                        if let Some(problem) = self.chunk_problem(chunk).await? {
                            bad = Some(problem);
                            break;
                        }
                    }
                    if let Some((object, problem)) = bad {
                        drop(object, problem);
                        changed = true;
                        continue;
                    }
                }
                _ => {}
            }
            nodes.push(node);
        }
        if !changed {
            return Ok(Ok(TreeFix {
                new_id: None,
                dropped,
            }));
        }
        let data = format::encode(&Tree { nodes });
        let new_id = self.repo.keys.chunk_id(&data);
        if !self.repo.has_blob(&new_id) && self.stored.insert(new_id) {
            self.new_trees.push((new_id, data));
        }
        Ok(Ok(TreeFix {
            new_id: Some(new_id),
            dropped,
        }))
    }

    /// Packs and uploads the new trees, then writes an index object for them.
    async fn store_trees(&mut self) -> Result<()> {
        let repo = self.repo;
        let pack_size = repo.config.pack_size as usize;
        let mut compressor = BlobCompressor::new(repo.config.compression_level);
        let mut encoded = Vec::new();
        let mut packer = PackBuilder::default();
        let mut written = Vec::new();
        let trees = std::mem::take(&mut self.new_trees);
        let last = trees.len().saturating_sub(1);
        for (i, (id, data)) in trees.into_iter().enumerate() {
            compressor.encode_into(&data, &mut encoded);
            let seal =
                |out: &mut Vec<u8>| repo.keys.cipher.seal_append(&blob_aad(&id), &encoded, out);
            let member = [(id, BlobKind::Tree, data.len() as u32, None)];
            packer.add(seal, member, || Vec::with_capacity(pack_size + 4096))?;
            if (packer.len() + packer.header_bound(0) >= pack_size || i == last)
                && let Some(pack) = packer.finish(&repo.keys.cipher)?
            {
                let bytes = bytes::Bytes::from(pack.bytes).slice(pack.start..);
                repo.put(&pack.path, bytes, true).await?;
                repo.add_to_index(&pack.index)?;
                written.push(pack.index);
            }
        }
        if !written.is_empty() {
            write_index(repo, &mut written).await?;
        }
        Ok(())
    }
}

/// Rewrites damaged snapshots to keep what can still be reached; see the
/// [module documentation](self).
pub async fn repair_snapshots(
    repo: Arc<Repository>,
    options: &RepairOptions,
) -> Result<SnapshotRepairReport> {
    // Pack headers and snapshots are sealed to the owner: a host would take them for damage.
    repo.refuse_if_write_only("repair snapshots")?;
    under_lock(
        &repo,
        options,
        "repair snapshots",
        repair_snapshots_locked(repo.clone(), options),
    )
    .await
}

async fn repair_snapshots_locked(
    repo: Arc<Repository>,
    options: &RepairOptions,
) -> Result<SnapshotRepairReport> {
    let snapshots = repo.snapshots().await?;
    let mut report = SnapshotRepairReport {
        dry_run: options.dry_run,
        snapshots: snapshots.len(),
        ..SnapshotRepairReport::default()
    };
    report.unreadable = repo
        .skipped_objects()
        .into_iter()
        .filter(|s| s.object.starts_with("snapshots/") && s.reason != crate::repo::VANISHED)
        .map(|s| Damage {
            object: s.object,
            problem: s.reason,
        })
        .collect();
    let mut work = SnapshotRepair {
        repo: &repo,
        read_data: options.read_data,
        pack_sizes: pack_sizes(&repo).await?,
        chunks: HashMap::new(),
        trees: HashMap::new(),
        new_trees: Vec::new(),
        stored: BTreeSet::new(),
    };
    let mut rewrites = Vec::new();
    for (id, snapshot) in snapshots {
        match work.tree(snapshot.tree).await? {
            Ok(TreeFix { new_id: None, .. }) => {}
            Ok(TreeFix {
                new_id: Some(root),
                dropped,
            }) => {
                let mut new = snapshot.clone();
                new.tree = root;
                if !new.tags.iter().any(|t| t == REPAIRED_TAG) {
                    new.tags.push(REPAIRED_TAG.to_string());
                }
                rewrites.push((id.clone(), Some(new)));
                report.repaired.push(RepairedSnapshot {
                    snapshot: id,
                    new_snapshot: None,
                    removed: false,
                    dropped,
                });
            }
            Err((object, problem)) => {
                rewrites.push((id.clone(), None));
                report.repaired.push(RepairedSnapshot {
                    snapshot: id,
                    new_snapshot: None,
                    removed: true,
                    dropped: vec![DroppedPath {
                        path: "/".into(),
                        object,
                        problem,
                    }],
                });
            }
        }
    }
    report.trees_written = work.new_trees.len();
    if options.dry_run {
        return Ok(report);
    }
    // Trees and their index first, then the new snapshots, and only then the old ones go.
    work.store_trees().await?;
    for ((old, new), repaired) in rewrites.into_iter().zip(&mut report.repaired) {
        if let Some(snapshot) = new {
            let id = format::random_id();
            repo.put_sealed(&format!("snapshots/{id}"), &snapshot)
                .await?;
            repaired.new_snapshot = Some(id);
        }
        let name = format!("snapshots/{old}");
        match repo.store.delete(&ObjectPath::from(name.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::store(name, e)),
        }
    }
    Ok(report)
}
