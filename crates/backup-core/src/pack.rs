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

/// Most bytes one [`PackEntry`] takes in a header's CBOR.
const ENTRY_BOUND: usize = 192;

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
    /// An upper bound on the sealed header's size once `more` entries are added (before
    /// compression; see the test below for the per-entry figure).
    pub(crate) fn header_bound(&self, more: usize) -> usize {
        (self.entries.len() + more) * ENTRY_BOUND
    }

    /// Bytes held so far.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends one frame, which `seal` appends to the pack's bytes, holding `members` (one
    /// blob, or a group of small ones, each `(id, kind, raw length, place in the group)`), and
    /// returns how many blobs it added. The first frame takes its buffer from `fresh` (a pooled
    /// buffer of the full pack size, so a pack never reallocates). If `seal` fails the pack is
    /// left as it was.
    pub(crate) fn add(
        &mut self,
        seal: impl FnOnce(&mut Vec<u8>) -> Result<()>,
        members: impl IntoIterator<Item = (ChunkId, BlobKind, u32, Option<GroupRef>)>,
        fresh: impl FnOnce() -> Vec<u8>,
    ) -> Result<usize> {
        if self.entries.is_empty() && self.bytes.capacity() == 0 {
            self.bytes = fresh();
        }
        let offset = self.bytes.len();
        if let Err(e) = seal(&mut self.bytes) {
            self.bytes.truncate(offset);
            return Err(e);
        }
        let length = (self.bytes.len() - offset) as u32;
        let before = self.entries.len();
        for (id, kind, raw_length, group) in members {
            self.entries.push(PackEntry {
                id,
                kind,
                offset: offset as u32,
                length,
                raw_length,
                group,
            });
        }
        Ok(self.entries.len() - before)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_entry_fits_the_header_bound() {
        let entry = PackEntry {
            id: ChunkId([0xff; 32]),
            kind: BlobKind::Data,
            offset: u32::MAX,
            length: u32::MAX,
            raw_length: u32::MAX,
            group: Some(GroupRef {
                id: ChunkId([0xff; 32]),
                raw_length: u32::MAX,
                start: u32::MAX,
            }),
        };
        let one = format::encode(&vec![entry.clone()]).len();
        let many = format::encode(&vec![entry; 1000]).len();
        assert!(one <= ENTRY_BOUND, "{one}");
        assert!(many <= 1000 * ENTRY_BOUND, "{many}");
    }
}
