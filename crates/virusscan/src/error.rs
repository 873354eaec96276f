//! The crate's one public error type.

use std::path::PathBuf;

/// Everything that can go wrong in virusscan. An error is never a clean result: a caller that
/// gets one knows nothing about the data.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// clamd could not be reached.
    #[error("cannot connect to clamd at {endpoint}")]
    Connect {
        /// The socket path or `host:port`.
        endpoint: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Talking to clamd failed after the connection was made (reset, closed early).
    #[error("clamd at {endpoint}: {what}")]
    Transport {
        /// The socket path or `host:port`.
        endpoint: String,
        /// What was being done.
        what: &'static str,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// clamd did not answer within the configured time.
    #[error("clamd at {endpoint}: no answer within {seconds:.1} s while {what}")]
    Timeout {
        /// The socket path or `host:port`.
        endpoint: String,
        /// What was being done.
        what: &'static str,
        /// The limit that was reached.
        seconds: f64,
    },
    /// clamd answered with an error (other than the stream size limit, which is a verdict).
    #[error("clamd reported an error: {reply}")]
    Clamd {
        /// clamd's reply, verbatim.
        reply: String,
    },
    /// clamd's reply could not be understood.
    #[error("unexpected reply from clamd: {reply:?}")]
    Protocol {
        /// The reply (lossily decoded).
        reply: String,
    },
    /// Reading or writing a local file or directory failed.
    #[error("{path}: {what}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The source of a stream scan failed while being read.
    #[error("reading the data to scan failed")]
    Source(#[source] std::io::Error),
    /// A configuration value is invalid.
    #[error("invalid configuration `{field}`: {reason}")]
    InvalidConfig {
        /// The option at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A scan cache file is malformed.
    #[error("scan cache {path}: {reason}")]
    CorruptCache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A quarantine record is malformed or inconsistent with the quarantine directory.
    #[error("quarantine record {path}: {reason}")]
    Quarantine {
        /// The record (or data file) at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A path given to the library is not acceptable (not absolute, not a regular file, ...).
    #[error("{path}: {reason}")]
    InvalidPath {
        /// The path.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
}

/// `Result` with virusscan's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, what: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            what,
            source,
        }
    }
}
