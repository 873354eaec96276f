//! Following sources with the engine: poll a [`FileSource`] or a [`JournalSource`], feed its
//! lines to a jail, and save how far it got in the [`StateStore`](crate::StateStore), so a
//! restart resumes there (lines written while the daemon was down are read, none twice).
//!
//! Position keys: `file:<path>` (value `<inode> <offset>`) and `journal:<jail>` (the cursor).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::{Engine, LineMatcher};
use crate::source::{FilePosition, FileSource, JournalConfig, JournalSource, LogLine, StartAt};
use crate::{Error, Result};

fn file_key(path: &Path) -> String {
    format!("file:{}", path.display())
}

fn encode(position: FilePosition) -> Vec<u8> {
    format!("{} {}", position.inode, position.offset).into_bytes()
}

fn decode(bytes: &[u8]) -> Option<FilePosition> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (inode, offset) = text.split_once(' ')?;
    Some(FilePosition {
        inode: inode.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

/// Runs blocking work (file reads, database commits) on tokio's blocking threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        // Blocking tasks are never cancelled: an error is a panic, passed on.
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

impl Engine {
    /// Opens `patterns` (paths or globs) for `jail`: files with a saved position resume there,
    /// the others start at their end (files appearing later are read from their beginning).
    pub fn open_files(&self, patterns: &[PathBuf]) -> Result<FileSource> {
        let mut source = FileSource::new(patterns.iter().cloned(), StartAt::End)?;
        if let Some(state) = self.state() {
            for (path, _) in source.positions() {
                if let Some(saved) = state.position(&file_key(&path))?.and_then(|v| decode(&v)) {
                    source.resume(&path, saved)?;
                }
            }
        }
        Ok(source)
    }

    /// Feeds polled lines to `jail`. Sink failures are already queued and reported by the
    /// engine, so they do not stop reading.
    async fn feed_all(
        &self,
        jail: &str,
        lines: &[LogLine],
        matcher: &mut dyn LineMatcher,
    ) -> Result<()> {
        for outcome in matcher.match_lines(lines) {
            match self.feed_outcome(jail, outcome).await {
                Ok(_) | Err(Error::Sink { .. } | Error::Spawn { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Follows log files for `jail` forever (see [`open_files`](Self::open_files)), polling
    /// every `period` and saving positions after every poll that read something. Returns only
    /// on an error (a file that cannot be read, the state database failing).
    pub async fn follow_files(
        &self,
        jail: &str,
        mut source: FileSource,
        mut matcher: impl LineMatcher,
        period: Duration,
    ) -> Result<()> {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            // A backlog comes in bounded batches: poll again at once while lines come, saving
            // positions after each batch. Reading files and committing positions (an fsync)
            // block, so both run on blocking threads, never on the runtime's workers.
            loop {
                let (returned, polled) = blocking(move || {
                    let polled = source.poll();
                    (source, polled)
                })
                .await;
                source = returned;
                let lines = polled?;
                if lines.is_empty() {
                    break;
                }
                self.feed_all(jail, &lines, &mut matcher).await?;
                if let Some(state) = self.state().cloned() {
                    let positions = source.positions();
                    blocking(move || {
                        positions.iter().try_for_each(|(path, position)| {
                            state.set_position(&file_key(path), &encode(*position))
                        })
                    })
                    .await?;
                }
            }
        }
    }

    /// Follows the journal for `jail` (resuming after the saved cursor unless `config` names
    /// one), polling every `period` and saving the cursor. Returns when `journalctl` exits
    /// (reading a finished journal file) or on an error.
    pub async fn follow_journal(
        &self,
        jail: &str,
        mut config: JournalConfig,
        mut matcher: impl LineMatcher,
        period: Duration,
    ) -> Result<()> {
        let key = format!("journal:{jail}");
        if config.after_cursor.is_none()
            && let Some(state) = self.state()
        {
            config.after_cursor = state
                .position(&key)?
                .and_then(|v| String::from_utf8(v).ok());
        }
        let mut source = JournalSource::spawn(&config)?;
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let lines = source.poll();
            self.feed_all(jail, &lines, &mut matcher).await?;
            if let (Some(state), Some(cursor), false) =
                (self.state(), source.cursor(), lines.is_empty())
            {
                state.set_position(&key, cursor.as_bytes())?;
            }
            if source.is_finished() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_reject_garbage() {
        let p = FilePosition {
            inode: 1234,
            offset: 99,
        };
        assert_eq!(decode(&encode(p)), Some(p));
        for bad in [&b""[..], b"12", b"a b", b"1 -2", &[0xff, 0x20, 0x31]] {
            assert_eq!(decode(bad), None);
        }
    }
}
