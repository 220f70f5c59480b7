//! Point in time, all items (`bunker recover --time T`): for every item (or
//! the named ones), the newest snapshot at or before T restored below
//! `TARGET/ITEM`; for postgres physical items, the base backup that can
//! reach T unpacked there with recovery configured to stop at exactly T
//! (optionally started privately and awaited); a summary per item with the
//! RPO actually achieved (how far before T the restored state lies).
//!
//! Items are independent: one that fails is reported and the others go on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bunker_policy::{Item, Policy, Source};
use bunker_repo::lock::RepoLock;
use bunker_repo::pg::restore::{self as pgrestore};
use bunker_repo::restore::{self, RestoreOptions};
use bunker_repo::snapshots::SnapshotEntry;
use bunker_sources::CancelToken;
use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::drill::pgserver::{self, find_bin, Runner, TempServer};
use crate::drill::{item_snapshots, kind_name};
use crate::error::{Context, EngineError, Result};
use crate::events::EventSink;
use crate::pg::{self, PgRestoreRequest};
use crate::pool::RepoPool;
use crate::sources::postgres::TAG_DUMP;

/// What to recover, and where.
#[derive(Debug, Clone)]
pub struct RecoverOptions {
    /// The point in time.
    pub time: DateTime<FixedOffset>,
    /// Only these items (all when empty).
    pub items: Vec<String>,
    /// Each item is restored below `target/ITEM` (which must be empty or missing).
    pub target: PathBuf,
    /// Postgres physical items: start the recovered server (on a free
    /// loopback port, socket in its data directory, no archiving) and wait
    /// until it reached T; it is left running.
    pub start: bool,
    /// The deadline of that wait.
    pub timeout: Duration,
    /// The bunker program `restore_command` calls (postgres physical items).
    pub bunker_exe: Option<PathBuf>,
    /// The job's cancellation.
    pub cancel: CancelToken,
}

/// What became of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoverState {
    /// Its snapshot was restored.
    Restored,
    /// Postgres physical: unpacked and configured to recover to T when started.
    Configured,
    /// Postgres physical with `start`: recovered to T, the server runs.
    Recovered,
    /// No snapshot at or before T.
    NoSnapshot,
    /// It failed (see `error`).
    Failed,
}

