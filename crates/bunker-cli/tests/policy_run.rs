//! `bunker run` and `bunker status` end to end.

mod policy_support;

use std::path::Path;

use policy_support::{json, run_ok, stdout, Ctx};

fn examples_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The quickstart example copied into a temporary tree with the same layout.
fn quickstart(ctx: &Ctx) -> std::path::PathBuf {
    let ex = ctx.path().join("examples");
    std::fs::create_dir_all(&ex).expect("mkdir");
    for f in ["quickstart.yaml", "quickstart.password"] {
        std::fs::copy(examples_dir().join(f), ex.join(f)).expect("copy example");
    }
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(examples_dir().join("data"))
        .arg(ex.join("data"))
        .status()
        .expect("cp");
    assert!(st.success());
    ex.join("quickstart.yaml")
}

#[test]
fn quickstart_runs_then_is_not_due() {
    let ctx = Ctx::new();
    let policy = quickstart(&ctx);
    let first = run_ok({
        let mut c = ctx.bare();
        c.arg("run").arg(&policy);
        c
    });
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(err.contains("created new repository"), "{err}");
    let text = stdout(&first);
    assert!(
        text.contains("quickstart") && text.contains(" ok "),
        "{text}"
    );
    assert!(ctx.path().join("var/quickstart-repo/config").exists());

    // Not due again within the hour: nothing runs.
    let second = json(&run_ok({
        let mut c = ctx.bare();
        c.args(["run", "--json", "--config"]).arg(&policy);
        c
    }));
    assert_eq!(second["results"][0]["status"], "skipped", "{second}");
    assert_eq!(second["failed"], 0);

    // --all runs it anyway; the snapshot carries the item tag.
    let third = json(&run_ok({
        let mut c = ctx.bare();
        c.args(["run", "--json", "--all"])
            .env("BUNKER_CONFIG", &policy);
        c
    }));
    let r = &third["results"][0];
    assert_eq!(r["status"], "ok", "{third}");
    assert_eq!(r["target"], "local");
    assert!(r["files"].as_u64().expect("files") > 0);
    let snaps = json(&run_ok({
        let mut c = ctx.bare();
        c.args([
            "snapshots",
            "--json",
            "--tag",
            "bunker:item=quickstart",
            "-r",
        ])
        .arg(ctx.path().join("var/quickstart-repo"))
        .arg("--password-file")
        .arg(ctx.path().join("examples/quickstart.password"));
        c
    }));
    assert_eq!(snaps.as_array().map(Vec::len), Some(2));

    let status = json(&run_ok({
        let mut c = ctx.bare();
        c.args(["status", "--json"]).arg(&policy);
        c
    }));
    assert_eq!(status[0]["state"], "OK", "{status}");
    assert!(status[0]["last_failure"].is_null());
}

fn two_items(ctx: &Ctx) -> std::path::PathBuf {
    for d in ["good", "bad"] {
        std::fs::create_dir_all(ctx.path().join(d)).expect("mkdir");
        std::fs::write(ctx.path().join(d).join("f.txt"), d).expect("write");
    }
    let p = ctx.path().join("bunker.yaml");
    std::fs::write(
        &p,
        r#"repositories:
  main:
    location: ./repo
    password_file: ./pw
items:
  - name: good
    paths: [./good]
    schedule: "every 1h"
    priority: low
    rpo: 1h
    retention:
      keep_last: 1
    hooks:
      after: ["touch good-after"]
  - name: bad
    paths: [./bad]
    schedule: "every 1h"
    priority: critical
    rpo: 1h
    hooks:
      before: ["echo preparing; exit 4"]
      on_failure: ["echo \"$BUNKER_ERROR\" > bad-failed"]
      timeout: 30s
"#,
    )
    .expect("policy");
    p
}

