//! Prune: delete the data no snapshot uses, and repack packs that are partly unused.
//!
//! [`prune`] takes the repository's exclusive lock (see [`crate::lock`]), so no backup,
//! forget or key change runs beside it: a running backup holds a shared lock, and the blobs it
//! deduplicates against and the packs it has uploaded but not yet indexed are exactly what a
//! prune must not delete. (A lock-free two-phase delete, as rustic does, would let backups run
//! during a prune, but needs every reader to understand "marked for deletion" and a second
//! prune run to reclaim anything; with conditional writes a lock is cheap and exact, and
//! a prune of this crate takes seconds.)
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::prune::{MaxUnused, PackAction, PruneOptions, prune};
//! use backup_core::{BackupOptions, InitOptions, KeySource, NoProgress, Repository};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let work = tempfile::tempdir()?;
//! let site = work.path().join("site");
//! std::fs::create_dir(&site)?;
//! let store = Arc::new(object_store::memory::InMemory::new());
//! let key = KeySource::passphrase("correct horse battery staple");
//! let repo = Arc::new(Repository::init(store, "memory", &key, InitOptions::new()).await?);
//! let mut ids = Vec::new();
//! for day in 0..2u8 {
//!     std::fs::write(site.join("db.sql"), vec![day; 100_000])?;
//!     let options = BackupOptions::builder([&site]).build()?;
//!     ids.push(backup_core::backup(repo.clone(), options, Arc::new(NoProgress)).await?.0);
//! }
//! // Forget the first snapshot (a retention policy would choose it), then prune.
//! let policy = backup_core::retention::RetentionPolicy::builder().with_keep_last(1).build()?;
//! repo.forget(&policy, false).await?;
//! let options = PruneOptions::builder().with_max_unused(MaxUnused::Percent(0.0));
//! let report = prune(repo.clone(), &options.build()?).await?;
//! assert!(report.decisions.iter().any(|d| d.action != PackAction::Keep));
//! assert_eq!(repo.snapshots().await?.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! Steps, in this order, so that a prune killed at any instant leaves a repository whose
//! every index entry points at a pack that exists, and the next prune finishes the job:
//!
//! 1. Load every index object and snapshot afresh (under the lock), walk every snapshot's
//!    trees and collect the blobs they use. Refuse to go on if an index object or snapshot is
//!    damaged (their packs or data would look unused) or a used blob is in no index.
//! 2. Classify packs: **delete** those with no used blob and those in no index (left by a
//!    killed backup or prune); **repack** partly used ones, most unused first, until the
//!    unused bytes left are within `max_unused` and within `max_repack_size` bytes read;
//!    **keep** the rest.
//! 3. Write new packs holding the used frames of the packs to repack (frames are copied
//!    sealed, after checking that each opens, and get a new header).
//! 4. Write new index objects listing the kept and the new packs.
//! 5. Delete the old index objects.
//! 6. Delete the packs to delete and the repacked ones.
//!
//! Killed after 3: the new packs are in no index (garbage for the next prune). After 4: blobs
//! are indexed twice, both places exist. During 5 or 6: the remaining index objects point only
//! at packs that exist. Before each of 4, 5 and every delete the lock is checked
//! ([`crate::lock::RepositoryLock::check`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::{self, ChunkId, IndexFile, IndexPack, PackEntry};
use crate::lock::{LockKind, LockOptions, RepositoryLock};
use crate::pack::{FinishedPack, PackBuilder};
use crate::repo::{BlobLocation, Repository, VANISHED, blob_aad, is_object_name, poisoned};

/// Index entries per index object written (as a backup writes them).
const INDEX_ENTRIES: usize = 16 * 1024;

/// How much unused data may stay in partly used packs.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum MaxUnused {
    /// At most this percentage (0..100) of the packs' bytes may be unused (restic's meaning).
    Percent(f64),
    /// At most this many unused bytes.
    Size(u64),
    /// Repack nothing; only wholly unused packs are deleted.
    Unlimited,
}

