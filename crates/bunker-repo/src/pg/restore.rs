//! Point-in-time restore: pick the base backup that can reach the target,
//! unpack its tar into the target directory (never outside it), and write
//! `recovery.signal` plus the recovery settings into `postgresql.auto.conf`.

use std::fs;
use std::io::Write;
use std::path::{Component, Path};

use bunker_format::node::NodeType;
use bunker_sources::postgres::process::conf_quote;
use bunker_sources::postgres::Lsn;
use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};

use crate::dump::ContentReader;
use crate::error::{RepoError, Result};
use crate::pg::base::{BaseBackup, BASE_TAR};
use crate::Repository;

/// Where recovery should stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Replay all archived WAL (the end of the newest timeline).
    Latest,
    /// Stop as soon as the backup is consistent.
    Immediate,
    /// Stop before the first commit after this time (`text` as given).
    Time {
        time: DateTime<FixedOffset>,
        text: String,
    },
    Xid(u64),
    /// A restore point made with `pg_create_restore_point`.
    Name(String),
    Lsn(Lsn),
}

/// Parse a time as PostgreSQL prints it (`2024-05-01 10:00:00.123+00`) or
/// RFC 3339; without a zone the local zone is assumed.
pub fn parse_target_time(text: &str) -> Result<DateTime<FixedOffset>> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d);
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(d) = DateTime::parse_from_str(t, f) {
            return Ok(d);
        }
    }
    let stripped = t.strip_suffix(" UTC").map(|s| (s, true));
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        let (s, utc) = stripped.unwrap_or((t, false));
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
            if utc {
                return Ok(n.and_utc().fixed_offset());
            }
            if let Some(d) = Local.from_local_datetime(&n).earliest() {
                return Ok(d.fixed_offset());
            }
        }
    }
    Err(RepoError::Invalid(format!(
        "cannot read {text:?} as a time: use e.g. '2024-05-01 10:00:00+00'"
    )))
}

/// Choose the base backup to restore for `target` among `backups` (oldest
/// first, all of one cluster):
/// * time: the newest that finished before the time;
/// * LSN: the newest that ended at or before the position;
/// * xid: the newest that started before the transaction id was assigned
///   (its `pg-next-xid` is at most the xid);
/// * name: the oldest (where a restore point lies is only known by
///   replaying WAL; name a snapshot to start later);
/// * latest / immediate: the newest.
pub fn choose<'a>(backups: &'a [BaseBackup], target: &RecoveryTarget) -> Result<&'a BaseBackup> {
    let none =
        |why: String| RepoError::Invalid(format!("no base backup can reach the target: {why}"));
    if backups.is_empty() {
        return Err(none(
            "there are no base backups (run `bunker pg backup`)".into(),
        ));
    }
    let pick = match target {
        RecoveryTarget::Latest | RecoveryTarget::Immediate => backups.last(),
        RecoveryTarget::Name(_) => backups.first(),
        RecoveryTarget::Time { time, text } => {
            let found = backups.iter().rev().find(|b| b.end_time <= *time);
            if found.is_none() {
                return Err(none(format!(
                    "the oldest base backup finished at {}, after {text}",
                    backups[0].end_time
                )));
            }
            found
        }
        RecoveryTarget::Lsn(l) => {
            let found = backups.iter().rev().find(|b| b.info.stop_lsn <= *l);
            if found.is_none() {
                return Err(none(format!(
                    "the oldest base backup ends at {}, after {l}",
                    backups[0].info.stop_lsn
                )));
            }
            found
        }
        RecoveryTarget::Xid(x) => {
            let found = backups
                .iter()
                .rev()
                .find(|b| b.info.next_xid.is_some_and(|n| n <= *x));
            if found.is_none() {
                return Err(none(format!(
                    "every base backup started after transaction {x} (or records no xid); name a snapshot"
                )));
            }
            found
        }
    };
    pick.ok_or_else(|| none("internal: empty list".into()))
}

/// The lines appended to `postgresql.auto.conf`.
pub fn recovery_settings(
    target: &RecoveryTarget,
    restore_command: &str,
    action: &str,
    extra: &[(String, String)],
) -> String {
    let mut s = String::from("\n# Added by bunker pg restore\n");
    s.push_str(&format!(
        "restore_command = {}\n",
        conf_quote(restore_command)
    ));
    let (key, value) = match target {
        RecoveryTarget::Latest => (None, String::new()),
        RecoveryTarget::Immediate => (Some("recovery_target"), "immediate".to_string()),
        RecoveryTarget::Time { text, .. } => (Some("recovery_target_time"), text.clone()),
        RecoveryTarget::Xid(x) => (Some("recovery_target_xid"), x.to_string()),
        RecoveryTarget::Name(n) => (Some("recovery_target_name"), n.clone()),
        RecoveryTarget::Lsn(l) => (Some("recovery_target_lsn"), l.to_string()),
    };
    if let Some(k) = key {
        s.push_str(&format!("{k} = {}\n", conf_quote(&value)));
        s.push_str(&format!(
            "recovery_target_action = {}\n",
            conf_quote(action)
        ));
    }
    s.push_str("recovery_target_timeline = 'latest'\n");
    for (k, v) in extra {
        s.push_str(&format!("{k} = {}\n", conf_quote(v)));
    }
    s
}

