//! `bunker status`: per item, the newest snapshot in each target, its age
//! against the RPO, and the last recorded failure.
//!
//! Failures of `bunker run` are recorded as small encrypted JSON files in
//! the repository (`bunker/reports/`), so what status shows is derived from
//! the repository itself and cannot drift from it.

use anyhow::Result;
use bunker_policy::Item;
use bunker_repo::pg::{base, retention, verify};
use bunker_repo::snapshots::{self, SnapshotFilter};
use bunker_repo::Repository;
use bunker_sources::postgres::DEFAULT_SEGMENT_SIZE;
use bunker_storage::FileType;
use chrono::{DateTime, FixedOffset, Utc};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::config::{open_policy_repo, PolicyArgs};
use super::pg::items as pg_items;
use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::output::{self, Table};

/// A failed run of one item, stored encrypted under `bunker/reports/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRecord {
    pub item: String,
    pub time: DateTime<FixedOffset>,
    pub hostname: String,
    pub error: String,
}

/// Record a failure in `repo` (best effort: a failure to record is a warning).
pub fn record_failure(repo: &Repository, item: &str, error: &str) {
    let rec = FailureRecord {
        item: item.to_string(),
        time: chrono::Local::now().fixed_offset(),
        hostname: gethostname::gethostname().to_string_lossy().into_owned(),
        error: error.to_string(),
    };
    if let Err(e) = repo.save_json(FileType::Report, &rec) {
        eprintln!("warning: could not record the failure of {item} in the repository: {e}");
    }
}

/// The newest recorded failure of `item`; unreadable records are skipped.
pub fn last_failure(repo: &Repository, item: &str) -> Result<Option<FailureRecord>> {
    let mut best: Option<FailureRecord> = None;
    for f in repo.storage().list(FileType::Report)? {
        let Ok(rec) = repo.load_json::<FailureRecord>(FileType::Report, &f.name, "report") else {
            tracing::warn!("report {} is unreadable; skipped", f.name);
            continue;
        };
        if rec.item == item && best.as_ref().is_none_or(|b| rec.time > b.time) {
            best = Some(rec);
        }
    }
    Ok(best)
}

/// The time of the newest snapshot of `item` in `repo`, with its id.
pub fn newest_snapshot(
    repo: &Repository,
    item: &Item,
) -> Result<Option<(DateTime<FixedOffset>, String)>> {
    let filter = SnapshotFilter {
        tags: vec![vec![item.tag()]],
        ..Default::default()
    };
    Ok(snapshots::filtered(repo, &filter, None)?
        .pop()
        .map(|e| (e.snapshot.time, e.id.short())))
}

const LONG_ABOUT: &str = "\
Show, for every item of the policy and every target repository, the newest snapshot of the \
item (tag bunker:item=NAME), its age, and whether that age is within the item's RPO (OK) or \
not (LATE; also when there is no snapshot at all). The last failure recorded by `bunker run` \
in the repository is shown with its time. For postgres physical items the recoverable window \
(earliest and latest point) is shown too, with warnings when the archive has gaps, the window \
is shorter than the item's pitr, or the server's newest archived WAL segment is older than the \
rpo (asked from pg_stat_archiver). Nothing is written. The exit status is 3 when any item is \
LATE, has such a warning, or a repository cannot be read.";

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

#[derive(Serialize)]
struct Row {
    item: String,
    target: String,
    /// OK, LATE or ERROR.
    state: &'static str,
    newest: Option<DateTime<FixedOffset>>,
    snapshot: Option<String>,
    age_seconds: Option<i64>,
    rpo_seconds: Option<u64>,
    last_failure: Option<FailureRecord>,
    error: Option<String>,
    /// Postgres physical items: the recoverable window and the archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pitr: Option<PitrStatus>,
}

/// The point-in-time recovery state of a postgres physical item.
#[derive(Serialize, Default)]
struct PitrStatus {
    /// Earliest point recoverable continuously (end of the window's first base backup).
    window_start: Option<String>,
    /// The end of the newest archived segment.
    window_end_lsn: Option<String>,
    newest_segment: Option<String>,
    /// `now - pitr`, when the item has a span.
    window_required: Option<String>,
    /// Seconds since the server archived its newest segment (from pg_stat_archiver).
    archive_age_seconds: Option<i64>,
    warnings: Vec<String>,
}

