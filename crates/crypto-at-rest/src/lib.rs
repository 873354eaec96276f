//! Encryption at rest for hostguard.
#![doc = "(crate docs: to be written with the first runnable example)"]

mod chunk;
mod error;

pub use chunk::Algorithm;
pub use error::Error;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
