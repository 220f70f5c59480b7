//! Local directory backend with a restic-identical layout.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;

use crate::error::{ErrorKind, StorageError};
use crate::file_type::{FileInfo, FileType};
use crate::{Storage, TempFile};

#[path = "local_share.rs"]
mod share;
use share::Sharing;

const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// A repository in a local directory.
///
/// Writes go to a temp file (name starting with `.`) in the destination directory
/// (files of 1 MiB and more past the page cache, see `direct_write`),
/// are fsynced, renamed (or hard-linked for `write_new`) into place, and the directory
/// is fsynced. Files are created 0600, directories 0700, unless the
/// repository directory grants its group access: then new entries get its
/// group and group bits (see `local_share.rs` and docs/storage.md).
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
    label: String,
    /// The creation policy, read from the repository directory once it exists.
    sharing: OnceLock<Sharing>,
}

impl LocalStorage {
    /// A storage rooted at `root` (which need not exist until [`Storage::create`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let label = format!("local:{}", root.display());
        LocalStorage {
            root,
            label,
            sharing: OnceLock::new(),
        }
    }

    /// How new files and directories are created (the repository
    /// directory's group policy; private while it does not exist).
    fn share(&self) -> Sharing {
        if let Some(s) = self.sharing.get() {
            return *s;
        }
        match Sharing::of(&self.root) {
            Some(s) => *self.sharing.get_or_init(|| s),
            None => Sharing::PRIVATE,
        }
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn err(&self, e: &io::Error, rel: &str) -> StorageError {
        let mut err = StorageError::from_io(e, &self.label, rel);
        if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
            err.message = format!(
                "{}: {}",
                err.message,
                share::denied_detail(&self.root.join(rel))
            );
        }
        if err.kind == ErrorKind::NotFound && !self.root.is_dir() {
            err.message = format!(
                "repository directory {} does not exist ({})",
                self.root.display(),
                err.message
            );
        }
        err
    }

    fn full(&self, t: FileType, name: &str) -> Result<(String, PathBuf), StorageError> {
        t.check_name(name).map_err(|mut e| {
            e.backend = self.label.clone();
            e
        })?;
        let rel = t.path(name);
        let full = self.root.join(&rel);
        Ok((rel, full))
    }

    fn missing_root(&self, rel: &str) -> StorageError {
        StorageError::new(
            ErrorKind::NotFound,
            &self.label,
            rel,
            format!(
                "repository directory {} does not exist",
                self.root.display()
            ),
        )
    }

    /// Writes `data` into a fresh temp file beside `full`, fsynced. Creates the parent
    /// directory if the repository root exists but the type directory does not.
    fn write_temp(&self, rel: &str, full: &Path, data: &[u8]) -> Result<PathBuf, StorageError> {
        let dir = full.parent().unwrap_or(&self.root);
        let base = full
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{base}.tmp-{:016x}", rand::random::<u64>()));
        let share = self.share();
        let file = match share.create_file(&tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !self.root.is_dir() {
                    return Err(self.missing_root(rel));
                }
                create_dirs(&self.root, dir, share).map_err(|e| self.err(&e, rel))?;
                share.create_file(&tmp).map_err(|e| self.err(&e, rel))?
            }
            Err(e) => return Err(self.err(&e, rel)),
        };
        let res = fill_and_sync(file, data);
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(self.err(&e, rel));
        }
        Ok(tmp)
    }

    fn sync_parent(&self, full: &Path, rel: &str) -> Result<(), StorageError> {
        let dir = full.parent().unwrap_or(&self.root);
        sync_dir(dir).map_err(|e| self.err(&e, rel))
    }

    fn list_dir(&self, dir: &Path, out: &mut Vec<FileInfo>) -> Result<(), StorageError> {
        let rel = dir
            .strip_prefix(&self.root)
            .unwrap_or(dir)
            .display()
            .to_string();
        let entries = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.err(&e, &rel)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| self.err(&e, &rel))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Removed between readdir and stat: not listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err(&e, &rel)),
            };
            if meta.is_file() {
                out.push(FileInfo {
                    name,
                    size: meta.len(),
                });
            }
        }
        Ok(())
    }
}

fn fill_and_sync(file: File, data: &[u8]) -> io::Result<()> {
    crate::direct_write::write_all(&file, data)?;
    file.sync_all()
}

