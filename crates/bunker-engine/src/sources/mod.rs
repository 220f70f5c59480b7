//! Backing up an item's source into one repository: files through the
//! archiver, databases and commands as streams (one snapshot per stream).

mod command;
pub mod mysql;
pub mod mysql_restore;
pub mod postgres;

use std::sync::Arc;

use bunker_policy::{Item, Source};
use bunker_repo::backup::BackupSummary;
use bunker_repo::progress::Progress;
use bunker_repo::Repository;
use bunker_sources::CancelToken;

use crate::error::{Context, Result};

pub use command::{run_command_item, run_sqlite_item};

/// One snapshot a stream item stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// Snapshot id (empty in a dry run).
    pub id: String,
    /// The one file the snapshot holds.
    pub file: String,
    /// Bytes this snapshot added to the repository (after deduplication
    /// and compression).
    pub data_added: u64,
}

impl StoredSnapshot {
    /// The snapshot a backup summary names, holding `file`.
    pub fn new(summary: &BackupSummary, file: impl Into<String>) -> Self {
        StoredSnapshot {
            id: summary
                .snapshot_id
                .map(|i| i.to_string())
                .unwrap_or_default(),
            file: file.into(),
            data_added: summary.data_added,
        }
    }
}

/// Back up a database or command item (not files) into `repo`; a command
/// runs in `dir` (the policy file's directory) when given.
pub fn run_stream_item(
    repo: &Arc<Repository>,
    item: &Item,
    progress: &dyn Progress,
    dir: Option<&std::path::Path>,
    cancel: &CancelToken,
) -> Result<Vec<StoredSnapshot>> {
    let tags = item.snapshot_tags();
    match &item.source {
        Source::Sqlite(s) => run_sqlite_item(repo, &s.path, &tags, None, progress),
        Source::Postgres(p) => postgres::run_postgres_item(repo, p, &tags, None, progress, cancel),
        Source::Command(c) => run_command_item(repo, &item.name, c, &tags, dir, progress, cancel),
        Source::Mysql(m) => mysql::run_mysql_item(repo, m, &tags, None, progress, cancel),
        Source::Files(_) => Err(crate::EngineError::Invalid(format!(
            "item {} backs up files, not a stream",
            item.name
        ))),
    }
}

/// What a dry run checks for a non-file item: the SQLite file can be opened,
/// the PostgreSQL server answers a query with the item's settings. A command
/// is not run in a dry run: it may have side effects.
pub fn preflight(item: &Item) -> Result<()> {
    match &item.source {
        Source::Sqlite(s) => {
            std::fs::File::open(&s.path)
                .with_context(|| format!("opening SQLite database {}", s.path.display()))?;
            Ok(())
        }
        Source::Postgres(p) => {
            let conn = postgres::conn_from_policy(p);
            conn.query(conn.dbname.as_deref(), "SELECT 1")
                .context("connecting to PostgreSQL")?;
            Ok(())
        }
        Source::Mysql(m) => {
            mysql::conn_from_policy(m)
                .query("SELECT 1")
                .map_err(|e| crate::EngineError::failed("connecting to MySQL/MariaDB", e))?;
            Ok(())
        }
        Source::Command(_) | Source::Files(_) => Ok(()),
    }
}
