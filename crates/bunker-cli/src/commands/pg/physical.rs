//! `pg backup` (base backup through pg_basebackup) and `pg restore`
//! (point-in-time restore into a new data directory).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bunker_engine::events::{Event, EventSink};
use bunker_engine::pg::{self, PasswordArg, PgRestoreRequest, PgRestoreStep, StartServer};
use bunker_engine::sources::postgres::base_backup;
use bunker_repo::pg::base::BaseBackupRequest;
use bunker_repo::pg::restore::{self as pgrestore, RecoveryTarget};
use bunker_sources::postgres::{Lsn, PgConn};
use clap::{ArgGroup, Args};

use super::{flat_tags, ConnArgs};
use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::progress::Reporter;
use crate::{output, repo};

/// Take a base backup of a running cluster (pg_basebackup streamed into a snapshot)
#[derive(Args, Debug)]
#[command(
    long_about = "Stream `pg_basebackup -D - -Ft -X none` into a snapshot holding /base.tar, \
tagged with the backup's WAL start and stop positions, timeline and system identifier. WAL \
is not included: the archive (pg wal-push) provides it. Works against a primary or a standby \
(connect with a user that has the REPLICATION attribute).",
    after_long_help = super::help::BACKUP_EXAMPLES
)]
pub struct BackupArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Host name recorded in the snapshot
    #[arg(long)]
    pub host: Option<String>,
    /// Extra tags (comma-separated, repeatable)
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    pub tags: Vec<String>,
    /// Backup label shown in pg_stat_progress_basebackup
    #[arg(long, default_value = "bunker base backup")]
    pub label: String,
    /// Stop pg_basebackup (SIGTERM, SIGKILL 10 s later) if it runs longer than
    /// this (90m, 6h); the backup then fails and leaves no snapshot
    #[arg(long, value_name = "DURATION", value_parser = super::parse_timeout)]
    pub timeout: Option<std::time::Duration>,
}

pub fn backup(g: &GlobalOpts, args: BackupArgs) -> Result<Status> {
    let started = Instant::now();
    let r = repo::open(g)?;
    let reporter = Reporter::new(g, "files", "base backup");
    let req = BaseBackupRequest {
        host: args.host.clone(),
        tags: flat_tags(&args.tags),
        next_xid: None,
    };
    let conn = PgConn {
        timeout: args.timeout,
        ..args.conn.conn()
    };
    let res = base_backup(&r, &conn, req, &args.label, &reporter)?;
    reporter.finish();
    let s = &res.summary;
    if g.json {
        output::json_line(&serde_json::json!({
            "snapshot_id": res.snapshot_id.to_string(),
            "system_identifier": res.info.system_id.map(|s| s.to_string()),
            "timeline": res.info.timeline,
            "backup_from": res.info.backup_from,
            "start_lsn": res.info.start_lsn.to_string(),
            "stop_lsn": res.info.stop_lsn.to_string(),
            "start_wal": res.info.start_wal,
            "tar_bytes": res.tar_bytes,
            "data_added": s.data_added,
            "data_added_packed": s.data_added_packed,
            "seconds": started.elapsed().as_secs_f64(),
        }))?;
    } else if !g.quiet {
        let from = match res.info.backup_from.as_str() {
            "" => String::new(),
            f => format!(" (taken from the {f})"),
        };
        println!(
            "base backup {} of system {}{from} saved: timeline {}, WAL {} .. {} (start segment {})",
            res.snapshot_id.short(),
            res.info
                .system_id
                .map(|s| s.to_string())
                .unwrap_or_else(|| "?".into()),
            res.info.timeline,
            res.info.start_lsn,
            res.info.stop_lsn,
            res.info.start_wal
        );
        println!(
            "{} streamed, {} new ({} stored) in {}",
            output::bytes(res.tar_bytes),
            output::bytes(s.data_added),
            output::bytes(s.data_added_packed),
            output::duration(started.elapsed())
        );
    }
    if let Some(note) = bunker_engine::sources::postgres::standby_note(&res) {
        if !g.quiet {
            eprintln!("{note}");
        }
    }
    Ok(Status::Success)
}

/// Restore a base backup and configure point-in-time recovery
#[derive(Args, Debug)]
#[command(
    long_about = "Pick the newest base backup that can reach the recovery target (or the \
given SNAPSHOT), unpack it into --target-dir, write recovery.signal and append \
restore_command (calling this bunker) and the recovery_target_* settings to \
postgresql.auto.conf. With --start, start PostgreSQL (pg_ctl, as the current user) and wait \
until recovery reached the target and the server was promoted, printing progress, for at \
most --timeout.

