//! The error type of this crate.

/// Why a notifier could not be built or a notice not delivered. Messages
/// never contain a secret (URLs are redacted, passwords never included).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// `send_to` named a target the policy does not have.
    #[error("no notification target \"{name}\" (the policy has: {})", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownTarget {
        /// The name asked for.
        name: String,
        /// The targets there are.
        known: Vec<String>,
    },
    /// A target's settings cannot be used (found when the notifier is built
    /// or when a secret is resolved).
    #[error("notification target \"{target}\": {reason}")]
    Config {
        /// The target.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// The receiver answered with an HTTP error status.
    #[error("{url} answered HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Http {
        /// The (redacted) URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body, for the reason.
        body: String,
    },
    /// The request could not be made or got no answer (connection refused,
    /// time-out, TLS failure).
    #[error("{url}: {reason}")]
    Transport {
        /// The (redacted) URL.
        url: String,
        /// What happened.
        reason: String,
        /// False when another attempt cannot help (a certificate that is
        /// not trusted, for one).
        retryable: bool,
    },
    /// The SMTP exchange failed.
    #[error("SMTP {server}: {reason}")]
    Smtp {
        /// `host:port`.
        server: String,
        /// What happened.
        reason: String,
        /// Whether the server said the failure is temporary (4xx) or the
        /// connection failed.
        transient: bool,
    },
    /// The notice does not apply to the target (e.g. a healthchecks target
    /// with no ping URL for the item).
    #[error("notification target \"{target}\": {reason}")]
    NotApplicable {
        /// The target.
        target: String,
        /// Why.
        reason: String,
    },
}

impl NotifyError {
    /// The message without the target's name, for places that show the
    /// name already (a [`crate::Delivery`]'s `error`).
    pub fn detail(&self) -> String {
        match self {
            NotifyError::Config { reason, .. } | NotifyError::NotApplicable { reason, .. } => {
                reason.clone()
            }
            other => other.to_string(),
        }
    }

    /// Whether another attempt could succeed: transport failures (but TLS
    /// certificate failures), HTTP 5xx,
    /// 408 and 429, and transient SMTP failures are retried; other 4xx,
    /// configuration problems and unknown targets are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Http { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            NotifyError::Transport { retryable, .. } => *retryable,
            NotifyError::Smtp { transient, .. } => *transient,
            NotifyError::UnknownTarget { .. }
            | NotifyError::Config { .. }
            | NotifyError::NotApplicable { .. } => false,
        }
    }
}
