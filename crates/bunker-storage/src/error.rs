//! The storage error type shared by every backend and layer.

use std::fmt;
use std::io;

/// What went wrong, independent of the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file (or the repository directory) does not exist.
    NotFound,
    /// `write_new` found the name already taken.
    AlreadyExists,
    /// The backend refused the operation for this identity.
    PermissionDenied,
    /// Credentials are missing, wrong or expired.
    Unauthenticated,
    /// The target is out of space or quota.
    NoSpace,
    /// The backend did not answer in time.
    Timeout,
    /// Connection refused/reset, 5xx, throttling, truncated transfer: try again later.
    Unavailable,
    /// Bad location, option, name or range; or corrupt/truncated stored data.
    Invalid,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// A short human name for the kind.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::NoSpace => "no space left",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Other => "error",
        }
    }

    /// What the user should do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            ErrorKind::NotFound => "check the repository location; run `bunker init` if it was never created",
            ErrorKind::AlreadyExists => "another writer created this file first",
            ErrorKind::PermissionDenied => "check file permissions or the bucket policy for these credentials",
            ErrorKind::Unauthenticated => {
                "check the credentials: S3 access key and secret (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or -o s3.access_key_id=...), SFTP user, key and known_hosts"
            }
            ErrorKind::NoSpace => "free space or quota on the target, or choose another repository",
            ErrorKind::Timeout => "check the network, or raise the per-request limit with -o timeout=SECS",
            ErrorKind::Unavailable => "check the endpoint is reachable; the request may succeed when retried",
            ErrorKind::Invalid => "check the repository location, options and stored data",
            ErrorKind::Other => "see the message for details",
        }
    }

    /// Whether an operation failing with this kind may succeed when repeated.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ErrorKind::Timeout | ErrorKind::Unavailable)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from a storage backend or layer.
///
/// `Display` renders one line: backend/endpoint, path, message and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{backend}: {path}: {kind}: {message} ({hint})", hint = .kind.hint())]
pub struct StorageError {
    /// Classification used for retry decisions and user hints.
    pub kind: ErrorKind,
    /// Backend and endpoint, e.g. `local:/srv/repo` or `s3:https://host/bucket/prefix`; never secrets.
    pub backend: String,
    /// Path of the file inside the repository (empty for whole-backend errors).
    pub path: String,
    /// Detail from the underlying library, flattened to a single line.
    pub message: String,
}

impl StorageError {
    /// Builds an error; newlines in `message` are flattened so `Display` stays one line.
    pub fn new(
        kind: ErrorKind,
        backend: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        StorageError {
            kind,
            backend: backend.into(),
            path: path.into(),
            message: one_line(&message.into()),
        }
    }

    /// An `Invalid` error not tied to a file (bad location or option).
    pub fn invalid(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, backend, "", message)
    }

    /// Classifies an `std::io::Error` (ENOSPC, EACCES/EPERM, ENOENT, timeouts, resets...).
    pub fn from_io(err: &io::Error, backend: impl Into<String>, path: impl Into<String>) -> Self {
        Self::new(io_kind(err), backend, path, err.to_string())
    }

    /// Whether the endpoint could not be reached at all: the connection was
    /// refused, the host name does not resolve, or there is no route to it.
    /// Retryable, but [`crate::RetryStorage`] does not retry it before
    /// the backend has answered once.
    pub fn is_unreachable(&self) -> bool {
        let m = self.message.to_ascii_lowercase();
        self.kind == ErrorKind::Unavailable
            && [
                "connection refused",
                "dns error",
                "failed to lookup address",
                "name or service not known",
                "no route to host",
                "nodename nor servname",
            ]
            .iter()
            .any(|p| m.contains(p))
    }

    /// True for errors worth retrying: timeouts and transient unavailability.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// True if the file (or repository) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}

/// Maps an io error onto an [`ErrorKind`].
pub(crate) fn io_kind(err: &io::Error) -> ErrorKind {
    if let Some(code) = err.raw_os_error() {
        match code {
            libc::ENOSPC | libc::EDQUOT | libc::EFBIG => return ErrorKind::NoSpace,
            libc::EACCES | libc::EPERM | libc::EROFS => return ErrorKind::PermissionDenied,
            libc::ENOENT => return ErrorKind::NotFound,
            libc::EEXIST => return ErrorKind::AlreadyExists,
            libc::ETIMEDOUT => return ErrorKind::Timeout,
            libc::EINTR | libc::EAGAIN | libc::ECONNRESET | libc::ECONNREFUSED => {
                return ErrorKind::Unavailable
            }
            libc::ENOTDIR | libc::EISDIR | libc::ENAMETOOLONG | libc::EINVAL => {
                return ErrorKind::Invalid
            }
            _ => {}
        }
    }
    match err.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        io::ErrorKind::TimedOut => ErrorKind::Timeout,
        io::ErrorKind::Interrupted
        | io::ErrorKind::WouldBlock
        | io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ErrorKind::Unavailable,
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => ErrorKind::Invalid,
        io::ErrorKind::UnexpectedEof => ErrorKind::Invalid,
        _ => ErrorKind::Other,
    }
}

fn one_line(s: &str) -> String {
    if !s.contains(['\n', '\r']) {
        return s.to_string();
    }
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_with_hint() {
        let e = StorageError::new(
            ErrorKind::Unavailable,
            "s3:https://host/bucket",
            "data/ab/abcd",
            "connection reset\nby peer",
        );
        let s = e.to_string();
        assert!(!s.contains('\n'));
        assert!(s.contains("s3:https://host/bucket"));
        assert!(s.contains("data/ab/abcd"));
        assert!(s.contains("connection reset by peer"));
        assert!(s.contains("check the endpoint is reachable"));
        assert!(e.is_retryable());
        assert!(!e.is_not_found());
    }

    #[test]
    fn io_mapping() {
        let cases = [
            (libc::ENOSPC, ErrorKind::NoSpace),
            (libc::EACCES, ErrorKind::PermissionDenied),
            (libc::EPERM, ErrorKind::PermissionDenied),
            (libc::ENOENT, ErrorKind::NotFound),
            (libc::EEXIST, ErrorKind::AlreadyExists),
            (libc::ETIMEDOUT, ErrorKind::Timeout),
        ];
        for (code, kind) in cases {
            let e = StorageError::from_io(&io::Error::from_raw_os_error(code), "local:x", "p");
            assert_eq!(e.kind, kind, "errno {code}");
        }
        let e = StorageError::from_io(
            &io::Error::new(io::ErrorKind::ConnectionReset, "reset"),
            "b",
            "p",
        );
        assert!(e.is_retryable());
    }

    #[test]
    fn retryable_kinds() {
        assert!(ErrorKind::Timeout.is_retryable());
        assert!(ErrorKind::Unavailable.is_retryable());
        for k in [
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::PermissionDenied,
            ErrorKind::Unauthenticated,
            ErrorKind::NoSpace,
            ErrorKind::Invalid,
            ErrorKind::Other,
        ] {
            assert!(!k.is_retryable(), "{k}");
        }
    }
}
