//! Comparing two directory trees as a restore should reproduce them.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Lists every difference between trees `a` and `b` that a faithful restore must not have:
/// entries, types, bytes, mode, uid/gid, mtime (to the nanosecond), symlink targets, xattrs and
/// hard-link groups (of regular files and of symlinks). ctime, atime and inode numbers are not
/// compared (they cannot be restored), nor is the allocation of sparse files.
///
/// An empty list means the trees are identical in all those respects.
pub fn compare_trees(a: &Path, b: &Path) -> std::io::Result<Vec<String>> {
    compare_trees_ignoring(a, b, |_| false)
}

/// Like [`compare_trees`], but entries of `a` for which `ignore` (given their path under `a`)
/// is true are expected to be absent from `b` (for example what a backup excluded).
pub fn compare_trees_ignoring(
    a: &Path,
    b: &Path,
    ignore: impl Fn(&Path) -> bool,
) -> std::io::Result<Vec<String>> {
    let mut cmp = Comparison {
        diffs: Vec::new(),
        groups_a: HashMap::new(),
        groups_b: HashMap::new(),
        ignore: &ignore,
    };
    cmp.dir(a, b, Path::new(""))?;
    let norm = |g: HashMap<(u64, u64), Vec<Vec<u8>>>| {
        let mut v: Vec<Vec<Vec<u8>>> = g.into_values().filter(|v| v.len() > 1).collect();
        v.iter_mut().for_each(|g| g.sort());
        v.sort();
        v
    };
    if norm(std::mem::take(&mut cmp.groups_a)) != norm(std::mem::take(&mut cmp.groups_b)) {
        cmp.diffs.push("hard-link groups differ".into());
    }
    Ok(cmp.diffs)
}

struct Comparison<'a> {
    diffs: Vec<String>,
    groups_a: HashMap<(u64, u64), Vec<Vec<u8>>>,
    groups_b: HashMap<(u64, u64), Vec<Vec<u8>>>,
    ignore: &'a dyn Fn(&Path) -> bool,
}

fn names(p: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
    let mut v = std::fs::read_dir(p)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()?;
    v.sort();
    Ok(v)
}

fn xattrs(p: &Path) -> Vec<(std::ffi::OsString, Option<Vec<u8>>)> {
    let mut v: Vec<_> = xattr::list(p)
        .map(|names| {
            names
                .map(|n| {
                    let value = xattr::get(p, &n).ok().flatten();
                    (n, value)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl Comparison<'_> {
    fn differ(&mut self, rel: &Path, what: &str) {
        self.diffs
            .push(format!("{}: {what} differs", rel.display()));
    }

    fn dir(&mut self, a: &Path, b: &Path, rel: &Path) -> std::io::Result<()> {
        let mut na = names(&a.join(rel))?;
        na.retain(|n| !(self.ignore)(&a.join(rel).join(n)));
        let nb = names(&b.join(rel))?;
        if na != nb {
            self.differ(rel, "the list of entries");
        }
        for name in na.into_iter().filter(|n| nb.contains(n)) {
            let r: PathBuf = rel.join(&name);
            let (pa, pb) = (a.join(&r), b.join(&r));
            let ma = std::fs::symlink_metadata(&pa)?;
            let mb = std::fs::symlink_metadata(&pb)?;
            if ma.file_type() != mb.file_type() {
                self.differ(&r, "type");
                continue;
            }
            if (ma.uid(), ma.gid()) != (mb.uid(), mb.gid()) {
                self.differ(&r, "owner");
            }
            let is_link = ma.file_type().is_symlink();
            if !is_link && ma.mode() != mb.mode() {
                self.differ(&r, "mode");
            }
            if !is_link && xattrs(&pa) != xattrs(&pb) {
                self.differ(&r, "xattrs");
            }
            if (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
                self.differ(&r, "mtime");
            }
            if ma.is_dir() {
                self.dir(a, b, &r)?;
            } else {
                if is_link {
                    if std::fs::read_link(&pa)? != std::fs::read_link(&pb)? {
                        self.differ(&r, "symlink target");
                    }
                } else if ma.is_file() {
                    if ma.len() != mb.len() || !same_content(&pa, &pb)? {
                        self.differ(&r, "content");
                    }
                } else {
                    continue;
                }
                // Regular files and symlinks (which can be hard-linked too).
                let key = r.as_os_str().as_bytes().to_vec();
                self.groups_a
                    .entry((ma.dev(), ma.ino()))
                    .or_default()
                    .push(key.clone());
                self.groups_b
                    .entry((mb.dev(), mb.ino()))
                    .or_default()
                    .push(key);
            }
        }
        Ok(())
    }
}

fn same_content(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(fb.read(&mut bb[..1])? == 0);
        }
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}
