//! Restoring a MySQL / MariaDB physical backup, and point-in-time recovery:
//! the xbstream is fed straight from the repository into `mbstream -x` in
//! the target directory, `mariadb-backup --prepare` makes it consistent, the
//! owner is set, and for a target the archived binlogs from the backup's
//! position are replayed (`mariadb-binlog … | mariadb`) into a throw-away
//! server on a private socket, stopping at the target.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bunker_repo::mysql::physical::{PhysicalBackup, BACKUP_FILE};
use bunker_repo::mysql::{binlog_archive, verify};
use bunker_repo::pg::{open_stream, stream_content};
use bunker_repo::Repository;
use bunker_sources::mysql::server::TempServer;
use bunker_sources::mysql::BinlogName;
use chrono::{DateTime, FixedOffset, Utc};

use crate::error::{EngineError, Result};

/// Where a point-in-time recovery stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MysqlTarget {
    /// The backup's own position: no replay.
    Backup,
    /// The last event before this time.
    Time(DateTime<FixedOffset>),
    /// Up to (excluding) this offset of this binlog file.
    Position {
        /// Binlog file name.
        file: String,
        /// Offset in it.
        pos: u64,
    },
    /// Up to and including this GTID (list).
    Gtid(String),
}

/// Choose the backup to restore for `target`: the newest one that ended
/// before the target time, or (position) whose position is at or before
/// the target, or the newest.
pub fn choose<'a>(
    backups: &'a [PhysicalBackup],
    target: &MysqlTarget,
) -> Result<&'a PhysicalBackup> {
    let key = |f: &str, p: u64| BinlogName::parse(f).ok().map(|n| (n.base, n.seq, p));
    let fit = backups.iter().rev().find(|b| match target {
        MysqlTarget::Time(t) => b.end_time <= *t,
        MysqlTarget::Position { file, pos } => {
            match (key(&b.pos.file, b.pos.pos), key(file, *pos)) {
                (Some(a), Some(t)) => a.0 == t.0 && (a.1, a.2) <= (t.1, t.2),
                _ => false,
            }
        }
        MysqlTarget::Backup | MysqlTarget::Gtid(_) => true,
    });
    fit.ok_or_else(|| {
        EngineError::Invalid(format!(
            "no physical backup ends before the target ({} physical backups in the repository)",
            backups.len()
        ))
    })
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| EngineError::failed(format!("cannot run {what}"), e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        return Err(EngineError::Invalid(format!(
            "{what} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    Ok(())
}

/// Wait for `child` for at most until `deadline`; killed past it.
fn wait_until(child: &mut std::process::Child, deadline: Instant, what: &str) -> Result<()> {
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Ok(()),
            Ok(Some(s)) => return Err(EngineError::Invalid(format!("{what} failed ({s})"))),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(EngineError::Invalid(format!(
                    "{what} did not finish within the time limit and was stopped"
                )));
            }
            Err(e) => return Err(EngineError::failed(format!("waiting for {what}"), e)),
        }
    }
}

/// Unpack `backup` into the empty directory `dir` and prepare it;
/// `owner` (`user[:group]`) is given the files. Returns the streamed bytes.
pub fn restore_physical(
    repo: &Repository,
    backup: &PhysicalBackup,
    dir: &Path,
    owner: Option<&str>,
    limit: Duration,
) -> Result<u64> {
    let deadline = Instant::now() + limit;
    std::fs::create_dir_all(dir)
        .map_err(|e| EngineError::failed(format!("creating {}", dir.display()), e))?;
    let (_, content) = stream_content(repo, &backup.entry, Some(BACKUP_FILE))?;
    let mut child = Command::new("mbstream")
        .arg("-x")
        .arg("-C")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| EngineError::failed("cannot run mbstream (package mariadb-backup)", e))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let copied = std::io::copy(&mut open_stream(repo, &content), &mut stdin);
    drop(stdin);
    wait_until(&mut child, deadline, "mbstream -x")?;
    let bytes = copied.map_err(|e| EngineError::failed("feeding the backup to mbstream", e))?;
    run(
        Command::new("mariadb-backup")
            .arg("--prepare")
            .arg(format!("--target-dir={}", dir.display())),
        "mariadb-backup --prepare",
    )?;
    if let Some(o) = owner {
        run(Command::new("chown").arg("-R").arg(o).arg(dir), "chown")?;
    }
    Ok(bytes)
}

