//! `bunker forget`: remove snapshots according to keep rules (restic's rules).

use anyhow::{bail, Context, Result};
use bunker_repo::forget::{self, ForgetGroup, ForgetOptions};
use bunker_repo::pg::retention::{self, PitrOptions, PitrPlan};
use bunker_repo::retention::{GroupBy, KeepDuration, KeepPolicy};
use bunker_repo::snapshots::SnapshotFilter;
use clap::Args;

use super::config::PolicyArgs;
use super::prune::{self as prune_cmd, PruneFlags};
use super::FilterArgs;
use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::output::{self, Table};
use crate::repo;
use bunker_engine::retention::{item_forget, ItemForget};

const LONG_ABOUT: &str = "\
Remove snapshots that no keep rule selects, exactly as `restic forget` (0.14) decides: \
snapshots are grouped (--group-by, default host,paths), and in each group a snapshot is kept \
when any rule keeps it: the newest N (--keep-last), the newest of each of the last N hours, \
days, ISO weeks, months or years (--keep-hourly ... --keep-yearly; -1 = unlimited), those \
within a duration of the newest snapshot (--keep-within 1y2m3d4h, and --keep-within-daily \
etc. for the newest per period within it), and those carrying tags (--keep-tag a,b). \
Without any rule nothing is removed.

--host, --tag and --path restrict which snapshots are considered. With --config and --item \
the rules come from that item's retention in the policy, and only that item's snapshots \
(tag bunker:item=NAME) are considered.

