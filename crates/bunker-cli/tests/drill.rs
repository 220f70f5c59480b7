//! `bunker drill` end to end on files and sqlite items against real
//! repositories: a passing drill verifies every file, runs its checks,
//! prints JSON and stores a drill record; a snapshot with a damaged pack,
//! a failed check and an exceeded RTO exit non-zero; `recover --time`
//! without PostgreSQL lands files and sqlite items at the right state.

mod policy_support;

use std::path::Path;

use policy_support::{bytes, json, run_ok, sqlite_rows, stdout, Ctx};
use rusqlite::Connection;

fn policy(ctx: &Ctx, items: &str) {
    let text = format!(
        "repositories:\n  local:\n    location: ./repo\n    password_file: ./pw\nitems:\n{items}"
    );
    std::fs::write(ctx.path().join("bunker.yaml"), text).unwrap();
}

fn reports(ctx: &Ctx) -> usize {
    std::fs::read_dir(ctx.repo().join("bunker/reports"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn drill(ctx: &Ctx, args: &[&str]) -> std::process::Output {
    ctx.bare()
        .args(["drill", "--config", "bunker.yaml", "--json"])
        .args(args)
        .output()
        .unwrap()
}

fn files_ctx(items_extra: &str) -> Ctx {
    let ctx = Ctx::new();
    let data = ctx.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("a.txt"), b"hello").unwrap();
    std::fs::write(data.join("sub/big.bin"), bytes(7, 3 << 20)).unwrap();
    std::os::unix::fs::symlink("a.txt", data.join("link")).unwrap();
    policy(
        &ctx,
        &format!("  - name: app\n    paths: [./data]\n{items_extra}"),
    );
    run_ok({
        let mut c = ctx.bare();
        c.args(["run", "--config", "bunker.yaml", "--all"]);
        c
    });
    ctx
}

#[test]
fn files_drill_verifies_every_file_runs_checks_and_stores_a_record() {
    let ctx = files_ctx(
        "    rto: 10m\n    drill:\n      checks:\n        - 'test \"$(find \"$BUNKER_DRILL_DIR\" -name a.txt -exec cat {} +)\" = hello'\n",
    );
    let before = reports(&ctx);
    let out = drill(&ctx, &["app"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json(&out);
    assert_eq!(r["status"], "passed", "{r}");
    assert_eq!(r["kind"], "files");
    assert_eq!(r["rto_exceeded"], false);
    assert_eq!(r["rto_target_seconds"], 600);
    assert_eq!(r["verify"]["files"], 2, "{r}");
    assert_eq!(r["verify"]["mismatch_count"], 0);
    assert!(r["verify"]["bytes"].as_u64().unwrap() >= 3 << 20);
    assert_eq!(r["checks"][0]["ok"], true, "{r}");
    let phases: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["restore", "verify", "checks"]);
    // The sandbox is gone, the report is stored in the repository.
    assert!(!Path::new(r["sandbox"].as_str().unwrap()).exists());
    assert_eq!(reports(&ctx), before + 1);

    // --keep leaves the sandbox, with the restored files.
    let out = drill(&ctx, &["app", "--keep"]);
    assert!(out.status.success());
    let r = json(&out);
    let sandbox = Path::new(r["sandbox"].as_str().unwrap()).to_path_buf();
    assert!(sandbox.join("restore").exists());
    std::fs::remove_dir_all(sandbox).unwrap();
}

#[test]
fn a_drill_of_a_snapshot_with_a_damaged_pack_fails() {
    let ctx = files_ctx("");
    // The largest pack holds the data of big.bin: damage its middle.
    let mut packs: Vec<(u64, std::path::PathBuf)> = walk(&ctx.repo().join("data"))
        .into_iter()
        .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
        .collect();
    packs.sort();
    let (len, pack) = packs.pop().expect("a pack");
    let mut b = std::fs::read(&pack).unwrap();
    let mid = (len / 2) as usize;
    for x in &mut b[mid..mid + 64] {
        *x ^= 0xff;
    }
    std::fs::write(&pack, b).unwrap();
    let before = reports(&ctx);
    let out = drill(&ctx, &["app"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let r = json(&out);
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("could not be restored"),
        "{r}"
    );
    assert!(err.contains("drill of app failed"), "{err}");
    // A failed drill is recorded too.
    assert_eq!(reports(&ctx), before + 1);
}

#[test]
fn a_failed_check_and_an_exceeded_rto_exit_non_zero() {
    let ctx = files_ctx(
        "    rto: 1s\n    drill:\n      checks: ['sleep 1.2', 'test -n \"$BUNKER_DRILL_DIR\"']\n",
    );
    let out = drill(&ctx, &["app"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json(&out);
    assert_eq!(r["status"], "passed");
    assert_eq!(r["rto_exceeded"], true);
    assert!(r["rto_measured_seconds"].as_f64().unwrap() > 1.0);

    let ctx = files_ctx("    drill:\n      checks: ['exit 4']\n");
    let out = drill(&ctx, &["app"]);
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["checks"][0]["ok"], false);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn sqlite_drill_checks_integrity_and_sql_and_recover_time_lands_each_item() {
    let ctx = Ctx::new();
    let db = ctx.path().join("app.db");
    sqlite_rows(&db, 3);
    std::fs::create_dir(ctx.path().join("data")).unwrap();
    std::fs::write(ctx.path().join("data/v.txt"), b"one").unwrap();
    policy(
        &ctx,
        "  - name: db\n    kind: sqlite\n    sqlite: { path: ./app.db }\n    drill:\n      checks:\n        - select count(*) from t\n        - { sql: 'select count(*) from t', expect: '3' }\n  - name: app\n    paths: [./data]\n",
    );
    let backup = || {
        run_ok({
            let mut c = ctx.bare();
            c.args(["run", "--config", "bunker.yaml", "--all"]);
            c
        })
    };
    backup();
    let out = drill(&ctx, &["db"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json(&out);
    assert_eq!(r["kind"], "sqlite");
    let names: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "integrity_check");
    assert!(
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{r}"
    );

    // A second state, one second later at least (snapshot times have
    // sub-second precision; the point in time lies between the two).
    let first_time = r["snapshot_time"].as_str().unwrap().to_string();
    let t1 = chrono::DateTime::parse_from_rfc3339(&first_time).unwrap();
    while chrono::Utc::now() < t1 + chrono::Duration::milliseconds(1100) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let between = chrono::Utc::now();
    sqlite_rows(&db, 2);
    std::fs::write(ctx.path().join("data/v.txt"), b"two").unwrap();
    while chrono::Utc::now() < between + chrono::Duration::milliseconds(1100) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    backup();
    // The same drill now fails its expectation (5 rows).
    let out = drill(&ctx, &["db"]);
    assert_eq!(out.status.code(), Some(1));

    let target = ctx.path().join("recovered");
    let out = run_ok({
        let mut c = ctx.bare();
        c.args(["recover", "--config", "bunker.yaml", "--json", "--time"])
            .arg(between.to_rfc3339())
            .arg("--target")
            .arg(&target);
        c
    });
    let r = json(&out);
    let items = r["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{r}");
    for i in items {
        assert_eq!(i["state"], "restored", "{r}");
        assert!(i["rpo_seconds"].as_i64().unwrap() >= 0);
    }
    let restored_db = target.join("db/app.db");
    let c = Connection::open(&restored_db).unwrap();
    let n: i64 = c
        .query_row("select count(*) from t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
    let v = walk(&target.join("app"))
        .into_iter()
        .find(|p| p.ends_with("v.txt"))
        .expect("v.txt restored");
    assert_eq!(std::fs::read(v).unwrap(), b"one");

    // Before any snapshot: nothing to restore, exit 3.
    let out = ctx
        .bare()
        .args([
            "recover",
            "--config",
            "bunker.yaml",
            "--time",
            "2000-01-01 00:00:00+00",
            "--target",
        ])
        .arg(ctx.path().join("empty"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without --time, recover is restic's recover.
    let out = run_ok({
        let mut c = ctx.bunker();
        c.args(["recover", "--dry-run"]);
        c
    });
    assert!(stdout(&out).contains("lost"), "{}", stdout(&out));
}

#[test]
fn command_item_drill_restores_the_stream_for_its_check() {
    let ctx = Ctx::new();
    policy(
        &ctx,
        "  - name: export\n    kind: command\n    command: { command: 'printf exported', stdin_filename: export.txt }\n    drill:\n      checks: ['test \"$(cat \"$BUNKER_DRILL_FILE\")\" = exported']\n",
    );
    run_ok({
        let mut c = ctx.bare();
        c.args(["run", "--config", "bunker.yaml", "--all"]);
        c
    });
    let out = drill(&ctx, &["export"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json(&out);
    assert_eq!(r["kind"], "command");
    assert_eq!(r["verify"]["files"], 1, "{r}");
    assert_eq!(r["checks"][0]["ok"], true, "{r}");
}
