//! [`TargetDir`] operations for restoring over an existing tree: files
//! written under a temporary name and renamed into place, comparing an
//! existing entry with the snapshot, and deleting entries that are not in
//! the snapshot (`restore --delete`).
//!
//! The same rules as in the parent module hold: every path is a list of
//! validated components below the target, parents are opened without
//! following symlinks, and nothing is ever followed or deleted outside the
//! target (a recursive delete opens each directory with `O_NOFOLLOW` below
//! the descriptor of its parent and unlinks symlinks themselves).

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::{rel_display, TargetDir};
use crate::error::SourceError;

/// Prefix of the temporary names of files being restored. A restore killed
/// with SIGKILL may leave such files behind; a rerun ignores them (they are
/// not in the snapshot) and `--delete` removes them.
pub const TEMP_PREFIX: &str = ".bunker-restore-";

/// Distinguishes the temporary names of one process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// What is at a path in the target (never following a symlink there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryStat {
    /// Regular file.
    pub is_file: bool,
    /// Real directory (not a symlink to one).
    pub is_dir: bool,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
}

impl TargetDir {
    /// Create a new, empty file (mode 0600) under a temporary name in the
    /// directory of `rel`; returns it and its name. The caller later calls
    /// [`TargetDir::commit_temp`] or [`TargetDir::discard_temp`].
    pub fn create_temp(&self, rel: &[&[u8]]) -> Result<(File, Vec<u8>), SourceError> {
        let (dir, _) = self.parent(rel)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut last = Errno::EXIST;
        // A name left by a killed restore of a process with the same pid
        // and sequence number is possible: try a few others.
        for _ in 0..8 {
            let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
            let tmp = format!("{TEMP_PREFIX}{}-{seq}", std::process::id()).into_bytes();
            match rustix::fs::openat(
                &dir,
                OsStr::from_bytes(&tmp),
                flags,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => return Ok((File::from(fd), tmp)),
                Err(Errno::EXIST) => last = Errno::EXIST,
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        Err(SourceError::errno("create", rel_display(rel), last))
    }

    /// Rename the temporary file `tmp` (made by [`TargetDir::create_temp`]
    /// for `rel`) to `rel`. With `replace`, an existing non-directory at
    /// `rel` is replaced atomically; without it an existing entry is an
    /// `EEXIST` error and the temporary file stays (discard it).
    pub fn commit_temp(&self, rel: &[&[u8]], tmp: &[u8], replace: bool) -> Result<(), SourceError> {
        let (dir, name) = self.parent(rel)?;
        let flags = if replace {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        let res = rustix::fs::renameat_with(
            &dir,
            OsStr::from_bytes(tmp),
            &dir,
            OsStr::from_bytes(name),
            flags,
        );
        match res {
            // Old kernels or file systems without RENAME_NOREPLACE: a link
            // and an unlink give the same no-replace guarantee.
            Err(Errno::INVAL | Errno::NOSYS) if !replace => {
                rustix::fs::linkat(
                    &dir,
                    OsStr::from_bytes(tmp),
                    &dir,
                    OsStr::from_bytes(name),
                    AtFlags::empty(),
                )
                .map_err(|e| SourceError::errno("link", rel_display(rel), e))?;
                let _ = rustix::fs::unlinkat(&dir, OsStr::from_bytes(tmp), AtFlags::empty());
                Ok(())
            }
            Err(Errno::ISDIR | Errno::NOTEMPTY) => Err(SourceError::UnexpectedType {
                path: rel_display(rel),
                message: "is a directory",
            }),
            Err(e) => Err(SourceError::errno("rename", rel_display(rel), e)),
            Ok(()) => Ok(()),
        }
    }

    /// Remove the temporary file `tmp` of `rel` (best effort: a restore
    /// that could not write a file must not fail twice).
    pub fn discard_temp(&self, rel: &[&[u8]], tmp: &[u8]) {
        if let Ok((dir, _)) = self.parent(rel) {
            let _ = rustix::fs::unlinkat(&dir, OsStr::from_bytes(tmp), AtFlags::empty());
        }
    }

    /// What is at `rel`, or `None` when nothing (or its parent is missing).
    pub fn stat(&self, rel: &[&[u8]]) -> Result<Option<EntryStat>, SourceError> {
        let (dir, name) = match self.parent(rel) {
            Ok(v) => v,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(&dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
            // `as`: st_mtime is i32 on some 32-bit targets.
            #[allow(clippy::unnecessary_cast)]
            Ok(st) => {
                let ft = FileType::from_raw_mode(st.st_mode);
                Ok(Some(EntryStat {
                    is_file: ft == FileType::RegularFile,
                    is_dir: ft == FileType::Directory,
                    size: st.st_size as u64,
                    mtime: (st.st_mtime as i64, st.st_mtime_nsec as u32),
                }))
            }
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(SourceError::errno("lstat", rel_display(rel), e)),
        }
    }

    /// Open the regular file at `rel` for reading (never through a symlink;
    /// a FIFO or device is refused without blocking on it).
    pub fn open_read(&self, rel: &[&[u8]]) -> Result<File, SourceError> {
        let (dir, name) = self.parent(rel)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, OsStr::from_bytes(name), flags, Mode::empty())
            .map_err(|e| SourceError::errno("open", rel_display(rel), e))?;
        let st =
            rustix::fs::fstat(&fd).map_err(|e| SourceError::errno("fstat", rel_display(rel), e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(SourceError::UnexpectedType {
                path: rel_display(rel),
                message: "is not a regular file",
            });
        }
        Ok(File::from(fd))
    }

    /// The names in the directory at `rel` (the target itself when `rel` is
    /// empty), without `.` and `..`; an empty list when it does not exist.
    pub fn list_dir(&self, rel: &[&[u8]]) -> Result<Vec<Vec<u8>>, SourceError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = if rel.is_empty() {
            rustix::fs::openat(&self.root, ".", flags, Mode::empty())
        } else {
            let (dir, name) = match self.parent(rel) {
                Ok(v) => v,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            rustix::fs::openat(&dir, OsStr::from_bytes(name), flags, Mode::empty())
        };
        let fd = match fd {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(Vec::new()),
            Err(e) => return Err(SourceError::errno("opendir", rel_display(rel), e)),
        };
        read_names(fd).map_err(|e| SourceError::errno("readdir", rel_display(rel), e))
    }

    /// Delete the entry at `rel` and, for a directory, everything below it.
    /// Symlinks are removed themselves, never followed; a directory is
    /// entered only through a descriptor opened with `O_NOFOLLOW` from its
    /// parent's, so nothing outside the target can be reached. Returns the
    /// number of entries removed.
    pub fn remove_all(&self, rel: &[&[u8]]) -> Result<u64, SourceError> {
        let (dir, name) = self.parent(rel)?;
        remove_tree(dir.as_fd(), OsStr::from_bytes(name), 0)
            .map_err(|e| SourceError::errno("remove", rel_display(rel), e))
    }
}

/// Directories nested deeper than this are not removed (a guard against a
/// runaway recursion; no restore creates such trees).
const MAX_REMOVE_DEPTH: usize = 4096;

fn read_names(fd: impl AsFd) -> rustix::io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    let mut d = rustix::fs::Dir::read_from(&fd)?;
    while let Some(entry) = d.read() {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    Ok(names)
}

fn remove_tree(
    dir: rustix::fd::BorrowedFd<'_>,
    name: &OsStr,
    depth: usize,
) -> rustix::io::Result<u64> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(1),
        Err(Errno::NOENT) => return Ok(0),
        // EISDIR on Linux, EPERM elsewhere: a directory.
        Err(Errno::ISDIR | Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    if depth >= MAX_REMOVE_DEPTH {
        return Err(Errno::LOOP);
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let sub = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    let mut removed = 0;
    for child in read_names(&sub)? {
        removed += remove_tree(sub.as_fd(), OsStr::from_bytes(&child), depth + 1)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    Ok(removed + 1)
}
