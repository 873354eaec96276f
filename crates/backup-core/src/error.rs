//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in backup-core.
///
/// Variants name the file or repository object at fault. Cryptographic failures stay opaque: a
/// wrong password and a damaged key object give the same [`Error::WrongKey`].
///
/// A variant with an underlying error returns it from [`std::error::Error::source`] and does
/// not repeat its text in its own message; [`report`] gives the whole chain in one line.
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
    /// The repository was written by a newer format version than this build reads.
    #[error(
        "the repository at {location} has format version {version}, newer than the {supported} this build reads: upgrade backup-core"
    )]
    NewerFormat {
        /// Where the repository is.
        location: String,
        /// The repository's format version.
        version: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The repository has no key objects (`keys/` is missing or empty), so nothing can open it.
    #[error(
        "the repository at {location} has no keys: keys/ is missing or empty (if nothing else is there, an init was killed: run init again)"
    )]
    NoKeys {
        /// Where the repository is.
        location: String,
    },
    /// The repository has no index objects (`index/` is missing or empty), so its data cannot
    /// be found.
    #[error(
        "the index is missing from the repository at {location}: index/ holds no index objects"
    )]
    IndexMissing {
        /// Where the repository is.
        location: String,
    },
    /// `init` found other files where the repository was to be created.
    #[error(
        "{location} is not empty and holds no repository (found {found}): init needs an empty location"
    )]
    NotEmpty {
        /// Where the repository was to be created.
        location: String,
        /// One of the entries found there.
        found: String,
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
    #[error("{path}")]
    Io {
        /// The local file at fault.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The object store failed.
    #[error("object store: {object}")]
    Store {
        /// The object (or location) at fault.
        object: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },
    /// Encryption-layer failure other than authentication (key file format, KDF parameters).
    #[error("{what}")]
    Crypto {
        /// What was being done (names the key file or object).
        what: String,
        /// The underlying error.
        #[source]
        source: crypto_at_rest::Error,
    },
    /// Removing a key was refused: it would leave the repository (or this caller) without a
    /// key.
    #[error("refusing to remove key {id}: {reason}")]
    KeyRemovalRefused {
        /// The key's id.
        id: String,
        /// Why.
        reason: &'static str,
    },
    /// A configuration value (builder option, URL, glob) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The repository was opened append-only ([`crate::Repository::open_append_only`]), and
    /// the operation would delete or replace objects.
    #[error(
        "the repository at {location} is opened append-only: {operation} would delete objects; run it where the repository is opened with full rights"
    )]
    AppendOnly {
        /// Where the repository is.
        location: String,
        /// The refused operation (`forget`, `key remove`, ...).
        operation: &'static str,
    },
    /// `copy` between repositories that do not share their chunk keys (chunk ids are keyed
    /// per repository, so data cannot move between them without being re-chunked).
    #[error(
        "{destination} does not share the chunk keys of {source_location}: create it with `init --copy-params-from {source_location}` to copy into it"
    )]
    KeysDiffer {
        /// The repository copied from.
        source_location: String,
        /// The repository copied into.
        destination: String,
    },
    /// The schedule's policy file or state file is invalid.
    #[error("{path}: {reason}")]
    Schedule {
        /// The policy or state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A background worker stopped unexpectedly.
    #[error("internal worker failure: {0}")]
    Worker(String),
    /// Another process holds a lock that conflicts with the one asked for (see
    /// [`crate::lock`]).
    #[error(
        "the repository at {location} is locked: {holder} (if that process is gone, its lock goes stale on its own, and unlock removes stale locks)"
    )]
    Locked {
        /// Where the repository is.
        location: String,
        /// Who holds the lock: command, kind, host, pid, since when, last refreshed.
        holder: String,
    },
    /// A lock this process held could not be kept fresh, or was removed by someone else: the
    /// operation stopped before changing anything more.
    #[error("lost the repository lock {object}: {reason}")]
    LockLost {
        /// The lock object.
        object: String,
        /// What happened.
        reason: String,
    },
    /// The repository is write-only (see `FORMAT.md`) and this handle was opened with the
    /// host's key, which can add snapshots but decrypt nothing stored: the operation needs
    /// the owner's identity (`AGE-SECRET-KEY-1…`, [`crate::KeySource::OwnerIdentity`]).
    #[error(
        "the repository at {location} is write-only: {operation} needs the owner's identity (AGE-SECRET-KEY-1..., --identity FILE); a write-only host's key can only add backups"
    )]
    WriteOnly {
        /// Where the repository is.
        location: String,
        /// The refused operation (`restore`, `snapshots`, `check`, ...).
        operation: &'static str,
    },
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

/// `error` and its chain of sources in one line (`a: b: c`), each cause once: a cause whose text
/// the message so far already holds (as some errors of other crates repeat their source's
/// text) is not repeated.
///
/// ```
/// let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied");
/// let error = backup_core::Error::Io { path: "/srv/repo/config".into(), source: io };
/// assert_eq!(backup_core::report(&error), "/srv/repo/config: Permission denied");
/// ```
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let message = e.to_string();
        if !message.is_empty() && !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = e.source();
    }
    text
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
