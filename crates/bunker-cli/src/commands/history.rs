//! `bunker history`: the daemon's run history, read from its SQLite
//! database (works whether or not the daemon runs).

use std::path::PathBuf;

use anyhow::Result;
use bunker_daemon::history::{History, Query};
use clap::Args;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::output::{self, Table};

const LONG_ABOUT: &str = "\
List the runs `bunker daemon` recorded, newest first: the job (backup:ITEM, check:REPO, \
prune:REPO, copy:FROM->TO), the repository, why it ran (schedule, never_run, start, manual, \
change), when it started, how long it took, its result (success, warning, failed, cancelled) \
and the error. The history is read from the daemon's state directory; the daemon need not \
run. --json prints one object per line with the statistics of each run.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker history
    bunker history --item db --limit 5
    bunker history --state-dir /var/lib/bunker --json";

/// Show the daemon's run history
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct HistoryArgs {
    /// Only the runs of this item
    #[arg(long, value_name = "NAME")]
    pub item: Option<String>,
    /// Only the runs of this job (e.g. check:local)
    #[arg(long, value_name = "JOB")]
    pub job: Option<String>,
    /// At most this many runs
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// The daemon's state directory (default as for `bunker daemon`)
    #[arg(long, value_name = "DIR", env = "BUNKER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

pub fn run(g: &GlobalOpts, args: HistoryArgs) -> Result<Status> {
    let dir = args
        .state_dir
        .unwrap_or_else(bunker_daemon::daemon::default_state_dir);
    let rows = History::open_read_only(&dir)?.list(&Query {
        item: args.item,
        job: args.job,
        limit: Some(args.limit),
    })?;
    if g.json {
        for r in &rows {
            output::json_line(r)?;
        }
        return Ok(Status::Success);
    }
    let mut t = Table::new(&[
        "Started", "Job", "Target", "Trigger", "Took", "Result", "Error",
    ]);
    for r in &rows {
        let took = (r.finished - r.started).to_std().unwrap_or_default();
        t.row(vec![
            vec![output::local_time(&r.started.fixed_offset())],
            vec![r.job.clone()],
            vec![r.target.clone()],
            vec![r.trigger.clone()],
            vec![output::duration(took)],
            vec![r.result.as_str().to_string()],
            vec![r.error.clone().unwrap_or_default()],
        ]);
    }
    print!("{}", t.render());
    println!("{} runs", rows.len());
    Ok(Status::Success)
}
