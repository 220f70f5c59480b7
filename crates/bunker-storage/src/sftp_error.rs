//! Classification of `openssh` and `openssh-sftp-client` errors for the native
//! SFTP backend.

use openssh_sftp_client::error::SftpErrorKind;
use openssh_sftp_client::Error as SftpError;

use crate::error::{io_kind, ErrorKind, StorageError};
use crate::sftp_preflight;

/// The error and its sources, one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
    }
    msg
}

/// True if the error came from the server as an SFTP status (the connection is
/// fine); false for transport, protocol and process failures, after which the
/// connection is not reused.
pub(crate) fn is_status(e: &SftpError) -> bool {
    matches!(
        e,
        SftpError::SftpError(..) | SftpError::UnsupportedExtension(_)
    )
}

/// The server's own message of a status error (`"No such file"`, `"Failure"`...).
fn status_text(e: &SftpError) -> String {
    match e {
        SftpError::SftpError(kind, msg) => {
            let (text, _lang) = msg.get();
            if text.is_empty() {
                format!("{kind:?}")
            } else {
                text.to_string()
            }
        }
        other => chain(other),
    }
}

/// Classifies an error of one SFTP request on `path`.
pub(crate) fn map_sftp(e: &SftpError, label: &str, path: &str) -> StorageError {
    let kind = match e {
        SftpError::SftpError(k, _) => match k {
            SftpErrorKind::NoSuchFile => ErrorKind::NotFound,
            SftpErrorKind::PermDenied => ErrorKind::PermissionDenied,
            SftpErrorKind::BadMessage | SftpErrorKind::OpUnsupported => ErrorKind::Invalid,
            // OpenSSH reports every other errno (EEXIST, ENOSPC, EIO...) as "Failure".
            _ => ErrorKind::Other,
        },
        SftpError::UnsupportedExtension(_) | SftpError::UnsupportedSftpProtocol { .. } => {
            ErrorKind::Invalid
        }
        SftpError::IOError(io) => match io_kind(io) {
            // A short read or a broken pipe mid-transfer is a connection problem here.
            ErrorKind::Invalid | ErrorKind::Other => ErrorKind::Unavailable,
            k => k,
        },
        SftpError::RemoteChildSpawnError(ssh) => return map_ssh(ssh, label),
        // Lost connection, sftp-server exit, protocol garbage: try again on a new one.
        _ => ErrorKind::Unavailable,
    };
    let message = match e {
        SftpError::SftpError(..) => format!("sftp: {}", status_text(e)),
        _ => format!("sftp connection: {}", chain(e)),
    };
    StorageError::new(kind, label, path, message)
}

/// Classifies a failure to start or use an ssh connection, from ssh's own
/// diagnostics where there are any (same rules as the preflight check).
pub(crate) fn map_ssh(e: &openssh::Error, label: &str) -> StorageError {
    let text = chain(e);
    let mut err = sftp_preflight::classify(label, &text);
    if err.kind == ErrorKind::Other {
        // The preflight check passed, so this is the connection failing later.
        err.kind = ErrorKind::Unavailable;
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn sftp_errors_are_classified() {
        let io_err = |k: io::ErrorKind| SftpError::IOError(io::Error::new(k, "x"));
        let cases = [
            (io_err(io::ErrorKind::BrokenPipe), ErrorKind::Unavailable),
            (io_err(io::ErrorKind::UnexpectedEof), ErrorKind::Unavailable),
            (io_err(io::ErrorKind::TimedOut), ErrorKind::Timeout),
            (
                SftpError::UnsupportedExtension(&"fsync"),
                ErrorKind::Invalid,
            ),
            (
                SftpError::BackgroundTaskFailure(&"read task"),
                ErrorKind::Unavailable,
            ),
            (
                SftpError::InvalidResponse(&"garbage"),
                ErrorKind::Unavailable,
            ),
        ];
        for (e, kind) in cases {
            let m = map_sftp(&e, "sftp:nas:/r", "data/ab/ab01");
            assert_eq!(m.kind, kind, "{m}");
            assert!(m.to_string().contains("data/ab/ab01"), "{m}");
        }
        assert!(is_status(&SftpError::UnsupportedExtension(&"fsync")));
        assert!(!is_status(&io_err(io::ErrorKind::BrokenPipe)));
    }

    #[test]
    fn ssh_errors_use_the_preflight_rules() {
        let refused = openssh::Error::Connect(io::Error::other(
            "ssh: connect to host 127.0.0.1 port 2222: Connection refused",
        ));
        let e = map_ssh(&refused, "sftp:nas:/r");
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
        assert!(e.message.contains("port 2222"), "{e}");
        let denied =
            openssh::Error::Connect(io::Error::other("bk@nas: Permission denied (publickey)."));
        assert_eq!(
            map_ssh(&denied, "sftp:nas:/r").kind,
            ErrorKind::Unauthenticated
        );
        let gone = map_ssh(&openssh::Error::Disconnected, "sftp:nas:/r");
        assert!(gone.is_retryable(), "{gone}");
    }
}
