//! `bunker notify test` and `config check` with notification targets, end
//! to end through the binary against a real HTTP receiver on loopback.

mod policy_support;
#[path = "../../bunker-notify/tests/support/receiver.rs"]
mod receiver;

use policy_support::{json, stdout, Ctx};
use receiver::{dead_url, Receiver};

fn policy(ctx: &Ctx, notifications: &str) -> std::path::PathBuf {
    let path = ctx.path().join("bunker.yaml");
    let text = format!(
        "repositories:\n  main: {{ location: ./repo, password_file: ./pw }}\n\
         items:\n  - {{ name: db, paths: [.] }}\n\
         notifications:\n{notifications}"
    );
    std::fs::write(&path, text).expect("write policy");
    path
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn notify_test_reaches_every_target() {
    let ctx = Ctx::new();
    let rx = Receiver::start();
    let cfg = policy(
        &ctx,
        &format!(
            "  hook:\n    webhook: {{ url: \"{}\" }}\n    events: [failure]\n  \
             hc:\n    healthchecks: {{ url: \"{}\" }}\n",
            rx.url("/hook"),
            rx.url("/ping/{item}")
        ),
    );
    let out = ctx
        .bare()
        .args(["notify", "test", "--item", "db", "--config"])
        .arg(&cfg)
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("sent    hook (1 attempt)"), "{text}");
    assert!(text.contains("sent    hc (1 attempt)"), "{text}");
    let reqs = rx.wait_for(2);
    let hook = reqs.iter().find(|r| r.path == "/hook").expect("webhook");
    let v = hook.json();
    assert_eq!(v["event"], "test");
    assert_eq!(v["item"], "db");
    assert!(reqs.iter().any(|r| r.path == "/ping/db/log"), "{reqs:?}");
}

#[test]
fn a_failed_delivery_exits_1_naming_the_target_and_reason() {
    let ctx = Ctx::new();
    let rx = Receiver::start();
    let cfg = policy(
        &ctx,
        &format!(
            "  ok:\n    webhook: {{ url: \"{}\" }}\n  \
             dead:\n    webhook: {{ url: \"{}?token=s3cret\" }}\n    retry_for: 1s\n",
            rx.url("/ok"),
            dead_url()
        ),
    );
    let out = ctx
        .bare()
        .args(["notify", "test", "--config"])
        .arg(&cfg)
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.contains("notification target \"dead\" failed:") && last.contains("refused"),
        "{err}"
    );
    assert!(!err.contains("s3cret") && !stdout(&out).contains("s3cret"));
    assert!(stdout(&out).contains("sent    ok"), "{}", stdout(&out));

    let out = ctx
        .bare()
        .args(["notify", "test", "dead", "--json", "--config"])
        .arg(&cfg)
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["message_type"], "notify_test");
    assert_eq!(v["failed"], 1);
    assert_eq!(v["results"][0]["target"], "dead");
    assert_eq!(v["results"][0]["ok"], false);
}

#[test]
fn an_unknown_target_or_no_targets_is_an_error() {
    let ctx = Ctx::new();
    let cfg = policy(
        &ctx,
        "  hook:\n    webhook: { url: \"http://127.0.0.1:9/x\" }\n",
    );
    let out = ctx
        .bare()
        .args(["notify", "test", "nope", "--config"])
        .arg(&cfg)
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no notification target \"nope\" (the policy has: hook)"),
        "{}",
        stderr(&out)
    );
    let empty = ctx.path().join("empty.yaml");
    std::fs::write(
        &empty,
        "repositories:\n  main: { location: ./repo, password_file: ./pw }\n",
    )
    .unwrap();
    let out = ctx
        .bare()
        .args(["notify", "test", "--config"])
        .arg(&empty)
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("has no notification targets"));
}

#[test]
fn config_check_lists_the_targets_without_secrets() {
    let ctx = Ctx::new();
    let cfg = policy(
        &ctx,
        "  chat:\n    webhook: { url: \"https://hooks.example.com/services/T0/B0/s3cret\", format: slack }\n  \
         mail:\n    email: { host: smtp.example.com, user: u, password: s3cret, from: a@example.com, to: b@example.com }\n",
    );
    let out = ctx
        .bare()
        .args(["config", "check", "--config"])
        .arg(&cfg)
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("policy OK: 1 items, 1 repositories, 2 notification targets\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  notify chat (webhook slack https://hooks.example.com/services/***/***/***)"
        ),
        "{text}"
    );
    assert!(text.contains("  notify mail (email smtp.example.com:587 starttls to b@example.com)"));
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn notify_help_is_a_manual_page_with_examples() {
    let ctx = Ctx::new();
    for args in [&["notify", "--help"][..], &["notify", "test", "--help"][..]] {
        let out = ctx.bare().args(args).output().expect("spawn");
        assert!(out.status.success(), "{args:?}");
        let text = stdout(&out);
        assert!(text.contains("EXAMPLES:"), "{args:?}:\n{text}");
        assert!(text.contains("bunker notify test ops-mail"), "{text}");
        assert!(text.lines().count() > 8, "{text}");
    }
}

#[test]
fn a_runbook_notify_step_reaches_every_target_marked_as_a_drill() {
    let ctx = Ctx::new();
    let rx = Receiver::start();
    std::fs::write(ctx.path().join("pw"), "secret\n").unwrap();
    let cfg = ctx.path().join("bunker.yaml");
    std::fs::write(
        &cfg,
        format!(
            "repositories:\n  main: {{ location: ./repo, password_file: ./pw }}\n\
             items:\n  - {{ name: db, paths: [./pw] }}\n\
             notifications:\n  hook:\n    webhook: {{ url: \"{}\" }}\n    events: [failure]\n\
             runbooks:\n  tell:\n    steps:\n      - notify: 'failover starts'\n",
            rx.url("/hook")
        ),
    )
    .unwrap();
    let out = ctx
        .bare()
        .args(["runbook", "drill", "tell", "--config"])
        .arg(&cfg)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reqs = rx.wait_for(1);
    let v = reqs[0].json();
    assert_eq!(v["message"], "[drill] failover starts", "{v}");
}
