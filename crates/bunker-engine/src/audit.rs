//! Audit records of the engine's operations (see [`bunker_repo::audit`]):
//! one per item and target of a run, per runbook step executed. A failed
//! append is a [`Warning::AuditNotWritten`]: the operation's result stands.

use bunker_repo::audit::{self, Entry, Outcome as AuditOutcome};
use bunker_repo::Repository;

use crate::events::{Event, EventSink, Warning};
use crate::execute::{Outcome, TargetRun};

/// Append `entry` to `repo`'s audit log; a failure is a warning event.
pub fn append(repo: &Repository, entry: &Entry, sink: &dyn EventSink) {
    if let Err(e) = audit::append(repo, entry) {
        let w = Warning::AuditNotWritten {
            operation: entry.operation.clone(),
            repository: repo.storage().location(),
            error: e.to_string(),
        };
        sink.event(&Event::Warning(&w));
    }
}

/// The record of one item run at one target.
pub fn run_target(repo: &Repository, run: &TargetRun, sink: &dyn EventSink) {
    let (outcome, error) = match &run.outcome {
        Outcome::Failed { message, .. } => (AuditOutcome::Failure, Some(message.clone())),
        Outcome::Warning { unreadable } => (
            AuditOutcome::Partial,
            Some(format!("{} file(s) could not be read", unreadable.len())),
        ),
        _ => (AuditOutcome::Success, None),
    };
    let snapshots = run
        .stats
        .snapshot
        .as_deref()
        .map(|s| s.split(',').map(str::to_string).collect::<Vec<_>>())
        .unwrap_or_default();
    let entry = Entry::new("run")
        .snapshots(snapshots)
        .outcome(outcome, error)
        .details(serde_json::json!({
            "item": run.item,
            "target": run.target,
            "forgotten": run.stats.forgotten,
            "wal_deleted": run.stats.wal_deleted,
        }));
    append(repo, &entry, sink);
}
