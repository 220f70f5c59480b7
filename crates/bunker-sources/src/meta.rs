//! File metadata as seen by `lstat(2)`, plus cached user/group names.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use crate::error::SourceError;

/// Type of a file-system object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Block device.
    BlockDev,
    /// Character device.
    CharDev,
    /// Named pipe.
    Fifo,
    /// Unix domain socket.
    Socket,
}

impl FileKind {
    /// Derive the kind from the `S_IFMT` bits of an `st_mode`.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        match mode & S_IFMT {
            S_IFREG => Some(FileKind::File),
            S_IFDIR => Some(FileKind::Dir),
            S_IFLNK => Some(FileKind::Symlink),
            S_IFBLK => Some(FileKind::BlockDev),
            S_IFCHR => Some(FileKind::CharDev),
            S_IFIFO => Some(FileKind::Fifo),
            S_IFSOCK => Some(FileKind::Socket),
            _ => None,
        }
    }

    /// The `S_IFMT` bits of this kind.
    pub fn type_bits(self) -> u32 {
        match self {
            FileKind::File => S_IFREG,
            FileKind::Dir => S_IFDIR,
            FileKind::Symlink => S_IFLNK,
            FileKind::BlockDev => S_IFBLK,
            FileKind::CharDev => S_IFCHR,
            FileKind::Fifo => S_IFIFO,
            FileKind::Socket => S_IFSOCK,
        }
    }
}

/// POSIX file type bits (identical on Linux and the BSDs).
pub const S_IFMT: u32 = 0o170000;
const S_IFSOCK: u32 = 0o140000;
const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;
const S_IFBLK: u32 = 0o060000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFIFO: u32 = 0o010000;

/// Extended attributes as (name, value) pairs.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Metadata of one file-system object, not following symlinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsMeta {
    /// Object type.
    pub kind: FileKind,
    /// Full `st_mode`: type bits, setuid/setgid/sticky and permissions.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Owner user name, if it resolves.
    pub user: Option<String>,
    /// Owner group name, if it resolves.
    pub group: Option<String>,
    /// Size in bytes (`st_size`).
    pub size: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Access time (seconds, nanoseconds).
    pub atime: (i64, u32),
    /// Status change time (seconds, nanoseconds).
    pub ctime: (i64, u32),
    /// Inode number.
    pub inode: u64,
    /// Device of the file system holding the object.
    pub dev: u64,
    /// Number of hard links.
    pub nlink: u64,
    /// Device number for block/char devices.
    pub rdev: u64,
    /// Allocated 512-byte blocks (`st_blocks`), used to detect sparse files.
    pub blocks: u64,
    /// Target of a symlink, raw bytes.
    pub link_target: Option<Vec<u8>>,
    /// Extended attributes sorted by name (only when requested).
    pub xattrs: Xattrs,
}

impl FsMeta {
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }
}

fn nanos(n: i64) -> u32 {
    u32::try_from(n.clamp(0, 999_999_999)).unwrap_or(0)
}

/// `lstat` a path and collect its metadata. Symlinks are not followed; their
/// target is read. With `with_xattrs`, extended attributes are listed too
/// (a file system without xattr support yields an empty list).
pub fn lstat_meta(path: &Path, with_xattrs: bool) -> Result<FsMeta, SourceError> {
    let md = std::fs::symlink_metadata(path).map_err(|e| SourceError::io("lstat", path, e))?;
    let mode = md.mode();
    let kind = FileKind::from_mode(mode).ok_or_else(|| SourceError::UnexpectedType {
        path: path.to_path_buf(),
        message: "unknown file type",
    })?;
    let link_target = if kind == FileKind::Symlink {
        let t = std::fs::read_link(path).map_err(|e| SourceError::io("readlink", path, e))?;
        Some(t.as_os_str().as_bytes().to_vec())
    } else {
        None
    };
    let xattrs = if with_xattrs {
        read_xattrs(path)?
    } else {
        Vec::new()
    };
    Ok(FsMeta {
        kind,
        mode,
        uid: md.uid(),
        gid: md.gid(),
        user: user_name(md.uid()),
        group: group_name(md.gid()),
        size: md.size(),
        mtime: (md.mtime(), nanos(md.mtime_nsec())),
        atime: (md.atime(), nanos(md.atime_nsec())),
        ctime: (md.ctime(), nanos(md.ctime_nsec())),
        inode: md.ino(),
        dev: md.dev(),
        nlink: md.nlink(),
        rdev: md.rdev(),
        blocks: md.blocks(),
        link_target,
        xattrs,
    })
}

