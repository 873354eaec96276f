//! Writing an output file without ever destroying what the path named before.
//!
//! [`AtomicOutput`] is what a tool's `-o PATH` should write through: a decryption that fails
//! half-way (a damaged payload, a wrong key or context found late) must neither leave partial
//! plaintext under the name nor remove or truncate whatever the name pointed at.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// An output file that appears under its name only once it is complete.
///
/// * A path that does not exist, or names a regular file (directly or through symlinks), is
///   written to a fresh temporary file in the target's directory; [`commit`](Self::commit)
///   syncs it, renames it over the target and syncs the directory. Until then the target is
///   untouched, and dropping the output uncommitted removes only the temporary file. A symlink
///   stays a symlink: the file it points to is the one replaced. A replaced file keeps its
///   permission bits (and its owner, where the process may set it); a new one gets the usual
///   `0o666` less the umask. Replacing needs write permission on the target's directory (for
///   the temporary file and the rename), not only on the file; a file with several hard links
///   is replaced by a new file under the one name written to.
/// * A path that is not a regular file (a device such as `/dev/null`, a FIFO, a socket), and any
///   path under `/dev` or `/proc` (`/dev/stdout`, `/dev/fd/3`, which name open descriptors), is
///   opened for writing as it is: written directly, never truncated, never removed. What was
///   written before a failure stays written there, as with standard output.
///
/// ```
/// use std::io::Write;
/// use crypto_at_rest::output::AtomicOutput;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("report.txt");
/// std::fs::write(&path, "yesterday's report")?;
///
/// // A failed write leaves the old file as it was.
/// let mut out = AtomicOutput::create(&path)?;
/// out.write_all(b"half a rep")?;
/// drop(out);
/// assert_eq!(std::fs::read_to_string(&path)?, "yesterday's report");
///
/// // A committed one replaces it in one step.
/// let mut out = AtomicOutput::create(&path)?;
/// out.write_all(b"today's report")?;
/// out.commit()?;
/// assert_eq!(std::fs::read_to_string(&path)?, "today's report");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AtomicOutput {
    file: File,
    target: Target,
}

#[derive(Debug)]
enum Target {
    /// Written directly (not a regular file); nothing to rename or remove.
    Direct,
    /// A temporary file in `dir`, renamed over `path` on commit.
    Replace {
        temp: PathBuf,
        path: PathBuf,
        dir: PathBuf,
        /// Device and inode of the regular file being replaced, if there is one.
        existing: Option<(u64, u64)>,
        committed: bool,
    },
}

impl AtomicOutput {
    /// Prepares writing to `path` (see the type docs); nothing under `path` changes yet.
    pub fn create(path: &Path) -> io::Result<Self> {
        Self::create_with_mode(path, None)
    }

    /// Like [`create`](Self::create), for secrets: a regular file is created, or replaced,
    /// readable and writable by its owner only (mode `0o600`), whatever the old file's mode.
    pub fn create_private(path: &Path) -> io::Result<Self> {
        Self::create_with_mode(path, Some(0o600))
    }

    fn create_with_mode(path: &Path, private: Option<u32>) -> io::Result<Self> {
        if names_descriptor_or_device(path) {
            return Self::direct(path);
        }
        let existing = match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => Some(meta),
            Ok(_) => return Self::direct(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if std::fs::symlink_metadata(path).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{} is a symlink to nothing", path.display()),
                    ));
                }
                None
            }
            Err(e) => return Err(e),
        };
        // Replace the file a symlink points to, not the symlink.
        let is_symlink =
            existing.is_some() && std::fs::symlink_metadata(path)?.file_type().is_symlink();
        let path = if is_symlink {
            std::fs::canonicalize(path)?
        } else {
            path.to_path_buf()
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} does not name a file", path.display()),
            )
        })?;
        let mode = private
            .or(existing.as_ref().map(|m| m.permissions().mode() & 0o7777))
            .unwrap_or(0o666);
        let (temp, file) = create_temp(&dir, &name.to_string_lossy(), mode)?;
        let output = Self {
            file,
            target: Target::Replace {
                temp,
                path,
                dir,
                existing: existing.as_ref().map(|m| (m.dev(), m.ino())),
                committed: false,
            },
        };
        if let Some(meta) = &existing {
            // The creation mode went through the umask: set the old bits exactly, and keep the
            // owner where the process may (root replacing another user's file).
            if private.is_none() {
                output.file.set_permissions(meta.permissions())?;
            }
            let _ = std::os::unix::fs::fchown(&output.file, Some(meta.uid()), Some(meta.gid()));
        }
        Ok(output)
    }

    fn direct(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().write(true).open(path)?;
        Ok(Self {
            file,
            target: Target::Direct,
        })
    }

    /// Whether the output is written directly to its path (not a regular file) rather than
    /// through a temporary file.
    pub fn is_direct(&self) -> bool {
        matches!(self.target, Target::Direct)
    }

    /// Whether `other` is the file this output would write or replace (same device and inode),
    /// so a tool can refuse to overwrite its own input. Only regular files count: two handles
    /// on `/dev/null` are not "the same file" in any sense that loses data.
    pub fn is_same_file(&self, other: &File) -> io::Result<bool> {
        let other = other.metadata()?;
        if !other.is_file() {
            return Ok(false);
        }
        let id = match &self.target {
            Target::Replace { existing, .. } => *existing,
            Target::Direct => {
                let meta = self.file.metadata()?;
                meta.is_file().then(|| (meta.dev(), meta.ino()))
            }
        };
        Ok(id == Some((other.dev(), other.ino())))
    }

    /// Makes the output visible under its name: syncs the temporary file, renames it over the
    /// target and syncs the directory. For a direct output, flushes what the device accepts.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.flush()?;
        let Target::Replace {
            temp,
            path,
            dir,
            committed,
            ..
        } = &mut self.target
        else {
            return Ok(());
        };
        self.file.sync_all()?;
        std::fs::rename(&*temp, &*path)?;
        *committed = true;
        // The rename is durable once the directory is; some file systems cannot sync one.
        if let Ok(d) = File::open(&*dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Write for AtomicOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.file.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        if let Target::Replace {
            temp,
            committed: false,
            ..
        } = &self.target
        {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// Paths under `/dev` and `/proc` name devices and open descriptors (`/dev/stdout`): never
/// replaced, even when the descriptor behind them is a regular file.
fn names_descriptor_or_device(path: &Path) -> bool {
    path.starts_with("/dev") || path.starts_with("/proc")
}

/// Creates `.NAME.tmp-PID-N` in `dir` with `mode` (less the umask), never reusing a name.
fn create_temp(dir: &Path, name: &str, mode: u32) -> io::Result<(PathBuf, File)> {
    let mut attempt = 0u32;
    loop {
        let temp = dir.join(format!(".{name}.tmp-{}-{attempt}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}
