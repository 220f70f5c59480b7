//! MySQL / MariaDB end to end against a real MariaDB started by the test:
//! logical dump and restore, physical backup and restore, point-in-time
//! restore between two inserts, and binlog-verify finding a removed file.
//! Skipped (with a note) when MariaDB's programs are missing.

mod common;
mod mysql_server;

use common::Env;
use mysql_server::{mariadb_available, Server};

const TABLE: &str =
    "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB; \
     INSERT INTO shop.t VALUES (1,'one'),(2,'two'),(3,'three'); \
     CREATE PROCEDURE shop.p() SELECT COUNT(*) FROM shop.t;";

#[test]
fn logical_dump_restores_into_another_database() {
    if !mariadb_available() {
        return;
    }
    let env = Env::init();
    let srv = Server::start(&env.path("db"));
    srv.sql(TABLE);
    env.bunker()
        .args(["mysql", "dump", "-d", "shop", "--user", "root"])
        .arg(srv.socket_arg())
        .assert()
        .success();
    env.bunker()
        .args([
            "mysql",
            "restore-dump",
            "--from-db",
            "shop",
            "-d",
            "shop_copy",
            "--user",
            "root",
        ])
        .arg(srv.socket_arg())
        .assert()
        .success();
    assert_eq!(
        srv.sql("SELECT GROUP_CONCAT(id, v ORDER BY id) FROM shop_copy.t"),
        "1one,2two,3three"
    );
    // Routines came along.
    assert_eq!(
        srv.sql(
            "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA='shop_copy'"
        ),
        "1"
    );
    // An existing database is not overwritten without --force.
    let out = env
        .bunker()
        .args([
            "mysql",
            "restore-dump",
            "--from-db",
            "shop",
            "-d",
            "shop_copy",
            "--user",
            "root",
        ])
        .arg(srv.socket_arg())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
}

