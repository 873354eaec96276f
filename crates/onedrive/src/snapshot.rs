//! Files of a backup-core snapshot as an [`ExportSource`] (feature `backup-core`): the adapter
//! that lets an export take its data from a backup without this crate depending on backup-core
//! otherwise.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::Repository;
use backup_core::format::{ChunkId, NodeKind};

use crate::error::{Error, Result};
use crate::export::{ExportSource, SourceEntry};

/// The regular files of one snapshot (optionally under a sub-path), read chunk by chunk.
///
/// Build it inside a tokio runtime: reads block on that runtime from the export's blocking
/// threads.
pub struct SnapshotSource {
    repo: Arc<Repository>,
    runtime: tokio::runtime::Handle,
    /// Path in the snapshot to (size, chunks).
    files: BTreeMap<PathBuf, (u64, Vec<ChunkId>)>,
}

impl std::fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotSource")
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

fn backup_error(what: String, e: backup_core::Error) -> Error {
    Error::Source {
        what,
        source: std::io::Error::other(e),
    }
}

impl SnapshotSource {
    /// Lists snapshot `wanted` (an id, a unique prefix, or `latest`) of `repo`; only files under
    /// `sub_path` if given. Paths are as in the snapshot (each backed-up path is one top-level
    /// entry).
    pub async fn new(repo: Arc<Repository>, wanted: &str, sub_path: Option<&Path>) -> Result<Self> {
        let (_, snapshot) = repo
            .find_snapshot(wanted)
            .await
            .map_err(|e| backup_error(format!("snapshot {wanted}"), e))?;
        let mut files = BTreeMap::new();
        let mut pending = vec![(snapshot.tree, PathBuf::new())];
        while let Some((tree, prefix)) = pending.pop() {
            let nodes = repo
                .load_tree(&tree)
                .await
                .map_err(|e| backup_error(format!("tree of {}", prefix.display()), e))?
                .nodes;
            for node in nodes {
                let path = prefix.join(std::ffi::OsStr::from_bytes(&node.name));
                match (node.kind, node.subtree) {
                    (NodeKind::Dir, Some(subtree)) => pending.push((subtree, path)),
                    (NodeKind::File, _) if sub_path.is_none_or(|s| path.starts_with(s)) => {
                        files.insert(path, (node.size, node.content));
                    }
                    _ => {}
                }
            }
        }
        Ok(Self {
            repo,
            runtime: tokio::runtime::Handle::current(),
            files,
        })
    }
}

impl ExportSource for SnapshotSource {
    fn entries(&self) -> std::io::Result<Vec<SourceEntry>> {
        Ok(self
            .files
            .iter()
            .map(|(path, (size, _))| SourceEntry::new(path.clone(), *size))
            .collect())
    }

    fn open(&self, entry: &SourceEntry) -> std::io::Result<Box<dyn Read + Send>> {
        let (_, chunks) = self.files.get(&entry.path).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is not in the snapshot", entry.path.display()),
            )
        })?;
        Ok(Box::new(ChunkReader {
            repo: self.repo.clone(),
            runtime: self.runtime.clone(),
            chunks: chunks.clone().into_iter(),
            buf: Vec::new(),
            pos: 0,
        }))
    }
}

/// Reads a file's chunks one at a time (memory: one chunk).
struct ChunkReader {
    repo: Arc<Repository>,
    runtime: tokio::runtime::Handle,
    chunks: std::vec::IntoIter<ChunkId>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.chunks.next() else {
                return Ok(0);
            };
            // Called from the export's blocking threads, never from the runtime itself.
            self.buf = self
                .runtime
                .block_on(self.repo.load_blob(&id))
                .map_err(std::io::Error::other)?;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
