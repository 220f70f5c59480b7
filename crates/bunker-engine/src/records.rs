//! Records in the repository: small typed envelopes (a run's failure or
//! success, later drill and compliance reports) stored encrypted under
//! `bunker/reports/`, where restic does not look.
//!
//! Each record is one object, written once (its name is the hash of its
//! bytes). Records do not grow forever: after a record is saved, only the
//! newest [`KEEP_PER_ITEM_AND_KIND`] of its item and kind are kept.
//! Failure reports written by earlier bunker versions (plain
//! `{item, time, hostname, error}` objects in the same directory) are read
//! as [`RecordKind::RunFailure`] records and take part in the same retention.

use bunker_repo::Repository;
use bunker_storage::FileType;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};

/// How many records of one item and kind are kept.
pub const KEEP_PER_ITEM_AND_KIND: usize = 10;

/// The envelope's format version.
pub const RECORD_VERSION: u32 = 1;

/// What a record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// An item run failed at this repository.
    RunFailure,
    /// An item run succeeded at this repository.
    RunSuccess,
    /// A restore drill.
    Drill,
    /// A compliance report.
    Compliance,
    /// A successful `check` of the repository (item `*`).
    Check,
    /// A runbook drill or execution (item: the runbook's name).
    Runbook,
}

/// A record: who, what, when, and a kind-specific body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// What it reports.
    pub kind: RecordKind,
    /// The policy item.
    pub item: String,
    /// The host that wrote it.
    pub hostname: String,
    /// When.
    pub time: DateTime<FixedOffset>,
    /// Kind-specific details (a failure's `error`, a run's statistics, …).
    pub body: serde_json::Value,
}

/// What earlier versions wrote for a failed run.
#[derive(Debug, Clone, Deserialize)]
struct LegacyFailure {
    item: String,
    time: DateTime<FixedOffset>,
    hostname: String,
    error: String,
}

impl Record {
    /// A record of `kind` for `item`, now, on this host.
    pub fn new(kind: RecordKind, item: &str, body: serde_json::Value) -> Record {
        Record {
            version: RECORD_VERSION,
            kind,
            item: item.to_string(),
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            time: chrono::Local::now().fixed_offset(),
            body,
        }
    }

    /// A failed run of `item`.
    pub fn run_failure(item: &str, error: &str) -> Record {
        Record::new(
            RecordKind::RunFailure,
            item,
            serde_json::json!({ "error": error }),
        )
    }

    /// The error of a [`RecordKind::RunFailure`] record.
    pub fn error(&self) -> Option<&str> {
        self.body.get("error").and_then(serde_json::Value::as_str)
    }
}

/// A stored record with its object name.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The object name under `bunker/reports/`.
    pub name: String,
    /// The record.
    pub record: Record,
}

/// Every readable record in `repo`; unreadable objects are skipped with a
/// log line (they never hide the others).
pub fn list(repo: &Repository) -> Result<Vec<Stored>> {
    let files = repo
        .storage()
        .list(FileType::Report)
        .context("listing the records")?;
    let mut out = Vec::new();
    for f in files {
        let value: serde_json::Value = match repo.load_json(FileType::Report, &f.name, "record") {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("record {} is unreadable ({e}); skipped", f.name);
                continue;
            }
        };
        let record = serde_json::from_value::<Record>(value.clone()).or_else(|_| {
            serde_json::from_value::<LegacyFailure>(value).map(|l| Record {
                version: 0,
                kind: RecordKind::RunFailure,
                item: l.item,
                hostname: l.hostname,
                time: l.time,
                body: serde_json::json!({ "error": l.error }),
            })
        });
        match record {
            Ok(record) => out.push(Stored {
                name: f.name,
                record,
            }),
            Err(e) => tracing::warn!("record {} has an unknown shape ({e}); skipped", f.name),
        }
    }
    Ok(out)
}

/// The newest record of `item` and `kind`.
pub fn latest(repo: &Repository, item: &str, kind: RecordKind) -> Result<Option<Record>> {
    Ok(list(repo)?
        .into_iter()
        .map(|s| s.record)
        .filter(|r| r.item == item && r.kind == kind)
        .max_by_key(|r| r.time))
}

/// Save `record`, then remove the records of its item and kind beyond the
/// newest [`KEEP_PER_ITEM_AND_KIND`].
pub fn save(repo: &Repository, record: &Record) -> Result<()> {
    repo.save_json(FileType::Report, record)
        .context("saving a record")?;
    let mut same: Vec<Stored> = list(repo)?
        .into_iter()
        .filter(|s| s.record.item == record.item && s.record.kind == record.kind)
        .collect();
    same.sort_by_key(|s| std::cmp::Reverse(s.record.time));
    for old in same.iter().skip(KEEP_PER_ITEM_AND_KIND) {
        match repo.storage().remove(FileType::Report, &old.name) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e).context("removing an old record"),
        }
    }
    Ok(())
}
