//! The run history: every job's run at every repository, in a SQLite
//! database (`history.sqlite` in the state directory). The daemon writes
//! it; `bunker history` reads it, with or without the daemon running (WAL
//! mode: readers do not block the writer). Bounded: rows older than
//! `history_keep` and beyond `history_max_runs` are dropped after each
//! write.
//!
//! The history is a log, not the truth for due-ness: backups are due by
//! the repositories' snapshots. Maintenance jobs (check, prune, copy)
//! leave no snapshot, so their last success is read from here at start-up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::runner::{JobRun, RunResult};

/// The database's file name in the state directory.
pub const FILE_NAME: &str = "history.sqlite";

/// History errors.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The database could not be opened or used.
    #[error("run history {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// There is no history yet.
    #[error("no run history at {0} (has the daemon run with this --state-dir?)")]
    Missing(PathBuf),
}

/// The run history database.
pub struct History {
    conn: Connection,
    path: PathBuf,
}

/// Which rows to list.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only this item's backups.
    pub item: Option<String>,
    /// Only this job (`check:local`).
    pub job: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<usize>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    kind TEXT NOT NULL,
    item TEXT,
    target TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT NOT NULL,
    result TEXT NOT NULL,
    stats TEXT NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_item ON runs(item, finished);
CREATE INDEX IF NOT EXISTS runs_job ON runs(job, finished);
";

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl History {
    /// Open (creating) the history in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<History, HistoryError> {
        let path = state_dir.join(FILE_NAME);
        let err = |source| HistoryError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(History { conn, path })
    }

    /// Open an existing history read-only (`bunker history`).
    pub fn open_read_only(state_dir: &Path) -> Result<History, HistoryError> {
        let path = state_dir.join(FILE_NAME);
        if !path.exists() {
            return Err(HistoryError::Missing(path));
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
            |source| HistoryError::Sqlite {
                path: path.clone(),
                source,
            },
        )?;
        let _ = conn.busy_timeout(Duration::from_secs(10));
        Ok(History { conn, path })
    }

    fn err(&self, source: rusqlite::Error) -> HistoryError {
        HistoryError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Add `runs`, then drop rows older than `keep` and beyond `max_rows`.
    pub fn add(
        &mut self,
        runs: &[JobRun],
        keep: Duration,
        max_rows: usize,
    ) -> Result<(), HistoryError> {
        let tx = self.conn.transaction().map_err(|e| HistoryError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        for r in runs {
            tx.execute(
                "INSERT INTO runs (job, kind, item, target, trigger, started, finished, result, stats, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    r.job,
                    r.kind,
                    r.item,
                    r.target,
                    r.trigger,
                    time(&r.started),
                    time(&r.finished),
                    r.result.as_str(),
                    r.stats.to_string(),
                    r.error,
                ],
            )
            .map_err(|e| HistoryError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        }
        let cutoff = Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
        tx.execute(
            "DELETE FROM runs WHERE finished < ?1",
            params![time(&cutoff)],
        )
        .and_then(|_| {
            tx.execute(
                "DELETE FROM runs WHERE id NOT IN (SELECT id FROM runs ORDER BY id DESC LIMIT ?1)",
                params![i64::try_from(max_rows).unwrap_or(i64::MAX)],
            )
        })
        .and_then(|_| tx.commit())
        .map_err(|e| HistoryError::Sqlite {
            path: self.path.clone(),
            source: e,
        })
    }

    /// Rows matching `q`, newest first.
    pub fn list(&self, q: &Query) -> Result<Vec<JobRun>, HistoryError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT job, kind, item, target, trigger, started, finished, result, stats, error
                 FROM runs WHERE (?1 IS NULL OR item = ?1) AND (?2 IS NULL OR job = ?2)
                 ORDER BY id DESC LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let limit = i64::try_from(q.limit.unwrap_or(100)).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![q.item, q.job, limit], |row| {
                let parse_time = |s: String| {
                    DateTime::parse_from_rfc3339(&s)
                        .map(|t| t.with_timezone(&Utc))
                        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
                };
                let result: String = row.get(7)?;
                let stats: String = row.get(8)?;
                Ok(JobRun {
                    job: row.get(0)?,
                    kind: row.get(1)?,
                    item: row.get(2)?,
                    target: row.get(3)?,
                    trigger: row.get(4)?,
                    started: parse_time(row.get(5)?),
                    finished: parse_time(row.get(6)?),
                    result: RunResult::parse(&result).unwrap_or(RunResult::Failed),
                    stats: serde_json::from_str(&stats).unwrap_or(serde_json::json!({})),
                    error: row.get(9)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// When `job` last started a run that succeeded at `target` (any target
    /// when `None`).
    pub fn last_success(
        &self,
        job: &str,
        target: Option<&str>,
    ) -> Result<Option<DateTime<Utc>>, HistoryError> {
        let s: Option<String> = self
            .conn
            .query_row(
                "SELECT max(started) FROM runs WHERE job = ?1 AND (?2 IS NULL OR target = ?2)
                 AND result IN ('success', 'warning')",
                params![job, target],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .flatten();
        Ok(s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&Utc)))
    }

    /// When `job` last finished a run at `target` (any result).
    pub fn last_run(&self, job: &str, target: &str) -> Result<Option<DateTime<Utc>>, HistoryError> {
        let s: Option<String> = self
            .conn
            .query_row(
                "SELECT max(finished) FROM runs WHERE job = ?1 AND target = ?2",
                params![job, target],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .flatten();
        Ok(s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&Utc)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(job: &str, item: Option<&str>, started: DateTime<Utc>, result: RunResult) -> JobRun {
        JobRun {
            job: job.into(),
            kind: job.split(':').next().unwrap_or("").into(),
            item: item.map(Into::into),
            target: "local".into(),
            trigger: "schedule".into(),
            started,
            finished: started + chrono::Duration::seconds(3),
            result,
            stats: serde_json::json!({"files": 3}),
            error: (result == RunResult::Failed).then(|| "boom".into()),
        }
    }

    #[test]
    fn history_keeps_typed_rows_and_stays_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut h = History::open(dir.path()).expect("open");
        let now = Utc::now();
        let day = Duration::from_secs(86400);
        let old = run(
            "backup:a",
            Some("a"),
            now - chrono::Duration::days(10),
            RunResult::Success,
        );
        h.add(&[old], day * 30, 100).expect("add");
        h.add(
            &[
                run("backup:a", Some("a"), now, RunResult::Failed),
                run("check:local", None, now, RunResult::Success),
            ],
            day * 30,
            100,
        )
        .expect("add");
        let reader = History::open_read_only(dir.path()).expect("read-only beside the writer");
        let a = reader
            .list(&Query {
                item: Some("a".into()),
                ..Default::default()
            })
            .expect("list");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].result, RunResult::Failed);
        assert_eq!(a[0].error.as_deref(), Some("boom"));
        assert_eq!(a[0].stats["files"], 3);
        let last = h
            .last_success("check:local", None)
            .expect("query")
            .expect("some");
        assert!((last - now).num_milliseconds().abs() <= 1);
        assert_eq!(
            h.last_success("backup:a", None)
                .expect("q")
                .map(|t| t < now),
            Some(true)
        );
        // Older than the keep period: dropped; beyond max rows: dropped.
        h.add(&[], day * 5, 100).expect("trim");
        assert_eq!(h.list(&Query::default()).expect("list").len(), 2);
        h.add(&[], day * 5, 1).expect("trim");
        let left = h.list(&Query::default()).expect("list");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].job, "check:local", "the newest is kept");
    }

    #[test]
    fn reading_a_missing_history_says_where_it_looked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = History::open_read_only(dir.path()).err().expect("missing");
        assert!(e.to_string().contains("no run history at"), "{e}");
    }
}
