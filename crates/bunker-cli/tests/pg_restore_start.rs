//! `pg restore --start` finds PostgreSQL's server programs the way pg_ctl
//! finds its own (a PATH holding only a pg_ctl symlink is enough), reports
//! what it waits for and until when, and fails at once, naming the
//! program, when one is missing. Against a real PostgreSQL 15 run by the
//! `postgres` user; skipped with a note when not root or PostgreSQL is
//! missing.

mod common;
mod pg_cluster;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, PASSWORD};
use pg_cluster::{
    as_postgres, bunker_exe, free_port, give_to_postgres, pg_available, psql, run, Cluster, PG_BIN,
};

/// `bunker` run as `postgres` with exactly `path` as PATH.
fn bunker_as_postgres(env: &Env, pw: &Path, path: &Path) -> Command {
    let mut c = as_postgres("env");
    c.arg(format!("PATH={}", path.display()))
        .arg(bunker_exe())
        .arg("-r")
        .arg(&env.repo)
        .arg("--password-file")
        .arg(pw);
    c
}

#[test]
fn pg_restore_start_with_only_pg_ctl_on_path_finishes_and_reports_progress() {
    if !pg_available() {
        return;
    }
    let env = Env::init();
    let dir = env.dir.path().to_path_buf();
    let pw = dir.join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    // A PATH directory holding nothing but a symlink to pg_ctl.
    let only_ctl = dir.join("only-pg-ctl");
    std::fs::create_dir(&only_ctl).unwrap();
    std::os::unix::fs::symlink(format!("{PG_BIN}/pg_ctl"), only_ctl.join("pg_ctl")).unwrap();
    give_to_postgres(&dir);

    let cluster = Cluster::archiving(dir.join("data"), &env.repo, &pw, "");
    cluster.start();
    cluster.sql("CREATE TABLE t (k int); INSERT INTO t VALUES (1)");
    let p = cluster.port.to_string();
    let mut backup = bunker_as_postgres(&env, &pw, Path::new(PG_BIN));
    backup.args([
        "pg",
        "backup",
        "--pghost",
        "127.0.0.1",
        "--pgport",
        &p,
        "--pguser",
        "postgres",
    ]);
    run(&mut backup);
    cluster.sql("INSERT INTO t VALUES (2)");
    cluster.switch_wal_and_wait_archived(Duration::from_secs(120));

    // An explicit --pg-bin without pg_controldata: refused before anything
    // is unpacked or started, naming the program.
    let bad = dir.join("bad");
    let started = Instant::now();
    let out = bunker_as_postgres(&env, &pw, &only_ctl)
        .args(["pg", "restore", "--start", "--target-dir"])
        .arg(&bad)
        .arg("--pg-bin")
        .arg(&only_ctl)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("pg_controldata") && err.contains("--pg-bin"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(!bad.join("PG_VERSION").exists(), "unpacked before failing");

    // Only pg_ctl on PATH: the other programs are found beside its target.
    let rdir = dir.join("restored");
    let restored = Cluster {
        data: rdir.clone(),
        port: free_port(),
    };
    let started = Instant::now();
    let out = bunker_as_postgres(&env, &pw, &only_ctl)
        .args(["pg", "restore", "--target-dir"])
        .arg(&rdir)
        .args([
            "--port",
            &restored.port.to_string(),
            "--no-archive",
            "--start",
        ])
        .args(["--timeout", "5m"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(started.elapsed() < Duration::from_secs(300));
    assert!(
        err.contains("waiting for recovery") && err.contains("deadline") && err.contains("in 5m"),
        "{err}"
    );
    assert_eq!(
        psql(restored.port, "postgres", "SELECT count(*) FROM t"),
        "2"
    );
}

#[test]
fn pg_restore_timeout_takes_durations_and_plain_seconds() {
    // Parsing only: no repository is opened for a rejected value.
    let env = Env::new();
    for bad in ["0", "soon", "5 parsecs"] {
        let out = env
            .bare()
            .args(["pg", "restore", "--target-dir", "x", "--timeout", bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--timeout {bad} accepted");
        assert!(err.contains("--timeout"), "{err}");
    }
    for good in ["90m", "3600", "1h30m"] {
        let out = env
            .bare()
            .args(["pg", "restore", "--timeout", good, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "--timeout {good}");
    }
}
