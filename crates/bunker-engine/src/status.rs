//! Status: for an item at each target, the newest snapshot against the RPO,
//! the last recorded failure, and for postgres physical items the
//! recoverable window and the archiver's state. Derived from the
//! repositories (and the server), so it cannot drift from them. Nothing is
//! written.

use bunker_policy::{Item, PostgresConfig};
use bunker_repo::pg::{base, retention, verify};
use bunker_repo::Repository;
use bunker_sources::postgres::DEFAULT_SEGMENT_SIZE;
use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::plan::newest_snapshot;
use crate::pool::RepoPool;
use crate::records::{self, RecordKind};
use crate::sources::postgres;

/// Whether the newest snapshot is within the item's RPO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RpoState {
    /// Within the RPO (or the item has none and a snapshot exists).
    #[serde(rename = "OK")]
    Ok,
    /// Older than the RPO, or no snapshot at all.
    #[serde(rename = "LATE")]
    Late,
    /// The repository could not be read.
    #[serde(rename = "ERROR")]
    Error,
}

impl RpoState {
    /// The word `status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            RpoState::Ok => "OK",
            RpoState::Late => "LATE",
            RpoState::Error => "ERROR",
        }
    }
}

/// A failed run as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastFailure {
    /// The item.
    pub item: String,
    /// When it failed.
    pub time: DateTime<FixedOffset>,
    /// Where it ran.
    pub hostname: String,
    /// Why, as one line.
    pub error: String,
}

/// An item at one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// The item.
    pub item: String,
    /// The target repository.
    pub target: String,
    /// OK, LATE or ERROR.
    pub state: RpoState,
    /// The newest snapshot's time.
    pub newest: Option<DateTime<FixedOffset>>,
    /// Its short id.
    pub snapshot: Option<String>,
    /// Its age at `now`.
    pub age_seconds: Option<i64>,
    /// The item's RPO.
    pub rpo_seconds: Option<u64>,
    /// The newest recorded failure.
    pub last_failure: Option<LastFailure>,
    /// Why the repository could not be read.
    pub error: Option<String>,
    /// Postgres physical items: the recoverable window and the archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pitr: Option<PitrStatus>,
}

impl TargetStatus {
    /// Whether a person should look: LATE, ERROR, or a PITR warning.
    pub fn needs_attention(&self) -> bool {
        self.state != RpoState::Ok || self.pitr.as_ref().is_some_and(|p| !p.warnings.is_empty())
    }
}

/// The point-in-time recovery state of a postgres physical item.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PitrStatus {
    /// Earliest point recoverable continuously (end of the window's first base backup).
    pub window_start: Option<String>,
    /// The end of the newest archived segment.
    pub window_end_lsn: Option<String>,
    /// The newest archived segment.
    pub newest_segment: Option<String>,
    /// `now - pitr`, when the item has a span.
    pub window_required: Option<String>,
    /// Seconds since the server archived its newest segment (from pg_stat_archiver).
    pub archive_age_seconds: Option<i64>,
    /// What needs a person's attention.
    pub warnings: Vec<String>,
}

/// The newest failure of `item` recorded in `repo`.
pub fn last_failure(repo: &Repository, item: &str) -> Result<Option<LastFailure>> {
    Ok(
        records::latest(repo, item, RecordKind::RunFailure)?.map(|r| LastFailure {
            item: r.item.clone(),
            time: r.time,
            hostname: r.hostname.clone(),
            error: r.error().unwrap_or_default().to_string(),
        }),
    )
}

/// `item` at each of its targets, at `now`.
pub fn item_status(pool: &mut RepoPool<'_>, item: &Item, now: DateTime<Utc>) -> Vec<TargetStatus> {
    let mut out = Vec::new();
    for target in &item.targets {
        let mut row = TargetStatus {
            item: item.name.clone(),
            target: target.clone(),
            state: RpoState::Error,
            newest: None,
            snapshot: None,
            age_seconds: None,
            rpo_seconds: item.rpo.map(|d| d.as_secs()),
            last_failure: None,
            error: None,
            pitr: None,
        };
        match pool.get(target) {
            Ok(o) => {
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
                            (None, _) => RpoState::Late,
                            (Some(a), Some(rpo)) if a.max(0).unsigned_abs() > rpo.as_secs() => {
                                RpoState::Late
                            }
                            _ => RpoState::Ok,
                        };
                    }
                    Err(e) => row.error = Some(e.one_line()),
                }
                if let Some(cfg) = item.physical() {
                    row.pitr =
                        Some(
                            pitr_status(&o.repo, item, cfg, now).unwrap_or_else(|e| PitrStatus {
                                warnings: vec![format!(
                                    "cannot read the WAL archive: {}",
                                    e.one_line()
                                )],
                                ..Default::default()
                            }),
                        );
                }
            }
            Err(e) => row.error = Some(e.one_line()),
        }
        out.push(row);
    }
    out
}

/// The recoverable window of a physical item in `repo`, and what the
/// server's archiver says.
pub fn pitr_status(
    repo: &Repository,
    item: &Item,
    cfg: &PostgresConfig,
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
    archiver_warnings(&mut st, item, cfg);
    Ok(st)
}

/// What `pg_stat_archiver` says: the newest archived segment's age against
/// the RPO, archiving to somewhere else, recent failures.
fn archiver_warnings(st: &mut PitrStatus, item: &Item, cfg: &PostgresConfig) {
    let conn = postgres::conn_from_policy(cfg);
    let sql = "SELECT coalesce(last_archived_wal, ''), \
               coalesce(extract(epoch from now() - last_archived_time)::bigint, -1), \
               coalesce(last_failed_wal, ''), \
               coalesce(extract(epoch from now() - last_failed_time)::bigint, -1) \
               FROM pg_stat_archiver";
    let line = match postgres::query_quick(&conn, sql) {
        Ok(line) => line,
        Err(e) => {
            st.warnings.push(format!(
                "cannot ask the server how old its newest archived segment is: {}",
                crate::error::one_line(&e)
            ));
            return;
        }
    };
    let f: Vec<&str> = line.split('|').collect();
    let [wal, age, failed, failed_age] = f.as_slice() else {
        return;
    };
    let age: i64 = age.parse().unwrap_or(-1);
    let failed_age: i64 = failed_age.parse().unwrap_or(-1);
    let human =
        |s: i64| humantime::format_duration(std::time::Duration::from_secs(s.unsigned_abs()));
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
                human(age),
                humantime::format_duration(rpo)
            ));
        }
    }
    if !failed.is_empty() && failed_age >= 0 && (age < 0 || failed_age < age) {
        st.warnings.push(format!(
            "archiving {failed} failed {} ago (see the server log)",
            human(failed_age)
        ));
    }
}
