//! Storage backends for bunker repositories (restic repository format v2 layout).
//!
//! The [`Storage`] trait is a small synchronous contract (list/read/write/remove/stat
//! of whole files by [`FileType`] and name) that the repository engine calls from
//! worker threads. Backends:
//!
//! * [`LocalStorage`]: a directory, restic-identical layout, atomic durable writes;
//! * [`SftpStorage`]: restic's `sftp:` locations through the system `ssh`
//!   (`openssh` and `openssh-sftp-client`), fsynced atomic writes;
//! * [`OpendalStorage`]: S3 (with a storage class per file type) and any other
//!   OpenDAL service (`opendal:sftp` included), driven by an internal tokio runtime;
//! * [`RestStorage`]: restic's REST protocol (`rest:` locations: `bunker serve`,
//!   restic's rest-server), reqwest on an internal tokio runtime.
//!
//! Layers wrap a [`DynStorage`] and are themselves storages: [`RetryStorage`]
//! (bounded jittered backoff), [`FaultStorage`] (deterministic fault injection for
//! tests, enabled by `BUNKER_FAULTS`) and [`DryRunStorage`] (drops writes).
//! [`open`] parses a restic-style location and returns the assembled stack;
//! [`conformance::run`] checks any backend against the shared contract.

pub mod conformance;
mod direct_write;
mod dryrun;
mod error;
mod fault;
mod file_type;
mod local;
mod location;
mod open;
mod opendal_backend;
mod opendal_error;
mod options;
mod rest;
mod retry;
mod runtime;
mod s3;
mod sftp;
mod sftp_backend;
mod sftp_error;
mod sftp_preflight;
mod storage_class;
mod temp_files;

use bytes::Bytes;

pub use dryrun::{DryRunStats, DryRunStorage};
pub use error::{ErrorKind, StorageError};
pub use fault::{FaultConfig, FaultStats, FaultStorage, FAULTS_ENV};
pub use file_type::{FileInfo, FileType};
pub use local::LocalStorage;
pub use location::{parse_location, Location, S3Location, SUPPORTED_FORMS};
pub use open::{open, open_backend};
pub use opendal_backend::OpendalStorage;
pub use options::{parse_duration_option, BucketLookup, Options, S3Options};
pub use rest::{type_segment as rest_type_segment, RestLocation, RestStorage};
pub use retry::{RetryConfig, RetryStorage};
pub use sftp::{KnownHosts, SftpLocation, SftpOptions};
pub use sftp_backend::SftpStorage;
pub use storage_class::{ARCHIVE_STORAGE_CLASSES, KNOWN_STORAGE_CLASSES};
pub use temp_files::{check_temp_path, is_temp_name, temp_dirs, TempFile};

/// A repository storage backend or layer. All methods block.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Human-readable location (backend and endpoint); never contains secrets.
    fn location(&self) -> String;

    /// Creates the directory/prefix layout. The config file is written separately.
    fn create(&self) -> Result<(), StorageError>;

    /// Lists the files of one type: bare names (not paths) and sizes.
    /// Temporary files (names starting with `.`) are ignored.
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, StorageError>;

    /// Reads a whole file.
    fn read(&self, t: FileType, name: &str) -> Result<Bytes, StorageError>;

    /// Reads `length` bytes at `offset`; fewer bytes than requested is an error.
    fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Bytes, StorageError>;

    /// Writes a file atomically (never visible half-written) and durably (on return).
    /// Writing an existing name replaces it atomically; callers only do that with
    /// identical content, as files are content-addressed.
    fn write(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError>;

    /// Like [`Storage::write`] but fails with [`ErrorKind::AlreadyExists`] if the name exists.
    fn write_new(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError>;

    /// Removes a file; a missing file is an [`ErrorKind::NotFound`] error.
    fn remove(&self, t: FileType, name: &str) -> Result<(), StorageError>;

    /// The size of a file, or `None` if it does not exist.
    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>, StorageError>;

    /// Temporary files interrupted writers left in the repository's
    /// directories (see [`TempFile`] and the `temp_files` module). Backends
    /// that never write under temporary names (object stores) return none.
    fn list_temp(&self) -> Result<Vec<TempFile>, StorageError> {
        Ok(Vec::new())
    }

    /// Removes one temporary file found by [`Storage::list_temp`]; any other
    /// path is refused ([`check_temp_path`]). A missing file is
    /// [`ErrorKind::NotFound`].
    fn remove_temp(&self, path: &str) -> Result<(), StorageError> {
        check_temp_path(&self.location(), path)?;
        Err(StorageError::new(
            ErrorKind::NotFound,
            self.location(),
            path,
            "this backend writes no temporary files",
        ))
    }
}

/// A shared, dynamically dispatched storage.
pub type DynStorage = std::sync::Arc<dyn Storage>;

/// Shorthand for `Arc::new(storage) as DynStorage`.
pub fn into_dyn<S: Storage + 'static>(storage: S) -> DynStorage {
    std::sync::Arc::new(storage)
}
