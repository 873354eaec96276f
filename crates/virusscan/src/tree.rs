//! Scanning a directory tree: one walker thread lists directories relative to their open
//! descriptors (`openat`/`fstatat` with `O_NOFOLLOW`, so no symbolic link is ever followed and
//! nothing outside the tree is reached, and loops cannot form), skips files the cache knows
//! clean, and hands open files through a bounded queue to at most `concurrency` scans at once.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::cache::ScanCache;
use crate::error::{Error, Result};
use crate::fsutil::{self, FileIdentity, OPEN_FILE};
use crate::scanner::{Scanner, Verdict};

/// Why a directory entry was not scanned (none of these is a finding).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A symbolic link: never followed.
    Symlink,
    /// A FIFO, socket or device node.
    Special,
    /// A directory on another file system, with one-file-system set.
    OtherFileSystem,
    /// The entry disappeared between listing and opening.
    Vanished,
}

/// What became of one file.
#[non_exhaustive]
#[derive(Debug)]
pub enum Outcome {
    /// Scanned: clean.
    Clean,
    /// Not scanned: the cache knows this exact file as clean under the current signatures.
    Unchanged,
    /// Scanned: a signature matched.
    Infected {
        /// The signature's name.
        signature: String,
    },
    /// Too large for the scanner's limits; not (fully) scanned.
    TooLarge {
        /// The scanner's explanation.
        reason: String,
    },
    /// Could not be scanned (unreadable, scanner error, ...). Not clean.
    Failed(Error),
    /// Not a file to scan.
    Skipped(SkipReason),
}

/// One file's result, as the tree scan reports it.
#[derive(Debug)]
#[non_exhaustive]
pub struct FileReport {
    /// The file's path (root joined with the names found; may hold any bytes but NUL).
    pub path: PathBuf,
    /// Its identity when it was opened (`None` for skipped entries and some failures).
    pub identity: Option<FileIdentity>,
    /// What happened.
    pub outcome: Outcome,
    /// The file changed while it was scanned: the verdict is for the content clamd read, and
    /// the file is not cached, so the next scan looks at it again.
    pub changed_during_scan: bool,
}

/// Counts for a whole tree.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreeSummary {
    /// Files sent to the scanner.
    pub scanned: u64,
    /// Files skipped as unchanged and clean.
    pub unchanged: u64,
    /// Scanned and clean.
    pub clean: u64,
    /// Infected.
    pub infected: u64,
    /// Too large to scan.
    pub too_large: u64,
    /// Failed (errors).
    pub failed: u64,
    /// Skipped entries (links, special files, other file systems, vanished).
    pub skipped: u64,
    /// Files that changed while scanned.
    pub changed_during_scan: u64,
    /// Bytes of the files sent to the scanner.
    pub bytes_scanned: u64,
}

impl TreeSummary {
    /// True when every file was clean (scanned or unchanged) and nothing failed.
    pub fn all_clean(&self) -> bool {
        self.infected == 0 && self.too_large == 0 && self.failed == 0
    }

    /// Adds another tree's counts to these.
    pub fn add(&mut self, other: &TreeSummary) {
        self.scanned += other.scanned;
        self.unchanged += other.unchanged;
        self.clean += other.clean;
        self.infected += other.infected;
        self.too_large += other.too_large;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.changed_during_scan += other.changed_during_scan;
        self.bytes_scanned += other.bytes_scanned;
    }

    fn count(&mut self, report: &FileReport) {
        match report.outcome {
            Outcome::Clean => self.clean += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Infected { .. } => self.infected += 1,
            Outcome::TooLarge { .. } => self.too_large += 1,
            Outcome::Failed(_) => self.failed += 1,
            Outcome::Skipped(_) => self.skipped += 1,
        }
        if report.changed_during_scan {
            self.changed_during_scan += 1;
        }
    }
}

/// Builds a [`TreeScanner`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TreeScannerBuilder {
    scanner: Arc<dyn Scanner>,
    concurrency: usize,
    one_file_system: bool,
    max_depth: usize,
}

impl TreeScannerBuilder {
    /// At most this many files scanned at once (default 4; match the scanner's connections).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Do not descend into directories on another file system than the root (default false).
    pub fn with_one_file_system(mut self, yes: bool) -> Self {
        self.one_file_system = yes;
        self
    }