impl std::str::FromStr for MaxUnused {
    type Err = Error;

    /// `5%`, a size (`100M`, `2G`; K, M, G, T are powers of 1024) or `unlimited`.
    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Config(format!(
                "max-unused {text:?}: {why} (give a percentage such as 5%, a size such as 100M, or unlimited)"
            ))
        };
        let text = text.trim();
        if text == "unlimited" {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = text.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad("not a number"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(bad("the percentage must be within 0..100"));
            }
            return Ok(if p >= 100.0 {
                MaxUnused::Unlimited
            } else {
                MaxUnused::Percent(p)
            });
        }
        parse_size(text)
            .map(MaxUnused::Size)
            .map_err(|why| bad(&why))
    }
}

/// A size: digits and an optional K, M, G or T (powers of 1024, `B`/`iB` allowed).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let shift = match unit
        .to_ascii_uppercase()
        .trim_end_matches('B')
        .trim_end_matches('I')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("unknown unit {unit:?}")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{digits:?} is no number"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| "too large".to_string())
}

/// Options for [`prune`].
#[derive(Debug, Clone)]
pub struct PruneOptions {
    max_unused: MaxUnused,
    max_repack_size: Option<u64>,
    dry_run: bool,
    lock: LockOptions,
    loads: usize,
}

/// Builds [`PruneOptions`].
#[derive(Debug, Clone)]
pub struct PruneOptionsBuilder {
    options: PruneOptions,
    lock: Option<LockOptions>,
}

impl PruneOptions {
    /// Defaults: at most 5 % unused, no repack limit, not a dry run.
    pub fn builder() -> PruneOptionsBuilder {
        PruneOptionsBuilder {
            options: PruneOptions {
                max_unused: MaxUnused::Percent(5.0),
                max_repack_size: None,
                dry_run: false,
                // Replaced in build(); the default options always build.
                lock: LockOptions::builder(LockKind::Exclusive, "prune")
                    .build()
                    .unwrap_or_else(|_| unreachable!("default lock options are valid")),
                loads: 16,
            },
            lock: None,
        }
    }
}

impl PruneOptionsBuilder {
    /// How much unused data may stay (default 5 %).
    pub fn with_max_unused(mut self, max: MaxUnused) -> Self {
        self.options.max_unused = max;
        self
    }

    /// Reads at most this many bytes of packs to repack.
    pub fn with_max_repack_size(mut self, bytes: u64) -> Self {
        self.options.max_repack_size = Some(bytes);
        self
    }

    /// Decide and report, change nothing (and take no lock).
    pub fn with_dry_run(mut self, yes: bool) -> Self {
        self.options.dry_run = yes;
        self
    }

    /// The exclusive lock's options (its kind is forced to exclusive).
    pub fn with_lock(mut self, lock: LockOptions) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Trees and packs loaded at once (default 16).
    pub fn with_parallel_loads(mut self, loads: usize) -> Self {
        self.options.loads = loads;
        self
    }

    /// Checks the options.
    pub fn build(mut self) -> Result<PruneOptions> {
        if self.options.loads == 0 {
            return Err(Error::Config(
                "prune: parallel loads must be at least 1".into(),
            ));
        }
        if let Some(lock) = self.lock {
            if lock.kind() != LockKind::Exclusive {
                return Err(Error::Config("prune needs an exclusive lock".into()));
            }
            self.options.lock = lock;
        }
        Ok(self.options)
    }
}

/// What prune does with a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PackAction {
    /// Stays as it is.
    Keep,
    /// Its used frames go to new packs, then it is deleted.
    Repack,
    /// Deleted: nothing in it is used, or no index lists it.
    Delete,
}