/// As [`lstat_meta`] without extended attributes, for the entry `name` of
/// the open directory `dir` (`path`, its full path, names it in errors).
/// `statx` relative to the directory looks up one path component instead
/// of every component of `path` again: path lookups were about 2% of a
/// cold kernel-tree backup's CPU time, most of it repeated walks of the
/// same leading directories.
pub fn lstat_meta_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
) -> Result<FsMeta, SourceError> {
    use rustix::fs::{makedev, AtFlags, StatxFlags};
    let st = match rustix::fs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    ) {
        Ok(st) => st,
        // A kernel (or sandbox) without statx: the plain call does.
        Err(rustix::io::Errno::NOSYS) => return lstat_meta(path, false),
        Err(e) => return Err(SourceError::io("lstat", path, e.into())),
    };
    let mode = u32::from(st.stx_mode);
    let kind = FileKind::from_mode(mode).ok_or_else(|| SourceError::UnexpectedType {
        path: path.to_path_buf(),
        message: "unknown file type",
    })?;
    let link_target = if kind == FileKind::Symlink {
        let t = rustix::fs::readlinkat(dir, name, Vec::new())
            .map_err(|e| SourceError::io("readlink", path, e.into()))?;
        Some(t.into_bytes())
    } else {
        None
    };
    let time = |t: rustix::fs::StatxTimestamp| (t.tv_sec, nanos(i64::from(t.tv_nsec)));
    Ok(FsMeta {
        kind,
        mode,
        uid: st.stx_uid,
        gid: st.stx_gid,
        user: user_name(st.stx_uid),
        group: group_name(st.stx_gid),
        size: st.stx_size,
        mtime: time(st.stx_mtime),
        atime: time(st.stx_atime),
        ctime: time(st.stx_ctime),
        inode: st.stx_ino,
        dev: makedev(st.stx_dev_major, st.stx_dev_minor),
        nlink: u64::from(st.stx_nlink),
        rdev: makedev(st.stx_rdev_major, st.stx_rdev_minor),
        blocks: st.stx_blocks,
        link_target,
        xattrs: Vec::new(),
    })
}

fn xattr_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == libc::ENOTSUP || code == libc::EOPNOTSUPP
    )
}

/// List all extended attributes of `path` (not following symlinks), in the
/// order the kernel lists them. Attributes that vanish between listing and
/// reading are skipped.
///
/// Invariant: the order is kept, not sorted, because restic keeps it too and
/// the order is part of the tree's JSON and so of its id: sorting made every
/// tree with xattrs differ from restic's backup of the same directory, so
/// trees never deduplicated between the tools.
pub fn read_xattrs(path: &Path) -> Result<Xattrs, SourceError> {
    collect_xattrs(path, xattr::list(path), |name| xattr::get(path, name))
}

/// As [`read_xattrs`] for an open file (`path` names it in errors): no
/// path lookup.
pub fn read_xattrs_of(file: &std::fs::File, path: &Path) -> Result<Xattrs, SourceError> {
    use xattr::FileExt;
    collect_xattrs(path, file.list_xattr(), |name| file.get_xattr(name))
}

fn collect_xattrs(
    path: &Path,
    names: std::io::Result<xattr::XAttrs>,
    get: impl Fn(&OsStr) -> std::io::Result<Option<Vec<u8>>>,
) -> Result<Xattrs, SourceError> {
    let names = match names {
        Ok(n) => n,
        Err(e) if xattr_unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(SourceError::io("llistxattr", path, e)),
    };
    let mut out = Vec::new();
    for name in names {
        match get(&name) {
            Ok(Some(value)) => out.push((name.as_bytes().to_vec(), value)),
            Ok(None) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(SourceError::io("lgetxattr", path, e)),
        }
    }
    Ok(out)
}

type NameCache = Mutex<HashMap<u32, Option<String>>>;

fn cached(
    cache: &'static OnceLock<NameCache>,
    id: u32,
    lookup: impl FnOnce(u32) -> Option<String>,
) -> Option<String> {
    let map = cache.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(guard) = map.lock() {
        if let Some(v) = guard.get(&id) {
            return v.clone();
        }
    }
    let name = lookup(id);
    if let Ok(mut guard) = map.lock() {
        guard.insert(id, name.clone());
    }
    name
}

/// Name of user `uid`, cached process-wide (thread-safe).
pub fn user_name(uid: u32) -> Option<String> {
    static CACHE: OnceLock<NameCache> = OnceLock::new();
    cached(&CACHE, uid, |id| {
        uzers::get_user_by_uid(id).map(|u| u.name().to_string_lossy().into_owned())
    })
}