    /// Directories deeper than this are reported as failed, not descended (default 256; each
    /// level holds one open descriptor).
    pub fn with_max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<TreeScanner> {
        if self.concurrency == 0 || self.concurrency > 256 {
            return Err(Error::InvalidConfig {
                field: "concurrency",
                reason: format!("{} is not within 1..=256", self.concurrency),
            });
        }
        if self.max_depth == 0 || self.max_depth > 4096 {
            return Err(Error::InvalidConfig {
                field: "max_depth",
                reason: format!("{} is not within 1..=4096", self.max_depth),
            });
        }
        Ok(TreeScanner { config: self })
    }
}

/// Scans directory trees with a [`Scanner`], in parallel and incrementally.
#[derive(Debug, Clone)]
pub struct TreeScanner {
    config: TreeScannerBuilder,
}

/// What the walker sends to the scans.
enum Item {
    Scan {
        path: PathBuf,
        file: File,
        identity: FileIdentity,
    },
    Done(FileReport),
}

impl TreeScanner {
    /// A builder scanning with `scanner`.
    pub fn builder(scanner: Arc<dyn Scanner>) -> TreeScannerBuilder {
        TreeScannerBuilder {
            scanner,
            concurrency: 4,
            one_file_system: false,
            max_depth: 256,
        }
    }

    /// Scans every regular file under `root` (a directory, not a symbolic link), calling
    /// `on_file` with each file's report as it completes.
    ///
    /// With `cache`, files it knows clean under the scanner's current signatures are skipped;
    /// the returned cache holds every file of this tree now known clean (pass it to the next
    /// scan, or [`ScanCache::save`] it).
    pub async fn scan(
        &self,
        root: &Path,
        cache: Option<ScanCache>,
        mut on_file: impl FnMut(&FileReport) + Send,
    ) -> Result<(TreeSummary, Option<ScanCache>)> {
        let scanner = self.config.scanner.clone();
        let (old, mut fresh) = match cache {
            Some(cache) => {
                let version = scanner.signature_version().await?;
                let old = cache.for_signatures(&version);
                (Some(Arc::new(old)), Some(ScanCache::new(version)))
            }
            None => (None, None),
        };
        let root_fd = fsutil::open_dir(root)
            .map_err(|e| Error::io(root, "opening the tree's root directory", e))?;
        let conc = self.config.concurrency;
        // Items go in batches: one wake-up of this task per batch, not per file (per file, the
        // cross-thread wake-ups cost more CPU than the rest of the client's work). At most
        // (2 queued + 1 filling + 1 being handled) batches of open files exist at once.
        let (tx, mut rx) = mpsc::channel(2);
        let walker = Walker {
            one_file_system: self.config.one_file_system,
            max_depth: self.config.max_depth,
            cache: old,
            tx,
            batch: std::cell::RefCell::new(Vec::with_capacity(BATCH)),
        };
        let root_path = root.to_path_buf();
        let walk = tokio::task::spawn_blocking(move || walker.run(root_fd, root_path));

        let mut summary = TreeSummary::default();
        let mut running = JoinSet::new();
        let mut finish =
            |report: FileReport, summary: &mut TreeSummary, fresh: &mut Option<ScanCache>| {
                if let (Some(cache), Some(id)) = (fresh.as_mut(), report.identity.as_ref())
                    && matches!(report.outcome, Outcome::Clean | Outcome::Unchanged)
                    && !report.changed_during_scan
                {
                    cache.insert_clean(id);
                }
                summary.count(&report);
                on_file(&report);
            };
        while let Some(batch) = rx.recv().await {
            for item in batch {
                match item {
                    Item::Done(report) => finish(report, &mut summary, &mut fresh),
                    Item::Scan {
                        path,
                        file,
                        identity,
                    } => {
                        while running.len() >= conc {
                            if let Some(done) = running.join_next().await {
                                finish(joined(done), &mut summary, &mut fresh);
                            }
                        }
                        summary.scanned += 1;
                        summary.bytes_scanned += identity.size;
                        let scanner = scanner.clone();
                        running
                            .spawn(async move { scan_one(&*scanner, path, file, identity).await });
                    }
                }
            }
        }
        while let Some(done) = running.join_next().await {
            finish(joined(done), &mut summary, &mut fresh);
        }
        walk.await
            .map_err(|e| Error::io(root, "walking the tree", std::io::Error::other(e)))?;
        Ok((summary, fresh))
    }
}

