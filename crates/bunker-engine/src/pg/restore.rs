//! Point-in-time restore of a base backup: choose the backup for the
//! recovery target, empty the target directory when asked, unpack, write the
//! recovery configuration, and optionally start the server and wait until
//! recovery is over.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bunker_repo::lock::RepoLock;
use bunker_repo::pg::base::{self, BaseBackup};
use bunker_repo::pg::restore::{self as pgrestore, RecoveryTarget};
use bunker_repo::snapshots::{self, SnapshotFilter};
use bunker_repo::Repository;
use bunker_sources::postgres::server;

use crate::error::{Context, EngineError, Result};
use crate::events::{Event, EventSink};

/// Start the restored server and wait for its promotion.
#[derive(Debug, Clone)]
pub struct StartServer {
    /// How long recovery may take.
    pub timeout: Duration,
    /// Directory of the server programs (default: searched, see
    /// [`server::find_server_bin`]).
    pub bin_dir: Option<PathBuf>,
}

/// What to restore, where, and how recovery is configured.
#[derive(Debug, Clone)]
pub struct PgRestoreRequest {
    /// Base-backup snapshot to restore (`None`: chosen for `target`).
    pub snapshot: Option<String>,
    /// A base backup the caller chose (drills, runbooks, `recover
    /// --time`): restored as it is, `snapshot` and `filter` unused. The
    /// caller holds a read lock on the repository and has loaded its
    /// index; [`restore()`] then takes no lock and loads nothing.
    pub backup: Option<BaseBackup>,
    /// Snapshot filter for `snapshot` (an item's host and tags); the
    /// base-backup tag is always required.
    pub filter: SnapshotFilter,
    /// The new data directory (made absolute).
    pub target_dir: PathBuf,
    /// Where recovery stops.
    pub target: RecoveryTarget,
    /// `recovery_target_action`: promote, pause or shutdown.
    pub target_action: String,
    /// Empty a non-empty target directory first.
    pub force: bool,
    /// `restore_command` written into the configuration.
    pub restore_command: String,
    /// `port` of the restored server.
    pub port: Option<u16>,
    /// Turn archiving off in the restored server.
    pub no_archive: bool,
    /// More settings, written after the recovery settings (a sandbox
    /// server's port, socket and private configuration).
    pub settings: Vec<(String, String)>,
    /// Start the server and wait until it is promoted.
    pub start: Option<StartServer>,
}

/// What [`restore()`] did.
#[derive(Debug, Clone)]
pub struct PgRestoreOutcome {
    /// The base backup restored.
    pub backup: BaseBackup,
    /// The data directory (absolute).
    pub target_dir: PathBuf,
    /// Tar entries unpacked.
    pub entries: u64,
    /// The server was started and is promoted.
    pub started: bool,
}

/// A step of [`restore()`], reported as [`Event::PgRestore`].
#[derive(Debug)]
pub enum PgRestoreStep<'a> {
    /// The chosen backup is being unpacked into `dir`.
    Unpacking {
        /// The backup.
        backup: &'a BaseBackup,
        /// The data directory.
        dir: &'a Path,
    },
    /// The backup is unpacked and recovery configured (the server is
    /// started next, when asked).
    Configured {
        /// The backup.
        backup: &'a BaseBackup,
        /// The data directory.
        dir: &'a Path,
        /// Tar entries unpacked.
        entries: u64,
    },
    /// A progress line while waiting for recovery.
    Recovery(&'a str),
}

impl PgRestoreRequest {
    /// A restore of `backup`, chosen by the caller (see
    /// [`PgRestoreRequest::backup`]), into the empty or missing
    /// `target_dir`: recovery to `target` with `restore_command`, then
    /// promotion, `settings` written after the recovery settings; the
    /// server is not started.
    pub fn for_backup(
        backup: BaseBackup,
        target_dir: PathBuf,
        target: RecoveryTarget,
        restore_command: String,
        settings: Vec<(String, String)>,
    ) -> PgRestoreRequest {
        PgRestoreRequest {
            snapshot: None,
            backup: Some(backup),
            filter: SnapshotFilter::default(),
            target_dir,
            target,
            target_action: "promote".into(),
            force: false,
            restore_command,
            port: None,
            no_archive: false,
            settings,
            start: None,
        }
    }

    fn dir(&self) -> PathBuf {
        std::path::absolute(&self.target_dir).unwrap_or_else(|_| self.target_dir.clone())
    }
}

/// The checks that need no repository: `start` only with promotion, an
/// explicit server directory holds the programs, and the target directory
/// is empty or `force` is given. [`restore()`] makes them too; front ends
/// call this first to fail before asking for a password.
pub fn preflight(req: &PgRestoreRequest) -> Result<()> {
    let dir = req.dir();
    if let Some(start) = &req.start {
        if req.target_action != "promote" {
            return Err(EngineError::Invalid(
                "--start waits for promotion: use it with --target-action promote".into(),
            ));
        }
        // An explicit directory is checked before anything is unpacked.
        if let Some(b) = &start.bin_dir {
            server::find_server_bin(&dir, Some(b), &server::SERVER_PROGRAMS)?;
        }
    }
    if !pgrestore::is_empty_dir(&dir)? && !req.force {
        return Err(EngineError::Invalid(format!(
            "{} is not empty: restore into an empty directory, or give --force to delete its contents",
            dir.display()
        )));
    }
    Ok(())
}

