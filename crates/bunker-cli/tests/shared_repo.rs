//! One local repository used by root (`backup`, `run`) and by `postgres`
//! (`pg wal-push`, `restore`): a private repository refuses the other user
//! with an error naming the user and the file; once its directory grants a
//! group access (the documented one-time chgrp/chmod), everything either
//! user creates gets that group and its permissions, so both keep working.
//! Needs root and a `postgres` user (skipped with a note otherwise).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{is_root, Env, PASSWORD};

fn bunker_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bunker"))
}

/// The gid of the `postgres` group, when the user exists.
fn postgres_gid() -> Option<u32> {
    let out = Command::new("id").args(["-g", "postgres"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// `bunker -r REPO ARGS` as `postgres`.
fn as_postgres(repo: &Path, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--", "env"])
        .arg(format!("BUNKER_PASSWORD={PASSWORD}"))
        .arg("BUNKER_TEST_KDF_N=1024")
        .arg(bunker_exe())
        .arg("-r")
        .arg(repo)
        .args(args)
        .output()
        .expect("runuser")
}

fn sh(cmd: &str) {
    let st = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(st.success(), "{cmd}");
}

/// Every file and directory below `dir`.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        }
        out.push(p);
    }
}

#[test]
fn root_backups_and_postgres_wal_push_share_one_repository() {
    let Some(gid) = postgres_gid().filter(|_| is_root()) else {
        eprintln!("note: skipping the shared-repository test (needs root and a postgres user)");
        return;
    };
    let env = Env::init();
    let dir = env.dir.path();
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let repo = env.repo.to_str().unwrap().to_string();

    // Private (as init makes it): postgres is refused, and told why.
    let out = as_postgres(&env.repo, &["snapshots"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("user postgres") && err.contains(&repo) && err.contains("chgrp"),
        "{err}"
    );

    // The documented one-time step.
    sh(&format!(
        "chgrp -R postgres {repo} && chmod -R g+rwX {repo} && find {repo} -type d -exec chmod g+s {{}} +"
    ));

    let src = env.make_source();
    env.bunker().arg("backup").arg(&src).assert().success();
    // A WAL segment in a directory of postgres's, pushed by postgres: it
    // creates the WAL directory of the repository.
    let wal_dir = dir.join("pgwal");
    std::fs::create_dir(&wal_dir).unwrap();
    let seg = wal_dir.join("000000010000000000000003");
    std::fs::write(&seg, vec![3u8; 16 << 20]).unwrap();
    sh(&format!("chown -R postgres: {}", wal_dir.display()));
    let out = as_postgres(&env.repo, &["pg", "wal-push", seg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Root again, then postgres reads all of it.
    std::fs::write(src.join("later.txt"), b"written after the wal push").unwrap();
    env.bunker().arg("backup").arg(&src).assert().success();
    for args in [&["check", "--read-data"][..], &["snapshots"][..]] {
        let out = as_postgres(&env.repo, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let target = dir.join("restored");
    std::fs::create_dir(&target).unwrap();
    sh(&format!("chown postgres: {}", target.display()));
    let out = as_postgres(
        &env.repo,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Whoever created them, all entries carry the group and its bits.
    let mut all = Vec::new();
    walk(&env.repo, &mut all);
    assert!(
        all.iter().any(|p| p.ends_with("bunker/wal")),
        "no WAL directory"
    );
    for p in all {
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(m.gid(), gid, "{} not in group postgres", p.display());
        let want = if m.is_dir() { 0o070 } else { 0o060 };
        assert_eq!(
            m.mode() & want,
            want,
            "{}: mode {:o}",
            p.display(),
            m.mode()
        );
    }
}