/// One item's recovery.
#[derive(Debug, Clone, Serialize)]
pub struct ItemRecovery {
    /// The item.
    pub item: String,
    /// Its kind (as drill reports name it).
    pub kind: String,
    /// What became of it.
    pub state: RecoverState,
    /// The repository used.
    pub repository: Option<String>,
    /// The snapshots restored (full ids; a base backup for physical items).
    pub snapshots: Vec<String>,
    /// The (newest) snapshot's time; the base backup's end for physical items.
    pub snapshot_time: Option<DateTime<FixedOffset>>,
    /// Where it was restored.
    pub path: PathBuf,
    /// How far before T the restored state lies, in seconds: T minus the
    /// snapshot's time; for a recovered physical item 0 when recovery
    /// stopped at T, else (the archive ends before T) T minus the last
    /// replayed commit. `None` for a configured physical item: it recovers
    /// to T when started.
    pub rpo_seconds: Option<i64>,
    /// Postgres physical with `start`: the last replayed commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reached_time: Option<String>,
    /// Postgres physical with `start`: the running server's port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A remark (e.g. no commit after T is archived).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why it failed, as one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Recover every selected item of `pool`'s policy to `opts.time`.
/// Unknown item names are an error before anything is restored.
pub fn recover_to_time(
    pool: &mut RepoPool<'_>,
    opts: &RecoverOptions,
    sink: &dyn EventSink,
) -> Result<Vec<ItemRecovery>> {
    let policy: &Policy = pool.policy();
    for name in &opts.items {
        if policy.item(name).is_none() {
            return Err(EngineError::Invalid(format!(
                "no item {name:?} in the policy"
            )));
        }
    }
    let mut out = Vec::new();
    for item in &policy.items {
        if !opts.items.is_empty() && !opts.items.contains(&item.name) {
            continue;
        }
        if opts.cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let path = opts.target.join(&item.name);
        let mut r = ItemRecovery {
            item: item.name.clone(),
            kind: kind_name(item).to_string(),
            state: RecoverState::Failed,
            repository: None,
            snapshots: Vec::new(),
            snapshot_time: None,
            path: path.clone(),
            rpo_seconds: None,
            reached_time: None,
            port: None,
            note: None,
            error: None,
        };
        if let Err(e) = recover_item(pool, policy, item, opts, &path, &mut r, sink) {
            if e.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            if r.state != RecoverState::NoSnapshot {
                r.state = RecoverState::Failed;
                r.error = Some(e.one_line());
            }
        }
        audit_recovery(pool, &r, sink);
        out.push(r);
    }
    Ok(out)
}

fn recover_item(
    pool: &mut RepoPool<'_>,
    policy: &Policy,
    item: &Item,
    opts: &RecoverOptions,
    path: &Path,
    r: &mut ItemRecovery,
    sink: &dyn EventSink,
) -> Result<()> {
    if !pgrestore::is_empty_dir(path)? {
        return Err(EngineError::Invalid(format!(
            "{} is not empty: recover into a new target directory",
            path.display()
        )));
    }
    let t = opts.time;
    // The repository with the newest snapshot at or before T (physical
    // items: the first target, which holds the WAL).
    let targets: Vec<&String> = if item.physical().is_some() {
        item.targets.iter().take(1).collect()
    } else {
        item.targets.iter().collect()
    };
    let mut best: Option<(std::sync::Arc<crate::pool::Opened>, Vec<SnapshotEntry>)> = None;
    let mut last_err = None;
    for name in targets {
        let o = match pool.get(name) {
            Ok(o) => o,
            Err(e) => {
                last_err = Some(e.one_line());
                continue;
            }
        };
        let snaps: Vec<SnapshotEntry> = item_snapshots(&o.repo, item)?
            .into_iter()
            .filter(|e| e.snapshot.time <= t)
            .collect();
        let newer = |b: &Vec<SnapshotEntry>| {
            snaps.last().map(|e| e.snapshot.time) > b.last().map(|e| e.snapshot.time)
        };
        if best.as_ref().is_none_or(|(_, b)| newer(b)) {
            best = Some((o, snaps));
        }
    }
    let Some((o, snaps)) = best else {
        return Err(EngineError::Invalid(format!(
            "no target repository of item {:?} could be opened: {}",
            item.name,
            last_err.unwrap_or_default()
        )));
    };
    r.repository = Some(o.name.clone());
    if snaps.is_empty() && item.physical().is_none() {
        r.state = RecoverState::NoSnapshot;
        return Err(EngineError::Invalid(
            "no snapshot at or before the time".into(),
        ));
    }
    let repo = &o.repo;
    let _lock = RepoLock::acquire_read(repo).context("locking the repository")?;
    repo.load_index().context("loading the index")?;
    let chosen: Vec<SnapshotEntry> = match &item.source {
        Source::Postgres(_) if item.physical().is_some() => {
            return recover_physical(policy, item, opts, repo, path, r, sink);
        }
        Source::Postgres(_) => {
            // Each database's newest dump, and the newest globals.
            let mut per: std::collections::BTreeMap<String, SnapshotEntry> = Default::default();
            for e in &snaps {
                let key = e
                    .snapshot
                    .tags
                    .iter()
                    .find_map(|t| t.strip_prefix("pg-db=").map(str::to_string))
                    .unwrap_or_else(|| {
                        if e.snapshot.tags.iter().any(|t| t == TAG_DUMP) {
                            String::new()
                        } else {
                            "(globals)".into()
                        }
                    });
                per.insert(key, e.clone());
            }
            per.into_values().collect()
        }
        _ => snaps.last().cloned().into_iter().collect(),
    };
    for e in &chosen {
        let ropts = RestoreOptions {
            target: path.to_path_buf(),
            ..RestoreOptions::default()
        };
        let sum = restore::restore(repo, e, &ropts, sink.progress())
            .with_context(|| format!("restoring snapshot {}", e.id.short()))?;
        if let Some((p, why)) = sum.errors.first() {
            return Err(EngineError::Invalid(format!(
                "{} entries of snapshot {} could not be restored (first: {p}: {why})",
                sum.errors.len(),
                e.id.short()
            )));
        }
        r.snapshots.push(e.id.to_string());
    }
    r.snapshot_time = chosen.iter().map(|e| e.snapshot.time).max();
    r.rpo_seconds = r.snapshot_time.map(|s| (t - s).num_seconds());
    r.state = RecoverState::Restored;
    Ok(())
}

fn recover_physical(
    policy: &Policy,
    item: &Item,
    opts: &RecoverOptions,
    repo: &std::sync::Arc<bunker_repo::Repository>,
    path: &Path,
    r: &mut ItemRecovery,
    sink: &dyn EventSink,
) -> Result<()> {
    let exe = opts.bunker_exe.clone().ok_or_else(|| {
        EngineError::Invalid(
            "recovering a postgres physical item needs the bunker program for restore_command"
                .into(),
        )
    })?;
    let restore_command =
        crate::sources::postgres::archive_settings(policy, &item.name, &exe)?.restore_command;
    let backups = crate::drill::physical_base_backups(repo, item)?;
    let target = crate::drill::time_target(opts.time);
    let chosen = match pgrestore::choose(&backups, &target) {
        Ok(b) => b.clone(),
        Err(e) => {
            r.state = RecoverState::NoSnapshot;
            return Err(e.into());
        }
    };
    r.snapshots.push(chosen.entry.id.to_string());
    r.snapshot_time = Some(chosen.end_time);
    let port = if opts.start {
        Some(pgserver::free_port()?)
    } else {
        None
    };
    let settings = port.map_or_else(Vec::new, |p| pgserver::private_settings(p, path, None));
    let req = PgRestoreRequest::for_backup(chosen, path.into(), target, restore_command, settings);
    // The caller holds the repository's read lock (see `recover_item`).
    pg::restore(repo, &req, sink).context("unpacking the base backup")?;
    if port.is_some() {
        // The cluster's own pg_hba.conf decides who may connect; one
        // configured outside the data directory (Debian) is replaced by
        // `local all all trust` (the socket is in the data directory).
        let own_hba = path.join("pg_hba.conf");
        if !own_hba.exists() {
            pgserver::prepare_config(path, &own_hba)?;
        }
    }
    let bin = find_bin(None, Some(path), &["pg_ctl", "postgres", "psql"]);
    let runner = bin.map(Runner::new);
    if let Ok(runner) = &runner {
        runner.own(path)?;
    }
    let Some(port) = port else {
        r.state = RecoverState::Configured;
        r.note = Some(
            "recovers to exactly the time when started (restore_command fetches the WAL)".into(),
        );
        return Ok(());
    };
    let runner = runner?;
    let log = path.join("bunker-recovery.log");
    let mut server = TempServer::start(&runner, path, &log, path, port)?;
    let mut users = vec!["postgres".to_string()];
    if let Some(u) = item.postgres().and_then(|p| p.user.clone()) {
        users.insert(0, u);
    }
    let reached_target = server.wait_promoted(&users, opts.timeout, &opts.cancel, true)?;
    let su = server.superuser(&users)?;
    let reached = server
        .query(
            &su,
            "template1",
            "SELECT coalesce(pg_last_xact_replay_timestamp()::text, '')",
            Duration::from_secs(60),
            &opts.cancel,
        )
        .unwrap_or_default();
    let reached = pgrestore::parse_target_time(&reached).ok();
    r.reached_time = reached.map(|t| t.to_rfc3339());
    r.rpo_seconds = if reached_target {
        Some(0)
    } else {
        reached.map(|x| (opts.time - x).num_seconds())
    };
    r.port = Some(port);
    if !reached_target {
        r.note = Some("no transaction committed after the time is archived: recovered to the end of the archive".into());
    }
    r.state = RecoverState::Recovered;
    server.detach();
    Ok(())
}

/// A recovery read data out of its repository: one audit record there.
fn audit_recovery(pool: &mut RepoPool<'_>, r: &ItemRecovery, sink: &dyn EventSink) {
    use bunker_repo::audit::{Entry, Outcome};
    let Some(Ok(o)) = r.repository.as_deref().map(|name| pool.get(name)) else {
        return;
    };
    let outcome = match r.state {
        RecoverState::Failed => Outcome::Failure,
        _ => Outcome::Success,
    };
    let entry = Entry::new("recover --time")
        .snapshots(r.snapshots.clone())
        .outcome(outcome, r.error.clone())
        .details(serde_json::json!({ "item": r.item, "path": r.path }));
    crate::audit::append(&o.repo, &entry, sink);
}
