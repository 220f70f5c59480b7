//! `bunker drill ITEM`: restore an item into a sandbox, prove the data and
//! measure the recovery time. The work is the engine's
//! ([`bunker_engine::drill::run_drill`]); this renders its report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bunker_engine::drill::{run_drill, DrillOptions, DrillReport, DrillStatus};
use bunker_engine::pool::RepoPool;
use bunker_policy::DrillPick;
use clap::Args;

use super::config::PolicyArgs;
use crate::cli::GlobalOpts;
use crate::events::StderrSink;
use crate::exit::Status;
use crate::output;

const LONG_ABOUT: &str = "\
Restore one item of the policy into a fresh sandbox directory and prove the data, then \
remove the sandbox (unless --keep). The drill restores from the item's first target (or its \
fallback), measures every phase, compares the total (the measured RTO) with the item's \
`rto`, and stores its report in the repository as a drill record, where the daemon finds \
the last drill of each item. docs/drills.md has the details.

Files items: every restored entry is compared with the snapshot (type, size, permissions, \
modification time, and the content of every file read back and hashed against its blobs); \
then the `checks` commands run in the restore root, with BUNKER_DRILL_DIR set to it. \
Command items: the restored stream is verified the same way; checks see BUNKER_DRILL_FILE.

SQLite items: the restored database must pass PRAGMA integrity_check, then the SQL checks.

PostgreSQL physical items: a base backup plus the archived WAL up to the chosen point (pick \
latest: the end of the archive; random: a random base backup's consistent point; \
random_in_window: a random moment of the PITR window; --time: exactly that time) on a \
temporary server with a free loopback port and its socket in the sandbox, awaited until \
recovery ended; then pg_amcheck (when installed) and the SQL checks. The recovery target \
and the point reached (the last replayed commit) are reported. Logical items: the dumps \
are loaded into a new cluster made with initdb, then the same checks. Run as root, the \
server runs as the postgres user.

A damaged or missing pack, a file that differs, a failed check or a server that does not \
come up fails the drill. Exit status: 0 when the drill passed within the RTO; 3 when it \
passed but took longer than the item's rto; 1 when it failed (the report is printed and \
stored first) or could not start.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker drill app
    bunker drill db --config /etc/bunker/bunker.yaml --json
    bunker drill db --time '2024-05-01 10:00:00+00'
    bunker drill app --snapshot 4f2a9c1e --keep
    bunker drill db --pick random_in_window";

/// Restore an item into a sandbox, verify it and measure the RTO
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct DrillArgs {
    /// The policy item
    #[arg(value_name = "ITEM")]
    pub item: String,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Restore this snapshot (id or prefix) instead of the policy's pick
    #[arg(long, value_name = "ID", conflicts_with = "time")]
    pub snapshot: Option<String>,
    /// Restore the state at this time (postgres physical: recover to exactly it)
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// Override drill.pick: latest, random or random_in_window
    #[arg(long, value_name = "PICK", value_parser = parse_pick, conflicts_with_all = ["snapshot", "time"])]
    pub pick: Option<DrillPick>,
    /// Keep the sandbox afterwards (its path is printed)
    #[arg(long)]
    pub keep: bool,
    /// Make the sandbox under DIR (overrides drill.sandbox)
    #[arg(long, value_name = "DIR")]
    pub sandbox: Option<PathBuf>,
}

fn parse_pick(s: &str) -> Result<DrillPick, String> {
    DrillPick::parse(s).ok_or_else(|| "expected latest, random or random_in_window".to_string())
}

pub fn run(g: &GlobalOpts, args: DrillArgs) -> Result<Status> {
    let policy = args.policy.load()?;
    let item = policy
        .item(&args.item)
        .with_context(|| format!("no item {:?} in the policy", args.item))?;
    let time = args
        .time
        .as_deref()
        .map(bunker_repo::pg::restore::parse_target_time)
        .transpose()?;
    let sink = StderrSink::POLICY;
    let mut pool = RepoPool::new(&policy, crate::repo::pool_options(g, false)?, &sink);
    let opts = DrillOptions {
        snapshot: args.snapshot.clone(),
        time,
        pick: args.pick,
        keep: args.keep,
        sandbox: args.sandbox.clone(),
        cancel: crate::interrupt::token(),
        bunker_exe: std::env::current_exe().ok(),
        no_record: false,
    };
    let report = run_drill(&mut pool, item, &opts, &sink)?;
    if g.json {
        output::json_line(&report)?;
    } else if !g.quiet || !report.is_ok() {
        print_text(&report);
    }
    if let Some(e) = &report.record_error {
        eprintln!("warning: the drill report could not be stored in the repository: {e}");
    }
    if report.status == DrillStatus::Failed {
        bail!(
            "drill of {} failed: {}",
            report.item,
            report.error.as_deref().unwrap_or("see the report")
        );
    }
    if report.rto_exceeded {
        eprintln!(
            "WARNING: the drill of {} took {}, more than its rto ({})",
            report.item,
            secs(report.rto_measured_seconds),
            secs(report.rto_target_seconds.unwrap_or(0) as f64)
        );
        return Ok(Status::Incomplete);
    }
    Ok(Status::Success)
}

fn secs(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        humantime::format_duration(Duration::from_secs(s as u64)).to_string()
    }
}

