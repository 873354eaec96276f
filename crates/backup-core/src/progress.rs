//! Progress reporting hooks for long operations.

/// Receives progress from backup and restore; every method has a do-nothing default.
///
/// Called from worker threads, so implementations must be cheap and thread-safe.
pub trait Progress: Send + Sync {
    /// The work is known: `files` to process holding `bytes` in total. A backup calls this when
    /// its scan ends, which may be after reading has begun (see [`Progress::found`]).
    fn start(&self, files: u64, bytes: u64) {
        let _ = (files, bytes);
    }

    /// A backup's scan found a file to read, of `bytes` bytes; called before the file is read.
    fn found(&self, path: &std::path::Path, bytes: u64) {
        let _ = (path, bytes);
    }

    /// `bytes` more were processed.
    fn bytes_done(&self, bytes: u64) {
        let _ = bytes;
    }

    /// One more file was finished.
    fn file_done(&self) {}

    /// A file could not be processed, or changed while read; the operation goes on.
    fn problem(&self, path: &str, what: &str) {
        let _ = (path, what);
    }
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
