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
//! # Reading a part of the data
//!
//! [`DataSubset::Part`] `n/N` reads the packs whose id falls in part `n` of `N` (the first 32
//! bits of the random pack id modulo `N`), so `N` runs with `n` = 1..N read every pack once.
//! A percentage `p` is part `run mod N + 1` of `N = ceil(100 / p)`, and a size `s` is part
//! `run mod N + 1` of `N = ceil(total pack bytes / s)`, where `run` is
//! [`CheckOptionsBuilder::with_run`], by default the day number (UTC): a daily `check` with
//! `--read-data-subset 10%` reads every pack within 10 days.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::{self, ChunkId, IndexFile, NodeKind, PackEntry};
use crate::repo::{BlobLocation, Repository};

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

    /// Packs read at once (default: the number of cores).
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

/// Everything a walk of the snapshots needs.
struct Walk<'a> {
    repo: &'a Repository,
    pack_sizes: &'a HashMap<String, u64>,
    /// Blobs found damaged by reading the data, with what is wrong.
    bad_blobs: &'a HashMap<ChunkId, (String, String)>,
    /// Trees whose whole subtree is sound.
    sound: HashSet<ChunkId>,
    trees: HashSet<ChunkId>,
    problems: Vec<Problem>,
    snapshot: String,
}

impl Walk<'_> {
    /// A problem with `id` (at `path`) if it is not indexed, lies outside its pack, or was
    /// found damaged; `Ok` with its location otherwise.
    fn locate(&mut self, id: &ChunkId, path: &str) -> Option<BlobLocation> {
        let mut report = |object: String, problem: String| {
            self.problems.push(Problem {
                snapshot: Some(self.snapshot.clone()),
                path: Some(path.to_string()),
                object,
                problem,
            });
        };
        let loc = match self.repo.locate(id) {
            Ok(loc) => loc,
            Err(e) => {
                report(format!("blob {id}"), describe(&e));
                return None;
            }
        };
        let pack = format::pack_path(&loc.pack);
        let object = format!("{pack} (blob {id})");
        match self.pack_sizes.get(&*loc.pack) {
            None => report(object, "its pack is missing from the store".into()),
            Some(&size) if u64::from(loc.offset) + u64::from(loc.length) > size => report(
                object,
                format!(
                    "lies outside its pack: bytes {}..{} of {size}",
                    loc.offset,
                    u64::from(loc.offset) + u64::from(loc.length)
                ),
            ),
            Some(_) => match self.bad_blobs.get(id) {
                Some((object, problem)) => report(object.clone(), problem.clone()),
                None => return Some(loc),
            },
        }
        None
    }

    /// Checks tree `id` at `path` and everything under it; returns whether all was sound.
    fn tree<'s>(
        &'s mut self,
        id: ChunkId,
        path: String,
    ) -> Pin<Box<dyn Future<Output = Result<bool>> + Send + 's>> {
        Box::pin(async move {
            if self.sound.contains(&id) {
                return Ok(true);
            }
            let shown = if path.is_empty() { "/" } else { &path };
            let Some(loc) = self.locate(&id, shown) else {
                return Ok(false);
            };
            self.trees.insert(id);
            let tree = match self.repo.load_tree(&id).await {
                Ok(tree) => tree,
                Err(e @ (Error::Corrupt { .. } | Error::NotFound { .. })) => {
                    self.problems.push(Problem {
                        snapshot: Some(self.snapshot.clone()),
                        path: Some(shown.to_string()),
                        object: format!("{} (tree {id})", format::pack_path(&loc.pack)),
                        problem: describe(&e),
                    });
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            let mut sound = true;
            for node in tree.nodes {
                let child = format!("{path}/{}", crate::ops::escape_path(&node.name));
                match node.kind {
                    NodeKind::Dir => match node.subtree {
                        Some(subtree) => sound &= self.tree(subtree, child).await?,
                        None => {
                            sound = false;
                            self.problems.push(Problem {
                                snapshot: Some(self.snapshot.clone()),
                                path: Some(child),
                                object: format!("tree {id}"),
                                problem: "directory without a subtree".into(),
                            });
                        }
                    },
                    NodeKind::File => {
                        for chunk in &node.content {
                            sound &= self.locate(chunk, &child).is_some();
                        }
                    }
                    _ => {}
                }
            }
            if sound {
                self.sound.insert(id);
            }
            Ok(sound)
        })
    }
}

