//! Drills of postgres physical items: a base backup unpacked into the
//! sandbox, recovery configured to the chosen point (`restore_command`
//! calling bunker for WAL), a temporary server started on a free loopback
//! port with its socket in the sandbox, recovery awaited, then
//! `pg_amcheck`, the SQL checks and the command checks; the point reached
//! is recorded. The server is always stopped ([`TempServer`]'s guard).
//!
//! The point: `latest` replays the whole archive after the newest base
//! backup; `random` recovers a random base backup to its consistent point;
//! `random_in_window` picks a moment between the window's start and the
//! newest commit found in the archive's newest segments (by `pg_waldump`);
//! `--time` recovers to exactly that time; `--snapshot` replays the whole
//! archive after the given base backup.

use std::path::Path;
use std::time::{Duration, Instant};

use bunker_policy::CheckKind;
use bunker_repo::pg::base::{self, BaseBackup};
use bunker_repo::pg::restore::{self as pgrestore, RecoveryTarget};
use bunker_repo::pg::{retention, verify, wal_archive};
use bunker_repo::snapshots;
use bunker_repo::Repository;
use bunker_sources::postgres::DEFAULT_SEGMENT_SIZE;
use bunker_sources::CancelToken;
use chrono::{DateTime, FixedOffset};
use rand::Rng;

use super::checks::{sql_result, CheckResult};
use super::files::run_commands;
use super::pgserver::{self, find_bin, Runner, TempServer};
use super::{Drill, RecoveryInfo};
use crate::error::{Context, EngineError, Result};
use crate::events::NoEvents;
use crate::pg::{self, PgRestoreRequest};

/// The item's base backups in `repo` of the newest backup's cluster, oldest first.
pub(crate) fn item_base_backups(
    repo: &Repository,
    item: &bunker_policy::Item,
) -> Result<Vec<BaseBackup>> {
    let tag = item.tag();
    let mut backups = base::list_base_backups(repo)?;
    backups.retain(|b| b.entry.snapshot.tags.contains(&tag));
    crate::pg::keep_newest_cluster(&mut backups);
    Ok(backups)
}

/// A recovery target for `time`, written as PostgreSQL reads it
/// (`2024-05-01 10:00:00.123456+00`; it refuses RFC 3339's `T` and `Z`).
pub(crate) fn time_target(t: DateTime<FixedOffset>) -> RecoveryTarget {
    RecoveryTarget::Time {
        time: t,
        text: t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S%.6f+00")
            .to_string(),
    }
}

/// Where recovery stopped: the last replayed commit's time and WAL position.
const REACHED_SQL: &str = "SELECT coalesce(pg_last_xact_replay_timestamp()::text, '') || '|' \
     || coalesce(pg_last_wal_replay_lsn()::text, '')";

