//! The crate's one public error type.

use std::path::PathBuf;

/// A boxed error from a lower layer (HTTP transport, an export source), kept as the source so
/// callers can walk the chain without this crate exposing its HTTP library's types.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in this crate.
///
/// No variant ever carries a secret: access and refresh tokens, client secrets, authorization
/// codes and upload URLs (which are bearer capabilities) are left out of every message.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is missing or out of range (fragment size, URLs, concurrency, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The request never got an HTTP answer (connection refused or cut, timeout), after retries.
    #[error("{what}: transport failure")]
    Transport {
        /// What was being done, e.g. "PUT fragment 0-327679 of a/b.bin".
        what: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },
    /// Microsoft Graph answered with an error status (after retries for transient ones).
    #[error("{what}: HTTP {status} {code}: {message}")]
    Api {
        /// What was being done.
        what: String,
        /// The HTTP status.
        status: u16,
        /// Graph's error code (`itemNotFound`, `nameAlreadyExists`, ...), or empty.
        code: String,
        /// Graph's error message, or empty.
        message: String,
    },
    /// The item already exists and the conflict behaviour is [`Conflict::Fail`](crate::Conflict::Fail).
    #[error("{path}: an item of that name already exists (conflict behaviour fail)")]
    AlreadyExists {
        /// The remote path.
        path: String,
    },
    /// The token endpoint refused a grant, or no usable token is available (for example no
    /// refresh token stored yet: run the one-time consent step).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Microsoft Graph answered with something this client cannot read.
    #[error("{what}: unexpected response: {detail}")]
    InvalidResponse {
        /// What was being done.
        what: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// A file or path name that OneDrive does not accept, under the refusing name policy (or a
    /// problem no mapping can fix, such as a path too long).
    #[error("{path}: name not accepted by OneDrive: {reason}")]
    InvalidName {
        /// The offending path (local form, lossy UTF-8).
        path: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// After an upload, the server's quickXorHash or size differs from what was sent.
    #[error("{path}: upload verification failed: {detail}")]
    VerificationFailed {
        /// The remote path.
        path: String,
        /// Which value differed (expected and reported).
        detail: String,
    },
    /// Reading or writing a local file failed.
    #[error("{}: I/O error", path.display())]
    Io {
        /// The local file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A local state file (token file, upload session record, export journal) is malformed.
    #[error("{}: malformed state file: {detail}", path.display())]
    CorruptState {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The export source failed to list or read an entry.
    #[error("export source: {what}")]
    Source {
        /// What was being done.
        what: String,
        /// The source's error.
        #[source]
        source: std::io::Error,
    },
    /// Encrypting an export file to the age recipient failed.
    #[error("{path}: age encryption failed")]
    Encryption {
        /// The file being encrypted.
        path: String,
        /// crypto-at-rest's error.
        #[source]
        source: crypto_at_rest::Error,
    },
    /// The operation was aborted through its [`AbortHandle`](crate::AbortHandle); any upload
    /// session in flight was cancelled.
    #[error("aborted")]
    Aborted,
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid_response(what: &str, detail: impl Into<String>) -> Self {
        Error::InvalidResponse {
            what: what.to_owned(),
            detail: detail.into(),
        }
    }
}
