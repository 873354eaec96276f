//! Watch mode: inotify on upload directories (recursively); a file is reported once it has
//! stopped changing for the settle time, so an upload written in many pieces is scanned once.
//!
//! One thread reads inotify and keeps the files with recent events (bounded: past
//! `max_pending` it gives up on them and asks for a rescan instead, as it does when the
//! kernel's queue overflows); settled files go through a bounded channel to
//! [`Watcher::next`]. [`Watcher::run`] scans them, skipping a file whose identity (inode,
//! size, mtime, ctime) it already scanned, and rescans the trees with a scan cache after an
//! overflow.
//!
//! ```no_run
//! # async fn demo(scanner: std::sync::Arc<dyn virusscan::Scanner>) -> virusscan::Result<()> {
//! use std::time::Duration;
//! let watcher = virusscan::watch::Watcher::builder(["/srv/uploads"])
//!     .with_settle(Duration::from_secs(2))
//!     .build()?;
//! let stop = watcher.stop_handle();
//! tokio::spawn(async move { tokio::signal::ctrl_c().await.ok(); stop.stop(); });
//! watcher.run(scanner, 4, |report| println!("{}: {:?}", report.path.display(), report.outcome)).await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use tokio::sync::mpsc;

use crate::cache::ScanCache;
use crate::error::{Error, Result};
use crate::fsutil::{self, FileIdentity};
use crate::scanner::Scanner;
use crate::tree::{FileReport, Outcome, TreeScanner};

/// What the watcher reports.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A file that was created, written or moved in, and then left alone for the settle time.
    Settled(PathBuf),
    /// Events were lost (kernel queue overflow, or too many files pending): the watched trees
    /// must be rescanned to catch what they were about.
    Overflow,
}

/// Builds a [`Watcher`].
#[derive(Debug, Clone)]
#[must_use]
pub struct WatcherBuilder {
    dirs: Vec<PathBuf>,
    settle: Duration,
    max_pending: usize,
    queue: usize,
}

impl WatcherBuilder {
    /// How long a file must see no event before it is reported (default 2 s).
    pub fn with_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// At most this many files waiting to settle (default 100,000); past it, an
    /// [`WatchEvent::Overflow`] replaces them.
    pub fn with_max_pending(mut self, n: usize) -> Self {
        self.max_pending = n;
        self
    }

    /// Capacity of the queue of settled files (default 256).
    pub fn with_queue(mut self, n: usize) -> Self {
        self.queue = n;
        self
    }

    /// Sets up the watches (every directory under each given one, not following symlinks) and
    /// starts the inotify thread.
    pub fn build(self) -> Result<Watcher> {
        if self.dirs.is_empty() {
            return Err(Error::InvalidConfig {
                field: "dirs",
                reason: "no directory to watch".into(),
            });
        }
        if self.max_pending == 0 || self.queue == 0 {
            return Err(Error::InvalidConfig {
                field: "max_pending/queue",
                reason: "must be more than zero".into(),
            });
        }
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
            .map_err(|e| Error::io("inotify", "initialising", e.into()))?;
        let mut state = Inotify {
            fd,
            dirs: HashMap::new(),
            pending: HashMap::new(),
            max_pending: self.max_pending,
            overflowed: false,
        };
        for dir in &self.dirs {
            let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir, "stat", e))?;
            if !meta.is_dir() {
                return Err(Error::InvalidPath {
                    path: dir.clone(),
                    reason: "not a directory".into(),
                });
            }
            state.add_tree(dir, false)?;
        }
        let (tx, rx) = mpsc::channel(self.queue);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let settle = self.settle;
        let thread = std::thread::Builder::new()
            .name("virusscan-inotify".into())
            .spawn(move || state.run(settle, &tx, &thread_stop))
            .map_err(|e| Error::io("inotify", "starting the watch thread", e))?;
        Ok(Watcher {
            rx,
            stop,
            dirs: self.dirs,
            thread: Some(thread),
        })
    }
}

