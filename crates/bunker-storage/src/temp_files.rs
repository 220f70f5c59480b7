//! Temporary files that interrupted writers leave behind.
//!
//! Every backend that cannot write a file atomically in one request writes it
//! under a temporary name in the destination directory and renames it into
//! place: `.<name>.tmp-<16 hex>` (local directories and the native SFTP
//! backend) or `.bunker-tmp-<16 hex>` (OpenDAL's `sftp` and `webdav`
//! services). A writer killed between the two (SIGKILL, power loss, a lost
//! connection) leaves the temporary file; [`crate::Storage::list`] never
//! shows it. [`crate::Storage::list_temp`] finds such files and
//! [`crate::Storage::remove_temp`] removes one; whether a file is old enough
//! to be abandoned is the caller's decision (bunker-repo's `leftovers`).
//!
//! Only names of these two patterns are ever reported or removed, and only in
//! the repository's own directories: other dot files (an NFS client's
//! `.nfs*` files of open files, for example) are left alone.
//!
//! Object stores (S3) have no temporary names: a PUT is atomic, and bunker
//! sends every file in one PUT, never as a multipart upload, so an
//! interrupted upload leaves nothing behind (a bucket lifecycle rule
//! `AbortIncompleteMultipartUpload` is still good practice for buckets that
//! other tools write to).

use std::time::SystemTime;

use crate::error::{ErrorKind, StorageError};
use crate::file_type::FileType;

/// A temporary file left in the repository by a writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempFile {
    /// Path relative to the repository root, `/`-separated,
    /// e.g. `data/ab/.ab12….tmp-0123456789abcdef`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time, when the backend reports one.
    pub modified: Option<SystemTime>,
}

/// Whether `name` (a bare file name) is one of bunker's temporary names.
pub fn is_temp_name(name: &str) -> bool {
    let tail_ok = |rand: &str| rand.len() == 16 && rand.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(rand) = name.strip_prefix(".bunker-tmp-") {
        return tail_ok(rand);
    }
    match name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp-")) {
        Some((base, rand)) => !base.is_empty() && !base.contains('/') && tail_ok(rand),
        None => false,
    }
}

/// The directories temporary files can be in, relative to the repository
/// root (`""` is the root, where the config file is written).
pub fn temp_dirs() -> Vec<String> {
    let mut dirs = vec![String::new()];
    for t in FileType::ALL {
        match t {
            FileType::Config => {}
            FileType::Pack => dirs.extend((0..=255u8).map(|i| format!("data/{i:02x}"))),
            other => dirs.push(other.dir().to_string()),
        }
    }
    dirs
}

/// Rejects any path that is not a temporary name in one of [`temp_dirs`]:
/// [`crate::Storage::remove_temp`] removes nothing else.
pub fn check_temp_path(backend: &str, path: &str) -> Result<(), StorageError> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    if is_temp_name(name) && temp_dirs().iter().any(|d| d == dir) {
        Ok(())
    } else {
        Err(StorageError::new(
            ErrorKind::Invalid,
            backend,
            path,
            "not a temporary file of the repository",
        ))
    }
}

/// Joins a directory of [`temp_dirs`] and a name.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Storage;

    #[test]
    fn only_bunker_temp_names_match() {
        assert!(is_temp_name(".0123abcd.tmp-0123456789abcdef"));
        assert!(is_temp_name(".config.tmp-0123456789ABCDEF"));
        assert!(is_temp_name(".bunker-tmp-0123456789abcdef"));
        for other in [
            ".nfs000000000123",
            ".tmp-0123456789abcdef",
            "abcd.tmp-0123456789abcdef",
            ".abcd.tmp-0123",
            ".abcd.tmp-0123456789abcdefg",
            ".bunker-tmp",
            ".DS_Store",
        ] {
            assert!(!is_temp_name(other), "{other}");
        }
    }

    #[test]
    fn remove_paths_are_confined_to_the_layout() {
        let ok = "data/ab/.ab12.tmp-0123456789abcdef";
        assert!(check_temp_path("b", ok).is_ok());
        assert!(check_temp_path("b", ".config.tmp-0123456789abcdef").is_ok());
        assert!(check_temp_path("b", "bunker/wal/.x.tmp-0123456789abcdef").is_ok());
        for bad in [
            "data/ab/ab12",
            "../.x.tmp-0123456789abcdef",
            "data/.x.tmp-0123456789abcdef",
            "other/.x.tmp-0123456789abcdef",
            "data/ab/../../.x.tmp-0123456789abcdef",
        ] {
            assert!(check_temp_path("b", bad).is_err(), "{bad}");
        }
    }

    /// A killed writer's temporary files are found in every directory of
    /// the layout, removed one by one, and nothing else is touched.
    #[test]
    fn leftover_temp_files_are_listed_and_removable() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = crate::LocalStorage::new(d.path().join("repo"));
        s.create().expect("create");
        let tmp = "data/ab/.abff.tmp-00112233445566aa";
        std::fs::write(s.root().join(tmp), b"partial pack").expect("tmp");
        std::fs::write(s.root().join(".config.tmp-00112233445566bb"), b"c").expect("tmp");
        std::fs::write(s.root().join("index/.nfs0000000000001234"), b"open").expect("nfs");
        s.write(FileType::Pack, "abcd", bytes::Bytes::from_static(b"p"))
            .expect("write");
        let found = s.list_temp().expect("list_temp");
        let paths: Vec<&str> = found.iter().map(|t| t.path.as_str()).collect();
        assert_eq!(paths, [".config.tmp-00112233445566bb", tmp]);
        assert_eq!(found[1].size, 12);
        assert!(found[1].modified.is_some());
        s.remove_temp(tmp).expect("remove");
        assert!(!s.root().join(tmp).exists());
        assert!(s.remove_temp(tmp).unwrap_err().is_not_found());
        let e = s.remove_temp("index/.nfs0000000000001234").unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Invalid);
        assert!(s.root().join("index/.nfs0000000000001234").exists());
        assert!(s.root().join("data/ab/abcd").exists());
    }
}
