//! The one boundary between the repository and encryption.
//!
//! Every object the repository writes goes through [`RepoCipher::seal`] with associated data that
//! names the object (its kind and id), and comes back through [`RepoCipher::open`] with the same
//! associated data, so an object copied under another name fails to open.
//!
//! TEMPORARY: until crypto-at-rest's envelope lands this authenticates with a BLAKE3 keyed MAC but
//! does not encrypt. The interface stays; only this file changes when the switch happens.

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Length of the repository master secret.
pub(crate) const MASTER_LEN: usize = 32;

const MAC_LEN: usize = 32;

/// Where the master key comes from when opening or creating a repository.
#[derive(Clone)]
pub enum KeySource {
    /// A passphrase, stretched with a memory-hard KDF.
    Passphrase(Zeroizing<String>),
    /// The bytes of a key file (already high-entropy).
    KeyFile(Zeroizing<Vec<u8>>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeySource::Passphrase(_) => "KeySource::Passphrase(..)",
            KeySource::KeyFile(_) => "KeySource::KeyFile(..)",
        })
    }
}

impl KeySource {
    /// A passphrase key source.
    pub fn passphrase(p: impl Into<String>) -> Self {
        KeySource::Passphrase(Zeroizing::new(p.into()))
    }

    /// A key-file key source from the file's bytes.
    pub fn key_file_bytes(bytes: Vec<u8>) -> Self {
        KeySource::KeyFile(Zeroizing::new(bytes))
    }

    fn wrapping_key(&self) -> Zeroizing<[u8; 32]> {
        let material: &[u8] = match self {
            KeySource::Passphrase(p) => p.as_bytes(),
            KeySource::KeyFile(b) => b,
        };
        Zeroizing::new(blake3::derive_key(
            "hostguard backup-core TEMPORARY key wrapping",
            material,
        ))
    }

    /// Wraps `master` for storage in a `keys/` object.
    pub(crate) fn wrap(&self, master: &[u8; MASTER_LEN], aad: &[u8]) -> Result<Vec<u8>> {
        RepoCipher::from_key(&self.wrapping_key()).seal(aad, master)
    }

    /// Recovers the master secret from a `keys/` object.
    pub(crate) fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<[u8; MASTER_LEN]>> {
        let plain = RepoCipher::from_key(&self.wrapping_key())
            .open(aad, wrapped)
            .map_err(|_| Error::WrongKey)?;
        let master: [u8; MASTER_LEN] = plain.as_slice().try_into().map_err(|_| Error::WrongKey)?;
        Ok(Zeroizing::new(master))
    }
}

/// Seals and opens repository objects under the repository's data key.
pub(crate) struct RepoCipher {
    key: Zeroizing<[u8; 32]>,
}

impl RepoCipher {
    /// The cipher for a repository master secret.
    pub(crate) fn from_master(master: &[u8; MASTER_LEN]) -> Self {
        Self::from_key(&blake3::derive_key(
            "hostguard backup-core data key",
            master,
        ))
    }

    fn from_key(key: &[u8; 32]) -> Self {
        RepoCipher {
            key: Zeroizing::new(*key),
        }
    }

    fn mac(&self, aad: &[u8], body: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&(aad.len() as u64).to_le_bytes());
        h.update(aad);
        h.update(body);
        h.finalize()
    }

    /// Seals `plaintext`, binding `aad` (the object's identity).
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + MAC_LEN);
        out.extend_from_slice(plaintext);
        out.extend_from_slice(self.mac(aad, plaintext).as_bytes());
        Ok(out)
    }

    /// Opens what [`RepoCipher::seal`] produced with the same `aad`.
    ///
    /// The error is opaque; callers wrap it with the object's name.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let split = sealed.len().checked_sub(MAC_LEN).ok_or(OpenError)?;
        let (body, tag) = sealed.split_at(split);
        let tag: [u8; MAC_LEN] = tag.try_into().map_err(|_| OpenError)?;
        // blake3::Hash compares in constant time.
        if self.mac(aad, body) != blake3::Hash::from(tag) {
            return Err(OpenError);
        }
        Ok(body.to_vec())
    }
}

/// An object failed to open: wrong key, wrong associated data, or damaged bytes (never says which).
#[derive(Debug)]
pub(crate) struct OpenError;