/// Replay the archived binlogs from `backup`'s position up to `target`
/// into the prepared data directory `dir`. Returns the files replayed.
pub fn replay_binlogs(
    repo: &Repository,
    backup: &PhysicalBackup,
    dir: &Path,
    target: &MysqlTarget,
    limit: Duration,
) -> Result<Vec<String>> {
    let deadline = Instant::now() + limit;
    let archived = binlog_archive::list(repo)?;
    let mut files =
        verify::replay_files(&archived, &backup.pos.file).map_err(EngineError::Invalid)?;
    if let MysqlTarget::Position { file, .. } = target {
        let Some(i) = files.iter().position(|f| f == file) else {
            return Err(EngineError::Invalid(format!(
                "binlog {file} is not archived after the backup's position {}",
                backup.pos
            )));
        };
        files.truncate(i + 1);
    }
    // The files and the server's socket, in a private directory the server
    // (running as the data directory's owner) can use.
    let work = tempfile::Builder::new()
        .prefix(".bunker-binlog-replay-")
        .tempdir()
        .map_err(|e| EngineError::failed("creating a work directory", e))?;
    set_mode(work.path(), 0o1777)?;
    let mut paths = Vec::new();
    for f in &files {
        let data = binlog_archive::fetch(repo, f)?
            .ok_or_else(|| EngineError::Invalid(format!("binlog {f} vanished from the archive")))?;
        let p = work.path().join(f);
        std::fs::write(&p, data)
            .map_err(|e| EngineError::failed(format!("writing {}", p.display()), e))?;
        paths.push(p);
    }
    let server = TempServer::start(dir, work.path(), Duration::from_secs(300).min(limit))
        .map_err(|e| EngineError::failed("starting the restored server", e))?;
    let mut binlog = Command::new("mariadb-binlog");
    binlog.env("TZ", "UTC");
    match target {
        MysqlTarget::Gtid(g) => {
            if backup.pos.gtid.is_empty() {
                return Err(EngineError::Invalid(
                    "the backup recorded no GTID position: use --target-time or --target-position"
                        .into(),
                ));
            }
            binlog.arg(format!("--start-position={}", backup.pos.gtid));
            binlog.arg(format!("--stop-position={g}"));
        }
        _ => {
            binlog.arg(format!("--start-position={}", backup.pos.pos));
        }
    }
    match target {
        MysqlTarget::Time(t) => {
            let utc: DateTime<Utc> = t.with_timezone(&Utc);
            binlog.arg(format!(
                "--stop-datetime={}",
                utc.format("%Y-%m-%d %H:%M:%S")
            ));
        }
        MysqlTarget::Position { pos, .. } => {
            binlog.arg(format!("--stop-position={pos}"));
        }
        _ => {}
    }
    binlog.args(&paths);
    let mut producer = binlog
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| EngineError::failed("cannot run mariadb-binlog", e))?;
    let pipe = producer.stdout.take().expect("piped stdout");
    let mut consumer = server
        .conn()
        .command("mariadb")
        .arg("--binary-mode")
        .stdin(Stdio::from(pipe))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| EngineError::failed("cannot run mariadb", e))?;
    let produced = wait_until(&mut producer, deadline, "mariadb-binlog");
    let consumed = wait_until(&mut consumer, deadline, "mariadb (replaying binlogs)");
    produced?;
    consumed?;
    server
        .stop(Duration::from_secs(300))
        .map_err(|e| EngineError::failed("stopping the restored server", e))?;
    Ok(files)
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| EngineError::failed(format!("setting the mode of {}", p.display()), e))
}
