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
//! With [`HealOptionsBuilder::with_source_files`] (or without a mirror, [`heal_from_source`]),
//! a chunk that neither repository holds intact is rebuilt from the file it was read from:
//! every file using it is read again and cut with the repository's keyed chunker, and a piece
//! whose keyed id equals the chunk's id is stored with the rest in step 4.
//!
//! [`heal_config`] rebuilds a damaged or missing `config` from such a mirror; key objects are
//! not healed from a mirror (see there why, and what to do instead).
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
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
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
use crate::repo::{Keys, Repository, VANISHED, blob_aad, get_bytes, is_object_name, list_names};

/// Options for [`heal`], made by [`HealOptionsBuilder::build`].
#[derive(Debug, Clone)]
pub struct HealOptions {
    dry_run: bool,
    missing_snapshots: bool,
    lock: LockOptions,
    source: Option<SourceFiles>,
    read_data: DataSubset,
    run: Option<u64>,
}

/// Builder for [`HealOptions`].
#[derive(Debug, Clone)]
pub struct HealOptionsBuilder {
    dry_run: bool,
    missing_snapshots: bool,
    lock: Option<LockOptions>,
    source: Option<SourceFiles>,
    read_data: DataSubset,
    run: Option<u64>,
}

/// Where the files a snapshot was made from are read again to rebuild its lost chunks
/// ([`heal_from_source`], [`HealOptionsBuilder::with_source_files`]).
///
/// A snapshot's root holds one entry per path given to `backup`, named by its last component
/// (`/srv/www/site` is `/site`); a file `/site/a/b.php` is looked for under the source path
/// whose last component is `site`, as `<that path>/a/b.php`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceFiles {
    /// The paths each snapshot records (where it was backed up from, on this host).
    Recorded,
    /// These paths instead (the backed-up directories, restored or mounted elsewhere), each
    /// standing for the snapshot root entry of the same name.
    Paths(Vec<PathBuf>),
}

