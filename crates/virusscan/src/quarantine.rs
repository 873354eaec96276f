//! The quarantine: infected files moved away with a JSON record, restorable exactly.
//!
//! A quarantine directory holds, per file, `<id>.json` (a [`QuarantineRecord`]) and
//! `<id>.data` (the file itself, mode 000). Every step is ordered so that a crash at any point
//! leaves the file either in place or in quarantine with its record; [`Quarantine::recover`]
//! (run by [`Quarantine::open`]) finishes or rolls back whatever a crash interrupted:
//!
//! 1. The record is written with state `quarantining` (temporary file, fsync, rename, fsync of
//!    the directory): from here on recovery knows about the move.
//! 2. Same file system: `rename` of the file to `<id>.data` (atomic), fsync of both
//!    directories. Across file systems (`EXDEV`): copy to `<id>.data.tmp`, fsync, rename to
//!    `<id>.data`, fsync; then unlink the original (only if it is still the same file), fsync.
//! 3. `<id>.data` is made mode 000 and the record rewritten with state `quarantined`.
//!
//! Recovery of `quarantining`: with `<id>.data` present the move is finished (a copy's
//! original, still identical, is unlinked); without it the move never happened and the record
//! is removed. Restoring writes state `restoring`, sets owner, mode and times on the
//! quarantined file, renames it back with `RENAME_NOREPLACE` (or copies it beside the target
//! and renames that, across file systems), then removes the record; recovery of `restoring`
//! finishes when the file is back at its path with the recorded hash, and otherwise returns
//! the entry to `quarantined`. An exclusive `flock` on `.lock` serialises processes.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{self, FileIdentity, OPEN_FILE};

/// The record kept beside a quarantined file (`<id>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QuarantineRecord {
    /// Record format version (1).
    pub format: u32,
    /// The entry's id (file names `<id>.json`, `<id>.data`).
    pub id: String,
    /// `quarantining`, `quarantined` or `restoring`.
    pub state: RecordState,
    /// The original path for people (invalid UTF-8 replaced).
    pub original_path: String,
    /// The original path's exact bytes, hex-encoded (used to restore).
    pub original_path_hex: String,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Access time, nanoseconds since the epoch.
    pub atime_ns: i64,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// The signature the scanner reported.
    pub signature: String,
    /// When it was quarantined, seconds since the epoch.
    pub quarantined_at: u64,
    /// `rename` (same file system) or `copy` (copied, then the original unlinked).
    pub method: String,
}

/// Where an entry is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecordState {
    /// Being moved into quarantine.
    Quarantining,
    /// In quarantine.
    Quarantined,
    /// Being restored.
    Restoring,
}

impl QuarantineRecord {
    /// The exact original path.
    pub fn original_path(&self) -> Result<PathBuf> {
        hex::decode(&self.original_path_hex)
            .map(|b| PathBuf::from(OsString::from_vec(b)))
            .map_err(|_| Error::Quarantine {
                path: PathBuf::from(&self.id),
                reason: "original_path_hex is not hex".into(),
            })
    }
}

/// What [`Quarantine::recover`] did with an interrupted entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryAction {
    /// The interrupted quarantine was finished: the file is in quarantine.
    Quarantined,
    /// The interrupted quarantine was undone: the file is in place, the record removed.
    LeftInPlace,
    /// The interrupted restore was finished: the file is back, the record removed.
    Restored,
    /// The interrupted restore was undone: the file is in quarantine.
    KeptInQuarantine,
    /// A temporary file left by a crash was removed.
    RemovedTemporary(PathBuf),
}

/// A quarantine directory.
#[derive(Debug)]
pub struct Quarantine {
    dir: PathBuf,
    dirfd: OwnedFd,
}

