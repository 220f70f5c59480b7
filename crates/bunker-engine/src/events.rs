//! What the engine reports while it works. The engine never prints: front
//! ends implement [`EventSink`] (the CLI renders text, `--json` and progress
//! bars; the daemon counts metrics and sends notifications).

use std::sync::Arc;

use bunker_repo::progress::{NoProgress, Progress};
use bunker_repo::Repository;

use crate::execute::TargetRun;
use crate::plan::DueReason;

/// Receives the engine's events. Called from the thread running the job;
/// implementations must be cheap and must not fail.
pub trait EventSink: Send + Sync {
    /// One event.
    fn event(&self, event: &Event<'_>);
    /// Progress of the long operations (backup, prune) of the job.
    fn progress(&self) -> &dyn Progress {
        &NoProgress
    }
}

/// An [`EventSink`] that ignores everything.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn event(&self, _event: &Event<'_>) {}
}

/// Something that happened.
#[derive(Debug)]
pub enum Event<'a> {
    /// A repository was opened (front ends may keep it to release its locks
    /// if they must exit without unwinding).
    RepositoryOpened(&'a Arc<Repository>),
    /// A policy repository did not exist and was created.
    RepositoryCreated {
        /// Its policy name (or location, outside a policy).
        name: &'a str,
        /// Where it is.
        location: &'a str,
    },
    /// A step of falling back from an unreachable repository.
    Fallback(FallbackEvent<'a>),
    /// A problem that does not stop the job.
    Warning(&'a Warning),
    /// An item starts (its targets follow).
    ItemStarted {
        /// The item.
        item: &'a str,
        /// Why it runs.
        reason: &'a DueReason,
    },
    /// An item finished at one target (or before reaching any).
    TargetFinished(&'a TargetRun),
    /// A step of a PostgreSQL point-in-time restore.
    PgRestore(&'a crate::pg::PgRestoreStep<'a>),
}

/// The steps of [`crate::pool::open_first_reachable`].
#[derive(Debug, Clone, Copy)]
pub enum FallbackEvent<'a> {
    /// The primary did not answer; fallbacks are tried.
    PrimaryUnreachable {
        /// The primary's name (or location).
        primary: &'a str,
        /// Why, as one line.
        error: &'a str,
    },
    /// This fallback is used instead of the primary.
    UsingFallback {
        /// The fallback's name (or location).
        fallback: &'a str,
        /// The primary's name (or location).
        primary: &'a str,
    },
    /// This fallback could not be used either.
    FallbackUnusable {
        /// The fallback's name (or location).
        fallback: &'a str,
        /// Why, as one line.
        error: &'a str,
    },
}

/// A problem that does not stop the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The start-up rule of a postgres physical item could not ask the server.
    ServerStateUnknown {
        /// The item.
        item: String,
        /// Why, as one line.
        error: String,
    },
    /// The base backups of an item could not be listed in a target.
    BaseBackupsUnreadable {
        /// The item.
        item: String,
        /// The target repository.
        target: String,
        /// Why, as one line.
        error: String,
    },
    /// An `after` or `on_failure` hook failed.
    HookFailed {
        /// The item.
        item: String,
        /// Why, as one line.
        error: String,
    },
    /// An audit record could not be appended to a repository's audit log
    /// (the operation itself stands).
    AuditNotWritten {
        /// The operation.
        operation: String,
        /// The repository.
        repository: String,
        /// Why, as one line.
        error: String,
    },
    /// A run record could not be saved in a repository.
    RecordNotSaved {
        /// The item.
        item: String,
        /// Why, as one line.
        error: String,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::ServerStateUnknown { item, error } => write!(
                f,
                "item {item}: cannot ask the server whether it restarted: {error}"
            ),
            Warning::BaseBackupsUnreadable {
                item,
                target,
                error,
            } => write!(f, "item {item}: reading base backups in {target}: {error}"),
            Warning::HookFailed { item, error } => write!(f, "item {item}: {error}"),
            Warning::AuditNotWritten {
                operation,
                repository,
                error,
            } => write!(
                f,
                "the audit record of {operation} could not be written to {repository}: {error}"
            ),
            Warning::RecordNotSaved { item, error } => write!(
                f,
                "could not record the failure of {item} in the repository: {error}"
            ),
        }
    }
}
