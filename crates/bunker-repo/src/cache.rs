//! `cache`: the local cache directories (one per repository, see
//! [`crate::tree_cache`]): list them with their size and last use, and
//! remove those not used for a while.
//!
//! Only directories named like a repository id (64 hex digits) are
//! considered, so a cache root that is shared with other files (or points
//! somewhere wrong) never loses anything else. Symbolic links are never
//! followed. A repository's cache directory is marked used (its
//! modification time set to now) each time the repository's index is loaded.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::{RepoError, Result};

/// One repository's cache directory.
#[derive(Clone, Debug, Serialize)]
pub struct CacheDir {
    /// The repository id (the directory's name).
    pub repo_id: String,
    pub path: PathBuf,
    /// When it was last used (its modification time).
    #[serde(serialize_with = "ser_time")]
    pub last_used: SystemTime,
    /// Whether it is older than the age limit given.
    pub old: bool,
    /// Total size of the files in it (`None` when not asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> std::result::Result<S::Ok, S::Error> {
    let t: chrono::DateTime<chrono::Utc> = (*t).into();
    s.serialize_str(&t.to_rfc3339())
}

fn is_repo_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn io(what: &str, path: &Path, e: std::io::Error) -> RepoError {
    RepoError::Io(format!("{what} {}: {e}", path.display()))
}

/// Total size of the regular files below `dir` (symlinks not followed).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

/// The cache directories below `root`, oldest use first; `old` marks those
/// not used for `max_age`. A missing root is an empty list.
pub fn list(root: &Path, max_age: Duration, with_size: bool) -> Result<Vec<CacheDir>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("reading cache directory", root, e)),
    };
    let now = SystemTime::now();
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| io("reading cache directory", root, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir || !is_repo_id(&name) {
            continue;
        }
        let path = e.path();
        let last_used = e
            .metadata()
            .and_then(|m| m.modified())
            .map_err(|err| io("reading", &path, err))?;
        let age = now.duration_since(last_used).unwrap_or_default();
        out.push(CacheDir {
            repo_id: name,
            size: with_size.then(|| dir_size(&path)),
            path,
            last_used,
            old: age >= max_age,
        });
    }
    out.sort_by_key(|c| c.last_used);
    Ok(out)
}

/// Remove the cache directories not used for `max_age`; returns them.
pub fn cleanup(root: &Path, max_age: Duration) -> Result<Vec<CacheDir>> {
    let old: Vec<CacheDir> = list(root, max_age, true)?
        .into_iter()
        .filter(|c| c.old)
        .collect();
    for c in &old {
        std::fs::remove_dir_all(&c.path).map_err(|e| io("removing", &c.path, e))?;
    }
    Ok(old)
}

/// Mark the cache directory `dir` as used now (best effort).
pub fn touch(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.set_modified(SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_repository_directories_are_removed() {
        let root = tempfile::tempdir().expect("tempdir");
        let old_id = "a".repeat(64);
        let new_id = "b".repeat(64);
        for id in [&old_id, &new_id] {
            std::fs::create_dir_all(root.path().join(id).join("packs/ab")).expect("mkdir");
            std::fs::write(root.path().join(id).join("packs/ab/x"), b"12345").expect("write");
        }
        std::fs::create_dir(root.path().join("not-a-repo")).expect("mkdir");
        let old_time = SystemTime::now() - Duration::from_secs(40 * 86400);
        std::fs::File::open(root.path().join(&old_id))
            .and_then(|f| f.set_modified(old_time))
            .expect("set mtime");

        let all = list(root.path(), Duration::from_secs(30 * 86400), true).expect("list");
        assert_eq!(all.len(), 2, "only repository ids are listed");
        assert_eq!(
            (all[0].repo_id.as_str(), all[0].old),
            (old_id.as_str(), true)
        );
        assert_eq!(all[0].size, Some(5));
        assert!(!all[1].old);

        let removed = cleanup(root.path(), Duration::from_secs(30 * 86400)).expect("cleanup");
        assert_eq!(removed.len(), 1);
        assert!(!root.path().join(&old_id).exists());
        assert!(root.path().join(&new_id).exists());
        assert!(root.path().join("not-a-repo").exists());
        assert!(list(&root.path().join("missing"), Duration::ZERO, false)
            .expect("missing root")
            .is_empty());
    }
}
