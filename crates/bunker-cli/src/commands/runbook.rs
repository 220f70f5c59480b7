//! `bunker runbook list | plan | drill | execute`: disaster-recovery
//! runbooks of the policy ([`bunker_engine::runbook`]); this renders.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bunker_engine::pool::RepoPool;
use bunker_engine::runbook::{self, Mode, RunOptions, RunbookReport};
use chrono::Utc;
use clap::{Args, Subcommand};

use super::config::PolicyArgs;
use crate::cli::GlobalOpts;
use crate::events::StderrSink;
use crate::exit::Status;
use crate::output::{self, Table};

const LONG_ABOUT: &str = "\
Disaster-recovery runbooks: named scenarios under `runbooks:` in the policy (or in a file it \
names), each with an rto, an rpo and ordered steps: restore (an item's snapshot, by id or the \
newest at or before a time, into a directory), pg_restore (a postgres physical item to the end \
of its WAL, a time, a transaction id or a restore point, into a data directory), command, \
wait_for (a TCP port, an HTTP URL or an SQL query, with a timeout), confirm (a person says yes) \
and notify (logged; see docs/runbooks.md).

`list` shows them. `plan NAME` shows the steps with the snapshots and WAL they would use now, \
the RPO achievable now (the age of the oldest data restored) and the RTO expected from the last \
successful drill. Nothing is changed.

`drill NAME` runs every step against a sandbox: restores go to fresh directories below a \
temporary directory (--sandbox-dir), PostgreSQL starts there on a free loopback port with its \
socket in the sandbox and recovery is awaited, commands run with BUNKER_RUNBOOK_MODE=drill, \
BUNKER_RUNBOOK_SANDBOX, BUNKER_RUNBOOK_STEP<N>_DIR and PGHOST/PGPORT of the sandbox server, and \
confirmations pass. Nothing is touched in place. Each step is timed; the total is the measured \
RTO, checked against the runbook's rto, and the age of the restored data against its rpo. The \
report is stored in the repositories used. Exit 1 when a step fails or an objective is missed.

`execute NAME` does it for real. Before each restore, pg_restore and command step, and at \
each confirm step, it asks on the terminal; --yes answers yes to all, and without --yes and \
without a terminal it refuses to start. An in-place restore first moves what it replaces to a \
safety copy beside it (.NAME.bunker-safety-PID); when a later step fails the restored data is \
removed and the safety copies are put back (rollback), and they are removed only when every \
step succeeded. Every step is recorded in the audit log. Exit 1 when a step fails.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker runbook list --config /etc/bunker/bunker.yaml
    bunker runbook plan site-lost
    bunker runbook drill site-lost --json
    bunker runbook drill site-lost --keep --sandbox-dir /srv/drills
    bunker runbook execute site-lost
    bunker runbook execute site-lost --yes";

/// Plan, drill or execute disaster-recovery runbooks
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct RunbookArgs {
    #[command(subcommand)]
    pub action: RunbookAction,
}

