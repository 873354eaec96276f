//! Read-only operations: list a snapshot's entries, diff two snapshots, repository statistics.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::{ChunkId, Node, NodeKind};
use crate::repo::Repository;

/// One entry of a snapshot with its path inside the snapshot (raw bytes, `/`-separated).
#[derive(Debug, Clone)]
pub struct Listed {
    /// Path inside the snapshot.
    pub path: Vec<u8>,
    /// The entry.
    pub node: Node,
}

impl Listed {
    /// The path, lossily decoded for display.
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }

    /// The path escaped reversibly (see [`escape_path`]): one line, valid UTF-8.
    pub fn escaped_path(&self) -> String {
        escape_path(&self.path)
    }
}

/// Escapes a path (raw bytes) into one line of valid UTF-8 that [`unescape_path`] turns back
/// into the same bytes: `\\` for a backslash, `\n`, `\t` and `\r`, `\xNN` for other ASCII
/// control bytes and for bytes that are not UTF-8, `\u{N}` for other control characters.
/// Everything else is kept as is, so most paths print unchanged.
///
/// ```
/// use backup_core::ops::{escape_path, unescape_path};
/// let name = b"line\nbreak \\ caf\xc3\xa9 \xff".to_vec();
/// let escaped = escape_path(&name);
/// assert_eq!(escaped, r"line\nbreak \\ café \xff");
/// assert_eq!(unescape_path(escaped.as_bytes()).unwrap(), name);
/// ```
pub fn escape_path(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    for chunk in path.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                    out.push_str(&format!("\\u{{{:x}}}", c as u32));
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// The bytes of a path escaped by [`escape_path`]; an unknown or malformed escape is an error
/// naming it. A path without backslashes is returned unchanged.
pub fn unescape_path(escaped: &[u8]) -> Result<Vec<u8>> {
    let bad = |at: usize| {
        Error::Config(format!(
            "bad escape at byte {at} of {:?} (a path as `ls` prints it: \\\\, \\n, \\t, \\r, \\xNN, \\u{{N}})",
            String::from_utf8_lossy(escaped)
        ))
    };
    let mut out = Vec::with_capacity(escaped.len());
    let mut i = 0;
    while i < escaped.len() {
        if escaped[i] != b'\\' {
            out.push(escaped[i]);
            i += 1;
            continue;
        }
        let at = i;
        match escaped.get(i + 1) {
            Some(b'\\') => out.push(b'\\'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'x') => {
                let hex = escaped.get(i + 2..i + 4).ok_or_else(|| bad(at))?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad(at))?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad(at))?);
                i += 2;
            }
            Some(b'u') => {
                let rest = escaped.get(i + 2..).ok_or_else(|| bad(at))?;
                let end = rest
                    .iter()
                    .position(|&b| b == b'}')
                    .ok_or_else(|| bad(at))?;
                let digits = rest
                    .get(1..end)
                    .filter(|_| rest.first() == Some(&b'{'))
                    .and_then(|d| std::str::from_utf8(d).ok())
                    .ok_or_else(|| bad(at))?;
                let c = u32::from_str_radix(digits, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| bad(at))?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                i += end + 1;
            }
            _ => return Err(bad(at)),
        }
        i += 2;
    }
    Ok(out)
}

/// Every entry of the snapshot, parents before children, in name order.
pub async fn list(repo: &Repository, snapshot: &str) -> Result<Vec<Listed>> {
    let (_, snap) = repo.find_snapshot(snapshot).await?;
    list_tree(repo, &snap.tree).await
}

/// Every entry under tree `root`.
pub async fn list_tree(repo: &Repository, root: &ChunkId) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut stack = vec![(Vec::new(), *root)];
    while let Some((prefix, id)) = stack.pop() {
        let tree = repo.load_tree(&id).await?;
        let mut subdirs = Vec::new();
        for node in tree.nodes {
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&node.name);
            if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
                subdirs.push((path.clone(), sub));
            }
            out.push(Listed { path, node });
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

/// How an entry differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Only in the second snapshot.
    Added,
    /// Only in the first snapshot.
    Removed,
    /// Content (or type or symlink target) differs.
    Modified,
    /// Same content, different mode, owner or mtime.
    Metadata,
}

/// One line of a diff.
#[derive(Debug, Clone, Serialize)]
pub struct DiffEntry {
    /// What changed.
    pub change: Change,
    /// Path inside the snapshots, escaped as [`escape_path`] does (as `ls` prints it).
    pub path: String,
}