#[test]
fn failing_before_hook_skips_item_and_fails_the_run() {
    let ctx = Ctx::new();
    let policy = two_items(&ctx);
    let out = {
        let mut c = ctx.bare();
        c.args(["run", "--json", "--config"]).arg(&policy);
        c.output().expect("spawn")
    };
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let results = v["results"].as_array().expect("results");
    // critical first
    assert_eq!(results[0]["item"], "bad");
    assert_eq!(results[0]["status"], "failed");
    let err = results[0]["error"].as_str().expect("error");
    assert!(
        err.contains("before hook") && err.contains("exit 4"),
        "{err}"
    );
    assert_eq!(results[1]["item"], "good");
    assert_eq!(results[1]["status"], "ok");
    assert_eq!(v["failed"], 1);
    assert!(ctx.path().join("good-after").exists(), "after hook ran");
    let failed = std::fs::read_to_string(ctx.path().join("bad-failed")).expect("on_failure ran");
    assert!(failed.contains("before hook"), "{failed}");

    // Status: good is OK, bad is LATE with its failure recorded in the repository.
    let st = {
        let mut c = ctx.bare();
        c.args(["status", "--json", "--config"]).arg(&policy);
        c.output().expect("spawn")
    };
    assert_eq!(st.status.code(), Some(3));
    let rows = json(&st);
    let bad = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["item"] == "bad")
        .expect("bad row");
    assert_eq!(bad["state"], "LATE");
    assert!(bad["last_failure"]["error"]
        .as_str()
        .expect("failure recorded")
        .contains("before hook"));

    // Human table for status and run.
    let text = stdout(&{
        let mut c = ctx.bare();
        c.args(["status", "--config"]).arg(&policy);
        c.output().expect("spawn")
    });
    assert!(text.contains("LATE") && text.contains("OK"), "{text}");

    // Second run: good is not due; bad has never succeeded, so it is due and fails again.
    let again = {
        let mut c = ctx.bare();
        c.args(["run", "--json", "--config"]).arg(&policy);
        c.output().expect("spawn")
    };
    let v = json(&again);
    let good = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["item"] == "good")
        .expect("good");
    assert_eq!(good["status"], "skipped");

    // --item runs one item regardless of due-ness; retention keeps one snapshot.
    let one = json(&run_ok({
        let mut c = ctx.bare();
        c.args(["run", "--json", "--item", "good", "--config"])
            .arg(&policy);
        c
    }));
    assert_eq!(one["results"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["results"][0]["forgotten"], 1);
}

