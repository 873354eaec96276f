//! Encryption at rest for hostguard: envelopes and streams under a rotating keyring, and the
//! age v1 file format, on [ring].
//!
//! ```
//! use std::io::{Read, Write};
//! use crypto_at_rest::{CipherConfig, KeyId, Keyring};
//!
//! let mut keys = Keyring::generate(KeyId(1))?;
//!
//! // A small object, sealed in one piece. The associated data names the object: the envelope
//! // opens only under the same name.
//! let envelope = keys.seal(b"customer-17/settings.json", b"{\"plan\":\"pro\"}")?;
//! assert_eq!(keys.open(b"customer-17/settings.json", &envelope)?, b"{\"plan\":\"pro\"}");
//! assert!(keys.open(b"customer-18/settings.json", &envelope).is_err());
//!
//! // A stream of any size, in bounded memory.
//! let config = CipherConfig::default();
//! let mut writer = keys.encrypt_writer(&config, b"db.sql", Vec::new())?;
//! writer.write_all(b"INSERT INTO ...")?;
//! let stream = writer.finish()?;
//! let mut plaintext = String::new();
//! keys.decrypt_reader(b"db.sql", &stream[..])?.read_to_string(&mut plaintext)?;
//! assert_eq!(plaintext, "INSERT INTO ...");
//!
//! // Rotation: a new primary key; old objects still open, and their data key can be moved to
//! // the new key without re-encrypting the payload.
//! keys.rotate_generated()?;
//! let mut moved = envelope.clone();
//! assert_eq!(keys.rewrap(&mut moved)?, KeyId(1));
//! assert_eq!(Keyring::key_id_of(&moved)?, KeyId(2));
//! assert_eq!(keys.open(b"customer-17/settings.json", &moved)?, b"{\"plan\":\"pro\"}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is here
//!
//! * **Envelopes** ([`Keyring::seal`], [`Keyring::open`]): a buffer sealed in one piece behind
//!   a self-describing header; nothing is released unless everything verifies.
//! * **Streams** ([`Keyring::encrypt_writer`], [`Keyring::decrypt_reader`], their tokio twins
//!   [`Keyring::encrypt_async_writer`] / [`Keyring::decrypt_async_reader`], and the
//!   multi-threaded [`Keyring::encrypt_stream`] / [`Keyring::decrypt_stream`]): the same header,
//!   then a chunked STREAM body (counter nonce and last-chunk flag) that detects truncation,
//!   reordering, duplication and appended data. [`Keyring::range_reader`] decrypts byte ranges
//!   reading only the chunks that cover them, and [`Keyring::stream_sealer`] seals chunks in
//!   the caller's own buffers without a copy.
//! * **Keys** ([`Keyring`]): key-encryption keys by [`KeyId`], one primary; rotation and
//!   [`Keyring::rewrap`]; loading from a file, an environment variable or a passphrase
//!   ([`PassphraseKdf`]: Argon2id or scrypt, OWASP 2023 parameters stored beside the salt). Each
//!   object gets its own random data key, wrapped under the primary key in its header, and a
//!   key commitment so a ciphertext cannot open under two different keys.
//! * **age v1** ([`age`]): files the `age` tool and every age implementation read, implemented
//!   here rather than with the `age` crate for the parallel engine and ring as the one AEAD
//!   backend ([why](age#why-not-the-age-crate)).
//! * **Safe outputs** ([`output::AtomicOutput`]): what a tool's `-o FILE` writes through, so a
//!   failure half-way never truncates, removes or half-overwrites the user's file.
//!
//! The byte layouts are in FORMAT.md beside this crate's manifest.
//!
//! # Errors
//!
//! One [`Error`] type. Format problems are named ([`Error::UnknownVersion`],
//! [`Error::InvalidHeader`] with "truncated header", "unknown algorithm", ...,
//! [`Error::UnknownKeyId`]); authentication failures are one opaque [`Error::Authentication`]
//! per [`Stage`], never saying whether the key or the data was wrong.
//!
//! # Dependencies, and why
//!
//! * [ring]: every AEAD (AES-256-GCM, ChaCha20-Poly1305), HKDF, HMAC, SHA-256 and the system
//!   random generator: audited, fast assembly, and the team's one crypto provider (rustls uses it).
//! * [argon2] and [scrypt] (RustCrypto): passphrase KDFs ring does not have; scrypt is also
//!   age's passphrase recipient.
//! * [zeroize]: wipes key bytes on drop.
//! * [thiserror]: the error type.
//! * [tokio] (feature `tokio`, on by default): `AsyncRead`/`AsyncWrite` adapters. Only tokio's
//!   `io-util` traits: no runtime, net, process or signal support comes with this crate.
//! * For age only: [x25519_dalek] (ring cannot load a stored X25519 private key), [bech32]
//!   (age's key encoding), [base64] (header stanzas and armor).

pub mod age;
#[cfg(feature = "tokio")]
mod async_io;
mod chunk;
mod config;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod envelope;
mod error;
mod header;
mod kdf;
mod keyring;
pub mod output;
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
pub use stream_format::{RandomAccess, RangeReader, StreamSealer};

/// Fills `buf` from the system's secure random generator (ring's `SystemRandom`).
pub(crate) fn random(buf: &mut [u8]) -> Result<()> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::Io(std::io::Error::other("the system random generator failed")))
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
