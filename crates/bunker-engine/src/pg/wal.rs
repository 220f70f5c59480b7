//! The WAL archive's checks and clean-up as front ends run them: verify the
//! recoverable window (optionally for a policy item's PITR span, optionally
//! reading every archived file), and delete WAL no base backup needs.

use std::time::Duration;

use bunker_policy::Policy;
use bunker_repo::check::ReadData;
use bunker_repo::lock::RepoLock;
use bunker_repo::pg::base::{self, BaseBackup};
use bunker_repo::pg::retention;
use bunker_repo::pg::verify::{self, VerifyReport};
use bunker_repo::pg::wal_check::{self, WalReadReport};
use bunker_repo::retention::{KeepPolicy, UNLIMITED};
use bunker_repo::snapshots::SnapshotFilter;
use bunker_repo::Repository;
use bunker_sources::postgres::DEFAULT_SEGMENT_SIZE;
use chrono::{DateTime, Utc};

use crate::error::{Context, EngineError, Result};

/// What to verify.
#[derive(Debug, Clone, Default)]
pub struct WalVerifyRequest {
    /// WAL segment size in bytes.
    pub segment_size: u64,
    /// The PITR span the window must cover.
    pub pitr: Option<Duration>,
    /// Only base backups with this tag (a policy item's).
    pub tag: Option<String>,
    /// Also read and hash every archived WAL file.
    pub read_data: bool,
    /// The time the span counts back from.
    pub now: Option<DateTime<Utc>>,
}

impl WalVerifyRequest {
    /// Take the span and the tag from policy item `item` (postgres physical).
    pub fn for_item(mut self, policy: &Policy, item: &str) -> Result<Self> {
        let it = policy
            .item(item)
            .ok_or_else(|| EngineError::Invalid(format!("no item {item:?} in the policy")))?;
        let cfg = it.physical().ok_or_else(|| {
            EngineError::Invalid(format!("item {item:?} is not a postgres physical item"))
        })?;
        self.pitr = cfg.pitr;
        self.tag = Some(it.tag());
        Ok(self)
    }
}

/// What [`verify()`] found.
#[derive(Debug, Clone)]
pub struct WalVerifyOutcome {
    /// Per base backup: complete, restorable, missing segments; the window.
    pub report: VerifyReport,
    /// `now - pitr`, when a span was asked for.
    pub required: Option<DateTime<Utc>>,
    /// Whether the window reaches back to `required`.
    pub covers: Option<bool>,
    /// With `read_data`: what reading the archive found.
    pub read: Option<WalReadReport>,
}

/// Verify the WAL archive of `repo` as `req` says. Base backups older than
/// the span's start need only the WAL that makes them consistent.
pub fn verify(repo: &Repository, req: &WalVerifyRequest) -> Result<WalVerifyOutcome> {
    let mut backups = base::list_base_backups(repo)?;
    if let Some(tag) = &req.tag {
        backups.retain(|b| b.entry.snapshot.tags.contains(tag));
    }
    let now = req.now.unwrap_or_else(Utc::now);
    let (report, required) = verify_span(repo, &backups, req.segment_size, req.pitr, now)?;
    let read = if req.read_data {
        Some(wal_check::read_objects(repo, &ReadData::All).context("reading the WAL archive")?)
    } else {
        None
    };
    let covers = match (required, &report.window_start) {
        (Some(r), Some(s)) => Some(
            DateTime::parse_from_rfc3339(s)
                .map(|s| s.with_timezone(&Utc) <= r)
                .unwrap_or(false),
        ),
        (Some(_), None) => Some(false),
        (None, _) => None,
    };
    Ok(WalVerifyOutcome {
        report,
        required,
        covers,
        read,
    })
}

/// The recoverable window of `backups` (WAL segments of `segment_size`
/// bytes), and the start a `pitr` span requires at `now` (`None` without a
/// span). Base backups older than that start need only the WAL that makes
/// them consistent.
pub fn verify_span(
    repo: &Repository,
    backups: &[BaseBackup],
    segment_size: u64,
    pitr: Option<Duration>,
    now: DateTime<Utc>,
) -> Result<(VerifyReport, Option<DateTime<Utc>>)> {
    let required = pitr
        .and_then(|p| chrono::Duration::from_std(p).ok())
        .map(|p| now - p);
    let points = required
        .map(|c| retention::point_only(backups, c))
        .unwrap_or_default();
    let report = verify::verify_window(repo, backups, segment_size, &points)?;
    Ok((report, required))
}

/// Delete (or, `dry_run`, list) the archived WAL from before the oldest
/// base backup's start; timeline history files stay. `segment_size` in
/// bytes (`None`: the default). Takes a shared lock ([`EngineError::Lock`]).
pub fn prune(
    repo: &std::sync::Arc<Repository>,
    segment_size: Option<u64>,
    dry_run: bool,
) -> Result<Vec<String>> {
    let _lock = RepoLock::acquire(repo, false).map_err(EngineError::Lock)?;
    // Every base backup kept, the window from the oldest.
    let opts = retention::PitrOptions {
        policy: KeepPolicy {
            last: UNLIMITED,
            ..Default::default()
        },
        filter: SnapshotFilter {
            tags: vec![vec![base::TAG_BASE.to_string()]],
            ..Default::default()
        },
        segment_size: Some(segment_size.unwrap_or(DEFAULT_SEGMENT_SIZE)),
        dry_run,
        ..Default::default()
    };
    Ok(retention::apply(repo, &opts)?.plan.wal_delete)
}
