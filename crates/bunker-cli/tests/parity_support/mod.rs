#![allow(dead_code)]
//! Shared set-up of the restic-parity tests: two repositories holding
//! snapshots of the same small tree, one written by restic and one by
//! bunker, and `bunker`/`restic` commands wired to a repository.

/// Returns from the test, with a note, when restic is not installed.
macro_rules! need_restic {
    () => {
        if !$crate::parity_support::restic_available() {
            eprintln!("SKIPPED: restic is not installed (apt-get install restic)");
            return;
        }
    };
}

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

use crate::output_support::run_ok;

pub const PASSWORD: &str = "parity password";

pub fn restic_available() -> bool {
    Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn bunker(repo: &Path) -> Command {
    let mut c = Command::cargo_bin("bunker").expect("binary");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BUNKER_REPOSITORY", repo)
        .env("BUNKER_PASSWORD", PASSWORD)
        .env("BUNKER_TEST_KDF_N", "1024")
        .env("TZ", "UTC")
        .arg("--no-progress");
    c
}

pub fn restic(repo: &Path) -> Command {
    let mut c = Command::new("restic");
    c.env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("TZ", "UTC")
        .arg("--no-cache");
    c
}

/// Deterministic bytes (xorshift).
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A small tree with duplicate contents, a hard link, a symlink, empty
/// files and directories, a multi-chunk file, a "secret" to rewrite away
/// and two files last modified in 2010.
pub fn build_tree(root: &Path) {
    for d in ["docs/deep", "etc/app", "media", "empty-dir"] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    fs::write(root.join("docs/readme.txt"), b"read me\n").expect("write");
    fs::write(root.join("docs/deep/readme.txt"), b"read me\n").expect("write");
    fs::write(root.join("docs/deep/Notes.TXT"), b"notes\n").expect("write");
    fs::write(root.join("etc/app/app.conf"), b"key = value\n").expect("write");
    fs::write(root.join("etc/app/secret.key"), b"-----BEGIN KEY-----\n").expect("write");
    fs::write(root.join("etc/empty"), b"").expect("write");
    fs::write(root.join("media/big.bin"), bytes(3_000_000, 7)).expect("write");
    fs::write(root.join("media/copy.bin"), bytes(3_000_000, 7)).expect("write");
    fs::write(root.join("media/small.bin"), bytes(40_000, 9)).expect("write");
    fs::hard_link(
        root.join("media/small.bin"),
        root.join("media/small-link.bin"),
    )
    .expect("hard link");
    std::os::unix::fs::symlink("../docs/readme.txt", root.join("etc/readme-link"))
        .expect("symlink");
    // Old files, for `find --oldest/--newest` (2010-06-01T00:00:00Z).
    let old = filetime::FileTime::from_unix_time(1_275_350_400, 0);
    for f in ["docs/readme.txt", "etc/app/app.conf"] {
        filetime::set_file_mtime(root.join(f), old).expect("mtime");
    }
}

/// A repository written by one tool.
pub struct Repo {
    pub name: &'static str,
    pub path: PathBuf,
}

/// Two repositories with the same three snapshots of `src` (the whole tree
/// tagged `full`, `src/etc` tagged `etc`, the whole tree again): one written
/// by restic, one by bunker.
pub fn both_repos(dir: &Path, src: &Path) -> [Repo; 2] {
    let etc = src.join("etc");
    let r = Repo {
        name: "restic",
        path: dir.join("restic-repo"),
    };
    run_ok(restic(&r.path).args(["init", "--repository-version", "2"]));
    run_ok(restic(&r.path).args(["backup", "--tag", "full"]).arg(src));
    run_ok(restic(&r.path).args(["backup", "--tag", "etc"]).arg(&etc));
    run_ok(restic(&r.path).args(["backup", "--force"]).arg(src));
    let b = Repo {
        name: "bunker",
        path: dir.join("bunker-repo"),
    };
    run_ok(bunker(&b.path).arg("init"));
    run_ok(bunker(&b.path).args(["backup", "--tag", "full"]).arg(src));
    run_ok(bunker(&b.path).args(["backup", "--tag", "etc"]).arg(&etc));
    run_ok(bunker(&b.path).args(["backup", "--force"]).arg(src));
    [r, b]
}

/// Parse stdout as one JSON value.
pub fn json(cmd: &mut Command) -> serde_json::Value {
    let out = run_ok(cmd);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?}: stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Snapshot ids (full hex), oldest first, as restic lists them.
pub fn snapshot_ids(repo: &Path) -> Vec<String> {
    let v = json(restic(repo).args(["snapshots", "--json"]));
    let mut snaps: Vec<(String, String)> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|s| {
            (
                s["time"].as_str().expect("time").to_string(),
                s["id"].as_str().expect("id").to_string(),
            )
        })
        .collect();
    snaps.sort();
    snaps.into_iter().map(|(_, id)| id).collect()
}
