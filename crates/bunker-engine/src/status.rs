//! Status: for an item at each target, the newest snapshot against the RPO,
//! the last recorded failure, and for postgres physical items the
//! recoverable window and the archiver's state. Derived from the
//! repositories (and the server), so it cannot drift from them. Nothing is
//! written.

use bunker_policy::{Item, PostgresConfig};
use bunker_repo::pg::{base, retention};
use bunker_repo::Repository;
use bunker_sources::postgres::{WalFileName, DEFAULT_SEGMENT_SIZE};
use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::plan::newest_snapshot;
use crate::pool::RepoPool;
use crate::records::{self, Record, RecordKind};
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
    /// Within the RPO, but the newest snapshot left files out (they could
    /// not be read); [`TargetStatus::unreadable`] names them.
    #[serde(rename = "INCOMPLETE")]
    Incomplete,
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
            RpoState::Incomplete => "INCOMPLETE",
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

/// A file the newest snapshot left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct UnreadableFile {
    /// Its path.
    pub path: String,
    /// Why it could not be read.
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
    /// The newest recorded failure, when it is still current: newer than
    /// the last recorded success and than the newest snapshot (`None` once
    /// a later run succeeded).
    pub last_failure: Option<LastFailure>,
    /// The files the newest snapshot left out (state INCOMPLETE); at most
    /// [`crate::execute::MAX_RECORDED_UNREADABLE`] are named.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<UnreadableFile>,
    /// Why the repository could not be read.
    pub error: Option<String>,
    /// Postgres physical items: the recoverable window and the archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pitr: Option<PitrStatus>,
}

impl TargetStatus {
    /// Whether a person should look: LATE, INCOMPLETE, ERROR, a current
    /// failure (one no later run or snapshot fixed), or a PITR warning.
    pub fn needs_attention(&self) -> bool {
        self.state != RpoState::Ok
            || self.last_failure.is_some()
            || self.pitr.as_ref().is_some_and(|p| !p.warnings.is_empty())
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
    /// What needs a person's attention (exit status 3).
    pub warnings: Vec<String>,
    /// Information that needs nobody (a window still growing into the
    /// `pitr` span after the item's first base backup).
    pub notes: Vec<String>,
}

/// The newest failure of `item` recorded in `repo`, whether or not a
/// later run succeeded (see [`current_failure`]).
pub fn last_failure(repo: &Repository, item: &str) -> Result<Option<LastFailure>> {
    Ok(records::latest(repo, item, RecordKind::RunFailure)?.map(|r| to_failure(&r)))
}

fn to_failure(r: &Record) -> LastFailure {
    LastFailure {
        item: r.item.clone(),
        time: r.time,
        hostname: r.hostname.clone(),
        error: r.error().unwrap_or_default().to_string(),
    }
}

/// The newest run records of an item in one repository.
#[derive(Debug, Clone, Default)]
pub struct RunRecords {
    /// The newest [`RecordKind::RunFailure`].
    pub failure: Option<Record>,
    /// The newest [`RecordKind::RunSuccess`].
    pub success: Option<Record>,
}

/// The newest failure and success records of `item` in `repo` (one listing).
pub fn run_records(repo: &Repository, item: &str) -> Result<RunRecords> {
    let mut out = RunRecords::default();
    for r in records::list(repo)?.into_iter().map(|s| s.record) {
        if r.item != item {
            continue;
        }
        let slot = match r.kind {
            RecordKind::RunFailure => &mut out.failure,
            RecordKind::RunSuccess => &mut out.success,
            _ => continue,
        };
        if slot.as_ref().is_none_or(|o| o.time < r.time) {
            *slot = Some(r);
        }
    }
    Ok(out)
}

/// The failure a person still has to look at: the newest failure, unless a
/// later run succeeded or a later snapshot exists (a failure that a later
/// run fixed is history, not state).
pub fn current_failure(
    records: &RunRecords,
    newest: Option<DateTime<FixedOffset>>,
) -> Option<LastFailure> {
    let f = records.failure.as_ref()?;
    let fixed_by_run = records.success.as_ref().is_some_and(|s| s.time >= f.time);
    let fixed_by_snapshot = newest.is_some_and(|n| n >= f.time);
    (!fixed_by_run && !fixed_by_snapshot).then(|| to_failure(f))
}

/// The files the snapshot `snapshot` (a short id) left out, from the
/// success record of the run that wrote it (empty when the record is of
/// another snapshot, or the snapshot is complete).
pub fn unreadable_of(records: &RunRecords, snapshot: &str) -> Vec<UnreadableFile> {
    let Some(s) = &records.success else {
        return Vec::new();
    };
    let wrote_it = s
        .body
        .get("snapshot")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|ids| {
            ids.split(',')
                .any(|id| !id.is_empty() && snapshot.starts_with(id))
        });
    if !wrote_it {
        return Vec::new();
    }
    let files: Vec<UnreadableFile> = s
        .body
        .get("unreadable")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    if files.is_empty() && s.body.get("incomplete") == Some(&serde_json::Value::Bool(true)) {
        return vec![UnreadableFile {
            path: "?".into(),
            error: "the run recorded unreadable files without naming them".into(),
        }];
    }
    files
}