/// Watches directories for uploads. Dropping it stops the thread.
#[derive(Debug)]
pub struct Watcher {
    rx: mpsc::Receiver<WatchEvent>,
    stop: Arc<AtomicBool>,
    dirs: Vec<PathBuf>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Stops a [`Watcher`] from another task.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the watcher to stop; [`Watcher::next`] then returns `None` within about 100 ms.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Watcher {
    /// A builder watching `dirs` and every directory below them.
    pub fn builder<P: Into<PathBuf>>(dirs: impl IntoIterator<Item = P>) -> WatcherBuilder {
        WatcherBuilder {
            dirs: dirs.into_iter().map(Into::into).collect(),
            settle: Duration::from_secs(2),
            max_pending: 100_000,
            queue: 256,
        }
    }

    /// A handle that stops this watcher.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// The next event, or `None` once stopped.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.rx.recv().await
    }

    /// Scans settled files with `scanner` (at most `concurrency` at once) until stopped,
    /// calling `on_file` with each report. A file is scanned once per version: events for a
    /// file whose identity was already scanned are ignored. After an overflow the watched
    /// trees are rescanned, skipping files already found clean.
    pub async fn run(
        mut self,
        scanner: Arc<dyn Scanner>,
        concurrency: usize,
        mut on_file: impl FnMut(&FileReport) + Send,
    ) -> Result<()> {
        let tree = TreeScanner::builder(scanner.clone())
            .with_concurrency(concurrency)
            .build()?;
        let version = scanner.signature_version().await?;
        let mut seen = ScanCache::new(version);
        // Identities already scanned (whatever the verdict), bounded: cleared when full.
        let mut scanned: std::collections::HashSet<(u64, u64, u64, i64, i64)> = Default::default();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let (done_tx, mut done_rx) = mpsc::channel::<FileReport>(concurrency.max(1) * 2);
        loop {
            tokio::select! {
                Some(report) = done_rx.recv() => {
                    if let (Some(id), Outcome::Clean) = (&report.identity, &report.outcome)
                        && !report.changed_during_scan { seen.insert_clean(id); }
                    on_file(&report);
                }
                event = self.rx.recv() => match event {
                    None => break,
                    Some(WatchEvent::Overflow) => {
                        for dir in self.dirs.clone() {
                            let (_, cache) = tree.scan(&dir, Some(std::mem::replace(&mut seen, ScanCache::new(""))), &mut on_file).await?;
                            seen = cache.unwrap_or_else(|| ScanCache::new(""));
                        }
                    }
                    Some(WatchEvent::Settled(path)) => {
                        // Opening can block (a slow or hung file system): off the runtime.
                        let opened = {
                            let path = path.clone();
                            tokio::task::spawn_blocking(move || {
                                let file = fsutil::open_regular(&path).ok()?;
                                let identity = FileIdentity::of(&file).ok()?;
                                Some((file, identity))
                            })
                            .await
                        };
                        // Gone or replaced by something else since: nothing to scan.
                        let Ok(Some((file, identity))) = opened else { continue };
                        let key = (identity.dev, identity.ino, identity.size, identity.mtime_ns, identity.ctime_ns);
                        if seen.is_clean(&identity) || !scanned.insert(key) {
                            continue;
                        }
                        if scanned.len() > 1_000_000 { scanned.clear(); }
                        let permit = semaphore.clone().acquire_owned().await.map_err(|_| Error::Source(std::io::Error::other("semaphore closed")))?;
                        let scanner = scanner.clone();
                        let done_tx = done_tx.clone();
                        tokio::spawn(async move {
                            let report = crate::tree::scan_one(&*scanner, path, file, identity).await;
                            let _ = done_tx.send(report).await;
                            drop(permit);
                        });
                    }
                },
            }
        }
        // Let scans in flight finish and report.
        drop(done_tx);
        while let Some(report) = done_rx.recv().await {
            on_file(&report);
        }
        Ok(())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.close();
        if let Some(thread) = self.thread.take() {
            // Drain so a blocked send can finish, then the thread sees the stop flag.
            while self.rx.try_recv().is_ok() {}
            let _ = thread.join();
        }
    }
}

