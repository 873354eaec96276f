//! The crate's one public error type.

/// Everything that can go wrong in this crate.
///
/// Authentication failures are deliberately opaque: [`Error::Authentication`] names only the stage
/// that failed, never whether the key or the data was wrong.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An AEAD tag, MAC or key commitment did not verify at the named stage.
    #[error("authentication failed: {0}")]
    Authentication(Stage),
    /// Reading or writing the underlying stream failed.
    #[error("I/O error")]
    Io(#[from] std::io::Error),
}

/// Where in processing an authentication failure happened.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A chunk of a STREAM body (envelope payload, stream, or age payload).
    PayloadChunk,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::PayloadChunk => "payload chunk",
        })
    }
}
