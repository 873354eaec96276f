//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in backup-core.
///
/// Variants name the file or repository object at fault. Cryptographic failures stay opaque: a
/// wrong password and a damaged key object give the same [`Error::WrongKey`].
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `init` found a repository already there and refused to overwrite it.
    #[error("a repository already exists at {location}")]
    RepositoryExists {
        /// Where the repository was to be created.
        location: String,
    },
    /// No repository (no `config` object) at the location.
    #[error("no repository at {location} (run init first)")]
    NoRepository {
        /// Where the repository was looked for.
        location: String,
    },
    /// No key object opened with the given password or key file.
    #[error("wrong password or key file: no key in the repository opens with it")]
    WrongKey,
    /// An object failed authentication, is truncated, or does not decode: the repository is damaged
    /// or was tampered with.
    #[error("repository object {object} is corrupt: {reason}")]
    Corrupt {
        /// The object's path in the store.
        object: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A snapshot, chunk or path named by the caller does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// A restore was asked to write outside its target (a hostile or damaged tree).
    #[error("refusing unsafe name {name:?} in {object}: {reason}")]
    UnsafeName {
        /// The offending entry name, lossily decoded.
        name: String,
        /// The tree object that holds it.
        object: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The local file at fault.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The object store failed.
    #[error("object store: {object}: {source}")]
    Store {
        /// The object (or location) at fault.
        object: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },
    /// Encryption-layer failure other than authentication (key file format, KDF parameters).
    #[error("{what}: {source}")]
    Crypto {
        /// What was being done (names the key file or object).
        what: String,
        /// The underlying error.
        #[source]
        source: crypto_at_rest::Error,
    },
    /// A configuration value (builder option, URL, glob) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A background worker stopped unexpectedly.
    #[error("internal worker failure: {0}")]
    Worker(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn store(object: impl Into<String>, source: object_store::Error) -> Self {
        Error::Store {
            object: object.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
