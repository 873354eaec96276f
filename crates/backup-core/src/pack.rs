//! Pack objects: many sealed frames (a frame is one blob, or a group of small blobs compressed
//! together), then a sealed header listing the blobs, then the header's length.
//!
//! ```text
//! frame_0 || frame_1 || ... || seal(aad = "<pack path>#header", flag || zstd? CBOR [PackEntry])
//!        || u32 LE header length
//! ```

use crate::cipher::RepoCipher;
use crate::error::Result;
use crate::format::{self, BlobKind, ChunkId, GroupRef, IndexPack, PackEntry};

/// A pack being filled.
#[derive(Default)]
pub(crate) struct PackBuilder {
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack ready to upload.
pub(crate) struct FinishedPack {
    pub(crate) path: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) index: IndexPack,
}

pub(crate) fn header_aad(path: &str) -> Vec<u8> {
    format!("{path}#header").into_bytes()
}

impl PackBuilder {
    /// Bytes held so far.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends one sealed frame holding `members` (one blob, or a group of small ones, each
    /// `(id, kind, raw length, place in the group)`) and returns how many blobs it added; the
    /// first frame takes its buffer from
    /// `fresh` (a pooled buffer of the full pack size, so a pack never reallocates).
    pub(crate) fn add(
        &mut self,
        sealed: &[u8],
        members: impl IntoIterator<Item = (ChunkId, BlobKind, u32, Option<GroupRef>)>,
        fresh: impl FnOnce() -> Vec<u8>,
    ) -> usize {
        if self.entries.is_empty() {
            self.bytes = fresh();
        }
        let offset = self.bytes.len() as u32;
        let before = self.entries.len();
        for (id, kind, raw_length, group) in members {
            self.entries.push(PackEntry {
                id,
                kind,
                offset,
                length: sealed.len() as u32,
                raw_length,
                group,
            });
        }
        self.bytes.extend_from_slice(sealed);
        self.entries.len() - before
    }

    /// Seals the header and returns the pack, or `None` when empty.
    pub(crate) fn finish(&mut self, cipher: &RepoCipher) -> Result<Option<FinishedPack>> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        let id = format::random_id();
        let path = format::pack_path(&id);
        let mut bytes = std::mem::take(&mut self.bytes);
        let entries = std::mem::take(&mut self.entries);
        let header = cipher.seal(
            &header_aad(&path),
            &crate::compress::encode_object(&format::encode(&entries)),
        )?;
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        Ok(Some(FinishedPack {
            path,
            index: IndexPack {
                id,
                size: bytes.len() as u64,
                entries,
            },
            bytes,
        }))
    }
}
