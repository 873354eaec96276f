//! QuickXorHash, the content hash OneDrive reports on every account type.
//!
//! Microsoft's published description (the "QuickXorHash" snippet in the OneDrive API docs): a
//! 160-bit circular state; byte `i` of the input is XORed into it at bit offset `(11 * i) mod 160`
//! (wrapping round the end); the result is the state's 20 bytes in little-endian order with the
//! input length, as a 64-bit little-endian integer, XORed into the last 8 bytes.
//!
//! Because `11 * 160 ≡ 0 (mod 160)`, bytes 160 apart land at the same offset, so the input can
//! first be XOR-folded into a 160-byte block (twenty 64-bit words: plain XORs the compiler turns
//! into vector instructions), and the block spread into the 160-bit state once, at the end. The
//! fold runs at memory speed; the spreading costs 160 small steps per hash.
//!
//! ```
//! use onedrive::QuickXorHash;
//!
//! let mut hash = QuickXorHash::new();
//! hash.update(b"hello ");
//! hash.update(b"world");
//! assert_eq!(hash.finalize_base64(), QuickXorHash::digest_base64(b"hello world"));
//! // The empty input hashes to zero.
//! assert_eq!(QuickXorHash::digest_base64(b""), "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
//! ```

use base64::Engine as _;

/// Bytes in the fold block (and bits in the state: 160 = 8 * 20).
const BLOCK: usize = 160;
/// 64-bit words in the fold block.
const WORDS: usize = BLOCK / 8;
/// Length of the digest in bytes.
pub const DIGEST_LEN: usize = 20;

/// A streaming QuickXorHash.
#[derive(Clone)]
pub struct QuickXorHash {
    /// The input XOR-folded modulo 160 bytes; byte `j` of the block is byte `j % 8` (little
    /// endian) of word `j / 8`.
    fold: [u64; WORDS],
    /// Bytes hashed so far (also gives the position in the block).
    len: u64,
}

impl std::fmt::Debug for QuickXorHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickXorHash")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Default for QuickXorHash {
    fn default() -> Self {
        Self::new()
    }
}

impl QuickXorHash {
    /// A hash of the empty input.
    pub fn new() -> Self {
        Self {
            fold: [0; WORDS],
            len: 0,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if nothing has been hashed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hashes `data` (any split of the input gives the same digest).
    pub fn update(&mut self, mut data: &[u8]) {
        let mut pos = (self.len % BLOCK as u64) as usize;
        self.len += data.len() as u64;
        // Bytes up to the next block boundary, one at a time.
        if pos != 0 {
            let take = data.len().min(BLOCK - pos);
            for &byte in &data[..take] {
                self.fold[pos / 8] ^= u64::from(byte) << (8 * (pos % 8));
                pos += 1;
            }
            data = &data[take..];
        }
        let mut blocks = data.chunks_exact(BLOCK);
        for block in &mut blocks {
            for (word, bytes) in self.fold.iter_mut().zip(block.chunks_exact(8)) {
                // chunks_exact(8) always yields 8 bytes.
                let mut array = [0u8; 8];
                array.copy_from_slice(bytes);
                *word ^= u64::from_le_bytes(array);
            }
        }
        for (pos, &byte) in blocks.remainder().iter().enumerate() {
            self.fold[pos / 8] ^= u64::from(byte) << (8 * (pos % 8));
        }
    }

    /// The 20-byte digest.
    pub fn finalize(&self) -> [u8; DIGEST_LEN] {
        let mut state = [0u8; DIGEST_LEN];
        for j in 0..BLOCK {
            let byte = (self.fold[j / 8] >> (8 * (j % 8))) as u8;
            if byte == 0 {
                continue;
            }
            // Block byte j sits at bit offset 11 * j mod 160: spread it over (at most) two
            // state bytes, wrapping from the last to the first.
            let offset = (11 * j) % BLOCK;
            let spread = u16::from(byte) << (offset % 8);
            state[offset / 8] ^= spread as u8;
            state[(offset / 8 + 1) % DIGEST_LEN] ^= (spread >> 8) as u8;
        }
        for (target, len_byte) in state[DIGEST_LEN - 8..]
            .iter_mut()
            .zip(self.len.to_le_bytes())
        {
            *target ^= len_byte;
        }
        state
    }

    /// The digest in standard base64, as Graph's `quickXorHash` property.
    pub fn finalize_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.finalize())
    }

    /// The base64 digest of `data` in one call.
    pub fn digest_base64(data: &[u8]) -> String {
        let mut hash = Self::new();
        hash.update(data);
        hash.finalize_base64()
    }
}

impl std::io::Write for QuickXorHash {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
