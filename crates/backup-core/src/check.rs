//! Checking a repository: its structure, and (optionally) the content of some or all packs.
//!
//! [`check`] verifies that every index entry points at a pack the store holds and
//! lies within it, that each pack's header (read from its end) lists what the index says, and that every tree and file chunk each snapshot references is in the index
//! and within its pack; every tree is opened and decoded on the way. With
//! [`CheckOptionsBuilder::with_read_data`] it also reads packs, opens their headers (which must list
//! what the index says) and decrypts, decompresses and verifies every blob in them against
//! its id.
//!
//! Damage is reported as [`Problem`]s naming the object, and, where a snapshot depends on it,
//! the snapshot and the file's path inside it.
//!
//! # Speed and memory
//!
//! The index objects are read a few at a time and each is handed, pack by pack, to reader
//! threads (one per core by default, [`CheckOptionsBuilder::with_parallel_loads`]) and let go,
//! so the check holds no second copy of the index beside the repository's. Each reader reads a
//! whole pack into its own reused buffer and verifies it with reused zstd contexts, one blob or
//! one group at a time. The trees are then loaded 32 at a time and kept only as their
//! directories and their damaged files, and the snapshots are walked from those. Memory is the
//! index plus a pack, a blob and a group per reader; on the Rust toolchain tree it went from
//! 168-199 MiB to 73-84 MiB, and `check --read-data` needs about a quarter of the CPU time of
//! restic's (see `benches/results/backup-figures.md`).
//!
//! # Reading a part of the data
//!
//! [`DataSubset::Part`] `n/N` reads the packs whose id falls in part `n` of `N` (the first 32
//! bits of the random pack id modulo `N`), so `N` runs with `n` = 1..N read every pack once.
//! A percentage `p` is part `run mod N + 1` of `N = ceil(100 / p)`, and a size `s` is part
//! `run mod N + 1` of `N = ceil(total pack bytes / s)`, where `run` is
//! [`CheckOptionsBuilder::with_run`], by default the day number (UTC): a daily `check` with
//! `--read-data-subset 10%` reads every pack within 10 days.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde::Serialize;

use crate::compress::BlobDecoder;
use crate::error::{Error, Result};
use crate::format::{self, ChunkId, IndexFile, NodeKind, PackEntry};
use crate::repo::{BlobLocation, Repository, get_into};

/// Which packs `check` reads and verifies besides the structure.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum DataSubset {
    /// Every pack.
    All,
    /// Part `n` (1-based) of `of`: packs whose id modulo `of` is `n - 1`.
    Part {
        /// Which part, 1..=of.
        n: u32,
        /// Number of parts.
        of: u32,
    },
    /// About this percentage of the packs (0 < p <= 100), a different part on each run.
    Percent(f64),
    /// About this many bytes of packs, a different part on each run.
    Size(u64),
}

impl std::str::FromStr for DataSubset {
    type Err = Error;

    /// `n/N`, `P%` or a size (`500M`, `2G`, `1048576`; K, M, G, T are powers of 1024).
    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: String| {
            Error::Config(format!(
                "read-data subset {text:?}: {why} (give n/N, a percentage such as 10%, or a size such as 2G)"
            ))
        };
        let text = text.trim();
        if let Some((n, of)) = text.split_once('/') {
            let n: u32 = n.parse().map_err(|_| bad(format!("{n:?} is no number")))?;
            let of: u32 = of
                .parse()
                .map_err(|_| bad(format!("{of:?} is no number")))?;
            if n == 0 || of == 0 || n > of {
                return Err(bad("n must be in 1..=N".into()));
            }
            return Ok(DataSubset::Part { n, of });
        }
        if let Some(p) = text.strip_suffix('%') {
            let p: f64 = p.parse().map_err(|_| bad(format!("{p:?} is no number")))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad("the percentage must be over 0 and at most 100".into()));
            }
            return Ok(DataSubset::Percent(p));
        }
        let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((i, _)) => text.split_at(i),
            None => (text, ""),
        };
        let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
            "" => 0,
            "K" => 10,
            "M" => 20,
            "G" => 30,
            "T" => 40,
            _ => return Err(bad(format!("unknown unit {unit:?}"))),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| bad(format!("{digits:?} is no number")))?;
        let size = n
            .checked_mul(1 << shift)
            .filter(|&s| s > 0)
            .ok_or_else(|| bad("the size must be over 0 and fit in 64 bits".into()))?;
        Ok(DataSubset::Size(size))
    }
}