/// Holds the quarantine's `flock` until dropped.
struct Locked(#[allow(dead_code)] OwnedFd);

impl Quarantine {
    /// Opens (creating, mode 0700) the quarantine directory `dir`, then [`recover`]s what a
    /// crash may have interrupted. `dir` itself must not be a symbolic link.
    ///
    /// [`recover`]: Quarantine::recover
    pub fn open(dir: impl Into<PathBuf>) -> Result<(Self, Vec<(String, RecoveryAction)>)> {
        let dir = dir.into();
        match std::fs::DirBuilder::new().mode_0700().create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(&dir, "creating the quarantine directory", e)),
        }
        let dirfd = fsutil::open_dir(&dir)
            .map_err(|e| Error::io(&dir, "opening the quarantine directory", e))?;
        let q = Quarantine { dir, dirfd };
        let actions = q.recover()?;
        Ok((q, actions))
    }

    /// The quarantine directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> Result<Locked> {
        let fd = rustix::fs::openat(
            &self.dirfd,
            ".lock",
            OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.err(".lock", "opening the lock file", e))?;
        rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| self.err(".lock", "locking", e))?;
        Ok(Locked(fd))
    }

    fn err(&self, name: &str, what: &'static str, e: Errno) -> Error {
        Error::io(self.dir.join(name), what, e.into())
    }

    /// Moves the regular file at `path` into quarantine, recording `signature`. With
    /// `expected`, the file must still be exactly that one (as scanned), or nothing is moved.
    pub fn quarantine(
        &self,
        path: &Path,
        signature: &str,
        expected: Option<&FileIdentity>,
    ) -> Result<QuarantineRecord> {
        let _lock = self.lock()?;
        let (parent, name) = split(path)?;
        let parent_fd =
            fsutil::open_dir(&parent).map_err(|e| Error::io(&parent, "opening directory", e))?;
        let fd = rustix::fs::openat(&parent_fd, name, OPEN_FILE, Mode::empty())
            .map_err(|e| Error::io(path, "opening", e.into()))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Error::io(path, "stat", e.into()))?;
        if !fsutil::is_regular(&st) {
            return Err(Error::InvalidPath {
                path: path.into(),
                reason: "not a regular file".into(),
            });
        }
        let identity = FileIdentity::from_stat(&st);
        if expected.is_some_and(|e| *e != identity) {
            return Err(Error::InvalidPath {
                path: path.into(),
                reason: "changed since it was scanned; not quarantined".into(),
            });
        }
        let mut file = File::from(fd);
        let sha256 = sha256_of(&mut file).map_err(|e| Error::io(path, "reading", e))?;
        let id = new_id()?;
        let mut record = QuarantineRecord {
            format: 1,
            id: id.clone(),
            state: RecordState::Quarantining,
            original_path: path.to_string_lossy().into_owned(),
            original_path_hex: hex::encode(path.as_os_str().as_bytes()),
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
            mtime_ns: identity.mtime_ns,
            atime_ns: st
                .st_atime
                .saturating_mul(1_000_000_000)
                .saturating_add(st.st_atime_nsec as i64),
            size: identity.size,
            sha256,
            signature: signature.to_owned(),
            quarantined_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            method: "rename".into(),
        };
        let data = format!("{id}.data");
        self.write_record(&record)?;
        match rustix::fs::renameat_with(
            &parent_fd,
            name,
            &self.dirfd,
            data.as_str(),
            RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {}
            Err(Errno::XDEV) => {
                record.method = "copy".into();
                self.write_record(&record)?;
                self.copy_in(&mut file, &id)?;
                // Unlink the original only if the name still holds the file that was copied.
                let now = rustix::fs::statat(&parent_fd, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| Error::io(path, "stat", e.into()))?;
                if (now.st_dev, now.st_ino) != (identity.dev, identity.ino) {
                    self.discard(&id)?;
                    return Err(Error::InvalidPath {
                        path: path.into(),
                        reason: "replaced while being quarantined; left in place".into(),
                    });
                }
                rustix::fs::unlinkat(&parent_fd, name, AtFlags::empty()).map_err(|e| {
                    Error::io(path, "removing the original after copying it", e.into())
                })?;
                rustix::fs::fsync(&parent_fd).map_err(|e| Error::io(&parent, "fsync", e.into()))?;
                return self.finish_quarantine(record);
            }
            Err(e) => {
                self.discard(&id)?;
                return Err(Error::io(path, "moving into quarantine", e.into()));
            }
        }
        // Renamed: check it was the file examined (the name could have been swapped).
        let moved = rustix::fs::statat(&self.dirfd, data.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.err(&data, "stat", e))?;
        if (moved.st_dev, moved.st_ino) != (identity.dev, identity.ino) {
            rustix::fs::renameat_with(
                &self.dirfd,
                data.as_str(),
                &parent_fd,
                name,
                RenameFlags::NOREPLACE,
            )
            .map_err(|e| Error::io(path, "undoing the move into quarantine", e.into()))?;
            self.discard(&id)?;
            return Err(Error::InvalidPath {
                path: path.into(),
                reason: "replaced while being quarantined; left in place".into(),
            });
        }
        rustix::fs::fsync(&parent_fd).map_err(|e| Error::io(&parent, "fsync", e.into()))?;
        self.finish_quarantine(record)
    }

    /// Step 3: the data is in place; make it unreadable and mark the record done.
    fn finish_quarantine(&self, mut record: QuarantineRecord) -> Result<QuarantineRecord> {
        let data = format!("{}.data", record.id);
        rustix::fs::fsync(&self.dirfd).map_err(|e| self.err(".", "fsync", e))?;
        rustix::fs::chmodat(&self.dirfd, data.as_str(), Mode::empty(), AtFlags::empty())
            .map_err(|e| self.err(&data, "chmod", e))?;
        record.state = RecordState::Quarantined;
        self.write_record(&record)?;
        Ok(record)
    }

    /// Removes a record whose move did not happen (and a partial copy).
    fn discard(&self, id: &str) -> Result<()> {
        self.remove_if_present(&format!("{id}.data.tmp"))?;
        self.remove_if_present(&format!("{id}.json"))?;
        rustix::fs::fsync(&self.dirfd).map_err(|e| self.err(".", "fsync", e))
    }

    fn remove_if_present(&self, name: &str) -> Result<bool> {
        match rustix::fs::unlinkat(&self.dirfd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(self.err(name, "removing", e)),
        }
    }

    fn exists(&self, name: &str) -> Result<bool> {
        match rustix::fs::statat(&self.dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(self.err(name, "stat", e)),
        }
    }

    /// Copies `file` to `<id>.data` through `<id>.data.tmp` (fsync'ed before the rename).
    fn copy_in(&self, file: &mut File, id: &str) -> Result<()> {
        let tmp = format!("{id}.data.tmp");
        let fd = rustix::fs::openat(
            &self.dirfd,
            tmp.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.err(&tmp, "creating", e))?;
        let mut out = File::from(fd);
        copy_from_start(file, &mut out)
            .map_err(|e| Error::io(self.dir.join(&tmp), "copying into quarantine", e))?;
        let data = format!("{id}.data");
        rustix::fs::renameat(&self.dirfd, tmp.as_str(), &self.dirfd, data.as_str())
            .map_err(|e| self.err(&data, "renaming", e))?;
        rustix::fs::fsync(&self.dirfd).map_err(|e| self.err(".", "fsync", e))
    }

    /// Writes `<id>.json` atomically (temporary file, fsync, rename, fsync of the directory).
    fn write_record(&self, record: &QuarantineRecord) -> Result<()> {
        let name = format!("{}.json", record.id);
        let tmp = format!("{}.json.tmp", record.id);
        let json = serde_json::to_vec_pretty(record).map_err(|e| Error::Quarantine {
            path: self.dir.join(&name),
            reason: e.to_string(),
        })?;
        let fd = rustix::fs::openat(
            &self.dirfd,
            tmp.as_str(),
            OFlags::CREATE | OFlags::TRUNC | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.err(&tmp, "creating", e))?;
        let mut out = File::from(fd);
        out.write_all(&json)
            .and_then(|()| out.sync_all())
            .map_err(|e| Error::io(self.dir.join(&tmp), "writing the record", e))?;
        rustix::fs::renameat(&self.dirfd, tmp.as_str(), &self.dirfd, name.as_str())
            .map_err(|e| self.err(&name, "renaming", e))?;
        rustix::fs::fsync(&self.dirfd).map_err(|e| self.err(".", "fsync", e))
    }

    fn read_record(&self, id: &str) -> Result<QuarantineRecord> {
        let name = format!("{id}.json");
        let path = self.dir.join(&name);
        let fd = rustix::fs::openat(
            &self.dirfd,
            name.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| self.err(&name, "opening the record", e))?;
        let mut json = Vec::new();
        File::from(fd)
            .read_to_end(&mut json)
            .map_err(|e| Error::io(&path, "reading the record", e))?;
        let record: QuarantineRecord =
            serde_json::from_slice(&json).map_err(|e| Error::Quarantine {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if record.id != id || record.format != 1 {
            return Err(Error::Quarantine {
                path,
                reason: format!("record names id {:?}, format {}", record.id, record.format),
            });
        }
        Ok(record)
    }

    /// Ids of all records, sorted.
    fn ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, "listing", e))? {
            let entry = entry.map_err(|e| Error::io(&self.dir, "listing", e))?;
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json"))
                && valid_id(id)
            {
                ids.push(id.to_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Every entry in quarantine (state `quarantined`), oldest first.
    pub fn list(&self) -> Result<Vec<QuarantineRecord>> {
        let _lock = self.lock()?;
        let mut out = Vec::new();
        for id in self.ids()? {
            let record = self.read_record(&id)?;
            if record.state == RecordState::Quarantined {
                out.push(record);
            }
        }
        out.sort_by(|a, b| (a.quarantined_at, &a.id).cmp(&(b.quarantined_at, &b.id)));
        Ok(out)
    }

    /// Puts entry `id` back at its original path with its owner, mode and times. Refuses
    /// (changing nothing) if something exists at that path now.
    pub fn restore(&self, id: &str) -> Result<PathBuf> {
        if !valid_id(id) {
            return Err(Error::Quarantine {
                path: self.dir.join(id),
                reason: "not a quarantine id".into(),
            });
        }
        let _lock = self.lock()?;
        let mut record = self.read_record(id)?;
        if record.state != RecordState::Quarantined {
            return Err(Error::Quarantine {
                path: self.dir.join(format!("{id}.json")),
                reason: "entry is not in state quarantined (run recovery)".into(),
            });
        }
        let target = record.original_path()?;
        let (parent, name) = split(&target)?;
        let parent_fd = fsutil::open_dir(&parent)
            .map_err(|e| Error::io(&parent, "opening the original directory", e))?;
        match rustix::fs::statat(&parent_fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => {}
            Ok(_) => {
                return Err(Error::InvalidPath {
                    path: target,
                    reason: "exists; not overwritten".into(),
                });
            }
            Err(e) => return Err(Error::io(&target, "stat", e.into())),
        }
        record.state = RecordState::Restoring;
        self.write_record(&record)?;
        let data = format!("{id}.data");
        let data_fd = rustix::fs::openat(
            &self.dirfd,
            data.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| self.err(&data, "opening", e))?;
        let result = apply_metadata(&data_fd, &record)
            .map_err(|e| self.err(&data, "setting owner, mode and times", e))
            .and_then(|()| {
                match rustix::fs::renameat_with(
                    &self.dirfd,
                    data.as_str(),
                    &parent_fd,
                    name,
                    RenameFlags::NOREPLACE,
                ) {
                    Ok(()) => Ok(()),
                    Err(Errno::XDEV) => self.copy_out(&data_fd, &parent_fd, name, &record, &target),
                    Err(e) => Err(Error::io(&target, "moving back", e.into())),
                }
            });
        if let Err(e) = result {
            // Nothing was moved: back to quarantined.
            let _ = rustix::fs::fchmod(&data_fd, Mode::empty());
            record.state = RecordState::Quarantined;
            self.write_record(&record)?;
            return Err(e);
        }
        rustix::fs::fsync(&parent_fd).map_err(|e| Error::io(&parent, "fsync", e.into()))?;
        self.remove_if_present(&data)?;
        self.remove_if_present(&format!("{id}.json"))?;
        rustix::fs::fsync(&self.dirfd).map_err(|e| self.err(".", "fsync", e))?;
        Ok(target)
    }

    /// Across file systems: copy beside the target, set metadata, rename into place.
    fn copy_out(
        &self,
        data_fd: &OwnedFd,
        parent_fd: &OwnedFd,
        name: &OsStr,
        record: &QuarantineRecord,
        target: &Path,
    ) -> Result<()> {
        let tmp = restore_tmp_name(name, &record.id);
        let fd = rustix::fs::openat(
            parent_fd,
            tmp.as_os_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| Error::io(target, "creating a temporary file beside", e.into()))?;
        let mut out = File::from(fd);
        let mut input = File::from(
            data_fd
                .try_clone()
                .map_err(|e| Error::io(target, "dup", e))?,
        );
        let copied = copy_from_start(&mut input, &mut out)
            .and_then(|()| apply_metadata(&out, record).map_err(Into::into))
            .and_then(|()| {
                rustix::fs::renameat_with(
                    parent_fd,
                    tmp.as_os_str(),
                    parent_fd,
                    name,
                    RenameFlags::NOREPLACE,
                )
                .map_err(Into::into)
            });
        if let Err(e) = copied {
            let _ = rustix::fs::unlinkat(parent_fd, tmp.as_os_str(), AtFlags::empty());
            return Err(Error::io(target, "copying back", e));
        }
        Ok(())
    }

    /// Finishes or rolls back every entry a crash interrupted, and removes temporary files
    /// left behind. Safe to run at any time; [`open`](Quarantine::open) runs it.
    pub fn recover(&self) -> Result<Vec<(String, RecoveryAction)>> {
        let _lock = self.lock()?;
        let mut actions = Vec::new();
        let ids = self.ids()?;
        for entry in std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, "listing", e))? {
            let entry = entry.map_err(|e| Error::io(&self.dir, "listing", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Temporary records were never published; partial copies of unrecorded entries and
            // data without a record cannot come from an interrupted step.
            let stray = name
                .strip_suffix(".json.tmp")
                .map(|id| (id, true))
                .or_else(|| name.strip_suffix(".data.tmp").map(|id| (id, false)));
            if let Some((id, always)) = stray
                && (always || !ids.iter().any(|i| i == id))
            {
                self.remove_if_present(&name)?;
                actions.push((
                    id.to_owned(),
                    RecoveryAction::RemovedTemporary(self.dir.join(&name)),
                ));
            }
        }
        for id in ids {
            let record = self.read_record(&id)?;
            if let Some(action) = self.recover_one(record)? {
                actions.push((id, action));
            }
        }
        Ok(actions)
    }

    fn recover_one(&self, mut record: QuarantineRecord) -> Result<Option<RecoveryAction>> {
        let id = record.id.clone();
        let data = format!("{id}.data");
        let target = record.original_path()?;
        let (parent, name) = split(&target)?;
        let parent_fd = fsutil::open_dir(&parent).ok();
        // The original path's content hash, if a regular file is there.
        let original_hash = |parent_fd: &OwnedFd| -> Result<Option<(String, FileIdentity)>> {
            match rustix::fs::openat(parent_fd, name, OPEN_FILE, Mode::empty()) {
                Ok(fd) => {
                    let mut f = File::from(fd);
                    let id = FileIdentity::of(&f).map_err(|e| Error::io(&target, "stat", e))?;
                    Ok(Some((
                        sha256_of(&mut f).map_err(|e| Error::io(&target, "reading", e))?,
                        id,
                    )))
                }
                Err(Errno::NOENT) => Ok(None),
                Err(e) => Err(Error::io(&target, "opening", e.into())),
            }
        };
        let data_present = self.exists(&data)?;
        match record.state {
            RecordState::Quarantined => {
                if data_present {
                    return Ok(None);
                }
                Err(Error::Quarantine {
                    path: self.dir.join(&data),
                    reason: "record without its data file".into(),
                })
            }
            RecordState::Quarantining => {
                if !data_present {
                    self.discard(&id)?;
                    return Ok(Some(RecoveryAction::LeftInPlace));
                }
                if record.method == "copy"
                    && let Some(pfd) = &parent_fd
                    && let Some((hash, _)) = original_hash(pfd)?
                    && hash == record.sha256
                {
                    rustix::fs::unlinkat(pfd, name, AtFlags::empty()).map_err(|e| {
                        Error::io(&target, "removing the copied original", e.into())
                    })?;
                    rustix::fs::fsync(pfd).map_err(|e| Error::io(&parent, "fsync", e.into()))?;
                }
                self.finish_quarantine(record)?;
                Ok(Some(RecoveryAction::Quarantined))
            }
            RecordState::Restoring => {
                if let Some(pfd) = &parent_fd {
                    let _ = rustix::fs::unlinkat(
                        pfd,
                        restore_tmp_name(name, &id).as_os_str(),
                        AtFlags::empty(),
                    );
                    if let Some((hash, _)) = original_hash(pfd)?
                        && hash == record.sha256
                    {
                        // Back in place: make sure the metadata is the recorded one.
                        let fd = rustix::fs::openat(pfd, name, OPEN_FILE, Mode::empty())
                            .map_err(|e| Error::io(&target, "opening", e.into()))?;
                        apply_metadata(&fd, &record).map_err(|e| {
                            Error::io(&target, "setting owner, mode and times", e.into())
                        })?;
                        rustix::fs::fsync(pfd)
                            .map_err(|e| Error::io(&parent, "fsync", e.into()))?;
                        self.remove_if_present(&data)?;
                        self.remove_if_present(&format!("{id}.json"))?;
                        rustix::fs::fsync(&self.dirfd).map_err(|e| self.err(".", "fsync", e))?;
                        return Ok(Some(RecoveryAction::Restored));
                    }
                }
                if !data_present {
                    return Err(Error::Quarantine { path: self.dir.join(&data), reason: "interrupted restore: neither the data file nor the restored file is present".into() });
                }
                self.finish_quarantine(record.clone())?;
                record.state = RecordState::Quarantined;
                Ok(Some(RecoveryAction::KeptInQuarantine))
            }
        }
    }
}

/// The temporary name a cross-file-system restore copies to, beside the target.
fn restore_tmp_name(name: &OsStr, id: &str) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".hg-restore-{id}"));
    tmp
}

