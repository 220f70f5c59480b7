//! Issue 25 (operator experience): regression tests of what a person meets
//! first — exit codes that mean "look at this", dry runs that say what
//! `status` knows, one policy for every command, and no silent waits.

mod policy_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use policy_support::{json, run_ok, stdout, Ctx};

fn write_policy(ctx: &Ctx, text: &str) -> PathBuf {
    std::fs::create_dir_all(ctx.path().join("docs")).expect("mkdir");
    std::fs::write(ctx.path().join("docs/a.txt"), "alpha\n").expect("write");
    std::fs::write(ctx.path().join("pw"), "secret\n").expect("pw");
    let p = ctx.path().join("bunker.yaml");
    std::fs::write(&p, text).expect("policy");
    p
}

/// `docs` backs up ./docs; its before hook fails while ./fail exists.
const HOOKED: &str = r#"repositories:
  main:
    location: ./repo
    password_file: ./pw
items:
  - name: docs
    paths: [./docs]
    schedule: "every 1h"
    rpo: 1h
    hooks:
      before: ["test ! -e fail"]
"#;

fn cmd(ctx: &Ctx, args: &[&str], policy: &Path) -> std::process::Output {
    let mut c = ctx.bare();
    c.args(args).arg("--config").arg(policy);
    c.output().expect("spawn")
}

/// Issue 25 item 5: a failure that no later run fixed needs a person even
/// while the newest snapshot is within the RPO.
#[test]
fn status_exits_3_for_a_current_failure_within_the_rpo() {
    let ctx = Ctx::new();
    let p = write_policy(&ctx, HOOKED);
    run_ok({
        let mut c = ctx.bare();
        c.args(["run", "--config"]).arg(&p);
        c
    });
    let ok = cmd(&ctx, &["status"], &p);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    std::fs::write(ctx.path().join("fail"), "").expect("flag");
    let failed = cmd(&ctx, &["run", "--item", "docs"], &p);
    assert_eq!(failed.status.code(), Some(1));
    let st = cmd(&ctx, &["status", "--json"], &p);
    let rows = json(&st);
    assert_eq!(rows[0]["state"], "OK", "{rows}");
    assert!(rows[0]["last_failure"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("before hook")));
    assert_eq!(
        st.status.code(),
        Some(3),
        "a current failure needs a person"
    );
    // A later success makes it history: exit 0 again.
    std::fs::remove_file(ctx.path().join("fail")).expect("rm");
    run_ok({
        let mut c = ctx.bare();
        c.args(["run", "--item", "docs", "--config"]).arg(&p);
        c
    });
    assert_eq!(cmd(&ctx, &["status"], &p).status.code(), Some(0));
}

/// Issue 25 item 2: `run --dry-run` says what `status` knows of the items.
#[test]
fn run_dry_run_reports_what_status_knows() {
    let ctx = Ctx::new();
    let p = write_policy(&ctx, HOOKED);
    std::fs::write(ctx.path().join("fail"), "").expect("flag");
    let _ = cmd(&ctx, &["run"], &p);
    let out = cmd(&ctx, &["run", "--dry-run", "--all"], &p);
    let text = stdout(&out);
    assert!(text.contains("status now"), "{text}");
    assert!(
        text.contains("LATE") && text.contains("before hook"),
        "the dry run shows the RPO state and the last failure: {text}"
    );
    let v = json(&cmd(&ctx, &["--json", "run", "--dry-run", "--all"], &p));
    assert_eq!(v["status"][0]["state"], "LATE", "{v}");
    assert_eq!(v["status"][0]["item"], "docs");
}

/// Issue 25 item 7: `run -r` was silently ignored. A location the policy
/// names is accepted (it means what the policy says).
#[test]
fn run_refuses_a_repository_flag() {
    let ctx = Ctx::new();
    let p = write_policy(&ctx, HOOKED);
    let out = cmd(&ctx, &["-r", "/elsewhere", "run"], &p);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-r /elsewhere is not one of them"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!ctx.path().join("repo").exists(), "nothing was run");
    let repo = ctx.path().join("repo");
    let same = cmd(&ctx, &["-r", repo.to_str().expect("utf-8"), "run"], &p);
    assert!(
        same.status.success(),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
}

/// A loopback port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Issue 25 item 3: an unreachable S3 endpoint meant five minutes of
/// silence. A refused connection at open now fails within seconds, with one
/// line, and `run`'s table shows the time really spent.
#[test]
fn unreachable_s3_endpoint_fails_fast_with_one_line() {
    let ctx = Ctx::new();
    let port = closed_port();
    let url = format!("s3:http://127.0.0.1:{port}/bucket/repo");
    let t = Instant::now();
    let out = ctx
        .bare()
        .args(["-r", &url, "--password-file", "pw", "snapshots"])
        .env("AWS_ACCESS_KEY_ID", "k")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .output()
        .expect("spawn");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("not retried"), "{err}");

    // In a policy run: fails fast, the table shows the time spent.
    let p = write_policy(
        &ctx,
        &format!(
            "repositories:\n  s3:\n    location: {url}\n    password_file: ./pw\n\
             items:\n  - name: docs\n    paths: [./docs]\n    targets: [s3]\n"
        ),
    );
    let t = Instant::now();
    let out = ctx
        .bare()
        .args(["--json", "run", "--all", "--config"])
        .arg(&p)
        .env("AWS_ACCESS_KEY_ID", "k")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .output()
        .expect("spawn");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    let v = json(&out);
    let r = &v["results"][0];
    assert_eq!(r["status"], "failed", "{v}");
    assert!(
        r["duration_seconds"].as_f64().is_some_and(|d| d > 0.0),
        "a failed target shows the time it took: {v}"
    );
}

