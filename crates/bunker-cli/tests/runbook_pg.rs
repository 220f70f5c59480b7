//! A runbook drill over a files item and a PostgreSQL physical item, with
//! `wait_for` sql and tcp steps on the sandbox server the drill started,
//! against a real PostgreSQL 15 run by the `postgres` user; skipped with a
//! note when not root or PostgreSQL is missing.

mod common;
mod pg_cluster;

use std::time::Duration;

use common::{Env, PASSWORD};
use pg_cluster::{bunker_pg, chown_postgres, give_to_postgres, pg_available, run, Cluster};

#[test]
fn runbook_drill_over_files_and_postgres_waits_on_the_sandbox_server() {
    if !pg_available() {
        return;
    }
    let env = Env::init();
    let dir = env.dir.path().to_path_buf();
    let pw = dir.join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let files = dir.join("site");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("index.html"), "v1").unwrap();
    std::fs::create_dir(dir.join("sandboxes")).unwrap();
    give_to_postgres(&dir);
    let cluster = Cluster::archiving(dir.join("data"), &env.repo, &pw, "");
    cluster.start();
    cluster.sql("CREATE TABLE orders (id int primary key)");
    cluster.sql("INSERT INTO orders VALUES (1), (2)");
    let port = cluster.port.to_string();
    run(bunker_pg(&env.repo, &pw)
        .args([
            "pg",
            "backup",
            "--tag",
            "bunker:item=db",
            "--pghost",
            "127.0.0.1",
        ])
        .args(["--pguser", "postgres", "--pgport", &port]));
    // A row after the base backup: only WAL replay brings it back.
    cluster.sql("INSERT INTO orders VALUES (3)");
    cluster.switch_wal_and_wait_archived(Duration::from_secs(120));
    run(bunker_pg(&env.repo, &pw)
        .args(["backup", "--tag", "bunker:item=web"])
        .arg(&files));

    let policy = dir.join("bunker.yaml");
    std::fs::write(
        &policy,
        format!(
            "repositories:\n  main:\n    location: {repo}\n    password_file: {pw}\n\
             items:\n  - name: web\n    paths: [{files}]\n  - name: db\n    kind: postgres\n    postgres:\n      host: 127.0.0.1\n      port: {port}\n      user: postgres\n      mode: physical\n\
             runbooks:\n  site-lost:\n    rto: 10m\n    rpo: 1d\n    steps:\n\
             \x20     - restore: {{ item: web, target: {files} }}\n\
             \x20     - pg_restore: {{ item: db, target: latest, data_dir: {data} }}\n\
             \x20     - wait_for: {{ sql: 'select count(*) = 3 from orders', timeout: 2m }}\n\
             \x20     - wait_for: {{ tcp: postgres, timeout: 1m }}\n\
             \x20     - command: 'test \"$(psql -X -Atc \"select max(id) from orders\" postgres)\" = 3 && test \"$(cat \"$BUNKER_RUNBOOK_STEP1_DIR/index.html\")\" = v1'\n",
            repo = env.repo.display(),
            pw = pw.display(),
            files = files.display(),
            data = cluster.data.display(),
        ),
    )
    .unwrap();
    chown_postgres(&policy);
    // The live site and database change after the backups.
    std::fs::write(files.join("index.html"), "live").unwrap();
    cluster.sql("INSERT INTO orders VALUES (4)");

    // The plan names the base backup and the WAL recovery would replay.
    let out = bunker_pg(&env.repo, &pw)
        .args(["--json", "runbook", "plan", "site-lost", "--config"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan");
    assert!(plan["steps"][1]["snapshot"].is_string(), "{plan}");
    assert!(
        plan["steps"][1]["wal"]
            .as_str()
            .unwrap_or("")
            .contains("file(s)"),
        "{plan}"
    );
    assert!(plan["rpo_seconds"].as_i64().is_some(), "{plan}");

    let out = bunker_pg(&env.repo, &pw)
        .args(["--json", "runbook", "drill", "site-lost", "--sandbox-dir"])
        .arg(dir.join("sandboxes"))
        .arg("--config")
        .arg(&policy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["rto_met"], true, "{v}");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5);
    for s in steps {
        assert_eq!(s["status"], "ok", "{s}");
    }
    assert!(
        steps[1]["detail"]
            .as_str()
            .unwrap()
            .contains("recovery finished"),
        "{v}"
    );
    assert!(v["rto_seconds"].as_f64().unwrap() > 0.0);
    // In place nothing changed: the live server still has its four rows,
    // the live file its content, and the sandbox is gone.
    assert_eq!(cluster.sql("SELECT count(*) FROM orders"), "4");
    assert_eq!(
        std::fs::read_to_string(files.join("index.html")).unwrap(),
        "live"
    );
    assert_eq!(std::fs::read_dir(dir.join("sandboxes")).unwrap().count(), 0);
}
