//! MySQL / MariaDB items: physical backups (`mariadb-backup` streamed into
//! a snapshot tagged with its binlog position) and logical dumps
//! (`mariadb-dump` streamed into a snapshot), and the connection settings of
//! a policy item. Shared by `bunker run` and `bunker mysql`.

use std::sync::Arc;

use bunker_policy::{MysqlConfig, MysqlMode};
use bunker_repo::backup::BackupSummary;
use bunker_repo::mysql::physical::{save_physical_backup, PhysicalResult, BACKUP_FILE};
use bunker_repo::mysql::TAG_DUMP;
use bunker_repo::pg::save_stream;
use bunker_repo::progress::Progress;
use bunker_repo::Repository;
use bunker_sources::mysql::{backup_command, dump_command, BinlogPos, MyConn};
use bunker_sources::CancelToken;

use super::StoredSnapshot;
use crate::error::{EngineError, Result};

/// File name of a dump of all databases.
pub const ALL_DATABASES_FILE: &str = "all-databases.sql";

/// Connection settings of a policy item; `password_env` names the variable
/// whose value the client programs get as `MYSQL_PWD`.
pub fn conn_from_policy(cfg: &MysqlConfig) -> MyConn {
    MyConn {
        defaults_file: cfg.defaults_file.clone(),
        socket: cfg.socket.clone(),
        host: cfg.host.clone(),
        port: cfg.port,
        user: cfg.user.clone(),
        password: cfg
            .password_env
            .as_ref()
            .and_then(|v| std::env::var(v).ok()),
        timeout: cfg.timeout,
        cancel: None,
    }
}

/// Run a `kind: mysql` item: a physical backup, or one dump of the
/// configured databases (all when none are listed).
pub fn run_mysql_item(
    repo: &Arc<Repository>,
    cfg: &MysqlConfig,
    tags: &[String],
    host: Option<String>,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<Vec<StoredSnapshot>> {
    let conn = MyConn {
        cancel: Some(cancel.clone()),
        ..conn_from_policy(cfg)
    };
    match cfg.mode {
        MysqlMode::Physical => {
            let r = physical_backup(repo, &conn, tags, host, progress)?;
            Ok(vec![StoredSnapshot {
                id: r.snapshot_id.to_string(),
                file: BACKUP_FILE.to_string(),
                data_added: r.summary.data_added,
            }])
        }
        MysqlMode::Logical => {
            let (file, s) = dump(repo, &conn, &cfg.databases, tags, host, progress)?;
            Ok(vec![StoredSnapshot::new(&s, file)])
        }
    }
}

/// Stream `mariadb-dump` of `databases` (all when empty) into a snapshot
/// holding `/<database>.sql` (one database) or `/all-databases.sql`, tagged
/// `mysql-dump` and `mysql-db=<database>` per database (`mysql-db=*` for all).
/// Returns the file name and the summary.
pub fn dump(
    r: &Arc<Repository>,
    conn: &MyConn,
    databases: &[String],
    tags: &[String],
    host: Option<String>,
    progress: &dyn Progress,
) -> Result<(String, BackupSummary)> {
    for db in databases {
        if db.is_empty() || db.contains(['/', ',', '\0']) || db.starts_with('.') {
            return Err(EngineError::Invalid(format!(
                "database name {db:?} cannot be stored as a file name or tag"
            )));
        }
    }
    let file = match databases {
        [one] => format!("{one}.sql"),
        _ => ALL_DATABASES_FILE.to_string(),
    };
    let child = conn
        .spawn_stream(dump_command(conn, databases))
        .map_err(|e| EngineError::failed("starting mariadb-dump", e))?;
    let mut t = tags.to_vec();
    t.push(TAG_DUMP.to_string());
    if databases.is_empty() {
        t.push("mysql-db=*".to_string());
    }
    t.extend(databases.iter().map(|d| format!("mysql-db={d}")));
    let s = save_stream(r, Box::new(child), &file, t, host, progress)
        .map_err(|e| EngineError::failed(format!("dumping into {file}"), e))?;
    Ok((file, s))
}

/// Stream `mariadb-backup --backup --stream=xbstream` into a snapshot
/// tagged with the binlog position it is consistent at (from the program's
/// log, else from its `xtrabackup_info`). `mariadb-backup` reads the data
/// files directly: run it on the database host.
pub fn physical_backup(
    r: &Arc<Repository>,
    conn: &MyConn,
    tags: &[String],
    host: Option<String>,
    progress: &dyn Progress,
) -> Result<PhysicalResult> {
    // Bookkeeping files only (a few hundred bytes), never data.
    let work = tempfile::Builder::new()
        .prefix(".bunker-mariadb-backup-")
        .tempdir()
        .map_err(|e| EngineError::failed("creating a work directory", e))?;
    let child = conn
        .spawn_stream(backup_command(conn, work.path()))
        .map_err(|e| EngineError::failed("starting mariadb-backup", e))?;
    let log = child.stderr_buffer();
    let info = work.path().join("xtrabackup_info");
    let position = move || {
        BinlogPos::from_backup_text(&String::from_utf8_lossy(&log.lock())).or_else(|| {
            std::fs::read_to_string(&info)
                .ok()
                .and_then(|t| BinlogPos::from_backup_text(&t))
        })
    };
    save_physical_backup(r, Box::new(child), &position, tags, host, progress)
        .map_err(|e| EngineError::failed("physical backup (mariadb-backup) failed", e))
}