/// The items of the pool's policy that `wanted` selects, in priority
/// order, each at each of its targets, at `now`.
pub fn policy_status(
    pool: &mut RepoPool<'_>,
    wanted: impl Fn(&Item) -> bool,
    now: DateTime<Utc>,
) -> Vec<TargetStatus> {
    let policy = pool.policy();
    (policy.items_by_priority().into_iter())
        .filter(|i| wanted(i))
        .flat_map(|i| item_status(pool, i, now))
        .collect()
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
            unreadable: Vec::new(),
            error: None,
            pitr: None,
        };
        match pool.get(target) {
            Ok(o) => {
                let found = newest_snapshot(&o.repo, item)
                    .and_then(|n| Ok((n, run_records(&o.repo, &item.name)?)));
                match found {
                    Ok((newest, recs)) => {
                        let age = newest.as_ref().map(|(t, _)| {
                            now.signed_duration_since(t.with_timezone(&Utc))
                                .num_seconds()
                        });
                        row.age_seconds = age;
                        row.newest = newest.as_ref().map(|(t, _)| *t);
                        row.last_failure = current_failure(&recs, row.newest);
                        if let Some((_, id)) = &newest {
                            row.unreadable = unreadable_of(&recs, id);
                        }
                        row.snapshot = newest.map(|(_, id)| id);
                        row.state = match (age, item.rpo) {
                            (None, _) => RpoState::Late,
                            (Some(a), Some(rpo)) if a.max(0).unsigned_abs() > rpo.as_secs() => {
                                RpoState::Late
                            }
                            _ if !row.unreadable.is_empty() => RpoState::Incomplete,
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
    let (report, required) = crate::pg::wal::verify_span(repo, &backups, size, cfg.pitr, now)?;
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
    if let (Some(req), Some(start), Some(pitr)) = (required, &report.window_start, cfg.pitr) {
        let first_end = backups.first().map(|b| b.end_time.with_timezone(&Utc));
        match window_check(start, req, first_end, pitr) {
            Some(WindowCheck::Growing(n)) => st.notes.push(n),
            Some(WindowCheck::Short(w)) => st.warnings.push(w),
            None => {}
        }
    }
    archiver_warnings(&mut st, item, cfg, size);
    Ok(st)
}

/// A recoverable window that starts later than the `pitr` span asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowCheck {
    /// Expected: the item's first base backup is younger than the span, so
    /// the window cannot reach further back yet (information).
    Growing(String),
    /// The window lost its start (a warning: a person should look).
    Short(String),
}

/// Whether a window starting at `start` (RFC 3339) reaches `required`
/// (`now - pitr`); `first_end` is the end of the item's oldest base backup
/// in the repository. `None` when the window is long enough.
///
/// Relies on PITR retention never forgetting the base backup that starts
/// the required window: an oldest base backup younger than the span is then
/// the first one ever taken.
pub fn window_check(
    start: &str,
    required: DateTime<Utc>,
    first_end: Option<DateTime<Utc>>,
    pitr: std::time::Duration,
) -> Option<WindowCheck> {
    let start_ok = DateTime::parse_from_rfc3339(start)
        .map(|s| s.with_timezone(&Utc) <= required)
        .unwrap_or(false);
    if start_ok {
        return None;
    }
    if first_end.is_some_and(|f| f > required) {
        return Some(WindowCheck::Growing(format!(
            "the recoverable window starts at {start}, with the first base backup: it grows \
             into the pitr span ({}) as time passes",
            humantime::format_duration(pitr)
        )));
    }
    Some(WindowCheck::Short(format!(
        "the recoverable window starts at {start}, later than the pitr span asks ({})",
        required.to_rfc3339()
    )))
}

/// What `pg_stat_archiver` says: the newest archived segment's age against
/// the RPO, archiving to somewhere else, recent failures.
fn archiver_warnings(st: &mut PitrStatus, item: &Item, cfg: &PostgresConfig, segment_size: u64) {
    let state = match postgres::archiver_state(&postgres::conn_from_policy(cfg)) {
        Ok(s) => s,
        Err(e) => {
            st.warnings.push(format!(
                "cannot ask the server how old its newest archived segment is: {}",
                crate::error::one_line(&e)
            ));
            return;
        }
    };
    let human =
        |s: i64| humantime::format_duration(std::time::Duration::from_secs(s.unsigned_abs()));
    let wal = &state.last_archived_wal;
    if let (false, Some(age)) = (wal.is_empty(), state.archived_age) {
        st.archive_age_seconds = Some(age);
        if archived_beyond(wal, st.newest_segment.as_deref(), segment_size) {
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
    if state.failing() {
        st.warnings.push(format!(
            "archiving {} failed {} ago (see the server log)",
            state.last_failed_wal,
            human(state.failed_age.unwrap_or(0))
        ));
    }
}

/// Whether the file the server archived last (`last_archived_wal`: a
/// segment, a `.partial` segment, a `.backup` or `.history` file) says that
/// WAL exists beyond `newest`, the repository's newest segment. Compared as
/// segment positions, not as strings: a `.backup` file belongs to a segment
/// archived before it, a `.partial` segment to a position whose complete
/// segment comes on the next timeline, and a `.history` file is not WAL.
/// Unknown names say nothing (no false alarm).
pub fn archived_beyond(archived: &str, newest: Option<&str>, segment_size: u64) -> bool {
    let Ok(name) = WalFileName::parse(archived) else {
        return false;
    };
    let Some(seg) = name.segment(segment_size) else {
        return false;
    };
    // The last position the archived file proves complete.
    let complete = match name {
        WalFileName::Partial { .. } => match seg.segno.checked_sub(1) {
            Some(n) => n,
            None => return false,
        },
        _ => seg.segno,
    };
    let newest = newest
        .and_then(|n| WalFileName::parse(n).ok())
        .and_then(|n| n.segment(segment_size));
    newest.is_none_or(|n| n.segno < complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = DEFAULT_SEGMENT_SIZE;

    /// Issue 25 item 5: after every base backup on an idle server the
    /// server's last archived file is `<segment>.<offset>.backup`, which
    /// compared as a string is "newer" than the segment itself.
    #[test]
    fn a_backup_history_file_is_not_newer_than_the_archives_newest_segment() {
        let newest = Some("000000010000000000000003");
        assert!(!archived_beyond(
            "000000010000000000000003.00000028.backup",
            newest,
            SEG
        ));
        assert!(!archived_beyond("000000010000000000000003", newest, SEG));
        assert!(!archived_beyond("000000010000000000000002", newest, SEG));
        // A partial segment at 4: everything before 4 is complete, 4 is not.
        assert!(!archived_beyond(
            "000000010000000000000004.partial",
            newest,
            SEG
        ));
        assert!(!archived_beyond("00000002.history", newest, SEG));
        // Real news: a newer segment, across a log boundary, on a new timeline.
        assert!(archived_beyond("000000010000000000000004", newest, SEG));
        assert!(archived_beyond(
            "0000000100000000000000FF",
            Some("0000000100000000000000FE"),
            SEG
        ));
        assert!(!archived_beyond(
            "0000000100000000000000FF",
            Some("000000010000000100000000"),
            SEG
        ));
        assert!(archived_beyond("000000020000000000000005", newest, SEG));
        assert!(archived_beyond(
            "000000010000000000000005.partial",
            newest,
            SEG
        ));
        assert!(archived_beyond(
            "000000010000000000000004.00000028.backup",
            newest,
            SEG
        ));
        // Nothing in the repository, something archived: writing elsewhere.
        assert!(archived_beyond("000000010000000000000001", None, SEG));
        assert!(!archived_beyond("not a wal name", newest, SEG));
    }

    /// Issue 25 item 5: for the first days of a new PITR window `status`
    /// warned (exit 3) that the window is shorter than `pitr`.
    #[test]
    fn a_new_pitr_window_growing_into_its_span_is_a_note_not_a_warning() {
        let now = Utc::now();
        let pitr = std::time::Duration::from_secs(7 * 86400);
        let required = now - chrono::Duration::days(7);
        let first_end = now - chrono::Duration::days(2);
        let start = first_end.to_rfc3339();
        assert!(matches!(
            window_check(&start, required, Some(first_end), pitr),
            Some(WindowCheck::Growing(_))
        ));
        // The first base backup is older than the span but the window
        // starts late: the window lost its start, a warning.
        let old_first = now - chrono::Duration::days(9);
        assert!(matches!(
            window_check(&start, required, Some(old_first), pitr),
            Some(WindowCheck::Short(_))
        ));
        // Long enough: nothing to say.
        let early = (now - chrono::Duration::days(8)).to_rfc3339();
        assert_eq!(window_check(&early, required, Some(old_first), pitr), None);
    }
}
