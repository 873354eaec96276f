//! The crate's one public error type.

/// Everything that can go wrong in logban.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a log, state or config file failed.
    #[error("I/O error on {path}")]
    Io {
        /// The file at fault.
        path: std::path::PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration `{field}`: {reason}")]
    InvalidConfig {
        /// The option at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A filter regex could not be translated or compiled.
    #[error("bad regex `{pattern}`: {reason}")]
    Regex {
        /// The regex as written in the filter (Python syntax).
        pattern: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A fail2ban configuration file is malformed or incomplete.
    #[error("{path}: {reason}")]
    Fail2banConfig {
        /// The file (or filter name) at fault.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A ban sink could not apply a change (the change is not applied).
    #[error("{sink} sink: {reason}")]
    Sink {
        /// Which sink.
        sink: String,
        /// What went wrong (the backend's own message, when it gave one).
        reason: String,
    },
    /// A program could not be run.
    #[error("cannot run `{program}`")]
    Spawn {
        /// The program.
        program: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The state database failed.
    #[error("state database {path}")]
    State {
        /// The database file.
        path: std::path::PathBuf,
        /// What the database engine said (its type is not part of logban's API).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Saved state could not be decoded.
    #[error("corrupt state in {path}: {reason}")]
    Corrupt {
        /// The database file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A TOML configuration file is malformed.
    #[error("{path}: invalid configuration")]
    Toml {
        /// The file.
        path: std::path::PathBuf,
        /// What the TOML parser said, with line and column (its type is not part of logban's API).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A bounded queue is full (or closed): the item was not taken.
    #[error("{what} is full ({capacity} entries)")]
    QueueFull {
        /// Which queue.
        what: String,
        /// Its capacity.
        capacity: usize,
    },
    /// A log source failed (e.g. `journalctl` exited with an error).
    #[error("log source {log}: {reason}")]
    LogSource {
        /// The source (program, file).
        log: String,
        /// What went wrong.
        reason: String,
    },
}
