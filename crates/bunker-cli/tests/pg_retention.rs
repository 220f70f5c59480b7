//! PITR-aware retention and the base-backup start-up rule against a real
//! PostgreSQL 15 (skipped with a note when not root or PostgreSQL is
//! missing): four base backups with archived WAL between them, aged by
//! rewriting their snapshot times, then `bunker forget` on a policy with
//! `pitr: 7d` and `keep_within_daily: 35d` removes exactly the expected
//! base backup and WAL, `wal-verify` stays clean, restic still checks the
//! repository, and a point-in-time restore from the window's first base
//! backup still reaches a point after the newest one. `pg archive-command`
//! needs no server.

mod common;
mod pg_cluster;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bunker_format::snapshot::Snapshot;
use bunker_repo::{snapshots, RepoOptions, Repository};
use bunker_storage::FileType;
use common::{Env, PASSWORD};
use pg_cluster::{
    as_postgres, bunker_pg, chown_postgres, give_to_postgres, pg_available, run, Cluster, PG_BIN,
};

const SEG: u64 = 16 << 20;

fn json(cmd: &mut Command) -> serde_json::Value {
    serde_json::from_str(&run(cmd)).expect("JSON output")
}

fn segno_of_lsn(lsn: &str) -> u64 {
    let (hi, lo) = lsn.split_once('/').expect("X/Y");
    let v = (u64::from_str_radix(hi, 16).expect("hex") << 32)
        | u64::from_str_radix(lo, 16).expect("hex");
    v / SEG
}

/// The segment number a WAL file name (segment or `.backup`) belongs to.
fn segno_of_name(name: &str) -> Option<u64> {
    if name.ends_with(".history") || name.len() < 24 {
        return None;
    }
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
    Some(log * 0x100 + seg)
}

