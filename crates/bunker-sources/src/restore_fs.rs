//! Safe creation of restored objects inside a target directory.
//!
//! Every operation takes a path *relative to the target* as a list of raw
//! name components. Each component is validated ([`validate_name`]) and
//! the parent directories are opened one by one with
//! `openat(O_NOFOLLOW | O_DIRECTORY)`, so neither hostile names nor symlinks
//! (planted by the snapshot itself or pre-existing) can make an operation
//! touch anything outside the target. The final component is never followed
//! either (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `linkat` without
//! `AT_SYMLINK_FOLLOW`).
//!
//! Directories opened that way are kept in a small cache (by relative path),
//! so restoring a tree costs one `openat` per directory instead of one per
//! path component of every file: a file ten levels deep used to cost ten
//! `openat`/`close` pairs for its creation and ten more for its metadata.
//! A cached descriptor still names the directory that was checked when it
//! was opened, even if the name is later swapped for a symlink.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::error::SourceError;
use crate::meta::FileKind;

/// Metadata to apply to a restored object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreMeta {
    /// Mode; only the low 12 bits (permissions, setuid/setgid/sticky) are used.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Access time (seconds, nanoseconds).
    pub atime: (i64, u32),
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Extended attributes (name, value).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Counters of metadata that could not be applied but was not fatal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Extended attributes skipped because the file system refused them.
    pub xattrs_skipped: u64,
    /// Ownership changes skipped because we are not root.
    pub chown_skipped: u64,
}

/// Check that a name from a snapshot is a single, harmless path component.
pub fn validate_name(name: &[u8]) -> Result<(), SourceError> {
    let reason = if name.is_empty() {
        "empty name"
    } else if name == b"." || name == b".." {
        "dot or dot-dot"
    } else if name.contains(&b'/') {
        "contains '/'"
    } else if name.contains(&0) {
        "contains NUL"
    } else {
        return Ok(());
    };
    Err(SourceError::InvalidName {
        name: name.to_vec(),
        reason,
    })
}

/// An open restore target directory.
#[derive(Debug)]
pub struct TargetDir {
    root: OwnedFd,
    path: PathBuf,
    xattrs_skipped: AtomicU64,
    chown_skipped: AtomicU64,
    /// Directories below the root opened with `O_NOFOLLOW | O_DIRECTORY`,
    /// keyed by their validated components joined with `/`.
    dirs: Mutex<HashMap<Vec<u8>, Arc<OwnedFd>>>,
}

/// Directory descriptors kept at most (a depth-first restore needs about
/// one per level of the tree; the cache is emptied when it is full).
const DIR_CACHE_MAX: usize = 64;

enum Dir<'a> {
    Root(BorrowedFd<'a>),
    Sub(Arc<OwnedFd>),
}

impl AsFd for Dir<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Dir::Root(fd) => *fd,
            Dir::Sub(fd) => fd.as_fd(),
        }
    }
}

/// Cache key of the first `n` components of `dirs`.
fn dir_key(dirs: &[&[u8]], n: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(dirs[..n].iter().map(|c| c.len() + 1).sum());
    for (i, c) in dirs[..n].iter().enumerate() {
        if i > 0 {
            key.push(b'/');
        }
        key.extend_from_slice(c);
    }
    key
}