/// The decision for one pack.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PackDecision {
    /// The pack object (`data/xx/<id>`).
    pub pack: String,
    /// Its size in bytes.
    pub size: u64,
    /// Bytes of frames some snapshot uses.
    pub used: u64,
    /// Bytes of frames no snapshot uses.
    pub unused: u64,
    /// What happens to it.
    pub action: PackAction,
    /// Why.
    pub reason: String,
}

/// What [`prune`] did, or with a dry run would do.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Snapshots whose data was kept.
    pub snapshots: usize,
    /// Distinct blobs (trees and chunks) they use.
    pub blobs_used: usize,
    /// Packs in the store before.
    pub packs: usize,
    /// Bytes of packs before.
    pub bytes: u64,
    /// Unused bytes before (in indexed packs, plus every unindexed pack).
    pub unused_bytes: u64,
    /// Packs deleted whole (unused or unindexed).
    pub packs_deleted: usize,
    /// Of those, packs that no index listed.
    pub unindexed_deleted: usize,
    /// Bytes of the packs deleted whole.
    pub bytes_deleted: u64,
    /// Packs repacked.
    pub packs_repacked: usize,
    /// Bytes of the packs repacked (read).
    pub bytes_repacked: u64,
    /// New packs written by repacking.
    pub packs_written: usize,
    /// Bytes of the new packs.
    pub bytes_written: u64,
    /// Unused bytes left in kept packs.
    pub unused_after: u64,
    /// Index objects replaced.
    pub index_deleted: usize,
    /// Index objects written.
    pub index_written: usize,
    /// The decision for every pack, in name order.
    pub decisions: Vec<PackDecision>,
}

/// One pack as the index objects describe it.
struct IndexedPack {
    entries: Vec<PackEntry>,
}

/// Deletes unused data and repacks partly used packs; see the [module docs](self).
pub async fn prune(repo: Arc<Repository>, options: &PruneOptions) -> Result<PruneReport> {
    repo.refuse_if_append_only("prune")?;
    if options.dry_run {
        return run(&repo, options, None).await;
    }
    let lock = repo.lock(&options.lock).await?;
    let result = run(&repo, options, Some(&lock)).await;
    lock.release_after(result).await
}

fn refuse(object: &str, reason: &str) -> Error {
    Error::corrupt(
        object,
        format!(
            "{reason}; prune refuses to run on a damaged repository, since what it cannot read would look unused (run check, then repair)"
        ),
    )
}