fn joined(done: std::result::Result<FileReport, tokio::task::JoinError>) -> FileReport {
    done.unwrap_or_else(|e| FileReport {
        path: PathBuf::new(),
        identity: None,
        outcome: Outcome::Failed(Error::Source(std::io::Error::other(e))),
        changed_during_scan: false,
    })
}

pub(crate) async fn scan_one(
    scanner: &dyn Scanner,
    path: PathBuf,
    file: File,
    identity: FileIdentity,
) -> FileReport {
    let verdict = scanner.scan_file_with_identity(&file, &identity).await;
    let after = FileIdentity::of(&file).ok();
    let changed_during_scan = after != Some(identity);
    let outcome = match verdict {
        Ok(Verdict::Clean) => Outcome::Clean,
        Ok(Verdict::Infected { signature }) => Outcome::Infected { signature },
        Ok(Verdict::TooLarge { reason }) => Outcome::TooLarge { reason },
        Err(e) => Outcome::Failed(e),
    };
    FileReport {
        path,
        identity: Some(identity),
        outcome,
        changed_during_scan,
    }
}

struct Walker {
    one_file_system: bool,
    max_depth: usize,
    cache: Option<Arc<ScanCache>>,
    tx: mpsc::Sender<Vec<Item>>,
    batch: std::cell::RefCell<Vec<Item>>,
}

/// Items per batch sent from the walker.
const BATCH: usize = 32;

struct Level {
    dir: Dir,
    path: PathBuf,
}

impl Walker {
    fn report(&self, path: PathBuf, outcome: Outcome, identity: Option<FileIdentity>) -> bool {
        self.send(Item::Done(FileReport {
            path,
            identity,
            outcome,
            changed_during_scan: false,
        }))
    }

    /// False once the receiving side is gone.
    fn send(&self, item: Item) -> bool {
        let full = {
            let mut batch = self.batch.borrow_mut();
            batch.push(item);
            batch.len() >= BATCH
        };
        !full || self.flush()
    }

    fn flush(&self) -> bool {
        let batch = std::mem::take(&mut *self.batch.borrow_mut());
        batch.is_empty() || self.tx.blocking_send(batch).is_ok()
    }

    fn failed(&self, path: PathBuf, what: &'static str, errno: Errno) -> bool {
        let error = Error::io(&path, what, errno.into());
        self.report(path, Outcome::Failed(error), None)
    }

    fn run(self, root_fd: std::os::fd::OwnedFd, root: PathBuf) {
        self.walk(root_fd, root);
        self.flush();
    }

    fn walk(&self, root_fd: std::os::fd::OwnedFd, root: PathBuf) {
        let root_dev = match rustix::fs::fstat(&root_fd) {
            Ok(st) => st.st_dev,
            Err(e) => {
                self.failed(root, "stat", e);
                return;
            }
        };
        let dir = match Dir::new(root_fd) {
            Ok(dir) => dir,
            Err(e) => {
                self.failed(root, "listing", e);
                return;
            }
        };
        let mut stack = vec![Level { dir, path: root }];
        loop {
            let depth = stack.len();
            let Some(level) = stack.last_mut() else { break };
            let entry = match level.dir.read() {
                None => {
                    stack.pop();
                    continue;
                }
                Some(Err(e)) => {
                    let path = level.path.clone();
                    stack.pop();
                    if !self.failed(path, "listing", e) {
                        return;
                    }
                    continue;
                }
                Some(Ok(entry)) => entry,
            };
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let path = level.path.join(OsStr::from_bytes(name.to_bytes()));
            let Ok(dirfd) = level.dir.fd() else {
                return;
            };
            let listed_type = entry.file_type();
            let keep_going = match self.visit(dirfd, name, listed_type, path, root_dev, depth) {
                Visit::Descend(level) => {
                    stack.push(level);
                    true
                }
                Visit::Sent(ok) => ok,
            };
            if !keep_going {
                return;
            }
        }
    }

