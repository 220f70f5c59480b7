//! Entry points for `bunker run` (policy items of kind `postgres` and
//! `sqlite`), so the policy runner does not need to know the details.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bunker_policy::{Item, ItemKind, PostgresConfig, PostgresMode};
use bunker_repo::pg::backup_sqlite_file;
use bunker_repo::pg::base::{self, BaseBackupRequest};
use bunker_repo::pg::due::{self, ServerState, StartReason};
use bunker_repo::pg::retention::{self, PitrOptions, PitrReport};
use bunker_repo::progress::Progress;
use bunker_repo::snapshots::SnapshotFilter;
use bunker_repo::Repository;
use bunker_sources::postgres::PgConn;

/// One snapshot an item run stored.
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
    pub fn new(summary: &bunker_repo::backup::BackupSummary, file: impl Into<String>) -> Self {
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

/// What one item run stored.
pub type ItemSnapshots = Vec<StoredSnapshot>;

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
        timeout: cfg.timeout,
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
            Ok(vec![StoredSnapshot {
                id: r.snapshot_id.to_string(),
                file: "base.tar".to_string(),
                data_added: r.summary.data_added,
            }])
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
                out.push(StoredSnapshot::new(&s, format!("{db}.dump")));
            }
            if cfg.database.is_none() {
                let s = super::logical::dump_globals(repo, &conn, tags, host.clone(), progress)?;
                out.push(StoredSnapshot::new(&s, "globals.sql"));
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
    Ok(vec![StoredSnapshot::new(&s, name)])
}

/// The postgres settings of a `kind: postgres, mode: physical` item.
pub fn physical(item: &Item) -> Option<&PostgresConfig> {
    item.postgres
        .as_ref()
        .filter(|p| item.kind == ItemKind::Postgres && p.mode == PostgresMode::Physical)
}

/// PITR-aware retention options of a physical postgres item (its
/// `retention` rules on its snapshots, its `pitr` span).
pub fn pitr_options(item: &Item, cfg: &PostgresConfig, dry_run: bool) -> Result<PitrOptions> {
    let pitr = cfg
        .pitr
        .map(chrono::Duration::from_std)
        .transpose()
        .with_context(|| format!("pitr of item {:?} is too long", item.name))?;
    Ok(PitrOptions {
        policy: item
            .retention
            .as_ref()
            .map(|r| r.keep_policy())
            .unwrap_or_default(),
        filter: SnapshotFilter {
            tags: vec![vec![item.tag()]],
            ..Default::default()
        },
        pitr,
        dry_run,
        ..Default::default()
    })
}

/// Apply a physical item's retention: forget base backups, delete the WAL
/// no kept one needs. The caller holds an exclusive lock (none for a dry run).
pub fn apply_pg_retention(repo: &Repository, item: &Item, dry_run: bool) -> Result<PitrReport> {
    let Some(cfg) = physical(item) else {
        bail!("item {:?} is not a physical postgres item", item.name);
    };
    let opts = pitr_options(item, cfg, dry_run)?;
    retention::apply(repo, &opts).with_context(|| format!("retention of item {:?}", item.name))
}

/// Run `psql -AtX -c sql` with a connect timeout, so that status and due
/// checks never hang on an unreachable server.
pub fn query_quick(conn: &PgConn, sql: &str) -> Result<String> {
    let out = conn
        .command("psql")
        .env("PGCONNECT_TIMEOUT", "10")
        .args(["-AtX", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {}", conn.program("psql").display()))?;
    if !out.status.success() {
        bail!(
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The server's start time, timeline and system identifier.
pub fn server_state(cfg: &PostgresConfig) -> Result<ServerState> {
    let text = query_quick(&conn_from_policy(cfg), due::SERVER_STATE_SQL)?;
    due::parse_server_state(&text)
        .with_context(|| format!("unexpected answer from the server: {text:?}"))
}

/// Whether a full base backup of `item` is due in `repo` by the start-up
/// rule: the server restarted, or changed timeline or system, since the
/// item's newest base backup there.
pub fn start_reason(
    repo: &Repository,
    item: &Item,
    server: &ServerState,
) -> Result<Option<StartReason>> {
    let tag = item.tag();
    let backups = base::list_base_backups(repo)?;
    let newest = backups
        .iter()
        .filter(|b| b.entry.snapshot.tags.contains(&tag))
        .max_by_key(|b| b.entry.snapshot.time);
    Ok(due::start_reason(newest, server))
}