/// Whether `dir` is missing or an empty directory.
pub fn is_empty_dir(dir: &Path) -> Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(RepoError::Io(format!("reading {}: {e}", dir.display()))),
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> RepoError {
    RepoError::Io(format!("{what} {}: {e}", path.display()))
}

/// Empty `dir` (for `--force`), keeping the directory itself.
pub fn clear_dir(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| io_err("reading", dir, e))?;
    for e in entries {
        let e = e.map_err(|e| io_err("reading", dir, e))?;
        let p = e.path();
        let ft = e.file_type().map_err(|err| io_err("stat", &p, err))?;
        if ft.is_dir() {
            fs::remove_dir_all(&p).map_err(|err| io_err("removing", &p, err))?;
        } else {
            fs::remove_file(&p).map_err(|err| io_err("removing", &p, err))?;
        }
    }
    Ok(())
}

/// A link target inside the data directory: relative, without `..`.
fn safe_relative(p: &Path) -> bool {
    !p.as_os_str().is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Unpack the base backup's tar into `dir` (which must be empty or
/// missing; it is created with mode 0700). Entries that would land outside
/// `dir` (absolute paths, `..`, links pointing out) are refused. Returns the
/// number of entries written.
pub fn unpack(repo: &Repository, backup: &BaseBackup, dir: &Path) -> Result<u64> {
    let tree = repo.load_tree(&backup.entry.snapshot.tree)?;
    let node = tree
        .nodes
        .iter()
        .find(|n| n.name.as_slice() == BASE_TAR.as_bytes() && n.node_type == NodeType::File)
        .ok_or_else(|| {
            RepoError::Invalid(format!(
                "snapshot {} has no /{BASE_TAR}",
                backup.entry.id.short()
            ))
        })?;
    let content = node.content.clone().unwrap_or_default();
    fs::create_dir_all(dir).map_err(|e| io_err("creating", dir, e))?;
    set_mode(dir, 0o700)?;
    let mut archive = tar::Archive::new(ContentReader::new(repo, &content));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(false);
    let mut count = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| RepoError::Io(format!("reading the base backup tar: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| RepoError::Io(format!("reading the base backup tar: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| RepoError::Io(format!("tar entry name: {e}")))?
            .into_owned();
        if !safe_relative(&path) {
            return Err(RepoError::Invalid(format!(
                "base backup entry {} would escape the target directory",
                path.display()
            )));
        }
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(|e| RepoError::Io(format!("tar link name: {e}")))?
                .map(|l| l.into_owned());
            // Tablespace links (pg_tblspc) would point outside; base backups
            // streamed to stdout cannot have tablespaces, so any such link is refused.
            let ok = link
                .as_deref()
                .is_some_and(|l| safe_relative(l) && (kind.is_hard_link() || !l.starts_with("..")));
            if !ok {
                return Err(RepoError::Invalid(format!(
                    "base backup entry {} links outside the target directory",
                    path.display()
                )));
            }
        }
        let done = entry
            .unpack_in(dir)
            .map_err(|e| RepoError::Io(format!("writing {}: {e}", path.display())))?;
        if done {
            count += 1;
        }
    }
    for sub in ["pg_wal", "pg_wal/archive_status"] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).map_err(|e| io_err("creating", &p, e))?;
    }
    Ok(count)
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(|e| io_err("chmod", p, e))
}

