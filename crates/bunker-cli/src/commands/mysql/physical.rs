//! `mysql backup` (mariadb-backup streamed into a snapshot) and `mysql
//! restore` (unpack, prepare, optionally replay binlogs to a target).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bunker_engine::sources::mysql::physical_backup;
use bunker_engine::sources::mysql_restore::{self, MysqlTarget};
use bunker_repo::mysql::physical::{list_physical_backups, TAG_PHYSICAL};
use bunker_repo::pg::restore::{is_empty_dir, parse_target_time};
use bunker_repo::snapshots::{self, SnapshotFilter};
use bunker_sources::mysql::BinlogPos;
use clap::{ArgGroup, Args};

use super::ConnArgs;
use crate::cli::GlobalOpts;
use crate::commands::pg::{flat_tags, parse_timeout, parse_timeout_or_secs};
use crate::exit::Status;
use crate::progress::Reporter;
use crate::{output, repo};

/// Hot physical backup (mariadb-backup --stream=xbstream into a snapshot)
#[derive(Args, Debug)]
#[command(
    long_about = "Stream `mariadb-backup --backup --stream=xbstream` into a deduplicated \
snapshot holding /backup.xbstream (no temporary copy), tagged mysql-physical and with the \
binlog position it is consistent at (mysql-binlog-file, mysql-binlog-pos, mysql-gtid). \
mariadb-backup reads the data files directly: run this on the database host, as a user that \
can read the data directory. The server needs log_bin for point-in-time restore.",
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
    /// Stop mariadb-backup if it runs longer than this (90m, 6h); no snapshot is left
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
}

pub fn backup(g: &GlobalOpts, args: BackupArgs) -> Result<Status> {
    let started = Instant::now();
    let r = repo::open(g)?;
    let reporter = Reporter::new(g, "files", "physical backup");
    let conn = args.conn.conn(args.timeout);
    let res = physical_backup(
        &r,
        &conn,
        &flat_tags(&args.tags),
        args.host.clone(),
        &reporter,
    )?;
    reporter.finish();
    let s = &res.summary;
    if g.json {
        output::json_line(&serde_json::json!({
            "snapshot_id": res.snapshot_id.to_string(),
            "binlog_file": res.pos.file,
            "binlog_pos": res.pos.pos,
            "gtid": res.pos.gtid,
            "bytes": s.total_bytes_processed,
            "data_added": s.data_added,
            "seconds": started.elapsed().as_secs_f64(),
        }))?;
    } else if !g.quiet {
        println!(
            "physical backup {} saved, consistent at binlog {}",
            res.snapshot_id.short(),
            res.pos
        );
        println!(
            "{} streamed, {} new ({} stored) in {}",
            output::bytes(s.total_bytes_processed),
            output::bytes(s.data_added),
            output::bytes(s.data_added_packed),
            output::duration(started.elapsed())
        );
    }
    Ok(Status::Success)
}

/// Restore a physical backup, optionally to a point in time
#[derive(Args, Debug)]
#[command(
    long_about = "Unpack a physical backup into --target-dir (mbstream -x, fed straight from \
the repository), make it consistent (mariadb-backup --prepare) and give it to --owner. \
Without a target the data directory is the backup as it was taken. With --target-time, \
--target-position or --target-gtid, the newest backup before the target is chosen (or the \
given SNAPSHOT), and the archived binlogs from its position are replayed up to the target \
(mariadb-binlog | mariadb) into a temporary mariadbd on a private socket in the restored \
directory, which is then shut down cleanly. A binlog missing from the archive between the \
backup and the target is an error. Start the server on the directory yourself afterwards.",
    after_long_help = super::help::RESTORE_EXAMPLES,
    group(ArgGroup::new("target").args(["target_time", "target_position", "target_gtid"]))
)]
pub struct RestoreArgs {
    /// Physical-backup snapshot (default: chosen for the target)
    pub snapshot: Option<String>,
    /// New data directory (must be empty or missing)
    #[arg(long, value_name = "DIR")]
    pub target_dir: PathBuf,
    /// Replay binlogs up to this time (e.g. '2024-05-01 10:00:00+00'; no zone = local time)
    #[arg(long, value_name = "TIME")]
    pub target_time: Option<String>,
    /// Replay binlogs up to this position (FILE:OFFSET, e.g. binlog.000042:1234)
    #[arg(long, value_name = "FILE:OFFSET")]
    pub target_position: Option<String>,
    /// Replay binlogs up to and including this GTID (list)
    #[arg(long, value_name = "GTID")]
    pub target_gtid: Option<String>,
    /// Give the restored files to this owner (USER[:GROUP], e.g. mysql:mysql)
    #[arg(long, value_name = "USER[:GROUP]")]
    pub owner: Option<String>,
    /// Time limit for the whole restore (1h, 90m; a plain number is seconds)
    #[arg(long, value_name = "DURATION", default_value = "6h", value_parser = parse_timeout_or_secs)]
    pub timeout: Duration,
}