/// Creates `dir` and missing parents below `root` (mode and group from
/// `share`), fsyncing each parent.
fn create_dirs(root: &Path, dir: &Path, share: Sharing) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if parent != root && !parent.as_os_str().is_empty() {
            create_dirs(root, parent, share)?;
        }
    }
    match share.create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Errors from `link(2)` that mean "this filesystem cannot hard-link", not "name taken".
fn link_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::EOPNOTSUPP | libc::EMLINK | libc::EXDEV | libc::ENOSYS)
    ) || e.kind() == io::ErrorKind::Unsupported
}

impl Storage for LocalStorage {
    fn location(&self) -> String {
        self.label.clone()
    }

    fn create(&self) -> Result<(), StorageError> {
        if let Some(parent) = self.root.parent() {
            if !parent.as_os_str().is_empty() && !parent.is_dir() {
                fs::create_dir_all(parent).map_err(|e| self.err(&e, ""))?;
            }
        }
        create_dirs(Path::new(""), &self.root, Sharing::PRIVATE).map_err(|e| self.err(&e, ""))?;
        // A repository directory made beforehand with group access shares
        // the repository from the start.
        let share = self.share();
        for t in [
            FileType::Key,
            FileType::Snapshot,
            FileType::Index,
            FileType::Lock,
        ] {
            create_dirs(&self.root, &self.root.join(t.dir()), share)
                .map_err(|e| self.err(&e, t.dir()))?;
        }
        let data = self.root.join(FileType::Pack.dir());
        create_dirs(&self.root, &data, share).map_err(|e| self.err(&e, "data"))?;
        for i in 0..=255u8 {
            let sub = format!("{i:02x}");
            create_dirs(&self.root, &data.join(&sub), share)
                .map_err(|e| self.err(&e, &format!("data/{sub}")))?;
        }
        sync_dir(&data).map_err(|e| self.err(&e, "data"))?;
        sync_dir(&self.root).map_err(|e| self.err(&e, ""))
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, StorageError> {
        if !self.root.is_dir() {
            return Err(self.missing_root(t.dir()));
        }
        let mut out = Vec::new();
        match t {
            FileType::Config => {
                if let Some(size) = self.stat(t, "")? {
                    out.push(FileInfo {
                        name: "config".to_string(),
                        size,
                    });
                }
            }
            FileType::Pack => {
                let data = self.root.join(t.dir());
                let subdirs = match fs::read_dir(&data) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(self.err(&e, "data")),
                };
                for sub in subdirs {
                    let sub = sub.map_err(|e| self.err(&e, "data"))?;
                    if sub.file_name().to_string_lossy().starts_with('.') {
                        continue;
                    }
                    if sub.file_type().map(|ft| ft.is_dir()).unwrap_or(false) {
                        self.list_dir(&sub.path(), &mut out)?;
                    }
                }
            }
            _ => self.list_dir(&self.root.join(t.dir()), &mut out)?,
        }
        out.sort();
        Ok(out)
    }

    fn read(&self, t: FileType, name: &str) -> Result<Bytes, StorageError> {
        let (rel, full) = self.full(t, name)?;
        fs::read(&full)
            .map(Bytes::from)
            .map_err(|e| self.err(&e, &rel))
    }

    fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Bytes, StorageError> {
        let (rel, full) = self.full(t, name)?;
        let mut file = File::open(&full).map_err(|e| self.err(&e, &rel))?;
        let size = file.metadata().map_err(|e| self.err(&e, &rel))?.len();
        let end = offset.checked_add(length);
        if end.is_none_or(|end| end > size) {
            return Err(StorageError::new(
                ErrorKind::Invalid,
                &self.label,
                rel,
                format!(
                    "short read: range {offset}+{length} extends past the end of the {size}-byte file (truncated or corrupt file?)"
                ),
            ));
        }
        let len = usize::try_from(length).map_err(|_| {
            StorageError::new(ErrorKind::Invalid, &self.label, &rel, "range too large")
        })?;
        let mut buf = vec![0u8; len];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| self.err(&e, &rel))?;
        Ok(Bytes::from(buf))
    }

    fn write(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        let (rel, full) = self.full(t, name)?;
        let tmp = self.write_temp(&rel, &full, &data)?;
        if let Err(e) = fs::rename(&tmp, &full) {
            let _ = fs::remove_file(&tmp);
            return Err(self.err(&e, &rel));
        }
        self.sync_parent(&full, &rel)
    }

    /// Publishes with `link(2)`, which fails atomically if the name exists. On
    /// filesystems without hard links it falls back to check-then-rename, which
    /// has a race window between the check and the rename.
    fn write_new(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        let (rel, full) = self.full(t, name)?;
        if full.symlink_metadata().is_ok() {
            return Err(StorageError::new(
                ErrorKind::AlreadyExists,
                &self.label,
                rel,
                "file already exists",
            ));
        }
        let tmp = self.write_temp(&rel, &full, &data)?;
        let res = match fs::hard_link(&tmp, &full) {
            Ok(()) => fs::remove_file(&tmp),
            Err(e) if link_unsupported(&e) => {
                if full.symlink_metadata().is_ok() {
                    Err(io::Error::from_raw_os_error(libc::EEXIST))
                } else {
                    fs::rename(&tmp, &full)
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            let mut err = self.err(&e, &rel);
            if err.kind == ErrorKind::AlreadyExists {
                err.message = "file already exists".to_string();
            }
            return Err(err);
        }
        self.sync_parent(&full, &rel)
    }

    fn remove(&self, t: FileType, name: &str) -> Result<(), StorageError> {
        let (rel, full) = self.full(t, name)?;
        fs::remove_file(&full).map_err(|e| self.err(&e, &rel))
    }

    fn list_temp(&self) -> Result<Vec<TempFile>, StorageError> {
        if !self.root.is_dir() {
            return Err(self.missing_root(""));
        }
        let mut out = Vec::new();
        for dir in crate::temp_dirs() {
            let entries = match fs::read_dir(self.root.join(&dir)) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err(&e, &dir)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.err(&e, &dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !crate::is_temp_name(&name) {
                    continue;
                }
                let path = crate::temp_files::join(&dir, &name);
                match entry.metadata() {
                    Ok(m) if m.is_file() => out.push(TempFile {
                        path,
                        size: m.len(),
                        modified: m.modified().ok(),
                    }),
                    Ok(_) => {}
                    // Renamed or removed by its writer meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(self.err(&e, &path)),
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn remove_temp(&self, path: &str) -> Result<(), StorageError> {
        crate::check_temp_path(&self.label, path)?;
        fs::remove_file(self.root.join(path)).map_err(|e| self.err(&e, path))
    }

    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>, StorageError> {
        let (rel, full) = self.full(t, name)?;
        match fs::metadata(&full) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Err(StorageError::new(
                ErrorKind::Invalid,
                &self.label,
                rel,
                "not a regular file",
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(&e, &rel)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    fn repo() -> (tempfile::TempDir, LocalStorage) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = LocalStorage::new(dir.path().join("repo"));
        (dir, s)
    }

    #[test]
    fn conformance_suite() {
        let (_d, s) = repo();
        conformance::run(&s).expect("local storage conformance");
    }

    #[test]
    fn create_makes_restic_layout_with_modes() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, s) = repo();
        s.create().expect("create");
        for d in [
            "keys",
            "snapshots",
            "index",
            "locks",
            "data/00",
            "data/7f",
            "data/ff",
        ] {
            let m = fs::metadata(s.root().join(d)).expect(d);
            assert!(m.is_dir());
            assert_eq!(m.permissions().mode() & 0o777, DIR_MODE, "{d}");
        }
        assert_eq!(
            fs::read_dir(s.root().join("data")).map(|r| r.count()).ok(),
            Some(256)
        );
        assert!(!s.root().join("config").exists());
        assert!(!s.root().join("tmp").exists());
        s.write(FileType::Pack, "abcdef", Bytes::from_static(b"x"))
            .expect("write");
        let m = fs::metadata(s.root().join("data/ab/abcdef")).expect("pack");
        assert_eq!(m.permissions().mode() & 0o777, FILE_MODE);
        // create is idempotent
        s.create().expect("create again");
    }

    #[test]
    fn missing_repository_is_distinguishable() {
        let (_d, s) = repo();
        let e = s.read(FileType::Config, "").unwrap_err();
        assert!(e.is_not_found());
        assert!(e.message.contains("does not exist"), "{e}");
        assert!(s.list(FileType::Snapshot).unwrap_err().is_not_found());
        assert_eq!(s.stat(FileType::Config, "").ok(), Some(None));
        let e = s
            .write(FileType::Key, "k1", Bytes::from_static(b"k"))
            .unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(!s.root().exists(), "write must not create the repository");
    }

    #[test]
    fn temp_files_are_invisible_and_never_under_final_name() {
        let (_d, s) = repo();
        s.create().expect("create");
        // A crashed writer leaves a temp file behind: it must not be listed.
        fs::write(s.root().join("index/.deadbeef.tmp-1"), b"partial").expect("tmp");
        fs::write(s.root().join("data/ab/.abff.tmp-2"), b"partial").expect("tmp");
        assert!(s.list(FileType::Index).expect("list").is_empty());
        assert!(s.list(FileType::Pack).expect("list").is_empty());
        // Overwrite replaces atomically: a reader sees old or new, never a prefix.
        let big_a = Bytes::from(vec![b'a'; 1 << 20]);
        let big_b = Bytes::from(vec![b'b'; 1 << 20]);
        s.write(FileType::Index, "idx", big_a.clone())
            .expect("write");
        std::thread::scope(|sc| {
            let writer = sc.spawn(|| {
                for i in 0..20 {
                    let d = if i % 2 == 0 { &big_b } else { &big_a };
                    s.write(FileType::Index, "idx", d.clone()).expect("rewrite");
                }
            });
            for _ in 0..200 {
                let got = s.read(FileType::Index, "idx").expect("read");
                assert!(
                    got == big_a || got == big_b,
                    "saw a partial file ({} bytes)",
                    got.len()
                );
            }
            writer.join().expect("writer thread");
        });
        // No temp files left behind by successful writes.
        let names: Vec<_> = fs::read_dir(s.root().join("index"))
            .expect("readdir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}"); // idx + the planted temp file
    }

    #[test]
    fn write_new_conflict_keeps_original() {
        let (_d, s) = repo();
        s.create().expect("create");
        s.write_new(FileType::Lock, "l1", Bytes::from_static(b"one"))
            .expect("first");
        let e = s
            .write_new(FileType::Lock, "l1", Bytes::from_static(b"two"))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert_eq!(s.read(FileType::Lock, "l1").expect("read"), &b"one"[..]);
        let leftovers = fs::read_dir(s.root().join("locks"))
            .expect("readdir")
            .count();
        assert_eq!(
            leftovers, 1,
            "temp file of the losing writer must be removed"
        );
    }

    #[test]
    fn concurrent_write_new_has_one_winner() {
        let (_d, s) = repo();
        s.create().expect("create");
        let wins: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let s = &s;
                    sc.spawn(move || {
                        s.write_new(FileType::Lock, "race", Bytes::from(vec![i as u8; 64]))
                            .is_ok() as usize
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(wins, 1);
    }

    #[test]
    fn pack_written_without_subdir_creates_it() {
        let (_d, s) = repo();
        fs::create_dir_all(s.root()).expect("root");
        s.write(FileType::Pack, "c0ffee", Bytes::from_static(b"p"))
            .expect("write");
        assert!(s.root().join("data/c0/c0ffee").is_file());
        s.write(FileType::Wal, "w1", Bytes::from_static(b"w"))
            .expect("wal");
        assert!(s.root().join("bunker/wal/w1").is_file());
    }

    #[test]
    fn truncated_file_range_read_is_not_retryable() {
        let (_d, s) = repo();
        s.create().expect("create");
        s.write(FileType::Pack, "aa11", Bytes::from_static(b"0123456789"))
            .expect("write");
        let e = s.read_range(FileType::Pack, "aa11", 8, 5).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(!e.is_retryable());
        let e = s
            .read_range(FileType::Pack, "aa11", u64::MAX, 2)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
    }

    #[test]
    fn permission_denied_is_mapped() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, s) = repo();
        s.create().expect("create");
        let keys = s.root().join("keys");
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o500)).expect("chmod");
        let probe = keys.join("probe");
        if fs::write(&probe, b"x").is_ok() {
            // Running as root: permissions are not enforced, nothing to check.
            let _ = fs::remove_file(&probe);
        } else {
            let e = s
                .write(FileType::Key, "k", Bytes::from_static(b"k"))
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
        }
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o700)).expect("chmod back");
    }
}
