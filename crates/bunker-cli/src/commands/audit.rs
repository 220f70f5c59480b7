//! `bunker audit log | verify`: the repository's hash-chained audit log
//! ([`bunker_repo::audit`]).

use anyhow::{bail, Context, Result};
use bunker_repo::audit;
use chrono::{DateTime, FixedOffset};
use clap::{Args, Subcommand};

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::output::{self, Table};
use crate::repo;

const LONG_ABOUT: &str = "\
The audit log of a repository: every operation that changes it or reads data out of it \
(backup, run, forget, prune, copy, tag, rewrite, recover, key add/remove/passwd, restore, dump, \
mount, pg backup/dump/restore/restore-dump, runbook drill and execute) appends one record saying who \
(user, host, process id), what, when, which snapshots and with what result. Dry runs are not \
recorded. Records live under bunker/audit/ in the repository (restic ignores them), encrypted \
with the repository key, one object each, written once and never modified; each names the \
hash of the one before, so they form a chain.

`audit log` lists the records, oldest first (--since T: only those at or after T, a time \
such as '2024-05-01 10:00' or a duration back from now such as 7d). `audit verify` follows \
the chain and names every record that was modified, removed, renamed or reordered, and any \
foreign object; it exits 1 when it finds one. It prints the head of the chain (the newest \
record's number and hash): keep it elsewhere to notice later removal of the newest records, \
which a chain alone cannot show.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker audit log
    bunker audit log --since 7d --json
    bunker audit log --since '2024-05-01 00:00'
    bunker audit verify";

/// Show or verify the repository's audit log
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: AuditAction,
}

/// What to do with the audit log.
#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// List the audit records, oldest first
    #[command(after_long_help = EXAMPLES)]
    Log {
        /// Only records at or after T (a time, or a duration back from now: 7d, 12h)
        #[arg(long, value_name = "T", value_parser = parse_since)]
        since: Option<DateTime<FixedOffset>>,
    },
    /// Check the hash chain; exit 1 when a record was modified, removed or reordered
    #[command(after_long_help = EXAMPLES)]
    Verify,
}

fn parse_since(s: &str) -> Result<DateTime<FixedOffset>, String> {
    if let Ok(d) = humantime::parse_duration(s.trim()) {
        let d = chrono::Duration::from_std(d).map_err(|e| e.to_string())?;
        return Ok((chrono::Local::now() - d).fixed_offset());
    }
    bunker_repo::pg::restore::parse_target_time(s).map_err(|e| e.to_string())
}

pub fn run(g: &GlobalOpts, args: AuditArgs) -> Result<Status> {
    let r = repo::open(g)?;
    match args.action {
        AuditAction::Log { since } => {
            let mut records = audit::list(&r).context("reading the audit log")?;
            if let Some(t) = since {
                records.retain(|l| l.record.time >= t);
            }
            if g.json {
                output::json_line(&records)?;
                return Ok(Status::Success);
            }
            let mut t = Table::new(&["Seq", "Time", "Who", "Operation", "Result", "Snapshots"]);
            for l in &records {
                let rec = &l.record;
                let mut result = vec![format!("{:?}", rec.outcome).to_lowercase()];
                result.extend(rec.error.iter().cloned());
                t.row(vec![
                    vec![rec.seq.to_string()],
                    vec![output::local_time(&rec.time)],
                    vec![format!("{}@{} (pid {})", rec.user, rec.host, rec.pid)],
                    vec![rec.operation.clone()],
                    result,
                    rec.snapshots
                        .iter()
                        .map(|s| s.get(..8).unwrap_or(s).to_string())
                        .collect(),
                ]);
            }
            print!("{}", t.render());
            Ok(Status::Success)
        }
        AuditAction::Verify => {
            let v = audit::verify(&r).context("reading the audit log")?;
            if g.json {
                output::json_line(&v)?;
            } else {
                for p in &v.problems {
                    println!("{}", p.message);
                }
                match &v.head {
                    Some((seq, hash)) => {
                        println!("{} record(s); head: record {seq}, hash {hash}", v.records)
                    }
                    None => println!("no audit records"),
                }
            }
            if !v.is_ok() {
                bail!(
                    "the audit log was tampered with: {} problem(s), the first: {}",
                    v.problems.len(),
                    v.problems[0].message
                );
            }
            Ok(Status::Success)
        }
    }
}