/// Flags to open a directory for traversal only.
fn dir_flags() -> OFlags {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let base = OFlags::PATH;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let base = OFlags::RDONLY;
    base | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn rel_display(rel: &[&[u8]]) -> PathBuf {
    let mut p = PathBuf::new();
    for c in rel {
        p.push(OsStr::from_bytes(c));
    }
    p
}

fn timespec((secs, nanos): (i64, u32)) -> Timespec {
    Timespec {
        tv_sec: secs,
        tv_nsec: nanos.min(999_999_999) as _,
    }
}

fn is_unsupported(e: Errno) -> bool {
    e == Errno::NOTSUP || e == Errno::OPNOTSUPP
}

impl TargetDir {
    /// Open (and with `create`, first create) the target directory. The
    /// target path itself is trusted and may contain symlinks.
    pub fn open(path: &Path, create: bool) -> Result<TargetDir, SourceError> {
        if create {
            std::fs::create_dir_all(path).map_err(|e| SourceError::io("mkdir", path, e))?;
        }
        let root = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SourceError::errno("open target", path, e))?;
        Ok(TargetDir {
            root,
            path: path.to_path_buf(),
            xattrs_skipped: AtomicU64::new(0),
            chown_skipped: AtomicU64::new(0),
            dirs: Mutex::new(HashMap::new()),
        })
    }

    /// The target path as given to [`TargetDir::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters of skipped (non-fatal) metadata.
    pub fn stats(&self) -> RestoreStats {
        RestoreStats {
            xattrs_skipped: self.xattrs_skipped.load(Ordering::Relaxed),
            chown_skipped: self.chown_skipped.load(Ordering::Relaxed),
        }
    }

    /// Validate `rel` and open its parent directory without following any
    /// symlink (or take it from the cache). Returns the parent and the final name.
    fn parent<'a, 'r>(&'a self, rel: &[&'r [u8]]) -> Result<(Dir<'a>, &'r [u8]), SourceError> {
        let (last, dirs) = rel.split_last().ok_or(SourceError::EmptyPath)?;
        for c in rel {
            validate_name(c)?;
        }
        if dirs.is_empty() {
            return Ok((Dir::Root(self.root.as_fd()), last));
        }
        // The deepest already opened ancestor (or the parent itself).
        let (mut done, mut cur) = {
            let cache = self.dirs.lock().unwrap_or_else(PoisonError::into_inner);
            let mut found = (0, Dir::Root(self.root.as_fd()));
            for n in (1..=dirs.len()).rev() {
                if let Some(fd) = cache.get(dir_key(dirs, n).as_slice()) {
                    found = (n, Dir::Sub(fd.clone()));
                    break;
                }
            }
            found
        };
        while done < dirs.len() {
            let fd = rustix::fs::openat(
                cur.as_fd(),
                OsStr::from_bytes(dirs[done]),
                dir_flags(),
                Mode::empty(),
            )
            .map_err(|e| SourceError::errno("openat", rel_display(&rel[..=done]), e))?;
            done += 1;
            let fd = Arc::new(fd);
            let mut cache = self.dirs.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.len() >= DIR_CACHE_MAX {
                cache.clear();
            }
            cache.insert(dir_key(dirs, done), fd.clone());
            cur = Dir::Sub(fd);
        }
        Ok((cur, last))
    }

    /// Create a directory; succeeds if a real directory already exists
    /// there. Returns whether it was created (`false`: it existed).
    pub fn mkdir(&self, rel: &[&[u8]], mode: u32) -> Result<bool, SourceError> {
        let (dir, name) = self.parent(rel)?;
        let name = OsStr::from_bytes(name);
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode & 0o7777)) {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| SourceError::errno("lstat", rel_display(rel), e))?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    Ok(false)
                } else {
                    Err(SourceError::UnexpectedType {
                        path: rel_display(rel),
                        message: "exists and is not a directory",
                    })
                }
            }
            Err(e) => Err(SourceError::errno("mkdirat", rel_display(rel), e)),
        }
    }

    /// Create a regular file for writing (mode 0600 until [`apply_meta`]).
    /// Without `overwrite` an existing entry is an error; with it, an
    /// existing non-directory (including a symlink) is unlinked first, so
    /// other hard links to it are left untouched.
    ///
    /// [`apply_meta`]: TargetDir::apply_meta
    pub fn create_file(&self, rel: &[&[u8]], overwrite: bool) -> Result<File, SourceError> {
        let (dir, name) = self.parent(rel)?;
        let name = OsStr::from_bytes(name);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(0o600);
        match rustix::fs::openat(&dir, name, flags, mode) {
            Ok(fd) => return Ok(File::from(fd)),
            Err(Errno::EXIST) if overwrite => {}
            Err(e) => return Err(SourceError::errno("create", rel_display(rel), e)),
        }
        remove_non_dir(&dir, name, rel)?;
        let fd = rustix::fs::openat(&dir, name, flags, mode)
            .map_err(|e| SourceError::errno("create", rel_display(rel), e))?;
        Ok(File::from(fd))
    }

    /// Remove a non-directory entry.
    pub fn remove(&self, rel: &[&[u8]]) -> Result<(), SourceError> {
        let (dir, name) = self.parent(rel)?;
        remove_non_dir(&dir, OsStr::from_bytes(name), rel)
    }

    /// Create a symlink pointing to `target` (stored verbatim, never followed).
    pub fn symlink(&self, rel: &[&[u8]], target: &[u8]) -> Result<(), SourceError> {
        if target.contains(&0) {
            return Err(SourceError::InvalidName {
                name: target.to_vec(),
                reason: "symlink target contains NUL",
            });
        }
        let (dir, name) = self.parent(rel)?;
        rustix::fs::symlinkat(OsStr::from_bytes(target), &dir, OsStr::from_bytes(name))
            .map_err(|e| SourceError::errno("symlinkat", rel_display(rel), e))
    }

    /// Hard-link `new_rel` to the existing `existing_rel`; both inside the
    /// target. A symlink at `existing_rel` is linked itself, not followed.
    pub fn hardlink(&self, existing_rel: &[&[u8]], new_rel: &[&[u8]]) -> Result<(), SourceError> {
        let (old_dir, old_name) = self.parent(existing_rel)?;
        let (new_dir, new_name) = self.parent(new_rel)?;
        rustix::fs::linkat(
            &old_dir,
            OsStr::from_bytes(old_name),
            &new_dir,
            OsStr::from_bytes(new_name),
            AtFlags::empty(),
        )
        .map_err(|e| SourceError::errno("linkat", rel_display(new_rel), e))
    }

    /// Create a device node, FIFO or socket node.
    pub fn mknod(
        &self,
        rel: &[&[u8]],
        kind: FileKind,
        mode: u32,
        rdev: u64,
    ) -> Result<(), SourceError> {
        let ft = match kind {
            FileKind::BlockDev => FileType::BlockDevice,
            FileKind::CharDev => FileType::CharacterDevice,
            FileKind::Fifo => FileType::Fifo,
            FileKind::Socket => FileType::Socket,
            _ => {
                return Err(SourceError::UnexpectedType {
                    path: rel_display(rel),
                    message: "mknod only creates devices, FIFOs and sockets",
                })
            }
        };
        let (dir, name) = self.parent(rel)?;
        let rdev = if matches!(kind, FileKind::BlockDev | FileKind::CharDev) {
            rdev
        } else {
            0
        };
        rustix::fs::mknodat(
            &dir,
            OsStr::from_bytes(name),
            ft,
            Mode::from_raw_mode(mode & 0o7777),
            rdev as _,
        )
        .map_err(|e| SourceError::errno("mknodat", rel_display(rel), e))
    }

    /// Create a FIFO.
    pub fn mkfifo(&self, rel: &[&[u8]], mode: u32) -> Result<(), SourceError> {
        self.mknod(rel, FileKind::Fifo, mode, 0)
    }

    /// Whether an entry exists at `rel` (a dangling symlink exists). A missing
    /// parent yields `false`; a parent that is not a real directory is an error.
    pub fn exists(&self, rel: &[&[u8]]) -> Result<bool, SourceError> {
        let (dir, name) = match self.parent(rel) {
            Ok(v) => v,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(&dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(SourceError::errno("lstat", rel_display(rel), e)),
        }
    }

    /// Apply ownership, extended attributes, mode and times, in that order
    /// (chown clears setuid bits, so chmod comes after it; times come last).
    /// `is_symlink` must match what is on disk. Directories should get their
    /// metadata after their children were restored.
    pub fn apply_meta(
        &self,
        rel: &[&[u8]],
        meta: &RestoreMeta,
        is_symlink: bool,
    ) -> Result<(), SourceError> {
        let (dir, name) = self.parent(rel)?;
        let name_os = OsStr::from_bytes(name);
        let st = rustix::fs::statat(&dir, name_os, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| SourceError::errno("lstat", rel_display(rel), e))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if (ft == FileType::Symlink) != is_symlink {
            return Err(SourceError::UnexpectedType {
                path: rel_display(rel),
                message: if is_symlink {
                    "expected a symlink"
                } else {
                    "unexpected symlink"
                },
            });
        }

        let owner = Some(rustix::process::Uid::from_raw(meta.uid));
        let group = Some(rustix::process::Gid::from_raw(meta.gid));
        if let Err(e) = rustix::fs::chownat(&dir, name_os, owner, group, AtFlags::SYMLINK_NOFOLLOW)
        {
            if rustix::process::geteuid().is_root() || !(e == Errno::PERM || e == Errno::INVAL) {
                return Err(SourceError::errno("lchown", rel_display(rel), e));
            }
            self.chown_skipped.fetch_add(1, Ordering::Relaxed);
        }

        if !meta.xattrs.is_empty() {
            self.set_xattrs(&dir, name, ft, &meta.xattrs, rel)?;
        }

        if !is_symlink {
            rustix::fs::chmodat(
                &dir,
                name_os,
                Mode::from_raw_mode(meta.mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(|e| SourceError::errno("chmod", rel_display(rel), e))?;
        }

        let times = Timestamps {
            last_access: timespec(meta.atime),
            last_modification: timespec(meta.mtime),
        };
        rustix::fs::utimensat(&dir, name_os, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| SourceError::errno("utimensat", rel_display(rel), e))
    }

    /// [`TargetDir::apply_meta`] for a regular file restored through `file`
    /// (the descriptor [`TargetDir::create_file`] returned): the same
    /// ownership, xattrs, mode and times, set through the descriptor, so no
    /// path is looked up again. `rel` only names the file in errors.
    pub fn apply_file_meta(
        &self,
        rel: &[&[u8]],
        file: &File,
        meta: &RestoreMeta,
    ) -> Result<(), SourceError> {
        let owner = Some(rustix::process::Uid::from_raw(meta.uid));
        let group = Some(rustix::process::Gid::from_raw(meta.gid));
        if let Err(e) = rustix::fs::fchown(file, owner, group) {
            if rustix::process::geteuid().is_root() || !(e == Errno::PERM || e == Errno::INVAL) {
                return Err(SourceError::errno("fchown", rel_display(rel), e));
            }
            self.chown_skipped.fetch_add(1, Ordering::Relaxed);
        }
        for (xname, value) in &meta.xattrs {
            if xname.is_empty() || xname.contains(&0) {
                self.xattrs_skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let res =
                rustix::fs::fsetxattr(file, OsStr::from_bytes(xname), value, XattrFlags::empty());
            self.xattr_result(res, xname, rel)?;
        }
        rustix::fs::fchmod(file, Mode::from_raw_mode(meta.mode & 0o7777))
            .map_err(|e| SourceError::errno("fchmod", rel_display(rel), e))?;
        let times = Timestamps {
            last_access: timespec(meta.atime),
            last_modification: timespec(meta.mtime),
        };
        rustix::fs::futimens(file, &times)
            .map_err(|e| SourceError::errno("futimens", rel_display(rel), e))
    }

    /// Count an xattr the file system refused; other errors are errors.
    fn xattr_result(
        &self,
        res: rustix::io::Result<()>,
        xname: &[u8],
        rel: &[&[u8]],
    ) -> Result<(), SourceError> {
        match res {
            Ok(()) => Ok(()),
            Err(e) if is_unsupported(e) || e == Errno::PERM || e == Errno::NOENT => {
                tracing::debug!(path = %rel_display(rel).display(), xattr = %String::from_utf8_lossy(xname), error = %e, "xattr not restored");
                self.xattrs_skipped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(SourceError::errno("setxattr", rel_display(rel), e)),
        }
    }

    fn set_xattrs(
        &self,
        dir: &Dir<'_>,
        name: &[u8],
        ft: FileType,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        rel: &[&[u8]],
    ) -> Result<(), SourceError> {
        let name_os = OsStr::from_bytes(name);
        // Regular files and directories: through an fd opened without
        // following symlinks. Others (symlinks, devices, FIFOs): by name
        // relative to the already-opened parent, via its /proc fd link.
        let fd = if matches!(ft, FileType::RegularFile | FileType::Directory) {
            let flags = OFlags::RDONLY
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::CLOEXEC;
            rustix::fs::openat(dir, name_os, flags, Mode::empty()).ok()
        } else {
            None
        };
        let mut proc_path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd()));
        proc_path.push(name_os);
        for (xname, value) in xattrs {
            if xname.is_empty() || xname.contains(&0) {
                self.xattrs_skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let xname_os = OsStr::from_bytes(xname);
            let res = match &fd {
                Some(fd) => rustix::fs::fsetxattr(fd, xname_os, value, XattrFlags::empty()),
                None => rustix::fs::lsetxattr(&proc_path, xname_os, value, XattrFlags::empty()),
            };
            self.xattr_result(res, xname, rel)?;
        }
        Ok(())
    }
}

fn remove_non_dir(dir: &Dir<'_>, name: &OsStr, rel: &[&[u8]]) -> Result<(), SourceError> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM)
            if rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory) =>
        {
            Err(SourceError::UnexpectedType {
                path: rel_display(rel),
                message: "is a directory",
            })
        }
        Err(e) => Err(SourceError::errno("unlinkat", rel_display(rel), e)),
    }
}

#[path = "restore_fs_replace.rs"]
mod replace;
pub use replace::{EntryStat, TEMP_PREFIX};

#[cfg(test)]
#[path = "restore_fs_tests.rs"]
mod tests;
