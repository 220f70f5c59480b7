//! Counters of one backup run, updated from many worker threads.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::packer::Saved;

/// What happened to a file or directory compared to the parent snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    New,
    Changed,
    Unmodified,
}

/// Atomic counters; see [`super::BackupSummary`] for their meaning.
#[derive(Debug, Default)]
pub struct Stats {
    pub files: [AtomicU64; 3],
    pub dirs: [AtomicU64; 3],
    pub data_blobs: AtomicU64,
    pub tree_blobs: AtomicU64,
    pub data_added: AtomicU64,
    pub data_added_packed: AtomicU64,
    pub bytes_processed: AtomicU64,
    pub errors: Mutex<Vec<(String, String)>>,
}

fn slot(c: Change) -> usize {
    match c {
        Change::New => 0,
        Change::Changed => 1,
        Change::Unmodified => 2,
    }
}

impl Stats {
    pub fn file(&self, change: Change, size: u64) {
        self.files[slot(change)].fetch_add(1, Ordering::Relaxed);
        self.bytes_processed.fetch_add(size, Ordering::Relaxed);
    }

    pub fn dir(&self, change: Change) {
        self.dirs[slot(change)].fetch_add(1, Ordering::Relaxed);
    }

    /// Account one saved data blob of `plain_len` bytes.
    pub fn data_blob(&self, saved: &Saved, plain_len: usize) {
        if saved.added {
            self.data_blobs.fetch_add(1, Ordering::Relaxed);
            self.data_added
                .fetch_add(plain_len as u64, Ordering::Relaxed);
            self.data_added_packed
                .fetch_add(saved.packed, Ordering::Relaxed);
        }
    }

    /// Account one saved tree blob of `plain_len` bytes.
    pub fn tree_blob(&self, saved: &Saved, plain_len: usize) {
        if saved.added {
            self.tree_blobs.fetch_add(1, Ordering::Relaxed);
            self.data_added
                .fetch_add(plain_len as u64, Ordering::Relaxed);
            self.data_added_packed
                .fetch_add(saved.packed, Ordering::Relaxed);
        }
    }

    pub fn error(&self, path: String, message: String) {
        self.errors.lock().push((path, message));
    }

    pub fn get(&self, counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn files_of(&self, change: Change) -> u64 {
        self.files[slot(change)].load(Ordering::Relaxed)
    }

    pub fn dirs_of(&self, change: Change) -> u64 {
        self.dirs[slot(change)].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_format::{BlobId, Id};

    #[test]
    fn only_added_blobs_count() {
        let s = Stats::default();
        let id = BlobId::from(Id::hash(b"x"));
        s.data_blob(
            &Saved {
                id,
                added: true,
                packed: 40,
            },
            8,
        );
        s.data_blob(
            &Saved {
                id,
                added: false,
                packed: 0,
            },
            8,
        );
        s.tree_blob(
            &Saved {
                id,
                added: true,
                packed: 50,
            },
            20,
        );
        s.file(Change::New, 8);
        s.file(Change::Unmodified, 2);
        s.dir(Change::Changed);
        assert_eq!(s.get(&s.data_blobs), 1);
        assert_eq!(s.get(&s.tree_blobs), 1);
        assert_eq!(s.get(&s.data_added), 28);
        assert_eq!(s.get(&s.data_added_packed), 90);
        assert_eq!(s.get(&s.bytes_processed), 10);
        assert_eq!(s.files_of(Change::New), 1);
        assert_eq!(s.files_of(Change::Unmodified), 1);
        assert_eq!(s.dirs_of(Change::Changed), 1);
        assert_eq!(s.dirs_of(Change::New), 0);
    }
}
