//! `bunker run` end to end for database items: a `kind: sqlite` item on a
//! WAL-mode database written to during the run, a `kind: postgres` logical
//! item against a real PostgreSQL (skipped with a note without root and
//! PostgreSQL 15), a failing database item beside a working one, and
//! `--dry-run` leaving the repository untouched.

mod pg_cluster;
mod policy_support;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pg_cluster::{chown_postgres, free_port, pg_available, psql, psql_command, Cluster, PG_BIN};
use policy_support::{json, run_ok, stdout, tree, Ctx};
use rusqlite::Connection;

/// Every file of the repository with its contents.
fn repo_state(ctx: &Ctx) -> BTreeMap<String, Vec<u8>> {
    tree(&ctx.repo())
}

fn sqlite_db(path: &Path) -> Connection {
    let c = Connection::open(path).expect("open sqlite");
    c.busy_timeout(Duration::from_secs(10))
        .expect("busy_timeout");
    c
}

#[test]
fn sqlite_item_while_written_and_a_failing_database_item() {
    let ctx = Ctx::new();
    let db = ctx.path().join("app.db");
    {
        let c = sqlite_db(&db);
        let mode: String = c
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .expect("wal");
        assert_eq!(mode, "wal");
        c.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO t (v) SELECT printf('%0200d', i) FROM n;",
        )
        .expect("fill");
    }
    // A writer commits one row at a time until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let db = db.clone();
        std::thread::spawn(move || {
            let c = sqlite_db(&db);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                c.execute("INSERT INTO t (v) VALUES (printf('%0200d', random()))", [])
                    .expect("insert");
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let before: i64 = sqlite_db(&db)
        .query_row("SELECT max(id) FROM t", [], |r| r.get(0))
        .expect("max id");

    let dead_port = free_port();
    let policy = ctx.path().join("bunker.yaml");
    std::fs::write(
        &policy,
        format!(
            "repositories:\n  main:\n    location: ./repo\n    password_file: ./pw\n\
             items:\n\
             \x20 - name: app-db\n    kind: sqlite\n    sqlite:\n      path: ./app.db\n\
             \x20   schedule: \"every 1h\"\n\
             \x20 - name: shop-db\n    kind: postgres\n    postgres:\n      host: 127.0.0.1\n\
             \x20     port: {dead_port}\n      user: postgres\n      database: shop\n\
             \x20     mode: logical\n    schedule: \"every 1h\"\n    priority: critical\n"
        ),
    )
    .expect("policy");
    let out = {
        let mut c = ctx.bare();
        c.args(["run", "--all", "--config"]).arg(&policy);
        c.output().expect("spawn")
    };
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(written > 0);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The failing item is reported on one line that names it; the other ran.
    let failure: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("shop-db (main): "))
        .collect();
    assert_eq!(failure.len(), 1, "{text}");
    assert!(failure[0].contains("pg_dump"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("app-db") && l.contains(" ok ")),
        "{text}"
    );
    // Regression: the "Added" column showed 0 B for database items.
    assert!(
        text.lines()
            .any(|l| l.starts_with("app-db") && !l.contains(" 0 B ")),
        "{text}"
    );

    let snaps = json(&run_ok({
        let mut c = ctx.bunker();
        c.args(["snapshots", "--json", "--tag", "bunker:item=app-db"]);
        c
    }));
    let snaps = snaps.as_array().expect("snapshots");
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0]["paths"][0], "/app.db");
    let id = snaps[0]["id"].as_str().expect("id").to_string();

    // The restored copy is intact and a prefix of the writer's history
    // holding every row committed before the run started.
    let target = ctx.path().join("restored");
    run_ok({
        let mut c = ctx.bunker();
        c.args(["restore", &id, "--target"]).arg(&target);
        c
    });
    let copy = target.join("app.db");
    let c = Connection::open(&copy).expect("open copy");
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    let (count, max): (i64, i64) = c
        .query_row("SELECT count(*), max(id) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("rows");
    assert_eq!(count, max, "ids 1..=max without holes");
    assert!(
        max >= before,
        "rows up to {before} must be there, found {max}"
    );
    assert!(max <= 3000 + written as i64);
    eprintln!(
        "sqlite: max id {before} before the run, {max} in the copy, {} at the end",
        3000 + written
    );
    drop(c);

    // A dry run writes nothing.
    let state = repo_state(&ctx);
    let out = {
        let mut c = ctx.bare();
        c.args(["run", "--dry-run", "--all", "--json", "--config"])
            .arg(&policy);
        c.output().expect("spawn")
    };
    let v = json(&out);
    assert_eq!(v["dry_run"], true, "{v}");
    let status_of = |item: &str| {
        v["results"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["item"] == item))
            .map(|r| r["status"].clone())
    };
    // The readable SQLite file would be backed up; the dead server is named.
    assert_eq!(status_of("app-db"), Some(serde_json::json!("ok")), "{v}");
    assert_eq!(
        status_of("shop-db"),
        Some(serde_json::json!("failed")),
        "{v}"
    );
    assert!(
        repo_state(&ctx) == state,
        "the dry run changed the repository"
    );
}