With --start the server programs (pg_ctl, pg_controldata, postgres) are taken from --pg-bin, \
else from the directory of pg_ctl on PATH (symlinks resolved), `pg_config --bindir`, or \
/usr/lib/postgresql/VERSION/bin and /usr/pgsql-VERSION/bin for the cluster's version \
(PG_VERSION); a missing one is an error before the server is started.",
    after_long_help = super::help::RESTORE_EXAMPLES,
    group(ArgGroup::new("target").args(["target_time", "target_xid", "target_name", "target_lsn", "immediate"]))
)]
pub struct RestoreArgs {
    /// Base-backup snapshot to restore (default: chosen for the target)
    pub snapshot: Option<String>,
    /// New data directory (must be empty or missing unless --force)
    #[arg(long, value_name = "DIR")]
    pub target_dir: PathBuf,
    /// Recover up to this time (e.g. '2024-05-01 10:00:00+00')
    #[arg(long, value_name = "TIME")]
    pub target_time: Option<String>,
    /// Recover up to this transaction id
    #[arg(long, value_name = "XID")]
    pub target_xid: Option<u64>,
    /// Recover up to this named restore point (pg_create_restore_point)
    #[arg(long, value_name = "NAME")]
    pub target_name: Option<String>,
    /// Recover up to this WAL position (X/Y)
    #[arg(long, value_name = "LSN")]
    pub target_lsn: Option<String>,
    /// Stop as soon as the base backup is consistent
    #[arg(long)]
    pub immediate: bool,
    /// What the server does at the target: promote, pause or shutdown
    #[arg(long, default_value = "promote", value_parser = ["promote", "pause", "shutdown"])]
    pub target_action: String,
    /// Empty a non-empty target directory first (DELETES ITS CONTENTS)
    #[arg(long)]
    pub force: bool,
    /// Start PostgreSQL and wait until recovery reached the target
    #[arg(long)]
    pub start: bool,
    /// How long to wait for recovery with --start (1h, 90m; a plain number is seconds)
    #[arg(long, value_name = "DURATION", default_value = "1h",
          value_parser = super::parse_timeout_or_secs)]
    pub timeout: Duration,
    /// Port for the restored server (written to postgresql.auto.conf)
    #[arg(long)]
    pub port: Option<u16>,
    /// Turn archiving off in the restored server (archive_mode = off)
    #[arg(long)]
    pub no_archive: bool,
    /// restore_command to write instead of the one calling this bunker
    #[arg(long, value_name = "COMMAND")]
    pub restore_command: Option<String>,
    /// Directory of PostgreSQL's server programs (for --start; default: searched)
    #[arg(long = "pg-bin", value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    #[command(flatten)]
    pub item: crate::commands::config::ItemArgs,
}

fn recovery_target(args: &RestoreArgs) -> Result<RecoveryTarget> {
    Ok(if let Some(t) = &args.target_time {
        RecoveryTarget::Time {
            time: pgrestore::parse_target_time(t)?,
            text: t.clone(),
        }
    } else if let Some(x) = args.target_xid {
        RecoveryTarget::Xid(x)
    } else if let Some(n) = &args.target_name {
        RecoveryTarget::Name(n.clone())
    } else if let Some(l) = &args.target_lsn {
        RecoveryTarget::Lsn(l.parse::<Lsn>()?)
    } else if args.immediate {
        RecoveryTarget::Immediate
    } else {
        RecoveryTarget::Latest
    })
}

/// `<this bunker> -r <repo> --password-file F pg wal-fetch %f %p`
fn own_restore_command(g: &GlobalOpts) -> Result<String> {
    let exe = std::env::current_exe().context("finding the bunker executable")?;
    let password = if let Some(f) = &g.password_file {
        PasswordArg::File(f.clone())
    } else if let Some(c) = &g.password_command {
        PasswordArg::Command(c.clone())
    } else {
        bail!(
            "restore_command needs the repository password: give --password-file or \
             --password-command (an environment password is not written into the configuration), \
             or write your own with --restore-command"
        );
    };
    Ok(pg::wal_fetch_command(
        &exe,
        repo::location(g)?,
        &password,
        &[],
    ))
}

/// Renders the restore's steps (and registers the repository's locks).
struct RestoreSink<'g>(&'g GlobalOpts);

impl EventSink for RestoreSink<'_> {
    fn event(&self, event: &Event<'_>) {
        let g = self.0;
        let Event::PgRestore(step) = event else {
            return;
        };
        match step {
            PgRestoreStep::Unpacking { backup, dir } if !g.quiet && !g.json => eprintln!(
                "restoring base backup {} (ended {}, WAL {} .. {}) into {}",
                backup.entry.id.short(),
                output::local_time(&backup.end_time),
                backup.info.start_lsn,
                backup.info.stop_lsn,
                dir.display()
            ),
            PgRestoreStep::Configured {
                backup,
                dir,
                entries,
            } => {
                if g.json {
                    let _ = output::json_line(&serde_json::json!({
                        "snapshot_id": backup.entry.id.to_string(),
                        "target_dir": dir,
                        "entries": entries,
                    }));
                } else if !g.quiet {
                    println!(
                        "restored {entries} entries from {}; recovery configured in {}",
                        backup.entry.id.short(),
                        dir.join("postgresql.auto.conf").display()
                    );
                }
            }
            PgRestoreStep::Recovery(line) if !g.quiet => eprintln!("{line}"),
            _ => {}
        }
    }
}

pub fn restore(g: &GlobalOpts, args: RestoreArgs) -> Result<Status> {
    let mut req = PgRestoreRequest {
        snapshot: args.snapshot.clone(),
        backup: None,
        filter: Default::default(),
        target: recovery_target(&args)?,
        target_dir: args.target_dir.clone(),
        target_action: args.target_action.clone(),
        force: args.force,
        restore_command: String::new(),
        port: args.port,
        no_archive: args.no_archive,
        settings: Vec::new(),
        start: args.start.then(|| StartServer {
            timeout: args.timeout,
            bin_dir: args.bin_dir.clone(),
        }),
    };
    pg::preflight(&req)?;
    req.restore_command = match (&args.restore_command, &args.item.item) {
        (Some(c), _) => c.clone(),
        // The item's repository, as its archive_command writes to it.
        (None, Some(item)) => {
            let exe = std::env::current_exe().context("finding the bunker executable")?;
            bunker_engine::sources::postgres::archive_settings(
                &args.item.policy.load()?,
                item,
                &exe,
            )?
            .restore_command
        }
        (None, None) => own_restore_command(g)?,
    };
    let r = repo::open_for(g, &args.item, &mut req.filter)?;
    let out = pg::restore(&r, &req, &RestoreSink(g))?;
    if out.started && !g.quiet && !g.json {
        println!("recovery finished; the server is running and promoted");
    }
    Ok(Status::Success)
}
