//! Drills of `sqlite` items: restore the database file, verify it against
//! the snapshot, open it read-only, `PRAGMA integrity_check`, then the SQL
//! checks (and command checks, with `BUNKER_DRILL_FILE`). Every query runs
//! under the drill's deadline and cancellation (a watcher interrupts it).

use std::time::{Duration, Instant};

use bunker_policy::{CheckKind, Source};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::checks::{sql_result, CheckResult};
use super::files::{restore_verified, run_commands};
use super::{choose_snapshot, item_snapshots, Drill};
use crate::error::{EngineError, Result};

pub(super) fn run(d: &mut Drill<'_>) -> Result<()> {
    let Source::Sqlite(cfg) = &d.item.source else {
        return Err(EngineError::Invalid("not a sqlite item".into()));
    };
    let name = cfg
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let snaps = item_snapshots(&d.repo, d.item)?;
    let snap = choose_snapshot(d, &snaps)?;
    let root = restore_verified(d, &snap)?;
    let db = root.join(&name);
    d.phase("checks", |d| {
        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| EngineError::failed(format!("opening {}", db.display()), e))?;
        let start = Instant::now();
        let answer = query_first(&conn, "PRAGMA integrity_check", d.timeout, d);
        let ok = answer.as_ref().is_ok_and(|v| v.as_deref() == Some("ok"));
        let shown = match answer {
            Ok(v) => v.unwrap_or_else(|| "no row".into()),
            Err(e) => e,
        };
        d.report
            .checks
            .push(CheckResult::new("integrity_check", ok, shown, start));
        for c in d.cfg.checks.clone() {
            d.check_cancel()?;
            if let CheckKind::Sql { sql, .. } = &c.kind {
                let start = Instant::now();
                let answer = query_first(&conn, sql, c.timeout.unwrap_or(d.timeout), d);
                d.report.checks.push(sql_result(&c, answer, start));
            }
        }
        drop(conn);
        let env = vec![
            ("BUNKER_DRILL_DIR".to_string(), root.display().to_string()),
            ("BUNKER_DRILL_FILE".to_string(), db.display().to_string()),
        ];
        run_commands(d, &root, &env);
        Ok(())
    })
}

/// The first value of the first row of `sql` as text (`None` without a
/// row), interrupted past `limit` or when the job is cancelled.
fn query_first(
    conn: &Connection,
    sql: &str,
    limit: Duration,
    d: &Drill<'_>,
) -> std::result::Result<Option<String>, String> {
    let deadline = Instant::now() + limit;
    let cancel = d.opts.cancel.clone();
    let handle = conn.get_interrupt_handle();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    // Interrupts the query past the deadline or when the job is cancelled.
    let watcher = std::thread::spawn(move || loop {
        match wait.recv_timeout(Duration::from_millis(100)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if cancel.is_cancelled() || Instant::now() >= deadline {
                    handle.interrupt();
                    return;
                }
            }
            _ => return,
        }
    });
    let r = first_value(conn, sql);
    drop(done);
    let _ = watcher.join();
    r.map_err(|e| {
        if Instant::now() >= deadline {
            format!(
                "did not finish within {}",
                humantime::format_duration(limit)
            )
        } else {
            e.to_string()
        }
    })
}

fn first_value(conn: &Connection, sql: &str) -> rusqlite::Result<Option<String>> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    Ok(match row.get_ref(0)? {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Some(format!("<{} bytes>", b.len())),
    })
}
