//! Healing a damaged repository from a mirror (the tool's `repair from-mirror MIRROR`).
//!
//! The mirror is a repository that shares this one's keys (created with
//! [`InitOptions::with_params_from`](crate::InitOptions::with_params_from), filled by
//! [`copy`](crate::copy::copy)), so chunk ids, trees and sealed snapshot objects agree. Under
//! an exclusive lock, [`heal`]:
//!
//! 1. replaces every damaged snapshot object by the mirror's, and copies back every snapshot
//!    the mirror holds that this repository lacks (a deleted snapshot object cannot be told
//!    from a forgotten one: forget on both, or turn this off with
//!    [`HealOptionsBuilder::with_missing_snapshots`]); the mirror's object is opened and
//!    verified before it is written;
//! 2. rebuilds the index from the pack headers ([`repair_index`](crate::repair::repair_index)) when an index object is
//!    damaged or a pack is in no index;
//! 3. runs `check --read-data` to find damaged and missing packs;
//! 4. walks every snapshot (a tree that is damaged here is read from the mirror) and, for every
//!    tree and chunk that is in no index or lies in a damaged or missing pack, reads it here if
//!    its own frame is still sound, else from the mirror (every blob verified against its id),
//!    and writes it into new packs with an index object;
//! 5. only then deletes the damaged packs and rebuilds the index without them.
//!
//! A blob that neither repository holds intact is reported by snapshot and path in
//! [`HealReport::lost`]; it stays missing (the index never names damaged data), so `check`
//! names it and [`repair_snapshots`](crate::repair::repair_snapshots) can drop it. A heal
//! killed at any point leaves the damaged packs in place until their blobs are stored again,
//! and a rerun completes.
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::copy::{CopyOptions, copy};
//! use backup_core::check::{CheckOptions, DataSubset, check};
//! use backup_core::heal::{HealOptions, heal};
//! use backup_core::{BackupOptions, InitOptions, KeySource, NoProgress, Repository};
//! use futures::TryStreamExt;
//! use object_store::{ObjectStore, ObjectStoreExt};
//! use object_store::memory::InMemory;
//! use object_store::path::Path;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let site = tempfile::tempdir()?;
//! std::fs::write(site.path().join("index.php"), "<?php echo 'hello';")?;
//! let key = KeySource::passphrase("correct horse battery staple");
//! let store = Arc::new(InMemory::new());
//! let local = Arc::new(Repository::init(store.clone(), "local", &key, InitOptions::new()).await?);
//! backup_core::backup(local.clone(), BackupOptions::builder([site.path()]).build()?, Arc::new(NoProgress)).await?;
//! let options = InitOptions::new().with_params_from(&local);
//! let mirror = Arc::new(Repository::init(Arc::new(InMemory::new()), "mirror", &key, options).await?);
//! copy(local.clone(), mirror.clone(), &CopyOptions::builder().build()?).await?;
//!
//! // Every pack of the local repository is lost; the mirror gives the data back.
//! let packs: Vec<_> = store.list(Some(&Path::from("data"))).try_collect().await?;
//! for pack in &packs {
//!     store.delete(&pack.location).await?;
//! }
//! let report = heal(local.clone(), mirror, &HealOptions::builder().build()?).await?;
//! assert!(report.is_healed());
//! assert_eq!(report.damaged_packs.len(), packs.len());
//! let after = check(local, &CheckOptions::builder().with_read_data(DataSubset::All).build()?).await?;
//! assert!(after.is_ok(), "{:?}", after.problems);
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde::Serialize;

use crate::check::{CheckOptions, CheckReport, DataSubset, check};
use crate::compress::BlobCompressor;
use crate::error::{Error, Result};
use crate::format::{self, BlobKind, ChunkId, IndexPack, NodeKind, Snapshot};
use crate::lock::{LockKind, LockOptions, RepositoryLock};
use crate::pack::PackBuilder;
use crate::repair::{RepairOptions, repair_index_locked};
use crate::repo::{Repository, VANISHED, blob_aad, get_bytes, is_object_name, list_names};

/// Options for [`heal`], made by [`HealOptionsBuilder::build`].
#[derive(Debug, Clone)]
pub struct HealOptions {
    dry_run: bool,
    missing_snapshots: bool,
    lock: LockOptions,
}

