//! `wal-verify` and WAL retention: which segments each base backup needs,
//! which are missing, and which no base backup needs any more.

use std::collections::{BTreeMap, BTreeSet};

use bunker_format::SnapshotId;
use bunker_sources::postgres::{parse_history, Lsn, Segment, WalFileName};
use serde::Serialize;

use crate::error::Result;
use crate::pg::base::BaseBackup;
use crate::pg::wal_archive;
use crate::Repository;

/// The archive as sets of segments and timeline switch points.
#[derive(Debug, Default)]
pub struct ArchiveMap {
    pub segments: BTreeSet<Segment>,
    /// The current (highest) timeline.
    pub timeline: u32,
    /// For the current timeline: (parent timeline, switch point) in order.
    pub history: Vec<(u32, Lsn)>,
    pub segment_size: u64,
}

impl ArchiveMap {
    /// Read the archive listing (and the current timeline's history file).
    pub fn load(repo: &Repository, segment_size: u64) -> Result<ArchiveMap> {
        let files = wal_archive::list(repo)?;
        let mut map = ArchiveMap {
            segment_size,
            timeline: 1,
            ..Default::default()
        };
        for (_, w) in &files {
            map.timeline = map.timeline.max(w.timeline());
            if w.is_segment() {
                if let Some(s) = w.segment(segment_size) {
                    map.segments.insert(s);
                }
            }
        }
        if map.timeline > 1 {
            let name = format!("{:08X}.history", map.timeline);
            if let Some(bytes) = wal_archive::fetch(repo, &name)? {
                let h = parse_history(&String::from_utf8_lossy(&bytes))
                    .map_err(|e| crate::RepoError::Invalid(format!("{name}: {e}")))?;
                map.history = h.into_iter().map(|e| (e.parent, e.switch_point)).collect();
            }
        }
        Ok(map)
    }

    /// The timeline segment `segno` should be on, following the history of
    /// the current timeline.
    pub fn timeline_of(&self, segno: u64) -> u32 {
        for (i, (parent, switch)) in self.history.iter().enumerate() {
            if segno < switch.segno(self.segment_size) {
                return *parent;
            }
            let _ = i;
        }
        self.timeline
    }

    fn have(&self, segno: u64) -> bool {
        let tli = self.timeline_of(segno);
        self.segments.contains(&Segment { timeline: tli, segno })
            // The segment holding a switch point also exists on the child timeline.
            || self.history.iter().any(|(p, sw)| {
                sw.segno(self.segment_size) == segno
                    && self.segments.iter().any(|s| s.segno == segno && s.timeline > *p)
            })
    }

    /// The newest segment number on the current timeline.
    pub fn newest(&self) -> Option<u64> {
        self.segments
            .iter()
            .filter(|s| s.timeline == self.timeline)
            .map(|s| s.segno)
            .max()
    }
}

/// How one base backup is covered by the archive.
#[derive(Debug, Clone, Serialize)]
pub struct BackupCoverage {
    pub snapshot: String,
    pub end_time: String,
    pub start_wal: String,
    pub stop_lsn: String,
    /// Whether every segment from the backup's start to the newest archived
    /// segment on the current timeline is present.
    pub complete: bool,
    /// Whether the backup can at least be made consistent (start..stop present).
    pub restorable: bool,
    /// Missing segments as (first, last) file-name ranges.
    pub missing: Vec<(String, String)>,
    /// The last position recovery from this backup can reach.
    pub reachable_lsn: Option<String>,
    /// Older than the PITR window: retention kept only the WAL that makes
    /// it consistent, so only start..stop is checked.
    pub point_only: bool,
}

/// The `wal-verify` report.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub timeline: u32,
    pub newest_segment: Option<String>,
    pub backups: Vec<BackupCoverage>,
    /// Earliest and latest point reachable (from a complete backup).
    pub window_start: Option<String>,
    pub window_end_lsn: Option<String>,
    pub ok: bool,
}

/// Check every base backup against the archive.
pub fn verify(
    repo: &Repository,
    backups: &[BaseBackup],
    segment_size: u64,
) -> Result<VerifyReport> {
    verify_window(repo, backups, segment_size, &BTreeSet::new())
}