pub(super) fn run(d: &mut Drill<'_>) -> Result<()> {
    let exe = d.opts.bunker_exe.clone().ok_or_else(|| {
        EngineError::Invalid(
            "a drill of a postgres physical item needs the bunker program for restore_command"
                .into(),
        )
    })?;
    let restore_command =
        crate::sources::postgres::archive_settings(d.policy, &d.item.name, &exe)?.restore_command;
    let backups = item_base_backups(&d.repo, d.item)?;
    if backups.is_empty() {
        return Err(EngineError::Invalid(format!(
            "item {:?} has no base backup in repository {:?}",
            d.item.name, d.report.repository
        )));
    }
    let mut info = RecoveryInfo::default();
    let (chosen, target) = choose(d, &backups, &mut info)?;
    info.base_backup = chosen.entry.id.to_string();
    info.target = match &target {
        RecoveryTarget::Latest => "latest",
        RecoveryTarget::Immediate => "immediate",
        _ => "time",
    }
    .into();
    if let RecoveryTarget::Time { time, .. } = &target {
        info.target_time = Some(time.to_rfc3339());
    }
    d.report.snapshots.push(chosen.entry.id.to_string());
    d.report.snapshot_time = Some(chosen.end_time);
    let data = d.sandbox.join("data");
    let socket = d.subdir("run")?;
    let hba = d.sandbox.join("pg_hba.conf");
    let log = d.sandbox.join("server.log");
    let port = pgserver::free_port()?;
    info.port = port;
    let settings = pgserver::private_settings(port, &socket, Some(&hba));
    let req = PgRestoreRequest::for_backup(chosen, data.clone(), target, restore_command, settings);
    d.phase("restore", |d| {
        d.check_cancel()?;
        // The drill holds the repository's read lock (see `run_drill`).
        pg::restore(&d.repo, &req, &NoEvents).context("unpacking the base backup")?;
        Ok(())
    })?;
    let bin = find_bin(
        d.cfg.pg_bin.as_deref(),
        Some(&data),
        &["pg_ctl", "postgres", "psql"],
    )?;
    let runner = Runner::new(bin);
    // In the report from here on, also when the server does not come up.
    d.report.recovery = Some(info);
    let mut server = d.phase("startup", |d| {
        pgserver::prepare_config(&data, &hba)?;
        runner.own(&d.sandbox)?;
        let mut server = TempServer::start(&runner, &data, &log, &socket, port)?;
        let users = candidates(d, &runner);
        let reached = server.wait_promoted(&users, d.timeout, &d.opts.cancel, true)?;
        if let Some(r) = d.report.recovery.as_mut() {
            r.target_reached = reached;
        }
        Ok(server)
    })?;
    let su = server.superuser(&candidates(d, &runner))?;
    let reached = ["postgres", "template1"]
        .iter()
        .find_map(|db| {
            server
                .query(
                    &su,
                    db,
                    REACHED_SQL,
                    Duration::from_secs(60),
                    &d.opts.cancel,
                )
                .ok()
        })
        .unwrap_or_default();
    if let (Some((t, lsn)), Some(r)) = (reached.split_once('|'), d.report.recovery.as_mut()) {
        r.reached_time = pgrestore::parse_target_time(t).ok().map(|t| t.to_rfc3339());
        r.reached_lsn = (!lsn.is_empty()).then(|| lsn.to_string());
    }
    let result = d.phase("checks", |d| {
        run_checks(d, &runner, &server, &su);
        Ok(())
    });
    server.stop();
    result
}

/// Role names to try: the item's user, `postgres`, the server programs' user.
fn candidates(d: &Drill<'_>, runner: &Runner) -> Vec<String> {
    let mut c: Vec<String> = Vec::new();
    if let Some(u) = d.item.postgres().and_then(|p| p.user.clone()) {
        c.push(u);
    }
    c.push("postgres".into());
    if let Some(u) = runner.user.clone().or_else(|| std::env::var("USER").ok()) {
        c.push(u);
    }
    c.dedup();
    c
}

/// The base backup and the recovery target of this drill.
fn choose(
    d: &Drill<'_>,
    backups: &[BaseBackup],
    info: &mut RecoveryInfo,
) -> Result<(BaseBackup, RecoveryTarget)> {
    if let Some(spec) = &d.opts.snapshot {
        let filter = snapshots::SnapshotFilter {
            tags: vec![vec![base::TAG_BASE.to_string()]],
            ..Default::default()
        };
        let e = snapshots::find(&d.repo, spec, &filter)
            .with_context(|| format!("finding base backup {spec:?}"))?;
        let b = backups.iter().find(|b| b.entry.id == e.id).ok_or_else(|| {
            EngineError::Invalid(format!(
                "snapshot {} is not a base backup of item {:?}",
                e.id.short(),
                d.item.name
            ))
        })?;
        return Ok((b.clone(), RecoveryTarget::Latest));
    }
    if let Some(t) = d.opts.time {
        let target = time_target(t);
        return Ok((pgrestore::choose(backups, &target)?.clone(), target));
    }
    match d.pick() {
        bunker_policy::DrillPick::Latest => {
            Ok((backups[backups.len() - 1].clone(), RecoveryTarget::Latest))
        }
        bunker_policy::DrillPick::Random => {
            let i = rand::thread_rng().gen_range(0..backups.len());
            Ok((backups[i].clone(), RecoveryTarget::Immediate))
        }
        bunker_policy::DrillPick::RandomInWindow => {
            let (start, end) = window(d, backups)?;
            info.window_start = Some(start.to_rfc3339());
            info.window_end = Some(end.to_rfc3339());
            let span = (end - start).num_microseconds().unwrap_or(0).max(0);
            let t = if span > 0 {
                start + chrono::Duration::microseconds(rand::thread_rng().gen_range(0..span))
            } else {
                start
            };
            let target = time_target(t);
            Ok((pgrestore::choose(backups, &target)?.clone(), target))
        }
    }
}

