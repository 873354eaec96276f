//! How new objects are sealed: algorithm, chunk size, threads.

use crate::chunk::Algorithm;
use crate::error::Error;
use crate::header::MAX_CHUNK_SIZE;

/// Settings for sealing new envelopes and streams, made with [`CipherConfig::builder`].
///
/// Opening never needs them: headers are self-describing.
///
/// ```
/// use crypto_at_rest::{Algorithm, CipherConfig};
/// let config = CipherConfig::builder()
///     .with_algorithm(Algorithm::ChaCha20Poly1305)
///     .with_chunk_size(1 << 20)
///     .with_threads(2)
///     .build()?;
/// assert_eq!(config.chunk_size(), 1 << 20);
/// assert!(CipherConfig::builder().with_chunk_size(0).build().is_err());
/// # Ok::<(), crypto_at_rest::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipherConfig {
    algorithm: Algorithm,
    chunk_size: u32,
    threads: usize,
}

impl Default for CipherConfig {
    /// AES-256-GCM, 64 KiB chunks, every available core.
    fn default() -> Self {
        Self {
            algorithm: Algorithm::default(),
            chunk_size: CipherConfig::DEFAULT_CHUNK_SIZE,
            threads: 0,
        }
    }
}

impl CipherConfig {
    /// The default chunk size: 64 KiB, a good trade between random-access granularity and the
    /// 16-byte tag per chunk (0.02% overhead).
    pub const DEFAULT_CHUNK_SIZE: u32 = 64 << 10;

    /// A builder starting from the defaults.
    pub fn builder() -> CipherConfigBuilder {
        CipherConfigBuilder(Self::default())
    }

    /// The AEAD algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Plaintext bytes per stream chunk.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Threads used by [`Keyring::encrypt_stream`](crate::Keyring::encrypt_stream): the
    /// configured number, or every available core if none was set.
    pub fn threads(&self) -> usize {
        resolve_threads(self.threads)
    }
}

/// Builds a [`CipherConfig`].
#[derive(Debug, Clone)]
pub struct CipherConfigBuilder(CipherConfig);

impl CipherConfigBuilder {
    /// The AEAD algorithm (default AES-256-GCM).
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Self {
        self.0.algorithm = algorithm;
        self
    }

    /// Plaintext bytes per stream chunk: 1 to 16 MiB (default 64 KiB).
    pub fn with_chunk_size(mut self, chunk_size: u32) -> Self {
        self.0.chunk_size = chunk_size;
        self
    }

    /// Threads for whole-stream encryption; 0 (the default) means every available core.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.0.threads = threads;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<CipherConfig, Error> {
        if !(1..=MAX_CHUNK_SIZE).contains(&self.0.chunk_size) {
            return Err(Error::InvalidConfig(format!(
                "chunk size {} is outside 1..={MAX_CHUNK_SIZE}",
                self.0.chunk_size
            )));
        }
        Ok(self.0)
    }
}

/// `threads`, or every available core for 0.
pub(crate) fn resolve_threads(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}
