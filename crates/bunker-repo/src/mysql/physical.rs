//! Physical backups: a `mariadb-backup --backup --stream=xbstream` stream
//! saved as a snapshot holding one file, `/backup.xbstream`, described by
//! tags so restore and binlog-verify find them without reading data:
//!
//! `mysql-physical`, `mysql-binlog-file=<file>`, `mysql-binlog-pos=<offset>`
//! and, when the server has GTIDs, `mysql-gtid=<gtid list>` (commas written
//! as `/`, since tag filters split on commas).
//!
//! The position is known only at the end of the stream, so the snapshot is
//! first written tagged `mysql-physical-incomplete` and then rewritten with
//! the full tags ([`crate::pg::base::retag`]). A crash in between leaves a
//! snapshot restore ignores.

use std::io::Read;
use std::sync::Arc;

use bunker_format::SnapshotId;
use bunker_sources::mysql::BinlogPos;
use chrono::{DateTime, FixedOffset};

use crate::backup::{backup, BackupOptions, BackupSummary};
use crate::error::{RepoError, Result};
use crate::pg::base::retag;
use crate::progress::Progress;
use crate::snapshots::{self, SnapshotEntry};
use crate::Repository;

/// File name of the stream inside a physical-backup snapshot.
pub const BACKUP_FILE: &str = "backup.xbstream";
/// Tag of a complete physical backup.
pub const TAG_PHYSICAL: &str = "mysql-physical";
/// Tag of a physical backup whose position is not yet recorded.
pub const TAG_INCOMPLETE: &str = "mysql-physical-incomplete";

/// The position's tags.
pub fn position_tags(p: &BinlogPos) -> Vec<String> {
    let mut t = vec![
        TAG_PHYSICAL.to_string(),
        format!("mysql-binlog-file={}", p.file),
        format!("mysql-binlog-pos={}", p.pos),
    ];
    if !p.gtid.is_empty() {
        t.push(format!("mysql-gtid={}", p.gtid.replace(',', "/")));
    }
    t
}

/// The position a complete physical backup's tags record.
pub fn position_from_tags(tags: &[String]) -> Option<BinlogPos> {
    if !tags.iter().any(|t| t == TAG_PHYSICAL) {
        return None;
    }
    let get = |k: &str| tags.iter().find_map(|t| t.strip_prefix(k));
    Some(BinlogPos {
        file: get("mysql-binlog-file=")?.to_string(),
        pos: get("mysql-binlog-pos=")?.parse().ok()?,
        gtid: get("mysql-gtid=").unwrap_or("").replace('/', ","),
    })
}

/// A physical-backup snapshot with its position.
#[derive(Clone, Debug)]
pub struct PhysicalBackup {
    /// The snapshot.
    pub entry: SnapshotEntry,
    /// The binlog position the backup is consistent at.
    pub pos: BinlogPos,
    /// When the backup finished (no earlier point can be restored from it).
    pub end_time: DateTime<FixedOffset>,
}

/// Every complete physical backup, oldest first.
pub fn list_physical_backups(repo: &Repository) -> Result<Vec<PhysicalBackup>> {
    let mut out: Vec<PhysicalBackup> = snapshots::list(repo)?
        .into_iter()
        .filter_map(|entry| {
            let pos = position_from_tags(&entry.snapshot.tags)?;
            let end_time = entry
                .snapshot
                .summary
                .as_ref()
                .map(|s| s.backup_end)
                .unwrap_or(entry.snapshot.time);
            Some(PhysicalBackup {
                entry,
                pos,
                end_time,
            })
        })
        .collect();
    out.sort_by_key(|b| b.end_time);
    Ok(out)
}

/// Result of a physical backup.
#[derive(Debug, Clone)]
pub struct PhysicalResult {
    /// The backup's summary.
    pub summary: BackupSummary,
    /// The final (tagged) snapshot.
    pub snapshot_id: SnapshotId,
    /// The binlog position it is consistent at.
    pub pos: BinlogPos,
}

/// Stream an xbstream into a snapshot; once the stream ended (and the
/// program succeeded), `position` says where the backup is consistent
/// (from `mariadb-backup`'s log or its `xtrabackup_info`).
pub fn save_physical_backup(
    repo: &Arc<Repository>,
    stream: Box<dyn Read + Send>,
    position: &dyn Fn() -> Option<BinlogPos>,
    tags: &[String],
    host: Option<String>,
    progress: &dyn Progress,
) -> Result<PhysicalResult> {
    let mut first = tags.to_vec();
    first.push(TAG_INCOMPLETE.to_string());
    let summary = backup(
        repo,
        BackupOptions {
            stdin: Some((stream, BACKUP_FILE.to_string())),
            tags: first,
            host,
            ..Default::default()
        },
        progress,
    )?;
    let old = summary
        .snapshot_id
        .ok_or_else(|| RepoError::Invalid("physical backup wrote no snapshot".into()))?;
    let pos = position().ok_or_else(|| {
        RepoError::Invalid(format!(
            "mariadb-backup did not report a binlog position (is log_bin enabled on the server?); \
             snapshot {} stays tagged {TAG_INCOMPLETE}",
            old.short()
        ))
    })?;
    let mut final_tags = tags.to_vec();
    final_tags.extend(position_tags(&pos));
    let snapshot_id = retag(repo, old, final_tags)?;
    Ok(PhysicalResult {
        summary,
        snapshot_id,
        pos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::test_repo;
    use crate::progress::NoProgress;

    #[test]
    fn a_saved_backup_is_listed_with_its_position() {
        let (_d, repo) = test_repo();
        let pos = BinlogPos {
            file: "binlog.000002".into(),
            pos: 794,
            gtid: "0-1-3,1-1-9".into(),
        };
        let p = pos.clone();
        let r = save_physical_backup(
            &repo,
            Box::new(std::io::Cursor::new(vec![7u8; 10_000])),
            &move || Some(p.clone()),
            &["bunker:item=db".to_string()],
            None,
            &NoProgress,
        )
        .unwrap();
        assert_eq!(r.pos, pos);
        let all = list_physical_backups(&repo).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].pos, pos);
        assert_eq!(all[0].entry.id, r.snapshot_id);
        assert!(all[0]
            .entry
            .snapshot
            .tags
            .contains(&"bunker:item=db".to_string()));
        // Without a position the snapshot stays incomplete and is not listed.
        let e = save_physical_backup(
            &repo,
            Box::new(std::io::Cursor::new(vec![1u8; 10])),
            &|| None,
            &[],
            None,
            &NoProgress,
        )
        .unwrap_err();
        assert!(e.to_string().contains("log_bin"), "{e}");
        assert_eq!(list_physical_backups(&repo).unwrap().len(), 1);
        // Binlogs before the backup's start file are no longer needed;
        // another series is left alone.
        let archived: Vec<bunker_sources::mysql::BinlogName> = [
            "binlog.000001",
            "binlog.000002",
            "binlog.000003",
            "other.000001",
        ]
        .iter()
        .map(|n| bunker_sources::mysql::BinlogName::parse(n).unwrap())
        .collect();
        assert_eq!(
            crate::mysql::verify::prunable(&archived, &all),
            ["binlog.000001"]
        );
    }
}
