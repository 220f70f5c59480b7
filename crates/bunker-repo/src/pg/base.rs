//! Base backups: a `pg_basebackup` tar streamed into a snapshot (one file,
//! `/base.tar`), described by tags so restore and wal-verify can find them
//! without reading any data:
//!
//! `pg-base`, `pg-system=<id>`, `pg-timeline=<tli>`, `pg-start-lsn=<X/Y>`,
//! `pg-stop-lsn=<X/Y>`, `pg-start-wal=<segment>`, `pg-from=<primary|standby>`
//! and, when known, `pg-next-xid=<xid>` (the first transaction id not yet
//! assigned when the backup started).
//!
//! The stop position is known only at the end of the stream, so the snapshot
//! is first written tagged `pg-base-incomplete` and then rewritten with the
//! full tags (the way restic's `tag` command rewrites a snapshot: new file
//! with `original` set, old file removed). A crash in between leaves a
//! snapshot restore ignores.

use std::io::Read;
use std::sync::Arc;

use bunker_format::snapshot::Snapshot;
use bunker_format::SnapshotId;
use bunker_sources::postgres::label::{
    end_point_from_log, parse_backup_label, parse_manifest_wal_ranges, system_identifier,
};
use bunker_sources::postgres::{Lsn, TarScan};
use bunker_storage::FileType;
use chrono::{DateTime, FixedOffset};
use parking_lot::Mutex;

use crate::backup::{backup, BackupOptions, BackupSummary};
use crate::error::{RepoError, Result};
use crate::lock::RepoLock;
use crate::progress::Progress;
use crate::snapshots::{self, SnapshotEntry};
use crate::Repository;

/// File name of the tar inside a base-backup snapshot.
pub const BASE_TAR: &str = "base.tar";
pub const TAG_BASE: &str = "pg-base";
pub const TAG_INCOMPLETE: &str = "pg-base-incomplete";
/// Members of the tar the scanner keeps (manifests up to this size).
const CAPTURE_LIMIT: usize = 256 << 20;

/// What a base backup is, as recorded in its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseBackupInfo {
    pub system_id: Option<u64>,
    pub timeline: u32,
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    pub start_wal: String,
    pub backup_from: String,
    pub next_xid: Option<u64>,
}

impl BaseBackupInfo {
    pub fn to_tags(&self) -> Vec<String> {
        let mut t = vec![TAG_BASE.to_string()];
        if let Some(s) = self.system_id {
            t.push(format!("pg-system={s}"));
        }
        t.push(format!("pg-timeline={}", self.timeline));
        t.push(format!("pg-start-lsn={}", self.start_lsn));
        t.push(format!("pg-stop-lsn={}", self.stop_lsn));
        t.push(format!("pg-start-wal={}", self.start_wal));
        if !self.backup_from.is_empty() {
            t.push(format!("pg-from={}", self.backup_from));
        }
        if let Some(x) = self.next_xid {
            t.push(format!("pg-next-xid={x}"));
        }
        t
    }

