//! `kind: command` items (the standard output of a shell command, streamed
//! into a snapshot holding one file, no temporary copy) and `kind: sqlite`
//! items (an online-backup copy).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bunker_policy::CommandConfig;
use bunker_repo::pg::{backup_sqlite_file, save_stream};
use bunker_repo::progress::Progress;
use bunker_repo::Repository;
use bunker_sources::postgres::ChildReader;
use bunker_sources::CancelToken;

use super::StoredSnapshot;
use crate::error::{Context, Result};

/// Run `sh -c COMMAND` (with `BUNKER_ITEM` set) and store its output as
/// `/<stdin_filename>`, in `dir` (the policy file's directory) when given.
/// A command that exits non-zero, or runs past its
/// `timeout` (it is then stopped with everything it started), fails the item
/// and leaves no snapshot; so does cancelling the job.
pub fn run_command_item(
    repo: &Arc<Repository>,
    item: &str,
    cfg: &CommandConfig,
    tags: &[String],
    dir: Option<&Path>,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<Vec<StoredSnapshot>> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(&cfg.command).env("BUNKER_ITEM", item);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let reader = ChildReader::spawn_watched(cmd, cfg.timeout, Some(cancel))
        .context("starting the command")?;
    let s = save_stream(
        repo,
        Box::new(reader),
        &cfg.stdin_filename,
        tags.to_vec(),
        None,
        progress,
    )
    .context("backing up the command's output")?;
    Ok(vec![StoredSnapshot::new(&s, cfg.stdin_filename.clone())])
}

/// Run a `kind: sqlite` item: an online-backup copy stored as `/<file name>`.
pub fn run_sqlite_item(
    repo: &Arc<Repository>,
    db: &Path,
    tags: &[String],
    host: Option<String>,
    progress: &dyn Progress,
) -> Result<Vec<StoredSnapshot>> {
    let s = backup_sqlite_file(repo, db, tags.to_vec(), host, progress)?;
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(vec![StoredSnapshot::new(&s, name)])
}
