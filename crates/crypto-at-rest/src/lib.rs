//! Encryption at rest for hostguard.
#![doc = "(crate docs: to be written with the first runnable example)"]

#[cfg(feature = "tokio")]
mod async_io;
mod chunk;
mod config;
mod envelope;
mod error;
mod header;
mod kdf;
mod keyring;
mod stream;
mod stream_format;

#[cfg(feature = "tokio")]
pub use async_io::{AsyncDecryptReader, AsyncEncryptWriter};
pub use chunk::Algorithm;
pub use config::{CipherConfig, CipherConfigBuilder};
pub use error::{Error, Stage};
pub use kdf::{Kdf, PassphraseKdf};
pub use keyring::{KeyId, Keyring, SecretKey};
pub use stream::{DecryptReader, EncryptWriter};
pub use stream_format::{RandomAccess, RangeReader};

/// Fills `buf` from the system's secure random generator (ring's `SystemRandom`).
pub(crate) fn random(buf: &mut [u8]) -> Result<()> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::Io(std::io::Error::other("the system random generator failed")))
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
