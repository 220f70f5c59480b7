//! `mysql binlog-push` and `mysql binlog-verify`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bunker_repo::mysql::physical::list_physical_backups;
use bunker_repo::mysql::{binlog_archive, verify as myverify};
use bunker_repo::pg::wal_archive::PushOutcome;
use clap::Args;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::{output, repo};

/// Archive closed binlog files
#[derive(Args, Debug)]
#[command(
    long_about = "Archive closed binlog files: compressed, encrypted and written under \
bunker/binlog/<name> in the repository, each durable before the command moves on. Pushing an \
identical file again succeeds; a different file under the same name is refused (exit status 1). \
With --index, every file the server's binlog index lists except the last (the one being \
written) is pushed; already archived ones cost one read each. Never push the file the server \
is still writing: it would be archived incomplete and its final version refused.",
    after_long_help = super::help::PUSH_EXAMPLES
)]
pub struct PushArgs {
    /// Closed binlog files
    pub files: Vec<PathBuf>,
    /// The server's binlog index file (<log_bin>.index): push every closed file it lists
    #[arg(long, value_name = "FILE")]
    pub index: Option<PathBuf>,
}

pub fn push(g: &GlobalOpts, args: PushArgs) -> Result<Status> {
    let mut files = args.files.clone();
    if let Some(idx) = &args.index {
        files.extend(bunker_sources::mysql::closed_binlogs(idx)?);
    }
    if files.is_empty() {
        bail!("nothing to push: give binlog files or --index FILE");
    }
    let r = repo::open(g)?;
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{} has no file name", path.display()))?;
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let outcome = binlog_archive::push(&r, &name, &data)
            .with_context(|| format!("binlog-push {name}"))?;
        let already = outcome == PushOutcome::AlreadyArchived;
        if g.json {
            output::json_line(&serde_json::json!({
                "name": name, "bytes": data.len(), "already_archived": already,
            }))?;
        } else if !g.quiet && !already {
            println!("archived {name} ({})", output::bytes(data.len() as u64));
        }
    }
    Ok(Status::Success)
}

/// Check the binlog archive for gaps
#[derive(Args, Debug)]
#[command(
    long_about = "Check that every binlog file from the oldest physical backup's start file \
(or the oldest archived file) to the newest archived one is present, by sequence number. A \
missing file is printed and the command exits with status 1: point-in-time recovery cannot \
replay past it. Backups whose start file is not archived yet are listed (the server may still \
be writing it).",
    after_long_help = super::help::VERIFY_EXAMPLES
)]
pub struct VerifyArgs {}

pub fn verify(g: &GlobalOpts, _args: VerifyArgs) -> Result<Status> {
    let r = repo::open(g)?;
    let archived = binlog_archive::list(&r)?;
    let backups = list_physical_backups(&r)?;
    let report = myverify::verify(&archived, &backups);
    if g.json {
        output::json_line(&serde_json::to_value(&report)?)?;
    } else if !g.quiet {
        println!(
            "{} binlog file(s) archived, {} physical backup(s); checked {} .. {}",
            report.archived,
            backups.len(),
            report.needed_from.as_deref().unwrap_or("-"),
            report.newest.as_deref().unwrap_or("-")
        );
        for m in &report.missing {
            println!("missing: {m}");
        }
        if !report.backups_without_start.is_empty() {
            println!(
                "backups whose start binlog is not archived yet: {}",
                report.backups_without_start.join(", ")
            );
        }
        if !report.other_series.is_empty() {
            println!(
                "not checked (another binlog name): {}",
                report.other_series.join(", ")
            );
        }
    }
    if !report.ok() {
        bail!(
            "{} binlog file(s) missing from the archive ({}); point-in-time recovery cannot replay past them",
            report.missing.len(),
            report.missing.join(", ")
        );
    }
    Ok(Status::Success)
}

/// Delete archived binlogs no physical backup needs
#[derive(Args, Debug)]
#[command(
    long_about = "Delete archived binlog files older than the start file of the oldest physical \
backup in the repository (per binlog base name; a base name no backup starts in is left alone). \
Run it after `bunker forget` removed old physical backups.",
    after_long_help = super::help::PRUNE_EXAMPLES
)]
pub struct PruneArgs {
    /// Only list what would be deleted
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

pub fn prune(g: &GlobalOpts, args: PruneArgs) -> Result<Status> {
    let r = repo::open(g)?;
    let _lock = repo::lock(&r, false)?;
    let archived = binlog_archive::list(&r)?;
    let backups = list_physical_backups(&r)?;
    let names = myverify::prunable(&archived, &backups);
    for n in &names {
        if !args.dry_run {
            binlog_archive::remove(&r, n).with_context(|| format!("removing {n}"))?;
        }
        if g.json {
            output::json_line(&serde_json::json!({ "name": n, "removed": !args.dry_run }))?;
        } else if !g.quiet {
            println!(
                "{} {n}",
                if args.dry_run {
                    "would remove"
                } else {
                    "removed"
                }
            );
        }
    }
    if !g.json && !g.quiet && names.is_empty() {
        println!("no archived binlog is older than the oldest physical backup");
    }
    Ok(Status::Success)
}
