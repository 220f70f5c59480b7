//! `bunker ls`: list the contents of a snapshot.

use std::io::Write;

use anyhow::{Context, Result};
use bunker_format::node::NodeType;
use bunker_repo::walk::{self, LsEntry};
use bunker_repo::{snapshots, RepoError};
use clap::Args;

use super::config::ItemArgs;
use super::FilterArgs;
use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::{output, repo};

const LONG_ABOUT: &str = "\
List files and directories of a snapshot (its absolute paths, one per line). Without PATH \
the whole snapshot is listed; with a directory PATH that directory and its entries (all \
levels below it with --recursive); with a file PATH that file.

-l/--long adds permissions, numeric uid and gid, size and modification time, as restic \
prints them. A PATH that is not in the snapshot lists nothing (exit 0), as in restic. With --json the first \
line describes the snapshot (struct_type \"snapshot\") and every further line is a node \
(struct_type \"node\"), as restic prints them.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker ls latest
    bunker ls -l 4f2a9c1e /home/alice/docs
    bunker ls latest /etc --recursive --json
    bunker ls latest --config /etc/bunker/bunker.yaml --item webapp-files";

/// List files in a snapshot
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct LsArgs {
    /// Snapshot id (or prefix) or `latest`
    pub snapshot: String,
    /// Directory or file in the snapshot to list
    pub path: Option<String>,
    /// List directories recursively
    #[arg(long)]
    pub recursive: bool,
    /// Long listing: permissions, owner, size, time
    #[arg(short = 'l', long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub item: ItemArgs,
}

/// restic's `ls -l` line: Go file mode, numeric uid and gid, size, local
/// mtime, path (and ` -> target` for symlinks), in restic's column widths.
pub(crate) fn long_line(e: &LsEntry) -> String {
    let mut line = format!(
        "{} {:>5} {:>5} {:>6} {} {}",
        e.permissions,
        e.uid,
        e.gid,
        e.size.unwrap_or(0),
        output::local_time(&e.mtime),
        e.path
    );
    if e.node_type == NodeType::Symlink {
        line.push_str(" -> ");
        line.push_str(&String::from_utf8_lossy(&e.link_target));
    }
    line
}

pub fn run(g: &GlobalOpts, args: LsArgs) -> Result<Status> {
    let mut filter = args.filter.filter();
    let r = repo::open_for(g, &args.item, &mut filter)?;
    let _lock = repo::lock_read(&r)?;
    r.load_index().context("loading the index")?;
    let snap = snapshots::find(&r, &args.snapshot, &filter)?;
    let recursive = args.recursive || args.path.is_none();
    // As restic: a path that is not in the snapshot lists nothing.
    let entries = match walk::ls(&r, &snap, args.path.as_deref(), recursive) {
        Err(RepoError::PathNotInSnapshot(msg)) => {
            tracing::info!("{msg}");
            Vec::new()
        }
        other => other?,
    };
    let mut out = std::io::stdout().lock();
    if g.json {
        let mut head = super::snapshots::snapshot_json(&snap)?;
        if let Some(obj) = head.as_object_mut() {
            obj.insert("message_type".into(), "snapshot".into());
            obj.insert("struct_type".into(), "snapshot".into());
        }
        output::json_line(&head)?;
        for e in &entries {
            output::json_line(e)?;
        }
        return Ok(Status::Success);
    }
    for e in &entries {
        if args.long {
            writeln!(out, "{}", long_line(e))
        } else {
            out.write_all(&e.path_bytes)
                .and_then(|()| out.write_all(b"\n"))
        }
        .context("writing to stdout")?;
    }
    Ok(Status::Success)
}
