//! End-to-end: keys, locks, unlock, lock conflicts (exit 11) and SIGINT (exit 130).

mod common;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Env, PASSWORD};
use predicates::prelude::*;

fn lock_count(env: &Env) -> usize {
    std::fs::read_dir(env.repo.join("locks"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

/// Start `bunker backup --stdin` that holds a shared lock until its stdin closes.
fn start_holder(env: &Env) -> Child {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("bunker"));
    c.env("BUNKER_REPOSITORY", &env.repo)
        .env("BUNKER_PASSWORD", PASSWORD)
        .env_remove("BUNKER_PASSWORD_FILE")
        .env_remove("BUNKER_PASSWORD_COMMAND")
        .args(["backup", "--stdin", "--stdin-filename", "held"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = c.spawn().expect("spawn");
    let start = Instant::now();
    while lock_count(env) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "holder never locked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn keys_add_list_passwd_remove() {
    let env = Env::init();
    let newpw = env.path("newpw");
    std::fs::write(&newpw, "second password\n").expect("write");
    env.bunker()
        .args([
            "key",
            "add",
            "--user",
            "alice",
            "--host",
            "laptop",
            "--new-password-file",
        ])
        .arg(&newpw)
        .assert()
        .success()
        .stdout(predicate::str::contains("saved new key"));
    let keys = env.json(&["key", "list"]);
    let keys = keys.as_array().expect("array");
    assert_eq!(keys.len(), 2);
    assert!(keys
        .iter()
        .any(|k| k["userName"] == "alice" && k["hostName"] == "laptop" && k["current"] == false));
    let table = env.stdout(&["key", "list"]);
    assert!(table.lines().any(|l| l.starts_with('*')), "{table}");

    // The new password opens the repository.
    env.bunker()
        .env("BUNKER_PASSWORD", "second password")
        .arg("snapshots")
        .assert()
        .success();

    // Remove the added key while opened with the first password.
    let alice = keys
        .iter()
        .find(|k| k["userName"] == "alice")
        .and_then(|k| k["id"].as_str())
        .expect("alice's key")
        .to_string();
    env.bunker()
        .args(["key", "remove", &alice])
        .assert()
        .success();
    env.bunker()
        .env("BUNKER_PASSWORD", "second password")
        .arg("snapshots")
        .assert()
        .code(12);
    // The key in use cannot be removed.
    let own = env.json(&["key", "list"]);
    let own_id = own[0]["id"].as_str().expect("id").to_string();
    env.bunker()
        .args(["key", "remove", &own_id])
        .assert()
        .code(1);

    // passwd replaces the current key.
    env.bunker()
        .args(["key", "passwd", "--new-password-file"])
        .arg(&newpw)
        .assert()
        .success();
    env.bunker().arg("snapshots").assert().code(12);
    env.bunker()
        .env("BUNKER_PASSWORD", "second password")
        .arg("snapshots")
        .assert()
        .success();
}

#[test]
fn unlock_and_lock_conflicts() {
    let env = Env::init();
    let mut holder = start_holder(&env);
    assert_eq!(lock_count(&env), 1);

    // An exclusive lock is refused while a live shared lock exists.
    env.bunker()
        .args(["key", "remove", "0000"])
        .assert()
        .code(11)
        .stderr(predicate::str::contains("locked"));
    // A live lock is not stale: plain unlock keeps it.
    let v = env.json(&["unlock"]);
    assert_eq!(v["removed"], 0);
    assert_eq!(lock_count(&env), 1);
    // --remove-all removes it.
    env.bunker()
        .args(["unlock", "--remove-all"])
        .assert()
        .success()
        .stdout(predicate::str::contains("removed 1 lock"));
    assert_eq!(lock_count(&env), 0);

    holder
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"data")
        .expect("write");
    let _ = holder.wait().expect("wait");
}

#[test]
fn sigint_releases_locks_and_exits_130() {
    let env = Env::init();
    let mut holder = start_holder(&env);
    let pid = holder.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let status = common::wait_at_most(&mut holder, Duration::from_secs(30));
    assert_eq!(status.expect("did not exit on SIGINT").code(), Some(130));
    assert_eq!(lock_count(&env), 0, "lock left behind");
    drop(holder.stdin.take());
}
