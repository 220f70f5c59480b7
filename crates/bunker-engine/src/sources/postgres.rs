//! PostgreSQL items: base backups (physical) and dumps (logical), the
//! server questions the planner and `status` ask, and the connection
//! settings of a policy item.

use std::sync::Arc;

use bunker_policy::{Item, PostgresConfig, PostgresMode};
use bunker_repo::backup::BackupSummary;
use bunker_repo::pg::base::{self, BaseBackupRequest, BaseBackupResult};
use bunker_repo::pg::due::{self, ServerState, StartReason};
use bunker_repo::pg::save_stream;
use bunker_repo::progress::Progress;
use bunker_repo::Repository;
use bunker_sources::postgres::process::{basebackup_command, dump_command, globals_command};
use bunker_sources::postgres::PgConn;
use bunker_sources::CancelToken;

use super::StoredSnapshot;
use crate::error::{Context, EngineError, Result};

/// Tag of `pg_dump` snapshots (with `pg-db=<database>`).
pub const TAG_DUMP: &str = "pg-dump";
/// Tag of `pg_dumpall --globals-only` snapshots.
pub const TAG_GLOBALS: &str = "pg-globals";

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
        cancel: None,
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
    cancel: &CancelToken,
) -> Result<Vec<StoredSnapshot>> {
    let conn = PgConn {
        cancel: Some(cancel.clone()),
        ..conn_from_policy(cfg)
    };
    match cfg.mode {
        PostgresMode::Physical => {
            let req = BaseBackupRequest {
                host,
                tags: tags.to_vec(),
                next_xid: None,
            };
            let r = base_backup(repo, &conn, req, "bunker run", progress)?;
            Ok(vec![StoredSnapshot {
                id: r.snapshot_id.to_string(),
                file: "base.tar".to_string(),
                data_added: r.summary.data_added,
            }])
        }
        PostgresMode::Logical => {
            let dbs = match &cfg.database {
                Some(d) => vec![d.clone()],
                None => all_databases(&conn)?,
            };
            let mut out = Vec::new();
            for db in &dbs {
                cancel.check().map_err(|_| EngineError::Cancelled)?;
                let s = dump_database(repo, &conn, db, tags, host.clone(), progress)?;
                out.push(StoredSnapshot::new(&s, format!("{db}.dump")));
            }
            if cfg.database.is_none() {
                let s = dump_globals(repo, &conn, tags, host.clone(), progress)?;
                out.push(StoredSnapshot::new(&s, "globals.sql"));
            }
            Ok(out)
        }
    }
}

/// Back up a cluster as a base backup (`pg_basebackup` streamed into a
/// snapshot); `label` is shown in `pg_stat_progress_basebackup`.
///
/// `pg_basebackup` waits, without a limit and without a word, until the
/// server archived the backup's last WAL segment. So a failing
/// `archive_command` is looked for first (the backup is not started), and
/// while the backup runs `pg_stat_archiver` is asked every
/// [`ARCHIVER_POLL`]: once archiving has been failing for
/// [`ARCHIVER_GRACE`], `pg_basebackup` is stopped and the backup fails with
/// [`ArchiverState::failing_reason`]. Cancelling the job's token (the
/// conn's) stops `pg_basebackup` and its process group at once.
pub fn base_backup(
    r: &Arc<Repository>,
    conn: &PgConn,
    req: BaseBackupRequest,
    label: &str,
    progress: &dyn Progress,
) -> Result<BaseBackupResult> {
    let mut req = req;
    if let Ok(state) = archiver_state(conn) {
        if let Some(reason) = state.failing_reason() {
            return Err(EngineError::Invalid(reason));
        }
    }
    if req.next_xid.is_none() {
        req.next_xid = match conn.query(None, "SELECT pg_snapshot_xmax(pg_current_snapshot())") {
            Ok(s) => s.trim().parse().ok(),
            Err(e) => {
                tracing::warn!("cannot read the next transaction id ({e}); --target-xid restores will need an explicit snapshot");
                None
            }
        };
    }
    // The backup's own token: cancelled by the job's, or by the watcher
    // when archiving fails. The watcher is not joined: a psql stuck on a
    // hung server must not hold the backup's end.
    let job = conn.cancel.clone().unwrap_or_default();
    let watch = Arc::new(ArchiverWatch::default());
    let mut bconn = conn.clone();
    bconn.cancel = Some(watch.backup.clone());
    {
        let (watch, job, conn) = (watch.clone(), job.clone(), conn.clone());
        std::thread::Builder::new()
            .name("bunker-archiver-watch".into())
            .spawn(move || watch_archiver(&conn, &job, &watch))
            .map_err(|e| EngineError::failed("starting the archiver watch", e))?;
    }
    let res = (|| {
        let child = bconn.spawn_stream(basebackup_command(&bconn, label))?;
        let log = child.stderr_buffer();
        base::save_base_backup(r, Box::new(child), Some(log), &req, progress)
            .context("base backup failed")
    })();
    watch.done.store(true, std::sync::atomic::Ordering::SeqCst);
    let failure = watch.failure.lock().ok().and_then(|mut f| f.take());
    match (res, failure) {
        (Err(_), Some(reason)) if !job.is_cancelled() => Err(EngineError::Invalid(reason)),
        (res, _) => res,
    }
}