/// [`verify`], where the backups in `point_only` (older than a PITR
/// window, see [`crate::pg::retention::point_only`]) need only their own
/// start..stop WAL: the WAL after them was deleted on purpose.
pub fn verify_window(
    repo: &Repository,
    backups: &[BaseBackup],
    segment_size: u64,
    point_only: &BTreeSet<SnapshotId>,
) -> Result<VerifyReport> {
    let map = ArchiveMap::load(repo, segment_size)?;
    let newest = map.newest();
    let name = |segno: u64| {
        Segment {
            timeline: map.timeline_of(segno),
            segno,
        }
        .file_name(segment_size)
    };
    let mut out = Vec::new();
    for b in backups {
        let start = b.info.start_lsn.segno(segment_size);
        let stop = b.info.stop_lsn.segno(segment_size);
        let point = point_only.contains(&b.entry.id);
        let last = if point {
            stop
        } else {
            newest.unwrap_or(stop).max(stop)
        };
        let mut missing: Vec<(u64, u64)> = Vec::new();
        let mut reachable: Option<u64> = None;
        for s in start..=last {
            if map.have(s) {
                if missing.is_empty() {
                    reachable = Some(s);
                }
            } else {
                match missing.last_mut() {
                    Some((_, hi)) if *hi + 1 == s => *hi = s,
                    _ => missing.push((s, s)),
                }
            }
        }
        let restorable = reachable.is_some_and(|r| r >= stop);
        out.push(BackupCoverage {
            snapshot: b.entry.id.short(),
            end_time: b.end_time.to_rfc3339(),
            start_wal: b.info.start_wal.clone(),
            stop_lsn: b.info.stop_lsn.to_string(),
            complete: missing.is_empty() && newest.is_some() && !point,
            restorable,
            missing: missing.iter().map(|(a, z)| (name(*a), name(*z))).collect(),
            reachable_lsn: reachable
                .filter(|_| restorable)
                .map(|r| Lsn((r + 1).saturating_mul(segment_size)).to_string()),
            point_only: point,
        });
    }
    let first_complete = backups.iter().zip(&out).find(|(_, c)| c.complete);
    let ok = !out.is_empty()
        && out
            .iter()
            .all(|c| c.complete || (c.point_only && c.restorable && c.missing.is_empty()));
    Ok(VerifyReport {
        timeline: map.timeline,
        newest_segment: newest.map(name),
        window_start: first_complete.map(|(b, _)| b.end_time.to_rfc3339()),
        window_end_lsn: first_complete
            .and(newest)
            .map(|n| Lsn((n + 1).saturating_mul(segment_size)).to_string()),
        backups: out,
        ok,
    })
}