fn print_text(r: &DrillReport) {
    let state = match (r.status, r.rto_exceeded) {
        (DrillStatus::Failed, _) => "FAILED",
        (DrillStatus::Passed, true) => "PASSED, RTO EXCEEDED",
        (DrillStatus::Passed, false) => "PASSED",
    };
    let rto = r
        .rto_target_seconds
        .map(|t| format!(" (rto {})", secs(t as f64)))
        .unwrap_or_default();
    println!(
        "drill of {} ({}) from repository {:?}: {state} in {}{rto}",
        r.item,
        r.kind,
        r.repository,
        secs(r.rto_measured_seconds)
    );
    let snaps: Vec<String> = r
        .snapshots
        .iter()
        .map(|s| s[..8.min(s.len())].to_string())
        .collect();
    println!(
        "  restored {} ({}){}",
        if snaps.is_empty() {
            "-".to_string()
        } else {
            snaps.join(", ")
        },
        r.pick,
        r.snapshot_time
            .map(|t| format!(" of {}", output::local_time(&t)))
            .unwrap_or_default()
    );
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} {}", p.name, secs(p.seconds)))
        .collect();
    println!("  phases: {}", phases.join(", "));
    if let Some(v) = &r.verify {
        println!(
            "  verified {} files ({}), {} directories, {} other: {} mismatch(es)",
            v.files,
            output::bytes(v.bytes),
            v.dirs,
            v.other,
            v.mismatch_count
        );
        for m in &v.mismatches {
            println!("    differs: {m}");
        }
    }
    if let Some(rec) = &r.recovery {
        println!(
            "  recovery: base backup {}, target {}{}{}; reached {} (LSN {})",
            &rec.base_backup[..8.min(rec.base_backup.len())],
            rec.target,
            rec.target_time
                .as_deref()
                .map(|t| format!(" {t}"))
                .unwrap_or_default(),
            if rec.target_reached {
                ""
            } else {
                " (no later commit archived: replayed to the end)"
            },
            rec.reached_time
                .as_deref()
                .unwrap_or("no transaction replayed"),
            rec.reached_lsn.as_deref().unwrap_or("-")
        );
    }
    for c in &r.checks {
        let state = if c.ok {
            "ok  "
        } else if c.skipped {
            "skip"
        } else {
            "FAIL"
        };
        let out = c.output.lines().last().unwrap_or("");
        println!(
            "  check {state} {} ({}){}",
            c.name,
            secs(c.seconds),
            if out.is_empty() {
                String::new()
            } else {
                format!(": {out}")
            }
        );
    }
    if let Some(e) = &r.error {
        println!("  error: {e}");
    }
    if r.kept {
        println!("  sandbox kept: {}", r.sandbox);
    }
}