/// Options for [`check()`].
#[derive(Debug, Clone)]
pub struct CheckOptions {
    read_data: Option<DataSubset>,
    run: u64,
    loads: usize,
}

/// Builds [`CheckOptions`].
#[derive(Debug, Clone)]
pub struct CheckOptionsBuilder(CheckOptions);

impl CheckOptions {
    /// A structure-only check; see the builder's methods for reading data.
    pub fn builder() -> CheckOptionsBuilder {
        let day = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400);
        CheckOptionsBuilder(CheckOptions {
            read_data: None,
            run: day,
            loads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        })
    }
}

impl CheckOptionsBuilder {
    /// Also reads and verifies the packs of `subset`.
    pub fn with_read_data(mut self, subset: DataSubset) -> Self {
        self.0.read_data = Some(subset);
        self
    }

    /// The run number that picks the part for a percentage or size subset (default: days
    /// since 1970-01-01, UTC).
    pub fn with_run(mut self, run: u64) -> Self {
        self.0.run = run;
        self
    }

    /// Packs read at once, each by its own thread (default: the number of cores).
    pub fn with_parallel_loads(mut self, loads: usize) -> Self {
        self.0.loads = loads;
        self
    }

    /// Checks the options.
    pub fn build(self) -> Result<CheckOptions> {
        if self.0.loads == 0 {
            return Err(Error::Config(
                "check: parallel loads must be at least 1".into(),
            ));
        }
        if let Some(DataSubset::Part { n, of }) = self.0.read_data
            && (n == 0 || n > of)
        {
            return Err(Error::Config(format!(
                "read-data part {n}/{of}: n must be in 1..=N"
            )));
        }
        Ok(self.0)
    }
}

/// One piece of damage.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub struct Problem {
    /// The snapshot that is affected, when the damage is found through one.
    pub snapshot: Option<String>,
    /// The path inside that snapshot (escaped as `ls` prints it).
    pub path: Option<String>,
    /// The repository object at fault (`data/…`, `index/…`, `snapshots/…`), with the blob id
    /// when one blob is at fault.
    pub object: String,
    /// What is wrong.
    pub problem: String,
}

/// What [`check()`] found.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// Snapshots checked.
    pub snapshots: usize,
    /// Distinct trees opened.
    pub trees: usize,
    /// Packs in the store.
    pub packs: usize,
    /// Packs read and verified whole (with read-data).
    pub packs_read: usize,
    /// Packs of which only the header was read and compared with the index.
    pub headers_read: usize,
    /// Bytes of the packs read whole.
    pub bytes_read: u64,
    /// Blobs decrypted and verified (with read-data).
    pub blobs_verified: usize,
    /// The part read, as `n/N` (with read-data).
    pub part: Option<String>,
    /// Packs that no index lists: not damage (a backup killed part-way leaves them) but
    /// unreachable.
    pub unindexed_packs: Vec<String>,
    /// Damage, sorted.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// Whether no damage was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The part (1-based `n`, `of`) a pack belongs to among `of` parts.
fn part_of(pack_id: &str, of: u32) -> u32 {
    let lead = pack_id
        .get(..8)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    lead % of + 1
}

/// What locating a blob found wrong: the object at fault and the problem.
type Misplaced = (String, String);

/// Where the blob is, if it is indexed, lies within a pack the store holds, and was not found
/// damaged by reading the data.
fn place(
    repo: &Repository,
    pack_sizes: &HashMap<String, u64>,
    bad_blobs: &HashMap<ChunkId, Misplaced>,
    id: &ChunkId,
) -> std::result::Result<BlobLocation, Misplaced> {
    let loc = repo
        .locate(id)
        .map_err(|e| (format!("blob {id}"), describe(&e)))?;
    let object = || format!("{} (blob {id})", format::pack_path(&loc.pack));
    match pack_sizes.get(&*loc.pack) {
        None => Err((object(), "its pack is missing from the store".into())),
        Some(&size) if u64::from(loc.offset) + u64::from(loc.length) > size => Err((
            object(),
            format!(
                "lies outside its pack: bytes {}..{} of {size}",
                loc.offset,
                u64::from(loc.offset) + u64::from(loc.length)
            ),
        )),
        Some(_) => match bad_blobs.get(id) {
            Some(bad) => Err(bad.clone()),
            None => Ok(loc),
        },
    }
}

