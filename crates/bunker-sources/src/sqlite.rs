//! Consistent online copies of SQLite databases.
//!
//! Uses SQLite's online backup API: pages are copied in small steps with
//! short sleeps so writers are not starved. A write by another connection
//! between steps restarts the copy; after a few restarts the remaining pages
//! are copied in one step (one read transaction), which in WAL mode does not
//! block writers at all. The copy is switched to rollback-journal mode so it
//! is a single self-contained file, then checked with
//! `PRAGMA integrity_check`.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::error::SourceError;

/// Pages copied per step.
const PAGES_PER_STEP: i32 = 256;
/// Pause between steps.
const STEP_PAUSE: Duration = Duration::from_millis(2);
/// Pause when the source is busy or locked.
const BUSY_PAUSE: Duration = Duration::from_millis(20);
/// Restarts tolerated before copying everything left in one step.
const MAX_RESTARTS: u32 = 3;
/// Busy/locked results tolerated before giving up.
const MAX_BUSY: u32 = 3000;

/// Summary of a finished database copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteBackupInfo {
    /// Pages in the copy.
    pub pages: u64,
    /// Page size in bytes.
    pub page_size: u64,
    /// Size of the copy on disk.
    pub bytes: u64,
    /// How often the copy restarted because the source changed.
    pub restarts: u32,
    /// Whether the source was in WAL mode.
    pub source_wal: bool,
    /// Wall-clock time taken.
    pub duration: Duration,
}

fn sql_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(rusqlite::Error) -> SourceError + 'a {
    move |source| SourceError::Sqlite {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Copy the database at `src` to a new file `dest` (replaced if it exists)
/// while other connections may be writing to it. `progress(done, total)`
/// is called with page counts after each step.
pub fn backup_sqlite(
    src: &Path,
    dest: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<SqliteBackupInfo, SourceError> {
    let started = Instant::now();
    // Fail early with a file-system error when the source is missing:
    // SQLite would otherwise report a generic "unable to open".
    std::fs::metadata(src).map_err(|e| SourceError::io("stat", src, e))?;
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_err("open", src))?;
    source
        .busy_timeout(Duration::from_secs(5))
        .map_err(sql_err("busy_timeout", src))?;
    let mode: String = source
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(sql_err("journal_mode", src))?;
    let source_wal = mode.eq_ignore_ascii_case("wal");

    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut p = dest.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SourceError::io("remove", Path::new(&p), e)),
        }
    }
    let mut copy = Connection::open(dest).map_err(sql_err("create", dest))?;
    let restarts = copy_pages(&source, &mut copy, src, &mut progress)?;
    drop(source);

    // Make the copy self-contained (no -wal/-shm files) and verify it.
    let _: String = copy
        .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
        .map_err(sql_err("journal_mode", dest))?;
    let page_size: i64 = copy
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(sql_err("page_size", dest))?;
    let pages: i64 = copy
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(sql_err("page_count", dest))?;
    integrity_check(&copy, dest)?;
    copy.close().map_err(|(_, e)| sql_err("close", dest)(e))?;
    let bytes = std::fs::metadata(dest)
        .map_err(|e| SourceError::io("stat", dest, e))?
        .len();
    Ok(SqliteBackupInfo {
        pages: u64::try_from(pages).unwrap_or(0),
        page_size: u64::try_from(page_size).unwrap_or(0),
        bytes,
        restarts,
        source_wal,
        duration: started.elapsed(),
    })
}

fn copy_pages(
    source: &Connection,
    copy: &mut Connection,
    src: &Path,
    progress: &mut impl FnMut(u64, u64),
) -> Result<u32, SourceError> {
    let backup = Backup::new(source, copy).map_err(sql_err("backup init", src))?;
    let mut restarts = 0u32;
    let mut busy = 0u32;
    let mut last_remaining: Option<i32> = None;
    loop {
        let pages = if restarts >= MAX_RESTARTS {
            -1
        } else {
            PAGES_PER_STEP
        };
        let result = backup.step(pages).map_err(sql_err("backup step", src))?;
        let p = backup.progress();
        let total = u64::try_from(p.pagecount).unwrap_or(0);
        let remaining = u64::try_from(p.remaining).unwrap_or(0);
        progress(total.saturating_sub(remaining), total);
        match result {
            StepResult::Done => return Ok(restarts),
            StepResult::More => {
                if last_remaining.is_some_and(|prev| p.remaining >= prev) {
                    restarts += 1;
                    tracing::debug!(path = %src.display(), restarts, "sqlite backup restarted by a concurrent write");
                }
                last_remaining = Some(p.remaining);
                std::thread::sleep(STEP_PAUSE);
            }
            StepResult::Busy | StepResult::Locked => {
                busy += 1;
                if busy > MAX_BUSY {
                    return Err(SourceError::Sqlite {
                        op: "backup step",
                        path: src.to_path_buf(),
                        source: rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                            Some("source stayed busy".into()),
                        ),
                    });
                }
                std::thread::sleep(BUSY_PAUSE);
            }
            _ => std::thread::sleep(BUSY_PAUSE),
        }
    }
}

/// Run `PRAGMA integrity_check` and fail unless it reports exactly `ok`.
pub fn integrity_check(conn: &Connection, path: &Path) -> Result<(), SourceError> {
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(sql_err("integrity_check", path))?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(sql_err("integrity_check", path))?
        .collect::<Result<_, _>>()
        .map_err(sql_err("integrity_check", path))?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(SourceError::Integrity {
            path: path.to_path_buf(),
            message: rows.into_iter().take(10).collect::<Vec<_>>().join("; "),
        })
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
