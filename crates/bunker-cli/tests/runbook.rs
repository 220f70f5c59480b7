//! `bunker runbook` end to end on files: a drill restores into a sandbox
//! and touches nothing in place; an execution whose third step fails puts
//! back what its first step replaced; without --yes and without a terminal
//! an execution is refused.

mod policy_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use policy_support::{json, Ctx};

const RUNBOOKS: &str = "runbooks:
  restore-web:
    rto: 10m
    rpo: 1d
    steps:
      - restore: { item: web, target: ./data }
      - command: { run: 'test \"$(cat \"$BUNKER_RUNBOOK_STEP1_DIR/a.txt\")\" = v1', timeout: 30s }
      - command: { run: 'echo broken >&2; exit 7' }
  web-ok:
    steps:
      - name: bring back the files
        restore: { item: web, target: ./data }
      - command: 'test \"$BUNKER_RUNBOOK_MODE\" = execute'
  web-drill:
    rto: 10m
    steps:
      - restore: { item: web, target: ./data }
      - command: 'test \"$BUNKER_RUNBOOK_MODE\" = drill && test \"$(cat \"$BUNKER_RUNBOOK_STEP1_DIR/a.txt\")\" = v1 && test -d \"$BUNKER_RUNBOOK_SANDBOX\"'
      - wait_for: { tcp: '127.0.0.1:PORT', timeout: 30s }
      - confirm: 'is the site up?'
      - notify: 'drill done'
";

/// A policy with one files item backed up once (a.txt = v1), then the
/// live data changed (a.txt = live, new.txt added).
fn setup(ctx: &Ctx, port: u16) -> PathBuf {
    let data = ctx.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), "v1").unwrap();
    let text = format!(
        "repositories:\n  main:\n    location: ./main\n    password_file: ./pw\n\
         items:\n  - name: web\n    paths: [./data]\n    targets: [main]\n{}",
        RUNBOOKS.replace("PORT", &port.to_string())
    );
    let p = ctx.path().join("bunker.yaml");
    std::fs::write(&p, text).unwrap();
    let out = ctx.bare().args(["run", "--all"]).arg(&p).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(data.join("a.txt"), "live").unwrap();
    std::fs::write(data.join("new.txt"), "new").unwrap();
    p
}

fn runbook(ctx: &Ctx, policy: &Path, args: &[&str]) -> std::process::Output {
    ctx.bare()
        .arg("runbook")
        .args(args)
        .arg("--config")
        .arg(policy)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn read(ctx: &Ctx, rel: &str) -> String {
    std::fs::read_to_string(ctx.path().join(rel)).unwrap_or_else(|e| format!("<{e}>"))
}

fn leftovers(ctx: &Ctx) -> Vec<String> {
    std::fs::read_dir(ctx.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("bunker-safety"))
        .collect()
}

fn audit_ops(ctx: &Ctx) -> Vec<serde_json::Value> {
    let out = ctx
        .bare()
        .env("BUNKER_PASSWORD_FILE", ctx.path().join("pw"))
        .args(["--json", "audit", "log", "-r"])
        .arg(ctx.path().join("main"))
        .output()
        .unwrap();
    json(&out).as_array().unwrap().clone()
}

#[test]
fn execute_whose_third_step_fails_rolls_back_the_restore_of_the_first() {
    let ctx = Ctx::new();
    let p = setup(&ctx, 1);
    let out = runbook(&ctx, &p, &["execute", "restore-web", "--yes", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("failed at step 3: command"), "{err}");
    assert!(err.contains("broken"), "{err}");
    let v = json(&out);
    let status: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["ok", "ok", "failed"], "{v}");
    assert_eq!(v["rolled_back"].as_array().unwrap().len(), 1, "{v}");
    // The live data is back as it was, and no safety copy is left.
    assert_eq!(read(&ctx, "data/a.txt"), "live");
    assert_eq!(read(&ctx, "data/new.txt"), "new");
    assert!(leftovers(&ctx).is_empty(), "{:?}", leftovers(&ctx));
    // The policy run that made the snapshot is in the audit log, with it.
    let ops = audit_ops(&ctx);
    let run = ops
        .iter()
        .find(|r| r["operation"] == "run")
        .expect("a run record");
    assert_eq!(run["details"]["item"], "web", "{run}");
    assert_eq!(run["snapshots"].as_array().map(Vec::len), Some(1), "{run}");
    // Every step executed is in the audit log.
    let steps: Vec<(String, String)> = ops
        .iter()
        .filter(|r| r["operation"] == "runbook execute")
        .map(|r| {
            (
                r["details"]["kind"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("restore".into(), "success".into()),
            ("command".into(), "success".into()),
            ("command".into(), "failure".into())
        ]
    );

    // A runbook that succeeds replaces the data and drops the safety copy.
    let out = runbook(&ctx, &p, &["execute", "web-ok", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&ctx, "data/a.txt"), "v1");
    assert!(!ctx.path().join("data/new.txt").exists());
    assert!(leftovers(&ctx).is_empty(), "{:?}", leftovers(&ctx));
}

#[test]
fn execute_without_yes_and_without_a_terminal_is_refused() {
    let ctx = Ctx::new();
    let p = setup(&ctx, 1);
    let out = runbook(&ctx, &p, &["execute", "web-ok"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("standard input is not a terminal") && err.contains("--yes"),
        "{err}"
    );
    assert_eq!(read(&ctx, "data/a.txt"), "live");
    assert_eq!(read(&ctx, "data/new.txt"), "new");
}

#[test]
fn drill_restores_into_a_sandbox_measures_the_rto_and_touches_nothing() {
    let ctx = Ctx::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let p = setup(&ctx, port);
    let sandboxes = ctx.path().join("sandboxes");
    std::fs::create_dir(&sandboxes).unwrap();
    let out = runbook(
        &ctx,
        &p,
        &[
            "drill",
            "web-drill",
            "--json",
            "--sandbox-dir",
            sandboxes.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v = json(&out);
    assert_eq!(v["mode"], "drill");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["rto_met"], true, "{v}");
    let total = v["rto_seconds"].as_f64().unwrap();
    let steps: f64 = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seconds"].as_f64().unwrap())
        .sum();
    assert!(total > 0.0 && total >= steps, "{v}");
    assert!(v["rpo_seconds"].as_i64().is_some(), "{v}");
    // Nothing in place changed; the sandbox is gone.
    assert_eq!(read(&ctx, "data/a.txt"), "live");
    assert_eq!(read(&ctx, "data/new.txt"), "new");
    assert_eq!(std::fs::read_dir(&sandboxes).unwrap().count(), 0);
    // The plan now expects the drill's RTO and names the snapshot.
    let out = runbook(&ctx, &p, &["plan", "web-drill", "--json"]);
    let plan = json(&out);
    assert_eq!(plan["rto_expected_seconds"].as_f64(), Some(total), "{plan}");
    assert!(plan["steps"][0]["snapshot"].is_string(), "{plan}");
    // A drill is audited once per repository.
    assert!(audit_ops(&ctx)
        .iter()
        .any(|r| r["operation"] == "runbook drill"));
    drop(listener);
}
