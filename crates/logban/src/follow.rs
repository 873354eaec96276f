//! Following sources with the engine: poll any [`LogSource`], match its lines on a blocking
//! thread, feed them to a jail, and save the source's checkpoint in the
//! [`StateStore`](crate::StateStore), so a restart resumes there (lines written while the daemon
//! was down are read, none twice).
//!
//! Checkpoint keys: `file:<path>` (value `<inode> <offset>`) and `journal:<jail>` (the cursor).

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::{Engine, LineMatcher};
use crate::source::{
    FileSource, JournalConfig, JournalSource, LogBatch, LogSource, StartAt, decode_position,
    position_key,
};
use crate::{Error, Result};

/// Runs blocking work (reads, matching, database commits) on tokio's blocking threads.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        // Blocking tasks are never cancelled: an error is a panic, passed on.
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

impl Engine {
    /// Opens `patterns` (paths or globs): files with a saved position resume there, the others
    /// start at their end (files appearing later are read from their beginning).
    pub fn open_files(&self, patterns: &[PathBuf]) -> Result<FileSource> {
        let source = FileSource::new(patterns.iter().cloned(), StartAt::End)?;
        if let Some(state) = self.state() {
            for (path, _) in source.positions() {
                if let Some(saved) = state
                    .position(&position_key(&path))?
                    .and_then(|v| decode_position(&v))
                {
                    source.resume(&path, saved)?;
                }
            }
        }
        Ok(source)
    }

    /// Starts `journalctl` for `jail` with `config`, resuming after the cursor saved for the
    /// jail unless `config` names one (without either it starts at the end).
    pub fn open_journal(&self, jail: &str, mut config: JournalConfig) -> Result<JournalSource> {
        let key = format!("journal:{jail}");
        if config.after_cursor.is_none()
            && let Some(state) = self.state()
        {
            config.after_cursor = state
                .position(&key)?
                .and_then(|v| String::from_utf8(v).ok());
        }
        Ok(JournalSource::spawn(&config)?.with_checkpoint_key(key))
    }

    /// Follows `source` for `jail`: polls it every `period` (at once again while lines come),
    /// matches the lines on a blocking thread, feeds the outcomes to the jail, and saves the
    /// source's checkpoint after each batch (on a blocking thread). Inputs the source cannot
    /// read are counted in the jail's `unreadable_logs` and logged when they appear and when
    /// they are resolved; lines the source cut are counted in `cut_lines`, lines the matcher
    /// gave up on in `undecided_lines`. Returns when the source is finished, or on an error (a source or the
    /// state database failing); sink failures do not stop it (the engine queues and retries).
    pub async fn follow<M: LineMatcher + 'static>(
        &self,
        jail: &str,
        source: &dyn LogSource,
        matcher: M,
        period: Duration,
    ) -> Result<()> {
        if !self.jail_names().iter().any(|j| j == jail) {
            return Err(Error::InvalidConfig {
                field: "jail".into(),
                reason: format!("no jail called `{jail}`"),
            });
        }
        let mut matcher = Some(matcher);
        let mut problems = Vec::new();
        self.note_problems(jail, source, &mut problems);
        let mut cut = source.cut_lines();
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            loop {
                let batch = source.poll_batch().await?;
                self.note_problems(jail, source, &mut problems);
                let cut_now = source.cut_lines();
                self.metrics()
                    .jail(jail)
                    .add_cut_lines(cut_now.saturating_sub(cut));
                cut = cut_now;
                if batch.is_empty() {
                    break;
                }
                let Some(mut m) = matcher.take() else {
                    // Only a panic while matching (passed on) leaves no matcher.
                    return Ok(());
                };
                let (m, outcomes, undecided) = blocking(move || {
                    let before = m.undecided_lines();
                    let outcomes = match &batch {
                        LogBatch::Lines(lines) => m.match_lines(lines),
                        LogBatch::Block(block) => m.match_block(block),
                    };
                    drop(batch);
                    let undecided = m.undecided_lines().saturating_sub(before);
                    (m, outcomes, undecided)
                })
                .await;
                matcher = Some(m);
                self.count_undecided(jail, undecided);
                // Sink failures are queued and reported by the engine: reading goes on.
                match self.feed_outcomes(jail, outcomes).await {
                    Ok(_) | Err(Error::Sink { .. } | Error::Spawn { .. }) => {}
                    Err(e) => return Err(e),
                }
                if let Some(state) = self.state().cloned() {
                    let checkpoint = source.checkpoint();
                    if !checkpoint.is_empty() {
                        blocking(move || state.set_positions(&checkpoint)).await?;
                    }
                }
            }
            if source.is_finished() {
                return Ok(());
            }
        }
    }

    /// Sets the jail's `unreadable_logs` to the source's problems and logs what changed.
    fn note_problems(
        &self,
        jail: &str,
        source: &dyn LogSource,
        known: &mut Vec<crate::source::SourceProblem>,
    ) {
        let now = source.problems();
        if now == *known {
            return;
        }
        for problem in now.iter().filter(|p| !known.contains(p)) {
            tracing::warn!(jail, "log {problem}");
        }
        for problem in known.iter().filter(|p| !now.contains(p)) {
            tracing::info!(jail, log = %problem.input, "log can be read now");
        }
        self.metrics()
            .jail(jail)
            .set_unreadable_logs(now.len() as u64);
        *known = now;
    }
}
