//! `bunker status`: per item and target, the newest snapshot against the RPO,
//! the last failure, and the PITR window of postgres physical items. The
//! state is the engine's ([`bunker_engine::status`]); this renders it.

use anyhow::Result;
use bunker_engine::pool::RepoPool;
use bunker_engine::status::{policy_status, TargetStatus};
use chrono::{DateTime, Utc};
use clap::Args;

use super::config::PolicyArgs;
use crate::cli::GlobalOpts;
use crate::events::StderrSink;
use crate::exit::Status;
use crate::output::{self, Table};

const LONG_ABOUT: &str = "\
Show, for every item of the policy and every target repository, the newest snapshot of the \
item (tag bunker:item=NAME), its age, and whether that age is within the item's RPO (OK) or \
not (LATE; also when there is no snapshot at all). The last failure recorded by `bunker run` \
in the repository is shown with its time while it is current: once a later run succeeded \
(or a newer snapshot exists) it is no longer shown. A target whose newest snapshot left out \
files that could not be read is INCOMPLETE, and the files are named (the first 5; all with \
-v or --json, field `unreadable`). For postgres physical items the recoverable window \
(earliest and latest point) is shown too, with warnings when the archive has gaps, the window \
is shorter than the item's pitr, or the server's newest archived WAL segment is older than the \
rpo (asked from pg_stat_archiver); a window still growing into the pitr span after the \
item's first base backup is a NOTE, not a warning. Nothing is written. The exit status means \
\"something needs a person\": 3 when any item is LATE or INCOMPLETE, shows a current failure \
(even within its RPO), has such a warning, or a repository cannot be read; 0 otherwise.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker status
    bunker status --config /etc/bunker/bunker.yaml --json";

/// Show the state of every policy item
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct StatusArgs {
    /// The policy file (overrides --config)
    #[arg(value_name = "POLICY")]
    pub file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

pub fn run(g: &GlobalOpts, mut args: StatusArgs) -> Result<Status> {
    if args.file.is_some() {
        args.policy.config = args.file.take();
    }
    let policy = args.policy.load()?;
    let now = Utc::now();
    let sink = StderrSink::POLICY;
    let mut pool = RepoPool::new(&policy, crate::repo::pool_options(g, false)?, &sink);
    let rows = policy_status(&mut pool, |_| true, now);
    if g.json {
        output::json_line(&rows)?;
    } else {
        render(&rows, g.verbose > 0);
    }
    let bad = rows.iter().any(|r| r.needs_attention());
    Ok(if bad {
        Status::Incomplete
    } else {
        Status::Success
    })
}

/// The status table, the INCOMPLETE lines and the PITR windows, notes and
/// warnings (`bunker status`, and `bunker run --dry-run` after its table).
pub fn render(rows: &[TargetStatus], verbose: bool) {
    let mut t = Table::new(&[
        "Item",
        "Target",
        "State",
        "Newest",
        "Snapshot",
        "Age",
        "RPO",
        "Last failure",
    ]);
    for r in rows {
        let age = r
            .age_seconds
            .map(|s| {
                humantime::format_duration(std::time::Duration::from_secs(s.max(0) as u64))
                    .to_string()
            })
            .unwrap_or_else(|| "-".into());
        let rpo = r
            .rpo_seconds
            .map(|s| humantime::format_duration(std::time::Duration::from_secs(s)).to_string())
            .unwrap_or_else(|| "-".into());
        let failure = match (&r.last_failure, &r.error) {
            (_, Some(e)) => vec![format!("cannot read repository: {e}")],
            (Some(f), None) => vec![format!("{}: {}", output::local_time(&f.time), f.error)],
            (None, None) => vec!["-".into()],
        };
        t.row(vec![
            vec![r.item.clone()],
            vec![r.target.clone()],
            vec![r.state.as_str().to_string()],
            vec![r
                .newest
                .as_ref()
                .map(output::local_time)
                .unwrap_or_else(|| "never".into())],
            vec![r.snapshot.clone().unwrap_or_else(|| "-".into())],
            vec![age],
            vec![rpo],
            failure,
        ]);
    }
    print!("{}", t.render());
    for r in rows.iter().filter(|r| !r.unreadable.is_empty()) {
        let paths: Vec<&str> = r.unreadable.iter().map(|u| u.path.as_str()).collect();
        println!(
            "INCOMPLETE: {} ({}): snapshot {} left out {} file(s) that could not be read: {}",
            r.item,
            r.target,
            r.snapshot.as_deref().unwrap_or("-"),
            r.unreadable.len(),
            output::first_n(&paths, if verbose { usize::MAX } else { 5 })
        );
    }
    for r in rows {
        let Some(p) = &r.pitr else { continue };
        let start = p
            .window_start
            .as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|s| output::local_time(&s));
        match (start, &p.window_end_lsn) {
            (Some(s), Some(e)) => println!(
                "{} ({}): recoverable from {s} to WAL position {e} (newest segment {}{})",
                r.item,
                r.target,
                p.newest_segment.as_deref().unwrap_or("-"),
                p.archive_age_seconds
                    .map(|a| format!(
                        ", archived {} ago",
                        humantime::format_duration(std::time::Duration::from_secs(
                            a.unsigned_abs()
                        ))
                    ))
                    .unwrap_or_default()
            ),
            _ => println!("{} ({}): no recoverable window", r.item, r.target),
        }
        for n in &p.notes {
            println!("NOTE: {} ({}): {n}", r.item, r.target);
        }
        for w in &p.warnings {
            println!("WARNING: {} ({}): {w}", r.item, r.target);
        }
    }
}
