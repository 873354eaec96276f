//! Log sources: files (followed across rotation), the systemd journal, and in-memory lines,
//! all behind one trait, [`LogSource`].
//!
//! A source is polled: [`LogSource::poll`] returns the lines that arrived since the last call,
//! a bounded batch at a time (poll again at once while lines come); [`LogSource::poll_batch`]
//! returns them as a [`LogBatch`], which for files is one block of lines as read. Blocking reads run on
//! tokio's blocking threads, never on the runtime's workers. Each source reports where it got
//! to ([`LogSource::checkpoint`]) for the [`StateStore`](crate::StateStore), and the configured
//! inputs that give no lines now ([`LogSource::problems`]: a missing file, a directory), which
//! the engine counts and warns about. `logban::conformance::source` (feature `conformance`) is
//! the suite every source runs.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> logban::Result<()> {
//! use logban::source::{LogSource, MemorySource};
//!
//! let source = MemorySource::new();
//! source.push("Failed password for root from 192.0.2.7")?;
//! let lines = source.poll().await?;
//! assert_eq!(lines[0].bytes, b"Failed password for root from 192.0.2.7");
//! assert!(source.poll().await?.is_empty());
//! # Ok(()) }
//! ```

mod file;
mod journal;

use std::collections::VecDeque;
use std::sync::Mutex;

pub use file::{FilePosition, FileSource, FileTail, StartAt};
pub(crate) use file::{decode_position, position_key};
pub use journal::{JournalConfig, JournalEntry, JournalSource};

use crate::{Error, Result};

/// One line from a source.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// The line without its newline (raw bytes: logs need not be UTF-8).
    pub bytes: Vec<u8>,
    /// The entry's time when the source knows it (journal), Unix seconds.
    pub time: Option<f64>,
}

/// What one poll returned: lines one by one, or a block of complete lines as read.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum LogBatch {
    /// Lines one by one (with their times when the source knows them: the journal).
    Lines(Vec<LogLine>),
    /// Lines one after the other, each ending in `\n` (none holds another `\n`; a `\r` before
    /// it is part of the line), as a file source reads them: handed on without a copy or an
    /// allocation per line.
    Block(Vec<u8>),
}

impl LogBatch {
    /// True when the batch holds no line.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Lines(lines) => lines.is_empty(),
            Self::Block(block) => block.is_empty(),
        }
    }

    /// The lines one by one (a block's without their `\n`).
    pub fn into_lines(self) -> Vec<LogLine> {
        match self {
            Self::Lines(lines) => lines,
            Self::Block(block) => block_lines(&block)
                .map(|line| LogLine {
                    bytes: line.to_vec(),
                    time: None,
                })
                .collect(),
        }
    }
}

/// The lines of a [`LogBatch::Block`] without their `\n` (a last line without one, which a
/// block should not have, is a line too).
pub(crate) fn block_lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', block)
        .chain((!block.is_empty() && !block.ends_with(b"\n")).then_some(block.len()));
    ends.map(move |end| {
        let line = &block[start..end];
        start = end + 1;
        line
    })
}

/// A configured input that gives no lines now, and why.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceProblem {
    /// The input as configured (a path, a glob).
    pub input: String,
    /// Why it gives nothing (`does not exist (yet)...`, `is a directory...`).
    pub why: String,
}

impl std::fmt::Display for SourceProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.input, self.why)
    }
}

/// A log to follow: files ([`FileSource`]), the journal ([`JournalSource`]) or lines handed
/// over in memory ([`MemorySource`]).
///
/// Only [`poll`](Self::poll) is required. Sources are shared (`&self`): each keeps its own
/// state behind a lock, so a daemon can poll a source while its status is read.
#[async_trait::async_trait]
pub trait LogSource: Send + Sync + std::fmt::Debug {
    /// The complete lines that arrived since the last call, in log order, each exactly once;
    /// at most a bounded batch (about 8 MiB per file, a queue's worth of entries), so a caller
    /// polls again at once while lines come. Never blocks the async runtime. An error (a file
    /// that cannot be read, `journalctl` failing) names what failed.
    async fn poll(&self) -> Result<Vec<LogLine>>;