/// Builder for [`HealOptions`].
#[derive(Debug, Clone)]
pub struct HealOptionsBuilder {
    dry_run: bool,
    missing_snapshots: bool,
    lock: Option<LockOptions>,
}

impl HealOptions {
    /// Options that heal everything the mirror can give back.
    pub fn builder() -> HealOptionsBuilder {
        HealOptionsBuilder {
            dry_run: false,
            missing_snapshots: true,
            lock: None,
        }
    }
}

impl HealOptionsBuilder {
    /// Only report what would be healed; write, delete and lock nothing.
    pub fn with_dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }

    /// Copy back snapshots the mirror holds and this repository lacks (default: yes).
    pub fn with_missing_snapshots(mut self, yes: bool) -> Self {
        self.missing_snapshots = yes;
        self
    }

    /// The exclusive lock to take (default: an exclusive lock for command `heal`).
    pub fn with_lock(mut self, lock: LockOptions) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Checks the options.
    pub fn build(self) -> Result<HealOptions> {
        let lock = match self.lock {
            Some(lock) => lock,
            None => LockOptions::builder(LockKind::Exclusive, "heal").build()?,
        };
        if lock.kind() != LockKind::Exclusive {
            return Err(Error::Config("heal needs an exclusive lock".into()));
        }
        Ok(HealOptions {
            dry_run: self.dry_run,
            missing_snapshots: self.missing_snapshots,
            lock,
        })
    }
}

/// A blob neither repository holds intact, and where a snapshot uses it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub struct LostPath {
    /// The snapshot's id.
    pub snapshot: String,
    /// The path inside the snapshot (escaped as `ls` prints it); `/` is the root.
    pub path: String,
    /// The blob (`tree …`, `blob …`).
    pub object: String,
    /// What is wrong with it here and in the mirror.
    pub problem: String,
}

/// What [`heal`] did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct HealReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Snapshot objects replaced by, or copied back from, the mirror.
    pub snapshots_restored: Vec<String>,
    /// Damaged snapshot objects the mirror does not hold either (left alone).
    pub snapshots_lost: Vec<String>,
    /// Whether the index was rebuilt from the pack headers because of index damage.
    pub index_rebuilt: bool,
    /// Damaged or missing packs (removed from the index and deleted).
    pub damaged_packs: Vec<String>,
    /// Blobs stored again from the mirror.
    pub blobs_from_mirror: usize,
    /// Blobs of damaged packs whose own frame was sound, stored again from here.
    pub blobs_salvaged: usize,
    /// Pack objects written.
    pub packs_written: usize,
    /// Blobs lost in both repositories, by snapshot and path.
    pub lost: Vec<LostPath>,
}

impl HealReport {
    /// Whether everything found damaged was healed.
    pub fn is_healed(&self) -> bool {
        self.lost.is_empty() && self.snapshots_lost.is_empty()
    }
}

/// Heals `repo` from `mirror`; see the [module documentation](self). Damage is reported, not
/// an error; errors are failures of either store, a held lock, or a mirror with other keys
/// ([`Error::KeysDiffer`]).
pub async fn heal(
    repo: Arc<Repository>,
    mirror: Arc<Repository>,
    options: &HealOptions,
) -> Result<HealReport> {
    // Pack headers and snapshots are sealed to the owner: a host would take them for damage.
    repo.refuse_if_write_only("heal")?;
    // A heal deletes damaged packs and index objects: not through an append-only handle.
    repo.refuse_if_append_only("heal")?;
    if !repo.keys.same_master(&mirror.keys) {
        return Err(Error::KeysDiffer {
            source_location: mirror.location().to_string(),
            destination: repo.location().to_string(),
        });
    }
    if options.dry_run {
        return run(&repo, &mirror, options, None).await;
    }
    let lock = repo.lock(&options.lock).await?;
    let result = run(&repo, &mirror, options, Some(&lock)).await;
    lock.release_after(result).await
}

