//! Exit statuses and the one place where errors are mapped to them.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | fatal error |
//! | 2    | `dump`: the path is not in the snapshot, or is not a file or directory (as restic) |
//! | 3    | backup/restore completed, but some files were unreadable, unwritable or skipped; `status`: an item is LATE; `drill`: passed, but slower than the item's RTO; `recover --time`: an item has no snapshot at or before the time |
//! | 4    | backup completed on a fallback repository (the primary was unreachable) |
//! | 10   | the repository does not exist |
//! | 11   | the repository could not be locked |
//! | 12   | wrong password |
//! | 130  | interrupted |

use std::fmt;

use bunker_repo::RepoError;

pub const SUCCESS: u8 = 0;
pub const FATAL: u8 = 1;
pub const NOT_DUMPABLE: u8 = 2;
pub const INCOMPLETE: u8 = 3;
pub const FALLBACK: u8 = 4;
pub const NO_REPOSITORY: u8 = 10;
pub const LOCK_FAILED: u8 = 11;
pub const WRONG_PASSWORD: u8 = 12;
pub const INTERRUPTED: u8 = 130;

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything was done.
    Success,
    /// The operation completed, but some items were skipped or failed (exit 3).
    Incomplete,
    /// The backup completed on a fallback repository (exit 4).
    Fallback,
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Success => SUCCESS,
            Status::Incomplete => INCOMPLETE,
            Status::Fallback => FALLBACK,
        }
    }
}

/// Context attached to errors of taking a repository lock; maps to exit 11
/// whatever the underlying cause.
#[derive(Debug, Clone, Copy)]
pub struct LockFailed;

impl fmt::Display for LockFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("failed to lock the repository")
    }
}

/// Context attached by `dump` when the path it was given cannot be dumped
/// (not in the snapshot, or not a file or directory); maps to exit 2, as
/// restic's `dump` exits.
#[derive(Debug, Clone, Copy)]
pub struct NotDumpable;

impl fmt::Display for NotDumpable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot dump")
    }
}

/// The exit status for a failed command.
pub fn code_for(err: &anyhow::Error) -> u8 {
    if crate::interrupt::interrupted() {
        return INTERRUPTED;
    }
    if err.downcast_ref::<NotDumpable>().is_some() {
        return NOT_DUMPABLE;
    }
    // A storage that refuses writes is not "another process holds a lock".
    let read_only = err.chain().any(|c| {
        matches!(
            c.downcast_ref::<RepoError>(),
            Some(RepoError::ReadOnly { .. })
        )
    });
    if read_only {
        return FATAL;
    }
    let engine_lock = err.chain().any(|c| {
        matches!(
            c.downcast_ref::<bunker_engine::EngineError>(),
            Some(bunker_engine::EngineError::Lock(_))
        )
    });
    if engine_lock || err.downcast_ref::<LockFailed>().is_some() {
        return LOCK_FAILED;
    }
    for cause in err.chain() {
        if matches!(
            cause.downcast_ref::<bunker_engine::EngineError>(),
            Some(bunker_engine::EngineError::Cancelled)
        ) {
            return INTERRUPTED;
        }
        if let Some(r) = cause.downcast_ref::<RepoError>() {
            match r {
                RepoError::Cancelled => return INTERRUPTED,
                RepoError::NoRepository { .. } => return NO_REPOSITORY,
                RepoError::WrongPassword { .. } => return WRONG_PASSWORD,
                RepoError::Locked { .. } => return LOCK_FAILED,
                _ => {}
            }
        }
    }
    FATAL
}

/// The error as one line: the chain of causes joined with ": ", leaving out
/// causes whose text the previous message already ends with (many errors
/// include their source in their own message).
pub fn one_line(err: &anyhow::Error) -> String {
    bunker_engine::error::one_line(err.as_ref())
}

/// Report a panic as one line and exit 1, instead of a backtrace.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "unknown panic".to_string()
        };
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
        if is_broken_pipe(&msg) {
            // The reader of our output went away (`bunker ls | head`): not an error,
            // just stop, as command-line tools do on SIGPIPE.
            crate::interrupt::release_locks();
            std::process::exit(i32::from(SUCCESS));
        }
        eprintln!("bunker: internal error: {msg}{place} (please report this bug)");
        crate::interrupt::release_locks();
        std::process::exit(i32::from(FATAL));
    }));
}

/// Whether a panic message is Rust's report of a write to a closed pipe.
fn is_broken_pipe(msg: &str) -> bool {
    msg.starts_with("failed printing to std") && msg.contains("Broken pipe")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn error_lines_carry_no_ansi_codes_or_line_breaks() {
        let e = anyhow::anyhow!(
            "pg_basebackup failed (exit 1):\n\x1b[1;31merror:\x1b[0m could not connect\r\n"
        )
        .context("base backup of main");
        assert_eq!(
            one_line(&e),
            "base backup of main: pg_basebackup failed (exit 1): error: could not connect"
        );
    }

    #[test]
    fn broken_pipe_on_stdout_is_recognised() {
        assert!(is_broken_pipe(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_broken_pipe("index out of bounds"));
    }

    #[test]
    fn repo_errors_map_to_documented_codes() {
        let e = anyhow::Error::new(RepoError::NoRepository {
            location: "x".into(),
        });
        assert_eq!(code_for(&e), NO_REPOSITORY);
        let e =
            anyhow::Error::new(RepoError::WrongPassword { tried: 1 }).context("opening repository");
        assert_eq!(code_for(&e), WRONG_PASSWORD);
        let e = anyhow::Error::new(RepoError::Locked {
            kind: "exclusively",
            pid: 1,
            host: "h".into(),
            user: "u".into(),
            time: "t".into(),
        });
        assert_eq!(code_for(&e), LOCK_FAILED);
        let e = anyhow::Error::new(RepoError::Invalid("bad".into())).context(LockFailed);
        assert_eq!(code_for(&e), LOCK_FAILED);
        let e = anyhow::Error::new(RepoError::Invalid("bad".into()));
        assert_eq!(code_for(&e), FATAL);
        assert_eq!(code_for(&anyhow::anyhow!("plain")), FATAL);
        // A read-only storage is not "locked by another process".
        let e = anyhow::Error::new(RepoError::ReadOnly {
            detail: "local:/r: Read-only file system".into(),
        })
        .context(LockFailed);
        assert_eq!(code_for(&e), FATAL);
    }

    #[test]
    fn one_line_joins_and_dedups_the_chain() {
        let inner: Result<(), std::io::Error> = Err(std::io::Error::other("disk on fire"));
        let e = inner.context("writing x").context("saving").unwrap_err();
        assert_eq!(one_line(&e), "saving: writing x: disk on fire");
        let e = anyhow::anyhow!("a: b\nc").context("outer");
        assert_eq!(one_line(&e), "outer: a: b c");
        let inner: Result<(), std::io::Error> = Err(std::io::Error::other("gone"));
        let e = inner.context("open failed: gone").unwrap_err();
        assert_eq!(one_line(&e), "open failed: gone");
    }

    #[test]
    fn status_codes() {
        assert_eq!(Status::Success.code(), 0);
        assert_eq!(Status::Incomplete.code(), 3);
        assert_eq!(Status::Fallback.code(), 4);
    }
}