/// Shared between [`base_backup`] and its archiver watch.
#[derive(Default)]
struct ArchiverWatch {
    /// The token `pg_basebackup` runs under.
    backup: CancelToken,
    /// The backup ended: the watch stops.
    done: std::sync::atomic::AtomicBool,
    /// Why the watch stopped the backup.
    failure: std::sync::Mutex<Option<String>>,
}

/// How often [`base_backup`] asks the server whether archiving fails.
pub const ARCHIVER_POLL: std::time::Duration = std::time::Duration::from_secs(2);
/// How long archiving must keep failing before [`base_backup`] gives up
/// (the archiver retries a failed segment three times, a second apart, then
/// every minute: a transient failure is over within this).
pub const ARCHIVER_GRACE: std::time::Duration = std::time::Duration::from_secs(6);

/// Until the backup is done: pass the job's cancellation on to the
/// backup's token, and cancel it (with the reason) once archiving has
/// failed for [`ARCHIVER_GRACE`].
fn watch_archiver(conn: &PgConn, job: &CancelToken, watch: &ArchiverWatch) {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    let mut next_poll = Instant::now() + ARCHIVER_POLL;
    let mut failing_since: Option<Instant> = None;
    let mut waiting = ArchiveWait::new(archive_wait_limit());
    let quick = PgConn {
        cancel: None,
        ..conn.clone()
    };
    while !watch.done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        if job.is_cancelled() {
            watch.backup.cancel();
            return;
        }
        if Instant::now() < next_poll {
            continue;
        }
        let reason = archiver_state(&quick).ok().and_then(|s| s.failing_reason());
        let stuck = match reason {
            Some(_) => None,
            None => waiting.check(&quick),
        };
        next_poll = Instant::now() + ARCHIVER_POLL;
        if let Some(reason) = stuck {
            if let Ok(mut f) = watch.failure.lock() {
                *f = Some(reason);
            }
            watch.backup.cancel();
            return;
        }
        match reason {
            None => failing_since = None,
            Some(reason) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= ARCHIVER_GRACE && !watch.done.load(Ordering::SeqCst) {
                    if let Ok(mut f) = watch.failure.lock() {
                        *f = Some(reason);
                    }
                    watch.backup.cancel();
                    return;
                }
            }
        }
    }
}

/// How long a base backup may wait for the server to archive its WAL (the
/// archiver neither failing nor succeeding: an `archive_command` that
/// hangs) before it fails: 15 minutes, or `BUNKER_ARCHIVE_WAIT_LIMIT` (a
/// duration such as `90s` or `1h`).
pub fn archive_wait_limit() -> std::time::Duration {
    std::env::var("BUNKER_ARCHIVE_WAIT_LIMIT")
        .ok()
        .and_then(|v| humantime::parse_duration(v.trim()).ok())
        .unwrap_or(std::time::Duration::from_secs(15 * 60))
}

/// The "waiting for WAL archiving" phase of a base backup: reported while
/// it lasts, a failure past its limit.
struct ArchiveWait {
    limit: std::time::Duration,
    since: Option<std::time::Instant>,
    told: Option<std::time::Instant>,
}

impl ArchiveWait {
    fn new(limit: std::time::Duration) -> Self {
        ArchiveWait {
            limit,
            since: None,
            told: None,
        }
    }