    /// The same lines as [`poll`](Self::poll) (the two share one position: each line comes
    /// once, from either), as a [`LogBatch`]: a source that reads lines as one run of bytes (a
    /// file) hands them over as a [`LogBatch::Block`], without a copy per line.
    /// [`Engine::follow`](crate::Engine::follow) polls this. Default: `poll`'s lines.
    async fn poll_batch(&self) -> Result<LogBatch> {
        Ok(LogBatch::Lines(self.poll().await?))
    }

    /// Where the source has got to, as `(key, value)` pairs to save in the
    /// [`StateStore`](crate::StateStore) after the lines polled so far were handled; the
    /// engine's `open_*` constructors resume from them. Default: nothing to save.
    fn checkpoint(&self) -> Vec<(String, Vec<u8>)> {
        Vec::new()
    }

    /// Configured inputs that gave no lines at the last poll (or at creation), with why.
    /// Default: none.
    fn problems(&self) -> Vec<SourceProblem> {
        Vec::new()
    }

    /// Lines read so far that were longer than the source keeps (1 MiB for files): each was
    /// cut, so a failure beyond its first part is not seen. Default: none.
    fn cut_lines(&self) -> u64 {
        0
    }

    /// True once no line will ever come again (a finished journal file, a closed memory
    /// source) and everything was polled. Default: never.
    fn is_finished(&self) -> bool {
        false
    }
}

/// Lines handed over in memory, for embedding logban in a service that has its own logs.
///
/// The queue is bounded ([`with_capacity`](Self::with_capacity), default
/// [`MemorySource::DEFAULT_CAPACITY`] lines): a push into a full queue is refused with
/// [`Error::QueueFull`], never grows memory.
#[derive(Debug)]
pub struct MemorySource {
    state: Mutex<MemoryQueue>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct MemoryQueue {
    lines: VecDeque<LogLine>,
    closed: bool,
}

impl Default for MemorySource {
    fn default() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }
}

impl MemorySource {
    /// Lines queued at most by [`new`](Self::new).
    pub const DEFAULT_CAPACITY: usize = 65_536;

    /// Lines one poll returns at most.
    const BATCH: usize = 32_768;

    /// An empty source holding up to [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY) lines.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty source holding up to `capacity` lines (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            state: Mutex::new(MemoryQueue::default()),
            capacity: capacity.max(1),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, MemoryQueue> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, line: LogLine) -> Result<()> {
        let mut queue = self.queue();
        if queue.closed {
            return Err(Error::QueueFull {
                what: "memory source (closed)".into(),
                capacity: self.capacity,
            });
        }
        if queue.lines.len() >= self.capacity {
            return Err(Error::QueueFull {
                what: "memory source".into(),
                capacity: self.capacity,
            });
        }
        queue.lines.push_back(line);
        Ok(())
    }

    /// Queues a line (its date is detected by the filter); refused when the queue is full or
    /// the source closed.
    pub fn push(&self, line: impl Into<Vec<u8>>) -> Result<()> {
        self.enqueue(LogLine {
            bytes: line.into(),
            time: None,
        })
    }

    /// Queues a line whose time is known (Unix seconds).
    pub fn push_at(&self, line: impl Into<Vec<u8>>, time: f64) -> Result<()> {
        self.enqueue(LogLine {
            bytes: line.into(),
            time: Some(time),
        })
    }

    /// No more lines will be pushed: the source is finished once the queue is polled empty.
    pub fn close(&self) {
        self.queue().closed = true;
    }
}

#[async_trait::async_trait]
impl LogSource for MemorySource {
    async fn poll(&self) -> Result<Vec<LogLine>> {
        let mut queue = self.queue();
        let n = queue.lines.len().min(Self::BATCH);
        Ok(queue.lines.drain(..n).collect())
    }

    fn is_finished(&self) -> bool {
        let queue = self.queue();
        queue.closed && queue.lines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_source_is_bounded_and_finishes_when_closed() {
        let src = MemorySource::with_capacity(2);
        src.push("a").expect("room");
        src.push_at("b", 5.0).expect("room");
        assert!(matches!(
            src.push("c"),
            Err(Error::QueueFull { capacity: 2, .. })
        ));
        let lines = src.poll().await.expect("poll");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].bytes, b"a");
        assert_eq!(lines[1].time, Some(5.0));
        src.push("d").expect("room again");
        src.close();
        assert!(src.push("e").is_err(), "closed");
        assert!(!src.is_finished(), "a line is still queued");
        assert_eq!(src.poll().await.expect("poll").len(), 1);
        assert!(src.is_finished());
    }
}