/// Checks the repository's structure and, with [`CheckOptionsBuilder::with_read_data`], the
/// content of some or all packs. Damage is reported in the [`CheckReport`], not as an error;
/// errors are failures to run the check (the store failing).
pub async fn check(repo: Arc<Repository>, options: &CheckOptions) -> Result<CheckReport> {
    repo.check_with(&repo, options).await
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
        // The index, entry by entry (the in-memory index keeps one place per blob).
        let mut indexed: BTreeMap<String, Vec<PackEntry>> = BTreeMap::new();
        for (name, file) in self.load_objects::<IndexFile>("index").await? {
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
                        problem: format!("{name} says {} bytes, the store holds {size}", pack.size),
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
                indexed.entry(pack.id).or_default().extend(pack.entries);
            }
        }
        report.unindexed_packs = pack_sizes
            .keys()
            .filter(|id| !indexed.contains_key(*id))
            .map(|id| format::pack_path(id))
            .collect();
        report.unindexed_packs.sort();
        // Every pack's header, and with read-data the whole of the selected packs, so the
        // walk can name the files that damaged blobs belong to.
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
        let mut bad_blobs = HashMap::new();
        let present: Vec<_> = indexed
            .iter()
            .filter_map(|(id, entries)| pack_sizes.get(id).map(|&size| (id, size, entries)))
            .collect();
        let mut reads = futures::stream::iter(present)
            .map(|(id, size, entries)| match part {
                Some((n, of)) if part_of(id, of) == n => {
                    read_pack(shared.clone(), id, entries).boxed()
                }
                _ => read_header(shared.clone(), id, size, entries).boxed(),
            })
            .buffer_unordered(options.loads);
        while let Some(read) = reads.next().await {
            let read = read?;
            if read.full {
                report.packs_read += 1;
                report.bytes_read += read.bytes;
            } else {
                report.headers_read += 1;
            }
            report.blobs_verified += read.verified;
            for (object, problem) in read.pack_problems {
                problems.push(Problem {
                    snapshot: None,
                    path: None,
                    object,
                    problem,
                });
            }
            for (id, object, problem) in read.bad_blobs {
                problems.push(Problem {
                    snapshot: None,
                    path: None,
                    object: object.clone(),
                    problem: problem.clone(),
                });
                bad_blobs.insert(id, (object, problem));
            }
        }
        // Every snapshot's trees and chunks.
        let snapshots = self.snapshots().await?;
        report.snapshots = snapshots.len();
        let mut walk = Walk {
            repo: self,
            pack_sizes: &pack_sizes,
            bad_blobs: &bad_blobs,
            sound: HashSet::new(),
            trees: HashSet::new(),
            problems: Vec::new(),
            snapshot: String::new(),
        };
        for (id, snapshot) in snapshots {
            walk.snapshot = id;
            walk.tree(snapshot.tree, String::new()).await?;
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

    fn verify_pack(&self, path: &str, bytes: &[u8], entries: &[PackEntry]) -> PackRead {
        let mut read = PackRead {
            full: true,
            bytes: bytes.len() as u64,
            ..PackRead::default()
        };
        read.pack_problems
            .extend(self.compare_header(path, bytes, entries));
        let mut groups: HashMap<u32, std::result::Result<Vec<u8>, String>> = HashMap::new();
        for e in entries {
            let loc = BlobLocation {
                pack: Arc::from(""),
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
                group: e.group,
            };
            let frame =
                bytes.get(e.offset as usize..(e.offset as usize).saturating_add(e.length as usize));
            let Some(frame) = frame else {
                read.bad_blobs.push((
                    e.id,
                    format!("{path} (blob {})", e.id),
                    "lies outside its pack".into(),
                ));
                continue;
            };
            let verified = match &e.group {
                Some(g) => match groups.entry(e.offset).or_insert_with(|| {
                    self.open_group(g, path, frame)
                        .map_err(|err| describe(&err))
                }) {
                    Ok(group) => self
                        .cut_member(&e.id, &loc, path, group)
                        .map(|_| ())
                        .map_err(|err| describe(&err)),
                    Err(reason) => Err(reason.clone()),
                },
                None => self
                    .decode_blob(&e.id, &loc, path, frame)
                    .map(|_| ())
                    .map_err(|err| describe(&err)),
            };
            match verified {
                Ok(()) => read.verified += 1,
                Err(reason) => {
                    read.bad_blobs
                        .push((e.id, format!("{path} (blob {})", e.id), reason))
                }
            }
        }
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

/// Reads one pack, checks its header against the index and verifies every blob in it.
async fn read_pack(repo: Arc<Repository>, id: &str, entries: &[PackEntry]) -> Result<PackRead> {
    let path = format::pack_path(id);
    let bytes = match crate::repo::get_bytes(repo.store.as_ref(), &path).await {
        Ok(b) => b,
        Err(Error::NotFound { .. }) => {
            return Ok(PackRead {
                pack_problems: vec![(path, "vanished while being checked".into())],
                ..PackRead::default()
            });
        }
        Err(e) => return Err(e),
    };
    let entries = entries.to_vec();
    // Decryption and hashing are CPU work: off the async runtime's threads.
    tokio::task::spawn_blocking(move || repo.verify_pack(&path, &bytes, &entries))
        .await
        .map_err(|e| Error::Worker(format!("verifying a pack: {e}")))
}

/// Reads one pack's header (two range reads at its end) and compares it with the index.
async fn read_header(
    repo: Arc<Repository>,
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
