//! The repository's data model: ids, config, trees, snapshots, pack headers and index files.
//!
//! Everything here is serialized as CBOR (self-describing, with native byte strings for non-UTF-8
//! names) and then sealed; FORMAT.md documents each structure.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::error::{Error, Result};

/// Repository format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A chunk (blob) id: the BLAKE3 hash of its plaintext keyed with the repository's id key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkId(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl ChunkId {
    /// Lowercase hex of the id.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

impl std::fmt::Display for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Repository-wide settings, stored sealed in the `config` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// [`FORMAT_VERSION`] at creation.
    pub version: u32,
    /// Random repository id (hex).
    pub id: String,
    /// Chunk size bounds.
    pub chunker: ChunkerParams,
    /// Target pack object size in bytes.
    pub pack_size: u32,
    /// zstd level for compressible chunks.
    pub compression_level: i32,
}

/// What a tree node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A regular file; its content is a list of chunk ids.
    File,
    /// A directory; its entries are in a subtree blob.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix socket (recorded, never restored).
    Socket,
}

/// One directory entry with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name: one path component, raw bytes (may be non-UTF-8).
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    /// Entry type.
    pub kind: NodeKind,
    /// Permission and special bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds (compared by the next backup, never restored).
    pub ctime_ns: i64,
    /// Inode number (compared by the next backup, never restored).
    pub inode: u64,
    /// Size in bytes (files: content length; symlinks: target length).
    pub size: u64,
    /// File content, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<ChunkId>,
    /// Directory entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<ChunkId>,
    /// Symlink target, raw bytes.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub target: Option<Vec<u8>>,
    /// Device number for device nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// Hard-link group: entries of one snapshot with the same value are one inode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_group: Option<u64>,
    /// Extended attributes (name, value), where the file system has them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Attribute name (e.g. `user.comment`).
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    /// Attribute value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// A directory's entries, sorted by name; stored as a blob like file chunks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Entries sorted by name, names unique.
    pub nodes: Vec<Node>,
}

/// A file that could not be backed up, or changed while it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileProblem {
    /// The file's path on the backed-up host (lossy UTF-8).
    pub path: String,
    /// What went wrong.
    pub error: String,
}

/// Counters a backup records in its snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Files in the snapshot.
    pub files: u64,
    /// Directories in the snapshot.
    pub dirs: u64,
    /// Other entries (symlinks, devices, ...).
    pub others: u64,
    /// Logical bytes of all files in the snapshot.
    pub bytes: u64,
    /// Bytes read from disk (files not skipped through the parent).
    pub bytes_read: u64,
    /// Files whose content was taken from the parent snapshot without reading.
    pub files_unchanged: u64,
    /// New chunks stored.
    pub chunks_new: u64,
    /// Plaintext bytes of the new chunks.
    pub bytes_new: u64,
    /// Bytes of pack objects written (after compression and encryption).
    pub bytes_stored: u64,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

/// A snapshot: one backup run, stored sealed under `snapshots/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Start time, nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// Host name.
    pub host: String,
    /// Paths given to the backup (lossy UTF-8); each is one entry of the root tree.
    pub paths: Vec<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Snapshot id of the parent used to skip unchanged files.
    #[serde(default)]
    pub parent: Option<String>,
    /// Root tree.
    pub tree: ChunkId,
    /// Counters.
    pub summary: Summary,
    /// Files that could not be read and were left out.
    #[serde(default)]
    pub skipped: Vec<FileProblem>,
    /// Files that changed while being read (stored as read).
    #[serde(default)]
    pub changed: Vec<FileProblem>,
}

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobKind {
    /// A file chunk.
    Data,
    /// A serialized [`Tree`].
    Tree,
}

/// Where a blob sits inside its pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// The blob's id.
    pub id: ChunkId,
    /// Data or tree.
    pub kind: BlobKind,
    /// Byte offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Plaintext length (before compression).
    pub raw_length: u32,
    /// Set when the blob is one of several small blobs compressed and sealed together: `offset`
    /// and `length` then locate the whole group, and this says where the blob lies inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupRef>,
}

/// Where a small blob lies inside a blob group.
///
/// A group is sealed like a blob whose id is the keyed hash of the concatenated member blobs, so
/// the group is bound to its identity and verified whole before a member is cut out (and the
/// member is then checked against its own id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRef {
    /// Keyed hash of the group's plaintext (the concatenated members).
    pub id: ChunkId,
    /// Plaintext length of the whole group (bounds decompression).
    pub raw_length: u32,
    /// Offset of this blob inside the group's plaintext.
    pub start: u32,
}

/// The packs an index object describes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    /// Pack id (hex) and its entries.
    pub packs: Vec<IndexPack>,
}

/// One pack in an index object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// Pack id (hex): the object is `data/<first two hex digits>/<id>`.
    pub id: String,
    /// Pack object size in bytes.
    pub size: u64,
    /// Its blobs.
    pub entries: Vec<PackEntry>,
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing CBOR into a Vec cannot fail for these plain data types.
    if let Err(e) = ciborium::into_writer(value, &mut out) {
        tracing::error!("CBOR encoding failed: {e}");
    }
    out
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(object: &str, bytes: &[u8]) -> Result<T> {
    ciborium::from_reader(bytes)
        .map_err(|e| Error::corrupt(object, format!("does not decode: {e}")))
}

/// The store path of a pack.
pub(crate) fn pack_path(id: &str) -> String {
    format!("data/{}/{id}", id.get(..2).unwrap_or("00"))
}

/// A random id of 16 bytes, hex.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // SystemRandom only fails when the OS has no randomness source at all.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        panic!("the operating system's random number generator failed");
    }
    hex::encode(bytes)
}