/// Restore a base backup of `repo` as `req` says (see the module
/// documentation). The repository is read under a read lock
/// ([`EngineError::Lock`] when it cannot be taken), released before the
/// server is started.
pub fn restore(
    repo: &Arc<Repository>,
    req: &PgRestoreRequest,
    sink: &dyn EventSink,
) -> Result<PgRestoreOutcome> {
    preflight(req)?;
    let dir = req.dir();
    let empty = pgrestore::is_empty_dir(&dir)?;
    let (lock, chosen) = match &req.backup {
        Some(b) => (None, b.clone()),
        None => {
            let lock = RepoLock::acquire_read(repo).map_err(EngineError::Lock)?;
            repo.load_index().context("loading the index")?;
            let backups = base::list_base_backups(repo)?;
            let chosen = choose(repo, req, &backups)?.clone();
            (Some(lock), chosen)
        }
    };
    if !empty {
        pgrestore::clear_dir(&dir)?;
    }
    sink.event(&Event::PgRestore(&PgRestoreStep::Unpacking {
        backup: &chosen,
        dir: &dir,
    }));
    let entries = pgrestore::unpack(repo, &chosen, &dir)?;
    let mut extra = Vec::new();
    if let Some(p) = req.port {
        extra.push(("port".to_string(), p.to_string()));
    }
    if req.no_archive {
        extra.push(("archive_mode".to_string(), "off".to_string()));
    }
    extra.extend(req.settings.iter().cloned());
    let settings = pgrestore::recovery_settings(
        &req.target,
        &req.restore_command,
        &req.target_action,
        &extra,
    );
    pgrestore::write_recovery_config(&dir, &settings)?;
    drop(lock);
    sink.event(&Event::PgRestore(&PgRestoreStep::Configured {
        backup: &chosen,
        dir: &dir,
        entries,
    }));
    if let Some(start) = &req.start {
        let bin =
            server::find_server_bin(&dir, start.bin_dir.as_deref(), &server::SERVER_PROGRAMS)?;
        let mut progress =
            |line: &str| sink.event(&Event::PgRestore(&PgRestoreStep::Recovery(line)));
        start_and_wait(&bin, &dir, start.timeout, &mut progress)
            .map_err(|e| EngineError::Lower(Box::new(e)))?;
    }
    Ok(PgRestoreOutcome {
        backup: chosen,
        target_dir: dir,
        entries,
        started: req.start.is_some(),
    })
}

/// The named snapshot (which must be a complete base backup), or the backup
/// that reaches the target among those of the newest backup's cluster.
fn choose<'a>(
    repo: &Repository,
    req: &PgRestoreRequest,
    backups: &'a [BaseBackup],
) -> Result<&'a BaseBackup> {
    match &req.snapshot {
        Some(spec) => {
            let mut filter = req.filter.clone();
            if filter.tags.is_empty() {
                filter.tags.push(Vec::new());
            }
            for group in &mut filter.tags {
                group.push(base::TAG_BASE.to_string());
            }
            let e = snapshots::find(repo, spec, &filter)?;
            let id = e.id;
            backups.iter().find(|b| b.entry.id == id).ok_or_else(|| {
                EngineError::Invalid(format!(
                    "snapshot {} is not a complete base backup",
                    id.short()
                ))
            })
        }
        None => {
            let mut same: Vec<BaseBackup> = backups
                .iter()
                .filter(|b| matches_filter(&req.filter, b))
                .cloned()
                .collect();
            keep_newest_cluster(&mut same);
            let c = pgrestore::choose(&same, &req.target)?;
            backups
                .iter()
                .find(|b| b.entry.id == c.entry.id)
                .ok_or_else(|| EngineError::Invalid("internal: chosen backup vanished".into()))
        }
    }
}

/// Keep only the base backups of the newest one's cluster (its system
/// identifier): WAL of another cluster cannot recover them. `backups` is
/// oldest first.
pub fn keep_newest_cluster(backups: &mut Vec<BaseBackup>) {
    let sys = backups.last().and_then(|b| b.info.system_id);
    backups.retain(|b| b.info.system_id == sys);
}

/// Whether a base backup matches the request's host and tag filter (an
/// empty filter matches every backup).
fn matches_filter(filter: &SnapshotFilter, b: &BaseBackup) -> bool {
    filter.matches(&b.entry.snapshot)
}

/// Start the restored cluster in `dir` with the programs of `bin` (as the
/// current user, logging to `dir/bunker-recovery.log`) and wait until it is
/// promoted, for at most `timeout`; `progress` gets the wait's lines (see
/// [`server::start_and_wait_promoted`]).
pub fn start_and_wait(
    bin: &Path,
    dir: &Path,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> std::result::Result<(), server::RecoveryWaitError> {
    let log = dir.join("bunker-recovery.log");
    server::start_and_wait_promoted(bin, dir, &log, timeout, progress)
}
