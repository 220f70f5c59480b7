//! Repository locks, as restic does them.
//!
//! A lock is an unpacked JSON file in `locks/`. Shared locks (backup, restore,
//! check) may coexist; an exclusive lock (prune, forget, key removal) excludes
//! all others. After writing our lock we list the locks again and back off if a
//! conflicting one appeared meanwhile. A lock is stale when it was not
//! refreshed for [`STALE_AFTER`], or when it was created on this host by a
//! process that no longer exists; stale locks are ignored and removed. Held
//! locks are refreshed every [`REFRESH_EVERY`] by a background thread (a new
//! lock file is written, then the old one removed).
//!
//! Commands that only read use [`RepoLock::acquire_read`]: no lock at all
//! with [`crate::RepoOptions::no_lock`] (restic's `--no-lock`), and when the
//! storage refuses to write the lock file (a read-only mount, WORM media,
//! read-only credentials) a warning and no lock, so read-only repositories
//! can be listed, checked and restored from. Without a lock a concurrent
//! `prune` may remove data while it is read; the reader then fails with a
//! missing-pack error, it never returns wrong data (every blob is
//! authenticated). Writers get [`RepoError::ReadOnly`] instead of a
//! misleading "locked by another process".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bunker_format::gotime;
use bunker_format::lock::LockFile;
use bunker_storage::FileType;
use parking_lot::Mutex;

use crate::error::{RepoError, Result};
use crate::Repository;

pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// A held lock; released (file removed) on drop.
pub struct RepoLock {
    repo: Arc<Repository>,
    name: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
}

fn this_host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

fn new_lock(exclusive: bool) -> LockFile {
    LockFile {
        time: gotime::now_local(),
        exclusive,
        hostname: this_host(),
        username: uzers::get_current_username()
            .map(|u| u.to_string_lossy().into_owned())
            .unwrap_or_default(),
        pid: i64::from(std::process::id()),
        uid: uzers::get_current_uid(),
        gid: uzers::get_current_gid(),
    }
}

