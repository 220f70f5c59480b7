//! Drills of `files` and `command` items: restore the snapshot into the
//! sandbox, verify every entry against the snapshot, run the commands of
//! `checks` with `BUNKER_DRILL_DIR` (the restore root; a files snapshot's
//! absolute paths are recreated below it) and, for command items,
//! `BUNKER_DRILL_FILE` (the restored stream).

use std::path::{Path, PathBuf};

use bunker_policy::{CheckKind, Source};
use bunker_repo::restore::{self, RestoreOptions};
use bunker_repo::snapshots::SnapshotEntry;

use super::checks::{run_command_check, CheckResult};
use super::verify::verify_tree;
use super::{choose_snapshot, item_snapshots, Drill};
use crate::error::{Context, EngineError, Result};

pub(super) fn run(d: &mut Drill<'_>) -> Result<()> {
    let snaps = item_snapshots(&d.repo, d.item)?;
    let snap = choose_snapshot(d, &snaps)?;
    let root = restore_verified(d, &snap)?;
    let mut env = vec![("BUNKER_DRILL_DIR".to_string(), root.display().to_string())];
    if let Source::Command(c) = &d.item.source {
        let file = root.join(&c.stdin_filename);
        env.push(("BUNKER_DRILL_FILE".into(), file.display().to_string()));
    }
    d.phase("checks", |d| {
        run_commands(d, &root, &env);
        Ok(())
    })
}

/// Restore `snap` into `<sandbox>/restore` (phase `restore`; any entry that
/// cannot be restored fails the drill) and verify it (phase `verify`);
/// the restore root.
pub(super) fn restore_verified(d: &mut Drill<'_>, snap: &SnapshotEntry) -> Result<PathBuf> {
    d.report.snapshots.push(snap.id.to_string());
    d.report.snapshot_time = Some(snap.snapshot.time);
    let root = d.subdir("restore")?;
    d.phase("restore", |d| restore_into(d, snap, &root))?;
    d.phase("verify", |d| {
        d.check_cancel()?;
        let v = verify_tree(&d.repo, &snap.snapshot.tree, &root, &d.opts.cancel)?;
        let bad = v.mismatch_count;
        let first = v.mismatches.first().cloned().unwrap_or_default();
        d.report.verify = Some(v);
        if bad > 0 {
            return Err(EngineError::Invalid(format!(
                "{bad} restored entr{} differ from the snapshot (first: {first})",
                if bad == 1 { "y" } else { "ies" }
            )));
        }
        Ok(())
    })?;
    Ok(root)
}

/// Restore `snap` into `root`; any entry that cannot be restored is an error.
pub(super) fn restore_into(d: &mut Drill<'_>, snap: &SnapshotEntry, root: &Path) -> Result<()> {
    {
        d.check_cancel()?;
        let opts = RestoreOptions {
            target: root.to_path_buf(),
            ..RestoreOptions::default()
        };
        let sum = restore::restore(&d.repo, snap, &opts, d.progress)
            .with_context(|| format!("restoring snapshot {}", snap.id.short()))?;
        d.check_cancel()?;
        if let Some((path, why)) = sum.errors.first() {
            return Err(EngineError::Invalid(format!(
                "{} entr{} of snapshot {} could not be restored (first: {path}: {why})",
                sum.errors.len(),
                if sum.errors.len() == 1 { "y" } else { "ies" },
                snap.id.short()
            )));
        }
        Ok(())
    }
}

/// Run the item's command checks in `dir` with `env`; results go to the report.
pub(super) fn run_commands(d: &mut Drill<'_>, dir: &Path, env: &[(String, String)]) {
    let mut env = env.to_vec();
    env.push(("BUNKER_ITEM".into(), d.item.name.clone()));
    let checks = d.cfg.checks.clone();
    for c in &checks {
        if d.opts.cancel.is_cancelled() {
            return;
        }
        if let CheckKind::Command(cmd) = &c.kind {
            let limit = c.timeout.unwrap_or(d.timeout);
            let r: CheckResult = run_command_check(cmd, dir, &env, limit, &d.opts.cancel);
            d.report.checks.push(r);
        }
    }
}
