//! The backup's file-system scan: several threads list directories at once and hand each file
//! that must be read to the reading pipeline as soon as it is found, so reading starts while the
//! tree is still being walked.
//!
//! With a parent snapshot, each directory's parent tree is loaded by the thread that lists the
//! directory, so an unchanged re-backup (which reads no file) spreads its tree loads over every
//! core too.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crossbeam_channel::Sender;
use rustix::fs::{Mode, OFlags};

use crate::backup::BackupOptions;
use crate::error::{Error, Result};
use crate::format::{ChunkId, FileProblem, Node, NodeKind, Tree};
use crate::fsmeta;
use crate::progress::Progress;
use crate::repo::{Repository, poisoned};

/// One scanned entry of the snapshot being built.
pub(crate) struct Entry {
    pub(crate) node: Node,
    /// Children (directories only): a directory's entries are added to the arena together, so
    /// they are one range of indices.
    pub(crate) children: std::ops::Range<usize>,
    /// True when the file is read by the pipeline (its content comes from a [`FileJob`]).
    pub(crate) read: bool,
}

impl Entry {
    fn new(node: Node, next: &Next) -> Self {
        Entry {
            node,
            children: 0..0,
            read: matches!(next, Next::Read(_)),
        }
    }
}

/// Most directory descriptors the scan keeps open for readers at once (well under the usual
/// limit of 1,024 descriptors); files of further directories are opened by path.
const MAX_OPEN_DIRS: usize = 128;

/// A listed directory's descriptor, shared by the jobs of its files: readers open them with
/// `openat`, which spares the kernel a walk of the whole path for each file (about 2 % of a
/// cold backup's CPU time on the Rust toolchain tree).
pub(crate) struct DirHandle {
    fd: OwnedFd,
    open: Arc<AtomicUsize>,
}

impl Drop for DirHandle {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A file the pipeline must read.
pub(crate) struct FileJob {
    /// Arena index of the file's entry.
    pub(crate) index: usize,
    pub(crate) path: PathBuf,
    /// The directory holding the file, when the scan kept it open.
    pub(crate) dir: Option<Arc<DirHandle>>,
    /// (size, mtime, ctime, inode) seen by the scan, to detect change while reading.
    pub(crate) scanned: (u64, i64, i64, u64),
}

impl FileJob {
    /// Opens the file for reading, relative to its directory where the scan kept that open.
    /// Never through a symbolic link: the scan saw a regular file, and one swapped for a link
    /// since is an error, not a read of whatever the link points to.
    pub(crate) fn open(&self) -> std::io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd = match (&self.dir, self.path.file_name()) {
            (Some(dir), Some(name)) => rustix::fs::openat(&dir.fd, name, flags, Mode::empty())?,
            _ => rustix::fs::open(&self.path, flags, Mode::empty())?,
        };
        Ok(File::from(fd))
    }
}

/// Where the scan sends files to read: files under `small_below` bytes and larger ones go to
/// separate reader pools (many readers for small files, whose time goes to waiting on open and
/// read; one per core for large ones, each holding a buffer of the largest chunk).
pub(crate) struct JobSink {
    pub(crate) small: Sender<FileJob>,
    pub(crate) large: Sender<FileJob>,
    pub(crate) small_below: u64,
}

impl JobSink {
    fn send(&self, job: FileJob) -> Result<()> {
        let queue = if job.scanned.0 < self.small_below {
            &self.small
        } else {
            &self.large
        };
        queue
            .send(job)
            .map_err(|_| Error::Worker("reader threads stopped".into()))
    }
}

/// What the scan found.
pub(crate) struct Scanned {
    pub(crate) entries: Vec<Entry>,
    /// Arena indices of the given paths, in order.
    pub(crate) roots: Vec<usize>,
    pub(crate) skipped: Vec<FileProblem>,
    pub(crate) unchanged: u64,
    pub(crate) files_to_read: u64,
    pub(crate) bytes_to_read: u64,
}

/// A directory waiting to be listed.
struct DirTask {
    index: usize,
    path: PathBuf,
    /// Device of the backed-up path this directory lies under (for one-file-system).
    root_dev: u64,
    /// The same directory's tree in the parent snapshot.
    parent_tree: Option<ChunkId>,
}

