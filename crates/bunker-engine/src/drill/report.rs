//! The report of a drill ([`DrillReport`]), as printed with `--json` and
//! stored as a [`RecordKind::Drill`] record, and reading it back.

use bunker_policy::{Item, Source};
use bunker_repo::Repository;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::checks::CheckResult;
use super::verify::VerifySummary;
use crate::error::{EngineError, Result};
use crate::records::{self, Record, RecordKind};

/// Passed or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillStatus {
    /// Restored, verified, every check passed.
    Passed,
    /// Something failed (see [`DrillReport::error`] and the checks).
    Failed,
}

/// One measured phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// `restore`, `verify`, `startup`, `load` or `checks`.
    pub name: String,
    /// Wall time.
    pub seconds: f64,
}

/// Where a PostgreSQL drill's recovery was asked to stop, and where it did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecoveryInfo {
    /// The base backup restored.
    pub base_backup: String,
    /// `latest`, `immediate` or `time`.
    pub target: String,
    /// The recovery target time (RFC 3339), for `time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_time: Option<String>,
    /// Whether recovery stopped at its target. `false` when no transaction
    /// committed after the target time is archived: the state at that time
    /// is then the end of the archive, which recovery replayed instead.
    pub target_reached: bool,
    /// The commit time of the last transaction replayed
    /// (`pg_last_xact_replay_timestamp()`), when any was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached_time: Option<String>,
    /// The last WAL position replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached_lsn: Option<String>,
    /// The recoverable window's start (end of its first base backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    /// The newest commit found in the archive's newest segments (the
    /// window's end for `random_in_window`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<String>,
    /// The loopback port of the temporary server.
    pub port: u16,
}

/// The result of one drill, as stored in the repository and printed with
/// `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// The item.
    pub item: String,
    /// `files`, `command`, `sqlite`, `postgres-physical` or `postgres-logical`.
    pub kind: String,
    /// The repository restored from.
    pub repository: String,
    /// The host that ran the drill.
    pub hostname: String,
    /// When the drill started.
    pub started: DateTime<FixedOffset>,
    /// How the snapshot was chosen: `latest`, `random`, `random_in_window`,
    /// `snapshot` (given) or `time` (given).
    pub pick: String,
    /// The snapshots restored (full ids).
    pub snapshots: Vec<String>,
    /// The time of the (newest) snapshot restored.
    pub snapshot_time: Option<DateTime<FixedOffset>>,
    /// Passed or failed.
    pub status: DrillStatus,
    /// Why it failed, as one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The measured phases, in order.
    pub phases: Vec<Phase>,
    /// The whole drill up to its last check: the measured recovery time.
    pub rto_measured_seconds: f64,
    /// The item's `rto`.
    pub rto_target_seconds: Option<u64>,
    /// The measured time exceeded the `rto`.
    pub rto_exceeded: bool,
    /// The verification of the restored files against the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySummary>,
    /// Built-in checks (`pg_amcheck`, `integrity_check`) and the item's.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// PostgreSQL physical items: the recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryInfo>,
    /// The sandbox directory.
    pub sandbox: String,
    /// The sandbox was kept (`--keep`).
    pub kept: bool,
    /// Why the report could not be stored in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_error: Option<String>,
}

impl DrillReport {
    /// Passed, and within the item's RTO.
    pub fn is_ok(&self) -> bool {
        self.status == DrillStatus::Passed && !self.rto_exceeded
    }
}

/// The kind name a report carries for `item`.
pub fn kind_name(item: &Item) -> &'static str {
    match &item.source {
        Source::Postgres(_) if item.physical().is_some() => "postgres-physical",
        Source::Postgres(_) => "postgres-logical",
        _ => item.kind().as_str(),
    }
}

/// The newest drill report of `item` stored in `repo`.
pub fn last_report(repo: &Repository, item: &str) -> Result<Option<DrillReport>> {
    let Some(r) = records::latest(repo, item, RecordKind::Drill)? else {
        return Ok(None);
    };
    serde_json::from_value(r.body)
        .map(Some)
        .map_err(|e| EngineError::failed(format!("reading the drill report of {item}"), e))
}

/// Every drill report of `item` stored in `repo` (the newest
/// [`crate::records::KEEP_PER_ITEM_AND_KIND`]), newest first; the daemon
/// finds the last successful one here.
pub fn reports(repo: &Repository, item: &str) -> Result<Vec<DrillReport>> {
    let mut recs: Vec<Record> = records::list(repo)?
        .into_iter()
        .map(|s| s.record)
        .filter(|r| r.item == item && r.kind == RecordKind::Drill)
        .collect();
    recs.sort_by_key(|r| std::cmp::Reverse(r.time));
    Ok(recs
        .into_iter()
        .filter_map(|r| serde_json::from_value(r.body).ok())
        .collect())
}