/// Two items in one repository; `docs` holds ./docs/a.txt, `other` ./other/b.txt.
const TWO: &str = r#"repositories:
  main:
    location: ./repo
    password_file: ./pw
items:
  - name: docs
    paths: [./docs]
  - name: other
    paths: [./other]
"#;

/// Issue 25 item 7: the read commands take the repository, password and
/// snapshots of a policy item; `latest` means the item's newest snapshot.
#[test]
fn read_commands_take_config_and_item() {
    let ctx = Ctx::new();
    let p = write_policy(&ctx, TWO);
    std::fs::create_dir_all(ctx.path().join("other")).expect("mkdir");
    std::fs::write(ctx.path().join("other/b.txt"), "bravo\n").expect("write");
    run_ok({
        let mut c = ctx.bare();
        c.args(["run", "--item", "docs", "--config"]).arg(&p);
        c
    });
    // `other` is newer: `latest` of the repository is other's.
    run_ok({
        let mut c = ctx.bare();
        c.args(["run", "--item", "other", "--config"]).arg(&p);
        c
    });
    let docs = ctx.path().join("docs").canonicalize().expect("abs");
    let snaps = json(&cmd(&ctx, &["--json", "snapshots", "--item", "docs"], &p));
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{snaps}");
    let ls = stdout(&cmd(&ctx, &["ls", "latest", "--item", "docs"], &p));
    assert!(ls.contains("a.txt") && !ls.contains("b.txt"), "{ls}");
    let file = format!("{}/a.txt", docs.display());
    let dump = cmd(&ctx, &["dump", "latest", &file, "--item", "docs"], &p);
    assert_eq!(stdout(&dump), "alpha\n");
    let target = ctx.path().join("restored");
    let out = cmd(
        &ctx,
        &[
            "restore",
            "latest",
            "--target",
            target.to_str().expect("utf-8"),
            "--item",
            "docs",
        ],
        &p,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(common_file(&target, "a.txt"), "restored");
    let diff = cmd(&ctx, &["diff", "latest", "latest", "--item", "docs"], &p);
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    // -r and --item together are refused.
    let both = cmd(&ctx, &["-r", "/x", "ls", "latest", "--item", "docs"], &p);
    assert_eq!(both.status.code(), Some(1));
    let unknown = cmd(&ctx, &["ls", "latest", "--item", "nosuch"], &p);
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(err.contains("no item \"nosuch\""), "{err}");
}

fn common_file(root: &Path, name: &str) -> bool {
    walk(root)
        .iter()
        .any(|p| p.file_name().is_some_and(|n| n == name))
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// Issue 25 item 8: `config check FILE` takes the file as `run` does;
/// backend options are checked by the backend's parser (the shipped
/// webapp example had `region:` for `s3.region`, which failed only at run
/// time); a files item path that does not exist is a warning.
#[test]
fn config_check_validates_backend_options_and_paths() {
    let ctx = Ctx::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let text = std::fs::read_to_string(examples.join("webapp.yaml")).expect("example");
    let check = |text: &str| {
        let p = ctx.path().join("webapp.yaml");
        std::fs::write(&p, text).expect("write");
        ctx.bare()
            .args(["config", "check"])
            .arg(&p)
            .env("BUNKER_OFFSITE_PASSWORD", "x")
            .output()
            .expect("spawn")
    };
    let ok = check(&text);
    assert!(ok.status.success(), "{}", stdout(&ok));
    let err = String::from_utf8_lossy(&ok.stderr);
    assert!(
        err.contains("warning: item \"webapp-files\": path"),
        "{err}"
    );
    let wrong = check(&text.replace("s3.region:", "region:"));
    assert_eq!(wrong.status.code(), Some(1));
    let out = stdout(&wrong);
    assert!(
        out.contains("repository \"offsite\": option region: unknown option"),
        "{out}"
    );
}

/// Issue 25 item 5: `pg archive-command` prints the `archive_timeout` line
/// the documentation asks for (below the item's rpo).
#[test]
fn pg_archive_command_prints_archive_timeout() {
    let ctx = Ctx::new();
    let p = write_policy(
        &ctx,
        "repositories:\n  main:\n    location: ./repo\n    password_file: ./pw\n\
         items:\n  - name: db\n    kind: postgres\n    postgres:\n      mode: physical\n    \
         rpo: 1m\n",
    );
    let out = cmd(&ctx, &["pg", "archive-command", "--item", "db"], &p);
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.starts_with("archive_timeout = 30s")),
        "{text}"
    );
}