    fn visit(
        &self,
        dirfd: std::os::fd::BorrowedFd<'_>,
        name: &CStr,
        listed_type: FileType,
        path: PathBuf,
        root_dev: u64,
        depth: usize,
    ) -> Visit {
        // The listing's type spares a stat where it settles the matter: links and special
        // files are never opened, and with no cache to consult a regular file is opened
        // straight away (O_NOFOLLOW, type checked on the open descriptor).
        match listed_type {
            FileType::Symlink => {
                return Visit::Sent(self.report(path, Outcome::Skipped(SkipReason::Symlink), None));
            }
            FileType::Fifo
            | FileType::Socket
            | FileType::CharacterDevice
            | FileType::BlockDevice => {
                return Visit::Sent(self.report(path, Outcome::Skipped(SkipReason::Special), None));
            }
            FileType::RegularFile if self.cache.as_ref().is_none_or(|c| c.is_empty()) => {
                return Visit::Sent(self.open_file(dirfd, name, path));
            }
            _ => {}
        }
        let st = match rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => {
                return Visit::Sent(self.report(
                    path,
                    Outcome::Skipped(SkipReason::Vanished),
                    None,
                ));
            }
            Err(e) => return Visit::Sent(self.failed(path, "stat", e)),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                if self.one_file_system && st.st_dev != root_dev {
                    return Visit::Sent(self.report(
                        path,
                        Outcome::Skipped(SkipReason::OtherFileSystem),
                        None,
                    ));
                }
                if depth >= self.max_depth {
                    let error = Error::InvalidPath {
                        path: path.clone(),
                        reason: format!("deeper than {} directories", self.max_depth),
                    };
                    return Visit::Sent(self.report(path, Outcome::Failed(error), None));
                }
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
                match rustix::fs::openat(dirfd, name, flags, Mode::empty()).and_then(Dir::new) {
                    Ok(dir) => Visit::Descend(Level { dir, path }),
                    Err(Errno::NOENT) => {
                        Visit::Sent(self.report(path, Outcome::Skipped(SkipReason::Vanished), None))
                    }
                    // Replaced by a symlink since the stat: not followed.
                    Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                        Visit::Sent(self.report(path, Outcome::Skipped(SkipReason::Symlink), None))
                    }
                    Err(e) => Visit::Sent(self.failed(path, "opening directory", e)),
                }
            }
            FileType::Symlink => {
                Visit::Sent(self.report(path, Outcome::Skipped(SkipReason::Symlink), None))
            }
            FileType::RegularFile => Visit::Sent(self.file(dirfd, name, path, &st)),
            _ => Visit::Sent(self.report(path, Outcome::Skipped(SkipReason::Special), None)),
        }
    }

    fn file(
        &self,
        dirfd: std::os::fd::BorrowedFd<'_>,
        name: &CStr,
        path: PathBuf,
        st: &rustix::fs::Stat,
    ) -> bool {
        let listed = FileIdentity::from_stat(st);
        if self.cache.as_ref().is_some_and(|c| c.is_clean(&listed)) {
            return self.report(path, Outcome::Unchanged, Some(listed));
        }
        self.open_file(dirfd, name, path)
    }

    /// Opens a file to scan; false once the receiver is gone.
    fn open_file(&self, dirfd: std::os::fd::BorrowedFd<'_>, name: &CStr, path: PathBuf) -> bool {
        let fd = match rustix::fs::openat(dirfd, name, OPEN_FILE, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                return self.report(path, Outcome::Skipped(SkipReason::Vanished), None);
            }
            Err(Errno::LOOP) => {
                return self.report(path, Outcome::Skipped(SkipReason::Symlink), None);
            }
            Err(e) => return self.failed(path, "opening", e),
        };
        let st = match rustix::fs::fstat(&fd) {
            Ok(st) => st,
            Err(e) => return self.failed(path, "stat", e),
        };
        if !fsutil::is_regular(&st) {
            return self.report(path, Outcome::Skipped(SkipReason::Special), None);
        }
        let identity = FileIdentity::from_stat(&st);
        // Replaced or rewritten since the listing: the open file is what gets scanned.
        if self.cache.as_ref().is_some_and(|c| c.is_clean(&identity)) {
            return self.report(path, Outcome::Unchanged, Some(identity));
        }
        self.send(Item::Scan {
            path,
            file: File::from(fd),
            identity,
        })
    }
}

enum Visit {
    Descend(Level),
    /// A report or job was sent; false if the receiver is gone.
    Sent(bool),
}