#[test]
fn postgres_logical_item_through_run() {
    if !pg_available() {
        return;
    }
    let ctx = Ctx::new();
    std::fs::set_permissions(
        ctx.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    chown_postgres(ctx.path());
    let cluster = Cluster::init(ctx.path().join("data"), "");
    cluster.start();
    cluster.sql("CREATE DATABASE shop");
    psql(
        cluster.port,
        "shop",
        "CREATE TABLE orders (id int PRIMARY KEY, item text, qty int);
         INSERT INTO orders SELECT i, 'item ' || i, i % 7 FROM generate_series(1, 500) i",
    );
    let policy = ctx.path().join("bunker.yaml");
    std::fs::write(
        &policy,
        format!(
            "repositories:\n  main:\n    location: ./repo\n    password_file: ./pw\n\
             items:\n\
             \x20 - name: shop-db\n    kind: postgres\n    postgres:\n      host: 127.0.0.1\n\
             \x20     port: {}\n      user: postgres\n      database: shop\n\
             \x20     mode: logical\n    schedule: \"every 1h\"\n",
            cluster.port
        ),
    )
    .expect("policy");
    let path = format!("{PG_BIN}:{}", std::env::var("PATH").unwrap_or_default());
    let v = json(&run_ok({
        let mut c = ctx.bare();
        c.env("PATH", &path)
            .args(["run", "--json", "--all", "--config"])
            .arg(&policy);
        c
    }));
    assert_eq!(v["results"][0]["status"], "ok", "{v}");

    run_ok({
        let mut c = ctx.bunker();
        c.env("PATH", &path)
            .args(["pg", "restore-dump", "--from-db", "shop", "-d", "shop_copy"])
            .args(["--pghost", "127.0.0.1", "--pguser", "postgres", "--pgport"])
            .arg(cluster.port.to_string());
        c
    });
    let rows = |db: &str| {
        psql(
            cluster.port,
            db,
            "SELECT string_agg(id || ':' || item || ':' || qty, ',' ORDER BY id) FROM orders",
        )
    };
    let original = rows("shop");
    assert!(original.starts_with("1:item 1:1,2:item 2:2,"), "{original}");
    assert_eq!(rows("shop_copy"), original);

    // A dry run of the item writes nothing.
    psql(cluster.port, "shop", "UPDATE orders SET qty = qty + 1");
    let state = repo_state(&ctx);
    let out = {
        let mut c = ctx.bare();
        c.env("PATH", &path)
            .args(["run", "--dry-run", "--all", "--json", "--config"])
            .arg(&policy);
        c.output().expect("spawn")
    };
    let v = json(&out);
    assert_eq!(v["dry_run"], true);
    assert!(
        out.status.success(),
        "a dry run against a live server succeeds: {v}"
    );
    assert_eq!(v["results"][0]["status"], "ok", "{v}");
    assert!(
        repo_state(&ctx) == state,
        "the dry run changed the repository"
    );

    // Regression: pg_dump ran without a time limit, so a dump blocked on a
    // lock hung the run for good. Another session holds an exclusive lock
    // on the table; pg_dump waits for it until the item's timeout stops it.
    let mut locker = psql_command(cluster.port, "shop")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("psql");
    let mut to_locker = locker.stdin.take().expect("stdin");
    to_locker
        .write_all(b"BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n")
        .expect("lock");
    let mut line = String::new();
    std::io::BufReader::new(locker.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), "locked");
    let limited = ctx.path().join("limited.yaml");
    std::fs::write(
        &limited,
        std::fs::read_to_string(&policy)
            .expect("policy")
            .replace("mode: logical", "mode: logical\n      timeout: 2s"),
    )
    .expect("limited policy");
    let out = {
        let mut c = ctx.bare();
        c.env("PATH", &path)
            .args(["run", "--json", "--all", "--config"])
            .arg(&limited);
        c.output().expect("spawn")
    };
    let v = json(&out);
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert_eq!(v["results"][0]["status"], "failed", "{v}");
    assert!(
        v["results"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("pg_dump") && e.contains("did not finish within 2s")),
        "{v}"
    );
    // The same through `bunker pg dump --timeout`.
    let out = {
        let mut c = ctx.bunker();
        c.env("PATH", &path)
            .args(["pg", "dump", "-d", "shop", "--timeout", "2s"])
            .args(["--pghost", "127.0.0.1", "--pguser", "postgres", "--pgport"])
            .arg(cluster.port.to_string());
        c.output().expect("spawn")
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("did not finish within 2s"), "{err}");
    // No snapshot came of either, and the stopped pg_dumps left the server.
    // (The failed run's report under bunker/reports/ and the audit records
    // under bunker/audit/ are the new files.)
    let restic_layout = |m: BTreeMap<String, Vec<u8>>| {
        m.into_iter()
            .filter(|(k, _)| !k.starts_with("bunker/reports/") && !k.starts_with("bunker/audit/"))
            .collect::<BTreeMap<_, _>>()
    };
    assert!(
        restic_layout(repo_state(&ctx)) == restic_layout(state),
        "a stopped dump changed the repository"
    );
    let dumps_gone = (0..100).any(|_| {
        let n = psql(
            cluster.port,
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'",
        );
        n == "0" || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(dumps_gone, "a stopped pg_dump still holds a connection");
    to_locker.write_all(b"ROLLBACK;\n").expect("unlock");
    drop(to_locker);
    assert!(locker.wait().expect("psql").success());
    let bad = {
        let mut c = ctx.bunker();
        c.args(["pg", "dump", "-d", "shop", "--timeout", "0s"]);
        c.output().expect("spawn")
    };
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("greater than zero"),
        "a zero timeout is refused"
    );
    drop(cluster);
}
