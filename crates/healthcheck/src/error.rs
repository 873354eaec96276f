//! The crate's one public error type.

use std::path::PathBuf;

/// Everything that can go wrong in healthcheck outside a check's own verdict.
///
/// A failing target is not an error: it is a [`crate::Observation`] with a critical status. These
/// errors are for bad configuration, a sink that cannot deliver, or a server that cannot start.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A threshold is not in the Nagios range syntax.
    #[error("invalid range `{range}`: {reason}")]
    InvalidRange {
        /// The range as written.
        range: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A builder or configuration value is invalid.
    #[error("invalid configuration `{field}`: {reason}")]
    InvalidConfig {
        /// The option at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TOML configuration file is malformed; the message names the line and the key.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Line, key and what is wrong.
        message: String,
    },
    /// Reading a file failed.
    #[error("I/O error on {path}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The status server could not bind or accept.
    #[error("status server on {addr}")]
    Serve {
        /// The address.
        addr: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// An alert sink failed to deliver (after its retries).
    #[error("{sink} alert sink: {reason}")]
    Sink {
        /// Which sink.
        sink: String,
        /// What went wrong.
        reason: String,
    },
    /// A TLS or HTTP client could not be built.
    #[error("cannot build {what} client")]
    Client {
        /// Which client.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Shorthand for results with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field: field.to_owned(),
        reason: reason.into(),
    }
}
