//! `pg wal-push`, `pg wal-fetch`, `pg wal-verify`, `pg wal-prune`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bunker_engine::pg::wal::{self, WalVerifyOutcome, WalVerifyRequest};
use bunker_repo::pg::wal_archive;
use clap::Args;

use crate::cli::GlobalOpts;
use crate::commands::config::PolicyArgs;
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
#[command(long_about = PUSH_ABOUT, after_long_help = super::help::PUSH_EXAMPLES)]
pub struct WalPushArgs {
    /// Path of the WAL file (%p, relative to the data directory)
    pub path: PathBuf,
}

/// Fetch an archived WAL file (restore_command = '... pg wal-fetch %f %p')
#[derive(Args, Debug)]
#[command(
    long_about = "Fetch an archived WAL file for PostgreSQL's restore_command. Exits with \
status 1 without a message when the file is not archived (PostgreSQL asks for files that \
do not exist as part of normal recovery).",
    after_long_help = super::help::FETCH_EXAMPLES
)]
pub struct WalFetchArgs {
    /// WAL file name (%f)
    pub name: String,
    /// Where to write it (%p)
    pub path: PathBuf,
}

/// Check the WAL archive for gaps and report the recoverable window
#[derive(Args, Debug)]
#[command(
    long_about = "Check, for every base backup, that every archived WAL segment from its start \
to the newest archived segment is present, and print the recoverable window. With a PITR span \
(--pitr, or the `pitr` of a policy item given with --item), base backups that finished before \
the window's first base backup need only the WAL that makes them consistent (retention deleted \
the rest on purpose), and the report says whether the window reaches back to now minus the span. \
--read-data also downloads every archived WAL file, decrypts it and compares it with its content \
hash, so a damaged file is found before a recovery needs it.",
    after_long_help = super::help::VERIFY_EXAMPLES
)]
pub struct WalVerifyArgs {
    /// WAL segment size in MiB (initdb --wal-segsize)
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub segment_size: u64,
    /// Point-in-time recovery span to check (e.g. 7d)
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub pitr: Option<std::time::Duration>,
    /// Take --pitr from this policy item (with --config); only its base backups are checked
    #[arg(long, value_name = "NAME", conflicts_with = "pitr")]
    pub item: Option<String>,
    /// Also read every archived WAL file and verify its content (decrypt + hash)
    #[arg(long)]
    pub read_data: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

fn parse_span(s: &str) -> Result<std::time::Duration, String> {
    bunker_policy::parse_duration(s)
}

/// Delete archived WAL that no base backup needs any more
#[derive(Args, Debug)]
#[command(
    long_about = "Delete archived WAL segments older than the start of the oldest base backup \
in the repository. Timeline history files are always kept. `bunker forget --item NAME` on a \
postgres physical item does this (and more: PITR-aware retention) by itself.",
    after_long_help = super::help::PRUNE_EXAMPLES
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
    let mut req = WalVerifyRequest {
        segment_size: args.segment_size * 1024 * 1024,
        pitr: args.pitr,
        read_data: args.read_data,
        ..Default::default()
    };
    if let Some(name) = &args.item {
        req = req.for_item(&args.policy.load()?, name)?;
    }
    let r = repo::open(g)?;
    let out = wal::verify(&r, &req)?;
    let (report, read) = (&out.report, &out.read);
    if g.json {
        let mut v = serde_json::to_value(report)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "window_required".into(),
                serde_json::json!(out.required.map(|r| r.to_rfc3339())),
            );
            obj.insert("window_covers".into(), serde_json::json!(out.covers));
            if let Some(read) = read {
                obj.insert("read_data".into(), serde_json::to_value(read)?);
            }
        }
        output::json_line(&v)?;
    } else {
        print_report(&out);
    }
    if let Some(read) = read {
        if !g.json {
            println!(
                "read {} archived WAL files ({}): {} damaged",
                read.read,
                output::bytes(read.bytes),
                read.damaged.len()
            );
            for (name, why) in &read.damaged {
                println!("  damaged {name}: {why}");
            }
        }
        if !read.damaged.is_empty() {
            bail!(
                "{} archived WAL file(s) are damaged (see above): a recovery through them would fail; take a new base backup",
                read.damaged.len()
            );
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

/// The text report of `wal-verify`: per base backup, the window, the span.
fn print_report(out: &WalVerifyOutcome) {
    let report = &out.report;
    println!(
        "timeline {}, newest segment {}",
        report.timeline,
        report.newest_segment.as_deref().unwrap_or("(none)")
    );
    for b in &report.backups {
        let state = if b.complete {
            "complete".to_string()
        } else if b.point_only && b.restorable && b.missing.is_empty() {
            "restorable to its end (older than the PITR window)".to_string()
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
    if let (Some(req), Some(c)) = (out.required, out.covers) {
        println!(
            "PITR span: from {} needed: {}",
            output::local_time(&req.fixed_offset()),
            if c {
                "covered"
            } else {
                "NOT covered (no base backup old enough yet, or gaps)"
            }
        );
    }
}

pub fn prune(g: &GlobalOpts, args: WalPruneArgs) -> Result<Status> {
    let r = repo::open(g)?;
    let names = wal::prune(&r, Some(args.segment_size * 1024 * 1024), args.dry_run)?;
    for n in &names {
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