async fn run(
    repo: &Arc<Repository>,
    mirror: &Arc<Repository>,
    options: &HealOptions,
    lock: Option<&RepositoryLock>,
) -> Result<HealReport> {
    let mut report = HealReport {
        dry_run: options.dry_run,
        ..HealReport::default()
    };
    heal_snapshots(repo, mirror, options, &mut report).await?;
    crate::lock::check_held(lock)?;

    // The index: rebuilt from the pack headers when an index object is damaged or a pack is
    // in no index.
    let structure = check(repo.clone(), &CheckOptions::builder().build()?).await?;
    let index_damaged = repo
        .skipped_objects()
        .iter()
        .any(|s| is_object_name("index", &s.object) && s.reason != VANISHED)
        || structure
            .problems
            .iter()
            .any(|p| p.object.starts_with("index/"))
        || !structure.unindexed_packs.is_empty();
    if index_damaged {
        report.index_rebuilt = true;
        if !options.dry_run {
            repair_index_locked(repo.clone(), &RepairOptions::builder().build()?).await?;
        }
    }
    crate::lock::check_held(lock)?;

    // The packs: every one with damage (or indexed and missing).
    let full = check(
        repo.clone(),
        &CheckOptions::builder()
            .with_read_data(DataSubset::All)
            .build()?,
    )
    .await?;
    let damaged = damaged_packs(&full);
    report.damaged_packs = damaged.iter().map(|id| format::pack_path(id)).collect();
    crate::lock::check_held(lock)?;

    // The blobs the snapshots need that are unindexed or in a damaged pack.
    let snapshots = repo.snapshots().await?;
    let mut walk = Walk {
        repo,
        mirror,
        damaged: &damaged,
        seen: HashSet::new(),
        wanted: Vec::new(),
        places: HashMap::new(),
    };
    for (id, snapshot) in &snapshots {
        walk.tree(id, "", snapshot.tree).await?;
    }
    let Walk { wanted, .. } = walk;
    let mut lost_blobs: BTreeMap<ChunkId, String> = BTreeMap::new();
    // Written as they arrive (a pack at a time in memory), not in a dry run.
    let mut writer = (!options.dry_run).then(|| PackWriter::new(repo));
    for (id, kind, _) in &wanted {
        let data = match fetch(repo, mirror, id, &damaged).await? {
            Fetched::Here(data) => {
                report.blobs_salvaged += 1;
                data
            }
            Fetched::Mirror(data) => {
                report.blobs_from_mirror += 1;
                data
            }
            Fetched::Lost(problem) => {
                lost_blobs.insert(*id, problem);
                continue;
            }
        };
        if let Some(writer) = writer.as_mut() {
            crate::lock::check_held(lock)?;
            writer.add(*id, *kind, &data).await?;
        }
    }
    for (id, _, users) in &wanted {
        if let Some(problem) = lost_blobs.get(id) {
            for (snapshot, path) in users {
                report.lost.push(LostPath {
                    snapshot: snapshot.clone(),
                    path: path.clone(),
                    object: format!("blob {id}"),
                    problem: problem.clone(),
                });
            }
        }
    }
    report.lost.sort();
    report.lost.dedup();
    let Some(writer) = writer else {
        return Ok(report);
    };
    crate::lock::check_held(lock)?;
    report.packs_written = writer.finish().await?;
    crate::lock::check_held(lock)?;
    if !damaged.is_empty() {
        for id in &damaged {
            let name = format::pack_path(id);
            match repo.store.delete(&ObjectPath::from(name.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::store(name, e)),
            }
        }
        repair_index_locked(repo.clone(), &RepairOptions::builder().build()?).await?;
    }
    Ok(report)
}

