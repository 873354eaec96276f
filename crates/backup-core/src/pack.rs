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

/// Packs begin on a page boundary of their buffer, so a local store can write them to disk
/// straight from it (`O_DIRECT` wants aligned memory) instead of copying them.
const PAGE: usize = 4096;

/// A pack being filled.
#[derive(Default)]
pub(crate) struct PackBuilder {
    /// Padding up to a page boundary, then the pack.
    bytes: Vec<u8>,
    /// Where the pack begins in `bytes`.
    start: usize,
    entries: Vec<PackEntry>,
}

/// A finished pack ready to upload.
pub(crate) struct FinishedPack {
    pub(crate) path: String,
    /// The pack is `bytes[start..]`.
    pub(crate) bytes: Vec<u8>,
    pub(crate) start: usize,
    pub(crate) index: IndexPack,
}

impl FinishedPack {
    /// The pack's bytes.
    #[cfg(test)]
    pub(crate) fn contents(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
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
        self.bytes.len() - self.start
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
            self.start = self.bytes.as_ptr().align_offset(PAGE).min(PAGE);
            self.bytes.resize(self.start, 0);
        }
        let end = self.bytes.len();
        if let Err(e) = seal(&mut self.bytes) {
            self.bytes.truncate(end);
            return Err(e);
        }
        let offset = end - self.start;
        let length = (self.bytes.len() - end) as u32;
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
        let start = std::mem::take(&mut self.start);
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
                size: (bytes.len() - start) as u64,
                entries,
            },
            bytes,
            start,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_begin_on_a_page_boundary_and_offsets_count_from_there() {
        let mut pack = PackBuilder::default();
        let frame = |byte: u8| {
            move |out: &mut Vec<u8>| {
                out.extend_from_slice(&[byte; 100]);
                Ok(())
            }
        };
        let member = |n: u8| [(ChunkId([n; 32]), BlobKind::Data, 100, None)];
        pack.add(frame(1), member(1), || Vec::with_capacity(1 << 20))
            .unwrap();
        pack.add(frame(2), member(2), || unreachable!("one buffer per pack"))
            .unwrap();
        let pack_bytes = &pack.bytes[pack.start..];
        assert_eq!(pack_bytes.as_ptr().align_offset(PAGE), 0);
        assert_eq!(pack.len(), 200);
        let offsets: Vec<u32> = pack.entries.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, [0, 100]);
        assert_eq!(pack_bytes[100], 2);
    }

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
