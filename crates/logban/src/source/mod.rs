//! Log sources: files (followed across rotation), the systemd journal, and in-memory lines.
//!
//! Sources are polled: [`FileSource::poll`] returns the complete lines appended since the last
//! call, [`JournalSource::poll`] the entries `journalctl` has printed. Each reports a position
//! ([`FilePosition`], a journal cursor) to save and resume from.

mod file;
mod journal;

use std::collections::VecDeque;

pub use file::{FilePosition, FileSource, FileTail, StartAt};
pub use journal::{JournalConfig, JournalEntry, JournalSource};

/// One line from a source.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// The line without its newline (raw bytes: logs need not be UTF-8).
    pub bytes: Vec<u8>,
    /// The entry's time when the source knows it (journal), Unix seconds.
    pub time: Option<f64>,
}

/// Lines handed over in memory, for embedding logban in a service that has its own logs.
#[derive(Debug, Default)]
pub struct MemorySource {
    queue: VecDeque<LogLine>,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a line (its date is detected by the filter).
    pub fn push(&mut self, line: impl Into<Vec<u8>>) {
        self.queue.push_back(LogLine {
            bytes: line.into(),
            time: None,
        });
    }

    /// Queues a line whose time is known.
    pub fn push_at(&mut self, line: impl Into<Vec<u8>>, time: f64) {
        self.queue.push_back(LogLine {
            bytes: line.into(),
            time: Some(time),
        });
    }

    /// Takes every queued line.
    pub fn poll(&mut self) -> Vec<LogLine> {
        self.queue.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_source_hands_lines_over_in_order() {
        let mut src = MemorySource::new();
        src.push("a");
        src.push_at("b", 5.0);
        let lines = src.poll();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].bytes, b"a");
        assert_eq!(lines[1].time, Some(5.0));
        assert!(src.poll().is_empty());
    }
}
