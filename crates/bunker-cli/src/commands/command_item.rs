//! `kind: command` policy items: the standard output of a shell command,
//! streamed into a snapshot holding one file (no temporary copy). A command
//! that exits non-zero, or runs past its `timeout` (it is then stopped with
//! everything it started), fails the item and leaves no snapshot behind.

use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result};
use bunker_policy::CommandConfig;
use bunker_repo::pg::save_stream;
use bunker_repo::progress::Progress;
use bunker_repo::Repository;
use bunker_sources::postgres::ChildReader;

use super::pg::items::{ItemSnapshots, StoredSnapshot};

/// Run `sh -c COMMAND` (with `BUNKER_ITEM` set) and store its output as
/// `/<stdin_filename>`.
pub fn run_command_item(
    repo: &Arc<Repository>,
    item: &str,
    cfg: &CommandConfig,
    tags: &[String],
    progress: &dyn Progress,
) -> Result<ItemSnapshots> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(&cfg.command).env("BUNKER_ITEM", item);
    let reader = ChildReader::spawn_limited(cmd, cfg.timeout).context("starting the command")?;
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