/// Wait (polling the server's clock, with a deadline) until its second
/// has moved past `t`.
fn wait_past(srv: &Server, t: i64) {
    let started = std::time::Instant::now();
    while srv.sql("SELECT UNIX_TIMESTAMP()").parse::<i64>().unwrap() <= t {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the clock did not advance"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn physical_backup_restores_and_replays_binlogs_to_a_time() {
    if !mariadb_available() {
        return;
    }
    let env = Env::init();
    let srv = Server::start(&env.path("db"));
    srv.sql(TABLE);
    let out = env
        .bunker()
        .args(["--json", "mysql", "backup", "--user", "root"])
        .arg(srv.socket_arg())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["binlog_file"], "binlog.000001");
    let at_backup = srv.sql("SELECT GROUP_CONCAT(id, v ORDER BY id) FROM shop.t");

    // Two marked inserts with a target time strictly between them.
    srv.sql("INSERT INTO shop.t VALUES (10,'before')");
    let status = srv.sql("SHOW MASTER STATUS");
    let mut cols = status.split('\t');
    let position = format!("{}:{}", cols.next().unwrap(), cols.next().unwrap());
    let gtid = srv.sql("SELECT @@gtid_binlog_pos");
    let t1 = srv.sql("SELECT UNIX_TIMESTAMP()").parse::<i64>().unwrap();
    let target = t1 + 1;
    wait_past(&srv, t1);
    srv.sql("INSERT INTO shop.t VALUES (11,'after')");
    srv.sql("FLUSH BINARY LOGS");
    env.bunker()
        .args(["mysql", "binlog-push", "--index"])
        .arg(srv.binlog_index())
        .assert()
        .success();
    // Pushing again is fine (identical content).
    env.bunker()
        .args(["mysql", "binlog-push", "--index"])
        .arg(srv.binlog_index())
        .assert()
        .success();
    env.bunker()
        .args(["mysql", "binlog-verify"])
        .assert()
        .success();

    // Plain restore: the backup's contents.
    let plain = env.path("plain");
    env.bunker()
        .args(["mysql", "restore", "--target-dir"])
        .arg(&plain)
        .assert()
        .success();
    let r = Server::run(plain.clone(), env.path("ps"));
    assert_eq!(
        r.sql("SELECT GROUP_CONCAT(id, v ORDER BY id) FROM shop.t"),
        at_backup
    );
    drop(r);

    // Point in time: the first marked insert, not the second.
    let when = chrono::DateTime::from_timestamp(target, 0)
        .unwrap()
        .to_rfc3339();
    let pitr = env.path("pitr");
    let out = env
        .bunker()
        .args(["mysql", "restore", "--target-time", &when, "--target-dir"])
        .arg(&pitr)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = Server::run(pitr, env.path("rs"));
    assert_eq!(
        r.sql("SELECT GROUP_CONCAT(id, v ORDER BY id) FROM shop.t"),
        format!("{at_backup},10before")
    );
    drop(r);

    // The same point as a binlog position and as a GTID.
    for (flag, value) in [("--target-position", &position), ("--target-gtid", &gtid)] {
        let dir = env.path(&format!("t{}", &flag[9..]));
        let out = env
            .bunker()
            .args(["mysql", "restore", flag, value, "--target-dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = Server::run(dir, env.path(&format!("s{}", &flag[9..12])));
        assert_eq!(
            r.sql("SELECT GROUP_CONCAT(id, v ORDER BY id) FROM shop.t"),
            format!("{at_backup},10before"),
            "{flag} {value}"
        );
    }

    // A binlog removed from the archive is a gap binlog-verify reports,
    // and a point-in-time restore across it fails clearly.
    srv.sql("INSERT INTO shop.t VALUES (12,'later'); FLUSH BINARY LOGS");
    srv.sql("INSERT INTO shop.t VALUES (13,'last'); FLUSH BINARY LOGS");
    env.bunker()
        .args(["mysql", "binlog-push", "--index"])
        .arg(srv.binlog_index())
        .assert()
        .success();
    std::fs::remove_file(env.repo.join("bunker/binlog/binlog.000002")).unwrap();
    let out = env
        .bunker()
        .args(["mysql", "binlog-verify"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("missing: binlog.000002"), "{text}");
    let out = env
        .bunker()
        .args([
            "mysql",
            "restore",
            "--target-time",
            "2999-01-01T00:00:00Z",
            "--target-dir",
        ])
        .arg(env.path("gap"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("binlog.000002 is missing"), "{err}");

    // binlog-prune keeps everything from the only backup's start file on.
    let out = env
        .bunker()
        .args(["mysql", "binlog-prune"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.repo.join("bunker/binlog/binlog.000001").exists());
}

#[test]
fn run_backs_up_logical_and_physical_mysql_items() {
    if !mariadb_available() {
        return;
    }
    let env = Env::init();
    let srv = Server::start(&env.path("db"));
    srv.sql(TABLE);
    let pw = env.path("pw");
    std::fs::write(&pw, common::PASSWORD).unwrap();
    let policy = env.path("bunker.yaml");
    std::fs::write(
        &policy,
        format!(
            "repositories:\n  main:\n    location: {}\n    password_file: {}\n\
             items:\n\
             \x20 - name: shop-dump\n    kind: mysql\n    mysql: {{ socket: {}, user: root, databases: [shop] }}\n\
             \x20 - name: shop-physical\n    kind: mysql\n    mysql: {{ socket: {}, user: root, mode: physical }}\n",
            env.repo.display(),
            pw.display(),
            srv.socket.display(),
            srv.socket.display()
        ),
    )
    .unwrap();
    let out = env
        .bare()
        .args(["run", "--json", "--all", "--config"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][0]["status"], "ok", "{v}");
    assert_eq!(v["results"][1]["status"], "ok", "{v}");
    for (tag, item) in [
        ("mysql-dump", "shop-dump"),
        ("mysql-physical", "shop-physical"),
    ] {
        let snaps = env.json(&["snapshots", "--tag", &format!("{tag},bunker:item={item}")]);
        assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{tag}: {snaps}");
    }
}
