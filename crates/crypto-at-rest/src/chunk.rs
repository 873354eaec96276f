//! The STREAM chunk primitive shared by the envelope payload, the stream format and age payloads.
//!
//! Each chunk is sealed with a 96-bit nonce made of an 88-bit big-endian chunk counter followed by
//! one flag byte that is 1 for the last chunk and 0 otherwise (the STREAM construction of Hoang,
//! Reyhanitabar, Rogaway and Vizár, as age uses it). Reordering changes the counter, truncation
//! loses the last flag, and appended data follows a chunk that claimed to be last.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use zeroize::Zeroizing;

use crate::error::{Error, Stage};

/// Size of an AEAD tag appended to each chunk, for both algorithms.
pub(crate) const TAG_LEN: usize = 16;

/// The AEAD algorithm that seals data.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// AES-256-GCM: fastest where AES-NI/PMULL exist (the default).
    #[default]
    Aes256Gcm,
    /// ChaCha20-Poly1305: constant-time everywhere, and what age uses.
    ChaCha20Poly1305,
}

impl Algorithm {
    /// The byte that names this algorithm in headers.
    pub fn id(self) -> u8 {
        match self {
            Algorithm::Aes256Gcm => 1,
            Algorithm::ChaCha20Poly1305 => 2,
        }
    }

    /// The algorithm a header byte names, if any.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Algorithm::Aes256Gcm),
            2 => Some(Algorithm::ChaCha20Poly1305),
            _ => None,
        }
    }

    fn ring(self) -> &'static aead::Algorithm {
        match self {
            Algorithm::Aes256Gcm => &aead::AES_256_GCM,
            Algorithm::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// A 256-bit key bound to an algorithm, ready to seal and open STREAM chunks.
pub(crate) struct ChunkKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for ChunkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkKey").finish_non_exhaustive()
    }
}

impl ChunkKey {
    /// Binds 32 key bytes to `algorithm`.
    pub(crate) fn new(algorithm: Algorithm, key: &Zeroizing<[u8; 32]>) -> Self {
        // Both algorithms take exactly 32-byte keys, so this cannot fail.
        let unbound = UnboundKey::new(algorithm.ring(), &key[..]).expect("32-byte AEAD key");
        Self {
            key: LessSafeKey::new(unbound),
        }
    }

    fn nonce(counter: u64, last: bool) -> Nonce {
        let mut n = [0u8; 12];
        // 88-bit counter: the top three bytes stay zero for any u64 counter.
        n[3..11].copy_from_slice(&counter.to_be_bytes());
        n[11] = u8::from(last);
        Nonce::assume_unique_for_key(n)
    }

    /// Seals `slot[..len]` in place and writes the tag to `slot[len..len + TAG_LEN]`.
    ///
    /// `slot` must hold at least `len + TAG_LEN` bytes; callers size their slots that way.
    pub(crate) fn seal_slot(
        &self,
        counter: u64,
        last: bool,
        aad: &[u8],
        slot: &mut [u8],
        len: usize,
    ) {
        let (data, rest) = slot.split_at_mut(len);
        rest[..TAG_LEN].copy_from_slice(&self.seal_separate(counter, last, aad, data));
    }

    /// Seals `data` in place and returns the tag.
    pub(crate) fn seal_separate(
        &self,
        counter: u64,
        last: bool,
        aad: &[u8],
        data: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let tag = self
            .key
            .seal_in_place_separate_tag(Self::nonce(counter, last), Aad::from(aad), data)
            .expect("chunk length within AEAD limits");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Opens `buf` (ciphertext followed by tag) in place, returning the plaintext part.
    pub(crate) fn open<'a>(
        &self,
        counter: u64,
        last: bool,
        aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], Error> {
        self.key
            .open_in_place(Self::nonce(counter, last), Aad::from(aad), buf)
            .map_err(|_| Error::Authentication(Stage::PayloadChunk))
    }
}

/// HKDF-SHA256 (extract with `salt`, expand with `info`) to 32 bytes: how every key in this
/// crate is derived from another.
pub(crate) fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&[info], Len32)
        .and_then(|okm| okm.fill(&mut out[..]))
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}
