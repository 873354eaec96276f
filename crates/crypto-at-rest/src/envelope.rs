//! One-shot envelopes: a header and one sealed chunk, opened all at once.

use crate::chunk::TAG_LEN;
use crate::config::CipherConfig;
use crate::error::Error;
use crate::header::{HEADER_LEN, Header, Kind};
use crate::keyring::{KeyId, Keyring};

/// Largest envelope plaintext: under the AEADs' per-nonce limit (AES-GCM: 2^36 - 32 bytes).
const MAX_ENVELOPE: u64 = (1 << 36) - 64;

impl Keyring {
    /// Seals `plaintext` as an envelope under the primary key with the default settings
    /// (AES-256-GCM). `aad` names the object (for example its path or id): the envelope opens
    /// only with the same `aad`, so a ciphertext copied under another name fails.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        self.seal_with(&CipherConfig::default(), aad, plaintext)
    }

    /// Seals `plaintext` as an envelope with `config`'s algorithm (its chunk size and threads do
    /// not apply: an envelope is one chunk).
    pub fn seal_with(
        &self,
        config: &CipherConfig,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.seal_to(config, aad, plaintext, &mut out)?;
        Ok(out)
    }

    /// Like [`Keyring::seal_with`], appending the envelope to `out`: a caller sealing many
    /// objects reuses one buffer instead of allocating one per object.
    pub fn seal_to(
        &self,
        config: &CipherConfig,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        // Both AEADs take at most about 2^36 bytes per nonce; an envelope is one chunk.
        if plaintext.len() as u64 > MAX_ENVELOPE {
            return Err(Error::InvalidConfig(format!(
                "{} bytes is more than one envelope holds ({MAX_ENVELOPE}); use a stream",
                plaintext.len()
            )));
        }
        let (header, opened) = Header::create(self, Kind::Envelope, config.algorithm(), 0, aad)?;
        let start = out.len();
        out.reserve(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(header.bytes());
        out.extend_from_slice(plaintext);
        out.resize(out.len() + TAG_LEN, 0);
        let body = &mut out[start + HEADER_LEN..];
        opened
            .key
            .seal_slot(0, true, &opened.chunk_aad, body, plaintext.len());
        Ok(())
    }

    /// Opens an envelope sealed with the same `aad`. Nothing is released unless the whole
    /// envelope verifies.
    pub fn open(&self, aad: &[u8], envelope: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.open_to(aad, envelope, &mut out)?;
        Ok(out)
    }

    /// Like [`Keyring::open`], into `out` (cleared first; left empty on failure): a caller
    /// opening many objects reuses one buffer instead of allocating one per object.
    pub fn open_to(&self, aad: &[u8], envelope: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        out.clear();
        let header = Header::parse(Kind::Envelope, envelope)?;
        let body = &envelope[HEADER_LEN..];
        if body.len() < TAG_LEN {
            return Err(Error::InvalidHeader(
                "truncated envelope: no room for the tag",
            ));
        }
        let opened = header.open(self, aad)?;
        out.extend_from_slice(body);
        match opened.key.open(0, true, &opened.chunk_aad, out) {
            Ok(plain) => {
                let len = plain.len();
                out.truncate(len);
                Ok(())
            }
            Err(e) => {
                out.clear();
                Err(e)
            }
        }
    }

    /// Moves an envelope's or stream's data key to the primary key, in place, without touching
    /// the payload: `object` needs to hold only the header (its first [`Keyring::HEADER_LEN`]
    /// bytes), which keeps its length. Returns the key id it was wrapped under before.
    pub fn rewrap(&self, object: &mut [u8]) -> Result<KeyId, Error> {
        let mut header = Header::parse_any(object)?;
        let before = header.key_id();
        header.rewrap(self)?;
        object[..HEADER_LEN].copy_from_slice(header.bytes());
        Ok(before)
    }

    /// Length of the header at the start of every envelope and stream.
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Bytes an envelope adds to its plaintext (header and tag), so a caller can reserve room
    /// before sealing with [`Keyring::seal_to`].
    pub const ENVELOPE_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

    /// The key id an envelope's or stream's header names, without opening it (for example to
    /// find objects still under a retired key).
    pub fn key_id_of(object: &[u8]) -> Result<KeyId, Error> {
        Ok(Header::parse_any(object)?.key_id())
    }
}
