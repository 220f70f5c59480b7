//! One module per verb. [`Command`] is the subcommand enum; later verbs (run,
//! forget, prune, copy, config check, status, pg, daemon) are added here as
//! modules of their own.

use anyhow::Result;
use bunker_repo::snapshots::SnapshotFilter;
use clap::{Args, Subcommand};

use crate::cli::GlobalOpts;
use crate::exit::Status;

pub mod audit;
pub mod backup;
pub mod cache;
pub mod cat;
pub mod check;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod find;
pub mod generate;
pub mod init;
pub mod key;
pub mod list;
pub mod ls;
pub mod mount;
pub mod restore;
pub mod rewrite;
pub mod snapshots;
pub mod stats;
pub mod tag;
pub mod unlock;
pub mod version;

pub mod config;
pub mod daemon;
pub mod drill;
pub mod forget;
pub mod history;
pub mod mysql;
pub mod notify;
pub mod pg;
pub mod prune;
pub mod recover;
pub mod recover_time;
pub mod repair;
pub mod report;
pub mod run;
pub mod runbook;
pub mod serve;
pub mod status;

/// The verbs of `bunker`.
#[derive(Subcommand, Debug)]
pub enum Command {
    Init(init::InitArgs),
    Backup(backup::BackupArgs),
    Snapshots(snapshots::SnapshotsArgs),
    Ls(ls::LsArgs),
    Restore(restore::RestoreArgs),
    Dump(dump::DumpArgs),
    Diff(diff::DiffArgs),
    Find(find::FindArgs),
    Stats(stats::StatsArgs),
    Tag(tag::TagArgs),
    Rewrite(rewrite::RewriteArgs),
    List(list::ListArgs),
    Recover(recover::RecoverArgs),
    Cache(cache::CacheArgs),
    Generate(generate::GenerateArgs),
    Mount(mount::MountArgs),
    Check(check::CheckArgs),
    Copy(copy::CopyArgs),
    Key(key::KeyArgs),
    Cat(cat::CatArgs),
    Unlock(unlock::UnlockArgs),
    Version(version::VersionArgs),
    Forget(forget::ForgetArgs),
    Prune(prune::PruneArgs),
    Repair(repair::RepairArgs),
    Run(run::RunArgs),
    Status(status::StatusArgs),
    Config(config::ConfigArgs),
    Pg(pg::PgArgs),
    Daemon(daemon::DaemonArgs),
    History(history::HistoryArgs),
    Mysql(mysql::MysqlArgs),
    Drill(drill::DrillArgs),
    Audit(audit::AuditArgs),
    Report(report::ReportArgs),
    Runbook(runbook::RunbookArgs),
    Notify(notify::NotifyArgs),
    Serve(serve::ServeArgs),
}

/// Run one verb; verbs that change a repository or read data out of it
/// leave a record in its audit log.
pub fn run(g: &GlobalOpts, cmd: Command) -> Result<Status> {
    let audited = crate::audit_trail::begin(&cmd);
    let result = dispatch(g, cmd);
    if let Some(op) = audited {
        crate::audit_trail::finish(op, &result);
    }
    result
}

fn dispatch(g: &GlobalOpts, cmd: Command) -> Result<Status> {
    match cmd {
        Command::Init(a) => init::run(g, a),
        Command::Backup(a) => backup::run(g, a),
        Command::Snapshots(a) => snapshots::run(g, a),
        Command::Ls(a) => ls::run(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Dump(a) => dump::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Find(a) => find::run(g, a),
        Command::Stats(a) => stats::run(g, a),
        Command::Tag(a) => tag::run(g, a),
        Command::Rewrite(a) => rewrite::run(g, a),
        Command::List(a) => list::run(g, a),
        Command::Recover(a) => recover::run(g, a),
        Command::Cache(a) => cache::run(g, a),
        Command::Generate(a) => generate::run(g, a),
        Command::Mount(a) => mount::run(g, a),
        Command::Check(a) => check::run(g, a),
        Command::Copy(a) => copy::run(g, a),
        Command::Key(a) => key::run(g, a),
        Command::Cat(a) => cat::run(g, a),
        Command::Unlock(a) => unlock::run(g, a),
        Command::Version(a) => version::run(g, a),
        Command::Forget(a) => forget::run(g, a),
        Command::Prune(a) => prune::run(g, a),
        Command::Repair(a) => repair::run(g, a),
        Command::Run(a) => run::run(g, a),
        Command::Status(a) => status::run(g, a),
        Command::Config(a) => config::run(g, a),
        Command::Pg(a) => pg::run(g, a),
        Command::Daemon(a) => daemon::run(g, a),
        Command::History(a) => history::run(g, a),
        Command::Mysql(a) => mysql::run(g, a),
        Command::Drill(a) => drill::run(g, a),
        Command::Audit(a) => audit::run(g, a),
        Command::Report(a) => report::run(g, a),
        Command::Runbook(a) => runbook::run(g, a),
        Command::Notify(a) => notify::run(g, a),
        Command::Serve(a) => serve::run(g, a),
    }
}

/// `--host`, `--tag`, `--path`: which snapshots `latest` (or a listing) considers.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host (repeatable)
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with these tags: `a,b` needs both, repeating means either (repeatable)
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    pub tags: Vec<String>,
    /// Only snapshots that include this path (repeatable)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

impl FilterArgs {
    pub fn filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            hosts: self.hosts.clone(),
            tags: SnapshotFilter::tag_groups(&self.tags),
            paths: self.paths.clone(),
        }
    }
}

/// Split `SNAPSHOT[:SUBPATH]` (restic's syntax for restore/dump/ls).
pub fn split_snapshot_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((id, sub)) if !sub.is_empty() => (id, Some(sub)),
        Some((id, _)) => (id, None),
        None => (spec, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_spec_with_and_without_subpath() {
        assert_eq!(split_snapshot_spec("latest"), ("latest", None));
        assert_eq!(
            split_snapshot_spec("abc123:/home/x"),
            ("abc123", Some("/home/x"))
        );
        assert_eq!(split_snapshot_spec("abc123:"), ("abc123", None));
    }

    #[test]
    fn tag_groups_from_filter_args() {
        let f = FilterArgs {
            hosts: vec!["h".into()],
            tags: vec!["a,b".into(), "c".into()],
            paths: vec![],
        }
        .filter();
        assert_eq!(
            f.tags,
            vec![
                vec!["a".to_string(), "b".to_string()],
                vec!["c".to_string()]
            ]
        );
        assert_eq!(f.hosts, vec!["h".to_string()]);
    }
}
