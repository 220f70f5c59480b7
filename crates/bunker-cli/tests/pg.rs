//! PostgreSQL end to end: WAL archiving, base backups, point-in-time
//! restore to times, transaction ids and restore points, wal-verify, and
//! logical dumps, against a real PostgreSQL 15 started by the test as the
//! `postgres` user. Skipped (with a note) when not root or PostgreSQL is
//! missing. The WAL push contract tests need no PostgreSQL.

mod common;
mod pg_cluster;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, PASSWORD};
use pg_cluster::{
    bunker_exe, bunker_pg, free_port, give_to_postgres, pg_available, psql, run, Cluster, PG_BIN,
};
use rand::RngCore;

fn random_segment(seed: u64, random_part: usize) -> Vec<u8> {
    let mut v = vec![0u8; 16 << 20];
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    rng.fill_bytes(&mut v[..random_part]);
    v
}

#[test]
fn wal_push_duplicates_conflicts_and_kill() {
    let env = Env::init();
    let seg = "000000010000000000000007";
    let path = env.path(seg);
    std::fs::write(&path, random_segment(1, 4 << 20)).unwrap();
    let started = Instant::now();
    env.bunker()
        .args(["pg", "wal-push"])
        .arg(&path)
        .assert()
        .success();
    eprintln!(
        "wal-push of a 16 MiB segment (debug build): {:.2}s",
        started.elapsed().as_secs_f64()
    );
    // Identical again: success.
    env.bunker()
        .args(["pg", "wal-push"])
        .arg(&path)
        .assert()
        .success();
    // Different content under the same name: refused loudly.
    std::fs::write(&path, random_segment(2, 4 << 20)).unwrap();
    let out = env
        .bunker()
        .args(["pg", "wal-push"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different WAL file"));
    // The first version is what comes back.
    let back = env.path("back");
    env.bunker()
        .args(["pg", "wal-fetch", seg])
        .arg(&back)
        .assert()
        .success();
    assert_eq!(std::fs::read(&back).unwrap(), random_segment(1, 4 << 20));
    // Missing: exit 1, nothing on stderr.
    let out = env
        .bunker()
        .args(["pg", "wal-fetch", "000000010000000000000099"])
        .arg(env.path("none"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!env.path("none").exists());

    // kill -9 in the middle of a push: nothing half-visible, the retry works.
    for (i, delay) in [5u64, 40, 120, 300].iter().enumerate() {
        let name = format!("0000000100000000000000{:02X}", 0x20 + i);
        let p = env.path(&name);
        let data = random_segment(10 + i as u64, 16 << 20);
        std::fs::write(&p, &data).unwrap();
        let mut child = std::process::Command::new(bunker_exe())
            .env("BUNKER_REPOSITORY", &env.repo)
            .env("BUNKER_PASSWORD", PASSWORD)
            .args(["pg", "wal-push"])
            .arg(&p)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*delay));
        let _ = child.kill();
        let _ = child.wait();
        let fetched = env.path("fetched");
        let out = env
            .bunker()
            .args(["pg", "wal-fetch", &name])
            .arg(&fetched)
            .output()
            .unwrap();
        if out.status.success() {
            assert_eq!(std::fs::read(&fetched).unwrap(), data, "complete or absent");
        } else {
            assert_eq!(out.status.code(), Some(1));
        }
        let visible: Vec<_> = std::fs::read_dir(env.repo.join("bunker/wal"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert!(visible.iter().all(|n| n.len() == 24), "{visible:?}");
        env.bunker()
            .args(["pg", "wal-push"])
            .arg(&p)
            .assert()
            .success();
        env.bunker()
            .args(["pg", "wal-fetch", &name])
            .arg(&fetched)
            .assert()
            .success();
        assert_eq!(std::fs::read(&fetched).unwrap(), data);
    }
    // restic still checks the repository clean with bunker/wal beside it.
    common::restic_check_clean(&env.repo);
}

/// A repository, a password file, and the temp dir handed to `postgres`.
fn pg_env() -> (Env, PathBuf) {
    let env = Env::init();
    let dir = env.dir.path().to_path_buf();
    let pw = dir.join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    give_to_postgres(&dir);
    (env, pw)
}

/// A started cluster in `<temp>/data` archiving into the repository with `pg wal-push`.
fn archiving_primary(env: &Env, pw: &Path) -> Cluster {
    archiving_primary_with(env, pw, "")
}

/// As [`archiving_primary`], with `extra_conf` appended to postgresql.conf.
fn archiving_primary_with(env: &Env, pw: &Path, extra_conf: &str) -> Cluster {
    let cluster = Cluster::archiving(env.dir.path().join("data"), &env.repo, pw, extra_conf);
    cluster.start();
    cluster
}

fn pgbench(port: u16, args: &[&str]) -> Command {
    let mut c = Command::new(format!("{PG_BIN}/pgbench"));
    c.args(["-h", "127.0.0.1", "-U", "postgres", "-p", &port.to_string()])
        .args(args)
        .arg("postgres");
    c
}

#[test]
fn postgres_pitr_dedup_verify_and_dumps() {
    if !pg_available() {
        return;
    }
    let (env, pw) = pg_env();
    let dir = env.dir.path().to_path_buf();
    // No autovacuum: whether it happened to visit pgbench_accounts between
    // the second and third base backups (setting hint bits and visibility-map
    // bits on every page) decided whether the third one deduplicated.
    let cluster = archiving_primary_with(&env, &pw, "autovacuum = off\n");
    let port = cluster.port;
    let p = port.to_string();
    let pgbench = |args: &[&str]| pgbench(port, args);
    run(pgbench(&["-i", "-s", "10", "-q"]).stderr(Stdio::null()));

    // Base backup while pgbench writes.
    let mut load = pgbench(&["-T", "15", "-c", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let conn = [
        "--pghost",
        "127.0.0.1",
        "--pgport",
        &p,
        "--pguser",
        "postgres",
    ];
    let first: serde_json::Value = serde_json::from_str(&run(bunker_pg(&env.repo, &pw)
        .args(["--json", "pg", "backup"])
        .args(conn)))
    .unwrap();
    assert!(load.wait().unwrap().success());

    // Markers: row k committed, then its time, xid and a restore point.
    psql(
        port,
        "postgres",
        "CREATE TABLE marks (k int primary key, xid bigint)",
    );
    struct Mark {
        k: i32,
        time: String,
        xid: String,
    }
    let mut marks = Vec::new();
    for k in 1..=3 {
        let xid = psql(
            port,
            "postgres",
            &format!("INSERT INTO marks VALUES ({k}, txid_current()) RETURNING xid"),
        );
        std::thread::sleep(Duration::from_millis(300));
        let time = psql(port, "postgres", "SELECT clock_timestamp()");
        psql(
            port,
            "postgres",
            &format!("SELECT pg_create_restore_point('mark{k}')"),
        );
        std::thread::sleep(Duration::from_millis(300));
        marks.push(Mark { k, time, xid });
    }
    psql(
        port,
        "postgres",
        "INSERT INTO marks VALUES (4, txid_current())",
    );
    cluster.switch_wal_and_wait_archived(Duration::from_secs(120));

    // Restore to a time, an xid and a restore point; each finds exactly its rows.
    let targets: Vec<(Vec<String>, i32)> = vec![
        (
            vec!["--target-time".into(), marks[1].time.clone()],
            marks[1].k,
        ),
        (
            vec!["--target-xid".into(), marks[0].xid.clone()],
            marks[0].k,
        ),
        (vec!["--target-name".into(), "mark3".into()], marks[2].k),
    ];
    for (i, (target, want)) in targets.iter().enumerate() {
        let rport = free_port();
        let rdir = dir.join(format!("restored{i}"));
        let restored = Cluster {
            data: rdir.clone(),
            port: rport,
        };
        run(bunker_pg(&env.repo, &pw)
            .args(["pg", "restore", "--target-dir"])
            .arg(&rdir)
            .args(target)
            .args([
                "--port",
                &rport.to_string(),
                "--no-archive",
                "--start",
                "--timeout",
                "300",
            ]));
        let rows = psql(
            restored.port,
            "postgres",
            "SELECT string_agg(k::text, ',' ORDER BY k) FROM marks",
        );
        let expect: Vec<String> = (1..=*want).map(|k| k.to_string()).collect();
        assert_eq!(rows, expect.join(","), "target {target:?}");
        let n = psql(
            restored.port,
            "postgres",
            "SELECT count(*) FROM pgbench_accounts",
        );
        assert_eq!(n, "1000000");
        if i == 0 {
            run(Command::new(format!("{PG_BIN}/pg_amcheck"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "--install-missing",
                    "-d",
                    "postgres",
                ])
                .arg("-p")
                .arg(rport.to_string()));
        }
        drop(restored);
    }
    // A non-empty target is refused without --force.
    let out = bunker_pg(&env.repo, &pw)
        .args(["pg", "restore", "--immediate", "--target-dir"])
        .arg(dir.join("restored0"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));

    // A base backup after the pgbench run (which touched pages all over the
    // table), then one of a lightly changed cluster: that one adds little.
    // The light change is 1000 rows updated in place (HOT, fillfactor 50) in
    // a table of their own, so where the new row versions land does not
    // depend on luck. It was an UPDATE of 1000 pgbench_accounts rows, whose
    // new versions went wherever the free space map pointed after pgbench's
    // random updates, and an autovacuum run in between (hint bits and
    // visibility-map bits on every page) made it worse: "second base backup
    // added 61675773 of 182258688" at random. Autovacuum is off, so nothing
    // else touches a page between the two backups.
    psql(
        port,
        "postgres",
        "CREATE TABLE light (k int primary key, v int) WITH (fillfactor = 50); \
         INSERT INTO light SELECT g, 0 FROM generate_series(1, 1000) g",
    );
    psql(port, "postgres", "CHECKPOINT");
    let second: serde_json::Value = serde_json::from_str(&run(bunker_pg(&env.repo, &pw)
        .args(["--json", "pg", "backup"])
        .args(conn)))
    .unwrap();
    eprintln!(
        "base backup after the pgbench run: added {} of {} bytes",
        second["data_added"], second["tar_bytes"]
    );
    psql(port, "postgres", "UPDATE light SET v = v + 1");
    psql(port, "postgres", "CHECKPOINT");
    let third: serde_json::Value = serde_json::from_str(&run(bunker_pg(&env.repo, &pw)
        .args(["--json", "pg", "backup"])
        .args(conn)))
    .unwrap();
    let added = third["data_added"].as_u64().unwrap();
    let total = third["tar_bytes"].as_u64().unwrap();
    eprintln!(
        "base backups: first added {} of {} bytes; lightly changed one added {added} of {total} bytes (ratio {:.3})",
        first["data_added"], first["tar_bytes"],
        added as f64 / total as f64
    );
    assert!(
        added * 4 < total,
        "second base backup added {added} of {total}"
    );

    // wal-verify: complete; then a removed segment is found.
    psql(port, "postgres", "SELECT pg_switch_wal()");
    std::thread::sleep(Duration::from_secs(2));
    run(bunker_pg(&env.repo, &pw).args(["pg", "wal-verify"]));
    let start_wal = first["start_wal"].as_str().unwrap().to_string();
    let mut victim = start_wal.clone();
    let next = u64::from_str_radix(&start_wal[16..24], 16).unwrap() + 1;
    victim.replace_range(16..24, &format!("{next:08X}"));
    std::fs::remove_file(env.repo.join("bunker/wal").join(&victim)).unwrap();
    let out = bunker_pg(&env.repo, &pw)
        .args(["pg", "wal-verify"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("missing {victim}")));

    // Logical dump and restore round trip.
    run(bunker_pg(&env.repo, &pw)
        .args(["pg", "dump", "-d", "postgres"])
        .args(conn));
    run(bunker_pg(&env.repo, &pw)
        .args(["pg", "restore-dump", "--from-db", "postgres", "-d", "copy"])
        .args(conn));
    let out = bunker_pg(&env.repo, &pw)
        .args(["pg", "restore-dump", "--from-db", "postgres", "-d", "copy"])
        .args(conn)
        .output()
        .unwrap();
    assert!(!out.status.success(), "existing database is not clobbered");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    // Plain dumps, without the random `\restrict` keys of recent releases.
    let dump_of = |db: &str| {
        run(Command::new(format!("{PG_BIN}/pg_dump")).args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-p",
            &p,
            "-d",
            db,
        ]))
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
    };
    assert_eq!(dump_of("postgres"), dump_of("copy"));
    drop(cluster);
}

/// A base backup taken from a streaming standby (the primary archives the
/// WAL), restored to a transaction committed on the primary after it.
#[test]
fn standby_base_backup_and_pitr() {
    if !pg_available() {
        return;
    }
    let (env, pw) = pg_env();
    let dir = env.dir.path().to_path_buf();
    let primary = archiving_primary(&env, &pw);
    run(pgbench(primary.port, &["-i", "-s", "1", "-q"]).stderr(Stdio::null()));
    let standby = Cluster::standby_of(&primary, dir.join("standby"));
    standby.start();
    assert_eq!(standby.sql("SELECT pg_is_in_recovery()"), "t");

    // The backup comes from the standby while pgbench writes on the primary.
    let mut load = pgbench(primary.port, &["-T", "6", "-c", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let out = bunker_pg(&env.repo, &pw)
        .args(["--json", "pg", "backup", "--pghost", "127.0.0.1"])
        .args([
            "--pguser",
            "postgres",
            "--pgport",
            &standby.port.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken from a standby"));
    let backup: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(load.wait().unwrap().success());
    assert_eq!(backup["backup_from"], "standby", "{backup}");
    assert_eq!(backup["timeline"], 1);
    let system = primary.sql("SELECT system_identifier FROM pg_control_system()");
    assert_eq!(backup["system_identifier"].as_str(), Some(system.as_str()));
    let snaps: serde_json::Value = serde_json::from_str(&run(bunker_pg(&env.repo, &pw).args([
        "--json",
        "snapshots",
        "--tag",
        "pg-base",
    ])))
    .unwrap();
    let tags: Vec<&str> = snaps[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    for want in [
        "pg-from=standby".to_string(),
        "pg-timeline=1".to_string(),
        format!("pg-system={system}"),
        format!("pg-stop-lsn={}", backup["stop_lsn"].as_str().unwrap()),
    ] {
        assert!(tags.contains(&want.as_str()), "{want} not in {tags:?}");
    }
    assert!(
        tags.iter().any(|t| t.starts_with("pg-next-xid=")),
        "{tags:?}"
    );

    // Markers committed on the primary after the backup; the primary
    // archives the segments holding them (and the backup's stop point).
    primary.sql("CREATE TABLE marks (k int primary key)");
    let xid = primary.sql("INSERT INTO marks VALUES (1) RETURNING txid_current()");
    primary.sql("INSERT INTO marks VALUES (2)");
    let history = primary.sql("SELECT count(*) FROM pgbench_history");
    primary.switch_wal_and_wait_archived(Duration::from_secs(120));

    let report: serde_json::Value = serde_json::from_str(&run(bunker_pg(&env.repo, &pw).args([
        "--json",
        "pg",
        "wal-verify",
    ])))
    .unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["backups"][0]["restorable"], true, "{report}");

    // No snapshot named: the selection must pick the standby backup for the xid.
    let rdir = dir.join("restored");
    let restored = Cluster {
        data: rdir.clone(),
        port: free_port(),
    };
    let res: serde_json::Value = serde_json::from_str(&run(bunker_pg(&env.repo, &pw)
        .args([
            "--json",
            "pg",
            "restore",
            "--target-xid",
            &xid,
            "--target-dir",
        ])
        .arg(&rdir)
        .args(["--port", &restored.port.to_string()])
        .args(["--no-archive", "--start", "--timeout", "300"])))
    .unwrap();
    assert_eq!(res["snapshot_id"], backup["snapshot_id"]);
    let label = std::fs::read_to_string(rdir.join("backup_label.old")).unwrap();
    assert!(label.contains("BACKUP FROM: standby"), "{label}");
    let rows = psql(
        restored.port,
        "postgres",
        "SELECT string_agg(k::text, ',' ORDER BY k) FROM marks",
    );
    assert_eq!(rows, "1", "exactly the rows up to the target transaction");
    assert_eq!(
        psql(
            restored.port,
            "postgres",
            "SELECT count(*) FROM pgbench_history"
        ),
        history
    );
    drop(restored);
    drop(standby);
    drop(primary);
}

/// `pg backup --timeout` against a server that accepts connections but
/// never answers: the postmaster is stopped (SIGSTOP), so a new connection
/// waits in the listen queue for good. Regression: the query for the next
/// transaction id ran psql without the time limit, so the backup hung
/// before pg_basebackup even started. Now it fails within the limit with a
/// clear message and leaves no snapshot.
#[test]
fn base_backup_timeout_stops_a_hung_server() {
    if !pg_available() {
        return;
    }
    let (env, pw) = pg_env();
    let cluster = archiving_primary(&env, &pw);
    let p = cluster.port.to_string();
    let snapshots = || -> usize {
        let out = run(bunker_pg(&env.repo, &pw).args(["--json", "snapshots"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array().map_or(0, Vec::len)
    };
    let before = snapshots();
    let pid_file = std::fs::read_to_string(cluster.data.join("postmaster.pid")).unwrap();
    let pid = pid_file.lines().next().unwrap().trim().to_string();
    let signal = |sig: &str| run(Command::new("kill").args([sig, &pid]));
    signal("-STOP");
    let mut child = bunker_pg(&env.repo, &pw)
        .args(["pg", "backup", "--timeout", "2s", "--pghost", "127.0.0.1"])
        .args(["--pgport", &p, "--pguser", "postgres"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Two limits at most (the query, then pg_basebackup), plus the 10 s
    // grace before SIGKILL each; past 60 s it hangs.
    let status = common::wait_at_most(&mut child, Duration::from_secs(60));
    signal("-CONT");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let status = status.expect("pg backup --timeout 2s hung against a stopped server");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("did not finish within 2s"), "{err}");
    assert_eq!(snapshots(), before, "a stopped backup left a snapshot");
    drop(cluster);
}
