//! The engine's error: what failed (a context line) and why (a typed source).
//!
//! Sources stay the lower layers' typed errors ([`RepoError`],
//! [`StorageError`], [`PgError`], …) behind `source()`, so front ends can
//! classify them (exit codes, "unreachable") by walking the chain.

use std::error::Error as StdError;

use bunker_repo::RepoError;
use bunker_sources::postgres::PgError;
use bunker_storage::StorageError;

/// Any error a lower layer returns.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Errors of engine operations.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An operation failed: `context` says which, `source` why.
    #[error("{context}")]
    Failed {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// The request or the policy cannot be carried out as given; the
    /// message says what to do.
    #[error("{0}")]
    Invalid(String),
    /// The repository could not be locked (front ends: exit status 11,
    /// unless the storage refuses writes).
    #[error("failed to lock the repository")]
    Lock(#[source] RepoError),
    /// The job's cancellation token was cancelled.
    #[error("interrupted")]
    Cancelled,
    /// A lower layer's error, passed on as it is.
    #[error(transparent)]
    Lower(BoxError),
}

macro_rules! lower {
    ($($t:ty),*) => {$(
        impl From<$t> for EngineError {
            fn from(e: $t) -> Self {
                EngineError::Lower(Box::new(e))
            }
        }
    )*};
}
lower!(RepoError, PgError, StorageError, std::io::Error);

/// Results of engine operations.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// `context` failed because of `source`.
    pub fn failed(context: impl Into<String>, source: impl Into<BoxError>) -> EngineError {
        EngineError::Failed {
            context: context.into(),
            source: source.into(),
        }
    }

    /// The error and its causes, outermost first.
    pub fn chain(&self) -> impl Iterator<Item = &(dyn StdError + 'static)> {
        let first: &(dyn StdError + 'static) = self;
        std::iter::successors(Some(first), |e: &&(dyn StdError + 'static)| (*e).source())
    }

    /// Whether the operation stopped because its job was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.chain().any(|e| {
            matches!(
                e.downcast_ref::<EngineError>(),
                Some(EngineError::Cancelled)
            ) || matches!(e.downcast_ref::<RepoError>(), Some(RepoError::Cancelled))
                || matches!(e.downcast_ref::<PgError>(), Some(PgError::Cancelled { .. }))
                || e.downcast_ref::<bunker_sources::Cancelled>().is_some()
        })
    }

    /// Whether a retry (or another repository) may help: the storage did not
    /// answer (connection refused, timeouts, 5xx). Wrong passwords, missing
    /// repositories, bad credentials or options are not retryable.
    pub fn is_retryable(&self) -> bool {
        self.chain().any(|cause| {
            cause
                .downcast_ref::<StorageError>()
                .is_some_and(StorageError::is_retryable)
                || cause
                    .downcast_ref::<RepoError>()
                    .is_some_and(|r| matches!(r, RepoError::Storage(e) if e.is_retryable()))
        })
    }

    /// The error as one line: see [`one_line`].
    pub fn one_line(&self) -> String {
        one_line(self)
    }
}

/// An error and its causes as one line: the messages joined with ": ",
/// leaving out a cause whose text the previous message already ends with
/// (many errors include their source in their own message), ANSI escape
/// sequences removed, other control characters and whitespace (line breaks
/// included) collapsed to single spaces.
pub fn one_line(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        let text = text.trim();
        if !text.is_empty() && !parts.last().is_some_and(|prev| prev.ends_with(text)) {
            parts.push(text.to_string());
        }
        cur = e.source();
    }
    strip_control(&parts.join(": "))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `s` without ANSI escape sequences (colour codes from a child program's
/// output, say) and other control characters, which become spaces: an
/// error message is one plain line whatever it quotes.
fn strip_control(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters... final byte in @..~; other escapes: ESC + one char.
            if chars.peek() == Some(&'[') {
                chars.next();
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if c.is_control() {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// Adds a context line to errors of lower layers.
pub trait Context<T> {
    /// On error, wrap it in [`EngineError::Failed`] with `context`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Like [`Context::context`], the context computed only on error.
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T, E: Into<BoxError>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| EngineError::failed(context, e))
    }

    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| EngineError::failed(f(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_and_dedups_the_chain() {
        let e = EngineError::failed(
            "saving",
            EngineError::failed("writing x", std::io::Error::other("disk on fire")),
        );
        assert_eq!(e.one_line(), "saving: writing x: disk on fire");
        let e = EngineError::failed("open failed: gone", std::io::Error::other("gone"));
        assert_eq!(e.one_line(), "open failed: gone");
        let e = EngineError::failed("outer", std::io::Error::other("a: b\nc"));
        assert_eq!(e.one_line(), "outer: a: b c");
    }

    #[test]
    fn cancellation_is_found_anywhere_in_the_chain() {
        assert!(EngineError::Cancelled.is_cancelled());
        assert!(EngineError::failed("backup", RepoError::Cancelled).is_cancelled());
        assert!(!EngineError::failed("backup", RepoError::Invalid("x".into())).is_cancelled());
    }
}