/// What to do after examining an entry.
enum Next {
    Nothing,
    Read((u64, i64, i64, u64)),
    List {
        dev: u64,
        parent_tree: Option<ChunkId>,
    },
}

#[derive(Default)]
struct Queue {
    tasks: Vec<DirTask>,
    /// Tasks being listed right now (they may queue more).
    active: usize,
    error: Option<Error>,
}

pub(crate) struct Scanner<'a> {
    repo: &'a Repository,
    options: &'a BackupOptions,
    handle: tokio::runtime::Handle,
    progress: &'a dyn Progress,
    jobs: JobSink,
    entries: Mutex<Vec<Entry>>,
    queue: Mutex<Queue>,
    wake: Condvar,
    skipped: Mutex<Vec<FileProblem>>,
    link_groups: Mutex<HashMap<(u64, u64), u64>>,
    /// Directory descriptors held by queued or unread jobs.
    open_dirs: Arc<AtomicUsize>,
    unchanged: AtomicU64,
    files_to_read: AtomicU64,
    bytes_to_read: AtomicU64,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(
        repo: &'a Repository,
        options: &'a BackupOptions,
        handle: tokio::runtime::Handle,
        progress: &'a dyn Progress,
        jobs: JobSink,
    ) -> Self {
        Scanner {
            repo,
            options,
            handle,
            progress,
            jobs,
            entries: Mutex::new(Vec::new()),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            skipped: Mutex::new(Vec::new()),
            link_groups: Mutex::new(HashMap::new()),
            open_dirs: Arc::new(AtomicUsize::new(0)),
            unchanged: AtomicU64::new(0),
            files_to_read: AtomicU64::new(0),
            bytes_to_read: AtomicU64::new(0),
        }
    }

    /// Scans `options`' paths with `threads` threads (this one included), sending every file to
    /// read to the job channel; the channel closes when this returns.
    pub(crate) fn run(self, parent_root: Option<&Tree>, threads: usize) -> Result<Scanned> {
        let roots = self.scan_roots(parent_root)?;
        std::thread::scope(|s| {
            for _ in 1..threads.max(1) {
                s.spawn(|| self.work());
            }
            self.work();
        });
        let Scanner {
            entries,
            queue,
            skipped,
            unchanged,
            files_to_read,
            bytes_to_read,
            ..
        } = self;
        if let Some(e) = queue.into_inner().map_err(poisoned)?.error {
            return Err(e);
        }
        Ok(Scanned {
            entries: entries.into_inner().map_err(poisoned)?,
            roots,
            skipped: skipped.into_inner().map_err(poisoned)?,
            unchanged: unchanged.into_inner(),
            files_to_read: files_to_read.into_inner(),
            bytes_to_read: bytes_to_read.into_inner(),
        })
    }

    /// Examines the given paths (a missing or unreadable one is an error, unlike entries below
    /// them) and queues the directories among them.
    fn scan_roots(&self, parent_root: Option<&Tree>) -> Result<Vec<usize>> {
        let mut roots = Vec::new();
        let mut tasks = Vec::new();
        let mut names = std::collections::HashSet::new();
        for path in self.options.paths() {
            let abs = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
            let meta = std::fs::symlink_metadata(&abs).map_err(|e| Error::io(&abs, e))?;
            let name = abs
                .file_name()
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{} has no file name to store it under",
                        abs.display()
                    ))
                })?
                .to_os_string();
            if !names.insert(name.clone()) {
                return Err(Error::Config(format!(
                    "two paths end in the same name {name:?}; back them up separately"
                )));
            }
            if self.options.is_excluded(&abs) {
                continue;
            }
            let previous = parent_root.and_then(|t| find(t, &name));
            let dev = meta.dev();
            let Some((node, next)) = self.examine(&abs, &name, meta, previous) else {
                continue;
            };
            let index = self.push(vec![Entry::new(node, &next)], None)?;
            roots.push(index);
            self.follow(index, abs, next, dev, None, &mut tasks)?;
        }
        tasks.reverse();
        self.queue.lock().map_err(poisoned)?.tasks = tasks;
        Ok(roots)
    }

    fn problem(&self, path: &Path, error: impl std::fmt::Display) {
        tracing::warn!("skipping {}: {error}", path.display());
        if let Ok(mut skipped) = self.skipped.lock() {
            skipped.push(FileProblem {
                path: path.to_string_lossy().into_owned(),
                error: error.to_string(),
            });
        }
    }

    /// The node for `path` (whose metadata, not following symlinks, is `meta`) and what it needs
    /// next, or `None` if unreadable or holding an exclude marker. Callers check the exclude
    /// globs first.
    fn examine(
        &self,
        path: &Path,
        name: &OsStr,
        meta: std::fs::Metadata,
        previous: Option<&Node>,
    ) -> Option<(Node, Next)> {
        let mut node = fsmeta::node_from(name, path, &meta)
            .map_err(|e| self.problem(path, crate::error::report(&e)))
            .ok()?;
        // Symlinks can be hard-linked too (`ln -P`), and come back as one inode.
        if matches!(node.kind, NodeKind::File | NodeKind::Symlink) && meta.nlink() > 1 {
            let mut groups = self.link_groups.lock().ok()?;
            let next = groups.len() as u64 + 1;
            node.link_group = Some(*groups.entry((meta.dev(), meta.ino())).or_insert(next));
        }
        let next = match node.kind {
            NodeKind::File => {
                let unchanged = previous.filter(|p| {
                    p.kind == NodeKind::File
                        && p.size == node.size
                        && p.mtime_ns == node.mtime_ns
                        && p.ctime_ns == node.ctime_ns
                        && p.inode == node.inode
                        && p.content.iter().all(|id| self.repo.has_blob(id))
                });
                match unchanged {
                    Some(p) => {
                        node.content = p.content.clone();
                        node.xattrs = p.xattrs.clone();
                        self.unchanged.fetch_add(1, Ordering::Relaxed);
                        Next::Nothing
                    }
                    None => Next::Read((node.size, node.mtime_ns, node.ctime_ns, node.inode)),
                }
            }
            NodeKind::Dir => {
                if self.options.has_marker(path) {
                    return None;
                }
                let parent_tree = previous
                    .filter(|p| p.kind == NodeKind::Dir)
                    .and_then(|p| p.subtree);
                Next::List {
                    dev: meta.dev(),
                    parent_tree,
                }
            }
            _ => Next::Nothing,
        };
        Some((node, next))
    }

    /// Adds entries to the arena, as the children of `parent` if given; returns the index of
    /// the first.
    fn push(&self, new: Vec<Entry>, parent: Option<usize>) -> Result<usize> {
        let mut entries = self.entries.lock().map_err(poisoned)?;
        let first = entries.len();
        let count = new.len();
        entries.extend(new);
        if let Some(parent) = parent {
            entries[parent].children = first..first + count;
        }
        Ok(first)
    }

    /// Sends a file to the readers, or queues a directory (into `tasks`) for listing.
    fn follow(
        &self,
        index: usize,
        path: PathBuf,
        next: Next,
        root_dev: u64,
        dir: Option<&Arc<DirHandle>>,
        tasks: &mut Vec<DirTask>,
    ) -> Result<()> {
        match next {
            Next::Nothing => {}
            Next::Read(scanned) => {
                self.files_to_read.fetch_add(1, Ordering::Relaxed);
                self.bytes_to_read.fetch_add(scanned.0, Ordering::Relaxed);
                self.progress.found(&path, scanned.0);
                self.jobs.send(FileJob {
                    index,
                    path,
                    dir: dir.cloned(),
                    scanned,
                })?;
            }
            Next::List { dev, parent_tree } => {
                // Mount points below a path are recorded but not entered with one-file-system.
                if !(self.options.one_file_system() && dev != root_dev) {
                    tasks.push(DirTask {
                        index,
                        path,
                        root_dev,
                        parent_tree,
                    });
                }
            }
        }
        Ok(())
    }

    /// Lists one directory: examines its entries, adds them to the arena, sends its files to
    /// the readers and returns its subdirectories in `tasks`.
    fn list(&self, task: DirTask, tasks: &mut Vec<DirTask>) -> Result<()> {
        let parent_tree = match &task.parent_tree {
            Some(id) => Some(self.handle.block_on(self.repo.load_tree(id))?),
            None => None,
        };
        let mut listed: Vec<_> = match std::fs::read_dir(&task.path) {
            Ok(listing) => listing
                .filter_map(|e| e.map_err(|e| self.problem(&task.path, e)).ok())
                .map(|e| (e.file_name(), e))
                .collect(),
            Err(e) => {
                self.problem(&task.path, e);
                Vec::new()
            }
        };
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        let mut found = Vec::with_capacity(listed.len());
        for (name, dir_entry) in listed {
            let path = task.path.join(&name);
            if self.options.is_excluded(&path) {
                continue;
            }
            // Relative to the listed directory's descriptor: no walk of the whole path.
            let Ok(meta) = dir_entry.metadata().map_err(|e| self.problem(&path, e)) else {
                continue;
            };
            let previous = parent_tree.as_ref().and_then(|t| find(t, &name));
            if let Some(examined) = self.examine(&path, &name, meta, previous) {
                found.push((path, examined));
            }
        }
        let (follow, new): (Vec<_>, Vec<_>) = found
            .into_iter()
            .map(|(path, (node, next))| {
                let entry = Entry::new(node, &next);
                ((path, next), entry)
            })
            .unzip();
        let first = self.push(new, Some(task.index))?;
        let dir = follow
            .iter()
            .any(|(_, next)| matches!(next, Next::Read(_)))
            .then(|| self.open_dir(&task.path))
            .flatten();
        for (i, (path, next)) in follow.into_iter().enumerate() {
            self.follow(first + i, path, next, task.root_dev, dir.as_ref(), tasks)?;
        }
        Ok(())
    }

    /// A descriptor of directory `path` for its files' jobs, unless too many are open already
    /// or it cannot be opened (its files are then opened by path, and fail there if at all).
    fn open_dir(&self, path: &Path) -> Option<Arc<DirHandle>> {
        if self.open_dirs.fetch_add(1, Ordering::Relaxed) >= MAX_OPEN_DIRS {
            self.open_dirs.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        // Not through a symlink: the directory listed is the one whose files are read.
        match fsmeta::open_dir(path, false) {
            Ok(fd) => Some(Arc::new(DirHandle {
                fd,
                open: self.open_dirs.clone(),
            })),
            Err(_) => {
                self.open_dirs.fetch_sub(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// One scanning thread: lists queued directories until none is queued or being listed.
    fn work(&self) {
        let mut found = Vec::new();
        loop {
            let task = {
                let Ok(mut queue) = self.queue.lock() else {
                    return;
                };
                loop {
                    if queue.error.is_some() {
                        break None;
                    }
                    // Last in, first out: a depth-first walk, so files of one directory are
                    // read (and their small blobs grouped) together.
                    if let Some(task) = queue.tasks.pop() {
                        queue.active += 1;
                        break Some(task);
                    }
                    if queue.active == 0 {
                        break None;
                    }
                    queue = match self.wake.wait(queue) {
                        Ok(q) => q,
                        Err(_) => return,
                    };
                }
            };
            let Some(task) = task else {
                self.wake.notify_all();
                return;
            };
            let result = self.list(task, &mut found);
            if let Ok(mut queue) = self.queue.lock() {
                queue.active -= 1;
                match result {
                    // Reversed so the first subdirectory is popped first.
                    Ok(()) => queue.tasks.extend(found.drain(..).rev()),
                    Err(e) => {
                        queue.error.get_or_insert(e);
                    }
                }
            }
            self.wake.notify_all();
        }
    }
}

/// The node called `name` in a (sorted) tree.
fn find<'t>(tree: &'t Tree, name: &OsStr) -> Option<&'t Node> {
    tree.nodes
        .binary_search_by(|n| n.name.as_slice().cmp(name.as_bytes()))
        .ok()
        .map(|i| &tree.nodes[i])
}

/// Every queued task reaches a thread, and the threads stop once all are listed.
#[cfg(test)]
mod tests {
    #[test]
    fn scan_lists_every_entry_with_many_threads() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = 0;
        for a in 0..5 {
            for b in 0..4 {
                let d = dir.path().join(format!("d{a}/e{b}"));
                std::fs::create_dir_all(&d).unwrap();
                for f in 0..3 {
                    std::fs::write(d.join(format!("f{f}")), [a, b, f]).unwrap();
                    expected += 1;
                }
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let repo = rt
            .block_on(crate::Repository::init(
                std::sync::Arc::new(object_store::memory::InMemory::new()),
                "memory",
                &crate::KeySource::passphrase("scan"),
                crate::InitOptions::new(),
            ))
            .unwrap();
        let options = crate::BackupOptions::builder([dir.path()]).build().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let (large, large_rx) = crossbeam_channel::unbounded();
        let sink = super::JobSink {
            small: tx,
            large,
            small_below: 2,
        };
        let progress = crate::NoProgress;
        let scanned = super::Scanner::new(&repo, &options, rt.handle().clone(), &progress, sink)
            .run(None, 4)
            .unwrap();
        let jobs: Vec<_> = rx.iter().collect();
        // Every file holds 3 bytes: all go to the large-file readers.
        assert!(jobs.is_empty());
        let jobs: Vec<_> = large_rx.iter().collect();
        assert_eq!(jobs.len(), expected);
        assert_eq!(scanned.files_to_read, expected as u64);
        // 1 root + 5 + 20 directories + the files.
        assert_eq!(scanned.entries.len(), 1 + 5 + 20 + expected);
        for job in &jobs {
            let entry = &scanned.entries[job.index];
            assert!(entry.read);
            assert_eq!(
                entry.node.name,
                job.path.file_name().unwrap().as_encoded_bytes()
            );
        }
        let root = &scanned.entries[scanned.roots[0]];
        assert_eq!(root.children.len(), 5);
        // Each of the 20 directories holding files is held open by its jobs, and every job
        // opens its own file through it.
        let dirs: std::collections::HashSet<_> = jobs
            .iter()
            .map(|j| std::sync::Arc::as_ptr(j.dir.as_ref().expect("a directory handle")))
            .collect();
        assert_eq!(dirs.len(), 20);
        for job in &jobs {
            let read = std::io::read_to_string(job.open().unwrap()).unwrap();
            assert_eq!(read.as_bytes(), std::fs::read(&job.path).unwrap());
        }
    }

    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The handles' count, which caps how many descriptors the scan holds, drops as jobs go.
    #[test]
    fn directory_handles_are_counted_until_their_last_job_is_done() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        std::os::unix::fs::symlink("file", dir.path().join("link")).unwrap();
        let open = std::sync::Arc::new(AtomicUsize::new(1));
        let handle = std::sync::Arc::new(super::DirHandle {
            fd: crate::fsmeta::open_dir(dir.path(), false).unwrap(),
            open: open.clone(),
        });
        let job = |name: &str, held: Option<std::sync::Arc<super::DirHandle>>| super::FileJob {
            index: 0,
            path: dir.path().join(name),
            dir: held,
            scanned: (1, 0, 0, 0),
        };
        let by_handle = job("file", Some(handle.clone()));
        let by_path = job("file", None);
        assert_eq!(
            std::io::read_to_string(by_handle.open().unwrap()).unwrap(),
            "x"
        );
        assert_eq!(
            std::io::read_to_string(by_path.open().unwrap()).unwrap(),
            "x"
        );
        // A file swapped for a symbolic link since the scan is not followed, either way.
        for link in [job("link", Some(handle.clone())), job("link", None)] {
            let err = link.open().unwrap_err();
            assert_eq!(
                err.raw_os_error(),
                Some(rustix::io::Errno::LOOP.raw_os_error())
            );
        }
        drop(handle);
        assert_eq!(open.load(Ordering::Relaxed), 1);
        drop(by_handle);
        assert_eq!(open.load(Ordering::Relaxed), 0);
    }
}
