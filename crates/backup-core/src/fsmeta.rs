//! Reading file metadata into tree nodes and applying it back on restore.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{Node, NodeKind, Xattr};

/// A descriptor of directory `path`, for `*at` calls relative to it. Unless `follow`, a
/// symlink at `path` (only its last component) is refused rather than followed.
pub(crate) fn open_dir(path: &Path, follow: bool) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    Ok(rustix::fs::open(path, flags, Mode::empty())?)
}

pub(crate) fn time_ns(secs: i64, nsecs: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsecs)
}

/// A node for `name` with the metadata of `meta` (no content yet).
pub(crate) fn node_from(name: &OsStr, path: &Path, meta: &Metadata) -> Result<Node> {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        NodeKind::File
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::CharDevice
    } else if ft.is_block_device() {
        NodeKind::BlockDevice
    } else {
        NodeKind::Socket
    };
    let target = if kind == NodeKind::Symlink {
        Some(
            std::fs::read_link(path)
                .map_err(|e| Error::io(path, e))?
                .into_os_string()
                .into_vec(),
        )
    } else {
        None
    };
    let rdev = matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice).then(|| meta.rdev());
    Ok(Node {
        name: name.as_bytes().to_vec(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: time_ns(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: time_ns(meta.ctime(), meta.ctime_nsec()),
        inode: meta.ino(),
        size: if kind == NodeKind::File || kind == NodeKind::Symlink {
            meta.size()
        } else {
            0
        },
        content: Vec::new(),
        subtree: None,
        target,
        rdev,
        link_group: None,
        // A regular file's come from its open descriptor when it is read (no second walk of
        // its path), or from the parent snapshot when it is unchanged: setting an xattr
        // changes the ctime.
        xattrs: if kind == NodeKind::File {
            Vec::new()
        } else {
            sorted_xattrs(xattr::list(path), |name| xattr::get(path, name))
        },
    })
}

/// Extended attributes of an open file; empty where unsupported.
pub(crate) fn file_xattrs(file: &std::fs::File) -> Vec<Xattr> {
    use xattr::FileExt;
    sorted_xattrs(file.list_xattr(), |name| file.get_xattr(name))
}

/// The attributes `names` lists, each read with `get`, sorted by name.
fn sorted_xattrs(
    names: std::io::Result<xattr::XAttrs>,
    get: impl Fn(&OsStr) -> std::io::Result<Option<Vec<u8>>>,
) -> Vec<Xattr> {
    let Ok(names) = names else {
        return Vec::new();
    };
    let mut out: Vec<Xattr> = names
        .filter_map(|name| {
            let value = get(&name).ok().flatten()?;
            Some(Xattr {
                name: name.as_bytes().to_vec(),
                value,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Applies xattrs, ownership, mode and mtime of `node` to `path` (which is not a symlink unless
/// the node is one). Returns warnings for what could not be applied.
pub(crate) fn apply(path: &Path, node: &Node) -> Vec<String> {
    let mut warnings = Vec::new();
    let is_link = node.kind == NodeKind::Symlink;
    if !is_link {
        set_xattrs(node, path, &mut warnings, |name, value| {
            xattr::set(path, name, value)
        });
    }
    if let Err(e) = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid)) {
        // Without privilege ownership cannot be restored; that is expected, not an error.
        if e.kind() != std::io::ErrorKind::PermissionDenied {
            warnings.push(format!("{}: chown: {e}", path.display()));
        }
    }
    if !is_link {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) =
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode & 0o7777))
        {
            warnings.push(format!("{}: chmod: {e}", path.display()));
        }
    }
    let secs = node.mtime_ns.div_euclid(1_000_000_000);
    let nanos = node.mtime_ns.rem_euclid(1_000_000_000) as u32;
    let mtime = filetime::FileTime::from_unix_time(secs, nanos);
    if let Err(e) = filetime::set_symlink_file_times(path, mtime, mtime) {
        warnings.push(format!("{}: set times: {e}", path.display()));
    }
    warnings
}

/// Sets each of `node`'s xattrs with `set`, adding a warning naming `path` for each that fails.
fn set_xattrs(
    node: &Node,
    path: &Path,
    warnings: &mut Vec<String>,
    set: impl Fn(&OsStr, &[u8]) -> std::io::Result<()>,
) {
    for x in &node.xattrs {
        if let Err(e) = set(OsStr::from_bytes(&x.name), &x.value) {
            warnings.push(format!(
                "{}: xattr {}: {e}",
                path.display(),
                String::from_utf8_lossy(&x.name)
            ));
        }
    }
}

/// Applies xattrs, ownership, mode and mtime of file `node` through its open descriptor (no path
/// lookups, and nothing a rename could redirect); `path` only names it in warnings.
pub(crate) fn apply_to_file(file: &std::fs::File, path: &Path, node: &Node) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    use xattr::FileExt;
    let mut warnings = Vec::new();
    set_xattrs(node, path, &mut warnings, |name, value| {
        file.set_xattr(name, value)
    });
    if let Err(e) = std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid))
        && e.kind() != std::io::ErrorKind::PermissionDenied
    {
        warnings.push(format!("{}: chown: {e}", path.display()));
    }
    // After chown, which clears set-id bits.
    if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(node.mode & 0o7777)) {
        warnings.push(format!("{}: chmod: {e}", path.display()));
    }
    let mtime = system_time(node.mtime_ns);
    let times = std::fs::FileTimes::new()
        .set_accessed(mtime)
        .set_modified(mtime);
    if let Err(e) = file.set_times(times) {
        warnings.push(format!("{}: set times: {e}", path.display()));
    }
    warnings
}

/// Nanoseconds since the Unix epoch (negative before it) as a `SystemTime`.
fn system_time(ns: i64) -> std::time::SystemTime {
    let since = std::time::Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        std::time::UNIX_EPOCH + since
    } else {
        std::time::UNIX_EPOCH - since
    }
}

/// Creates the FIFO or device node `node` describes at `path`, replacing any non-directory
/// entry there (never following it). Returns false for entries that are not recreated
/// (sockets, which belong to a running program). Device nodes need privilege (`CAP_MKNOD`);
/// without it this fails and the caller reports a warning.
pub(crate) fn make_special(path: &Path, node: &Node) -> std::io::Result<bool> {
    use rustix::fs::{FileType, Mode};
    let file_type = match node.kind {
        NodeKind::Fifo => FileType::Fifo,
        NodeKind::CharDevice => FileType::CharacterDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        _ => return Ok(false),
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(std::io::Error::other(
                "a directory is in the way of a special file from the snapshot",
            ));
        }
        Ok(_) => std::fs::remove_file(path)?,
        Err(_) => {}
    }
    // Owner-only until `apply` sets the recorded mode and owner.
    let mode = Mode::from_raw_mode(0o600);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        file_type,
        mode,
        node.rdev.unwrap_or(0),
    )?;
    Ok(true)
}