/// Replaces damaged snapshot objects by the mirror's and copies back missing ones.
async fn heal_snapshots(
    repo: &Repository,
    mirror: &Repository,
    options: &HealOptions,
    report: &mut HealReport,
) -> Result<()> {
    let here: BTreeSet<String> = list_names(repo.store.as_ref(), "snapshots")
        .await?
        .into_iter()
        .filter(|n| is_object_name("snapshots", n))
        .collect();
    let there: BTreeSet<String> = list_names(mirror.store.as_ref(), "snapshots")
        .await?
        .into_iter()
        .filter(|n| is_object_name("snapshots", n))
        .collect();
    let mut todo = Vec::new();
    for name in &here {
        match repo.get_sealed::<Snapshot>(name).await {
            Ok(_) | Err(Error::NotFound { .. }) => {}
            Err(Error::Corrupt { .. }) => todo.push((name.clone(), true)),
            Err(e) => return Err(e),
        }
    }
    if options.missing_snapshots {
        todo.extend(there.difference(&here).map(|n| (n.clone(), false)));
    }
    for (name, replace) in todo {
        // The mirror's object must open under the shared keys before it is written here.
        let verified = match mirror.get_sealed::<Snapshot>(&name).await {
            Ok(_) => true,
            Err(Error::Corrupt { .. } | Error::NotFound { .. }) => false,
            Err(e) => return Err(e),
        };
        if !verified {
            report.snapshots_lost.push(name);
            continue;
        }
        if !options.dry_run {
            let bytes = get_bytes(mirror.store.as_ref(), &name).await?;
            // The damaged object goes only now that its replacement is at hand.
            repo.put(&name, bytes, !replace).await?;
        }
        report.snapshots_restored.push(name);
    }
    if !options.dry_run
        && let Ok(mut skipped) = repo.skipped.lock()
    {
        skipped.retain(|name, _| !report.snapshots_restored.contains(name));
    }
    Ok(())
}

/// The ids of the packs `check --read-data` found damaged or missing.
fn damaged_packs(report: &CheckReport) -> BTreeSet<String> {
    report
        .problems
        .iter()
        .filter_map(|p| {
            let object = p.object.split(' ').next()?;
            let (_, id) = object.strip_prefix("data/")?.rsplit_once('/')?;
            (format::pack_path(id) == object).then(|| id.to_string())
        })
        .collect()
}

/// Blobs to store again: id, kind, and every (snapshot, path) that uses it.
type Wanted = Vec<(ChunkId, BlobKind, Vec<(String, String)>)>;

/// Walks the snapshots' trees (from the mirror where they are damaged here).
struct Walk<'a> {
    repo: &'a Repository,
    mirror: &'a Repository,
    damaged: &'a BTreeSet<String>,
    /// Trees walked.
    seen: HashSet<ChunkId>,
    wanted: Wanted,
    /// Place of each blob in `wanted`.
    places: HashMap<ChunkId, usize>,
}

