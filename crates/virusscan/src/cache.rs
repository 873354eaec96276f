//! The incremental scan cache: which files were found clean, under which signatures.
//!
//! A file is identified by (device, inode) and its content version by size, mtime and ctime
//! (ctime cannot be set from user space, so `touch -d` cannot fake an unchanged file). The
//! cache holds one signature version; a cache for other signatures is empty, so everything is
//! rescanned once the signatures change.
//!
//! ## File format (version 1, little-endian; pinned by `tests/data/cache-v1.bin`)
//!
//! ```text
//! magic        8 bytes  "HGVSCAC1"
//! version_len  u32      length of the signature version
//! version      bytes    UTF-8
//! count        u64      number of records
//! records      count x { dev u64, ino u64, size u64, mtime_ns i64, ctime_ns i64 }  (40 bytes)
//! checksum     8 bytes  first 8 bytes of SHA-256 over everything before
//! ```
//!
//! It is written to a temporary file in the same directory, fsync'ed, renamed over the old one
//! and the directory fsync'ed, so a crash leaves the old cache or the new one.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil::FileIdentity;

const MAGIC: &[u8; 8] = b"HGVSCAC1";
const RECORD: usize = 40;
/// Signature versions longer than this are not plausible.
const MAX_VERSION_LEN: usize = 4096;

/// Files found clean under one signature version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanCache {
    signature_version: String,
    entries: HashMap<(u64, u64), (u64, i64, i64)>,
}

impl ScanCache {
    /// An empty cache for `signature_version`.
    pub fn new(signature_version: impl Into<String>) -> Self {
        ScanCache {
            signature_version: signature_version.into(),
            entries: HashMap::new(),
        }
    }

    /// The signature version the entries were found clean under.
    pub fn signature_version(&self) -> &str {
        &self.signature_version
    }

    /// Number of files recorded clean.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no file is recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True if a file with exactly this identity (same inode, size, mtime and ctime) was found
    /// clean under this cache's signatures.
    pub fn is_clean(&self, id: &FileIdentity) -> bool {
        self.entries.get(&(id.dev, id.ino)) == Some(&(id.size, id.mtime_ns, id.ctime_ns))
    }

    /// Records a file as found clean.
    pub fn insert_clean(&mut self, id: &FileIdentity) {
        self.entries
            .insert((id.dev, id.ino), (id.size, id.mtime_ns, id.ctime_ns));
    }

    /// Forgets a file.
    pub fn remove(&mut self, id: &FileIdentity) {
        self.entries.remove(&(id.dev, id.ino));
    }

    /// Adds `other`'s entries if it is for the same signatures (a cache for other signatures
    /// holds nothing valid now and is ignored).
    pub fn merge(&mut self, other: ScanCache) {
        if other.signature_version == self.signature_version {
            self.entries.extend(other.entries);
        }
    }

    /// This cache if it is for `signature_version`, otherwise an empty one for it.
    pub fn for_signatures(self, signature_version: &str) -> Self {
        if self.signature_version == signature_version {
            self
        } else {
            ScanCache::new(signature_version)
        }
    }

    /// Loads a cache file; `Ok(None)` if there is none.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => Self::decode(&bytes)
                .map(Some)
                .map_err(|reason| Error::CorruptCache {
                    path: path.to_path_buf(),
                    reason,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, "reading the scan cache", e)),
        }
    }

    /// Writes the cache to `path` atomically (temporary file, fsync, rename, fsync of the
    /// directory).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.encode();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path.file_name().ok_or_else(|| Error::InvalidPath {
            path: path.to_path_buf(),
            reason: "a cache file needs a file name".into(),
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp.{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&tmp, "writing the scan cache", e));
        }
        if let Err(e) = std::fs::rename(&tmp, path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(path, "replacing the scan cache", e));
        }
        crate::fsutil::sync_dir(dir)
    }

    /// The file format described in the module docs, records sorted by (dev, ino).
    pub fn encode(&self) -> Vec<u8> {
        let mut records: Vec<_> = self.entries.iter().collect();
        records.sort_unstable_by_key(|(k, _)| **k);
        let version = self.signature_version.as_bytes();
        let mut out = Vec::with_capacity(8 + 4 + version.len() + 8 + records.len() * RECORD + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(version.len() as u32).to_le_bytes());
        out.extend_from_slice(version);
        out.extend_from_slice(&(records.len() as u64).to_le_bytes());
        for ((dev, ino), (size, mtime, ctime)) in records {
            for v in [*dev, *ino, *size] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for v in [*mtime, *ctime] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        let sum = ring::digest::digest(&ring::digest::SHA256, &out);
        out.extend_from_slice(&sum.as_ref()[..8]);
        out
    }

    /// Parses the file format; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.len() < 8 + 4 + 8 + 8 {
            return Err(format!(
                "{} bytes is too short for a cache file",
                bytes.len()
            ));
        }
        if &bytes[..8] != MAGIC {
            return Err("not a virusscan cache file (bad magic)".into());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        if ring::digest::digest(&ring::digest::SHA256, body).as_ref()[..8] != *sum {
            return Err("checksum mismatch (truncated or corrupt)".into());
        }
        let mut rest = &body[8..];
        let mut take = |n: usize| -> std::result::Result<&[u8], String> {
            if rest.len() < n {
                return Err("truncated".into());
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        let version_len = u32::from_le_bytes(take(4)?.try_into().unwrap_or([0; 4])) as usize;
        if version_len > MAX_VERSION_LEN {
            return Err(format!("signature version of {version_len} bytes"));
        }
        let version = std::str::from_utf8(take(version_len)?)
            .map_err(|_| "signature version is not UTF-8".to_string())?
            .to_owned();
        let count = u64_at(take(8)?);
        let left = rest_len(body, version_len);
        if (count as u128) * RECORD as u128 != left as u128 {
            return Err(format!(
                "{count} records announced, {left} bytes of records present"
            ));
        }
        let mut entries = HashMap::with_capacity(count as usize);
        for r in body[body.len() - left..].chunks_exact(RECORD) {
            let f = |i: usize| u64_at(&r[i * 8..i * 8 + 8]);
            entries.insert((f(0), f(1)), (f(2), f(3) as i64, f(4) as i64));
        }
        Ok(ScanCache {
            signature_version: version,
            entries,
        })
    }
}

/// Bytes after the header (magic, version length, version, count).
fn rest_len(body: &[u8], version_len: usize) -> usize {
    body.len().saturating_sub(8 + 4 + version_len + 8)
}
