//! Directory listing helpers for the backup walker.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::SourceError;

/// List the entry names of a directory (without `.` and `..`), sorted by
/// their raw bytes, which is the order restic uses for tree nodes.
pub fn read_dir_sorted(path: &Path) -> Result<Vec<OsString>, SourceError> {
    let rd = std::fs::read_dir(path).map_err(|e| SourceError::io("opendir", path, e))?;
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| SourceError::io("readdir", path, e))?;
        names.push(entry.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
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
}
