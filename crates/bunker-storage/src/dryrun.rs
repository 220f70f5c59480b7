//! Dry-run layer: reads pass through, writes and removes are counted and dropped.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::error::{ErrorKind, StorageError};
use crate::file_type::{FileInfo, FileType};
use crate::{DynStorage, Storage};

/// What a dry run would have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DryRunStats {
    /// Files that would have been written (`write` and `write_new`).
    pub writes: u64,
    /// Bytes that would have been written.
    pub bytes_written: u64,
    /// Files that would have been removed.
    pub removes: u64,
}

/// Passes reads to the inner storage and drops mutations, counting them.
///
/// `write_new` and `remove` still check the inner storage so callers see the
/// AlreadyExists / NotFound outcomes a real run would produce. Dropped writes are
/// not readable afterwards.
#[derive(Debug)]
pub struct DryRunStorage {
    inner: DynStorage,
    writes: AtomicU64,
    bytes: AtomicU64,
    removes: AtomicU64,
}

impl DryRunStorage {
    /// Wraps `inner`.
    pub fn new(inner: DynStorage) -> Self {
        DryRunStorage {
            inner,
            writes: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            removes: AtomicU64::new(0),
        }
    }

    /// Counts of dropped mutations.
    pub fn stats(&self) -> DryRunStats {
        DryRunStats {
            writes: self.writes.load(Ordering::Relaxed),
            bytes_written: self.bytes.load(Ordering::Relaxed),
            removes: self.removes.load(Ordering::Relaxed),
        }
    }

    fn count_write(&self, t: FileType, name: &str, len: usize) -> Result<(), StorageError> {
        t.check_name(name)?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        tracing::debug!(file = %t.path(name), bytes = len, "dry run: write dropped");
        Ok(())
    }
}

impl Storage for DryRunStorage {
    fn location(&self) -> String {
        format!("dry-run({})", self.inner.location())
    }

    fn create(&self) -> Result<(), StorageError> {
        tracing::debug!("dry run: create dropped");
        Ok(())
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, StorageError> {
        self.inner.list(t)
    }

    fn read(&self, t: FileType, name: &str) -> Result<Bytes, StorageError> {
        self.inner.read(t, name)
    }

    fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Bytes, StorageError> {
        self.inner.read_range(t, name, offset, length)
    }

    fn write(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        self.count_write(t, name, data.len())
    }

    fn write_new(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        if self.inner.stat(t, name)?.is_some() {
            return Err(StorageError::new(
                ErrorKind::AlreadyExists,
                self.location(),
                t.path(name),
                "file already exists",
            ));
        }
        self.count_write(t, name, data.len())
    }

    fn remove(&self, t: FileType, name: &str) -> Result<(), StorageError> {
        if self.inner.stat(t, name)?.is_none() {
            return Err(StorageError::new(
                ErrorKind::NotFound,
                self.location(),
                t.path(name),
                "file not found",
            ));
        }
        self.removes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(file = %t.path(name), "dry run: remove dropped");
        Ok(())
    }

    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>, StorageError> {
        self.inner.stat(t, name)
    }

    fn list_temp(&self) -> Result<Vec<crate::TempFile>, StorageError> {
        self.inner.list_temp()
    }

    fn remove_temp(&self, path: &str) -> Result<(), StorageError> {
        crate::check_temp_path(&self.location(), path)?;
        self.removes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(file = %path, "dry run: remove dropped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{into_dyn, LocalStorage};

    #[test]
    fn writes_and_removes_are_counted_and_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = into_dyn(LocalStorage::new(dir.path()));
        inner.create().expect("create");
        inner
            .write(FileType::Snapshot, "s1", Bytes::from_static(b"snap"))
            .expect("seed");
        let dry = DryRunStorage::new(inner.clone());

        assert_eq!(
            dry.read(FileType::Snapshot, "s1").expect("read"),
            &b"snap"[..]
        );
        assert_eq!(dry.list(FileType::Snapshot).expect("list").len(), 1);
        dry.write(FileType::Pack, "aabb", Bytes::from_static(b"12345"))
            .expect("write");
        dry.write_new(FileType::Lock, "l", Bytes::from_static(b"123"))
            .expect("write_new");
        let e = dry
            .write_new(FileType::Snapshot, "s1", Bytes::new())
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        dry.remove(FileType::Snapshot, "s1").expect("remove");
        assert!(dry
            .remove(FileType::Snapshot, "nope")
            .unwrap_err()
            .is_not_found());
        assert!(dry.write(FileType::Key, "../x", Bytes::new()).is_err());

        assert_eq!(
            dry.stats(),
            DryRunStats {
                writes: 2,
                bytes_written: 8,
                removes: 1
            }
        );
        // Nothing changed underneath.
        assert_eq!(inner.stat(FileType::Pack, "aabb").expect("stat"), None);
        assert_eq!(inner.stat(FileType::Lock, "l").expect("stat"), None);
        assert_eq!(inner.stat(FileType::Snapshot, "s1").expect("stat"), Some(4));
    }
}
