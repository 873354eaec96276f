//! Opening files without following symbolic links, and the identity a scan cache keys on.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::error::{Error, Result};

/// Flags for opening a file to scan: never through a symlink, and non-blocking so a FIFO
/// swapped in for a file cannot hang the open (the type is checked right after).
pub(crate) const OPEN_FILE: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY);

/// Who a file is and which version of its content: (device, inode) plus size, mtime and ctime
/// in nanoseconds. A write changes mtime and ctime; `touch -d` can forge mtime but not ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
}

impl FileIdentity {
    pub(crate) fn from_stat(st: &rustix::fs::Stat) -> Self {
        FileIdentity {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec as i64),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec as i64),
        }
    }

    /// The identity of an open file.
    pub fn of(file: &File) -> std::io::Result<Self> {
        Ok(Self::from_stat(&rustix::fs::fstat(file.as_fd())?))
    }
}

fn ns(secs: i64, nsecs: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsecs)
}

pub(crate) fn is_regular(st: &rustix::fs::Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
}

/// Opens `path` for scanning: a regular file, not through a symlink at its last component.
pub(crate) fn open_regular(path: &Path) -> Result<File> {
    let fd = rustix::fs::open(path, OPEN_FILE, Mode::empty())
        .map_err(|e| Error::io(path, "opening", e.into()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::io(path, "stat", e.into()))?;
    if !is_regular(&st) {
        return Err(Error::InvalidPath {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    Ok(File::from(fd))
}

/// Opens directory `path` without following a symlink at its last component.
pub(crate) fn open_dir(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?)
}

/// fsyncs directory `path` so a rename or unlink in it is durable.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    let fd = open_dir(path).map_err(|e| Error::io(path, "opening directory", e))?;
    rustix::fs::fsync(&fd).map_err(|e| Error::io(path, "fsync of directory", e.into()))
}
