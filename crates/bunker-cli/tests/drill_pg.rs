//! Drills and `recover --time` of a postgres physical item against a real
//! PostgreSQL 15 archiving into the repository, beside files and sqlite
//! items: a drill to a random moment of the PITR window and one to an
//! exact time (temporary servers run as `postgres`, checked with
//! pg_amcheck and SQL), and `recover --time` landing every item at the
//! state of that time. Skipped with a note without root and PostgreSQL 15.

mod pg_cluster;
mod policy_support;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pg_cluster::{chown_postgres, give_to_postgres, pg_available, psql, run, Cluster, PG_BIN};
use policy_support::{json, run_ok, sqlite_rows, Ctx};
use rusqlite::Connection;

/// Wait until the wall clock is past `t` (snapshot and commit times are
/// compared with the point in time; no synchronisation depends on it).
fn clock_past(t: DateTime<Utc>) {
    while Utc::now() <= t {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn postgres_drills_to_window_and_time_and_recover_time_lands_every_item() {
    if !pg_available() {
        return;
    }
    let ctx = Ctx::new();
    let dir = ctx.path().to_path_buf();
    let pw = dir.join("pw");
    let repo = ctx.repo();
    run_ok({
        let mut c = ctx.bunker();
        c.arg("init");
        c
    });
    let count_file = dir.join("count");
    give_to_postgres(&dir);
    let cluster = Cluster::archiving(dir.join("pgdata"), &repo, &pw, "");
    cluster.start();
    std::fs::create_dir(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/v.txt"), b"one").unwrap();
    sqlite_rows(&dir.join("app.db"), 3);
    let policy = format!(
        "repositories:
  local: {{ location: {repo}, password_file: {pw} }}
items:
  - name: db
    kind: postgres
    postgres: {{ host: 127.0.0.1, port: {port}, user: postgres, mode: physical, pitr: 1d }}
    retention: {{ keep_last: 10 }}
    rto: 10m
    drill:
      pick: random_in_window
      sandbox: {dir}/sandboxes
      timeout: 5m
      checks:
        - select count(*) > 0 from t
        - select count(*) = 100000 from pgbench_accounts
        - {{ command: '{PG_BIN}/psql -AtX -c \"select count(*) from t\" > {count}' }}
  - name: app
    paths: [./data]
  - name: lite
    kind: sqlite
    sqlite: {{ path: ./app.db }}
",
        repo = repo.display(),
        pw = pw.display(),
        port = cluster.port,
        dir = dir.display(),
        count = count_file.display(),
    );
    std::fs::write(dir.join("bunker.yaml"), policy).unwrap();
    let path = format!("{PG_BIN}:{}", std::env::var("PATH").unwrap_or_default());
    let bunker = || {
        let mut c = ctx.bare();
        c.env("PATH", &path).env("BUNKER_CONFIG", "bunker.yaml");
        c
    };
    let run_all = || {
        run_ok({
            let mut c = bunker();
            c.args(["run", "--all"]);
            c
        })
    };

    cluster.sql("CREATE TABLE t (k int); INSERT INTO t SELECT generate_series(1, 100)");
    // pgbench's tables (scale 1: 100,000 accounts), changed by its
    // transactions inside the PITR window.
    let pgbench = |args: &[&str]| {
        run(std::process::Command::new(format!("{PG_BIN}/pgbench"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(cluster.port.to_string())
            .args(args)
            .arg("postgres"))
    };
    pgbench(&["-i", "-s", "1", "-q"]);
    run_all();
    pgbench(&["-n", "-c", "2", "-t", "200"]);
    cluster.sql("INSERT INTO t SELECT generate_series(101, 200)");
    let after_second = Utc::now();
    clock_past(after_second + chrono::Duration::milliseconds(500));
    let t_mid = Utc::now();
    clock_past(t_mid + chrono::Duration::milliseconds(500));
    cluster.sql("INSERT INTO t SELECT generate_series(201, 300)");
    std::fs::write(dir.join("data/v.txt"), b"two").unwrap();
    sqlite_rows(&dir.join("app.db"), 2);
    run_all();
    cluster.sql("INSERT INTO t SELECT generate_series(301, 400)");
    cluster.switch_wal_and_wait_archived(Duration::from_secs(120));
    chown_postgres(&dir);

    // A drill to a random moment of the window.
    let out = bunker().args(["drill", "db", "--json"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r = json(&out);
    assert_eq!(r["status"], "passed", "{r}");
    assert_eq!(r["kind"], "postgres-physical");
    let rec = &r["recovery"];
    assert_eq!(rec["target"], "time", "{r}");
    let target = DateTime::parse_from_rfc3339(rec["target_time"].as_str().unwrap()).unwrap();
    let start = DateTime::parse_from_rfc3339(rec["window_start"].as_str().unwrap()).unwrap();
    let end = DateTime::parse_from_rfc3339(rec["window_end"].as_str().unwrap()).unwrap();
    assert!(start <= target && target < end, "{rec}");
    assert_eq!(rec["target_reached"], true, "{rec}");
    if let Some(reached) = rec["reached_time"].as_str() {
        assert!(
            DateTime::parse_from_rfc3339(reached).unwrap() <= target,
            "{rec}"
        );
    }
    let checks = r["checks"].as_array().unwrap();
    assert_eq!(checks[0]["name"], "pg_amcheck");
    assert!(checks.iter().all(|c| c["ok"] == true), "{r}");
    let n: u32 = std::fs::read_to_string(&count_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((100..=400).contains(&n) && n % 100 == 0, "{n}");
    assert!(!Path::new(r["sandbox"].as_str().unwrap()).exists());

    // A random base backup at its consistent point: its own rows.
    let out = bunker()
        .args(["drill", "db", "--json", "--pick", "random"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["recovery"]["target"], "immediate");
    let n = std::fs::read_to_string(&count_file).unwrap();
    assert!(["100", "300"].contains(&n.trim()), "{n}");

    // A drill to exactly t_mid: the first two batches.
    let out = bunker()
        .args(["drill", "db", "--json", "--time"])
        .arg(t_mid.to_rfc3339())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&count_file).unwrap().trim(), "200");

    // Every item back to t_mid.
    let target_dir = dir.join("recovered");
    let out = run_ok({
        let mut c = bunker();
        c.args(["recover", "--json", "--start", "--timeout", "5m", "--time"])
            .arg(t_mid.to_rfc3339())
            .arg("--target")
            .arg(&target_dir);
        c
    });
    let r = json(&out);
    let items = r["items"].as_array().unwrap();
    let by = |name: &str| items.iter().find(|i| i["item"] == name).unwrap().clone();
    let db = by("db");
    assert_eq!(db["state"], "recovered", "{r}");
    assert_eq!(db["rpo_seconds"], 0, "{r}");
    let port = db["port"].as_u64().unwrap() as u16;
    let recovered = Cluster {
        data: target_dir.join("db"),
        port,
    };
    assert_eq!(psql(port, "postgres", "SELECT count(*) FROM t"), "200");
    drop(recovered);
    assert_eq!(by("app")["state"], "restored");
    assert_eq!(by("lite")["state"], "restored");
    let lite = Connection::open(target_dir.join("lite/app.db")).unwrap();
    let n: i64 = lite
        .query_row("select count(*) from t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
    let found = run(std::process::Command::new("find")
        .arg(target_dir.join("app"))
        .args(["-name", "v.txt"]));
    let v = found.lines().next().expect("v.txt restored");
    assert_eq!(std::fs::read(v).unwrap(), b"one");
    // No temporary server is left: only the cluster and nothing else runs
    // from the sandboxes (their directories are gone).
    let left = std::fs::read_dir(dir.join("sandboxes")).unwrap().count();
    assert_eq!(left, 0);
}

#[test]
fn logical_drill_loads_dumps_into_a_new_cluster_and_an_interrupted_one_leaves_no_server() {
    if !pg_available() {
        return;
    }
    let ctx = Ctx::new();
    let dir = ctx.path().to_path_buf();
    give_to_postgres(&dir);
    let cluster = Cluster::init(dir.join("pgdata"), "");
    cluster.start();
    cluster.sql("CREATE DATABASE shop");
    psql(
        cluster.port,
        "shop",
        "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 42)",
    );
    let policy = format!(
        "repositories:
  local: {{ location: ./repo, password_file: ./pw }}
items:
  - name: shop
    kind: postgres
    postgres: {{ host: 127.0.0.1, port: {port}, user: postgres, database: shop }}
    drill:
      sandbox: {dir}/sandboxes
      checks:
        - select count(*) = 42 from orders
        - {{ sql: 'select max(id) from orders', expect: '42' }}
",
        port = cluster.port,
        dir = dir.display(),
    );
    std::fs::write(dir.join("bunker.yaml"), policy).unwrap();
    let path = format!("{PG_BIN}:{}", std::env::var("PATH").unwrap_or_default());
    let bunker = || {
        let mut c = ctx.bare();
        c.env("PATH", &path).env("BUNKER_CONFIG", "bunker.yaml");
        c
    };
    run_ok({
        let mut c = bunker();
        c.args(["run", "--all"]);
        c
    });
    let out = bunker().args(["drill", "shop", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json(&out);
    assert_eq!(r["kind"], "postgres-logical");
    let phases: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["restore", "verify", "startup", "load", "checks"],
        "{r}"
    );
    let checks = r["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 3, "{r}");
    assert!(checks.iter().all(|c| c["ok"] == true), "{r}");
    assert_eq!(std::fs::read_dir(dir.join("sandboxes")).unwrap().count(), 0);

    // Interrupted while a check runs: exit 130, the temporary server is
    // stopped and the sandbox removed; no report is stored.
    let marker = dir.join("check-started");
    let text = std::fs::read_to_string(dir.join("bunker.yaml")).unwrap();
    let text = text.replace(
        "        - select count(*) = 42 from orders\n",
        &format!(
            "        - {{ command: 'touch {} && sleep 60' }}\n",
            marker.display()
        ),
    );
    std::fs::write(dir.join("bunker.yaml"), text).unwrap();
    let reports = || {
        std::fs::read_dir(ctx.repo().join("bunker/reports"))
            .unwrap()
            .count()
    };
    let before = reports();
    let mut child = bunker().args(["drill", "shop"]).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the check never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "the drill ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    run(std::process::Command::new("kill").args(["-INT", &child.id().to_string()]));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the drill did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    assert_eq!(std::fs::read_dir(dir.join("sandboxes")).unwrap().count(), 0);
    assert_eq!(reports(), before);
    let servers = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains("bunker-drill-shop"))
        .count();
    assert_eq!(servers, 0, "a temporary server was left running");
}
