//! Keyed content-defined chunking (FastCDC 2020 with a per-repository gear table).
//!
//! The gear table is 256 pseudo-random 64-bit words drawn from the repository's chunker key with
//! BLAKE3's XOF, so cut points (and so chunk sizes) depend on a secret: someone holding the storage
//! cannot recognise a known file by the sizes of its chunks.

use std::io::Read;

use fastcdc::v2020::{Normalization, cut_gear, select_masks};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Chunk size bounds, stored in the repository config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk (except a file's last).
    pub min_size: u32,
    /// Target average chunk size (a power of two).
    pub avg_size: u32,
    /// Largest chunk.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 2 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Checks the bounds are within what FastCDC accepts and ordered.
    pub fn validate(&self) -> Result<()> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MINIMUM_MIN};
        let (min, avg, max) = (
            self.min_size as usize,
            self.avg_size as usize,
            self.max_size as usize,
        );
        let ok = min >= MINIMUM_MIN
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && max <= MAXIMUM_MAX
            && self.avg_size.is_power_of_two()
            && self.min_size < self.avg_size
            && self.avg_size < self.max_size;
        if ok {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "chunk sizes {self:?}: need {MINIMUM_MIN} <= min < avg < max <= {MAXIMUM_MAX}, avg a power of two"
            )))
        }
    }
}

/// The keyed gear tables and masks for one repository.
#[derive(Clone)]
pub(crate) struct Chunker {
    params: ChunkerParams,
    gear: Vec<u64>,
    gear_ls: Vec<u64>,
    masks: (u64, u64, u64, u64),
}

impl Chunker {
    pub(crate) fn new(params: ChunkerParams, key: &[u8; 32]) -> Self {
        let mut xof = blake3::Hasher::new_keyed(key).finalize_xof();
        let mut bytes = [0u8; 256 * 8];
        xof.fill(&mut bytes);
        let gear: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
            .collect();
        let gear_ls = gear.iter().map(|g| g << 1).collect();
        let (mask_s, mask_l) = select_masks(params.avg_size as usize, Normalization::Level1);
        Chunker {
            params,
            gear,
            gear_ls,
            masks: (mask_s, mask_l, mask_s << 1, mask_l << 1),
        }
    }

    /// Length of the first chunk of `data` (all of it when shorter than the minimum).
    fn cut(&self, data: &[u8]) -> usize {
        let (ms, ml, msl, mll) = self.masks;
        let (_, len) = cut_gear(
            data,
            self.params.min_size as usize,
            self.params.avg_size as usize,
            self.params.max_size as usize,
            ms,
            ml,
            msl,
            mll,
            &self.gear,
            &self.gear_ls,
        );
        len
    }

    /// Splits everything `reader` yields into chunks, calling `emit` with each in order (the
    /// slice is only valid during the call).
    ///
    /// `scratch` is a per-thread buffer reused across files, grown to the maximum chunk size (or
    /// to `expected`, when smaller): the only memory this holds.
    ///
    /// With `expected` (the size the file had when scanned), reading stops once that many bytes
    /// arrived instead of asking for more to see the end of the file: one read call less per
    /// small file. A file that grew meanwhile is caught by the caller's metadata check after
    /// reading.
    pub(crate) fn stream<R: Read>(
        &self,
        mut reader: R,
        scratch: &mut Vec<u8>,
        expected: Option<u64>,
        mut emit: impl FnMut(&[u8]) -> Result<()>,
        on_read_error: impl Fn(std::io::Error) -> Error,
    ) -> Result<u64> {
        // With a known size the buffer need not exceed it: reading stops there.
        let max = match expected {
            Some(size) => (self.params.max_size as usize).min(size.max(1) as usize),
            None => self.params.max_size as usize,
        };
        if scratch.len() < max {
            scratch.resize(max, 0);
        }
        let buf = &mut scratch[..max];
        let mut filled = 0;
        let mut eof = false;
        let mut total = 0u64;
        loop {
            while !eof && filled < max {
                if expected == Some(total + filled as u64) {
                    break;
                }
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => eof = true,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(on_read_error(e)),
                }
            }
            if filled == 0 {
                return Ok(total);
            }
            let len = self.cut(&buf[..filled]).clamp(1, filled);
            total += len as u64;
            emit(&buf[..len])?;
            buf.copy_within(len..filled, 0);
            filled -= len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(key: &[u8; 32], data: &[u8]) -> Vec<Vec<u8>> {
        let params = ChunkerParams {
            min_size: 4096,
            avg_size: 16384,
            max_size: 65536,
        };
        let mut out = Vec::new();
        Chunker::new(params, key)
            .stream(
                data,
                &mut Vec::new(),
                None,
                |c| {
                    out.push(c.to_vec());
                    Ok(())
                },
                |e| Error::io("test", e),
            )
            .unwrap();
        out
    }

    fn pseudo_random(len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        blake3::Hasher::new().finalize_xof().fill(&mut out);
        out
    }

    #[test]
    fn chunks_reassemble_and_respect_bounds() {
        let data = pseudo_random(1 << 20);
        let parts = chunks(&[1; 32], &data);
        assert!(parts.len() > 10, "1 MiB at 16 KiB average: {}", parts.len());
        assert_eq!(parts.concat(), data);
        for p in &parts[..parts.len() - 1] {
            assert!((4096..=65536).contains(&p.len()), "{}", p.len());
        }
    }

    #[test]
    fn boundaries_depend_on_the_key() {
        let data = pseudo_random(1 << 20);
        let sizes = |k| chunks(k, &data).iter().map(Vec::len).collect::<Vec<_>>();
        assert_ne!(sizes(&[1; 32]), sizes(&[2; 32]));
        assert_eq!(sizes(&[1; 32]), sizes(&[1; 32]));
    }

    #[test]
    fn insertion_only_disturbs_nearby_chunks() {
        let data = pseudo_random(1 << 20);
        let mut edited = data.clone();
        edited.splice(500_000..500_000, b"inserted bytes".iter().copied());
        let a = chunks(&[3; 32], &data);
        let b = chunks(&[3; 32], &edited);
        let shared = a.iter().filter(|c| b.contains(c)).count();
        assert!(
            shared + 3 >= a.len(),
            "{shared} of {} chunks survive",
            a.len()
        );
    }
}