/// Name of group `gid`, cached process-wide (thread-safe).
pub fn group_name(gid: u32) -> Option<String> {
    static CACHE: OnceLock<NameCache> = OnceLock::new();
    cached(&CACHE, gid, |id| {
        uzers::get_group_by_gid(id).map(|g| g.name().to_string_lossy().into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SourceErrorKind;
    use std::os::fd::AsFd;
    use std::os::unix::fs::symlink;

    #[test]
    fn file_dir_symlink_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"hello").unwrap();
        let m = lstat_meta(&f, false).unwrap();
        assert_eq!(m.kind, FileKind::File);
        assert_eq!(m.size, 5);
        assert_eq!(m.mode & S_IFMT, S_IFREG);
        assert_eq!(m.nlink, 1);
        assert!(m.link_target.is_none());

        let d = lstat_meta(dir.path(), false).unwrap();
        assert_eq!(d.kind, FileKind::Dir);

        let l = dir.path().join("l");
        symlink("some/where", &l).unwrap();
        let m = lstat_meta(&l, false).unwrap();
        assert_eq!(m.kind, FileKind::Symlink);
        assert_eq!(m.link_target.as_deref(), Some(&b"some/where"[..]));
    }

    #[test]
    fn metadata_relative_to_a_directory_matches_lstat() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"hello").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        symlink("some/where", dir.path().join("l")).unwrap();
        std::fs::hard_link(dir.path().join("f"), dir.path().join("h")).unwrap();
        let fd = rustix::fs::open(
            dir.path(),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        for name in ["f", "d", "l", "h"] {
            let path = dir.path().join(name);
            let mut at = lstat_meta_at(fd.as_fd(), OsStr::new(name), &path).unwrap();
            let mut want = lstat_meta(&path, false).unwrap();
            // Reading a symlink's target updates its access time.
            (at.atime, want.atime) = ((0, 0), (0, 0));
            assert_eq!(at, want, "{name}");
        }
        let at = lstat_meta_at(fd.as_fd(), OsStr::new("l"), &dir.path().join("l")).unwrap();
        assert_eq!(at.link_target.as_deref(), Some(&b"some/where"[..]));
        let gone = dir.path().join("nope");
        let e = lstat_meta_at(fd.as_fd(), OsStr::new("nope"), &gone).unwrap_err();
        assert_eq!(e.kind(), SourceErrorKind::NotFound);
        assert!(e.to_string().contains(&*gone.to_string_lossy()), "{e}");
    }

    #[test]
    fn xattrs_of_an_open_file_match_the_path_listing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        if xattr::set(&f, "user.b", b"2").is_err() {
            return; // no user xattrs on this file system
        }
        xattr::set(&f, "user.a", b"1").unwrap();
        let file = std::fs::File::open(&f).unwrap();
        let by_fd = read_xattrs_of(&file, &f).unwrap();
        assert_eq!(by_fd, read_xattrs(&f).unwrap());
        // Both in the kernel's listing order (user.b was set first).
        let mut sorted = by_fd.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            vec![
                (b"user.a".to_vec(), b"1".to_vec()),
                (b"user.b".to_vec(), b"2".to_vec())
            ]
        );
    }

    #[test]
    fn vanished_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let e = lstat_meta(&dir.path().join("nope"), true).unwrap_err();
        assert_eq!(e.kind(), SourceErrorKind::NotFound);
    }

    #[test]
    fn root_names_resolve_and_cache() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert!(group_name(0).is_some());
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| user_name(0)))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().as_deref(), Some("root"));
        }
    }

    #[test]
    fn xattrs_are_read_in_the_kernels_listing_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, b"").unwrap();
        if xattr::set(&f, "user.b", b"2").is_err() {
            return; // file system without user xattrs
        }
        xattr::set(&f, "user.a", b"1").unwrap();
        xattr::set(&f, "user.c", b"3").unwrap();
        let m = lstat_meta(&f, true).unwrap();
        let names: Vec<Vec<u8>> = m.xattrs.iter().map(|(n, _)| n.clone()).collect();
        // Exactly llistxattr's order (what restic stores), not re-sorted.
        let listed: Vec<Vec<u8>> = xattr::list(&f)
            .unwrap()
            .map(|n| n.as_bytes().to_vec())
            .collect();
        assert_eq!(names, listed);
        let value = |name: &[u8]| m.xattrs.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(value(b"user.a"), b"1");
        assert_eq!(value(b"user.b"), b"2");
        assert_eq!(value(b"user.c"), b"3");
        assert!(lstat_meta(&f, false).unwrap().xattrs.is_empty());
    }

    #[test]
    fn kind_mode_roundtrip() {
        for k in [
            FileKind::File,
            FileKind::Dir,
            FileKind::Symlink,
            FileKind::BlockDev,
            FileKind::CharDev,
            FileKind::Fifo,
            FileKind::Socket,
        ] {
            assert_eq!(FileKind::from_mode(k.type_bits() | 0o644), Some(k));
        }
        assert_eq!(FileKind::from_mode(0o644), None);
    }
}