/// WAL files no kept base backup needs: segments (and backup history
/// files) before the start segment of the oldest backup in `keep`. Timeline
/// history files are always kept. Nothing is removed when `keep` is empty.
pub fn unneeded_wal(
    repo: &Repository,
    keep: &[BaseBackup],
    segment_size: u64,
) -> Result<Vec<String>> {
    let Some(oldest) = keep
        .iter()
        .map(|b| b.info.start_lsn.segno(segment_size))
        .min()
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut by_name: BTreeMap<String, WalFileName> = BTreeMap::new();
    for (n, w) in wal_archive::list(repo)? {
        by_name.insert(n, w);
    }
    for (n, w) in by_name {
        if let Some(seg) = w.segment(segment_size) {
            if seg.segno < oldest {
                out.push(n);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::base::BaseBackupInfo;
    use crate::pg::test_repo;
    use crate::snapshots::SnapshotEntry;
    use bunker_format::snapshot::Snapshot;
    use bunker_format::{Id, SnapshotId, TreeId};
    use bunker_sources::postgres::DEFAULT_SEGMENT_SIZE as S;

    fn backup(start: &str, stop: &str) -> BaseBackup {
        let time = chrono::Utc::now().fixed_offset();
        BaseBackup {
            entry: SnapshotEntry {
                id: SnapshotId::from(Id::random()),
                snapshot: Snapshot::new(time, TreeId::from(Id::random()), vec![]),
            },
            info: BaseBackupInfo {
                system_id: None,
                timeline: 1,
                start_lsn: start.parse().unwrap(),
                stop_lsn: stop.parse().unwrap(),
                start_wal: String::new(),
                backup_from: String::new(),
                next_xid: None,
            },
            end_time: time,
        }
    }

    fn push_segs(repo: &Repository, tli: u32, range: std::ops::RangeInclusive<u64>) {
        for segno in range {
            let n = Segment {
                timeline: tli,
                segno,
            }
            .file_name(S);
            wal_archive::push(repo, &n, n.as_bytes()).unwrap();
        }
    }

    #[test]
    fn gaps_and_window() {
        let (_d, repo) = test_repo();
        push_segs(&repo, 1, 2..=9);
        let b1 = backup("0/2000028", "0/2000100");
        let b2 = backup("0/6000028", "0/7000100");
        let r = verify(&repo, &[b1.clone(), b2.clone()], S).unwrap();
        assert!(r.ok, "{r:?}");
        assert_eq!(
            r.newest_segment.as_deref(),
            Some("000000010000000000000009")
        );
        assert_eq!(r.window_end_lsn.as_deref(), Some("0/A000000"));

        wal_archive::remove(&repo, "000000010000000000000004").unwrap();
        let r = verify(&repo, &[b1.clone(), b2.clone()], S).unwrap();
        assert!(!r.ok);
        assert_eq!(
            r.backups[0].missing,
            vec![(
                "000000010000000000000004".to_string(),
                "000000010000000000000004".to_string()
            )]
        );
        assert!(r.backups[0].restorable, "consistent before the gap");
        assert_eq!(r.backups[0].reachable_lsn.as_deref(), Some("0/4000000"));
        assert!(r.backups[1].complete);
        assert_eq!(r.window_start, Some(b2.end_time.to_rfc3339()));

        // Only segments before the oldest kept backup are unneeded.
        let un = unneeded_wal(&repo, &[b2], S).unwrap();
        assert_eq!(
            un,
            vec![
                "000000010000000000000002",
                "000000010000000000000003",
                "000000010000000000000005"
            ]
        );
        assert!(unneeded_wal(&repo, &[], S).unwrap().is_empty());
    }

    #[test]
    fn point_only_backups_need_only_their_own_wal() {
        let (_d, repo) = test_repo();
        push_segs(&repo, 1, 2..=3);
        push_segs(&repo, 1, 8..=9);
        let old = backup("0/2000028", "0/3000100");
        let new = backup("0/8000028", "0/8000100");
        let both = [old.clone(), new.clone()];
        let strict = verify(&repo, &both, S).unwrap();
        assert!(!strict.ok, "the pruned stretch is a gap without a window");
        let points: BTreeSet<SnapshotId> = [old.entry.id].into();
        let r = verify_window(&repo, &both, S, &points).unwrap();
        assert!(r.ok, "{r:?}");
        assert!(r.backups[0].point_only && r.backups[0].restorable);
        assert!(r.backups[0].missing.is_empty());
        assert_eq!(r.window_start, Some(new.end_time.to_rfc3339()));
        // A point-only backup missing its own WAL is still an error.
        wal_archive::remove(&repo, "000000010000000000000003").unwrap();
        let r = verify_window(&repo, &both, S, &points).unwrap();
        assert!(!r.ok && !r.backups[0].restorable);
    }

    #[test]
    fn follows_the_timeline_history() {
        let (_d, repo) = test_repo();
        push_segs(&repo, 1, 2..=5);
        // Timeline 2 branched in segment 5.
        wal_archive::push(
            &repo,
            "00000002.history",
            b"1\t0/5000100\tno recovery target specified\n",
        )
        .unwrap();
        push_segs(&repo, 2, 5..=7);
        let r = verify(&repo, &[backup("0/2000028", "0/2000100")], S).unwrap();
        assert_eq!(r.timeline, 2);
        assert!(r.ok, "{r:?}");
        assert_eq!(
            r.newest_segment.as_deref(),
            Some("000000020000000000000007")
        );
        wal_archive::remove(&repo, "000000010000000000000003").unwrap();
        let r = verify(&repo, &[backup("0/2000028", "0/2000100")], S).unwrap();
        assert_eq!(r.backups[0].missing[0].0, "000000010000000000000003");
    }
}