/// The recoverable window: from the end of its first base backup to the
/// newest commit found in the archive's newest segments (at most 4 are
/// read), or the newest base backup's end when none has a commit.
fn window(
    d: &Drill<'_>,
    backups: &[BaseBackup],
) -> Result<(DateTime<FixedOffset>, DateTime<FixedOffset>)> {
    let size = retention::infer_segment_size(backups).unwrap_or(DEFAULT_SEGMENT_SIZE);
    let report = verify::verify_window(&d.repo, backups, size, &Default::default())?;
    let start = report
        .window_start
        .as_deref()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or(backups[0].end_time);
    let newest_end = backups[backups.len() - 1].end_time;
    let end = newest_commit(d, &d.sandbox.join("waldump"), &d.opts.cancel)
        .filter(|e| *e > start)
        .unwrap_or(newest_end.max(start));
    Ok((start, end))
}

fn newest_commit(d: &Drill<'_>, dir: &Path, cancel: &CancelToken) -> Option<DateTime<FixedOffset>> {
    let bin = find_bin(d.cfg.pg_bin.as_deref(), None, &["pg_waldump"]).ok()?;
    let runner = Runner::new(bin);
    std::fs::create_dir_all(dir).ok()?;
    runner.own(dir).ok()?;
    let mut segs: Vec<String> = wal_archive::list(&d.repo)
        .ok()?
        .into_iter()
        .filter(|(_, w)| w.is_segment())
        .map(|(n, _)| n)
        .collect();
    segs.reverse();
    for name in segs.into_iter().take(4) {
        let bytes = wal_archive::fetch(&d.repo, &name).ok()??;
        let p = dir.join(&name);
        std::fs::write(&p, bytes).ok()?;
        runner.own(&p).ok()?;
        let found = pgserver::last_commit_in_segment(&runner, &p, cancel);
        let _ = std::fs::remove_file(&p);
        if found.is_some() {
            return found;
        }
    }
    None
}

/// `pg_amcheck` on every database (skipped when not installed), then the
/// item's SQL checks and command checks.
pub(crate) fn run_checks(d: &mut Drill<'_>, runner: &Runner, server: &TempServer, su: &str) {
    let default_db = d
        .item
        .postgres()
        .and_then(|p| p.database.clone())
        .unwrap_or_else(|| "postgres".into());
    let start = Instant::now();
    if runner.has("pg_amcheck") {
        let mut c = runner.command("pg_amcheck");
        c.arg("-h")
            .arg(&server.socket_dir)
            .arg("-p")
            .arg(server.port.to_string())
            .args(["-U", su, "--all", "--install-missing"]);
        let r = super::checks::run_program(c, d.timeout, &d.opts.cancel);
        let (ok, out) = match r {
            Ok((o, e)) => (true, format!("{o}{e}")),
            Err(e) => (false, e.to_string()),
        };
        d.report
            .checks
            .push(CheckResult::new("pg_amcheck", ok, out, start));
    } else {
        let mut r = CheckResult::new(
            "pg_amcheck",
            false,
            "pg_amcheck is not installed".into(),
            start,
        );
        r.skipped = true;
        d.report.checks.push(r);
    }
    for c in d.cfg.checks.clone() {
        if d.opts.cancel.is_cancelled() {
            return;
        }
        if let CheckKind::Sql { sql, database, .. } = &c.kind {
            let start = Instant::now();
            let db = database.clone().unwrap_or_else(|| default_db.clone());
            let answer = server
                .query(su, &db, sql, c.timeout.unwrap_or(d.timeout), &d.opts.cancel)
                .map(|out| {
                    out.lines()
                        .next()
                        .map(|l| l.split('|').next().unwrap_or(l).to_string())
                })
                .map_err(|e| e.to_string());
            d.report.checks.push(sql_result(&c, answer, start));
        }
    }
    let mut env = server.env(su, &default_db);
    env.push(("BUNKER_DRILL_DIR".into(), server.data.display().to_string()));
    let dir = server.data.clone();
    run_commands(d, &dir, &env);
}
