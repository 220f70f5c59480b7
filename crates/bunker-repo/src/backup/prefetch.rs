//! Read-ahead for the backup walk.
//!
//! When the archiver lists a directory, the regular files in it that it is
//! going to read are announced to the kernel (`posix_fadvise(WILLNEED)`) by
//! helper threads. The kernel then fetches their data in the background
//! while the workers are still chunking and compressing earlier files, so on
//! a cold page cache disk latency overlaps with CPU work instead of stalling
//! a worker per file. (Measured on the kernel source tree, cold cache, 2
//! cores: one reader at a time needs 7 s just to read the 78k files, 16 at a
//! time 3.2 s.)
//!
//! Announcing a directory's files only when the archiver enters it gives the
//! kernel no time: the workers read the first files at once and wait for
//! the disk. So the archiver also announces the new subdirectories it finds
//! ([`Prefetcher::hint_dir`]); a helper lists each and announces its files,
//! one directory level ahead of the workers. (Kernel tree, cold cache: the
//! workers waited 3.7 s in total for file data with per-directory hints.)
//!
//! Hints are best effort: when the queue is full they are dropped, and every
//! error is ignored (the archiver reads and reports the file itself). Only
//! the first [`PER_FILE`] bytes of a file are announced; the kernel's own
//! read-ahead follows a large file's sequential read. Idle helpers sleep on
//! a condition variable (a channel's receive spins and yields first, which
//! cost thousands of context switches per backup).

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::num::NonZeroU64;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use bunker_sources::{lstat_meta, open_dir, read_dir_typed, Excluder};
use parking_lot::{Condvar, Mutex};
use rustix::fs::{Advice, Mode, OFlags};

/// Bytes announced per file.
const PER_FILE: u64 = 1 << 20;
/// Hints waiting to be carried out; more are dropped.
const QUEUE: usize = 4096;
/// Helper threads. They block on inode reads and use little CPU; two keep
/// several disk requests in flight.
const THREADS: usize = 2;

/// What to read ahead.
enum Hint {
    /// The head of one file.
    File(PathBuf),
    /// The heads of the regular files in a directory (not recursive).
    Dir(PathBuf),
}

/// The hints still to carry out; `None` once the prefetcher is stopped.
struct Queue {
    hints: Mutex<Option<VecDeque<Hint>>>,
    wake: Condvar,
}

/// The read-ahead helpers of one backup run; stopped when dropped.
pub struct Prefetcher {
    queue: Arc<Queue>,
    threads: Vec<JoinHandle<()>>,
}

impl Prefetcher {
    /// Start the helpers. `excluder` keeps excluded files of announced
    /// directories from being read.
    pub fn start(excluder: Option<Arc<Excluder>>) -> Prefetcher {
        let queue = Arc::new(Queue {
            hints: Mutex::new(Some(VecDeque::new())),
            wake: Condvar::new(),
        });
        let threads = (0..THREADS)
            .filter_map(|i| {
                let (queue, excluder) = (queue.clone(), excluder.clone());
                std::thread::Builder::new()
                    .name(format!("bunker-readahead-{i}"))
                    .spawn(move || {
                        while let Some(hint) = queue.next() {
                            match hint {
                                Hint::File(path) => advise(rustix::fs::CWD, path.as_os_str()),
                                Hint::Dir(dir) => advise_dir(&dir, excluder.as_deref()),
                            }
                        }
                    })
                    .ok()
            })
            .collect();
        Prefetcher { queue, threads }
    }

    /// Announce that the file at `path` is about to be read.
    pub fn hint(&self, path: PathBuf) {
        self.queue.push(Hint::File(path));
    }

    /// Announce that every regular file directly in `dir` (except those
    /// excluded by name) is going to be read. False when the hint was
    /// dropped, so the caller announces the files itself later.
    pub fn hint_dir(&self, dir: PathBuf) -> bool {
        self.queue.push(Hint::Dir(dir))
    }
}

impl Queue {
    /// Queue a hint; a full queue drops it (the files are simply read cold).
    fn push(&self, hint: Hint) -> bool {
        let mut guard = self.hints.lock();
        let Some(hints) = guard.as_mut() else {
            return false;
        };
        if hints.len() >= QUEUE {
            return false;
        }
        hints.push_back(hint);
        drop(guard);
        self.wake.notify_one();
        true
    }

