//! Directory listing helpers for the backup walker.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::SourceError;

/// Open a directory (not following a symlink) to look up its entries
/// relative to it: `statx`/`openat` of one name instead of a full path.
pub fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::open(path, flags, Mode::empty())?)
}

/// List the entry names of a directory (without `.` and `..`), sorted by
/// their raw bytes, which is the order restic uses for tree nodes.
pub fn read_dir_sorted(path: &Path) -> Result<Vec<OsString>, SourceError> {
    Ok(read_dir_typed(path)?.into_iter().map(|e| e.name).collect())
}

/// One directory entry as `readdir` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntryName {
    pub name: OsString,
    /// The file system says (`d_type`) this is a regular file. A hint only:
    /// false when unknown, and the entry may change before it is read.
    pub regular_file: bool,
    /// The file system says this is a directory (same caveats).
    pub directory: bool,
}

/// As [`read_dir_sorted`], with the entry type hint `readdir` gives for free
/// (no `lstat`; entries of unknown type are not regular files here).
pub fn read_dir_typed(path: &Path) -> Result<Vec<DirEntryName>, SourceError> {
    let rd = std::fs::read_dir(path).map_err(|e| SourceError::io("opendir", path, e))?;
    let mut entries = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| SourceError::io("readdir", path, e))?;
        // `file_type` is d_type where the file system fills it in; where it
        // does not, std falls back to an lstat, which is what we avoid, so
        // only trust the cheap answer.
        let kind = entry.file_type().ok();
        entries.push(DirEntryName {
            name: entry.file_name(),
            regular_file: kind.is_some_and(|t| t.is_file()),
            directory: kind.is_some_and(|t| t.is_dir()),
        });
    }
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SourceErrorKind;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn sorted_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<&[u8]> = vec![
            b"b",
            b"B",
            b"a",
            b"\xff\xfe",
            b"_x",
            b"a.b",
            b"aa",
            b"\xc3\xa9",
        ];
        for n in &names {
            let p = dir.path().join(OsString::from_vec(n.to_vec()));
            std::fs::write(p, b"").unwrap();
        }
        let got = read_dir_sorted(dir.path()).unwrap();
        let got: Vec<Vec<u8>> = got.into_iter().map(|n| n.into_vec()).collect();
        let mut want: Vec<Vec<u8>> = names.iter().map(|n| n.to_vec()).collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(got[0], b"B".to_vec());
    }

    #[test]
    fn missing_dir_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_dir_sorted(&dir.path().join("gone")).unwrap_err();
        assert_eq!(e.kind(), SourceErrorKind::NotFound);
    }

    #[test]
    fn typed_listing_marks_regular_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
        std::os::unix::fs::symlink("d", dir.path().join("m")).unwrap();
        let got: Vec<(String, bool, bool)> = read_dir_typed(dir.path())
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    e.name.to_string_lossy().into_owned(),
                    e.regular_file,
                    e.directory,
                )
            })
            .collect();
        // Links are neither, whatever they point to.
        let want = [
            ("d", false, true),
            ("f", true, false),
            ("l", false, false),
            ("m", false, false),
        ];
        let want: Vec<(String, bool, bool)> = want
            .iter()
            .map(|(n, r, d)| (n.to_string(), *r, *d))
            .collect();
        assert_eq!(got, want);
    }
}
