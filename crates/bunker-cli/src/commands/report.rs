//! `bunker report compliance`: the 3-2-1 report of the policy
//! ([`bunker_engine::compliance`]); this renders it.

use anyhow::{bail, Result};
use bunker_engine::compliance;
use bunker_engine::pool::RepoPool;
use chrono::Utc;
use clap::{Args, Subcommand};

use super::config::PolicyArgs;
use crate::cli::GlobalOpts;
use crate::events::StderrSink;
use crate::exit::Status;
use crate::output::{self, Table};

const LONG_ABOUT: &str = "\
Reports on the policy's backups. `report compliance` checks every item against the 3-2-1 \
rule: at least 3 copies (the source counts as one; each repository holding a snapshot of \
the item within its RPO is another, the item's targets and every repository of role \
offsite), on at least 2 distinct media (a local disk is a host and a file system device; \
an object store is its endpoint, an SFTP server its host), at least one copy offsite \
(role: offsite), and the last restore drill, when one was recorded, passed within its RTO. \
It shows too whether a copy is immutable (none for local disks and SFTP, unknown for object \
stores: object lock is not detected yet), when a repository was last checked \
(`bunker check` records each successful check) and the last drill.

The report is stored in every reachable repository of the policy as a compliance record. \
The exit status is 3 when an item of priority critical is not compliant, else 0.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker report compliance
    bunker report compliance --config /etc/bunker/bunker.yaml --json";

/// Reports on the policy's backups
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub what: ReportKind,
}

/// Which report.
#[derive(Subcommand, Debug)]
pub enum ReportKind {
    /// The 3-2-1 compliance of every item; exit 3 when a critical item is not compliant
    #[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
    Compliance {
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

pub fn run(g: &GlobalOpts, args: ReportArgs) -> Result<Status> {
    let ReportKind::Compliance { policy } = args.what;
    let policy = policy.load()?;
    let sink = StderrSink::POLICY;
    let mut pool = RepoPool::new(&policy, crate::repo::pool_options(g, false)?, &sink);
    let report = compliance::evaluate(&mut pool, Utc::now());
    for (name, why) in compliance::save(&mut pool, &report) {
        tracing::warn!("the report could not be stored in {name}: {why}");
    }
    if g.json {
        output::json_line(&report)?;
    } else {
        let mut t = Table::new(&[
            "Item",
            "Priority",
            "Copies",
            "Media",
            "Offsite",
            "Immutable",
            "Checked",
            "Drill",
            "Compliant",
        ]);
        for i in &report.items {
            let drill = match &i.last_drill {
                None => "never".to_string(),
                Some(d) => format!(
                    "{} {}{}",
                    output::local_time(&d.time),
                    if d.ok { "ok" } else { "FAILED" },
                    match (d.rto_seconds, d.rto_target_seconds) {
                        (Some(m), Some(t)) => format!(" ({m:.0}s / RTO {t:.0}s)"),
                        (Some(m), None) => format!(" ({m:.0}s)"),
                        _ => String::new(),
                    }
                ),
            };
            t.row(vec![
                vec![i.item.clone()],
                vec![i.priority.to_string()],
                vec![i.copies.to_string()],
                vec![i.media.to_string()],
                vec![if i.offsite { "yes" } else { "no" }.into()],
                vec![i.immutable.to_string()],
                vec![i
                    .last_check
                    .as_ref()
                    .map(output::local_time)
                    .unwrap_or_else(|| "never".into())],
                vec![drill],
                vec![if i.compliant { "yes" } else { "NO" }.into()],
            ]);
        }
        print!("{}", t.render());
        for i in report.items.iter().filter(|i| !i.compliant) {
            for p in &i.problems {
                println!("{}: {p}", i.item);
            }
        }
    }
    let critical = report.critical_failures();
    if !critical.is_empty() {
        if !g.json {
            let names: Vec<&str> = critical.iter().map(|i| i.item.as_str()).collect();
            eprintln!(
                "bunker: critical item(s) not compliant with 3-2-1: {}",
                names.join(", ")
            );
        }
        return Ok(Status::Incomplete);
    }
    if report.items.is_empty() {
        bail!("the policy has no items");
    }
    Ok(Status::Success)
}
