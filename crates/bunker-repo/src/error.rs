//! Errors of repository operations.

use bunker_format::FormatError;
use bunker_storage::StorageError;

/// Errors of repository operations, each with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("no repository at {location}: run `bunker init` to create one")]
    NoRepository { location: String },
    #[error("a repository already exists at {location}")]
    AlreadyInitialized { location: String },
    #[error("wrong password, or no key file matches it ({tried} key(s) tried)")]
    WrongPassword { tried: usize },
    /// No key file could be tried: every one is damaged (`damaged` lists
    /// `keys/NAME: what is wrong`).
    #[error("no key file can be read, so the password could not be checked: {}; restore the key files from a copy of the repository", .damaged.join("; "))]
    DamagedKeys { damaged: Vec<String> },
    #[error("{what} {id}: {source}")]
    Format {
        what: &'static str,
        id: String,
        #[source]
        source: FormatError,
    },
    #[error("blob {blob} is not in the index (the repository may need `bunker check`)")]
    BlobNotFound { blob: String },
    #[error("pack {pack} is damaged: {msg}")]
    DamagedPack { pack: String, msg: String },
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    #[error("snapshot prefix {0:?} is ambiguous; give more digits")]
    AmbiguousId(String),
    #[error("repository is locked {kind} by PID {pid} on {host} (user {user}) since {time}; if that process is gone, run `bunker unlock`")]
    Locked {
        kind: &'static str,
        pid: u32,
        host: String,
        user: String,
        time: String,
    },
    /// A path the user named is not in the snapshot (or one of its parents
    /// is not a directory there).
    #[error("{0}")]
    PathNotInSnapshot(String),
    /// A path in the snapshot has a type the operation cannot handle
    /// (`dump` of a symlink, say).
    #[error("{0}")]
    WrongNodeType(String),
    /// The storage refused to write a lock (read-only file system or
    /// mount, WORM media, credentials without write permission).
    #[error("cannot lock the repository: its storage refuses writes ({detail}); commands that only read work without a lock (--no-lock), commands that change the repository need write access")]
    ReadOnly { detail: String },
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Invalid(String),
    /// The job's cancellation token was cancelled; the operation stopped at
    /// a safe point and released its locks.
    #[error("interrupted")]
    Cancelled,
}

impl From<bunker_sources::Cancelled> for RepoError {
    fn from(_: bunker_sources::Cancelled) -> Self {
        RepoError::Cancelled
    }
}

impl RepoError {
    pub fn format(what: &'static str, id: impl ToString, source: FormatError) -> Self {
        RepoError::Format {
            what,
            id: id.to_string(),
            source,
        }
    }

    /// Whether retrying the whole operation may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            RepoError::Storage(e) => e.is_retryable(),
            RepoError::Locked { .. } => true,
            _ => false,
        }
    }
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;
