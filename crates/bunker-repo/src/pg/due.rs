//! The base-backup rule teams run next to continuous archiving: a full base
//! backup on start-up, then on schedule. "On start-up" means: the server
//! (re)started, or its timeline or system identifier changed, since the
//! newest base backup in the repository. Pure: the caller queries the server
//! (`pg_postmaster_start_time()`, `pg_control_checkpoint()`,
//! `pg_control_system()`) and lists the base backups.

use std::fmt;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::pg::base::BaseBackup;

/// What the running server says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub postmaster_start: DateTime<FixedOffset>,
    /// Timeline of the latest checkpoint.
    pub timeline: u32,
    pub system_id: u64,
}

/// Why a full base backup is due although the schedule does not say so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StartReason {
    /// No base backup of the item yet.
    NoBaseBackup,
    /// The server started after the newest base backup began.
    Restarted {
        at: DateTime<FixedOffset>,
    },
    TimelineChanged {
        from: u32,
        to: u32,
    },
    SystemChanged {
        from: u64,
        to: u64,
    },
}

impl fmt::Display for StartReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartReason::NoBaseBackup => f.write_str("no base backup yet"),
            StartReason::Restarted { at } => write!(
                f,
                "server restarted at {}",
                at.format("%Y-%m-%d %H:%M:%S %:z")
            ),
            StartReason::TimelineChanged { from, to } => {
                write!(f, "timeline changed {from}\u{2192}{to}")
            }
            StartReason::SystemChanged { from, to } => {
                write!(f, "system identifier changed {from}\u{2192}{to}")
            }
        }
    }
}

/// Whether the server has changed since `newest` (the item's newest base
/// backup) in a way that makes a new base backup due. A system identifier
/// change wins over a timeline change, which wins over a restart.
pub fn start_reason(newest: Option<&BaseBackup>, server: &ServerState) -> Option<StartReason> {
    let Some(b) = newest else {
        return Some(StartReason::NoBaseBackup);
    };
    if let Some(sys) = b.info.system_id.filter(|s| *s != server.system_id) {
        return Some(StartReason::SystemChanged {
            from: sys,
            to: server.system_id,
        });
    }
    if b.info.timeline != server.timeline {
        return Some(StartReason::TimelineChanged {
            from: b.info.timeline,
            to: server.timeline,
        });
    }
    // The snapshot time is when the backup began: a server started later
    // has restarted since.
    if server.postmaster_start > b.entry.snapshot.time {
        return Some(StartReason::Restarted {
            at: server.postmaster_start,
        });
    }
    None
}

/// Parse one line of
/// `SELECT extract(epoch from pg_postmaster_start_time()), timeline_id, system_identifier`
/// as `psql -At` prints it (`1717243200.123|1|7362...`).
pub fn parse_server_state(line: &str) -> Option<ServerState> {
    let mut parts = line.trim().split('|');
    let epoch: f64 = parts.next()?.trim().parse().ok()?;
    let timeline = parts.next()?.trim().parse().ok()?;
    let system_id = parts.next()?.trim().parse().ok()?;
    if parts.next().is_some() || !epoch.is_finite() {
        return None;
    }
    let secs = epoch.floor();
    let nanos = ((epoch - secs) * 1e9) as u32;
    let t = DateTime::from_timestamp(secs as i64, nanos)?;
    Some(ServerState {
        postmaster_start: t.fixed_offset(),
        timeline,
        system_id,
    })
}

/// The query whose output [`parse_server_state`] reads.
pub const SERVER_STATE_SQL: &str = "SELECT extract(epoch from pg_postmaster_start_time()), \
     (pg_control_checkpoint()).timeline_id, (pg_control_system()).system_identifier";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::base::BaseBackupInfo;
    use crate::snapshots::SnapshotEntry;
    use bunker_format::snapshot::Snapshot;
    use bunker_format::{Id, SnapshotId, TreeId};
    use chrono::Duration;

    fn newest(started: DateTime<FixedOffset>) -> BaseBackup {
        let info = BaseBackupInfo {
            system_id: Some(42),
            timeline: 1,
            start_lsn: "0/2000028".parse().expect("lsn"),
            stop_lsn: "0/2000100".parse().expect("lsn"),
            start_wal: "000000010000000000000002".into(),
            backup_from: "primary".into(),
            next_xid: None,
        };
        let mut snap = Snapshot::new(started, TreeId::from(Id::random()), vec![]);
        snap.tags = info.to_tags();
        BaseBackup {
            entry: SnapshotEntry {
                id: SnapshotId::from(Id::random()),
                snapshot: snap,
            },
            info,
            end_time: started + Duration::minutes(3),
        }
    }

    #[test]
    fn restart_timeline_and_system_changes_make_it_due() {
        let t0: DateTime<FixedOffset> = "2024-06-01T10:00:00+02:00".parse().expect("time");
        let b = newest(t0);
        let up = ServerState {
            postmaster_start: t0 - Duration::days(3),
            timeline: 1,
            system_id: 42,
        };
        // Unchanged and started before the backup: not due.
        assert_eq!(start_reason(Some(&b), &up), None);
        let restarted = ServerState {
            postmaster_start: t0 + Duration::hours(1),
            ..up.clone()
        };
        let r = start_reason(Some(&b), &restarted).expect("due");
        assert_eq!(
            r.to_string(),
            "server restarted at 2024-06-01 11:00:00 +02:00"
        );
        let promoted = ServerState {
            timeline: 2,
            ..restarted.clone()
        };
        assert_eq!(
            start_reason(Some(&b), &promoted).map(|r| r.to_string()),
            Some("timeline changed 1\u{2192}2".to_string())
        );
        let other = ServerState {
            system_id: 43,
            ..promoted
        };
        assert!(matches!(
            start_reason(Some(&b), &other),
            Some(StartReason::SystemChanged { from: 42, to: 43 })
        ));
        assert_eq!(start_reason(None, &up), Some(StartReason::NoBaseBackup));
        let json =
            serde_json::to_value(StartReason::TimelineChanged { from: 1, to: 2 }).expect("json");
        assert_eq!(json["reason"], "timeline_changed");
    }

    #[test]
    fn server_state_line() {
        let s = parse_server_state("1717236000.5|3|7376285403373123456\n").expect("parsed");
        assert_eq!(s.timeline, 3);
        assert_eq!(s.system_id, 7376285403373123456);
        assert_eq!(
            s.postmaster_start.to_rfc3339(),
            "2024-06-01T10:00:00.500+00:00"
        );
        for bad in ["", "x|1|2", "1|2", "1|2|3|4", "NaN|1|2", "1|-1|2"] {
            assert_eq!(parse_server_state(bad), None, "{bad:?}");
        }
    }
}
