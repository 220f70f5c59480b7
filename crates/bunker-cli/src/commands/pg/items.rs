//! Entry points for `bunker run` (policy items of kind `postgres` and
// These are called by `bunker run` for policy items; until it does, the
// binary itself has no caller.
#![allow(dead_code)]
//! `sqlite`), so the policy runner does not need to know the details.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use bunker_policy::{PostgresConfig, PostgresMode};
use bunker_repo::pg::backup_sqlite_file;
use bunker_repo::pg::base::BaseBackupRequest;
use bunker_repo::progress::Progress;
use bunker_repo::Repository;
use bunker_sources::postgres::PgConn;

/// What one item run stored: (snapshot id, file name) per snapshot.
pub type ItemSnapshots = Vec<(String, String)>;

/// Connection settings of a policy item. A `dsn` is passed as the database
/// name (libpq accepts a connection string there); `password_env` names
/// the variable whose value becomes `PGPASSWORD` for the child programs.
pub fn conn_from_policy(cfg: &PostgresConfig) -> PgConn {
    PgConn {
        host: cfg.host.clone(),
        port: cfg.port,
        user: cfg.user.clone(),
        dbname: cfg
            .dsn
            .as_ref()
            .map(|d| d.expose().to_string())
            .or_else(|| cfg.database.clone()),
        bin_dir: None,
        password: cfg
            .password_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok()),
    }
}

/// Run a `kind: postgres` item: a base backup (physical) or dumps of the
/// configured database (or all databases and the globals) (logical).
pub fn run_postgres_item(
    repo: &Arc<Repository>,
    cfg: &PostgresConfig,
    tags: &[String],
    host: Option<String>,
    progress: &dyn Progress,
) -> Result<ItemSnapshots> {
    let conn = conn_from_policy(cfg);
    match cfg.mode {
        PostgresMode::Physical => {
            let req = BaseBackupRequest {
                host,
                tags: tags.to_vec(),
                next_xid: None,
            };
            let r = super::physical::base_backup(repo, &conn, req, "bunker run", progress)?;
            Ok(vec![(r.snapshot_id.to_string(), "base.tar".to_string())])
        }
        PostgresMode::Logical => {
            let dbs = match &cfg.database {
                Some(d) => vec![d.clone()],
                None => super::logical::all_databases(&conn)?,
            };
            let mut out = Vec::new();
            for db in &dbs {
                let s =
                    super::logical::dump_database(repo, &conn, db, tags, host.clone(), progress)?;
                out.push((
                    s.snapshot_id.map(|i| i.to_string()).unwrap_or_default(),
                    format!("{db}.dump"),
                ));
            }
            if cfg.database.is_none() {
                let s = super::logical::dump_globals(repo, &conn, tags, host.clone(), progress)?;
                out.push((
                    s.snapshot_id.map(|i| i.to_string()).unwrap_or_default(),
                    "globals.sql".to_string(),
                ));
            }
            Ok(out)
        }
    }
}

/// Run a `kind: sqlite` item: an online-backup copy stored as `/<file name>`.
pub fn run_sqlite_item(
    repo: &Arc<Repository>,
    db: &Path,
    tags: &[String],
    host: Option<String>,
    progress: &dyn Progress,
) -> Result<ItemSnapshots> {
    let s = backup_sqlite_file(repo, db, tags.to_vec(), host, progress)?;
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(vec![(
        s.snapshot_id.map(|i| i.to_string()).unwrap_or_default(),
        name,
    )])
}