fn target(args: &RestoreArgs) -> Result<MysqlTarget> {
    Ok(if let Some(t) = &args.target_time {
        MysqlTarget::Time(parse_target_time(t)?)
    } else if let Some(p) = &args.target_position {
        let (file, pos) = BinlogPos::parse_file_pos(p)?;
        MysqlTarget::Position { file, pos }
    } else if let Some(gtid) = &args.target_gtid {
        MysqlTarget::Gtid(gtid.clone())
    } else {
        MysqlTarget::Backup
    })
}

pub fn restore(g: &GlobalOpts, args: RestoreArgs) -> Result<Status> {
    let target = target(&args)?;
    let dir = std::path::absolute(&args.target_dir).unwrap_or_else(|_| args.target_dir.clone());
    if !is_empty_dir(&dir)? {
        bail!(
            "{} is not empty: restore into an empty or missing directory",
            dir.display()
        );
    }
    let r = repo::open(g)?;
    let _lock = repo::lock_read(&r)?;
    r.load_index().context("loading the index")?;
    let backups = list_physical_backups(&r)?;
    let chosen = match &args.snapshot {
        Some(spec) => {
            let filter = SnapshotFilter {
                tags: vec![vec![TAG_PHYSICAL.to_string()]],
                ..Default::default()
            };
            let e = snapshots::find(&r, spec, &filter)?;
            backups
                .iter()
                .find(|b| b.entry.id == e.id)
                .with_context(|| {
                    format!(
                        "snapshot {} is not a complete physical backup",
                        e.id.short()
                    )
                })?
        }
        None => mysql_restore::choose(&backups, &target)?,
    };
    if !g.quiet && !g.json {
        eprintln!(
            "restoring physical backup {} (ended {}, binlog {}) into {}",
            chosen.entry.id.short(),
            output::local_time(&chosen.end_time),
            chosen.pos,
            dir.display()
        );
    }
    let bytes =
        mysql_restore::restore_physical(&r, chosen, &dir, args.owner.as_deref(), args.timeout)?;
    let replayed = if target == MysqlTarget::Backup {
        Vec::new()
    } else {
        mysql_restore::replay_binlogs(&r, chosen, &dir, &target, args.timeout)?
    };
    if g.json {
        output::json_line(&serde_json::json!({
            "snapshot_id": chosen.entry.id.to_string(),
            "target_dir": dir,
            "bytes": bytes,
            "backup_position": chosen.pos.to_string(),
            "binlogs_replayed": replayed,
        }))?;
    } else if !g.quiet {
        println!(
            "restored {} ({}) into {}",
            chosen.entry.id.short(),
            output::bytes(bytes),
            dir.display()
        );
        match replayed.as_slice() {
            [] => println!(
                "the data directory is at the backup's position {}",
                chosen.pos
            ),
            [.., last] => println!(
                "replayed {} binlog file(s) from {} through {last} up to the target",
                replayed.len(),
                chosen.pos
            ),
        }
    }
    Ok(Status::Success)
}