/// What the walk keeps of a tree: its directories and the files with a chunk that is not
/// where it should be (a sound file's chunks are not kept, so the walk's memory is the
/// directory structure, not the trees).
struct TreeSummary {
    /// Each directory's name (escaped) and subtree (`None`: a directory without one).
    dirs: Vec<(String, Option<ChunkId>)>,
    /// Files (name escaped) with their chunks that fail [`place`].
    bad_files: Vec<(String, Vec<ChunkId>)>,
}

/// Trees opened at once while loading them for the walk.
const TREE_LOADS: usize = 32;

/// Everything a walk of the snapshots needs.
struct Walk<'a> {
    repo: &'a Repository,
    pack_sizes: &'a HashMap<String, u64>,
    /// Blobs found damaged by reading the data, with what is wrong.
    bad_blobs: &'a HashMap<ChunkId, Misplaced>,
    /// Every tree reachable from the snapshots that could be located: its summary, or why it
    /// did not load.
    trees: HashMap<ChunkId, std::result::Result<TreeSummary, String>>,
    /// Trees whose whole subtree is sound (see [`Walk::find_sound`]).
    sound: HashSet<ChunkId>,
    problems: Vec<Problem>,
    snapshot: String,
}

impl Walk<'_> {
    /// Loads and summarizes every tree reachable from `roots`, a level at a time with
    /// [`TREE_LOADS`] loads in flight (one at a time, the walk waited on a store round trip per
    /// directory). Trees that cannot be located are not loaded; the walk reports them.
    async fn load(&mut self, roots: impl IntoIterator<Item = ChunkId>) -> Result<()> {
        let (repo, pack_sizes, bad_blobs) = (self.repo, self.pack_sizes, self.bad_blobs);
        let mut seen = HashSet::new();
        let mut level: Vec<ChunkId> = roots.into_iter().filter(|id| seen.insert(*id)).collect();
        while !level.is_empty() {
            let mut loads = futures::stream::iter(level)
                .filter(|id| futures::future::ready(place(repo, pack_sizes, bad_blobs, id).is_ok()))
                .map(|id| async move { (id, repo.load_tree(&id).await) })
                .buffer_unordered(TREE_LOADS);
            level = Vec::new();
            while let Some((id, loaded)) = loads.next().await {
                let tree = match loaded {
                    Ok(tree) => tree,
                    Err(e @ (Error::Corrupt { .. } | Error::NotFound { .. })) => {
                        self.trees.insert(id, Err(describe(&e)));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let mut summary = TreeSummary {
                    dirs: Vec::new(),
                    bad_files: Vec::new(),
                };
                for node in tree.nodes {
                    match node.kind {
                        NodeKind::Dir => {
                            if let Some(sub) = node.subtree
                                && seen.insert(sub)
                            {
                                level.push(sub);
                            }
                            let name = crate::ops::escape_path(&node.name);
                            summary.dirs.push((name, node.subtree));
                        }
                        NodeKind::File => {
                            let bad: Vec<ChunkId> = node
                                .content
                                .into_iter()
                                .filter(|c| place(repo, pack_sizes, bad_blobs, c).is_err())
                                .collect();
                            if !bad.is_empty() {
                                let name = crate::ops::escape_path(&node.name);
                                summary.bad_files.push((name, bad));
                            }
                        }
                        _ => {}
                    }
                }
                self.trees.insert(id, Ok(summary));
            }
        }
        Ok(())
    }

    /// Which trees are sound: located, loaded, and every directory, chunk and subtree under
    /// them too (a property of the tree alone, so it is found once, not per snapshot). Post
    /// order with an explicit stack: no recursion as deep as the directories are.
    fn find_sound(&mut self, roots: &[ChunkId]) {
        let mut done: HashMap<ChunkId, bool> = HashMap::new();
        for &root in roots {
            let mut stack = vec![(root, false)];
            while let Some((id, expanded)) = stack.pop() {
                if done.contains_key(&id) {
                    continue;
                }
                let summary = match self.trees.get(&id) {
                    Some(Ok(summary)) => summary,
                    // Not located, or failed to load.
                    _ => {
                        done.insert(id, false);
                        continue;
                    }
                };
                let subtrees = summary.dirs.iter().map(|(_, sub)| *sub);
                if !expanded {
                    stack.push((id, true));
                    stack.extend(subtrees.flatten().map(|sub| (sub, false)));
                    continue;
                }
                let sound = summary.bad_files.is_empty()
                    && subtrees
                        .into_iter()
                        .all(|sub| sub.is_some_and(|sub| done.get(&sub) == Some(&true)));
                done.insert(id, sound);
            }
        }
        self.sound = done
            .into_iter()
            .filter_map(|(id, sound)| sound.then_some(id))
            .collect();
    }

    /// Records a problem at `path` of the current snapshot.
    fn report(&mut self, path: String, (object, problem): Misplaced) {
        self.problems.push(Problem {
            snapshot: Some(self.snapshot.clone()),
            path: Some(path),
            object,
            problem,
        });
    }

    /// Reports every problem under tree `root` of the current snapshot, by path; sound
    /// subtrees are not entered.
    fn report_snapshot(&mut self, root: ChunkId) {
        let mut stack = vec![(root, String::new())];
        while let Some((id, path)) = stack.pop() {
            if self.sound.contains(&id) {
                continue;
            }
            let shown = if path.is_empty() { "/" } else { &path };
            let loc = match place(self.repo, self.pack_sizes, self.bad_blobs, &id) {
                Ok(loc) => loc,
                Err(misplaced) => {
                    self.report(shown.to_string(), misplaced);
                    continue;
                }
            };
            let mut found = Vec::new();
            match self.trees.get(&id) {
                Some(Ok(summary)) => {
                    for (name, subtree) in &summary.dirs {
                        let child = format!("{path}/{name}");
                        match subtree {
                            Some(sub) => stack.push((*sub, child)),
                            None => found.push((
                                child,
                                (format!("tree {id}"), "directory without a subtree".into()),
                            )),
                        }
                    }
                    for (name, chunks) in &summary.bad_files {
                        let child = format!("{path}/{name}");
                        for chunk in chunks {
                            if let Err(misplaced) =
                                place(self.repo, self.pack_sizes, self.bad_blobs, chunk)
                            {
                                found.push((child.clone(), misplaced));
                            }
                        }
                    }
                }
                Some(Err(problem)) => found.push((
                    shown.to_string(),
                    (
                        format!("{} (tree {id})", format::pack_path(&loc.pack)),
                        problem.clone(),
                    ),
                )),
                // Located trees were all loaded: not reached.
                None => {}
            }
            for (path, misplaced) in found {
                self.report(path, misplaced);
            }
        }
    }
}

/// Checks the repository's structure and, with [`CheckOptionsBuilder::with_read_data`], the
/// content of some or all packs. Damage is reported in the [`CheckReport`], not as an error;
/// errors are failures to run the check (the store failing).
pub async fn check(repo: Arc<Repository>, options: &CheckOptions) -> Result<CheckReport> {
    repo.check_with(&repo, options).await
}

/// Index objects loaded at once by `check` (each up to 16,384 entries; they are handled and
/// let go as they arrive, so the check holds no second copy of the index).
const INDEX_LOADS: usize = 4;

/// One pack to read: its id and size, and what one index object says it holds.
struct PackJob {
    id: String,
    size: u64,
    entries: Vec<PackEntry>,
    /// Read and verify the whole pack (else only its header).
    full: bool,
}

impl Repository {
    async fn check_with(
        &self,
        shared: &Arc<Repository>,
        options: &CheckOptions,
    ) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let mut problems = Vec::new();
        // The packs the store holds.
        let mut pack_sizes = HashMap::new();
        let mut listing = self.store.list(Some(&ObjectPath::from("data")));
        while let Some(meta) = listing
            .try_next()
            .await
            .map_err(|e| Error::store("data/", e))?
        {
            let name = meta.location.to_string();
            match name.rsplit_once('/') {
                Some((_, id)) if format::pack_path(id) == name && is_hex_id(id) => {
                    pack_sizes.insert(id.to_string(), meta.size);
                }
                _ => problems.push(Problem {
                    snapshot: None,
                    path: None,
                    object: name,
                    problem: "not a pack object (unexpected name)".into(),
                }),
            }
        }
        report.packs = pack_sizes.len();
        let part = options.read_data.map(|subset| match subset {
            DataSubset::All => (1, 1),
            DataSubset::Part { n, of } => (n, of),
            DataSubset::Percent(p) => {
                let of = (100.0 / p).ceil().max(1.0) as u32;
                ((options.run % u64::from(of)) as u32 + 1, of)
            }
            DataSubset::Size(s) => {
                let total: u64 = pack_sizes.values().sum();
                let of = u32::try_from(total.div_ceil(s).max(1)).unwrap_or(u32::MAX);
                ((options.run % u64::from(of)) as u32 + 1, of)
            }
        });
        report.part = part.map(|(n, of)| format!("{n}/{of}"));
        // The index, object by object as it loads (each handed to the readers and let go),
        // and every indexed pack: its header, and with read-data the whole of the selected
        // packs, so the walk can name the files that damaged blobs belong to. The readers are
        // blocking threads, one per parallel load, each with its own pack buffer.
        let (jobs, job_queue) = tokio::sync::mpsc::channel::<PackJob>(options.loads);
        let (results, done) = tokio::sync::mpsc::channel(options.loads);
        let job_queue = Arc::new(std::sync::Mutex::new(job_queue));
        let readers: Vec<_> = (0..options.loads)
            .map(|_| {
                let (repo, queue, results) = (shared.clone(), job_queue.clone(), results.clone());
                let handle = tokio::runtime::Handle::current();
                tokio::task::spawn_blocking(move || pack_reader(&repo, &queue, &results, &handle))
            })
            .collect();
        drop((job_queue, results));
        let mut indexed = HashSet::new();
        let list_index = async {
            let names = self.object_names("index").await?;
            let mut index = std::pin::pin!(self.load_each::<IndexFile>(names, INDEX_LOADS));
            while let Some((name, file)) = index.try_next().await? {
                for pack in file.packs {
                    let path = format::pack_path(&pack.id);
                    let Some(&size) = pack_sizes.get(&pack.id) else {
                        problems.push(Problem {
                            snapshot: None,
                            path: None,
                            object: path,
                            problem: format!("listed in {name} but missing from the store"),
                        });
                        continue;
                    };
                    if pack.size != size {
                        problems.push(Problem {
                            snapshot: None,
                            path: None,
                            object: path.clone(),
                            problem: format!(
                                "{name} says {} bytes, the store holds {size}",
                                pack.size
                            ),
                        });
                    }
                    for e in &pack.entries {
                        let end = u64::from(e.offset) + u64::from(e.length);
                        if end + 4 > size {
                            problems.push(Problem {
                                snapshot: None,
                                path: None,
                                object: format!("{path} (blob {})", e.id),
                                problem: format!(
                                    "{name} places it at bytes {}..{end}, outside the pack ({size} bytes)",
                                    e.offset
                                ),
                            });
                        }
                    }
                    // A pack listed again (by an index object a prune or repair wrote beside
                    // the old one) has its header compared with that listing too, but its data
                    // is read once.
                    let full = indexed.insert(pack.id.clone())
                        && part.is_some_and(|(n, of)| part_of(&pack.id, of) == n);
                    let job = PackJob {
                        id: pack.id,
                        size,
                        entries: pack.entries,
                        full,
                    };
                    if jobs.send(job).await.is_err() {
                        // Every reader stopped: why is in their results.
                        return Ok(());
                    }
                }
            }
            drop(jobs);
            Ok::<_, Error>(())
        };
        let mut bad_blobs = HashMap::new();
        let mut problems_read = Vec::new();
        let collect = async {
            // Owned here, so that if this stops early the readers' sends fail and they stop.
            let mut done = done;
            while let Some(read) = done.recv().await {
                let read: PackRead = read?;
                if read.full {
                    report.packs_read += 1;
                    report.bytes_read += read.bytes;
                } else {
                    report.headers_read += 1;
                }
                report.blobs_verified += read.verified;
                for (object, problem) in read.pack_problems {
                    problems_read.push(Problem {
                        snapshot: None,
                        path: None,
                        object,
                        problem,
                    });
                }
                for (id, object, problem) in read.bad_blobs {
                    problems_read.push(Problem {
                        snapshot: None,
                        path: None,
                        object: object.clone(),
                        problem: problem.clone(),
                    });
                    bad_blobs.insert(id, (object, problem));
                }
            }
            Ok::<_, Error>(())
        };
        let outcome = futures::try_join!(list_index, collect);
        for reader in readers {
            reader
                .await
                .map_err(|e| Error::Worker(format!("reading packs: {e}")))?;
        }
        outcome?;
        problems.append(&mut problems_read);
        report.unindexed_packs = pack_sizes
            .keys()
            .filter(|id| !indexed.contains(*id))
            .map(|id| format::pack_path(id))
            .collect();
        report.unindexed_packs.sort();
        // Every snapshot's trees and chunks.
        let snapshots = self.snapshots().await?;
        report.snapshots = snapshots.len();
        let mut walk = Walk {
            repo: self,
            pack_sizes: &pack_sizes,
            bad_blobs: &bad_blobs,
            trees: HashMap::new(),
            sound: HashSet::new(),
            problems: Vec::new(),
            snapshot: String::new(),
        };
        let roots: Vec<ChunkId> = snapshots.iter().map(|(_, s)| s.tree).collect();
        walk.load(roots.iter().copied()).await?;
        walk.find_sound(&roots);
        for (id, snapshot) in snapshots {
            walk.snapshot = id;
            walk.report_snapshot(snapshot.tree);
        }
        report.trees = walk.trees.len();
        problems.append(&mut walk.problems);
        // Every key object, so that a damaged one is reported (opening stops at the first key
        // that opens).
        self.list_keys().await?;
        // Damaged or foreign objects met while opening, loading the index or listing the
        // snapshots (one that vanished meanwhile, deleted by a forget, is no damage).
        for s in self.skipped_objects() {
            if s.reason != crate::repo::VANISHED {
                problems.push(Problem {
                    snapshot: None,
                    path: None,
                    object: s.object,
                    problem: format!("skipped: {}", s.reason),
                });
            }
        }
        problems.sort();
        problems.dedup();
        report.problems = problems;
        Ok(report)
    }

    /// Checks a whole pack: its header against `entries` (what the index says), and every
    /// blob in it, decrypted, decompressed and hashed with the reader's reusable `decoders`
    /// (one for single blobs, one for groups). A group is opened once and its members are cut
    /// out of it while it is at hand, so no more than one decoded group is held at a time.
    fn verify_pack(
        &self,
        path: &str,
        bytes: &[u8],
        entries: &[PackEntry],
        decoders: &mut [BlobDecoder; 2],
    ) -> PackRead {
        let mut read = PackRead {
            full: true,
            bytes: bytes.len() as u64,
            ..PackRead::default()
        };
        read.pack_problems
            .extend(self.compare_header(path, bytes, entries));
        let mut sorted: Vec<&PackEntry> = entries.iter().collect();
        sorted.sort_by_key(|e| (e.offset, e.id));
        sorted.dedup();
        let [blob_decoder, group_decoder] = decoders;
        let no_pack: Arc<str> = Arc::from("");
        let mut bad = |e: &PackEntry, reason: String| {
            read.bad_blobs
                .push((e.id, format!("{path} (blob {})", e.id), reason));
        };
        let mut verified = 0;
        // Runs of entries in one frame: a single blob, or the members of one group (opened
        // once for all of them).
        let frame_of = |e: &PackEntry| (e.offset, e.group.map(|g| (g.id, g.raw_length)));
        for run in sorted.chunk_by(|a, b| frame_of(a) == frame_of(b)) {
            let first = run[0];
            let start = first.offset as usize;
            let Some(frame) = bytes.get(start..start.saturating_add(first.length as usize)) else {
                for e in run {
                    bad(e, "lies outside its pack".into());
                }
                continue;
            };
            let Some(group) = first.group else {
                for e in run {
                    match self.decode_frame_with(&e.id, e.raw_length, path, frame, blob_decoder) {
                        Ok(_) => verified += 1,
                        Err(err) => bad(e, describe(&err)),
                    }
                }
                continue;
            };
            let opened =
                match self.open_frame_with(&group.id, group.raw_length, path, frame, group_decoder)
                {
                    Ok(opened) => opened,
                    Err(err) => {
                        for e in run {
                            bad(e, describe(&err));
                        }
                        continue;
                    }
                };
            for e in run {
                let loc = BlobLocation {
                    pack: no_pack.clone(),
                    offset: e.offset,
                    length: e.length,
                    raw_length: e.raw_length,
                    group: e.group,
                };
                match self.cut_member(&e.id, &loc, path, opened) {
                    Ok(_) => verified += 1,
                    Err(err) => bad(e, describe(&err)),
                }
            }
        }
        read.verified = verified;
        read
    }

    /// A problem if the header at the end of `bytes` (a pack, or its tail) does not open or
    /// does not list exactly `entries`.
    fn compare_header(
        &self,
        path: &str,
        bytes: &[u8],
        entries: &[PackEntry],
    ) -> Option<(String, String)> {
        match self.pack_header(path, bytes) {
            Ok(mut header) => {
                let mut listed = entries.to_vec();
                header.sort_by_key(|e| (e.offset, e.id));
                listed.sort_by_key(|e| (e.offset, e.id));
                listed.dedup();
                (header != listed).then(|| {
                    (
                        path.to_string(),
                        "its header does not list what the index says".into(),
                    )
                })
            }
            Err(reason) => Some((format!("{path} (header)"), reason)),
        }
    }

    /// Opens and decodes a pack's header.
    pub(crate) fn pack_header(
        &self,
        path: &str,
        bytes: &[u8],
    ) -> std::result::Result<Vec<PackEntry>, String> {
        let len_at = bytes
            .len()
            .checked_sub(4)
            .ok_or("shorter than its length field")?;
        let mut len = [0u8; 4];
        len.copy_from_slice(&bytes[len_at..]);
        let len = u32::from_le_bytes(len) as usize;
        let sealed = len_at
            .checked_sub(len)
            .and_then(|start| bytes.get(start..len_at))
            .ok_or("its header length points outside the pack")?;
        let plain = self
            .keys
            .cipher
            .open(&crate::pack::header_aad(path), sealed)
            .map_err(|_| "its header fails authentication".to_string())?;
        let plain = crate::compress::decode_object(&plain)?;
        format::decode(path, &plain).map_err(|e| describe(&e))
    }
}

