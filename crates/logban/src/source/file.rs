//! Following log files: appends, rename rotation, copytruncate, saved positions, globs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{LogBatch, LogLine, LogSource, SourceProblem};
use crate::{Error, Result};

/// Bytes one poll of one file reads at most.
const MAX_POLL_BYTES: u64 = 8 << 20;

/// Bytes read at a time; a line that ends within one read is shorter than [`MAX_LINE`].
const READ_BYTES: usize = 256 * 1024;
const _: () = assert!(READ_BYTES <= MAX_LINE);

/// Where a file is in a followed log: which file (inode) and how far it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilePosition {
    /// Inode of the file read.
    pub inode: u64,
    /// Bytes consumed (complete lines only).
    pub offset: u64,
}

/// Where to start reading a file that is opened for the first time.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Only lines appended from now on (a daemon starting without saved state).
    End,
    /// The whole file.
    Beginning,
    /// A saved position; if the file was rotated since (other inode, or shorter), its start.
    Saved(FilePosition),
}

/// Longest line kept; longer lines are cut (the rest of the line is dropped).
const MAX_LINE: usize = 1 << 20;

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Follows one log file.
#[derive(Debug)]
pub struct FileTail {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    offset: u64,
    /// The incomplete last line (at most [`MAX_LINE`] bytes of it).
    partial: Vec<u8>,
    /// Bytes of the incomplete last line read so far (including any cut off).
    partial_raw: u64,
    /// Lines longer than [`MAX_LINE`] read so far (each cut to its first MiB, and logged).
    cut: u64,
}

impl FileTail {
    /// Opens `path` (which may not exist yet: it is picked up when it appears).
    pub fn open(path: impl Into<PathBuf>, start: StartAt) -> Result<Self> {
        let path = path.into();
        let mut tail = Self {
            path,
            file: None,
            inode: 0,
            offset: 0,
            partial: Vec::new(),
            partial_raw: 0,
            cut: 0,
        };
        match File::open(&tail.path) {
            Ok(file) => {
                let meta = file.metadata().map_err(|e| io_err(&tail.path, e))?;
                tail.inode = meta.ino();
                tail.offset = match start {
                    StartAt::End => meta.len(),
                    StartAt::Beginning => 0,
                    StartAt::Saved(p) if p.inode == meta.ino() && p.offset <= meta.len() => {
                        p.offset
                    }
                    StartAt::Saved(_) => 0,
                };
                tail.file = Some(file);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&tail.path, e)),
        }
        Ok(tail)
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines longer than 1 MiB read so far: each was cut to its first MiB (and a warning
    /// logged), so a failure beyond that point of such a line is not seen.
    pub fn cut_lines(&self) -> u64 {
        self.cut
    }

    /// Position to save (complete lines consumed so far).
    pub fn position(&self) -> FilePosition {
        FilePosition {
            inode: self.inode,
            offset: self.offset,
        }
    }

    /// Complete lines appended since the last poll, about 8 MiB of them at most (a large
    /// backlog comes over several polls, so memory stays bounded). Follows rename rotation (the old file is
    /// read to its end first) and copytruncate (a file shorter than the position restarts at 0).
    pub fn poll(&mut self) -> Result<Vec<LogLine>> {
        Ok(LogBatch::Block(self.poll_block()?).into_lines())
    }

    /// Like [`poll`](Self::poll), the lines as one block (each ending in `\n`, see
    /// [`LogBatch::Block`]).
    pub fn poll_block(&mut self) -> Result<Vec<u8>> {
        let mut block = Vec::new();
        let current = match std::fs::metadata(&self.path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&self.path, e)),
        };
        let rotated = match (&self.file, &current) {
            (Some(_), Some(m)) => m.ino() != self.inode,
            (None, Some(_)) => true,
            _ => false,
        };
        if rotated {
            // Finish what was written to the old file before its rename, then switch.
            if self.file.is_some() {
                self.read_available(&mut block, u64::MAX)?;
                self.flush_partial(&mut block);
            }
            if let Some(m) = &current {
                self.file = Some(File::open(&self.path).map_err(|e| io_err(&self.path, e))?);
                self.inode = m.ino();
                self.offset = 0;
                self.partial.clear();
                self.partial_raw = 0;
            }
        } else if let (Some(file), Some(_)) = (&self.file, &current) {
            let len = file.metadata().map_err(|e| io_err(&self.path, e))?.len();
            if len < self.offset {
                // copytruncate: the same file was emptied and is written from the start again.
                self.offset = 0;
                self.partial.clear();
                self.partial_raw = 0;
            }
        }
        if self.file.is_some() {
            self.read_available(&mut block, MAX_POLL_BYTES)?;
        }
        Ok(block)
    }

    /// Reads complete lines up to about `limit` bytes (the rest waits for the next poll) onto
    /// `block`.
    fn read_available(&mut self, block: &mut Vec<u8>, limit: u64) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(self.offset + self.partial_raw))
            .map_err(|e| io_err(&self.path, e))?;
        let mut buf = vec![0u8; READ_BYTES];
        let mut read = 0u64;
        while read < limit {
            let n = file.read(&mut buf).map_err(|e| io_err(&self.path, e))?;
            if n == 0 {
                break;
            }
            read += n as u64;
            let mut rest = &buf[..n];
            if self.partial_raw > 0 {
                // The end of a line begun in an earlier read.
                let Some(i) = memchr::memchr(b'\n', rest) else {
                    keep(&mut self.partial, &mut self.partial_raw, rest);
                    continue;
                };
                keep(&mut self.partial, &mut self.partial_raw, &rest[..i]);
                if self.partial_raw > MAX_LINE as u64 {
                    // Reported, never silent: a filter sees only the line's first MiB.
                    self.cut += 1;
                    tracing::warn!(
                        path = %self.path.display(),
                        bytes = self.partial_raw,
                        "log line longer than 1 MiB: only its first MiB is matched"
                    );
                }
                self.offset += self.partial_raw + 1;
                self.partial_raw = 0;
                block.extend_from_slice(&self.partial);
                block.push(b'\n');
                self.partial.clear();
                rest = &rest[i + 1..];
            }
            // The lines that end in this read are shorter than it (never cut): one copy.
            if let Some(i) = memchr::memrchr(b'\n', rest) {
                block.extend_from_slice(&rest[..=i]);
                self.offset += i as u64 + 1;
                rest = &rest[i + 1..];
            }
            keep(&mut self.partial, &mut self.partial_raw, rest);
        }
        Ok(())
    }

    fn flush_partial(&mut self, block: &mut Vec<u8>) {
        self.partial_raw = 0;
        if !self.partial.is_empty() {
            block.extend_from_slice(&self.partial);
            block.push(b'\n');
            self.partial.clear();
        }
    }
}