    /// Ask the server whether the backup waits for archiving; the reason to
    /// stop it once it waited longer than the limit.
    fn check(&mut self, conn: &PgConn) -> Option<String> {
        const SQL: &str = "SELECT count(*) FROM pg_stat_progress_basebackup \
                           WHERE lower(phase) LIKE 'waiting for wal archiving%'";
        let waiting = query_quick(conn, SQL).is_ok_and(|n| n.trim() != "0");
        if !waiting {
            self.since = None;
            return None;
        }
        let now = std::time::Instant::now();
        let since = *self.since.get_or_insert(now);
        let waited = std::time::Duration::from_secs(now.duration_since(since).as_secs());
        if waited >= self.limit {
            return Some(format!(
                "pg_basebackup waited {} for the server to archive the backup's WAL, and \
                 archiving neither failed nor succeeded: archive_command seems to hang; check it \
                 and the server log (BUNKER_ARCHIVE_WAIT_LIMIT sets this limit)",
                humantime::format_duration(waited)
            ));
        }
        // A normal backup passes through this phase in moments: say
        // something only once it lasts, then every minute.
        let tell = waited.as_secs() >= 10
            && self
                .told
                .is_none_or(|t| now.duration_since(t).as_secs() >= 60);
        if tell {
            self.told = Some(now);
            tracing::warn!(
                "the base backup is waiting for the server to archive its WAL ({} so far, \
                 giving up after {}); archive_command must succeed",
                humantime::format_duration(waited),
                humantime::format_duration(self.limit)
            );
        }
        None
    }
}

/// What `pg_stat_archiver` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiverState {
    /// The file archived last (empty: none yet).
    pub last_archived_wal: String,
    /// Seconds since then.
    pub archived_age: Option<i64>,
    /// The file whose archiving failed last (empty: none).
    pub last_failed_wal: String,
    /// Seconds since then.
    pub failed_age: Option<i64>,
}

/// The query behind [`archiver_state`].
pub const ARCHIVER_SQL: &str = "SELECT coalesce(last_archived_wal, ''), \
     coalesce(extract(epoch from now() - last_archived_time)::bigint, -1), \
     coalesce(last_failed_wal, ''), \
     coalesce(extract(epoch from now() - last_failed_time)::bigint, -1) \
     FROM pg_stat_archiver";

impl ArchiverState {
    /// Parse [`ARCHIVER_SQL`]'s answer.
    pub fn parse(line: &str) -> Option<ArchiverState> {
        let f: Vec<&str> = line.trim().split('|').collect();
        let [wal, age, failed, failed_age] = f.as_slice() else {
            return None;
        };
        let secs = |s: &str| s.parse::<i64>().ok().filter(|a| *a >= 0);
        Some(ArchiverState {
            last_archived_wal: wal.to_string(),
            archived_age: secs(age),
            last_failed_wal: failed.to_string(),
            failed_age: secs(failed_age),
        })
    }

    /// Whether archiving is failing now: the last failure is newer than the
    /// last success (or nothing was ever archived).
    pub fn failing(&self) -> bool {
        !self.last_failed_wal.is_empty()
            && self
                .failed_age
                .is_some_and(|f| self.archived_age.is_none_or(|a| f < a))
    }

    /// When [`ArchiverState::failing`]: what fails and what to do, one line.
    pub fn failing_reason(&self) -> Option<String> {
        if !self.failing() {
            return None;
        }
        let ago = humantime::format_duration(std::time::Duration::from_secs(
            self.failed_age.unwrap_or(0).unsigned_abs(),
        ));
        Some(format!(
            "archive_command is failing: the server could not archive {} ({ago} ago) and has \
             archived nothing since, so pg_basebackup would wait for it forever; fix \
             archive_command (see the server log; `bunker pg archive-command --item NAME` prints \
             it) and run again",
            self.last_failed_wal
        ))
    }
}

/// Ask the server's archiver (see [`ArchiverState`]), with a connect timeout.
pub fn archiver_state(conn: &PgConn) -> Result<ArchiverState, QueryError> {
    let line = query_quick(conn, ARCHIVER_SQL)?;
    ArchiverState::parse(&line).ok_or(QueryError::Unexpected(line))
}

/// Connect timeout (seconds) of [`query_quick`]: 10, or the connection's
/// time limit when shorter (at least 2, libpq's minimum).
fn connect_timeout(conn: &PgConn) -> String {
    conn.timeout
        .map_or(10, |t| t.as_secs().clamp(2, 10))
        .to_string()
}

/// What to tell after a backup from a standby: a standby archives nothing
/// itself (with `archive_mode = on`), so the backup can be restored only once
/// the primary has archived the WAL up to the backup's stop position.
pub fn standby_note(res: &BaseBackupResult) -> Option<String> {
    (res.info.backup_from == "standby").then(|| {
        format!(
            "note: backup taken from a standby; it becomes restorable once the primary has \
             archived the WAL up to {} (archive_timeout bounds the wait; `bunker pg wal-verify` checks)",
            res.info.stop_lsn
        )
    })
}