/// A pack reader's loop: takes jobs until the queue closes, sends what each found.
fn pack_reader(
    repo: &Repository,
    queue: &std::sync::Mutex<tokio::sync::mpsc::Receiver<PackJob>>,
    results: &tokio::sync::mpsc::Sender<Result<PackRead>>,
    handle: &tokio::runtime::Handle,
) {
    let mut buf = Vec::new();
    let mut decoders = [BlobDecoder::default(), BlobDecoder::default()];
    loop {
        let job = match queue.lock() {
            Ok(mut queue) => queue.blocking_recv(),
            Err(_) => None,
        };
        let Some(job) = job else { return };
        let read = if job.full {
            read_pack(repo, handle, &job, &mut buf, &mut decoders)
        } else {
            handle.block_on(read_header(repo, &job.id, job.size, &job.entries))
        };
        // A hostile object far larger than a pack is not kept around.
        if buf.capacity() > 2 * repo.config.pack_size as usize {
            buf = Vec::new();
        }
        if results.blocking_send(read).is_err() {
            return;
        }
    }
}

/// Reads one pack into `buf`, checks its header against the index and verifies every blob
/// in it.
fn read_pack(
    repo: &Repository,
    handle: &tokio::runtime::Handle,
    job: &PackJob,
    buf: &mut Vec<u8>,
    decoders: &mut [BlobDecoder; 2],
) -> Result<PackRead> {
    let path = format::pack_path(&job.id);
    match handle.block_on(get_into(repo.store.as_ref(), &path, buf)) {
        Ok(()) => Ok(repo.verify_pack(&path, buf, &job.entries, decoders)),
        Err(Error::NotFound { .. }) => Ok(PackRead {
            pack_problems: vec![(path, "vanished while being checked".into())],
            ..PackRead::default()
        }),
        Err(e) => Err(e),
    }
}

