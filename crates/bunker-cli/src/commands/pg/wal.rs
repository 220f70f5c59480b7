//! `pg wal-push`, `pg wal-fetch`, `pg wal-verify`, `pg wal-prune`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bunker_repo::pg::{base, verify as pgverify, wal_archive};
use bunker_sources::postgres::DEFAULT_SEGMENT_SIZE;
use clap::Args;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::{output, repo};

const PUSH_ABOUT: &str = "\
Archive one WAL file (a segment, .history or .backup file) for PostgreSQL's archive_command:

    archive_command = 'bunker -r REPO --password-file FILE pg wal-push %p'

The file is compressed, encrypted and written under bunker/wal/<name> in the repository; \
the command succeeds only once it is durable. Pushing the identical file again succeeds \
(PostgreSQL retries after crashes); a different file under the same name is refused with \
exit status 1 and an error, and PostgreSQL keeps the file and retries (check the server log).";

/// Archive a WAL file (archive_command = '... pg wal-push %p')
#[derive(Args, Debug)]
#[command(long_about = PUSH_ABOUT)]
pub struct WalPushArgs {
    /// Path of the WAL file (%p, relative to the data directory)
    pub path: PathBuf,
}

/// Fetch an archived WAL file (restore_command = '... pg wal-fetch %f %p')
#[derive(Args, Debug)]
#[command(
    long_about = "Fetch an archived WAL file for PostgreSQL's restore_command. Exits with \
status 1 without a message when the file is not archived (PostgreSQL asks for files that \
do not exist as part of normal recovery)."
)]
pub struct WalFetchArgs {
    /// WAL file name (%f)
    pub name: String,
    /// Where to write it (%p)
    pub path: PathBuf,
}

/// Check the WAL archive for gaps and report the recoverable window
#[derive(Args, Debug)]
pub struct WalVerifyArgs {
    /// WAL segment size in MiB (initdb --wal-segsize)
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub segment_size: u64,
}

/// Delete archived WAL that no base backup needs any more
#[derive(Args, Debug)]
#[command(
    long_about = "Delete archived WAL segments older than the start of the oldest base backup \
in the repository. Run it after `bunker forget` has removed old base backups; timeline \
history files are always kept."
)]
pub struct WalPruneArgs {
    /// Only list what would be deleted
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// WAL segment size in MiB (initdb --wal-segsize)
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub segment_size: u64,
}

fn file_name(p: &Path) -> Result<String> {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no file name", p.display()))
}

pub fn push(g: &GlobalOpts, args: WalPushArgs) -> Result<Status> {
    let started = Instant::now();
    let name = file_name(&args.path)?;
    let data =
        std::fs::read(&args.path).with_context(|| format!("reading {}", args.path.display()))?;
    let r = repo::open(g)?;
    let outcome =
        wal_archive::push(&r, &name, &data).with_context(|| format!("wal-push {name}"))?;
    let secs = started.elapsed().as_secs_f64();
    match outcome {
        wal_archive::PushOutcome::Stored { stored_bytes } => tracing::info!(
            "archived {name}: {} -> {} in {secs:.3}s",
            output::bytes(data.len() as u64),
            output::bytes(stored_bytes)
        ),
        wal_archive::PushOutcome::AlreadyArchived => {
            tracing::info!("{name} was already archived with identical content")
        }
    }
    if g.json {
        output::json_line(&serde_json::json!({
            "name": name,
            "bytes": data.len(),
            "already_archived": outcome == wal_archive::PushOutcome::AlreadyArchived,
            "seconds": secs,
        }))?;
    }
    Ok(Status::Success)
}

pub fn fetch(g: &GlobalOpts, args: WalFetchArgs) -> Result<Status> {
    let r = repo::open(g)?;
    let Some(data) = wal_archive::fetch(&r, &args.name)? else {
        // PostgreSQL probes for files that do not exist: fail quietly.
        tracing::info!("{} is not archived", args.name);
        std::process::exit(1);
    };
    let tmp = args
        .path
        .with_file_name(format!("{}.bunker-tmp", file_name(&args.path)?));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&data)
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, &args.path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), args.path.display()))?;
    Ok(Status::Success)
}

pub fn verify(g: &GlobalOpts, args: WalVerifyArgs) -> Result<Status> {
    let r = repo::open(g)?;
    let backups = base::list_base_backups(&r)?;
    let report = pgverify::verify(&r, &backups, args.segment_size * 1024 * 1024)?;
    if g.json {
        output::json_line(&report)?;
    } else {
        println!(
            "timeline {}, newest segment {}",
            report.timeline,
            report.newest_segment.as_deref().unwrap_or("(none)")
        );
        for b in &report.backups {
            let state = if b.complete {
                "complete".to_string()
            } else if b.restorable {
                format!(
                    "restorable up to {}, then gaps",
                    b.reachable_lsn.as_deref().unwrap_or("?")
                )
            } else {
                "NOT restorable".to_string()
            };
            println!(
                "base backup {} (ended {}, WAL from {}): {state}",
                b.snapshot, b.end_time, b.start_wal
            );
            for (a, z) in &b.missing {
                if a == z {
                    println!("  missing {a}");
                } else {
                    println!("  missing {a} .. {z}");
                }
            }
        }
        match (&report.window_start, &report.window_end_lsn) {
            (Some(s), Some(e)) => println!("recoverable window: from {s} to WAL position {e}"),
            _ => println!("recoverable window: none (no base backup with a gap-free archive)"),
        }
    }
    if report.ok {
        Ok(Status::Success)
    } else if report.backups.is_empty() {
        bail!("no base backups in the repository (run `bunker pg backup`)")
    } else {
        bail!("the WAL archive has gaps (see above)")
    }
}

pub fn prune(g: &GlobalOpts, args: WalPruneArgs) -> Result<Status> {
    let r = repo::open(g)?;
    let _lock = repo::lock(&r, false)?;
    let backups = base::list_base_backups(&r)?;
    let size = if args.segment_size == 16 {
        DEFAULT_SEGMENT_SIZE
    } else {
        args.segment_size * 1024 * 1024
    };
    let names = pgverify::unneeded_wal(&r, &backups, size)?;
    for n in &names {
        if !args.dry_run {
            wal_archive::remove(&r, n)?;
        }
        if !g.quiet && !g.json {
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
    if g.json {
        output::json_line(&serde_json::json!({ "removed": names, "dry_run": args.dry_run }))?;
    }
    Ok(Status::Success)
}
