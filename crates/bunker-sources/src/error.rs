//! Error type shared by every module of this crate.

use std::io;
use std::path::{Path, PathBuf};

/// Coarse classification of a [`SourceError`], used by callers to decide
/// whether to skip an item (vanished, unreadable) or abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceErrorKind {
    /// The item vanished or never existed.
    NotFound,
    /// The item exists but may not be accessed.
    PermissionDenied,
    /// Anything else.
    Other,
}

/// Errors raised while reading sources or writing restore targets.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file-system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// Short name of the failed operation (`lstat`, `openat`, ...).
        op: &'static str,
        /// Path the operation was applied to.
        path: PathBuf,
        /// Underlying OS error.
        #[source]
        source: io::Error,
    },
    /// A name taken from a snapshot is unsafe to use as a path component.
    #[error("invalid file name {}: {reason}", String::from_utf8_lossy(name))]
    InvalidName {
        /// The offending name.
        name: Vec<u8>,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A restore path had no components.
    #[error("empty relative path")]
    EmptyPath,
    /// An exclude pattern could not be parsed.
    #[error("invalid exclude pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A size string (`--exclude-larger-than`) could not be parsed.
    #[error("invalid size {value:?}: {reason}")]
    InvalidSize {
        /// The string as given.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Inconsistent or incomplete options.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// An existing entry in the restore target has an unexpected type.
    #[error("{}: {message}", path.display())]
    UnexpectedType {
        /// Relative path inside the target.
        path: PathBuf,
        /// What was expected / found.
        message: &'static str,
    },
    /// SQLite reported an error.
    #[error("sqlite {op} {}: {source}", path.display())]
    Sqlite {
        /// Operation that failed.
        op: &'static str,
        /// Database file concerned.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// The copy of a database failed `PRAGMA integrity_check`.
    #[error("integrity check of {} failed: {message}", path.display())]
    Integrity {
        /// The copy that was checked.
        path: PathBuf,
        /// Report of SQLite (first lines).
        message: String,
    },
}

impl SourceError {
    /// Wrap an I/O error with operation and path context.
    pub fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        SourceError::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Wrap a rustix errno with operation and path context.
    pub(crate) fn errno(op: &'static str, path: impl AsRef<Path>, e: rustix::io::Errno) -> Self {
        Self::io(op, path, io::Error::from(e))
    }

    /// Classify the error.
    pub fn kind(&self) -> SourceErrorKind {
        match self {
            SourceError::Io { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => SourceErrorKind::NotFound,
                io::ErrorKind::PermissionDenied => SourceErrorKind::PermissionDenied,
                _ => SourceErrorKind::Other,
            },
            SourceError::Sqlite { source, .. } => match source.sqlite_error_code() {
                Some(rusqlite::ErrorCode::CannotOpen) => SourceErrorKind::NotFound,
                Some(rusqlite::ErrorCode::PermissionDenied) => SourceErrorKind::PermissionDenied,
                _ => SourceErrorKind::Other,
            },
            _ => SourceErrorKind::Other,
        }
    }

    /// Whether repeating the operation may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            SourceError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }

    /// The raw OS error number, if this is an I/O error carrying one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            SourceError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_classified() {
        let e = SourceError::io("lstat", "/x", io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(e.kind(), SourceErrorKind::NotFound);
        assert!(e.to_string().contains("lstat /x"));
        let e = SourceError::errno("open", "/y", rustix::io::Errno::ACCESS);
        assert_eq!(e.kind(), SourceErrorKind::PermissionDenied);
        let e = SourceError::errno("open", "/y", rustix::io::Errno::INTR);
        assert_eq!(e.kind(), SourceErrorKind::Other);
        assert!(e.is_retryable());
        let e = SourceError::InvalidName {
            name: b"..".to_vec(),
            reason: "dot-dot",
        };
        assert_eq!(e.kind(), SourceErrorKind::Other);
        assert!(!e.is_retryable());
    }
}
