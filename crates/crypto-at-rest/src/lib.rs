//! Encryption at rest for hostguard.
#![doc = "(crate docs: to be written with the first runnable example)"]

pub mod age;
mod chunk;
mod error;
mod stream;

pub use chunk::Algorithm;
pub use error::{Error, Stage};
pub use stream::{DecryptReader, EncryptWriter};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