fn apply_metadata(fd: impl AsFd, record: &QuarantineRecord) -> rustix::io::Result<()> {
    let fd = fd.as_fd();
    let current = rustix::fs::fstat(fd)?;
    if (current.st_uid, current.st_gid) != (record.uid, record.gid) {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(record.uid)),
            Some(rustix::fs::Gid::from_raw(record.gid)),
        )?;
    }
    // After chown, which clears setuid/setgid bits.
    rustix::fs::fchmod(fd, Mode::from_raw_mode(record.mode))?;
    let ts = |ns: i64| Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    };
    rustix::fs::futimens(
        fd,
        &Timestamps {
            last_access: ts(record.atime_ns),
            last_modification: ts(record.mtime_ns),
        },
    )
}

fn copy_from_start(input: &mut File, out: &mut File) -> std::io::Result<()> {
    use std::io::Seek;
    input.seek(std::io::SeekFrom::Start(0))?;
    std::io::copy(input, out)?;
    out.sync_all()
}

fn sha256_of(file: &mut File) -> std::io::Result<String> {
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish()))
}

/// Ids are `<unix seconds>-<16 hex digits>`: safe as file names and easy to type.
fn new_id() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut random = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| Error::Source(std::io::Error::other("no randomness for a quarantine id")))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(format!("{secs}-{}", hex::encode(random)))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Splits an absolute path into its directory and final name.
fn split(path: &Path) -> Result<(PathBuf, &OsStr)> {
    let invalid = |reason: &str| Error::InvalidPath {
        path: path.into(),
        reason: reason.into(),
    };
    if !path.is_absolute() {
        return Err(invalid("must be absolute"));
    }
    let name = path
        .file_name()
        .ok_or_else(|| invalid("has no file name"))?;
    let parent = path
        .parent()
        .ok_or_else(|| invalid("has no parent directory"))?;
    Ok((parent.to_path_buf(), name))
}

trait Mode0700 {
    fn mode_0700(&mut self) -> &mut Self;
}

impl Mode0700 for std::fs::DirBuilder {
    fn mode_0700(&mut self) -> &mut Self {
        std::os::unix::fs::DirBuilderExt::mode(self, 0o700)
    }
}
