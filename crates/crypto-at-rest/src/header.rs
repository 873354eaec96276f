//! The self-describing header shared by envelopes and streams (see FORMAT.md).
//!
//! ```text
//! offset len field
//!      0   4 magic: "hgEV" (envelope) or "hgST" (stream)
//!      4   1 format version: 1
//!      5   1 algorithm: 1 = AES-256-GCM, 2 = ChaCha20-Poly1305
//!      6   4 chunk size, u32 big-endian (envelope: 0, one chunk)
//!     10  32 salt (random per object)
//!     42  32 key commitment = HKDF-SHA256(salt, data key, "hostguard v1 key commitment")
//!     74   4 key id, u32 big-endian
//!     78  48 data key wrapped under the key-encryption key (32 bytes + 16-byte tag)
//!    126     body
//! ```

use ring::digest;
use zeroize::Zeroizing;

use crate::chunk::{Algorithm, ChunkKey, hkdf_sha256};
use crate::error::{Error, Stage};
use crate::keyring::{KeyId, Keyring, SecretKey};

/// Length of the header in bytes.
pub(crate) const HEADER_LEN: usize = 126;
/// The format version this library writes and reads.
pub(crate) const VERSION: u8 = 1;
/// Largest chunk size a stream header may name (16 MiB).
pub(crate) const MAX_CHUNK_SIZE: u32 = 16 << 20;

const SALT: std::ops::Range<usize> = 10..42;
const COMMITMENT: std::ops::Range<usize> = 42..74;
const KEY_ID: std::ops::Range<usize> = 74..78;
const WRAPPED: std::ops::Range<usize> = 78..126;
/// Bytes that rewrapping never changes, bound into every payload chunk.
const FIXED: std::ops::Range<usize> = 0..74;

const INFO_PAYLOAD: &[u8] = b"hostguard v1 payload key";
const INFO_COMMITMENT: &[u8] = b"hostguard v1 key commitment";
const INFO_WRAP: &[u8] = b"hostguard v1 wrap key";

/// Which kind of object a header starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Envelope,
    Stream,
}

impl Kind {
    fn magic(self) -> &'static [u8; 4] {
        match self {
            Kind::Envelope => b"hgEV",
            Kind::Stream => b"hgST",
        }
    }
}

/// A parsed header (the raw bytes, checked).
pub(crate) struct Header {
    bytes: [u8; HEADER_LEN],
    algorithm: Algorithm,
    chunk_size: u32,
}

/// What opening a header yields: the payload key and the AAD every chunk is sealed with.
pub(crate) struct Opened {
    pub(crate) key: ChunkKey,
    pub(crate) chunk_aad: Vec<u8>,
}

