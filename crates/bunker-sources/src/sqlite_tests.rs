use super::*;
use crate::error::SourceErrorKind;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

fn payload(id: i64) -> Vec<u8> {
    (0..120).map(|i| (id as u8).wrapping_add(i as u8)).collect()
}

fn create_wal_db(path: &Path, rows: i64) -> Connection {
    let conn = Connection::open(path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v BLOB NOT NULL);
         CREATE INDEX t_v ON t(v);",
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for id in 1..=rows {
        tx.execute("INSERT INTO t (v) VALUES (?1)", [payload(id)])
            .unwrap();
    }
    tx.commit().unwrap();
    conn
}

/// Checks the copy: ids are exactly 1..=k with the writer's payloads.
fn verify_copy(path: &Path) -> i64 {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    let mut stmt = conn.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .unwrap();
    let mut expected = 1;
    for row in rows {
        let (id, v) = row.unwrap();
        assert_eq!(id, expected, "ids must be contiguous");
        assert_eq!(v, payload(id));
        expected += 1;
    }
    expected - 1
}

#[test]
fn concurrent_writer_backups_are_consistent_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("live.db");
    let initial = 20_000;
    let writer_conn = create_wal_db(&src, initial);
    let committed = Arc::new(AtomicI64::new(initial));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let committed = committed.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut id = initial;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                writer_conn
                    .execute("INSERT INTO t (v) VALUES (?1)", [payload(id)])
                    .unwrap();
                committed.store(id, Ordering::SeqCst);
            }
            id
        })
    };

    let mut seen = Vec::new();
    // sequential backups plus two running at the same time
    for round in 0..3 {
        let before = committed.load(Ordering::SeqCst);
        let dest = dir.path().join(format!("copy{round}.db"));
        let mut calls = 0u32;
        let mut last = (0, 0);
        let info = backup_sqlite(&src, &dest, |done, total| {
            calls += 1;
            assert!(done <= total);
            last = (done, total);
        })
        .unwrap();
        assert!(calls >= 1);
        assert_eq!(last.0, last.1, "progress ends complete");
        assert!(info.source_wal);
        assert!(info.pages > 100);
        assert_eq!(info.bytes, info.pages * info.page_size);
        let k = verify_copy(&dest);
        assert!(
            k >= before,
            "copy has {k} rows, {before} were committed before"
        );
        seen.push(k);
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut p = dest.as_os_str().to_owned();
            p.push(suffix);
            assert!(!Path::new(&p).exists(), "{suffix} left behind");
        }
    }
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let src = &src;
                let dest = dir.path().join(format!("par{i}.db"));
                let committed = &committed;
                s.spawn(move || {
                    let before = committed.load(Ordering::SeqCst);
                    backup_sqlite(src, &dest, |_, _| {}).unwrap();
                    let k = verify_copy(&dest);
                    assert!(k >= before);
                    k
                })
            })
            .collect();
        for h in hs {
            seen.push(h.join().unwrap());
        }
    });
    stop.store(true, Ordering::Relaxed);
    let last_id = writer.join().unwrap();
    assert!(seen.iter().all(|k| *k <= last_id));
    assert!(last_id > initial, "writer made progress during the backups");
    // backups see the writer advancing
    assert!(seen[2] >= seen[0]);
}

#[test]
fn missing_source_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let err = backup_sqlite(
        &dir.path().join("nope.db"),
        &dir.path().join("c.db"),
        |_, _| {},
    )
    .unwrap_err();
    assert_eq!(err.kind(), SourceErrorKind::NotFound);
    assert!(
        !dir.path().join("nope.db").exists(),
        "source must not be created"
    );
}

#[test]
fn rollback_journal_source_and_existing_dest() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("plain.db");
    {
        let conn = Connection::open(&src).unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL);")
            .unwrap();
        for id in 1..=50 {
            conn.execute(
                "INSERT INTO t (id, v) VALUES (?1, ?2)",
                rusqlite::params![id, payload(id)],
            )
            .unwrap();
        }
    }
    let dest = dir.path().join("copy.db");
    std::fs::write(&dest, b"garbage that is not a database").unwrap();
    let info = backup_sqlite(&src, &dest, |_, _| {}).unwrap();
    assert!(!info.source_wal);
    assert_eq!(verify_copy(&dest), 50);
}

#[test]
fn corrupt_source_fails() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bad.db");
    {
        let conn = Connection::open(&src).unwrap();
        conn.execute_batch(
            "PRAGMA page_size=4096; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL);
             CREATE INDEX t_v ON t(v);",
        )
        .unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        for id in 1..=2000 {
            tx.execute(
                "INSERT INTO t (id, v) VALUES (?1, ?2)",
                rusqlite::params![id, payload(id)],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    // Scribble over the middle of the file, leaving the header page intact.
    let mut data = std::fs::read(&src).unwrap();
    let start = 4096 * 3;
    let end = (start + 4096 * 20).min(data.len());
    for (i, b) in data[start..end].iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    std::fs::write(&src, data).unwrap();
    let err = backup_sqlite(&src, &dir.path().join("copy.db"), |_, _| {}).unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::Integrity { .. } | SourceError::Sqlite { .. }
        ),
        "{err}"
    );
}