fn wal_files(env: &Env) -> BTreeSet<String> {
    std::fs::read_dir(env.repo.join("bunker/wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// Move a snapshot `days` back in time (time and summary), the way a tag
/// rewrite does it: a new file with `original` set, the old one removed.
fn age_snapshot(repo: &Repository, id: &str, days: i64) -> String {
    let by = chrono::Duration::days(days);
    let mut snap: Snapshot = repo
        .load_json(FileType::Snapshot, id, "snapshot")
        .expect("snapshot");
    snap.time -= by;
    if let Some(s) = snap.summary.as_mut() {
        s.backup_start -= by;
        s.backup_end -= by;
    }
    if snap.original.is_none() {
        snap.original = Some(id.parse().expect("id"));
    }
    let new = snapshots::save(repo, &snap).expect("save");
    repo.storage()
        .remove(FileType::Snapshot, id)
        .expect("remove old");
    new.to_string()
}

fn policy(env: &Env, pw: &Path, port: u16, schedule: &str) -> PathBuf {
    let path = env.path("bunker.yaml");
    std::fs::write(
        &path,
        format!(
            "repositories:\n  local:\n    location: {}\n    password_file: {}\n\
             items:\n  - name: db\n    kind: postgres\n    postgres:\n      host: 127.0.0.1\n      port: {port}\n      user: postgres\n      mode: physical\n      pitr: 7d\n\
             \x20   schedule: \"{schedule}\"\n    retention:\n      keep_within_daily: 35d\n",
            env.repo.display(),
            pw.display()
        ),
    )
    .expect("policy");
    chown_postgres(&path);
    path
}

#[test]
fn archive_command_lines_for_an_item() {
    let env = Env::new();
    let pw = env.path("pw");
    std::fs::write(&pw, "secret\n").expect("pw");
    let path = policy(&env, &pw, 5432, "@daily");
    let out = env
        .bare()
        .args(["pg", "archive-command", "--item", "db", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("archive_mode = on"), "{text}");
    let archive = text
        .lines()
        .find(|l| l.starts_with("archive_command = '"))
        .expect("archive_command line");
    assert!(archive.ends_with(" pg wal-push %p'"), "{archive}");
    assert!(
        archive.contains(&format!("--password-file {}", pw.display())),
        "{archive}"
    );
    assert!(
        archive.contains(&format!("-r {}", env.repo.display())),
        "{archive}"
    );
    assert!(text.contains(" pg wal-fetch %f %p'"), "{text}");
    // An item that is not physical postgres is refused.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .expect("read")
            .replace("mode: physical\n      pitr: 7d\n", "mode: logical\n"),
    )
    .expect("write");
    let out = env
        .bare()
        .args(["pg", "archive-command", "--item", "db", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(!out.status.success());
}

#[test]
fn pitr_retention_keeps_the_window_and_restores() {
    if !pg_available() {
        return;
    }
    let env = Env::init();
    let dir = env.dir.path().to_path_buf();
    let pw = dir.join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).expect("pw");
    give_to_postgres(&dir);
    let cluster = Cluster::archiving(dir.join("data"), &env.repo, &pw, "");
    cluster.start();
    let port = cluster.port.to_string();
    let conn = [
        "--pghost",
        "127.0.0.1",
        "--pgport",
        &port,
        "--pguser",
        "postgres",
    ];
    let cfg = policy(&env, &pw, cluster.port, "every 30d");
    cluster.sql("CREATE TABLE marks (k int primary key)");

    // Four base backups with archived WAL between them.
    let mut backups = Vec::new();
    for i in 0..4 {
        let b = json(
            bunker_pg(&env.repo, &pw)
                .args(["--json", "pg", "backup", "--tag", "bunker:item=db"])
                .args(conn),
        );
        backups.push(b);
        cluster.sql(&format!(
            "CREATE TABLE filler{i} AS SELECT g, md5(g::text) FROM generate_series(1, 20000) g"
        ));
        cluster.switch_wal_and_wait_archived(Duration::from_secs(120));
    }
    // After the newest backup: a marker row, its time, then one more row.
    cluster.sql("INSERT INTO marks VALUES (1)");
    std::thread::sleep(Duration::from_millis(300));
    let mark_time = cluster.sql("SELECT clock_timestamp()");
    std::thread::sleep(Duration::from_millis(300));
    cluster.sql("INSERT INTO marks VALUES (2)");
    cluster.switch_wal_and_wait_archived(Duration::from_secs(120));

    // The start-up rule: recent and unchanged is not due; a restart is.
    let not_due = json(
        bunker_pg(&env.repo, &pw)
            .args(["--json", "run", "--due", "--config"])
            .arg(&cfg),
    );
    assert_eq!(not_due["results"][0]["status"], "skipped", "{not_due}");
    run(as_postgres(&format!("{PG_BIN}/pg_ctl"))
        .arg("-D")
        .arg(&cluster.data)
        .arg("-l")
        .arg(dir.join("restarted.log"))
        .args(["-w", "-m", "fast", "restart"]));
    let due = json(
        bunker_pg(&env.repo, &pw)
            .args(["--json", "run", "--due", "--config"])
            .arg(&cfg),
    );
    let reason = due["results"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.starts_with("server restarted at"), "{due}");
    assert_eq!(due["results"][0]["status"], "ok", "{due}");

    // Age the four backups: 40, 20, 10 and 2 days (the run's stays now).
    let ids: Vec<String> = {
        let storage = bunker_storage::open(&env.repo.to_string_lossy(), &[]).expect("storage");
        let repo =
            Repository::open(storage, PASSWORD.as_bytes(), RepoOptions::default()).expect("open");
        backups
            .iter()
            .zip([40, 20, 10, 2])
            .map(|(b, days)| age_snapshot(&repo, b["snapshot_id"].as_str().expect("id"), days))
            .collect()
    };
    chown_postgres(&env.repo);

    // Expected: keep_within_daily keeps 20, 10, 2 days (and the run's);
    // the window (7 days) starts at the 10-day-old backup. Backup 0 goes;
    // backup 1 keeps only its start..stop WAL; everything from backup 2 on stays.
    let range = |b: &serde_json::Value| {
        (
            segno_of_lsn(b["start_lsn"].as_str().expect("lsn")),
            segno_of_lsn(b["stop_lsn"].as_str().expect("lsn")),
        )
    };
    let (b1_start, b1_stop) = range(&backups[1]);
    let (b2_start, _) = range(&backups[2]);
    let before = wal_files(&env);
    let expect_gone: BTreeSet<String> = before
        .iter()
        .filter(|n| segno_of_name(n).is_some_and(|s| s < b1_start || (s > b1_stop && s < b2_start)))
        .cloned()
        .collect();
    assert!(!expect_gone.is_empty(), "nothing to delete: {before:?}");

    let dry = json(
        bunker_pg(&env.repo, &pw)
            .args(["--json", "forget", "--dry-run", "--item", "db", "--config"])
            .arg(&cfg),
    );
    let removed: Vec<String> = dry["removed"]
        .as_array()
        .expect("removed")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(removed, vec![ids[0].clone()], "{dry}");
    let would: BTreeSet<String> = dry["plan"]["wal_delete"]
        .as_array()
        .expect("wal_delete")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(would, expect_gone);
    assert_eq!(dry["plan"]["window_backup"], ids[2].as_str());
    assert_eq!(wal_files(&env), before, "a dry run deletes nothing");

    run(bunker_pg(&env.repo, &pw)
        .args(["forget", "--prune", "--item", "db", "--config"])
        .arg(&cfg));
    let after = wal_files(&env);
    assert_eq!(
        after,
        before
            .difference(&expect_gone)
            .cloned()
            .collect::<BTreeSet<_>>()
    );
    let left: BTreeSet<String> = json(bunker_pg(&env.repo, &pw).args(["--json", "snapshots"]))
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        !left.contains(&ids[0]) && ids[1..].iter().all(|i| left.contains(i)),
        "{left:?}"
    );

    // wal-verify with the item's window: clean, and the window covers 7 days.
    let v = json(
        bunker_pg(&env.repo, &pw)
            .args(["--json", "pg", "wal-verify", "--item", "db", "--config"])
            .arg(&cfg),
    );
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["window_covers"], true, "{v}");

    common::restic_check_clean(&env.repo);

    // Restore from the window's first base backup to the marker: replays the
    // WAL kept across the newer base backups.
    let rdir = dir.join("restored");
    let restored = Cluster {
        data: rdir.clone(),
        port: pg_cluster::free_port(),
    };
    run(bunker_pg(&env.repo, &pw)
        .args(["pg", "restore", &ids[2], "--target-dir"])
        .arg(&rdir)
        .args([
            "--target-time",
            &mark_time,
            "--no-archive",
            "--start",
            "--timeout",
            "300",
        ])
        .args(["--port", &restored.port.to_string()]));
    assert_eq!(
        pg_cluster::psql(
            restored.port,
            "postgres",
            "SELECT string_agg(k::text, ',') FROM marks"
        ),
        "1"
    );
    drop(restored);
    drop(cluster);
}