/// Entries that differ between snapshots `a` and `b`, in path order.
pub async fn diff(repo: &Repository, a: &str, b: &str) -> Result<Vec<DiffEntry>> {
    let index = |l: Vec<Listed>| -> BTreeMap<Vec<u8>, Node> {
        l.into_iter().map(|e| (e.path, e.node)).collect()
    };
    let old = index(list(repo, a).await?);
    let new = index(list(repo, b).await?);
    let mut out = Vec::new();
    let paths: std::collections::BTreeSet<&Vec<u8>> = old.keys().chain(new.keys()).collect();
    for path in paths {
        let change = match (old.get(path), new.get(path)) {
            (Some(_), None) => Some(Change::Removed),
            (None, Some(_)) => Some(Change::Added),
            (Some(o), Some(n)) => {
                if o.kind != n.kind || o.content != n.content || o.target != n.target {
                    Some(Change::Modified)
                } else if o.kind != NodeKind::Dir
                    && (o.mode != n.mode
                        || o.uid != n.uid
                        || o.gid != n.gid
                        || o.mtime_ns != n.mtime_ns
                        || o.xattrs != n.xattrs)
                {
                    Some(Change::Metadata)
                } else {
                    None
                }
            }
            (None, None) => None,
        };
        if let Some(change) = change {
            out.push(DiffEntry {
                change,
                path: escape_path(path),
            });
        }
    }
    Ok(out)
}

/// Sizes of a repository or of some of its snapshots.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Snapshots counted.
    pub snapshots: u64,
    /// Files over those snapshots (a file in two snapshots counts twice).
    pub files: u64,
    /// Logical bytes: the sum of file sizes over those snapshots.
    pub logical_bytes: u64,
    /// Distinct chunks those snapshots reference.
    pub unique_chunks: u64,
    /// Plaintext bytes of those distinct chunks.
    pub unique_bytes: u64,
    /// Bytes those distinct chunks (and their trees) take in pack objects.
    pub stored_bytes: u64,
    /// Size of all pack objects in the repository.
    pub repository_bytes: u64,
    /// `logical_bytes / stored_bytes`.
    pub dedup_ratio: f64,
}

/// Statistics over the given snapshots (all snapshots when `snapshots` is empty).
pub async fn stats(repo: &Repository, snapshots: &[String]) -> Result<Stats> {
    let chosen = if snapshots.is_empty() {
        repo.snapshots().await?
    } else {
        let mut v = Vec::new();
        for s in snapshots {
            v.push(repo.find_snapshot(s).await?);
        }
        v
    };
    let mut stats = Stats {
        snapshots: chosen.len() as u64,
        ..Stats::default()
    };
    let mut seen: HashSet<ChunkId> = HashSet::new();
    for (_, snap) in &chosen {
        if seen.insert(snap.tree) {
            stats.stored_bytes += repo.locate(&snap.tree)?.stored_share();
        }
        for entry in list_tree(repo, &snap.tree).await? {
            let node = entry.node;
            if let Some(t) = node.subtree
                && seen.insert(t)
            {
                stats.stored_bytes += repo.locate(&t)?.stored_share();
            }
            if node.kind != NodeKind::File {
                continue;
            }
            stats.files += 1;
            stats.logical_bytes += node.size;
            for id in node.content {
                if seen.insert(id) {
                    let loc = repo.locate(&id)?;
                    stats.unique_chunks += 1;
                    stats.unique_bytes += u64::from(loc.raw_length);
                    stats.stored_bytes += loc.stored_share();
                }
            }
        }
    }
    stats.repository_bytes = repo.packs_size().await?;
    stats.dedup_ratio = if stats.stored_bytes == 0 {
        0.0
    } else {
        stats.logical_bytes as f64 / stats.stored_bytes as f64
    };
    Ok(stats)
}

/// One blob entry of the index: where a chunk or tree is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct IndexedBlob {
    /// The blob's id (hex).
    pub id: String,
    /// Data chunk or tree.
    pub kind: crate::format::BlobKind,
    /// The pack object holding it (`data/xx/…`).
    pub pack: String,
    /// Where its frame starts in the pack.
    pub offset: u32,
    /// The frame's length (for a grouped blob: the group's frame).
    pub length: u32,
    /// Whether it is one of a group of small blobs sealed together.
    pub grouped: bool,
}

/// Every blob entry of the readable index objects, in pack and offset order (for inspecting a
/// repository, and for the corruption campaign, which damages tree blobs in their packs).
pub async fn list_blobs(repo: &Repository) -> Result<Vec<IndexedBlob>> {
    let mut blobs = Vec::new();
    for (_, file) in repo
        .load_objects::<crate::format::IndexFile>("index")
        .await?
    {
        for pack in file.packs {
            let path = crate::format::pack_path(&pack.id);
            blobs.extend(pack.entries.into_iter().map(|e| IndexedBlob {
                id: e.id.to_hex(),
                kind: e.kind,
                pack: path.clone(),
                offset: e.offset,
                length: e.length,
                grouped: e.group.is_some(),
            }));
        }
    }
    blobs.sort_by(|a, b| (&a.pack, a.offset, &a.id).cmp(&(&b.pack, b.offset, &b.id)));
    blobs.dedup();
    Ok(blobs)
}