/// Reads one pack's header (two range reads at its end) and compares it with the index.
async fn read_header(
    repo: &Repository,
    id: &str,
    size: u64,
    entries: &[PackEntry],
) -> Result<PackRead> {
    let path = format::pack_path(id);
    let object = ObjectPath::from(path.as_str());
    let problem = |what: &str| PackRead {
        pack_problems: vec![(format!("{path} (header)"), what.to_string())],
        ..PackRead::default()
    };
    let get = |range: std::ops::Range<u64>| repo.store.get_range(&object, range);
    let Some(len_at) = size.checked_sub(4) else {
        return Ok(problem("shorter than its length field"));
    };
    let len = match get(len_at..size).await {
        Ok(b) if b.len() == 4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        Ok(_) => return Ok(problem("shorter than the store says")),
        Err(object_store::Error::NotFound { .. }) => {
            return Ok(problem("vanished while being checked"));
        }
        Err(e) => return Err(Error::store(&path, e)),
    };
    let Some(start) = len_at.checked_sub(u64::from(len)) else {
        return Ok(problem("its header length points outside the pack"));
    };
    let tail = match get(start..size).await {
        Ok(b) => b,
        Err(object_store::Error::NotFound { .. }) => {
            return Ok(problem("vanished while being checked"));
        }
        Err(e) => return Err(Error::store(&path, e)),
    };
    Ok(PackRead {
        bytes: tail.len() as u64,
        pack_problems: repo
            .compare_header(&path, &tail, entries)
            .into_iter()
            .collect(),
        ..PackRead::default()
    })
}

