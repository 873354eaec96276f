//! The [`Scanner`] trait and its [`Verdict`].

use std::fs::File;
use std::path::Path;

use async_trait::async_trait;
use tokio::io::AsyncRead;

use crate::error::{Error, Result};
use crate::fsutil::FileIdentity;

/// What a scanner concluded about some data. Errors are not verdicts: a scan that failed
/// returns `Err`, so nothing that was not scanned can be mistaken for [`Verdict::Clean`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The data was scanned in full and matched no signature.
    Clean,
    /// The data matched a signature.
    Infected {
        /// The signature's name as the scanner reports it (e.g. `Win.Test.EICAR_HDB-1`).
        signature: String,
    },
    /// The data exceeds a size limit of the scanner and was not (fully) scanned.
    TooLarge {
        /// The scanner's explanation (e.g. clamd's `INSTREAM size limit exceeded`).
        reason: String,
    },
}

impl Verdict {
    /// True only for [`Verdict::Clean`].
    pub fn is_clean(&self) -> bool {
        matches!(self, Verdict::Clean)
    }

    /// The signature for [`Verdict::Infected`].
    pub fn signature(&self) -> Option<&str> {
        match self {
            Verdict::Infected { signature } => Some(signature),
            _ => None,
        }
    }
}

/// A virus scanner.
///
/// Required: [`scan_reader`](Scanner::scan_reader) and
/// [`signature_version`](Scanner::signature_version). The rest have defaults built on them that
/// an implementation may override with something faster (clamd's client passes open files by
/// descriptor). `virusscan::conformance` (feature `conformance`) is the suite every
/// implementation runs.
#[async_trait]
pub trait Scanner: Send + Sync + std::fmt::Debug {
    /// Scans everything `reader` yields until its end.
    async fn scan_reader(&self, reader: &mut (dyn AsyncRead + Unpin + Send)) -> Result<Verdict>;

    /// A string that changes whenever the signatures change; scan caches are keyed on it.
    async fn signature_version(&self) -> Result<String>;

    /// Checks that the scanner is reachable.
    async fn ping(&self) -> Result<()> {
        self.signature_version().await.map(|_| ())
    }

    /// Scans a buffer.
    async fn scan_bytes(&self, data: &[u8]) -> Result<Verdict> {
        let mut reader = data;
        self.scan_reader(&mut reader).await
    }

    /// Scans an open regular file from its start. The file's offset may move.
    async fn scan_file(&self, file: &File) -> Result<Verdict> {
        let mut reader = reader_from_start(file).await?;
        self.scan_reader(&mut reader).await
    }

    /// Scans an open regular file whose identity the caller has just read from it with
    /// [`FileIdentity::of`] (as the tree scan and watch mode do), so an implementation can rely
    /// on `identity.size` rather than ask the file again. The default ignores the identity.
    async fn scan_file_with_identity(
        &self,
        file: &File,
        identity: &FileIdentity,
    ) -> Result<Verdict> {
        let _ = identity;
        self.scan_file(file).await
    }

    /// Opens `path` (never through a symbolic link at its last component) and scans it.
    async fn scan_path(&self, path: &Path) -> Result<Verdict> {
        let owned = path.to_path_buf();
        let file = tokio::task::spawn_blocking(move || crate::fsutil::open_regular(&owned))
            .await
            .map_err(|e| Error::io(path, "opening", std::io::Error::other(e)))??;
        self.scan_file(&file).await
    }
}

/// An async reader of `file` from its start (sharing the descriptor's offset).
pub(crate) async fn reader_from_start(file: &File) -> Result<tokio::fs::File> {
    let clone = file.try_clone().map_err(Error::Source)?;
    let mut reader = tokio::fs::File::from_std(clone);
    tokio::io::AsyncSeekExt::seek(&mut reader, std::io::SeekFrom::Start(0))
        .await
        .map_err(Error::Source)?;
    Ok(reader)
}
