//! `bunker report compliance` end to end: a policy without and with an
//! offsite target, a critical item that is not compliant exits non-zero,
//! and a successful `check` shows as the last check.

mod policy_support;

use policy_support::{json, Ctx};

fn policy(ctx: &Ctx, name: &str, offsite: bool, priority: &str) -> std::path::PathBuf {
    let data = ctx.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f.txt"), b"payload").unwrap();
    let mut text =
        String::from("repositories:\n  main:\n    location: ./main\n    password_file: ./pw\n");
    let mut targets = "[main]";
    if offsite {
        text.push_str(
            "  away:\n    location: ./away\n    password_file: ./pw\n    role: offsite\n",
        );
        targets = "[main, away]";
    }
    text.push_str(&format!(
        "items:\n  - name: web\n    paths: [./data]\n    rpo: 1h\n    priority: {priority}\n    targets: {targets}\n"
    ));
    let p = ctx.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn report(ctx: &Ctx, policy: &std::path::Path) -> (Option<i32>, serde_json::Value) {
    let out = ctx
        .bare()
        .args(["report", "compliance", "--json", "--config"])
        .arg(policy)
        .output()
        .unwrap();
    (out.status.code(), json(&out))
}

fn run(ctx: &Ctx, policy: &std::path::Path) {
    let out = ctx
        .bare()
        .args(["run", "--all"])
        .arg(policy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn without_an_offsite_copy_a_critical_item_fails_the_report() {
    let ctx = Ctx::new();
    let p = policy(&ctx, "one.yaml", false, "critical");
    run(&ctx, &p);
    let (code, v) = report(&ctx, &p);
    assert_eq!(code, Some(3), "{v}");
    let item = &v["items"][0];
    assert_eq!(item["item"], "web");
    assert_eq!(item["copies"], 2, "{item}");
    assert_eq!(item["offsite"], false);
    assert_eq!(item["compliant"], false);
    assert_eq!(item["last_check"], serde_json::Value::Null);
    let problems = item["problems"].to_string();
    assert!(problems.contains("no offsite copy"), "{problems}");
    assert!(
        problems.contains("2 copies within the RPO, 3 needed"),
        "{problems}"
    );
    // The report was stored as a record.
    let reports = std::fs::read_dir(ctx.path().join("main/bunker/reports"))
        .unwrap()
        .count();
    assert!(reports >= 2, "a run record and the compliance record");

    // A successful check is the last check from now on.
    let out = ctx
        .bare()
        .env("BUNKER_PASSWORD_FILE", ctx.path().join("pw"))
        .args(["check", "-r"])
        .arg(ctx.path().join("main"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let (_, v) = report(&ctx, &p);
    assert!(v["items"][0]["last_check"].is_string(), "{v}");
}

#[test]
fn an_offsite_target_counts_as_the_offsite_copy() {
    let ctx = Ctx::new();
    let p = policy(&ctx, "two.yaml", true, "important");
    run(&ctx, &p);
    let (code, v) = report(&ctx, &p);
    let item = &v["items"][0];
    assert_eq!(item["copies"], 3, "{item}");
    assert_eq!(item["offsite"], true, "{item}");
    let problems = item["problems"].to_string();
    assert!(!problems.contains("offsite"), "{problems}");
    assert!(!problems.contains("copies"), "{problems}");
    // Every directory of the test is on one disk: one medium for all three.
    assert_eq!(item["media"], 1, "{item}");
    assert_eq!(item["compliant"], false);
    // Not critical: the report is no failure.
    assert_eq!(code, Some(0), "{v}");
    let roles: Vec<&str> = item["copy_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["source", "primary", "offsite"]);
}