/// Appends to the line being assembled, keeping at most [`MAX_LINE`] bytes of it.
fn keep(partial: &mut Vec<u8>, raw: &mut u64, bytes: &[u8]) {
    *raw += bytes.len() as u64;
    let room = MAX_LINE.saturating_sub(partial.len());
    partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// Follows every file matching a set of paths or globs (`*`/`?` in the file name), picking up
/// files that appear later (a missing file is read from its start when it appears).
///
/// Its [`LogSource`] checkpoint is one `file:<path>` key per file (value `<inode> <offset>`);
/// [`Engine::open_files`](crate::Engine::open_files) resumes from them.
#[derive(Debug, Clone)]
pub struct FileSource {
    files: Arc<Mutex<Files>>,
}

#[derive(Debug)]
struct Files {
    patterns: Vec<PathBuf>,
    start: StartAt,
    tails: BTreeMap<PathBuf, FileTail>,
    /// What [`Files::unreadable`] found at the last poll.
    problems: Vec<SourceProblem>,
}

impl FileSource {
    /// Follows `patterns`; files present now start at `start`, files that appear later at
    /// their beginning.
    pub fn new(
        patterns: impl IntoIterator<Item = impl Into<PathBuf>>,
        start: StartAt,
    ) -> Result<Self> {
        let mut files = Files {
            patterns: patterns.into_iter().map(Into::into).collect(),
            start,
            tails: BTreeMap::new(),
            problems: Vec::new(),
        };
        for path in files.expand()? {
            let tail = FileTail::open(&path, start)?;
            files.tails.insert(path, tail);
        }
        files.problems = files.unreadable();
        Ok(Self {
            files: Arc::new(Mutex::new(files)),
        })
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resumes a file at a saved position (call before the first poll).
    pub fn resume(&self, path: &Path, position: FilePosition) -> Result<()> {
        let tail = FileTail::open(path, StartAt::Saved(position))?;
        self.files().tails.insert(path.to_path_buf(), tail);
        Ok(())
    }

    /// Positions of every followed file, to save.
    pub fn positions(&self) -> Vec<(PathBuf, FilePosition)> {
        self.files()
            .tails
            .iter()
            .map(|(p, t)| (p.clone(), t.position()))
            .collect()
    }

    /// New complete lines from every file (about 8 MiB per file at most; poll again while
    /// lines come), read on the calling thread: [`LogSource::poll`] runs this on a blocking
    /// thread.
    pub fn poll_blocking(&self) -> Result<Vec<LogLine>> {
        Ok(LogBatch::Block(self.files().poll()?).into_lines())
    }

    /// All files' new lines as one block of lines (see [`poll_blocking`](Self::poll_blocking)).
    fn poll_block_blocking(&self) -> Result<Vec<u8>> {
        self.files().poll()
    }
}

/// The state key of a followed file's position.
pub(crate) fn position_key(path: &Path) -> String {
    format!("file:{}", path.display())
}

/// A position as saved: `<inode> <offset>`.
pub(crate) fn encode_position(position: FilePosition) -> Vec<u8> {
    format!("{} {}", position.inode, position.offset).into_bytes()
}

/// A saved position, `None` for anything malformed.
pub(crate) fn decode_position(bytes: &[u8]) -> Option<FilePosition> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (inode, offset) = text.split_once(' ')?;
    Some(FilePosition {
        inode: inode.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

#[async_trait::async_trait]
impl LogSource for FileSource {
    async fn poll(&self) -> Result<Vec<LogLine>> {
        Ok(self.poll_batch().await?.into_lines())
    }

    async fn poll_batch(&self) -> Result<LogBatch> {
        let source = self.clone();
        let block = crate::follow::blocking(move || source.poll_block_blocking()).await?;
        Ok(LogBatch::Block(block))
    }

    fn checkpoint(&self) -> Vec<(String, Vec<u8>)> {
        self.positions()
            .into_iter()
            .map(|(path, position)| (position_key(&path), encode_position(position)))
            .collect()
    }

    fn problems(&self) -> Vec<SourceProblem> {
        self.files().problems.clone()
    }

    /// Lines longer than 1 MiB read so far from every file (see [`FileTail::cut_lines`]).
    fn cut_lines(&self) -> u64 {
        self.files().tails.values().map(FileTail::cut_lines).sum()
    }
}

impl Files {
    /// The configured paths that give no log file to read now, with why: a path that does not
    /// exist (yet: it is read from its start when it appears), a directory, or a glob that
    /// matches no file.
    fn unreadable(&self) -> Vec<SourceProblem> {
        self.patterns
            .iter()
            .filter_map(|pattern| {
                let name = pattern
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let why = if name.contains(['*', '?']) {
                    let parent = pattern.parent().unwrap_or(Path::new("."));
                    let matched = self.tails.keys().any(|p| {
                        p.parent() == Some(parent)
                            && p.file_name()
                                .is_some_and(|f| glob_match(&name, &f.to_string_lossy()))
                    });
                    (!matched).then_some("matches no file (yet)")
                } else if pattern.is_dir() {
                    Some("is a directory, not a log file")
                } else if !pattern.exists() {
                    Some("does not exist (yet); it is read when it appears")
                } else {
                    None
                };
                why.map(|why| SourceProblem {
                    input: pattern.display().to_string(),
                    why: why.to_owned(),
                })
            })
            .collect()
    }

    fn poll(&mut self) -> Result<Vec<u8>> {
        for path in self.expand()? {
            if !self.tails.contains_key(&path) {
                let start = if self.start == StartAt::End {
                    StartAt::Beginning
                } else {
                    self.start
                };
                let tail = FileTail::open(&path, start)?;
                self.tails.insert(path, tail);
            }
        }
        let mut out = Vec::new();
        for tail in self.tails.values_mut() {
            out.extend(tail.poll_block()?);
        }
        self.problems = self.unreadable();
        Ok(out)
    }

    fn expand(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for pattern in &self.patterns {
            let name = pattern
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !name.contains(['*', '?']) {
                // A directory is never read as a log (`unreadable` reports it).
                if !pattern.is_dir() {
                    out.push(pattern.clone());
                }
                continue;
            }
            let dir = pattern.parent().unwrap_or(Path::new("."));
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(dir, e)),
            };
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                if glob_match(&name, &file) && entry.path().is_file() {
                    out.push(entry.path());
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// `*` and `?` wildcards.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
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
        assert_eq!(decode_position(&encode_position(p)), Some(p));
        for bad in [&b""[..], b"12", b"a b", b"1 -2", &[0xff, 0x20, 0x31]] {
            assert_eq!(decode_position(bad), None);
        }
    }
}
