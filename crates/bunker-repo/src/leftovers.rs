//! Temporary files of interrupted writers: `check` reports them, `prune`
//! removes the abandoned ones.
//!
//! A writer killed between writing a file under its temporary name and
//! renaming it into place (SIGKILL, power loss, a dropped SFTP connection)
//! leaves the temporary file behind (`data/xx/.<id>.tmp-<rand>` and the
//! like, see `bunker_storage::TempFile`). Nothing lists it, so nothing
//! would ever remove it.
//!
//! When is one safe to remove? Two rules, both required:
//! * `prune` holds the exclusive lock: no backup, copy, prune or other
//!   locking writer of any host is running (stale locks excepted, which by
//!   definition belong to dead or 30-minute-silent processes);
//! * the file was not modified for [`ABANDONED_AFTER`] (one hour). Writers
//!   that take no lock (`pg wal-push`, the lock files themselves) may be
//!   writing right now; a live writer modifies its temporary file
//!   continuously and renames it as soon as it is complete, so an hour
//!   without a change means nobody will ever finish it. The age is judged
//!   by the storage's modification time against this host's clock; files
//!   whose backend reports no time are never removed.

use std::time::{Duration, SystemTime};

use bunker_storage::TempFile;
use serde::Serialize;

use crate::error::Result;
use crate::Repository;

/// Temporary files not modified for this long are abandoned.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(60 * 60);

/// Temporary files found in a repository.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Leftovers {
    /// Temporary files found.
    pub files: u64,
    pub bytes: u64,
    /// Of those, abandoned ones (old enough for `prune` to remove).
    pub abandoned: u64,
    /// Their paths (at most [`MAX_LISTED`]).
    pub paths: Vec<String>,
}

/// How many paths a [`Leftovers`] lists.
pub const MAX_LISTED: usize = 20;

/// Whether `t` is old enough to be removed (see the module documentation).
pub fn is_abandoned(t: &TempFile, now: SystemTime) -> bool {
    t.modified
        .and_then(|m| now.duration_since(m).ok())
        .is_some_and(|age| age >= ABANDONED_AFTER)
}

/// The temporary files in the repository.
pub fn find(repo: &Repository) -> Result<Leftovers> {
    let now = SystemTime::now();
    let mut out = Leftovers::default();
    for t in repo.storage().list_temp()? {
        out.files += 1;
        out.bytes += t.size;
        out.abandoned += u64::from(is_abandoned(&t, now));
        if out.paths.len() < MAX_LISTED {
            out.paths.push(t.path);
        }
    }
    Ok(out)
}

/// Files and bytes removed by [`remove_abandoned`], and younger files kept.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Removed {
    pub files: u64,
    pub bytes: u64,
    /// Temporary files younger than [`ABANDONED_AFTER`] (or of unknown
    /// age): possibly still being written, kept.
    pub kept: u64,
}

/// Removes abandoned temporary files (counts only, with `dry_run`). The
/// caller holds the exclusive lock (see the module documentation).
pub fn remove_abandoned(repo: &Repository, dry_run: bool) -> Result<Removed> {
    remove_older_than(repo, dry_run, SystemTime::now())
}

/// [`remove_abandoned`] as if it were `now` (tests).
pub fn remove_older_than(repo: &Repository, dry_run: bool, now: SystemTime) -> Result<Removed> {
    let mut out = Removed::default();
    for t in repo.storage().list_temp()? {
        if !is_abandoned(&t, now) {
            out.kept += 1;
            continue;
        }
        if !dry_run {
            match repo.storage().remove_temp(&t.path) {
                Ok(()) => {}
                // Its writer renamed or removed it meanwhile.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        out.files += 1;
        out.bytes += t.size;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::test_repo;

    /// Fresh temporary files are kept; the same files an hour later are
    /// removed; a dry run only counts.
    #[test]
    fn only_temp_files_idle_for_an_hour_are_removed() {
        let (d, repo) = test_repo();
        let root = d.path().join("repo");
        let pack = root.join("data/0a/.0a11.tmp-0123456789abcdef");
        let wal = root.join("bunker/wal/.x.tmp-0123456789abcdef");
        std::fs::create_dir_all(wal.parent().expect("parent")).expect("mkdir");
        std::fs::write(&pack, vec![1u8; 500]).expect("plant");
        std::fs::write(&wal, vec![1u8; 20]).expect("plant");
        let found = find(&repo).expect("find");
        assert_eq!((found.files, found.bytes, found.abandoned), (2, 520, 0));

        let now = remove_abandoned(&repo, false).expect("prune now");
        assert_eq!(
            now,
            Removed {
                files: 0,
                bytes: 0,
                kept: 2
            }
        );
        let later = SystemTime::now() + ABANDONED_AFTER + Duration::from_secs(60);
        let dry = remove_older_than(&repo, true, later).expect("dry run");
        assert_eq!((dry.files, dry.bytes), (2, 520));
        assert!(pack.exists() && wal.exists());
        let done = remove_older_than(&repo, false, later).expect("remove");
        assert_eq!((done.files, done.kept), (2, 0));
        assert!(!pack.exists() && !wal.exists());
    }
}