/// What to do.
#[derive(Subcommand, Debug)]
pub enum RunbookAction {
    /// List the runbooks of the policy
    #[command(after_long_help = EXAMPLES)]
    List {
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Show what a runbook would do now, with the snapshots, WAL, RPO and expected RTO
    #[command(after_long_help = EXAMPLES)]
    Plan {
        /// The runbook
        name: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Run a runbook against sandboxes and measure its RTO
    #[command(after_long_help = EXAMPLES)]
    Drill {
        /// The runbook
        name: String,
        /// Keep the sandbox afterwards (its path is printed)
        #[arg(long)]
        keep: bool,
        /// Make the sandbox below DIR (default: the temporary directory)
        #[arg(long, value_name = "DIR")]
        sandbox_dir: Option<PathBuf>,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Run a runbook for real, with safety copies and rollback
    #[command(after_long_help = EXAMPLES)]
    Execute {
        /// The runbook
        name: String,
        /// Answer yes to every confirmation
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

fn ask(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

pub fn run(g: &GlobalOpts, args: RunbookArgs) -> Result<Status> {
    let policy = match &args.action {
        RunbookAction::List { policy }
        | RunbookAction::Plan { policy, .. }
        | RunbookAction::Drill { policy, .. }
        | RunbookAction::Execute { policy, .. } => policy.load()?,
    };
    let sink = StderrSink::POLICY;
    let mut pool = RepoPool::new(&policy, crate::repo::pool_options(g, false)?, &sink);
    let (name, mode, yes, keep, sandbox) = match args.action {
        RunbookAction::List { .. } => return list(g, &policy),
        RunbookAction::Plan { name, .. } => return plan(g, &mut pool, &name),
        RunbookAction::Drill {
            name,
            keep,
            sandbox_dir,
            ..
        } => (name, Mode::Drill, true, keep, sandbox_dir),
        RunbookAction::Execute { name, yes, .. } => (name, Mode::Execute, yes, false, None),
    };
    let rb = runbook::find(&pool, &name)?;
    if mode == Mode::Execute && !yes && !std::io::stdin().is_terminal() {
        bail!(
            "runbook {name} asks before its restore, command and confirm steps, and standard input \
             is not a terminal: run it from a terminal, or give --yes to answer yes to every question"
        );
    }
    let quiet = g.quiet || g.json;
    let progress = |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    let opts = RunOptions {
        mode,
        yes,
        ask: &ask,
        progress: &progress,
        bunker_exe: std::env::current_exe().context("finding the bunker executable")?,
        sandbox_root: sandbox,
        keep_sandbox: keep,
        cancel: crate::interrupt::token(),
    };
    let report = runbook::run(&mut pool, rb, &opts, &sink)?;
    if g.json {
        output::json_line(&report)?;
    } else {
        print_report(&report);
    }
    if !report.ok {
        let failed = report
            .steps
            .iter()
            .find(|s| s.error.is_some())
            .map(|s| format!("{}: {}", s.name, s.error.as_deref().unwrap_or("")))
            .unwrap_or_default();
        let rb_note = if report.rolled_back.is_empty() {
            String::new()
        } else {
            format!(" (rolled back: {})", report.rolled_back.join(", "))
        };
        bail!("runbook {name} failed at step {failed}{rb_note}");
    }
    if !report.passed() {
        bail!(
            "runbook {name} finished but missed its objectives: {}",
            objectives(&report)
        );
    }
    Ok(Status::Success)
}

fn objectives(r: &RunbookReport) -> String {
    let mut v = Vec::new();
    if let Some(t) = r.rto_target_seconds {
        v.push(format!(
            "RTO {:.1}s of {t}s{}",
            r.rto_seconds,
            if r.rto_met { "" } else { " EXCEEDED" }
        ));
    }
    if let (Some(t), Some(s)) = (r.rpo_target_seconds, r.rpo_seconds) {
        v.push(format!(
            "RPO {s}s of {t}s{}",
            if r.rpo_met { "" } else { " EXCEEDED" }
        ));
    }
    v.join(", ")
}

fn print_report(r: &RunbookReport) {
    let mut t = Table::new(&["Step", "Kind", "Status", "Seconds", "Detail"]);
    for s in &r.steps {
        t.row(vec![
            vec![s.name.clone()],
            vec![s.kind.to_string()],
            vec![format!("{:?}", s.status).to_lowercase()],
            vec![format!("{:.1}", s.seconds)],
            vec![s.error.clone().unwrap_or_else(|| s.detail.clone())],
        ]);
    }
    print!("{}", t.render());
    println!(
        "{} {}: {} in {:.1}s{}",
        r.mode.as_str(),
        r.runbook,
        if r.passed() { "passed" } else { "FAILED" },
        r.rto_seconds,
        match objectives(r) {
            o if o.is_empty() => String::new(),
            o => format!(" ({o})"),
        }
    );
    if let Some(s) = &r.sandbox {
        println!("sandbox kept: {}", s.display());
    }
}

fn list(g: &GlobalOpts, policy: &bunker_policy::Policy) -> Result<Status> {
    let dur = |d: Option<std::time::Duration>| {
        d.map(|d| humantime::format_duration(d).to_string())
            .unwrap_or_else(|| "-".into())
    };
    if g.json {
        let v: Vec<serde_json::Value> = policy
            .runbooks
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "description": r.description,
                    "rto_seconds": r.rto.map(|d| d.as_secs()),
                    "rpo_seconds": r.rpo.map(|d| d.as_secs()),
                    "steps": r.steps.iter().map(|s| serde_json::json!({"name": s.name, "kind": s.action.kind()})).collect::<Vec<_>>(),
                })
            })
            .collect();
        output::json_line(&v)?;
        return Ok(Status::Success);
    }
    let mut t = Table::new(&["Runbook", "RTO", "RPO", "Steps", "Description"]);
    for r in &policy.runbooks {
        t.row(vec![
            vec![r.name.clone()],
            vec![dur(r.rto)],
            vec![dur(r.rpo)],
            vec![r
                .steps
                .iter()
                .map(|s| s.action.kind())
                .collect::<Vec<_>>()
                .join(", ")],
            vec![r.description.clone().unwrap_or_default()],
        ]);
    }
    print!("{}", t.render());
    Ok(Status::Success)
}

fn plan(g: &GlobalOpts, pool: &mut RepoPool<'_>, name: &str) -> Result<Status> {
    let rb = runbook::find(pool, name)?;
    let p = runbook::plan(pool, rb, Utc::now());
    if g.json {
        output::json_line(&p)?;
        return Ok(Status::Success);
    }
    let mut t = Table::new(&["Step", "What", "Snapshot", "Data time", "WAL"]);
    for s in &p.steps {
        let mut what = vec![s.what.clone()];
        if let Some(pr) = &s.problem {
            what.push(format!("PROBLEM: {pr}"));
        }
        t.row(vec![
            vec![s.name.clone()],
            what,
            vec![s
                .snapshot
                .as_deref()
                .map(|s| s.get(..8).unwrap_or(s).to_string())
                .unwrap_or_else(|| "-".into())],
            vec![s
                .snapshot_time
                .as_ref()
                .map(output::local_time)
                .unwrap_or_else(|| "-".into())],
            vec![s.wal.clone().unwrap_or_else(|| "-".into())],
        ]);
    }
    print!("{}", t.render());
    let secs = |s: u64| humantime::format_duration(std::time::Duration::from_secs(s)).to_string();
    match p.rpo_seconds {
        Some(s) => println!(
            "RPO achievable now: {}{}",
            secs(s.max(0) as u64),
            p.rpo_target_seconds
                .map(|t| format!(" (objective {})", secs(t)))
                .unwrap_or_default()
        ),
        None => println!("RPO achievable now: unknown (nothing to restore)"),
    }
    match (p.rto_expected_seconds, p.last_drill) {
        (Some(s), Some(t)) => println!(
            "RTO expected: {s:.1}s (the drill of {}){}",
            output::local_time(&t),
            p.rto_target_seconds
                .map(|t| format!(" (objective {})", secs(t)))
                .unwrap_or_default()
        ),
        _ => println!("RTO expected: unknown (no successful drill recorded; run `bunker runbook drill {name}`)"),
    }
    Ok(Status::Success)
}