/// One inotify event, as the thread acts on it.
enum Seen {
    /// A directory appeared: watch it and what is in it.
    Dir(PathBuf),
    /// A file was created, written or moved in.
    File(PathBuf),
    /// A file was deleted or moved away.
    Gone(PathBuf),
}

/// The inotify thread's state.
struct Inotify {
    fd: OwnedFd,
    dirs: HashMap<i32, PathBuf>,
    pending: HashMap<PathBuf, Instant>,
    max_pending: usize,
    overflowed: bool,
}

const DIR_EVENTS: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::ONLYDIR)
    .union(WatchFlags::DONT_FOLLOW)
    .union(WatchFlags::EXCL_UNLINK);

impl Inotify {
    /// Watches `dir` and its subdirectories; with `mark`, files found are pending (they may
    /// have been written before the watch existed).
    fn add_tree(&mut self, dir: &Path, mark: bool) -> Result<()> {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            match inotify::add_watch(&self.fd, &dir, DIR_EVENTS) {
                Ok(wd) => {
                    self.dirs.insert(wd, dir.clone());
                }
                // Vanished or replaced by a symlink/file since it was seen.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(Error::io(&dir, "adding an inotify watch", e.into())),
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(ft) = entry.file_type() else { continue };
                if ft.is_dir() {
                    stack.push(entry.path());
                } else if ft.is_file() && mark {
                    self.touch(entry.path());
                }
            }
        }
        Ok(())
    }

    fn touch(&mut self, path: PathBuf) {
        if self.pending.len() >= self.max_pending && !self.pending.contains_key(&path) {
            self.pending.clear();
            self.overflowed = true;
            return;
        }
        self.pending.insert(path, Instant::now());
    }

    fn run(mut self, settle: Duration, tx: &mpsc::Sender<WatchEvent>, stop: &AtomicBool) {
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
        let tick = Duration::from_millis(100).min(settle.max(Duration::from_millis(10)));
        while !stop.load(Ordering::Relaxed) {
            let ts = rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: tick.as_nanos() as _,
            };
            let mut fds = [rustix::event::PollFd::new(
                &self.fd,
                rustix::event::PollFlags::IN,
            )];
            let _ = rustix::event::poll(&mut fds, Some(&ts));
            // Collected first: the reader borrows the buffer while `self` is updated.
            let mut seen = Vec::new();
            {
                let mut reader = inotify::Reader::new(&self.fd, &mut buf);
                loop {
                    let event = match reader.next() {
                        Ok(event) => event,
                        Err(Errno::AGAIN | Errno::INTR) => break,
                        Err(_) => break,
                    };
                    let flags = event.events();
                    if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                        self.overflowed = true;
                        continue;
                    }
                    if flags.contains(ReadFlags::IGNORED) {
                        self.dirs.remove(&event.wd());
                        continue;
                    }
                    let (Some(dir), Some(name)) = (self.dirs.get(&event.wd()), event.file_name())
                    else {
                        continue;
                    };
                    let path = dir.join(OsStr::from_bytes(name.to_bytes()));
                    if flags.contains(ReadFlags::ISDIR) {
                        if flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                            seen.push(Seen::Dir(path));
                        }
                    } else if flags.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM) {
                        seen.push(Seen::Gone(path));
                    } else {
                        seen.push(Seen::File(path));
                    }
                }
            }
            for event in seen {
                match event {
                    Seen::Dir(path) => {
                        let _ = self.add_tree(&path, true);
                    }
                    Seen::File(path) => self.touch(path),
                    Seen::Gone(path) => {
                        self.pending.remove(&path);
                    }
                }
            }
            if self.overflowed {
                self.overflowed = false;
                if tx.blocking_send(WatchEvent::Overflow).is_err() {
                    return;
                }
            }
            let now = Instant::now();
            let mut settled: Vec<PathBuf> = self
                .pending
                .iter()
                .filter(|(_, last)| now.duration_since(**last) >= settle)
                .map(|(p, _)| p.clone())
                .collect();
            settled.sort();
            for path in settled {
                self.pending.remove(&path);
                if stop.load(Ordering::Relaxed)
                    || tx.blocking_send(WatchEvent::Settled(path)).is_err()
                {
                    return;
                }
            }
        }
    }
}