async fn run(
    repo: &Repository,
    options: &PruneOptions,
    lock: Option<&RepositoryLock>,
) -> Result<PruneReport> {
    let mut report = PruneReport {
        dry_run: options.dry_run,
        ..PruneReport::default()
    };
    // 1. The index and snapshots as they are now, under the lock.
    let index_files = repo.load_objects::<IndexFile>("index").await?;
    let snapshots = repo.snapshots().await?;
    for s in repo.skipped_objects() {
        let damaged = (is_object_name("index", &s.object)
            || is_object_name("snapshots", &s.object))
            && s.reason != VANISHED;
        if damaged {
            return Err(refuse(&s.object, &s.reason));
        }
    }
    let mut packs: BTreeMap<String, IndexedPack> = BTreeMap::new();
    for (_, file) in &index_files {
        for pack in &file.packs {
            let p = packs.entry(pack.id.clone()).or_insert(IndexedPack {
                entries: Vec::new(),
            });
            p.entries.extend(pack.entries.iter().cloned());
        }
    }
    let mut located: HashMap<ChunkId, BlobLocation> = HashMap::new();
    for (id, pack) in &mut packs {
        pack.entries.sort_by_key(|e| (e.offset, e.id));
        pack.entries.dedup();
        let pack_id: Arc<str> = Arc::from(id.as_str());
        for e in &pack.entries {
            located.insert(e.id, location(&pack_id, e));
        }
    }
    *repo.index.write().map_err(poisoned)? = located;
    report.snapshots = snapshots.len();
    let used = used_blobs(repo, &snapshots, options.loads).await?;
    report.blobs_used = used.len();

    // 2. What the store holds, and what to do with each pack.
    let mut stored: BTreeMap<String, u64> = BTreeMap::new();
    let mut listing = repo.store.list(Some(&ObjectPath::from("data")));
    while let Some(meta) = listing
        .try_next()
        .await
        .map_err(|e| Error::store("data/", e))?
    {
        let name = meta.location.to_string();
        if let Some((_, id)) = name.rsplit_once('/')
            && format::pack_path(id) == name
            && id.len() == 32
        {
            stored.insert(id.to_string(), meta.size);
        }
    }
    drop(listing);
    report.packs = stored.len();
    report.bytes = stored.values().sum();
    // Which frames (by pack and offset) hold the copy of a used blob that the index keeps.
    let mut used_frames: HashSet<(Arc<str>, u32)> = HashSet::new();
    {
        let index = repo.index.read().map_err(poisoned)?;
        for id in &used {
            match index.get(id) {
                Some(loc) => {
                    if !stored.contains_key(&*loc.pack) {
                        return Err(refuse(
                            &format::pack_path(&loc.pack),
                            &format!("holds blob {id}, which a snapshot uses, but is missing"),
                        ));
                    }
                    used_frames.insert((loc.pack.clone(), loc.offset));
                }
                None => {
                    return Err(refuse(
                        &format!("blob {id}"),
                        "a snapshot uses it but no index lists it",
                    ));
                }
            }
        }
    }
    let mut candidates = Vec::new();
    let mut decisions = Vec::new();
    let mut total_used = 0u64;
    let mut frames_of: HashMap<String, Vec<(u32, u32)>> = HashMap::new();
    let mut index_changes = false;
    for (id, pack) in &packs {
        let Some(&size) = stored.get(id) else {
            // Listed, missing, and nothing used in it: its entries are dropped.
            index_changes = true;
            continue;
        };
        let key: Arc<str> = Arc::from(id.as_str());
        let mut frames: BTreeMap<u32, (u32, bool)> = BTreeMap::new();
        for e in &pack.entries {
            let f = frames.entry(e.offset).or_insert((e.length, false));
            f.1 |= used_frames.contains(&(key.clone(), e.offset));
        }
        let used_bytes: u64 = frames
            .values()
            .filter(|f| f.1)
            .map(|f| u64::from(f.0))
            .sum();
        let unused_bytes: u64 = frames
            .values()
            .filter(|f| !f.1)
            .map(|f| u64::from(f.0))
            .sum();
        report.unused_bytes += unused_bytes;
        let decision = |action, reason: &str| PackDecision {
            pack: format::pack_path(id),
            size,
            used: used_bytes,
            unused: unused_bytes,
            action,
            reason: reason.to_string(),
        };
        if used_bytes == 0 {
            decisions.push(decision(PackAction::Delete, "no snapshot uses it"));
            index_changes = true;
        } else {
            total_used += used_bytes;
            if unused_bytes == 0 {
                decisions.push(decision(PackAction::Keep, "fully used"));
            } else {
                frames_of.insert(
                    id.clone(),
                    frames
                        .iter()
                        .filter(|(_, f)| f.1)
                        .map(|(&offset, f)| (offset, f.0))
                        .collect(),
                );
                candidates.push(decision(PackAction::Keep, ""));
            }
        }
    }
    for (id, &size) in &stored {
        if !packs.contains_key(id) {
            report.unused_bytes += size;
            report.unindexed_deleted += 1;
            decisions.push(PackDecision {
                pack: format::pack_path(id),
                size,
                used: 0,
                unused: size,
                action: PackAction::Delete,
                reason: "in no index (left by an interrupted backup or prune)".into(),
            });
        }
    }
    let allowed = match options.max_unused {
        MaxUnused::Unlimited => u64::MAX,
        MaxUnused::Size(s) => s,
        // unused / (used + unused) <= p  <=>  unused <= p / (100 - p) * used
        MaxUnused::Percent(p) => (p / (100.0 - p) * total_used as f64) as u64,
    };
    let mut unused_left: u64 = candidates.iter().map(|d| d.unused).sum();
    candidates.sort_by(|a, b| {
        let share = |d: &PackDecision| d.unused as f64 / d.size.max(1) as f64;
        share(b).total_cmp(&share(a)).then(a.pack.cmp(&b.pack))
    });
    let mut repack_bytes = 0u64;
    for mut d in candidates {
        let percent = 100.0 * d.unused as f64 / d.size.max(1) as f64;
        if unused_left <= allowed {
            d.reason = format!("{percent:.1} % unused; the unused data left is within max-unused");
        } else if options
            .max_repack_size
            .is_some_and(|max| repack_bytes + d.size > max)
        {
            d.reason = format!("{percent:.1} % unused; repacking it would exceed max-repack-size");
        } else {
            d.action = PackAction::Repack;
            d.reason = format!("{percent:.1} % unused");
            unused_left -= d.unused;
            repack_bytes += d.size;
            index_changes = true;
        }
        decisions.push(d);
    }
    decisions.sort_by(|a, b| a.pack.cmp(&b.pack));
    report.unused_after = unused_left;
    for d in &decisions {
        match d.action {
            PackAction::Delete => {
                report.packs_deleted += 1;
                report.bytes_deleted += d.size;
            }
            PackAction::Repack => {
                report.packs_repacked += 1;
                report.bytes_repacked += d.size;
            }
            _ => {}
        }
    }
    report.decisions = decisions;
    if options.dry_run {
        return Ok(report);
    }

    // 3. New packs from the used frames of the packs to repack.
    let to_repack: Vec<String> = report
        .decisions
        .iter()
        .filter(|d| d.action == PackAction::Repack)
        .map(|d| d.pack.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    let mut new_packs = Vec::new();
    let mut builder = PackBuilder::default();
    let pack_size = repo.config.pack_size as usize;
    let mut reads = futures::stream::iter(to_repack.iter())
        .map(|id| async move {
            let path = format::pack_path(id);
            crate::repo::get_bytes(repo.store.as_ref(), &path)
                .await
                .map(|bytes| (id, path, bytes))
        })
        .buffered(2);
    let mut scratch = Vec::new();
    while let Some(read) = reads.next().await {
        let (id, path, bytes) = read?;
        crate::lock::check_held(lock)?;
        let entries = &packs[id.as_str()].entries;
        for &(offset, length) in &frames_of[id.as_str()] {
            let members: Vec<&PackEntry> = entries.iter().filter(|e| e.offset == offset).collect();
            let frame = bytes
                .get(offset as usize..offset as usize + length as usize)
                .ok_or_else(|| refuse(&path, "a frame lies outside the pack"))?;
            let first = members[0];
            let frame_id = first.group.map_or(first.id, |g| g.id);
            repo.keys
                .cipher
                .open_into(&blob_aad(&frame_id), frame, &mut scratch)
                .map_err(|_| {
                    refuse(
                        &format!("{path} (blob {})", first.id),
                        "fails authentication",
                    )
                })?;
            if builder.len() > 0
                && builder.len() + frame.len() + builder.header_bound(members.len()) > pack_size
                && let Some(done) = builder.finish(&repo.keys.cipher)?
            {
                new_packs.push(upload(repo, done).await?);
            }
            builder.add(
                |out| {
                    out.extend_from_slice(frame);
                    Ok(())
                },
                members
                    .iter()
                    .map(|e| (e.id, e.kind, e.raw_length, e.group)),
                || Vec::with_capacity(pack_size + 8192),
            )?;
        }
    }
    drop(reads);
    if let Some(done) = builder.finish(&repo.keys.cipher)? {
        new_packs.push(upload(repo, done).await?);
    }
    report.packs_written = new_packs.len();
    report.bytes_written = new_packs.iter().map(|p| p.size).sum();

    // 4. The new index: kept packs and new ones.
    if index_changes {
        let keep: HashSet<&str> = report
            .decisions
            .iter()
            .filter(|d| d.action == PackAction::Keep)
            .map(|d| d.pack.as_str())
            .collect();
        let mut listed: Vec<IndexPack> = packs
            .iter()
            .filter(|(id, _)| keep.contains(format::pack_path(id).as_str()))
            .map(|(id, p)| IndexPack {
                id: id.clone(),
                size: stored[id.as_str()],
                entries: p.entries.clone(),
            })
            .collect();
        listed.extend(new_packs);
        let mut located = HashMap::new();
        let mut batch = Vec::new();
        let mut entries = 0;
        for pack in listed {
            let pack_id: Arc<str> = Arc::from(pack.id.as_str());
            for e in &pack.entries {
                located.insert(e.id, location(&pack_id, e));
            }
            entries += pack.entries.len();
            batch.push(pack);
            if entries >= INDEX_ENTRIES {
                crate::lock::check_held(lock)?;
                write_index(repo, std::mem::take(&mut batch)).await?;
                report.index_written += 1;
                entries = 0;
            }
        }
        if !batch.is_empty() {
            crate::lock::check_held(lock)?;
            write_index(repo, batch).await?;
            report.index_written += 1;
        }
        *repo.index.write().map_err(poisoned)? = located;
        // 5. The old index objects.
        for (name, _) in &index_files {
            crate::lock::check_held(lock)?;
            delete(repo, name).await?;
            report.index_deleted += 1;
        }
    }
    // 6. Unused, unindexed and repacked packs.
    let doomed: Vec<String> = report
        .decisions
        .iter()
        .filter(|d| d.action != PackAction::Keep)
        .map(|d| d.pack.clone())
        .collect();
    futures::stream::iter(doomed)
        .map(|path| async move {
            crate::lock::check_held(lock)?;
            delete(repo, &path).await
        })
        .buffer_unordered(options.loads)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(report)
}

fn location(pack: &Arc<str>, e: &PackEntry) -> BlobLocation {
    BlobLocation {
        pack: pack.clone(),
        offset: e.offset,
        length: e.length,
        raw_length: e.raw_length,
        group: e.group,
    }
}

/// Every blob (tree or chunk) the snapshots use, walking each tree once, `loads` at a time.
async fn used_blobs(
    repo: &Repository,
    snapshots: &[(String, format::Snapshot)],
    loads: usize,
) -> Result<HashSet<ChunkId>> {
    let mut used = HashSet::new();
    let mut frontier: Vec<ChunkId> = snapshots
        .iter()
        .map(|(_, s)| s.tree)
        .filter(|t| used.insert(*t))
        .collect();
    while !frontier.is_empty() {
        let mut trees = futures::stream::iter(std::mem::take(&mut frontier))
            .map(|id| async move { (id, repo.load_tree(&id).await) })
            .buffer_unordered(loads);
        while let Some((id, tree)) = trees.next().await {
            let tree = tree.map_err(|e| refuse(&format!("tree {id}"), &crate::report(&e)))?;
            for node in tree.nodes {
                used.extend(node.content);
                if let Some(sub) = node.subtree
                    && used.insert(sub)
                {
                    frontier.push(sub);
                }
            }
        }
    }
    Ok(used)
}

async fn upload(repo: &Repository, pack: FinishedPack) -> Result<IndexPack> {
    let bytes = bytes::Bytes::from(pack.bytes).slice(pack.start..);
    repo.put(&pack.path, bytes, true).await?;
    Ok(pack.index)
}

async fn write_index(repo: &Repository, packs: Vec<IndexPack>) -> Result<()> {
    let name = format!("index/{}", format::random_id());
    repo.put_sealed(&name, &IndexFile { packs }).await
}

async fn delete(repo: &Repository, name: &str) -> Result<()> {
    match repo.store.delete(&ObjectPath::from(name)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::store(name, e)),
    }
}
