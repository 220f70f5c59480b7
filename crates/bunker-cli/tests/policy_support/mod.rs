//! Helpers shared by the policy_* tests: a bunker command with a clean
//! environment, a repository with a password file, and restic.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;

pub const PASSWORD: &str = "policy-test-password";

pub struct Ctx {
    pub dir: tempfile::TempDir,
}

impl Ctx {
    pub fn new() -> Ctx {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pw"), format!("{PASSWORD}\n")).expect("password file");
        Ctx { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn repo(&self) -> PathBuf {
        self.path().join("repo")
    }

    /// `bunker` with no inherited BUNKER_* settings and a fast KDF.
    pub fn bare(&self) -> Command {
        let mut c = Command::cargo_bin("bunker").expect("bunker binary");
        for (k, _) in std::env::vars() {
            if k.starts_with("BUNKER_") || k.starts_with("RESTIC_") {
                c.env_remove(k);
            }
        }
        c.env("BUNKER_TEST_KDF_N", "1024").current_dir(self.path());
        c
    }

    /// `bunker` pointed at this context's repository.
    pub fn bunker(&self) -> Command {
        let mut c = self.bare();
        c.env("BUNKER_REPOSITORY", self.repo())
            .env("BUNKER_PASSWORD_FILE", self.path().join("pw"));
        c
    }

    pub fn restic(&self) -> Command {
        let mut c = Command::new("restic");
        c.env("RESTIC_PASSWORD", PASSWORD)
            .env("RESTIC_CACHE_DIR", self.path().join("restic-cache"))
            .arg("-r")
            .arg(self.repo())
            .current_dir(self.path());
        c
    }
}

pub fn run_ok(mut c: Command) -> Output {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn json(o: &Output) -> serde_json::Value {
    let text = stdout(o);
    let line = text.lines().next().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// All regular files under `root` with their contents, keyed by relative path.
pub fn tree(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root");
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    std::fs::read(&p).expect("read"),
                );
            }
        }
    }
    let mut out = Default::default();
    walk(root, root, &mut out);
    out
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Add `n` rows to table `t` of the SQLite database at `path` (created
/// with the table when missing).
pub fn sqlite_rows(path: &Path, n: i64) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    for _ in 0..n {
        c.execute("INSERT INTO t (v) VALUES ('x')", []).unwrap();
    }
}