impl HealOptions {
    /// Options that heal everything the mirror can give back.
    pub fn builder() -> HealOptionsBuilder {
        HealOptionsBuilder {
            dry_run: false,
            missing_snapshots: true,
            lock: None,
            source: None,
            read_data: DataSubset::All,
            run: None,
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

    /// Also rebuild what neither this repository nor the mirror holds intact from the source
    /// files, where they still hold the same chunks ([`heal_from_source`] does this without a
    /// mirror).
    pub fn with_source_files(mut self, source: SourceFiles) -> Self {
        self.source = Some(source);
        self
    }

    /// Which packs are read to find damaged ones (default: all). A rotating scrub passes the
    /// part its `check` read ([`CheckOptionsBuilder::with_read_data`](crate::check::CheckOptionsBuilder::with_read_data)),
    /// so that the heal verifies again, under its lock, only what the scrub found damaged;
    /// missing packs are found whatever the subset.
    pub fn with_read_data(mut self, subset: DataSubset) -> Self {
        self.read_data = subset;
        self
    }

    /// The run number that picks the part of a percentage or size subset, as
    /// [`CheckOptionsBuilder::with_run`](crate::check::CheckOptionsBuilder::with_run).
    pub fn with_run(mut self, run: u64) -> Self {
        self.run = Some(run);
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
        let mut source = self.source;
        if let Some(SourceFiles::Paths(paths)) = &mut source {
            if paths.is_empty() {
                return Err(Error::Config(
                    "heal from source files: no source path given".into(),
                ));
            }
            // Made absolute as `backup` makes the paths it is given (`.` names the current
            // directory's entry).
            for path in paths.iter_mut() {
                *path = std::path::absolute(&*path).map_err(|e| Error::io(&*path, e))?;
            }
            let mut names = HashSet::new();
            for path in paths.iter() {
                let Some(name) = path.file_name() else {
                    return Err(Error::Config(format!(
                        "source path {} has no last component to match a snapshot's root entry",
                        path.display()
                    )));
                };
                if !names.insert(name) {
                    return Err(Error::Config(format!(
                        "two source paths end in {name:?}; give one per snapshot root entry"
                    )));
                }
            }
        }
        // Checked as `check` does.
        CheckOptions::builder()
            .with_read_data(self.read_data)
            .build()?;
        Ok(HealOptions {
            dry_run: self.dry_run,
            missing_snapshots: self.missing_snapshots,
            lock,
            source,
            read_data: self.read_data,
            run: self.run,
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
    /// Chunks rebuilt from the source files (with [`SourceFiles`]).
    pub blobs_from_source: usize,
    /// Source files read to rebuild chunks.
    pub source_files_read: usize,
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

/// Heals `repo` from `mirror` (and, with [`HealOptionsBuilder::with_source_files`], from the
/// source files for what the mirror lacks too); see the [module documentation](self). Damage
/// is reported, not an error; errors are failures of either store, a held lock, or a mirror
/// with other keys ([`Error::KeysDiffer`]).
pub async fn heal(
    repo: Arc<Repository>,
    mirror: Arc<Repository>,
    options: &HealOptions,
) -> Result<HealReport> {
    if !repo.keys.same_master(&mirror.keys) {
        return Err(Error::KeysDiffer {
            source_location: mirror.location().to_string(),
            destination: repo.location().to_string(),
        });
    }
    heal_with(repo, Some(mirror), options).await
}

/// Heals `repo` without a mirror: the chunks of damaged or missing packs are rebuilt from the
/// source files (the paths the snapshots record, unless
/// [`HealOptionsBuilder::with_source_files`] names others) where those still hold the same
/// chunks: each file using a lost chunk is read again and cut with the repository's keyed
/// chunker, and a piece whose keyed id is the lost chunk's id is stored again. Sound frames of
/// damaged packs are kept, the index is rebuilt if damaged, and the damaged packs are deleted
/// once their blobs are stored again, as [`heal`] does. Trees and snapshot objects cannot be
/// rebuilt from files (they hold times and inode numbers of the moment of the backup): what is
/// lost of them, and every chunk no file gives back (a file changed or gone), is reported by
/// snapshot and path in [`HealReport::lost`], and stays missing, so `check` names it.
pub async fn heal_from_source(repo: Arc<Repository>, options: &HealOptions) -> Result<HealReport> {
    let mut options = options.clone();
    options.source.get_or_insert(SourceFiles::Recorded);
    heal_with(repo, None, &options).await
}

async fn heal_with(
    repo: Arc<Repository>,
    mirror: Option<Arc<Repository>>,
    options: &HealOptions,
) -> Result<HealReport> {
    // Pack headers and snapshots are sealed to the owner: a host would take them for damage.
    repo.refuse_if_write_only("heal")?;
    // A heal deletes damaged packs and index objects: not through an append-only handle.
    repo.refuse_if_append_only("heal")?;
    if options.dry_run {
        return run(&repo, mirror.as_ref(), options, None).await;
    }
    let lock = repo.lock(&options.lock).await?;
    let result = run(&repo, mirror.as_ref(), options, Some(&lock)).await;
    lock.release_after(result).await
}

async fn run(
    repo: &Arc<Repository>,
    mirror: Option<&Arc<Repository>>,
    options: &HealOptions,
    lock: Option<&RepositoryLock>,
) -> Result<HealReport> {
    let mut report = HealReport {
        dry_run: options.dry_run,
        ..HealReport::default()
    };
    heal_snapshots(repo, mirror.map(|m| &**m), options, &mut report).await?;
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
    let mut read = CheckOptions::builder().with_read_data(options.read_data);
    if let Some(run) = options.run {
        read = read.with_run(run);
    }
    let full = check(repo.clone(), &read.build()?).await?;
    let damaged = damaged_packs(&full);
    report.damaged_packs = damaged.iter().map(|id| format::pack_path(id)).collect();
    crate::lock::check_held(lock)?;

    // The blobs the snapshots need that are unindexed or in a damaged pack.
    let snapshots = repo.snapshots().await?;
    let mut walk = Walk {
        repo,
        mirror: mirror.map(|m| &**m),
        damaged: &damaged,
        seen: HashSet::new(),
        wanted: Vec::new(),
        places: HashMap::new(),
        files: options.source.as_ref().map(|_| Vec::new()),
    };
    for (id, snapshot) in &snapshots {
        walk.tree(id, "", Path::new(""), snapshot.tree).await?;
    }
    let Walk { wanted, files, .. } = walk;
    let mut lost_blobs: BTreeMap<ChunkId, String> = BTreeMap::new();
    // Written as they arrive (a pack at a time in memory), not in a dry run.
    let mut writer = (!options.dry_run).then(|| PackWriter::new(repo));
    for (id, kind, _) in &wanted {
        let data = match fetch(repo, mirror.map(|m| &**m), id, &damaged).await? {
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
    if let (Some(source), Some(files)) = (&options.source, files) {
        let rebuilt = SourceRebuild {
            repo,
            source,
            snapshots: &snapshots,
            lock,
        };
        rebuilt
            .run(files, &mut lost_blobs, writer.as_mut(), &mut report)
            .await?;
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
    mirror: Option<&Repository>,
    options: &HealOptions,
    report: &mut HealReport,
) -> Result<()> {
    let here: BTreeSet<String> = list_names(repo.store.as_ref(), "snapshots")
        .await?
        .into_iter()
        .filter(|n| is_object_name("snapshots", n))
        .collect();
    let there: BTreeSet<String> = match mirror {
        Some(mirror) => list_names(mirror.store.as_ref(), "snapshots")
            .await?
            .into_iter()
            .filter(|n| is_object_name("snapshots", n))
            .collect(),
        None => BTreeSet::new(),
    };
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
        let Some(mirror) = mirror else {
            report.snapshots_lost.push(name);
            continue;
        };
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
    mirror: Option<&'a Repository>,
    damaged: &'a BTreeSet<String>,
    /// Trees walked.
    seen: HashSet<ChunkId>,
    wanted: Wanted,
    /// Place of each blob in `wanted`.
    places: HashMap<ChunkId, usize>,
    /// With source files: each file that needs a chunk stored again.
    files: Option<Vec<FileToRead>>,
}

/// A file of a snapshot with chunks to store again, to be read from its source.
struct FileToRead {
    snapshot: String,
    /// Its path inside the snapshot, raw (the root entry first).
    raw: PathBuf,
    /// The chunks it needs.
    chunks: Vec<ChunkId>,
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
        raw: &'s Path,
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
                    let Some(mirror) = self.mirror else {
                        // Reported once fetching it fails; nothing below is reachable.
                        return Ok(());
                    };
                    match mirror.load_tree(&id).await {
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
                // One plain component (an authenticated tree holds nothing else; this keeps
                // a source path from leaving its root whatever the tree says).
                let name = Path::new(std::ffi::OsStr::from_bytes(&node.name));
                let plain = matches!(
                    name.components().collect::<Vec<_>>().as_slice(),
                    [std::path::Component::Normal(_)]
                );
                let raw_child = raw.join(name);
                match node.kind {
                    NodeKind::Dir => {
                        if let Some(subtree) = node.subtree {
                            self.tree(snapshot, &child, &raw_child, subtree).await?;
                        }
                    }
                    NodeKind::File => {
                        let mut needed = Vec::new();
                        for chunk in node.content {
                            if self.needs_healing(&chunk) {
                                self.want(chunk, BlobKind::Data, snapshot, &child);
                                needed.push(chunk);
                            }
                        }
                        if let Some(files) = self.files.as_mut()
                            && !needed.is_empty()
                            && plain
                        {
                            files.push(FileToRead {
                                snapshot: snapshot.to_string(),
                                raw: raw_child,
                                chunks: needed,
                            });
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
    mirror: Option<&Repository>,
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
    let Some(mirror) = mirror else {
        return Ok(Fetched::Lost(format!("here: {here}")));
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

/// Rebuilds lost chunks from the source files.
struct SourceRebuild<'a> {
    repo: &'a Repository,
    source: &'a SourceFiles,
    snapshots: &'a [(String, Snapshot)],
    lock: Option<&'a RepositoryLock>,
}

impl SourceRebuild<'_> {
    /// Reads each source file that should hold a lost chunk (each file once, a chunk no longer
    /// sought once found), stores the chunks whose keyed id matches, and adds to `lost` why
    /// the others could not be rebuilt.
    async fn run(
        &self,
        files: Vec<FileToRead>,
        lost: &mut BTreeMap<ChunkId, String>,
        mut writer: Option<&mut PackWriter<'_>>,
        report: &mut HealReport,
    ) -> Result<()> {
        let mut by_path: BTreeMap<PathBuf, BTreeSet<ChunkId>> = BTreeMap::new();
        for file in files {
            let chunks: Vec<ChunkId> = file
                .chunks
                .into_iter()
                .filter(|c| lost.contains_key(c))
                .collect();
            if chunks.is_empty() {
                continue;
            }
            match self.source_path(&file.snapshot, &file.raw) {
                Ok(path) => by_path.entry(path).or_default().extend(chunks),
                Err(why) => chunks.iter().for_each(|c| note(lost, c, &why)),
            }
        }
        for (path, chunks) in by_path {
            let wanted: HashSet<ChunkId> = chunks
                .into_iter()
                .filter(|c| lost.contains_key(c))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            report.source_files_read += 1;
            // Read and cut on a blocking thread; what matches comes back a chunk at a time.
            let (found, mut arriving) = tokio::sync::mpsc::channel::<(ChunkId, Vec<u8>)>(2);
            let (keys, file, sought) = (self.repo.keys.clone(), path.clone(), wanted.clone());
            let reading =
                tokio::task::spawn_blocking(move || read_source(&keys, &file, &sought, &found));
            while let Some((id, data)) = arriving.recv().await {
                if lost.remove(&id).is_none() {
                    continue;
                }
                report.blobs_from_source += 1;
                if let Some(writer) = writer.as_deref_mut() {
                    crate::lock::check_held(self.lock)?;
                    writer.add(id, BlobKind::Data, &data).await?;
                }
            }
            let outcome = reading
                .await
                .map_err(|e| Error::Worker(format!("reading {}: {e}", path.display())))?;
            let why = match outcome {
                Ok(()) => format!(
                    "source {}: changed since the backup (no longer holds this chunk)",
                    path.display()
                ),
                Err(e) => format!("source {}: {e}", path.display()),
            };
            wanted.iter().for_each(|c| note(lost, c, &why));
        }
        Ok(())
    }

    /// Where the snapshot's file at `raw` (root entry first) is among the source paths.
    fn source_path(&self, snapshot: &str, raw: &Path) -> std::result::Result<PathBuf, String> {
        let mut parts = raw.components();
        let Some(std::path::Component::Normal(root)) = parts.next() else {
            return Err(format!("{} is no path below a root entry", raw.display()));
        };
        let rest = parts.as_path();
        let named = |p: &&Path| p.file_name() == Some(root);
        let found = match self.source {
            SourceFiles::Recorded => self
                .snapshots
                .iter()
                .find(|(id, _)| id == snapshot)
                .and_then(|(_, s)| s.paths.iter().map(Path::new).find(named)),
            SourceFiles::Paths(paths) => paths.iter().map(PathBuf::as_path).find(named),
        };
        match found {
            Some(base) if rest.as_os_str().is_empty() => Ok(base.to_path_buf()),
            Some(base) => Ok(base.join(rest)),
            None => Err(format!(
                "no source path given for the snapshot's root entry {}",
                root.display()
            )),
        }
    }
}

/// Adds why a chunk is still lost to its problem (once).
fn note(lost: &mut BTreeMap<ChunkId, String>, id: &ChunkId, why: &str) {
    if let Some(problem) = lost.get_mut(id)
        && !problem.contains(why)
    {
        problem.push_str("; ");
        problem.push_str(why);
    }
}

/// Reads the regular file at `path` (never through a symbolic link, never a FIFO or device),
/// cuts it with the repository's keyed chunker, and sends every piece whose keyed id is in
/// `wanted`. The error is the reason the file could not be read.
fn read_source(
    keys: &Keys,
    path: &Path,
    wanted: &HashSet<ChunkId>,
    found: &tokio::sync::mpsc::Sender<(ChunkId, Vec<u8>)>,
) -> std::result::Result<(), String> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::LOOP => "is a symbolic link now".to_string(),
        e => std::io::Error::from(e).to_string(),
    })?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is no regular file now".into());
    }
    let mut sent = HashSet::new();
    keys.chunker
        .stream(
            &file,
            &mut Vec::new(),
            None,
            |chunk| {
                let id = keys.chunk_id(chunk);
                if wanted.contains(&id) && sent.insert(id) {
                    found
                        .blocking_send((id, chunk.to_vec()))
                        .map_err(|_| Error::Worker("the heal stopped".into()))?;
                }
                Ok(())
            },
            |e| Error::io(path, e),
        )
        .map_err(|e| crate::report(&e))?;
    Ok(())
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

/// What [`heal_config`] found and did.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct ConfigHealReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// What was wrong with `config` (none: it opens, nothing was done).
    pub damage: Option<String>,
    /// Whether a new `config` was (or, in a dry run, would be) written.
    pub restored: bool,
    /// The key object here that the given key opens to the mirror's master secret, which
    /// vouches that the mirror's parameters are this repository's.
    pub vouched_by: String,
}

/// Rebuilds a damaged or missing `config` from a mirror that shares this repository's master
/// secret (made by `init --copy-params-from`, in either direction), the tool's `repair config
/// MIRROR`. Such a mirror's config holds the same format version, chunker bounds, pack size and
/// compression level (only its random `id` is its own), so the config written here takes
/// those under a fresh id, sealed under the shared master secret.
///
/// It is done only when a key object here opens with `key` to the very master secret the
/// mirror was opened with (so the mirror belongs to this repository, and the new config opens
/// with every key here); otherwise nothing is written and the error says why: the mirror has
/// other keys ([`Error::KeysDiffer`]), or no key object here opens with `key` (damaged too, or
/// another admin's key: [`Error::Corrupt`] or [`Error::WrongKey`]). A `config` that opens is
/// left alone. No lock is taken: no command opens a repository whose config does not open, so
/// none can run beside this one; the new config is one write, and the repository opens after
/// it (checked before returning).
///
/// A damaged key object is not healed from a mirror: the mirror's key objects are its own
/// (another name, perhaps another passphrase), so none is a copy of the damaged one. Open the
/// repository with another of its keys and replace the damaged one with `key passwd` or `key
/// add`; when the damaged key was the only one, the repository cannot be opened at all (the
/// master secret is wrapped only in it), and the mirror, which holds every copied snapshot, is
/// what is left: restore from it, or copy it into a new repository.
pub async fn heal_config(
    store: Arc<dyn object_store::ObjectStore>,
    location: &str,
    key: &crate::KeySource,
    mirror: &Repository,
    dry_run: bool,
) -> Result<ConfigHealReport> {
    const CONFIG: &str = "config";
    let mut report = ConfigHealReport {
        dry_run,
        ..ConfigHealReport::default()
    };
    let existing = match get_bytes(store.as_ref(), CONFIG).await {
        Ok(bytes) => Some(bytes),
        Err(Error::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let damage = match &existing {
        None => "missing".to_string(),
        Some(bytes) => match mirror.keys.cipher.open(CONFIG.as_bytes(), bytes) {
            Ok(plain) => match format::decode::<format::Config>(CONFIG, &plain) {
                Ok(_) => return Ok(report),
                Err(e) => crate::report(&e),
            },
            Err(_) => "fails authentication (damaged or tampered)".to_string(),
        },
    };
    report.damage = Some(damage);
    // A key object here must open with `key` to the mirror's master secret.
    let mut other_master = false;
    let mut damaged = Vec::new();
    for name in list_names(store.as_ref(), "keys").await? {
        if !is_object_name("keys", &name) {
            continue;
        }
        match crate::repo::unwrap_key(store.as_ref(), &name, key).await {
            Ok(Some(master)) if *master == *mirror.keys.master() => {
                report.vouched_by = name;
                break;
            }
            Ok(Some(_)) => other_master = true,
            Ok(None) => {}
            Err(Error::Corrupt { .. }) => damaged.push(name),
            Err(e) => return Err(e),
        }
    }
    if report.vouched_by.is_empty() {
        return Err(if other_master {
            Error::KeysDiffer {
                source_location: mirror.location().to_string(),
                destination: location.to_string(),
            }
        } else if !damaged.is_empty() {
            Error::corrupt(
                damaged.join(", "),
                "damaged, and no undamaged key here opens with this password or key file: \
                 nothing vouches that the mirror's config is this repository's",
            )
        } else {
            Error::WrongKey
        });
    }
    if dry_run {
        report.restored = true;
        return Ok(report);
    }
    let config = format::Config {
        version: format::FORMAT_VERSION,
        id: format::random_id(),
        ..mirror.config.clone()
    };
    let sealed = mirror
        .keys
        .cipher
        .seal(CONFIG.as_bytes(), &format::encode(&config))?;
    let mode = if existing.is_some() {
        object_store::PutMode::Overwrite
    } else {
        object_store::PutMode::Create
    };
    store
        .put_opts(
            &ObjectPath::from(CONFIG),
            sealed.into(),
            object_store::PutOptions::from(mode),
        )
        .await
        .map_err(|e| Error::store(CONFIG, e))?;
    report.restored = true;
    Repository::open(store, location, key).await?;
    Ok(report)
}
