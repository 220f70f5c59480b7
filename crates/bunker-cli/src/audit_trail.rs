//! The audit records of one-repository commands: every repository a
//! command opens is remembered, and when a verb that changes a repository or
//! reads data out of it ends, one record per repository is appended to its
//! audit log ([`bunker_repo::audit`]) with the verb, the snapshots the
//! command named ([`snapshots`]) and the result. `run` is recorded by the
//! engine, per item and target; dry runs and read-only verbs are not
//! recorded. A failed append is a warning: the operation's result stands.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bunker_repo::audit::{self, Entry, Outcome};
use bunker_repo::Repository;

use crate::commands::key::KeyAction;
use crate::commands::mysql::MysqlCommand;
use crate::commands::pg::PgCommand;
use crate::commands::Command;
use crate::exit::Status;

static OPENED: Mutex<Vec<Arc<Repository>>> = Mutex::new(Vec::new());
static SNAPSHOTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Whether the running command is audited (only then are repositories kept).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Remember a repository the command opened (called where every open is
/// registered for interruption).
pub fn opened(repo: &Arc<Repository>) {
    if !ACTIVE.load(Ordering::SeqCst) {
        return;
    }
    if let Ok(mut v) = OPENED.lock() {
        if !v.iter().any(|r| Arc::ptr_eq(r, repo)) {
            v.push(Arc::clone(repo));
        }
    }
}

/// Name the snapshots the command wrote, read or removed.
pub fn snapshots<I: IntoIterator<Item = S>, S: ToString>(ids: I) {
    if let Ok(mut v) = SNAPSHOTS.lock() {
        v.extend(ids.into_iter().map(|s| s.to_string()));
    }
}

/// The audited operation of a command line, `None` when it is not audited;
/// when it is, the repositories the command opens are remembered from now.
pub fn begin(cmd: &Command) -> Option<&'static str> {
    let op = operation(cmd);
    ACTIVE.store(op.is_some(), Ordering::SeqCst);
    op
}

fn operation(cmd: &Command) -> Option<&'static str> {
    Some(match cmd {
        Command::Backup(a) if !a.dry_run => "backup",
        Command::Restore(a) if !a.dry_run => "restore",
        Command::Dump(_) => "dump",
        Command::Mount(_) => "mount",
        Command::Forget(a) if !a.dry_run => "forget",
        Command::Prune(a) if !a.dry_run => "prune",
        Command::Copy(_) => "copy",
        Command::Tag(_) => "tag",
        Command::Rewrite(a) if !a.dry_run => "rewrite",
        Command::Recover(a) if !a.dry_run => "recover",
        Command::Key(k) => match k.action {
            KeyAction::List => return None,
            KeyAction::Add { .. } => "key add",
            KeyAction::Remove { .. } => "key remove",
            KeyAction::Passwd { .. } => "key passwd",
        },
        Command::Pg(p) => match p.command {
            PgCommand::Backup(_) => "pg backup",
            PgCommand::Dump(_) => "pg dump",
            PgCommand::Restore(_) => "pg restore",
            PgCommand::RestoreDump(_) => "pg restore-dump",
            _ => return None,
        },
        Command::Mysql(m) => match m.command {
            MysqlCommand::Backup(_) => "mysql backup",
            MysqlCommand::Dump(_) => "mysql dump",
            MysqlCommand::Restore(_) => "mysql restore",
            MysqlCommand::RestoreDump(_) => "mysql restore-dump",
            MysqlCommand::BinlogPrune(_) => "mysql binlog-prune",
            _ => return None,
        },
        _ => return None,
    })
}

/// Append the record of `operation` that ended with `result` to every
/// repository the command opened; a failed append is a warning.
pub fn finish(operation: &str, result: &anyhow::Result<Status>) {
    let repos = std::mem::take(&mut *OPENED.lock().unwrap_or_else(|e| e.into_inner()));
    let mut ids = std::mem::take(&mut *SNAPSHOTS.lock().unwrap_or_else(|e| e.into_inner()));
    ids.dedup();
    let (outcome, error) = match result {
        Ok(Status::Success) | Ok(Status::Fallback) => (Outcome::Success, None),
        Ok(s) => (Outcome::Partial, Some(format!("exit status {}", s.code()))),
        Err(e) => (Outcome::Failure, Some(crate::exit::one_line(e))),
    };
    let entry = Entry::new(operation).snapshots(ids).outcome(outcome, error);
    for repo in repos {
        if let Err(e) = audit::append(&repo, &entry) {
            eprintln!(
                "bunker: warning: the audit record of {operation} could not be written to {}: {e}",
                repo.storage().location()
            );
        }
    }
}