fn pitr_status(
    repo: &Repository,
    item: &Item,
    cfg: &bunker_policy::PostgresConfig,
    now: DateTime<Utc>,
) -> Result<PitrStatus> {
    let tag = item.tag();
    let mut backups = base::list_base_backups(repo)?;
    backups.retain(|b| b.entry.snapshot.tags.contains(&tag));
    let size = retention::infer_segment_size(&backups).unwrap_or(DEFAULT_SEGMENT_SIZE);
    let required = cfg
        .pitr
        .and_then(|p| chrono::Duration::from_std(p).ok())
        .map(|p| now - p);
    let points = required
        .map(|c| retention::point_only(&backups, c))
        .unwrap_or_default();
    let report = verify::verify_window(repo, &backups, size, &points)?;
    let mut st = PitrStatus {
        window_start: report.window_start.clone(),
        window_end_lsn: report.window_end_lsn.clone(),
        newest_segment: report.newest_segment.clone(),
        window_required: required.map(|r| r.to_rfc3339()),
        ..Default::default()
    };
    if !backups.is_empty() && !report.ok {
        st.warnings
            .push("the WAL archive has gaps (see `bunker pg wal-verify`)".into());
    }
    if let (Some(req), Some(start)) = (required, &report.window_start) {
        let start_ok = DateTime::parse_from_rfc3339(start)
            .map(|s| s.with_timezone(&Utc) <= req)
            .unwrap_or(false);
        if !start_ok {
            st.warnings.push(format!(
                "the recoverable window starts at {start}, later than the pitr span asks ({})",
                req.to_rfc3339()
            ));
        }
    }
    let conn = pg_items::conn_from_policy(cfg);
    let sql = "SELECT coalesce(last_archived_wal, ''), \
               coalesce(extract(epoch from now() - last_archived_time)::bigint, -1), \
               coalesce(last_failed_wal, ''), \
               coalesce(extract(epoch from now() - last_failed_time)::bigint, -1) \
               FROM pg_stat_archiver";
    match pg_items::query_quick(&conn, sql) {
        Ok(line) => {
            let f: Vec<&str> = line.split('|').collect();
            if let [wal, age, failed, failed_age] = f.as_slice() {
                let age: i64 = age.parse().unwrap_or(-1);
                let failed_age: i64 = failed_age.parse().unwrap_or(-1);
                if !wal.is_empty() && age >= 0 {
                    st.archive_age_seconds = Some(age);
                    if st.newest_segment.as_deref().is_none_or(|n| n < *wal) {
                        st.warnings.push(format!(
                            "the server archived {wal}, but the newest segment in this repository is {}: is archive_command writing elsewhere?",
                            st.newest_segment.as_deref().unwrap_or("(none)")
                        ));
                    }
                    if let Some(rpo) = item.rpo.filter(|r| age.unsigned_abs() > r.as_secs()) {
                        st.warnings.push(format!(
                            "the newest archived WAL segment is {} old, more than the rpo ({}); set archive_timeout below the rpo",
                            humantime::format_duration(std::time::Duration::from_secs(age.unsigned_abs())),
                            humantime::format_duration(rpo)
                        ));
                    }
                }
                if !failed.is_empty() && failed_age >= 0 && (age < 0 || failed_age < age) {
                    st.warnings.push(format!(
                        "archiving {failed} failed {} ago (see the server log)",
                        humantime::format_duration(std::time::Duration::from_secs(
                            failed_age.unsigned_abs()
                        ))
                    ));
                }
            }
        }
        Err(e) => st.warnings.push(format!(
            "cannot ask the server how old its newest archived segment is: {}",
            crate::exit::one_line(&e)
        )),
    }
    Ok(st)
}

pub fn run(g: &GlobalOpts, mut args: StatusArgs) -> Result<Status> {
    if args.file.is_some() {
        args.policy.config = args.file.take();
    }
    let policy = args.policy.load()?;
    let now = Utc::now();
    let mut rows = Vec::new();
    let mut repos = std::collections::HashMap::new();
    for item in policy.items_by_priority() {
        for target in &item.targets {
            if !repos.contains_key(target) {
                let opened = open_policy_repo(g, &policy, target, false)
                    .map_err(|e| crate::exit::one_line(&e));
                repos.insert(target.clone(), opened);
            }
            let mut row = Row {
                item: item.name.clone(),
                target: target.clone(),
                state: "ERROR",
                newest: None,
                snapshot: None,
                age_seconds: None,
                rpo_seconds: item.rpo.map(|d| d.as_secs()),
                last_failure: None,
                error: None,
                pitr: None,
            };
            match repos.get(target) {
                Some(Ok(o)) => {
                    let found = newest_snapshot(&o.repo, item)
                        .and_then(|n| Ok((n, last_failure(&o.repo, &item.name)?)));
                    match found {
                        Ok((newest, failure)) => {
                            row.last_failure = failure;
                            let age = newest.as_ref().map(|(t, _)| {
                                now.signed_duration_since(t.with_timezone(&Utc))
                                    .num_seconds()
                            });
                            row.age_seconds = age;
                            row.newest = newest.as_ref().map(|(t, _)| *t);
                            row.snapshot = newest.map(|(_, id)| id);
                            row.state = match (age, item.rpo) {
                                (None, _) => "LATE",
                                (Some(a), Some(rpo)) if a.max(0).unsigned_abs() > rpo.as_secs() => {
                                    "LATE"
                                }
                                _ => "OK",
                            };
                        }
                        Err(e) => row.error = Some(format!("{e:#}")),
                    }
                    if let Some(cfg) = pg_items::physical(item) {
                        match pitr_status(&o.repo, item, cfg, now) {
                            Ok(p) => row.pitr = Some(p),
                            Err(e) => {
                                row.pitr = Some(PitrStatus {
                                    warnings: vec![format!(
                                        "cannot read the WAL archive: {}",
                                        crate::exit::one_line(&e)
                                    )],
                                    ..Default::default()
                                })
                            }
                        }
                    }
                }
                Some(Err(e)) => row.error = Some(e.clone()),
                None => row.error = Some("repository not opened".into()),
            }
            rows.push(row);
        }
    }
    if g.json {
        output::json_line(&rows)?;
    } else {
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
        for r in &rows {
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
                vec![r.state.to_string()],
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
        for r in &rows {
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
            for w in &p.warnings {
                println!("WARNING: {} ({}): {w}", r.item, r.target);
            }
        }
    }
    let bad = rows
        .iter()
        .any(|r| r.state != "OK" || r.pitr.as_ref().is_some_and(|p| !p.warnings.is_empty()));
    Ok(if bad {
        Status::Incomplete
    } else {
        Status::Success
    })
}
