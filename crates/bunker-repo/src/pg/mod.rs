//! PostgreSQL and SQLite in the repository.
//!
//! * [`wal_archive`]: WAL files (segments, `.history`, `.backup`) as
//!   encrypted, compressed objects under `bunker/wal/<name>`, beside the
//!   restic layout (restic ignores that directory);
//! * [`base`]: base backups streamed from `pg_basebackup` into snapshots
//!   tagged with their WAL positions, timeline and system identifier;
//! * [`restore`]: choosing the base backup for a recovery target, unpacking
//!   it safely and writing the recovery configuration;
//! * [`verify`]: gaps in the archive, the recoverable window, and the WAL
//!   no kept base backup needs;
//! * [`retention`]: PITR-aware retention (base backups a `pitr` window
//!   needs, WAL no kept base backup needs) and applying it safely;
//! * [`due`]: when a full base backup is due (server restarted, timeline or
//!   system changed since the newest one);
//! * [`save_stream`] / [`open_stream`]: one-file snapshots of a stream
//!   (`pg_dump -Fc`, `pg_dumpall --globals-only`) and reading them back;
//!   [`backup_sqlite_file`]: an online copy of a SQLite database.

pub mod base;
pub mod due;
pub mod restore;
pub mod retention;
pub mod verify;
pub mod wal_archive;
pub mod wal_check;

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use bunker_format::node::NodeType;
use bunker_format::BlobId;

use crate::backup::{backup, BackupOptions, BackupSummary};
use crate::error::{RepoError, Result};
use crate::progress::Progress;
use crate::snapshots::SnapshotEntry;
use crate::Repository;

/// Back up a stream as a snapshot holding one file `/<name>`.
pub fn save_stream(
    repo: &Arc<Repository>,
    reader: Box<dyn Read + Send>,
    name: &str,
    tags: Vec<String>,
    host: Option<String>,
    progress: &dyn Progress,
) -> Result<BackupSummary> {
    backup(
        repo,
        BackupOptions {
            stdin: Some((reader, name.to_string())),
            tags,
            host,
            ..Default::default()
        },
        progress,
    )
}

/// The content blobs of the file `/<name>` of a one-file snapshot (or of its
/// only file when `name` is `None`).
pub fn stream_content(
    repo: &Repository,
    snap: &SnapshotEntry,
    name: Option<&str>,
) -> Result<(String, Vec<BlobId>)> {
    let tree = repo.load_tree(&snap.snapshot.tree)?;
    let files: Vec<_> = tree
        .nodes
        .iter()
        .filter(|n| n.node_type == NodeType::File)
        .filter(|n| name.is_none_or(|w| n.name.as_slice() == w.as_bytes()))
        .collect();
    match files.as_slice() {
        [one] => Ok((
            String::from_utf8_lossy(&one.name).into_owned(),
            one.content.clone().unwrap_or_default(),
        )),
        _ => Err(RepoError::Invalid(format!(
            "snapshot {} does not hold exactly one {} at its root",
            snap.id.short(),
            name.map(|n| format!("file {n:?}"))
                .unwrap_or_else(|| "file".to_string())
        ))),
    }
}

/// A reader over the single file of a stream snapshot.
pub fn open_stream<'a>(
    repo: &'a Repository,
    content: &'a [BlobId],
) -> crate::dump::ContentReader<'a> {
    crate::dump::ContentReader::new(repo, content)
}

/// Back up a live SQLite database: an online-backup copy to a temporary
/// file beside the system temp dir, stored as `/<file name of db>`.
pub fn backup_sqlite_file(
    repo: &Arc<Repository>,
    db: &Path,
    tags: Vec<String>,
    host: Option<String>,
    progress: &dyn Progress,
) -> Result<BackupSummary> {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| RepoError::Invalid(format!("{} has no file name", db.display())))?;
    let tmp = std::env::temp_dir().join(format!(
        ".bunker-sqlite-{}-{}",
        std::process::id(),
        bunker_format::Id::random().short()
    ));
    let _cleanup = RemoveOnDrop(&tmp);
    bunker_sources::backup_sqlite(db, &tmp, |_, _| {})
        .map_err(|e| RepoError::Io(format!("copying {}: {e}", db.display())))?;
    let file = std::fs::File::open(&tmp)
        .map_err(|e| RepoError::Io(format!("opening {}: {e}", tmp.display())))?;
    save_stream(repo, Box::new(file), &name, tags, host, progress)
}

struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

#[cfg(test)]
pub(crate) fn test_repo() -> (tempfile::TempDir, Arc<Repository>) {
    let d = tempfile::tempdir().expect("tempdir");
    let storage =
        bunker_storage::open(&d.path().join("repo").to_string_lossy(), &[]).expect("storage");
    let repo = Repository::init(
        storage,
        b"pw",
        crate::RepoOptions::default(),
        bunker_format::keyfile::KdfParams {
            n: 1024,
            r: 8,
            p: 1,
        },
    )
    .expect("init");
    (d, repo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use crate::snapshots;

    #[test]
    fn stream_round_trip() {
        let (_d, repo) = test_repo();
        let data: Vec<u8> = (0..500_000u32).map(|i| (i % 97) as u8).collect();
        let s = save_stream(
            &repo,
            Box::new(std::io::Cursor::new(data.clone())),
            "app.dump",
            vec!["pg-dump".into()],
            None,
            &NoProgress,
        )
        .unwrap();
        let snap = snapshots::find(
            &repo,
            &s.snapshot_id.unwrap().to_string(),
            &Default::default(),
        )
        .unwrap();
        let (name, content) = stream_content(&repo, &snap, None).unwrap();
        assert_eq!(name, "app.dump");
        let mut back = Vec::new();
        open_stream(&repo, &content).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert!(stream_content(&repo, &snap, Some("other")).is_err());
    }

    #[test]
    fn sqlite_online_copy_is_stored_under_its_name() {
        let (d, repo) = test_repo();
        let db = d.path().join("app.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);",
        )
        .unwrap();
        // The writer keeps its connection open (WAL not checkpointed).
        let s = backup_sqlite_file(&repo, &db, vec![], None, &NoProgress).unwrap();
        let snap = snapshots::find(
            &repo,
            &s.snapshot_id.unwrap().to_string(),
            &Default::default(),
        )
        .unwrap();
        let (name, content) = stream_content(&repo, &snap, Some("app.db")).unwrap();
        assert_eq!(name, "app.db");
        let mut back = Vec::new();
        open_stream(&repo, &content).read_to_end(&mut back).unwrap();
        let restored = d.path().join("restored.db");
        std::fs::write(&restored, &back).unwrap();
        let r = rusqlite::Connection::open(&restored).unwrap();
        let n: i64 = r
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(n, 3);
        let ok: String = r
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        drop(conn);
        assert!(backup_sqlite_file(
            &repo,
            &d.path().join("missing.db"),
            vec![],
            None,
            &NoProgress
        )
        .is_err());
    }
}