impl Walk<'_> {
    /// Whether blob `id` must be stored again: in no index, or in a damaged pack.
    fn needs_healing(&self, id: &ChunkId) -> bool {
        match self.repo.locate(id) {
            Ok(loc) => self.damaged.contains(&*loc.pack),
            Err(_) => true,
        }
    }

    fn want(&mut self, id: ChunkId, kind: BlobKind, snapshot: &str, path: &str) {
        if let Some(&at) = self.places.get(&id) {
            let entry = &mut self.wanted[at];
            if entry.2.len() < 8 {
                entry.2.push((snapshot.to_string(), path.to_string()));
            }
            return;
        }
        self.places.insert(id, self.wanted.len());
        self.wanted
            .push((id, kind, vec![(snapshot.to_string(), path.to_string())]));
    }

    fn tree<'s>(
        &'s mut self,
        snapshot: &'s str,
        path: &'s str,
        id: ChunkId,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + 's>> {
        Box::pin(async move {
            let shown = if path.is_empty() { "/" } else { path };
            let heal = self.needs_healing(&id);
            if heal {
                self.want(id, BlobKind::Tree, snapshot, shown);
            }
            if !self.seen.insert(id) {
                return Ok(());
            }
            let tree = match self.repo.load_tree(&id).await {
                Ok(tree) => tree,
                // A damaged (truncated) pack fails ranged reads as the store sees fit.
                Err(e) if is_damage(&e) || heal => {
                    if !heal {
                        self.want(id, BlobKind::Tree, snapshot, shown);
                    }
                    match self.mirror.load_tree(&id).await {
                        Ok(tree) => tree,
                        Err(e) if is_damage(&e) => {
                            // Reported once fetching it fails too; nothing below is reachable.
                            tracing::warn!("heal: tree {id} lost in both: {e}");
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            for node in tree.nodes {
                let child = format!("{path}/{}", crate::ops::escape_path(&node.name));
                match node.kind {
                    NodeKind::Dir => {
                        if let Some(subtree) = node.subtree {
                            self.tree(snapshot, &child, subtree).await?;
                        }
                    }
                    NodeKind::File => {
                        for chunk in node.content {
                            if self.needs_healing(&chunk) {
                                self.want(chunk, BlobKind::Data, snapshot, &child);
                            }
                        }
                    }
                    _ => {}
                }
            }
            Ok(())
        })
    }
}

/// Where a blob to store again came from.
enum Fetched {
    Here(Vec<u8>),
    Mirror(Vec<u8>),
    Lost(String),
}

/// Reads blob `id` here if its own frame is sound, else from the mirror (both verified).
async fn fetch(
    repo: &Repository,
    mirror: &Repository,
    id: &ChunkId,
    damaged: &BTreeSet<String>,
) -> Result<Fetched> {
    let here = match repo.locate(id) {
        Ok(loc) if !damaged.contains(&*loc.pack) || repo_pack_exists(repo, &loc.pack).await? => {
            match repo.load_blob(id).await {
                Ok(data) => return Ok(Fetched::Here(data)),
                // A damaged (truncated) pack fails ranged reads as the store sees fit.
                Err(e) if is_damage(&e) || damaged.contains(&*loc.pack) => crate::report(&e),
                Err(e) => return Err(e),
            }
        }
        Ok(_) => "its pack is missing".to_string(),
        Err(e) => crate::report(&e),
    };
    match mirror.load_blob(id).await {
        Ok(data) => Ok(Fetched::Mirror(data)),
        Err(e) if is_damage(&e) => Ok(Fetched::Lost(format!(
            "here: {here}; mirror: {}",
            crate::report(&e)
        ))),
        Err(e) => Err(e),
    }
}

fn is_damage(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupt { .. } | Error::NotFound { .. } | Error::IndexMissing { .. }
    ) || matches!(
        e,
        Error::Store {
            source: object_store::Error::NotFound { .. },
            ..
        }
    )
}

async fn repo_pack_exists(repo: &Repository, id: &str) -> Result<bool> {
    let path = format::pack_path(id);
    match repo.store.head(&ObjectPath::from(path.as_str())).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(Error::store(path, e)),
    }
}

/// Packs blobs into new packs, uploads each when full, and at the end writes an index object
/// naming them.
struct PackWriter<'a> {
    repo: &'a Repository,
    compressor: BlobCompressor,
    encoded: Vec<u8>,
    packer: PackBuilder,
    written: Vec<IndexPack>,
}

impl<'a> PackWriter<'a> {
    fn new(repo: &'a Repository) -> Self {
        PackWriter {
            repo,
            compressor: BlobCompressor::new(repo.config.compression_level),
            encoded: Vec::new(),
            packer: PackBuilder::default(),
            written: Vec::new(),
        }
    }

    async fn add(&mut self, id: ChunkId, kind: BlobKind, data: &[u8]) -> Result<()> {
        let repo = self.repo;
        let pack_size = repo.config.pack_size as usize;
        self.compressor.encode_into(data, &mut self.encoded);
        let encoded = &self.encoded;
        let seal = |out: &mut Vec<u8>| repo.keys.cipher.seal_append(&blob_aad(&id), encoded, out);
        let member = [(id, kind, data.len() as u32, None)];
        self.packer
            .add(seal, member, || Vec::with_capacity(pack_size + 4096))?;
        if self.packer.len() + self.packer.header_bound(0) >= pack_size {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if let Some(pack) = self.packer.finish(&self.repo.keys.cipher)? {
            let bytes = bytes::Bytes::from(pack.bytes).slice(pack.start..);
            self.repo.put(&pack.path, bytes, true).await?;
            self.repo.add_to_index(&pack.index)?;
            self.written.push(pack.index);
        }
        Ok(())
    }

    /// Uploads the last pack and the index object; returns the number of packs written.
    async fn finish(mut self) -> Result<usize> {
        self.flush().await?;
        let packs = self.written.len();
        if packs > 0 {
            let name = format!("index/{}", format::random_id());
            let file = format::IndexFile {
                packs: std::mem::take(&mut self.written),
            };
            self.repo.put_sealed(&name, &file).await?;
        }
        Ok(packs)
    }
}
