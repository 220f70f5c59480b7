//! Issue 25 item 2, against a real PostgreSQL 15: `bunker run` of a
//! physical item used to hang without a word when `archive_command` failed
//! (`pg_basebackup` waits for the archiving of the backup's WAL), and a
//! SIGTERM to bunker alone must take `pg_basebackup` with it. Skipped (with
//! a note) when not root or PostgreSQL is missing.

mod common;
mod pg_cluster;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{wait_at_most, Env, PASSWORD};
use pg_cluster::{chown_postgres, pg_available, Cluster, PG_BIN};

/// A repository directory, a password file and a policy with one physical
/// item of `cluster`, all in a temp dir `postgres` may write to.
fn setup(extra_conf: &str) -> (Env, Cluster, PathBuf) {
    let env = Env::new();
    let dir = env.dir.path().to_path_buf();
    std::fs::write(dir.join("pw"), format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    chown_postgres(&dir);
    let cluster = Cluster::init(
        dir.join("data"),
        &format!("archive_mode = on\nwal_level = replica\n{extra_conf}"),
    );
    cluster.start();
    let policy = dir.join("bunker.yaml");
    std::fs::write(
        &policy,
        format!(
            "repositories:\n  main:\n    location: ./repo\n    password_file: ./pw\n\
             items:\n  - name: db\n    kind: postgres\n    postgres:\n      host: 127.0.0.1\n      \
             port: {}\n      user: postgres\n      mode: physical\n    targets: [main]\n",
            cluster.port
        ),
    )
    .unwrap();
    (env, cluster, policy)
}

fn bunker(env: &Env, args: &[&str], policy: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bunker"));
    c.env("PATH", format!("{PG_BIN}:/usr/bin:/bin"))
        .env("BUNKER_TEST_KDF_N", "1024")
        .env_remove("BUNKER_REPOSITORY")
        .current_dir(env.dir.path())
        .args(args)
        .arg("--config")
        .arg(policy)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn output_within(mut c: Command, limit: Duration) -> (Option<i32>, String, Duration) {
    let t = Instant::now();
    let mut child = c.spawn().expect("spawn bunker");
    let status = wait_at_most(&mut child, limit);
    let mut text = String::new();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut p = pipe;
        let _ = p.read_to_string(&mut text);
    }
    let status = status.unwrap_or_else(|| panic!("bunker hung for {limit:?}: {text}"));
    (status.code(), text, t.elapsed())
}

/// The archiver fails (`archive_command = false`): the first run notices it
/// while pg_basebackup waits and stops it; the next fails before starting
/// pg_basebackup; the dry run shows the archiver's failure.
#[test]
fn run_fails_at_once_when_archive_command_fails() {
    if !pg_available() {
        return;
    }
    let (env, cluster, policy) = setup("archive_command = 'false'\n");
    // Nothing failed yet: the watch catches it while pg_basebackup waits.
    let (code, text, _) = output_within(
        bunker(&env, &["--json", "run", "--all"], &policy),
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("archive_command is failing"), "{text}");
    // Now the failure is on record: the run fails before pg_basebackup.
    let (code, text, took) = output_within(
        bunker(&env, &["run", "--all"], &policy),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("archive_command is failing"), "{text}");
    assert!(took < Duration::from_secs(20), "took {took:?}: {text}");
    let line = text
        .lines()
        .find(|l| l.contains("archive_command is failing"))
        .expect("reason");
    assert!(line.contains("fix archive_command"), "{line}");
    let (_, text, _) = output_within(
        bunker(&env, &["run", "--dry-run", "--all"], &policy),
        Duration::from_secs(60),
    );
    assert!(
        text.contains("status now") && text.contains("failed") && text.contains("server log"),
        "the dry run shows the archiver's failure: {text}"
    );
    drop(cluster);
}

/// The pids of `parent`'s children named `name`.
fn children_named(parent: u32, name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 1..].split_whitespace().nth(1);
        if comm == name && ppid == Some(&parent.to_string()) {
            out.push(pid);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

/// The archiver hangs (`archive_command = 'sleep 600'`), so pg_basebackup
/// waits; SIGTERM to bunker alone (as systemd sends it) ends bunker with
/// 130 and pg_basebackup with it.
#[test]
fn sigterm_to_bunker_alone_takes_pg_basebackup_with_it() {
    if !pg_available() {
        return;
    }
    let (env, cluster, policy) = setup("archive_command = 'sleep 600'\n");
    let mut child = bunker(&env, &["run", "--all"], &policy)
        .spawn()
        .expect("spawn");
    let bunker_pid = child.id();
    let t = Instant::now();
    let basebackup = loop {
        if let Some(p) = children_named(bunker_pid, "pg_basebackup").first() {
            break *p;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "pg_basebackup did not start"
        );
        assert!(child.try_wait().unwrap().is_none(), "bunker ended early");
        std::thread::sleep(Duration::from_millis(50));
    };
    Command::new("kill")
        .args(["-TERM", &bunker_pid.to_string()])
        .status()
        .expect("kill");
    let status = wait_at_most(&mut child, Duration::from_secs(30)).expect("bunker hung");
    assert_eq!(status.code(), Some(130));
    let t = Instant::now();
    while alive(basebackup) && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(basebackup), "pg_basebackup survived bunker");
    drop(cluster);
}

/// The archiver hangs and never fails: past BUNKER_ARCHIVE_WAIT_LIMIT
/// (15 minutes by default; 3 s here) the backup fails with the reason,
/// instead of waiting forever.
#[test]
fn run_fails_when_archive_command_hangs() {
    if !pg_available() {
        return;
    }
    let (env, cluster, policy) = setup("archive_command = 'sleep 600'\n");
    let mut c = bunker(&env, &["run", "--all"], &policy);
    c.env("BUNKER_ARCHIVE_WAIT_LIMIT", "3s");
    let (code, text, took) = output_within(c, Duration::from_secs(120));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("archive_command seems to hang"), "{text}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    drop(cluster);
}
