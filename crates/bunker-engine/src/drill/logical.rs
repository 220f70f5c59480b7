//! Drills of postgres logical items: the dumps of one point (each
//! database's newest dump at or before it) restored and verified, a new
//! cluster made with `initdb` in the sandbox and started privately, every
//! dump loaded with `pg_restore --exit-on-error --no-owner --no-acl` into
//! a database of its name, then `pg_amcheck` and the checks as for
//! physical items. Roles (`globals.sql`) are restored as a file, not
//! applied.

use std::collections::BTreeMap;

use bunker_repo::snapshots::SnapshotEntry;
use chrono::{DateTime, FixedOffset};
use rand::Rng;

use super::files::restore_into;
use super::pgserver::{self, find_bin, Runner, TempServer};
use super::physical::run_checks;
use super::verify::{verify_tree, VerifySummary};
use super::{item_snapshots, Drill};
use crate::error::{Context, EngineError, Result};
use crate::sources::postgres::TAG_DUMP;

/// The database a dump snapshot holds (its `pg-db=` tag).
fn db_of(e: &SnapshotEntry) -> Option<&str> {
    e.snapshot
        .tags
        .iter()
        .find_map(|t| t.strip_prefix("pg-db="))
}

/// The dumps to restore: the given snapshot, or each database's newest
/// dump at or before the drill's point.
fn choose(d: &Drill<'_>, dumps: &[SnapshotEntry]) -> Result<Vec<SnapshotEntry>> {
    if d.opts.snapshot.is_some() {
        return Ok(vec![super::choose_snapshot(d, dumps)?]);
    }
    let point: DateTime<FixedOffset> = match (d.opts.time, d.pick()) {
        (Some(t), _) => t,
        (None, bunker_policy::DrillPick::Random) if !dumps.is_empty() => {
            dumps[rand::thread_rng().gen_range(0..dumps.len())]
                .snapshot
                .time
        }
        _ => match dumps.last() {
            Some(e) => e.snapshot.time,
            None => {
                return Err(EngineError::Invalid(format!(
                    "item {:?} has no database dump in repository {:?}",
                    d.item.name, d.report.repository
                )))
            }
        },
    };
    let mut per_db: BTreeMap<&str, &SnapshotEntry> = BTreeMap::new();
    for e in dumps.iter().filter(|e| e.snapshot.time <= point) {
        if let Some(db) = db_of(e) {
            per_db.insert(db, e);
        }
    }
    if per_db.is_empty() {
        return Err(EngineError::Invalid(format!(
            "item {:?} has no database dump at or before {}",
            d.item.name,
            point.to_rfc3339()
        )));
    }
    Ok(per_db.into_values().cloned().collect())
}

pub(super) fn run(d: &mut Drill<'_>) -> Result<()> {
    let dumps: Vec<SnapshotEntry> = item_snapshots(&d.repo, d.item)?
        .into_iter()
        .filter(|e| e.snapshot.tags.iter().any(|t| t == TAG_DUMP))
        .collect();
    let chosen = choose(d, &dumps)?;
    for e in &chosen {
        d.report.snapshots.push(e.id.to_string());
    }
    d.report.snapshot_time = chosen.iter().map(|e| e.snapshot.time).max();
    let root = d.subdir("restore")?;
    d.phase("restore", |d| {
        for e in &chosen {
            restore_into(d, e, &root)?;
        }
        Ok(())
    })?;
    d.phase("verify", |d| {
        let mut total = VerifySummary::default();
        for e in &chosen {
            let v = verify_tree(&d.repo, &e.snapshot.tree, &root, &d.opts.cancel)?;
            total.files += v.files;
            total.bytes += v.bytes;
            total.mismatch_count += v.mismatch_count;
            total.mismatches.extend(v.mismatches);
        }
        let bad = total.mismatch_count;
        d.report.verify = Some(total);
        if bad > 0 {
            return Err(EngineError::Invalid(format!(
                "{bad} restored dump(s) differ from the snapshot"
            )));
        }
        Ok(())
    })?;
    let bin = find_bin(
        d.cfg.pg_bin.as_deref(),
        None,
        &["initdb", "pg_ctl", "postgres", "psql", "pg_restore"],
    )?;
    let runner = Runner::new(bin);
    let data = d.sandbox.join("data");
    let socket = d.subdir("run")?;
    let hba = d.sandbox.join("pg_hba.conf");
    let log = d.sandbox.join("server.log");
    let port = pgserver::free_port()?;
    let su = "postgres".to_string();
    let mut server = d.phase("startup", |d| {
        runner.own(&d.sandbox)?;
        let mut c = runner.command("initdb");
        c.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            &su,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        super::checks::run_program(c, d.timeout, &d.opts.cancel)
            .map_err(|e| EngineError::failed("initdb", e))?;
        pgserver::prepare_config(&data, &hba)?;
        for (k, v) in pgserver::private_settings(port, &socket, Some(&hba)) {
            pgserver::append_setting(&data, &k, &v)?;
        }
        runner.own(&d.sandbox)?;
        let mut server = TempServer::start(&runner, &data, &log, &socket, port)?;
        server.wait_promoted(std::slice::from_ref(&su), d.timeout, &d.opts.cancel, false)?;
        Ok(server)
    })?;
    d.phase("load", |d| {
        for e in &chosen {
            d.check_cancel()?;
            let Some(db) = db_of(e) else { continue };
            let file = root.join(format!("{db}.dump"));
            runner.own(&file)?;
            if db != "postgres" {
                let q = bunker_sources::postgres::process::ident_quote(db);
                server
                    .query(
                        &su,
                        "postgres",
                        &format!("CREATE DATABASE {q} TEMPLATE template0"),
                        d.timeout,
                        &d.opts.cancel,
                    )
                    .map_err(|err| EngineError::failed(format!("creating database {db}"), err))?;
            }
            let mut c = runner.command("pg_restore");
            c.arg("-h")
                .arg(&server.socket_dir)
                .arg("-p")
                .arg(port.to_string())
                .args([
                    "-U",
                    &su,
                    "--exit-on-error",
                    "--no-owner",
                    "--no-acl",
                    "-d",
                    db,
                ])
                .arg(&file);
            super::checks::run_program(c, d.timeout, &d.opts.cancel)
                .map_err(|err| EngineError::failed(format!("loading the dump of {db}"), err))
                .context("pg_restore")?;
        }
        Ok(())
    })?;
    let result = d.phase("checks", |d| {
        run_checks(d, &runner, &server, &su);
        Ok(())
    });
    server.stop();
    result
}