    /// The next hint; `None` once stopped.
    fn next(&self) -> Option<Hint> {
        let mut guard = self.hints.lock();
        loop {
            let hints = guard.as_mut()?;
            if let Some(hint) = hints.pop_front() {
                return Some(hint);
            }
            self.wake.wait(&mut guard);
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Hints still queued are of no use any more.
        *self.queue.hints.lock() = None;
        self.queue.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// How the helpers open files: see [`advise`].
const FILE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// Ask the kernel to start reading the head of a regular file. Opened
/// non-blocking and without following symlinks, so a file swapped for a
/// FIFO or a link since the listing does no harm (`fadvise` fails on a
/// FIFO). No `fstat`: the kernel stops the read-ahead at the end of the file
/// by itself, and the call saves one system call per file.
/// `name` is relative to `dir` (or a full path, with [`rustix::fs::CWD`]).
fn advise(dir: BorrowedFd<'_>, name: &OsStr) {
    if let Ok(fd) = rustix::fs::openat(dir, name, FILE_FLAGS, Mode::empty()) {
        let _ = rustix::fs::fadvise(&fd, 0, NonZeroU64::new(PER_FILE), Advice::WillNeed);
    }
}

/// Announce the regular files directly in `dir` that the backup is going
/// to read.
fn advise_dir(dir: &Path, excluder: Option<&Excluder>) {
    let files = files_to_read(dir, excluder);
    // Opened relative to the directory: one path component to look up.
    let Ok(dirfd) = open_dir(dir) else {
        return;
    };
    for name in files.iter().filter_map(|p| p.file_name()) {
        advise(dirfd.as_fd(), name);
    }
}

/// The regular files directly in `dir` that the backup is going to read.
/// When the exclusion rules need metadata (size, tag-file or device rules),
/// the directory and each file are `lstat`ed (the metadata warmer has cached
/// them) and checked as the archiver checks them, so the files below a
/// tag file are not read ahead.
fn files_to_read(dir: &Path, excluder: Option<&Excluder>) -> Vec<PathBuf> {
    let excluded = |path: &Path| match excluder {
        None => false,
        Some(x) if !x.needs_metadata() => x.excluded_by_name(path),
        Some(x) => lstat_meta(path, false).map_or(true, |m| x.excluded(path, &m)),
    };
    if excluded(dir) {
        return Vec::new();
    }
    let Ok(entries) = read_dir_typed(dir) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|e| e.regular_file)
        .map(|e| dir.join(&e.name))
        .filter(|p| !excluded(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Regression: a plain `open` of a FIFO without a writer blocks forever;
    /// the helpers must open non-blocking, or the backup never ends.
    #[test]
    fn hints_for_fifos_and_missing_paths_do_not_block_the_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, vec![7u8; 3 << 20]).unwrap();
        let fifo = dir.path().join("p");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Everything runs on another thread: a stuck helper would also hang
        // the drop (which joins the helpers), so only a deadline can tell.
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let p = Prefetcher::start(None);
            for _ in 0..3 {
                p.hint(fifo.clone());
                p.hint(file.clone());
                p.hint(dir.path().join("missing"));
                // The listing's FIFO is not announced (not a regular file),
                // but the directory hint must not block either way.
                assert!(p.hint_dir(dir.path().to_path_buf()));
                assert!(p.hint_dir(dir.path().join("missing")));
            }
            // Let the helpers take every hint before stopping them.
            while !p.queue.hints.lock().as_ref().is_some_and(|h| h.is_empty()) {
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(p);
            let _ = done_tx.send(());
        });
        assert!(
            done_rx.recv_timeout(Duration::from_secs(30)).is_ok(),
            "a read-ahead helper is stuck"
        );
    }

    /// The files of an announced directory are filtered as the archiver
    /// filters them: by name, by size, and below a tag file.
    #[test]
    fn directory_hints_skip_what_the_backup_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join("cache")).unwrap();
        std::fs::write(root.join("a.txt"), b"a").unwrap();
        std::fs::write(root.join("b.iso"), b"b").unwrap();
        std::fs::write(root.join("big.txt"), vec![1u8; 4096]).unwrap();
        std::fs::write(root.join("cache/CACHEDIR.TAG"), b"x").unwrap();
        std::fs::write(root.join("cache/c.txt"), b"c").unwrap();
        let names = |paths: Vec<PathBuf>| -> Vec<String> {
            let mut n: Vec<String> = paths
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };

        // No rules: every regular file, no directories.
        assert_eq!(
            names(files_to_read(&root, None)),
            ["a.txt", "b.iso", "big.txt"]
        );

        // Name rules only.
        let by_name = Excluder::new(&bunker_sources::ExcludeOptions {
            excludes: vec!["*.iso".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            names(files_to_read(&root, Some(&by_name))),
            ["a.txt", "big.txt"]
        );

        // Size and tag-file rules need metadata.
        let with_meta = Excluder::new(&bunker_sources::ExcludeOptions {
            excludes: vec!["*.iso".into()],
            exclude_if_present: vec!["CACHEDIR.TAG".into()],
            exclude_larger_than: Some("1k".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(names(files_to_read(&root, Some(&with_meta))), ["a.txt"]);
        // As restic: below a tag file only the tag file itself is kept.
        assert_eq!(
            names(files_to_read(&root.join("cache"), Some(&with_meta))),
            ["CACHEDIR.TAG"]
        );
        assert_eq!(
            names(files_to_read(&root.join("cache"), None)),
            ["CACHEDIR.TAG", "c.txt"]
        );
        assert!(files_to_read(&root.join("missing"), None).is_empty());
    }
}