For an item of kind postgres, mode physical, retention understands point-in-time recovery: \
besides what the rules keep, the newest base backup that finished before now minus the item's \
`pitr` span and every newer one are kept, and after the forgotten snapshots are removed the \
archived WAL no kept base backup needs is deleted (each kept backup keeps its start..stop \
WAL; everything from the window's first backup on stays). --dry-run lists what would go; \
--json prints {\"groups\":[...],\"removed\":[...],\"plan\":{...}}.

The decision is complete before anything is deleted. Only snapshot files are removed; \
use --prune (or `bunker prune`) to free the data. An exclusive lock is held (none for \
--dry-run). --json prints restic's forget JSON: an array of groups with keep, remove and \
reasons.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker forget --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --dry-run
    bunker forget --keep-last 3 --group-by host --host db1 --prune
    bunker forget --keep-within 30d --keep-tag release --json
    bunker forget --config bunker.yaml --item webapp --dry-run";

/// Remove snapshots according to keep rules
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct ForgetArgs {
    /// Keep the last N snapshots
    #[arg(short = 'l', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_last: Option<i32>,
    /// Keep the last N hourly snapshots
    #[arg(short = 'H', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_hourly: Option<i32>,
    /// Keep the last N daily snapshots
    #[arg(short = 'd', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_daily: Option<i32>,
    /// Keep the last N weekly snapshots
    #[arg(short = 'w', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_weekly: Option<i32>,
    /// Keep the last N monthly snapshots
    #[arg(short = 'm', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_monthly: Option<i32>,
    /// Keep the last N yearly snapshots
    #[arg(short = 'y', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_yearly: Option<i32>,
    /// Keep snapshots newer than DURATION before the newest (e.g. 1y5m7d2h)
    #[arg(long, value_name = "DURATION", value_parser = parse_within)]
    pub keep_within: Option<KeepDuration>,
    /// Keep hourly snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION", value_parser = parse_within)]
    pub keep_within_hourly: Option<KeepDuration>,
    /// Keep daily snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION", value_parser = parse_within)]
    pub keep_within_daily: Option<KeepDuration>,
    /// Keep weekly snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION", value_parser = parse_within)]
    pub keep_within_weekly: Option<KeepDuration>,
    /// Keep monthly snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION", value_parser = parse_within)]
    pub keep_within_monthly: Option<KeepDuration>,
    /// Keep yearly snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION", value_parser = parse_within)]
    pub keep_within_yearly: Option<KeepDuration>,
    /// Keep snapshots with all of these tags (repeatable; `a,b` = both)
    #[arg(long = "keep-tag", value_name = "TAG[,TAG]")]
    pub keep_tags: Vec<String>,
    /// Group snapshots by host, paths and/or tags (comma-separated; "" = one group)
    #[arg(short = 'g', long, value_name = "GROUP", default_value = "host,paths")]
    pub group_by: String,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Take the keep rules from this policy item (needs --config or BUNKER_CONFIG)
    #[arg(long, value_name = "NAME")]
    pub item: Option<String>,
    /// Only show what would be removed
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Run prune afterwards to free the data of removed snapshots
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub prune_flags: PruneFlags,
}

fn parse_within(s: &str) -> Result<KeepDuration, String> {
    KeepDuration::parse_restic(s).map_err(|e| e.to_string())
}

impl ForgetArgs {
    fn has_rules(&self) -> bool {
        [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .any(Option::is_some)
            || [
                self.keep_within,
                self.keep_within_hourly,
                self.keep_within_daily,
                self.keep_within_weekly,
                self.keep_within_monthly,
                self.keep_within_yearly,
            ]
            .iter()
            .any(Option::is_some)
            || !self.keep_tags.is_empty()
    }

    fn cli_policy(&self) -> KeepPolicy {
        KeepPolicy {
            last: self.keep_last.unwrap_or(0),
            hourly: self.keep_hourly.unwrap_or(0),
            daily: self.keep_daily.unwrap_or(0),
            weekly: self.keep_weekly.unwrap_or(0),
            monthly: self.keep_monthly.unwrap_or(0),
            yearly: self.keep_yearly.unwrap_or(0),
            within: self.keep_within,
            within_hourly: self.keep_within_hourly,
            within_daily: self.keep_within_daily,
            within_weekly: self.keep_within_weekly,
            within_monthly: self.keep_within_monthly,
            within_yearly: self.keep_within_yearly,
            tags: SnapshotFilter::tag_groups(&self.keep_tags),
        }
    }
}

/// Print the decisions as restic does (one block per group).
pub fn print_groups(groups: &[ForgetGroup], dry_run: bool) {
    for g in groups {
        let mut what = Vec::new();
        if !g.host.is_empty() {
            what.push(format!("host [{}]", g.host));
        }
        if let Some(t) = g.tags.as_ref().filter(|t| !t.is_empty()) {
            what.push(format!("tags [{}]", t.join(", ")));
        }
        if let Some(p) = g.paths.as_ref().filter(|p| !p.is_empty()) {
            what.push(format!("paths [{}]", p.join(", ")));
        }
        if !what.is_empty() {
            println!("snapshots for ({}):", what.join(", "));
        }
        println!("keep {} snapshots:", g.keep.len());
        let mut t = Table::new(&["ID", "Time", "Host", "Tags", "Reasons", "Paths"]);
        for r in &g.reasons {
            let s = &r.snapshot;
            t.row(vec![
                vec![s.short_id.clone()],
                vec![output::local_time(&s.snapshot.time)],
                vec![s.snapshot.hostname.clone()],
                s.snapshot.tags.clone(),
                r.matches.clone(),
                s.snapshot.paths.clone(),
            ]);
        }
        print!("{}", t.render());
        if let Some(remove) = &g.remove {
            let verb = if dry_run { "would remove" } else { "remove" };
            println!("{verb} {} snapshots:", remove.len());
            let mut t = Table::new(&["ID", "Time", "Host", "Tags", "Paths"]);
            for s in remove {
                t.row(vec![
                    vec![s.short_id.clone()],
                    vec![output::local_time(&s.snapshot.time)],
                    vec![s.snapshot.hostname.clone()],
                    s.snapshot.tags.clone(),
                    s.snapshot.paths.clone(),
                ]);
            }
            print!("{}", t.render());
        }
        println!();
    }
}

pub fn run(g: &GlobalOpts, args: ForgetArgs) -> Result<Status> {
    let group_by = GroupBy::parse(&args.group_by).context("--group-by")?;
    let mut filter = args.filter.filter();
    let policy = match &args.item {
        Some(name) => {
            if args.has_rules() {
                bail!("--item takes the keep rules from the policy; do not combine it with --keep-* options");
            }
            let p = args.policy.load()?;
            match item_forget(&p, name, filter, group_by, args.dry_run)? {
                ItemForget::Pitr(opts) => return run_pitr(g, &args, &opts),
                ItemForget::Rules { policy, filter: f } => {
                    filter = f;
                    policy
                }
            }
        }
        None => args.cli_policy(),
    };
    if policy.is_empty() && !g.json {
        eprintln!("no policy was specified, no snapshots will be removed");
    }
    let r = repo::open(g)?;
    let _lock = (!args.dry_run).then(|| repo::lock(&r, true)).transpose()?;
    let opts = ForgetOptions {
        policy,
        group_by,
        filter,
        dry_run: args.dry_run,
        now: None,
    };
    let report = forget::forget_unlocked(&r, &opts).context("forget failed")?;
    crate::audit_trail::snapshots(&report.removed);
    if g.json {
        output::json_line(&report.groups)?;
    } else if !g.quiet {
        print_groups(&report.groups, args.dry_run);
        if !args.dry_run && !report.removed.is_empty() {
            println!("removed {} snapshots", report.removed.len());
        }
    }
    if args.prune {
        prune_cmd::run_locked(g, &r, &args.prune_flags, args.dry_run)?;
    }
    Ok(Status::Success)
}

/// Retention of a postgres physical item: forget base backups (keeping what
/// the `pitr` window needs), then delete the WAL no kept base backup needs.
fn run_pitr(g: &GlobalOpts, args: &ForgetArgs, opts: &PitrOptions) -> Result<Status> {
    let r = repo::open(g)?;
    let _lock = (!args.dry_run).then(|| repo::lock(&r, true)).transpose()?;
    let report = retention::apply(&r, opts).context("forget failed")?;
    crate::audit_trail::snapshots(&report.removed);
    if g.json {
        output::json_line(&report)?;
    } else if !g.quiet {
        print_groups(&report.groups, args.dry_run);
        print_pitr_plan(&report.plan, args.dry_run);
        if !args.dry_run && !report.removed.is_empty() {
            println!("removed {} snapshots", report.removed.len());
        }
    }
    if args.prune {
        prune_cmd::run_locked(g, &r, &args.prune_flags, args.dry_run)?;
    }
    Ok(Status::Success)
}

/// The WAL and window part of a PITR retention decision.
pub fn print_pitr_plan(plan: &PitrPlan, dry_run: bool) {
    let verb = if dry_run { "would delete" } else { "deleted" };
    for n in &plan.wal_delete {
        println!("{verb} WAL {n}");
    }
    println!(
        "WAL: {} file(s) kept, {} {verb}",
        plan.wal_keep.len(),
        plan.wal_delete.len()
    );
    match (&plan.window_start, &plan.window_required) {
        (Some(s), Some(req)) if plan.window_covers => println!(
            "recoverable window: from {} (needed: from {}) to the newest archived WAL",
            output::local_time(s),
            output::local_time(req)
        ),
        (Some(s), Some(req)) => println!(
            "recoverable window: from {} only (pitr asks for {}): no older base backup exists yet",
            output::local_time(s),
            output::local_time(req)
        ),
        (Some(s), None) => println!(
            "recoverable window: from {} to the newest archived WAL",
            output::local_time(s)
        ),
        (None, _) => println!("recoverable window: none (no base backup)"),
    }
}
