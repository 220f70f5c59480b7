//! End-to-end: help, version, init, passwords, exit statuses.

mod common;

use common::{tree_contents, Env, PASSWORD};
use predicates::prelude::*;

#[test]
fn root_help_documents_environment_and_exit_status() {
    let env = Env::new();
    let out = env.bare().arg("--help").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for section in [
        "EXAMPLES:",
        "ENVIRONMENT:",
        "EXIT STATUS:",
        "BUNKER_PASSWORD_COMMAND",
        "130",
    ] {
        assert!(text.contains(section), "--help lacks {section:?}:\n{text}");
    }
}

#[test]
fn every_command_has_long_help_with_examples() {
    let env = Env::new();
    for cmd in [
        "init",
        "backup",
        "snapshots",
        "ls",
        "restore",
        "dump",
        "diff",
        "check",
        "key",
        "cat",
        "unlock",
        "version",
        "find",
        "stats",
        "tag",
        "rewrite",
        "list",
        "recover",
        "drill",
        "cache",
        "generate",
        "mount",
        "daemon",
        "history",
        "audit",
        "report",
        "runbook",
        "serve",
    ] {
        let out = env.bare().args([cmd, "--help"]).output().expect("run");
        assert!(out.status.success(), "{cmd} --help failed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("EXAMPLES:"),
            "{cmd} --help lacks EXAMPLES:\n{text}"
        );
        assert!(
            text.lines().count() > 8,
            "{cmd} --help is too short:\n{text}"
        );
    }
}

#[test]
fn usage_errors_exit_1_with_one_line() {
    let env = Env::new();
    env.bare()
        .arg("no-such-verb")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no-such-verb"));
}

#[test]
fn version_prints_target_and_repository_versions() {
    let env = Env::new();
    env.bare()
        .arg("version")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "bunker {}",
            env!("CARGO_PKG_VERSION")
        )))
        .stdout(predicate::str::contains(
            "repository versions: reads 1 and 2, creates 2",
        ));
    let v = env.json(&["version"]);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["repository_versions"], serde_json::json!([1, 2]));
    assert!(v["target"].as_str().is_some_and(|t| t.contains('-')), "{v}");
}

#[test]
fn init_creates_a_repository_once() {
    let env = Env::new();
    env.bunker()
        .arg("init")
        .assert()
        .success()
        .stdout(predicate::str::contains("created bunker repository"));
    assert!(env.repo.join("config").is_file());
    assert_eq!(
        std::fs::read_dir(env.repo.join("keys"))
            .expect("keys")
            .count(),
        1
    );
    env.bunker()
        .arg("init")
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("bunker: error: "))
        .stderr(predicate::str::contains("already exists"));
}

#[test]
fn init_json_reports_the_id() {
    let env = Env::new();
    let v = env.json(&["init"]);
    assert_eq!(v["message_type"], "initialized");
    assert!(v["id"].as_str().is_some_and(|s| s.len() == 64), "{v}");
}

#[test]
fn missing_repository_exits_10() {
    let env = Env::new();
    let out = env.bunker().arg("snapshots").output().expect("run");
    assert_eq!(out.status.code(), Some(10));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("bunker: error: "), "{err}");
    assert!(err.contains("bunker init"), "{err}");
}

#[test]
fn no_repository_given_is_fatal() {
    let env = Env::new();
    env.bare()
        .env("BUNKER_PASSWORD", PASSWORD)
        .arg("snapshots")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("BUNKER_REPOSITORY"));
}

#[test]
fn wrong_password_exits_12_and_writes_nothing() {
    let env = Env::init();
    let src = env.make_source();
    env.bunker().arg("backup").arg(&src).assert().success();
    let before = tree_contents(&env.repo);
    for args in [
        vec!["snapshots"],
        vec!["backup", src.to_str().expect("utf-8")],
        vec!["unlock", "--remove-all"],
        vec!["key", "list"],
        vec!["check"],
    ] {
        let out = env
            .bunker()
            .env("BUNKER_PASSWORD", "wrong")
            .args(&args)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(12), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("bunker: error: ") && err.contains("wrong password"),
            "{err}"
        );
    }
    assert_eq!(before, tree_contents(&env.repo), "repository changed");
}

#[test]
fn no_password_without_terminal_is_a_clear_error() {
    let env = Env::init();
    env.bare()
        .env("BUNKER_REPOSITORY", &env.repo)
        .arg("snapshots")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no password: set BUNKER_PASSWORD_FILE, BUNKER_PASSWORD or --password-command",
        ));
}

#[test]
fn password_from_file_env_and_command() {
    let env = Env::init();
    let pwfile = env.path("pw");
    std::fs::write(&pwfile, format!("{PASSWORD}\n")).expect("write");
    // --password-file flag and env variable.
    env.bare()
        .env("BUNKER_REPOSITORY", &env.repo)
        .arg("--password-file")
        .arg(&pwfile)
        .arg("snapshots")
        .assert()
        .success();
    env.bare()
        .env("BUNKER_REPOSITORY", &env.repo)
        .env("BUNKER_PASSWORD_FILE", &pwfile)
        .arg("snapshots")
        .assert()
        .success();
    // Plain environment variable.
    env.bunker().arg("snapshots").assert().success();
    // Command: stdout minus the trailing newline.
    env.bare()
        .env("BUNKER_REPOSITORY", &env.repo)
        .arg("--password-command")
        .arg(format!("echo '{PASSWORD}'"))
        .arg("snapshots")
        .assert()
        .success();
    env.bare()
        .env("BUNKER_REPOSITORY", &env.repo)
        .env(
            "BUNKER_PASSWORD_COMMAND",
            format!("cat '{}'", pwfile.display()),
        )
        .arg("snapshots")
        .assert()
        .success();
    // The command wins over the environment variable, so a wrong command fails.
    env.bunker()
        .arg("--password-command")
        .arg("echo nope")
        .arg("snapshots")
        .assert()
        .code(12);
    // A failing command is fatal.
    env.bare()
        .env("BUNKER_REPOSITORY", &env.repo)
        .arg("--password-command")
        .arg("exit 7")
        .arg("snapshots")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("password command"));
}

#[test]
fn repository_flag_overrides_environment() {
    let env = Env::init();
    let other = env.path("other");
    env.bunker()
        .arg("-r")
        .arg(&other)
        .arg("snapshots")
        .assert()
        .code(10);
}
