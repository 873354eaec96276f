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
    /// A STREAM body breaks the chunk rules after verified chunks: it ends before its last
    /// chunk, data follows the last chunk, it has no chunks, or an empty last chunk follows others.
    #[error("malformed payload: {0}")]
    MalformedPayload(&'static str),
    /// A hostguard envelope, stream or key file header is malformed; the text names the problem
    /// (bad magic, truncated header, unknown algorithm, invalid chunk size, ...).
    #[error("invalid header: {0}")]
    InvalidHeader(&'static str),
    /// The header's format version is not one this library reads.
    #[error("unsupported format version {0}")]
    UnknownVersion(u8),
    /// The object was sealed under a key id the keyring does not hold.
    #[error("key id {0} is not in the keyring")]
    UnknownKeyId(u32),
    /// A keyring or key file, key environment variable, or passphrase setting is invalid.
    #[error("invalid keyring: {0}")]
    InvalidKeyring(String),
    /// A configuration value is out of range (chunk size, KDF parameters, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An age header is malformed (age's "header parse" stage): unknown version line, truncated
    /// header, non-canonical encoding, or a stanza its recipient type rejects.
    #[error("invalid age header: {0}")]
    AgeHeader(String),
    /// None of the given identities can unwrap any of the age file's recipient stanzas.
    #[error("no identity matched any of the file's recipients")]
    NoMatchingIdentity,
    /// ASCII armor around an age file is malformed.
    #[error("invalid armor: {0}")]
    Armor(String),
    /// An age recipient, identity or passphrase setting is invalid.
    #[error("invalid key: {0}")]
    InvalidKey(String),
}

/// Where in processing an authentication failure happened.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A chunk of a STREAM body (envelope payload, stream, or age payload).
    PayloadChunk,
    /// Unwrapping an envelope's or stream's data key with the keyring's key, or checking its key
    /// commitment.
    DataKey,
    /// Opening a passphrase-sealed keyring file.
    KeyringFile,
    /// The HMAC over an age header.
    HeaderMac,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::PayloadChunk => "payload chunk",
            Stage::DataKey => "data key",
            Stage::KeyringFile => "keyring file",
            Stage::HeaderMac => "header MAC",
        })
    }
}

impl Error {
    /// Recovers this crate's error from an [`std::io::Error`] returned by one of its `Read`,
    /// `Write`, `AsyncRead` or `AsyncWrite` adapters (other I/O errors become [`Error::Io`]).
    pub fn from_io(err: std::io::Error) -> Self {
        if !err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Error::Io(err);
        }
        let kind = err.kind();
        match err.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(own)) => *own,
            Some(Err(other)) => Error::Io(std::io::Error::new(kind, other)),
            None => Error::Io(kind.into()),
        }
    }

    /// Wraps this error for an I/O adapter (I/O errors pass through unchanged).
    pub(crate) fn into_io(self) -> std::io::Error {
        match self {
            Error::Io(e) => e,
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}