#[test]
fn command_items_and_dry_run() {
    let ctx = Ctx::new();
    std::fs::create_dir_all(ctx.path().join("d")).expect("mkdir");
    let p = ctx.path().join("bunker.yaml");
    std::fs::write(
        &p,
        "repositories:\n  main:\n    location: ./repo\n    password_file: ./pw\n\
         items:\n  - name: files\n    paths: [./d]\n    schedule: \"every 1h\"\n\
         \x20 - name: listing\n    kind: command\n    command:\n\
         \x20     command: \"printf 'row %s\\\\n' 1 2 3; echo \\\"$BUNKER_ITEM\\\"\"\n\
         \x20     stdin_filename: rows.txt\n    schedule: \"every 1h\"\n\
         \x20 - name: broken\n    kind: command\n    command:\n\
         \x20     command: \"echo partial; echo boom >&2; exit 3\"\n    schedule: \"every 1h\"\n\
         \x20 - name: hung\n    kind: command\n    command:\n\
         \x20     command: \"echo started; sleep 120 | cat\"\n      timeout: 1s\n\
         \x20   schedule: \"every 1h\"\n",
    )
    .expect("policy");
    // A dry run creates nothing and runs no command.
    let out = {
        let mut c = ctx.bare();
        c.args(["run", "--dry-run", "--json", "--config"]).arg(&p);
        c.output().expect("spawn")
    };
    assert!(
        !ctx.repo().exists(),
        "dry run must not create the repository"
    );
    let v = json(&out);
    assert_eq!(v["dry_run"], true, "{v}");

    let started = std::time::Instant::now();
    let out = {
        let mut c = ctx.bare();
        c.args(["run", "--json", "--config"]).arg(&p);
        c.output().expect("spawn")
    };
    // Liveness, not speed: without the time limit the hung pipeline would
    // hold the run for two minutes.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(90),
        "the hung command was not stopped"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the broken command fails the run"
    );
    let v = json(&out);
    let row = |item: &str| {
        v["results"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["item"] == item))
            .cloned()
            .unwrap_or_else(|| panic!("no row for {item}: {v}"))
    };
    assert_eq!(row("files")["status"], "ok", "{v}");
    assert_eq!(row("listing")["status"], "ok", "{v}");
    // Regression: database and command items reported 0 bytes added.
    assert!(
        row("listing")["data_added"].as_u64().is_some_and(|n| n > 0),
        "{v}"
    );
    let broken = row("broken");
    assert_eq!(broken["status"], "failed", "{v}");
    assert!(
        broken["error"].as_str().is_some_and(|e| e.contains("boom")),
        "the command's stderr is in the error: {v}"
    );
    let hung = row("hung");
    assert_eq!(hung["status"], "failed", "{v}");
    assert!(
        hung["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not finish within 1s")),
        "the time limit is named in the error: {v}"
    );

    // The command's output is one file of the item's snapshot, and the
    // failed command left no snapshot.
    let snaps = json(&run_ok({
        let mut c = ctx.bunker();
        c.args(["snapshots", "--json"]);
        c
    }));
    let tagged = |item: &str| {
        snaps
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|s| {
                        s["tags"]
                            .as_array()
                            .is_some_and(|t| t.iter().any(|t| t == &format!("bunker:item={item}")))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(tagged("listing"), 1, "{snaps}");
    assert_eq!(tagged("broken"), 0, "{snaps}");
    assert_eq!(tagged("hung"), 0, "{snaps}");
    let id = row("listing")["snapshot"]
        .as_str()
        .expect("snapshot id")
        .to_string();
    let dumped = run_ok({
        let mut c = ctx.bunker();
        c.args(["dump", &id, "/rows.txt"]);
        c
    });
    assert_eq!(stdout(&dumped), "row 1\nrow 2\nrow 3\nlisting\n");
}

/// Regression: a time-limited command runs in a process group of its own,
/// so the terminal's Ctrl-C no longer reaches it; an interrupted `bunker run`
/// must stop it (and what it started) before exiting.
#[test]
fn sigint_stops_a_time_limited_command_item() {
    use std::time::{Duration, Instant};
    let ctx = Ctx::new();
    let p = ctx.path().join("bunker.yaml");
    let pidfile = ctx.path().join("sleep.pid");
    std::fs::write(
        &p,
        format!(
            "repositories:\n  main:\n    location: ./repo\n    password_file: ./pw\n\
             items:\n  - name: slow\n    kind: command\n    command:\n\
             \x20     command: \"sleep 120 & echo $! > {}; wait\"\n      timeout: 1h\n",
            pidfile.display()
        ),
    )
    .expect("policy");
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("bunker"));
    for (k, _) in std::env::vars() {
        if k.starts_with("BUNKER_") || k.starts_with("RESTIC_") {
            c.env_remove(k);
        }
    }
    c.env("BUNKER_TEST_KDF_N", "1024")
        .current_dir(ctx.path())
        .args(["run", "--all", "--config"])
        .arg(&p)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut run = c.spawn().expect("spawn");
    let start = Instant::now();
    let sleep_pid = loop {
        if let Ok(s) = std::fs::read_to_string(&pidfile) {
            if s.ends_with('\n') {
                break s.trim().to_string();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let alive = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    };
    assert!(alive(&sleep_pid));
    let st = std::process::Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let code = loop {
        if let Some(st) = run.try_wait().expect("wait") {
            break st.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "bunker ignored SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(130));
    let gone_by = Instant::now() + Duration::from_secs(10);
    while alive(&sleep_pid) && Instant::now() < gone_by {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !alive(&sleep_pid),
        "the command's sleep {sleep_pid} outlived bunker"
    );
}

/// Issue 25 item 6: `run` said only "N file(s) could not be read" and
/// `status` showed such a backup as OK.
#[test]
fn unreadable_files_are_named_and_status_shows_the_target_incomplete() {
    let ctx = Ctx::new();
    std::fs::create_dir_all(ctx.path().join("data")).expect("mkdir");
    std::fs::write(ctx.path().join("data/f.txt"), "x").expect("write");
    let gone: Vec<String> = (1..=7).map(|i| format!("./gone-{i}")).collect();
    let p = ctx.path().join("bunker.yaml");
    std::fs::write(
        &p,
        format!(
            "repositories:\n  main:\n    location: ./repo\n    password_file: ./pw\n\
             items:\n  - name: docs\n    paths: [./data, {}]\n",
            gone.join(", ")
        ),
    )
    .expect("policy");
    let run = |args: &[&str]| {
        let mut c = ctx.bare();
        c.args(args).arg(&p);
        c.output().expect("spawn")
    };
    let out = run(&["run", "--all"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("7 file(s) could not be read"), "{text}");
    let named = text
        .lines()
        .filter(|l| l.contains("not backed up: "))
        .count();
    assert_eq!(named, 5, "{text}");
    assert!(text.contains("and 2 more file(s)"), "{text}");
    assert!(text.contains("gone-1"), "{text}");

    // -v names them all; --json has them as `unreadable`.
    let out = run(&["run", "--all", "-v"]);
    let text = stdout(&out);
    let named = text
        .lines()
        .filter(|l| l.contains("not backed up: "))
        .count();
    assert_eq!(named, 7, "{text}");
    let v = json(&run(&["run", "--all", "--json"]));
    let files = v["results"][0]["unreadable"]
        .as_array()
        .expect("unreadable");
    assert_eq!(files.len(), 7, "{v}");
    assert!(files[0]["path"].as_str().expect("path").contains("gone-"));
    assert!(!files[0]["error"].as_str().expect("error").is_empty());

    // status: INCOMPLETE, exit 3, the files named.
    let st = run(&["status"]);
    assert_eq!(st.status.code(), Some(3), "{st:?}");
    let text = stdout(&st);
    assert!(
        text.contains("INCOMPLETE") && text.contains("gone-"),
        "{text}"
    );
    let rows = json(&run(&["status", "--json"]));
    assert_eq!(rows[0]["state"], "INCOMPLETE", "{rows}");
    assert_eq!(rows[0]["unreadable"].as_array().map(Vec::len), Some(7));

    // The files appear: the next snapshot is complete, and so is status.
    for g in &gone {
        std::fs::write(ctx.path().join(g), "back").expect("write");
    }
    assert_eq!(run(&["run", "--all"]).status.code(), Some(0));
    let st = run(&["status", "--json"]);
    assert_eq!(st.status.code(), Some(0), "{st:?}");
    assert_eq!(json(&st)[0]["state"], "OK");
}