/// Whether a process with this pid exists on this host.
fn process_alive(pid: u32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// Whether `lock` may be ignored and removed.
pub fn is_stale(lock: &LockFile) -> bool {
    let age = chrono::Utc::now().signed_duration_since(lock.time);
    if age.to_std().map(|a| a > STALE_AFTER).unwrap_or(false) {
        return true;
    }
    lock.hostname == this_host() && !u32::try_from(lock.pid).is_ok_and(process_alive)
}

/// All lock files with their contents; unreadable ones are reported as `None`.
pub fn list_locks(repo: &Repository) -> Result<Vec<(String, Option<LockFile>)>> {
    let mut out = Vec::new();
    for f in repo.storage().list(FileType::Lock)? {
        match repo.load_json::<LockFile>(FileType::Lock, &f.name, "lock") {
            Ok(l) => out.push((f.name, Some(l))),
            Err(RepoError::Storage(e)) if e.is_not_found() => {}
            Err(_) => out.push((f.name, None)),
        }
    }
    Ok(out)
}

/// Remove stale locks (all locks with `all`). Returns how many were removed.
pub fn unlock(repo: &Repository, all: bool) -> Result<usize> {
    let mut n = 0;
    for (name, lock) in list_locks(repo)? {
        let remove = all || lock.as_ref().is_none_or(is_stale);
        if remove {
            match repo.storage().remove(FileType::Lock, &name) {
                Ok(()) => n += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(n)
}

fn conflict(repo: &Repository, exclusive: bool, own: &str) -> Result<Option<RepoError>> {
    for (name, lock) in list_locks(repo)? {
        if name == own {
            continue;
        }
        let Some(lock) = lock else { continue };
        if is_stale(&lock) {
            tracing::info!(
                "removing stale lock {name} of PID {} on {}",
                lock.pid,
                lock.hostname
            );
            let _ = repo.storage().remove(FileType::Lock, &name);
            continue;
        }
        if exclusive || lock.exclusive {
            return Ok(Some(RepoError::Locked {
                kind: if lock.exclusive { "exclusively" } else { "" },
                pid: u32::try_from(lock.pid).unwrap_or(0),
                host: lock.hostname,
                user: lock.username,
                time: gotime::format(&lock.time),
            }));
        }
    }
    Ok(None)
}

impl RepoLock {
    /// Take a shared (`exclusive = false`) or exclusive lock.
    pub fn acquire(repo: &Arc<Repository>, exclusive: bool) -> Result<RepoLock> {
        if let Some(e) = conflict(repo, exclusive, "")? {
            return Err(e);
        }
        let name = match repo.save_json(FileType::Lock, &new_lock(exclusive)) {
            Ok(id) => id.to_hex(),
            Err(RepoError::Storage(e)) if refuses_writes(&e) => {
                return Err(RepoError::ReadOnly {
                    detail: format!("{}: {}", e.backend, e.message),
                })
            }
            Err(e) => return Err(e),
        };
        // Give a concurrent locker the chance to show up, then re-check.
        std::thread::sleep(Duration::from_millis(if exclusive { 200 } else { 20 }));
        if let Some(e) = conflict(repo, exclusive, &name)? {
            let _ = repo.storage().remove(FileType::Lock, &name);
            return Err(e);
        }
        let name = Arc::new(Mutex::new(name));
        let stop = Arc::new(AtomicBool::new(false));
        let refresher = {
            let (repo, name, stop) = (repo.clone(), name.clone(), stop.clone());
            std::thread::spawn(move || refresh_loop(&repo, &name, &stop, exclusive))
        };
        Ok(RepoLock {
            repo: repo.clone(),
            name,
            stop,
            refresher: Some(refresher),
        })
    }
}

impl RepoLock {
    /// The lock of a command that only reads: a shared lock, or none when
    /// the repository was opened with `no_lock`, or when the storage refuses
    /// writes (then with a warning; see the module documentation).
    pub fn acquire_read(repo: &Arc<Repository>) -> Result<Option<RepoLock>> {
        if repo.options().no_lock {
            return Ok(None);
        }
        match RepoLock::acquire(repo, false) {
            Ok(lock) => Ok(Some(lock)),
            Err(RepoError::ReadOnly { detail }) => {
                tracing::warn!(
                    "the repository storage refuses writes ({detail}); reading without a lock, as with --no-lock"
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether a failed write means the storage does not accept writes at all
/// (EROFS, EACCES/EPERM, an object store's 403), not a passing failure.
fn refuses_writes(e: &bunker_storage::StorageError) -> bool {
    e.kind == bunker_storage::ErrorKind::PermissionDenied
}

fn refresh_loop(repo: &Repository, name: &Mutex<String>, stop: &AtomicBool, exclusive: bool) {
    // Parked rather than sleeping: dropping the lock unparks this thread, so
    // a command does not wait up to a sleep step at exit (was 200 ms steps,
    // ~100 ms added to every locked command on average).
    let mut last = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(REFRESH_EVERY.saturating_sub(last.elapsed()));
        if stop.load(Ordering::Relaxed) || last.elapsed() < REFRESH_EVERY {
            continue;
        }
        last = std::time::Instant::now();
        match repo.save_json(FileType::Lock, &new_lock(exclusive)) {
            Ok(id) => {
                let old = std::mem::replace(&mut *name.lock(), id.to_hex());
                let _ = repo.storage().remove(FileType::Lock, &old);
            }
            Err(e) => tracing::warn!("could not refresh lock: {e}"),
        }
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.refresher.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        let name = self.name.lock().clone();
        if let Err(e) = self.repo.storage().remove(FileType::Lock, &name) {
            tracing::warn!("could not remove lock {name}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(no_lock: bool) -> (tempfile::TempDir, Arc<Repository>) {
        let d = tempfile::tempdir().expect("tempdir");
        let storage =
            bunker_storage::into_dyn(bunker_storage::LocalStorage::new(d.path().join("repo")));
        let options = crate::RepoOptions {
            no_lock,
            ..Default::default()
        };
        let kdf = bunker_format::keyfile::KdfParams {
            n: 1024,
            r: 8,
            p: 1,
        };
        let repo = Repository::init(storage, b"pw", options, kdf).expect("init");
        (d, repo)
    }

    fn lock_files(repo: &Repository) -> usize {
        repo.storage().list(FileType::Lock).expect("list").len()
    }

    /// `--no-lock` readers write nothing; other readers hold a shared lock,
    /// and writers lock whatever `no_lock` says.
    #[test]
    fn no_lock_readers_write_no_lock_file() {
        let (_d, r) = repo(true);
        let held = RepoLock::acquire_read(&r).expect("read lock");
        assert!(held.is_none());
        assert_eq!(lock_files(&r), 0);
        let writer = RepoLock::acquire(&r, true).expect("exclusive");
        assert_eq!(lock_files(&r), 1);
        drop(writer);

        let (_d2, r2) = repo(false);
        let held = RepoLock::acquire_read(&r2).expect("read lock");
        assert!(held.is_some());
        assert_eq!(lock_files(&r2), 1);
        drop(held);
        assert_eq!(lock_files(&r2), 0);
    }
}