/// Dump one database (`pg_dump -Fc`) into a snapshot holding `/<db>.dump`.
pub fn dump_database(
    r: &Arc<Repository>,
    conn: &PgConn,
    db: &str,
    tags: &[String],
    host: Option<String>,
    progress: &dyn Progress,
) -> Result<BackupSummary> {
    if db.is_empty() || db.contains('/') || db.starts_with('.') {
        return Err(EngineError::Invalid(format!(
            "database name {db:?} cannot be stored as a file name"
        )));
    }
    let child = conn.spawn_stream(dump_command(conn, db))?;
    let mut t = tags.to_vec();
    t.push(TAG_DUMP.to_string());
    t.push(format!("pg-db={db}"));
    save_stream(r, Box::new(child), &format!("{db}.dump"), t, host, progress)
        .with_context(|| format!("dumping database {db}"))
}

/// Dump roles and tablespaces into a snapshot holding `/globals.sql`.
pub fn dump_globals(
    r: &Arc<Repository>,
    conn: &PgConn,
    tags: &[String],
    host: Option<String>,
    progress: &dyn Progress,
) -> Result<BackupSummary> {
    let child = conn.spawn_stream(globals_command(conn))?;
    let mut t = tags.to_vec();
    t.push(TAG_GLOBALS.to_string());
    save_stream(r, Box::new(child), "globals.sql", t, host, progress).context("dumping globals")
}

/// Every database that accepts connections, except templates.
pub fn all_databases(conn: &PgConn) -> Result<Vec<String>> {
    let out = conn.query(
        Some("postgres"),
        "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
    )?;
    Ok(out
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect())
}

/// Why `psql` gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// It could not be started.
    #[error("running {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It failed.
    #[error("psql failed: {0}")]
    Failed(String),
    /// It answered something else than expected.
    #[error("unexpected answer from the server: {0:?}")]
    Unexpected(String),
}

/// Run `psql -AtX -c sql` with a connect timeout, so that status and due
/// checks never hang on an unreachable server.
pub fn query_quick(conn: &PgConn, sql: &str) -> Result<String, QueryError> {
    let out = conn
        .command("psql")
        .env("PGCONNECT_TIMEOUT", connect_timeout(conn))
        .args(["-AtX", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| QueryError::Spawn {
            program: conn.program("psql").display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(QueryError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The server's start time, timeline and system identifier.
pub fn server_state(cfg: &PostgresConfig) -> Result<ServerState, QueryError> {
    let text = query_quick(&conn_from_policy(cfg), due::SERVER_STATE_SQL)?;
    due::parse_server_state(&text).ok_or(QueryError::Unexpected(text))
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

/// The `archive_command` and `restore_command` of a postgres physical item:
/// this bunker executable called with the first target's location, password
/// file or command and options (see [`archive_settings`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
// Fields in alphabetical order: the JSON keys keep the order earlier
// versions printed.
pub struct ArchiveSettings {
    /// `… pg wal-push %p`.
    pub archive_command: String,
    /// `archive_timeout`: a segment is archived at least this often (in
    /// seconds) on an idle server; half the item's rpo, at most 60.
    pub archive_timeout: u64,
    /// The item.
    pub item: String,
    /// The repository that receives the WAL (the item's first target).
    pub repository: String,
    /// `… pg wal-fetch %f %p`.
    pub restore_command: String,
    /// The item has more targets; they get base backups only.
    #[serde(skip)]
    pub more_targets: bool,
}

/// The archiving settings of `item` (kind postgres, mode physical) calling
/// the bunker executable `exe`. A password that the server cannot read (from
/// an environment variable, or inline) and secret options are refused: they
/// would have to be written into `postgresql.conf`.
pub fn archive_settings(
    policy: &bunker_policy::Policy,
    item: &str,
    exe: &std::path::Path,
) -> Result<ArchiveSettings> {
    let invalid = |m: String| EngineError::Invalid(m);
    let item = policy
        .item(item)
        .ok_or_else(|| invalid(format!("no item {item:?} in the policy")))?;
    if item.physical().is_none() {
        return Err(invalid(format!(
            "item {:?} is not a postgres physical item (kind: postgres, postgres.mode: physical)",
            item.name
        )));
    }
    let target = item
        .targets
        .first()
        .ok_or_else(|| invalid(format!("item {:?} has no target", item.name)))?;
    let cfg = policy
        .repositories
        .get(target)
        .ok_or_else(|| invalid(format!("unknown repository {target:?}")))?;
    use crate::pg::command;
    let a = command::repository_args(cfg, command::Runner::Server)?;
    Ok(ArchiveSettings {
        archive_command: command::wal_push_command(exe, &a.location, &a.password, &a.options),
        archive_timeout: item.rpo.map_or(60, |r| (r.as_secs() / 2).clamp(1, 60)),
        item: item.name.clone(),
        repository: cfg.name.clone(),
        restore_command: command::wal_fetch_command(exe, &a.location, &a.password, &a.options),
        more_targets: item.targets.len() > 1,
    })
}
