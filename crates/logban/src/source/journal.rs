//! The systemd journal, read through `journalctl -o json` (no libsystemd binding needed).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};

use super::{LogLine, LogSource};
use crate::{Error, Result};

/// What to read from the journal.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// fail2ban-style matches, one alternative per entry (`_SYSTEMD_UNIT=sshd.service + _COMM=sshd`).
    pub matches: Vec<String>,
    /// Resume after this cursor (saved from [`JournalSource::cursor`]); `None` starts at the end.
    pub after_cursor: Option<String>,
    /// Read these journal files instead of the system journal (`journalctl --file`).
    pub files: Vec<PathBuf>,
    /// Keep following (`-f`); off for reading a finished journal file.
    pub follow: bool,
    /// The `journalctl` program (default `journalctl` on `PATH`).
    pub program: Option<PathBuf>,
    /// Entries read ahead of [`LogSource::poll`] at most; when the queue is full the reader
    /// waits (and `journalctl` with it: the journal keeps the entries), so memory stays bounded
    /// however fast the journal grows. Default [`JournalConfig::DEFAULT_QUEUE`].
    pub queue: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            matches: Vec::new(),
            after_cursor: None,
            files: Vec::new(),
            follow: false,
            program: None,
            queue: Self::DEFAULT_QUEUE,
        }
    }
}

impl JournalConfig {
    /// Entries queued between the reader thread and [`LogSource::poll`] by default.
    pub const DEFAULT_QUEUE: usize = 16_384;

    /// `journalctl` arguments for this configuration (argv, never a shell).
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "-o".to_string(),
            "json".to_string(),
            "--no-pager".to_string(),
        ];
        if self.follow {
            args.push("-f".into());
        }
        for f in &self.files {
            args.push(format!("--file={}", f.display()));
        }
        match &self.after_cursor {
            Some(c) => args.push(format!("--after-cursor={c}")),
            // Not `-n 0`: systemd 252's `journalctl -f -n 0` with matches, started before any
            // entry matches, drops all but the last entry of the first burst that does
            // (tests/source_conformance.rs found it); `--since=now` loses none.
            None if self.follow => args.push("--since=now".into()),
            None => {}
        }
        for (i, alt) in self.matches.iter().enumerate() {
            if i > 0 {
                args.push("+".into());
            }
            args.extend(alt.split_whitespace().map(str::to_string));
        }
        args
    }
}

/// One journal entry, formatted the way fail2ban's systemd backend formats it.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    /// `HOSTNAME IDENTIFIER[PID]: MESSAGE`.
    pub line: String,
    /// `__REALTIME_TIMESTAMP`, Unix seconds.
    pub time: f64,
    /// `__CURSOR`, to resume after this entry.
    pub cursor: String,
}

impl JournalEntry {
    /// Parses one line of `journalctl -o json` output; `None` for anything malformed.
    pub fn parse(json: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        let field = |k: &str| -> Option<String> {
            match v.get(k)? {
                serde_json::Value::String(s) => Some(s.clone()),
                // Binary-safe fields come as byte arrays.
                serde_json::Value::Array(a) => {
                    let bytes: Vec<u8> = a
                        .iter()
                        .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                        .collect();
                    Some(String::from_utf8_lossy(&bytes).into_owned())
                }
                other => Some(other.to_string()),
            }
        };
        let message = field("MESSAGE")?;
        let time = field("__REALTIME_TIMESTAMP")?.parse::<f64>().ok()? / 1_000_000.0;
        let cursor = field("__CURSOR")?;
        let ident = field("SYSLOG_IDENTIFIER")
            .or_else(|| field("_COMM"))
            .unwrap_or_default();
        let mut line = String::new();
        if let Some(host) = field("_HOSTNAME") {
            line.push_str(&host);
            line.push(' ');
        }
        line.push_str(&ident);
        if let Some(pid) = field("SYSLOG_PID").or_else(|| field("_PID")) {
            line.push_str(&format!("[{pid}]"));
        }
        line.push_str(": ");
        line.push_str(&message);
        Some(Self { line, time, cursor })
    }
}

/// Reads the journal through a `journalctl` child process.
///
/// Its [`LogSource`] checkpoint is the cursor of the last entry polled, under the key set by
/// [`with_checkpoint_key`](Self::with_checkpoint_key) (default `journal`;
/// [`Engine::open_journal`](crate::Engine::open_journal) uses `journal:<jail>` and resumes
/// from it). A `journalctl` that exits with an error is reported by the next poll.
#[derive(Debug)]
pub struct JournalSource {
    state: Mutex<Reader>,
    program: String,
    key: String,
}