/// Compares without branching on the contents.
fn equal_ct(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Header {
    /// A fresh header for a new object sealed under the keyring's primary key; returns it with
    /// what the body is sealed with.
    pub(crate) fn create(
        keyring: &Keyring,
        kind: Kind,
        algorithm: Algorithm,
        chunk_size: u32,
        aad: &[u8],
    ) -> Result<(Self, Opened), Error> {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..4].copy_from_slice(kind.magic());
        bytes[4] = VERSION;
        bytes[5] = algorithm.id();
        bytes[6..10].copy_from_slice(&chunk_size.to_be_bytes());
        crate::random(&mut bytes[SALT])?;
        let data_key = SecretKey::generate()?;
        let commitment = hkdf_sha256(&bytes[SALT], data_key.expose(), INFO_COMMITMENT);
        bytes[COMMITMENT].copy_from_slice(&commitment[..]);
        let mut header = Self {
            bytes,
            algorithm,
            chunk_size,
        };
        let (id, kek) = keyring.primary_key();
        header.wrap(id, kek, &data_key);
        let opened = header.derive(&data_key, aad);
        Ok((header, opened))
    }

    /// Parses and checks the header at the start of `input`.
    pub(crate) fn parse(kind: Kind, input: &[u8]) -> Result<Self, Error> {
        let what = match kind {
            Kind::Envelope => "not a hostguard envelope (bad magic)",
            Kind::Stream => "not a hostguard stream (bad magic)",
        };
        if input.len() < 4 || &input[..4] != kind.magic() {
            if kind.magic().starts_with(input) {
                return Err(Error::InvalidHeader("truncated header"));
            }
            return Err(Error::InvalidHeader(what));
        }
        if input.len() < 5 {
            return Err(Error::InvalidHeader("truncated header"));
        }
        if input[4] != VERSION {
            return Err(Error::UnknownVersion(input[4]));
        }
        let Some(bytes) = input.get(..HEADER_LEN) else {
            return Err(Error::InvalidHeader("truncated header"));
        };
        let algorithm =
            Algorithm::from_id(bytes[5]).ok_or(Error::InvalidHeader("unknown algorithm"))?;
        let chunk_size = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
        let size_ok = match kind {
            Kind::Envelope => chunk_size == 0,
            Kind::Stream => (1..=MAX_CHUNK_SIZE).contains(&chunk_size),
        };
        if !size_ok {
            return Err(Error::InvalidHeader("invalid chunk size"));
        }
        let mut header = Self {
            bytes: [0; HEADER_LEN],
            algorithm,
            chunk_size,
        };
        header.bytes.copy_from_slice(bytes);
        Ok(header)
    }

    pub(crate) fn bytes(&self) -> &[u8; HEADER_LEN] {
        &self.bytes
    }

    pub(crate) fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    pub(crate) fn key_id(&self) -> KeyId {
        let b = &self.bytes[KEY_ID];
        KeyId(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The key that wraps the data key: HKDF of the key-encryption key with this object's salt,
    /// so each object's wrap uses its own key and a fixed nonce is safe.
    fn wrap_key(&self, kek: &SecretKey) -> ChunkKey {
        ChunkKey::new(
            self.algorithm,
            &hkdf_sha256(&self.bytes[SALT], kek.expose(), INFO_WRAP),
        )
    }

    /// Seals `data_key` under `kek`, recording `id`; the wrap authenticates every byte before it.
    fn wrap(&mut self, id: KeyId, kek: &SecretKey, data_key: &SecretKey) {
        self.bytes[KEY_ID].copy_from_slice(&id.0.to_be_bytes());
        let mut slot = [0u8; 48];
        slot[..32].copy_from_slice(data_key.expose());
        self.wrap_key(kek)
            .seal_slot(0, true, &self.bytes[..WRAPPED.start], &mut slot, 32);
        self.bytes[WRAPPED].copy_from_slice(&slot);
    }

    /// Unwraps the data key with the keyring and checks the key commitment.
    fn unwrap(&self, keyring: &Keyring) -> Result<SecretKey, Error> {
        let kek = keyring.key(self.key_id())?;
        let mut slot = Zeroizing::new([0u8; 48]);
        slot.copy_from_slice(&self.bytes[WRAPPED]);
        let opened = self
            .wrap_key(kek)
            .open(0, true, &self.bytes[..WRAPPED.start], &mut slot[..])
            .map_err(|_| Error::Authentication(Stage::DataKey))?;
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(opened);
        let data_key = SecretKey::from_zeroizing(key);
        let commitment = hkdf_sha256(&self.bytes[SALT], data_key.expose(), INFO_COMMITMENT);
        if !equal_ct(&commitment[..], &self.bytes[COMMITMENT]) {
            return Err(Error::Authentication(Stage::DataKey));
        }
        Ok(data_key)
    }

    /// The payload key and chunk AAD: SHA-256 over the fixed header bytes and the caller's AAD.
    fn derive(&self, data_key: &SecretKey, aad: &[u8]) -> Opened {
        let payload_key = hkdf_sha256(&self.bytes[SALT], data_key.expose(), INFO_PAYLOAD);
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&self.bytes[FIXED]);
        ctx.update(aad);
        Opened {
            key: ChunkKey::new(self.algorithm, &payload_key),
            chunk_aad: ctx.finish().as_ref().to_vec(),
        }
    }

    /// Unwraps with the keyring and derives what the body is sealed with.
    pub(crate) fn open(&self, keyring: &Keyring, aad: &[u8]) -> Result<Opened, Error> {
        let data_key = self.unwrap(keyring)?;
        Ok(self.derive(&data_key, aad))
    }

    /// Rewraps the data key under the keyring's primary key.
    pub(crate) fn rewrap(&mut self, keyring: &Keyring) -> Result<(), Error> {
        let data_key = self.unwrap(keyring)?;
        let (id, kek) = keyring.primary_key();
        self.wrap(id, kek, &data_key);
        Ok(())
    }
}

impl Header {
    /// Parses the envelope or stream header at the start of `object`, whichever it is.
    pub(crate) fn parse_any(object: &[u8]) -> Result<Self, Error> {
        let kind = [Kind::Envelope, Kind::Stream]
            .into_iter()
            .find(|k| object.starts_with(k.magic()))
            .ok_or(Error::InvalidHeader(
                "not a hostguard envelope or stream (bad magic)",
            ))?;
        Self::parse(kind, object)
    }
}