/// Write `recovery.signal` and append `settings` to `postgresql.auto.conf`.
pub fn write_recovery_config(dir: &Path, settings: &str) -> Result<()> {
    let signal = dir.join("recovery.signal");
    fs::write(&signal, b"").map_err(|e| io_err("writing", &signal, e))?;
    set_mode(&signal, 0o600)?;
    let auto = dir.join("postgresql.auto.conf");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&auto)
        .map_err(|e| io_err("opening", &auto, e))?;
    f.write_all(settings.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| io_err("writing", &auto, e))?;
    // Stale files from the source cluster must not survive into recovery.
    for stale in ["postmaster.pid", "standby.signal"] {
        let p = dir.join(stale);
        if p.exists() {
            fs::remove_file(&p).map_err(|e| io_err("removing", &p, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::base::BaseBackupInfo;
    use crate::snapshots::SnapshotEntry;
    use bunker_format::snapshot::Snapshot;
    use bunker_format::{Id, SnapshotId, TreeId};

    fn bb(end: &str, stop: &str, next_xid: u64) -> BaseBackup {
        let end_time = parse_target_time(end).unwrap();
        BaseBackup {
            entry: SnapshotEntry {
                id: SnapshotId::from(Id::random()),
                snapshot: Snapshot {
                    hostname: "h".into(),
                    ..Snapshot::new(
                        end_time,
                        TreeId::from(Id::random()),
                        vec!["/base.tar".into()],
                    )
                },
            },
            info: BaseBackupInfo {
                system_id: Some(1),
                timeline: 1,
                start_lsn: Lsn(0),
                stop_lsn: stop.parse().unwrap(),
                start_wal: String::new(),
                backup_from: "primary".into(),
                next_xid: Some(next_xid),
            },
            end_time,
        }
    }

    fn target_time(s: &str) -> RecoveryTarget {
        RecoveryTarget::Time {
            time: parse_target_time(s).unwrap(),
            text: s.into(),
        }
    }

    #[test]
    fn chooses_the_newest_that_can_reach() {
        let list = vec![
            bb("2024-05-01 10:00:00+00", "0/3000000", 700),
            bb("2024-05-01 11:00:00+00", "0/5000000", 800),
            bb("2024-05-01 12:00:00+00", "0/7000000", 900),
        ];
        let end = |b: &BaseBackup| b.info.stop_lsn.to_string();
        assert_eq!(
            end(choose(&list, &target_time("2024-05-01 11:30:00+00")).unwrap()),
            "0/5000000"
        );
        assert_eq!(
            end(choose(&list, &target_time("2024-05-01T13:00:00Z")).unwrap()),
            "0/7000000"
        );
        assert!(choose(&list, &target_time("2024-05-01 09:00:00+00")).is_err());
        assert_eq!(
            end(choose(&list, &RecoveryTarget::Lsn("0/6000000".parse().unwrap())).unwrap()),
            "0/5000000"
        );
        assert!(choose(&list, &RecoveryTarget::Lsn("0/1000000".parse().unwrap())).is_err());
        assert_eq!(
            end(choose(&list, &RecoveryTarget::Xid(850)).unwrap()),
            "0/5000000"
        );
        assert!(choose(&list, &RecoveryTarget::Xid(10)).is_err());
        assert_eq!(
            end(choose(&list, &RecoveryTarget::Name("x".into())).unwrap()),
            "0/3000000"
        );
        assert_eq!(
            end(choose(&list, &RecoveryTarget::Latest).unwrap()),
            "0/7000000"
        );
        assert!(choose(&[], &RecoveryTarget::Latest).is_err());
    }

    #[test]
    fn times_in_postgres_and_rfc3339_forms() {
        let a = parse_target_time("2024-05-01 10:00:00.123456+02").unwrap();
        let b = parse_target_time("2024-05-01T08:00:00.123456Z").unwrap();
        assert_eq!(a, b);
        assert!(parse_target_time("2024-05-01 10:00:00 UTC").is_ok());
        assert!(parse_target_time("2024-05-01 10:00:00").is_ok());
        assert!(parse_target_time("yesterday").is_err());
    }

    #[test]
    fn settings_are_quoted() {
        let s = recovery_settings(
            &RecoveryTarget::Name("it's".into()),
            "bunker pg wal-fetch %f %p",
            "promote",
            &[("port".into(), "5433".into())],
        );
        assert!(s.contains("restore_command = 'bunker pg wal-fetch %f %p'\n"));
        assert!(s.contains("recovery_target_name = 'it''s'\n"));
        assert!(s.contains("recovery_target_action = 'promote'\n"));
        assert!(s.contains("port = '5433'\n"));
        let l = recovery_settings(&RecoveryTarget::Latest, "x", "promote", &[]);
        assert!(!l.contains("recovery_target_action"));
    }

    #[test]
    fn unsafe_paths() {
        assert!(safe_relative(Path::new("base/1/1259")));
        assert!(safe_relative(Path::new("./global/pg_control")));
        assert!(!safe_relative(Path::new("../x")));
        assert!(!safe_relative(Path::new("/etc/passwd")));
        assert!(!safe_relative(Path::new("a/../../b")));
    }

    #[test]
    fn recovery_files_and_clearing() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("postgresql.auto.conf"), "work_mem = '4MB'\n").unwrap();
        fs::write(d.path().join("postmaster.pid"), "1").unwrap();
        write_recovery_config(d.path(), "restore_command = 'x'\n").unwrap();
        assert!(d.path().join("recovery.signal").exists());
        assert!(!d.path().join("postmaster.pid").exists());
        let auto = fs::read_to_string(d.path().join("postgresql.auto.conf")).unwrap();
        assert_eq!(auto, "work_mem = '4MB'\nrestore_command = 'x'\n");
        assert!(!is_empty_dir(d.path()).unwrap());
        fs::create_dir(d.path().join("sub")).unwrap();
        clear_dir(d.path()).unwrap();
        assert!(is_empty_dir(d.path()).unwrap());
        assert!(is_empty_dir(&d.path().join("missing")).unwrap());
    }
}