#[derive(Debug)]
struct Reader {
    child: Child,
    rx: Receiver<String>,
    cursor: Option<String>,
    finished: bool,
    /// Entries one poll returns at most (the queue's size).
    batch: usize,
}

impl JournalSource {
    /// Starts `journalctl` with `config`.
    pub fn spawn(config: &JournalConfig) -> Result<Self> {
        let program = config
            .program
            .clone()
            .unwrap_or_else(|| PathBuf::from("journalctl"));
        let mut child = Command::new(&program)
            .args(config.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| Error::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        let stdout = child.stdout.take().ok_or_else(|| Error::Spawn {
            program: program.display().to_string(),
            source: std::io::Error::other("no stdout pipe"),
        })?;
        let (tx, rx) = sync_channel(config.queue.max(1));
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            state: Mutex::new(Reader {
                child,
                rx,
                cursor: config.after_cursor.clone(),
                finished: false,
                batch: config.queue.max(1),
            }),
            program: program.display().to_string(),
            key: "journal".into(),
        })
    }

    /// Saves the cursor under `key` in [`LogSource::checkpoint`].
    pub fn with_checkpoint_key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Reader> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entries printed since the last poll, with their cursors (never blocks; at most a
    /// queue's worth). When `journalctl` has exited, its failure is the error.
    pub fn poll_entries(&self) -> Result<Vec<JournalEntry>> {
        let mut reader = self.reader();
        let mut out = Vec::new();
        while out.len() < reader.batch {
            match reader.rx.try_recv() {
                Ok(json) => {
                    if let Some(e) = JournalEntry::parse(&json) {
                        reader.cursor = Some(e.cursor.clone());
                        out.push(e);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if !reader.finished {
                        reader.finished = true;
                        // Its stdout is closed: it has exited (or is about to).
                        let status = reader.child.wait().map_err(|source| Error::Spawn {
                            program: self.program.clone(),
                            source,
                        })?;
                        if !status.success() {
                            return Err(Error::LogSource {
                                log: self.program.clone(),
                                reason: format!("exited with {status}"),
                            });
                        }
                    }
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Cursor of the last entry returned, to save.
    pub fn cursor(&self) -> Option<String> {
        self.reader().cursor.clone()
    }
}

#[async_trait::async_trait]
impl LogSource for JournalSource {
    async fn poll(&self) -> Result<Vec<LogLine>> {
        Ok(self
            .poll_entries()?
            .into_iter()
            .map(|e| LogLine {
                bytes: e.line.into_bytes(),
                time: Some(e.time),
            })
            .collect())
    }

    fn checkpoint(&self) -> Vec<(String, Vec<u8>)> {
        self.cursor()
            .map(|c| (self.key.clone(), c.into_bytes()))
            .into_iter()
            .collect()
    }

    /// True once `journalctl` has exited and everything it printed was polled.
    fn is_finished(&self) -> bool {
        self.reader().finished
    }
}

impl Drop for JournalSource {
    fn drop(&mut self) {
        let reader = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = reader.child.kill();
        let _ = reader.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_are_argv_with_matches_and_cursor() {
        let cfg = JournalConfig {
            matches: vec!["_SYSTEMD_UNIT=sshd.service + _COMM=sshd".into()],
            after_cursor: Some("s=abc;i=1".into()),
            follow: true,
            ..JournalConfig::default()
        };
        assert_eq!(
            cfg.args(),
            [
                "-o",
                "json",
                "--no-pager",
                "-f",
                "--after-cursor=s=abc;i=1",
                "_SYSTEMD_UNIT=sshd.service",
                "+",
                "_COMM=sshd"
            ]
        );
    }

    #[test]
    fn following_without_a_cursor_starts_now_not_with_n_0() {
        let cfg = JournalConfig {
            follow: true,
            ..JournalConfig::default()
        };
        assert_eq!(
            cfg.args(),
            ["-o", "json", "--no-pager", "-f", "--since=now"]
        );
    }

    #[test]
    fn entries_format_like_fail2ban() {
        let json = r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1124013600500000","_HOSTNAME":"srv","SYSLOG_IDENTIFIER":"sshd","_PID":"42","MESSAGE":[70,97,105,108]}"#;
        let e = JournalEntry::parse(json).expect("parses");
        assert_eq!(e.line, "srv sshd[42]: Fail");
        assert!((e.time - 1_124_013_600.5).abs() < 1e-6);
        assert_eq!(e.cursor, "s=1;i=2");
        assert!(JournalEntry::parse("not json").is_none());
    }
}