    /// Parse the tags of a snapshot; `None` unless it is a complete base backup.
    pub fn from_tags(tags: &[String]) -> Option<BaseBackupInfo> {
        if !tags.iter().any(|t| t == TAG_BASE) {
            return None;
        }
        let get = |k: &str| {
            tags.iter()
                .find_map(|t| t.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
        };
        Some(BaseBackupInfo {
            system_id: get("pg-system").and_then(|s| s.parse().ok()),
            timeline: get("pg-timeline")?.parse().ok()?,
            start_lsn: get("pg-start-lsn")?.parse().ok()?,
            stop_lsn: get("pg-stop-lsn")?.parse().ok()?,
            start_wal: get("pg-start-wal")?.to_string(),
            backup_from: get("pg-from").unwrap_or("").to_string(),
            next_xid: get("pg-next-xid").and_then(|s| s.parse().ok()),
        })
    }
}

/// A base-backup snapshot with its description.
#[derive(Clone, Debug)]
pub struct BaseBackup {
    pub entry: SnapshotEntry,
    pub info: BaseBackupInfo,
    /// When the backup finished (recovery can reach no earlier point).
    pub end_time: DateTime<FixedOffset>,
}

/// Every complete base backup in the repository, oldest first.
pub fn list_base_backups(repo: &Repository) -> Result<Vec<BaseBackup>> {
    Ok(base_backups_of(snapshots::list(repo)?))
}

/// The complete base backups among `entries`, oldest first.
pub fn base_backups_of(entries: Vec<SnapshotEntry>) -> Vec<BaseBackup> {
    let mut out: Vec<BaseBackup> = entries
        .into_iter()
        .filter_map(|entry| {
            let info = BaseBackupInfo::from_tags(&entry.snapshot.tags)?;
            let end_time = entry
                .snapshot
                .summary
                .as_ref()
                .map(|s| s.backup_end)
                .unwrap_or(entry.snapshot.time);
            Some(BaseBackup {
                entry,
                info,
                end_time,
            })
        })
        .collect();
    out.sort_by_key(|b| (b.info.stop_lsn, b.end_time));
    out
}

/// Options of [`save_base_backup`].
#[derive(Debug, Default, Clone)]
pub struct BaseBackupRequest {
    pub host: Option<String>,
    /// Extra tags (beside the `pg-*` ones).
    pub tags: Vec<String>,
    /// `pg-next-xid`, queried before the backup started.
    pub next_xid: Option<u64>,
}

/// Result of a base backup.
#[derive(Debug, Clone)]
pub struct BaseBackupResult {
    pub summary: BackupSummary,
    pub snapshot_id: SnapshotId,
    pub info: BaseBackupInfo,
    /// Bytes of tar streamed.
    pub tar_bytes: u64,
}

/// Stream a base-backup tar (from `pg_basebackup -Ft -D -`) into a snapshot.
/// `log` is the program's standard error (its `-v` output names the end
/// point); without it the end point comes from the tar's `backup_manifest`.
pub fn save_base_backup(
    repo: &Arc<Repository>,
    tar: Box<dyn Read + Send>,
    log: Option<Arc<Mutex<Vec<u8>>>>,
    req: &BaseBackupRequest,
    progress: &dyn Progress,
) -> Result<BaseBackupResult> {
    let scan = TarScan::new(
        tar,
        &["backup_label", "backup_manifest", "global/pg_control"],
        CAPTURE_LIMIT,
    );
    let captured = scan.captured();
    let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = CountingReader {
        inner: scan,
        count: counted.clone(),
    };
    let mut tags = req.tags.clone();
    tags.push(TAG_INCOMPLETE.to_string());
    let summary = backup(
        repo,
        BackupOptions {
            stdin: Some((Box::new(reader), BASE_TAR.to_string())),
            tags: tags.clone(),
            host: req.host.clone(),
            ..Default::default()
        },
        progress,
    )?;
    let old_id = summary
        .snapshot_id
        .ok_or_else(|| RepoError::Invalid("base backup wrote no snapshot".into()))?;

    let cap = captured.lock();
    let label_text = cap.get("backup_label").ok_or_else(|| {
        RepoError::Invalid(format!(
            "the stream had no backup_label: not a pg_basebackup tar? (snapshot {} is tagged {TAG_INCOMPLETE})",
            old_id.short()
        ))
    })?;
    let label = parse_backup_label(&String::from_utf8_lossy(label_text))
        .map_err(|e| RepoError::Invalid(e.to_string()))?;
    let from_log = log
        .as_ref()
        .and_then(|l| end_point_from_log(&String::from_utf8_lossy(&l.lock())));
    let from_manifest = cap
        .get("backup_manifest")
        .and_then(|m| parse_manifest_wal_ranges(m).ok())
        .and_then(|r| r.last().map(|r| r.end));
    let stop_lsn = from_log.or(from_manifest).ok_or_else(|| {
        RepoError::Invalid(format!(
            "cannot tell where base backup {} ends (no end point in the log, no backup_manifest)",
            old_id.short()
        ))
    })?;
    let info = BaseBackupInfo {
        system_id: cap
            .get("global/pg_control")
            .and_then(|c| system_identifier(c)),
        timeline: label.start_timeline,
        start_lsn: label.start_lsn,
        stop_lsn,
        start_wal: label.start_wal_file.clone(),
        backup_from: label.backup_from.clone(),
        next_xid: req.next_xid,
    };
    drop(cap);

    let mut final_tags = req.tags.clone();
    final_tags.extend(info.to_tags());
    let snapshot_id = retag(repo, old_id, final_tags)?;
    Ok(BaseBackupResult {
        summary,
        snapshot_id,
        info,
        tar_bytes: counted.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// Replace a snapshot's tags: write the changed snapshot, then remove the old file.
pub fn retag(repo: &Arc<Repository>, id: SnapshotId, tags: Vec<String>) -> Result<SnapshotId> {
    let _lock = RepoLock::acquire(repo, false)?;
    let name = id.to_string();
    let mut snap: Snapshot = repo.load_json(FileType::Snapshot, &name, "snapshot")?;
    snap.tags = tags;
    if snap.original.is_none() {
        snap.original = Some(id);
    }
    let new_id = snapshots::save(repo, &snap)?;
    repo.storage().remove(FileType::Snapshot, &name)?;
    Ok(new_id)
}

struct CountingReader<R> {
    inner: R,
    count: Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::test_repo;
    use crate::progress::NoProgress;

    fn fake_basebackup(extra: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        };
        add(
            "backup_label",
            b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nBACKUP FROM: primary\nSTART TIMELINE: 1\n",
        );
        let mut ctl = 42u64.to_ne_bytes().to_vec();
        ctl.resize(8192, 0);
        add("global/pg_control", &ctl);
        add("base/1/1259", extra);
        add(
            "backup_manifest",
            br#"{"WAL-Ranges":[{"Timeline":1,"Start-LSN":"0/2000028","End-LSN":"0/2000138"}]}"#,
        );
        b.into_inner().unwrap()
    }

    #[test]
    fn tags_round_trip() {
        let info = BaseBackupInfo {
            system_id: Some(7),
            timeline: 2,
            start_lsn: "0/2000028".parse().unwrap(),
            stop_lsn: "0/3000000".parse().unwrap(),
            start_wal: "000000020000000000000002".into(),
            backup_from: "standby".into(),
            next_xid: Some(750),
        };
        assert_eq!(
            BaseBackupInfo::from_tags(&info.to_tags()),
            Some(info.clone())
        );
        let mut partial = info.to_tags();
        partial.retain(|t| !t.starts_with("pg-stop-lsn"));
        assert_eq!(BaseBackupInfo::from_tags(&partial), None);
        assert_eq!(BaseBackupInfo::from_tags(&["other".to_string()]), None);
    }

    #[test]
    fn stream_becomes_a_tagged_snapshot() {
        let (_d, repo) = test_repo();
        // Large enough that one changed chunk (at most 8 MiB, whatever the
        // repository's random polynomial cuts) is always less than half of it.
        let mut data = vec![0u8; 20_000_000];
        rand::RngCore::fill_bytes(
            &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(6),
            &mut data,
        );
        let tar = fake_basebackup(&data);
        let req = BaseBackupRequest {
            next_xid: Some(900),
            tags: vec!["nightly".into()],
            ..Default::default()
        };
        let r = save_base_backup(
            &repo,
            Box::new(std::io::Cursor::new(tar.clone())),
            None,
            &req,
            &NoProgress,
        )
        .unwrap();
        assert_eq!(r.tar_bytes, tar.len() as u64);
        assert_eq!(r.info.system_id, Some(42));
        assert_eq!(r.info.stop_lsn, "0/2000138".parse().unwrap());
        let list = list_base_backups(&repo).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].entry.id, r.snapshot_id);
        assert!(list[0].entry.snapshot.tags.contains(&"nightly".to_string()));
        assert!(!list[0]
            .entry
            .snapshot
            .tags
            .contains(&TAG_INCOMPLETE.to_string()));
        assert_eq!(
            snapshots::list(&repo).unwrap().len(),
            1,
            "old snapshot removed"
        );

        // A second, slightly changed backup adds little.
        let mut changed = data.clone();
        changed[1_000_000] ^= 0xff;
        let tar2 = fake_basebackup(&changed);
        let r2 = save_base_backup(
            &repo,
            Box::new(std::io::Cursor::new(tar2)),
            None,
            &req,
            &NoProgress,
        )
        .unwrap();
        assert!(
            r2.summary.data_added < r.summary.data_added / 2,
            "{} vs {}",
            r2.summary.data_added,
            r.summary.data_added
        );
    }

    #[test]
    fn a_stream_without_label_is_refused() {
        let (_d, repo) = test_repo();
        let e = save_base_backup(
            &repo,
            Box::new(std::io::Cursor::new(vec![0u8; 4096])),
            None,
            &BaseBackupRequest::default(),
            &NoProgress,
        )
        .unwrap_err();
        assert!(e.to_string().contains("backup_label"), "{e}");
        assert!(list_base_backups(&repo).unwrap().is_empty());
    }
}
