//! Classification of OpenDAL errors into storage error kinds.

use crate::error::{ErrorKind, StorageError};

/// Classifies an OpenDAL error.
pub(crate) fn map_err(e: opendal::Error, backend: &str, path: &str) -> StorageError {
    use opendal::ErrorKind as K;
    let msg = with_causes(&e);
    let lower = msg.to_ascii_lowercase();
    let auth_markers = [
        "invalidaccesskeyid",
        "signaturedoesnotmatch",
        // Garage answers a wrong secret with `AccessDenied: Forbidden: Invalid signature`.
        "invalid signature",
        "expiredtoken",
        "invalidtoken",
        "loading credential",
        "401 unauthorized",
    ];
    let kind = match e.kind() {
        _ if auth_markers.iter().any(|m| lower.contains(m)) => ErrorKind::Unauthenticated,
        K::NotFound => ErrorKind::NotFound,
        K::AlreadyExists | K::ConditionNotMatch => ErrorKind::AlreadyExists,
        K::PermissionDenied => ErrorKind::PermissionDenied,
        K::RateLimited => ErrorKind::Unavailable,
        K::ConfigInvalid
        | K::Unsupported
        | K::IsADirectory
        | K::NotADirectory
        | K::RangeNotSatisfied
        | K::IsSameFile => ErrorKind::Invalid,
        _ if lower.contains("no space left") || lower.contains("quotaexceeded") => {
            ErrorKind::NoSpace
        }
        _ if lower.contains("timeout") || lower.contains("timed out") => ErrorKind::Timeout,
        _ if e.is_temporary() => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    };
    StorageError::new(kind, backend, path, msg)
}

/// The error's text followed by its causes' that it does not already
/// contain: reqwest's "error sending request" hides the reason ("tcp
/// connect error: Connection refused", "dns error: …") in its sources.
fn with_causes(e: &opendal::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cur = c.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_classification() {
        use opendal::{Error, ErrorKind as K};
        let cases = [
            (Error::new(K::NotFound, "x"), ErrorKind::NotFound),
            (
                Error::new(K::ConditionNotMatch, "x"),
                ErrorKind::AlreadyExists,
            ),
            (
                Error::new(K::PermissionDenied, "AccessDenied"),
                ErrorKind::PermissionDenied,
            ),
            (
                Error::new(K::PermissionDenied, "InvalidAccessKeyId"),
                ErrorKind::Unauthenticated,
            ),
            (
                Error::new(
                    K::PermissionDenied,
                    "AccessDenied: Forbidden: Invalid signature",
                ),
                ErrorKind::Unauthenticated,
            ),
            (
                Error::new(K::RateLimited, "SlowDown"),
                ErrorKind::Unavailable,
            ),
            (
                Error::new(K::Unexpected, "operation timeout reached").set_temporary(),
                ErrorKind::Timeout,
            ),
            (
                Error::new(K::Unexpected, "connection refused").set_temporary(),
                ErrorKind::Unavailable,
            ),
            (Error::new(K::Unexpected, "weird"), ErrorKind::Other),
            (
                Error::new(K::ConfigInvalid, "NoSuchBucket"),
                ErrorKind::Invalid,
            ),
        ];
        for (e, kind) in cases {
            let m = map_err(e, "s3:https://h/b", "p");
            assert_eq!(m.kind, kind, "{m}");
        }
    }
}