/// What reading one pack found.
#[derive(Default)]
struct PackRead {
    /// Whether the whole pack was read (else only its header).
    full: bool,
    bytes: u64,
    verified: usize,
    pack_problems: Vec<(String, String)>,
    bad_blobs: Vec<(ChunkId, String, String)>,
}

/// What is wrong, without the object name a [`Error::Corrupt`] repeats (the problem names it).
fn describe(error: &Error) -> String {
    match error {
        Error::Corrupt { reason, .. } => reason.clone(),
        other => crate::report(other),
    }
}

fn is_hex_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse() {
        assert_eq!(
            "2/5".parse::<DataSubset>().unwrap(),
            DataSubset::Part { n: 2, of: 5 }
        );
        assert_eq!(
            "10%".parse::<DataSubset>().unwrap(),
            DataSubset::Percent(10.0)
        );
        assert_eq!(
            "2G".parse::<DataSubset>().unwrap(),
            DataSubset::Size(2 << 30)
        );
        assert_eq!(
            "512MiB".parse::<DataSubset>().unwrap(),
            DataSubset::Size(512 << 20)
        );
        assert_eq!(
            "4096".parse::<DataSubset>().unwrap(),
            DataSubset::Size(4096)
        );
        for bad in [
            "0/3",
            "4/3",
            "x/3",
            "0%",
            "101%",
            "5X",
            "",
            "0",
            "99999999999T",
        ] {
            assert!(bad.parse::<DataSubset>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parts_cover_every_pack_exactly_once() {
        let ids = [
            "00000000aa",
            "ffffffff00",
            "12345678ab",
            "deadbeef00",
            "00000007cc",
        ];
        for of in 1..9 {
            for id in ids {
                let parts: Vec<u32> = (1..=of).filter(|&n| part_of(id, of) == n).collect();
                assert_eq!(parts.len(), 1, "{id} in {of} parts");
            }
        }
    }
}
