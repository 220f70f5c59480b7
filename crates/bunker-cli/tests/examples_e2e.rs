//! Issue 25 item 8: every example policy in `examples/` is run end to end
//! (`config check`, `run --all`, then `status`), with local repositories in
//! place of servers: absolute paths move below a temporary root, S3 and
//! OpenDAL repositories become local directories, every password comes
//! from a file. Postgres items run in the second test against a real
//! PostgreSQL 15 (only their connection is rewritten: the server's socket
//! directory and port); the first leaves them out.

mod pg_cluster;
mod policy_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pg_cluster::{chown_postgres, pg_available, psql, run, Cluster, PG_BIN};
use policy_support::{run_ok, Ctx};

/// Absolute path prefixes the examples use; moved below the test's root.
const PREFIXES: &[&str] = &[
    "/var/backups/",
    "/etc/bunker/",
    "/etc/nginx",
    "/srv/",
    "/data/",
    "/mnt/",
    "/var/log/",
];

/// The example rewritten for a temporary root (see the module documentation).
/// With `pg` (socket directory, port) postgres items are kept and connect
/// there; without, they are left out.
fn localise(text: &str, root: &Path, name: &str, pg: Option<(&Path, u16)>) -> String {
    let r = root.display().to_string();
    let mut out = Vec::new();
    let mut skip_indent: Option<usize> = None;
    let mut remote = 0;
    let lines: Vec<&str> = text.lines().collect();
    // Drop postgres items: a `- name:` block containing `kind: postgres`.
    let mut drop = vec![false; lines.len()];
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("- name:") {
            let indent = lines[i].len() - lines[i].trim_start().len();
            let mut j = i + 1;
            while j < lines.len()
                && (lines[j].trim().is_empty()
                    || lines[j].len() - lines[j].trim_start().len() > indent)
                && !lines[j].trim_start().starts_with("- name:")
            {
                j += 1;
            }
            if pg.is_none() && lines[i..j].iter().any(|l| l.trim() == "kind: postgres") {
                eprintln!(
                    "note: {name}: {} is left out here (postgres items: example_postgres_items_run_end_to_end_against_postgresql)",
                    lines[i].trim()
                );
                drop[i..j].iter_mut().for_each(|d| *d = true);
            }
            // MariaDB items need a server: tests/mysql.rs runs their kinds
            // against a real MariaDB; this example's own items are not run.
            if lines[i..j].iter().any(|l| l.trim() == "kind: mysql") {
                eprintln!(
                    "note: {name}: {} is left out here (mysql items: tests/mysql.rs)",
                    lines[i].trim()
                );
                drop[i..j].iter_mut().for_each(|d| *d = true);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    for (n, line) in lines.iter().enumerate() {
        if drop[n] {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if let Some(s) = skip_indent {
            if line.trim().is_empty() || indent > s {
                continue;
            }
            skip_indent = None;
        }
        let t = line.trim_start();
        let pad = " ".repeat(indent);
        if t.starts_with("location: s3:") || t.starts_with("location: opendal:") {
            remote += 1;
            out.push(format!("{pad}location: {r}/remote-{remote}"));
        } else if t.starts_with("password_env:") || t.starts_with("password_command:") {
            out.push(format!("{pad}password_file: {r}/pw"));
        } else if let (Some((socket, port)), Some(_)) = (pg, t.strip_prefix("host: /")) {
            out.push(format!("{pad}host: {}", socket.display()));
            out.push(format!("{pad}port: {port}"));
        } else if t == "options:"
            && remote > 0
            && out.last().is_some_and(|l| l.contains("password_file"))
        {
            skip_indent = Some(indent);
        } else {
            let mut l = line.to_string();
            for p in PREFIXES {
                l = l.replace(p, &format!("{r}{p}"));
            }
            out.push(l);
        }
    }
    out.join("\n") + "\n"
}

/// Create every `paths:` entry (with a file in it), the password files and
/// what hooks test for.
fn make_sources(policy: &str, root: &Path) {
    for line in policy.lines() {
        let t = line.trim_start();
        if let Some(list) = t.strip_prefix("paths: [") {
            for p in list.trim_end_matches(']').split(',') {
                let p = PathBuf::from(p.trim());
                if p.is_absolute() && p.starts_with(root) {
                    std::fs::create_dir_all(&p).expect("mkdir");
                    std::fs::write(p.join("file.txt"), b"example data\n").expect("write");
                }
            }
        }
        if let Some(f) = t.strip_prefix("password_file: ") {
            let f = PathBuf::from(f.trim());
            if f.starts_with(root) && !f.exists() {
                std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
                std::fs::write(&f, b"example password\n").expect("password");
            }
        }
        if let Some(f) = t.split("test -f ").nth(1) {
            let f = PathBuf::from(f.split(['"', ']', ' ']).next().expect("path"));
            std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            std::fs::write(&f, b"").expect("touch");
        }
    }
}

#[test]
fn every_example_policy_runs_end_to_end() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut names: Vec<String> = std::fs::read_dir(&examples)
        .expect("examples")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    for name in names {
        let ctx = Ctx::new();
        let root = ctx.path().to_path_buf();
        std::fs::write(root.join("pw"), "example password\n").expect("pw");
        // Relative paths (quickstart) resolve next to the policy: copy what
        // they name.
        // (`../var` of the quickstart stays inside the temporary root).
        let ex = root.join("examples");
        std::fs::create_dir_all(&ex).expect("mkdir");
        std::process::Command::new("cp")
            .arg("-a")
            .arg(examples.join("data"))
            .arg(ex.join("data"))
            .status()
            .expect("cp");
        std::fs::copy(
            examples.join("quickstart.password"),
            ex.join("quickstart.password"),
        )
        .expect("copy");
        let text = std::fs::read_to_string(examples.join(&name)).expect("read");
        let policy = localise(&text, &root, &name, None);
        if !policy.contains("- name:") {
            eprintln!("note: {name}: only database items (postgres: example_postgres_items_run_end_to_end_against_postgresql; mysql: tests/mysql.rs)");
            continue;
        }
        make_sources(&policy, &root);
        let p = ex.join(&name);
        std::fs::write(&p, &policy).expect("write");
        let run = |args: &[&str]| {
            let out = ctx
                .bare()
                .args(args)
                .arg("--config")
                .arg(&p)
                .output()
                .expect("spawn");
            (
                out.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        };
        let (code, text) = run(&["config", "check"]);
        assert_eq!(code, Some(0), "{name}: config check: {text}\n{policy}");
        let (code, text) = run(&["run", "--all"]);
        assert_eq!(code, Some(0), "{name}: run: {text}\n{policy}");
        let (code, text) = run(&["status"]);
        assert_eq!(code, Some(0), "{name}: status: {text}\n{policy}");
    }
}

/// `bunker ARGS --config policy` with PostgreSQL's programs first on PATH
/// and `PGHOST`/`PGPORT` naming the test server (what `pg_isready` in a
/// hook reads on a host whose server uses the default socket); exit code
/// and output.
fn bunker_pg(ctx: &Ctx, policy: &Path, cluster: &Cluster, args: &[&str]) -> (Option<i32>, String) {
    let path = format!("{PG_BIN}:{}", std::env::var("PATH").unwrap_or_default());
    let socket = cluster.data.parent().expect("socket directory");
    let out = ctx
        .bare()
        .env("PATH", path)
        .env("PGHOST", socket)
        .env("PGPORT", cluster.port.to_string())
        .args(args)
        .arg("--config")
        .arg(policy)
        .output()
        .expect("spawn");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The `location:` values of the policy's repositories (all local here).
fn locations(policy: &str) -> Vec<PathBuf> {
    policy
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("location: "))
        .map(|l| PathBuf::from(l.trim()))
        .collect()
}

/// The postgres items of a policy: (name, physical?).
fn postgres_items(policy: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut name = None;
    for l in policy.lines() {
        let t = l.trim();
        if let Some(n) = t.strip_prefix("- name: ") {
            name = Some(n.to_string());
        }
        if let (Some(n), Some(mode)) = (&name, t.strip_prefix("mode: ")) {
            out.push((n.clone(), mode == "physical"));
        }
    }
    out
}

/// Issue 25 item 8 for the examples' postgres items: each example with one
/// runs whole against a real PostgreSQL 15, its connection pointed at the
/// test server. The server gets what the examples expect of a database
/// host: the superuser `postgres`, a role `backup` that may read every
/// table (`pg_read_all_data`) and a database `webapp` with a table; a
/// physical item's repository is shared with the `postgres` group and the
/// server archives with the lines `pg archive-command` prints, as
/// README.md and docs/storage.md tell an operator.
#[test]
fn example_postgres_items_run_end_to_end_against_postgresql() {
    if !pg_available() {
        return;
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut names: Vec<String> = std::fs::read_dir(&examples)
        .expect("examples")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .filter(|n| {
            std::fs::read_to_string(examples.join(n))
                .expect("read")
                .contains("kind: postgres")
        })
        .collect();
    names.sort();
    assert!(names.len() >= 2, "{names:?}");
    let mut physical_seen = false;
    for name in names {
        let ctx = Ctx::new();
        let root = ctx.path().to_path_buf();
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        std::fs::write(root.join("pw"), "example password\n").expect("pw");
        let pgdir = root.join("pg");
        std::fs::create_dir(&pgdir).expect("mkdir");
        chown_postgres(&pgdir);
        let cluster = Cluster::init(pgdir.join("data"), "");
        let text = std::fs::read_to_string(examples.join(&name)).expect("read");
        let policy = localise(&text, &root, &name, Some((&pgdir, cluster.port)));
        make_sources(&policy, &root);
        let p = root.join(&name);
        std::fs::write(&p, &policy).expect("write");
        let items = postgres_items(&policy);
        assert!(!items.is_empty(), "{name}: {policy}");
        let pw_line = policy
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("password_file: "))
            .expect("password_file");
        let pw = PathBuf::from(pw_line.trim());

        for (item, _) in items.iter().filter(|(_, physical)| *physical) {
            physical_seen = true;
            // The repositories, shared with the postgres group
            // (docs/storage.md), and the password file readable by it.
            for loc in locations(&policy) {
                run_ok({
                    let mut c = ctx.bare();
                    c.arg("init")
                        .arg("-r")
                        .arg(&loc)
                        .arg("--password-file")
                        .arg(&pw);
                    c
                });
                run(Command::new("chgrp").args(["-R", "postgres"]).arg(&loc));
                run(Command::new("chmod").args(["-R", "g+rwX"]).arg(&loc));
                run(Command::new("find")
                    .arg(&loc)
                    .args(["-type", "d", "-exec", "chmod", "g+s", "{}", "+"]));
            }
            run(Command::new("chgrp").arg("postgres").arg(&pw));
            run(Command::new("chmod").arg("0640").arg(&pw));
            let mut dir = pw.parent();
            while let Some(d) = dir.filter(|d| d.starts_with(&root) && *d != root) {
                run(Command::new("chmod").arg("0755").arg(d));
                dir = d.parent();
            }
            let mut d = locations(&policy)[0].parent().map(Path::to_path_buf);
            while let Some(x) = d.filter(|x| x.starts_with(&root) && *x != root) {
                run(Command::new("chmod").arg("0755").arg(&x));
                d = x.parent().map(Path::to_path_buf);
            }
            let (code, conf) = bunker_pg(
                &ctx,
                &p,
                &cluster,
                &["pg", "archive-command", "--item", item],
            );
            assert_eq!(code, Some(0), "{name}: archive-command: {conf}");
            assert!(conf.contains("archive_command = '"), "{conf}");
            cluster.append_conf(&conf);
        }
        cluster.start();
        cluster.sql("CREATE TABLE accounts (id int PRIMARY KEY, owner text)");
        cluster.sql("INSERT INTO accounts SELECT g, 'owner ' || g FROM generate_series(1, 100) g");
        cluster.sql("CREATE ROLE backup LOGIN");
        cluster.sql("GRANT pg_read_all_data TO backup");
        cluster.sql("CREATE DATABASE webapp");
        psql(
            cluster.port,
            "webapp",
            "CREATE TABLE orders (id int PRIMARY KEY, total numeric); \
             INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 100) g",
        );

        let (code, out) = bunker_pg(&ctx, &p, &cluster, &["config", "check"]);
        assert_eq!(code, Some(0), "{name}: config check: {out}\n{policy}");
        let (code, out) = bunker_pg(&ctx, &p, &cluster, &["run", "--all"]);
        assert_eq!(code, Some(0), "{name}: run: {out}\n{policy}");
        for (item, physical) in &items {
            let (code, out) =
                bunker_pg(&ctx, &p, &cluster, &["snapshots", "--item", item, "--json"]);
            assert_eq!(code, Some(0), "{name}: snapshots --item {item}: {out}");
            let snaps: serde_json::Value = serde_json::from_str(&out).expect("snapshots json");
            assert!(
                snaps.as_array().is_some_and(|a| !a.is_empty()),
                "{name}: no snapshot of {item}: {out}"
            );
            if *physical {
                cluster.switch_wal_and_wait_archived(Duration::from_secs(30));
                // The item's first target is the policy's first repository.
                let repo = locations(&policy)[0].display().to_string();
                let pw = pw.display().to_string();
                let (code, out) = bunker_pg(
                    &ctx,
                    &p,
                    &cluster,
                    &[
                        "-r",
                        &repo,
                        "--password-file",
                        &pw,
                        "pg",
                        "wal-verify",
                        "--item",
                        item,
                        "--json",
                    ],
                );
                assert_eq!(code, Some(0), "{name}: wal-verify --item {item}: {out}");
                let v: serde_json::Value = serde_json::from_str(&out).expect("wal-verify json");
                assert_eq!(v["ok"], true, "{name}: WAL archive of {item}: {out}");
                assert!(
                    v["backups"]
                        .as_array()
                        .is_some_and(|b| b.iter().any(|b| b["restorable"] == true)),
                    "{name}: no restorable base backup of {item}: {out}"
                );
            }
        }
        let (code, out) = bunker_pg(&ctx, &p, &cluster, &["status"]);
        assert_eq!(code, Some(0), "{name}: status: {out}\n{policy}");
    }
    assert!(physical_seen, "no example has a physical postgres item");
}
